"""Faults: outages, latency spikes, cache flushes, pool shrinks and ghost successes."""

from __future__ import annotations

import numpy as np
import pytest

from sim.domain.cache import MISS
from sim.engine import cache_server
from sim.engine.faults import start_faults
from sim.engine.runner import run
from sim.scenario import apply_overrides, parse_scenario
from tests.engine._tiny import APP, CACHE, DB, smoke_data, tiny, world_of


def _faulty_world(faults: list[dict], overrides: dict | None = None):
    world = world_of(tiny({"faults": faults, **(overrides or {})}))
    start_faults(world)
    return world


def _probe(world, times: list[float], read) -> list:
    """Run the world to each time in turn and read something there."""
    seen = []
    for t in times:
        world.env.run(until=t)
        seen.append(read())
    return seen


def _fault_rows(world) -> list[list]:
    return world.recorder.faults.frame().values.tolist()


def _smoke(overrides: dict):
    return parse_scenario(apply_overrides(smoke_data(), overrides))


GRAPH = {
    "behavior.graph": {
        "start": "home",
        "exit": "leave",
        "think_time": {"constant": 2},
        "transitions": {"home": {"search_request": 1.0}, "search_request": {"leave": 1.0}},
    },
    "stations.app.servers": 8,
}


# --- gateway outages -----------------------------------------------------------------------------


def test_a_gateway_outage_takes_it_down_for_its_window():
    world = _faulty_world([{"outage": "payments.gw", "at": 10, "duration": 20}])
    gw = world.gateways[0]
    assert _probe(world, [9.9, 10.1, 29.9, 30.1], lambda: gw.down) == [False, True, True, False]
    assert _fault_rows(world) == [["outage", "payments.gw", 10.0, 30.0]]


def test_a_gateway_outage_makes_payments_fail_over_and_is_recorded():
    scenario = _smoke(
        {
            "behavior.profile": "tpcw-ordering",
            "arrivals.rate": 2.0,
            "faults": [{"outage": "payments.card-a", "at": "1m", "duration": "2m"}],
        }
    )
    result = run(scenario, 7)
    assert result.kpis["failovers"] > 0
    payments = result.frames["payments"]
    inside = payments[(payments["time"] > 60.0) & (payments["time"] < 180.0)]
    outside = payments[(payments["time"] < 60.0) | (payments["time"] > 181.0)]
    assert len(inside) > 5
    assert set(inside["gateway"]) == {"card-b"}
    assert set(outside["gateway"]) == {"card-a", "card-b"}
    assert result.frames["faults"].values.tolist() == [["outage", "payments.card-a", 60.0, 180.0]]
    assert result.audit.ok


def test_overlapping_gateway_outages_keep_it_down_until_the_last_ends():
    world = _faulty_world(
        [
            {"outage": "payments.gw", "at": 10, "duration": 20},
            {"outage": "payments.gw", "at": 20, "duration": 20},
        ]
    )
    gw = world.gateways[0]
    assert _probe(world, [15, 35, 45], lambda: gw.down) == [True, True, False]


# --- latency spikes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "attribute"),
    [("app", "app_factor"), ("database", "db_factor"), ("cache", "cache_factor")],
)
def test_a_latency_spike_multiplies_a_station_factor_within_its_window(target, attribute):
    world = _faulty_world([{"latency_spike": target, "at": 10, "duration": 20, "factor": 3}])
    read = lambda: getattr(world, attribute)  # noqa: E731
    assert _probe(world, [9, 11, 29, 31], read) == [1.0, 3.0, 3.0, 1.0]
    assert _fault_rows(world) == [["latency_spike", target, 10.0, 30.0]]


def test_a_gateway_latency_spike_scales_its_latency():
    world = _faulty_world([{"latency_spike": "payments.gw", "at": 10, "duration": 20, "factor": 4}])
    gw = world.gateways[0]
    assert _probe(world, [9, 11, 31], lambda: gw.latency_factor) == [1.0, 4.0, 1.0]
    assert _fault_rows(world) == [["latency_spike", "payments.gw", 10.0, 30.0]]


def test_overlapping_spikes_multiply_and_unwind():
    world = _faulty_world(
        [
            {"latency_spike": "app", "at": 10, "duration": 20, "factor": 2},
            {"latency_spike": "app", "at": 20, "duration": 20, "factor": 3},
        ]
    )
    read = lambda: world.app_factor  # noqa: E731
    assert _probe(world, [15, 25, 35, 45], read) == [2.0, 6.0, 3.0, 1.0]


def test_a_latency_spike_multiplies_service_times_within_its_window_only():
    scenario = tiny(
        {
            **GRAPH,
            "faults": [
                {"latency_spike": "app", "at": 100, "duration": 50, "factor": 4},
            ],
        }
    )
    result = run(scenario, 3)
    requests = result.frames["requests"]
    assert (requests["app_wait"] == 0.0).all()  # service starts on arrival
    inside = (requests["time"] > 100.0) & (requests["time"] < 150.0)
    assert inside.sum() > 20 and (~inside).sum() > 100
    assert set(requests.loc[inside, "app_service"]) == {APP * 1.0 * 4.0}
    assert set(requests.loc[~inside, "app_service"]) == {APP * 1.0 * 1.0}
    assert result.frames["faults"].values.tolist() == [["latency_spike", "app", 100.0, 150.0]]


def test_a_database_spike_slows_the_queries_in_its_window():
    world = _faulty_world([{"latency_spike": "database", "at": 10, "duration": 20, "factor": 8}])
    env, waits, ends = world.env, [], []

    def query_at(t):
        yield env.timeout(t)
        waits.append((yield from cache_server.query(world, np.random.default_rng(0))))
        ends.append(env.now)

    for t in (5.0, 15.0, 35.0):
        env.process(query_at(t))
    env.run()
    assert ends == [5.0 + DB, 15.0 + 8 * DB, 35.0 + DB]
    assert waits == [0.0, 0.0, 0.0]


# --- the cache -----------------------------------------------------------------------------------


def test_a_cache_flush_empties_the_cache_at_its_time():
    world = _faulty_world([{"cache_flush": 10}])
    for i in range(5):
        world.cache.put(f"k{i}", True, 0.0)
    assert _probe(world, [9.9, 10.1], lambda: len(world.cache)) == [5, 0]
    assert _fault_rows(world) == [["cache_flush", "cache", 10.0, 10.0]]


def test_the_hit_rate_drops_in_the_interval_after_a_cache_flush():
    one_product = {"catalog.products": 1, "catalog.categories": 1}
    scenario = tiny(
        {**GRAPH, **one_product, "metrics.interval": 10, "faults": [{"cache_flush": 100}]}
    )
    result = run(scenario, 3)
    cache = result.frames["cache"].set_index("start")
    # one product: after the first request every look-up hits, until the flush
    assert cache.loc[90.0, "hit_rate"] == 1.0 and cache.loc[90.0, "misses"] == 0
    assert cache.loc[100.0, "misses"] == 1
    assert cache.loc[100.0, "hit_rate"] < 1.0
    assert cache.loc[110.0, "hit_rate"] == 1.0
    assert result.frames["faults"].values.tolist() == [["cache_flush", "cache", 100.0, 100.0]]


def test_a_cache_outage_sends_lookups_to_the_database_and_restarts_it_empty():
    world = _faulty_world([{"outage": "cache", "at": 10, "duration": 20}])
    env, seen = world.env, []
    world.cache.put("k", True, 0.0)

    def lookup_at(t):
        yield env.timeout(t)
        hit, _, _ = yield from cache_server.lookup(world, "k", np.random.default_rng(0))
        seen.append((t, hit, env.now - t))

    for t in (5.0, 15.0, 35.0):
        env.process(lookup_at(t))
    env.run()
    assert seen == [
        (5.0, True, CACHE),
        (15.0, False, CACHE + DB),  # served by the database, not filled
        (35.0, False, CACHE + DB),  # the restarted cache came back empty; now filled
    ]
    assert world.cache.get("k", env.now) is not MISS
    assert world.database.stats().completions == 2
    assert _fault_rows(world) == [["outage", "cache", 10.0, 30.0]]


# --- the database pool ---------------------------------------------------------------------------


def test_a_pool_shrink_lowers_the_database_capacity_for_its_window():
    world = _faulty_world(
        [{"pool_shrink": {"to": 1}, "at": 10, "duration": 20}], {"stations.database.pool": 3}
    )
    read = lambda: world.database.capacity  # noqa: E731
    assert _probe(world, [9, 11, 29, 31], read) == [3, 1, 1, 3]
    assert _fault_rows(world) == [["pool_shrink", "database", 10.0, 30.0]]


def test_a_pool_shrink_never_grows_the_pool():
    world = _faulty_world([{"pool_shrink": {"to": 5}, "at": 10, "duration": 20}])
    assert _probe(world, [15, 35], lambda: world.database.capacity) == [2, 2]


def test_a_pool_shrink_shows_in_the_station_series():
    scenario = tiny(
        {
            **GRAPH,
            "stations.database.pool": 4,
            "metrics.interval": 60,
            "faults": [{"pool_shrink": {"to": 1}, "at": 60, "duration": 60}],
        }
    )
    result = run(scenario, 3)
    stations = result.frames["stations"]
    database = stations[stations["station"] == "database"]
    assert database["servers"].tolist()[:4] == [4.0, 1.0, 4.0, 4.0]
    assert result.frames["station_stats"].set_index("name").loc["database", "capacity"] == 4


def test_overlapping_pool_shrinks_restore_the_full_pool():
    world = _faulty_world(
        [
            {"pool_shrink": {"to": 2}, "at": 10, "duration": 20},
            {"pool_shrink": {"to": 1}, "at": 20, "duration": 20},
        ],
        {"stations.database.pool": 5},
    )
    read = lambda: world.database.capacity  # noqa: E731
    assert _probe(world, [15, 25, 35, 45], read) == [2, 1, 1, 5]


# --- warehouses ----------------------------------------------------------------------------------


def test_a_warehouse_outage_holds_paid_orders_in_processing_until_it_ends():
    scenario = _smoke(
        {
            "behavior.profile": "tpcw-ordering",
            "arrivals.rate": 2.0,
            "fulfilment.warehouses": [
                {"name": "east", "workers": 1000, "pick": {"constant": "5s"}, "share": 1}
            ],
            "fulfilment.ship_delay": {"constant": "5s"},
            "faults": [{"outage": "warehouses.east", "at": "1m", "duration": "2m"}],
        }
    )
    result = run(scenario, 7)
    events = result.frames["order_events"]
    paid = events[events["new"] == "processing"].set_index("order_id")["time"]
    shipped = events[events["new"] == "shipped"].set_index("order_id")["time"]
    held = paid[(paid > 60.0) & (paid < 180.0)]
    assert len(held) > 5
    for order_id, at in paid.items():
        expected = (180.0 if 60.0 < at < 180.0 else at) + 10.0
        if expected < 290.0:
            assert shipped[order_id] == pytest.approx(expected, abs=1e-9), order_id
    assert result.frames["faults"].values.tolist() == [["outage", "warehouses.east", 60.0, 180.0]]


def test_overlapping_warehouse_outages_hold_orders_until_the_last_ends():
    world = _faulty_world(
        [
            {"outage": "warehouses.east", "at": 10, "duration": 100},
            {"outage": "warehouses.east", "at": 50, "duration": 100},
        ]
    )
    world.env.run(until=130)
    assert "east" in world.warehouse_outages
    world.env.run()
    assert world.warehouse_outages == {}


# --- ghost successes -----------------------------------------------------------------------------


def test_a_ghost_success_window_sets_the_share_then_clears_it():
    world = _faulty_world(
        [{"ghost_success": "payments.gw", "share": 0.5, "at": 10, "duration": 20}]
    )
    gw = world.gateways[0]
    assert _probe(world, [9, 11, 31], lambda: gw.ghost_share) == [0.0, 0.5, 0.0]
    assert _fault_rows(world) == [["ghost_success", "payments.gw", 10.0, 30.0]]


def test_ghost_successes_are_replayed_on_retry_and_the_books_stay_clean():
    scenario = _smoke(
        {
            "behavior.profile": "tpcw-ordering",
            "arrivals.rate": 2.0,
            "payments.gateways.card-a.timeout": "3s",
            "payments.gateways.card-b.timeout": "3s",
            "faults": [{"ghost_success": "card-a", "share": 0.5, "at": "1m", "duration": "2m"}],
        }
    )
    result = run(scenario, 7)
    assert result.kpis["double_charges_prevented"] > 0
    assert result.kpis["payment_retries"] > 0
    assert result.audit.ok, result.audit.violations
    payments = result.frames["payments"]
    replayed = payments[(payments["attempt"] > 1) & (payments["outcome"] == "approved")]
    for order_id in replayed["order_id"]:
        attempts = payments[payments["order_id"] == order_id]["outcome"].tolist()
        assert attempts[0] == "timeout"
    ledger = result.frames["ledger"]
    charges = ledger[ledger["kind"] == "charge"]
    assert charges["order_id"].is_unique  # nobody was charged twice
    assert result.frames["faults"].values.tolist() == [
        ["ghost_success", "payments.card-a", 60.0, 180.0]
    ]


# --- windows open at the horizon -----------------------------------------------------------------


def test_a_fault_still_running_at_the_horizon_is_recorded():
    scenario = tiny({"faults": [{"outage": "payments.gw", "at": 500, "duration": 300}]})
    result = run(scenario, 1)
    assert len(result.frames["faults"]) == 1
    assert result.frames["faults"][["kind", "target", "start"]].values.tolist() == [
        ["outage", "payments.gw", 500.0]
    ]
