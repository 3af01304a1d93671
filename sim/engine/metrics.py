"""KPIs of one run, computed from its frames after the warm-up cut (warm-up is a filter)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.domain.ledger import balance

if TYPE_CHECKING:
    from sim.engine.world import World

CHECKOUT_PAGE = "buy_confirm"
"""The page whose response time is the checkout latency (it includes the payment)."""

PERCENTILES = (50, 95, 99)
"""The response-time percentiles every report shows."""


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
    requests = frames["requests"]
    kept = requests[requests["time"] >= warmup]
    span = max(horizon - warmup, 1e-9)
    by_page = {
        str(page): latency_summary(rows["response"])
        for page, rows in kept.groupby("page", sort=True)
    }
    lookups = int(kept["cache_hits"].sum() + kept["cache_misses"].sum())
    sessions = frames["sessions"]
    orders = frames["orders"]
    counters = world.recorder.counters
    payments = frames["payments"]
    final = payments.drop_duplicates("order_id", keep="last") if not payments.empty else payments
    paid_orders = int(orders["paid"].sum()) if not orders.empty else 0
    checkouts = counters.get("checkouts", 0)
    carts = list(world.uow.carts.values())
    return {
        "throughput": float(len(kept) / span),
        "sessions_per_second": float(
            (sessions["start"] >= warmup).sum() / span if not sessions.empty else 0.0
        ),
        "latency": latency_summary(kept["response"]),
        "latency_by_page": by_page,
        "checkout_latency": by_page.get(CHECKOUT_PAGE, latency_summary(kept["response"][:0])),
        "cache_hit_rate": float(kept["cache_hits"].sum() / lookups) if lookups else float("nan"),
        "utilisation": station_utilisation(frames["stations"], warmup),
        "sessions": len(sessions),
        "page_views": len(requests),
        "conversion": _conversion(sessions, warmup),
        "orders_by_state": orders["status"].value_counts().sort_index().to_dict()
        if not orders.empty
        else {},
        "orders_paid": paid_orders,
        "checkouts": checkouts,
        "payment_success": float(paid_orders / checkouts) if checkouts else float("nan"),
        "revenue_cents": int(balance(list(world.uow.ledger)).minor),
        "payment_outcomes": final["outcome"].value_counts().to_dict() if not final.empty else {},
        "carts_abandoned": sum(c.abandoned_count for c in carts),
        "carts_recovered": sum(c.recovered_count for c in carts),
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
