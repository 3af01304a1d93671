"""Replications of one scenario (and, later, what-if variants) with common random numbers.

Replication ``i`` of a scenario draws from ``Streams(seed, replication=i)``: the same
numbers whatever variant of the scenario runs, so differences between variants are paired.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.engine.runner import RunResult, run
from sim.scenario.schema import Scenario

ReplicationProgress = Callable[[int, float, float], None]
"""Called as ``progress(replication, simulated_now, horizon)`` while replications run."""


def run_many(
    scenario: Scenario,
    replications: int | None = None,
    *,
    seed: int | None = None,
    progress: ReplicationProgress | None = None,
) -> list[RunResult]:
    """Run independent replications 0..n-1 of ``scenario`` in this process, in order."""
    n = scenario.replications if replications is None else replications
    if n < 1:
        raise ValueError(f"replications must be >= 1, got {n}")
    results = []
    for i in range(n):
        step = None if progress is None else (lambda now, horizon, i=i: progress(i, now, horizon))
        results.append(run(scenario, seed, replication=i, progress=step))
    return results
