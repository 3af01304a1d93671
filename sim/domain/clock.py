"""Simulated time: seconds since the simulation epoch, and its calendar reading.

The domain never reads a clock; every operation takes ``now`` (float seconds). Where a
rule needs the calendar (a card's expiry month), :func:`calendar_month` converts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
"""The wall-clock instant that simulated time 0 stands for."""

MINUTE = 60.0
"""Seconds in a minute."""
HOUR = 3600.0
"""Seconds in an hour."""
DAY = 86400.0
"""Seconds in a day."""


def calendar_month(now: float) -> tuple[int, int]:
    """Return the (year, month) that simulated time ``now`` falls in."""
    moment = EPOCH + timedelta(seconds=now)
    return moment.year, moment.month
