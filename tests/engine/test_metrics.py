"""KPIs from hand-made frames: latency summaries, station utilisation, cache series, KPIs."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc
from collections.abc import Iterator

import pandas as pd
import pytest

from sim.domain.ledger import LedgerEntry
from sim.engine.metrics import (
    CHECKOUT_PAGE,
    cache_series,
    compute_kpis,
    latency_summary,
    station_utilisation,
)
from sim.engine.recorder import REQUEST_COLUMNS, SESSION_COLUMNS
from tests.engine._tiny import paid_order, tiny, world_of

# --- latency_summary -----------------------------------------------------------------------------


def test_latency_summary_of_0_to_100():
    summary = latency_summary(pd.Series([float(x) for x in range(101)]))
    assert summary == {"count": 101, "mean": 50.0, "p50": 50.0, "p95": 95.0, "p99": 99.0}


def test_latency_summary_interpolates_linearly():
    summary = latency_summary(pd.Series([4.0, 1.0, 3.0, 2.0]))
    assert summary["count"] == 4
    assert summary["mean"] == 2.5
    assert summary["p50"] == 2.5
    assert summary["p95"] == pytest.approx(3.85, rel=1e-12)
    assert summary["p99"] == pytest.approx(3.97, rel=1e-12)
    assert all(type(v) is float for k, v in summary.items() if k != "count")


def test_latency_summary_of_nothing_is_nan():
    summary = latency_summary(pd.Series([], dtype=float))
    assert summary["count"] == 0
    assert all(math.isnan(summary[k]) for k in ("mean", "p50", "p95", "p99"))


# --- station_utilisation -------------------------------------------------------------------------

STATION_COLUMNS = [
    "station",
    "start",
    "length",
    "utilisation",
    "mean_queue",
    "arrivals",
    "completions",
    "servers",
]


def _stations(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=STATION_COLUMNS)


ROWS = [
    ("app", 0.0, 60.0, 0.5, 1.0, 10, 9, 2.0),
    ("app", 60.0, 30.0, 1.0, 0.0, 5, 6, 4.0),
    ("db", 0.0, 60.0, 0.25, 3.0, 4, 4, 1.0),
    ("db", 60.0, 30.0, 0.0, 0.0, 0, 0, 1.0),
    ("idle", 0.0, 0.0, 0.0, 0.0, 0, 0, 0.0),
]


def test_station_utilisation_weights_by_servers_times_length():
    result = station_utilisation(_stations(ROWS), warmup=0.0)
    assert list(result) == ["app", "db"]  # first-seen order; a station with no time is left out
    assert result["app"] == {
        "utilisation": (0.5 * 120 + 1.0 * 120) / 240,
        "mean_queue": (1.0 * 60 + 0.0 * 30) / 90,
        "arrivals": 15,
        "completions": 15,
    }
    assert result["db"] == {
        "utilisation": 0.25 * 60 / 90,
        "mean_queue": 3.0 * 60 / 90,
        "arrivals": 4,
        "completions": 4,
    }


def test_station_utilisation_drops_intervals_starting_before_the_warmup():
    result = station_utilisation(_stations(ROWS), warmup=30.0)
    assert result["app"] == {"utilisation": 1.0, "mean_queue": 0.0, "arrivals": 5, "completions": 6}
    assert result["db"]["utilisation"] == 0.0


def test_station_utilisation_of_no_rows():
    assert station_utilisation(pd.DataFrame(), warmup=0.0) == {}
    assert station_utilisation(_stations(ROWS), warmup=1000.0) == {}


# --- cache_series --------------------------------------------------------------------------------


def _requests(rows: list[tuple]) -> pd.DataFrame:
    """Requests from (time, page, response, hits, misses, session, outcome) tuples."""
    full = [
        (t, session, "user-1", page, response, 0.0, 0.1, 0.0, 0, 0.0, hits, misses, outcome)
        for t, page, response, hits, misses, session, outcome in rows
    ]
    return pd.DataFrame(full, columns=list(REQUEST_COLUMNS))


def test_cache_series_buckets_lookups_by_arrival_interval():
    requests = _requests(
        [
            (0.0, "home", 0.1, 3, 1, 1, "ok"),
            (9.5, "home", 0.1, 1, 3, 1, "ok"),
            (10.0, "search_request", 0.1, 0, 0, 1, "ok"),
            (25.0, "home", 0.1, 5, 0, 2, "ok"),
        ]
    )
    frame = cache_series(requests, 10.0)
    assert list(frame.columns) == ["start", "hits", "misses", "hit_rate"]
    assert frame["start"].tolist() == [0.0, 10.0, 20.0]
    assert frame["hits"].tolist() == [4, 0, 5]
    assert frame["misses"].tolist() == [4, 0, 0]
    assert frame["hit_rate"][0] == 0.5
    assert math.isnan(frame["hit_rate"][1])  # no look-ups: no rate
    assert frame["hit_rate"][2] == 1.0


def test_cache_series_of_no_requests():
    frame = cache_series(pd.DataFrame(columns=list(REQUEST_COLUMNS)), 60.0)
    assert list(frame.columns) == ["start", "hits", "misses", "hit_rate"]
    assert frame.empty


# --- compute_kpis --------------------------------------------------------------------------------


def _frames(world, requests, sessions, payments=None) -> dict[str, pd.DataFrame]:
    from sim.engine.runner import collect_frames

    frames = collect_frames(world)
    frames["requests"] = requests
    frames["sessions"] = pd.DataFrame(sessions, columns=list(SESSION_COLUMNS))
    if payments is not None:
        frames["payments"] = pd.DataFrame(
            payments, columns=["time", "order_id", "gateway", "attempt", "outcome", "latency"]
        )
    frames["stations"] = _stations(ROWS[:2])
    return frames


REQUESTS = [
    (5.0, "home", 9.0, 1, 1, 1, "ok"),  # before the warm-up: cut
    (15.0, "home", 0.2, 3, 1, 1, "ok"),
    (20.0, CHECKOUT_PAGE, 2.0, 0, 0, 1, "captured"),
    (30.0, "home", 0.4, 4, 0, 2, "ok"),
    (40.0, CHECKOUT_PAGE, 4.0, 0, 0, 2, "declined"),
]
SESSIONS = [
    (1, "user-1", 5.0, 25.0, 3, False, 1, "exit"),
    (2, "user-2", 30.0, 45.0, 2, True, 0, "exit"),
]
PAYMENTS = [
    (20.0, "order-1", "gw", 1, "timeout", 5.0),
    (26.0, "order-1", "gw", 2, "approved", 1.0),
    (41.0, "order-2", "gw", 1, "declined", 1.0),
]


def test_compute_kpis_on_hand_made_frames():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    world.recorder.count("checkouts", 2)
    world.recorder.count("declines")
    world.recorder.count("payment_retries")
    frames = _frames(world, _requests(REQUESTS), SESSIONS, PAYMENTS)
    kpis = compute_kpis(frames, world, warmup=10.0, horizon=50.0)
    assert kpis["throughput"] == 4 / 40.0
    assert kpis["sessions_per_second"] == 1 / 40.0
    assert kpis["latency"] == latency_summary(pd.Series([0.2, 2.0, 0.4, 4.0]))
    assert kpis["latency_by_page"]["home"]["mean"] == pytest.approx(0.3)
    assert kpis["checkout_latency"] == latency_summary(pd.Series([2.0, 4.0]))
    assert kpis["cache_hit_rate"] == 7 / 8
    assert kpis["utilisation"] == station_utilisation(frames["stations"], 10.0)
    assert (kpis["sessions"], kpis["page_views"]) == (2, 5)
    assert kpis["orders_by_state"] == {"processing": 1}
    assert kpis["orders_paid"] == 1
    assert kpis["checkouts"] == 2
    assert kpis["payment_success"] == 0.5
    total = world.uow.orders.find_readonly(order_id).total.minor
    assert kpis["revenue_cents"] == total
    assert kpis["payment_outcomes"] == {"approved": 1, "declined": 1}  # the last attempt
    assert (kpis["declines"], kpis["payment_retries"], kpis["failovers"]) == (1, 1, 0)
    assert kpis["carts_abandoned"] == kpis["carts_recovered"] == 0


def test_checkout_latency_without_checkouts_is_empty():
    world = world_of(tiny())
    frames = _frames(world, _requests(REQUESTS[:2]), SESSIONS[:1])
    kpis = compute_kpis(frames, world, warmup=10.0, horizon=50.0)
    assert kpis["checkout_latency"]["count"] == 0
    assert math.isnan(kpis["payment_success"])
    assert kpis["payment_outcomes"] == {}


def test_conversion_counts_the_sessions_after_the_warmup_only():
    world = world_of(tiny())
    frames = _frames(world, _requests(REQUESTS), SESSIONS)
    kpis = compute_kpis(frames, world, warmup=10.0, horizon=50.0)
    assert kpis["conversion"] == 0.0  # session 2, the only one after the warm-up, bought nothing


class _LedgerReadBack:
    """A ledger whose every pass makes fresh entries, as a file store reads them back."""

    def __init__(self, entries: int, charge: LedgerEntry) -> None:
        self.entries, self.charge = entries, charge

    def __iter__(self) -> Iterator[LedgerEntry]:
        for seq in range(1, self.entries + 1):
            yield dataclasses.replace(self.charge, seq=seq)

    def __len__(self) -> int:
        return self.entries


def test_revenue_reads_the_ledger_in_one_pass_keeping_no_entry(monkeypatch):
    """A long run's ledger is not held whole to sum it (20,000 entries: about 2 MB)."""
    world = world_of(tiny())
    paid_order(world)
    frames = _frames(world, _requests(REQUESTS), SESSIONS, PAYMENTS)
    (charge,) = list(world.uow.ledger)
    monkeypatch.setattr(world.uow, "ledger", _LedgerReadBack(20_000, charge))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        kpis = compute_kpis(frames, world, warmup=10.0, horizon=50.0)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert kpis["revenue_cents"] == 20_000 * charge.amount.minor
    assert peak < 1_000_000, peak  # 2.4 MB when the ledger was listed first
