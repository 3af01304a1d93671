# ruff: noqa: E501 - expected messages are exact one-line strings
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from sim.scenario import ScenarioError, apply_overrides, load_scenario, parse_scenario
from sim.scenario.distributions import Exponential
from sim.scenario.loader import MAX_FILE_BYTES, check_tree, parse_yaml, read_yaml_file

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.yaml"
MINIMAL = "name: tiny\nhorizon: 1h\narrivals: {rate: 2/s}\n"


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(call, *args, **kwargs):
    with pytest.raises(ScenarioError) as info:
        call(*args, **kwargs)
    return str(info.value)


# --- files ----------------------------------------------------------------------------------


def test_load_from_str_and_path(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_scenario(path) == load_scenario(str(path))
    assert load_scenario(path).horizon == 3600.0


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(load_scenario, path) == f"{path}: file not found"


def test_a_directory_is_not_a_scenario(tmp_path):
    assert error_of(load_scenario, tmp_path) == f"{tmp_path}: is a directory, not a scenario file"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert error_of(load_scenario, fifo) == f"{fifo}: is not a regular file"


def test_a_file_over_one_mebibyte_is_refused(tmp_path):
    path = write(tmp_path, MINIMAL + "#" * MAX_FILE_BYTES)
    size = path.stat().st_size
    assert error_of(load_scenario, path) == (
        f"{path}: file too large: {size} bytes (at most 1 MiB, 1048576 bytes)"
    )


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path):
    padding = MAX_FILE_BYTES - len(MINIMAL.encode()) - 1
    path = write(tmp_path, MINIMAL + "#" * padding + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_scenario(path).name == "tiny"


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert error_of(load_scenario, path) == f"{path}: not UTF-8 text: cannot decode byte 9"


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_scenario(path).name == "tiny"


def test_unreadable_paths(tmp_path):
    bad = str(tmp_path / "a\0b")
    assert error_of(read_yaml_file, bad).startswith(f"{bad}: cannot read the file: ")
    # a path through a regular file is not a directory
    path = write(tmp_path, MINIMAL)
    inner = path / "x.yaml"
    assert error_of(load_scenario, inner) == f"{inner}: cannot read the file: Not a directory"


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    assert error_of(load_scenario, path) == f"{path}: cannot read the file: Permission denied"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: [1\n",
            "invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ),
        (
            "name: x\n  horizon: 1h\n",
            "invalid YAML at line 2, column 10: mapping values are not allowed here",
        ),
        (
            "a: 1\n\tb: 2\n",
            "invalid YAML at line 2, column 1: found character '\\t' that cannot start any token (while scanning for the next token)",
        ),
        (
            "a: !!python/object:os.system x\n",
            "invalid YAML at line 1, column 4: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("a: *nothing\n", "invalid YAML at line 1, column 4: found undefined alias 'nothing'"),
        ("a: \x07\n", "invalid YAML: special characters are not allowed (character 4)"),
        (
            "a: " + "1" * 5000 + "\n",
            "invalid YAML: ValueError: Exceeds the limit (4300 digits) for integer string conversion",
        ),
        ("a: 2001-13-45\n", "invalid YAML: ValueError: month must be in 1..12"),
        pytest.param("[" * 5000 + "]" * 5000, "invalid YAML: nested too deeply", id="deep"),
    ],
)
def test_malformed_yaml_gives_the_line_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    assert error_of(load_scenario, path).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty: expected a mapping with name, horizon, arrivals..."),
        (
            "# only a comment\n",
            "the file is empty: expected a mapping with name, horizon, arrivals...",
        ),
        (
            "- a\n- b\n",
            "the top level must be a mapping (name: ..., horizon: ...), got a list (['a', 'b'])",
        ),
        (
            "just text\n",
            "the top level must be a mapping (name: ..., horizon: ...), got a string ('just text')",
        ),
        ("42\n", "the top level must be a mapping (name: ..., horizon: ...), got a number (42)"),
        (
            "2024-01-01\n",
            "the top level must be a mapping (name: ..., horizon: ...), got date (datetime.date(2024, 1, 1))",
        ),
    ],
)
def test_the_top_level_must_be_a_mapping(tmp_path, text, message):
    path = write(tmp_path, text)
    assert error_of(load_scenario, path) == f"{path}: {message}"


def test_parse_scenario_rejects_non_mappings():
    assert error_of(parse_scenario, [1]) == (
        "<memory>: the top level must be a mapping (name: ..., horizon: ...), got a list ([1])"
    )


# --- limits ---------------------------------------------------------------------------------

BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9)}]\n" for a, b in zip("bcdefghi", "abcdefgh", strict=True)
)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    path = write(tmp_path, "a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB)
    assert error_of(load_scenario, path) == (
        f"{path}: too large: more than 500000 values (aliases expanded)"
    )


def test_shared_aliases_within_the_limit_are_fine(tmp_path):
    text = MINIMAL + "description: &d shared\npopulation: &p {users: 10}\n"
    assert load_scenario(write(tmp_path, text)).population.users == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [*x]\n", "a.0: refers to itself (a recursive YAML alias)"),
        ("&x {a: *x}\n", "a: refers to itself (a recursive YAML alias)"),
        (
            MINIMAL + "x: " + "[" * 40 + "]" * 40 + "\n",
            "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0: nested too deeply (more than 32 levels)",
        ),
        ("1: one\n", ": keys must be strings, got 1 (int)"),
        ("stations: {app: {yes: 1}}\n", "stations.app: keys must be strings, got true (bool)"),
        ("l: [" + ", ".join(["1"] * 10_001) + "]\n", "l: too many items: 10001 (at most 10000)"),
    ],
)
def test_shape_limits(tmp_path, text, message):
    path = write(tmp_path, text)
    expected = f"{path}: {message}".replace(f"{path}: : ", f"{path}: ")
    assert error_of(load_scenario, path) == expected


def test_check_tree_accepts_ordinary_data():
    check_tree(yaml.safe_load(SMOKE.read_text(encoding="utf-8")))


def test_parse_yaml_returns_data():
    assert parse_yaml("a: [1, 2ms]") == {"a": [1, "2ms"]}


# --- overrides ------------------------------------------------------------------------------


def test_overrides_by_key_by_name_and_by_index():
    s = load_scenario(
        SMOKE,
        overrides=[
            "stations.app.servers=24",
            "payments.gateways.card-b.servers=4",
            "payments.gateways.0.decline_rate=0.1",
            "coupons.WELCOME10.stackable=true",
            "horizon=20m",
        ],
    )
    assert s.stations.app.servers == 24
    assert s.payments.gateways[1].servers == 4
    assert s.payments.gateways[0].decline_rate == 0.1
    assert s.coupons[0].stackable is True
    assert s.horizon == 1200.0


def test_override_values_are_yaml():
    s = load_scenario(
        SMOKE,
        overrides=[
            "stations.database.query={exponential: {mean: 8ms}}",
            "stations.app.service.lognormal.mean=30ms",
            "warmup=auto",
            "description=''",
        ],
    )
    assert s.stations.database.query == Exponential.model_validate({"mean": 0.008})
    assert s.stations.app.service.given_mean == 0.03
    assert s.warmup == "auto"
    assert s.description == ""


def test_overrides_may_be_a_mapping_or_a_single_string(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_scenario(path, {"stations.app.servers": 3}).stations.app.servers == 3
    assert load_scenario(path, "seed=5").seed == 5


def test_overrides_create_sections_the_file_leaves_to_defaults(tmp_path):
    path = write(tmp_path, MINIMAL)
    s = load_scenario(path, ["stations.cache.capacity=50", "faults=[{cache_flush: 10m}]"])
    assert s.stations.cache.capacity == 50
    assert s.stations.app.servers == 8
    assert s.faults[0].at == 600.0


def test_overrides_replace_list_entries():
    s = load_scenario(
        SMOKE, ["fulfilment.warehouses.east={name: west, workers: 3}", "faults.2={cache_flush: 1m}"]
    )
    assert s.fulfilment.warehouses[0].name == "west"
    assert s.fulfilment.warehouses[0].share == 1.0
    assert s.faults[2].at == 60.0


def test_overrides_are_validated_like_the_file():
    assert error_of(load_scenario, SMOKE, ["stations.app.servers=0"]) == (
        f"{SMOKE}: stations.app.servers: must be >= 1, got 0"
    )
    assert error_of(load_scenario, SMOKE, ["payments.gateways.0.share=0.5"]) == (
        f"{SMOKE}: payments.gateways: shares sum to 0.8, not 1"
    )


@pytest.mark.parametrize(
    ("override", "where", "message"),
    [
        (
            "stations.app.sevrers=3",
            "stations.app.sevrers",
            "override 'stations.app.sevrers=3': unknown key (allowed: servers, service)",
        ),
        (
            "colour=red",
            "colour",
            "override 'colour=red': unknown key (allowed: name, description, seed, horizon, warmup, replications, catalog, population, arrivals, behavior, stations, pages, payments, fulfilment, coupons, faults, slo, metrics, storage)",
        ),
        (
            "payments.gateways.card-x.servers=4",
            "payments.gateways.card-x",
            "override 'payments.gateways.card-x.servers=4': no entry 'card-x' in payments.gateways (2 entries: card-a, card-b)",
        ),
        (
            "payments.gateways.9.servers=4",
            "payments.gateways.9",
            "override 'payments.gateways.9.servers=4': no entry '9' in payments.gateways (2 entries: card-a, card-b)",
        ),
        (
            "faults.7.at=1m",
            "faults.7",
            "override 'faults.7.at=1m': no entry '7' in faults (3 entries)",
        ),
        (
            "faults.0.bogus=1",
            "faults.0.bogus",
            "override 'faults.0.bogus=1': unknown key (allowed: outage, at, duration, latency_spike, factor, cache_flush, pool_shrink, ghost_success, share, breakdown, mtbf, mttr, until)",
        ),
        ("horizon.x=4", "horizon.x", "override 'horizon.x=4': horizon takes a value, not keys"),
        (
            "stations.app.service.gamma.k=2",
            "stations.app.service.gamma",
            "override 'stations.app.service.gamma.k=2': unknown key (allowed: constant, exponential, uniform, normal, lognormal, empirical)",
        ),
        (
            "stations.app.servers=[1",
            "stations.app.servers",
            "override 'stations.app.servers=[1': invalid YAML at line 1, column 3: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ),
        (
            "stations.app.servers",
            "",
            "override 'stations.app.servers' is not of the form key.path=value",
        ),
        (
            "stations..servers=3",
            "",
            "override 'stations..servers=3': the key path 'stations..servers' has an empty part",
        ),
        ("=3", "", "override '=3': the key path '' has an empty part"),
    ],
)
def test_bad_override_paths_are_named(override, where, message):
    text = error_of(load_scenario, SMOKE, [override])
    assert text == f"{SMOKE}: {where}: {message}" if where else f"{SMOKE}: {message}"


def test_an_override_into_a_list_the_file_lacks(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert error_of(load_scenario, path, ["payments.gateways.0.servers=4"]) == (
        f"{path}: payments.gateways: override 'payments.gateways.0.servers=4': "
        "payments.gateways is not in the scenario, so it has no entry '0'"
    )
    s = load_scenario(path, ["payments.gateways=[{name: a, servers: 4}]"])
    assert s.payments.gateways[0].servers == 4


def test_a_path_must_be_a_path():
    assert error_of(load_scenario, 3) == "3: expected a file path, got int"
    assert error_of(load_scenario, b"/nonexistent/x.yaml") == (
        "/nonexistent/x.yaml: expected a file path, got bytes"
    )


def test_non_string_overrides_are_refused():
    assert error_of(apply_overrides, {"name": "x"}, [3]) == (
        "<overrides>: override 3 is not of the form key.path=value"
    )


def test_overrides_into_free_form_mappings():
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    data = apply_overrides(data, ["pages.home.queries=2"])
    assert parse_scenario(data).page_demands()["home"].queries == 2


def test_apply_overrides_copies_and_leaves_the_input_alone():
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    before = copy.deepcopy(data)
    changed = apply_overrides(
        data, ["stations.app.servers=2", "payments.gateways.card-a.servers=1"]
    )
    assert data == before
    assert changed["stations"]["app"]["servers"] == 2
    assert changed["payments"]["gateways"][0]["servers"] == 1
    assert apply_overrides(data) == data


def test_what_if_variants_pass_the_same_checks():
    base = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    for servers in (1, 2, 4):
        variant = parse_scenario(apply_overrides(base, {"stations.app.servers": servers}))
        assert variant.stations.app.servers == servers
        assert variant.payments == parse_scenario(base).payments
