"""Scenarios: YAML files validated once into frozen, typed objects (``load_scenario``).

``load_scenario(path, overrides)`` reads a file; ``parse_scenario(data)`` validates a mapping;
``apply_overrides(data, overrides)`` applies dotted-path what-if changes before validation. Every
problem surfaces as one :class:`ScenarioError` naming the source, the key path and the problem.
"""

from __future__ import annotations

from sim.scenario.distributions import Distribution, distribution
from sim.scenario.errors import ScenarioError
from sim.scenario.loader import apply_overrides, load_scenario, parse_scenario
from sim.scenario.schema import Scenario
from sim.scenario.workloads import (
    TPCW_PROFILES,
    BehaviorGraph,
    PageDemand,
    builtin_page_demands,
    builtin_profile,
)

__all__ = [
    "TPCW_PROFILES",
    "BehaviorGraph",
    "Distribution",
    "PageDemand",
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "builtin_page_demands",
    "builtin_profile",
    "distribution",
    "load_scenario",
    "parse_scenario",
]
