"""Generated shop traffic with known answers: orders, refunds and cancellations on both platforms,
as the signed deliveries a shop sends, and the points each customer must end up with.

The expected points are computed here, independently of the bridge, from the sandbox's card rule
(10 points per currency unit, rounded down) and the refund rule users were promised: in proportion
to the money paid back, rounded down, and a full refund or a cancellation takes back all that
remains. On the ``net`` store (a Shopify shop whose points are on goods only, tax and shipping
left out) a refund of n of an order's q units takes back n/q of the points, whatever tax and
shipping came with it, and a refund of shipping alone takes back nothing. The ``later`` store holds
each award back 3 s after payment (an award delay): its orders and refunds are in whole euros, so
the points are the same whether a refund comes before the award (an award for what was kept) or
after it (a deduction), and the run need not care which.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    # The net store's orders: ``quantity`` units at ``unit`` (VAT ``unit_tax`` inside) and shipping
    # (VAT ``shipping_tax`` inside); each refund returns ``refund_units[id]`` units, and the shipping
    # when its id is in ``shipping_refunds``.
    net: bool = False
    quantity: int = 1
    unit: Decimal = Decimal(0)
    unit_tax: Decimal = Decimal(0)
    shipping: Decimal = Decimal(0)
    shipping_tax: Decimal = Decimal(0)
    refund_units: dict[int, int] = field(default_factory=dict)
    shipping_refunds: set[int] = field(default_factory=set)
    # The later store's orders (WooCommerce, an award delay), paid now unless ``paid_at`` says when.
    later: bool = False
    paid_at: datetime | None = None

    @property
    def store(self) -> str:
        if self.net:
            return "net"
        if self.later:
            return "later"
        return "woo" if self.platform == "woocommerce" else "shop"

    @property
    def reference(self) -> str:
        if self.net:
            return f"NET-{self.order_id % 100000}"
        if self.later:
            return f"LT-{self.order_id}"
        return f"WC-{self.order_id}" if self.platform == "woocommerce" else f"SH-{self.order_id % 100000}"

    @property
    def base(self) -> Decimal:
        """What earns points: everything paid, or on the net store the goods without their VAT."""
        return self.quantity * (self.unit - self.unit_tax) if self.net else self.total

    @property
    def awarded(self) -> int:
        return int((self.base * POINTS_PER_UNIT).to_integral_value(ROUND_FLOOR))

    @property
    def remaining(self) -> int:
        """Points the customer keeps when everything has been processed."""
        if self.cancelled or sum(a for _, a in self.refunds) >= self.total:
            return 0
        if self.net:
            taken = sum(self.awarded * self.refund_units.get(rid, 0) // self.quantity for rid, _ in self.refunds)
        else:
            taken = sum(int(Fraction(self.awarded) * Fraction(a) / Fraction(self.total)) for _, a in self.refunds)
        return self.awarded - taken


def _vat(gross: Decimal) -> Decimal:
    """The 21 % VAT inside a gross amount, to the cent."""
    return (gross * 21 / 121).quantize(Decimal("0.01"))


def plan(count: int, rng: random.Random, first_id: int = 700_000, net_share: float = 0.0,
         later_share: float = 0.0) -> list[PlannedOrder]:
    """``count`` orders: about a third refunded in part, some twice, a tenth cancelled; a
    ``net_share`` of them on the net store, a ``later_share`` on the later store."""
    orders = []
    for i in range(count):
        order_id, email = first_id + i, f"chaos-{first_id + i}@example.com"
        draw = rng.random()
        if draw < net_share:
            orders.append(_plan_net(order_id, email, rng, first_id * 10 + i * 3))
            continue
        later = draw < net_share + later_share
        platform = "woocommerce" if later else rng.choice(["woocommerce", "shopify"])
        cents = 100 if later else 1  # whole euros on the later store
        total = Decimal(rng.randint(500 // cents, 25_000 // cents) * cents) / 100
        order = PlannedOrder(platform, order_id, email, total, later=later)
        if rng.random() < 0.35:
            for n in range(rng.choice([1, 1, 2])):
                amount = Decimal(rng.randint(1, int(total * 40) // 100) * 100 if later
                                 else rng.randint(100, int(total * 40))) / 100
                order.refunds.append((first_id * 10 + i * 3 + n, amount))
        order.cancelled = rng.random() < 0.1
        orders.append(order)
    return orders


def _plan_net(order_id: int, email: str, rng: random.Random, first_refund: int) -> PlannedOrder:
    unit = Decimal(rng.randint(500, 6_000)) / 100
    shipping = rng.choice([Decimal(0), Decimal(rng.randint(350, 990)) / 100])
    quantity = rng.randint(1, 4)
    order = PlannedOrder("shopify", order_id, email, quantity * unit + shipping, net=True, quantity=quantity,
                         unit=unit, unit_tax=_vat(unit), shipping=shipping, shipping_tax=_vat(shipping))
    left = quantity
    if rng.random() < 0.4:
        for n in range(rng.choice([1, 1, 2])):
            rid = first_refund + n
            units = rng.randint(0 if shipping else 1, left) if left else 0
            refund_shipping = bool(shipping) and rid not in order.shipping_refunds and (units == 0 or rng.random() < 0.2)
            if units == 0 and not refund_shipping:
                continue
            left -= units
            order.refund_units[rid] = units
            if refund_shipping:
                order.shipping_refunds.add(rid)
            order.refunds.append((rid, units * unit + (shipping if refund_shipping else 0)))
    order.cancelled = rng.random() < 0.1
    return order


def _woo(order: PlannedOrder, status: str, refunds: list[tuple[int, Decimal]]) -> dict[str, object]:
    # The later store's orders are paid now: their award delay counts from here.
    paid = (order.paid_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S") if order.later else "2026-11-27T10:00:05"
    # Each delivery is a new version of the order: a minute later for each refund and the cancellation.
    modified = datetime.fromisoformat(paid) + timedelta(minutes=len(refunds) + (status == "cancelled"))
    return {
        "id": order.order_id, "number": str(order.order_id), "status": status, "currency": "EUR",
        "date_created": "2026-11-27T10:00:00", "date_paid": paid, "date_paid_gmt": paid,
        "date_modified_gmt": modified.strftime("%Y-%m-%dT%H:%M:%S"), "total": str(order.total),
        "total_tax": "0.00", "shipping_total": "0.00", "shipping_tax": "0.00", "discount_total": "0.00",
        "discount_tax": "0.00", "customer_id": 0, "billing": {"first_name": "Chaos", "email": order.email},
        "line_items": [{"id": 1, "name": "Black Friday bundle", "product_id": 42, "quantity": 1,
                        "subtotal": str(order.total), "total": str(order.total), "total_tax": "0.00",
                        "sku": "BF-1", "price": float(order.total), "meta_data": []}],
        "shipping_lines": [], "fee_lines": [], "coupon_lines": [],
        "refunds": [{"id": rid, "reason": "chaos", "total": f"-{amount}"} for rid, amount in reversed(refunds)],
    }


def _shopify_order(order: PlannedOrder, cancelled: bool) -> dict[str, object]:
    if order.net:
        line = {"id": 1, "product_id": 42, "title": "Kavos pupelės", "quantity": order.quantity, "price": str(order.unit),
                "sku": "BEANS", "gift_card": False, "total_discount": "0.00",
                "tax_lines": [{"price": str(order.quantity * order.unit_tax), "rate": 0.21, "title": "PVM"}]}
        shipping = [{"price": str(order.shipping), "discounted_price": str(order.shipping),
                     "tax_lines": [{"price": str(order.shipping_tax), "rate": 0.21, "title": "PVM"}]}]
        tax = order.quantity * order.unit_tax + order.shipping_tax
    else:
        line = {"id": 1, "product_id": 42, "title": "Black Friday bundle", "quantity": 1, "price": str(order.total),
                "sku": "BF-1", "gift_card": False, "total_discount": "0.00"}
        shipping, tax = [], Decimal("0.00")
    return {
        "id": order.order_id, "name": f"#{order.order_id % 100000}", "order_number": order.order_id % 100000,
        "email": order.email, "currency": "EUR", "total_price": str(order.total), "total_tax": str(tax),
        "taxes_included": True, "financial_status": "refunded" if cancelled else "paid", "test": False,
        "cancelled_at": "2026-11-27T11:00:00+02:00" if cancelled else None,
        "updated_at": "2026-11-27T11:00:00+02:00" if cancelled else "2026-11-27T10:00:05+02:00",
        # What the cancellation refunded is in refunds/create deliveries; at payment there is none.
        **({} if cancelled else {"refunds": []}),
        "total_shipping_price_set": {"shop_money": {"amount": str(order.shipping), "currency_code": "EUR"}},
        "line_items": [line], "discount_codes": [], "shipping_lines": shipping if order.shipping else [],
    }


def _shopify_refund(order: PlannedOrder, rid: int, amount: Decimal) -> dict[str, object]:
    refund: dict[str, object] = {
        "id": rid, "order_id": order.order_id, "note": "chaos",
        "transactions": [{"kind": "refund", "status": "success", "amount": str(amount), "currency": "EUR"}]}
    if order.net:
        units = order.refund_units.get(rid, 0)
        refund["refund_line_items"] = [
            {"line_item_id": 1, "quantity": units, "subtotal": float(units * order.unit),
             "total_tax": float(units * order.unit_tax), "line_item": {"id": 1, "gift_card": False}}] if units else []
        refund["order_adjustments"] = [
            {"kind": "shipping_refund", "amount": str(order.shipping_tax - order.shipping),
             "tax_amount": str(-order.shipping_tax)}] if rid in order.shipping_refunds else []
    return refund


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
        out.append(_signed(order, "refunds/create", _shopify_refund(order, rid, amount),
                           f"{order.reference} refund {rid}"))
    if order.cancelled:
        out.append(_signed(order, "orders/cancelled", _shopify_order(order, True), f"{order.reference} cancelled"))
    return out
