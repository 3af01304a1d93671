"""Command-line entry point: ``python run_sim.py --help``."""

from sim.cli import main

if __name__ == "__main__":  # worker processes re-import this file; only the parent runs
    raise SystemExit(main())
