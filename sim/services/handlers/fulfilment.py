"""Use cases after checkout: cancellation, shipping, delivery, returns, refunds, bulk orders.

Cancelling an order (its customer or an admin, or the expiry of its reservation) also
closes any payment the gateway still holds for it
(:func:`~sim.services.handlers.shopping.close_open_payments`). Shipping, delivery and
receiving and refunding returns are staff work: the acting user needs ``manage_orders``
(merchants and admins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sim.domain import inventory
from sim.domain.errors import NotFound, PermissionDenied
from sim.domain.money import Money
from sim.domain.orders import Order, OrderStatus
from sim.domain.users import Permission, Role, require
from sim.services.handlers.shopping import close_open_payments, place_order, release_order
from sim.services.policies import ShopPolicies
from sim.services.store import UnitOfWork


def _require_customer_or_staff(uow: UnitOfWork, actor_id: str, order: Order) -> None:
    actor = uow.users.get(actor_id)
    if actor.id != order.user_id and actor.role is not Role.ADMIN:
        raise PermissionDenied(
            f"user {actor_id} ({actor.role.value}) may not act on order {order.id} of "
            f"user {order.user_id}"
        )


def _require_staff(uow: UnitOfWork, actor_id: str) -> None:
    """Raise PermissionDenied unless the actor may manage orders (NotFound: no such user)."""
    actor = uow.users.find_readonly(actor_id)
    if actor is None:
        raise NotFound(f"user {actor_id!r} not found")
    require(actor, Permission.MANAGE_ORDERS)


def _refund(uow: UnitOfWork, order: Order, amount: Money, now: float) -> None:
    if amount:
        uow.payments.get(order.payment_id).refund(amount, now)
    order.mark_refunded(amount, now)


def cancel_order(uow: UnitOfWork, actor_id: str, order_id: str, now: float, reason: str) -> Money:
    """Cancel an order before it ships (its customer or an admin); return the refund made.

    An unpaid order gives back its reserved stock and held coupon uses; a paid one is
    refunded in full and its sold units go back on the shelf. A payment the gateway still
    holds for the order is cancelled with it (its late answer is settled without it).
    """
    with uow:
        order = uow.orders.get(order_id)
        _require_customer_or_staff(uow, actor_id, order)
        was_paid = order.status is OrderStatus.PROCESSING
        due = order.cancel(now, reason)
        close_open_payments(uow, order, now)
        if was_paid:
            for item, line in zip(
                uow.stock.lock_many(line.sku for line in order.lines),
                sorted(order.lines, key=lambda line: line.sku),
                strict=True,
            ):
                item.restock(line.quantity, inventory.RETURN, now)
            _refund(uow, order, due, now)
        else:
            release_order(uow, order, inventory.CANCELLED, now)
        uow.commit()
        return due


def expire_order(uow: UnitOfWork, order_id: str, now: float) -> bool:
    """Cancel a pending order whose stock reservation has expired; return True if it did.

    A payment the gateway still holds for the order is cancelled with it.
    """
    with uow:
        order = uow.orders.get(order_id)
        if order.status is not OrderStatus.PENDING or order.reservation_id is None:
            return False
        if not uow.reservations.get(order.reservation_id).is_expired(now):
            return False
        order.cancel(now, "reservation expired")
        close_open_payments(uow, order, now)
        release_order(uow, order, inventory.ABANDONED, now)
        uow.commit()
        return True


def ship_order(uow: UnitOfWork, actor_id: str, order_id: str, now: float) -> None:
    """Hand a paid, picked and packed order to the carrier (staff with ``manage_orders``)."""
    with uow:
        _require_staff(uow, actor_id)
        uow.orders.get(order_id).ship(now)
        uow.commit()


def deliver_order(uow: UnitOfWork, actor_id: str, order_id: str, now: float) -> None:
    """Note that the carrier delivered an order (staff with ``manage_orders``)."""
    with uow:
        _require_staff(uow, actor_id)
        uow.orders.get(order_id).deliver(now)
        uow.commit()


def request_return(
    uow: UnitOfWork, user_id: str, order_id: str, units: Mapping[str, int], now: float
) -> Money:
    """Open a return of some units of a delivered order (its customer); return the refund due."""
    with uow:
        order = uow.orders.get(order_id)
        _require_customer_or_staff(uow, user_id, order)
        due = order.request_return(units, now)
        uow.commit()
        return due


def receive_return(uow: UnitOfWork, actor_id: str, order_id: str, now: float) -> dict[str, int]:
    """Take returned units back into stock; return them (SKU -> units) (``manage_orders``)."""
    with uow:
        _require_staff(uow, actor_id)
        order = uow.orders.get(order_id)
        received = order.receive_return(now)
        for item in uow.stock.lock_many(received):
            item.restock(received[item.sku], inventory.RETURN, now)
        uow.commit()
        return received


def refund_return(uow: UnitOfWork, actor_id: str, order_id: str, now: float) -> Money:
    """Refund a received return through the order's payment; return the amount.

    The actor needs ``manage_orders`` (merchants and admins).
    """
    with uow:
        _require_staff(uow, actor_id)
        order = uow.orders.get(order_id)
        due = order.refund_due
        _refund(uow, order, due, now)
        uow.commit()
        return due


def bulk_place_orders(
    uow: UnitOfWork,
    actor_id: str,
    orders: Sequence[tuple[str, Mapping[str, int]]],
    now: float,
    *,
    policies: ShopPolicies,
) -> list[str]:
    """Place many orders (user id, SKU -> units) for a Merchant or Admin, all or nothing.

    One transaction: if any order fails (out of stock, unknown user or product), none is
    placed and no stock stays reserved.
    """
    with uow:
        require(uow.users.get(actor_id), Permission.MANAGE_ORDERS)
        placed = []
        for user_id, lines in orders:
            uow.users.get(user_id)
            placed.append(place_order(uow, user_id, lines, [], now, policies).id)
        uow.commit()
        return placed


def order_history(uow: UnitOfWork, user_id: str) -> list[Order]:
    """Return the user's orders, oldest first (a read, no transaction)."""
    history = uow.histories.find_readonly(user_id)
    if history is None:
        return []
    return [uow.orders.find_readonly(order_id) for order_id in history.order_ids]
