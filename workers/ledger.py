"""The ledger: what happened to each order, and the memory that makes every job idempotent.

One Redis hash per (store, reference), ``lb:ledger:<store>:<reference>``, kept ``ledger_retention``
(400 days) from its last change: 187 bytes per order (``bench/memory.py``: an award, its
card, the order id, a refund for a third of the orders). What it holds (the lasting entries in the
compact form of :mod:`workers.ledger_format`, the transient ones as small JSON documents):

- ``o``: the platform's order id (the intake writes it: reference → order id);
- the award: the transaction that gave the points (id, points, base, order total, currency, when,
  Loyalty.lt user and card ids, so refunds need no customer email);
- each refund or cancellation applied (points taken back, amount, share of the order paid back,
  when);
- ``pending:<id>``: a refund (or the cancellation) that came before the award, with what the award
  needs to apply it: every path that records an award applies these;
- ``due``: when the award of a store with an ``award_delay`` falls due (pending points); the
  refunds that come meanwhile wait in ``pending:<id>`` and the award is for what was kept;
- why the order earns nothing (a guest, a test order, a zero base);
- ``failed``: the last permanent failure, until a later success clears it;
- ``dismissed``: a person gave up on the order's failed jobs (``bridge failed --dismiss``): who, why,
  when, which jobs and what they had failed with. Rare, and it takes the place of ``failed`` (about
  as big): see :meth:`Ledger.record_dismissal`;
- ``inflight:<op>``: an API call made or about to be made, whose outcome is not recorded yet, with
  what it was about. Whoever finds it (a retry, or another job of the order) asks Loyalty.lt whether
  it landed before anything else is decided (:mod:`workers.recovery`). Each mark carries the token
  of the attempt that set it, and only that attempt may take it back unresolved.

With a required number of replicas (``BRIDGE_REDIS_MIN_REPLICAS``, :mod:`workers.replication`), an
in-flight mark and a recorded award or refund count only once Redis's WAIT says the replicas hold
them: the mark before its call leaves (not replicated: taken back, and the job retries without
calling), the outcome before the job goes on (not replicated: the job retries and finds it). The
retry that finds it goes on only once the replicas hold it too (:meth:`Ledger.confirm`).

Entries keep no customer email or name. Awards are also indexed by day per store, for reconcile
and the rate of orders ``bridge check`` reports (``lb:awards:<store>:<yyyymmdd>``, a list of the
references awarded that day, kept as long as the ledger: 11 bytes per order), and pending awards by due time, for metrics and ``bridge
status`` (``lb:due:<store>``, a sorted set of the awards held back now).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel
from redis import Redis
from redis.lock import Lock

from workers import ledger_format as stored
from workers.orders import Refund
from workers.replication import Command, NotReplicated, Replication

KEY_PREFIX = "lb:"
AWARD = "award"
CANCEL = "cancel"  # the refund id of an order's cancellation
DUE = "due"
SKIPPED = "skipped"
FAILED = "failed"
DISMISSED = "dismissed"
REFUND_PREFIX = "refund:"
PENDING_PREFIX = "pending:"
INFLIGHT_PREFIX = "inflight:"
ORDER_ID = "o"  # the platform's order id (the intake writes it: reference → order id)
# Deletes an in-flight mark (its value in chunks, see workers.ledger_format) only if it still
# carries the token of the attempt that set it. KEYS: the order's hash. ARGV: field, token.
_CLEAR_OWN_MARK = f"""
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local fields = {{ARGV[1]}}
for n = 1, {stored.MAX_CHUNKS - 1} do
    local name = ARGV[1] .. '{stored.MORE}' .. n
    fields[#fields + 1] = name
    local more = redis.call('HGET', KEYS[1], name)
    if more then raw = raw .. more end
end
if cjson.decode(raw)['token'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], unpack(fields))
return 1
"""


def utcnow() -> str:
    """Now, as an ISO 8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Award(BaseModel):
    """Points given for a paid order."""

    transaction_id: int | None
    points: int
    base: Decimal
    order_total: Decimal
    currency: str  # the order's (the shop's) currency: what its refunds are compared in
    order_id: str
    at: str
    user_id: int | None = None
    loyalty_card_id: int | None = None
    card_number: str | None = None
    # What the customer paid in their own currency, when it is not the shop's (Shopify multi-currency).
    presentment_total: Decimal | None = None
    presentment_currency: str | None = None
    # Whether the order's prices include tax (how its refunds' line amounts are to be read).
    taxes_included: bool = True
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
    currency: str | None = None
    # The share of what the order cost that this refund paid back (0..1); None in entries written
    # before shares were kept (then ``amount`` over the order total stands for it).
    share: Decimal | None = None


class PendingRefund(BaseModel):
    """A refund (or the cancellation) that came before its order's award, kept until one exists."""

    refund: Refund
    kind: str
    at: str  # to the microsecond: pending refunds are applied in the order they came
    job_id: str | None = None

    def absorbed(self) -> AppliedRefund:
        """This refund as recorded when a delayed award was made for what was kept: nothing to take back."""
        return AppliedRefund(points=0, amount=self.refund.amount, currency=self.refund.currency, share=Decimal(0),
                             at=utcnow(), kind=self.kind,
                             source="refunded during the award delay: the award was for what was kept")


class DueAward(BaseModel):
    """An award held back until the store's return window has passed."""

    due_at: str
    delay: float  # the store's award_delay (seconds) when the order was paid
    at: str


class Note(BaseModel):
    """A skip or a failure, with the reason a person can read."""

    reason: str
    event: str
    at: str
    job_id: str | None = None


class Dismissal(BaseModel):
    """A person gave up on an order's failed jobs, and the jobs were deleted (``bridge failed --dismiss``)."""

    by: str
    reason: str
    at: str
    jobs: list[str]
    failed: str | None = None  # what the jobs had failed with (the ``failed`` note it replaces)


class InFlight(BaseModel):
    """An API call made (or about to be made) whose outcome is not recorded yet."""

    at: str
    job_id: str | None = None
    # The attempt that set the mark: only it may take the mark back without resolving it.
    token: str | None = None
    # What the call was about, as it would be recorded, so whoever proves it landed can record it:
    # the award (its transaction id and points still unknown) or the deduction.
    award: Award | None = None
    deduction: AppliedRefund | None = None
    # The pending refunds a delayed award was made without (recorded with the award, never deducted).
    absorbs: list[str] = []


class LedgerRecord(BaseModel):
    """Everything the ledger knows about one order."""

    store: str
    reference: str
    award: Award | None = None
    refunds: dict[str, AppliedRefund] = {}
    pending: dict[str, PendingRefund] = {}
    due: DueAward | None = None
    skipped: Note | None = None
    failed: Note | None = None
    dismissed: Dismissal | None = None
    inflight: dict[str, InFlight] = {}
    order_id: str | None = None  # the platform's, once an event of the order came in

    @property
    def exists(self) -> bool:
        return bool(self.award or self.refunds or self.pending or self.due or self.skipped or self.failed
                    or self.dismissed or self.inflight)

    def absorbed(self, refund_ids: list[str]) -> dict[str, AppliedRefund]:
        """The pending refunds a delayed award absorbed, as recorded with it (taking back nothing)."""
        return {rid: self.pending[rid].absorbed() for rid in refund_ids if rid in self.pending}

    @property
    def points_taken_back(self) -> int:
        return sum(r.points for r in self.refunds.values())

    @property
    def points_remaining(self) -> int:
        """Points of the award not yet taken back."""
        return (self.award.points if self.award else 0) - self.points_taken_back

    @property
    def share_refunded(self) -> Decimal:
        """The share of the order's cost paid back so far (1 = all of it)."""
        total = Decimal(0)
        for applied in self.refunds.values():
            if applied.share is not None:
                total += applied.share
            elif self.award is not None and self.award.order_total > 0:
                total += applied.amount / self.award.order_total
        return total


class Ledger:
    """Reads and writes ledger records; the only owner of the ``lb:ledger:*`` keys."""

    def __init__(self, connection: Redis, retention: int, lock_timeout: int = 300,
                 replication: Replication | None = None) -> None:
        self.connection = connection
        self.retention = retention
        self.lock_timeout = lock_timeout
        self.replication = replication or Replication()
        self._clear_own_mark = connection.register_script(_CLEAR_OWN_MARK)

    @staticmethod
    def key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}ledger:{store}:{reference}"

    @staticmethod
    def awards_key(store: str, day: str | None = None) -> str:
        """The list of references the store awarded on ``day`` (``yyyymmdd``, UTC); without a day,
        the sorted set earlier versions kept, read until it expires."""
        return f"{KEY_PREFIX}awards:{store}:{day}" if day else f"{KEY_PREFIX}awards:{store}"

    @staticmethod
    def award_days(store: str, start: float, end: float) -> list[tuple[float, str]]:
        """(the day's start, the key of its awards) for each UTC day from ``start`` to ``end``."""
        days = []
        day = datetime.fromtimestamp(start, UTC).date()
        while day <= datetime.fromtimestamp(end, UTC).date():
            days.append((datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp(),
                         Ledger.awards_key(store, day.strftime("%Y%m%d"))))
            day += timedelta(days=1)
        return days

    @staticmethod
    def due_key(store: str) -> str:
        """Sorted set of the store's pending awards, scored by when each falls due."""
        return f"{KEY_PREFIX}due:{store}"

    @staticmethod
    def lock_key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}lock:{store}:{reference}"

    def get(self, store: str, reference: str) -> LedgerRecord:
        """The record of an order (empty when nothing happened to it yet)."""
        raw: dict[bytes, bytes] = self.connection.hgetall(self.key(store, reference))  # type: ignore[assignment]
        fields = stored.joined({name.decode(): value for name, value in raw.items()})
        record = LedgerRecord(store=store, reference=reference, order_id=fields.get(ORDER_ID))
        refunds: dict[str, AppliedRefund] = {}
        pending: dict[str, PendingRefund] = {}
        inflight: dict[str, InFlight] = {}
        for name, value in fields.items():
            if name == ORDER_ID:
                continue
            if name == stored.AWARD:
                record.award = Award.model_validate(stored.read_award(value, record.order_id))
                continue
            if name == stored.SKIPPED:
                record.skipped = Note.model_validate(stored.read_note(value))
                continue
            if name.startswith(stored.REFUND_PREFIX):
                refunds[name.removeprefix(stored.REFUND_PREFIX)] = AppliedRefund.model_validate(stored.read_refund(value))
                continue
            doc = json.loads(value)   # the transient entries, and lasting ones written by earlier versions
            if name == AWARD and record.award is None:
                record.award = Award.model_validate(doc)
            elif name == SKIPPED and record.skipped is None:
                record.skipped = Note.model_validate(doc)
            elif name == DUE:
                record.due = DueAward.model_validate(doc)
            elif name == FAILED:
                record.failed = Note.model_validate(doc)
            elif name == DISMISSED:
                record.dismissed = Dismissal.model_validate(doc)
            elif name.startswith(REFUND_PREFIX):
                refunds.setdefault(name.removeprefix(REFUND_PREFIX), AppliedRefund.model_validate(doc))
            elif name.startswith(PENDING_PREFIX):
                pending[name.removeprefix(PENDING_PREFIX)] = PendingRefund.model_validate(doc)
            elif name.startswith(INFLIGHT_PREFIX):
                inflight[name.removeprefix(INFLIGHT_PREFIX)] = InFlight.model_validate(doc)
        record.refunds, record.pending, record.inflight = refunds, pending, inflight
        return record

    def _write(self, store: str, reference: str, set_fields: dict[str, BaseModel],
               delete: tuple[str, ...] = (), replicated: bool = False,
               also: Sequence[Command] = ()) -> None:
        """Set and delete entries (named as the ledger names them: ``award``, ``refund:<id>``,
        ``skipped``, ...), the lasting ones in their compact form, which replaces what an earlier
        version wrote for them, and ``also`` these commands, in one transaction; with ``replicated``,
        raise :class:`NotReplicated` unless the required replicas confirm it."""
        key = self.key(store, reference)
        mapping: dict[str, str | bytes] = {}
        gone = [name for entry in delete for name in _stored_names(entry)]
        for entry, model in set_fields.items():
            gone += _stored_names(entry)   # the earlier version's name, and continuations of a longer value
            if entry == AWARD:
                award = model.model_dump(mode="json")
                mapping[ORDER_ID] = award["order_id"]
                mapping.update(stored.split(stored.AWARD, stored.award(award)))
            elif entry == SKIPPED:
                mapping.update(stored.split(stored.SKIPPED, stored.note(model.model_dump(mode="json"))))
            elif entry.startswith(REFUND_PREFIX):
                name = stored.REFUND_PREFIX + entry.removeprefix(REFUND_PREFIX)
                mapping.update(stored.split(name, stored.refund(model.model_dump(mode="json"))))
            else:
                mapping.update(stored.split(entry, model.model_dump_json()))
        gone = [name for name in gone if name not in mapping]
        commands: list[Command] = [("HDEL", key, *gone)] if gone else []
        commands += [("HSET", key, *(x for k, v in mapping.items() for x in (k, v))),
                     ("EXPIRE", key, self.retention), *also]
        if replicated and self.replication.required:
            self.replication.transaction(self.connection, commands)
            return
        with self.connection.pipeline() as pipe:
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()

    def confirm(self) -> None:
        """With a required number of replicas, make sure they hold what was just read here: an outcome
        found recorded by an earlier attempt whose WAIT fell short is on a replica before the job that
        found it goes on (else :class:`NotReplicated`, and the job retries). Nothing otherwise."""
        self.replication.confirm(self.connection)

    def mark_in_flight(self, store: str, reference: str, op: str, job_id: str | None, *,
                       award: Award | None = None, deduction: AppliedRefund | None = None,
                       absorbs: list[str] | None = None) -> str:
        """Note that the call for ``op`` ("award" or "refund:<id>") is being made; returns the
        attempt's token, which :meth:`clear_in_flight` needs."""
        token = uuid.uuid4().hex
        mark = InFlight(at=utcnow(), job_id=job_id, token=token, award=award, deduction=deduction,
                        absorbs=absorbs or [])
        try:
            self._write(store, reference, {INFLIGHT_PREFIX + op: mark}, replicated=True)
        except NotReplicated:
            # The call will not be made, so the mark goes (one left behind by a failover costs a
            # look in Loyalty.lt's list, which finds nothing, and the call is made after the settle time).
            self.clear_in_flight(store, reference, op, token)
            raise
        return token

    def clear_in_flight(self, store: str, reference: str, op: str, token: str | None) -> bool:
        """Take back the mark of ``op`` if it is still the one set with ``token``: a call known not
        to have landed (refused, never sent), or proven not to have (recovery). True if removed."""
        return bool(self._clear_own_mark(keys=[self.key(store, reference)], args=[INFLIGHT_PREFIX + op, token or ""]))

    def forget_in_flight(self, store: str, reference: str, op: str) -> None:
        """Drop a mark whatever its token: a person checked that its call did not land (`bridge resolve`)."""
        self.connection.hdel(self.key(store, reference), *_stored_names(INFLIGHT_PREFIX + op))

    def record_award(self, store: str, reference: str, award: Award,
                     absorbed: dict[str, AppliedRefund] | None = None) -> None:
        """The order got its points; clears the in-flight mark, the due time, any skip and any failure.

        ``absorbed``: the pending refunds a delayed award was made without, recorded in the same write
        so that no crash leaves them to be deducted from an award that already left them out.
        """
        absorbed = absorbed or {}
        fields: dict[str, BaseModel] = {AWARD: award, **{REFUND_PREFIX + rid: a for rid, a in absorbed.items()}}
        day = self.awards_key(store, datetime.fromisoformat(award.at).astimezone(UTC).strftime("%Y%m%d"))
        index: list[Command] = [("RPUSH", day, reference), ("EXPIRE", day, self.retention + 86400),
                                # an earlier version's index: goes in time
                                ("EXPIRE", self.awards_key(store), self.retention),
                                ("ZREM", self.due_key(store), reference)]
        self._write(store, reference, fields, delete=(INFLIGHT_PREFIX + AWARD, DUE, SKIPPED, FAILED,
                                                      *(PENDING_PREFIX + rid for rid in absorbed)),
                    replicated=True, also=index)

    def record_due(self, store: str, reference: str, due: DueAward) -> None:
        """The order's award is held back until ``due.due_at``."""
        self._write(store, reference, {DUE: due})
        self.connection.zadd(self.due_key(store), {reference: datetime.fromisoformat(due.due_at).timestamp()})

    def pending_awards(self, store: str) -> int:
        """How many of the store's awards are held back now."""
        return int(self.connection.zcard(self.due_key(store)))  # type: ignore[arg-type]

    def update_award(self, store: str, reference: str, award: Award) -> None:
        """Complete an award already recorded (e.g. its card, read later from the list)."""
        self._write(store, reference, {AWARD: award})

    def record_refund(self, store: str, reference: str, refund_id: str, applied: AppliedRefund) -> None:
        """A refund (or the cancellation) was applied; clears its in-flight mark, its pending entry
        and any failure."""
        op = REFUND_PREFIX + refund_id
        self._write(store, reference, {op: applied},
                    delete=(INFLIGHT_PREFIX + op, PENDING_PREFIX + refund_id, FAILED), replicated=True)

    def record_pending(self, store: str, reference: str, refund_id: str, pending: PendingRefund) -> None:
        """A refund came before the order's award: keep it until the award applies it."""
        self._write(store, reference, {PENDING_PREFIX + refund_id: pending}, delete=(FAILED,))

    def record_skip(self, store: str, reference: str, event: str, reason: str) -> None:
        """The order earns nothing, and why."""
        self._write(store, reference, {SKIPPED: Note(reason=reason, event=event, at=utcnow())}, delete=(FAILED, DUE))
        self.connection.zrem(self.due_key(store), reference)

    def record_failure(self, store: str, reference: str, event: str, reason: str, job_id: str | None) -> None:
        """A job for this order failed for good (until replayed)."""
        self._write(store, reference, {FAILED: Note(reason=reason, event=event, at=utcnow(), job_id=job_id)})

    def record_dismissal(self, store: str, reference: str, dismissal: Dismissal) -> None:
        """A person gave up on the order's failed jobs: the dismissal replaces the failure note.

        One entry, ``dismissed``: ``{"by", "reason", "at", "jobs", "failed"}`` as JSON (in fields of at
        most 64 bytes, ``dismissed``, ``dismissed+1``, …: see :mod:`workers.ledger_format`), 101 bytes plus
        the name, the reason given and the failure's reason (which the dropped ``failed`` note held, in
        93 bytes plus it): a dismissal by "ona" with a 60-character reason adds about 75 bytes to the
        order's hash, once, and only for the rare order a person gives up on.
        """
        self._write(store, reference, {DISMISSED: dismissal}, delete=(FAILED,))

    def forget_award(self, store: str, reference: str, reason: str) -> None:
        """Drop an award Loyalty.lt does not have (reconcile), so the paid job can award it again."""
        # Its line in the day's index stays: readers of the index check the record.
        self._write(store, reference, {FAILED: Note(reason=reason, event="paid", at=utcnow())}, delete=(AWARD,))
        self.connection.zrem(self.awards_key(store), reference)

    def awarded_between(self, store: str, start: float, end: float) -> list[str]:
        """References awarded on the days (UTC) from ``start`` to ``end`` (Unix times) within the
        ledger's retention, oldest day first; a reference whose award was later forgotten may be
        among them (check its record)."""
        days = self.award_days(store, max(start, time.time() - self.retention - 86400), end)
        with self.connection.pipeline(transaction=False) as pipe:
            for _, key in days:
                pipe.lrange(key, 0, -1)
            pipe.zrangebyscore(self.awards_key(store), start, end)   # an earlier version's index
            *lists, old = pipe.execute()
        return list(dict.fromkeys([r.decode() for r in old] + [r.decode() for refs in lists for r in refs]))

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


def _stored_names(entry: str) -> list[str]:
    """The hash fields an entry may be stored in: its compact form (with continuations) and the
    name earlier versions wrote it under."""
    if entry == AWARD:
        compact = [stored.AWARD]
    elif entry == SKIPPED:
        compact = [stored.SKIPPED]
    elif entry.startswith(REFUND_PREFIX):
        compact = [stored.REFUND_PREFIX + entry.removeprefix(REFUND_PREFIX)]
    else:
        return [entry, *stored.continuations(entry)]
    return [entry] + [name for field in compact for name in [field, *stored.continuations(field)]]
