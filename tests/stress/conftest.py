"""Print (and optionally save) the reliability tally at the end of the session."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.stress import tally


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    data = tally.snapshot()
    if not data["counts"] and not data["notes"]:
        return
    terminalreporter.section("reliability tally")
    for name, value in {**data["counts"], **data["notes"]}.items():
        terminalreporter.write_line(f"{name:40} {value}")
    target = os.environ.get("RELIABILITY_TALLY")
    if target:
        Path(target).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
