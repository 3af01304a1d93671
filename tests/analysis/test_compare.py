from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sim.analysis.compare import (
    Comparison,
    RunSummary,
    UnknownKpi,
    Variant,
    compare,
    grid_variants,
    kpi_values,
    lookup,
    paired_difference,
    parse_vary,
    replicate,
    run_many,
    scenario_variants,
    split_values,
    station_of_path,
    summarize_run,
    unpaired_difference,
    with_own_store,
)
from sim.analysis.executors import InProcessExecutor
from sim.analysis.stats import (
    MeanCI,
    mean_ci,
    precise_enough,
    relative_half_width,
    replications_needed,
)
from sim.engine.runner import run
from sim.scenario import ScenarioError, load_scenario
from tests.analysis._queues import mmc

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
NAN = float("nan")


def _same(a: object, b: object) -> bool:
    """Equal as data, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# --- parsing --vary -------------------------------------------------------------------------------


def test_split_values_respects_brackets_and_quotes():
    assert split_values("8,12, 16") == ["8", "12", "16"]
    assert split_values("{exponential: {mean: 5ms}},{constant: 1ms}") == [
        "{exponential: {mean: 5ms}}",
        "{constant: 1ms}",
    ]
    assert split_values("[1, 2],'a,b',\"c,d\"") == ["[1, 2]", "'a,b'", '"c,d"']


def test_parse_vary():
    assert parse_vary("stations.app.servers=8,12,16,24") == (
        "stations.app.servers",
        ["8", "12", "16", "24"],
    )
    assert parse_vary(" stations.app.servers = 8") == ("stations.app.servers", ["8"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stations.app.servers", "is not of the form key.path=value1,value2"),
        ("=1,2", "has no key path"),
        ("stations.app.servers=8,,12", "has an empty value"),
        ("stations.app.servers=", "has an empty value"),
        ("stations.app.servers=8,12,8", "repeats the value '8'"),
    ],
)
def test_parse_vary_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_vary(text)


# --- variants -------------------------------------------------------------------------------------


def test_grid_variants_one_key():
    variants = grid_variants(SMOKE, [("stations.app.servers", ["2", "6"])], ["horizon=1m"])
    assert [v.label for v in variants] == ["servers=2", "servers=6"]
    assert [v.scenario.stations.app.servers for v in variants] == [2, 6]
    assert all(v.scenario.horizon == 60.0 for v in variants)
    assert variants[0].settings == (("stations.app.servers", "2"),)
    assert variants[1].value("stations.app.servers") == 6
    assert variants[0].source == str(SMOKE)


def test_grid_variants_of_two_keys_is_the_grid_in_order():
    variants = grid_variants(
        SMOKE,
        [("stations.app.servers", ["2", "4"]), ("stations.database.query", ["{constant: 1ms}"])],
    )
    assert [v.label for v in variants] == [
        "servers=2, query={constant: 1ms}",
        "servers=4, query={constant: 1ms}",
    ]
    assert variants[1].value("stations.database.query") == {"constant": 0.001}


def test_grid_variants_names_clashing_keys_in_full():
    variants = grid_variants(
        SMOKE, [("stations.app.servers", ["2"]), ("stations.cache.servers", ["1", "3"])]
    )
    assert variants[1].label == "stations.app.servers=2, stations.cache.servers=3"
    assert variants[1].value("payments.gateways.card-a.servers") == 4


def test_grid_variants_validate_every_value():
    with pytest.raises(ScenarioError) as err:
        grid_variants(SMOKE, [("stations.app.servers", ["2", "0"])])
    assert "stations.app.servers" in str(err.value) and "smoke.yaml" in str(err.value)
    with pytest.raises(ScenarioError, match="unknown key"):
        grid_variants(SMOKE, [("stations.app.cores", ["2"])])
    with pytest.raises(ValueError, match=r"names 'stations\.app\.servers' more than once"):
        grid_variants(SMOKE, [("stations.app.servers", ["2"]), ("stations.app.servers", ["3"])])


def test_scenario_variants_of_files(tmp_path):
    copy = tmp_path / "other.yaml"
    shutil.copy(SMOKE, copy)
    variants = scenario_variants([SMOKE, copy])
    assert [v.label for v in variants] == ["smoke", "other"]  # same name: the file stems
    again = scenario_variants([SMOKE, SMOKE])
    assert [v.label for v in again] == ["smoke (1)", "smoke (2)"]
    crossed = scenario_variants([SMOKE, copy], [("stations.app.servers", ["1", "2"])])
    assert [v.label for v in crossed] == [
        "smoke [servers=1]",
        "smoke [servers=2]",
        "other [servers=1]",
        "other [servers=2]",
    ]
    single = scenario_variants([SMOKE], [("stations.app.servers", ["1", "2"])])
    assert [v.label for v in single] == ["servers=1", "servers=2"]


def test_lookup_follows_overrides_paths():
    data = load_scenario(SMOKE).to_data()
    assert lookup(data, "stations.app.servers") == 4
    assert lookup(data, "payments.gateways.card-b.servers") == lookup(
        data, "payments.gateways.1.servers"
    )
    assert lookup(data, "stations.app.nothing") is None
    assert lookup(data, "payments.gateways.nobody.servers") is None
    assert lookup(data, "stations.app.servers.more") is None


@pytest.mark.parametrize(
    ("path", "station"),
    [
        ("stations.app.servers", "app"),
        ("stations.database.pool", "database"),
        ("stations.cache.servers", "cache"),
        ("payments.gateways.card-a.servers", "gateway:card-a"),
        ("fulfilment.warehouses.east.workers", "warehouse:east"),
        ("arrivals.rate", None),
        ("stations", None),
    ],
)
def test_station_of_path(path, station):
    assert station_of_path(path) == station


# --- differences ----------------------------------------------------------------------------------


def test_paired_difference_matches_scipy():
    a = np.array([1.0, 2, 3, 4, 6])
    b = np.array([1.5, 1, 2.5, 2.0, 7])
    ci, p = paired_difference(a, b)
    reference = scipy_stats.ttest_rel(a, b)
    interval = reference.confidence_interval(0.95)
    assert ci.mean == pytest.approx(0.4)
    assert (ci.low, ci.high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert p == pytest.approx(reference.pvalue, rel=1e-12)
    assert ci.n == 5


def test_paired_difference_edge_cases():
    ci, p = paired_difference([1.0, NAN, 3.0, 5.0], [0.0, 1.0, NAN, 4.0])  # pairs 0 and 3 only
    assert (ci.n, ci.mean) == (2, 1.0) and (ci.half_width, p) == (0.0, 0.0)
    ci, p = paired_difference([1.0, 2.0], [1.0, 2.0])
    assert (ci.mean, ci.half_width, p) == (0.0, 0.0, 1.0)
    ci, p = paired_difference([1.0], [0.0])
    assert ci.n == 1 and math.isnan(ci.half_width) and math.isnan(p)
    ci, p = paired_difference([NAN], [0.0])
    assert ci.n == 0 and math.isnan(ci.mean) and math.isnan(p)
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0, 2.0], [1.0])


def test_unpaired_difference_is_welch():
    a = np.array([1.0, 2, 3, 4, 6])
    b = np.array([1.5, 1, 2.5, 2.0, 7, NAN])
    ci = unpaired_difference(a, b)
    interval = scipy_stats.ttest_ind(a, b[:5], equal_var=False).confidence_interval(0.95)
    assert (ci.low, ci.high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert ci.n == 5
    assert unpaired_difference([1.0, 1.0], [2.0, 2.0]) == MeanCI(-1.0, 0.0, -1.0, -1.0, 2)
    one = unpaired_difference([1.0], [2.0, 3.0])
    assert one.mean == -1.5 and math.isnan(one.half_width)
    assert unpaired_difference([], [1.0]).n == 0


# --- the comparison, on made-up summaries ---------------------------------------------------------


def _summary(label: str, replication: int, **kpis: float) -> RunSummary:
    nested: dict = {}
    for key, value in kpis.items():
        node = nested
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return RunSummary(label, 1, replication, nested, 0.0, False, False, (), (), 0.1)


@pytest.fixture(scope="module")
def made_up() -> Comparison:
    base, fast, faster = mmc(10, 1), mmc(10, 2), mmc(10, 3)
    variants = (
        Variant("one", base, (("stations.app.servers", "1"),)),
        Variant("two", fast, (("stations.app.servers", "2"),)),
        Variant("three", faster, (("stations.app.servers", "3"),)),
    )
    lat = {"one": [0.30, 0.35, 0.32, 0.40], "two": [0.20, 0.26, 0.21, 0.29]}
    offsets = (0.002, -0.004, 0.003, -0.005)  # three is lower on average, but not consistently
    lat["three"] = [v + d for v, d in zip(lat["two"], offsets, strict=True)]
    summaries = {
        label: [
            _summary(
                label,
                i,
                latency__mean=lat[label][i],
                throughput=5.0,
                payment_success=NAN if label == "one" else 0.9 + 0.01 * i,
                conversion=NAN,
                orders_by_state__paid=3.0 if label == "one" and i == 0 else None,
            )
            for i in range(4)
        ]
        for label in ("one", "two", "three")
    }
    for rows in summaries.values():
        for s in rows:
            s.kpis["orders_by_state"] = {
                k: v for k, v in s.kpis["orders_by_state"].items() if v is not None
            }
    return Comparison(
        variants=variants,
        summaries=summaries,
        seed=1,
        replications=4,
        parameters=("stations.app.servers",),
    )


def test_comparison_table_rows_and_columns(made_up):
    table = made_up.table()
    assert list(table.columns) == [
        "variant",
        "stations.app.servers",
        "kpi",
        "n",
        "mean",
        "half_width",
        "low",
        "high",
        "diff",
        "diff_half_width",
        "diff_low",
        "diff_high",
        "p_value",
        "significant",
        "unpaired_half_width",
    ]
    assert list(table["variant"].unique()) == ["one", "two", "three"]
    assert list(table["stations.app.servers"].unique()) == [1, 2, 3]
    row = table[(table["variant"] == "two") & (table["kpi"] == "latency.mean")].iloc[0]
    ci = mean_ci([0.20, 0.26, 0.21, 0.29])
    diff, p = paired_difference([0.20, 0.26, 0.21, 0.29], [0.30, 0.35, 0.32, 0.40])
    assert (row["n"], row["mean"], row["half_width"]) == (4, ci.mean, ci.half_width)
    assert (row["diff"], row["diff_half_width"], row["p_value"]) == (
        pytest.approx(diff.mean),
        pytest.approx(diff.half_width),
        pytest.approx(p),
    )
    assert bool(row["significant"]) is True
    base = table[(table["variant"] == "one") & (table["kpi"] == "latency.mean")].iloc[0]
    assert math.isnan(base["diff"]) and not base["significant"]
    counts = table[table["kpi"] == "orders_by_state.paid"].set_index("variant")["mean"]
    assert counts.to_dict() == {"one": 0.75, "two": 0.0, "three": 0.0}  # missing counts are 0
    page = [_summary("v", 0, latency_by_page__admin__count=3.0, latency_by_page__admin__p95=0.02)]
    page += [_summary("v", i) for i in (1, 2, 3)]
    assert kpi_values(page, "latency_by_page.admin.count").tolist() == [3.0, 0.0, 0.0, 0.0]
    assert np.isnan(kpi_values(page, "latency_by_page.admin.p95")[1:]).all()
    assert made_up.table() is not made_up.table()  # a copy each time


def test_comparison_verdicts(made_up):
    latency = made_up.verdict("latency.mean")
    assert (latency.best, latency.runner_up, latency.direction) == ("three", "two", "lower")
    assert latency.difference.mean == pytest.approx(-0.001)
    assert latency.difference.low < 0 < latency.difference.high
    assert not latency.established and not latency.tie
    # three variants: each of the best's two tests is Bonferroni-adjusted
    assert (latency.contender, latency.level) == ("two", 0.975)
    raw = paired_difference(
        made_up.values("three", "latency.mean"), made_up.values("two", "latency.mean"), 0.975
    )
    assert latency.difference == raw[0] and raw[1] > 0.5 and latency.p_value == 1.0
    two_vs_one = made_up.difference("two", "latency.mean")
    assert two_vs_one[0].mean == pytest.approx(-0.1025)
    throughput = made_up.verdict("throughput")
    assert throughput.tie and throughput.best == "one"
    success = made_up.verdict("payment_success")
    assert (success.variants_with_data, success.best, success.runner_up) == (2, "two", "three")
    assert success.difference.mean == 0.0 and success.p_value == 1.0
    nothing = made_up.verdict("conversion")
    assert nothing.best is None and nothing.variants_with_data == 0
    with pytest.raises(ValueError, match="direction"):
        made_up.verdict("latency.mean", "sideways")
    keys = [v.kpi for v in made_up.verdicts()]
    assert keys == ["throughput", "latency.mean", "conversion", "payment_success"]


def test_verdict_established_and_higher_is_better():
    scenario = mmc(10, 1)
    variants = (Variant("a", scenario), Variant("b", scenario))
    summaries = {
        "a": [_summary("a", i, revenue_cents=100.0 + i) for i in range(3)],
        "b": [_summary("b", i, revenue_cents=110.0 + i + 0.1 * (i == 1)) for i in range(3)],
    }
    comparison = Comparison(variants, summaries, seed=1, replications=3)
    verdict = comparison.verdict("revenue_cents")
    assert (verdict.best, verdict.runner_up, verdict.established) == ("b", "a", True)
    assert verdict.confidence > 0.99
    alone = Comparison(
        variants,
        {"a": [_summary("a", 0, cache_hit_rate=0.5)], "b": [_summary("b", 0)]},
        seed=1,
        replications=1,
    )
    single = alone.verdict("cache_hit_rate")
    assert (single.best, single.runner_up, single.variants_with_data) == ("a", None, 1)
    assert math.isnan(single.confidence)


# --- sequential stopping helpers ------------------------------------------------------------------


def test_relative_half_width_and_replications_needed():
    ci = MeanCI(10.0, 1.0, 9.0, 11.0, 5)
    assert relative_half_width(ci) == 0.1
    assert replications_needed(ci, 0.05) == 20  # 5 * (0.1 / 0.05)^2
    assert replications_needed(ci, 0.1) == 5
    assert replications_needed(MeanCI(10.0, 1.1, 8.9, 11.1, 5), 0.1) == 7  # ceil(6.05)
    assert relative_half_width(MeanCI(0.0, 0.0, 0.0, 0.0, 3)) == 0.0
    assert relative_half_width(MeanCI(0.0, 1.0, -1.0, 1.0, 3)) == math.inf
    assert relative_half_width(MeanCI(2.0, NAN, NAN, NAN, 1)) == math.inf
    assert replications_needed(MeanCI(2.0, NAN, NAN, NAN, 1), 0.05) == 2
    assert precise_enough([ci, MeanCI(1.0, 0.01, 0.99, 1.01, 4)], 0.1)
    assert not precise_enough([ci], 0.09)
    with pytest.raises(ValueError, match="precision must be in"):
        replications_needed(ci, 1.0)


# --- replications with common random numbers ------------------------------------------------------


def test_replicate_uses_the_same_seeds_for_every_variant():
    one, two = mmc(20, 1), mmc(20, 2)
    done = replicate([Variant("one", one), Variant("two", two)], 2, seed=5)
    assert done.rounds == (2,) and done.precise is None
    for label, scenario in (("one", one), ("two", two)):
        rows = done.summaries[label]
        assert [(s.seed, s.replication, s.label) for s in rows] == [(5, 0, label), (5, 1, label)]
        direct = summarize_run(run(scenario, 5, replication=1), label)
        assert _same(rows[1].kpis, direct.kpis)
    # the arrivals stream is shared: the same sessions whatever the capacity
    assert (
        kpi_values(done.summaries["one"], "sessions_per_second").tolist()
        == kpi_values(done.summaries["two"], "sessions_per_second").tolist()
    )


def test_replicate_adds_rounds_until_precise():
    variant = Variant("mm1", mmc(20, 1))
    seen = []
    done = replicate(
        [variant],
        2,
        seed=3,
        precision=0.05,
        precision_kpis=["service.app"],
        max_replications=40,
        progress=lambda done, total: seen.append((done, total)),
    )
    rows = done.summaries["mm1"]
    assert done.precise is True
    assert done.rounds[0] == 2 and len(done.rounds) >= 2 and done.rounds[-1] == len(rows)
    assert list(done.rounds) == sorted(set(done.rounds))
    ci = mean_ci(kpi_values(rows, "service.app"))
    assert relative_half_width(ci) <= 0.05
    # the round before was not precise enough
    before = mean_ci(kpi_values(rows[: done.rounds[-2]], "service.app"))
    assert relative_half_width(before) > 0.05
    assert seen[-1] == (len(rows), len(rows))


def test_replicate_stops_at_the_cap():
    done = replicate(
        [Variant("mm1", mmc(20, 1))],
        2,
        seed=3,
        precision=0.001,
        precision_kpis=["latency.p95"],
        max_replications=3,
    )
    assert done.precise is False and done.rounds == (2, 3)
    assert len(done.summaries["mm1"]) == 3


def test_replicate_rejects_bad_arguments():
    variant = Variant("x", mmc(20, 1))
    with pytest.raises(ValueError, match="at least one variant"):
        replicate([], 2)
    with pytest.raises(ValueError, match="labels must be unique"):
        replicate([variant, variant], 2)
    with pytest.raises(ValueError, match="replications must be >= 1"):
        replicate([variant], 0)
    with pytest.raises(ValueError, match="precision must be in"):
        replicate([variant], 2, precision=1.5)
    with pytest.raises(ValueError, match=r"max_replications \(1\) must be >= replications"):
        replicate([variant], 2, precision=0.1, max_replications=1)
    with pytest.raises(UnknownKpi, match=r"precision KPI 'latency\.p96': no such KPI"):
        replicate([variant], 2, precision=0.1, precision_kpis=["latency.p96"])
    with pytest.raises(ValueError, match="at least two variants"):
        compare([variant], 2)


def test_run_many_on_an_executor_matches_in_process():
    scenario = load_scenario(SMOKE, ["horizon=30s", "warmup=0"])
    ticks = []
    here = run_many(scenario, 2, seed=4)
    there = run_many(
        scenario,
        2,
        seed=4,
        executor=InProcessExecutor(),
        progress=lambda i, now, horizon: ticks.append((i, now, horizon)),
    )
    assert _same([r.kpis for r in here], [r.kpis for r in there])
    assert [(r.seed, r.replication) for r in there] == [(4, 0), (4, 1)]
    assert ticks == [(0, 30.0, 30.0), (1, 30.0, 30.0)]
    with pytest.raises(ValueError, match="replications must be >= 1"):
        run_many(scenario, 0)


def test_common_random_numbers_make_the_paired_interval_much_narrower():
    """A variant that changes only app-server capacity: paired vs unpaired CI of the mean."""
    variants = grid_variants(
        SMOKE,
        [("stations.app.servers", ["3", "4"])],
        ["horizon=90s", "warmup=10s", "arrivals.rate=4/s", "faults=[]"],
    )
    comparison = compare(variants, 6, seed=7)
    row = comparison.table().set_index(["variant", "kpi"]).loc[("servers=4", "latency.mean")]
    paired, unpaired = row["diff_half_width"], row["unpaired_half_width"]
    message = (
        f"mean response time servers=4 - servers=3: {row['diff'] * 1000:.3f} ms; 95 % half-width "
        f"paired (CRN) {paired * 1000:.3f} ms vs unpaired {unpaired * 1000:.3f} ms "
        f"(ratio {paired / unpaired:.2f})"
    )
    print(message)
    assert paired < 0.4 * unpaired, message
    assert bool(row["significant"]) and row["diff"] < 0, message


def test_precision_ignores_a_kpi_without_data():
    done = replicate(
        [Variant("mm1", mmc(20, 1))],
        2,
        seed=3,
        precision=0.5,
        precision_kpis=["service.app", "checkout_latency.p95"],  # one page: no checkout at all
        max_replications=4,
    )
    assert done.precise is True and done.rounds == (2,)


class _Scripted(InProcessExecutor):
    """Answers each replication with a given value of one KPI (NaN: the run had none)."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = values

    def map(self, fn, tasks, *, progress=None):  # type: ignore[no-untyped-def]
        del fn, progress
        return [_summary(t.label, t.replication, wait=self.values[t.replication]) for t in tasks]


@pytest.mark.parametrize(
    ("values", "rounds", "precise"),
    [
        # one value in four replications: no interval yet; two values wanted, at one in four
        # replications that is eight, capped at six
        ([1.0, NAN, NAN, NAN, NAN, NAN], (4, 6), False),
        # three values, 6.0 % wide against 5 %: 3 (6.0/5)^2 = 4.3 -> 5 values, at 3 in 10
        # replications that is 17 replications, not the 10 already run
        ([1.0, 1.0242, 0.9758, *[NAN] * 17], (10, 17), False),
        # the same three values and a fourth: 3.1 % wide, precise at the first look
        ([1.0, 1.0242, 0.9758, 1.0, *[NAN] * 6], (10,), True),
    ],
)
def test_precision_counts_the_replications_a_missing_kpi_needs(values, rounds, precise):
    done = replicate(
        [Variant("v", mmc(20, 1))],
        rounds[0],
        seed=1,
        executor=_Scripted(values),
        precision=0.05,
        precision_kpis=["wait"],
        max_replications=rounds[-1],
    )
    assert done.rounds == rounds and done.precise is precise
    values = kpi_values(done.summaries["v"], "wait")
    assert precise_enough([mean_ci(values[np.isfinite(values)])], 0.05) is precise


def _three_way(b_offset: float, c_noise: float) -> Comparison:
    """A beats B by 1 with tight pairing; C has B's mean less 0.5 and noise ``c_noise``."""
    rng = np.random.default_rng(3)
    common = rng.normal(100.0, 5.0, 10)
    values = {
        "A": common + 2.0 + rng.normal(0.0, 0.2, 10),
        "B": common + 2.0 - b_offset + rng.normal(0.0, 0.2, 10),
    }
    c = common + rng.normal(0.0, c_noise, 10)
    values["C"] = c - c.mean() + values["B"].mean() - 0.5
    return Comparison(
        variants=tuple(Variant(label, mmc(10, 1)) for label in "CBA"),
        summaries={
            label: [_summary(label, i, throughput=v) for i, v in enumerate(values[label])]
            for label in "CBA"
        },
        seed=1,
        replications=10,
    )


def test_a_win_needs_every_other_variant_beaten_not_only_the_runner_up():
    """Best against a tightly paired runner-up is clear; against a noisy third it is not."""
    noisy = _three_way(b_offset=1.0, c_noise=8.0)
    verdict = noisy.verdict("throughput")
    assert (verdict.best, verdict.runner_up, verdict.contender) == ("A", "B", "C")
    a, b, c = (noisy.values(label, "throughput") for label in "ABC")
    assert paired_difference(a, b)[1] < 1e-6  # the runner-up alone would say "established"
    against_c, p_c = paired_difference(a, c, 0.975)
    assert verdict.difference == against_c and verdict.p_value == pytest.approx(min(1, 2 * p_c))
    assert against_c.low < 0 < against_c.high and not verdict.established
    # C as steady as B: the win over both holds, and the closest call is still named
    steady = _three_way(b_offset=1.0, c_noise=0.2).verdict("throughput")
    assert steady.established and steady.level == 0.975
    assert steady.contender in ("B", "C") and steady.p_value < 0.05


def test_table_shows_settings_that_are_not_numbers():
    variants = grid_variants(
        SMOKE, [("stations.database.query", ["{constant: 1ms}", "{constant: 2ms}"])]
    )
    summaries = {v.label: [_summary(v.label, 0, throughput=1.0)] for v in variants}
    comparison = Comparison(
        tuple(variants),
        summaries,
        seed=1,
        replications=1,
        parameters=("stations.database.query", "stations.nothing"),
    )
    table = comparison.table()
    assert list(table["stations.database.query"]) == ["{'constant': 0.001}", "{'constant': 0.002}"]
    assert table["stations.nothing"].isna().all()


class _Recording(InProcessExecutor):
    """Runs in process and keeps the tasks it was given."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []

    def map(self, fn, tasks, *, progress=None):  # type: ignore[no-untyped-def]
        self.tasks.extend(tasks)
        return super().map(fn, tasks, progress=progress)


def test_grid_variants_on_one_sqlite_file_run_on_files_of_their_own(tmp_path):
    """On a pool, variants sharing one file would delete each other's shop mid-run."""
    shop = tmp_path / "shop.db"
    overrides = ["horizon=20s", "warmup=0", "storage.kind=sqlite", f"storage.path={shop}"]
    variants = grid_variants(SMOKE, [("stations.app.servers", ["4", "8"])], overrides)
    assert {v.scenario.storage.path for v in variants} == {str(shop)}  # as the grid makes them
    executor = _Recording()
    comparison = compare(variants, 2, seed=1, executor=executor)
    used = {(t.label, t.scenario["storage"]["path"]) for t in executor.tasks}
    own = [str(tmp_path / "shop-v1.db"), str(tmp_path / "shop-v2.db")]
    assert used == {("servers=4", own[0]), ("servers=8", own[1])}
    assert [v.scenario.storage.path for v in comparison.variants] == own
    written = sorted(p.name for p in tmp_path.glob("*.db"))
    assert written == ["shop-v1-rep1.db", "shop-v1.db", "shop-v2-rep1.db", "shop-v2.db"]
    # replicate() on its own does the same; variants on files of their own are left alone
    again = _Recording()
    replicate(variants, 1, seed=1, executor=again)
    assert {t.scenario["storage"]["path"] for t in again.tasks} == set(own)
    assert replicate(comparison.variants, 1, seed=1, executor=again).summaries.keys() == {
        "servers=4",
        "servers=8",
    }
    assert {t.scenario["storage"]["path"] for t in again.tasks[2:]} == set(own)


def test_variants_that_name_a_sqlite_file_each_get_their_own():
    overrides = ["storage.kind=sqlite", "storage.path=runs/shop.db"]
    variants = scenario_variants([SMOKE], [("stations.app.servers", ["4", "8"])], overrides)
    assert [v.scenario.storage.path for v in variants] == ["runs/shop-v1.db", "runs/shop-v2.db"]
    assert [v.scenario.storage.kind for v in variants] == ["sqlite", "sqlite"]
    in_memory = scenario_variants([SMOKE, SMOKE], (), ["storage=sqlite"])
    assert [v.scenario.storage.path for v in in_memory] == [None, None]  # nothing to share
    plain = scenario_variants([SMOKE], [("stations.app.servers", ["4", "8"])])
    assert all(with_own_store(v.scenario, "x") is v.scenario for v in plain)
