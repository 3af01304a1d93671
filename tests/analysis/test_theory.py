from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.analysis.theory import (
    MMc,
    che_characteristic_time,
    che_hit_ratio,
    che_hit_ratio_from,
    erlang_b,
    erlang_c,
    littles_law,
    mgc_wait,
    mmc,
    smallest_servers,
    zipf_popularity,
)

# -- Erlang B and C ------------------------------------------------------------------------


def test_erlang_b_textbook_values():
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(1, 3.0) == pytest.approx(0.75)  # a / (1 + a)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)
    assert erlang_b(3, 2.0) == pytest.approx(4 / 19)  # (8/6) / (1 + 2 + 2 + 8/6)
    assert erlang_b(5, 0.0) == 0.0


def test_erlang_c_textbook_values():
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(4, 0.0) == 0.0


def test_erlang_c_of_an_unstable_load_is_one():
    assert erlang_c(3, 3.0) == 1.0
    assert erlang_c(3, 7.5) == 1.0


def _erlang_c_in_log_space(c: int, a: float) -> float:
    # Independent check: C = (a^c / c!) (c / (c - a)) / (sum_{k<c} a^k / k! + that), in logs.
    log_terms = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
    log_last = c * math.log(a) - math.lgamma(c + 1) + math.log(c / (c - a))
    top = max([*log_terms, log_last])
    total = sum(math.exp(t - top) for t in log_terms) + math.exp(log_last - top)
    return math.exp(log_last - top) / total


@pytest.mark.parametrize(("c", "a"), [(10, 8.0), (100, 95.0), (500, 480.0), (900, 850.5)])
def test_erlang_c_is_stable_for_hundreds_of_servers(c, a):
    value = erlang_c(c, a)
    assert 0.0 < value < 1.0
    assert value == pytest.approx(_erlang_c_in_log_space(c, a), rel=1e-9)


def test_erlang_c_decreases_with_servers_and_increases_with_load():
    by_servers = [erlang_c(c, 7.0) for c in range(8, 30)]
    assert np.all(np.diff(by_servers) < 0)
    by_load = [erlang_c(10, a) for a in np.linspace(0.5, 9.5, 19)]
    assert np.all(np.diff(by_load) > 0)


@pytest.mark.parametrize(
    ("c", "a", "message"),
    [(0, 1.0, "servers"), (2.5, 1.0, "servers"), (True, 0.5, "servers"), (2, -1.0, "load")],
)
def test_erlang_rejects_bad_arguments(c, a, message):
    with pytest.raises(ValueError, match=message):
        erlang_c(c, a)
    with pytest.raises(ValueError, match=message):
        erlang_b(c, a)


def test_erlang_rejects_an_infinite_load():
    with pytest.raises(ValueError, match="finite"):
        erlang_b(2, math.inf)


# -- M/M/c ---------------------------------------------------------------------------------


def test_mm1_matches_its_closed_form():
    lam, mu = 0.8, 1.25
    rho = lam / mu
    result = mmc(lam, mu, 1)
    assert result.rho == pytest.approx(0.64)
    assert result.p_wait == pytest.approx(rho)
    assert result.wq == pytest.approx(rho / (mu - lam))
    assert result.w == pytest.approx(1 / (mu - lam))
    assert result.l == pytest.approx(rho / (1 - rho))
    assert result.lq == pytest.approx(rho**2 / (1 - rho))


def test_mm2_matches_its_closed_form():
    lam, mu = 3.0, 2.0
    rho = lam / (2 * mu)
    result = mmc(lam, mu, 2)
    assert result.p_wait == pytest.approx(2 * rho**2 / (1 + rho))
    assert result.wq == pytest.approx(rho**2 / (mu * (1 - rho**2)))


def test_mmc_obeys_littles_law_and_is_frozen():
    result = mmc(9.0, 1.0, 10)
    assert isinstance(result, MMc)
    assert result.rho == pytest.approx(0.9)
    assert result.lq == pytest.approx(9.0 * result.wq)
    assert result.l == pytest.approx(9.0 * result.w)
    assert result.w == pytest.approx(result.wq + 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.wq = 0.0  # type: ignore[misc]


def test_mmc_with_no_arrivals_never_waits():
    assert mmc(0.0, 2.0, 3) == MMc(rho=0.0, p_wait=0.0, wq=0.0, w=0.5, lq=0.0, l=0.0)


@pytest.mark.parametrize(("lam", "servers"), [(4.0, 4), (5.0, 4), (1.0, 1)])
def test_mmc_refuses_an_unstable_queue(lam, servers):
    with pytest.raises(ValueError, match="unstable"):
        mmc(lam, 1.0, servers)


@pytest.mark.parametrize(
    ("lam", "mu", "c", "message"),
    [(-1.0, 1.0, 1, "arrival_rate"), (1.0, 0.0, 2, "service_rate"), (1.0, 2.0, 0, "servers")],
)
def test_mmc_rejects_bad_arguments(lam, mu, c, message):
    with pytest.raises(ValueError, match=message):
        mmc(lam, mu, c)


@settings(max_examples=200, deadline=None)
@given(
    servers=st.integers(1, 60),
    rho=st.floats(0.01, 0.99),
    mu=st.floats(0.1, 100.0),
)
def test_mmc_waiting_falls_with_every_added_server(servers, rho, mu):
    lam = rho * servers * mu
    now = mmc(lam, mu, servers)
    more = mmc(lam, mu, servers + 1)
    assert 0.0 <= now.p_wait <= 1.0
    assert more.wq < now.wq
    assert more.p_wait < now.p_wait


# -- capacity planning ---------------------------------------------------------------------


def test_smallest_servers_without_a_target_is_the_smallest_stable_pool():
    assert smallest_servers(9.5, 1.0) == 10
    assert smallest_servers(10.0, 1.0) == 11
    assert smallest_servers(0.0, 1.0) == 1


@pytest.mark.parametrize(
    ("lam", "mu", "targets"),
    [
        (100.0, 1.0, {"max_wait": 0.01}),
        (100.0, 1.0, {"max_p_wait": 0.2}),
        (2.0, 0.5, {"max_wait": 0.5, "max_p_wait": 0.05}),
        (400.0, 20.0, {"max_wait": 0.002}),
    ],
)
def test_smallest_servers_is_the_first_pool_meeting_every_target(lam, mu, targets):
    def meets(c: int) -> bool:
        if lam >= c * mu:
            return False
        result = mmc(lam, mu, c)
        return result.wq <= targets.get("max_wait", math.inf) and result.p_wait <= targets.get(
            "max_p_wait", 1.0
        )

    c = smallest_servers(lam, mu, **targets)
    assert meets(c)
    assert not meets(c - 1)


def test_smallest_servers_known_value():
    # 100 Erlangs, mean wait at most 1 % of a service time: 114 servers (113 gives 0.0107).
    assert smallest_servers(100.0, 1.0, max_wait=0.01) == 114
    assert mmc(100.0, 1.0, 113).wq > 0.01 >= mmc(100.0, 1.0, 114).wq


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"max_wait": 0.0}, "max_wait"),
        ({"max_wait": -1.0}, "max_wait"),
        ({"max_p_wait": 0.0}, "max_p_wait"),
        ({"max_p_wait": 1.5}, "max_p_wait"),
    ],
)
def test_smallest_servers_rejects_impossible_targets(targets, message):
    with pytest.raises(ValueError, match=message):
        smallest_servers(5.0, 1.0, **targets)


# -- M/G/c and Little ----------------------------------------------------------------------


def test_mgc_wait_is_exact_for_exponential_service():
    assert mgc_wait(3.0, 1.0, 1.0, 4) == pytest.approx(mmc(3.0, 1.0, 4).wq)


def test_mgc_wait_is_pollaczek_khinchine_for_one_server():
    lam, mean, scv = 0.6, 1.0, 0.25
    rho = lam * mean
    pk = rho * mean * (1 + scv) / (2 * (1 - rho))
    assert mgc_wait(lam, mean, scv, 1) == pytest.approx(pk)


def test_mgc_wait_for_deterministic_service_halves_the_mmc_wait():
    assert mgc_wait(7.0, 0.1, 0.0, 1) == pytest.approx(mmc(7.0, 10.0, 1).wq / 2)


def test_mgc_wait_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mean_service"):
        mgc_wait(1.0, 0.0, 1.0, 2)
    with pytest.raises(ValueError, match="scv"):
        mgc_wait(1.0, 1.0, -0.5, 2)
    with pytest.raises(ValueError, match="unstable"):
        mgc_wait(2.0, 1.0, 1.0, 2)


def test_littles_law():
    assert littles_law(2.5, 4.0) == 10.0
    assert littles_law(0.0, 3.0) == 0.0
    with pytest.raises(ValueError, match="throughput"):
        littles_law(-1.0, 1.0)
    with pytest.raises(ValueError, match="time_in_system"):
        littles_law(1.0, math.nan)


# -- Zipf and Che --------------------------------------------------------------------------


def test_zipf_popularity():
    p = zipf_popularity(4, 1.0)
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert p.tolist() == pytest.approx(
        [1 / harmonic, 1 / 2 / harmonic, 1 / 3 / harmonic, 0.25 / harmonic]
    )
    assert zipf_popularity(5, 0.0).tolist() == pytest.approx([0.2] * 5)
    q = zipf_popularity(1000, 0.8)
    assert q.sum() == pytest.approx(1.0)
    assert np.all(np.diff(q) < 0)
    assert q[0] / q[1] == pytest.approx(2**0.8)


@pytest.mark.parametrize(("n", "alpha"), [(0, 1.0), (2.0, 1.0), (10, -0.5)])
def test_zipf_popularity_rejects_bad_arguments(n, alpha):
    with pytest.raises(ValueError, match=r"n must|alpha"):
        zipf_popularity(n, alpha)


def test_che_time_solves_its_equation_inside_the_proved_bracket():
    p = zipf_popularity(2000, 0.9)
    for capacity in (1, 10, 200, 1999, 1999.5):
        t = che_characteristic_time(p, capacity)
        assert float(-np.expm1(-p * t).sum()) == pytest.approx(capacity, rel=1e-10)
        m = p.size
        assert 0 < t < -2 * math.log1p(-capacity / m) / p.min()


def test_che_time_for_uniform_popularity_is_closed_form():
    # sum (1 - exp(-T/n)) = C  =>  T = -n ln(1 - C/n)
    assert che_characteristic_time(np.full(10, 0.1), 5) == pytest.approx(-10 * math.log(0.5))


def test_che_time_edge_cases():
    p = zipf_popularity(10, 1.0)
    assert che_characteristic_time(p, 0) == 0.0
    assert che_characteristic_time(p, 10) == math.inf
    # items that are never requested do not count towards the capacity
    assert che_characteristic_time(np.array([0.5, 0.5, 0.0, 0.0]), 2) == math.inf


@pytest.mark.parametrize(
    ("popularity", "capacity", "message"),
    [
        (np.array([]), 1, "non-empty"),
        (np.array([[0.5, 0.5]]), 1, "1-d"),
        (np.array([0.5, -0.1]), 1, ">= 0"),
        (np.array([0.5, math.nan]), 1, "finite"),
        (np.array([0.0, 0.0]), 1, "no item"),
        (np.array([0.5, 0.5]), -1, "capacity"),
    ],
)
def test_che_time_rejects_bad_arguments(popularity, capacity, message):
    with pytest.raises(ValueError, match=message):
        che_characteristic_time(popularity, capacity)


def test_che_hit_ratio_edge_values():
    assert che_hit_ratio(100, 0.8, 100) == 1.0
    assert che_hit_ratio(100, 0.8, 150) == 1.0
    assert che_hit_ratio(100, 0.8, 0) == 0.0
    assert che_hit_ratio(10, 0.0, 5) == pytest.approx(0.5)  # uniform: C / n


def test_che_hit_ratio_grows_with_capacity_and_skew():
    by_capacity = [che_hit_ratio(1000, 0.8, c) for c in (1, 10, 50, 100, 500, 999)]
    assert np.all(np.diff(by_capacity) > 0)
    by_alpha = [che_hit_ratio(1000, a, 50) for a in (0.0, 0.4, 0.6, 0.8, 1.0, 1.2)]
    assert np.all(np.diff(by_alpha) > 0)


def test_che_hit_ratio_from_accepts_unnormalised_rates():
    p = zipf_popularity(300, 0.7)
    assert che_hit_ratio_from(p * 42.0, 30) == pytest.approx(che_hit_ratio(300, 0.7, 30))


def _simulate_lru(popularity: np.ndarray, capacity: int, requests: int, warmup: int, seed: int):
    """Exact LRU under independent requests (an OrderedDict), hit ratio after a warm-up."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(popularity.size, size=requests, p=popularity).tolist()
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for i, key in enumerate(keys):
        if key in cache:
            cache.move_to_end(key)
            hits += i >= warmup
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / (requests - warmup)


REQUESTS = 200_000
WARMUP = 20_000


def test_lru_simulation_is_exact_for_a_one_item_cache():
    # With C = 1 a request hits iff it repeats the previous one: h = sum p_i^2 exactly.
    p = zipf_popularity(20, 1.0)
    exact = float((p**2).sum())
    simulated = _simulate_lru(p, 1, REQUESTS, WARMUP, seed=11)
    se = math.sqrt(exact * (1 - exact) / (REQUESTS - WARMUP))
    assert abs(simulated - exact) < 4 * se


@pytest.mark.parametrize(
    ("n", "alpha", "capacity"), [(500, 0.8, 10), (500, 0.8, 50), (500, 1.0, 20), (500, 0.6, 100)]
)
def test_che_agrees_with_an_exact_lru_simulation(n, alpha, capacity):
    # Tolerance 0.006 = sampling + approximation. Sampling: 180,000 scored requests give a
    # binomial standard error sqrt(h (1 - h) / N) <= 0.0012 (h in 0.1-0.4), 4 SE <= 0.0047.
    # Approximation: Che's bias at C >= 10 measured below 0.0005 with 3 x 10^6 requests per case
    # (it grows for tiny caches: 0.005 at C = 1), so 0.001 is allowed for it.
    p = zipf_popularity(n, alpha)
    simulated = _simulate_lru(p, capacity, REQUESTS, WARMUP, seed=capacity)
    assert che_hit_ratio(n, alpha, capacity) == pytest.approx(simulated, abs=0.006)
