"""The RQ job: one event of one order → at most one Loyalty.lt call → one ledger entry.

``process_event`` is what the intake enqueues; it reads the kept payload with the store's platform
adapter and hands the order to :mod:`workers.award` (paid), :mod:`workers.refunds` (refund,
cancellation) or :mod:`workers.privacy` (redact). It is idempotent: the ledger says whether the
award or the refund already happened, unanswered calls are resolved through Loyalty.lt's list
before anything is called again (:mod:`workers.recovery`), and a per-order lock keeps two jobs of
one order from interleaving. Here, too, is how each outcome ends: a result, a wait or a retry
(:mod:`workers.retrying` decides when), or the failed registry with a reason a person can read.
As it ends, the job remembers the version of its order when its delivery fed all of that version's
events (the adapter's ``fed_version``), so the periodic sync does not read the order again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job, Retry

from config.log_format import log
from config.stores import StoreConfig
from workers import context
from workers.award import award_order
from workers.award_delay import NotDue
from workers.context import WorkerContext
from workers.event_queue import JobEnd
from workers.events import Event
from workers.job_errors import JobFailed, Wait
from workers.kept_payloads import KeptEvent
from workers.loyalty import PermanentError, RateLimited, RetryableError
from workers.metrics import observe_job
from workers.ops import fresh_start
from workers.orders import MappingError, first_problem
from workers.outcome import Outcome
from workers.platforms import ADAPTERS
from workers.privacy import redact
from workers.ratelimit import rate_limited
from workers.refunds import cancellation, refund_order
from workers.retrying import give_up
from workers.shop.state import ShopState

logger = logging.getLogger("workers.jobs")
T = TypeVar("T")


def process_event(event: dict[str, Any], payload: str | None = None) -> dict[str, Any] | Retry:
    """Process one queued event (the function the intake enqueues).

    The payload is read from where the intake kept it (:mod:`workers.kept_payloads`); jobs queued
    by earlier versions carry it as their second argument. Returns the outcome, or a ``Retry`` (RQ
    reschedules the job) when it must wait or hit a passing failure; raises :class:`JobFailed` when
    it cannot succeed.
    """
    ctx = context.current()
    job = get_current_job()
    if job is not None and "failure_reason" in job.meta:
        # It failed before and a person requeued it without `bridge replay` (the dashboard's
        # Requeue button): the same fresh start as a replay.
        fresh_start(ctx.events, job, ctx.retry_policy)
    ev = Event.model_validate(event)
    started = time.perf_counter()
    fed: datetime | None = None
    fields: dict[str, Any] = {"job_id": job.id if job else ev.job_id, "store": ev.store, "event": ev.kind,
                              "order_id": ev.order_id, "reference": ev.reference, "refund_id": ev.refund_id,
                              "request_id": job.meta.get("request_id") if job else None}
    kept = None
    try:
        if payload is None:
            payload = (kept := _kept(ctx, ev, job)).payload
        data = _parse(payload)
        fed = _fed_version(ctx, ev, data)
        outcome = _process(ctx, ev, data, job)
    except NotDue as exc:
        return _hold_back(ctx, job, ev, exc, fields, fed)
    except Wait as exc:
        delay = exc.delay if exc.delay is not None else ctx.settings.wait_delay
        return _come_back(ctx, job, ev, exc, fields, "wait", ctx.retry_policy.wait(job, delay) if job else None, fed)
    except RateLimited as exc:
        # The key's budget is spent: the pause holds back every job of the key, this one included,
        # and the job comes back when it ends, without growing its backoff.
        store = ctx.stores[ev.store]
        pause = ctx.rate_limiter.pause(store, exc.retry_after)
        return _come_back(ctx, job, ev, exc, fields, "wait", ctx.retry_policy.wait(job, pause) if job else None, fed)
    except (RetryableError, RedisError) as exc:
        retry_after = getattr(exc, "retry_after", None)
        return _come_back(ctx, job, ev, exc, fields, "retry",
                          ctx.retry_policy.retry(job, retry_after) if job else None, fed)
    except (PermanentError, MappingError, JobFailed) as exc:
        reason = _failure_reason(exc)
        _fail(ctx, job, ev, reason, fields, fed)
        raise JobFailed(reason) from None
    finally:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    fields.update(outcome.model_dump(exclude_none=True))
    log(logger, "job", **fields)
    observe_job(ev.kind, outcome.outcome)
    end = JobEnd(at=time.time(), attempts=ctx.retry_policy.attempts(job) if job else 1, outcome=outcome.outcome,
                 points=outcome.points, transaction_id=outcome.transaction_id)
    _mark(ctx, fields["job_id"], ev, fed, ended=(end, outcome.reference or ev.reference, outcome.reason))
    if kept is not None and ev.kind in ("refund", "cancel"):
        try:
            ctx.events.payloads.shrink(kept)   # the shop sent the order again: keep what differs
        except RedisError as exc:   # the job is done; its payload merely stays as it came
            log(logger, "payload not shrunk", logging.WARNING, job_id=fields["job_id"], error=str(exc))
    return outcome.model_dump()


def _kept(ctx: WorkerContext, ev: Event, job: Job | None) -> KeptEvent:
    kept = ctx.events.payloads.get(job.id if job else ev.job_id)
    if kept is None:
        raise JobFailed(f"the kept payload of this event is gone (kept {ctx.settings.payload_retention} s, "
                        "or deleted by a privacy request)")
    return kept


def _fed_version(ctx: WorkerContext, ev: Event, data: Any) -> datetime | None:
    """The version of the order whose every event this job's delivery fed (the platform adapter
    says), or None. The job remembers it as the sync does for the orders it reads, so the sync does
    not read again an order a webhook brought and nothing changed since (:mod:`workers.shop.state`)."""
    store = ctx.stores.get(ev.store)
    # A store without its shop API configured has no sync or backfill to spare.
    if store is None or not store.has_shop_api or ev.kind == "redact" or not isinstance(data, dict):
        return None
    return ADAPTERS[store.platform].fed_version(ev, data, store)


def _mark(ctx: WorkerContext, job_id: str, ev: Event, fed: datetime | None, back_at: float | None = None,
          ended: tuple[JobEnd, str | None, str | None] | None = None) -> None:
    """The job closed in (or, with ``back_at``, expected back at that time by) the open-jobs index, or
    noted as ended well (``ended``: how, its reference and reason; see EventQueue.finished), with the
    order version its delivery fed remembered in the same round trip."""
    pipe = ctx.connection.pipeline(transaction=False) if fed is not None else None
    if ended is not None:
        ctx.events.finished(ev, job_id, *ended, pipe=pipe)
    elif back_at is None:
        ctx.events.closed(job_id, pipe)
    else:
        ctx.events.expected(job_id, back_at, pipe)
    if pipe is not None:
        ShopState(ctx.connection).remember_versions(ev.store, {ev.order_id: fed}, pipe)
        *index, version = pipe.execute(raise_on_error=False)
        if failed := next((answer for answer in index if isinstance(answer, Exception)), None):
            raise failed
        if isinstance(version, Exception):
            # Only a saving (the sync reads the order once more): a full Redis refuses the SET (the
            # ZREM above it is not refused), and the job's outcome is recorded already.
            log(logger, "order version not remembered", logging.WARNING, job_id=job_id, error=str(version))


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, MappingError):
        return f"cannot read the order: {exc}"
    if isinstance(exc, PermanentError):
        return f"Loyalty.lt refused: {exc}"
    return str(exc)


def _come_back(ctx: WorkerContext, job: Job | None, ev: Event, exc: Exception, fields: dict[str, Any], kind: str,
               retry: Retry | None, fed: datetime | None = None) -> Retry:
    """Hand RQ the retry; past the retry window, fail with the last reason instead."""
    if retry is None:
        reason = f"gave up after {ctx.settings.retry_window}s of retries: {exc}"
        _fail(ctx, job, ev, reason, fields, fed)
        raise JobFailed(reason) from None
    if job is not None:
        job.meta["last_error"] = str(exc)
        job.save_meta()
    fields.update(outcome=kind, reason=str(exc), retry_in_s=retry.intervals[0],
                  attempt=ctx.retry_policy.attempts(job) if job else 1)
    log(logger, "job", logging.WARNING if kind == "retry" else logging.INFO, **fields)
    observe_job(ev.kind, kind)
    _mark(ctx, fields["job_id"], ev, fed, time.time() + retry.intervals[0])
    return retry


def _hold_back(ctx: WorkerContext, job: Job | None, ev: Event, exc: NotDue, fields: dict[str, Any],
               fed: datetime | None = None) -> Retry:
    """An award pending until the store's award delay has passed: RQ's scheduler brings it back then."""
    if job is not None:
        job.meta["due_at"] = exc.due.isoformat(timespec="seconds")
        job.meta.pop("last_error", None)
        job.save_meta()
    fields.update(outcome="pending", reason=exc.reason, due_at=exc.due.isoformat(timespec="seconds"))
    log(logger, "job", **fields)
    observe_job(ev.kind, "pending")
    _mark(ctx, fields["job_id"], ev, fed, exc.due.timestamp())
    return ctx.retry_policy.at_due_time(exc.delay or 0.0)


def _fail(ctx: WorkerContext, job: Job | None, ev: Event, reason: str, fields: dict[str, Any],
          fed: datetime | None = None) -> None:
    """Record a permanent failure in the ledger and on the job, where ``bridge failed`` reads it."""
    if job is not None:
        job.meta["failure_reason"] = reason
        give_up(job)
        job.save_meta()
    reference = ev.reference or ctx.events.reference_for(ev.store, ev.order_id)
    if reference:
        ctx.ledger.record_failure(ev.store, reference, ev.kind, reason, job.id if job else None)
    fields.update(outcome="failed", reason=reason)
    log(logger, "job", logging.ERROR, **fields)
    observe_job(ev.kind, "failed")
    _mark(ctx, job.id if job else ev.job_id, ev, fed)


def _parse(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise JobFailed("the kept payload is not JSON") from None


def _process(ctx: WorkerContext, ev: Event, data: Any, job: Job | None) -> Outcome:
    store = ctx.stores.get(ev.store)
    if store is None:
        raise JobFailed(f"store {ev.store!r} is not configured in this worker")
    job_id = job.id if job else ev.job_id
    if ev.kind == "redact":
        return redact(ctx, store, ev, data, job)
    wait = ctx.rate_limiter.wait_before_trying(store)
    if wait > 0:
        raise Wait(rate_limited(store), wait)
    adapter = ADAPTERS[store.platform]
    try:
        if ev.kind == "paid":
            return award_order(ctx, store, _read(lambda: adapter.map_order(data, store)), job_id)
        if ev.kind == "refund":
            if ev.refund_id is None:
                raise JobFailed("refund event without a refund id")
            refund = _read(lambda: adapter.map_refund(data, ev.refund_id or "", store))
            if ev.reference and refund.reference is None:
                refund = refund.model_copy(update={"reference": ev.reference})
            return refund_order(ctx, store, refund, job_id, lambda: _customer_email(store, data))
        order_id, reference = _read(lambda: adapter.order_reference(data, store))
        return refund_order(ctx, store, cancellation(store, order_id, reference), job_id,
                            lambda: _customer_email(store, data))
    except ValidationError as exc:
        # A request model refused what the payload made of it: retrying cannot change that.
        field, message = first_problem(exc)
        raise JobFailed(f"cannot build the Loyalty.lt request from the order: {field}: {message}") from None


def _read(mapping: Callable[[], T]) -> T:
    """Run a platform mapper: whatever it raises on a payload is a payload it cannot read, which no
    retry changes (so it fails at once, with the reason, instead of being retried as a crash)."""
    try:
        return mapping()
    except MappingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any mapper failure is about the payload
        if isinstance(exc, ValidationError):
            raise MappingError(*first_problem(exc)) from None
        raise MappingError("(payload)", f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _customer_email(store: StoreConfig, data: dict[str, Any]) -> str | None:
    """The customer's email from an order payload, when the payload is an order (not a refund)."""
    try:
        return ADAPTERS[store.platform].map_order(data, store).email
    except Exception:  # noqa: BLE001 - only a fallback for awards that lack Loyalty.lt's ids
        return None
