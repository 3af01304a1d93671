"""Coupons: the rules that decide whether a voucher applies to a cart and what it takes off.

A :class:`Coupon` is either a percentage (basis points of the eligible subtotal) or a fixed
amount (capped at the eligible subtotal). It may be limited to categories, a validity period
(``valid_from <= now < valid_until``), a minimum purchase on the eligible subtotal, a total
usage limit and a per-customer limit, and it may or may not stack with other coupons.

Usage accounting is two-phase so that limits hold even in a flash sale: checkout *holds* a
use for the order (the hold counts toward every limit at once), payment *redeems* it (held
-> used) and a cancellation or a failed payment before payment *releases* it. Only paid
orders count as used.

Lines are anything with ``category_id`` and ``amount`` (:class:`sim.domain.carts.PricedLine`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sim.domain.errors import (
    AlreadyExists,
    CouponCustomerLimitReached,
    CouponExpired,
    CouponMinimumNotMet,
    CouponNotApplicable,
    CouponNotStackable,
    CouponNotYetValid,
    CouponUsageLimitReached,
    CurrencyMismatch,
    InvalidValue,
    NotFound,
)
from sim.domain.events import CouponRedeemed, DomainEvent, EventSource, events_field
from sim.domain.money import BASIS_POINTS, DEFAULT_CURRENCY, Money, round_div
from sim.domain.snapshots import ShallowCopied

PERCENT = "percent"
"""Kind of a coupon that takes basis points of the eligible subtotal off."""
FIXED = "fixed"
"""Kind of a coupon that takes a fixed amount off (at most the eligible subtotal)."""
KINDS = (PERCENT, FIXED)
"""Every coupon kind."""

_ZERO = Money(0)


class EligibleLine(Protocol):
    """What a coupon needs to know of a cart line."""

    @property
    def category_id(self) -> str:
        """Return the category of the line's product."""
        ...  # pragma: no cover

    @property
    def amount(self) -> Money:
        """Return unit price times quantity."""
        ...  # pragma: no cover


def _money(minor: int, currency: str) -> str:
    return str(Money(minor, currency))


@dataclass(slots=True)
class Coupon(ShallowCopied, EventSource):
    """A voucher code with its rules and its usage counters (aggregate keyed by ``code``).

    Build one with :meth:`create`; the constructor validates the definition as well.
    ``held`` maps the order id of each unpaid order holding a use to its user id,
    ``held_by`` counts the held uses per user, ``used`` / ``used_by`` count paid uses.
    """

    code: str
    kind: str
    percent_bp: int = 0
    amount: Money = _ZERO
    min_purchase: Money = _ZERO
    valid_from: float | None = None
    valid_until: float | None = None
    usage_limit: int | None = None
    per_customer_limit: int | None = None
    categories: frozenset[str] | None = None
    stackable: bool = False
    held: dict[str, str] = field(default_factory=dict)
    held_by: dict[str, int] = field(default_factory=dict)
    used: int = 0
    used_by: dict[str, int] = field(default_factory=dict)
    events: list[DomainEvent] = events_field()

    def __post_init__(self) -> None:
        """Reject a malformed coupon definition with InvalidValue."""
        code = self.code
        if not isinstance(code, str) or not code.strip():
            raise InvalidValue(f"coupon code must be a non-empty string, got {code!r}")
        if self.kind == PERCENT:
            bp = self.percent_bp
            if type(bp) is not int or not 1 <= bp <= BASIS_POINTS:
                raise InvalidValue(
                    f"coupon {code}: percent must be 1..{BASIS_POINTS} basis points, got {bp!r}"
                )
        elif self.kind == FIXED:
            if not isinstance(self.amount, Money) or self.amount.minor < 0:
                raise InvalidValue(
                    f"coupon {code}: fixed amount must be non-negative Money, got {self.amount}"
                )
        else:
            raise InvalidValue(f"coupon {code}: kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.min_purchase, Money) or self.min_purchase.minor < 0:
            raise InvalidValue(
                f"coupon {code}: minimum purchase must be non-negative Money, "
                f"got {self.min_purchase}"
            )
        if self.kind == FIXED and self.amount.currency != self.min_purchase.currency:
            raise CurrencyMismatch(
                f"coupon {code}: amount in {self.amount.currency}, "
                f"minimum purchase in {self.min_purchase.currency}"
            )
        start, end = self.valid_from, self.valid_until
        if start is not None and end is not None and end <= start:
            raise InvalidValue(f"coupon {code}: valid_until {end} must be after valid_from {start}")
        for name in ("usage_limit", "per_customer_limit"):
            limit = getattr(self, name)
            if limit is not None and (type(limit) is not int or limit < 1):
                raise InvalidValue(f"coupon {code}: {name} must be at least 1, got {limit!r}")
        if self.categories is not None and not self.categories:
            raise InvalidValue(f"coupon {code}: categories must be None (whole order) or non-empty")

    @classmethod
    def create(
        cls,
        code: str,
        kind: str,
        value: int | Money,
        *,
        min_purchase: Money | None = None,
        valid_from: float | None = None,
        valid_until: float | None = None,
        usage_limit: int | None = None,
        per_customer_limit: int | None = None,
        categories: Iterable[str] | None = None,
        stackable: bool = False,
    ) -> Coupon:
        """Define a coupon: ``value`` is basis points for ``"percent"``, Money for ``"fixed"``.

        Raises InvalidValue for a percent outside 1..10,000 bp, a negative fixed amount or
        minimum, ``valid_until <= valid_from``, a limit below 1, or an empty category set.
        """
        if kind == FIXED:
            if not isinstance(value, Money):
                raise InvalidValue(f"coupon {code}: a fixed coupon's value is Money, got {value!r}")
            currency = value.currency
            percent_bp, amount = 0, value
        else:
            if isinstance(value, Money):
                raise InvalidValue(
                    f"coupon {code}: a {kind} coupon's value is basis points, got {value}"
                )
            currency = min_purchase.currency if min_purchase is not None else DEFAULT_CURRENCY
            percent_bp, amount = value, Money(0, currency)
        return cls(
            code=code,
            kind=kind,
            percent_bp=percent_bp,
            amount=amount,
            min_purchase=min_purchase if min_purchase is not None else Money(0, currency),
            valid_from=valid_from,
            valid_until=valid_until,
            usage_limit=usage_limit,
            per_customer_limit=per_customer_limit,
            categories=frozenset(categories) if categories is not None else None,
            stackable=stackable,
        )

    # --- reading ---------------------------------------------------------------------------
    @property
    def currency(self) -> str:
        """Return the currency of the coupon's amounts."""
        return self.amount.currency if self.kind == FIXED else self.min_purchase.currency

    @property
    def _any_currency(self) -> bool:
        """A percentage with no minimum purchase names no amount: it applies in any currency."""
        return self.kind != FIXED and not self.min_purchase.minor

    def is_valid_at(self, now: float) -> bool:
        """Return True if ``now`` lies in the validity period."""
        start, end = self.valid_from, self.valid_until
        return (start is None or now >= start) and (end is None or now < end)

    def uses_by(self, user_id: str) -> int:
        """Return the uses of this user: paid plus held by unpaid orders."""
        return self.used_by.get(user_id, 0) + self.held_by.get(user_id, 0)

    @property
    def remaining(self) -> int | None:
        """Return the uses still available (None when unlimited)."""
        if self.usage_limit is None:
            return None
        return max(0, self.usage_limit - self.used - len(self.held))

    # --- rules -----------------------------------------------------------------------------
    def _check_period(self, now: float) -> None:
        start, end = self.valid_from, self.valid_until
        if start is not None and now < start:
            raise CouponNotYetValid(f"coupon {self.code} is valid from {start}, now is {now}")
        if end is not None and now >= end:
            raise CouponExpired(f"coupon {self.code} expired at {end}, now is {now}")

    def _check_limits(self, user_id: str, uses_by_user: int | None) -> None:
        limit = self.usage_limit
        if limit is not None:
            taken = self.used + len(self.held)
            if taken >= limit:
                raise CouponUsageLimitReached(
                    f"coupon {self.code}: usage limit {limit} reached "
                    f"({self.used} used, {len(self.held)} held)"
                )
        limit = self.per_customer_limit
        if limit is not None:
            uses = self.uses_by(user_id)
            if uses_by_user is not None and uses_by_user > uses:
                uses = uses_by_user
            if uses >= limit:
                raise CouponCustomerLimitReached(
                    f"coupon {self.code}: user {user_id} has used it {uses} times, "
                    f"limit {limit} per customer"
                )

    def _eligible(self, lines: Sequence[EligibleLine]) -> tuple[list[int], int, str]:
        """Return the indices of the eligible lines, their subtotal (minor units), the currency.

        The lines must be in the coupon's currency, or, for a percentage with no minimum, all
        in one currency, which the discount is then in.
        """
        categories = self.categories
        currency = None if self._any_currency else self.currency
        indices: list[int] = []
        subtotal = 0
        for i, line in enumerate(lines):
            if categories is None or line.category_id in categories:
                amount = line.amount
                if currency is None:
                    currency = amount.currency
                elif amount.currency != currency:
                    raise CurrencyMismatch(
                        f"coupon {self.code} is in {currency}, a line is in {amount.currency}"
                    )
                indices.append(i)
                subtotal += amount.minor
        return indices, subtotal, currency or self.currency

    def _discount_minor(self, eligible_subtotal: int) -> int:
        if self.kind == PERCENT:
            return round_div(eligible_subtotal * self.percent_bp, BASIS_POINTS)
        amount = self.amount.minor
        return amount if amount < eligible_subtotal else eligible_subtotal

    def evaluate(
        self,
        lines: Sequence[EligibleLine],
        user_id: str,
        now: float,
        *,
        other_codes: Collection[str] = (),
        uses_by_user: int | None = None,
    ) -> tuple[list[int], Money]:
        """Check the coupon against a cart and return the eligible line indices and discount.

        Raises the specific :class:`~sim.domain.errors.CouponRejected` subclass, checking in
        this order: validity period, total usage limit (used + held), per-customer limit,
        eligible lines, minimum purchase, stacking with ``other_codes`` (the other coupons on
        the cart). ``uses_by_user``, when given, is this user's use count known elsewhere;
        the larger of it and the coupon's own count is compared with the per-customer limit.
        """
        self._check_period(now)
        self._check_limits(user_id, uses_by_user)
        indices, subtotal, currency = self._eligible(lines)
        if not indices:
            where = (
                "the cart is empty"
                if not lines
                else "no line is in " + ", ".join(sorted(self.categories or ()))
            )
            raise CouponNotApplicable(f"coupon {self.code} does not apply: {where}")
        minimum = self.min_purchase.minor
        if subtotal < minimum:
            raise CouponMinimumNotMet(
                f"coupon {self.code}: minimum purchase {_money(minimum, currency)}, "
                f"eligible subtotal {_money(subtotal, currency)}"
            )
        if other_codes and not self.stackable:
            others = [c for c in other_codes if c != self.code]
            if others:
                raise CouponNotStackable(
                    f"coupon {self.code} cannot be combined with other coupons "
                    f"({', '.join(others)})"
                )
        return indices, Money(self._discount_minor(subtotal), currency)

    def check(
        self,
        lines: Sequence[EligibleLine],
        user_id: str,
        now: float,
        *,
        other_codes: Collection[str] = (),
        uses_by_user: int | None = None,
    ) -> None:
        """Raise the specific CouponRejected subclass if the coupon cannot apply to ``lines``.

        See :meth:`evaluate` for the order of the checks.
        """
        self.evaluate(lines, user_id, now, other_codes=other_codes, uses_by_user=uses_by_user)

    def discount(self, lines: Sequence[EligibleLine]) -> Money:
        """Return the discount on ``lines`` ignoring the rules of :meth:`check`.

        A percentage of the eligible subtotal (rounded by money.py), or the fixed amount
        capped at the eligible subtotal.
        """
        _, subtotal, currency = self._eligible(lines)
        return Money(self._discount_minor(subtotal), currency)

    # --- usage accounting --------------------------------------------------------------------
    def hold(self, order_id: str, user_id: str, now: float) -> None:
        """Reserve one use for an unpaid order at checkout; it counts toward the limits.

        Raises CouponNotYetValid / CouponExpired outside the validity period,
        CouponUsageLimitReached / CouponCustomerLimitReached when no use is left, and
        AlreadyExists if the order holds a use already.
        """
        if order_id in self.held:
            raise AlreadyExists(f"coupon {self.code}: order {order_id} already holds a use")
        self._check_period(now)
        self._check_limits(user_id, None)
        self.held[order_id] = user_id
        self.held_by[user_id] = self.held_by.get(user_id, 0) + 1

    def _unhold(self, order_id: str) -> str:
        user_id = self.held.pop(order_id, None)
        if user_id is None:
            raise NotFound(f"coupon {self.code}: order {order_id} holds no use")
        left = self.held_by[user_id] - 1
        if left:
            self.held_by[user_id] = left
        else:
            del self.held_by[user_id]
        return user_id

    def redeem(self, order_id: str, now: float) -> None:
        """Count the order's held use as used (the order was paid); raise NotFound if none."""
        user_id = self._unhold(order_id)
        self.used += 1
        self.used_by[user_id] = self.used_by.get(user_id, 0) + 1
        self.record(CouponRedeemed(at=now, code=self.code, user_id=user_id, order_id=order_id))

    def release(self, order_id: str, now: float) -> None:
        """Give the order's held use back (cancelled or payment failed before payment).

        Raises NotFound if the order holds no use (never held, redeemed or released already).
        """
        self._unhold(order_id)
