"""An emulated Shopify shop: the GraphQL Admin API's orders and webhook subscriptions, with real deliveries.

:class:`ShopifyShop` holds the shop's orders in the REST/webhook shape (the fixtures' shape) and
serves them as the GraphQL Admin API would: ``MoneyBag`` money with amounts like ``"49.5"``,
``gid://`` ids, upper-case enums, connections, UTC times, refunded shipping as
``refundShippingLines``. The GraphQL endpoint is ``/shopify/<shop>/admin/api/<version>/graphql.json``
(so a store's ``shop_url`` is ``http://<host>/shopify/<shop>``). It answers the bridge's operations by
their names (``BridgeCheck``, ``BridgeOrders``, ``BridgeOrdersCount``, ``BridgeOrder``,
``BridgeOrderLines``, ``BridgeRefund``, ``BridgeWebhooks``, ``BridgeWebhookCreate``,
``BridgeWebhookUpdate``, and the bulk operations' ``BridgeBulkRun``, ``BridgeBulkOperation``,
``BridgeBulkRunning``: :mod:`bridge.sandbox.bulk_operations`) with every field those queries ask
for; any other operation gets a GraphQL error. It is not a GraphQL engine, but it prices each
query from its text as Shopify does (:mod:`bridge.sandbox.query_cost`) and refuses one over the
single-query limit (``MAX_COST_EXCEEDED``), so a query too greedy for Shopify fails here too.

As Shopify does: ``X-Shopify-Access-Token`` or 401; ``ACCESS_DENIED`` without ``read_orders``; a leaky
cost bucket (``extensions.cost``) refilled at the rate Shopify publishes for the shop's plan
(``plan``, Standard by default: 100 points a second), answering ``THROTTLED`` when a query costs
more than is left;
``updated_at`` search filters and cursor paging; subscriptions whose deliveries are signed with the
app's client secret (``X-Shopify-Hmac-Sha256``) and carry ``X-Shopify-Topic``, ``-Shop-Domain``,
``-Webhook-Id``, ``-Event-Id``, ``-Triggered-At``, ``-API-Version``; after ``max_failures``
consecutive failed deliveries the subscription is removed.

``/shopify/<shop>/_emulator/...`` (not in Shopify) places orders, refunds and cancels them, with or
without delivering their webhooks, and shows the state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, Field
from werkzeug.exceptions import abort

from graphql import GraphQLSyntaxError

from bridge.sandbox.bulk_operations import FAILURES, BulkOperations, matching, rows_of
from bridge.sandbox.deliveries import Deliverer, Outgoing
from bridge.sandbox.query_cost import SINGLE_QUERY_LIMIT, actual_cost, first_of, requested_cost

TOPICS = {"ORDERS_PAID": "orders/paid", "REFUNDS_CREATE": "refunds/create", "ORDERS_CANCELLED": "orders/cancelled"}
PAID = {"paid", "partially_refunded", "refunded"}
LINES_PAGE = 100
API_VERSION = "2026-04"


class ShopifyShopConfig(BaseModel):
    """One emulated Shopify shop, its custom app's token and client secret (the webhook signing key)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    access_token: str = Field("shpat_emulated", repr=False)
    client_secret: str = Field("emulated-client-secret", repr=False)
    scopes: list[str] = Field(default_factory=lambda: ["read_orders"])
    currency: str = "EUR"
    max_failures: int = Field(8, ge=1)
    # The shop's plan sets how fast its query cost bucket refills (shopify.dev, "GraphQL Admin API
    # rate limits", 2026: points a second per app and shop); `restore_rate` overrides it.
    plan: Literal["standard", "advanced", "plus", "enterprise"] = "standard"
    restore_rate: float | None = Field(None, gt=0)
    # What the bucket holds. Shopify's table gives rates only; 1,000 is the single-query limit, the
    # least a bucket must hold for every query to start, so the emulator is never kinder than Shopify.
    bucket_size: float = Field(1000.0, gt=0)

    @property
    def rate(self) -> float:
        """The bucket's refill, points per second."""
        return self.restore_rate or PLAN_RATES[self.plan]


PLAN_RATES = {"standard": 100.0, "advanced": 200.0, "plus": 1000.0, "enterprise": 2000.0}


# --- REST → GraphQL ----------------------------------------------------------------------------------

def gid(kind: str, value: Any) -> str | None:
    return f"gid://shopify/{kind}/{value}" if value is not None else None


def _legacy(value: Any) -> int:
    """``gid://shopify/Order/123`` → 123 (0 for anything else)."""
    tail = str(value or "").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def gql_decimal(value: Any) -> str | None:
    """Money as Shopify's GraphQL Decimal writes it: ``"49.50"`` → ``"49.5"``, ``"5.00"`` → ``"5.0"``."""
    if value is None:
        return None
    number = Decimal(str(value)).normalize()
    text = format(number, "f")
    return text if "." in text else text + ".0"


def gql_time(value: Any) -> str | None:
    """A REST time with an offset as a GraphQL DateTime (UTC, ``Z``)."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def money_bag(fields: dict[str, Any], name: str, currency: str, presentment: str) -> dict[str, Any] | None:
    """``name_set`` when the REST object has it, else a bag made from the plain ``name``."""
    rest = fields.get(f"{name}_set")
    if isinstance(rest, dict):
        shop, shown = rest.get("shop_money") or {}, rest.get("presentment_money") or {}
        return {"shopMoney": {"amount": gql_decimal(shop.get("amount")), "currencyCode": shop.get("currency_code")},
                "presentmentMoney": {"amount": gql_decimal(shown.get("amount")),
                                     "currencyCode": shown.get("currency_code")}}
    if fields.get(name) is None:
        return None
    value = gql_decimal(fields[name])
    return {"shopMoney": {"amount": value, "currencyCode": currency},
            "presentmentMoney": {"amount": value, "currencyCode": presentment}}


def _negate(bag: dict[str, Any] | None) -> dict[str, Any] | None:
    if bag is None:
        return None
    return {side: {**m, "amount": gql_decimal(-Decimal(m["amount"]))} for side, m in bag.items()}


def _tax_lines(lines: Any, currency: str, presentment: str) -> list[dict[str, Any]]:
    return [{"title": t.get("title"), "rate": t.get("rate"), "channelLiable": t.get("channel_liable"),
             "priceSet": money_bag(t, "price", currency, presentment)} for t in lines or []]


def _allocations(allocations: Any, currency: str, presentment: str) -> list[dict[str, Any]]:
    return [{"allocatedAmountSet": money_bag(a, "amount", currency, presentment),
             "discountApplication": {"index": a.get("discount_application_index")}} for a in allocations or []]


def line_node(item: dict[str, Any], currency: str, presentment: str) -> dict[str, Any]:
    return {"id": gid("LineItem", item.get("id")), "name": item.get("name"), "title": item.get("title"),
            "quantity": item.get("quantity"), "currentQuantity": item.get("current_quantity", item.get("quantity")),
            "sku": item.get("sku"), "vendor": item.get("vendor"), "variantTitle": item.get("variant_title"),
            "isGiftCard": bool(item.get("gift_card")), "taxable": item.get("taxable", True),
            "requiresShipping": item.get("requires_shipping", True),
            "originalUnitPriceSet": money_bag(item, "price", currency, presentment),
            "totalDiscountSet": money_bag(item, "total_discount", currency, presentment),
            "discountAllocations": _allocations(item.get("discount_allocations"), currency, presentment),
            "taxLines": _tax_lines(item.get("tax_lines"), currency, presentment),
            "product": {"legacyResourceId": str(item["product_id"])} if item.get("product_id") else None,
            "variant": {"legacyResourceId": str(item["variant_id"])} if item.get("variant_id") else None}


def refund_node(refund: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    currency, presentment = order.get("currency", "EUR"), order.get("presentment_currency") or order.get("currency", "EUR")
    transactions = []
    for t in refund.get("transactions", []):
        value = gql_decimal(t.get("amount"))
        shown = t.get("currency") or presentment
        transactions.append({"id": gid("OrderTransaction", t.get("id")), "kind": upper(t.get("kind")),
                             "status": upper(t.get("status")), "gateway": t.get("gateway"),
                             "processedAt": gql_time(t.get("processed_at")), "createdAt": gql_time(t.get("created_at")),
                             "amountSet": {"shopMoney": {"amount": value, "currencyCode": currency},
                                           "presentmentMoney": {"amount": value, "currencyCode": shown}}})
    refunded = sum((Decimal(t["amount"]) for t in refund.get("transactions", [])
                    if t.get("kind") == "refund" and t.get("status") == "success"), Decimal(0))
    adjustments = refund.get("order_adjustments", [])
    shipping: dict[str, Any] = next(iter(order.get("shipping_lines") or []), {})
    return {
        "id": gid("Refund", refund.get("id")), "legacyResourceId": str(refund.get("id")),
        "createdAt": gql_time(refund.get("created_at")), "note": refund.get("note"),
        "totalRefundedSet": money_bag({"total": str(refunded)}, "total", currency, presentment),
        "transactions": {"nodes": transactions},
        "refundLineItems": {"nodes": [
            {"id": gid("RefundLineItem", r.get("id")), "quantity": r.get("quantity"),
             "restockType": upper(r.get("restock_type")),
             "priceSet": money_bag(r.get("line_item") or {}, "price", currency, presentment),
             "subtotalSet": money_bag(r, "subtotal", currency, presentment),
             "totalTaxSet": money_bag(r, "total_tax", currency, presentment),
             "lineItem": line_node(r.get("line_item") or {"id": r.get("line_item_id")}, currency, presentment)}
            for r in refund.get("refund_line_items", [])]},
        # Since 2024-10 a refund's shipping is a refund shipping line, not an adjustment.
        "orderAdjustments": {"nodes": [
            {"id": gid("OrderAdjustment", a.get("id")), "reason": "REFUND_DISCREPANCY",
             "amountSet": money_bag(a, "amount", currency, presentment),
             "taxAmountSet": money_bag(a, "tax_amount", currency, presentment)}
            for a in adjustments if a.get("kind") != "shipping_refund"]},
        "refundShippingLines": {"nodes": [
            {"id": gid("RefundShippingLine", a.get("id")),
             "subtotalAmountSet": _negate(money_bag(a, "amount", currency, presentment)),
             "taxAmountSet": _negate(money_bag(a, "tax_amount", currency, presentment)),
             "shippingLine": {"id": gid("ShippingLine", shipping.get("id")), "title": shipping.get("title")}}
            for a in adjustments if a.get("kind") == "shipping_refund"]},
    }


def _discount_applications(order: dict[str, Any]) -> list[dict[str, Any]]:
    currency = order.get("currency", "EUR")
    found = []
    for index, app in enumerate(order.get("discount_applications") or []):
        if app.get("value_type") == "percentage":
            value: dict[str, Any] = {"__typename": "PricingPercentageValue", "percentage": float(app.get("value", 0))}
        else:
            value = {"__typename": "MoneyV2", "amount": gql_decimal(app.get("value", 0)), "currencyCode": currency}
        node = {"index": index, "targetType": upper(app.get("target_type")),
                "allocationMethod": upper(app.get("allocation_method")),
                "targetSelection": upper(app.get("target_selection")), "value": value}
        if app.get("type") == "discount_code":
            node["code"] = app.get("code")
        found.append(node)
    return found


def order_node(order: dict[str, Any], lines_first: int = LINES_PAGE) -> dict[str, Any]:
    """A REST order as the bridge's GraphQL queries see it (the first ``lines_first`` line items)."""
    currency = order.get("currency", "EUR")
    presentment = order.get("presentment_currency") or currency
    customer = order.get("customer")
    lines = order.get("line_items") or []
    node: dict[str, Any] = {
        "id": gid("Order", order.get("id")), "legacyResourceId": str(order.get("id")), "name": order.get("name"),
        # GraphQL has one contact address where REST has email and contact_email.
        "number": order.get("order_number"), "email": order.get("email") or order.get("contact_email"),
        "createdAt": gql_time(order.get("created_at")), "updatedAt": gql_time(order.get("updated_at")),
        "processedAt": gql_time(order.get("processed_at")), "closedAt": gql_time(order.get("closed_at")),
        "cancelledAt": gql_time(order.get("cancelled_at")), "cancelReason": upper(order.get("cancel_reason")),
        "test": bool(order.get("test")), "displayFinancialStatus": upper(order.get("financial_status")),
        "currencyCode": currency, "presentmentCurrencyCode": presentment,
        "taxesIncluded": bool(order.get("taxes_included")),
        "customer": {"id": gid("Customer", customer.get("id")), "legacyResourceId": str(customer.get("id")),
                     "email": customer.get("email")} if isinstance(customer, dict) else None,
        "discountApplications": {"nodes": _discount_applications(order)},
        "lineItems": lines_page(order, None, lines_first),
        "shippingLines": {"nodes": [
            {"id": gid("ShippingLine", s.get("id")), "title": s.get("title"), "code": s.get("code"),
             "source": s.get("source"), "originalPriceSet": money_bag(s, "price", currency, presentment),
             "discountedPriceSet": money_bag(s, "discounted_price", currency, presentment)
             or money_bag(s, "price", currency, presentment),
             "taxLines": _tax_lines(s.get("tax_lines"), currency, presentment),
             "discountAllocations": _allocations(s.get("discount_allocations"), currency, presentment)}
            for s in order.get("shipping_lines") or []]},
        "refunds": [refund_node(r, order) for r in order.get("refunds") or []],
    }
    for rest, gql in (("total_price", "totalPriceSet"), ("subtotal_price", "subtotalPriceSet"),
                      ("total_tax", "totalTaxSet"), ("total_discounts", "totalDiscountsSet"),
                      ("total_shipping_price", "totalShippingPriceSet"),
                      ("current_total_price", "currentTotalPriceSet"),
                      ("current_subtotal_price", "currentSubtotalPriceSet"),
                      ("current_total_tax", "currentTotalTaxSet"),
                      ("current_total_discounts", "currentTotalDiscountsSet")):
        node[gql] = money_bag(order, rest, currency, presentment)
    if not lines:
        node["lineItems"] = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}
    return node


def lines_page(order: dict[str, Any], after: str | None, first: int) -> dict[str, Any]:
    currency = order.get("currency", "EUR")
    presentment = order.get("presentment_currency") or currency
    lines = order.get("line_items") or []
    start = int(after) if after and after.isdigit() else 0
    chunk = lines[start:start + first]
    more = start + first < len(lines)
    return {"pageInfo": {"hasNextPage": more, "endCursor": str(start + len(chunk)) if chunk else after},
            "nodes": [line_node(i, currency, presentment) for i in chunk]}


class GraphQLError(Exception):
    """An answer with ``errors`` (HTTP 200, as Shopify answers them)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# --- the shop ---------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


class ShopifyShop:
    """The shop's orders (REST shape), subscriptions and cost bucket. One lock guards them."""

    def __init__(self, config: ShopifyShopConfig, deliverer: Deliverer, clock: Callable[[], datetime] = _now,
                 monotonic: Callable[[], float] = time.monotonic, base_url: Callable[[], str] = str) -> None:
        self.config = config
        self.deliverer = deliverer
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self.orders: dict[int, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self._next = {"order": 7_100_000_000_000, "subscription": 1, "refund": 900_000_000}
        self._bucket = (config.bucket_size, monotonic())
        self.throttled = 0
        self.requests = 0
        self.points = 0.0  # every query's actual cost, drawn from the bucket
        self.operations: dict[str, int] = {}  # requests by operation name
        self.base_url = base_url  # the shop's own address (bulk results are served under it)
        self.bulk = BulkOperations(config.name, lambda n: f"{self.base_url()}/_bulk/{n}.jsonl", clock)

    @property
    def domain(self) -> str:
        return f"{self.config.name}.myshopify.com"

    # --- orders ---

    def _now_text(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")

    def create_order(self, order: dict[str, Any], deliver: bool = True) -> dict[str, Any]:
        """Place an order (REST shape); fires ``orders/paid`` when it is paid."""
        with self._lock:
            order = json.loads(json.dumps(order))
            if "id" not in order:
                self._next["order"] += 1
                order["id"] = self._next["order"]
            order.setdefault("order_number", 1000 + len(self.orders) + 1)
            order.setdefault("name", f"#{order['order_number']}")
            order.setdefault("currency", self.config.currency)
            order.setdefault("financial_status", "paid")
            order.setdefault("refunds", [])
            order.setdefault("created_at", self._now_text())
            order["updated_at"] = self._now_text()
            self.orders[int(order["id"])] = order
        if deliver and order["financial_status"] in PAID:
            self.fire("ORDERS_PAID", order)
        return order

    def add_refund(self, order_id: int, refund: dict[str, Any], deliver: bool = True) -> dict[str, Any]:
        """Refund an order (a ``refunds/create`` payload); fires ``refunds/create``."""
        with self._lock:
            order = self._order(order_id)
            refund = {**json.loads(json.dumps(refund)), "order_id": order_id}
            if "id" not in refund:
                self._next["refund"] += 1
                refund["id"] = self._next["refund"]
            refund.setdefault("created_at", self._now_text())
            order["refunds"] = [*order.get("refunds", []), refund]
            paid_back = sum((Decimal(t["amount"]) for r in order["refunds"] for t in r.get("transactions", [])
                             if t.get("kind") == "refund" and t.get("status") == "success"), Decimal(0))
            total = Decimal(order.get("total_price", "0"))
            order["financial_status"] = "refunded" if paid_back >= total else "partially_refunded"
            order["updated_at"] = self._now_text()
        if deliver:
            self.fire("REFUNDS_CREATE", refund)
        return refund

    def cancel(self, order_id: int, deliver: bool = True) -> dict[str, Any]:
        """Cancel an order; fires ``orders/cancelled``."""
        with self._lock:
            order = self._order(order_id)
            order["cancelled_at"] = order["updated_at"] = self._now_text()
            order.setdefault("cancel_reason", "customer")
        if deliver:
            self.fire("ORDERS_CANCELLED", order)
        return order

    def _order(self, order_id: int) -> dict[str, Any]:
        if order_id not in self.orders:
            raise GraphQLError(f"order {order_id} not found", "NOT_FOUND")
        return self.orders[order_id]

    # --- deliveries ---

    def fire(self, topic: str, payload: dict[str, Any]) -> int:
        body = json.dumps(payload).encode()
        signature = base64.b64encode(hmac.new(self.config.client_secret.encode(), body, hashlib.sha256).digest())
        event_id = str(uuid.uuid4())
        with self._lock:
            subscribed = [dict(s) for s in self.subscriptions.values() if s["topic"] == topic]
        for sub in subscribed:
            headers = {"Content-Type": "application/json", "X-Shopify-Topic": TOPICS[topic],
                       "X-Shopify-Hmac-Sha256": signature.decode(), "X-Shopify-Shop-Domain": self.domain,
                       "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Event-Id": event_id,
                       "X-Shopify-Triggered-At": self._now_text(), "X-Shopify-API-Version": API_VERSION}
            self.deliverer.submit(Outgoing(sub["url"], body, headers,
                                           done=partial(self._delivered, sub["id"])))
        return len(subscribed)

    def _delivered(self, subscription_id: str, ok: bool, status: int | None) -> None:
        """A delivery's ``Outgoing.done``: only whether it went through counts, not the status."""
        with self._lock:
            sub = self.subscriptions.get(subscription_id)
            if sub is None:
                return
            sub["failures"] = 0 if ok else sub["failures"] + 1
            if sub["failures"] >= self.config.max_failures:
                del self.subscriptions[subscription_id]  # Shopify removes a subscription that keeps failing

    # --- the GraphQL endpoint ---

    def _level(self) -> float:
        """The bucket now, refilled since it was last drawn from."""
        level, at = self._bucket
        now = self.monotonic()
        level = min(self.config.bucket_size, level + (now - at) * self.config.rate)
        self._bucket = (level, now)
        return level

    def _cost(self, requested: float, actual: float | None) -> dict[str, Any]:
        """``extensions.cost`` after drawing ``actual`` from the bucket (None: throttled, nothing drawn)."""
        level = self._level() - (actual or 0)
        self._bucket = (level, self._bucket[1])
        self.points += actual or 0
        return {"requestedQueryCost": requested, "actualQueryCost": actual,
                "throttleStatus": {"maximumAvailable": self.config.bucket_size,
                                   "currentlyAvailable": round(level, 1), "restoreRate": self.config.rate}}

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The answer body of one operation (errors included), with its cost as Shopify computes it."""
        handlers: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "BridgeCheck": self._check, "BridgeOrders": self._orders, "BridgeOrder": self._order_by_id,
            "BridgeOrderLines": self._order_lines, "BridgeRefund": self._refund_by_id,
            "BridgeWebhooks": self._webhooks, "BridgeWebhookCreate": self._create,
            "BridgeWebhookUpdate": self._update, "BridgeOrdersCount": self._orders_count,
            "BridgeBulkRun": self._bulk_run, "BridgeBulkOperation": self._bulk_operation,
            "BridgeBulkRunning": self._bulk_running,
        }
        match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
        operation = match.group(1) if match else ""
        if operation not in handlers:
            return {"errors": [{"message": f"the emulator does not answer operation {operation or '(unnamed)'}"}]}
        try:
            requested = requested_cost(query, variables)
        except (GraphQLSyntaxError, ValueError) as exc:
            return {"errors": [{"message": f"the query cannot be read: {exc}"}]}
        if requested > SINGLE_QUERY_LIMIT:  # refused before it runs, whatever the bucket holds
            return {"errors": [{"message": f"Query cost is {requested}, which exceeds the single query max cost "
                                           f"limit ({SINGLE_QUERY_LIMIT}).",
                                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                               "maxCost": SINGLE_QUERY_LIMIT}}]}
        with self._lock:
            self.requests += 1
            self.operations[operation] = self.operations.get(operation, 0) + 1
            # The requested cost must be in the bucket for the query to start; what it then draws is
            # what the answer actually holds.
            if self._level() < requested:
                self.throttled += 1
                return {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                        "extensions": {"cost": self._cost(requested, None)}}
            try:
                data = handlers[operation](variables, query)
            except GraphQLError as exc:
                error: dict[str, Any] = {"message": exc.message}
                if exc.code:
                    error["extensions"] = {"code": exc.code}
                return {"errors": [error], "data": None, "extensions": {"cost": self._cost(requested, 1)}}
            return {"data": data, "extensions": {"cost": self._cost(requested, actual_cost(query, data))}}

    def _check(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        return {"shop": {"name": self.config.name, "myshopifyDomain": self.domain, "currencyCode": self.config.currency},
                "currentAppInstallation": {"accessScopes": [{"handle": s} for s in self.config.scopes]}}

    def _may_read_orders(self) -> None:
        if "read_orders" not in self.config.scopes:
            raise GraphQLError("Access denied for orders field. Required access: `read_orders` access scope.",
                               "ACCESS_DENIED")

    def _orders(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        found = matching(list(self.orders.values()), str(variables.get("query") or ""))
        after = variables.get("after")
        if after:
            start = int(base64.b64decode(after).decode())
            found_after = found[start:]
        else:
            start, found_after = 0, found
        first = int(variables.get("first") or 10)
        chunk = found_after[:first]
        data: dict[str, Any] = {"orders": {
            "pageInfo": {"hasNextPage": len(found_after) > first,
                         "endCursor": base64.b64encode(str(start + len(chunk)).encode()).decode() if chunk else None},
            "nodes": [{"id": gid("Order", o["id"]), "updatedAt": gql_time(o.get("updated_at"))} for o in chunk]}}
        if variables.get("withCount"):
            data["ordersCount"] = {"count": len(found)}
        return data

    def _orders_count(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        return {"ordersCount": {"count": len(matching(list(self.orders.values()), str(variables.get("query") or "")))}}

    # --- bulk operations (bridge.sandbox.bulk_operations) ---

    def _bulk_rows(self, query: str) -> list[list[dict[str, Any]]]:
        """The rows of each order the bulk query's search finds (read under the lock, as it runs)."""
        with self._lock:
            found = matching(list(self.orders.values()), query)
            return [rows_of(order_node(o, len(o.get("line_items") or []) or 1)) for o in found]

    def _bulk_run(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        return {"bulkOperationRunQuery": self.bulk.start(str(variables.get("query") or ""), self._bulk_rows)}

    def _bulk_operation(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        return {"bulkOperation": self.bulk.find(variables.get("id"))}

    def _bulk_running(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        return {"bulkOperations": {"nodes": self.bulk.running()}}

    def _order_by_id(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        order = self.orders.get(_legacy(variables.get("id")))
        if order is None:
            return {"order": None}
        node = order_node(order, first_of(query, "lineItems", variables) or LINES_PAGE)
        node["refunds"] = [{"id": r["id"], "createdAt": r.get("createdAt")} for r in node["refunds"]]
        return {"order": node}

    def _order_lines(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        order = self._order(_legacy(variables.get("id")))
        first = first_of(query, "lineItems", variables) or LINES_PAGE
        return {"order": {"lineItems": lines_page(order, variables.get("after"), first)}}

    def _refund_by_id(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        self._may_read_orders()
        wanted = _legacy(variables.get("id"))
        for order in self.orders.values():
            for refund in order.get("refunds") or []:
                if refund.get("id") == wanted:
                    return {"refund": self._refund_page(refund, order, variables, query)}
        return {"refund": None}

    @staticmethod
    def _refund_page(refund: dict[str, Any], order: dict[str, Any], variables: dict[str, Any],
                     query: str) -> dict[str, Any]:
        """A refund whose line items are paged, each naming its line item by id only (as the bridge asks)."""
        node = refund_node(refund, order)
        items = [{**item, "lineItem": {"id": (item.get("lineItem") or {}).get("id")}}
                 for item in node["refundLineItems"]["nodes"]]
        after = str(variables.get("after") or "")
        start = int(after) if after.isdigit() else 0
        first = first_of(query, "refundLineItems", variables) or len(items) or 1
        chunk = items[start:start + first]
        node["refundLineItems"] = {"pageInfo": {"hasNextPage": start + first < len(items),
                                                "endCursor": str(start + len(chunk)) if chunk else after or None},
                                   "nodes": chunk}
        return node

    def _subscription_node(self, sub: dict[str, Any]) -> dict[str, Any]:
        return {"id": sub["id"], "topic": sub["topic"], "format": "JSON", "uri": sub["url"]}

    def _webhooks(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        return {"webhookSubscriptions": {"pageInfo": {"hasNextPage": False, "endCursor": None},
                                         "nodes": [self._subscription_node(s) for s in self.subscriptions.values()]}}

    def _create(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        topic, url = variables.get("topic"), str(variables.get("url") or "")
        errors = []
        if topic not in TOPICS:
            errors.append({"field": ["topic"], "message": f"Topic {topic} is not supported"})
        if not url.startswith(("http://", "https://")):
            errors.append({"field": ["webhookSubscription", "uri"], "message": "Address is invalid"})
        if any(s["topic"] == topic and s["url"] == url for s in self.subscriptions.values()):
            errors.append({"field": ["webhookSubscription", "uri"],
                           "message": "Address for this topic has already been taken"})
        if errors:
            return {"webhookSubscriptionCreate": {"webhookSubscription": None, "userErrors": errors}}
        sub_id = f"gid://shopify/WebhookSubscription/{self._next['subscription']}"
        self._next["subscription"] += 1
        self.subscriptions[sub_id] = {"id": sub_id, "topic": topic, "url": url, "failures": 0}
        return {"webhookSubscriptionCreate": {"webhookSubscription": self._subscription_node(self.subscriptions[sub_id]),
                                              "userErrors": []}}

    def _update(self, variables: dict[str, Any], query: str) -> dict[str, Any]:
        sub = self.subscriptions.get(str(variables.get("id")))
        if sub is None:
            return {"webhookSubscriptionUpdate": {"webhookSubscription": None, "userErrors": [
                {"field": ["id"], "message": "Webhook subscription does not exist"}]}}
        sub["url"] = str(variables.get("url") or sub["url"])
        return {"webhookSubscriptionUpdate": {"webhookSubscription": self._subscription_node(sub), "userErrors": []}}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"platform": "shopify", "name": self.config.name, "orders": len(self.orders),
                    "subscriptions": [dict(s) for s in self.subscriptions.values()], "requests": self.requests,
                    "throttled": self.throttled, "plan": self.config.plan, "restore_rate": self.config.rate,
                    "points": round(self.points, 1), "operations": dict(self.operations),
                    "bulk_operations": self.bulk.snapshot(), "bulk_downloads": self.bulk.downloads}


# --- HTTP ------------------------------------------------------------------------------------------

blueprint = Blueprint("shopify_emulator", __name__, url_prefix="/shopify/<shop>")
EXTENSION = "shop_emulators"


def _shop(name: str) -> ShopifyShop:
    shop = current_app.extensions[EXTENSION].shopify.get(name)
    if shop is None:
        response = jsonify(errors="Not Found")
        response.status_code = 404
        abort(response)
    return shop


@blueprint.post("/admin/api/<version>/graphql.json")
def graphql_endpoint(shop: str, version: str) -> Response | tuple[Response, int]:
    state = _shop(shop)
    token = request.headers.get("X-Shopify-Access-Token", "")
    if not hmac.compare_digest(token.encode(), state.config.access_token.encode()):
        return jsonify(errors="[API] Invalid API key or access token (unrecognized login or wrong password)"), 401
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return jsonify(errors={"query": "Required parameter missing or invalid"}), 400
    return jsonify(state.graphql(body["query"], body.get("variables") or {}))


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _deliver() -> bool:
    return request.args.get("deliver", "1") not in ("0", "false")


@blueprint.post("/_emulator/orders")
def emulator_create_order(shop: str) -> tuple[Response, int]:
    return jsonify(_shop(shop).create_order(_body(), deliver=_deliver())), 201


@blueprint.post("/_emulator/orders/<int:order_id>/refunds")
def emulator_refund(shop: str, order_id: int) -> tuple[Response, int]:
    try:
        return jsonify(_shop(shop).add_refund(order_id, _body(), deliver=_deliver())), 201
    except GraphQLError as exc:
        return jsonify(errors=exc.message), 404


@blueprint.post("/_emulator/orders/<int:order_id>/cancel")
def emulator_cancel(shop: str, order_id: int) -> Response | tuple[Response, int]:
    try:
        return jsonify(_shop(shop).cancel(order_id, deliver=_deliver()))
    except GraphQLError as exc:
        return jsonify(errors=exc.message), 404


@blueprint.get("/_bulk/<int:number>.jsonl")
def bulk_result(shop: str, number: int) -> Response:
    """A bulk operation's result file (Shopify serves it from signed storage URLs, without the token)."""
    status, body = _shop(shop).bulk.download(number)
    return Response(body, status=status, content_type="application/jsonl" if status == 200 else "application/xml")


@blueprint.post("/_emulator/bulk")
def emulator_bulk(shop: str) -> Response | tuple[Response, int]:
    """``{"fail_next": "FAILED:TIMEOUT" | "CANCELED" | "EXPIRED_URL" | "PARTIAL" | null}`` for the next bulk
    operation, or ``{"hold": seconds}``: start one that holds the shop's slot that long."""
    state, body = _shop(shop), _body()
    if "fail_next" in body:
        if body["fail_next"] is not None and body["fail_next"] not in FAILURES:
            return jsonify(errors=f"fail_next: one of {sorted(FAILURES)} or null"), 400
        state.bulk.fail_next = body["fail_next"]
    if body.get("hold"):
        state.bulk.start("{ orders { edges { node { id } } } }", None, hold=float(body["hold"]))
    return jsonify(state.snapshot())


@blueprint.get("/_emulator/state")
def emulator_state(shop: str) -> Response:
    return jsonify(_shop(shop).snapshot())
