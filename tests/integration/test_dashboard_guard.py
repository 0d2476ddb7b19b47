"""What the dashboard refuses, request by request (the app in-process, real Redis): cross-site state
changes, any deletion of a job, framing; and the metrics token, on the web app and the workers' server."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from pydantic import SecretStr
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge.app import create_app
from bridge.embedded_redis import free_port
from config.settings import Settings
from config.stores import Stores
from tests.conftest import fixture_bytes, webhook_headers
from workers.metrics import serve_metrics

USER, PASSWORD = "ops", "correct horse battery staple"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
OWN = "http://localhost"  # the test client's origin
JOB_ID = "paid-coffee-woo-4210"
REGISTRIES = ["queued", "scheduled", "started", "deferred", "failed", "finished", "canceled"]


def dashboard_client(settings: Settings, stores: Stores, redis_conn: Redis, **changes: Any) -> FlaskClient:
    settings = settings.model_copy(update={"dashboard_user": USER, "dashboard_password": SecretStr(PASSWORD),
                                           **changes})
    client = create_app(settings, stores, redis_conn).test_client()
    body = fixture_bytes("woocommerce", "processing")
    client.post("/webhooks/woocommerce/coffee-woo", data=body,
                headers=webhook_headers("woocommerce", body, "order.created"))
    return client


@pytest.fixture
def dashboard(settings: Settings, stores: Stores, redis_conn: Redis) -> FlaskClient:
    """The dashboard on, and one paid order queued (no worker)."""
    return dashboard_client(settings, stores, redis_conn)


def queued(redis_conn: Redis) -> list[str]:
    return Queue("loyalty", connection=redis_conn).get_job_ids()


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},                                           # a sandboxed frame, a data: URL
    {"Origin": "http://localhost.evil.example"},
    {"Origin": "https://localhost"},                              # same host, another scheme
    {"Origin": "http://localhost:8080"},                          # same host, another port
    {"Referer": "http://evil.example/page"},
    {"Origin": "http://evil.example", "Referer": OWN + "/rq/"},   # the Origin is what counts
    {},                                                           # neither: not shown to be ours
])
def test_state_changes_from_elsewhere_are_refused(dashboard: FlaskClient, redis_conn: Redis,
                                                  headers: dict[str, str]) -> None:
    for method, path in [("POST", f"/rq/job/{JOB_ID}/requeue"), ("POST", "/rq/requeue/loyalty"),
                         ("GET", "/rq/requeue/loyalty"), ("POST", "/rq/queue/loyalty/compact")]:
        resp = dashboard.open(path, method=method, headers={**AUTH, **headers})
        assert resp.status_code == 403, (method, path)
        assert "must come from the dashboard's own pages" in resp.json["error"]
    assert queued(redis_conn) == [JOB_ID]


def fail(redis_conn: Redis) -> None:
    """Move the queued job to the failed registry, as a worker would after a permanent failure."""
    job = Job.fetch(JOB_ID, connection=redis_conn)
    Queue("loyalty", connection=redis_conn).remove(job)
    job.set_status(JobStatus.FAILED)
    FailedJobRegistry("loyalty", connection=redis_conn).add(job, ttl=600)


@pytest.mark.parametrize("headers", [{"Origin": OWN}, {"Referer": OWN + "/rq/0/view/jobs"}])
def test_the_dashboards_own_pages_may_requeue(dashboard: FlaskClient, redis_conn: Redis,
                                              headers: dict[str, str]) -> None:
    fail(redis_conn)
    assert dashboard.post(f"/rq/job/{JOB_ID}/requeue", headers={**AUTH, **headers}).status_code == 200
    assert queued(redis_conn) == [JOB_ID]
    fail(redis_conn)
    resp = dashboard.get("/rq/requeue/loyalty", headers={**AUTH, **headers})
    assert resp.status_code == 200 and resp.json == {"status": "OK", "count": 1}
    assert queued(redis_conn) == [JOB_ID]
    assert dashboard.post("/rq/queue/loyalty/compact", headers={**AUTH, **headers}).status_code == 200


@pytest.mark.parametrize("origin", [OWN, "http://evil.example"])
def test_no_job_is_deleted_from_the_dashboard_whoever_asks(dashboard: FlaskClient, redis_conn: Redis,
                                                           origin: str) -> None:
    for registry in REGISTRIES:
        resp = dashboard.post(f"/rq/queue/loyalty/{registry}/empty", headers={**AUTH, "Origin": origin})
        assert resp.status_code == 403, registry
        assert "bridge failed --dismiss REF" in resp.json["error"]
    assert dashboard.post(f"/rq/job/{JOB_ID}/delete", headers={**AUTH, "Origin": origin}).status_code == 403
    assert queued(redis_conn) == [JOB_ID] and Job.exists(JOB_ID, connection=redis_conn)


def test_the_delete_buttons_are_hidden_and_the_pages_cannot_be_framed(dashboard: FlaskClient) -> None:
    jobs_page = dashboard.get("/rq/0/view/jobs/loyalty/queued/8/asc/1", headers=AUTH)
    failed_page = dashboard.get("/rq/0/view/jobs/loyalty/failed/8/asc/1", headers=AUTH)
    job_page = dashboard.get(f"/rq/0/view/job/{JOB_ID}", headers=AUTH)
    assert jobs_page.status_code == failed_page.status_code == job_page.status_code == 200
    assert 'id="compact-btn"' in jobs_page.text and 'id="requeue-all-btn"' in failed_page.text
    for page in (jobs_page, failed_page):
        assert '>Empty queue</a>' not in page.text and 'data-role="delete-job-btn"' not in page.text
        assert 'data-role="requeue-job-btn"' in page.text
    assert 'id="requeue-job-btn"' in job_page.text and 'id="delete-job-btn"' not in job_page.text
    for resp in (jobs_page, job_page, dashboard.get("/rq/0/data/queues.json", headers=AUTH), dashboard.get("/rq/"),
                 dashboard.post("/rq/queue/loyalty/queued/empty", headers=AUTH)):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert "X-Frame-Options" not in dashboard.get("/healthz").headers          # only the dashboard's pages


def test_behind_a_proxy_the_forwarded_address_is_the_origin(settings: Settings, stores: Stores,
                                                            redis_conn: Redis) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bridge.example.com", "X-Forwarded-For": "1.2.3.4"}
    own = {**AUTH, **forwarded, "Origin": "https://bridge.example.com"}
    direct = dashboard_client(settings, stores, redis_conn)
    assert direct.post("/rq/queue/loyalty/compact", headers=own).status_code == 403   # X-Forwarded-* not trusted
    behind = dashboard_client(settings, stores, redis_conn, proxy_hops=1)
    assert behind.post("/rq/queue/loyalty/compact", headers=own).status_code == 200
    assert behind.post("/rq/queue/loyalty/compact", headers={**own, "Origin": "http://localhost"}).status_code == 403
    assert behind.post("/rq/queue/loyalty/compact", headers={**own, "Origin": "http://bridge.example.com"}
                       ).status_code == 403


def test_metrics_want_the_token_when_one_is_set(settings: Settings, stores: Stores, redis_conn: Redis) -> None:
    open_app = create_app(settings, stores, redis_conn).test_client()
    assert open_app.get("/metrics").status_code == 200
    token = "s3cret-scrape-token"
    client = create_app(settings.model_copy(update={"metrics_token": SecretStr(token)}), stores,
                        redis_conn).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": f"Bearer {token}x"}):
        resp = client.get("/metrics", headers=headers)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bridge_queue_jobs" not in resp.text and token not in resp.text
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and "bridge_queue_jobs" in resp.text


def test_the_workers_metrics_server_wants_the_token_too(redis_conn: Redis) -> None:
    port = free_port()
    server = serve_metrics(port, redis_conn, "loyalty", b"s3cret-scrape-token", host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        refused = requests.get(url, timeout=5)
        assert refused.status_code == 401 and "bridge_queue_jobs" not in refused.text
        assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
        scraped = requests.get(url, headers={"Authorization": "Bearer s3cret-scrape-token"}, timeout=5)
        assert scraped.status_code == 200 and "bridge_queue_jobs" in scraped.text
    finally:
        server.shutdown()
        server.server_close()
