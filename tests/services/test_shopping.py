from __future__ import annotations

from dataclasses import replace

import pytest

from sim.domain import inventory
from sim.domain.clock import DAY
from sim.domain.errors import (
    CouponCustomerLimitReached,
    CouponExpired,
    CouponMinimumNotMet,
    CouponNotApplicable,
    CouponNotStackable,
    CouponNotYetValid,
    CouponUsageLimitReached,
    EmptyCart,
    IdempotencyConflict,
    IllegalTransition,
    InvalidPaymentMethod,
    InvalidQuantity,
    InvalidValue,
    NotFound,
    OutOfStock,
)
from sim.domain.events import (
    CartAbandoned,
    CartItemAdded,
    CartRecovered,
    CouponRedeemed,
    DuplicateChargePrevented,
    OrderPlaced,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentDeclined,
    StockChanged,
    StockCommitted,
    StockReleased,
    StockReserved,
)
from sim.domain.ledger import EntryKind, LedgerEntry
from sim.domain.money import Money
from sim.domain.orders import CustomerHistory, OrderLine, OrderStatus
from sim.domain.payments import FraudRules, IdempotencyRecord, PaymentStatus
from sim.domain.users import ActivityKind, LoginPolicy
from sim.services.handlers import accounts, shopping
from sim.services.subscribers import Notification
from tests.services.conftest import (
    ADMIN,
    ANN,
    BOB,
    BOOK,
    EMAILS,
    INITIAL_STOCK,
    LAMP,
    MUG,
    PASSWORD,
    PEN,
    make_card,
)


# --- helpers ----------------------------------------------------------------------------------
def stock_of(uow, sku):
    item = uow.stock.get(sku)
    return item.on_hand, item.reserved, item.sold, item.available


def untouched_stock(uow):
    return all(
        stock_of(uow, sku) == (qty, 0, 0, qty) and not uow.stock.get(sku).events
        for sku, qty in INITIAL_STOCK.items()
    )


def cart_state(uow, user_id):
    cart = uow.carts.find_readonly(user_id)
    if cart is None:
        return None
    return dict(cart.lines), list(cart.coupon_codes), cart.updated_at


def begin(uow, policies, order_id, card, key="k1", now=10.0):
    return shopping.begin_payment(
        uow, order_id, card, gateway="card-a", idempotency_key=key, now=now, policies=policies
    )


# --- the cart ---------------------------------------------------------------------------------
def test_add_to_cart_creates_the_cart_merges_lines_and_counts_activity(uow, events):
    shopping.add_to_cart(uow, ANN, BOOK, 2, 1.0)
    shopping.add_to_cart(uow, ANN, MUG, 1, 2.0)
    shopping.add_to_cart(uow, ANN, BOOK, 1, 3.0)
    cart = uow.carts.get(ANN)
    assert cart.lines == {BOOK: 3, MUG: 1}
    assert (cart.created_at, cart.updated_at, cart.units) == (1.0, 3.0, 4)
    assert events == [
        CartItemAdded(at=1.0, user_id=ANN, sku=BOOK, quantity=2),
        CartItemAdded(at=2.0, user_id=ANN, sku=MUG, quantity=1),
        CartItemAdded(at=3.0, user_id=ANN, sku=BOOK, quantity=1),
    ]
    log = uow.activity.get(ANN)
    assert log.count(ActivityKind.ADDED_TO_CART) == 3
    assert log.recent_refs(ActivityKind.ADDED_TO_CART) == [BOOK, MUG, BOOK]


def test_add_to_cart_rejects_unknown_product_unknown_user_and_bad_quantities(uow, events):
    with pytest.raises(NotFound, match=r"product 'SKU-NOPE' not found"):
        shopping.add_to_cart(uow, ANN, "SKU-NOPE", 1, 1.0)
    with pytest.raises(NotFound, match=r"user 'user-999999' not found"):
        shopping.add_to_cart(uow, "user-999999", BOOK, 1, 1.0)
    assert len(uow.carts) == 0
    shopping.add_to_cart(uow, ANN, PEN, 49, 1.0)  # 100 in stock: the line limit comes first
    events.clear()
    with pytest.raises(InvalidQuantity, match="SKU-PEN: quantity must be a whole number >= 1"):
        shopping.add_to_cart(uow, ANN, PEN, 0, 2.0)
    with pytest.raises(
        InvalidQuantity, match="49 in cart \\+ 2 requested exceeds the maximum of 50"
    ):
        shopping.add_to_cart(uow, ANN, PEN, 2, 2.0)
    assert cart_state(uow, ANN) == ({PEN: 49}, [], 1.0)
    assert uow.activity.get(ANN).count(ActivityKind.ADDED_TO_CART) == 1
    assert events == []


def test_a_product_cannot_be_added_beyond_its_available_stock(uow, policies, events):
    """Sold out means no add to cart, as in a real shop; the cart is left as it was."""
    shopping.add_to_cart(uow, ANN, LAMP, 2, 1.0)  # the two lamps in stock
    events.clear()
    with pytest.raises(OutOfStock, match=r"^SKU-LAMP: 3 requested, 2 available$"):
        shopping.add_to_cart(uow, ANN, LAMP, 1, 2.0)
    assert cart_state(uow, ANN) == ({LAMP: 2}, [], 1.0)
    assert uow.activity.get(ANN).count(ActivityKind.ADDED_TO_CART) == 1
    assert events == []
    shopping.checkout(uow, ANN, 3.0, policies=policies)  # both reserved: none left for sale
    with pytest.raises(OutOfStock, match=r"^SKU-LAMP: 1 requested, 0 available$"):
        shopping.add_to_cart(uow, BOB, LAMP, 1, 4.0)
    assert cart_state(uow, BOB) is None  # the refused add made no cart either
    with uow:
        uow.stock.remove(PEN)  # a product with no stock item has nothing for sale
        uow.commit()
    with pytest.raises(OutOfStock, match=r"^SKU-PEN: 1 requested, 0 available$"):
        shopping.add_to_cart(uow, BOB, PEN, 1, 5.0)


def test_fit_cart_to_stock_trims_the_lines_sold_out_since_they_were_added(uow, policies):
    for sku, qty in {LAMP: 2, MUG: 3, BOOK: 1}.items():
        shopping.add_to_cart(uow, ANN, sku, qty, 1.0)
    for sku, qty in {LAMP: 2, MUG: 4}.items():  # carts hold no stock: Bob may add them too
        shopping.add_to_cart(uow, BOB, sku, qty, 2.0)
    shopping.checkout(uow, BOB, 3.0, policies=policies)  # no lamp left, one mug
    with pytest.raises(
        OutOfStock, match=r"^SKU-LAMP: 2 requested, 0 available; SKU-MUG: 3 requested, 1 available$"
    ):
        shopping.checkout(uow, ANN, 4.0, policies=policies)
    assert shopping.fit_cart_to_stock(uow, ANN, 5.0) == {LAMP: 0, MUG: 1}
    assert cart_state(uow, ANN) == ({MUG: 1, BOOK: 1}, [], 5.0)
    assert shopping.fit_cart_to_stock(uow, ANN, 6.0) == {}  # it fits now
    order_id = shopping.checkout(uow, ANN, 7.0, policies=policies)
    assert {line.sku: line.quantity for line in uow.orders.get(order_id).lines} == {MUG: 1, BOOK: 1}
    assert shopping.fit_cart_to_stock(uow, ADMIN, 8.0) == {}  # no cart, nothing to fit


def test_change_quantity_and_remove_from_cart(uow, fill_cart):
    fill_cart(ANN, {BOOK: 2, MUG: 1, PEN: 3})
    shopping.change_quantity(uow, ANN, BOOK, 5, 2.0)
    assert cart_state(uow, ANN) == ({BOOK: 5, MUG: 1, PEN: 3}, [], 2.0)
    shopping.change_quantity(uow, ANN, MUG, 0, 3.0)
    assert cart_state(uow, ANN) == ({BOOK: 5, PEN: 3}, [], 3.0)
    shopping.remove_from_cart(uow, ANN, PEN, 4.0)
    assert cart_state(uow, ANN) == ({BOOK: 5}, [], 4.0)
    with pytest.raises(NotFound, match="SKU-MUG is not in the cart of user-000001"):
        shopping.change_quantity(uow, ANN, MUG, 2, 5.0)
    with pytest.raises(NotFound, match="SKU-PEN is not in the cart of user-000001"):
        shopping.remove_from_cart(uow, ANN, PEN, 5.0)
    with pytest.raises(InvalidQuantity, match=r"quantity must be a whole number 0\.\.50, got 51"):
        shopping.change_quantity(uow, ANN, BOOK, 51, 5.0)
    assert cart_state(uow, ANN) == ({BOOK: 5}, [], 4.0)
    with pytest.raises(NotFound, match=r"cart 'user-000002' not found"):
        shopping.change_quantity(uow, BOB, BOOK, 1, 5.0)
    with pytest.raises(NotFound, match=r"cart 'user-000002' not found"):
        shopping.remove_from_cart(uow, BOB, BOOK, 5.0)


def test_a_quantity_cannot_be_raised_beyond_the_stock_but_can_always_be_lowered(
    uow, place, fill_cart
):
    fill_cart(ANN, {LAMP: 2, BOOK: 1})
    with pytest.raises(OutOfStock, match=r"^SKU-BOOK: 11 requested, 10 available$"):
        shopping.change_quantity(uow, ANN, BOOK, 11, 2.0)
    shopping.change_quantity(uow, ANN, BOOK, 10, 3.0)
    place(BOB, {LAMP: 1})  # one lamp left for sale; Ann's cart still says two
    shopping.change_quantity(uow, ANN, LAMP, 2, 4.0)  # not raised: allowed, checkout decides
    assert cart_state(uow, ANN) == ({LAMP: 2, BOOK: 10}, [], 4.0)
    with pytest.raises(OutOfStock, match=r"^SKU-LAMP: 3 requested, 1 available$"):
        shopping.change_quantity(uow, ANN, LAMP, 3, 5.0)
    shopping.change_quantity(uow, ANN, LAMP, 1, 6.0)
    assert cart_state(uow, ANN) == ({LAMP: 1, BOOK: 10}, [], 6.0)


def test_view_cart_counts_units_and_creates_an_empty_cart(uow, fill_cart):
    assert shopping.view_cart(uow, BOB, 7.0) == 0
    assert cart_state(uow, BOB) == ({}, [], 7.0)
    fill_cart(ANN, {BOOK: 2, PEN: 3})
    assert shopping.view_cart(uow, ANN, 9.0) == 5
    assert uow.carts.get(ANN).updated_at == 9.0
    with pytest.raises(NotFound, match=r"user 'user-999999' not found"):
        shopping.view_cart(uow, "user-999999", 9.0)


def test_check_abandoned_then_view_cart_recovers_the_cart(uow, policies, fill_cart, events):
    after = policies.abandonment_after
    assert shopping.check_abandoned(uow, ANN, 5000.0, after=after) is False  # no cart
    assert ANN not in uow.carts
    fill_cart(ANN, {BOOK: 1}, now=100.0)
    events.clear()
    assert shopping.check_abandoned(uow, ANN, 1899.0, after=after) is False  # 29:59 untouched
    assert shopping.check_abandoned(uow, ANN, 1900.0, after=after) is True
    assert shopping.check_abandoned(uow, ANN, 2500.0, after=after) is False  # counted once
    assert events == [CartAbandoned(at=1900.0, user_id=ANN)]
    assert shopping.view_cart(uow, ANN, 3000.0) == 1
    cart = uow.carts.get(ANN)
    assert (cart.abandoned, cart.abandoned_count, cart.recovered_count) == (False, 1, 1)
    assert events[-1] == CartRecovered(at=3000.0, user_id=ANN)
    shopping.view_cart(uow, BOB, 3000.0)
    assert shopping.check_abandoned(uow, BOB, 9000.0, after=after) is False  # an empty cart


def test_the_cart_persists_across_logout_and_login(uow, policies):
    login_policy = LoginPolicy()

    def login(now):
        return accounts.login(
            uow, EMAILS[ANN], PASSWORD, now, hasher=policies.hasher, policy=login_policy
        )

    token = login(10.0)
    user_id = accounts.authenticate(uow, token, 11.0, policy=login_policy)
    assert user_id == ANN
    shopping.add_to_cart(uow, user_id, BOOK, 2, 12.0)
    shopping.add_to_cart(uow, user_id, PEN, 1, 13.0)
    accounts.logout(uow, token, 14.0)
    assert token not in uow.sessions
    second = login(5000.0)
    assert second != token
    assert accounts.authenticate(uow, second, 5001.0, policy=login_policy) == ANN
    assert shopping.view_cart(uow, ANN, 5002.0) == 3
    assert uow.carts.get(ANN).lines == {BOOK: 2, PEN: 1}


# --- pricing and coupons ----------------------------------------------------------------------
def test_price_user_cart_without_a_cart_is_zero(uow, policies):
    breakdown = shopping.price_user_cart(uow, BOB, 1.0, policies=policies)
    assert breakdown.lines == ()
    assert (breakdown.subtotal, breakdown.shipping, breakdown.total) == (Money(0),) * 3


def test_price_user_cart_exact_totals(uow, policies, fill_cart):
    # 2 x 12.50 + 8.99 = 33.99; tax 8 % per line: 2.00 + 0.72 (0.7192); shipping 4.99
    fill_cart(ANN, {BOOK: 2, MUG: 1})
    breakdown = shopping.price_user_cart(uow, ANN, 2.0, policies=policies)
    assert [(lp.sku, lp.discount, lp.tax) for lp in breakdown.lines] == [
        (BOOK, Money(0), Money(200)),
        (MUG, Money(0), Money(72)),
    ]
    assert (
        breakdown.subtotal,
        breakdown.discount,
        breakdown.tax,
        breakdown.shipping,
        breakdown.total,
    ) == (Money(3399), Money(0), Money(272), Money(499), Money(4170))
    # free shipping from 50.00 of discounted subtotal: 33.99 + 45.00 = 78.99
    shopping.add_to_cart(uow, ANN, LAMP, 1, 3.0)
    breakdown = shopping.price_user_cart(uow, ANN, 3.0, policies=policies)
    # tax 200 + 72 + 360 = 632
    assert (breakdown.subtotal, breakdown.tax, breakdown.shipping, breakdown.total) == (
        Money(7899),
        Money(632),
        Money(0),
        Money(8531),
    )


def test_apply_coupon_accepts_and_prices_the_cart(uow, policies, fill_cart, events):
    fill_cart(ANN, {BOOK: 2, MUG: 1})
    events.clear()
    breakdown = shopping.apply_coupon(uow, ANN, "SAVE10", 5.0, policies=policies)
    # 10 % of 33.99 = 3.40 (3.399), allocated 2.50 to the books, 0.90 to the mug;
    # tax 8 % of 22.50 = 1.80 and of 8.09 = 0.65 (0.6472); net 30.59 + 2.45 + 4.99
    assert [(lp.sku, lp.discount, lp.tax, lp.total) for lp in breakdown.lines] == [
        (BOOK, Money(250), Money(180), Money(2430)),
        (MUG, Money(90), Money(65), Money(874)),
    ]
    assert (
        breakdown.subtotal,
        breakdown.discount,
        breakdown.tax,
        breakdown.shipping,
        breakdown.total,
        breakdown.coupon_codes,
    ) == (Money(3399), Money(340), Money(245), Money(499), Money(3803), ("SAVE10",))
    assert cart_state(uow, ANN) == ({BOOK: 2, MUG: 1}, ["SAVE10"], 5.0)
    assert shopping.price_user_cart(uow, ANN, 6.0, policies=policies) == breakdown
    assert events == []


def test_apply_fixed_and_category_coupons(uow, policies, fill_cart):
    fill_cart(ANN, {BOOK: 2, MUG: 1})
    fill_cart(BOB, {BOOK: 2, MUG: 1})
    # 5.00 off 33.99 allocated 3.68 / 1.32; tax 8 % of 21.32 = 1.71 (1.7056), of 7.67 = 0.61
    fixed = shopping.apply_coupon(uow, ANN, "FIVEOFF", 2.0, policies=policies)
    assert [(lp.discount, lp.tax) for lp in fixed.lines] == [
        (Money(368), Money(171)),
        (Money(132), Money(61)),
    ]
    assert (fixed.discount, fixed.tax, fixed.total) == (Money(500), Money(232), Money(3630))
    # 20 % of the books only: 5.00 off 25.00; tax 1.60 + 0.72
    books = shopping.apply_coupon(uow, BOB, "BOOKS20", 2.0, policies=policies)
    assert [(lp.discount, lp.tax) for lp in books.lines] == [
        (Money(500), Money(160)),
        (Money(0), Money(72)),
    ]
    assert (books.discount, books.tax, books.total) == (Money(500), Money(232), Money(3630))


def test_stackable_coupons_combine(uow, policies, fill_cart):
    fill_cart(ANN, {BOOK: 2, MUG: 1})
    shopping.apply_coupon(uow, ANN, "STACK-A", 2.0, policies=policies)
    both = shopping.apply_coupon(uow, ANN, "STACK-B", 3.0, policies=policies)
    # 5 % of 33.99 = 1.70 -> 1.25 / 0.45; then 1.00 of the 23.75 / 8.54 left -> 0.74 / 0.26
    # tax 8 % of 23.01 = 1.84 (1.8408), of 8.28 = 0.66 (0.6624)
    assert [(lp.discount, lp.tax) for lp in both.lines] == [
        (Money(199), Money(184)),
        (Money(71), Money(66)),
    ]
    assert (both.discount, both.tax, both.shipping, both.total) == (
        Money(270),
        Money(250),
        Money(499),
        Money(3878),
    )
    assert both.coupon_codes == ("STACK-A", "STACK-B")
    assert uow.carts.get(ANN).coupon_codes == ["STACK-A", "STACK-B"]


@pytest.mark.parametrize(
    ("lines", "applied", "code", "now", "error", "message"),
    [
        ({BOOK: 2}, (), "OLD", 20.0, CouponExpired, "coupon OLD expired at 10.0, now is 20.0"),
        (
            {BOOK: 2},
            (),
            "FUTURE",
            20.0,
            CouponNotYetValid,
            "coupon FUTURE is valid from 1000.0, now is 20.0",
        ),
        (
            {MUG: 1},
            (),
            "FIVEOFF",
            20.0,
            CouponMinimumNotMet,
            "coupon FIVEOFF: minimum purchase 20.00 USD, eligible subtotal 8.99 USD",
        ),
        (
            {MUG: 1, PEN: 1},
            (),
            "BOOKS20",
            20.0,
            CouponNotApplicable,
            "coupon BOOKS20 does not apply: no line is in books",
        ),
        (
            {BOOK: 2},
            ("SAVE10",),
            "STACK-A",
            20.0,
            CouponNotStackable,
            "coupon SAVE10 cannot be combined with other coupons (STACK-A)",
        ),
        (
            {BOOK: 2},
            ("SAVE10",),
            "SAVE10",
            20.0,
            CouponNotStackable,
            "a coupon cannot be applied twice: SAVE10, SAVE10",
        ),
        ({BOOK: 2}, (), "NOPE", 20.0, NotFound, "coupon 'NOPE' not found"),
        ({BOOK: 2}, (), "", 20.0, NotFound, "coupon '' not found"),
    ],
)
def test_a_rejected_coupon_leaves_the_cart_unchanged(
    uow, policies, fill_cart, events, lines, applied, code, now, error, message
):
    fill_cart(ANN, lines, coupons=applied, now=1.0)
    before = cart_state(uow, ANN)
    events.clear()
    with pytest.raises(error) as info:
        shopping.apply_coupon(uow, ANN, code, now, policies=policies)
    assert str(info.value) == message
    assert cart_state(uow, ANN) == before
    assert events == []


def test_a_coupon_on_no_cart_is_rejected_and_creates_no_cart(uow, policies):
    with pytest.raises(
        CouponNotApplicable, match="coupon SAVE10 does not apply: the cart is empty"
    ):
        shopping.apply_coupon(uow, ANN, "SAVE10", 1.0, policies=policies)
    assert ANN not in uow.carts


def test_usage_limit_counts_held_uses(uow, policies, place, fill_cart):
    place(BOB, {BOOK: 1}, coupons=("SINGLE",))
    fill_cart(ANN, {BOOK: 1})
    before = cart_state(uow, ANN)
    with pytest.raises(
        CouponUsageLimitReached, match=r"coupon SINGLE: usage limit 1 reached \(0 used, 1 held\)"
    ):
        shopping.apply_coupon(uow, ANN, "SINGLE", 2.0, policies=policies)
    assert cart_state(uow, ANN) == before


def test_per_customer_limit_counts_held_then_paid_uses_and_a_cancel_gives_it_back(
    uow, policies, place, fill_cart, pay
):
    first = place(ANN, {BOOK: 1}, coupons=("ONCE",))
    fill_cart(ANN, {BOOK: 1})
    message = "coupon ONCE: user user-000001 has used it 1 times, limit 1 per customer"
    with pytest.raises(CouponCustomerLimitReached, match=message):
        shopping.apply_coupon(uow, ANN, "ONCE", 2.0, policies=policies)
    shopping.abandon_payment(uow, pay(first, "failed"), 4.0)  # the held use goes back
    assert uow.coupons.get("ONCE").uses_by(ANN) == 0
    shopping.apply_coupon(uow, ANN, "ONCE", 5.0, policies=policies)
    second = shopping.checkout(uow, ANN, 6.0, policies=policies)
    pay(second, now=7.0)
    coupon = uow.coupons.get("ONCE")
    assert (coupon.used, coupon.used_by, coupon.held) == (1, {ANN: 1}, {})
    fill_cart(ANN, {PEN: 1}, now=9.0)
    with pytest.raises(CouponCustomerLimitReached, match=message):
        shopping.apply_coupon(uow, ANN, "ONCE", 10.0, policies=policies)
    # another customer may still use it
    fill_cart(BOB, {PEN: 1}, coupons=("ONCE",), now=11.0)
    assert uow.carts.get(BOB).coupon_codes == ["ONCE"]


# --- checkout ---------------------------------------------------------------------------------
def test_checkout_places_an_order_with_the_exact_breakdown(uow, policies, fill_cart, events):
    fill_cart(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    events.clear()
    order_id = shopping.checkout(uow, ANN, 5.0, policies=policies)
    assert order_id == "order-000001"
    order = uow.orders.get(order_id)
    assert order.lines == (
        OrderLine(BOOK, "books", Money(1250), 2, Money(250), Money(180)),
        OrderLine(MUG, "kitchen", Money(899), 1, Money(90), Money(65)),
    )
    assert (order.subtotal, order.discount, order.tax, order.shipping, order.total) == (
        Money(3399),
        Money(340),
        Money(245),
        Money(499),
        Money(3803),
    )
    assert (order.user_id, order.status, order.placed_at, order.coupon_codes) == (
        ANN,
        OrderStatus.PENDING,
        5.0,
        ("SAVE10",),
    )
    assert order.reservation_id == "reservation-000001"
    reservation = uow.reservations.get("reservation-000001")
    assert (reservation.order_id, reservation.lines, reservation.status) == (
        order_id,
        ((BOOK, 2), (MUG, 1)),
        inventory.ACTIVE,
    )
    assert (reservation.created_at, reservation.expires_at) == (5.0, 905.0)
    assert stock_of(uow, BOOK) == (10, 2, 0, 8)
    assert stock_of(uow, MUG) == (5, 1, 0, 4)
    assert stock_of(uow, LAMP) == (2, 0, 0, 2)
    coupon = uow.coupons.get("SAVE10")
    assert (coupon.held, coupon.held_by, coupon.used) == ({order_id: ANN}, {ANN: 1}, 0)
    assert cart_state(uow, ANN) == ({}, [], 5.0)
    assert uow.histories.get(ANN) == CustomerHistory(ANN, [order_id])
    assert events == [
        StockReserved(at=5.0, sku=BOOK, quantity=2, reservation_id="reservation-000001"),
        StockChanged(at=5.0, sku=BOOK, available=8),
        StockReserved(at=5.0, sku=MUG, quantity=1, reservation_id="reservation-000001"),
        StockChanged(at=5.0, sku=MUG, available=4),
        OrderPlaced(at=5.0, order_id=order_id, user_id=ANN, total=Money(3803)),
    ]
    assert list(uow.notifications) == []  # placing is no status change


def test_checkout_of_an_empty_cart_raises(uow, policies):
    with pytest.raises(EmptyCart, match="user user-000001: the cart is empty"):
        shopping.checkout(uow, ANN, 1.0, policies=policies)  # no cart yet: nothing in it
    shopping.view_cart(uow, ANN, 1.0)
    with pytest.raises(EmptyCart, match="user user-000001: the cart is empty"):
        shopping.checkout(uow, ANN, 2.0, policies=policies)
    assert len(uow.orders) == 0 and len(uow.reservations) == 0


def assert_no_trace(uow, user_id, cart_before, events):
    assert len(uow.orders) == 0
    assert len(uow.reservations) == 0
    assert len(uow.histories) == 0
    assert all(not c.held and not c.used for c in uow.coupons.values())
    assert untouched_stock(uow)
    assert cart_state(uow, user_id) == cart_before
    assert events == []


def test_out_of_stock_checkout_leaves_no_trace(uow, policies, place, fill_cart, events):
    fill_cart(ANN, {BOOK: 2, LAMP: 2, MUG: 1}, coupons=("SAVE10",))
    place(BOB, {LAMP: 1})  # one of the two lamps goes to Bob after Ann added both

    def books():
        coupons = {c.code: (dict(c.held), c.used) for c in uow.coupons.values()}
        stock = {sku: stock_of(uow, sku) for sku in INITIAL_STOCK}
        return len(uow.orders), len(uow.reservations), len(uow.histories), coupons, stock

    before, cart_before = books(), cart_state(uow, ANN)
    events.clear()
    with pytest.raises(OutOfStock) as info:
        shopping.checkout(uow, ANN, 5.0, policies=policies)
    assert str(info.value) == "SKU-LAMP: 2 requested, 1 available"
    assert books() == before and before[:2] == (1, 1)  # Bob's order and reservation only
    assert cart_state(uow, ANN) == cart_before
    assert events == []


def test_out_of_stock_after_another_checkout_reserved_the_units(uow, policies, place, fill_cart):
    fill_cart(ANN, {LAMP: 1, BOOK: 1}, coupons=("SINGLE",))
    place(BOB, {LAMP: 2})
    with pytest.raises(OutOfStock, match=r"^SKU-LAMP: 1 requested, 0 available$"):
        shopping.checkout(uow, ANN, 5.0, policies=policies)
    assert len(uow.orders) == 1 and len(uow.reservations) == 1
    assert uow.coupons.get("SINGLE").held == {}
    assert stock_of(uow, LAMP) == (2, 2, 0, 0)
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)
    assert uow.carts.get(ANN).lines == {LAMP: 1, BOOK: 1}


def test_a_failure_half_way_through_checkout_leaves_nothing(
    uow, policies, fill_cart, events, monkeypatch
):
    fill_cart(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    before = cart_state(uow, ANN)
    events.clear()
    reached = []

    def crash(self, order_id):
        # by now the stock is reserved, the coupon held and the order added
        reached.append(
            (
                uow.stock.find_readonly(BOOK).reserved,
                dict(uow.coupons.find_readonly("SAVE10").held),
                order_id in uow.orders,
            )
        )
        raise RuntimeError("database went away")

    monkeypatch.setattr(CustomerHistory, "add_order", crash)
    with pytest.raises(RuntimeError, match="database went away"):
        shopping.checkout(uow, ANN, 5.0, policies=policies)
    assert reached == [(2, {"order-000001": ANN}, True)]
    assert_no_trace(uow, ANN, before, events)


def test_a_product_removed_from_the_catalog_fails_checkout(uow, policies, fill_cart, events):
    fill_cart(ANN, {BOOK: 2, MUG: 1})
    with uow:
        uow.products.remove(MUG)
        uow.commit()
    before = cart_state(uow, ANN)
    events.clear()
    with pytest.raises(NotFound, match=r"product 'SKU-MUG' not found"):
        shopping.checkout(uow, ANN, 5.0, policies=policies)
    assert_no_trace(uow, ANN, before, events)
    shopping.remove_from_cart(uow, ANN, MUG, 6.0)
    assert shopping.checkout(uow, ANN, 7.0, policies=policies) == "order-000001"


def test_a_coupon_that_expired_since_it_was_applied_fails_checkout(
    uow, policies, fill_cart, events
):
    fill_cart(ANN, {BOOK: 2}, coupons=("OLD",), now=5.0)
    before = cart_state(uow, ANN)
    events.clear()
    with pytest.raises(CouponExpired, match=r"coupon OLD expired at 10\.0, now is 10\.0"):
        shopping.checkout(uow, ANN, 10.0, policies=policies)
    assert_no_trace(uow, ANN, before, events)


# --- begin_payment ----------------------------------------------------------------------------
def test_begin_payment_opens_a_pending_payment(uow, policies, place, card, events):
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    events.clear()
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    assert start == shopping.PaymentStart("payment-000001", "call_gateway", "pending")
    payment = uow.payments.get("payment-000001")
    assert (payment.order_id, payment.amount, payment.status) == (
        order_id,
        Money(3803),
        PaymentStatus.PENDING,
    )
    assert (payment.method_kind, payment.fingerprint, payment.gateway) == (
        "card",
        "visa-4242",
        "card-a",
    )
    assert (payment.idempotency_key, payment.created_at, payment.attempts) == ("k1", 10.0, 0)
    assert uow.idempotency.get("k1") == IdempotencyRecord(
        "k1", "order-000001|3803|USD|visa-4242", "payment-000001", "pending", 10.0
    )
    history = uow.histories.get(ANN)
    assert (history.attempt_times, history.failed_payments) == ([10.0], 0)
    assert uow.orders.get(order_id).status is OrderStatus.PENDING
    assert events == []
    assert "4242424242424242" not in repr(payment) + repr(card)


def test_replaying_the_same_request_charges_nothing(uow, policies, place, card, events):
    order_id = place(ANN, {BOOK: 2})
    first = begin(uow, policies, order_id, card, key="k1", now=10.0)
    events.clear()
    again = begin(uow, policies, order_id, card, key="k1", now=11.0)
    assert again == shopping.PaymentStart(first.payment_id, "replayed", "pending")
    assert events == [DuplicateChargePrevented(at=11.0, idempotency_key="k1", order_id=order_id)]
    assert shopping.record_gateway_answer(uow, first.payment_id, "approved", 12.0) == "captured"
    events.clear()
    after = begin(uow, policies, order_id, card, key="k1", now=13.0)
    assert after == shopping.PaymentStart(first.payment_id, "replayed", "captured")
    assert events == [DuplicateChargePrevented(at=13.0, idempotency_key="k1", order_id=order_id)]
    assert len(uow.payments) == 1 and len(uow.idempotency) == 1
    assert [(e.kind, e.amount) for e in uow.ledger] == [(EntryKind.CHARGE, Money(3199))]
    assert uow.histories.get(ANN).attempt_times == [10.0]


def test_the_same_key_with_other_parameters_conflicts(uow, policies, place, card):
    order_id = place(ANN, {BOOK: 2})
    other_order = place(BOB, {PEN: 1})
    begin(uow, policies, order_id, card, key="k1", now=10.0)
    mastercard = make_card("5555 5555 5555 4444")
    with pytest.raises(IdempotencyConflict) as info:
        begin(uow, policies, order_id, mastercard, key="k1", now=11.0)
    assert str(info.value) == (
        "idempotency key 'k1' was first used for 'order-000001|3199|USD|visa-4242', "
        "now with 'order-000001|3199|USD|mastercard-4444'"
    )
    with pytest.raises(IdempotencyConflict, match=r"now with 'order-000002\|714\|USD\|visa-4242'"):
        begin(uow, policies, other_order, card, key="k1", now=12.0)
    assert list(uow.payments.values()) == [uow.payments.get("payment-000001")]
    assert uow.idempotency.get("k1").payment_id == "payment-000001"
    assert uow.payments.get("payment-000001").events == []


@pytest.mark.parametrize(
    ("number", "year", "message"),
    [
        (
            "4242424242424241",
            2030,
            "card ending 4241: number fails the Luhn check or has 16 digits (12-19 expected)",
        ),
        ("4242424242424242", 2025, "card ending 4242: expired 12/2025 (now 2026-01)"),
    ],
)
def test_an_invalid_card_stores_nothing(uow, policies, place, number, year, message):
    order_id = place(ANN, {BOOK: 2})
    with pytest.raises(InvalidPaymentMethod) as info:
        begin(uow, policies, order_id, make_card(number, year=year), key="k1", now=10.0)
    assert str(info.value) == message
    assert (len(uow.payments), len(uow.idempotency)) == (0, 0)
    assert uow.histories.get(ANN).attempt_times == []
    assert uow.orders.get(order_id).status is OrderStatus.PENDING
    assert stock_of(uow, BOOK) == (10, 2, 0, 8)
    # the failed attempt drew no id
    assert begin(uow, policies, order_id, make_card(), key="k1", now=11.0).payment_id == (
        "payment-000001"
    )


def test_paying_an_order_that_is_not_pending_raises(uow, policies, place, card, pay):
    order_id = place(ANN, {BOOK: 2})
    shopping.abandon_payment(uow, pay(order_id, "failed"), 5.0)
    with pytest.raises(InvalidValue, match="order order-000001 is cancelled, not awaiting payment"):
        begin(uow, policies, order_id, card, key="k-new", now=6.0)
    assert len(uow.payments) == 1 and "k-new" not in uow.idempotency
    with pytest.raises(NotFound, match=r"order 'order-999999' not found"):
        begin(uow, policies, "order-999999", card, key="k-x", now=6.0)


def test_an_expired_idempotency_record_is_replaced(uow, policies, place, card):
    order_id = place(ANN, {PEN: 1})
    first = begin(uow, policies, order_id, card, key="k1", now=10.0)
    shopping.record_gateway_answer(uow, first.payment_id, "failed", 11.0)
    later = 10.0 + DAY + 1.0
    second = begin(uow, policies, order_id, card, key="k1", now=later)
    assert second == shopping.PaymentStart("payment-000002", "call_gateway", "pending")
    assert uow.idempotency.get("k1") == IdempotencyRecord(
        "k1", "order-000001|714|USD|visa-4242", "payment-000002", "pending", later
    )
    assert len(uow.idempotency) == 1


def test_a_payment_blocked_by_the_fraud_rules_cancels_the_order(uow, policies, place, events):
    strict = replace(policies, fraud=FraudRules(review_at=20, block_at=20))
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    events.clear()
    german = make_card(country="DE")
    start = begin(uow, strict, order_id, german, key="k1", now=10.0)
    assert start == shopping.PaymentStart("payment-000001", "blocked", "declined")
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.last_error, payment.attempts) == (
        PaymentStatus.DECLINED,
        "fraud: country_mismatch",
        1,
    )
    order = uow.orders.get(order_id)
    assert (order.status, order.cancel_reason) == (
        OrderStatus.CANCELLED,
        "payment blocked by fraud rules",
    )
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.reason) == (
        inventory.RELEASED,
        inventory.PAYMENT_FAILED,
    )
    assert stock_of(uow, BOOK) == (10, 0, 0, 10) and stock_of(uow, MUG) == (5, 0, 0, 5)
    coupon = uow.coupons.get("SAVE10")
    assert (coupon.held, coupon.used) == ({}, 0)
    assert uow.idempotency.get("k1").outcome == "declined"
    history = uow.histories.get(ANN)
    assert (history.attempt_times, history.failed_payments) == ([10.0], 1)
    assert list(uow.ledger) == []
    assert list(uow.notifications) == [
        Notification(10.0, ANN, order_id, "Your order is now cancelled")
    ]
    assert (
        PaymentDeclined(
            at=10.0,
            payment_id=start.payment_id,
            order_id=order_id,
            reason="fraud: country_mismatch",
        )
        in events
    )
    assert [e for e in events if isinstance(e, StockReleased)] == [
        StockReleased(
            at=10.0,
            sku=BOOK,
            quantity=2,
            reservation_id="reservation-000001",
            reason="payment_failed",
        ),
        StockReleased(
            at=10.0,
            sku=MUG,
            quantity=1,
            reservation_id="reservation-000001",
            reason="payment_failed",
        ),
    ]
    # a replay of the blocked request replays the decline
    again = begin(uow, strict, order_id, german, key="k1", now=11.0)
    assert again == shopping.PaymentStart("payment-000001", "replayed", "declined")


def test_a_review_decision_still_calls_the_gateway(uow, policies, place):
    review = replace(policies, fraud=FraudRules(review_at=20, block_at=90))
    order_id = place(ANN, {PEN: 1})
    start = begin(uow, review, order_id, make_card(country="DE"), key="k1", now=10.0)
    assert start.action == "call_gateway"
    assert uow.histories.get(ANN).failed_payments == 0


# --- record_gateway_answer --------------------------------------------------------------------
def test_an_approved_answer_captures_and_sells(uow, policies, place, card, events):
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    events.clear()
    outcome = shopping.record_gateway_answer(
        uow, start.payment_id, "approved", 12.0, gateway="card-b"
    )
    assert outcome == "captured"
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.attempts, payment.gateway, payment.captured) == (
        PaymentStatus.CAPTURED,
        1,
        "card-b",
        Money(3803),
    )
    order = uow.orders.get(order_id)
    assert (order.status, order.payment_id, order.timestamps[OrderStatus.PROCESSING]) == (
        OrderStatus.PROCESSING,
        start.payment_id,
        12.0,
    )
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.closed_at) == (inventory.COMMITTED, 12.0)
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)
    assert stock_of(uow, MUG) == (4, 0, 1, 4)
    coupon = uow.coupons.get("SAVE10")
    assert (coupon.held, coupon.used, coupon.used_by) == ({}, 1, {ANN: 1})
    assert list(uow.ledger) == [
        LedgerEntry(1, EntryKind.CHARGE, order_id, start.payment_id, Money(3803), 12.0)
    ]
    assert uow.idempotency.get("k1").outcome == "captured"
    assert uow.activity.get(ANN).recent_refs(ActivityKind.PURCHASED) == [order_id]
    assert list(uow.notifications) == [
        Notification(12.0, ANN, order_id, "Your order is now processing")
    ]
    assert events == [
        StockCommitted(at=12.0, sku=BOOK, quantity=2, reservation_id="reservation-000001"),
        StockCommitted(at=12.0, sku=MUG, quantity=1, reservation_id="reservation-000001"),
        CouponRedeemed(at=12.0, code="SAVE10", user_id=ANN, order_id=order_id),
        OrderStatusChanged(
            at=12.0, order_id=order_id, user_id=ANN, old="pending", new="processing"
        ),
        PaymentCaptured(
            at=12.0, payment_id=start.payment_id, order_id=order_id, amount=Money(3803)
        ),
    ]


def test_a_declined_answer_cancels_and_releases_everything(uow, policies, place, card):
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    assert shopping.record_gateway_answer(uow, start.payment_id, "declined", 12.0) == "declined"
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.last_error, payment.attempts) == (
        PaymentStatus.DECLINED,
        "declined by the issuer",
        1,
    )
    order = uow.orders.get(order_id)
    assert (order.status, order.cancel_reason, order.refund_due) == (
        OrderStatus.CANCELLED,
        "payment declined",
        Money(0),
    )
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.reason) == (
        inventory.RELEASED,
        inventory.PAYMENT_FAILED,
    )
    assert stock_of(uow, BOOK) == (10, 0, 0, 10) and stock_of(uow, MUG) == (5, 0, 0, 5)
    coupon = uow.coupons.get("SAVE10")
    assert (coupon.held, coupon.held_by, coupon.used) == ({}, {}, 0)
    assert list(uow.ledger) == []
    assert uow.idempotency.get("k1").outcome == "declined"
    assert uow.histories.get(ANN).failed_payments == 1
    assert [n.text for n in uow.notifications] == ["Your order is now cancelled"]


def test_a_decline_after_the_reservation_ran_out_expires_it(uow, policies, place, card):
    order_id = place(ANN, {BOOK: 2}, now=1.0)
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    shopping.record_gateway_answer(uow, start.payment_id, "declined", 901.0)
    reservation = uow.reservations.get("reservation-000001")
    assert (reservation.status, reservation.reason, reservation.closed_at) == (
        inventory.EXPIRED,
        inventory.EXPIRED_REASON,
        901.0,
    )
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)


def test_failed_and_timed_out_answers_wait_for_a_retry_that_succeeds(uow, policies, place, card):
    order_id = place(ANN, {BOOK: 2}, coupons=("SAVE10",))
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    assert shopping.record_gateway_answer(uow, start.payment_id, "failed", 11.0) == "failed"
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.attempts, payment.last_error) == (
        PaymentStatus.FAILED,
        1,
        "failed",
    )
    assert uow.idempotency.get("k1").outcome == "failed"
    assert uow.orders.get(order_id).status is OrderStatus.PENDING
    assert stock_of(uow, BOOK) == (10, 2, 0, 8)
    assert uow.coupons.get("SAVE10").held == {order_id: ANN}
    assert shopping.record_gateway_answer(uow, start.payment_id, "timeout", 12.0) == "failed"
    payment = uow.payments.get(start.payment_id)
    assert (payment.attempts, payment.last_error) == (2, "timeout")
    assert list(uow.ledger) == []
    assert shopping.record_gateway_answer(uow, start.payment_id, "approved", 13.0) == "captured"
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.attempts) == (PaymentStatus.CAPTURED, 3)
    assert uow.orders.get(order_id).status is OrderStatus.PROCESSING
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)
    # 25.00 - 2.50 + 1.80 + 4.99
    assert [(e.seq, e.kind, e.amount) for e in uow.ledger] == [(1, EntryKind.CHARGE, Money(2929))]
    assert uow.idempotency.get("k1").outcome == "captured"


def test_an_unknown_answer_raises_and_changes_nothing(uow, policies, place, card, events):
    order_id = place(ANN, {BOOK: 2})
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    events.clear()
    with pytest.raises(InvalidValue, match="unknown gateway answer 'maybe'"):
        shopping.record_gateway_answer(uow, start.payment_id, "maybe", 11.0, gateway="card-b")  # type: ignore[arg-type]
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.attempts, payment.gateway) == (
        PaymentStatus.PENDING,
        0,
        "card-a",
    )
    assert uow.idempotency.get("k1").outcome == "pending"
    assert events == []


def test_a_second_approval_is_an_illegal_transition(uow, policies, place, pay):
    order_id = place(ANN, {BOOK: 2})
    payment_id = pay(order_id)
    with pytest.raises(IllegalTransition, match="cannot go from captured to authorized"):
        shopping.record_gateway_answer(uow, payment_id, "approved", 20.0)
    assert len(uow.ledger) == 1
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)


def test_an_answer_for_an_unknown_payment_raises(uow):
    with pytest.raises(NotFound, match=r"payment 'payment-000009' not found"):
        shopping.record_gateway_answer(uow, "payment-000009", "approved", 1.0)


# --- abandon_payment --------------------------------------------------------------------------
def test_abandoning_a_failed_payment_cancels_and_releases(uow, policies, place, card):
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    start = begin(uow, policies, order_id, card, key="k1", now=10.0)
    shopping.record_gateway_answer(uow, start.payment_id, "timeout", 11.0)
    shopping.abandon_payment(uow, start.payment_id, 12.0)
    order = uow.orders.get(order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "payment failed")
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.reason) == (
        inventory.RELEASED,
        inventory.PAYMENT_FAILED,
    )
    assert stock_of(uow, BOOK) == (10, 0, 0, 10) and stock_of(uow, MUG) == (5, 0, 0, 5)
    assert uow.coupons.get("SAVE10").held == {}
    assert uow.payments.get(start.payment_id).status is PaymentStatus.CANCELLED  # closed for good
    assert uow.histories.get(ANN).failed_payments == 1
    assert list(uow.ledger) == []
    with pytest.raises(
        IllegalTransition, match="payment payment-000001 is cancelled: only a pending or failed"
    ):
        shopping.abandon_payment(uow, start.payment_id, 13.0)


def test_abandoning_a_captured_payment_is_refused(uow, place, pay):
    order_id = place(ANN, {BOOK: 2})
    payment_id = pay(order_id)
    with pytest.raises(IllegalTransition):
        shopping.abandon_payment(uow, payment_id, 10.0)
    order = uow.orders.get(order_id)
    assert (order.status, order.refund_due) == (OrderStatus.PROCESSING, Money(0))


@pytest.mark.parametrize("ending", ["declined", "abandoned"])
def test_a_failed_attempt_counts_once_for_the_velocity_rule(uow, policies, place, card, ending):
    rules = replace(
        policies,
        fraud=FraudRules(max_attempts_in_window=2, velocity_weight=100, review_at=50, block_at=80),
    )
    first = place(ANN, {PEN: 1}, now=1.0)
    start = begin(uow, rules, first, card, key="k1", now=10.0)
    if ending == "declined":
        shopping.record_gateway_answer(uow, start.payment_id, "declined", 11.0)
    else:
        shopping.record_gateway_answer(uow, start.payment_id, "timeout", 11.0)
        shopping.abandon_payment(uow, start.payment_id, 11.0)
    history = uow.histories.get(ANN)
    assert (history.attempt_times, history.failed_payments) == ([10.0], 1)
    second = place(ANN, {PEN: 1}, now=20.0)
    # one earlier attempt in the window, the limit is two: the velocity rule must not fire
    assert begin(uow, rules, second, card, key="k2", now=30.0).action == "call_gateway"


def test_the_velocity_rule_blocks_the_attempt_above_the_limit(uow, policies, place, card):
    rules = replace(
        policies,
        fraud=FraudRules(max_attempts_in_window=2, velocity_weight=100, review_at=50, block_at=80),
    )
    for n in (1, 2):
        order_id = place(ANN, {PEN: 1}, now=float(n))
        start = begin(uow, rules, order_id, card, key=f"k{n}", now=10.0 * n)
        assert start.action == "call_gateway"
        shopping.record_gateway_answer(uow, start.payment_id, "approved", 10.0 * n + 1)
    third = place(ANN, {PEN: 1}, now=30.0)
    blocked = begin(uow, rules, third, card, key="k3", now=30.0)
    assert blocked == shopping.PaymentStart("payment-000003", "blocked", "declined")
    assert uow.payments.get("payment-000003").last_error == "fraud: velocity"


def test_remove_coupon_takes_the_code_off_the_cart(uow, policies):
    shopping.add_to_cart(uow, ANN, BOOK, 1, 1.0)
    shopping.apply_coupon(uow, ANN, "SAVE10", 2.0, policies=policies)
    assert uow.carts.get(ANN).coupon_codes == ["SAVE10"]
    shopping.remove_coupon(uow, ANN, "SAVE10", 3.0)
    assert uow.carts.get(ANN).coupon_codes == []
    assert shopping.price_user_cart(uow, ANN, 4.0, policies=policies).discount == Money(0)
