from __future__ import annotations

import dataclasses

import pytest

from sim.domain.errors import LedgerViolation, NotFound
from sim.domain.events import (
    CartItemAdded,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
)
from sim.domain.ledger import EntryKind, LedgerEntry, balance, reconcile
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.domain.payments import PaymentStatus
from sim.domain.users import ActivityKind
from sim.services.bus import MessageBus
from sim.services.handlers import fulfilment, shopping
from sim.services.subscribers import Notification, attach_subscribers, notify_customer
from tests.services.conftest import ADMIN, ANN, BOB, BOOK, MUG, PEN, make_card, new_uow, seed


def test_attach_subscribers_wires_the_ledger_and_the_outbox():
    bus = MessageBus()
    uow = new_uow(bus)
    assert attach_subscribers(uow) is uow
    for event_type in (PaymentCaptured, PaymentRefunded, PaymentVoided):  # the ledger: within
        assert len(bus.in_transaction_handlers_for(event_type)) == 1
        assert bus.handlers_for(event_type) == ()
    assert len(bus.handlers_for(CartItemAdded)) == 1
    assert len(bus.handlers_for(OrderStatusChanged)) == 2  # notifications and analytics
    assert bus.in_transaction_handlers_for(OrderStatusChanged) == ()
    quiet = new_uow()
    attach_subscribers(quiet, notifications=False, analytics=False)
    assert len(quiet.bus.in_transaction_handlers_for(PaymentCaptured)) == 1
    assert quiet.bus.handlers_for(OrderStatusChanged) == ()
    assert quiet.bus.handlers_for(CartItemAdded) == ()


def test_analytics_log_cart_adds_and_purchases_but_not_failed_orders(uow, place, pay):
    shopping.add_to_cart(uow, ANN, BOOK, 1, 1.0)
    log = uow.activity.get(ANN)
    assert log.count(ActivityKind.ADDED_TO_CART) == 1
    paid = place(ANN, {PEN: 1}, now=2.0)
    declined = place(ANN, {MUG: 1}, now=3.0)
    pay(paid, now=4.0)
    pay(declined, "declined", now=5.0)
    fulfilment.ship_order(uow, ADMIN, paid, 6.0)
    log = uow.activity.get(ANN)
    assert log.count(ActivityKind.PURCHASED) == 1
    assert log.recent_refs(ActivityKind.PURCHASED) == [paid]


def test_ledger_entries_are_numbered_in_the_order_money_moved(uow, place, pay):
    first = place(ANN, {BOOK: 2}, now=1.0)  # 25.00 + 2.00 + 4.99
    second = place(BOB, {PEN: 1}, now=2.0)  # 1.99 + 0.16 + 4.99
    third = place(ANN, {MUG: 1}, now=3.0)  # 8.99 + 0.72 + 4.99
    pay(second, now=10.0)
    pay(first, "declined", now=20.0)
    pay(third, now=30.0)
    fulfilment.cancel_order(uow, BOB, second, 40.0, "duplicate")
    assert list(uow.ledger) == [
        LedgerEntry(1, EntryKind.CHARGE, second, "payment-000001", Money(714), 11.0),
        LedgerEntry(2, EntryKind.CHARGE, third, "payment-000003", Money(1470), 31.0),
        LedgerEntry(3, EntryKind.REFUND, second, "payment-000001", Money(714), 40.0),
    ]
    assert balance(uow.ledger) == Money(1470)
    assert reconcile(list(uow.ledger), uow.orders.values()) == []


def test_a_rolled_back_transaction_leaves_no_gap_in_the_ledger(uow, place, pay):
    with uow:
        uow.ledger.append("scratch")
        uow.notifications.append("scratch")
    assert (len(uow.ledger), len(uow.notifications)) == (0, 0)
    pay(place(ANN, {PEN: 1}))
    assert [e.seq for e in uow.ledger] == [1]


def test_a_void_is_recorded_but_moves_no_money(uow, place, pay):
    order_id = place(ANN, {PEN: 1})
    payment_id = pay(order_id)
    with uow:
        uow.bus.publish_in_transaction(
            PaymentVoided(at=50.0, payment_id=payment_id, order_id=order_id, amount=Money(714))
        )
        uow.commit()
    assert list(uow.ledger)[-1] == LedgerEntry(
        2, EntryKind.VOID, order_id, payment_id, Money(714), 50.0
    )
    assert balance(uow.ledger) == Money(714)
    assert uow.payments.get(payment_id).status is PaymentStatus.CAPTURED
    assert reconcile(list(uow.ledger), uow.orders.values()) == []


def test_a_bad_ledger_event_is_refused_and_written_nowhere(uow):
    bad = PaymentRefunded(at=1.0, payment_id="payment-000001", order_id="order-1", amount=Money(0))
    with pytest.raises(LedgerViolation, match="amount must be positive Money"), uow:
        uow.bus.publish_in_transaction(bad)
        uow.commit()
    assert len(uow.ledger) == 0
    assert not uow.active


def test_a_capture_and_its_ledger_entry_commit_together_or_not_at_all(uow, place, pay):
    order_id = place(ANN, {PEN: 1})
    entries = len(uow.ledger)
    payment_id = pay(order_id)
    assert [(e.kind, e.payment_id) for e in list(uow.ledger)[entries:]] == [
        (EntryKind.CHARGE, payment_id)
    ]
    # a ledger writer that fails inside the transaction takes the refund down with it
    uow.bus.subscribe_in_transaction(PaymentRefunded, _fail)
    with pytest.raises(RuntimeError, match="the books are closed"):
        fulfilment.cancel_order(uow, ANN, order_id, 60.0, "changed my mind")
    assert uow.payments.find_readonly(payment_id).status is PaymentStatus.CAPTURED
    assert uow.orders.find_readonly(order_id).status.value == "processing"
    assert len(uow.ledger) == entries + 1


def _fail(event):
    raise RuntimeError("the books are closed")


def test_a_rolled_back_capture_reaches_neither_the_ledger_nor_the_customer(
    uow, policies, place, card, events
):
    order_id = place(ANN, {BOOK: 2}, coupons=("SAVE10",), now=1.0)
    start = shopping.begin_payment(
        uow, order_id, card, gateway="card-a", idempotency_key="k1", now=10.0, policies=policies
    )
    with uow:  # the coupon disappears: the capture fails after the payment was captured
        uow.coupons.remove("SAVE10")
        uow.commit()
    events.clear()
    with pytest.raises(NotFound, match="coupon 'SAVE10' not found"):
        shopping.record_gateway_answer(uow, start.payment_id, "approved", 905.0)
    assert list(uow.ledger) == []
    assert list(uow.notifications) == []
    assert events == []
    payment = uow.payments.get(start.payment_id)
    assert (payment.status, payment.attempts) == (PaymentStatus.PENDING, 0)
    assert uow.orders.get(order_id).status is OrderStatus.PENDING


def test_the_outbox_holds_one_notification_per_status_change(uow, place, pay):
    ann_order = place(ANN, {BOOK: 1}, now=1.0)
    bob_order = place(BOB, {MUG: 1}, now=2.0)
    pay(ann_order, now=3.0)
    pay(bob_order, "declined", now=5.0)
    fulfilment.ship_order(uow, ADMIN, ann_order, 8.0)
    assert list(uow.notifications) == [
        Notification(4.0, ANN, ann_order, "Your order is now processing"),
        Notification(6.0, BOB, bob_order, "Your order is now cancelled"),
        Notification(8.0, ANN, ann_order, "Your order is now shipped"),
    ]
    assert uow.orders.get(ann_order).status is OrderStatus.SHIPPED


def test_notify_customer_queues_a_notification_in_its_own_transaction(uow):
    event = OrderStatusChanged(at=7.5, order_id="order-1", user_id=ANN, old="a", new="b")
    notify_customer(uow, event)
    (note,) = uow.notifications
    assert note == Notification(7.5, ANN, "order-1", "Your order is now b")
    assert not uow.active
    with pytest.raises(dataclasses.FrozenInstanceError):
        note.text = "changed"  # type: ignore[misc]


def test_without_notifications_the_ledger_still_runs(policies):
    uow = attach_subscribers(new_uow(), notifications=False)
    seed(uow, policies.hasher)
    shopping.add_to_cart(uow, ANN, PEN, 1, 1.0)
    order_id = shopping.checkout(uow, ANN, 1.0, policies=policies)
    start = shopping.begin_payment(
        uow,
        order_id,
        make_card(),
        gateway="card-a",
        idempotency_key="k1",
        now=2.0,
        policies=policies,
    )
    shopping.record_gateway_answer(uow, start.payment_id, "approved", 3.0)
    assert list(uow.notifications) == []
    assert [(e.kind, e.amount) for e in uow.ledger] == [(EntryKind.CHARGE, Money(714))]
