"""The money rules: points base per amount_basis, skip reasons, proportional refunds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import make_stores
from workers.ledger import AppliedRefund, Award, LedgerRecord
from workers.orders import Order, OrderLine, mask_email, normalize_email

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
           refunded: str = "0") -> LedgerRecord:
    award = Award(transaction_id=1, points=points, base=D(base), order_total=D(total), currency="EUR",
                  order_id="1", at="2026-11-22T10:00:00+00:00")
    applied = {rid: AppliedRefund(points=p, amount=D(refunded), at="x") for rid, p in (refunds or {}).items()}
    return LedgerRecord(store="s", reference="R", award=award, refunds=applied)


def test_refund_points_are_proportional_and_floored() -> None:
    assert record().points_for_refund(D("10.00")) == 100           # 450 * 10 / 45
    assert record(points=161, base="15.50").points_for_refund(D("5.00"), ) == 51   # 51.93 → 51


def test_refund_points_are_capped_at_what_remains() -> None:
    rec = record(refunds={"a": 400}, refunded="40.00")
    assert rec.points_remaining == 50
    assert rec.points_for_refund(D("9.00")) == 50                  # full refund: all that remains


def test_full_refund_and_cancellation_take_all_that_remains() -> None:
    assert record().points_for_refund(D("50.00")) == 450           # order total refunded
    assert record(refunds={"a": 7}, refunded="0.70").points_for_refund(D("0"), everything=True) == 443
    assert record(refunds={"a": 450}, refunded="50").points_for_refund(D("1"), everything=True) == 0


def test_no_award_no_points() -> None:
    assert LedgerRecord(store="s", reference="R").points_for_refund(D("10")) == 0
