"""How many points a refund takes back: the share of the award that the money paid back had earned.

The award was computed on the order's points base (what earned points: no gift cards, and no
shipping or tax where the store's ``amount_basis`` leaves them out), while a refund is money paid
back (tax, shipping and gift cards included). So a refund takes back

    points × (the part of the refund that had earned points) / points base

where that part is, when the refund says what it was for (its items), the items that had earned
points, scaled to the money really paid back; and when it does not, the refund's share of what
the order cost (``refund / order total``) of the points base. A refund in the customer's
(presentment) currency is compared with what the order cost in that currency. Rounded down, capped
at what remains; a refund that brings the money paid back to the whole order takes all that remains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from config.stores import StoreConfig
from workers.job_errors import JobFailed
from workers.ledger import Award, LedgerRecord
from workers.orders import Refund

# Shares are exact quotients of cents; this only absorbs the last digit of their decimal expansion.
WHOLE = Decimal("0.999999999")


@dataclass(frozen=True)
class TakeBack:
    """What one refund takes back, and the share of the order it paid back."""

    points: int
    share: Decimal
    currency: str


def order_total_in(award: Award, currency: str | None, refund_id: str,
                   reference: str) -> tuple[str, Decimal, Fraction]:
    """(currency, what the order cost in it, the rate to the shop's currency) for a refund in
    ``currency``; raises :class:`JobFailed` when the refund's currency is neither of the order's."""
    shop, customer = award.currency, award.presentment_currency
    if currency is None:
        if customer in (None, shop):
            return shop, award.order_total, Fraction(1)
        raise JobFailed(f"refund {refund_id} of {reference} does not say its currency, and the order was paid "
                        f"in {customer} (the shop's currency is {shop}): cannot tell how much it gave back")
    if currency == shop:
        return shop, award.order_total, Fraction(1)
    if currency == customer and award.presentment_total:
        return customer, award.presentment_total, Fraction(award.order_total) / Fraction(award.presentment_total)
    paid = f"{shop}" + (f" (the customer paid in {customer})" if customer and customer != shop else "")
    raise JobFailed(f"refund {refund_id} of {reference} is in {currency}, but the order was paid in {paid}")


@dataclass(frozen=True)
class Share:
    """What one refund is of its order: of the money paid (``paid``), and of the points base
    (``earning``: the part of the points it takes back), both exact."""

    currency: str
    paid: Fraction
    earning: Fraction


def share_of(award: Award, refund: Refund, store: StoreConfig, reference: str) -> Share:
    """The shares of the order ``refund`` paid back; ``award`` says what the order cost and earned."""
    currency, total, to_shop = order_total_in(award, refund.currency, refund.refund_id, reference)
    paid = Fraction(refund.amount) / Fraction(total) if total > 0 else Fraction(1 if refund.amount > 0 else 0)
    items = refund.items
    itemized = Fraction(items.total(award.taxes_included)) if items is not None else Fraction(0)
    if items is not None and itemized > 0 and award.base > 0:
        # The money paid back, split as its items were; the earning part, in the shop's currency.
        earning = Fraction(refund.amount) * Fraction(items.earning(store, award.taxes_included)) / itemized
        return Share(currency, paid, earning * to_shop / Fraction(award.base))
    return Share(currency, paid, paid)


def take_back(record: LedgerRecord, refund: Refund, store: StoreConfig) -> TakeBack:
    """The points ``refund`` takes back from the order's award (which must exist)."""
    award = record.award
    assert award is not None
    remaining = max(record.points_remaining, 0)
    share = share_of(award, refund, store, record.reference)
    paid = Decimal(share.paid.numerator) / Decimal(share.paid.denominator)
    if record.share_refunded + paid >= WHOLE or award.base <= 0:
        return TakeBack(remaining, paid, share.currency)
    # Exact fractions: a refund of exactly half must take exactly half, not 49.999… rounded down.
    points = math.floor(award.points * share.earning)
    return TakeBack(max(min(points, remaining), 0), paid, share.currency)
