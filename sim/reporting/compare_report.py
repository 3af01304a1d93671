"""Report folders of a comparison and of a capacity plan: CSVs, PNG plots, summary.json, HTML.

Pure functions of results (ARCHITECTURE.md, principle 9): the caller picks an existing folder,
these functions write files into it and return their paths; nothing is printed. The HTML page
is self-contained (plots embedded) in the style of the run report (:mod:`sim.reporting.report`);
both build on :mod:`sim.reporting.shared`.

- :func:`write_comparison_report` -- ``comparison.csv`` (the tidy table: each KPI per variant
  with its CI and the paired difference against the first variant), ``replications.csv``
  (every replication's KPIs), ``summary.json``, ``kpis.png`` (KPIs against the varied
  parameter with CI bands), ``knee.png`` (latency against utilisation), ``report.html`` with
  each verdict in words.
- :func:`write_plan_report` -- ``plan.csv`` (each evaluated capacity and objective),
  ``replications.csv``, ``summary.json``, ``plan.png`` (the objectives against capacity, the
  answer and the analytic twin's guess), ``knee.png``, ``report.html``.
- :func:`format_comparison` / :func:`format_plan` -- the text the command line prints.
- :func:`plot_kpis_vs_parameter`, :func:`plot_knee`, :func:`plot_plan_curve` -- the figures.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import sim
from sim.analysis.compare import (
    KPI_DIRECTIONS,
    Comparison,
    RunSummary,
    Verdict,
    station_of_path,
)
from sim.analysis.plan import Plan, Slo
from sim.analysis.stats import MeanCI, mean_ci
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

__all__ = [
    "COMPARISON_FORMAT",
    "format_comparison",
    "format_plan",
    "kpi_kind",
    "kpi_label",
    "plot_kpis_vs_parameter",
    "plot_knee",
    "plot_plan_curve",
    "verdict_sentence",
    "write_comparison_report",
    "write_plan_report",
]

COMPARISON_FORMAT = 1
"""Version of the comparison's and the plan's summary.json layout."""

HTML_FILE, SUMMARY_FILE = "report.html", "summary.json"

_LABELS = {key: label for key, label, _ in KPI_ROWS}
_LABELS.update(
    {
        "latency.mean": "Page response mean",
        "checkout_latency.mean": "Checkout response mean",
        "checkout_latency.p99": "Checkout response p99",
        "wait.app": "App wait per page",
        "wait.database": "Database wait per page",
        "wait.cache": "Cache wait per page",
        "service.app": "App service per page",
    }
)
_PCT = ("cache_hit_rate", "conversion", "payment_success")
_TIME_PREFIXES = ("latency.", "checkout_latency.", "latency_by_page.", "wait.", "service.")
_COUNT_SUFFIXES = (".count", ".arrivals", ".completions")


def kpi_kind(kpi: str) -> str:
    """Return a KPI's format: ``ms``, ``pct``, ``rate``, ``money``, ``count`` or ``number``."""
    if kpi.endswith(_COUNT_SUFFIXES):
        return "count"
    if kpi.startswith(_TIME_PREFIXES):
        return "ms"
    if kpi in _PCT or (kpi.startswith("utilisation.") and kpi.endswith(".utilisation")):
        return "pct"
    if kpi in ("throughput", "sessions_per_second"):
        return "rate"
    if kpi == "revenue_cents":
        return "money"
    if kpi.startswith("utilisation."):
        return "number"
    return "count"


def kpi_label(kpi: str) -> str:
    """Return a KPI's human label (``"Page response p95"``); the key itself when unknown."""
    if kpi in _LABELS:
        return _LABELS[kpi]
    parts = kpi.split(".")
    if len(parts) == 3 and parts[0] == "utilisation":
        what = "Utilisation" if parts[2] == "utilisation" else parts[2].replace("_", " ").title()
        return f"{what}: {parts[1]}"
    return kpi


def _fmt_time(seconds: float) -> str:
    """Return a duration with three significant digits: ``"0.661 ms"``, ``"2.1 s"``."""
    size = abs(seconds)
    if size < 1.0:
        return f"{seconds * 1000.0:.3g} ms"
    if size < 120.0:
        return f"{seconds:.3g} s"
    return f"{seconds / 60.0:.3g} min"


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if kind == "ms":
        return _fmt_time(value)
    return format_value(value, kind)


def _fmt_diff(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    sign = "+" if value > 0 else ("-" if value < 0 else "±")
    magnitude = _fmt_time(abs(value)) if kind == "ms" else format_half_width(abs(value), kind)
    return f"{sign}{magnitude}"


def _fmt_hw(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    return _fmt_time(value) if kind == "ms" else format_half_width(value, kind)


def _fmt_ci(ci: MeanCI, kind: str) -> str:
    text = _fmt(ci.mean, kind)
    if math.isfinite(ci.mean) and math.isfinite(ci.half_width):
        text += f" ± {_fmt_hw(ci.half_width, kind)}"
    elif math.isfinite(ci.mean):
        text += f" (n={ci.n})"
    return text


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


# --- verdicts in words ------------------------------------------------------------------------
def verdict_sentence(verdict: Verdict) -> str:
    """Return one sentence on a verdict: who wins and with what confidence, or no verdict.

    Without a win the sentence says the difference is not established: the paired CI of the
    best against its contender includes zero. With more than two variants the sentence says
    the tests against each of the others are adjusted together (Bonferroni).
    """
    label = kpi_label(verdict.kpi)
    kind = kpi_kind(verdict.kpi)
    if verdict.best is None:
        return f"{label}: no data in any variant."
    if verdict.tie:
        return (
            f"{label}: identical in every variant and replication "
            f"({_fmt(verdict.best_mean, kind)}): the change does not reach it."
        )
    if verdict.runner_up is None:
        return f"{label}: only {verdict.best} has data ({_fmt(verdict.best_mean, kind)})."
    word = "lowest" if verdict.direction == "lower" else "highest"
    contender = verdict.contender or verdict.runner_up
    rivals = verdict.variants_with_data - 1
    d = verdict.difference
    if d.mean == 0.0 and d.half_width == 0.0:
        return (
            f"{label}: no winner; {verdict.best} and {contender} share the {word} value "
            f"({_fmt(verdict.best_mean, kind)}) in every replication."
        )
    interval = (
        f"{verdict.level * 100:.3g} % CI {_fmt_diff(d.low, kind)} to {_fmt_diff(d.high, kind)}"
    )
    means = (
        f"{_fmt(verdict.best_mean, kind)} against {_fmt(verdict.runner_up_mean, kind)} for "
        f"the runner-up {verdict.runner_up}"
    )
    p = _fmt_p(verdict.p_value)
    if verdict.established and rivals == 1:
        return (
            f"{verdict.best} wins on {label.lower()} ({verdict.direction} is better): {means}; "
            f"the paired difference {_fmt_diff(d.mean, kind)} ({interval}) excludes zero, so "
            f"the win is established with 95 % confidence (paired t-test p = {p})."
        )
    if verdict.established:
        return (
            f"{verdict.best} wins on {label.lower()} ({verdict.direction} is better): {means}; "
            f"its paired differences from each of the other {rivals} variants exclude zero, so "
            f"the win is established with 95 % confidence over all of them (Bonferroni: each "
            f"interval at {verdict.level * 100:.3g} %). The closest call is {contender}: "
            f"{_fmt_diff(d.mean, kind)} ({interval}, adjusted p = {p})."
        )
    adjusted = f", adjusted for the {rivals} comparisons (Bonferroni)" if rivals > 1 else ""
    return (
        f"{label}: the difference is not established. {verdict.best} has the {word} mean "
        f"({_fmt(verdict.best_mean, kind)}), but its paired difference from "
        f"{contender} ({_fmt_diff(d.mean, kind)}, {interval}) includes zero "
        f"(p = {p}{adjusted}); more replications may settle it."
    )


# --- figures ----------------------------------------------------------------------------------
def _figure(size: tuple[float, float]) -> Figure:
    return Figure(figsize=size, layout="constrained")


def _scale(kind: str) -> tuple[float, str]:
    return {
        "ms": (1000.0, "ms"),
        "pct": (100.0, "%"),
        "rate": (1.0, "per second"),
        "money": (0.01, "currency units"),
    }.get(kind, (1.0, ""))


def _integers(values: pd.Series) -> bool:
    return all(float(v).is_integer() for v in values)


def _numeric(values: pd.Series) -> bool:
    return bool(len(values)) and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in values
    )


def _clipped(rows: pd.DataFrame, kind: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the CI ends scaled, clipped to what the KPI can be (>= 0; <= 100 % for shares)."""
    low = np.clip(rows["low"].to_numpy(dtype=float), 0.0, None)
    high = rows["high"].to_numpy(dtype=float)
    if kind == "pct":
        high = np.clip(high, None, 1.0)
    return low * factor, high * factor


def _yerr(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    below = np.nan_to_num(np.clip(y - low, 0.0, None))
    above = np.nan_to_num(np.clip(high - y, 0.0, None))
    return np.vstack([below, above])


def plot_kpis_vs_parameter(
    table: pd.DataFrame, kpis: Sequence[str], parameter: str | None = None
) -> Figure:
    """Return one panel per KPI: its mean and 95 % CI band against the varied ``parameter``.

    ``table`` is :meth:`Comparison.table`'s tidy frame. With a numeric ``parameter`` column the
    x axis is its value and any other varied column draws one line each; otherwise the x axis
    lists the variants and the CIs are error bars.
    """
    kpis = [k for k in kpis if k in set(table["kpi"])] or list(table["kpi"].unique()[:1])
    columns = 2 if len(kpis) > 1 else 1
    rows = max(math.ceil(len(kpis) / columns), 1)
    fig = _figure((5.2 * columns, 3.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    variants = list(dict.fromkeys(table["variant"]))
    numeric = parameter is not None and parameter in table.columns and _numeric(table[parameter])
    others = [
        c for c in table.columns[1 : table.columns.get_loc("kpi")] if c != parameter and numeric
    ]
    for ax, kpi in zip(axes, kpis, strict=False):
        rows_k = table[table["kpi"] == kpi]
        factor, unit = _scale(kpi_kind(kpi))
        if numeric:
            groups = rows_k.groupby(others, sort=False) if others else [((), rows_k)]
            for key, group in groups:
                group = group.sort_values(parameter)
                x = group[parameter].to_numpy(dtype=float)
                y = group["mean"].to_numpy(dtype=float) * factor
                low, high = _clipped(group, kpi_kind(kpi), factor)
                name = ", ".join(
                    f"{c.split('.')[-1]}={v}"
                    for c, v in zip(others, key if isinstance(key, tuple) else (key,), strict=True)
                )
                (line,) = ax.plot(x, y, marker="o", ms=4, label=name or "mean")
                band = ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, lw=0)
                band.set_gid("ci")
            ax.set_xlabel(parameter)
            ax.xaxis.set_major_locator(MaxNLocator(integer=_integers(table[parameter])))
            if others:
                ax.legend(fontsize="small", frameon=False)
        else:
            order = {label: i for i, label in enumerate(variants)}
            rows_k = rows_k.assign(_x=rows_k["variant"].map(order)).sort_values("_x")
            y = rows_k["mean"].to_numpy(dtype=float) * factor
            low, high = _clipped(rows_k, kpi_kind(kpi), factor)
            bars = ax.errorbar(
                rows_k["_x"].to_numpy(dtype=float),
                y,
                yerr=_yerr(y, low, high),
                fmt="o",
                capsize=4,
            )
            bars[0].set_gid("ci")
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels(variants, rotation=20, ha="right", fontsize="small")
        ax.set_title(kpi_label(kpi), fontsize="medium")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(kpis) :]:
        ax.set_visible(False)
    fig.suptitle("KPIs by variant: mean and 95 % confidence interval")
    return fig


def plot_knee(points: pd.DataFrame, *, station: str, slo_p95: float | None = None) -> Figure:
    """Return page latency (mean and p95, with 95 % CIs) against a station's utilisation.

    ``points`` has one row per variant: ``label, utilisation, utilisation_hw, mean, mean_hw,
    p95, p95_hw`` (seconds; utilisation 0..1). Points are joined in order of utilisation, so
    the knee, where latency starts to climb steeply, shows as the bend of the curve.
    """
    fig = _figure((8.0, 4.5))
    ax = fig.add_subplot()
    data = points.sort_values("utilisation", kind="stable")
    x = data["utilisation"].to_numpy(dtype=float) * 100.0
    xerr = np.nan_to_num(data["utilisation_hw"].to_numpy(dtype=float) * 100.0)
    for key, name, style in (("mean", "mean", "o-"), ("p95", "p95", "s--")):
        y = data[key].to_numpy(dtype=float) * 1000.0
        yerr = np.nan_to_num(data[f"{key}_hw"].to_numpy(dtype=float) * 1000.0)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=style, capsize=3, ms=5, label=f"page {name}")
    for row, xv in zip(data.itertuples(index=False), x, strict=True):
        if math.isfinite(xv) and math.isfinite(row.p95):
            ax.annotate(
                str(row.label),
                (xv, row.p95 * 1000.0),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize="x-small",
            )
    if slo_p95 is not None:
        line = ax.axhline(slo_p95 * 1000.0, color="black", lw=1, ls=(0, (6, 3)), label="p95 SLO")
        line.set_gid("slo")
    ax.set_xlim(0, 105)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"utilisation of {station} (%)")
    ax.set_ylabel("page response time (ms)")
    ax.set_title(f"Latency against {station} utilisation: the knee")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", frameon=False, loc="upper left")
    return fig


def plot_plan_curve(
    curve: pd.DataFrame,
    slos: Sequence[Slo],
    *,
    parameter: str,
    answer: int | None,
    guess: int | None,
) -> Figure:
    """Return one panel per objective: the KPI's mean and 95 % CI at each evaluated capacity.

    ``curve`` is :meth:`Plan.curve`. The target is a dashed line (the failing side shaded);
    points that meet the objective with 95 % confidence are green, the others red; the answer
    is a green vertical line and the analytic twin's guess a grey dotted one.
    """
    fig = _figure((8.0, 3.0 * max(len(slos), 1)))
    axes = np.atleast_1d(fig.subplots(max(len(slos), 1), 1, squeeze=False)).ravel()
    for ax, slo in zip(axes, slos, strict=False):
        rows = curve[curve["slo"] == slo.name].sort_values("capacity")
        factor, unit = _scale(kpi_kind(slo.kpi))
        x = rows["capacity"].to_numpy(dtype=float)
        y = rows["mean"].to_numpy(dtype=float) * factor
        low, high = _clipped(rows, kpi_kind(slo.kpi), factor)
        err = _yerr(y, low, high)
        ax.plot(x, y, color="0.6", lw=1, zorder=1)
        for met, colour, name in (("yes", "tab:green", "met"), ("no", "tab:red", "not met")):
            wanted = (met,) if met == "yes" else ("no", "no data")
            pick = rows["met"].isin(wanted).to_numpy()
            if pick.any():
                bars = ax.errorbar(
                    x[pick],
                    y[pick],
                    yerr=err[:, pick],
                    fmt="o",
                    capsize=4,
                    color=colour,
                    label=name,
                )
                bars[0].set_gid("ci")
        target = slo.target * factor
        line = ax.axhline(target, color="black", lw=1, ls=(0, (6, 3)), label=f"target {slo}")
        line.set_gid("slo")
        bottom, top = ax.get_ylim()
        top = max(top, target * 1.1)
        if slo.comparison == "<=":
            ax.axhspan(target, top, color="tab:red", alpha=0.06, lw=0)
        else:
            ax.axhspan(min(bottom, 0.0), target, color="tab:red", alpha=0.06, lw=0)
        ax.set_ylim(min(bottom, 0.0) if slo.comparison == ">=" else bottom, top)
        if answer is not None:
            mark = ax.axvline(answer, color="tab:green", lw=1.5, label=f"answer {answer}")
            mark.set_gid("answer")
        if guess is not None:
            mark = ax.axvline(guess, color="0.4", lw=1, ls=":", label=f"twin's guess {guess}")
            mark.set_gid("guess")
        ax.set_title(f"{slo.name}: {kpi_label(slo.kpi)}", fontsize="medium")
        ax.set_xlabel(parameter)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", frameon=False, loc="best")
    return fig


# --- shared pieces ----------------------------------------------------------------------------
def _ci_of(summaries: Sequence[RunSummary], kpi: str) -> MeanCI:
    values = np.array([s.flat.get(kpi, np.nan) for s in summaries], dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, nan, 0)
    return mean_ci(values)


def _busiest(summaries: Sequence[RunSummary]) -> str | None:
    best, level = None, -1.0
    keys: dict[str, None] = {}
    for s in summaries:
        keys.update(dict.fromkeys(k for k in s.flat if k.startswith("utilisation.")))
    for key in keys:
        parts = key.split(".")
        if len(parts) == 3 and parts[2] == "utilisation":
            ci = _ci_of(summaries, key)
            if math.isfinite(ci.mean) and ci.mean > level:
                best, level = parts[1], ci.mean
    return best


def _knee_points(groups: Sequence[tuple[str, Sequence[RunSummary]]], station: str) -> pd.DataFrame:
    rows = []
    for label, summaries in groups:
        util = _ci_of(summaries, f"utilisation.{station}.utilisation")
        mean = _ci_of(summaries, "latency.mean")
        p95 = _ci_of(summaries, "latency.p95")
        rows.append(
            {
                "label": label,
                "utilisation": util.mean,
                "utilisation_hw": util.half_width,
                "mean": mean.mean,
                "mean_hw": mean.half_width,
                "p95": p95.mean,
                "p95_hw": p95.half_width,
            }
        )
    return pd.DataFrame(rows)


def _replications_frame(groups: Sequence[tuple[str, Sequence[RunSummary]]]) -> pd.DataFrame:
    rows = []
    for label, summaries in groups:
        for s in summaries:
            rows.append(
                {
                    "variant": label,
                    "replication": s.replication,
                    "seed": s.seed,
                    "warmup": s.warmup,
                    "warmup_auto": s.warmup_auto,
                    "warmup_at_limit": s.warmup_at_limit,
                    "runtime": s.runtime,
                    "audit_ok": not s.violations,
                    **s.flat,
                }
            )
    return pd.DataFrame(rows)


def _save(fig: Figure, path: Path) -> bytes:
    fig.savefig(path, dpi=PLOT_DPI, metadata={"Software": None})
    return path.read_bytes()


def _figure_html(file: str, caption: str, png: bytes) -> str:
    stem = file.removesuffix(".png")
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{escape(stem)}"><a href="{escape(file)}">'
        f'<img src="data:image/png;base64,{data}" alt="{escape(caption)}" '
        f'data-file="{escape(file)}"></a>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _page(title: str, body: Sequence[str]) -> str:
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def _warmup_text(warmups: Sequence[float], auto: bool, at_limit: int) -> str:
    finite = [w for w in warmups if math.isfinite(w)] or [0.0]
    if not auto:
        return f"a fixed warm-up of {format_duration(finite[0])} excluded from the KPIs"
    text = (
        f"warm-up auto (MSER-5, each replication its own cut): median "
        f"{format_duration(float(np.median(finite)))}, range {format_duration(min(finite))} to "
        f"{format_duration(max(finite))}"
    )
    if at_limit:
        text += (
            f"; in {at_limit} replication{'s' if at_limit != 1 else ''} the cut hit MSER's "
            "limit (half the run): the run may not have settled, consider a longer horizon"
        )
    return text


def _audit_html(violations: Sequence[tuple[str, int, str]]) -> str:
    if not violations:
        return (
            '<p class="ok">Audit ok in every run: stock, ledger, order states and coupon limits '
            "reconcile.</p>"
        )
    items = "".join(
        f"<li>{escape(label)}, replication {rep}: {escape(text)}</li>"
        for label, rep, text in violations[:50]
    )
    return f'<p class="fail">Audit FAILED: the books do not reconcile.</p><ul>{items}</ul>'


# --- the comparison ---------------------------------------------------------------------------
def _comparison_kpis(comparison: Comparison, station: str | None) -> list[str]:
    keys = ["latency.mean", "latency.p95", "checkout_latency.p95", "throughput"]
    if station is not None:
        keys.append(f"utilisation.{station}.utilisation")
    keys += ["payment_success", "conversion"]
    present = set(comparison.kpis())
    return [k for k in keys if k in present]


def _comparison_station(comparison: Comparison) -> str | None:
    for parameter in comparison.parameters:
        station = station_of_path(parameter)
        if station is not None:
            return station
    return _busiest(comparison.summaries[comparison.baseline.label])


def _comparison_summary(comparison: Comparison, wall_seconds: float | None) -> dict[str, Any]:
    summaries = [s for rows in comparison.summaries.values() for s in rows]
    verdicts = comparison.verdicts()
    return jsonable(
        {
            "format": COMPARISON_FORMAT,
            "kind": "comparison",
            "version": sim.__version__,
            "seed": comparison.seed,
            "replications": comparison.replications,
            "rounds": list(comparison.rounds),
            "precision": comparison.precision,
            "precision_kpis": list(comparison.precision_kpis),
            "precise": comparison.precise,
            "executor": comparison.executor,
            "parameters": list(comparison.parameters),
            "baseline": comparison.baseline.label,
            "variants": [
                {
                    "label": v.label,
                    "source": v.source,
                    "settings": {p: str(value) for p, value in v.settings},
                    "scenario": v.scenario.to_data(),
                }
                for v in comparison.variants
            ],
            "warmups": comparison.warmups(),
            "verdicts": [
                {
                    "kpi": v.kpi,
                    "direction": v.direction,
                    "best": v.best,
                    "runner_up": v.runner_up,
                    "contender": v.contender,
                    "level": v.level,
                    "best_mean": v.best_mean,
                    "runner_up_mean": v.runner_up_mean,
                    "difference": v.difference.mean,
                    "difference_low": v.difference.low,
                    "difference_high": v.difference.high,
                    "p_value": v.p_value,
                    "established": v.established,
                    "tie": v.tie,
                    "sentence": verdict_sentence(v),
                }
                for v in verdicts
            ],
            "audit": {
                "ok": not comparison.violations(),
                "violations": [list(v) for v in comparison.violations()],
            },
            "runtime": {
                "run_seconds_total": sum(s.runtime for s in summaries),
                "wall_seconds": wall_seconds,
            },
        }
    )


def _kpi_matrix(comparison: Comparison, kpis: Sequence[str]) -> str:
    head = ["KPI", *[v.label for v in comparison.variants]]
    rows = []
    for kpi in kpis:
        kind = kpi_kind(kpi)
        cells = [(kpi_label(kpi), "")]
        cells += [
            (_fmt_ci(comparison.stat(v.label, kpi), kind), "num") for v in comparison.variants
        ]
        rows.append(cells)
    return html_table(head, rows, "kpis")


def _difference_table(comparison: Comparison, kpis: Sequence[str]) -> str:
    table = comparison.table()
    base = comparison.baseline.label
    rows = []
    for variant in comparison.variants[1:]:
        for kpi in kpis:
            kind = kpi_kind(kpi)
            row = table[(table["variant"] == variant.label) & (table["kpi"] == kpi)].iloc[0]
            significant = bool(row["significant"])
            low, high = row["diff_low"], row["diff_high"]
            rows.append(
                [
                    (f"{variant.label} - {base}", ""),
                    (kpi_label(kpi), ""),
                    (_fmt_diff(row["diff"], kind), "num"),
                    (f"{_fmt_diff(low, kind)} to {_fmt_diff(high, kind)}", "num"),
                    (
                        "yes" if significant else "not established",
                        "met" if significant else "nodata",
                    ),
                    (_fmt_hw(row["diff_half_width"], kind), "num"),
                    (_fmt_hw(row["unpaired_half_width"], kind), "num"),
                ]
            )
    head = [
        "variant - baseline",
        "KPI",
        "paired difference",
        "95 % CI",
        "significant?",
        "half-width (paired)",
        "half-width (unpaired)",
    ]
    return html_table(head, rows, "differences")


def _comparison_html(
    comparison: Comparison, summary: Mapping[str, Any], images: Sequence[tuple[str, str, bytes]]
) -> str:
    station = _comparison_station(comparison)
    kpis = _comparison_kpis(comparison, station)
    names = list(dict.fromkeys(v.scenario.name for v in comparison.variants))
    all_summaries = [s for rows in comparison.summaries.values() for s in rows]
    auto = any(s.warmup_auto for s in all_summaries)
    at_limit = sum(s.warmup_at_limit for s in all_summaries)
    wall = summary["runtime"]["wall_seconds"]
    meta = (
        f"{len(comparison.variants)} variants x {comparison.replications} replications with "
        f"common random numbers (replication i of every variant uses seed {comparison.seed}, "
        f"replication i); {_warmup_text([s.warmup for s in all_summaries], auto, at_limit)}; "
        f"ran on {comparison.executor}; ecommerce-sim {sim.__version__}"
        + (f"; {wall:.1f} s wall clock." if wall is not None else ".")
    )
    body = [
        f"<h1>Comparison: {escape(', '.join(names))}</h1>",
        '<p class="description">Variants: '
        f"{escape('; '.join(v.label for v in comparison.variants))}"
        f" (baseline of the differences: {escape(comparison.baseline.label)}).</p>",
        f'<p class="meta">{escape(meta)}</p>',
    ]
    if comparison.precision is not None:
        reached = "reached" if comparison.precise else "NOT reached (the cap stopped it)"
        body.append(
            f'<p class="note">Sequential stopping: replications were added in rounds '
            f"({', '.join(map(str, comparison.rounds))}) until every variant's "
            f"{', '.join(comparison.precision_kpis)} had a 95 % half-width within "
            f"{comparison.precision:.0%} of its mean: {reached}.</p>"
        )
    body.append('<section id="verdicts"><h2>Verdicts</h2><ul>')
    for verdict in summary["verdicts"]:
        css = "met" if verdict["established"] else "nodata"
        body.append(f'<li class="{css}">{escape(verdict["sentence"])}</li>')
    body.append(
        '</ul><p class="note">Each verdict compares the variant with the best mean with every '
        "other variant on the same random numbers (paired differences over replications, "
        "Student-t intervals); with more than two variants each interval is widened "
        "(Bonferroni: 97.5 % each for three variants) so that together they hold with 95 % "
        "confidence. A win is established only when every interval excludes zero. Each "
        "verdict is a separate 95 % statement: with many KPIs, one in twenty may be wrong by "
        "chance.</p></section>"
    )
    body.append('<section id="audit"><h2>Audit of the books</h2>')
    body.append(_audit_html(comparison.violations()))
    body.append("</section>")
    body.append('<section id="kpis"><h2>Key figures by variant</h2>')
    body.append(
        f'<p class="note">Mean over {comparison.replications} replications ± the half-width '
        "of its 95 % Student-t confidence interval.</p>"
    )
    body.append(_kpi_matrix(comparison, kpis))
    body.append("</section>")
    body.append('<section id="differences"><h2>Paired differences against the baseline</h2>')
    body.append(
        '<p class="note">Variant minus baseline, replication by replication (the same random '
        "numbers), then a 95 % t interval of the mean difference. The unpaired half-width is "
        "what the interval would be if the variants had been run on independent random numbers: "
        "the gap between the two is what common random numbers buy.</p>"
    )
    body.append(_difference_table(comparison, kpis))
    body.append("</section>")
    body.append('<section id="plots"><h2>Plots</h2>')
    body.extend(_figure_html(file, caption, png) for file, caption, png in images)
    body.append("</section>")
    body.append('<section id="data"><h2>Data</h2><ul>')
    for file in (SUMMARY_FILE, "comparison.csv", "replications.csv"):
        body.append(f'<li><a href="{escape(file)}">{escape(file)}</a></li>')
    body.append(
        '</ul><p class="note">comparison.csv: one row per variant and KPI (every numeric KPI): '
        "mean, 95 % CI, and the paired difference against the baseline with its CI, p-value, "
        "significance and the unpaired half-width. replications.csv: every replication's KPIs, "
        "seed and warm-up cut.</p></section>"
    )
    return _page(f"Comparison: {', '.join(names)}", body)


def write_comparison_report(
    comparison: Comparison, folder: Path, *, wall_seconds: float | None = None
) -> ReportFiles:
    """Write a comparison's report into the existing ``folder`` and return the files written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the report folder does not exist")
    station = _comparison_station(comparison)
    kpis = _comparison_kpis(comparison, station)
    table = comparison.table()
    csvs = (folder / "comparison.csv", folder / "replications.csv")
    table.to_csv(csvs[0], index=False)
    groups = [(v.label, comparison.summaries[v.label]) for v in comparison.variants]
    _replications_frame(groups).to_csv(csvs[1], index=False)
    summary = _comparison_summary(comparison, wall_seconds)
    (folder / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    parameter = next(iter(comparison.parameters), None)
    images = []
    figure = plot_kpis_vs_parameter(table, kpis, parameter)
    caption = (
        f"Each KPI's mean and 95 % confidence interval against {parameter}."
        if parameter is not None
        else "Each KPI's mean and 95 % confidence interval by variant."
    )
    images.append(("kpis.png", caption, _save(figure, folder / "kpis.png")))
    pngs = [folder / "kpis.png"]
    if station is not None:
        slo = comparison.baseline.scenario.slo.page_p95
        figure = plot_knee(_knee_points(groups, station), station=station, slo_p95=float(slo))
        caption = (
            f"Page response time (mean and p95, 95 % CIs) against the utilisation of {station}: "
            "latency stays flat while utilisation is low and climbs steeply past the knee."
        )
        images.append(("knee.png", caption, _save(figure, folder / "knee.png")))
        pngs.append(folder / "knee.png")
    page = folder / HTML_FILE
    page.write_text(_comparison_html(comparison, summary, images), encoding="utf-8")
    return ReportFiles(folder, folder / SUMMARY_FILE, page, csvs, tuple(pngs))


def format_comparison(comparison: Comparison) -> str:
    """Return the comparison's one-screen text: main KPIs per variant and each verdict."""
    station = _comparison_station(comparison)
    kpis = _comparison_kpis(comparison, station)
    lines = [
        f"{len(comparison.variants)} variants x {comparison.replications} replications "
        f"(common random numbers, seed {comparison.seed}) -- mean ± 95 % half-width"
    ]
    width = max(len(kpi_label(k)) for k in kpis) if kpis else 10
    for variant in comparison.variants:
        lines.append(f"  {variant.label}")
        for kpi in kpis:
            stat = comparison.stat(variant.label, kpi)
            lines.append(f"    {kpi_label(kpi):<{width}}  {_fmt_ci(stat, kpi_kind(kpi))}")
    lines.append("verdicts:")
    judged = [k for k in kpis if k in KPI_DIRECTIONS]
    lines.extend(f"  - {verdict_sentence(v)}" for v in comparison.verdicts(judged))
    if comparison.violations():
        lines.append(f"  AUDIT FAILED in {len(comparison.violations())} places (see the report)")
    return "\n".join(lines)


# --- the plan ---------------------------------------------------------------------------------
def _plan_summary(plan: Plan, wall_seconds: float | None) -> dict[str, Any]:
    twin = plan.twin
    return jsonable(
        {
            "format": COMPARISON_FORMAT,
            "kind": "plan",
            "version": sim.__version__,
            "name": plan.scenario.name,
            "parameter": plan.parameter,
            "station": plan.station,
            "answer": plan.answer,
            "start": plan.start,
            "base_capacity": plan.base_capacity,
            "lower": plan.lower,
            "upper": plan.upper,
            "seed": plan.seed,
            "replications": plan.replications,
            "monotone": plan.monotone,
            "runs": plan.runs,
            "executor": plan.executor,
            "slos": [
                {"name": s.name, "kpi": s.kpi, "comparison": s.comparison, "target": s.target}
                for s in plan.slos
            ],
            "twin": {
                "station": twin.station,
                "arrival_rate": twin.arrival_rate,
                "mean_service": twin.mean_service,
                "scv": twin.scv,
                "offered_load": twin.offered_load,
                "max_wait": twin.max_wait,
                "basis": twin.basis,
                "servers": twin.servers,
            },
            "evaluations": [
                {
                    "step": e.step,
                    "capacity": e.capacity,
                    "replications": len(e.summaries),
                    "all_met": e.all_met,
                    "slos": {
                        s.name: {
                            "mean": e.stats[s.name].mean,
                            "half_width": e.stats[s.name].half_width,
                            "bound": s.bound(e.stats[s.name]),
                            "met": e.met[s.name],
                        }
                        for s in plan.slos
                    },
                }
                for e in plan.evaluations
            ],
            "scenario": plan.scenario.to_data(),
            "runtime": {
                "run_seconds_total": sum(s.runtime for e in plan.evaluations for s in e.summaries),
                "wall_seconds": wall_seconds,
            },
        }
    )


def _answer_text(plan: Plan) -> str:
    objectives = ", ".join(str(s) for s in plan.slos)
    if plan.answer is None:
        return (
            f"No value of {plan.parameter} up to {plan.upper} meets every objective "
            f"({objectives}) with 95 % confidence."
        )
    text = (
        f"The smallest {plan.parameter} that meets every objective ({objectives}) with 95 % "
        f"confidence is {plan.answer}"
    )
    if plan.answer > plan.lower:
        try:
            below = plan.evaluation(plan.answer - 1)
        except KeyError:
            below = None
        if below is not None:
            missed = [s.name for s in plan.slos if below.met[s.name] is not True]
            text += f"; at {plan.answer - 1}, {', '.join(missed)} is not met with 95 % confidence"
    return text + "."


def _slo_cell(slo: Slo, evaluation: Any) -> tuple[str, str]:
    ci = evaluation.stats[slo.name]
    met = evaluation.met[slo.name]
    kind = kpi_kind(slo.kpi)
    word = "no data" if met is None else ("met" if met else "not met")
    css = "nodata" if met is None else ("met" if met else "missed")
    return f"{_fmt_ci(ci, kind)} ({word})", css


def _plan_html(
    plan: Plan, summary: Mapping[str, Any], images: Sequence[tuple[str, str, bytes]]
) -> str:
    twin = plan.twin
    wall = summary["runtime"]["wall_seconds"]
    summaries = [s for e in plan.evaluations for s in e.summaries]
    auto = any(s.warmup_auto for s in summaries)
    at_limit = sum(s.warmup_at_limit for s in summaries)
    meta = (
        f"{len(plan.evaluations)} capacities evaluated, {plan.runs} runs; each evaluation "
        f"{plan.replications} replications with common random numbers (seed {plan.seed}); "
        f"{_warmup_text([s.warmup for s in summaries], auto, at_limit)}; search range "
        f"{plan.lower} to {plan.upper}; ran on {plan.executor}; ecommerce-sim {sim.__version__}"
        + (f"; {wall:.1f} s wall clock." if wall is not None else ".")
    )
    css = "met" if plan.answer is not None else "missed"
    body = [
        f"<h1>Capacity plan: {escape(plan.scenario.name)} — {escape(plan.parameter)}</h1>",
        f'<p class="description {css}">{escape(_answer_text(plan))}</p>',
        f'<p class="meta">{escape(meta)}</p>',
    ]
    if not plan.monotone:
        body.append(
            '<p class="fail">The evaluations are not monotone: a capacity meets the objectives '
            "while a larger one does not. The answer is the bisection's; more replications "
            "would make it firmer.</p>"
        )
    body.append('<section id="twin"><h2>The analytic twin\'s first guess</h2>')
    if twin.servers is None:
        body.append(
            f'<p class="note">No guess ({escape(twin.basis)}); the search started at the '
            f"scenario's own value {plan.base_capacity}.</p>"
        )
    else:
        body.append(
            f'<p class="note">From the pilot at {plan.base_capacity}: arrivals at '
            f"{escape(twin.station)} λ = {twin.arrival_rate:.4g}/s, mean service S = "
            f"{escape(format_duration(twin.mean_service))}, offered load a = λS = "
            f"{twin.offered_load:.3g} Erlangs, service scv {twin.scv:.2g}. Erlang C (M/M/c, "
            f"scaled by the Allen-Cunneen factor (1 + scv) / 2) gives the smallest c with mean "
            f"wait in queue at most {escape(format_duration(twin.max_wait))} "
            f"({escape(twin.basis)}): "
            f"<strong>{twin.servers}</strong>. The search started there "
            f"({plan.start}).</p>"
        )
    body.append("</section>")
    body.append('<section id="search"><h2>The search</h2>')
    body.append(
        "<p class=\"note\">In search order: the pilot at the scenario's value, the twin's guess, "
        "then galloping (steps 1, 2, 4, ...) to bracket the answer and bisection. An objective "
        "is met when its 95 % interval lies on the right side of the target.</p>"
    )
    head = ["step", plan.parameter, "replications", *[str(s) for s in plan.slos], "all met"]
    rows = []
    for e in plan.evaluations:
        rows.append(
            [
                (str(e.step), "num"),
                (str(e.capacity), "num"),
                (str(len(e.summaries)), "num"),
                *[_slo_cell(s, e) for s in plan.slos],
                ("yes" if e.all_met else "no", "met" if e.all_met else "missed"),
            ]
        )
    body.append(html_table(head, rows, "search"))
    body.append("</section>")
    body.append('<section id="plots"><h2>Plots</h2>')
    body.extend(_figure_html(file, caption, png) for file, caption, png in images)
    body.append("</section>")
    body.append('<section id="data"><h2>Data</h2><ul>')
    for file in (SUMMARY_FILE, "plan.csv", "replications.csv"):
        body.append(f'<li><a href="{escape(file)}">{escape(file)}</a></li>')
    body.append("</ul></section>")
    return _page(f"Capacity plan: {plan.scenario.name}", body)


def write_plan_report(
    plan: Plan, folder: Path, *, wall_seconds: float | None = None
) -> ReportFiles:
    """Write a capacity plan's report into the existing ``folder`` and return the files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the report folder does not exist")
    curve = plan.curve()
    csvs = (folder / "plan.csv", folder / "replications.csv")
    curve.to_csv(csvs[0], index=False)
    ordered = sorted(plan.evaluations, key=lambda e: e.capacity)
    short = plan.parameter.split(".")[-1]
    groups = [(f"{short}={e.capacity}", e.summaries) for e in ordered]
    frame = _replications_frame(groups)
    frame.insert(1, plan.parameter, [int(v.split("=")[-1]) for v in frame["variant"]])
    frame.to_csv(csvs[1], index=False)
    summary = _plan_summary(plan, wall_seconds)
    (folder / SUMMARY_FILE).write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    figure = plot_plan_curve(
        curve, plan.slos, parameter=plan.parameter, answer=plan.answer, guess=plan.twin.servers
    )
    caption = (
        f"Each objective's KPI (mean and 95 % CI) at every {plan.parameter} the search "
        "evaluated: green points meet it with 95 % confidence; the green line is the answer, "
        "the dotted line the analytic twin's first guess."
    )
    images = [("plan.png", caption, _save(figure, folder / "plan.png"))]
    pngs = [folder / "plan.png"]
    station = plan.station or _busiest(ordered[0].summaries)
    if station is not None:
        figure = plot_knee(
            _knee_points(groups, station),
            station=station,
            slo_p95=next((s.target for s in plan.slos if s.kpi == "latency.p95"), None),
        )
        caption = (
            f"Page response time (mean and p95) against the utilisation of {station} at each "
            "evaluated capacity."
        )
        images.append(("knee.png", caption, _save(figure, folder / "knee.png")))
        pngs.append(folder / "knee.png")
    page = folder / HTML_FILE
    page.write_text(_plan_html(plan, summary, images), encoding="utf-8")
    return ReportFiles(folder, folder / SUMMARY_FILE, page, csvs, tuple(pngs))


def format_plan(plan: Plan) -> str:
    """Return the plan's text for the command line: the answer, the twin's guess, the search."""
    twin = plan.twin
    lines = [_answer_text(plan)]
    if twin.servers is not None:
        lines.append(
            f"  analytic twin: λ = {twin.arrival_rate:.4g}/s, "
            f"S = {format_duration(twin.mean_service)} at {twin.station} "
            f"-> first guess {twin.servers} ({twin.basis})"
        )
    lines.append(
        f"  {len(plan.evaluations)} capacities evaluated ({plan.runs} runs, "
        f"{plan.replications} replications each):"
    )
    for e in plan.evaluations:
        cells = "; ".join(f"{s.name} {_slo_cell(s, e)[0]}" for s in plan.slos)
        lines.append(
            f"    {plan.parameter}={e.capacity}: {'MET' if e.all_met else 'not met'}: {cells}"
        )
    if not plan.monotone:
        lines.append("  warning: the evaluations are not monotone in capacity")
    return "\n".join(lines)
