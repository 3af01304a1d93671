"""Every validation error path, with the exact message a user sees."""

# ruff: noqa: E501 - expected messages are exact one-line strings

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import yaml

from sim.scenario import ScenarioError, parse_scenario
from sim.scenario.errors import Invalid

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.yaml"
SOURCE = "scenarios/x.yaml"


def smoke():
    return yaml.safe_load(SMOKE.read_text(encoding="utf-8"))


def minimal(**extra):
    data = {"name": "tiny", "horizon": "1h", "arrivals": {"rate": "2/s"}}
    data.update(extra)
    return data


def problems_of(data):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, SOURCE)
    error = info.value
    assert error.source == SOURCE
    assert str(error) == "\n".join(
        f"{SOURCE}: {path}: {message}" if path else f"{SOURCE}: {message}"
        for path, message in error.problems
    )
    return error.problems


def set_in(data, path, value):
    node = data
    *parents, last = path
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def test_the_message_names_file_key_path_and_problem():
    data = set_in(smoke(), ["stations", "app", "servers"], 0)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, SOURCE)
    assert str(info.value) == "scenarios/x.yaml: stations.app.servers: must be >= 1, got 0"
    assert info.value.problems == [("stations.app.servers", "must be >= 1, got 0")]
    assert isinstance(info.value, ValueError)


CASES = [
    # unknown keys name the allowed ones, at their full key path
    (
        ["stations", "app", "sevrers"],
        3,
        "stations.app.sevrers",
        "unknown key (allowed: servers, service)",
    ),
    (
        ["colour"],
        "blue",
        "colour",
        "unknown key (allowed: name, description, seed, horizon, warmup, replications, catalog, "
        "population, arrivals, behavior, stations, pages, payments, fulfilment, coupons, faults, "
        "slo, metrics, storage)",
    ),
    (
        ["stations", "app", "service"],
        {"exponential": {"mean": "5ms", "sd": 1}},
        "stations.app.service.exponential.sd",
        "unknown key (allowed: mean, cap)",
    ),
    (
        ["stations", "app", "service"],
        {"lognormal": {"median": "5ms", "p95": "1s", "p99": "2s"}},
        "stations.app.service.lognormal.p99",
        "unknown key (allowed: mean, cv, median, p95, cap)",
    ),
    # wrong types
    (
        ["stations", "app", "servers"],
        "abc",
        "stations.app.servers",
        "expected an integer, got 'abc'",
    ),
    (["stations", "app", "servers"], 2.5, "stations.app.servers", "expected an integer, got 2.5"),
    (["seed"], True, "seed", "expected an integer, got true"),
    (
        ["catalog", "popularity", "zipf"],
        "abc",
        "catalog.popularity.zipf",
        "expected a number, got 'abc'",
    ),
    (
        ["payments", "retries", "backoff", "jitter"],
        "yes",
        "payments.retries.backoff.jitter",
        "expected true or false, got 'yes'",
    ),
    (["name"], 12, "name", "expected a string, got 12"),
    (["stations", "app"], [1], "stations.app", "expected a mapping, got [1]"),
    (["coupons"], {"code": "X"}, "coupons", "expected a list, got {'code': 'X'}"),
    (
        ["horizon"],
        "soon",
        "horizon",
        "expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, got 'soon'",
    ),
    (
        ["arrivals", "rate"],
        "fast",
        "arrivals.rate",
        "expected a rate such as '2/s', '120/min', '1000/h' or a number per second, got 'fast'",
    ),
    (
        ["stations", "cache", "policy"],
        "fifo",
        "stations.cache.policy",
        "expected 'lru', 'lfu' or 'ttl', got 'fifo'",
    ),
    (
        ["behavior", "profile"],
        "tpcw-buying",
        "behavior.profile",
        "expected 'tpcw-browsing', 'tpcw-shopping' or 'tpcw-ordering', got 'tpcw-buying'",
    ),
    (
        ["metrics", "requests"],
        "all",
        "metrics.requests",
        "expected 'rows' or 'aggregate', got 'all'",
    ),
    # bounds
    (["stations", "cache", "capacity"], -5, "stations.cache.capacity", "must be >= 1, got -5"),
    (["stations", "database", "pool"], 0, "stations.database.pool", "must be >= 1, got 0"),
    (
        ["stations", "app", "servers"],
        10**6,
        "stations.app.servers",
        "must be <= 100000, got 1000000",
    ),
    (["seed"], -1, "seed", "must be >= 0, got -1"),
    (["replications"], 0, "replications", "must be >= 1, got 0"),
    (["population", "returning_share"], 1.5, "population.returning_share", "must be <= 1, got 1.5"),
    (["fulfilment", "return_rate"], -0.1, "fulfilment.return_rate", "must be >= 0, got -0.1"),
    (
        ["payments", "gateways", 0, "decline_rate"],
        2,
        "payments.gateways.0.decline_rate",
        "must be <= 1, got 2",
    ),
    (
        ["payments", "gateways", 0, "timeout"],
        0,
        "payments.gateways.0.timeout",
        "must be > 0, got 0",
    ),
    (["horizon"], "-5m", "horizon", "duration must not be negative, got '-5m'"),
    (
        ["horizon"],
        ".nan",
        "horizon",
        "expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, got '.nan'",
    ),
    (["horizon"], float("nan"), "horizon", "duration must be finite, got nan"),
    (["horizon"], float("inf"), "horizon", "duration must be finite, got inf"),
    (["horizon"], "400d", "horizon", "must be <= 31622400, got 34560000"),
    (
        ["catalog", "popularity", "zipf"],
        float("nan"),
        "catalog.popularity.zipf",
        "must be finite, got nan",
    ),
    (["faults", 1, "factor"], 0.5, "faults.1.factor", "must be >= 1, got 0.5"),
    (
        ["payments", "gateways", 0, "name"],
        12,
        "payments.gateways.0.name",
        "expected a name, got 12",
    ),
    # required and empty
    (["name"], "", "name", "must not be empty"),
    (["description"], "x" * 10_001, "description", "must have at most 10000 characters"),
    (["payments", "gateways"], [], "payments.gateways", "must have at least 1 item(s), got 0"),
    (["payments", "gateways", 0], {"share": 0.7}, "payments.gateways.0.name", "required"),
    # names and money
    (
        ["payments", "gateways", 0, "name"],
        "card a",
        "payments.gateways.0.name",
        "a name starts with a letter and has only letters, digits, '-' and '_' (at most 64), got 'card a'",
    ),
    (
        ["coupons", 0, "code"],
        "TEN OFF",
        "coupons.0.code",
        "a coupon code has only letters, digits, '-' and '_' (at most 64), got 'TEN OFF'",
    ),
    (
        ["payments", "fraud", "max_amount"],
        "19.999",
        "payments.fraud.max_amount",
        "amount has more than two decimals, got '19.999'",
    ),
    (
        ["coupons", 0, "min_purchase"],
        -5,
        "coupons.0.min_purchase",
        "amount must not be negative, got -5",
    ),
    (
        ["coupons", 0, "value"],
        "12.555",
        "coupons.0.value",
        "percentage has more than two decimals, got '12.555'",
    ),
    (["coupons", 0, "value"], 0, "coupons.0.value", "must be > 0, got 0"),
    (
        ["coupons", 0, "valid_until"],
        0,
        "coupons.0.valid_until",
        "must be later than valid_from (0 s), got 0 s",
    ),
    (
        ["coupons", 0, "categories"],
        [2, 9],
        "coupons.0.categories.1",
        "category 9 does not exist (the catalog has 5)",
    ),
    (
        ["catalog", "price"],
        {"constant": "20ms"},
        "catalog.price",
        "prices are in currency units, not durations: got '20ms'",
    ),
    # distributions
    (
        ["stations", "app", "service"],
        {"gamma": 1},
        "stations.app.service",
        "unknown distribution 'gamma' (use one of constant, exponential, uniform, normal, lognormal, empirical)",
    ),
    (
        ["stations", "app", "service"],
        {"lognormal": {"mean": "20ms"}},
        "stations.app.service.lognormal",
        "give either mean and cv, or median and p95 (got mean)",
    ),
    (
        ["stations", "app", "service"],
        {"exponential": {"mean": "-5ms"}},
        "stations.app.service.exponential.mean",
        "value must not be negative, got '-5ms'",
    ),
    (
        ["stations", "app", "service"],
        {"empirical": ["1ms", "x"]},
        "stations.app.service.empirical",
        "value 1: expected a number or a duration such as '20ms', got 'x'",
    ),
    (
        ["stations", "app", "service"],
        {"empirical": [1] * 10_001},
        "stations.app.service.empirical",
        "too many items: 10001 (at most 10000)",
    ),
    # cross-field checks
    (["warmup"], "10m", "warmup", "must be less than the horizon (300 s), got 600 s"),
    (["warmup"], "5m", "warmup", "must be less than the horizon (300 s), got 300 s"),
    (["payments", "gateways", 0, "share"], 0.5, "payments.gateways", "shares sum to 0.8, not 1"),
    (
        ["payments", "gateways", 1, "name"],
        "card-a",
        "payments.gateways.1.name",
        "duplicate name 'card-a'",
    ),
    (
        ["fulfilment", "warehouses", 0, "share"],
        0.9,
        "fulfilment.warehouses",
        "shares sum to 0.9, not 1",
    ),
    (
        ["payments", "retries", "backoff", "base"],
        "10s",
        "payments.retries.backoff.base",
        "must not exceed cap (5 s), got 10 s",
    ),
    (["stations", "cache", "ttl"], None, "stations.cache.ttl", None),  # lru without ttl: fine
    (
        ["pages"],
        {"nopage": {"app": 2}},
        "pages.nopage",
        "unknown page 'nopage' (pages: admin_confirm, admin_request, best_sellers, buy_confirm, buy_request, customer_registration, home, new_products, order_display, order_inquiry, product_detail, search_request, search_results, shopping_cart)",
    ),
    (["pages"], {"home": {"app": 0}}, "pages.home.app", "must be > 0, got 0"),
    (
        ["catalog", "stock", "limited", 1, "sku_rank"],
        201,
        "catalog.stock.limited.1.sku_rank",
        "must be <= products (200), got 201",
    ),
    (
        ["catalog", "stock", "limited", 1],
        {"stock": 1},
        "catalog.stock.limited.1",
        "give exactly one of sku_rank and count",
    ),
    (
        ["catalog", "stock", "limited", 1],
        {"stock": 1, "count": 2, "sku_rank": 1},
        "catalog.stock.limited.1",
        "give exactly one of sku_rank and count",
    ),
    # faults refer to things that exist
    (
        ["faults", 0, "outage"],
        "payments.card-x",
        "faults.0.outage",
        "unknown gateway 'card-x' (gateways: card-a, card-b)",
    ),
    (
        ["faults", 0, "outage"],
        "warehouses.west",
        "faults.0.outage",
        "unknown warehouse 'west' (warehouses: east)",
    ),
    (
        ["faults", 0, "outage"],
        "database",
        "faults.0.outage",
        "unknown target 'database' (use one of: cache, payments.card-a, payments.card-b, warehouses.east)",
    ),
    (
        ["faults", 1, "latency_spike"],
        "payments.nope",
        "faults.1.latency_spike",
        "unknown gateway 'nope' (gateways: card-a, card-b)",
    ),
    (
        ["faults", 1, "latency_spike"],
        "disk",
        "faults.1.latency_spike",
        "unknown target 'disk' (use one of: app, cache, database, payments.card-a, payments.card-b)",
    ),
    (
        ["faults", 0],
        {"ghost_success": "card-z", "share": 0.1, "at": 0, "duration": 1},
        "faults.0.ghost_success",
        "unknown gateway 'card-z' (gateways: card-a, card-b)",
    ),
    (
        ["faults", 0],
        {"outage": "cache", "at": "1m", "duration": "1m", "factor": 2},
        "faults.0.factor",
        "unknown key (allowed: outage, at, duration)",
    ),
    (["faults", 0], {"outage": "cache", "at": "1m"}, "faults.0.duration", "required"),
    (
        ["faults", 0],
        {"pool_shrink": {"to": 0}, "at": 0, "duration": 1},
        "faults.0.pool_shrink.to",
        "must be >= 1, got 0",
    ),
    (
        ["faults", 0],
        {"bogus": 1},
        "faults.0",
        "a fault has exactly one of outage, latency_spike, cache_flush, pool_shrink, ghost_success, breakdown (keys given: bogus)",
    ),
    (
        ["faults", 0],
        {"outage": "cache", "cache_flush": 1},
        "faults.0",
        "a fault has exactly one of outage, latency_spike, cache_flush, pool_shrink, ghost_success, breakdown (keys given: outage, cache_flush)",
    ),
    (
        ["faults", 0],
        "outage",
        "faults.0",
        "expected a fault (a mapping with one of outage, latency_spike, cache_flush, pool_shrink, ghost_success, breakdown), got 'outage'",
    ),
]


@pytest.mark.parametrize(("path", "value", "where", "message"), CASES)
def test_each_error_is_reported_at_its_key_path(path, value, where, message):
    data = set_in(smoke(), path, value)
    if message is None:
        parse_scenario(data, SOURCE)
        return
    assert problems_of(data) == [(where, message)]


def test_unknown_key_inside_a_fault():
    data = set_in(smoke(), ["faults", 0], {"pool_shrink": {"size": 1}, "at": 0, "duration": 1})
    assert problems_of(data) == [
        ("faults.0.pool_shrink.to", "required"),
        ("faults.0.pool_shrink.size", "unknown key (allowed: to)"),
    ]


def test_missing_keys_are_required():
    assert problems_of({"name": "x"}) == [("horizon", "required"), ("arrivals", "required")]


def test_several_problems_are_all_reported():
    data = smoke()
    data["stations"]["app"]["servers"] = 0
    data["stations"]["database"]["pool"] = "many"
    data["slo"]["color"] = "red"
    assert problems_of(data) == [
        ("stations.app.servers", "must be >= 1, got 0"),
        ("stations.database.pool", "expected an integer, got 'many'"),
        ("slo.color", "unknown key (allowed: page_p95, checkout_p95, payment_success)"),
    ]


def test_cross_section_problems_are_reported_together():
    data = smoke()
    data["warmup"] = "1h"
    data["faults"][0]["outage"] = "payments.nope"
    data["coupons"][0]["categories"] = [99]
    assert problems_of(data) == [
        ("warmup", "must be less than the horizon (300 s), got 3600 s"),
        ("faults.0.outage", "unknown gateway 'nope' (gateways: card-a, card-b)"),
        ("coupons.0.categories.0", "category 99 does not exist (the catalog has 5)"),
    ]


def test_duplicate_coupon_codes():
    data = smoke()
    data["coupons"].append(dict(data["coupons"][0]))
    assert problems_of(data) == [("coupons.1.code", "duplicate code 'WELCOME10'")]


def test_unknown_coupon_kind_is_reported_once():
    data = smoke()
    data["coupons"][0]["kind"] = "bogo"
    assert problems_of(data) == [("coupons.0.kind", "expected 'percent' or 'fixed', got 'bogo'")]


def test_fixed_coupon_values_are_money():
    data = smoke()
    data["coupons"][0].update(kind="fixed", value="5.001")
    assert problems_of(data) == [
        ("coupons.0.value", "amount has more than two decimals, got '5.001'")
    ]


def test_shares_must_be_all_given_or_none():
    data = smoke()
    del data["payments"]["gateways"][1]["share"]
    assert problems_of(data) == [
        ("payments.gateways.1.share", "give a share for every entry or for none")
    ]


def test_ttl_policy_needs_a_ttl():
    data = smoke()
    data["stations"]["cache"].update(policy="ttl")
    del data["stations"]["cache"]["ttl"]
    assert problems_of(data) == [("stations.cache.ttl", "required when policy is ttl")]


@pytest.mark.parametrize(
    ("arrivals", "where", "message"),
    [
        ({}, "arrivals", "give a rate, a schedule or a closed population"),
        ({"rate": 0}, "arrivals.rate", "must be > 0, got 0"),
        (
            {"rate": 1, "schedule": [{"at": 0, "rate": 1}]},
            "arrivals.schedule",
            "give either rate or schedule, not both",
        ),
        ({"schedule": []}, "arrivals.schedule", "must have at least 1 item(s), got 0"),
        (
            {"schedule": [{"at": "1m", "rate": 1}]},
            "arrivals.schedule.0.at",
            "the first step must be at 0, got 60 s",
        ),
        (
            {"schedule": [{"at": 0, "rate": 1}, {"at": "2m", "rate": 2}, {"at": "1m", "rate": 3}]},
            "arrivals.schedule.2.at",
            "must be later than the step before (120 s), got 60 s",
        ),
        ({"closed": {"users": 0}}, "arrivals.closed.users", "must be >= 1, got 0"),
    ],
)
def test_arrival_errors(arrivals, where, message):
    assert problems_of(minimal(arrivals=arrivals)) == [(where, message)]


def graph(transitions, **extra):
    return minimal(
        behavior={"graph": {"start": "home", "exit": "out", "transitions": transitions, **extra}}
    )


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        (
            graph({"home": {"product": 0.5, "out": 0.4}, "product": {"out": 1.0}}),
            "behavior.graph.transitions.home",
            "probabilities sum to 0.9, not 1",
        ),
        (
            graph({"home": {"product": 0.5, "out": 0.5000001}, "product": {"out": 1.0}}),
            None,
            None,
        ),
        (
            graph({"home": {"product": 0.5, "out": 0.500002}, "product": {"out": 1.0}}),
            "behavior.graph.transitions.home",
            "probabilities sum to 1.000002, not 1",
        ),
        (
            graph({"home": {"product": 0.5, "out": 0.5}, "product": {"product": 1.0}}),
            "behavior.graph.transitions.product",
            "the exit 'out' cannot be reached from product (reachable from start 'home')",
        ),
        (
            graph({"home": {"home": 1.0}}),
            "behavior.graph.exit",
            "the exit 'out' cannot be reached from home (reachable from start 'home')",
        ),
        (
            graph({"home": {"nowhere": 1.0}}),
            "behavior.graph.transitions.home.nowhere",
            "unknown state 'nowhere' (states: home; exit: out)",
        ),
        (
            graph({"home": {"out": 1.0}}, start="shop"),
            "behavior.graph.start",
            "start state 'shop' has no transitions",
        ),
        (
            graph({"home": {"out": 1.0}}, exit=None),
            "behavior.graph.exit",
            "give an exit page or a session_length, or sessions never end",
        ),
        (
            graph({"home": {"out": 1.0}, "a.b": {"out": 1.0}}),
            "behavior.graph.transitions.a.b",
            "invalid key: a name starts with a letter and has only letters, digits, '-' and '_' "
            "(at most 64), got 'a.b'",
        ),
        (
            minimal(behavior={}),
            "behavior",
            "give either profile (tpcw-browsing, tpcw-shopping, tpcw-ordering) or graph",
        ),
        (
            minimal(
                behavior={
                    "graph": {"start": "home", "exit": "out", "transitions": {"home": {"out": 1}}},
                    "think_time": 1,
                }
            ),
            "behavior.think_time",
            "with a custom graph, set it inside graph",
        ),
        (
            graph({"home": {"out": 1.0}}, think_time={"exponential": {"mean": 0}}),
            "behavior.graph.think_time.exponential.mean",
            "must be > 0, got 0",
        ),
    ],
)
def test_behavior_graph_errors(data, where, message):
    if where is None:
        parse_scenario(data, SOURCE)
        return
    assert problems_of(data) == [(where, message)]


def test_probabilities_outside_zero_one_are_rejected():
    data = graph({"home": {"product": 1.5, "out": -0.5}, "product": {"out": 1.0}})
    assert problems_of(data) == [
        ("behavior.graph.transitions.home.product", "must be <= 1, got 1.5"),
        ("behavior.graph.transitions.home.out", "must be >= 0, got -0.5"),
    ]


def test_profile_and_graph_together():
    data = minimal(behavior={"profile": "tpcw-shopping", "graph": {}})
    assert problems_of(data) == [
        ("behavior.graph.start", "required"),
        ("behavior.graph.transitions", "required"),
    ]
    data = minimal(
        behavior={
            "profile": "tpcw-shopping",
            "graph": {"start": "home", "exit": "out", "transitions": {"home": {"out": 1}}},
        }
    )
    assert problems_of(data) == [
        ("behavior", "give either profile (tpcw-browsing, tpcw-shopping, tpcw-ordering) or graph")
    ]


def test_too_many_states():
    transitions = {f"s{i}": {"out": 1.0} for i in range(1001)}
    problems = problems_of(graph(transitions, start="s0"))
    assert problems == [("behavior.graph.transitions", "must have at most 1000 items, got 1001")]


def test_pages_of_a_custom_graph_must_be_its_states():
    data = graph({"home": {"out": 1.0}})
    data["pages"] = {"checkout": {"queries": 1}}
    assert problems_of(data) == [("pages.checkout", "unknown page 'checkout' (pages: home)")]


def test_error_lists_are_capped_in_str_but_kept_whole():
    error = ScenarioError("f.yaml", [(f"k{i}", "bad") for i in range(60)])
    lines = str(error).splitlines()
    assert len(lines) == 51
    assert lines[0] == "f.yaml: k0: bad"
    assert lines[-1] == "f.yaml: ... and 10 more problems"
    assert len(error.problems) == 60


def test_scenario_errors_pickle_and_keep_one_line_per_problem():
    error = ScenarioError("f.yaml", [("a.b", "two\nlines"), ("", "whole file")])
    assert str(error) == "f.yaml: a.b: two lines\nf.yaml: whole file"
    again = pickle.loads(pickle.dumps(error))
    assert again.source == "f.yaml" and again.problems == error.problems
    assert str(again) == str(error)


def test_invalid_carries_relative_problems():
    problem = Invalid.at(("a", 1), "bad")
    assert problem.problems == [(("a", 1), "bad")]
    assert str(problem) == "bad"


def test_an_interval_that_would_make_too_many_intervals_is_refused():
    """A microsecond interval over a minute is 60 million station rows: refused up front."""
    data = set_in(set_in(smoke(), ["horizon"], "1m"), ["metrics"], {"interval": "1us"})
    assert problems_of(data) == [
        (
            "metrics.interval",
            "1e-06 s makes 60,000,000 intervals of the horizon (at most 1,000,000): "
            "make it at least 6e-05 s",
        )
    ]
    # a year at the default minute is well within the bound
    year = parse_scenario(set_in(smoke(), ["horizon"], "366d"), SOURCE)
    assert math.ceil(year.horizon / year.metrics.interval) == 527_040


@pytest.mark.parametrize(
    ("histogram_interval", "problem"),
    [
        ("90s", "must be a whole number of intervals (60 s each), got 90 s"),
        ("30s", "must be a whole number of intervals (60 s each), got 30 s"),
        (0, "must be greater than 0, got 0"),
        ("soon", None),  # the duration parser's own message
    ],
)
def test_a_histogram_interval_must_be_whole_intervals(histogram_interval, problem):
    metrics = {"interval": "1m", "histogram_interval": histogram_interval}
    problems = problems_of(set_in(smoke(), ["metrics"], metrics))
    assert [key for key, _ in problems] == ["metrics.histogram_interval"]
    if problem is not None:
        assert problems[0][1] == problem


@pytest.mark.parametrize(
    ("horizon", "interval", "histogram_interval", "per_window"),
    [
        ("2h", "1m", "auto", 1),  # 120 intervals: one window each
        ("7201s", "1m", "auto", 2),  # 121 intervals
        ("16h", "1m", "auto", 8),  # 960 intervals in 120 windows
        ("366d", "1m", "auto", 4392),
        ("5m", "1s", "auto", 3),  # 300 intervals: 100 windows of 3
        ("16h", "1m", "5m", 5),
        ("2h", "1m", "1m", 1),
    ],
)
def test_histogram_windows_span_whole_intervals(horizon, interval, histogram_interval, per_window):
    data = set_in(smoke(), ["horizon"], horizon)
    data["metrics"] = {"interval": interval, "histogram_interval": histogram_interval}
    scenario = parse_scenario(data, SOURCE)
    assert scenario.metrics.intervals_per_window(scenario.horizon) == per_window
    windows = math.ceil(scenario.horizon / scenario.metrics.interval / per_window)
    assert windows <= 120 or histogram_interval != "auto"


def test_a_store_path_with_a_nul_character_is_refused():
    data = set_in(smoke(), ["storage"], {"kind": "sqlite", "path": "runs/a\0b.db"})
    assert problems_of(data) == [("storage.path", "a file name cannot hold a NUL character")]


def test_a_whole_float_where_an_integer_belongs_is_shown_as_the_float_it_is():
    data = set_in(smoke(), ["stations", "app", "servers"], 4.0)
    assert problems_of(data) == [("stations.app.servers", "expected an integer, got 4.0")]


def test_a_list_whose_items_are_all_invalid_reports_the_items_not_an_empty_list():
    data = smoke()
    for gateway in data["payments"]["gateways"]:
        gateway["servers"] = 0
    assert problems_of(data) == [
        ("payments.gateways.0.servers", "must be >= 1, got 0"),
        ("payments.gateways.1.servers", "must be >= 1, got 0"),
    ]
    data = set_in(smoke(), ["payments", "gateways"], [])  # a list that is really empty
    assert problems_of(data) == [("payments.gateways", "must have at least 1 item(s), got 0")]
