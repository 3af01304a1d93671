from __future__ import annotations

import math

import pytest

from sim.scenario.units import (
    format_money,
    format_number,
    format_percent_bp,
    format_seconds,
    parse_duration,
    parse_money,
    parse_percent_bp,
    parse_rate,
    show,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1.5s", 1.5),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("10min", 600.0),
        ("5us", 5e-6),
        ("0.3ms", 0.0003),
        ("350ms", 0.35),
        (" 2 h ", 7200.0),
        ("7", 7.0),
        ("1e3ms", 1.0),
        (3, 3.0),
        (0.25, 0.25),
        (0, 0.0),
        ("-0", 0.0),
    ],
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == seconds


def test_milliseconds_are_divided_not_multiplied_so_they_are_exact():
    assert parse_duration("350ms") == 0.35
    assert parse_duration("20ms") == 0.02


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5ms", "duration must not be negative, got '-5ms'"),
        (-1, "duration must not be negative, got -1"),
        (float("nan"), "duration must be finite, got nan"),
        (float("inf"), "duration must be finite, got inf"),
        ("nan", "duration must be finite, got 'nan'"),
        ("inf", "duration must be finite, got 'inf'"),
        ("1e309s", "duration must be finite, got '1e309s'"),
        ("5x", "unknown duration unit 'x' in '5x' (use ms, s, m, h or d)"),
        ("2e9", "duration too large (at most 1000000000), got '2e9'"),
        (10**30, "duration too large, got 1.000e+30"),
        (
            "soon",
            "expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, got 'soon'",
        ),
        (
            True,
            "expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, got true",
        ),
        (
            [1],
            "expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, got [1]",
        ),
    ],
)
def test_bad_durations_are_rejected_with_the_value(value, message):
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("120/min", 2.0),
        ("2/s", 2.0),
        ("1000/h", 1000 / 3600),
        ("86400/d", 1.0),
        ("30/m", 0.5),
        ("5 / min", 5 / 60),
        ("3", 3.0),
        (2, 2.0),
        (0.5, 0.5),
    ],
)
def test_rates_parse_to_per_second(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second, rel=1e-15)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1/s", "rate must not be negative, got '-1/s'"),
        (float("nan"), "rate must be finite, got nan"),
        ("2/fortnight", "unknown rate unit 'fortnight' in '2/fortnight' (use /s, /min, /h or /d)"),
        (
            "fast",
            "expected a rate such as '2/s', '120/min', '1000/h' or a number per second, got 'fast'",
        ),
        (
            None,
            "expected a rate such as '2/s', '120/min', '1000/h' or a number per second, got null",
        ),
        ("2e9/s", "rate too large (at most 1000000000), got '2e9/s'"),
    ],
)
def test_bad_rates_are_rejected(value, message):
    with pytest.raises(ValueError) as info:
        parse_rate(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        (19.99, 1999),
        ("19.99", 1999),
        (20, 2000),
        ("0.1", 10),
        (0.1, 10),
        ("1e2", 10000),
        ("19.990000000000000000000000000000", 1999),
        ("999999999999.99", 99_999_999_999_999),
        ("  5  ", 500),
        (0, 0),
    ],
)
def test_money_parses_exactly_to_cents(value, cents):
    assert parse_money(value) == cents
    assert type(parse_money(value)) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("19.999", "amount has more than two decimals, got '19.999'"),
        ("19.99000000000000000000000000000001", "amount has more than two decimals"),
        ("1e-99999999999", "amount has more than two decimals"),
        (-1, "amount must not be negative, got -1"),
        ("1000000000000", "amount too large, got '1000000000000'"),
        ("1e999999999999", "amount too large, got '1e999999999999'"),
        (1e308, "amount too large"),
        (10**30, "value too large, got 1.000e+30"),
        ("NaN", "expected a finite number, got 'NaN'"),
        (float("inf"), "expected a finite number, got inf"),
        ("abc", "expected an amount such as 19.99, got 'abc'"),
        (True, "expected an amount such as 19.99, got true"),
        ([1], "expected an amount such as 19.99, got [1]"),
    ],
)
def test_bad_money_is_rejected(value, message):
    with pytest.raises(ValueError) as info:
        parse_money(value)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("cents", [0, 1, 99, 100, 1999, 123456789, -1999, -5])
def test_format_money_reads_back(cents):
    assert parse_money(format_money(abs(cents))) == abs(cents)
    assert format_money(cents).startswith("-") == (cents < 0)


def test_format_money_shape():
    assert format_money(1999) == "19.99"
    assert format_money(5) == "0.05"
    assert format_money(-1999) == "-19.99"


@pytest.mark.parametrize(
    ("value", "bp"), [(10, 1000), ("12.5", 1250), (100, 10000), (0.01, 1), ("0", 0)]
)
def test_percentages_parse_to_basis_points(value, bp):
    assert parse_percent_bp(value) == bp
    assert parse_percent_bp(format_percent_bp(bp)) == bp


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (101, "percentage must be at most 100, got 101"),
        (-1, "percentage must not be negative, got -1"),
        ("12.555", "percentage has more than two decimals, got '12.555'"),
        ("ten", "expected a percentage such as 10 or 12.5, got 'ten'"),
    ],
)
def test_bad_percentages_are_rejected(value, message):
    with pytest.raises(ValueError) as info:
        parse_percent_bp(value)
    assert str(info.value) == message


def test_show_renders_values_for_messages():
    assert show(None) == "null"
    assert show(False) == "false"
    assert show(3) == "3"
    assert show(2.0) == "2"
    assert show(1.5) == "1.5"
    assert show("abc") == "'abc'"
    assert show({"a": 1}) == "{'a': 1}"
    long = show(list(range(100)))
    assert len(long) == 60 and long.endswith("...")


def test_format_number_and_seconds():
    assert format_number(7200.0) == "7200"
    assert format_number(1e-6) == "1e-06"
    assert format_number(math.nan) == "nan"
    assert format_number(10**25) == "1.000e+25"
    assert format_seconds(0.02) == "0.02 s"
