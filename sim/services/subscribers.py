"""Event handlers subscribed to the bus: the ledger, customer notifications, analytics.

The ledger is written inside the transaction that raised its event (a capture, a refund, a
void), so a charge and its ledger entry are committed together or not at all, even if the
process dies between two transactions. Notifications and analytics run after that
transaction has committed, each in a transaction of its own. Either way a rolled-back
checkout never reaches the ledger or the customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.domain.events import (
    CartItemAdded,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
)
from sim.domain.ledger import EntryKind, make_entry
from sim.domain.orders import OrderStatus
from sim.domain.users import ActivityKind
from sim.services.handlers.accounts import record_activity
from sim.services.store import UnitOfWork


@dataclass(frozen=True, slots=True)
class Notification:
    """A message to a customer about one of their orders."""

    at: float
    user_id: str
    order_id: str
    text: str


LedgerEvent = PaymentCaptured | PaymentRefunded | PaymentVoided


def _ledger_writer(uow: UnitOfWork, kind: EntryKind) -> Callable[[LedgerEvent], None]:
    def write(event: LedgerEvent) -> None:  # runs inside the transaction of the event
        uow.ledger.append(
            make_entry(
                len(uow.ledger) + 1,
                kind,
                event.order_id,
                event.payment_id,
                event.amount,
                event.at,
            )
        )

    return write


def notify_customer(uow: UnitOfWork, event: OrderStatusChanged) -> None:
    """Queue a status notification for the order's customer in the outbox."""
    with uow:
        uow.notifications.append(
            Notification(event.at, event.user_id, event.order_id, f"Your order is now {event.new}")
        )
        uow.commit()


def record_cart_activity(uow: UnitOfWork, event: CartItemAdded) -> None:
    """Note an add-to-cart in the user's activity log (analytics)."""
    record_activity(uow, event.user_id, ActivityKind.ADDED_TO_CART, event.sku, event.at)


def record_purchase(uow: UnitOfWork, event: OrderStatusChanged) -> None:
    """Note a paid order in the customer's activity log (analytics)."""
    if event.new == OrderStatus.PROCESSING.value and event.old == OrderStatus.PENDING.value:
        record_activity(uow, event.user_id, ActivityKind.PURCHASED, event.order_id, event.at)


def attach_subscribers(
    uow: UnitOfWork, *, notifications: bool = True, analytics: bool = True
) -> UnitOfWork:
    """Subscribe the ledger, and unless turned off notifications and analytics, to the bus."""
    bus = uow.bus
    bus.subscribe_in_transaction(PaymentCaptured, _ledger_writer(uow, EntryKind.CHARGE))
    bus.subscribe_in_transaction(PaymentRefunded, _ledger_writer(uow, EntryKind.REFUND))
    bus.subscribe_in_transaction(PaymentVoided, _ledger_writer(uow, EntryKind.VOID))
    if notifications:
        bus.subscribe(OrderStatusChanged, lambda event: notify_customer(uow, event))
    if analytics:
        bus.subscribe(CartItemAdded, lambda event: record_cart_activity(uow, event))
        bus.subscribe(OrderStatusChanged, lambda event: record_purchase(uow, event))
    return uow
