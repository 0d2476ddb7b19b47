"""Shopify: order and refund webhooks to events, orders and refunds.

One topic, one event: ``orders/paid`` → paid, ``refunds/create`` → refund, ``orders/cancelled`` →
cancellation. A refund payload carries only the numeric ``order_id``; the worker finds the order's
reference through the index the intake keeps.

An order payload also says which events its version (``updated_at``) holds (:func:`order_deliveries`,
the periodic sync's rule too), so the job of a delivery that fed all of them can spare the sync a
read of that version (:func:`fed_version`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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
    RefundItems,
    line_total,
    moment,
    money,
    normalize_email,
    parse,
    points_redeemed,
    product_name,
)

PLATFORM = "shopify"
SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
# The same for every delivery of one event: names the delivery in logs and job metadata.
DELIVERY_HEADER = "X-Shopify-Event-Id"
# Refunds name only the order id: the worker finds the reference in the order index.
NAMES_ORDERS_BY_ID = True

ORDER_TOPICS: dict[str, EventKind] = {"orders/paid": "paid", "orders/cancelled": "cancel"}
# The financial statuses of an order that was paid (refunded ones too: the award came first).
PAID_STATUSES = {"paid", "partially_refunded", "refunded"}
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


class _Money(_Model):
    amount: PayloadMoney | None = None
    currency_code: str | None = None


class _MoneySet(_Model):
    """Shopify's money in two currencies: the shop's, and the customer's (presentment)."""

    shop_money: _Money = _Money()
    presentment_money: _Money | None = None

    def in_currency(self, currency: str | None) -> Decimal | None:
        """The amount in ``currency``, if this set holds it."""
        for money_ in (self.shop_money, self.presentment_money):
            if money_ is not None and currency and (money_.currency_code or "").upper() == currency:
                return money_.amount
        return None

    @property
    def shop_amount(self) -> Decimal | None:
        return self.shop_money.amount


class _LineItem(_Model):
    id: int | None = None
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
    # After shipping discounts (a free-shipping code); ``price`` is before them.
    discounted_price: PayloadMoney | None = None
    discounted_price_set: _MoneySet | None = None
    discount_allocations: list[_Discount] = []
    tax_lines: list[_TaxLine] = []

    @property
    def charged(self) -> Decimal:
        """What the customer paid for this shipping, in the shop's currency."""
        if self.discounted_price_set is not None and self.discounted_price_set.shop_amount is not None:
            return self.discounted_price_set.shop_amount
        if self.discounted_price is not None:
            return self.discounted_price
        return self.price - sum((d.amount for d in self.discount_allocations), ZERO)


class _Customer(_Model):
    email: str | None = None


class _Order(_OrderHead):
    email: str | None = None
    contact_email: str | None = None
    customer: _Customer | None = None
    currency: str
    presentment_currency: str | None = None
    total_price: PayloadMoney
    total_price_set: _MoneySet | None = None
    total_tax: PayloadMoney = ZERO
    total_discounts: PayloadMoney = ZERO
    taxes_included: bool = False
    total_shipping_price_set: _MoneySet | None = None
    shipping_lines: list[_ShippingLine] = []
    line_items: list[_LineItem] = []
    discount_codes: list[_DiscountCode] = []
    test: bool = False
    financial_status: str | None = None
    cancelled_at: str | None = None
    processed_at: str | None = None
    created_at: str | None = None


class _Transaction(_Model):
    kind: str = ""
    status: str = ""
    amount: PayloadMoney = ZERO
    currency: str | None = None


class _RefundedLine(_Model):
    gift_card: bool = False


class _RefundLineItem(_Model):
    line_item_id: int | None = None
    quantity: Quantity = 0
    subtotal: PayloadMoney = ZERO
    subtotal_set: _MoneySet | None = None
    total_tax: PayloadMoney = ZERO
    total_tax_set: _MoneySet | None = None
    line_item: _RefundedLine = _RefundedLine()


class _OrderAdjustment(_Model):
    kind: str = ""
    amount: PayloadMoney = ZERO
    amount_set: _MoneySet | None = None
    tax_amount: PayloadMoney = ZERO
    tax_amount_set: _MoneySet | None = None


class _RefundShippingLine(_Model):
    """A refunded shipping line (newer API versions; older ones use a ``shipping_refund`` adjustment)."""

    subtotal_amount_set: _MoneySet | None = None
    tax_amount_set: _MoneySet | None = None


class _Refund(_RefundHead):
    note: str | None = None
    transactions: list[_Transaction] = []
    refund_line_items: list[_RefundLineItem] = []
    order_adjustments: list[_OrderAdjustment] = []
    refund_shipping_lines: list[_RefundShippingLine] = []


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
    tax = ZERO if taxes_included else sum((t.price for t in item.tax_lines), ZERO)
    total = line_total(item.price * item.quantity + tax, discount)
    return OrderLine(
        line_id=str(item.id) if item.id is not None else None,
        product_id=item.product_id, name=product_name(item.name or item.title), sku=item.sku or None,
        quantity=item.quantity, unit_price=money(total / item.quantity) if item.quantity else total, total=total,
        gift_card=item.gift_card,
    )


def _undone(order: _Order) -> str | None:
    """Why the payload itself says the order is not (or no longer) paid."""
    if order.financial_status in ("voided", "refunded"):
        return f"the order's payment is {order.financial_status} (financial_status in the payload)"
    if order.cancelled_at:
        return f"the order was cancelled at {order.cancelled_at}"
    return None


def map_order(payload: Mapping[str, Any], store: StoreConfig) -> Order:
    """The normalized order; raises MappingError naming the field that is missing or wrong."""
    order: _Order = parse(_Order, payload)
    email = order.email or order.contact_email or (order.customer.email if order.customer else None)
    shipping_tax = sum((t.price for line in order.shipping_lines for t in line.tax_lines), ZERO)
    if order.shipping_lines:
        shipping = sum((line.charged for line in order.shipping_lines), ZERO)
    elif order.total_shipping_price_set is not None and order.total_shipping_price_set.shop_amount is not None:
        shipping = order.total_shipping_price_set.shop_amount
    else:
        shipping = ZERO
    if order.taxes_included:
        shipping -= shipping_tax
    prefix = (store.redemption.coupon_prefix or "").lower() if store.redemption else ""
    spent = sum((d.amount for d in order.discount_codes if prefix and d.code.lower().startswith(prefix)), ZERO)
    redeemed, redeemed_amount = points_redeemed(store, spent)
    currency = order.currency.upper()
    presentment = (order.presentment_currency or currency).upper()
    presentment_total = order.total_price_set.in_currency(presentment) if order.total_price_set else None
    return Order(
        store=store.id, platform=PLATFORM, reference=reference(store, order.id, order.order_number, order.name),
        order_id=str(order.id), email=normalize_email(email), currency=currency, total=order.total_price,
        presentment_currency=presentment if presentment != currency else None,
        presentment_total=presentment_total if presentment != currency else None,
        taxes_included=order.taxes_included, shipping=max(money(shipping), ZERO), shipping_tax=money(shipping_tax),
        tax=order.total_tax, discounts=order.total_discounts,
        lines=[_line(i, order.taxes_included) for i in order.line_items],
        points_redeemed=redeemed, points_discount=redeemed_amount, test=order.test, undone=_undone(order),
        paid_at=moment(order.processed_at) or moment(order.created_at),
    )


def _amount(currency: str | None, money_set: _MoneySet | None, plain: Decimal) -> Decimal:
    """An amount in the refund's currency: from the ``*_set`` when it holds that currency, else the
    plain field (which is in the shop's currency)."""
    found = money_set.in_currency(currency) if money_set is not None else None
    return plain if found is None else found


def _items(refund: _Refund, currency: str | None) -> RefundItems | None:
    """What the refund gave back item by item, in its own currency; None when it names no item."""
    if not refund.refund_line_items and not refund.refund_shipping_lines and not any(
            a.kind == "shipping_refund" for a in refund.order_adjustments):
        return None
    goods = goods_tax = gift_cards = shipping = shipping_tax = ZERO
    lines: dict[str, int] = {}
    for item in refund.refund_line_items:
        subtotal = _amount(currency, item.subtotal_set, item.subtotal)
        tax = _amount(currency, item.total_tax_set, item.total_tax)
        if item.line_item.gift_card:
            gift_cards += subtotal + tax
        else:
            goods, goods_tax = goods + subtotal, goods_tax + tax
        if item.line_item_id is not None:
            lines[str(item.line_item_id)] = lines.get(str(item.line_item_id), 0) + item.quantity
    if refund.refund_shipping_lines:
        for line in refund.refund_shipping_lines:
            shipping += _amount(currency, line.subtotal_amount_set, ZERO)
            shipping_tax += _amount(currency, line.tax_amount_set, ZERO)
    else:
        for adjustment in refund.order_adjustments:
            if adjustment.kind == "shipping_refund":  # negative: money given back
                shipping -= _amount(currency, adjustment.amount_set, adjustment.amount)
                shipping_tax -= _amount(currency, adjustment.tax_amount_set, adjustment.tax_amount)
    return RefundItems(goods=goods, goods_tax=goods_tax, gift_cards=gift_cards, shipping=max(shipping, ZERO),
                       shipping_tax=max(shipping_tax, ZERO), lines=lines)


def _refund_currency(refund: _Refund, paid_back: list[_Transaction]) -> str | None:
    """The currency of the money given back: the transactions', else the one currency every amount
    of the refund is in (a single-currency order); None when it cannot be told."""
    named = {t.currency.upper() for t in paid_back if t.currency}
    if len(named) == 1:
        return named.pop()
    if named:
        return None
    sets = [s for item in refund.refund_line_items for s in (item.subtotal_set, item.total_tax_set) if s] + \
           [s for a in refund.order_adjustments for s in (a.amount_set, a.tax_amount_set) if s]
    codes = {(m.currency_code or "").upper() for s in sets for m in (s.shop_money, s.presentment_money) if m}
    return codes.pop() if len(codes) == 1 and "" not in codes else None


def map_refund(payload: Mapping[str, Any], refund_id: str, store: StoreConfig) -> Refund:
    """The refund in a ``refunds/create`` payload: the money its successful refund transactions gave
    back, in their currency, and what it was for when the payload says."""
    refund: _Refund = parse(_Refund, payload)
    paid_back = [t for t in refund.transactions if t.kind == "refund" and t.status == "success"]
    currency = _refund_currency(refund, paid_back)
    return Refund(
        store=store.id, platform=PLATFORM, order_id=str(refund.order_id), reference=None, refund_id=str(refund.id),
        amount=money(sum((t.amount for t in paid_back), ZERO)), currency=currency, reason=refund.note or None,
        items=_items(refund, currency),
    )


def orders_to_redact(payload: Mapping[str, Any]) -> list[str]:
    """The platform order ids whose kept payloads a customers/redact request covers."""
    return [str(order_id) for order_id in parse(_Redact, payload).orders_to_redact]


def order_reference(payload: Mapping[str, Any], store: StoreConfig) -> tuple[str, str]:
    """(platform order id, reference) of an order payload."""
    head: _OrderHead = parse(_OrderHead, payload)
    return str(head.id), reference(store, head.id, head.order_number, head.name)


def order_deliveries(rest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The webhook deliveries that describe a REST order's state: paid, each refund, cancelled."""
    found: list[tuple[str, Any]] = []
    if rest.get("financial_status") in PAID_STATUSES:
        found.append(("orders/paid", rest))
    found += [("refunds/create", r) for r in rest.get("refunds") or []]
    if rest.get("cancelled_at"):
        found.append(("orders/cancelled", rest))
    return found


def fed_version(event: Event, payload: Mapping[str, Any], store: StoreConfig) -> datetime | None:
    """The version (``updated_at``) of the order whose every event the delivery of ``event`` fed, or None.

    One topic, one event: an order payload's version is fed whole when the deliveries that describe
    it (:func:`order_deliveries`) are only the delivery's own topic (no refund in it, and for
    ``orders/paid`` no cancellation, for ``orders/cancelled`` no payment). ``refunds/create`` names no
    version of its order: the refund changed the order's ``updated_at`` to a time it does not carry.
    """
    if event.topic not in ORDER_TOPICS or not isinstance(payload.get("refunds"), list):
        return None
    if {topic for topic, _ in order_deliveries(payload)} - {event.topic}:
        return None
    updated = payload.get("updated_at")
    return moment(updated) if isinstance(updated, str) else None
