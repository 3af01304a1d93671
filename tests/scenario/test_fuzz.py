"""The loader raises nothing but ScenarioError, whatever it is given (and never hangs)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.scenario import Scenario, ScenarioError, apply_overrides, parse_scenario
from sim.scenario.loader import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text(encoding="utf-8"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["20ms", "-5s", "1e999s", "2/s", "nan", "auto", "19.999", "tpcw-shopping", "card-a", ""]
    ),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


SMOKE_PATHS = [p for p in paths(SMOKE) if p]


def outcome(data):
    try:
        return parse_scenario(data, "fuzz.yaml")
    except ScenarioError as exc:
        assert "internal error" not in str(exc)
        assert exc.problems
        assert all(isinstance(path, str) and message for path, message in exc.problems)
        return exc


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.sampled_from(SMOKE_PATHS), values)
def test_replacing_any_value_of_the_smoke_scenario(path, value):
    data = copy.deepcopy(SMOKE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert isinstance(outcome(data), (Scenario, ScenarioError))


@FAST
@given(st.sampled_from(SMOKE_PATHS))
def test_deleting_any_key_of_the_smoke_scenario(path):
    data = copy.deepcopy(SMOKE)
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    assert isinstance(outcome(data), (Scenario, ScenarioError))


@FAST
@given(values)
def test_arbitrary_data(data):
    assert isinstance(outcome(data), (Scenario, ScenarioError))


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    try:
        data = parse_yaml(text, "fuzz.yaml")
    except ScenarioError:
        return
    assert isinstance(outcome(data), (Scenario, ScenarioError))


@FAST
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(
                    [
                        "stations",
                        "app",
                        "servers",
                        "payments",
                        "gateways",
                        "card-a",
                        "0",
                        "7",
                        "faults",
                        "at",
                        "service",
                        "lognormal",
                        "mean",
                        "x",
                        "pages",
                        "home",
                    ]
                ),
                min_size=1,
                max_size=5,
            ),
            st.text(max_size=10),
        ),
        max_size=3,
    )
)
def test_arbitrary_overrides(items):
    overrides = [".".join(parts) + "=" + value for parts, value in items]
    try:
        data = apply_overrides(SMOKE, overrides, "fuzz.yaml")
    except ScenarioError as exc:
        assert "internal error" not in str(exc)
        return
    assert isinstance(outcome(data), (Scenario, ScenarioError))
