"""The queue of events waiting for a worker: one RQ job per event, whatever the redeliveries.

:meth:`EventQueue.submit` is the intake's only Redis call: one Lua script that, atomically, creates
and queues the event's RQ job unless a job with that deterministic id already exists, notes the
arrival (for ``bridge status``), and indexes the order (reference ⇄ platform order id, and the
order's jobs). Concurrent identical deliveries therefore yield exactly one job, in one round trip,
which the submits in flight in one process share (:mod:`workers.group_commit`).

The job hash is RQ's own (written from a per-process :class:`~workers.job_template.JobTemplate`
that matches ``Job.create`` + ``Job.to_dict`` field for field), so RQ workers, registries, the
scheduler and the dashboard treat it like any other job. The verified payload travels as a job
argument, so a failed job can be replayed as it arrived; it expires with the job
(``payload_retention``). The order index lives as long as the ledger (``ledger_retention``): a
Shopify refund names only the order id, and a return months after the payment must still find the
order's reference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus

from config.settings import Settings
from workers.events import Event
from workers.group_commit import GroupCommit
from workers.job_template import JobTemplate
from workers.replication import Replication
from workers.retrying import RetryPolicy

logger = logging.getLogger("workers.event_queue")
JOB_FUNC = "workers.jobs.process_event"
FINAL = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED)
KEY_PREFIX = "lb:"
ARRIVALS_KEPT = 50

# Fields of this process's job hash that are sent with each call rather than written into the
# script: the crash-retry schedule is one per process (its jitter spreads processes apart).
PER_PROCESS_FIELDS = ("retry_intervals",)


def _lua_string(value: bytes) -> str:
    """A Lua string literal for any bytes (decimal escapes for all but plain printable ASCII)."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in value) + '"'


def _submit_script(static_fields: dict[str, bytes], ttl: int, index_ttl: int) -> str:
    """The submit script for jobs of these settings.

    What is the same for every call (the job hash's unvarying fields, the retention periods) is
    written into the script, so a call sends only what differs: 18 arguments instead of 39 (Redis
    spends time on each one it takes in), and a fifth fewer bytes. One script per set of settings:
    every process of a deployment shares it.

    KEYS: job hash, queue list, queues set, arrivals list, order's jobs set, reference → order id,
    order id → reference, open jobs. ARGV: job id, arrival, reference ('' when unknown), order id,
    now (epoch), created/enqueued stamp, data, description, meta, then the PER_PROCESS_FIELDS values.
    """
    shared = {name: value for name, value in static_fields.items() if name not in PER_PROCESS_FIELDS}
    job_fields = ", ".join(
        ["'created_at', ARGV[6]", "'enqueued_at', ARGV[6]", "'data', ARGV[7]", "'description', ARGV[8]",
         "'meta', ARGV[9]"]
        + [f"'{name}', ARGV[{10 + i}]" for i, name in enumerate(PER_PROCESS_FIELDS)]
        + [f"{_lua_string(name.encode())}, {_lua_string(value)}" for name, value in shared.items()])
    return f"""
local fresh = redis.call('EXISTS', KEYS[1]) == 0
if redis.call('LPUSH', KEYS[4], (fresh and 'queued' or 'duplicate') .. '\\t' .. ARGV[2]) > {ARRIVALS_KEPT} then
    redis.call('LTRIM', KEYS[4], 0, {ARRIVALS_KEPT - 1})
end
redis.call('EXPIRE', KEYS[4], {ttl})
-- A redelivery only notes its arrival; everything else was done by the first delivery.
if not fresh then return 0 end
redis.call('HSET', KEYS[1], {job_fields})
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('EXPIRE', KEYS[5], {ttl})
if ARGV[3] ~= '' then
    redis.call('SET', KEYS[6], ARGV[4], 'EX', {index_ttl})
    redis.call('SET', KEYS[7], ARGV[3], 'EX', {index_ttl})
end
return 1
"""


def _redelivery_script(ttl: int) -> str:
    """A redelivery of a job this process has seen: note the arrival if the job still exists (else 0,
    and the caller submits it in full). KEYS: job hash, arrivals list. ARGV: arrival."""
    return f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('LPUSH', KEYS[2], 'duplicate\\t' .. ARGV[1]) > {ARRIVALS_KEPT} then
    redis.call('LTRIM', KEYS[2], 0, {ARRIVALS_KEPT - 1})
end
redis.call('EXPIRE', KEYS[2], {ttl})
return 1
"""


SEEN_KEPT = 50_000


@dataclass(frozen=True)
class Arrival:
    """One delivery of an event, as the intake saw it."""

    outcome: str  # queued | duplicate
    at: str
    topic: str
    delivery_id: str

    def encode(self) -> str:
        """The stored form, without the outcome (the script decides it)."""
        return f"{self.at}\t{self.topic}\t{self.delivery_id}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Arrival:
        """Read a stored arrival."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        outcome, at, topic, delivery_id = (text.split("\t") + ["", "", ""])[:4]
        return cls(outcome=outcome, at=at, topic=topic, delivery_id=delivery_id)


class EventQueue:
    """Events waiting for a worker, deduplicated at the door, and the order index the intake keeps."""

    def __init__(self, connection: Redis, settings: Settings) -> None:
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=connection)
        self.retention = settings.payload_retention
        # The order index (reference ⇄ order id) is a few bytes per order and must outlive the payloads.
        self.index_retention = max(settings.ledger_retention, settings.payload_retention)
        self.timeout = settings.job_timeout
        self.retry_policy = RetryPolicy(settings)
        # Every job of this process: RQ's hash from a template. The crash-retry schedule is one per
        # process: its jitter spreads processes apart.
        self.jobs = JobTemplate(JOB_FUNC, connection, timeout=settings.job_timeout, result_ttl=self.retention,
                                failure_ttl=self.retention, retry=self.retry_policy.initial(),
                                origin=self.queue.name)
        self._own_fields = [self.jobs.static[name] for name in PER_PROCESS_FIELDS]
        # The submits of the requests in flight in this process share round trips.
        # With BRIDGE_REDIS_MIN_REPLICAS, a submit counts only once replicas hold it (one WAIT a batch).
        self._commit = GroupCommit(connection, Replication.of(settings))
        self._submit = self._commit.register(_submit_script(self.jobs.static, self.retention, self.index_retention))
        self._redelivery = self._commit.register(_redelivery_script(self.retention))
        # Job ids this process queued or saw as duplicates: a redelivery of one skips building the
        # job (WooCommerce sends order.updated many times per order). A hint only: Redis decides.
        self._seen: set[str] = set()

    # Key layout: one place.
    open_jobs_key = f"{KEY_PREFIX}open-jobs"

    @staticmethod
    def arrivals_key(job_id: str) -> str:
        return f"{KEY_PREFIX}arrivals:{job_id}"

    @staticmethod
    def order_jobs_key(store: str, order_id: str) -> str:
        return f"{KEY_PREFIX}order-jobs:{store}:{order_id}"

    @staticmethod
    def reference_key(store: str, reference: str) -> str:
        return f"{KEY_PREFIX}ref:{store}:{reference}"

    @staticmethod
    def order_key(store: str, order_id: str) -> str:
        return f"{KEY_PREFIX}order:{store}:{order_id}"

    @staticmethod
    def job_parts(event: Event, payload: str, delivery_id: str = "",
                  request_id: str = "") -> tuple[tuple[Any, ...], str, dict[str, Any]]:
        """What differs between two events' jobs: arguments, description and meta.

        The verified payload is an argument, so a failed job can be replayed as it arrived. The
        description is logged by RQ and shown on the dashboard: no personal data in it.
        """
        meta = {"store": event.store, "kind": event.kind, "order_id": event.order_id, "reference": event.reference,
                "refund_id": event.refund_id, "delivery_id": delivery_id, "request_id": request_id}
        return (event.model_dump(mode="json"), payload), event.label, meta

    def build_job(self, event: Event, payload: str, delivery_id: str = "", request_id: str = "") -> Job:
        """The event's job as RQ builds it (:meth:`submit` writes the same hash from the template)."""
        return self.jobs.job(event.job_id, *self.job_parts(event, payload, delivery_id, request_id))

    def submit(self, event: Event, payload: str, delivery_id: str = "", request_id: str = "") -> bool:
        """Queue the event's job unless it exists; True when queued, False for a duplicate.

        ``request_id`` (the intake's) follows the job into its log lines.
        """
        at = datetime.now(UTC)
        arrival = Arrival("", at.isoformat(timespec="milliseconds"), event.topic, delivery_id).encode()
        job_id = event.job_id
        job_key = Job.key_for(job_id)
        arrivals_key = self.arrivals_key(job_id)
        if job_id in self._seen and self._commit.call(self._redelivery, [job_key, arrivals_key], [arrival]):
            return False
        args, description, meta = self.job_parts(event, payload, delivery_id, request_id)
        keys = [job_key, self.queue.key, Queue.redis_queues_keys, arrivals_key,
                self.order_jobs_key(event.store, event.order_id),
                self.reference_key(event.store, event.reference or ""), self.order_key(event.store, event.order_id),
                self.open_jobs_key]
        queued = bool(self._commit.call(self._submit, keys, [
            job_id, arrival, event.reference or "", event.order_id, at.timestamp(), self.jobs.stamp(at),
            self.jobs.data(args), description, self.jobs.meta(meta), *self._own_fields]))
        if len(self._seen) >= SEEN_KEPT:
            self._seen.clear()
        self._seen.add(job_id)
        return queued

    def index_order(self, store: str, order_id: str, reference: str) -> None:
        """Record reference ⇄ order id (the worker does this when the intake could not)."""
        with self.connection.pipeline() as pipe:
            pipe.set(self.reference_key(store, reference), order_id, ex=self.index_retention)
            pipe.set(self.order_key(store, order_id), reference, ex=self.index_retention)
            pipe.execute()

    def order_id_for(self, store: str, reference: str) -> str | None:
        """The platform order id of a reference, if an event of that order came in."""
        raw: bytes | None = self.connection.get(self.reference_key(store, reference))  # type: ignore[assignment]
        return raw.decode() if isinstance(raw, bytes) else raw

    def reference_for(self, store: str, order_id: str) -> str | None:
        """The reference of a platform order id, if an event that carried it came in."""
        raw: bytes | None = self.connection.get(self.order_key(store, order_id))  # type: ignore[assignment]
        return raw.decode() if isinstance(raw, bytes) else raw

    def job_ids_for(self, store: str, order_id: str) -> list[str]:
        """Every job ever queued for an order (within the retention period), sorted."""
        members: Iterable[bytes] = self.connection.smembers(self.order_jobs_key(store, order_id))  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    def arrivals(self, job_id: str) -> list[Arrival]:
        """The deliveries of a job's event, newest first."""
        raw: list[bytes] = self.connection.lrange(self.arrivals_key(job_id), 0, -1)  # type: ignore[assignment]
        return [Arrival.decode(r) for r in raw]

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
        before the pipeline that schedules it). Runs in worker maintenance; a job is only taken for
        lost when nothing touched it for ``older_than`` seconds.
        """
        found: list[str] = []
        now = time.time()
        cutoff = now - older_than
        raw: list[bytes] = self.connection.zrangebyscore(self.open_jobs_key, 0, cutoff)  # type: ignore[assignment]
        ids = [r.decode() for r in raw]
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=self.connection), strict=True):
            if job is None or job.get_status(refresh=False) in FINAL:
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
