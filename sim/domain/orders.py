"""The Order aggregate and its lifecycle: placement, payment, shipping, cancellation, returns.

An order snapshots the prices of a checkout: its :class:`OrderLine` values carry each line's
share of the discounts and its tax, so a partial return refunds exactly that share. The
lifecycle is the data in :data:`ORDER_TRANSITIONS` (oscar keeps it as configuration too)::

    pending -> processing -> shipped -> delivered -> return_requested -> returned -> refunded
       |            |                                        ^                          |
       +------------+--> cancelled                           +--------------------------+
                                                      (more units still to return)

Cancelling is possible only before shipping. A paid order that is cancelled stays paid in
the books: it is paid-then-refunded, and :meth:`Order.mark_refunded` records the refund
without leaving ``cancelled``. Shipping is refunded only by the return that brings the
last unit back, so returning everything, in any number of steps, refunds exactly the total.

Every transition records :class:`~sim.domain.events.OrderStatusChanged`, the customer
notification, as a domain event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from sim.domain.errors import IllegalTransition, InvalidAmount, InvalidReturn, InvalidValue
from sim.domain.events import (
    DomainEvent,
    EventSource,
    OrderPlaced,
    OrderStatusChanged,
    events_field,
)
from sim.domain.money import Money
from sim.domain.snapshots import ShallowCopied


class OrderStatus(str, Enum):
    """The states of an order's lifecycle."""

    PENDING = "pending"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"
    REFUNDED = "refunded"

    def __str__(self) -> str:
        """Return the plain value (``"pending"``)."""
        return self.value


_S = OrderStatus

ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    _S.PENDING: frozenset({_S.PROCESSING, _S.CANCELLED}),
    _S.PROCESSING: frozenset({_S.SHIPPED, _S.CANCELLED}),
    _S.SHIPPED: frozenset({_S.DELIVERED}),
    _S.DELIVERED: frozenset({_S.RETURN_REQUESTED}),
    _S.RETURN_REQUESTED: frozenset({_S.RETURNED}),
    _S.RETURNED: frozenset({_S.REFUNDED}),
    _S.REFUNDED: frozenset({_S.RETURN_REQUESTED}),
    _S.CANCELLED: frozenset(),
}
"""Each state -> the states an order may move to from it; every other move is illegal."""


def can_transition(old: OrderStatus, new: OrderStatus) -> bool:
    """Return True if :data:`ORDER_TRANSITIONS` allows moving from ``old`` to ``new``."""
    return new in ORDER_TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One priced line of an order: its allocated share of the discount and its tax."""

    sku: str
    category_id: str
    unit_price: Money
    quantity: int
    discount: Money
    tax: Money

    def __deepcopy__(self, memo: dict[int, Any]) -> OrderLine:
        """Return self: a line is immutable (frozen, immutable fields); snapshots stay cheap."""
        return self

    def __post_init__(self) -> None:
        """Reject a quantity below 1, a negative price or tax, or a discount above the amount."""
        quantity = self.quantity
        if type(quantity) is not int or quantity < 1:
            raise InvalidValue(f"{self.sku}: quantity must be at least 1, got {quantity!r}")
        if self.unit_price.minor < 0 or self.tax.minor < 0:
            raise InvalidAmount(
                f"{self.sku}: unit price {self.unit_price} and tax {self.tax} must not be negative"
            )
        amount = self.unit_price.minor * quantity
        if not 0 <= self.discount.minor <= amount:
            raise InvalidAmount(
                f"{self.sku}: discount {self.discount} must be between 0 and the line amount "
                f"{Money(amount, self.unit_price.currency)}"
            )

    @property
    def amount(self) -> Money:
        """Return unit price times quantity, before discount and tax."""
        return self.unit_price * self.quantity

    @property
    def total(self) -> Money:
        """Return unit price times quantity, minus the discount, plus the tax."""
        return self.unit_price * self.quantity - self.discount + self.tax

    def refund_for(self, units: int, already_returned: int = 0) -> Money:
        """Return what ``units`` more returned units of this line refund, discount and tax in.

        The share of ``n`` units is ``total.fraction(n, quantity)``; a step refunds the
        difference of the cumulative shares, so the last units take the rounding remainder
        and returning every unit, in any number of steps, refunds exactly :attr:`total`.
        """
        quantity = self.quantity
        if (
            type(units) is not int
            or units < 1
            or already_returned < 0
            or already_returned + units > quantity
        ):
            raise InvalidReturn(
                f"{self.sku}: cannot return {units!r} unit(s) after {already_returned} "
                f"of {quantity} returned"
            )
        line_total = self.total
        return line_total.fraction(already_returned + units, quantity) - line_total.fraction(
            already_returned, quantity
        )


@dataclass(slots=True)
class Order(ShallowCopied, EventSource):
    """An order: snapshotted lines and totals, its lifecycle state, returns and refunds.

    Create it with :meth:`place`; change it only through the transition methods.
    ``returned`` counts the units received back per SKU, ``pending_return`` the units of
    the open return request, ``refund_due`` what the open return (or a paid cancellation)
    still has to refund, ``refunded`` what has been refunded so far. ``payment_ids`` lists
    every payment opened for the order, oldest first (:meth:`add_payment`), so cancelling
    the order can close one the gateway still holds; ``payment_id`` is the one that paid.
    """

    id: str
    user_id: str
    lines: tuple[OrderLine, ...]
    subtotal: Money
    discount: Money
    tax: Money
    shipping: Money
    total: Money
    coupon_codes: tuple[str, ...]
    reservation_id: str | None
    placed_at: float
    status: OrderStatus = OrderStatus.PENDING
    timestamps: dict[OrderStatus, float] = field(default_factory=dict)
    payment_id: str | None = None
    cancel_reason: str | None = None
    returned: dict[str, int] = field(default_factory=dict)
    pending_return: dict[str, int] = field(default_factory=dict)
    refund_due: Money = field(default_factory=Money.zero)
    refunded: Money = field(default_factory=Money.zero)
    payment_ids: list[str] = field(default_factory=list)
    events: list[DomainEvent] = events_field()

    @classmethod
    def place(
        cls,
        id: str,
        user_id: str,
        lines: Sequence[OrderLine],
        *,
        subtotal: Money,
        discount: Money,
        tax: Money,
        shipping: Money,
        total: Money,
        coupon_codes: Sequence[str] = (),
        reservation_id: str | None = None,
        now: float,
    ) -> Order:
        """Create a pending order and record OrderPlaced.

        Checks that there are lines, one per SKU, that they add up to the subtotal, discount
        and tax, that no amount is negative, and that total == subtotal - discount + tax +
        shipping; raises InvalidValue / InvalidAmount otherwise.
        """
        lines = tuple(lines)
        if not lines:
            raise InvalidValue(f"order {id}: an order needs at least one line")
        skus = [line.sku for line in lines]
        if len(set(skus)) != len(skus):
            raise InvalidValue(f"order {id}: one line per SKU, got {', '.join(skus)}")
        for name, value in (
            ("subtotal", subtotal),
            ("discount", discount),
            ("tax", tax),
            ("shipping", shipping),
        ):
            if value.minor < 0:
                raise InvalidAmount(f"order {id}: {name} must not be negative, got {value}")
        expected = subtotal - discount + tax + shipping
        if total != expected:
            raise InvalidAmount(
                f"order {id}: total {total} != subtotal {subtotal} - discount {discount} "
                f"+ tax {tax} + shipping {shipping} = {expected}"
            )
        zero = Money.zero(total.currency)
        sums = {"subtotal": zero, "discount": zero, "tax": zero}
        for line in lines:
            sums["subtotal"] += line.amount
            sums["discount"] += line.discount
            sums["tax"] += line.tax
        for name, value in (("subtotal", subtotal), ("discount", discount), ("tax", tax)):
            if sums[name] != value:
                raise InvalidAmount(
                    f"order {id}: the lines' {name} adds up to {sums[name]}, not {value}"
                )
        order = cls(
            id=id,
            user_id=user_id,
            lines=lines,
            subtotal=subtotal,
            discount=discount,
            tax=tax,
            shipping=shipping,
            total=total,
            coupon_codes=tuple(coupon_codes),
            reservation_id=reservation_id,
            placed_at=now,
            timestamps={OrderStatus.PENDING: now},
            refund_due=zero,
            refunded=zero,
        )
        order.record(OrderPlaced(at=now, order_id=id, user_id=user_id, total=total))
        return order

    # --- reading -------------------------------------------------------------------------
    @property
    def is_paid(self) -> bool:
        """Return True once the order was paid, even if it was cancelled or refunded since."""
        return OrderStatus.PROCESSING in self.timestamps

    @property
    def net_paid(self) -> Money:
        """Return what the customer has paid net of refunds (zero if never paid)."""
        if OrderStatus.PROCESSING in self.timestamps:
            return self.total - self.refunded
        return Money.zero(self.total.currency)

    @property
    def units(self) -> int:
        """Return the number of units ordered over all lines."""
        return sum(line.quantity for line in self.lines)

    @property
    def returnable(self) -> dict[str, int]:
        """Return SKU -> units neither returned nor in an open return request (> 0 only)."""
        out: dict[str, int] = {}
        for line in self.lines:
            left = (
                line.quantity
                - self.returned.get(line.sku, 0)
                - self.pending_return.get(line.sku, 0)
            )
            if left > 0:
                out[line.sku] = left
        return out

    def _line(self, sku: str) -> OrderLine:
        for line in self.lines:
            if line.sku == sku:
                return line
        raise InvalidReturn(f"order {self.id}: no line for {sku}")

    # --- transitions -----------------------------------------------------------------------
    def _check(self, new: OrderStatus) -> None:
        if new not in ORDER_TRANSITIONS[self.status]:
            raise IllegalTransition(f"order {self.id}: cannot go from {self.status} to {new}")

    def _move(self, new: OrderStatus, now: float) -> None:
        self._check(new)
        old = self.status
        self.status = new
        self.timestamps[new] = now
        self.record(
            OrderStatusChanged(
                at=now, order_id=self.id, user_id=self.user_id, old=old.value, new=new.value
            )
        )

    def add_payment(self, payment_id: str) -> None:
        """Note a payment opened for this pending order (the gateway is about to be called).

        Raises InvalidValue for an order that no longer awaits payment, an empty id, or an
        id already noted.
        """
        if self.status is not OrderStatus.PENDING:
            raise InvalidValue(
                f"order {self.id}: is {self.status}, not awaiting payment ({payment_id})"
            )
        if not payment_id or payment_id in self.payment_ids:
            raise InvalidValue(
                f"order {self.id}: payment id {payment_id!r} is empty or already noted"
            )
        self.payment_ids.append(payment_id)

    def mark_paid(self, payment_id: str, now: float) -> None:
        """Note the captured payment: pending -> processing."""
        self._check(OrderStatus.PROCESSING)
        if not payment_id:
            raise InvalidValue(f"order {self.id}: payment id must not be empty")
        self.payment_id = payment_id
        self._move(OrderStatus.PROCESSING, now)

    def cancel(self, now: float, reason: str) -> Money:
        """Cancel before shipping (from pending or processing); return the refund due.

        The refund due is the whole total if the order was paid, else zero; a paid
        cancellation is completed by :meth:`mark_refunded`.
        """
        self._check(OrderStatus.CANCELLED)
        self.cancel_reason = reason
        self.refund_due = self.net_paid
        self._move(OrderStatus.CANCELLED, now)
        return self.refund_due

    def ship(self, now: float) -> None:
        """Hand the order to the carrier: processing -> shipped."""
        self._move(OrderStatus.SHIPPED, now)

    def deliver(self, now: float) -> None:
        """Note the delivery: shipped -> delivered."""
        self._move(OrderStatus.DELIVERED, now)

    def request_return(self, units: Mapping[str, int], now: float) -> Money:
        """Open a return of ``units`` (SKU -> units) and return the refund it will be due.

        Allowed from delivered, and from refunded while units remain unreturned. Each
        line's share comes from :meth:`OrderLine.refund_for`; shipping is added only when
        this return brings the last unit of the order back. Raises InvalidReturn for an
        empty request, an unknown SKU, or more units than are left to return.
        """
        self._check(OrderStatus.RETURN_REQUESTED)
        if not units:
            raise InvalidReturn(f"order {self.id}: a return needs at least one unit")
        due = Money.zero(self.total.currency)
        for sku, qty in units.items():
            line = self._line(sku)
            done = self.returned.get(sku, 0)
            if type(qty) is not int or qty < 1 or done + qty > line.quantity:
                raise InvalidReturn(
                    f"order {self.id}: {sku}: cannot return {qty!r} unit(s), "
                    f"{line.quantity - done} of {line.quantity} left to return"
                )
            due += line.refund_for(qty, done)
        returned_units = sum(self.returned.values()) + sum(units.values())
        if returned_units == self.units:
            due += self.shipping
        self.pending_return = dict(units)
        self.refund_due = due
        self._move(OrderStatus.RETURN_REQUESTED, now)
        return due

    def receive_return(self, now: float) -> dict[str, int]:
        """Note that the requested units arrived back; return them (SKU -> units) to restock."""
        self._move(OrderStatus.RETURNED, now)
        received, self.pending_return = self.pending_return, {}
        for sku, qty in received.items():
            self.returned[sku] = self.returned.get(sku, 0) + qty
        return received

    def mark_refunded(self, amount: Money, now: float) -> None:
        """Record the refund of the received return (returned -> refunded) or of a paid cancel.

        ``amount`` must be exactly the refund due. A cancelled order stays cancelled.
        Raises IllegalTransition in any other state or when nothing is due on a
        cancelled order, InvalidAmount for an amount other than the refund due.
        """
        cancelled = self.status is OrderStatus.CANCELLED
        if cancelled:
            if not self.refund_due:
                raise IllegalTransition(
                    f"order {self.id}: cannot go from cancelled to refunded, nothing is due"
                )
        else:
            self._check(OrderStatus.REFUNDED)
        if amount != self.refund_due:
            raise InvalidAmount(
                f"order {self.id}: refund of {amount} does not match the {self.refund_due} due"
            )
        self.refunded += amount
        self.refund_due = Money.zero(self.total.currency)
        if not cancelled:
            self._move(OrderStatus.REFUNDED, now)


@dataclass(slots=True)
class CustomerHistory(ShallowCopied):
    """One customer's orders and recent payment attempts (store key: ``user_id``).

    It answers "my orders" without a scan of every order, and gives the fraud rules the
    attempt velocity and failure count they score; memory per customer stays bounded by
    ``ATTEMPTS_KEPT`` recent attempt times.
    """

    ATTEMPTS_KEPT: ClassVar[int] = 20

    user_id: str
    order_ids: list[str] = field(default_factory=list)
    attempt_times: list[float] = field(default_factory=list)
    failed_payments: int = 0

    def add_order(self, order_id: str) -> None:
        """Remember a newly placed order."""
        self.order_ids.append(order_id)

    def note_attempt(self, now: float) -> None:
        """Remember that a payment attempt started at ``now``."""
        self.attempt_times.append(now)
        if len(self.attempt_times) > self.ATTEMPTS_KEPT:
            del self.attempt_times[0]

    def note_failure(self) -> None:
        """Count a payment that ended declined, blocked or failed."""
        self.failed_payments += 1
