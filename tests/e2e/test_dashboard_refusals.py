"""Issue #24's table, against the web process as the Procfile runs it (gunicorn) with the dashboard on:
5 paid WooCommerce orders queued and no worker; requests carrying the right credentials but sent from
another site are refused, as is every emptying of a registry; a worker then awards each order once.
The metrics token holds on the web process and on a worker's --metrics-port."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from rq import Queue

from bench.cluster import Cluster
from bench.workload import PlannedOrder, deliveries
from bridge.embedded_redis import free_port
from workers.ledger import Ledger

pytestmark = pytest.mark.e2e
USER, PASSWORD, TOKEN = "ops", "correct horse battery staple", "scrape-token-8c1f"
EVIL = "http://evil.example"
ORDERS = [PlannedOrder("woocommerce", 960_001 + i, f"csrf-{i}@example.com", Decimal("20.00")) for i in range(5)]


def test_the_dashboard_cannot_be_turned_against_the_shop(tmp_path: Path) -> None:
    env = {"BRIDGE_DASHBOARD_USER": USER, "BRIDGE_DASHBOARD_PASSWORD": PASSWORD, "BRIDGE_METRICS_TOKEN": TOKEN}
    with Cluster(tmp_path, webs=1, web_concurrency=1, workers=0, env=env) as cluster:
        (url,) = cluster.urls
        for order in ORDERS:
            paid = deliveries(order)[0]
            assert requests.post(url + paid.path, data=paid.body, headers=paid.headers, timeout=10).status_code == 202
        connection = cluster.connection()
        queue = Queue("loyalty", connection=connection)
        jobs = sorted(queue.get_job_ids())
        assert len(jobs) == 5

        rq, auth = url + "/rq", (USER, PASSWORD)
        answers = {
            # The table: each answered 200 and lost the orders before.
            "POST queued/empty from evil": requests.post(f"{rq}/queue/loyalty/queued/empty", auth=auth,
                                                         headers={"Origin": EVIL}, timeout=5),
            "POST scheduled/empty from evil": requests.post(f"{rq}/queue/loyalty/scheduled/empty", auth=auth,
                                                            headers={"Origin": EVIL}, timeout=5),
            "GET requeue, no Referer (an <img>)": requests.get(f"{rq}/requeue/loyalty", auth=auth, timeout=5),
            "GET requeue, foreign Referer": requests.get(f"{rq}/requeue/loyalty", auth=auth,
                                                         headers={"Referer": EVIL + "/cats.html"}, timeout=5),
            "GET requeue, foreign Origin": requests.get(f"{rq}/requeue/loyalty", auth=auth,
                                                        headers={"Origin": EVIL}, timeout=5),
            # And from the dashboard's own origin: the "Empty" button loses orders too.
            **{f"POST {registry}/empty from own page": requests.post(
                f"{rq}/queue/loyalty/{registry}/empty", auth=auth, headers={"Origin": url}, timeout=5)
               for registry in ("queued", "scheduled", "started", "deferred", "failed")},
            "POST job delete from own page": requests.post(f"{rq}/job/{jobs[0]}/delete", auth=auth,
                                                           headers={"Origin": url}, timeout=5),
        }
        assert {what: resp.status_code for what, resp in answers.items()} == dict.fromkeys(answers, 403)
        assert sorted(queue.get_job_ids()) == jobs

        own = requests.get(f"{rq}/requeue/loyalty", auth=auth, headers={"Referer": url + "/rq/"}, timeout=5)
        assert own.status_code == 200 and own.json() == {"status": "OK", "count": 0}
        page = requests.get(rq + "/", auth=auth, timeout=5)
        assert page.status_code == 200
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]

        assert requests.get(url + "/metrics", timeout=5).status_code == 401
        assert requests.get(url + "/metrics", headers={"Authorization": "Bearer x"}, timeout=5).status_code == 401
        scraped = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert scraped.status_code == 200
        assert 'bridge_queue_jobs{queue="loyalty",state="queued"} 5.0' in scraped.text

        metrics_port = free_port()
        cluster.start_worker("--metrics-port", str(metrics_port))
        cluster.wait_drained(60)
        purchases = Counter(t["reference_number"] for t in cluster.transactions() if t["type"] == "purchase")
        assert purchases == Counter({order.reference: 1 for order in ORDERS})
        ledger = Ledger(connection, retention=86400)
        assert all(ledger.get("woo", order.reference).award for order in ORDERS)

        worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        assert requests.get(worker_metrics, timeout=5).status_code == 401
        scraped = requests.get(worker_metrics, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert scraped.status_code == 200 and "bridge_jobs_total" in scraped.text
        connection.close()
