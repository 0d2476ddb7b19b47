"""Both platforms' payloads map to the same Order/Refund shape; bad payloads fail naming the field."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_json, make_stores
from workers.orders import MappingError
from workers.platforms import ADAPTERS

D = Decimal
STORES = make_stores()
STORE = {"woocommerce": STORES["coffee-woo"], "shopify": STORES["coffee-shopify"]}

# platform, case, reference, email, total, shipping (excl. tax), tax, base (amount_basis total), redeemed, test
ORDERS: list[tuple[str, str, str, str | None, str, str, str, str, int, bool]] = [
    ("woocommerce", "processing", "WC-4210", "jonas.jonaitis@example.com", "27.83", "3.00", "4.83", "27.83", 0, False),
    ("woocommerce", "guest_no_email", "WC-4216", None, "12.10", "0.00", "2.10", "12.10", 0, False),
    ("woocommerce", "gift_card", "WC-4218", "jonas.jonaitis@example.com", "61.30", "0.00", "6.30", "36.30", 0, False),
    ("woocommerce", "points_coupon", "WC-4219", "jonas.jonaitis@example.com", "43.40", "0.00", "7.53", "43.40", 500,
     False),
    ("woocommerce", "points_fee", "WC-4220", "jonas.jonaitis@example.com", "43.40", "0.00", "8.40", "43.40", 500, False),
    ("woocommerce", "sequential_number", "WC-2024-0042", "jonas.jonaitis@example.com", "12.10", "0.00", "2.10",
     "12.10", 0, False),
    ("shopify", "orders_paid", "SH-1001", "ona.onaite@example.com", "49.50", "3.72", "8.59", "49.50", 0, False),
    ("shopify", "orders_paid_no_email", "SH-1004", None, "24.20", "0.00", "4.20", "24.20", 0, False),
    ("shopify", "orders_paid_test", "SH-1005", "ona.onaite@example.com", "24.20", "0.00", "4.20", "24.20", 0, True),
    ("shopify", "orders_paid_gift_card", "SH-1006", "ona.onaite@example.com", "55.00", "0.00", "5.21", "30.00", 0,
     False),
    ("shopify", "orders_paid_points_discount", "SH-1007", "ona.onaite@example.com", "30.00", "0.00", "5.21", "30.00",
     300, False),
]


@pytest.mark.parametrize("row", ORDERS, ids=[f"{r[0]}-{r[1]}" for r in ORDERS])
def test_orders_map_to_the_same_shape(row: tuple[Any, ...]) -> None:
    platform, case, reference, email, total, shipping, tax, base, redeemed, test = row
    store = STORE[platform]
    order = ADAPTERS[platform].map_order(fixture_json(platform, case), store)
    assert (order.reference, order.email, order.total, order.shipping, order.tax) == \
        (reference, email, D(total), D(shipping), D(tax))
    assert order.points_base(store) == D(base)
    assert (order.points_redeemed, order.test, order.currency) == (redeemed, test, "EUR")
    assert order.lines and all(line.total > 0 for line in order.lines)


def test_shopify_amount_basis_takes_out_shipping_and_tax() -> None:
    payload = fixture_json("shopify", "orders_paid")
    for basis, base in [("total_excl_shipping", "45.00"), ("total_excl_shipping_and_tax", "37.19")]:
        store = make_stores(**{"coffee-shopify": {"amount_basis": basis}})["coffee-shopify"]
        assert ADAPTERS["shopify"].map_order(payload, store).points_base(store) == D(base)


@pytest.mark.parametrize(("platform", "case", "refund_id", "amount", "reason"), [
    ("woocommerce", "two_refunds", "4301", "4.84", "Damaged mug"),
    ("woocommerce", "two_refunds", "4302", "5.00", "Goodwill"),
    ("shopify", "refunds_create_partial", "929361465", "12.00", "Damaged"),
    ("shopify", "refunds_create_failed_transaction", "929361467", "0.00", "Retry refund"),
])
def test_refunds_map_to_the_money_given_back(platform: str, case: str, refund_id: str, amount: str,
                                             reason: str) -> None:
    refund = ADAPTERS[platform].map_refund(fixture_json(platform, case), refund_id, STORE[platform])
    assert (refund.refund_id, refund.amount, refund.reason) == (refund_id, D(amount), reason)


def test_a_refund_id_missing_from_the_order_names_the_field() -> None:
    with pytest.raises(MappingError, match="^refunds: no refund with id 999"):
        ADAPTERS["woocommerce"].map_refund(fixture_json("woocommerce", "partial_refund"), "999", STORE["woocommerce"])


@pytest.mark.parametrize(("platform", "change", "field"), [
    ("woocommerce", {"total": "lots"}, "total"),
    ("woocommerce", {"currency": None}, "currency"),
    ("shopify", {"total_price": None}, "total_price"),
    ("shopify", {"line_items": [{"title": "x"}]}, "line_items.0.quantity"),
])
def test_bad_payloads_fail_naming_the_field(platform: str, change: dict[str, Any], field: str) -> None:
    payload = fixture_json(platform, "processing" if platform == "woocommerce" else "orders_paid") | change
    with pytest.raises(MappingError) as caught:
        ADAPTERS[platform].map_order(payload, STORE[platform])
    assert caught.value.field == field


# Plus the numbers that break naive Decimal arithmetic.
awkward = st.sampled_from(["NaN", "Infinity", "-0", "1e999999", "-1e30", "12,50", 10**30, -1, 0, "0.005"])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | awkward,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)
order_keys = ["id", "number", "status", "currency", "total", "total_tax", "shipping_total", "billing", "line_items",
              "coupon_lines", "fee_lines", "refunds", "email", "total_price", "order_number", "name", "order_id",
              "transactions", "shipping_lines", "discount_codes", "customer", "total_shipping_price_set"]


@settings(max_examples=300, deadline=None)
@given(platform=st.sampled_from(sorted(ADAPTERS)),
       payload=st.dictionaries(st.sampled_from(order_keys), json_values, max_size=12) | json_values)
def test_any_json_maps_or_fails_cleanly(platform: str, payload: Any) -> None:
    """Hostile input: whatever the JSON, mapping gives a model or a MappingError, nothing else."""
    adapter = ADAPTERS[platform]
    for attempt in (lambda: adapter.map_order(payload, STORE[platform]),
                    lambda: adapter.map_refund(payload, "1", STORE[platform]),
                    lambda: adapter.order_reference(payload, STORE[platform])):
        try:
            attempt()
        except MappingError as exc:
            assert str(exc)


# --- the order version a delivery fed whole ---------------------------------------------------------

def fed_versions(platform: str, topic: str, case: str) -> list[str | None]:
    """The version each event of one delivery would remember, in the order the intake submits them."""
    payload, store = fixture_json(platform, case), STORE[platform]
    events = ADAPTERS[platform].classify(topic, json.dumps(payload).encode(), store)
    assert isinstance(events, list)
    found = [ADAPTERS[platform].fed_version(e, payload, store) for e in events]
    return [f.isoformat() if f else None for f in found]


@pytest.mark.parametrize(("platform", "topic", "case", "versions"), [
    # Nothing but the payment in it: its updated_at, in UTC.
    ("shopify", "orders/paid", "orders_paid", ["2026-11-18T12:03:11+00:00"]),
    # Shopify's own samples are cancelled too: the cancellation is another delivery's event.
    ("shopify", "orders/paid", "dev_2026-04_orders_paid", [None]),
    # Cancelled with three refunds in it, which this delivery does not feed.
    ("shopify", "orders/cancelled", "orders_cancelled", [None]),
    # A refund carries no version of its order (and the refund changed it).
    ("shopify", "refunds/create", "refunds_create_partial", [None]),
    # The whole order, every event in it: the last event's job remembers date_modified_gmt.
    ("woocommerce", "order.updated", "two_refunds", [None, None, "2026-11-19T14:40:22+00:00"]),
    ("woocommerce", "order.created", "processing", ["2026-11-16T12:05:42+00:00"]),
    ("woocommerce", "order.updated", "docs_order_723_two_refunds", [None, None, "2017-03-21T19:54:51+00:00"]),
])
def test_a_delivery_proves_the_version_whose_every_event_it_fed(platform: str, topic: str, case: str,
                                                                 versions: list[str | None]) -> None:
    assert fed_versions(platform, topic, case) == versions


def test_a_payload_that_cannot_say_its_version_proves_none() -> None:
    store = STORE["shopify"]
    payload = {**fixture_json("shopify", "orders_paid")}
    event = ADAPTERS["shopify"].classify("orders/paid", json.dumps(payload).encode(), store)[0]  # type: ignore[index]
    for broken in ({"updated_at": 1700000000}, {"updated_at": "yesterday"}, {"refunds": None}):
        assert ADAPTERS["shopify"].fed_version(event, {**payload, **broken}, store) is None
    woo = fixture_json("woocommerce", "processing")
    woo_event = ADAPTERS["woocommerce"].classify("order.updated", json.dumps(woo).encode(), STORE["woocommerce"])[0]  # type: ignore[index]
    # date_modified is in the site's time zone, unknown here: without the GMT time there is no version.
    assert ADAPTERS["woocommerce"].fed_version(woo_event, {**woo, "date_modified_gmt": None},
                                               STORE["woocommerce"]) is None
