from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest

from sim.domain.errors import AlreadyExists, NotFound
from sim.domain.events import DomainEvent, EventSource, ProductCreated, events_field
from sim.services.bus import MessageBus
from sim.services.store import TransactionError, UnitOfWork
from tests.services.conftest import new_uow


@dataclass
class Thing(EventSource):
    sku: str
    count: int = 0
    tags: list[str] = field(default_factory=list)
    events: list[DomainEvent] = events_field()

    def bump(self, now: float) -> None:
        self.count += 1
        self.tags.append(f"t{now}")
        self.record(ProductCreated(at=now, sku=self.sku))


def make_uow() -> tuple[UnitOfWork, list[DomainEvent]]:
    bus = MessageBus()
    seen: list[DomainEvent] = []
    bus.subscribe(DomainEvent, seen.append)
    return new_uow(bus, trusted=[Thing]), seen


def test_commit_keeps_changes_and_publishes_events_after_the_block():
    uow, seen = make_uow()
    with uow:
        uow.products.add(Thing("A"))
        uow.commit()
    with uow:
        thing = uow.products.get("A")
        thing.bump(1.0)
        uow.commit()
        assert seen == []  # not yet: events go out when the block ends
    assert uow.products.get("A").count == 1
    assert seen == [ProductCreated(at=1.0, sku="A")]
    assert uow.products.get("A").events == []


def test_leaving_without_commit_rolls_back_everything():
    uow, seen = make_uow()
    with uow:
        uow.products.add(Thing("A", tags=["x"]))
        uow.ledger.append("charge-1")
        uow.commit()
    with uow:
        uow.products.get("A").bump(2.0)
        uow.products.add(Thing("B"))
        uow.ledger.append("charge-2")
        uow.products.remove("A")
    assert "B" not in uow.products
    restored = uow.products.get("A")
    assert (restored.count, restored.tags) == (0, ["x"])
    assert list(uow.ledger) == ["charge-1"]
    assert seen == []


def test_an_exception_rolls_back_and_propagates():
    uow, _ = make_uow()
    with uow:
        uow.products.add(Thing("A"))
        uow.commit()
    with pytest.raises(RuntimeError), uow:
        uow.products.get("A").bump(1.0)
        raise RuntimeError("half-way")
    assert uow.products.get("A").count == 0
    assert not uow.active


def test_events_of_a_commit_are_published_even_if_the_block_fails_afterwards():
    uow, seen = make_uow()
    with uow:
        uow.products.add(Thing("A"))
        uow.commit()
    with pytest.raises(RuntimeError), uow:
        uow.products.get("A").bump(1.0)
        uow.commit()
        raise RuntimeError("after commit")
    assert uow.products.get("A").count == 1
    assert seen == [ProductCreated(at=1.0, sku="A")]


def test_protocol_errors():
    uow, _ = make_uow()
    with pytest.raises(TransactionError, match="no open transaction"):
        uow.commit()
    with uow, pytest.raises(TransactionError, match="already open"):
        uow.__enter__()


def test_repository_lookups_and_lock_order():
    uow, _ = make_uow()
    with uow:
        for sku in ("C", "A", "B"):
            uow.products.add(Thing(sku))
        with pytest.raises(AlreadyExists, match="product 'A' already exists"):
            uow.products.add(Thing("A"))
        uow.commit()
    with pytest.raises(NotFound, match="product 'Z' not found"):
        uow.products.get("Z")
    assert uow.products.find("Z") is None
    assert uow.products.find_readonly("A").sku == "A"
    assert [t.sku for t in uow.products.lock_many(["C", "A", "B", "A"])] == ["A", "B", "C"]
    assert len(uow.products) == 3
    assert sorted(t.sku for t in uow.products.values()) == ["A", "B", "C"]


def test_find_inside_a_transaction_is_rolled_back_too():
    uow, _ = make_uow()
    with uow:
        uow.products.add(Thing("A"))
        uow.commit()
    with uow:
        uow.products.find("A").bump(3.0)
    assert uow.products.get("A").count == 0


def test_ids_are_deterministic_sequences():
    uow, _ = make_uow()
    assert uow.next_id("order") == "order-000001"
    assert uow.next_id("order") == "order-000002"
    assert uow.next_id("user") == "user-000001"


def test_a_store_shares_the_ids_it_hands_back_as_copies_and_only_those(store):
    """A file store interns ids (each read brings a copy); the memory store hands back the
    strings it holds, and interning them would only grow the interpreter's table."""
    uow, _ = make_uow()
    copy = "".join(["order-", "424242"])
    shared = uow.shared_id(copy)
    other = "".join(["order-", "424242"])
    if store == "sqlite":
        assert shared is copy and sys.intern(other) is copy
        drawn = uow.next_id("order")
        assert sys.intern(drawn[:3] + drawn[3:]) is drawn  # a copy finds the drawn string
    else:
        assert shared is copy and sys.intern(other) is other  # nothing was interned


def test_bus_dispatches_by_type_and_base_type_in_order():
    bus = MessageBus()
    calls: list[str] = []
    bus.subscribe(ProductCreated, lambda e: calls.append(f"specific {e.sku}"))
    bus.subscribe(DomainEvent, lambda e: calls.append("any"))
    bus.publish(ProductCreated(at=0.0, sku="A"))
    bus.publish(DomainEvent(at=0.0))
    assert calls == ["specific A", "any", "any"]
    bus.subscribe(ProductCreated, lambda e: calls.append("late"))
    calls.clear()
    bus.publish(ProductCreated(at=0.0, sku="B"))
    assert calls == ["specific B", "late", "any"]
