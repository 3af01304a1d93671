"""KPIs of one run, computed from its frames after the warm-up cut (warm-up is a filter).

Requests come as rows (``frames["requests"]``) or, in aggregate mode, as per-interval
aggregates (``frames["request_stats"]`` and ``frames["latency_histogram"]``, see
:mod:`sim.engine.recorder`). From aggregates the warm-up applies at interval granularity: an
interval is kept when its start is at or after the warm-up, so the effective cut is the warm-up
rounded up to a multiple of ``metrics.interval`` (the same cut exactly when the warm-up is such
a multiple). Counts, sums and means are exact; percentiles come from the log-bucketed
histograms and are within 1 % (relative) of the exact ones (:mod:`sim.engine.histogram`).
The histograms are kept per window of whole intervals (``metrics.histogram_interval``), and
percentiles pool the windows that start at or after that cut: with windows wider than an
interval, up to a window less one interval after the cut is left out of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from sim.domain.ledger import balance
from sim.engine.histogram import ZERO_BUCKET, quantiles_from_buckets

if TYPE_CHECKING:
    from sim.domain.carts import Cart
    from sim.engine.world import World

CHECKOUT_PAGE = "buy_confirm"
"""The page whose response time is the checkout latency (it includes the payment)."""

PERCENTILES = (50, 95, 99)
"""The response-time percentiles every report shows."""

_BLOCK_ROWS = 1 << 14  # rows of a latency histogram read at a time by one pass over its columns


def latency_summary(response: pd.Series) -> dict[str, float]:
    """Return count, mean and p50 / p95 / p99 of response times (seconds; NaN when empty)."""
    values = response.to_numpy(dtype=float)
    if values.size == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, **{f"p{p}": nan for p in PERCENTILES}}
    pct = np.percentile(values, PERCENTILES)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)},
    }


def station_utilisation(stations: pd.DataFrame, warmup: float) -> dict[str, dict[str, float]]:
    """Return each station's time-weighted utilisation and mean queue after the warm-up."""
    result: dict[str, dict[str, float]] = {}
    if stations.empty:
        return result
    kept = stations[stations["start"] >= warmup]
    for name, rows in kept.groupby("station", sort=False):
        length = rows["length"].to_numpy(dtype=float)
        capacity = length * rows["servers"].to_numpy(dtype=float)
        if length.sum() <= 0 or capacity.sum() <= 0:
            continue
        result[str(name)] = {
            "utilisation": float((rows["utilisation"] * capacity).sum() / capacity.sum()),
            "mean_queue": float((rows["mean_queue"] * length).sum() / length.sum()),
            "arrivals": int(rows["arrivals"].sum()),
            "completions": int(rows["completions"].sum()),
        }
    return result


def is_aggregate(frames: Mapping[str, pd.DataFrame]) -> bool:
    """Return True when the frames come from a run with ``metrics.requests: aggregate``."""
    return "latency_histogram" in frames and "request_stats" in frames


def interval_cut(warmup: float, interval: float) -> float:
    """Return the warm-up rounded up to the start of the first interval kept (a multiple)."""
    if warmup <= 0.0:
        return 0.0
    k = math.ceil(warmup / interval)
    while k > 0 and (k - 1) * interval >= warmup:
        k -= 1
    while k * interval < warmup:
        k += 1
    return k * interval


def histogram_summary(buckets: np.ndarray, counts: np.ndarray, total: float) -> dict[str, float]:
    """Return count, mean and p50 / p95 / p99 from (bucket, count) pairs and the exact sum.

    ``buckets`` need not be sorted or unique. The same keys as :func:`latency_summary`.
    """
    buckets = np.asarray(buckets, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, **{f"p{p}": nan for p in PERCENTILES}}
    unique, inverse = np.unique(buckets, return_inverse=True)
    pooled = np.bincount(inverse, weights=counts).astype(np.int64)
    values = quantiles_from_buckets(unique, pooled, [p / 100.0 for p in PERCENTILES])
    return {
        "count": n,
        "mean": float(total / n),
        **{f"p{p}": v for p, v in zip(PERCENTILES, values, strict=True)},
    }


def aggregate_request_kpis(
    frames: Mapping[str, pd.DataFrame], *, warmup: float, horizon: float, interval: float
) -> dict[str, Any]:
    """Return the request KPIs of an aggregate-mode run, intervals before the warm-up dropped.

    Keys: ``throughput`` (requests kept / (horizon - cut)), ``latency``, ``latency_by_page``,
    ``checkout_latency``, ``cache_hit_rate`` and ``page_views`` (all requests), where ``cut``
    is :func:`interval_cut` of the warm-up.
    """
    stats = frames["request_stats"]
    cut = interval_cut(warmup, interval)
    kept = stats[stats["start"] >= cut]
    table = _page_buckets(frames["latency_histogram"], since=cut)
    span = max(horizon - cut, 1e-9)
    by_page: dict[str, dict[str, float]] = {}
    sums = kept.groupby("page", observed=True, sort=True)["response_sum"].sum()
    for i, page in enumerate(table.pages):
        present = table.seen[i] > 0
        if present.any():
            by_page[str(page)] = histogram_summary(
                table.grid[present], table.counts[i, present], float(sums.get(page, 0.0))
            )
    present = table.seen.sum(axis=0) > 0
    overall = histogram_summary(
        table.grid[present],
        table.counts.sum(axis=0)[present],
        float(kept["response_sum"].sum()),
    )
    empty = histogram_summary(np.zeros(0), np.zeros(0), 0.0)
    hits = int(kept["cache_hits"].sum())
    lookups = hits + int(kept["cache_misses"].sum())
    return {
        "throughput": float(int(kept["requests"].sum()) / span),
        "latency": overall,
        "latency_by_page": by_page,
        "checkout_latency": by_page.get(CHECKOUT_PAGE, empty),
        "cache_hit_rate": float(hits / lookups) if lookups else float("nan"),
        "page_views": int(stats["requests"].sum()),
    }


def row_request_kpis(requests: pd.DataFrame, *, warmup: float, horizon: float) -> dict[str, Any]:
    """Return the request KPIs of a rows-mode run (the keys of :func:`aggregate_request_kpis`)."""
    kept = requests[requests["time"] >= warmup]
    span = max(horizon - warmup, 1e-9)
    by_page = {
        str(page): latency_summary(rows["response"])
        for page, rows in kept.groupby("page", sort=True)
    }
    lookups = int(kept["cache_hits"].sum() + kept["cache_misses"].sum())
    return {
        "throughput": float(len(kept) / span),
        "latency": latency_summary(kept["response"]),
        "latency_by_page": by_page,
        "checkout_latency": by_page.get(CHECKOUT_PAGE, latency_summary(kept["response"][:0])),
        "cache_hit_rate": float(kept["cache_hits"].sum() / lookups) if lookups else float("nan"),
        "page_views": len(requests),
    }


def request_kpis(
    frames: Mapping[str, pd.DataFrame], *, warmup: float, horizon: float, interval: float
) -> dict[str, Any]:
    """Return the request KPIs from rows or from aggregates, whichever the frames hold."""
    if is_aggregate(frames):
        return aggregate_request_kpis(frames, warmup=warmup, horizon=horizon, interval=interval)
    return row_request_kpis(frames["requests"], warmup=warmup, horizon=horizon)


def aggregate_request_series(
    request_stats: pd.DataFrame,
    latency_histogram: pd.DataFrame,
    interval: float,
    horizon: float | None = None,
    per_window: int = 1,
) -> pd.DataFrame:
    """Return requests per interval (count, throughput, p50 / p95 / p99) from aggregates.

    The frame :func:`sim.reporting.plots.request_series` builds from rows: columns ``start,
    length, requests, throughput, p50, p95, p99``; with a ``horizon`` every interval of
    ``[0, horizon)`` has a row (quiet ones with 0 requests and NaN percentiles). When the
    histogram's windows span ``per_window`` intervals, each interval has the percentiles of
    its window.
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")
    columns = ["start", "length", "requests", "throughput", *[f"p{p}" for p in PERCENTILES]]
    starts = request_stats["start"].to_numpy(dtype=float)
    if horizon is not None:
        count = max(math.ceil(horizon / interval), 1)
    elif starts.size:
        count = round(starts.max() / interval) + 1
    else:
        return pd.DataFrame(columns=columns)
    index = _interval_index(starts, interval, count)
    start = np.arange(count, dtype=float) * interval
    end = start + interval if horizon is None else np.minimum(start + interval, horizon)
    length = end - start
    counts = np.bincount(
        index, weights=request_stats["requests"].to_numpy(dtype=float), minlength=count
    )[:count].astype(np.int64)
    frame = pd.DataFrame(
        {
            "start": start,
            "length": length,
            "requests": counts,
            "throughput": counts / np.where(length > 0, length, np.nan),
        }
    )
    quantiles = np.full((count, len(PERCENTILES)), np.nan)
    buckets = latency_histogram["bucket"].to_numpy()
    weights = latency_histogram["count"].to_numpy()
    bounds, order = _interval_rows(
        latency_histogram["start"].to_numpy(dtype=float), interval, count
    )
    for i in range(count):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            rows = slice(lo, hi) if order is None else order[lo:hi]  # rows of interval i
            unique, inverse = np.unique(buckets[rows], return_inverse=True)
            pooled = np.bincount(inverse, weights=weights[rows]).astype(np.int64)
            quantiles[i] = quantiles_from_buckets(unique, pooled, [p / 100.0 for p in PERCENTILES])
    if per_window > 1:  # a window's rows are at its first interval: each interval takes them
        quantiles = quantiles[(np.arange(count) // per_window) * per_window]
    for j, p in enumerate(PERCENTILES):
        frame[f"p{p}"] = quantiles[:, j]
    return frame[columns]


def _interval_rows(
    starts: np.ndarray, interval: float, count: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return where each interval's rows begin and end, and the order that groups the rows.

    Interval ``i`` has rows ``order[bounds[i]:bounds[i + 1]]``; the order is None when the
    rows come grouped already (those of RequestAggregates.frames() are sorted by start), and
    then the pass over the starts holds no more than a block of them at a time.
    """
    per_interval = np.zeros(count, dtype=np.int64)
    grouped, last = True, 0
    for block in _blocks(starts.size):
        index = _interval_index(starts[block], interval, count)
        per_interval += np.bincount(index, minlength=count)
        grouped = grouped and index[0] >= last and bool(np.all(index[:-1] <= index[1:]))
        last = index[-1]
    bounds = np.concatenate(([0], np.cumsum(per_interval)))
    if grouped:
        return bounds, None
    return bounds, np.argsort(_interval_index(starts, interval, count), kind="stable")


def _interval_index(starts: np.ndarray, interval: float, count: int) -> np.ndarray:
    """Return the interval (``0 .. count - 1``) of each start, the nearest multiple's."""
    return np.clip(np.round(starts / interval).astype(np.int64), 0, count - 1)


BOX_PERCENTILES = (5, 25, 50, 75, 95)
"""The percentiles of a page's response-time box: whiskers, quartiles and median."""


def page_latency_quantiles(latency_histogram: pd.DataFrame) -> pd.DataFrame:
    """Return per page the count and response-time percentiles of :data:`BOX_PERCENTILES`.

    From aggregates, over the whole run; responses of zero (the zero bucket) are left out, as
    the box plot of rows leaves them out. Columns ``page, count, p5, p25, p50, p75, p95``.
    """
    columns = ["page", "count", *[f"p{p}" for p in BOX_PERCENTILES]]
    rows = []
    table = _page_buckets(latency_histogram, positive=True)
    for i, page in enumerate(table.pages):
        present = table.seen[i] > 0
        if present.any():
            pooled = table.counts[i, present]
            qs = [p / 100.0 for p in BOX_PERCENTILES]
            values = quantiles_from_buckets(table.grid[present], pooled, qs)
            rows.append([str(page), int(pooled.sum()), *values])
    return pd.DataFrame(rows, columns=columns)


class _PageBuckets(NamedTuple):
    """A latency histogram's rows and counts pooled per page and bucket."""

    pages: list[Any]  # the page names, in the order groupby("page", sort=True) gives them
    grid: np.ndarray  # the buckets in use, ascending
    seen: np.ndarray  # (pages + 1) x grid: the rows kept (the last line: rows without a page)
    counts: np.ndarray  # (pages + 1) x grid: their counts summed (int64)


def _page_buckets(
    histogram: pd.DataFrame, *, since: float | None = None, positive: bool = False
) -> _PageBuckets:
    """Return a latency histogram's rows and counts pooled per page and bucket.

    Only the rows with ``start >= since`` (when given) and, when ``positive``, a response
    above zero (not the zero bucket) count. Two passes over the columns, a block of rows at a
    time, instead of filtering, grouping and sorting the frame: the result's size is the
    number of pages times the buckets in use, the temporaries a block's, whatever the rows.
    """
    if histogram.empty:
        none = np.zeros((1, 0), dtype=np.int64)
        return _PageBuckets([], np.zeros(0, dtype=np.int64), none, none)
    page = histogram["page"]
    if isinstance(page.dtype, pd.CategoricalDtype):
        codes, pages = page.cat.codes.to_numpy(), list(page.cat.categories)
    else:
        codes, uniques = pd.factorize(page, sort=True)
        pages = list(uniques)
    buckets = histogram["bucket"].to_numpy()
    counts = histogram["count"].to_numpy()
    starts = histogram["start"].to_numpy(dtype=float)
    lowest = int(buckets.min())
    used = np.zeros(int(buckets.max()) - lowest + 1, dtype=bool)
    for block in _blocks(buckets.size):
        used[buckets[block].astype(np.int64) - lowest] = True
    grid = np.flatnonzero(used) + lowest
    column = np.cumsum(used) - 1  # bucket - lowest -> its column in the grid
    cells = (len(pages) + 1) * grid.size
    seen = np.zeros(cells, dtype=np.int64)
    pooled = np.zeros(cells, dtype=np.int64)
    for block in _blocks(buckets.size):
        bucket = buckets[block].astype(np.int64)
        line = codes[block].astype(np.int64)
        line[line < 0] = len(pages)  # a missing page: pooled overall, in no page
        cell = line * grid.size + column[bucket - lowest]
        keep = np.ones(cell.size, dtype=bool)
        if since is not None:
            keep &= starts[block] >= since
        if positive:
            keep &= bucket > ZERO_BUCKET
        cell, weights = cell[keep], counts[block][keep]
        seen += np.bincount(cell, minlength=cells)
        pooled += np.bincount(cell, weights=weights, minlength=cells).astype(np.int64)
    shape = (len(pages) + 1, grid.size)
    return _PageBuckets(pages, grid, seen.reshape(shape), pooled.reshape(shape))


def _blocks(size: int) -> Iterator[slice]:
    """Yield slices of at most ``_BLOCK_ROWS`` rows that cover ``range(size)`` in order."""
    return (slice(lo, lo + _BLOCK_ROWS) for lo in range(0, size, _BLOCK_ROWS))


def cache_series(requests: pd.DataFrame, interval: float) -> pd.DataFrame:
    """Return cache hits, misses and hit rate per interval of request arrival time."""
    columns = ["start", "hits", "misses", "hit_rate"]
    if requests.empty:
        return pd.DataFrame(columns=columns)
    bucket = (requests["time"] // interval) * interval
    grouped = requests.groupby(bucket)[["cache_hits", "cache_misses"]].sum()
    lookups = grouped["cache_hits"] + grouped["cache_misses"]
    frame = pd.DataFrame(
        {
            "start": grouped.index.to_numpy(dtype=float),
            "hits": grouped["cache_hits"].to_numpy(),
            "misses": grouped["cache_misses"].to_numpy(),
            "hit_rate": (grouped["cache_hits"] / lookups.where(lookups > 0)).to_numpy(),
        }
    )
    return frame[columns]


def _conversion(sessions: pd.DataFrame, warmup: float) -> float:
    kept = sessions[sessions["start"] >= warmup] if not sessions.empty else sessions
    return float((kept["orders"] > 0).mean()) if not kept.empty else 0.0


def compute_kpis(
    frames: dict[str, pd.DataFrame], world: World, *, warmup: float, horizon: float
) -> dict[str, Any]:
    """Return the run's KPIs: throughput, latency, cache, utilisation, business figures."""
    span = max(horizon - warmup, 1e-9)
    req = request_kpis(
        frames, warmup=warmup, horizon=horizon, interval=world.scenario.metrics.interval
    )
    sessions = frames["sessions"]
    orders = frames["orders"]
    counters = world.recorder.counters
    payments = frames["payments"]
    final = payments.drop_duplicates("order_id", keep="last") if not payments.empty else payments
    paid_orders = int(orders["paid"].sum()) if not orders.empty else 0
    checkouts = counters.get("checkouts", 0)
    abandoned, recovered = _cart_counts(world.uow.carts.values())
    return {
        "throughput": req["throughput"],
        "sessions_per_second": float(
            (sessions["start"] >= warmup).sum() / span if not sessions.empty else 0.0
        ),
        "latency": req["latency"],
        "latency_by_page": req["latency_by_page"],
        "checkout_latency": req["checkout_latency"],
        "cache_hit_rate": req["cache_hit_rate"],
        "utilisation": station_utilisation(frames["stations"], warmup),
        "sessions": len(sessions),
        "page_views": req["page_views"],
        "conversion": _conversion(sessions, warmup),
        "orders_by_state": orders["status"].value_counts().sort_index().to_dict()
        if not orders.empty
        else {},
        "orders_paid": paid_orders,
        "checkouts": checkouts,
        "payment_success": float(paid_orders / checkouts) if checkouts else float("nan"),
        "revenue_cents": int(balance(world.uow.ledger).minor),  # one pass, nothing kept
        "payment_outcomes": final["outcome"].value_counts().to_dict() if not final.empty else {},
        "carts_abandoned": abandoned,
        "carts_recovered": recovered,
        "declines": counters.get("declines", 0),
        "fraud_blocks": counters.get("fraud_blocks", 0),
        "payment_retries": counters.get("payment_retries", 0),
        "failovers": counters.get("failovers", 0),
        "double_charges_prevented": counters.get("double_charges_prevented", 0),
        "refunds": counters.get("refunds", 0),
        "returns": counters.get("returns", 0),
        "stock_outs": counters.get("stock_outs", 0),
        "registrations": counters.get("registrations", 0),
    }


def _cart_counts(carts: Iterable[Cart]) -> tuple[int, int]:
    """Return how often carts were abandoned and recovered, reading each cart once."""
    abandoned = recovered = 0
    for cart in carts:  # one pass: a file store loads each cart as the loop reaches it
        abandoned += cart.abandoned_count
        recovered += cart.recovered_count
    return abandoned, recovered
