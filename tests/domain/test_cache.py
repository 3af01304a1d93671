from __future__ import annotations

import copy
import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.cache import COMPACT_SLACK, MISS, POLICIES, CacheStats, CacheStore
from sim.domain.errors import InvalidValue


def present(store: CacheStore, keys: str) -> str:
    return "".join(k for k in keys if k in store)


# --- construction ----------------------------------------------------------------------------
@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "3"])
def test_capacity_must_be_a_positive_integer(capacity):
    with pytest.raises(InvalidValue, match="cache capacity must be an integer >= 1"):
        CacheStore(capacity, "lru")


def test_unknown_policy_is_rejected():
    with pytest.raises(InvalidValue, match="unknown cache policy 'fifo'; expected one of lru, lfu"):
        CacheStore(3, "fifo")  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, -1.0, math.inf, math.nan])
def test_default_ttl_must_be_positive(ttl):
    with pytest.raises(InvalidValue, match="default ttl must be positive seconds or None"):
        CacheStore(3, "lru", ttl)


@pytest.mark.parametrize("policy", POLICIES)
def test_put_rejects_a_non_positive_ttl(policy):
    store = CacheStore(3, policy)
    for ttl in (0, -5.0, math.nan):
        with pytest.raises(InvalidValue, match="ttl must be positive seconds"):
            store.put("a", 1, 0.0, ttl=ttl)
    assert len(store) == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_is_a_cache_store_with_its_settings(policy):
    store = CacheStore(4, policy, 60.0)
    assert isinstance(store, CacheStore)
    assert (store.capacity, store.policy, store.default_ttl) == (4, policy, 60.0)
    assert repr(store) == f"CacheStore(policy={policy!r}, size=0/4, hit_ratio=0.000)"


def test_miss_is_a_falsy_singleton_that_survives_copies():
    assert repr(MISS) == "MISS"
    assert not MISS
    assert copy.copy(MISS) is MISS
    assert copy.deepcopy(MISS) is MISS
    assert pickle.loads(pickle.dumps(MISS)) is MISS


# --- behaviour shared by every policy --------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_hits_misses_and_none_values(policy):
    store = CacheStore(3, policy)
    assert store.get("a", 0.0) is MISS
    store.put("a", None, 1.0)
    store.put("b", 0, 1.0)
    assert store.get("a", 2.0) is None
    assert store.get("b", 2.0) == 0
    assert store.get("c", 2.0) is MISS
    assert store.stats() == CacheStats(
        hits=2, misses=2, evictions=0, expirations=0, invalidations=0, hit_ratio=0.5
    )
    assert store.hit_ratio == 0.5
    assert (len(store), "a" in store, "c" in store) == (2, True, False)


@pytest.mark.parametrize("policy", POLICIES)
def test_an_entry_expires_at_its_ttl(policy):
    store = CacheStore(3, policy, default_ttl=10.0)
    store.put("a", "A", 0.0)
    store.put("b", "B", 0.0, ttl=30.0)
    assert store.get("a", 9.999) == "A"
    assert len(store) == 2
    assert store.get("a", 10.0) is MISS  # expired exactly at now + ttl
    assert "a" not in store  # removed on read
    assert store.get("a", 11.0) is MISS  # now a plain miss
    assert store.get("b", 29.0) == "B"
    assert store.stats() == CacheStats(
        hits=2, misses=2, evictions=0, expirations=1, invalidations=0, hit_ratio=0.5
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_writing_a_live_key_replaces_value_and_expiry(policy):
    store = CacheStore(3, policy, default_ttl=10.0)
    store.put("a", 1, 0.0)
    store.put("a", 2, 5.0)
    assert len(store) == 1
    assert store.get("a", 14.0) == 2
    assert store.get("a", 15.0) is MISS
    assert store.expirations == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_writing_an_expired_key_counts_the_expiration(policy):
    store = CacheStore(3, policy)
    store.put("a", 1, 0.0, ttl=1.0)
    store.put("a", 2, 5.0)
    assert store.get("a", 1000.0) == 2
    assert (store.expirations, store.evictions, len(store)) == (1, 0, 1)


@pytest.mark.parametrize("policy", POLICIES)
def test_an_expired_victim_counts_as_expiration_not_eviction(policy):
    store = CacheStore(1, policy)
    store.put("a", 1, 0.0, ttl=1.0)
    store.put("b", 2, 1.0)  # a expired exactly now
    assert (store.expirations, store.evictions) == (1, 0)
    store.put("c", 3, 6.0)
    assert (store.expirations, store.evictions) == (1, 1)
    assert present(store, "abc") == "c"


@pytest.mark.parametrize("policy", POLICIES)
def test_invalidate_and_flush(policy):
    store = CacheStore(3, policy)
    for key in "abc":
        store.put(key, key.upper(), 0.0)
    assert store.invalidate("b") is True
    assert store.invalidate("b") is False
    assert store.invalidate("zz") is False
    assert present(store, "abc") == "ac"
    assert store.get("b", 1.0) is MISS
    store.get("a", 1.0)
    store.flush()
    assert len(store) == 0
    assert store.get("a", 2.0) is MISS
    assert store.stats() == CacheStats(
        hits=1, misses=2, evictions=0, expirations=0, invalidations=1, hit_ratio=1 / 3
    )
    for key in "wxyz":  # works normally after a flush
        store.put(key, key, 3.0)
    assert present(store, "wxyz") == "xyz"
    assert store.evictions == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_a_store_survives_deepcopy_and_pickle(policy):
    store = CacheStore(2, policy, 100.0)
    store.put("a", [1], 0.0)
    store.get("a", 1.0)
    for clone in (copy.deepcopy(store), pickle.loads(pickle.dumps(store))):
        assert clone.get("a", 2.0) == [1]
        assert clone.get("b", 2.0) is MISS
        clone.put("b", 2, 2.0)
        clone.put("c", 3, 2.0)
        assert len(clone) == 2
    assert store.stats().hits == 1
    assert len(store) == 1


# --- LRU ---------------------------------------------------------------------------------------
def test_lru_evicts_the_least_recently_used():
    store = CacheStore(3, "lru")
    for key in "abc":
        store.put(key, key, 0.0)
    assert store.get("a", 1.0) == "a"  # order now b, c, a
    store.put("d", "d", 2.0)  # evicts b
    assert present(store, "abcd") == "acd"
    store.put("c", "C", 3.0)  # a write is a use: order a, d, c
    store.put("e", "e", 4.0)  # evicts a
    assert present(store, "abcde") == "cde"
    assert store.get("b", 5.0) is MISS
    assert store.get("d", 5.0) == "d"  # order c, e, d
    store.put("f", "f", 6.0)  # evicts c
    assert present(store, "abcdef") == "def"
    assert store.stats() == CacheStats(
        hits=2, misses=1, evictions=3, expirations=0, invalidations=0, hit_ratio=2 / 3
    )


# --- LFU ---------------------------------------------------------------------------------------
def test_lfu_evicts_the_least_frequently_used():
    store = CacheStore(3, "lfu")
    for key in "abc":
        store.put(key, key, 0.0)
    store.get("a", 1.0)
    store.get("a", 1.0)
    store.get("b", 1.0)  # frequencies a 3, b 2, c 1
    store.put("d", "d", 2.0)  # evicts c
    assert present(store, "abcd") == "abd"
    store.put("e", "e", 3.0)  # d has 1 use: evicted
    assert present(store, "abcde") == "abe"
    assert [store.frequency(k) for k in "abcde"] == [3, 2, 0, 0, 1]
    assert store.evictions == 2


def test_lfu_breaks_frequency_ties_by_least_recent_use():
    store = CacheStore(2, "lfu")
    store.put("x", 1, 0.0)
    store.put("y", 2, 0.0)
    store.put("z", 3, 1.0)  # x and y used once: x is older
    assert present(store, "xyz") == "yz"
    store.get("z", 2.0)
    store.get("y", 3.0)  # both used twice; z reached that count first
    store.put("w", 4, 4.0)
    assert present(store, "wxyz") == "wy"


def test_lfu_counts_a_write_as_a_use():
    store = CacheStore(2, "lfu")
    store.put("a", 1, 0.0)
    store.put("b", 1, 0.0)
    store.put("a", 2, 1.0)
    assert (store.frequency("a"), store.frequency("b")) == (2, 1)
    store.put("c", 3, 2.0)
    assert present(store, "abc") == "ac"


def test_lfu_new_entries_start_at_one_after_expiry_and_invalidation():
    store = CacheStore(2, "lfu")
    store.put("a", 1, 0.0, ttl=5.0)
    for _ in range(3):
        store.get("a", 1.0)
    assert store.frequency("a") == 4
    store.put("a", 2, 6.0)  # the expired entry is replaced by a fresh one
    assert store.frequency("a") == 1
    store.get("a", 7.0)
    store.invalidate("a")
    assert store.frequency("a") == 0
    store.put("b", 1, 8.0)
    store.put("a", 3, 8.0)
    store.put("c", 1, 9.0)  # a and b both at 1: b is older
    assert present(store, "abc") == "ac"


def test_lfu_skips_emptied_buckets():
    store = CacheStore(3, "lfu")
    store.put("a", 1, 0.0, ttl=1.0)
    store.put("b", 1, 0.0)
    store.put("c", 1, 0.0)
    store.get("b", 0.5)
    store.get("c", 0.5)
    store.get("c", 0.5)
    assert store.get("a", 2.0) is MISS  # a expires: the frequency-1 bucket is empty now
    store.put("d", 1, 3.0)
    store.put("e", 1, 3.0)  # d (1 use) is the coldest
    assert present(store, "abcde") == "bce"
    store.put("f", 1, 4.0)  # e (1 use) goes next, not b (2 uses)
    assert present(store, "abcdef") == "bcf"


# --- TTL ---------------------------------------------------------------------------------------
def test_ttl_evicts_the_entry_that_expires_soonest():
    store = CacheStore(3, "ttl")
    store.put("a", 1, 0.0, ttl=10.0)  # expires 10
    store.put("b", 1, 0.0, ttl=5.0)  # expires 5
    store.put("c", 1, 0.0)  # never
    store.get("b", 1.0)  # reads do not protect
    store.put("d", 1, 1.0, ttl=19.0)  # expires 20; evicts b
    assert present(store, "abcd") == "acd"
    store.put("e", 1, 2.0, ttl=28.0)  # expires 30; evicts a
    assert present(store, "abcde") == "cde"
    store.put("f", 1, 3.0)  # never; evicts d (20)
    store.put("g", 1, 4.0)  # never; evicts e (30)
    assert present(store, "abcdefg") == "cfg"
    store.put("h", 1, 5.0)  # only entries without expiry: the oldest write (c) goes
    assert present(store, "cfgh") == "fgh"
    assert store.evictions == 5


def test_ttl_ignores_stale_heap_items_of_rewritten_keys():
    store = CacheStore(2, "ttl")
    store.put("a", 1, 0.0, ttl=5.0)
    store.put("b", 1, 0.0, ttl=10.0)
    store.put("a", 2, 1.0, ttl=19.0)  # now expires 20; its old item (5) is stale
    store.put("c", 1, 2.0, ttl=28.0)  # evicts b (10), not a
    assert present(store, "abc") == "ac"
    store.invalidate("a")
    store.put("d", 1, 3.0, ttl=100.0)
    store.put("e", 1, 3.0, ttl=100.0)  # a's items are stale: c (30) goes
    assert present(store, "acde") == "de"


def test_ttl_heap_stays_bounded_under_rewrites():
    store = CacheStore(4, "ttl")
    for i in range(1000):
        store.put(f"k{i % 4}", i, float(i), ttl=50.0)  # rewrites leave stale heap items
        assert len(store._heap) <= 2 * 4 + COMPACT_SLACK + 1
    assert [store.get(f"k{i}", 1000.0) for i in range(4)] == [996, 997, 998, 999]
    store.put("new", 0, 1000.0, ttl=50.0)  # evicts k0, which expires soonest (1046)
    assert sorted(k for k in ("k0", "k1", "k2", "k3", "new") if k in store) == [
        "k1",
        "k2",
        "k3",
        "new",
    ]


# --- every policy against a simple reference model (property) ----------------------------------
class Model:
    """A brute-force cache: a list scanned for the victim on every eviction."""

    def __init__(self, capacity: int, policy: str, default_ttl: float | None) -> None:
        self.capacity, self.policy, self.default_ttl = capacity, policy, default_ttl
        self.entries: dict[str, dict] = {}
        self.tick = 0
        self.counts = dict.fromkeys(
            ("hits", "misses", "evictions", "expirations", "invalidations"), 0
        )

    def get(self, key: str, now: float) -> object:
        self.tick += 1
        entry = self.entries.get(key)
        if entry is None:
            self.counts["misses"] += 1
            return MISS
        if now >= entry["expires"]:
            del self.entries[key]
            self.counts["expirations"] += 1
            self.counts["misses"] += 1
            return MISS
        self.counts["hits"] += 1
        if self.policy != "ttl":
            entry["used"] = self.tick
            entry["freq"] += 1
        return entry["value"]

    def put(self, key: str, value: int, now: float, ttl: float | None) -> None:
        self.tick += 1
        ttl = ttl if ttl is not None else self.default_ttl
        expires = math.inf if ttl is None else now + ttl
        entry = self.entries.get(key)
        if entry is not None and now < entry["expires"]:
            entry.update(value=value, expires=expires, used=self.tick, freq=entry["freq"] + 1)
            return
        if entry is not None:
            del self.entries[key]
            self.counts["expirations"] += 1
        if len(self.entries) >= self.capacity:
            rank = {
                "lru": lambda k: self.entries[k]["used"],
                "lfu": lambda k: (self.entries[k]["freq"], self.entries[k]["used"]),
                "ttl": lambda k: (self.entries[k]["expires"], self.entries[k]["used"]),
            }[self.policy]
            victim = min(self.entries, key=rank)
            gone = self.entries.pop(victim)
            self.counts["expirations" if now >= gone["expires"] else "evictions"] += 1
        self.entries[key] = {"value": value, "expires": expires, "used": self.tick, "freq": 1}

    def invalidate(self, key: str) -> bool:
        if self.entries.pop(key, None) is None:
            return False
        self.counts["invalidations"] += 1
        return True


KEYS = "abcde"
operations = st.lists(
    st.tuples(
        st.sampled_from(["get"] * 5 + ["put"] * 5 + ["invalidate", "flush"]),
        st.sampled_from(KEYS),
        st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 3.0]),  # time step before the operation
        st.none() | st.sampled_from([1.0, 2.5, 4.0, 10.0]),  # ttl of a put
    ),
    max_size=80,
)


def run_against_model(policy, capacity, default_ttl, ops) -> None:
    store = CacheStore(capacity, policy, default_ttl)
    model = Model(capacity, policy, default_ttl)
    now = 0.0
    for n, (kind, key, step, ttl) in enumerate(ops):
        now += step
        if kind == "get":
            assert store.get(key, now) == model.get(key, now), n
        elif kind == "put":
            store.put(key, n, now, ttl=ttl)
            model.put(key, n, now, ttl)
        elif kind == "invalidate":
            assert store.invalidate(key) == model.invalidate(key), n
        else:
            store.flush()
            model.entries.clear()
        assert sorted(k for k in KEYS if k in store) == sorted(model.entries), n
        assert len(store) == len(model.entries)
    stats = store.stats()
    assert {k: getattr(stats, k) for k in model.counts} == model.counts


@settings(max_examples=500, deadline=None)
@given(
    capacity=st.integers(1, 4),
    default_ttl=st.none() | st.sampled_from([3.0, 6.0]),
    ops=operations,
)
def test_lru_matches_a_reference_model(capacity, default_ttl, ops):
    run_against_model("lru", capacity, default_ttl, ops)


@settings(max_examples=400, deadline=None)
@given(
    policy=st.sampled_from(["lfu", "ttl"]),
    capacity=st.integers(1, 4),
    default_ttl=st.none() | st.sampled_from([3.0, 6.0]),
    ops=operations,
)
def test_lfu_and_ttl_match_a_reference_model(policy, capacity, default_ttl, ops):
    run_against_model(policy, capacity, default_ttl, ops)
