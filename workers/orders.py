"""The normalized order and refund every platform adapter produces, and the points base rules.

Whatever the shop, the jobs see an :class:`Order` or a :class:`Refund`; the rules that decide how
much of an order earns points (``amount_basis``, gift cards, guests, test orders) live here once.
"""

from __future__ import annotations

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


def parse(model: type[BaseModel], payload: Any) -> Any:
    """Validate a platform payload into ``model``, turning the first problem into a MappingError."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise MappingError(field, first["msg"]) from None


def money(value: Decimal) -> Decimal:
    """Round to cents, as shops do."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def normalize_email(raw: str | None) -> str | None:
    """Trimmed and lowercased, or None when there is no usable address."""
    email = (raw or "").strip().lower()
    return email if "@" in email else None


def mask_email(email: str | None) -> str:
    """``j***@example.com``: enough for ops to tell customers apart, not enough to identify one."""
    if not email:
        return "-"
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


class OrderLine(BaseModel):
    """One line of the cart."""

    model_config = ConfigDict(frozen=True)

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
    shipping: Decimal = Field(description="shipping excluding its tax")
    shipping_tax: Decimal = ZERO
    tax: Decimal = Field(description="all tax, shipping tax included")
    discounts: Decimal = ZERO
    lines: list[OrderLine]
    points_redeemed: int = 0
    points_discount: Decimal = ZERO
    test: bool = False

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
        if self.test and not store.allow_test_orders:
            return "test order (the store does not allow test orders)"
        if self.email is None:
            return "guest order without an email address: nobody to award points to"
        # Points spent on an otherwise free order must still reach Loyalty.lt, so only skip when none were.
        if self.points_base(store) <= ZERO and not self.points_redeemed:
            return f"nothing earns points (points base 0 with amount_basis {store.amount_basis})"
        return None


class Refund(BaseModel):
    """Money given back on an order (a refund event), or all of it (a cancellation)."""

    model_config = ConfigDict(frozen=True)

    store: str
    platform: str
    order_id: str
    reference: str | None
    refund_id: str
    amount: Decimal = Field(ge=0)
    currency: str | None = None
    reason: str | None = None


def points_redeemed(store: StoreConfig, discount: Decimal) -> tuple[int, Decimal]:
    """Points spent on an order shown as ``discount`` money, per the store's redemption settings."""
    if store.redemption is None or discount <= ZERO:
        return 0, ZERO
    discount = money(discount)
    return int(discount * store.redemption.points_per_unit), discount
