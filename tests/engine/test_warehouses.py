"""Exact traces of fulfilment: pick, ship, deliver, returns and warehouse outages."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from sim.engine import warehouses
from sim.engine.faults import start_faults
from sim.engine.warehouses import REFUND_LATENCY
from sim.scenario.schema import Scenario
from tests.engine._tiny import DELIVERY, PICK, RETURN, SHIP, paid_order, tiny, world_of

LONG = 7200.0
"""A horizon past every step of these traces (tiny's 600 s ends before deliveries)."""


def _long(overrides: dict[str, Any] | None = None) -> Scenario:
    """The tiny scenario with a horizon its fulfilment traces fit in."""
    return tiny({"horizon": LONG, **(overrides or {})})


def _fulfil_at(world, at: float, *, user: int = 0, sku: int = 0, qty: int = 1, seed: int = 0):
    """At time ``at``: pay for an order and start its fulfilment; return a dict with its id."""
    env, box = world.env, {}

    def proc():
        yield env.timeout(at)
        order_id, user_id = paid_order(world, user=user, sku=sku, qty=qty)
        box["order"] = order_id
        yield env.process(warehouses.fulfil(world, order_id, user_id, np.random.default_rng(seed)))
        box["done"] = env.now

    env.process(proc())
    return box


def _events(world, order_id: str) -> list[tuple[float, str, str]]:
    frame = world.recorder.order_events.frame()
    rows = frame[frame["order_id"] == order_id]
    return [(r.time, r.old, r.new) for r in rows.itertuples(index=False)]


def _draws(seed: int, n: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [rng.random() for _ in range(n)]


def _seed_where(partial: bool) -> int:
    """A seed whose third uniform draw (fulfil's 'partial return' draw) is < 0.5 iff partial."""
    return next(s for s in range(100) if (_draws(s, 3)[2] < 0.5) == partial)


def test_order_ships_and_arrives_after_the_constant_delays():
    world = world_of(_long())
    box = _fulfil_at(world, 0.0)
    world.env.run()
    order_id = box["order"]
    assert _events(world, order_id) == [
        (0.0, "pending", "processing"),
        (PICK + SHIP, "processing", "shipped"),
        (PICK + SHIP + DELIVERY, "shipped", "delivered"),
    ]
    assert box["done"] == PICK  # the process picks; the parcel's steps are scheduled after
    assert world.env.now == PICK + SHIP + DELIVERY  # the last of them
    assert world.uow.orders.find_readonly(order_id).status.value == "delivered"
    assert world.recorder.counters == {}
    stats = world.warehouses[0].stats()
    assert (stats.arrivals, stats.completions, stats.total_service) == (1, 1, PICK)


def test_orders_queue_for_the_single_picker():
    world = world_of(tiny())
    first = _fulfil_at(world, 0.0, user=0)
    second = _fulfil_at(world, 10.0, user=1, sku=1)
    world.env.run()
    assert _events(world, first["order"])[1] == (PICK + SHIP, "processing", "shipped")
    assert _events(world, second["order"])[1] == (2 * PICK + SHIP, "processing", "shipped")
    assert world.warehouses[0].stats().total_wait == PICK - 10.0


def test_two_pickers_work_in_parallel():
    world = world_of(tiny({"fulfilment.warehouses.east.workers": 2}))
    first = _fulfil_at(world, 0.0, user=0)
    second = _fulfil_at(world, 10.0, user=1, sku=1)
    world.env.run()
    assert _events(world, first["order"])[1][0] == PICK + SHIP
    assert _events(world, second["order"])[1][0] == 10.0 + PICK + SHIP


def test_a_returned_order_is_received_and_refunded_in_full():
    world = world_of(_long({"fulfilment.return_rate": 1.0}))
    box = _fulfil_at(world, 0.0, seed=_seed_where(partial=False))
    world.env.run()
    order_id = box["order"]
    delivered = PICK + SHIP + DELIVERY
    returned = delivered + RETURN
    assert _events(world, order_id) == [
        (0.0, "pending", "processing"),
        (PICK + SHIP, "processing", "shipped"),
        (delivered, "shipped", "delivered"),
        (returned, "delivered", "return_requested"),
        (returned, "return_requested", "returned"),
        (returned + REFUND_LATENCY, "returned", "refunded"),
    ]
    order = world.uow.orders.find_readonly(order_id)
    assert order.refunded == order.total  # one unit: the last one back, shipping included
    assert order.net_paid.minor == 0
    assert world.recorder.counters == {"returns": 1, "refunds": 1}
    assert world.uow.stock.find_readonly(world.skus[0]).available == 100  # back on the shelf


def test_a_partial_return_sends_back_one_unit_of_two():
    world = world_of(_long({"fulfilment.return_rate": 1.0}))
    box = _fulfil_at(world, 0.0, qty=2, seed=_seed_where(partial=True))
    world.env.run()
    order = world.uow.orders.find_readonly(box["order"])
    assert order.returned == {world.skus[0]: 1}
    assert order.status.value == "refunded"
    assert 0 < order.refunded.minor < order.total.minor
    assert world.uow.stock.find_readonly(world.skus[0]).available == 99


def test_a_full_return_of_two_units():
    world = world_of(_long({"fulfilment.return_rate": 1.0}))
    box = _fulfil_at(world, 0.0, qty=2, seed=_seed_where(partial=False))
    world.env.run()
    order = world.uow.orders.find_readonly(box["order"])
    assert order.returned == {world.skus[0]: 2}
    assert order.refunded == order.total


def test_orders_are_routed_to_warehouses_by_share():
    data = {
        "fulfilment.warehouses": [
            {"name": "east", "workers": 1, "pick": {"constant": 60}, "share": 0.5},
            {"name": "west", "workers": 1, "pick": {"constant": 30}, "share": 0.5},
        ]
    }
    world = world_of(tiny(data))
    seeds = {
        "east": next(s for s in range(100) if _draws(s, 1)[0] < 0.5),
        "west": next(s for s in range(100) if _draws(s, 1)[0] >= 0.5),
    }
    east = _fulfil_at(world, 0.0, user=0, seed=seeds["east"])
    west = _fulfil_at(world, 0.0, user=1, sku=1, seed=seeds["west"])
    world.env.run()
    assert _events(world, east["order"])[1][0] == 60.0 + SHIP
    assert _events(world, west["order"])[1][0] == 30.0 + SHIP
    assert [w.stats().arrivals for w in world.warehouses] == [1, 1]
    assert world.warehouse_names == ["east", "west"]


def test_a_warehouse_outage_holds_new_orders_in_processing_until_it_ends():
    world = world_of(_long({"faults": [{"outage": "warehouses.east", "at": 10, "duration": 100}]}))
    start_faults(world)
    before = _fulfil_at(world, 0.0, user=0)  # already picking when the outage starts
    during = _fulfil_at(world, 20.0, user=1, sku=1)
    after = _fulfil_at(world, 200.0, user=2, sku=2)
    world.env.run(until=109.0)
    assert world.uow.orders.find_readonly(during["order"]).status.value == "processing"
    stats = world.warehouses[0].stats()
    assert (stats.arrivals, stats.starts, stats.in_queue) == (2, 1, 1)  # waits in the queue
    world.env.run()
    assert _events(world, before["order"])[1] == (PICK + SHIP, "processing", "shipped")
    assert _events(world, during["order"]) == [
        (20.0, "pending", "processing"),
        (110.0 + PICK + SHIP, "processing", "shipped"),
        (110.0 + PICK + SHIP + DELIVERY, "shipped", "delivered"),
    ]
    assert _events(world, after["order"])[1] == (200.0 + PICK + SHIP, "processing", "shipped")
    faults = world.recorder.faults.frame()
    assert faults.values.tolist() == [["outage", "warehouses.east", 10.0, 110.0]]
    assert world.warehouse_outages == {}


def test_orders_already_queued_wait_out_the_outage_and_picks_under_way_finish():
    """One picker: the outage stops new picks, not the one under way; the queue shows it."""
    world = world_of(
        tiny(
            {
                "fulfilment.warehouses.east.workers": 1,
                "faults": [{"outage": "warehouses.east", "at": 1, "duration": 100}],
            }
        )
    )
    start_faults(world)
    orders = [_fulfil_at(world, 0.0, user=i, sku=i) for i in range(3)]
    world.env.run(until=100.0)
    stats = world.warehouses[0].stats()
    assert (stats.starts, stats.completions, stats.in_queue) == (1, 1, 2)
    world.env.run()
    shipped = [_events(world, o["order"])[1][0] for o in orders]
    assert shipped == [PICK + SHIP, 101.0 + PICK + SHIP, 101.0 + 2 * PICK + SHIP]
    assert world.warehouses[0].capacity == 1


def test_a_picked_order_waits_as_a_parcel_without_a_process_or_its_generator():
    # Orders wait hours to ship and days to arrive: a waiting order keeps neither a process
    # nor its session's generator alive, only a parcel on the timeout of its next step.
    world = world_of(tiny())
    env = world.env
    order_id, user_id = paid_order(world)
    rng = np.random.default_rng(0)
    process = env.process(warehouses.fulfil(world, order_id, user_id, rng))
    env.run(until=PICK + SHIP / 2)  # picked, waiting to ship
    assert not process.is_alive
    assert sys.getrefcount(rng) == 2  # this test's name and getrefcount's argument only
    [(due, step)] = [
        (time, step)
        for time, _, _, event in env._queue
        for step in event.callbacks
        if isinstance(getattr(step, "__self__", None), warehouses.Parcel)
    ]
    parcel = step.__self__
    assert (due, step.__func__) == (PICK + SHIP, warehouses.Parcel.ship)
    assert (parcel.order_id, parcel.user_id, parcel.return_delay) == (order_id, user_id, None)
    assert not hasattr(parcel, "__dict__")  # slots: a few dozen bytes a parcel


def test_an_order_leaves_the_run_where_its_next_step_falls_past_the_horizon():
    """Tiny's horizon is 600 s: picked at 60, shipped at 160; delivery (1160) is not waited for."""
    world = world_of(tiny({"fulfilment.return_rate": 1.0}))
    box = _fulfil_at(world, 0.0)
    late = _fulfil_at(world, 450.0, user=1, sku=1)  # picked at 510, would ship at 610
    world.env.run()
    assert _events(world, box["order"]) == [
        (0.0, "pending", "processing"),
        (PICK + SHIP, "processing", "shipped"),
    ]
    assert box["done"] == PICK
    assert _events(world, late["order"]) == [(450.0, "pending", "processing")]
    assert late["done"] == 450.0 + PICK
    assert world.env.now == 450.0 + PICK  # nothing was left scheduled past the horizon
