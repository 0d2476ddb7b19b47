"""Shopify's GraphQL orders translate back into the webhook JSON faithfully: the emulator serves each
published-shape fixture as the GraphQL Admin API would (one order read alone, or the rows of a bulk
operation's JSONL file), the client's translation turns it back, and the adapter maps the result
exactly as it maps the original (and every translated field equals the original's)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest

from bridge.sandbox.bulk_operations import rows_of
from bridge.sandbox.shopify import order_node
from tests.conftest import FIXTURES, fixture_json, make_stores
from workers.platforms import ADAPTERS
from workers.platforms.shopify import bulk, graphql

STORE = make_stores()["coffee-shopify"]
ORDERS = sorted(p.stem for p in (FIXTURES / "shopify").glob("orders_*.json"))
PUBLISHED = ["dev_2024-01_orders_paid", "dev_2026-04_orders_paid", "test_notification_orders_paid"]
REFUNDS = sorted(p.stem for p in (FIXTURES / "shopify").glob("refunds_create_*.json"))
shopify = ADAPTERS["shopify"]


def served(order: dict[str, Any]) -> dict[str, Any]:
    """The order as the emulated GraphQL Admin API answers it, through JSON like over HTTP."""
    return json.loads(json.dumps(order_node(order)))


def bulk_served(order: dict[str, Any]) -> dict[str, Any]:
    """The order as a bulk operation's file gives it, one JSON line a row, rebuilt from ``__parentId``
    by the client; its refunds (ids only in the file) as the client then reads each alone."""
    lines = [json.dumps(row).encode() for row in rows_of(order_node(order, len(order.get("line_items") or []) or 1))]
    [grouped] = bulk.group(lines).values()
    return {**bulk.assemble(grouped), "refunds": served(order)["refunds"]}


READINGS = {"graphql": served, "bulk": bulk_served}


def same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and "T" in a and "T" in b:
        try:
            return datetime.fromisoformat(a) == datetime.fromisoformat(b)
        except ValueError:
            return False
    try:
        return a is not None and b is not None and not isinstance(a, bool) and Decimal(str(a)) == Decimal(str(b))
    except InvalidOperation:
        return False


def differences(translated: Any, original: Any, path: str = "") -> list[str]:
    """Where the translation says something the original does not (fields it leaves out are fine)."""
    if isinstance(translated, dict):
        if not isinstance(original, dict):
            return [f"{path}: {translated!r} vs {original!r}"]
        return [d for key, value in translated.items()
                for d in (differences(value, original[key], f"{path}.{key}") if key in original
                          else ([] if value in (None, [], {}) else [f"{path}.{key}: not in the webhook"]))]
    if isinstance(translated, list):
        if not isinstance(original, list) or len(original) != len(translated):
            return [f"{path}: {len(translated)} entries vs {original!r}"]
        return [d for i, (t, o) in enumerate(zip(translated, original, strict=True))
                for d in differences(t, o, f"{path}[{i}]")]
    return [] if same(translated, original) else [f"{path}: {translated!r} vs {original!r}"]


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("case", ORDERS)
def test_an_order_served_as_graphql_maps_exactly_as_its_webhook(case: str, reading: str) -> None:
    original = fixture_json("shopify", case)
    translated = graphql.order(READINGS[reading](original))
    assert shopify.map_order(translated, STORE) == shopify.map_order(original, STORE)
    # GraphQL has one contact address where REST has `email` and `contact_email`.
    expected = {**original, "email": original.get("email") or original.get("contact_email")}
    # A refund's line item is the order's line as it is now (GraphQL has no snapshot of it at the
    # time of the refund, and the bridge reads it from the order): after a cancellation its
    # current_quantity is 0 where the webhook, sent at refund time, still said what was left then.
    assert [d for d in differences(translated, expected) if ".line_item.current_quantity:" not in d
            or ".refund_line_items[" not in d] == []


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("case", PUBLISHED)
def test_a_published_order_served_as_graphql_maps_as_its_webhook(case: str, reading: str) -> None:
    """Shopify's own samples (tests/fixtures/README.md) map the same whether they come as a webhook,
    through the sync's GraphQL reading or through a backfill's bulk operation file. (Their fields are
    not compared one by one: the samples' numeric ids were rounded by JavaScript where their gids
    were not.)"""
    original = fixture_json("shopify", case)
    assert shopify.map_order(graphql.order(READINGS[reading](original)), STORE) == \
        shopify.map_order(original, STORE)


@pytest.mark.parametrize("case", REFUNDS)
def test_a_refund_served_as_graphql_maps_exactly_as_its_webhook(case: str) -> None:
    original = fixture_json("shopify", case)
    order = {**fixture_json("shopify", "orders_paid"), "refunds": [original]}
    translated = graphql.refund(served(order)["refunds"][0], order["id"])
    refund_id = str(original["id"])
    assert shopify.map_refund(translated, refund_id, STORE) == shopify.map_refund(original, refund_id, STORE)
    assert differences(translated, original) == []
    assert shopify.classify("refunds/create", json.dumps(translated).encode(), STORE) == \
        shopify.classify("refunds/create", json.dumps(original).encode(), STORE)


def test_a_cancelled_order_yields_its_payment_each_refund_oldest_first_and_the_cancellation() -> None:
    original = fixture_json("shopify", "orders_cancelled")
    topics = [(topic, payload.get("id")) for topic, payload in graphql.deliveries(served(original))]
    refunds = sorted(original["refunds"], key=lambda r: r["created_at"])
    assert topics == [("orders/paid", original["id"]), *[("refunds/create", r["id"]) for r in refunds],
                      ("orders/cancelled", original["id"])]


def test_an_unpaid_order_yields_nothing_and_money_keeps_two_decimals() -> None:
    pending = fixture_json("shopify", "orders_create")
    assert pending["financial_status"] == "pending"
    assert graphql.deliveries(served(pending)) == []
    assert [graphql.amount(v) for v in ("49.5", "5.0", "0.0", "12.345", "-3.72")] == \
        ["49.50", "5.00", "0.00", "12.345", "-3.72"]


def test_a_node_without_identity_fields_leaves_them_out_so_the_adapter_names_them() -> None:
    node = served(fixture_json("shopify", "orders_paid"))
    del node["number"], node["currencyCode"]
    translated = graphql.order(node)
    assert "order_number" not in translated and "currency" not in translated
    from workers.orders import MappingError

    with pytest.raises(MappingError, match="order_number|currency"):
        shopify.map_order(translated, STORE)
