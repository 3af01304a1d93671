"""Runs end to end: determinism, common random numbers, end-of-run invariants, KPI sanity."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.ledger import reconcile
from sim.engine import recorder as recorder_module
from sim.engine import runner
from sim.engine.rng import Streams
from sim.engine.runner import PROGRESS_STEPS, Audit, RunResult, collect_frames, run
from sim.engine.shoppers import CLOSED_SID_BASE
from sim.engine.world import build_world
from sim.scenario import apply_overrides, parse_scenario
from tests.engine._tiny import paid_order, smoke_data, tiny, tiny_data, world_of

SMOKE = parse_scenario(smoke_data())


def _same(a: Any, b: Any) -> bool:
    """Deep equality in which NaN equals NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _frames_equal(a: RunResult, b: RunResult) -> bool:
    return a.frames.keys() == b.frames.keys() and all(
        a.frames[name].equals(b.frames[name]) for name in a.frames
    )


def _capture(monkeypatch) -> list:
    """Make runner.run hand its World to the test (it builds one per run)."""
    worlds: list = []

    def build(env, scenario, streams):
        worlds.append(build_world(env, scenario, streams))
        return worlds[-1]

    monkeypatch.setattr(runner, "build_world", build)
    return worlds


def _check_kpis(result: RunResult) -> None:
    kpis, frames = result.kpis, result.frames
    assert kpis["utilisation"]  # every station reports
    for name, row in kpis["utilisation"].items():
        assert 0.0 <= row["utilisation"] <= 1.0, name
        assert row["mean_queue"] >= 0.0
    assert frames["station_stats"]["utilisation"].between(0.0, 1.0).all()
    assert frames["stations"]["utilisation"].between(0.0, 1.0).all()
    assert 0.0 <= kpis["cache_hit_rate"] <= 1.0
    assert frames["cache"]["hit_rate"].dropna().between(0.0, 1.0).all()
    assert 0.0 <= kpis["conversion"] <= 1.0
    ledger = frames["ledger"]
    signed = ledger["amount"].where(ledger["kind"] == "charge", -ledger["amount"])
    signed = signed.where(ledger["kind"] != "void", 0)
    assert kpis["revenue_cents"] == int(signed.sum())
    orders = frames["orders"]
    paid = orders[orders["paid"].astype(bool)]
    assert kpis["revenue_cents"] == int((paid["total"] - paid["refunded"]).sum())
    assert kpis["orders_paid"] == len(paid) <= kpis["checkouts"]
    assert kpis["page_views"] == len(frames["requests"])
    assert kpis["sessions"] == len(frames["sessions"])
    lat = kpis["latency"]
    assert 0.0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert (frames["requests"]["response"] >= 0).all()


@pytest.mark.parametrize("mode", ["rows", "aggregate"])
def test_declared_column_dtypes_give_the_frames_pandas_would_infer(monkeypatch, mode):
    # The recorder's tables and the orders and ledger frames convert their numeric columns
    # with declared dtypes (faster than pandas' inference); the frames must be the same.
    scenario = parse_scenario(apply_overrides(smoke_data(), {"metrics": {"requests": mode}}))
    declared = run(scenario)
    for name in ("REQUEST_DTYPES", "SESSION_DTYPES", "PAYMENT_DTYPES", "ORDER_EVENT_DTYPES"):
        monkeypatch.setattr(recorder_module, name, {})
    monkeypatch.setattr(runner, "ORDER_DTYPES", {})
    monkeypatch.setattr(runner, "LEDGER_DTYPES", {})
    inferred = run(scenario)
    assert list(declared.frames) == list(inferred.frames)
    for name, frame in inferred.frames.items():
        pd.testing.assert_frame_equal(declared.frames[name], frame, check_exact=True)
    frames = declared.frames
    assert min(len(frames[name]) for name in ("sessions", "payments", "orders", "ledger")) > 0
    assert str(frames["orders"]["total"].dtype) == "int64"  # money: integer minor units
    assert str(frames["sessions"]["returning"].dtype) == "bool"


# --- determinism -------------------------------------------------------------------------------


def test_same_scenario_and_seed_give_identical_frames_and_kpis():
    a, b = run(SMOKE, 7), run(SMOKE, 7)
    assert _frames_equal(a, b)
    assert _same(a.kpis, b.kpis)
    assert a.audit == b.audit
    assert (a.seed, a.replication, a.scenario) == (7, 0, SMOKE)
    assert a.runtime > 0.0


def test_the_scenario_seed_is_the_default():
    assert run(SMOKE).seed == SMOKE.seed == 7


def test_a_different_seed_gives_different_arrivals():
    a, b = run(SMOKE, 7), run(SMOKE, 8)
    starts_a = a.frames["sessions"].set_index("session")["start"]
    starts_b = b.frames["sessions"].set_index("session")["start"]
    common = starts_a.index.intersection(starts_b.index)
    common = common[common < CLOSED_SID_BASE]
    assert len(common) > 50
    assert (starts_a[common] != starts_b[common]).all()
    assert not a.frames["requests"].equals(b.frames["requests"])


def test_replications_differ_and_each_is_reproducible():
    small = parse_scenario(apply_overrides(smoke_data(), {"horizon": "2m", "warmup": 0}))
    r0, r1, r1_again = run(small, 3), run(small, 3, replication=1), run(small, 3, replication=1)
    assert r1.replication == 1
    assert _frames_equal(r1, r1_again)
    assert not r0.frames["sessions"]["start"].equals(r1.frames["sessions"]["start"])


def test_progress_is_reported_in_steps_and_changes_nothing():
    seen: list[tuple[float, float]] = []
    with_progress = run(SMOKE, 7, progress=lambda now, horizon: seen.append((now, horizon)))
    assert len(seen) == PROGRESS_STEPS
    assert seen[0] == (SMOKE.horizon / PROGRESS_STEPS, SMOKE.horizon)
    assert seen[-1] == (SMOKE.horizon, SMOKE.horizon)
    assert [now for now, _ in seen] == sorted(now for now, _ in seen)
    assert _frames_equal(with_progress, run(SMOKE, 7))


def test_a_run_with_progress_ends_exactly_at_its_horizon():
    horizon = 1000 / 3  # a horizon the last step's horizon * 100 / 100 rounds off
    assert horizon * PROGRESS_STEPS / PROGRESS_STEPS != horizon
    seen: list[float] = []
    result = run(tiny({"horizon": horizon}), 3, progress=lambda now, _: seen.append(now))
    assert seen[-1] == horizon
    assert _frames_equal(result, run(tiny({"horizon": horizon}), 3))


def test_warmup_property():
    assert run(SMOKE, 7).warmup == 30.0
    auto = parse_scenario(apply_overrides(smoke_data(), {"warmup": "auto", "horizon": "1m"}))
    result = run(auto, 7)
    assert result.warmup == 0.0
    assert result.kpis["page_views"] == result.kpis["latency"]["count"]  # nothing cut


# --- common random numbers -----------------------------------------------------------------------


def _variant(data: dict, servers: int):
    return parse_scenario(apply_overrides(data, {"stations.app.servers": servers}))


def _page_sequences(result: RunResult) -> dict[int, list[str]]:
    requests = result.frames["requests"].sort_values(["session", "time"], kind="stable")
    return {int(s): list(rows["page"]) for s, rows in requests.groupby("session")}


def _prefix_compatible(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def test_fewer_app_servers_leave_arrival_times_and_first_choices_unchanged():
    four, two = run(_variant(smoke_data(), 4), 7), run(_variant(smoke_data(), 2), 7)
    assert (
        four.kpis["utilisation"]["app"]["utilisation"]
        < (two.kpis["utilisation"]["app"]["utilisation"])
    )
    a = four.frames["sessions"].set_index("session")
    b = two.frames["sessions"].set_index("session")
    common = a.index.intersection(b.index)
    open_sessions = common[common < CLOSED_SID_BASE]
    assert len(open_sessions) > 150
    assert a.loc[open_sessions, "start"].equals(b.loc[open_sessions, "start"])
    # who the shopper is is drawn first: never a matter of timing
    assert a.loc[common, "returning"].equals(b.loc[common, "returning"])
    returning = common[a.loc[common, "returning"].to_numpy()]
    assert a.loc[returning, "user"].equals(b.loc[returning, "user"])


BROWSE_GRAPH = {
    "start": "home",
    "exit": "leave",
    "think_time": {"exponential": {"mean": "3s"}},
    "transitions": {
        "home": {"best_sellers": 0.3, "new_products": 0.3, "search_request": 0.3, "leave": 0.1},
        "best_sellers": {"product_detail": 0.5, "home": 0.3, "leave": 0.2},
        "new_products": {"product_detail": 0.6, "search_request": 0.2, "leave": 0.2},
        "search_request": {"search_results": 0.9, "leave": 0.1},
        "search_results": {"product_detail": 0.6, "home": 0.2, "leave": 0.2},
        "product_detail": {"product_detail": 0.3, "home": 0.3, "search_request": 0.2, "leave": 0.2},
    },
}

BROWSE = {
    "behavior": {"graph": BROWSE_GRAPH},
    "arrivals": {"rate": 2.0},
    "horizon": 300,
    "stations.app": {"servers": 4, "service": {"constant": 0.03}},
    "stations.cache.capacity": 20,
}


def test_with_constant_service_times_a_capacity_change_changes_no_session_choice():
    data = tiny_data(BROWSE)
    four, one = run(_variant(data, 4), 5), run(_variant(data, 1), 5)
    assert (
        one.kpis["utilisation"]["app"]["mean_queue"]
        > 10 * (four.kpis["utilisation"]["app"]["mean_queue"])
    )
    pages_four, pages_one = _page_sequences(four), _page_sequences(one)
    common = pages_four.keys() & pages_one.keys()
    assert len(common) > 400
    assert all(_prefix_compatible(pages_four[s], pages_one[s]) for s in common)
    # timing differs (queueing), choices do not
    assert not four.frames["requests"]["response"].equals(one.frames["requests"]["response"])


def test_a_capacity_change_changes_no_page_choice_of_any_session():
    # a cache miss (a matter of timing) adds a query; its service time must not come from
    # the stream that draws the shopper's choices
    four, two = run(_variant(smoke_data(), 4), 7), run(_variant(smoke_data(), 2), 7)
    pages_four, pages_two = _page_sequences(four), _page_sequences(two)
    common = [s for s in pages_four.keys() & pages_two.keys() if s < CLOSED_SID_BASE]
    diverged = [s for s in common if not _prefix_compatible(pages_four[s], pages_two[s])]
    assert diverged == []


# --- invariants at the end of every run ----------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_smoke_runs_keep_the_books_at_several_seeds(seed):
    result = run(SMOKE, seed)
    assert result.audit.ok, result.audit.violations
    assert result.audit == Audit(())
    _check_kpis(result)
    faults = result.frames["faults"]
    assert faults.values.tolist() == [
        ["outage", "payments.card-b", 120.0, 180.0],
        ["latency_spike", "database", 180.0, 210.0],
        ["cache_flush", "cache", 240.0, 240.0],
    ]


SHORT_SMOKE = apply_overrides(smoke_data(), {"horizon": "90s", "warmup": "10s"})


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), servers=st.integers(1, 6), pool=st.integers(1, 6))
def test_any_seed_and_capacity_keep_the_books_and_sane_kpis(seed, servers, pool):
    data = apply_overrides(
        SHORT_SMOKE, {"stations.app.servers": servers, "stations.database.pool": pool}
    )
    result = run(parse_scenario(data), seed)
    assert result.audit.ok, result.audit.violations
    _check_kpis(result)


HEAVY = {
    "arrivals.rate": 2.0,
    "behavior.profile": "tpcw-ordering",
    "catalog.stock": {"initial": 4, "limited": [{"count": 30, "stock": 1}]},
    "coupons": [
        {
            "code": "FIVE",
            "kind": "fixed",
            "value": "2.00",
            "per_customer_limit": 1,
            "share_of_checkouts": 0.7,
        },
        {
            "code": "PCT15",
            "kind": "percent",
            "value": 15,
            "per_customer_limit": 1,
            "stackable": True,
            "share_of_checkouts": 0.5,
        },
    ],
    "fulfilment.warehouses": [
        {"name": "east", "workers": 3, "pick": {"constant": "10s"}, "share": 1}
    ],
    "fulfilment.ship_delay": {"constant": "20s"},
    "fulfilment.delivery_delay": {"constant": "30s"},
    "fulfilment.return_rate": 0.3,
    "fulfilment.return_delay": {"constant": "30s"},
}


def _check_books(world) -> None:
    uow = world.uow
    for item in uow.stock.values():
        assert item.available >= 0 and item.reserved >= 0 and item.on_hand >= 0, item.sku
        item.check_invariants()
    assert reconcile(list(uow.ledger), list(uow.orders.values())) == []
    for coupon in uow.coupons.values():
        if coupon.usage_limit is not None:
            assert coupon.used + len(coupon.held) <= coupon.usage_limit, coupon.code


@pytest.mark.parametrize("seed", [1, 2])
def test_a_heavy_run_with_scarce_stock_and_coupons_keeps_the_books(seed, monkeypatch):
    worlds = _capture(monkeypatch)
    result = run(parse_scenario(apply_overrides(smoke_data(), HEAVY)), seed)
    assert result.audit.ok, result.audit.violations
    _check_kpis(result)
    _check_books(worlds[0])
    kpis = result.kpis
    # the scenario really is scarce: stock runs out, coupons are refused, goods come back
    assert kpis["stock_outs"] > 50
    assert kpis["refunds"] > 0 and kpis["returns"] == kpis["refunds"]
    assert worlds[0].recorder.counters["coupons_rejected"] > 0
    assert set(kpis["orders_by_state"]) >= {"processing", "shipped", "delivered", "refunded"}
    assert any(item.available == 0 for item in worlds[0].uow.stock.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_a_heavy_run_with_coupon_usage_limits_keeps_the_books(seed, monkeypatch):
    heavy = dict(HEAVY)
    heavy["coupons"] = [
        {
            "code": "FIVE",
            "kind": "fixed",
            "value": "2.00",
            "usage_limit": 5,
            "share_of_checkouts": 0.7,
        },
        {
            "code": "PCT15",
            "kind": "percent",
            "value": 15,
            "usage_limit": 8,
            "per_customer_limit": 1,
            "stackable": True,
            "share_of_checkouts": 0.5,
        },
    ]
    worlds = _capture(monkeypatch)
    result = run(parse_scenario(apply_overrides(smoke_data(), heavy)), seed)
    assert result.audit.ok, result.audit.violations
    _check_books(worlds[0])
    assert worlds[0].uow.coupons.find_readonly("FIVE").used == 5


# --- the frames ----------------------------------------------------------------------------------


# (the audit's own tests are in tests/engine/test_audit.py)


def test_collect_frames_of_an_idle_world_have_their_columns():
    world = world_of(tiny())
    world.env.run(until=10)
    for station in world.stations.values():
        station.finalize(10)
    frames = collect_frames(world)
    assert set(frames) == {
        "requests",
        "sessions",
        "payments",
        "order_events",
        "faults",
        "stations",
        "station_stats",
        "cache",
        "orders",
        "ledger",
    }
    assert list(frames["orders"].columns) == [
        "order_id",
        "user",
        "placed_at",
        "status",
        "total",
        "refunded",
        "paid",
        "units",
    ]
    assert list(frames["ledger"].columns) == ["seq", "kind", "order_id", "amount", "time"]
    assert list(frames["cache"].columns) == ["start", "hits", "misses", "hit_rate"]
    assert frames["orders"].empty and frames["ledger"].empty and frames["cache"].empty
    assert sorted(frames["station_stats"]["name"]) == sorted(
        ["app", "database", "cache", "gateway:gw", "warehouse:east"]
    )
    assert (frames["stations"]["utilisation"] == 0.0).all()


def test_orders_and_ledger_frames_list_a_paid_order():
    world = world_of(tiny())
    order_id, user_id = paid_order(world, qty=2)
    frames = collect_frames(world)
    order = world.uow.orders.find_readonly(order_id)
    assert frames["orders"].to_dict("records") == [
        {
            "order_id": order_id,
            "user": user_id,
            "placed_at": 0.0,
            "status": "processing",
            "total": order.total.minor,
            "refunded": 0,
            "paid": True,
            "units": 2,
        }
    ]
    ledger = frames["ledger"].to_dict("records")
    assert [(e["kind"], e["order_id"], e["amount"], e["time"]) for e in ledger] == [
        ("charge", order_id, order.total.minor, 0.0)
    ]


def test_kpis_of_a_run_without_sessions():
    quiet = tiny({"arrivals.rate": 1e-9, "horizon": 60})
    result = run(quiet, 1)
    kpis = result.kpis
    assert kpis["sessions"] == kpis["page_views"] == kpis["orders_paid"] == 0
    assert kpis["throughput"] == 0.0 and kpis["conversion"] == 0.0
    assert math.isnan(kpis["cache_hit_rate"]) and math.isnan(kpis["payment_success"])
    assert kpis["latency"]["count"] == 0 and math.isnan(kpis["latency"]["p95"])
    assert kpis["checkout_latency"]["count"] == 0
    assert kpis["orders_by_state"] == {} and kpis["payment_outcomes"] == {}
    assert kpis["revenue_cents"] == 0
    assert isinstance(result.frames["sessions"], pd.DataFrame)


def test_sessions_still_walking_at_the_horizon_are_reported_in_flight():
    from sim import load_scenario, run

    result = run(load_scenario("scenarios/smoke.yaml"))
    sessions = result.frames["sessions"]
    requests = result.frames["requests"]
    assert set(requests["session"]) <= set(sessions["session"])  # every session is reported
    in_flight = sessions[sessions["end_reason"] == "in_flight"]
    assert len(in_flight) > 0
    assert (in_flight["end"] == result.scenario.horizon).all()
    assert sessions["session"].is_unique


def test_a_file_store_run_keeps_one_string_per_order_id_across_its_frames(tmp_path):
    """Orders read back from a file store bring their own copies of their ids; the recorder's
    rows and the frames keep the one interned string instead (a long run holds each once)."""
    data = smoke_data()
    data["storage"] = {"kind": "sqlite", "path": str(tmp_path / "shop.db")}
    frames = run(parse_scenario(data)).frames
    ids = [
        value
        for name in ("orders", "ledger", "payments", "order_events")
        for value in frames[name]["order_id"]
    ]
    distinct = set(ids)
    assert len(ids) >= 3 * len(distinct) > 0  # each order is named in several frames
    assert len({id(value) for value in ids}) == len(distinct)
    users = list(frames["orders"]["user"])
    assert len({id(value) for value in users}) == len(set(users))


def test_a_world_that_fails_to_build_closes_its_store(tmp_path, monkeypatch):
    """The store opens first; an error (or Ctrl-C) later in the build must not leave it open."""
    from sim.engine import world as world_module
    from sim.services.sqlite_store import SqliteUnitOfWork, ensure_free

    closed: list[str] = []
    close = SqliteUnitOfWork.close

    def recording_close(self: SqliteUnitOfWork) -> None:
        closed.append("closed")
        close(self)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SqliteUnitOfWork, "close", recording_close)
    monkeypatch.setattr(world_module, "CacheStore", broken)
    path = tmp_path / "shop.db"
    scenario = tiny({"storage": {"kind": "sqlite", "path": str(path)}})
    with pytest.raises(KeyboardInterrupt):
        build_world(simpy.Environment(), scenario, Streams(scenario.seed, 0))
    assert closed == ["closed"]
    assert path.is_file()  # the store file was made, and is left closed
    ensure_free(path)  # and its run lock released: another run may take the file


def test_expired_login_sessions_are_swept_once_every_session_lifetime(monkeypatch):
    """Returning customers never log out: without the sweep every token stays in the store."""
    from sim.engine import shoppers
    from sim.services.handlers import accounts

    sweeps: list[tuple[float, int]] = []
    purge_sessions = accounts.purge_sessions

    def purge(uow: Any, now: float) -> int:
        removed = purge_sessions(uow, now)
        sweeps.append((now, removed))
        return removed

    monkeypatch.setattr(shoppers.accounts, "purge_sessions", purge)
    scenario = parse_scenario(apply_overrides(smoke_data(), {"horizon": "65m", "warmup": 0}))
    world = build_world(simpy.Environment(), scenario, Streams(scenario.seed, 0))
    runner.start(world)
    world.env.run(until=scenario.horizon)
    ttl = world.policies.login.session_ttl
    assert [at for at, _ in sweeps] == [ttl, 2 * ttl]
    assert sum(removed for _, removed in sweeps) > 0
    left = list(world.uow.sessions.values())
    assert left and all(s.is_valid(2 * ttl) or s.created_at > 2 * ttl for s in left)
