from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.domain.errors import CurrencyMismatch, InvalidAmount
from sim.domain.money import Money, round_div, total


def test_round_div_rounds_half_away_from_zero():
    assert round_div(5, 2) == 3
    assert round_div(-5, 2) == -3
    assert round_div(4, 3) == 1
    assert round_div(-4, 3) == -1
    assert round_div(7, 7) == 1
    with pytest.raises(InvalidAmount, match="denominator must be positive"):
        round_div(1, 0)


def test_money_is_integer_minor_units_only():
    with pytest.raises(InvalidAmount, match="integer minor units"):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        Money(True)  # type: ignore[arg-type]


def test_parse_is_exact():
    assert Money.parse("19.99") == Money(1999)
    assert Money.parse("-0.5") == Money(-50)
    assert Money.parse(3) == Money(300)
    with pytest.raises(InvalidAmount, match="more than two decimals"):
        Money.parse("0.001")
    with pytest.raises(InvalidAmount, match="not an amount"):
        Money.parse("abc")
    with pytest.raises(InvalidAmount, match="finite"):
        Money.parse("NaN")


def test_arithmetic_and_currency_checks():
    assert Money(150) + Money(250) == Money(400)
    assert Money(150) - Money(250) == Money(-100)
    assert Money(150) * 3 == Money(450)
    assert 3 * Money(150) == Money(450)
    assert -Money(5) == Money(-5)
    assert not Money.zero()
    assert Money(1)
    with pytest.raises(CurrencyMismatch, match="USD with EUR"):
        Money(1) + Money(1, "EUR")
    with pytest.raises(InvalidAmount, match="whole numbers"):
        Money(1) * 1.5  # type: ignore[operator]
    assert Money(3).clamp_min(Money(5)) == Money(5)
    assert Money(7).clamp_min(Money(5)) == Money(7)


def test_percent_and_fraction_round_once():
    assert Money(1999).percent(2000) == Money(400)  # 399.8 -> 400
    assert Money(1000).percent(825) == Money(83)  # 82.5 -> 83
    assert Money(-1000).percent(825) == Money(-83)
    assert Money(1000).fraction(1, 3) == Money(333)
    assert Money(1000).fraction(2, 3) == Money(667)


def test_allocate_sums_exactly_and_favours_largest_remainders():
    assert Money(1000).allocate([1, 1, 1]) == [Money(334), Money(333), Money(333)]
    assert Money(100).allocate([1, 0, 3]) == [Money(25), Money(0), Money(75)]
    assert Money(-10).allocate([1, 2]) == [Money(-3), Money(-7)]
    assert Money(0).allocate([0, 0]) == [Money(0), Money(0)]
    with pytest.raises(InvalidAmount, match="weights that are all zero"):
        Money(5).allocate([0, 0])  # no split of 5 cents sums to 5
    with pytest.raises(InvalidAmount):
        Money(5).allocate([])
    with pytest.raises(InvalidAmount):
        Money(5).allocate([1, -1])


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20),
)
def test_allocate_parts_always_sum_to_the_whole(amount: int, weights: list[int]):
    if not sum(weights) and amount:
        with pytest.raises(InvalidAmount):
            Money(amount).allocate(weights)
        return
    parts = Money(amount).allocate(weights)
    assert len(parts) == len(weights)
    assert sum(p.minor for p in parts) == amount
    if sum(weights):
        # every part is within one cent of its exact share
        for part, w in zip(parts, weights, strict=True):
            assert abs(part.minor * sum(weights) - amount * w) < sum(weights)


def test_amounts_of_one_currency_order_and_two_currencies_refuse_to():
    assert Money(100) < Money(200) <= Money(200) and Money(300) > Money(200) >= Money(200)
    assert sorted([Money(5), Money(-1), Money(3)]) == [Money(-1), Money(3), Money(5)]
    assert max(Money(5, "EUR"), Money(3, "EUR")) == Money(5, "EUR")
    for compare in (
        lambda: Money(100, "EUR") < Money(200),
        lambda: Money(100, "EUR") <= Money(200),
        lambda: Money(100, "EUR") > Money(200),
        lambda: Money(100, "EUR") >= Money(200),
        lambda: max(Money(5), Money(3, "EUR")),
    ):
        with pytest.raises(CurrencyMismatch, match="EUR"):
            compare()
    assert Money(1, "EUR") != Money(1)  # equality never raises: different currencies differ
    with pytest.raises(TypeError):
        Money(1) < 0  # type: ignore[operator]  # noqa: B015


def test_from_units_rounds_half_up_and_refuses_what_is_not_a_finite_number():
    assert Money.from_units(19.995) == Money(2000)  # repr 19.995, half a cent up
    assert Money.from_units(-0.005) == Money(-1)
    assert Money.from_units(12.3, "EUR") == Money(1230, "EUR")
    for bad in (float("nan"), float("inf"), float("-inf"), "twelve"):
        with pytest.raises(InvalidAmount, match="not a finite amount"):
            Money.from_units(bad)  # type: ignore[arg-type]


def test_str_and_total():
    assert str(Money(1999)) == "19.99 USD"
    assert str(Money(-5)) == "-0.05 USD"
    assert total([Money(1), Money(2), Money(3)]) == Money(6)
    assert total([]) == Money(0)
