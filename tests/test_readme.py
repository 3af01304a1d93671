"""The README's examples run and print what it says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def run_block(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    return out.getvalue().splitlines()


def test_the_checkout_example_runs_and_prints_what_the_comments_say():
    [block] = [b for b in python_blocks() if "shopping.checkout(" in b]
    lines = run_block(block)
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


def test_the_python_api_example_runs(monkeypatch):
    monkeypatch.chdir(README.parent)
    [block] = [b for b in python_blocks() if "from sim import load_scenario, run" in b]
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["result"].audit.ok
    assert namespace["scenario"].stations.app.servers == 2
