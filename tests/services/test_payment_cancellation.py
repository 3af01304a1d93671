"""An order cancelled (or expired) while the gateway still holds its payment.

The payment is cancelled with the order and its idempotency record replays "cancelled"; the
gateway's late answer never revives the order: an approval is voided at once (a void in the
ledger, no money moved), a decline closes the payment as declined, a failure or a timeout
leaves it cancelled. An order paid, declined or abandoned through one payment closes the
other payments still open for it the same way.
"""

from __future__ import annotations

import pytest

from sim.domain.errors import IllegalTransition, InvalidValue
from sim.domain.events import (
    OrderStatusChanged,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
)
from sim.domain.ledger import EntryKind, LedgerEntry, balance, reconcile
from sim.domain.money import Money, total
from sim.domain.orders import OrderStatus
from sim.domain.payments import IDEMPOTENCY_TTL, PaymentStatus
from sim.services.handlers import fulfilment, shopping
from tests.services.conftest import ADMIN, ANN, BOOK, INITIAL_STOCK, PEN

BOOKS_TOTAL = Money(3199)  # 2 books: 25.00 + 8 % tax 2.00 + shipping 4.99
PAYMENT_EVENTS = (PaymentCaptured, PaymentDeclined, PaymentRefunded, PaymentVoided)


def begin(uow, policies, order_id, card, key="k1", now=10.0):
    start = shopping.begin_payment(
        uow, order_id, card, gateway="card-a", idempotency_key=key, now=now, policies=policies
    )
    assert start.action == "call_gateway"
    return start.payment_id


def status(uow, payment_id):
    return uow.payments.find_readonly(payment_id).status


def books_balance(uow):
    entries = list(uow.ledger)
    assert reconcile(entries, uow.orders.values()) == []
    assert balance(entries) == total(o.net_paid for o in uow.orders.values())
    return balance(entries)


@pytest.mark.parametrize("who", [ANN, ADMIN])
def test_cancelling_closes_the_payment_and_a_late_approval_is_voided(
    uow, policies, place, card, events, who
):
    order_id = place(ANN, {BOOK: 2}, coupons=("SINGLE",), now=1.0)
    with_coupon = Money(2983)  # 25.00 - 2.00 + 8 % tax 1.84 + shipping 4.99
    payment_id = begin(uow, policies, order_id, card)
    events.clear()
    assert fulfilment.cancel_order(uow, who, order_id, 20.0, "too slow") == Money(0)
    assert status(uow, payment_id) is PaymentStatus.CANCELLED
    assert uow.idempotency.find_readonly("k1").outcome == "cancelled"
    assert uow.stock.find_readonly(BOOK).available == INITIAL_STOCK[BOOK]
    assert uow.coupons.find_readonly("SINGLE").held == {}
    assert [e for e in events if isinstance(e, PAYMENT_EVENTS)] == []  # no money moved
    assert list(uow.ledger) == []
    assert [(e.old, e.new) for e in events if isinstance(e, OrderStatusChanged)] == [
        ("pending", "cancelled")
    ]
    events.clear()

    assert shopping.record_gateway_answer(uow, payment_id, "approved", 30.0, gateway="b") == (
        "voided"
    )
    payment = uow.payments.find_readonly(payment_id)
    assert (payment.status, payment.attempts, payment.gateway) == (PaymentStatus.VOIDED, 1, "b")
    assert payment.captured == Money(0)
    assert events == [
        PaymentVoided(at=30.0, payment_id=payment_id, order_id=order_id, amount=with_coupon)
    ]
    assert list(uow.ledger) == [
        LedgerEntry(1, EntryKind.VOID, order_id, payment_id, with_coupon, 30.0)
    ]
    order = uow.orders.find_readonly(order_id)
    assert (order.status, order.payment_id, order.net_paid) == (
        OrderStatus.CANCELLED,
        None,
        Money(0),
    )
    assert books_balance(uow) == Money(0)
    assert uow.coupons.find_readonly("SINGLE").used == 0
    # a voided payment is final: another answer is refused and changes nothing
    with pytest.raises(IllegalTransition, match="cannot go from voided to authorized"):
        shopping.record_gateway_answer(uow, payment_id, "approved", 31.0)
    assert len(uow.ledger) == 1


def test_a_late_decline_closes_the_payment_and_counts_against_the_card(
    uow, policies, place, card, events
):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    payment_id = begin(uow, policies, order_id, card)
    assert shopping.record_gateway_answer(uow, payment_id, "timeout", 11.0) == "failed"
    fulfilment.cancel_order(uow, ANN, order_id, 12.0, "too slow")
    assert status(uow, payment_id) is PaymentStatus.CANCELLED
    assert uow.idempotency.find_readonly("k1").outcome == "cancelled"  # was "failed"
    events.clear()
    assert shopping.record_gateway_answer(uow, payment_id, "declined", 13.0) == "declined"
    payment = uow.payments.find_readonly(payment_id)
    assert (payment.status, payment.attempts, payment.last_error) == (
        PaymentStatus.DECLINED,
        2,
        "declined by the issuer",
    )
    assert events == [
        PaymentDeclined(
            at=13.0, payment_id=payment_id, order_id=order_id, reason="declined by the issuer"
        )
    ]
    assert uow.histories.find_readonly(ANN).failed_payments == 1
    assert uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
    assert list(uow.ledger) == []


@pytest.mark.parametrize("answer", ["failed", "timeout"])
def test_a_late_failure_leaves_the_payment_cancelled(uow, policies, place, card, events, answer):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    payment_id = begin(uow, policies, order_id, card)
    fulfilment.cancel_order(uow, ANN, order_id, 12.0, "too slow")
    events.clear()
    assert shopping.record_gateway_answer(uow, payment_id, answer, 13.0) == "cancelled"
    payment = uow.payments.find_readonly(payment_id)
    assert (payment.status, payment.attempts) == (PaymentStatus.CANCELLED, 0)
    assert events == []
    assert shopping.record_gateway_answer(uow, payment_id, "approved", 14.0) == "voided"
    assert status(uow, payment_id) is PaymentStatus.VOIDED


def test_an_unknown_late_answer_is_refused_and_changes_nothing(uow, policies, place, card):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    payment_id = begin(uow, policies, order_id, card)
    fulfilment.cancel_order(uow, ANN, order_id, 12.0, "too slow")
    with pytest.raises(InvalidValue, match="unknown gateway answer 'maybe'"):
        shopping.record_gateway_answer(uow, payment_id, "maybe", 13.0, gateway="b")  # type: ignore[arg-type]
    payment = uow.payments.find_readonly(payment_id)
    assert (payment.status, payment.gateway) == (PaymentStatus.CANCELLED, "card-a")


def test_a_replay_after_the_cancellation_replays_cancelled_and_charges_nothing(
    uow, policies, place, card
):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    payment_id = begin(uow, policies, order_id, card)
    fulfilment.cancel_order(uow, ANN, order_id, 12.0, "too slow")
    shopping.record_gateway_answer(uow, payment_id, "approved", 13.0)
    replay = shopping.begin_payment(
        uow, order_id, card, gateway="card-a", idempotency_key="k1", now=14.0, policies=policies
    )
    assert (replay.payment_id, replay.action, replay.outcome) == (
        payment_id,
        "replayed",
        "cancelled",
    )
    assert len(uow.payments) == 1
    assert balance(uow.ledger) == Money(0)


def test_expiring_the_reservation_closes_the_payment_and_a_late_approval_is_voided(
    uow, policies, place, card
):
    order_id = place(ANN, {BOOK: 2}, now=1.0)
    payment_id = begin(uow, policies, order_id, card, now=900.0)
    assert fulfilment.expire_order(uow, order_id, 901.0) is True  # reserved at 1 for 15 min
    assert status(uow, payment_id) is PaymentStatus.CANCELLED
    order = uow.orders.find_readonly(order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, "reservation expired")
    assert uow.stock.find_readonly(BOOK).available == INITIAL_STOCK[BOOK]
    assert shopping.record_gateway_answer(uow, payment_id, "approved", 905.0) == "voided"
    assert [(e.kind, e.amount) for e in uow.ledger] == [(EntryKind.VOID, BOOKS_TOTAL)]
    assert uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
    assert books_balance(uow) == Money(0)


def test_cancelling_a_paid_order_closes_another_payment_still_open_for_it(
    uow, policies, place, card
):
    order_id = place(ANN, {BOOK: 2}, now=1.0)
    first = begin(uow, policies, order_id, card, key="k1", now=10.0)
    second = begin(uow, policies, order_id, card, key="k2", now=11.0)
    assert uow.orders.find_readonly(order_id).payment_ids == [first, second]
    # the first is approved: the order is paid, the second one is closed at once
    assert shopping.record_gateway_answer(uow, first, "approved", 12.0) == "captured"
    assert (status(uow, first), status(uow, second)) == (
        PaymentStatus.CAPTURED,
        PaymentStatus.CANCELLED,
    )
    assert uow.idempotency.find_readonly("k1").outcome == "captured"
    assert uow.idempotency.find_readonly("k2").outcome == "cancelled"
    # the second one's approval arrives: voided, so the customer is charged once
    assert shopping.record_gateway_answer(uow, second, "approved", 13.0) == "voided"
    kinds = [(e.kind, e.payment_id) for e in uow.ledger]
    assert kinds == [(EntryKind.CHARGE, first), (EntryKind.VOID, second)]
    assert uow.orders.find_readonly(order_id).status is OrderStatus.PROCESSING
    assert books_balance(uow) == BOOKS_TOTAL
    # a paid cancellation refunds through the payment that paid
    assert fulfilment.cancel_order(uow, ANN, order_id, 20.0, "changed my mind") == BOOKS_TOTAL
    assert (status(uow, first), status(uow, second)) == (
        PaymentStatus.REFUNDED,
        PaymentStatus.VOIDED,
    )
    assert books_balance(uow) == Money(0)


@pytest.mark.parametrize("end", ["declined", "abandoned"])
def test_an_order_ended_by_one_payment_closes_the_others(uow, policies, place, card, end):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    first = begin(uow, policies, order_id, card, key="k1", now=10.0)
    second = begin(uow, policies, order_id, card, key="k2", now=11.0)
    if end == "declined":
        assert shopping.record_gateway_answer(uow, first, "declined", 12.0) == "declined"
        ended = (PaymentStatus.DECLINED, "declined")
    else:
        shopping.record_gateway_answer(uow, first, "timeout", 12.0)
        shopping.abandon_payment(uow, first, 13.0)
        ended = (PaymentStatus.CANCELLED, "failed")  # abandoned: its record replays "failed"
    assert (status(uow, first), uow.idempotency.find_readonly("k1").outcome) == ended
    assert status(uow, second) is PaymentStatus.CANCELLED
    assert uow.idempotency.find_readonly("k2").outcome == "cancelled"
    assert uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
    with pytest.raises(IllegalTransition, match="only a pending or failed payment"):
        shopping.abandon_payment(uow, second, 14.0)


def test_a_reused_key_belongs_to_the_new_payment_and_is_left_alone(uow, policies, place, card):
    old_order = place(ANN, {PEN: 1}, now=1.0)
    old = begin(uow, policies, old_order, card, key="k", now=10.0)
    later = 11.0 + IDEMPOTENCY_TTL
    new_order = place(ANN, {PEN: 1}, now=later)
    new = begin(uow, policies, new_order, card, key="k", now=later)  # the old record was pruned
    assert uow.idempotency.find_readonly("k").payment_id == new
    fulfilment.cancel_order(uow, ANN, old_order, later + 1, "forgotten")
    assert status(uow, old) is PaymentStatus.CANCELLED
    record = uow.idempotency.find_readonly("k")
    assert (record.payment_id, record.outcome) == (new, "pending")
    assert status(uow, new) is PaymentStatus.PENDING


def test_a_late_approval_of_an_abandoned_payment_is_voided(uow, policies, place, card, events):
    order_id = place(ANN, {PEN: 1}, now=1.0)
    payment_id = begin(uow, policies, order_id, card)
    assert shopping.record_gateway_answer(uow, payment_id, "timeout", 11.0) == "failed"
    shopping.abandon_payment(uow, payment_id, 12.0)  # the shop gives up; the gateway had said yes
    assert status(uow, payment_id) is PaymentStatus.CANCELLED
    events.clear()
    assert shopping.record_gateway_answer(uow, payment_id, "approved", 13.0) == "voided"
    amount = uow.payments.find_readonly(payment_id).amount
    assert events == [
        PaymentVoided(at=13.0, payment_id=payment_id, order_id=order_id, amount=amount)
    ]
    assert list(uow.ledger) == [LedgerEntry(1, EntryKind.VOID, order_id, payment_id, amount, 13.0)]
    assert uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
    assert uow.idempotency.find_readonly("k1").outcome == "failed"  # replays what the shop said
    assert books_balance(uow) == Money(0)
