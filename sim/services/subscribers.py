"""Event handlers subscribed to the bus: the ledger, customer notifications, analytics.

Each runs after the transaction that raised its event has committed, in a transaction
of its own, so a rolled-back checkout never reaches the ledger or the customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.domain.events import (
    OrderStatusChanged,
    PaymentCaptured,
    PaymentRefunded,
    PaymentVoided,
)
from sim.domain.ledger import EntryKind, make_entry
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
    def write(event: LedgerEvent) -> None:
        with uow:
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
            uow.commit()

    return write


def notify_customer(uow: UnitOfWork, event: OrderStatusChanged) -> None:
    """Queue a status notification for the order's customer in the outbox."""
    with uow:
        uow.notifications.append(
            Notification(event.at, event.user_id, event.order_id, f"Your order is now {event.new}")
        )
        uow.commit()


def attach_subscribers(uow: UnitOfWork, *, notifications: bool = True) -> UnitOfWork:
    """Subscribe the ledger (and, unless turned off, notifications) to the uow's bus."""
    bus = uow.bus
    bus.subscribe(PaymentCaptured, _ledger_writer(uow, EntryKind.CHARGE))
    bus.subscribe(PaymentRefunded, _ledger_writer(uow, EntryKind.REFUND))
    bus.subscribe(PaymentVoided, _ledger_writer(uow, EntryKind.VOID))
    if notifications:
        bus.subscribe(OrderStatusChanged, lambda event: notify_customer(uow, event))
    return uow
