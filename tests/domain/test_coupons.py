from __future__ import annotations

import copy
import re

import pytest

from sim.domain.carts import PricedLine
from sim.domain.coupons import FIXED, PERCENT, Coupon
from sim.domain.errors import (
    AlreadyExists,
    CouponCustomerLimitReached,
    CouponExpired,
    CouponMinimumNotMet,
    CouponNotApplicable,
    CouponNotStackable,
    CouponNotYetValid,
    CouponRejected,
    CouponUsageLimitReached,
    CurrencyMismatch,
    InvalidValue,
    NotFound,
)
from sim.domain.events import CouponRedeemed
from sim.domain.money import Money

BOOKS = PricedLine("BOOK-1", "books", Money(1999), 2)  # 39.98
TOYS = PricedLine("TOY-1", "toys", Money(1050), 1)  # 10.50
LINES = [BOOKS, TOYS]  # 50.48


# --- definition ---------------------------------------------------------------------------
def test_create_percent_and_fixed():
    pct = Coupon.create("TEN", PERCENT, 1000)
    assert (pct.kind, pct.percent_bp, pct.amount, pct.min_purchase) == (
        "percent",
        1000,
        Money(0),
        Money(0),
    )
    assert pct.currency == "USD"
    assert pct.categories is None and pct.stackable is False
    fixed = Coupon.create(
        "FIVE", FIXED, Money(500), categories=["toys", "toys"], min_purchase=Money(1000)
    )
    assert (fixed.kind, fixed.percent_bp, fixed.amount) == ("fixed", 0, Money(500))
    assert fixed.categories == frozenset({"toys"})
    assert fixed.min_purchase == Money(1000)
    eur = Coupon.create("EUR", PERCENT, 500, min_purchase=Money(100, "EUR"))
    assert eur.currency == "EUR" and eur.amount == Money(0, "EUR")
    assert Coupon.create("FULL", PERCENT, 10_000).percent_bp == 10_000
    assert Coupon.create("ZERO", FIXED, Money(0)).amount == Money(0)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": PERCENT, "value": 0}, "percent must be 1..10000 basis points, got 0"),
        ({"kind": PERCENT, "value": 10_001}, "got 10001"),
        ({"kind": PERCENT, "value": True}, "got True"),
        ({"kind": PERCENT, "value": Money(5)}, "value is basis points"),
        ({"kind": FIXED, "value": 500}, "a fixed coupon's value is Money, got 500"),
        ({"kind": FIXED, "value": Money(-1)}, "fixed amount must be non-negative Money"),
        ({"kind": "bogo", "value": 5}, "kind must be one of ('percent', 'fixed'), got 'bogo'"),
        ({"kind": PERCENT, "value": 5, "min_purchase": Money(-1)}, "minimum purchase must"),
        (
            {"kind": PERCENT, "value": 5, "valid_from": 10.0, "valid_until": 10.0},
            "valid_until 10.0 must be after valid_from 10.0",
        ),
        ({"kind": PERCENT, "value": 5, "usage_limit": 0}, "usage_limit must be at least 1"),
        (
            {"kind": PERCENT, "value": 5, "per_customer_limit": 0},
            "per_customer_limit must be at least 1, got 0",
        ),
        ({"kind": PERCENT, "value": 5, "categories": []}, "categories must be None"),
    ],
)
def test_create_rejects_a_bad_definition(kwargs, fragment):
    with pytest.raises(InvalidValue, match=f"^coupon C: .*{re.escape(fragment)}"):
        Coupon.create("C", **kwargs)


def test_create_rejects_a_bad_code_and_mixed_currencies():
    with pytest.raises(InvalidValue, match="non-empty string, got ' '"):
        Coupon.create(" ", PERCENT, 100)
    with pytest.raises(CurrencyMismatch, match="amount in USD, minimum purchase in EUR"):
        Coupon.create("C", FIXED, Money(100), min_purchase=Money(100, "EUR"))


# --- discount -------------------------------------------------------------------------------
def test_percent_discount_rounds_half_up_on_the_eligible_subtotal():
    assert Coupon.create("P", PERCENT, 1000).discount(LINES) == Money(505)  # 504.8
    assert Coupon.create("P", PERCENT, 1250).discount(LINES) == Money(631)  # 631.0
    assert Coupon.create("P", PERCENT, 825).discount([TOYS]) == Money(87)  # 86.625
    assert Coupon.create("P", PERCENT, 250).discount([BOOKS]) == Money(100)  # 99.95 -> 100
    assert Coupon.create("P", PERCENT, 10_000).discount(LINES) == Money(5048)


def test_fixed_discount_is_capped_at_the_eligible_subtotal():
    assert Coupon.create("F", FIXED, Money(500)).discount(LINES) == Money(500)
    assert Coupon.create("F", FIXED, Money(9000)).discount(LINES) == Money(5048)
    toys_only = Coupon.create("F", FIXED, Money(2000), categories={"toys"})
    assert toys_only.discount(LINES) == Money(1050)
    assert toys_only.discount([BOOKS]) == Money(0)


def test_category_restricted_percent_counts_only_eligible_lines():
    books = Coupon.create("B", PERCENT, 2000, categories={"books"})
    assert books.discount(LINES) == Money(800)  # 20 % of 39.98 = 7.996


# --- rejections -----------------------------------------------------------------------------
def test_not_yet_valid_and_expired():
    c = Coupon.create("WINDOW", PERCENT, 100, valid_from=100.0, valid_until=200.0)
    with pytest.raises(CouponNotYetValid, match=r"WINDOW is valid from 100\.0, now is 99\.0"):
        c.check(LINES, "u1", 99.0)
    c.check(LINES, "u1", 100.0)
    c.check(LINES, "u1", 199.5)
    with pytest.raises(CouponExpired, match=r"WINDOW expired at 200\.0, now is 200\.0"):
        c.check(LINES, "u1", 200.0)
    assert not c.is_valid_at(99.0)
    assert c.is_valid_at(150.0)
    assert not c.is_valid_at(200.0)
    open_ended = Coupon.create("OPEN", PERCENT, 100)
    assert open_ended.is_valid_at(0.0) and open_ended.is_valid_at(1e12)


def test_usage_limit_counts_used_and_held():
    c = Coupon.create("LIMIT", PERCENT, 100, usage_limit=2)
    c.hold("o1", "u1", 0.0)
    c.check(LINES, "u2", 0.0)
    c.hold("o2", "u2", 0.0)
    with pytest.raises(CouponUsageLimitReached, match="usage limit 2 reached \\(0 used, 2 held\\)"):
        c.check(LINES, "u3", 0.0)
    c.redeem("o1", 1.0)
    with pytest.raises(CouponUsageLimitReached, match="\\(1 used, 1 held\\)"):
        c.check(LINES, "u3", 1.0)
    c.release("o2", 2.0)
    c.check(LINES, "u3", 2.0)
    assert c.remaining == 1


def test_customer_limit_counts_this_users_uses():
    c = Coupon.create("ONCE", FIXED, Money(100), per_customer_limit=1)
    c.hold("o1", "u1", 0.0)
    with pytest.raises(CouponCustomerLimitReached, match="user u1 has used it 1 times, limit 1"):
        c.check(LINES, "u1", 0.0)
    c.check(LINES, "u2", 0.0)
    c.redeem("o1", 1.0)
    with pytest.raises(CouponCustomerLimitReached):
        c.check(LINES, "u1", 1.0)
    assert c.uses_by("u1") == 1 and c.uses_by("u2") == 0


def test_customer_limit_takes_the_larger_of_its_own_and_an_outside_count():
    c = Coupon.create("TWICE", PERCENT, 100, per_customer_limit=2)
    c.check(LINES, "u1", 0.0, uses_by_user=1)
    with pytest.raises(CouponCustomerLimitReached, match="used it 2 times, limit 2"):
        c.check(LINES, "u1", 0.0, uses_by_user=2)
    c.hold("o1", "u1", 0.0)
    c.hold("o2", "u1", 0.0)
    with pytest.raises(CouponCustomerLimitReached, match="used it 2 times"):
        c.check(LINES, "u1", 0.0, uses_by_user=0)


def test_minimum_purchase_is_on_the_eligible_subtotal():
    c = Coupon.create("MIN", PERCENT, 500, min_purchase=Money(2000), categories={"toys"})
    with pytest.raises(
        CouponMinimumNotMet,
        match=r"MIN: minimum purchase 20\.00 USD, eligible subtotal 10\.50 USD",
    ):
        c.check(LINES, "u1", 0.0)
    whole = Coupon.create("MIN", PERCENT, 500, min_purchase=Money(5048))
    whole.check(LINES, "u1", 0.0)
    with pytest.raises(CouponMinimumNotMet, match=r"eligible subtotal 39\.98 USD"):
        whole.check([BOOKS], "u1", 0.0)


def test_not_applicable_without_an_eligible_line():
    c = Coupon.create("GARDEN", PERCENT, 500, categories={"garden", "tools"})
    with pytest.raises(
        CouponNotApplicable, match="GARDEN does not apply: no line is in garden, tools"
    ):
        c.check(LINES, "u1", 0.0)
    whole = Coupon.create("ALL", PERCENT, 500)
    with pytest.raises(CouponNotApplicable, match="ALL does not apply: the cart is empty"):
        whole.check([], "u1", 0.0)


def test_not_stackable_with_other_codes():
    solo = Coupon.create("SOLO", PERCENT, 500)
    with pytest.raises(CouponNotStackable, match=r"SOLO cannot be combined .*\(OTHER\)"):
        solo.check(LINES, "u1", 0.0, other_codes=("OTHER",))
    solo.check(LINES, "u1", 0.0, other_codes=("SOLO",))  # itself is not another coupon
    stack = Coupon.create("STACK", PERCENT, 500, stackable=True)
    stack.check(LINES, "u1", 0.0, other_codes=("OTHER",))


def test_every_rejection_is_a_coupon_rejected():
    for cls in (
        CouponNotYetValid,
        CouponExpired,
        CouponUsageLimitReached,
        CouponCustomerLimitReached,
        CouponMinimumNotMet,
        CouponNotApplicable,
        CouponNotStackable,
    ):
        assert issubclass(cls, CouponRejected)


def test_evaluate_returns_eligible_indices_and_discount():
    c = Coupon.create("TOYS", PERCENT, 1000, categories={"toys"})
    assert c.evaluate([TOYS, BOOKS, TOYS], "u1", 0.0) == ([0, 2], Money(210))


def test_lines_in_another_currency_are_refused():
    c = Coupon.create("USD", FIXED, Money(100))
    with pytest.raises(CurrencyMismatch, match="USD is in USD, a line is in EUR"):
        c.discount([PricedLine("E", "books", Money(100, "EUR"), 1)])


# --- usage accounting --------------------------------------------------------------------------
def test_hold_redeem_release_accounting():
    c = Coupon.create("FLASH", PERCENT, 2000, usage_limit=3, per_customer_limit=2)
    c.hold("o1", "u1", 0.0)
    c.hold("o2", "u1", 0.0)
    c.hold("o3", "u2", 0.0)
    assert c.held == {"o1": "u1", "o2": "u1", "o3": "u2"}
    assert c.held_by == {"u1": 2, "u2": 1}
    assert c.remaining == 0
    with pytest.raises(CouponUsageLimitReached):
        c.hold("o4", "u3", 0.0)

    c.redeem("o1", 5.0)
    assert (c.used, c.used_by, c.held, c.held_by) == (
        1,
        {"u1": 1},
        {"o2": "u1", "o3": "u2"},
        {"u1": 1, "u2": 1},
    )
    assert c.events == [CouponRedeemed(at=5.0, code="FLASH", user_id="u1", order_id="o1")]

    c.release("o3", 6.0)  # payment failed: the use comes back
    assert c.held == {"o2": "u1"} and c.held_by == {"u1": 1}
    assert c.used == 1 and c.remaining == 1
    assert len(c.events) == 1
    with pytest.raises(CouponCustomerLimitReached, match="user u1 has used it 2 times"):
        c.hold("o5", "u1", 7.0)
    c.hold("o5", "u3", 7.0)
    assert c.remaining == 0


def test_hold_checks_period_and_duplicates():
    c = Coupon.create("W", PERCENT, 100, valid_from=10.0, valid_until=20.0)
    with pytest.raises(CouponNotYetValid):
        c.hold("o1", "u1", 5.0)
    with pytest.raises(CouponExpired):
        c.hold("o1", "u1", 20.0)
    c.hold("o1", "u1", 10.0)
    with pytest.raises(AlreadyExists, match="order o1 already holds a use"):
        c.hold("o1", "u1", 11.0)
    c.redeem("o1", 25.0)  # paid after expiry: the order was placed in time
    assert c.used == 1


def test_redeem_and_release_need_a_held_use():
    c = Coupon.create("C", PERCENT, 100)
    with pytest.raises(NotFound, match="coupon C: order o1 holds no use"):
        c.redeem("o1", 0.0)
    with pytest.raises(NotFound, match="order o1 holds no use"):
        c.release("o1", 0.0)
    c.hold("o1", "u1", 0.0)
    c.redeem("o1", 1.0)
    with pytest.raises(NotFound):
        c.redeem("o1", 2.0)
    with pytest.raises(NotFound):
        c.release("o1", 2.0)
    assert c.used == 1 and c.remaining is None


def test_a_coupon_survives_deepcopy():
    c = Coupon.create("C", PERCENT, 100, usage_limit=5, categories={"books"})
    c.hold("o1", "u1", 0.0)
    snapshot = copy.deepcopy(c)
    c.redeem("o1", 1.0)
    assert snapshot.held == {"o1": "u1"} and snapshot.used == 0
    assert c.held == {} and c.used == 1
    assert snapshot.categories == frozenset({"books"})
