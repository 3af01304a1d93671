"""Warehouses: paid orders queue for pickers, then ship, arrive, and sometimes come back.

The warehouse's steps are staff work: they run as the shop's admin (``world.admin_id``),
who holds ``manage_orders``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
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
    """Pick one paid order; its parcel then ships, arrives and may come back, up to the horizon.

    The process ends once the order is picked. A parcel waits hours to ship and days to
    arrive: it is a small :class:`Parcel` whose next step is a timeout's callback, rather than
    a process kept alive for each order (a generator, its frame and a Process: about 1 KB
    each, and a long run has thousands of orders waiting to ship).
    """
    env, spec = world.env, world.scenario.fulfilment
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
    # Every draw is made: let go of the session's generator while the order waits.
    del rng
    yield from visit(env, warehouse, pick)  # while the warehouse is down, in its queue
    back = return_delay if returned else None
    parcel = Parcel(world, order_id, user_id, delivery_delay, back, partial=partial)
    parcel.after(ship_delay, parcel.ship)


class Parcel:
    """A picked order between its steps: shipped, delivered, and maybe returned and refunded.

    Each step schedules the next with :meth:`after`. A step due at or after the horizon would
    never happen in the run, so it is not scheduled: the parcel leaves the run where it is.
    The steps are staff work, run as the shop's admin.
    """

    __slots__ = ("delivery_delay", "order_id", "partial", "return_delay", "user_id", "world")

    def __init__(
        self,
        world: World,
        order_id: str,
        user_id: str,
        delivery_delay: float,
        return_delay: float | None,
        *,
        partial: bool = False,
    ) -> None:
        self.world = world
        self.order_id = order_id
        self.user_id = user_id
        self.delivery_delay = delivery_delay
        self.return_delay = return_delay
        """Seconds from delivery until the customer sends it back; None: it is kept."""
        self.partial = partial
        """Whether a return of more than one unit sends back a single unit."""

    def after(self, delay: float, step: Callable[[simpy.Event], None]) -> None:
        """Run ``step`` in ``delay`` seconds, unless that falls at or after the horizon."""
        env = self.world.env
        if env.now + delay < self.world.scenario.horizon:
            env.timeout(delay).callbacks.append(step)

    def ship(self, _: simpy.Event) -> None:
        """Hand the parcel to the carrier; it arrives after the delivery delay."""
        world = self.world
        fulfilment.ship_order(world.uow, world.admin_id, self.order_id, world.env.now)
        self.after(self.delivery_delay, self.deliver)

    def deliver(self, _: simpy.Event) -> None:
        """Deliver the parcel; a parcel to be returned comes back after the return delay."""
        world = self.world
        fulfilment.deliver_order(world.uow, world.admin_id, self.order_id, world.env.now)
        if self.return_delay is not None:
            self.after(self.return_delay, self.come_back)

    def come_back(self, _: simpy.Event) -> None:
        """Take the order (or one unit of it) back from the customer into the warehouse."""
        world, order_id, now = self.world, self.order_id, self.world.env.now
        units = dict(world.uow.orders.find_readonly(order_id).returnable)
        if self.partial and sum(units.values()) > 1:
            units = {next(iter(units)): 1}
        fulfilment.request_return(world.uow, self.user_id, order_id, units, now)
        world.recorder.count("returns")
        fulfilment.receive_return(world.uow, world.admin_id, order_id, now)
        self.after(REFUND_LATENCY, self.refund)

    def refund(self, _: simpy.Event) -> None:
        """Refund the returned units at the gateway."""
        world = self.world
        fulfilment.refund_return(world.uow, world.admin_id, self.order_id, world.env.now)
        world.recorder.count("refunds")
