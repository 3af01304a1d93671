from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine.stations import Station, StationStats, visit


def _customers(env, station, plan, log):
    """Start one process per (arrival, service); log[i] = (arrival, start, end, wait)."""

    def customer(i, arrival, service):
        yield env.timeout(arrival)
        wait = yield from visit(env, station, service)
        log[i] = (arrival, env.now - service, env.now, wait)

    for i, (arrival, service) in enumerate(plan):
        env.process(customer(i, arrival, service))


def _rows(station):
    """The series as tuples: (start, length, utilisation, mean_queue, arrivals, completions,
    servers)."""
    return [tuple(row.values()) for row in station.series()]


def _at(env, when, action):
    def proc():
        yield env.timeout(when)
        action()

    env.process(proc())


def _run(capacity, plan, horizon, *, interval=60.0, changes=()):
    env = simpy.Environment()
    station = Station(env, capacity, name="db", interval=interval)
    log: dict[int, tuple[float, float, float, float]] = {}
    _customers(env, station, plan, log)
    for when, new_capacity in changes:
        _at(env, when, lambda n=new_capacity: station.set_capacity(n))
    env.run(until=horizon)
    station.finalize(horizon)
    return station, [log.get(i) for i in range(len(plan))]


# -- exact traces --------------------------------------------------------------------------


def test_one_server_three_customers_trace():
    station, log = _run(1, [(0, 3), (1, 3), (2, 3)], horizon=10)
    assert log == [(0, 0, 3, 0), (1, 3, 6, 2), (2, 6, 9, 4)]
    s = station.stats()
    assert (s.arrivals, s.starts, s.completions, s.reneged) == (3, 3, 3, 0)
    assert (s.in_service, s.in_queue, s.max_queue, s.capacity) == (0, 0, 2, 1)
    assert s.total_wait == 6.0
    assert s.total_service == 9.0
    assert s.busy_time == 9.0
    assert s.queue_time == 6.0  # [1,2) x1 + [2,3) x2 + [3,6) x1
    assert s.capacity_time == 10.0
    assert s.elapsed == 10.0
    assert s.utilisation == pytest.approx(0.9)
    assert s.mean_queue == pytest.approx(0.6)
    assert s.mean_in_system == pytest.approx(1.5)
    assert s.mean_wait == 2.0
    assert s.mean_service == 3.0
    assert s.throughput == pytest.approx(0.3)
    assert s.name == "db"
    assert s.start == 0.0


def test_one_server_utilisation_is_one_while_always_busy():
    station, _ = _run(1, [(0, 3), (1, 3), (2, 3)], horizon=9)
    assert station.stats().utilisation == 1.0


def test_two_servers_trace():
    # A(0, 4) and B(0, 2) start at once; C(0, 3) waits for B; D(1, 1) waits for A.
    station, log = _run(2, [(0, 4), (0, 2), (0, 3), (1, 1)], horizon=6)
    assert [entry[3] for entry in log] == [0, 0, 2, 3]
    assert [entry[2] for entry in log] == [4, 2, 5, 5]
    s = station.stats()
    assert s.busy_time == 10.0
    assert s.queue_time == 5.0  # [0,1) x1 + [1,2) x2 + [2,4) x1
    assert s.capacity_time == 12.0
    assert s.utilisation == pytest.approx(10 / 12)
    assert s.max_queue == 2
    assert s.mean_in_system == pytest.approx(2.5)


def test_a_waiting_request_at_the_horizon_and_a_reneging_one():
    env = simpy.Environment()
    station = Station(env, 1)

    def patient(arrival, service):
        yield env.timeout(arrival)
        yield from visit(env, station, service)

    def impatient(arrival, patience):
        yield env.timeout(arrival)
        with station.request() as request:
            result = yield request | env.timeout(patience)
            assert request not in result

    env.process(patient(0, 5))  # A: 0-5
    env.process(impatient(1, 2))  # B: waits [1, 3), gives up
    env.process(patient(4, 1))  # C: waits [4, 5), 5-6
    env.process(patient(5.5, 10))  # D: waits [5.5, 6), 6-16
    env.process(patient(6.5, 1))  # E: still waiting at 7
    env.run(until=7)
    station.finalize()
    s = station.stats()
    assert (s.arrivals, s.starts, s.completions, s.reneged) == (5, 3, 2, 1)
    assert (s.in_service, s.in_queue) == (1, 1)
    assert s.arrivals == s.starts + s.reneged + s.in_queue
    assert s.starts == s.completions + s.in_service
    assert s.queue_time == pytest.approx(2 + 1 + 0.5 + 0.5)
    assert s.total_wait == pytest.approx(0 + 1 + 0.5)  # started requests only
    assert s.total_service == 6.0  # A and C, released
    assert s.busy_time == 7.0
    assert s.utilisation == 1.0


def test_visit_returns_the_wait_when_run_as_its_own_process():
    env = simpy.Environment()
    station = Station(env, 1)
    first = env.process(visit(env, station, 2.5))
    second = env.process(visit(env, station, 1.0))
    env.run()
    assert (first.value, second.value) == (0, 2.5)
    assert env.now == 3.5


# -- capacity changes ----------------------------------------------------------------------


def test_shrinking_preempts_no_one_and_delays_the_queue():
    # Two servers: A(0, 4), B(0, 6) busy, C(0, 1) waiting. At t=1 the pool shrinks to 1.
    # A's release at 4 leaves B alone = capacity, so C waits until B leaves at 6.
    station, log = _run(2, [(0, 4), (0, 6), (0, 1)], horizon=8, changes=[(1, 1)])
    assert log == [(0, 0, 4, 0), (0, 0, 6, 0), (0, 6, 7, 6)]
    s = station.stats()
    assert s.capacity == 1
    assert s.busy_time == 11.0
    # servers in existence: [0,1) 2, [1,4) max(1, 2 busy), [4,6) 1, [6,8) 1
    assert s.capacity_time == 12.0
    assert s.utilisation == pytest.approx(11 / 12)
    assert s.queue_time == 6.0


def test_without_the_shrink_the_same_customer_starts_earlier():
    _, log = _run(2, [(0, 4), (0, 6), (0, 1)], horizon=8)
    assert log[2] == (0, 4, 5, 4)


def test_growing_starts_waiting_requests_at_once_in_order():
    station, log = _run(1, [(0, 5), (0, 5), (0, 5)], horizon=8, changes=[(2, 3)])
    assert log == [(0, 0, 5, 0), (0, 2, 7, 2), (0, 2, 7, 2)]
    s = station.stats()
    assert s.capacity_time == 1 * 2 + 3 * 6
    assert s.busy_time == 15.0
    assert s.utilisation == pytest.approx(0.75)
    assert s.queue_time == 4.0


def test_growing_by_less_than_the_queue_starts_only_that_many():
    _, log = _run(1, [(0, 5)] * 4, horizon=20, changes=[(1, 2)])
    assert [entry[1] for entry in log] == [0, 1, 5, 6]


def test_capacity_zero_stops_new_starts_until_restored():
    # A(0, 2) keeps its server through the outage; B(1, 1) waits until capacity returns at 4.
    station, log = _run(1, [(0, 2), (1, 1)], horizon=6, changes=[(0.5, 0), (4, 2)])
    assert log == [(0, 0, 2, 0), (1, 4, 5, 3)]
    s = station.stats()
    assert s.capacity_time == pytest.approx(0.5 * 1 + 1.5 * 1 + 2 * 0 + 2 * 2)
    assert s.busy_time == 3.0
    assert s.utilisation == pytest.approx(0.5)


def test_an_all_outage_interval_has_zero_utilisation():
    station, _ = _run(1, [], horizon=4, interval=2, changes=[(0, 0)])
    assert station.stats().utilisation == 0.0
    assert _rows(station) == [(0.0, 2.0, 0.0, 0.0, 0, 0, 0.0), (2.0, 2.0, 0.0, 0.0, 0, 0, 0.0)]


@pytest.mark.parametrize("capacity", [-1, 1.5, True, None])
def test_set_capacity_rejects_bad_values(capacity):
    station = Station(simpy.Environment(), 2)
    with pytest.raises(ValueError, match="integer >= 0"):
        station.set_capacity(capacity)


# -- time series ---------------------------------------------------------------------------


def test_series_per_interval_trace():
    station, _ = _run(1, [(0, 3), (1, 3), (2, 3)], horizon=10, interval=4)
    assert station.series() == [
        {
            "start": 0.0,
            "length": 4.0,
            "utilisation": 1.0,
            "mean_queue": 1.0,
            "arrivals": 3,
            "completions": 1,
            "servers": 1.0,
        },
        {
            "start": 4.0,
            "length": 4.0,
            "utilisation": 1.0,
            "mean_queue": 0.5,
            "arrivals": 0,
            "completions": 1,
            "servers": 1.0,
        },
        {
            "start": 8.0,
            "length": 2.0,
            "utilisation": 0.5,
            "mean_queue": 0.0,
            "arrivals": 0,
            "completions": 1,
            "servers": 1.0,
        },
    ]


def test_series_with_a_capacity_change():
    station, _ = _run(2, [(0, 4), (0, 6), (0, 1)], horizon=8, interval=2, changes=[(1, 1)])
    # servers in existence: 2, then max(1, 2 busy) until A leaves at 4, then 1
    assert _rows(station) == [
        (0.0, 2.0, 1.0, 1.0, 3, 0, 2.0),
        (2.0, 2.0, 1.0, 1.0, 0, 0, 2.0),
        (4.0, 2.0, 1.0, 1.0, 0, 1, 1.0),
        (6.0, 2.0, 0.5, 0.0, 0, 2, 1.0),
    ]


def test_series_has_rows_for_quiet_intervals_and_counts_from_creation_time():
    env = simpy.Environment()
    env.run(until=5)
    station = Station(env, 2, interval=10)
    log: dict[int, tuple[float, float, float, float]] = {}
    _customers(env, station, [(2, 1)], log)  # arrives at 7, leaves at 8
    env.run(until=40)
    station.finalize(40)
    assert _rows(station) == [
        (5.0, 10.0, 0.05, 0.0, 1, 1, 2.0),
        (15.0, 10.0, 0.0, 0.0, 0, 0, 2.0),
        (25.0, 10.0, 0.0, 0.0, 0, 0, 2.0),
        (35.0, 5.0, 0.0, 0.0, 0, 0, 2.0),  # the partial interval [35, 40)
    ]
    s = station.stats()
    assert (s.start, s.elapsed, s.capacity_time) == (5.0, 35.0, 70.0)


def test_an_arrival_on_a_boundary_belongs_to_the_next_interval():
    station, _ = _run(1, [(2, 1)], horizon=4, interval=2)
    assert [row["arrivals"] for row in station.series()] == [0, 1]
    assert [row["completions"] for row in station.series()] == [0, 1]


def test_an_event_at_the_end_of_the_last_interval_gets_a_zero_length_row():
    env = simpy.Environment()
    station = Station(env, 1, interval=2)
    env.run(until=2)
    station.request()
    assert _rows(station) == [(0.0, 2.0, 0.0, 0.0, 0, 0, 1.0), (2.0, 0.0, 0.0, 0.0, 1, 0, 0.0)]


def test_no_interval_means_one_row_for_the_run():
    station, _ = _run(1, [(0, 3), (1, 3), (2, 3)], horizon=10, interval=None)
    assert _rows(station) == [(0.0, 10.0, 0.9, 0.6, 3, 3, 1.0)]


def test_series_sums_match_the_totals():
    rng = np.random.default_rng(5)
    plan = list(zip(np.cumsum(rng.exponential(1.0, 400)), rng.exponential(2.5, 400), strict=True))
    station, _ = _run(3, plan, horizon=300, interval=7)
    s = station.stats()
    rows = station.series()
    assert len(rows) == 43  # 42 closed intervals of 7 s and [294, 300)
    assert [row["length"] for row in rows] == [7.0] * 42 + [6.0]
    assert {row["servers"] for row in rows} == {3.0}
    assert sum(row["arrivals"] for row in rows) == s.arrivals
    assert sum(row["completions"] for row in rows) == s.completions
    assert sum(row["utilisation"] * 3 * row["length"] for row in rows) == (
        pytest.approx(s.busy_time)
    )
    assert sum(row["mean_queue"] * row["length"] for row in rows) == pytest.approx(s.queue_time)


# -- bookkeeping and API -------------------------------------------------------------------


def test_littles_law_is_an_identity_when_the_station_empties():
    rng = np.random.default_rng(1)
    plan = list(zip(np.cumsum(rng.exponential(0.3, 2000)), rng.exponential(1.0, 2000), strict=True))
    env = simpy.Environment()
    station = Station(env, 4)
    log: dict[int, tuple[float, float, float, float]] = {}
    _customers(env, station, plan, log)
    env.run()
    station.finalize()
    s = station.stats()
    assert s.completions == 2000
    # integral of the number in the system = sum of the times in the system
    assert s.busy_time + s.queue_time == pytest.approx(s.total_wait + s.total_service, rel=1e-12)
    assert s.total_wait == pytest.approx(sum(entry[3] for entry in log.values()), rel=1e-12)
    assert s.max_queue == max(
        sum(1 for a, b, _, _ in log.values() if a <= t < b) for t, _, _, _ in log.values()
    )


def test_a_fresh_station_reports_zeros():
    station = Station(simpy.Environment(), 3, name="cache")
    s = station.stats()
    assert s == StationStats(
        name="cache",
        start=0.0,
        elapsed=0.0,
        capacity=3,
        arrivals=0,
        starts=0,
        completions=0,
        reneged=0,
        in_service=0,
        in_queue=0,
        max_queue=0,
        total_wait=0.0,
        total_service=0.0,
        busy_time=0.0,
        queue_time=0.0,
        capacity_time=0.0,
        utilisation=0.0,
        mean_busy=0.0,
        mean_queue=0.0,
        mean_in_system=0.0,
        mean_wait=0.0,
        mean_service=0.0,
        throughput=0.0,
    )
    assert station.series() == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.arrivals = 1  # type: ignore[misc]


def test_stats_is_a_snapshot_and_the_run_may_continue_after_finalize():
    env = simpy.Environment()
    station = Station(env, 1)
    env.process(visit(env, station, 10))
    env.run(until=4)
    station.finalize()
    assert station.stats().busy_time == 4.0
    env.run(until=6)
    station.finalize(6)
    assert station.stats().busy_time == 6.0


def test_finalize_must_lie_between_the_last_change_and_now():
    env = simpy.Environment()
    station = Station(env, 1, name="app")
    env.process(visit(env, station, 1))
    env.run(until=3)
    with pytest.raises(ValueError, match=r"'app': finalize\(5\) must lie in \[1, 3\]"):
        station.finalize(5)
    station.finalize(2)
    with pytest.raises(ValueError, match="must lie in"):
        station.finalize(1.5)


@pytest.mark.parametrize(
    ("capacity", "interval", "message"),
    [
        (0, 60.0, "integer >= 1"),
        (2.0, 60.0, "integer >= 1"),
        (1, 0.0, "interval"),
        (1, float("inf"), "interval"),
        (1, float("nan"), "interval"),
    ],
)
def test_station_rejects_bad_construction(capacity, interval, message):
    with pytest.raises(ValueError, match=message):
        Station(simpy.Environment(), capacity, interval=interval)


def test_station_is_a_simpy_resource_with_a_readable_repr():
    env = simpy.Environment()
    station = Station(env, 2, name="app")
    assert isinstance(station, simpy.Resource)
    for _ in range(3):
        station.request()
    assert station.count == 2
    assert repr(station) == "Station('app', busy=2/2, queue=1)"


# -- property: the integrals equal a brute-force reconstruction ----------------------------


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 4),
    plan=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 12)),
        max_size=40,
    ),
    changes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), max_size=4),
    interval=st.sampled_from([None, 1.0, 3.0, 7.5]),
)
def test_integrals_match_the_customer_timeline(capacity, plan, changes, interval):
    horizon = 45
    env = simpy.Environment()
    station = Station(env, capacity, interval=interval)
    timeline: dict[int, list[float | None]] = {}

    def customer(i, arrival, service):
        yield env.timeout(arrival)
        timeline[i] = [arrival, None, None]
        with station.request() as request:
            yield request
            timeline[i][1] = env.now
            yield env.timeout(service)
        timeline[i][2] = env.now

    for i, (arrival, service) in enumerate(plan):
        env.process(customer(i, arrival, service))
    for when, new_capacity in changes:
        _at(env, when, lambda n=new_capacity: station.set_capacity(n))
    env.run(until=horizon)
    station.finalize(horizon)
    s = station.stats()

    started = [t for t in timeline.values() if t[1] is not None]
    busy = sum((horizon if t[2] is None else t[2]) - t[1] for t in started)
    queued = sum((horizon if t[1] is None else t[1]) - t[0] for t in timeline.values())
    assert s.busy_time == pytest.approx(busy)
    assert s.queue_time == pytest.approx(queued)
    assert s.total_wait == pytest.approx(sum(t[1] - t[0] for t in started))
    assert s.arrivals == len(timeline) == s.starts + s.in_queue
    assert s.starts == len(started) == s.completions + s.in_service
    assert 0.0 <= s.utilisation <= 1.0
    assert s.capacity_time >= s.busy_time
    rows = station.series()
    assert all(0.0 <= row["utilisation"] <= 1.0 for row in rows)
    assert sum(row["arrivals"] for row in rows) == s.arrivals
    assert sum(row["completions"] for row in rows) == s.completions
    assert sum(row["length"] for row in rows) == pytest.approx(horizon)
    weights = [row["servers"] * row["length"] for row in rows]
    assert sum(weights) == pytest.approx(s.capacity_time)
    assert sum(row["utilisation"] * w for row, w in zip(rows, weights, strict=True)) == (
        pytest.approx(s.busy_time)
    )
    assert sum(row["mean_queue"] * row["length"] for row in rows) == pytest.approx(s.queue_time)
