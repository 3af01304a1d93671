"""Command-line entry point: ``python run_sim.py --help``."""

from sim.cli import main

raise SystemExit(main())
