"""Parse the units a scenario is written in: durations, rates, money and percentages.

Every parser takes the raw YAML value (a number or a string) and returns a plain number in the
simulation's units: seconds for durations, events per second for rates, integer minor units
(cents) for money and integer basis points for percentages. Bad input raises ``ValueError`` with a
message that quotes the value; pydantic turns it into a located problem.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_SECONDS = 1e9
"""The longest duration accepted (about 31.7 years): keeps every derived moment finite."""

MAX_RATE = 1e9
"""The highest rate accepted, in events per second."""

MAX_MONEY_MINOR = 10**14 - 1
"""The largest amount accepted, in minor units (just under one trillion currency units)."""

_MAX_MONEY_DIGITS = 11  # Decimal.adjusted() of the largest whole-unit amount, 999,999,999,999

DURATION_UNITS: dict[str, tuple[float, float]] = {
    "": (1.0, 1.0),
    "us": (1.0, 1e6),
    "ms": (1.0, 1e3),
    "s": (1.0, 1.0),
    "m": (60.0, 1.0),
    "min": (60.0, 1.0),
    "h": (3600.0, 1.0),
    "d": (86400.0, 1.0),
}
"""Duration suffixes as (multiplier, divisor) to seconds: ``"350ms"`` is 350 / 1000 = 0.35."""

RATE_UNITS: dict[str, float] = {
    "": 1.0,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
"""Rate denominators (``"120/min"``) and their length in seconds (a bare number is per second)."""

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*([a-z]*)\s*$")
_RATE_RE = re.compile(rf"^\s*({_NUMBER})\s*(?:/\s*([a-z]+))?\s*$")
_SHOW_LIMIT = 60


def show(value: Any) -> str:
    """Render a raw value for an error message: quoted strings, YAML words, shortened containers."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    text = repr(value)
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return text


def format_number(value: float) -> str:
    """Render a number compactly: ``0``, ``1.5``, ``7200``, ``1e-06``, ``nan``."""
    if isinstance(value, int):
        text = str(value)
        # Decimal, not float: an integer beyond 1.8e308 would overflow a float
        return text if len(text) <= 20 else f"{Decimal(value):.3e}"
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def format_seconds(seconds: float) -> str:
    """Render a duration in seconds for a message: ``0.02 s``, ``7200 s``."""
    return f"{format_number(seconds)} s"


def _finite_number(value: Any, what: str) -> float | None:
    """Return ``value`` as a float if it is a real number, else None; reject NaN and infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        if abs(value) > 10**18:
            raise ValueError(f"{what} too large, got {show(value)}")
        return float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {show(value)}")
    return value


def _check_range(seconds: float, raw: Any, what: str, limit: float) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be finite, got {show(raw)}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {show(raw)}")
    if seconds > limit:
        raise ValueError(f"{what} too large (at most {format_number(limit)}), got {show(raw)}")
    return seconds + 0.0  # normalise -0.0 to 0.0


def parse_duration(value: Any) -> float:
    """Parse ``"20ms"``, ``"1.5s"``, ``"15m"``, ``"2h"``, ``"1d"`` or a bare number into seconds.

    Units: ``us``, ``ms``, ``s``, ``m`` (or ``min``), ``h``, ``d``. Negative, NaN and infinite
    values are rejected, as is anything longer than :data:`MAX_SECONDS`.
    """
    number = _finite_number(value, "duration")
    if number is not None:
        return _check_range(number, value, "duration", MAX_SECONDS)
    if not isinstance(value, str):
        raise ValueError(
            f"expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, "
            f"got {show(value)}"
        )
    match = _DURATION_RE.match(value)
    if match is None:
        if value.strip().lower() in {"nan", "inf", "+inf", "-inf", "infinity"}:
            raise ValueError(f"duration must be finite, got {show(value)}")
        raise ValueError(
            f"expected a duration such as '20ms', '1.5s', '15m' or a number of seconds, "
            f"got {show(value)}"
        )
    number_text, unit = match.groups()
    if unit not in DURATION_UNITS:
        raise ValueError(f"unknown duration unit {unit!r} in {show(value)} (use ms, s, m, h or d)")
    multiplier, divisor = DURATION_UNITS[unit]
    seconds = float(number_text) * multiplier / divisor
    return _check_range(seconds, value, "duration", MAX_SECONDS)


def parse_rate(value: Any) -> float:
    """Parse ``"120/min"``, ``"2/s"``, ``"1000/h"``, ``"50/d"`` or a bare number into 1/second."""
    number = _finite_number(value, "rate")
    if number is not None:
        return _check_range(number, value, "rate", MAX_RATE)
    if not isinstance(value, str):
        raise ValueError(
            f"expected a rate such as '2/s', '120/min', '1000/h' or a number per second, "
            f"got {show(value)}"
        )
    match = _RATE_RE.match(value)
    if match is None:
        raise ValueError(
            f"expected a rate such as '2/s', '120/min', '1000/h' or a number per second, "
            f"got {show(value)}"
        )
    number_text, unit = match.groups()
    unit = unit or ""
    if unit not in RATE_UNITS:
        raise ValueError(f"unknown rate unit {unit!r} in {show(value)} (use /s, /min, /h or /d)")
    return _check_range(float(number_text) / RATE_UNITS[unit], value, "rate", MAX_RATE)


def _decimal(value: Any, what: str, example: str) -> Decimal:
    """Read a YAML number or numeric string as an exact Decimal (floats through their repr)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {what} such as {example}, got {show(value)}")
    if isinstance(value, int) and abs(value) > 10**18:
        raise ValueError(f"value too large, got {show(value)}")
    # A YAML float's repr is the shortest text that reads back to it: "19.99", never 19.989999...
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected {what} such as {example}, got {show(value)}") from None
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {show(value)}")
    return number


def _decimal_places(number: Decimal) -> int:
    """Count the decimal places of ``number`` ignoring trailing zeros, without any arithmetic."""
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite numbers only reach here
    places = -exponent
    for digit in reversed(digits):
        if places <= 0 or digit != 0:
            break
        places -= 1
    return max(places, 0)


def parse_money(value: Any) -> int:
    """Parse currency units (``19.99``, ``"19.99"``, ``20``) into integer minor units (cents).

    The value is read with :class:`decimal.Decimal`, never as a float; more than two decimals,
    negative amounts and amounts above :data:`MAX_MONEY_MINOR` are rejected.
    """
    number = _decimal(value, "an amount", "19.99")
    if number < 0:
        raise ValueError(f"amount must not be negative, got {show(value)}")
    if number.adjusted() > _MAX_MONEY_DIGITS:
        raise ValueError(f"amount too large, got {show(value)}")
    if _decimal_places(number) > 2:
        raise ValueError(f"amount has more than two decimals, got {show(value)}")
    return int(number.scaleb(2))


def format_money(minor: int) -> str:
    """Render integer minor units as a currency-unit string that :func:`parse_money` reads back."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_percent_bp(value: Any) -> int:
    """Parse a percentage (``10``, ``"12.5"``) into integer basis points (1000, 1250)."""
    number = _decimal(value, "a percentage", "10 or 12.5")
    if number < 0:
        raise ValueError(f"percentage must not be negative, got {show(value)}")
    if number > 100:
        raise ValueError(f"percentage must be at most 100, got {show(value)}")
    if _decimal_places(number) > 2:
        raise ValueError(f"percentage has more than two decimals, got {show(value)}")
    return int(number.scaleb(2))


def format_percent_bp(bp: int) -> str:
    """Render basis points as a percentage string that :func:`parse_percent_bp` reads back."""
    return format_money(bp)
