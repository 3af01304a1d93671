"""The analytic twin: closed-form queueing and caching results the simulation is checked against.

Pure functions of their arguments (no simulation, no randomness). Notation follows
REFERENCE.md: arrival rate ``lambda``, service rate ``mu`` (per server), ``c`` servers, offered
load ``a = lambda / mu`` (in Erlangs) and utilisation ``rho = a / c``.

Queueing:

- :func:`erlang_b` / :func:`erlang_c` -- blocking and waiting probabilities of M/M/c.
- :func:`mmc` -- the steady state of M/M/c (``rho, p_wait, wq, w, lq, l``).
- :func:`smallest_servers` -- the fewest servers that meet a waiting-time or waiting-probability
  target (capacity planning's basic question).
- :func:`mgc_wait` -- the Allen-Cunneen *approximation* for M/G/c.
- :func:`littles_law` -- ``L = lambda W``.

Caching (Che's approximation for LRU under independent Zipf requests):

- :func:`zipf_popularity`, :func:`che_characteristic_time`, :func:`che_hit_ratio`,
  :func:`che_hit_ratio_from`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "MMc",
    "che_characteristic_time",
    "che_hit_ratio",
    "che_hit_ratio_from",
    "erlang_b",
    "erlang_c",
    "littles_law",
    "mgc_wait",
    "mmc",
    "smallest_servers",
    "zipf_popularity",
]


def _check_servers(c: int) -> None:
    if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1:
        raise ValueError(f"servers must be an integer >= 1, got {c!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def erlang_b(c: int, a: float) -> float:
    """Return the Erlang B blocking probability ``B(c, a)`` of an M/M/c/c loss system.

    Computed by the numerically stable recursion ``B(0, a) = 1``,
    ``B(k, a) = a B(k-1, a) / (k + a B(k-1, a))``: every step stays in [0, 1], so there is no
    overflow of ``a^c / c!`` even for hundreds or thousands of servers. ``O(c)`` time.
    """
    _check_servers(c)
    _check_nonnegative("offered load a", a)
    b = 1.0
    for k in range(1, int(c) + 1):
        b = a * b / (k + a * b)
    return b


def _c_from_b(c: int, a: float, b: float) -> float:
    # Erlang C from Erlang B (valid for a < c): C = c B / (c - a (1 - B)).
    return c * b / (c - a * (1.0 - b))


def erlang_c(c: int, a: float) -> float:
    """Return the Erlang C probability that an arrival waits in an M/M/c queue.

    ``C(c, a) = c B(c, a) / (c - a (1 - B(c, a)))`` for ``a < c``, where ``B`` is
    :func:`erlang_b` (so the result is stable for ``c`` in the hundreds). Examples:
    ``C(1, a) = a`` (M/M/1: the probability of waiting is ``rho``); ``C(2, 1) = 1/3``.

    For ``a >= c`` the queue is unstable and every arrival eventually waits: returns ``1.0``
    (the limit of the formula as ``a -> c``).
    """
    _check_servers(c)
    _check_nonnegative("offered load a", a)
    if a >= c:
        return 1.0
    return _c_from_b(c, a, erlang_b(c, a))


@dataclass(frozen=True, slots=True)
class MMc:
    """Steady state of an M/M/c queue (times in the unit of the rates' reciprocals).

    ``rho`` utilisation ``lambda / (c mu)``; ``p_wait`` Erlang C; ``wq`` mean wait in queue
    ``C / (c mu - lambda)``; ``w`` mean time in system ``wq + 1/mu``; ``lq`` mean queue length
    ``lambda wq``; ``l`` mean number in system ``lambda w`` (Little's law).
    """

    rho: float
    p_wait: float
    wq: float
    w: float
    lq: float
    l: float  # noqa: E741 - the standard queueing symbol L


def mmc(arrival_rate: float, service_rate: float, servers: int) -> MMc:
    """Return the steady state of M/M/c with Poisson arrivals and exponential service.

    ``a = lambda / mu``, ``rho = a / c``, ``p_wait = C(c, a)``, ``wq = C / (c mu - lambda)``,
    ``w = wq + 1 / mu``, ``lq = lambda wq``, ``l = lambda w``. For ``c = 1`` this is M/M/1:
    ``wq = rho / (mu - lambda)``.

    Raises ``ValueError`` if the queue is unstable (``rho >= 1``) or an argument is out of range.
    """
    _check_nonnegative("arrival_rate", arrival_rate)
    _check_positive("service_rate", service_rate)
    _check_servers(servers)
    a = arrival_rate / service_rate
    rho = a / servers
    if rho >= 1.0:
        raise ValueError(
            f"M/M/c is unstable: rho = {arrival_rate} / ({servers} x {service_rate}) "
            f"= {rho:.6g} >= 1"
        )
    p_wait = erlang_c(servers, a)
    wq = p_wait / (servers * service_rate - arrival_rate)
    w = wq + 1.0 / service_rate
    return MMc(rho=rho, p_wait=p_wait, wq=wq, w=w, lq=arrival_rate * wq, l=arrival_rate * w)


def smallest_servers(
    arrival_rate: float,
    service_rate: float,
    *,
    max_wait: float | None = None,
    max_p_wait: float | None = None,
) -> int:
    """Return the smallest number of M/M/c servers meeting every given target.

    Targets: ``max_wait`` bounds the mean wait in queue ``wq`` (time, > 0); ``max_p_wait``
    bounds the Erlang C probability of waiting (in (0, 1]). With no target the answer is the
    smallest stable ``c``: ``floor(a) + 1`` where ``a = lambda / mu``.

    The search starts at the smallest stable ``c`` and walks up, extending the Erlang B recursion
    one step per candidate (``O(answer)`` time); both ``wq`` and ``C`` decrease in ``c``, so the
    first ``c`` that meets the targets is the smallest. Raises ``ValueError`` for a target
    that is not positive (a wait of exactly 0 is never met when ``lambda > 0``).
    """
    _check_nonnegative("arrival_rate", arrival_rate)
    _check_positive("service_rate", service_rate)
    if max_wait is not None:
        _check_positive("max_wait", max_wait)
    if max_p_wait is not None and not 0.0 < max_p_wait <= 1.0:
        raise ValueError(f"max_p_wait must be in (0, 1], got {max_p_wait!r}")
    a = arrival_rate / service_rate
    c = math.floor(a) + 1
    b = erlang_b(c, a)
    while True:
        p_wait = _c_from_b(c, a, b)
        wq = p_wait / (c * service_rate - arrival_rate)
        if (max_wait is None or wq <= max_wait) and (max_p_wait is None or p_wait <= max_p_wait):
            return c
        c += 1
        b = a * b / (c + a * b)


def mgc_wait(arrival_rate: float, mean_service: float, scv: float, servers: int) -> float:
    """Approximate the mean wait in queue of M/G/c (Allen-Cunneen approximation).

    ``Wq(M/G/c) ~= Wq(M/M/c) (1 + scv) / 2`` where ``scv`` is the squared coefficient of
    variation of the service time (0 deterministic, 1 exponential) and ``Wq(M/M/c)`` uses
    ``mu = 1 / mean_service``. Exact for ``c = 1`` (Pollaczek-Khinchine) and for exponential
    service (``scv = 1``); an approximation otherwise, best at high utilisation and moderate
    ``scv``, cruder at light load or very variable service. Raises ``ValueError`` if the queue
    is unstable.
    """
    _check_positive("mean_service", mean_service)
    _check_nonnegative("scv", scv)
    return mmc(arrival_rate, 1.0 / mean_service, servers).wq * (1.0 + scv) / 2.0


def littles_law(throughput: float, time_in_system: float) -> float:
    """Return the mean number in the system by Little's law, ``L = lambda W``.

    Holds for any stable system (any arrival and service distributions and disciplines) with
    ``throughput`` lambda (items per unit time) and mean ``time_in_system`` W.
    """
    _check_nonnegative("throughput", throughput)
    _check_nonnegative("time_in_system", time_in_system)
    return throughput * time_in_system


def zipf_popularity(n: int, alpha: float) -> np.ndarray:
    """Return the Zipf request probabilities of ``n`` items: ``p_i = i^-alpha / H(n, alpha)``.

    ``i = 1..n`` is the popularity rank and ``H(n, alpha) = sum_i i^-alpha`` normalises the
    vector to sum to 1. ``alpha = 0`` is uniform; web and product popularity is typically
    0.6-1.0 (REFERENCE.md). Returns a float64 array of length ``n``, decreasing in rank.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    _check_nonnegative("alpha", alpha)
    weights = np.arange(1, int(n) + 1, dtype=np.float64) ** -float(alpha)
    return weights / weights.sum()


def che_characteristic_time(popularity: np.ndarray, capacity: float) -> float:
    """Return Che's characteristic time ``T`` of an LRU cache of ``capacity`` items.

    ``T`` solves ``f(T) = sum_i (1 - exp(-p_i T)) - C = 0`` where ``p_i`` are the request
    probabilities (rates per request, so ``T`` is measured in requests). Items with
    ``p_i = 0`` are never cached and do not count. Returns ``0.0`` for ``C = 0`` and
    ``math.inf`` when ``C >= m``, the number of items with ``p_i > 0`` (everything fits).

    Bracket for ``0 < C < m`` (solved with ``scipy.optimize.brentq``): ``f`` is continuous and
    strictly increasing, and ``f(0) = -C < 0``. With ``p_min`` the smallest positive ``p_i``
    and ``x = C / m``, let ``T1 = -ln(1 - x) / p_min``. Every term is at least
    ``1 - exp(-p_min T)``, so at ``T2 = 2 T1``:
    ``f(T2) >= m (1 - (1 - x)^2) - C = C (1 - x) > 0``. Hence the root is unique and lies in
    ``(0, T2)``.
    """
    p = np.asarray(popularity, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0.0):
        raise ValueError("popularity must be a non-empty 1-d array of finite values >= 0")
    _check_nonnegative("capacity", capacity)
    p = p[p > 0.0]
    m = p.size
    if m == 0:
        raise ValueError("popularity has no item with positive probability")
    if capacity == 0.0:
        return 0.0
    if capacity >= m:
        return math.inf

    def excess(t: float) -> float:
        return float(-np.expm1(-p * t).sum()) - capacity

    t_high = -2.0 * math.log1p(-capacity / m) / float(p.min())
    return float(brentq(excess, 0.0, t_high, xtol=1e-12, rtol=1e-13, maxiter=500))


def che_hit_ratio_from(popularity: np.ndarray, capacity: float) -> float:
    """Return Che's LRU hit ratio for any request distribution ``popularity``.

    ``h = sum_i p_i (1 - exp(-p_i T))`` with ``T`` from :func:`che_characteristic_time`
    (item ``i`` is a hit with probability ``1 - exp(-p_i T)``). ``popularity`` is normalised
    here, so unnormalised weights (rates) are accepted. ``1.0`` when every requested item fits.
    """
    p = np.asarray(popularity, dtype=np.float64)
    t = che_characteristic_time(p, capacity)
    if math.isinf(t):
        return 1.0
    return float(np.dot(p, -np.expm1(-p * t)) / p.sum())


def che_hit_ratio(n: int, alpha: float, capacity: float) -> float:
    """Return Che's approximation of the hit ratio of an LRU cache under Zipf requests.

    ``n`` items with popularity :func:`zipf_popularity` ``(n, alpha)``, independent requests,
    a cache holding ``capacity`` items: ``h = sum_i p_i (1 - exp(-p_i T))`` where
    ``sum_i (1 - exp(-p_i T)) = C``. Returns ``1.0`` when ``capacity >= n`` and ``0.0`` for an
    empty cache. Accurate for exact LRU, close for Redis's sampled LRU (REFERENCE.md).
    """
    return che_hit_ratio_from(zipf_popularity(n, alpha), capacity)
