"""Reconcile: compare Loyalty.lt's transaction list with the ledger, and fix what is missing.

Three kinds of difference: awarded here but missing there, there but unknown here, and points that
differ (awarded, or taken back). A reference is only declared missing after a direct look-up by
``reference_number``, so day boundaries of the date filter do not produce false alarms. Deductions
are counted for their order however Loyalty.lt files them (:func:`workers.recovery.deduction_reference`),
up to today, so a refund made after the period still counts for an award made in it.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel

from config.stores import StoreConfig
from workers.context import WorkerContext
from workers.loyalty import Transaction, TransactionFilters
from workers.ops import order_jobs, requeue
from workers.probe import PROBE_REFERENCE
from workers.recovery import deduction_reference, deductions_since, find_purchase

Kind = Literal["missing there", "unknown here", "points differ"]


class Difference(BaseModel):
    """One disagreement between the ledger and Loyalty.lt."""

    kind: Kind
    reference: str
    points_here: int | None = None
    points_there: int | None = None
    detail: str = ""
    fixed: str | None = None


def reference_pattern(fmt: str) -> re.Pattern[str]:
    """A regular expression matching the references a ``reference_format`` produces (and the live
    probe's orders, which the store's key made too)."""
    parts = [re.escape(literal) + ("(.+)" if name is not None else "")
             for literal, name, _, _ in string.Formatter().parse(fmt)]
    return re.compile("^(?:" + "".join(parts) + f"|{PROBE_REFERENCE})$")


def belongs(tx: Transaction, store: StoreConfig, pattern: re.Pattern[str]) -> bool:
    """Whether a transaction is this store's: by the bridge's metadata, else by its order reference's shape."""
    meta = tx.metadata or {}
    if meta.get("store"):
        return meta.get("store") == store.id
    return _reference(tx, pattern) is not None


def _reference(tx: Transaction, pattern: re.Pattern[str]) -> str | None:
    if tx.type == "refund":
        return deduction_reference(tx, pattern)
    return tx.reference_number if tx.reference_number and pattern.match(tx.reference_number) else None


def _totals(transactions: Iterable[Transaction], pattern: re.Pattern[str]) -> tuple[dict[str, int], dict[str, int]]:
    awarded: dict[str, int] = defaultdict(int)
    taken: dict[str, int] = defaultdict(int)
    for tx in transactions:
        ref = _reference(tx, pattern) or tx.reference_number or ""
        if tx.type == "purchase":
            awarded[ref] += tx.points or 0
        elif tx.type == "refund":
            taken[ref] += abs(tx.points or 0)
    return awarded, taken


def reconcile(ctx: WorkerContext, store: StoreConfig, since: date, until: date | None = None) -> list[Difference]:
    """The differences for awards made from ``since`` to ``until`` (inclusive dates, UTC)."""
    until = until or datetime.now(UTC).date()
    client = ctx.client(store)
    pattern = reference_pattern(store.reference_format)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    listed = [tx for tx in client.iter_transactions(TransactionFilters(date_from=since, date_to=tomorrow))
              if belongs(tx, store, pattern)]
    awarded_there, taken_there = _totals(listed, pattern)

    start = datetime.combine(since, time.min, UTC).timestamp()
    end = datetime.combine(until + timedelta(days=1), time.min, UTC).timestamp()
    here = ctx.ledger.awarded_between(store.id, start, end)
    differences: list[Difference] = []
    for reference in here:
        record = ctx.ledger.get(store.id, reference)
        if record.award is None:
            continue
        if reference not in awarded_there:
            # Maybe just outside the date filter: ask for the order's award and its card's deductions.
            purchase = find_purchase(client, store, reference)
            if purchase is None:
                differences.append(Difference(kind="missing there", reference=reference,
                                              points_here=record.award.points,
                                              detail=f"transaction {record.award.transaction_id} not listed"))
                continue
            awarded_there[reference] = purchase.points or 0
            since_award = datetime.fromisoformat(record.award.at)
            taken_there[reference] = sum(abs(tx.points or 0) for tx in deductions_since(client, record.award, since_award)
                                         if deduction_reference(tx, pattern) == reference)
        if awarded_there[reference] != record.award.points:
            differences.append(Difference(kind="points differ", reference=reference, points_here=record.award.points,
                                          points_there=awarded_there[reference], detail="awarded"))
        if taken_there.get(reference, 0) != record.points_taken_back:
            differences.append(Difference(kind="points differ", reference=reference,
                                          points_here=record.points_taken_back,
                                          points_there=taken_there.get(reference, 0), detail="taken back"))
    known = set(here)
    for reference, points in awarded_there.items():
        if reference in known:
            continue
        record = ctx.ledger.get(store.id, reference)
        if record.award is None:
            differences.append(Difference(kind="unknown here", reference=reference, points_there=points,
                                          detail=record.failed.reason if record.failed else "no award in the ledger"))
    return differences


def fix(ctx: WorkerContext, store: StoreConfig, difference: Difference) -> str:
    """Enqueue what is missing; returns what was done (or why nothing could be)."""
    if difference.kind == "points differ":
        return "left for a person: the amounts disagree"
    order_id = ctx.events.order_id_for(store.id, difference.reference)
    jobs = order_jobs(ctx.events, store.id, order_id) if order_id else []
    paid = [job for job in jobs if job.meta.get("kind") == "paid"]
    if not paid:
        return "cannot fix: no kept payload for this order (older than the retention period, or not from this bridge)"
    if difference.kind == "missing there":
        ctx.ledger.forget_award(store.id, difference.reference,
                                reason="reconcile: the award was not found at Loyalty.lt")
    # "unknown here": the paid job runs again, gets a 409 and records the existing transaction.
    requeue(ctx.events, paid[0], ctx.retry_policy)
    return f"requeued {paid[0].id}"
