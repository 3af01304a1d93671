"""Streaming aggregates (``metrics.requests: aggregate``) against the exact values from rows.

One small run (the smoke scenario, warm-up on an interval boundary) is simulated twice, once
per mode; the simulation is the same, only the recording differs. Counts must be equal
exactly, sums and means to float rounding, percentiles within the histograms' 1 %.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.engine.histogram import RELATIVE_ACCURACY, ZERO_BUCKET, buckets_of
from sim.engine.metrics import (
    aggregate_request_kpis,
    aggregate_request_series,
    cache_series,
    histogram_summary,
    interval_cut,
    is_aggregate,
    page_latency_quantiles,
)
from sim.engine.recorder import (
    AGGREGATE_FRAMES,
    LATENCY_HISTOGRAM_COLUMNS,
    REQUEST_COLUMNS,
    REQUEST_OUTCOME_COLUMNS,
    REQUEST_STATS_COLUMNS,
    SESSION_COLUMNS,
    Recorder,
    RequestAggregates,
    SessionTable,
    cache_from_stats,
)
from sim.engine.runner import RunResult, run
from sim.reporting.plots import request_series
from sim.scenario import load_scenario, parse_scenario
from tests.engine._tiny import STATS_OF_ROWS

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
INTERVAL = 30.0
WARMUP = 60.0  # a multiple of the interval: both modes cut at the same time


def _scenario(mode: str, warmup: float = WARMUP):
    data = load_scenario(SMOKE).to_data()
    data.update(warmup=warmup, metrics={"requests": mode, "interval": INTERVAL})
    return parse_scenario(data, f"<smoke, {mode}>")


@pytest.fixture(scope="module")
def runs() -> tuple[RunResult, RunResult]:
    return run(_scenario("rows")), run(_scenario("aggregate"))


def _close(a: float, e: float, rel: float) -> bool:
    return abs(a - e) <= rel * abs(e) + 1e-15


# --- the frames ---------------------------------------------------------------------------------


def test_aggregate_runs_have_no_request_rows_but_their_own_frames(runs):
    rows, agg = runs
    assert not is_aggregate(rows.frames)
    assert is_aggregate(agg.frames)
    assert agg.frames["requests"].empty
    assert list(agg.frames["requests"].columns) == list(REQUEST_COLUMNS)
    assert list(agg.frames["request_stats"].columns) == list(REQUEST_STATS_COLUMNS)
    assert list(agg.frames["latency_histogram"].columns) == list(LATENCY_HISTOGRAM_COLUMNS)
    assert list(agg.frames["request_outcomes"].columns) == list(REQUEST_OUTCOME_COLUMNS)
    assert set(AGGREGATE_FRAMES) <= set(agg.frames)
    # the rest of the run is the same simulation
    for name in ("sessions", "payments", "order_events", "orders", "ledger", "stations"):
        pd.testing.assert_frame_equal(rows.frames[name], agg.frames[name])


def test_counts_and_sums_per_interval_and_page_equal_the_rows(runs):
    rows, agg = runs
    requests = rows.frames["requests"].assign(start=lambda f: (f["time"] // INTERVAL) * INTERVAL)
    exact = requests.groupby(["start", "page"], sort=True).agg(**STATS_OF_ROWS).reset_index()
    stats = agg.frames["request_stats"].assign(page=lambda f: f["page"].astype(str))
    stats = stats.sort_values(["start", "page"]).reset_index(drop=True)
    assert len(stats) == len(exact)
    assert stats["start"].tolist() == exact["start"].tolist()
    assert stats["page"].tolist() == exact["page"].tolist()
    for column in ("requests", "db_queries", "cache_hits", "cache_misses"):
        assert stats[column].tolist() == exact[column].tolist(), column
        assert stats[column].dtype == np.int64
    assert stats["response_max"].tolist() == exact["response_max"].tolist()
    for column in ("response_sum", "app_wait_sum", "app_service_sum", "db_wait_sum"):
        np.testing.assert_allclose(stats[column], exact[column], rtol=1e-12, atol=1e-15)
    assert int(stats["requests"].sum()) == len(requests) == rows.kpis["page_views"]


def test_histogram_counts_equal_the_rows_bucketed(runs):
    rows, agg = runs
    requests = rows.frames["requests"]
    exact = (
        pd.DataFrame(
            {
                "start": (requests["time"] // INTERVAL) * INTERVAL,
                "page": requests["page"].astype(str),
                "bucket": buckets_of(requests["response"].to_numpy()),
            }
        )
        .groupby(["start", "page", "bucket"], sort=True)
        .size()
        .reset_index(name="count")
    )
    histogram = agg.frames["latency_histogram"].assign(page=lambda f: f["page"].astype(str))
    histogram = histogram.sort_values(["start", "page", "bucket"]).reset_index(drop=True)
    assert histogram["count"].tolist() == exact["count"].tolist()
    assert histogram["bucket"].astype(int).tolist() == exact["bucket"].tolist()
    assert histogram["start"].tolist() == exact["start"].tolist()


def test_outcomes_and_sessions_per_page_equal_the_rows(runs):
    rows, agg = runs
    requests = rows.frames["requests"]
    exact = requests.groupby(["page", "outcome"]).size()
    outcomes = agg.frames["request_outcomes"].assign(page=lambda f: f["page"].astype(str))
    counted = outcomes.groupby(["page", "outcome"])["count"].sum()
    assert counted.to_dict() == exact.to_dict()
    sessions = requests.groupby("page")["session"].nunique().to_dict()
    page_sessions = agg.frames["page_sessions"]
    assert dict(zip(page_sessions["page"], page_sessions["sessions"], strict=True)) == sessions


def test_the_cache_frame_from_aggregates_equals_the_one_from_rows(runs):
    rows, agg = runs
    pd.testing.assert_frame_equal(
        cache_from_stats(agg.frames["request_stats"]),
        cache_series(rows.frames["requests"], INTERVAL),
        check_dtype=False,
    )


# --- the KPIs -----------------------------------------------------------------------------------


def _summaries(kpis):
    yield "latency", kpis["latency"]
    yield "checkout_latency", kpis["checkout_latency"]
    yield from kpis["latency_by_page"].items()


def test_kpis_counts_exact_means_to_rounding_percentiles_within_one_percent(runs):
    rows, agg = runs
    exact, approx = rows.kpis, agg.kpis
    assert approx["page_views"] == exact["page_views"]
    assert approx["throughput"] == pytest.approx(exact["throughput"], rel=1e-12)
    assert approx["cache_hit_rate"] == pytest.approx(exact["cache_hit_rate"], rel=1e-12)
    assert approx["latency_by_page"].keys() == exact["latency_by_page"].keys()
    checked = 0
    for (name, e), (_, a) in zip(_summaries(exact), _summaries(approx), strict=True):
        assert a["count"] == e["count"], name
        assert a["mean"] == pytest.approx(e["mean"], rel=1e-9), name
        for p in ("p50", "p95", "p99"):
            assert _close(a[p], e[p], RELATIVE_ACCURACY * (1 + 1e-9)), (name, p, a[p], e[p])
            checked += 1
    assert checked >= 40
    # every other KPI is the same simulation's
    for key in ("sessions", "conversion", "orders_paid", "revenue_cents", "utilisation"):
        assert approx[key] == exact[key]


def test_percentile_series_per_interval_within_one_percent(runs):
    rows, agg = runs
    horizon = rows.scenario.horizon
    exact = request_series(rows.frames["requests"], INTERVAL, horizon)
    approx = aggregate_request_series(
        agg.frames["request_stats"], agg.frames["latency_histogram"], INTERVAL, horizon
    )
    assert list(approx.columns) == list(exact.columns)
    assert approx["requests"].tolist() == exact["requests"].tolist()
    assert approx["start"].tolist() == exact["start"].tolist()
    np.testing.assert_allclose(approx["throughput"], exact["throughput"], rtol=1e-12)
    for p in ("p50", "p95", "p99"):
        for a, e in zip(approx[p], exact[p], strict=True):
            assert (math.isnan(a) and math.isnan(e)) or _close(a, e, RELATIVE_ACCURACY + 1e-9)


def test_a_warmup_between_interval_boundaries_is_rounded_up_to_the_next_interval():
    assert interval_cut(0.0, 60.0) == 0.0
    assert interval_cut(60.0, 60.0) == 60.0
    assert interval_cut(61.0, 60.0) == 120.0
    assert interval_cut(0.3, 0.1) == pytest.approx(0.3)
    agg = run(_scenario("aggregate", warmup=45.0))
    requests = run(_scenario("rows", warmup=45.0)).frames["requests"]
    kept = requests[requests["time"] >= 60.0]  # the cut: 45 s rounded up to 2 x 30 s
    horizon = agg.scenario.horizon
    assert agg.kpis["latency"]["count"] == len(kept)
    assert agg.kpis["throughput"] == pytest.approx(len(kept) / (horizon - 60.0), rel=1e-12)


def test_histogram_summary_and_page_quantiles_handle_empty_input():
    empty = histogram_summary(np.zeros(0), np.zeros(0), 0.0)
    assert empty["count"] == 0
    assert all(math.isnan(empty[k]) for k in ("mean", "p50", "p95", "p99"))
    frame = pd.DataFrame({name: [] for name in LATENCY_HISTOGRAM_COLUMNS})
    assert page_latency_quantiles(frame).empty
    stats = pd.DataFrame({name: [] for name in REQUEST_STATS_COLUMNS})
    assert aggregate_request_series(stats, frame, 60.0).empty
    series = aggregate_request_series(stats, frame, 60.0, horizon=150.0)
    assert series["requests"].tolist() == [0, 0, 0]
    assert series["length"].tolist() == [60.0, 60.0, 30.0]
    assert series["p95"].isna().all()
    with pytest.raises(ValueError, match="interval must be > 0"):
        aggregate_request_series(stats, frame, 0.0)


def test_page_quantiles_leave_out_zero_responses_and_match_the_buckets(runs):
    _, agg = runs
    quantiles = page_latency_quantiles(agg.frames["latency_histogram"])
    assert list(quantiles.columns) == ["page", "count", "p5", "p25", "p50", "p75", "p95"]
    assert (quantiles["p5"] <= quantiles["p50"]).all()
    assert (quantiles["p50"] <= quantiles["p95"]).all()
    histogram = agg.frames["latency_histogram"]
    positive = histogram[histogram["bucket"] > ZERO_BUCKET]
    assert int(quantiles["count"].sum()) == int(positive["count"].sum())


def test_aggregate_kpis_without_a_checkout_page_report_nan_checkout_latency():
    stats = pd.DataFrame(
        [[0.0, "home", 2, 0.3, 0.2, 0.0, 0.1, 0.0, 0, 0.0, 3, 1]],
        columns=list(REQUEST_STATS_COLUMNS),
    )
    histogram = pd.DataFrame(
        {
            "start": [0.0],
            "page": ["home"],
            "bucket": [int(buckets_of(np.array([0.15]))[0])],
            "count": [2],
        }
    )
    frames = {"request_stats": stats, "latency_histogram": histogram}
    kpis = aggregate_request_kpis(frames, warmup=0.0, horizon=60.0, interval=60.0)
    assert kpis["page_views"] == 2
    assert kpis["latency"]["count"] == 2
    assert kpis["latency"]["mean"] == pytest.approx(0.15)
    assert kpis["checkout_latency"]["count"] == 0
    assert math.isnan(kpis["checkout_latency"]["p95"])
    assert kpis["cache_hit_rate"] == 0.75


# --- the aggregator itself ----------------------------------------------------------------------


def _row(time: float, page: str, response: float, session: int = 1, outcome: str = "ok"):
    return (time, session, None, page, response, 0.001, 0.01, 0.002, 1, 0.0005, 2, 1, outcome)


def test_late_requests_of_a_folded_interval_are_added_to_it():
    agg = RequestAggregates(10.0)
    agg.append(*_row(1.0, "home", 0.1))
    agg.append(*_row(55.0, "home", 0.2))  # folds interval 0
    agg.append(*_row(2.0, "home", 0.3, outcome="late"))  # a slow request of interval 0
    agg.append(*_row(56.0, "cart", 0.4, session=2))
    assert len(agg) == 4
    assert agg.pages == ("home", "cart")
    frames = agg.frames()
    stats = frames["request_stats"]
    assert stats["start"].tolist() == [0.0, 50.0, 50.0]
    assert stats["page"].astype(str).tolist() == ["home", "cart", "home"]
    assert stats["requests"].tolist() == [2, 1, 1]
    assert stats["response_sum"].tolist() == pytest.approx([0.4, 0.4, 0.2])
    assert stats["response_max"].tolist() == [0.3, 0.4, 0.2]
    assert stats["cache_hits"].tolist() == [4, 2, 2]
    outcomes = frames["request_outcomes"]
    assert outcomes[["start", "outcome", "count"]].values.tolist() == [
        [0.0, "late", 1],
        [0.0, "ok", 1],
        [50.0, "ok", 1],
        [50.0, "ok", 1],
    ]
    assert frames["latency_histogram"]["count"].sum() == 4


def test_the_latency_histogram_sums_a_reopened_interval_and_sorts_pages_by_name():
    agg = RequestAggregates(10.0)
    agg.append(*_row(1.0, "zoo", 0.1))  # "zoo" gets code 0, "ant" code 1: names sort the other way
    agg.append(*_row(3.0, "ant", 0.1))
    agg.append(*_row(55.0, "zoo", 0.2))  # folds interval 0
    agg.append(*_row(2.0, "zoo", 0.1))  # the same bucket of interval 0, in a second chunk
    agg.append(*_row(4.0, "ant", 0.3, outcome="late"))
    bucket = int(buckets_of(np.array([0.1, 0.2, 0.3]))[0])
    b2, b3 = (int(b) for b in buckets_of(np.array([0.2, 0.3])))
    histogram = agg.frames()["latency_histogram"]
    assert histogram.assign(page=histogram["page"].astype(str)).values.tolist() == [
        [0.0, "ant", bucket, 1],
        [0.0, "ant", b3, 1],
        [0.0, "zoo", bucket, 2],
        [50.0, "zoo", b2, 1],
    ]
    assert histogram["bucket"].dtype == np.int16 and histogram["count"].dtype == np.int64
    outcomes = agg.frames()["request_outcomes"]
    assert outcomes.assign(page=outcomes["page"].astype(str)).values.tolist() == [
        [0.0, "ant", "late", 1],
        [0.0, "ant", "ok", 1],
        [0.0, "zoo", "ok", 2],
        [50.0, "zoo", "ok", 1],
    ]


def test_sessions_count_each_page_once_when_they_end():
    recorder = Recorder("aggregate", 60.0)
    assert isinstance(recorder.sessions, SessionTable)
    for page in ("home", "search", "home"):
        recorder.requests.append(*_row(1.0, page, 0.1, session=7))
    recorder.requests.append(*_row(2.0, "home", 0.1, session=8))
    recorder.sessions.append(7, None, 0.0, 5.0, 3, False, 0, "exit")
    recorder.sessions.append(8, None, 0.0, 5.0, 1, False, 0, "in_flight")
    recorder.sessions.append(9, None, 0.0, 5.0, 0, False, 0, "in_flight")  # no requests
    frames = recorder.frames()
    page_sessions = frames["page_sessions"]
    assert dict(zip(page_sessions["page"], page_sessions["sessions"], strict=True)) == {
        "home": 2,
        "search": 1,
    }
    assert frames["sessions"]["session"].tolist() == [7, 8, 9]
    assert list(frames["sessions"].columns) == list(SESSION_COLUMNS)
    assert frames["cache"]["hits"].tolist() == [8]
    assert frames["cache"]["hit_rate"].tolist() == [pytest.approx(8 / 12)]


def test_memory_of_a_folded_interval_does_not_grow_with_its_requests():
    rng = np.random.default_rng(3)
    values = rng.lognormal(np.log(0.02), 0.5, 500)

    def folded_bytes(repeat: int) -> int:
        agg = RequestAggregates(60.0)
        for _ in range(repeat):
            for v in values:
                agg.append(*_row(1.0, "home", float(v)))
        agg.append(*_row(500.0, "home", 0.1))  # folds interval 0
        return agg.nbytes() - 10 * 8  # less the one buffered request of the open interval

    assert folded_bytes(20) == folded_bytes(1)


def test_an_empty_aggregate_recorder_has_empty_frames():
    frames = Recorder("aggregate", 60.0).frames()
    for name in (*AGGREGATE_FRAMES, "cache", "requests"):
        assert frames[name].empty, name
    assert list(frames["request_stats"].columns) == list(REQUEST_STATS_COLUMNS)


def test_bad_modes_and_intervals_are_refused():
    with pytest.raises(ValueError, match="requests must be one of"):
        Recorder("sampled")
    with pytest.raises(ValueError, match="interval must be > 0"):
        RequestAggregates(0.0)


# --- the report of an aggregate run -------------------------------------------------------------


def test_an_aggregate_run_writes_and_rebuilds_its_report(runs, tmp_path):
    from sim.reporting.report import AGGREGATE_FRAME_NAMES, rebuild_report, write_run_report

    _, agg = runs
    files = write_run_report([agg], tmp_path)
    names = {p.name for p in files.csvs}
    assert {f"{n}.csv" for n in AGGREGATE_FRAME_NAMES} <= names
    assert all(p.is_file() for p in files.csvs + files.pngs)
    series = pd.read_csv(tmp_path / "request_series.csv")
    assert series["requests"].sum() == agg.kpis["page_views"]
    funnel = pd.read_csv(tmp_path / "funnel.csv")
    visited = dict(
        zip(
            agg.frames["page_sessions"]["page"],
            agg.frames["page_sessions"]["sessions"],
            strict=True,
        )
    )
    assert funnel["count"].tolist()[1] == visited["product_detail"]
    cache = pd.read_csv(tmp_path / "cache.csv")
    assert cache["hits"].sum() == agg.frames["request_stats"]["cache_hits"].sum()
    assert "streaming aggregates" in files.html.read_text(encoding="utf-8")
    rebuilt = rebuild_report(tmp_path)
    assert {p.name for p in rebuilt.pngs} == {p.name for p in files.pngs}


def test_tallies_of_far_intervals_and_many_pages_do_not_overflow():
    from sim.engine.recorder import _BUCKET_SPAN, _ranks, _tally

    far = 2**45  # a 1 us interval a year into a run
    pages = [f"p{i:03d}" for i in range(1000)][::-1]  # codes in reverse name order
    ks = np.array([far + 1, far, far + 1, far], dtype=np.int64)
    keys = np.array([999 * _BUCKET_SPAN + 7, 0 * _BUCKET_SPAN + 5, 999 * _BUCKET_SPAN + 7, 3])
    k, major, minor, counts = _tally(ks, keys, np.array([1, 2, 3, 4]), _BUCKET_SPAN, _ranks(pages))
    # page code 0 is "p999" (rank 999), code 999 is "p000" (rank 0)
    assert k.tolist() == [far, far, far + 1]
    assert major.tolist() == [999, 999, 0]
    assert minor.tolist() == [3, 5, 7]
    assert counts.tolist() == [4, 2, 4]
