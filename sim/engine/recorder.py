"""The recorder: append-only metric rows, or streaming aggregates, stamped with simulated time.

Actors call the ``on_*`` methods and append to the tables as things happen; nothing is
aggregated during the run except what must be (time-weighted station statistics live in the
stations). Each field is a column of its own: numbers packed in an ``array.array`` (eight
bytes a value), text in a list, so appending a row costs a handful of appends and ``frames()``
builds each DataFrame in one go at the end. Domain events reach the recorder through the
message bus (the order lifecycle), so actors do not repeat what the domain says.

Requests come in one of two modes (``metrics.requests`` of the scenario):

- ``rows`` (the default): one row per page request in the ``requests`` frame.
- ``aggregate``: no per-request rows. :class:`RequestAggregates` takes the same ``append`` and
  keeps, per interval of arrival time and page, the count and sums of every numeric field and
  the outcomes; per window of a whole number of intervals (``metrics.histogram_interval``)
  and page, a log-bucketed latency histogram (:mod:`sim.engine.histogram`, 1 % relative
  accuracy); and per page the number of distinct sessions that requested it. Requests of the
  intervals still receiving completions sit in a flat float buffer (ten numbers each); older
  intervals are folded into small numpy arrays whose size depends on the number of pages and
  latency buckets in use, never on the number of requests, and a folded interval's histogram
  is merged into its window's. Memory therefore grows with the number of intervals (well under
  a kilobyte each) and windows (a few kilobytes each), not with the number of requests.
"""

from __future__ import annotations

import operator
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd

from sim.domain.events import OrderStatusChanged
from sim.engine.histogram import ZERO_BUCKET, buckets_of

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

REQUEST_STATS_COLUMNS = (
    "start",
    "page",
    "requests",
    "response_sum",
    "response_max",
    "app_wait_sum",
    "app_service_sum",
    "db_wait_sum",
    "db_queries",
    "cache_wait_sum",
    "cache_hits",
    "cache_misses",
)
"""Columns of ``request_stats`` (aggregate mode): per interval of arrival and page, the count
of requests and the sums of their fields (``response_max`` is the largest response)."""

LATENCY_HISTOGRAM_COLUMNS = ("start", "page", "bucket", "count")
"""Columns of ``latency_histogram`` (aggregate mode): requests per histogram window (``start``
is the window's), page and response bucket (:mod:`sim.engine.histogram` bucket indices)."""

REQUEST_OUTCOME_COLUMNS = ("start", "page", "outcome", "count")
"""Columns of ``request_outcomes`` (aggregate mode): requests per interval, page and outcome."""

PAGE_SESSION_COLUMNS = ("page", "sessions")
"""Columns of ``page_sessions`` (aggregate mode): distinct sessions that requested each page."""

CACHE_COLUMNS = ("start", "hits", "misses", "hit_rate")
"""Columns of the cache frame: look-ups per interval of request arrival time."""

_F, _I = np.float64, np.int64
REQUEST_DTYPES = {
    **dict.fromkeys(("time", "response", "app_wait", "app_service", "db_wait", "cache_wait"), _F),
    **dict.fromkeys(("session", "db_queries", "cache_hits", "cache_misses"), _I),
}
"""The numeric columns of the per-request frame and their dtypes (the rest are text)."""

SESSION_DTYPES = {
    "session": _I,
    "start": _F,
    "end": _F,
    "pages": _I,
    "returning": np.bool_,
    "orders": _I,
}
"""The numeric and boolean columns of the per-session frame."""

PAYMENT_DTYPES = {"time": _F, "attempt": _I, "latency": _F}
"""The numeric columns of the per-gateway-call frame."""

ORDER_EVENT_DTYPES = {"time": _F}
"""The numeric column of the order-transition frame."""

AGGREGATE_FRAMES = ("request_stats", "latency_histogram", "request_outcomes", "page_sessions")
"""The frames only aggregate mode has (besides ``cache``); their presence marks the mode."""

REQUEST_MODES = ("rows", "aggregate")
"""The two ways of recording requests."""

# Layout of one buffered request (aggregate mode): ten floats.
_PAGE, _RESPONSE, _OUTCOME = 0, 1, 9
_SUMMED = (1, 2, 3, 4, 5, 6, 7, 8)  # response .. cache_misses, in REQUEST_STATS_COLUMNS order
_WIDTH = 10
_STATS_FIELDS = (  # columns of a folded chunk after the page code
    "requests",
    "response_sum",
    "app_wait_sum",
    "app_service_sum",
    "db_wait_sum",
    "db_queries",
    "cache_wait_sum",
    "cache_hits",
    "cache_misses",
    "response_max",
)
_BUCKET_SPAN = 4096  # bucket offsets (bucket - ZERO_BUCKET) are below this for values < 1e17 s
_OUTCOME_SPAN = 1 << 16
_OPEN_INTERVALS = 2  # intervals kept in the buffer: the latest and the one before it
_SINK: deque[None] = deque(maxlen=0)  # consumes an iterator in C, keeping nothing
_COUNT_FIELDS = ("requests", "db_queries", "cache_hits", "cache_misses")  # int64 in request_stats
_BATCH_ROWS = 1 << 13  # histogram rows that frames() sums and sorts at a time (about 8k)


_TYPECODES: dict[type, str] = {np.float64: "d", np.int64: "q"}
"""The ``array`` type code a Table keeps a column of each packed dtype in."""

_call: Callable[[Callable[[Any], Any], Any], Any] = getattr(
    operator, "call", lambda function, value: function(value)
)  # operator.call (Python 3.11+) applies in C


class _Chunk(NamedTuple):
    """One folded buffer: the requests of interval ``k`` that arrived while it was open."""

    k: int
    stats: np.ndarray  # one row per page, ascending code: (page code, *_STATS_FIELDS)
    outcome_keys: np.ndarray  # ascending (code * _OUTCOME_SPAN + outcome code)
    outcome_counts: np.ndarray


class _Window(NamedTuple):
    """The latency histogram of window ``k``: the folded intervals of that window merged."""

    k: int
    histogram: np.ndarray  # 2 x n: ascending keys (code * _BUCKET_SPAN + offset), counts


_K = TypeVar("_K", _Chunk, _Window)  # what is batched: folded intervals or windows


class Table:
    """Columns of equal length, appended row by row, turned into a DataFrame once.

    A column given the dtype float64 or int64 (``dtypes``) is kept packed, eight bytes a
    value in an ``array.array``, rather than as a list of Python objects (some 32 bytes a
    number), and becomes its frame column in one copy; its values must be numbers of that
    kind: a row with any other value is refused whole. A bool column is a list converted
    without inference. The other columns are lists, their dtype inferred by pandas (text,
    or text with None).
    """

    __slots__ = ("_appenders", "_columns", "_dtypes", "_width", "names")

    def __init__(self, names: Sequence[str], dtypes: Mapping[str, type] | None = None) -> None:
        self.names = tuple(names)
        self._width = len(self.names)
        known = dict(dtypes or {})
        unknown = set(known) - set(self.names)
        if unknown:
            raise ValueError(f"dtypes for columns not in {self.names}: {sorted(unknown)}")
        for name, dtype in known.items():
            if dtype not in _TYPECODES and dtype is not np.bool_:
                raise ValueError(f"column {name!r}: dtype must be float64, int64 or bool")
        self._dtypes = tuple(known.get(name) for name in self.names)
        self._columns: tuple[list[Any] | array[Any], ...] = tuple(
            array(_TYPECODES[dtype]) if dtype in _TYPECODES else [] for dtype in self._dtypes
        )
        self._appenders = tuple(column.append for column in self._columns)

    def append(self, *values: Any) -> None:
        """Append one row (values in column order)."""
        if len(values) != self._width:
            raise ValueError(f"a row of {self.names} has {self._width} values, got {len(values)}")
        # Each column's append mapped over the values: the loop runs in C, not in bytecode.
        try:
            _SINK.extend(map(_call, self._appenders, values))
        except (TypeError, OverflowError) as exc:
            # A packed column refused its value: take back the columns already appended to.
            rows = len(self._columns[-1])
            for column in self._columns:
                if len(column) > rows:
                    del column[rows:]
            raise ValueError(f"a row of {self.names} refused: {exc}") from None

    def __len__(self) -> int:
        """Return the number of rows."""
        return len(self._columns[0])

    def frame(self, *, release: bool = False) -> pd.DataFrame:
        """Return the rows as a DataFrame with the declared columns.

        With ``release`` the table lets go of its rows once the frame holds them (it is
        empty afterwards), so the rows and the frame are not both kept to the end of a run.
        """
        if not self._columns[0]:  # (an empty Series would be object, not float)
            return pd.DataFrame({name: [] for name in self.names})
        # A column at a time; with ``release`` each is emptied once converted, so a long
        # run's rows are not held twice over (in the table and in the frame) at its end.
        converted = {}
        for name, column, dtype in zip(self.names, self._columns, self._dtypes, strict=True):
            converted[name] = pd.Series(column if dtype is None else np.array(column, dtype))
            if release:
                del column[:]
        return pd.DataFrame(converted, copy=False)


class SessionTable(Table):
    """The sessions table of aggregate mode: each row also tells the aggregates a session ended."""

    __slots__ = ("_ended",)

    def __init__(
        self,
        names: Sequence[str],
        ended: Callable[[Any], None],
        dtypes: Mapping[str, type] | None = None,
    ) -> None:
        super().__init__(names, dtypes)
        self._ended = ended

    def append(self, *values: Any) -> None:
        """Append one session row; the session (first value) is over."""
        super().append(*values)
        self._ended(values[0])


class RequestAggregates:
    """Streaming aggregates of page requests per interval of arrival time (aggregate mode).

    :meth:`append` takes the arguments of a request row (``REQUEST_COLUMNS``), so actors do
    not know which mode is on. Warm-up is a filter applied later, at interval granularity, by
    :func:`sim.engine.metrics.compute_kpis`: an interval is kept when its start is at or after
    the warm-up.
    """

    __slots__ = (
        "_buffers",
        "_chunks",
        "_count",
        "_latest",
        "_outcome_codes",
        "_outcomes",
        "_page_codes",
        "_page_sessions",
        "_pages",
        "_visited",
        "_windows",
        "interval",
        "per_window",
    )

    def __init__(self, interval: float, per_window: int = 1) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if per_window < 1:
            raise ValueError(f"per_window must be >= 1, got {per_window!r}")
        self.interval = float(interval)
        """Length of an interval in seconds (intervals start at 0)."""
        self.per_window = int(per_window)
        """Intervals per latency-histogram window (window ``w`` is intervals ``w * per_window``
        onwards)."""
        self._windows: list[_Window] = []
        self._buffers: dict[int, array[float]] = {}
        self._latest = -1
        self._chunks: list[_Chunk] = []
        self._page_codes: dict[str, int] = {}
        self._pages: list[str] = []
        self._outcome_codes: dict[str, int] = {}
        self._outcomes: list[str] = []
        self._visited: dict[Any, int] = {}
        self._page_sessions: list[int] = []
        self._count = 0

    # --- the hot path ----------------------------------------------------------------------
    def append(
        self,
        time: float,
        session: Any,
        user: Any,
        page: str,
        response: float,
        app_wait: float,
        app_service: float,
        db_wait: float,
        db_queries: int,
        cache_wait: float,
        cache_hits: int,
        cache_misses: int,
        outcome: str,
    ) -> None:
        """Add one completed request (the arguments of a request row; ``user`` is not kept)."""
        k = int(time // self.interval)
        buffer = self._buffers.get(k)
        if buffer is None:
            buffer = self._open(k)
        code = self._page_codes.get(page)
        if code is None:
            code = self._new_page(page)
        outcome_code = self._outcome_codes.get(outcome)
        if outcome_code is None:
            outcome_code = self._new_outcome(outcome)
        buffer.extend(
            (
                code,
                response,
                app_wait,
                app_service,
                db_wait,
                db_queries,
                cache_wait,
                cache_hits,
                cache_misses,
                outcome_code,
            )
        )
        visited = self._visited
        visited[session] = visited.get(session, 0) | (1 << code)
        self._count += 1

    def end_session(self, session: Any) -> None:
        """Count the pages a finished session requested (each page once per session)."""
        mask = self._visited.pop(session, 0)
        counts = self._page_sessions
        while mask:
            low = mask & -mask
            counts[low.bit_length() - 1] += 1
            mask ^= low

    def _open(self, k: int) -> array[float]:
        if k > self._latest:
            self._latest = k
            for old in [j for j in self._buffers if j <= k - _OPEN_INTERVALS]:
                self._fold(old, self._buffers.pop(old))
        buffer = self._buffers[k] = array("d")
        return buffer

    def _new_page(self, page: str) -> int:
        code = self._page_codes[page] = len(self._pages)
        self._pages.append(page)
        self._page_sessions.append(0)
        return code

    def _new_outcome(self, outcome: str) -> int:
        code = self._outcome_codes[outcome] = len(self._outcomes)
        self._outcomes.append(outcome)
        return code

    # --- folding a buffer into compact arrays ----------------------------------------------
    def _fold(self, k: int, buffer: array[float]) -> None:
        if not buffer:
            return
        data = np.frombuffer(buffer, dtype=float).reshape(-1, _WIDTH)
        pages = data[:, _PAGE].astype(np.int64)
        present = np.unique(pages)
        size = int(present[-1]) + 1
        stats = np.empty((present.size, 2 + len(_SUMMED) + 1), dtype=float)
        stats[:, 0] = present
        stats[:, 1] = np.bincount(pages, minlength=size)[present]
        for i, column in enumerate(_SUMMED):
            stats[:, 2 + i] = np.bincount(pages, weights=data[:, column], minlength=size)[present]
        largest = np.full(size, -np.inf)
        np.maximum.at(largest, pages, data[:, _RESPONSE])
        stats[:, -1] = largest[present]
        offsets = np.clip(buckets_of(data[:, _RESPONSE]) - ZERO_BUCKET, 0, _BUCKET_SPAN - 1)
        keys, counts = np.unique(pages * _BUCKET_SPAN + offsets, return_counts=True)
        outcome_keys, outcome_counts = np.unique(
            pages * _OUTCOME_SPAN + data[:, _OUTCOME].astype(np.int64), return_counts=True
        )
        self._chunks.append(
            _Chunk(k, stats, outcome_keys.astype(np.int64), outcome_counts.astype(np.int64))
        )
        w = k // self.per_window
        windows = self._windows
        if windows and windows[-1].k == w:  # the window's earlier intervals: merge into it
            earlier = windows.pop().histogram
            keys = np.concatenate([earlier[0], keys])
            keys, inverse = np.unique(keys, return_inverse=True)
            counts = np.bincount(
                inverse, weights=np.concatenate([earlier[1], counts]), minlength=keys.size
            ).astype(np.int64)
        windows.append(
            _Window(
                w,
                np.stack([keys, counts]).astype(np.int64 if counts.max() >= 2**31 else np.int32),
            )
        )

    def _fold_all(self) -> None:
        for k in sorted(self._buffers):
            self._fold(k, self._buffers.pop(k))

    # --- results ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Return the number of requests recorded."""
        return self._count

    @property
    def pages(self) -> tuple[str, ...]:
        """Return the pages seen so far, in order of first request."""
        return tuple(self._pages)

    def frame(self, *, release: bool = False) -> pd.DataFrame:
        """Return the per-request frame: empty, with its columns (there are no rows)."""
        del release  # nothing to let go of: the aggregates are released by frames()
        return pd.DataFrame({name: [] for name in REQUEST_COLUMNS})

    def nbytes(self) -> int:
        """Return the bytes held by the aggregates' arrays and buffers (not Python overhead)."""
        held = sum(b.buffer_info()[1] * b.itemsize for b in self._buffers.values())
        for _, stats, outcome_keys, outcome_counts in self._chunks:
            held += stats.nbytes + outcome_keys.nbytes + outcome_counts.nbytes
        return held + sum(window.histogram.nbytes for window in self._windows)

    def frames(self, *, release: bool = False) -> dict[str, pd.DataFrame]:
        """Return ``request_stats``, ``latency_histogram``, ``request_outcomes``, ``page_sessions``.

        Folds every open interval first (so call it after the run). Rows are sorted by
        interval (or window) start, then page name (then bucket or outcome). With ``release``
        the folded intervals and windows are let go of as the frames are built from them (the
        aggregates are empty afterwards): the end of a run holds the histogram once, not twice.
        """
        self._fold_all()
        # Over a long run the histogram has hundreds of thousands of rows, and summing and
        # sorting it whole would hold several full-length copies at once. Windows are summed
        # and sorted a batch at a time instead, each batch written into columns allocated
        # once in their final dtypes: the temporaries stay the size of a batch.
        batches = _batches(self._chunks, lambda chunk: chunk.outcome_keys.size)
        layout = _PageLayout(self._pages)
        request_stats = self._request_stats(batches, layout)
        request_outcomes = self._request_outcomes(batches, layout)
        windows = _batches(self._windows, lambda window: window.histogram.shape[1])
        if release:  # the batches hold the last references, dropped batch by batch
            self._chunks, self._windows = [], []
        start, page, offset, count = self._keyed_counts(
            windows, _histogram_part, _BUCKET_SPAN, layout, per_k=self.per_window, consume=release
        )
        offset += ZERO_BUCKET  # in place: the offsets become the bucket indices
        # copy=False: pandas would otherwise copy each column of a dict into the frame.
        latency_histogram = pd.DataFrame(
            {"start": start, "page": layout.column(page), "bucket": offset, "count": count},
            copy=False,
        )
        page_sessions = pd.DataFrame(
            {"page": list(self._pages), "sessions": list(self._page_sessions)},
            columns=list(PAGE_SESSION_COLUMNS),
        )
        page_sessions["sessions"] = page_sessions["sessions"].astype(np.int64)
        page_sessions = page_sessions.sort_values("page").reset_index(drop=True)
        return {
            "request_stats": request_stats,
            "latency_histogram": latency_histogram,
            "request_outcomes": request_outcomes,
            "page_sessions": page_sessions,
        }

    def _request_outcomes(self, batches: list[list[_Chunk]], layout: _PageLayout) -> pd.DataFrame:
        """Return ``request_outcomes``: one row per interval, page and outcome, sorted."""
        outcome_names = sorted(self._outcomes)
        start, page, outcome, count = self._keyed_counts(
            batches, _outcome_part, _OUTCOME_SPAN, layout, _ranks(self._outcomes)
        )
        return pd.DataFrame(
            {
                "start": start,
                "page": layout.column(page),
                "outcome": [outcome_names[r] for r in outcome.tolist()],
                "count": count,
            }
        )

    def _request_stats(self, batches: list[list[_Chunk]], layout: _PageLayout) -> pd.DataFrame:
        """Return ``request_stats``: one row per interval and page, sorted by start and name."""
        # When late requests reopened an interval, a page can have rows in several of its
        # chunks. pandas' groupby sums them either by compensated summation or, when every row
        # comes sorted, by reduceat: the sums stay exactly what they always were only if it
        # sees every chunk at once, in fold order. That is rare, and the stats are small.
        reopened = len(self._chunks) > len({chunk.k for chunk in self._chunks})
        groups = [self._chunks] if reopened else batches
        bound = sum(chunk.stats.shape[0] for chunks in groups for chunk in chunks)
        start = np.empty(bound)
        page = np.empty(bound, dtype=layout.codes_dtype)
        fields = {
            name: np.empty(bound, dtype=np.int64 if name in _COUNT_FIELDS else float)
            for name in _STATS_FIELDS
        }
        end = 0
        for chunks in groups:
            k, stats = _summed_stats(chunks)
            ranks = layout.rank[stats[:, 0].astype(np.int64)]
            order = np.lexsort((ranks, k))
            begin, end = end, end + order.size
            start[begin:end] = k[order] * self.interval
            page[begin:end] = ranks[order]
            for i, (name, column) in enumerate(fields.items(), start=1):
                values = stats[order, i]
                column[begin:end] = (
                    np.round(values).astype(np.int64) if name in _COUNT_FIELDS else values
                )
        # Shorter than the bound only when a reopened interval had a page in two chunks.
        columns = {"start": start[:end], "page": layout.column(page[:end])}
        columns.update((name, column[:end]) for name, column in fields.items())
        return pd.DataFrame({name: columns[name] for name in REQUEST_STATS_COLUMNS}, copy=False)

    def _keyed_counts(
        self,
        batches: list[list[_K]],
        part: Callable[[_K], tuple[np.ndarray, np.ndarray]],
        span: int,
        layout: _PageLayout,
        minor_rank: np.ndarray | None = None,
        *,
        per_k: int = 1,
        consume: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the (start, page code, minor, count) columns of one kind of keyed counts.

        ``part`` picks a chunk's or window's keys (``code * span + minor``) and counts; each
        batch is summed and sorted by :func:`_tally`. An item ``k`` starts at interval
        ``k * per_k``. The minor column holds int16 offsets when there is no ``minor_rank``,
        else int64 ranks. With ``consume`` each batch is emptied once it is written.
        """
        bound = sum(part(chunk)[0].size for batch in batches for chunk in batch)
        start = np.empty(bound)
        page = np.empty(bound, dtype=layout.codes_dtype)
        minor = np.empty(bound, dtype=np.int16 if minor_rank is None else np.int64)
        count = np.empty(bound, dtype=np.int64)
        end = 0
        for batch in batches:
            ks = np.concatenate([np.full(part(c)[0].size, c.k, dtype=np.int64) for c in batch])
            keys = np.concatenate([part(chunk)[0] for chunk in batch])
            counts = np.concatenate([part(chunk)[1] for chunk in batch])
            k, majors, minors, summed = _tally(ks, keys, counts, span, layout.rank, minor_rank)
            begin, end = end, end + summed.size
            start[begin:end] = (k * per_k) * self.interval  # the stats' k * interval when 1
            page[begin:end] = majors
            minor[begin:end] = minors
            count[begin:end] = summed
            if consume:
                batch.clear()
        # Shorter than the bound only when a reopened interval had a key in two chunks: the
        # views keep those few unused rows rather than copying every column.
        return start[:end], page[:end], minor[:end], count[:end]


class _PageLayout:
    """How page codes (order of first request) map to the page column (names sorted)."""

    __slots__ = ("categories", "codes_dtype", "rank")

    def __init__(self, pages: list[str]) -> None:
        self.categories = pd.CategoricalDtype(sorted(pages))
        self.rank = _ranks(pages)
        # pandas keeps the codes in the smallest int type that fits: written in that type,
        # from_codes takes them as they are instead of converting a full-length copy.
        empty = pd.Categorical.from_codes(np.zeros(0, dtype=np.int64), dtype=self.categories)
        self.codes_dtype = empty.codes.dtype

    def column(self, codes: np.ndarray) -> pd.Categorical:
        """Return the page column of these codes (ranks of the names, in ``codes_dtype``)."""
        return pd.Categorical.from_codes(codes, dtype=self.categories)


# A window's or chunk's keys and counts of one kind, for RequestAggregates._keyed_counts.
def _histogram_part(window: _Window) -> tuple[np.ndarray, np.ndarray]:
    return window.histogram[0], window.histogram[1]


def _outcome_part(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray]:
    return chunk.outcome_keys, chunk.outcome_counts


def _summed_stats(chunks: list[_Chunk]) -> tuple[np.ndarray, np.ndarray]:
    """Return the chunks' intervals and stats rows, one row per interval and page code.

    A chunk has one row per page already (a sum of one row is the row itself); chunks of the
    same interval are summed (the max of ``response_max``) by pandas' groupby.
    """
    ks = np.concatenate([np.full(c.stats.shape[0], c.k, dtype=np.int64) for c in chunks])
    stats = np.concatenate([chunk.stats for chunk in chunks])
    if len({chunk.k for chunk in chunks}) == len(chunks):
        return ks, stats
    raw = pd.DataFrame(stats[:, 1:], columns=list(_STATS_FIELDS))
    raw["k"] = ks
    raw["code"] = stats[:, 0].astype(np.int64)
    how = {name: "max" if name == "response_max" else "sum" for name in _STATS_FIELDS}
    summed = raw.groupby(["k", "code"], sort=True).agg(how)
    codes = summed.index.get_level_values("code").to_numpy(dtype=float)
    return summed.index.get_level_values("k").to_numpy(), np.column_stack([codes, summed])


def _batches(items: list[_K], rows: Callable[[_K], int]) -> list[list[_K]]:
    """Return chunks or windows in batches of whole intervals, ascending, in fold order within.

    A batch ends once it holds ``_BATCH_ROWS`` rows (``rows`` of each item). Every item of an
    interval or window (there are several when late requests reopened it after it was folded)
    is in the same batch, so a batch sums and sorts on its own and the batches' rows, one
    after the other, are in order.
    """
    by_k: dict[int, list[_K]] = {}
    for item in items:
        by_k.setdefault(item.k, []).append(item)
    batches: list[list[_K]] = []
    count = _BATCH_ROWS
    for _, same in sorted(by_k.items()):
        if count >= _BATCH_ROWS:
            batches.append([])
            count = 0
        batches[-1].extend(same)
        count += sum(rows(item) for item in same)
    return batches


def _ranks(names: list[str]) -> np.ndarray:
    """Return, for each code (index into ``names``), the rank of its name in sorted order."""
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
    return ranks


def _tally(
    ks: np.ndarray,
    keys: np.ndarray,
    counts: np.ndarray,
    span: int,
    major_rank: np.ndarray,
    minor_rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum ``counts`` over equal (interval, key) pairs; return them in sorted order.

    A key is ``major * span + minor`` (a page code and a bucket offset or outcome code). The
    result is sorted by interval, then the major's rank (its name's order), then the minor
    (or its rank): four arrays (interval, major rank, minor or its rank, count).
    """
    keys = keys.astype(np.int64)
    major = major_rank[keys // span] if major_rank.size else keys // span
    minor = keys % span if minor_rank is None else minor_rank[keys % span]
    # Sort on the three columns (no combined key: it could overflow int64 on a long run
    # with a tiny interval and many pages).
    order = np.lexsort((minor, major, ks))
    k, major, minor = ks.astype(np.int64)[order], major[order], minor[order]
    summed = counts.astype(np.int64)[order]
    if k.size:
        starts = (k[1:] != k[:-1]) | (major[1:] != major[:-1]) | (minor[1:] != minor[:-1])
        firsts = np.flatnonzero(np.concatenate(([True], starts)))
        if firsts.size != k.size:  # a late request reopened an interval already folded
            summed = np.add.reduceat(summed, firsts)
            k, major, minor = k[firsts], major[firsts], minor[firsts]
    return k, major, minor, summed


def cache_from_stats(request_stats: pd.DataFrame) -> pd.DataFrame:
    """Return the cache frame (hits, misses, hit rate per interval) from ``request_stats``.

    The same frame :func:`sim.engine.metrics.cache_series` builds from request rows: one row
    per interval that had requests.
    """
    if request_stats.empty:
        return pd.DataFrame(columns=list(CACHE_COLUMNS))
    grouped = request_stats.groupby("start", sort=True)[["cache_hits", "cache_misses"]].sum()
    lookups = grouped["cache_hits"] + grouped["cache_misses"]
    return pd.DataFrame(
        {
            "start": grouped.index.to_numpy(dtype=float),
            "hits": grouped["cache_hits"].to_numpy(dtype=np.int64),
            "misses": grouped["cache_misses"].to_numpy(dtype=np.int64),
            "hit_rate": (grouped["cache_hits"] / lookups.where(lookups > 0)).to_numpy(),
        }
    )


class Recorder:
    """Collects the records of one run: requests, sessions, payments, order transitions, faults.

    ``requests`` is ``"rows"`` (a :class:`Table` of one row per request) or ``"aggregate"``
    (:class:`RequestAggregates` over intervals of ``interval`` seconds, latency histograms
    over windows of ``per_window`` intervals); either way actors
    call ``recorder.requests.append(...)`` with the fields of ``REQUEST_COLUMNS``.
    ``shared_id`` is the store's :meth:`~sim.services.store.UnitOfWork.shared_id`, which the
    order ids of the transitions pass through.
    """

    def __init__(
        self,
        requests: str = "rows",
        interval: float = 60.0,
        per_window: int = 1,
        shared_id: Callable[[str], str] | None = None,
    ) -> None:
        # The store's UnitOfWork.shared_id, for the ids the recorder keeps (None: as given).
        self._shared_id = shared_id or str
        if requests not in REQUEST_MODES:
            raise ValueError(f"requests must be one of {REQUEST_MODES}, got {requests!r}")
        self.mode = requests
        """How requests are recorded: ``"rows"`` or ``"aggregate"``."""
        self.aggregates: RequestAggregates | None = None
        """The streaming aggregates (aggregate mode), else None."""
        self.requests: Table | RequestAggregates
        if requests == "aggregate":
            self.aggregates = self.requests = RequestAggregates(interval, per_window)
            self.sessions: Table = SessionTable(
                SESSION_COLUMNS, self.aggregates.end_session, SESSION_DTYPES
            )
        else:
            self.requests = Table(REQUEST_COLUMNS, REQUEST_DTYPES)
            self.sessions = Table(SESSION_COLUMNS, SESSION_DTYPES)
        self.payments = Table(PAYMENT_COLUMNS, PAYMENT_DTYPES)
        self.order_events = Table(ORDER_EVENT_COLUMNS, ORDER_EVENT_DTYPES)
        self.faults = Table(FAULT_COLUMNS)
        self.counters: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named business counter (stock-outs, fraud blocks, retries, ...)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def on_order_status(self, event: OrderStatusChanged) -> None:
        """Record an order transition (subscribed to the bus).

        The order id is the store's shared one: an order read back from a file store brings
        its own copy, and each transition would otherwise keep one.
        """
        self.order_events.append(event.at, self._shared_id(event.order_id), event.old, event.new)

    def frames(self, *, release: bool = False) -> dict[str, pd.DataFrame]:
        """Return every table as a DataFrame (aggregate mode adds its frames and ``cache``).

        With ``release`` the recorder hands its rows and aggregates over to the frames and is
        empty afterwards (the end of a run: each table's memory is freed as its frame is
        built, instead of both being held). Its ``counters`` stay.
        """
        frames = {
            "requests": self.requests.frame(release=release),
            "sessions": self.sessions.frame(release=release),
            "payments": self.payments.frame(release=release),
            "order_events": self.order_events.frame(release=release),
            "faults": self.faults.frame(release=release),
        }
        if self.aggregates is not None:
            frames.update(self.aggregates.frames(release=release))
            frames["cache"] = cache_from_stats(frames["request_stats"])
        return frames
