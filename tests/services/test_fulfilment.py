from __future__ import annotations

import random
from collections import Counter

import pytest

from sim.domain import inventory
from sim.domain.errors import (
    CouponRejected,
    EmptyCart,
    IllegalTransition,
    InvalidReturn,
    NotFound,
    OutOfStock,
    PermissionDenied,
)
from sim.domain.events import DuplicateChargePrevented, OrderStatusChanged
from sim.domain.ledger import EntryKind, LedgerEntry, balance, reconcile
from sim.domain.money import Money, total
from sim.domain.orders import OrderStatus
from sim.domain.payments import PaymentStatus
from sim.services.handlers import accounts, fulfilment, shopping
from sim.services.subscribers import Notification
from tests.services.conftest import (
    ADMIN,
    ANN,
    BOB,
    BOOK,
    INITIAL_STOCK,
    LAMP,
    MERCHANT,
    MUG,
    PASSWORD,
    PEN,
    make_card,
)


def stock_of(uow, sku):
    item = uow.stock.get(sku)
    return item.on_hand, item.reserved, item.sold, item.available


def texts(uow, order_id):
    return [n.text for n in uow.notifications if n.order_id == order_id]


@pytest.fixture
def paid_order(place, pay):
    """Ann's order of 2 books and a mug with SAVE10 (total 38.03), paid at t=3."""
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    pay(order_id, now=2.0)
    return order_id


@pytest.fixture
def delivered_order(uow, paid_order):
    fulfilment.ship_order(uow, ADMIN, paid_order, 10.0)
    fulfilment.deliver_order(uow, ADMIN, paid_order, 20.0)
    return paid_order


# --- cancel_order -----------------------------------------------------------------------------
def test_cancelling_an_unpaid_order_releases_its_holds(uow, place, events):
    order_id = place(ANN, {BOOK: 2, MUG: 1}, coupons=("SAVE10",))
    events.clear()
    refund = fulfilment.cancel_order(uow, ANN, order_id, 5.0, "changed my mind")
    assert refund == Money(0)
    order = uow.orders.get(order_id)
    assert (order.status, order.cancel_reason, order.refunded) == (
        OrderStatus.CANCELLED,
        "changed my mind",
        Money(0),
    )
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.reason) == (inventory.RELEASED, inventory.CANCELLED)
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)
    assert stock_of(uow, MUG) == (5, 0, 0, 5)
    assert uow.coupons.get("SAVE10").held == {}
    assert list(uow.ledger) == []
    assert list(uow.notifications) == [
        Notification(5.0, ANN, order_id, "Your order is now cancelled")
    ]
    assert events[-1] == OrderStatusChanged(
        at=5.0, order_id=order_id, user_id=ANN, old="pending", new="cancelled"
    )


def test_cancelling_an_unpaid_order_after_its_reservation_ran_out_expires_it(uow, place):
    order_id = place(ANN, {BOOK: 2}, now=1.0)
    fulfilment.cancel_order(uow, ANN, order_id, 2000.0, "too late")
    reservation = uow.reservations.get("reservation-000001")
    assert (reservation.status, reservation.reason) == (
        inventory.EXPIRED,
        inventory.EXPIRED_REASON,
    )
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)


def test_cancelling_a_paid_order_refunds_it_in_full_and_restocks(uow, paid_order):
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)
    refund = fulfilment.cancel_order(uow, ANN, paid_order, 7.0, "found it cheaper")
    assert refund == Money(3803)
    order = uow.orders.get(paid_order)
    assert (order.status, order.refunded, order.refund_due, order.net_paid) == (
        OrderStatus.CANCELLED,
        Money(3803),
        Money(0),
        Money(0),
    )
    payment = uow.payments.get(order.payment_id)
    assert (payment.status, payment.refunded) == (PaymentStatus.REFUNDED, Money(3803))
    book, mug = uow.stock.get(BOOK), uow.stock.get(MUG)
    assert (book.on_hand, book.reserved, book.sold, book.returned) == (10, 0, 2, 2)
    assert (mug.on_hand, mug.reserved, mug.sold, mug.returned) == (5, 0, 1, 1)
    book.check_invariants()
    mug.check_invariants()
    assert uow.coupons.get("SAVE10").used == 1  # a paid use stays counted
    assert list(uow.ledger) == [
        LedgerEntry(1, EntryKind.CHARGE, paid_order, "payment-000001", Money(3803), 3.0),
        LedgerEntry(2, EntryKind.REFUND, paid_order, "payment-000001", Money(3803), 7.0),
    ]
    assert balance(uow.ledger) == Money(0)
    assert reconcile(list(uow.ledger), uow.orders.values()) == []
    assert texts(uow, paid_order) == ["Your order is now processing", "Your order is now cancelled"]


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        (
            BOB,
            "user user-000002 (customer) may not act on order order-000001 of user user-000001",
        ),
        (
            MERCHANT,
            "user user-000004 (merchant) may not act on order order-000001 of user user-000001",
        ),
    ],
)
def test_only_the_customer_or_an_admin_may_cancel(uow, paid_order, events, actor, message):
    events.clear()
    with pytest.raises(PermissionDenied) as info:
        fulfilment.cancel_order(uow, actor, paid_order, 7.0, "mischief")
    assert str(info.value) == message
    assert uow.orders.get(paid_order).status is OrderStatus.PROCESSING
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)
    assert len(uow.ledger) == 1
    assert events == []
    with pytest.raises(NotFound, match=r"user 'user-999999' not found"):
        fulfilment.cancel_order(uow, "user-999999", paid_order, 7.0, "ghost")


def test_an_admin_may_cancel_any_order(uow, paid_order):
    assert fulfilment.cancel_order(uow, ADMIN, paid_order, 7.0, "fraud suspected") == Money(3803)
    order = uow.orders.get(paid_order)
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "fraud suspected")
    assert [e.kind for e in uow.ledger] == [EntryKind.CHARGE, EntryKind.REFUND]


def test_a_shipped_order_cannot_be_cancelled(uow, paid_order):
    fulfilment.ship_order(uow, ADMIN, paid_order, 10.0)
    with pytest.raises(IllegalTransition, match="order order-000001: cannot go from shipped to "):
        fulfilment.cancel_order(uow, ANN, paid_order, 11.0, "too late")
    assert uow.orders.get(paid_order).status is OrderStatus.SHIPPED
    assert len(uow.ledger) == 1
    assert stock_of(uow, BOOK) == (8, 0, 2, 8)


def test_a_cancelled_order_cannot_be_cancelled_again(uow, place):
    order_id = place(ANN, {PEN: 1})
    fulfilment.cancel_order(uow, ANN, order_id, 2.0, "first")
    with pytest.raises(IllegalTransition, match="cannot go from cancelled to cancelled"):
        fulfilment.cancel_order(uow, ANN, order_id, 3.0, "second")
    assert uow.orders.get(order_id).cancel_reason == "first"


# --- expire_order -----------------------------------------------------------------------------
def test_expire_order_before_and_after_the_reservation_runs_out(uow, place, events):
    order_id = place(ANN, {BOOK: 2}, coupons=("SAVE10",), now=1.0)
    events.clear()
    assert fulfilment.expire_order(uow, order_id, 900.0) is False
    assert uow.orders.get(order_id).status is OrderStatus.PENDING
    assert stock_of(uow, BOOK) == (10, 2, 0, 8)
    assert events == []
    assert fulfilment.expire_order(uow, order_id, 901.0) is True  # expires at 1 + 15 min
    order = uow.orders.get(order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "reservation expired")
    reservation = uow.reservations.get(order.reservation_id)
    assert (reservation.status, reservation.closed_at) == (inventory.EXPIRED, 901.0)
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)
    assert uow.coupons.get("SAVE10").held == {}
    assert texts(uow, order_id) == ["Your order is now cancelled"]
    assert fulfilment.expire_order(uow, order_id, 902.0) is False


def test_a_paid_order_never_expires(uow, paid_order):
    assert fulfilment.expire_order(uow, paid_order, 10_000.0) is False
    assert uow.orders.get(paid_order).status is OrderStatus.PROCESSING


def test_an_order_paid_after_its_reservation_ran_out_but_before_expiry_is_sold(uow, place, pay):
    order_id = place(ANN, {LAMP: 2}, now=1.0)
    pay(order_id, now=950.0)
    assert uow.orders.get(order_id).status is OrderStatus.PROCESSING
    assert stock_of(uow, LAMP) == (0, 0, 2, 0)
    assert fulfilment.expire_order(uow, order_id, 960.0) is False


# --- ship and deliver -------------------------------------------------------------------------
def test_ship_and_deliver(uow, place, paid_order):
    unpaid = place(BOB, {PEN: 1})
    with pytest.raises(IllegalTransition, match="order order-000002: cannot go from pending to "):
        fulfilment.ship_order(uow, ADMIN, unpaid, 5.0)
    with pytest.raises(IllegalTransition, match="cannot go from processing to delivered"):
        fulfilment.deliver_order(uow, ADMIN, paid_order, 5.0)
    fulfilment.ship_order(uow, ADMIN, paid_order, 10.0)
    fulfilment.deliver_order(uow, ADMIN, paid_order, 20.0)
    order = uow.orders.get(paid_order)
    assert order.status is OrderStatus.DELIVERED
    assert order.timestamps == {
        OrderStatus.PENDING: 1.0,
        OrderStatus.PROCESSING: 3.0,
        OrderStatus.SHIPPED: 10.0,
        OrderStatus.DELIVERED: 20.0,
    }
    assert list(uow.notifications) == [
        Notification(3.0, ANN, paid_order, "Your order is now processing"),
        Notification(10.0, ANN, paid_order, "Your order is now shipped"),
        Notification(20.0, ANN, paid_order, "Your order is now delivered"),
    ]
    with pytest.raises(NotFound, match=r"order 'order-000009' not found"):
        fulfilment.ship_order(uow, ADMIN, "order-000009", 30.0)


# --- returns ----------------------------------------------------------------------------------
def test_a_return_in_two_steps_refunds_exactly_the_order_total(uow, delivered_order):
    order_id = delivered_order
    # line totals: books 25.00 - 2.50 + 1.80 = 24.30, mug 8.99 - 0.90 + 0.65 = 8.74
    assert fulfilment.request_return(uow, ANN, order_id, {BOOK: 1}, 30.0) == Money(1215)
    assert uow.orders.get(order_id).status is OrderStatus.RETURN_REQUESTED
    assert fulfilment.receive_return(uow, ADMIN, order_id, 40.0) == {BOOK: 1}
    book = uow.stock.get(BOOK)
    assert (book.on_hand, book.returned, book.sold) == (9, 1, 2)
    assert fulfilment.refund_return(uow, ADMIN, order_id, 50.0) == Money(1215)
    order = uow.orders.get(order_id)
    assert (order.status, order.refunded, order.returned) == (
        OrderStatus.REFUNDED,
        Money(1215),
        {BOOK: 1},
    )
    payment = uow.payments.get(order.payment_id)
    assert (payment.status, payment.refunded) == (PaymentStatus.PARTIALLY_REFUNDED, Money(1215))
    assert balance(uow.ledger) == Money(3803 - 1215)
    assert reconcile(list(uow.ledger), uow.orders.values()) == []

    # the rest: 12.15 + 8.74, and the shipping 4.99 with the last unit
    rest = {BOOK: 1, MUG: 1}
    assert fulfilment.request_return(uow, ANN, order_id, rest, 60.0) == Money(2588)
    assert fulfilment.receive_return(uow, ADMIN, order_id, 70.0) == rest
    assert fulfilment.refund_return(uow, ADMIN, order_id, 80.0) == Money(2588)
    order = uow.orders.get(order_id)
    assert (order.status, order.refunded, order.net_paid, order.returned) == (
        OrderStatus.REFUNDED,
        Money(3803),
        Money(0),
        {BOOK: 2, MUG: 1},
    )
    payment = uow.payments.get(order.payment_id)
    assert (payment.status, payment.refunded) == (PaymentStatus.REFUNDED, Money(3803))
    assert stock_of(uow, BOOK) == (10, 0, 2, 10)
    assert stock_of(uow, MUG) == (5, 0, 1, 5)
    assert [(e.seq, e.kind, e.amount, e.at) for e in uow.ledger] == [
        (1, EntryKind.CHARGE, Money(3803), 3.0),
        (2, EntryKind.REFUND, Money(1215), 50.0),
        (3, EntryKind.REFUND, Money(2588), 80.0),
    ]
    assert balance(uow.ledger) == Money(0)
    assert reconcile(list(uow.ledger), uow.orders.values()) == []
    assert (
        texts(uow, order_id)[-6:]
        == [
            "Your order is now return_requested",
            "Your order is now returned",
            "Your order is now refunded",
        ]
        * 2
    )
    with pytest.raises(InvalidReturn, match="SKU-BOOK: cannot return 1 unit\\(s\\), 0 of 2 left"):
        fulfilment.request_return(uow, ANN, order_id, {BOOK: 1}, 90.0)


def test_returning_one_unit_at_a_time_spreads_the_rounding(uow, place, pay):
    # 3 mugs 26.97 - 10 % (2.70) = 24.27, tax 1.94 (1.9416): line total 26.21; total 31.20
    order_id = place(ANN, {MUG: 3}, coupons=("SAVE10",))
    pay(order_id)
    assert uow.orders.get(order_id).total == Money(3120)
    fulfilment.ship_order(uow, ADMIN, order_id, 10.0)
    fulfilment.deliver_order(uow, ADMIN, order_id, 11.0)
    refunds = []
    for step in range(3):
        now = 20.0 + 10 * step
        refunds.append(fulfilment.request_return(uow, ANN, order_id, {MUG: 1}, now))
        fulfilment.receive_return(uow, ADMIN, order_id, now + 1)
        assert fulfilment.refund_return(uow, ADMIN, order_id, now + 2) == refunds[-1]
    # 26.21 / 3 = 8.7367 -> 8.74; 2/3 = 17.4733 -> 17.47 - 8.74 = 8.73; 26.21 - 17.47 + 4.99
    assert refunds == [Money(874), Money(873), Money(1373)]
    assert total(refunds) == Money(3120)
    assert balance(uow.ledger) == Money(0)
    assert reconcile(list(uow.ledger), uow.orders.values()) == []
    assert stock_of(uow, MUG) == (5, 0, 3, 5)


def test_bad_returns_are_rejected(uow, place, delivered_order):
    with pytest.raises(IllegalTransition, match="cannot go from pending to return_requested"):
        fulfilment.request_return(uow, BOB, place(BOB, {PEN: 1}), {PEN: 1}, 25.0)
    with pytest.raises(PermissionDenied, match="user user-000002 \\(customer\\) may not act"):
        fulfilment.request_return(uow, BOB, delivered_order, {BOOK: 1}, 30.0)
    with pytest.raises(InvalidReturn, match="SKU-BOOK: cannot return 3 unit\\(s\\), 2 of 2 left"):
        fulfilment.request_return(uow, ANN, delivered_order, {BOOK: 3}, 30.0)
    with pytest.raises(InvalidReturn, match="order order-000001: no line for SKU-PEN"):
        fulfilment.request_return(uow, ANN, delivered_order, {PEN: 1}, 30.0)
    with pytest.raises(IllegalTransition, match="cannot go from delivered to returned"):
        fulfilment.receive_return(uow, ADMIN, delivered_order, 30.0)
    with pytest.raises(IllegalTransition, match="cannot go from delivered to refunded"):
        fulfilment.refund_return(uow, ADMIN, delivered_order, 30.0)
    order = uow.orders.get(delivered_order)
    assert (order.status, order.pending_return, order.refund_due) == (
        OrderStatus.DELIVERED,
        {},
        Money(0),
    )
    assert len(uow.ledger) == 1
    # an admin may open a return for the customer
    assert fulfilment.request_return(uow, ADMIN, delivered_order, {MUG: 1}, 31.0) == Money(874)


def test_a_return_is_refunded_once(uow, delivered_order):
    fulfilment.request_return(uow, ANN, delivered_order, {MUG: 1}, 30.0)
    fulfilment.receive_return(uow, ADMIN, delivered_order, 31.0)
    assert fulfilment.refund_return(uow, ADMIN, delivered_order, 32.0) == Money(874)
    with pytest.raises(IllegalTransition, match="cannot go from refunded to refunded"):
        fulfilment.refund_return(uow, ADMIN, delivered_order, 33.0)
    assert [e.amount for e in uow.ledger] == [Money(3803), Money(874)]


# --- bulk orders ------------------------------------------------------------------------------
def test_bulk_place_orders_for_a_merchant(uow, policies, events):
    placed = fulfilment.bulk_place_orders(
        uow, MERCHANT, [(ANN, {BOOK: 2}), (BOB, {BOOK: 3, MUG: 1})], 5.0, policies=policies
    )
    assert placed == ["order-000001", "order-000002"]
    first, second = (uow.orders.get(order_id) for order_id in placed)
    # 25.00 + 2.00 + 4.99; 46.49 + 3.72 (3.00 + 0.72) + 4.99
    assert (first.user_id, first.subtotal, first.tax, first.shipping, first.total) == (
        ANN,
        Money(2500),
        Money(200),
        Money(499),
        Money(3199),
    )
    assert (second.user_id, second.subtotal, second.tax, second.shipping, second.total) == (
        BOB,
        Money(4649),
        Money(372),
        Money(499),
        Money(5520),
    )
    assert (first.coupon_codes, first.status) == ((), OrderStatus.PENDING)
    assert stock_of(uow, BOOK) == (10, 5, 0, 5)
    assert stock_of(uow, MUG) == (5, 1, 0, 4)
    assert uow.reservations.get(second.reservation_id).lines == ((BOOK, 3), (MUG, 1))
    assert fulfilment.order_history(uow, ANN) == [first]
    assert fulfilment.order_history(uow, BOB) == [second]
    assert [type(e).__name__ for e in events].count("OrderPlaced") == 2


def test_bulk_place_orders_is_all_or_nothing(uow, policies, events):
    with pytest.raises(OutOfStock, match=r"^SKU-LAMP: 3 requested, 2 available$"):
        fulfilment.bulk_place_orders(
            uow,
            ADMIN,
            [(ANN, {BOOK: 2}), (BOB, {MUG: 1, LAMP: 3}), (ANN, {PEN: 1})],
            5.0,
            policies=policies,
        )
    with pytest.raises(NotFound, match=r"user 'user-999999' not found"):
        fulfilment.bulk_place_orders(
            uow, ADMIN, [(ANN, {BOOK: 2}), ("user-999999", {PEN: 1})], 5.0, policies=policies
        )
    with pytest.raises(NotFound, match=r"product 'SKU-NOPE' not found"):
        fulfilment.bulk_place_orders(
            uow, ADMIN, [(ANN, {BOOK: 2}), (BOB, {"SKU-NOPE": 1})], 5.0, policies=policies
        )
    assert (len(uow.orders), len(uow.reservations), len(uow.histories)) == (0, 0, 0)
    for sku, qty in INITIAL_STOCK.items():
        assert stock_of(uow, sku) == (qty, 0, 0, qty)
    assert events == []
    (placed,) = fulfilment.bulk_place_orders(uow, ADMIN, [(ANN, {LAMP: 2})], 6.0, policies=policies)
    assert [o.id for o in fulfilment.order_history(uow, ANN)] == [placed]
    assert stock_of(uow, LAMP) == (2, 2, 0, 0)


def test_a_customer_may_not_place_bulk_orders(uow, policies):
    with pytest.raises(
        PermissionDenied, match="user user-000001 \\(customer\\) lacks permission manage_orders"
    ):
        fulfilment.bulk_place_orders(uow, ANN, [(ANN, {BOOK: 1})], 5.0, policies=policies)
    assert len(uow.orders) == 0
    assert stock_of(uow, BOOK) == (10, 0, 0, 10)


# --- order history ----------------------------------------------------------------------------
def test_order_history_lists_a_customers_orders_oldest_first(uow, policies, place, pay):
    assert fulfilment.order_history(uow, ANN) == []
    first = place(ANN, {BOOK: 1}, now=1.0)
    other = place(BOB, {PEN: 1}, now=2.0)
    second = place(ANN, {MUG: 1}, now=3.0)
    pay(first, now=4.0)
    fulfilment.cancel_order(uow, ANN, second, 6.0, "oops")
    (bulk,) = fulfilment.bulk_place_orders(uow, MERCHANT, [(ANN, {PEN: 2})], 7.0, policies=policies)
    history = fulfilment.order_history(uow, ANN)
    assert [(o.id, o.status) for o in history] == [
        (first, OrderStatus.PROCESSING),
        (second, OrderStatus.CANCELLED),
        (bulk, OrderStatus.PENDING),
    ]
    assert [o.id for o in fulfilment.order_history(uow, BOB)] == [other]
    assert fulfilment.order_history(uow, MERCHANT) == []


# --- the whole shop, for a while --------------------------------------------------------------
def test_a_long_scripted_scenario_reconciles(uow, policies, events):
    rng = random.Random(20260101)
    customers = [ANN, BOB]
    for n in range(6):
        customers.append(
            accounts.register(uow, f"shopper{n}@example.com", PASSWORD, 0.0, hasher=policies.hasher)
        )
    skus = sorted(INITIAL_STOCK)
    codes = ["SAVE10", "FIVEOFF", "BOOKS20", "ONCE", "SINGLE", "STACK-A", "STACK-B", "OLD"]
    actions = ["add", "coupon", "checkout", "pay", "cancel", "ship", "deliver", "return"]
    weights = [30, 6, 10, 7, 3, 6, 5, 4]
    tally: Counter[str] = Counter()
    replays = 0
    now = 100.0

    def orders_in(*statuses):
        return sorted(o.id for o in uow.orders.values() if o.status in statuses)

    for step in range(800):
        now += rng.uniform(1.0, 90.0)
        user = rng.choice(customers)
        action = rng.choices(actions, weights)[0]
        tally[action] += 1
        try:
            if action == "add":
                shopping.add_to_cart(uow, user, rng.choice(skus), rng.randint(1, 3), now)
            elif action == "coupon":
                shopping.apply_coupon(uow, user, rng.choice(codes), now, policies=policies)
            elif action == "checkout":
                shopping.checkout(uow, user, now, policies=policies)
            elif action == "pay" and orders_in(OrderStatus.PENDING):
                order_id = rng.choice(orders_in(OrderStatus.PENDING))
                key = f"pay-{step}"
                start = shopping.begin_payment(
                    uow,
                    order_id,
                    make_card(),
                    gateway="card-a",
                    idempotency_key=key,
                    now=now,
                    policies=policies,
                )
                tally[start.action] += 1
                if start.action == "call_gateway":
                    script = rng.choice(
                        [
                            ["approved"],
                            ["approved"],
                            ["declined"],
                            ["failed", "approved"],
                            ["timeout", "failed", "abandon"],
                        ]
                    )
                    for i, answer in enumerate(script, 1):
                        if answer == "abandon":
                            shopping.abandon_payment(uow, start.payment_id, now + i)
                            tally["abandoned"] += 1
                        else:
                            tally[
                                shopping.record_gateway_answer(
                                    uow, start.payment_id, answer, now + i
                                )
                            ] += 1
                    if rng.random() < 0.3:
                        replay = shopping.begin_payment(
                            uow,
                            order_id,
                            make_card(),
                            gateway="card-a",
                            idempotency_key=key,
                            now=now + 5,
                            policies=policies,
                        )
                        assert replay.action == "replayed"
                        replays += 1
            elif action == "cancel" and orders_in(OrderStatus.PENDING, OrderStatus.PROCESSING):
                order_id = rng.choice(orders_in(OrderStatus.PENDING, OrderStatus.PROCESSING))
                owner = uow.orders.get(order_id).user_id
                actor = ADMIN if rng.random() < 0.3 else owner
                fulfilment.cancel_order(uow, actor, order_id, now, "scripted")
            elif action == "ship" and orders_in(OrderStatus.PROCESSING):
                fulfilment.ship_order(
                    uow, ADMIN, rng.choice(orders_in(OrderStatus.PROCESSING)), now
                )
            elif action == "deliver" and orders_in(OrderStatus.SHIPPED):
                fulfilment.deliver_order(
                    uow, ADMIN, rng.choice(orders_in(OrderStatus.SHIPPED)), now
                )
            elif action == "return":
                candidates = [
                    o
                    for o in orders_in(OrderStatus.DELIVERED, OrderStatus.REFUNDED)
                    if uow.orders.get(o).returnable
                ]
                if candidates:
                    order_id = rng.choice(candidates)
                    left = uow.orders.get(order_id).returnable
                    units = {
                        sku: rng.randint(1, qty)
                        for sku, qty in left.items()
                        if rng.random() < 0.7 or len(left) == 1
                    } or {next(iter(left)): 1}
                    owner = uow.orders.get(order_id).user_id
                    fulfilment.request_return(uow, owner, order_id, units, now)
                    fulfilment.receive_return(uow, ADMIN, order_id, now + 1)
                    fulfilment.refund_return(uow, ADMIN, order_id, now + 2)
        except (CouponRejected, OutOfStock, EmptyCart, NotFound) as error:
            tally[type(error).__name__] += 1
        if step % 50 == 49:  # the engine's housekeeping: expire reservations, restock
            for order_id in orders_in(OrderStatus.PENDING):
                tally["expired"] += fulfilment.expire_order(uow, order_id, now)
            with uow:
                for item in uow.stock.lock_many(skus):
                    if item.available < 3:
                        item.restock(5, inventory.SUPPLIER, now)
                uow.commit()

    now += 3600.0
    for order_id in orders_in(OrderStatus.PENDING):
        assert fulfilment.expire_order(uow, order_id, now) is True

    # the books balance
    entries = list(uow.ledger)
    assert reconcile(entries, uow.orders.values()) == []
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert balance(entries) == total(o.net_paid for o in uow.orders.values())
    charges = [e.order_id for e in entries if e.kind is EntryKind.CHARGE]
    assert sorted(charges) == sorted(o.id for o in uow.orders.values() if o.is_paid)
    # the stock is conserved, nothing stays reserved, and every sale is an order's
    for item in uow.stock.values():
        item.check_invariants()
        assert item.reserved == 0
    sold = Counter()
    for order in uow.orders.values():
        if order.is_paid:
            for line in order.lines:
                sold[line.sku] += line.quantity
    assert {item.sku: item.sold for item in uow.stock.values() if item.sold} == dict(sold)
    # coupon uses are exactly the paid orders that carried them, and nothing is held
    for coupon in uow.coupons.values():
        paid_with = [o for o in uow.orders.values() if o.is_paid and coupon.code in o.coupon_codes]
        assert (coupon.used, coupon.held) == (len(paid_with), {})
    # one notification per status change, one DuplicateChargePrevented per replay
    changes = [e for e in events if isinstance(e, OrderStatusChanged)]
    assert [(n.order_id, n.text) for n in uow.notifications] == [
        (e.order_id, f"Your order is now {e.new}") for e in changes
    ]
    assert sum(isinstance(e, DuplicateChargePrevented) for e in events) == replays
    # the script reached every corner of the lifecycle
    assert {e.new for e in changes} == {s.value for s in OrderStatus} - {"pending"}
    for seen in ("captured", "declined", "failed", "abandoned", "expired", "OutOfStock"):
        assert tally[seen] > 0, seen
    assert replays > 0 and len(entries) > 20
