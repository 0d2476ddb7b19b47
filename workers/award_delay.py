"""Pending points: a store's ``award_delay`` holds each award back until the return window has passed.

Loyalty apps do this so that a customer who spends points and then returns the order does not leave
a negative balance. The paid job records when the award falls due (payment time + delay, fixed
when the order is first seen, so changing the setting affects only later orders) and comes back
then through RQ's scheduler: no worker waits. Refunds meanwhile make no Loyalty.lt call; they wait
in the ledger (:class:`workers.ledger.PendingRefund`), and when the award falls due it is one create
call for the order as kept (Yotpo's rule): the total less what was paid back, lines returned in full
left out, lines returned in part reduced. A cancellation, or refunds of everything, mean no award.
The refunds it absorbed are recorded with the award, in the same write, as taking back nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from config.stores import StoreConfig
from workers.job_errors import Wait
from workers.ledger import CANCEL, Award, DueAward, Ledger, LedgerRecord, PendingRefund, utcnow
from workers.orders import ZERO, Order, OrderLine, money
from workers.refund_points import WHOLE, share_of


class NotDue(Wait):
    """The award is held back until ``due``; the job comes back then (not a retry: no window applies)."""

    def __init__(self, reference: str, due: datetime) -> None:
        super().__init__(f"the award of {reference} is pending until {due.isoformat(timespec='seconds')} "
                         "(the store's award delay)", max((due - datetime.now(UTC)).total_seconds(), 0.0))
        self.due = due


def due_time(ledger: Ledger, store: StoreConfig, order: Order, record: LedgerRecord) -> datetime | None:
    """When the order's award falls due (recorded the first time), or None for an award at once."""
    if record.due is not None:
        return datetime.fromisoformat(record.due.due_at)
    if not store.award_delay:
        return None
    due = (order.paid_at or datetime.now(UTC)) + store.award_delay
    ledger.record_due(store.id, order.reference, DueAward(due_at=due.isoformat(timespec="seconds"),
                                                          delay=store.award_delay.total_seconds(), at=utcnow()))
    return due


@dataclass(frozen=True)
class Kept:
    """The award as kept after refunds made during the delay, or why there is none."""

    draft: Award
    lines: list[OrderLine]
    absorbs: list[str]
    skip: str | None = None


def kept_award(order: Order, draft: Award, pending: Iterable[PendingRefund], store: StoreConfig) -> Kept:
    """The award for what the customer kept, once the refunds made during the delay are taken out."""
    refunds = [p for p in sorted(pending, key=lambda p: p.at) if p.kind != CANCEL]
    if not refunds:
        return Kept(draft, list(order.lines), [])
    shares = [share_of(draft, p.refund, store, order.reference) for p in refunds]
    paid = sum((s.paid for s in shares), Fraction(0))
    earning = sum((s.earning for s in shares), Fraction(0))
    absorbs = [p.refund.refund_id for p in refunds]
    if paid >= WHOLE:
        return Kept(draft, [], absorbs, skip="refunded in full during the award delay")
    kept_paid, kept_earning = 1 - paid, max(1 - earning, Fraction(0))
    base = money(draft.base * kept_earning.numerator / kept_earning.denominator)
    kept = draft.model_copy(update={
        "base": max(base, ZERO),
        "order_total": money(draft.order_total * kept_paid.numerator / kept_paid.denominator),
        "presentment_total": money(draft.presentment_total * kept_paid.numerator / kept_paid.denominator)
        if draft.presentment_total is not None else None})
    return Kept(kept, _kept_lines(order.lines, refunds), absorbs)


def _kept_lines(lines: list[OrderLine], refunds: list[PendingRefund]) -> list[OrderLine]:
    """The cart less the lines the refunds say they returned: gone when returned in full, fewer when in part."""
    returned: dict[str, int] = {}
    for pending in refunds:
        for line_id, quantity in (pending.refund.items.lines if pending.refund.items else {}).items():
            returned[line_id] = returned.get(line_id, 0) + quantity
    kept = []
    for line in lines:
        back = returned.get(line.line_id or "", 0)
        if back >= line.quantity > 0:
            continue
        if back > 0:
            left = line.quantity - back
            line = line.model_copy(update={"quantity": left, "total": money(line.unit_price * left)})
        kept.append(line)
    return kept
