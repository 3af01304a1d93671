"""Memory-leak detection: 50 replications of the smoke scenario in one process.

The smoke scenario is shortened to two simulated minutes with 100 registered customers and
TPC-W's ordering mix, so each replication builds a world, serves about 130 sessions and takes
some 18 orders through payment and the ledger in about a third of a second (tracemalloc makes
every allocation several times slower). After each replication (its result dropped, garbage
collected) the test reads the traced Python heap (tracemalloc) and the resident set size (VmRSS
from /proc/self/status) and fits a straight line over the last 40 readings (the first ten let
caches and the allocator's arenas settle).

The bounds. Keeping one replication's results alive costs about 220 KB of traced heap (the
self-check below measures it); a leaked world, recorder or set of frames costs more. The traced
heap may grow by at most 4 KB a replication (interned names and small caches filling up). RSS
moves in steps of allocator arenas: a single 1 MB step among 40 readings fits a slope of about
40 KB, so the RSS bound is 128 KB a replication, three such steps, still below one kept result.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sim.engine.runner import run
from sim.scenario import apply_overrides, parse_scenario
from tests.engine._tiny import smoke_data
from tests.stress import tally

REPLICATIONS = 50
FITTED = 40
TRACED_SLOPE = 4 * 1024
RSS_SLOPE = 128 * 1024
SMOKE = parse_scenario(
    apply_overrides(
        smoke_data(),
        {
            "horizon": "2m",
            "warmup": "0s",
            "population.users": 100,
            "behavior.profile": "tpcw-ordering",
        },
    )
)


def rss() -> int:
    """Return the resident set size of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")  # pragma: no cover


def slope(values: list[int]) -> float:
    """Return the least-squares slope of ``values`` per step, in bytes."""
    return float(np.polyfit(np.arange(len(values)), np.asarray(values, dtype=float), 1)[0])


def _replicate(n: int, keep: list | None = None) -> tuple[list[int], list[int]]:
    traced, resident = [], []
    for replication in range(n):
        result = run(SMOKE, replication=replication)
        assert result.audit.ok, result.audit.violations
        if keep is not None:
            keep.append(result)
        del result
        gc.collect()
        traced.append(tracemalloc.get_traced_memory()[0])
        resident.append(rss())
    return traced, resident


@pytest.fixture
def traced():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def test_fifty_replications_do_not_keep_growing(traced):
    started = time.perf_counter()
    heap, resident = _replicate(REPLICATIONS)
    elapsed = time.perf_counter() - started
    heap_slope = slope(heap[-FITTED:])
    rss_slope = slope(resident[-FITTED:])
    message = (
        f"over the last {FITTED} of {REPLICATIONS} replications: traced heap "
        f"{heap_slope / 1024:+.2f} KB/replication (bound {TRACED_SLOPE / 1024:.0f}), "
        f"RSS {rss_slope / 1024:+.1f} KB/replication (bound {RSS_SLOPE / 1024:.0f}); "
        f"heap {heap[0] / 1e6:.2f} -> {heap[-1] / 1e6:.2f} MB, "
        f"RSS {resident[0] / 1e6:.1f} -> {resident[-1] / 1e6:.1f} MB"
    )
    assert heap_slope < TRACED_SLOPE, message
    assert rss_slope < RSS_SLOPE, message
    tally.add("leak_replications", REPLICATIONS)
    tally.note("leak_heap_slope_kb_per_replication", round(heap_slope / 1024, 2))
    tally.note("leak_rss_slope_kb_per_replication", round(rss_slope / 1024, 1))
    tally.note("leak_seconds", round(elapsed, 1))
    print(message)


def test_the_slope_bound_catches_a_run_that_leaks_its_results(traced):
    kept: list = []
    heap, _ = _replicate(6, keep=kept)
    leaked = slope(heap[1:])
    assert leaked > 20 * TRACED_SLOPE, f"{leaked / 1024:.0f} KB/replication"
    assert len(kept) == 6
    tally.note("leak_selfcheck_kept_results_kb_per_replication", round(leaked / 1024))
