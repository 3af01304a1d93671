"""``run(scenario, seed) -> RunResult``: one replication, in explicit phases.

Build the world, start the processes, run to the horizon, finalise the time-weighted
statistics, collect the frames, compute the KPIs and audit the shop's books. Nothing is
global: each run has a fresh Environment, so a run is a pure function of its inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy

from sim.engine.audit import Audit, audit, audit_books
from sim.engine.faults import start_faults
from sim.engine.metrics import cache_series, compute_kpis
from sim.engine.recorder import Table
from sim.engine.rng import Streams
from sim.engine.shoppers import arrivals, closed_shopper, sweep_sessions
from sim.engine.world import World, build_world
from sim.scenario.schema import Scenario

Progress = Callable[[float, float], None]
"""Called as ``progress(simulated_now, horizon)`` while a run advances."""

ORDER_COLUMNS = ("order_id", "user", "placed_at", "status", "total", "refunded", "paid", "units")
"""Columns of the ``orders`` frame: one row per order in the store at the horizon."""

ORDER_DTYPES = {
    "placed_at": np.float64,
    "total": np.int64,
    "refunded": np.int64,
    "paid": np.bool_,
    "units": np.int64,
}
"""The numeric and boolean columns of the ``orders`` frame (money in minor units)."""

LEDGER_COLUMNS = ("seq", "kind", "order_id", "amount", "time")
"""Columns of the ``ledger`` frame: one row per ledger entry."""

LEDGER_DTYPES = {"seq": np.int64, "amount": np.int64, "time": np.float64}
"""The numeric columns of the ``ledger`` frame (amounts in minor units)."""

PROGRESS_STEPS = 100
"""How many times a run reports progress over its horizon."""


@dataclass(frozen=True)
class RunResult:
    """One replication's frames, KPIs and audit, with the inputs and runtime it ran with."""

    scenario: Scenario
    seed: int
    replication: int
    frames: dict[str, pd.DataFrame]
    kpis: dict[str, Any]
    audit: Audit
    runtime: float

    @property
    def warmup(self) -> float:
        """Return the warm-up cut in simulated seconds (0 for ``auto`` until analysis sets it)."""
        warmup = self.scenario.warmup
        return 0.0 if warmup == "auto" else float(warmup)


def run(
    scenario: Scenario,
    seed: int | None = None,
    *,
    replication: int = 0,
    progress: Progress | None = None,
) -> RunResult:
    """Simulate one replication of ``scenario`` and return its results."""
    started = time.perf_counter()
    seed = scenario.seed if seed is None else seed
    env = simpy.Environment()
    world = build_world(env, scenario, Streams(seed, replication))
    try:
        start(world)
        horizon = scenario.horizon
        if progress is None:
            env.run(until=horizon)
        else:
            for step in range(1, PROGRESS_STEPS):
                env.run(until=horizon * step / PROGRESS_STEPS)
                progress(env.now, horizon)
            env.run(until=horizon)  # exactly: a step's rounding must not move the end
            progress(env.now, horizon)
        frames, kpis, books = conclude(world)
    finally:
        world.uow.close()  # a file store's connection; nothing in memory
    return RunResult(
        scenario=scenario,
        seed=seed,
        replication=replication,
        frames=frames,
        kpis=kpis,
        audit=books,
        runtime=time.perf_counter() - started,
    )


def start(world: World) -> None:
    """Start a built world's processes: arrivals, closed population, faults, session sweep."""
    if world.rate_steps:
        world.env.process(arrivals(world))
    world.env.process(sweep_sessions(world))
    closed = world.scenario.arrivals.closed
    for index in range(closed.users if closed is not None else 0):
        world.env.process(closed_shopper(world, index + 1))
    start_faults(world)


def conclude(world: World) -> tuple[dict[str, pd.DataFrame], dict[str, Any], Audit]:
    """Close a world run to its horizon: its frames, KPIs and the audit of its books."""
    scenario, horizon = world.scenario, world.scenario.horizon
    for station in world.stations.values():
        station.finalize(horizon)
    world.close_open_sessions(horizon)
    # The books first: the audit's pass over every order, payment and ledger entry is then
    # over (its memory free again) before the frames are built, rather than held beside them.
    books = audit_books(world.uow)
    frames = collect_frames(world)
    warmup = 0.0 if scenario.warmup == "auto" else float(scenario.warmup)
    kpis = compute_kpis(frames, world, warmup=warmup, horizon=horizon)
    return frames, kpis, audit(world, frames, books)


def collect_frames(world: World) -> dict[str, pd.DataFrame]:
    """Return every frame of the run: the recorder's rows, stations, orders and the ledger.

    The recorder hands its rows over (it is empty afterwards; its counters stay), so the end
    of a long run does not hold every row twice.
    """
    frames = world.recorder.frames(release=True)  # the recorder's rows become the frames
    rows = []
    for name, station in world.stations.items():
        for row in station.series():
            rows.append({"station": name, **row})
    frames["stations"] = pd.DataFrame(rows)
    frames["station_stats"] = pd.DataFrame(
        [asdict(station.stats()) for station in world.stations.values()]
    )
    frames.setdefault("cache", cache_series(frames["requests"], world.scenario.metrics.interval))
    # Column by column in one pass over the store (no dict per row): on a file store each
    # order is loaded as the pass reaches it and dropped after. Its ids are the store's shared
    # ones, so the frames hold one string per id with the recorder's rows, not a copy per read.
    share = world.uow.shared_id
    frames["orders"] = _frame(
        ORDER_COLUMNS,
        ORDER_DTYPES,
        (
            (
                share(o.id),
                share(o.user_id),
                o.placed_at,
                o.status.value,
                o.total.minor,
                o.refunded.minor,
                o.is_paid,
                o.units,
            )
            for o in world.uow.orders.values()
        ),
    )
    frames["ledger"] = _frame(
        LEDGER_COLUMNS,
        LEDGER_DTYPES,
        ((e.seq, e.kind.value, share(e.order_id), e.amount.minor, e.at) for e in world.uow.ledger),
    )
    return frames


def _frame(
    columns: tuple[str, ...], dtypes: Mapping[str, type], rows: Iterable[tuple[Any, ...]]
) -> pd.DataFrame:
    """Return a frame of ``columns`` from an iterable of row tuples, gathered column-wise."""
    table = Table(columns, dtypes)
    for row in rows:
        table.append(*row)
    return table.frame(release=True)
