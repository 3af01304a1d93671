"""The 95 % confidence intervals are honest: they cover a known mean in about 95 % of trials.

One app station, M/M/1 (Poisson sessions of one page, exponential service). Two KPIs have an
exactly known expectation whatever the queue does:

- ``service.app``, the mean service time of the pages served: ``S`` (each draw is exponential
  with mean ``S``; the one page possibly in service at the horizon is the only exception);
- ``sessions_per_second``, sessions started per second of the run: ``lambda`` (a Poisson count
  over the horizon, divided by the horizon; the sessions frame keeps those still in flight).

800 replications with distinct seeds (replication ``i`` of one root seed) are cut into 200 trials
of 4; each trial's Student-t 95 % interval either covers the true value or not. The number of
misses must be a plausible Binomial(200, 0.05) draw: inside its central 99.9 % range.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from sim.analysis.compare import Variant, kpi_values, replicate
from sim.analysis.executors import ProcessExecutor
from sim.analysis.stats import mean_ci
from tests.analysis._queues import mmc

RATE, SERVICE = 25.0, 0.02  # rho = 0.5
TRIALS, PER_TRIAL = 200, 4
HORIZON = 8.0  # 200 sessions per replication


def test_confidence_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    scenario = mmc(RATE, 1, service=SERVICE, horizon=HORIZON, name="mm1-coverage")
    with ProcessExecutor(2) as executor:
        done = replicate(
            [Variant("mm1", scenario)], TRIALS * PER_TRIAL, seed=2024, executor=executor
        )
    summaries = done.summaries["mm1"]
    assert [s.replication for s in summaries] == list(range(TRIALS * PER_TRIAL))
    low, high = (
        int(scipy_stats.binom.ppf(0.0005, TRIALS, 0.05)),
        int(scipy_stats.binom.isf(0.0005, TRIALS, 0.05)),
    )
    lines = []
    failures = []
    for kpi, truth in (("service.app", SERVICE), ("sessions_per_second", RATE)):
        values = kpi_values(summaries, kpi).reshape(TRIALS, PER_TRIAL)
        covered = 0
        for trial in values:
            ci = mean_ci(trial)
            covered += ci.low <= truth <= ci.high
        misses = TRIALS - covered
        share = covered / TRIALS
        grand = float(np.mean(values))
        line = (
            f"{kpi}: true {truth:g}, grand mean {grand:.5g}; {covered}/{TRIALS} intervals cover "
            f"it ({share:.1%}); {misses} misses, plausible range {low}..{high}"
        )
        print(line)
        lines.append(line)
        if not low <= misses <= high:
            failures.append(line)
    assert not failures, "\n".join(lines)
