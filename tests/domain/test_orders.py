from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.errors import (
    CurrencyMismatch,
    IllegalTransition,
    InvalidAmount,
    InvalidReturn,
    InvalidValue,
)
from sim.domain.events import OrderPlaced, OrderStatusChanged
from sim.domain.money import Money
from sim.domain.orders import ORDER_TRANSITIONS, Order, OrderLine, OrderStatus, can_transition

S = OrderStatus


def m(minor: int) -> Money:
    return Money(minor)


def line(sku="A", price=1000, qty=1, discount=0, tax=0, cat="books") -> OrderLine:
    return OrderLine(sku, cat, m(price), qty, m(discount), m(tax))


# A: 3 x 10.00, tax 1.99 -> 31.99 (not divisible by 3); B: 25.00 - 2.50 + 4.50 -> 27.00
LINE_A = line("A", 1000, 3, 0, 199)
LINE_B = line("B", 2500, 1, 250, 450)
SHIPPING = 499
TOTAL = 3199 + 2700 + SHIPPING  # 6398


def place(lines=(LINE_A, LINE_B), shipping=SHIPPING, now=10.0, **kw) -> Order:
    subtotal = sum(ln.amount.minor for ln in lines)
    discount = sum(ln.discount.minor for ln in lines)
    tax = sum(ln.tax.minor for ln in lines)
    args = dict(
        subtotal=m(subtotal),
        discount=m(discount),
        tax=m(tax),
        shipping=m(shipping),
        total=m(subtotal - discount + tax + shipping),
        coupon_codes=["SAVE10"],
        reservation_id="res-1",
        now=now,
    )
    args.update(kw)
    return Order.place("o-1", "u-1", list(lines), **args)


def delivered() -> Order:
    order = place()
    order.mark_paid("pay-1", 20.0)
    order.ship(30.0)
    order.deliver(40.0)
    return order


# --- OrderLine ---------------------------------------------------------------------------------
def test_line_total_is_amount_minus_discount_plus_tax():
    assert LINE_A.amount == m(3000)
    assert LINE_A.total == m(3199)
    assert LINE_B.total == m(2700)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        (dict(qty=0), InvalidValue, "A: quantity must be at least 1, got 0"),
        (dict(qty=1.5), InvalidValue, "got 1.5"),
        (dict(price=-1), InvalidAmount, "must not be negative"),
        (dict(tax=-1), InvalidAmount, "must not be negative"),
        (dict(discount=1001), InvalidAmount, "between 0 and the line amount 10.00 USD"),
        (dict(discount=-1), InvalidAmount, "discount -0.01 USD"),
    ],
)
def test_line_rejects_bad_values(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        line(**kwargs)


def test_refund_for_one_unit_at_a_time_takes_the_remainder_at_the_end():
    # 31.99 / 3 = 10.663...: cumulative shares 10.66, 21.33, 31.99
    assert LINE_A.refund_for(1) == m(1066)
    assert LINE_A.refund_for(1, 1) == m(1067)
    assert LINE_A.refund_for(1, 2) == m(1066)
    assert LINE_A.refund_for(2) == m(2133)
    assert LINE_A.refund_for(2, 1) == m(2133)
    assert LINE_A.refund_for(3) == LINE_A.total


@pytest.mark.parametrize(("units", "done"), [(0, 0), (4, 0), (2, 2), (1, -1), (1.0, 0)])
def test_refund_for_rejects_impossible_returns(units, done):
    with pytest.raises(InvalidReturn, match="A: cannot return"):
        LINE_A.refund_for(units, done)


@settings(max_examples=200, deadline=None)
@given(
    price=st.integers(0, 100_000),
    qty=st.integers(1, 50),
    tax=st.integers(0, 20_000),
    data=st.data(),
)
def test_returning_every_unit_in_any_steps_refunds_the_line_total(price, qty, tax, data):
    discount = data.draw(st.integers(0, price * qty))
    ln = line("X", price, qty, discount, tax)
    done, refunded = 0, m(0)
    while done < qty:
        step = data.draw(st.integers(1, qty - done))
        part = ln.refund_for(step, done)
        assert part.minor >= 0
        refunded += part
        done += step
    assert refunded == ln.total


# --- placing -------------------------------------------------------------------------------------
def test_place_snapshots_the_order_and_records_order_placed():
    order = place()
    assert order.id == "o-1"
    assert order.user_id == "u-1"
    assert order.lines == (LINE_A, LINE_B)
    assert (order.subtotal, order.discount, order.tax, order.shipping, order.total) == (
        m(5500),
        m(250),
        m(649),
        m(499),
        m(TOTAL),
    )
    assert order.coupon_codes == ("SAVE10",)
    assert order.reservation_id == "res-1"
    assert order.status is S.PENDING
    assert order.placed_at == 10.0
    assert order.timestamps == {S.PENDING: 10.0}
    assert order.payment_id is None
    assert order.refunded == m(0)
    assert order.units == 4
    assert order.returnable == {"A": 3, "B": 1}
    assert order.events == [OrderPlaced(at=10.0, order_id="o-1", user_id="u-1", total=m(TOTAL))]
    assert not order.is_paid
    assert order.net_paid == m(0)


def test_place_rejects_a_total_that_does_not_add_up():
    with pytest.raises(InvalidAmount, match=r"order o-1: total 63\.99 USD != subtotal 55\.00"):
        place(total=m(TOTAL + 1))


def test_place_rejects_no_lines_and_duplicate_skus():
    with pytest.raises(InvalidValue, match="order o-1: an order needs at least one line"):
        place(lines=())
    with pytest.raises(InvalidValue, match="one line per SKU, got A, A"):
        place(lines=(LINE_A, LINE_A))


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("subtotal", dict(subtotal=m(-1))),
        ("discount", dict(discount=m(-1))),
        ("tax", dict(tax=m(-1))),
        ("shipping", dict(shipping=-1)),
    ],
)
def test_place_rejects_negative_amounts(name, kw):
    with pytest.raises(InvalidAmount, match=f"order o-1: {name} must not be negative, got -0.01"):
        place(**kw)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        (dict(subtotal=m(5501), total=m(TOTAL + 1)), "subtotal"),
        (dict(discount=m(249), total=m(TOTAL + 1)), "discount"),
        (dict(tax=m(650), total=m(TOTAL + 1)), "tax"),
    ],
)
def test_place_rejects_lines_that_do_not_add_up(kw, name):
    with pytest.raises(InvalidAmount, match=f"the lines' {name} adds up to"):
        place(**kw)


def test_place_rejects_mixed_currencies():
    eur = OrderLine("E", "c", Money(100, "EUR"), 1, Money(0, "EUR"), Money(0, "EUR"))
    with pytest.raises(CurrencyMismatch):
        place(lines=(eur,), shipping=0)


# --- the transition table -------------------------------------------------------------------------
LEGAL = {
    (S.PENDING, S.PROCESSING),
    (S.PENDING, S.CANCELLED),
    (S.PROCESSING, S.SHIPPED),
    (S.PROCESSING, S.CANCELLED),
    (S.SHIPPED, S.DELIVERED),
    (S.DELIVERED, S.RETURN_REQUESTED),
    (S.RETURN_REQUESTED, S.RETURNED),
    (S.RETURNED, S.REFUNDED),
    (S.REFUNDED, S.RETURN_REQUESTED),
}


def order_in(status: OrderStatus) -> Order:
    """An order brought to ``status`` by legal moves; units of B remain returnable."""
    order = place()
    if status is S.CANCELLED:
        order.cancel(15.0, "changed mind")
        return order
    steps = [
        (S.PROCESSING, lambda o: o.mark_paid("pay-1", 20.0)),
        (S.SHIPPED, lambda o: o.ship(30.0)),
        (S.DELIVERED, lambda o: o.deliver(40.0)),
        (S.RETURN_REQUESTED, lambda o: o.request_return({"A": 1}, 50.0)),
        (S.RETURNED, lambda o: o.receive_return(60.0)),
        (S.REFUNDED, lambda o: o.mark_refunded(o.refund_due, 70.0)),
    ]
    for target, step in steps:
        if order.status is status:
            break
        step(order)
        assert order.status is target
    return order


ACTIONS = {
    S.PROCESSING: lambda o: o.mark_paid("pay-9", 99.0),
    S.CANCELLED: lambda o: o.cancel(99.0, "customer"),
    S.SHIPPED: lambda o: o.ship(99.0),
    S.DELIVERED: lambda o: o.deliver(99.0),
    S.RETURN_REQUESTED: lambda o: o.request_return({"B": 1}, 99.0),
    S.RETURNED: lambda o: o.receive_return(99.0),
    S.REFUNDED: lambda o: o.mark_refunded(o.refund_due, 99.0),
}


def test_transition_table_is_exactly_the_lifecycle():
    table = {(a, b) for a, targets in ORDER_TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(ORDER_TRANSITIONS) == set(S)
    for a, b in itertools.product(S, S):
        assert can_transition(a, b) is ((a, b) in LEGAL)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, ACTIONS)))
def test_every_transition_method_from_every_state(old, new):
    order = order_in(old)
    assert order.status is old
    before = copy.deepcopy(order)
    n_events = len(order.events)
    if (old, new) in LEGAL:
        ACTIONS[new](order)
        assert order.status is new
        assert order.timestamps[new] == 99.0
        assert order.events[n_events:] == [
            OrderStatusChanged(at=99.0, order_id="o-1", user_id="u-1", old=old.value, new=new.value)
        ]
    else:
        with pytest.raises(
            IllegalTransition, match=f"^order o-1: cannot go from {old.value} to {new.value}"
        ):
            ACTIONS[new](order)
        assert order == before
        assert len(order.events) == n_events


def test_no_method_leads_back_to_pending():
    assert all(not can_transition(s, S.PENDING) for s in S)


def test_status_values_and_str():
    assert [s.value for s in S] == [
        "pending",
        "processing",
        "shipped",
        "delivered",
        "cancelled",
        "return_requested",
        "returned",
        "refunded",
    ]
    assert str(S.RETURN_REQUESTED) == "return_requested"
    assert S("shipped") is S.SHIPPED


# --- payment, shipping, cancellation ---------------------------------------------------------
def test_happy_path_timestamps_and_paid_properties():
    order = delivered()
    assert order.payment_id == "pay-1"
    assert order.timestamps == {
        S.PENDING: 10.0,
        S.PROCESSING: 20.0,
        S.SHIPPED: 30.0,
        S.DELIVERED: 40.0,
    }
    assert order.is_paid
    assert order.net_paid == m(TOTAL)
    assert [(e.old, e.new) for e in order.events[1:]] == [
        ("pending", "processing"),
        ("processing", "shipped"),
        ("shipped", "delivered"),
    ]


def test_mark_paid_needs_a_payment_id():
    order = place()
    with pytest.raises(InvalidValue, match="order o-1: payment id must not be empty"):
        order.mark_paid("", 20.0)
    assert order.status is S.PENDING
    assert order.payment_id is None


def test_add_payment_notes_the_payments_opened_for_a_pending_order():
    order = place()
    assert order.payment_ids == []
    order.add_payment("pay-1")
    order.add_payment("pay-2")
    assert order.payment_ids == ["pay-1", "pay-2"]
    assert len(order.events) == 1  # no status change: only OrderPlaced
    for bad in ("", "pay-1"):
        with pytest.raises(InvalidValue, match=f"order o-1: payment id '{bad}' is empty or alr"):
            order.add_payment(bad)
    order.mark_paid("pay-2", 20.0)
    with pytest.raises(InvalidValue, match=r"order o-1: is processing, not awaiting payment \(p"):
        order.add_payment("pay-3")
    assert order.payment_ids == ["pay-1", "pay-2"]
    assert copy.deepcopy(order).payment_ids == ["pay-1", "pay-2"]


def test_cancel_before_payment_refunds_nothing_and_counts_as_unpaid():
    order = place()
    assert order.cancel(15.0, "out of stock") == m(0)
    assert order.status is S.CANCELLED
    assert order.cancel_reason == "out of stock"
    assert not order.is_paid
    assert order.net_paid == m(0)
    with pytest.raises(IllegalTransition, match="cancelled to refunded, nothing is due"):
        order.mark_refunded(m(0), 16.0)


def test_cancel_after_payment_is_paid_then_refunded():
    order = place()
    order.mark_paid("pay-1", 20.0)
    assert order.cancel(25.0, "customer") == m(TOTAL)
    assert order.refund_due == m(TOTAL)
    assert order.is_paid
    assert order.net_paid == m(TOTAL)
    with pytest.raises(InvalidAmount, match=r"refund of 63\.00 USD does not match the 63\.98"):
        order.mark_refunded(m(6300), 26.0)
    n_events = len(order.events)
    order.mark_refunded(m(TOTAL), 26.0)
    assert order.status is S.CANCELLED
    assert order.refunded == m(TOTAL)
    assert order.refund_due == m(0)
    assert order.is_paid
    assert order.net_paid == m(0)
    assert len(order.events) == n_events
    with pytest.raises(IllegalTransition, match="nothing is due"):
        order.mark_refunded(m(TOTAL), 27.0)


# --- returns --------------------------------------------------------------------------------------
def test_full_return_at_once_refunds_the_total_including_shipping():
    order = delivered()
    assert order.request_return({"A": 3, "B": 1}, 50.0) == m(TOTAL)
    assert order.pending_return == {"A": 3, "B": 1}
    assert order.returnable == {}
    assert order.receive_return(60.0) == {"A": 3, "B": 1}
    assert order.returned == {"A": 3, "B": 1}
    assert order.pending_return == {}
    order.mark_refunded(m(TOTAL), 70.0)
    assert order.status is S.REFUNDED
    assert order.refunded == m(TOTAL)
    assert order.net_paid == m(0)
    assert order.is_paid
    with pytest.raises(InvalidReturn, match=r"A: cannot return 1 unit\(s\), 0 of 3 left"):
        order.request_return({"A": 1}, 80.0)


def test_partial_returns_in_steps_sum_to_the_total_and_shipping_comes_last():
    order = delivered()
    steps = [({"A": 1}, 1066), ({"A": 1, "B": 1}, 1067 + 2700), ({"A": 1}, 1066 + SHIPPING)]
    t = 50.0
    for units, expected in steps:
        assert order.request_return(units, t) == m(expected)
        assert order.status is S.RETURN_REQUESTED
        order.receive_return(t + 1)
        order.mark_refunded(m(expected), t + 2)
        assert order.status is S.REFUNDED
        t += 10
    assert order.refunded == m(TOTAL)
    assert order.net_paid == m(0)
    assert order.returned == {"A": 3, "B": 1}
    assert order.timestamps[S.RETURN_REQUESTED] == 70.0
    assert order.timestamps[S.REFUNDED] == 72.0


def test_partial_return_leaves_net_paid_for_the_rest():
    order = delivered()
    due = order.request_return({"B": 1}, 50.0)
    assert due == m(2700)
    assert order.returnable == {"A": 3}
    order.receive_return(55.0)
    order.mark_refunded(due, 60.0)
    assert order.net_paid == m(TOTAL - 2700)
    assert order.returnable == {"A": 3}


def test_mark_refunded_must_match_the_refund_due():
    order = delivered()
    order.request_return({"A": 2}, 50.0)
    order.receive_return(55.0)
    with pytest.raises(InvalidAmount, match=r"refund of 21\.32 USD does not match the 21\.33"):
        order.mark_refunded(m(2132), 60.0)
    assert order.status is S.RETURNED
    assert order.refunded == m(0)


@pytest.mark.parametrize(
    ("units", "error", "fragment"),
    [
        ({}, InvalidReturn, "order o-1: a return needs at least one unit"),
        ({"Z": 1}, InvalidReturn, "order o-1: no line for Z"),
        ({"A": 0}, InvalidReturn, r"A: cannot return 0 unit\(s\), 3 of 3 left to return"),
        ({"A": 4}, InvalidReturn, r"A: cannot return 4 unit\(s\), 3 of 3 left"),
        ({"B": 2}, InvalidReturn, r"B: cannot return 2 unit\(s\), 1 of 1 left"),
        ({"A": 1.0}, InvalidReturn, r"A: cannot return 1.0 unit\(s\)"),
    ],
)
def test_request_return_rejects_bad_requests(units, error, fragment):
    order = delivered()
    before = copy.deepcopy(order)
    with pytest.raises(error, match=fragment):
        order.request_return(units, 50.0)
    assert order == before


def test_a_further_return_cannot_exceed_what_is_left():
    order = delivered()
    order.request_return({"A": 2}, 50.0)
    order.receive_return(55.0)
    order.mark_refunded(m(2133), 60.0)
    with pytest.raises(InvalidReturn, match=r"A: cannot return 2 unit\(s\), 1 of 3 left"):
        order.request_return({"A": 2}, 70.0)
    assert order.request_return({"A": 1}, 70.0) == m(1066)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_return_schedule_refunds_exactly_the_total(data):
    order = delivered()
    t = 50.0
    while order.returnable:
        left = order.returnable
        first = data.draw(st.sampled_from(sorted(left)))
        units = {first: data.draw(st.integers(1, left[first]))}
        for sku, n in left.items():
            k = data.draw(st.integers(0, n))
            if k and sku != first:
                units[sku] = k
        due = order.request_return(units, t)
        order.receive_return(t + 1)
        order.mark_refunded(due, t + 2)
        t += 10
    assert order.refunded == m(TOTAL)
    assert order.net_paid == m(0)


def test_order_survives_deepcopy():
    order = delivered()
    order.request_return({"A": 1}, 50.0)
    clone = copy.deepcopy(order)
    assert clone == order
    clone.receive_return(60.0)
    assert order.status is S.RETURN_REQUESTED
    assert order.returned == {}
    assert clone.returned == {"A": 1}
