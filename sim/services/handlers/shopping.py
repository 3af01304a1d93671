"""Use cases of a shopper: the cart, coupons, checkout and paying for an order.

Paying is split the way a real payment is: :func:`begin_payment` runs the shop's checks
(idempotency, payment method, fraud) and opens a pending payment; the gateway answers
later, possibly several times (retries); each answer goes to :func:`record_gateway_answer`;
if no attempt succeeds the engine calls :func:`abandon_payment`. Every function is one
transaction: it commits or leaves no trace.

An order cancelled while the gateway still holds its payment (by its customer, an admin,
or the expiry of its reservation) closes that payment too (:func:`close_open_payments`:
the payment becomes cancelled, its idempotency record replays ``"cancelled"``). The
gateway's late answer then never touches the order: an approval voids the authorisation
at once (a ``void`` ledger entry, no money moved), a decline closes the payment as
declined, a failure or timeout leaves it cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sim.domain import inventory
from sim.domain.carts import Cart, PriceBreakdown, PricedLine, price_cart
from sim.domain.errors import EmptyCart, IllegalTransition, InvalidValue, OutOfStock
from sim.domain.events import DuplicateChargePrevented
from sim.domain.orders import CustomerHistory, Order, OrderLine, OrderStatus
from sim.domain.payments import (
    FraudContext,
    IdempotencyRecord,
    Payment,
    PaymentMethod,
    PaymentStatus,
    replay_or_conflict,
    request_fingerprint,
)
from sim.services.policies import ShopPolicies
from sim.services.store import UnitOfWork

GatewayAnswer = Literal["approved", "declined", "failed", "timeout"]
"""What a gateway said to one authorisation request (a timeout is the client giving up)."""

CANCELLED = "cancelled"
"""Outcome of a payment closed with its cancelled order (and of a late failure for it)."""
VOIDED = "voided"
"""Outcome of a late approval of a cancelled payment: the authorisation is voided."""

_OPEN_PAYMENT = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED})


# --- the cart ----------------------------------------------------------------------------------
def _cart(uow: UnitOfWork, user_id: str, now: float) -> Cart:
    cart = uow.carts.find(user_id)
    if cart is None:
        uow.users.get(user_id)  # NotFound for an unknown user
        cart = uow.carts.add(Cart.create(user_id, now))
    return cart


def add_to_cart(uow: UnitOfWork, user_id: str, sku: str, quantity: int, now: float) -> None:
    """Put ``quantity`` units of a catalog product in the user's persistent cart.

    Refused with OutOfStock, the cart unchanged, when fewer units are available for sale
    than the line would then hold: a sold-out product cannot be added, as in a real shop
    (Saleor checks stock when lines are added). Stock can still run out between adding and
    checkout, which :func:`checkout` refuses and :func:`fit_cart_to_stock` repairs.
    """
    with uow:
        uow.products.get(sku)  # NotFound for a product not (or no longer) in the catalog
        cart = _cart(uow, user_id, now)
        cart.add(sku, quantity, now)  # InvalidQuantity first: a bad quantity is not a stock-out
        _check_available(uow, sku, cart.lines[sku])
        uow.commit()


def _available(uow: UnitOfWork, sku: str) -> int:
    """Return the units of ``sku`` available for sale (0 for a product with no stock item)."""
    item = uow.stock.find_readonly(sku)
    return item.available if item is not None else 0


def _check_available(uow: UnitOfWork, sku: str, wanted: int) -> None:
    """Raise OutOfStock if fewer than ``wanted`` units of ``sku`` are available for sale."""
    available = _available(uow, sku)
    if wanted > available:
        raise OutOfStock(f"{sku}: {wanted} requested, {available} available")


def fit_cart_to_stock(uow: UnitOfWork, user_id: str, now: float) -> dict[str, int]:
    """Cut each cart line to the units available (0 removes it); return the lines changed.

    What a storefront does when checkout says some items are no longer available: the
    returned mapping gives each changed SKU's new quantity. A user with no cart has nothing
    to fit.
    """
    with uow:
        cart = uow.carts.find(user_id)
        changed: dict[str, int] = {}
        if cart is not None:
            for sku, quantity in list(cart.lines.items()):
                available = _available(uow, sku)
                if quantity > available:
                    cart.set_quantity(sku, available, now)
                    changed[sku] = available
        uow.commit()
        return changed


def change_quantity(uow: UnitOfWork, user_id: str, sku: str, quantity: int, now: float) -> None:
    """Set a cart line's quantity (0 removes the line).

    Raising it above the units available for sale is refused with OutOfStock, as adding is;
    lowering it never is.
    """
    with uow:
        cart = uow.carts.get(user_id)
        before = cart.lines.get(sku, 0)
        cart.set_quantity(sku, quantity, now)
        if quantity > before:
            _check_available(uow, sku, quantity)
        uow.commit()


def remove_from_cart(uow: UnitOfWork, user_id: str, sku: str, now: float) -> None:
    """Remove a line from the user's cart."""
    with uow:
        uow.carts.get(user_id).remove(sku, now)
        uow.commit()


def view_cart(uow: UnitOfWork, user_id: str, now: float) -> int:
    """Open the user's cart (a returning shopper finds it; an abandoned one is recovered).

    Returns the number of units in it.
    """
    with uow:
        cart = _cart(uow, user_id, now)
        cart.touch(now)
        uow.commit()
        return cart.units


def check_abandoned(uow: UnitOfWork, user_id: str, now: float, *, after: float) -> bool:
    """Count the user's cart as abandoned if it has lines and went untouched for ``after`` s."""
    with uow:
        cart = uow.carts.find(user_id)
        abandoned = cart is not None and cart.check_abandoned(now, after)
        uow.commit()
        return abandoned


def _priced_lines(uow: UnitOfWork, lines: Mapping[str, int]) -> list[PricedLine]:
    priced = []
    for sku, quantity in lines.items():
        product = uow.products.get(sku)
        priced.append(PricedLine(sku, product.category_id, product.price, quantity))
    return priced


def _price(
    uow: UnitOfWork,
    user_id: str,
    lines: Mapping[str, int],
    codes: list[str],
    now: float,
    policies: ShopPolicies,
) -> PriceBreakdown:
    return price_cart(
        _priced_lines(uow, lines),
        coupons=[uow.coupons.get(code) for code in codes],
        tax=policies.tax,
        shipping=policies.shipping,
        user_id=user_id,
        now=now,
    )


def price_user_cart(
    uow: UnitOfWork, user_id: str, now: float, *, policies: ShopPolicies
) -> PriceBreakdown:
    """Price the user's cart as it stands: subtotal, discount, tax, shipping, total."""
    cart = uow.carts.find_readonly(user_id)
    if cart is None:
        return _price(uow, user_id, {}, [], now, policies)
    return _price(uow, user_id, cart.lines, cart.coupon_codes, now, policies)


def apply_coupon(
    uow: UnitOfWork, user_id: str, code: str, now: float, *, policies: ShopPolicies
) -> PriceBreakdown:
    """Add a coupon code to the cart if it applies; raise the CouponRejected reason if not."""
    with uow:
        cart = _cart(uow, user_id, now)
        breakdown = _price(uow, user_id, cart.lines, [*cart.coupon_codes, code], now, policies)
        cart.add_coupon(code, now)
        uow.commit()
        return breakdown


def remove_coupon(uow: UnitOfWork, user_id: str, code: str, now: float) -> None:
    """Take a coupon code off the user's cart (one that expired since it was applied, say)."""
    with uow:
        uow.carts.get(user_id).remove_coupon(code, now)
        uow.commit()


# --- checkout ----------------------------------------------------------------------------------
def _history(uow: UnitOfWork, user_id: str) -> CustomerHistory:
    history = uow.histories.find(user_id)
    if history is None:
        history = uow.histories.add(CustomerHistory(user_id))
    return history


def place_order(
    uow: UnitOfWork,
    user_id: str,
    lines: Mapping[str, int],
    coupon_codes: list[str],
    now: float,
    policies: ShopPolicies,
) -> Order:
    """Price, reserve and place one order inside the caller's open transaction.

    Stock rows are locked in SKU order (``lock_many``), the one global order every
    transaction uses, so no two checkouts can deadlock on real row locks.
    """
    breakdown = _price(uow, user_id, lines, coupon_codes, now, policies)
    order_id = uow.next_id("order")
    reservation = inventory.reserve(
        uow.stock.lock_many(lines),
        lines,
        uow.next_id("reservation"),
        order_id,
        now,
        policies.reservation_ttl,
    )
    uow.reservations.add(reservation)
    for code in breakdown.coupon_codes:
        uow.coupons.get(code).hold(order_id, user_id, now)
    order = Order.place(
        order_id,
        user_id,
        [
            OrderLine(
                lp.sku, lp.line.category_id, lp.line.unit_price, lp.quantity, lp.discount, lp.tax
            )
            for lp in breakdown.lines
        ],
        subtotal=breakdown.subtotal,
        discount=breakdown.discount,
        tax=breakdown.tax,
        shipping=breakdown.shipping,
        total=breakdown.total,
        coupon_codes=breakdown.coupon_codes,
        reservation_id=reservation.id,
        now=now,
    )
    uow.orders.add(order)
    _history(uow, user_id).add_order(order_id)
    return order


def checkout(uow: UnitOfWork, user_id: str, now: float, *, policies: ShopPolicies) -> str:
    """Turn the user's cart into a pending order: prices snapshotted, stock reserved.

    Coupon uses are held (counted against their limits) until the order is paid or
    cancelled. The cart is emptied. Raises EmptyCart, OutOfStock, a CouponRejected
    reason; on any error nothing is reserved, held or placed.
    """
    with uow:
        cart = uow.carts.find(user_id)
        if cart is None or cart.is_empty:
            raise EmptyCart(f"user {user_id}: the cart is empty")
        order = place_order(uow, user_id, cart.lines, cart.coupon_codes, now, policies)
        cart.clear(now)
        uow.commit()
        return order.id


def close_open_payments(
    uow: UnitOfWork, order: Order, now: float, *, keep: str | None = None
) -> list[str]:
    """Cancel the order's payments the gateway still holds (open transaction); return their ids.

    Called whenever an order stops awaiting payment (paid, cancelled, expired): each
    pending or failed payment of the order but ``keep`` becomes cancelled and its
    idempotency record replays ``"cancelled"``, so nothing is left in limbo and a late
    answer from the gateway is settled without the order (see :func:`record_gateway_answer`).
    """
    closed = []
    for payment_id in order.payment_ids:
        seen = uow.payments.find_readonly(payment_id)
        if payment_id == keep or seen is None or seen.status not in _OPEN_PAYMENT:
            continue
        payment = uow.payments.get(payment_id)
        payment.cancel(now)
        record = uow.idempotency.find(payment.idempotency_key)
        if record is not None and record.payment_id == payment_id:
            record.settle(CANCELLED)
        closed.append(payment_id)
    return closed


def release_order(uow: UnitOfWork, order: Order, reason: str, now: float) -> None:
    """Give back an unpaid order's reserved stock and held coupon uses (open transaction)."""
    if order.reservation_id is not None:
        reservation = uow.reservations.get(order.reservation_id)
        if reservation.status == inventory.ACTIVE:
            items = uow.stock.lock_many(sku for sku, _ in reservation.lines)
            if reservation.is_expired(now):
                inventory.expire(items, reservation, now)
            else:
                inventory.release(items, reservation, reason, now)
    for code in order.coupon_codes:
        uow.coupons.get(code).release(order.id, now)


# --- payment -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PaymentStart:
    """What :func:`begin_payment` decided: call the gateway, replay, or stop."""

    payment_id: str
    action: Literal["call_gateway", "replayed", "blocked"]
    outcome: str


def begin_payment(
    uow: UnitOfWork,
    order_id: str,
    method: PaymentMethod,
    *,
    gateway: str,
    idempotency_key: str,
    now: float,
    policies: ShopPolicies,
) -> PaymentStart:
    """Run the shop's checks before a gateway is called and open a pending payment.

    A repeated request (same idempotency key and parameters) replays the first outcome
    and charges nothing (DuplicateChargePrevented); the same key with other parameters
    raises IdempotencyConflict. An invalid method raises InvalidPaymentMethod. The fraud
    rules may block the payment: it is declined and the order cancelled.
    """
    with uow:
        order = uow.orders.get(order_id)
        fingerprint = request_fingerprint(order_id, order.total, method.fingerprint)
        record = replay_or_conflict(
            uow.idempotency.find(idempotency_key), idempotency_key, fingerprint, now
        )
        if record is not None:
            payment = uow.payments.get(record.payment_id)
            payment.record(
                DuplicateChargePrevented(at=now, idempotency_key=idempotency_key, order_id=order_id)
            )
            uow.commit()
            return PaymentStart(payment.id, "replayed", record.outcome)
        if order.status is not OrderStatus.PENDING:
            raise InvalidValue(f"order {order_id} is {order.status.value}, not awaiting payment")
        method.validate(now)
        payment = Payment.create(
            uow.next_id("payment"),
            order_id,
            order.total,
            method,
            gateway=gateway,
            idempotency_key=idempotency_key,
            now=now,
        )
        uow.payments.add(payment)
        order.add_payment(payment.id)
        if idempotency_key in uow.idempotency:
            uow.idempotency.remove(idempotency_key)  # an expired (pruned) record
        record = uow.idempotency.add(
            IdempotencyRecord(idempotency_key, fingerprint, payment.id, "pending", now)
        )
        history = _history(uow, order.user_id)
        risk = policies.fraud.assess(
            FraudContext(
                user_id=order.user_id,
                amount=order.total,
                billing_country=method.billing_country,
                shipping_country=policies.shipping_country,
                recent_attempt_times=tuple(history.attempt_times),
                failed_attempts=history.failed_payments,
                now=now,
            )
        )
        history.note_attempt(now)
        if risk.decision == "block":
            history.note_failure()
            payment.decline("fraud: " + ", ".join(risk.reasons), now)
            record.settle("declined")
            order.cancel(now, "payment blocked by fraud rules")
            close_open_payments(uow, order, now)
            release_order(uow, order, inventory.PAYMENT_FAILED, now)
            uow.commit()
            return PaymentStart(payment.id, "blocked", "declined")
        uow.commit()
        return PaymentStart(payment.id, "call_gateway", "pending")


def record_gateway_answer(
    uow: UnitOfWork, payment_id: str, answer: GatewayAnswer, now: float, *, gateway: str = ""
) -> str:
    """Apply one gateway answer to a pending payment and its order; return the outcome.

    approved: the payment is captured, the order paid, its reserved stock sold and its
    coupon uses counted. declined: the order is cancelled and everything it held is given
    back. failed / timeout: the payment waits for a retry (or :func:`abandon_payment`).

    A late answer for a payment cancelled with its order leaves the order alone: approved
    voids the authorisation at once (outcome ``"voided"``; PaymentVoided, no money moved),
    declined closes the payment as declined (``"declined"``), failed / timeout leave it
    cancelled (``"cancelled"``). Its idempotency record keeps replaying ``"cancelled"``.
    """
    with uow:
        payment = uow.payments.get(payment_id)
        if gateway:
            payment.gateway = gateway
        if payment.status is PaymentStatus.CANCELLED:
            outcome = _late_answer(uow, payment, answer, now)
            uow.commit()
            return outcome
        order = uow.orders.get(payment.order_id)
        record = uow.idempotency.get(payment.idempotency_key)
        if answer == "approved":
            payment.authorize(now)
            payment.capture(now)
            order.mark_paid(payment.id, now)
            close_open_payments(uow, order, now, keep=payment.id)
            if order.reservation_id is not None:
                reservation = uow.reservations.get(order.reservation_id)
                items = uow.stock.lock_many(sku for sku, _ in reservation.lines)
                inventory.commit(items, reservation, now)
            for code in order.coupon_codes:
                uow.coupons.get(code).redeem(order.id, now)
            outcome = "captured"
        elif answer == "declined":
            payment.decline("declined by the issuer", now)
            _history(uow, order.user_id).note_failure()
            order.cancel(now, "payment declined")
            close_open_payments(uow, order, now)
            release_order(uow, order, inventory.PAYMENT_FAILED, now)
            outcome = "declined"
        elif answer in ("failed", "timeout"):
            payment.fail(answer, now)
            outcome = "failed"
        else:
            raise InvalidValue(f"unknown gateway answer {answer!r}")
        record.settle(outcome)
        uow.commit()
        return outcome


def _late_answer(uow: UnitOfWork, payment: Payment, answer: str, now: float) -> str:
    """Settle the gateway's answer for a payment cancelled with its order (open transaction)."""
    if answer == "approved":
        payment.void(now)  # the provider's authorisation is released: never captured
        return VOIDED
    if answer == "declined":
        payment.decline("declined by the issuer", now)
        _history(uow, uow.orders.get(payment.order_id).user_id).note_failure()
        return "declined"
    if answer in ("failed", "timeout"):
        return CANCELLED
    raise InvalidValue(f"unknown gateway answer {answer!r}")


def abandon_payment(uow: UnitOfWork, payment_id: str, now: float) -> None:
    """Give up on a payment whose attempts all failed: cancel it and its order, release holds.

    Only a pending or failed payment can be abandoned (IllegalTransition otherwise); its
    idempotency record then replays "failed". The payment ends cancelled, so a late answer
    from the gateway (a timed-out request may still have been approved) is settled like any
    other for a closed payment: an approval is voided, a decline recorded.
    """
    with uow:
        payment = uow.payments.get(payment_id)
        if payment.status not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
            raise IllegalTransition(
                f"payment {payment_id} is {payment.status.value}: only a pending or failed "
                "payment can be abandoned"
            )
        order = uow.orders.get(payment.order_id)
        _history(uow, order.user_id).note_failure()
        uow.idempotency.get(payment.idempotency_key).settle("failed")
        order.cancel(now, "payment failed")
        payment.cancel(now)
        close_open_payments(uow, order, now, keep=payment_id)
        release_order(uow, order, inventory.PAYMENT_FAILED, now)
        uow.commit()
