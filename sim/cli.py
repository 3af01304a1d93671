"""The command line: argparse subcommands; the only place that prints, exits or picks folders.

Exit status: 0 done, 2 bad input (one clear message, nothing written), 3 the end-of-run
audit found a broken rule (the report is written and names it), 4 ``plan`` found no capacity
in its range that meets every objective (the report is written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sim import __version__
from sim.analysis.compare import (
    DEFAULT_MAX_REPLICATIONS,
    DEFAULT_PRECISION_KPIS,
    UnknownKpi,
    compare,
    parse_vary,
    run_many,
    scenario_variants,
)
from sim.analysis.executors import EXECUTORS, Executor, ExecutorError, make_executor
from sim.analysis.plan import (
    DEFAULT_UPPER,
    Evaluation,
    Plan,
    Slo,
    capacity_value,
    parse_slo,
    plan,
    scenario_slos,
)
from sim.engine.runner import RunResult
from sim.reporting.compare_report import (
    format_comparison,
    format_plan,
    write_comparison_report,
    write_plan_report,
)
from sim.reporting.report import format_summary, rebuild_report, write_run_report
from sim.scenario import Scenario, ScenarioError, apply_overrides, load_scenario, parse_scenario
from sim.scenario.schema import MAX_REPLICATIONS
from sim.services.sqlite_store import (
    StorageError,
    StoreInUse,
    ensure_free,
    is_store_file,
    replica_path,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = PROJECT_ROOT / "scenarios"
"""The shipped scenario library."""
DEFAULT_SCENARIO = SCENARIOS / "baseline.yaml"
"""What ``python run_sim.py`` runs with no arguments."""
REPORTS = Path("reports")
"""Where run folders go unless ``--out`` says otherwise (relative to the working directory)."""

EXIT_OK, EXIT_BAD_INPUT, EXIT_AUDIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
EXIT_NO_PLAN = 4
"""``plan`` found no capacity in its range meeting every objective (the report is written)."""

WHATIF_REPLICATIONS = 5
"""``compare`` and ``plan`` run at least this many replications unless told otherwise."""


class UsageError(Exception):
    """A problem with the command line itself (a missing folder, a bad option value)."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python run_sim.py``."""
    parser = argparse.ArgumentParser(
        prog="run_sim.py",
        description=(
            "Simulate an e-commerce shop over time and report on its capacity. "
            "With no arguments: run scenarios/baseline.yaml and write its report."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ecommerce-sim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="simulate a scenario and write its report")
    run.add_argument("scenario", type=Path, help="a scenario YAML file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key before validation, e.g. --set stations.app.servers=24",
    )
    run.add_argument("--seed", type=int, help="the root seed (default: the scenario's)")
    run.add_argument("--replications", type=int, help="independent replications")
    run.add_argument("--out", type=Path, help="the report folder (default: reports/NAME/RUN-ID)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    _add_executor_options(run, default="inprocess")
    run.set_defaults(handler=cmd_run)
    _add_compare_parser(commands)
    _add_plan_parser(commands)

    validate = commands.add_parser("validate", help="check scenario files and list every problem")
    validate.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO")
    validate.set_defaults(handler=cmd_validate)

    listing = commands.add_parser("list", help="the scenarios in scenarios/ with descriptions")
    listing.set_defaults(handler=cmd_list)

    report = commands.add_parser("report", help="rebuild a saved run's report without simulating")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:
        args_list = ["run", str(DEFAULT_SCENARIO)]
    args = build_parser().parse_args(args_list)
    if getattr(args, "handler", None) is None:
        build_parser().print_help()
        return EXIT_OK
    try:
        return int(args.handler(args))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UsageError, ExecutorError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- run -----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """Simulate a scenario (with replications) and write its report folder."""
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    overrides = [*args.overrides, *([f"seed={args.seed}"] if args.seed is not None else [])]
    scenario = load_scenario(args.scenario, overrides)  # the saved scenario names the seed used
    replications = args.replications if args.replications is not None else scenario.replications
    if not 1 <= replications <= MAX_REPLICATIONS:
        raise UsageError(f"--replications must be 1 to {MAX_REPLICATIONS:,}, got {replications:,}")
    seed = scenario.seed
    final = args.out if args.out is not None else _run_folder(scenario, seed)
    target = _out_is_usable(final)
    _storage_is_usable(args.scenario, scenario, replications)
    with (
        _open_executor(args, replications, only_if_asked=True) as executor,
        _progress(scenario, replications, quiet=args.quiet) as progress,
    ):
        results = run_many(scenario, replications, seed=seed, progress=progress, executor=executor)
    with _staged(target) as staging:
        write_run_report(results, staging)
    if not args.quiet:
        print(format_summary(results))
        print(f"report: {final / 'report.html'}")
    return _audit_status(results)


def _audit_status(results: list[RunResult]) -> int:
    failed = [r for r in results if not r.audit.ok]
    for result in failed:
        print(
            f"AUDIT FAILED (replication {result.replication}): "
            + "; ".join(result.audit.violations[:20]),
            file=sys.stderr,
        )
    return EXIT_AUDIT_FAILED if failed else EXIT_OK


def _run_folder(scenario: Scenario, seed: int) -> Path:
    return _new_folder(scenario.name, "", seed)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FOLDER_NAME_MAX = 100


def _new_folder(name: str, kind: str, seed: int) -> Path:
    """Return ``reports/<name>/[<kind>-]<stamp>-seed<seed>``, numbered if it exists already.

    The scenario's name is free text; its folder keeps letters, digits, ``.``, ``-`` and
    ``_`` (each run of anything else becomes one ``_``), drops leading and trailing dots and
    underscores, keeps at most 100 characters, and is ``scenario`` if nothing is left: no
    name can reach outside ``reports/`` (``..``, ``/tmp/x``), nest folders or make an
    invalid file name.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder_name = _UNSAFE.sub("_", name).strip("._")[:_FOLDER_NAME_MAX] or "scenario"
    base = REPORTS / folder_name / f"{kind + '-' if kind else ''}{stamp}-seed{seed}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """Yield a fresh staging folder; move it to ``final`` only if the block succeeds.

    A failed or interrupted write leaves no half-written folder, and an earlier report at
    ``final`` is replaced only once the new one is complete.
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise UsageError(f"{final}: cannot write the report there: {exc.strerror}") from None
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)


@contextmanager
def _progress(
    scenario: Scenario, replications: int, *, quiet: bool
) -> Iterator[Callable[[int, float, float], None] | None]:
    """Yield a progress callback drawing a bar on a terminal, or None when quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    horizon = scenario.horizon
    total = replications * horizon
    with tqdm(
        total=round(total / 60.0, 1),
        unit="sim-min",
        desc=f"{scenario.name} x{replications}",
        file=sys.stderr,
        leave=False,
    ) as bar:

        def update(replication: int, now: float, _horizon: float) -> None:
            bar.n = round((replication * horizon + now) / 60.0, 1)
            bar.set_postfix_str(f"replication {replication + 1}/{replications}")
            bar.refresh()

        yield update


# --- validate, list, report ---------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    """Check scenario files; print each problem with its file and key path."""
    status = EXIT_OK
    for path in args.scenarios:
        try:
            load_scenario(path)
        except ScenarioError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_BAD_INPUT
        else:
            print(f"{path}: ok")
    return status


def cmd_list(args: argparse.Namespace) -> int:
    """Print the shipped scenarios with their one-line descriptions."""
    for path in sorted(SCENARIOS.glob("*.yaml")):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            print(f"{path.name:24} (invalid: {str(exc).splitlines()[0]})")
            continue
        description = scenario.description.strip().splitlines()
        print(f"{path.name:24} {description[0] if description else ''}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a saved run's plots and report.html from its data."""
    folder: Path = args.run_dir
    if not (folder / "summary.json").is_file():
        raise UsageError(f"{folder}: not a run folder (no summary.json)")
    # The full path of the folder a link points to: the rebuild is staged beside the folder.
    with _staged(folder.resolve()) as staging:  # swapped in only when complete
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        try:
            files = rebuild_report(staging)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{folder / 'summary.json'}: not valid JSON: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # a missing CSV or column, a summary missing keys or of the wrong shape; named as
            # the user's folder, not the staging copy
            what = str(exc).replace(str(staging), str(folder))
            if isinstance(exc, KeyError):
                what = f"missing {what}"
            raise UsageError(f"{folder}: cannot rebuild the report: {what}") from None
    print(f"report: {folder / files.html.name}")
    return EXIT_OK


# --- executors (run, compare, plan) ---------------------------------------------------------------
def _add_executor_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes for the local pool (default: the CPUs available)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help=f"where runs execute (default: {default})",
    )
    parser.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="a running Dask scheduler (implies --executor dask; needs the cluster extra)",
    )


@contextmanager
def _open_executor(
    args: argparse.Namespace, runs: int, *, only_if_asked: bool = False
) -> Iterator[Executor | None]:
    """Yield the executor the options ask for (None for ``run`` without any), then close it."""
    if only_if_asked and args.jobs is None and args.executor is None and args.scheduler is None:
        yield None
        return
    executor = make_executor(args.executor, jobs=args.jobs, scheduler=args.scheduler, runs=runs)
    try:
        yield executor
    finally:
        executor.close()


@contextmanager
def _count_progress(desc: str, *, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing a bar of runs, or None when quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=0, unit="run", desc=desc, file=sys.stderr, leave=False) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield update


def _add_replication_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of every scenario before validation",
    )
    parser.add_argument("--seed", type=int, help="the root seed (default: the first scenario's)")
    parser.add_argument(
        "--replications",
        type=int,
        help=f"replications per variant (default: the scenario's, at least {WHATIF_REPLICATIONS})",
    )
    parser.add_argument(
        "--precision",
        type=float,
        metavar="P",
        help="add replications until each watched KPI's 95 %% half-width is within P of its mean "
        "(e.g. 0.05)",
    )
    parser.add_argument(
        "--max-replications",
        type=int,
        default=DEFAULT_MAX_REPLICATIONS,
        metavar="N",
        help=f"the cap under --precision (default {DEFAULT_MAX_REPLICATIONS})",
    )
    parser.add_argument("--out", type=Path, help="the report folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    _add_executor_options(parser, default="a process pool of --jobs processes")


def _add_compare_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
        help="what-if variants with common random numbers and paired differences",
        description=(
            "Run what-if variants with common random numbers: one scenario with --vary (one "
            "variant per value, the grid of several --vary), or several scenario files. The first "
            "variant is the baseline of the paired differences."
        ),
    )
    parser.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one variant per value, e.g. --vary stations.app.servers=8,12,16,24",
    )
    parser.add_argument(
        "--precision-kpi",
        dest="precision_kpis",
        action="append",
        metavar="KPI",
        help="a KPI --precision watches (repeatable; default: "
        + ", ".join(DEFAULT_PRECISION_KPIS)
        + ")",
    )
    _add_replication_options(parser)
    parser.set_defaults(handler=cmd_compare)


def _add_plan_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "plan",
        help="the smallest capacity that meets every SLO with 95 %% confidence",
        description=(
            "Find the smallest value of an integer capacity (--size) whose every objective "
            "(--slo) is met with 95 %% confidence, by a search seeded by the analytic twin."
        ),
    )
    parser.add_argument("scenario", type=Path, metavar="SCENARIO")
    parser.add_argument(
        "--size",
        required=True,
        metavar="KEY",
        help="the capacity to size, e.g. stations.app.servers or stations.database.pool",
    )
    parser.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="NAME<=VALUE",
        help="an objective, e.g. page_p95<=100ms, checkout_p95<=2s, payment_success>=0.97, "
        "app_wait<=5ms (default: the scenario's slo section)",
    )
    parser.add_argument("--min", dest="lower", type=int, default=1, help="smallest value to try")
    parser.add_argument(
        "--max",
        dest="upper",
        type=int,
        default=DEFAULT_UPPER,
        help=f"largest value to try (default {DEFAULT_UPPER})",
    )
    _add_replication_options(parser)
    parser.set_defaults(handler=cmd_plan)


def _replication_settings(args: argparse.Namespace, scenario: Scenario) -> tuple[int, int]:
    """Check the shared options; return (replications, seed)."""
    replications = (
        args.replications
        if args.replications is not None
        else max(scenario.replications, WHATIF_REPLICATIONS)
    )
    if replications < 2:
        raise UsageError(f"--replications must be >= 2 for a 95 % interval, got {replications}")
    if replications > MAX_REPLICATIONS:
        raise UsageError(
            f"--replications must be at most {MAX_REPLICATIONS:,}, got {replications:,}"
        )
    if args.precision is not None:
        if not 0.0 < args.precision < 1.0:
            raise UsageError(f"--precision must be in (0, 1), e.g. 0.05; got {args.precision}")
        if args.max_replications > MAX_REPLICATIONS:
            raise UsageError(
                f"--max-replications must be at most {MAX_REPLICATIONS:,}, "
                f"got {args.max_replications:,}"
            )
        if args.max_replications < replications:
            raise UsageError(
                f"--max-replications ({args.max_replications}) must be >= --replications "
                f"({replications})"
            )
    seed = scenario.seed if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    return replications, seed


def _storage_is_usable(source: Path | str, scenario: Scenario, replications: int) -> None:
    """Refuse, before anything runs, a ``storage.path`` whose file is not a store of ours.

    A run replaces a store file left by an earlier run, never another file, and never one
    that another run is using.
    """
    file = scenario.storage.file
    if file is None:
        return
    folder = Path(file).parent
    if not folder.is_dir():
        raise ScenarioError(
            str(source), [("storage.path", f"the folder {folder} does not exist; create it first")]
        )
    for replication in range(replications):
        target = replica_path(file, replication)
        if target.exists() and not is_store_file(target):
            raise ScenarioError(
                str(source),
                [
                    (
                        "storage.path",
                        f"{target} exists and is not an ecommerce-sim store; "
                        "refusing to overwrite it",
                    )
                ],
            )
        try:
            ensure_free(target)
        except StoreInUse as exc:
            raise ScenarioError(str(source), [("storage.path", str(exc))]) from None


def _out_is_usable(final: Path) -> Path:
    """Return the output folder as a full path; refuse, before anything runs, a bad one.

    Refused: a folder that cannot be written or replaced. An existing folder is replaced
    only if it holds an earlier report (its summary.json): ``--out ~`` must never wipe a
    user's files. The path is resolved (``.`` becomes the current folder's full path, a
    symbolic link the folder it points to), since the report is written beside it and then
    moved into place.
    """
    given, final = final, final.resolve()
    if final.parent == final:
        raise UsageError(f"--out {given}: the root folder cannot be a report folder")
    if final.exists():
        if not final.is_dir():
            raise UsageError(f"--out {given}: exists and is not a folder")
        if any(final.iterdir()) and not (final / "summary.json").is_file():
            raise UsageError(
                f"--out {given}: exists and is not a report folder; refusing to overwrite it"
            )
    ancestor = final.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"--out {given}: {ancestor} is a file, not a folder")
    try:  # the report is staged in a folder beside the final one: try making one now
        os.rmdir(tempfile.mkdtemp(prefix=".ecommerce-sim-check.", dir=ancestor))
    except OSError as exc:
        raise UsageError(f"--out {given}: cannot write in {ancestor}: {exc.strerror}") from None
    return final


# --- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    """Run what-if variants with common random numbers and write the comparison's folder."""
    try:
        vary = [parse_vary(text) for text in args.vary]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(args.scenarios) == 1 and not vary:
        raise UsageError(
            "compare needs --vary KEY=V1,V2,... or two or more scenario files to compare"
        )
    try:
        variants = scenario_variants(args.scenarios, vary, args.overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(variants) < 2:
        raise UsageError(
            f"compare needs at least two variants, got one ({variants[0].label}); "
            "give --vary two or more values"
        )
    replications, seed = _replication_settings(args, variants[0].scenario)
    first = variants[0].scenario
    final = args.out if args.out is not None else _new_folder(first.name, "compare", seed)
    target = _out_is_usable(final)
    for variant in variants:
        _storage_is_usable(variant.label, variant.scenario, replications)
    started = time.perf_counter()
    runs = len(variants) * replications
    with (
        _open_executor(args, runs) as executor,
        _count_progress(f"compare x{len(variants)}", quiet=args.quiet) as progress,
    ):
        try:
            comparison = compare(
                variants,
                replications,
                seed=seed,
                executor=executor,
                precision=args.precision,
                precision_kpis=args.precision_kpis or DEFAULT_PRECISION_KPIS,
                max_replications=args.max_replications,
                progress=progress,
            )
        except UnknownKpi as exc:
            raise UsageError(str(exc)) from None
    wall = time.perf_counter() - started
    with _staged(target) as staging:
        write_comparison_report(comparison, staging, wall_seconds=wall)
    if not args.quiet:
        print(format_comparison(comparison))
        print(f"report: {final / 'report.html'}")
    return _whatif_audit(comparison.violations())


def _whatif_audit(violations: list[tuple[str, int, str]]) -> int:
    for label, replication, text in violations[:20]:
        print(f"AUDIT FAILED ({label}, replication {replication}): {text}", file=sys.stderr)
    return EXIT_AUDIT_FAILED if violations else EXIT_OK


# --- plan ----------------------------------------------------------------------------------------
def _check_bounds(source: Path, scenario: Scenario, parameter: str, lower: int, upper: int) -> None:
    """Refuse search bounds the scenario cannot take (each is tried as the capacity)."""
    if not 1 <= lower <= upper:
        raise UsageError(f"need 1 <= --min <= --max, got --min {lower} --max {upper}")
    data = scenario.to_data()
    for option, value in (("--min", lower), ("--max", upper)):
        try:
            parse_scenario(apply_overrides(data, {parameter: value}), str(source))
        except ScenarioError as exc:
            raise UsageError(f"{option} {value}: {exc}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    """Search for the smallest capacity meeting every SLO and write the plan's folder."""
    scenario = load_scenario(args.scenario, args.overrides)
    try:
        slos: list[Slo] = [parse_slo(text) for text in args.slo] or scenario_slos(scenario)
        capacity_value(scenario, args.size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = [s.name for s in slos]
    if len(set(names)) != len(names):
        raise UsageError(f"--slo names {sorted(n for n in names if names.count(n) > 1)[0]} twice")
    _check_bounds(args.scenario, scenario, args.size, args.lower, args.upper)
    replications, seed = _replication_settings(args, scenario)
    final = args.out if args.out is not None else _new_folder(scenario.name, "plan", seed)
    target = _out_is_usable(final)
    _storage_is_usable(args.scenario, scenario, replications)
    started = time.perf_counter()

    def report(evaluation: Evaluation) -> None:
        if not args.quiet and sys.stderr.isatty():  # progress: on a terminal only
            from tqdm import tqdm

            verdict = "met" if evaluation.all_met else "not met"
            # tqdm.write prints above the progress bar instead of into its line
            tqdm.write(f"  {args.size}={evaluation.capacity}: {verdict}", file=sys.stderr)

    with (
        _open_executor(args, replications) as executor,
        _count_progress(f"plan {args.size}", quiet=args.quiet) as progress,
    ):
        try:
            result: Plan = plan(
                scenario,
                args.size,
                slos,
                replications,
                seed=seed,
                executor=executor,
                lower=args.lower,
                upper=args.upper,
                precision=args.precision,
                max_replications=args.max_replications,
                progress=progress,
                on_evaluation=report,
            )
        except UnknownKpi as exc:
            raise UsageError(str(exc)) from None
    wall = time.perf_counter() - started
    with _staged(target) as staging:
        write_plan_report(result, staging, wall_seconds=wall)
    if not args.quiet:
        print(format_plan(result))
        print(f"report: {final / 'report.html'}")
    violations = [
        (f"{args.size}={e.capacity}", s.replication, v)
        for e in result.evaluations
        for s in e.summaries
        for v in s.violations
    ]
    status = _whatif_audit(violations)
    if status == EXIT_OK and result.answer is None:
        return EXIT_NO_PLAN
    return status
