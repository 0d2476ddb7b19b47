"""The live probe: each call the workers make, made once on purpose against a Loyalty.lt API, and
checked against what the bridge assumes.

It goes through the workers' own code, not a copy: a tiny order ``PROBE-<time>`` is awarded by
:func:`workers.award.award_order` (the paid job's function: ledger, in-flight mark, rate limiter),
taken back whole by :func:`workers.refunds.refund_order` (a full refund's job), and its deduction
looked for with :func:`workers.recovery.find_deduction` (crash recovery's matching). What it creates
says "loyalty-bridge probe" in its description and meta_data, and the card ends where it started.

A refused deduction (400/422) is tried once more with only the fields Loyalty.lt's own clients sent
(``card_id``, ``points``, ``description``). What it saw is kept for the API URL
(:mod:`workers.probe.observed`) once it got as far as a deduction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel

from config.stores import StoreConfig
from workers import award, recovery, refunds
from workers.context import WorkerContext, api_url
from workers.job_errors import JobFailed, Wait
from workers.ledger import Award, utcnow
from workers.loyalty import AlreadyDone, BalanceQuery, LoyaltyClient, LoyaltyError, ValidationError
from workers.loyalty.models import SDK_DEDUCT_FIELDS, DeductPointsRequest
from workers.orders import Order, OrderLine, Refund
from workers.outcome import Outcome
from workers.probe.observed import FILED_WORDS, ApiObservations, Filed, Observations

STAGING_API = "https://staging-api.loyalty.lt"
DEMO_EMAIL = "demo1@loyalty.lt"  # staging's first demo card, 900-001-001 (the "Staging Environment" page)
NOTE = "loyalty-bridge probe"
REFUND_ID = "1"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
FULL_BODY = ", ".join(DeductPointsRequest.model_fields)
SDK_BODY = ", ".join(SDK_DEDUCT_FIELDS)
Where = Literal["staging", "sandbox", "elsewhere"]
T = TypeVar("T")


def where(url: str) -> Where:
    """Whether ``url`` is Loyalty.lt's staging API, a sandbox on this machine, or anywhere else
    (where points are real)."""
    if url.rstrip("/") == STAGING_API:
        return "staging"
    return "sandbox" if urlsplit(url).hostname in LOOPBACK else "elsewhere"


def plan(store: StoreConfig, url: str, email: str, amount: Decimal) -> str:
    """What a probe creates and takes back: said before it runs where points are real."""
    return (f"The probe will create one order PROBE-<time> of {amount} EUR for {email} on {url} with "
            f"{store.id}'s key (description and meta_data \"{NOTE}\"), worth what the card's rules give, send it "
            f"again (refused if Loyalty.lt dedupes), then take back every point it gave with one deduction "
            f"(\"{NOTE}: Refund {REFUND_ID} of PROBE-<time>\"), leaving the card where it started.")


class Step(BaseModel):
    """One step: what the bridge assumes, what the API did, whether that matched, and what differs
    from what the bridge sends or assumes by default."""

    name: str
    assumed: str
    saw: str
    ok: bool
    differs: str | None = None


class ProbeReport(BaseModel):
    """Everything one probe did and saw."""

    store: str
    api_url: str
    where: Where
    email: str
    reference: str
    steps: list[Step] = []
    observed: ApiObservations | None = None  # what was kept for the workers (None: not far enough)
    left_on_card: int = 0  # probe points the card still holds (a take-back that failed, a second award)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)


class Stop(Exception):
    """A step failed in a way the later steps cannot go on from."""


class Probe:
    """One run of the probe for one store (see the module docstring); :meth:`run` returns the report."""

    def __init__(self, ctx: WorkerContext, store: StoreConfig, *, email: str = DEMO_EMAIL,
                 amount: Decimal = Decimal("1.00"), list_wait: float = 30.0, patience: float = 120.0,
                 on_step: Callable[[Step], None] = lambda step: None) -> None:
        self.ctx = ctx
        self.store = store.model_copy(update={"award_delay": timedelta(0)})  # the probe awards at once
        self.url = api_url(ctx.settings, store)
        self.email, self.amount = email, amount
        self.list_wait, self.patience, self.on_step = list_wait, patience, on_step
        self.reference = f"PROBE-{datetime.now(UTC):%Y%m%d%H%M%S%f}"[:-3]
        self.job_id = f"probe-{self.reference}"
        self.report = ProbeReport(store=store.id, api_url=self.url, where=where(self.url), email=email,
                                  reference=self.reference)
        self.observed = ApiObservations(api_url=self.url, at=utcnow(), store=store.id, passed=False)
        self.rate_headers: dict[str, str] = {}
        self.order = Order(store=store.id, platform=store.platform, reference=self.reference, order_id=self.reference,
                           email=email, currency="EUR", total=amount, shipping=Decimal(0), tax=Decimal(0),
                           lines=[OrderLine(name=NOTE, quantity=1, unit_price=amount, total=amount)], note=NOTE)
        self.awarded = self.extra = self.deducted = 0
        self.after_award: int | None = None
        self.deduct_from = datetime.now(UTC)
        self.learned = False  # got as far as an answer about a deduction: worth keeping

    @property
    def client(self) -> LoyaltyClient:
        return self.ctx.client(self.store)

    def run(self) -> ProbeReport:
        """Every step in turn (until one the rest cannot follow fails); keeps what it learned."""
        hooks = self.client.session.hooks["response"]
        hooks.append(self._read_rate_headers)
        try:
            for step in (self.credentials, self.award, self.award_again, self.award_listed, self.take_back,
                         self.deduction_listed, self.balance, self.rate_limit):
                step()
        except Stop:
            pass
        finally:
            hooks.remove(self._read_rate_headers)
            self.ctx.assumed.pop(self.url, None)
        if self.learned:
            self.observed.passed = self.report.passed
            Observations(self.ctx.connection).save(self.observed)
            self.report.observed = self.observed
        self.report.left_on_card = max(self.awarded + self.extra - self.deducted, 0)
        return self.report

    # --- the steps ---------------------------------------------------------------------------------

    def credentials(self) -> None:
        """POST validate-credentials answers that the key pair is valid."""
        assumed = "the store's key pair is valid here (POST validate-credentials)"
        try:
            info = self._patiently(self.client.validate_credentials)
        except (LoyaltyError, Wait) as exc:
            self._stop("credentials", assumed, str(exc))
        if not info.valid:
            self._stop("credentials", assumed, "answered that the key pair is not valid")
        partner = info.partner
        who = f"partner {partner.name!r} (id {partner.id})" if partner else "no partner named"
        self._step("credentials", assumed, f"valid: {who}, environment {info.environment or '?'}", True)

    def award(self) -> None:
        """The probe order, awarded by the paid job's own function; the card's balance right after."""
        assumed = (f"POST transactions/create awards a new order_id ({self.reference}, {self.amount} EUR, "
                   f"{self.email}) and answers with the card, as a paid order's job makes it")
        try:
            outcome = self._patiently(lambda: award.award_order(self.ctx, self.store, self.order, self.job_id))
        except (LoyaltyError, Wait, JobFailed) as exc:
            self._stop("award", assumed, str(exc))
        made = self._award()
        if outcome.outcome != "awarded" or made is None:
            self._stop("award", assumed, f"{outcome.outcome}: {outcome.reason or 'no award recorded'}")
        self.awarded = made.points
        if made.points <= 0:
            self._stop("award", assumed, f"awarded 0 points for {self.amount} EUR (the card's rules): nothing to take "
                                         "back, so nothing more to learn; run it again with a larger --amount")
        card = made.loyalty_card_id
        if card is not None:
            self.after_award = self._balance_of(card)
        holds = f"; the card holds {self.after_award}" if self.after_award is not None else ""
        number = f" {made.card_number}" if made.card_number else ""
        self._step("award", assumed, f"awarded {made.points} points (transaction {made.transaction_id}, card "
                                     f"{card}{number}){holds}", True)

    def award_again(self) -> None:
        """The same create call again: Loyalty.lt must refuse it with 409."""
        assumed = "the same order_id sent again is refused: 409 RESOURCE_ALREADY_EXISTS (awards are deduplicated)"
        request = award.create_request(self.order, self.store)
        try:
            result = self._patiently(lambda: self.client.create_transaction(request))
        except AlreadyDone as exc:
            self._step("award again", assumed, f"{exc.status} {exc.code}: {exc.message}", True)
            return
        except (LoyaltyError, Wait) as exc:
            self._step("award again", assumed, str(exc), False)
            return
        self.extra = result.points_awarded or 0
        self._step("award again", assumed, f"awarded AGAIN: transaction {result.transaction_id}, {self.extra} more "
                                           "points (only the first award is taken back)", False,
                   "Loyalty.lt does not refuse a second award of one order_id")

    def award_listed(self) -> None:
        """The award in the list under its reference, looked for as a 409 does (looking again on a slow list)."""
        assumed = (f"the award is listed under its order reference (GET transactions?reference_number="
                   f"{self.reference}), where a 409 and crash recovery look for it")
        made = self._award()
        try:
            tx, waited = self._poll(lambda: recovery.find_purchase(self.client, self.store, self.reference))
        except (LoyaltyError, Wait) as exc:
            self._step("award listed", assumed, str(exc), False)
            return
        if tx is None:
            self._step("award listed", assumed, f"not listed after {waited:.1f} s", False)
            return
        self.observed.list_lag = round(waited, 1)
        same = made is None or made.transaction_id in (None, tx.id)
        lag = f"on a look {waited:.1f} s later" if waited else "at once"
        self._step("award listed", assumed, f"transaction {tx.id}, {tx.points} points, listed {lag}"
                   + ("" if same else f" (the award answered transaction {made.transaction_id if made else '?'})"),
                   same, f"the list shows a change only {waited:.1f} s after it" if waited else None)

    def take_back(self) -> None:
        """Every point back, by a full refund's own function; once more with the SDKs' body if refused."""
        assumed = f"POST transactions/deduct-points takes the full body ({FULL_BODY}), as a full refund's job sends it"
        refund = Refund(store=self.store.id, platform=self.store.platform, order_id=self.reference,
                        reference=self.reference, refund_id=REFUND_ID, amount=self.amount, currency="EUR",
                        reason=NOTE, note=NOTE)
        self.deduct_from = datetime.now(UTC)
        differs = None
        try:
            outcome = self._refund(refund)
        except ValidationError as refused:
            self.learned = True
            fields = sorted(name for name in refused.errors if name)
            objected = ", ".join(fields) if fields else f"no field named: {refused.message}"
            # Once more with only what Loyalty.lt's own clients sent: this process alone assumes it meanwhile.
            self.ctx.assumed[self.url] = self.observed.model_copy(update={"deduct_body": "sdk"})
            try:
                outcome = self._refund(refund)
            except (LoyaltyError, Wait, JobFailed) as again:
                self._stop("take back", assumed, f"refused the full body ({refused}); refused the SDKs' body "
                                                 f"({SDK_BODY}) too: {again}. The card keeps the probe's points: take "
                                                 "them back in the Partners Portal")
            self.observed.deduct_body, self.observed.refused_fields = "sdk", fields
            differs = (f"deduct-points refuses the full body (it objected to {objected}) and takes {SDK_BODY}: "
                       "the workers send that body from now on")
            outcome = outcome.model_copy(update={"reason": f"refused the full body ({refused.status}: {objected}); "
                                                           f"took the SDKs' body ({SDK_BODY})"})
        except (LoyaltyError, Wait, JobFailed) as exc:
            self._stop("take back", assumed, f"{exc}. The card keeps the probe's points: take them back in the "
                                             "Partners Portal")
        self.learned = True
        self.deducted = (outcome.points or 0) if outcome.outcome == "deducted" else 0
        ok = outcome.outcome == "deducted" and self.deducted == self.awarded
        said = f"{outcome.reason}: " if outcome.reason else ""
        self._step("take back", assumed, f"{said}{outcome.outcome} {outcome.points} of {self.awarded} points "
                                         f"(transaction {outcome.transaction_id})", ok, differs)
        if not ok:
            raise Stop

    def deduction_listed(self) -> None:
        """The deduction in the list, looked for as crash recovery does: where it is filed, what names it."""
        assumed = ("crash recovery finds the deduction in the list (its own matching: under the order's reference, "
                   "else among the card's deductions; named by metadata, description or reference)")
        made = self._award()
        record = self.ctx.ledger.get(self.store.id, self.reference)
        applied = record.refunds.get(REFUND_ID)
        if made is None or applied is None:
            self._stop("deduction listed", assumed, "the ledger holds no award or deduction of the probe order")

        def look() -> recovery.FoundDeduction | None:
            found = recovery.find_deduction(self.client, self.store, made, self.reference, REFUND_ID, self.deduct_from,
                                            "order reference")
            return found if found.tx is not None else None

        try:
            found, waited = self._poll(look)
        except (LoyaltyError, Wait) as exc:
            self._step("deduction listed", assumed, str(exc), False)
            return
        if found is None or found.tx is None:
            self._step("deduction listed", assumed, f"not found after {waited:.1f} s: crash recovery would not find it "
                                                    "either, and would have to ask a person", False,
                       "deductions are not listed in any way the bridge can find")
            return
        tx = found.tx
        filed: Filed = ("order reference" if tx.reference_number == self.reference
                        else "own reference" if tx.reference_number else "no reference")
        named = recovery.deduction_names(tx, self.store, self.reference, REFUND_ID)
        self.observed.deduction_filed, self.observed.deduction_named_by = filed, named
        where_ = {"order reference": f"the order reference {self.reference}",
                  "own reference": f"its own reference {tx.reference_number}", "no reference": "no reference"}[filed]
        how = "by the order reference" if found.listing == "order reference" else "among the card's deductions"
        same = applied.transaction_id in (None, tx.id)
        self._step("deduction listed", assumed,
                   f"transaction {tx.id}, {tx.points} points, listed under {where_}, named by {', '.join(named)}; "
                   f"found {how}" + (f" after {waited:.1f} s" if waited else "")
                   + ("" if same else f" (the deduction answered transaction {applied.transaction_id})"),
                   same, None if filed == "order reference" and "metadata" in named else
                   f"deductions are listed under {FILED_WORDS[filed]}, named by {' and '.join(named)}: crash recovery "
                   "looks for them there")

    def balance(self) -> None:
        """The card's balance moved by what was awarded minus what was taken back."""
        assumed = ("the card's balance (GET loyalty-cards/balance?card_id=) moved by exactly what was awarded minus "
                   "what was taken back")
        made = self._award()
        card = made.loyalty_card_id if made else None
        if card is None or self.after_award is None:
            self._step("balance", assumed, "cannot tell: the card or its balance after the award is unknown", False)
            return
        try:
            now = self._balance_of(card, strict=True)
        except (LoyaltyError, Wait) as exc:
            self._step("balance", assumed, str(exc), False)
            return
        assert now is not None
        start = self.after_award - self.awarded
        moved, expected = now - start, self.awarded + self.extra - self.deducted
        where_ = "back where it started" if now == start else f"{moved:+d} from where it started"
        self._step("balance", assumed, f"{now} points: {start} before the probe, {self.after_award} after the award, "
                                       f"{now} after taking back {self.deducted}: {where_}", moved == expected)

    def rate_limit(self) -> None:
        """The X-RateLimit-* headers of the last answer, against the store's rate_limit_per_minute."""
        per_minute = self.store.rate_limit_per_minute
        assumed = (f"answers carry X-RateLimit-Limit/Remaining/Reset, and the limit is at least the store's "
                   f"rate_limit_per_minute ({per_minute})")
        limit_text = self.rate_headers.get("X-RateLimit-Limit")
        if limit_text is None or not limit_text.isdigit():
            self._step("rate limit", assumed, "no X-RateLimit-Limit on the answers", False)
            return
        limit = int(limit_text)
        self.observed.rate_limit = limit
        saw = ", ".join(f"{name.removeprefix('X-RateLimit-').lower()} {self.rate_headers.get(name, '?')}"
                        for name in RATE_HEADERS)
        differs = None
        if limit != per_minute:
            differs = (f"Loyalty.lt allows {limit} requests a minute; the store counts {per_minute}"
                       + (": set rate_limit_per_minute to it" if limit < per_minute else " (on the safe side)"))
        self._step("rate limit", assumed, saw, limit >= per_minute, differs)

    # --- plumbing ----------------------------------------------------------------------------------

    def _step(self, name: str, assumed: str, saw: str, ok: bool, differs: str | None = None) -> None:
        step = Step(name=name, assumed=assumed, saw=saw, ok=ok, differs=differs)
        self.report.steps.append(step)
        self.on_step(step)

    def _stop(self, name: str, assumed: str, saw: str) -> NoReturn:
        self._step(name, assumed, saw, False)
        raise Stop

    def _award(self) -> Award | None:
        return self.ctx.ledger.get(self.store.id, self.reference).award

    def _refund(self, refund: Refund) -> Outcome:
        return self._patiently(lambda: refunds.refund_order(self.ctx, self.store, refund, self.job_id))

    def _balance_of(self, card: int, strict: bool = False) -> int | None:
        try:
            return self._patiently(lambda: self.client.card_balance(BalanceQuery(card_id=card))).points
        except (LoyaltyError, Wait):
            if strict:
                raise
            return None

    def _read_rate_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if "X-RateLimit-Limit" in response.headers:
            self.rate_headers = {name: response.headers[name] for name in RATE_HEADERS if name in response.headers}

    def _patiently(self, action: Callable[[], T]) -> T:
        """``action()``, again after each :class:`Wait` (a rate-limit slot, a busy order), as a job
        would come back, for up to ``patience`` seconds."""
        deadline = time.monotonic() + self.patience
        while True:
            try:
                return action()
            except Wait as wait:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(wait.delay or 1.0, left))

    def _poll(self, look: Callable[[], T | None]) -> tuple[T | None, float]:
        """What ``look()`` finds, looking again (0.25 s, then twice as long each time) for up to
        ``list_wait`` seconds; and how long it took."""
        started, pause, first = time.monotonic(), 0.25, True
        while True:
            found = self._patiently(look)
            waited = time.monotonic() - started
            if found is not None:
                return found, 0.0 if first else waited
            if waited >= self.list_wait:
                return None, waited
            first = False
            time.sleep(min(pause, max(self.list_wait - waited, 0.0)))
            pause *= 2
