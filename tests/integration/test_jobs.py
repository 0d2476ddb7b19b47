"""Real jobs through a real Redis and RQ's own worker; only Loyalty.lt's side is faked (responses)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge.app import create_app
from config.settings import Settings
from tests.conftest import FakeApi, fixture_bytes, make_stores, run_jobs, webhook_headers
from workers.context import WorkerContext
from workers.ledger import AppliedRefund

WOO = "coffee-woo"
SHOP = "coffee-shopify"
S_ORDER = "5619882082369"


def deliver(client: FlaskClient, platform: str, case: str, topic: str, body: bytes | None = None) -> Any:
    body = body if body is not None else fixture_bytes(platform, case)
    store = WOO if platform == "woocommerce" else SHOP
    resp = client.post(f"/webhooks/{platform}/{store}", data=body, headers=webhook_headers(platform, body, topic))
    assert resp.status_code in (200, 202), resp.json
    return resp


def purchase(reference: str, points: int, tx_id: int = 9001, **extra: Any) -> dict[str, Any]:
    return {"id": tx_id, "type": "purchase", "points": points, "amount": 1, "currency": "EUR",
            "reference_number": reference, "status": "completed", "user": {"id": 77}, "loyalty_card": {"id": 501},
            "metadata": {"store": WOO}, **extra}


def failed_ids(ctx: WorkerContext) -> list[str]:
    return FailedJobRegistry(queue=ctx.events.queue).get_job_ids()


def test_woocommerce_paid_order_is_one_exact_create_call(client: FlaskClient, worker_ctx: WorkerContext,
                                                         api: FakeApi) -> None:
    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    assert api.bodies("transactions/create") == [{
        "user_email": "jonas.jonaitis@example.com", "order_id": "WC-4210", "order_total": 27.83, "currency": "EUR",
        "shop_id": 12, "partner_card_id": 3,
        "cart_items": [
            {"product_id": 101, "product_name": "Kavos pupelės Etiopija 1 kg", "quantity": 2, "unit_price": 9.68,
             "total_price": 19.36, "sku": "BEANS-ETH-1KG"},
            {"product_id": 102, "product_name": "Keramikinis puodelis", "quantity": 1, "unit_price": 4.84,
             "total_price": 4.84, "sku": "MUG-CER"}],
        "meta_data": {"platform": "woocommerce", "store": WOO, "platform_order_id": "4210", "items_count": 2},
    }]
    call = api.calls("transactions/create")[0]
    assert call.request.headers["X-API-Key"] == "lty_test_key"
    record = worker_ctx.ledger.get(WOO, "WC-4210")
    assert record.award is not None
    assert (record.award.points, record.award.transaction_id, record.award.base) == (278, 9001, Decimal("27.83"))
    assert worker_ctx.events.ended("paid-coffee-woo-4210").outcome == "awarded"   # type: ignore[union-attr]
    assert not Job.exists("paid-coffee-woo-4210", connection=worker_ctx.connection)  # RQ keeps no finished job


def test_shopify_paid_order_is_one_exact_create_call(client: FlaskClient, worker_ctx: WorkerContext,
                                                     api: FakeApi) -> None:
    api.create_ok(points=495, locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    (body,) = api.bodies("transactions/create")
    assert body["user_email"] == "ona.onaite@example.com"
    assert (body["order_id"], body["order_total"], body["currency"]) == ("SH-1001", 49.5, "EUR")
    assert [(i["product_id"], i["quantity"], i["total_price"]) for i in body["cart_items"]] == \
        [(8234567001, 2, 27.0), (8234567002, 1, 18.0)]
    assert body["meta_data"]["platform_order_id"] == S_ORDER
    assert "shop_id" not in body
    assert api.calls("transactions/create")[0].request.url.startswith("https://api.loyalty.test/lt/shop/")


def test_a_store_without_its_shop_api_remembers_no_order_version(client: FlaskClient, worker_ctx: WorkerContext,
                                                                  api: FakeApi) -> None:
    api.create_ok(points=495, locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    assert worker_ctx.ledger.get(SHOP, "SH-1001").award is not None
    assert list(worker_ctx.connection.scan_iter("lb:shop:seen:*")) == []  # no sync or backfill to spare


@pytest.mark.parametrize(("case", "expected_email"), [
    ("orders_paid_contact_email", "petras@example.org"),
    ("orders_paid_customer_email", "rasa@example.net"),
])
def test_shopify_email_falls_back(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi, case: str,
                                  expected_email: str) -> None:
    api.create_ok(locale="lt")
    deliver(client, "shopify", case, "orders/paid")
    run_jobs(worker_ctx)
    assert [b["user_email"] for b in api.bodies("transactions/create")] == [expected_email]


@pytest.mark.parametrize(("platform", "case", "topic", "reference", "reason"), [
    ("woocommerce", "guest_no_email", "order.created", "WC-4216", "guest order without an email"),
    ("shopify", "orders_paid_no_email", "orders/paid", "SH-1004", "guest order without an email"),
    ("shopify", "orders_paid_test", "orders/paid", "SH-1005", "test order"),
])
def test_orders_that_earn_nothing_are_skipped_with_a_reason(client: FlaskClient, worker_ctx: WorkerContext,
                                                            api: FakeApi, platform: str, case: str, topic: str,
                                                            reference: str, reason: str) -> None:
    deliver(client, platform, case, topic)
    run_jobs(worker_ctx)
    assert api.calls("transactions/create") == []
    store = WOO if platform == "woocommerce" else SHOP
    record = worker_ctx.ledger.get(store, reference)
    assert record.skipped is not None and reason in record.skipped.reason
    assert failed_ids(worker_ctx) == []


def test_test_orders_earn_when_the_store_allows_them(settings: Settings, redis_conn: Redis,
                                                     api: FakeApi) -> None:
    from workers import context

    stores = make_stores(**{SHOP: {"allow_test_orders": True}})
    ctx = WorkerContext.build(settings, stores, redis_conn)
    context.install(ctx)
    try:
        api.create_ok(locale="lt")
        deliver(create_app(settings, stores, redis_conn).test_client(), "shopify", "orders_paid_test", "orders/paid")
        run_jobs(ctx)
    finally:
        context.install(None)
    assert len(api.calls("transactions/create")) == 1


@pytest.mark.parametrize(("platform", "case", "total", "items"), [
    ("woocommerce", "gift_card", 36.30, ["SET-1"]),
    ("shopify", "orders_paid_gift_card", 30.00, ["TASTE-SET"]),
])
def test_gift_cards_never_earn(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi, platform: str,
                               case: str, total: float, items: list[str]) -> None:
    api.create_ok(locale="en" if platform == "woocommerce" else "lt")
    deliver(client, platform, case, "order.created" if platform == "woocommerce" else "orders/paid")
    run_jobs(worker_ctx)
    (body,) = api.bodies("transactions/create")
    assert body["order_total"] == total
    assert [i["sku"] for i in body["cart_items"]] == items


@pytest.mark.parametrize(("platform", "case", "points", "amount", "total"), [
    ("woocommerce", "points_coupon", 500, 5.0, 43.40),
    ("woocommerce", "points_fee", 500, 5.0, 43.40),
    ("shopify", "orders_paid_points_discount", 300, 3.0, 30.00),
])
def test_points_spent_on_the_order_are_sent(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi,
                                            platform: str, case: str, points: int, amount: float,
                                            total: float) -> None:
    api.create_ok(locale="en" if platform == "woocommerce" else "lt")
    deliver(client, platform, case, "order.created" if platform == "woocommerce" else "orders/paid")
    run_jobs(worker_ctx)
    (body,) = api.bodies("transactions/create")
    assert (body["points_redeemed"], body["points_discount_amount"], body["order_total"]) == (points, amount, total)


def test_other_currencies_are_sent_as_is(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi) -> None:
    api.create_ok()
    deliver(client, "woocommerce", "usd", "order.created")
    run_jobs(worker_ctx)
    assert [(b["currency"], b["order_total"]) for b in api.bodies("transactions/create")] == [("USD", 15.0)]


def test_redelivery_and_replay_change_nothing(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi) -> None:
    from workers.ops import requeue

    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    deliver(client, "woocommerce", "completed", "order.updated")      # same order, later status
    deliver(client, "woocommerce", "processing", "order.updated")     # plain redelivery
    run_jobs(worker_ctx)
    job = worker_ctx.events.restore("paid-coffee-woo-4210")     # from its kept payload
    assert job is not None
    requeue(worker_ctx.events, job, worker_ctx.retry_policy)    # an operator replays it
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/create")) == 1
    assert worker_ctx.events.ended(job.id).outcome == "already awarded"   # type: ignore[union-attr]


def test_partial_refund_is_one_proportional_deduct(client: FlaskClient, worker_ctx: WorkerContext,
                                                   api: FakeApi) -> None:
    api.create_ok(points=278, user_id=77)
    api.deduct_ok(transaction_id=9100)
    deliver(client, "woocommerce", "processing", "order.created")
    deliver(client, "woocommerce", "partial_refund", "order.updated")
    run_jobs(worker_ctx)
    deliver(client, "woocommerce", "partial_refund", "order.updated")  # redelivered: nothing new
    run_jobs(worker_ctx)
    # The card and a description both of Loyalty.lt's own clients sent, plus the order's fields.
    assert api.bodies("transactions/deduct-points") == [{
        "card_id": 501, "card_number": "000-000-501", "user_id": 77, "points": 48,  # floor(278 * 4.84 / 27.83)
        "description": "Refund 4301 of WC-4210", "shop_id": 12, "order_id": "WC-4210", "refund_id": "4301",
        "refund_amount": 4.84, "currency": "EUR", "reason": "Damaged mug",
        "meta_data": {"platform": "woocommerce", "store": WOO, "reference": "WC-4210", "platform_order_id": "4210",
                      "refund_id": "4301", "kind": "refund", "refund_amount": "4.84"},
    }]
    record = worker_ctx.ledger.get(WOO, "WC-4210")
    assert record.points_remaining == 230


def test_full_refund_and_cancellation_take_back_exactly_what_remains(client: FlaskClient, worker_ctx: WorkerContext,
                                                                     api: FakeApi) -> None:
    api.create_ok(points=278)
    api.deduct_ok()
    deliver(client, "woocommerce", "processing", "order.created")
    deliver(client, "woocommerce", "two_refunds", "order.updated")
    deliver(client, "woocommerce", "refunded", "order.updated")
    run_jobs(worker_ctx)
    points = [(b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")]
    # 4301: floor(278*4.84/27.83)=48; 4302: floor(278*5/27.83)=49; 4303 refunds the rest: 278-48-49=181.
    assert points == [("4301", 48), ("4302", 49), ("4303", 181)]
    record = worker_ctx.ledger.get(WOO, "WC-4210")
    assert record.points_remaining == 0
    assert record.refunds["cancel"].points == 0  # the cancellation found nothing left


def test_shopify_refunds_resolve_the_reference_and_cap_at_what_remains(client: FlaskClient,
                                                                       worker_ctx: WorkerContext,
                                                                       api: FakeApi) -> None:
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    deliver(client, "shopify", "refunds_create_partial", "refunds/create")
    deliver(client, "shopify", "refunds_create_failed_transaction", "refunds/create")
    deliver(client, "shopify", "refunds_create_full", "refunds/create")
    deliver(client, "shopify", "orders_cancelled", "orders/cancelled")
    run_jobs(worker_ctx)
    points = [(b["order_id"], b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")]
    assert points == [("SH-1001", "929361465", 120), ("SH-1001", "929361466", 375)]
    record = worker_ctx.ledger.get(SHOP, "SH-1001")
    assert record.refunds["929361467"].points == 0   # its refund transaction failed: no money back
    assert record.refunds["cancel"].points == 0
    assert record.points_remaining == 0


def test_refund_before_its_order_waits_then_applies(client: FlaskClient, worker_ctx: WorkerContext,
                                                    api: FakeApi) -> None:
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    deliver(client, "shopify", "refunds_create_partial", "refunds/create")   # out of order
    run_jobs(worker_ctx, rounds=2)
    refund_job = Job.fetch(f"refund-coffee-shopify-{S_ORDER}-929361465", connection=worker_ctx.connection)
    assert refund_job.get_status() == JobStatus.SCHEDULED                   # waiting, not failed
    assert api.calls("transactions/deduct-points") == []
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    assert [b["points"] for b in api.bodies("transactions/deduct-points")] == [120]
    assert worker_ctx.events.ended(refund_job.id).outcome == "deducted"  # type: ignore[union-attr]
    assert failed_ids(worker_ctx) == []


def test_refund_of_a_skipped_order_is_skipped_with_a_reason(client: FlaskClient, worker_ctx: WorkerContext,
                                                            api: FakeApi) -> None:
    guest = json.loads(fixture_bytes("woocommerce", "guest_no_email"))
    guest["refunds"] = [{"id": 4400, "reason": "Returned", "total": "-5.00"}]
    deliver(client, "woocommerce", "", "order.updated", json.dumps(guest).encode())
    run_jobs(worker_ctx)
    assert api.calls("transactions/deduct-points") == []
    refund = worker_ctx.ledger.get(WOO, "WC-4216").refunds["4400"]
    assert refund.points == 0 and "earned nothing" in refund.source


def test_cancellation_of_an_order_never_awarded_here_waits_in_the_ledger(client: FlaskClient,
                                                                         worker_ctx: WorkerContext,
                                                                         api: FakeApi) -> None:
    deliver(client, "woocommerce", "cancelled_after_payment", "order.updated")
    run_jobs(worker_ctx)
    assert api.calls("transactions/deduct-points") == []
    record = worker_ctx.ledger.get(WOO, "WC-4214")
    assert record.pending["cancel"].kind == "cancel" and record.refunds == {}
    assert worker_ctx.events.ended("cancel-coffee-woo-4214").outcome == "pending the award"  # type: ignore[union-attr]


def test_409_marks_the_order_awarded_from_the_list(client: FlaskClient, worker_ctx: WorkerContext,
                                                   api: FakeApi) -> None:
    api.error("transactions/create", 409, {"success": False, "code": "RESOURCE_ALREADY_EXISTS",
                                           "message": "Transaction already processed for this order"})
    api.listing([purchase("WC-4210", 300, tx_id=4444)])
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    award = worker_ctx.ledger.get(WOO, "WC-4210").award
    assert award is not None and (award.points, award.transaction_id, award.source) == (300, 4444, "already existed")
    assert failed_ids(worker_ctx) == []
    assert "reference_number=WC-4210" in api.calls("transactions")[0].request.url


def test_retryable_error_then_success(client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi) -> None:
    api.error("transactions/create", 503, headers={"Retry-After": "0"})
    api.listing([])
    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/create")) == 2
    assert worker_ctx.ledger.get(WOO, "WC-4210").award is not None
    assert worker_ctx.events.ended("paid-coffee-woo-4210").attempts == 2  # type: ignore[union-attr]


def test_permanent_error_ends_in_the_failed_registry_with_a_readable_reason(client: FlaskClient,
                                                                           worker_ctx: WorkerContext,
                                                                           api: FakeApi) -> None:
    api.error("transactions/create", 422, {"success": False, "message": "Validation failed", "code": "VALIDATION_ERROR",
                                           "errors": {"order_total": ["The order total must be at least 0."]}})
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/create")) == 1                     # not retried
    assert failed_ids(worker_ctx) == ["paid-coffee-woo-4210"]
    job = Job.fetch("paid-coffee-woo-4210", connection=worker_ctx.connection)
    reason = job.meta["failure_reason"]
    assert "422 VALIDATION_ERROR: Validation failed (order_total: The order total must be at least 0.)" in reason
    kept = worker_ctx.events.payloads.get(job.id)
    assert kept is not None and kept.payload == fixture_bytes("woocommerce", "processing").decode()  # for replay
    record = worker_ctx.ledger.get(WOO, "WC-4210")
    assert record.failed is not None and record.failed.reason == reason
    assert record.inflight == {}                                          # refused: nothing landed
    assert "test-api-secret" not in reason


def test_the_dashboards_requeue_is_a_fresh_start_like_a_replay(client: FlaskClient, worker_ctx: WorkerContext,
                                                               api: FakeApi) -> None:
    """rq-dashboard's Requeue button knows nothing of the bridge's retry window: a job failed two days
    ago and requeued there still gets its retries, as `bridge replay` would give it."""
    api.error("transactions/create", 422, {"success": False, "message": "Validation failed", "code": 422})
    api.error("transactions/create", 502)
    api.listing([])
    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    job = Job.fetch("paid-coffee-woo-4210", connection=worker_ctx.connection)
    job.created_at = job.created_at - timedelta(days=2)
    job.save()
    FailedJobRegistry(queue=worker_ctx.events.queue).requeue(job.id)   # what the dashboard does
    run_jobs(worker_ctx)
    assert worker_ctx.events.ended("paid-coffee-woo-4210").attempts == 2  # type: ignore[union-attr]
    assert len(api.calls("transactions/create")) == 3                     # 422, then 502 retried, then 200
    record = worker_ctx.ledger.get(WOO, "WC-4210")
    assert record.award is not None and record.failed is None


def test_a_payload_that_cannot_be_mapped_fails_naming_the_field(client: FlaskClient, worker_ctx: WorkerContext,
                                                                api: FakeApi) -> None:
    order = json.loads(fixture_bytes("woocommerce", "processing"))
    order["line_items"][1]["quantity"] = "two"
    deliver(client, "woocommerce", "", "order.created", json.dumps(order).encode())
    run_jobs(worker_ctx)
    assert api.calls("transactions/create") == []
    job = Job.fetch("paid-coffee-woo-4210", connection=worker_ctx.connection)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta["failure_reason"].startswith("cannot read the order: line_items.1.quantity:")


def test_answer_lost_after_the_create_landed_is_recovered_through_the_list(client: FlaskClient,
                                                                          worker_ctx: WorkerContext,
                                                                          api: FakeApi) -> None:
    """The crash window: Loyalty.lt made the transaction, the worker never heard back."""
    api.mock.post(api.url("transactions/create"), body=requests.ConnectionError("connection reset"))
    api.listing([purchase("WC-4210", 278, tx_id=5555)])
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/create")) == 1                     # never called twice
    award = worker_ctx.ledger.get(WOO, "WC-4210").award
    assert award is not None and (award.transaction_id, award.source) == (5555, "recovered")
    assert worker_ctx.ledger.get(WOO, "WC-4210").inflight == {}


def test_answer_lost_after_a_deduct_landed_is_recovered_through_the_list(client: FlaskClient,
                                                                        worker_ctx: WorkerContext,
                                                                        api: FakeApi) -> None:
    api.create_ok(points=278)
    api.mock.post(api.url("transactions/deduct-points"), body=requests.ReadTimeout("read timed out"))
    api.listing([{"id": 6666, "type": "refund", "points": -48, "reference_number": "WC-4210",
                  "metadata": {"refund_id": "4301", "store": WOO}}])
    deliver(client, "woocommerce", "partial_refund", "order.updated")
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/deduct-points")) == 1
    applied = worker_ctx.ledger.get(WOO, "WC-4210").refunds["4301"]
    assert (applied.points, applied.transaction_id, applied.source) == (48, 6666, "recovered")


def test_a_deduction_another_job_left_unrecorded_counts_before_the_next(client: FlaskClient,
                                                                        worker_ctx: WorkerContext,
                                                                        api: FakeApi) -> None:
    """The cancellation took everything, but its worker died before recording it; a refund of the
    same order that runs before the cancellation's retry must not take points back a second time."""
    api.create_ok(points=495, locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    worker_ctx.ledger.mark_in_flight(SHOP, "SH-1001", "refund:cancel", f"cancel-coffee-shopify-{S_ORDER}",
                                     deduction=AppliedRefund(points=495, amount=Decimal("49.50"), share=Decimal(1),
                                                             at="2026-11-27T10:00:00+00:00", kind="cancel"))
    api.listing([{"id": 7777, "type": "refund", "points": -495, "reference_number": "SH-1001",
                  "metadata": {"refund_id": "cancel", "kind": "cancel", "refund_amount": "49.50"}}], locale="lt")
    deliver(client, "shopify", "refunds_create_partial", "refunds/create")
    run_jobs(worker_ctx)
    assert api.calls("transactions/deduct-points") == []
    record = worker_ctx.ledger.get(SHOP, "SH-1001")
    cancel = record.refunds["cancel"]
    assert (cancel.points, cancel.amount, cancel.transaction_id, cancel.kind) == (495, Decimal("49.50"), 7777, "cancel")
    assert record.refunds["929361465"].points == 0
    assert record.points_remaining == 0 and record.inflight == {}


def test_recovering_another_jobs_deduction_leaves_this_jobs_own_landed_call_alone(client: FlaskClient,
                                                                                  worker_ctx: WorkerContext,
                                                                                  api: FakeApi) -> None:
    """Found by a 3000-order chaos run: this refund's own call had landed (answer lost) while the
    cancellation's call had not; recovering "the others" must not record this refund as done by
    someone else and then deduct it a second time."""
    api.create_ok(points=495, locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    refund_job = f"refund-coffee-shopify-{S_ORDER}-929361465"
    worker_ctx.ledger.mark_in_flight(SHOP, "SH-1001", "refund:929361465", refund_job)
    worker_ctx.ledger.mark_in_flight(SHOP, "SH-1001", "refund:cancel", f"cancel-coffee-shopify-{S_ORDER}")
    api.listing([{"id": 7001, "type": "refund", "points": -120, "reference_number": "SH-1001",
                  "metadata": {"refund_id": "929361465", "kind": "refund", "refund_amount": "12.00"}}], locale="lt")
    deliver(client, "shopify", "refunds_create_partial", "refunds/create")
    run_jobs(worker_ctx)
    assert api.calls("transactions/deduct-points") == []
    record = worker_ctx.ledger.get(SHOP, "SH-1001")
    applied = record.refunds["929361465"]
    assert (applied.points, applied.transaction_id, applied.source) == (120, 7001, "recovered")
    assert record.points_remaining == 375
    assert record.inflight == {}      # the cancellation's call is not listed, and cannot land any more


def test_an_in_flight_mark_with_nothing_landed_calls_once(client: FlaskClient, worker_ctx: WorkerContext,
                                                          api: FakeApi) -> None:
    """A worker died before its call left: the retry finds nothing at Loyalty.lt and calls."""
    worker_ctx.ledger.mark_in_flight(WOO, "WC-4210", "award", "paid-coffee-woo-4210")
    api.listing([])
    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    run_jobs(worker_ctx)
    assert len(api.calls("transactions")) == 1
    assert len(api.calls("transactions/create")) == 1
    assert worker_ctx.ledger.get(WOO, "WC-4210").award is not None


def test_retries_stop_after_the_window_with_the_last_reason(client: FlaskClient, settings: Settings,
                                                            redis_conn: Redis, api: FakeApi) -> None:
    from workers import context

    short = settings.model_copy(update={"retry_window": 1, "retry_base_delay": 0.2, "retry_max_delay": 0.2})
    # Retries this fast would soon wait for the rate limit's pace instead of failing on the 502.
    stores = make_stores(**{WOO: {"rate_limit_per_minute": 100_000}})
    ctx = WorkerContext.build(short, stores, redis_conn)
    context.install(ctx)
    try:
        api.error("transactions/create", 502)
        api.listing([])
        deliver(create_app(short, stores, redis_conn).test_client(), "woocommerce", "processing",
                "order.created")
        run_jobs(ctx, rounds=20)
    finally:
        context.install(None)
    assert failed_ids(ctx) == ["paid-coffee-woo-4210"]
    reason = Job.fetch("paid-coffee-woo-4210", connection=redis_conn).meta["failure_reason"]
    assert reason.startswith("gave up after 1s of retries:") and "502" in reason
    assert len(api.calls("transactions/create")) >= 2  # it did retry before giving up


def test_customers_redact_deletes_the_kept_payloads_of_their_orders(client: FlaskClient, worker_ctx: WorkerContext,
                                                                    api: FakeApi) -> None:
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    api.create_ok(points=300, locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    deliver(client, "shopify", "refunds_create_partial", "refunds/create")
    deliver(client, "shopify", "orders_paid_contact_email", "orders/paid")   # another customer's order
    run_jobs(worker_ctx)
    deliver(client, "shopify", "customers_redact", "customers/redact")
    run_jobs(worker_ctx)
    conn = worker_ctx.connection
    payloads = worker_ctx.events.payloads
    assert payloads.get(f"paid-coffee-shopify-{S_ORDER}") is None
    assert payloads.get(f"refund-coffee-shopify-{S_ORDER}-929361465") is None
    assert worker_ctx.events.arrivals(f"paid-coffee-shopify-{S_ORDER}") == []
    assert payloads.get("paid-coffee-shopify-5619882082370") is not None               # not covered
    redact = payloads.get("redact-coffee-shopify-customer_6207347376193")
    assert redact is not None and redact.payload == "{}"                             # the request is not kept
    assert worker_ctx.events.ended(redact.job_id).outcome == "redacted"  # type: ignore[union-attr]
    kept = [payloads.get(k.decode().removeprefix("lb:payload:")) for k in conn.keys("lb:payload:*")]
    assert "ona.onaite" not in repr([conn.dump(k) for k in conn.keys("*")] + kept).lower()
    assert worker_ctx.ledger.get(SHOP, "SH-1001").award is not None                  # no double award later


def test_shop_redact_deletes_every_kept_payload_of_the_store(client: FlaskClient, worker_ctx: WorkerContext,
                                                             api: FakeApi) -> None:
    api.create_ok(locale="lt")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    deliver(client, "shopify", "orders_paid_contact_email", "orders/paid")
    deliver(client, "woocommerce", "pending", "order.created")
    run_jobs(worker_ctx)
    deliver(client, "shopify", "shop_redact", "shop/redact")
    run_jobs(worker_ctx)
    conn = worker_ctx.connection
    assert conn.keys("rq:job:*") == []                                 # RQ keeps no finished job
    left = sorted(k.decode() for k in conn.keys("lb:payload:*"))
    assert left == ["lb:payload:redact-coffee-shopify-shop"]               # the request's own, emptied


def test_a_cancellation_seen_before_the_payment_means_no_award(client: FlaskClient, worker_ctx: WorkerContext,
                                                               api: FakeApi) -> None:
    deliver(client, "shopify", "orders_cancelled", "orders/cancelled")   # Shopify delivers out of order
    run_jobs(worker_ctx)
    deliver(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(worker_ctx)
    assert api.calls("transactions/create") == []
    skipped = worker_ctx.ledger.get(SHOP, "SH-1001").skipped
    assert skipped is not None and "cancelled before" in skipped.reason


def test_a_job_rq_lost_track_of_is_found_and_requeued(client: FlaskClient, worker_ctx: WorkerContext,
                                                      api: FakeApi) -> None:
    """A worker killed between RQ setting "scheduled" and scheduling the job leaves it nowhere."""
    api.create_ok(points=278)
    deliver(client, "woocommerce", "processing", "order.created")
    conn = worker_ctx.connection
    job = Job.fetch("paid-coffee-woo-4210", connection=conn)
    conn.lrem(worker_ctx.events.queue.key, 0, job.id)      # held nowhere...
    job.set_status(JobStatus.SCHEDULED)                     # ...but marked as if it were
    assert worker_ctx.events.sweep(older_than=60) == []     # too recent to be called lost
    assert worker_ctx.events.sweep(older_than=-1) == ["paid-coffee-woo-4210"]
    run_jobs(worker_ctx)
    assert worker_ctx.ledger.get(WOO, "WC-4210").award is not None
    assert conn.zcard(worker_ctx.events.open_jobs_key) == 0


def test_the_sweep_looks_at_a_job_held_where_it_should_be_only_once_per_period(
        client: FlaskClient, worker_ctx: WorkerContext) -> None:
    """A backlog queued for hours is found where it should be and re-scored, so that the next
    maintenance runs do not search the queue for each of its jobs again."""
    deliver(client, "woocommerce", "processing", "order.created")
    conn, key = worker_ctx.connection, worker_ctx.events.open_jobs_key
    conn.zadd(key, {"paid-coffee-woo-4210": 1.0})                # queued long ago, still waiting its turn
    before = time.time()
    assert worker_ctx.events.sweep(older_than=60) == []          # held in the queue: not lost
    assert conn.zscore(key, "paid-coffee-woo-4210") >= before    # ...and not due another look for 60 s
    assert conn.zrangebyscore(key, 0, time.time() - 60) == []


def test_a_429_pauses_the_api_key_for_every_job_until_retry_after(client: FlaskClient, worker_ctx: WorkerContext,
                                                                  api: FakeApi) -> None:
    """Both stores share one API key: the first job's 429 holds back the other job too, and each comes
    back when the pause ends, as a wait (no backoff), not a failure."""
    from rq.registry import ScheduledJobRegistry

    for locale in ("en", "lt"):
        api.error("transactions/create", 429, headers={"Retry-After": "30"}, locale=locale)
    deliver(client, "woocommerce", "processing", "order.created")
    deliver(client, "shopify", "orders_paid", "orders/paid")
    started = time.time()
    run_jobs(worker_ctx)
    assert len(api.calls("transactions/create")) == 1      # the second job never called: the key was paused
    registry = ScheduledJobRegistry(queue=worker_ctx.events.queue)
    jobs = {job_id: registry.get_scheduled_time(job_id).timestamp() - started for job_id in registry.get_job_ids()}
    assert set(jobs) == {"paid-coffee-woo-4210", f"paid-coffee-shopify-{S_ORDER}"}
    assert all(29 <= delay <= 32 for delay in jobs.values()), jobs
    for job_id in jobs:
        job = Job.fetch(job_id, connection=worker_ctx.connection)
        assert "failures" not in job.meta                   # a wait: a later 5xx backs off from the start
    assert failed_ids(worker_ctx) == []
