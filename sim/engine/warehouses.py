"""Warehouses: paid orders queue for pickers, then ship, arrive, and sometimes come back.

The warehouse's steps are staff work: they run as the shop's admin (``world.admin_id``),
who holds ``manage_orders``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.engine.stations import visit
from sim.services.handlers import fulfilment

if TYPE_CHECKING:
    from sim.engine.world import World

REFUND_LATENCY = 1.0
"""Seconds a refund takes at the gateway (refunds are not on any customer's critical path)."""


def fulfil(
    world: World, order_id: str, user_id: str, rng: np.random.Generator
) -> Generator[simpy.Event, Any, None]:
    """Take one paid order through picking, shipping, delivery and any return, up to the horizon."""
    env, uow, spec = world.env, world.uow, world.scenario.fulfilment
    staff = world.admin_id
    u = rng.random()
    index = min(
        int(np.searchsorted(world.warehouse_cdf, u, side="right")), len(spec.warehouses) - 1
    )
    warehouse = world.warehouses[index]
    pick = spec.warehouses[index].pick.sample(rng)
    ship_delay = spec.ship_delay.sample(rng)
    delivery_delay = spec.delivery_delay.sample(rng)
    returned = rng.random() < spec.return_rate
    return_delay = spec.return_delay.sample(rng)
    partial = rng.random() < 0.5
    # Every draw is made: let go of the session's generator, or each order in fulfilment
    # (days, on a long run thousands at once) would keep one alive.
    del rng
    yield from visit(env, warehouse, pick)  # while the warehouse is down, in its queue
    # A step due at or after the horizon would never happen in the run: the order leaves the
    # run where it is rather than wait for it. Delivery takes days, so on a long run waiting
    # processes (one per order) would be the run's largest growth in memory.
    horizon = world.scenario.horizon
    if env.now + ship_delay >= horizon:
        return
    yield env.timeout(ship_delay)
    fulfilment.ship_order(uow, staff, order_id, env.now)
    if env.now + delivery_delay >= horizon:
        return
    yield env.timeout(delivery_delay)
    fulfilment.deliver_order(uow, staff, order_id, env.now)
    if not returned or env.now + return_delay >= horizon:
        return
    yield env.timeout(return_delay)
    order = uow.orders.find_readonly(order_id)
    units = dict(order.returnable)
    if partial and sum(units.values()) > 1:
        sku = next(iter(units))
        units = {sku: 1}
    fulfilment.request_return(uow, user_id, order_id, units, env.now)
    world.recorder.count("returns")
    fulfilment.receive_return(uow, staff, order_id, env.now)
    if env.now + REFUND_LATENCY >= horizon:
        return
    yield env.timeout(REFUND_LATENCY)
    fulfilment.refund_return(uow, staff, order_id, env.now)
    world.recorder.count("refunds")
