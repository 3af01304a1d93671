"""ecommerce-sim: discrete-event simulation of an e-commerce shop for capacity planning.

The public API: ``load_scenario(path, overrides)`` reads and validates a YAML scenario;
``run(scenario, seed)`` simulates it once and returns a :class:`RunResult` whose
``frames`` are pandas DataFrames and whose ``kpis`` summarise them; ``run_many`` runs
replications; ``compare`` runs what-if variants with common random numbers; ``plan``
finds the smallest capacity that meets the service-level objectives. They load lazily,
so ``import sim.domain`` stays standard-library only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Audit": "sim.engine.runner",
    "RunResult": "sim.engine.runner",
    "run": "sim.engine.runner",
    "run_many": "sim.analysis.compare",
    "compare": "sim.analysis.compare",
    "Comparison": "sim.analysis.compare",
    "plan": "sim.analysis.plan",
    "Plan": "sim.analysis.plan",
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.scenario",
    "load_scenario": "sim.scenario",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
