"""Faults injected at simulated times: outages, latency spikes, cache flushes, pool shrinks.

Each fault is one short process: wait for its start, break something, wait for its
duration, mend it. A ``breakdown`` is a process that does so again and again: up for a
time drawn from its MTBF distribution, down (an outage) for a time drawn from its MTTR
distribution. Every window is recorded, so reports can shade it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import simpy

from sim.scenario.schema import (
    Breakdown,
    CacheFlush,
    GhostSuccess,
    LatencySpike,
    Outage,
    PoolShrink,
)

if TYPE_CHECKING:
    from sim.engine.world import World

_FACTORS = {"app": "app_factor", "database": "db_factor", "cache": "cache_factor"}

FAULT_STREAM = "faults"
"""The family of random streams recurring faults draw from: one generator per fault entry."""


def start_faults(world: World) -> None:
    """Start one process per fault of the scenario."""
    for index, fault in enumerate(world.scenario.faults):
        if isinstance(fault, Breakdown):
            world.env.process(_breakdowns(world, fault, index))
        else:
            world.env.process(_inject(world, fault))


def _breakdowns(world: World, fault: Breakdown, index: int) -> Generator[simpy.Event, Any, None]:
    """Fail and repair ``fault.breakdown`` for ever (or until ``fault.until``).

    Up-times and repair times come from the generator of the ``faults`` family for this
    entry's index, so two breakdowns never shift each other's times, and a what-if change
    of capacity leaves them alone (common random numbers).
    """
    env = world.env
    rng = world.streams.generator(FAULT_STREAM, index)
    yield env.timeout(fault.at)
    end = fault.until
    while True:
        up = fault.mtbf.sample(rng)
        down = fault.mttr.sample(rng)
        yield env.timeout(up)
        if end is not None and env.now >= end:
            return
        if down <= 0.0:
            continue  # an instant repair: nothing to break
        undo = _outage(world, fault.breakdown)
        world.recorder.faults.append("breakdown", fault.breakdown, env.now, env.now + down)
        yield env.timeout(down)
        undo()


def _gateway(world: World, target: str) -> Any:
    name = target.removeprefix("payments.")
    return next(g for g in world.gateways if g.name == name)


def _inject(world: World, fault: Any) -> Generator[simpy.Event, Any, None]:
    env = world.env
    yield env.timeout(fault.at)
    if isinstance(fault, CacheFlush):
        world.cache.flush()
        world.recorder.faults.append("cache_flush", "cache", env.now, env.now)
        return
    if isinstance(fault, Outage):
        kind, target, undo = "outage", fault.outage, _outage(world, fault.outage)
    elif isinstance(fault, LatencySpike):
        kind, target = "latency_spike", fault.latency_spike
        undo = _spike(world, target, fault.factor)
    elif isinstance(fault, PoolShrink):
        kind, target, undo = "pool_shrink", "database", _shrink(world, fault.pool_shrink.to)
    else:
        assert isinstance(fault, GhostSuccess)
        gateway = _gateway(world, fault.gateway)
        kind, target = "ghost_success", f"payments.{gateway.name}"
        gateway.ghost_share = fault.share

        def undo() -> None:
            gateway.ghost_share = 0.0

    # the window is recorded when it opens, so one still open at the horizon is reported too
    world.recorder.faults.append(kind, target, env.now, env.now + fault.duration)
    yield env.timeout(fault.duration)
    undo()


def _outage(world: World, target: str) -> Callable[[], None]:
    """Break ``target``; return what mends it. Overlapping outages nest: the last one mends."""
    if target == "cache":
        world.cache_outages += 1

        def undo_cache() -> None:
            world.cache_outages -= 1
            if not world.cache_outages:
                world.cache.flush()  # a restarted cache comes back empty

        return undo_cache
    if target.startswith("payments."):
        gateway = _gateway(world, target)
        gateway.outages += 1

        def undo_gateway() -> None:
            gateway.outages -= 1

        return undo_gateway
    # A warehouse that is down starts no pick: orders (those queued already and those that
    # come in) wait in its queue, where the backlog shows; picks under way are finished.
    name = target.removeprefix("warehouses.")
    index = world.warehouse_names.index(name)
    station = world.warehouses[index]
    count = world.warehouse_outages.get(name, 0)
    if not count:
        station.set_capacity(0)
    world.warehouse_outages[name] = count + 1

    def undo_warehouse() -> None:
        count = world.warehouse_outages.pop(name) - 1
        if count:
            world.warehouse_outages[name] = count
        else:
            station.set_capacity(world.scenario.fulfilment.warehouses[index].workers)

    return undo_warehouse


def _shrink(world: World, to: int) -> Callable[[], None]:
    """Limit the database pool to ``to`` connections; overlapping limits take the smallest."""
    if not world.pool_limits:
        world.pool_limits.append(world.database.capacity)  # the configured pool, kept first
    world.pool_limits.append(to)
    world.database.set_capacity(min(world.pool_limits))

    def undo() -> None:
        world.pool_limits.remove(to)
        if len(world.pool_limits) == 1:
            world.database.set_capacity(world.pool_limits.pop())
        else:
            world.database.set_capacity(min(world.pool_limits))

    return undo


def _spike(world: World, target: str, factor: float) -> Callable[[], None]:
    """Multiply ``target``'s service or latency by ``factor``; return what divides it back."""
    if target.startswith("payments."):
        gateway = _gateway(world, target)
        gateway.latency_factor *= factor

        def undo_gateway() -> None:
            gateway.latency_factor /= factor

        return undo_gateway
    attribute = _FACTORS[target]
    setattr(world, attribute, getattr(world, attribute) * factor)

    def undo() -> None:
        setattr(world, attribute, getattr(world, attribute) / factor)

    return undo
