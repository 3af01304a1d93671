"""Money in integer minor units (cents), with every rounding rule in one place.

Amounts are never floats. Rates (tax, percentage discounts) are integer basis points
(1 bp = 0.01 %), so ``Money(1999).percent(2000)`` is 20 % of 19.99 = 4.00 (3.998 rounded).
Rounding is half-up on the magnitude, done only by :func:`round_div`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sim.domain.errors import CurrencyMismatch, InvalidAmount

BASIS_POINTS = 10_000
"""Basis points in one whole (100 %)."""

DEFAULT_CURRENCY = "USD"
"""The currency used when none is named."""


def round_div(numerator: int, denominator: int) -> int:
    """Divide two integers and round half away from zero: the project's one rounding rule."""
    if denominator <= 0:
        raise InvalidAmount(f"denominator must be positive, got {denominator}")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency in integer minor units (cents for USD)."""

    minor: int
    currency: str = DEFAULT_CURRENCY

    def __post_init__(self) -> None:
        """Reject non-integer amounts (floats, bools) at construction."""
        if type(self.minor) is not int:
            raise InvalidAmount(f"money is integer minor units, got {self.minor!r}")

    @classmethod
    def zero(cls, currency: str = DEFAULT_CURRENCY) -> Money:
        """Return zero in the given currency."""
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str | int, currency: str = DEFAULT_CURRENCY) -> Money:
        """Parse a decimal string such as ``"19.99"`` (exactly; at most two decimals)."""
        try:
            value = Decimal(str(text))
        except InvalidOperation:
            raise InvalidAmount(f"not an amount: {text!r}") from None
        if not value.is_finite():
            raise InvalidAmount(f"not a finite amount: {text!r}")
        minor = value * 100
        if minor != minor.to_integral_value():
            raise InvalidAmount(f"more than two decimals: {text!r}")
        return cls(int(minor), currency)

    @classmethod
    def from_units(cls, value: float, currency: str = DEFAULT_CURRENCY) -> Money:
        """Round a float amount of currency units (a sampled price) to the nearest cent.

        Half a cent rounds away from zero, as :func:`round_div` does.
        """
        try:
            cents = int((Decimal(repr(float(value))) * 100).to_integral_value(ROUND_HALF_UP))
        except (InvalidOperation, ValueError, OverflowError, TypeError):
            # int() of a NaN is a ValueError, of an infinity an OverflowError
            raise InvalidAmount(f"not a finite amount: {value!r}") from None
        return cls(cents, currency)

    def _check(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __copy__(self) -> Money:
        """Return self: Money is immutable, so a copy may be the value itself (like an int)."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Money:
        """Return self (immutable); keeps the unit of work's snapshots cheap."""
        return self

    def __add__(self, other: Money) -> Money:
        """Add two amounts of the same currency."""
        self._check(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        """Subtract an amount of the same currency."""
        self._check(other)
        return Money(self.minor - other.minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        """Multiply by a whole number (a quantity)."""
        if type(factor) is not int:
            raise InvalidAmount(f"money multiplies by whole numbers only, got {factor!r}")
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    # Amounts of one currency compare; two currencies raise CurrencyMismatch (no exchange rate).
    def __lt__(self, other: object) -> bool:
        """Return True if this amount is smaller than ``other`` (same currency)."""
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other)
        return self.minor < other.minor

    def __le__(self, other: object) -> bool:
        """Return True if this amount is at most ``other`` (same currency)."""
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other)
        return self.minor <= other.minor

    def __gt__(self, other: object) -> bool:
        """Return True if this amount is larger than ``other`` (same currency)."""
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other)
        return self.minor > other.minor

    def __ge__(self, other: object) -> bool:
        """Return True if this amount is at least ``other`` (same currency)."""
        if not isinstance(other, Money):
            return NotImplemented
        self._check(other)
        return self.minor >= other.minor

    def __neg__(self) -> Money:
        """Return the negated amount."""
        return Money(-self.minor, self.currency)

    def __bool__(self) -> bool:
        """Return True for a non-zero amount."""
        return self.minor != 0

    def percent(self, basis_points: int) -> Money:
        """Return ``basis_points`` / 10,000 of this amount, rounded by :func:`round_div`."""
        return Money(round_div(self.minor * basis_points, BASIS_POINTS), self.currency)

    def fraction(self, numerator: int, denominator: int) -> Money:
        """Return ``numerator / denominator`` of this amount, rounded by :func:`round_div`."""
        return Money(round_div(self.minor * numerator, denominator), self.currency)

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        """Split this amount in proportion to ``weights`` so that the parts sum exactly.

        Remainders go to the largest fractional parts first (ties to the earliest weight).
        Weights that are all zero split zero into zeros; a non-zero amount has no such split.
        """
        if not weights or any(w < 0 for w in weights):
            raise InvalidAmount(f"weights must be non-negative and not empty, got {weights!r}")
        total = sum(weights)
        if total == 0:
            if self.minor:
                raise InvalidAmount(f"cannot allocate {self} by weights that are all zero")
            return [Money(0, self.currency) for _ in weights]
        sign = -1 if self.minor < 0 else 1
        magnitude = abs(self.minor)
        shares = [divmod(magnitude * w, total) for w in weights]
        parts = [q for q, _ in shares]
        leftover = magnitude - sum(parts)
        order = sorted(range(len(weights)), key=lambda i: (-shares[i][1], i))
        for i in order[:leftover]:
            parts[i] += 1
        return [Money(sign * p, self.currency) for p in parts]

    def clamp_min(self, floor: Money) -> Money:
        """Return the larger of this amount and ``floor``."""
        self._check(floor)
        return self if self.minor >= floor.minor else floor

    def __str__(self) -> str:
        """Format as ``"19.99 USD"``."""
        sign = "-" if self.minor < 0 else ""
        whole, cents = divmod(abs(self.minor), 100)
        return f"{sign}{whole}.{cents:02d} {self.currency}"


def total(amounts: Iterable[Money], currency: str = DEFAULT_CURRENCY) -> Money:
    """Sum amounts of one currency (zero for none)."""
    result = Money(0, currency)
    for amount in amounts:
        result = result + amount
    return result
