"""The RQ job: one event of one order → at most one Loyalty.lt call → one ledger entry.

``process_event`` is what the intake enqueues. It is idempotent: the ledger says whether the award
or the refund already happened, an in-flight mark makes a retry ask Loyalty.lt whether a call
landed before calling again, and a per-order lock keeps two jobs of one order from interleaving.
How a job that did not finish comes back is :mod:`workers.retrying`'s business.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, Retry

from config.log_format import log
from config.stores import StoreConfig
from workers import context
from workers.context import WorkerContext
from workers.events import Event
from workers.job_errors import JobFailed, Wait
from workers.ledger import AWARD, AppliedRefund, Award, LedgerRecord, utcnow
from workers.metrics import observe_job
from workers.retrying import give_up
from workers.loyalty import (
    AlreadyDone,
    CartItem,
    CreateTransactionRequest,
    DeductPointsRequest,
    LoyaltyClient,
    PermanentError,
    RateLimited,
    RetryableError,
    Transaction,
)
from workers.orders import ZERO, MappingError, Order, Refund, mask_email, money
from workers.platforms import ADAPTERS
from workers.ratelimit import rate_limited
from workers.ops import fetch_jobs, fresh_start, requeue
from workers.privacy import delete_kept_payloads, store_order_ids

logger = logging.getLogger("workers.jobs")
T = TypeVar("T")
NEVER_AWARDED = "the order was never awarded here"
CANCEL = "cancel"
REFUND_OP = "refund:"  # the ledger's in-flight op of a refund: refund:<refund id>


class Outcome(BaseModel):
    """What a job did; RQ keeps it as the job's result, and ``bridge status`` shows it."""

    outcome: str
    reference: str | None = None
    points: int | None = None
    transaction_id: int | None = None
    reason: str | None = None


def process_event(event: dict[str, Any], payload: str) -> dict[str, Any] | Retry:
    """Process one queued event (the function the intake enqueues).

    Returns the outcome, or a ``Retry`` (RQ reschedules the job) when it must wait or hit a passing
    failure; raises :class:`JobFailed` when it cannot succeed.
    """
    ctx = context.current()
    job = get_current_job()
    if job is not None and "failure_reason" in job.meta:
        # It failed before and a person requeued it without `bridge replay` (the dashboard's
        # Requeue button): the same fresh start as a replay.
        fresh_start(ctx.events, job, ctx.retry_policy)
    ev = Event.model_validate(event)
    started = time.perf_counter()
    fields: dict[str, Any] = {"job_id": job.id if job else ev.job_id, "store": ev.store, "event": ev.kind,
                              "order_id": ev.order_id, "reference": ev.reference, "refund_id": ev.refund_id,
                              "request_id": job.meta.get("request_id") if job else None}
    try:
        outcome = _process(ctx, ev, payload, job)
    except Wait as exc:
        delay = exc.delay if exc.delay is not None else ctx.settings.wait_delay
        return _come_back(ctx, job, ev, exc, fields, "wait", ctx.retry_policy.wait(job, delay) if job else None)
    except RateLimited as exc:
        # The key's budget is spent: the pause holds back every job of the key, this one included,
        # and the job comes back when it ends, without growing its backoff.
        store = ctx.stores[ev.store]
        pause = ctx.rate_limiter.pause(store, exc.retry_after)
        return _come_back(ctx, job, ev, exc, fields, "wait", ctx.retry_policy.wait(job, pause) if job else None)
    except (RetryableError, RedisError) as exc:
        retry_after = getattr(exc, "retry_after", None)
        return _come_back(ctx, job, ev, exc, fields, "retry",
                          ctx.retry_policy.retry(job, retry_after) if job else None)
    except (PermanentError, MappingError, JobFailed) as exc:
        reason = _failure_reason(exc)
        _fail(ctx, job, ev, reason, fields)
        raise JobFailed(reason) from None
    finally:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    fields.update(outcome.model_dump(exclude_none=True))
    log(logger, "job", **fields)
    observe_job(ev.kind, outcome.outcome)
    ctx.events.closed(fields["job_id"])
    return outcome.model_dump()


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, MappingError):
        return f"cannot read the order: {exc}"
    if isinstance(exc, PermanentError):
        return f"Loyalty.lt refused: {exc}"
    return str(exc)


def _come_back(ctx: WorkerContext, job: Job | None, ev: Event, exc: Exception, fields: dict[str, Any], kind: str,
               retry: Retry | None) -> Retry:
    """Hand RQ the retry; past the retry window, fail with the last reason instead."""
    if retry is None:
        reason = f"gave up after {ctx.settings.retry_window}s of retries: {exc}"
        _fail(ctx, job, ev, reason, fields)
        raise JobFailed(reason) from None
    if job is not None:
        job.meta["last_error"] = str(exc)
        job.save_meta()
    fields.update(outcome=kind, reason=str(exc), retry_in_s=retry.intervals[0],
                  attempt=ctx.retry_policy.attempts(job) if job else 1)
    log(logger, "job", logging.WARNING if kind == "retry" else logging.INFO, **fields)
    observe_job(ev.kind, kind)
    return retry


def _fail(ctx: WorkerContext, job: Job | None, ev: Event, reason: str, fields: dict[str, Any]) -> None:
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
    ctx.events.closed(job.id if job else ev.job_id)


def _process(ctx: WorkerContext, ev: Event, payload: str, job: Job | None) -> Outcome:
    store = ctx.stores.get(ev.store)
    if store is None:
        raise JobFailed(f"store {ev.store!r} is not configured in this worker")
    try:
        data = json.loads(payload)
    except ValueError:
        raise JobFailed("the kept payload is not JSON") from None
    job_id = job.id if job else ev.job_id
    if ev.kind == "redact":
        return _redact(ctx, store, ev, data, job)
    wait = ctx.rate_limiter.wait_before_trying(store)
    if wait > 0:
        raise Wait(rate_limited(store), wait)
    if ev.kind == "paid":
        return _award(ctx, store, ADAPTERS[store.platform].map_order(data, store), job_id)
    if ev.kind == "refund":
        if ev.refund_id is None:
            raise JobFailed("refund event without a refund id")
        refund = ADAPTERS[store.platform].map_refund(data, ev.refund_id, store)
        return _take_back(ctx, store, ev, refund, job_id, data)
    order_id, reference = ADAPTERS[store.platform].order_reference(data, store)
    cancel = Refund(store=store.id, platform=store.platform, order_id=order_id, reference=reference,
                    refund_id=CANCEL, amount=ZERO, reason="order cancelled")
    return _take_back(ctx, store, ev, cancel, job_id, data)


def _marked_call(ctx: WorkerContext, store: str, reference: str, op: str, job_id: str, call: Callable[[], T]) -> T:
    """Make an API call with the ledger's in-flight mark set around it.

    If the worker dies mid-call, the mark tells the retry to ask Loyalty.lt before calling again.
    A call that never left (it waited for a rate-limit slot) or that Loyalty.lt refused (a 4xx:
    nothing landed) takes its mark back.
    """
    ctx.ledger.mark_in_flight(store, reference, op, job_id)
    try:
        return call()
    except (Wait, PermanentError):
        ctx.ledger.clear_in_flight(store, reference, op)
        raise


def _redact(ctx: WorkerContext, store: StoreConfig, ev: Event, data: dict[str, Any], job: Job | None) -> Outcome:
    """Delete the kept payloads a privacy request covers, then this job's own copy of the request."""
    if ev.order_id == "shop":
        order_ids = store_order_ids(ctx.connection, ctx.events, store.id)
    else:
        order_ids = ADAPTERS[store.platform].orders_to_redact(data)
    deleted = delete_kept_payloads(ctx.connection, ctx.events, store.id, order_ids, keep=job.id if job else None)
    if job is not None:
        job.args = (job.args[0], "{}")  # the request itself names the customer
        job.save()
    return Outcome(outcome="redacted", reason=f"deleted the kept payloads of {deleted} jobs ({ev.topic})")


# --- awards ---------------------------------------------------------------------------------------

def create_request(order: Order, store: StoreConfig) -> CreateTransactionRequest:
    """The create-transaction call for a paid order (gift cards neither earn nor appear as items)."""
    items = [CartItem(product_id=line.product_id, product_name=line.name, quantity=line.quantity,
                      unit_price=line.unit_price, total_price=line.total, sku=line.sku)
             for line in order.lines if not line.gift_card]
    return CreateTransactionRequest(
        user_email=order.email, order_id=order.reference, order_total=order.points_base(store),
        currency=order.currency, shop_id=store.shop_id, partner_card_id=store.partner_card_id,
        points_redeemed=order.points_redeemed or None,
        points_discount_amount=order.points_discount if order.points_redeemed else None,
        cart_items=items,
        meta_data={"platform": order.platform, "store": store.id, "platform_order_id": order.order_id,
                   "items_count": len(items)},
    )


def _award_from_list(tx: Transaction, order: Order, base: Decimal, source: str) -> Award:
    return Award(
        transaction_id=tx.id, points=tx.points or 0, base=base, order_total=order.total,
        currency=tx.currency or order.currency, order_id=order.order_id, at=utcnow(),
        user_id=tx.user.id if tx.user else None, loyalty_card_id=tx.loyalty_card.id if tx.loyalty_card else None,
        source=source,
    )


def _find_purchase(client: LoyaltyClient, reference: str) -> Transaction | None:
    found = client.find_transactions(reference_number=reference, type="purchase")
    return found[0] if found else None


def _award(ctx: WorkerContext, store: StoreConfig, order: Order, job_id: str) -> Outcome:
    reference = order.reference
    ctx.events.index_order(store.id, order.order_id, reference)
    with ctx.ledger.order_lock(store.id, reference) as locked:
        if not locked:
            raise Wait(f"order {reference} is busy with another job")
        record = ctx.ledger.get(store.id, reference)
        if record.award is not None:
            return Outcome(outcome="already awarded", reference=reference, points=record.award.points,
                           transaction_id=record.award.transaction_id)
        if record.skipped is not None:
            return Outcome(outcome="already skipped", reference=reference, reason=record.skipped.reason)
        reason = order.skip_reason(store)
        if CANCEL in record.refunds:
            # Deliveries can arrive out of order: a cancellation seen first means nothing to award.
            reason = "the order was cancelled before its payment was processed here"
        if reason is not None:
            ctx.ledger.record_skip(store.id, reference, "paid", reason)
            return Outcome(outcome="skipped", reference=reference, reason=reason)

        client = ctx.client(store)
        base = order.points_base(store)
        if AWARD in record.inflight:
            # An earlier attempt may have landed before its worker died: ask before calling again.
            landed = _find_purchase(client, reference)
            if landed is not None:
                award = _award_from_list(landed, order, base, "recovered")
                ctx.ledger.record_award(store.id, reference, award)
                return Outcome(outcome="awarded", reference=reference, points=award.points,
                               transaction_id=award.transaction_id, reason="recovered: the earlier call had landed")
        try:
            result = _marked_call(ctx, store.id, reference, AWARD, job_id,
                                  lambda: client.create_transaction(create_request(order, store)))
        except AlreadyDone:
            landed = _find_purchase(client, reference)
            if landed is None:
                raise RetryableError(f"Loyalty.lt says {reference} was already processed but does not list it yet",
                                     status=409) from None
            award = _award_from_list(landed, order, base, "already existed")
        else:
            award = Award(
                transaction_id=result.transaction_id, points=result.points_awarded or 0, base=base,
                order_total=order.total, currency=result.currency or order.currency, order_id=order.order_id,
                at=utcnow(), user_id=result.user_id, loyalty_card_id=result.loyalty_card_id,
            )
        ctx.ledger.record_award(store.id, reference, award)
        _reapply_early_refunds(ctx, store, order, record)
    log(logger, "awarded", store=store.id, reference=reference, email=mask_email(order.email), points=award.points)
    return Outcome(outcome="awarded", reference=reference, points=award.points, transaction_id=award.transaction_id)


def _reapply_early_refunds(ctx: WorkerContext, store: StoreConfig, order: Order, record: LedgerRecord) -> None:
    """Refunds that came before their order was awarded were noted with no points; run them again now."""
    for refund_id, applied in record.refunds.items():
        if applied.source != NEVER_AWARDED:
            continue
        ctx.ledger.forget_refund(store.id, order.reference, refund_id)
        event = Event(store=store.id, platform=store.platform, kind="refund", order_id=order.order_id,
                      refund_id=refund_id)
        for job in fetch_jobs(ctx.connection, [event.job_id]):
            requeue(ctx.events, job, ctx.retry_policy)


# --- refunds and cancellations --------------------------------------------------------------------

def _paid_job_pending(ctx: WorkerContext, ev: Event) -> bool:
    """Whether the order's paid job exists and has not finished (so its award may still come)."""
    paid_id = Event(store=ev.store, platform=ev.platform, kind="paid", order_id=ev.order_id).job_id
    try:
        status = Job.fetch(paid_id, connection=ctx.connection).get_status()
    except NoSuchJobError:
        return False
    return status != JobStatus.FINISHED


def _find_deduction(client: LoyaltyClient, reference: str, refund_id: str) -> Transaction | None:
    for tx in client.find_transactions(reference_number=reference, type="refund"):
        meta = tx.metadata or {}
        if str(meta.get("refund_id", "")) == refund_id:
            return tx
    return None


def _record_nothing(ctx: WorkerContext, store: StoreConfig, reference: str, refund: Refund, kind: str,
                    outcome: str, note: str) -> Outcome:
    """Remember a refund that takes back no points, so a redelivery does not reconsider it."""
    applied = AppliedRefund(points=0, amount=refund.amount, at=utcnow(), kind=kind, source=note)
    ctx.ledger.record_refund(store.id, reference, refund.refund_id, applied)
    return Outcome(outcome=outcome, reference=reference, points=0, reason=note)


def _take_back(ctx: WorkerContext, store: StoreConfig, ev: Event, refund: Refund, job_id: str,
               data: dict[str, Any]) -> Outcome:
    reference = ev.reference or refund.reference or ctx.events.reference_for(store.id, ev.order_id)
    if reference is None:
        raise Wait(f"order #{ev.order_id} has not been seen yet: waiting for its paid webhook")
    kind = "cancel" if refund.refund_id == CANCEL else "refund"
    with ctx.ledger.order_lock(store.id, reference) as locked:
        if not locked:
            raise Wait(f"order {reference} is busy with another job")
        record = ctx.ledger.get(store.id, reference)
        if refund.refund_id in record.refunds:
            done = record.refunds[refund.refund_id]
            return Outcome(outcome="already applied", reference=reference, points=done.points,
                           transaction_id=done.transaction_id)
        if record.award is None:
            if record.skipped is not None:
                return _record_nothing(ctx, store, reference, refund, kind, "skipped",
                                       f"the order earned nothing ({record.skipped.reason})")
            if _paid_job_pending(ctx, ev):
                raise Wait(f"{kind} of {reference} waits for the order's points to be awarded")
            return _record_nothing(ctx, store, reference, refund, kind, "skipped", NEVER_AWARDED)
        if any(op.startswith(REFUND_OP) and op != REFUND_OP + refund.refund_id for op in record.inflight):
            record = _recover_deductions(ctx, store, reference, record, refund.refund_id)
        if kind == "cancel":
            refund = refund.model_copy(update={"amount": money(max(record.award.order_total - record.amount_refunded,
                                                                   ZERO))})
        points = record.points_for_refund(refund.amount, everything=kind == "cancel")
        if points <= 0:
            note = "no money refunded" if refund.amount <= 0 else "nothing left to take back"
            return _record_nothing(ctx, store, reference, refund, kind, "nothing to take back", note)
        return _deduct(ctx, store, reference, record, refund, kind, points, job_id, data)


def _recover_deductions(ctx: WorkerContext, store: StoreConfig, reference: str, record: LedgerRecord,
                        own_refund_id: str) -> LedgerRecord:
    """Record the deductions other jobs of this order made but died before recording.

    What this job takes back depends on what was taken back before (a cancellation takes what
    remains), so a deduction that landed unrecorded must count first. One that did not land is left
    to its own job, which will find this job's deduction in the ledger when it runs. This job's own
    in-flight deduction is not touched here: :func:`_deduct` recovers it, and then does not call.
    """
    pending = {op.removeprefix(REFUND_OP) for op in record.inflight if op.startswith(REFUND_OP)} - {own_refund_id}
    for tx in ctx.client(store).find_transactions(reference_number=reference, type="refund"):
        meta = tx.metadata or {}
        refund_id = str(meta.get("refund_id", ""))
        if refund_id not in pending:
            continue
        try:
            amount = money(Decimal(str(meta.get("refund_amount", 0))))
        except ArithmeticError:  # not ours after all; its points still count
            amount = ZERO
        applied = AppliedRefund(points=abs(tx.points or 0), amount=amount, at=utcnow(), transaction_id=tx.id,
                                kind=str(meta.get("kind", "refund")), source="recovered by a later job")
        ctx.ledger.record_refund(store.id, reference, refund_id, applied)
    return ctx.ledger.get(store.id, reference)


def _deduct(ctx: WorkerContext, store: StoreConfig, reference: str, record: LedgerRecord, refund: Refund,
            kind: str, points: int, job_id: str, data: dict[str, Any]) -> Outcome:
    client = ctx.client(store)
    op = REFUND_OP + refund.refund_id
    award = record.award
    assert award is not None
    if op in record.inflight:
        landed = _find_deduction(client, reference, refund.refund_id)
        if landed is not None:
            applied = AppliedRefund(points=abs(landed.points or points), amount=refund.amount, at=utcnow(),
                                    transaction_id=landed.id, kind=kind, source="recovered")
            ctx.ledger.record_refund(store.id, reference, refund.refund_id, applied)
            return Outcome(outcome="deducted", reference=reference, points=applied.points,
                           transaction_id=landed.id, reason="recovered: the earlier call had landed")
    email = _customer_email(store, data) if award.user_id is None else None
    request = DeductPointsRequest(
        user_id=award.user_id, user_email=email, order_id=reference, refund_id=refund.refund_id, points=points,
        refund_amount=refund.amount, currency=refund.currency or award.currency, reason=refund.reason or kind,
        meta_data={"platform": store.platform, "store": store.id, "platform_order_id": award.order_id,
                   "refund_id": refund.refund_id, "kind": kind, "refund_amount": str(refund.amount)},
    )
    result = _marked_call(ctx, store.id, reference, op, job_id, lambda: client.deduct_points(request))
    applied = AppliedRefund(points=points, amount=refund.amount, at=utcnow(), transaction_id=result.transaction_id,
                            kind=kind)
    ctx.ledger.record_refund(store.id, reference, refund.refund_id, applied)
    return Outcome(outcome="deducted", reference=reference, points=points, transaction_id=result.transaction_id)


def _customer_email(store: StoreConfig, data: dict[str, Any]) -> str | None:
    """The customer's email from an order payload, when the payload is an order (not a refund)."""
    try:
        return ADAPTERS[store.platform].map_order(data, store).email
    except MappingError:
        return None
