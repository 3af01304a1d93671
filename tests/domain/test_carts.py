from __future__ import annotations

import copy

import pytest

from sim.domain.carts import (
    MAX_LINE_QUANTITY,
    Cart,
    LinePrice,
    PriceBreakdown,
    PricedLine,
    ShippingRule,
    TaxPolicy,
    price_cart,
)
from sim.domain.coupons import FIXED, PERCENT, Coupon
from sim.domain.errors import (
    CouponCustomerLimitReached,
    CouponExpired,
    CouponNotStackable,
    CurrencyMismatch,
    InvalidAmount,
    InvalidQuantity,
    InvalidValue,
    NotFound,
)
from sim.domain.events import CartAbandoned, CartItemAdded, CartRecovered
from sim.domain.money import Money

BOOKS = PricedLine("BOOK-1", "books", Money(1999), 2)  # 39.98, tax 0 %
TOYS = PricedLine("TOY-1", "toys", Money(1050), 1)  # 10.50, tax 20 % (the default)
FOOD = PricedLine("FOOD-1", "food", Money(333), 3)  # 9.99, tax 7 %
TAX = TaxPolicy(2000, {"books": 0, "food": 700})
SHIP = ShippingRule(Money(499), free_over=Money(5000))


def price(lines, *coupons, tax=TAX, shipping=SHIP, **kwargs):
    return price_cart(
        lines, coupons=coupons, tax=tax, shipping=shipping, user_id="u1", now=0.0, **kwargs
    )


def cents(breakdown: PriceBreakdown) -> tuple[int, ...]:
    return tuple(
        m.minor
        for m in (
            breakdown.subtotal,
            breakdown.discount,
            breakdown.tax,
            breakdown.shipping,
            breakdown.total,
        )
    )


def line_cents(breakdown: PriceBreakdown) -> list[tuple[str, int, int, int]]:
    return [(lp.sku, lp.discount.minor, lp.tax.minor, lp.total.minor) for lp in breakdown.lines]


# --- the cart aggregate -----------------------------------------------------------------------
def test_a_new_cart_is_empty():
    cart = Cart.create("u1", 10.0)
    assert (cart.user_id, cart.created_at, cart.updated_at) == ("u1", 10.0, 10.0)
    assert cart.is_empty and cart.units == 0 and cart.lines == {} and cart.coupon_codes == []
    assert (cart.abandoned, cart.abandoned_count, cart.recovered_count) == (False, 0, 0)
    with pytest.raises(InvalidValue, match="a cart needs a user id, got ''"):
        Cart.create("", 0.0)


def test_add_creates_and_extends_lines_in_insertion_order():
    cart = Cart.create("u1", 0.0)
    cart.add("B", 2, 1.0)
    cart.add("A", 1, 2.0)
    cart.add("B", 3, 3.0)
    assert list(cart.lines.items()) == [("B", 5), ("A", 1)]
    assert cart.units == 6 and cart.quantity_of("B") == 5 and cart.quantity_of("Z") == 0
    assert not cart.is_empty and cart.updated_at == 3.0
    assert cart.events == [
        CartItemAdded(at=1.0, user_id="u1", sku="B", quantity=2),
        CartItemAdded(at=2.0, user_id="u1", sku="A", quantity=1),
        CartItemAdded(at=3.0, user_id="u1", sku="B", quantity=3),
    ]


@pytest.mark.parametrize("quantity", [0, -1, 1.5, True])
def test_add_rejects_a_quantity_below_one(quantity):
    cart = Cart.create("u1", 0.0)
    with pytest.raises(
        InvalidQuantity, match=f"SKU-7: quantity must be a whole number >= 1, got {quantity!r}"
    ):
        cart.add("SKU-7", quantity, 1.0)
    assert cart.is_empty and cart.events == [] and cart.updated_at == 0.0


def test_add_caps_a_line_at_fifty_units():
    cart = Cart.create("u1", 0.0)
    cart.add("SKU-7", 48, 1.0)
    with pytest.raises(
        InvalidQuantity,
        match="SKU-7: 48 in cart \\+ 3 requested exceeds the maximum of 50 per line",
    ):
        cart.add("SKU-7", 3, 2.0)
    assert cart.lines == {"SKU-7": 48} and cart.updated_at == 1.0
    cart.add("SKU-7", 2, 3.0)
    assert cart.lines == {"SKU-7": MAX_LINE_QUANTITY} == {"SKU-7": 50}


def test_set_quantity_changes_or_removes_a_line():
    cart = Cart.create("u1", 0.0)
    cart.add("A", 1, 1.0)
    cart.add("B", 1, 1.0)
    cart.add("C", 1, 1.0)
    cart.set_quantity("A", 7, 2.0)
    assert list(cart.lines.items()) == [("A", 7), ("B", 1), ("C", 1)]
    assert cart.updated_at == 2.0
    cart.set_quantity("B", 0, 3.0)
    assert list(cart.lines.items()) == [("A", 7), ("C", 1)]
    assert len(cart.events) == 3  # only add records CartItemAdded
    with pytest.raises(NotFound, match="Z is not in the cart of u1"):
        cart.set_quantity("Z", 1, 4.0)
    with pytest.raises(InvalidQuantity, match=r"quantity must be a whole number 0\.\.50, got 51"):
        cart.set_quantity("A", 51, 4.0)
    with pytest.raises(InvalidQuantity, match="got -1"):
        cart.set_quantity("A", -1, 4.0)
    assert cart.lines == {"A": 7, "C": 1} and cart.updated_at == 3.0


def test_remove_and_clear():
    cart = Cart.create("u1", 0.0)
    cart.add("A", 1, 1.0)
    cart.add("B", 2, 1.0)
    cart.add_coupon("SAVE", 1.0)
    cart.remove("A", 2.0)
    assert cart.lines == {"B": 2} and cart.updated_at == 2.0
    with pytest.raises(NotFound, match="A is not in the cart of u1"):
        cart.remove("A", 3.0)
    cart.clear(4.0)
    assert cart.is_empty and cart.coupon_codes == [] and cart.updated_at == 4.0


def test_coupon_codes_are_remembered_once_in_order():
    cart = Cart.create("u1", 0.0)
    cart.add_coupon("B", 1.0)
    cart.add_coupon("A", 2.0)
    cart.add_coupon("B", 3.0)
    assert cart.coupon_codes == ["B", "A"] and cart.updated_at == 3.0
    cart.remove_coupon("B", 4.0)
    assert cart.coupon_codes == ["A"]
    with pytest.raises(NotFound, match="coupon B is not on the cart of u1"):
        cart.remove_coupon("B", 5.0)
    with pytest.raises(InvalidValue, match="coupon code must not be empty"):
        cart.add_coupon("", 5.0)
    assert cart.updated_at == 4.0


def test_abandonment_is_marked_once_and_recovered_by_a_touch():
    cart = Cart.create("u1", 0.0)
    assert cart.check_abandoned(10_000.0, 1800.0) is False  # empty carts are never abandoned
    cart.add("A", 1, 100.0)
    assert cart.check_abandoned(1899.0, 1800.0) is False
    assert cart.check_abandoned(1900.0, 1800.0) is True
    assert cart.abandoned and cart.abandoned_count == 1
    assert cart.check_abandoned(5000.0, 1800.0) is False  # once
    assert cart.abandoned_count == 1
    cart.touch(6000.0)  # the user viewed the cart
    assert not cart.abandoned and cart.recovered_count == 1 and cart.updated_at == 6000.0
    cart.touch(6001.0)
    assert cart.recovered_count == 1
    assert cart.events[1:] == [
        CartAbandoned(at=1900.0, user_id="u1"),
        CartRecovered(at=6000.0, user_id="u1"),
    ]
    assert cart.check_abandoned(7801.0, 1800.0) is True
    assert cart.abandoned_count == 2
    with pytest.raises(InvalidValue, match="abandonment window must be positive, got 0"):
        cart.check_abandoned(9000.0, 0)


@pytest.mark.parametrize(
    "change",
    [
        lambda c, t: c.add("B", 1, t),
        lambda c, t: c.set_quantity("A", 2, t),
        lambda c, t: c.remove("A", t),
        lambda c, t: c.clear(t),
        lambda c, t: c.add_coupon("X", t),
    ],
)
def test_any_change_recovers_an_abandoned_cart(change):
    cart = Cart.create("u1", 0.0)
    cart.add("A", 1, 0.0)
    assert cart.check_abandoned(100.0, 60.0)
    change(cart, 200.0)
    assert not cart.abandoned and cart.recovered_count == 1 and cart.updated_at == 200.0
    assert CartRecovered(at=200.0, user_id="u1") in cart.events


def test_recovery_is_recorded_before_the_added_item():
    cart = Cart.create("u1", 0.0)
    cart.add("A", 1, 0.0)
    cart.check_abandoned(100.0, 60.0)
    cart.add("A", 1, 200.0)
    assert cart.events[-2:] == [
        CartRecovered(at=200.0, user_id="u1"),
        CartItemAdded(at=200.0, user_id="u1", sku="A", quantity=1),
    ]


def test_a_cart_survives_deepcopy():
    cart = Cart.create("u1", 0.0)
    cart.add("A", 2, 1.0)
    cart.add_coupon("X", 1.0)
    snapshot = copy.deepcopy(cart)
    cart.add("A", 1, 2.0)
    cart.remove_coupon("X", 2.0)
    assert snapshot.lines == {"A": 2} and snapshot.coupon_codes == ["X"]
    assert len(snapshot.events) == 1 and len(cart.events) == 2


# --- value objects ----------------------------------------------------------------------------
def test_priced_line_amount_and_validation():
    assert BOOKS.amount == Money(3998)
    assert PricedLine("X", "c", Money(0), 60).amount == Money(0)
    with pytest.raises(InvalidQuantity, match="X: quantity must be at least 1, got 0"):
        PricedLine("X", "c", Money(100), 0)
    with pytest.raises(InvalidAmount, match=r"X: unit price must not be negative, got -0\.01 USD"):
        PricedLine("X", "c", Money(-1), 1)


def test_tax_policy_rates():
    assert TAX.rate_for("books") == 0
    assert TAX.rate_for("food") == 700
    assert TAX.rate_for("toys") == 2000
    assert TaxPolicy(0).rate_for("anything") == 0
    with pytest.raises(InvalidValue, match=r"tax rate default: must be 0\.\.10000 bp, got -1"):
        TaxPolicy(-1)
    with pytest.raises(InvalidValue, match=r"tax rate food: must be 0\.\.10000 bp, got 10001"):
        TaxPolicy(0, {"food": 10_001})
    with pytest.raises(InvalidValue, match=r"got 0\.2"):
        TaxPolicy(0.2)  # type: ignore[arg-type]


def test_shipping_fee():
    assert SHIP.fee(Money(4999), 3) == Money(499)
    assert SHIP.fee(Money(5000), 3) == Money(0)  # free at the threshold
    assert SHIP.fee(Money(0), 0) == Money(0)  # nothing to ship
    per_item = ShippingRule(Money(499), per_item=Money(150))
    assert per_item.fee(Money(10**9), 1) == Money(499)  # no threshold
    assert per_item.fee(Money(100), 4) == Money(949)
    both = ShippingRule(Money(499), free_over=Money(5000), per_item=Money(150))
    assert both.fee(Money(4999), 2) == Money(649)
    assert both.fee(Money(5000), 2) == Money(0)


def test_shipping_rule_validation():
    with pytest.raises(InvalidAmount, match=r"shipping flat must not be negative, got -1\.00 USD"):
        ShippingRule(Money(-100))
    with pytest.raises(InvalidAmount, match="shipping free_over must not be negative"):
        ShippingRule(Money(100), free_over=Money(-1))
    with pytest.raises(InvalidAmount, match="shipping per_item must not be negative"):
        ShippingRule(Money(100), per_item=Money(-1))
    with pytest.raises(CurrencyMismatch, match="shipping rule mixes USD and EUR"):
        ShippingRule(Money(100), free_over=Money(5000, "EUR"))


def test_price_breakdown_rejects_a_broken_invariant():
    with pytest.raises(InvalidAmount, match=r"inconsistent price breakdown: subtotal 10\.00 USD"):
        PriceBreakdown((), Money(1000), Money(0), Money(0), Money(0), Money(999))
    with pytest.raises(InvalidAmount):
        PriceBreakdown((), Money(1000), Money(1001), Money(0), Money(1), Money(0))
    with pytest.raises(InvalidAmount):
        PriceBreakdown((), Money(1000), Money(-1), Money(0), Money(0), Money(1001))
    ok = PriceBreakdown((), Money(1000), Money(1000), Money(0), Money(0), Money(0))
    assert ok.total == Money(0) and ok.units == 0


# --- pricing ----------------------------------------------------------------------------------
def test_price_without_coupons():
    b = price([BOOKS, TOYS])
    assert cents(b) == (5048, 0, 210, 0, 5258)  # 50.48 >= 50.00: free shipping
    assert line_cents(b) == [("BOOK-1", 0, 0, 3998), ("TOY-1", 0, 210, 1260)]
    assert b.coupon_codes == () and b.units == 3
    lp = b.lines[0]
    assert (lp.sku, lp.quantity, lp.amount, lp.line) == ("BOOK-1", 2, Money(3998), BOOKS)


def test_price_an_empty_cart():
    b = price([])
    assert cents(b) == (0, 0, 0, 0, 0) and b.lines == () and b.units == 0


def test_tax_per_category():
    b = price([BOOKS, FOOD, TOYS])
    # books 0 %; food 7 % of 9.99 = 0.6993 -> 0.70; toys 20 % of 10.50 = 2.10
    assert cents(b) == (6047, 0, 280, 0, 6327)
    assert [lp.tax.minor for lp in b.lines] == [0, 70, 210]


def test_percent_coupon_allocated_by_line_amounts():
    b = price([BOOKS, TOYS], Coupon.create("TEN", PERCENT, 1000))
    # 10 % of 50.48 = 5.048 -> 5.05; split 399.96 / 105.04 -> 4.00 / 1.05
    assert line_cents(b) == [("BOOK-1", 400, 0, 3598), ("TOY-1", 105, 189, 1134)]
    # the threshold is on the discounted subtotal: 45.43 < 50.00
    assert cents(b) == (5048, 505, 189, 499, 5231)
    assert b.coupon_codes == ("TEN",)


def test_fixed_coupon():
    b = price([BOOKS, TOYS], Coupon.create("FIVE", FIXED, Money(500)))
    # 5.00 split 395.998 / 104.002 -> 3.96 / 1.04; toys tax 20 % of 9.46 = 1.892 -> 1.89
    assert line_cents(b) == [("BOOK-1", 396, 0, 3602), ("TOY-1", 104, 189, 1135)]
    assert cents(b) == (5048, 500, 189, 499, 5236)


def test_fixed_coupon_larger_than_the_eligible_subtotal():
    b = price([BOOKS, TOYS], Coupon.create("BIG", FIXED, Money(10_000)))
    assert line_cents(b) == [("BOOK-1", 3998, 0, 0), ("TOY-1", 1050, 0, 0)]
    assert cents(b) == (5048, 5048, 0, 499, 499)
    toys = Coupon.create("TOYS20", FIXED, Money(2000), categories={"toys"})
    b = price([BOOKS, TOYS], toys)
    assert line_cents(b) == [("BOOK-1", 0, 0, 3998), ("TOY-1", 1050, 0, 0)]
    assert cents(b) == (5048, 1050, 0, 499, 4497)


def test_category_restricted_percent_coupon():
    books = Coupon.create("BOOKS20", PERCENT, 2000, categories={"books"})
    b = price([BOOKS, TOYS], books)
    # 20 % of 39.98 = 7.996 -> 8.00, all on the book line
    assert line_cents(b) == [("BOOK-1", 800, 0, 3198), ("TOY-1", 0, 210, 1260)]
    assert cents(b) == (5048, 800, 210, 499, 4957)


def test_stacked_coupons_apply_in_order_on_what_is_left():
    ten = Coupon.create("TEN", PERCENT, 1000, stackable=True)
    toys = Coupon.create("TOYS5", FIXED, Money(500), categories={"toys"}, stackable=True)
    b = price([BOOKS, TOYS], ten, toys)
    # TEN: 4.00 / 1.05; TOYS5: 5.00 more on toys -> 6.05; toys tax 20 % of 4.45 = 0.89
    assert line_cents(b) == [("BOOK-1", 400, 0, 3598), ("TOY-1", 605, 89, 534)]
    assert cents(b) == (5048, 1005, 89, 499, 4631)
    assert b.coupon_codes == ("TEN", "TOYS5")


def test_stacked_discounts_never_exceed_the_subtotal():
    sixty = Coupon.create("SIXTY", PERCENT, 6000, stackable=True)
    fifty = Coupon.create("FIFTY", FIXED, Money(5000), stackable=True)
    b = price([BOOKS, TOYS], sixty, fifty)
    # SIXTY: 30.29 split 23.99 / 6.30; FIFTY capped at the 20.19 left, split 15.99 / 4.20
    assert line_cents(b) == [("BOOK-1", 3998, 0, 0), ("TOY-1", 1050, 0, 0)]
    assert cents(b) == (5048, 5048, 0, 499, 499)
    # a coupon with nothing left to take off is still applied (and counted)
    b = price([TOYS], fifty, sixty)
    assert cents(b) == (1050, 1050, 0, 499, 499) and b.coupon_codes == ("FIFTY", "SIXTY")


def test_rounding_cases():
    # half-up tax on a half cent: 10 % of 0.05 = 0.005 -> 0.01
    b = price([PricedLine("C", "misc", Money(5), 1)], tax=TaxPolicy(1000))
    assert cents(b) == (5, 0, 1, 499, 505)
    # a remainder cent goes to the largest fractional part, ties to the first line
    three = [PricedLine(s, "misc", Money(333), 1) for s in "XYZ"]
    b = price(three, Coupon.create("TEN", PERCENT, 1000), tax=TaxPolicy(0))
    assert [lp.discount.minor for lp in b.lines] == [34, 33, 33]  # 9.99 * 10 % = 0.999 -> 1.00
    two = [PricedLine(s, "misc", Money(500), 1) for s in "XY"]
    b = price(two, Coupon.create("CENT", FIXED, Money(1)), tax=TaxPolicy(0))
    assert [lp.discount.minor for lp in b.lines] == [1, 0]
    # tax is rounded per line, then summed: 3 x 8.25 % of 0.10 = 3 x 0.825 -> 3 x 0.01
    dimes = [PricedLine(s, "misc", Money(10), 1) for s in "XYZ"]
    b = price(dimes, tax=TaxPolicy(825))
    assert b.tax == Money(3)


def test_price_with_per_item_shipping():
    rule = ShippingRule(Money(499), free_over=Money(10_000), per_item=Money(100))
    b = price([BOOKS, TOYS], shipping=rule)
    assert cents(b) == (5048, 0, 210, 699, 5957)  # 3 units: 4.99 + 2 x 1.00


def test_price_cart_rejections():
    solo = Coupon.create("SOLO", PERCENT, 1000)
    stack = Coupon.create("STACK", PERCENT, 1000, stackable=True)
    with pytest.raises(
        CouponNotStackable, match=r"^coupon SOLO cannot be combined with other coupons \(STACK\)$"
    ):
        price([BOOKS], stack, solo)
    with pytest.raises(
        CouponNotStackable, match=r"^coupon SOLO cannot be combined with other coupons \(STACK\)$"
    ):
        price([BOOKS], solo, stack)
    with pytest.raises(CouponNotStackable, match="a coupon cannot be applied twice: STACK, STACK"):
        price([BOOKS], stack, stack)
    old = Coupon.create("OLD", PERCENT, 1000, valid_until=-1.0)
    with pytest.raises(CouponExpired, match="OLD expired"):
        price([BOOKS], old)
    with pytest.raises(CurrencyMismatch, match="E is priced in EUR, not USD"):
        price([PricedLine("E", "books", Money(100, "EUR"), 1)])


def test_price_cart_counts_outside_uses_toward_the_customer_limit():
    once = Coupon.create("ONCE", PERCENT, 1000, per_customer_limit=1)
    assert price([BOOKS], once, coupon_uses_by_user={"OTHER": 3}).discount == Money(400)
    with pytest.raises(CouponCustomerLimitReached, match="user u1 has used it 1 times"):
        price([BOOKS], once, coupon_uses_by_user={"ONCE": 1})


def test_price_cart_accepts_any_iterable_of_lines():
    b = price(iter([TOYS]))
    assert cents(b) == (1050, 0, 210, 499, 1759)


# --- partial returns ----------------------------------------------------------------------------
def test_refund_shares_sum_to_the_line_total():
    b = price([FOOD])
    lp = b.lines[0]
    assert (lp.amount, lp.tax, lp.total) == (Money(999), Money(70), Money(1069))
    assert lp.refund_for(1) == Money(356)  # 10.69 / 3 = 3.563
    assert lp.refund_for(1, 1) == Money(357)  # 7.13 - 3.56
    assert lp.refund_for(1, 2) == Money(356)  # 10.69 - 7.13
    assert lp.refund_for(3) == Money(1069)
    assert lp.refund_for(2, 1) == Money(713)
    with pytest.raises(InvalidQuantity, match="FOOD-1: cannot return 2 after 2 of 3 units"):
        lp.refund_for(2, 2)
    with pytest.raises(InvalidQuantity):
        lp.refund_for(0)
    with pytest.raises(InvalidQuantity):
        lp.refund_for(1, -1)


def test_line_price_total_includes_discount_and_tax():
    lp = LinePrice(TOYS, Money(105), Money(189))
    assert lp.total == Money(1134)
