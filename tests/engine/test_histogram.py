"""Log-bucketed histograms: bucket bounds, 1 % values, numpy-compatible quantiles, merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine.histogram import (
    GAMMA,
    MIN_VALUE,
    RELATIVE_ACCURACY,
    ZERO_BUCKET,
    LogHistogram,
    bucket_of,
    bucket_value,
    bucket_values,
    buckets_of,
    quantiles_from_buckets,
)

positive = st.floats(min_value=1e-7, max_value=1e7, allow_nan=False, allow_infinity=False)
QS = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]


def test_gamma_gives_buckets_two_percent_wide():
    assert RELATIVE_ACCURACY == 0.01
    assert pytest.approx(1.01 / 0.99, rel=1e-15) == GAMMA


def test_a_value_lies_within_its_bucket_and_reads_back_within_one_percent():
    for value in (1e-6, 0.0003, 0.02, 0.1, 1.0, 2.5, 60.0, 3600.0, 86400.0 * 365):
        index = bucket_of(value)
        assert GAMMA ** (index - 1) < value * (1 + 1e-12)
        assert value <= GAMMA**index * (1 + 1e-12)
        assert abs(bucket_value(index) - value) / value <= RELATIVE_ACCURACY + 1e-12


@given(positive)
def test_every_positive_value_reads_back_within_one_percent(value):
    assert abs(bucket_value(bucket_of(value)) - value) <= RELATIVE_ACCURACY * value * (1 + 1e-9)


def test_zero_and_tiny_values_share_the_zero_bucket_that_reads_back_as_zero():
    assert bucket_of(0.0) == ZERO_BUCKET
    assert bucket_of(MIN_VALUE) == ZERO_BUCKET
    assert bucket_of(MIN_VALUE * 1.1) > ZERO_BUCKET
    assert bucket_value(ZERO_BUCKET) == 0.0
    assert bucket_values(np.array([ZERO_BUCKET, ZERO_BUCKET + 1]))[0] == 0.0


def test_the_array_forms_agree_with_the_scalar_ones():
    values = np.array([0.0, 1e-10, 1e-6, 0.0123, 0.5, 1.0, 7.0, 1e5])
    assert buckets_of(values).tolist() == [bucket_of(float(v)) for v in values]
    indices = buckets_of(values)
    assert bucket_values(indices).tolist() == pytest.approx([bucket_value(int(i)) for i in indices])


def test_quantiles_interpolate_like_numpy_percentile():
    values = [float(x) for x in range(1, 102)]  # 1 .. 101
    histogram = LogHistogram.from_values(values)
    exact = np.percentile(values, [50, 95, 99])
    approx = histogram.quantiles([0.5, 0.95, 0.99])
    for a, e in zip(approx, exact, strict=True):
        assert abs(a - e) / e <= RELATIVE_ACCURACY
    assert histogram.quantile(0.0) == pytest.approx(bucket_value(bucket_of(1.0)))
    assert histogram.quantile(1.0) == pytest.approx(bucket_value(bucket_of(101.0)))


@settings(max_examples=200, deadline=None)
@given(st.lists(positive, min_size=1, max_size=300))
def test_quantiles_are_within_one_percent_of_exact_ones(values):
    histogram = LogHistogram.from_values(values)
    exact = np.percentile(values, [100 * q for q in QS])
    for a, e in zip(histogram.quantiles(QS), exact, strict=True):
        assert abs(a - e) <= RELATIVE_ACCURACY * e * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(positive, max_size=100), st.lists(positive, max_size=100))
def test_merging_equals_the_histogram_of_all_values(left, right):
    a, b = LogHistogram.from_values(left), LogHistogram.from_values(right)
    a.merge(b)
    whole = LogHistogram.from_values(left + right)
    assert a.count == whole.count == len(left) + len(right)
    buckets, counts = a.buckets()
    expected_buckets, expected_counts = whole.buckets()
    assert buckets.tolist() == expected_buckets.tolist()
    assert counts.tolist() == expected_counts.tolist()
    assert a.total == pytest.approx(whole.total)


def test_add_one_at_a_time_equals_add_many():
    values = [0.02, 0.02, 0.5, 0.0, 3.0, 0.021]
    one = LogHistogram()
    for v in values:
        one.add(v)
    many = LogHistogram()
    many.add_many(np.array(values))
    assert one.buckets()[0].tolist() == many.buckets()[0].tolist()
    assert one.buckets()[1].tolist() == many.buckets()[1].tolist() == [1, 2, 1, 1, 1]
    assert (one.count, one.minimum, one.maximum) == (6, 0.0, 3.0)
    assert (many.count, many.minimum, many.maximum) == (6, 0.0, 3.0)
    assert one.mean == pytest.approx(sum(values) / 6)
    assert len(one) == 6


def test_from_buckets_rebuilds_counts_and_reads_sums_from_buckets():
    buckets = np.array([bucket_of(0.1), bucket_of(0.1), bucket_of(2.0)])
    histogram = LogHistogram.from_buckets(buckets, np.array([2, 1, 1]))
    assert histogram.count == 4
    assert histogram.buckets()[1].tolist() == [3, 1]
    assert histogram.total == pytest.approx(
        3 * bucket_value(bucket_of(0.1)) + bucket_value(bucket_of(2.0))
    )
    assert histogram.minimum == pytest.approx(bucket_value(bucket_of(0.1)))
    assert histogram.maximum == pytest.approx(bucket_value(bucket_of(2.0)))
    assert "count=4" in repr(histogram)


def test_an_empty_histogram_has_nan_quantiles_and_mean():
    histogram = LogHistogram()
    assert histogram.count == 0
    assert math.isnan(histogram.mean)
    assert all(math.isnan(q) for q in histogram.quantiles([0.5, 0.99]))
    histogram.add_many(np.zeros(0))
    assert histogram.count == 0
    assert histogram.buckets()[0].size == 0
    assert LogHistogram.from_buckets(np.zeros(0), np.zeros(0)).count == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_negative_or_nan_values_are_refused(bad):
    with pytest.raises(ValueError, match="values >= 0"):
        LogHistogram().add(bad)
    with pytest.raises(ValueError, match="values >= 0"):
        LogHistogram().add_many(np.array([1.0, bad]))


def test_a_quantile_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got 1.5"):
        quantiles_from_buckets(np.array([1]), np.array([1]), [1.5])


def test_quantiles_from_buckets_counts_order_statistics_across_buckets():
    # values: 1.0 (x3), 2.0 (x1) -> median of 4 values interpolates order statistics 1 and 2
    buckets = np.array([bucket_of(1.0), bucket_of(2.0)])
    one, two = bucket_value(bucket_of(1.0)), bucket_value(bucket_of(2.0))
    assert quantiles_from_buckets(buckets, np.array([3, 1]), [0.5]) == [pytest.approx(one)]
    # 0.9 quantile: h = 2.7 -> 0.3 of the way from the 3rd (1.0) to the 4th (2.0) value
    assert quantiles_from_buckets(buckets, np.array([3, 1]), [0.9]) == [
        pytest.approx(one + 0.7 * (two - one))
    ]
