"""Generated shop traffic with known answers: orders, refunds and cancellations on both platforms,
as the signed deliveries a shop sends, and the points each customer must end up with.

The expected points are computed here, independently of the bridge, from the sandbox's card rule
(10 points per currency unit, rounded down) and the refund rule users were promised: in proportion,
rounded down, and a full refund or a cancellation takes back all that remains.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

from bench.cluster import SECRETS
from bridge.signatures import sign

POINTS_PER_UNIT = 10


@dataclass(frozen=True)
class Delivery:
    """One webhook as a shop posts it."""

    path: str
    body: bytes
    headers: dict[str, str]
    label: str


@dataclass
class PlannedOrder:
    """An order's whole life, and what it must be worth in points at the end."""

    platform: str
    order_id: int
    email: str
    total: Decimal
    refunds: list[tuple[int, Decimal]] = field(default_factory=list)
    cancelled: bool = False

    @property
    def store(self) -> str:
        return "woo" if self.platform == "woocommerce" else "shop"

    @property
    def reference(self) -> str:
        return f"WC-{self.order_id}" if self.platform == "woocommerce" else f"SH-{self.order_id % 100000}"

    @property
    def awarded(self) -> int:
        return int((self.total * POINTS_PER_UNIT).to_integral_value(ROUND_FLOOR))

    @property
    def remaining(self) -> int:
        """Points the customer keeps when everything has been processed."""
        if self.cancelled or sum(a for _, a in self.refunds) >= self.total:
            return 0
        taken = sum(int(Fraction(self.awarded) * Fraction(a) / Fraction(self.total)) for _, a in self.refunds)
        return self.awarded - taken


def plan(count: int, rng: random.Random, first_id: int = 700_000) -> list[PlannedOrder]:
    """``count`` orders: about a third refunded in part, some twice, a tenth cancelled."""
    orders = []
    for i in range(count):
        platform = rng.choice(["woocommerce", "shopify"])
        total = Decimal(rng.randint(500, 25_000)) / 100
        order = PlannedOrder(platform, first_id + i, f"chaos-{first_id + i}@example.com", total)
        if rng.random() < 0.35:
            for n in range(rng.choice([1, 1, 2])):
                order.refunds.append((first_id * 10 + i * 3 + n, Decimal(rng.randint(100, int(total * 40))) / 100))
        order.cancelled = rng.random() < 0.1
        orders.append(order)
    return orders


def _woo(order: PlannedOrder, status: str, refunds: list[tuple[int, Decimal]]) -> dict[str, object]:
    return {
        "id": order.order_id, "number": str(order.order_id), "status": status, "currency": "EUR",
        "date_created": "2026-11-27T10:00:00", "date_paid": "2026-11-27T10:00:05", "total": str(order.total),
        "total_tax": "0.00", "shipping_total": "0.00", "shipping_tax": "0.00", "discount_total": "0.00",
        "discount_tax": "0.00", "customer_id": 0, "billing": {"first_name": "Chaos", "email": order.email},
        "line_items": [{"id": 1, "name": "Black Friday bundle", "product_id": 42, "quantity": 1,
                        "subtotal": str(order.total), "total": str(order.total), "total_tax": "0.00",
                        "sku": "BF-1", "price": float(order.total), "meta_data": []}],
        "shipping_lines": [], "fee_lines": [], "coupon_lines": [],
        "refunds": [{"id": rid, "reason": "chaos", "total": f"-{amount}"} for rid, amount in reversed(refunds)],
    }


def _shopify_order(order: PlannedOrder, cancelled: bool) -> dict[str, object]:
    return {
        "id": order.order_id, "name": f"#{order.order_id % 100000}", "order_number": order.order_id % 100000,
        "email": order.email, "currency": "EUR", "total_price": str(order.total), "total_tax": "0.00",
        "taxes_included": True, "financial_status": "refunded" if cancelled else "paid", "test": False,
        "cancelled_at": "2026-11-27T11:00:00+02:00" if cancelled else None,
        "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "EUR"}},
        "line_items": [{"id": 1, "product_id": 42, "title": "Black Friday bundle", "quantity": 1,
                        "price": str(order.total), "sku": "BF-1", "gift_card": False, "total_discount": "0.00"}],
        "discount_codes": [], "shipping_lines": [],
    }


def _signed(order: PlannedOrder, topic: str, payload: dict[str, object], label: str) -> Delivery:
    body = json.dumps(payload).encode()
    secret = SECRETS[order.store].encode()
    if order.platform == "woocommerce":
        headers = {"X-WC-Webhook-Signature": sign(body, secret), "X-WC-Webhook-Topic": topic}
    else:
        headers = {"X-Shopify-Hmac-Sha256": sign(body, secret), "X-Shopify-Topic": topic,
                   "X-Shopify-Event-Id": f"{label}"}
    headers["Content-Type"] = "application/json"
    return Delivery(f"/webhooks/{order.platform}/{order.store}", body, headers, label)


def deliveries(order: PlannedOrder) -> list[Delivery]:
    """The webhooks of one order's life, in the order the shop sends them."""
    out = []
    if order.platform == "woocommerce":
        out.append(_signed(order, "order.created", _woo(order, "processing", []), f"{order.reference} paid"))
        for n in range(len(order.refunds)):
            out.append(_signed(order, "order.updated", _woo(order, "processing", order.refunds[: n + 1]),
                               f"{order.reference} refund {n + 1}"))
        if order.cancelled:
            out.append(_signed(order, "order.updated", _woo(order, "cancelled", order.refunds),
                               f"{order.reference} cancelled"))
        return out
    out.append(_signed(order, "orders/paid", _shopify_order(order, False), f"{order.reference} paid"))
    for rid, amount in order.refunds:
        out.append(_signed(order, "refunds/create", {
            "id": rid, "order_id": order.order_id, "note": "chaos",
            "transactions": [{"kind": "refund", "status": "success", "amount": str(amount), "currency": "EUR"}]},
            f"{order.reference} refund {rid}"))
    if order.cancelled:
        out.append(_signed(order, "orders/cancelled", _shopify_order(order, True), f"{order.reference} cancelled"))
    return out
