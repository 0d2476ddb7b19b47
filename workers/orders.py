"""The normalized order and refund every platform adapter produces, and the points base rules.

Whatever the shop, the jobs see an :class:`Order` or a :class:`Refund`; the rules that decide how
much of an order earns points (``amount_basis``, gift cards, guests, test orders) live here once,
and so does the share of a refund that took back money which had earned points.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.stores import StoreConfig

CENT = Decimal("0.01")
ZERO = Decimal("0")
# Bounds for what shops send: anything beyond is not an order, and must not reach Decimal arithmetic.
PayloadMoney = Annotated[Decimal, Field(ge=-10**9, le=10**9, allow_inf_nan=False)]
Quantity = Annotated[int, Field(ge=0, le=10**6)]


class MappingError(Exception):
    """A payload cannot be turned into an order or refund; permanent, and names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def first_problem(error: ValidationError) -> tuple[str, str]:
    """(field, message) of a validation error's first problem; never the input value (it may be personal)."""
    first = error.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "(payload)", first["msg"]


def parse(model: type[BaseModel], payload: Any) -> Any:
    """Validate a platform payload into ``model``, turning the first problem into a MappingError."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise MappingError(*first_problem(exc)) from None


def money(value: Decimal) -> Decimal:
    """Round to cents, as shops do."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def normalize_email(raw: str | None) -> str | None:
    """Trimmed and lowercased, or None when there is no usable address."""
    email = (raw or "").strip().lower()
    return email if "@" in email else None


def product_name(raw: str) -> str:
    """A product name as a person reads it: shops send some HTML-escaped (``Ship Your Idea &ndash; …``)."""
    return html.unescape(raw).strip()


def moment(text: str | None) -> datetime | None:
    """An ISO 8601 time from a payload, in UTC (a time without an offset is taken as UTC); None when
    absent or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def line_total(gross: Decimal, discounts: Decimal) -> Decimal:
    """A line's money after its discounts, never below zero (a free line can carry a discount)."""
    return max(money(gross - discounts), ZERO)


def mask_email(email: str | None) -> str:
    """``j***@example.com``: enough for ops to tell customers apart, not enough to identify one."""
    if not email:
        return "-"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


class OrderLine(BaseModel):
    """One line of the cart."""

    model_config = ConfigDict(frozen=True)

    line_id: str | None = None  # the platform's line id: what a refund names when it returns the line
    product_id: int | None = None
    name: str
    sku: str | None = None
    quantity: int
    unit_price: Decimal
    total: Decimal
    gift_card: bool = False


class Order(BaseModel):
    """A paid order, whatever the platform. Money is in the shop's currency, tax included in ``total``."""

    model_config = ConfigDict(frozen=True)

    store: str
    platform: str
    reference: str
    order_id: str
    email: str | None
    currency: str
    total: Decimal
    # What the customer paid in their own currency (Shopify's presentment money), when it differs.
    presentment_currency: str | None = None
    presentment_total: Decimal | None = None
    # Whether line prices include their tax (Shopify's taxes_included; WooCommerce lines exclude it).
    taxes_included: bool = True
    shipping: Decimal = Field(description="shipping excluding its tax")
    shipping_tax: Decimal = ZERO
    tax: Decimal = Field(description="all tax, shipping tax included")
    discounts: Decimal = ZERO
    lines: list[OrderLine]
    points_redeemed: int = 0
    points_discount: Decimal = ZERO
    test: bool = False
    # Why the payload itself says the order is no longer paid (voided, refunded, cancelled), if it does.
    undone: str | None = None
    # When it was paid, if the payload says (an award delay counts from then).
    paid_at: datetime | None = None
    # Said in the description and meta_data of what is sent for it (the live probe's "loyalty-bridge
    # probe", so a partner's staff can tell it from real orders); None for shops' orders.
    note: str | None = None

    @property
    def gift_card_total(self) -> Decimal:
        """Money paid for gift cards: it is money, not merchandise, and never earns points."""
        return sum((line.total for line in self.lines if line.gift_card), ZERO)

    def points_base(self, store: StoreConfig) -> Decimal:
        """The amount that earns points, per the store's ``amount_basis``."""
        amount = self.total - self.gift_card_total
        if store.amount_basis in ("total_excl_shipping", "total_excl_shipping_and_tax"):
            amount -= self.shipping + self.shipping_tax
        if store.amount_basis == "total_excl_shipping_and_tax":
            # Shipping tax was taken out with the shipping; take the rest of the tax.
            amount -= self.tax - self.shipping_tax
        return max(money(amount), ZERO)

    def skip_reason(self, store: StoreConfig) -> str | None:
        """Why this order earns nothing, or None when it earns points."""
        if self.undone is not None:
            return self.undone
        if self.test and not store.allow_test_orders:
            return "test order (the store does not allow test orders)"
        if self.email is None:
            return "guest order without an email address: nobody to award points to"
        # Points spent on an otherwise free order must still reach Loyalty.lt, so only skip when none were.
        if self.points_base(store) <= ZERO and not self.points_redeemed:
            return f"nothing earns points (points base 0 with amount_basis {store.amount_basis})"
        return None


class RefundItems(BaseModel):
    """What a refund gave back, item by item, when the payload says (all in the refund's currency).

    It tells the part of the money that had earned points from the part that never did (gift cards,
    and shipping or tax where the store's ``amount_basis`` leaves them out).
    """

    model_config = ConfigDict(frozen=True)

    goods: Decimal = ZERO           # refunded lines other than gift cards, as the shop prices them
    goods_tax: Decimal = ZERO       # their tax (inside ``goods`` when the prices include tax)
    gift_cards: Decimal = ZERO      # refunded gift card lines, tax included
    shipping: Decimal = ZERO        # refunded shipping, without its tax
    shipping_tax: Decimal = ZERO
    # Whether ``goods`` includes ``goods_tax``; None: as the order's prices do (Shopify's taxes_included).
    tax_included: bool | None = None
    # Platform line id → quantity refunded.
    lines: dict[str, int] = {}

    def total(self, taxes_included: bool) -> Decimal:
        """Everything itemized, tax included."""
        return self._goods_paid(taxes_included) + self.gift_cards + self.shipping + self.shipping_tax

    def earning(self, store: StoreConfig, taxes_included: bool) -> Decimal:
        """The itemized money that had earned points, per the store's ``amount_basis``."""
        amount = self._goods_paid(taxes_included)
        if store.amount_basis == "total":
            amount += self.shipping + self.shipping_tax
        if store.amount_basis == "total_excl_shipping_and_tax":
            amount -= self.goods_tax
        return max(amount, ZERO)

    def _goods_paid(self, taxes_included: bool) -> Decimal:
        included = taxes_included if self.tax_included is None else self.tax_included
        return self.goods if included else self.goods + self.goods_tax


class Refund(BaseModel):
    """Money given back on an order (a refund event), or all of it (a cancellation)."""

    model_config = ConfigDict(frozen=True)

    store: str
    platform: str
    order_id: str
    reference: str | None
    refund_id: str
    # The money given back, in ``currency`` (the customer's currency for Shopify multi-currency orders;
    # None when the payload does not say).
    amount: Decimal = Field(ge=0)
    currency: str | None = None
    reason: str | None = None
    items: RefundItems | None = None
    # As Order.note: said in the deduction's description and meta_data.
    note: str | None = None


def points_redeemed(store: StoreConfig, discount: Decimal) -> tuple[int, Decimal]:
    """Points spent on an order shown as ``discount`` money, per the store's redemption settings."""
    if store.redemption is None or discount <= ZERO:
        return 0, ZERO
    discount = money(discount)
    return int(discount * store.redemption.points_per_unit), discount
