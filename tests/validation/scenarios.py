"""Scenarios and parallel runners for tests/validation/test_engine_vs_theory.py.

Each ``*_scenario`` function returns plain scenario data (what ``yaml.safe_load`` gives) that the
tests push through ``parse_scenario``; each ``measure_*`` function runs one seed through the full
engine (``sim.engine.runner.run``) and returns a small picklable summary, so that seeds can run in
a process pool (:func:`run_seeds`). Results come back in seed order: the tests stay deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sim.engine.runner import run
from sim.scenario.loader import parse_scenario

T = TypeVar("T")

WORKERS = 2  # the machine has two cores


def run_seeds(measure: Callable[..., T], seeds: Iterable[int], *args: Any) -> list[T]:
    """Return ``[measure(seed, *args) for seed in seeds]``, computed in a pool of two processes."""
    seeds = list(seeds)
    with ProcessPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(measure, seed, *args) for seed in seeds]
        return [future.result() for future in futures]


# --- 1. one app station, M/M/c ------------------------------------------------------------------

MMC_SERVERS = 4
MMC_SERVICE_MEAN = 0.020  # seconds: the project's default app service mean, here exponential
MMC_WARMUP = 40.0  # 2,000 mean service times, over 20 relaxation times at rho = 0.9
MMC_TAIL = 2.0  # arrivals in the last 2 s are left out (their sojourns may be cut by the horizon)


def mmc_arrival_rate(rho: float) -> float:
    """Return the session rate (= page rate) that loads the app station to ``rho``."""
    return rho * MMC_SERVERS / MMC_SERVICE_MEAN


def mmc_scenario(rho: float, customers: int) -> dict[str, Any]:
    """Return a one-page shop: Poisson sessions of one page each, at an M/M/c app station.

    The page ``visit`` is not a TPC-W page, so it has app factor 1, no queries and no cache
    look-ups: a session is exactly one app-station customer. The horizon leaves ``customers``
    expected arrivals between the warm-up and the tail cut.
    """
    rate = mmc_arrival_rate(rho)
    return {
        "name": f"mmc-rho-{rho}",
        "horizon": MMC_WARMUP + customers / rate + MMC_TAIL,
        "warmup": MMC_WARMUP,
        "catalog": {"products": 1, "categories": 1},
        "population": {"users": 1, "returning_share": 0},
        "arrivals": {"rate": rate},
        "behavior": {
            "graph": {
                "start": "visit",
                "exit": "leave",
                "transitions": {"visit": {"leave": 1}},
                "think_time": {"constant": 0},
            }
        },
        "stations": {
            "app": {
                "servers": MMC_SERVERS,
                "service": {"exponential": {"mean": MMC_SERVICE_MEAN}},
            }
        },
    }


@dataclass(frozen=True)
class MmcRun:
    """One seed of the M/M/c scenario, over the requests that arrived in the kept window."""

    mean_wait: float  # mean of the requests frame's app_wait
    customers: int  # how many requests were kept
    mean_service: float  # mean app_service
    utilisation: float  # the app station's, over the whole run
    pages: int  # requests recorded in the whole run
    session_pages: tuple[int, int]  # sum and max of the sessions frame's pages
    audit_ok: bool  # result.audit.ok: the end-of-run books are clean
    violations: tuple[str, ...]  # result.audit.violations


def measure_mmc(seed: int, rho: float, customers: int) -> MmcRun:
    """Run the M/M/c scenario with ``seed``; summarise the app waits after the warm-up."""
    scenario = parse_scenario(mmc_scenario(rho, customers))
    result = run(scenario, seed)
    requests = result.frames["requests"]
    end = scenario.horizon - MMC_TAIL
    kept = requests[(requests["time"] >= MMC_WARMUP) & (requests["time"] < end)]
    waits = kept["app_wait"].to_numpy(dtype=float)
    sessions = result.frames["sessions"]  # with those still in flight at the horizon
    stats = result.frames["station_stats"].set_index("name").loc["app"]
    return MmcRun(
        mean_wait=float(waits.mean()),
        customers=int(waits.size),
        mean_service=float(kept["app_service"].mean()),
        utilisation=float(stats["utilisation"]),
        pages=len(requests),
        session_pages=(int(sessions["pages"].sum()), int(sessions["pages"].max())),
        audit_ok=result.audit.ok,
        violations=result.audit.violations,
    )


# --- 2 and 4. the TPC-W shopping mix on a full shop ---------------------------------------------

SHOP_SESSION_CAP = 90.0  # seconds: the longest session length drawn
SHOP_THINK_CAP = 1.0  # seconds: the longest think time drawn
# Longer than any one page: a checkout whose payment times out once (20 s, a ~1e-4 chance per
# attempt) and then retries takes ~22 s; two timeouts in a row (~1e-8) are not expected.
SHOP_PAGE_MARGIN = 30.0


def shop_scenario(horizon: float, warmup: float, rate: float = 0.7) -> dict[str, Any]:
    """Return a full shop under the TPC-W shopping mix, every station moderately busy.

    Think time (exponential, mean 0.1 s, capped at 1 s) and session length (exponential, mean
    30 s, capped at 90 s) are shorter than TPC-W's (7 s, 15 min): neither changes which page
    follows which, but sessions of ~190 pages in half a minute keep the start-at-``home`` bias
    small and the time to a steady state (the longest session) short. At ``rate`` 0.7/s the
    shop serves about 130 pages/s: app ~55 %, database ~45 %, cache ~50 % busy.
    """
    return {
        "name": "tpcw-shopping-validation",
        "horizon": horizon,
        "warmup": warmup,
        "catalog": {"products": 1000, "categories": 20, "stock": {"initial": 10_000}},
        "population": {"users": 1000},
        "arrivals": {"rate": rate},
        "behavior": {
            "profile": "tpcw-shopping",
            "think_time": {"exponential": {"mean": 0.1, "cap": SHOP_THINK_CAP}},
            "session_length": {"exponential": {"mean": 30.0, "cap": SHOP_SESSION_CAP}},
        },
        "stations": {
            "app": {"servers": 10, "service": {"exponential": {"mean": "20ms"}}},
            "database": {"pool": 1, "query": {"exponential": {"mean": "7ms"}}},
            "cache": {"servers": 1, "service": {"exponential": {"mean": "1.5ms"}}},
        },
    }


@dataclass(frozen=True)
class ShopRun:
    """One seed of the shop scenario: page counts after the warm-up, sessions, station stats."""

    page_counts: dict[str, int]  # requests frame, arrivals at or after the warm-up
    sessions: tuple[tuple[int, str], ...]  # (pages, last page) of each session sure to have ended
    unaccounted: int  # of those early sessions: missing from the frame or still in flight
    station_stats: dict[str, dict[str, float]]  # frames["station_stats"] by station name
    audit_ok: bool  # result.audit.ok: the end-of-run books are clean
    violations: tuple[str, ...]  # result.audit.violations


def measure_shop(seed: int, horizon: float, warmup: float) -> ShopRun:
    """Run the shop scenario with ``seed`` and summarise it."""
    scenario = parse_scenario(shop_scenario(horizon, warmup))
    result = run(scenario, seed)
    requests = result.frames["requests"]
    kept = requests[requests["time"] >= warmup]
    # Sessions that start early enough end before the horizon (the length cap, then at most one
    # think time and one page), so their lengths are not biased towards short sessions.
    sessions = result.frames["sessions"]
    latest = horizon - SHOP_SESSION_CAP - SHOP_THINK_CAP - SHOP_PAGE_MARGIN
    whole = sessions[sessions["start"] < latest].set_index("session")
    # Open sessions are numbered 1, 2, ... in order of arrival: none may be missing or unfinished.
    unaccounted = (
        int(whole.index.max()) - len(whole) + int((whole["end_reason"] == "in_flight").sum())
    )
    # Rows are appended as pages complete and a session's pages run one after another, so a
    # session's last row is its last page.
    last = requests.drop_duplicates("session", keep="last").set_index("session")["page"]
    stats = result.frames["station_stats"]
    return ShopRun(
        page_counts={str(k): int(v) for k, v in kept["page"].value_counts().items()},
        sessions=tuple((int(pages), str(last.loc[sid])) for sid, pages in whole["pages"].items()),
        unaccounted=unaccounted,
        station_stats={
            str(row["name"]): {k: float(v) for k, v in row.items() if k != "name"}
            for row in stats.to_dict("records")
        },
        audit_ok=result.audit.ok,
        violations=result.audit.violations,
    )


# --- 3. Che's approximation ---------------------------------------------------------------------

CHE_PRODUCTS = 2_000
CHE_ZIPF = 0.8
CHE_CAPACITY = 200
CHE_RATE = 10.0  # sessions (= product views = cache look-ups) per second


def che_scenario(horizon: float, warmup: float) -> dict[str, Any]:
    """Return a shop whose only page is ``product_detail``: one cache look-up per session.

    No carts, no orders, no stock changes and no admin edits, so nothing invalidates an entry;
    LRU without TTL; every session views one product drawn from Zipf(0.8) over 2,000 ranks
    (a session's first view never follows a recommendation): the independent reference model.
    Returning customers are switched off so that no page writes an activity log.
    """
    return {
        "name": "che-lru",
        "horizon": horizon,
        "warmup": warmup,
        "catalog": {
            "products": CHE_PRODUCTS,
            "categories": 20,
            "popularity": {"zipf": CHE_ZIPF},
        },
        "population": {"users": 1, "returning_share": 0},
        "arrivals": {"rate": CHE_RATE},
        "behavior": {
            "graph": {
                "start": "product_detail",
                "exit": "leave",
                "transitions": {"product_detail": {"leave": 1}},
                "think_time": {"constant": 0},
            }
        },
        "stations": {"cache": {"policy": "lru", "capacity": CHE_CAPACITY, "ttl": None}},
    }


@dataclass(frozen=True)
class CheRun:
    """One seed of the Che scenario: cache hits and misses before and after the warm-up."""

    hits: int  # after the warm-up
    misses: int
    misses_before: int  # misses of requests that arrived before the warm-up
    lookups_per_page: float  # (hits + misses) / pages over the whole run
    audit_ok: bool
    violations: tuple[str, ...]


def measure_che(seed: int, horizon: float, warmup: float) -> CheRun:
    """Run the Che scenario with ``seed``; count hits and misses around the warm-up."""
    result = run(parse_scenario(che_scenario(horizon, warmup)), seed)
    requests = result.frames["requests"]
    after = requests[requests["time"] >= warmup]
    before = requests[requests["time"] < warmup]
    lookups = requests["cache_hits"].sum() + requests["cache_misses"].sum()
    return CheRun(
        hits=int(after["cache_hits"].sum()),
        misses=int(after["cache_misses"].sum()),
        misses_before=int(before["cache_misses"].sum()),
        lookups_per_page=float(lookups / len(requests)),
        audit_ok=result.audit.ok,
        violations=result.audit.violations,
    )


# --- the start-state bias of a behaviour graph --------------------------------------------------


def deviation_matrix(matrix: np.ndarray, stationary: np.ndarray) -> np.ndarray:
    """Return ``D`` with ``D[x, j] = sum_{k >= 0} (P^k[x, j] - pi_j)`` for an ergodic chain.

    ``D = (I - P + 1 pi)^-1 - 1 pi`` (the fundamental matrix less its limit). Column ``j`` is
    the solution ``h_j`` of the Poisson equation ``(I - P) h = 1_j - pi_j`` with ``pi h = 0``:
    a walk started at ``x`` visits ``j`` about ``h_j(x)`` times more than ``pi_j`` per step says.
    """
    n = len(stationary)
    limit = np.outer(np.ones(n), stationary)
    return np.linalg.inv(np.eye(n) - matrix + limit) - limit
