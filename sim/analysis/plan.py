"""Capacity planning: the smallest capacity that meets every SLO with 95 % confidence.

Given service-level objectives (:func:`parse_slo`: ``page_p95<=100ms``,
``payment_success>=0.97``) and an integer capacity to size (``stations.app.servers``),
:func:`plan` searches for the smallest value whose every objective is met *with 95 %
confidence*: the confidence bound on the far side of the target must still meet it (the CI's
upper end for ``<=``, its lower end for ``>=``); an interval that straddles the target is not
good enough.

The search is seeded by the analytic twin. A pilot evaluation at the scenario's own value
measures the sized station's arrival rate and mean service; :func:`twin_guess` turns them into
the smallest M/M/c server count (Erlang C, :func:`sim.analysis.theory.smallest_servers`,
corrected for the service's variability by Allen-Cunneen) whose mean wait fits the objectives.
From that guess the search gallops (steps 1, 2, 4, ... down if the guess meets the objectives,
up if not) until it brackets the answer, then bisects: a handful of evaluations, not a grid.
Every evaluation runs the same replications (common random numbers), so neighbouring
capacities are compared on the same random numbers. The search assumes more capacity is never
worse; :attr:`Plan.monotone` says whether the evaluations agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.analysis.compare import (
    DEFAULT_MAX_REPLICATIONS,
    RunSummary,
    Variant,
    check_kpis,
    kpi_values,
    lookup,
    replicate,
    station_of_path,
    with_own_store,
)
from sim.analysis.executors import Executor, TaskProgress
from sim.analysis.stats import MeanCI, mean_ci
from sim.analysis.theory import smallest_servers
from sim.scenario import Scenario, apply_overrides, parse_scenario
from sim.scenario.units import parse_duration, parse_rate

__all__ = [
    "DEFAULT_UPPER",
    "SLO_ALIASES",
    "Evaluation",
    "Plan",
    "Slo",
    "TwinGuess",
    "capacity_value",
    "parse_slo",
    "plan",
    "scenario_slos",
    "station_scv",
    "twin_guess",
]

DEFAULT_UPPER = 1024
"""The largest capacity the search tries unless told otherwise."""

TWIN_LATENCY_SHARE = 0.1
"""Without a wait objective, the twin allows a queue wait of this share of the tightest
latency objective."""

SLO_ALIASES: dict[str, str] = {
    "page_mean": "latency.mean",
    "page_p50": "latency.p50",
    "page_p95": "latency.p95",
    "page_p99": "latency.p99",
    "checkout_mean": "checkout_latency.mean",
    "checkout_p50": "checkout_latency.p50",
    "checkout_p95": "checkout_latency.p95",
    "checkout_p99": "checkout_latency.p99",
    "payment_success": "payment_success",
    "conversion": "conversion",
    "cache_hit_rate": "cache_hit_rate",
    "throughput": "throughput",
    "app_wait": "wait.app",
    "database_wait": "wait.database",
    "cache_wait": "wait.cache",
}
"""Short names of objectives and the KPI each one bounds (any dotted KPI key works too)."""

_TIME_PREFIXES = ("latency.", "checkout_latency.", "latency_by_page.", "wait.", "service.")
_RATE_KPIS = ("throughput", "sessions_per_second")
_SLO_RE = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*(<=|>=|=<|=>|<|>|=)\s*(.+?)\s*$")
_RATIO_KPIS = ("payment_success", "conversion", "cache_hit_rate")
_RATIO_SUFFIXES = (".utilisation", ".hit_rate")
_RUN_SETTINGS = ("seed", "replications")
_WAIT_STATIONS = {"wait.app": "app", "wait.database": "database", "wait.cache": "cache"}


# --- objectives -----------------------------------------------------------------------------------
def _is_time(kpi: str) -> bool:
    return kpi.startswith(_TIME_PREFIXES)


@dataclass(frozen=True)
class Slo:
    """One objective: ``kpi`` (dotted key) compared (``<=`` or ``>=``) with ``target``.

    Targets are in the KPI's unit: seconds for latencies and waits, a ratio (0..1) for
    success rates and conversion, per second for throughput. ``name`` and ``text`` (the
    target) are as the user wrote them.
    """

    name: str
    kpi: str
    comparison: str
    target: float
    text: str = ""

    def bound(self, ci: MeanCI) -> float:
        """Return the interval's end on the far side of the target (upper for ``<=``)."""
        return ci.high if self.comparison == "<=" else ci.low

    def met(self, ci: MeanCI) -> bool | None:
        """Return True when the objective is met with the interval's confidence.

        None when there is no interval (fewer than two replications with data).
        """
        bound = self.bound(ci)
        if ci.n < 2 or not math.isfinite(bound):
            return None
        return bound <= self.target if self.comparison == "<=" else bound >= self.target

    @property
    def is_time(self) -> bool:
        """Return True when the KPI is a time (seconds)."""
        return _is_time(self.kpi)

    def __str__(self) -> str:
        """Return ``"page_p95 <= 100ms"`` (the target as written, else in seconds / a ratio)."""
        target = self.text or (f"{self.target:g}s" if self.is_time else f"{self.target:g}")
        return f"{self.name} {self.comparison} {target}"


def _parse_target(kpi: str, text: str, source: str) -> float:
    value = text.strip()
    try:
        if _is_time(kpi):
            return parse_duration(value)
        if kpi in _RATE_KPIS:
            return parse_rate(value)
        percent = value.endswith("%")
        number = float(value.removesuffix("%").strip()) / (100.0 if percent else 1.0)
    except ValueError as exc:
        raise ValueError(f"--slo {source!r}: {exc}") from None
    if not math.isfinite(number):
        raise ValueError(f"--slo {source!r}: the target must be a finite number, got {value!r}")
    return number


def parse_slo(text: str) -> Slo:
    """Parse ``"page_p95<=100ms"``, ``"payment_success>=0.97"`` or ``"latency.p99<=1s"``.

    The name is a short name from :data:`SLO_ALIASES` or a dotted KPI key; the comparison is
    ``<=`` or ``>=``; the target takes units (``100ms``, ``2s``, ``97%``, ``50/s``). Raises
    ``ValueError`` with one message naming the problem.
    """
    match = _SLO_RE.match(text)
    if match is None:
        raise ValueError(
            f"--slo {text!r} is not of the form NAME<=VALUE or NAME>=VALUE "
            "(e.g. page_p95<=100ms, payment_success>=0.97)"
        )
    name, comparison, value = match.groups()
    comparison = {"=<": "<=", "=>": ">="}.get(comparison, comparison)
    if comparison not in ("<=", ">="):
        raise ValueError(f"--slo {text!r}: use <= or >=, not {comparison!r}")
    kpi = SLO_ALIASES.get(name, name)
    if name not in SLO_ALIASES and "." not in name and name not in ("throughput",):
        raise ValueError(
            f"--slo {text!r}: unknown objective {name!r} "
            f"(use one of: {', '.join(SLO_ALIASES)}, or a dotted KPI key such as latency.p99)"
        )
    target = _parse_target(kpi, value, text)
    if target < 0:
        raise ValueError(f"--slo {text!r}: the target must not be negative")
    share = kpi in _RATIO_KPIS or kpi.endswith(_RATIO_SUFFIXES)
    if share and comparison == ">=" and target > 1:  # (<= above 1 always holds: harmless)
        raise ValueError(
            f"--slo {text!r}: {kpi} is a share (0 to 1, or 0 % to 100 %); "
            f"no run reaches {value.strip()}"
        )
    return Slo(name, kpi, comparison, target, value.strip())


def scenario_slos(scenario: Scenario) -> list[Slo]:
    """Return the scenario's own ``slo`` section as objectives (page p95, checkout p95, success)."""
    slo = scenario.slo
    return [
        Slo("page_p95", "latency.p95", "<=", float(slo.page_p95), _ms(slo.page_p95)),
        Slo(
            "checkout_p95",
            "checkout_latency.p95",
            "<=",
            float(slo.checkout_p95),
            _ms(slo.checkout_p95),
        ),
        Slo("payment_success", "payment_success", ">=", float(slo.payment_success)),
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:g}ms" if seconds < 1.0 else f"{seconds:g}s"


# --- the analytic twin's first guess --------------------------------------------------------------
def capacity_value(scenario: Scenario, path: str) -> int:
    """Return the integer capacity at ``path`` of a scenario; ``ValueError`` if it is not one.

    Usually the servers, pool or workers of a station, gateway or warehouse; any other integer
    of the shop works too (``catalog.products``), without the analytic twin's first guess.
    The run's own settings (seed, replications) are not the shop's and are refused.
    """
    if path in _RUN_SETTINGS:
        raise ValueError(
            f"--size {path!r} is a setting of the run, not a capacity of the shop; size e.g. "
            "stations.app.servers, stations.database.pool, payments.gateways.NAME.servers or "
            "fulfilment.warehouses.NAME.workers"
        )
    value = lookup(scenario.to_data(), path)
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "nothing" if value is None else repr(value)
        raise ValueError(
            f"--size {path!r} is not an integer capacity of the scenario (found {shown}); "
            "size e.g. stations.app.servers, stations.database.pool, "
            "payments.gateways.NAME.servers or fulfilment.warehouses.NAME.workers"
        )
    return value


def station_scv(scenario: Scenario, station: str) -> float:
    """Return the squared coefficient of variation of a station's service distribution.

    1.0 (exponential) for a station the scenario does not describe.
    """
    stations = scenario.stations
    table: dict[str, Any] = {
        "app": stations.app.service,
        "database": stations.database.query,
        "cache": stations.cache.service,
    }
    table.update({f"gateway:{g.name}": g.latency for g in scenario.payments.gateways})
    table.update({f"warehouse:{w.name}": w.pick for w in scenario.fulfilment.warehouses})
    dist = table.get(station)
    return 1.0 if dist is None else float(dist.scv)


@dataclass(frozen=True)
class TwinGuess:
    """The analytic twin's first guess and what it rests on.

    ``arrival_rate`` (per second) and ``mean_service`` (seconds) are measured at ``station``
    in the pilot; ``scv`` is the service distribution's; ``max_wait`` the mean wait in queue
    the guess must meet (``basis`` says where it comes from); ``servers`` is the smallest M/M/c
    (Allen-Cunneen corrected) server count meeting it, or None when nothing could be measured.
    """

    station: str | None
    arrival_rate: float
    mean_service: float
    scv: float
    max_wait: float
    basis: str
    servers: int | None

    @property
    def offered_load(self) -> float:
        """Return ``lambda S`` in Erlangs (NaN without data)."""
        return self.arrival_rate * self.mean_service


def _pooled(summaries: Sequence[RunSummary], station: str) -> tuple[float, float]:
    arrivals = elapsed = service = completions = 0.0
    for summary in summaries:
        for row in summary.stations:
            if row.get("name") == station:
                arrivals += float(row["arrivals"])
                elapsed += float(row["elapsed"])
                service += float(row["total_service"])
                completions += float(row["completions"])
    rate = arrivals / elapsed if elapsed > 0 else 0.0
    mean = service / completions if completions > 0 else 0.0
    return rate, mean


def twin_guess(
    scenario: Scenario, parameter: str, slos: Sequence[Slo], pilot: Sequence[RunSummary]
) -> TwinGuess:
    """Return the analytic twin's first guess of the capacity at ``parameter``.

    Measures the sized station's arrival rate ``lambda`` and mean service ``S`` over the
    ``pilot`` replications; picks a wait target (the station's own ``*_wait`` objective if
    there is one, else :data:`TWIN_LATENCY_SHARE` of the tightest latency objective, else one
    mean service time); returns the smallest ``c`` whose M/M/c mean wait, scaled by the
    Allen-Cunneen factor ``(1 + scv) / 2``, meets it.
    """
    station = station_of_path(parameter)
    nan = float("nan")
    if station is None:
        return TwinGuess(None, nan, nan, nan, nan, f"{parameter} is not a station", None)
    rate, service = _pooled(pilot, station)
    scv = station_scv(scenario, station)
    own = [s for s in slos if _WAIT_STATIONS.get(s.kpi) == station and s.comparison == "<="]
    latency = [s for s in slos if s.is_time and s.comparison == "<=" and s.target > 0]
    if own:
        max_wait = min(s.target for s in own)
        basis = f"the {own[0].name} objective"
    elif latency:
        tightest = min(latency, key=lambda s: s.target)
        max_wait = TWIN_LATENCY_SHARE * tightest.target
        basis = f"{TWIN_LATENCY_SHARE:.0%} of the tightest latency objective ({tightest})"
    else:
        max_wait = service
        basis = "one mean service time"
    if rate <= 0 or service <= 0 or not max_wait > 0:
        return TwinGuess(station, rate, service, scv, max_wait, "no traffic measured", None)
    mm_target = max_wait * 2.0 / (1.0 + scv)
    servers = smallest_servers(rate, 1.0 / service, max_wait=mm_target)
    return TwinGuess(station, rate, service, scv, max_wait, basis, servers)


# --- evaluations and the search -------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """The objectives at one capacity: per-objective mean and CI, met or not.

    ``step`` is the evaluation's place in the search (0 = the pilot). ``met`` maps an
    objective's name to True / False / None (no data: counts as not met).
    """

    capacity: int
    step: int
    summaries: tuple[RunSummary, ...]
    stats: dict[str, MeanCI]
    met: dict[str, bool | None]

    @property
    def all_met(self) -> bool:
        """Return True when every objective is met with 95 % confidence."""
        return all(v is True for v in self.met.values())

    def values(self, kpi: str) -> np.ndarray:
        """Return the KPI's value per replication."""
        return kpi_values(self.summaries, kpi)


@dataclass(frozen=True)
class Plan:
    """The planner's answer, the analytic twin's guess and every evaluation on the way.

    ``answer`` is the smallest capacity in ``[lower, upper]`` meeting every objective with
    95 % confidence, None if even ``upper`` does not. ``evaluations`` are in search order;
    ``start`` is where the search began (the twin's guess clipped to the bounds).
    """

    scenario: Scenario
    parameter: str
    station: str | None
    slos: tuple[Slo, ...]
    twin: TwinGuess
    answer: int | None
    evaluations: tuple[Evaluation, ...]
    seed: int
    replications: int
    lower: int
    upper: int
    base_capacity: int
    start: int
    executor: str = "in-process"

    def evaluation(self, capacity: int) -> Evaluation:
        """Return the evaluation at ``capacity`` (KeyError if it was not evaluated)."""
        for evaluation in self.evaluations:
            if evaluation.capacity == capacity:
                return evaluation
        raise KeyError(f"capacity {capacity} was not evaluated")

    @property
    def monotone(self) -> bool:
        """Return True when no capacity meets the objectives while a larger one misses them."""
        ordered = sorted(self.evaluations, key=lambda e: e.capacity)
        seen_pass = False
        for evaluation in ordered:
            if evaluation.all_met:
                seen_pass = True
            elif seen_pass:
                return False
        return True

    @property
    def runs(self) -> int:
        """Return the number of simulation runs the plan took."""
        return sum(len(e.summaries) for e in self.evaluations)

    def curve(self) -> pd.DataFrame:
        """Return one row per evaluated capacity (ascending) and objective.

        Columns: ``capacity, step, slo, kpi, comparison, target, n, mean, half_width, low,
        high, bound, met, all_met`` (``met`` is ``"yes"``, ``"no"`` or ``"no data"``).
        """
        rows = []
        for evaluation in sorted(self.evaluations, key=lambda e: e.capacity):
            for slo in self.slos:
                ci = evaluation.stats[slo.name]
                met = evaluation.met[slo.name]
                rows.append(
                    {
                        "capacity": evaluation.capacity,
                        "step": evaluation.step,
                        "slo": slo.name,
                        "kpi": slo.kpi,
                        "comparison": slo.comparison,
                        "target": slo.target,
                        "n": ci.n,
                        "mean": ci.mean,
                        "half_width": ci.half_width,
                        "low": ci.low,
                        "high": ci.high,
                        "bound": slo.bound(ci),
                        "met": "no data" if met is None else ("yes" if met else "no"),
                        "all_met": evaluation.all_met,
                    }
                )
        return pd.DataFrame(rows)


def _stats(values: np.ndarray) -> MeanCI:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, nan, 0)
    return mean_ci(finite)


def plan(
    scenario: Scenario,
    parameter: str,
    slos: Sequence[Slo],
    replications: int,
    *,
    seed: int | None = None,
    executor: Executor | None = None,
    lower: int = 1,
    upper: int = DEFAULT_UPPER,
    precision: float | None = None,
    max_replications: int = DEFAULT_MAX_REPLICATIONS,
    progress: TaskProgress | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> Plan:
    """Return the smallest value of ``parameter`` meeting every objective with 95 % confidence.

    ``scenario`` is the base (overrides already applied); each candidate is the base with
    ``parameter`` set, validated as any variant is. Every evaluation runs ``replications``
    (or, with a ``precision``, as many as the objectives' KPIs need, up to
    ``max_replications``) with the same seeds. The pilot evaluates the scenario's own value;
    the search starts at :func:`twin_guess` (the pilot's value when the twin has no guess),
    gallops to bracket the answer and bisects. ``on_evaluation`` sees each evaluation as it
    completes. Raises ``ValueError`` for bad bounds, no objectives or a ``parameter`` that is
    not an integer capacity.
    """
    if not slos:
        raise ValueError("plan needs at least one objective (--slo), got none")
    names = [s.name for s in slos]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"objective {repeated[0]!r} is given more than once")
    if replications < 2:
        raise ValueError(f"a 95 % interval needs at least 2 replications, got {replications}")
    base_capacity = capacity_value(scenario, parameter)
    if not 1 <= lower <= upper:
        raise ValueError(f"bounds must satisfy 1 <= min <= max, got min {lower}, max {upper}")
    root = scenario.seed if seed is None else seed
    data = scenario.to_data()
    short = parameter.split(".")[-1]
    evaluations: dict[int, Evaluation] = {}

    def candidate(capacity: int) -> Scenario:
        at = apply_overrides(data, {parameter: capacity})
        tried = parse_scenario(at, f"<{short}={capacity}>")
        return with_own_store(tried, f"{short}{capacity}")

    def evaluate(capacity: int) -> Evaluation:
        if capacity in evaluations:
            return evaluations[capacity]
        variant = Variant(f"{short}={capacity}", candidate(capacity), ((parameter, capacity),))
        done = replicate(
            [variant],
            replications,
            seed=root,
            executor=executor,
            precision=precision,
            precision_kpis=[s.kpi for s in slos],
            max_replications=max_replications,
            progress=progress,
        )
        summaries = tuple(done.summaries[variant.label])
        stats = {s.name: _stats(kpi_values(summaries, s.kpi)) for s in slos}
        met = {s.name: s.met(stats[s.name]) for s in slos}
        if not evaluations:  # the pilot: are the objectives' KPIs real?
            check_kpis(summaries, [s.kpi for s in slos], "--slo")
        evaluation = Evaluation(capacity, len(evaluations), summaries, stats, met)
        evaluations[capacity] = evaluation
        if on_evaluation is not None:
            on_evaluation(evaluation)
        return evaluation

    pilot = evaluate(base_capacity)
    twin = twin_guess(scenario, parameter, slos, pilot.summaries)
    start = twin.servers if twin.servers is not None else base_capacity
    start = min(max(start, lower), upper)
    answer = _search(lambda c: evaluate(c).all_met, start, lower, upper)
    return Plan(
        scenario=scenario,
        parameter=parameter,
        station=station_of_path(parameter),
        slos=tuple(slos),
        twin=twin,
        answer=answer,
        evaluations=tuple(sorted(evaluations.values(), key=lambda e: e.step)),
        seed=root,
        replications=replications,
        lower=lower,
        upper=upper,
        base_capacity=base_capacity,
        start=start,
        executor=executor.describe() if executor is not None else "in-process",
    )


def _search(ok: Callable[[int], bool], start: int, lower: int, upper: int) -> int | None:
    """Return the smallest ``c`` in ``[lower, upper]`` with ``ok(c)``, assuming monotone ``ok``.

    Gallop from ``start`` (down by 1, 2, 4, ... while ``ok``; up by 1, 2, 4, ... while not)
    to a bracket ``(fail, pass]``, then bisect it. None if ``ok(upper)`` is False.
    """
    if ok(start):
        passing, failing = start, lower - 1
        step = 1
        while passing > lower:
            probe = max(passing - step, lower)
            if ok(probe):
                passing = probe
                step *= 2
            else:
                failing = probe
                break
    else:
        failing, passing = start, None
        step = 1
        while failing < upper:
            probe = min(failing + step, upper)
            if ok(probe):
                passing = probe
                break
            failing = probe
            step *= 2
        if passing is None:
            return None
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if ok(middle):
            passing = middle
        else:
            failing = middle
    return passing
