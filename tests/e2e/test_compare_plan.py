"""End-to-end tests of ``compare`` and ``plan``: the command line on the smoke scenario, cut short.

Two tests run ``python run_sim.py`` as a subprocess; the rest call ``sim.cli.main`` in-process
with the working directory in pytest's tmp_path, so nothing lands in the project's reports/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

import sim.cli

ROOT = Path(__file__).resolve().parents[2]
RUN_SIM = ROOT / "run_sim.py"
SMOKE = ROOT / "scenarios" / "smoke.yaml"
SHORT = ("--set", "horizon=1m", "--set", "metrics.interval=10s")
PNG = b"\x89PNG\r\n\x1a\n"


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_SIM), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        status = sim.cli.main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return call


def _assert_pngs(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (folder / name).read_bytes().startswith(PNG), name


def _images(html: str) -> int:
    return html.count('src="data:image/png;base64,')


# --- compare --------------------------------------------------------------------------------------


def test_compare_vary_writes_csvs_plots_and_report(tmp_path):
    out = tmp_path / "cmp"
    done = _run_cli(
        "compare",
        str(SMOKE),
        "--vary",
        "stations.app.servers=1,3",
        *SHORT,
        "--replications",
        "2",
        "--jobs",
        "2",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "verdicts:" in done.stdout and f"report: {out / 'report.html'}" in done.stdout
    files = {p.name for p in out.iterdir()}
    assert files == {
        "comparison.csv",
        "replications.csv",
        "summary.json",
        "kpis.png",
        "knee.png",
        "report.html",
    }
    _assert_pngs(out, ("kpis.png", "knee.png"))
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["variant"].unique()) == ["servers=1", "servers=3"]
    assert {"latency.p95", "throughput", "utilisation.app.utilisation"} <= set(table["kpi"])
    assert list(table["stations.app.servers"].unique()) == [1, 3]
    row = table[(table["variant"] == "servers=3") & (table["kpi"] == "latency.mean")].iloc[0]
    assert row["n"] == 2 and row["diff"] < 0
    replications = pd.read_csv(out / "replications.csv")
    assert len(replications) == 4 and set(replications["replication"]) == {0, 1}
    assert (replications["warmup"] == 30.0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["kind"], summary["replications"], summary["seed"]) == ("comparison", 2, 7)
    assert summary["baseline"] == "servers=1" and summary["executor"] == "process pool (2 jobs)"
    assert summary["audit"]["ok"] is True
    html = (out / "report.html").read_text()
    assert _images(html) == 2
    html_text = unescape(html)
    for verdict in summary["verdicts"]:
        assert verdict["sentence"] in html_text
    assert "Paired differences against the baseline" in html
    assert "half-width (unpaired)" in html


def test_compare_two_scenario_files(tmp_path, cli):
    other = tmp_path / "bigger.yaml"
    other.write_text(
        SMOKE.read_text().replace("name: smoke", "name: bigger") + "\n# more app servers\n",
        encoding="utf-8",
    )
    status, out, _ = cli(
        "compare",
        str(SMOKE),
        str(other),
        *SHORT,
        "--set",
        "stations.app.servers=2",
        "--replications",
        "2",
        "--jobs",
        "1",
        "--quiet",
    )
    assert status == 0 and out == ""
    [folder] = list((tmp_path / "reports" / "smoke").iterdir())
    assert folder.name.startswith("compare-") and folder.name.endswith("-seed7")
    summary = json.loads((folder / "summary.json").read_text())
    assert [v["label"] for v in summary["variants"]] == ["smoke", "bigger"]
    assert summary["parameters"] == [] and summary["executor"] == "in-process"
    # the same shop on the same random numbers: every KPI ties
    table = pd.read_csv(folder / "comparison.csv")
    second = table[table["variant"] == "bigger"]
    assert (second["diff"].fillna(0.0) == 0.0).all()
    assert all(v["tie"] or v["best"] is None for v in summary["verdicts"])


def test_compare_with_sequential_stopping(cli, tmp_path):
    status, _, _ = cli(
        "compare",
        str(SMOKE),
        "--vary",
        "stations.app.servers=2,4",
        *SHORT,
        "--replications",
        "2",
        "--precision",
        "0.01",
        "--max-replications",
        "3",
        "--precision-kpi",
        "latency.mean",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "seq"),
    )
    assert status == 0
    summary = json.loads((tmp_path / "seq" / "summary.json").read_text())
    assert summary["rounds"] == [2, 3] and summary["precise"] is False
    assert summary["precision_kpis"] == ["latency.mean"]
    html = (tmp_path / "seq" / "report.html").read_text()
    assert "Sequential stopping" in html and "NOT reached" in html


def test_compare_on_a_dask_scheduler_matches_in_process(cli, tmp_path):
    distributed = pytest.importorskip("distributed")
    args = (
        "compare",
        str(SMOKE),
        "--vary",
        "stations.app.servers=1,2",
        *SHORT,
        "--replications",
        "2",
        "--quiet",
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        status, _, _ = cli(*args, "--scheduler", cluster.scheduler_address, "--out", "dask")
    assert status == 0
    status, _, _ = cli(*args, "--executor", "inprocess", "--out", "here")
    assert status == 0
    on_dask = pd.read_csv(tmp_path / "dask" / "comparison.csv")
    in_process = pd.read_csv(tmp_path / "here" / "comparison.csv")
    pd.testing.assert_frame_equal(on_dask, in_process)
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["executor"] == f"Dask scheduler {cluster.scheduler_address}"


# --- plan -----------------------------------------------------------------------------------------


def test_plan_writes_csv_plots_and_report(tmp_path):
    out = tmp_path / "plan"
    done = _run_cli(
        "plan",
        str(SMOKE),
        "--size",
        "stations.app.servers",
        "--slo",
        "page_p95<=150ms",
        "--slo",
        "app_wait<=5ms",
        *SHORT,
        "--replications",
        "3",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "The smallest stations.app.servers that meets every objective" in done.stdout
    # progress (each capacity as it completes) is for a terminal: none in a pipe
    assert "stations.app.servers=4: " not in done.stderr
    assert {p.name for p in out.iterdir()} == {
        "plan.csv",
        "replications.csv",
        "summary.json",
        "plan.png",
        "knee.png",
        "report.html",
    }
    _assert_pngs(out, ("plan.png", "knee.png"))
    summary = json.loads((out / "summary.json").read_text())
    answer = summary["answer"]
    assert isinstance(answer, int) and 1 <= answer <= 4
    assert summary["base_capacity"] == 4 and summary["twin"]["servers"] >= 1
    assert summary["twin"]["basis"] == "the app_wait objective"
    curve = pd.read_csv(out / "plan.csv")
    assert set(curve["slo"]) == {"page_p95", "app_wait"}
    met = curve.groupby("capacity")["all_met"].first()
    assert met[answer] and (answer == 1 or not met.get(answer - 1, True))
    assert not met[met.index < answer].any()
    html = (out / "report.html").read_text()
    assert _images(html) == 2
    assert f"with 95 % confidence is {answer}" in html
    assert "The analytic twin" in html and "The search" in html


def test_plan_without_an_answer_exits_4_with_a_report(cli, tmp_path):
    status, out, _ = cli(
        "plan",
        str(SMOKE),
        "--size",
        "stations.app.servers",
        "--slo",
        "page_mean<=1ms",
        *SHORT,
        "--replications",
        "2",
        "--max",
        "3",
        "--out",
        str(tmp_path / "none"),
    )
    assert status == sim.cli.EXIT_NO_PLAN == 4
    assert "No value of stations.app.servers up to 3 meets every objective" in out
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert summary["answer"] is None
    assert (
        "No value of stations.app.servers up to 3"
        in (tmp_path / "none" / "report.html").read_text()
    )


def test_plan_defaults_to_the_scenario_slos(cli, tmp_path):
    status, _, err = cli(
        "plan",
        str(SMOKE),
        "--size",
        "stations.app.servers",
        *SHORT,
        "--set",
        "slo.payment_success=0",
        "--replications",
        "2",
        "--min",
        "4",
        "--max",
        "4",
        "--jobs",
        "1",
        "--quiet",
    )
    assert status in (0, 4) and err == ""
    [folder] = list((tmp_path / "reports" / "smoke").iterdir())
    assert folder.name.startswith("plan-")
    summary = json.loads((folder / "summary.json").read_text())
    assert [s["name"] for s in summary["slos"]] == ["page_p95", "checkout_p95", "payment_success"]


def test_a_broken_audit_exits_3_with_the_report(cli, tmp_path, monkeypatch):
    import dataclasses

    import sim.analysis.compare as compare_module

    real = compare_module.summary_task

    def broken(task):
        summary = real(task)
        return dataclasses.replace(summary, violations=("ledger: out of balance",))

    monkeypatch.setattr(compare_module, "summary_task", broken)
    status, _, err = cli(
        "compare", str(SMOKE), *VARY, *SHORT, "--replications", "2", "--jobs", "1",
        "--out", "cmp", "--quiet",
    )  # fmt: skip
    assert status == 3 and "AUDIT FAILED (servers=1, replication 0): ledger: out of balance" in err
    assert "Audit FAILED" in (tmp_path / "cmp" / "report.html").read_text()
    status, out, err = cli(
        "plan", str(SMOKE), "--size", "stations.app.servers", "--slo", "page_p95<=10s",
        *SHORT, "--replications", "2", "--jobs", "1", "--min", "4", "--out", "plan",
    )  # fmt: skip
    assert status == 3 and "AUDIT FAILED (stations.app.servers=4, replication 0)" in err
    assert "with 95 % confidence is" in out


def test_progress_bar_and_folder_names_on_a_terminal(cli, tmp_path, monkeypatch):
    import datetime as dt

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 2, 3, 4, 5)

    monkeypatch.setattr(sim.cli, "datetime", Frozen)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    args = ("compare", str(SMOKE), *VARY, *SHORT, "--replications", "2", "--jobs", "1")
    for _ in range(2):
        status, _, err = cli(*args)
        assert status == 0
        assert "compare x2" in err and "4/4" in err, err
    folders = sorted(p.name for p in (tmp_path / "reports" / "smoke").iterdir())
    assert folders == ["compare-20300102-030405-seed7", "compare-20300102-030405-seed7-2"]


def test_plan_reports_each_capacity_as_it_completes_on_a_terminal(cli, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    args = ("plan", str(SMOKE), "--size", "stations.app.servers", "--slo", "page_p95<=10s")
    status, _, err = cli(*args, *SHORT, "--replications", "2", "--jobs", "1")
    assert status == 0, err
    assert "  stations.app.servers=4: met" in err.splitlines()
    status, _, err = cli(*args, *SHORT, "--replications", "2", "--jobs", "1", "--quiet")
    assert status == 0 and "stations.app.servers=4" not in err


# --- run with an executor -------------------------------------------------------------------------


def test_run_with_jobs_gives_the_same_report(cli, tmp_path):
    base = ("run", str(SMOKE), *SHORT, "--replications", "2", "--quiet")
    assert cli(*base, "--out", "here")[0] == 0
    assert cli(*base, "--jobs", "2", "--out", "pool")[0] == 0
    here, pool = (
        json.loads((tmp_path / name / "summary.json").read_text()) for name in ("here", "pool")
    )
    assert here["kpis"] == pool["kpis"]
    assert here["seeds"] == pool["seeds"] and here["replications"] == pool["replications"]


# --- bad input: exit 2, one message, nothing written ----------------------------------------------

VARY = ("--vary", "stations.app.servers=1,2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", str(SMOKE)), "compare needs --vary KEY=V1,V2,... or two or more"),
        (("compare", str(SMOKE), "--vary", "stations.app.servers"), "is not of the form"),
        (("compare", str(SMOKE), "--vary", "stations.app.servers=1"), "at least two variants"),
        (("compare", str(SMOKE), "--vary", "stations.app.cores=1,2"), "unknown key"),
        (("compare", str(SMOKE), "--vary", "stations.app.servers=1,0"), "stations.app.servers"),
        (("compare", str(SMOKE), *VARY, "--vary", "stations.app.servers=3,4"), "more than once"),
        (("compare", str(SMOKE), *VARY, "--replications", "1"), "--replications must be >= 2"),
        (("compare", str(SMOKE), *VARY, "--precision", "2"), "--precision must be in (0, 1)"),
        (
            (
                "compare",
                str(SMOKE),
                *VARY,
                "--precision",
                "0.1",
                "--replications",
                "3",
                "--max-replications",
                "2",
            ),
            "--max-replications (2) must be >= --replications (3)",
        ),
        (("compare", str(SMOKE), *VARY, "--scheduler", "localhost"), "--scheduler must be an"),
        (
            ("compare", str(SMOKE), *VARY, "--executor", "process", "--scheduler", "tcp://h:1"),
            "--scheduler needs --executor dask",
        ),
        (("compare", str(SMOKE), *VARY, "--jobs", "0"), "--jobs must be >= 1"),
        (("compare", str(SMOKE), *VARY, "--seed", "-1"), "--seed must be >= 0"),
        (("compare", "missing.yaml", str(SMOKE)), "missing.yaml"),
        (
            (
                "compare",
                str(SMOKE),
                *VARY,
                *SHORT,
                "--replications",
                "2",
                "--precision",
                "0.1",
                "--precision-kpi",
                "latency.p96",
            ),
            "'latency.p96': no such KPI",
        ),
        (("plan", str(SMOKE), "--size", "stations.app.service"), "not an integer capacity"),
        (("plan", str(SMOKE), "--size", "stations.app.servers", "--slo", "speed<=1"), "unknown"),
        (
            (
                "plan",
                str(SMOKE),
                "--size",
                "stations.app.servers",
                "--slo",
                "page_p95<=1s",
                "--slo",
                "page_p95<=2s",
            ),
            "--slo names page_p95 twice",
        ),
        (
            ("plan", str(SMOKE), "--size", "stations.app.servers", "--min", "5", "--max", "2"),
            "need 1 <= --min <= --max",
        ),
        (
            ("plan", str(SMOKE), "--size", "stations.app.servers", "--max", "999999"),
            f"--max 999999: {SMOKE}: stations.app.servers: must be <= 100000, got 999999",
        ),
        (
            ("plan", str(SMOKE), "--size", "seed", "--slo", "page_p95<=1s"),
            "--size 'seed' is a setting of the run, not a capacity of the shop",
        ),
        (
            ("plan", str(SMOKE), "--size", "stations.app.servers", "--slo", "conversion>=7"),
            "conversion is a share (0 to 1, or 0 % to 100 %)",
        ),
        (
            (
                "plan",
                str(SMOKE),
                "--size",
                "stations.app.servers",
                *SHORT,
                "--replications",
                "2",
                "--slo",
                "latency.p96<=1s",
            ),
            "'latency.p96': no such KPI",
        ),
        (("run", str(SMOKE), "--jobs", "0"), "--jobs must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path, args, message):
    before = sorted(tmp_path.rglob("*"))
    status, out, err = cli(*args)
    assert status == 2, err
    assert err.startswith("error: ") and message in err, err
    assert out == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_out_must_be_a_folder(cli, tmp_path):
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    status, _, err = cli("compare", str(SMOKE), *VARY, "--out", "taken")
    assert status == 2 and "--out taken: exists and is not a folder" in err


def test_plan_needs_size(cli):
    with pytest.raises(SystemExit) as exit_:
        cli("plan", str(SMOKE))
    assert exit_.value.code == 2


def test_an_unreachable_scheduler_exits_2(cli, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("sim.analysis.executors.DASK_CONNECT_TIMEOUT", 0.5)
    status, _, err = cli("compare", str(SMOKE), *VARY, "--scheduler", "tcp://127.0.0.1:9")
    assert status == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert not (tmp_path / "reports").exists()


def test_help_lists_the_new_subcommands(capsys):
    with pytest.raises(SystemExit):
        sim.cli.main(["--help"])
    text = capsys.readouterr().out
    assert "compare" in text and "plan" in text
