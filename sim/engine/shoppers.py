"""Arrivals and the shopper session: a walk over the behaviour graph with think times.

Each page holds an app server while it runs: app service time, cache look-ups (a miss
costs a database query), direct queries, and the domain use case the page stands for.
Each session draws from its own random generator, derived from (seed, replication,
session number), so a change of capacity changes no session's choices.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.domain.errors import CouponRejected, DomainError, EmptyCart, OutOfStock
from sim.domain.users import ActivityKind
from sim.engine import cache_server, gateways, warehouses
from sim.engine.world import RECENT_ACTIVITY_KEPT
from sim.services.handlers import accounts, fulfilment, shopping

if TYPE_CHECKING:
    from sim.engine.world import World


@dataclass(eq=False)
class Shopper:
    """What one session knows as it walks: who, which product, which order.

    ``rng`` draws the shopper's choices (pages, products, think times, payment outcomes);
    ``service_rng`` draws service times. Kept apart, a cache miss that adds a query (and so
    a draw) in one variant of a what-if comparison cannot shift the other's choices.
    """

    sid: int
    rng: np.random.Generator
    service_rng: np.random.Generator
    user_id: str | None
    returning: bool
    user_index: int
    logged_in: bool = False
    last_sku: str | None = None
    orders: int = 0
    pages: int = 0
    outcome: str = "ok"
    keys: list[str] = field(default_factory=list)


CLOSED_SID_BASE = 1_000_000_000
"""Session numbers of closed shopper i start at i x this, far above any open arrival's."""


# --- arrivals ----------------------------------------------------------------------------------
def arrivals(world: World) -> Generator[simpy.Event, Any, None]:
    """Start sessions as a Poisson process (a constant rate or a piecewise schedule).

    A schedule is sampled by thinning at its highest rate, so the arrival times depend on
    the arrivals stream alone.
    """
    env, rng = world.env, world.streams["arrivals"]
    peak = max(rate for _, rate in world.rate_steps)
    starts = [at for at, _ in world.rate_steps]
    sid = 0
    while True:
        yield env.timeout(rng.exponential(1.0 / peak))
        step = int(np.searchsorted(starts, env.now, side="right")) - 1
        if rng.random() * peak >= world.rate_steps[step][1]:
            continue
        sid += 1
        env.process(session(world, sid))


def sweep_sessions(world: World) -> Generator[simpy.Event, Any, None]:
    """Remove expired login sessions once every session lifetime, so the store stays bounded.

    Returning customers log in and never log out; without the sweep every token ever issued
    would stay in the store for the rest of the run (642 of 852 were stale by the end of
    the 2 h baseline). A sweep draws nothing, so it changes no shopper's path.
    """
    env, period = world.env, world.policies.login.session_ttl
    while True:
        yield env.timeout(period)
        accounts.purge_sessions(world.uow, env.now)


def closed_shopper(world: World, index: int) -> Generator[simpy.Event, Any, None]:
    """One always-on shopper of a closed population: session, think, session again."""
    env, spec = world.env, world.scenario.arrivals.closed
    assert spec is not None
    rng = world.streams.generator("closed", index)
    sid = CLOSED_SID_BASE * index
    while True:
        sid += 1
        yield env.process(session(world, sid))
        yield env.timeout(spec.think.sample(rng))


# --- the session -------------------------------------------------------------------------------
def session(world: World, sid: int) -> Generator[simpy.Event, Any, None]:
    """Walk the behaviour graph from its start page until the exit or the session ends."""
    env, graph = world.env, world.graph
    rng = world.streams.generator("session", sid)
    returning = bool(rng.random() < world.scenario.population.returning_share)
    index = int(rng.integers(len(world.population)))
    user_id = world.population[index] if returning else None
    shopper = Shopper(
        sid, rng, world.streams.generator("session-service", sid), user_id, returning, index
    )
    start = env.now
    world.open_sessions[sid] = (shopper, start)
    length = graph.session_length.sample(rng) if graph.session_length is not None else None
    state = graph.start
    reason = "exit"
    while True:
        yield from page(world, shopper, state)
        yield env.timeout(graph.think_time.sample(rng))
        if length is not None and env.now - start >= length:
            reason = "timeout"
            break
        state = graph.next_state(state, rng.random())
        if state == graph.exit:
            break
    del world.open_sessions[sid]
    world.recorder.sessions.append(
        sid, shopper.user_id, start, env.now, shopper.pages, returning, shopper.orders, reason
    )
    if shopper.user_id is not None:
        env.process(abandonment_check(world, shopper.user_id))


def abandonment_check(world: World, user_id: str) -> Generator[simpy.Event, Any, None]:
    """After the abandonment window, count the user's cart as abandoned if still untouched."""
    after = world.policies.abandonment_after
    yield world.env.timeout(after)
    shopping.check_abandoned(world.uow, user_id, world.env.now, after=after)


def _listed(world: World, keys: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Return the ``count`` cache keys a page reads: the products its use case named, first.

    A page shows ``count`` items (the TPC-W home page five promotions, a search page ten
    results): what its use case found, topped up with products drawn by popularity (the
    promotions of a page that names none, the other items of a short result list).
    """
    if len(keys) >= count:
        return keys if len(keys) == count else keys[:count]
    pick = world.pick_product
    return keys + [f"product:{pick(rng.random())}" for _ in range(count - len(keys))]


def page(world: World, shopper: Shopper, state: str) -> Generator[simpy.Event, Any, None]:
    """Serve one page: hold an app server for service, look-ups, queries and the use case."""
    env, rng = world.env, shopper.service_rng
    demand = world.demands[state]
    arrived = env.now
    hits = misses = 0
    cache_wait = db_wait = 0.0
    keys = shopper.keys
    keys.clear()
    shopper.outcome = "ok"
    action = ACTIONS.get(state)
    with world.app.request() as req:
        yield req
        app_wait = env.now - arrived
        service = world.scenario.stations.app.service.sample(rng) * demand.app * world.app_factor
        yield env.timeout(service)
        if action is not None:
            waiting = action(world, shopper)  # a generator if the use case waits (to pay)
            if waiting is not None:
                yield from waiting
        if demand.cache_lookups:
            hits, misses, cache_wait, db_wait = yield from cache_server.lookups(
                world, _listed(world, keys, demand.cache_lookups, rng), rng
            )
        if demand.queries:
            db_wait += yield from cache_server.queries(world, demand.queries, rng)
    shopper.pages += 1
    world.recorder.requests.append(
        arrived,
        shopper.sid,
        shopper.user_id,
        state,
        env.now - arrived,
        app_wait,
        service,
        db_wait,
        demand.queries + misses,
        cache_wait,
        hits,
        misses,
        shopper.outcome,
    )


# --- what each page does in the domain ---------------------------------------------------------
Action = Callable[["World", Shopper], Generator[simpy.Event, Any, None] | None]
"""A page's use case: a plain function, or a generator for one that waits in simulated time."""


def _ensure_user(world: World, shopper: Shopper) -> str:
    if shopper.user_id is None:
        email = f"visitor{shopper.sid}.{world.replication}@example.com"
        shopper.user_id = accounts.register(
            world.uow,
            email,
            world.password_for(email),
            world.env.now,
            hasher=world.policies.hasher,
            keep_recent=RECENT_ACTIVITY_KEPT,
        )
        world.recorder.count("registrations")
    return shopper.user_id


def _product_detail(world: World, shopper: Shopper) -> None:
    rng = shopper.rng
    sku = None
    if shopper.last_sku is not None and rng.random() < world.recommendation_share:
        picks = world.recommender.bought_together(shopper.last_sku, 5, world.category_of)
        if picks:
            sku = picks[int(rng.integers(len(picks)))]
    if sku is None:
        sku = world.pick_product(rng.random())
    shopper.last_sku = sku
    shopper.keys.append(f"product:{sku}")
    if shopper.user_id is not None:
        accounts.record_activity(
            world.uow, shopper.user_id, ActivityKind.VIEWED, sku, world.env.now
        )


def _search_results(world: World, shopper: Shopper) -> None:
    skus = world.search(shopper.rng)
    shopper.keys.extend(f"product:{sku}" for sku in skus)
    if skus:
        shopper.last_sku = skus[0]


def _shopping_cart(world: World, shopper: Shopper) -> None:
    user_id = _ensure_user(world, shopper)
    now = world.env.now
    if shopper.last_sku is not None:
        qty = 1 + int(shopper.rng.random() < world.extra_unit_share)
        try:
            shopping.add_to_cart(world.uow, user_id, shopper.last_sku, qty, now)
        except OutOfStock:  # sold out (or fewer left than wanted): the line is not added
            shopper.outcome = "out_of_stock"
            world.recorder.count("stock_outs")
        except DomainError:
            shopper.outcome = "rejected"
        shopper.last_sku = None
    shopping.view_cart(world.uow, user_id, now)
    shopper.keys.append(f"cart:{user_id}")


def _customer_registration(world: World, shopper: Shopper) -> None:
    if shopper.returning and not shopper.logged_in:
        email = world.population_emails[shopper.user_index]
        accounts.login(
            world.uow,
            email,
            world.password_for(email),
            world.env.now,
            hasher=world.policies.hasher,
            policy=world.policies.login,
        )
        shopper.logged_in = True
    else:
        _ensure_user(world, shopper)


def _buy_request(world: World, shopper: Shopper) -> None:
    user_id = _ensure_user(world, shopper)
    now = world.env.now
    for code, share in world.coupon_shares:
        if shopper.rng.random() < share:
            try:
                shopping.apply_coupon(world.uow, user_id, code, now, policies=world.policies)
                world.recorder.count("coupons_applied")
            except CouponRejected:
                world.recorder.count("coupons_rejected")
    try:
        shopping.price_user_cart(world.uow, user_id, now, policies=world.policies)
    except CouponRejected:  # a code applied earlier has expired or been used up since
        _drop_coupons(world, user_id)
        shopper.outcome = "coupon_rejected"


def _drop_coupons(world: World, user_id: str) -> None:
    """Take every coupon code off the cart, as a shopper told "this code no longer works" does."""
    cart = world.uow.carts.find_readonly(user_id)
    for code in list(cart.coupon_codes) if cart is not None else ():
        shopping.remove_coupon(world.uow, user_id, code, world.env.now)
    world.recorder.count("coupons_rejected")


def _buy_confirm(world: World, shopper: Shopper) -> Generator[simpy.Event, Any, None]:
    user_id = _ensure_user(world, shopper)
    rec = world.recorder
    try:
        order_id = shopping.checkout(world.uow, user_id, world.env.now, policies=world.policies)
    except EmptyCart:
        shopper.outcome = "empty_cart"
        return
    except OutOfStock:  # sold out since it was added: the storefront trims the cart
        shopper.outcome = "out_of_stock"
        rec.count("stock_outs")
        shopping.fit_cart_to_stock(world.uow, user_id, world.env.now)
        return
    except CouponRejected:
        shopper.outcome = "coupon_rejected"
        _drop_coupons(world, user_id)
        return
    rec.count("checkouts")
    outcome = yield from gateways.pay(world, order_id, world.card, shopper.rng)
    shopper.outcome = outcome
    if outcome == "captured":
        shopper.orders += 1
        order = world.uow.orders.find_readonly(order_id)
        world.recommender.record_order([line.sku for line in order.lines])
        world.env.process(warehouses.fulfil(world, order_id, user_id, shopper.rng))


def _order_inquiry(world: World, shopper: Shopper) -> None:
    if shopper.user_id is not None:
        fulfilment.order_history(world.uow, shopper.user_id)


def _admin_confirm(world: World, shopper: Shopper) -> None:
    sku = world.pick_product(shopper.rng.random())
    world.admin_touch(sku)
    shopper.keys.append(f"product:{sku}")


ACTIONS: dict[str, Action] = {
    "product_detail": _product_detail,
    "search_results": _search_results,
    "shopping_cart": _shopping_cart,
    "customer_registration": _customer_registration,
    "buy_request": _buy_request,
    "buy_confirm": _buy_confirm,
    "order_inquiry": _order_inquiry,
    "order_display": _order_inquiry,
    "admin_confirm": _admin_confirm,
}
"""The domain use case behind each TPC-W page (pages not listed only read cached content)."""
