"""Replications and what-if variants with common random numbers and paired-difference CIs.

Replication ``i`` of a scenario draws from ``Streams(seed, replication=i)``: the same
numbers whatever variant of the scenario runs, so differences between variants are paired.

- :func:`run_many` -- replications of one scenario as full :class:`RunResult` objects (frames
  and all), in this process or on an executor (:mod:`sim.analysis.executors`).
- :func:`replicate` -- replications of several variants as small :class:`RunSummary` objects
  (KPIs, the warm-up cut, station statistics), optionally until a precision target is met.
- :func:`grid_variants` / :func:`parse_vary` -- the variants of ``--vary key=v1,v2,...``.
- :func:`compare` -- every variant with common random numbers, summarised in a
  :class:`Comparison`: a tidy table of each KPI per variant (mean, CI) and the paired
  difference against the first variant, and per-KPI verdicts (which variant wins, with what
  confidence, or that the difference is not established).
- :func:`auto_warmup` / :func:`kpis_after_warmup` -- ``warmup: auto``: the MSER-5 cut of a
  run's throughput and response-time series, and the KPIs recomputed after it.

A run is a pure function of ``(scenario, seed, replication)``: tasks ship the scenario as its
plain data (validated again where it runs), so every executor returns the same numbers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from sim.analysis.executors import Executor, InProcessExecutor, TaskProgress
from sim.analysis.stats import (
    COUNT_KPIS,
    MSER_BATCH,
    MeanCI,
    flatten_numeric,
    mean_ci,
    missing_is_zero,
    mser,
    replications_needed,
)
from sim.engine.metrics import interval_cut, is_aggregate, request_kpis, station_utilisation
from sim.engine.runner import RunResult, run
from sim.scenario import Scenario, load_scenario, parse_scenario

__all__ = [
    "DEFAULT_MAX_REPLICATIONS",
    "DEFAULT_PRECISION_KPIS",
    "KPI_DIRECTIONS",
    "WARMUP_KPIS",
    "ZERO_FILL",
    "Comparison",
    "ReplicationProgress",
    "RunSummary",
    "RunTask",
    "Replicated",
    "Variant",
    "Verdict",
    "UnknownKpi",
    "WarmupCut",
    "apply_auto_warmup",
    "check_kpis",
    "auto_warmup",
    "compare",
    "extra_kpis",
    "grid_variants",
    "kpi_values",
    "kpis_after_warmup",
    "lookup",
    "paired_difference",
    "parse_vary",
    "replicate",
    "run_many",
    "run_task",
    "scenario_variants",
    "split_values",
    "station_of_path",
    "summarize_run",
    "summary_task",
    "unpaired_difference",
]

ReplicationProgress = Callable[[int, float, float], None]
"""Called as ``progress(replication, simulated_now, horizon)`` while replications run."""

ZERO_FILL = COUNT_KPIS
"""KPI keys (``fnmatch`` patterns) that are counts: a key missing from a replication means 0."""

WARMUP_KPIS = (
    "throughput",
    "sessions_per_second",
    "latency",
    "latency_by_page",
    "checkout_latency",
    "cache_hit_rate",
    "utilisation",
    "conversion",
)
"""The KPIs of :func:`sim.engine.metrics.compute_kpis` that depend on the warm-up cut."""

DEFAULT_PRECISION_KPIS = ("throughput", "latency.mean", "latency.p95")
"""The KPIs sequential stopping watches unless told otherwise."""

DEFAULT_MAX_REPLICATIONS = 50
"""The cap on replications under sequential stopping unless told otherwise."""

KPI_DIRECTIONS: dict[str, str] = {
    "throughput": "higher",
    "sessions_per_second": "higher",
    "latency.mean": "lower",
    "latency.p50": "lower",
    "latency.p95": "lower",
    "latency.p99": "lower",
    "checkout_latency.mean": "lower",
    "checkout_latency.p50": "lower",
    "checkout_latency.p95": "lower",
    "checkout_latency.p99": "lower",
    "cache_hit_rate": "higher",
    "conversion": "higher",
    "orders_paid": "higher",
    "payment_success": "higher",
    "revenue_cents": "higher",
    "stock_outs": "lower",
    "carts_abandoned": "lower",
    "wait.app": "lower",
    "wait.database": "lower",
    "wait.cache": "lower",
}
"""Which way is better for the KPIs a comparison gives a verdict on."""

THROUGHPUT_BINS = (50, 2000)
"""MSER's series of a rows-mode run have between 50 and 2,000 bins (about 20 requests each)."""

REQUESTS_PER_BIN = 20
"""MSER's bins hold about this many requests each (within :data:`THROUGHPUT_BINS`)."""

WARMUP_MIN_BATCHES = 10
"""MSER's series have at least this many batches (rows mode's 50 bins in batches of 5)."""


class UnknownKpi(ValueError):
    """A KPI named by the user (a precision target, an objective) is not among the results."""


def check_kpis(summaries: Iterable[RunSummary], kpis: Iterable[str], what: str) -> None:
    """Raise :class:`UnknownKpi` for a KPI key that no summary has, listing the main ones."""
    known: dict[str, None] = {}
    for summary in summaries:
        known.update(dict.fromkeys(summary.flat))
    for kpi in kpis:
        if kpi not in known:
            main = [k for k in known if "." not in k or k.startswith(("latency.", "wait."))]
            raise UnknownKpi(
                f"{what} {kpi!r}: no such KPI in the results (e.g. {', '.join(main[:25])})"
            )


# --- tasks and what they return -----------------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    """One replication to run: the scenario as plain data, the root seed, the replication."""

    scenario: dict[str, Any]
    seed: int
    replication: int
    label: str = ""

    def load(self) -> Scenario:
        """Validate the scenario data (where the task runs) into a Scenario."""
        return parse_scenario(self.scenario, f"<variant {self.label or 'scenario'}>")


@dataclass(frozen=True)
class WarmupCut:
    """The MSER-5 warm-up cut of one run (seconds), and the cuts of its two series."""

    cut: float
    throughput_cut: float
    response_cut: float
    at_limit: bool


@dataclass(frozen=True)
class RunSummary:
    """What a comparison keeps of one replication: KPIs after the warm-up and small tables.

    ``kpis`` is :func:`sim.engine.metrics.compute_kpis`'s dict after the warm-up cut plus
    :func:`extra_kpis`; ``warmup`` is the cut used (the scenario's, or MSER-5's when
    ``warmup_auto``); ``stations`` is ``frames["station_stats"]`` as records (over the whole run).
    """

    label: str
    seed: int
    replication: int
    kpis: dict[str, Any]
    warmup: float
    warmup_auto: bool
    warmup_at_limit: bool
    stations: tuple[dict[str, Any], ...]
    violations: tuple[str, ...]
    runtime: float

    @cached_property
    def flat(self) -> dict[str, float]:
        """Return the numeric KPIs flattened with dots (``"latency.p95"``)."""
        return flatten_numeric(self.kpis)


# --- warm-up --------------------------------------------------------------------------------------
def _per_interval(stats: pd.DataFrame) -> pd.DataFrame:
    """Sum aggregate-mode ``request_stats`` over pages: one row per interval, in time order."""
    columns = ["requests", "response_sum", "app_wait_sum", "app_service_sum", "db_wait_sum"]
    columns.append("cache_wait_sum")
    return stats.groupby("start", sort=True)[columns].sum().reset_index()


def _bin_count(requests: int) -> int:
    """Return how many time bins MSER's series of ``requests`` requests have (rows mode's rule)."""
    return int(np.clip(requests // REQUESTS_PER_BIN, *THROUGHPUT_BINS))


def _series_cuts(
    throughput: np.ndarray, counts: np.ndarray, sums: np.ndarray
) -> tuple[int, int, bool]:
    """Return MSER's cuts (in bins) of a throughput series and of the mean response per bin.

    ``throughput`` is the series of requests per bin, ``counts`` and ``sums`` the requests and
    their summed responses per bin; the response series holds the bins with requests, and its
    cut is returned as the index of the bin it starts at. Batches are of
    :data:`~sim.analysis.stats.MSER_BATCH` bins, fewer when the series is short, so that it
    has at least :data:`WARMUP_MIN_BATCHES` of them (one bin each at the least).
    """
    batch = min(MSER_BATCH, max(1, throughput.size // WARMUP_MIN_BATCHES))
    rate = mser(throughput, batch_size=batch)
    busy = np.flatnonzero(counts > 0)  # bins with requests, in time order
    response = mser(sums[busy] / counts[busy], batch_size=batch)
    response_bin = int(busy[response.cut]) if response.cut > 0 else 0
    return rate.cut, response_bin, rate.at_limit or response.at_limit


def auto_warmup(
    frames: Mapping[str, pd.DataFrame], horizon: float, interval: float = 60.0
) -> WarmupCut:
    """Return the MSER-5 warm-up cut of a run from its request frames.

    Two series over time bins, each cut by :func:`sim.analysis.stats.mser`, and the run's cut
    is the later of the two; ``at_limit`` says either hit MSER's limit (half the series), a
    sign the run had not settled. No requests give a cut of 0. The throughput series counts
    the requests arriving in each bin; the response series is the mean response of each bin
    with requests (a bin mean, not single requests: page types with very different times
    would make a series of single requests jump about). Batches hold 5 bins, fewer when
    there are fewer than 50 bins (at least :data:`WARMUP_MIN_BATCHES` batches of at least one
    bin). The cut is a bin start.

    - Rows (``frames["requests"]``): ``B = requests / 20`` bins clipped to 50..2,000, each
      ``horizon / B`` seconds.
    - Aggregates (``metrics.requests: aggregate``, ``frames["request_stats"]``): the same
      series from the per-interval counts and response sums, in bins of whole intervals: as
      many intervals per bin as fit in rows mode's bin (at least one), so the cut is an
      interval start. Intervals without requests count as zero throughput; a last bin cut
      short by the horizon counts at its rate. When ``interval`` divides rows mode's bin
      width, the bins and the cut are exactly those of the same run recorded as rows.
    """
    if is_aggregate(frames):
        return _aggregate_warmup(frames["request_stats"], horizon, interval)
    requests = frames["requests"]
    if requests.empty or horizon <= 0:
        return WarmupCut(0.0, 0.0, 0.0, False)
    times = requests["time"].to_numpy(dtype=float)
    bins = _bin_count(len(times))
    width = horizon / bins
    index = np.clip((times // width).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)[:bins].astype(float)
    sums = np.bincount(index, weights=requests["response"].to_numpy(dtype=float), minlength=bins)
    throughput_bin, response_bin, at_limit = _series_cuts(counts, counts, sums[:bins])
    throughput_cut = throughput_bin * width
    response_cut = response_bin * width
    return WarmupCut(
        cut=max(response_cut, throughput_cut),
        throughput_cut=throughput_cut,
        response_cut=response_cut,
        at_limit=at_limit,
    )


def _aggregate_warmup(stats: pd.DataFrame, horizon: float, interval: float) -> WarmupCut:
    """Return :func:`auto_warmup`'s cut from aggregate-mode ``request_stats``."""
    per_row = stats["requests"].to_numpy(dtype=float)
    total = int(per_row.sum())
    if total == 0 or horizon <= 0:
        return WarmupCut(0.0, 0.0, 0.0, False)
    # whole intervals per bin: as many as fit in rows mode's bin (a tolerance for rounding)
    per_bin = max(1, math.floor(horizon / _bin_count(total) / interval * (1.0 + 1e-9)))
    size = per_bin * interval
    bins = max(1, math.ceil(horizon / size * (1.0 - 1e-12)))
    k = np.rint(stats["start"].to_numpy(dtype=float) / interval).astype(np.int64)
    index = np.clip(k // per_bin, 0, bins - 1)
    counts = np.bincount(index, weights=per_row, minlength=bins)[:bins]
    sums = np.bincount(index, weights=stats["response_sum"].to_numpy(dtype=float), minlength=bins)
    throughput = counts.copy()
    last = horizon - (bins - 1) * size  # the last bin's length within the horizon
    if last < size * (1.0 - 1e-9):
        throughput[-1] *= size / last
    throughput_bin, response_bin, at_limit = _series_cuts(throughput, counts, sums[:bins])
    throughput_cut = float(throughput_bin * per_bin) * interval
    response_cut = float(response_bin * per_bin) * interval
    return WarmupCut(
        cut=max(throughput_cut, response_cut),
        throughput_cut=throughput_cut,
        response_cut=response_cut,
        at_limit=at_limit,
    )


def kpis_after_warmup(
    kpis: Mapping[str, Any],
    frames: Mapping[str, pd.DataFrame],
    *,
    warmup: float,
    horizon: float,
    interval: float = 60.0,
) -> dict[str, Any]:
    """Return ``kpis`` with every warm-up-dependent KPI recomputed from the frames after ``warmup``.

    The keys in :data:`WARMUP_KPIS` are recomputed as :func:`sim.engine.metrics.compute_kpis`
    does (the request KPIs by :func:`sim.engine.metrics.request_kpis`, from rows or from
    aggregates, whose cut is rounded up to an ``interval`` start); the others (counters, the
    ledger balance, cart and order totals, which need the World) are kept from ``kpis``. So a
    run with warm-up 0 recomputed at ``w`` equals the same run with warm-up ``w``.
    """
    requests = request_kpis(frames, warmup=warmup, horizon=horizon, interval=interval)
    span = max(horizon - warmup, 1e-9)
    sessions = frames["sessions"]
    after = sessions[sessions["start"] >= warmup] if not sessions.empty else sessions
    result = dict(kpis)
    result.update({key: requests[key] for key in WARMUP_KPIS if key in requests})
    result.update(
        sessions_per_second=float(len(after) / span if not sessions.empty else 0.0),
        utilisation=station_utilisation(frames["stations"], warmup),
        conversion=float((after["orders"] > 0).mean()) if not after.empty else 0.0,
    )
    return result


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _ratio(total: float, count: float) -> float:
    return float(total / count) if count else float("nan")


def extra_kpis(
    frames: Mapping[str, pd.DataFrame], warmup: float, interval: float = 60.0
) -> dict[str, Any]:
    """Return the station waits per page request after the warm-up, and the app service time.

    ``{"wait": {"app": s, "database": s, "cache": s}, "service": {"app": s}}``: means over
    the requests that arrived at or after ``warmup`` of ``app_wait``, ``db_wait``,
    ``cache_wait`` (a page's database and cache waits are summed over its queries and
    look-ups) and ``app_service``; from aggregates, over the intervals from the warm-up rounded
    up to an ``interval`` start. NaN when no request was kept.
    """
    if is_aggregate(frames):
        stats = frames["request_stats"]
        kept = _per_interval(stats[stats["start"] >= interval_cut(warmup, interval)])
        n = float(kept["requests"].sum())
        return {
            "wait": {
                "app": _ratio(kept["app_wait_sum"].sum(), n),
                "database": _ratio(kept["db_wait_sum"].sum(), n),
                "cache": _ratio(kept["cache_wait_sum"].sum(), n),
            },
            "service": {"app": _ratio(kept["app_service_sum"].sum(), n)},
        }
    requests = frames["requests"]
    rows = requests[requests["time"] >= warmup]
    return {
        "wait": {
            "app": _mean(rows["app_wait"]),
            "database": _mean(rows["db_wait"]),
            "cache": _mean(rows["cache_wait"]),
        },
        "service": {"app": _mean(rows["app_service"])},
    }


def _resolve(result: RunResult) -> tuple[float, bool, dict[str, Any]]:
    """Return the warm-up cut, whether it hit MSER's limit, and the KPIs after it."""
    scenario = result.scenario
    if scenario.warmup != "auto":
        return result.warmup, False, dict(result.kpis)
    interval = scenario.metrics.interval
    cut = auto_warmup(result.frames, scenario.horizon, interval)
    kpis = kpis_after_warmup(
        result.kpis, result.frames, warmup=cut.cut, horizon=scenario.horizon, interval=interval
    )
    return cut.cut, cut.at_limit, kpis


def apply_auto_warmup(result: RunResult) -> RunResult:
    """Return ``result`` with the MSER-5 warm-up applied when its scenario says ``auto``.

    The engine runs ``auto`` with no warm-up; here the cut is found from the frames
    (:func:`auto_warmup`), the KPIs are recomputed after it (:func:`kpis_after_warmup`) and
    the result's scenario carries the cut as its ``warmup`` (so ``result.warmup`` and every
    report show it). Any other result is returned unchanged.
    """
    if result.scenario.warmup != "auto":
        return result
    warmup, _, kpis = _resolve(result)
    resolved = result.scenario.model_copy(update={"warmup": warmup})
    return dataclasses.replace(result, scenario=resolved, kpis=kpis)


def summarize_run(result: RunResult, label: str = "") -> RunSummary:
    """Return the small summary of one run (applying ``warmup: auto`` first)."""
    warmup, at_limit, kpis = _resolve(result)
    kpis.update(extra_kpis(result.frames, warmup, result.scenario.metrics.interval))
    return RunSummary(
        label=label,
        seed=result.seed,
        replication=result.replication,
        kpis=kpis,
        warmup=float(warmup),
        warmup_auto=result.scenario.warmup == "auto",
        warmup_at_limit=at_limit,
        stations=tuple(result.frames["station_stats"].to_dict("records")),
        violations=tuple(result.audit.violations),
        runtime=result.runtime,
    )


def run_task(task: RunTask) -> RunResult:
    """Run one task and return its full result, with ``warmup: auto`` applied (for any executor)."""
    return apply_auto_warmup(run(task.load(), task.seed, replication=task.replication))


def summary_task(task: RunTask) -> RunSummary:
    """Run one task and return only its :class:`RunSummary` (small: no frames travel back)."""
    result = run(task.load(), task.seed, replication=task.replication)
    return summarize_run(result, task.label)


# --- replications of one scenario -----------------------------------------------------------------
def run_many(
    scenario: Scenario,
    replications: int | None = None,
    *,
    seed: int | None = None,
    progress: ReplicationProgress | None = None,
    executor: Executor | None = None,
) -> list[RunResult]:
    """Run independent replications 0..n-1 of ``scenario`` and return them in order.

    Without an ``executor`` they run in this process, one after another, and ``progress``
    sees each replication advance; with one, they run wherever it runs them and ``progress``
    is called as ``progress(i, horizon, horizon)`` when replication ``i`` finishes. Results are
    the same either way. ``warmup: auto`` is resolved per replication by MSER-5
    (:func:`apply_auto_warmup`).
    """
    n = scenario.replications if replications is None else replications
    if n < 1:
        raise ValueError(f"replications must be >= 1, got {n}")
    if executor is None:
        results = []
        for i in range(n):
            step = None if progress is None else (lambda now, h, i=i: progress(i, now, h))
            results.append(apply_auto_warmup(run(scenario, seed, replication=i, progress=step)))
        return results
    root = scenario.seed if seed is None else seed
    data = scenario.to_data()
    tasks = [RunTask(data, root, i, scenario.name) for i in range(n)]
    horizon = scenario.horizon
    finished = None
    if progress is not None:

        def finished(done: int, _total: int) -> None:
            progress(done - 1, horizon, horizon)

    return executor.map(run_task, tasks, progress=finished)


# --- variants -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One what-if variant: a label, its validated scenario and the settings that made it.

    ``settings`` holds the varied ``(key path, value as given)`` pairs; ``source`` the
    scenario file it came from (or ``""``).
    """

    label: str
    scenario: Scenario
    settings: tuple[tuple[str, Any], ...] = ()
    source: str = ""

    def value(self, path: str) -> Any:
        """Return the validated scenario's value at a dotted ``path`` (units resolved)."""
        return lookup(self.scenario.to_data(), path)


def lookup(data: Any, path: str) -> Any:
    """Return the value at a dotted ``path`` of scenario data, or None if there is none.

    List entries are picked by index or by ``name`` / ``code``, as overrides pick them
    (``payments.gateways.card-a.servers``).
    """
    node = data
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list):
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            match = [
                item
                for item in node
                if isinstance(item, Mapping) and part in (item.get("name"), item.get("code"))
            ]
            if not match:
                return None
            node = match[0]
        else:
            return None
    return node


def split_values(text: str) -> list[str]:
    """Split ``"8,12,{exponential: {mean: 5ms}}"`` on the commas outside brackets and quotes."""
    values: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_vary(text: str) -> tuple[str, list[str]]:
    """Parse ``"stations.app.servers=8,12,16"`` into ``("stations.app.servers", ["8", ...])``.

    Raises ``ValueError`` naming the problem: no ``=``, an empty key, an empty or repeated
    value.
    """
    if "=" not in text:
        raise ValueError(f"--vary {text!r} is not of the form key.path=value1,value2,...")
    path, _, rest = text.partition("=")
    path = path.strip()
    if not path:
        raise ValueError(f"--vary {text!r} has no key path before '='")
    values = split_values(rest)
    if any(not v for v in values):
        raise ValueError(f"--vary {text!r} has an empty value (values are comma-separated)")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"--vary {text!r} repeats the value {repeated[0]!r}")
    return path, values


def _short_names(paths: Sequence[str]) -> dict[str, str]:
    last = [p.split(".")[-1] for p in paths]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(paths, last, strict=True)}


def grid_variants(
    path: str | Path,
    vary: Sequence[tuple[str, Sequence[str]]],
    overrides: Sequence[str] = (),
    *,
    prefix: str = "",
) -> list[Variant]:
    """Return one variant per combination of the varied values (the grid), in order.

    Each variant is ``load_scenario(path, [*overrides, "key=value", ...])``: overrides applied
    before validation, so a bad value raises :class:`ScenarioError` naming the file and the key
    path. The first value of every key makes the first variant (the baseline of paired
    differences). Labels read ``"servers=8"`` (``"servers=8, pool=20"`` for a grid); with a
    ``prefix`` (the scenario's name) ``"baseline [servers=8]"``.
    """
    paths = [p for p, _ in vary]
    if len(set(paths)) != len(paths):
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"--vary names {repeated[0]!r} more than once")
    short = _short_names(paths)
    variants = []
    for combo in itertools.product(*[values for _, values in vary]):
        settings = tuple(zip(paths, combo, strict=True))
        texts = [f"{p}={v}" for p, v in settings]
        scenario = load_scenario(path, [*overrides, *texts])
        label = ", ".join(f"{short[p]}={v}" for p, v in settings)
        if prefix:
            label = f"{prefix} [{label}]" if label else prefix
        variants.append(Variant(label or scenario.name, scenario, settings, str(path)))
    return variants


def scenario_variants(
    paths: Sequence[str | Path],
    vary: Sequence[tuple[str, Sequence[str]]] = (),
    overrides: Sequence[str] = (),
) -> list[Variant]:
    """Return the variants of several scenario files (each crossed with the ``vary`` grid).

    One file and a grid gives the grid's variants; several files are labelled by scenario
    name (the file name when two names clash).
    """
    if len(paths) == 1:
        return _own_stores(grid_variants(paths[0], vary, overrides))
    bases = [load_scenario(p, overrides) for p in paths]
    names = [s.name for s in bases]
    stems = [Path(p).stem for p in paths]
    labels = [n if names.count(n) == 1 else s for n, s in zip(names, stems, strict=True)]
    labels = [x if labels.count(x) == 1 else f"{x} ({i + 1})" for i, x in enumerate(labels)]
    variants: list[Variant] = []
    for path, label, base in zip(paths, labels, bases, strict=True):
        if vary:
            variants.extend(grid_variants(path, vary, overrides, prefix=label))
        else:
            variants.append(Variant(label, base, (), str(path)))
    return _own_stores(variants)


def _own_stores(variants: Sequence[Variant]) -> list[Variant]:
    """Give each variant its own SQLite file (``-v1``, ``-v2``, ...) when two name the same one.

    Variants run side by side on a process pool: on one file they would delete and write one
    another's shop. Variants whose files differ already are returned as they are.
    """
    files = [_store_file(v.scenario) for v in variants]
    named = [f for f in files if f is not None]
    if len(set(named)) == len(named):
        return list(variants)
    return [
        replace(v, scenario=with_own_store(v.scenario, f"v{i + 1}")) for i, v in enumerate(variants)
    ]


def _store_file(scenario: Scenario) -> str | None:
    """Return the SQLite file a scenario's shop is kept in (None: memory or SQLite in memory)."""
    file = scenario.storage.file
    return None if file is None else str(Path(file).resolve())


def with_own_store(scenario: Scenario, tag: str) -> Scenario:
    """Return ``scenario`` with its SQLite file, if it names one, tagged ``<stem>-<tag><suffix>``.

    Variants of a comparison (and the capacities a plan tries) run side by side: each needs a
    store file of its own, or they would write to one another's shop.
    """
    storage = scenario.storage
    if storage.file is None:
        return scenario
    path = Path(storage.file)
    tagged = str(path.with_name(f"{path.stem}-{tag}{path.suffix}"))
    return scenario.model_copy(update={"storage": storage.model_copy(update={"path": tagged})})


def station_of_path(path: str) -> str | None:
    """Return the engine's station name a capacity key path belongs to, or None.

    ``stations.app.servers`` -> ``"app"``, ``stations.database.pool`` -> ``"database"``,
    ``payments.gateways.card-a.servers`` -> ``"gateway:card-a"``,
    ``fulfilment.warehouses.east.workers`` -> ``"warehouse:east"``.
    """
    parts = path.split(".")
    if len(parts) >= 2 and parts[0] == "stations" and parts[1] in ("app", "database", "cache"):
        return parts[1]
    if len(parts) >= 3 and parts[:2] == ["payments", "gateways"]:
        return f"gateway:{parts[2]}"
    if len(parts) >= 3 and parts[:2] == ["fulfilment", "warehouses"]:
        return f"warehouse:{parts[2]}"
    return None


# --- replications of variants, with optional sequential stopping ----------------------------------
def kpi_values(summaries: Sequence[RunSummary], kpi: str) -> np.ndarray:
    """Return one KPI's value per replication (NaN where missing; 0 for a missing count)."""
    default = 0.0 if missing_is_zero(kpi, ZERO_FILL) else float("nan")
    return np.array([s.flat.get(kpi, default) for s in summaries], dtype=float)


def _ci(values: np.ndarray, confidence: float = 0.95) -> MeanCI:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, nan, 0)
    return mean_ci(finite, confidence)


def _planned(
    results: Mapping[str, Sequence[RunSummary]], kpis: Sequence[str], precision: float
) -> int:
    """Return the replications every watched KPI of every variant needs (at least the current).

    A KPI can be missing (NaN) in some replications, e.g. the checkout latency of a run with no
    checkout: its interval then rests on fewer values than replications were run. The values
    it still needs are scaled by the share of replications that gave one, so a KPI whose
    interval is too wide always asks for more replications than were run.
    """
    check_kpis((s for rows in results.values() for s in rows), kpis, "precision KPI")
    current = min(len(v) for v in results.values())
    needed = current
    for summaries in results.values():
        have = len(summaries)
        for kpi in kpis:
            ci = _ci(kpi_values(summaries, kpi))
            if ci.n == 0:
                continue  # no data at all: no number of replications makes it precise
            values = replications_needed(ci, precision)
            if values > ci.n:  # not precise yet: ceil(values * have / n) > have
                needed = max(needed, -(-values * have // ci.n))
    return needed


@dataclass(frozen=True)
class Replicated:
    """The summaries of each variant (by label, in replication order) and how they were reached.

    ``rounds`` lists the replication count after each round (one round without a precision
    target); ``precise`` is None without a target, else whether it was met within the cap.
    """

    summaries: dict[str, list[RunSummary]]
    rounds: tuple[int, ...]
    precise: bool | None


def replicate(
    variants: Sequence[Variant],
    replications: int,
    *,
    seed: int | None = None,
    executor: Executor | None = None,
    precision: float | None = None,
    precision_kpis: Sequence[str] = DEFAULT_PRECISION_KPIS,
    max_replications: int = DEFAULT_MAX_REPLICATIONS,
    progress: TaskProgress | None = None,
) -> Replicated:
    """Run ``replications`` of every variant with common random numbers (more if asked).

    Replication ``i`` of every variant runs with the same root ``seed`` (default: the first
    variant's scenario seed) and replication index ``i``. With a ``precision`` (relative
    half-width, e.g. 0.05), rounds of replications are added to every variant alike until each
    of ``precision_kpis`` has a 95 % CI no wider than that relative to its mean in every variant,
    or ``max_replications`` is reached. Each round asks for ``n (r / precision)^2``
    replications (the largest over KPIs and variants; more when a KPI is missing in some of
    them, see :func:`_planned`), a pure function of the results so far,
    so the stopping point does not depend on the executor. ``progress(done, total)`` counts runs.
    """
    if not variants:
        raise ValueError("replicate needs at least one variant, got none")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise ValueError(f"variant labels must be unique, got {labels}")
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    if precision is not None:
        if not 0.0 < precision < 1.0:
            raise ValueError(f"precision must be in (0, 1), got {precision!r}")
        if max_replications < replications:
            raise ValueError(
                f"max_replications ({max_replications}) must be >= replications ({replications})"
            )
    root = variants[0].scenario.seed if seed is None else seed
    executor = executor if executor is not None else InProcessExecutor()
    variants = _own_stores(variants)
    data = [v.scenario.to_data() for v in variants]
    results: dict[str, list[RunSummary]] = {v.label: [] for v in variants}
    rounds: list[int] = []
    done_before = 0
    have, want = 0, replications
    while True:
        tasks = [
            RunTask(d, root, i, v.label)
            for i in range(have, want)
            for v, d in zip(variants, data, strict=True)
        ]
        total = done_before + len(tasks)
        step = None
        if progress is not None:

            def step(done: int, _n: int, base: int = done_before, total: int = total) -> None:
                progress(base + done, total)

        for summary in executor.map(summary_task, tasks, progress=step):
            results[summary.label].append(summary)
        done_before = total
        have = want
        rounds.append(have)
        if precision is None:
            return Replicated(results, tuple(rounds), None)
        needed = _planned(results, precision_kpis, precision)
        if needed <= have:
            return Replicated(results, tuple(rounds), True)
        if have >= max_replications:
            return Replicated(results, tuple(rounds), False)
        want = min(needed, max_replications)


# --- differences ----------------------------------------------------------------------------------
def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[MeanCI, float]:
    """Return the CI of the mean paired difference ``a_i - b_i`` and its two-sided p-value.

    Pairs where either value is missing (NaN) are left out. The p-value is the paired t-test's
    (``H0: mean difference = 0``); for differences with no spread it is 0 (a constant non-zero
    difference) or 1 (all zero); NaN with fewer than two pairs.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    ci = _ci(d, confidence)
    if d.size < 2:
        return ci, float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return ci, 0.0 if ci.mean != 0.0 else 1.0
    t = ci.mean / (sd / math.sqrt(d.size))
    return ci, float(2.0 * _scipy_stats.t.sf(abs(t), d.size - 1))


def unpaired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> MeanCI:
    """Return Welch's CI of ``mean(a) - mean(b)`` treating the samples as independent.

    What the difference's interval would be without common random numbers; ``n`` is the
    smaller sample. Half-width NaN when either sample has fewer than two values.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = float("nan")
    if a.size == 0 or b.size == 0:
        return MeanCI(nan, nan, nan, nan, 0)
    diff = float(a.mean() - b.mean())
    n = int(min(a.size, b.size))
    if a.size < 2 or b.size < 2:
        return MeanCI(diff, nan, nan, nan, n)
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return MeanCI(diff, 0.0, diff, diff, n)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(_scipy_stats.t.ppf((1.0 + confidence) / 2.0, df)) * se
    return MeanCI(diff, half, diff - half, diff + half, n)


def _significant(ci: MeanCI) -> bool:
    return math.isfinite(ci.half_width) and (ci.low > 0.0 or ci.high < 0.0)


# --- the comparison -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """Which variant wins on one KPI, and whether its win over every other variant is established.

    ``runner_up`` has the second-best mean. The best is compared with each of the other
    variants with data by a paired t-test; with ``m`` of them each test is Bonferroni-adjusted
    (its interval at ``level = 1 - (1 - 0.95) / m``, its p-value times ``m``), so that the
    claim "better than all of them" holds with 95 % confidence jointly. ``contender`` is the
    variant of the least settled of those tests (the largest adjusted p-value; the runner-up
    when two variants have data), ``difference`` the CI of ``best - contender`` at ``level``
    and ``p_value`` its adjusted p-value. ``established`` is True when every one of the
    intervals excludes zero. ``tie`` marks KPIs whose values are
    identical in every variant and replication. ``best`` is None without data.
    """

    kpi: str
    direction: str
    best: str | None
    runner_up: str | None
    best_mean: float
    runner_up_mean: float
    difference: MeanCI
    p_value: float
    established: bool
    tie: bool
    variants_with_data: int
    contender: str | None = None
    level: float = 0.95

    @property
    def confidence(self) -> float:
        """Return ``1 - p`` (NaN if unknown): the strength of the evidence, not a probability.

        ``1 - p`` is not the probability that the win is real; ``established`` is the
        verdict at 95 % confidence.
        """
        return 1.0 - self.p_value if math.isfinite(self.p_value) else float("nan")


@dataclass(frozen=True)
class Comparison:
    """Every variant's replication summaries, run with common random numbers.

    ``variants[0]`` is the baseline of the paired differences; ``parameters`` are the varied
    key paths; ``replications`` the final count per variant; ``rounds`` and ``precise`` as in
    :class:`Replicated`; ``executor`` describes where the runs ran.
    """

    variants: tuple[Variant, ...]
    summaries: dict[str, list[RunSummary]]
    seed: int
    replications: int
    parameters: tuple[str, ...] = ()
    rounds: tuple[int, ...] = ()
    precise: bool | None = None
    precision: float | None = None
    precision_kpis: tuple[str, ...] = ()
    confidence: float = 0.95
    executor: str = "in-process"

    @property
    def baseline(self) -> Variant:
        """Return the first variant, the baseline of the paired differences."""
        return self.variants[0]

    def values(self, label: str, kpi: str) -> np.ndarray:
        """Return one variant's per-replication values of ``kpi`` (replication order)."""
        return kpi_values(self.summaries[label], kpi)

    def kpis(self) -> list[str]:
        """Return every numeric KPI key that appears in any replication, in first-seen order."""
        keys: dict[str, None] = {}
        for variant in self.variants:
            for summary in self.summaries[variant.label]:
                keys.update(dict.fromkeys(summary.flat))
        return list(keys)

    def stat(self, label: str, kpi: str) -> MeanCI:
        """Return one variant's mean and confidence interval of ``kpi``."""
        return _ci(self.values(label, kpi), self.confidence)

    def difference(self, label: str, kpi: str, against: str | None = None) -> tuple[MeanCI, float]:
        """Return the paired CI of ``label - against`` (default: the baseline) and its p-value."""
        other = self.baseline.label if against is None else against
        return paired_difference(self.values(label, kpi), self.values(other, kpi), self.confidence)

    def table(self) -> pd.DataFrame:
        """Return the tidy table: one row per variant and KPI.

        Columns: ``variant``, one column per varied key path (the validated value), ``kpi``,
        ``n``, ``mean``, ``half_width``, ``low``, ``high``, then the paired difference against
        the first variant ``diff``, ``diff_half_width``, ``diff_low``, ``diff_high``,
        ``p_value``, ``significant`` (the CI excludes zero), and ``unpaired_half_width``
        (Welch's half-width of the same difference, what it would be without common random
        numbers). The baseline's difference columns are NaN and ``significant`` False.
        """
        return self._tidy.copy()

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        rows = []
        base = self.baseline.label
        keys = self.kpis()
        for variant in self.variants:
            settings = {p: _plain(variant.value(p)) for p in self.parameters}
            for kpi in keys:
                s = self.stat(variant.label, kpi)
                nan = float("nan")
                diff, p, unpaired = MeanCI(nan, nan, nan, nan, 0), nan, nan
                if variant.label != base:
                    diff, p = self.difference(variant.label, kpi)
                    unpaired = unpaired_difference(
                        self.values(variant.label, kpi), self.values(base, kpi), self.confidence
                    ).half_width
                rows.append(
                    {
                        "variant": variant.label,
                        **settings,
                        "kpi": kpi,
                        "n": s.n,
                        "mean": s.mean,
                        "half_width": s.half_width,
                        "low": s.low,
                        "high": s.high,
                        "diff": diff.mean,
                        "diff_half_width": diff.half_width,
                        "diff_low": diff.low,
                        "diff_high": diff.high,
                        "p_value": p,
                        "significant": variant.label != base and _significant(diff),
                        "unpaired_half_width": unpaired,
                    }
                )
        return pd.DataFrame(rows)

    def verdict(self, kpi: str, direction: str | None = None) -> Verdict:
        """Return which variant wins on ``kpi`` and whether its win over every other one holds."""
        direction = direction or KPI_DIRECTIONS.get(kpi, "lower")
        if direction not in ("lower", "higher"):
            raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
        stats = [(v.label, self.stat(v.label, kpi)) for v in self.variants]
        with_data = [(label, s) for label, s in stats if s.n > 0 and math.isfinite(s.mean)]
        nan = float("nan")
        empty = MeanCI(nan, nan, nan, nan, 0)
        if not with_data:
            return Verdict(kpi, direction, None, None, nan, nan, empty, nan, False, False, 0)
        sign = 1.0 if direction == "higher" else -1.0
        ranked = sorted(with_data, key=lambda item: -sign * item[1].mean)  # stable: ties keep order
        best, best_stat = ranked[0]
        if len(ranked) == 1:
            return Verdict(
                kpi, direction, best, None, best_stat.mean, nan, empty, nan, False, False, 1
            )
        runner, runner_stat = ranked[1]
        rivals = len(ranked) - 1
        level = 1.0 - (1.0 - self.confidence) / rivals
        values = self.values(best, kpi)
        tests = []  # (rival, CI of best - rival at ``level``, Bonferroni-adjusted p-value)
        for rival, _ in ranked[1:]:
            ci, p = paired_difference(values, self.values(rival, kpi), level)
            tests.append((rival, ci, min(1.0, p * rivals)))
        # The least settled test decides; an unknown p-value (fewer than two pairs) is the least.
        contender, diff, p = max(tests, key=lambda t: math.inf if math.isnan(t[2]) else t[2])
        established = all(_significant(ci) and sign * ci.mean > 0 for _, ci, _ in tests)
        columns = [self.values(label, kpi) for label, _ in with_data]
        tie = all(np.array_equal(columns[0], c, equal_nan=True) for c in columns[1:])
        return Verdict(
            kpi,
            direction,
            best,
            runner,
            best_stat.mean,
            runner_stat.mean,
            diff,
            p,
            established,
            tie,
            len(with_data),
            contender,
            level,
        )

    def verdicts(self, kpis: Iterable[str] | None = None) -> list[Verdict]:
        """Return a verdict per KPI (default: those of :data:`KPI_DIRECTIONS` that have data)."""
        keys = list(KPI_DIRECTIONS) if kpis is None else list(kpis)
        present = set(self.kpis())
        return [self.verdict(k) for k in keys if k in present]

    def warmups(self) -> dict[str, list[float]]:
        """Return each variant's warm-up cut per replication (seconds)."""
        return {label: [s.warmup for s in rows] for label, rows in self.summaries.items()}

    def violations(self) -> list[tuple[str, int, str]]:
        """Return every audit violation as ``(variant, replication, violation)``."""
        return [
            (label, s.replication, v)
            for label, rows in self.summaries.items()
            for s in rows
            for v in s.violations
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | str):
        return value
    return str(value)


def compare(
    variants: Sequence[Variant],
    replications: int,
    *,
    seed: int | None = None,
    executor: Executor | None = None,
    precision: float | None = None,
    precision_kpis: Sequence[str] = DEFAULT_PRECISION_KPIS,
    max_replications: int = DEFAULT_MAX_REPLICATIONS,
    progress: TaskProgress | None = None,
) -> Comparison:
    """Run every variant with common random numbers and return the :class:`Comparison`.

    See :func:`replicate` for the replications, seeds and sequential stopping. The varied key
    paths are taken from the variants' settings.
    """
    if len(variants) < 2:
        raise ValueError(f"a comparison needs at least two variants, got {len(variants)}")
    variants = _own_stores(variants)  # as replicate() would: the comparison shows the files used
    done = replicate(
        variants,
        replications,
        seed=seed,
        executor=executor,
        precision=precision,
        precision_kpis=precision_kpis,
        max_replications=max_replications,
        progress=progress,
    )
    parameters: dict[str, None] = {}
    for variant in variants:
        parameters.update(dict.fromkeys(p for p, _ in variant.settings))
    return Comparison(
        variants=tuple(variants),
        summaries=done.summaries,
        seed=variants[0].scenario.seed if seed is None else seed,
        replications=done.rounds[-1],
        parameters=tuple(parameters),
        rounds=done.rounds,
        precise=done.precise,
        precision=precision,
        precision_kpis=tuple(precision_kpis) if precision is not None else (),
        executor=(executor.describe() if executor is not None else "in-process"),
    )
