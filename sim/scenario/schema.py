"""The scenario schema: frozen pydantic models, validated once at the edge (principle 6).

After parsing, times are seconds (float), rates are events per second (float), money is integer
minor units (cents), percentages of coupons are integer basis points, and distributions are
:mod:`sim.scenario.distributions` objects. Every model forbids unknown keys and is frozen.

Defaults come from shared/REFERENCE.md where it has a figure (cited beside each default); the rest
are the project's illustrative assumptions, marked so. ``scenarios/smoke.yaml`` shows every key.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    FieldSerializationInfo,
    PlainSerializer,
    PrivateAttr,
    Strict,
    Tag,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from sim.scenario.distributions import Dist, Distribution, PriceDist, distribution
from sim.scenario.errors import Invalid
from sim.scenario.units import (
    format_money,
    format_percent_bp,
    format_seconds,
    parse_duration,
    parse_money,
    parse_percent_bp,
    parse_rate,
    show,
)
from sim.scenario.workloads import (
    MAX_STATES,
    TPCW_PROFILES,
    BehaviorGraph,
    PageDemand,
    builtin_page_demands,
    builtin_profile,
    with_timing,
)
from sim.services.sqlite_store import MEMORY

# --- limits ---------------------------------------------------------------------------------
MAX_LIST = 10_000
"""The longest list any scenario key accepts (schedules, limited stock, empirical values)."""

MAX_SERVERS = 100_000
"""The most servers, workers or connections one station may have."""

MAX_HORIZON = 366 * 86400.0
"""The longest simulated horizon accepted: a year (leap or not)."""

SHARE_TOLERANCE = 1e-9
"""How far gateway or warehouse shares may sum from 1."""

MAX_BREAKDOWNS = 100_000
"""The most failures a recurring fault (``breakdown``) may be expected to cause in a run."""

MAX_REPLICATIONS = 10_000
"""The most replications of one scenario a run or a comparison may ask for."""

MAX_INTERVALS = 1_000_000
"""The most metrics intervals a run may have (a year at the default minute is 527,040): every
station keeps a row per interval, so a microsecond interval would exhaust memory."""

# --- field types ----------------------------------------------------------------------------


def _number(value: Any) -> Any:
    """Accept a real number (not a bool); reject NaN and infinity with a clear message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be finite, got {show(value)}")
    return value


_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def _name(value: Any) -> Any:
    """Accept a name usable in a dotted override path: a letter, then letters, digits, - or _."""
    if not isinstance(value, str):
        raise ValueError(f"expected a name, got {show(value)}")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"a name starts with a letter and has only letters, digits, '-' and '_' "
            f"(at most 64), got {show(value)}"
        )
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration: ``"20ms"``, ``"1.5s"``, ``"15m"``, ``"2h"``, ``"1d"`` or a number of seconds."""

PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
"""A duration greater than zero."""

Rate = Annotated[float, BeforeValidator(parse_rate)]
"""A rate: ``"120/min"``, ``"2/s"``, ``"1000/h"`` or a number per second."""

Money = Annotated[int, BeforeValidator(parse_money), PlainSerializer(format_money)]
"""An amount in currency units in YAML (``"19.99"``), integer minor units (cents) once parsed."""

Probability = Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)]
"""A probability or share in [0, 1]."""

Number = Annotated[float, BeforeValidator(_number)]
"""A finite real number."""

Int = Annotated[int, Strict()]
"""An integer (no bools, no floats, no strings)."""

Name = Annotated[str, BeforeValidator(_name)]
"""A gateway, warehouse or page name: a letter, then letters, digits, '-' or '_'."""


class Model(BaseModel):
    """Base of every scenario model: unknown keys are errors and instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _default(spec: Any) -> Any:
    """Return a default factory building the distribution ``spec`` (YAML form)."""
    return lambda: distribution(spec)


# TPC-W: think time exponential, mean 7 s, capped at 70 s (REFERENCE.md, Workloads).
_TPCW_THINK: dict[str, Any] = {"exponential": {"mean": "7s", "cap": "70s"}}

# --- catalog --------------------------------------------------------------------------------


class Popularity(Model):
    """How product requests spread over the catalog: Zipf with exponent ``zipf`` over ranks."""

    # Web and product popularity exponents are 0.6-1.0; 0.8 is a fair default (REFERENCE.md).
    zipf: Number = Field(0.8, ge=0, le=10)


class LimitedStock(Model):
    """A stock level for the SKU of one popularity rank, or for the ``count`` most popular SKUs."""

    sku_rank: Int | None = Field(None, ge=1)
    count: Int | None = Field(None, ge=1)
    stock: Int = Field(ge=0)

    @model_validator(mode="after")
    def _one_target(self) -> LimitedStock:
        """Require exactly one of sku_rank and count."""
        if (self.sku_rank is None) == (self.count is None):
            raise ValueError("give exactly one of sku_rank and count")
        return self


class Stock(Model):
    """Initial stock per SKU; ``limited`` entries (applied in order, later wins) set others."""

    initial: Int = Field(100, ge=0, le=10**9)  # illustrative assumption
    limited: tuple[LimitedStock, ...] = Field((), max_length=MAX_LIST)


class Catalog(Model):
    """The product catalog the engine generates: size, categories, popularity, prices, stock.

    ``price`` is a distribution in currency units; the catalog builder rounds each sample to whole
    cents (through ``Money``) and uses at least one cent.
    """

    products: Int = Field(1000, ge=1, le=10_000_000)
    categories: Int = Field(20, ge=1, le=100_000)
    popularity: Popularity = Field(default_factory=Popularity)
    # Illustrative assumption: a median price of 25 with a long tail (p95 at 150).
    price: PriceDist = Field(default_factory=_default({"lognormal": {"median": 25, "p95": 150}}))
    stock: Stock = Field(default_factory=Stock)

    @model_validator(mode="after")
    def _ranks_exist(self) -> Catalog:
        """Require limited-stock ranks and counts within the catalog."""
        problems = []
        for i, entry in enumerate(self.stock.limited):
            for key, rank in (("sku_rank", entry.sku_rank), ("count", entry.count)):
                if rank is not None and rank > self.products:
                    problems.append(
                        (
                            ("stock", "limited", i, key),
                            f"must be <= products ({self.products}), got {rank}",
                        )
                    )
        if problems:
            raise Invalid(problems)
        return self


class Population(Model):
    """The registered customers: how many, and the share of sessions by returning customers."""

    users: Int = Field(10_000, ge=1, le=100_000_000)  # illustrative assumption
    returning_share: Probability = 0.4  # as in ARCHITECTURE.md's example scenario


# --- arrivals -------------------------------------------------------------------------------


class RateStep(Model):
    """From time ``at`` on, new sessions arrive at ``rate`` (until the next step)."""

    at: Seconds
    rate: Rate


class Closed(Model):
    """A closed population: ``users`` shoppers, each starting a session ``think`` after the last."""

    users: Int = Field(ge=1, le=1_000_000)
    think: Dist = Field(default_factory=_default(_TPCW_THINK))


class Arrivals(Model):
    """Session arrivals: open (``rate`` or ``schedule``) and/or a ``closed`` population.

    ``rate`` is a Poisson rate; ``schedule`` a piecewise-constant rate from each step's ``at`` on;
    ``closed`` adds always-on shoppers. At least one is given; rate and schedule exclude each other.
    """

    rate: Annotated[float, BeforeValidator(parse_rate), Field(gt=0)] | None = None
    schedule: tuple[RateStep, ...] | None = Field(None, min_length=1, max_length=MAX_LIST)
    closed: Closed | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Arrivals:
        """Require rate or schedule (not both) or a closed population; check the schedule."""
        if self.rate is not None and self.schedule is not None:
            raise Invalid.at(("schedule",), "give either rate or schedule, not both")
        if self.rate is None and self.schedule is None and self.closed is None:
            raise ValueError("give a rate, a schedule or a closed population")
        if self.schedule is not None:
            if self.schedule[0].at != 0.0:
                raise Invalid.at(
                    ("schedule", 0, "at"),
                    f"the first step must be at 0, got {format_seconds(self.schedule[0].at)}",
                )
            for i in range(1, len(self.schedule)):
                before, now = self.schedule[i - 1].at, self.schedule[i].at
                if now <= before:
                    raise Invalid.at(
                        ("schedule", i, "at"),
                        f"must be later than the step before ({format_seconds(before)}), "
                        f"got {format_seconds(now)}",
                    )
        return self

    def rate_at(self, t: float) -> float:
        """Return the open arrival rate (per second) in force at simulated time ``t``."""
        if self.rate is not None:
            return self.rate
        if self.schedule is None:
            return 0.0
        current = 0.0
        for step in self.schedule:
            if step.at > t:
                break
            current = step.rate
        return current


# --- behaviour ------------------------------------------------------------------------------


def _state(value: Any) -> Any:
    """Accept a page name as a transition key."""
    return _name(value)


StateName = Annotated[str, BeforeValidator(_state)]


class Graph(Model):
    """A custom behaviour graph: transitions between pages, with an optional exit page."""

    start: StateName
    exit: StateName | None = None
    transitions: dict[StateName, dict[StateName, Probability]] = Field(max_length=MAX_STATES)
    think_time: Dist = Field(default_factory=_default(_TPCW_THINK))
    session_length: Dist | None = None
    _compiled: BehaviorGraph | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> Graph:
        """Check rows sum to 1, names exist and sessions can end; build the sampling tables."""
        if self.exit is None and self.session_length is None:
            raise Invalid.at(
                ("exit",), "give an exit page or a session_length, or sessions never end"
            )
        self._compiled = BehaviorGraph.from_table(
            self.transitions,
            start=self.start,
            exit=self.exit,
            think_time=self.think_time,
            session_length=self.session_length,
        )
        return self

    def to_graph(self) -> BehaviorGraph:
        """Return the compiled graph."""
        assert self._compiled is not None
        return self._compiled


class Behavior(Model):
    """How shoppers move between pages: a built-in TPC-W ``profile`` or a custom ``graph``.

    With a profile, ``think_time`` and ``session_length`` may replace TPC-W's (exponential, mean
    7 s capped at 70 s; exponential, mean 15 min capped at 60 min); a graph sets its own.
    """

    profile: Literal["tpcw-browsing", "tpcw-shopping", "tpcw-ordering"] | None = None
    graph: Graph | None = None
    think_time: Dist | None = None
    session_length: Dist | None = None
    _compiled: BehaviorGraph | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_kind(self) -> Behavior:
        """Require exactly one of profile and graph; build the behaviour graph."""
        if (self.profile is None) == (self.graph is None):
            raise ValueError(f"give either profile ({', '.join(TPCW_PROFILES)}) or graph")
        if self.graph is not None:
            for key in ("think_time", "session_length"):
                if getattr(self, key) is not None:
                    raise Invalid.at((key,), "with a custom graph, set it inside graph")
            self._compiled = self.graph.to_graph()
        else:
            assert self.profile is not None
            self._compiled = with_timing(
                builtin_profile(self.profile), self.think_time, self.session_length
            )
        return self

    def to_graph(self) -> BehaviorGraph:
        """Return the behaviour graph (built-in or custom) with think time and session length."""
        assert self._compiled is not None
        return self._compiled


# --- stations -------------------------------------------------------------------------------


class AppStation(Model):
    """The app servers: each page holds one server for its service time times the page's factor."""

    servers: Int = Field(8, ge=1, le=MAX_SERVERS)
    # As in ARCHITECTURE.md's example scenario: lognormal, mean 20 ms, cv 0.5.
    service: Dist = Field(default_factory=_default({"lognormal": {"mean": "20ms", "cv": 0.5}}))


class DatabaseStation(Model):
    """The database connection pool: each query holds a connection for its query time."""

    pool: Int = Field(20, ge=1, le=MAX_SERVERS)
    query: Dist = Field(default_factory=_default({"exponential": {"mean": "5ms"}}))


class CacheStation(Model):
    """The Redis-like cache in front of the database: servers, service time, eviction policy.

    ``capacity`` counts entries; ``ttl`` (optional for lru / lfu, required for ttl) expires an
    entry that long after it was written.
    """

    servers: Int = Field(2, ge=1, le=MAX_SERVERS)
    service: Dist = Field(default_factory=_default({"constant": "0.3ms"}))
    policy: Literal["lru", "lfu", "ttl"] = "lru"
    capacity: Int = Field(1000, ge=1, le=100_000_000)
    ttl: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _ttl_given(self) -> CacheStation:
        """Require a ttl for the ttl policy."""
        if self.policy == "ttl" and self.ttl is None:
            raise Invalid.at(("ttl",), "required when policy is ttl")
        return self


class Stations(Model):
    """The shop's stations: app servers, database pool and cache."""

    app: AppStation = Field(default_factory=AppStation)
    database: DatabaseStation = Field(default_factory=DatabaseStation)
    cache: CacheStation = Field(default_factory=CacheStation)


class PageOverride(Model):
    """Replace some of a page's demands (see ``sim/scenario/data/tpcw.yaml``, ``pages``)."""

    app: Number | None = Field(None, gt=0, le=1000)
    queries: Int | None = Field(None, ge=0, le=1000)
    cache_lookups: Int | None = Field(None, ge=0, le=MAX_LIST)


# --- payments -------------------------------------------------------------------------------


class Gateway(Model):
    """A payment gateway: concurrent capacity, latency, declines, client timeout, traffic share."""

    name: Name
    servers: Int = Field(8, ge=1, le=MAX_SERVERS)
    # Authorisation latency: lognormal, median 0.3-0.5 s, p95 about 2 s (REFERENCE.md, gateways).
    latency: Dist = Field(default_factory=_default({"lognormal": {"median": "350ms", "p95": "2s"}}))
    # Declines: card-not-present 4-8 %, new web customers 6-10 % (REFERENCE.md): 6 %.
    decline_rate: Probability = 0.06
    # A client timeout well under the processors' 60-70 s (REFERENCE.md); short ones cause
    # payments the shop marks failed but the provider authorised.
    timeout: PositiveSeconds = 20.0
    share: Probability | None = None


class Backoff(Model):
    """Retry backoff: ``min(base * 2**(n-1), cap)``, times a factor in [0.5, 1] with ``jitter``."""

    # stripe-python: min(0.5 * 2^(n-1), 5) s with jitter in [0.5, 1] (REFERENCE.md).
    base: PositiveSeconds = 0.5
    cap: PositiveSeconds = 5.0
    jitter: Annotated[bool, Strict()] = True

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        """Require base <= cap."""
        if self.base > self.cap:
            raise Invalid.at(
                ("base",),
                f"must not exceed cap ({format_seconds(self.cap)}), "
                f"got {format_seconds(self.base)}",
            )
        return self


class Retries(Model):
    """Client retries of a failed payment attempt (connection errors, timeouts, 5xx)."""

    # stripe-python retries twice by default: three attempts in all (REFERENCE.md).
    max_attempts: Int = Field(3, ge=1, le=100)
    backoff: Backoff = Field(default_factory=Backoff)


class Fraud(Model):
    """Fraud screening before authorisation (illustrative thresholds, not from a source).

    An order above ``max_amount`` is refused; so is a customer's attempt beyond ``max_attempts``
    payment attempts within ``window``.
    """

    enabled: Annotated[bool, Strict()] = True
    max_amount: Money = 500_000  # 5000.00
    max_attempts: Int = Field(5, ge=1, le=1000)
    window: PositiveSeconds = 3600.0


def _share_problems(items: tuple[Any, ...], what: str) -> list[tuple[tuple[str | int, ...], str]]:
    """Check unique names and shares that are all given and sum to 1 (within 1e-9)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.name in seen:
            problems.append(((what, i, "name"), f"duplicate name {item.name!r}"))
        seen.add(item.name)
    missing = [i for i, item in enumerate(items) if item.share is None]
    if missing:
        problems.append(((what, missing[0], "share"), "give a share for every entry or for none"))
        return problems
    total = math.fsum(item.share for item in items)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        problems.append(((what,), f"shares sum to {total:.12g}, not 1"))
    return problems


def _even_shares(data: Any, key: str) -> Any:
    """When no entry of ``data[key]`` gives a share, give each an equal one."""
    if isinstance(data, dict) and isinstance(data.get(key), list):
        entries = data[key]
        if entries and all(isinstance(e, dict) and "share" not in e for e in entries):
            share = 1.0 / len(entries)
            return {**data, key: [{**e, "share": share} for e in entries]}
    return data


class Payments(Model):
    """Payment gateways (traffic split by ``share``, equal if none is given), retries, fraud."""

    gateways: tuple[Gateway, ...] = Field(
        default_factory=lambda: (Gateway(name="card", share=1.0),), min_length=1, max_length=100
    )
    retries: Retries = Field(default_factory=Retries)
    fraud: Fraud = Field(default_factory=Fraud)

    @model_validator(mode="before")
    @classmethod
    def _default_shares(cls, data: Any) -> Any:
        """Split traffic equally when no gateway gives a share."""
        return _even_shares(data, "gateways")

    @model_validator(mode="after")
    def _shares(self) -> Payments:
        """Require unique gateway names and shares summing to 1."""
        problems = _share_problems(self.gateways, "gateways")
        if problems:
            raise Invalid(problems)
        return self

    def gateway_names(self) -> tuple[str, ...]:
        """Return the gateway names in order."""
        return tuple(g.name for g in self.gateways)


# --- fulfilment -----------------------------------------------------------------------------


class Warehouse(Model):
    """A warehouse: pickers (workers), pick-and-pack time per order, share of orders."""

    name: Name
    workers: Int = Field(10, ge=1, le=MAX_SERVERS)
    # Illustrative assumption: a few minutes per order.
    pick: Dist = Field(default_factory=_default({"lognormal": {"mean": "3m", "cv": 0.5}}))
    share: Probability | None = None


class Fulfilment(Model):
    """Warehouses, carrier hand-over and delivery delays, returns (illustrative defaults)."""

    warehouses: tuple[Warehouse, ...] = Field(
        default_factory=lambda: (Warehouse(name="main", share=1.0),), min_length=1, max_length=100
    )
    ship_delay: Dist = Field(default_factory=_default({"uniform": {"low": "1h", "high": "12h"}}))
    delivery_delay: Dist = Field(
        default_factory=_default({"lognormal": {"median": "2d", "p95": "5d"}})
    )
    return_rate: Probability = 0.06  # as in ARCHITECTURE.md's example scenario
    return_delay: Dist = Field(
        default_factory=_default({"lognormal": {"median": "7d", "p95": "21d"}})
    )

    @model_validator(mode="before")
    @classmethod
    def _default_shares(cls, data: Any) -> Any:
        """Split orders equally when no warehouse gives a share."""
        return _even_shares(data, "warehouses")

    @model_validator(mode="after")
    def _shares(self) -> Fulfilment:
        """Require unique warehouse names and shares summing to 1."""
        problems = _share_problems(self.warehouses, "warehouses")
        if problems:
            raise Invalid(problems)
        return self

    def warehouse_names(self) -> tuple[str, ...]:
        """Return the warehouse names in order."""
        return tuple(w.name for w in self.warehouses)


# --- coupons --------------------------------------------------------------------------------

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _code(value: Any) -> Any:
    """Accept a coupon code: letters, digits, '-' and '_' (at most 64)."""
    if not isinstance(value, str) or not _CODE_RE.match(value):
        raise ValueError(
            f"a coupon code has only letters, digits, '-' and '_' (at most 64), got {show(value)}"
        )
    return value


class Coupon(Model):
    """A coupon code offered at checkout.

    ``value`` is a percentage (``kind: percent``; 10 or "12.5", stored as basis points: 1000, 1250)
    or an amount (``kind: fixed``; "5.00", stored as cents: 500). ``categories`` are category
    numbers 1..catalog.categories (empty: every category). ``valid_from`` / ``valid_until`` are
    simulated times; ``share_of_checkouts`` is the chance a checkout tries this code.
    """

    code: Annotated[str, BeforeValidator(_code)]
    kind: Literal["percent", "fixed"]
    value: int
    min_purchase: Money = 0
    usage_limit: Int | None = Field(None, ge=1)
    per_customer_limit: Int | None = Field(None, ge=1)
    categories: tuple[Annotated[Int, Field(ge=1)], ...] = Field((), max_length=MAX_LIST)
    stackable: Annotated[bool, Strict()] = False
    valid_from: Seconds = 0.0
    valid_until: Seconds | None = None
    share_of_checkouts: Probability = 0.1  # illustrative assumption

    @field_validator("value", mode="before")
    @classmethod
    def _parse_value(cls, value: Any, info: ValidationInfo) -> Any:
        """Read a percentage as basis points or an amount as cents, by ``kind``; require > 0."""
        kind = info.data.get("kind")
        if kind == "percent":
            parsed = parse_percent_bp(value)
        elif kind == "fixed":
            parsed = parse_money(value)
        else:
            return 0  # the kind is wrong and reported; nothing sensible to say about the value
        if parsed <= 0:
            raise ValueError(f"must be > 0, got {show(value)}")
        return parsed

    @field_serializer("value")
    def _dump_value(self, value: int, info: FieldSerializationInfo) -> str:
        """Dump the value in the form it was written in (a percentage or an amount)."""
        return format_percent_bp(value) if self.kind == "percent" else format_money(value)

    @model_validator(mode="after")
    def _window(self) -> Coupon:
        """Require valid_until after valid_from."""
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise Invalid.at(
                ("valid_until",),
                f"must be later than valid_from ({format_seconds(self.valid_from)}), "
                f"got {format_seconds(self.valid_until)}",
            )
        return self


# --- faults ---------------------------------------------------------------------------------


class _Fault(Model):
    """Base of the fault entries: each is tagged by the key naming its kind."""

    kind: ClassVar[str] = ""

    @property
    def target(self) -> str:
        """Return what the fault hits (a station, ``payments.<gateway>``, a gateway name...)."""
        return str(getattr(self, self.kind))


class Outage(_Fault):
    """``{outage: payments.<gateway> | warehouses.<name> | cache, at, duration}``: it is down."""

    kind: ClassVar[str] = "outage"
    outage: str
    at: Seconds
    duration: PositiveSeconds


class LatencySpike(_Fault):
    """``{latency_spike: app | database | cache | payments.<gateway>, at, duration, factor}``."""

    kind: ClassVar[str] = "latency_spike"
    latency_spike: str
    at: Seconds
    duration: PositiveSeconds
    factor: Number = Field(ge=1, le=1e6)


class CacheFlush(_Fault):
    """``{cache_flush: at}``: the cache loses every entry at that time."""

    kind: ClassVar[str] = "cache_flush"
    cache_flush: Seconds

    @property
    def at(self) -> float:
        """Return when the flush happens."""
        return self.cache_flush

    @property
    def target(self) -> str:
        """Return ``"cache"``."""
        return "cache"


class PoolShrinkTo(Model):
    """The size the database pool shrinks to (the engine uses the smaller of this and the pool)."""

    to: Int = Field(ge=1, le=MAX_SERVERS)


class PoolShrink(_Fault):
    """``{pool_shrink: {to: n}, at, duration}``: the database pool has ``n`` connections."""

    kind: ClassVar[str] = "pool_shrink"
    pool_shrink: PoolShrinkTo
    at: Seconds
    duration: PositiveSeconds

    @property
    def target(self) -> str:
        """Return ``"database"``."""
        return "database"


class GhostSuccess(_Fault):
    """``{ghost_success: gateway, share, at, duration}``: timed-out payments the gateway authorised.

    A ``share`` of the payments that time out at the shop during the window were in fact
    authorised by the provider: reconciliation must find them.
    """

    kind: ClassVar[str] = "ghost_success"
    ghost_success: str
    share: Probability
    at: Seconds
    duration: PositiveSeconds

    @property
    def gateway(self) -> str:
        """Return the gateway name (a ``payments.`` prefix removed)."""
        return self.ghost_success.removeprefix("payments.")


class Breakdown(_Fault):
    """``{breakdown: payments.<gateway> | warehouses.<name> | cache, mtbf, mttr}``: recurring.

    From ``at`` (default 0) until ``until`` (default: the horizon), the target runs for a time
    drawn from ``mtbf`` (mean time between failures), is down for a time drawn from ``mttr``
    (mean time to repair), and so on; both are drawn from the run's ``faults`` random streams.
    Each repair window is an outage of the target, recorded as a ``breakdown`` fault window.
    """

    kind: ClassVar[str] = "breakdown"
    breakdown: str
    mtbf: Dist
    mttr: Dist
    at: Seconds = 0.0
    until: Seconds | None = None

    @field_validator("mtbf", "mttr")
    @classmethod
    def _positive_mean(cls, value: Distribution) -> Distribution:
        """Require a positive mean time (a zero one would fail for ever at one instant)."""
        if not value.mean > 0:
            raise ValueError(f"the mean must be > 0, got {format_seconds(value.mean)}")
        return value

    @field_validator("until")
    @classmethod
    def _after_start(cls, value: float | None, info: ValidationInfo) -> float | None:
        """Require ``until`` later than ``at``."""
        at = info.data.get("at")
        if value is not None and at is not None and value <= at:
            raise ValueError(
                f"must be later than at ({format_seconds(at)}), got {format_seconds(value)}"
            )
        return value

    def expected_failures(self, horizon: float) -> float:
        """Return the mean number of failures over the fault's window within ``horizon``."""
        end = horizon if self.until is None else min(self.until, horizon)
        return max(end - self.at, 0.0) / (self.mtbf.mean + self.mttr.mean)


FAULT_KINDS: dict[str, type[_Fault]] = {
    cls.kind: cls for cls in (Outage, LatencySpike, CacheFlush, PoolShrink, GhostSuccess, Breakdown)
}
"""Every fault kind by the key that tags it."""


def _fault_kind(value: Any) -> str | None:
    if isinstance(value, _Fault):
        return value.kind
    if isinstance(value, dict):
        return next((k for k in value if k in FAULT_KINDS), None)
    return None  # pragma: no cover - _fault_shape lets nothing else through


def _fault_shape(value: Any) -> Any:
    """Require a mapping with exactly one fault-kind key."""
    kinds = ", ".join(FAULT_KINDS)
    if isinstance(value, _Fault):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"expected a fault (a mapping with one of {kinds}), got {show(value)}")
    found = [k for k in value if k in FAULT_KINDS]
    if len(found) != 1:
        got = ", ".join(str(k) for k in value) or "none"
        raise ValueError(f"a fault has exactly one of {kinds} (keys given: {got})")
    return value


Fault = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in FAULT_KINDS.items())],  # type: ignore[misc]  # noqa: UP007
    Discriminator(_fault_kind),
    BeforeValidator(_fault_shape),
]
"""A fault entry of any kind."""


# --- storage --------------------------------------------------------------------------------

STORAGE_KINDS = ("memory", "sqlite")
"""Where a run keeps the shop's state: the in-memory store or SQLite."""


def _storage(value: Any) -> Any:
    """Accept the short forms ``memory`` and ``sqlite`` for ``{kind: memory}`` and so on."""
    if isinstance(value, str):
        if value not in STORAGE_KINDS:
            raise ValueError(f"must be one of {', '.join(STORAGE_KINDS)}, got {show(value)}")
        return {"kind": value}
    return value


class Storage(Model):
    """The store of the shop's state: in memory (fast) or SQLite (real transactions).

    ``path`` (SQLite only) names a database file; without it the SQLite database is in
    memory. Replication k > 0 writes its own file, ``<stem>-rep<k><suffix>``.
    """

    kind: Literal["memory", "sqlite"] = "memory"
    path: str | None = Field(None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _path_needs_sqlite(self) -> Storage:
        """Refuse a path with ``kind: memory`` (only SQLite keeps a file)."""
        if self.path is not None and self.kind != "sqlite":
            raise Invalid([(("path",), "a path needs kind: sqlite (memory keeps no file)")])
        if self.path is not None and "\0" in self.path:
            raise Invalid([(("path",), "a file name cannot hold a NUL character")])
        return self

    @property
    def file(self) -> str | None:
        """Return the file the shop is kept in, as written (None: in memory, or SQLite's)."""
        if self.kind != "sqlite" or self.path is None or self.path == MEMORY:
            return None
        return self.path

    def _dump(self) -> Any:
        """Return the short form when there is no path (``memory``, ``sqlite``)."""
        return self.kind if self.path is None else {"kind": self.kind, "path": self.path}


StorageOption = Annotated[
    Storage,
    BeforeValidator(_storage),
    PlainSerializer(lambda storage: storage._dump()),
]
"""``memory`` | ``sqlite`` | ``{kind: sqlite, path: FILE}``."""


# --- service levels and metrics -------------------------------------------------------------


class Slo(Model):
    """Service-level objectives the report checks."""

    page_p95: PositiveSeconds = 0.1  # as in ARCHITECTURE.md's example scenario
    checkout_p95: PositiveSeconds = 2.0  # as in ARCHITECTURE.md's example scenario
    # Declines alone are 4.5-12 % (REFERENCE.md), so 90 % successful payments is a fair floor.
    payment_success: Probability = 0.9


HISTOGRAM_WINDOWS = 120
"""The most latency-histogram windows ``histogram_interval: auto`` gives a run (aggregate mode)."""


def _histogram_interval(value: Any) -> Any:
    """Accept ``"auto"`` (sized from the horizon) or a duration greater than zero."""
    if value == "auto":
        return value
    seconds = parse_duration(value)
    if not seconds > 0:
        raise ValueError(f"must be greater than 0, got {show(value)}")
    return seconds


class Metrics(Model):
    """What the recorder keeps: one row per request, or streaming aggregates per interval.

    In aggregate mode the latency histograms are kept per window of ``histogram_interval``, a
    whole number of intervals. ``auto`` (the default) takes the fewest intervals per window
    that leave at most :data:`HISTOGRAM_WINDOWS` windows in the horizon: one interval per
    window for a short run, wider windows for a long one, so the histograms' memory does not
    grow with the horizon. Counts and sums stay per interval either way.
    """

    requests: Literal["rows", "aggregate"] = "rows"
    interval: PositiveSeconds = 60.0
    histogram_interval: Annotated[float | Literal["auto"], BeforeValidator(_histogram_interval)] = (
        "auto"
    )

    @model_validator(mode="after")
    def _whole_intervals(self) -> Metrics:
        """Require an explicit histogram interval to be a whole number of intervals."""
        if self.histogram_interval != "auto":
            ratio = self.histogram_interval / self.interval
            if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-9 * ratio:
                raise Invalid.at(
                    ("histogram_interval",),
                    f"must be a whole number of intervals ({format_seconds(self.interval)} "
                    f"each), got {format_seconds(self.histogram_interval)}",
                )
        return self

    def intervals_per_window(self, horizon: float) -> int:
        """Return how many intervals one latency-histogram window spans over ``horizon``."""
        if self.histogram_interval == "auto":
            intervals = math.ceil(horizon / self.interval)
            return max(1, math.ceil(intervals / HISTOGRAM_WINDOWS))
        return round(self.histogram_interval / self.interval)


# --- the scenario ---------------------------------------------------------------------------


def _warmup(value: Any) -> Any:
    """Accept ``"auto"`` (the analysis picks the warm-up) or a duration."""
    return value if value == "auto" else parse_duration(value)


class Scenario(Model):
    """A complete, validated scenario: everything one simulation run needs besides its seed."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    seed: Int = Field(0, ge=0, le=2**64 - 1)
    horizon: PositiveSeconds = Field(le=MAX_HORIZON)
    warmup: Annotated[float | Literal["auto"], BeforeValidator(_warmup)] = 0.0
    replications: Int = Field(1, ge=1, le=MAX_REPLICATIONS)
    catalog: Catalog = Field(default_factory=Catalog)
    population: Population = Field(default_factory=Population)
    arrivals: Arrivals
    behavior: Behavior = Field(default_factory=lambda: Behavior(profile="tpcw-shopping"))
    stations: Stations = Field(default_factory=Stations)
    pages: dict[StateName, PageOverride] = Field(default_factory=dict, max_length=MAX_STATES)
    payments: Payments = Field(default_factory=Payments)
    fulfilment: Fulfilment = Field(default_factory=Fulfilment)
    coupons: tuple[Coupon, ...] = Field((), max_length=1000)
    faults: tuple[Fault, ...] = Field((), max_length=1000)
    slo: Slo = Field(default_factory=Slo)
    metrics: Metrics = Field(default_factory=Metrics)
    storage: StorageOption = Field(default_factory=Storage)
    _page_demands: dict[str, PageDemand] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        """Check what spans sections: warmup, page names, fault targets, coupon categories."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.warmup != "auto" and self.warmup >= self.horizon:
            problems.append(
                (
                    ("warmup",),
                    f"must be less than the horizon ({format_seconds(self.horizon)}), "
                    f"got {format_seconds(self.warmup)}",
                )
            )
        intervals = math.ceil(self.horizon / self.metrics.interval)
        if intervals > MAX_INTERVALS:
            problems.append(
                (
                    ("metrics", "interval"),
                    f"{format_seconds(self.metrics.interval)} makes {intervals:,} intervals of "
                    f"the horizon (at most {MAX_INTERVALS:,}): make it at least "
                    f"{format_seconds(self.horizon / MAX_INTERVALS)}",
                )
            )
        graph = self.behavior.to_graph()
        for page in self.pages:
            if page not in graph.states:
                problems.append(
                    (("pages", page), f"unknown page {page!r} (pages: {', '.join(graph.states)})")
                )
        problems.extend(self._fault_problems())
        codes: set[str] = set()
        for i, coupon in enumerate(self.coupons):
            if coupon.code in codes:
                problems.append((("coupons", i, "code"), f"duplicate code {coupon.code!r}"))
            codes.add(coupon.code)
            for j, category in enumerate(coupon.categories):
                if category > self.catalog.categories:
                    problems.append(
                        (
                            ("coupons", i, "categories", j),
                            f"category {category} does not exist "
                            f"(the catalog has {self.catalog.categories})",
                        )
                    )
        if problems:
            raise Invalid(problems)
        self._page_demands = self._merge_page_demands(graph)
        return self

    def _fault_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        gateways = self.payments.gateway_names()
        warehouses = self.fulfilment.warehouse_names()
        known = {f"payments.{g}" for g in gateways} | {f"warehouses.{w}" for w in warehouses}
        outage_targets = sorted(known | {"cache"})
        spike_targets = sorted({f"payments.{g}" for g in gateways} | {"app", "database", "cache"})
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for i, fault in enumerate(self.faults):
            if isinstance(fault, Outage) and fault.outage not in outage_targets:
                problems.append(
                    (
                        ("faults", i, "outage"),
                        _unknown_target(fault.outage, outage_targets, gateways, warehouses),
                    )
                )
            elif isinstance(fault, LatencySpike) and fault.latency_spike not in spike_targets:
                problems.append(
                    (
                        ("faults", i, "latency_spike"),
                        _unknown_target(fault.latency_spike, spike_targets, gateways, warehouses),
                    )
                )
            elif isinstance(fault, Breakdown):
                if fault.breakdown not in outage_targets:
                    problems.append(
                        (
                            ("faults", i, "breakdown"),
                            _unknown_target(fault.breakdown, outage_targets, gateways, warehouses),
                        )
                    )
                expected = fault.expected_failures(self.horizon)
                if expected > MAX_BREAKDOWNS:
                    problems.append(
                        (
                            ("faults", i, "mtbf"),
                            f"about {expected:.3g} failures expected within the horizon "
                            f"(at most {MAX_BREAKDOWNS:,}): make mtbf or mttr longer",
                        )
                    )
            elif isinstance(fault, GhostSuccess) and fault.gateway not in gateways:
                problems.append(
                    (
                        ("faults", i, "ghost_success"),
                        f"unknown gateway {fault.gateway!r} (gateways: {', '.join(gateways)})",
                    )
                )
        return problems

    def _merge_page_demands(self, graph: BehaviorGraph) -> dict[str, PageDemand]:
        table = builtin_page_demands()
        merged: dict[str, PageDemand] = {}
        for page in graph.states:
            base = table.get(page, PageDemand())
            override = self.pages.get(page)
            if override is not None:
                base = PageDemand(
                    app=base.app if override.app is None else override.app,
                    queries=base.queries if override.queries is None else override.queries,
                    cache_lookups=(
                        base.cache_lookups
                        if override.cache_lookups is None
                        else override.cache_lookups
                    ),
                )
            merged[page] = base
        return merged

    def behavior_graph(self) -> BehaviorGraph:
        """Return the behaviour graph shoppers follow (built-in profile or custom graph)."""
        return self.behavior.to_graph()

    def page_demands(self) -> dict[str, PageDemand]:
        """Return each page's demands: the TPC-W table, then the scenario's ``pages`` overrides.

        Pages of a custom graph that TPC-W does not define start from ``PageDemand()``: app factor
        1.0, no queries, no cache look-ups.
        """
        return dict(self._page_demands)

    def to_data(self) -> dict[str, Any]:
        """Return the scenario as plain YAML-ready data that parses back to an equal scenario."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data


def _unknown_target(
    target: str, allowed: list[str], gateways: tuple[str, ...], warehouses: tuple[str, ...]
) -> str:
    """Explain an unknown fault target, naming the gateways or warehouses that exist."""
    if target.startswith("payments."):
        name = target.removeprefix("payments.")
        return f"unknown gateway {name!r} (gateways: {', '.join(gateways)})"
    if target.startswith("warehouses."):
        name = target.removeprefix("warehouses.")
        return f"unknown warehouse {name!r} (warehouses: {', '.join(warehouses)})"
    return f"unknown target {target!r} (use one of: {', '.join(allowed)})"


__all__ = [
    "FAULT_KINDS",
    "Arrivals",
    "Behavior",
    "Breakdown",
    "Catalog",
    "Coupon",
    "Fault",
    "Fulfilment",
    "Gateway",
    "Graph",
    "Metrics",
    "Payments",
    "Population",
    "Scenario",
    "Slo",
    "Stations",
    "Storage",
    "Warehouse",
]
