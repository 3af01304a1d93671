"""A tiny scenario with constant distributions, for exact-trace tests of single actors.

Every duration is a dyadic fraction (0.125, 1/64, 1/128) or a whole number, so sums of them are
exact in binary floating point and simulated times can be compared with ``==``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import simpy
import yaml

from sim.engine.rng import Streams
from sim.engine.world import World, build_world
from sim.scenario import Scenario, apply_overrides, parse_scenario
from sim.services.handlers import shopping

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"

APP = 0.125  # app service per page (times the page's app factor)
DB = 0.015625  # one database query
CACHE = 0.0078125  # one cache look-up
THINK = 4.0
LATENCY = 1.0  # gateway latency
TIMEOUT = 5.0  # gateway client timeout
PICK, SHIP, DELIVERY, RETURN = 60.0, 100.0, 1000.0, 500.0

TINY: dict[str, Any] = {
    "name": "tiny",
    "horizon": 600,
    "catalog": {
        "products": 20,
        "categories": 2,
        "price": {"constant": 10},
        "stock": {"initial": 100},
    },
    "population": {"users": 3, "returning_share": 0.0},
    "arrivals": {"rate": 0.5},
    "behavior": {
        "graph": {
            "start": "home",
            "exit": "leave",
            "transitions": {"home": {"leave": 1.0}},
            "think_time": {"constant": THINK},
        }
    },
    "stations": {
        "app": {"servers": 2, "service": {"constant": APP}},
        "database": {"pool": 2, "query": {"constant": DB}},
        "cache": {"servers": 1, "service": {"constant": CACHE}, "capacity": 100},
    },
    "payments": {
        "gateways": [
            {
                "name": "gw",
                "servers": 1,
                "latency": {"constant": LATENCY},
                "decline_rate": 0.0,
                "timeout": TIMEOUT,
                "share": 1.0,
            }
        ],
        "retries": {"max_attempts": 3, "backoff": {"base": 1, "cap": 10, "jitter": False}},
        "fraud": {"enabled": False},
    },
    "fulfilment": {
        "warehouses": [{"name": "east", "workers": 1, "pick": {"constant": PICK}}],
        "ship_delay": {"constant": SHIP},
        "delivery_delay": {"constant": DELIVERY},
        "return_rate": 0.0,
        "return_delay": {"constant": RETURN},
    },
}


def tiny_data(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the tiny scenario's data with dotted-path overrides applied."""
    data = copy.deepcopy(TINY)
    return apply_overrides(data, overrides) if overrides else data


def tiny(overrides: dict[str, Any] | None = None) -> Scenario:
    """Return the tiny scenario, validated, with dotted-path overrides applied."""
    return parse_scenario(tiny_data(overrides))


def smoke_data() -> dict[str, Any]:
    """Return scenarios/smoke.yaml as raw data."""
    return yaml.safe_load(SMOKE.read_text())


def world_of(scenario: Scenario, seed: int = 1) -> World:
    """Build the world of ``scenario`` on a fresh Environment (no process started)."""
    return build_world(simpy.Environment(), scenario, Streams(seed))


def pending_order(world: World, user: int = 0, sku: int = 0, qty: int = 1) -> tuple[str, str]:
    """Put ``qty`` units of a SKU in a customer's cart and check out; return (order, user)."""
    user_id = world.population[user]
    now = world.env.now
    shopping.add_to_cart(world.uow, user_id, world.skus[sku], qty, now)
    return shopping.checkout(world.uow, user_id, now, policies=world.policies), user_id


def paying_order(
    world: World, user: int = 0, sku: int = 0, qty: int = 1, key: str | None = None
) -> tuple[str, str, str]:
    """Check out and begin paying (the gateway not yet answered); return (order, user, payment).

    ``key`` is the payment's idempotency key (default ``<order>@gw``).
    """
    order_id, user_id = pending_order(world, user, sku, qty)
    start = shopping.begin_payment(
        world.uow,
        order_id,
        world.card,
        gateway="gw",
        idempotency_key=key or f"{order_id}@gw",
        now=world.env.now,
        policies=world.policies,
    )
    assert start.action == "call_gateway"
    return order_id, user_id, start.payment_id


def paid_order(world: World, user: int = 0, sku: int = 0, qty: int = 1) -> tuple[str, str]:
    """Check out and capture a payment at once (no gateway); return (order, user)."""
    order_id, user_id, payment_id = paying_order(world, user, sku, qty)
    assert shopping.record_gateway_answer(world.uow, payment_id, "approved", world.env.now)
    return order_id, user_id


STATS_OF_ROWS = {
    "requests": ("response", "size"),
    "response_sum": ("response", "sum"),
    "response_max": ("response", "max"),
    "app_wait_sum": ("app_wait", "sum"),
    "app_service_sum": ("app_service", "sum"),
    "db_wait_sum": ("db_wait", "sum"),
    "db_queries": ("db_queries", "sum"),
    "cache_wait_sum": ("cache_wait", "sum"),
    "cache_hits": ("cache_hits", "sum"),
    "cache_misses": ("cache_misses", "sum"),
}
"""``request_stats``' columns as named aggregations of request rows grouped by (start, page)."""
