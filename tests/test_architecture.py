"""The dependency rule, checked on every test run (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "sim"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "allowed_sim"),
    [("domain", ("sim.domain",)), ("services", ("sim.domain", "sim.services"))],
)
def test_core_imports_only_the_standard_library(package: str, allowed_sim: tuple[str, ...]):
    offenders = []
    files = sorted((SIM / package).rglob("*.py"))
    assert files, f"no modules found under sim/{package}"
    for path in files:
        for name in imported_modules(path):
            if top(name) == "sim":
                ok = name.startswith(allowed_sim)
            else:
                ok = top(name) in sys.stdlib_module_names or name == "__future__"
            if not ok:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_only_the_engine_imports_simpy():
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted(SIM.rglob("*.py"))
        if "simpy" in {top(n) for n in imported_modules(path)}
        and path.relative_to(SIM).parts[0] != "engine"
    ]
    assert not offenders, offenders


def test_import_linter_contracts_hold(capsys, monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert status == 0, capsys.readouterr().out
