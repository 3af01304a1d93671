"""Several threads, each with its own connection to one file, hammer checkout on a few SKUs.

No oversell (exactly the stock is sold), no lost update (the stock counters agree with the
paid orders, every order a thread placed is in the store), no deadlock (every thread ends
well within its timeout), and the ledger reconciles with the orders.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sim.domain.catalog import Product
from sim.domain.errors import EmptyCart, OutOfStock
from sim.domain.inventory import StockItem
from sim.domain.ledger import EntryKind, balance, reconcile
from sim.domain.money import Money
from sim.domain.payments import FraudRules
from sim.domain.users import PasswordHasher
from sim.engine.audit import audit_books
from sim.services.bus import MessageBus
from sim.services.handlers import accounts, shopping
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import SqliteUnitOfWork
from sim.services.subscribers import attach_subscribers
from tests.services.conftest import make_card

THREADS = 8
STOCK = {"SKU-A": 60, "SKU-B": 50, "SKU-C": 40}
PRICES = {"SKU-A": Money(1000), "SKU-B": Money(2500), "SKU-C": Money(4999)}
POLICIES = ShopPolicies(
    hasher=PasswordHasher.fast(),
    fraud=FraudRules(review_at=100, block_at=100, large_amount=Money(10**12)),
)
TIMEOUT = 30.0


@pytest.fixture
def store() -> str:
    """This module is about SQLite alone: no run per store."""
    return "sqlite"


def connect(path: Path) -> SqliteUnitOfWork:
    uow = attach_subscribers(SqliteUnitOfWork.connect(path, MessageBus()), notifications=False)
    assert isinstance(uow, SqliteUnitOfWork)
    return uow


@pytest.fixture
def shop_file(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "busy.db"
    with contextlib.closing(connect(path)) as uow:
        users = [
            accounts.register(
                uow, f"buyer{i}@example.com", "Corr3ct-horse-battery", 0.0, hasher=POLICIES.hasher
            )
            for i in range(THREADS)
        ]
        with uow:
            for sku, qty in STOCK.items():
                uow.products.add(Product.create(sku, sku, "", "things", PRICES[sku], 0.0))
                uow.stock.add(StockItem(sku, qty))
            uow.commit()
    return path, users


def shopper(
    path: Path,
    user: str,
    seed: int,
    start: threading.Barrier,
    placed: list[str],
    errors: list[BaseException],
) -> None:
    rng = random.Random(seed)
    try:
        with contextlib.closing(connect(path)) as uow:
            start.wait(TIMEOUT)  # every connection open: go together
            now = 1.0
            for attempt in range(400):
                if all(uow.stock.find_readonly(sku).available == 0 for sku in STOCK):
                    return
                now += 1.0
                time.sleep(rng.uniform(0, 0.002))  # think: SQLite's lock is not fair
                skus = rng.sample(sorted(STOCK), rng.choice((1, 1, 2)))
                for sku in skus:
                    with contextlib.suppress(OutOfStock):  # fewer left than wanted: not added
                        shopping.add_to_cart(uow, user, sku, rng.randint(1, 3), now)
                try:
                    order_id = shopping.checkout(uow, user, now, policies=POLICIES)
                except EmptyCart:
                    continue
                except OutOfStock:  # another connection sold them since: trim, try again
                    shopping.fit_cart_to_stock(uow, user, now)
                    continue
                placed.append(order_id)
                payment = shopping.begin_payment(
                    uow,
                    order_id,
                    make_card(),
                    gateway="card-a",
                    idempotency_key=f"{user}-{attempt}",
                    now=now,
                    policies=POLICIES,
                )
                answer = "approved" if rng.random() < 0.8 else "declined"
                shopping.record_gateway_answer(uow, payment.payment_id, answer, now + 0.5)
            raise AssertionError(f"{user}: still shopping after 400 attempts")
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_threads_hammering_checkout_sell_exactly_the_stock(shop_file):
    path, users = shop_file
    placed: list[list[str]] = [[] for _ in users]
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))
    threads = [
        threading.Thread(
            target=shopper, args=(path, user, i, start, placed[i], errors), daemon=True
        )
        for i, user in enumerate(users)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a shopper is stuck: deadlock?"
    assert errors == []
    assert time.monotonic() - started < TIMEOUT

    with contextlib.closing(connect(path)) as uow:
        assert uow.connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        orders = list(uow.orders.values())
        paid = [o for o in orders if o.is_paid]
        # No lost order: every order a thread placed is in the store, and only those.
        assert sorted(o.id for o in orders) == sorted(i for ids in placed for i in ids)
        assert len({o.user_id for o in paid}) >= 2  # several connections really sold
        # No oversell and no lost update: exactly the stock was sold, and the stock
        # counters agree unit for unit with the paid orders.
        sold = Counter()
        for order in paid:
            for line in order.lines:
                sold[line.sku] += line.quantity
        assert dict(sold) == STOCK
        for sku, initial in STOCK.items():
            item = uow.stock.get(sku)
            assert (item.sold, item.on_hand, item.reserved, item.available) == (initial, 0, 0, 0)
        assert all(r.status != "active" for r in uow.reservations.values())
        # The ledger reconciles: money captured = the sum over the paid orders.
        entries = list(uow.ledger)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert [e.kind for e in entries] == [EntryKind.CHARGE] * len(paid)
        assert balance(entries) == sum((o.total for o in paid), Money(0))
        assert reconcile(entries, orders) == []
        assert audit_books(uow).ok
