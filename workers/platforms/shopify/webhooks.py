"""Shopify: order and refund webhooks to events, orders and refunds.

One topic, one event: ``orders/paid`` → paid, ``refunds/create`` → refund, ``orders/cancelled`` →
cancellation. A refund payload carries only the numeric ``order_id``; the worker finds the order's
reference through the index the intake keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from config.stores import StoreConfig
from workers.events import Event, EventKind, Ignored, format_reference, parse_head
from workers.orders import (
    ZERO,
    Order,
    OrderLine,
    PayloadMoney,
    Quantity,
    Refund,
    money,
    normalize_email,
    parse,
    points_redeemed,
)

PLATFORM = "shopify"
SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
# The same for every delivery of one event: names the delivery in logs and job metadata.
DELIVERY_HEADER = "X-Shopify-Event-Id"

ORDER_TOPICS: dict[str, EventKind] = {"orders/paid": "paid", "orders/cancelled": "cancel"}
REFUND_TOPIC = "refunds/create"
DATA_REQUEST_TOPIC = "customers/data_request"
REDACT_TOPICS = {"customers/redact", "shop/redact"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _OrderHead(_Model):
    """The few fields routing needs; parsed on the intake's hot path."""

    id: int
    name: str = ""
    order_number: int


class _RefundHead(_Model):
    id: int
    order_id: int


class _RedactCustomer(_Model):
    id: int


class _Redact(_Model):
    """customers/redact and shop/redact: whose data to delete."""

    shop_id: int | None = None
    customer: _RedactCustomer | None = None
    orders_to_redact: list[int] = []


class _TaxLine(_Model):
    price: PayloadMoney = ZERO


class _Discount(_Model):
    amount: PayloadMoney = ZERO


class _LineItem(_Model):
    product_id: int | None = None
    title: str = ""
    name: str | None = None
    quantity: Quantity
    price: PayloadMoney
    sku: str | None = None
    gift_card: bool = False
    total_discount: PayloadMoney = ZERO
    discount_allocations: list[_Discount] = []
    tax_lines: list[_TaxLine] = []


class _DiscountCode(_Model):
    code: str = ""
    amount: PayloadMoney = ZERO


class _ShippingLine(_Model):
    price: PayloadMoney = ZERO
    tax_lines: list[_TaxLine] = []


class _Money(_Model):
    amount: PayloadMoney = ZERO


class _MoneySet(_Model):
    shop_money: _Money = _Money()


class _Customer(_Model):
    email: str | None = None


class _Order(_OrderHead):
    email: str | None = None
    contact_email: str | None = None
    customer: _Customer | None = None
    currency: str
    total_price: PayloadMoney
    total_tax: PayloadMoney = ZERO
    total_discounts: PayloadMoney = ZERO
    taxes_included: bool = False
    total_shipping_price_set: _MoneySet | None = None
    shipping_lines: list[_ShippingLine] = []
    line_items: list[_LineItem] = []
    discount_codes: list[_DiscountCode] = []
    test: bool = False


class _Transaction(_Model):
    kind: str = ""
    status: str = ""
    amount: PayloadMoney = ZERO
    currency: str | None = None


class _Refund(_RefundHead):
    note: str | None = None
    transactions: list[_Transaction] = []


def is_ping(body: bytes) -> bool:
    """Shopify sends no ping."""
    return False


def reference(store: StoreConfig, order_id: int | str, order_number: int | str, name: str) -> str:
    """The store's reference for an order."""
    return format_reference(store.reference_format, number=str(order_number), id=str(order_id), name=name)


def classify(topic: str, body: bytes, store: StoreConfig) -> list[Event] | Ignored:
    """The event one delivery carries, or why it carries none."""
    if topic in ORDER_TOPICS:
        head = parse_head(_OrderHead, body)
        if isinstance(head, Ignored):
            return head
        ref = reference(store, head.id, head.order_number, head.name)
        return [Event(store=store.id, platform=PLATFORM, kind=ORDER_TOPICS[topic],
                      order_id=str(head.id), reference=ref, topic=topic)]
    if topic == REFUND_TOPIC:
        refund = parse_head(_RefundHead, body)
        if isinstance(refund, Ignored):
            return refund
        return [Event(store=store.id, platform=PLATFORM, kind="refund", order_id=str(refund.order_id),
                      refund_id=str(refund.id), topic=topic)]
    if topic in REDACT_TOPICS:
        redact = parse_head(_Redact, body)
        if isinstance(redact, Ignored):
            return redact
        whose = f"customer_{redact.customer.id}" if topic == "customers/redact" and redact.customer else "shop"
        return [Event(store=store.id, platform=PLATFORM, kind="redact", order_id=whose, topic=topic)]
    if topic == DATA_REQUEST_TOPIC:
        # Acknowledged and logged: the bridge holds order payloads only while they are kept for replay.
        return Ignored(reason="customer data request acknowledged: the bridge keeps order payloads for "
                              "replay only, for the retention period, and no other customer data")
    return Ignored(reason=f"topic {topic or '(none)'} is not used; subscribe to orders/paid, "
                          "refunds/create and orders/cancelled")


def _line(item: _LineItem, taxes_included: bool) -> OrderLine:
    discount = item.total_discount or sum((d.amount for d in item.discount_allocations), ZERO)
    total = item.price * item.quantity - discount
    if not taxes_included:
        total += sum((t.price for t in item.tax_lines), ZERO)
    total = money(total)
    return OrderLine(
        product_id=item.product_id, name=item.name or item.title, sku=item.sku or None, quantity=item.quantity,
        unit_price=money(total / item.quantity) if item.quantity else total, total=total, gift_card=item.gift_card,
    )


def map_order(payload: Mapping[str, Any], store: StoreConfig) -> Order:
    """The normalized order; raises MappingError naming the field that is missing or wrong."""
    order: _Order = parse(_Order, payload)
    email = order.email or order.contact_email or (order.customer.email if order.customer else None)
    shipping_tax = sum((t.price for line in order.shipping_lines for t in line.tax_lines), ZERO)
    if order.total_shipping_price_set is not None:
        shipping = order.total_shipping_price_set.shop_money.amount
    else:
        shipping = sum((line.price for line in order.shipping_lines), ZERO)
    if order.taxes_included:
        shipping -= shipping_tax
    prefix = (store.redemption.coupon_prefix or "").lower() if store.redemption else ""
    spent = sum((d.amount for d in order.discount_codes if prefix and d.code.lower().startswith(prefix)), ZERO)
    redeemed, redeemed_amount = points_redeemed(store, spent)
    return Order(
        store=store.id, platform=PLATFORM, reference=reference(store, order.id, order.order_number, order.name),
        order_id=str(order.id), email=normalize_email(email), currency=order.currency.upper(),
        total=order.total_price, shipping=money(shipping), shipping_tax=money(shipping_tax), tax=order.total_tax,
        discounts=order.total_discounts, lines=[_line(i, order.taxes_included) for i in order.line_items],
        points_redeemed=redeemed, points_discount=redeemed_amount, test=order.test,
    )


def map_refund(payload: Mapping[str, Any], refund_id: str, store: StoreConfig) -> Refund:
    """The refund in a ``refunds/create`` payload: the money its successful refund transactions gave back."""
    refund: _Refund = parse(_Refund, payload)
    paid_back = [t for t in refund.transactions if t.kind == "refund" and t.status == "success"]
    return Refund(
        store=store.id, platform=PLATFORM, order_id=str(refund.order_id), reference=None, refund_id=str(refund.id),
        amount=money(sum((t.amount for t in paid_back), ZERO)),
        currency=next((t.currency.upper() for t in paid_back if t.currency), None), reason=refund.note or None,
    )


def orders_to_redact(payload: Mapping[str, Any]) -> list[str]:
    """The platform order ids whose kept payloads a customers/redact request covers."""
    return [str(order_id) for order_id in parse(_Redact, payload).orders_to_redact]


def order_reference(payload: Mapping[str, Any], store: StoreConfig) -> tuple[str, str]:
    """(platform order id, reference) of an order payload."""
    head: _OrderHead = parse(_OrderHead, payload)
    return str(head.id), reference(store, head.id, head.order_number, head.name)
