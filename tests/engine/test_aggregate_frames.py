"""Aggregate-mode frames and their readers against straightforward pandas references.

``RequestAggregates.frames()`` sums and sorts a batch of intervals at a time, and the KPI,
series and box-plot readers pool the latency histogram a block of rows at a time, so that
neither holds full-length copies of the histogram. Here they must give exactly what a plain
pandas filter / groupby / sort over the same data gives (the way they were once computed),
whatever the batch size, with late requests reopening intervals already folded, pages and
outcomes first seen out of name order; and their memory must stay close to the result's.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine import recorder
from sim.engine.histogram import ZERO_BUCKET, buckets_of, quantiles_from_buckets
from sim.engine.metrics import (
    BOX_PERCENTILES,
    PERCENTILES,
    aggregate_request_kpis,
    aggregate_request_series,
    histogram_summary,
    interval_cut,
    page_latency_quantiles,
)
from sim.engine.recorder import (
    LATENCY_HISTOGRAM_COLUMNS,
    REQUEST_COLUMNS,
    REQUEST_STATS_COLUMNS,
    RequestAggregates,
)
from sim.engine.runner import run
from sim.scenario import load_scenario, parse_scenario
from tests.engine._tiny import STATS_OF_ROWS

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"
# Names whose order of first request (the recorder's codes) is not their sorted order.
PAGES = ("search", "home", "zoo", "buy_confirm", "cart", "alpha", "product_detail", "best")
OUTCOMES = ("ok", "timeout", "declined", "error")
RESPONSES = (0.0, 1e-4, 0.003, 0.02, 0.0201, 0.35, 2.0, 61.5)
SUMS = ("response_sum", "app_wait_sum", "app_service_sum", "db_wait_sum", "cache_wait_sum")


# --- a stream of requests and the frames a plain groupby makes of it ----------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[float, list[tuple[Any, ...]]]:
    """Draw an interval and request rows in order of completion, some of them late."""
    interval = draw(st.sampled_from([0.5, 1.0, 60.0]))
    clock, rows = 0.0, []
    for _ in range(draw(st.integers(0, 80))):
        clock += draw(st.sampled_from([0.0, 0.1, 0.7, 1.0, 3.0, 12.0])) * interval
        # A request 2.5 or more intervals late falls in an interval already folded.
        lag = draw(st.sampled_from([0.0, 0.0, 0.0, 0.6, 2.5, 6.0])) * interval
        fields = draw(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
        rows.append(
            (
                max(clock - lag, 0.0),
                draw(st.integers(0, 9)),  # session
                None,
                draw(st.sampled_from(PAGES)),
                draw(st.sampled_from(RESPONSES)),
                *fields[:3],
                draw(st.integers(0, 4)),
                fields[3] / 1000,
                draw(st.integers(0, 3)),
                draw(st.integers(0, 3)),
                draw(st.sampled_from(OUTCOMES)),
            )
        )
    return interval, rows


def _aggregates(
    interval: float, rows: list[tuple[Any, ...]], per_window: int = 1
) -> RequestAggregates:
    aggregates = RequestAggregates(interval, per_window)
    for row in rows:
        aggregates.append(*row)
    for session in range(10):
        aggregates.end_session(session)
    return aggregates


def _reference_frames(interval: float, rows: list[tuple[Any, ...]]) -> dict[str, pd.DataFrame]:
    """Return the aggregate frames computed from the rows by plain pandas groupbys."""
    raw = pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))
    raw["page"] = raw["page"].astype(object)
    raw["start"] = (raw["time"] // interval) * interval
    raw["bucket"] = buckets_of(raw["response"].to_numpy())
    stats = raw.groupby(["start", "page"], sort=True).agg(**STATS_OF_ROWS).reset_index()
    histogram = raw.groupby(["start", "page", "bucket"]).size().reset_index(name="count")
    outcomes = raw.groupby(["start", "page", "outcome"]).size().reset_index(name="count")
    sessions = raw.groupby("page")["session"].nunique().reset_index(name="sessions")
    return {
        "request_stats": stats,
        "latency_histogram": histogram,
        "request_outcomes": outcomes,
        "page_sessions": sessions,
    }


def _stats_as_one_groupby(aggregates: RequestAggregates) -> pd.DataFrame:
    """Return request_stats as one pandas groupby over every folded chunk, in fold order."""
    chunks = aggregates._chunks
    stats = np.concatenate([chunk.stats for chunk in chunks])
    raw = pd.DataFrame(stats[:, 1:], columns=list(recorder._STATS_FIELDS))
    raw["k"] = np.concatenate([np.full(len(chunk.stats), chunk.k) for chunk in chunks])
    raw["code"] = stats[:, 0].astype(np.int64)
    how = {name: "max" if name == "response_max" else "sum" for name in recorder._STATS_FIELDS}
    summed = raw.groupby(["k", "code"], sort=True).agg(how).reset_index()
    for name in ("requests", "db_queries", "cache_hits", "cache_misses"):
        summed[name] = summed[name].round().astype(np.int64)
    summed["start"] = summed["k"].to_numpy(dtype=float) * aggregates.interval
    pages = pd.CategoricalDtype(sorted(aggregates.pages))
    summed["page"] = pd.Categorical(
        np.array(aggregates.pages, dtype=object)[summed["code"]], dtype=pages
    )
    summed = summed.sort_values(["start", "page"], kind="stable").reset_index(drop=True)
    return summed[list(REQUEST_STATS_COLUMNS)]


def _as_names(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(page=frame["page"].astype(object))


@settings(max_examples=100, deadline=None)
@given(streams())
def test_frames_equal_plain_groupbys_of_the_requests(stream):
    interval, rows = stream
    frames = _aggregates(interval, rows).frames()
    if not rows:
        assert all(frame.empty for frame in frames.values())
        return
    expected = _reference_frames(interval, rows)
    stats = frames["request_stats"]
    reference = expected["request_stats"]
    assert stats["start"].tolist() == reference["start"].tolist()
    assert stats["page"].astype(object).tolist() == reference["page"].tolist()
    for name in ("requests", "db_queries", "cache_hits", "cache_misses", "response_max"):
        assert stats[name].tolist() == reference[name].tolist(), name
    for name in SUMS:  # summed in another order: equal to rounding
        np.testing.assert_allclose(stats[name], reference[name], rtol=1e-12, atol=1e-15)
    for name in ("latency_histogram", "request_outcomes", "page_sessions"):
        pd.testing.assert_frame_equal(
            _as_names(frames[name]), expected[name], check_dtype=False, check_exact=True
        )


@settings(max_examples=100, deadline=None)
@given(streams())
def test_frames_keep_their_dtypes_and_the_exact_sums_of_one_groupby(stream):
    interval, rows = stream
    aggregates = _aggregates(interval, rows)
    frames = aggregates.frames()
    if rows:
        pd.testing.assert_frame_equal(
            frames["request_stats"], _stats_as_one_groupby(aggregates), check_exact=True
        )
    pages = pd.CategoricalDtype(sorted({row[3] for row in rows}))
    histogram = frames["latency_histogram"]
    assert list(histogram.columns) == list(LATENCY_HISTOGRAM_COLUMNS)
    assert list(histogram.dtypes) == [np.dtype(float), pages, np.dtype(np.int16), np.int64]
    assert frames["request_outcomes"]["page"].dtype == pages
    assert frames["request_outcomes"]["count"].dtype == np.int64
    assert frames["request_stats"]["page"].dtype == pages


@settings(max_examples=100, deadline=None)
@given(streams(), st.sampled_from([1, 2, 5]))
def test_frames_do_not_depend_on_the_batch_size(stream, batch_rows):
    interval, rows = stream
    whole = _aggregates(interval, rows).frames()
    with mock.patch.object(recorder, "_BATCH_ROWS", batch_rows):
        batched = _aggregates(interval, rows).frames()
    for name, frame in whole.items():
        pd.testing.assert_frame_equal(batched[name], frame, check_exact=True, obj=name)


@settings(max_examples=100, deadline=None)
@given(streams(), st.sampled_from([2, 3, 7]), st.sampled_from([1, 2, 5, 1 << 13]))
def test_histogram_windows_sum_the_histograms_of_their_intervals(stream, per_window, batch_rows):
    interval, rows = stream
    by_interval = _aggregates(interval, rows).frames()
    with mock.patch.object(recorder, "_BATCH_ROWS", batch_rows):
        windowed = _aggregates(interval, rows, per_window).frames()
    for name in ("request_stats", "request_outcomes", "page_sessions"):  # per interval still
        pd.testing.assert_frame_equal(windowed[name], by_interval[name], check_exact=True)
    histogram = by_interval["latency_histogram"]
    k = np.round(histogram["start"].to_numpy() / interval).astype(np.int64)
    expected = (
        histogram.assign(start=((k // per_window) * per_window) * interval)
        .groupby(["start", "page", "bucket"], observed=True, sort=True)["count"]
        .sum()
        .reset_index()
    )
    actual = windowed["latency_histogram"]
    assert list(actual.dtypes) == list(histogram.dtypes)
    pd.testing.assert_frame_equal(_as_names(actual), _as_names(expected), check_exact=True)


def test_a_window_keeps_one_merged_histogram_as_its_intervals_fold():
    steady = RequestAggregates(1.0, per_window=4)
    for i in range(48):  # 12 windows of 4 one-second intervals, a request every 0.25 s
        for j in range(4):
            steady.append(*_row(i + j / 4, "home", 0.0))
    # 46 intervals folded (the latest two stay open): windows 0-10 whole, 11 half merged.
    assert [window.k for window in steady._windows] == list(range(12))
    assert len(steady._chunks) == 46
    frames = steady.frames()
    assert frames["latency_histogram"]["start"].tolist() == [4.0 * w for w in range(12)]
    assert frames["latency_histogram"]["count"].tolist() == [16] * 12
    assert frames["request_stats"]["requests"].tolist() == [4] * 48
    # A late request for a window already merged is kept apart and summed at the end.
    late = RequestAggregates(1.0, per_window=4)
    for time in (0.5, 1.5, 5.5, 6.5, 9.5, 2.5, 12.5):  # 2.5 reopens interval 2 of window 0
        late.append(*_row(time, "home", 0.0))
    assert [window.k for window in late._windows] == [0, 1, 2, 0]  # 9 then 2 fold at 12.5
    assert late.frames()["latency_histogram"]["count"].tolist() == [3, 2, 1, 1]


def test_aggregates_refuse_a_window_of_no_intervals():
    with pytest.raises(ValueError, match="per_window must be >= 1, got 0"):
        RequestAggregates(60.0, per_window=0)


def _row(time: float, page: str, app_wait: float) -> tuple[Any, ...]:
    return (time, 1, None, page, 0.1, app_wait, 0.0, 0.0, 1, 0.0, 0, 0, "ok")


def test_a_page_reopened_twice_keeps_the_sum_of_the_one_groupby():
    # Three chunks of interval 0, each with a row of "home", folded between chunks of later
    # intervals: a sum of three values whose last bit depends on how pandas sums them (it
    # takes another method when the rows it sees come sorted, as one interval's would).
    aggregates = RequestAggregates(1.0)
    values = (0.6397901753642542, 0.9009079204767069, 0.4478975916117798)
    aggregates.append(*_row(0.5, "home", values[0]))
    aggregates.append(*_row(10.5, "home", 0.25))  # folds interval 0
    aggregates.append(*_row(0.5, "home", values[1]))  # reopens it
    aggregates.append(*_row(11.5, "home", 0.25))  # folds it again
    aggregates.append(*_row(0.5, "home", values[2]))  # reopens it again
    aggregates.append(*_row(20.5, "home", 0.25))  # folds 10, 11 and 0
    frames = aggregates.frames()
    assert [chunk.k for chunk in aggregates._chunks] == [0, 0, 10, 11, 0, 20]
    stats = frames["request_stats"]
    assert stats["start"].tolist() == [0.0, 10.0, 11.0, 20.0]
    assert stats["requests"].tolist() == [3, 1, 1, 1]
    assert stats["app_wait_sum"][0] == pytest.approx(sum(values), rel=1e-15)
    pd.testing.assert_frame_equal(stats, _stats_as_one_groupby(aggregates), check_exact=True)
    assert frames["latency_histogram"]["count"].tolist() == [3, 1, 1, 1]


def test_the_frames_of_no_requests_are_empty_with_their_dtypes():
    frames = RequestAggregates(60.0).frames()
    histogram = frames["latency_histogram"]
    assert histogram.empty and list(histogram.columns) == list(LATENCY_HISTOGRAM_COLUMNS)
    assert [str(t) for t in histogram.dtypes] == ["float64", "category", "int16", "int64"]
    assert frames["request_stats"]["requests"].dtype == np.int64


# --- the readers of the latency histogram against plain filters and groupbys --------------------


def _reference_kpis(frames: dict[str, pd.DataFrame], cut: float) -> dict[str, Any]:
    stats, histogram = frames["request_stats"], frames["latency_histogram"]
    kept, kept_hist = stats[stats["start"] >= cut], histogram[histogram["start"] >= cut]
    sums = kept.groupby("page", observed=True, sort=True)["response_sum"].sum()
    by_page = {
        str(page): histogram_summary(
            rows["bucket"].to_numpy(), rows["count"].to_numpy(), float(sums.get(page, 0.0))
        )
        for page, rows in kept_hist.groupby("page", observed=True, sort=True)
    }
    overall = histogram_summary(
        kept_hist["bucket"].to_numpy(),
        kept_hist["count"].to_numpy(),
        float(kept["response_sum"].sum()),
    )
    return {"latency": overall, "latency_by_page": by_page}


def _pooled(buckets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(np.asarray(buckets, dtype=np.int64), return_inverse=True)
    return unique, np.bincount(inverse, weights=counts).astype(np.int64)


def _reference_page_quantiles(histogram: pd.DataFrame) -> pd.DataFrame:
    rows = []
    positive = histogram[histogram["bucket"] > ZERO_BUCKET]
    for page, group in positive.groupby("page", observed=True, sort=True):
        unique, pooled = _pooled(group["bucket"].to_numpy(), group["count"].to_numpy())
        qs = [p / 100.0 for p in BOX_PERCENTILES]
        rows.append([str(page), int(pooled.sum()), *quantiles_from_buckets(unique, pooled, qs)])
    return pd.DataFrame(rows, columns=["page", "count", *[f"p{p}" for p in BOX_PERCENTILES]])


def _reference_series_quantiles(histogram: pd.DataFrame, interval: float, count: int):
    quantiles = np.full((count, len(PERCENTILES)), np.nan)
    index = np.round(histogram["start"].to_numpy(dtype=float) / interval).astype(np.int64)
    grouped = histogram.assign(i=np.clip(index, 0, count - 1)).groupby("i")
    for i, rows in grouped:
        unique, pooled = _pooled(rows["bucket"].to_numpy(), rows["count"].to_numpy())
        qs = [p / 100.0 for p in PERCENTILES]
        quantiles[int(i)] = quantiles_from_buckets(unique, pooled, qs)
    return quantiles


def _same(actual: Any, expected: Any) -> bool:
    """Return True when two results are equal, NaN equal to NaN, key order included."""
    if isinstance(expected, dict):
        return list(actual) == list(expected) and all(
            _same(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return type(actual) is type(expected) and actual == expected


NAMES = ("q", "home", "b", "zed", "a")


@st.composite
def histograms(draw: st.DrawFn) -> pd.DataFrame:
    """Draw a latency histogram frame: any row order, zero counts, a missing page or two."""
    size = draw(st.integers(0, 40))
    pages = draw(st.lists(st.sampled_from([*NAMES, None]), min_size=size, max_size=size))
    frame = pd.DataFrame(
        {
            "start": [
                30.0 * k for k in draw(st.lists(st.integers(0, 7), min_size=size, max_size=size))
            ],
            "page": pd.Series(pages, dtype=object),
            "bucket": draw(
                st.lists(
                    st.sampled_from([ZERO_BUCKET, -200, -150, -149, -3, 0, 40]),
                    min_size=size,
                    max_size=size,
                )
            ),
            "count": draw(st.lists(st.integers(0, 4), min_size=size, max_size=size)),
        }
    )
    if draw(st.booleans()):  # as RequestAggregates.frames() makes it
        frame["page"] = pd.Categorical(pages, categories=sorted(NAMES))
        frame["bucket"] = frame["bucket"].astype(np.int16)
    if draw(st.booleans()):
        frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
    return frame


def _stats_for(pages: tuple[str, ...]) -> pd.DataFrame:
    starts = np.repeat(np.arange(8) * 30.0, len(pages))
    rng = np.random.default_rng(4)
    return pd.DataFrame(
        {
            "start": starts,
            "page": list(pages) * 8,
            "requests": rng.integers(0, 9, starts.size),
            "response_sum": rng.random(starts.size),
            "cache_hits": rng.integers(0, 3, starts.size),
            "cache_misses": rng.integers(0, 3, starts.size),
        }
    )


@settings(max_examples=200, deadline=None)
@given(histograms(), st.sampled_from([0.0, 30.0, 45.0, 400.0]))
def test_request_kpis_equal_a_filter_and_groupby_of_the_histogram(histogram, warmup):
    frames = {"request_stats": _stats_for(NAMES), "latency_histogram": histogram}
    kpis = aggregate_request_kpis(frames, warmup=warmup, horizon=250.0, interval=30.0)
    expected = _reference_kpis(frames, interval_cut(warmup, 30.0))
    assert _same(kpis["latency"], expected["latency"])
    assert _same(kpis["latency_by_page"], expected["latency_by_page"])


@settings(max_examples=200, deadline=None)
@given(histograms())
def test_page_quantiles_and_the_series_equal_groupbys_of_the_histogram(histogram):
    pd.testing.assert_frame_equal(
        page_latency_quantiles(histogram), _reference_page_quantiles(histogram), check_exact=True
    )
    for horizon in (None, 250.0, 100.0):
        series = aggregate_request_series(_stats_for(NAMES), histogram, 30.0, horizon)
        expected = _reference_series_quantiles(histogram, 30.0, len(series))
        np.testing.assert_array_equal(series[["p50", "p95", "p99"]].to_numpy(), expected)


@settings(max_examples=100, deadline=None)
@given(histograms(), st.sampled_from([2, 3]))
def test_each_interval_of_the_series_has_the_percentiles_of_its_window(histogram, per_window):
    # The histogram's rows are at window starts: multiples of per_window intervals.
    window_rows = histogram.assign(
        start=(histogram["start"] // (30.0 * per_window)) * (30.0 * per_window)
    )
    for horizon in (None, 250.0):
        series = aggregate_request_series(_stats_for(NAMES), window_rows, 30.0, horizon, per_window)
        by_window = _reference_series_quantiles(window_rows, 30.0, len(series))
        first_of_window = (np.arange(len(series)) // per_window) * per_window
        np.testing.assert_array_equal(
            series[["p50", "p95", "p99"]].to_numpy(), by_window[first_of_window]
        )
        assert (
            series["requests"].tolist()
            == aggregate_request_series(_stats_for(NAMES), window_rows, 30.0, horizon)[
                "requests"
            ].tolist()
        )  # counts stay per interval


def _smoke(mode: str):
    data = load_scenario(SMOKE).to_data()
    data.update(warmup=60.0, metrics={"requests": mode, "interval": 30.0})
    return run(parse_scenario(data, f"<smoke, {mode}>"))


def test_the_kpis_of_an_aggregate_run_equal_the_plain_groupbys_of_its_frames():
    result = _smoke("aggregate")
    frames, kpis = result.frames, result.kpis
    expected = _reference_kpis(frames, 60.0)
    assert _same(kpis["latency"], expected["latency"])
    assert _same(kpis["latency_by_page"], expected["latency_by_page"])
    assert kpis["latency"]["count"] == _smoke("rows").kpis["latency"]["count"] > 0
    histogram = frames["latency_histogram"]
    pd.testing.assert_frame_equal(
        page_latency_quantiles(histogram), _reference_page_quantiles(histogram), check_exact=True
    )
    series = aggregate_request_series(frames["request_stats"], histogram, 30.0, 300.0)
    expected_series = _reference_series_quantiles(histogram, 30.0, len(series))
    np.testing.assert_array_equal(series[["p50", "p95", "p99"]].to_numpy(), expected_series)


def test_a_run_with_wider_histogram_windows_pools_the_windows_after_the_warm_up():
    # 150 intervals of 2 s: auto makes windows of 2 intervals (4 s). The warm-up of 61 s is
    # cut at 62 s for counts and sums, and the percentiles pool the windows from 64 s on.
    data = load_scenario(SMOKE).to_data()
    data.update(warmup=61.0, metrics={"requests": "aggregate", "interval": 2.0})
    result = run(parse_scenario(data, "<smoke, 4 s windows>"))
    frames, kpis = result.frames, result.kpis
    starts = np.unique(frames["latency_histogram"]["start"])
    assert starts.tolist() == [4.0 * w for w in range(75)]
    assert np.unique(frames["request_stats"]["start"]).tolist() == [2.0 * k for k in range(150)]
    expected = _reference_kpis(frames, 62.0)
    assert _same(kpis["latency"], expected["latency"])
    assert _same(kpis["latency_by_page"], expected["latency_by_page"])
    rows = run(parse_scenario({**data, "metrics": {"requests": "rows"}}, "<smoke, rows>"))
    requests = rows.frames["requests"]
    assert kpis["latency"]["count"] == int((requests["time"] >= 64.0).sum()) > 0
    kept = frames["request_stats"][frames["request_stats"]["start"] >= 62.0]
    assert kpis["throughput"] == int(kept["requests"].sum()) / (300.0 - 62.0)
    assert int(kept["requests"].sum()) == int((requests["time"] >= 62.0).sum())


# --- memory: close to the result's size, whatever the number of rows ----------------------------


def _long_run(intervals: int = 200, per_interval: int = 1000) -> RequestAggregates:
    """Return the aggregates of a long run: about 100,000 histogram rows."""
    rng = np.random.default_rng(7)
    aggregates = RequestAggregates(60.0)
    size = intervals * per_interval
    times = np.sort(rng.uniform(0.0, 60.0 * intervals, size)).tolist()
    pages = rng.integers(0, 14, size).tolist()
    responses = rng.lognormal(np.log(0.05), 1.0, size).tolist()
    for time, page, response in zip(times, pages, responses, strict=True):
        aggregates.append(
            time, 1, None, f"p{page:02d}", response, 0.001, 0.01, 0.002, 1, 0.0, 1, 0, "ok"
        )
    return aggregates


def _peak_and_kept(call: Callable[[], Any]) -> tuple[Any, int, int]:
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = call()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - start, kept - start


MIB = 1 << 20


@pytest.fixture(scope="module")
def long_run() -> tuple[dict[str, pd.DataFrame], int, int]:
    aggregates = _long_run()
    aggregates._fold_all()  # folded before measuring, as at the end of a run
    return _peak_and_kept(aggregates.frames)


@pytest.fixture(scope="module")
def long_frames(long_run) -> dict[str, pd.DataFrame]:
    return long_run[0]


def test_frames_of_a_long_run_peak_close_to_their_own_size(long_run):
    frames, peak, kept = long_run
    assert len(frames["latency_histogram"]) > 80_000
    # Summed and sorted whole, the histogram needed about four times the frames' size.
    assert peak <= 1.25 * kept + 1 * MIB, (peak / MIB, kept / MIB)


@pytest.mark.parametrize("reader", ["kpis", "kpis after a warm-up", "page quantiles", "series"])
def test_readers_of_a_long_histogram_hold_no_copy_of_it(long_frames, reader):
    stats, histogram = long_frames["request_stats"], long_frames["latency_histogram"]
    size = histogram.memory_usage(deep=True).sum()
    calls = {
        "kpis": lambda: aggregate_request_kpis(
            long_frames, warmup=0.0, horizon=12000.0, interval=60.0
        ),
        "kpis after a warm-up": lambda: aggregate_request_kpis(
            long_frames, warmup=3000.0, horizon=12000.0, interval=60.0
        ),
        "page quantiles": lambda: page_latency_quantiles(histogram),
        "series": lambda: aggregate_request_series(stats, histogram, 60.0, 12000.0),
    }
    _, peak, kept = _peak_and_kept(calls[reader])
    # A filtered copy, a groupby or a sort of the histogram alone would take about its size.
    assert peak <= 0.4 * size + 1 * MIB, (peak / MIB, size / MIB)
    assert kept < 0.1 * MIB
