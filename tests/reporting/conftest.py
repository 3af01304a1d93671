"""Shared fixtures of the reporting tests: the smoke scenario cut to two minutes, with faults.

The faults are moved inside the two minutes: a gateway outage (a window), a cache flush (an
instant) and a database latency spike that outlasts the horizon (the engine does not record it;
the report adds it, cut at the horizon).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.analysis.compare import run_many
from sim.engine.runner import RunResult
from sim.reporting.report import ReportFiles, write_run_report
from sim.scenario import Scenario, apply_overrides, parse_scenario
from sim.scenario.loader import read_yaml_file

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
HORIZON = 120.0
FAULTS = (
    "faults=[{outage: payments.card-b, at: 40s, duration: 30s}, {cache_flush: 80s},"
    " {latency_spike: database, at: 100s, duration: 60s, factor: 3}]"
)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    data = apply_overrides(read_yaml_file(SMOKE), ["horizon=2m", FAULTS])
    return parse_scenario(data)


@pytest.fixture(scope="session")
def one_run(scenario: Scenario) -> list[RunResult]:
    return run_many(scenario, 1)


@pytest.fixture(scope="session")
def three_runs(scenario: Scenario) -> list[RunResult]:
    return run_many(scenario, 3)


@pytest.fixture(scope="session")
def report_one(one_run: list[RunResult], tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return write_run_report(one_run, tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="session")
def report_three(
    three_runs: list[RunResult], tmp_path_factory: pytest.TempPathFactory
) -> ReportFiles:
    return write_run_report(three_runs, tmp_path_factory.mktemp("three"))
