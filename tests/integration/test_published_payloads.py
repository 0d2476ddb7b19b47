"""Payloads nobody here wrote, through the intake and the workers: WooCommerce's REST docs orders,
shopify.dev's published samples (2026-04 and 2024-01), and the "Send test notification" body a real
store received. Sources and oddities: tests/fixtures/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job, JobStatus

from bridge.app import create_app
from config.settings import Settings
from tests.conftest import FakeApi, fixture_bytes, fixture_json, make_stores, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext
from workers.platforms import ADAPTERS

WOO, SHOP = "coffee-woo", "coffee-shopify"
DOCS_SHOPIFY_ORDER = "820982911946154500"   # the samples' id, as the scraped copy rounded it


@pytest.fixture
def bridge(settings: Settings, redis_conn: Redis) -> Iterator[tuple[FlaskClient, WorkerContext]]:
    """A bridge whose Shopify store allows test orders: the published samples are test orders."""
    stores = make_stores(**{SHOP: {"allow_test_orders": True}})
    ctx = WorkerContext.build(settings, stores, redis_conn)
    context.install(ctx)
    yield create_app(settings, stores, redis_conn).test_client(), ctx
    context.install(None)


def post(client: FlaskClient, platform: str, case: str, topic: str) -> Any:
    body = fixture_bytes(platform, case)        # the published bytes, as they are
    store = WOO if platform == "woocommerce" else SHOP
    return client.post(f"/webhooks/{platform}/{store}", data=body, headers=webhook_headers(platform, body, topic))


# --- WooCommerce's REST docs -----------------------------------------------------------------------

def test_docs_order_727_is_awarded_once_with_names_a_person_can_read(bridge: tuple[FlaskClient, WorkerContext],
                                                                     api: FakeApi) -> None:
    client, ctx = bridge
    api.create_ok(points=293)
    assert post(client, "woocommerce", "docs_order_727_processing", "order.created").status_code == 202
    assert post(client, "woocommerce", "docs_order_727_completed", "order.updated").json["status"] == "duplicate"
    run_jobs(ctx)
    (body,) = api.bodies("transactions/create")
    assert (body["order_id"], body["order_total"], body["currency"], body["user_email"]) == (
        "WC-727", 29.35, "USD", "john.doe@example.com")
    assert [i["product_name"] for i in body["cart_items"]] == ["Woo Single #1",
                                                               "Ship Your Idea – Color: Black, Size: M Test"]


def test_docs_order_729_unescapes_every_name(bridge: tuple[FlaskClient, WorkerContext], api: FakeApi) -> None:
    client, ctx = bridge
    api.create_ok()
    post(client, "woocommerce", "docs_order_729_processing", "order.created")
    run_jobs(ctx)
    names = [i["product_name"] for i in api.bodies("transactions/create")[0]["cart_items"]]
    assert all("&" not in name and "–" in name for name in names) and len(names) == 2


def test_docs_order_728_pending_is_acknowledged_and_ignored(bridge: tuple[FlaskClient, WorkerContext]) -> None:
    client, _ = bridge
    answer = post(client, "woocommerce", "docs_order_728_pending", "order.created")
    assert (answer.status_code, answer.json["status"]) == (200, "ignored")
    assert "pending and not paid" in answer.json["reason"]


def test_docs_order_723_completed_by_hand_is_awarded_and_both_refunds_taken_back(
        bridge: tuple[FlaskClient, WorkerContext], api: FakeApi) -> None:
    """Completed by the shop (bank transfer) with date_paid null: completed means paid. Its refunds
    carry the key "refund" instead of "reason"."""
    client, ctx = bridge
    api.create_ok(points=390)
    api.deduct_ok()
    assert post(client, "woocommerce", "docs_order_723_two_refunds", "order.updated").status_code == 202
    run_jobs(ctx)
    assert [b["order_total"] for b in api.bodies("transactions/create")] == [39.0]
    assert [(b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")] == [
        ("724", 90), ("726", 100)]                          # 390 × 9 / 39 and 390 × 10 / 39
    assert ctx.ledger.get(WOO, "WC-723").points_remaining == 200


def test_a_legacy_api_order_is_ignored_saying_which_setting_to_change(bridge: tuple[FlaskClient, WorkerContext]) -> None:
    client, _ = bridge
    answer = post(client, "woocommerce", "docs_legacy_v3_order_645", "order.created")
    assert (answer.status_code, answer.json["status"]) == (200, "ignored")
    assert "WP REST API Integration v3" in answer.json["reason"]


def test_the_refunds_api_shape_says_what_a_refund_was_for() -> None:
    """Order 723 with its refunds as the refunds API lists them: amounts positive, lines negative,
    each line pointing to the order's line through _refunded_item_id."""
    store = make_stores()[WOO]
    order = fixture_json("woocommerce", "docs_order_723_two_refunds") | {
        "refunds": fixture_json("woocommerce", "docs_refunds_list_723")}
    by_line = ADAPTERS["woocommerce"].map_refund(order, "724", store)
    assert by_line.amount == Decimal("9.00") and by_line.items is not None
    assert (by_line.items.goods, by_line.items.lines) == (Decimal("9.00"), {"311": 1})
    money_only = ADAPTERS["woocommerce"].map_refund(order, "726", store)
    assert (money_only.amount, money_only.items) == (Decimal("10.00"), None)


# --- Shopify's published samples -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["test_notification_orders_paid", "dev_2026-04_orders_paid", "dev_2024-01_orders_paid"])
def test_a_voided_cancelled_sample_earns_nothing_even_where_test_orders_may(
        bridge: tuple[FlaskClient, WorkerContext], api: FakeApi, case: str) -> None:
    """Shopify's own samples are test orders that were voided and cancelled: "Send test notification"
    (the first webhook every store owner sends) must get a 2xx and award nothing."""
    client, ctx = bridge
    answer = post(client, "shopify", case, "orders/paid")
    assert answer.status_code in (200, 202)
    run_jobs(ctx)
    assert api.calls("transactions/create") == []
    record = ctx.ledger.get(SHOP, "SH-1234")
    assert record.skipped is not None and "voided" in record.skipped.reason


def test_the_test_notifications_free_line_with_a_discount_is_worth_zero_not_minus_five() -> None:
    order = ADAPTERS["shopify"].map_order(fixture_json("shopify", "test_notification_orders_paid"), make_stores()[SHOP])
    assert [line.total for line in order.lines] == [Decimal("0.00"), Decimal("0.00")]
    assert order.total == Decimal("5.00") and order.undone is not None


@pytest.mark.parametrize(("order", "refund", "amount", "goods"), [
    ("dev_2026-04_orders_paid", "dev_2026-04_refunds_create", "85.00", "414.95"),
    ("dev_2024-01_orders_paid", "dev_2024-01_refunds_create", "85.00", "398.00"),
])
def test_published_refund_samples_map_and_take_nothing_from_an_order_that_earned_nothing(
        bridge: tuple[FlaskClient, WorkerContext], api: FakeApi, order: str, refund: str, amount: str,
        goods: str) -> None:
    """Their transactions name no currency (the lines' money says USD) and their lines are numbers."""
    client, ctx = bridge
    mapped = ADAPTERS["shopify"].map_refund(fixture_json("shopify", refund), "1", ctx.stores[SHOP])
    assert (mapped.amount, mapped.currency) == (Decimal(amount), "USD")
    assert mapped.items is not None and mapped.items.goods == Decimal(goods)
    post(client, "shopify", order, "orders/paid")
    assert post(client, "shopify", refund, "refunds/create").status_code == 202
    run_jobs(ctx)
    assert api.calls("transactions/create") == [] and api.calls("transactions/deduct-points") == []
    refunds = ctx.ledger.get(SHOP, "SH-1234").refunds
    assert [r.points for r in refunds.values()] == [0] and "earned nothing" in next(iter(refunds.values())).source


def test_an_exception_a_mapper_raises_fails_the_job_at_once_with_the_reason(
        bridge: tuple[FlaskClient, WorkerContext], api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong reading a payload cannot be fixed by retrying it (it used to be retried
    up to 20 times as if the worker had crashed)."""
    client, ctx = bridge

    def broken(payload: Any, store: Any) -> Any:
        raise ZeroDivisionError("decimal division by zero")

    monkeypatch.setattr(ADAPTERS["shopify"], "map_order", broken)
    post(client, "shopify", "orders_paid", "orders/paid")
    run_jobs(ctx)
    job = Job.fetch("paid-coffee-shopify-5619882082369", connection=ctx.connection)
    assert job.get_status() == JobStatus.FAILED and not job.number_of_retries
    assert job.meta["failure_reason"] == "cannot read the order: (payload): ZeroDivisionError: decimal division by zero"
    kept = ctx.events.payloads.get(job.id)
    assert kept is not None and kept.payload == fixture_bytes("shopify", "orders_paid").decode()  # for a replay
