"""The money rules: points base per amount_basis, skip reasons, and what a refund takes back."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import make_stores
from workers.job_errors import JobFailed
from workers.ledger import AppliedRefund, Award, LedgerRecord
from workers.orders import Order, OrderLine, Refund, RefundItems, mask_email, normalize_email
from workers.refund_points import take_back

D = Decimal


def order(**kw: object) -> Order:
    fields: dict[str, object] = dict(
        store="coffee-woo", platform="woocommerce", reference="WC-1", order_id="1", email="a@example.com",
        currency="EUR", total=D("121.00"), shipping=D("10.00"), shipping_tax=D("2.10"), tax=D("21.00"),
        lines=[OrderLine(name="beans", quantity=2, unit_price=D("37.49"), total=D("74.98")),
               OrderLine(name="gift card", quantity=1, unit_price=D("20.00"), total=D("20.00"), gift_card=True)],
    )
    fields.update(kw)
    return Order(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("basis", "base"), [
    ("total", D("101.00")),                          # 121 - 20 gift card
    ("total_excl_shipping", D("88.90")),             # - 10 shipping - 2.10 shipping tax
    ("total_excl_shipping_and_tax", D("70.00")),     # - the rest of the tax (18.90)
])
def test_points_base_follows_amount_basis(basis: str, base: Decimal) -> None:
    store = make_stores(**{"coffee-woo": {"amount_basis": basis}})["coffee-woo"]
    assert order().points_base(store) == base


def test_skip_reasons() -> None:
    store = make_stores()["coffee-woo"]
    assert order().skip_reason(store) is None
    assert "guest" in (order(email=None).skip_reason(store) or "")
    assert "test order" in (order(test=True).skip_reason(store) or "")
    only_gift = order(total=D("20.00"), shipping=D("0"), shipping_tax=D("0"), tax=D("0"))
    assert "nothing earns points" in (only_gift.skip_reason(store) or "")
    # Points spent on a free order still go to Loyalty.lt.
    assert order(total=D("20.00"), points_redeemed=500, points_discount=D("5")).skip_reason(store) is None
    allow = make_stores(**{"coffee-woo": {"allow_test_orders": True}})["coffee-woo"]
    assert order(test=True).skip_reason(allow) is None


def test_email_normalization_and_masking() -> None:
    assert normalize_email("  Jonas.Jonaitis@Example.COM ") == "jonas.jonaitis@example.com"
    assert normalize_email("") is None
    assert normalize_email(None) is None
    assert normalize_email("not an email") is None
    assert mask_email("jonas@example.com") == "j***@example.com"
    assert mask_email(None) == "-"


def record(points: int = 450, base: str = "45.00", total: str = "50.00", refunds: dict[str, int] | None = None,
           refunded: str = "0", **award: object) -> LedgerRecord:
    fields: dict[str, object] = dict(transaction_id=1, points=points, base=D(base), order_total=D(total),
                                     currency="EUR", order_id="1", at="2026-11-22T10:00:00+00:00")
    fields.update(award)
    applied = {rid: AppliedRefund(points=p, amount=D(refunded), at="x") for rid, p in (refunds or {}).items()}
    return LedgerRecord(store="s", reference="R", award=Award(**fields), refunds=applied)  # type: ignore[arg-type]


def refund(amount: str, currency: str | None = "EUR", items: RefundItems | None = None) -> Refund:
    return Refund(store="s", platform="shopify", order_id="1", reference="R", refund_id="9", amount=D(amount),
                  currency=currency, items=items)


STORE = make_stores()["coffee-woo"]
EXCL_TAX = make_stores(**{"coffee-woo": {"amount_basis": "total_excl_shipping_and_tax"}})["coffee-woo"]
EXCL_SHIPPING = make_stores(**{"coffee-woo": {"amount_basis": "total_excl_shipping"}})["coffee-woo"]


def test_refund_points_are_the_share_paid_back_and_floored() -> None:
    assert take_back(record(), refund("10.00"), STORE).points == 90              # 450 * 10 / 50 paid
    assert take_back(record(points=161, base="15.50", total="15.50"), refund("5.00"), STORE).points == 51


def test_the_share_is_of_what_was_paid_not_of_the_points_base() -> None:
    """Base 100 excluding tax, 121 paid, half of it refunded: half the points, not 60 of 100."""
    taken = take_back(record(points=100, base="100.00", total="121.00"), refund("60.50"), EXCL_TAX)
    assert (taken.points, taken.share) == (50, D("0.5"))


def test_refunded_items_that_never_earned_take_back_nothing() -> None:
    # A 50.00 gift card line refunded from a 150.00 order whose 100.00 of goods earned 100 points.
    gift = refund("50.00", items=RefundItems(gift_cards=D("50.00")))
    assert take_back(record(points=100, base="100.00", total="150.00"), gift, STORE).points == 0
    # Shipping only (20.00) on a store that leaves shipping out of the points base.
    shipping = refund("20.00", items=RefundItems(shipping=D("16.53"), shipping_tax=D("3.47")))
    assert take_back(record(points=100, base="100.00", total="120.00"), shipping, EXCL_SHIPPING).points == 0
    # Goods with their tax, on a store that leaves tax out: the net part of the goods.
    goods = refund("60.50", items=RefundItems(goods=D("50.00"), goods_tax=D("10.50"), tax_included=False))
    assert take_back(record(points=100, base="100.00", total="121.00"), goods, EXCL_TAX).points == 50


def test_itemized_refunds_scale_to_the_money_really_paid_back() -> None:
    # Items worth 13.50 (tax inside), 12.00 paid back (1.50 kept): 12.00 of 49.50 earned 495 × 12 / 49.5.
    items = RefundItems(goods=D("13.50"), goods_tax=D("2.34"))
    assert take_back(record(points=495, base="49.50", total="49.50"), refund("12.00", items=items), STORE).points == 120


def test_refunds_in_the_customers_currency_compare_with_what_they_paid() -> None:
    usd = record(points=100, base="100.00", total="100.00", presentment_total=D("110.00"), presentment_currency="USD")
    taken = take_back(usd, refund("55.00", "USD"), STORE)
    assert (taken.points, taken.currency) == (50, "USD")
    assert take_back(usd, refund("50.00", "EUR"), STORE).points == 50
    with pytest.raises(JobFailed, match="is in GBP, but the order was paid in EUR \\(the customer paid in USD\\)"):
        take_back(usd, refund("5.00", "GBP"), STORE)
    with pytest.raises(JobFailed, match="does not say its currency"):
        take_back(usd, refund("5.00", None), STORE)
    assert take_back(record(), refund("10.00", None), STORE).points == 90      # one currency: the shop's


def test_refund_points_are_capped_at_what_remains() -> None:
    rec = record(refunds={"a": 400}, refunded="40.00")
    assert rec.points_remaining == 50
    assert take_back(rec, refund("9.00"), STORE).points == 50          # 49 of 50 paid back: up to what remains
    assert take_back(rec, refund("10.00"), STORE).points == 50         # all of it paid back: all that remains


def test_a_full_refund_takes_all_that_remains() -> None:
    assert take_back(record(), refund("50.00"), STORE).points == 450
    assert take_back(record(refunds={"a": 7}, refunded="0.70"), refund("49.30"), STORE).points == 443
