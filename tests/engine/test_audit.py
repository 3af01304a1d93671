"""The end-of-run audit: each rule passes on sound books and names the ids when broken."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import tracemalloc
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import simpy

import sim.engine.runner as runner
from sim.domain import inventory
from sim.domain.ledger import make_entry
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.domain.payments import Payment, PaymentStatus
from sim.engine.audit import (
    Audit,
    Violation,
    _check_sessions,
    _OrderPass,
    audit,
    audit_books,
)
from sim.engine.faults import start_faults
from sim.engine.rng import Streams
from sim.engine.shoppers import CLOSED_SID_BASE, arrivals, closed_shopper
from sim.engine.world import build_world
from sim.scenario import apply_overrides, parse_scenario
from sim.services.handlers import fulfilment, shopping
from tests.engine._tiny import paid_order, paying_order, pending_order, smoke_data, tiny, world_of

ONE = {"coupons": [{"code": "ONE", "kind": "percent", "value": 10, "usage_limit": 1}]}


def _rules(world) -> list[str]:
    return [v.rule for v in audit(world).findings]


def _session(world, sid: int, reason: str = "exit") -> None:
    world.recorder.sessions.append(sid, None, 0.0, 1.0, 1, False, 0, reason)


# --- the result type -----------------------------------------------------------------------------


def test_the_runner_still_exports_the_audit():
    assert runner.Audit is Audit
    assert runner.audit is audit


def test_an_audit_is_its_violations_as_text_and_as_values():
    found = (Violation("money", (), "a != b"), Violation("ledger orphan", ("entry-3", "order-9")))
    result = Audit.of(found, {"orders": 2})
    assert result.violations == ("money: a != b", "ledger orphan: entry-3 order-9")
    assert result.findings == found
    assert result.rules == ("ledger orphan", "money")
    assert result.checked == {"orders": 2}
    assert not result.ok
    assert result == Audit(("money: a != b", "ledger orphan: entry-3 order-9"))
    assert Audit(()).ok and Audit(()).rules == ()
    assert "findings" not in repr(result)
    copy = pickle.loads(pickle.dumps(result))  # results travel back from worker processes
    assert (copy, copy.findings, copy.checked) == (result, found, {"orders": 2})


# --- sound books ---------------------------------------------------------------------------------


def test_a_fresh_world_and_a_shop_in_every_state_pass():
    world = world_of(tiny(ONE))
    assert audit(world) == Audit(())
    paid, user = paid_order(world, user=0, sku=0, qty=2)
    pending, _ = pending_order(world, user=1, sku=1)
    shopping.add_to_cart(world.uow, world.population[2], world.skus[2], 1, 0.0)
    shopping.apply_coupon(world.uow, world.population[2], "ONE", 0.0, policies=world.policies)
    held = shopping.checkout(world.uow, world.population[2], 0.0, policies=world.policies)
    cancelled, owner = paid_order(world, user=1, sku=3)
    fulfilment.cancel_order(world.uow, owner, cancelled, 1.0, "changed my mind")
    fulfilment.ship_order(world.uow, world.admin_id, paid, 2.0)
    fulfilment.deliver_order(world.uow, world.admin_id, paid, 3.0)
    fulfilment.request_return(world.uow, user, paid, {world.skus[0]: 1}, 4.0)
    fulfilment.receive_return(world.uow, world.admin_id, paid, 5.0)
    fulfilment.refund_return(world.uow, world.admin_id, paid, 6.0)
    _session(world, 1)
    _session(world, 2, "in_flight")
    result = audit(world)
    assert result == Audit(()), result.violations
    assert result.checked["orders"] == 4
    assert result.checked["orders_final"] == 2  # refunded, cancelled
    assert result.checked["orders_in_flight"] == 2  # two pending, awaiting payment
    assert result.checked["payments_final"] == 2
    assert result.checked["sessions"] == 2
    assert (result.checked["sessions_final"], result.checked["sessions_in_flight"]) == (1, 1)
    assert world.uow.coupons.find_readonly("ONE").held == {held: world.population[2]}
    assert pending in {o.id for o in world.uow.orders.values()}


def test_a_pending_order_with_an_open_payment_is_in_flight():
    world = world_of(tiny())
    _, _, payment_id = paying_order(world)
    shopping.record_gateway_answer(world.uow, payment_id, "timeout", 1.0)
    result = audit(world)
    assert result.ok, result.violations
    assert (result.checked["orders_in_flight"], result.checked["payments_in_flight"]) == (1, 1)
    shopping.abandon_payment(world.uow, payment_id, 2.0)
    result = audit(world)
    assert result.ok, result.violations
    assert (result.checked["orders_final"], result.checked["payments_final"]) == (1, 1)


def test_every_run_passes_and_counts_what_is_in_flight():
    result = runner.run(parse_scenario(apply_overrides(smoke_data(), {"horizon": "3m"})), 3)
    assert result.audit == Audit(())
    checked = result.audit.checked
    assert checked["sessions"] == len(result.frames["sessions"]) > 50
    assert (
        checked["sessions_in_flight"]
        == (result.frames["sessions"]["end_reason"] == "in_flight").sum()
    )
    assert checked["orders"] == len(result.frames["orders"]) > 2
    assert checked["orders_in_flight"] + checked["orders_final"] == checked["orders"]
    assert checked["skus"] == 200


def test_the_books_balance_at_every_instant_of_a_run_not_only_at_the_end():
    scenario = parse_scenario(
        apply_overrides(
            smoke_data(),
            {
                "horizon": "4m",
                "behavior.profile": "tpcw-ordering",
                "faults": [
                    {"outage": "payments.card-a", "at": "1m", "duration": "1m"},
                    {"ghost_success": "card-b", "share": 0.5, "at": 0, "duration": "4m"},
                    {"outage": "warehouses.east", "at": "30s", "duration": "2m"},
                ],
            },
        )
    )
    world = build_world(simpy.Environment(), scenario, Streams(11))
    world.env.process(arrivals(world))
    for index in range(scenario.arrivals.closed.users):
        world.env.process(closed_shopper(world, index + 1))
    start_faults(world)
    in_flight = []
    for t in range(10, 240, 10):
        world.env.run(until=t)
        result = audit(world)
        assert result.ok, (t, result.violations)
        in_flight.append(result.checked["sessions_in_flight"])
    assert max(in_flight) > 10  # sessions walking mid-run count as in flight, not as lost


# --- every rule, broken --------------------------------------------------------------------------


def test_tampered_books_name_every_broken_rule_and_the_ids():
    world = world_of(tiny(ONE))
    order_id, _ = paid_order(world)
    sku1 = world.skus[1]
    item = world.uow.stock.find_readonly(sku1)
    item.reserved = item.on_hand + 2
    world.uow.coupons.find_readonly("ONE").used = 2
    order = world.uow.orders.find_readonly(order_id)
    order.refunded = Money(100)
    net = order.total.minor
    assert audit(world).violations == (
        f"negative stock: {sku1} available=-2",
        f"stock invariant: {sku1} 102 reserved exceeds 100 on hand",
        f"stock conservation: {sku1} available -2 + reserved 0 + shipped 0 - returned 0 = -2 "
        "!= initial 100 + restocked 0 = 100",
        f"stock reserved: {sku1} the item counts 102 reserved, the orders 0",
        f"ledger amount_mismatch: {order_id} ledger net {Money(net)} ({Money(net)} charged - "
        f"0.00 USD refunded) != order net paid {Money(net - 100)} (paid: True, refunded 1.00 USD)",
        f"money: ledger balance {net} != sum of paid orders {net - 100}",
        "coupon over its limit: ONE 2 used + 0 held > limit 1",
        "coupon uses: ONE 2 used, but 0 paid orders carry the code",
    )


def test_an_order_in_an_unknown_state_is_flagged():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    world.uow.orders.find_readonly(order_id).status = "lost"
    assert audit(world).violations == (f"illegal order state: {order_id} lost",)


def test_books_checked_before_the_frames_are_reported_as_they_were_checked():
    # The end of a run checks the books before it builds the frames, and hands them over.
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    order = world.uow.orders.find_readonly(order_id)
    status, order.status = order.status, "lost"
    books = audit_books(world.uow)
    order.status = status  # mended after the check: the audit reports what was checked
    assert audit(world, books=books).violations == (f"illegal order state: {order_id} lost",)
    assert audit(world).ok


def test_units_sold_without_an_order_break_conservation():
    world = world_of(tiny())
    paid_order(world, sku=0, qty=3)
    item = world.uow.stock.find_readonly(world.skus[0])
    item.on_hand -= 1  # a unit walks out of the warehouse, and the books say it was sold
    item.sold += 1
    sku = world.skus[0]
    assert audit(world).violations == (
        f"stock conservation: {sku} available 96 + reserved 0 + shipped 3 - returned 0 = 99 "
        "!= initial 100 + restocked 0 = 100",
        f"stock sold: {sku} the item counts 4 sold, the orders 3",
    )


def test_a_return_restocked_twice_breaks_conservation():
    world = world_of(tiny())
    order_id, user = paid_order(world, sku=0, qty=2)
    for step, action in enumerate((fulfilment.ship_order, fulfilment.deliver_order), start=1):
        action(world.uow, world.admin_id, order_id, float(step))
    fulfilment.request_return(world.uow, user, order_id, {world.skus[0]: 1}, 3.0)
    fulfilment.receive_return(world.uow, world.admin_id, order_id, 4.0)
    assert audit(world).ok
    with world.uow:
        world.uow.stock.get(world.skus[0]).restock(1, inventory.RETURN, 5.0)
        world.uow.commit()
    assert _rules(world) == ["stock conservation", "stock returned"]


def test_a_supplier_delivery_is_restocked_stock():
    world = world_of(tiny())
    paid_order(world)
    with world.uow:
        world.uow.stock.get(world.skus[0]).restock(7, inventory.SUPPLIER, 1.0)
        world.uow.commit()
    assert audit(world).ok


def test_an_order_for_a_sku_with_no_stock_item():
    world = world_of(tiny())
    paid_order(world, sku=4)
    world.uow.stock._items.pop(world.skus[4])
    assert audit(world).violations == (
        f"stock conservation: {world.skus[4]} ordered, but no stock item",
    )


def test_ledger_entries_must_belong_to_an_order_and_its_payment():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    other, _ = paid_order(world, user=1)
    payment_of_other = world.uow.orders.find_readonly(other).payment_id
    log = world.uow.ledger
    log.append(make_entry(len(log) + 1, "void", "order-999999", "payment-000001", Money(5), 1.0))
    log.append(make_entry(len(log) + 1, "void", order_id, payment_of_other, Money(5), 1.0))
    log.append(make_entry(len(log) + 1, "void", order_id, "payment-nope", Money(5), 1.0))
    assert audit(world).violations == (
        "ledger orphan: entry-3 order-999999 void of 0.05 USD for an order that does not exist",
        f"ledger orphan: entry-4 {order_id} {payment_of_other} void of 0.05 USD names a payment of "
        f"{other}",
        f"ledger orphan: entry-5 {order_id} payment-nope void of 0.05 USD names no payment",
    )


def test_a_second_capture_for_one_order_is_a_double_charge():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    order = world.uow.orders.find_readonly(order_id)
    twin = Payment.create(
        "payment-twin",
        order_id,
        order.total,
        world.card,
        gateway="gw",
        idempotency_key="twin",
        now=1.0,
    )
    twin.status = PaymentStatus.CAPTURED
    world.uow.payments._items[twin.id] = twin
    log = world.uow.ledger
    log.append(make_entry(len(log) + 1, "charge", order_id, twin.id, order.total, 1.0))
    rules = _rules(world)
    assert rules == [
        "ledger charged_twice",
        "ledger amount_mismatch",
        "money",
        "charged twice",
        "payment state",
    ]
    violations = audit(world).violations
    assert f"charged twice: {order_id} 2 captured payments" in violations
    assert any(v.startswith(f"payment state: payment-twin {order_id} captured") for v in violations)


def test_what_payments_captured_must_match_the_ledger():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    payment = world.uow.payments.find_readonly(world.uow.orders.find_readonly(order_id).payment_id)
    payment.refunded = Money(10)
    net = payment.amount.minor
    assert audit(world).violations == (
        f"money payments: ledger balance {net} != captured - refunded by payments {net - 10}",
    )


def test_coupon_limits_per_customer_and_uses_held_for_no_pending_order():
    world = world_of(
        tiny({"coupons": [{"code": "PER", "kind": "percent", "value": 5, "per_customer_limit": 1}]})
    )
    user = world.population[0]
    coupon = world.uow.coupons.find_readonly("PER")
    coupon.used_by[user] = 1
    coupon.held["order-000777"] = user
    coupon.held_by[user] = 1
    assert audit(world).violations == (
        f"coupon over its per-customer limit: PER {user} 2 uses > limit 1",
        "coupon uses: PER order-000777 held for ['order-000777'] order(s) not pending, "
        "not held for pending none",
    )


def test_a_pending_order_that_nobody_will_pay_or_expire_is_stranded():
    world = world_of(tiny())
    order_id, _ = pending_order(world)
    order = world.uow.orders.find_readonly(order_id)
    reservation = world.uow.reservations.find_readonly(order.reservation_id)
    item = world.uow.stock.find_readonly(world.skus[0])
    reservation.status = inventory.RELEASED
    item.reserved = 0
    assert audit(world).violations == (
        f"order stranded: {order_id} pending with no open payment and its reservation released",
    )
    order.reservation_id = None
    assert audit(world).violations == (
        f"order stranded: {order_id} pending with no open payment and its reservation missing",
    )


def test_a_cancelled_order_still_owed_a_refund_is_stranded():
    world = world_of(tiny())
    order_id, _ = pending_order(world)
    fulfilment.cancel_order(world.uow, world.admin_id, order_id, 1.0, "test")
    world.uow.orders.find_readonly(order_id).refund_due = Money(250)
    assert audit(world).violations == (f"order stranded: {order_id} cancelled with 2.50 USD due",)


def test_a_paid_order_whose_reservation_was_not_committed():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    order = world.uow.orders.find_readonly(order_id)
    world.uow.reservations.find_readonly(order.reservation_id).status = inventory.EXPIRED
    assert audit(world).violations == (
        f"order reservation: {order_id} {order.reservation_id} paid, but its reservation is "
        "expired",
    )


def test_payments_must_have_an_order_and_not_be_left_pending():
    world = world_of(tiny())
    order_id, _, payment_id = paying_order(world, key="k1")
    payment = world.uow.payments.find_readonly(payment_id)
    # the customer cancels while the gateway still has the request: the payment closes too
    fulfilment.cancel_order(world.uow, world.population[0], order_id, 1.0, "impatient")
    assert payment.status is PaymentStatus.CANCELLED
    books = audit(world)
    assert books.ok, books.violations
    assert (books.checked["payments_final"], books.checked["payments_in_flight"]) == (1, 0)
    # a cancellation that forgot the payment (the old bug) leaves it stranded
    payment.status = PaymentStatus.PENDING
    world.uow.idempotency.find_readonly("k1").outcome = "pending"
    orphan = dataclasses.replace(payment, id="payment-orphan", order_id="order-gone", events=[])
    world.uow.payments._items[orphan.id] = orphan
    assert audit(world).violations == (
        f"payment stranded: {payment_id} {order_id} pending while its order is cancelled",
        "payment orphan: payment-orphan order-gone its order does not exist",
    )
    # a failed attempt settles the idempotency record, yet the payment is stranded all the same
    payment.status = PaymentStatus.FAILED
    world.uow.idempotency.find_readonly("k1").outcome = "failed"
    del world.uow.payments._items[orphan.id]
    assert audit(world).violations == (
        f"payment stranded: {payment_id} {order_id} failed while its order is cancelled",
    )


def test_a_cancelled_payment_whose_order_still_awaits_payment_is_in_the_wrong_state():
    world = world_of(tiny())
    order_id, _, payment_id = paying_order(world, key="k1")
    world.uow.payments.find_readonly(payment_id).status = PaymentStatus.CANCELLED
    assert audit(world).violations == (
        f"payment state: {payment_id} {order_id} cancelled while its order still awaits payment",
    )


def test_sessions_recorded_twice_lost_or_ended_oddly():
    world = world_of(tiny())
    _session(world, 1)
    _session(world, 1)
    _session(world, 3, "crashed")
    _session(world, CLOSED_SID_BASE * 2 + 2)
    world.recorder.requests.append(0.0, 9, None, "home", 0.1, 0, 0.1, 0, 0, 0, 0, 0, "ok")
    assert audit(world).violations == (
        "session twice: session-1 recorded 2 times",
        "session state: session-3 ended by 'crashed'",
        "session lost: session-2 started but never recorded",
        f"session lost: session-{CLOSED_SID_BASE * 2 + 1} started but never recorded",
        "session lost: session-9 made requests, never recorded",
    )


def test_a_session_still_open_and_also_recorded_is_counted_twice():
    world = world_of(tiny())
    _session(world, 1)
    world.open_sessions[1] = (object(), 0.0)
    world.open_sessions[2] = (object(), 0.0)
    assert audit(world).violations == ("session twice: session-1 recorded 2 times",)
    world.open_sessions.pop(1)
    result = audit(world)
    assert result.ok and result.checked["sessions_in_flight"] == 1


def test_authorisations_the_shop_never_captured_are_counted_not_violations():
    world = world_of(tiny())
    order_id, _ = pending_order(world)
    paid, _ = paid_order(world, user=1)
    gateway = world.gateways[0]
    gateway.settled[f"{order_id}@gw"] = "approved"
    gateway.settled[f"{paid}@gw"] = "approved"
    gateway.settled["order-000999@gw"] = "declined"
    result = audit(world)
    assert result.ok
    assert result.checked["uncaptured_authorisations"] == 1


def test_audit_books_needs_only_a_unit_of_work():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    books = audit_books(world.uow)
    assert books.ok and books.checked["orders"] == 1 and books.checked["ledger_entries"] == 1
    world.uow.orders.find_readonly(order_id).status = OrderStatus.SHIPPED
    assert audit_books(world.uow).ok  # shipped is in flight


@pytest.mark.parametrize("frames", [True, False])
def test_the_audit_reads_the_frames_it_is_given_or_the_recorder(frames):
    world = world_of(tiny())
    _session(world, 2)
    given = {"sessions": world.recorder.sessions.frame()} if frames else None
    assert audit(world, given).violations == ("session lost: session-1 started but never recorded",)


def test_requests_kept_as_aggregates_are_not_needed_for_the_session_rules():
    world = world_of(tiny())
    _session(world, 1)
    frames = {"sessions": world.recorder.sessions.frame(), "requests": pd.DataFrame({"time": []})}
    assert audit(world, frames).ok
    result = runner.run(
        parse_scenario(
            apply_overrides(smoke_data(), {"horizon": "2m", "metrics.requests": "aggregate"})
        ),
        2,
    )
    assert result.audit == Audit(()), result.audit.violations
    assert result.audit.checked["sessions"] > 50


def test_the_session_rules_hold_arrays_not_sets_of_a_long_runs_sessions():
    # 200,000 sessions, one recorded twice and one lost: the rules find both, with a peak
    # of a few arrays of the ids (Python lists, sets and counters of them took 56 MB).
    ids = np.concatenate([np.arange(1, 100_001), np.arange(100_002, 200_002), [7]])
    sessions = pd.DataFrame({"session": ids, "end_reason": "exit"})
    world = SimpleNamespace(open_sessions={}, recorder=SimpleNamespace())
    found: list[Violation] = []
    checked: Counter[str] = Counter()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _check_sessions(world, {"sessions": sessions}, found, checked)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert [str(v) for v in found] == [
        "session twice: session-7 recorded 2 times",
        "session lost: session-100001 started but never recorded",
    ]
    assert checked == {"sessions": 200_000, "sessions_final": 200_001, "sessions_in_flight": 0}
    assert peak < 16 * 2**20, peak  # 13.4 MB: the unique ids, their counts, the end reasons


def test_order_facts_keep_minor_units_and_give_back_the_orders_money():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    order = world.uow.orders.find_readonly(order_id)
    facts = _OrderPass(world.uow, {}, Counter()).facts[order_id]
    assert (facts.total, facts.net_paid, facts.refunded) == (
        order.total,
        order.net_paid,
        order.refunded,
    )
    held = [getattr(facts, name) for name in type(facts).__slots__]
    assert not any(isinstance(value, Money) for value in held)  # 3 x 64 bytes less an order


def test_the_books_keep_the_interned_ids_not_the_copies_read_back(tmp_path):
    """A file store gives each order and payment read back its own copies of its ids; the
    audit's facts keep the one string per id the run holds, not a copy per fact."""
    world = world_of(tiny({"storage": {"kind": "sqlite", "path": str(tmp_path / "shop.db")}}))
    try:
        order_id, _ = paid_order(world)
        payment = next(iter(world.uow.payments.values()))
        payment_id = sys.intern(payment.id)  # from now on the one string of this id
        orders = _OrderPass(world.uow, {}, Counter())
        assert orders.facts[order_id].id is order_id
        assert orders.facts[order_id].payment_id is payment_id
        assert all(key is facts.id for key, facts in orders.facts.items())
    finally:
        world.uow.close()
