from __future__ import annotations

import base64
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim.analysis.compare import run_many
from sim.analysis.stats import flatten_numeric, mean_ci, missing_is_zero
from sim.analysis.theory import mgc_wait, mmc
from sim.engine.metrics import CHECKOUT_PAGE, latency_summary, station_utilisation
from sim.reporting import report, shared
from sim.reporting.report import (
    FRAME_NAMES,
    ReportFiles,
    format_summary,
    rebuild_report,
    station_twin,
    write_run_report,
)
from sim.scenario import apply_overrides, parse_scenario
from sim.scenario.loader import read_yaml_file

from .conftest import SMOKE

PNGS = (
    "throughput.png",
    "latency_percentiles.png",
    "latency_by_page.png",
    "stations.png",
    "cache_hit_rate.png",
    "funnel.png",
    "order_states.png",
    "payment_outcomes.png",
)


class Page(HTMLParser):
    """Collects the tags, links, images, captions, table rows and text of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.captions: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = tuple((k, v) for k, v in attrs if k != "src")
        self.tags.append((tag, attrs))
        attrib = dict(attrs)
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)
        if tag == "img":
            self.images.append(attrib)
        if tag == "a":
            self.links.append(attrib["href"])
        if tag == "table":
            self._table = attrib.get("class")
            self.rows[self._table] = []
        if tag == "tr" and self._table is not None:
            self._row = []

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()
        if tag == "tr" and self._row is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self.open and self.open[-1] == "figcaption":
            self.captions.append(data)
        if self._row is not None and self.open[-1] in ("td", "th"):
            self._row.append(data)

    def all_text(self) -> str:
        return "".join(self.text)


def read_page(files: ReportFiles) -> Page:
    return Page(files.html.read_text(encoding="utf-8"))


def summary_of(files: ReportFiles) -> dict:
    return json.loads(files.summary.read_text(encoding="utf-8"))


def csv(files: ReportFiles, name: str, replication: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(files.folder / f"{name}.csv")
    return frame[frame["replication"] == replication].drop(columns="replication")


# --- files ------------------------------------------------------------------------------------
def test_the_folder_holds_summary_csvs_pngs_and_the_page(report_one):
    names = sorted(p.name for p in report_one.folder.iterdir())
    expected = ["report.html", "summary.json", *PNGS, *[f"{n}.csv" for n in FRAME_NAMES]]
    assert names == sorted(expected)
    assert [p.name for p in report_one.pngs] == list(PNGS)
    assert [p.name for p in report_one.csvs] == [f"{n}.csv" for n in FRAME_NAMES]
    assert report_one.html == report_one.folder / "report.html"
    for png in report_one.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pngs_are_drawn_at_100_dpi(report_one):
    data = (report_one.folder / "throughput.png").read_bytes()
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 400)  # 9 x 4 inches at 100 dpi


def test_every_frame_is_written_with_a_replication_column(report_one, one_run):
    for name in ("requests", "sessions", "payments", "orders", "stations", "station_stats"):
        frame = pd.read_csv(report_one.folder / f"{name}.csv")
        assert frame.columns[0] == "replication"
        assert frame.columns[1:].tolist() == one_run[0].frames[name].columns.tolist()
        assert len(frame) == len(one_run[0].frames[name])
        assert set(frame["replication"]) <= {0}


def test_fault_windows_are_cut_at_the_horizon(report_one):
    faults = csv(report_one, "faults")
    assert faults.to_dict("records") == [
        {"kind": "outage", "target": "payments.card-b", "start": 40.0, "end": 70.0},
        {"kind": "cache_flush", "target": "cache", "start": 80.0, "end": 80.0},
        {"kind": "latency_spike", "target": "database", "start": 100.0, "end": 120.0},
    ]


def test_write_needs_an_existing_folder_and_one_scenario(tmp_path, one_run, scenario):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_run_report(one_run, tmp_path / "missing")
    with pytest.raises(ValueError, match="at least one run result"):
        write_run_report([], tmp_path)
    other = type(one_run[0])(
        scenario=scenario.model_copy(update={"name": "other"}),
        seed=1,
        replication=1,
        frames=one_run[0].frames,
        kpis=one_run[0].kpis,
        audit=one_run[0].audit,
        runtime=0.1,
    )
    with pytest.raises(ValueError, match="one scenario"):
        write_run_report([one_run[0], other], tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- summary.json -----------------------------------------------------------------------------
def test_summary_holds_inputs_version_runtime_audit_and_slo(report_one, one_run, scenario):
    summary = summary_of(report_one)
    result = one_run[0]
    assert summary["name"] == "smoke"
    assert summary["description"] == scenario.description
    assert summary["version"] == sim.__version__
    assert summary["seeds"] == [7]
    assert summary["replications"] == [0]
    assert summary["scenario"] == scenario.to_data()
    assert summary["scenario"]["horizon"] == 120.0
    assert summary["horizon"] == 120.0 and summary["warmup"] == 30.0
    assert summary["runtime"]["per_replication"] == [result.runtime]
    assert summary["runtime"]["total_seconds"] == result.runtime
    assert summary["audit"] == {
        "ok": True,
        "replications": [{"replication": 0, "ok": True, "violations": []}],
    }
    assert summary["requests_sampled"] is False
    assert summary["requests_sampling_fraction"] == 1.0
    assert summary["requests_rows"] == len(result.frames["requests"])
    assert summary["station_scv"]["app"] == pytest.approx(0.25)
    assert summary["station_scv"]["database"] == 1.0
    assert summary["station_scv"]["cache"] == 0.0
    assert set(summary["station_scv"]) == {
        "app", "database", "cache", "gateway:card-a", "gateway:card-b", "warehouse:east",
    }  # fmt: skip
    assert "kpis_by_replication" not in summary


def test_summary_slo_verdicts_compare_the_kpis_with_the_objectives(report_one, one_run):
    kpis = one_run[0].kpis
    slo = {v["name"]: v for v in summary_of(report_one)["slo"]}
    page = slo["page_p95"]
    assert (page["kpi"], page["target"], page["comparison"]) == ("latency.p95", 0.1, "<=")
    assert page["value"] == kpis["latency"]["p95"]
    assert page["met"] is (kpis["latency"]["p95"] <= 0.1)
    checkout = slo["checkout_p95"]
    assert checkout["kpi"] == "checkout_latency.p95" and checkout["target"] == 2.0
    assert checkout["value"] == kpis["checkout_latency"]["p95"]
    assert checkout["met"] is (kpis["checkout_latency"]["p95"] <= 2.0)
    payment = slo["payment_success"]
    assert (payment["target"], payment["comparison"]) == (0.9, ">=")
    assert payment["met"] is (kpis["payment_success"] >= 0.9)
    assert page["half_width"] is None and page["interval_straddles_target"] is False


def test_summary_kpis_equal_those_computed_from_the_csvs(report_one):
    summary = summary_of(report_one)
    kpis = summary["kpis"]
    warmup, horizon = summary["warmup"], summary["horizon"]
    requests = csv(report_one, "requests")
    kept = requests[requests["time"] >= warmup]
    assert kpis["throughput"] == len(kept) / (horizon - warmup)
    assert kpis["latency"] == latency_summary(kept["response"])
    for page, rows in kept.groupby("page"):
        assert kpis["latency_by_page"][page] == latency_summary(rows["response"])
    checkout = kept[kept["page"] == CHECKOUT_PAGE]["response"]
    assert kpis["checkout_latency"] == latency_summary(checkout)
    hits, misses = kept["cache_hits"].sum(), kept["cache_misses"].sum()
    assert kpis["cache_hit_rate"] == hits / (hits + misses)
    assert kpis["utilisation"] == station_utilisation(csv(report_one, "stations"), warmup)
    orders = csv(report_one, "orders")
    assert kpis["orders_paid"] == int(orders["paid"].sum())
    assert kpis["orders_by_state"] == orders["status"].value_counts().to_dict()
    assert kpis["page_views"] == len(requests)
    sessions = csv(report_one, "sessions")
    assert kpis["sessions"] == len(sessions)
    after = sessions[sessions["start"] >= warmup]
    assert kpis["conversion"] == (after["orders"] > 0).mean()
    payments = csv(report_one, "payments").drop_duplicates("order_id", keep="last")
    assert kpis["payment_outcomes"] == payments["outcome"].value_counts().to_dict()


def test_derived_series_come_from_every_request(report_one, one_run):
    series = csv(report_one, "request_series")
    requests = one_run[0].frames["requests"]
    assert series["requests"].sum() == len(requests)
    assert series["start"].tolist() == [0.0, 60.0]
    funnel = csv(report_one, "funnel")
    assert funnel["count"].iloc[0] == len(
        set(requests["session"]) | set(one_run[0].frames["sessions"]["session"])
    )


# --- report.html ------------------------------------------------------------------------------
def test_the_page_parses_and_embeds_every_png_it_references(report_one):
    page = read_page(report_one)
    assert page.open == []  # every tag closed
    html = report_one.html.read_text(encoding="utf-8")
    assert [img["data-file"] for img in page.images] == list(PNGS)
    for png in report_one.pngs:
        assert png.name in page.links
        embedded = html.split(f'data-file="{png.name}"')[0].rsplit("base64,", 1)[1]
        assert base64.b64decode(embedded.split('"')[0]) == png.read_bytes()
    for link in page.links:
        assert (report_one.folder / link).is_file()


def test_the_page_is_self_contained(report_one):
    html = report_one.html.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html
    assert html.count("src=") == html.count('src="data:image/png;base64,') == len(PNGS)


def test_the_page_shows_scenario_kpis_slo_verdicts_audit_and_captions(report_one, one_run):
    page = read_page(report_one)
    text = page.all_text()
    assert "Scenario: smoke" in text
    assert "A few minutes of a tiny shop, for tests and a first look" in text
    assert "Audit ok" in text
    assert len(page.captions) == len(PNGS) and all(c.strip() for c in page.captions)
    rows = {row[0]: row[1:] for row in page.rows["kpis"][1:]}
    kpis = one_run[0].kpis
    p95 = rows["Page response p95"]
    assert p95[0] == f"{kpis['latency']['p95'] * 1000:,.1f} ms"
    assert p95[1] == "<= 100.0 ms"
    assert p95[2] == ("met" if kpis["latency"]["p95"] <= 0.1 else "missed")
    assert rows["Checkout response p95"][1] == "<= 2,000.0 ms"
    assert rows["Payment success (paid / checkouts)"][1] == ">= 90.0 %"
    assert rows["Throughput (page requests)"][0] == f"{kpis['throughput']:,.1f}/s"
    assert rows["Revenue (ledger balance, currency units)"][0] == (
        f"{kpis['revenue_cents'] / 100:,.2f}"
    )
    assert "Utilisation: app" in rows
    pages = {row[0] for row in page.rows["pages"][1:]}
    assert pages == set(kpis["latency_by_page"])
    assert "requests.csv holds every request" in text


def test_the_station_table_sets_the_twin_beside_the_simulation(report_one, one_run):
    page = read_page(report_one)
    head, *rows = page.rows["twin"]
    assert head[0] == "station" and head[-1] == "twin model"
    stats = one_run[0].frames["station_stats"]
    assert [row[0] for row in rows] == stats["name"].tolist()
    models = {row[0]: row[-1] for row in rows}
    assert models["database"] == "M/M/c (Erlang C)"
    assert models["app"] == "M/G/c (Allen-Cunneen approx., scv 0.25)"
    assert models["cache"] == "M/G/c (Allen-Cunneen approx., scv 0)"


def test_the_page_names_a_failed_audit(tmp_path, one_run):
    summary = summary_of_result(one_run)
    summary["audit"] = {
        "ok": False,
        "replications": [{"replication": 0, "ok": False, "violations": ["negative stock: SKU-1"]}],
    }
    del summary["kpis"]["registrations"]
    html = report._html(summary, station_twin(pd.DataFrame(), {}), [])
    page = Page(html)
    assert "Registrations" not in [row[0] for row in page.rows["kpis"]]
    assert "Declines" in [row[0] for row in page.rows["kpis"]]
    assert "Audit FAILED" in page.all_text()
    assert "replication 0: negative stock: SKU-1" in page.all_text()
    assert "FAILED (1 violations" in report._text_summary(summary)


def summary_of_result(results) -> dict:
    return report._build_summary(results, requests_rows=10, fraction=1.0)


# --- rebuild ----------------------------------------------------------------------------------
def test_rebuild_redraws_the_same_page_from_the_saved_data(report_one, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(report_one.folder, folder)
    original = (folder / "report.html").read_text(encoding="utf-8")
    for png in PNGS:
        (folder / png).unlink()
    (folder / "report.html").unlink()
    files = rebuild_report(folder)
    assert files.html == folder / "report.html"
    assert [p.name for p in files.pngs] == list(PNGS)
    rebuilt = files.html.read_text(encoding="utf-8")
    assert Page(rebuilt).tags == Page(original).tags
    assert Page(rebuilt).all_text() == Page(original).all_text()
    assert rebuilt == original  # the CSVs round-trip exactly, so even the images match


def test_rebuild_needs_the_summary_and_every_csv(report_one, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rebuild_report(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"summary\.json: missing"):
        rebuild_report(tmp_path)
    folder = tmp_path / "copy"
    shutil.copytree(report_one.folder, folder)
    (folder / "orders.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"orders\.csv: missing"):
        rebuild_report(folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["format"] = 99
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="unknown summary format 99"):
        rebuild_report(folder)


def test_a_fault_window_the_engine_did_not_record_is_added(scenario):
    recorded = pd.DataFrame(
        {"kind": ["outage"], "target": ["payments.card-b"], "start": [40.0], "end": [70.0]}
    )
    faults = report._complete_faults(recorded, scenario, 90.0)
    assert faults.to_dict("records") == [
        {"kind": "outage", "target": "payments.card-b", "start": 40.0, "end": 70.0},
        {"kind": "cache_flush", "target": "cache", "start": 80.0, "end": 80.0},
    ]  # the latency spike at 100 s starts after this horizon
    ghost = scenario.model_copy(
        update={
            "faults": (
                report.Scenario.model_validate(
                    {
                        **scenario.to_data(),
                        "faults": [
                            {"ghost_success": "card-a", "share": 0.5, "at": 10, "duration": 500}
                        ],
                    }
                ).faults
            )
        }
    )
    (row,) = report._complete_faults(recorded.iloc[:0], ghost, 120.0).to_dict("records")
    assert row == {
        "kind": "ghost_success",
        "target": "payments.card-a",
        "start": 10.0,
        "end": 120.0,
    }


BREAKDOWN = (
    "faults=[{breakdown: payments.card-a, at: 10s, mtbf: {exponential: {mean: 20s}},"
    " mttr: {exponential: {mean: 5s}}}, {cache_flush: 80s}]"
)


def test_a_breakdown_shows_exactly_its_recorded_outages(tmp_path):
    scenario = parse_scenario(apply_overrides(read_yaml_file(SMOKE), ["horizon=2m", BREAKDOWN]))
    (result,) = run_many(scenario, 1)
    recorded = result.frames["faults"]
    outages = recorded[recorded["kind"] == "breakdown"]
    assert len(outages) >= 2 and (outages["start"] > 10.0).all()  # none at the entry's `at`
    write_run_report([result], tmp_path)
    faults = pd.read_csv(tmp_path / "faults.csv")
    shown = faults[faults["kind"] == "breakdown"]
    assert shown[["target", "start", "end"]].to_dict("records") == (
        outages[["target", "start", "end"]].to_dict("records")
    )
    assert (shown["end"] > shown["start"]).all()
    assert faults[faults["kind"] == "cache_flush"][["start", "end"]].values.tolist() == [
        [80.0, 80.0]
    ]


def test_rebuild_reads_an_empty_csv_as_an_empty_frame(tmp_path):
    for name in FRAME_NAMES:
        (tmp_path / f"{name}.csv").write_text("" if name == "ledger" else "a\n1\n")
    frames = report._read_frames(tmp_path)
    assert frames["ledger"].empty and frames["orders"]["a"].tolist() == [1]


# --- replications -----------------------------------------------------------------------------
def test_replications_give_mean_half_width_and_values(report_three, three_runs):
    summary = summary_of(report_three)
    assert summary["replications"] == [0, 1, 2]
    assert summary["seeds"] == [7, 7, 7]
    kpis = summary["kpis"]
    values = [r.kpis["throughput"] for r in three_runs]
    ci = mean_ci(values)
    assert kpis["throughput"]["values"] == values
    assert kpis["throughput"]["mean"] == pytest.approx(ci.mean)
    assert kpis["throughput"]["half_width"] == pytest.approx(ci.half_width)
    assert kpis["throughput"]["n"] == 3
    p95 = [r.kpis["latency"]["p95"] for r in three_runs]
    assert kpis["latency.p95"]["mean"] == pytest.approx(np.mean(p95))
    assert kpis["utilisation.app.utilisation"]["n"] == 3
    # a count missing from a replication is 0 in its values as in its mean
    flats = [flatten_numeric(r.kpis) for r in three_runs]
    missing = [k for k in kpis if missing_is_zero(k) and any(k not in f for f in flats)]
    assert missing  # the three runs differ in which counts they have
    for key in missing:
        assert None not in kpis[key]["values"], key
        assert kpis[key]["mean"] == pytest.approx(np.mean(kpis[key]["values"])), key
    assert len(summary["kpis_by_replication"]) == 3
    assert summary["kpis_by_replication"][1]["throughput"] == three_runs[1].kpis["throughput"]
    assert len(set(values)) == 3  # the replications differ
    slo = {v["name"]: v for v in summary["slo"]}
    assert slo["page_p95"]["value"] == pytest.approx(np.mean(p95))
    assert slo["page_p95"]["half_width"] == pytest.approx(mean_ci(p95).half_width)
    assert summary["runtime"]["total_seconds"] == pytest.approx(sum(r.runtime for r in three_runs))


def test_replicated_csvs_hold_every_replication(report_three, three_runs):
    requests = pd.read_csv(report_three.folder / "requests.csv")
    assert sorted(set(requests["replication"])) == [0, 1, 2]
    for result in three_runs:
        assert (requests["replication"] == result.replication).sum() == len(
            result.frames["requests"]
        )


def test_replicated_page_shows_mean_plus_minus_half_width(report_three, three_runs):
    page = read_page(report_three)
    head, *rows = page.rows["kpis"]
    assert head[1] == "mean ± 95 % half-width"
    cells = {row[0]: row[1] for row in rows}
    ci = mean_ci([r.kpis["throughput"] for r in three_runs])
    mean = shared.format_value(ci.mean, "rate")
    assert cells["Throughput (page requests)"] == f"{mean} ± {ci.half_width:,.3g}/s"
    assert "±" in cells["Page response p95"]
    text = page.all_text()
    assert "mean over 3 replications" in text
    assert "The plots show replication 0 (seed 7); the tables above cover all 3" in text


def test_replicated_rebuild_matches_the_original(report_three, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(report_three.folder, folder)
    original = (folder / "report.html").read_text(encoding="utf-8")
    assert rebuild_report(folder).html.read_text(encoding="utf-8") == original


# --- sampling ---------------------------------------------------------------------------------
def test_big_request_frames_are_sampled_deterministically(one_run, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "MAX_REQUEST_ROWS", 300)
    total = len(one_run[0].frames["requests"])
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    files = write_run_report(one_run, first)
    write_run_report(one_run, second)
    sample = pd.read_csv(first / "requests.csv")
    assert len(sample) == 300
    assert sample.equals(pd.read_csv(second / "requests.csv"))
    assert sample["time"].is_monotonic_increasing or sample.index.is_monotonic_increasing
    summary = summary_of(files)
    assert summary["requests_sampled"] is True
    assert summary["requests_sampling_fraction"] == 300 / total
    assert summary["requests_rows"] == total
    assert summary["kpis"]["throughput"] == one_run[0].kpis["throughput"]  # from every request
    assert pd.read_csv(first / "request_series.csv")["requests"].sum() == total
    text = read_page(files).all_text()
    assert f"uniform random sample of {300 / total:.2%} of the {total:,} requests" in text
    assert "requests.csv holds a" in format_summary_from(summary)
    # what the command line prints says so too (it summarises the results, not the folder)
    assert format_summary(one_run).splitlines()[-1] == (
        f"  note            requests.csv holds a {300 / total:.1%} sample of {total:,} requests"
    )


def format_summary_from(summary: dict) -> str:
    return report._text_summary(summary)


# --- the station twin -------------------------------------------------------------------------
def stats_row(name, capacity, arrivals, completions, service, **extra):
    row = {
        "name": name,
        "elapsed": 1000.0,
        "capacity": capacity,
        "arrivals": arrivals,
        "starts": completions,
        "completions": completions,
        "total_wait": 0.1 * completions,
        "total_service": service * completions,
        "busy_time": service * completions,
        "queue_time": 5.0,
        "capacity_time": 1000.0 * capacity,
    }
    row.update(extra)
    return row


def test_station_twin_predicts_erlang_c_allen_cunneen_or_unstable():
    stats = pd.DataFrame(
        [
            stats_row("expo", 1, 900, 900, 0.5),
            stats_row("const", 2, 900, 900, 0.5),
            stats_row("full", 1, 2500, 2000, 0.5),
            stats_row("mystery", 1, 900, 900, 0.5),
            stats_row("idle", 1, 0, 0, 0.0),
        ]
    )
    twin = station_twin(stats, {"expo": 1.0, "const": 0.0, "full": 1.0, "idle": 1.0})
    rows = twin.set_index("station")
    expo = rows.loc["expo"]
    assert expo["arrival_rate"] == 0.9 and expo["mean_service"] == 0.5
    assert expo["rho"] == pytest.approx(0.45)
    assert expo["wait_predicted"] == pytest.approx(0.45 / (2.0 - 0.9))  # M/M/1
    assert expo["model"] == "M/M/c (Erlang C)"
    assert expo["wait_simulated"] == pytest.approx(0.1)
    assert expo["queue_simulated"] == pytest.approx(0.005)
    assert expo["queue_predicted"] == pytest.approx(0.9 * 0.45 / 1.1)
    assert expo["utilisation"] == pytest.approx(0.45)
    const = rows.loc["const"]
    assert const["wait_predicted"] == pytest.approx(mgc_wait(0.9, 0.5, 0.0, 2))
    assert const["wait_predicted"] == pytest.approx(mmc(0.9, 2.0, 2).wq / 2)
    assert const["model"] == "M/G/c (Allen-Cunneen approx., scv 0)"
    full = rows.loc["full"]
    assert full["rho"] == pytest.approx(1.25)  # arrivals, not completions: the backlog shows
    assert full["model"] == "unstable (rho >= 1)" and math.isnan(full["wait_predicted"])
    assert rows.loc["mystery", "model"] == "M/M/c (Erlang C); scv unknown, taken as 1"
    assert rows.loc["idle", "model"] == "no traffic"


def test_station_twin_pools_replications():
    stats = pd.DataFrame([stats_row("app", 2, 900, 900, 0.5), stats_row("app", 2, 1100, 1100, 0.5)])
    (row,) = station_twin(stats, {"app": 1.0}).itertuples()
    assert row.arrival_rate == pytest.approx(1.0)
    assert row.wait_predicted == pytest.approx(mmc(1.0, 2.0, 2).wq)
    assert station_twin(pd.DataFrame(), {}).empty


# --- the text summary -------------------------------------------------------------------------
def test_format_summary_of_one_run(one_run):
    text = format_summary(one_run)
    kpis = one_run[0].kpis
    lines = text.splitlines()
    assert lines[0].startswith("smoke: 1 replication of 2 min simulated (seed 7)")
    assert len(lines) <= 25
    assert f"p95 {kpis['latency']['p95'] * 1000:,.1f} ms" in text
    assert f"p99 {kpis['latency']['p99'] * 1000:,.1f} ms" in text
    assert f"{kpis['cache_hit_rate'] * 100:.1f} %" in text
    assert f"revenue         {kpis['revenue_cents'] / 100:,.2f}" in text
    for station in kpis["utilisation"]:
        assert station in text
    page_verdict = "MET" if kpis["latency"]["p95"] <= 0.1 else "MISSED"
    assert any(
        line.startswith("  SLO page response p95") and line.endswith(page_verdict) for line in lines
    )
    assert "audit           ok" in text
    assert "±" not in text


def test_format_summary_of_replications(three_runs):
    text = format_summary(three_runs)
    ci = mean_ci([r.kpis["throughput"] for r in three_runs])
    assert text.splitlines()[0].startswith("smoke: 3 replications")
    assert "mean ± 95 % half-width" in text.splitlines()[0]
    assert f"{shared.format_value(ci.mean, 'rate')} ± {ci.half_width:,.3g}/s" in text
    with pytest.raises(ValueError, match="at least one"):
        format_summary([])


def test_slo_without_data_is_neither_met_nor_missed(scenario):
    view = {"latency.p95": report._Stat(0.08, 0.03, 3)}
    verdicts = {v["name"]: v for v in report._slo_verdicts(scenario, view)}
    assert verdicts["payment_success"]["met"] is None
    assert verdicts["payment_success"]["n"] == 0 and verdicts["page_p95"]["n"] == 3
    assert report._slo_word(verdicts["payment_success"]) == "no data"
    assert verdicts["page_p95"]["met"] is True
    assert verdicts["page_p95"]["interval_straddles_target"] is True  # 0.05..0.11 holds 0.1


def test_report_formats():
    assert report._fmt_stat(None, "ms", True) == "n/a"
    assert report._fmt_stat(report._Stat(1.0, float("nan"), 1), "count", True) == "1 (n=1)"
    assert report._fmt_stat(report._Stat(0.0123, 0.002, 3), "ms", True) == "12.3 ms ± 2.0 ms"
    assert report._fmt_queue(float("nan")) == "n/a" and report._fmt_queue(2e-7) == "< 0.0001"
    assert report._fmt_queue(0.0) == "0" and report._fmt_queue(1.23456) == "1.23"


def test_the_run_report_uses_the_shared_pieces():
    assert report.ReportFiles is shared.ReportFiles and report.PLOT_DPI == shared.PLOT_DPI


def test_report_files_are_paths(report_one):
    assert isinstance(report_one.folder, Path)
    assert report_one.summary.name == "summary.json"


def test_the_warm_up_is_stated_as_applied():
    rows = {"warmup": 30.0, "interval": 60.0, "scenario": {"metrics": {"requests": "rows"}}}
    assert report._warmup_words(rows) == (
        "30 s; station utilisation from the first interval after it, 60 s"
    )
    aggregate = {**rows, "scenario": {"metrics": {"requests": "aggregate"}}}
    assert report._warmup_words(aggregate) == (
        "30 s; request figures and station utilisation from the first interval after it, 60 s"
    )
    assert report._warmup_words({"warmup": 60.0, "warmups": [60.0], "interval": 60.0}) == "60 s"
    windows = {**aggregate, "warmup": 61.0, "interval": 2.0, "histogram_interval": 4.0}
    assert report._warmup_words(windows) == (
        "61 s; request figures and station utilisation from the first interval after it, 62 s; "
        "percentiles from the first histogram window after it, 64 s"
    )
    aligned = {**windows, "warmup": 64.0}  # a window start already: nothing to add
    assert report._warmup_words(aligned) == "64 s"
    assert report._warmup_words({**windows, "scenario": rows["scenario"]}) == (
        "61 s; station utilisation from the first interval after it, 62 s"  # rows: no windows
    )
    auto = {**rows, "warmup": 57.7, "warmups": [57.7, 145.7, 146.6], "interval": 10.0}
    assert report._warmup_words(auto) == (
        "57.7 s to 2.44 min (per replication); station utilisation from the first interval "
        "after it, 60 s to 2.5 min"
    )
