from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sim.reporting import plots
from sim.reporting.plots import (
    FUNNEL_STAGES,
    funnel_counts,
    order_state_series,
    plot_cache_hit_rate,
    plot_funnel,
    plot_latency_by_page,
    plot_latency_percentiles,
    plot_order_states,
    plot_payment_outcomes,
    plot_stations,
    plot_throughput,
    request_series,
    shade_faults,
)

FAULTS = pd.DataFrame(
    {
        "kind": ["outage", "cache_flush", "latency_spike"],
        "target": ["payments.card-a", "cache", "database"],
        "start": [60.0, 150.0, 200.0],
        "end": [120.0, 150.0, 240.0],
    }
)
FAULT_LABELS = {"outage: payments.card-a", "cache flush: cache", "latency spike: database"}


def requests_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [0.0, 10.0, 59.9, 60.0, 130.0],
            "session": [1, 1, 2, 2, 3],
            "page": ["home", "product_detail", "home", "shopping_cart", "buy_confirm"],
            "response": [0.01, 0.02, 0.03, 0.04, 0.5],
        }
    )


def fault_spans(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == "fault"]


def fault_lines(ax) -> list[Line2D]:
    return [line for line in ax.lines if line.get_gid() == "fault"]


def data_lines(ax) -> list[Line2D]:
    return [line for line in ax.lines if line.get_gid() is None]


def legend_labels(ax) -> set[str]:
    legend = ax.get_legend()
    assert legend is not None
    return {t.get_text() for t in legend.get_texts()}


# --- series -----------------------------------------------------------------------------------
def test_request_series_counts_rates_and_percentiles_per_interval():
    series = request_series(requests_frame(), 60.0, horizon=150.0)
    assert series.columns.tolist() == [
        "start", "length", "requests", "throughput", "p50", "p95", "p99",
    ]  # fmt: skip
    assert series["start"].tolist() == [0.0, 60.0, 120.0]
    assert series["length"].tolist() == [60.0, 60.0, 30.0]
    assert series["requests"].tolist() == [3, 1, 1]
    assert series["throughput"].tolist() == pytest.approx([3 / 60, 1 / 60, 1 / 30])
    assert series["p50"].tolist() == pytest.approx([0.02, 0.04, 0.5])
    assert series.loc[0, "p95"] == pytest.approx(np.percentile([0.01, 0.02, 0.03], 95))


def test_request_series_keeps_quiet_intervals_and_works_without_horizon():
    quiet = request_series(requests_frame(), 60.0, horizon=300.0)
    assert quiet["requests"].tolist() == [3, 1, 1, 0, 0]
    assert math.isnan(quiet.loc[4, "p99"])
    assert quiet.loc[4, "throughput"] == 0.0
    open_ended = request_series(requests_frame(), 60.0)
    assert open_ended["requests"].tolist() == [3, 1, 1]
    assert open_ended["length"].tolist() == [60.0, 60.0, 60.0]
    empty = request_series(requests_frame().iloc[:0], 60.0)
    assert empty.empty and "p95" in empty.columns
    with pytest.raises(ValueError, match="interval must be > 0"):
        request_series(requests_frame(), 0.0)


def test_funnel_counts_sessions_pages_and_orders():
    sessions = pd.DataFrame({"session": [1, 4]})  # session 4 made no request; 2, 3 still open
    orders = pd.DataFrame({"order_id": ["o1", "o2", "o3"], "paid": [True, True, False]})
    events = pd.DataFrame(
        {
            "time": [1.0, 2.0, 3.0, 4.0, 5.0],
            "order_id": ["o1", "o1", "o2", "o1", "o1"],
            "old": ["pending", "processing", "pending", "shipped", "delivered"],
            "new": ["processing", "shipped", "processing", "delivered", "returned"],
        }
    )
    funnel = funnel_counts(sessions, requests_frame(), orders, events)
    assert funnel["stage"].tolist() == list(FUNNEL_STAGES)
    assert funnel["count"].tolist() == [4, 1, 1, 1, 2, 1, 1]


def test_order_state_series_replays_the_events():
    orders = pd.DataFrame({"order_id": ["o1", "o2"], "placed_at": [10.0, 20.0]})
    events = pd.DataFrame(
        {
            "time": [15.0, 25.0, 30.0, 5.0],
            "order_id": ["o1", "o2", "o1", "o9"],
            "old": ["pending", "pending", "processing", None],
            "new": ["processing", "cancelled", "shipped", "processing"],
        }
    )
    states = order_state_series(orders, events, [0.0, 12.0, 16.0, 22.0, 26.0, 31.0])
    assert states.columns.tolist() == ["time", "pending", "processing", "shipped", "cancelled"]
    assert states["pending"].tolist() == [0, 1, 0, 1, 0, 0]
    assert states["processing"].tolist() == [0, 1, 2, 2, 2, 1]  # o9 created by its event at 5
    assert states["shipped"].tolist() == [0, 0, 0, 0, 0, 1]
    assert states["cancelled"].tolist() == [0, 0, 0, 0, 1, 1]


def test_order_state_series_without_orders_is_just_the_times():
    empty_orders = pd.DataFrame({"order_id": [], "placed_at": []})
    empty_events = pd.DataFrame({"time": [], "order_id": [], "old": [], "new": []})
    states = order_state_series(empty_orders, empty_events, [0.0, 60.0])
    assert states.columns.tolist() == ["time"]
    fig = plot_order_states(states)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no orders"]


# --- fault shading ----------------------------------------------------------------------------
def test_shade_faults_draws_spans_and_instants_with_one_label_each():
    fig = Figure()
    ax = fig.add_subplot()
    repeated = pd.concat([FAULTS, FAULTS.iloc[:1].assign(start=300.0, end=330.0)])
    artists = shade_faults(ax, repeated)
    assert len(artists) == 4
    spans = fault_spans(ax)
    assert [(s.get_x(), s.get_x() + s.get_width()) for s in spans] == [
        (1.0, 2.0), (200 / 60, 4.0), (5.0, 5.5),
    ]  # fmt: skip
    assert [line.get_xdata()[0] for line in fault_lines(ax)] == [2.5]
    labels = [a.get_label() for a in artists]
    assert labels[:3] == [
        "outage: payments.card-a",
        "cache flush: cache",
        "latency spike: database",
    ]
    assert not labels[3] or labels[3].startswith("_")  # the repeated outage: no second label
    assert len(ax.get_legend_handles_labels()[1]) == 3
    assert shade_faults(ax, None) == []
    assert shade_faults(ax, FAULTS.iloc[:0]) == []


TIME_PLOTS = {
    "throughput": lambda f, kw: plot_throughput(f["series"], **kw),
    "percentiles": lambda f, kw: plot_latency_percentiles(f["series"], **kw),
    "stations": lambda f, kw: plot_stations(f["stations"], **kw),
    "cache": lambda f, kw: plot_cache_hit_rate(f["cache"], interval=60.0, **kw),
    "orders": lambda f, kw: plot_order_states(f["states"], **kw),
}


@pytest.fixture(scope="module")
def frames(one_run) -> dict[str, pd.DataFrame]:
    raw = one_run[0].frames
    return {
        "series": request_series(raw["requests"], 60.0, 120.0),
        "stations": raw["stations"],
        "cache": raw["cache"],
        "states": order_state_series(raw["orders"], raw["order_events"], np.arange(0, 121, 2.0)),
    }


@pytest.mark.parametrize("name", sorted(TIME_PLOTS))
def test_every_time_plot_shades_every_fault_on_every_axis(name, frames):
    fig = TIME_PLOTS[name](frames, {"faults": FAULTS, "warmup": 30.0, "horizon": 300.0})
    assert isinstance(fig, Figure)
    for ax in fig.axes:
        assert len(fault_spans(ax)) == 2
        assert len(fault_lines(ax)) == 1
        assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "warmup"] == [0.5]
        assert FAULT_LABELS | {"end of warm-up"} <= legend_labels(ax)
        assert ax.get_xlabel() in ("simulated time (minutes)", "")
        assert ax.get_xlim() == (0.0, 5.0)
    assert fig.axes[-1].get_xlabel() == "simulated time (minutes)"
    assert fig.axes[0].get_title()


@pytest.mark.parametrize("name", sorted(TIME_PLOTS))
def test_time_plots_without_faults_or_warmup_have_no_markers(name, frames):
    fig = TIME_PLOTS[name](frames, {})
    for ax in fig.axes:
        assert fault_spans(ax) == [] and fault_lines(ax) == []
        assert all(line.get_gid() is None for line in ax.lines)


def test_throughput_plot_has_one_line_of_requests_per_second(frames):
    fig = plot_throughput(frames["series"], faults=FAULTS)
    (ax,) = fig.axes
    (line,) = data_lines(ax)
    assert line.get_xdata().tolist() == [0.5, 1.5]  # interval midpoints, minutes
    assert line.get_ydata().tolist() == pytest.approx(frames["series"]["throughput"].tolist())
    assert ax.get_ylabel() == "requests per second"


def test_percentile_plot_has_three_lines_in_ms_and_the_objective(frames):
    fig = plot_latency_percentiles(frames["series"], slo_p95=0.1)
    (ax,) = fig.axes
    lines = data_lines(ax)
    assert [line.get_label() for line in lines] == ["p50", "p95", "p99"]
    assert lines[1].get_ydata().tolist() == pytest.approx((frames["series"]["p95"] * 1000).tolist())
    (slo,) = [line for line in ax.lines if line.get_gid() == "slo"]
    assert list(slo.get_ydata()) == [100.0, 100.0]
    assert ax.get_ylabel() == "response time (ms)"


def test_station_plot_has_utilisation_and_queue_axes_with_a_line_per_station(frames):
    fig = plot_stations(frames["stations"])
    top, bottom = fig.axes
    names = frames["stations"]["station"].unique().tolist()
    assert [line.get_label() for line in data_lines(top)] == names
    assert [line.get_label() for line in data_lines(bottom)] == names
    assert top.get_ylabel() == "utilisation (%)"
    assert bottom.get_ylabel() == "mean queue (requests)"
    app = frames["stations"][frames["stations"]["station"] == "app"]
    assert data_lines(top)[0].get_ydata().tolist() == pytest.approx(
        (app["utilisation"] * 100).tolist()
    )


def test_cache_plot_shows_hit_rate_in_percent(frames):
    fig = plot_cache_hit_rate(frames["cache"])
    (line,) = data_lines(fig.axes[0])
    assert line.get_ydata().tolist() == pytest.approx((frames["cache"]["hit_rate"] * 100).tolist())
    assert line.get_xdata().tolist() == [0.5, 1.5]  # spacing of the starts when no interval
    # a horizon that cuts the last interval short: its point is mid-way to the horizon
    cut = plot_cache_hit_rate(frames["cache"], interval=60.0, horizon=90.0)
    assert data_lines(cut.axes[0])[0].get_xdata().tolist() == [0.5, 1.25]


def test_order_state_plot_has_a_step_line_per_state(frames):
    fig = plot_order_states(frames["states"])
    states = frames["states"].columns.drop("time").tolist()
    assert "processing" in states
    assert [line.get_label() for line in data_lines(fig.axes[0])] == states


def test_latency_by_page_box_plot_on_a_log_axis(one_run):
    requests = one_run[0].frames["requests"]
    fig = plot_latency_by_page(requests)
    (ax,) = fig.axes
    pages = requests["page"].unique()
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(pages)
    medians = requests.groupby("page")["response"].median().sort_values()
    assert [label.split(" ")[0] for label in labels] == medians.index.tolist()  # slowest on top
    assert len(ax.lines) == 6 * len(pages)  # per page: box, median, 2 whiskers, 2 caps
    assert ax.get_title() == "Response time distribution per page"
    sampled = plot_latency_by_page(requests, 0.7).axes[0]
    assert sampled.get_title().endswith(
        "(a 70.0% uniform sample of the requests: n counts the sample)"
    )


def test_latency_by_page_with_no_requests_says_so():
    fig = plot_latency_by_page(requests_frame().iloc[:0])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no requests"]


def test_funnel_plot_has_a_bar_per_stage_with_counts_and_shares():
    funnel = pd.DataFrame({"stage": list(FUNNEL_STAGES), "count": [200, 100, 50, 20, 10, 0, 0]})
    fig = plot_funnel(funnel)
    (ax,) = fig.axes
    assert [bar.get_width() for bar in ax.patches] == [200, 100, 50, 20, 10, 0, 0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(FUNNEL_STAGES)
    texts = [t.get_text() for t in ax.texts]
    assert texts[:2] == ["200 (100.0 %)", "100 (50.0 %)"]
    empty = plot_funnel(funnel.assign(count=0))
    assert [t.get_text() for t in empty.axes[0].texts] == ["0"] * 7


def test_payment_plot_stacks_outcomes_per_gateway():
    payments = pd.DataFrame(
        {
            "gateway": ["a", "a", "a", "b", "b"],
            "outcome": ["approved", "declined", "approved", "timeout", "mystery"],
        }
    )
    fig = plot_payment_outcomes(payments)
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == ["approved", "declined", "timeout", "mystery"]
    assert [[r.get_height() for r in c] for c in bars] == [[2, 0], [1, 0], [0, 1], [0, 1]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.texts] == ["3", "2"]


def test_payment_plot_without_payments_says_so():
    fig = plot_payment_outcomes(pd.DataFrame({"gateway": [], "outcome": []}))
    assert [t.get_text() for t in fig.axes[0].texts] == ["no payment attempts"]


def test_box_plot_orientation_argument_matches_the_matplotlib_version(monkeypatch):
    monkeypatch.setattr(plots.matplotlib, "__version__", "3.9.2")
    assert plots._boxplot_orientation() == {"vert": False}
    monkeypatch.setattr(plots.matplotlib, "__version__", "3.10.0")
    assert plots._boxplot_orientation() == {"orientation": "horizontal"}


def test_reporting_never_imports_pyplot():
    code = "import sys, sim.reporting.report; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
