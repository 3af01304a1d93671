from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sim.scenario import PageDemand, Scenario, load_scenario, parse_scenario
from sim.scenario.distributions import Constant, Exponential, LogNormal
from sim.scenario.schema import (
    CacheFlush,
    GhostSuccess,
    LatencySpike,
    Outage,
    PoolShrink,
)
from sim.scenario.workloads import builtin_page_demands, builtin_profile

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.yaml"


def minimal(**extra):
    data = {"name": "tiny", "horizon": "1h", "arrivals": {"rate": "2/s"}}
    data.update(extra)
    return data


def smoke_data():
    return yaml.safe_load(SMOKE.read_text(encoding="utf-8"))


def test_a_minimal_scenario_gets_the_documented_defaults():
    s = parse_scenario(minimal())
    assert s.name == "tiny"
    assert s.description == ""
    assert s.seed == 0
    assert s.horizon == 3600.0
    assert s.warmup == 0.0
    assert s.replications == 1
    assert s.arrivals.rate == 2.0
    assert s.catalog.products == 1000
    assert s.catalog.popularity.zipf == 0.8
    assert isinstance(s.catalog.price, LogNormal)
    assert s.catalog.price.median == 25.0 and s.catalog.price.p95 == 150.0
    assert s.catalog.stock.initial == 100
    assert s.population.returning_share == 0.4
    assert s.behavior.profile == "tpcw-shopping"
    assert s.behavior_graph() == builtin_profile("tpcw-shopping")
    assert s.stations.app.service == LogNormal.model_validate({"mean": 0.02, "cv": 0.5})
    assert s.stations.database.query == Exponential.model_validate({"mean": 0.005})
    assert s.stations.cache.service == Constant(value=0.0003)
    assert s.stations.cache.policy == "lru" and s.stations.cache.ttl is None
    (gateway,) = s.payments.gateways
    assert gateway.name == "card" and gateway.share == 1.0
    assert gateway.decline_rate == 0.06 and gateway.timeout == 20.0
    assert gateway.latency.median == 0.35 and gateway.latency.p95 == 2.0
    assert s.payments.retries.max_attempts == 3
    assert (s.payments.retries.backoff.base, s.payments.retries.backoff.cap) == (0.5, 5.0)
    assert s.payments.retries.backoff.jitter is True
    assert s.payments.fraud.max_amount == 500_000
    assert s.fulfilment.warehouses[0].name == "main"
    assert s.fulfilment.return_rate == 0.06
    assert s.coupons == () and s.faults == ()
    assert (s.slo.page_p95, s.slo.checkout_p95, s.slo.payment_success) == (0.1, 2.0, 0.9)
    assert (s.metrics.requests, s.metrics.interval) == ("rows", 60.0)
    assert s.page_demands() == builtin_page_demands()


def test_the_smoke_scenario_loads_with_its_values():
    s = load_scenario(SMOKE)
    assert s.name == "smoke"
    assert (s.seed, s.horizon, s.warmup, s.replications) == (7, 300.0, 30.0, 2)
    assert s.catalog.products == 200
    assert [(e.sku_rank, e.count, e.stock) for e in s.catalog.stock.limited] == [
        (None, 10, 20),
        (1, None, 3),
    ]
    assert s.arrivals.rate == 1.0
    assert s.arrivals.closed is not None and s.arrivals.closed.users == 5
    assert s.behavior_graph().session_length == Exponential.model_validate(
        {"mean": 120, "cap": 480}
    )
    assert [g.name for g in s.payments.gateways] == ["card-a", "card-b"]
    assert [g.share for g in s.payments.gateways] == [0.7, 0.3]
    assert s.payments.fraud.max_amount == 200_000
    (coupon,) = s.coupons
    assert (coupon.code, coupon.kind, coupon.value, coupon.min_purchase) == (
        "WELCOME10",
        "percent",
        1000,
        2000,
    )
    assert coupon.valid_until == 300.0
    outage, spike, flush = s.faults
    assert isinstance(outage, Outage) and outage.target == "payments.card-b"
    assert (outage.at, outage.duration) == (120.0, 60.0)
    assert isinstance(spike, LatencySpike) and spike.target == "database" and spike.factor == 3.0
    assert isinstance(flush, CacheFlush) and flush.at == 240.0 and flush.target == "cache"
    assert s.page_demands()["search_results"] == PageDemand(app=2.0, queries=1, cache_lookups=10)
    assert s.page_demands()["home"] == builtin_page_demands()["home"]


@pytest.mark.parametrize("make", [lambda: minimal(), smoke_data])
def test_to_data_parses_back_to_an_equal_scenario(make):
    s = parse_scenario(make())
    data = s.to_data()
    again = parse_scenario(yaml.safe_load(yaml.safe_dump(data)))
    assert again == s
    assert again.to_data() == data
    assert pickle.loads(pickle.dumps(s)) == s


def test_a_custom_graph_scenario_round_trips_and_has_page_demands():
    graph = {
        "start": "home",
        "exit": "leave",
        "transitions": {
            "home": {"product_detail": 0.6, "leave": 0.4},
            "product_detail": {"checkout": 0.2, "home": 0.5, "leave": 0.3},
            "checkout": {"leave": 1.0},
        },
        "think_time": {"exponential": {"mean": "5s"}},
    }
    s = parse_scenario(minimal(behavior={"graph": graph}, pages={"checkout": {"queries": 4}}))
    g = s.behavior_graph()
    assert g.exit == "leave"
    assert g.think_time.mean == 5.0
    assert g.session_length is None
    demands = s.page_demands()
    assert demands["product_detail"] == builtin_page_demands()["product_detail"]
    assert demands["home"] == builtin_page_demands()["home"]
    assert demands["checkout"] == PageDemand(app=1.0, queries=4, cache_lookups=0)
    assert parse_scenario(s.to_data()) == s
    v = g.visit_ratios()
    assert v["home"] == pytest.approx(1 / (1 - 0.6 * 0.5))


def test_profile_think_time_and_session_length_can_be_replaced():
    s = parse_scenario(
        minimal(behavior={"profile": "tpcw-browsing", "think_time": 1, "session_length": "5m"})
    )
    g = s.behavior_graph()
    assert g.think_time == Constant(value=1.0)
    assert g.session_length == Constant(value=300.0)
    assert g.transitions.keys() == builtin_profile("tpcw-browsing").transitions.keys()


def test_exitless_custom_graph_with_session_length():
    graph = {
        "start": "a",
        "transitions": {"a": {"b": 1.0}, "b": {"a": 0.5, "b": 0.5}},
        "session_length": {"exponential": {"mean": "10m"}},
    }
    s = parse_scenario(minimal(behavior={"graph": graph}))
    assert s.behavior_graph().stationary_distribution() == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    assert s.page_demands() == {"a": PageDemand(), "b": PageDemand()}


def test_schedules_and_rate_at():
    s = parse_scenario(
        minimal(
            arrivals={
                "schedule": [
                    {"at": 0, "rate": "60/min"},
                    {"at": "10m", "rate": "10/s"},
                    {"at": "20m", "rate": 0},
                ]
            }
        )
    )
    a = s.arrivals
    assert a.rate is None
    assert [step.at for step in a.schedule] == [0.0, 600.0, 1200.0]
    assert a.rate_at(0) == 1.0
    assert a.rate_at(599.9) == 1.0
    assert a.rate_at(600) == 10.0
    assert a.rate_at(5000) == 0.0
    assert parse_scenario(minimal()).arrivals.rate_at(123) == 2.0


def test_a_closed_population_alone_is_enough():
    s = parse_scenario(minimal(arrivals={"closed": {"users": 50}}))
    assert s.arrivals.rate_at(10) == 0.0
    assert s.arrivals.closed.think.mean == pytest.approx(7 * (1 - math.exp(-10)))


def test_warmup_auto_and_units():
    assert parse_scenario(minimal(warmup="auto")).warmup == "auto"
    assert parse_scenario(minimal(warmup="90s")).warmup == 90.0


def test_shares_default_to_an_equal_split():
    s = parse_scenario(
        minimal(
            payments={"gateways": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            fulfilment={"warehouses": [{"name": "east"}, {"name": "west"}]},
        )
    )
    assert [g.share for g in s.payments.gateways] == [1 / 3] * 3
    assert [w.share for w in s.fulfilment.warehouses] == [0.5, 0.5]
    assert s.payments.gateway_names() == ("a", "b", "c")
    assert s.fulfilment.warehouse_names() == ("east", "west")


def test_coupon_values_by_kind():
    s = parse_scenario(
        minimal(
            coupons=[
                {"code": "TEN", "kind": "percent", "value": "12.5"},
                {"code": "FIVE", "kind": "fixed", "value": "5.00", "min_purchase": 30},
            ]
        )
    )
    percent, fixed = s.coupons
    assert percent.value == 1250 and fixed.value == 500 and fixed.min_purchase == 3000
    assert percent.share_of_checkouts == 0.1 and percent.categories == ()
    assert s.to_data()["coupons"][0]["value"] == "12.50"
    assert s.to_data()["coupons"][1]["value"] == "5.00"


def test_every_fault_kind_parses():
    s = parse_scenario(
        minimal(
            payments={"gateways": [{"name": "card-a"}]},
            fulfilment={"warehouses": [{"name": "east"}]},
            faults=[
                {"outage": "warehouses.east", "at": "1m", "duration": "2m"},
                {"outage": "cache", "at": 0, "duration": 1},
                {"latency_spike": "payments.card-a", "at": 0, "duration": 1, "factor": 10},
                {"pool_shrink": {"to": 2}, "at": "5m", "duration": "1m"},
                {"ghost_success": "card-a", "share": 0.3, "at": 0, "duration": "10m"},
                {"ghost_success": "payments.card-a", "share": 1, "at": 0, "duration": "10m"},
                {"cache_flush": "30m"},
            ],
        )
    )
    kinds = [f.kind for f in s.faults]
    assert kinds == [
        "outage",
        "outage",
        "latency_spike",
        "pool_shrink",
        "ghost_success",
        "ghost_success",
        "cache_flush",
    ]
    shrink = s.faults[3]
    assert isinstance(shrink, PoolShrink) and shrink.pool_shrink.to == 2
    assert shrink.target == "database"
    ghost = s.faults[5]
    assert isinstance(ghost, GhostSuccess) and ghost.gateway == "card-a"
    assert ghost.target == "payments.card-a"
    assert parse_scenario(s.to_data()) == s


def test_scenarios_are_frozen():
    s = parse_scenario(minimal())
    with pytest.raises(ValidationError):
        s.seed = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.stations.app.servers = 3  # type: ignore[misc]


def test_limited_stock_entries():
    s = parse_scenario(
        minimal(catalog={"products": 10, "stock": {"limited": [{"count": 10, "stock": 0}]}})
    )
    assert s.catalog.stock.limited[0].count == 10


def test_parsing_does_not_touch_the_input():
    data = smoke_data()
    before = copy.deepcopy(data)
    parse_scenario(data)
    assert data == before


def test_scenario_is_exported():
    assert isinstance(parse_scenario(minimal()), Scenario)


def test_prices_may_be_any_distribution_of_plain_numbers():
    s = parse_scenario(minimal(catalog={"price": {"empirical": [9.99, "19.99", 5]}}))
    assert s.catalog.price.mean == pytest.approx((9.99 + 19.99 + 5) / 3)


def test_parsed_objects_are_accepted_in_place_of_data():
    fault = Outage(outage="cache", at=1.0, duration=2.0)
    s = parse_scenario(minimal(faults=[fault], stations={"app": {"service": Constant(value=1.0)}}))
    assert s.faults == (fault,)
    assert s.stations.app.service == Constant(value=1.0)


def test_a_storage_names_its_file_only_when_the_shop_is_kept_in_one():
    def file_of(storage):
        return parse_scenario(minimal(storage=storage)).storage.file

    assert file_of("memory") is None
    assert file_of("sqlite") is None  # SQLite in memory
    assert file_of({"kind": "sqlite", "path": ":memory:"}) is None
    assert file_of({"kind": "sqlite", "path": "runs/shop.db"}) == "runs/shop.db"
