"""Alerts with real processes: a gunicorn web process, `bridge worker` processes, a real Redis, the
Loyalty.lt sandbox, the emulated shops, and two alert receivers over HTTP on loopback (the second
down at first). Each kind is made to happen and to end; each receiver gets exactly one `firing` and
one `resolved` of each condition, every one signed as Standard Webhooks says."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from bench.cluster import BIN, Cluster, wait_until
from bench.workload import PlannedOrder, deliveries
from bridge.embedded_redis import free_port
from bridge.sandbox.shops import ShopsServer
from bridge.sandbox.state import FailRule
from bridge.samples import sample_order
from tests.e2e.test_shop_sync import shops, store_fields  # noqa: F401 - the shops fixture
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    pair = Receiver(), Receiver()
    yield pair
    for receiver in pair:
        receiver.shutdown()
        receiver.server_close()


def bridge(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bridge"), *args], cwd=cluster.workdir, env=cluster.env, capture_output=True,
                          text=True, timeout=120)


def post(cluster: Cluster, platform: str, order_id: int) -> str:
    """A paid order's webhook, signed and accepted; its reference."""
    order = PlannedOrder(platform, order_id, f"alert-{order_id}@example.com", Decimal("20.00"))
    paid = deliveries(order)[0]
    resp = requests.post(cluster.urls[0] + paid.path, data=paid.body, headers=paid.headers, timeout=10)
    assert resp.status_code == 202, resp.text
    return order.reference


def fail_calls(cluster: Cluster, status: int, times: int) -> None:
    """The sandbox answers the next ``times`` award calls with ``status``."""
    sandbox = cluster.sandbox.sandbox
    rule = FailRule(path="transactions/create", status=status, remaining=times, code=status,
                    message="The key is not valid" if status == 401 else "The given data was invalid.",
                    errors=None if status == 401 else {"user_email": ["alert-1@example.com is not allowed"]})
    sandbox.configure(sandbox.config.model_copy(update={"fail_rules": [rule]}))


def metric(cluster: Cluster, ports: list[int], name: str, **labels: str) -> float:
    """A counter summed over the web process's /metrics and the workers' metrics ports."""
    total = 0.0
    pages = [requests.get(cluster.urls[0] + "/metrics", timeout=10).text]
    pages += [requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text for port in ports]
    for page in pages:
        for line in page.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_each_alert_fires_once_and_resolves_once_at_every_receiver(tmp_path: Path, shops: ShopsServer,  # noqa: F811
                                                                   receivers: tuple[Receiver, Receiver]) -> None:
    one, two = receivers
    # Thresholds made small, so that each condition happens and ends within seconds.
    env = {"BRIDGE_ALERT_WEBHOOKS": f"{one.url}, {two.url}", "BRIDGE_ALERT_SECRET": SECRET,
           "BRIDGE_ALERT_DIGEST_SECONDS": "1", "BRIDGE_ALERT_REFUSED_IN_ROW": "2",
           "BRIDGE_ALERT_SHOP_FAILED_RUNS": "2", "BRIDGE_ALERT_WORKERS_DOWN_AFTER": "2",
           "BRIDGE_ALERT_BACKLOG_AGE": "3", "BRIDGE_ALERT_CHECK_INTERVAL": "0.5",
           "BRIDGE_ALERT_RETRY_BASE_DELAY": "0.2", "BRIDGE_ALERT_RETRY_MAX_DELAY": "1",
           "BRIDGE_SHOP_SYNC_INTERVAL": "1", "BRIDGE_SHOP_WATCH_INTERVAL": "1",
           "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "1"}
    metrics_ports = [free_port()]
    with Cluster(tmp_path, webs=1, workers=0, env=env, store_fields=store_fields(shops)) as c:
        c.start_worker("--metrics-port", str(metrics_ports[0]))

        def both(alert: str, state: str, store: str | None = None) -> bool:
            return one.seen(alert, state, store) >= 1 and two.seen(alert, state, store) >= 1

        # `bridge alerts test`: each receiver answers, and says so.
        tested = bridge(c, "alerts", "test")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert tested.stdout.count(": ok  200 ok") == 2 and "secret-path" not in tested.stdout, tested.stdout
        two.fail_next = 3  # the second receiver is down for its next three posts

        # 1 and 3: two awards refused 422 in a row (both end in the failed registry); 2: a key refused.
        fail_calls(c, 422, 2)
        woo_refs = [post(c, "woocommerce", 7_100_001), post(c, "woocommerce", 7_100_002)]
        wait_until(lambda: both("job_failed", "firing", "woo") and both("calls_refused", "firing", "woo"), 60,
                   "job_failed and calls_refused")
        fail_calls(c, 401, 1)
        post(c, "shopify", 7_100_003)
        wait_until(lambda: both("credentials_rejected", "firing", "shop") and both("job_failed", "firing", "shop"),
                   60, "credentials_rejected")
        listed = bridge(c, "alerts", "--json")
        assert listed.returncode == 2, listed.stdout + listed.stderr
        firing = {(a["alert"], a["store"]): a for a in json.loads(listed.stdout)}
        assert firing[("job_failed", "woo")]["count"] == 2
        assert "alert-1@example.com" not in listed.stdout and "a***@example.com" in listed.stdout
        # Both calls of the store and the key accepted again: refused and rejected end.
        post(c, "woocommerce", 7_100_004)
        post(c, "shopify", 7_100_005)
        wait_until(lambda: both("calls_refused", "resolved", "woo")
                   and both("credentials_rejected", "resolved", "shop"), 60, "calls_refused and credentials_rejected to end")
        replayed = bridge(c, "replay", "--failed", "--wait", "30")
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        wait_until(lambda: both("job_failed", "resolved", "woo") and both("job_failed", "resolved", "shop"), 60,
                   "job_failed to end once replayed")

        # The second receiver's three failed posts, each tried again (counted before that worker goes).
        failed_posts = metric(c, metrics_ports, "bridge_alert_deliveries_total", receiver="2", outcome="failed")

        # 7: no worker, an event waiting: the web process tells.
        worker = c.workers.pop()
        worker.terminate()
        worker.wait(20)
        post(c, "woocommerce", 7_100_006)
        wait_until(lambda: both("workers_down", "firing") and both("backlog_stale", "firing"), 60, "workers_down")
        assert metric(c, [], "bridge_alert_deliveries_total", alert="workers_down", outcome="sent") == 2
        metrics_ports.append(free_port())
        c.start_worker("--metrics-port", str(metrics_ports[1]))
        wait_until(lambda: both("workers_down", "resolved") and both("backlog_stale", "resolved"), 60,
                   "workers_down to end")

        # 8: Redis made to evict keys, then not.
        redis = c.connection()
        redis.config_set("maxmemory-policy", "allkeys-lru")
        wait_until(lambda: both("redis", "firing"), 30, "the redis alert")
        redis.config_set("maxmemory-policy", "noeviction")
        wait_until(lambda: both("redis", "resolved"), 30, "the redis alert to end")

        # 4: a webhook disabled at the shop (the watch turns it back on); 5: a shop refusing the
        # sync; 6: an order whose webhook never came.
        connected = bridge(c, "connect", "woo", "--url", c.urls[0])
        assert connected.returncode == 0, connected.stdout + connected.stderr
        woo = shops.shops.woocommerce["woo"]
        hook = next(h for h in woo.snapshot()["webhooks"] if h["topic"] == "order.created")
        woo.update_webhook(int(hook["id"]), {"status": "disabled"})
        shopify = shops.shops.shopify["shop"]
        shopify.config.scopes = []
        wait_until(lambda: both("shop_subscription", "firing", "woo") and both("shop_unreachable", "firing", "shop"),
                   60, "shop_subscription and shop_unreachable")
        shopify.config.scopes = ["read_orders"]
        woo.create_order(sample_order("woocommerce", 7_100_007, "lost@example.com"), deliver=False)
        wait_until(lambda: both("webhooks_missing", "firing", "woo"), 60, "webhooks_missing")
        shop_alerts = [("shop_subscription", "woo"), ("shop_unreachable", "shop"), ("webhooks_missing", "woo")]
        wait_until(lambda: all(both(kind, "resolved", store) for kind, store in shop_alerts), 60, "the shop alerts to end")
        c.wait_drained(60)
        assert bridge(c, "alerts").stdout.strip() == "Nothing is firing."

    expected = Counter({(kind, store, state): 1 for kind, store in [
        ("job_failed", "woo"), ("job_failed", "shop"), ("calls_refused", "woo"), ("credentials_rejected", "shop"),
        ("workers_down", None), ("backlog_stale", None), ("redis", None), ("shop_subscription", "woo"),
        ("shop_unreachable", "shop"), ("webhooks_missing", "woo")] for state in ("firing", "resolved")})
    expected[("test", None, "firing")] = 1
    verifier = Webhook(SECRET)
    for receiver in (one, two):
        got = Counter((body["alert"], body["store"], body["state"]) for _, body in receiver.taken())
        assert got == expected
        for headers, body in receiver.taken():
            raw = next(b for h, b, s in receiver.posts if h is headers)
            assert verifier.verify(raw, headers) == body
            assert set(body) >= {"text", "alert", "state", "store", "first_seen", "count", "details"}
            assert body["text"].startswith("[loyalty-bridge] ") and "example.com" not in body["text"].replace(
                "***@example.com", "")
    # The second receiver was down for three posts: each was tried again until it answered.
    assert sum(1 for _, _, status in two.posts if status == 503) == 3
    assert failed_posts == 3
    texts = {(b["alert"], b["store"], b["state"]): b["text"] for _, b in one.taken()}
    assert f"bridge replay {woo_refs[0]} --store woo" in json.dumps([b for _, b in one.taken()])
    assert "bridge check" in texts[("credentials_rejected", "shop", "firing")]
    assert "re-activated" in texts[("shop_subscription", "woo", "firing")] or \
        "reactivated" in texts[("shop_subscription", "woo", "firing")]
    assert "bridge worker" in texts[("workers_down", None, "firing")]
