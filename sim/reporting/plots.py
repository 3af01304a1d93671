"""Plots of one run: pure functions from DataFrames to matplotlib Figures.

Every figure is a ``matplotlib.figure.Figure`` built directly (no pyplot, no global state, no
``show``); the caller saves it (``fig.savefig(path, dpi=100)``) and drops it. Time axes are in
minutes of simulated time. Each time plot takes the run's fault windows (``frames["faults"]``:
``kind, target, start, end`` in seconds) and shades them, each with a legend entry; a fault
without duration (a cache flush) is a vertical line. The end of the warm-up is a dotted line.

The series helpers (:func:`request_series`, :func:`funnel_counts`, :func:`order_state_series`)
turn raw frames into the small frames the plots draw; they are pandas only, so a report can save
their output and redraw the plots later from CSV files alone.

Artists carry a ``gid`` so tests and tools can find them: ``"fault"`` for fault spans and lines,
``"warmup"`` for the warm-up marker, ``"slo"`` for an objective's line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "FUNNEL_STAGES",
    "ORDER_STATES",
    "TIME_UNIT",
    "funnel_counts",
    "order_state_series",
    "plot_cache_hit_rate",
    "plot_funnel",
    "plot_latency_by_page",
    "plot_latency_percentiles",
    "plot_latency_quantiles_by_page",
    "plot_order_states",
    "plot_payment_outcomes",
    "plot_stations",
    "plot_throughput",
    "request_series",
    "shade_faults",
]

TIME_UNIT = 60.0
"""Seconds per unit of the time axes (minutes)."""

ORDER_STATES = (
    "pending",
    "processing",
    "shipped",
    "delivered",
    "cancelled",
    "return_requested",
    "returned",
    "refunded",
)
"""An order's states in lifecycle order (the values of ``sim.domain.orders.OrderStatus``)."""

FUNNEL_STAGES = (
    "sessions",
    "product views",
    "carts",
    "checkout page",
    "paid",
    "delivered",
    "returned",
)
"""The conversion funnel's stages, top to bottom (``checkout page``: sessions that reached the
checkout page, not orders placed, which the ``checkouts`` KPI counts)."""

PRODUCT_PAGE, CART_PAGE, CHECKOUT_PAGE = "product_detail", "shopping_cart", "buy_confirm"

_FAULT_COLOURS = {
    "outage": "tab:red",
    "latency_spike": "tab:orange",
    "pool_shrink": "tab:purple",
    "ghost_success": "tab:brown",
    "cache_flush": "darkcyan",
}
_OUTCOME_COLOURS = {
    "approved": "tab:green",
    "declined": "tab:orange",
    "timeout": "tab:red",
    "failed": "darkred",
    "blocked": "tab:gray",
}
_TIME_SIZE = (9.0, 4.0)
_PERCENTILES = (50, 95, 99)


# --- series -------------------------------------------------------------------------------------
def request_series(
    requests: pd.DataFrame, interval: float, horizon: float | None = None
) -> pd.DataFrame:
    """Return requests per interval of arrival time: count, throughput and response percentiles.

    Columns ``start, length, requests, throughput, p50, p95, p99`` (seconds; throughput per
    second of the interval's ``length``, which is shorter for a last partial interval). With a
    ``horizon`` every interval of ``[0, horizon)`` has a row (quiet ones with 0 requests and NaN
    percentiles); without, the intervals up to the last request.
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")
    columns = ["start", "length", "requests", "throughput", *[f"p{p}" for p in _PERCENTILES]]
    times = requests["time"].to_numpy(dtype=float)
    if horizon is not None:
        count = max(math.ceil(horizon / interval), 1)
    elif times.size:
        count = int(times.max() // interval) + 1
    else:
        return pd.DataFrame(columns=columns)
    bucket = np.clip((times // interval).astype(np.int64), 0, count - 1)
    start = np.arange(count, dtype=float) * interval
    end = start + interval if horizon is None else np.minimum(start + interval, horizon)
    length = end - start
    counts = np.bincount(bucket, minlength=count)[:count]
    frame = pd.DataFrame(
        {
            "start": start,
            "length": length,
            "requests": counts,
            "throughput": counts / np.where(length > 0, length, np.nan),
        }
    )
    response = pd.Series(requests["response"].to_numpy(dtype=float))
    grouped = response.groupby(bucket)
    for p in _PERCENTILES:
        values = grouped.quantile(p / 100.0)
        frame[f"p{p}"] = values.reindex(range(count)).to_numpy(dtype=float)
    return frame[columns]


def funnel_counts(
    sessions: pd.DataFrame,
    requests: pd.DataFrame,
    orders: pd.DataFrame,
    order_events: pd.DataFrame,
    page_sessions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return the conversion funnel: columns ``stage, count`` in :data:`FUNNEL_STAGES` order.

    ``sessions``: sessions started (seen in the sessions or the requests frame, so sessions still
    open at the horizon count); ``product views``, ``carts``, ``checkouts``: sessions that
    requested ``product_detail``, ``shopping_cart``, ``buy_confirm``; ``paid``: orders paid (the
    orders frame's ``paid``); ``delivered`` and ``returned``: orders that reached that state
    (order events). A run without request rows (aggregate mode) passes ``page_sessions``
    (``page, sessions``: distinct sessions per page) for the three page stages.
    """
    started = set(sessions["session"].tolist()) | set(requests["session"].tolist())
    per_page = (
        dict(zip(page_sessions["page"].astype(str), page_sessions["sessions"], strict=True))
        if page_sessions is not None
        else None
    )

    def visited(page: str) -> int:
        if per_page is not None:
            return int(per_page.get(page, 0))
        return int(requests.loc[requests["page"] == page, "session"].nunique())

    def reached(state: str) -> int:
        return int(order_events.loc[order_events["new"] == state, "order_id"].nunique())

    paid = int(orders["paid"].astype(bool).sum()) if not orders.empty else 0
    counts = [
        len(started),
        visited(PRODUCT_PAGE),
        visited(CART_PAGE),
        visited(CHECKOUT_PAGE),
        paid,
        reached("delivered"),
        reached("returned"),
    ]
    return pd.DataFrame({"stage": list(FUNNEL_STAGES), "count": counts})


def order_state_series(
    orders: pd.DataFrame, order_events: pd.DataFrame, times: Sequence[float]
) -> pd.DataFrame:
    """Return how many orders are in each state at each of ``times`` (seconds).

    An order is ``pending`` from its ``placed_at``; each order event moves it from ``old`` to
    ``new`` at ``time`` (an event with no ``old`` creates the order in ``new``). Columns: ``time``
    then every state that ever holds an order, in lifecycle order (:data:`ORDER_STATES`; unknown
    states after them).
    """
    at = np.asarray(times, dtype=float)
    creating = order_events[order_events["old"].isna()]
    created_by_event = set(creating["order_id"].tolist())
    placed = orders[~orders["order_id"].isin(created_by_event)]
    moves = order_events[order_events["old"].notna()]
    deltas = pd.concat(
        [
            pd.DataFrame({"time": placed["placed_at"], "state": "pending", "delta": 1}),
            pd.DataFrame({"time": creating["time"], "state": creating["new"], "delta": 1}),
            pd.DataFrame({"time": moves["time"], "state": moves["old"], "delta": -1}),
            pd.DataFrame({"time": moves["time"], "state": moves["new"], "delta": 1}),
        ],
        ignore_index=True,
    )
    result = pd.DataFrame({"time": at})
    if deltas.empty:
        return result
    deltas["state"] = deltas["state"].astype(str)
    known = [s for s in ORDER_STATES if s in set(deltas["state"])]
    extra = sorted(set(deltas["state"]) - set(ORDER_STATES))
    for state in [*known, *extra]:
        rows = deltas[deltas["state"] == state].sort_values("time", kind="stable")
        level = rows["delta"].to_numpy(dtype=np.int64).cumsum()
        index = np.searchsorted(rows["time"].to_numpy(dtype=float), at, side="right")
        result[state] = np.where(index > 0, level[np.maximum(index - 1, 0)], 0)
    return result


# --- shared decoration --------------------------------------------------------------------------
def shade_faults(ax: Axes, faults: pd.DataFrame | None) -> list[object]:
    """Shade each fault window on ``ax`` (minutes) and label it once; return the artists.

    A window with ``end > start`` is a translucent span; an instant (``end == start``, a cache
    flush) is a dashed vertical line. Labels read ``"outage: payments.card-a"``.
    """
    artists: list[object] = []
    if faults is None or faults.empty:
        return artists
    labelled: set[str] = set()
    for row in faults.itertuples(index=False):
        kind, target = str(row.kind), str(row.target)
        label = f"{kind.replace('_', ' ')}: {target}"
        shown = label if label not in labelled else None
        labelled.add(label)
        colour = _FAULT_COLOURS.get(kind, "tab:gray")
        start, end = float(row.start) / TIME_UNIT, float(row.end) / TIME_UNIT
        if end > start:
            artist = ax.axvspan(start, end, color=colour, alpha=0.18, lw=0, label=shown)
        else:
            artist = ax.axvline(start, color=colour, ls="--", lw=1.2, label=shown)
        artist.set_gid("fault")
        artists.append(artist)
    return artists


def _mark_warmup(ax: Axes, warmup: float) -> None:
    if warmup > 0:
        line = ax.axvline(warmup / TIME_UNIT, color="0.35", ls=":", lw=1, label="end of warm-up")
        line.set_gid("warmup")


def _time_axes(
    ax: Axes,
    *,
    ylabel: str,
    faults: pd.DataFrame | None,
    warmup: float,
    horizon: float | None,
) -> None:
    shade_faults(ax, faults)
    _mark_warmup(ax, warmup)
    ax.set_xlabel("simulated time (minutes)")
    ax.set_ylabel(ylabel)
    if horizon is not None:
        ax.set_xlim(0.0, horizon / TIME_UNIT)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _figure(size: tuple[float, float] = _TIME_SIZE) -> Figure:
    return Figure(figsize=size, layout="constrained")


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _midpoints(series: pd.DataFrame) -> np.ndarray:
    start = series["start"].to_numpy(dtype=float)
    length = series["length"].to_numpy(dtype=float) if "length" in series else None
    if length is None:
        step = float(np.diff(start).min()) if start.size > 1 else 0.0
        length = np.full_like(start, step)
    return (start + length / 2.0) / TIME_UNIT


# --- time plots ---------------------------------------------------------------------------------
def plot_throughput(
    series: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    warmup: float = 0.0,
    horizon: float | None = None,
) -> Figure:
    """Return requests per second over time (by arrival), from :func:`request_series`."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(
        _midpoints(series),
        series["throughput"].to_numpy(dtype=float),
        marker="o",
        ms=3,
        color="tab:blue",
        label="requests / s",
    )
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput: page requests per second")
    _time_axes(ax, ylabel="requests per second", faults=faults, warmup=warmup, horizon=horizon)
    return fig


def plot_latency_percentiles(
    series: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    warmup: float = 0.0,
    horizon: float | None = None,
    slo_p95: float | None = None,
) -> Figure:
    """Return response-time p50 / p95 / p99 per interval (ms), with the p95 objective if given."""
    fig = _figure()
    ax = fig.add_subplot()
    x = _midpoints(series)
    for p, style in zip(_PERCENTILES, ("-", "--", "-."), strict=True):
        ax.plot(
            x,
            series[f"p{p}"].to_numpy(dtype=float) * 1000.0,
            ls=style,
            marker="o",
            ms=3,
            label=f"p{p}",
        )
    if slo_p95 is not None:
        line = ax.axhline(
            slo_p95 * 1000.0, color="black", lw=1, ls=(0, (6, 3)), label="p95 objective"
        )
        line.set_gid("slo")
    ax.set_ylim(bottom=0)
    ax.set_title("Page response time percentiles per interval")
    _time_axes(ax, ylabel="response time (ms)", faults=faults, warmup=warmup, horizon=horizon)
    return fig


def plot_stations(
    stations: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    warmup: float = 0.0,
    horizon: float | None = None,
) -> Figure:
    """Return utilisation (top) and mean queue length (bottom) per station over time.

    ``stations`` is ``frames["stations"]``: one row per station and interval (``station, start,
    length, utilisation, mean_queue``). One line per station on each axis.
    """
    fig = _figure((9.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name, rows in stations.groupby("station", sort=False):
        x = _midpoints(rows)
        top.plot(x, rows["utilisation"].to_numpy(dtype=float) * 100.0, label=str(name))
        bottom.plot(x, rows["mean_queue"].to_numpy(dtype=float), label=str(name))
    top.set_ylim(0, 105)
    top.set_title("Station utilisation and queue length per interval")
    _time_axes(top, ylabel="utilisation (%)", faults=faults, warmup=warmup, horizon=horizon)
    bottom.set_ylim(bottom=0)
    _time_axes(
        bottom, ylabel="mean queue (requests)", faults=faults, warmup=warmup, horizon=horizon
    )
    top.set_xlabel("")
    return fig


def plot_cache_hit_rate(
    cache: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    warmup: float = 0.0,
    horizon: float | None = None,
    interval: float | None = None,
) -> Figure:
    """Return the cache hit rate per interval (%), from ``frames["cache"]``.

    ``cache`` has ``start`` and ``hit_rate`` per interval; ``interval`` (seconds) places each
    point mid-interval (default: the spacing of the starts), the last one mid-way to the
    ``horizon`` when it cuts that interval short.
    """
    fig = _figure()
    ax = fig.add_subplot()
    rows = cache
    if interval is not None:
        length = np.full(len(cache), float(interval))
        if horizon is not None:
            length = np.minimum(length, horizon - cache["start"].to_numpy(dtype=float))
        rows = cache.assign(length=length)
    ax.plot(
        _midpoints(rows),
        cache["hit_rate"].to_numpy(dtype=float) * 100.0,
        marker="o",
        ms=3,
        color="tab:green",
        label="hit rate",
    )
    ax.set_ylim(0, 105)
    ax.set_title("Cache hit rate per interval")
    _time_axes(ax, ylabel="hit rate (% of look-ups)", faults=faults, warmup=warmup, horizon=horizon)
    return fig


def plot_order_states(
    states: pd.DataFrame,
    *,
    faults: pd.DataFrame | None = None,
    warmup: float = 0.0,
    horizon: float | None = None,
) -> Figure:
    """Return the number of orders in each state over time, from :func:`order_state_series`."""
    fig = _figure()
    ax = fig.add_subplot()
    x = states["time"].to_numpy(dtype=float) / TIME_UNIT
    for state in states.columns.drop("time"):
        ax.step(x, states[state].to_numpy(dtype=float), where="post", label=str(state))
    if len(states.columns) == 1:
        _no_data(ax, "no orders")
    ax.set_ylim(bottom=0)
    ax.set_title("Orders by state")
    _time_axes(ax, ylabel="orders", faults=faults, warmup=warmup, horizon=horizon)
    return fig


# --- other plots --------------------------------------------------------------------------------
def _boxplot_orientation() -> dict[str, object]:
    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def plot_latency_by_page(requests: pd.DataFrame, sample: float = 1.0) -> Figure:
    """Return a box plot of response times per page (ms, log scale), slowest median on top.

    ``sample`` is the share of the run's requests that ``requests`` holds (a uniform sample
    of a long run's rows): below 1 the title says that the counts are the sample's.
    """
    data = requests.loc[requests["response"] > 0, ["page", "response"]]
    groups = {
        str(page): rows["response"].to_numpy(dtype=float) * 1000.0
        for page, rows in data.groupby("page")
    }
    order = sorted(groups, key=lambda page: float(np.median(groups[page])))
    fig = _figure((9.0, max(3.0, 0.38 * len(order) + 1.4)))
    ax = fig.add_subplot()
    if order:
        ax.boxplot(
            [groups[page] for page in order],
            whis=(5, 95),
            showfliers=False,
            widths=0.6,
            patch_artist=False,
            **_boxplot_orientation(),
        )
        ax.set_yticks(range(1, len(order) + 1), labels=[f"{p} (n={groups[p].size})" for p in order])
        ax.set_xscale("log")
    else:
        _no_data(ax, "no requests")
    ax.set_xlabel("response time (ms, log scale; box: quartiles, whiskers: p5-p95)")
    title = "Response time distribution per page"
    if sample < 1.0:
        title += f" (a {sample:.1%} uniform sample of the requests: n counts the sample)"
    ax.set_title(title)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


def plot_latency_quantiles_by_page(quantiles: pd.DataFrame) -> Figure:
    """Return :func:`plot_latency_by_page` drawn from per-page percentiles (aggregate mode).

    ``quantiles`` has ``page, count, p5, p25, p50, p75, p95`` (seconds) per page, from the
    latency histograms; boxes span p25-p75, whiskers p5 to p95, as in the plot from rows.
    """
    rows = quantiles[quantiles["count"] > 0].sort_values("p50", kind="stable")
    fig = _figure((9.0, max(3.0, 0.38 * len(rows) + 1.4)))
    ax = fig.add_subplot()
    if len(rows):
        stats = [
            {
                "label": f"{r.page} (n={int(r.count)})",
                "whislo": r.p5 * 1000.0,
                "q1": r.p25 * 1000.0,
                "med": r.p50 * 1000.0,
                "q3": r.p75 * 1000.0,
                "whishi": r.p95 * 1000.0,
                "fliers": [],
            }
            for r in rows.itertuples(index=False)
        ]
        ax.bxp(stats, showfliers=False, widths=0.6, **_boxplot_orientation())
        ax.set_xscale("log")
    else:
        _no_data(ax, "no requests")
    ax.set_xlabel("response time (ms, log scale; box: quartiles, whiskers: p5-p95)")
    ax.set_title("Response time distribution per page")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


def plot_funnel(funnel: pd.DataFrame) -> Figure:
    """Return the conversion funnel as horizontal bars, each with its count and share of the top.

    ``funnel`` has ``stage, count`` rows, top stage first (:func:`funnel_counts`).
    """
    fig = _figure((9.0, 4.2))
    ax = fig.add_subplot()
    stages = funnel["stage"].astype(str).tolist()
    counts = funnel["count"].to_numpy(dtype=float)
    y = np.arange(len(stages))
    ax.barh(y, counts, color="tab:blue", alpha=0.8)
    top = counts[0] if counts.size and counts[0] > 0 else float("nan")
    for yi, count in zip(y, counts, strict=True):
        share = f" ({100.0 * count / top:.1f} %)" if math.isfinite(top) else ""
        ax.annotate(
            f"{int(count):,}{share}",
            (count, yi),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(y, labels=stages)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(counts.max()) if counts.size else 0.0, 1.0) * 1.2)
    ax.set_xlabel("sessions (top four stages) / orders (bottom three)")
    ax.set_title("Conversion funnel, whole run (share of sessions started)")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def plot_payment_outcomes(payments: pd.DataFrame) -> Figure:
    """Return gateway calls per gateway stacked by outcome (approved, declined, timeout, ...)."""
    fig = _figure((9.0, 4.0))
    ax = fig.add_subplot()
    if payments.empty:
        _no_data(ax, "no payment attempts")
    else:
        table = pd.crosstab(payments["gateway"].astype(str), payments["outcome"].astype(str))
        known = [o for o in _OUTCOME_COLOURS if o in table.columns]
        outcomes = known + sorted(set(table.columns) - set(known))
        gateways = table.index.tolist()
        x = np.arange(len(gateways))
        bottom = np.zeros(len(gateways))
        for outcome in outcomes:
            values = table[outcome].to_numpy(dtype=float)
            ax.bar(x, values, bottom=bottom, label=outcome, color=_OUTCOME_COLOURS.get(outcome))
            bottom += values
        for xi, total in zip(x, bottom, strict=True):
            ax.annotate(
                f"{int(total):,}",
                (xi, total),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize="small",
            )
        ax.set_xticks(x, labels=gateways)
        ax.set_ylim(0, float(bottom.max()) * 1.15)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_xlabel("gateway")
    ax.set_ylabel("gateway calls (attempts)")
    ax.set_title("Payment outcomes per gateway")
    ax.grid(True, axis="y", alpha=0.3)
    return fig
