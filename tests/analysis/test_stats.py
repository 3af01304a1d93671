from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sim.analysis.stats import (
    COUNT_KPIS,
    MeanCI,
    flatten_numeric,
    mean_ci,
    missing_is_zero,
    percentile,
    percentiles,
    summarize_replications,
)

# --- mean_ci ----------------------------------------------------------------------------------


def test_mean_ci_by_hand_for_one_to_five():
    # mean 3, s^2 = 10/4 = 2.5, s / sqrt(5) = sqrt(0.5); t(0.975, 4) = 2.7764451051977987
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    t = scipy_stats.t.ppf(0.975, 4)
    assert t == pytest.approx(2.7764451051977987, rel=1e-12)
    assert ci.mean == 3.0
    assert ci.half_width == pytest.approx(t * math.sqrt(0.5), rel=1e-12)
    assert ci.half_width == pytest.approx(1.9632431615, rel=1e-9)
    assert (ci.low, ci.high) == (3.0 - ci.half_width, 3.0 + ci.half_width)
    assert ci.n == 5


def test_mean_ci_at_90_percent_for_two_values():
    # mean 15, s = sqrt(50), s / sqrt(2) = 5; t(0.95, 1) = 6.313751514675041
    ci = mean_ci(np.array([10.0, 20.0]), confidence=0.90)
    assert ci.mean == 15.0
    assert ci.half_width == pytest.approx(5.0 * 6.313751514675041, rel=1e-12)
    assert ci.n == 2


def test_mean_ci_of_identical_values_has_zero_width():
    assert mean_ci([4.0, 4.0, 4.0]) == MeanCI(4.0, 0.0, 4.0, 4.0, 3)


def test_mean_ci_of_one_value_has_no_half_width():
    ci = mean_ci([7.5])
    assert ci.mean == 7.5 and ci.n == 1
    assert math.isnan(ci.half_width) and math.isnan(ci.low) and math.isnan(ci.high)


@pytest.mark.parametrize(
    ("values", "confidence", "message"),
    [
        ([], 0.95, "at least one value"),
        ([1.0, float("nan")], 0.95, "finite values"),
        ([1.0, float("inf")], 0.95, "finite values"),
        ([1.0, 2.0], 1.0, r"confidence must be in \(0, 1\)"),
        ([1.0, 2.0], 0.0, r"confidence must be in \(0, 1\)"),
        ([[1.0, 2.0]], 0.95, "one-dimensional"),
    ],
)
def test_mean_ci_rejects_bad_input(values, confidence, message):
    with pytest.raises(ValueError, match=message):
        mean_ci(values, confidence)


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(20240601)
    samples, n, true_mean = 400, 10, 5.0
    covered = 0
    for _ in range(samples):
        ci = mean_ci(rng.normal(true_mean, 2.0, size=n))
        covered += ci.low <= true_mean <= ci.high
    # Binomial(400, 0.95): mean 380, sd sqrt(400 * 0.95 * 0.05) = 4.36; allow 3 sd either side.
    sd = math.sqrt(samples * 0.95 * 0.05)
    assert abs(covered - 0.95 * samples) <= 3 * sd, covered


# --- percentiles ------------------------------------------------------------------------------


def test_percentile_interpolates_linearly():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)  # 1 + 0.95 * 3
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"q must be in \[0, 100\]"):
        percentile(values, 101)


def test_percentiles_names_each_one():
    result = percentiles(np.arange(1.0, 101.0))
    assert list(result) == ["p50", "p95", "p99"]
    assert result["p50"] == 50.5 and result["p99"] == pytest.approx(99.01)
    assert percentiles([3.0], qs=(50, 99.9)) == {"p50": 3.0, "p99.9": 3.0}


# --- flattening and replication summaries -----------------------------------------------------


def test_flatten_numeric_keeps_numbers_with_dotted_keys():
    kpis = {
        "throughput": 12.5,
        "latency": {"p95": 0.07, "count": 10},
        "utilisation": {"app": {"utilisation": 0.4}},
        "name": "smoke",
        "flag": True,
        "missing": None,
        "list": [1, 2],
        "big": np.int64(3),
    }
    assert flatten_numeric(kpis) == {
        "throughput": 12.5,
        "latency.p95": 0.07,
        "latency.count": 10.0,
        "utilisation.app.utilisation": 0.4,
        "big": 3.0,
    }


def test_summarize_replications_gives_mean_and_half_width_per_leaf():
    reps = [
        {"throughput": 10.0, "latency": {"p95": 0.1}, "utilisation": {"app": {"utilisation": 0.2}}},
        {"throughput": 12.0, "latency": {"p95": 0.3}, "utilisation": {"app": {"utilisation": 0.4}}},
        {"throughput": 14.0, "latency": {"p95": 0.2}, "utilisation": {"app": {"utilisation": 0.3}}},
    ]
    summary = summarize_replications(reps)
    assert list(summary) == ["throughput", "latency.p95", "utilisation.app.utilisation"]
    t = scipy_stats.t.ppf(0.975, 2)
    assert summary["throughput"] == mean_ci([10.0, 12.0, 14.0])
    assert summary["throughput"].mean == 12.0
    assert summary["throughput"].half_width == pytest.approx(t * 2.0 / math.sqrt(3))
    assert summary["latency.p95"].mean == pytest.approx(0.2)
    assert summary["utilisation.app.utilisation"].n == 3


def test_a_page_missing_from_a_replication_counts_zero_there_but_has_no_percentile():
    reps = [
        {"latency_by_page": {"admin": {"count": 3, "p95": 0.02}, "home": {"count": 9}}},
        {"latency_by_page": {"home": {"count": 7}}},
        {"latency_by_page": {}, "orders_by_state": {"paid": 2}},
        {"latency_by_page": {}},
    ]
    summary = summarize_replications(reps, zero_fill=COUNT_KPIS)
    assert summary["latency_by_page.admin.count"] == mean_ci([3.0, 0.0, 0.0, 0.0])
    assert summary["latency_by_page.home.count"] == mean_ci([9.0, 7.0, 0.0, 0.0])
    assert summary["orders_by_state.paid"] == mean_ci([0.0, 0.0, 2.0, 0.0])
    assert summary["latency_by_page.admin.p95"].n == 1  # a percentile of no request: missing
    assert missing_is_zero("payment_outcomes.declined")
    assert not missing_is_zero("latency_by_page.admin.p95")
    assert not missing_is_zero("latency.count")  # every run has it: never filled in


def test_summarize_replications_skips_missing_and_nan_values_unless_zero_filled():
    reps = [
        {"payment_success": float("nan"), "orders_by_state": {"cancelled": 2}, "pages": {"a": 1}},
        {"payment_success": 0.9, "orders_by_state": {"processing": 4}},
        {"payment_success": 0.8, "orders_by_state": {"cancelled": 1, "processing": 2}},
    ]
    summary = summarize_replications(reps, zero_fill=["orders_by_state.*"])
    assert summary["payment_success"].n == 2
    assert summary["payment_success"].mean == pytest.approx(0.85)
    assert summary["orders_by_state.cancelled"] == mean_ci([2.0, 0.0, 1.0])
    assert summary["orders_by_state.processing"] == mean_ci([0.0, 4.0, 2.0])
    assert summary["pages.a"].n == 1 and math.isnan(summary["pages.a"].half_width)
    only_nan = summarize_replications([{"x": float("nan")}, {"x": float("nan")}])["x"]
    assert only_nan.n == 0 and math.isnan(only_nan.mean)
    assert summarize_replications([]) == {}


def test_summarize_replications_at_another_confidence():
    reps = [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    assert summarize_replications(reps, 0.9)["x"] == mean_ci([1.0, 2.0, 3.0], 0.9)
