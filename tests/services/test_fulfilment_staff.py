"""The warehouse's steps are staff work: shipping, delivery, receiving and refunding a return.

Each needs ``manage_orders`` (sim.domain.users.PERMISSIONS: merchants and admins). A customer,
even the order's own, is refused with PermissionDenied and nothing changes; an unknown actor
is NotFound.
"""

from __future__ import annotations

import pytest

from sim.domain.errors import NotFound, PermissionDenied
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.services.handlers import fulfilment
from tests.services.conftest import ADMIN, ANN, BOB, BOOK, MERCHANT, MUG

STEPS = ("ship", "deliver", "receive", "refund")


def _do(uow, step, actor, order_id, now):
    action = {
        "ship": fulfilment.ship_order,
        "deliver": fulfilment.deliver_order,
        "receive": fulfilment.receive_return,
        "refund": fulfilment.refund_return,
    }[step]
    return action(uow, actor, order_id, now)


def _order_ready_for(uow, place, pay, step):
    """Ann's paid order of 2 books and a mug, brought (by the admin) to where ``step`` applies."""
    order_id = place(ANN, {BOOK: 2, MUG: 1})
    pay(order_id, now=2.0)
    if step in ("deliver", "receive", "refund"):
        fulfilment.ship_order(uow, ADMIN, order_id, 10.0)
    if step in ("receive", "refund"):
        fulfilment.deliver_order(uow, ADMIN, order_id, 20.0)
        fulfilment.request_return(uow, ANN, order_id, {MUG: 1}, 30.0)
    if step == "refund":
        fulfilment.receive_return(uow, ADMIN, order_id, 40.0)
    return order_id


def _snapshot(uow, order_id):
    order = uow.orders.find_readonly(order_id)
    mug = uow.stock.find_readonly(MUG)
    return order.status, dict(order.returned), order.refunded, mug.on_hand, len(uow.ledger)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("customer", [ANN, BOB], ids=["the_owner", "another_customer"])
def test_a_customer_may_not_do_the_staffs_work(uow, place, pay, step, customer):
    order_id = _order_ready_for(uow, place, pay, step)
    before = _snapshot(uow, order_id)
    with pytest.raises(PermissionDenied, match=f"user {customer} .customer. lacks permission "):
        _do(uow, step, customer, order_id, 50.0)
    assert _snapshot(uow, order_id) == before


EXPECTED = {  # the order's status after the step, and what the step returns
    "ship": (OrderStatus.SHIPPED, None),
    "deliver": (OrderStatus.DELIVERED, None),
    "receive": (OrderStatus.RETURNED, {MUG: 1}),
    "refund": (OrderStatus.REFUNDED, Money(971)),  # the mug: 8.99 + 8 % tax 0.72
}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("staff", [MERCHANT, ADMIN], ids=["merchant", "admin"])
def test_merchants_and_admins_do_the_staffs_work(uow, place, pay, step, staff):
    order_id = _order_ready_for(uow, place, pay, step)
    status, returned = EXPECTED[step]
    assert _do(uow, step, staff, order_id, 50.0) == returned
    order = uow.orders.find_readonly(order_id)
    assert (order.status, order.timestamps[status]) == (status, 50.0)


@pytest.mark.parametrize("step", STEPS)
def test_an_unknown_actor_is_not_found(uow, place, pay, step):
    order_id = _order_ready_for(uow, place, pay, step)
    before = _snapshot(uow, order_id)
    with pytest.raises(NotFound, match="user 'user-999999' not found"):
        _do(uow, step, "user-999999", order_id, 50.0)
    assert _snapshot(uow, order_id) == before
