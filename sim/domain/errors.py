"""The DomainError hierarchy: every broken business rule raises one of these.

Each class names one rule; its message says what was wrong with which values.
Callers catch the narrowest class they can handle (``OutOfStock``) or the family
(``CouponRejected``) and let the rest propagate.
"""

from __future__ import annotations


class DomainError(Exception):
    """A business rule was violated; the message says which and with what values."""


class NotFound(DomainError):
    """An aggregate with the given id does not exist."""


class AlreadyExists(DomainError):
    """An aggregate with the given id exists already."""


class InvalidValue(DomainError):
    """An argument has a value the domain does not accept."""


# --- money -------------------------------------------------------------------------------
class InvalidAmount(InvalidValue):
    """A money amount or rate is malformed (a float, too many decimals, negative weights)."""


class CurrencyMismatch(DomainError):
    """Amounts of two currencies were combined."""


# --- users, roles, sessions ----------------------------------------------------------------
class InvalidEmail(InvalidValue):
    """The e-mail address is not of the form local@domain.tld."""


class DuplicateEmail(AlreadyExists):
    """Another user registered with this e-mail address already."""


class WeakPassword(InvalidValue):
    """The password fails the strength rules."""


class PermissionDenied(DomainError):
    """The acting user's role lacks the permission, or the user does not own the resource."""


class AuthenticationFailed(DomainError):
    """Unknown e-mail or wrong password (deliberately not saying which)."""


class AccountLocked(DomainError):
    """Too many failed logins: the account is locked until a given time."""


class SessionInvalid(DomainError):
    """The session token is unknown, expired or logged out."""


# --- catalog -----------------------------------------------------------------------------
class InvalidProduct(InvalidValue):
    """A product's fields break a catalog rule (empty name, negative price, unknown category)."""


class CategoryCycle(InvalidValue):
    """Re-parenting a category would make the category tree a cycle."""


# --- inventory ---------------------------------------------------------------------------
class InvalidQuantity(InvalidValue):
    """A quantity is zero, negative, or above the per-line maximum."""


class OutOfStock(DomainError):
    """Not enough stock available for sale to satisfy a reservation."""


class ReservationNotActive(DomainError):
    """The reservation was already committed, released or expired."""


class ReservationNotExpired(DomainError):
    """A reservation was asked to expire before its expiry time."""


class InventoryCorrupted(DomainError):
    """Stock counters break an invariant (reserved above on hand, units not conserved)."""


# --- carts and coupons -------------------------------------------------------------------
class EmptyCart(DomainError):
    """Checkout of a cart with no lines."""


class CouponRejected(DomainError):
    """A coupon cannot be applied; the subclass and the message say why."""


class CouponNotYetValid(CouponRejected):
    """The coupon's validity period has not started."""


class CouponExpired(CouponRejected):
    """The coupon's validity period has ended."""


class CouponUsageLimitReached(CouponRejected):
    """The coupon has been used as often as its total limit allows."""


class CouponCustomerLimitReached(CouponRejected):
    """The customer has used the coupon as often as the per-customer limit allows."""


class CouponMinimumNotMet(CouponRejected):
    """The eligible subtotal is below the coupon's minimum purchase."""


class CouponNotApplicable(CouponRejected):
    """No line of the cart is in a category the coupon applies to."""


class CouponNotStackable(CouponRejected):
    """The coupon cannot be combined with another coupon on the same cart."""


# --- orders --------------------------------------------------------------------------------
class IllegalTransition(DomainError):
    """An order or payment was asked to move to a state its state machine forbids."""


class InvalidReturn(InvalidValue):
    """A return names a line not in the order or more units than were bought and not returned."""


# --- payments and ledger -----------------------------------------------------------------
class InvalidPaymentMethod(InvalidValue):
    """Card number fails Luhn, card expired, wallet or bank details malformed."""


class IdempotencyConflict(DomainError):
    """An idempotency key was reused with different request parameters."""


class RefundExceedsCharge(DomainError):
    """A refund would return more money than was captured and not yet refunded."""


class LedgerViolation(DomainError):
    """An entry would break the append-only ledger's rules (unknown kind, bad amount)."""
