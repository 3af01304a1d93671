"""Cheap deep copies of aggregates, for the unit of work's rollback snapshots.

The unit of work copies every aggregate a transaction reads (``copy.deepcopy``), so that a
rollback can put it back. Every aggregate here is a slotted dataclass whose fields hold
immutable values (strings, numbers, enums, tuples, frozen value objects such as ``Money``) or
containers of such values (a list, dict or set, one level deep). For such a class, copying each
container and sharing everything else gives an independent copy, at a fraction of
``copy.deepcopy``'s generic cost (it visits every value and keeps a memo of them).

A class opts in by inheriting :class:`ShallowCopied`. ``tests/domain/test_snapshots.py`` checks
every opted-in class against the rule on the aggregates a simulated run creates.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["ShallowCopied"]

_S = TypeVar("_S", bound="ShallowCopied")
_CONTAINERS = frozenset({list, dict, set})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class ShallowCopied:
    """Mixin for dataclasses whose containers hold only immutable values: fast deep copies."""

    __slots__ = ()

    def __deepcopy__(self: _S, memo: dict[int, Any]) -> _S:
        """Return an independent copy: each list, dict or set copied, every other value shared.

        The copy is made without ``__init__`` (a snapshot is not a new aggregate: nothing is
        validated or recorded again).
        """
        cls = type(self)
        copied = cls.__new__(cls)
        for name in _field_names(cls):
            value = getattr(self, name)
            if type(value) in _CONTAINERS:
                value = value.copy()
            setattr(copied, name, value)
        return copied
