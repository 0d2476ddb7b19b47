"""The ledger: what happened to each order, and the memory that makes every job idempotent.

One Redis hash per (store, reference). Its fields, each a small JSON document:

- ``award``: the transaction that gave the points (id, points, base, order total, currency, when,
  Loyalty.lt user and card ids, so refunds need no customer email);
- ``refund:<id>``: each refund or cancellation applied (points taken back, amount, when);
- ``skipped``: why the order earns nothing (a guest, a test order, a zero base);
- ``failed``: the last permanent failure, until a later success clears it;
- ``inflight:<op>``: an API call about to be made. If the job dies after the call, the retry finds
  this mark and asks Loyalty.lt whether the call landed before calling again.

Entries keep no customer email or name. Awards are also indexed by time per store, for reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal

from pydantic import BaseModel
from redis import Redis
from redis.lock import Lock

KEY_PREFIX = "lb:"
AWARD = "award"
SKIPPED = "skipped"
FAILED = "failed"
REFUND_PREFIX = "refund:"
INFLIGHT_PREFIX = "inflight:"


def utcnow() -> str:
    """Now, as an ISO 8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Award(BaseModel):
    """Points given for a paid order."""

    transaction_id: int | None
    points: int
    base: Decimal
    order_total: Decimal
    currency: str
    order_id: str
    at: str
    user_id: int | None = None
    loyalty_card_id: int | None = None
    # How the bridge learned of it: "created", "already existed" (409) or "recovered" (list endpoint).
    source: str = "created"


class AppliedRefund(BaseModel):
    """Points taken back for one refund or a cancellation."""

    points: int
    amount: Decimal
    at: str
    transaction_id: int | None = None
    kind: str = "refund"
    source: str = "created"


class Note(BaseModel):
    """A skip or a failure, with the reason a person can read."""

    reason: str
    event: str
    at: str
    job_id: str | None = None


class InFlight(BaseModel):
    """An API call that was about to be made."""

    at: str
    job_id: str | None = None


class LedgerRecord(BaseModel):
    """Everything the ledger knows about one order."""

    store: str
    reference: str
    award: Award | None = None
    refunds: dict[str, AppliedRefund] = {}
    skipped: Note | None = None
    failed: Note | None = None
    inflight: dict[str, InFlight] = {}

    @property
    def exists(self) -> bool:
        return bool(self.award or self.refunds or self.skipped or self.failed or self.inflight)

    @property
    def points_taken_back(self) -> int:
        return sum(r.points for r in self.refunds.values())

    @property
    def points_remaining(self) -> int:
        """Points of the award not yet taken back."""
        return (self.award.points if self.award else 0) - self.points_taken_back

    @property
    def amount_refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal(0))

    def points_for_refund(self, amount: Decimal, everything: bool = False) -> int:
        """Points to take back for a refund of ``amount``: in proportion to the points base,
        floored, capped at what remains; a full refund (or ``everything``) takes all that remains."""
        if self.award is None:
            return 0
        remaining = max(self.points_remaining, 0)
        if everything or self.amount_refunded + amount >= self.award.order_total or self.award.base <= 0:
            return remaining
        share = (Decimal(self.award.points) * amount / self.award.base).to_integral_value(ROUND_FLOOR)
        return min(int(share), remaining)


class Ledger:
    """Reads and writes ledger records; the only owner of the ``lb:ledger:*`` keys."""

    def __init__(self, connection: Redis, retention: int, lock_timeout: int = 300) -> None:
        self.connection = connection
        self.retention = retention
        self.lock_timeout = lock_timeout

    @staticmethod
    def key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}ledger:{store}:{reference}"

    @staticmethod
    def awards_key(store: str) -> str:
        """Sorted set of the store's awarded references, scored by award time (for reconcile)."""
        return f"{KEY_PREFIX}awards:{store}"

    @staticmethod
    def lock_key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}lock:{store}:{reference}"

    def get(self, store: str, reference: str) -> LedgerRecord:
        """The record of an order (empty when nothing happened to it yet)."""
        raw: dict[bytes, bytes] = self.connection.hgetall(self.key(store, reference))  # type: ignore[assignment]
        record = LedgerRecord(store=store, reference=reference)
        refunds: dict[str, AppliedRefund] = {}
        inflight: dict[str, InFlight] = {}
        for name_b, value in raw.items():
            name, doc = name_b.decode(), json.loads(value)
            if name == AWARD:
                record.award = Award.model_validate(doc)
            elif name == SKIPPED:
                record.skipped = Note.model_validate(doc)
            elif name == FAILED:
                record.failed = Note.model_validate(doc)
            elif name.startswith(REFUND_PREFIX):
                refunds[name.removeprefix(REFUND_PREFIX)] = AppliedRefund.model_validate(doc)
            elif name.startswith(INFLIGHT_PREFIX):
                inflight[name.removeprefix(INFLIGHT_PREFIX)] = InFlight.model_validate(doc)
        record.refunds, record.inflight = refunds, inflight
        return record

    def _write(self, store: str, reference: str, set_fields: dict[str, BaseModel],
               delete: tuple[str, ...] = ()) -> None:
        key = self.key(store, reference)
        with self.connection.pipeline() as pipe:
            if delete:
                pipe.hdel(key, *delete)
            pipe.hset(key, mapping={k: v.model_dump_json() for k, v in set_fields.items()})
            pipe.expire(key, self.retention)
            pipe.execute()

    def mark_in_flight(self, store: str, reference: str, op: str, job_id: str | None) -> None:
        """Note that the call for ``op`` ("award" or "refund:<id>") is about to be made."""
        self._write(store, reference, {INFLIGHT_PREFIX + op: InFlight(at=utcnow(), job_id=job_id)})

    def clear_in_flight(self, store: str, reference: str, op: str) -> None:
        """The call for ``op`` was not made after all (it had to wait for a rate-limit slot)."""
        self.connection.hdel(self.key(store, reference), INFLIGHT_PREFIX + op)

    def record_award(self, store: str, reference: str, award: Award) -> None:
        """The order got its points; clears the in-flight mark, any skip and any failure."""
        self._write(store, reference, {AWARD: award}, delete=(INFLIGHT_PREFIX + AWARD, SKIPPED, FAILED))
        at = datetime.fromisoformat(award.at).timestamp()
        with self.connection.pipeline() as pipe:
            pipe.zadd(self.awards_key(store), {reference: at})
            pipe.zremrangebyscore(self.awards_key(store), 0, at - self.retention)
            pipe.execute()

    def record_refund(self, store: str, reference: str, refund_id: str, applied: AppliedRefund) -> None:
        """A refund (or the cancellation) was applied; clears its in-flight mark and any failure."""
        op = REFUND_PREFIX + refund_id
        self._write(store, reference, {op: applied}, delete=(INFLIGHT_PREFIX + op, FAILED))

    def record_skip(self, store: str, reference: str, event: str, reason: str) -> None:
        """The order earns nothing, and why."""
        self._write(store, reference, {SKIPPED: Note(reason=reason, event=event, at=utcnow())}, delete=(FAILED,))

    def record_failure(self, store: str, reference: str, event: str, reason: str, job_id: str | None) -> None:
        """A job for this order failed for good (until replayed)."""
        self._write(store, reference, {FAILED: Note(reason=reason, event=event, at=utcnow(), job_id=job_id)})

    def forget_refund(self, store: str, reference: str, refund_id: str) -> None:
        """Drop a refund noted before its order was awarded, so it can be applied for real."""
        self.connection.hdel(self.key(store, reference), REFUND_PREFIX + refund_id)

    def forget_award(self, store: str, reference: str, reason: str) -> None:
        """Drop an award Loyalty.lt does not have (reconcile), so the paid job can award it again."""
        self._write(store, reference, {FAILED: Note(reason=reason, event="paid", at=utcnow())}, delete=(AWARD,))
        self.connection.zrem(self.awards_key(store), reference)

    def awarded_between(self, store: str, start: float, end: float) -> list[str]:
        """References awarded in [start, end] (Unix times), oldest first."""
        raw: list[bytes] = self.connection.zrangebyscore(self.awards_key(store), start, end)  # type: ignore[assignment]
        return [r.decode() for r in raw]

    @contextmanager
    def order_lock(self, store: str, reference: str, wait: float = 2.0) -> Iterator[bool]:
        """Hold the order's lock while a job changes it, so two jobs of one order never interleave.

        Yields False when another job holds it (the caller then waits and comes back).
        """
        lock = Lock(self.connection, self.lock_key(store, reference), timeout=self.lock_timeout,
                    blocking_timeout=wait)
        acquired = lock.acquire()
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
