"""The full engine (``parse_scenario`` + ``run``) against the analytic twin.

Every scenario lives in tests/validation/scenarios.py; seeds run two at a time in a process pool
and come back in seed order, so every figure below is deterministic.

1. M/M/c through the engine. A one-page graph (``visit`` -> exit, no think time) makes each
   Poisson session exactly one customer of the app station: c = 4, exponential service with mean
   20 ms, no cache look-ups or queries (``visit`` is not a TPC-W page). The requests frame's
   ``app_wait`` of customers arriving in [40 s, horizon - 2 s) is compared with ``mmc(...).wq``.
   Warm-up: 40 s is 2,000 mean service times, over 20 relaxation times
   ``1 / (c mu (1 - sqrt(rho))^2)`` (1.9 s at rho = 0.9), so the empty start is forgotten. Tail:
   pages are recorded when they end, so the last 2 s of arrivals are left out (a sojourn over
   2 s has probability ~e^-40); no kept customer is lost to the horizon.
   Tolerance: one run's mean wait is noisy. Measured through the engine over 24 other seeds
   (100-123), its relative standard deviation is 3.7 % at rho = 0.8 with 100,000 customers, and
   at rho = 0.9 5.5 % with 150,000 and 3.4 % with 200,000 (grand means +1.5 %, +1.0 %, +0.3 %,
   each within 2 SE of zero). Pooled with the bare station's figures
   (test_station_vs_erlang_c.py), the spread is ~12.8 / sqrt(customers) at rho = 0.8 and
   ~19.8 / sqrt(customers) at 0.9 (REFERENCE.md: ~6 % at 0.9 for 200,000, ~4 % at 0.8): ~4.0 %
   and ~4.4 % for the sizes used here, so with k = 6 seeds the standard error of the grand mean
   is ~1.65 % and ~1.8 %. The test allows t(0.995, 5) x SE from the *observed* spread (t = 4.03:
   a 99 % Student-t interval, which accounts for the SE being itself estimated from six numbers)
   but never more than 6 % of Wq. The cap usually binds; it is ~3.6 and ~3.3 true SEs, so a
   correct engine fails with probability ~0.03 % and ~0.1 %, while a 6 % bias is caught half the
   time and a 10 % bias at least 98 % of the time.

2. Little's law per station on a full TPC-W shopping shop (~130 pages/s over 10 replications
   of 250 s; app 46-65 %, database 41-54 %, cache 42-57 % busy, with queueing at each). For app,
   database and cache the station's time-average number in system equals throughput x (mean wait
   + mean service) within 2 %: over a run, L = lambda W holds up to the customers still inside at
   the horizon, a relative error of order W / horizon (under 1e-3 here), so 2 % only fails if the
   station's books disagree.

3. Che's approximation. One page, ``product_detail`` -> exit: each session looks up one product
   drawn from Zipf(0.8) over 2,000 ranks (the first view of a session never follows a
   recommendation); no carts, orders, stock changes or admin edits, so nothing is invalidated;
   LRU, 200 entries, no TTL: the independent reference model Che describes. Warm-up: an LRU
   cache's content is the 200 most recently requested distinct products, a function of the recent
   past only, so once 200 distinct products have been asked for the content has exactly its
   stationary law. Before it is full every miss is a product never seen, so 200 misses before the
   cut prove it full (the test asserts it); 600 s is 6,000 look-ups, ~22 x Che's characteristic
   time (277 look-ups). The hit ratio of 60,000 look-ups (two seeds) has a binomial SE of 0.2
   points. At this size Che's figure (0.39965) matches exact LRU (a plain OrderedDict LRU over 3
   million Zipf requests: 0.3997), so the 2 points asked for are ~10 SEs of pure sampling error.

4. The TPC-W shopping mix (the runs of 2). Shares of page views after the warm-up in 10
   independent replications (a session's pages are correlated, so the spread across replications,
   not a binomial bound, gives the standard error). The tolerance per page is t x SE + the
   start-state allowance, with t = t(1 - 0.01 / 28, 9) = 5.02: a two-sided 1 % family-wise level
   over the 14 pages (Bonferroni), Student-t because the SE comes from 10 replications.
   Start-state bias: every session starts at ``home`` and ends after a random number of pages N,
   so the long-run share of page j is not pi_j but E[V_j] / E[N] (renewal-reward; the warm-up,
   longer than the longest session, makes the window stationary). With h_j the solution of the
   Poisson equation ``(I - P) h_j = 1_j - pi_j`` (``scenarios.deviation_matrix``), optional
   stopping gives ``E[V_j] - pi_j E[N] = h_j(home) - E[(P h_j)(last page)]`` for any way of ending
   a session that does not look ahead (here a timer, which long pages such as a checkout end
   more often). The test estimates this bias from the sessions sure to have ended before the
   horizon (their lengths and last pages) and allows |bias| + 4 x its standard error. At ~190
   pages per session it is +0.36 points for ``home`` (pi = 16.2 %) and -0.20 for
   ``search_results``: 4.5 and 2.5 sampling SEs, so a bound without it would fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sim.analysis.theory import MMc, che_hit_ratio, littles_law, mmc
from sim.scenario.loader import parse_scenario
from tests.validation import scenarios as sc

# --- 1. M/M/c through the engine ----------------------------------------------------------------

MMC_SEEDS = tuple(range(6))
MMC_CAP = 0.06
MMC_CASES = ((0.8, 100_000), (0.9, 200_000))  # (rho, customers per seed after the warm-up)


@dataclass(frozen=True)
class MmcComparison:
    rho: float
    runs: list[sc.MmcRun]
    analytic: MMc
    simulated: float  # grand mean of the per-seed mean waits
    se: float  # their standard error, from the observed spread
    t: float
    tolerance: float

    def message(self) -> str:
        ms, wq = 1000.0, self.analytic.wq
        customers = [r.customers for r in self.runs]
        return (
            f"rho={self.rho}: simulated Wq {self.simulated * ms:.4f} ms vs Erlang C "
            f"{wq * ms:.4f} ms ({self.simulated / wq - 1:+.2%}); tolerance "
            f"{self.tolerance * ms:.4f} ms = min(t(0.995, {len(self.runs) - 1})={self.t:.2f} x "
            f"SE {self.se * ms:.4f} ms, {MMC_CAP:.0%} of Wq = {MMC_CAP * wq * ms:.4f} ms); "
            f"{len(self.runs)} seeds x {min(customers)}-{max(customers)} customers; per-seed "
            f"errors {[f'{r.mean_wait / wq - 1:+.1%}' for r in self.runs]}"
        )


def compare_mmc(rho: float, customers: int) -> MmcComparison:
    runs = sc.run_seeds(sc.measure_mmc, MMC_SEEDS, rho, customers)
    analytic = mmc(sc.mmc_arrival_rate(rho), 1.0 / sc.MMC_SERVICE_MEAN, sc.MMC_SERVERS)
    means = np.array([r.mean_wait for r in runs])
    se = float(means.std(ddof=1)) / math.sqrt(len(means))
    t = float(scipy_stats.t.ppf(0.995, len(means) - 1))
    tolerance = min(t * se, MMC_CAP * analytic.wq)
    return MmcComparison(rho, runs, analytic, float(means.mean()), se, t, tolerance)


@pytest.mark.parametrize(("rho", "customers"), MMC_CASES)
def test_app_station_wait_agrees_with_erlang_c(rho, customers):
    scenario = parse_scenario(sc.mmc_scenario(rho, customers))
    demand = scenario.page_demands()["visit"]
    assert (demand.app, demand.queries, demand.cache_lookups) == (1.0, 0, 0)
    result = compare_mmc(rho, customers)
    assert abs(result.simulated - result.analytic.wq) <= result.tolerance, result.message()
    for r in result.runs:
        assert r.audit_ok, r.violations
        # One page per session: each session is one customer of the app station.
        assert r.session_pages == (r.pages, 1), r.session_pages
        assert abs(r.customers - customers) < 5 * math.sqrt(customers)  # a Poisson count
    # Utilisation and the mean service are estimated far more precisely than the wait.
    utilisation = float(np.mean([r.utilisation for r in result.runs]))
    assert utilisation == pytest.approx(result.analytic.rho, rel=0.01), utilisation
    service = float(np.mean([r.mean_service for r in result.runs]))
    assert service == pytest.approx(sc.MMC_SERVICE_MEAN, rel=0.01), service


# --- 2 and 4. a full shop under the TPC-W shopping mix ------------------------------------------

SHOP_SEEDS = tuple(range(10))
SHOP_WARMUP = 100.0  # longer than the longest session (90 s, plus a think time and a page)
SHOP_HORIZON = 250.0
LITTLE_STATIONS = ("app", "database", "cache")
TPCW_PAGES = (
    "home",
    "new_products",
    "best_sellers",
    "product_detail",
    "search_request",
    "search_results",
    "shopping_cart",
    "customer_registration",
    "buy_request",
    "buy_confirm",
    "order_inquiry",
    "order_display",
    "admin_request",
    "admin_confirm",
)


@pytest.fixture(scope="module")
def shop_runs() -> list[sc.ShopRun]:
    return sc.run_seeds(sc.measure_shop, SHOP_SEEDS, SHOP_HORIZON, SHOP_WARMUP)


def test_stations_obey_littles_law_on_a_full_shop(shop_runs):
    for seed, r in zip(SHOP_SEEDS, shop_runs, strict=True):
        assert r.audit_ok, r.violations
        for name in LITTLE_STATIONS:
            s = r.station_stats[name]
            # Busy, with queueing: the law is not checked on an idle station.
            assert 0.3 < s["utilisation"] < 0.9, (seed, name, s["utilisation"])
            assert s["mean_queue"] > 0.01 and s["max_queue"] >= 5, (seed, name, s)
            assert s["completions"] > 10_000, (seed, name, s["completions"])
            time_in_system = s["mean_wait"] + s["mean_service"]
            predicted = littles_law(s["throughput"], time_in_system)
            message = (
                f"seed {seed}, {name}: L = {s['mean_in_system']:.5f} vs lambda W = "
                f"{s['throughput']:.3f}/s x ({s['mean_wait'] * 1000:.4f} + "
                f"{s['mean_service'] * 1000:.4f}) ms = {predicted:.5f} "
                f"({s['mean_in_system'] / predicted - 1:+.3%}; tolerance 2 %)"
            )
            assert s["mean_in_system"] == pytest.approx(predicted, rel=0.02), message


@dataclass(frozen=True)
class MixComparison:
    pages: list[str]
    pi: np.ndarray  # the stationary distribution
    simulated: np.ndarray  # mean over replications of each page's share
    se: np.ndarray  # its standard error, from the spread across replications
    t: float
    bias: np.ndarray  # the estimated start-state (and end-of-session) bias of the shares
    allowance: np.ndarray  # |bias| + 4 x its standard error
    tolerance: np.ndarray  # t x se + allowance
    replications: int
    pages_counted: int
    sessions: int  # whole sessions behind the bias estimate
    mean_pages: float  # their mean length

    def rows(self) -> list[str]:
        return [
            f"{p}: simulated {self.simulated[j]:.4%} vs pi {self.pi[j]:.4%} "
            f"({self.simulated[j] - self.pi[j]:+.4%}; start bias {self.bias[j]:+.4%}; "
            f"tolerance {self.tolerance[j]:.4%} = {self.t:.2f} x SE {self.se[j]:.4%} "
            f"+ allowance {self.allowance[j]:.4%})"
            for j, p in enumerate(self.pages)
        ]

    def failing(self) -> list[str]:
        outside = np.abs(self.simulated - self.pi) > self.tolerance
        return [row for row, bad in zip(self.rows(), outside, strict=True) if bad]

    def summary(self) -> str:
        return (
            f"{self.replications} replications, {self.pages_counted} pages after the warm-up; "
            f"{self.sessions} whole sessions of {self.mean_pages:.1f} pages on average"
        )


def compare_mix(runs: list[sc.ShopRun]) -> MixComparison:
    graph = parse_scenario(sc.shop_scenario(SHOP_HORIZON, SHOP_WARMUP)).behavior_graph()
    pages = list(graph.states)
    stationary = graph.stationary_distribution()
    pi = np.array([stationary[p] for p in pages])
    matrix = graph.matrix()
    deviation = sc.deviation_matrix(matrix, pi)  # column j: h_j
    given_up = matrix @ deviation  # [x, j]: (P h_j)(x), what ending after page x forgoes
    home = pages.index(graph.start)
    # The bias as a ratio estimator over the sessions sure to have ended:
    # sum_s a_s / sum_s N_s with a_s = h_j(home) - (P h_j)(last page of s).
    lengths = np.array([n for r in runs for n, _ in r.sessions], dtype=float)
    last = np.array([pages.index(p) for r in runs for _, p in r.sessions])
    excess = deviation[home][None, :] - given_up[last]  # sessions x pages
    bias = excess.sum(axis=0) / lengths.sum()
    residual = excess - bias[None, :] * lengths[:, None]
    bias_se = np.sqrt((residual**2).sum(axis=0)) / lengths.sum()
    allowance = np.abs(bias) + 4.0 * bias_se

    counts = np.array([[r.page_counts.get(p, 0) for p in pages] for r in runs], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    se = shares.std(axis=0, ddof=1) / math.sqrt(len(runs))
    t = float(scipy_stats.t.ppf(1.0 - 0.01 / (2 * len(pages)), len(runs) - 1))
    return MixComparison(
        pages=pages,
        pi=pi,
        simulated=shares.mean(axis=0),
        se=se,
        t=t,
        bias=bias,
        allowance=allowance,
        tolerance=t * se + allowance,
        replications=len(runs),
        pages_counted=int(counts.sum()),
        sessions=len(lengths),
        mean_pages=float(lengths.mean()),
    )


def test_page_frequencies_match_the_tpcw_shopping_mix(shop_runs):
    for r in shop_runs:
        assert r.audit_ok, r.violations
        assert r.unaccounted == 0 and len(r.sessions) > 50, (r.unaccounted, len(r.sessions))
    assert set().union(*(r.page_counts for r in shop_runs)) == set(TPCW_PAGES)
    result = compare_mix(shop_runs)
    assert sorted(result.pages) == sorted(TPCW_PAGES)
    assert not result.failing(), result.summary() + "\n" + "\n".join(result.failing())
    # The allowance is the quantified start-state bias, not slack: a fraction of a point.
    assert np.all(result.allowance < 0.006), result.summary() + "\n" + "\n".join(result.rows())


# --- 3. Che's approximation -------------------------------------------------------------------

CHE_SEEDS = (0, 1)
CHE_WARMUP = 600.0  # 6,000 look-ups, ~22 characteristic times
CHE_HORIZON = CHE_WARMUP + 3_000.0  # 30,000 look-ups per seed after the warm-up


def test_lru_hit_ratio_agrees_with_che():
    scenario = parse_scenario(sc.che_scenario(CHE_HORIZON, CHE_WARMUP))
    cache = scenario.stations.cache
    assert (cache.policy, cache.capacity, cache.ttl) == ("lru", sc.CHE_CAPACITY, None)
    assert list(scenario.behavior_graph().states) == ["product_detail"]
    demand = scenario.page_demands()["product_detail"]
    assert (demand.queries, demand.cache_lookups) == (0, 1)
    runs = sc.run_seeds(sc.measure_che, CHE_SEEDS, CHE_HORIZON, CHE_WARMUP)
    for r in runs:
        assert r.audit_ok, r.violations
        assert r.lookups_per_page == 1.0
        # The cache was full before the cut: from then on its content has its stationary law.
        assert r.misses_before >= sc.CHE_CAPACITY, r.misses_before

    hits = sum(r.hits for r in runs)
    lookups = hits + sum(r.misses for r in runs)
    simulated = hits / lookups
    analytic = che_hit_ratio(sc.CHE_PRODUCTS, sc.CHE_ZIPF, sc.CHE_CAPACITY)
    binomial_se = math.sqrt(analytic * (1 - analytic) / lookups)
    assert abs(simulated - analytic) <= 0.02, (
        f"simulated hit ratio {simulated:.4f} vs Che {analytic:.4f} "
        f"({(simulated - analytic) * 100:+.2f} points; tolerance 2 points; "
        f"{lookups} look-ups after the warm-up, binomial SE {binomial_se * 100:.2f} points; "
        f"misses before the warm-up {[r.misses_before for r in runs]})"
    )
