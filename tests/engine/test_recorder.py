"""The recorder: tables of rows turned into DataFrames once, counters, order transitions."""

from __future__ import annotations

import pytest

from sim.domain.events import OrderStatusChanged
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
