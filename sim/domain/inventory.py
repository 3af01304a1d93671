"""Stock and reservations: units set aside at checkout, sold on payment, never oversold.

A :class:`StockItem` counts the units of one SKU. ``on_hand`` is every unit in the
warehouse, including those ``reserved`` for orders awaiting payment; ``available`` (on hand
minus reserved) is what can still be sold. Units are conserved: on hand always equals
``initial + received + returned - sold`` (Saleor's ``quantity`` / ``quantity_allocated``,
oscar's ``num_in_stock`` / ``num_allocated``).

A :class:`Reservation` holds the lines of one order until it is committed (payment
captured: the units are sold), released (payment failed, checkout abandoned, order
cancelled) or expired (its time-to-live ran out, as Saleor's checkout reservations do).

The module functions :func:`reserve`, :func:`release`, :func:`expire` and :func:`commit`
change several stock items at once, all or nothing: they check every line before they
change anything, so a failure leaves no partial change even without the unit of work's
rollback. They always take the stock rows in ascending SKU order, the one global lock
order (Saleor locks stock rows ordered by primary key): with real row locks no two
transactions can wait on each other in a cycle, so no deadlock is possible. Callers pass
the items sorted by SKU (``uow.stock.lock_many(skus)`` returns them so); the functions
check it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sim.domain.errors import (
    InvalidQuantity,
    InvalidValue,
    InventoryCorrupted,
    NotFound,
    OutOfStock,
    ReservationNotActive,
    ReservationNotExpired,
)
from sim.domain.events import (
    DomainEvent,
    EventSource,
    StockChanged,
    StockCommitted,
    StockReleased,
    StockReplenished,
    StockReserved,
    events_field,
)
from sim.domain.snapshots import ShallowCopied

MAX_PER_LINE = 50
"""Most units of one SKU a single reservation line may hold (Saleor's checkout limit)."""

SUPPLIER = "supplier"
"""Restock reason: a delivery from a supplier (counted in ``received``)."""
RETURN = "return"
"""Restock reason: a customer's return put back on the shelf (counted in ``returned``)."""
RESTOCK_REASONS = frozenset({SUPPLIER, RETURN})
"""Every reason :meth:`StockItem.restock` accepts."""

PAYMENT_FAILED = "payment_failed"
"""Release reason: the payment was declined, timed out or failed."""
ABANDONED = "abandoned"
"""Release reason: the shopper left the checkout."""
CANCELLED = "cancelled"
"""Release reason: the order was cancelled before it was paid."""
EXPIRED_REASON = "expired"
"""Release reason recorded on stock events when a reservation expires (see :func:`expire`)."""
RELEASE_REASONS = frozenset({PAYMENT_FAILED, ABANDONED, CANCELLED})
"""Every reason :func:`release` accepts (expiry goes through :func:`expire`)."""
_STOCK_RELEASE_REASONS = RELEASE_REASONS | {EXPIRED_REASON}

ACTIVE = "active"
"""Reservation status: holding its units."""
COMMITTED = "committed"
"""Reservation status: its units were sold."""
RELEASED = "released"
"""Reservation status: its units went back to stock before expiry."""
EXPIRED = "expired"
"""Reservation status: its time-to-live ran out and its units went back to stock."""
RESERVATION_STATUSES = frozenset({ACTIVE, COMMITTED, RELEASED, EXPIRED})
"""Every status a reservation can have."""


def _bad_quantity(sku: str, qty: object) -> InvalidQuantity:
    return InvalidQuantity(f"{sku}: quantity must be a positive integer, got {qty!r}")


@dataclass(slots=True)
class StockItem(ShallowCopied, EventSource):
    """The stock of one SKU: on hand, reserved, and the counters that conserve units.

    Build it as ``StockItem("SKU-7", initial=120)``; every other counter starts from
    there and changes only through the methods.
    """

    sku: str
    initial: int
    on_hand: int = field(init=False)
    reserved: int = field(default=0, init=False)
    received: int = field(default=0, init=False)
    returned: int = field(default=0, init=False)
    sold: int = field(default=0, init=False)
    events: list[DomainEvent] = events_field()

    def __post_init__(self) -> None:
        """Reject a negative or non-integer initial stock; put it all on hand."""
        if type(self.initial) is not int or self.initial < 0:
            raise InvalidQuantity(
                f"{self.sku}: initial stock must be a non-negative integer, got {self.initial!r}"
            )
        self.on_hand = self.initial

    @property
    def available(self) -> int:
        """Return the units that can still be reserved: on hand minus reserved (never < 0)."""
        return self.on_hand - self.reserved

    def reserve(self, qty: int, reservation_id: str, now: float) -> None:
        """Set ``qty`` units aside for a reservation; raise OutOfStock if fewer are available."""
        if type(qty) is not int or qty <= 0:
            raise _bad_quantity(self.sku, qty)
        available = self.on_hand - self.reserved
        if qty > available:
            raise OutOfStock(f"{self.sku}: {qty} requested, {available} available")
        self.reserved += qty
        self.record(
            StockReserved(at=now, sku=self.sku, quantity=qty, reservation_id=reservation_id)
        )
        self.record(StockChanged(at=now, sku=self.sku, available=available - qty))

    def release(self, qty: int, reservation_id: str, reason: str, now: float) -> None:
        """Give ``qty`` reserved units back to available stock (reason: see RELEASE_REASONS)."""
        if type(qty) is not int or qty <= 0:
            raise _bad_quantity(self.sku, qty)
        if reason not in _STOCK_RELEASE_REASONS:
            raise InvalidValue(
                f"{self.sku}: release reason must be one of "
                f"{sorted(_STOCK_RELEASE_REASONS)}, got {reason!r}"
            )
        if qty > self.reserved:
            raise InvalidQuantity(
                f"{self.sku}: cannot release {qty}, only {self.reserved} reserved"
            )
        self.reserved -= qty
        self.record(
            StockReleased(
                at=now, sku=self.sku, quantity=qty, reservation_id=reservation_id, reason=reason
            )
        )
        self.record(StockChanged(at=now, sku=self.sku, available=self.on_hand - self.reserved))

    def commit(self, qty: int, reservation_id: str, now: float) -> None:
        """Sell ``qty`` reserved units: they leave on-hand stock (availability is unchanged)."""
        if type(qty) is not int or qty <= 0:
            raise _bad_quantity(self.sku, qty)
        if qty > self.reserved:
            raise InvalidQuantity(f"{self.sku}: cannot commit {qty}, only {self.reserved} reserved")
        self.reserved -= qty
        self.on_hand -= qty
        self.sold += qty
        self.record(
            StockCommitted(at=now, sku=self.sku, quantity=qty, reservation_id=reservation_id)
        )

    def restock(self, qty: int, reason: str, now: float) -> None:
        """Add ``qty`` units on hand: a supplier delivery (``"supplier"``) or a ``"return"``."""
        if type(qty) is not int or qty <= 0:
            raise _bad_quantity(self.sku, qty)
        if reason == SUPPLIER:
            self.received += qty
        elif reason == RETURN:
            self.returned += qty
        else:
            raise InvalidValue(
                f"{self.sku}: restock reason must be 'supplier' or 'return', got {reason!r}"
            )
        self.on_hand += qty
        self.record(StockReplenished(at=now, sku=self.sku, quantity=qty, reason=reason))
        self.record(StockChanged(at=now, sku=self.sku, available=self.on_hand - self.reserved))

    def check_invariants(self) -> None:
        """Raise InventoryCorrupted unless 0 <= reserved <= on_hand and units are conserved."""
        counters = {
            "initial": self.initial,
            "received": self.received,
            "returned": self.returned,
            "sold": self.sold,
            "reserved": self.reserved,
        }
        for name, value in counters.items():
            if value < 0:
                raise InventoryCorrupted(f"{self.sku}: {name} is negative ({value})")
        if self.reserved > self.on_hand:
            raise InventoryCorrupted(
                f"{self.sku}: {self.reserved} reserved exceeds {self.on_hand} on hand"
            )
        expected = self.initial + self.received + self.returned - self.sold
        if self.on_hand != expected:
            raise InventoryCorrupted(
                f"{self.sku}: {self.on_hand} on hand, but initial {self.initial} + received "
                f"{self.received} + returned {self.returned} - sold {self.sold} = {expected}"
            )


@dataclass(slots=True)
class Reservation(ShallowCopied, EventSource):
    """Units of several SKUs held for one order until committed, released or expired.

    ``lines`` are ``(sku, qty)`` pairs sorted by SKU. The stock items record the events
    (each carries the reservation id), so a reservation records none of its own.
    """

    id: str
    order_id: str
    lines: tuple[tuple[str, int], ...]
    created_at: float
    expires_at: float
    status: str = ACTIVE
    closed_at: float | None = None
    reason: str | None = None
    events: list[DomainEvent] = events_field()

    def __post_init__(self) -> None:
        """Check the lines (sorted by SKU, unique, 1..MAX_PER_LINE units), times and status."""
        if not self.lines:
            raise InvalidValue(f"reservation {self.id} has no lines")
        previous = None
        for sku, qty in self.lines:
            if type(qty) is not int or not 0 < qty <= MAX_PER_LINE:
                raise InvalidQuantity(
                    f"reservation {self.id}: {sku} quantity must be 1..{MAX_PER_LINE}, got {qty!r}"
                )
            if previous is not None and not previous < sku:
                raise InvalidValue(
                    f"reservation {self.id}: lines must be sorted by unique sku, "
                    f"{sku!r} follows {previous!r}"
                )
            previous = sku
        if not self.expires_at > self.created_at:
            raise InvalidValue(
                f"reservation {self.id}: expires_at {self.expires_at} must be after "
                f"created_at {self.created_at}"
            )
        if self.status not in RESERVATION_STATUSES:
            raise InvalidValue(f"reservation {self.id}: unknown status {self.status!r}")

    def is_expired(self, now: float) -> bool:
        """Return True from ``expires_at`` on (a reservation expires exactly at that instant)."""
        return now >= self.expires_at

    def _ensure_active(self) -> None:
        if self.status != ACTIVE:
            raise ReservationNotActive(f"reservation {self.id} is {self.status}, not active")

    def commit(self, now: float) -> None:
        """Mark the reservation committed (its units were sold)."""
        self._ensure_active()
        self.status = COMMITTED
        self.closed_at = now

    def release(self, reason: str, now: float) -> None:
        """Mark the reservation released for one of RELEASE_REASONS."""
        self._ensure_active()
        if reason not in RELEASE_REASONS:
            raise InvalidValue(
                f"reservation {self.id}: release reason must be one of "
                f"{sorted(RELEASE_REASONS)}, got {reason!r}"
            )
        self.status = RELEASED
        self.closed_at = now
        self.reason = reason

    def expire(self, now: float) -> None:
        """Mark the reservation expired; raise ReservationNotExpired before ``expires_at``."""
        self._ensure_active()
        if now < self.expires_at:
            raise ReservationNotExpired(
                f"reservation {self.id} expires at {self.expires_at}, not expired at {now}"
            )
        self.status = EXPIRED
        self.closed_at = now
        self.reason = EXPIRED_REASON


# --- operations over several stock items (all or nothing, in SKU order) -----------------------
def _pair(
    items: Sequence[StockItem], lines: tuple[tuple[str, int], ...], reservation_id: str
) -> list[tuple[StockItem, int]]:
    """Match each line to its stock item; check the items come in the global lock order."""
    by_sku: dict[str, StockItem] = {}
    previous: str | None = None
    for item in items:
        sku = item.sku
        if previous is not None and not previous < sku:
            raise InvalidValue(
                f"stock items must be passed sorted by unique sku (the lock order): "
                f"{sku!r} follows {previous!r}"
            )
        by_sku[sku] = item
        previous = sku
    pairs = []
    for sku, qty in lines:
        item = by_sku.get(sku)
        if item is None:
            raise NotFound(f"stock item {sku!r} not found (reservation {reservation_id})")
        pairs.append((item, qty))
    return pairs


def _held(items: Sequence[StockItem], reservation: Reservation) -> list[tuple[StockItem, int]]:
    """Pair an active reservation's lines with their items; check the units are still held."""
    reservation._ensure_active()
    pairs = _pair(items, reservation.lines, reservation.id)
    for item, qty in pairs:
        if qty > item.reserved:
            raise InventoryCorrupted(
                f"{item.sku}: reservation {reservation.id} holds {qty}, "
                f"but only {item.reserved} reserved"
            )
    return pairs


def reserve(
    items: Sequence[StockItem],
    lines: Mapping[str, int],
    reservation_id: str,
    order_id: str,
    now: float,
    ttl: float,
) -> Reservation:
    """Reserve every line for an order, or nothing; return the active reservation.

    ``items`` are the stock items of the lines sorted by SKU (extra items are ignored).
    Raises InvalidQuantity for a line outside 1..MAX_PER_LINE, NotFound for a line with no
    item, and OutOfStock (naming every short line) before any item has changed.
    """
    if not ttl > 0:
        raise InvalidValue(f"reservation {reservation_id}: ttl must be positive, got {ttl!r}")
    reservation = Reservation(
        id=reservation_id,
        order_id=order_id,
        lines=tuple(sorted(lines.items())),
        created_at=now,
        expires_at=now + ttl,
    )
    pairs = _pair(items, reservation.lines, reservation_id)
    short = [(item, qty) for item, qty in pairs if qty > item.on_hand - item.reserved]
    if short:
        raise OutOfStock(
            "; ".join(
                f"{item.sku}: {qty} requested, {item.available} available" for item, qty in short
            )
        )
    for item, qty in pairs:  # ascending SKU order: the global lock order
        item.reserve(qty, reservation_id, now)
    return reservation


def release(items: Sequence[StockItem], reservation: Reservation, reason: str, now: float) -> None:
    """Give an active reservation's units back (payment failed, abandoned, cancelled)."""
    pairs = _held(items, reservation)
    reservation.release(reason, now)
    for item, qty in pairs:
        item.release(qty, reservation.id, reason, now)


def expire(items: Sequence[StockItem], reservation: Reservation, now: float) -> None:
    """Give back the units of an active reservation whose time-to-live has run out at ``now``."""
    pairs = _held(items, reservation)
    reservation.expire(now)
    for item, qty in pairs:
        item.release(qty, reservation.id, EXPIRED_REASON, now)


def commit(items: Sequence[StockItem], reservation: Reservation, now: float) -> None:
    """Sell an active reservation's units (on payment).

    An active reservation past its ``expires_at`` that has not been expired yet still holds
    its units, so it may be committed: nothing is oversold.
    """
    pairs = _held(items, reservation)
    reservation.commit(now)
    for item, qty in pairs:
        item.commit(qty, reservation.id, now)


def restock(item: StockItem, qty: int, reason: str, now: float) -> None:
    """Add units on hand for a ``"supplier"`` delivery or a ``"return"`` (the item's method)."""
    item.restock(qty, reason, now)


def availability(items: Iterable[StockItem]) -> dict[str, int]:
    """Return the units available for sale of each item, by SKU."""
    return {item.sku: item.on_hand - item.reserved for item in items}
