from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine.rng import STREAM_NAMES, Streams, gateway_stream, replication_seeds, stable_id

ALL_NAMES = (*STREAM_NAMES, gateway_stream("card-a"), gateway_stream("card-b"), "gateway.paypal")


def test_stable_id_is_crc32_of_the_utf8_name():
    assert stable_id("arrivals") == 3612958146  # pinned: must never change between versions
    assert stable_id("gateway.café") == zlib.crc32("gateway.café".encode())
    assert 0 <= stable_id("x" * 1000) < 2**32


def test_the_engine_stream_names_have_distinct_ids():
    assert len({stable_id(name) for name in ALL_NAMES}) == len(ALL_NAMES)
    assert gateway_stream("card-a") == "gateway.card-a"
    assert {"arrivals", "behavior", "database", "payment", "faults"} <= set(STREAM_NAMES)


def test_a_stream_is_pcg64_seeded_by_seed_replication_and_name():
    expected = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(7, spawn_key=(2, stable_id("basket"))))
    )
    assert Streams(7, replication=2)["basket"].random(5).tolist() == expected.random(5).tolist()


def test_streams_are_reproducible_golden_values():
    # numpy guarantees the SeedSequence / PCG64 streams are stable across versions (NEP 19).
    assert Streams(7)["arrivals"].random(3).tolist() == [
        0.5668192309800594,
        0.49922237260804336,
        0.11621111576596399,
    ]
    assert Streams(7, 1)["arrivals"].random() == 0.08008739501588391


def test_asking_again_continues_the_same_stream():
    streams = Streams(3)
    first = streams["behavior"]
    head = first.random(4).tolist()
    assert streams["behavior"] is first
    tail = streams["behavior"].random(2).tolist()
    assert head + tail == Streams(3)["behavior"].random(6).tolist()


def test_names_seeds_and_replications_give_different_numbers():
    draws = {
        (seed, rep, name): tuple(Streams(seed, rep)[name].random(4).tolist())
        for seed in (0, 1)
        for rep in (0, 1)
        for name in ("arrivals", "behavior", "gateway.card-a")
    }
    assert len(set(draws.values())) == len(draws)


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.sampled_from(ALL_NAMES), min_size=1, max_size=len(ALL_NAMES), unique=True),
    sizes=st.lists(st.integers(0, 50), min_size=len(ALL_NAMES), max_size=len(ALL_NAMES)),
    seed=st.integers(0, 2**63),
    replication=st.integers(0, 1000),
)
def test_no_stream_depends_on_which_other_streams_exist_or_were_used(
    names, sizes, seed, replication
):
    # Interleave creation and draws of a random subset of streams in a random order; every
    # stream's numbers must equal those of a Streams object that only ever created that stream.
    shared = Streams(seed, replication)
    drawn: dict[str, list[float]] = {name: [] for name in names}
    for name, size in zip(names, sizes, strict=False):
        drawn[name] += shared[name].random(size).tolist()
    for name, size in zip(reversed(names), sizes, strict=False):
        drawn[name] += shared[name].random(size).tolist()
    for name, values in drawn.items():
        alone = Streams(seed, replication)[name].random(len(values)).tolist()
        assert values == alone, name


def test_names_and_membership_report_created_streams():
    streams = Streams(1)
    assert streams.names() == ()
    streams["faults"]
    streams["app"]
    assert streams.names() == ("faults", "app")
    assert "app" in streams
    assert "cache" not in streams
    assert repr(Streams(5, 2)) == "Streams(seed=5, replication=2)"


def test_seed_sequence_of_a_stream():
    sequence = Streams(9, 4).seed_sequence("cache")
    assert sequence.entropy == 9
    assert sequence.spawn_key == (4, stable_id("cache"))


def test_colliding_names_are_refused():
    assert stable_id("plumless") == stable_id("buckeroo")  # a known CRC-32 collision
    streams = Streams(1)
    streams["plumless"]
    with pytest.raises(ValueError, match="'plumless' and 'buckeroo' have the same id"):
        streams["buckeroo"]


@pytest.mark.parametrize("name", ["", 3, None])
def test_bad_stream_names_are_refused(name):
    with pytest.raises(ValueError, match="non-empty string"):
        Streams(1)[name]


@pytest.mark.parametrize(
    ("seed", "replication", "error", "message"),
    [
        (-1, 0, ValueError, "seed must be >= 0"),
        (1, -2, ValueError, "replication must be >= 0"),
        (1.5, 0, TypeError, "seed must be an integer"),
        (True, 0, TypeError, "seed must be an integer"),
        ("7", 0, TypeError, "seed must be an integer"),
    ],
)
def test_bad_seeds_are_refused(seed, replication, error, message):
    with pytest.raises(error, match=message):
        Streams(seed, replication)


def test_numpy_integers_are_accepted_as_seeds():
    assert Streams(np.int64(7))["arrivals"].random() == Streams(7)["arrivals"].random()


def test_replication_seeds():
    seeds = replication_seeds(7, 3)
    assert seeds == [3386250816931739734, 4042502035264064771, 17559002276220262541]
    assert replication_seeds(7, 5)[:3] == seeds
    assert replication_seeds(8, 3) != seeds
    assert replication_seeds(7, 0) == []
    assert len(set(replication_seeds(0, 1000))) == 1000
    with pytest.raises(ValueError, match="n must be >= 0"):
        replication_seeds(7, -1)
