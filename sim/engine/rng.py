"""Named random streams: one numpy Generator per source of randomness (common random numbers).

Every source of randomness in a run draws from its own stream, looked up by name::

    streams = Streams(seed=7, replication=2)
    gaps = streams["arrivals"].exponential(1 / rate, size=1000)

The stream called ``name`` of replication ``r`` is
``Generator(PCG64(SeedSequence(seed, spawn_key=(r, stable_id(name)))))``: a pure function of
``(seed, replication, name)``. Creating, using or never using one stream cannot change another
stream's numbers, whatever the order or the set of names asked for. So a what-if variant that
changes one station's capacity (and therefore how many numbers that station draws) leaves every
other source's sequence untouched, and the paired comparison stays sharp (ARCHITECTURE.md,
principle 7). ``stable_id`` is ``zlib.crc32`` of the UTF-8 name, stable across processes and
Python versions (unlike the salted built-in ``hash``).

Stream names the engine uses (:data:`STREAM_NAMES`, plus one per payment gateway):

- ``arrivals`` -- inter-arrival gaps of new sessions
- ``behavior`` -- the shopper's next page, think times, session ends
- ``catalog`` -- which product or category a page shows, search terms
- ``basket`` -- basket sizes and quantities
- ``population`` -- new or returning user, which user
- ``app`` / ``database`` / ``cache`` -- service times of those stations
- ``payment`` -- choice of gateway and payment method, card outcomes
- ``gateway.<name>`` -- one stream per payment gateway: latency, declines, timeouts
- ``warehouse`` -- pick / pack / ship / deliver times
- ``returns`` -- whether and when an order is returned
- ``faults`` -- fault times and durations (MTBF / MTTR)
"""

from __future__ import annotations

import operator
import zlib

import numpy as np

__all__ = ["STREAM_NAMES", "Streams", "gateway_stream", "replication_seeds", "stable_id"]

STREAM_NAMES: tuple[str, ...] = (
    "arrivals",
    "behavior",
    "catalog",
    "basket",
    "population",
    "app",
    "database",
    "cache",
    "payment",
    "warehouse",
    "returns",
    "faults",
)
"""The fixed stream names the engine uses; each gateway adds :func:`gateway_stream` ``(name)``."""


def gateway_stream(gateway: str) -> str:
    """Return the stream name of payment gateway ``gateway``: ``"gateway.<gateway>"``."""
    return f"gateway.{gateway}"


def stable_id(name: str) -> int:
    """Return a stable 32-bit id of a stream name: ``zlib.crc32`` of its UTF-8 bytes."""
    return zlib.crc32(name.encode("utf-8"))


def _check_index(what: str, value: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {number}")
    return number


class Streams:
    """The named random streams of one replication of one seeded run.

    ``streams[name]`` returns that name's ``numpy.random.Generator`` (PCG64), created on first
    use and the same object afterwards (so successive draws continue the stream). Two different
    names whose 32-bit ids collide would share numbers; asking for the second one raises
    ``ValueError`` instead.
    """

    __slots__ = ("_generators", "_names_by_id", "replication", "seed")

    def __init__(self, seed: int, replication: int = 0) -> None:
        self.seed: int = _check_index("seed", seed)
        """The run's seed (the entropy of every stream)."""
        self.replication: int = _check_index("replication", replication)
        """The replication index (the first element of every stream's spawn key)."""
        self._generators: dict[str, np.random.Generator] = {}
        self._names_by_id: dict[int, str] = {}

    def seed_sequence(self, name: str) -> np.random.SeedSequence:
        """Return the SeedSequence of stream ``name`` (a fresh object, not the cached stream)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a stream name must be a non-empty string, got {name!r}")
        return np.random.SeedSequence(self.seed, spawn_key=(self.replication, stable_id(name)))

    def __getitem__(self, name: str) -> np.random.Generator:
        """Return the Generator of stream ``name``, creating it on first use."""
        generator = self._generators.get(name)
        if generator is None:
            sequence = self.seed_sequence(name)
            ident = sequence.spawn_key[1]
            other = self._names_by_id.get(ident)
            if other is not None:
                raise ValueError(
                    f"stream names {other!r} and {name!r} have the same id {ident}; rename one"
                )
            self._names_by_id[ident] = name
            generator = np.random.Generator(np.random.PCG64(sequence))
            self._generators[name] = generator
        return generator

    def generator(self, family: str, index: int) -> np.random.Generator:
        """Return a fresh Generator for entity ``index`` of a ``family`` (one per session).

        Its spawn key is (replication, id of family, index), so entity 17's numbers are the
        same whatever else the run does: what-if variants stay paired entity by entity.
        """
        key = (self.replication, stable_id(family), _check_index("index", index))
        return np.random.Generator(
            np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=key))
        )

    def __contains__(self, name: object) -> bool:
        """Return whether stream ``name`` has been created."""
        return name in self._generators

    def names(self) -> tuple[str, ...]:
        """Return the names of the streams created so far, in creation order."""
        return tuple(self._generators)

    def __repr__(self) -> str:
        """Return ``Streams(seed=..., replication=...)``."""
        return f"Streams(seed={self.seed}, replication={self.replication})"


def replication_seeds(seed: int, n: int) -> list[int]:
    """Return ``n`` independent 64-bit integer seeds derived from ``seed``, one per replication.

    Seed ``r`` is the first 64-bit word of ``SeedSequence(seed, spawn_key=(r,))``. Meant for
    consumers that accept a single integer seed (another library, a worker's log line); the
    engine itself keys replications directly with ``Streams(seed, replication=r)``. The spawn
    keys have length 1, so they never coincide with a stream's ``(replication, id)`` key.
    """
    seed = _check_index("seed", seed)
    n = _check_index("n", n)
    return [
        int(np.random.SeedSequence(seed, spawn_key=(r,)).generate_state(1, np.uint64)[0])
        for r in range(n)
    ]
