"""Refunds and cancellations: taking points back, once, in the right amount.

A refund job finds the order's reference (a Shopify refund names only the order id), takes the
order's lock, and first resolves every unanswered call of the order (:mod:`workers.recovery`): what a
refund takes back depends on what was taken back before. Then:

- already applied (a redelivery, a replay): nothing to do;
- no award yet: the refund is kept in the ledger as pending, and whichever path records the award
  applies it (:mod:`workers.award`), however long the award takes;
- the order earned nothing: recorded as taking back nothing;
- otherwise: the points the refund takes back (:mod:`workers.refund_points`), one deduction, recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from config.log_format import log
from config.stores import StoreConfig
from workers import recovery
from workers.context import WorkerContext
from workers.job_errors import JobFailed, Wait
from workers.ledger import AppliedRefund, LedgerRecord, PendingRefund, utcnow
from workers.loyalty import DeductPointsRequest, NotSent, PermanentError, RateLimited
from workers.orders import ZERO, Refund, money
from workers.outcome import Outcome
from workers.recovery import CANCEL, deduction_marker, refund_op
from workers.refund_points import take_back

logger = logging.getLogger("workers.refunds")
# The customer's email, read from the payload only if the award lacks Loyalty.lt's ids of them.
EmailSource = Callable[[], str | None]


def cancellation(store: StoreConfig, order_id: str, reference: str) -> Refund:
    """The cancellation of an order, as a refund of everything that remains."""
    return Refund(store=store.id, platform=store.platform, order_id=order_id, reference=reference,
                  refund_id=CANCEL, amount=ZERO, reason="order cancelled")


def kind_of(refund: Refund) -> str:
    return "cancel" if refund.refund_id == CANCEL else "refund"


def no_email() -> str | None:
    return None


def refund_order(ctx: WorkerContext, store: StoreConfig, refund: Refund, job_id: str,
                 email: EmailSource = no_email) -> Outcome:
    """Apply one refund or the cancellation of an order (the refund and cancel jobs)."""
    reference = refund.reference or ctx.events.reference_for(store.id, refund.order_id)
    if reference is None:
        raise Wait(f"order #{refund.order_id} has not been seen here yet: waiting for its paid webhook "
                   "(or a backfill) to say which order it is")
    with ctx.ledger.order_lock(store.id, reference) as locked:
        if not locked:
            raise Wait(f"order {reference} is busy with another job")
        record = ctx.ledger.get(store.id, reference)
        if refund.refund_id in record.refunds:
            done = record.refunds[refund.refund_id]
            ctx.ledger.confirm()   # recorded by an earlier attempt, whose WAIT may have fallen short
            return Outcome(outcome="already applied", reference=reference, points=done.points,
                           transaction_id=done.transaction_id)
        record = recovery.settle(ctx, store, record)
        if refund.refund_id in record.refunds:  # this job's earlier call had landed: found just now
            done = record.refunds[refund.refund_id]
            return Outcome(outcome="deducted", reference=reference, points=done.points,
                           transaction_id=done.transaction_id, reason="recovered: the earlier call had landed")
        if record.award is None:
            if record.skipped is not None:
                return record_nothing(ctx, store, reference, refund, None,
                                       f"the order earned nothing ({record.skipped.reason})", "skipped")
            ctx.ledger.record_pending(store.id, reference, refund.refund_id,
                                      PendingRefund(refund=refund.model_copy(update={"reference": reference}),
                                                    kind=kind_of(refund), at=datetime.now(UTC).isoformat(),
                                                    job_id=job_id))
            return Outcome(outcome="pending the award", reference=reference, points=0,
                           reason=f"the order has no award yet: the {kind_of(refund)} is kept in the ledger and "
                                  "applied when the award is recorded")
        return apply(ctx, store, record, refund, job_id, email)


def apply(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, refund: Refund, job_id: str,
          email: EmailSource = no_email) -> Outcome:
    """Take back what ``refund`` takes from the order's award (the caller holds the order's lock and
    has settled its unanswered calls)."""
    award = record.award
    assert award is not None
    reference = record.reference
    if refund.refund_id == CANCEL:
        share = max(1 - record.share_refunded, ZERO)
        points, currency = max(record.points_remaining, 0), award.currency
    else:
        taking = take_back(record, refund, store)
        share, points, currency = taking.share, taking.points, taking.currency
    if points <= 0:
        note = "no money paid back" if refund.refund_id != CANCEL and refund.amount <= 0 else "nothing left to take back"
        return record_nothing(ctx, store, reference, refund, share, note, "nothing to take back")
    amount = refund.amount if refund.refund_id != CANCEL else money(award.order_total * share)
    draft = AppliedRefund(points=points, amount=amount, currency=currency, share=share, at=utcnow(),
                          kind=kind_of(refund))
    applied = _deduct(ctx, store, record, refund, draft, job_id, email)
    log(logger, "deducted", store=store.id, reference=reference, refund_id=refund.refund_id, points=points)
    return Outcome(outcome="deducted", reference=reference, points=applied.points,
                   transaction_id=applied.transaction_id)


def record_nothing(ctx: WorkerContext, store: StoreConfig, reference: str, refund: Refund, share: Decimal | None,
                   note: str, outcome: str) -> Outcome:
    """Remember a refund that takes back no points, so a redelivery does not reconsider it."""
    applied = AppliedRefund(points=0, amount=refund.amount, currency=refund.currency, share=share, at=utcnow(),
                            kind=kind_of(refund), source=note)
    ctx.ledger.record_refund(store.id, reference, refund.refund_id, applied)
    return Outcome(outcome=outcome, reference=reference, points=0, reason=note)


def deduct_request(store: StoreConfig, record: LedgerRecord, refund: Refund, draft: AppliedRefund,
                   email: EmailSource = no_email) -> DeductPointsRequest:
    """The deduct-points call for a refund: the card, the points, a description naming the refund
    (the customer's email only when Loyalty.lt's ids of them are unknown)."""
    award = record.award
    assert award is not None
    marker = deduction_marker(record.reference, refund.refund_id)
    return DeductPointsRequest(
        card_id=award.loyalty_card_id, card_number=award.card_number, user_id=award.user_id,
        user_email=email() if award.user_id is None and award.loyalty_card_id is None else None,
        points=draft.points, description=f"{refund.note}: {marker}" if refund.note else marker, shop_id=store.shop_id,
        order_id=record.reference, refund_id=refund.refund_id, refund_amount=draft.amount, currency=draft.currency,
        reason=(refund.reason or draft.kind)[:255],
        meta_data={"platform": store.platform, "store": store.id, "reference": record.reference,
                   "platform_order_id": award.order_id, "refund_id": refund.refund_id, "kind": draft.kind,
                   "refund_amount": str(draft.amount), **({"note": refund.note} if refund.note else {})},
    )


def _deduct(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, refund: Refund, draft: AppliedRefund,
            job_id: str, email: EmailSource) -> AppliedRefund:
    """One deduction, marked in flight from just before it leaves until its outcome is recorded."""
    award = recovery.with_card(ctx, store, record.reference, record.award)  # type: ignore[arg-type]
    record = record.model_copy(update={"award": award})
    request = deduct_request(store, record, refund, draft, email)
    observed = ctx.observed(store)
    body = observed.deduct_body if observed is not None else "full"
    if body == "sdk" and request.card_id is None:
        raise JobFailed(f"{store.id}'s Loyalty.lt API takes only card_id, points and description in a deduction "
                        f"(bridge check --live saw it refuse the rest), and the card of {record.reference} is unknown")
    client = ctx.client(store)
    op = refund_op(refund.refund_id)
    ctx.reserve_slot(store)
    token = ctx.ledger.mark_in_flight(store.id, record.reference, op, job_id, deduction=draft)
    try:
        result = client.deduct_points(request, body)
    except (PermanentError, NotSent, RateLimited):
        # Refused (a 429 too), or never sent: nothing landed, so this attempt takes its own mark back.
        ctx.ledger.clear_in_flight(store.id, record.reference, op, token)
        raise
    applied = draft.model_copy(update={"transaction_id": result.transaction_id, "at": utcnow()})
    ctx.ledger.record_refund(store.id, record.reference, refund.refund_id, applied)
    return applied
