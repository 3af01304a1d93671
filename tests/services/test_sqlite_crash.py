"""A checkout killed half-way leaves the SQLite store consistent.

Two ways to die: an exception injected between the steps of a use case (the transaction
rolls back, nothing of it stays), and a process killed with SIGKILL while it checks out in
a loop on a file database (on reopen: ``PRAGMA integrity_check`` passes and the books pass
``audit_books``). Every transaction is atomic, and a capture's ledger entry is written in
the capture's own transaction, so a kill between two transactions loses nothing the books
need: on reopen they must be clean as they are. (A notification or an analytics count of
the last order may be lost: those run after the commit, in transactions of their own.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.domain import inventory
from sim.domain.errors import NotFound
from sim.domain.ledger import EntryKind
from sim.domain.money import Money
from sim.domain.orders import CustomerHistory, OrderStatus
from sim.domain.payments import FraudRules, PaymentStatus
from sim.domain.users import PasswordHasher
from sim.engine.audit import audit_books
from sim.services.bus import MessageBus
from sim.services.handlers import shopping
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import SqliteStockRepository, SqliteUnitOfWork
from sim.services.subscribers import attach_subscribers
from tests.services.conftest import ANN, BOOK, LAMP, MUG, PEN, make_card, seed

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ShopPolicies(
    hasher=PasswordHasher.fast(),
    fraud=FraudRules(review_at=100, block_at=100, large_amount=Money(10**12)),
)
TABLES = ("orders", "payments", "reservations", "ledger", "carts", "histories", "idempotency")


@pytest.fixture
def store() -> str:
    """This module is about SQLite alone: no run per store."""
    return "sqlite"


def connect(path: Path) -> SqliteUnitOfWork:
    uow = attach_subscribers(SqliteUnitOfWork.connect(path, MessageBus()))
    assert isinstance(uow, SqliteUnitOfWork)
    return uow


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with contextlib.closing(connect(path)) as uow:
        seed(uow, POLICIES.hasher)
    return path


def snapshot(uow: SqliteUnitOfWork) -> dict[str, list[tuple]]:
    """Every row of the tables a checkout writes, and the stock columns."""
    conn = uow.connection
    rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    rows["stock"] = conn.execute("SELECT * FROM stock ORDER BY sku").fetchall()
    return rows


def check_reopened(path: Path) -> SqliteUnitOfWork:
    """Reopen the file; check SQLite's integrity, the foreign keys and the books."""
    uow = connect(path)
    assert uow.connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert uow.connection.execute("PRAGMA foreign_key_check").fetchall() == []
    return uow


def boom(*args, **kwargs):
    raise RuntimeError("injected failure")


# --- an exception between two steps -------------------------------------------------------
def test_a_checkout_failing_after_the_reservation_leaves_nothing(db_file, monkeypatch):
    with contextlib.closing(connect(db_file)) as uow:
        shopping.add_to_cart(uow, ANN, BOOK, 2, 1.0)
        shopping.add_to_cart(uow, ANN, MUG, 1, 1.0)
        before = snapshot(uow)
        # Stock reserved, order built: the step after that fails.
        monkeypatch.setattr(CustomerHistory, "add_order", boom)
        with pytest.raises(RuntimeError, match="injected failure"):
            shopping.checkout(uow, ANN, 2.0, policies=POLICIES)
        monkeypatch.undo()
        assert snapshot(uow) == before
    with contextlib.closing(check_reopened(db_file)) as again:
        assert snapshot(again) == before
        assert again.carts.get(ANN).lines == {BOOK: 2, MUG: 1}
        assert audit_books(again).ok
        order_id = shopping.checkout(again, ANN, 3.0, policies=POLICIES)
        assert order_id == "order-000002"  # the failed checkout's id stays drawn


def test_a_payment_failing_half_way_leaves_the_order_payable(db_file, monkeypatch):
    with contextlib.closing(connect(db_file)) as uow:
        shopping.add_to_cart(uow, ANN, LAMP, 2, 1.0)
        order_id = shopping.checkout(uow, ANN, 1.0, policies=POLICIES)
        start = shopping.begin_payment(
            uow,
            order_id,
            make_card(),
            gateway="card-a",
            idempotency_key="k1",
            now=2.0,
            policies=POLICIES,
        )
        before = snapshot(uow)
        # Payment captured and order paid in memory; selling the stock fails.
        monkeypatch.setattr(inventory, "commit", boom)
        with pytest.raises(RuntimeError, match="injected failure"):
            shopping.record_gateway_answer(uow, start.payment_id, "approved", 3.0)
        monkeypatch.undo()
        assert snapshot(uow) == before
    with contextlib.closing(check_reopened(db_file)) as again:
        assert again.payments.get(start.payment_id).status is PaymentStatus.PENDING
        assert again.orders.get(order_id).status is OrderStatus.PENDING
        assert list(again.ledger) == []  # the capture was never announced
        assert audit_books(again).ok
        assert shopping.record_gateway_answer(again, start.payment_id, "approved", 4.0) == (
            "captured"
        )
        assert [e.kind for e in again.ledger] == [EntryKind.CHARGE]
        assert again.stock.get(LAMP).sold == 2
        assert audit_books(again).ok


def test_a_commit_failing_between_two_stock_rows_writes_neither(db_file, monkeypatch):
    written: list[str] = []
    original = SqliteStockRepository._write

    def write_one_then_fail(self, key, item, blob):
        if written:
            raise RuntimeError("injected failure")
        original(self, key, item, blob)
        written.append(key)

    with contextlib.closing(connect(db_file)) as uow:
        shopping.add_to_cart(uow, ANN, BOOK, 1, 1.0)
        shopping.add_to_cart(uow, ANN, PEN, 3, 1.0)
        before = snapshot(uow)
        monkeypatch.setattr(SqliteStockRepository, "_write", write_one_then_fail)
        with pytest.raises(RuntimeError, match="injected failure"):
            shopping.checkout(uow, ANN, 2.0, policies=POLICIES)
        monkeypatch.undo()
        assert written == [BOOK]
        assert snapshot(uow) == before
        with pytest.raises(NotFound):
            uow.orders.get("order-000001")
    with contextlib.closing(check_reopened(db_file)) as again:
        assert again.stock.get(BOOK).reserved == 0
        assert audit_books(again).ok


# --- a process killed with SIGKILL --------------------------------------------------------

CHILD = """
import itertools, random, sys
from sim.domain import inventory
from sim.domain.errors import OutOfStock
from sim.domain.money import Money
from sim.domain.payments import Card, FraudRules
from sim.domain.users import PasswordHasher
from sim.services.bus import MessageBus
from sim.services.handlers import shopping
from sim.services.policies import ShopPolicies
from sim.services.sqlite_store import SqliteUnitOfWork
from sim.services.subscribers import attach_subscribers

path, seed = sys.argv[1], int(sys.argv[2])
policies = ShopPolicies(
    hasher=PasswordHasher.fast(),
    fraud=FraudRules(review_at=100, block_at=100, large_amount=Money(10**12)),
)
uow = attach_subscribers(SqliteUnitOfWork.connect(path, MessageBus()))
card = Card("4242424242424242", 12, 2030, "Ann Buyer", "US")
rng = random.Random(seed)
now = seed * 1e6
for i in itertools.count():
    user = ("user-000001", "user-000002")[i % 2]
    sku = rng.choice(("SKU-BOOK", "SKU-LAMP", "SKU-MUG", "SKU-PEN"))
    now += 1.0
    try:
        shopping.add_to_cart(uow, user, sku, rng.randint(1, 3), now)
        order_id = shopping.checkout(uow, user, now, policies=policies)
    except OutOfStock:
        shopping.fit_cart_to_stock(uow, user, now)
        with uow:
            uow.stock.get(sku).restock(10, inventory.SUPPLIER, now)
            uow.commit()
        continue
    start = shopping.begin_payment(
        uow, order_id, card, gateway="card-a", idempotency_key=f"{seed}-{i}", now=now,
        policies=policies,
    )
    answer = rng.choice(("approved", "approved", "approved", "declined", "failed"))
    if shopping.record_gateway_answer(uow, start.payment_id, answer, now) == "failed":
        shopping.abandon_payment(uow, start.payment_id, now)
    print(i, flush=True)
"""


def kill_mid_checkout(path: Path, seed: int, after: int, delay: float) -> None:
    """Run the checkout loop in a child process; SIGKILL it ``delay`` s after ``after`` loops."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(after):
            line = child.stdout.readline()  # type: ignore[union-attr]
            assert line, f"the child died: {child.stderr.read()}"  # type: ignore[union-attr]
        time.sleep(delay)  # a loop takes a few milliseconds: land somewhere inside one
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_process_killed_mid_checkout_leaves_a_consistent_file(db_file):
    paid_before = 0
    for run, after, delay in ((1, 30, 0.0), (2, 45, 0.002)):  # kill, reopen, go on, kill
        kill_mid_checkout(db_file, run, after, delay)
        with contextlib.closing(check_reopened(db_file)) as uow:
            # The ledger is written in the capture's own transaction: nothing to replay.
            books = audit_books(uow)
            assert books.ok, books.violations
            paid = sum(1 for o in uow.orders.values() if o.is_paid)
            assert paid > paid_before  # the child really worked
            paid_before = paid
            for item in uow.stock.values():
                item.check_invariants()
