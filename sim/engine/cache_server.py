"""The cache server in front of the database: a hit costs cache time, a miss a query too."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.domain.cache import MISS

if TYPE_CHECKING:
    from sim.engine.world import World

# Both functions run once or more per page, so they use the station inline (exactly what
# ``stations.visit`` does) rather than through one more generator.


def query(world: World, rng: np.random.Generator) -> Generator[simpy.Event, Any, float]:
    """Run one database query on a pooled connection; return the time spent waiting."""
    env = world.env
    service = world.scenario.stations.database.query.sample(rng) * world.db_factor
    with world.database.request() as request:
        yield request
        wait = env.now - request.arrived
        yield env.timeout(service)
    return wait


def lookup(
    world: World, key: str, rng: np.random.Generator
) -> Generator[simpy.Event, Any, tuple[bool, float, float]]:
    """Look ``key`` up in the cache; on a miss query the database and fill the cache.

    Returns (hit, cache wait, database wait).
    """
    env = world.env
    service = world.scenario.stations.cache.service.sample(rng) * world.cache_factor
    with world.cache_station.request() as request:
        yield request
        cache_wait = env.now - request.arrived
        yield env.timeout(service)
    if world.cache_down:
        db_wait = yield from query(world, rng)  # degraded: served from the database
        return False, cache_wait, db_wait
    if world.cache.get(key, env.now) is not MISS:
        return True, cache_wait, 0.0
    db_wait = yield from query(world, rng)
    world.cache.put(key, True, env.now)
    return False, cache_wait, db_wait
