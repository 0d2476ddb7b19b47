"""WooCommerce: order webhooks (REST API v3 order objects) to events, orders and refunds.

WooCommerce sends the whole order on ``order.created`` / ``order.updated``, many times per order, so
one delivery can mean several events: the order is paid, each entry of ``refunds[]`` is a refund,
and a cancelled or refunded status after payment is a cancellation. Redeliveries map to the same
events and the intake's dedupe keeps one job each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from config.stores import StoreConfig
from workers.events import Event, Ignored, format_reference, parse_head
from workers.orders import (
    ZERO,
    MappingError,
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

PLATFORM = "woocommerce"
SIGNATURE_HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
# Every event carries the order's number: no index from order id to reference is needed.
NAMES_ORDERS_BY_ID = False

ORDER_TOPICS = {"order.created", "order.updated"}
PAID_STATUSES = {"processing", "completed"}
UNDONE_STATUSES = {"cancelled", "refunded"}
# Not paid, or no longer: a date_paid on these does not make them worth points.
NEVER_PAID_STATUSES = UNDONE_STATUSES | {"failed", "checkout-draft", "trash"}
# WooCommerce's ping when a webhook is saved: form-encoded, unsigned, and it wants exactly 200.
_PING = re.compile(rb"^webhook_id=\d+$")
# Line meta the WooCommerce Gift Cards extension (and similar plugins) put on gift card lines.
_GIFT_CARD_META = ("wc_gc_giftcard", "gift_card")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


class _Meta(_Model):
    key: str = ""
    value: Any = None


class _RefundLine(_Model):
    """A line of a refund, when the refund carries them (the refunds API does; the order's list does not)."""

    id: int | None = None
    product_id: int | None = None
    quantity: int = 0
    total: PayloadMoney = ZERO
    total_tax: PayloadMoney = ZERO
    meta_data: list[_Meta] = []


class _RefundShipping(_Model):
    total: PayloadMoney = ZERO
    total_tax: PayloadMoney = ZERO


class _RefundHead(_Model):
    id: int
    reason: str | None = None
    total: PayloadMoney = ZERO         # the order's list: negative
    amount: PayloadMoney | None = None  # the refunds API: positive
    line_items: list[_RefundLine] = []
    shipping_lines: list[_RefundShipping] = []


class _OrderHead(_Model):
    """The few fields routing needs; parsed on the intake's hot path."""

    id: int
    number: str
    status: str
    date_paid: str | None = None
    refunds: list[_RefundHead] = []

    _number_as_text = field_validator("number", mode="before")(_text)


class _LineItem(_Model):
    id: int | None = None
    name: str = ""
    product_id: int | None = None
    quantity: Quantity
    total: PayloadMoney
    total_tax: PayloadMoney = ZERO
    sku: str | None = None
    meta_data: list[_Meta] = []


class _Coupon(_Model):
    code: str
    discount: PayloadMoney = ZERO
    discount_tax: PayloadMoney = ZERO


class _Fee(_Model):
    name: str = ""
    total: PayloadMoney = ZERO
    total_tax: PayloadMoney = ZERO


class _Billing(_Model):
    email: str | None = None


class _Order(_OrderHead):
    date_paid_gmt: str | None = None
    currency: str
    total: PayloadMoney
    total_tax: PayloadMoney = ZERO
    shipping_total: PayloadMoney = ZERO
    shipping_tax: PayloadMoney = ZERO
    discount_total: PayloadMoney = ZERO
    discount_tax: PayloadMoney = ZERO
    billing: _Billing = _Billing()
    line_items: list[_LineItem] = []
    coupon_lines: list[_Coupon] = []
    fee_lines: list[_Fee] = []


def is_ping(body: bytes) -> bool:
    """Whether this is the ping WooCommerce sends when a webhook is saved."""
    return bool(_PING.match(body))


def reference(store: StoreConfig, order_id: int | str, number: str) -> str:
    """The store's reference for an order."""
    return format_reference(store.reference_format, number=number, id=str(order_id), name=f"#{number}")


def classify(topic: str, body: bytes, store: StoreConfig) -> list[Event] | Ignored:
    """The events one delivery carries (redeliveries give the same ones), or why it carries none."""
    if topic not in ORDER_TOPICS:
        return Ignored(reason=f"topic {topic or '(none)'} is not used; send order.created and order.updated")
    head = parse_head(_OrderHead, body)
    if isinstance(head, Ignored):
        return _legacy(body) or head

    events = _events(head, topic, store)
    if not events:
        return Ignored(reason=f"order {reference(store, head.id, head.number)} is {head.status} and not paid: "
                              "nothing to award yet")
    return events


def _events(head: _OrderHead, topic: str, store: StoreConfig) -> list[Event]:
    """The events an order payload means, in the order the intake submits them."""
    order_id = str(head.id)
    ref = reference(store, head.id, head.number)

    def event(kind: str, refund_id: str | None = None) -> Event:
        return Event(store=store.id, platform=PLATFORM, kind=kind, order_id=order_id, reference=ref,  # type: ignore[arg-type]
                     refund_id=refund_id, topic=topic)

    paid_once = bool(head.date_paid) or head.status in PAID_STATUSES
    events: list[Event] = []
    if head.status in PAID_STATUSES or (head.date_paid and head.status not in NEVER_PAID_STATUSES):
        events.append(event("paid"))
    # WooCommerce lists refunds newest first; apply them in the order they were made.
    events.extend(event("refund", str(r.id)) for r in sorted(head.refunds, key=lambda r: r.id))
    if head.status in UNDONE_STATUSES and paid_once:
        events.append(event("cancel"))
    return events


def modified_at(order: Mapping[str, Any]) -> datetime | None:
    """An order's version: ``date_modified_gmt`` (UTC without an offset). Not ``date_modified``, which is
    in the site's own time zone, unknown here."""
    raw = order.get("date_modified_gmt")
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC) if isinstance(raw, str) else None
    except ValueError:
        return None


def fed_version(event: Event, payload: Mapping[str, Any], store: StoreConfig) -> datetime | None:
    """The version of the order whose every event the delivery of ``event`` fed, or None.

    A payload is the whole order, so its events are all its version holds; the intake submits them one
    after another, so the job of the last one exists only once all were fed. Only that job answers.
    """
    if event.topic not in ORDER_TOPICS:
        return None
    try:
        head = _OrderHead.model_validate(payload)
    except ValidationError:
        return None
    events = _events(head, event.topic, store)
    return modified_at(payload) if events and events[-1].job_id == event.job_id else None


def _legacy(body: bytes) -> Ignored | None:
    """The legacy REST API's ``{"order": {...}}``: the webhook was saved with the wrong API version."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and set(data) == {"order"}:
        return Ignored(reason="a Legacy API order: set the webhook's API version to \"WP REST API Integration v3\" "
                              "(WooCommerce → Settings → Advanced → Webhooks)")
    return None


def _is_gift_card(line: _LineItem | _RefundLine, store: StoreConfig) -> bool:
    if line.product_id is not None and line.product_id in store.gift_card_product_ids:
        return True
    return any(m.key.lstrip("_").startswith(_GIFT_CARD_META) for m in line.meta_data)


def _redeemed(order: _Order, store: StoreConfig) -> tuple[int, Decimal]:
    redemption = store.redemption
    if redemption is None:
        return 0, ZERO
    discount = ZERO
    if redemption.coupon_prefix:
        prefix = redemption.coupon_prefix.lower()
        discount += sum((c.discount + c.discount_tax for c in order.coupon_lines
                         if c.code.lower().startswith(prefix)), ZERO)
    if redemption.fee_name:
        name = redemption.fee_name.strip().lower()
        discount += sum((-(f.total + f.total_tax) for f in order.fee_lines
                         if f.name.strip().lower() == name), ZERO)
    return points_redeemed(store, discount)


def map_order(payload: Mapping[str, Any], store: StoreConfig) -> Order:
    """The normalized order; raises MappingError naming the field that is missing or wrong."""
    order: _Order = parse(_Order, payload)
    lines = []
    for line in order.line_items:
        total = line_total(line.total + line.total_tax, ZERO)
        lines.append(OrderLine(
            line_id=str(line.id) if line.id is not None else None,
            product_id=line.product_id or None, name=product_name(line.name), sku=line.sku or None,
            quantity=line.quantity, unit_price=money(total / line.quantity) if line.quantity else total, total=total,
            gift_card=_is_gift_card(line, store),
        ))
    redeemed, redeemed_amount = _redeemed(order, store)
    undone = f"the order is {order.status} (status in the payload)" if order.status in NEVER_PAID_STATUSES else None
    return Order(
        store=store.id, platform=PLATFORM, reference=reference(store, order.id, order.number),
        order_id=str(order.id), email=normalize_email(order.billing.email), currency=order.currency.upper(),
        total=order.total, taxes_included=False, shipping=order.shipping_total, shipping_tax=order.shipping_tax,
        tax=order.total_tax, discounts=order.discount_total + order.discount_tax, lines=lines,
        points_redeemed=redeemed, points_discount=redeemed_amount, undone=undone,
        paid_at=moment(order.date_paid_gmt) or moment(order.date_paid),
    )


def _items(entry: _RefundHead, store: StoreConfig) -> RefundItems | None:
    """What a refund gave back item by item, when it lists its lines (amounts there are negative)."""
    if not entry.line_items and not entry.shipping_lines:
        return None
    goods = goods_tax = gift_cards = ZERO
    lines: dict[str, int] = {}
    for line in entry.line_items:
        total, tax = abs(line.total), abs(line.total_tax)
        if _is_gift_card(line, store):
            gift_cards += total + tax
        else:
            goods, goods_tax = goods + total, goods_tax + tax
        # A refund line names the order line it refunds in its meta; its own id is the refund line's.
        refunded = next((m.value for m in line.meta_data if m.key == "_refunded_item_id"), None)
        if refunded is not None:
            lines[str(refunded)] = abs(line.quantity)
    return RefundItems(goods=goods, goods_tax=goods_tax, gift_cards=gift_cards, tax_included=False, lines=lines,
                       shipping=sum((abs(s.total) for s in entry.shipping_lines), ZERO),
                       shipping_tax=sum((abs(s.total_tax) for s in entry.shipping_lines), ZERO))


def map_refund(payload: Mapping[str, Any], refund_id: str, store: StoreConfig) -> Refund:
    """The refund ``refund_id`` of the order in ``payload`` (WooCommerce lists refunds on the order)."""
    order: _Order = parse(_Order, payload)
    for entry in order.refunds:
        if str(entry.id) == refund_id:
            return Refund(
                store=store.id, platform=PLATFORM, order_id=str(order.id),
                reference=reference(store, order.id, order.number), refund_id=refund_id,
                amount=money(abs(entry.total or entry.amount or ZERO)), currency=order.currency.upper(),
                reason=entry.reason or None,
                items=_items(entry, store),
            )
    raise MappingError("refunds", f"no refund with id {refund_id} on order {order.id}")


def orders_to_redact(payload: Mapping[str, Any]) -> list[str]:
    """WooCommerce sends no privacy requests; its shops erase personal data themselves."""
    return []


def order_reference(payload: Mapping[str, Any], store: StoreConfig) -> tuple[str, str]:
    """(platform order id, reference) of an order payload."""
    head: _OrderHead = parse(_OrderHead, payload)
    return str(head.id), reference(store, head.id, head.number)
