"""The SQLite store: schema, constraints, transactions, blobs, files, busy retries.

The behaviour it shares with the in-memory store is tested by the whole services suite,
which runs on both (conftest.py); this module tests what only real storage has.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sim.domain import inventory
from sim.domain.errors import AlreadyExists, NotFound, OutOfStock
from sim.domain.events import DomainEvent
from sim.domain.ledger import EntryKind, make_entry
from sim.domain.money import Money
from sim.domain.orders import Order, OrderStatus
from sim.domain.payments import Payment
from sim.domain.users import PasswordHasher
from sim.engine.audit import audit_books
from sim.engine.runner import run
from sim.scenario import load_scenario, parse_scenario
from sim.scenario.errors import ScenarioError
from sim.services import sqlite_store
from sim.services.bus import MessageBus
from sim.services.handlers import fulfilment, shopping
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import (
    APPLICATION,
    SCHEMA_VERSION,
    ConcurrencyError,
    IntegrityViolation,
    SqliteUnitOfWork,
    StorageBusy,
    StoreFileError,
    StoreInUse,
    UnsafeData,
    ensure_free,
    is_store_file,
    open_store,
    replica_path,
)
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers
from tests.services.conftest import ANN, BOB, BOOK, LAMP, MUG, PEN, make_card, seed

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.yaml"
POLICIES = ShopPolicies(hasher=PasswordHasher.fast())
TABLES = {
    "meta",
    "sequences",
    "users",
    "emails",
    "sessions",
    "activity",
    "categories",
    "products",
    "stock",
    "reservations",
    "carts",
    "coupons",
    "orders",
    "histories",
    "payments",
    "idempotency",
    "ledger",
    "notifications",
}


@pytest.fixture
def store() -> str:
    """This module is about SQLite alone: no run per store."""
    return "sqlite"


def open_shop(path: str | Path = ":memory:", **options) -> SqliteUnitOfWork:
    uow = attach_subscribers(SqliteUnitOfWork.connect(path, MessageBus(), **options))
    assert isinstance(uow, SqliteUnitOfWork)
    return uow


@pytest.fixture
def shop():
    uow = open_shop()
    seed(uow, POLICIES.hasher)
    yield uow
    uow.close()


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with contextlib.closing(open_shop(path)) as uow:
        seed(uow, POLICIES.hasher)
    return path


def rows(uow: SqliteUnitOfWork, sql: str, *params) -> list[tuple]:
    return uow.connection.execute(sql, params).fetchall()


def counts(uow: SqliteUnitOfWork) -> dict[str, int]:
    return {t: rows(uow, f"SELECT count(*) FROM {t}")[0][0] for t in sorted(TABLES)}


def buy(uow: UnitOfWork, user: str, lines: dict[str, int], now: float = 1.0) -> str:
    for sku, qty in lines.items():
        shopping.add_to_cart(uow, user, sku, qty, now)
    return shopping.checkout(uow, user, now, policies=POLICIES)


def pay(uow: UnitOfWork, order_id: str, answer: str = "approved", now: float = 2.0) -> str:
    start = shopping.begin_payment(
        uow,
        order_id,
        make_card(),
        gateway="card-a",
        idempotency_key=f"key-{order_id}",
        now=now,
        policies=POLICIES,
    )
    shopping.record_gateway_answer(uow, start.payment_id, answer, now + 1.0)  # type: ignore[arg-type]
    return start.payment_id


# --- the schema -----------------------------------------------------------------------------
def test_the_store_creates_its_schema_and_stamps_its_meta_table(shop):
    tables = {r[0] for r in rows(shop, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == TABLES
    assert dict(rows(shop, "SELECT name, value FROM meta")) == {
        "application": APPLICATION,
        "schema_version": str(SCHEMA_VERSION),
    }
    assert rows(shop, "PRAGMA foreign_keys") == [(1,)]
    assert rows(shop, "SELECT sku, on_hand, reserved, available FROM stock ORDER BY sku") == [
        (BOOK, 10, 0, 10),
        (LAMP, 2, 0, 2),
        (MUG, 5, 0, 5),
        (PEN, 100, 0, 100),
    ]
    assert counts(shop)["users"] == 4
    assert dict(rows(shop, "SELECT name, value FROM sequences")) == {"user": 4}


def test_columns_follow_the_aggregates_and_the_ledger_is_queryable(shop):
    order_id = buy(shop, ANN, {BOOK: 2})
    payment_id = pay(shop, order_id)
    assert rows(
        shop, "SELECT sku, on_hand, reserved, available FROM stock WHERE sku = ?", BOOK
    ) == [(BOOK, 8, 0, 8)]
    assert rows(shop, "SELECT id, payment_id FROM orders") == [(order_id, payment_id)]
    assert rows(shop, "SELECT id, order_id FROM payments") == [(payment_id, order_id)]
    assert rows(shop, "SELECT order_id FROM reservations") == [(order_id,)]
    assert rows(shop, "SELECT pos, kind, order_id, payment_id, amount FROM ledger") == [
        (1, "charge", order_id, payment_id, 3199)
    ]
    assert rows(shop, "SELECT user_id, order_id FROM notifications") == [(ANN, order_id)]
    assert rows(shop, "PRAGMA integrity_check") == [("ok",)]


def test_an_ecommerce_store_keeps_its_data_across_connections(db_file):
    with contextlib.closing(open_shop(db_file)) as uow:
        order_id = buy(uow, ANN, {MUG: 2})
    with contextlib.closing(open_shop(db_file)) as again:
        order = again.orders.get(order_id)
        assert (order.status, order.total) == (OrderStatus.PENDING, Money(2441))
        assert again.stock.get(MUG).available == 3
        assert again.next_id("order") == "order-000002"
        assert audit_books(again).ok


def test_an_id_read_back_interns_to_the_one_drawn(db_file):
    """A copy of an id read back interns to the string the store drew (shared_id)."""
    with contextlib.closing(open_shop(db_file)) as uow:
        order_id = buy(uow, ANN, {MUG: 2})
        read_back = uow.orders.get(order_id).id
        assert read_back == order_id and read_back is not order_id
        assert sys.intern(read_back) is order_id


# --- foreign keys and checks ------------------------------------------------------------
def test_foreign_keys_refuse_a_ledger_entry_for_an_unknown_order(shop):
    before = counts(shop)
    entry = make_entry(1, EntryKind.CHARGE, "order-404", "payment-404", Money(100), 1.0)
    with pytest.raises(IntegrityViolation, match="FOREIGN KEY constraint failed"), shop:
        shop.ledger.append(entry)
        shop.commit()
    assert not shop.active
    assert counts(shop) == before
    assert list(shop.ledger) == []


def test_foreign_keys_refuse_a_payment_for_an_unknown_order(shop):
    payment = Payment.create(
        "payment-9",
        "order-404",
        Money(100),
        make_card(),
        gateway="card-a",
        idempotency_key="k-404",
        now=1.0,
    )
    with pytest.raises(IntegrityViolation, match="FOREIGN KEY"), shop:
        shop.payments.add(payment)
        shop.commit()
    assert "payment-9" not in shop.payments


def test_the_stock_check_constraint_refuses_negative_availability(shop):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        shop.connection.execute(
            "UPDATE stock SET reserved = 11, available = -1 WHERE sku = ?", (BOOK,)
        )
    assert shop.stock.get(BOOK).available == 10


def test_a_corrupt_stock_item_is_refused_by_the_check(shop):
    broken = inventory.StockItem("SKU-BAD", initial=1)
    broken.reserved = -1  # no domain method does this: only the CHECK stands in the way
    with pytest.raises(IntegrityViolation, match="stock item 'SKU-BAD': CHECK constraint failed"):
        shop.stock.add(broken)
    with pytest.raises(IntegrityViolation, match="CHECK constraint failed"), shop:
        shop.stock.get(BOOK).reserved = -1
        shop.commit()
    assert shop.stock.get(BOOK).reserved == 0
    assert "SKU-BAD" not in shop.stock


def test_a_stock_item_can_be_removed(shop):
    with shop:
        shop.stock.remove(LAMP)
        assert LAMP not in shop.stock
        shop.commit()
    assert [item.sku for item in shop.stock.values()] == [BOOK, MUG, PEN]


def test_errors_other_than_busy_are_not_retried(shop):
    shop.connection.execute("DROP TABLE histories")
    with pytest.raises(sqlite3.OperationalError, match="no such table: histories"):
        len(shop.histories)
    assert shop.busy_retries == 0


def test_adding_a_taken_key_raises_already_exists_inside_and_outside_a_transaction(shop):
    item = shop.stock.get(BOOK)
    with pytest.raises(AlreadyExists, match="stock item 'SKU-BOOK' already exists"):
        shop.stock.add(item)
    with pytest.raises(AlreadyExists), shop:
        shop.stock.add(item)
    assert len(shop.stock) == 4


# --- the conditional stock update ---------------------------------------------------------
def test_the_conditional_update_refuses_an_oversell_from_a_stale_read(shop):
    published: list[DomainEvent] = []
    shop.bus.subscribe(DomainEvent, published.append)
    with pytest.raises(OutOfStock, match="SKU-LAMP: 2 requested, 1 available"), shop:
        (lamp,) = shop.stock.lock_many([LAMP])
        inventory.reserve([lamp], {LAMP: 2}, "reservation-x", "order-x", 1.0, 900.0)
        assert lamp.available == 0
        # Another writer takes one lamp under the aggregate read above (a stale read: the
        # store's own transactions cannot interleave, so a raw statement plays the writer).
        shop.connection.execute(
            "UPDATE stock SET reserved = 1, available = 1 WHERE sku = ?", (LAMP,)
        )
        shop.commit()
    assert not shop.active
    assert published == []  # the refused commit announces nothing
    assert rows(shop, "SELECT on_hand, reserved, available FROM stock WHERE sku = ?", LAMP) == [
        (2, 0, 2)
    ]


def test_a_stale_write_that_sells_nothing_is_a_concurrency_error(shop):
    with (
        pytest.raises(
            ConcurrencyError,
            match="read on hand 10, reserved 0; the row now has on hand 9, reserved 0",
        ),
        shop,
    ):
        book = shop.stock.get(BOOK)
        book.restock(5, inventory.SUPPLIER, 1.0)
        shop.connection.execute(
            "UPDATE stock SET on_hand = 9, available = 9 WHERE sku = ?", (BOOK,)
        )
        shop.commit()
    assert shop.stock.get(BOOK).on_hand == 10


def test_another_connection_that_took_the_stock_makes_a_checkout_fail(db_file):
    with (
        contextlib.closing(open_shop(db_file)) as first,
        contextlib.closing(open_shop(db_file)) as second,
    ):
        shopping.add_to_cart(second, BOB, LAMP, 2, 1.0)
        buy(first, ANN, {LAMP: 2})
        with pytest.raises(OutOfStock, match="SKU-LAMP: 2 requested, 0 available"):
            shopping.checkout(second, BOB, 2.0, policies=POLICIES)
        assert second.stock.get(LAMP).reserved == 2
        assert audit_books(second).ok


def test_a_second_connection_waits_for_the_lock_of_an_open_transaction(db_file):
    locked = threading.Event()

    def hold_the_lock() -> None:  # a connection serves one thread: this one has its own
        with contextlib.closing(open_shop(db_file)) as holder, holder:
            holder.stock.get(PEN).restock(1, inventory.SUPPLIER, 1.0)
            locked.set()
            time.sleep(0.2)
            holder.commit()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(5)
    with contextlib.closing(
        open_shop(db_file, busy_timeout=0.01, backoff=0.02, retries=20)
    ) as waiter:
        with waiter:  # waits until the holder commits, then sees its change
            assert waiter.stock.get(PEN).on_hand == 101
            waiter.commit()
        assert waiter.busy_retries > 0
    holder.join(5)


def test_busy_retries_are_bounded(db_file):
    with (
        contextlib.closing(open_shop(db_file)) as holder,
        contextlib.closing(
            open_shop(db_file, busy_timeout=0.01, retries=3, backoff=0.01)
        ) as waiter,
    ):
        with holder:
            started = time.monotonic()
            with (
                pytest.raises(StorageBusy, match="database is locked; gave up after 4 attempts"),
                waiter,
            ):
                pass  # pragma: no cover - never entered
            assert time.monotonic() - started < 2.0
            assert waiter.busy_retries == 3
            assert not waiter.active
            with pytest.raises(StorageBusy):
                waiter.next_id("order")  # a statement outside a transaction is bounded too
        with waiter:  # the lock is free again
            waiter.commit()


# --- transactions -------------------------------------------------------------------------
def test_rollback_leaves_nothing_behind(shop):
    order_id = buy(shop, ANN, {BOOK: 1})
    before = counts(shop)
    with pytest.raises(RuntimeError, match="half-way"), shop:
        shop.orders.get(order_id).cancel(5.0, "test")
        shop.stock.get(PEN).restock(3, inventory.SUPPLIER, 5.0)
        shop.coupons.get("SAVE10").hold("order-zz", ANN, 5.0)
        shop.users.remove(BOB)
        shop.carts.add(shopping.Cart.create(BOB, 5.0))
        shop.notifications.append("a note")
        assert shop.next_id("order") == "order-000002"
        raise RuntimeError("half-way")
    assert counts(shop) == before
    assert shop.orders.get(order_id).status is OrderStatus.PENDING
    assert shop.stock.get(PEN).on_hand == 100
    assert shop.coupons.get("SAVE10").held == {}
    assert BOB in shop.users
    assert shop.next_id("order") == "order-000003"  # a rolled-back id stays drawn


def test_the_identity_map_lives_for_one_transaction(shop):
    with shop:
        book = shop.stock.get(BOOK)
        assert shop.stock.get(BOOK) is book
        assert shop.stock.find_readonly(BOOK) is book
        assert shop.stock.lock_many([BOOK]) == [book]
        assert next(iter(shop.stock.values())) is book
        shop.commit()
    outside = shop.stock.get(BOOK)
    assert outside is not shop.stock.get(BOOK)  # outside a transaction: fresh copies
    outside.restock(5, inventory.SUPPLIER, 1.0)  # changing one writes nothing
    assert shop.stock.get(BOOK).on_hand == 10
    with pytest.raises(NotFound, match="stock item 'SKU-NONE' not found"):
        shop.stock.get("SKU-NONE")
    assert shop.stock.find_readonly("SKU-NONE") is None


def test_unchanged_aggregates_are_not_written_back(shop):
    statements: list[str] = []
    shop.connection.set_trace_callback(statements.append)
    with shop:
        shop.stock.get(BOOK)
        shop.orders.find("order-404")
        shop.commit()
    shop.connection.set_trace_callback(None)
    assert not [s for s in statements if s.startswith(("UPDATE", "INSERT", "DELETE"))]
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"


def test_removed_and_re_added_in_one_transaction(shop):
    with shop:
        coupon = shop.coupons.get("SINGLE")
        shop.coupons.remove("SINGLE")
        assert "SINGLE" not in shop.coupons
        assert shop.coupons.find("SINGLE") is None
        shop.coupons.add(coupon)
        assert "SINGLE" in shop.coupons
        shop.commit()
    assert shop.coupons.get("SINGLE").code == "SINGLE"
    assert [c.code for c in shop.coupons.values()][-1] == "SINGLE"  # insertion order


def test_a_failed_commit_rolls_back_and_publishes_nothing(shop, monkeypatch):
    published: list[DomainEvent] = []
    shop.bus.subscribe(DomainEvent, published.append)

    def refuse() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(shop._db, "commit", refuse)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        shopping.add_to_cart(shop, ANN, PEN, 1, 1.0)
    monkeypatch.undo()
    assert published == []
    assert ANN not in shop.carts
    assert not shop.connection.in_transaction


def test_ids_are_unique_across_connections_to_one_file(db_file):
    with (
        contextlib.closing(open_shop(db_file)) as a,
        contextlib.closing(open_shop(db_file)) as b,
    ):
        drawn = [a.next_id("order"), b.next_id("order"), a.next_id("order")]
        with b:
            drawn.append(b.next_id("order"))  # rolled back: the id stays drawn
        drawn.append(a.next_id("order"))
    assert drawn == [f"order-{n:06d}" for n in range(1, 6)]


def test_a_rolled_back_id_is_recorded_before_the_lock_is_released(db_file):
    with (
        contextlib.closing(open_shop(db_file)) as a,
        contextlib.closing(open_shop(db_file)) as b,
    ):
        seen = []
        release = a._db.rollback

        def release_then_another_connection_draws():
            release()
            seen.append(b.next_id("order"))  # the first moment b can get the write lock

        a._db.rollback = release_then_another_connection_draws
        with a:
            seen.append(a.next_id("order"))
        seen.append(a.next_id("order"))
    assert seen == ["order-000001", "order-000002", "order-000003"]


def test_close_rolls_back_an_open_transaction(db_file):
    uow = open_shop(db_file)
    uow.__enter__()
    uow.stock.get(PEN).restock(1, inventory.SUPPLIER, 1.0)
    uow.stock.add(inventory.StockItem("SKU-NEW", initial=1))
    uow.close()
    with contextlib.closing(open_shop(db_file)) as again:
        assert again.stock.get(PEN).on_hand == 100
        assert "SKU-NEW" not in again.stock


# --- the restricted unpickler ------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))

    def __init__(self, target: Path) -> None:
        self.target = target


class GetAttr:
    def __reduce__(self):
        return (getattr, (Money, "zero"))


@pytest.mark.parametrize("page", [1, 2, 500])
def test_a_pass_covers_the_rows_at_the_call_a_page_at_a_time_each_loaded_when_reached(
    shop, monkeypatch, page
):
    monkeypatch.setattr(sqlite_store, "PAGE_ROWS", page)
    first, second = buy(shop, ANN, {PEN: 1}), buy(shop, BOB, {MUG: 1})
    pay(shop, second)  # one ledger entry before the passes begin
    db = shop.orders._db
    loaded: list[str] = []
    statements: list[str] = []
    real_loads, real_execute = db.loads, db.execute

    def counting(data: bytes, what: str):
        loaded.append(what)
        return real_loads(data, what)

    def executing(sql: str, params: tuple = ()):
        statements.append(sql)
        return real_execute(sql, params)

    db.loads, db.execute = counting, executing
    try:
        orders = shop.orders.values()
        entries = iter(shop.ledger)
        assert loaded == []  # nothing loaded yet: a long run's pass holds one at a time
        assert next(orders).id == first
        assert loaded == [f"order {first!r}"]
        third = buy(shop, ANN, {BOOK: 1})  # added after the call: not in this pass
        # Cancelled (and refunded) after the call, before the pass reaches it: the pass sees
        # the row as it was when its page was read (with the first order's, unless a page
        # is a single row).
        fulfilment.cancel_order(shop, BOB, second, 3.0, "changed my mind")
        seen = OrderStatus.CANCELLED if page == 1 else OrderStatus.PROCESSING
        assert [(o.id, o.status) for o in orders] == [(second, seen)]
        assert [o.id for o in shop.orders.values()] == [first, second, third]
        # The refund was appended after the ledger pass began: only the charge is in it.
        assert [e.kind for e in entries] == [EntryKind.CHARGE]
        assert [e.kind for e in shop.ledger] == [EntryKind.CHARGE, EntryKind.REFUND]
    finally:
        db.loads, db.execute = real_loads, real_execute
    pages = [sql for sql in statements if "LIMIT" in sql and "FROM orders" in sql]
    # The first pass read its two rows in pages of ``page`` rows, the second its three.
    assert len(pages) == -(-2 // page) + -(-3 // page)


def test_a_pass_skips_the_rows_removed_before_their_page_is_read(shop, monkeypatch):
    monkeypatch.setattr(sqlite_store, "PAGE_ROWS", 1)
    for user in (ANN, BOB):
        shopping.add_to_cart(shop, user, PEN, 1, 1.0)
    carts = shop.carts.values()
    assert next(carts).user_id == ANN
    with shop:
        shop.carts.remove(BOB)
        shop.commit()
    assert list(carts) == []  # the last page is empty: the pass ends there
    assert [c.user_id for c in shop.carts.values()] == [ANN]


def test_the_audit_holds_one_order_of_a_file_store_at_a_time(shop):
    placed = [buy(shop, user, {PEN: 1}) for user in (ANN, BOB, ANN, BOB, ANN)]
    for order_id in placed[::2]:
        pay(shop, order_id)
    db = shop.orders._db
    alive: list[int] = []
    real = db.loads

    def orders_in_memory() -> int:
        return sum(type(o) is Order for o in gc.get_objects())

    def counting(data: bytes, what: str):
        if what.startswith("order "):  # the orders in memory as the next one is loaded
            alive.append(orders_in_memory() - before)
        return real(data, what)

    gc.collect()  # orders left by earlier tests in this process count in neither direction
    before = orders_in_memory()
    db.loads = counting
    gc.disable()
    try:
        books = audit_books(shop)
    finally:
        gc.enable()
        db.loads = real
    assert books.ok and books.checked["orders"] == 5
    # Each order is loaded once, and only the one just checked is still held: the audit keeps
    # a few facts per order, not the orders (holding them, it would reach four).
    assert alive == [0, 1, 1, 1, 1]


def test_the_restricted_unpickler_refuses_a_hostile_blob(shop, tmp_path):
    order_id = buy(shop, ANN, {PEN: 1})
    target = tmp_path / "pwned"
    hostile = pickle.dumps(Evil(target))
    shop.connection.execute("UPDATE orders SET data = ? WHERE id = ?", (hostile, order_id))
    with pytest.raises(
        UnsafeData, match=r"order 'order-000001': refused to load global (posix|os)\.system"
    ):
        shop.orders.find_readonly(order_id)
    with pytest.raises(UnsafeData, match="refused"):
        list(shop.orders.values())
    with pytest.raises(UnsafeData), shop:
        shop.orders.get(order_id)
    assert not target.exists()


@pytest.mark.parametrize(
    ("blob", "named"),
    [
        (pickle.dumps(GetAttr()), "builtins.getattr"),
        (b"\x80\x05csim.domain.inventory\nreserve\n)R.", "sim.domain.inventory.reserve"),
        (b"\x80\x05csim.domain.money\nDecimal\n)R.", "sim.domain.money.Decimal"),
        (b"\x80\x05csim.services.sqlite_store\nSqliteUnitOfWork\n)R.", "sim.services.sqlite"),
    ],
)
def test_only_domain_classes_are_loaded(shop, blob, named):
    shop.connection.execute("UPDATE users SET data = ? WHERE id = ?", (blob, ANN))
    with pytest.raises(UnsafeData, match=f"refused to load global {named}"):
        shop.users.find_readonly(ANN)


def test_a_truncated_blob_is_unreadable_not_a_crash(shop):
    shop.connection.execute("UPDATE users SET data = ? WHERE id = ?", (b"\x80\x05\x95", ANN))
    with pytest.raises(UnsafeData, match="user 'user-000001': unreadable blob"):
        shop.users.get(ANN)


# --- files ------------------------------------------------------------------------------
def test_a_file_store_runs_in_wal_mode_with_normal_sync(db_file):
    with contextlib.closing(open_shop(db_file)) as uow:
        assert rows(uow, "PRAGMA journal_mode") == [("wal",)]
        assert rows(uow, "PRAGMA synchronous") == [(1,)]  # NORMAL
    with contextlib.closing(open_shop()) as memory:
        assert rows(memory, "PRAGMA journal_mode") == [("memory",)]


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("my precious notes\n" * 100)
    with pytest.raises(StoreFileError, match=r"notes\.txt: not an ecommerce-sim store"):
        SqliteUnitOfWork.connect(text)
    assert text.read_text().startswith("my precious notes")
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    before = other.read_bytes()
    with pytest.raises(StoreFileError, match="a SQLite database, but not an ecommerce-sim store"):
        SqliteUnitOfWork.connect(other)
    assert other.read_bytes() == before  # refused as found: not even its journal mode changed
    with contextlib.closing(sqlite3.connect(other)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
    with pytest.raises(StoreFileError, match="cannot open"):
        SqliteUnitOfWork.connect(tmp_path / "no-such-dir" / "x.db")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("schema_version", "1", "store of schema version 1, this code reads version 2"),
        ("application", "other-app", "its meta table says application 'other-app'"),
    ],
)
def test_a_store_of_another_version_or_application_is_refused(db_file, name, value, message):
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))
        conn.commit()
    with pytest.raises(StoreFileError, match=message):
        SqliteUnitOfWork.connect(db_file)


def test_open_store_builds_the_store_a_scenario_asks_for(tmp_path):
    assert type(open_store()) is UnitOfWork
    memory = open_store("sqlite")
    assert isinstance(memory, SqliteUnitOfWork) and memory.path == ":memory:"
    memory.close()
    path = tmp_path / "run.db"
    first = open_store("sqlite", path)
    seed(first, POLICIES.hasher)
    first.close()
    assert is_store_file(path)
    again = open_store("sqlite", str(path))  # a store of an earlier run is replaced
    assert isinstance(again, SqliteUnitOfWork) and len(again.users) == 0
    again.close()
    third = open_store("sqlite", path, replication=3)
    assert isinstance(third, SqliteUnitOfWork)
    assert Path(third.path) == tmp_path / "run-rep3.db"
    third.close()
    with pytest.raises(ValueError, match="unknown storage kind 'redis'"):
        open_store("redis")


def test_open_store_refuses_to_overwrite_a_file_that_is_not_a_store(tmp_path):
    precious = tmp_path / "thesis.db"
    precious.write_bytes(b"chapter one")
    with pytest.raises(StoreFileError, match="not an ecommerce-sim store; refusing to overwrite"):
        open_store("sqlite", precious)
    assert precious.read_bytes() == b"chapter one"
    with pytest.raises(StoreFileError, match="not a file"):
        open_store("sqlite", tmp_path)
    empty = tmp_path / "__init__.py"  # empty, and somebody's
    empty.touch()
    (tmp_path / "__init__.py-journal").write_text("notes\n", encoding="utf-8")
    with pytest.raises(StoreFileError, match="not an ecommerce-sim store; refusing to overwrite"):
        open_store("sqlite", empty)
    assert empty.is_file() and (tmp_path / "__init__.py-journal").read_text() == "notes\n"
    assert not is_store_file(empty)
    assert not is_store_file(tmp_path / "missing.db") and not is_store_file(precious)


def test_a_run_holds_its_store_file_until_it_closes(tmp_path):
    """A second run on the same file is refused: replacing it would delete the first's shop."""
    path = tmp_path / "shop.db"
    first = open_store("sqlite", path)
    seed(first, POLICIES.hasher)
    users = len(first.users)
    in_use = f"{path}: another run is using this store \\(process {os.getpid()}\\); wait"
    with pytest.raises(StoreInUse, match=in_use):
        open_store("sqlite", path)
    with pytest.raises(StoreInUse, match=in_use):
        ensure_free(path)
    assert len(first.users) == users > 0  # the first run's shop is untouched
    other = open_store("sqlite", path, replication=1)  # another replication, another file
    other.close()
    first.close()
    ensure_free(path)
    again = open_store("sqlite", path)  # closed: the file is free, and replaced
    assert len(again.users) == 0
    again.close()
    again.close()  # closing twice releases nothing twice
    ensure_free(path)


def test_a_refused_claim_leaves_nothing_behind(tmp_path):
    missing = tmp_path / "shop.db"
    ensure_free(missing)  # no lock file: nothing is created to answer
    assert list(tmp_path.iterdir()) == []
    precious = tmp_path / "thesis.db"
    precious.write_bytes(b"chapter one")
    with pytest.raises(StoreFileError, match="refusing to overwrite"):
        open_store("sqlite", precious)
    ensure_free(precious)  # the refused run let its claim go
    with pytest.raises(StoreFileError, match="cannot create its lock file"):
        open_store("sqlite", tmp_path / "no-folder" / "shop.db")


def test_a_run_lock_never_writes_to_a_file_that_is_not_its_own(tmp_path):
    precious = tmp_path / "thesis.txt"
    precious.write_text("chapter one\n", encoding="utf-8")
    (tmp_path / "shop.db.lock").symlink_to(precious)
    with pytest.raises(StoreFileError, match="cannot create its lock file"):
        open_store("sqlite", tmp_path / "shop.db")
    notes = tmp_path / "other.db.lock"  # somebody's file under a lock file's name
    notes.write_text("notes\n", encoding="utf-8")
    uow = open_store("sqlite", tmp_path / "other.db")
    uow.close()
    assert precious.read_text(encoding="utf-8") == "chapter one\n"
    assert notes.read_text(encoding="utf-8") == "notes\n"
    numbers = tmp_path / "third.db.lock"  # digits, but longer than any pid
    numbers.write_text("1234567890" * 4, encoding="utf-8")
    open_store("sqlite", tmp_path / "third.db").close()
    assert numbers.read_text(encoding="utf-8") == "1234567890" * 4


def test_a_file_system_without_locks_leaves_runs_unguarded(tmp_path, monkeypatch):
    def refused(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(sqlite_store.fcntl, "flock", refused)
    first = open_store("sqlite", tmp_path / "shop.db")
    second = open_store("sqlite", tmp_path / "shop.db")  # not refused: nothing can tell
    first.close()
    second.close()


def test_a_run_lock_ends_with_the_process_that_held_it(tmp_path):
    """The lock is the system's: a run killed mid-way leaves no claim to clear by hand."""
    path = tmp_path / "shop.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sim.services.sqlite_store import open_store; "
            f"uow = open_store('sqlite', {str(path)!r}); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreInUse, match=f"\\(process {holder.pid}\\)"):
            open_store("sqlite", path)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    uow = open_store("sqlite", path)  # killed, not closed: the claim went with the process
    uow.close()


def test_every_referencing_column_is_indexed_in_new_and_older_stores(tmp_path):
    """An unindexed foreign key makes SQLite scan the referencing table on every check."""
    indexed = {
        ("reservations", "order_id"),
        ("orders", "payment_id"),
        ("payments", "order_id"),
        ("ledger", "order_id"),
        ("ledger", "payment_id"),
    }

    def indexes(path: Path) -> set[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            names = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            found = set()
            for name, table in names.fetchall():
                for row in conn.execute(f"PRAGMA index_info({name})"):
                    found.add((table, row[2]))
            return found

    def references(path: Path) -> set[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            return {
                (table, row[3])
                for table in tables
                for row in conn.execute(f"PRAGMA foreign_key_list({table})")
            }

    path = tmp_path / "shop.db"
    SqliteUnitOfWork.connect(path).close()
    assert references(path) == indexed  # every foreign key of the schema...
    assert indexed <= indexes(path)  # ...has its index
    with contextlib.closing(sqlite3.connect(path)) as conn:  # a store made before the indexes
        for name in ("reservations_order", "orders_payment", "payments_order", "ledger_order"):
            conn.execute(f"DROP INDEX {name}")
        conn.execute("DROP INDEX ledger_payment")
        conn.commit()
    assert not indexed & indexes(path)
    SqliteUnitOfWork.connect(path).close()  # opening it adds them; tables and blobs unchanged
    assert indexed <= indexes(path)


def test_replica_paths():
    assert replica_path("out/shop.db", 0) == Path("out/shop.db")
    assert replica_path("out/shop.db", 3) == Path("out/shop-rep3.db")
    assert replica_path("shop", 2) == Path("shop-rep2")


# --- the scenario option ----------------------------------------------------------------
def minimal(**extra):
    return {"name": "tiny", "horizon": "1h", "arrivals": {"rate": "2/s"}, **extra}


@pytest.mark.parametrize(
    ("storage", "kind", "path", "dumped"),
    [
        (None, "memory", None, "memory"),
        ("memory", "memory", None, "memory"),
        ("sqlite", "sqlite", None, "sqlite"),
        ({"kind": "sqlite"}, "sqlite", None, "sqlite"),
        ({"kind": "sqlite", "path": "runs/shop.db"}, "sqlite", "runs/shop.db", None),
    ],
)
def test_the_storage_option(storage, kind, path, dumped):
    scenario = parse_scenario(minimal() if storage is None else minimal(storage=storage))
    assert (scenario.storage.kind, scenario.storage.path) == (kind, path)
    data = scenario.to_data()
    assert data["storage"] == (dumped if dumped is not None else storage)
    assert parse_scenario(data) == scenario


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("postgres", "storage: must be one of memory, sqlite, got 'postgres'"),
        ({"kind": "sqlite", "file": "x.db"}, "storage.file: unknown key (allowed: kind, path)"),
        ({"kind": "memory", "path": "x.db"}, "storage.path: a path needs kind: sqlite"),
        ({"kind": "sqlite", "path": ""}, "storage.path:"),
        (7, "storage: expected a mapping"),
    ],
)
def test_a_bad_storage_option_names_its_key(storage, message):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(minimal(storage=storage))
    assert message in str(caught.value)


def test_a_run_on_sqlite_gives_exactly_the_results_of_a_run_in_memory():
    memory = run(load_scenario(SMOKE))
    sqlite = run(load_scenario(SMOKE, ["storage=sqlite"]))
    assert sqlite.scenario.storage.kind == "sqlite"
    assert sqlite.kpis == memory.kpis
    assert sorted(sqlite.frames) == sorted(memory.frames)
    for name, frame in memory.frames.items():
        assert sqlite.frames[name].equals(frame), name
    assert sqlite.audit == memory.audit
    assert memory.audit.ok and memory.kpis["orders_paid"] > 0


def test_a_run_on_a_file_leaves_its_shop_to_inspect(tmp_path):
    path = tmp_path / "smoke.db"
    overrides = ["horizon=90s", "warmup=0s", "storage.kind=sqlite", f"storage.path={path}"]
    result = run(load_scenario(SMOKE, overrides), replication=1)
    written = tmp_path / "smoke-rep1.db"
    assert not path.exists() and written.exists()
    with contextlib.closing(SqliteUnitOfWork.connect(written)) as uow:
        assert len(uow.orders) == len(result.frames["orders"])
        assert [e.seq for e in uow.ledger] == list(result.frames["ledger"]["seq"])
        assert audit_books(uow).ok
