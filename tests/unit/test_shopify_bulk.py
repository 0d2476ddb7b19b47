"""A bulk operation's JSONL file read back into orders: children after their parent but not next to
it, a file cut short, rows the bridge cannot have asked for; and the emulator's bulk rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.sandbox.bulk_operations import rule_errors
from workers.platforms.shopify import bulk

ORDER_1, ORDER_2 = "gid://shopify/Order/1", "gid://shopify/Order/2"


def lines(*rows: dict[str, Any]) -> list[bytes]:
    return [json.dumps(row).encode() for row in rows]


def test_children_are_put_under_their_order_wherever_they_come_in_the_file() -> None:
    grouped = bulk.group(lines(
        {"id": ORDER_1, "name": "#1"}, {"id": ORDER_2, "name": "#2"},
        {"__typename": "LineItem", "id": "gid://shopify/LineItem/20", "__parentId": ORDER_2},
        {"__typename": "LineItem", "id": "gid://shopify/LineItem/10", "__parentId": ORDER_1},
        {"__typename": "DiscountCodeApplication", "index": 0, "code": "X", "__parentId": ORDER_1},
        {"__typename": "ShippingLine", "id": "gid://shopify/ShippingLine/11", "__parentId": ORDER_1},
        {"__typename": "LineItem", "id": "gid://shopify/LineItem/12", "__parentId": ORDER_1}))
    assert list(grouped) == [ORDER_1, ORDER_2]
    first, second = (bulk.assemble(order_lines) for order_lines in grouped.values())
    assert first["name"] == "#1"
    assert [n["id"] for n in first["lineItems"]["nodes"]] == ["gid://shopify/LineItem/10", "gid://shopify/LineItem/12"]
    assert first["discountApplications"]["nodes"] == [{"index": 0, "code": "X"}]
    assert [n["id"] for n in first["shippingLines"]["nodes"]] == ["gid://shopify/ShippingLine/11"]
    assert [n["id"] for n in second["lineItems"]["nodes"]] == ["gid://shopify/LineItem/20"]
    assert second["shippingLines"] == {"nodes": []}


@pytest.mark.parametrize("row", [
    {"__typename": "LineItem", "id": "gid://shopify/LineItem/1", "__parentId": "gid://shopify/Order/9"},
    {"__typename": "Fulfillment", "id": "gid://shopify/Fulfillment/1", "__parentId": ORDER_1},
])
def test_a_row_the_query_cannot_have_given_is_refused(row: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not an order before it"):
        bulk.group(lines({"id": ORDER_1}, row))


def test_a_file_cut_short_is_told_from_a_whole_one() -> None:
    whole = b'{"id":"gid://shopify/Order/1"}\n{"id":"gid://shopify/Order/2"}\n'
    assert len(list(bulk.read_lines([whole[:20], whole[20:]], len(whole)))) == 2
    with pytest.raises(bulk.PartialFile, match="ends mid-line"):
        list(bulk.read_lines([whole[:40]], len(whole)))
    with pytest.raises(bulk.PartialFile, match="31 of 62 bytes"):
        list(bulk.read_lines([whole[:31]], len(whole)))


def test_the_emulator_refuses_what_shopify_refuses_and_runs_the_bridges_query() -> None:
    assert rule_errors(bulk.orders_query("updated_at:>='2026-01-01T00:00:00Z'")) == []
    six = "{ orders { edges { node { id " + " ".join(
        f"c{i}: lineItems {{ edges {{ node {{ id }} }} }}" for i in range(5)) + " } } } }"
    assert rule_errors(six) == ["Bulk queries cannot contain more than 5 connections."]
    deep = "{ orders { edges { node { id lineItems { edges { node { id a { edges { node { id } } } } } } } } } }"
    assert rule_errors(deep) == ["Bulk queries cannot contain connections with a nesting depth greater than 2."]
    assert rule_errors("{ node(id: \"x\") { id } }")[0] == "Bulk queries cannot contain a top level `node` field."
    assert rule_errors("{ shop { name } }") == ["Bulk queries must contain at least one connection."]
