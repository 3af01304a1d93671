"""What the report writers share: the folder's files, the page's style, tables and number formats.

Used by :mod:`sim.reporting.report` (one run) and :mod:`sim.reporting.compare_report` (a
comparison, a capacity plan), so both pages look alike and read figures alike:

- :class:`ReportFiles`, :data:`PLOT_DPI` -- what a report writer returns, its PNGs' resolution.
- :data:`CSS`, :func:`escape`, :func:`html_table` -- the style sheet and the pieces of a page.
- :data:`KPI_ROWS` -- each main KPI's label and how its values read.
- :func:`format_value`, :func:`format_half_width`, :func:`format_duration` -- figures as text.
- :func:`jsonable` -- results as plain JSON data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CSS",
    "KPI_ROWS",
    "PLOT_DPI",
    "ReportFiles",
    "escape",
    "format_duration",
    "format_half_width",
    "format_value",
    "html_table",
    "jsonable",
]

PLOT_DPI = 100
"""Resolution of the PNG plots."""


@dataclass(frozen=True)
class ReportFiles:
    """The files of a report folder."""

    folder: Path
    summary: Path
    html: Path
    csvs: tuple[Path, ...]
    pngs: tuple[Path, ...]


# --- JSON ---------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data: numpy scalars unwrapped, NaN and infinity as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# --- figures as text ----------------------------------------------------------------------------
KPI_ROWS: tuple[tuple[str, str, str], ...] = (
    ("throughput", "Throughput (page requests)", "rate"),
    ("sessions_per_second", "Session arrivals", "rate"),
    ("latency.p50", "Page response p50", "ms"),
    ("latency.p95", "Page response p95", "ms"),
    ("latency.p99", "Page response p99", "ms"),
    ("latency.mean", "Page response mean", "ms"),
    ("checkout_latency.p50", "Checkout response p50", "ms"),
    ("checkout_latency.p95", "Checkout response p95", "ms"),
    ("cache_hit_rate", "Cache hit rate", "pct"),
    ("conversion", "Conversion (sessions with a paid order)", "pct"),
    ("sessions", "Sessions (whole run)", "count"),
    ("page_views", "Page views (whole run)", "count"),
    ("checkouts", "Checkouts", "count"),
    ("orders_paid", "Orders paid", "count"),
    ("payment_success", "Payment success (paid / checkouts)", "pct"),
    ("revenue_cents", "Revenue (ledger balance, currency units)", "money"),
    ("declines", "Declines", "count"),
    ("payment_retries", "Payment retries", "count"),
    ("failovers", "Gateway failovers", "count"),
    ("fraud_blocks", "Fraud blocks", "count"),
    ("double_charges_prevented", "Double charges prevented", "count"),
    ("stock_outs", "Stock-outs", "count"),
    ("carts_abandoned", "Carts abandoned", "count"),
    ("carts_recovered", "Carts recovered", "count"),
    ("refunds", "Refunds", "count"),
    ("returns", "Returns", "count"),
    ("registrations", "Registrations", "count"),
)
"""The main KPIs in the order a report lists them: ``(dotted key, label, kind)``, where the kind
(``rate``, ``ms``, ``pct``, ``count``, ``money``) tells :func:`format_value` how to read them."""


def format_value(value: float, kind: str) -> str:
    """Return a KPI value as text by its kind: ``"12.3 ms"``, ``"50.0 %"``, ``"2.5/s"``; NaN is n/a.

    Kinds: ``ms`` (seconds shown in milliseconds), ``pct`` (a share), ``rate`` (per second),
    ``money`` (minor units shown in currency units), ``count``, anything else a plain number.
    """
    if not math.isfinite(value):
        return "n/a"
    if kind == "ms":
        return f"{value * 1000.0:,.1f} ms"
    if kind == "pct":
        return f"{value * 100.0:.1f} %"
    if kind == "rate":
        return f"{value:,.3g}/s" if abs(value) < 10 else f"{value:,.1f}/s"
    if kind == "money":
        return f"{value / 100.0:,.2f}"
    if kind == "count":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{value:,.4g}"


def format_half_width(value: float, kind: str) -> str:
    """Return a confidence half-width (or a difference) as text by the KPI's kind.

    As :func:`format_value`, except that a share's half-width reads in percentage points
    (``"1.0 pp"``).
    """
    if kind == "ms":
        return f"{value * 1000.0:,.1f} ms"
    if kind == "pct":
        return f"{value * 100.0:.1f} pp"
    if kind == "rate":
        return f"{value:,.3g}/s"
    if kind == "money":
        return f"{value / 100.0:,.2f}"
    if kind == "count":
        return f"{value:,.1f}"
    return f"{value:,.3g}"


def format_duration(seconds: float) -> str:
    """Return a duration as text in the unit that reads best: ms below 1 s, min from 2 min on."""
    if not math.isfinite(seconds):
        return "n/a"
    if 0.0 < seconds < 1e-6:
        return "< 0.001 ms"
    if seconds < 1.0:
        return f"{seconds * 1000.0:.3g} ms"
    if seconds < 120.0:
        return f"{seconds:.3g} s"
    return f"{seconds / 60.0:.3g} min"


# --- HTML ---------------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
.description { font-size: 1.1rem; color: #444; } .meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 0.25rem 0.7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.met { color: #13702b; font-weight: 600; } .missed { color: #b3261e; font-weight: 600; }
.nodata { color: #777; } .ok { color: #13702b; font-weight: 600; }
.fail { color: #b3261e; font-weight: 600; } .note { color: #555; font-size: 0.9rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92rem; }
"""
"""The style sheet every report page embeds."""


def escape(text: object) -> str:
    """Return ``str(text)`` escaped for HTML text and attribute values (quotes too)."""
    return html.escape(str(text), quote=True)


def html_table(head: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], css: str) -> str:
    """Return an HTML table of class ``css``; each cell is ``(text, class)``; text is escaped here.

    An empty class leaves the cell without one (``"num"`` right-aligns a figure).
    """
    out = [f'<table class="{css}"><thead><tr>']
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = "".join(
            f'<td class="{c}">{escape(t)}</td>' if c else f"<td>{escape(t)}</td>" for t, c in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)
