"""Print (and optionally save) the reliability tally at the end of the session (``-n 0``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.stress import tally


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    data = tally.snapshot()
    if not data["counts"] and not data["notes"]:
        if os.environ.get("RELIABILITY_TALLY") and getattr(config.option, "numprocesses", None):
            terminalreporter.write_line(
                "reliability tally: the tests ran in xdist workers, whose counts do not reach "
                "this process; run with -n 0 to collect it"
            )
        return
    terminalreporter.section("reliability tally")
    for name, value in {**data["counts"], **data["notes"]}.items():
        terminalreporter.write_line(f"{name:40} {value}")
    target = os.environ.get("RELIABILITY_TALLY")
    if target:
        Path(target).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
