"""What the people on call ask: the story of an order, the failed jobs, and replaying them.

The CLI renders these; they read the same ledger, event queue and RQ registries the jobs use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    BaseRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from workers.event_queue import ARRIVALS_KEPT, Arrival, EventQueue, JobEnd
from workers.kept_payloads import KeptEvent
from workers.ledger import REFUND_PREFIX, Dismissal, Ledger, LedgerRecord, utcnow
from workers.retrying import FAILURES, RetryPolicy


class JobView(BaseModel):
    """One job as ops see it."""

    job_id: str
    store: str | None
    event: str | None
    reference: str | None
    status: str
    attempts: int
    enqueued_at: datetime | None
    ended_at: datetime | None
    last_error: str | None
    outcome: dict[str, Any] | None = None
    arrivals: list[dict[str, str]] = []


class OrderStory(BaseModel):
    """Everything the bridge knows about one order of one store."""

    store: str
    reference: str
    order_id: str | None
    ledger: LedgerRecord
    jobs: list[JobView]

    @property
    def found(self) -> bool:
        return self.ledger.exists or bool(self.jobs)

    @property
    def troubled(self) -> bool:
        """Whether something needs a person: a failure in the ledger or a failed job."""
        return self.ledger.failed is not None or any(j.status == JobStatus.FAILED for j in self.jobs)


def last_error(job: Job) -> str | None:
    """The reason a job last failed, in one readable line."""
    reason = job.meta.get("failure_reason") or job.meta.get("last_error")
    if reason:
        return str(reason)
    result = job.latest_result()
    text = getattr(result, "exc_string", None) if result is not None else None
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def view(job: Job, events: EventQueue | None = None) -> JobView:
    """A job's state for ops, with its deliveries when ``events`` is given."""
    meta = job.meta
    status = job.get_status(refresh=False)
    result = job.return_value(refresh=False) if status == JobStatus.FINISHED else None
    return JobView(
        job_id=job.id, store=meta.get("store"), event=meta.get("kind"), reference=meta.get("reference"),
        status=str(status.value if status else "unknown"), attempts=RetryPolicy.attempts(job),
        enqueued_at=job.enqueued_at, ended_at=job.ended_at,
        last_error=last_error(job) if status in (JobStatus.FAILED, JobStatus.SCHEDULED) else None,
        outcome=result if isinstance(result, dict) else None,
        arrivals=[a.__dict__ for a in events.arrivals(job.id)] if events else [],
    )


def ended_view(job_id: str, kept: KeptEvent, end: JobEnd, arrivals: list[Arrival]) -> JobView:
    """A job that finished (RQ deleted it), as the order's journal and its kept payload tell it."""
    event = kept.event
    return JobView(
        job_id=job_id, store=event.store, event=event.kind, reference=event.reference, status=JobStatus.FINISHED.value,
        attempts=end.attempts, enqueued_at=datetime.fromtimestamp(kept.created_at, UTC) if kept.created_at else None,
        ended_at=datetime.fromtimestamp(end.at, UTC), last_error=None,
        outcome={"outcome": end.outcome, "reference": event.reference, "points": end.points,
                 "transaction_id": end.transaction_id},
        arrivals=[a.__dict__ for a in reversed(arrivals)][:ARRIVALS_KEPT])


def fetch_jobs(connection: Redis, job_ids: Iterable[str]) -> list[Job]:
    """The jobs that still exist among ``job_ids``."""
    return [job for job in Job.fetch_many(list(job_ids), connection=connection) if job is not None]


def order_jobs(events: EventQueue, store: str, order_id: str) -> list[Job]:
    """Every job of an order whose event is still kept: as RQ holds it, or made again from its kept
    payload (RQ deletes finished jobs); for replay and reconcile."""
    return [job for job in map(events.restore, events.job_ids_for(store, order_id)) if job is not None]


def order_story(connection: Redis, events: EventQueue, ledger: Ledger, store: str, reference: str) -> OrderStory:
    """The ledger record, the jobs (with state, attempts, last error) and the deliveries of an order."""
    order_id = events.order_id_for(store, reference)
    views = []
    if order_id:
        journal = events.journal(store, order_id)
        job_ids = sorted(journal.job_ids)
        for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=connection), strict=True):
            arrivals = journal.arrivals.get(job_id, [])
            if job is not None:
                views.append(view(job).model_copy(
                    update={"arrivals": [a.__dict__ for a in reversed(arrivals)][:ARRIVALS_KEPT]}))
            elif job_id in journal.ends and (kept := events.payloads.get(job_id)) is not None:
                views.append(ended_view(job_id, kept, journal.ends[job_id], arrivals))
    return OrderStory(store=store, reference=reference, order_id=order_id, ledger=ledger.get(store, reference),
                      jobs=views)


class RecentEvent(BaseModel):
    """One event of one order, as it last stood: the line ``bridge status`` prints for it."""

    at: datetime | None
    store: str | None
    reference: str | None
    event: str | None
    outcome: str
    points: int | None = None
    reason: str | None = None
    job_id: str


def _recent(job: Job) -> RecentEvent:
    meta = job.meta
    status = job.get_status(refresh=False)
    result = job.return_value(refresh=False) if status == JobStatus.FINISHED else None
    outcome, points, reason = str(status.value if status else "unknown"), None, None
    if isinstance(result, dict):
        outcome, points, reason = result.get("outcome", outcome), result.get("points"), result.get("reason")
    elif status == JobStatus.FAILED:
        reason = last_error(job)
    elif status == JobStatus.SCHEDULED:
        if meta.get("due_at"):
            outcome, reason = f"pending until {meta['due_at']}", "the store's award delay"
        else:
            outcome, reason = "waiting", last_error(job)
    moments = [t for t in (job.ended_at, job.started_at, job.enqueued_at, job.created_at) if t]
    return RecentEvent(at=_aware(moments[0]) if moments else None, store=meta.get("store"),
                       reference=meta.get("reference") or (result or {}).get("reference"), event=meta.get("kind"),
                       outcome=outcome, points=points, reason=reason, job_id=job.id)


def recent_events(events: EventQueue, stores: Iterable[str], store: str | None = None,
                  limit: int = 20) -> list[RecentEvent]:
    """The latest events of the bridge's orders, newest first: the outcomes the workers noted (the
    latest RECENT_KEPT per store), and what RQ holds: the failed registry, the scheduled (waiting,
    or pending until an award delay ends), the running and the queued jobs (and, until they expire,
    finished jobs of earlier versions)."""
    queue = events.queue
    connection = queue.connection
    wanted = limit * 4 + 50  # other stores' and privacy jobs are filtered out after reading
    ids: list[str] = []
    registry: BaseRegistry
    for registry in (FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)):
        raw: list[bytes] = connection.zrevrange(registry.key, 0, wanted - 1)  # type: ignore[assignment]
        ids += [r.decode() for r in raw]
    for registry in (ScheduledJobRegistry(queue=queue), StartedJobRegistry(queue=queue)):
        ids += registry.get_job_ids()
    ids += queue.get_job_ids(0, wanted)
    found = {job.id: _recent(job) for job in fetch_jobs(connection, dict.fromkeys(ids))
             if job.meta.get("kind") in ("paid", "refund", "cancel") and store in (None, job.meta.get("store"))}
    for sid in [store] if store else stores:
        for noted in events.recent(sid, limit):
            if noted.job_id not in found:   # what RQ still holds is the newer state
                found[noted.job_id] = RecentEvent(
                    at=datetime.fromtimestamp(noted.at, UTC), store=sid, reference=noted.reference, event=noted.kind,
                    outcome=noted.outcome, points=noted.points, reason=noted.reason, job_id=noted.job_id)
    ordered = sorted(found.values(), key=lambda e: e.at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return ordered[:limit]


def parse_since(text: str) -> datetime:
    """``2h``, ``30m``, ``3d`` ago, or an ISO date/time, as an aware UTC datetime."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def failed_jobs(queue: Queue, store: str | None = None, since: datetime | None = None) -> list[Job]:
    """Failed jobs of the bridge's queue, oldest failure first, optionally of one store and recent ones."""
    registry = FailedJobRegistry(queue=queue)
    jobs = fetch_jobs(queue.connection, registry.get_job_ids())
    chosen = [j for j in jobs if (store is None or j.meta.get("store") == store)
              and (since is None or (j.ended_at and _aware(j.ended_at) >= since))]
    return sorted(chosen, key=lambda j: _aware(j.ended_at) if j.ended_at else datetime.min.replace(tzinfo=UTC))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def already_done(ledger: Ledger, job: Job) -> str | None:
    """Why replaying this job would change nothing (the ledger already has its outcome), or None."""
    meta = job.meta
    reference = meta.get("reference")
    if not reference:
        return None
    record = ledger.get(meta["store"], reference)
    if meta.get("kind") == "paid":
        if record.award:
            return f"already awarded ({record.award.points} points, transaction {record.award.transaction_id})"
        if record.skipped:
            return f"already skipped ({record.skipped.reason})"
        return None
    refund_id = meta.get("refund_id") or "cancel"
    if refund_id in record.refunds:
        return f"already applied ({record.refunds[refund_id].points} points)"
    if refund_id in record.pending:
        return "kept in the ledger until the order's award, which applies it"
    return None


def due_now(events: EventQueue, ledger: Ledger, job: Job) -> str | None:
    """Make a held-back award fall due now (`bridge replay --now`); says what it did, or None when the
    job's order has no award pending."""
    meta = job.meta
    reference = meta.get("reference")
    if meta.get("kind") != "paid" or not reference:
        return None
    record = ledger.get(meta["store"], reference)
    if record.due is None:
        return None
    ledger.record_due(meta["store"], reference, record.due.model_copy(update={"due_at": utcnow()}))
    queue = events.queue
    if status_of(job) == JobStatus.SCHEDULED.value:
        ScheduledJobRegistry(queue=queue).remove(job)
        queue.enqueue_job(job)
    return f"was pending until {record.due.due_at}: due now"


class ResolveError(Exception):
    """What a person asked to resolve cannot be resolved as asked (one line, for the CLI)."""


def resolve_deduction(ledger: Ledger, store: str, reference: str, refund_id: str, landed: int | None) -> str:
    """A person's answer to "did this deduction land?", after looking in Loyalty.lt: record it with
    the transaction ``landed``, or (None) take its mark back so the job calls again. Says what it did."""
    record = ledger.get(store, reference)
    op = REFUND_PREFIX + refund_id
    mark = record.inflight.get(op)
    if refund_id in record.refunds:
        raise ResolveError(f"{reference}: refund {refund_id} is already recorded "
                           f"({record.refunds[refund_id].points} points); nothing to resolve")
    if mark is None:
        raise ResolveError(f"{reference}: no call of refund {refund_id} is in flight; nothing to resolve")
    if landed is None:
        ledger.forget_in_flight(store, reference, op)
        return (f"{reference}: refund {refund_id}'s call is taken as not landed; replay its job to deduct it "
                f"(bridge replay {reference} --store {store} --event {'cancel' if refund_id == 'cancel' else 'refund'})")
    if mark.deduction is None:
        raise ResolveError(f"{reference}: the mark of refund {refund_id} does not say how many points it took; "
                           "replay the job instead")
    applied = mark.deduction.model_copy(update={"transaction_id": landed, "at": utcnow(),
                                                "source": "resolved by a person"})
    ledger.record_refund(store, reference, refund_id, applied)
    return f"{reference}: refund {refund_id} recorded as landed ({applied.points} points, transaction {landed})"


class DismissError(Exception):
    """Nothing to dismiss as asked (one line, for the CLI)."""


def failed_jobs_of(events: EventQueue, store: str, reference: str) -> list[Job]:
    """The failed jobs of one order, as ``bridge failed`` lists them: by reference, or by the platform's
    order id for an event that came without the reference (a Shopify refund names only the order)."""
    order_id = events.order_id_for(store, reference)
    return [job for job in failed_jobs(events.queue, store) if job.meta.get("reference") == reference
            or (order_id is not None and job.meta.get("order_id") == order_id)]


def dismiss_failed(events: EventQueue, ledger: Ledger, stores: list[str], reference: str,
                   by: str, reason: str) -> tuple[str, Dismissal]:
    """A person gives up on an order's failed jobs (``bridge failed --dismiss``): the ledger records who,
    why and which jobs, in place of the failure note, and then the failed jobs are deleted, so they leave
    ``bridge failed`` while ``bridge status <reference>`` still tells the story.

    ``stores``: where to look; the order's failed jobs must be in exactly one of them. Returns the
    store they were in, and the dismissal.
    """
    found = {store: jobs for store in stores if (jobs := failed_jobs_of(events, store, reference))}
    if not found:
        raise DismissError(f"{reference}: no failed job in {', '.join(stores)} (`bridge failed` lists them)")
    if len(found) > 1:
        raise DismissError(f"{reference} has failed jobs in {', '.join(sorted(found))}: say which with --store")
    (store, jobs), = found.items()
    note = ledger.get(store, reference).failed
    dismissal = Dismissal(by=by, reason=reason, at=utcnow(), jobs=sorted(job.id for job in jobs),
                          failed=note.reason if note else last_error(jobs[0]))
    # The record first: should the deletion not happen, the jobs stay failed and can be dismissed again.
    ledger.record_dismissal(store, reference, dismissal)
    for job in jobs:
        # Closed, so that no sweep takes the missing job for a lost one and makes it again.
        events.closed(job.id)
        job.delete()
    return store, dismissal


def fresh_start(events: EventQueue, job: Job, policy: RetryPolicy) -> None:
    """Give a job that a person runs again a fresh retry budget and window, and forget its failure."""
    job.meta["replayed_at"] = datetime.now(UTC).isoformat()
    job.meta.pop("failure_reason", None)
    job.meta.pop("last_error", None)
    job.meta.pop(FAILURES, None)
    fresh = policy.initial()
    job.retries_left, job.retry_intervals, job.number_of_retries = fresh.max, fresh.intervals, 0
    job.save()
    events.opened(job.id)


def status_of(job: Job) -> str:
    """The job's status in RQ, or "finished" for one made again from its kept payload (RQ deleted it)."""
    try:
        return str(job.get_status().value)
    except InvalidJobOperation:
        return JobStatus.FINISHED.value


def requeue(events: EventQueue, job: Job, policy: RetryPolicy) -> None:
    """Put a job back on the queue from its kept payload, with a fresh retry budget and window."""
    saved = bool(events.connection.exists(job.key))
    fresh_start(events, job, policy)
    queue = events.queue
    if not saved:   # made again from its kept payload: RQ had deleted it
        queue.enqueue_job(job)
        return
    status = job.get_status()
    if status == JobStatus.FAILED:
        FailedJobRegistry(queue=queue).requeue(job)
    elif status not in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
        queue.enqueue_job(job)


def wait_for(connection: Redis, job_ids: list[str], timeout: float,
             poll: float = 0.2) -> Iterator[tuple[str, Job | None]]:
    """Yield each job as it finishes or fails, until ``timeout``. A job that finished yields None:
    RQ deletes it (its outcome is in the order's journal); a failed one stays for a person."""
    import time

    pending = list(job_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            try:
                job = Job.fetch(job_id, connection=connection)
            except NoSuchJobError:
                yield job_id, None
                continue
            if job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED):
                yield job_id, job
            else:
                still.append(job_id)
        pending = still
        if pending:
            time.sleep(poll)
