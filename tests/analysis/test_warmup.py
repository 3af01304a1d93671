from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.analysis.compare import (
    WARMUP_KPIS,
    WarmupCut,
    apply_auto_warmup,
    auto_warmup,
    compare,
    extra_kpis,
    grid_variants,
    kpis_after_warmup,
    run_many,
    summarize_run,
)
from sim.analysis.stats import MSER_BATCH, Truncation, flatten_numeric, mser
from sim.engine.histogram import RELATIVE_ACCURACY
from sim.engine.metrics import interval_cut
from sim.engine.recorder import RequestAggregates
from sim.engine.runner import run
from sim.scenario import load_scenario

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"

# --- mser -----------------------------------------------------------------------------------------


def test_mser_by_hand_with_batches_of_one():
    # d = 0: mean 17/8, SSE = 7.875^2 + 7 * 1.125^2 = 70.875, MSER = 70.875 / 64.
    # d = 1: the rest is constant, MSER = 0; d = 2..4 tie at 0 and the first wins.
    cut = mser([10, 1, 1, 1, 1, 1, 1, 1], batch_size=1)
    assert cut == Truncation(cut=1, batches=1, batch_size=1, statistic=0.0, at_limit=False)


def test_mser5_cuts_a_transient_of_ten_batches():
    rng = np.random.default_rng(3)
    series = rng.normal(0.0, 1.0, 500)
    series[:50] += 10.0
    cut = mser(series)
    assert (cut.cut, cut.batches, cut.batch_size, cut.at_limit) == (50, 10, MSER_BATCH, False)


def test_mser5_on_a_stationary_series_cuts_little():
    rng = np.random.default_rng(4)
    cut = mser(rng.normal(5.0, 1.0, 1000))
    assert cut.cut <= 50
    assert not cut.at_limit


def test_mser_constant_series_cuts_nothing():
    cut = mser(np.full(100, 3.0))
    assert (cut.cut, cut.statistic, cut.at_limit) == (0, 0.0, False)


def test_mser_on_a_trend_hits_the_half_way_limit():
    # 200 batch means rising for ever: the more is cut, the smaller the spread; stops at 100.
    cut = mser(np.arange(1000.0))
    assert (cut.batches, cut.cut, cut.at_limit) == (100, 500, True)


def test_mser_max_fraction_bounds_the_cut():
    cut = mser(np.arange(1000.0), max_fraction=0.25)
    assert (cut.batches, cut.at_limit) == (50, True)


def test_mser_drops_a_trailing_partial_batch():
    # 23 values: 4 batches of 5 (the last 3 values are ignored, even a huge one).
    values = [1.0] * 20 + [1e9, 1e9, 1e9]
    assert mser(values).statistic == 0.0


def test_mser_with_fewer_than_four_batches_gives_no_cut():
    cut = mser([5.0, 1.0, 1.0] * 6)  # 18 values, 3 batches
    assert cut.cut == 0 and cut.batches == 0 and math.isnan(cut.statistic)
    assert mser([]).cut == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [1.0, float("nan")] * 20}, "finite values"),
        ({"values": [1.0] * 20, "batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"values": [1.0] * 20, "batch_size": True}, "batch_size must be an integer >= 1"),
        ({"values": [1.0] * 20, "max_fraction": 1.0}, "max_fraction must be in (0, 1)"),
        ({"values": [[1.0, 2.0]]}, "one-dimensional"),
    ],
)
def test_mser_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mser(**kwargs)


# --- auto_warmup on frames ------------------------------------------------------------------------


def _requests(times: np.ndarray, response: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"time": times, "response": response})


def test_auto_warmup_cuts_slow_early_responses():
    # 2,000 requests every 50 ms; the first 400 (20 s) take 1 s, the rest 10 ms +- noise.
    times = np.arange(2000) * 0.05
    rng = np.random.default_rng(5)
    response = 0.01 + rng.uniform(-0.001, 0.001, times.size)
    response[:400] = 1.0
    # Rows arrive in completion order, not arrival order: shuffle them.
    frame = _requests(times, response).sample(frac=1.0, random_state=1)
    cut = auto_warmup({"requests": frame}, horizon=100.0)
    # 100 bins of one second, batches of 5 bins: the 20 slow bins are 4 batches.
    assert cut.response_cut == 20.0
    assert cut.throughput_cut == 0.0  # 20 requests in every one-second bin
    assert cut.cut == cut.response_cut
    assert not cut.at_limit


def test_auto_warmup_cuts_a_throughput_ramp():
    # 5 requests per second for 20 s, then 20 per second: bins of 100 / 85 s, batches of 5.
    times = np.concatenate([np.arange(100) * 0.2, 20.0 + np.arange(1600) * 0.05])
    frame = _requests(times, np.full(times.size, 0.01))
    cut = auto_warmup({"requests": frame}, horizon=100.0)
    width = 100.0 / 85
    assert cut.response_cut == 0.0
    assert 20.0 - 1e-9 <= cut.throughput_cut <= 20.0 + 5 * width
    assert cut.throughput_cut / (5 * width) == pytest.approx(
        round(cut.throughput_cut / (5 * width))
    )
    assert cut.cut == cut.throughput_cut


def test_auto_warmup_without_requests_is_zero():
    empty = _requests(np.array([]), np.array([]))
    assert auto_warmup({"requests": empty}, horizon=60.0) == WarmupCut(0.0, 0.0, 0.0, False)


# --- recomputing KPIs after a cut -----------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_runs():
    fixed = load_scenario(SMOKE, ["horizon=2m", "warmup=30s"])
    zero = load_scenario(SMOKE, ["horizon=2m", "warmup=0"])
    auto = load_scenario(SMOKE, ["horizon=2m", "warmup=auto"])
    return run(fixed, 7), run(zero, 7), run(auto, 7)


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_kpis_after_warmup_equal_a_run_with_that_warmup(smoke_runs):
    fixed, zero, _ = smoke_runs
    assert not _same(zero.kpis, fixed.kpis)
    again = kpis_after_warmup(zero.kpis, zero.frames, warmup=30.0, horizon=120.0)
    assert _same(again, fixed.kpis)
    assert set(WARMUP_KPIS) <= set(again)


def test_apply_auto_warmup_cuts_at_mser_and_recomputes(smoke_runs):
    _, zero, auto = smoke_runs
    assert auto.warmup == 0.0  # the engine runs "auto" without a cut
    resolved = apply_auto_warmup(auto)
    cut = auto_warmup(auto.frames, 120.0)
    assert cut.cut > 0.0
    assert resolved.warmup == cut.cut
    assert resolved.scenario.warmup == cut.cut
    assert _same(
        resolved.kpis, kpis_after_warmup(zero.kpis, zero.frames, warmup=cut.cut, horizon=120.0)
    )
    assert resolved.frames is auto.frames and resolved.audit is auto.audit


def test_apply_auto_warmup_leaves_a_fixed_warmup_alone(smoke_runs):
    fixed, _, _ = smoke_runs
    assert apply_auto_warmup(fixed) is fixed


def test_run_many_resolves_auto_per_replication():
    auto = load_scenario(SMOKE, ["horizon=1m", "warmup=auto"])
    results = run_many(auto, 2)
    cuts = [auto_warmup(r.frames, 60.0).cut for r in results]
    assert [r.warmup for r in results] == cuts
    assert all(r.scenario.warmup == c for r, c in zip(results, cuts, strict=True))


def test_summarize_run_reports_the_cut_and_the_station_waits(smoke_runs):
    fixed, _, auto = smoke_runs
    summary = summarize_run(auto, "auto")
    cut = auto_warmup(auto.frames, 120.0)
    assert (summary.label, summary.warmup, summary.warmup_auto) == ("auto", cut.cut, True)
    assert summary.warmup_at_limit is cut.at_limit
    kept = auto.frames["requests"][auto.frames["requests"]["time"] >= cut.cut]
    assert summary.kpis["wait"]["app"] == pytest.approx(kept["app_wait"].mean(), rel=1e-12)
    assert summary.kpis["service"]["app"] == pytest.approx(kept["app_service"].mean(), rel=1e-12)
    assert summary.flat["wait.database"] == pytest.approx(kept["db_wait"].mean(), rel=1e-12)
    assert [row["name"] for row in summary.stations] == list(auto.frames["station_stats"]["name"])
    plain = summarize_run(fixed)
    assert (plain.warmup, plain.warmup_auto, plain.warmup_at_limit) == (30.0, False, False)
    assert plain.kpis["latency"] == fixed.kpis["latency"]


def test_extra_kpis_are_nan_without_requests(smoke_runs):
    fixed, _, _ = smoke_runs
    extra = extra_kpis(fixed.frames, warmup=1e9)
    assert all(math.isnan(v) for v in extra["wait"].values())
    assert math.isnan(extra["service"]["app"])


# --- aggregate mode (metrics.requests: aggregate) -------------------------------------------------

AGGREGATE = ["horizon=2m", "metrics.requests=aggregate", "metrics.interval=10s"]


@pytest.fixture(scope="module")
def aggregate_runs():
    fixed = load_scenario(SMOKE, [*AGGREGATE, "warmup=30s"])
    zero = load_scenario(SMOKE, [*AGGREGATE, "warmup=0"])
    rows = load_scenario(SMOKE, ["horizon=2m", "metrics.interval=10s", "warmup=30s"])
    return run(fixed, 7), run(zero, 7), run(rows, 7)


def test_kpis_after_warmup_from_aggregates(aggregate_runs):
    fixed, zero, _ = aggregate_runs
    assert fixed.frames["requests"].empty
    again = kpis_after_warmup(zero.kpis, zero.frames, warmup=30.0, horizon=120.0, interval=10.0)
    assert _same(again, fixed.kpis)


def test_extra_kpis_from_aggregates_match_rows(aggregate_runs):
    fixed, _, rows = aggregate_runs
    from_aggregates = extra_kpis(fixed.frames, 30.0, interval=10.0)
    from_rows = extra_kpis(rows.frames, 30.0)
    for station in ("app", "database", "cache"):
        assert from_aggregates["wait"][station] == pytest.approx(
            from_rows["wait"][station], rel=1e-9, abs=1e-15
        )
    assert from_aggregates["service"]["app"] == pytest.approx(from_rows["service"]["app"])
    nothing = extra_kpis(fixed.frames, 1e9, interval=10.0)
    assert math.isnan(nothing["wait"]["app"]) and math.isnan(nothing["service"]["app"])


def test_auto_warmup_from_aggregates():
    # 40 intervals of 10 s: 8 slow ones (1 s responses), then fast ones; requests steady.
    starts = np.arange(40) * 10.0
    requests = np.full(40, 100.0)
    response = np.where(starts < 80.0, 1.0, 0.01) * requests
    zeros = np.zeros(40)
    stats = pd.DataFrame(
        {
            "start": np.repeat(starts, 2),
            "page": ["a", "b"] * 40,
            "requests": np.repeat(requests / 2, 2),
            "response_sum": np.repeat(response / 2, 2),
            "app_wait_sum": np.repeat(zeros, 2),
            "app_service_sum": np.repeat(zeros, 2),
            "db_wait_sum": np.repeat(zeros, 2),
            "cache_wait_sum": np.repeat(zeros, 2),
        }
    )
    frames = {"request_stats": stats, "latency_histogram": pd.DataFrame()}
    cut = auto_warmup(frames, horizon=400.0, interval=10.0)
    # 4,000 requests would make 200 bins of 2 s in rows mode: here one 10 s interval per bin,
    # 40 bins in batches of 4 (at least 10 batches): the 8 slow intervals are two batches
    assert (cut.response_cut, cut.throughput_cut, cut.cut) == (80.0, 0.0, 80.0)
    empty = {"request_stats": stats.assign(requests=0.0), "latency_histogram": pd.DataFrame()}
    assert auto_warmup(empty, horizon=400.0, interval=10.0) == WarmupCut(0.0, 0.0, 0.0, False)


def test_summarize_run_with_auto_warmup_from_aggregates():
    auto = load_scenario(SMOKE, [*AGGREGATE, "warmup=auto"])
    result = run(auto, 7)
    summary = summarize_run(result)
    cut = auto_warmup(result.frames, 120.0, 10.0)
    assert summary.warmup == cut.cut and summary.warmup % 10.0 == 0.0
    assert (
        summary.kpis["throughput"]
        == kpis_after_warmup(
            result.kpis, result.frames, warmup=cut.cut, horizon=120.0, interval=10.0
        )["throughput"]
    )


def _rows_and_aggregates(
    times: np.ndarray, response: np.ndarray, interval: float
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Return the frames of the same requests recorded as rows and as aggregates."""
    aggregates = RequestAggregates(interval)
    pages = ["home", "search_results"]
    for i, (time, value) in enumerate(zip(times, response, strict=True)):
        aggregates.append(time, i, None, pages[i % 2], value, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, "ok")
    rows = {"requests": pd.DataFrame({"time": times, "response": response})}
    return rows, aggregates.frames()


def test_auto_warmup_from_aggregates_counts_quiet_intervals_as_zero_throughput():
    # Nothing in the first 20 s, then 10 requests a second: 800 requests, so rows mode has
    # 50 bins of 2 s; intervals of 1 s fit two to a bin, the same bins as the rows.
    times = 20.0 + np.arange(800) * 0.1
    response = np.full(times.size, 0.02)
    rows, aggregates = _rows_and_aggregates(times, response, interval=1.0)
    assert aggregates["request_stats"]["start"].min() == 20.0  # no rows for quiet intervals
    from_rows = auto_warmup(rows, horizon=100.0)
    assert from_rows == WarmupCut(20.0, 20.0, 0.0, False)
    assert auto_warmup(aggregates, horizon=100.0, interval=1.0) == from_rows


def test_auto_warmup_from_aggregates_in_bins_of_whole_intervals():
    # 2,000 requests over 100 s: rows mode's bins are 1 s; the 3 s intervals cannot be split,
    # so a bin is one interval (34, the last one 1 s long, counted at its rate). The first
    # 12 s are slow.
    times = np.arange(2000) * 0.05
    rng = np.random.default_rng(6)
    response = 0.01 + rng.uniform(-0.001, 0.001, times.size)
    response[times < 12.0] = 1.0
    _, aggregates = _rows_and_aggregates(times, response, interval=3.0)
    cut = auto_warmup(aggregates, horizon=100.0, interval=3.0)
    # 34 bins make batches of 3 intervals (at least 10 batches): 12 s is 4 intervals, so the
    # cut is the start of the second batch after them.
    assert cut == WarmupCut(18.0, 0.0, 18.0, False)
    assert interval_cut(cut.cut, 3.0) == cut.cut


def test_auto_warmup_from_a_few_intervals_still_cuts():
    # A 5 min run in 1 min intervals: five bins, MSER with batches of one interval.
    times = np.arange(3000) * 0.1
    response = np.where(times < 60.0, 1.0, 0.01)
    _, aggregates = _rows_and_aggregates(times, response, interval=60.0)
    assert auto_warmup(aggregates, horizon=300.0, interval=60.0) == WarmupCut(
        60.0, 0.0, 60.0, False
    )


ALIGNED = ["horizon=100s", "metrics.interval=1s", "warmup=auto"]
"""Under 1,000 requests in 100 s: rows mode's 50 bins of 2 s hold two whole 1 s intervals."""


def _kpis_match(rows: dict[str, float], aggregates: dict[str, float]) -> list[str]:
    """Return the KPIs that differ: counts exactly, percentiles within the buckets' accuracy."""
    wrong = []
    for key, value in rows.items():
        other = aggregates[key]
        if key.endswith((".count", ".arrivals", ".completions")) or key in ("throughput",):
            same = other == value
        elif key.endswith((".p50", ".p95", ".p99")):
            same = other == pytest.approx(value, rel=RELATIVE_ACCURACY * (1 + 1e-9))
        else:
            same = other == pytest.approx(value, rel=1e-9, abs=1e-15, nan_ok=True)
        if not same:
            wrong.append(f"{key}: rows {value!r}, aggregates {other!r}")
    return wrong


def test_compare_in_aggregate_mode_equals_rows_mode_with_auto_warmup():
    variants = grid_variants(SMOKE, [("metrics.requests", ["rows", "aggregate"])], ALIGNED)
    comparison = compare(variants, 3)
    rows, aggregates = (comparison.summaries[v.label] for v in variants)
    assert [s.warmup for s in aggregates] == [s.warmup for s in rows]
    assert any(s.warmup > 0.0 for s in rows)
    assert all(s.warmup % 1.0 == 0.0 and s.warmup_auto for s in aggregates)
    assert [s.warmup_at_limit for s in aggregates] == [s.warmup_at_limit for s in rows]
    for row, aggregate in zip(rows, aggregates, strict=True):
        assert set(aggregate.flat) == set(row.flat)
        assert _kpis_match(row.flat, aggregate.flat) == []
        assert aggregate.flat["latency.count"] > 0


def test_run_many_in_aggregate_mode_equals_rows_mode_with_auto_warmup():
    rows = run_many(load_scenario(SMOKE, ALIGNED), 2)
    aggregates = run_many(load_scenario(SMOKE, [*ALIGNED, "metrics.requests=aggregate"]), 2)
    assert [r.warmup for r in aggregates] == [r.warmup for r in rows]
    for row, aggregate in zip(rows, aggregates, strict=True):
        wrong = _kpis_match(flatten_numeric(row.kpis), flatten_numeric(aggregate.kpis))
        assert wrong == []
