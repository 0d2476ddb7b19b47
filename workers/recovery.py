"""Calls whose outcome nobody recorded: did they land at Loyalty.lt?

A job marks each call in flight in the ledger just before it leaves (:mod:`workers.ledger`). When
the answer is lost (a timeout, a 5xx, a worker killed mid-call), the mark stays, and nothing more is
decided for the order until someone has looked: a retry of the same job, or any other job of the
order (what a cancellation takes back depends on what the refunds before it took). Looking means
reading Loyalty.lt's transaction list:

- listed: the call landed; it is recorded as its caller would have recorded it (the mark says
  what the call was about);
- not listed while the call may still land (younger than ``unknown_call_settle``: the server may
  still be working on it, or not list it yet): wait and look again, and never call again meanwhile,
  because Loyalty.lt does not deduplicate deductions;
- not listed after that: it did not land; the mark goes and the operation may be made again;
- a deduction of the same points on the same card that names no refund at all (made by hand at the
  till, or filed in a way the bridge cannot read): it cannot be told apart from ours, so the job
  stops in the failed registry for a person rather than risk taking the points twice.

A deduction is found however Loyalty.lt lists it: by type ``refund``, on the customer's card (or
user), from the day the call was made, matching the refund's marker in the description, the
bridge's metadata, or the reference number; first under the order's reference when ``bridge check
--live`` saw the store's API file deductions there (:mod:`workers.probe.observed`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from config.stores import StoreConfig
from workers.context import WorkerContext
from workers.job_errors import JobFailed, Wait
from workers.ledger import AWARD, CANCEL, REFUND_PREFIX, AppliedRefund, Award, InFlight, LedgerRecord, utcnow
from workers.loyalty import LoyaltyClient, Transaction, TransactionFilters
from workers.probe.observed import Filed

# A deduction listed a little before the mark's time is still a candidate (clocks differ).
CLOCK_SLACK = timedelta(minutes=2)
# Descriptions the bridge writes: "Refund <id> of <reference>" and "Cancellation of <reference>".
_BRIDGE_DESCRIPTION = re.compile(r"(?<![\w-])(?:Refund \S+|Cancellation) of \S")
_MARKED_REFERENCE = re.compile(r"(?<![\w-])(?:Refund \S+|Cancellation) of (?P<reference>.+?)\s*$")


def refund_op(refund_id: str) -> str:
    """The ledger's in-flight op of a refund (or of the cancellation, ``refund:cancel``)."""
    return REFUND_PREFIX + refund_id


def deduction_marker(reference: str, refund_id: str) -> str:
    """The description of a deduction: what the customer reads, and how the bridge finds it again."""
    return f"Cancellation of {reference}" if refund_id == CANCEL else f"Refund {refund_id} of {reference}"


def _contains(text: str | None, marker: str) -> bool:
    # Bounded so that "Refund 7 of WC-42" is not found inside "Refund 7 of WC-4210".
    return bool(text) and re.search(rf"(?<![\w-]){re.escape(marker)}(?![\w-])", text or "") is not None


def deduction_names(tx: Transaction, store: StoreConfig, reference: str, refund_id: str) -> list[str]:
    """What in a listed transaction names this refund's deduction: "metadata" (the bridge's, kept),
    "description" or "reference" (the refund's marker in it); empty when it is not this deduction."""
    meta = tx.metadata or {}
    named = []
    if meta.get("refund_id") is not None and meta.get("store") in (None, store.id):
        ref = meta.get("reference") or tx.reference_number
        if str(meta["refund_id"]) == refund_id and ref == reference:
            named.append("metadata")
    marker = deduction_marker(reference, refund_id)
    if _contains(tx.description, marker):
        named.append("description")
    if _contains(tx.reference_number, marker):
        named.append("reference")
    return named


def names_deduction(tx: Transaction, store: StoreConfig, reference: str, refund_id: str) -> bool:
    """Whether a listed transaction is this refund's deduction, by whatever it carries."""
    return bool(deduction_names(tx, store, reference, refund_id))


def deduction_reference(tx: Transaction, pattern: re.Pattern[str]) -> str | None:
    """The order reference a listed deduction was made for, by whatever it carries (``pattern``
    matches the store's references)."""
    meta = tx.metadata or {}
    if meta.get("reference"):
        return str(meta["reference"])
    if meta.get("refund_id") is not None and tx.reference_number:
        return tx.reference_number
    for text in (tx.description, tx.reference_number):
        found = _MARKED_REFERENCE.search(text or "")
        if found and pattern.match(found.group("reference")):
            return found.group("reference")
    if tx.reference_number and pattern.match(tx.reference_number):
        return tx.reference_number
    return None


def bridge_made(tx: Transaction) -> bool:
    """Whether a deduction says it was made by the bridge (for any order)."""
    return (tx.metadata or {}).get("refund_id") is not None or bool(_BRIDGE_DESCRIPTION.search(tx.description or ""))


def find_purchase(client: LoyaltyClient, store: StoreConfig, reference: str) -> Transaction | None:
    """The award of an order, as Loyalty.lt lists it (this store's, when its metadata says)."""
    for tx in client.find_transactions(reference_number=reference, type="purchase"):
        if (tx.metadata or {}).get("store") in (None, store.id):
            return tx
    return None


def deductions_since(client: LoyaltyClient, award: Award, since: datetime) -> list[Transaction]:
    """The deductions on the customer's card (or of the user) listed from ``since``'s day on."""
    today = datetime.now(UTC)
    filters = TransactionFilters(type="refund", date_from=(since - timedelta(days=1)).date(),
                                 date_to=(today + timedelta(days=1)).date())
    if award.loyalty_card_id is not None:
        filters = filters.model_copy(update={"loyalty_card_id": award.loyalty_card_id})
    elif award.user_id is not None:
        filters = filters.model_copy(update={"user_id": award.user_id})
    found = []
    for tx in client.iter_transactions(filters):
        # Checked again here: a server ignoring a filter must not make a false match.
        if tx.type not in (None, "refund"):
            continue
        if award.loyalty_card_id is not None and tx.loyalty_card is not None and tx.loyalty_card.id is not None \
                and tx.loyalty_card.id != award.loyalty_card_id:
            continue
        found.append(tx)
    return found


@dataclass(frozen=True)
class FoundDeduction:
    """A refund's deduction as the list showed it (``tx`` None: not listed), where it was found
    ("order reference" or "card"), and the card's deductions read (for look-alikes)."""

    tx: Transaction | None
    listing: str
    listed: list[Transaction]


def find_deduction(client: LoyaltyClient, store: StoreConfig, award: Award, reference: str, refund_id: str,
                   since: datetime, filed: Filed | None = None) -> FoundDeduction:
    """A refund's deduction in Loyalty.lt's list. Where ``bridge check --live`` saw deductions filed
    under the order's reference (``filed``), that exact query comes first; then, however they are
    filed, the card's deductions from ``since``'s day on."""
    if filed == "order reference":
        for tx in client.find_transactions(reference_number=reference, type="refund"):
            if names_deduction(tx, store, reference, refund_id):
                return FoundDeduction(tx, "order reference", [])
    listed = deductions_since(client, award, since)
    ours = next((tx for tx in listed if names_deduction(tx, store, reference, refund_id)), None)
    return FoundDeduction(ours, "card", listed)


def with_card(ctx: WorkerContext, store: StoreConfig, reference: str, award: Award) -> Award:
    """The award with its Loyalty.lt card (read from the transaction list when the ledger lacks it)."""
    if award.loyalty_card_id is not None:
        return award
    tx = find_purchase(ctx.client(store), store, reference)
    if tx is None or tx.loyalty_card is None or tx.loyalty_card.id is None:
        return award
    award = award.model_copy(update={"loyalty_card_id": tx.loyalty_card.id, "card_number": tx.loyalty_card.number,
                                     "user_id": award.user_id or (tx.user.id if tx.user else None)})
    ctx.ledger.update_award(store.id, reference, award)
    return award


def _when(mark: InFlight) -> datetime:
    return datetime.fromisoformat(mark.at)


def _still_landing(ctx: WorkerContext, mark: InFlight, what: str) -> None:
    """Raise :class:`Wait` while a call with no answer may still land; return once it cannot."""
    elapsed = (datetime.now(UTC) - _when(mark)).total_seconds()
    settle = ctx.settings.unknown_call_settle
    if elapsed >= settle:
        return
    remaining = settle - elapsed
    # Look again after as long as it has been already: soon for a server that lists a few seconds
    # late, seldom (a list call costs a rate-limit slot) for one that never lists it.
    delay = min(remaining, max(ctx.settings.wait_delay, elapsed))
    raise Wait(f"{what} made at {mark.at} had no answer and is not listed at Loyalty.lt yet: looking again "
               f"(it cannot land after {settle:g}s)", delay + 0.05)


def _award_from(tx: Transaction, draft: Award, source: str) -> Award:
    return draft.model_copy(update={
        "transaction_id": tx.id, "points": tx.points or 0, "at": utcnow(), "source": source,
        "user_id": tx.user.id if tx.user else draft.user_id,
        "loyalty_card_id": tx.loyalty_card.id if tx.loyalty_card else draft.loyalty_card_id,
        "card_number": tx.loyalty_card.number if tx.loyalty_card else draft.card_number,
    })


def resolve_award(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, mark: InFlight,
                  draft: Award | None = None) -> Award | None:
    """The award an unanswered create call made, recorded (with the pending refunds it was made
    without); None when it did not land (the mark is gone then). Raises :class:`Wait` while it may
    still land."""
    reference = record.reference
    tx = find_purchase(ctx.client(store), store, reference)
    draft = mark.award or draft
    if tx is not None:
        if draft is None:  # a mark from before marks said what they were about: the paid job knows
            raise Wait(f"the award of {reference} landed; its own job records it")
        award = _award_from(tx, draft, "recovered")
        ctx.ledger.record_award(store.id, reference, award, record.absorbed(mark.absorbs))
        return award
    _still_landing(ctx, mark, f"the award of {reference}")
    ctx.ledger.clear_in_flight(store.id, reference, AWARD, mark.token)
    return None


def resolve_deduction(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, refund_id: str,
                      mark: InFlight) -> AppliedRefund | None:
    """The deduction an unanswered call made, recorded; None when it did not land (the mark is gone
    then). Raises :class:`Wait` while it may still land, :class:`JobFailed` when it cannot be told."""
    assert record.award is not None
    reference = record.reference
    award = with_card(ctx, store, reference, record.award)
    observed = ctx.observed(store)
    found = find_deduction(ctx.client(store), store, award, reference, refund_id, _when(mark),
                           observed.deduction_filed if observed is not None else None)
    ours, listed = found.tx, found.listed
    draft = mark.deduction
    if ours is not None:
        points = abs(ours.points) if ours.points else (draft.points if draft else 0)
        base = draft or _from_listing(ours, refund_id, points)
        applied = base.model_copy(update={"points": points, "at": utcnow(), "transaction_id": ours.id,
                                          "source": "recovered"})
        ctx.ledger.record_refund(store.id, reference, refund_id, applied)
        return applied
    what = "the cancellation" if refund_id == CANCEL else f"the deduction for refund {refund_id}"
    if draft is not None:
        lookalikes = _lookalikes(listed, draft.points, _when(mark))
        if lookalikes:
            raise JobFailed(
                f"cannot tell whether {what} of {reference} ({draft.points} points, sent {mark.at}, answer lost) "
                f"landed: Loyalty.lt lists deduction(s) {', '.join(str(t.id) for t in lookalikes)} of the same "
                f"points on the card that name no refund. Check them in Loyalty.lt; if one is this refund, "
                f"record it with `bridge resolve {reference} --store {store.id} --refund {refund_id} --landed <id>`, "
                f"else `--not-landed`, then replay")
    _still_landing(ctx, mark, f"{what} of {reference}")
    ctx.ledger.clear_in_flight(store.id, reference, refund_op(refund_id), mark.token)
    return None


def _from_listing(tx: Transaction, refund_id: str, points: int) -> AppliedRefund:
    """A deduction as recorded from the list alone (a mark from before marks said what they were about)."""
    meta = tx.metadata or {}
    try:
        amount = Decimal(str(meta.get("refund_amount", tx.amount or 0)))
    except ArithmeticError:
        amount = Decimal(0)
    return AppliedRefund(points=points, amount=amount, at=utcnow(), kind=CANCEL if refund_id == CANCEL else "refund")


def _lookalikes(listed: Iterable[Transaction], points: int, since: datetime) -> list[Transaction]:
    """Deductions of ``points`` listed from ``since`` on that name no refund the bridge made."""
    found = []
    for tx in listed:
        if bridge_made(tx) or abs(tx.points or 0) != points:
            continue
        try:
            at = datetime.fromisoformat(tx.created_at or tx.transaction_date or "")
        except ValueError:
            at = None  # no readable time: it may be ours
        if at is None or at.astimezone(UTC) >= since - CLOCK_SLACK:
            found.append(tx)
    return found


def settle(ctx: WorkerContext, store: StoreConfig, record: LedgerRecord, draft: Award | None = None) -> LedgerRecord:
    """Resolve every unanswered call of the order (its award first, then its deductions) before the
    caller decides anything; returns the record as it then stands."""
    if not record.inflight:
        return record
    if AWARD in record.inflight and record.award is None:
        resolve_award(ctx, store, record, record.inflight[AWARD], draft)
        record = ctx.ledger.get(store.id, record.reference)
    for op, mark in sorted(record.inflight.items()):
        if op.startswith(REFUND_PREFIX) and record.award is not None:
            resolve_deduction(ctx, store, record, op.removeprefix(REFUND_PREFIX), mark)
    return ctx.ledger.get(store.id, record.reference)
