"""Report folders of one run (one or more replications): summary.json, CSVs, PNGs, report.html.

Pure functions of results (ARCHITECTURE.md, principle 9): the caller picks an existing folder,
these functions write files into it and return their paths; nothing is printed.

- :func:`write_run_report` writes ``summary.json`` (KPIs, SLO verdicts, audit, the resolved
  scenario, seeds, version, runtime), one CSV per frame (all replications, with a
  ``replication`` column; requests sampled beyond :data:`MAX_REQUEST_ROWS` rows), the PNG plots
  and ``report.html``, one self-contained page with every plot embedded.
- :func:`rebuild_report` redraws the PNGs and ``report.html`` of a saved folder from its
  ``summary.json`` and CSVs alone, without simulating.
- :func:`format_summary` is the one-screen text summary the command line prints.
- :func:`station_twin` sets each station's simulated wait beside the analytic twin's prediction.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import sim
from sim.analysis.stats import (
    COUNT_KPIS,
    flatten_numeric,
    missing_is_zero,
    summarize_replications,
)
from sim.analysis.theory import mgc_wait, mmc
from sim.engine.metrics import (
    aggregate_request_series,
    interval_cut,
    is_aggregate,
    page_latency_quantiles,
)
from sim.engine.recorder import AGGREGATE_FRAMES, cache_from_stats
from sim.engine.runner import RunResult
from sim.reporting import plots
from sim.reporting.shared import (
    CSS,
    KPI_ROWS,
    PLOT_DPI,
    ReportFiles,
    escape,
    format_duration,
    format_half_width,
    format_value,
    html_table,
    jsonable,
)
from sim.scenario.schema import Breakdown, Scenario

__all__ = [
    "FRAME_NAMES",
    "MAX_REQUEST_ROWS",
    "ReportFiles",
    "format_summary",
    "rebuild_report",
    "station_twin",
    "write_run_report",
]

SUMMARY_FILE = "summary.json"
"""The run's figures and inputs."""

HTML_FILE = "report.html"
"""The self-contained report page."""

FRAME_NAMES = (
    "requests",
    "sessions",
    "payments",
    "order_events",
    "faults",
    "stations",
    "station_stats",
    "cache",
    "orders",
    "ledger",
    "request_series",
    "funnel",
)
"""The frames written as ``<name>.csv`` (the last two are derived from the full requests)."""

AGGREGATE_FRAME_NAMES = (*AGGREGATE_FRAMES, "page_latency")
"""The frames a run with ``metrics.requests: aggregate`` writes besides :data:`FRAME_NAMES`
(whose ``requests.csv`` then has no rows): the per-interval aggregates and the per-page
response-time percentiles of the box plot."""

MAX_REQUEST_ROWS = 200_000
"""Beyond this many request rows (all replications), requests.csv holds a uniform sample."""

SAMPLE_SEED = 0
"""Seed of the request sample: the same run always writes the same rows."""

SCV_TOLERANCE = 0.1
"""A service scv within this distance of 1 counts as exponential-like (Erlang C applies)."""

SUMMARY_FORMAT = 1
"""Version of summary.json's layout."""


# --- JSON ---------------------------------------------------------------------------------------
def _number(value: Any) -> float:
    """Return a JSON number (or None) as a float, None as NaN."""
    return float("nan") if value is None else float(value)


# --- frames -------------------------------------------------------------------------------------
def _complete_faults(recorded: pd.DataFrame, scenario: Scenario, horizon: float) -> pd.DataFrame:
    """Return the fault windows as they fell within the run: every end cut at the horizon.

    A one-off fault of the scenario that began before the horizon but is missing from the
    recorded windows (an engine that records a window only when it closes) is added from the
    scenario. A recurring fault (``breakdown``) has no window of its own: its ``at`` starts the
    failure process, and its outages are the windows the run recorded, taken as they are.
    """
    rows = recorded[["kind", "target", "start", "end"]].to_dict("records")
    seen = {(str(r["kind"]), str(r["target"]), float(r["start"])) for r in rows}
    for fault in scenario.faults:
        if isinstance(fault, Breakdown):
            continue
        start = float(fault.at)
        target = f"payments.{fault.gateway}" if fault.kind == "ghost_success" else fault.target
        if start >= horizon or (fault.kind, target, start) in seen:
            continue
        end = min(start + float(getattr(fault, "duration", 0.0)), horizon)
        rows.append({"kind": fault.kind, "target": target, "start": start, "end": end})
    frame = pd.DataFrame(rows, columns=["kind", "target", "start", "end"])
    frame["end"] = frame["end"].astype(float).clip(upper=horizon)
    return frame.sort_values(["start", "kind"], kind="stable").reset_index(drop=True)


def _with_replication(frame: pd.DataFrame, replication: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "replication", replication)
    return frame


def _frame_names(frames: Mapping[str, pd.DataFrame]) -> tuple[str, ...]:
    """Return the names of the frames a report writes: aggregate mode adds its own."""
    return FRAME_NAMES + (AGGREGATE_FRAME_NAMES if is_aggregate(frames) else ())


def _run_frames(result: RunResult) -> dict[str, pd.DataFrame]:
    """Return one replication's frames plus the derived series, each with a replication column.

    A run in aggregate mode has no request rows: its series, cache frame, funnel and the
    per-page percentiles come from the per-interval aggregates instead.
    """
    scenario = result.scenario
    frames = dict(result.frames)
    frames["faults"] = _complete_faults(frames["faults"], scenario, scenario.horizon)
    interval, horizon = scenario.metrics.interval, scenario.horizon
    page_sessions = None
    if is_aggregate(frames):
        stats, histogram = frames["request_stats"], frames["latency_histogram"]
        if frames["cache"].empty:
            frames["cache"] = cache_from_stats(stats)
        per_window = scenario.metrics.intervals_per_window(horizon)
        frames["request_series"] = aggregate_request_series(
            stats, histogram, interval, horizon, per_window
        )
        frames["page_latency"] = page_latency_quantiles(histogram)
        page_sessions = frames["page_sessions"]
    else:
        frames["request_series"] = plots.request_series(frames["requests"], interval, horizon)
    frames["funnel"] = plots.funnel_counts(
        frames["sessions"],
        frames["requests"],
        frames["orders"],
        frames["order_events"],
        page_sessions,
    )
    return {
        name: _with_replication(frames[name], result.replication) for name in _frame_names(frames)
    }


def _combine(results: Sequence[RunResult]) -> dict[str, pd.DataFrame]:
    per_run = [_run_frames(r) for r in results]
    return {
        name: pd.concat([frames[name] for frames in per_run], ignore_index=True)
        if len(per_run) > 1
        else per_run[0][name]
        for name in per_run[0]
    }


def _sample_requests(requests: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Return ``requests`` or a deterministic uniform sample of MAX_REQUEST_ROWS rows."""
    total = len(requests)
    fraction = _sampling_fraction(total)
    if fraction == 1.0:
        return requests, 1.0
    rng = np.random.default_rng(SAMPLE_SEED)
    keep = np.sort(rng.choice(total, size=MAX_REQUEST_ROWS, replace=False))
    return requests.iloc[keep].reset_index(drop=True), fraction


def _sampling_fraction(total: int) -> float:
    """Return the share of ``total`` request rows that requests.csv keeps."""
    return 1.0 if total <= MAX_REQUEST_ROWS else MAX_REQUEST_ROWS / total


def _read_frames(folder: Path) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    aggregate = (folder / f"{AGGREGATE_FRAME_NAMES[0]}.csv").is_file()
    for name in FRAME_NAMES + (AGGREGATE_FRAME_NAMES if aggregate else ()):
        path = folder / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; cannot rebuild the report without it")
        try:
            frames[name] = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            frames[name] = pd.DataFrame()
    return frames


# --- the analytic twin --------------------------------------------------------------------------
def _service_scv(scenario: Scenario) -> dict[str, float]:
    """Return the scv of each station's service distribution, by the engine's station names."""
    stations = scenario.stations
    scv = {
        "app": stations.app.service.scv,
        "database": stations.database.query.scv,
        "cache": stations.cache.service.scv,
    }
    scv.update({f"gateway:{g.name}": g.latency.scv for g in scenario.payments.gateways})
    scv.update({f"warehouse:{w.name}": w.pick.scv for w in scenario.fulfilment.warehouses})
    return {name: float(value) for name, value in scv.items()}


def station_twin(station_stats: pd.DataFrame, scv: Mapping[str, float]) -> pd.DataFrame:
    """Return each station's simulated mean wait beside the analytic twin's prediction.

    ``station_stats`` is ``frames["station_stats"]`` (several replications are pooled by
    summing). Per station: arrival rate ``lambda = arrivals / elapsed`` (the offered load, which
    a backlog does not hide), mean service ``S = total_service / completions``, ``rho = lambda S
    / c``. The prediction is the M/M/c (Erlang C) mean wait in queue when the service scv (from
    ``scv``; 1 when unknown) is within :data:`SCV_TOLERANCE` of 1, else the Allen-Cunneen M/G/c
    approximation; ``"unstable"`` when ``rho >= 1``. Columns: ``station, servers, arrival_rate,
    mean_service, scv, rho, utilisation, wait_simulated, wait_predicted, queue_simulated,
    queue_predicted, model``.
    """
    columns = [
        "station",
        "servers",
        "arrival_rate",
        "mean_service",
        "scv",
        "rho",
        "utilisation",
        "wait_simulated",
        "wait_predicted",
        "queue_simulated",
        "queue_predicted",
        "model",
    ]
    if station_stats.empty:
        return pd.DataFrame(columns=columns)
    sums = ["elapsed", "arrivals", "starts", "completions", "total_wait", "total_service"]
    sums += ["busy_time", "queue_time", "capacity_time"]
    pooled = station_stats.groupby("name", sort=False).agg(
        {**dict.fromkeys(sums, "sum"), "capacity": "max"}
    )
    rows = []
    for name, row in pooled.iterrows():
        servers = int(row["capacity"])
        rate = row["arrivals"] / row["elapsed"] if row["elapsed"] > 0 else 0.0
        service = row["total_service"] / row["completions"] if row["completions"] > 0 else 0.0
        known = scv.get(str(name))
        cv2 = 1.0 if known is None else float(known)
        rho = rate * service / servers
        predicted = float("nan")
        if rate <= 0 or service <= 0:
            model = "no traffic"
        elif rho >= 1.0:
            model = "unstable (rho >= 1)"
        elif abs(cv2 - 1.0) <= SCV_TOLERANCE:
            predicted = mmc(rate, 1.0 / service, servers).wq
            model = "M/M/c (Erlang C)" + ("; scv unknown, taken as 1" if known is None else "")
        else:
            predicted = mgc_wait(rate, service, cv2, servers)
            model = f"M/G/c (Allen-Cunneen approx., scv {cv2:.2g})"
        rows.append(
            {
                "station": str(name),
                "servers": servers,
                "arrival_rate": float(rate),
                "mean_service": float(service),
                "scv": cv2,
                "rho": float(rho),
                "utilisation": float(row["busy_time"] / row["capacity_time"])
                if row["capacity_time"] > 0
                else 0.0,
                "wait_simulated": float(row["total_wait"] / row["starts"])
                if row["starts"] > 0
                else 0.0,
                "wait_predicted": float(predicted),
                "queue_simulated": float(row["queue_time"] / row["elapsed"])
                if row["elapsed"] > 0
                else 0.0,
                "queue_predicted": float(rate * predicted),
                "model": model,
            }
        )
    return pd.DataFrame(rows, columns=columns)


# --- the summary --------------------------------------------------------------------------------
_SLOS = (
    ("page_p95", "latency.p95", "<=", "Page response p95"),
    ("checkout_p95", "checkout_latency.p95", "<=", "Checkout response p95"),
    ("payment_success", "payment_success", ">=", "Payment success"),
)


def _slo_verdicts(scenario: Scenario, view: Mapping[str, _Stat]) -> list[dict[str, Any]]:
    verdicts = []
    for name, key, comparison, label in _SLOS:
        target = float(getattr(scenario.slo, name))
        stat = view.get(key, _Stat(float("nan"), float("nan"), 0))
        met: bool | None = None
        straddles = False
        if math.isfinite(stat.mean):
            met = stat.mean <= target if comparison == "<=" else stat.mean >= target
            if math.isfinite(stat.half_width):
                straddles = stat.mean - stat.half_width <= target <= stat.mean + stat.half_width
        verdicts.append(
            {
                "name": name,
                "label": label,
                "kpi": key,
                "comparison": comparison,
                "target": target,
                "value": stat.mean,
                "half_width": stat.half_width,
                "n": stat.n,
                "met": met,
                "interval_straddles_target": straddles,
            }
        )
    return verdicts


@dataclass(frozen=True)
class _Stat:
    mean: float
    half_width: float
    n: int


def _view(kpis: Mapping[str, Any], replications: int) -> dict[str, _Stat]:
    """Return every numeric KPI (dotted key) as mean, half-width and n, from summary["kpis"]."""
    if replications > 1:
        return {
            key: _Stat(_number(s["mean"]), _number(s["half_width"]), int(s["n"]))
            for key, s in kpis.items()
        }
    flat = flatten_numeric(_nan_for_none(kpis))
    return {key: _Stat(value, float("nan"), 1) for key, value in flat.items()}


def _nan_for_none(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _nan_for_none(v) for k, v in data.items()}
    return float("nan") if data is None else data


def _build_summary(
    results: Sequence[RunResult], *, requests_rows: int = 0, fraction: float = 1.0
) -> dict[str, Any]:
    """Return summary.json's content for ``results`` (replications of one scenario)."""
    first = results[0]
    scenario = first.scenario
    n = len(results)
    if n == 1:
        kpis: dict[str, Any] = jsonable(first.kpis)
    else:
        stats = summarize_replications([r.kpis for r in results], zero_fill=COUNT_KPIS)
        flats = [flatten_numeric(r.kpis) for r in results]
        # as summarize_replications reads them: a count missing from a replication is 0 there
        defaults = {key: 0.0 if missing_is_zero(key) else float("nan") for key in stats}
        kpis = {
            key: {
                "mean": s.mean,
                "half_width": s.half_width,
                "low": s.low,
                "high": s.high,
                "n": s.n,
                "values": [flat.get(key, defaults[key]) for flat in flats],
            }
            for key, s in stats.items()
        }
        kpis = jsonable(kpis)
    view = _view(_nan_for_none(kpis), n)
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "name": scenario.name,
        "description": scenario.description,
        "version": sim.__version__,
        "seeds": [r.seed for r in results],
        "replications": [r.replication for r in results],
        "horizon": scenario.horizon,
        "warmup": first.warmup,
        "warmups": [r.warmup for r in results],
        "interval": scenario.metrics.interval,
        "histogram_interval": scenario.metrics.interval
        * scenario.metrics.intervals_per_window(scenario.horizon),
        "runtime": {
            "total_seconds": sum(r.runtime for r in results),
            "per_replication": [r.runtime for r in results],
        },
        "kpis": kpis,
        "slo": _slo_verdicts(scenario, view),
        "audit": {
            "ok": all(r.audit.ok for r in results),
            "replications": [
                {"replication": r.replication, "ok": r.audit.ok, "violations": r.audit.violations}
                for r in results
            ],
        },
        "requests_sampled": fraction < 1.0,
        "requests_sampling_fraction": fraction,
        "requests_rows": requests_rows,
        "requests_mode": scenario.metrics.requests,
        "plots_replication": first.replication,
        "station_scv": _service_scv(scenario),
        "scenario": scenario.to_data(),
    }
    if n > 1:
        summary["kpis_by_replication"] = [r.kpis for r in results]
    return jsonable(summary)


# --- formatting ---------------------------------------------------------------------------------
def _fmt_stat(stat: _Stat | None, kind: str, replicated: bool) -> str:
    if stat is None:
        return "n/a"
    text = format_value(stat.mean, kind)
    if replicated and math.isfinite(stat.mean):
        if math.isfinite(stat.half_width):
            text += f" ± {format_half_width(stat.half_width, kind)}"
        else:
            text += f" (n={stat.n})"
    return text


def _fmt_queue(length: float) -> str:
    if not math.isfinite(length):
        return "n/a"
    return "< 0.0001" if 0.0 < length < 1e-4 else f"{length:.3g}"


def _station_names(view: Mapping[str, _Stat]) -> list[str]:
    names = []
    for key in view:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "utilisation" and parts[2] == "utilisation":
            names.append(parts[1])
    return names


def _slo_word(verdict: Mapping[str, Any]) -> str:
    met = verdict["met"]
    return "no data" if met is None else ("met" if met else "missed")


def _text_summary(summary: Mapping[str, Any]) -> str:
    n = len(summary["replications"])
    replicated = n > 1
    view = _view(_nan_for_none(summary["kpis"]), n)

    def show(key: str, kind: str) -> str:
        return _fmt_stat(view.get(key), kind, replicated)

    seeds = sorted(set(summary["seeds"]))
    lines = [
        f"{summary['name']}: {n} replication{'s' if replicated else ''} of "
        f"{format_duration(summary['horizon'])} simulated (seed {', '.join(map(str, seeds))}), "
        f"{summary['runtime']['total_seconds']:.1f} s of run time"
        + (" (summed over replications)" if replicated else "")
        + (" -- mean ± 95 % half-width" if replicated else ""),
        f"  throughput      {show('throughput', 'rate')} page requests",
        f"  latency         p50 {show('latency.p50', 'ms')}   p95 {show('latency.p95', 'ms')}"
        f"   p99 {show('latency.p99', 'ms')}",
        f"  checkout p95    {show('checkout_latency.p95', 'ms')}",
        f"  cache hit rate  {show('cache_hit_rate', 'pct')}",
    ]
    stations = _station_names(view)
    for i, name in enumerate(stations):
        head = "  utilisation     " if i == 0 else "                  "
        lines.append(f"{head}{name:<18} {show(f'utilisation.{name}.utilisation', 'pct')}")
    lines += [
        f"  conversion      {show('conversion', 'pct')} of sessions; "
        f"{show('orders_paid', 'count')} orders paid",
        f"  revenue         {show('revenue_cents', 'money')}",
    ]
    for verdict in summary["slo"]:
        kind = "pct" if verdict["name"] == "payment_success" else "ms"
        value = _Stat(_number(verdict["value"]), _number(verdict["half_width"]), verdict["n"])
        lines.append(
            f"  SLO {verdict['label'].lower():<22} {_fmt_stat(value, kind, replicated)} "
            f"{verdict['comparison']} {format_value(verdict['target'], kind)}: "
            f"{_slo_word(verdict).upper()}"
            + (" (interval straddles it)" if verdict["interval_straddles_target"] else "")
        )
    audit = summary["audit"]
    if audit["ok"]:
        lines.append("  audit           ok")
    else:
        count = sum(len(r["violations"]) for r in audit["replications"])
        lines.append(f"  audit           FAILED ({count} violations; see the report)")
    if summary["requests_sampled"]:
        lines.append(
            f"  note            requests.csv holds a "
            f"{summary['requests_sampling_fraction']:.1%} sample of "
            f"{summary['requests_rows']:,} requests"
        )
    return "\n".join(lines)


def format_summary(results: Sequence[RunResult]) -> str:
    """Return the one-screen text summary of a run the command line prints.

    Throughput, latency p50 / p95 / p99, checkout p95, cache hit rate, utilisation per station,
    conversion, revenue in currency units, each SLO met or missed, and the audit verdict; with
    several replications each figure is the mean ± the 95 % confidence half-width.
    """
    results = list(results)
    _check_results(results)
    total = sum(len(r.frames["requests"]) for r in results)  # as write_run_report counts
    summary = _build_summary(results, requests_rows=total, fraction=_sampling_fraction(total))
    return _text_summary(summary)


# --- figures ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plot:
    file: str
    caption: str
    draw: Callable[[Mapping[str, Any], Mapping[str, pd.DataFrame]], Figure]


def _time_kwargs(summary: Mapping[str, Any], frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    return {
        "faults": frames["faults"],
        "warmup": float(summary["warmup"]),
        "horizon": float(summary["horizon"]),
    }


def _order_states(summary: Mapping[str, Any], frames: Mapping[str, pd.DataFrame]) -> Figure:
    horizon, interval = float(summary["horizon"]), float(summary["interval"])
    step = min(interval, horizon / 60.0)
    times = np.append(np.arange(0.0, horizon, step), horizon)
    states = plots.order_state_series(frames["orders"], frames["order_events"], times)
    return plots.plot_order_states(states, **_time_kwargs(summary, frames))


def _slo_target(summary: Mapping[str, Any], name: str) -> float | None:
    return next((float(v["target"]) for v in summary["slo"] if v["name"] == name), None)


_PLOTS = (
    _Plot(
        "throughput.png",
        "Page requests per second by arrival time, in each interval; shaded bands and dashed "
        "lines mark fault windows, the dotted line the end of the warm-up.",
        lambda s, f: plots.plot_throughput(f["request_series"], **_time_kwargs(s, f)),
    ),
    _Plot(
        "latency_percentiles.png",
        "Median, p95 and p99 page response time per interval, against the p95 objective.",
        lambda s, f: plots.plot_latency_percentiles(
            f["request_series"], slo_p95=_slo_target(s, "page_p95"), **_time_kwargs(s, f)
        ),
    ),
    _Plot(
        "latency_by_page.png",
        "Response time of each page (log scale): boxes span the quartiles, whiskers p5 to p95.",
        lambda s, f: (
            plots.plot_latency_quantiles_by_page(f["page_latency"])
            if "page_latency" in f
            else plots.plot_latency_by_page(f["requests"], s.get("requests_sampling_fraction", 1.0))
        ),
    ),
    _Plot(
        "stations.png",
        "Time-weighted utilisation and mean queue length of every station per interval.",
        lambda s, f: plots.plot_stations(f["stations"], **_time_kwargs(s, f)),
    ),
    _Plot(
        "cache_hit_rate.png",
        "Share of cache look-ups that hit, per interval: a flush or an outage shows as a dip.",
        lambda s, f: plots.plot_cache_hit_rate(
            f["cache"], interval=float(s["interval"]), **_time_kwargs(s, f)
        ),
    ),
    _Plot(
        "funnel.png",
        "Conversion funnel over the whole run, warm-up included: sessions started, then sessions "
        "that viewed a product, opened the cart and reached the checkout page, then orders paid, "
        "delivered and returned. The Conversion KPI counts sessions after the warm-up only.",
        lambda s, f: plots.plot_funnel(f["funnel"]),
    ),
    _Plot(
        "order_states.png",
        "Orders in each state over time, from the order events (delivery takes days, so a short "
        "run shows orders piling up in processing).",
        _order_states,
    ),
    _Plot(
        "payment_outcomes.png",
        "Gateway calls per gateway by outcome; retries and failovers count as calls.",
        lambda s, f: plots.plot_payment_outcomes(f["payments"]),
    ),
)


def _one_replication(
    frames: Mapping[str, pd.DataFrame], replication: int
) -> dict[str, pd.DataFrame]:
    picked = {}
    for name, frame in frames.items():
        if "replication" in frame.columns:
            frame = frame[frame["replication"] == replication].drop(columns="replication")
        picked[name] = frame.reset_index(drop=True)
    return picked


# --- HTML ---------------------------------------------------------------------------------------
def _kpi_table(summary: Mapping[str, Any], view: Mapping[str, _Stat], replicated: bool) -> str:
    slos = {v["kpi"]: v for v in summary["slo"]}
    rows = []
    entries = list(KPI_ROWS)
    for name in _station_names(view):
        entries.append((f"utilisation.{name}.utilisation", f"Utilisation: {name}", "pct"))
        entries.append((f"utilisation.{name}.mean_queue", f"Mean queue: {name}", "number"))
    for key, label, kind in entries:
        if key not in view and key not in slos:
            continue
        verdict = slos.get(key)
        target, word, css = "", "", ""
        if verdict is not None:
            target = f"{verdict['comparison']} {format_value(verdict['target'], kind)}"
            word = _slo_word(verdict)
            css = {"met": "met", "missed": "missed"}.get(word, "nodata")
            if verdict["interval_straddles_target"]:
                word += " (interval straddles the objective)"
        rows.append(
            [
                (label, ""),
                (_fmt_stat(view.get(key), kind, replicated), "num"),
                (target, ""),
                (word, css),
            ]
        )
    value_head = "mean ± 95 % half-width" if replicated else "value"
    return html_table(["KPI", value_head, "objective", "verdict"], rows, "kpis")


def _page_table(view: Mapping[str, _Stat], replicated: bool) -> str:
    pages = sorted({k.split(".")[1] for k in view if k.startswith("latency_by_page.")})
    rows = []
    for page in pages:
        base = f"latency_by_page.{page}"
        rows.append(
            [
                (page, ""),
                (_fmt_stat(view.get(f"{base}.count"), "count", replicated), "num"),
                *[
                    (_fmt_stat(view.get(f"{base}.{p}"), "ms", replicated), "num")
                    for p in ("p50", "p95", "p99")
                ],
            ]
        )
    return html_table(["page", "requests", "p50", "p95", "p99"], rows, "pages")


def _twin_table(twin: pd.DataFrame) -> str:
    rows = []
    for r in twin.itertuples(index=False):
        rows.append(
            [
                (r.station, ""),
                (f"{r.servers}", "num"),
                (f"{r.arrival_rate:.4g}/s", "num"),
                (format_duration(r.mean_service), "num"),
                (f"{r.rho:.3f}", "num"),
                (f"{r.utilisation:.3f}", "num"),
                (format_duration(r.wait_simulated), "num"),
                (format_duration(r.wait_predicted), "num"),
                (_fmt_queue(r.queue_simulated), "num"),
                (_fmt_queue(r.queue_predicted), "num"),
                (r.model, ""),
            ]
        )
    head = [
        "station",
        "servers c",
        "arrivals λ",
        "mean service S",
        "\u03c1 = λS/c",
        "utilisation (sim.)",
        "mean wait (sim.)",
        "mean wait (twin)",
        "mean queue (sim.)",
        "mean queue (twin)",
        "twin model",
    ]
    return html_table(head, rows, "twin")


def _warmup_words(summary: Mapping[str, Any]) -> str:
    """Return the warm-up as applied, in words.

    Per replication when the cuts differ (``warmup: auto``), where per-interval figures
    start (the first interval start at or after the cut) when that is later than the cut, and
    in aggregate mode where the percentiles start (the first histogram window at or after
    that) when that is later still.
    """
    cuts = [float(w) for w in summary.get("warmups") or [summary["warmup"]]]
    low, high = min(cuts), max(cuts)
    words = format_duration(low)
    if high > low:
        words = f"{format_duration(low)} to {format_duration(high)} (per replication)"
    interval = float(summary.get("interval") or 0.0)
    metrics = (summary.get("scenario") or {}).get("metrics") or {}
    aggregate = metrics.get("requests") == "aggregate"
    starts = {interval_cut(c, interval) for c in cuts} if interval > 0 else set(cuts)
    if starts != set(cuts):
        which = "request figures and " if aggregate else ""
        words += f"; {which}station utilisation from the first interval after it, {_span(starts)}"
    window = float(summary.get("histogram_interval") or interval)
    if aggregate and interval > 0 and window > interval:
        per = round(window / interval)
        windows = {math.ceil(round(s / interval) / per) * per * interval for s in starts}
        if windows != starts:
            words += f"; percentiles from the first histogram window after it, {_span(windows)}"
    return words


def _span(times: set[float]) -> str:
    """Return one time (``60 s``), or the first to the last (``60 s to 2 min``), in words."""
    first, last = format_duration(min(times)), format_duration(max(times))
    return first if first == last else f"{first} to {last}"


def _html(
    summary: Mapping[str, Any],
    twin: pd.DataFrame,
    images: Sequence[tuple[_Plot, bytes]],
) -> str:
    n = len(summary["replications"])
    replicated = n > 1
    view = _view(_nan_for_none(summary["kpis"]), n)
    seeds = ", ".join(str(s) for s in summary["seeds"])
    name = summary["name"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(name)}: simulation report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Scenario: {escape(name)}</h1>",
        f'<p class="description">{escape(summary["description"] or "(no description)")}</p>',
        '<p class="meta">'
        + escape(
            f"{n} replication{'s' if replicated else ''} of {format_duration(summary['horizon'])} "
            f"simulated (warm-up {_warmup_words(summary)} excluded from the rates, "
            "response times and per-page request counts, utilisation, cache hit rate and "
            "conversion; the other counts, revenue and payment success cover the whole run); "
            f"seed{'s' if replicated else ''} {seeds}; "
            f"ecommerce-sim {summary['version']}; "
            f"{summary['runtime']['total_seconds']:.2f} s of run time"
            + (" (summed over replications)." if replicated else ".")
        )
        + "</p>",
    ]
    audit = summary["audit"]
    parts.append('<section id="audit"><h2>Audit of the books</h2>')
    if audit["ok"]:
        parts.append(
            '<p class="ok">Audit ok: stock, ledger, order states and coupon limits all '
            "reconcile.</p>"
        )
    else:
        parts.append('<p class="fail">Audit FAILED: the books do not reconcile.</p><ul>')
        for rep in audit["replications"]:
            for violation in rep["violations"][:50]:
                parts.append(f"<li>replication {rep['replication']}: {escape(violation)}</li>")
        parts.append("</ul>")
    parts.append("</section>")
    parts.append('<section id="kpis"><h2>Key figures and service-level objectives</h2>')
    if replicated:
        parts.append(
            f'<p class="note">Each figure is the mean over {n} replications ± the half-width of '
            "its 95 % Student-t confidence interval.</p>"
        )
    parts.append(_kpi_table(summary, view, replicated))
    parts.append("</section>")
    parts.append('<section id="pages"><h2>Response time per page</h2>')
    parts.append(_page_table(view, replicated))
    parts.append("</section>")
    parts.append('<section id="stations"><h2>Stations beside the analytic twin</h2>')
    parts.append(
        '<p class="note">Over the whole run (warm-up included; replications pooled): '
        "λ = arrivals / elapsed time, S = service time of the completed visits / completions, "
        "\u03c1 = λS/c. "
        "The twin predicts the steady-state mean wait in queue: Erlang C (M/M/c) where the "
        "scenario's service distribution is exponential-like (scv within "
        f"{SCV_TOLERANCE:g} of 1), otherwise the Allen-Cunneen M/G/c approximation, marked as "
        "such. App service is the scenario's distribution times each page's factor, so its true "
        "scv is somewhat above the one shown. Gateway and warehouse arrivals are not Poisson "
        "(retries, order bursts) and a backlogged station never reaches steady state: read those "
        "rows as rough guides.</p>"
    )
    parts.append(_twin_table(twin))
    parts.append("</section>")
    parts.append('<section id="plots"><h2>Plots</h2>')
    if replicated:
        parts.append(
            f'<p class="note">The plots show replication {summary["plots_replication"]} '
            f"(seed {summary['seeds'][0]}); the tables above cover all {n} replications.</p>"
        )
    for plot, png in images:
        stem = plot.file.removesuffix(".png")
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="fig-{escape(stem)}"><a href="{escape(plot.file)}">'
            f'<img src="data:image/png;base64,{data}" alt="{escape(plot.caption)}" '
            f'data-file="{escape(plot.file)}"></a>'
            f"<figcaption>{escape(plot.caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    parts.append('<section id="data"><h2>Data</h2>')
    aggregate = summary.get("requests_mode") == "aggregate"
    if aggregate:
        parts.append(
            '<p class="note">The run recorded requests as streaming aggregates '
            "(<code>metrics.requests: aggregate</code>): requests.csv has no rows; "
            "request_stats.csv holds counts and sums per interval and page, "
            "latency_histogram.csv the log-bucketed response times (percentiles within 1 %), "
            "request_outcomes.csv the outcomes, page_sessions.csv the sessions per page. The "
            "KPIs drop whole intervals before the warm-up.</p>"
        )
    elif summary["requests_sampled"]:
        parts.append(
            '<p class="note">requests.csv holds a uniform random sample of '
            f"{summary['requests_sampling_fraction']:.2%} of the "
            f"{summary['requests_rows']:,} requests (a fixed seed, so the same run writes the "
            "same rows); the KPIs, the throughput and percentile series and the funnel were "
            "computed from every request before sampling.</p>"
        )
    else:
        parts.append(
            f'<p class="note">requests.csv holds every request ({summary["requests_rows"]:,} '
            "rows).</p>"
        )
    parts.append("<ul>")
    names = FRAME_NAMES + (AGGREGATE_FRAME_NAMES if aggregate else ())
    for file in ["summary.json", *[f"{name}.csv" for name in names]]:
        parts.append(f'<li><a href="{escape(file)}">{escape(file)}</a></li>')
    parts.append("</ul></section></body></html>")
    return "\n".join(parts) + "\n"


# --- writing ------------------------------------------------------------------------------------
def _render(
    folder: Path, summary: Mapping[str, Any], frames: Mapping[str, pd.DataFrame]
) -> ReportFiles:
    """Draw the PNGs and report.html into ``folder`` from a summary and (CSV-equivalent) frames."""
    shown = _one_replication(frames, int(summary["plots_replication"]))
    images = []
    pngs = []
    for plot in _PLOTS:
        figure = plot.draw(summary, shown)
        path = folder / plot.file
        figure.savefig(path, dpi=PLOT_DPI, metadata={"Software": None})
        images.append((plot, path.read_bytes()))
        pngs.append(path)
    twin = station_twin(frames["station_stats"], summary["station_scv"])
    page = folder / HTML_FILE
    page.write_text(_html(summary, twin, images), encoding="utf-8")
    return ReportFiles(
        folder=folder,
        summary=folder / SUMMARY_FILE,
        html=page,
        csvs=tuple(folder / f"{name}.csv" for name in _frame_names(frames)),
        pngs=tuple(pngs),
    )


def _check_results(results: Sequence[RunResult]) -> None:
    if not results:
        raise ValueError("a report needs at least one run result, got none")
    names = {r.scenario.name for r in results}
    if len(names) > 1:
        raise ValueError(f"a run report covers one scenario, got {sorted(names)}")


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the report folder does not exist")


def write_run_report(results: Sequence[RunResult], folder: Path) -> ReportFiles:
    """Write a run's report into the existing ``folder`` and return the files written.

    ``results`` are the replications of one scenario (the plots show the first). Files:
    ``summary.json``, ``<frame>.csv`` for every name in :data:`FRAME_NAMES`, the PNG plots and
    ``report.html``.
    """
    results = list(results)
    _check_results(results)
    folder = Path(folder)
    _check_folder(folder)
    frames = _combine(results)
    total = len(frames["requests"])
    frames["requests"], fraction = _sample_requests(frames["requests"])
    summary = _build_summary(results, requests_rows=total, fraction=fraction)
    for name in _frame_names(frames):
        frames[name].to_csv(folder / f"{name}.csv", index=False)
    (folder / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return _render(folder, summary, frames)


def rebuild_report(folder: Path) -> ReportFiles:
    """Redraw the PNGs and report.html of a saved run folder from its summary.json and CSVs."""
    folder = Path(folder)
    _check_folder(folder)
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; not a run folder")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: not a run summary (a JSON object), got {type(summary).__name__}")
    if summary.get("kind") in ("comparison", "plan"):
        raise ValueError(
            f"{path}: the folder of a {summary['kind']}, not of a run; "
            "its report is written by compare or plan and cannot be rebuilt"
        )
    if summary.get("format") != SUMMARY_FORMAT:
        raise ValueError(f"{path}: unknown summary format {summary.get('format')!r}")
    return _render(folder, summary, _read_frames(folder))
