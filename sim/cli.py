"""The command line: argparse subcommands; the only place that prints, exits or picks folders."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sim import __version__


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python run_sim.py``."""
    parser = argparse.ArgumentParser(
        prog="run_sim.py",
        description="Simulate an e-commerce shop over time and report on its capacity.",
    )
    parser.add_argument("--version", action="version", version=f"ecommerce-sim {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    build_parser().parse_args(argv)
    print("ecommerce-sim: the simulation engine is not built yet; the domain core is.", file=sys.stderr)
    return 0
