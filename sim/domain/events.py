"""Domain events: frozen, past-tense facts that aggregates record and the bus publishes.

An aggregate appends events to its own ``events`` list as its state changes; the unit of
work collects them after a successful commit and hands them to the message bus, so a
rolled-back change never announces anything. Every event carries ``at``, the simulated
time in seconds when it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.domain.money import Money


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Base of every domain event: something that happened at simulated time ``at``."""

    at: float


class EventSource:
    """Mixin for aggregates that record domain events for the unit of work to publish."""

    __slots__ = ()
    events: list[DomainEvent]

    def record(self, event: DomainEvent) -> None:
        """Append an event to this aggregate's pending events."""
        self.events.append(event)


def events_field() -> list[DomainEvent]:
    """Declare an aggregate's ``events`` list: not compared, not shown in reprs."""
    return field(default_factory=list, compare=False, repr=False)


# --- users ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UserRegistered(DomainEvent):
    """A new user account was created."""

    user_id: str
    role: str


@dataclass(frozen=True, slots=True)
class UserLoggedIn(DomainEvent):
    """A user authenticated and a session was opened."""

    user_id: str


@dataclass(frozen=True, slots=True)
class UserLoggedOut(DomainEvent):
    """A session was closed by its user."""

    user_id: str


@dataclass(frozen=True, slots=True)
class LoginFailed(DomainEvent):
    """A login attempt for an existing account gave the wrong password."""

    user_id: str
    failures: int


@dataclass(frozen=True, slots=True)
class AccountLockedOut(DomainEvent):
    """An account was locked after too many failed logins."""

    user_id: str
    until: float


@dataclass(frozen=True, slots=True)
class UserRoleChanged(DomainEvent):
    """An administrator gave a user another role."""

    user_id: str
    old: str
    new: str


# --- catalog -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProductCreated(DomainEvent):
    """A product was added to the catalog."""

    sku: str


@dataclass(frozen=True, slots=True)
class ProductUpdated(DomainEvent):
    """A product's name, description, price or category changed."""

    sku: str


@dataclass(frozen=True, slots=True)
class ProductDeleted(DomainEvent):
    """A product was removed from the catalog."""

    sku: str


@dataclass(frozen=True, slots=True)
class CategoryCreated(DomainEvent):
    """A category was added to the category tree (``parent_id`` None: a top-level category)."""

    category_id: str
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class CategoryMoved(DomainEvent):
    """A category was re-parented in the category tree."""

    category_id: str
    old_parent_id: str | None
    new_parent_id: str | None


# --- inventory -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StockReserved(DomainEvent):
    """Units were set aside for an order at checkout."""

    sku: str
    quantity: int
    reservation_id: str


@dataclass(frozen=True, slots=True)
class StockReleased(DomainEvent):
    """A reservation's units went back to stock available for sale."""

    sku: str
    quantity: int
    reservation_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StockCommitted(DomainEvent):
    """Reserved units were sold: they left on-hand stock."""

    sku: str
    quantity: int
    reservation_id: str


@dataclass(frozen=True, slots=True)
class StockReplenished(DomainEvent):
    """Units were added to on-hand stock (a delivery from a supplier or a return)."""

    sku: str
    quantity: int
    reason: str


@dataclass(frozen=True, slots=True)
class StockChanged(DomainEvent):
    """The stock available for sale of a SKU changed (caches of the product go stale)."""

    sku: str
    available: int


# --- carts and coupons ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CartItemAdded(DomainEvent):
    """Units of a SKU were put in a user's cart."""

    user_id: str
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class CartAbandoned(DomainEvent):
    """A cart with lines went untouched for longer than the abandonment window."""

    user_id: str


@dataclass(frozen=True, slots=True)
class CartRecovered(DomainEvent):
    """A user came back to a cart that had been counted as abandoned."""

    user_id: str


@dataclass(frozen=True, slots=True)
class CouponRedeemed(DomainEvent):
    """A coupon use was counted (its order was paid)."""

    code: str
    user_id: str
    order_id: str


# --- orders --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderPlaced(DomainEvent):
    """An order was created from a cart, with its prices snapshotted."""

    order_id: str
    user_id: str
    total: Money


@dataclass(frozen=True, slots=True)
class OrderStatusChanged(DomainEvent):
    """An order moved from one state of its lifecycle to another (a customer notification)."""

    order_id: str
    user_id: str
    old: str
    new: str


# --- payments ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PaymentCaptured(DomainEvent):
    """Money was taken from the customer for an order."""

    payment_id: str
    order_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class PaymentDeclined(DomainEvent):
    """The gateway or the fraud rules refused a payment."""

    payment_id: str
    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PaymentVoided(DomainEvent):
    """An authorisation was cancelled before capture: no money moved."""

    payment_id: str
    order_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class PaymentRefunded(DomainEvent):
    """Money went back to the customer (the whole capture or part of it)."""

    payment_id: str
    order_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class DuplicateChargePrevented(DomainEvent):
    """A retried payment request replayed its first result instead of charging again."""

    idempotency_key: str
    order_id: str
