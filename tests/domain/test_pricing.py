"""Properties of price_cart over random carts, coupons, tax rates and shipping rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.carts import PriceBreakdown, PricedLine, ShippingRule, TaxPolicy, price_cart
from sim.domain.coupons import FIXED, PERCENT, Coupon
from sim.domain.errors import CouponNotStackable, CurrencyMismatch
from sim.domain.money import Money

CATEGORIES = ("books", "toys", "food", "garden")

lines_st = st.lists(
    st.builds(
        lambda i, cat, price, qty: PricedLine(f"SKU-{i}", cat, Money(price), qty),
        st.integers(0, 10**6),
        st.sampled_from(CATEGORIES),
        st.integers(0, 500_00),
        st.integers(1, 50),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda line: line.sku,
)
tax_st = st.builds(
    TaxPolicy,
    st.integers(0, 10_000),
    st.dictionaries(st.sampled_from(CATEGORIES), st.integers(0, 10_000), max_size=4),
)
shipping_st = st.builds(
    ShippingRule,
    st.builds(Money, st.integers(0, 20_00)),
    st.none() | st.builds(Money, st.integers(0, 1000_00)),
    st.builds(Money, st.integers(0, 5_00)),
)


@st.composite
def coupon_st(draw: st.DrawFn, code: str, present: list[str], stackable: bool) -> Coupon:
    """A coupon that applies to the cart whose categories are ``present``."""
    restricted = draw(st.booleans())
    categories = draw(st.sets(st.sampled_from(present), min_size=1)) if restricted else None
    if draw(st.booleans()):
        return Coupon.create(
            code, PERCENT, draw(st.integers(1, 10_000)), categories=categories, stackable=stackable
        )
    amount = Money(draw(st.integers(0, 2000_00)))
    return Coupon.create(code, FIXED, amount, categories=categories, stackable=stackable)


@st.composite
def cart_st(draw: st.DrawFn) -> tuple[list[PricedLine], list[Coupon]]:
    lines = draw(lines_st)
    present = sorted({line.category_id for line in lines})
    n = draw(st.integers(0, 3))
    coupons = [draw(coupon_st(f"C{i}", present, stackable=True)) for i in range(n)]
    return lines, coupons


@settings(max_examples=300, deadline=None)
@given(cart_st(), tax_st, shipping_st)
def test_breakdown_adds_up(cart, tax, shipping):
    lines, coupons = cart
    b = price_cart(lines, coupons=coupons, tax=tax, shipping=shipping, user_id="u1", now=0.0)
    subtotal, discount = b.subtotal.minor, b.discount.minor
    assert subtotal == sum(line.amount.minor for line in lines)
    assert b.total.minor == subtotal - discount + b.tax.minor + b.shipping.minor
    assert b.total.minor >= 0
    assert 0 <= discount <= subtotal
    assert sum(lp.discount.minor for lp in b.lines) == discount
    assert sum(lp.tax.minor for lp in b.lines) == b.tax.minor
    assert sum(lp.total.minor for lp in b.lines) + b.shipping.minor == b.total.minor
    assert [lp.line for lp in b.lines] == lines
    for lp in b.lines:
        assert 0 <= lp.discount.minor <= lp.amount.minor
        taxed = lp.amount.minor - lp.discount.minor
        rate = tax.rate_for(lp.line.category_id)
        assert abs(lp.tax.minor * 10_000 - taxed * rate) <= 5_000  # rounded to the cent
    assert b.shipping == shipping.fee(Money(subtotal - discount), sum(x.quantity for x in lines))
    assert b.coupon_codes == tuple(c.code for c in coupons)
    singles = [c.discount(lines).minor for c in coupons]
    if singles:
        assert max(singles) <= discount <= min(subtotal, sum(singles))


def _untaxed(
    lines: list[PricedLine], coupons: list[Coupon], shipping: ShippingRule | None = None
) -> PriceBreakdown:
    """Price a cart with no tax (and free shipping unless told otherwise)."""
    shipping = shipping or ShippingRule(Money(0))
    return price_cart(
        lines, coupons=coupons, tax=TaxPolicy(0), shipping=shipping, user_id="u", now=0.0
    )


@settings(max_examples=200, deadline=None)
@given(lines_st, st.data())
def test_a_single_coupon_is_allocated_in_proportion(lines, data):
    present = sorted({line.category_id for line in lines})
    coupon = data.draw(coupon_st("ONE", present, stackable=data.draw(st.booleans())))
    b = _untaxed(lines, [coupon])
    assert b.discount == coupon.discount(lines)
    eligible = [
        lp
        for lp in b.lines
        if coupon.categories is None or lp.line.category_id in coupon.categories
    ]
    base = sum(lp.amount.minor for lp in eligible)
    total = b.discount.minor
    for lp in b.lines:
        if lp not in eligible:
            assert lp.discount == Money(0)
    for lp in eligible:
        # within one cent of the exact proportional share
        assert abs(lp.discount.minor * base - total * lp.amount.minor) < max(base, 1)


@settings(max_examples=100, deadline=None)
@given(lines_st, st.data())
def test_a_non_stackable_coupon_refuses_company(lines, data):
    present = sorted({line.category_id for line in lines})
    solo = data.draw(coupon_st("SOLO", present, stackable=False))
    other = data.draw(coupon_st("OTHER", present, stackable=data.draw(st.booleans())))
    order = data.draw(st.permutations([solo, other]))
    with pytest.raises(CouponNotStackable):
        _untaxed(lines, order)


@settings(max_examples=200, deadline=None)
@given(cart_st(), tax_st, st.data())
def test_partial_returns_refund_exactly_the_line_total(cart, tax, data):
    lines, coupons = cart
    b = price_cart(
        lines, coupons=coupons, tax=tax, shipping=ShippingRule(Money(499)), user_id="u", now=0.0
    )
    lp = data.draw(st.sampled_from(b.lines))
    returned, refunded = 0, 0
    while returned < lp.quantity:
        units = data.draw(st.integers(1, lp.quantity - returned))
        part = lp.refund_for(units, returned)
        assert part.minor >= 0
        refunded += part.minor
        returned += units
    assert refunded == lp.total.minor


def test_a_cart_in_another_currency_prices_with_the_default_fees_and_a_percentage():
    """Nothing that names no amount (a zero fee, a percentage) pins the cart to USD."""
    lines = [
        PricedLine("a", "books", Money(1000, "EUR"), 2),
        PricedLine("b", "toys", Money(500, "EUR"), 1),
    ]
    shipping = ShippingRule(Money(499, "EUR"))  # per_item left at its zero default
    assert shipping.per_item == Money(0, "EUR")
    ten = Coupon.create("P10", PERCENT, 1000)
    priced = _untaxed(lines, [ten], shipping)
    assert priced.discount == Money(250, "EUR")
    assert priced.total == Money(2500 - 250 + 499, "EUR")
    # a minimum purchase names an amount: that coupon is in its currency only
    floor = Coupon.create("P10EUR", PERCENT, 1000, min_purchase=Money(100, "EUR"))
    usd = [PricedLine("a", "books", Money(1000), 1)]
    with pytest.raises(CurrencyMismatch, match="coupon P10EUR is in EUR, a line is in USD"):
        _untaxed(usd, [floor])
    with pytest.raises(CurrencyMismatch, match="a line is in USD"):  # one cart, one currency
        ten.discount([*lines, *usd])
    with pytest.raises(CurrencyMismatch, match="shipping rule mixes EUR and USD"):
        ShippingRule(Money(499, "EUR"), per_item=Money(100))
