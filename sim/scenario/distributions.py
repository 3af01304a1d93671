"""Probability distributions of a scenario: parsed from one-key YAML mappings, sampled with numpy.

A distribution is written as a mapping with exactly one key naming its kind::

    {constant: 0.3ms}
    {exponential: {mean: 5ms}}                 # optional cap: {mean: 7s, cap: 70s}
    {uniform: {low: 1ms, high: 3ms}}
    {normal: {mean: 20ms, sd: 5ms}}            # truncated at 0; optional cap
    {lognormal: {mean: 20ms, cv: 0.5}}         # or {median: 350ms, p95: 2s}; optional cap
    {empirical: [1ms, 2ms, 5ms]}               # each value equally likely

A bare value (``20ms``, ``3``) is shorthand for a constant. Parameters are durations with units or
plain numbers (seconds for times; the same classes serve dimensionless quantities such as basket
sizes and currency units for prices). ``cap`` clamps a sample: ``min(x, cap)``, as TPC-W caps think
times at ten times their mean.

Every parsed distribution exposes its exact analytic ``mean`` and squared coefficient of variation
``scv`` (of the capped, truncated distribution actually sampled) for the analytic twin, and draws
only from the numpy Generator it is given: ``sample(rng)`` and ``sample_many(rng, n)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from sim.scenario.units import DURATION_UNITS, format_number, parse_duration, show

MAX_EMPIRICAL = 10_000
"""The most values an empirical distribution may list."""

Z95 = 1.6448536269514722
"""The 95th percentile of the standard normal distribution."""

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _phi(z: float) -> float:
    """Return the standard normal density at ``z``."""
    if math.isinf(z):
        return 0.0
    return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


def _cdf(z: float) -> float:
    """Return the standard normal distribution function at ``z`` (accurate in both tails)."""
    return 0.5 * math.erfc(-z / _SQRT2)


def parse_quantity(value: Any) -> float:
    """Parse a distribution parameter: a plain number or a duration with units, as a float."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("expected a duration"):
            raise ValueError(
                f"expected a number or a duration such as '20ms', got {show(value)}"
            ) from None
        raise ValueError(message.replace("duration ", "value ", 1)) from None


Quantity = Annotated[float, BeforeValidator(parse_quantity)]
"""A non-negative, finite number written plainly or as a duration with units."""


class Distribution(BaseModel):
    """Base of every distribution: exact moments and sampling from a given numpy Generator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str] = ""
    _mean: float = PrivateAttr(0.0)
    _scv: float = PrivateAttr(0.0)

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        """Accept the YAML form ``{kind: params}`` by unwrapping its one key."""
        if isinstance(data, dict) and len(data) == 1 and cls.kind in data:
            return cls._from_yaml(data[cls.kind])
        return data

    @classmethod
    def _from_yaml(cls, params: Any) -> Any:
        """Turn the value under the kind key into this model's input (a mapping by default)."""
        return params

    @model_validator(mode="after")
    def _finish(self) -> Distribution:
        """Derive parameters, then store the exact mean and SCV; reject non-finite moments."""
        self._prepare()
        try:
            mean, second = self._moments()
            scv = self._exact_scv(mean, second)
        except (OverflowError, ZeroDivisionError):
            mean = second = scv = math.inf
        if not (math.isfinite(mean) and math.isfinite(second) and math.isfinite(scv)):
            raise ValueError("parameters too extreme: the mean or variance is not finite")
        if not (mean >= 0.0 and mean * (1.0 + scv) < math.inf):
            raise ValueError("parameters too extreme: the mean or variance is not finite")
        self._mean = mean
        self._scv = scv
        return self

    def _prepare(self) -> None:
        """Check parameters together and derive internal ones (a hook; nothing by default)."""

    def _exact_scv(self, mean: float, second: float) -> float:
        """SCV from the first two moments (clamped at 0 against rounding)."""
        if mean <= 0.0:
            return 0.0
        return max((second / mean) / mean - 1.0, 0.0)  # mean * mean may underflow to 0

    def _moments(self) -> tuple[float, float]:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def _params(self) -> Any:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    @model_serializer(mode="plain")
    def _serialize(self) -> dict[str, Any]:
        """Dump in the YAML form ``{kind: params}``: a dump parses back to an equal object."""
        return {self.kind: self._params()}

    @property
    def mean(self) -> float:
        """The exact mean of the distribution sampled (after truncation and cap)."""
        return self._mean

    @property
    def scv(self) -> float:
        """The squared coefficient of variation, variance / mean**2 (0 for a zero mean)."""
        return self._scv

    @property
    def variance(self) -> float:
        """The exact variance of the distribution sampled."""
        return self._scv * self._mean * self._mean

    def sample(self, rng: np.random.Generator) -> float:  # pragma: no cover - overridden
        """Draw one value from ``rng``."""
        raise NotImplementedError

    def sample_many(
        self, rng: np.random.Generator, n: int
    ) -> np.ndarray:  # pragma: no cover - overridden
        """Draw ``n`` values from ``rng`` as a float64 array."""
        raise NotImplementedError


class Constant(Distribution):
    """Always the same value: ``{constant: 0.3ms}``."""

    kind: ClassVar[str] = "constant"
    value: float

    @classmethod
    def _from_yaml(cls, params: Any) -> Any:
        return {"value": parse_quantity(params)}

    def _moments(self) -> tuple[float, float]:
        return self.value, self.value * self.value

    def _params(self) -> Any:
        return self.value

    def sample(self, rng: np.random.Generator) -> float:
        """Return the constant (``rng`` is not used)."""
        return self.value

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return ``n`` copies of the constant."""
        return np.full(n, self.value, dtype=np.float64)


class _Capped(Distribution):
    """A distribution with an optional ``cap`` (each kind declares it last): ``min(x, cap)``."""

    if TYPE_CHECKING:
        cap: float | None

    def _limit(self) -> float:
        return math.inf if self.cap is None else self.cap

    def _with_cap(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.cap is not None:
            params["cap"] = self.cap
        return params

    def _clamp(self, x: float) -> float:
        return x if self.cap is None or x <= self.cap else self.cap

    def _clamp_many(self, xs: np.ndarray) -> np.ndarray:
        return xs if self.cap is None else np.minimum(xs, self.cap)


def _below_less_x_tail(x: float) -> float:
    """Return ``1 - exp(-x) * (1 + x)`` accurately, by its series where the terms cancel."""
    if x < 1e-3:
        return x * x * (0.5 - x * (1.0 / 3.0 - x * (0.125 - x / 30.0)))
    return -math.expm1(-x) - x * math.exp(-x)


class Exponential(_Capped):
    """Exponential with the given mean: ``{exponential: {mean: 5ms}}`` (optional ``cap``)."""

    kind: ClassVar[str] = "exponential"
    scale: Quantity = Field(alias="mean", gt=0)
    cap: Quantity | None = Field(default=None, gt=0)

    def _moments(self) -> tuple[float, float]:
        m = self.scale
        if self.cap is None:
            return m, 2.0 * m * m
        x = self.cap / m
        if x == 0.0:  # the cap is negligible next to the mean: every draw is at the cap
            return self.cap, self.cap * self.cap
        if math.isinf(x):  # the cap is out of reach
            return m, 2.0 * m * m
        below = -math.expm1(-x)  # 1 - exp(-x), exact for small x
        return m * below, 2.0 * m * m * _below_less_x_tail(x)

    def _exact_scv(self, mean: float, second: float) -> float:
        # scale-free, so that a tiny mean whose square underflows keeps its SCV
        if self.cap is None:
            return 1.0
        x = self.cap / self.scale
        below = -math.expm1(-x)  # exact for tiny x
        if below == 0.0:  # x underflowed: every draw is at the cap, a constant
            return 0.0
        if math.isinf(x):
            return 1.0
        return max(2.0 * (_below_less_x_tail(x) / below) / below - 1.0, 0.0)

    def _params(self) -> Any:
        return self._with_cap({"mean": self.scale})

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value from ``rng``."""
        x = float(rng.exponential(self.scale))  # _clamp inline: a draw on every think time
        return x if self.cap is None or x <= self.cap else self.cap

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values from ``rng``."""
        return self._clamp_many(rng.exponential(self.scale, n))


class Uniform(Distribution):
    """Uniform on ``[low, high]``: ``{uniform: {low: 1ms, high: 3ms}}``."""

    kind: ClassVar[str] = "uniform"
    low: Quantity
    high: Quantity

    def _prepare(self) -> None:
        if self.low > self.high:
            raise ValueError(
                f"low ({format_number(self.low)}) must not exceed high ({format_number(self.high)})"
            )

    def _moments(self) -> tuple[float, float]:
        a, b = self.low, self.high
        return (a + b) / 2.0, (a * a + a * b + b * b) / 3.0

    def _exact_scv(self, mean: float, second: float) -> float:
        if mean <= 0.0:
            return 0.0
        return ((self.high - self.low) / mean) ** 2 / 12.0

    def _params(self) -> Any:
        return {"low": self.low, "high": self.high}

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value from ``rng``."""
        return float(rng.uniform(self.low, self.high))

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values from ``rng``."""
        return rng.uniform(self.low, self.high, n)


class Normal(_Capped):
    """Normal truncated at 0 (resampled, not clamped): ``{normal: {mean: 20ms, sd: 5ms}}``.

    ``mean`` and ``sd`` are the parameters of the underlying normal; :attr:`mean` is the mean of the
    truncated (and capped) distribution. Since ``mean >= 0`` at least half the draws are accepted.
    """

    kind: ClassVar[str] = "normal"
    mu: Quantity = Field(alias="mean")
    sigma: Quantity = Field(alias="sd", gt=0)
    cap: Quantity | None = Field(default=None, gt=0)

    def _moments(self) -> tuple[float, float]:
        mu, sigma, c = self.mu, self.sigma, self._limit()
        alpha = -mu / sigma
        beta = (c - mu) / sigma
        kept = _cdf(mu / sigma)  # P(X >= 0)
        inside = _cdf(beta) - _cdf(alpha)  # P(0 <= X <= c)
        tail = _cdf(-beta)  # P(X > c)
        phi_a, phi_b = _phi(alpha), _phi(beta)
        first = mu * inside + sigma * (phi_a - phi_b)
        second = (mu * mu + sigma * sigma) * inside + sigma * mu * phi_a
        if self.cap is not None:
            first += c * tail
            second += c * c * tail - sigma * (mu + c) * phi_b
        # The terms can cancel badly (a huge mean and sd, a tiny cap); the moments of a value
        # in [0, c] lie in [0, c] and [0, c * c], so clamp rounding back into them.
        return min(max(first / kept, 0.0), c), min(max(second / kept, 0.0), c * c)

    def _params(self) -> Any:
        return self._with_cap({"mean": self.mu, "sd": self.sigma})

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value from ``rng`` (redrawing negative values)."""
        x = float(rng.normal(self.mu, self.sigma))
        while x < 0.0:
            x = float(rng.normal(self.mu, self.sigma))
        return self._clamp(x)

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values from ``rng`` (redrawing negative values)."""
        xs = rng.normal(self.mu, self.sigma, n)
        bad = xs < 0.0
        while bad.any():
            xs[bad] = rng.normal(self.mu, self.sigma, int(bad.sum()))
            bad = xs < 0.0
        return self._clamp_many(xs)


class LogNormal(_Capped):
    """Lognormal by mean and cv or by median and p95: ``{lognormal: {median: 350ms, p95: 2s}}``.

    With mean m and coefficient of variation cv: sigma**2 = ln(1 + cv**2), mu = ln m - sigma**2 / 2.
    With median and 95th percentile: mu = ln median, sigma = ln(p95 / median) / 1.6449.
    """

    kind: ClassVar[str] = "lognormal"
    given_mean: Quantity | None = Field(default=None, alias="mean", gt=0)
    cv: Quantity | None = Field(default=None, gt=0)
    median: Quantity | None = Field(default=None, gt=0)
    p95: Quantity | None = Field(default=None, gt=0)
    cap: Quantity | None = Field(default=None, gt=0)
    _mu: float = PrivateAttr(0.0)
    _sigma: float = PrivateAttr(0.0)

    def _prepare(self) -> None:
        given = {
            key
            for key, value in (
                ("mean", self.given_mean),
                ("cv", self.cv),
                ("median", self.median),
                ("p95", self.p95),
            )
            if value is not None
        }
        if given not in ({"mean", "cv"}, {"median", "p95"}):
            got = ", ".join(sorted(given)) or "none"
            raise ValueError(f"give either mean and cv, or median and p95 (got {got})")
        if self.median is not None and self.p95 is not None:
            if self.p95 <= self.median:
                raise ValueError(
                    f"p95 ({format_number(self.p95)}) must exceed "
                    f"the median ({format_number(self.median)})"
                )
            self._mu = math.log(self.median)
            self._sigma = math.log(self.p95 / self.median) / Z95
        elif self.given_mean is not None and self.cv is not None:
            variance = math.log1p(self.cv * self.cv)
            self._mu = math.log(self.given_mean) - variance / 2.0
            self._sigma = math.sqrt(variance)

    def _moments(self) -> tuple[float, float]:
        mu, sigma, c = self._mu, self._sigma, self._limit()
        if sigma == 0.0:
            value = min(math.exp(mu), c)
            return value, value * value
        m1 = math.exp(mu + sigma * sigma / 2.0)
        m2 = math.exp(2.0 * mu + 2.0 * sigma * sigma)
        if self.cap is None:
            return m1, m2
        z = (math.log(c) - mu) / sigma
        tail = _cdf(-z)
        return (
            m1 * _cdf(z - sigma) + c * tail,
            m2 * _cdf(z - 2.0 * sigma) + c * c * tail,
        )

    def _exact_scv(self, mean: float, second: float) -> float:
        if self.cap is None:
            return math.expm1(self._sigma * self._sigma)
        return super()._exact_scv(mean, second)

    def _params(self) -> Any:
        if self.median is not None:
            return self._with_cap({"median": self.median, "p95": self.p95})
        return self._with_cap({"mean": self.given_mean, "cv": self.cv})

    @property
    def mu(self) -> float:
        """The mean of the underlying normal (log scale)."""
        return self._mu

    @property
    def sigma(self) -> float:
        """The standard deviation of the underlying normal (log scale)."""
        return self._sigma

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value from ``rng``."""
        # A hot path: read the private parameters from pydantic's dict directly, since an
        # attribute access to a private attribute goes through BaseModel.__getattr__ (~1 us).
        private = self.__pydantic_private__
        x = float(rng.lognormal(private["_mu"], private["_sigma"]))
        return x if self.cap is None or x <= self.cap else self.cap

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values from ``rng``."""
        return self._clamp_many(rng.lognormal(self._mu, self._sigma, n))


class Empirical(Distribution):
    """Each listed value equally likely: ``{empirical: [1ms, 2ms, 5ms]}``."""

    kind: ClassVar[str] = "empirical"
    points: tuple[float, ...]
    _array: np.ndarray = PrivateAttr(default_factory=lambda: np.zeros(0))

    @classmethod
    def _from_yaml(cls, params: Any) -> Any:
        if not isinstance(params, list):
            raise ValueError(f"expected a list of values, got {show(params)}")
        if not 1 <= len(params) <= MAX_EMPIRICAL:
            raise ValueError(f"must list between 1 and {MAX_EMPIRICAL} values, got {len(params)}")
        points = []
        for i, item in enumerate(params):
            try:
                points.append(parse_quantity(item))
            except ValueError as exc:
                raise ValueError(f"value {i}: {exc}") from None
        return {"points": points}

    def _prepare(self) -> None:
        if not self.points:
            raise ValueError("an empirical distribution needs at least one value")
        array = np.asarray(self.points, dtype=np.float64)
        array.flags.writeable = False
        self._array = array

    def __eq__(self, other: object) -> bool:
        """Compare by the listed values (the cached array is derived from them)."""
        if not isinstance(other, Empirical):
            return NotImplemented
        return self.points == other.points

    def __hash__(self) -> int:
        """Hash by the listed values."""
        return hash((self.kind, self.points))

    def _moments(self) -> tuple[float, float]:
        n = len(self.points)
        return math.fsum(self.points) / n, math.fsum(x * x for x in self.points) / n

    def _exact_scv(self, mean: float, second: float) -> float:
        if mean <= 0.0:
            return 0.0
        return math.fsum(((x - mean) / mean) ** 2 for x in self.points) / len(self.points)

    def _params(self) -> Any:
        return list(self.points)

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one of the values, uniformly, from ``rng``."""
        return self.points[int(rng.integers(len(self.points)))]

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` of the values, uniformly, from ``rng``."""
        return self._array[rng.integers(len(self.points), size=n)]


KINDS: dict[str, type[Distribution]] = {
    cls.kind: cls for cls in (Constant, Exponential, Uniform, Normal, LogNormal, Empirical)
}
"""Every distribution kind by its YAML key."""


def _kind_of(value: Any) -> str | None:
    if isinstance(value, Distribution):
        return value.kind
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    return None  # pragma: no cover - _check_shape lets nothing else through


def _check_shape(value: Any) -> Any:
    """Check that ``value`` is a one-key mapping naming a kind; a bare value means a constant."""
    if isinstance(value, Distribution):
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"constant": value}
    kinds = ", ".join(KINDS)
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a distribution (a mapping with one key: {kinds}), got {show(value)}"
        )
    if len(value) != 1:
        keys = ", ".join(str(k) for k in value) or "none"
        raise ValueError(f"a distribution has exactly one key ({kinds}), got {keys}")
    key = next(iter(value))
    if key not in KINDS:
        raise ValueError(f"unknown distribution {show(key)} (use one of {kinds})")
    return value


Dist = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in KINDS.items())],  # type: ignore[misc]  # noqa: UP007
    Discriminator(_kind_of),
    BeforeValidator(_check_shape),
]
"""A distribution field: validates any kind from its one-key YAML mapping."""


def _reject_time_units(value: Any) -> Any:
    """Reject duration units in a distribution of currency units (a price cannot be '20ms')."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            letters = item.strip().lstrip("0123456789.+-eE ").lower()
            if letters in DURATION_UNITS and letters:
                raise ValueError(f"prices are in currency units, not durations: got {show(item)}")
    return value


PriceDist = Annotated[Dist, BeforeValidator(_reject_time_units)]
"""A distribution of prices in currency units (plain numbers; the engine rounds to cents)."""


_ADAPTER: TypeAdapter[Distribution] = TypeAdapter(Dist)


def distribution(spec: Any) -> Distribution:
    """Build a distribution from its YAML form, e.g. ``distribution({"exponential": {"mean": 7}})``.

    Raises ``pydantic.ValidationError`` on bad input (the scenario loader reports it properly).
    """
    return _ADAPTER.validate_python(spec)
