"""The exactly-once promise where it is hardest to keep: answers lost while Loyalty.lt is still
working, refunds racing each other, refunds months after the award or before it, refunds that are
partly tax, shipping or gift cards, and refunds in the customer's currency.

Real jobs through a real Redis and RQ's own worker; only Loyalty.lt's side is faked (responses),
including a list that shows a transaction only some time after it was made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest
import requests
import responses
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from bridge.app import create_app
from config.settings import Settings
from tests.conftest import FakeApi, fixture_json, make_stores, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext
from workers.ledger import AppliedRefund, Award

WOO, SHOP = "coffee-woo", "coffee-shopify"
S_ORDER = "5619882082369"
DAY = 86400


class Bridge:
    """An intake and a worker context for one test, with the stores changed as the test says."""

    def __init__(self, settings: Settings, redis_conn: Redis, **stores: dict[str, Any]) -> None:
        self.stores = make_stores(**stores)
        self.ctx = WorkerContext.build(settings, self.stores, redis_conn)
        self.client = create_app(settings, self.stores, redis_conn).test_client()

    def deliver(self, platform: str, payload: dict[str, Any], topic: str) -> None:
        body = json.dumps(payload).encode()
        store = WOO if platform == "woocommerce" else SHOP
        resp = self.client.post(f"/webhooks/{platform}/{store}", data=body,
                                headers=webhook_headers(platform, body, topic))
        assert resp.status_code in (200, 202), resp.json

    def run(self, rounds: int = 10, horizon: float = 2.0) -> None:
        run_jobs(self.ctx, rounds=rounds, horizon=horizon)

    def record(self, store: str, reference: str) -> Any:
        return self.ctx.ledger.get(store, reference)

    def failed(self) -> list[str]:
        return FailedJobRegistry(queue=self.ctx.events.queue).get_job_ids()


@pytest.fixture
def bridge_for(settings: Settings, redis_conn: Redis) -> Iterator[Callable[..., Bridge]]:
    def build(settings_changes: dict[str, Any] | None = None, **stores: dict[str, Any]) -> Bridge:
        bridge = Bridge(settings.model_copy(update=settings_changes or {}), redis_conn, **stores)
        context.install(bridge.ctx)
        return bridge

    yield build
    context.install(None)


def deduction(tx_id: int, points: int, description: str, **extra: Any) -> dict[str, Any]:
    """A deduction as Loyalty.lt lists it."""
    return {"id": tx_id, "type": "refund", "points": -points, "description": description,
            "reference_number": extra.pop("reference_number", "REFUND-9F2C1A"), "loyalty_card": {"id": 501},
            "created_at": extra.pop("created_at", "2099-01-01T00:00:00.000Z"), **extra}


def listing_that_shows(api: FakeApi, rows: Callable[[], list[dict[str, Any]]], locale: str = "en") -> None:
    """The transaction list, answering with ``rows()`` at the moment of each call."""
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        data = rows()
        return 200, {}, json.dumps({"success": True, "code": 200, "data": data, "meta": {
            "current_page": 1, "last_page": 1, "per_page": 100, "total": len(data)}})

    api.mock.add_callback(responses.GET, api.url("transactions", locale), callback=answer)


def later(seconds: float, rows: list[dict[str, Any]]) -> Callable[[], list[dict[str, Any]]]:
    """Rows that Loyalty.lt lists only ``seconds`` from now (a slow commit)."""
    shown_at = time.monotonic() + seconds
    return lambda: rows if time.monotonic() >= shown_at else []


def expire_for(conn: Redis, seconds: int) -> list[str]:
    """Let Redis's clock run ``seconds`` forward: delete every key that would have expired by then."""
    gone = [key.decode() for key in conn.scan_iter("*") if 0 <= conn.ttl(key) <= seconds]
    if gone:
        conn.delete(*gone)
    return gone


def shopify_refund(case: str = "refunds_create_partial", **changes: Any) -> dict[str, Any]:
    return fixture_json("shopify", case) | changes


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_FLOOR))


# --- 1. refunds long after the award --------------------------------------------------------------

def test_a_shopify_refund_35_days_after_the_award_is_deducted(bridge_for: Callable[..., Bridge],
                                                              api: FakeApi) -> None:
    """refunds/create names only the order id; the reference must outlive the kept payloads (30 days)."""
    bridge = bridge_for()
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    bridge.run()
    gone = expire_for(bridge.ctx.connection, 35 * DAY)
    assert f"lb:payload:paid-coffee-shopify-{S_ORDER}" in gone       # the payloads are gone...
    bridge.deliver("shopify", shopify_refund(), "refunds/create")      # ...when the customer returns a bag
    bridge.run()
    assert [(b["order_id"], b["points"]) for b in api.bodies("transactions/deduct-points")] == [("SH-1001", 120)]
    assert bridge.failed() == []


# --- 2. deductions that land late ------------------------------------------------------------------

def test_a_deduction_answered_too_late_is_found_not_made_again(bridge_for: Callable[..., Bridge],
                                                               api: FakeApi) -> None:
    """The call times out while Loyalty.lt is still working; its retry does not see it listed yet,
    waits, and finds it when it shows, instead of deducting a second time."""
    bridge = bridge_for({"unknown_call_settle": 30})
    api.create_ok(points=278)
    api.mock.post(api.url("transactions/deduct-points"), body=requests.ReadTimeout("read timed out"))
    listing_that_shows(api, later(0.6, [deduction(6666, 48, "Refund 4301 of WC-4210")]))
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run(rounds=40)
    assert len(api.calls("transactions/deduct-points")) == 1
    applied = bridge.record(WOO, "WC-4210").refunds["4301"]
    assert (applied.points, applied.transaction_id, applied.source) == (48, 6666, "recovered")
    assert bridge.record(WOO, "WC-4210").inflight == {}


def test_a_cancellation_waits_for_a_refund_still_landing(bridge_for: Callable[..., Bridge],
                                                         api: FakeApi) -> None:
    """A refund's deduct went out and its worker died; the cancellation must not take "everything
    that remains" until it knows whether that refund landed (it did, late)."""
    bridge = bridge_for({"unknown_call_settle": 30})
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(transaction_id=9200, locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    bridge.run()
    draft = AppliedRefund(points=120, amount=Decimal("12.00"), currency="EUR", share=Decimal("12") / Decimal("49.5"),
                          at="2026-11-27T10:00:00+00:00", kind="refund")
    bridge.ctx.ledger.mark_in_flight(SHOP, "SH-1001", "refund:929361465", f"refund-coffee-shopify-{S_ORDER}-929361465",
                                     deduction=draft)
    listing_that_shows(api, later(0.6, [deduction(7001, 120, "Refund 929361465 of SH-1001")]), locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_cancelled"), "orders/cancelled")
    bridge.run(rounds=40)
    assert [(b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")] == [("cancel", 375)]
    record = bridge.record(SHOP, "SH-1001")
    assert record.refunds["929361465"].transaction_id == 7001 and record.points_remaining == 0
    bridge.deliver("shopify", shopify_refund(), "refunds/create")      # the refund's own delivery, late
    bridge.run()
    assert len(api.calls("transactions/deduct-points")) == 1
    end = bridge.ctx.events.ended(f"refund-coffee-shopify-{S_ORDER}-929361465")
    assert end is not None and end.outcome == "already applied"


def test_an_unanswered_call_is_not_made_again_while_it_may_still_land(bridge_for: Callable[..., Bridge],
                                                                      api: FakeApi) -> None:
    """An earlier attempt's call had no answer: the next attempt looks, and while the call may still
    land it waits, and leaves the earlier attempt's mark as it was."""
    bridge = bridge_for({"unknown_call_settle": 3600})
    api.create_ok(points=278)
    api.deduct_ok()
    bridge.deliver("woocommerce", fixture_json("woocommerce", "processing"), "order.created")
    bridge.run()
    draft = AppliedRefund(points=48, amount=Decimal("4.84"), at="2026-11-27T10:00:00+00:00", kind="refund")
    token = bridge.ctx.ledger.mark_in_flight(WOO, "WC-4210", "refund:4301", "refund-coffee-woo-4210-4301",
                                             deduction=draft)
    api.listing([])
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run(rounds=3)
    assert api.calls("transactions/deduct-points") == []
    mark = bridge.record(WOO, "WC-4210").inflight["refund:4301"]
    assert mark.token == token
    job = Job.fetch("refund-coffee-woo-4210-4301", connection=bridge.ctx.connection)
    assert job.get_status() == JobStatus.SCHEDULED and "had no answer" in job.meta["last_error"]
    # Nobody else takes the mark back either: only the attempt that set it may, unresolved.
    assert not bridge.ctx.ledger.clear_in_flight(WOO, "WC-4210", "refund:4301", "another attempt")
    assert "refund:4301" in bridge.record(WOO, "WC-4210").inflight


def test_an_unanswered_call_not_listed_once_it_cannot_land_is_made_again(bridge_for: Callable[..., Bridge],
                                                                         api: FakeApi) -> None:
    bridge = bridge_for({"unknown_call_settle": 0.5})
    api.create_ok(points=278)
    api.mock.post(api.url("transactions/deduct-points"), status=502, json={"success": False, "message": "Bad gateway"})
    api.deduct_ok(transaction_id=9300)
    api.listing([])
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run(rounds=40)
    assert len(api.calls("transactions/deduct-points")) == 2            # 502 (unknown), then after the settle
    applied = bridge.record(WOO, "WC-4210").refunds["4301"]
    assert (applied.points, applied.transaction_id) == (48, 9300)


def test_a_lookalike_deduction_that_names_no_refund_stops_the_job_for_a_person(
        bridge_for: Callable[..., Bridge], api: FakeApi) -> None:
    bridge = bridge_for({"unknown_call_settle": 0})
    api.create_ok(points=278)
    api.mock.post(api.url("transactions/deduct-points"), body=requests.ReadTimeout("read timed out"))
    api.listing([deduction(8080, 48, "Grąžinimas kasoje", reference_number="POS-77")])  # made at the till
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run(rounds=10)
    assert len(api.calls("transactions/deduct-points")) == 1
    assert bridge.failed() == ["refund-coffee-woo-4210-4301"]
    reason = Job.fetch("refund-coffee-woo-4210-4301", connection=bridge.ctx.connection).meta["failure_reason"]
    assert "cannot tell whether the deduction for refund 4301 of WC-4210" in reason and "8080" in reason
    assert "bridge resolve WC-4210" in reason


@pytest.mark.parametrize("listed_as", ["the bridge's metadata", "the docs' example"])
def test_a_landed_deduction_is_found_however_loyalty_lt_lists_it(bridge_for: Callable[..., Bridge], api: FakeApi,
                                                                 listed_as: str) -> None:
    bridge = bridge_for()
    api.create_ok(points=278)
    api.mock.post(api.url("transactions/deduct-points"), body=requests.ConnectionError("connection reset"))
    if listed_as == "the docs' example":     # own reference, its own metadata, our description kept
        row = deduction(6666, 48, "Refund 4301 of WC-4210", reference_number="REFUND-ABC123",
                        metadata={"source": "api", "points_deducted": 48, "reason": "Damaged mug"})
    else:
        row = deduction(6666, 48, "Grąžinimas - Damaged mug", reference_number="WC-4210",
                        metadata={"refund_id": "4301", "store": WOO})
    other = deduction(6000, 48, "Refund 4301 of WC-42", reference_number="WC-42")    # another order's, same id
    api.listing([other, row])
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run()
    assert len(api.calls("transactions/deduct-points")) == 1
    applied = bridge.record(WOO, "WC-4210").refunds["4301"]
    assert (applied.points, applied.transaction_id, applied.source) == (48, 6666, "recovered")
    query = api.calls("transactions")[0].request.url
    assert "type=refund" in query and "loyalty_card_id=501" in query and "date_from=" in query


def test_a_deduction_names_the_card_read_from_the_list_when_the_ledger_lacks_it(
        bridge_for: Callable[..., Bridge], api: FakeApi) -> None:
    bridge = bridge_for()
    award = Award(transaction_id=4444, points=278, base=Decimal("27.83"), order_total=Decimal("27.83"), currency="EUR",
                  order_id="4210", at="2026-11-01T10:00:00+00:00", user_id=77)     # recorded before cards were kept
    bridge.ctx.ledger.record_award(WOO, "WC-4210", award)
    api.listing([{"id": 4444, "type": "purchase", "points": 278, "reference_number": "WC-4210",
                  "loyalty_card": {"id": 512, "number": "000-000-512"}, "user": {"id": 77}}])
    api.deduct_ok()
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run()
    (body,) = api.bodies("transactions/deduct-points")
    assert (body["card_id"], body["card_number"], body["description"]) == (512, "000-000-512", "Refund 4301 of WC-4210")
    assert bridge.record(WOO, "WC-4210").award.loyalty_card_id == 512


# --- 3. the share of a refund that had earned points -------------------------------------------------

def test_refunded_tax_earns_nothing_back_on_a_store_that_leaves_tax_out(bridge_for: Callable[..., Bridge],
                                                                       api: FakeApi) -> None:
    bridge = bridge_for(**{SHOP: {"amount_basis": "total_excl_shipping_and_tax"}})
    api.create_ok(points=371, locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    bridge.deliver("shopify", shopify_refund(), "refunds/create")
    bridge.run()
    assert [b["order_total"] for b in api.bodies("transactions/create")] == [37.19]
    # One bag: 13.50 with 2.34 VAT inside, 12.00 paid back; its net part earned 371 × 9.92 / 37.19.
    expected = floor(Decimal(371) * Decimal("12.00") * (Decimal("13.50") - Decimal("2.34")) / Decimal("13.50")
                     / Decimal("37.19"))
    assert [b["points"] for b in api.bodies("transactions/deduct-points")] == [expected] == [98]


def test_refunded_shipping_and_gift_cards_take_back_nothing(bridge_for: Callable[..., Bridge], api: FakeApi) -> None:
    bridge = bridge_for(**{SHOP: {"amount_basis": "total_excl_shipping"}})
    api.create_ok(points=300, locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid_gift_card"), "orders/paid")
    gift_line = fixture_json("shopify", "orders_paid_gift_card")["line_items"][1]
    assert gift_line["gift_card"] is True
    gift_refund = shopify_refund(
        id=929361470, order_id=int(fixture_json("shopify", "orders_paid_gift_card")["id"]), order_adjustments=[],
        refund_line_items=[{"line_item_id": gift_line["id"], "quantity": 1, "subtotal": 25.0, "total_tax": 0.0,
                            "line_item": gift_line}],
        transactions=[{"kind": "refund", "status": "success", "amount": "25.00", "currency": "EUR"}])
    bridge.deliver("shopify", gift_refund, "refunds/create")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    shipping_refund = shopify_refund(
        id=929361471, refund_line_items=[],
        order_adjustments=[{"kind": "shipping_refund", "amount": "-3.72", "tax_amount": "-0.78"}],
        transactions=[{"kind": "refund", "status": "success", "amount": "4.50", "currency": "EUR"}])
    bridge.deliver("shopify", shipping_refund, "refunds/create")
    bridge.run()
    assert api.calls("transactions/deduct-points") == []
    assert bridge.record(SHOP, "SH-1006").refunds["929361470"].points == 0
    assert bridge.record(SHOP, "SH-1001").refunds["929361471"].points == 0


def test_a_refund_without_items_takes_its_share_of_what_was_paid(bridge_for: Callable[..., Bridge],
                                                                 api: FakeApi) -> None:
    """WooCommerce's order lists refunds as money only: 4.84 of the 27.83 paid, whatever the basis."""
    bridge = bridge_for(**{WOO: {"amount_basis": "total_excl_shipping_and_tax"}})
    api.create_ok(points=200)
    api.deduct_ok()
    bridge.deliver("woocommerce", fixture_json("woocommerce", "partial_refund"), "order.updated")
    bridge.run()
    assert [b["order_total"] for b in api.bodies("transactions/create")] == [20.0]
    assert [b["points"] for b in api.bodies("transactions/deduct-points")] == [floor(Decimal(200) * Decimal("4.84")
                                                                                     / Decimal("27.83"))] == [34]


# --- 4. currencies ------------------------------------------------------------------------------

def usd_order() -> dict[str, Any]:
    """SH-1001 paid by a US customer: 49.50 EUR to the shop, 53.90 USD on the customer's card."""
    order = fixture_json("shopify", "orders_paid")
    order["presentment_currency"] = "USD"
    order["total_price_set"]["presentment_money"] = {"amount": "53.90", "currency_code": "USD"}
    return order


def money_only_refund(refund_id: int, amount: str, currency: str | None) -> dict[str, Any]:
    transaction: dict[str, Any] = {"kind": "refund", "status": "success", "amount": amount}
    if currency:
        transaction["currency"] = currency
    return shopify_refund(id=refund_id, refund_line_items=[], order_adjustments=[], transactions=[transaction])


def test_a_refund_in_the_customers_currency_is_compared_with_what_they_paid(bridge_for: Callable[..., Bridge],
                                                                             api: FakeApi) -> None:
    bridge = bridge_for()
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", usd_order(), "orders/paid")
    bridge.deliver("shopify", money_only_refund(929361480, "26.95", "USD"), "refunds/create")   # half, in USD
    bridge.run()
    (body,) = api.bodies("transactions/deduct-points")
    assert (body["points"], body["currency"], body["refund_amount"]) == (247, "USD", 26.95)
    assert bridge.record(SHOP, "SH-1001").refunds["929361480"].share == Decimal("0.5")


@pytest.mark.parametrize(("currency", "reason"), [
    ("GBP", "refund 929361481 of SH-1001 is in GBP, but the order was paid in EUR (the customer paid in USD)"),
    (None, "refund 929361481 of SH-1001 does not say its currency, and the order was paid in USD"),
])
def test_a_refund_in_a_currency_the_order_was_not_paid_in_fails_with_the_reason(
        bridge_for: Callable[..., Bridge], api: FakeApi, currency: str | None, reason: str) -> None:
    bridge = bridge_for()
    api.create_ok(points=495, locale="lt")
    bridge.deliver("shopify", usd_order(), "orders/paid")
    bridge.deliver("shopify", money_only_refund(929361481, "5.00", currency), "refunds/create")
    bridge.run()
    assert api.calls("transactions/deduct-points") == []
    job = Job.fetch(f"refund-coffee-shopify-{S_ORDER}-929361481", connection=bridge.ctx.connection)
    assert job.get_status() == JobStatus.FAILED and job.meta["failure_reason"].startswith(reason)


# --- 5. shipping after its discounts ---------------------------------------------------------------

def free_shipping(order: dict[str, Any]) -> dict[str, Any]:
    """A free-shipping code waived the 4.50 DPD shipping (total_shipping_price_set is before discounts)."""
    line = order["shipping_lines"][0]
    zero = {"amount": "0.00", "currency_code": "EUR"}
    line.update(discounted_price="0.00", discounted_price_set={"shop_money": zero, "presentment_money": zero},
                discount_allocations=[{"amount": "4.50", "amount_set": {"shop_money": {"amount": "4.50"}}}])
    line["tax_lines"][0].update(price="0.00")
    order["total_price"] = str(Decimal(order["total_price"]) - Decimal("4.50"))
    order["total_tax"] = str(Decimal(order["total_tax"]) - Decimal("0.78"))
    return order


def test_waived_shipping_is_not_taken_out_of_the_points_base(bridge_for: Callable[..., Bridge],
                                                            api: FakeApi) -> None:
    bridge = bridge_for(**{SHOP: {"amount_basis": "total_excl_shipping"}})
    api.create_ok(locale="lt")
    bridge.deliver("shopify", free_shipping(fixture_json("shopify", "orders_paid")), "orders/paid")
    cheap = fixture_json("shopify", "orders_paid_contact_email")                 # 24.20 of goods < ...
    cheap["shipping_lines"] = [fixture_json("shopify", "orders_paid")["shipping_lines"][0]]
    cheap["shipping_lines"][0]["price"] = "29.90"                                 # ...29.90 shipping, waived
    cheap = free_shipping(cheap)
    cheap["total_price"], cheap["total_tax"] = "24.20", "4.20"
    bridge.deliver("shopify", cheap, "orders/paid")
    bridge.run()
    assert sorted(b["order_total"] for b in api.bodies("transactions/create")) == [24.2, 45.0]


# --- 6. stores sharing a Loyalty.lt key ----------------------------------------------------------

def test_a_transaction_of_another_store_on_the_same_key_is_not_taken_for_ours(bridge_for: Callable[..., Bridge],
                                                                              api: FakeApi) -> None:
    bridge = bridge_for()
    api.error("transactions/create", 409, {"success": False, "code": "RESOURCE_ALREADY_EXISTS",
                                           "message": "Transaction already processed for this order"})
    api.listing([{"id": 4444, "type": "purchase", "points": 300, "reference_number": "WC-4210",
                  "metadata": {"store": "tea-woo", "platform": "woocommerce"}}])
    bridge.deliver("woocommerce", fixture_json("woocommerce", "processing"), "order.created")
    bridge.run(rounds=3)
    assert bridge.record(WOO, "WC-4210").award is None
    job = Job.fetch("paid-coffee-woo-4210", connection=bridge.ctx.connection)
    assert "already processed but does not list it" in job.meta["last_error"]


# --- 7. refunds that came before the award ---------------------------------------------------------

def test_a_refund_before_the_award_is_applied_when_the_award_is_recovered(bridge_for: Callable[..., Bridge],
                                                                         api: FakeApi) -> None:
    """The award's answer was lost (recovered from the list); the refund that came first still counts."""
    bridge = bridge_for({"unknown_call_settle": 30})
    bridge.deliver("shopify", shopify_refund(), "refunds/create")
    bridge.ctx.events.index_order(SHOP, S_ORDER, "SH-1001")     # the order was seen (e.g. its cancellation)
    bridge.run(rounds=2)
    assert bridge.record(SHOP, "SH-1001").pending["929361465"].refund.amount == Decimal("12.00")
    api.mock.post(api.url("transactions/create", "lt"), body=requests.ReadTimeout("read timed out"))
    listing_that_shows(api, lambda: [{"id": 5555, "type": "purchase", "points": 495, "reference_number": "SH-1001",
                                      "loyalty_card": {"id": 501}, "user": {"id": 77}}], locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    bridge.run()
    assert [(b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")] == [("929361465", 120)]
    record = bridge.record(SHOP, "SH-1001")
    assert record.award.source == "recovered" and record.pending == {} and record.points_remaining == 375


def test_a_refund_before_the_award_counts_even_when_its_job_is_long_gone(bridge_for: Callable[..., Bridge],
                                                                        api: FakeApi) -> None:
    bridge = bridge_for()
    bridge.deliver("woocommerce", fixture_json("woocommerce", "cancelled_after_payment"), "order.updated")
    bridge.run()
    expire_for(bridge.ctx.connection, 31 * DAY)                       # the cancel job and its payload are gone
    assert not Job.exists("cancel-coffee-woo-4214", connection=bridge.ctx.connection)
    paid = fixture_json("woocommerce", "cancelled_after_payment") | {"status": "processing"}
    bridge.deliver("woocommerce", paid, "order.updated")              # its payment, delivered very late
    bridge.run()
    assert api.calls("transactions/create") == []
    record = bridge.record(WOO, "WC-4214")
    assert record.skipped is not None and "cancelled before its payment" in record.skipped.reason
    assert record.pending == {} and record.refunds["cancel"].points == 0


def test_refunds_before_the_award_are_applied_once_in_order(bridge_for: Callable[..., Bridge], api: FakeApi) -> None:
    bridge = bridge_for()
    bridge.deliver("shopify", shopify_refund(), "refunds/create")
    bridge.deliver("shopify", shopify_refund("refunds_create_full"), "refunds/create")
    bridge.ctx.events.index_order(SHOP, S_ORDER, "SH-1001")
    bridge.run(rounds=2)
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    bridge.deliver("shopify", fixture_json("shopify", "orders_paid"), "orders/paid")
    bridge.run()
    bridge.deliver("shopify", shopify_refund(), "refunds/create")     # redelivered
    bridge.run()
    assert [(b["refund_id"], b["points"]) for b in api.bodies("transactions/deduct-points")] == [
        ("929361465", 120), ("929361466", 375)]
    assert bridge.record(SHOP, "SH-1001").points_remaining == 0
