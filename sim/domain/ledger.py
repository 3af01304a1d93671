"""The money ledger: append-only entries of charges, refunds and voids, and reconciliation.

The log itself lives in the store (``uow.ledger``, an append-only log); this module makes
validated :class:`LedgerEntry` values (:func:`make_entry`), sums them (:func:`balance`,
:func:`net_by_order`) and checks them against the orders (:func:`reconcile`). A charge
adds money, a refund takes it back, a void records a cancelled authorisation and moves
no money.

Reconciliation catches what the shop and the gateway disagree on: a payment captured for
no order, an order charged twice, refunds beyond the charge, a paid order with no charge
(or a charge for an order the shop marked unpaid, as when a short client timeout gives up
on a payment the provider authorised), and net amounts that differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sim.domain.errors import LedgerViolation
from sim.domain.money import Money


class EntryKind(str, Enum):
    """What a ledger entry records."""

    CHARGE = "charge"
    REFUND = "refund"
    VOID = "void"

    def __str__(self) -> str:
        """Return the plain value (``"charge"``)."""
        return self.value


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of money (or a void) for one order's payment; ``seq`` orders the log."""

    seq: int
    kind: EntryKind
    order_id: str
    payment_id: str
    amount: Money
    at: float


def make_entry(
    seq: int,
    kind: EntryKind | str,
    order_id: str,
    payment_id: str,
    amount: Money,
    at: float,
) -> LedgerEntry:
    """Return a validated entry; raise LedgerViolation for a bad kind, seq, id or amount.

    ``seq`` is a non-negative integer (the caller numbers the log, e.g. ``len(uow.ledger)
    + 1``), ids are non-empty and ``amount`` is Money greater than zero.
    """
    try:
        entry_kind = EntryKind(kind)
    except ValueError:
        raise LedgerViolation(
            f"ledger entry {seq}: unknown kind {kind!r} (charge, refund, void)"
        ) from None
    if type(seq) is not int or seq < 0:
        raise LedgerViolation(f"ledger entry seq must be a non-negative integer, got {seq!r}")
    if not order_id or not payment_id:
        raise LedgerViolation(
            f"ledger entry {seq}: order id {order_id!r} and payment id {payment_id!r} "
            f"must not be empty"
        )
    if not isinstance(amount, Money) or amount.minor <= 0:
        raise LedgerViolation(
            f"ledger entry {seq} ({entry_kind} for {order_id}): amount must be positive "
            f"Money, got {amount!r}"
        )
    return LedgerEntry(seq, entry_kind, order_id, payment_id, amount, at)


def _signed(entry: LedgerEntry) -> int:
    kind = entry.kind
    if kind is EntryKind.CHARGE:
        return entry.amount.minor
    if kind is EntryKind.REFUND:
        return -entry.amount.minor
    return 0


def _currency(currencies: set[str]) -> str:
    """Return the one currency of a ledger's entries; raise if they mix currencies."""
    if len(currencies) > 1:
        raise LedgerViolation(f"ledger mixes currencies: {', '.join(sorted(currencies))}")
    return currencies.pop() if currencies else Money.zero().currency


# balance, net_by_order and reconcile take the entries in one pass, keeping none of them: a
# long run's ledger, read back from a store, is not held whole to be checked.
def balance(entries: Iterable[LedgerEntry]) -> Money:
    """Return charges minus refunds over ``entries`` (voids move no money)."""
    currencies: set[str] = set()
    total = 0
    for entry in entries:
        currencies.add(entry.amount.currency)
        total += _signed(entry)
    return Money(total, _currency(currencies))


def net_by_order(entries: Iterable[LedgerEntry]) -> dict[str, Money]:
    """Return order id -> charges minus refunds, for every order with a charge or a refund."""
    currencies: set[str] = set()
    net: dict[str, int] = {}
    for entry in entries:
        currencies.add(entry.amount.currency)
        if entry.kind is not EntryKind.VOID:
            net[entry.order_id] = net.get(entry.order_id, 0) + _signed(entry)
    currency = _currency(currencies)
    return {order_id: Money(minor, currency) for order_id, minor in net.items()}


class OrderLike(Protocol):
    """What reconciliation reads of an order (:class:`~sim.domain.orders.Order` has it)."""

    @property
    def id(self) -> str:
        """Return the order id."""
        ...

    @property
    def total(self) -> Money:
        """Return the order total."""
        ...

    @property
    def is_paid(self) -> bool:
        """Return True if the order was ever paid."""
        ...

    @property
    def net_paid(self) -> Money:
        """Return the total minus refunds if paid, else zero."""
        ...

    @property
    def refunded(self) -> Money:
        """Return what was refunded on the order."""
        ...


CHARGE_WITHOUT_ORDER = "charge_without_order"
"""Mismatch rule: money was captured for an order id the shop does not know."""
CHARGED_TWICE = "charged_twice"
"""Mismatch rule: an order has more than one charge."""
REFUND_EXCEEDS_CHARGE = "refund_exceeds_charge"
"""Mismatch rule: in ledger order, an order's refunds at some point exceed its charges."""
PAID_WITHOUT_CHARGE = "paid_without_charge"
"""Mismatch rule: the shop considers an order paid, but the ledger has no charge for it."""
AMOUNT_MISMATCH = "amount_mismatch"
"""Mismatch rule: an order's net charge in the ledger differs from its ``net_paid``."""
RULES = (
    CHARGE_WITHOUT_ORDER,
    CHARGED_TWICE,
    REFUND_EXCEEDS_CHARGE,
    PAID_WITHOUT_CHARGE,
    AMOUNT_MISMATCH,
)
"""Every mismatch rule, in the order reconcile reports them for one order."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One disagreement between the ledger and the orders."""

    rule: str
    order_id: str
    detail: str


@dataclass(slots=True)
class _Tally:
    charges: int = 0
    charged: int = 0
    refunded: int = 0
    overshoot_seq: int | None = None


def reconcile(entries: Iterable[LedgerEntry], orders: Iterable[OrderLike]) -> list[Mismatch]:
    """Check the ledger against the orders; return every mismatch (empty: reconciled).

    Entries are taken in the order given (the log's order). Per order the rules are, in
    this order: ``charge_without_order`` (a charge for an unknown order), ``charged_twice``
    (more than one charge), ``refund_exceeds_charge`` (the running refunds ever exceed
    the running charges), ``paid_without_charge`` (paid, but no charge), and
    ``amount_mismatch`` (charges minus refunds != ``net_paid``; not reported on top of
    ``paid_without_charge``). Mismatches are sorted by order id, then by rule.
    """
    currencies: set[str] = set()
    tallies: dict[str, _Tally] = {}
    for entry in entries:
        currencies.add(entry.amount.currency)
        if entry.kind is EntryKind.VOID:
            continue
        tally = tallies.get(entry.order_id)
        if tally is None:
            tally = tallies[entry.order_id] = _Tally()
        if entry.kind is EntryKind.CHARGE:
            tally.charges += 1
            tally.charged += entry.amount.minor
        else:
            tally.refunded += entry.amount.minor
            if tally.refunded > tally.charged and tally.overshoot_seq is None:
                tally.overshoot_seq = entry.seq
    currency = _currency(currencies)
    known = {order.id: order for order in orders}
    found: list[Mismatch] = []
    for order_id in sorted(tallies.keys() | known.keys()):
        tally = tallies.get(order_id) or _Tally()
        order = known.get(order_id)
        charged = Money(tally.charged, currency)
        refunded = Money(tally.refunded, currency)
        if order is None and tally.charges:
            found.append(
                Mismatch(CHARGE_WITHOUT_ORDER, order_id, f"{charged} charged for no such order")
            )
        if tally.charges > 1:
            found.append(
                Mismatch(CHARGED_TWICE, order_id, f"{tally.charges} charges totalling {charged}")
            )
        if tally.overshoot_seq is not None:
            found.append(
                Mismatch(
                    REFUND_EXCEEDS_CHARGE,
                    order_id,
                    f"refunds exceed charges from entry {tally.overshoot_seq}: "
                    f"{refunded} refunded of {charged} charged",
                )
            )
        if order is None:
            continue
        if order.is_paid and not tally.charges:
            found.append(
                Mismatch(
                    PAID_WITHOUT_CHARGE,
                    order_id,
                    f"order of {order.total} is paid but the ledger has no charge",
                )
            )
            continue
        net = charged - refunded
        if net != order.net_paid:
            found.append(
                Mismatch(
                    AMOUNT_MISMATCH,
                    order_id,
                    f"ledger net {net} ({charged} charged - {refunded} refunded) != "
                    f"order net paid {order.net_paid} (paid: {order.is_paid}, "
                    f"refunded {order.refunded})",
                )
            )
    return found
