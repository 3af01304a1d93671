"""Every scenario of the library with every kind of fault injected: the books always balance.

Each scenario file runs shortened (four simulated minutes, nothing dropped, 2,000 registered
customers instead of 20,000, which only saves build time) with its own faults replaced by one
kind of fault at every target that kind can hit, windows overlapping, all inside the horizon;
and once more with every kind at once. The end-of-run audit must find nothing, and every fault
must have been injected and recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.engine.runner import run
from sim.scenario import apply_overrides, parse_scenario
from sim.scenario.loader import read_yaml_file
from sim.scenario.schema import FAULT_KINDS
from tests.stress import tally

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "scenarios").glob("*.yaml"))
SHORT = {"horizon": "4m", "warmup": "0s", "population.users": 2000}


def faults_of(kind: str, gateway: str, warehouse: str) -> list[dict[str, Any]]:
    """Return faults of ``kind`` at every target it can hit, overlapping, within four minutes."""
    pay = f"payments.{gateway}"
    every_minute = {
        "mtbf": {"exponential": {"mean": "40s"}},
        "mttr": {"exponential": {"mean": "10s"}},
    }
    return {
        "outage": [
            {"outage": pay, "at": "1m", "duration": "1m"},
            {"outage": f"warehouses.{warehouse}", "at": "30s", "duration": "2m"},
            {"outage": "cache", "at": "90s", "duration": "30s"},
            {"outage": pay, "at": "100s", "duration": "30s"},
        ],
        "latency_spike": [
            {"latency_spike": "app", "at": "30s", "duration": "1m", "factor": 5},
            {"latency_spike": "database", "at": "1m", "duration": "1m", "factor": 3},
            {"latency_spike": "cache", "at": "2m", "duration": "30s", "factor": 10},
            {"latency_spike": pay, "at": "40s", "duration": "1m", "factor": 10},
            {"latency_spike": "app", "at": "70s", "duration": "20s", "factor": 2},
        ],
        "cache_flush": [{"cache_flush": "50s"}, {"cache_flush": "150s"}],
        "pool_shrink": [
            {"pool_shrink": {"to": 1}, "at": "1m", "duration": "90s"},
            {"pool_shrink": {"to": 2}, "at": "100s", "duration": "1m"},
        ],
        "ghost_success": [
            {"ghost_success": gateway, "share": 0.5, "at": 0, "duration": "4m"},
        ],
        "breakdown": [
            {"breakdown": pay, **every_minute},
            {"breakdown": f"warehouses.{warehouse}", **every_minute},
            {"breakdown": "cache", **every_minute},
        ],
    }[kind]


def _scenario(path: Path, kinds: list[str]):
    data = read_yaml_file(path)
    base = parse_scenario(apply_overrides(data, SHORT), str(path))
    gateway = base.payments.gateways[0].name
    warehouse = base.fulfilment.warehouses[0].name
    faults = [f for kind in kinds for f in faults_of(kind, gateway, warehouse)]
    return parse_scenario(apply_overrides(data, {**SHORT, "faults": faults}), str(path))


def _check(scenario, kinds: list[str]) -> None:
    result = run(scenario)
    assert result.audit.ok, result.audit.violations[:10]
    recorded = result.frames["faults"]
    assert set(recorded["kind"]) == set(kinds)
    scheduled = [f for f in scenario.faults if f.kind != "breakdown"]
    assert len(recorded[recorded["kind"] != "breakdown"]) == len(scheduled)
    if "breakdown" in kinds:
        assert (recorded["kind"] == "breakdown").sum() >= 3
    assert result.kpis["sessions"] > 0
    tally.add("faults_injected", len(recorded))
    tally.add("fault_runs_audited", 1)
    tally.add("scenario_x_fault_kind_audited", len(kinds))
    tally.add("orders_audited", result.audit.checked["orders"])
    tally.add("sessions_audited", result.audit.checked["sessions"])


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_scenario_with_every_kind_of_fault_keeps_the_books(path, kind):
    _check(_scenario(path, [kind]), [kind])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_scenario_with_all_kinds_of_fault_at_once_keeps_the_books(path):
    kinds = list(FAULT_KINDS)
    _check(_scenario(path, kinds), kinds)
