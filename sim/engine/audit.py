"""The end-of-run audit: the shop's books checked against each other, rule by rule.

:func:`audit_books` checks a unit of work alone (money, ledger, stock, coupons, orders and
payments); :func:`audit` adds what only a simulated world knows (the shopper sessions and
the gateways' own records). Every broken rule is one :class:`Violation` naming the rule and
the ids involved; :class:`Audit` carries them as text (``"rule: ids detail"``, what reports
and the command line show) and as values.

The rules, by name:

- ``money``: captured minus refunded in the ledger equals the sum of ``net_paid`` over the
  orders (paid, net of refunds); ``money payments``: it also equals what the payments
  captured minus what they refunded.
- ``ledger <rule>``: :func:`sim.domain.ledger.reconcile`'s mismatches (a charge for no order,
  an order charged twice, refunds beyond the charge, a paid order with no charge, net amounts
  that differ); ``ledger orphan``: an entry whose order or payment does not exist, or whose
  payment belongs to another order.
- ``charged twice``: an order with more than one captured payment.
- ``negative stock`` / ``stock invariant``: a stock item's own counters
  (:meth:`sim.domain.inventory.StockItem.check_invariants`).
- ``stock conservation``: for every SKU, in the domain's terms,

      available + reserved + shipped - returned == initial + restocked

  where ``available`` is ``on_hand - reserved`` (free on the shelf), ``initial`` and
  ``restocked`` (``received``: supplier deliveries) are the item's counters, and the other
  terms come from the orders: ``reserved`` is the units of active reservations, ``shipped``
  the units of paid orders (sold units leave stock when the payment is captured), and
  ``returned`` the units put back on the shelf (received returns, and every unit of an order
  cancelled after it was paid). ``stock reserved`` / ``stock sold`` / ``stock returned``:
  the item's ``reserved`` / ``sold`` / ``returned`` counter differs from those order terms.
- ``coupon over its limit`` / ``coupon over its per-customer limit``: used + held uses exceed
  a limit; ``coupon uses``: the uses differ from the orders (used: paid orders carrying the
  code; held: the pending orders carrying it).
- ``illegal order state``; ``order stranded``: an order neither final (delivered, refunded,
  cancelled with nothing due) nor explicitly in flight (pending with an active reservation
  or an open payment; paid and in fulfilment: processing, shipped, return requested or
  returned); ``order reservation``: a paid order whose reservation was not committed.
- ``payment orphan``: a payment for no order; ``payment state``: a captured payment whose
  order is not paid with it, or a cancelled payment (closed with its order while the gateway
  held it) whose order is still pending; ``payment stranded``: a pending or failed payment
  whose order no longer waits for it, and that was not abandoned (its idempotency record
  still pending). A cancelled payment is final, as is one voided after a late approval.
- ``session twice`` / ``session lost`` / ``session state`` (:func:`audit` only): a shopper
  session recorded twice, started but never recorded (a gap in the session numbers, or a
  request of a session nobody recorded), or with an unknown end reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.domain import inventory
from sim.domain.errors import DomainError
from sim.domain.ledger import balance, reconcile
from sim.domain.money import Money
from sim.domain.orders import Order, OrderStatus
from sim.domain.payments import PaymentStatus
from sim.engine.shoppers import CLOSED_SID_BASE
from sim.services.store import UnitOfWork

if TYPE_CHECKING:
    from sim.engine.world import World

__all__ = [
    "FINAL_ORDER_STATES",
    "IN_FLIGHT_ORDER_STATES",
    "SESSION_END_REASONS",
    "Audit",
    "Violation",
    "audit",
    "audit_books",
]

FINAL_ORDER_STATES = frozenset({OrderStatus.DELIVERED, OrderStatus.REFUNDED, OrderStatus.CANCELLED})
"""Order states that need nothing more (a cancelled order only once nothing is due)."""

IN_FLIGHT_ORDER_STATES = frozenset(
    {
        OrderStatus.PROCESSING,
        OrderStatus.SHIPPED,
        OrderStatus.RETURN_REQUESTED,
        OrderStatus.RETURNED,
    }
)
"""Paid order states still moving through fulfilment or a return at the horizon."""

SESSION_END_REASONS = frozenset({"exit", "timeout", "in_flight"})
"""How a recorded shopper session may end (``in_flight``: still walking at the horizon)."""

_BOOK_COUNTS = (
    "orders",
    "orders_final",
    "orders_in_flight",
    "payments",
    "payments_final",
    "payments_in_flight",
    "ledger_entries",
    "skus",
    "coupons",
)
_WORLD_COUNTS = ("sessions", "sessions_final", "sessions_in_flight", "uncaptured_authorisations")

_ORDER_STATES = frozenset(OrderStatus)
_CAPTURED = frozenset(
    {PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
)
_OPEN_PAYMENT = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED})
_FINAL_PAYMENT = _CAPTURED | {
    PaymentStatus.DECLINED,
    PaymentStatus.VOIDED,
    PaymentStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its name, the ids involved and what was found."""

    rule: str
    ids: tuple[str, ...]
    detail: str = ""

    def __str__(self) -> str:
        """Return ``"rule: id id detail"``."""
        return f"{self.rule}: " + " ".join(part for part in (*self.ids, self.detail) if part)


@dataclass(frozen=True)
class Audit:
    """The end-of-run check of the shop's books: every violated rule with the ids involved.

    ``violations`` are the findings as text (what summary.json, the report and the command
    line show); ``findings`` the same as :class:`Violation` values; ``checked`` counts what
    was looked at (orders, payments, SKUs, sessions, ... and how many were still in flight).
    Two audits are equal when their violations are.
    """

    violations: tuple[str, ...]
    findings: tuple[Violation, ...] = field(default=(), compare=False, repr=False)
    checked: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Return True when no rule is violated."""
        return not self.violations

    @property
    def rules(self) -> tuple[str, ...]:
        """Return the names of the violated rules, sorted, each once."""
        return tuple(sorted({v.rule for v in self.findings}))

    @classmethod
    def of(cls, findings: Iterable[Violation], checked: Mapping[str, int] | None = None) -> Audit:
        """Build an audit from its findings (and the counts of what was checked)."""
        found = tuple(findings)
        return cls(tuple(str(v) for v in found), found, dict(checked or {}))


# --- the books of a unit of work -----------------------------------------------------------------
# The books are read as streams, each collection once: the rules keep what they need of an order
# or a payment (a few fields, or a running count), never the aggregates themselves. A file store
# therefore loads one order at a time, and the audit of a long run holds small facts, not every
# order, payment and line of the run at once.


@dataclass(frozen=True, slots=True)
class _OrderFacts:
    """What the ledger and payment rules read of an order (``reconcile``'s ``OrderLike``).

    Amounts are kept as minor units and made Money when read: a long run has tens of
    thousands of orders, and three Money objects each would double their facts' size.
    """

    id: str
    status: OrderStatus
    is_paid: bool
    payment_id: str | None
    currency: str
    total_minor: int
    net_paid_minor: int
    refunded_minor: int

    @property
    def total(self) -> Money:
        """Return the order's total."""
        return Money(self.total_minor, self.currency)

    @property
    def net_paid(self) -> Money:
        """Return what the order has paid, net of refunds."""
        return Money(self.net_paid_minor, self.currency)

    @property
    def refunded(self) -> Money:
        """Return what has been refunded of the order."""
        return Money(self.refunded_minor, self.currency)


@dataclass(frozen=True, slots=True)
class _PaymentFacts:
    """What the order, ledger and payment rules read of a payment."""

    id: str
    order_id: str
    status: PaymentStatus


class _OrderPass:
    """One pass over the orders: the order rules checked, and what the other rules need.

    Per SKU the units shipped and put back (stock), per coupon code the uses and holds
    (coupons), and per order its :class:`_OrderFacts` (ledger, payments); the order rules'
    findings are kept in the order the orders were read.
    """

    def __init__(
        self, uow: UnitOfWork, payments: Mapping[str, _PaymentFacts], checked: Counter[str]
    ) -> None:
        self.facts: dict[str, _OrderFacts] = {}
        self.shipped: Counter[str] = Counter()
        self.returned: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.held: dict[str, set[str]] = {}
        self.found: list[Violation] = []
        open_payment = {p.order_id for p in payments.values() if p.status in _OPEN_PAYMENT}
        captured = Counter(p.order_id for p in payments.values() if p.status in _CAPTURED)
        currencies: dict[str, str] = {}  # one string per currency, not one per order read
        share = uow.shared_id
        for order in uow.orders.values():
            oid = share(order.id)  # the store's shared id, not the copy read back
            self.facts[oid] = _OrderFacts(
                oid,
                order.status,
                order.is_paid,
                None if order.payment_id is None else share(order.payment_id),
                currencies.setdefault(order.total.currency, order.total.currency),
                order.total.minor,
                order.net_paid.minor,
                order.refunded.minor,
            )
            self._count_units(order)
            self._count_coupons(order)
            self._check(uow, order, open_payment, captured, checked)

    def _count_units(self, order: Order) -> None:
        if not order.is_paid:
            return
        cancelled = order.status is OrderStatus.CANCELLED
        for line in order.lines:
            self.shipped[line.sku] += line.quantity
            if cancelled:  # a paid cancellation puts every unit back on the shelf
                self.returned[line.sku] += line.quantity
        for sku, qty in order.returned.items():
            self.returned[sku] += qty

    def _count_coupons(self, order: Order) -> None:
        for code in order.coupon_codes:
            if order.is_paid:
                self.used[code] += 1
            elif order.status is OrderStatus.PENDING:
                self.held.setdefault(code, set()).add(order.id)

    def _check(
        self,
        uow: UnitOfWork,
        order: Order,
        open_payment: set[str],
        captured: Counter[str],
        checked: Counter[str],
    ) -> None:
        found = self.found
        oid, status = order.id, order.status
        if status not in _ORDER_STATES:
            found.append(Violation("illegal order state", (oid,), str(status)))
            return
        if captured[oid] > 1:
            found.append(Violation("charged twice", (oid,), f"{captured[oid]} captured payments"))
        reservation = (
            uow.reservations.find_readonly(order.reservation_id)
            if order.reservation_id is not None
            else None
        )
        if order.is_paid and reservation is not None and reservation.status != inventory.COMMITTED:
            found.append(
                Violation(
                    "order reservation",
                    (oid, reservation.id),
                    f"paid, but its reservation is {reservation.status}",
                )
            )
        if status is OrderStatus.PENDING:
            active = reservation is not None and reservation.status == inventory.ACTIVE
            if active or oid in open_payment:
                checked["orders_in_flight"] += 1
            else:
                state = reservation.status if reservation is not None else "missing"
                found.append(
                    Violation(
                        "order stranded",
                        (oid,),
                        f"pending with no open payment and its reservation {state}",
                    )
                )
        elif status in IN_FLIGHT_ORDER_STATES:
            checked["orders_in_flight"] += 1
        elif status is OrderStatus.CANCELLED and order.refund_due:
            found.append(
                Violation("order stranded", (oid,), f"cancelled with {order.refund_due} due")
            )
        else:
            checked["orders_final"] += 1


def audit_books(uow: UnitOfWork) -> Audit:
    """Check the books of ``uow``: money, ledger, stock, coupons, orders and payments."""
    found: list[Violation] = []
    checked: Counter[str] = Counter(dict.fromkeys(_BOOK_COUNTS, 0))
    payments: dict[str, _PaymentFacts] = {}
    by_payments = 0  # captured minus refunded, over the payments
    share = uow.shared_id
    for payment in uow.payments.values():
        pid = share(payment.id)
        payments[pid] = _PaymentFacts(pid, share(payment.order_id), payment.status)
        by_payments += payment.captured.minor - payment.refunded.minor
    orders = _OrderPass(uow, payments, checked)
    checked.update(orders=len(orders.facts), payments=len(payments))
    _check_stock(uow, orders, found, checked)
    # The ledger is read in passes, not held whole (a store reads it back for each pass).
    checked["ledger_entries"] = _check_ledger(
        uow.ledger, orders.facts, payments, by_payments, found
    )
    _check_coupons(uow, orders, found, checked)
    found.extend(orders.found)
    _check_payments(orders.facts, payments, found, checked)
    return Audit.of(found, checked)


def _check_stock(
    uow: UnitOfWork, orders: _OrderPass, found: list[Violation], checked: Counter[str]
) -> None:
    reserved: Counter[str] = Counter()
    for reservation in uow.reservations.values():
        if reservation.status == inventory.ACTIVE:
            for sku, qty in reservation.lines:
                reserved[sku] += qty
    shipped, returned = orders.shipped, orders.returned
    skus: set[str] = set()
    for item in uow.stock.values():
        sku = item.sku
        skus.add(sku)
        available = item.on_hand - item.reserved
        if available < 0 or item.reserved < 0:
            found.append(Violation("negative stock", (sku,), f"available={available}"))
        try:
            item.check_invariants()
        except DomainError as exc:
            found.append(Violation("stock invariant", (sku,), str(exc).removeprefix(f"{sku}: ")))
        terms = (reserved[sku], shipped[sku], returned[sku])
        left = available + terms[0] + terms[1] - terms[2]
        right = item.initial + item.received
        if left != right:
            found.append(
                Violation(
                    "stock conservation",
                    (sku,),
                    f"available {available} + reserved {terms[0]} + shipped {terms[1]} "
                    f"- returned {terms[2]} = {left} != initial {item.initial} "
                    f"+ restocked {item.received} = {right}",
                )
            )
        for name, counter, expected in zip(
            ("reserved", "sold", "returned"),
            (item.reserved, item.sold, item.returned),
            terms,
            strict=True,
        ):
            if counter != expected:
                found.append(
                    Violation(
                        f"stock {name}",
                        (sku,),
                        f"the item counts {counter} {name}, the orders {expected}",
                    )
                )
    checked["skus"] = len(skus)
    unknown = sorted((reserved.keys() | shipped.keys()) - skus)
    for sku in unknown:
        found.append(Violation("stock conservation", (sku,), "ordered, but no stock item"))


def _check_ledger(
    entries: Iterable[Any],
    orders: Mapping[str, _OrderFacts],
    payments: Mapping[str, _PaymentFacts],
    by_payments: int,
    found: list[Violation],
) -> int:
    """Check the ledger against orders and payments; return its size.

    ``entries`` is read three times over (a store's ledger, not a one-shot iterator).
    """
    for mismatch in reconcile(entries, orders.values()):
        found.append(Violation(f"ledger {mismatch.rule}", (mismatch.order_id,), mismatch.detail))
    count = 0
    for entry in entries:
        count += 1
        payment = payments.get(entry.payment_id)
        if entry.order_id not in orders:
            found.append(
                Violation(
                    "ledger orphan",
                    (f"entry-{entry.seq}", entry.order_id),
                    f"{entry.kind} of {entry.amount} for an order that does not exist",
                )
            )
        elif payment is None or payment.order_id != entry.order_id:
            owner = "no payment" if payment is None else f"a payment of {payment.order_id}"
            found.append(
                Violation(
                    "ledger orphan",
                    (f"entry-{entry.seq}", entry.order_id, entry.payment_id),
                    f"{entry.kind} of {entry.amount} names {owner}",
                )
            )
    net = balance(entries)
    expected = sum(o.net_paid_minor for o in orders.values())
    if net.minor != expected:
        found.append(
            Violation("money", (), f"ledger balance {net.minor} != sum of paid orders {expected}")
        )
    if net.minor != by_payments:
        found.append(
            Violation(
                "money payments",
                (),
                f"ledger balance {net.minor} != captured - refunded by payments {by_payments}",
            )
        )
    return count


def _check_coupons(
    uow: UnitOfWork, orders: _OrderPass, found: list[Violation], checked: Counter[str]
) -> None:
    used, held = orders.used, orders.held
    coupons = list(uow.coupons.values())
    checked["coupons"] = len(coupons)
    for coupon in coupons:
        code = coupon.code
        taken = coupon.used + len(coupon.held)
        if coupon.usage_limit is not None and taken > coupon.usage_limit:
            found.append(
                Violation(
                    "coupon over its limit",
                    (code,),
                    f"{coupon.used} used + {len(coupon.held)} held > limit {coupon.usage_limit}",
                )
            )
        if coupon.per_customer_limit is not None:
            for user_id in sorted(coupon.used_by.keys() | coupon.held_by.keys()):
                uses = coupon.uses_by(user_id)
                if uses > coupon.per_customer_limit:
                    found.append(
                        Violation(
                            "coupon over its per-customer limit",
                            (code, user_id),
                            f"{uses} uses > limit {coupon.per_customer_limit}",
                        )
                    )
        if coupon.used != used[code]:
            found.append(
                Violation(
                    "coupon uses",
                    (code,),
                    f"{coupon.used} used, but {used[code]} paid orders carry the code",
                )
            )
        pending = held.get(code, set())
        if set(coupon.held) != pending:
            extra = sorted(set(coupon.held) - pending)
            missing = sorted(pending - set(coupon.held))
            found.append(
                Violation(
                    "coupon uses",
                    (code, *extra, *missing),
                    f"held for {extra or 'no'} order(s) not pending, "
                    f"not held for pending {missing or 'none'}",
                )
            )


def _check_payments(
    orders: Mapping[str, _OrderFacts],
    payments: Mapping[str, _PaymentFacts],
    found: list[Violation],
    checked: Counter[str],
) -> None:
    for payment in payments.values():
        pid, status = payment.id, payment.status
        order = orders.get(payment.order_id)
        if order is None:
            found.append(
                Violation("payment orphan", (pid, payment.order_id), "its order does not exist")
            )
            continue
        if status in _CAPTURED:
            if not order.is_paid or order.payment_id != pid:
                found.append(
                    Violation(
                        "payment state",
                        (pid, order.id),
                        f"{status}, but the order is {order.status} "
                        f"and names payment {order.payment_id}",
                    )
                )
            checked["payments_final"] += 1
        elif status is PaymentStatus.CANCELLED and order.status is OrderStatus.PENDING:
            found.append(
                Violation(
                    "payment state",
                    (pid, order.id),
                    "cancelled while its order still awaits payment",
                )
            )
        elif status in _FINAL_PAYMENT:
            checked["payments_final"] += 1
        elif order.status is OrderStatus.PENDING:
            checked["payments_in_flight"] += 1
        else:  # pending or failed while its order no longer awaits payment
            found.append(
                Violation(
                    "payment stranded",
                    (pid, order.id),
                    f"{status} while its order is {order.status}",
                )
            )


# --- the world of a run --------------------------------------------------------------------------
def audit(
    world: World,
    frames: Mapping[str, pd.DataFrame] | None = None,
    books: Audit | None = None,
) -> Audit:
    """Check the books at the end of a run, and that every shopper session is accounted for.

    ``frames`` are the run's collected frames when the caller has them (their ``sessions``
    and ``requests`` are read instead of building them again from the recorder). ``books``
    is :func:`audit_books` of ``world.uow`` when the caller has already checked them. Sessions
    still open in ``world.open_sessions`` count as in flight.
    """
    if books is None:
        books = audit_books(world.uow)
    found = list(books.findings)
    checked: Counter[str] = Counter(dict.fromkeys(_WORLD_COUNTS, 0))
    checked.update(books.checked)
    _check_sessions(world, frames, found, checked)
    _count_gateway_records(world, checked)
    return Audit.of(found, checked)


def _column(frames: Mapping[str, pd.DataFrame] | None, world: World, name: str, col: str) -> Any:
    frame = frames.get(name) if frames is not None else None
    if frame is None:
        table = getattr(world.recorder, name, None)
        frame = table.frame() if table is not None and hasattr(table, "frame") else None
    if frame is None or col not in frame.columns:
        return None
    return frame[col]


def _check_sessions(
    world: World,
    frames: Mapping[str, pd.DataFrame] | None,
    found: list[Violation],
    checked: Counter[str],
) -> None:
    # Over numpy arrays of session ids, not Python sets and counters of them: a long run has
    # tens of thousands of sessions, and the audit is the last step of its end.
    sids = _column(frames, world, "sessions", "session")
    reasons = _column(frames, world, "sessions", "end_reason")
    recorded = np.asarray(sids if sids is not None else (), dtype=np.int64)
    still_open = np.fromiter(world.open_sessions, dtype=np.int64, count=len(world.open_sessions))
    ids, times = np.unique(np.concatenate([recorded, still_open]), return_counts=True)
    twice = times > 1
    for sid, n in zip(ids[twice].tolist(), times[twice].tolist(), strict=True):
        found.append(Violation("session twice", (f"session-{sid}",), f"recorded {n} times"))
    ends = pd.Series(
        reasons.to_numpy(dtype=object)
        if reasons is not None
        else np.full(recorded.size, "exit", dtype=object)
    )
    known = ends.isin(SESSION_END_REASONS).to_numpy()
    for i in np.flatnonzero(~known).tolist():
        found.append(
            Violation(
                "session state", (f"session-{recorded[i]}",), f"ended by {str(ends.iat[i])!r}"
            )
        )
    in_flight = int(np.count_nonzero(ends.to_numpy()[known] == "in_flight"))
    checked["sessions_in_flight"] += in_flight + len(world.open_sessions)
    checked["sessions_final"] += int(np.count_nonzero(known)) - in_flight
    checked["sessions"] = int(ids.size)
    family_of, number_of = np.divmod(ids, CLOSED_SID_BASE)
    for family in np.unique(family_of).tolist():
        numbers = number_of[(family_of == family) & (number_of > 0)]  # ascending, as the ids
        for n in _first_gaps(numbers, 20):
            sid = family * CLOSED_SID_BASE + n
            found.append(
                Violation("session lost", (f"session-{sid}",), "started but never recorded")
            )
    requested = _column(frames, world, "requests", "session")
    if requested is not None and len(requested):
        lost = np.setdiff1d(np.asarray(requested.unique(), dtype=np.int64), ids)
        for sid in lost[:20].tolist():
            found.append(
                Violation("session lost", (f"session-{sid}",), "made requests, never recorded")
            )


def _first_gaps(numbers: np.ndarray, limit: int) -> list[int]:
    """Return the first ``limit`` numbers from 1 to the largest that ascending ``numbers`` lack."""
    missing: list[int] = []
    if numbers.size and numbers.size < numbers[-1]:
        previous = np.concatenate(([0], numbers[:-1]))
        for gap in np.flatnonzero(numbers - previous > 1).tolist():
            missing.extend(range(int(previous[gap]) + 1, int(numbers[gap]))[: limit - len(missing)])
            if len(missing) >= limit:
                break
    return missing


def _count_gateway_records(world: World, checked: Counter[str]) -> None:
    """Count what the gateways authorised that the shop never captured (ghost successes).

    A client timeout after the gateway approved leaves an authorisation the shop abandoned;
    it moves no money (it is never captured) and is reconciled by voiding, so it is counted
    here rather than reported as a violation.
    """
    orders = world.uow.orders
    for gateway in world.gateways:
        for key, answer in gateway.settled.items():
            if answer != "approved":
                continue
            order = orders.find_readonly(key.rpartition("@")[0])
            if order is None or not order.is_paid:
                checked["uncaptured_authorisations"] += 1
