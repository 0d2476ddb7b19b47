"""The queue of events waiting for a worker: one RQ job per event, whatever the redeliveries.

:meth:`EventQueue.submit` is the intake's only Redis call: one Lua script that, atomically, keeps
the event's payload and creates and queues its RQ job unless that event is already kept, notes the
arrival in the order's journal (for ``bridge status``), and indexes the order. Concurrent identical
deliveries therefore yield exactly one job, in one round trip, which the submits in flight in one
process share (:mod:`workers.group_commit`).

The job hash is RQ's own (written from a per-process :class:`~workers.job_template.JobTemplate`
that matches ``Job.create`` + ``Job.to_dict`` field for field), so RQ workers, registries, the
scheduler and the dashboard treat it like any other job. Its only argument is the event: the
verified payload is kept once, beside it (:mod:`workers.kept_payloads`), and RQ deletes a job that
finished (``result_ttl`` 0: no job hash or result stream kept for a month). What the bridge keeps
instead, and how long (bytes per order measured by ``python -m bench.memory``, a mix of published
WooCommerce and Shopify samples, 2026-12-03):

- ``lb:payload:<job id>``: the kept payload, ``payload_retention`` (30 days): 1,890 bytes per
  order on the benchmark's mix (1,460 a WooCommerce order, 2,320 a Shopify one, its refunds and
  cancellation included: the payload's floor; see :mod:`workers.kept_payloads`);
- ``lb:jobs:<store>:<order id>``: the order's journal, ``payload_retention``: a line per delivery
  (queued or duplicate, when, topic, delivery id) and per job that ended well (when, attempts,
  outcome, points), each job named without the store and order the key already names; rewritten
  whole on each line rather than APPENDed (Redis gives an appended string twice the room it
  needs); 252 bytes per order;
- ``lb:open-jobs``: jobs not ended yet (for the sweep), a sorted set; empty when all is done;
- ``lb:recent:<store>``: the latest :data:`RECENT_KEPT` outcomes (``bridge status``), a capped
  list: a fixed size per store, nothing per order;
- the order's platform id, as field ``o`` of its ledger hash (:mod:`workers.ledger`, 400 days); and
  for platforms whose events can name an order only by its id (Shopify's refunds)
  ``lb:order:<store>:<order id>`` → reference, ``ledger_retention`` (400 days): about 90 bytes per
  order of those platforms. A return months after the payment must still find its order.

Keys of earlier versions (``lb:arrivals:<job id>`` lists, ``lb:order-jobs:*`` sets, ``lb:ref:*``
strings) are still read until they expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus

from config.settings import Settings
from workers.events import Event, safe_id
from workers.group_commit import GroupCommit
from workers.job_template import JobTemplate
from workers.kept_payloads import KeptEvent, KeptPayloads, encode
from workers.ledger import ORDER_ID, Ledger
from workers.platforms import ADAPTERS
from workers.replication import Replication
from workers.retrying import RetryPolicy

logger = logging.getLogger("workers.event_queue")
JOB_FUNC = "workers.jobs.process_event"
FINAL = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED)
KEY_PREFIX = "lb:"
ARRIVALS_KEPT = 50   # per job, the newest, as ``bridge status`` shows them
# A journal past this many bytes takes no more duplicate arrivals (a redelivery storm); the first
# delivery of each event and every job's end are always written.
JOURNAL_FULL = 8192
RECENT_KEPT = 1000   # outcomes per store for `bridge status` without a reference

# Fields of this process's job hash that are sent with each call rather than written into the
# script: the crash-retry schedule is one per process (its jitter spreads processes apart).
PER_PROCESS_FIELDS = ("retry_intervals",)
_FIRST_PER_PROCESS_ARG = 13


def _lua_string(value: bytes) -> str:
    """A Lua string literal for any bytes (decimal escapes for all but plain printable ASCII)."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in value) + '"'


def _submit_script(static_fields: dict[str, bytes], ttl: int, index_ttl: int) -> str:
    """The submit script for jobs of these settings.

    What is the same for every call (the job hash's unvarying fields, the retention periods) is
    written into the script, so a call sends only what differs (Redis spends time on each argument
    it takes in). One script per set of settings: every process of a deployment shares it.

    KEYS: kept payload, job hash, queue list, queues set, order's journal, ledger hash, order id →
    reference, open jobs. ARGV: job id, the arrival's journal line before and after its outcome
    (see :class:`Journal`), reference ('' when unknown), order id, now (epoch), created/enqueued
    stamp, data, description, meta, kept payload, '1' when the order id → reference index is kept,
    then the PER_PROCESS_FIELDS values.
    """
    shared = {name: value for name, value in static_fields.items() if name not in PER_PROCESS_FIELDS}
    job_fields = ", ".join(
        ["'created_at', ARGV[7]", "'enqueued_at', ARGV[7]", "'data', ARGV[8]", "'description', ARGV[9]",
         "'meta', ARGV[10]"]
        + [f"'{name}', ARGV[{_FIRST_PER_PROCESS_ARG + i}]" for i, name in enumerate(PER_PROCESS_FIELDS)]
        + [f"{_lua_string(name.encode())}, {_lua_string(value)}" for name, value in shared.items()])
    return f"""
-- An event is known while its payload is kept (or, for jobs queued before payloads were kept
-- apart, while its job exists).
local fresh = redis.call('EXISTS', KEYS[1], KEYS[2]) == 0
local journal = redis.call('GET', KEYS[5]) or ''
if fresh or #journal < {JOURNAL_FULL} then
    redis.call('SET', KEYS[5], journal .. ARGV[2] .. (fresh and 'q' or 'd') .. ARGV[3], 'EX', {ttl})
else
    redis.call('EXPIRE', KEYS[5], {ttl})
end
-- A redelivery only notes its arrival; everything else was done by the first delivery.
if not fresh then return 0 end
redis.call('SET', KEYS[1], ARGV[11], 'EX', {ttl})
redis.call('HSET', KEYS[2], {job_fields})
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('ZADD', KEYS[8], ARGV[6], ARGV[1])
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[6], '{ORDER_ID}', ARGV[5])
    redis.call('EXPIRE', KEYS[6], {index_ttl})
    if ARGV[12] == '1' then redis.call('SET', KEYS[7], ARGV[4], 'EX', {index_ttl}) end
end
return 1
"""


def _redelivery_script(ttl: int) -> str:
    """A redelivery of a job this process has seen: note the arrival if the event is still kept (else
    0, and the caller submits it in full). KEYS: kept payload, order's journal. ARGV: the arrival's
    line before and after its outcome."""
    return f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local journal = redis.call('GET', KEYS[2]) or ''
if #journal < {JOURNAL_FULL} then
    redis.call('SET', KEYS[2], journal .. ARGV[1] .. 'd' .. ARGV[2], 'EX', {ttl})
end
return 1
"""


# Adds a line to a journal, keeping its TTL. KEYS: journal. ARGV: line, TTL.
_JOURNAL_LINE = """
local journal = redis.call('GET', KEYS[1]) or ''
return redis.call('SET', KEYS[1], journal .. ARGV[1], 'EX', ARGV[2])
"""


def journal_name(job_id: str, store: str, order_id: str) -> str:
    """A job's name in its order's journal: its id without the store and order the key names
    (``paid``, ``refund-4301``), or ``=`` and the whole id when it is not of that shape."""
    kind, _, rest = job_id.partition("-")
    order = f"{store}-{safe_id(order_id)}"
    if rest == order:
        return kind
    if rest.startswith(order + "-"):
        return kind + rest[len(order):]
    return "=" + job_id


def job_id_of(name: str, store: str, order_id: str) -> str:
    """The job id a journal name stands for (see :func:`journal_name`)."""
    if name.startswith("="):
        return name[1:]
    kind, _, refund = name.partition("-")
    return "-".join([kind, store, safe_id(order_id)] + ([refund] if refund else []))


SEEN_KEPT = 50_000
_OUTCOMES = {"q": "queued", "d": "duplicate"}


@dataclass(frozen=True)
class Arrival:
    """One delivery of an event, as the intake saw it."""

    outcome: str  # queued | duplicate
    at: str
    topic: str
    delivery_id: str

    @staticmethod
    def line(name: str, at: datetime, topic: str, delivery_id: str) -> tuple[str, str]:
        """The journal line of an arrival, before and after its outcome (the script decides it)."""
        return f"a\t{name}\t", f"\t{at.timestamp() * 1000:.0f}\t{topic}\t{delivery_id}\n"

    @classmethod
    def decode(cls, raw: bytes | str) -> Arrival:
        """Read an arrival of an earlier version's list (``outcome<TAB>at<TAB>topic<TAB>delivery id``)."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        outcome, at, topic, delivery_id = (text.split("\t") + ["", "", ""])[:4]
        return cls(outcome=outcome, at=at, topic=topic, delivery_id=delivery_id)


@dataclass(frozen=True)
class JobEnd:
    """How a job ended well, as the worker noted it in the order's journal (RQ keeps no finished job)."""

    at: float
    attempts: int
    outcome: str
    points: int | None = None
    transaction_id: int | None = None

    def encode(self, name: str) -> str:
        return (f"e\t{name}\t{self.at:.0f}\t{self.attempts}\t{self.outcome}\t"
                f"{'' if self.points is None else self.points}\t{self.transaction_id or ''}\n")

    @classmethod
    def decode(cls, fields: list[str]) -> JobEnd:
        at, attempts, outcome, points, transaction = (fields + ["", "", "", "", ""])[:5]
        return cls(at=float(at or 0), attempts=int(attempts or 1), outcome=outcome,
                   points=int(points) if points else None, transaction_id=int(transaction) if transaction else None)


@dataclass
class Journal:
    """An order's journal: each job's deliveries (oldest first) and how it ended."""

    arrivals: dict[str, list[Arrival]] = field(default_factory=dict)
    ends: dict[str, JobEnd] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes | None, store: str, order_id: str) -> Journal:
        journal = cls()
        for line in (raw or b"").decode().splitlines():
            kind, name, *rest = line.split("\t") + [""]
            job_id = job_id_of(name, store, order_id)
            if kind == "a":
                outcome, at, topic, delivery_id = (rest + ["", "", "", ""])[:4]
                when = datetime.fromtimestamp(int(at or 0) / 1000, UTC).isoformat(timespec="milliseconds")
                journal.arrivals.setdefault(job_id, []).append(
                    Arrival(_OUTCOMES.get(outcome, outcome), when, topic, delivery_id))
            elif kind == "e":
                journal.ends[job_id] = JobEnd.decode(rest)
                journal.arrivals.setdefault(job_id, [])
        return journal

    @property
    def job_ids(self) -> list[str]:
        return list(self.arrivals)


@dataclass(frozen=True)
class Recent:
    """A job's outcome as kept for ``bridge status`` without a reference."""

    at: float
    job_id: str
    reference: str | None
    kind: str
    outcome: str
    points: int | None
    reason: str | None

    def encode(self) -> str:
        return "\t".join([f"{self.at:.0f}", self.job_id, self.reference or "", self.kind, self.outcome,
                          "" if self.points is None else str(self.points), (self.reason or "").replace("\t", " ")])

    @classmethod
    def decode(cls, raw: bytes) -> Recent:
        at, job_id, reference, kind, outcome, points, reason = (raw.decode().split("\t") + [""] * 7)[:7]
        return cls(at=float(at or 0), job_id=job_id, reference=reference or None, kind=kind, outcome=outcome,
                   points=int(points) if points else None, reason=reason or None)


class EventQueue:
    """Events waiting for a worker, deduplicated at the door, their kept payloads, and the order
    index and journal the intake keeps."""

    def __init__(self, connection: Redis, settings: Settings) -> None:
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=connection)
        self.retention = settings.payload_retention
        # The order index (order id → reference) is a few bytes per order and must outlive the payloads.
        self.index_retention = max(settings.ledger_retention, settings.payload_retention)
        self.timeout = settings.job_timeout
        self.retry_policy = RetryPolicy(settings)
        self.payloads = KeptPayloads(connection)
        # Every job of this process: RQ's hash from a template. The crash-retry schedule is one per
        # process: its jitter spreads processes apart. A finished job is deleted at once (result_ttl
        # 0): its outcome is in the ledger and the order's journal, its payload kept apart.
        self.jobs = JobTemplate(JOB_FUNC, connection, timeout=settings.job_timeout, result_ttl=0,
                                failure_ttl=self.retention, retry=self.retry_policy.initial(),
                                origin=self.queue.name)
        self._own_fields = [self.jobs.static[name] for name in PER_PROCESS_FIELDS]
        # The submits of the requests in flight in this process share round trips.
        # With BRIDGE_REDIS_MIN_REPLICAS, a submit counts only once replicas hold it (one WAIT a batch).
        self._commit = GroupCommit(connection, Replication.of(settings))
        self._submit = self._commit.register(_submit_script(self.jobs.static, self.retention, self.index_retention))
        self._redelivery = self._commit.register(_redelivery_script(self.retention))
        self._journal_line = connection.register_script(_JOURNAL_LINE)
        # Job ids this process queued or saw as duplicates: a redelivery of one skips building the
        # job (WooCommerce sends order.updated many times per order). A hint only: Redis decides.
        self._seen: set[str] = set()

    # Key layout: one place.
    open_jobs_key = f"{KEY_PREFIX}open-jobs"

    @staticmethod
    def order_jobs_key(store: str, order_id: str) -> str:
        """The order's journal: its jobs' deliveries and ends."""
        return f"{KEY_PREFIX}jobs:{store}:{order_id}"

    @staticmethod
    def order_key(store: str, order_id: str) -> str:
        """Order id → reference, for platforms whose events may name the order by id alone."""
        return f"{KEY_PREFIX}order:{store}:{order_id}"

    @staticmethod
    def recent_key(store: str) -> str:
        return f"{KEY_PREFIX}recent:{store}"

    # Earlier versions' keys, read until they expire (30 days, 400 for the reference index).
    @staticmethod
    def arrivals_key(job_id: str) -> str:
        return f"{KEY_PREFIX}arrivals:{job_id}"

    @staticmethod
    def old_order_jobs_key(store: str, order_id: str) -> str:
        return f"{KEY_PREFIX}order-jobs:{store}:{order_id}"

    @staticmethod
    def reference_key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}ref:{store}:{reference}"

    @staticmethod
    def job_parts(event: Event, delivery_id: str = "",
                  request_id: str = "") -> tuple[tuple[Any, ...], str, dict[str, Any]]:
        """What differs between two events' jobs: arguments, description and meta.

        The only argument is the event: the job reads its payload from where it is kept. The
        description is logged by RQ and shown on the dashboard: no personal data in it.
        """
        meta = {"store": event.store, "kind": event.kind, "order_id": event.order_id, "reference": event.reference,
                "refund_id": event.refund_id, "delivery_id": delivery_id, "request_id": request_id}
        return (event.model_dump(mode="json"),), event.label, meta

    def build_job(self, event: Event, delivery_id: str = "", request_id: str = "") -> Job:
        """The event's job as RQ builds it (:meth:`submit` writes the same hash from the template)."""
        return self.jobs.job(event.job_id, *self.job_parts(event, delivery_id, request_id))

    def submit(self, event: Event, payload: str, delivery_id: str = "", request_id: str = "") -> bool:
        """Keep the payload and queue the event's job unless the event is known; True when queued,
        False for a duplicate.

        ``request_id`` (the intake's) follows the job into its log lines.
        """
        at = datetime.now(UTC)
        job_id = event.job_id
        head, tail = Arrival.line(journal_name(job_id, event.store, event.order_id), at, event.topic, delivery_id)
        kept_key = self.payloads.key(job_id)
        journal_key = self.order_jobs_key(event.store, event.order_id)
        if job_id in self._seen and self._commit.call(self._redelivery, [kept_key, journal_key], [head, tail]):
            return False
        args, description, meta = self.job_parts(event, delivery_id, request_id)
        now = at.timestamp()
        keys = [kept_key, Job.key_for(job_id), self.queue.key, Queue.redis_queues_keys, journal_key,
                Ledger.key(event.store, event.reference or ""), self.order_key(event.store, event.order_id),
                self.open_jobs_key]
        adapter = ADAPTERS.get(event.platform)
        by_id = adapter.NAMES_ORDERS_BY_ID if adapter is not None else True
        queued = bool(self._commit.call(self._submit, keys, [
            job_id, head, tail, event.reference or "", event.order_id, now, self.jobs.stamp(at),
            self.jobs.data(args), description, self.jobs.meta(meta),
            encode(event, payload, delivery_id, request_id, now), "1" if by_id else "", *self._own_fields]))
        if len(self._seen) >= SEEN_KEPT:
            self._seen.clear()
        self._seen.add(job_id)
        return queued

    def index_order(self, store: str, order_id: str, reference: str, platform: str | None = None) -> None:
        """Record reference ⇄ order id (the worker does this when the intake could not)."""
        adapter = ADAPTERS.get(platform or "")
        by_id = adapter.NAMES_ORDERS_BY_ID if adapter is not None else True
        key = Ledger.key(store, reference)
        with self.connection.pipeline() as pipe:
            pipe.hset(key, ORDER_ID, order_id)
            pipe.expire(key, self.index_retention)
            if by_id:
                pipe.set(self.order_key(store, order_id), reference, ex=self.index_retention)
            pipe.execute()

    def order_id_for(self, store: str, reference: str) -> str | None:
        """The platform order id of a reference, if an event of that order came in."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(Ledger.key(store, reference), ORDER_ID)
            pipe.get(self.reference_key(store, reference))
            found, old = pipe.execute()
        raw = found or old
        return raw.decode() if isinstance(raw, bytes) else raw

    def reference_for(self, store: str, order_id: str) -> str | None:
        """The reference of a platform order id, if an event that carried it came in."""
        raw: bytes | None = self.connection.get(self.order_key(store, order_id))  # type: ignore[assignment]
        return raw.decode() if isinstance(raw, bytes) else raw

    def journal(self, store: str, order_id: str) -> Journal:
        """The order's journal (with what earlier versions kept for its jobs, until that expires)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.get(self.order_jobs_key(store, order_id))
            pipe.smembers(self.old_order_jobs_key(store, order_id))
            raw, old = pipe.execute()
        journal = Journal.parse(raw, store, order_id)
        for member in sorted(old):
            job_id = member.decode()
            if job_id not in journal.arrivals:
                old_arrivals: list[bytes] = self.connection.lrange(self.arrivals_key(job_id), 0, -1)  # type: ignore[assignment]
                journal.arrivals[job_id] = [Arrival.decode(a) for a in reversed(old_arrivals)]
        return journal

    def job_ids_for(self, store: str, order_id: str) -> list[str]:
        """Every job ever queued for an order (within the retention period), sorted."""
        return sorted(self.journal(store, order_id).job_ids)

    def arrivals(self, job_id: str) -> list[Arrival]:
        """The deliveries of a job's event, newest first (at most ARRIVALS_KEPT)."""
        kept = self.payloads.get(job_id)
        if kept is None:
            old: list[bytes] = self.connection.lrange(self.arrivals_key(job_id), 0, -1)  # type: ignore[assignment]
            return [Arrival.decode(r) for r in old]
        arrivals = self.journal(kept.event.store, kept.event.order_id).arrivals.get(job_id, [])
        return list(reversed(arrivals))[:ARRIVALS_KEPT]

    def ended(self, job_id: str) -> JobEnd | None:
        """How a job ended well, if it did (RQ deletes finished jobs)."""
        kept = self.payloads.get(job_id)
        if kept is None:
            return None
        return self.journal(kept.event.store, kept.event.order_id).ends.get(job_id)

    def finished(self, event: Event, job_id: str, end: JobEnd, reference: str | None, reason: str | None,
                 pipe: Pipeline | None = None) -> None:
        """The job ended well: note it in the order's journal and the store's recent outcomes, and
        take it off the open jobs (before RQ deletes it, so the sweep never takes it for lost). On
        ``pipe`` when given (the caller executes it), else in one round trip."""
        recent = Recent(at=end.at, job_id=job_id, reference=reference, kind=event.kind, outcome=end.outcome,
                        points=end.points, reason=reason)
        journal_key = self.order_jobs_key(event.store, event.order_id)
        own = pipe is None
        batch = self.connection.pipeline(transaction=False) if pipe is None else pipe
        self._journal_line(keys=[journal_key], args=[end.encode(journal_name(job_id, event.store, event.order_id)),
                                                     self.retention], client=batch)
        batch.zrem(self.open_jobs_key, job_id)
        if event.kind != "redact":
            batch.lpush(self.recent_key(event.store), recent.encode())
            batch.ltrim(self.recent_key(event.store), 0, RECENT_KEPT - 1)
            batch.expire(self.recent_key(event.store), self.retention)
        if own:
            batch.execute()

    def recent(self, store: str, limit: int = RECENT_KEPT) -> list[Recent]:
        """The store's latest outcomes, newest first."""
        raw: list[bytes] = self.connection.lrange(self.recent_key(store), 0, limit - 1)  # type: ignore[assignment]
        return [Recent.decode(r) for r in raw]

    # --- open jobs: nothing acknowledged is ever lost ---------------------------------------------

    def opened(self, job_id: str) -> None:
        """Note a job as open again (replayed)."""
        self.connection.zadd(self.open_jobs_key, {job_id: time.time()})

    def closed(self, job_id: str, pipe: Pipeline | None = None) -> None:
        """The job reached its end (done, or failed for a person to see); on ``pipe`` when given."""
        (pipe if pipe is not None else self.connection).zrem(self.open_jobs_key, job_id)

    def expected(self, job_id: str, at: float, pipe: Pipeline | None = None) -> None:
        """The job comes back at ``at`` (a retry, a wait, an award held back for days): the sweep
        need not look at it before then. On ``pipe`` when given."""
        (pipe if pipe is not None else self.connection).zadd(self.open_jobs_key, {job_id: at}, xx=True)

    def rebuilt(self, kept: KeptEvent) -> Job:
        """The job of a kept event, made again as the intake made it (not saved)."""
        job = self.jobs.job(kept.job_id, *self.job_parts(kept.event, kept.delivery_id, kept.request_id))
        if kept.created_at:
            job.created_at = datetime.fromtimestamp(kept.created_at, UTC)
        return job

    def restore(self, job_id: str) -> Job | None:
        """The job as RQ holds it or, when RQ no longer does (it finished, or was deleted), made again
        from its kept payload (not saved: requeueing it saves it); None when neither is left."""
        job = Job.fetch_many([job_id], connection=self.connection)[0]
        if job is not None:
            return job
        kept = self.payloads.get(job_id)
        return self.rebuilt(kept) if kept is not None else None

    def _somewhere(self, job: Job) -> bool:
        """Whether RQ holds the job anywhere a worker or the scheduler will find it."""
        queue = self.queue
        return (self.connection.lpos(queue.key, job.id) is not None
                or self.connection.lpos(IntermediateQueue.get_intermediate_queue_key(queue.key), job.id) is not None
                or job.id in queue.scheduled_job_registry or job.id in queue.started_job_registry
                or job.id in queue.deferred_job_registry)

    def sweep(self, older_than: float = 60.0) -> list[str]:
        """Requeue open jobs RQ no longer holds anywhere; returns their ids.

        A worker killed at the wrong instant can leave a job marked scheduled (RQ sets that status
        before the pipeline that schedules it); someone with access to Redis (or the dashboard's
        Empty) can delete a job outright, and it is then made again from its kept payload. Runs in
        worker maintenance; a job is only taken for lost when nothing touched it for ``older_than``
        seconds.
        """
        found: list[str] = []
        now = time.time()
        cutoff = now - older_than
        raw: list[bytes] = self.connection.zrangebyscore(self.open_jobs_key, 0, cutoff)  # type: ignore[assignment]
        ids = [r.decode() for r in raw]
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=self.connection), strict=True):
            if job is None:
                if self._rebuild_lost(job_id):
                    found.append(job_id)
                continue
            if job.get_status(refresh=False) in FINAL:
                self.closed(job_id)
                continue
            touched = max((t.timestamp() for t in (job.enqueued_at, job.started_at, job.ended_at,
                                                   job.last_heartbeat) if t), default=0.0)
            if touched > cutoff or self._somewhere(job):
                # Found where it should be: not looked at again for another ``older_than`` (a
                # backlog of thousands would otherwise be searched for at every maintenance run).
                self.connection.zadd(self.open_jobs_key, {job_id: now}, xx=True)
                continue
            logger.warning("requeueing lost job %s (status %s, held nowhere)", job_id, job.get_status(refresh=False))
            self.queue.enqueue_job(job)
            found.append(job_id)
        return found

    def _rebuild_lost(self, job_id: str) -> bool:
        """An open job whose RQ hash is gone: made again from its kept payload and queued (True), or,
        with no payload left (a privacy request deleted it), forgotten."""
        kept = self.payloads.get(job_id)
        # Still open? A job that finished just now was taken off before RQ deleted it.
        if kept is None or self.connection.zscore(self.open_jobs_key, job_id) is None:
            self.closed(job_id)
            return False
        logger.warning("job %s was deleted before it ended: made again from its kept payload and queued", job_id)
        self.queue.enqueue_job(self.rebuilt(kept))
        self.connection.zadd(self.open_jobs_key, {job_id: time.time()}, xx=True)
        return True
