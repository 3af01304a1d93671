"""The recorder: tables of rows turned into DataFrames once, counters, order transitions."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest

from sim.domain.events import OrderStatusChanged
from sim.engine import recorder as recorder_module
from sim.engine.recorder import (
    FAULT_COLUMNS,
    ORDER_EVENT_COLUMNS,
    PAYMENT_COLUMNS,
    REQUEST_COLUMNS,
    SESSION_COLUMNS,
    Recorder,
    Table,
)
from tests.engine._tiny import paid_order, tiny, world_of


def test_a_table_appends_rows_and_builds_one_frame():
    table = Table(["time", "name", "value"])
    assert table.names == ("time", "name", "value")
    assert len(table) == 0
    table.append(0.5, "a", 1)
    table.append(1.5, "b", 2)
    assert len(table) == 2
    frame = table.frame()
    assert list(frame.columns) == ["time", "name", "value"]
    assert frame.to_dict("records") == [
        {"time": 0.5, "name": "a", "value": 1},
        {"time": 1.5, "name": "b", "value": 2},
    ]
    assert str(frame["value"].dtype) == "int64"


@pytest.mark.parametrize("release", [False, True])
def test_declared_dtypes_convert_as_pandas_infers(release):
    rows = [(0, 1, True, "a"), (1.5, 2, False, None), (2.25, -(2**62), True, "c")]
    declared = Table(["t", "n", "b", "s"], {"t": np.float64, "n": np.int64, "b": np.bool_})
    inferred = Table(["t", "n", "b", "s"])
    for row in rows:
        declared.append(*row)
        inferred.append(*row)
    frame = declared.frame(release=release)
    pd.testing.assert_frame_equal(frame, inferred.frame(), check_exact=True)
    assert [str(t) for t in frame.dtypes[:3]] == ["float64", "int64", "bool"]
    assert len(declared) == (0 if release else 3)
    if release:  # emptied, and ready for more rows
        declared.append(*rows[0])
        pd.testing.assert_frame_equal(declared.frame(), inferred.frame().iloc[:1])


@pytest.mark.parametrize("bad", [(None, 1, "x"), (1.0, 2.5, "x"), (1.0, 2**63, "x"), ("1", 1, "x")])
def test_a_row_a_packed_column_refuses_is_refused_whole(bad):
    table = Table(["t", "n", "s"], {"t": np.float64, "n": np.int64})
    table.append(0.5, 1, "a")
    with pytest.raises(ValueError, match="refused"):
        table.append(*bad)
    assert len(table) == 1
    pd.testing.assert_frame_equal(
        table.frame(), pd.DataFrame({"t": [0.5], "n": [1], "s": ["a"]}), check_exact=True
    )


def test_rows_append_the_same_without_operator_call(monkeypatch):
    # Python 3.10 has no operator.call: the recorder falls back to a plain function.
    monkeypatch.setattr(recorder_module, "_call", lambda function, value: function(value))
    table = Table(["t", "n", "s"], {"t": np.float64, "n": np.int64})
    table.append(0.5, 1, "a")
    with pytest.raises(ValueError, match="refused"):
        table.append(1.0, None, "b")
    pd.testing.assert_frame_equal(
        table.frame(), pd.DataFrame({"t": [0.5], "n": [1], "s": ["a"]}), check_exact=True
    )


def test_a_packed_dtype_must_be_float_int_or_bool():
    with pytest.raises(ValueError, match="float64, int64 or bool"):
        Table(["t"], {"t": np.float32})


def test_dtypes_must_name_columns_of_the_table():
    with pytest.raises(ValueError, match="not in"):
        Table(["time"], {"tme": np.float64})


def test_an_empty_table_has_its_columns_and_no_rows():
    frame = Table(FAULT_COLUMNS).frame()
    assert list(frame.columns) == list(FAULT_COLUMNS)
    assert frame.empty


@pytest.mark.parametrize("values", [(1.0, "a"), (1.0, "a", 2, 3)])
def test_a_row_of_the_wrong_length_is_refused(values):
    table = Table(["time", "name", "value"])
    with pytest.raises(ValueError):
        table.append(*values)


def test_a_table_is_slotted():
    table = Table(["x"])
    with pytest.raises(AttributeError):
        table.extra = 1  # type: ignore[attr-defined]


def test_the_recorder_tables_have_the_declared_columns():
    frames = Recorder().frames()
    assert {name: tuple(frame.columns) for name, frame in frames.items()} == {
        "requests": REQUEST_COLUMNS,
        "sessions": SESSION_COLUMNS,
        "payments": PAYMENT_COLUMNS,
        "order_events": ORDER_EVENT_COLUMNS,
        "faults": FAULT_COLUMNS,
    }
    assert all(frame.empty for frame in frames.values())


def test_counters_add_up():
    recorder = Recorder()
    recorder.count("retries")
    recorder.count("retries")
    recorder.count("refunds", 5)
    assert recorder.counters == {"retries": 2, "refunds": 5}


def test_an_order_transition_becomes_a_row():
    recorder = Recorder()
    event = OrderStatusChanged(
        at=12.5, order_id="order-1", user_id="user-1", old="pending", new="processing"
    )
    recorder.on_order_status(event)
    assert recorder.frames()["order_events"].values.tolist() == [
        [12.5, "order-1", "pending", "processing"]
    ]


def test_the_world_wires_order_transitions_to_its_recorder():
    world = world_of(tiny())
    order_id, _ = paid_order(world)
    rows = world.recorder.order_events.frame().values.tolist()
    assert rows == [[0.0, order_id, "pending", "processing"]]


def test_a_request_row_keeps_every_field():
    recorder = Recorder()
    row = (1.0, 7, "user-3", "home", 0.2, 0.01, 0.1, 0.05, 2, 0.002, 4, 1, "ok")
    recorder.requests.append(*row)
    assert [tuple(r) for r in recorder.frames()["requests"].itertuples(index=False)] == [row]


def _recorded(mode: str) -> Recorder:
    """A recorder with rows in every table: requests over five intervals, two sessions."""
    recorder = Recorder(mode, interval=10.0)
    for i in range(40):
        page, outcome = ("home", "ok") if i % 3 else ("search", "error")
        recorder.requests.append(
            i * 1.25,
            i % 2,
            "user-1",
            page,
            0.01 * (i + 1),
            0.0,
            0.005,
            0.001,
            2,
            0.0,
            1,
            1,
            outcome,
        )
    for sid in (0, 1):
        recorder.sessions.append(sid, "user-1", 0.0, 50.0, 20, False, 0, "exit")
    recorder.payments.append(3.0, "order-000001", "gw", 1, "approved", 0.4)
    recorder.order_events.append(3.0, "order-000001", "pending", "processing")
    recorder.faults.append("outage", "gw", 1.0, 2.0)
    recorder.count("returns", 2)
    return recorder


@pytest.mark.parametrize("mode", ["rows", "aggregate"])
def test_released_frames_equal_kept_ones_and_leave_the_recorder_empty(mode):
    kept, released = _recorded(mode), _recorded(mode)
    # batches of one interval: the histogram is consumed batch by batch
    with mock.patch.object(recorder_module, "_BATCH_ROWS", 1):
        expected = kept.frames()
        frames = released.frames(release=True)
    assert list(frames) == list(expected)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(frames[name], frame)
    assert len(frames["sessions"]) == 2 and len(frames["faults"]) == 1
    assert len(frames["requests" if mode == "rows" else "latency_histogram"]) >= 5
    tables = (released.sessions, released.payments, released.order_events, released.faults)
    assert [len(table) for table in tables] == [0, 0, 0, 0]
    if mode == "rows":
        assert len(released.requests) == 0
    else:
        assert released.aggregates is not None and released.aggregates.nbytes() == 0
        again = released.frames()
        assert again["latency_histogram"].empty and again["request_stats"].empty
    assert released.counters == {"returns": 2}
    # without release the recorder keeps everything: a second call gives the same frames
    for name, frame in kept.frames().items():
        pd.testing.assert_frame_equal(frame, expected[name])


@pytest.mark.parametrize("mode", ["rows", "aggregate"])
def test_an_empty_recorder_releases_the_same_empty_frames(mode):
    expected = Recorder(mode).frames()
    frames = Recorder(mode).frames(release=True)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(frames[name], frame)
