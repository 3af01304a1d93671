"""Exact traces of the payment gateway model: latency, timeouts, replays, retries, failover."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from sim.domain.payments import FraudRules
from sim.engine import gateways
from sim.engine.gateways import CONNECT_ERROR_TIME, GatewayModel
from tests.engine._tiny import LATENCY, TIMEOUT, pending_order, tiny, world_of

TWO_GATEWAYS = {
    "payments.gateways": [
        {
            "name": "gw",
            "servers": 1,
            "latency": {"constant": 1},
            "decline_rate": 0.0,
            "timeout": 5,
            "share": 1.0,
        },
        {
            "name": "gw2",
            "servers": 1,
            "latency": {"constant": 2},
            "decline_rate": 0.0,
            "timeout": 5,
            "share": 0.0,
        },
    ]
}


def _call(world, gateway: GatewayModel, key: str, rng, log: list, at: float = 0.0) -> None:
    """Start one gateway call at ``at``; append (key, answer, latency, end time) to ``log``."""
    env = world.env

    def proc():
        yield env.timeout(at)
        answer, latency, _replayed = yield from gateway.call(env, key, rng)
        log.append((key, answer, latency, env.now))

    env.process(proc())


def _pay(world, order_id: str, rng, out: dict, at: float = 0.0) -> None:
    env = world.env

    def proc():
        yield env.timeout(at)
        out[order_id] = yield from gateways.pay(world, order_id, world.card, rng)
        out[order_id + ":end"] = env.now

    env.process(proc())


def _payment_rows(world) -> list[tuple]:
    return [tuple(r) for r in world.recorder.payments.frame().itertuples(index=False)]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- one call --------------------------------------------------------------------------------


def test_call_answers_after_exactly_the_constant_latency():
    world = world_of(tiny())
    gw = world.gateways[0]
    log: list = []
    _call(world, gw, "o1@gw", _rng(), log)
    world.env.run()
    assert log == [("o1@gw", "approved", LATENCY, LATENCY)]
    assert gw.settled == {"o1@gw": "approved"}
    assert gw.replays == 0
    stats = gw.station.stats()
    assert (stats.arrivals, stats.completions, stats.total_service) == (1, 1, LATENCY)


def test_call_declines_at_the_decline_rate():
    world = world_of(tiny({"payments.gateways.gw.decline_rate": 1.0}))
    gw = world.gateways[0]
    log: list = []
    _call(world, gw, "o1@gw", _rng(), log, at=2.0)
    world.env.run()
    assert log == [("o1@gw", "declined", LATENCY, 2.0 + LATENCY)]


def test_latency_above_the_timeout_gives_timeout_at_exactly_the_timeout():
    world = world_of(tiny({"payments.gateways.gw.latency": {"constant": 8}}))
    gw = world.gateways[0]
    log: list = []
    _call(world, gw, "o1@gw", _rng(), log)
    world.env.run()
    assert log == [("o1@gw", "timeout", TIMEOUT, TIMEOUT)]
    # the gateway went through: it keeps its answer for a retry with the same key
    assert gw.settled == {"o1@gw": "approved"}
    # and its server worked the whole 8 s, though the client left at the timeout
    stats = gw.station.stats()
    assert (stats.total_service, stats.completions, stats.elapsed) == (8.0, 1, 8.0)


def test_latency_equal_to_the_time_left_still_answers():
    world = world_of(tiny({"payments.gateways.gw.latency": {"constant": 5}}))
    log: list = []
    _call(world, world.gateways[0], "k", _rng(), log)
    world.env.run()
    assert log == [("k", "approved", 5.0, 5.0)]


def test_latency_factor_scales_the_latency():
    world = world_of(tiny())
    gw = world.gateways[0]
    gw.latency_factor = 3.0
    log: list = []
    _call(world, gw, "k", _rng(), log)
    world.env.run()
    assert log == [("k", "approved", 3.0, 3.0)]


def _hold(world, gateway: GatewayModel, seconds: float) -> None:
    """Keep the gateway's one server busy from t = 0 for ``seconds``."""
    env = world.env

    def holder():
        with gateway.station.request() as req:
            yield req
            yield env.timeout(seconds)

    env.process(holder())


def test_queued_call_gives_up_at_the_timeout_without_reaching_the_gateway():
    world = world_of(tiny())
    gw = world.gateways[0]
    _hold(world, gw, 10.0)
    env = world.env
    log: list = []
    _call(world, gw, "k", _rng(), log)
    env.run()
    assert log == [("k", "timeout", TIMEOUT, TIMEOUT)]
    assert gw.settled == {}  # never reached the gateway: nothing to replay
    assert gw.station.stats().reneged == 1


def test_a_server_granted_as_the_client_gives_up_is_handed_back():
    """The holder frees the server at the queued call's timeout, the same instant."""
    world = world_of(tiny())
    env, gw = world.env, world.gateways[0]
    _hold(world, gw, TIMEOUT)
    log: list = []
    _call(world, gw, "k", _rng(), log)
    _call(world, gw, "m", _rng(), log, at=TIMEOUT + 1.0)  # finds the server free
    env.run()
    assert log == [
        ("k", "timeout", TIMEOUT, TIMEOUT),
        ("m", "approved", LATENCY, TIMEOUT + 1.0 + LATENCY),
    ]
    assert gw.settled == {"m": "approved"}
    assert gw.station.count == 0


def test_retry_with_the_same_key_replays_the_first_answer():
    world = world_of(tiny({"payments.gateways.gw.latency": {"constant": 8}}))
    env, gw = world.env, world.gateways[0]
    log: list = []
    _call(world, gw, "o1@gw", _rng(), log)  # approved at the gateway, timeout at the client
    env.run()
    # the gateway now declines everything and answers fast: a fresh call would be declined
    fast = tiny().payments.gateways[0].latency
    gw.spec = gw.spec.model_copy(update={"decline_rate": 1.0, "latency": fast})
    # at t = 8, when the first call's server is done (delays are relative to now)
    _call(world, gw, "o1@gw", _rng(), log)
    _call(world, gw, "o2@gw", _rng(), log, at=LATENCY)
    env.run()
    assert log == [
        ("o1@gw", "timeout", TIMEOUT, TIMEOUT),
        ("o1@gw", "approved", LATENCY, 8.0 + LATENCY),
        ("o2@gw", "declined", LATENCY, 8.0 + 2 * LATENCY),
    ]
    assert gw.replays == 1
    assert gw.settled == {"o1@gw": "approved", "o2@gw": "declined"}


def test_down_gateway_fails_after_the_connect_error_time_and_draws_nothing():
    world = world_of(tiny())
    gw = world.gateways[0]
    gw.outages = 1
    rng = _rng(5)
    log: list = []
    _call(world, gw, "k", rng, log, at=1.0)
    world.env.run()
    end = 1.0 + CONNECT_ERROR_TIME
    assert log == [("k", "failed", end - 1.0, end)]
    assert gw.station.stats().arrivals == 0
    assert rng.random() == _rng(5).random()


def test_ghost_share_turns_an_approval_into_a_timeout():
    world = world_of(tiny())
    gw = world.gateways[0]
    gw.ghost_share = 1.0
    log: list = []
    _call(world, gw, "k", _rng(), log)
    world.env.run()
    assert log == [("k", "timeout", TIMEOUT, TIMEOUT)]
    assert gw.settled == {"k": "approved"}
    # the gateway answered in its usual latency: its server was busy that long, no longer
    assert gw.station.stats().total_service == LATENCY


def test_a_server_stays_busy_until_its_answer_is_out_though_the_client_left():
    """A slow gateway (8 s per call, 5 s timeout, one server) takes a call per 8 s."""
    world = world_of(tiny({"payments.gateways.gw.latency": {"constant": 8}}))
    gw = world.gateways[0]
    log: list = []
    _call(world, gw, "a", _rng(), log)
    _call(world, gw, "b", _rng(), log, at=1.0)  # queued behind a until t = 8: gives up at 6
    _call(world, gw, "c", _rng(), log, at=7.0)  # starts at 8, the server busy until 16
    world.env.run()
    assert log == [
        ("a", "timeout", TIMEOUT, TIMEOUT),
        ("b", "timeout", TIMEOUT, 1.0 + TIMEOUT),
        ("c", "timeout", TIMEOUT, 7.0 + TIMEOUT),
    ]
    assert gw.settled == {"a": "approved", "c": "approved"}  # b never reached the gateway
    stats = gw.station.stats()
    assert (stats.starts, stats.reneged, stats.total_service) == (2, 1, 16.0)
    assert stats.elapsed == 16.0 and stats.utilisation == 1.0


def test_gateway_name_is_the_spec_name():
    world = world_of(tiny(TWO_GATEWAYS))
    assert [g.name for g in world.gateways] == ["gw", "gw2"]
    assert world.stations["gateway:gw2"] is world.gateways[1].station


# --- routing ---------------------------------------------------------------------------------


def test_choose_routes_by_share_and_lists_the_others_after():
    data = {
        "payments.gateways": [
            {"name": "a", "share": 0.7, "latency": {"constant": 1}},
            {"name": "b", "share": 0.2, "latency": {"constant": 1}},
            {"name": "c", "share": 0.1, "latency": {"constant": 1}},
        ]
    }
    world = world_of(tiny(data))
    names = lambda u: [g.name for g in gateways.choose(world, u)]  # noqa: E731
    assert names(0.0) == ["a", "b", "c"]
    assert names(0.69) == ["a", "b", "c"]
    assert names(0.7) == ["b", "a", "c"]
    assert names(0.85) == ["b", "a", "c"]
    assert names(0.95) == ["c", "a", "b"]
    world.shares = [0.5, 0.25, 0.25 - 1e-9]  # shares that fall short of 1: the last one
    assert names(0.9999999999) == ["c", "a", "b"]


# --- pay: retries, failover, replays -----------------------------------------------------------


def test_pay_captures_on_the_first_attempt():
    world = world_of(tiny())
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out == {order_id: "captured", order_id + ":end": LATENCY}
    assert _payment_rows(world) == [(LATENCY, order_id, "gw", 1, "approved", LATENCY)]
    order = world.uow.orders.find_readonly(order_id)
    assert order.status.value == "processing"
    assert world.recorder.counters == {}


def test_pay_declined_is_not_retried():
    world = world_of(tiny({"payments.gateways.gw.decline_rate": 1.0}))
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out[order_id] == "declined"
    assert _payment_rows(world) == [(LATENCY, order_id, "gw", 1, "declined", LATENCY)]
    assert world.recorder.counters == {"declines": 1}
    assert world.uow.orders.find_readonly(order_id).status.value == "cancelled"


def test_pay_retries_a_down_gateway_with_the_backoff_delays():
    world = world_of(tiny())
    world.gateways[0].outages = 1
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    c = CONNECT_ERROR_TIME
    assert (world.retry.delay(1, 0.0), world.retry.delay(2, 0.0)) == (1.0, 2.0)  # no jitter
    s1 = 0.0
    t1 = s1 + c
    s2 = t1 + 1.0
    t2 = s2 + c
    s3 = t2 + 2.0
    t3 = s3 + c
    assert _payment_rows(world) == [
        (t1, order_id, "gw", 1, "failed", t1 - s1),
        (t2, order_id, "gw", 2, "failed", t2 - s2),
        (t3, order_id, "gw", 3, "failed", t3 - s3),
    ]
    assert out == {order_id: "failed", order_id + ":end": t3}
    assert world.recorder.counters == {"payment_retries": 2}
    order = world.uow.orders.find_readonly(order_id)
    assert order.status.value == "cancelled"
    frame = world.recorder.order_events.frame()
    assert frame[["time", "old", "new"]].values.tolist() == [[t3, "pending", "cancelled"]]


def test_pay_retries_until_the_gateway_is_back():
    world = world_of(tiny())
    env, gw = world.env, world.gateways[0]
    gw.outages = 1

    def mend():
        yield env.timeout(0.5)
        gw.outages = 0

    env.process(mend())
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    env.run()
    t1 = 0.0 + CONNECT_ERROR_TIME
    s2 = t1 + 1.0  # the backoff after attempt 1
    t2 = s2 + LATENCY
    assert _payment_rows(world) == [
        (t1, order_id, "gw", 1, "failed", t1),
        (t2, order_id, "gw", 2, "approved", t2 - s2),
    ]
    assert out == {order_id: "captured", order_id + ":end": t2}
    assert world.recorder.counters == {"payment_retries": 1}


def test_pay_retry_times_follow_the_jittered_backoff_of_the_retry_policy():
    world = world_of(
        tiny(
            {
                "payments.gateways.gw.latency": {"constant": 8},
                "payments.retries": {
                    "max_attempts": 4,
                    "backoff": {"base": 2, "cap": 5, "jitter": True},
                },
            }
        )
    )
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(11), out)
    world.env.run()
    # replay the draws of pay(): the route, then per attempt two draws in call() and one
    # for the backoff after a failed attempt
    twin = _rng(11)
    twin.random()
    expected, t = [], 0.0
    for attempt in range(1, 5):
        twin.random(), twin.random()
        t += TIMEOUT
        expected.append((t, order_id, "gw", attempt, "timeout", TIMEOUT))
        if attempt < 4:
            t += world.retry.delay(attempt, twin.random())
    assert _payment_rows(world) == expected
    assert out[order_id + ":end"] == t
    delays = [b[0] - a[0] - TIMEOUT for a, b in itertools.pairwise(expected)]
    assert 1.0 <= delays[0] <= 2.0  # base 2, jitter in [0.5, 1]
    assert 2.0 <= delays[1] <= 4.0  # doubled
    assert 2.5 <= delays[2] <= 5.0  # capped at 5
    assert world.recorder.counters == {"payment_retries": 3}


def test_pay_retry_replays_a_ghost_approval_and_counts_a_double_charge_prevented():
    world = world_of(tiny())
    env, gw = world.env, world.gateways[0]
    gw.ghost_share = 1.0

    def mend():
        yield env.timeout(TIMEOUT + 0.5)  # during the backoff after the first attempt
        gw.ghost_share = 0.0

    env.process(mend())
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    env.run()
    t2 = TIMEOUT + 1.0 + LATENCY
    assert _payment_rows(world) == [
        (TIMEOUT, order_id, "gw", 1, "timeout", TIMEOUT),
        (t2, order_id, "gw", 2, "approved", LATENCY),
    ]
    assert out[order_id] == "captured"
    assert gw.replays == 1
    assert world.recorder.counters == {"payment_retries": 1, "double_charges_prevented": 1}
    charges = [e for e in world.uow.ledger if e.kind.value == "charge"]
    assert len(charges) == 1  # charged once


def test_pay_fails_over_to_the_next_gateway_when_the_routed_one_is_down():
    world = world_of(tiny(TWO_GATEWAYS))
    world.gateways[0].outages = 1
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out == {order_id: "captured", order_id + ":end": 2.0}
    assert _payment_rows(world) == [(2.0, order_id, "gw2", 1, "approved", 2.0)]
    assert world.recorder.counters == {"failovers": 1}
    assert world.gateways[1].settled == {f"{order_id}@gw2": "approved"}
    assert (
        world.uow.payments.find_readonly(
            world.uow.orders.find_readonly(order_id).payment_id
        ).gateway
        == "gw2"
    )


def test_pay_with_every_gateway_down_tries_the_routed_one_and_counts_no_failover():
    world = world_of(tiny(TWO_GATEWAYS))
    for g in world.gateways:
        g.outages = 1
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out[order_id] == "failed"
    assert [r[2] for r in _payment_rows(world)] == ["gw", "gw", "gw"]
    assert world.recorder.counters == {"payment_retries": 2}


def test_pay_blocked_by_the_fraud_rules_calls_no_gateway():
    world = world_of(tiny())
    world.policies = dataclasses.replace(world.policies, fraud=FraudRules(review_at=0, block_at=0))
    order_id, _ = pending_order(world)
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out == {order_id: "blocked", order_id + ":end": 0.0}
    assert _payment_rows(world) == []
    assert world.recorder.counters == {"fraud_blocks": 1}
    assert world.uow.orders.find_readonly(order_id).status.value == "cancelled"


def test_fraud_max_amount_refuses_a_larger_order():
    world = world_of(tiny({"payments.fraud": {"enabled": True, "max_amount": "5.00"}}))
    order_id, _ = pending_order(world)  # 10.00 plus tax and shipping
    out: dict = {}
    _pay(world, order_id, _rng(), out)
    world.env.run()
    assert out[order_id] == "blocked"


def test_double_charges_prevented_counts_only_the_calls_that_were_replays():
    world = world_of(tiny({"payments.gateways.gw.servers": 2}))
    env, gw = world.env, world.gateways[0]
    gw.ghost_share = 1.0

    def mend():
        yield env.timeout(TIMEOUT + 0.5)
        gw.ghost_share = 0.0

    env.process(mend())
    order_a, _ = pending_order(world, user=0, sku=0)
    order_b, _ = pending_order(world, user=1, sku=1)
    out: dict = {}
    _pay(world, order_a, _rng(1), out)  # ghost timeout at 5, replayed at 6, approved at 7
    _pay(world, order_b, _rng(2), out, at=5.75)  # a fresh call 5.75 -> 6.75: no replay
    env.run()
    assert out[order_a] == out[order_b] == "captured"
    assert gw.replays == 1
    assert world.recorder.counters["double_charges_prevented"] == 1
