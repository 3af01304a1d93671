"""A process-wide tally of what the reliability tests exercised (faults, examples, cases).

Tests add to it; ``tests/stress/conftest.py`` prints it at the end of a pytest session and,
when ``RELIABILITY_TALLY`` names a file, writes it there as JSON. The README's reliability
figures come from it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

COUNTS: Counter[str] = Counter()
NOTES: dict[str, Any] = {}


def add(name: str, n: int = 1) -> None:
    """Add ``n`` to the count called ``name``."""
    COUNTS[name] += n


def note(name: str, value: Any) -> None:
    """Keep one figure (a timing, a slope) under ``name``; the last one wins."""
    NOTES[name] = value


def snapshot() -> dict[str, Any]:
    """Return the counts and notes as one plain mapping."""
    return {"counts": dict(sorted(COUNTS.items())), "notes": dict(sorted(NOTES.items()))}
