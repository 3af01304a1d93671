"""Payments: methods (strategies), fraud rules, the Payment state machine, idempotency, retries.

Payment methods share the :class:`PaymentMethod` protocol: :class:`Card` (Luhn check and
expiry by calendar month), :class:`Wallet` and :class:`BankTransfer` (IBAN mod-97). A
method's ``fingerprint`` identifies it without secret data (card brand and last four).

:class:`FraudRules` score a :class:`FraudContext` into a :class:`RiskAssessment`
(approve / review / block). :class:`Payment` follows :data:`PAYMENT_TRANSITIONS`:

    pending --authorize--> authorized --capture--> captured --refund--> (partially_)refunded
    pending --decline--> declined        authorized --void--> voided
    pending --fail--> failed --(retried)--> authorized / declined / failed
    pending / failed --cancel--> cancelled --(late approval) void--> voided
                                           --(late decline) decline--> declined

A payment is cancelled when the shop closes it while the gateway still holds the request
(its order was cancelled or expired): no money moved. If the gateway then approves, the
authorisation is voided at once (``void``: no capture, no charge); a late decline just
closes it as declined; a late failure leaves it cancelled.

Idempotency follows Stripe: an :class:`IdempotencyRecord` keeps the first outcome of a
request under its key for 24 hours; :func:`replay_or_conflict` tells a repeat (replay it)
from a reuse with other parameters (:class:`~sim.domain.errors.IdempotencyConflict`).
:class:`RetryPolicy` is stripe-python's backoff: ``min(0.5 * 2**(n-1), 5)`` seconds times a
jitter factor in [0.5, 1], never below 0.5 s; the random draw ``u`` comes from the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Literal, Protocol, runtime_checkable

from sim.domain.clock import DAY, HOUR, calendar_month
from sim.domain.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidAmount,
    InvalidPaymentMethod,
    InvalidValue,
    RefundExceedsCharge,
)
from sim.domain.events import (
    DomainEvent,
    EventSource,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    events_field,
)
from sim.domain.money import Money
from sim.domain.snapshots import ShallowCopied


# --- payment methods ------------------------------------------------------------------------
@runtime_checkable
class PaymentMethod(Protocol):
    """A way to pay (the strategy): validated against the calendar, identified safely."""

    @property
    def kind(self) -> str:
        """Return the method's kind (``"card"``, ``"wallet"``, ``"bank_transfer"``)."""
        ...

    @property
    def fingerprint(self) -> str:
        """Return an identifier of the method that holds no secret data."""
        ...

    @property
    def billing_country(self) -> str:
        """Return the ISO 3166 alpha-2 billing country ("" when unknown)."""
        ...

    def validate(self, now: float) -> None:
        """Raise InvalidPaymentMethod if the method cannot be used at time ``now``."""
        ...


def luhn_valid(number: str) -> bool:
    """Return True if ``number`` is all digits and passes the Luhn (mod 10) checksum."""
    if not number.isdigit() or not number.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = ord(ch) - 48
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """Return the card brand that ``number``'s prefix belongs to (``"card"`` if unknown)."""
    if not number[:4].isdigit():
        return "card"
    two, three, four = int(number[:2]), int(number[:3]), int(number[:4])
    if number[0] == "4":
        return "visa"
    if two in (34, 37):
        return "amex"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if four == 6011 or two == 65 or 644 <= three <= 649:
        return "discover"
    return "card"


def _check_country(kind: str, country: str) -> None:
    if len(country) != 2 or not (country.isascii() and country.isalpha() and country.isupper()):
        raise InvalidPaymentMethod(
            f"{kind}: billing country must be two capital letters (ISO 3166), got {country!r}"
        )


@dataclass(frozen=True, slots=True)
class Card:
    """A payment card; the number is kept out of reprs and fingerprints.

    Spaces and hyphens in the number are dropped. The card is valid through the last day
    of its expiry month.
    """

    number: str = field(repr=False)
    expiry_month: int
    expiry_year: int
    holder: str
    billing_country: str
    kind: ClassVar[str] = "card"

    def __post_init__(self) -> None:
        """Normalise the number (drop spaces and hyphens); reject a number that is no string."""
        if not isinstance(self.number, str):
            raise InvalidPaymentMethod(
                f"card number must be a string of digits, got {type(self.number).__name__}"
            )
        object.__setattr__(self, "number", self.number.replace(" ", "").replace("-", ""))

    @property
    def last4(self) -> str:
        """Return the last four digits of the number."""
        return self.number[-4:]

    @property
    def brand(self) -> str:
        """Return the card brand (visa, mastercard, amex, discover, card)."""
        return card_brand(self.number)

    @property
    def fingerprint(self) -> str:
        """Return brand and last four digits, e.g. ``"visa-4242"``."""
        return f"{card_brand(self.number)}-{self.number[-4:]}"

    def validate(self, now: float) -> None:
        """Check the number (12-19 digits, Luhn), the expiry, the holder and the country."""
        number = self.number
        if not 12 <= len(number) <= 19 or not luhn_valid(number):
            raise InvalidPaymentMethod(
                f"card ending {number[-4:]}: number fails the Luhn check or has "
                f"{len(number)} digits (12-19 expected)"
            )
        month, year = self.expiry_month, self.expiry_year
        if type(month) is not int or not 1 <= month <= 12 or type(year) is not int:
            raise InvalidPaymentMethod(
                f"card ending {number[-4:]}: bad expiry {month!r}/{year!r} (month 1-12, year YYYY)"
            )
        this_year, this_month = calendar_month(now)
        if (year, month) < (this_year, this_month):
            raise InvalidPaymentMethod(
                f"card ending {number[-4:]}: expired {month:02d}/{year} "
                f"(now {this_year}-{this_month:02d})"
            )
        if not self.holder.strip():
            raise InvalidPaymentMethod(f"card ending {number[-4:]}: holder name is empty")
        _check_country("card", self.billing_country)


WALLET_PROVIDERS = frozenset({"paypal", "apple_pay", "google_pay", "amazon_pay"})
"""Wallet providers the shop accepts."""


@dataclass(frozen=True, slots=True)
class Wallet:
    """A digital wallet account (PayPal, Apple Pay, ...)."""

    provider: str
    wallet_id: str = field(repr=False)
    billing_country: str = ""
    kind: ClassVar[str] = "wallet"

    @property
    def fingerprint(self) -> str:
        """Return the provider and the last four characters of the wallet id."""
        return f"{self.provider}-{self.wallet_id[-4:]}"

    def validate(self, now: float) -> None:
        """Check the provider is accepted and the wallet id is 1-64 non-blank characters."""
        if self.provider not in WALLET_PROVIDERS:
            raise InvalidPaymentMethod(
                f"wallet: provider must be one of {sorted(WALLET_PROVIDERS)}, got {self.provider!r}"
            )
        wallet_id = self.wallet_id
        if not 1 <= len(wallet_id) <= 64 or any(ch.isspace() for ch in wallet_id):
            raise InvalidPaymentMethod(
                f"wallet {self.provider}: id must be 1-64 characters without spaces "
                f"({len(wallet_id)} given)"
            )
        if self.billing_country:
            _check_country("wallet", self.billing_country)


IBAN_LENGTHS: Mapping[str, int] = {
    "AT": 20,
    "BE": 16,
    "CH": 21,
    "DE": 22,
    "DK": 18,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "IE": 22,
    "IT": 27,
    "LU": 20,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "SE": 24,
}
"""IBAN length per country for the countries checked strictly (others: 15-34)."""


def iban_valid(iban: str) -> bool:
    """Return True if ``iban`` (spaces allowed) is well formed and passes the mod-97 check."""
    iban = iban.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban.isascii() or not iban.isalnum():
        return False
    country, check = iban[:2], iban[2:4]
    if not country.isalpha() or not check.isdigit():
        return False
    if IBAN_LENGTHS.get(country, len(iban)) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


@dataclass(frozen=True, slots=True)
class BankTransfer:
    """A bank transfer from an IBAN account; the billing country is the IBAN's."""

    iban: str = field(repr=False)
    holder: str
    kind: ClassVar[str] = "bank_transfer"

    def __post_init__(self) -> None:
        """Normalise the IBAN (no spaces, capitals)."""
        object.__setattr__(self, "iban", self.iban.replace(" ", "").upper())

    @property
    def billing_country(self) -> str:
        """Return the IBAN's country code."""
        return self.iban[:2]

    @property
    def fingerprint(self) -> str:
        """Return the IBAN's country and last four characters, e.g. ``"iban-DE-3000"``."""
        return f"iban-{self.iban[:2]}-{self.iban[-4:]}"

    def validate(self, now: float) -> None:
        """Check the IBAN (length, mod 97) and the holder."""
        if not iban_valid(self.iban):
            raise InvalidPaymentMethod(
                f"bank transfer: IBAN {self.iban[:2]}..{self.iban[-4:]} fails the mod-97 check "
                f"or has a bad length ({len(self.iban)})"
            )
        if not self.holder.strip():
            raise InvalidPaymentMethod("bank transfer: holder name is empty")


# --- fraud rules ------------------------------------------------------------------------------
Decision = Literal["approve", "review", "block"]
"""What the fraud rules decide about a payment attempt."""


@dataclass(frozen=True, slots=True)
class FraudContext:
    """What the fraud rules know about one payment attempt."""

    user_id: str
    amount: Money
    billing_country: str
    shipping_country: str
    recent_attempt_times: tuple[float, ...]
    failed_attempts: int
    now: float


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """A fraud score 0..100, the decision it leads to, and the rules that fired."""

    score: int
    decision: Decision
    reasons: tuple[str, ...]


VELOCITY = "velocity"
"""Fraud reason: too many payment attempts by the user within the velocity window."""
LARGE_AMOUNT = "large_amount"
"""Fraud reason: the amount is at or above the large-amount threshold."""
COUNTRY_MISMATCH = "country_mismatch"
"""Fraud reason: billing and shipping countries differ (both known)."""
FAILED_ATTEMPTS = "failed_attempts"
"""Fraud reason: the user had too many failed (declined) attempts."""


@dataclass(frozen=True, slots=True)
class FraudRules:
    """Additive fraud scoring: each rule that fires adds its weight; the sum is capped at 100.

    Rules: ``velocity`` fires when the user already made ``max_attempts_in_window``
    attempts within the last ``velocity_window`` seconds (this one would exceed the limit);
    ``large_amount`` when the amount is at least ``large_amount``; ``country_mismatch``
    when both countries are known and differ; ``failed_attempts`` when the user has at
    least ``max_failed_attempts`` failures. Score >= ``block_at`` blocks, >= ``review_at``
    sends the payment to review, anything less approves.
    """

    velocity_window: float = HOUR
    max_attempts_in_window: int = 5
    large_amount: Money = field(default_factory=lambda: Money(100_000))
    max_failed_attempts: int = 3
    velocity_weight: int = 35
    large_amount_weight: int = 30
    country_mismatch_weight: int = 25
    failed_attempts_weight: int = 40
    review_at: int = 50
    block_at: int = 80

    def __post_init__(self) -> None:
        """Check the window, the limits, the weights and 0 <= review_at <= block_at <= 100."""
        if self.velocity_window <= 0:
            raise InvalidValue(f"velocity window must be positive, got {self.velocity_window}")
        if self.max_attempts_in_window < 1 or self.max_failed_attempts < 1:
            raise InvalidValue(
                f"attempt limits must be at least 1, got {self.max_attempts_in_window} "
                f"and {self.max_failed_attempts}"
            )
        for name in (
            "velocity_weight",
            "large_amount_weight",
            "country_mismatch_weight",
            "failed_attempts_weight",
        ):
            weight = getattr(self, name)
            if not 0 <= weight <= 100:
                raise InvalidValue(f"{name} must be 0..100, got {weight}")
        if not 0 <= self.review_at <= self.block_at <= 100:
            raise InvalidValue(
                f"need 0 <= review_at <= block_at <= 100, got {self.review_at} and {self.block_at}"
            )

    def assess(self, ctx: FraudContext) -> RiskAssessment:
        """Score one payment attempt and decide: approve, review or block."""
        score = 0
        reasons: list[str] = []
        since = ctx.now - self.velocity_window
        recent = sum(1 for t in ctx.recent_attempt_times if since < t <= ctx.now)
        if recent >= self.max_attempts_in_window:
            score += self.velocity_weight
            reasons.append(VELOCITY)
        if (ctx.amount - self.large_amount).minor >= 0:
            score += self.large_amount_weight
            reasons.append(LARGE_AMOUNT)
        billing, shipping = ctx.billing_country, ctx.shipping_country
        if billing and shipping and billing != shipping:
            score += self.country_mismatch_weight
            reasons.append(COUNTRY_MISMATCH)
        if ctx.failed_attempts >= self.max_failed_attempts:
            score += self.failed_attempts_weight
            reasons.append(FAILED_ATTEMPTS)
        score = min(score, 100)
        decision: Decision
        if score >= self.block_at:
            decision = "block"
        elif score >= self.review_at:
            decision = "review"
        else:
            decision = "approve"
        return RiskAssessment(score, decision, tuple(reasons))


# --- the payment aggregate --------------------------------------------------------------------
class PaymentStatus(str, Enum):
    """The states of a payment."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    DECLINED = "declined"
    FAILED = "failed"
    VOIDED = "voided"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        """Return the plain value (``"captured"``)."""
        return self.value


_P = PaymentStatus

PAYMENT_TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    _P.PENDING: frozenset({_P.AUTHORIZED, _P.DECLINED, _P.FAILED, _P.CANCELLED}),
    _P.FAILED: frozenset({_P.AUTHORIZED, _P.DECLINED, _P.FAILED, _P.CANCELLED}),
    _P.CANCELLED: frozenset({_P.VOIDED, _P.DECLINED}),
    _P.AUTHORIZED: frozenset({_P.CAPTURED, _P.VOIDED}),
    _P.CAPTURED: frozenset({_P.PARTIALLY_REFUNDED, _P.REFUNDED}),
    _P.PARTIALLY_REFUNDED: frozenset({_P.PARTIALLY_REFUNDED, _P.REFUNDED}),
    _P.DECLINED: frozenset(),
    _P.VOIDED: frozenset(),
    _P.REFUNDED: frozenset(),
}
"""Each state -> the states a payment may move to; a failed request may be retried.

A cancelled payment moves only when the gateway's late answer arrives: an approval is
voided, a decline recorded.
"""

_CAPTURED_STATES = frozenset({_P.CAPTURED, _P.PARTIALLY_REFUNDED, _P.REFUNDED})

MAX_IDEMPOTENCY_KEY = 255
"""Longest idempotency key accepted (Stripe's limit)."""


def check_idempotency_key(key: str) -> None:
    """Raise InvalidValue unless ``key`` is a non-empty string of at most 255 characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        length = len(key) if isinstance(key, str) else key
        raise InvalidValue(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} characters, got {length!r}"
        )


@dataclass(slots=True)
class Payment(ShallowCopied, EventSource):
    """One payment for one order through one gateway, with its attempts and refunds.

    ``attempts`` counts the gateway's answers to the authorisation request (authorised,
    declined or failed); ``last_error`` keeps the reason of the latest decline or failure.
    """

    id: str
    order_id: str
    amount: Money
    method_kind: str
    fingerprint: str
    gateway: str
    idempotency_key: str
    created_at: float
    updated_at: float
    status: PaymentStatus = PaymentStatus.PENDING
    refunded: Money = field(default_factory=Money.zero)
    attempts: int = 0
    last_error: str | None = None
    events: list[DomainEvent] = events_field()

    @classmethod
    def create(
        cls,
        id: str,
        order_id: str,
        amount: Money,
        method: PaymentMethod,
        *,
        gateway: str,
        idempotency_key: str,
        now: float,
    ) -> Payment:
        """Start a pending payment of ``amount`` (> 0) with ``method`` (validate it first)."""
        if amount.minor <= 0:
            raise InvalidAmount(f"payment {id}: amount must be positive, got {amount}")
        check_idempotency_key(idempotency_key)
        return cls(
            id=id,
            order_id=order_id,
            amount=amount,
            method_kind=method.kind,
            fingerprint=method.fingerprint,
            gateway=gateway,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
            refunded=Money.zero(amount.currency),
        )

    @property
    def captured(self) -> Money:
        """Return the amount captured (zero before capture, and if never captured)."""
        if self.status in _CAPTURED_STATES:
            return self.amount
        return Money.zero(self.amount.currency)

    @property
    def refundable(self) -> Money:
        """Return what can still be refunded: captured minus refunded."""
        return self.captured - self.refunded

    def _move(self, new: PaymentStatus, now: float) -> None:
        if new not in PAYMENT_TRANSITIONS[self.status]:
            raise IllegalTransition(f"payment {self.id}: cannot go from {self.status} to {new}")
        self.status = new
        self.updated_at = now

    def authorize(self, now: float) -> None:
        """Record the gateway's authorisation (from pending, or from failed on a retry)."""
        self._move(PaymentStatus.AUTHORIZED, now)
        self.attempts += 1

    def capture(self, now: float) -> None:
        """Take the authorised amount: authorized -> captured; records PaymentCaptured."""
        self._move(PaymentStatus.CAPTURED, now)
        self.record(
            PaymentCaptured(at=now, payment_id=self.id, order_id=self.order_id, amount=self.amount)
        )

    def decline(self, reason: str, now: float) -> None:
        """Record a refusal by the gateway or the fraud rules; records PaymentDeclined.

        Also from cancelled: the gateway's late decline of a payment the shop had closed.
        """
        self._move(PaymentStatus.DECLINED, now)
        self.attempts += 1
        self.last_error = reason
        self.record(
            PaymentDeclined(at=now, payment_id=self.id, order_id=self.order_id, reason=reason)
        )

    def fail(self, reason: str, now: float) -> None:
        """Record a gateway error or timeout: the request may be retried."""
        self._move(PaymentStatus.FAILED, now)
        self.attempts += 1
        self.last_error = reason

    def cancel(self, now: float) -> None:
        """Close a payment the gateway still holds because its order was cancelled.

        pending / failed -> cancelled; no money moved. The gateway's late answer is then
        settled by :meth:`void` (an approval) or :meth:`decline`.
        """
        self._move(PaymentStatus.CANCELLED, now)

    def void(self, now: float) -> None:
        """Cancel an authorisation before capture (no money moved); records PaymentVoided.

        From authorized, or from cancelled when the gateway approves a payment the shop had
        already cancelled (a late approval: it counts as an attempt, and is never captured).
        """
        late = self.status is PaymentStatus.CANCELLED
        self._move(PaymentStatus.VOIDED, now)
        if late:
            self.attempts += 1
        self.record(
            PaymentVoided(at=now, payment_id=self.id, order_id=self.order_id, amount=self.amount)
        )

    def refund(self, amount: Money, now: float) -> None:
        """Give back ``amount`` of the capture; records PaymentRefunded.

        The payment becomes refunded when everything has been given back, else
        partially_refunded. Raises RefundExceedsCharge for more than captured minus
        refunded, InvalidAmount for an amount <= 0.
        """
        if PaymentStatus.REFUNDED not in PAYMENT_TRANSITIONS[self.status]:
            raise IllegalTransition(f"payment {self.id}: cannot go from {self.status} to refunded")
        if amount.minor <= 0:
            raise InvalidAmount(f"payment {self.id}: refund must be positive, got {amount}")
        left = self.amount - self.refunded
        if (left - amount).minor < 0:
            raise RefundExceedsCharge(
                f"payment {self.id}: refund of {amount} exceeds the {left} left of "
                f"the {self.amount} captured"
            )
        full = amount == left
        self._move(PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED, now)
        self.refunded += amount
        self.record(
            PaymentRefunded(at=now, payment_id=self.id, order_id=self.order_id, amount=amount)
        )


# --- idempotency ------------------------------------------------------------------------------
IDEMPOTENCY_TTL = DAY
"""Seconds an idempotency record is kept before it may be pruned (Stripe: 24 hours)."""


def request_fingerprint(order_id: str, amount: Money, method_fingerprint: str) -> str:
    """Return the fingerprint of a payment request's parameters, for idempotency checks."""
    return f"{order_id}|{amount.minor}|{amount.currency}|{method_fingerprint}"


@dataclass(slots=True)
class IdempotencyRecord(ShallowCopied):
    """The first outcome of a request, kept under its idempotency key (store key: ``key``).

    ``outcome`` is what a repeat of the request replays (``"captured"``, ``"declined"``,
    ``"failed"``, ...); :meth:`settle` sets it once the first request has an answer.
    """

    key: str
    request_fingerprint: str
    payment_id: str
    outcome: str
    created_at: float

    def __post_init__(self) -> None:
        """Check the key (1-255 characters)."""
        check_idempotency_key(self.key)

    def is_expired(self, now: float, ttl: float = IDEMPOTENCY_TTL) -> bool:
        """Return True if the record is older than ``ttl`` seconds and may be pruned."""
        return now - self.created_at > ttl

    def settle(self, outcome: str) -> None:
        """Store the outcome of the first request, to be replayed to its repeats."""
        self.outcome = outcome


def replay_or_conflict(
    record: IdempotencyRecord | None,
    key: str,
    fingerprint: str,
    now: float,
    ttl: float = IDEMPOTENCY_TTL,
) -> IdempotencyRecord | None:
    """Decide what a request with idempotency ``key`` does, given the stored ``record``.

    Returns None when the key is new, or its record is older than ``ttl`` (pruned): the
    request runs. Returns the record when the same request comes again: the caller replays
    its outcome and records DuplicateChargePrevented. Raises IdempotencyConflict when the
    key comes with other parameters, InvalidValue for a malformed key or a record stored
    under another key.
    """
    check_idempotency_key(key)
    if record is None:
        return None
    if record.key != key:
        raise InvalidValue(f"idempotency record {record.key!r} looked up for key {key!r}")
    if now - record.created_at > ttl:
        return None
    if record.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was first used for {record.request_fingerprint!r}, "
            f"now with {fingerprint!r}"
        )
    return record


# --- retries ------------------------------------------------------------------------------------
RETRYABLE_OUTCOMES = frozenset({"failed", "timeout"})
"""Outcomes of a gateway request worth retrying (a decline is final)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Client retry schedule: capped exponential backoff with jitter (stripe-python's).

    ``max_attempts`` counts the first try: 3 means 2 retries.
    """

    max_attempts: int = 3
    base: float = 0.5
    cap: float = 5.0
    jitter: bool = True
    min_delay: float = 0.5

    def __post_init__(self) -> None:
        """Check max_attempts >= 1 and 0 <= min_delay, 0 < base <= cap."""
        if self.max_attempts < 1:
            raise InvalidValue(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.base <= self.cap or self.min_delay < 0:
            raise InvalidValue(
                f"need 0 < base <= cap and min_delay >= 0, got base {self.base}, "
                f"cap {self.cap}, min_delay {self.min_delay}"
            )

    def delay(self, attempt: int, u: float) -> float:
        """Return the seconds to wait after failed attempt ``attempt`` (1 = the first try).

        ``min(base * 2**(attempt-1), cap)``, times ``0.5 + 0.5 * u`` with jitter, never
        below ``min_delay``; ``u`` in [0, 1) is drawn by the caller.
        """
        if attempt < 1:
            raise InvalidValue(f"attempt must be at least 1, got {attempt}")
        if not 0.0 <= u < 1.0:
            raise InvalidValue(f"u must be in [0, 1), got {u}")
        seconds = min(self.base * 2.0 ** min(attempt - 1, 1000), self.cap)
        if self.jitter:
            seconds *= 0.5 + 0.5 * u
        return max(seconds, self.min_delay)

    def should_retry(self, attempt: int, outcome: str) -> bool:
        """Return True if attempt ``attempt`` ended in ``outcome`` and another try is allowed.

        Only ``"failed"`` and ``"timeout"`` are retried, never ``"declined"`` or a success.
        """
        return outcome in RETRYABLE_OUTCOMES and attempt < self.max_attempts
