"""Arrivals far above capacity for three minutes: queues grow, nothing is lost, memory bounded.

The smoke shop with two app servers gets twelve new sessions a second from minute 1 to 4 (about
four times what two servers can serve), then half a session a second. The app queue builds up
to hundreds of requests and drains afterwards; every session and order is accounted for (the
audit's rules, and the counts checked here); and traced memory stays within a bound that is
linear in what the run records, not in how long the queue was.

The memory bound. Everything a run keeps is (a) the world it built, measured here before the run
starts, (b) one row per request, session, payment attempt and order transition in the recorder's
column lists: at most 13 values each, a pointer (8 bytes) plus a boxed float or short string
(24-60 bytes), about 0.5 KB a row, and (c) the processes of the sessions open at once: a
generator frame, a Shopper, two numpy Generators (PCG64 with its SeedSequence, about 2.5 KB
each) and a few SimPy events, about 7 KB a session. The bound allows 1 KB a row and 16 KB a
session open at the peak, about twice those estimates: a leak per event or a queue that kept its
history would exceed it, an honest run does not.
"""

from __future__ import annotations

import time
import tracemalloc

import simpy

from sim.engine.audit import Audit
from sim.engine.rng import Streams
from sim.engine.runner import run
from sim.engine.shoppers import CLOSED_SID_BASE
from sim.engine.world import build_world
from sim.scenario import apply_overrides, parse_scenario
from tests.engine._tiny import smoke_data
from tests.stress import tally

ROW_BYTES = 1024
SESSION_BYTES = 16 * 1024

OVERLOAD = {
    "horizon": "8m",
    "warmup": "0s",
    "arrivals.rate": None,
    "arrivals.schedule": [
        {"at": 0, "rate": "1/s"},
        {"at": "1m", "rate": "12/s"},
        {"at": "4m", "rate": "0.5/s"},
    ],
    "stations.app.servers": 2,
    "metrics.interval": "30s",
}


def _max_open(sessions) -> int:
    moments = sorted([(t, 1) for t in sessions["start"]] + [(t, -1) for t in sessions["end"]])
    level = peak = 0
    for _, step in moments:
        level += step
        peak = max(peak, level)
    return peak


def test_overload_grows_queues_loses_nothing_and_bounds_memory():
    scenario = parse_scenario(apply_overrides(smoke_data(), OVERLOAD))
    tracemalloc.start()
    try:
        build_world(simpy.Environment(), scenario, Streams(1))
        world_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        started = time.perf_counter()
        result = run(scenario, 1)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frames = result.frames

    # queues grow while arrivals exceed capacity, and drain afterwards
    stations = frames["stations"]
    app = stations[stations["station"] == "app"].set_index("start")
    queue = app["mean_queue"]
    assert queue[60.0] < queue[90.0] < queue[120.0] < queue[150.0] < queue[180.0]
    assert queue.max() > 300, queue.to_dict()
    assert (app.loc[120.0:300.0, "utilisation"] > 0.99).all()
    assert queue.iloc[-1] < queue.max() / 20

    # nothing lost: every session numbered, recorded once, ended or in flight; every order too
    assert result.audit == Audit(()), result.audit.violations[:10]
    sessions = frames["sessions"]
    open_ids = sorted(s for s in sessions["session"] if s < CLOSED_SID_BASE)
    assert open_ids == list(range(1, len(open_ids) + 1))
    assert len(open_ids) > 2000
    assert set(sessions["end_reason"]) <= {"exit", "timeout", "in_flight"}
    checked = result.audit.checked
    assert checked["sessions"] == len(sessions)
    assert checked["sessions_final"] + checked["sessions_in_flight"] == len(sessions)
    assert len(frames["orders"]) == result.kpis["checkouts"] > 50
    assert checked["orders_final"] + checked["orders_in_flight"] == len(frames["orders"])
    requested = set(frames["requests"]["session"])
    assert requested <= set(sessions["session"])

    # memory: linear in what was recorded and in the sessions open at the peak
    rows = sum(len(frames[name]) for name in ("requests", "sessions", "payments", "order_events"))
    peak_open = _max_open(sessions)
    bound = world_bytes + ROW_BYTES * rows + SESSION_BYTES * peak_open
    message = (
        f"traced peak {peak / 1e6:.1f} MB, bound {bound / 1e6:.1f} MB "
        f"(world {world_bytes / 1e6:.1f} MB, {rows} rows, {peak_open} sessions open at once)"
    )
    assert peak < bound, message
    tally.add("overload_sessions", len(sessions))
    tally.add("overload_requests", len(frames["requests"]))
    tally.note("overload_peak_mb", round(peak / 1e6, 1))
    tally.note("overload_bound_mb", round(bound / 1e6, 1))
    tally.note("overload_max_app_queue", round(float(queue.max()), 1))
    tally.note("overload_seconds", round(elapsed, 1))
