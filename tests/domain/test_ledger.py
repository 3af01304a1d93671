from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.errors import LedgerViolation
from sim.domain.ledger import (
    AMOUNT_MISMATCH,
    CHARGE_WITHOUT_ORDER,
    CHARGED_TWICE,
    PAID_WITHOUT_CHARGE,
    REFUND_EXCEEDS_CHARGE,
    RULES,
    EntryKind,
    LedgerEntry,
    Mismatch,
    balance,
    make_entry,
    net_by_order,
    reconcile,
)
from sim.domain.money import Money
from sim.domain.orders import Order, OrderLine


def m(minor: int) -> Money:
    return Money(minor)


@dataclass
class FakeOrder:
    id: str
    total: Money
    is_paid: bool
    refunded: Money

    @property
    def net_paid(self) -> Money:
        return self.total - self.refunded if self.is_paid else Money(0)


class Log:
    """Builds a ledger the way the services do: seq numbers from the log's length."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []

    def add(self, kind: str, order_id: str, amount: int, payment_id: str = "") -> LedgerEntry:
        entry = make_entry(
            len(self.entries) + 1,
            kind,
            order_id,
            payment_id or f"pay-{order_id}",
            m(amount),
            float(len(self.entries)),
        )
        self.entries.append(entry)
        return entry


# --- entries -------------------------------------------------------------------------------------
def test_make_entry_builds_a_frozen_entry():
    entry = make_entry(1, "charge", "o-1", "pay-1", m(1999), 5.0)
    assert entry == LedgerEntry(1, EntryKind.CHARGE, "o-1", "pay-1", m(1999), 5.0)
    assert entry.kind is EntryKind.CHARGE
    assert make_entry(2, EntryKind.VOID, "o-1", "pay-1", m(1), 6.0).kind is EntryKind.VOID
    assert str(EntryKind.REFUND) == "refund"
    with pytest.raises(AttributeError):
        entry.amount = m(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((1, "chargeback", "o-1", "p", m(1)), r"ledger entry 1: unknown kind 'chargeback'"),
        ((-1, "charge", "o-1", "p", m(1)), "seq must be a non-negative integer, got -1"),
        ((1.0, "charge", "o-1", "p", m(1)), "got 1.0"),
        ((1, "charge", "", "p", m(1)), "ledger entry 1: order id '' and payment id 'p'"),
        ((1, "refund", "o-1", "", m(1)), "payment id '' must not be empty"),
        ((3, "charge", "o-1", "p", m(0)), r"ledger entry 3 \(charge for o-1\): amount must be"),
        ((3, "refund", "o-1", "p", m(-5)), r"positive Money, got Money\(minor=-5"),
        ((3, "void", "o-1", "p", 5), "got 5"),
    ],
)
def test_make_entry_rejects_bad_entries(args, fragment):
    with pytest.raises(LedgerViolation, match=fragment):
        make_entry(*args, 0.0)


# --- sums ----------------------------------------------------------------------------------------
def test_balance_and_net_by_order_ignore_voids():
    log = Log()
    log.add("charge", "o-1", 5000)
    log.add("void", "o-2", 3000)
    log.add("charge", "o-3", 2000)
    log.add("refund", "o-1", 1500)
    assert balance(log.entries) == m(5500)
    assert net_by_order(log.entries) == {"o-1": m(3500), "o-3": m(2000)}
    assert balance([]) == m(0)
    assert net_by_order([]) == {}
    assert balance(iter(log.entries)) == m(5500)


def test_sums_refuse_mixed_currencies():
    entries = [
        make_entry(1, "charge", "o-1", "p", m(1), 0.0),
        make_entry(2, "charge", "o-2", "p", Money(1, "EUR"), 0.0),
    ]
    with pytest.raises(LedgerViolation, match="ledger mixes currencies: EUR, USD"):
        balance(entries)
    with pytest.raises(LedgerViolation, match="mixes currencies"):
        net_by_order(entries)
    with pytest.raises(LedgerViolation, match="mixes currencies"):
        reconcile(entries, [])


def test_balance_in_another_currency():
    entries = [make_entry(1, "charge", "o-1", "p", Money(700, "EUR"), 0.0)]
    assert balance(entries) == Money(700, "EUR")


# --- reconciliation ------------------------------------------------------------------------------
def test_a_clean_ledger_reconciles():
    log = Log()
    log.add("charge", "o-1", 5000)
    log.add("charge", "o-2", 2000)
    log.add("refund", "o-2", 500)
    log.add("void", "o-3", 900)
    orders = [
        FakeOrder("o-1", m(5000), True, m(0)),
        FakeOrder("o-2", m(2000), True, m(500)),
        FakeOrder("o-3", m(900), False, m(0)),
        FakeOrder("o-4", m(100), False, m(0)),
    ]
    assert reconcile(log.entries, orders) == []
    assert reconcile([], []) == []


def test_a_charge_for_no_known_order():
    log = Log()
    log.add("charge", "o-9", 1234)
    assert reconcile(log.entries, []) == [
        Mismatch(CHARGE_WITHOUT_ORDER, "o-9", "12.34 USD charged for no such order")
    ]


def test_an_order_charged_twice():
    log = Log()
    log.add("charge", "o-1", 5000, "pay-1")
    log.add("charge", "o-1", 5000, "pay-2")
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), True, m(0))])
    assert [(x.rule, x.order_id) for x in found] == [
        (CHARGED_TWICE, "o-1"),
        (AMOUNT_MISMATCH, "o-1"),
    ]
    assert found[0].detail == "2 charges totalling 100.00 USD"
    assert found[1].detail.startswith("ledger net 100.00 USD (100.00 USD charged - 0.00 USD")
    log.add("refund", "o-1", 5000, "pay-2")
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), True, m(0))])
    assert [x.rule for x in found] == [CHARGED_TWICE]


def test_refunds_beyond_the_charge():
    log = Log()
    log.add("charge", "o-1", 5000)
    log.add("refund", "o-1", 3000)
    log.add("refund", "o-1", 3000)
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), True, m(6000))])
    assert found == [
        Mismatch(
            REFUND_EXCEEDS_CHARGE,
            "o-1",
            "refunds exceed charges from entry 3: 60.00 USD refunded of 50.00 USD charged",
        )
    ]


def test_a_refund_before_its_charge_overshoots():
    log = Log()
    log.add("refund", "o-1", 1000)
    log.add("charge", "o-1", 5000)
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), True, m(1000))])
    assert [x.rule for x in found] == [REFUND_EXCEEDS_CHARGE]
    assert "from entry 1" in found[0].detail


def test_a_paid_order_without_a_charge():
    found = reconcile([], [FakeOrder("o-1", m(5000), True, m(0))])
    assert found == [
        Mismatch(
            PAID_WITHOUT_CHARGE, "o-1", "order of 50.00 USD is paid but the ledger has no charge"
        )
    ]


def test_a_charge_for_an_order_the_shop_thinks_unpaid():
    # the client timed out and marked the payment failed, but the provider captured it
    log = Log()
    log.add("charge", "o-1", 5000)
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), False, m(0))])
    assert found == [
        Mismatch(
            AMOUNT_MISMATCH,
            "o-1",
            "ledger net 50.00 USD (50.00 USD charged - 0.00 USD refunded) != order net paid "
            "0.00 USD (paid: False, refunded 0.00 USD)",
        )
    ]


def test_a_refund_missing_from_the_ledger():
    log = Log()
    log.add("charge", "o-1", 5000)
    found = reconcile(log.entries, [FakeOrder("o-1", m(5000), True, m(2000))])
    assert [(x.rule, x.order_id) for x in found] == [(AMOUNT_MISMATCH, "o-1")]


def test_several_mismatches_are_sorted_by_order_then_rule():
    log = Log()
    log.add("charge", "o-3", 100)
    log.add("charge", "o-3", 100)
    log.add("refund", "o-3", 300)
    log.add("charge", "o-1", 100)
    found = reconcile(log.entries, [FakeOrder("o-2", m(700), True, m(0))])
    assert [(x.order_id, x.rule) for x in found] == [
        ("o-1", CHARGE_WITHOUT_ORDER),
        ("o-2", PAID_WITHOUT_CHARGE),
        ("o-3", CHARGE_WITHOUT_ORDER),
        ("o-3", CHARGED_TWICE),
        ("o-3", REFUND_EXCEEDS_CHARGE),
    ]
    assert RULES == (
        CHARGE_WITHOUT_ORDER,
        CHARGED_TWICE,
        REFUND_EXCEEDS_CHARGE,
        PAID_WITHOUT_CHARGE,
        AMOUNT_MISMATCH,
    )


def test_real_orders_reconcile_through_their_lifecycle():
    line = OrderLine("A", "c", m(1000), 2, m(0), m(200))
    order = Order.place(
        "o-1",
        "u-1",
        [line],
        subtotal=m(2000),
        discount=m(0),
        tax=m(200),
        shipping=m(300),
        total=m(2500),
        now=0.0,
    )
    log = Log()
    assert reconcile(log.entries, [order]) == []
    order.mark_paid("pay-1", 1.0)
    assert [x.rule for x in reconcile(log.entries, [order])] == [PAID_WITHOUT_CHARGE]
    log.add("charge", "o-1", 2500, "pay-1")
    assert reconcile(log.entries, [order]) == []
    order.ship(2.0)
    order.deliver(3.0)
    due = order.request_return({"A": 1}, 4.0)
    order.receive_return(5.0)
    order.mark_refunded(due, 6.0)
    assert [x.rule for x in reconcile(log.entries, [order])] == [AMOUNT_MISMATCH]
    log.add("refund", "o-1", due.minor, "pay-1")
    assert reconcile(log.entries, [order]) == []
    assert net_by_order(log.entries) == {"o-1": order.net_paid}

    cancelled = Order.place(
        "o-2",
        "u-1",
        [line],
        subtotal=m(2000),
        discount=m(0),
        tax=m(200),
        shipping=m(0),
        total=m(2200),
        now=0.0,
    )
    cancelled.mark_paid("pay-2", 1.0)
    log.add("charge", "o-2", 2200, "pay-2")
    cancelled.mark_refunded(cancelled.cancel(2.0, "customer"), 3.0)
    log.add("refund", "o-2", 2200, "pay-2")
    assert reconcile(log.entries, [order, cancelled]) == []


# --- properties ----------------------------------------------------------------------------------
ORDER_IDS = ("o-1", "o-2", "o-3")
ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(("charge", "refund", "void")),
        st.sampled_from(ORDER_IDS),
        st.integers(1, 10_000),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops_strategy)
def test_balance_equals_charges_minus_refunds_equals_sum_by_order(ops):
    log = Log()
    for kind, order_id, amount in ops:
        log.add(kind, order_id, amount)
    charges = sum(a for k, _, a in ops if k == "charge")
    refunds = sum(a for k, _, a in ops if k == "refund")
    assert balance(log.entries) == m(charges - refunds)
    assert sum(net_by_order(log.entries).values(), m(0)) == m(charges - refunds)
    for order_id, net in net_by_order(log.entries).items():
        assert net == m(
            sum(a for k, o, a in ops if o == order_id and k == "charge")
            - sum(a for k, o, a in ops if o == order_id and k == "refund")
        )


@settings(max_examples=200, deadline=None)
@given(ops_strategy, st.sets(st.sampled_from(ORDER_IDS)))
def test_refund_exceeds_charge_is_reported_exactly_when_refunds_overshoot(ops, paid):
    log = Log()
    running: dict[str, int] = {}
    overshoot: set[str] = set()
    for kind, order_id, amount in ops:
        log.add(kind, order_id, amount)
        if kind == "charge":
            running[order_id] = running.get(order_id, 0) + amount
        elif kind == "refund":
            running[order_id] = running.get(order_id, 0) - amount
            if running[order_id] < 0:
                overshoot.add(order_id)
    orders = [FakeOrder(o, m(10_000), o in paid, m(0)) for o in ORDER_IDS]
    found = reconcile(log.entries, orders)
    assert {x.order_id for x in found if x.rule == REFUND_EXCEEDS_CHARGE} == overshoot
    charged = {o for k, o, _ in ops if k == "charge"}
    assert {x.order_id for x in found if x.rule == PAID_WITHOUT_CHARGE} == paid - charged
    assert not any(x.rule == CHARGE_WITHOUT_ORDER for x in found)
    for x in found:
        assert x.rule in RULES


def test_balance_and_reconcile_take_the_entries_in_one_pass_keeping_none():
    # A long run's ledger is read back from its store entry by entry: 20,000 entries of 4
    # orders, each made as it is taken. Held whole they would take several megabytes; taken
    # one at a time, the check holds little more than its tallies.
    def entries():
        for seq in range(1, 20_001):
            order = f"o-{seq % 4}"
            kind = EntryKind.CHARGE if seq <= 4 else EntryKind.VOID
            yield LedgerEntry(seq, kind, "".join((order, "")), f"pay-{seq}", m(100 + seq), 1.0)

    orders = [FakeOrder(f"o-{i}", m(100 + (i or 4)), True, m(0)) for i in range(4)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        assert balance(entries()) == m(4 * 100 + 1 + 2 + 3 + 4)
        assert reconcile(entries(), orders) == []
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 200_000, peak  # a list of the entries alone: 20,000 x 8 bytes = 160 kB
