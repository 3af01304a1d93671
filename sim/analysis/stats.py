"""Statistics over runs: Student-t confidence intervals, percentiles, replication summaries.

- :func:`mean_ci` -- the mean of independent observations (one per replication) with the
  Student-t confidence interval ``mean +/- t(1 - alpha/2, n - 1) s / sqrt(n)``.
- :func:`percentile` / :func:`percentiles` -- linear-interpolation percentiles (numpy's default,
  the same as :func:`sim.engine.metrics.latency_summary`), NaN for no data.
- :func:`flatten_numeric` -- a nested KPI dict as ``{"latency.p95": 0.07, ...}``.
- :func:`summarize_replications` -- per-replication KPI dicts to a :class:`MeanCI` per KPI;
  :data:`COUNT_KPIS` / :func:`missing_is_zero` -- the KPIs a replication without the key has 0 of.
- :func:`mser` -- MSER-5 warm-up deletion: where to cut an output series' initial transient.
- :func:`relative_half_width`, :func:`replications_needed`, :func:`precise_enough` --
  sequential stopping: add replications until every relative half-width is small enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from numbers import Real
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "COUNT_KPIS",
    "MSER_BATCH",
    "MSER_MAX_FRACTION",
    "MeanCI",
    "Truncation",
    "flatten_numeric",
    "mean_ci",
    "missing_is_zero",
    "mser",
    "percentile",
    "percentiles",
    "precise_enough",
    "relative_half_width",
    "replications_needed",
    "summarize_replications",
]

NAN = float("nan")

COUNT_KPIS = ("orders_by_state.*", "payment_outcomes.*", "latency_by_page.*.count")
"""KPI keys (``fnmatch`` patterns) that are counts: a replication without the key had none.

A page no shopper requested in a replication has no ``latency_by_page`` entry there: its count
is 0, while its percentiles stay undefined (missing, left out of their sample).
"""


def missing_is_zero(key: str, patterns: Sequence[str] = COUNT_KPIS) -> bool:
    """Return True when ``key`` matches one of ``patterns``: missing from a run, it means 0."""
    return any(fnmatchcase(key, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class MeanCI:
    """A sample mean with its confidence interval ``[low, high] = mean -/+ half_width``.

    ``half_width``, ``low`` and ``high`` are NaN when ``n < 2`` (no spread to estimate);
    everything is NaN when ``n == 0``.
    """

    mean: float
    half_width: float
    low: float
    high: float
    n: int


def _as_array(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {array.shape}")
    return array


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Return the mean of ``values`` and its Student-t confidence interval.

    ``half_width = t.ppf((1 + confidence) / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample
    standard deviation (``ddof = 1``). For one value the half-width is NaN. Raises
    ``ValueError`` for no values, a non-finite value or a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    array = _as_array(values)
    n = int(array.size)
    if n == 0:
        raise ValueError("mean_ci needs at least one value, got none")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"mean_ci needs finite values, got {array[~np.isfinite(array)][:3]}")
    mean = float(array.mean())
    if n == 1:
        return MeanCI(mean, NAN, NAN, NAN, 1)
    t = float(_scipy_stats.t.ppf((1.0 + confidence) / 2.0, n - 1))
    half = t * float(array.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, half, mean - half, mean + half, n)


def percentile(values: Iterable[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100, linear interpolation); NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    array = _as_array(values)
    return float(np.percentile(array, q)) if array.size else NAN


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Return ``{"p50": ..., "p95": ..., "p99": ...}`` for the percentiles ``qs`` (NaN if empty)."""
    array = _as_array(values)
    return {f"p{q:g}": percentile(array, q) for q in qs}


def _is_number(value: Any) -> bool:
    return isinstance(value, Real | np.number) and not isinstance(value, bool | np.bool_)


def flatten_numeric(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Return the numeric leaves of a nested mapping, keys joined with dots, in insertion order.

    ``{"latency": {"p95": 0.07}, "sessions": 187, "name": "x"}`` gives
    ``{"latency.p95": 0.07, "sessions": 187.0}``: strings, booleans, lists and None are left out.
    """
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_numeric(value, f"{name}."))
        elif _is_number(value):
            flat[name] = float(value)
    return flat


def summarize_replications(
    kpi_dicts: Sequence[Mapping[str, Any]],
    confidence: float = 0.95,
    *,
    zero_fill: Sequence[str] = (),
) -> dict[str, MeanCI]:
    """Return each numeric KPI's mean and confidence interval over replications.

    ``kpi_dicts`` holds one (nested) KPI dict per replication; leaves are flattened with dots
    (``"latency.p95"``, ``"utilisation.app.utilisation"``). Keys keep their first-appearance order.
    A KPI missing from a replication, or NaN / infinite there, is left out of that KPI's sample
    (its ``n`` says how many replications count), except for keys matching a pattern of
    ``zero_fill`` (counts, such as :data:`COUNT_KPIS`), where a missing key means 0.
    """
    flats = [flatten_numeric(kpis) for kpis in kpi_dicts]
    keys: dict[str, None] = {}
    for flat in flats:
        keys.update(dict.fromkeys(flat))
    result: dict[str, MeanCI] = {}
    for key in keys:
        default = 0.0 if missing_is_zero(key, zero_fill) else NAN
        sample = [flat.get(key, default) for flat in flats]
        finite = [v for v in sample if math.isfinite(v)]
        result[key] = mean_ci(finite, confidence) if finite else MeanCI(NAN, NAN, NAN, NAN, 0)
    return result


# --- warm-up deletion: MSER-5 -------------------------------------------------------------------

MSER_BATCH = 5
"""Observations per batch mean in MSER-5."""

MSER_MAX_FRACTION = 0.5
"""MSER looks for the cut in the first half of the series only (White, 1997)."""


@dataclass(frozen=True, slots=True)
class Truncation:
    """Where MSER cuts a series: delete the first ``cut`` observations.

    ``batches`` batch means of ``batch_size`` observations are deleted (``cut = batches *
    batch_size``); ``statistic`` is the minimised MSER value; ``at_limit`` is True when the
    minimum fell on the last allowed cut (half the series): the series may not have settled,
    so the cut is a lower bound and a longer horizon is advisable.
    """

    cut: int
    batches: int
    batch_size: int
    statistic: float
    at_limit: bool


def mser(
    values: Iterable[float],
    batch_size: int = MSER_BATCH,
    max_fraction: float = MSER_MAX_FRACTION,
) -> Truncation:
    """Return the MSER truncation point of an output series (MSER-5 with the default batch).

    The series is cut into ``k`` batch means ``z_1..z_k`` of ``batch_size`` observations (a
    trailing partial batch is dropped). For ``d = 0 .. floor(k * max_fraction)`` deleted
    batches, ``MSER(d) = sum_{j > d} (z_j - mean(z_{d+1..k}))^2 / (k - d)^2``: the squared
    standard error of the mean of what is kept. The cut is the ``d`` that minimises it (the
    smallest on a tie), in observations. Fewer than four batches give no cut. Raises
    ``ValueError`` for a non-finite value, a batch size below 1 or a fraction outside (0, 1).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not 0.0 < max_fraction < 1.0:
        raise ValueError(f"max_fraction must be in (0, 1), got {max_fraction!r}")
    array = _as_array(values)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"mser needs finite values, got {array[~np.isfinite(array)][:3]}")
    k = array.size // batch_size
    if k < 4:
        return Truncation(0, 0, batch_size, NAN, False)
    raw = array[: k * batch_size].reshape(k, batch_size).mean(axis=1)
    z = raw - raw.mean()  # centred: the sums below cancel less
    limit = min(int(k * max_fraction), k - 2)
    # Suffix sums over z[d:], for d = 0..limit; a spread within rounding error of the raw
    # values' size (a constant series whose batch means differ in the last bit) counts as 0.
    s1 = np.cumsum(z[::-1])[::-1][: limit + 1]
    s2 = np.cumsum((z * z)[::-1])[::-1][: limit + 1]
    scale = np.cumsum((raw * raw)[::-1])[::-1][: limit + 1]
    kept = k - np.arange(limit + 1, dtype=float)
    sse = s2 - s1 * s1 / kept
    sse = np.where(sse > 1e-20 * scale, sse, 0.0)
    statistic = sse / (kept * kept)
    best = int(np.argmin(statistic))
    return Truncation(best * batch_size, best, batch_size, float(statistic[best]), best == limit)


# --- sequential stopping ------------------------------------------------------------------------


def relative_half_width(ci: MeanCI) -> float:
    """Return ``half_width / |mean|``: 0 for an exact (zero-width) interval, inf if undefined.

    NaN half-widths (fewer than two values) and a zero mean with a positive half-width give
    ``inf``: such an estimate is never precise enough.
    """
    if not (math.isfinite(ci.half_width) and math.isfinite(ci.mean)):
        return math.inf
    if ci.half_width == 0.0:
        return 0.0
    return math.inf if ci.mean == 0.0 else ci.half_width / abs(ci.mean)


def replications_needed(ci: MeanCI, precision: float) -> int:
    """Return how many replications should bring the relative half-width down to ``precision``.

    The half-width shrinks like ``1 / sqrt(n)``, so ``n* = ceil(n (r / precision)^2)`` where
    ``r`` is :func:`relative_half_width` now (Law, *Simulation Modeling and Analysis*, 9.4.1).
    At least ``ci.n``; ``n + 1`` when ``r`` is infinite (no spread estimate yet, or a zero
    mean), so that a caller adds one replication at a time. Raises ``ValueError`` for a
    precision outside (0, 1).
    """
    if not 0.0 < precision < 1.0:
        raise ValueError(f"precision must be in (0, 1), got {precision!r}")
    r = relative_half_width(ci)
    if math.isinf(r):
        return ci.n + 1
    if r <= precision:
        return ci.n
    return max(ci.n + 1, math.ceil(ci.n * (r / precision) ** 2 - 1e-9))


def precise_enough(cis: Iterable[MeanCI], precision: float) -> bool:
    """Return True when every interval's relative half-width is at most ``precision``."""
    return all(relative_half_width(ci) <= precision for ci in cis)
