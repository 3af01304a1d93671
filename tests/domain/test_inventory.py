from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sim.domain import inventory
from sim.domain.errors import (
    DomainError,
    InvalidQuantity,
    InvalidValue,
    InventoryCorrupted,
    NotFound,
    OutOfStock,
    ReservationNotActive,
    ReservationNotExpired,
)
from sim.domain.events import (
    StockChanged,
    StockCommitted,
    StockReleased,
    StockReplenished,
    StockReserved,
)
from sim.domain.inventory import MAX_PER_LINE, Reservation, StockItem


def counters(item: StockItem) -> tuple[int, ...]:
    return (
        item.initial,
        item.on_hand,
        item.reserved,
        item.received,
        item.returned,
        item.sold,
        len(item.events),
    )


def stock(**initial: int) -> list[StockItem]:
    """Stock items sorted by sku, e.g. stock(A=10, B=5)."""
    return [StockItem(sku, qty) for sku, qty in sorted(initial.items())]


# --- StockItem -------------------------------------------------------------------------------
def test_new_stock_item_puts_all_initial_units_on_hand():
    item = StockItem("SKU-1", 10)
    assert counters(item) == (10, 10, 0, 0, 0, 0, 0)
    assert item.available == 10
    item.check_invariants()
    assert StockItem("SKU-0", 0).available == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_initial_stock_must_be_a_non_negative_int(bad):
    with pytest.raises(
        InvalidQuantity, match=r"SKU-1: initial stock must be a non-negative integer"
    ):
        StockItem("SKU-1", bad)


def test_item_reserve_sets_units_aside_and_records_events():
    item = StockItem("SKU-1", 10)
    item.reserve(4, "res-1", 5.0)
    assert (item.on_hand, item.reserved, item.available) == (10, 4, 6)
    assert item.events == [
        StockReserved(at=5.0, sku="SKU-1", quantity=4, reservation_id="res-1"),
        StockChanged(at=5.0, sku="SKU-1", available=6),
    ]
    item.reserve(6, "res-2", 6.0)
    assert item.available == 0
    assert item.events[-1] == StockChanged(at=6.0, sku="SKU-1", available=0)


def test_item_reserve_beyond_available_raises_and_changes_nothing():
    item = StockItem("SKU-1", 10)
    item.reserve(4, "res-1", 5.0)
    before = counters(item)
    with pytest.raises(OutOfStock, match=r"^SKU-1: 7 requested, 6 available$"):
        item.reserve(7, "res-2", 6.0)
    assert counters(item) == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_item_quantities_must_be_positive_ints(bad):
    item = StockItem("SKU-1", 10)
    item.reserve(5, "res-1", 1.0)
    before = counters(item)
    message = "SKU-1: quantity must be a positive integer, got "
    with pytest.raises(InvalidQuantity, match=message):
        item.reserve(bad, "res-2", 2.0)
    with pytest.raises(InvalidQuantity, match=message):
        item.release(bad, "res-1", "cancelled", 2.0)
    with pytest.raises(InvalidQuantity, match=message):
        item.commit(bad, "res-1", 2.0)
    with pytest.raises(InvalidQuantity, match=message):
        item.restock(bad, "supplier", 2.0)
    assert counters(item) == before


def test_item_release_returns_units_to_available():
    item = StockItem("SKU-1", 10)
    item.reserve(4, "res-1", 1.0)
    item.release(3, "res-1", "payment_failed", 2.0)
    assert (item.on_hand, item.reserved, item.available, item.sold) == (10, 1, 9, 0)
    assert item.events[2:] == [
        StockReleased(
            at=2.0, sku="SKU-1", quantity=3, reservation_id="res-1", reason="payment_failed"
        ),
        StockChanged(at=2.0, sku="SKU-1", available=9),
    ]
    item.release(1, "res-1", "expired", 3.0)
    assert item.reserved == 0
    item.check_invariants()


def test_item_release_rejects_more_than_reserved_and_unknown_reasons():
    item = StockItem("SKU-1", 10)
    item.reserve(3, "res-1", 1.0)
    before = counters(item)
    with pytest.raises(InvalidQuantity, match=r"SKU-1: cannot release 5, only 3 reserved"):
        item.release(5, "res-1", "cancelled", 2.0)
    with pytest.raises(InvalidValue, match=r"release reason must be one of .* got 'bored'"):
        item.release(1, "res-1", "bored", 2.0)
    assert counters(item) == before


def test_item_commit_sells_reserved_units_without_changing_availability():
    item = StockItem("SKU-1", 10)
    item.reserve(4, "res-1", 1.0)
    item.commit(4, "res-1", 2.0)
    assert (item.on_hand, item.reserved, item.available, item.sold) == (6, 0, 6, 4)
    assert item.events[2:] == [
        StockCommitted(at=2.0, sku="SKU-1", quantity=4, reservation_id="res-1"),
    ]
    item.check_invariants()


def test_item_commit_rejects_more_than_reserved():
    item = StockItem("SKU-1", 10)
    item.reserve(2, "res-1", 1.0)
    before = counters(item)
    with pytest.raises(InvalidQuantity, match=r"SKU-1: cannot commit 3, only 2 reserved"):
        item.commit(3, "res-1", 2.0)
    assert counters(item) == before


def test_item_restock_counts_supplier_deliveries_and_returns_separately():
    item = StockItem("SKU-1", 2)
    item.reserve(2, "res-1", 1.0)
    item.restock(5, "supplier", 2.0)
    item.restock(1, "return", 3.0)
    assert (item.on_hand, item.reserved, item.available) == (8, 2, 6)
    assert (item.received, item.returned) == (5, 1)
    assert item.events[2:] == [
        StockReplenished(at=2.0, sku="SKU-1", quantity=5, reason="supplier"),
        StockChanged(at=2.0, sku="SKU-1", available=5),
        StockReplenished(at=3.0, sku="SKU-1", quantity=1, reason="return"),
        StockChanged(at=3.0, sku="SKU-1", available=6),
    ]
    item.check_invariants()


def test_item_restock_rejects_unknown_reason():
    item = StockItem("SKU-1", 2)
    with pytest.raises(
        InvalidValue, match=r"SKU-1: restock reason must be 'supplier' or 'return', got 'gift'"
    ):
        item.restock(1, "gift", 1.0)
    assert counters(item) == (2, 2, 0, 0, 0, 0, 0)


def test_module_restock_is_the_method():
    item = StockItem("SKU-1", 0)
    inventory.restock(item, 7, inventory.SUPPLIER, 1.0)
    inventory.restock(item, 2, inventory.RETURN, 2.0)
    assert (item.on_hand, item.received, item.returned, item.available) == (9, 7, 2, 9)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sold", -1, "SKU-1: sold is negative \\(-1\\)"),
        ("reserved", -2, "SKU-1: reserved is negative \\(-2\\)"),
        ("reserved", 11, "SKU-1: 11 reserved exceeds 10 on hand"),
        (
            "on_hand",
            12,
            "SKU-1: 12 on hand, but initial 10 \\+ received 0 \\+ returned 0 - sold 0 = 10",
        ),
        ("received", 3, "SKU-1: 10 on hand, but initial 10 \\+ received 3 .* = 13"),
    ],
)
def test_check_invariants_names_the_broken_rule(field, value, message):
    item = StockItem("SKU-1", 10)
    item.check_invariants()
    setattr(item, field, value)
    with pytest.raises(InventoryCorrupted, match=message):
        item.check_invariants()
    assert issubclass(InventoryCorrupted, DomainError)


def test_aggregates_survive_deepcopy():
    item = StockItem("SKU-1", 10)
    item.reserve(3, "res-1", 1.0)
    snapshot = copy.deepcopy(item)
    assert snapshot == item and snapshot.events == item.events
    item.commit(3, "res-1", 2.0)
    assert (snapshot.on_hand, snapshot.reserved, len(snapshot.events)) == (10, 3, 2)
    res = Reservation("r-1", "o-1", (("A", 1),), 0.0, 60.0)
    res_copy = copy.deepcopy(res)
    res.commit(1.0)
    assert (res_copy.status, res_copy.closed_at) == ("active", None)


# --- Reservation -----------------------------------------------------------------------------
def test_reservation_expires_exactly_at_expires_at():
    res = Reservation("r-1", "o-1", (("A", 1), ("B", 2)), created_at=100.0, expires_at=700.0)
    assert (res.status, res.closed_at, res.reason) == ("active", None, None)
    assert not res.is_expired(100.0)
    assert not res.is_expired(699.999)
    assert res.is_expired(700.0)
    assert res.is_expired(800.0)


@pytest.mark.parametrize(
    ("lines", "error", "message"),
    [
        ((), InvalidValue, "reservation r-1 has no lines"),
        ((("A", 0),), InvalidQuantity, "reservation r-1: A quantity must be 1..50, got 0"),
        ((("A", 51),), InvalidQuantity, "reservation r-1: A quantity must be 1..50, got 51"),
        ((("A", 2.0),), InvalidQuantity, "A quantity must be 1..50, got 2.0"),
        ((("B", 1), ("A", 1)), InvalidValue, "sorted by unique sku, 'A' follows 'B'"),
        ((("A", 1), ("A", 2)), InvalidValue, "sorted by unique sku, 'A' follows 'A'"),
    ],
)
def test_reservation_rejects_bad_lines(lines, error, message):
    with pytest.raises(error, match=message):
        Reservation("r-1", "o-1", lines, 0.0, 60.0)


def test_reservation_rejects_bad_times_and_status():
    with pytest.raises(InvalidValue, match=r"expires_at 10.0 must be after created_at 10.0"):
        Reservation("r-1", "o-1", (("A", 1),), 10.0, 10.0)
    with pytest.raises(InvalidValue, match=r"unknown status 'paid'"):
        Reservation("r-1", "o-1", (("A", 1),), 0.0, 1.0, status="paid")


def test_reservation_transitions_only_from_active():
    committed = Reservation("r-1", "o-1", (("A", 1),), 0.0, 60.0)
    committed.commit(10.0)
    assert (committed.status, committed.closed_at, committed.reason) == ("committed", 10.0, None)
    released = Reservation("r-2", "o-2", (("A", 1),), 0.0, 60.0)
    released.release("abandoned", 20.0)
    assert (released.status, released.closed_at, released.reason) == ("released", 20.0, "abandoned")
    expired = Reservation("r-3", "o-3", (("A", 1),), 0.0, 60.0)
    expired.expire(60.0)
    assert (expired.status, expired.closed_at, expired.reason) == ("expired", 60.0, "expired")
    for res in (committed, released, expired):
        message = f"reservation {res.id} is {res.status}, not active"
        with pytest.raises(ReservationNotActive, match=message):
            res.commit(99.0)
        with pytest.raises(ReservationNotActive, match=message):
            res.release("cancelled", 99.0)
        with pytest.raises(ReservationNotActive, match=message):
            res.expire(99.0)
    assert (committed.status, released.status, expired.status) == (
        "committed",
        "released",
        "expired",
    )


def test_reservation_expire_before_expiry_and_bad_release_reason_raise():
    res = Reservation("r-1", "o-1", (("A", 1),), 0.0, 60.0)
    with pytest.raises(
        ReservationNotExpired, match=r"reservation r-1 expires at 60.0, not expired at 59.5"
    ):
        res.expire(59.5)
    with pytest.raises(InvalidValue, match=r"release reason must be one of .* got 'expired'"):
        res.release("expired", 10.0)
    assert (res.status, res.closed_at) == ("active", None)


# --- reserve across several items ------------------------------------------------------------
def test_reserve_takes_every_line_and_returns_an_active_reservation():
    a, b, c = stock(A=10, B=5, C=1)
    res = inventory.reserve([a, b, c], {"C": 1, "A": 3}, "res-1", "ord-1", now=100.0, ttl=900.0)
    assert res == Reservation("res-1", "ord-1", (("A", 3), ("C", 1)), 100.0, 1000.0)
    assert res.status == "active"
    assert inventory.availability([a, b, c]) == {"A": 7, "B": 5, "C": 0}
    assert (a.reserved, b.reserved, c.reserved) == (3, 0, 1)
    assert a.events == [
        StockReserved(at=100.0, sku="A", quantity=3, reservation_id="res-1"),
        StockChanged(at=100.0, sku="A", available=7),
    ]
    assert b.events == []
    assert c.events[1] == StockChanged(at=100.0, sku="C", available=0)


def test_reserve_accepts_up_to_fifty_per_line():
    (a,) = stock(A=100)
    res = inventory.reserve([a], {"A": MAX_PER_LINE}, "res-1", "ord-1", 0.0, 60.0)
    assert res.lines == (("A", 50),)
    assert a.available == 50
    with pytest.raises(
        InvalidQuantity, match=r"reservation res-2: A quantity must be 1..50, got 51"
    ):
        inventory.reserve([a], {"A": 51}, "res-2", "ord-2", 0.0, 60.0)
    assert a.available == 50


@pytest.mark.parametrize("bad", [0, -1, 51, 1.5])
def test_reserve_validates_every_line_before_changing_anything(bad):
    a, b = stock(A=10, B=10)
    with pytest.raises(InvalidQuantity, match=f"B quantity must be 1..50, got {bad}"):
        inventory.reserve([a, b], {"A": 2, "B": bad}, "res-1", "ord-1", 0.0, 60.0)
    assert counters(a) == counters(b) == (10, 10, 0, 0, 0, 0, 0)


def test_reserve_of_no_lines_or_non_positive_ttl_raises():
    (a,) = stock(A=10)
    with pytest.raises(InvalidValue, match=r"reservation res-1 has no lines"):
        inventory.reserve([a], {}, "res-1", "ord-1", 0.0, 60.0)
    with pytest.raises(InvalidValue, match=r"reservation res-1: ttl must be positive, got 0"):
        inventory.reserve([a], {"A": 1}, "res-1", "ord-1", 0.0, 0)
    with pytest.raises(InvalidValue, match=r"ttl must be positive, got nan"):
        inventory.reserve([a], {"A": 1}, "res-1", "ord-1", 0.0, float("nan"))
    assert a.events == []


def test_reserve_of_a_line_without_its_item_raises_not_found():
    a, c = stock(A=10, C=10)
    with pytest.raises(NotFound, match=r"stock item 'B' not found \(reservation res-1\)"):
        inventory.reserve([a, c], {"A": 1, "B": 1, "C": 1}, "res-1", "ord-1", 0.0, 60.0)
    assert counters(a) == counters(c) == (10, 10, 0, 0, 0, 0, 0)


def test_reserve_requires_items_in_sku_order():
    a, b = stock(A=10, B=10)
    with pytest.raises(
        InvalidValue, match=r"sorted by unique sku \(the lock order\): 'A' follows 'B'"
    ):
        inventory.reserve([b, a], {"A": 1, "B": 1}, "res-1", "ord-1", 0.0, 60.0)
    with pytest.raises(InvalidValue, match=r"'A' follows 'A'"):
        inventory.reserve([a, a], {"A": 1}, "res-1", "ord-1", 0.0, 60.0)
    assert a.events == b.events == []


def test_reserve_ignores_items_without_a_line():
    a, b, c = stock(A=10, B=10, C=10)
    inventory.reserve([a, b, c], {"B": 2}, "res-1", "ord-1", 0.0, 60.0)
    assert inventory.availability([a, b, c]) == {"A": 10, "B": 8, "C": 10}


def test_failed_multi_line_reserve_names_every_short_line_and_changes_nothing():
    a, b, c = stock(A=10, B=1, C=0)
    inventory.reserve([a], {"A": 8}, "res-0", "ord-0", 0.0, 60.0)
    before = [counters(item) for item in (a, b, c)]
    with pytest.raises(
        OutOfStock, match=r"^A: 3 requested, 2 available; C: 1 requested, 0 available$"
    ):
        inventory.reserve([a, b, c], {"A": 3, "B": 1, "C": 1}, "res-1", "ord-1", 1.0, 60.0)
    assert [counters(item) for item in (a, b, c)] == before
    with pytest.raises(OutOfStock, match=r"^B: 2 requested, 1 available$"):
        inventory.reserve([b], {"B": 2}, "res-2", "ord-2", 1.0, 60.0)


# --- release, expire, commit -----------------------------------------------------------------
def reserved_pair() -> tuple[list[StockItem], Reservation]:
    items = stock(A=10, B=5)
    res = inventory.reserve(items, {"A": 3, "B": 5}, "res-1", "ord-1", now=0.0, ttl=600.0)
    return items, res


def test_release_returns_units_and_closes_the_reservation():
    (a, b), res = reserved_pair()
    inventory.release([a, b], res, "payment_failed", 30.0)
    assert (res.status, res.closed_at, res.reason) == ("released", 30.0, "payment_failed")
    assert inventory.availability([a, b]) == {"A": 10, "B": 5}
    assert (a.reserved, b.reserved, a.sold, b.sold) == (0, 0, 0, 0)
    assert b.events[2:] == [
        StockReleased(
            at=30.0, sku="B", quantity=5, reservation_id="res-1", reason="payment_failed"
        ),
        StockChanged(at=30.0, sku="B", available=5),
    ]


def test_double_release_and_commit_after_release_raise_and_change_nothing():
    (a, b), res = reserved_pair()
    inventory.release([a, b], res, "abandoned", 30.0)
    before = [counters(a), counters(b)]
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is released, not active"):
        inventory.release([a, b], res, "abandoned", 40.0)
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is released, not active"):
        inventory.commit([a, b], res, 40.0)
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is released, not active"):
        inventory.expire([a, b], res, 700.0)
    assert [counters(a), counters(b)] == before
    assert (res.status, res.closed_at) == ("released", 30.0)


def test_release_with_a_bad_reason_changes_nothing():
    (a, b), res = reserved_pair()
    before = [counters(a), counters(b)]
    with pytest.raises(InvalidValue, match=r"reservation res-1: release reason must be one of"):
        inventory.release([a, b], res, "expired", 30.0)
    assert [counters(a), counters(b)] == before
    assert res.status == "active"


def test_expire_of_a_reservation_not_yet_expired_raises_and_changes_nothing():
    (a, b), res = reserved_pair()
    before = [counters(a), counters(b)]
    with pytest.raises(
        ReservationNotExpired, match=r"reservation res-1 expires at 600.0, not expired at 599.0"
    ):
        inventory.expire([a, b], res, 599.0)
    assert [counters(a), counters(b)] == before
    assert res.status == "active"


def test_expire_exactly_at_expires_at_gives_the_units_back():
    (a, b), res = reserved_pair()
    inventory.expire([a, b], res, 600.0)
    assert (res.status, res.closed_at, res.reason) == ("expired", 600.0, "expired")
    assert inventory.availability([a, b]) == {"A": 10, "B": 5}
    assert a.events[2] == StockReleased(
        at=600.0, sku="A", quantity=3, reservation_id="res-1", reason="expired"
    )
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is expired, not active"):
        inventory.commit([a, b], res, 601.0)
    assert (a.sold, b.sold) == (0, 0)


def test_commit_sells_the_units():
    (a, b), res = reserved_pair()
    inventory.commit([a, b], res, 45.0)
    assert (res.status, res.closed_at, res.reason) == ("committed", 45.0, None)
    assert (a.on_hand, a.reserved, a.sold, a.available) == (7, 0, 3, 7)
    assert (b.on_hand, b.reserved, b.sold, b.available) == (0, 0, 5, 0)
    assert a.events[2:] == [StockCommitted(at=45.0, sku="A", quantity=3, reservation_id="res-1")]
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is committed, not active"):
        inventory.commit([a, b], res, 46.0)
    with pytest.raises(ReservationNotActive, match=r"reservation res-1 is committed, not active"):
        inventory.release([a, b], res, "cancelled", 46.0)
    assert (a.sold, b.sold) == (3, 5)
    a.check_invariants()
    b.check_invariants()


def test_an_overdue_but_active_reservation_may_still_be_committed():
    (a, b), res = reserved_pair()
    assert res.is_expired(650.0)
    inventory.commit([a, b], res, 650.0)
    assert (res.status, a.sold, b.sold) == ("committed", 3, 5)


def test_closing_with_a_missing_or_unsorted_item_changes_nothing():
    (a, b), res = reserved_pair()
    before = [counters(a), counters(b)]
    with pytest.raises(NotFound, match=r"stock item 'B' not found \(reservation res-1\)"):
        inventory.commit([a], res, 10.0)
    with pytest.raises(InvalidValue, match=r"'A' follows 'B'"):
        inventory.release([b, a], res, "cancelled", 10.0)
    assert [counters(a), counters(b)] == before
    assert res.status == "active"


def test_closing_a_reservation_whose_units_are_not_held_raises_corrupted():
    (a, b), res = reserved_pair()
    b.reserved = 4  # corrupted from outside
    before_a = counters(a)
    with pytest.raises(
        InventoryCorrupted, match=r"B: reservation res-1 holds 5, but only 4 reserved"
    ):
        inventory.commit([a, b], res, 10.0)
    assert counters(a) == before_a
    assert res.status == "active"


def test_availability_reads_every_item():
    items = stock(A=3, B=0)
    assert inventory.availability(items) == {"A": 3, "B": 0}
    assert inventory.availability([]) == {}


# --- properties ------------------------------------------------------------------------------
SKUS = ("A", "B", "C", "D")


class InventoryMachine(RuleBasedStateMachine):
    """Interleave reserve / release / commit / expire / restock over a few SKUs."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, StockItem] = {}
        self.reservations: list[Reservation] = []
        self.now = 0.0
        self.supplied = dict.fromkeys(SKUS, 0)
        self.came_back = dict.fromkeys(SKUS, 0)
        self.next_id = 0

    @initialize(initial=st.lists(st.integers(0, 20), min_size=len(SKUS), max_size=len(SKUS)))
    def build(self, initial: list[int]) -> None:
        self.items = {sku: StockItem(sku, qty) for sku, qty in zip(SKUS, initial, strict=True)}

    def tick(self, dt: float) -> None:
        self.now += dt

    def items_for(self, skus) -> list[StockItem]:
        return [self.items[sku] for sku in sorted(skus)]

    def snapshot(self) -> list[tuple[int, ...]]:
        return [counters(self.items[sku]) for sku in SKUS]

    def pick(self, index: int) -> Reservation | None:
        if not self.reservations:
            return None
        return self.reservations[index % len(self.reservations)]

    @rule(
        lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 12), min_size=1, max_size=4),
        dt=st.floats(0, 100),
        ttl=st.sampled_from([30.0, 60.0, 300.0]),
    )
    def reserve(self, lines: dict[str, int], dt: float, ttl: float) -> None:
        self.tick(dt)
        self.next_id += 1
        rid = f"res-{self.next_id}"
        fits = all(qty <= self.items[sku].available for sku, qty in lines.items())
        before = self.snapshot()
        if fits:
            res = inventory.reserve(self.items_for(lines), lines, rid, "ord", self.now, ttl)
            assert res.status == "active" and dict(res.lines) == lines
            assert res.expires_at == self.now + ttl
            self.reservations.append(res)
        else:
            with pytest.raises(OutOfStock):
                inventory.reserve(self.items_for(lines), lines, rid, "ord", self.now, ttl)
            assert self.snapshot() == before

    @rule(
        index=st.integers(0, 1000),
        dt=st.floats(0, 100),
        reason=st.sampled_from(sorted(inventory.RELEASE_REASONS)),
    )
    def release(self, index: int, dt: float, reason: str) -> None:
        self.tick(dt)
        res = self.pick(index)
        if res is None:
            return
        items = self.items_for(sku for sku, _ in res.lines)
        if res.status == "active":
            inventory.release(items, res, reason, self.now)
            assert (res.status, res.reason) == ("released", reason)
        else:
            before = self.snapshot()
            with pytest.raises(ReservationNotActive):
                inventory.release(items, res, reason, self.now)
            assert self.snapshot() == before

    @rule(index=st.integers(0, 1000), dt=st.floats(0, 100))
    def commit(self, index: int, dt: float) -> None:
        self.tick(dt)
        res = self.pick(index)
        if res is None:
            return
        items = self.items_for(sku for sku, _ in res.lines)
        if res.status == "active":
            inventory.commit(items, res, self.now)
            assert res.status == "committed"
        else:
            before = self.snapshot()
            with pytest.raises(ReservationNotActive):
                inventory.commit(items, res, self.now)
            assert self.snapshot() == before

    @rule(index=st.integers(0, 1000), dt=st.floats(0, 200))
    def expire(self, index: int, dt: float) -> None:
        self.tick(dt)
        res = self.pick(index)
        if res is None:
            return
        items = self.items_for(sku for sku, _ in res.lines)
        before = self.snapshot()
        if res.status != "active":
            with pytest.raises(ReservationNotActive):
                inventory.expire(items, res, self.now)
        elif not res.is_expired(self.now):
            with pytest.raises(ReservationNotExpired):
                inventory.expire(items, res, self.now)
        else:
            inventory.expire(items, res, self.now)
            assert (res.status, res.closed_at) == ("expired", self.now)
            return
        assert self.snapshot() == before

    @rule(
        sku=st.sampled_from(SKUS),
        qty=st.integers(1, 15),
        reason=st.sampled_from(["supplier", "return"]),
        dt=st.floats(0, 100),
    )
    def restock(self, sku: str, qty: int, reason: str, dt: float) -> None:
        self.tick(dt)
        inventory.restock(self.items[sku], qty, reason, self.now)
        (self.supplied if reason == "supplier" else self.came_back)[sku] += qty

    @invariant()
    def stock_is_consistent(self) -> None:
        for sku, item in self.items.items():
            item.check_invariants()
            assert item.available >= 0
            held = sum(dict(r.lines).get(sku, 0) for r in self.reservations if r.status == "active")
            assert item.reserved == held
            sold = sum(
                dict(r.lines).get(sku, 0) for r in self.reservations if r.status == "committed"
            )
            assert item.sold == sold
            assert (item.received, item.returned) == (self.supplied[sku], self.came_back[sku])
            assert item.sold <= item.initial + item.received + item.returned
            assert item.on_hand == item.initial + item.received + item.returned - item.sold
            if item.events:
                last_change = [e for e in item.events if isinstance(e, StockChanged)]
                if last_change:
                    assert last_change[-1].available == item.available


InventoryMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
test_inventory_state_machine = InventoryMachine.TestCase


@settings(max_examples=200, deadline=None)
@given(
    initial=st.lists(st.integers(0, 30), min_size=3, max_size=3),
    held=st.lists(st.integers(0, 30), min_size=3, max_size=3),
    wanted=st.lists(st.integers(1, 20), min_size=3, max_size=3),
    short_index=st.integers(0, 2),
    extra=st.integers(1, 19),
)
def test_a_failed_multi_line_reserve_changes_nothing(initial, held, wanted, short_index, extra):
    items = [StockItem(sku, qty) for sku, qty in zip("ABC", initial, strict=True)]
    for item, qty in zip(items, held, strict=True):
        if 0 < qty <= item.available:
            item.reserve(qty, "res-0", 0.0)
    lines = dict(zip("ABC", wanted, strict=True))
    short_sku = "ABC"[short_index]
    lines[short_sku] = items[short_index].available + extra  # at most 30 + 19 <= MAX_PER_LINE
    before = [counters(item) for item in items]
    with pytest.raises(OutOfStock) as caught:
        inventory.reserve(items, lines, "res-1", "ord-1", 1.0, 60.0)
    assert [counters(item) for item in items] == before
    expected = (
        f"{short_sku}: {lines[short_sku]} requested, {items[short_index].available} available"
    )
    assert expected in str(caught.value)
    for item in items:
        item.check_invariants()
