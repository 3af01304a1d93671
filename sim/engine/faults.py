"""Faults injected at simulated times: outages, latency spikes, cache flushes, pool shrinks.

Each fault is one short process: wait for its start, break something, wait for its
duration, mend it. Every window is recorded, so reports can shade it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import simpy

from sim.scenario.schema import CacheFlush, GhostSuccess, LatencySpike, Outage, PoolShrink

if TYPE_CHECKING:
    from sim.engine.world import World

_FACTORS = {"app": "app_factor", "database": "db_factor", "cache": "cache_factor"}


def start_faults(world: World) -> None:
    """Start one process per fault of the scenario."""
    for fault in world.scenario.faults:
        world.env.process(_inject(world, fault))


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
    start = env.now
    if isinstance(fault, Outage):
        target = fault.outage
        undo = _outage(world, target)
        kind = "outage"
    elif isinstance(fault, LatencySpike):
        target = fault.latency_spike
        undo = _spike(world, target, fault.factor)
        kind = "latency_spike"
    elif isinstance(fault, PoolShrink):
        target = "database"
        pool = world.database.capacity
        world.database.set_capacity(min(fault.pool_shrink.to, pool))

        def undo() -> None:
            world.database.set_capacity(pool)

        kind = "pool_shrink"
    else:
        assert isinstance(fault, GhostSuccess)
        gateway = _gateway(world, fault.gateway)
        target = f"payments.{gateway.name}"
        gateway.ghost_share = fault.share

        def undo() -> None:
            gateway.ghost_share = 0.0

        kind = "ghost_success"
    yield env.timeout(fault.duration)
    undo()
    world.recorder.faults.append(kind, target, start, env.now)


def _outage(world: World, target: str) -> Any:
    if target == "cache":
        world.cache_down = True

        def undo() -> None:
            world.cache_down = False
            world.cache.flush()  # a restarted cache comes back empty

        return undo
    if target.startswith("payments."):
        gateway = _gateway(world, target)
        gateway.down = True

        def undo_gateway() -> None:
            gateway.down = False

        return undo_gateway
    name = target.removeprefix("warehouses.")
    recovered = world.env.event()
    world.warehouse_outages[name] = recovered

    def undo_warehouse() -> None:
        del world.warehouse_outages[name]
        recovered.succeed()

    return undo_warehouse


def _spike(world: World, target: str, factor: float) -> Any:
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
