"""Repositories and a unit of work on SQLite: the same shop, on real storage.

:class:`SqliteUnitOfWork` has the attributes, methods and semantics of the in-memory
:class:`~sim.services.store.UnitOfWork` (it is a subclass and reuses its transaction
bookkeeping), so every handler and the engine's audit run on it unchanged. What differs is
where the aggregates live:

- **Rows.** One table per repository, the aggregate's key as PRIMARY KEY and the aggregate
  pickled in a BLOB (its pending events left out). Blobs are read back by a restricted
  unpickler that admits only classes defined in ``sim.domain`` (and the outbox's
  ``Notification``), so a hostile database file cannot run code (:class:`UnsafeData`).
  Columns exist where a rule needs them: the stock table keeps ``on_hand`` / ``reserved`` /
  ``available`` with ``CHECK (available >= 0)``; orders, payments, reservations and the
  ledger refer to each other by FOREIGN KEY (checked at commit: ``DEFERRABLE INITIALLY
  DEFERRED``).
- **Transactions.** ``with uow:`` runs ``BEGIN IMMEDIATE``: the block holds the database's
  one write lock from its first statement, so transactions on several connections are
  serialised and none reads a row another is about to change (no lost update, and no
  deadlock: there is one lock, taken first). Aggregates read in the block are cached (an
  identity map: ``get`` twice gives the same object) and written back at commit if their
  blob changed; ``add`` / ``remove`` / ``append`` are written at once. Commit and rollback
  are SQL's. As in memory, the bus's in-transaction handlers (the ledger) run inside the
  transaction, before the COMMIT, and the other handlers get the events after it.
- **Stock.** Every stock row is written by a conditional update, ``UPDATE stock ... WHERE
  sku = ? AND on_hand = ? AND reserved = ? AND available >= ?``: a change computed from a
  stale row, or one that would sell more than is available, updates nothing, and the
  commit fails with :class:`~sim.domain.errors.OutOfStock` (or :class:`ConcurrencyError`)
  and rolls back. Overselling is impossible however many connections write.
- **Busy.** A connection waits ``busy_timeout`` seconds for the lock (SQLite's busy
  handler), then retries with a doubling back-off, ``retries`` times; after that
  :class:`StorageBusy` says how long it tried.
- **Ids.** ``next_id`` draws from a ``sequences`` table, so ids are unique across every
  connection to one file. Like a database sequence (and the in-memory store) a drawn id is
  never handed out again, even if its transaction rolls back.
- **Files.** A file database runs in WAL mode (readers never block the writer) with
  ``synchronous=NORMAL``. The store creates its schema and stamps a ``meta`` table; a file
  that is not an ecommerce-sim store, or one of another schema version, is refused
  (:class:`StoreFileError`). Close a store with :meth:`SqliteUnitOfWork.close`
  (``contextlib.closing`` works: ``with uow:`` is a transaction, not the connection).

:func:`open_store` builds the store a scenario asks for (``storage: memory | sqlite``); a run
holds its file's :class:`RunLock`, so a second run on the same file is refused
(:class:`StoreInUse`) instead of deleting the shop of the first.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - no advisory file locks (Windows): runs are not guarded
    fcntl = None  # type: ignore[assignment]

from sim.domain.errors import AlreadyExists, NotFound, OutOfStock
from sim.domain.money import Money
from sim.services.bus import MessageBus
from sim.services.store import AppendLog, Repository, UnitOfWork, format_id

T = TypeVar("T")
R = TypeVar("R")

APPLICATION = "ecommerce-sim"
"""What the ``meta`` table of a store says it is."""

SCHEMA_VERSION = 2
"""The layout of the tables and blobs this module reads and writes; another version is refused.

Version 2: an activity log keeps its recent entries packed (times, kinds, refs) under a ``keep``
bound (version 1 pickled a bounded deque of tuples).
"""

MEMORY = ":memory:"
"""The path of a private in-memory SQLite database (gone when the connection closes)."""

DEFAULT_BUSY_TIMEOUT = 5.0
"""Seconds SQLite's busy handler waits for the write lock before a retry is considered."""

DEFAULT_RETRIES = 5
"""Retries after a busy timeout before :class:`StorageBusy` is raised."""

DEFAULT_BACKOFF = 0.05
"""Seconds before the first retry; each further retry waits twice as long (at most 1 s)."""

MAX_BACKOFF = 1.0
"""The longest wait between two retries."""

PAGE_ROWS = 500
"""Rows a pass over a table reads per statement (it holds one page of blobs at a time)."""

PICKLE_PROTOCOL = 5
"""The pickle protocol of the aggregate blobs."""

# --- errors ---------------------------------------------------------------------------------


class StorageError(Exception):
    """A failure of the storage itself, not a refusal by a domain rule."""


class StoreFileError(StorageError):
    """The file cannot be opened as a store: not SQLite, not ours, or another schema version."""


class StoreInUse(StoreFileError):
    """Another run is using the store file (it holds the file's :class:`RunLock`)."""


class StorageBusy(StorageError):
    """The database stayed locked by another connection beyond the retry bound."""


class ConcurrencyError(StorageError):
    """A row changed under the transaction that read it (a stale aggregate); nothing written."""


class IntegrityViolation(StorageError):
    """A constraint of the schema (a foreign key, a CHECK) refused the transaction."""


class UnsafeData(StorageError):
    """A stored blob names a class the store does not load, or cannot be read at all."""


# --- the schema -----------------------------------------------------------------------------

_DEFERRED = "DEFERRABLE INITIALLY DEFERRED"

_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sequences ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL CHECK (value >= 0))",
    'CREATE TABLE IF NOT EXISTS users ("id" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS emails ("email" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS sessions ("token" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS activity ("user_id" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS categories ("id" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS products ("sku" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS stock ("sku" TEXT PRIMARY KEY, data BLOB NOT NULL,'
    " on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, available INTEGER NOT NULL,"
    " CHECK (reserved >= 0 AND available >= 0 AND available = on_hand - reserved))",
    'CREATE TABLE IF NOT EXISTS reservations ("id" TEXT PRIMARY KEY, data BLOB NOT NULL,'
    f" order_id TEXT REFERENCES orders (id) {_DEFERRED})",
    'CREATE TABLE IF NOT EXISTS carts ("user_id" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS coupons ("code" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS orders ("id" TEXT PRIMARY KEY, data BLOB NOT NULL,'
    f" payment_id TEXT REFERENCES payments (id) {_DEFERRED})",
    'CREATE TABLE IF NOT EXISTS histories ("user_id" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS payments ("id" TEXT PRIMARY KEY, data BLOB NOT NULL,'
    f" order_id TEXT REFERENCES orders (id) {_DEFERRED})",
    'CREATE TABLE IF NOT EXISTS idempotency ("key" TEXT PRIMARY KEY, data BLOB NOT NULL)',
    "CREATE TABLE IF NOT EXISTS ledger (pos INTEGER PRIMARY KEY, data BLOB NOT NULL,"
    f" kind TEXT, order_id TEXT REFERENCES orders (id) {_DEFERRED},"
    f" payment_id TEXT REFERENCES payments (id) {_DEFERRED}, amount INTEGER)",
    "CREATE TABLE IF NOT EXISTS notifications (pos INTEGER PRIMARY KEY, data BLOB NOT NULL,"
    " user_id TEXT, order_id TEXT)",
    # An index on every referencing column: without one, SQLite checks a foreign key by
    # scanning the referencing table (its documentation advises these indexes), and an insert
    # cost more as the shop grew: 100 us in the file-store baseline's second hour, 500 us in
    # its eighth; 10 us with them.
    "CREATE INDEX IF NOT EXISTS reservations_order ON reservations (order_id)",
    "CREATE INDEX IF NOT EXISTS orders_payment ON orders (payment_id)",
    "CREATE INDEX IF NOT EXISTS payments_order ON payments (order_id)",
    "CREATE INDEX IF NOT EXISTS ledger_order ON ledger (order_id)",
    "CREATE INDEX IF NOT EXISTS ledger_payment ON ledger (payment_id)",
)
"""Every table and index of a store (the same tables in schema versions 1 and 2; the indexes
change no table or blob, so opening an older store adds them)."""

_COLUMNS: dict[str, tuple[str, ...]] = {
    "stock": ("on_hand", "reserved", "available"),
    "reservations": ("order_id",),
    "orders": ("payment_id",),
    "payments": ("order_id",),
    "ledger": ("kind", "order_id", "payment_id", "amount"),
    "notifications": ("user_id", "order_id"),
}
"""The columns besides key and blob, each filled from the attribute of the same name."""


def _sql_value(value: Any) -> Any:
    """Return an attribute as a column value: Money as minor units, an Enum as its value."""
    if isinstance(value, Money):
        return value.minor
    if isinstance(value, Enum):
        return value.value
    return value


def _extractor(columns: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Return a function giving an aggregate's column values (None for a missing attribute)."""
    return lambda item: tuple(_sql_value(getattr(item, column, None)) for column in columns)


# --- the blobs ------------------------------------------------------------------------------

_DOMAIN_MODULE = re.compile(r"sim\.domain(\.[a-z_][a-z0-9_]*)?")
_ADMITTED: dict[tuple[str, str], type] = {}
"""Globals a blob may name, resolved (domain classes are added on first use)."""
_SERVICE_VALUES = frozenset({("sim.services.subscribers", "Notification")})
"""Value classes of the service layer kept in the store (the notification outbox)."""


class _DomainUnpickler(pickle.Unpickler):
    """An unpickler that resolves only domain classes and a few safe containers.

    The pattern of the Python documentation ("Restricting Globals"): every global a pickle
    names goes through :meth:`find_class`, so refusing all but data classes leaves a hostile
    blob no function to call. Admitted: classes defined in ``sim.domain``, the outbox's
    ``Notification`` and the ``trusted`` classes of the store.
    """

    def __init__(self, data: bytes, trusted: dict[tuple[str, str], type]) -> None:
        super().__init__(io.BytesIO(data))
        self._trusted = trusted

    def find_class(self, module: str, name: str) -> Any:
        found = _ADMITTED.get((module, name)) or self._trusted.get((module, name))
        if found is not None:
            return found
        if _DOMAIN_MODULE.fullmatch(module) or (module, name) in _SERVICE_VALUES:
            cls = (
                getattr(importlib.import_module(module), name, None)
                if name.isidentifier()
                else None
            )
            if isinstance(cls, type) and cls.__module__ == module:
                _ADMITTED[module, name] = cls
                return cls
        raise UnsafeData(f"refused to load global {module}.{name}: not a sim.domain class")


def _dumps(item: Any) -> bytes:
    """Pickle an aggregate without its pending events (they go to the bus, not the store)."""
    events = getattr(item, "events", None)
    if not events:
        return pickle.dumps(item, PICKLE_PROTOCOL)
    object.__setattr__(item, "events", [])
    try:
        return pickle.dumps(item, PICKLE_PROTOCOL)
    finally:
        object.__setattr__(item, "events", events)


# --- the connection -------------------------------------------------------------------------


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)  # pragma: no cover - Python < 3.11 has no error codes


class _Database:
    """One connection to a store: pragmas, schema check, retries, blobs."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        busy_timeout: float,
        retries: int,
        backoff: float,
        trusted: Iterable[type],
    ) -> None:
        self.path = str(path)
        self.is_file = self.path not in ("", MEMORY)
        self.busy_timeout, self.retries, self.backoff = busy_timeout, retries, backoff
        self.busy_retries = 0
        self.trusted = {(cls.__module__, cls.__qualname__): cls for cls in trusted}
        try:
            # isolation_level=None: sqlite3 never opens a transaction behind our back.
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreFileError(f"{self.path}: cannot open ({exc})") from exc
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        conn = self.conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # The file is checked (or made a store) before anything about it is changed: a
            # database that is not ours is refused as it was found, its journal mode intact.
            self.begin()
            try:
                self._check_or_create_schema()
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if self.is_file:
                self.retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchall())
                # NORMAL: in WAL mode a commit survives the process being killed (the WAL is
                # in the OS's cache) and the file stays consistent even on power loss; only
                # the last commits before a power cut may be lost. FULL would fsync every
                # commit for durability a simulation does not need.
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreFileError(f"{self.path}: not an {APPLICATION} store ({exc})") from exc

    def _check_or_create_schema(self) -> None:
        conn = self.conn
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))],
            )
            return
        if "meta" not in tables:
            raise StoreFileError(
                f"{self.path}: a SQLite database, but not an {APPLICATION} store "
                f"(no meta table; tables: {', '.join(sorted(tables)[:5])})"
            )
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("application") != APPLICATION:
            raise StoreFileError(
                f"{self.path}: not an {APPLICATION} store "
                f"(its meta table says application {meta.get('application')!r})"
            )
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise StoreFileError(
                f"{self.path}: an {APPLICATION} store of schema version "
                f"{meta.get('schema_version')}, this code reads version {SCHEMA_VERSION}"
            )
        for statement in _SCHEMA:  # a version-1 store missing nothing: a no-op
            conn.execute(statement)

    # --- statements ---------------------------------------------------------------------------
    def retry(self, action: Callable[[], R]) -> R:
        """Run ``action``; on "database is locked" retry with back-off, then StorageBusy."""
        delay = self.backoff
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if attempt >= self.retries:
                    raise StorageBusy(
                        f"{self.path}: database is locked; gave up after {attempt + 1} "
                        f"attempts over {time.monotonic() - started:.2f} s (busy timeout "
                        f"{self.busy_timeout} s, {self.retries} retries)"
                    ) from exc
            attempt += 1
            self.busy_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement and return its rows (retried when busy outside a transaction)."""
        conn = self.conn
        if conn.in_transaction:
            return conn.execute(sql, params).fetchall()
        return self.retry(lambda: conn.execute(sql, params).fetchall())

    def begin(self) -> None:
        """Open a write transaction: ``BEGIN IMMEDIATE`` takes the lock now, not at a write."""
        self.retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))

    def commit(self) -> None:
        """Commit; a deferred foreign key that fails leaves the transaction for rollback."""
        try:
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(f"{self.path}: commit refused: {exc}") from exc

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def loads(self, data: bytes, what: str) -> Any:
        """Unpickle a blob with the restricted unpickler."""
        try:
            return _DomainUnpickler(data, self.trusted).load()
        except UnsafeData as exc:
            raise UnsafeData(f"{self.path}: {what}: {exc}") from None
        except Exception as exc:
            raise UnsafeData(f"{self.path}: {what}: unreadable blob ({exc!r})") from exc


# --- repositories and logs ------------------------------------------------------------------


class SqliteRepository(Repository[T]):
    """A repository whose aggregates are rows of one table (key, pickled blob, columns).

    Inside a transaction the aggregates read are cached by key (the identity map) and
    written back at commit when their blob changed; outside one, every read loads a fresh
    copy (for reading only). Adding and removing write at once.
    """

    def __init__(self, db: _Database, table: str, kind: str, key: str) -> None:
        super().__init__(kind, key)
        self._db = db
        self._table = table
        columns = _COLUMNS.get(table, ())
        self._values = _extractor(columns)
        self._cache: dict[Any, T] = {}
        self._loaded: dict[Any, bytes] = {}
        k = f'"{key}"'
        self._sql_get = f"SELECT data FROM {table} WHERE {k} = ?"
        self._sql_has = f"SELECT 1 FROM {table} WHERE {k} = ?"
        self._sql_last = f"SELECT coalesce(max(rowid), 0) FROM {table}"
        self._sql_page = (
            f"SELECT rowid, {k}, data FROM {table} WHERE rowid > ? AND rowid <= ? "
            "ORDER BY rowid LIMIT ?"
        )
        self._sql_count = f"SELECT count(*) FROM {table}"
        self._sql_delete = f"DELETE FROM {table} WHERE {k} = ?"
        names = ", ".join((k, "data", *columns))
        marks = ", ".join("?" * (2 + len(columns)))
        self._sql_insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        sets = "".join(f", {column} = ?" for column in columns)
        self._sql_update = f"UPDATE {table} SET data = ?{sets} WHERE {k} = ?"

    # --- reading and writing -----------------------------------------------------------
    def _load(self, key: Any) -> T | None:
        rows = self._db.execute(self._sql_get, (key,))
        return self._db.loads(rows[0][0], f"{self.kind} {key!r}") if rows else None

    def get(self, key: Any) -> T:
        """Return the aggregate for ``key`` for reading and changing; raise NotFound."""
        item = self.find(key)
        if item is None:
            raise NotFound(f"{self.kind} {key!r} not found")
        return item

    def find(self, key: Any) -> T | None:
        """Like :meth:`get`, but return None when there is no such aggregate."""
        if not self._txn.open:
            return self._load(key)
        if self._undo is None:
            self._join()
        item = self._cache.get(key)
        if item is not None:
            return item
        rows = self._db.execute(self._sql_get, (key,))
        if not rows:
            return None
        blob = rows[0][0]
        item = self._db.loads(blob, f"{self.kind} {key!r}")
        self._remember(key, item, blob)
        self._seen.append(item)
        return item

    def find_readonly(self, key: Any) -> T | None:
        """Return the aggregate for ``key`` without tracking it: never change the result."""
        if self._undo is not None:
            item = self._cache.get(key)
            if item is not None:
                return item
        return self._load(key)

    def add(self, item: T) -> T:
        """Add a new aggregate (inserted at once); raise AlreadyExists if its key is taken."""
        key = self._key(item)
        blob = _dumps(item)
        in_txn = self._txn.open
        if in_txn and self._undo is None:
            self._join()
        try:
            self._db.execute(self._sql_insert, (key, blob, *self._values(item)))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(f"{self.kind} {key!r} already exists") from None
            raise IntegrityViolation(f"{self.kind} {key!r}: {exc}") from exc
        if in_txn:
            self._remember(key, item, blob)
            self._seen.append(item)
        return item

    def remove(self, key: Any) -> None:
        """Delete the aggregate for ``key``; raise NotFound."""
        self.get(key)
        self._db.execute(self._sql_delete, (key,))
        self._forget(key)

    def values(self) -> Iterator[T]:
        """Iterate over every aggregate in insertion order, for reading.

        The pass covers the rows present at the call (rows added later are not in it). They
        are read :data:`PAGE_ROWS` at a time, so a row changed during the pass is seen as it
        was when its page was read.
        """
        # Rows are read a page at a time and each aggregate is loaded when reached and not
        # kept, so a pass over every cart or order of a long run holds one page of blobs.
        last = self._db.execute(self._sql_last)[0][0]
        cache = self._cache if self._undo is not None else {}
        return _loaded(_paged(self._db, self._sql_page, last), cache, self._db.loads, self.kind)

    def __contains__(self, key: object) -> bool:
        """Return True if an aggregate with this key exists."""
        if self._undo is not None and key in self._cache:
            return True
        return bool(self._db.execute(self._sql_has, (key,)))

    def __len__(self) -> int:
        """Return the number of aggregates."""
        return int(self._db.execute(self._sql_count)[0][0])

    # --- the identity map and the transaction protocol -------------------------------------
    def _remember(self, key: Any, item: T, blob: bytes) -> None:
        self._cache[key] = item
        self._loaded[key] = blob

    def _forget(self, key: Any) -> None:
        self._cache.pop(key, None)
        self._loaded.pop(key, None)

    def _flush(self) -> None:
        """Write back every cached aggregate whose blob changed (before the COMMIT)."""
        loaded = self._loaded
        for key, item in self._cache.items():
            blob = _dumps(item)
            if blob != loaded[key]:
                self._write(key, item, blob)

    def _write(self, key: Any, item: T, blob: bytes) -> None:
        cursor = self._db.conn.execute(self._sql_update, (blob, *self._values(item), key))
        if cursor.rowcount != 1:  # pragma: no cover - the write lock is held
            raise ConcurrencyError(f"{self.kind} {key!r} vanished under the transaction")

    def _begin(self) -> None:
        super()._begin()
        self._clear()

    def _commit(self) -> list[Any]:
        events = super()._commit()
        self._clear()
        return events

    def _rollback(self) -> None:
        super()._rollback()
        self._clear()

    def _clear(self) -> None:
        self._cache = {}
        self._loaded = {}


def _paged(db: _Database, sql: str, last: int) -> Iterator[tuple[Any, bytes]]:
    """Yield ``(key, blob)`` of the rows with rowids up to ``last``, a page per statement.

    ``sql`` selects ``rowid, key, data`` with ``rowid > ? AND rowid <= ?`` in rowid order,
    ``LIMIT ?``. Rowids are assigned in insertion order (one above the largest), and updates
    keep them, so the pages follow the table's order and rows added after ``last`` was read
    fall beyond it (unless the row holding the largest rowid was deleted in between).
    """
    after = 0  # rowids assigned by SQLite start at 1
    while after < last:
        rows = db.execute(sql, (after, last, PAGE_ROWS))
        if not rows:
            return
        for _, key, blob in rows:
            yield key, blob
        after = rows[-1][0]


def _loaded(
    rows: Iterable[tuple[Any, bytes]],
    cache: dict[Any, T],
    loads: Callable[[bytes, str], Any],
    kind: str,
) -> Iterator[T]:
    """Yield the aggregate of each ``(key, blob)`` row: the cached one, else the blob loaded."""
    for key, blob in rows:
        item = cache.get(key)
        yield item if item is not None else loads(blob, f"{kind} {key!r}")


class SqliteStockRepository(SqliteRepository[T]):
    """The stock items: counters in real columns, every write a conditional update."""

    def __init__(self, db: _Database, table: str, kind: str, key: str) -> None:
        super().__init__(db, table, kind, key)
        self._counts: dict[Any, tuple[int, int]] = {}

    def _remember(self, key: Any, item: T, blob: bytes) -> None:
        super()._remember(key, item, blob)
        self._counts[key] = (item.on_hand, item.reserved)  # type: ignore[attr-defined]

    def _forget(self, key: Any) -> None:
        super()._forget(key)
        self._counts.pop(key, None)

    def _write(self, key: Any, item: T, blob: bytes) -> None:
        """Write the item only if its row still holds what was read and enough is available."""
        on_hand, reserved = item.on_hand, item.reserved  # type: ignore[attr-defined]
        was_on_hand, was_reserved = self._counts[key]
        decrease = max(0, (was_on_hand - was_reserved) - (on_hand - reserved))
        cursor = self._db.conn.execute(
            "UPDATE stock SET data = ?, on_hand = ?, reserved = ?, available = ?"
            " WHERE sku = ? AND on_hand = ? AND reserved = ? AND available >= ?",
            (blob, on_hand, reserved, on_hand - reserved, key, was_on_hand, was_reserved, decrease),
        )
        if cursor.rowcount == 1:
            return
        row = self._db.conn.execute(
            "SELECT on_hand, reserved, available FROM stock WHERE sku = ?", (key,)
        ).fetchone()
        if row is not None and row[2] < decrease:
            raise OutOfStock(f"{key}: {decrease} requested, {row[2]} available")
        raise ConcurrencyError(
            f"stock item {key!r} changed under the transaction: read on hand {was_on_hand}, "
            f"reserved {was_reserved}; the row now has "
            + ("no such item" if row is None else f"on hand {row[0]}, reserved {row[1]}")
        )

    def _clear(self) -> None:
        super()._clear()
        self._counts = {}


class SqliteLog(AppendLog[T]):
    """An append-only log in a table (``pos`` orders it); rollback is SQL's."""

    def __init__(self, db: _Database, table: str, kind: str) -> None:
        super().__init__(kind)
        self._db = db
        columns = _COLUMNS.get(table, ())
        self._values = _extractor(columns)
        names = ", ".join(("data", *columns))
        marks = ", ".join("?" * (1 + len(columns)))
        self._sql_insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        self._sql_page = (
            f"SELECT pos, pos, data FROM {table} WHERE pos > ? AND pos <= ? ORDER BY pos LIMIT ?"
        )
        self._sql_len = f"SELECT coalesce(max(pos), 0) FROM {table}"  # no gaps: append-only

    def append(self, entry: T) -> T:
        """Append one entry (inserted at once)."""
        if self._mark is None and self._txn.open:
            self._begin()
            self._txn.joined.append(self)
        try:
            self._db.execute(self._sql_insert, (_dumps(entry), *self._values(entry)))
        except sqlite3.IntegrityError as exc:  # pragma: no cover - foreign keys are deferred
            raise IntegrityViolation(f"{self.kind}: {exc}") from exc
        return entry

    def __iter__(self) -> Iterator[T]:
        """Iterate over the entries in the order they were appended."""
        # As SqliteRepository.values: the entries appended by the call, a page at a time,
        # each loaded when reached.
        loads, kind = self._db.loads, self.kind
        last = self._db.execute(self._sql_len)[0][0]
        return (
            loads(blob, f"{kind} entry {pos}")
            for pos, blob in _paged(self._db, self._sql_page, last)
        )

    def __len__(self) -> int:
        """Return the number of entries."""
        return int(self._db.execute(self._sql_len)[0][0])

    def _begin(self) -> None:
        self._mark = 0  # joined; SQL keeps what to roll back

    def _flush(self) -> None:
        """Nothing to write at commit: entries were inserted when appended."""

    def _rollback(self) -> None:
        self._mark = None


# --- the unit of work -----------------------------------------------------------------------


class SqliteUnitOfWork(UnitOfWork):
    """The shop's unit of work on one SQLite connection (a file, or ``:memory:``).

    ``trusted`` names extra classes the restricted unpickler may load (aggregates defined
    outside ``sim.domain``, as tests do). One connection serves one thread; give every
    thread its own unit of work on the same file. ``lock``: a run's :class:`RunLock` on the
    file, released by :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = MEMORY,
        bus: MessageBus | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        trusted: Iterable[type] = (),
        lock: RunLock | None = None,
    ) -> None:
        self._db = _Database(path, busy_timeout, retries, backoff, trusted)
        self._lock = lock
        self._drawn: dict[str, int] = {}
        super().__init__(bus)

    @classmethod
    def connect(
        cls,
        path: str | os.PathLike[str] = MEMORY,
        bus: MessageBus | None = None,
        **options: Any,
    ) -> SqliteUnitOfWork:
        """Open (creating it if new) the store at ``path``; ``:memory:`` for a private one."""
        return cls(path, bus, **options)

    @property
    def path(self) -> str:
        """Return the database's path (``:memory:`` for an in-memory database)."""
        return self._db.path

    @property
    def connection(self) -> sqlite3.Connection:
        """Return the SQLite connection (for inspection; write through the repositories)."""
        return self._db.conn

    @property
    def busy_retries(self) -> int:
        """Return how many times a statement was retried because the database was locked."""
        return self._db.busy_retries

    def close(self) -> None:
        """Roll back any open transaction, close the connection and release the run lock."""
        try:
            if self._active:
                self.rollback()
            self._db.conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    # --- the hooks of UnitOfWork -----------------------------------------------------------
    def _repository(self, name: str, kind: str, key: str) -> Repository[Any]:
        if name == "stock":
            return SqliteStockRepository(self._db, name, kind, key)
        return SqliteRepository(self._db, name, kind, key)

    def _log(self, name: str, kind: str) -> AppendLog[Any]:
        return SqliteLog(self._db, name, kind)

    def _begin_storage(self) -> None:
        self._db.begin()
        # A savepoint inside the write transaction: a rollback returns to it and still
        # holds the lock, so the ids drawn meanwhile are recorded before any other
        # connection can draw them again.
        self._db.conn.execute("SAVEPOINT work")
        self._drawn = {}

    def _commit_storage(self, joined: list[Any]) -> None:
        try:
            for part in joined:
                part._flush()
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(f"{self.path}: {exc}") from exc
        self._db.commit()
        self._drawn = {}

    def _rollback_storage(self) -> None:
        drawn, self._drawn = self._drawn, {}
        conn = self._db.conn
        if not drawn or not conn.in_transaction:
            self._db.rollback()
            return
        # Ids drawn in the rolled-back work stay drawn (a sequence's gap): undo the work
        # back to the savepoint, keep the sequences, commit, all under the same lock.
        try:
            conn.execute("ROLLBACK TO work")
            conn.executemany(
                "INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET value = max(value, excluded.value)",
                list(drawn.items()),
            )
            conn.execute("COMMIT")
        finally:
            self._db.rollback()  # only if something above failed and left it open

    def next_id(self, prefix: str) -> str:
        """Return the next id of a kind (``order-000001``), unique across connections.

        Like a database sequence, it is not rolled back: a rolled-back id leaves a gap.
        """
        (row,) = self._db.execute(
            "INSERT INTO sequences (name, value) VALUES (?, 1) ON CONFLICT (name)"
            " DO UPDATE SET value = value + 1 RETURNING value",
            (prefix,),
        )
        n = int(row[0])
        if self._active:
            self._drawn[prefix] = n
        return self.shared_id(format_id(prefix, n))

    def shared_id(self, value: str) -> str:
        """Return the one interned string of an id: each aggregate read back has its own copy.

        The ids drawn here are interned too, so what a run keeps (the recorder's rows, the
        frames, the audit's facts) holds each id once, not a copy per row that names it.
        """
        return sys.intern(value)


# --- stores for a scenario ------------------------------------------------------------------


class RunLock:
    """The claim of one run on a store file: an advisory lock on ``<file>.lock`` beside it.

    A run replaces its store file when it starts, so a second run on the same file would
    delete the shop of the first one while it is running. :func:`open_store` takes this lock
    before touching the file and the unit of work releases it when it closes; a second
    claim fails at once with :class:`StoreInUse` naming the process that holds it. The lock
    is the operating system's (``flock``): it ends with the process however the process ends,
    so there is never a stale claim to clear by hand. The ``.lock`` file stays (deleting it on
    release would let two later runs lock two different files of the same name). On a file
    system that refuses locks, and without ``fcntl`` (Windows), runs are not guarded.
    """

    __slots__ = ("_fd",)

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self._fd: int | None = None
        if fcntl is None:  # pragma: no cover - Windows
            return
        path = f"{store}.lock"
        try:  # a link is not followed: the lock never writes to a file it points at
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise StoreFileError(f"{store}: cannot create its lock file ({exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            by = f" (process {holder})" if holder.isdigit() else ""
            raise StoreInUse(
                f"{store}: another run is using this store{by}; "
                "wait for it to end or choose another storage path"
            ) from None
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):  # a file system without locks (some network mounts)
                return  # runs there are not guarded, as without fcntl
            raise
        self._fd = fd
        held = os.pread(fd, 33, 0)
        if not held or (len(held) <= 32 and held.strip().isdigit()):  # empty or a pid: ours
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)

    def release(self) -> None:
        """Let the file go (closing the descriptor ends the lock); twice is harmless."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def ensure_free(store: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreInUse` if a run holds the lock of the store file ``store`` now.

    Nothing is created: without a lock file beside the store, no run can hold it.
    """
    if Path(f"{store}.lock").exists():
        RunLock(store).release()


def replica_path(path: str | os.PathLike[str], replication: int) -> Path:
    """Return the file of one replication: ``shop.db``, then ``shop-rep1.db``, ``shop-rep2.db``."""
    p = Path(path)
    return p if replication == 0 else p.with_name(f"{p.stem}-rep{replication}{p.suffix}")


def is_store_file(path: str | os.PathLike[str]) -> bool:
    """Return True if ``path`` is an ecommerce-sim store (of any schema version)."""
    if not Path(path).is_file():
        return False
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:  # pragma: no cover - an unreadable file
        return False
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'application'").fetchone()
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return row is not None and row[0] == APPLICATION


def replace_store_file(path: str | os.PathLike[str]) -> None:
    """Delete the store at ``path`` (and its WAL files) so a run starts afresh.

    Nothing to do if there is no such file. Refuses, with StoreFileError, to delete anything
    that is not an ecommerce-sim store (an empty file too: it may be someone's), and touches
    the ``-wal`` / ``-shm`` / ``-journal`` files beside it only once it is known to be one.
    """
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return
    if not p.is_file():
        raise StoreFileError(f"{p}: exists and is not a file; choose another storage path")
    if not is_store_file(p):
        raise StoreFileError(
            f"{p}: exists and is not an {APPLICATION} store; refusing to overwrite it "
            "(choose another storage path)"
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{p}{suffix}").unlink(missing_ok=True)


def open_store(
    kind: str = "memory",
    path: str | os.PathLike[str] | None = None,
    *,
    replication: int = 0,
    bus: MessageBus | None = None,
) -> UnitOfWork:
    """Return the unit of work a scenario's ``storage`` asks for, with a fresh, empty shop.

    ``memory``: the in-memory store. ``sqlite`` without a path (or ``:memory:``): an
    in-memory SQLite database. ``sqlite`` with a path: a file per replication
    (:func:`replica_path`); a store file left by an earlier run is replaced, any other
    existing file refused (StoreFileError), and a file another run is using refused
    (:class:`StoreInUse`): the run holds the file's :class:`RunLock` until the unit of work
    closes.
    """
    if kind == "memory":
        return UnitOfWork(bus)
    if kind != "sqlite":
        raise ValueError(f"unknown storage kind {kind!r} (memory, sqlite)")
    if path is None or str(path) == MEMORY:
        return SqliteUnitOfWork(MEMORY, bus)
    target = replica_path(path, replication)
    lock = RunLock(target)
    try:
        replace_store_file(target)
        return SqliteUnitOfWork(target, bus, lock=lock)
    except BaseException:
        lock.release()
        raise
