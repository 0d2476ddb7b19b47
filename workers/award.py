"""Awards: one create-transaction call per paid order, then the refunds that came before it.

The paid job takes the order's lock and first resolves every unanswered call of the order
(:mod:`workers.recovery`). An order already awarded or skipped stays so (a redelivery, a replay); an
order that earns nothing is recorded as skipped with the reason; otherwise one create call, marked
in flight from just before it leaves until the award is recorded. Loyalty.lt refuses a second award
of one ``order_id`` (409), and the existing transaction is then read from its list.

Refunds that came before the award wait in the ledger (:class:`workers.ledger.PendingRefund`);
every path that records an award (a create, a 409, a recovered call, or a later run of this job that
finds the award recorded) applies them, so none is forgotten, whatever crashed in between.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from config.log_format import log
from config.stores import StoreConfig
from workers import award_delay, recovery, refunds
from workers.award_delay import Kept
from workers.context import WorkerContext
from workers.job_errors import Wait
from workers.ledger import AWARD, Award, LedgerRecord, utcnow
from workers.loyalty import AlreadyDone, CartItem, CreateTransactionRequest, NotSent, PermanentError, RateLimited
from workers.orders import Order, mask_email
from workers.outcome import Outcome
from workers.ledger import CANCEL

logger = logging.getLogger("workers.award")
CANCELLED_FIRST = "the order was cancelled before its payment was processed here"
CANCELLED_DURING_DELAY = "the order was cancelled before its award was due (the store's award delay)"


def create_request(order: Order, store: StoreConfig, kept: Kept | None = None) -> CreateTransactionRequest:
    """The create-transaction call for a paid order (gift cards neither earn nor appear as items);
    with ``kept``, for what the customer kept after refunds made during an award delay."""
    lines = kept.lines if kept is not None else order.lines
    items = [CartItem(product_id=line.product_id, product_name=line.name, quantity=line.quantity,
                      unit_price=line.unit_price, total_price=line.total, sku=line.sku)
             for line in lines if not line.gift_card]
    return CreateTransactionRequest(
        user_email=order.email, order_id=order.reference,
        order_total=kept.draft.base if kept is not None else order.points_base(store),
        currency=order.currency, shop_id=store.shop_id, partner_card_id=store.partner_card_id,
        points_redeemed=order.points_redeemed or None,
        points_discount_amount=order.points_discount if order.points_redeemed else None,
        cart_items=items, description=order.note,
        meta_data={"platform": order.platform, "store": store.id, "platform_order_id": order.order_id,
                   "items_count": len(items), **({"note": order.note} if order.note else {})},
    )


def draft_award(order: Order, store: StoreConfig) -> Award:
    """The award as it will be recorded, before Loyalty.lt says its transaction and points."""
    return Award(transaction_id=None, points=0, base=order.points_base(store), order_total=order.total,
                 currency=order.currency, order_id=order.order_id, at=utcnow(),
                 presentment_total=order.presentment_total, presentment_currency=order.presentment_currency,
                 taxes_included=order.taxes_included)


def award_order(ctx: WorkerContext, store: StoreConfig, order: Order, job_id: str) -> Outcome:
    """Award a paid order once (the paid job), then apply the refunds that came before it."""
    reference = order.reference
    ctx.events.index_order(store.id, order.order_id, reference, store.platform)
    with ctx.ledger.order_lock(store.id, reference) as locked:
        if not locked:
            raise Wait(f"order {reference} is busy with another job")
        draft = draft_award(order, store)
        before = ctx.ledger.get(store.id, reference)
        record = recovery.settle(ctx, store, before, draft)
        if record.award is not None:
            applied = apply_pending(ctx, store, record, job_id, order.email)
            award = record.award
            if before.award is None:  # this job's earlier call had landed: found in the list just now
                return Outcome(outcome="awarded", reference=reference, points=award.points,
                               transaction_id=award.transaction_id,
                               reason="recovered: the earlier call had landed" + (f"; {applied}" if applied else ""))
            # Recorded by an earlier attempt, whose WAIT may have fallen short.
            ctx.ledger.confirm()
            return Outcome(outcome="already awarded", reference=reference, points=award.points,
                           transaction_id=award.transaction_id, reason=applied)
        if record.skipped is not None:
            return Outcome(outcome="already skipped", reference=reference, reason=record.skipped.reason)
        reason = order.skip_reason(store)
        if CANCEL in record.pending or CANCEL in record.refunds:
            # Deliveries can arrive out of order: a cancellation seen first means nothing to award.
            reason = CANCELLED_DURING_DELAY if record.due is not None else CANCELLED_FIRST
        kept = None
        if reason is None and (due := award_delay.due_time(ctx.ledger, store, order, record)) is not None:
            if datetime.now(UTC) < due:
                raise award_delay.NotDue(reference, due)
            kept = award_delay.kept_award(order, draft, record.pending.values(), store)
            reason = kept.skip
        if reason is not None:
            return _skip(ctx, store, record, reason)
        award = _create(ctx, store, order, kept, job_id)
        ctx.ledger.record_award(store.id, reference, award, record.absorbed(kept.absorbs if kept else []))
        applied = apply_pending(ctx, store, ctx.ledger.get(store.id, reference), job_id, order.email)
    log(logger, "awarded", store=store.id, reference=reference, email=mask_email(order.email), points=award.points)
    return Outcome(outcome="awarded", reference=reference, points=award.points, transaction_id=award.transaction_id,
                   reason=applied)


def _skip(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, reason: str) -> Outcome:
    """The order earns nothing: recorded, with the refunds that came before it as taking nothing back."""
    ctx.ledger.record_skip(store.id, record.reference, "paid", reason)
    for pending in record.pending.values():
        refunds.record_nothing(ctx, store, record.reference, pending.refund, None,
                               f"the order earned nothing ({reason})", "skipped")
    return Outcome(outcome="skipped", reference=record.reference, reason=reason)


def _create(ctx: WorkerContext, store: StoreConfig, order: Order, kept: Kept | None, job_id: str) -> Award:
    """The create call, marked in flight from just before it leaves; the award it made."""
    client = ctx.client(store)
    request = create_request(order, store, kept)
    draft = kept.draft if kept is not None else draft_award(order, store)
    ctx.reserve_slot(store)
    token = ctx.ledger.mark_in_flight(store.id, order.reference, AWARD, job_id, award=draft,
                                      absorbs=kept.absorbs if kept else None)
    try:
        result = client.create_transaction(request)
    except AlreadyDone:
        # Loyalty.lt has it (this call landed after all, or an earlier one did): read it from the list.
        landed = recovery.find_purchase(client, store, order.reference)
        if landed is None:
            # The mark stays: it landed, and the next look records it.
            raise Wait(f"Loyalty.lt says {order.reference} was already processed but does not list it yet",
                       ctx.settings.wait_delay) from None
        return draft.model_copy(update={
            "transaction_id": landed.id, "points": landed.points or 0, "source": "already existed",
            "user_id": landed.user.id if landed.user else None,
            "loyalty_card_id": landed.loyalty_card.id if landed.loyalty_card else None,
            "card_number": landed.loyalty_card.number if landed.loyalty_card else None})
    except (PermanentError, NotSent, RateLimited):
        # Refused (a 429 too), or never sent: nothing landed, so this attempt takes its own mark back.
        ctx.ledger.clear_in_flight(store.id, order.reference, AWARD, token)
        raise
    return draft.model_copy(update={
        "transaction_id": result.transaction_id, "points": result.points_awarded or 0, "at": utcnow(),
        "user_id": result.user_id,
        "loyalty_card_id": result.loyalty_card_id, "card_number": result.card_number})


def apply_pending(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, job_id: str,
                  email: str | None) -> str | None:
    """Apply the refunds that came before the award (the caller holds the order's lock); says what
    it took back, or None when there was nothing pending."""
    if not record.pending:
        return None
    taken = []
    for refund_id, pending in sorted(record.pending.items(), key=lambda item: item[1].at):
        record = ctx.ledger.get(store.id, record.reference)
        if refund_id in record.refunds:
            continue
        outcome = refunds.apply(ctx, store, record, pending.refund, job_id, lambda: email)
        taken.append(f"{pending.kind} {refund_id}: {outcome.points or 0} points")
    return "applied what came before the award: " + ", ".join(taken) if taken else None
