from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np

from sim.reporting import compare_report, report
from sim.reporting.shared import (
    CSS,
    KPI_ROWS,
    escape,
    format_duration,
    format_half_width,
    format_value,
    html_table,
    jsonable,
)


def test_jsonable_is_strict_json_with_nan_as_null():
    data = jsonable({"a": float("nan"), "b": [np.int64(3), np.float64(0.5)], 2: True})
    assert data == {"a": None, "b": [3, 0.5], "2": True}
    assert json.dumps(data, allow_nan=False)
    assert jsonable((np.bool_(False), float("inf"), "x")) == [False, None, "x"]


def test_value_formats():
    assert format_value(float("nan"), "ms") == "n/a"
    assert format_value(0.0123, "ms") == "12.3 ms"
    assert format_value(0.5, "pct") == "50.0 %"
    assert format_value(2.5, "rate") == "2.5/s" and format_value(12.34, "rate") == "12.3/s"
    assert format_value(12345, "money") == "123.45"
    assert format_value(3.0, "count") == "3" and format_value(3.5, "count") == "3.5"
    assert format_value(0.000123, "number") == "0.000123"


def test_half_width_formats():
    assert format_half_width(0.01, "pct") == "1.0 pp"
    assert format_half_width(150, "money") == "1.50" and format_half_width(1.25, "count") == "1.2"
    assert format_half_width(0.5, "number") == "0.5" and format_half_width(0.002, "ms") == "2.0 ms"
    assert format_half_width(12.34, "rate") == "12.3/s"


def test_duration_formats():
    assert format_duration(float("nan")) == "n/a"
    assert format_duration(0.0042) == "4.2 ms"
    assert format_duration(3e-9) == "< 0.001 ms" and format_duration(0.0) == "0 ms"
    assert format_duration(42.0) == "42 s"
    assert format_duration(7200.0) == "120 min"


class _Cells(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.cells: list[tuple[str, str | None, str]] = []
        self._open: tuple[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in ("th", "td"):
            self._open = (tag, dict(attrs).get("class"))
            self.cells.append((tag, self._open[1], ""))

    def handle_data(self, data):
        if self._open is not None:
            tag, css, text = self.cells[-1]
            self.cells[-1] = (tag, css, text + data)

    def handle_endtag(self, tag):
        self._open = None


def test_html_table_escapes_every_cell_and_sets_classes():
    text = html_table(["a<b", "n"], [[("x & y", ""), ("3", "num")]], "kpis")
    assert text.startswith('<table class="kpis"><thead><tr><th>a&lt;b</th>')
    assert _Cells(text).cells == [
        ("th", None, "a<b"),
        ("th", None, "n"),
        ("td", None, "x & y"),
        ("td", "num", "3"),
    ]
    assert escape('"<i>"') == "&quot;&lt;i&gt;&quot;"


def test_both_pages_share_the_style_and_the_kpi_labels():
    assert "td.num" in CSS
    assert KPI_ROWS[0] == ("throughput", "Throughput (page requests)", "rate")
    assert len({key for key, _, _ in KPI_ROWS}) == len(KPI_ROWS)
    assert compare_report.kpi_label("throughput") == "Throughput (page requests)"
    assert report.ReportFiles is compare_report.ReportFiles
