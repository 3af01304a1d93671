"""The recorder: append-only metric rows, stamped with simulated time, turned into frames once.

Actors call the ``on_*`` methods as things happen; nothing is aggregated during the run
except what must be (time-weighted station statistics live in the stations). Columns are
plain Python lists, one per field, so appending a row costs a handful of list appends and
``frames()`` builds each DataFrame in one go at the end. Domain events reach the recorder
through the message bus (the order lifecycle), so actors do not repeat what the domain says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sim.domain.events import OrderStatusChanged

REQUEST_COLUMNS = (
    "time",
    "session",
    "user",
    "page",
    "response",
    "app_wait",
    "app_service",
    "db_wait",
    "db_queries",
    "cache_wait",
    "cache_hits",
    "cache_misses",
    "outcome",
)
"""Columns of the per-request frame (times in seconds; ``time`` is when the request arrived)."""

SESSION_COLUMNS = ("session", "user", "start", "end", "pages", "returning", "orders", "end_reason")
"""Columns of the per-session frame."""

PAYMENT_COLUMNS = ("time", "order_id", "gateway", "attempt", "outcome", "latency")
"""Columns of the per-gateway-call frame."""

ORDER_EVENT_COLUMNS = ("time", "order_id", "old", "new")
"""Columns of the order-transition frame."""

FAULT_COLUMNS = ("kind", "target", "start", "end")
"""Columns of the fault-window frame."""


class Table:
    """Columns of equal length, appended row by row, turned into a DataFrame once."""

    __slots__ = ("_columns", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._columns: tuple[list[Any], ...] = tuple([] for _ in self.names)

    def append(self, *values: Any) -> None:
        """Append one row (values in column order)."""
        for column, value in zip(self._columns, values, strict=True):
            column.append(value)

    def __len__(self) -> int:
        """Return the number of rows."""
        return len(self._columns[0])

    def frame(self) -> pd.DataFrame:
        """Return the rows as a DataFrame with the declared columns."""
        return pd.DataFrame(dict(zip(self.names, self._columns, strict=True)))


class Recorder:
    """Collects the rows of one run: requests, sessions, payments, order transitions, faults."""

    def __init__(self) -> None:
        self.requests = Table(REQUEST_COLUMNS)
        self.sessions = Table(SESSION_COLUMNS)
        self.payments = Table(PAYMENT_COLUMNS)
        self.order_events = Table(ORDER_EVENT_COLUMNS)
        self.faults = Table(FAULT_COLUMNS)
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named business counter (stock-outs, fraud blocks, retries, ...)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def on_order_status(self, event: OrderStatusChanged) -> None:
        """Record an order transition (subscribed to the bus)."""
        self.order_events.append(event.at, event.order_id, event.old, event.new)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Return every table as a DataFrame."""
        return {
            "requests": self.requests.frame(),
            "sessions": self.sessions.frame(),
            "payments": self.payments.frame(),
            "order_events": self.order_events.frame(),
            "faults": self.faults.frame(),
        }
