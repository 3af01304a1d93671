"""End-to-end tests of the command line: ``python run_sim.py ...`` run as a subprocess.

Every run writes inside pytest's tmp_path: either ``--out`` there, or the working directory is
tmp_path so that the default ``reports/`` folder lands there; the project's own reports/ is never
touched. Runs are shortened with ``--set horizon=...`` and ``--replications 1`` where the test
does not need more. A few tests call ``sim.cli.main`` in-process where a subprocess cannot reach
(the default command, a failing audit).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import sim.cli
import sim.engine.runner
from sim.engine.metrics import latency_summary
from sim.engine.runner import Audit
from sim.reporting.report import FRAME_NAMES
from sim.scenario import load_scenario
from sim.services.sqlite_store import open_store

ROOT = Path(__file__).resolve().parents[2]
RUN_SIM = ROOT / "run_sim.py"
SCENARIOS = ROOT / "scenarios"
SMOKE = SCENARIOS / "smoke.yaml"
SCENARIO_FILES = sorted(SCENARIOS.glob("*.yaml"))

PNG_FILES = (
    "throughput.png",
    "latency_percentiles.png",
    "latency_by_page.png",
    "stations.png",
    "cache_hit_rate.png",
    "funnel.png",
    "order_states.png",
    "payment_outcomes.png",
)
"""The plots the issue asks for: throughput, percentiles over time and per page, stations,
cache hit rate, the funnel, orders by state, payment outcomes."""

CSV_FILES = tuple(f"{name}.csv" for name in FRAME_NAMES)

QUICK = ("--set", "horizon=1m", "--replications", "1")
"""The cheapest complete run: one replication of one simulated minute."""

LONG = ("--set", "horizon=2h")
"""A run that lasts many seconds of wall clock: long enough to interrupt."""

PROGRESS_UNIT = "sim-min"
"""The unit of the progress bar (simulated minutes)."""

TIMEOUT = 120.0


# --- helpers ------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TQDM_DISABLE", None)
    env.update(extra)
    return env


def _cmd(args: Sequence[object]) -> list[str]:
    return [sys.executable, str(RUN_SIM), *(str(a) for a in args)]


def cli(
    *args: object, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python run_sim.py ARGS`` with pipes for stdout and stderr (not terminals)."""
    return subprocess.run(
        _cmd(args),
        cwd=cwd,
        env=env or _env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def tree(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones included), relative, sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            found.append((Path(parent) / name).relative_to(folder).as_posix())
    return sorted(found)


def snapshot(folder: Path) -> dict[str, bytes]:
    """The content of every file under ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


def smoke_variant(folder: Path, name: str, old: str, new: str) -> Path:
    """Write smoke.yaml with ``old`` replaced by ``new`` (exactly once) as ``folder/name``."""
    text = SMOKE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"smoke.yaml changed: {old!r} is not there exactly once"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


_PROFILE = (
    "  profile: tpcw-shopping            # tpcw-browsing | tpcw-shopping | tpcw-ordering, or "
    "`graph:`\n"
    "  session_length: {exponential: {mean: 2m, cap: 8m}}  # shorter than TPC-W's 15 min to fit "
    "5 min\n"
)


def custom_graph(home_to_exit: float) -> str:
    """A custom behaviour graph replacing smoke's profile; its home row sums to 0.8 + p."""
    return (
        "  graph:\n"
        "    start: home\n"
        "    exit: leave\n"
        "    transitions:\n"
        f"      home: {{product_detail: 0.5, search_results: 0.3, leave: {home_to_exit}}}\n"
        "      product_detail: {home: 0.5, leave: 0.5}\n"
        "      search_results: {product_detail: 0.7, leave: 0.3}\n"
    )


def read_csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name)


# --- pseudo-terminals and Ctrl-C -----------------------------------------------------------------
def _pty_available() -> bool:
    if sys.platform == "win32":
        return False
    try:
        import pty

        master, slave = pty.openpty()
    except (ImportError, OSError):
        return False
    os.close(master)
    os.close(slave)
    return True


HAVE_PTY = _pty_available()
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
needs_pty = pytest.mark.skipif(not HAVE_PTY, reason="no pseudo-terminal available")


def _default_sigint() -> None:  # pragma: no cover - runs in the child before exec
    # A shell may start the test run with SIGINT ignored; a terminal's child would have it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_on_pty(
    args: Sequence[object], cwd: Path, *, interrupt_on: str | None = None
) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; return (status, stdout, terminal output).

    With ``interrupt_on``, send SIGINT (Ctrl-C) as soon as that text appears on the terminal,
    i.e. once the simulation is visibly under way.
    """
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        _cmd(args),
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        preexec_fn=_default_sigint,
    )
    os.close(slave)
    seen = bytearray()
    sent = False
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
                if interrupt_on and not sent and interrupt_on.encode() in seen:
                    proc.send_signal(signal.SIGINT)
                    sent = True
            elif proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"the CLI did not finish in {TIMEOUT} s: {bytes(seen)!r}")
    finally:
        os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode("utf-8", errors="replace")
    proc.stdout.close()
    status = proc.wait(timeout=TIMEOUT)
    if interrupt_on is not None:
        assert sent, f"{interrupt_on!r} never appeared on the terminal: {bytes(seen)!r}"
    return status, stdout, seen.decode("utf-8", errors="replace")


def interrupt(args: Sequence[object], cwd: Path) -> tuple[int, str, str]:
    """Start a long run, press Ctrl-C once it simulates; return (status, stdout, stderr)."""
    if HAVE_PTY:  # wait for the progress bar: the simulation is under way, imports are done
        return run_on_pty(args, cwd, interrupt_on=PROGRESS_UNIT)
    proc = subprocess.Popen(
        _cmd(args),
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    time.sleep(3.0)  # imports take ~1.5 s; the 2 h run takes far longer than 3 s
    assert proc.poll() is None, "the long run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, stdout, stderr


# --- the HTML page --------------------------------------------------------------------------------
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class Page(HTMLParser):
    """Collects images and external references and checks that every tag is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.resources: list[str] = []
        self.open: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        if tag in ("script", "link", "iframe", "embed", "source", "audio", "video"):
            self.resources.append(f"<{tag}> {found}")
        for key in ("src", "href"):
            value = found.get(key) or ""
            if re.match(r"(https?:)?//", value):
                self.resources.append(f"{key}={value}")
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.errors == [], page.errors
    assert page.open == [], f"unclosed tags: {page.open}"
    return page


def check_page_embeds_every_png(folder: Path) -> Page:
    """report.html parses, loads nothing from the network and embeds every PNG of the folder."""
    page = parse_page(folder / "report.html")
    assert page.resources == []
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(PNG_FILES)
    embedded: dict[str, bytes] = {}
    for image in page.images:
        src = image.get("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        embedded[str(image.get("data-file"))] = data
    assert sorted(embedded) == pngs
    for name in pngs:
        assert embedded[name] == (folder / name).read_bytes(), f"{name} is not the one embedded"
    return page


# --- KPIs from the CSVs ---------------------------------------------------------------------------
def kpis_from_csvs(folder: Path, replication: int, warmup: float, horizon: float) -> dict[str, Any]:
    """Recompute one replication's headline KPIs from the CSV files alone."""

    def of_run(name: str) -> pd.DataFrame:
        frame = read_csv(folder, name)
        return frame[frame["replication"] == replication]

    requests = of_run("requests.csv")
    kept = requests[requests["time"] >= warmup]
    hits, misses = int(kept["cache_hits"].sum()), int(kept["cache_misses"].sum())
    orders = of_run("orders.csv")
    ledger = of_run("ledger.csv")
    sessions = of_run("sessions.csv")
    late = sessions[sessions["start"] >= warmup]
    charges = int(ledger.loc[ledger["kind"] == "charge", "amount"].sum())
    refunds = int(ledger.loc[ledger["kind"] == "refund", "amount"].sum())
    return {
        "throughput": len(kept) / (horizon - warmup),
        "latency": latency_summary(kept["response"]),
        "cache_hit_rate": hits / (hits + misses),
        "orders_paid": int(orders["paid"].sum()),
        "revenue_cents": charges - refunds,
        "conversion": float((late["orders"] > 0).mean()),
        "sessions": len(sessions),
        "page_views": len(requests),
    }


def check_kpis_match(kpis: dict[str, Any], computed: dict[str, Any]) -> None:
    for key in ("orders_paid", "revenue_cents", "sessions", "page_views"):
        assert kpis[key] == computed[key], key
    assert kpis["latency"]["count"] == computed["latency"]["count"]
    for key in ("throughput", "cache_hit_rate", "conversion"):
        assert kpis[key] == pytest.approx(computed[key], rel=1e-12, abs=0), key
    for p in ("mean", "p50", "p95", "p99"):
        assert kpis["latency"][p] == pytest.approx(computed["latency"][p], rel=1e-12), p


def check_written_run(folder: Path) -> dict[str, Any]:
    """Every file of a run folder exists, nothing else; return summary.json."""
    expected = sorted(["summary.json", "report.html", *CSV_FILES, *PNG_FILES])
    assert tree(folder) == expected
    for name in PNG_FILES:
        assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``python run_sim.py run scenarios/smoke.yaml --out DIR``, once for the module."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = cli("run", "scenarios/smoke.yaml", "--out", out)
    return proc, out


# --- 1. a full smoke run --------------------------------------------------------------------------
def test_run_smoke_exits_0_and_writes_every_file(smoke_run):
    proc, out = smoke_run
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    summary = check_written_run(out)
    assert summary["name"] == "smoke"
    assert summary["seeds"] == [7, 7]
    assert summary["replications"] == [0, 1]
    assert summary["horizon"] == 300.0
    assert summary["audit"]["ok"] is True
    for name in CSV_FILES:
        assert list(read_csv(out, name).columns[:1]) == ["replication"], name


def test_run_smoke_report_html_parses_and_embeds_every_png(smoke_run):
    _, out = smoke_run
    page = check_page_embeds_every_png(out)
    text = " ".join(page.text)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["description"] in text
    assert "Audit ok" in text


def test_run_smoke_summary_kpis_equal_those_computed_from_the_csvs(smoke_run):
    _, out = smoke_run
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests_sampled"] is False
    assert summary["requests_rows"] == len(read_csv(out, "requests.csv"))
    warmup, horizon = float(summary["warmup"]), float(summary["horizon"])
    assert (warmup, horizon) == (30.0, 300.0)
    per_run = summary["kpis_by_replication"]
    assert len(per_run) == 2
    computed = [kpis_from_csvs(out, r, warmup, horizon) for r in (0, 1)]
    for kpis, mine in zip(per_run, computed, strict=True):
        check_kpis_match(kpis, mine)
    assert computed[0]["throughput"] > 0 and computed[0]["latency"]["count"] > 100
    # The headline figures are the mean of the replications' values.
    flat = {
        "throughput": [c["throughput"] for c in computed],
        "latency.p50": [c["latency"]["p50"] for c in computed],
        "latency.p95": [c["latency"]["p95"] for c in computed],
        "latency.p99": [c["latency"]["p99"] for c in computed],
        "cache_hit_rate": [c["cache_hit_rate"] for c in computed],
        "orders_paid": [c["orders_paid"] for c in computed],
    }
    for key, values in flat.items():
        stat = summary["kpis"][key]
        assert stat["n"] == 2, key
        assert stat["values"] == pytest.approx(values, rel=1e-12), key
        assert stat["mean"] == pytest.approx(math.fsum(values) / 2, rel=1e-12), key


def test_run_smoke_prints_the_one_screen_summary_and_the_report_path(smoke_run):
    proc, out = smoke_run
    lines = proc.stdout.splitlines()
    text = proc.stdout
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert lines[0].startswith("smoke: 2 replications of 5 min simulated (seed 7)")
    for word in ("throughput", "p50", "p95", "p99", "cache hit rate", "utilisation"):
        assert word in text, word
    stations = {key.split(".")[1] for key in summary["kpis"] if key.startswith("utilisation.")}
    assert {"app", "database", "cache", "gateway:card-a", "warehouse:east"} <= stations
    for station in stations:
        assert re.search(rf"^\s+(utilisation\s+)?{re.escape(station)}\s+[\d.]+ %", text, re.M)
    assert re.search(r"^\s+conversion\s+[\d.]+ % ", text, re.M)
    revenue = summary["kpis"]["revenue_cents"]["mean"] / 100.0
    assert re.search(rf"^\s+revenue\s+{re.escape(f'{revenue:,.2f}')} ± ", text, re.M)
    for verdict in summary["slo"]:
        word = {True: "MET", False: "MISSED", None: "NO DATA"}[verdict["met"]]
        line = next(x for x in lines if x.strip().startswith(f"SLO {verdict['label'].lower()}"))
        assert f": {word}" in line, line
    assert "audit           ok" in text
    assert lines[-1] == f"report: {out / 'report.html'}"


# --- 2. replications, seed, overrides, determinism ------------------------------------------------
def test_replications_seed_and_override_are_recorded_and_runs_repeat_exactly(tmp_path):
    args = ("--replications", "2", "--seed", "11", "--set", "stations.app.servers=3")
    args += ("--set", "horizon=2m", "--quiet")
    # Different hash seeds: the result must not depend on the process (set iteration, hashes).
    first = cli("run", SMOKE, *args, "--out", tmp_path / "a", env=_env(PYTHONHASHSEED="1"))
    second = cli("run", SMOKE, *args, "--out", tmp_path / "b", env=_env(PYTHONHASHSEED="2"))
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    a = check_written_run(tmp_path / "a")
    b = check_written_run(tmp_path / "b")
    assert a["seeds"] == [11, 11]
    assert a["replications"] == [0, 1]
    assert a["scenario"]["stations"]["app"]["servers"] == 3
    assert a["scenario"]["horizon"] == 120.0
    assert a["kpis"]["utilisation.app.utilisation"]["n"] == 2
    assert a["kpis_by_replication"][0] != a["kpis_by_replication"][1]
    assert a["kpis"] == b["kpis"]
    assert a["kpis_by_replication"] == b["kpis_by_replication"]
    a.pop("runtime")
    b.pop("runtime")
    assert a == b
    for name in [*CSV_FILES, *PNG_FILES]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# --- 3. the default run folder --------------------------------------------------------------------
def test_default_run_folder_is_reports_scenario_run_id_and_a_second_run_adds_one(tmp_path):
    first = cli("run", SMOKE, *QUICK, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert os.listdir(tmp_path) == ["reports"]
    assert os.listdir(tmp_path / "reports") == ["smoke"]
    [run_id] = os.listdir(tmp_path / "reports" / "smoke")
    assert re.fullmatch(r"\d{8}-\d{6}-seed7(-\d+)?", run_id), run_id
    folder = tmp_path / "reports" / "smoke" / run_id
    check_written_run(folder)
    printed = Path("reports", "smoke", run_id, "report.html")
    assert first.stdout.splitlines()[-1] == f"report: {printed}"
    before = snapshot(folder)

    second = cli("run", SMOKE, *QUICK, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    runs = sorted(os.listdir(tmp_path / "reports" / "smoke"))
    assert len(runs) == 2 and run_id in runs
    [other] = [r for r in runs if r != run_id]
    assert re.fullmatch(r"\d{8}-\d{6}-seed7(-\d+)?", other), other
    check_written_run(tmp_path / "reports" / "smoke" / other)
    assert snapshot(folder) == before


# --- 4. validate, list, report --------------------------------------------------------------------
def test_validate_passes_every_shipped_scenario():
    names = [f"scenarios/{p.name}" for p in SCENARIO_FILES]
    assert len(names) >= 9
    proc = cli("validate", *names)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{name}: ok" for name in names]
    assert proc.stderr == ""


def test_validate_prints_one_line_per_problem_with_file_key_path_and_problem(tmp_path):
    multi = smoke_variant(tmp_path, "multi.yaml", "seed: 7 ", "seeed: 7 ")
    text = multi.read_text(encoding="utf-8")
    text = text.replace("app: {servers: 4,", "app: {servers: four,")
    text = text.replace("database: {pool: 5,", "database: {pool: -3,")
    multi.write_text(text, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("name: x\n  horizon: [1, 2\n", encoding="utf-8")
    proc = cli("validate", "multi.yaml", SMOKE, "broken.yaml", "nothere.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    no_traceback(proc)
    assert proc.stdout.splitlines() == [f"{SMOKE}: ok"]
    lines = proc.stderr.splitlines()
    assert len(lines) == 5, proc.stderr
    assert sorted(lines[:3]) == sorted(
        [
            "multi.yaml: stations.app.servers: expected an integer, got 'four'",
            "multi.yaml: stations.database.pool: must be >= 1, got -3",
            "multi.yaml: seeed: unknown key (allowed: name, description, seed, horizon, warmup, "
            "replications, catalog, population, arrivals, behavior, stations, pages, payments, "
            "fulfilment, coupons, faults, slo, metrics, storage)",
        ]
    )
    assert lines[3].startswith("broken.yaml: invalid YAML at line 2")
    assert lines[4] == "nothere.yaml: file not found"
    assert tree(tmp_path) == ["broken.yaml", "multi.yaml"]


def test_list_prints_every_scenario_file_with_its_description():
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(SCENARIO_FILES)
    for path, line in zip(SCENARIO_FILES, lines, strict=True):
        description = yaml.safe_load(path.read_text(encoding="utf-8"))["description"]
        first = description.strip().splitlines()[0]
        assert first
        assert re.fullmatch(rf"{re.escape(path.name)}\s+{re.escape(first)}", line), line


def test_report_rebuilds_the_plots_and_page_from_the_saved_data(smoke_run, tmp_path):
    _, original = smoke_run
    folder = tmp_path / "copy"
    shutil.copytree(original, folder)
    for name in [*PNG_FILES, "report.html"]:
        (folder / name).unlink()
    data_before = snapshot(folder)
    proc = cli("report", folder)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert proc.stdout.splitlines() == [f"report: {folder / 'report.html'}"]
    check_written_run(folder)
    check_page_embeds_every_png(folder)
    after = snapshot(folder)
    assert {k: after[k] for k in data_before} == data_before  # the data is only read
    for name in [*PNG_FILES, "report.html"]:  # the same pictures and page as the run drew
        assert after[name] == (original / name).read_bytes(), name


def test_report_on_a_folder_that_is_not_a_run_exits_2_with_a_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("report", "empty", cwd=tmp_path)
    assert proc.returncode == 2
    no_traceback(proc)
    assert proc.stderr == "error: empty: not a run folder (no summary.json)\n"
    assert proc.stdout == ""
    assert tree(tmp_path) == ["empty"]


def test_report_on_a_run_folder_missing_a_csv_exits_2_naming_the_file(smoke_run, tmp_path):
    _, original = smoke_run
    folder = tmp_path / "damaged"
    shutil.copytree(original, folder)
    (folder / "requests.csv").unlink()
    proc = cli("report", folder)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "requests.csv" in proc.stderr


def test_report_on_a_run_folder_with_a_corrupt_summary_exits_2(tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "summary.json").write_text("{not json", encoding="utf-8")
    proc = cli("report", folder)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "summary.json" in proc.stderr


def test_report_rebuilds_in_place_through_dot_and_through_a_link(smoke_run, tmp_path):
    """``report .`` and ``report LINK`` rewrite the real folder and leave nothing beside it."""
    _, original = smoke_run
    folder = tmp_path / "real"
    shutil.copytree(original, folder)
    (folder / "report.html").unlink()
    proc = cli("report", ".", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "report.html").read_bytes() == (original / "report.html").read_bytes()
    (tmp_path / "link").symlink_to(folder)
    (folder / "report.html").unlink()
    proc = cli("report", "link", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link").is_symlink() and (folder / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    assert tree(folder) == tree(original)


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ("[]", "cannot rebuild the report: odd/summary.json: not a run summary"),
        ("null", "cannot rebuild the report: odd/summary.json: not a run summary"),
        (
            '{"kind": "comparison", "format": 1}',
            "cannot rebuild the report: odd/summary.json: the folder of a comparison, not of a run",
        ),
    ],
)
def test_report_on_a_summary_of_the_wrong_shape_exits_2_naming_the_folder(
    smoke_run, tmp_path, summary, message
):
    _, original = smoke_run
    folder = tmp_path / "odd"
    shutil.copytree(original, folder)
    (folder / "summary.json").write_text(summary, encoding="utf-8")
    proc = cli("report", "odd", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: odd: {message}")
    assert ".odd." not in proc.stderr  # the user's folder, not the staging copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd"]


def test_a_scenario_name_never_places_the_report_outside_reports(tmp_path):
    outside = tmp_path / "outside"
    for name, folder in (
        (str(outside), _safe_folder(str(outside))),
        ("..", "scenario"),
        ("a/b", "a_b"),
    ):
        proc = cli("run", SMOKE, "--quiet", *QUICK, "--set", f"name={name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs = list((tmp_path / "reports").glob(f"{folder}/*/summary.json"))
        assert len(runs) == 1, (name, tree(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(
        [_safe_folder(str(outside)), "scenario", "a_b"]
    )


def _safe_folder(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")


def test_run_into_dot_writes_the_current_folder(tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    proc = cli("run", SMOKE, "--quiet", *QUICK, "--out", ".", cwd=here)
    assert proc.returncode == 0, proc.stderr
    check_written_run(here)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    proc = cli("run", SMOKE, "--quiet", *QUICK, "--out", "/proc/ecommerce-sim-out", cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --out /proc/ecommerce-sim-out: cannot write in /proc")
    assert tree(tmp_path) == []


# --- 5. bad input for run -------------------------------------------------------------------------
def _malformed(d: Path) -> list[object]:
    (d / "malformed.yaml").write_text("name: x\n  horizon: [1, 2\n", encoding="utf-8")
    return [d / "malformed.yaml"]


def _unknown_key(d: Path) -> list[object]:
    return [smoke_variant(d, "unknown.yaml", "seed: 7 ", "seeed: 7 ")]


def _wrong_type(d: Path) -> list[object]:
    return [smoke_variant(d, "wrongtype.yaml", "app: {servers: 4,", "app: {servers: four,")]


def _negative_capacity(d: Path) -> list[object]:
    return [smoke_variant(d, "negative.yaml", "database: {pool: 5,", "database: {pool: -3,")]


def _bad_probabilities(d: Path) -> list[object]:
    return [smoke_variant(d, "graph.yaml", _PROFILE, custom_graph(0.1))]


def _missing_file(d: Path) -> list[object]:
    return [d / "missing.yaml"]


def _bad_set_path(d: Path) -> list[object]:
    return [SMOKE, "--set", "stations.app.serverz=3"]


def _bad_set_value(d: Path) -> list[object]:
    return [SMOKE, "--set", "stations.app.servers=0"]


def _bad_replications(d: Path) -> list[object]:
    return [SMOKE, "--replications", "0"]


def _too_many_replications(d: Path) -> list[object]:
    return [SMOKE, "--replications", "100000000"]


def _store_in_a_missing_folder(d: Path) -> list[object]:
    return [SMOKE, "--set", f"storage={{kind: sqlite, path: {d / 'nowhere' / 'shop.db'}}}"]


BAD_INPUT = {
    "malformed-yaml": (_malformed, ["malformed.yaml", "invalid YAML at line 2"]),
    "unknown-key": (_unknown_key, ["unknown.yaml: seeed: unknown key (allowed: name,"]),
    "wrong-type": (
        _wrong_type,
        ["wrongtype.yaml: stations.app.servers: expected an integer, got 'four'"],
    ),
    "negative-capacity": (
        _negative_capacity,
        ["negative.yaml: stations.database.pool: must be >= 1, got -3"],
    ),
    "probabilities-not-summing-to-1": (
        _bad_probabilities,
        ["graph.yaml: behavior.graph.transitions.home: probabilities sum to 0.9, not 1"],
    ),
    "missing-file": (_missing_file, ["missing.yaml: file not found"]),
    "bad-set-path": (
        _bad_set_path,
        ["smoke.yaml: stations.app.serverz: override 'stations.app.serverz=3': unknown key"],
    ),
    "bad-set-value": (_bad_set_value, ["smoke.yaml: stations.app.servers: must be >= 1, got 0"]),
    "bad-replications": (_bad_replications, ["--replications must be 1 to 10,000, got 0"]),
    "too-many-replications": (
        _too_many_replications,
        ["--replications must be 1 to 10,000, got 100,000,000"],
    ),
    "store-in-a-missing-folder": (
        _store_in_a_missing_folder,
        ["smoke.yaml: storage.path: the folder", "nowhere does not exist; create it first"],
    ),
}


def test_the_bad_probabilities_case_differs_from_a_valid_graph_only_by_the_sum(tmp_path):
    good = smoke_variant(tmp_path, "graph_ok.yaml", _PROFILE, custom_graph(0.2))
    scenario = load_scenario(good)  # in-process: the subprocess cases below show the refusal
    assert scenario.behavior.graph is not None
    assert scenario.behavior.graph.start == "home"


def _check_refused(proc: subprocess.CompletedProcess[str], fragments: list[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_exits_2_names_the_problem_and_writes_nothing_at_out(case, tmp_path):
    make, fragments = BAD_INPUT[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    args = make(inputs)
    before = tree(tmp_path)
    proc = cli("run", *args, "--out", tmp_path / "out" / "run", cwd=inputs)
    _check_refused(proc, fragments)
    assert not (tmp_path / "out").exists()
    assert tree(tmp_path) == before


@pytest.mark.parametrize("case", ["malformed-yaml", "bad-replications"])
def test_bad_input_creates_no_default_reports_folder(case, tmp_path):
    make, fragments = BAD_INPUT[case]
    args = make(tmp_path)
    before = tree(tmp_path)
    proc = cli("run", *args, cwd=tmp_path)
    _check_refused(proc, fragments)
    assert not (tmp_path / "reports").exists()
    assert tree(tmp_path) == before


@posix_only
def test_an_earlier_report_at_out_survives_failed_and_interrupted_runs(tmp_path):
    out = tmp_path / "out"
    ok = cli("run", SMOKE, *QUICK, "--quiet", "--out", out)
    assert ok.returncode == 0, ok.stderr
    earlier = snapshot(out)
    assert len(earlier) == 2 + len(CSV_FILES) + len(PNG_FILES)

    # (Every kind of bad input fails before anything is written: see the cases above.)
    proc = cli("run", SMOKE, "--set", "stations.app.serverz=3", "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert snapshot(out) == earlier

    status, _, stderr = interrupt(["run", SMOKE, *LONG, "--out", out], tmp_path)
    assert status == 130, stderr
    assert snapshot(out) == earlier
    assert tree(tmp_path) == sorted(["out", *(f"out/{k}" for k in earlier)])


def test_an_out_folder_inside_a_file_is_bad_input(tmp_path):
    (tmp_path / "afile").write_text("mine\n", encoding="utf-8")
    proc = cli("run", SMOKE, *QUICK, "--out", tmp_path / "afile" / "run")
    no_traceback(proc)
    assert proc.returncode == 2
    assert "afile" in proc.stderr
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine\n"


def test_out_an_existing_folder_that_is_not_a_run_is_left_alone(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious\n", encoding="utf-8")
    proc = cli("run", SMOKE, *QUICK, "--quiet", "--out", folder)
    assert (folder / "notes.txt").is_file(), "the user's file was deleted"
    assert proc.returncode == 2
    no_traceback(proc)
    assert "mine" in proc.stderr


def test_a_storage_path_on_a_file_that_is_not_a_store_is_bad_input_and_left_alone(tmp_path):
    precious = tmp_path / "precious.db"
    precious.write_text("mine\n", encoding="utf-8")
    out = tmp_path / "run"
    storage = ("--set", "storage.kind=sqlite", "--set", f"storage.path={precious}")
    proc = cli("run", SMOKE, *QUICK, *storage, "--quiet", "--out", out)
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: {SMOKE}: storage.path: {precious} exists and is not an ecommerce-sim store; "
        "refusing to overwrite it\n"
    )
    assert precious.read_text(encoding="utf-8") == "mine\n" and not out.exists()
    # a store file from an earlier run is replaced: the same run twice gives the same books
    store = tmp_path / "shop.db"
    on_the_store = ("--set", "storage.kind=sqlite", "--set", f"storage.path={store}")
    kpis = []
    for _ in range(2):
        done = cli("run", SMOKE, *QUICK, *on_the_store, "--quiet", "--out", out)
        assert done.returncode == 0, done.stderr
        kpis.append(json.loads((out / "summary.json").read_text(encoding="utf-8"))["kpis"])
    assert kpis[0] == kpis[1]
    assert store.is_file()


def test_a_store_another_run_is_using_is_bad_input_and_left_alone(tmp_path):
    """A second run on the same store file would delete the running one's shop."""
    store = tmp_path / "shop.db"
    on_the_store = ("--set", "storage.kind=sqlite", "--set", f"storage.path={store}")
    running = open_store("sqlite", store)  # as a run in another terminal holds it
    try:
        inode = store.stat().st_ino
        out = tmp_path / "run"
        proc = cli("run", SMOKE, *QUICK, *on_the_store, "--quiet", "--out", out)
        no_traceback(proc)
        assert proc.returncode == 2
        assert proc.stderr == (
            f"error: {SMOKE}: storage.path: {store}: another run is using this store "
            f"(process {os.getpid()}); wait for it to end or choose another storage path\n"
        )
        assert not out.exists() and store.stat().st_ino == inode  # not deleted and made anew
    finally:
        running.close()
    done = cli("run", SMOKE, *QUICK, *on_the_store, "--quiet", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr


# --- 6. Ctrl-C ------------------------------------------------------------------------------------
@posix_only
@pytest.mark.parametrize("where", ["out", "default"])
def test_ctrl_c_exits_130_with_a_message_and_leaves_no_folder(where, tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    args: list[object] = ["run", SMOKE, *LONG]
    if where == "out":
        args += ["--out", parent / "run"]
    status, stdout, stderr = interrupt(args, parent)
    assert status == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert stdout == ""
    assert tree(tmp_path) == ["parent"]  # no run folder, no hidden staging folder, no reports/


# --- 7. progress ----------------------------------------------------------------------------------
def test_no_progress_bar_when_stderr_is_not_a_terminal(smoke_run):
    proc, _ = smoke_run
    assert "\r" not in proc.stderr
    assert PROGRESS_UNIT not in proc.stderr
    assert "\x1b[" not in proc.stderr


def test_quiet_prints_nothing_on_stdout_and_draws_no_bar_even_on_a_terminal(tmp_path):
    args = ["run", SMOKE, *QUICK, "--quiet", "--out", tmp_path / "run"]
    if HAVE_PTY:  # stderr a terminal: the strongest case for --quiet
        status, stdout, stderr = run_on_pty(args, tmp_path)
        assert status == 0, stderr
        assert stderr == ""
    else:
        proc = cli(*args)
        status, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        assert status == 0, stderr
        assert PROGRESS_UNIT not in stderr
    assert stdout == ""
    check_written_run(tmp_path / "run")


@needs_pty
def test_a_progress_bar_is_drawn_when_stderr_is_a_terminal(tmp_path):
    args = ["run", SMOKE, "--set", "horizon=1m", "--out", tmp_path / "run"]
    status, stdout, terminal = run_on_pty(args, tmp_path)
    assert status == 0, terminal
    assert PROGRESS_UNIT in terminal
    assert "\r" in terminal
    assert "smoke x2" in terminal
    assert "replication 2/2" in terminal
    assert "Traceback" not in terminal
    assert stdout.splitlines()[-1] == f"report: {tmp_path / 'run' / 'report.html'}"


# --- 8. no arguments: the baseline ----------------------------------------------------------------
def test_help_says_that_no_arguments_runs_the_baseline():
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "With no arguments: run scenarios/baseline.yaml" in text
    for command in ("run", "validate", "list", "report"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), command


@pytest.mark.parametrize("how", ["main([])", "sys.argv"])
def test_no_arguments_runs_the_baseline_scenario(how, monkeypatch):
    seen: list[Any] = []

    def fake_run(args: Any) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(sim.cli, "cmd_run", fake_run)
    if how == "sys.argv":
        monkeypatch.setattr(sys, "argv", ["run_sim.py"])
        status = sim.cli.main()
    else:
        status = sim.cli.main([])
    assert status == 0
    [args] = seen
    assert args.command == "run"
    assert Path(args.scenario) == SCENARIOS / "baseline.yaml"
    assert Path(args.scenario).is_file()
    assert (args.overrides, args.seed, args.replications, args.out, args.quiet) == (
        [],
        None,
        None,
        None,
        False,
    )


def test_run_sim_py_only_hands_over_to_sim_cli_main():
    source = RUN_SIM.read_text(encoding="utf-8")
    assert "from sim.cli import main" in source
    assert "raise SystemExit(main())" in source


# --- 9. a failed audit ----------------------------------------------------------------------------
def test_a_failed_audit_exits_3_names_the_rule_and_still_writes_the_report(
    tmp_path, monkeypatch, capsys
):
    rule = "coupon over its limit: WELCOME10"
    monkeypatch.setattr(sim.engine.runner, "audit", lambda *_: Audit((rule,)))
    out = tmp_path / "run"
    status = sim.cli.main(["run", str(SMOKE), *QUICK, "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 3
    assert captured.err == f"AUDIT FAILED (replication 0): {rule}\n"
    assert "audit           FAILED (1 violations; see the report)" in captured.out
    assert captured.out.splitlines()[-1] == f"report: {out / 'report.html'}"
    summary = check_written_run(out)
    assert summary["audit"] == {
        "ok": False,
        "replications": [{"replication": 0, "ok": False, "violations": [rule]}],
    }
    page = check_page_embeds_every_png(out)
    text = " ".join(page.text)
    assert "Audit FAILED" in text
    assert rule in text
