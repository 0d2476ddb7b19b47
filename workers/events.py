"""What a verified webhook means for the ledger: events, and the reason a delivery means nothing.

The intake turns a delivery into zero or more :class:`Event` objects (one per thing to do) or one
:class:`Ignored` (nothing to do, with a reason the shop owner can read). An event's identity
(:attr:`Event.job_id`) is deterministic, so every redelivery of the same thing maps to the same job.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

EventKind = Literal["paid", "refund", "cancel", "redact"]
Head = TypeVar("Head", bound=BaseModel)

# RQ job ids may hold only letters, digits, '_' and '-'.
_JOB_ID_SAFE = re.compile(r"^[A-Za-z0-9_]{1,40}$")


class InvalidPayload(Exception):
    """The body is not the JSON it claims to be (answered 400: the shop sent something broken)."""


class Ignored(BaseModel):
    """A signed delivery the bridge has no use for; answered 200 so the shop keeps the webhook."""

    model_config = ConfigDict(frozen=True)

    reason: str


class Event(BaseModel):
    """One thing to do for one order of one store."""

    model_config = ConfigDict(frozen=True)

    store: str
    platform: str
    kind: EventKind
    # The platform's own order id: always present, including in Shopify refunds.
    order_id: str
    # The store's order reference (its reference_format), when the delivery carries it; Shopify's
    # refunds/create carries only the order id, and the worker looks the reference up.
    reference: str | None = None
    refund_id: str | None = None
    topic: str = ""

    @property
    def job_id(self) -> str:
        """The RQ job id: the same for every delivery of the same event of the same order."""
        parts = [self.kind, self.store, safe_id(self.order_id)]
        if self.refund_id is not None:
            parts.append(safe_id(self.refund_id))
        return "-".join(parts)

    @property
    def label(self) -> str:
        """A short human description for logs, job descriptions and the dashboard (no personal data)."""
        what = f"{self.kind} {self.reference or '#' + self.order_id}"
        if self.refund_id is not None:
            what += f" refund {self.refund_id}"
        return f"{what} ({self.store})"


def safe_id(value: str) -> str:
    """Platform ids are digits; anything else is hashed so the job id stays valid and unique."""
    if _JOB_ID_SAFE.match(value):
        return value
    return "h" + hashlib.sha256(value.encode()).hexdigest()[:20]


def format_reference(fmt: str, *, number: str, id: str, name: str) -> str:
    """The store's order reference from its ``reference_format``."""
    return fmt.format(number=number, id=id, name=name)


def parse_head(model: type[Head], body: bytes) -> Head | Ignored:
    """Parse a delivery's body into the few fields routing needs.

    Broken JSON raises :class:`InvalidPayload`; JSON of another shape is :class:`Ignored` (signed, so
    the shop meant it, but not something the bridge can use).
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise InvalidPayload("body is not valid JSON") from None
        field = ".".join(str(p) for p in first["loc"]) or "body"
        return Ignored(reason=f"not a payload the bridge can use ({field}: {first['msg']})")
