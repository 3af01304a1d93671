"""A monitored resource: a ``simpy.Resource`` that keeps its own time-weighted statistics.

A :class:`Station` is a small subclass of ``simpy.Resource`` (extension by subclassing, never
monkeypatching). Every actor uses it the SimPy way, usually through :func:`visit`::

    wait = yield from visit(env, station, service_time)

which is exactly ``with station.request() as req: yield req; yield env.timeout(service_time)``
and returns the time the request spent queueing.

What the station tracks, in a handful of float operations per change of state (arrival, start
of service, release, cancellation of a waiting request, capacity change):

- counts: arrivals, starts of service, completions (releases), reneged (cancelled while waiting);
- total wait (arrival to start of service) and total service (start of service to release);
- time integrals of the number of busy servers, of the queue length and of the capacity;
- the maximum queue length;
- a time series per interval of ``interval`` seconds: one row of seven numbers per interval, so
  memory grows with the number of intervals, never with the number of requests.

The busy and queue integrals are kept per request, not per change of level: a request's wait is
added when it starts (or gives up) and its service when it is released, each from the time up
to which it was already counted (``StationRequest.counted``). Only an interval's end walks the
requests present, to split their time at the boundary; in-progress time is added when a result
is read. The integral of the servers in existence changes only with the capacity, or with a
release while more servers are busy than the capacity allows (after a shrink).

Capacity can change during a run (:meth:`Station.set_capacity`, e.g. a database pool that
shrinks). Shrinking never preempts: busy servers above the new capacity finish their current
user and then retire, and no waiting request starts until the busy count is below the new
capacity. Growing starts waiting requests at once. Utilisation is therefore defined against
the servers that exist: ``busy integral / integral of max(capacity, busy) dt``. With a constant
capacity ``c`` this is the familiar ``busy integral / (c x elapsed)``, and it never exceeds 1.

Run phases (ARCHITECTURE.md, principle 5): after ``env.run(until=horizon)`` call
:meth:`Station.finalize` ``(horizon)`` to close the integrals at the horizon, then read
:meth:`Station.stats` and :meth:`Station.series`. Warm-up is a filter on the series rows (by
interval start), not a reset.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypedDict

from simpy import Environment, Resource
from simpy.core import BoundClass
from simpy.events import PENDING, Event
from simpy.resources.resource import Release, Request

__all__ = ["IntervalRow", "Station", "StationRequest", "StationStats", "visit"]


class StationRequest(Request):
    """A ``simpy`` request that tells its :class:`Station` when it arrives or gives up."""

    def __init__(self, resource: Station) -> None:
        # The station counts the arrival here, inline: this runs for every visit to every station.
        now = resource._env.now
        if now >= resource._edge:
            resource._roll(now)
        resource._last = now
        resource._arrivals += 1
        self.arrived: float = now
        """Simulated time at which the request joined the station."""
        self.counted: float = now
        """Time up to which its wait or service is in the station's integrals."""
        super().__init__(resource)
        waiting = len(resource.put_queue)
        if waiting > resource._max_queue:
            resource._max_queue = waiting

    def cancel(self) -> None:
        """Withdraw the request if it is still waiting (counted as reneged); see ``simpy``."""
        if self._value is PENDING:  # not ``triggered``: a property costs a call per release
            self.resource._on_cancel(self)
            super().cancel()


class IntervalRow(TypedDict):
    """One interval of a station's time series (a plain dict, ready for a DataFrame).

    ``start`` of the interval and its ``length`` (simulated seconds; only the last, open
    interval can be shorter than ``interval``); ``utilisation`` busy-server integral over the
    capacity integral within the interval; ``mean_queue`` time-average queue length;
    ``arrivals`` and ``completions`` counted in ``[start, start + length)``; ``servers`` the
    time-average number of servers in existence (``max(capacity, busy)``), so that
    ``utilisation x servers x length`` is the busy-server integral: pooling intervals exactly
    weights utilisation by ``servers x length`` (by ``length`` alone when capacity is constant).
    """

    start: float
    length: float
    utilisation: float
    mean_queue: float
    arrivals: int
    completions: int
    servers: float


@dataclass(frozen=True, slots=True)
class StationStats:
    """Summary of one station over ``[start, start + elapsed]`` (times in simulated seconds).

    Integrals: ``busy_time`` = integral of busy servers dt, ``queue_time`` = integral of queue
    length dt, ``capacity_time`` = integral of the servers in existence ``max(capacity, busy)``
    dt. Derived: ``utilisation = busy_time / capacity_time``; ``mean_busy``, ``mean_queue`` and
    ``mean_in_system`` are the integrals over ``elapsed``; ``mean_wait = total_wait / starts``
    (requests still waiting at the end are not included); ``mean_service = total_service /
    completions``; ``throughput = completions / elapsed``. A ratio with a zero denominator is
    ``0.0``. Bookkeeping identities: ``arrivals = starts + reneged + in_queue`` and
    ``starts = completions + in_service``.
    """

    name: str
    start: float
    elapsed: float
    capacity: int
    arrivals: int
    starts: int
    completions: int
    reneged: int
    in_service: int
    in_queue: int
    max_queue: int
    total_wait: float
    total_service: float
    busy_time: float
    queue_time: float
    capacity_time: float
    utilisation: float
    mean_busy: float
    mean_queue: float
    mean_in_system: float
    mean_wait: float
    mean_service: float
    throughput: float


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _check_capacity(capacity: int, minimum: int) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < minimum:
        raise ValueError(f"station capacity must be an integer >= {minimum}, got {capacity!r}")
    return capacity


class Station(Resource):
    """A ``simpy.Resource`` with ``capacity`` servers that monitors itself (see the module doc).

    ``name`` labels it in results; ``interval`` is the length in seconds of the time-series
    intervals, counted from the creation time (``None``: one interval for the whole run).
    """

    # Declared here (not only inherited) so that simpy's BoundClass.bind_early binds them once
    # per instance instead of building a bound method on every call.
    request = BoundClass(StationRequest)
    release = BoundClass(Release)

    def __init__(
        self,
        env: Environment,
        capacity: int = 1,
        *,
        name: str = "station",
        interval: float | None = 60.0,
    ) -> None:
        super().__init__(env, _check_capacity(capacity, 1))
        if interval is not None and not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"station interval must be a finite number > 0, got {interval!r}")
        self.name: str = name
        """Label of the station in results."""
        self.interval: float | None = interval
        """Length of a time-series interval in seconds (``None``: a single interval)."""
        self._origin = float(env.now)
        self._last = self._origin
        self._step: float = math.inf if interval is None else interval
        self._index = 0
        self._start = self._origin  # start of the open interval
        self._edge = self._origin + self._step  # its end
        # The open interval's integrals (busy and queue: the requests' time counted so far;
        # servers in existence: up to ``_cap_from``) and counts.
        self._busy = 0.0
        self._queue = 0.0
        self._cap = 0.0
        self._cap_from = self._origin
        self._arrivals = 0
        self._completions = 0
        # Closed intervals: their sums and one row of raw numbers each.
        self._closed_busy = 0.0
        self._closed_queue = 0.0
        self._closed_cap = 0.0
        self._closed_arrivals = 0
        self._closed_completions = 0
        self._rows: list[tuple[float, float, float, float, float, int, int]] = []
        # Whole-run totals.
        self._starts = 0
        self._reneged = 0
        self._total_wait = 0.0
        self._total_service = 0.0
        self._max_queue = 0

    # -- state changes (the hot path) ------------------------------------------------------

    def _roll(self, now: float) -> None:
        # Close every interval that ends at or before ``now``: the time of the requests present
        # is split at each boundary (nothing changes level in between).
        users, queue = self.users, self.put_queue
        servers = max(len(users), self._capacity)
        while now >= self._edge:
            edge = self._edge
            for request in users:
                self._busy += edge - request.counted
                request.counted = edge
            for request in queue:
                self._queue += edge - request.counted
                request.counted = edge
            self._cap += servers * (edge - self._cap_from)
            self._cap_from = edge
            start = self._start
            self._rows.append(
                (
                    start,
                    edge - start,
                    self._busy,
                    self._queue,
                    self._cap,
                    self._arrivals,
                    self._completions,
                )
            )
            self._closed_busy += self._busy
            self._closed_queue += self._queue
            self._closed_cap += self._cap
            self._closed_arrivals += self._arrivals
            self._closed_completions += self._completions
            self._busy = self._queue = self._cap = 0.0
            self._arrivals = self._completions = 0
            self._last = self._start = edge
            self._index += 1
            self._edge = self._origin + (self._index + 1) * self._step

    def _count_servers(self, now: float) -> None:
        # Add the servers in existence up to ``now`` (before the capacity or, above it, the
        # number of busy servers changes).
        self._cap += max(len(self.users), self._capacity) * (now - self._cap_from)
        self._cap_from = now

    def _on_cancel(self, request: StationRequest) -> None:
        now = self._env.now
        if now >= self._edge:
            self._roll(now)
        self._last = now
        self._queue += now - request.counted
        self._reneged += 1

    def _do_put(self, event: StationRequest) -> None:  # type: ignore[override]
        users = self.users
        if len(users) < self._capacity:
            now = self._env.now
            # Every path that grants (an arrival, a release, set_capacity) has already closed
            # the intervals that ended by ``now``; the check only guards against a future caller.
            if now >= self._edge:  # pragma: no cover
                self._roll(now)
            users.append(event)
            event.usage_since = now
            self._queue += now - event.counted
            event.counted = now
            self._starts += 1
            self._total_wait += now - event.arrived
            event.succeed()

    def _do_get(self, event: Release) -> None:  # type: ignore[override]
        request = event.request
        now = self._env.now
        if now >= self._edge:
            self._roll(now)
        self._last = now
        users = self.users
        if len(users) > self._capacity:  # a server retires with this release (after a shrink)
            self._count_servers(now)
        try:
            users.remove(request)
        except ValueError:
            pass  # released without ever being granted (cancelled while waiting)
        else:
            self._busy += now - request.counted  # type: ignore[attr-defined]
            self._completions += 1
            self._total_service += now - request.usage_since  # type: ignore[attr-defined]
        event.succeed()

    # -- control ---------------------------------------------------------------------------

    def set_capacity(self, capacity: int) -> None:
        """Change the number of servers now (``capacity >= 0``; 0 stops new starts).

        Shrinking preempts no one: users above the new capacity keep their server until they
        release it. Growing starts as many waiting requests as the new servers allow, in
        queue order, at the current time.
        """
        _check_capacity(capacity, 0)
        now = self._env.now
        if now >= self._edge:
            self._roll(now)
        self._last = now
        self._count_servers(now)
        self._capacity = capacity
        while self.put_queue and len(self.users) < capacity:
            self._trigger_put(None)

    def finalize(self, now: float | None = None) -> None:
        """Close the intervals that end by ``now`` (default: the environment's current time).

        Call it after ``env.run(until=horizon)`` with the horizon: results then cover the run
        up to ``now``. ``now`` must lie between the last change of state and ``env.now``. The
        station keeps working if the run goes on; finalize again later for a later snapshot.
        """
        if now is None:
            now = self._env.now
        if not self._last <= now <= self._env.now:
            raise ValueError(
                f"station {self.name!r}: finalize({now!r}) must lie in "
                f"[{self._last!r}, {self._env.now!r}]"
            )
        if now >= self._edge:
            self._roll(now)
        self._last = now

    def _in_progress(self) -> tuple[float, float, float]:
        # The open interval's busy, queue and servers integrals up to the last change or
        # finalize time, the requests present included.
        last = self._last
        busy = self._busy + sum(last - request.counted for request in self.users)
        queue = self._queue + sum(last - request.counted for request in self.put_queue)
        servers = max(len(self.users), self._capacity)
        return busy, queue, self._cap + servers * (last - self._cap_from)

    # -- results ---------------------------------------------------------------------------

    def stats(self) -> StationStats:
        """Return the summary up to the last change of state or :meth:`finalize` time."""
        elapsed = self._last - self._origin
        open_busy, open_queue, open_cap = self._in_progress()
        busy = self._closed_busy + open_busy
        queue = self._closed_queue + open_queue
        cap = self._closed_cap + open_cap
        arrivals = self._closed_arrivals + self._arrivals
        completions = self._closed_completions + self._completions
        return StationStats(
            name=self.name,
            start=self._origin,
            elapsed=elapsed,
            capacity=self._capacity,
            arrivals=arrivals,
            starts=self._starts,
            completions=completions,
            reneged=self._reneged,
            in_service=len(self.users),
            in_queue=len(self.put_queue),
            max_queue=self._max_queue,
            total_wait=self._total_wait,
            total_service=self._total_service,
            busy_time=busy,
            queue_time=queue,
            capacity_time=cap,
            utilisation=_ratio(busy, cap),
            mean_busy=_ratio(busy, elapsed),
            mean_queue=_ratio(queue, elapsed),
            mean_in_system=_ratio(busy + queue, elapsed),
            mean_wait=_ratio(self._total_wait, self._starts),
            mean_service=_ratio(self._total_service, completions),
            throughput=_ratio(completions, elapsed),
        )

    def series(self) -> list[IntervalRow]:
        """Return one :class:`IntervalRow` dict per interval up to the last change or finalize.

        Every closed interval has a row (quiet ones too); the last, open interval has one if
        any time has passed in it or anything arrived or completed in it. Its mean queue is
        over the time actually covered.
        """
        raw = list(self._rows)
        start = self._start
        length = self._last - start
        if length > 0 or self._arrivals or self._completions:
            busy, queue, cap = self._in_progress()
            raw.append((start, length, busy, queue, cap, self._arrivals, self._completions))
        return [
            {
                "start": start,
                "length": length,
                "utilisation": _ratio(busy, cap),
                "mean_queue": _ratio(queue, length),
                "arrivals": arrivals,
                "completions": completions,
                "servers": _ratio(cap, length),
            }
            for start, length, busy, queue, cap, arrivals, completions in raw
        ]

    def __repr__(self) -> str:
        """Return ``Station(name, busy/capacity, queue)``."""
        return (
            f"Station({self.name!r}, busy={len(self.users)}/{self._capacity}, "
            f"queue={len(self.put_queue)})"
        )


def visit(env: Environment, station: Station, service_time: float) -> Generator[Event, Any, float]:
    """Queue at ``station``, hold a server for ``service_time`` seconds, return the queue wait.

    Exactly ``with station.request() as req: yield req; yield env.timeout(service_time)``; use
    it inline from an actor's generator: ``wait = yield from visit(env, station, s)``.
    """
    with station.request() as request:
        yield request
        wait = env.now - request.arrived
        yield env.timeout(service_time)
    return wait
