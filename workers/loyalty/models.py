"""Loyalty.lt Shop API requests and answers, as pydantic models.

Requests are strict (a bad request is our bug, caught before it is sent); answers are lenient
(extra fields allowed, most optional), because the API may add fields and the bridge must not
break when it does. The deduct-points body is not documented; :class:`DeductPointsRequest` is our
best inference, kept here alone so it is easy to change: the fields Loyalty.lt's own clients sent
(``card_id``, ``card_number``, ``points``, ``description``, ``shop_id``) plus the order's.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

CENT = Decimal("0.01")


def _money_json(value: Decimal) -> float:
    # The API wants JSON numbers, never strings; cents rounded half up as shops do.
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


Money = Annotated[Decimal, Field(ge=0), PlainSerializer(_money_json, return_type=float, when_used="json")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The JSON body, without unset (None) fields."""
        return self.model_dump(mode="json", exclude_none=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Customer(_Request):
    """Who the points belong to: the API needs ``user_email`` or ``user_id``."""

    user_email: str | None = None
    user_id: int | None = None

    @model_validator(mode="after")
    def _someone(self) -> _Customer:
        if not self.user_email and self.user_id is None:
            raise ValueError("user_email or user_id is required")
        return self


class Envelope(_Answer):
    """Every answer: ``{success, message, code, request_id, data, errors}`` (+ ``meta`` on lists).

    ``success`` is optional here so error answers missing it still yield their message; a 2xx
    answer without ``success: true`` is refused by the client.
    """

    success: bool | None = None
    message: str | None = None
    code: str | int | None = None
    request_id: str | None = None
    data: Any = None
    errors: Any = None
    meta: dict[str, Any] | None = None


# --- create transaction ----------------------------------------------------------------------------

class CartItem(_Request):
    """One product line, sent for the partner's analytics."""

    product_id: int | None = None
    product_name: str
    quantity: int = Field(ge=0)
    unit_price: Money
    total_price: Money
    sku: str | None = None
    category: str | None = None


class CreateTransactionRequest(_Customer):
    """POST /{locale}/shop/transactions/create: award (and optionally redeem) for an order."""

    order_id: str = Field(min_length=1)
    order_total: Money
    points: int | None = Field(default=None, ge=0)
    currency: str = "EUR"
    description: str | None = None
    shop_id: int | None = None
    partner_card_id: int | None = None
    loyalty_card_id: int | None = None
    points_redeemed: int | None = Field(default=None, ge=0)
    points_discount_amount: Money | None = None
    cart_items: list[CartItem] | None = None
    meta_data: dict[str, Any] | None = None


class CreateTransactionResult(_Answer):
    """``data`` of a created transaction."""

    transaction_id: int | None = None
    points_awarded: int | None = None
    points_balance: int | None = None
    loyalty_card_id: int | None = None
    card_number: str | None = None
    user_id: int | None = None
    order_total: Decimal | None = None
    currency: str | None = None


# --- deduct points (body inferred) --------------------------------------------------------------

# Which body a deduction is sent with: "full" (the clients' fields and the order's), or "sdk" (only
# what both of Loyalty.lt's own clients always sent), for an API that refuses the full one.
DeductBody = Literal["full", "sdk"]
DEDUCT_BODIES: tuple[DeductBody, ...] = get_args(DeductBody)
SDK_DEDUCT_FIELDS = ("card_id", "points", "description")

class DeductPointsRequest(_Request):
    """POST /{locale}/shop/transactions/deduct-points (body inferred, see the module docstring).

    Loyalty.lt's PHP client sent ``{card_id, points, description}`` and its JavaScript client
    ``{card_id?, card_number?, points, description?, shop_id?}``; the docs' refund guidance names the
    order and a refund id. This body carries all of them, so it suits either reading of the endpoint.
    """

    card_id: int | None = None
    card_number: str | None = None
    user_id: int | None = None
    user_email: str | None = None
    points: int = Field(gt=0)
    # What the customer reads in their card's history; it also names the refund, so the bridge can
    # find the deduction in the transaction list however Loyalty.lt files it.
    description: str = Field(min_length=1, max_length=255)
    shop_id: int | None = None
    order_id: str = Field(min_length=1)
    refund_id: str | None = None
    refund_amount: Money | None = None
    currency: str | None = None
    reason: str | None = Field(default=None, max_length=255)
    meta_data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _whose(self) -> DeductPointsRequest:
        if self.card_id is None and self.user_id is None and not self.user_email:
            raise ValueError("card_id, user_id or user_email is required")
        return self

    def body(self, shape: DeductBody = "full") -> dict[str, Any]:
        """The JSON body: every set field, or (``"sdk"``) only ``card_id``, ``points`` and ``description``."""
        full = super().body()
        if shape == "full":
            return full
        if self.card_id is None:
            raise ValueError("the SDKs' deduct body names the card, and this deduction's card_id is unknown")
        return {name: full[name] for name in SDK_DEDUCT_FIELDS}


class DeductPointsResult(_Answer):
    """``data`` of a deduction (inferred: every field optional)."""

    transaction_id: int | None = None
    points_deducted: int | None = None
    points_balance: int | None = None


# --- card balance --------------------------------------------------------------------------------

class BalanceQuery(_Request):
    """Query of GET /{locale}/shop/loyalty-cards/balance: the card by id or number, or its user."""

    card_id: int | None = None
    card_number: str | None = None
    user_id: int | None = None

    @model_validator(mode="after")
    def _which(self) -> BalanceQuery:
        if self.card_id is None and self.card_number is None and self.user_id is None:
            raise ValueError("card_id, card_number or user_id is required")
        return self

    def query(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.body().items()}


class CardBalance(_Answer):
    """``data`` of the balance: the card and its points (non-expired only)."""

    card_id: int | None = None
    card_number: str | None = None
    points: int


# --- list transactions -----------------------------------------------------------------------------

TransactionType = Literal["purchase", "refund", "bonus"]


class TransactionFilters(_Request):
    """Query of GET /{locale}/shop/transactions (every documented filter, and paging)."""

    user_id: int | None = None
    user_email: str | None = None
    loyalty_card_id: int | None = None
    shop_id: int | None = None
    staff_id: int | None = None
    category_id: int | None = None
    reference_number: str | None = None
    type: TransactionType | None = None
    date_from: date | None = None
    date_to: date | None = None
    per_page: int = Field(default=15, ge=1, le=100)
    page: int = Field(default=1, ge=1)

    def query(self) -> dict[str, str]:
        """Query parameters (dates as YYYY-MM-DD)."""
        return {k: str(v) for k, v in self.body().items()}


class Party(_Answer):
    """A named thing in an answer (shop, partner, ...)."""

    id: int | None = None
    name: str | None = None


class TransactionUser(Party):
    email: str | None = None
    phone: str | None = None


class TransactionCard(Party):
    number: str | None = None


class Transaction(_Answer):
    """One row of the transaction list (``points`` is negative for refunds)."""

    id: int
    type: str | None = None
    points: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    description: str | None = None
    reference_number: str | None = None
    status: str | None = None
    user: TransactionUser | None = None
    loyalty_card: TransactionCard | None = None
    shop: Party | None = None
    metadata: dict[str, Any] | None = None
    transaction_date: str | None = None
    created_at: str | None = None


class PageMeta(_Answer):
    current_page: int = 1
    last_page: int = 1
    per_page: int = 15
    total: int = 0


class TransactionPage(_Answer):
    """One page of transactions."""

    meta: PageMeta
    data: list[Transaction]


# --- validate credentials ------------------------------------------------------------------------

class Partner(Party):
    status: str | None = None


class CredentialsInfo(_Answer):
    """``data`` of validate-credentials."""

    valid: bool = False
    partner: Partner | None = None
    environment: str | None = None


# --- card points (JWT) ----------------------------------------------------------------------------

class AwardPointsRequest(_Request):
    """POST /{locale}/shop/points/award (JWT)."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["purchase", "bonus", "referral", "activity", "manual"]
    purchase_amount: Money | None = None
    description: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] | None = None


class RedeemPointsRequest(_Request):
    """POST /{locale}/shop/points with transaction_type "redeem" (JWT); not reversible by the API."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["redeem"] = "redeem"
    redemption_type: Literal["purchase_discount", "free_product", "voucher", "cashback"]
    purchase_amount: Money | None = None
    discount_amount: Money | None = None
    description: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] | None = None


class Balance(_Answer):
    current_points: int | None = None
    previous_points: int | None = None
    points_redeemed: int | None = None
    tier: str | None = None
    tier_upgraded: bool | None = None
    next_tier_points: int | None = None


class CardPointsResult(_Answer):
    """``data`` of a card award or redemption: the transaction and the new balance."""

    transaction: dict[str, Any] | None = None
    balance: Balance | None = None
