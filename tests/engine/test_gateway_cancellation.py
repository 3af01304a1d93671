"""The gateway process when the order is cancelled while its payment is at the gateway.

The customer cancels, or the order's reservation expires during a long outage: the payment is
cancelled with the order, no retry follows, nothing is abandoned, and an answer still on its
way is settled without the order (an approval voided). The books stay sound.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sim.domain.ledger import EntryKind
from sim.domain.money import Money
from sim.domain.payments import PaymentStatus
from sim.engine import gateways
from sim.engine.audit import audit_books
from sim.engine.gateways import CONNECT_ERROR_TIME
from sim.services.handlers import fulfilment
from tests.engine._tiny import LATENCY, pending_order, tiny, world_of


def _pay_and(world, order_id: str, at: float, action) -> dict:
    """Start paying for the order at 0 and run ``action()`` at ``at``; return the outcome."""
    env, out = world.env, {}

    def pay():
        out["outcome"] = yield from gateways.pay(
            world, order_id, world.card, np.random.default_rng(0)
        )
        out["end"] = env.now

    def meanwhile():
        yield env.timeout(at)
        out["acted"] = action()

    env.process(pay())
    env.process(meanwhile())
    env.run()
    return out


def _rows(world) -> list[tuple]:
    return [tuple(r) for r in world.recorder.payments.frame().itertuples(index=False)]


def _payment(world):
    (payment,) = world.uow.payments.values()
    return payment


def _books_are_sound(world) -> None:
    books = audit_books(world.uow)
    assert books.ok, books.violations


def test_cancelled_during_the_call_the_late_approval_is_voided():
    world = world_of(tiny())
    order_id, user = pending_order(world)
    out = _pay_and(
        world, order_id, 0.5, lambda: fulfilment.cancel_order(world.uow, user, order_id, 0.5, "x")
    )
    assert out == {"acted": Money(0), "outcome": "voided", "end": LATENCY}
    assert _rows(world) == [(LATENCY, order_id, "gw", 1, "approved", LATENCY)]
    payment = _payment(world)
    assert (payment.status, payment.attempts) == (PaymentStatus.VOIDED, 1)
    assert world.uow.orders.find_readonly(order_id).status.value == "cancelled"
    assert [(e.kind, e.payment_id, e.at) for e in world.uow.ledger] == [
        (EntryKind.VOID, payment.id, LATENCY)
    ]
    assert world.recorder.counters == {"payments_cancelled": 1, "late_approvals_voided": 1}
    _books_are_sound(world)


def test_cancelled_between_retries_no_further_attempt_is_made():
    world = world_of(tiny())
    world.gateways[0].outages = 1
    order_id, user = pending_order(world)
    out = _pay_and(
        world, order_id, 0.5, lambda: fulfilment.cancel_order(world.uow, user, order_id, 0.5, "x")
    )
    c = CONNECT_ERROR_TIME
    s2 = c + 1.0  # the backoff after attempt 1: the payment is found cancelled, no call
    assert (out["outcome"], out["end"]) == ("cancelled", s2)
    assert _rows(world) == [(c, order_id, "gw", 1, "failed", c)]
    payment = _payment(world)
    assert (payment.status, payment.attempts) == (PaymentStatus.CANCELLED, 1)
    assert world.recorder.counters == {"payment_retries": 1, "payments_cancelled": 1}
    assert list(world.uow.ledger) == []
    _books_are_sound(world)


def _expire(world, order_id: str):
    return lambda: fulfilment.expire_order(world.uow, order_id, world.env.now)


def test_the_reservation_expires_during_a_long_outage_between_retries():
    world = world_of(tiny())
    world.policies = dataclasses.replace(world.policies, reservation_ttl=2.0)
    world.gateways[0].outages = 1
    order_id, _ = pending_order(world)
    out = _pay_and(world, order_id, 2.5, _expire(world, order_id))
    c = CONNECT_ERROR_TIME
    t1 = c
    t2 = t1 + 1.0 + c
    s3 = t2 + 2.0  # attempt 3 would start here: the order expired at 2.5
    assert (out["acted"], out["outcome"], out["end"]) == (True, "cancelled", s3)
    assert [row[3:5] for row in _rows(world)] == [(1, "failed"), (2, "failed")]
    order = world.uow.orders.find_readonly(order_id)
    assert (order.status.value, order.cancel_reason) == ("cancelled", "reservation expired")
    assert _payment(world).status is PaymentStatus.CANCELLED
    assert world.recorder.counters == {"payment_retries": 2, "payments_cancelled": 1}
    assert world.uow.stock.find_readonly(world.skus[0]).reserved == 0
    _books_are_sound(world)


def test_the_reservation_expires_during_the_last_attempt_nothing_is_abandoned():
    world = world_of(tiny())
    world.policies = dataclasses.replace(world.policies, reservation_ttl=2.0)
    world.gateways[0].outages = 1
    order_id, _ = pending_order(world)
    c = CONNECT_ERROR_TIME
    s3 = c + 1.0 + c + 2.0
    out = _pay_and(world, order_id, s3 + c / 2, _expire(world, order_id))
    assert (out["acted"], out["outcome"], out["end"]) == (True, "cancelled", s3 + c)
    assert [row[3:5] for row in _rows(world)] == [(1, "failed"), (2, "failed"), (3, "failed")]
    payment = _payment(world)
    assert (payment.status, payment.attempts) == (PaymentStatus.CANCELLED, 2)
    assert world.uow.idempotency.find_readonly(payment.idempotency_key).outcome == "cancelled"
    assert world.recorder.counters == {"payment_retries": 2, "payments_cancelled": 1}
    _books_are_sound(world)
