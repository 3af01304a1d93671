from __future__ import annotations

import math
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.scenario.distributions import distribution
from sim.scenario.errors import Invalid
from sim.scenario.workloads import (
    BROWSE_PAGES,
    TPCW_PROFILES,
    BehaviorGraph,
    PageDemand,
    browse_share,
    builtin_page_demands,
    builtin_profile,
    published_mix,
    tpcw_data,
    with_timing,
)

SHARED_TPCW = Path(__file__).resolve().parents[3] / "shared" / "workloads" / "tpcw.yaml"
THINK = distribution({"exponential": {"mean": 7, "cap": 70}})
TPCW_PAGES = {
    "admin_confirm",
    "admin_request",
    "best_sellers",
    "buy_confirm",
    "buy_request",
    "customer_registration",
    "home",
    "new_products",
    "order_display",
    "order_inquiry",
    "product_detail",
    "search_request",
    "search_results",
    "shopping_cart",
}


def simple(**kwargs):
    table = kwargs.pop(
        "table",
        {"home": {"product": 0.5, "out": 0.5}, "product": {"home": 0.5, "out": 0.5}},
    )
    options = {"start": "home", "exit": "out", "think_time": THINK, "session_length": None}
    options.update(kwargs)
    return BehaviorGraph.from_table(table, **options)


@pytest.mark.parametrize("name", TPCW_PROFILES)
def test_tpcw_profiles_load_with_every_row_summing_to_one(name):
    graph = builtin_profile(name)
    assert set(graph.states) == TPCW_PAGES
    assert graph.start == "home"
    assert graph.exit is None
    for state in graph.states:
        successors, cumulative = graph.transitions[state]
        assert cumulative[-1] == 1.0
        assert np.all(np.diff(cumulative) > 0)
        assert not cumulative.flags.writeable
        assert math.fsum(graph.probabilities(state).values()) == pytest.approx(1.0, abs=1e-12)
        assert set(successors) <= TPCW_PAGES
    assert graph.think_time.mean == pytest.approx(7 * (1 - math.exp(-10)))
    assert graph.session_length is not None
    assert graph.session_length.mean == pytest.approx(900 * (1 - math.exp(-4)))


def test_published_rows_are_renormalised_not_changed():
    raw = tpcw_data()["mixes"]["shopping"]["home"]  # sums to 0.9999 as published
    assert math.fsum(raw.values()) == pytest.approx(0.9999)
    probabilities = builtin_profile("tpcw-shopping").probabilities("home")
    for page, p in raw.items():
        assert probabilities[page] == pytest.approx(p / 0.9999, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "browse"),
    [("tpcw-browsing", 0.95), ("tpcw-shopping", 0.80), ("tpcw-ordering", 0.50)],
)
def test_stationary_browse_share_is_tpcws(name, browse):
    mix = builtin_profile(name).stationary_distribution()
    assert math.fsum(mix.values()) == pytest.approx(1.0)
    assert browse_share(mix) == pytest.approx(browse, abs=0.01)
    assert browse_share(published_mix(name)) == pytest.approx(browse, abs=1e-9)


@pytest.mark.parametrize("name", TPCW_PROFILES)
def test_stationary_distribution_matches_the_published_mix(name):
    mix = builtin_profile(name).stationary_distribution()
    published = published_mix(name)
    assert set(published) == TPCW_PAGES
    for page in TPCW_PAGES:
        assert mix[page] == pytest.approx(published[page], abs=0.005), page


def test_shopping_mix_key_pages():
    mix = builtin_profile("tpcw-shopping").stationary_distribution()
    assert mix["home"] == pytest.approx(0.16, abs=0.003)
    assert mix["search_request"] == pytest.approx(0.20, abs=0.003)
    assert mix["buy_confirm"] == pytest.approx(0.012, abs=0.001)


def test_a_seeded_walk_visits_pages_at_the_stationary_frequencies():
    graph = builtin_profile("tpcw-shopping")
    rng = np.random.default_rng(2024)
    state = graph.start
    counts: Counter[str] = Counter()
    steps = 200_000
    for u in rng.random(steps):
        state = graph.next_state(state, float(u))
        counts[state] += 1
    mix = graph.stationary_distribution()
    # Successive pages are correlated, so allow several times the iid standard error (~0.001).
    for page in graph.states:
        assert counts[page] / steps == pytest.approx(mix[page], abs=0.006), page


def test_next_state_bisects_the_cumulative_probabilities():
    graph = simple(
        table={"a": {"b": 0.25, "c": 0.75}, "b": {"out": 1.0}, "c": {"out": 1.0}}, start="a"
    )
    assert graph.next_state("a", 0.0) == "b"
    assert graph.next_state("a", 0.2499) == "b"
    assert graph.next_state("a", 0.25) == "c"
    assert graph.next_state("a", 0.999999999) == "c"
    assert graph.next_state("b", 0.5) == "out"
    for u in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match=r"u must be in \[0, 1\)"):
            graph.next_state("a", u)


def test_next_state_frequencies_follow_the_row():
    graph = builtin_profile("tpcw-shopping")
    rng = np.random.default_rng(1)
    n = 100_000
    counts = Counter(graph.next_state("home", float(u)) for u in rng.random(n))
    for page, p in graph.probabilities("home").items():
        se = math.sqrt(p * (1 - p) / n)
        assert abs(counts[page] / n - p) <= 5 * se


def test_zero_probability_edges_are_never_taken():
    graph = simple(table={"a": {"b": 0.0, "out": 1.0}, "b": {"out": 1.0}}, start="a")
    assert graph.transitions["a"][0] == ("out",)
    assert graph.next_state("a", 0.0) == "out"


def test_visit_ratios_solve_the_cbmg_equations():
    graph = simple()
    v = graph.visit_ratios()
    assert v["home"] == pytest.approx(4 / 3)
    assert v["product"] == pytest.approx(2 / 3)
    mix = graph.stationary_distribution()
    assert mix == pytest.approx({"home": 2 / 3, "product": 1 / 3})
    assert graph.matrix().tolist() == [[0.0, 0.5], [0.5, 0.0]]


def test_visit_ratios_need_an_exit():
    with pytest.raises(ValueError, match="no visit ratios per session"):
        builtin_profile("tpcw-browsing").visit_ratios()


def test_exitless_stationary_ignores_unreachable_pages():
    table = {"a": {"b": 1.0}, "b": {"a": 1.0}, "island": {"a": 1.0}}
    graph = simple(table=table, start="a", exit=None, session_length=THINK)
    assert graph.stationary_distribution() == pytest.approx({"a": 0.5, "b": 0.5, "island": 0.0})


@pytest.mark.parametrize(
    ("kwargs", "problems"),
    [
        (
            {"table": {"home": {"nowhere": 1.0}}},
            [
                (
                    ("transitions", "home", "nowhere"),
                    "unknown state 'nowhere' (states: home; exit: out)",
                )
            ],
        ),
        (
            {"table": {"home": {"out": 1.0}}, "start": "shop"},
            [(("start",), "start state 'shop' has no transitions")],
        ),
        (
            {"table": {"home": {"out": 1.0}}, "start": "out"},
            [(("start",), "start state 'out' is the exit")],
        ),
        (
            {"table": {"home": {"out": 1.0}, "out": {"home": 1.0}}},
            [(("transitions", "out"), "the exit 'out' must not have outgoing transitions")],
        ),
        (
            {"table": {"home": {"out": 0.5}}},
            [(("transitions", "home"), "probabilities sum to 0.5, not 1")],
        ),
        (
            {"table": {"home": {}}},
            [(("transitions", "home"), "probabilities sum to 0, not 1")],
        ),
        (
            {"table": {"home": {"loop": 0.5, "out": 0.5}, "loop": {"loop": 1.0}}},
            [
                (
                    ("transitions", "loop"),
                    "the exit 'out' cannot be reached from loop (reachable from start 'home')",
                )
            ],
        ),
        (
            {"table": {"home": {"home": 1.0}}},
            [
                (
                    ("exit",),
                    "the exit 'out' cannot be reached from home (reachable from start 'home')",
                )
            ],
        ),
        (
            {"table": {"a": {"b": 1.0}, "b": {"b": 1.0}}, "start": "a", "exit": None},
            [
                (
                    ("transitions", "b"),
                    "without an exit, every page reachable from start must lead back to it; "
                    "b cannot reach 'a'",
                )
            ],
        ),
        (
            {"table": {"home": {"out": 1.5, "home": -0.5}}},
            [
                (("transitions", "home", "out"), "must be in [0, 1], got 1.5"),
                (("transitions", "home", "home"), "must be in [0, 1], got -0.5"),
            ],
        ),
        (
            {"table": {"home": {"x": 1.0}}, "exit": None},
            [(("transitions", "home", "x"), "unknown state 'x' (states: home)")],
        ),
    ],
)
def test_bad_graphs_are_located(kwargs, problems):
    with pytest.raises(Invalid) as info:
        simple(**kwargs)
    assert info.value.problems == problems


def test_graphs_are_limited_to_a_thousand_states():
    table = {f"s{i}": {"out": 1.0} for i in range(1001)}
    with pytest.raises(Invalid) as info:
        simple(table=table, start="s0")
    assert info.value.problems == [(("transitions",), "at most 1000 states, got 1001")]


def test_graphs_compare_by_content_and_pickle():
    a, b = simple(), simple()
    assert a == b and hash(a) == hash(b)
    assert a != simple(table={"home": {"out": 1.0}})
    assert a != "graph"
    assert pickle.loads(pickle.dumps(builtin_profile("tpcw-ordering"))) == builtin_profile(
        "tpcw-ordering"
    )


def test_with_timing_replaces_only_what_is_given():
    graph = builtin_profile("tpcw-shopping")
    short = distribution({"exponential": {"mean": "1m"}})
    changed = with_timing(graph, session_length=short)
    assert changed.session_length == short
    assert changed.think_time == graph.think_time
    assert changed.next_state("home", 0.0) == graph.next_state("home", 0.0)
    assert with_timing(graph) == graph


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="unknown profile 'tpcw-buying'"):
        builtin_profile("tpcw-buying")
    with pytest.raises(ValueError, match="unknown profile"):
        published_mix("rubis")


def test_page_demand_table():
    table = builtin_page_demands()
    assert set(table) == TPCW_PAGES
    assert table["home"] == PageDemand(app=1.0, queries=0, cache_lookups=5)
    assert table["buy_confirm"].app == 2.0
    assert table["buy_confirm"].queries == 3
    assert table["search_results"] == PageDemand(app=1.5, queries=1, cache_lookups=10)
    assert table["product_detail"] == PageDemand(app=1.0, queries=0, cache_lookups=1)
    assert table["best_sellers"].queries == 1
    assert table["new_products"].queries == 1
    assert table["admin_confirm"].queries == 2
    assert all(d.app >= 1.0 for d in table.values())
    table["home"] = PageDemand()
    assert builtin_page_demands()["home"].cache_lookups == 5  # a fresh copy each time


def test_browse_pages_are_tpcws_six():
    assert {
        "home",
        "new_products",
        "best_sellers",
        "product_detail",
        "search_request",
        "search_results",
    } == BROWSE_PAGES


def test_packaged_tables_are_the_shared_ones():
    data = tpcw_data()
    assert data["source"].startswith("TPC-W specification clause 5.2")
    if not SHARED_TPCW.exists():  # pragma: no cover - shared/ sits beside the checkout
        pytest.skip("shared/workloads/tpcw.yaml not beside the checkout")
    shared = yaml.safe_load(SHARED_TPCW.read_text(encoding="utf-8"))
    assert data["mixes"] == shared["mixes"]
    assert data["states"] == shared["states"]
    assert data["source"] == shared["source"]
    assert data["start_state"] == shared["start_state"]
    think = distribution(data["think_time"])
    assert think == distribution(
        {
            "exponential": {
                "mean": shared["think_time"]["mean_s"],
                "cap": shared["think_time"]["max_s"],
            }
        }
    )
    session = distribution(data["session_length"])
    assert session == distribution(
        {
            "exponential": {
                "mean": shared["session_length"]["mean_s"],
                "cap": shared["session_length"]["max_s"],
            }
        }
    )
