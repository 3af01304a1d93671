"""Repositories and the unit of work: in memory, with real commit and rollback.

A use case opens a transaction with ``with uow:``, reads aggregates through the
repositories, changes them, and calls ``uow.commit()``. Leaving the block without a
commit (or by an exception) rolls every change back: aggregates read with ``get`` are
restored from the copy taken on first read, aggregates added are removed, entries
appended to a log are cut off. Events recorded by the aggregates are published on the
bus only after a commit, once the block has ended, so a rolled-back change announces
nothing and subscribers may open transactions of their own.

Rule for callers: change only aggregates obtained by ``get`` (or ``lock_many``) inside
the transaction; ``values()`` and ``find_readonly`` are for reading.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from types import TracebackType
from typing import Any, Generic, TypeVar

from sim.domain.errors import AlreadyExists, DomainError, NotFound
from sim.domain.events import DomainEvent
from sim.services.bus import MessageBus

T = TypeVar("T")
_ABSENT: Any = object()
_RANK = attrgetter("_rank")


def format_id(prefix: str, n: int) -> str:
    """Return id number ``n`` of a kind: ``order-000001``."""
    return f"{prefix}-{n:06d}"


def _snapshot(item: T) -> T:
    """Return a copy of ``item`` to restore on rollback: a deep copy.

    An aggregate that defines ``__deepcopy__`` (the shop's do, through
    :class:`~sim.domain.snapshots.ShallowCopied`) is asked directly: ``copy.deepcopy``'s memo
    and bookkeeping would cost more than the copy itself.
    """
    own = getattr(type(item), "__deepcopy__", None)
    return own(item, {}) if own is not None else copy.deepcopy(item)


class _Transaction:
    """What the parts of one unit of work share: is a transaction open, which parts joined it.

    A part joins (its ``_begin`` runs) the first time the transaction uses it, so a
    transaction costs in proportion to the parts it touches, not to all of them.
    """

    __slots__ = ("joined", "open")

    def __init__(self) -> None:
        self.open = False
        self.joined: list[Any] = []


class TransactionError(DomainError):
    """A unit of work was used outside its protocol (nested begin, commit with no begin)."""


class Repository(Generic[T]):
    """Aggregates of one kind keyed by an attribute, with snapshots for rollback."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self._key: Callable[[T], Any] = attrgetter(key)
        self._items: dict[Any, T] = {}
        self._undo: dict[Any, T] | None = None
        self._seen: list[T] = []
        self._txn = _Transaction()  # the unit of work's, once it adopts this repository
        self._rank = 0

    # --- reading and writing -----------------------------------------------------------
    def get(self, key: Any) -> T:
        """Return the aggregate for ``key`` for reading and changing; raise NotFound."""
        item = self._items.get(key)
        if item is None:
            raise NotFound(f"{self.kind} {key!r} not found")
        self._track(key, item)
        return item

    def find(self, key: Any) -> T | None:
        """Like :meth:`get`, but return None when there is no such aggregate."""
        item = self._items.get(key)
        if item is not None:
            self._track(key, item)
        return item

    def find_readonly(self, key: Any) -> T | None:
        """Return the aggregate for ``key`` without tracking it: never change the result."""
        return self._items.get(key)

    def lock_many(self, keys: Iterable[Any]) -> list[T]:
        """Get several aggregates, always in ascending key order.

        Every caller that changes several rows of one kind takes them through here, so
        all transactions lock in the same global order and none can wait on another in
        a cycle: no deadlock is possible (the order matters to stores with real locks).
        """
        return [self.get(key) for key in sorted(set(keys))]

    def add(self, item: T) -> T:
        """Add a new aggregate; raise AlreadyExists if its key is taken."""
        key = self._key(item)
        if key in self._items:
            raise AlreadyExists(f"{self.kind} {key!r} already exists")
        if self._undo is None and self._txn.open:
            self._join()
        if self._undo is not None:
            self._undo.setdefault(key, _ABSENT)
        self._items[key] = item
        self._seen.append(item)
        return item

    def remove(self, key: Any) -> None:
        """Delete the aggregate for ``key``; raise NotFound."""
        self.get(key)
        del self._items[key]

    def values(self) -> Iterator[T]:
        """Iterate over every aggregate, for reading."""
        return iter(list(self._items.values()))

    def __contains__(self, key: object) -> bool:
        """Return True if an aggregate with this key exists."""
        return key in self._items

    def __len__(self) -> int:
        """Return the number of aggregates."""
        return len(self._items)

    # --- the transaction protocol (called by the unit of work) ---------------------------
    def _track(self, key: Any, item: T) -> None:
        undo = self._undo
        if undo is None:
            if not self._txn.open:
                return
            self._join()
            undo = self._undo
            assert undo is not None
        if key not in undo:
            undo[key] = _snapshot(item)
            self._seen.append(item)

    def _join(self) -> None:
        self._begin()
        self._txn.joined.append(self)

    def _begin(self) -> None:
        self._undo = {}
        self._seen = []

    def _commit(self) -> list[DomainEvent]:
        events: list[DomainEvent] = []
        for item in self._seen:
            pending = getattr(item, "events", None)
            if pending:
                events.extend(pending)
                pending.clear()
        self._undo = None
        self._seen = []
        return events

    def _pending_events(self) -> list[DomainEvent]:
        # The events the transaction's aggregates have recorded, in commit order, not cleared.
        return [e for item in self._seen for e in (getattr(item, "events", None) or ())]

    def _rollback(self) -> None:
        for key, original in (self._undo or {}).items():
            if original is _ABSENT:
                self._items.pop(key, None)
            else:
                self._items[key] = original
        self._undo = None
        self._seen = []


class AppendLog(Generic[T]):
    """An append-only log (the ledger, the notification outbox); rollback cuts it back."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: list[T] = []
        self._mark: int | None = None
        self._txn = _Transaction()  # the unit of work's, once it adopts this log
        self._rank = 0

    def append(self, entry: T) -> T:
        """Append one entry."""
        if self._mark is None and self._txn.open:
            self._begin()
            self._txn.joined.append(self)
        self._entries.append(entry)
        return entry

    def __iter__(self) -> Iterator[T]:
        """Iterate over the entries in the order they were appended."""
        return iter(self._entries)

    def __len__(self) -> int:
        """Return the number of entries."""
        return len(self._entries)

    def _begin(self) -> None:
        self._mark = len(self._entries)

    def _pending_events(self) -> list[DomainEvent]:
        return []

    def _commit(self) -> list[DomainEvent]:
        self._mark = None
        return []

    def _rollback(self) -> None:
        if self._mark is not None:
            del self._entries[self._mark :]
        self._mark = None


class UnitOfWork:
    """One transaction over every repository of the shop (in memory).

    Use it as ``with uow: ...; uow.commit()``. A repository or log joins the transaction
    (its ``_begin`` runs) the first time the transaction uses it; commit and rollback visit
    the parts that joined, in the order of declaration.

    Stores on real storage (``sim.services.sqlite_store``) subclass it: they build their own
    parts (``_repository`` / ``_log``, given each attribute's name) and open, write and end
    the storage transaction in ``_begin_storage`` / ``_commit_storage`` / ``_rollback_storage``,
    which do nothing here.
    """

    def __init__(self, bus: MessageBus | None = None) -> None:
        self.bus = bus if bus is not None else MessageBus()
        repository, log = self._repository, self._log
        self.users: Repository[Any] = repository("users", "user", "id")
        self.emails: Repository[Any] = repository("emails", "e-mail claim", "email")
        self.sessions: Repository[Any] = repository("sessions", "session", "token")
        self.activity: Repository[Any] = repository("activity", "activity log", "user_id")
        self.categories: Repository[Any] = repository("categories", "category", "id")
        self.products: Repository[Any] = repository("products", "product", "sku")
        self.stock: Repository[Any] = repository("stock", "stock item", "sku")
        self.reservations: Repository[Any] = repository("reservations", "reservation", "id")
        self.carts: Repository[Any] = repository("carts", "cart", "user_id")
        self.coupons: Repository[Any] = repository("coupons", "coupon", "code")
        self.orders: Repository[Any] = repository("orders", "order", "id")
        self.histories: Repository[Any] = repository("histories", "customer history", "user_id")
        self.payments: Repository[Any] = repository("payments", "payment", "id")
        self.idempotency: Repository[Any] = repository("idempotency", "idempotency record", "key")
        self.ledger: AppendLog[Any] = log("ledger", "ledger")
        self.notifications: AppendLog[Any] = log("notifications", "notification")
        self._parts: tuple[Repository[Any] | AppendLog[Any], ...] = tuple(
            v for v in vars(self).values() if isinstance(v, Repository | AppendLog)
        )
        self._txn = _Transaction()
        for rank, part in enumerate(self._parts):
            part._txn, part._rank = self._txn, rank
        self._active = False
        self._committed: list[DomainEvent] = []
        self._sequences: dict[str, int] = {}

    # --- hooks for stores on real storage ----------------------------------------------------
    def _repository(self, name: str, kind: str, key: str) -> Repository[Any]:
        """Return the repository stored as attribute ``name`` (aggregates keyed by ``key``)."""
        return Repository(kind, key)

    def _log(self, name: str, kind: str) -> AppendLog[Any]:
        """Return the append-only log stored as attribute ``name``."""
        return AppendLog(kind)

    def _begin_storage(self) -> None:
        """Open the storage transaction (called before the block's first statement)."""

    def _commit_storage(self, joined: list[Any]) -> None:
        """Write the joined parts' changes and commit them (nothing to do in memory).

        If it raises, the whole transaction is rolled back and the error propagates.
        """

    def _rollback_storage(self) -> None:
        """Discard the storage transaction (nothing to do in memory)."""

    def close(self) -> None:
        """Release the store's resources (nothing to release in memory)."""

    def next_id(self, prefix: str) -> str:
        """Return the next id of a kind (``order-000001``): deterministic, never reused.

        Like a database sequence, it is not rolled back: a rolled-back id leaves a gap.
        """
        n = self._sequences.get(prefix, 0) + 1
        self._sequences[prefix] = n
        return format_id(prefix, n)

    def shared_id(self, value: str) -> str:
        """Return the string to keep for an id read from this store (here: ``value`` itself).

        What a run keeps beside the store (the recorder's rows, the frames, the audit's facts)
        passes the ids it read through this. The memory store hands back the strings it
        holds, so there is nothing to share; a store that reads copies back interns them.
        """
        return value

    @property
    def active(self) -> bool:
        """Return True while a transaction is open."""
        return self._active

    def __enter__(self) -> UnitOfWork:
        """Begin a transaction."""
        if self._active:
            raise TransactionError("a transaction is already open on this unit of work")
        self._begin_storage()
        self._txn.open = True
        self._active = True
        return self

    def commit(self) -> None:
        """Make every change of the transaction permanent; events go out when the block ends."""
        if not self._active:
            raise TransactionError("commit with no open transaction")
        joined = self._txn.joined
        try:
            if self.bus.has_transactional_handlers:
                self._handle_in_transaction(joined)
            if len(joined) > 1:
                joined.sort(key=_RANK)
            self._commit_storage(joined)
        except BaseException:
            self.rollback()
            raise
        for part in joined:
            self._committed.extend(part._commit())
        self._close()

    def _handle_in_transaction(self, joined: list[Any]) -> None:
        # Hand the transaction's events to the in-transaction handlers (the ledger) before
        # the commit, in the order they will be published; what the handlers write joins
        # this transaction.
        if len(joined) > 1:
            joined.sort(key=_RANK)
        publish = self.bus.publish_in_transaction
        for event in [e for part in joined for e in part._pending_events()]:
            publish(event)

    def rollback(self) -> None:
        """Undo every change made since the transaction began."""
        for part in self._txn.joined:
            part._rollback()
        self._close()
        self._rollback_storage()

    def _close(self) -> None:
        self._txn.open = False
        self._txn.joined = []
        self._active = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back unless committed, then publish the events of what was committed."""
        if self._active:
            self.rollback()
        events, self._committed = self._committed, []
        for event in events:
            self.bus.publish(event)
