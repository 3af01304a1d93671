"""The world of one run: every resource, the shop's domain state, and the random streams.

``build_world(env, scenario, streams)`` creates the stations, gateways and warehouses, the
catalog (products ranked by popularity, categories, prices, stock), the registered
customers, the coupons and the cache, and wires domain events to the engine (a stock
change invalidates the product's cache entry; order transitions reach the recorder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from faker import Faker

from sim.domain.cache import CacheStore
from sim.domain.catalog import CatalogIndex, Recommender, SearchQuery
from sim.domain.coupons import Coupon
from sim.domain.events import OrderStatusChanged, StockChanged
from sim.domain.inventory import StockItem
from sim.domain.money import Money
from sim.domain.payments import Card, FraudRules, RetryPolicy
from sim.domain.users import PasswordHasher, Role
from sim.engine.gateways import GatewayModel
from sim.engine.recorder import Recorder
from sim.engine.rng import Streams
from sim.engine.stations import Station
from sim.scenario.schema import Coupon as CouponSpec
from sim.scenario.schema import Scenario
from sim.scenario.workloads import BehaviorGraph, PageDemand
from sim.services.handlers import accounts, catalog
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import open_store
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers

SIMULATION_HASHER = PasswordHasher(iterations=1)
"""A deliberately cheap KDF setting: simulated logins must not cost real CPU seconds."""

RECENT_ACTIVITY_KEPT = 20
"""Latest activity entries kept per simulated customer (the counts keep everything): the
domain's default of 200 would make each customer's log grow for the whole of a long run."""

RECOMMENDATION_SHARE = 0.3
"""Chance that a product view follows a "bought together" recommendation of the last one."""

EXTRA_UNIT_SHARE = 0.2
"""Chance that an add-to-cart takes two units instead of one."""

FRAUD_BLOCK_AT = 80
"""The fraud score that refuses a payment; a scenario's fraud rules each score this much."""

SEARCH_PAGE_SIZE = 10
"""Products listed on one page of search results."""

NAME_POOL = 1000
"""Distinct fake user names the registered customers' e-mail addresses are made from."""

DOMAIN_POOL = 40
"""Distinct fake e-mail domains the customers' addresses are made from."""

REGISTRATION_BATCH = 1000
"""Customers registered per transaction when the world is built: one transaction per customer
costs more than the registration itself, and one for all would make a SQLite store hold every
new row of the population in its transaction's cache at once."""


@dataclass(eq=False)
class World:
    """Everything one run's processes share; built by :func:`build_world`."""

    env: simpy.Environment
    scenario: Scenario
    streams: Streams
    replication: int
    uow: UnitOfWork
    policies: ShopPolicies
    recorder: Recorder
    graph: BehaviorGraph
    demands: dict[str, PageDemand]
    app: Station
    database: Station
    cache_station: Station
    cache: CacheStore
    gateways: list[GatewayModel]
    shares: list[float]
    retry: RetryPolicy
    warehouses: list[Station]
    warehouse_cdf: np.ndarray
    index: CatalogIndex
    recommender: Recommender
    skus: list[str]
    popularity_cdf: np.ndarray
    categories: list[str]
    category_of_sku: dict[str, str]
    population: list[str]
    population_emails: list[str]
    coupon_shares: list[tuple[str, float]]
    rate_steps: list[tuple[float, float]]
    admin_id: str
    card: Card
    app_factor: float = 1.0
    db_factor: float = 1.0
    cache_factor: float = 1.0
    cache_outages: int = 0
    pool_limits: list[int] = field(default_factory=list)
    recommendation_share: float = RECOMMENDATION_SHARE
    extra_unit_share: float = EXTRA_UNIT_SHARE
    stations: dict[str, Station] = field(default_factory=dict)
    warehouse_outages: dict[str, int] = field(default_factory=dict)
    """Outages in force per warehouse (they nest); a warehouse has no pickers while down."""
    warehouse_names: list[str] = field(default_factory=list)
    open_sessions: dict[int, tuple[Any, float]] = field(default_factory=dict)
    sold_out: set[str] = field(default_factory=set)
    """SKUs with nothing available, kept in step by :meth:`on_stock_changed` (for search)."""
    sales_view: Mapping[str, int] = field(default_factory=dict)
    """The recommender's live sales table (SKU -> orders), for best-selling searches."""
    search_queries: dict[tuple[str, bool], SearchQuery] = field(default_factory=dict)
    """The searches shoppers run, by (category, in stock only), each built on first use."""

    def close_open_sessions(self, horizon: float) -> None:
        """Record every session still walking at the horizon, as ``in_flight``."""
        for sid, (shopper, start) in sorted(self.open_sessions.items()):
            self.recorder.sessions.append(
                sid,
                shopper.user_id,
                start,
                horizon,
                shopper.pages,
                shopper.returning,
                shopper.orders,
                "in_flight",
            )
        self.open_sessions.clear()

    def pick_product(self, u: float) -> str:
        """Return the SKU at popularity quantile ``u`` (Zipf over the catalog's ranks)."""
        rank = int(np.searchsorted(self.popularity_cdf, u, side="right"))
        return self.skus[min(rank, len(self.skus) - 1)]

    def category_of(self, sku: str) -> str | None:
        """Return a SKU's category id."""
        return self.category_of_sku.get(sku)

    def search(self, rng: np.random.Generator) -> list[str]:
        """Run one catalog search by category (half of them in stock only); return the SKUs."""
        category = self.categories[int(rng.integers(len(self.categories)))]
        in_stock_only = bool(rng.random() < 0.5)
        query = self.search_queries.get((category, in_stock_only))
        if query is None:  # a query is immutable: build each one once
            query = self.search_queries[category, in_stock_only] = SearchQuery(
                category_id=category,
                in_stock_only=in_stock_only,
                sort="best_selling",
                page_size=SEARCH_PAGE_SIZE,
            )
        page = self.index.search(
            query, sales=self.sales_view, sold_out=self.sold_out, ranked=self.recommender.ranked_in
        )
        return list(page.items)

    def admin_touch(self, sku: str) -> None:
        """Let an admin edit a product's description: its cache entry goes stale."""
        catalog.update_product(
            self.uow, self.admin_id, sku, self.env.now, description=f"edited at {self.env.now:.0f}"
        )
        self.cache.invalidate(f"product:{sku}")

    def password_for(self, email: str) -> str:
        """Return the simulated customer's password (known to the simulation only)."""
        return password_for(email)

    @property
    def cache_down(self) -> bool:
        """Return True while an outage of the cache server is in force."""
        return self.cache_outages > 0

    def on_stock_changed(self, event: StockChanged) -> None:
        """Invalidate the product's cache entry when its stock changes; track sold-out SKUs."""
        self.cache.invalidate(f"product:{event.sku}")
        if event.available > 0:
            self.sold_out.discard(event.sku)
        else:
            self.sold_out.add(event.sku)


def password_for(email: str) -> str:
    """Return a simulated customer's password: derived from the e-mail, never stored in clear."""
    return "pw-" + hashlib.sha256(email.encode()).hexdigest()[:16] + "-7"


def build_world(env: simpy.Environment, scenario: Scenario, streams: Streams) -> World:
    """Build every resource, the catalog, the customers and the coupons of one run.

    The store is opened first; if anything after fails (or is interrupted), it is closed
    again before the error goes on, so no file or connection is left open.
    """
    storage = scenario.storage
    uow = attach_subscribers(
        open_store(storage.kind, storage.path, replication=streams.replication),
        notifications=False,
    )
    try:
        return _furnish(env, scenario, streams, uow)
    except BaseException:
        uow.close()
        raise


def _furnish(
    env: simpy.Environment, scenario: Scenario, streams: Streams, uow: UnitOfWork
) -> World:
    """Build the world of :func:`build_world` around its opened store."""
    sc = scenario
    recorder = Recorder(
        sc.metrics.requests,
        sc.metrics.interval,
        sc.metrics.intervals_per_window(sc.horizon),
        shared_id=uow.shared_id,
    )
    fraud = sc.payments.fraud
    policies = ShopPolicies(
        hasher=SIMULATION_HASHER,
        fraud=FraudRules(  # each of the scenario's rules refuses on its own (weight = block_at)
            velocity_window=fraud.window,
            max_attempts_in_window=fraud.max_attempts,
            large_amount=Money(fraud.max_amount),
            velocity_weight=FRAUD_BLOCK_AT,
            large_amount_weight=FRAUD_BLOCK_AT,
            block_at=FRAUD_BLOCK_AT,
        )
        if fraud.enabled
        else FraudRules(review_at=100, block_at=100, large_amount=Money(10**12)),
    )
    interval = sc.metrics.interval
    stations = sc.stations
    app = Station(env, stations.app.servers, name="app", interval=interval)
    database = Station(env, stations.database.pool, name="database", interval=interval)
    cache_station = Station(env, stations.cache.servers, name="cache", interval=interval)
    cache = CacheStore(stations.cache.capacity, stations.cache.policy, stations.cache.ttl)

    gateway_models = [
        GatewayModel(g, Station(env, g.servers, name=f"gateway:{g.name}", interval=interval))
        for g in sc.payments.gateways
    ]
    shares = [
        g.share if g.share is not None else 1 / len(gateway_models) for g in sc.payments.gateways
    ]
    warehouses = [
        Station(env, w.workers, name=f"warehouse:{w.name}", interval=interval)
        for w in sc.fulfilment.warehouses
    ]
    w_shares = np.array(
        [w.share if w.share is not None else 1.0 for w in sc.fulfilment.warehouses], dtype=float
    )
    backoff = sc.payments.retries.backoff
    retry = RetryPolicy(
        max_attempts=sc.payments.retries.max_attempts,
        base=backoff.base,
        cap=backoff.cap,
        jitter=backoff.jitter,
        min_delay=min(backoff.base, 0.5),
    )

    # --- people: an admin and the registered customers ---------------------------------------
    faker = Faker()
    faker.seed_instance(int(streams["population"].integers(2**31)))
    admin_id = accounts.register(
        uow,
        "admin@shop.example",
        "Sim-operator-9f2k-2026",
        0.0,
        role=Role.ADMIN,
        hasher=SIMULATION_HASHER,
    )
    # Faker makes a pool of names and domains; customers combine them (faker per customer
    # was most of the build time of a large population). The number keeps e-mails unique.
    names = [faker.user_name() for _ in range(min(sc.population.users, NAME_POOL))]
    domains = [faker.free_email_domain() for _ in range(DOMAIN_POOL)]
    emails = [
        f"{names[i * 7919 % len(names)]}.{i}@{domains[i * 31 % len(domains)]}"
        for i in range(sc.population.users)
    ]
    ids: list[str] = []
    for first in range(0, len(emails), REGISTRATION_BATCH):
        batch = emails[first : first + REGISTRATION_BATCH]
        ids += accounts.register_many(
            uow,
            [(email, password_for(email)) for email in batch],
            0.0,
            hasher=SIMULATION_HASHER,
            keep_recent=RECENT_ACTIVITY_KEPT,
        )

    # --- the catalog: categories, products ranked by popularity, stock -----------------------
    index, recommender = CatalogIndex(), Recommender()
    catalog.attach_catalog_views(uow.bus, uow, index, recommender)
    rng = streams["catalog"]
    categories = [
        catalog.create_category(uow, admin_id, f"Category {c + 1}", None, 0.0)
        for c in range(sc.catalog.categories)
    ]
    n = sc.catalog.products
    prices = sc.catalog.price.sample_many(rng, n)
    cat_index = rng.integers(len(categories), size=n)
    words = [faker.word() for _ in range(min(n, 500))]
    specs = [
        {
            "sku": f"SKU-{rank + 1:06d}",
            "name": f"{words[rank % len(words)].title()} {words[(rank * 7 + 3) % len(words)]}",
            "description": f"{words[(rank * 13 + 5) % len(words)]} product {rank + 1}",
            "category_id": categories[int(cat_index[rank])],
            "price": Money.from_units(float(prices[rank])).clamp_min(Money(1)),
        }
        for rank in range(n)
    ]
    skus = catalog.bulk_create_products(uow, admin_id, specs, 0.0)
    stock = {sku: sc.catalog.stock.initial for sku in skus}
    for limited in sc.catalog.stock.limited:
        ranks = (
            [limited.sku_rank]
            if limited.sku_rank is not None
            else range(1, (limited.count or 0) + 1)
        )
        for rank in ranks:
            if rank <= n:
                stock[skus[rank - 1]] = limited.stock
    with uow:
        for sku in skus:
            uow.stock.add(StockItem(sku, stock[sku]))
        for spec in sc.coupons:
            uow.coupons.add(_coupon(spec, categories))
        uow.commit()
    ranks = np.arange(1, n + 1, dtype=float)
    weights = ranks**-sc.catalog.popularity.zipf
    popularity_cdf = np.cumsum(weights / weights.sum())

    if sc.arrivals.schedule is not None:
        rate_steps = [(step.at, step.rate) for step in sc.arrivals.schedule]
    elif sc.arrivals.rate is not None:
        rate_steps = [(0.0, sc.arrivals.rate)]
    else:
        rate_steps = []  # a closed population only
    if not any(rate > 0 for _, rate in rate_steps):
        rate_steps = []  # no open arrivals at all (a schedule of zero rates)

    world = World(
        env=env,
        scenario=sc,
        streams=streams,
        replication=streams.replication,
        uow=uow,
        policies=policies,
        recorder=recorder,
        graph=sc.behavior_graph(),
        demands=sc.page_demands(),
        app=app,
        database=database,
        cache_station=cache_station,
        cache=cache,
        gateways=gateway_models,
        shares=shares,
        retry=retry,
        warehouses=warehouses,
        warehouse_cdf=np.cumsum(w_shares / w_shares.sum()),
        index=index,
        recommender=recommender,
        skus=skus,
        popularity_cdf=popularity_cdf,
        categories=categories,
        category_of_sku={s["sku"]: s["category_id"] for s in specs},
        population=ids,
        population_emails=emails,
        coupon_shares=[(c.code, c.share_of_checkouts) for c in sc.coupons],
        rate_steps=rate_steps,
        admin_id=admin_id,
        card=Card("4242424242424242", 12, 2030, "Sim Shopper", "US"),
    )
    world.warehouse_names = [w.name for w in sc.fulfilment.warehouses]
    world.sold_out = {sku for sku in skus if stock[sku] <= 0}
    world.sales_view = recommender.sales_table
    world.stations = {
        "app": app,
        "database": database,
        "cache": cache_station,
        **{g.station.name: g.station for g in gateway_models},
        **{w.name: w for w in warehouses},
    }
    uow.bus.subscribe(StockChanged, world.on_stock_changed)
    uow.bus.subscribe(OrderStatusChanged, recorder.on_order_status)
    return world


def _coupon(spec: CouponSpec, categories: list[str]) -> Coupon:
    value: int | Money = spec.value if spec.kind == "percent" else Money(spec.value)
    return Coupon.create(
        spec.code,
        spec.kind,
        value,
        min_purchase=Money(spec.min_purchase),
        valid_from=spec.valid_from,
        valid_until=spec.valid_until if spec.valid_until is not None else None,
        usage_limit=spec.usage_limit,
        per_customer_limit=spec.per_customer_limit,
        categories=frozenset(categories[c - 1] for c in spec.categories) or None,
        stackable=spec.stackable,
    )
