"""Loyalty.lt Shop API requests and answers, as pydantic models.

Requests are strict (a bad request is our bug, caught before it is sent); answers are lenient
(extra fields allowed, most optional), because the API may add fields and the bridge must not
break when it does. The deduct-points body is not documented; :class:`DeductPointsRequest` is our
best inference, kept here alone so it is easy to change.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

# Money goes out as a JSON number with two decimals, never a string.
Money = Annotated[Decimal, PlainSerializer(lambda v: float(round(v, 2)), return_type=float, when_used="json")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The JSON body, without unset (None) fields."""
        return self.model_dump(mode="json", exclude_none=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Envelope(_Answer):
    """Every answer: ``{success, message, code, request_id, data, errors, meta}``."""

    success: bool
    message: str = ""
    code: str | int | None = None
    request_id: str | None = None
    data: Any = None
    errors: Any = None
    meta: dict[str, Any] | None = None


class CartItem(_Request):
    product_id: int | None = None
    product_name: str
    quantity: int
    unit_price: Money
    total_price: Money
    sku: str | None = None
    category: str | None = None


class CreateTransactionRequest(_Request):
    """POST /{locale}/shop/transactions/create: award (and optionally redeem) for an order."""

    user_email: str | None = None
    user_id: int | None = None
    order_id: str = Field(min_length=1)
    order_total: Money = Field(ge=0)
    points: int | None = Field(default=None, ge=0)
    currency: str = "EUR"
    description: str | None = None
    shop_id: int | None = None
    partner_card_id: int | None = None
    loyalty_card_id: int | None = None
    points_redeemed: int | None = Field(default=None, ge=0)
    points_discount_amount: Money | None = None
    cart_items: list[CartItem] = []
    meta_data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _someone(self) -> CreateTransactionRequest:
        if not self.user_email and self.user_id is None:
            raise ValueError("user_email or user_id is required")
        return self


class CreateTransactionResult(_Answer):
    transaction_id: int | None = None
    points_awarded: int | None = None
    points_balance: int | None = None
    loyalty_card_id: int | None = None
    card_number: str | None = None
    user_id: int | None = None
    order_total: float | None = None
    currency: str | None = None


class DeductPointsRequest(_Request):
    """POST /{locale}/shop/transactions/deduct-points (body inferred, see the module docstring)."""

    user_email: str | None = None
    user_id: int | None = None
    order_id: str = Field(min_length=1)
    refund_id: str | None = None
    points: int = Field(ge=0)
    refund_amount: Money | None = None
    currency: str | None = None
    reason: str | None = None
    meta_data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _someone(self) -> DeductPointsRequest:
        if not self.user_email and self.user_id is None:
            raise ValueError("user_email or user_id is required")
        return self


class DeductPointsResult(_Answer):
    transaction_id: int | None = None
    points_deducted: int | None = None
    points_balance: int | None = None


TransactionType = Literal["purchase", "refund", "bonus"]


class TransactionFilters(_Request):
    """Filters of GET /{locale}/shop/transactions."""

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
        return {k: str(v) for k, v in self.model_dump(mode="json", exclude_none=True).items()}


class Party(_Answer):
    id: int | None = None
    name: str | None = None


class Transaction(_Answer):
    """One row of the transaction list."""

    id: int
    type: str | None = None
    points: int | None = None
    amount: float | None = None
    currency: str | None = None
    description: str | None = None
    reference_number: str | None = None
    status: str | None = None
    user: Party | None = None
    loyalty_card: Party | None = None
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
    meta: PageMeta
    data: list[Transaction]


class CredentialsInfo(_Answer):
    valid: bool = False
    partner: Party | None = None
    environment: str | None = None


class AwardPointsRequest(_Request):
    """POST /{locale}/shop/points/award (JWT)."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["purchase", "bonus", "referral", "activity", "manual"]
    purchase_amount: Money | None = None
    description: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] | None = None


class RedeemPointsRequest(_Request):
    """POST /{locale}/shop/points with transaction_type "redeem" (JWT)."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["redeem"] = "redeem"
    redemption_type: Literal["purchase_discount", "free_product", "voucher", "cashback"]
    discount_amount: Money | None = None
    description: str | None = Field(default=None, max_length=255)
    metadata: dict[str, Any] | None = None


class Balance(_Answer):
    current_points: int | None = None
    previous_points: int | None = None
    tier: str | None = None


class CardPointsResult(_Answer):
    transaction: dict[str, Any] | None = None
    balance: Balance | None = None
