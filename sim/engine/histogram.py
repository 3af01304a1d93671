"""Log-bucketed latency histograms: fixed relative accuracy, mergeable, memory in buckets.

A positive value ``x`` falls in bucket ``i = ceil(log(x) / log(GAMMA))``, the interval
``(GAMMA**(i-1), GAMMA**i]``, and is read back as ``2 GAMMA**i / (GAMMA + 1)``, the point of
the bucket closest (in relative terms) to both of its ends. With
``GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)`` every value read back is within
``RELATIVE_ACCURACY`` (1 %) of the true one (the scheme of DDSketch, Masson et al., VLDB 2019).
Values at or below :data:`MIN_VALUE` (zero, in practice) have a bucket of their own that reads
back as 0.0 exactly.

:meth:`LogHistogram.quantile` interpolates between order statistics exactly as
``numpy.percentile`` does by default (``(n - 1) q``, linear), from the bucket values instead of
the raw ones; a weighted mean of two values each within 1 % of the truth is within 1 % of the
same mean of the true values, so a quantile from the histogram is within 1 % of the exact
quantile of the raw values (:data:`RELATIVE_ACCURACY`, up to float rounding).

Bucket indices are small integers (about -1,050 for a nanosecond, +880 for a year), so a
histogram is a handful of numpy arrays of (bucket, count) pairs whose length is the number of
distinct buckets in use, never the number of values: memory depends on the spread of the
values, not on how many there are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "GAMMA",
    "MIN_VALUE",
    "RELATIVE_ACCURACY",
    "ZERO_BUCKET",
    "LogHistogram",
    "bucket_of",
    "bucket_value",
    "buckets_of",
    "bucket_values",
    "quantiles_from_buckets",
]

RELATIVE_ACCURACY = 0.01
"""Largest relative error of a value read back from its bucket (1 %)."""

GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
"""Ratio of a bucket's upper to its lower bound (about 1.0202: buckets 2 % wide)."""

LOG_GAMMA = math.log(GAMMA)
"""Natural log of :data:`GAMMA`."""

MIN_VALUE = 1e-9
"""Values at or below this (a nanosecond) go to the zero bucket and read back as 0.0."""

ZERO_BUCKET = math.ceil(math.log(MIN_VALUE) / LOG_GAMMA) - 1
"""The bucket of the values at or below :data:`MIN_VALUE` (below every other bucket)."""

_VALUE_FACTOR = 2.0 / (GAMMA + 1.0)


def bucket_of(value: float) -> int:
    """Return the bucket index of one value (:data:`ZERO_BUCKET` for values <= MIN_VALUE)."""
    if value <= MIN_VALUE:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / LOG_GAMMA)


def buckets_of(values: np.ndarray) -> np.ndarray:
    """Return the bucket index of each value of an array (int64), as :func:`bucket_of`."""
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, ZERO_BUCKET, dtype=np.int64)
    positive = values > MIN_VALUE
    out[positive] = np.ceil(np.log(values[positive]) / LOG_GAMMA).astype(np.int64)
    return out


def bucket_value(index: int) -> float:
    """Return the value a bucket reads back as (0.0 for :data:`ZERO_BUCKET`)."""
    if index <= ZERO_BUCKET:
        return 0.0
    return _VALUE_FACTOR * GAMMA ** float(index)


def bucket_values(indices: np.ndarray) -> np.ndarray:
    """Return the value each bucket index of an array reads back as (float64)."""
    indices = np.asarray(indices, dtype=np.int64)
    values = _VALUE_FACTOR * np.power(GAMMA, indices.astype(float))
    return np.where(indices <= ZERO_BUCKET, 0.0, values)


def quantiles_from_buckets(
    buckets: np.ndarray, counts: np.ndarray, qs: Sequence[float]
) -> list[float]:
    """Return the quantiles ``qs`` (each in [0, 1]) of values given as sorted (bucket, count).

    ``buckets`` must be sorted ascending and unique, ``counts`` positive; the interpolation is
    ``numpy.percentile``'s default (linear between order statistics ``floor`` and ``ceil`` of
    ``(n - 1) q``). NaN for every quantile when there are no values.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return [float("nan")] * len(qs)
    cumulative = np.cumsum(counts)
    values = bucket_values(buckets)
    out = []
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"a quantile must lie in [0, 1], got {q!r}")
        h = (total - 1) * q
        low = math.floor(h)
        high = min(low + 1, total - 1)
        # the order statistic k (0-based) lies in the first bucket whose cumulative count > k
        lo_value, hi_value = values[np.searchsorted(cumulative, [low, high], side="right")]
        out.append(float(lo_value + (h - low) * (hi_value - lo_value)))
    return out


class LogHistogram:
    """A mergeable histogram of positive values with :data:`RELATIVE_ACCURACY` per value.

    Add values one at a time (:meth:`add`) or as an array (:meth:`add_many`); merge
    histograms with :meth:`merge`; read quantiles with :meth:`quantile` / :meth:`quantiles`.
    The exact count, sum, minimum and maximum are kept beside the buckets, so :attr:`mean`
    is exact (not read back from buckets).
    """

    __slots__ = ("_buckets", "_counts", "_pending", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self._pending: dict[int, int] = {}
        self._buckets = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self.count: int = 0
        """How many values were added."""
        self.total: float = 0.0
        """Their exact sum."""
        self.minimum: float = math.inf
        """The smallest value added (inf when empty)."""
        self.maximum: float = -math.inf
        """The largest value added (-inf when empty)."""

    @classmethod
    def from_values(cls, values: Iterable[float]) -> LogHistogram:
        """Return a histogram of ``values``."""
        histogram = cls()
        histogram.add_many(np.fromiter(values, dtype=float))
        return histogram

    @classmethod
    def from_buckets(cls, buckets: np.ndarray, counts: np.ndarray) -> LogHistogram:
        """Return a histogram from (bucket, count) pairs (sum, min and max read from buckets)."""
        histogram = cls()
        histogram._absorb(np.asarray(buckets, dtype=np.int64), np.asarray(counts, dtype=np.int64))
        values = bucket_values(histogram._buckets)
        histogram.count = int(histogram._counts.sum())
        histogram.total = float((values * histogram._counts).sum())
        if histogram.count:
            histogram.minimum = float(values[0])
            histogram.maximum = float(values[-1])
        return histogram

    def add(self, value: float) -> None:
        """Add one value (a negative value is refused: latencies are never negative)."""
        if value < 0.0 or value != value:
            raise ValueError(f"a histogram takes values >= 0, got {value!r}")
        index = ZERO_BUCKET if value <= MIN_VALUE else math.ceil(math.log(value) / LOG_GAMMA)
        pending = self._pending
        pending[index] = pending.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def add_many(self, values: np.ndarray) -> None:
        """Add every value of an array."""
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return
        if bool((values < 0.0).any()) or bool(np.isnan(values).any()):
            raise ValueError("a histogram takes values >= 0 (and no NaN)")
        buckets, counts = np.unique(buckets_of(values), return_counts=True)
        self._absorb(buckets, counts)
        self.count += int(values.size)
        self.total += float(values.sum())
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def merge(self, other: LogHistogram) -> None:
        """Add every value of ``other`` to this histogram."""
        buckets, counts = other.buckets()
        self._absorb(buckets, counts)
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def _absorb(self, buckets: np.ndarray, counts: np.ndarray) -> None:
        self._flush()
        if buckets.size == 0:
            return
        merged = np.concatenate([self._buckets, buckets])
        weights = np.concatenate([self._counts, counts])
        self._buckets, inverse = np.unique(merged, return_inverse=True)
        self._counts = np.bincount(inverse, weights=weights).astype(np.int64)

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            buckets = np.fromiter(pending.keys(), dtype=np.int64, count=len(pending))
            counts = np.fromiter(pending.values(), dtype=np.int64, count=len(pending))
            self._absorb(buckets, counts)

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the occupied buckets (sorted) and their counts."""
        self._flush()
        return self._buckets, self._counts

    @property
    def mean(self) -> float:
        """Return the exact mean of the values added (NaN when empty)."""
        return self.total / self.count if self.count else float("nan")

    def quantile(self, q: float) -> float:
        """Return the ``q`` quantile (``q`` in [0, 1]); see :func:`quantiles_from_buckets`."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Return several quantiles at once (NaN each when empty)."""
        buckets, counts = self.buckets()
        return quantiles_from_buckets(buckets, counts, qs)

    def __len__(self) -> int:
        """Return the number of values added."""
        return self.count

    def __repr__(self) -> str:
        """Return ``LogHistogram(count=..., buckets=...)``."""
        return f"LogHistogram(count={self.count}, buckets={self.buckets()[0].size})"
