"""Hostile input: the loader gives a clean ScenarioError or a valid scenario, never anything else.

Hypothesis writes YAML-like documents to files (structures of extreme numbers, NaN, infinities,
huge lists, deep nesting, wrong types, odd keys, and text mutations of smoke.yaml with tags,
anchors, aliases and control characters) and loads them the way the command line does. Every
example runs under a hard per-example time limit (a real-time alarm) besides hypothesis's
deadline, so a hang fails the test instead of stalling it. Then the specific guards: YAML is
read with ``safe_load`` only (``!!python/...`` tags are refused and never run), alias bombs and
recursive aliases, file size and list length limits, odd files (FIFOs, devices, directories,
bytes that are not UTF-8).
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim.scenario import Scenario, ScenarioError, apply_overrides, load_scenario, parse_scenario
from sim.scenario import loader as loader_module
from sim.scenario.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_ITEMS, MAX_NODES, parse_yaml
from tests.stress import tally

ROOT = Path(__file__).resolve().parents[2]
SMOKE_PATH = ROOT / "scenarios" / "smoke.yaml"
SMOKE_TEXT = SMOKE_PATH.read_text(encoding="utf-8")
SMOKE = yaml.safe_load(SMOKE_TEXT)
LIMIT_SECONDS = 5.0
"""The hard limit per example: far above any honest example (the slowest take ~0.5 s)."""

HOSTILE = settings(
    max_examples=400,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def hard_limit(seconds: float = LIMIT_SECONDS) -> Iterator[None]:
    """Fail with TimeoutError if the block runs longer than ``seconds`` (a hang guard)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took more than {seconds} s: the loader hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_clean(outcome: Scenario | ScenarioError, source: str) -> None:
    """Assert a valid scenario, or an error naming the source, one line per located problem."""
    tally.add("fuzz_cases")
    if isinstance(outcome, Scenario):
        assert parse_scenario(outcome.to_data()) == outcome
        tally.add("fuzz_valid_scenarios")
        return
    assert outcome.problems, "an error with no problem"
    for path, message in outcome.problems:
        assert isinstance(path, str) and isinstance(message, str) and message
        assert "\n" not in message
        assert "internal error" not in message
    lines = str(outcome).splitlines()
    assert len(lines) == min(len(outcome.problems), 51)  # one line each, the rest counted
    assert all(line.startswith(f"{source}: ") for line in lines)


def load_text(tmp_path: Path, text: str | bytes) -> Scenario | ScenarioError:
    path = tmp_path / "fuzz.yaml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)
    with hard_limit():
        try:
            outcome: Scenario | ScenarioError = load_scenario(path)
        except ScenarioError as exc:
            outcome = exc
    check_clean(outcome, str(path))
    return outcome


def load_data(data: Any) -> Scenario | ScenarioError:
    with hard_limit():
        try:
            outcome: Scenario | ScenarioError = parse_scenario(data, "fuzz.yaml")
        except ScenarioError as exc:
            outcome = exc
    check_clean(outcome, "fuzz.yaml")
    return outcome


# --- strategies ----------------------------------------------------------------------------------

extreme_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, -(2**63) - 1, 10**100, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
)
hostile_strings = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            ".nan",
            ".inf",
            "-.inf",
            "1e999s",
            "-5s",
            "1e-400ms",
            "99999999999999999999d",
            "0x1F",
            "0o17",
            "1_000",
            "~",
            "null",
            "yes",
            "no",
            "on",
            "2/0",
            "1/-s",
            "nan/s",
            "20 ms",
            "20mss",
            "auto",
            "tpcw-shopping",
            "payments.card-a",
            "warehouses.east",
            "cache",
            "\u202e",
            "\x00",
            "\ud800",
            "a" * 10_000,
            "19.999",
            "-0.00",
            "1e3",
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), extreme_numbers, hostile_strings)


def _nested(depth: int) -> Any:
    node: Any = 1
    for i in range(depth):
        node = [node] if i % 2 else {"k": node}
    return node


huge_lists = st.sampled_from([0, 1, MAX_ITEMS, MAX_ITEMS + 1, 50_000]).map(lambda n: [1.5] * n)
deep = st.integers(min_value=1, max_value=300).map(_nested)
keys = st.one_of(st.text(max_size=10), st.sampled_from(list(SMOKE)), st.integers(), st.none())
documents = st.recursive(
    st.one_of(scalars, huge_lists, deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=20,
)
yaml_documents = st.recursive(
    st.one_of(
        scalars,
        st.sampled_from([0, 3, MAX_ITEMS + 1]).map(lambda n: [1.5] * n),
        st.integers(min_value=1, max_value=60).map(_nested),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=12,
)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


SMOKE_PATHS = [p for p in _paths(SMOKE) if p]

TOKENS = [
    "!!python/object/apply:os.system ['touch SENTINEL']", "!!python/name:os.system",
    "!!python/object:sim.Scenario {}", "!!binary aGk=", "!!set {a, b}", "!!omap [a: 1]",
    "!!float nan", "!!int 1e9", "!!str", "!custom", "&anchor", "*anchor", "<<: *anchor",
    "{", "}", "[", "]", ": ", "- ", "? ", "|", ">", "\t", "%YAML 1.1", "---", "...", "#",
    "\x00", "\x1b[31m", "\ufeff", "\u2028", "'", '"', "\\", ".nan", "-.inf", "1e999",
    "99999999999999999999999999", "null", "~", "", " " * 200,
]  # fmt: skip


@st.composite
def mutated_smoke(draw: st.DrawFn) -> str:
    """Smoke.yaml with a few lines edited: tokens inserted, lines dropped or repeated."""
    lines = SMOKE_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["insert", "replace_value", "drop", "repeat", "indent"]))
        token = draw(st.sampled_from(TOKENS))
        line = lines[i]
        if action == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + token + line[at:]
        elif action == "replace_value" and ":" in line:
            lines[i] = line.split(":", 1)[0] + ": " + token
        elif action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, line)
        else:
            lines[i] = " " * draw(st.integers(1, 5)) + line
        if not lines:
            break
    return "\n".join(lines) + "\n"


# --- the fuzzers ---------------------------------------------------------------------------------


@HOSTILE
@given(yaml_documents)
def test_random_documents_written_as_yaml_load_cleanly(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    try:
        text = yaml.dump(data, Dumper=DUMPER, allow_unicode=True)
    except (yaml.YAMLError, ValueError, RecursionError):
        return  # not representable as YAML at all (e.g. lone surrogates)
    load_text(tmp, text)


@HOSTILE
@given(documents)
def test_random_documents_as_data_load_cleanly(data):
    load_data(data)


@HOSTILE
@given(st.sampled_from(SMOKE_PATHS), documents)
def test_the_smoke_scenario_with_any_value_replaced_loads_cleanly(path, value):
    data = copy.deepcopy(SMOKE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    load_data(data)


@HOSTILE
@given(mutated_smoke())
def test_mutated_smoke_files_load_cleanly(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("mutant")
    outcome = load_text(tmp, text)
    assert not (tmp / "SENTINEL").exists() and not Path("SENTINEL").exists()
    if isinstance(outcome, ScenarioError) and "!!python" in text:
        tally.add("fuzz_python_tags_refused")


@HOSTILE
@given(st.binary(max_size=400))
def test_arbitrary_bytes_load_cleanly(tmp_path_factory, raw):
    load_text(tmp_path_factory.mktemp("bytes"), raw)


@HOSTILE
@given(
    st.lists(
        st.tuples(
            st.sampled_from([".".join(map(str, p)) for p in SMOKE_PATHS]), st.sampled_from(TOKENS)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_hostile_override_values_load_cleanly(items):
    overrides = [f"{path}={value}" for path, value in items]
    with hard_limit():
        try:
            outcome: Scenario | ScenarioError = parse_scenario(
                apply_overrides(SMOKE, overrides, "fuzz.yaml"), "fuzz.yaml"
            )
        except ScenarioError as exc:
            outcome = exc
    check_clean(outcome, "fuzz.yaml")


# --- safe_load only -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        "!!python/object/apply:os.system ['touch {sentinel}']",
        "name: !!python/object/apply:os.system ['touch {sentinel}']\n",
        "name: !!python/object/new:subprocess.Popen [['touch', '{sentinel}']]\n",
        "name: !!python/name:os.system\n",
        "name: !!python/module:os\n",
        "name: !!python/tuple [1, 2]\n",
        "name: !!python/object:sim.scenario.Scenario {{}}\n",
    ],
)
def test_python_tags_are_refused_and_never_run(tmp_path, document):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.yaml"
    path.write_text(document.format(sentinel=sentinel), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert problem[0] == ""
    assert re.fullmatch(
        r"invalid YAML at line 1, column \d+: could not determine a constructor for the tag "
        r"'tag:yaml\.org,2002:python/[a-z/]+(:[\w.]+)?'",
        problem[1],
    ), problem[1]
    assert not sentinel.exists()


def test_override_values_are_read_safely_too(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    with pytest.raises(ScenarioError) as caught:
        apply_overrides(SMOKE, [f"name=!!python/object/apply:os.system ['touch {sentinel}']"])
    assert "could not determine a constructor" in str(caught.value)
    assert not sentinel.exists()


def test_only_the_safe_loader_reads_yaml(monkeypatch, tmp_path):
    loaders: list[type] = []
    real_load = yaml.load

    def spy(stream: Any, Loader: type) -> Any:
        loaders.append(Loader)
        return real_load(stream, Loader)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an unsafe YAML loader was used")

    monkeypatch.setattr(yaml, "load", spy)
    for name in ("unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    load_scenario(SMOKE_PATH, ["stations.app.servers=6", "faults.0.duration=30s"])
    parse_yaml("a: 1")
    assert loaders and all(issubclass(loader, yaml.SafeLoader) for loader in loaders)


def test_no_module_of_the_package_calls_an_unsafe_yaml_loader():
    unsafe = re.compile(
        r"yaml\.(load_all|unsafe_load|full_load|full_load_all|unsafe_load_all)\(|"
        r"yaml\.load\((?!.*Loader=_StrictLoader\))|"
        r"yaml\.(Loader|UnsafeLoader|FullLoader)\b|Loader=(?!yaml\.SafeLoader|_StrictLoader\))"
    )
    assert issubclass(loader_module._StrictLoader, yaml.SafeLoader)
    package = Path(sim.__file__).parent
    found = [
        f"{path.relative_to(package)}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []
    uses = [p for p in package.rglob("*.py") if "yaml.safe_load(" in p.read_text(encoding="utf-8")]
    assert uses  # the loader does read YAML, safely


# --- bombs, limits and odd files -----------------------------------------------------------------


def _problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with hard_limit(), pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return caught.value.problems


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    assert _problems(tmp_path, "\n".join(lines)) == [
        ("", f"too large: more than {MAX_NODES} values (aliases expanded)")
    ]


def test_a_recursive_alias_is_refused(tmp_path):
    assert _problems(tmp_path, "name: &a [*a]\n") == [
        ("name.0", "refers to itself (a recursive YAML alias)")
    ]


def test_deep_nesting_is_refused_at_any_depth(tmp_path):
    assert _problems(tmp_path, "[" * 200_000 + "]" * 200_000) == [
        ("", "invalid YAML: nested too deeply")
    ]
    nested = "name: " + "[" * (MAX_DEPTH + 5) + "1" + "]" * (MAX_DEPTH + 5)
    problems = _problems(tmp_path, nested)
    assert problems[0][1] == f"nested too deeply (more than {MAX_DEPTH} levels)"


def test_the_file_size_limit_is_exact_and_named(tmp_path):
    body = SMOKE_TEXT + "#" * 10
    pad = MAX_FILE_BYTES - len(body.encode()) - 1
    exact = body + "\n" + "#" * pad
    assert len(exact.encode()) == MAX_FILE_BYTES
    path = tmp_path / "big.yaml"
    path.write_text(exact, encoding="utf-8")
    assert load_scenario(path).name == "smoke"
    path.write_text(exact + "#", encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    size = MAX_FILE_BYTES + 1
    assert str(caught.value) == (
        f"{path}: file too large: {size} bytes (at most 1 MiB, {MAX_FILE_BYTES} bytes)"
    )


@pytest.mark.parametrize(
    ("path", "value", "where", "message"),
    [
        (
            ("arrivals",),
            {"schedule": [{"at": i, "rate": 1} for i in range(MAX_ITEMS + 1)]},
            "arrivals.schedule",
            f"too many items: {MAX_ITEMS + 1} (at most {MAX_ITEMS})",
        ),
        (
            ("faults",),
            [{"cache_flush": i} for i in range(1001)],
            "faults",
            "must have at most 1000 items, got 1001",
        ),
        (
            ("coupons",),
            [{"code": f"C{i}", "kind": "percent", "value": 1} for i in range(1001)],
            "coupons",
            "must have at most 1000 items, got 1001",
        ),
        (
            ("stations", "app", "service"),
            {"empirical": [0.01] * (MAX_ITEMS + 1)},
            "stations.app.service.empirical",
            f"too many items: {MAX_ITEMS + 1} (at most {MAX_ITEMS})",
        ),
        (
            ("payments", "gateways"),
            [{"name": f"g{i}", "share": 0.01} for i in range(101)],
            "payments.gateways",
            "must have at most 100 items, got 101",
        ),
    ],
)
def test_long_lists_are_refused_with_a_clear_message(path, value, where, message):
    data = copy.deepcopy(SMOKE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with hard_limit(), pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "x.yaml")
    assert (where, message) in caught.value.problems


@pytest.mark.parametrize(
    ("line", "where", "message"),
    [
        ("horizon: .nan", "horizon", "duration must be finite, got nan"),
        ("horizon: -.inf", "horizon", "duration must be finite, got -inf"),
        ("horizon: 1e999s", "horizon", None),
        (
            "seed: 18446744073709551616",
            "seed",
            "must be <= 18446744073709551615, got 18446744073709551616",
        ),
        ("replications: 1e9", "replications", "expected an integer, got '1e9'"),
        ("seed: " + "9" * 5000, "", None),
        ("name: [1, 2]", "name", "expected a string, got [1, 2]"),
    ],
)
def test_extreme_numbers_and_wrong_types_get_a_message(tmp_path, line, where, message):
    key = line.split(":", 1)[0]
    text = "\n".join(
        candidate for candidate in SMOKE_TEXT.splitlines() if not candidate.startswith(f"{key}:")
    )
    problems = _problems(tmp_path, text + "\n" + line + "\n")
    assert [p for p, _ in problems] == [where]
    if message is not None:
        assert problems[0][1] == message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: os.mkfifo(p), "is not a regular file"),
        (lambda p: p.mkdir(), "is a directory, not a scenario file"),
        (lambda p: p.write_bytes(b"name: \xff\xfe\n"), "not UTF-8 text: cannot decode byte 6"),
        (
            lambda p: p.write_bytes(b""),
            "the file is empty: expected a mapping with name, horizon, arrivals...",
        ),
        (
            lambda p: p.write_bytes(b"name: x\x00\n"),
            "invalid YAML: special characters are not allowed (character 8)",
        ),
        (
            lambda p: p.write_text("- a\n- b\n"),
            "the top level must be a mapping (name: ..., horizon: ...), got a list (['a', 'b'])",
        ),
        (lambda p: None, "file not found"),
    ],
)
def test_odd_files_are_refused_without_hanging(tmp_path, make, message):
    path = tmp_path / "odd.yaml"
    make(path)
    with hard_limit(), pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.problems == [("", message)]


def test_a_character_device_is_refused_without_reading_it():
    with hard_limit(), pytest.raises(ScenarioError) as caught:
        load_scenario("/dev/zero")
    assert caught.value.problems == [("", "is not a regular file")]


def test_a_key_given_twice_is_refused(tmp_path):
    problems = _problems(tmp_path, SMOKE_TEXT + "\nhorizon: 1d\n")
    line = SMOKE_TEXT.count("\n") + 2
    assert problems == [("", f"invalid YAML at line {line}, column 1: key 'horizon' given twice")]


def test_a_key_given_twice_deep_inside_is_refused_but_a_merge_may_be_overridden(tmp_path):
    text = "base: &b {servers: 2}\nstations:\n  app:\n    <<: *b\n    servers: 3\n    servers: 4\n"
    assert parse_yaml("a: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n") == {"a": {"x": 1}, "c": {"x": 2}}
    for merged, column in (("a: {<<: {q: 1, q: 2}}", 16), ("a: {<<: [{q: 1, q: 2}]}", 17)):
        with pytest.raises(ScenarioError) as inside:
            parse_yaml(merged, "m.yaml")
        assert str(inside.value) == (
            f"m.yaml: invalid YAML at line 1, column {column}: key 'q' given twice"
        )
    with pytest.raises(ScenarioError) as caught:
        parse_yaml(text, "dup.yaml")
    assert str(caught.value) == (
        "dup.yaml: invalid YAML at line 6, column 5: key 'servers' given twice"
    )


def test_a_key_with_a_line_break_is_reported_on_one_line():
    data = copy.deepcopy(SMOKE)
    data["stations"]["app\nx\u2028y"] = 1
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "x.yaml")
    assert str(caught.value) == (
        "x.yaml: stations.app\\nx\\u2028y: unknown key (allowed: app, database, cache)"
    )
    assert caught.value.problems[0][0] == "stations.app\nx\u2028y"  # the data keeps the key
