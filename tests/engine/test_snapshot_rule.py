"""Every aggregate a simulated run stores keeps the rule that makes its snapshots cheap.

``ShallowCopied`` copies lists, dicts and sets one level deep and shares every other value. That
is a deep copy only if the other values are immutable and the containers hold immutable values.
This test checks it on what a real run leaves in every repository, so a new field that holds a
mutable object (or a container of them) fails here rather than corrupting a rollback.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any

from sim.domain.snapshots import ShallowCopied
from sim.engine.shoppers import arrivals
from sim.scenario import parse_scenario
from sim.services.store import Repository
from tests.engine._tiny import smoke_data, world_of

_ATOMS = (str, int, float, bool, bytes, type(None), enum.Enum)
_CONTAINERS = (list, dict, set)


def _immutable(value: Any) -> bool:
    if isinstance(value, _ATOMS):
        return True
    if isinstance(value, tuple | frozenset):
        return all(_immutable(v) for v in value)
    if dataclasses.is_dataclass(value) and type(value).__dataclass_params__.frozen:
        return all(_immutable(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def _problems(item: Any) -> list[str]:
    found = []
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if type(value) in _CONTAINERS:
            members = list(value.items()) if isinstance(value, dict) else list(value)
            if not all(_immutable(m) for m in members):
                found.append(f"{type(item).__name__}.{f.name} holds a mutable value")
        elif not _immutable(value):
            found.append(f"{type(item).__name__}.{f.name} is mutable: {type(value).__name__}")
    return found


def test_every_stored_aggregate_is_shallow_copied_and_keeps_the_rule():
    scenario = parse_scenario({**smoke_data(), "horizon": "20m"})
    world = world_of(scenario)
    world.env.process(arrivals(world))
    world.env.run(until=scenario.horizon)
    kinds: dict[str, int] = {}
    for part in world.uow._parts:
        if not isinstance(part, Repository):
            continue
        for item in part.values():
            kinds[type(item).__name__] = kinds.get(type(item).__name__, 0) + 1
            if _immutable(item):  # a frozen record (an e-mail claim): nothing to restore
                continue
            assert isinstance(item, ShallowCopied), type(item).__name__
            assert _problems(item) == []
            clone = copy.deepcopy(item)
            assert clone == item
            for f in dataclasses.fields(item):
                if type(getattr(item, f.name)) in _CONTAINERS:
                    assert getattr(clone, f.name) is not getattr(item, f.name)
    # The run stored every kind of aggregate the shop has (coupons and sessions included).
    assert set(kinds) >= {
        "User",
        "Session",
        "ActivityLog",
        "Category",
        "Product",
        "StockItem",
        "Reservation",
        "Cart",
        "Coupon",
        "Order",
        "CustomerHistory",
        "Payment",
        "IdempotencyRecord",
    }, kinds


def test_the_rule_check_itself_catches_a_mutable_value():
    @dataclasses.dataclass
    class Bad:
        ok: tuple[str, ...]
        nested: list[list[int]]
        raw: bytearray

    assert _problems(Bad(("a",), [[1]], bytearray())) == [
        "Bad.nested holds a mutable value",
        "Bad.raw is mutable: bytearray",
    ]
