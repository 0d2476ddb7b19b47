"""The records of the alerts: which kinds there are, one condition as Redis keeps it, and one
notification as the outbox names it. Data only, below :mod:`workers.alerts.kinds` (the words for each
kind) and :mod:`workers.alerts.state` (their owner in Redis), which both read it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["job_failed", "credentials_rejected", "calls_refused", "shop_subscription", "shop_unreachable",
               "webhooks_missing", "workers_down", "backlog_stale", "redis", "test"]
KINDS: tuple[Kind, ...] = ("job_failed", "credentials_rejected", "calls_refused", "shop_subscription",
                           "shop_unreachable", "webhooks_missing", "workers_down", "backlog_stale", "redis", "test")
# The kinds that are conditions (all but the test alert).
CONDITIONS = tuple(kind for kind in KINDS if kind != "test")
State = Literal["firing", "resolved"]


class AlertRecord(BaseModel):
    """One condition: when it started, how often it was seen, what is known about it."""

    id: str
    alert: Kind
    store: str | None = None
    key: str = ""
    state: State = "firing"
    first_seen: datetime
    last_seen: datetime
    ended_at: datetime | None = None
    count: int = 1
    # Notifications queued so far (the sequence number of the latest); when the latest was queued.
    sent: int = 0
    last_sent: float = 0.0
    # When the first firing is due (a held digest): a resolved never goes out before it.
    held_until: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)


class Delivery(BaseModel):
    """One notification to one receiver, as the outbox names it."""

    id: str
    seq: int
    state: State
    receiver: int  # position in BRIDGE_ALERT_WEBHOOKS, from 0

    @property
    def member(self) -> str:
        return f"{self.id}|{self.seq}|{self.state}|{self.receiver}"

    @classmethod
    def parse(cls, member: bytes | str) -> Delivery:
        text = member.decode() if isinstance(member, bytes) else member
        cid, seq, state, receiver = text.rsplit("|", 3)
        return cls(id=cid, seq=int(seq), state=state, receiver=int(receiver))  # type: ignore[arg-type]
