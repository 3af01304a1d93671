"""The comparison and plan reports, on made-up results (no simulation)."""

from __future__ import annotations

import json
import math
from html import unescape

import pandas as pd
import pytest

from sim.analysis.compare import Comparison, RunSummary, Variant, Verdict
from sim.analysis.plan import Evaluation, Plan, Slo, TwinGuess, parse_slo
from sim.analysis.stats import MeanCI, mean_ci
from sim.reporting.compare_report import (
    format_comparison,
    format_plan,
    kpi_kind,
    kpi_label,
    plot_knee,
    plot_kpis_vs_parameter,
    plot_plan_curve,
    verdict_sentence,
    write_comparison_report,
    write_plan_report,
)
from sim.scenario import parse_scenario
from tests.analysis._queues import mmc_data

NAN = float("nan")
EMPTY = MeanCI(NAN, NAN, NAN, NAN, 0)


def _summary(label: str, replication: int, kpis: dict, violations: tuple = ()) -> RunSummary:
    stations = ({"name": "app", "arrivals": 10, "elapsed": 1.0, "total_service": 0.2},)
    return RunSummary(label, 3, replication, kpis, 5.0, True, replication == 0, stations,
                      violations, 0.5)  # fmt: skip


def _kpis(latency: float, util: float, success: float = NAN) -> dict:
    return {
        "latency": {"mean": latency, "p95": 2 * latency},
        "throughput": 10.0,
        "utilisation": {"app": {"utilisation": util, "mean_queue": 0.1}},
        "payment_success": success,
    }


def _comparison(servers=("2", "4"), parameter="stations.app.servers", violations=()) -> Comparison:
    variants = []
    summaries = {}
    for i, value in enumerate(servers):
        scenario = parse_scenario(mmc_data(10, int(value) if value.isdigit() else 2))
        label = f"servers={value}"
        variants.append(Variant(label, scenario, ((parameter, value),) if parameter else ()))
        summaries[label] = [
            _summary(
                label,
                r,
                _kpis(0.05 / (i + 1) + 0.001 * r, 0.8 / (i + 1) + 0.01 * r),
                violations if (i, r) == (1, 1) else (),
            )
            for r in range(3)
        ]
    return Comparison(
        tuple(variants),
        summaries,
        seed=3,
        replications=3,
        parameters=(parameter,) if parameter else (),
    )


# --- words --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kpi", "kind", "label"),
    [
        ("latency.p95", "ms", "Page response p95"),
        ("wait.app", "ms", "App wait per page"),
        ("latency.count", "count", "latency.count"),
        ("utilisation.app.utilisation", "pct", "Utilisation: app"),
        ("utilisation.app.mean_queue", "number", "Mean Queue: app"),
        ("utilisation.app.arrivals", "count", "Arrivals: app"),
        ("throughput", "rate", "Throughput (page requests)"),
        ("revenue_cents", "money", "Revenue (ledger balance, currency units)"),
        ("payment_success", "pct", "Payment success (paid / checkouts)"),
        ("declines", "count", "Declines"),
    ],
)
def test_kpi_kind_and_label(kpi, kind, label):
    assert (kpi_kind(kpi), kpi_label(kpi)) == (kind, label)


def _verdict(**changes) -> Verdict:
    base = dict(
        kpi="latency.p95",
        direction="lower",
        best="b",
        runner_up="a",
        best_mean=0.05,
        runner_up_mean=0.08,
        difference=MeanCI(-0.03, 0.01, -0.04, -0.02, 5),
        p_value=0.0002,
        established=True,
        tie=False,
        variants_with_data=2,
    )
    base.update(changes)
    return Verdict(**base)


def test_verdict_sentences():
    assert verdict_sentence(_verdict()) == (
        "b wins on page response p95 (lower is better): 50 ms against 80 ms for the runner-up a; "
        "the paired difference -30 ms (95 % CI -40 ms to -20 ms) excludes zero, so the win is "
        "established with 95 % confidence (paired t-test p = 0.0002)."
    )
    tiny = verdict_sentence(_verdict(p_value=1e-6))
    assert "p = < 0.0001)." in tiny
    open_ = verdict_sentence(
        _verdict(
            established=False,
            difference=MeanCI(-0.03, 0.05, -0.08, 0.02, 5),
            p_value=0.2,
            kpi="payment_success",
            direction="higher",
            best_mean=0.95,
            runner_up_mean=0.93,
        )
    )
    assert open_ == (
        "Payment success (paid / checkouts): the difference is not established. b has the "
        "highest mean (95.0 %), but its paired difference from a (-3.0 pp, 95 % CI -8.0 pp to "
        "+2.0 pp) includes zero (p = 0.2); more replications may settle it."
    )
    same = verdict_sentence(_verdict(difference=MeanCI(0.0, 0.0, 0.0, 0.0, 3), established=False))
    assert same == (
        "Page response p95: no winner; b and a share the lowest value (50 ms) in every replication."
    )
    assert verdict_sentence(_verdict(tie=True)) == (
        "Page response p95: identical in every variant and replication (50 ms): the change does "
        "not reach it."
    )
    assert verdict_sentence(_verdict(best=None)) == "Page response p95: no data in any variant."
    assert verdict_sentence(_verdict(runner_up=None, p_value=NAN)) == (
        "Page response p95: only b has data (50 ms)."
    )
    three = dict(variants_with_data=3, contender="c", level=0.975)
    assert verdict_sentence(_verdict(**three)) == (
        "b wins on page response p95 (lower is better): 50 ms against 80 ms for the runner-up a; "
        "its paired differences from each of the other 2 variants exclude zero, so the win is "
        "established with 95 % confidence over all of them (Bonferroni: each interval at "
        "97.5 %). The closest call is c: -30 ms (97.5 % CI -40 ms to -20 ms, adjusted p = "
        "0.0002)."
    )
    unsettled = verdict_sentence(
        _verdict(**three, established=False, difference=MeanCI(-0.03, 0.05, -0.08, 0.02, 5))
    )
    assert unsettled.endswith(
        "but its paired difference from c (-30 ms, 97.5 % CI -80 ms to +20 ms) includes zero "
        "(p = 0.0002, adjusted for the 2 comparisons (Bonferroni)); more replications may "
        "settle it."
    )
    slow = verdict_sentence(_verdict(best_mean=130.0, runner_up_mean=2.5, p_value=NAN))
    assert "2.17 min against 2.5 s" in slow and "p = n/a" in slow


# --- figures ------------------------------------------------------------------------------------


def _gids(fig) -> set[str]:
    return {a.get_gid() for ax in fig.axes for a in ax.get_children() if a.get_gid()}


def test_kpis_vs_a_numeric_parameter_draw_bands():
    table = _comparison(("2", "4", "8")).table()
    fig = plot_kpis_vs_parameter(
        table, ["latency.mean", "latency.p95", "nothing"], "stations.app.servers"
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["Page response mean", "Page response p95"]
    line = visible[0].get_lines()[0]
    assert list(line.get_xdata()) == [2.0, 4.0, 8.0]
    assert line.get_ydata()[0] == pytest.approx(51.0)  # ms: the mean of 50, 51, 52
    assert "ci" in _gids(fig)


def test_kpis_of_a_grid_draw_one_line_per_other_value():
    table = _comparison(("2", "4")).table()
    table.insert(2, "stations.database.pool", [5] * (len(table) // 2) + [10] * (len(table) // 2))
    fig = plot_kpis_vs_parameter(table, ["latency.mean"], "stations.app.servers")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["pool=5", "pool=10"]


def test_kpis_of_scenario_files_are_categorical():
    table = _comparison(("a", "b"), parameter=None).table()
    fig = plot_kpis_vs_parameter(table, ["latency.mean"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["servers=a", "servers=b"]
    assert "ci" in _gids(fig)


def test_knee_plot():
    points = pd.DataFrame(
        {
            "label": ["c=4", "c=2", "c=1"],
            "utilisation": [0.2, 0.4, 0.8],
            "utilisation_hw": [0.01, 0.02, NAN],
            "mean": [0.02, 0.025, 0.09],
            "mean_hw": [0.001, 0.002, 0.01],
            "p95": [0.05, 0.06, 0.3],
            "p95_hw": [0.002, 0.003, NAN],
        }
    )
    fig = plot_knee(points, station="app", slo_p95=0.1)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "utilisation of app (%)"
    assert [t.get_text() for t in ax.texts] == ["c=4", "c=2", "c=1"]
    assert "slo" in _gids(fig)
    assert "slo" not in _gids(plot_knee(points, station="app"))


def _plan(answer: int | None = 3, monotone: bool = True, twin: int | None = 3) -> Plan:
    slos = (parse_slo("app_wait<=5ms"), Slo("payment_success", "payment_success", ">=", 0.9))
    evaluations = []
    order = [4, 3, 2] if monotone else [4, 3, 2, 5]
    for step, c in enumerate(order):
        wait = 0.002 * (5 - c) if c != 5 else 0.01
        good = wait <= 0.004
        values = [wait * 0.9, wait, wait * 1.1]
        summaries = tuple(
            _summary(f"servers={c}", r, {"wait": {"app": values[r]}, "payment_success": 0.95})
            for r in range(3)
        )
        stats = {"app_wait": mean_ci(values), "payment_success": MeanCI(0.95, 0.01, 0.94, 0.96, 3)}
        met = {"app_wait": good and stats["app_wait"].high <= 0.005, "payment_success": True}
        if c == 2:
            met["payment_success"] = None
        evaluations.append(Evaluation(c, step, summaries, stats, met))
    scenario = parse_scenario(mmc_data(10, 4))
    guess = TwinGuess("app", 10.0, 0.02, 1.0, 0.005, "the app_wait objective", twin)
    if twin is None:
        guess = TwinGuess(None, NAN, NAN, NAN, NAN, "catalog.products is not a station", None)
    return Plan(
        scenario=scenario,
        parameter="stations.app.servers",
        station="app",
        slos=slos,
        twin=guess,
        answer=answer,
        evaluations=tuple(evaluations),
        seed=3,
        replications=3,
        lower=1,
        upper=8,
        base_capacity=4,
        start=3,
    )


def test_plan_curve_plot():
    plan = _plan()
    fig = plot_plan_curve(plan.curve(), plan.slos, parameter=plan.parameter, answer=3, guess=3)
    assert len(fig.axes) == 2
    assert {"ci", "slo", "answer", "guess"} <= _gids(fig)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "target app_wait <= 5ms" in legend and "answer 3" in legend
    bare = plot_plan_curve(
        plan.curve(), plan.slos, parameter=plan.parameter, answer=None, guess=None
    )
    assert not {"answer", "guess"} & _gids(bare)


# --- folders ------------------------------------------------------------------------------------


def test_comparison_folder(tmp_path):
    comparison = _comparison(("2", "4"), violations=("ledger: broken",))
    files = write_comparison_report(comparison, tmp_path, wall_seconds=2.5)
    assert [p.name for p in files.csvs] == ["comparison.csv", "replications.csv"]
    assert [p.name for p in files.pngs] == ["kpis.png", "knee.png"]
    summary = json.loads(files.summary.read_text())
    assert summary["audit"] == {"ok": False, "violations": [["servers=4", 1, "ledger: broken"]]}
    assert summary["runtime"]["wall_seconds"] == 2.5
    assert summary["warmups"] == {"servers=2": [5.0] * 3, "servers=4": [5.0] * 3}
    html = unescape(files.html.read_text())
    assert "Audit FAILED" in html and "servers=4, replication 1: ledger: broken" in html
    assert "warm-up auto (MSER-5" in html and "hit MSER's limit" in html
    assert "2.5 s wall clock" in html
    replications = pd.read_csv(files.csvs[1])
    assert list(replications["audit_ok"]) == [True, True, True, True, False, True]
    text = format_comparison(comparison)
    assert "AUDIT FAILED in 1 places" in text
    single = Comparison(
        comparison.variants,
        {label: rows[:1] for label, rows in comparison.summaries.items()},
        seed=3,
        replications=1,
    )
    assert "50 ms (n=1)" in format_comparison(single)
    assert "servers=4 wins on page response mean" in text


def test_comparison_folder_without_a_station(tmp_path):
    comparison = _comparison(("2", "4"), parameter="arrivals.rate")
    for rows in comparison.summaries.values():
        for s in rows:
            del s.kpis["utilisation"]
    files = write_comparison_report(comparison, tmp_path)
    assert [p.name for p in files.pngs] == ["kpis.png"]  # no station, no knee
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_comparison_report(comparison, tmp_path / "missing")


def test_plan_folder_and_text(tmp_path):
    plan = _plan()
    files = write_plan_report(plan, tmp_path, wall_seconds=1.0)
    assert [p.name for p in files.pngs] == ["plan.png", "knee.png"]
    summary = json.loads(files.summary.read_text())
    assert summary["answer"] == 3 and summary["twin"]["servers"] == 3
    assert [e["capacity"] for e in summary["evaluations"]] == [4, 3, 2]
    html = unescape(files.html.read_text())
    assert (
        "The smallest stations.app.servers that meets every objective (app_wait <= 5ms, "
        "payment_success >= 0.9) with 95 % confidence is 3; at 2, app_wait, payment_success "
        "is not met with 95 % confidence." in html
    )
    assert "no data" in html and "<strong>3</strong>" in html
    replications = pd.read_csv(files.csvs[1])
    assert list(replications["stations.app.servers"]) == [2, 2, 2, 3, 3, 3, 4, 4, 4]
    text = format_plan(plan)
    assert "first guess 3 (the app_wait objective)" in text
    assert "stations.app.servers=2: not met" in text


def test_plan_folder_edge_cases(tmp_path):
    lost = _plan(answer=None, monotone=False, twin=None)
    files = write_plan_report(lost, tmp_path)
    html = unescape(files.html.read_text())
    assert "No value of stations.app.servers up to 8 meets every objective" in html
    assert "not monotone" in html and "No guess (catalog.products is not a station)" in html
    text = format_plan(lost)
    assert "warning: the evaluations are not monotone" in text and "analytic twin" not in text
    assert not lost.monotone
    lowest = _plan(answer=1)
    assert "confidence is 1." in format_plan(lowest)
    gap = _plan(answer=6)  # 5 not evaluated: nothing to say about the value below
    assert "confidence is 6." in format_plan(gap)
    with pytest.raises(FileNotFoundError):
        write_plan_report(lost, tmp_path / "missing")
    assert math.isnan(lost.twin.offered_load)
    assert lost.evaluations[0].values("wait.app") == pytest.approx([0.0018, 0.002, 0.0022])
