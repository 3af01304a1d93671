"""Recurring faults (breakdowns): MTBF / MTTR from the faults stream, schema, engine, books."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine.faults import FAULT_STREAM, start_faults
from sim.engine.rng import Streams
from sim.engine.runner import run
from sim.scenario import ScenarioError, apply_overrides, parse_scenario
from sim.scenario.schema import MAX_BREAKDOWNS, Breakdown
from tests.engine._tiny import smoke_data, tiny, tiny_data, world_of


def _world(faults: list[dict], overrides: dict | None = None):
    world = world_of(tiny({"faults": faults, **(overrides or {})}))
    start_faults(world)
    return world


def _rows(world) -> list[list]:
    return world.recorder.faults.frame().values.tolist()


def _problems(faults: list[dict], overrides: dict | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(tiny_data({"faults": faults, **(overrides or {})}), "x.yaml")
    return caught.value.problems


CONSTANT = {"mtbf": {"constant": 10}, "mttr": {"constant": 2}}


# --- the schema -----------------------------------------------------------------------------------


def test_a_breakdown_parses_with_its_defaults_and_round_trips():
    scenario = tiny(
        {
            "faults": [
                {
                    "breakdown": "payments.gw",
                    "mtbf": {"exponential": {"mean": "2h"}},
                    "mttr": {"exponential": {"mean": "5m"}},
                }
            ]
        }
    )
    (fault,) = scenario.faults
    assert isinstance(fault, Breakdown)
    assert (fault.kind, fault.target, fault.at, fault.until) == (
        "breakdown",
        "payments.gw",
        0,
        None,
    )
    assert (fault.mtbf.mean, fault.mttr.mean) == (7200.0, 300.0)
    assert fault.expected_failures(7500.0) == 1.0
    assert parse_scenario(scenario.to_data()) == scenario


@pytest.mark.parametrize("target", ["payments.gw", "warehouses.east", "cache"])
def test_a_breakdown_targets_what_an_outage_can(target):
    (fault,) = tiny({"faults": [{"breakdown": target, **CONSTANT}]}).faults
    assert fault.breakdown == target


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("payments.nope", "unknown gateway 'nope' (gateways: gw)"),
        ("warehouses.west", "unknown warehouse 'west' (warehouses: east)"),
        (
            "database",
            "unknown target 'database' (use one of: cache, payments.gw, warehouses.east)",
        ),
    ],
)
def test_a_breakdown_of_an_unknown_target_is_named(target, message):
    assert _problems([{"breakdown": target, **CONSTANT}]) == [("faults.0.breakdown", message)]


def test_breakdown_times_need_positive_means_and_an_ordered_window():
    problems = _problems(
        [
            {
                "breakdown": "cache",
                "mtbf": {"constant": 0},
                "mttr": {"empirical": [0, 0]},
                "at": "10m",
                "until": "5m",
            }
        ]
    )
    assert problems == [
        ("faults.0.mtbf", "the mean must be > 0, got 0 s"),
        ("faults.0.mttr", "the mean must be > 0, got 0 s"),
        ("faults.0.until", "must be later than at (600 s), got 300 s"),
    ]


def test_a_breakdown_that_would_fail_too_often_is_refused():
    problems = _problems(
        [{"breakdown": "cache", "mtbf": {"constant": "1ms"}, "mttr": {"constant": "1ms"}}],
        {"horizon": "1d"},
    )
    assert problems == [
        (
            "faults.0.mtbf",
            f"about 4.32e+07 failures expected within the horizon (at most {MAX_BREAKDOWNS:,}): "
            "make mtbf or mttr longer",
        )
    ]
    # the same rates over a window short enough are fine
    tiny({"horizon": "1d", "faults": [{"breakdown": "cache", "at": 0, "until": 100, **CONSTANT}]})


def test_a_breakdown_needs_both_times():
    assert _problems([{"breakdown": "cache", "mtbf": {"constant": 10}}]) == [
        ("faults.0.mttr", "required")
    ]


def test_an_unknown_key_in_a_breakdown_lists_the_fault_keys():
    problems = _problems([{"breakdown": "cache", **CONSTANT, "mtbff": 1}])
    assert problems == [
        ("faults.0.mtbff", "unknown key (allowed: breakdown, mtbf, mttr, at, until)")
    ]


# --- the engine -----------------------------------------------------------------------------------


def test_constant_times_give_an_exact_timeline_of_gateway_breakdowns():
    world = _world([{"breakdown": "payments.gw", "at": 5, **CONSTANT}])
    gw = world.gateways[0]
    seen = []
    for t in (14.9, 15.1, 16.9, 17.1, 26.9, 27.1, 29.1):
        world.env.run(until=t)
        seen.append(gw.down)
    assert seen == [False, True, True, False, False, True, False]
    assert _rows(world) == [
        ["breakdown", "payments.gw", 15.0, 17.0],
        ["breakdown", "payments.gw", 27.0, 29.0],
    ]


def test_no_failure_starts_after_until():
    world = _world([{"breakdown": "cache", "until": 30, **CONSTANT}])
    world.env.run(until=200)
    assert [row[2] for row in _rows(world)] == [10.0, 22.0]
    assert not world.cache_down


def test_a_cache_breakdown_takes_the_cache_down_and_it_restarts_empty():
    world = _world([{"breakdown": "cache", **CONSTANT}])
    world.cache.put("k", "v", 0.0)
    world.env.run(until=11)
    assert world.cache_down
    world.cache.put("k", "v", 11.0)
    world.env.run(until=13)
    assert not world.cache_down
    assert len(world.cache) == 0


def test_a_warehouse_breakdown_holds_orders_until_the_repair():
    world = _world([{"breakdown": "warehouses.east", **CONSTANT}])
    workers = world.warehouses[0].capacity
    world.env.run(until=11)
    assert world.warehouse_outages == {"east": 1} and world.warehouses[0].capacity == 0
    world.env.run(until=13)
    assert "east" not in world.warehouse_outages
    assert world.warehouses[0].capacity == workers


def test_a_breakdown_overlapping_an_outage_nests():
    world = _world(
        [
            {"breakdown": "payments.gw", "mtbf": {"constant": 10}, "mttr": {"constant": 20}},
            {"outage": "payments.gw", "at": 25, "duration": 20},
        ]
    )
    gw = world.gateways[0]
    seen = []
    for t in (9, 11, 29, 31, 44, 46):
        world.env.run(until=t)
        seen.append(gw.outages)
    # breakdown 10-30, outage 25-45, next breakdown 40-60
    assert seen == [0, 1, 2, 1, 2, 1]


def test_times_come_from_the_faults_stream_of_the_entry():
    spec = {
        "breakdown": "payments.gw",
        "mtbf": {"exponential": {"mean": 50}},
        "mttr": {"exponential": {"mean": 5}},
    }
    world = _world([spec], {"horizon": 2000})
    world.env.run(until=2000)
    rows = _rows(world)
    rng = Streams(1).generator(FAULT_STREAM, 0)
    t, expected = 0.0, []
    while True:
        up, down = rng.exponential(50), rng.exponential(5)
        t += up
        if t >= 2000:
            break
        expected.append((t, t + down))
        t += down
    assert [(r[2], r[3]) for r in rows] == pytest.approx(expected)
    assert len(rows) > 20


def test_an_extra_fault_entry_does_not_shift_a_breakdown_nor_does_capacity():
    spec = {
        "breakdown": "payments.gw",
        "mtbf": {"exponential": {"mean": 50}},
        "mttr": {"exponential": {"mean": 5}},
    }
    alone = _world([spec], {"horizon": 1000})
    alone.env.run(until=1000)
    # another breakdown first (index 0 is now the other one), and twice the app servers
    other = {**spec, "breakdown": "cache"}
    both = _world([spec, other], {"horizon": 1000, "stations.app.servers": 4})
    both.env.run(until=1000)
    first = [r for r in _rows(alone)]
    again = [r for r in _rows(both) if r[1] == "payments.gw"]
    assert first == again and len(first) > 5


def test_downtime_share_matches_mttr_over_mtbf_plus_mttr():
    spec = {
        "breakdown": "payments.gw",
        "mtbf": {"exponential": {"mean": 100}},
        "mttr": {"exponential": {"mean": 10}},
    }
    horizon = 2_000_000.0
    world = _world([spec], {"horizon": horizon})
    world.env.run(until=horizon)
    rows = np.array([[r[2], r[3]] for r in _rows(world)])
    down = np.minimum(rows[:, 1], horizon) - rows[:, 0]
    share = down.sum() / horizon
    # about 18,000 cycles: the standard error of the share is well under 1 %
    assert share == pytest.approx(10 / 110, rel=0.03)
    assert len(rows) == pytest.approx(horizon / 110, rel=0.03)
    assert down.mean() == pytest.approx(10, rel=0.03)


def test_a_run_with_breakdowns_everywhere_keeps_the_books():
    data = apply_overrides(
        smoke_data(),
        {
            "behavior.profile": "tpcw-ordering",
            "arrivals.rate": 2.0,
            "faults": [
                {
                    "breakdown": "payments.card-a",
                    "mtbf": {"exponential": {"mean": "40s"}},
                    "mttr": {"exponential": {"mean": "20s"}},
                },
                {
                    "breakdown": "warehouses.east",
                    "mtbf": {"exponential": {"mean": "1m"}},
                    "mttr": {"exponential": {"mean": "30s"}},
                },
                {
                    "breakdown": "cache",
                    "mtbf": {"uniform": {"low": "20s", "high": "60s"}},
                    "mttr": {"constant": "10s"},
                },
            ],
        },
    )
    result = run(parse_scenario(data), 5)
    assert result.audit.ok, result.audit.violations
    faults = result.frames["faults"]
    assert set(faults["kind"]) == {"breakdown"}
    assert set(faults["target"]) == {"payments.card-a", "warehouses.east", "cache"}
    assert len(faults) >= 8
    assert result.kpis["failovers"] > 0
    # a run is a pure function of (scenario, seed): the windows repeat exactly
    again = run(parse_scenario(data), 5)
    assert again.frames["faults"].equals(faults)


def test_an_instant_repair_breaks_nothing():
    world = _world(
        [{"breakdown": "payments.gw", "mtbf": {"constant": 10}, "mttr": {"empirical": [0, 4]}}]
    )
    world.env.run(until=400)
    rows = _rows(world)
    assert {r[3] - r[2] for r in rows} == {4.0}
    assert 5 < len(rows) < 35
    assert world.gateways[0].down == (rows[-1][3] >= 400)
