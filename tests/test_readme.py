"""The README's examples run and print what it says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_checkout_example_runs_and_prints_what_the_comments_say():
    blocks = python_blocks()
    assert blocks, "the README shows no Python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "processing 48.17 USD"
    assert lines[1] == "[('charge', '48.17 USD')]"


def test_the_readme_first_screen_has_exactly_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first = text.split("---", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", first, flags=re.S)
    assert len(commands) == 1
    lines = [line for line in commands[0].splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].startswith('python -m pip install -e ".[dev]" && python run_sim.py')
    assert lines[1].startswith("python -m pytest")
