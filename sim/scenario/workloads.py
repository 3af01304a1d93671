"""Behaviour graphs: the TPC-W browsing / shopping / ordering mixes and custom transition graphs.

A :class:`BehaviorGraph` is a Markov chain over pages. ``next_state(state, u)`` picks the next page
from a uniform number ``u`` in [0, 1) that the caller draws from its own random stream, by bisection
of the state's cumulative probabilities. A graph may have an ``exit`` (a Customer Behaviour Model
Graph, Menasce and Almeida: the session ends on reaching it) or none (TPC-W: a session ends when its
session-length timer runs out).

The built-in TPC-W tables and the page-demand table live in ``sim/scenario/data/tpcw.yaml``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from sim.scenario.distributions import Distribution, distribution
from sim.scenario.errors import Invalid

TPCW_PROFILES: tuple[str, ...] = ("tpcw-browsing", "tpcw-shopping", "tpcw-ordering")
"""The built-in behaviour profiles (TPC-W's three web-interaction mixes)."""

BROWSE_PAGES: frozenset[str] = frozenset(
    {"home", "new_products", "best_sellers", "product_detail", "search_request", "search_results"}
)
"""TPC-W's browse interactions; every other TPC-W page is an order interaction."""

ROW_TOLERANCE = 1e-6
"""How far a custom graph's outgoing probabilities may sum from 1."""

BUILTIN_ROW_TOLERANCE = 1e-3
"""How far a published TPC-W row may sum from 1 (rounded to 4 decimals) before renormalising."""

MAX_STATES = 1_000
"""The most states a behaviour graph may have."""


@dataclass(frozen=True, slots=True)
class PageDemand:
    """What serving one page costs: app-time multiplier, direct DB queries, cache look-ups.

    Each cache look-up that misses adds one database query (and fills the cache).
    """

    app: float = 1.0
    queries: int = 0
    cache_lookups: int = 0


@dataclass(frozen=True, eq=False)
class BehaviorGraph:
    """A page-transition graph with think time and session length, ready for fast sampling.

    ``states`` are the pages with outgoing transitions (the exit, if any, is not among them).
    ``transitions[state]`` is ``(next_states, cumulative)``: a tuple of successor names and a
    read-only numpy array of cumulative probabilities whose last entry is exactly 1.
    """

    states: tuple[str, ...]
    start: str
    exit: str | None
    transitions: dict[str, tuple[tuple[str, ...], np.ndarray]]
    think_time: Distribution
    session_length: Distribution | None
    _index: dict[str, int] = field(init=False, repr=False)
    _cumulative: tuple[list[float], ...] = field(init=False, repr=False)
    _successors: tuple[tuple[str, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Build the lookup tables that :meth:`next_state` bisects."""
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.states)})
        object.__setattr__(
            self, "_cumulative", tuple(self.transitions[s][1].tolist() for s in self.states)
        )
        object.__setattr__(self, "_successors", tuple(self.transitions[s][0] for s in self.states))

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Mapping[str, float]],
        *,
        start: str,
        exit: str | None,
        think_time: Distribution,
        session_length: Distribution | None,
        tolerance: float = ROW_TOLERANCE,
    ) -> BehaviorGraph:
        """Check a ``{state: {next: probability}}`` table and build the graph from it.

        Rows must sum to 1 within ``tolerance`` (each is then renormalised exactly). Raises
        :class:`~sim.scenario.errors.Invalid` with problems at key paths relative to the graph
        (``transitions.home``, ``start``, ``exit``).
        """
        problems: list[tuple[tuple[str | int, ...], str]] = []
        states = tuple(table)
        if len(states) > MAX_STATES:
            raise Invalid.at(("transitions",), f"at most {MAX_STATES} states, got {len(states)}")
        if exit is not None and exit in table:
            problems.append(
                (("transitions", exit), f"the exit {exit!r} must not have outgoing transitions")
            )
        if start not in table:
            what = "is the exit" if start == exit else "has no transitions"
            problems.append((("start",), f"start state {start!r} {what}"))
        rows: dict[str, dict[str, float]] = {}
        for state, row in table.items():
            for target, p in row.items():
                if target not in table and target != exit:
                    problems.append(
                        (
                            ("transitions", state, target),
                            f"unknown state {target!r} (states: {_names(states)}"
                            + (f"; exit: {exit}" if exit is not None else "")
                            + ")",
                        )
                    )
                elif not 0.0 <= p <= 1.0:
                    problems.append((("transitions", state, target), f"must be in [0, 1], got {p}"))
            total = float(np.sum(list(row.values()), dtype=np.float64)) if row else 0.0
            if abs(total - 1.0) > tolerance:
                problems.append(
                    (("transitions", state), f"probabilities sum to {total:.9g}, not 1")
                )
            else:
                rows[state] = {t: p / total for t, p in row.items() if p > 0.0}
        if problems:
            raise Invalid(problems)
        _check_reachability(rows, start, exit)
        transitions: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        for state, row in rows.items():
            cumulative = np.cumsum(list(row.values()), dtype=np.float64)
            cumulative[-1] = 1.0
            cumulative.flags.writeable = False
            transitions[state] = (tuple(row), cumulative)
        return cls(states, start, exit, transitions, think_time, session_length)

    def __eq__(self, other: object) -> bool:
        """Compare by content (states, probabilities, think time, session length)."""
        if not isinstance(other, BehaviorGraph):
            return NotImplemented
        return (
            self.states == other.states
            and self.start == other.start
            and self.exit == other.exit
            and self._successors == other._successors
            and self._cumulative == other._cumulative
            and self.think_time == other.think_time
            and self.session_length == other.session_length
        )

    def __hash__(self) -> int:
        """Hash by the graph's shape."""
        return hash((self.states, self.start, self.exit, self._successors))

    def next_state(self, state: str, u: float) -> str:
        """Return the page that follows ``state`` for a uniform draw ``u`` in [0, 1)."""
        if not 0.0 <= u < 1.0:
            raise ValueError(f"u must be in [0, 1), got {u}")
        i = self._index[state]
        cumulative = self._cumulative[i]
        k = bisect_right(cumulative, u)
        return self._successors[i][k if k < len(cumulative) else len(cumulative) - 1]

    def probabilities(self, state: str) -> dict[str, float]:
        """Return the (renormalised) outgoing probabilities of ``state``."""
        successors, cumulative = self.transitions[state]
        steps = np.diff(cumulative, prepend=0.0)
        return dict(zip(successors, steps.tolist(), strict=True))

    def matrix(self) -> np.ndarray:
        """Return the transition matrix over :attr:`states` (mass to the exit is left out)."""
        n = len(self.states)
        p = np.zeros((n, n), dtype=np.float64)
        for i, state in enumerate(self.states):
            for target, prob in self.probabilities(state).items():
                j = self._index.get(target)
                if j is not None:
                    p[i, j] += prob
        return p

    def visit_ratios(self) -> dict[str, float]:
        """Return the mean visits to each page per session: V = e_start + V P (needs an exit)."""
        if self.exit is None:
            raise ValueError(
                "a graph without an exit has no visit ratios per session: "
                "its sessions end by the session-length timer"
            )
        p = self.matrix()
        n = len(self.states)
        e = np.zeros(n)
        e[self._index[self.start]] = 1.0
        v = np.linalg.solve((np.eye(n) - p).T, e)
        return dict(zip(self.states, np.maximum(v, 0.0).tolist(), strict=True))

    def stationary_distribution(self) -> dict[str, float]:
        """Return the long-run share of page views per page (sums to 1).

        Without an exit: the stationary distribution of the chain restricted to the pages
        reachable from ``start``. With an exit: the normalised visit ratios.
        """
        if self.exit is not None:
            v = self.visit_ratios()
            total = sum(v.values())
            return {s: x / total for s, x in v.items()}
        reachable = _reachable(
            {s: dict(zip(*self.transitions[s], strict=True)) for s in self.states}, self.start
        )
        keep = [i for i, s in enumerate(self.states) if s in reachable]
        p = self.matrix()[np.ix_(keep, keep)]
        n = len(keep)
        a = p.T - np.eye(n)
        a[-1, :] = 1.0
        b = np.zeros(n)
        b[-1] = 1.0
        pi = np.maximum(np.linalg.solve(a, b), 0.0)
        pi /= pi.sum()
        result = dict.fromkeys(self.states, 0.0)
        for i, x in zip(keep, pi.tolist(), strict=True):
            result[self.states[i]] = x
        return result


def _names(states: tuple[str, ...] | list[str], limit: int = 12) -> str:
    shown = ", ".join(states[:limit])
    return shown + (", ..." if len(states) > limit else "")


def _reachable(rows: Mapping[str, Mapping[str, Any]], start: str) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for target in rows.get(stack.pop(), {}):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _check_reachability(rows: dict[str, dict[str, float]], start: str, exit: str | None) -> None:
    """Require that sessions can end: every page reachable from start reaches the exit (or start).

    With an exit, a closed loop without a way out would make visit ratios infinite. Without one,
    every reachable page must lead back to ``start`` so the long-run page mix is unique.
    """
    reachable = _reachable(rows, start)
    target = exit if exit is not None else start
    reverse: dict[str, set[str]] = {}
    for state, row in rows.items():
        for nxt in row:
            reverse.setdefault(nxt, set()).add(state)
    leads_back = _reachable(reverse, target)
    stuck = sorted(s for s in reachable if s in rows and s not in leads_back)
    if not stuck:
        return
    if exit is not None:
        message = (
            f"the exit {exit!r} cannot be reached from {_names(stuck)} "
            f"(reachable from start {start!r})"
        )
        path: tuple[str | int, ...] = ("exit",) if start in stuck else ("transitions", stuck[0])
    else:
        message = (
            f"without an exit, every page reachable from start must lead back to it; "
            f"{_names(stuck)} cannot reach {start!r}"
        )
        path = ("transitions", stuck[0])
    raise Invalid.at(path, message)


@lru_cache(maxsize=1)
def tpcw_data() -> dict[str, Any]:
    """Return the packaged TPC-W data file (``sim/scenario/data/tpcw.yaml``) as a mapping."""
    text = resources.files("sim.scenario").joinpath("data").joinpath("tpcw.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _mix_name(profile: str) -> str:
    if profile not in TPCW_PROFILES:
        raise ValueError(f"unknown profile {profile!r} (use one of {', '.join(TPCW_PROFILES)})")
    return profile.removeprefix("tpcw-")


@lru_cache(maxsize=len(TPCW_PROFILES))
def builtin_profile(name: str) -> BehaviorGraph:
    """Return a built-in TPC-W graph: ``"tpcw-browsing"``, ``"tpcw-shopping"``, ``"tpcw-ordering"``.

    Rows are renormalised (the published probabilities are rounded); there is no exit: a session
    ends by its session-length timer (exponential, mean 15 min, capped at 60 min).
    """
    data = tpcw_data()
    return BehaviorGraph.from_table(
        data["mixes"][_mix_name(name)],
        start=data["start_state"],
        exit=None,
        think_time=distribution(data["think_time"]),
        session_length=distribution(data["session_length"]),
        tolerance=BUILTIN_ROW_TOLERANCE,
    )


def with_timing(
    graph: BehaviorGraph,
    think_time: Distribution | None = None,
    session_length: Distribution | None = None,
) -> BehaviorGraph:
    """Return ``graph`` with its think time and/or session length replaced (None keeps them)."""
    return replace(
        graph,
        think_time=think_time if think_time is not None else graph.think_time,
        session_length=session_length if session_length is not None else graph.session_length,
    )


def builtin_page_demands() -> dict[str, PageDemand]:
    """Return the page-demand table for the 14 TPC-W pages (a fresh dict each call)."""
    return {page: PageDemand(**row) for page, row in tpcw_data()["pages"].items()}


def published_mix(profile: str) -> dict[str, float]:
    """Return the page mix TPC-W publishes for ``profile``, as fractions summing to 1."""
    table = tpcw_data()["published_mix"][_mix_name(profile)]
    return {page: percent / 100.0 for page, percent in table.items()}


def browse_share(mix: Mapping[str, float]) -> float:
    """Return the share of browse pages (TPC-W's definition) in a page mix."""
    return sum(share for page, share in mix.items() if page in BROWSE_PAGES)
