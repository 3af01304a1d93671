"""The shopping cart aggregate and cart pricing: subtotal, discounts, tax, shipping, total.

A :class:`Cart` belongs to one user (keyed by ``user_id``) and outlives sessions. It keeps
SKU quantities in the order they were first added and the coupon codes the user entered;
it knows nothing of prices. Pricing is the pure function :func:`price_cart` over
:class:`PricedLine` snapshots (the service looks the prices up in the catalog).

Every coupon discount is allocated to its eligible lines in proportion to their amounts
(:meth:`Money.allocate`, so the parts sum exactly), and tax is computed per line on the
discounted amount at the line's category rate: a partial return can refund exactly the
share of one line (:meth:`LinePrice.refund_for`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sim.domain.coupons import Coupon
from sim.domain.errors import (
    CouponNotStackable,
    CurrencyMismatch,
    InvalidAmount,
    InvalidQuantity,
    InvalidValue,
    NotFound,
)
from sim.domain.events import (
    CartAbandoned,
    CartItemAdded,
    CartRecovered,
    DomainEvent,
    EventSource,
    events_field,
)
from sim.domain.money import BASIS_POINTS, Money, round_div
from sim.domain.snapshots import ShallowCopied

MAX_LINE_QUANTITY = 50
"""At most this many units of one SKU per cart line (Saleor's checkout limit)."""

_ZERO = Money(0)


# --- the cart ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Cart(ShallowCopied, EventSource):
    """A user's persistent cart: SKU -> quantity in insertion order, plus coupon codes.

    Any change, and :meth:`touch` (the user viewed it), recovers a cart that
    :meth:`check_abandoned` marked as abandoned.
    """

    user_id: str
    created_at: float
    updated_at: float
    lines: dict[str, int] = field(default_factory=dict)
    coupon_codes: list[str] = field(default_factory=list)
    abandoned: bool = False
    abandoned_count: int = 0
    recovered_count: int = 0
    events: list[DomainEvent] = events_field()

    @classmethod
    def create(cls, user_id: str, now: float) -> Cart:
        """Return a new empty cart for ``user_id``."""
        if not user_id:
            raise InvalidValue(f"a cart needs a user id, got {user_id!r}")
        return cls(user_id=user_id, created_at=now, updated_at=now)

    # --- reading -------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """Return True if the cart has no lines."""
        return not self.lines

    @property
    def units(self) -> int:
        """Return the number of units over all lines."""
        return sum(self.lines.values())

    def quantity_of(self, sku: str) -> int:
        """Return the quantity of ``sku`` in the cart (0 if absent)."""
        return self.lines.get(sku, 0)

    # --- changing --------------------------------------------------------------------------
    def touch(self, now: float) -> None:
        """Note that the user used the cart now; an abandoned cart counts as recovered."""
        self.updated_at = now
        if self.abandoned:
            self.abandoned = False
            self.recovered_count += 1
            self.record(CartRecovered(at=now, user_id=self.user_id))

    def add(self, sku: str, quantity: int, now: float) -> None:
        """Add ``quantity`` units of ``sku`` (to its line if present).

        Raises InvalidQuantity for a quantity below 1 or a line above MAX_LINE_QUANTITY.
        """
        if type(quantity) is not int or quantity < 1:
            raise InvalidQuantity(f"{sku}: quantity must be a whole number >= 1, got {quantity!r}")
        lines = self.lines
        current = lines.get(sku, 0)
        new = current + quantity
        if new > MAX_LINE_QUANTITY:
            raise InvalidQuantity(
                f"{sku}: {current} in cart + {quantity} requested exceeds the maximum of "
                f"{MAX_LINE_QUANTITY} per line"
            )
        self.touch(now)
        lines[sku] = new
        self.record(CartItemAdded(at=now, user_id=self.user_id, sku=sku, quantity=quantity))

    def set_quantity(self, sku: str, quantity: int, now: float) -> None:
        """Set the quantity of an existing line; 0 removes it.

        Raises NotFound if ``sku`` is not in the cart, InvalidQuantity for a negative quantity
        or one above MAX_LINE_QUANTITY.
        """
        if type(quantity) is not int or not 0 <= quantity <= MAX_LINE_QUANTITY:
            raise InvalidQuantity(
                f"{sku}: quantity must be a whole number 0..{MAX_LINE_QUANTITY}, got {quantity!r}"
            )
        if sku not in self.lines:
            raise NotFound(f"{sku} is not in the cart of {self.user_id}")
        self.touch(now)
        if quantity:
            self.lines[sku] = quantity
        else:
            del self.lines[sku]

    def remove(self, sku: str, now: float) -> None:
        """Remove the line of ``sku``; raise NotFound if it is not in the cart."""
        if sku not in self.lines:
            raise NotFound(f"{sku} is not in the cart of {self.user_id}")
        self.touch(now)
        del self.lines[sku]

    def clear(self, now: float) -> None:
        """Empty the cart, lines and coupon codes (after checkout)."""
        self.touch(now)
        self.lines.clear()
        self.coupon_codes.clear()

    def add_coupon(self, code: str, now: float) -> None:
        """Remember a coupon code (once); it is validated when the cart is priced."""
        if not code:
            raise InvalidValue(f"coupon code must not be empty, got {code!r}")
        self.touch(now)
        if code not in self.coupon_codes:
            self.coupon_codes.append(code)

    def remove_coupon(self, code: str, now: float) -> None:
        """Forget a coupon code; raise NotFound if the cart does not have it."""
        if code not in self.coupon_codes:
            raise NotFound(f"coupon {code} is not on the cart of {self.user_id}")
        self.touch(now)
        self.coupon_codes.remove(code)

    def check_abandoned(self, now: float, after_seconds: float) -> bool:
        """Mark the cart abandoned if it has lines and was untouched for ``after_seconds``.

        Returns True only when it marks the cart (once until the user comes back).
        """
        if after_seconds <= 0:
            raise InvalidValue(f"abandonment window must be positive, got {after_seconds}")
        if self.abandoned or not self.lines or now - self.updated_at < after_seconds:
            return False
        self.abandoned = True
        self.abandoned_count += 1
        self.record(CartAbandoned(at=now, user_id=self.user_id))
        return True


# --- pricing ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PricedLine:
    """A cart line with the product's current price and category (input to pricing)."""

    sku: str
    category_id: str
    unit_price: Money
    quantity: int
    amount: Money = field(init=False, repr=False, compare=False)
    """Unit price times quantity (computed once)."""

    def __post_init__(self) -> None:
        """Validate the quantity and the price; compute the amount."""
        quantity = self.quantity
        if type(quantity) is not int or quantity < 1:
            raise InvalidQuantity(f"{self.sku}: quantity must be at least 1, got {quantity!r}")
        price = self.unit_price
        if price.minor < 0:
            raise InvalidAmount(f"{self.sku}: unit price must not be negative, got {price}")
        object.__setattr__(self, "amount", Money(price.minor * quantity, price.currency))


@dataclass(frozen=True, slots=True)
class TaxPolicy:
    """Tax rates in basis points: one default and overrides per category."""

    default_rate_bp: int
    per_category: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject rates outside 0..10,000 bp."""
        rates = [("default", self.default_rate_bp), *self.per_category.items()]
        for name, rate in rates:
            if type(rate) is not int or not 0 <= rate <= BASIS_POINTS:
                raise InvalidValue(f"tax rate {name}: must be 0..{BASIS_POINTS} bp, got {rate!r}")

    def rate_for(self, category_id: str) -> int:
        """Return the rate of ``category_id`` in basis points (the default if none is set)."""
        return self.per_category.get(category_id, self.default_rate_bp)


@dataclass(frozen=True, slots=True)
class ShippingRule:
    """Shipping fee: a flat fee plus ``per_item`` per unit after the first.

    Shipping is free when the discounted subtotal reaches ``free_over``, and for an empty cart.
    """

    flat: Money
    free_over: Money | None = None
    per_item: Money = _ZERO

    def __post_init__(self) -> None:
        """Reject negative fees and mixed currencies (a zero per-item fee takes ``flat``'s)."""
        for name, amount in (("flat", self.flat), ("free_over", self.free_over)):
            if amount is not None and amount.minor < 0:
                raise InvalidAmount(f"shipping {name} must not be negative, got {amount}")
        if self.per_item.minor < 0:
            raise InvalidAmount(f"shipping per_item must not be negative, got {self.per_item}")
        currency = self.flat.currency
        if not self.per_item.minor and self.per_item.currency != currency:
            object.__setattr__(self, "per_item", Money(0, currency))  # the default, say
        for amount in (self.free_over, self.per_item):
            if amount is not None and amount.currency != currency:
                raise CurrencyMismatch(f"shipping rule mixes {currency} and {amount.currency}")

    def fee(self, discounted_subtotal: Money, units: int) -> Money:
        """Return the shipping fee for ``units`` units worth ``discounted_subtotal``."""
        if units <= 0:
            return Money(0, self.flat.currency)
        free_over = self.free_over
        if free_over is not None and discounted_subtotal.minor >= free_over.minor:
            return Money(0, self.flat.currency)
        if units == 1 or not self.per_item.minor:
            return self.flat
        return Money(self.flat.minor + self.per_item.minor * (units - 1), self.flat.currency)


@dataclass(frozen=True, slots=True)
class LinePrice:
    """A priced line with its share of the discounts and its tax."""

    line: PricedLine
    discount: Money
    tax: Money

    @property
    def sku(self) -> str:
        """Return the line's SKU."""
        return self.line.sku

    @property
    def quantity(self) -> int:
        """Return the line's quantity."""
        return self.line.quantity

    @property
    def amount(self) -> Money:
        """Return unit price times quantity, before discount and tax."""
        return self.line.amount

    @property
    def total(self) -> Money:
        """Return amount - discount + tax."""
        amount = self.line.amount
        return Money(amount.minor - self.discount.minor + self.tax.minor, amount.currency)

    def refund_for(self, units: int, already_returned: int = 0) -> Money:
        """Return what ``units`` more returned units of this line refund (discount and tax in).

        Shares are cumulative differences, so returning every unit, in any number of steps,
        refunds exactly :attr:`total`.
        """
        quantity = self.line.quantity
        if units < 1 or already_returned < 0 or already_returned + units > quantity:
            raise InvalidQuantity(
                f"{self.line.sku}: cannot return {units} after {already_returned} "
                f"of {quantity} units"
            )
        total = self.total
        return total.fraction(already_returned + units, quantity) - total.fraction(
            already_returned, quantity
        )


@dataclass(frozen=True, slots=True)
class PriceBreakdown:
    """A priced cart: its lines and totals, and the coupons that were applied.

    Invariant: total == subtotal - discount + tax + shipping, 0 <= discount <= subtotal,
    total >= 0.
    """

    lines: tuple[LinePrice, ...]
    subtotal: Money
    discount: Money
    tax: Money
    shipping: Money
    total: Money
    coupon_codes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check the breakdown's invariant."""
        subtotal, discount = self.subtotal.minor, self.discount.minor
        expected = subtotal - discount + self.tax.minor + self.shipping.minor
        if (
            self.total.minor != expected
            or not 0 <= discount <= subtotal
            or self.total.minor < 0
            or self.tax.minor < 0
            or self.shipping.minor < 0
        ):
            raise InvalidAmount(
                f"inconsistent price breakdown: subtotal {self.subtotal}, discount "
                f"{self.discount}, tax {self.tax}, shipping {self.shipping}, total {self.total}"
            )

    @property
    def units(self) -> int:
        """Return the number of units over all lines."""
        return sum(lp.line.quantity for lp in self.lines)


def price_cart(
    lines: Iterable[PricedLine],
    *,
    coupons: Sequence[Coupon] = (),
    tax: TaxPolicy,
    shipping: ShippingRule,
    user_id: str,
    now: float,
    coupon_uses_by_user: Mapping[str, int] | None = None,
) -> PriceBreakdown:
    """Price a cart: coupons checked and allocated per line, tax per line, shipping.

    Every coupon is checked (raising the specific CouponRejected subclass); several coupons
    are accepted only if every one is stackable, the same code twice never. Coupons apply in
    the given order; each one's discount is capped at what is left of its eligible lines and
    allocated across them in proportion to what is left of their amounts, so no line (and no
    cart) is discounted below zero. ``coupon_uses_by_user`` maps a code to this user's uses
    known elsewhere (see :meth:`Coupon.evaluate`).
    """
    lines = tuple(lines)
    currency = shipping.flat.currency
    amounts: list[int] = []
    units = 0
    for line in lines:
        amount = line.amount
        if amount.currency != currency:
            raise CurrencyMismatch(f"{line.sku} is priced in {amount.currency}, not {currency}")
        amounts.append(amount.minor)
        units += line.quantity
    subtotal = sum(amounts)
    discounts = [0] * len(lines)
    codes: tuple[str, ...] = ()
    if coupons:
        codes = tuple(c.code for c in coupons)
        if len(set(codes)) != len(codes):
            raise CouponNotStackable(f"a coupon cannot be applied twice: {', '.join(codes)}")
        uses = coupon_uses_by_user or {}
        for coupon in coupons:
            code = coupon.code
            others = tuple(c for c in codes if c != code) if len(codes) > 1 else ()
            indices, discount = coupon.evaluate(
                lines, user_id, now, other_codes=others, uses_by_user=uses.get(code)
            )
            left = [amounts[i] - discounts[i] for i in indices]
            share = min(discount.minor, sum(left))
            if not share:
                continue
            if len(indices) == 1:
                discounts[indices[0]] += share
            else:
                parts = Money(share, currency).allocate(left)
                for i, part in zip(indices, parts, strict=True):
                    discounts[i] += part.minor
    rate_for = tax.rate_for
    priced: list[LinePrice] = []
    tax_total = 0
    for line, amount, discount in zip(lines, amounts, discounts, strict=True):
        line_tax = round_div((amount - discount) * rate_for(line.category_id), BASIS_POINTS)
        tax_total += line_tax
        priced.append(LinePrice(line, Money(discount, currency), Money(line_tax, currency)))
    discount_total = sum(discounts)
    net = subtotal - discount_total
    fee = shipping.fee(Money(net, currency), units)
    return PriceBreakdown(
        lines=tuple(priced),
        subtotal=Money(subtotal, currency),
        discount=Money(discount_total, currency),
        tax=Money(tax_total, currency),
        shipping=fee,
        total=Money(net + tax_total + fee.minor, currency),
        coupon_codes=codes,
    )
