"""ShallowCopied: deep copies that copy each container and share the immutable values."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from sim.domain.carts import Cart
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.domain.snapshots import ShallowCopied


@dataclass(slots=True)
class _Thing(ShallowCopied):
    name: str
    price: Money
    tags: set[str] = field(default_factory=set)
    lines: dict[str, int] = field(default_factory=dict)
    log: list[tuple[float, str]] = field(default_factory=list)
    status: OrderStatus = OrderStatus.PENDING
    built: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.built += 1


def test_a_copy_has_its_own_containers_and_shares_the_immutable_values():
    thing = _Thing("a", Money(1999), {"x"}, {"SKU-1": 2}, [(1.0, "made")])
    clone = copy.deepcopy(thing)
    assert clone == thing and type(clone) is _Thing
    for name in ("tags", "lines", "log"):
        assert getattr(clone, name) is not getattr(thing, name)
    assert clone.name is thing.name and clone.price is thing.price
    assert clone.status is OrderStatus.PENDING
    clone.tags.add("y")
    clone.lines["SKU-2"] = 1
    clone.log.append((2.0, "changed"))
    assert (thing.tags, thing.lines, thing.log) == ({"x"}, {"SKU-1": 2}, [(1.0, "made")])


def test_a_copy_is_not_a_new_object_its_init_does_not_run_again():
    thing = _Thing("a", Money(1))
    thing.built = 5
    assert copy.deepcopy(thing).built == 5


def test_an_aggregate_copy_restores_what_the_aggregate_was():
    cart = Cart.create("user-1", 10.0)
    cart.add("SKU-1", 2, 11.0)
    before = copy.deepcopy(cart)
    cart.add("SKU-2", 1, 12.0)
    cart.events.clear()
    assert before.lines == {"SKU-1": 2} and cart.lines == {"SKU-1": 2, "SKU-2": 1}
    assert before.updated_at == 11.0 and len(before.events) == 1
