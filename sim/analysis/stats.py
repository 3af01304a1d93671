"""Statistics over runs: Student-t confidence intervals, percentiles, replication summaries.

- :func:`mean_ci` -- the mean of independent observations (one per replication) with the
  Student-t confidence interval ``mean +/- t(1 - alpha/2, n - 1) s / sqrt(n)``.
- :func:`percentile` / :func:`percentiles` -- linear-interpolation percentiles (numpy's default,
  the same as :func:`sim.engine.metrics.latency_summary`), NaN for no data.
- :func:`flatten_numeric` -- a nested KPI dict as ``{"latency.p95": 0.07, ...}``.
- :func:`summarize_replications` -- per-replication KPI dicts to a :class:`MeanCI` per KPI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "MeanCI",
    "flatten_numeric",
    "mean_ci",
    "percentile",
    "percentiles",
    "summarize_replications",
]

NAN = float("nan")


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
    (its ``n`` says how many replications count), except under a prefix in ``zero_fill``
    (counts such as ``"orders_by_state"``), where a missing key means 0.
    """
    flats = [flatten_numeric(kpis) for kpis in kpi_dicts]
    keys: dict[str, None] = {}
    for flat in flats:
        keys.update(dict.fromkeys(flat))
    prefixes = tuple(f"{p}." for p in zero_fill)
    result: dict[str, MeanCI] = {}
    for key in keys:
        default = 0.0 if key.startswith(prefixes) else NAN
        sample = [flat.get(key, default) for flat in flats]
        finite = [v for v in sample if math.isfinite(v)]
        result[key] = mean_ci(finite, confidence) if finite else MeanCI(NAN, NAN, NAN, NAN, 0)
    return result
