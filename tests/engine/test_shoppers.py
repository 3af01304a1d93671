"""Exact traces of shopper sessions over custom graphs, arrivals and closed shoppers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.domain.cache import MISS
from sim.engine import shoppers
from sim.engine.rng import Streams
from sim.engine.shoppers import CLOSED_SID_BASE
from sim.engine.world import RECENT_ACTIVITY_KEPT
from sim.services.handlers import shopping
from tests.engine._tiny import APP, CACHE, DB, LATENCY, THINK, tiny, world_of

CHECKOUT_PAGES = {  # dyadic app factors so that every time below is exact
    "home": {"cache_lookups": 0},
    "shopping_cart": {"app": 1.0},
    "buy_request": {"app": 1.0},
}


def _graph(path: list[str], **extra) -> dict:
    """Overrides for a graph that walks ``path`` once, then leaves."""
    transitions = {a: {b: 1.0} for a, b in zip(path, [*path[1:], "leave"], strict=True)}
    graph = {"start": path[0], "exit": "leave", "transitions": transitions}
    graph["think_time"] = {"constant": THINK}
    graph.update(extra)
    return {"behavior.graph": graph}


ONE_PRODUCT = {"catalog.products": 1, "catalog.categories": 1}
"""A catalog of one product: every look-up a page draws is of it, so traces are exact."""


def _world(path: list[str], overrides: dict | None = None, seed: int = 1, **graph_extra):
    overrides = dict(overrides or {})
    if "pages" in overrides:  # only pages of the graph may be overridden
        overrides["pages"] = {k: v for k, v in overrides["pages"].items() if k in path}
    return world_of(tiny({**_graph(path, **graph_extra), **overrides}), seed)


def _sessions(world, *sids: int, at: float = 0.0) -> None:
    env = world.env

    def start(sid):
        yield env.timeout(at)
        yield env.process(shoppers.session(world, sid))

    for sid in sids:
        env.process(start(sid))


def _requests(world) -> list[tuple]:
    frame = world.recorder.requests.frame()
    return [tuple(r) for r in frame.itertuples(index=False)]


def _sessions_rows(world) -> list[tuple]:
    return [tuple(r) for r in world.recorder.sessions.frame().itertuples(index=False)]


# --- one session, exact times ------------------------------------------------------------------


def test_one_session_over_a_custom_graph_has_exact_request_and_response_times():
    world = _world(["home", "product_detail"], ONE_PRODUCT)
    _sessions(world, 1)
    world.env.run()
    home = APP + CACHE + DB + 4 * CACHE  # 5 promotions, all the one product: the first misses
    t1 = home + THINK
    detail = APP + CACHE  # the product is cached now
    end = t1 + detail + THINK
    assert _requests(world) == [
        (0.0, 1, None, "home", home, 0.0, APP, 0.0, 1, 0.0, 4, 1, "ok"),
        (t1, 1, None, "product_detail", detail, 0.0, APP, 0.0, 0, 0.0, 1, 0, "ok"),
    ]
    assert _sessions_rows(world) == [(1, None, 0.0, end, 2, False, 0, "exit")]
    assert world.env.now == end
    stats = world.app.stats()
    assert (stats.arrivals, stats.completions) == (2, 2)
    assert stats.total_service == home + detail  # the app server is held through the look-ups


def test_concurrent_sessions_queue_for_one_app_server_and_share_the_cache():
    world = _world(["home"], {"stations.app.servers": 1, **ONE_PRODUCT})
    _sessions(world, 1, 2)
    world.env.run()
    first = APP + CACHE + DB + 4 * CACHE
    second = APP + 5 * CACHE  # the product is cached now
    assert _requests(world) == [
        (0.0, 1, None, "home", first, 0.0, APP, 0.0, 1, 0.0, 4, 1, "ok"),
        (0.0, 2, None, "home", first + second, first, APP, 0.0, 0, 0.0, 5, 0, "ok"),
    ]


def test_page_overrides_set_app_factor_queries_and_lookups():
    world = _world(
        ["home"],
        {"pages": {"home": {"app": 2.0, "queries": 3, "cache_lookups": 2}}, **ONE_PRODUCT},
    )
    _sessions(world, 1)
    world.env.run()
    response = 2 * APP + CACHE + DB + CACHE + 3 * DB
    assert _requests(world) == [
        (0.0, 1, None, "home", response, 0.0, 2 * APP, 0.0, 4, 0.0, 1, 1, "ok")
    ]


def test_session_length_ends_a_session_by_timeout():
    world = _world(
        ["home", "new_products"],
        {"pages": {"home": {"cache_lookups": 0}}},
        session_length={"constant": 2.0},
        transitions={"home": {"home": 1.0}},
        exit=None,
    )
    _sessions(world, 1)
    world.env.run()
    assert _sessions_rows(world) == [(1, None, 0.0, APP + THINK, 1, False, 0, "timeout")]


def test_a_whole_checkout_session_has_exact_times_and_pays_through_the_gateway():
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_request", "buy_confirm"],
        {"pages": CHECKOUT_PAGES},
    )
    world.extra_unit_share = 0.0
    _sessions(world, 7)
    world.env.run(until=50.0)
    home = APP
    detail = APP + CACHE + DB
    cart = APP + DB
    request = APP + 2 * DB
    confirm = 2 * APP + LATENCY + 3 * DB
    starts = [0.0]
    for response in (home, detail, cart, request):
        starts.append(starts[-1] + response + THINK)
    end = starts[-1] + confirm + THINK
    rows = _requests(world)
    assert [(r[0], r[3], r[4], r[12]) for r in rows] == [
        (starts[0], "home", home, "ok"),
        (starts[1], "product_detail", detail, "ok"),
        (starts[2], "shopping_cart", cart, "ok"),
        (starts[3], "buy_request", request, "ok"),
        (starts[4], "buy_confirm", confirm, "captured"),
    ]
    user = world.recorder.sessions.frame()["user"][0]
    assert user.startswith("user-")
    assert [None if pd.isna(r[2]) else r[2] for r in rows] == [None, None, user, user, user]
    assert _sessions_rows(world) == [(7, user, 0.0, end, 5, False, 1, "exit")]
    paid_at = starts[4] + 2 * APP + LATENCY
    payments = world.recorder.payments.frame()
    assert payments[["time", "attempt", "outcome", "latency"]].values.tolist() == [
        [paid_at, 1, "approved", LATENCY]
    ]
    events = world.recorder.order_events.frame()
    assert events[["time", "old", "new"]].values.tolist() == [[paid_at, "pending", "processing"]]
    assert world.recorder.counters == {"registrations": 1, "checkouts": 1}
    (order,) = world.uow.orders.values()
    assert order.units == 1
    sold = order.lines[0].sku
    assert [world.recommender.sales(sku) for sku in world.skus] == [
        int(sku == sold) for sku in world.skus
    ]
    assert world.warehouses[0].stats().arrivals == 1  # fulfilment started at once


def test_a_returning_shopper_logs_in_and_is_not_registered_again():
    world = _world(
        ["home", "customer_registration", "shopping_cart", "buy_request"],
        {"population.returning_share": 1.0, "pages": CHECKOUT_PAGES},
    )
    _sessions(world, 3)
    world.env.run()
    frame = world.recorder.requests.frame()
    user = frame["user"][0]
    assert user in world.population
    assert set(frame["user"]) == {user}
    assert world.recorder.counters == {}
    assert _sessions_rows(world)[0][5] is True


def test_every_simulated_customer_keeps_a_short_activity_log():
    world = _world(["home", "shopping_cart"], {"pages": CHECKOUT_PAGES})
    _sessions(world, 1)
    world.env.run()
    visitor = world.recorder.sessions.frame()["user"][0]
    assert visitor not in world.population  # registered during the session
    kept = {world.uow.activity.find_readonly(u).keep for u in [*world.population, visitor]}
    assert kept == {RECENT_ACTIVITY_KEPT} and RECENT_ACTIVITY_KEPT == 20


def test_an_untouched_cart_is_counted_abandoned_after_the_policy_window():
    world = _world(["home", "product_detail", "shopping_cart"], {"pages": CHECKOUT_PAGES})
    _sessions(world, 1)
    world.env.run()
    user = world.recorder.sessions.frame()["user"][0]
    end = world.recorder.sessions.frame()["end"][0]
    assert world.env.now == end + world.policies.abandonment_after
    cart = world.uow.carts.find_readonly(user)
    assert cart.abandoned_count == 1


def test_buy_confirm_with_an_empty_cart():
    world = _world(["home", "shopping_cart", "buy_confirm"], {"pages": CHECKOUT_PAGES})
    _sessions(world, 1)
    world.env.run()
    assert [r[12] for r in _requests(world)] == ["ok", "ok", "empty_cart"]
    assert world.recorder.counters == {"registrations": 1}


def test_buy_confirm_before_any_cart_was_opened_is_an_empty_cart():
    world = _world(["home", "buy_confirm"], {"pages": CHECKOUT_PAGES})
    _sessions(world, 1)
    world.env.run()
    assert [r[12] for r in _requests(world)] == ["ok", "empty_cart"]


def test_a_sold_out_product_is_not_added_to_the_cart():
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_confirm"],
        {"pages": CHECKOUT_PAGES, "catalog.stock.initial": 0},
    )
    _sessions(world, 1)
    world.env.run()
    assert [r[12] for r in _requests(world)] == ["ok", "ok", "out_of_stock", "empty_cart"]
    assert world.recorder.counters == {"registrations": 1, "stock_outs": 1}
    assert len(world.uow.orders) == 0


def test_buy_confirm_of_a_product_sold_out_since_it_was_added_trims_the_cart():
    """Two shoppers add the last unit; the second to confirm is refused, its cart trimmed."""
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_confirm"],
        {"pages": CHECKOUT_PAGES, "catalog.stock.initial": 1, **ONE_PRODUCT},
    )
    _sessions(world, 1, 2)
    world.env.run()
    confirms = {r[1]: (r[2], r[12]) for r in _requests(world) if r[3] == "buy_confirm"}
    late = [sid for sid, (_, outcome) in confirms.items() if outcome == "out_of_stock"]
    assert len(late) == 1 and len(world.uow.orders) == 1
    assert world.recorder.counters["stock_outs"] == 1
    refused_user = confirms[late[0]][0]
    assert world.uow.carts.get(refused_user).lines == {}  # the sold-out line was taken out


def test_adding_an_unknown_product_is_rejected():
    world = _world(["home", "product_detail", "shopping_cart"], {"pages": CHECKOUT_PAGES})
    world.skus = ["SKU-NOPE"]
    world.popularity_cdf = np.array([1.0])
    _sessions(world, 1)
    world.env.run(until=100)
    assert [r[12] for r in _requests(world)] == ["ok", "ok", "rejected"]


COUPON = {
    "code": "TEN",
    "kind": "percent",
    "value": 10,
    "share_of_checkouts": 1.0,
}


def test_a_coupon_is_applied_at_buy_request_and_discounts_the_order():
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_request", "buy_confirm"],
        {"pages": CHECKOUT_PAGES, "coupons": [COUPON]},
    )
    _sessions(world, 1)
    world.env.run(until=100)
    assert world.recorder.counters["coupons_applied"] == 1
    (order,) = world.uow.orders.values()
    assert list(order.coupon_codes) == ["TEN"]
    assert order.discount.minor == order.subtotal.minor // 10
    assert world.uow.coupons.find_readonly("TEN").used == 1


def test_a_coupon_below_its_minimum_is_rejected_at_buy_request():
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_request"],
        {"pages": CHECKOUT_PAGES, "coupons": [{**COUPON, "min_purchase": "1000.00"}]},
    )
    _sessions(world, 1)
    world.env.run(until=100)
    assert world.recorder.counters["coupons_rejected"] == 1
    assert "coupons_applied" not in world.recorder.counters


def test_a_coupon_that_expires_before_buy_confirm_rejects_the_checkout():
    # buy_request runs at about 12.4 s, buy_confirm at about 16.6 s
    world = _world(
        ["home", "product_detail", "shopping_cart", "buy_request", "buy_confirm"],
        {"pages": CHECKOUT_PAGES, "coupons": [{**COUPON, "valid_until": 14}]},
    )
    _sessions(world, 1)
    world.env.run(until=100)
    assert _requests(world)[-1][12] == "coupon_rejected"
    assert world.recorder.counters["coupons_applied"] == 1
    assert world.recorder.counters["coupons_rejected"] == 1
    assert len(world.uow.orders) == 0


@pytest.mark.parametrize("why", ["used_up", "expired"])
def test_buy_request_survives_a_coupon_that_went_bad_in_the_cart(why):
    coupon = {**COUPON, "share_of_checkouts": 0.0, "usage_limit": 1, "valid_until": 10}
    world = _world(["home"], {"coupons": [coupon]})
    uow, policies = world.uow, world.policies
    holder, other = world.population[0], world.population[1]
    shopping.add_to_cart(uow, holder, world.skus[0], 1, 0.0)
    shopping.apply_coupon(uow, holder, "TEN", 0.0, policies=policies)
    if why == "used_up":
        paid_order_with_coupon(world, other)
    else:
        world.env.run(until=20.0)
    shopper = _shopper(world)
    shopper.user_id = holder
    _act(world, "buy_request", shopper)
    # the page is served; the code that went bad is taken off the cart and the page says so
    assert shopper.outcome == "coupon_rejected"
    assert uow.carts.get(holder).coupon_codes == []
    assert world.recorder.counters["coupons_rejected"] == 1


def paid_order_with_coupon(world, user_id: str) -> None:
    uow, policies = world.uow, world.policies
    shopping.add_to_cart(uow, user_id, world.skus[1], 1, 0.0)
    shopping.apply_coupon(uow, user_id, "TEN", 0.0, policies=policies)
    order_id = shopping.checkout(uow, user_id, 0.0, policies=policies)
    start = shopping.begin_payment(
        uow, order_id, world.card, gateway="gw", idempotency_key="k", now=0.0, policies=policies
    )
    shopping.record_gateway_answer(uow, start.payment_id, "approved", 0.0)
    assert uow.coupons.find_readonly("TEN").used == 1


def test_order_pages_read_the_history_and_admin_confirm_edits_a_product():
    world = _world(
        [
            "home",
            "order_inquiry",
            "product_detail",
            "shopping_cart",
            "buy_request",
            "buy_confirm",
            "order_display",
            "admin_confirm",
        ],
        {"pages": CHECKOUT_PAGES},
    )
    _sessions(world, 1)
    world.env.run(until=100)
    frame = world.recorder.requests.frame()
    assert list(frame["page"])[-2:] == ["order_display", "admin_confirm"]
    assert set(frame["outcome"]) == {"ok", "captured"}
    admin_at = frame["time"].iloc[-1] + APP * 1.5
    edited = [
        p for p in world.uow.products.values() if p.description == f"edited at {admin_at:.0f}"
    ]
    assert len(edited) == 1
    assert world.cache.get(f"product:{edited[0].sku}", world.env.now) is MISS


def test_search_results_look_up_the_listed_products():
    world = _world(["home", "search_results"])
    _sessions(world, 1)
    world.env.run()
    row = _requests(world)[1]
    hits, misses = row[10], row[11]
    assert hits + misses == 10
    assert 1 <= misses <= 10
    assert row[8] == 1 + misses  # the search query plus one per miss


def test_a_search_is_built_once_per_category_and_stock_filter():
    world = world_of(tiny())
    answers = [world.search(np.random.default_rng(seed)) for seed in range(40)]
    queries = world.search_queries
    # one query per (category, in stock only) drawn, each reused by every later search
    assert 2 <= len(queries) <= 2 * len(world.categories)
    for (category, in_stock_only), query in queries.items():
        assert (query.category_id, query.in_stock_only) == (category, in_stock_only)
        assert query.sort == "best_selling"
    built = dict(queries)  # a copy: the world's dict is the one the searches fill
    again = [world.search(np.random.default_rng(seed)) for seed in range(40)]
    assert again == answers
    assert world.search_queries.keys() == built.keys()
    assert all(world.search_queries[key] is query for key, query in built.items())


def _shopper(world, sid: int = 1, last_sku: str | None = None) -> shoppers.Shopper:
    shopper = shoppers.Shopper(
        sid=sid,
        rng=np.random.default_rng(sid),
        service_rng=np.random.default_rng(1000 + sid),
        user_id=None,
        returning=False,
        user_index=0,
    )
    shopper.last_sku = last_sku
    return shopper


def _act(world, state: str, shopper: shoppers.Shopper) -> None:
    waiting = shoppers.ACTIONS[state](world, shopper)
    if waiting is not None:  # only a use case that waits in simulated time is a generator
        world.env.process(waiting)
    world.env.run()


def test_product_detail_follows_a_recommendation_of_the_last_product():
    world = _world(["home"])
    world.recommendation_share = 1.0
    first, target = world.skus[0], world.skus[-1]
    world.recommender.record_order([first, target])
    shopper = _shopper(world, last_sku=first)
    _act(world, "product_detail", shopper)
    assert shopper.keys == [f"product:{target}"]
    assert shopper.last_sku == target


def test_product_detail_without_a_recommendation_picks_by_popularity():
    world = _world(["home"])
    world.recommendation_share = 0.0
    shopper = _shopper(world, last_sku=world.skus[3])
    twin = np.random.default_rng(1)
    twin.random()  # the recommendation draw
    expected = world.pick_product(twin.random())
    _act(world, "product_detail", shopper)
    assert shopper.keys == [f"product:{expected}"]


def test_pick_product_maps_popularity_quantiles_to_ranks():
    world = _world(["home"])
    assert world.pick_product(0.0) == world.skus[0]
    assert world.pick_product(float(world.popularity_cdf[0])) == world.skus[1]
    assert world.pick_product(0.999999999999) == world.skus[-1]
    assert world.pick_product(1.0) == world.skus[-1]


def test_order_inquiry_of_an_anonymous_shopper_reads_nothing():
    world = _world(["home"])
    shopper = _shopper(world)
    _act(world, "order_inquiry", shopper)
    assert shopper.user_id is None
    assert shopper.outcome == "ok"


# --- arrivals and closed shoppers --------------------------------------------------------------


def test_poisson_arrivals_start_sessions_at_the_arrival_stream_gaps():
    world = _world(["home"], {"arrivals.rate": 0.5})
    world.env.process(shoppers.arrivals(world))
    world.env.run(until=70.0)
    twin = Streams(1)["arrivals"]
    expected, t = [], 0.0
    while True:
        t += twin.exponential(2.0)
        twin.random()
        if t >= 60.0:
            break
        expected.append(t)
    frame = world.recorder.requests.frame()
    frame = frame[frame["time"] < 60.0]
    assert sorted(frame["time"]) == expected
    assert sorted(frame["session"]) == list(range(1, len(expected) + 1))


def test_a_rate_schedule_is_sampled_by_thinning_at_the_peak_rate():
    schedule = [{"at": 0, "rate": 0.25}, {"at": 100, "rate": 1.0}, {"at": 200, "rate": 0.5}]
    world = _world(["home"], {"arrivals": {"schedule": schedule}})
    world.env.process(shoppers.arrivals(world))
    world.env.run(until=310.0)
    twin = Streams(1)["arrivals"]
    expected, t = [], 0.0
    while True:
        t += twin.exponential(1.0)
        u = twin.random()
        if t >= 300.0:
            break
        rate = 0.25 if t < 100 else 1.0 if t < 200 else 0.5
        if u * 1.0 < rate:
            expected.append(t)
    times = world.recorder.requests.frame()["time"]
    assert sorted(times[times < 300.0]) == expected
    counts = np.histogram(expected, bins=[0, 100, 200, 300])[0]
    assert counts[0] < counts[2] < counts[1]


def test_a_closed_shopper_thinks_between_sessions():
    world = _world(
        ["home"], {"arrivals": {"closed": {"users": 1, "think": {"constant": 3}}}, **ONE_PRODUCT}
    )
    world.env.process(shoppers.closed_shopper(world, 1))
    world.env.run(until=15.0)
    home = APP + CACHE + DB + 4 * CACHE
    first_end = home + THINK
    second_start = first_end + 3.0
    second_end = second_start + APP + 5 * CACHE + THINK
    third_start = second_end + 3.0
    assert [r[:4] for r in _sessions_rows(world)] == [
        (CLOSED_SID_BASE + 1, None, 0.0, first_end),
        (CLOSED_SID_BASE + 2, None, second_start, second_end),
    ]
    assert world.recorder.requests.frame()["time"].tolist() == [0.0, second_start, third_start]


def test_a_closed_population_alone_runs():
    from sim.engine.runner import run

    data = _graph(["home"])
    data["arrivals"] = {"closed": {"users": 2, "think": {"constant": 3}}}
    result = run(tiny(data), 1)
    assert result.kpis["sessions"] > 0
    assert set(result.frames["sessions"]["session"]) >= {CLOSED_SID_BASE + 1}


def test_a_page_reads_as_many_items_as_it_shows_each_a_product():
    """Home's five promotions are five products drawn by popularity, not one page key read
    five times; a use case's own products come first and are topped up to the count."""
    world = _world(["home"], {"catalog.products": 500, "stations.cache.capacity": 1000})
    _sessions(world, 1)
    world.env.run()
    (row,) = _requests(world)
    hits, misses = row[10], row[11]
    # an empty cache: each product misses once (one page key would miss once, hit four times)
    assert hits + misses == 5 and misses >= 2 and len(world.cache) == misses
    keys = shoppers._listed(world, [], 5, np.random.default_rng(1))
    assert len(keys) == 5 and all(k.startswith("product:") for k in keys)
    assert len(set(keys)) > 1  # drawn, so rarely all the same product of 500
    named = ["product:a", "product:b"]
    topped = shoppers._listed(world, named, 5, np.random.default_rng(1))
    assert topped[:2] == named and len(topped) == 5
    assert shoppers._listed(world, [f"product:{i}" for i in range(12)], 10, None) == [
        f"product:{i}" for i in range(10)
    ]
