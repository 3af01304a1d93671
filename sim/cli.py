"""The command line: argparse subcommands; the only place that prints, exits or picks folders.

Exit status: 0 done, 2 bad input (one clear message, nothing written), 3 the end-of-run
audit found a broken rule (the report is written and names it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sim import __version__
from sim.analysis.compare import run_many
from sim.engine.runner import RunResult
from sim.reporting.report import format_summary, rebuild_report, write_run_report
from sim.scenario import Scenario, ScenarioError, load_scenario

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = PROJECT_ROOT / "scenarios"
"""The shipped scenario library."""
DEFAULT_SCENARIO = SCENARIOS / "baseline.yaml"
"""What ``python run_sim.py`` runs with no arguments."""
REPORTS = Path("reports")
"""Where run folders go unless ``--out`` says otherwise (relative to the working directory)."""

EXIT_OK, EXIT_BAD_INPUT, EXIT_AUDIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130


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
    run.set_defaults(handler=cmd_run)

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
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- run -----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """Simulate a scenario (with replications) and write its report folder."""
    scenario = load_scenario(args.scenario, args.overrides)
    replications = args.replications if args.replications is not None else scenario.replications
    if replications < 1:
        raise UsageError(f"--replications must be >= 1, got {replications}")
    seed = scenario.seed if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    final = args.out if args.out is not None else _run_folder(scenario, seed)
    with _progress(scenario, replications, quiet=args.quiet) as progress:
        results = run_many(scenario, replications, seed=seed, progress=progress)
    with _staged(final) as staging:
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
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = REPORTS / scenario.name / f"{stamp}-seed{seed}"
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
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
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
    files = rebuild_report(folder)
    print(f"report: {files.html}")
    return EXIT_OK
