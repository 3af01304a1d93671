"""The cache server in front of the database: a hit costs cache time, a miss a query too."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.domain.cache import MISS

if TYPE_CHECKING:
    from sim.engine.world import World

# These run several times per page, so they use the stations inline (exactly what
# ``stations.visit`` does) rather than through one more generator per visit, and a page's
# look-ups or queries run in one generator, not one each.


def query(world: World, rng: np.random.Generator) -> Generator[simpy.Event, Any, float]:
    """Run one database query on a pooled connection; return the time spent waiting."""
    return (yield from queries(world, 1, rng))


def queries(
    world: World, count: int, rng: np.random.Generator
) -> Generator[simpy.Event, Any, float]:
    """Run ``count`` database queries one after another; return their total time waiting."""
    env, database = world.env, world.database
    sample = world.scenario.stations.database.query.sample
    waited = 0.0
    for _ in range(count):
        service = sample(rng) * world.db_factor
        with database.request() as request:
            yield request
            waited += env.now - request.arrived
            yield env.timeout(service)
    return waited


def lookup(
    world: World, key: str, rng: np.random.Generator
) -> Generator[simpy.Event, Any, tuple[bool, float, float]]:
    """Look ``key`` up in the cache; on a miss query the database and fill the cache.

    Returns (hit, cache wait, database wait).
    """
    hits, _, cache_wait, db_wait = yield from lookups(world, [key], rng)
    return hits == 1, cache_wait, db_wait


def lookups(
    world: World, keys: list[str], rng: np.random.Generator
) -> Generator[simpy.Event, Any, tuple[int, int, float, float]]:
    """Look each of ``keys`` up in turn, as :func:`lookup` does.

    A look-up holds a cache server for its service time; then, while the cache is down, the
    database answers (a miss); otherwise a hit is done and a miss queries the database and
    fills the cache. Returns (hits, misses, cache wait, database wait), the waits summed.
    """
    env, cache, station = world.env, world.cache, world.cache_station
    sample = world.scenario.stations.cache.service.sample
    hits = misses = 0
    cache_wait = db_wait = 0.0
    for key in keys:
        service = sample(rng) * world.cache_factor
        with station.request() as request:
            yield request
            cache_wait += env.now - request.arrived
            yield env.timeout(service)
        if world.cache_outages:  # down (world.cache_down, read without a property call)
            misses += 1
            db_wait += yield from queries(world, 1, rng)
            continue
        if cache.get(key, env.now) is not MISS:
            hits += 1
            continue
        misses += 1
        db_wait += yield from queries(world, 1, rng)
        cache.put(key, True, env.now)
    return hits, misses, cache_wait, db_wait
