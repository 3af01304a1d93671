"""Shared fixtures of the service-layer tests: a seeded shop over one unit of work.

Products are real catalog products (``sim.domain.catalog.Product.create``); the shopping
handlers read their ``sku``, ``category_id`` and ``price``.

The shop (every figure below is used by the tests' hand-computed amounts):

    users     ann (customer), bob (customer), root (admin), shop (merchant)
    products  SKU-BOOK  books    12.50   10 in stock
              SKU-LAMP  home     45.00    2 in stock
              SKU-MUG   kitchen   8.99    5 in stock
              SKU-PEN   office    1.99  100 in stock
    coupons   SAVE10   10 % off the order
              FIVEOFF  5.00 off from 20.00
              BOOKS20  20 % off books
              ONCE     10 % off, once per customer
              SINGLE   2.00 off, one use in all
              FUTURE   10 % off, valid from t=1000
              OLD      10 % off, valid until t=10
              STACK-A  5 % off, stackable
              STACK-B  1.00 off, stackable
    policies  the defaults (8 % tax, 4.99 shipping free from 50.00, 15 min reservations)
              with a fast password hasher

Every test of this package runs twice, once per store (the autouse ``store`` fixture):
on the in-memory unit of work and on SQLite (``sim.services.sqlite_store``, an in-memory
database). Tests build units of work with :func:`new_uow`, which gives the store of the
running test; a test module that is about one store only overrides ``store``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pytest

from sim.domain.catalog import Product
from sim.domain.coupons import FIXED, PERCENT, Coupon
from sim.domain.events import DomainEvent
from sim.domain.inventory import StockItem
from sim.domain.money import Money
from sim.domain.payments import Card
from sim.domain.users import PasswordHasher, Role
from sim.services.bus import MessageBus
from sim.services.handlers import accounts, shopping
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import SqliteUnitOfWork
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers

PASSWORD = "Corr3ct-horse-battery"

ANN = "user-000001"
BOB = "user-000002"
ADMIN = "user-000003"
MERCHANT = "user-000004"
EMAILS = {
    ANN: "ann@example.com",
    BOB: "bob@example.com",
    ADMIN: "root@example.com",
    MERCHANT: "shop@example.com",
}

BOOK, LAMP, MUG, PEN = "SKU-BOOK", "SKU-LAMP", "SKU-MUG", "SKU-PEN"
INITIAL_STOCK = {BOOK: 10, LAMP: 2, MUG: 5, PEN: 100}
TEST_CARD_NUMBER = "4242424242424242"


PRODUCTS = (  # sku, name, category, price
    (BOOK, "Book", "books", Money(1250)),
    (LAMP, "Lamp", "home", Money(4500)),
    (MUG, "Mug", "kitchen", Money(899)),
    (PEN, "Pen", "office", Money(199)),
)


STORES = ("memory", "sqlite")
_current = {"store": "memory"}
_opened: list[SqliteUnitOfWork] = []


def new_uow(bus: MessageBus | None = None, *, trusted: Iterable[type] = ()) -> UnitOfWork:
    """Return an empty unit of work on the store the running test is parametrized with.

    ``trusted``: classes outside sim.domain that the SQLite store may load (test aggregates).
    """
    if _current["store"] == "memory":
        return UnitOfWork(bus)
    unit = SqliteUnitOfWork.connect(bus=bus, trusted=trusted)
    _opened.append(unit)
    return unit


@pytest.fixture(params=STORES, autouse=True)
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on each store; close the SQLite connections it opened."""
    _current["store"] = request.param
    yield request.param
    _current["store"] = "memory"
    while _opened:
        _opened.pop().close()


def make_coupons() -> list[Coupon]:
    return [
        Coupon.create("SAVE10", PERCENT, 1000),
        Coupon.create("FIVEOFF", FIXED, Money(500), min_purchase=Money(2000)),
        Coupon.create("BOOKS20", PERCENT, 2000, categories=["books"]),
        Coupon.create("ONCE", PERCENT, 1000, per_customer_limit=1),
        Coupon.create("SINGLE", FIXED, Money(200), usage_limit=1),
        Coupon.create("FUTURE", PERCENT, 1000, valid_from=1000.0),
        Coupon.create("OLD", PERCENT, 1000, valid_until=10.0),
        Coupon.create("STACK-A", PERCENT, 500, stackable=True),
        Coupon.create("STACK-B", FIXED, Money(100), stackable=True),
    ]


def make_card(number: str = TEST_CARD_NUMBER, country: str = "US", year: int = 2030) -> Card:
    return Card(number, 12, year, "Ann Buyer", country)


def seed(uow: UnitOfWork, hasher: PasswordHasher) -> None:
    """Register the users and put products, stock and coupons in the store."""
    roles = {ANN: Role.CUSTOMER, BOB: Role.CUSTOMER, ADMIN: Role.ADMIN, MERCHANT: Role.MERCHANT}
    for user_id, role in roles.items():
        registered = accounts.register(
            uow, EMAILS[user_id], PASSWORD, 0.0, role=role, hasher=hasher
        )
        assert registered == user_id
    with uow:
        for sku, name, category_id, price in PRODUCTS:
            uow.products.add(
                Product.create(
                    sku=sku,
                    name=name,
                    description=f"A {name.lower()}",
                    category_id=category_id,
                    price=price,
                    now=0.0,
                )
            )
        for sku, qty in INITIAL_STOCK.items():
            uow.stock.add(StockItem(sku, initial=qty))
        for coupon in make_coupons():
            uow.coupons.add(coupon)
        uow.commit()


@pytest.fixture
def policies() -> ShopPolicies:
    return ShopPolicies(hasher=PasswordHasher.fast())


@pytest.fixture
def events() -> list[DomainEvent]:
    """Every event the bus publishes during the test (after the shop was seeded)."""
    return []


@pytest.fixture
def uow(policies: ShopPolicies, events: list[DomainEvent]) -> UnitOfWork:
    """A seeded shop whose bus feeds the ledger, the outbox and ``events``."""
    bus = MessageBus()
    unit = attach_subscribers(new_uow(bus))
    bus.subscribe(DomainEvent, events.append)
    seed(unit, policies.hasher)
    events.clear()
    return unit


@pytest.fixture
def card() -> Card:
    """The valid test card 4242 4242 4242 4242 (visa), billed in the US, expiring 12/2030."""
    return make_card()


@pytest.fixture
def fill_cart(uow: UnitOfWork, policies: ShopPolicies) -> Callable[..., None]:
    """Put SKU -> units in a user's cart (and coupon codes on it)."""

    def fill(
        user_id: str, lines: Mapping[str, int], *, coupons: tuple[str, ...] = (), now: float = 1.0
    ) -> None:
        for sku, qty in lines.items():
            shopping.add_to_cart(uow, user_id, sku, qty, now)
        for code in coupons:
            shopping.apply_coupon(uow, user_id, code, now, policies=policies)

    return fill


@pytest.fixture
def place(
    uow: UnitOfWork, policies: ShopPolicies, fill_cart: Callable[..., None]
) -> Callable[..., str]:
    """Fill a user's cart and check it out; return the order id."""

    def place_(
        user_id: str,
        lines: Mapping[str, int],
        *,
        coupons: tuple[str, ...] = (),
        now: float = 1.0,
    ) -> str:
        fill_cart(user_id, lines, coupons=coupons, now=now)
        return shopping.checkout(uow, user_id, now, policies=policies)

    return place_


@pytest.fixture
def pay(uow: UnitOfWork, policies: ShopPolicies, card: Card) -> Callable[..., str]:
    """Begin a payment with the test card and apply one gateway answer; return the payment id."""

    def pay_(order_id: str, answer: str = "approved", *, key: str = "", now: float = 2.0) -> str:
        start = shopping.begin_payment(
            uow,
            order_id,
            card,
            gateway="card-a",
            idempotency_key=key or f"key-{order_id}",
            now=now,
            policies=policies,
        )
        assert start.action == "call_gateway"
        shopping.record_gateway_answer(uow, start.payment_id, answer, now + 1.0)  # type: ignore[arg-type]
        return start.payment_id

    return pay_
