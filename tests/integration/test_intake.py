"""The intake against a real Redis: every fixture's answer and job, and every documented answer."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from werkzeug.serving import make_server

from bridge.app import create_app
from bridge.embedded_redis import free_port
from config.settings import Settings
from config.stores import Stores
from tests.conftest import SHOPIFY_SECRET, WOO_SECRETS, fixture_bytes, webhook_headers
from workers.event_queue import EventQueue

WOO = "coffee-woo"
SHOP = "coffee-shopify"
S_ORDER = "5619882082369"

# fixture, topic, expected answer status, expected job ids (empty: nothing queued)
WOO_CASES: list[tuple[str, str, int, list[str]]] = [
    ("processing", "order.created", 202, ["paid-coffee-woo-4210"]),
    ("completed", "order.updated", 202, ["paid-coffee-woo-4210"]),
    ("pending", "order.created", 200, []),
    ("on_hold", "order.updated", 200, []),
    ("failed", "order.updated", 200, []),
    ("partial_refund", "order.updated", 202, ["paid-coffee-woo-4210", "refund-coffee-woo-4210-4301"]),
    ("two_refunds", "order.updated", 202,
     ["paid-coffee-woo-4210", "refund-coffee-woo-4210-4301", "refund-coffee-woo-4210-4302"]),
    ("refunded", "order.updated", 202,
     ["refund-coffee-woo-4210-4301", "refund-coffee-woo-4210-4303", "cancel-coffee-woo-4210"]),
    ("cancelled_after_payment", "order.updated", 202, ["cancel-coffee-woo-4214"]),
    ("cancelled_unpaid", "order.updated", 200, []),
    ("guest_no_email", "order.created", 202, ["paid-coffee-woo-4216"]),
    ("guest_with_email", "order.created", 202, ["paid-coffee-woo-4217"]),
    ("gift_card", "order.created", 202, ["paid-coffee-woo-4218"]),
    ("points_coupon", "order.created", 202, ["paid-coffee-woo-4219"]),
    ("points_fee", "order.created", 202, ["paid-coffee-woo-4220"]),
    ("usd", "order.created", 202, ["paid-coffee-woo-4221"]),
    ("big_order", "order.created", 202, ["paid-coffee-woo-4222"]),
    ("sequential_number", "order.created", 202, ["paid-coffee-woo-4223"]),
    ("action_topic", "action.woocommerce_order_status_changed", 200, []),
    ("processing", "order.deleted", 200, []),
]
SHOPIFY_CASES: list[tuple[str, str, int, list[str]]] = [
    ("orders_paid", "orders/paid", 202, [f"paid-coffee-shopify-{S_ORDER}"]),
    ("orders_paid_contact_email", "orders/paid", 202, ["paid-coffee-shopify-5619882082370"]),
    ("orders_paid_customer_email", "orders/paid", 202, ["paid-coffee-shopify-5619882082371"]),
    ("orders_paid_no_email", "orders/paid", 202, ["paid-coffee-shopify-5619882082372"]),
    ("orders_paid_test", "orders/paid", 202, ["paid-coffee-shopify-5619882082373"]),
    ("orders_paid_gift_card", "orders/paid", 202, ["paid-coffee-shopify-5619882082374"]),
    ("orders_paid_points_discount", "orders/paid", 202, ["paid-coffee-shopify-5619882082375"]),
    ("orders_cancelled", "orders/cancelled", 202, [f"cancel-coffee-shopify-{S_ORDER}"]),
    ("refunds_create_partial", "refunds/create", 202, [f"refund-coffee-shopify-{S_ORDER}-929361465"]),
    ("refunds_create_full", "refunds/create", 202, [f"refund-coffee-shopify-{S_ORDER}-929361466"]),
    ("refunds_create_failed_transaction", "refunds/create", 202, [f"refund-coffee-shopify-{S_ORDER}-929361467"]),
    ("orders_create", "orders/create", 200, []),
    ("orders_paid", "orders/updated", 200, []),
    ("customers_redact", "customers/redact", 202, ["redact-coffee-shopify-customer_6207347376193"]),
    ("shop_redact", "shop/redact", 202, ["redact-coffee-shopify-shop"]),
    ("customers_data_request", "customers/data_request", 200, []),
]


def post(client: FlaskClient, platform: str, store: str, body: bytes, topic: str, **kw: Any) -> Any:
    return client.post(f"/webhooks/{platform}/{store}", data=body, headers=webhook_headers(platform, body, topic, **kw))


def queued_ids(redis_conn: Redis) -> list[str]:
    return Queue("loyalty", connection=redis_conn).get_job_ids()


@pytest.mark.parametrize(("case", "topic", "status", "jobs"), WOO_CASES, ids=[f"woo-{c[0]}-{c[1]}" for c in WOO_CASES])
def test_woocommerce_fixture(client: FlaskClient, redis_conn: Redis, case: str, topic: str, status: int,
                             jobs: list[str]) -> None:
    body = fixture_bytes("woocommerce", case)
    resp = post(client, "woocommerce", WOO, body, topic)
    assert resp.status_code == status, resp.json
    assert_jobs(redis_conn, resp.json, jobs, body)


@pytest.mark.parametrize(("case", "topic", "status", "jobs"), SHOPIFY_CASES,
                         ids=[f"shopify-{c[0]}-{c[1]}" for c in SHOPIFY_CASES])
def test_shopify_fixture(client: FlaskClient, redis_conn: Redis, case: str, topic: str, status: int,
                         jobs: list[str]) -> None:
    body = fixture_bytes("shopify", case)
    resp = post(client, "shopify", SHOP, body, topic)
    assert resp.status_code == status, resp.json
    assert_jobs(redis_conn, resp.json, jobs, body)


def assert_jobs(redis_conn: Redis, answer: dict[str, Any], jobs: list[str], body: bytes) -> None:
    if not jobs:
        assert answer["status"] == "ignored" and answer["reason"]
        assert queued_ids(redis_conn) == []
        return
    assert answer == {"status": "queued", "job_id": jobs[0], "job_ids": jobs}
    assert queued_ids(redis_conn) == jobs
    for job_id in jobs:
        job = Job.fetch(job_id, connection=redis_conn)
        assert job.get_status() == JobStatus.QUEUED
        (event,) = job.args
        kept = EventQueue(redis_conn, Settings()).payloads.get(job_id)
        assert kept is not None and kept.payload == body.decode()  # kept exactly as delivered, ready for replay
        assert job_id.startswith(event["kind"])
        assert "@" not in (job.description or "")


def test_sequential_number_gives_the_reference(client: FlaskClient, redis_conn: Redis) -> None:
    post(client, "woocommerce", WOO, fixture_bytes("woocommerce", "sequential_number"), "order.created")
    (event,) = Job.fetch("paid-coffee-woo-4223", connection=redis_conn).args
    assert event["reference"] == "WC-2024-0042"


def test_same_delivery_twice_is_one_job(client: FlaskClient, redis_conn: Redis) -> None:
    body = fixture_bytes("woocommerce", "processing")
    first = post(client, "woocommerce", WOO, body, "order.created")
    again = post(client, "woocommerce", WOO, body, "order.updated", delivery_id="d-2")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "job_id": "paid-coffee-woo-4210", "job_ids": ["paid-coffee-woo-4210"]}
    assert queued_ids(redis_conn) == ["paid-coffee-woo-4210"]
    arrivals = EventQueue(redis_conn, Settings()).arrivals("paid-coffee-woo-4210")
    assert [(a.outcome, a.delivery_id) for a in arrivals] == [("duplicate", "d-2"), ("queued", "d-1")]


def test_a_new_refund_on_a_known_order_queues_only_the_refund(client: FlaskClient, redis_conn: Redis) -> None:
    post(client, "woocommerce", WOO, fixture_bytes("woocommerce", "processing"), "order.created")
    resp = post(client, "woocommerce", WOO, fixture_bytes("woocommerce", "partial_refund"), "order.updated")
    assert resp.status_code == 202
    assert resp.json["job_ids"] == ["refund-coffee-woo-4210-4301"]


def test_the_order_index_links_reference_and_order_id(client: FlaskClient, redis_conn: Redis) -> None:
    post(client, "shopify", SHOP, fixture_bytes("shopify", "orders_paid"), "orders/paid")
    index = EventQueue(redis_conn, Settings())
    assert index.reference_for(SHOP, S_ORDER) == "SH-1001"
    assert index.order_id_for(SHOP, "SH-1001") == S_ORDER


@pytest.mark.parametrize("secret", WOO_SECRETS)
def test_every_secret_of_a_rotation_verifies(client: FlaskClient, secret: str) -> None:
    resp = post(client, "woocommerce", WOO, fixture_bytes("woocommerce", "processing"), "order.created", secret=secret)
    assert resp.status_code == 202


@pytest.mark.parametrize("how", ["missing", "wrong secret", "altered body", "garbage"])
def test_bad_signature_is_401_and_queues_nothing(client: FlaskClient, redis_conn: Redis, how: str) -> None:
    body = fixture_bytes("woocommerce", "processing")
    headers = webhook_headers("woocommerce", body, "order.created", secret="not-the-secret" if how == "wrong secret"
                              else None)
    if how == "missing":
        del headers["X-WC-Webhook-Signature"]
    if how == "garbage":
        headers["X-WC-Webhook-Signature"] = "%%%"
    if how == "altered body":
        body = body.replace(b"processing", b"completed", 1)
    resp = client.post(f"/webhooks/woocommerce/{WOO}", data=body, headers=headers)
    assert resp.status_code == 401
    assert resp.json == {"status": "error", "error": "invalid signature"}
    assert queued_ids(redis_conn) == []
    for secret in WOO_SECRETS:
        assert secret not in resp.get_data(as_text=True)


def test_a_shopify_signature_does_not_open_a_woocommerce_store(client: FlaskClient) -> None:
    body = fixture_bytes("woocommerce", "processing")
    headers = webhook_headers("woocommerce", body, "order.created", secret=SHOPIFY_SECRET)
    assert client.post(f"/webhooks/woocommerce/{WOO}", data=body, headers=headers).status_code == 401


@pytest.mark.parametrize("path", ["/webhooks/woocommerce/nope", f"/webhooks/shopify/{WOO}",
                                  f"/webhooks/magento/{WOO}", "/webhooks/woocommerce/"])
def test_unknown_store_or_platform_is_404(client: FlaskClient, path: str) -> None:
    body = fixture_bytes("woocommerce", "processing")
    resp = client.post(path, data=body, headers=webhook_headers("woocommerce", body, "order.created"))
    assert resp.status_code == 404
    assert resp.json["status"] == "error"


def test_body_over_the_limit_is_413(settings: Settings, stores: Stores, redis_conn: Redis) -> None:
    small = create_app(settings.model_copy(update={"max_body_bytes": 1024}), stores, redis_conn).test_client()
    body = fixture_bytes("woocommerce", "big_order")
    assert len(body) > 1024
    resp = post(small, "woocommerce", WOO, body, "order.created")
    assert resp.status_code == 413
    assert resp.json["status"] == "error"


def test_chunked_body_over_the_limit_is_413(settings: Settings, stores: Stores, redis_conn: Redis) -> None:
    """Without Content-Length the limit holds while the body is read."""
    app = create_app(settings.model_copy(update={"max_body_bytes": 1024}), stores, redis_conn)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = fixture_bytes("woocommerce", "big_order")
    try:
        resp = requests.post(f"http://127.0.0.1:{server.server_port}/webhooks/woocommerce/{WOO}",
                             data=(body[i:i + 512] for i in range(0, len(body), 512)),
                             headers=webhook_headers("woocommerce", body, "order.created"), timeout=10)
    finally:
        server.shutdown()
    assert resp.status_code == 413
    assert queued_ids(redis_conn) == []


def test_signed_invalid_json_is_400(client: FlaskClient, redis_conn: Redis) -> None:
    resp = post(client, "woocommerce", WOO, b'{"id": 1, "status": ', "order.created")
    assert resp.status_code == 400
    assert resp.json == {"status": "error", "error": "body is not valid JSON"}
    assert queued_ids(redis_conn) == []


@pytest.mark.parametrize("body", [b"[]", b'"text"', b'{"id": "x"}', b"{}"])
def test_signed_json_of_another_shape_is_ignored_not_refused(client: FlaskClient, body: bytes) -> None:
    resp = post(client, "woocommerce", WOO, body, "order.updated")
    assert resp.status_code == 200
    assert resp.json["status"] == "ignored"


def test_woocommerce_ping_is_200_without_a_signature(client: FlaskClient, redis_conn: Redis) -> None:
    body = fixture_bytes("woocommerce", "ping.txt")
    resp = client.post(f"/webhooks/woocommerce/{WOO}", data=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "ping": True}
    assert queued_ids(redis_conn) == []
    # Anything more than the ping still needs a signature.
    resp = client.post(f"/webhooks/woocommerce/{WOO}", data=body + b"&x=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 401


def test_redis_down_is_503_with_retry_after(settings: Settings, stores: Stores) -> None:
    dead = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    client = create_app(settings, stores, dead).test_client()
    resp = post(client, "woocommerce", WOO, fixture_bytes("woocommerce", "processing"), "order.created")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == str(settings.unavailable_retry_after)
    assert resp.json["status"] == "error"
    # Unsigned or unknown requests are still answered without Redis.
    assert post(client, "woocommerce", "nope", b"{}", "order.created").status_code == 404
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_readyz_with_redis(client: FlaskClient) -> None:
    assert client.get("/readyz").json["status"] == "ok"


@pytest.fixture
def live_url(app: Flask) -> Any:
    """The app behind a real threaded HTTP server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_concurrent_identical_deliveries_make_one_job(live_url: str, redis_conn: Redis) -> None:
    body = fixture_bytes("shopify", "orders_paid")
    headers = webhook_headers("shopify", body, "orders/paid")

    def deliver(_: int) -> int:
        return requests.post(f"{live_url}/webhooks/shopify/{SHOP}", data=body, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(deliver, range(50)))
    assert statuses.count(202) == 1
    assert statuses.count(200) == 49
    assert queued_ids(redis_conn) == [f"paid-coffee-shopify-{S_ORDER}"]
    assert len(EventQueue(redis_conn, Settings()).arrivals(f"paid-coffee-shopify-{S_ORDER}")) == 50


def test_answers_are_json_with_a_stable_shape(client: FlaskClient) -> None:
    body = fixture_bytes("woocommerce", "pending")
    resp = post(client, "woocommerce", WOO, body, "order.created")
    assert resp.content_type == "application/json"
    assert set(json.loads(resp.data)) == {"status", "reason"}
