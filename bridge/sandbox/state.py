"""The sandbox's in-memory world: its configuration, the requests it accepts, and its data.

Partners own cards; users (platform-wide, found by email or id) hold one card per partner; cards
hold balances; every balance change is a transaction. Pure Python (no Flask), so it is testable
alone. One lock guards every read and change, because the sandbox runs under a threaded server.
"""

from __future__ import annotations

import hmac
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from workers.loyalty.models import TransactionFilters

# Ids of each kind start far apart, so a client that mixes up a user id and a card id shows it.
ID_BASES = {"user": 100, "card": 500, "transaction": 1000}
NEXT_TIER_AT = 1000  # the sandbox has one tier ("Bronze"); next_tier_points counts towards this
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
RECENT_REQUESTS = 500  # how many requests GET /_sandbox/requests shows (method, path, query, status)


class SandboxError(Exception):
    """A refusal the API answers in its envelope: HTTP status, message, code and field errors."""

    def __init__(self, status: int, message: str, code: str | int | None = None,
                 errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors


def user_not_found() -> SandboxError:
    return SandboxError(404, "User not found", "NOT_FOUND")


# --- configuration -------------------------------------------------------------------------------

class PartnerCredentials(BaseModel):
    """One partner the sandbox knows, with the key pair its Shop API calls must carry."""

    api_key: str = Field(pattern=r"^lty_")
    api_secret: str = Field(min_length=1, repr=False)
    partner_id: int = Field(ge=1)
    name: str


class FailRule(BaseModel):
    """Answer requests whose path ends with ``path`` (and whose JSON body has ``match``) with an error."""

    path: str = Field(min_length=1, description='path suffix, e.g. "transactions/create"')
    match: dict[str, Any] = Field(default_factory=dict)
    status: int = Field(500, ge=400, le=599)
    code: str | int | None = None
    message: str = "Injected failure"
    errors: dict[str, list[str]] | None = None
    remaining: int | None = Field(None, ge=0, description="answers left; None means forever")


def _default_partners() -> list[PartnerCredentials]:
    return [PartnerCredentials(api_key="lty_sandbox_demo", api_secret="sandbox-secret", partner_id=1,
                               name="Sandbox Partner")]


class SandboxConfig(BaseModel):
    """Everything that shapes the sandbox: partners, the card's points rule, switches and faults."""

    model_config = ConfigDict(extra="forbid")

    partners: list[PartnerCredentials] = Field(default_factory=_default_partners, min_length=1)
    # The documented card rule: base = order_total / currency_amount * points_per_currency.
    points_per_currency: float = Field(10, ge=0)
    currency_amount: float = Field(1.0, gt=0)
    points_per_visit: int = Field(0, ge=0)
    round_points_up: bool = False
    auto_enroll: bool = True
    allow_negative_balance: bool = True
    # Faults, changeable at runtime through PATCH /_sandbox/config.
    latency_ms: int = Field(0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    error_after_commit_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_seconds: float = Field(30.0, ge=0)
    rate_limit_per_minute: int = Field(60, ge=0)
    # The limit's window; 60 s as documented. Tests shorten it to see a backlog drain quickly.
    rate_limit_window_seconds: int = Field(60, ge=1)
    fail_rules: list[FailRule] = Field(default_factory=list)
    # A slow commit: the change is made, but its answer times out (after timeout_seconds) and the
    # transaction shows in the list only slow_commit_seconds after the request.
    slow_commit_rate: float = Field(0.0, ge=0, le=1)
    slow_commit_seconds: float = Field(3.0, ge=0)
    # How deductions are listed: "bridge" files them under the order's reference with the metadata
    # sent; "docs" as the docs' example shows a refund: its own reference (REFUND-…), metadata of its
    # own ({source, points_deducted, reason}), the description kept.
    deduction_listing: Literal["bridge", "docs"] = "bridge"
    # A strict deduct: only the fields Loyalty.lt's own clients sent (STRICT_DEDUCT_FIELDS) are taken;
    # any other is refused with 422 and Laravel-style errors ("The order id field is prohibited.").
    strict_deduct: bool = False
    # A slow list: every change shows in GET transactions only this many seconds after it was made.
    list_lag_seconds: float = Field(0.0, ge=0)
    seed: int | None = None


# --- requests (the API's bodies and query, parsed at the edge) ---------------------------------

class _Customer(BaseModel):
    """A customer named by ``user_id`` or ``user_email``: one of them is required."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    user_id: int | None = Field(None, ge=1)
    user_email: str | None = Field(None, validate_default=True)

    @field_validator("user_email")
    @classmethod
    def _email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("user_id") is None:
                raise PydanticCustomError("required_without",
                                          "The user email field is required when user id is not present.")
            return None
        value = value.strip().lower()
        if not EMAIL.match(value):
            raise PydanticCustomError("email", "The user email must be a valid email address.")
        return value


class CreateTransaction(_Customer):
    """Body of POST transactions/create (and its alias award-points)."""

    order_id: str = Field(min_length=1, max_length=255)
    order_total: float = Field(ge=0)
    points: int | None = Field(None, ge=0)
    currency: str = Field("EUR", min_length=3, max_length=3)
    description: str | None = Field(None, max_length=255)
    shop_id: int | None = None
    partner_card_id: int | None = None
    loyalty_card_id: int | None = None
    points_redeemed: int = Field(0, ge=0)
    points_discount_amount: float | None = Field(None, ge=0)
    cart_items: list[dict[str, Any]] = Field(default_factory=list)
    meta_data: dict[str, Any] = Field(default_factory=dict)


class DeductPoints(BaseModel):
    """Body of POST transactions/deduct-points (undocumented). Accepts what Loyalty.lt's own clients
    sent (PHP ``{card_id, points, description}``; JavaScript ``{card_id?, card_number?, points,
    description?, shop_id?}``) and the customer/order fields the docs' refund guidance names."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    card_id: int | None = Field(None, ge=1)
    card_number: str | None = None
    user_id: int | None = Field(None, ge=1)
    user_email: str | None = None
    points: int = Field(ge=1)
    description: str | None = Field(None, max_length=255)
    shop_id: int | None = None
    order_id: str | None = Field(None, min_length=1, max_length=255)
    refund_id: str | None = None
    refund_amount: float | None = Field(None, ge=0)
    currency: str = Field("EUR", min_length=3, max_length=3)
    reason: str | None = Field(None, max_length=255)
    meta_data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("user_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not EMAIL.match(value):
            raise PydanticCustomError("email", "The user email must be a valid email address.")
        return value

    @model_validator(mode="after")
    def _whose(self) -> DeductPoints:
        if self.card_id is None and self.user_id is None and self.user_email is None:
            raise PydanticCustomError("required_without_all", "The card id field is required when none of user id / "
                                                              "user email are present.")
        return self


# What sdk-javascript posted to deduct-points (sdk-php: the first three): all a strict deduct takes.
STRICT_DEDUCT_FIELDS = frozenset({"card_id", "card_number", "points", "description", "shop_id"})


def prohibited_fields(body: dict[str, Any]) -> dict[str, list[str]]:
    """Laravel-style errors for the fields of a deduct body that a strict deduct refuses."""
    return {name: [f"The {name.replace('_', ' ')} field is prohibited."]
            for name in sorted(set(body) - STRICT_DEDUCT_FIELDS)}


class BalanceQuery(BaseModel):
    """Query of GET loyalty-cards/balance: the card by id or number, or its user (one is required)."""

    model_config = ConfigDict(extra="ignore")

    card_id: int | None = None
    card_number: str | None = None
    user_id: int | None = None


class CardAward(BaseModel):
    """Body of POST points/award (JWT)."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["purchase", "bonus", "referral", "activity", "manual"]
    purchase_amount: float | None = Field(None, ge=0)
    description: str | None = Field(None, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class CardRedeem(BaseModel):
    """Body of POST points with transaction_type "redeem" (JWT)."""

    card_id: int
    points: int = Field(gt=0)
    transaction_type: Literal["redeem"]
    redemption_type: Literal["purchase_discount", "free_product", "voucher", "cashback"]
    purchase_amount: float | None = Field(None, ge=0)
    discount_amount: float | None = Field(None, ge=0)
    description: str | None = Field(None, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ListQuery(TransactionFilters):
    """Query of GET transactions: the documented filters and paging (the client's own model; the
    server ignores parameters it does not know)."""

    model_config = ConfigDict(extra="ignore")


# --- the data --------------------------------------------------------------------------------

@dataclass
class User:
    id: int
    email: str
    name: str
    phone: str | None = None


@dataclass
class Card:
    id: int
    partner_id: int
    user_id: int
    name: str
    number: str
    points: int = 0


@dataclass
class Transaction:
    id: int
    partner_id: int
    type: str
    points: int
    amount: float
    currency: str
    description: str
    reference_number: str | None
    user_id: int
    card_id: int
    shop_id: int | None
    metadata: dict[str, Any]
    created_at: datetime
    status: str = "completed"
    staff_id: int | None = None
    category_id: int | None = None
    # Until when the list does not show it yet (a slow commit).
    hidden_until: datetime | None = None


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as the API writes it: 2024-12-08T14:30:00.000Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SandboxState:
    """Partners' customers, cards, balances and transactions, plus request counts for benchmarks.

    ``clock`` (returning aware UTC datetimes) stamps transactions; tests pass their own.
    """

    def __init__(self, config: SandboxConfig, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every user, card, transaction and request count (the configuration stays)."""
        with self._lock:
            self._last_id = dict(ID_BASES)
            self.users: dict[int, User] = {}
            self.cards: dict[int, Card] = {}
            self.transactions: dict[int, Transaction] = {}
            self._orders: set[tuple[int, str]] = set()
            self._requests: Counter[tuple[str, int]] = Counter()
            self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)

    # --- partners and customers (callers hold the lock for the private ones) ---

    def authenticate(self, api_key: str, api_secret: str) -> PartnerCredentials | None:
        """The partner whose key pair this is, or None (secrets compared in constant time)."""
        for partner in self.config.partners:
            if hmac.compare_digest(partner.api_key.encode(), api_key.encode()):
                return partner if hmac.compare_digest(partner.api_secret.encode(), api_secret.encode()) else None
        return None

    def partner(self, partner_id: int) -> PartnerCredentials | None:
        return next((p for p in self.config.partners if p.partner_id == partner_id), None)

    def _next_id(self, kind: str) -> int:
        self._last_id[kind] += 1
        return self._last_id[kind]

    def _find_user(self, email: str | None, user_id: int | None) -> User | None:
        if user_id is not None:
            return self.users.get(user_id)
        return next((u for u in self.users.values() if u.email == email), None)

    def _card_of(self, partner_id: int, user_id: int) -> Card | None:
        return next((c for c in self.cards.values() if c.partner_id == partner_id and c.user_id == user_id), None)

    def _enroll(self, partner: PartnerCredentials, user: User | None, email: str) -> tuple[User, Card]:
        """The customer's user and card, made as the default card template would make them."""
        if user is None:
            user = User(self._next_id("user"), email, email.split("@")[0].title())
            self.users[user.id] = user
        card_id = self._next_id("card")
        digits = f"{card_id:09d}"
        card = Card(card_id, partner.partner_id, user.id, f"{partner.name} kortelė",
                    f"{digits[:3]}-{digits[3:6]}-{digits[6:]}")
        self.cards[card.id] = card
        return user, card

    def _record(self, partner: PartnerCredentials, card: Card, type_: str, points: int, amount: float,
                currency: str, description: str, reference: str | None, shop_id: int | None,
                metadata: dict[str, Any], hidden_for: float = 0.0) -> Transaction:
        card.points += points
        now = self.clock()
        tx = Transaction(self._next_id("transaction"), partner.partner_id, type_, points, amount, currency,
                         description, reference, card.user_id, card.id, shop_id, metadata, now,
                         hidden_until=now + timedelta(seconds=hidden_for) if hidden_for else None)
        self.transactions[tx.id] = tx
        return tx

    def points_for(self, order_total: float) -> int:
        """The documented card rule, in decimals so that 15.50 × 10 is 155 and not 154.999…."""
        cfg = self.config
        base = Decimal(str(order_total)) / Decimal(str(cfg.currency_amount)) * Decimal(str(cfg.points_per_currency))
        rounding = ROUND_CEILING if cfg.round_points_up else ROUND_FLOOR
        return int(base.to_integral_value(rounding=rounding)) + cfg.points_per_visit

    # --- the Shop API's operations ---

    def create_purchase(self, partner: PartnerCredentials, req: CreateTransaction,
                        hidden_for: float = 0.0) -> dict[str, Any]:
        """Award points for an order (after redeeming ``points_redeemed``), once per order_id; a
        slow commit (``hidden_for`` seconds) lists it only later."""
        with self._lock:
            if (partner.partner_id, req.order_id) in self._orders:
                raise SandboxError(409, "Transaction already processed for this order", "RESOURCE_ALREADY_EXISTS")
            user = self._find_user(req.user_email, req.user_id)
            if user is None and not (self.config.auto_enroll and req.user_email):
                raise user_not_found()
            card = self._card_of(partner.partner_id, user.id) if user else None
            balance = card.points if card else 0
            if req.points_redeemed > balance:
                raise SandboxError(400, f"Nepakanka taškų nuskaityti. Turimi: {balance} taškų", "VALIDATION_ERROR")
            if user is None or card is None:  # the platform gives a customer a card from the default template
                user, card = self._enroll(partner, user, req.user_email or "")
            if req.points_redeemed:
                self._record(partner, card, "redeem", -req.points_redeemed, req.points_discount_amount or 0,
                             req.currency, f"Taškų nuskaitymas #{req.order_id}", req.order_id, req.shop_id,
                             {"points_redeemed": req.points_redeemed})
            awarded = req.points if req.points is not None else self.points_for(req.order_total)
            tx = self._record(partner, card, "purchase", awarded, req.order_total, req.currency,
                              req.description or f"Pirkimas #{req.order_id}", req.order_id, req.shop_id,
                              {**req.meta_data, "points_awarded": awarded, "items_count": len(req.cart_items)},
                              hidden_for)
            self._orders.add((partner.partner_id, req.order_id))
            return {"transaction_id": tx.id, "points_awarded": awarded, "points_balance": card.points,
                    "loyalty_card_id": card.id, "card_number": card.number, "user_id": user.id,
                    "order_total": req.order_total, "currency": req.currency}

    def deduct(self, partner: PartnerCredentials, req: DeductPoints, hidden_for: float = 0.0) -> dict[str, Any]:
        """Take points back from a card (named by id, or by its user). Not deduplicated: the real API
        is not documented to. A deduction naming an order needs that order's award on the card."""
        with self._lock:
            user: User | None
            if req.card_id is not None:
                card = self.cards.get(req.card_id)
                if card is None or card.partner_id != partner.partner_id:
                    raise SandboxError(404, "Loyalty card not found", "NOT_FOUND")
                if req.card_number is not None and req.card_number != card.number:
                    raise SandboxError(422, "Validation failed", "VALIDATION_ERROR",
                                       {"card_number": ["The card number does not match the card."]})
                user = self.users[card.user_id]
            else:
                user = self._find_user(req.user_email, req.user_id)
                card = self._card_of(partner.partner_id, user.id) if user else None
                if user is None or card is None:
                    raise user_not_found()
            if req.order_id is not None and not any(
                    tx.type == "purchase" and tx.card_id == card.id and tx.reference_number == req.order_id
                    for tx in self.transactions.values()):
                raise SandboxError(422, "Validation failed", "VALIDATION_ERROR",
                                   {"order_id": [f"No award for order {req.order_id} on this card."]})
            if req.points > card.points and not self.config.allow_negative_balance:
                raise SandboxError(400, "Insufficient points", "VALIDATION_ERROR")
            description = req.description or (f"Grąžinimas - {req.reason}" if req.reason
                                               else f"Grąžinimas #{req.order_id or ''}".strip())
            if self.config.deduction_listing == "docs":
                reference: str | None = f"REFUND-{uuid.uuid4().hex[:6].upper()}"
                metadata: dict[str, Any] = {"source": "api", "points_deducted": req.points, "reason": req.reason}
            else:
                reference = req.order_id
                metadata = {**req.meta_data, "refund_id": req.refund_id, "reason": req.reason,
                            "points_deducted": req.points}
            tx = self._record(partner, card, "refund", -req.points, req.refund_amount or 0, req.currency,
                              description, reference, req.shop_id, metadata, hidden_for)
            return {"transaction_id": tx.id, "points_deducted": req.points, "points_balance": card.points,
                    "loyalty_card_id": card.id, "user_id": user.id, "order_id": req.order_id,
                    "refund_id": req.refund_id}

    def balance(self, partner: PartnerCredentials, q: BalanceQuery) -> dict[str, Any]:
        """A card's points, the card named by id or number or found by its user (this partner's only)."""
        if q.card_id is None and q.card_number is None and q.user_id is None:
            raise SandboxError(422, "Validation error", 1100, {"card_id": [
                "The card id field is required when none of card number / user id are present."]})
        with self._lock:
            if q.card_id is not None:
                card = self.cards.get(q.card_id)
            elif q.card_number is not None:
                card = next((c for c in self.cards.values() if c.number == q.card_number), None)
            else:
                card = self._card_of(partner.partner_id, q.user_id or 0)
            if card is None or card.partner_id != partner.partner_id:
                raise SandboxError(404, "Loyalty card not found", 1200)
            return {"card_id": card.id, "card_number": card.number, "points": card.points}

    def list_transactions(self, partner: PartnerCredentials,
                          q: ListQuery) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """One page of the partner's transactions, newest first, and the paging meta."""
        email = q.user_email.strip().lower() if q.user_email else None
        wanted = {"user_id": q.user_id, "card_id": q.loyalty_card_id, "shop_id": q.shop_id, "staff_id": q.staff_id,
                  "category_id": q.category_id, "reference_number": q.reference_number, "type": q.type}
        now = self.clock()
        with self._lock:
            found = [tx for tx in sorted(self.transactions.values(), key=lambda t: t.id, reverse=True)
                     if tx.partner_id == partner.partner_id
                     and (tx.hidden_until is None or tx.hidden_until <= now)
                     and all(v is None or getattr(tx, k) == v for k, v in wanted.items())
                     and (email is None or self.users[tx.user_id].email == email)
                     and (q.date_from is None or tx.created_at.astimezone(UTC).date() >= q.date_from)
                     and (q.date_to is None or tx.created_at.astimezone(UTC).date() <= q.date_to)]
            start = (q.page - 1) * q.per_page
            page = [self.describe(tx) for tx in found[start:start + q.per_page]]
        meta = {"current_page": q.page, "last_page": max(1, -(-len(found) // q.per_page)),
                "per_page": q.per_page, "total": len(found)}
        return page, meta

    def describe(self, tx: Transaction) -> dict[str, Any]:
        """A transaction as GET transactions shows it."""
        user, card = self.users[tx.user_id], self.cards[tx.card_id]
        return {"id": tx.id, "type": tx.type, "points": tx.points, "amount": tx.amount, "currency": tx.currency,
                "description": tx.description, "reference_number": tx.reference_number, "status": tx.status,
                "user": {"id": user.id, "name": user.name, "email": user.email, "phone": user.phone},
                "loyalty_card": {"id": card.id, "name": card.name, "number": card.number},
                "shop": {"id": tx.shop_id} if tx.shop_id is not None else None,
                "metadata": tx.metadata, "transaction_date": iso(tx.created_at), "created_at": iso(tx.created_at)}

    def card_change(self, partner: PartnerCredentials, req: CardAward | CardRedeem) -> dict[str, Any]:
        """Award to or redeem from a card (the JWT endpoints); answers the transaction and new balance."""
        with self._lock:
            card = self.cards.get(req.card_id)
            if card is None or card.partner_id != partner.partner_id:
                raise SandboxError(404, "Loyalty card not found", "NOT_FOUND")
            previous = card.points
            redeem = isinstance(req, CardRedeem)
            if redeem and req.points > previous:
                raise SandboxError(400, f"Nepakanka taškų nuskaityti. Turimi: {previous} taškų", "VALIDATION_ERROR")
            # The list endpoint knows purchase | refund | bonus; other award kinds show as bonus.
            kind = "redeem" if redeem else ("purchase" if req.transaction_type == "purchase" else "bonus")
            amount = (req.discount_amount if isinstance(req, CardRedeem) else req.purchase_amount) or 0
            description = req.description or ("Taškų panaudojimas" if redeem else "Taškų suteikimas")
            tx = self._record(partner, card, kind, -req.points if redeem else req.points, amount, "EUR",
                              description, req.metadata.get("order_id"), req.metadata.get("shop_id"),
                              {**req.metadata, "transaction_type": req.transaction_type})
            current = card.points
        transaction: dict[str, Any] = {"id": tx.id, "transaction_type": req.transaction_type,
                                       "description": description, "created_at": iso(tx.created_at)}
        balance: dict[str, Any] = {"current_points": current, "previous_points": previous, "tier": "Bronze",
                                   "tier_upgraded": False, "next_tier_points": max(0, NEXT_TIER_AT - current)}
        if isinstance(req, CardRedeem):
            transaction.update(points_redeemed=req.points, redemption_type=req.redemption_type,
                               discount_amount=req.discount_amount, voucher_code=None, expires_at=None)
            balance["points_redeemed"] = req.points
        else:
            transaction["points_awarded"] = req.points
        return {"transaction": transaction, "balance": balance}

    # --- for the admin endpoints ---

    def _holdings(self, user: User) -> dict[str, Any]:
        cards = [{"id": c.id, "partner_id": c.partner_id, "number": c.number, "points": c.points}
                 for c in self.cards.values() if c.user_id == user.id]
        return {"user_id": user.id, "email": user.email, "name": user.name,
                "balance": sum(c["points"] for c in cards), "cards": cards}

    def balances(self, email: str) -> dict[str, Any]:
        """A user's cards and balances; raises 404 for an unknown email."""
        with self._lock:
            user = self._find_user(email.strip().lower(), None)
            if user is None:
                raise user_not_found()
            return self._holdings(user)

    def snapshot(self) -> dict[str, Any]:
        """Partners (without secrets), users with their cards and balances, and every transaction."""
        partners = [{"partner_id": p.partner_id, "name": p.name, "api_key": p.api_key} for p in self.config.partners]
        with self._lock:
            return {"partners": partners, "users": [self._holdings(u) for u in self.users.values()],
                    "transactions": [{"partner_id": tx.partner_id, **self.describe(tx)}
                                     for tx in self.transactions.values()]}

    def export(self) -> dict[str, Any]:
        """Every user, card, transaction and id counter, as JSON-ready data (:meth:`restore` reads it)."""
        with self._lock:
            return {"last_id": dict(self._last_id), "users": [asdict(u) for u in self.users.values()],
                    "cards": [asdict(c) for c in self.cards.values()],
                    "transactions": [{**asdict(tx), "created_at": tx.created_at.isoformat()}
                                     for tx in self.transactions.values()],
                    "orders": sorted([partner_id, order_id] for partner_id, order_id in self._orders)}

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the data with what :meth:`export` gave (request counts start again)."""
        with self._lock:
            self._last_id = {**ID_BASES, **data["last_id"]}
            self.users = {u["id"]: User(**u) for u in data["users"]}
            self.cards = {c["id"]: Card(**c) for c in data["cards"]}
            self.transactions = {t["id"]: Transaction(**{**t, "created_at": datetime.fromisoformat(t["created_at"])})
                                 for t in data["transactions"]}
            self._orders = {(partner_id, order_id) for partner_id, order_id in data["orders"]}
            self._requests = Counter()
            self._recent.clear()

    def record_request(self, endpoint: str, status: int, path: str = "", query: dict[str, str] | None = None) -> None:
        """Count one answered request (GET /_sandbox/stats reads the counts) and keep it among the
        recent ones (GET /_sandbox/requests: what a client asked, e.g. which list filters)."""
        with self._lock:
            self._requests[(endpoint, status)] += 1
            self._recent.append({"endpoint": endpoint, "path": path, "query": query or {}, "status": status})

    def recent_requests(self) -> list[dict[str, Any]]:
        """The last requests answered, oldest first."""
        with self._lock:
            return list(self._recent)

    def request_counts(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._requests)
        by_endpoint: dict[str, dict[str, int]] = {}
        by_status: Counter[str] = Counter()
        for (endpoint, status), n in sorted(counts.items()):
            by_endpoint.setdefault(endpoint, {})[str(status)] = n
            by_status[str(status)] += n
        return {"total": sum(counts.values()), "by_endpoint": by_endpoint, "by_status": dict(by_status)}
