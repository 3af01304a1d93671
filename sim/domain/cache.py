"""The cache store behind the simulated Redis-like server: LRU, LFU or TTL eviction.

``CacheStore(capacity, policy, default_ttl)`` holds at most ``capacity`` entries. Every entry
may expire (its own ``ttl`` or the store's ``default_ttl``): an entry is live while
``now < expires``; an expired entry is a miss (and an expiration) when read and is removed
lazily. When a new key arrives at a full store one entry is evicted by the policy:

- ``lru``: the least recently used (read or written) entry; an OrderedDict, O(1).
- ``lfu``: the least frequently used entry, ties by least recently used; O(1) through a
  linked list of frequency buckets (the classic constant-time LFU).
- ``ttl``: the entry that expires soonest (Redis's volatile-ttl), entries without expiry
  last and among those the oldest write first; a heap with lazy deletion, O(log n).

A victim that had expired already counts as an expiration, not an eviction. ``get`` is the
simulation's hottest path: it is one dict look-up, a comparison and a counter. It never
raises on a miss; it returns :data:`MISS` (stored values may be None).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

from sim.domain.errors import InvalidValue

Policy = Literal["lru", "lfu", "ttl"]
"""The eviction policies of a cache store."""

POLICIES: tuple[str, ...] = ("lru", "lfu", "ttl")
"""Every policy name :class:`CacheStore` accepts."""

_NEVER = float("inf")


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISS"  # copies and pickles stay the one sentinel


MISS: Any = _Miss()
"""What :meth:`CacheStore.get` returns on a miss (compare with ``is``)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """The counters of a cache store at one moment."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    hit_ratio: float
    """Hits per lookup (0.0 before the first lookup)."""


class _Entry:
    __slots__ = ("expires", "value")

    def __init__(self, value: Any, expires: float) -> None:
        self.value = value
        self.expires = expires


class CacheStore:
    """A bounded key-value store with expiry and LRU, LFU or TTL eviction.

    ``CacheStore(...)`` returns the implementation of the chosen policy (a subclass). The
    counters ``hits``, ``misses``, ``evictions``, ``expirations`` and ``invalidations`` are
    public attributes; :meth:`stats` returns them together. ``len`` and ``in`` count stored
    entries, including expired ones not yet removed.
    """

    __slots__ = (
        "_data",
        "capacity",
        "default_ttl",
        "evictions",
        "expirations",
        "hits",
        "invalidations",
        "misses",
        "policy",
    )

    def __new__(
        cls, capacity: int = 1, policy: Policy = "lru", default_ttl: float | None = None
    ) -> CacheStore:
        """Return a store of the class implementing ``policy``."""
        if cls is CacheStore:
            impl = _IMPLEMENTATIONS.get(policy)
            if impl is None:
                raise InvalidValue(
                    f"unknown cache policy {policy!r}; expected one of {', '.join(POLICIES)}"
                )
            cls = impl
        return object.__new__(cls)

    def __init__(self, capacity: int, policy: Policy = "lru", default_ttl: float | None = None):
        if type(capacity) is not int or capacity < 1:
            raise InvalidValue(f"cache capacity must be an integer >= 1, got {capacity!r}")
        if default_ttl is not None and not 0 < default_ttl < _NEVER:
            raise InvalidValue(f"default ttl must be positive seconds or None, got {default_ttl!r}")
        self.capacity = capacity
        self.policy = policy
        self.default_ttl = default_ttl
        self.hits = self.misses = self.evictions = self.expirations = self.invalidations = 0
        self._data: dict[Hashable, Any] = {}

    # --- reading ---------------------------------------------------------------------------
    def get(self, key: Hashable, now: float) -> Any:  # pragma: no cover - every policy overrides
        """Return the value stored for ``key`` at ``now``, or :data:`MISS`."""
        raise NotImplementedError

    def put(  # pragma: no cover - every policy overrides
        self, key: Hashable, value: Any, now: float, ttl: float | None = None
    ) -> None:
        """Store ``value`` for ``key``, expiring ``ttl`` (or the default) seconds from ``now``.

        A new key in a full store first evicts one entry by the policy. Writing a live key
        replaces its value and expiry and counts as a use (LRU recency, LFU frequency).
        Raises InvalidValue for a ttl that is not positive.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        """Return the number of stored entries."""
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """Return True if an entry is stored for ``key`` (expired or not)."""
        return key in self._data

    @property
    def hit_ratio(self) -> float:
        """Return hits per lookup (0.0 before the first lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def stats(self) -> CacheStats:
        """Return the counters as one frozen value."""
        return CacheStats(
            self.hits,
            self.misses,
            self.evictions,
            self.expirations,
            self.invalidations,
            self.hit_ratio,
        )

    # --- removing --------------------------------------------------------------------------
    def invalidate(self, key: Hashable) -> bool:
        """Remove the entry for ``key``; return False if there was none."""
        if self._data.pop(key, None) is None:
            return False
        self.invalidations += 1
        return True

    def flush(self) -> None:
        """Remove every entry (a restart or FLUSHALL); the counters are kept."""
        self._data.clear()

    # --- shared helpers --------------------------------------------------------------------
    def _expiry(self, now: float, ttl: float | None) -> float:
        if ttl is None:
            ttl = self.default_ttl
            if ttl is None:
                return _NEVER
        elif not 0 < ttl < _NEVER:
            raise InvalidValue(f"ttl must be positive seconds, got {ttl!r}")
        return now + ttl

    def _count_out(self, victim: _Entry, now: float) -> None:
        if now >= victim.expires:
            self.expirations += 1
        else:
            self.evictions += 1

    def __repr__(self) -> str:
        """Show the policy, the fill and the hit ratio."""
        return (
            f"CacheStore(policy={self.policy!r}, size={len(self._data)}/{self.capacity}, "
            f"hit_ratio={self.hit_ratio:.3f})"
        )


# --- LRU -------------------------------------------------------------------------------------
class _LruStore(CacheStore):
    __slots__ = ()
    _data: OrderedDict[Hashable, _Entry]

    def __init__(self, capacity: int, policy: Policy = "lru", default_ttl: float | None = None):
        super().__init__(capacity, policy, default_ttl)
        self._data = OrderedDict()

    def get(self, key: Hashable, now: float) -> Any:
        data = self._data
        entry = data.get(key)
        if entry is None:
            self.misses += 1
            return MISS
        if now >= entry.expires:
            del data[key]
            self.expirations += 1
            self.misses += 1
            return MISS
        data.move_to_end(key)
        self.hits += 1
        return entry.value

    def put(self, key: Hashable, value: Any, now: float, ttl: float | None = None) -> None:
        expires = self._expiry(now, ttl)
        data = self._data
        entry = data.get(key)
        if entry is not None:
            if now < entry.expires:
                entry.value, entry.expires = value, expires
                data.move_to_end(key)
                return
            del data[key]
            self.expirations += 1
        if len(data) >= self.capacity:
            self._count_out(data.popitem(last=False)[1], now)
        data[key] = _Entry(value, expires)


# --- LFU -------------------------------------------------------------------------------------
class _Bucket:
    """The keys used exactly ``freq`` times, oldest arrival first; a node of a ring list."""

    __slots__ = ("freq", "keys", "next", "prev")

    def __init__(self, freq: int) -> None:
        self.freq = freq
        self.keys: dict[Hashable, None] = {}
        self.prev: _Bucket = self
        self.next: _Bucket = self


class _LfuEntry(_Entry):
    __slots__ = ("bucket",)

    def __init__(self, value: Any, expires: float, bucket: _Bucket) -> None:
        self.value = value
        self.expires = expires
        self.bucket = bucket


class _LfuStore(CacheStore):
    __slots__ = ("_head",)
    _data: dict[Hashable, _LfuEntry]

    def __init__(self, capacity: int, policy: Policy = "lfu", default_ttl: float | None = None):
        super().__init__(capacity, policy, default_ttl)
        self._head = _Bucket(0)  # sentinel: head.next is the lowest frequency

    @staticmethod
    def _after(bucket: _Bucket, freq: int) -> _Bucket:
        """Return the bucket of ``freq`` following ``bucket``, inserting it if missing."""
        nxt = bucket.next
        if nxt.freq == freq:
            return nxt
        new = _Bucket(freq)
        new.prev, new.next = bucket, nxt
        bucket.next = nxt.prev = new
        return new

    @staticmethod
    def _leave(bucket: _Bucket, key: Hashable) -> None:
        keys = bucket.keys
        del keys[key]
        if not keys:
            bucket.prev.next, bucket.next.prev = bucket.next, bucket.prev

    def _bump(self, key: Hashable, entry: _LfuEntry) -> None:
        bucket = entry.bucket
        target = self._after(bucket, bucket.freq + 1)
        target.keys[key] = None
        entry.bucket = target
        self._leave(bucket, key)

    def get(self, key: Hashable, now: float) -> Any:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return MISS
        if now >= entry.expires:
            del self._data[key]
            self._leave(entry.bucket, key)
            self.expirations += 1
            self.misses += 1
            return MISS
        self._bump(key, entry)
        self.hits += 1
        return entry.value

    def put(self, key: Hashable, value: Any, now: float, ttl: float | None = None) -> None:
        expires = self._expiry(now, ttl)
        data = self._data
        entry = data.get(key)
        if entry is not None:
            if now < entry.expires:
                entry.value, entry.expires = value, expires
                self._bump(key, entry)
                return
            del data[key]
            self._leave(entry.bucket, key)
            self.expirations += 1
        head = self._head
        if len(data) >= self.capacity:
            coldest = head.next
            victim_key = next(iter(coldest.keys))
            self._leave(coldest, victim_key)
            self._count_out(data.pop(victim_key), now)
        bucket = self._after(head, 1)
        bucket.keys[key] = None
        data[key] = _LfuEntry(value, expires, bucket)

    def frequency(self, key: Hashable) -> int:
        """Return how often the stored entry for ``key`` was used (0 if none is stored)."""
        entry = self._data.get(key)
        return 0 if entry is None else entry.bucket.freq

    def invalidate(self, key: Hashable) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self._leave(entry.bucket, key)
        self.invalidations += 1
        return True

    def flush(self) -> None:
        self._data.clear()
        self._head = _Bucket(0)


# --- TTL -------------------------------------------------------------------------------------
COMPACT_SLACK = 64
"""Stale heap items tolerated beyond the store's capacity before the heap is rebuilt."""


class _TtlEntry(_Entry):
    __slots__ = ("seq",)

    def __init__(self, value: Any, expires: float, seq: int) -> None:
        self.value = value
        self.expires = expires
        self.seq = seq


class _TtlStore(CacheStore):
    __slots__ = ("_heap", "_seq")
    _data: dict[Hashable, _TtlEntry]

    def __init__(self, capacity: int, policy: Policy = "ttl", default_ttl: float | None = None):
        super().__init__(capacity, policy, default_ttl)
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0

    def get(self, key: Hashable, now: float) -> Any:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return MISS
        if now >= entry.expires:
            del self._data[key]
            self.expirations += 1
            self.misses += 1
            return MISS
        self.hits += 1
        return entry.value

    def put(self, key: Hashable, value: Any, now: float, ttl: float | None = None) -> None:
        expires = self._expiry(now, ttl)
        data = self._data
        heap = self._heap
        self._seq = seq = self._seq + 1
        entry = data.get(key)
        if entry is not None:
            if now < entry.expires:
                entry.value, entry.expires, entry.seq = value, expires, seq
                heapq.heappush(heap, (expires, seq, key))
                self._compact()
                return
            del data[key]
            self.expirations += 1
        if len(data) >= self.capacity:
            while True:  # pop stale items (their entry was replaced or removed) until a live one
                _, victim_seq, victim_key = heapq.heappop(heap)
                victim = data.get(victim_key)
                if victim is not None and victim.seq == victim_seq:
                    break
            del data[victim_key]
            self._count_out(victim, now)
        data[key] = _TtlEntry(value, expires, seq)
        heapq.heappush(heap, (expires, seq, key))
        self._compact()

    def _compact(self) -> None:
        if len(self._heap) > 2 * self.capacity + COMPACT_SLACK:
            heap = [(e.expires, e.seq, k) for k, e in self._data.items()]
            heapq.heapify(heap)
            self._heap = heap

    def flush(self) -> None:
        self._data.clear()
        self._heap = []


_IMPLEMENTATIONS: dict[str, type[CacheStore]] = {
    "lru": _LruStore,
    "lfu": _LfuStore,
    "ttl": _TtlStore,
}
