"""Hypothesis stateful tests of the shop through its use cases: every interleaving keeps the books.

A RuleBasedStateMachine drives the handlers with random interleavings of register, login (right
and wrong passwords), add to cart, apply a coupon, check out, begin a payment, the gateway's
answers (approved, declined, failed, timed out), replays of a payment request, abandoning a
payment, cancelling (by the customer, an admin, or another customer, who is refused), shipping
and delivering (by staff: a merchant or an admin; a customer is refused), returns (requested,
received, refunded), reservation expiry and supplier restocks.

Orders are also cancelled and expired while their payment is still at the gateway: the payment
is then cancelled with the order, and the gateway's late answer (approved, declined, failed,
timed out) is settled without reviving the order: an approval is voided at once (a void in the
ledger, no money moved), a decline closes the payment, a failure leaves it cancelled.

After every step the end-of-run audit of the books (:func:`sim.engine.audit.audit_books`) must
find nothing: the ledger reconciles, money balances, stock is conserved, coupon limits hold,
nobody is charged twice, and every order and payment is final or explicitly in flight.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sim.domain import inventory
from sim.domain.catalog import Product
from sim.domain.coupons import FIXED, PERCENT, Coupon
from sim.domain.errors import (
    AuthenticationFailed,
    CouponRejected,
    EmptyCart,
    OutOfStock,
    PermissionDenied,
)
from sim.domain.inventory import StockItem
from sim.domain.ledger import EntryKind
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.domain.payments import Card, PaymentStatus
from sim.domain.users import LoginPolicy, PasswordHasher, Role
from sim.engine.audit import audit_books
from sim.services.handlers import accounts, fulfilment, shopping
from sim.services.policies import ShopPolicies
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers
from tests.stress import tally

PASSWORD = "Stateful-pass-42"
STOCK = {"SKU-A": 4, "SKU-B": 2, "SKU-C": 10, "SKU-D": 1}
PRICES = {"SKU-A": 1250, "SKU-B": 4500, "SKU-C": 199, "SKU-D": 89_900}
CODES = ["TEN", "LIMITED", "ONCE", "STACK-A", "STACK-B", "MIN50"]
CARD = Card("4242424242424242", 12, 2030, "State Machine", "US")


def _coupons() -> list[Coupon]:
    return [
        Coupon.create("TEN", PERCENT, 1000),
        Coupon.create("LIMITED", FIXED, Money(300), usage_limit=2),
        Coupon.create("ONCE", PERCENT, 1500, per_customer_limit=1),
        Coupon.create("STACK-A", PERCENT, 500, stackable=True, usage_limit=3),
        Coupon.create("STACK-B", FIXED, Money(100), stackable=True),
        Coupon.create("MIN50", FIXED, Money(700), min_purchase=Money(5000)),
    ]


class Shop(RuleBasedStateMachine):
    """The shop, driven through its handlers; the audit is the invariant."""

    @initialize()
    def open_shop(self) -> None:
        self.hasher = PasswordHasher(iterations=1)
        self.policies = ShopPolicies(
            hasher=self.hasher, login=LoginPolicy(max_failures=3, lockout_seconds=600)
        )
        self.uow = attach_subscribers(UnitOfWork())
        self.now = 1.0
        self.admin = accounts.register(
            self.uow, "root@shop.example", PASSWORD, 0.0, role=Role.ADMIN, hasher=self.hasher
        )
        merchant = accounts.register(
            self.uow, "shop@shop.example", PASSWORD, 0.0, role=Role.MERCHANT, hasher=self.hasher
        )
        self.staff = [self.admin, merchant]
        self.customers: list[str] = []
        self.emails: dict[str, str] = {}
        self.open: dict[str, str] = {}  # order id -> payment id still at the gateway
        self.late: dict[str, str] = {}  # cancelled order id -> its cancelled payment's id
        self.keys: dict[str, str] = {}  # order id -> idempotency key of its payment
        with self.uow:
            for sku, price in PRICES.items():
                self.uow.products.add(
                    Product.create(sku, sku.title(), f"{sku} for tests", "cat", Money(price), 0.0)
                )
                self.uow.stock.add(StockItem(sku, STOCK[sku]))
            for coupon in _coupons():
                self.uow.coupons.add(coupon)
            self.uow.commit()
        for _ in range(2):
            self.register()
        tally.add("stateful_examples")

    # --- helpers ---------------------------------------------------------------------------
    def _orders(self, *statuses: OrderStatus) -> list[str]:
        return sorted(o.id for o in self.uow.orders.values() if o.status in statuses)

    def _settled(self, *statuses: OrderStatus) -> list[str]:
        return [o for o in self._orders(*statuses) if o not in self.open]

    def _tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now

    def _cancelled_with_the_order(self, order_id: str) -> None:
        """The order was cancelled: its payment at the gateway (if any) must be cancelled."""
        assert self.uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
        payment_id = self.open.pop(order_id, None)
        if payment_id is None:
            return
        payment = self.uow.payments.find_readonly(payment_id)
        assert payment.status is PaymentStatus.CANCELLED, payment.status
        assert self.uow.idempotency.find_readonly(payment.idempotency_key).outcome == "cancelled"
        self.late[order_id] = payment_id
        tally.add("stateful_payments_cancelled_at_the_gateway")

    def _begin(self, order_id: str, key: str) -> shopping.PaymentStart:
        """Ask for the card payment of an order under an idempotency key."""
        return shopping.begin_payment(
            self.uow,
            order_id,
            CARD,
            gateway="card",
            idempotency_key=key,
            now=self._tick(),
            policies=self.policies,
        )

    def _order_and_pay(
        self, user: str, sku: str, qty: int, tag: str
    ) -> tuple[str, shopping.PaymentStart] | None:
        """Add, check out and begin paying at once; None if the order or the call never came."""
        try:
            shopping.add_to_cart(self.uow, user, sku, qty, self._tick())
            order_id = shopping.checkout(self.uow, user, self._tick(), policies=self.policies)
        except (OutOfStock, CouponRejected):
            return None
        key = f"{order_id}@{tag}"
        start = self._begin(order_id, key)
        if start.action != "call_gateway":
            return None
        self.keys[order_id] = key
        return order_id, start

    # --- accounts --------------------------------------------------------------------------
    @rule()
    def register(self) -> None:
        email = f"shopper{len(self.customers)}@example.com"
        user = accounts.register(self.uow, email, PASSWORD, self.now, hasher=self.hasher)
        self.customers.append(user)
        self.emails[user] = email

    @rule(data=st.data(), right=st.booleans())
    def login(self, data: st.DataObject, right: bool) -> None:
        user = data.draw(st.sampled_from(self.customers))
        password = PASSWORD if right else "Wrong-pass-000"
        try:
            token = accounts.login(
                self.uow,
                self.emails[user],
                password,
                self._tick(),
                hasher=self.hasher,
                policy=self.policies.login,
            )
        except AuthenticationFailed:
            # a wrong password, or the right one while the account is locked
            assert not right or self.uow.users.find_readonly(user).is_locked(self.now)
            return
        assert right
        assert accounts.authenticate(self.uow, token, self.now, policy=self.policies.login) == user

    # --- the cart and checkout -------------------------------------------------------------
    @rule(data=st.data(), sku=st.sampled_from(sorted(STOCK)), qty=st.integers(1, 3))
    def add(self, data: st.DataObject, sku: str, qty: int) -> None:
        user = data.draw(st.sampled_from(self.customers))
        cart = self.uow.carts.find_readonly(user)
        wanted = qty + (cart.lines.get(sku, 0) if cart is not None else 0)
        short = wanted > self.uow.stock.find_readonly(sku).available
        try:
            shopping.add_to_cart(self.uow, user, sku, qty, self._tick())
        except OutOfStock:
            assert short  # refused exactly when fewer are for sale than the line would hold
            tally.add("stateful_adds_refused")
            return
        assert not short

    @rule(data=st.data())
    def fit_to_stock(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(self.customers))
        shopping.fit_cart_to_stock(self.uow, user, self._tick())
        cart = self.uow.carts.find_readonly(user)
        for sku, quantity in cart.lines.items() if cart is not None else ():
            assert 0 < quantity <= self.uow.stock.find_readonly(sku).available

    @rule(data=st.data(), code=st.sampled_from(CODES))
    def coupon(self, data: st.DataObject, code: str) -> None:
        user = data.draw(st.sampled_from(self.customers))
        try:
            shopping.apply_coupon(self.uow, user, code, self._tick(), policies=self.policies)
        except CouponRejected:
            tally.add("stateful_coupons_rejected")

    @rule(data=st.data())
    def checkout(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(self.customers))
        try:
            shopping.checkout(self.uow, user, self._tick(), policies=self.policies)
        except (EmptyCart, OutOfStock):
            return
        except CouponRejected:
            cart = self.uow.carts.find_readonly(user)
            for code in list(cart.coupon_codes):
                shopping.remove_coupon(self.uow, user, code, self.now)

    @rule(
        data=st.data(),
        sku=st.sampled_from(sorted(STOCK)),
        qty=st.integers(1, 2),
        answer=st.sampled_from(["approved", "approved", "approved", "declined", "timeout"]),
    )
    def buy(self, data: st.DataObject, sku: str, qty: int, answer: str) -> None:
        """A shopper who does it all at once: add, check out, pay (one gateway answer)."""
        user = data.draw(st.sampled_from(self.customers))
        placed = self._order_and_pay(user, sku, qty, "buy")
        if placed is None:
            return
        order_id, start = placed
        outcome = shopping.record_gateway_answer(
            self.uow,
            start.payment_id,
            answer,
            self._tick(),  # type: ignore[arg-type]
        )
        if outcome == "failed":
            self.open[order_id] = start.payment_id

    # --- payment -----------------------------------------------------------------------------
    @rule(data=st.data())
    def begin_payment(self, data: st.DataObject) -> None:
        candidates = self._settled(OrderStatus.PENDING)
        if not candidates:
            return
        order_id = data.draw(st.sampled_from(candidates))
        key = f"{order_id}@{self.now}"
        start = self._begin(order_id, key)
        if start.action == "call_gateway":
            self.open[order_id] = start.payment_id
            self.keys[order_id] = key

    @rule(data=st.data(), answer=st.sampled_from(["approved", "declined", "failed", "timeout"]))
    def gateway_answers(self, data: st.DataObject, answer: str) -> None:
        if not self.open:
            return
        order_id = data.draw(st.sampled_from(sorted(self.open)))
        outcome = shopping.record_gateway_answer(
            self.uow,
            self.open[order_id],
            answer,
            self._tick(),  # type: ignore[arg-type]
        )
        if outcome != "failed":
            del self.open[order_id]

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if not self.keys:
            return
        order_id = data.draw(st.sampled_from(sorted(self.keys)))
        start = self._begin(order_id, self.keys[order_id])
        assert start.action == "replayed"
        tally.add("stateful_replays")

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        if not self.open:
            return
        order_id = data.draw(st.sampled_from(sorted(self.open)))
        shopping.abandon_payment(self.uow, self.open.pop(order_id), self._tick())

    # --- after checkout ------------------------------------------------------------------------
    @rule(data=st.data(), who=st.sampled_from(["owner", "admin", "stranger"]))
    def cancel(self, data: st.DataObject, who: str) -> None:
        candidates = self._orders(OrderStatus.PENDING, OrderStatus.PROCESSING)
        if not candidates:
            return
        order_id = data.draw(st.sampled_from(candidates))
        owner = self.uow.orders.find_readonly(order_id).user_id
        if who == "stranger":
            strangers = [c for c in self.customers if c != owner]
            try:
                fulfilment.cancel_order(self.uow, strangers[0], order_id, self._tick(), "x")
            except PermissionDenied:
                return
            raise AssertionError(f"{strangers[0]} cancelled {order_id} of {owner}")
        actor = owner if who == "owner" else self.admin
        fulfilment.cancel_order(self.uow, actor, order_id, self._tick(), "changed my mind")
        self._cancelled_with_the_order(order_id)

    @rule(
        data=st.data(),
        who=st.sampled_from(["owner", "admin"]),
        answer=st.sampled_from([None, "approved", "declined", "failed", "timeout"]),
    )
    def cancel_while_the_gateway_holds_the_payment(
        self, data: st.DataObject, who: str, answer: str | None
    ) -> None:
        """Cancel an order whose payment is at the gateway; the gateway may answer at once."""
        if not self.open:
            return
        order_id = data.draw(st.sampled_from(sorted(self.open)))
        owner = self.uow.orders.find_readonly(order_id).user_id
        actor = owner if who == "owner" else self.admin
        assert fulfilment.cancel_order(self.uow, actor, order_id, self._tick(), "too slow") == (
            Money(0)
        )
        self._cancelled_with_the_order(order_id)
        if answer is not None:
            self._answer_late(order_id, answer)

    @rule(
        data=st.data(),
        sku=st.sampled_from(sorted(STOCK)),
        answer=st.sampled_from([None, "approved", "declined", "failed", "timeout"]),
    )
    def buy_then_cancel_before_the_gateway_answers(
        self, data: st.DataObject, sku: str, answer: str | None
    ) -> None:
        """A shopper who pays, then cancels while the gateway still has the request."""
        user = data.draw(st.sampled_from(self.customers))
        placed = self._order_and_pay(user, sku, 1, "impatient")
        if placed is None:
            return
        order_id, start = placed
        self.open[order_id] = start.payment_id
        fulfilment.cancel_order(self.uow, user, order_id, self._tick(), "too slow")
        self._cancelled_with_the_order(order_id)
        if answer is not None:
            self._answer_late(order_id, answer)

    @rule(
        data=st.data(),
        answer=st.sampled_from(["approved", "approved", "declined", "failed", "timeout"]),
    )
    def the_gateway_answers_late(self, data: st.DataObject, answer: str) -> None:
        """The gateway answers for a payment whose order was cancelled meanwhile."""
        if self.late:
            self._answer_late(data.draw(st.sampled_from(sorted(self.late))), answer)

    def _answer_late(self, order_id: str, answer: str) -> None:
        payment_id = self.late[order_id]
        entries = len(self.uow.ledger)
        outcome = shopping.record_gateway_answer(
            self.uow,
            payment_id,
            answer,
            self._tick(),  # type: ignore[arg-type]
        )
        payment = self.uow.payments.find_readonly(payment_id)
        expected = {
            "approved": ("voided", PaymentStatus.VOIDED),
            "declined": ("declined", PaymentStatus.DECLINED),
            "failed": ("cancelled", PaymentStatus.CANCELLED),
            "timeout": ("cancelled", PaymentStatus.CANCELLED),
        }[answer]
        assert (outcome, payment.status) == expected
        assert self.uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
        if answer == "approved":  # a void in the ledger: it moves no money
            (entry,) = list(self.uow.ledger)[entries:]
            assert (entry.kind, entry.payment_id, entry.amount) == (
                EntryKind.VOID,
                payment_id,
                payment.amount,
            )
            tally.add("stateful_late_approvals_voided")
        else:
            assert len(self.uow.ledger) == entries
        if payment.status is not PaymentStatus.CANCELLED:
            del self.late[order_id]

    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        candidates = self._orders(OrderStatus.PROCESSING)
        if candidates:
            staff = data.draw(st.sampled_from(self.staff))
            order_id = data.draw(st.sampled_from(candidates))
            fulfilment.ship_order(self.uow, staff, order_id, self._tick())

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        candidates = self._orders(OrderStatus.SHIPPED)
        if candidates:
            staff = data.draw(st.sampled_from(self.staff))
            order_id = data.draw(st.sampled_from(candidates))
            fulfilment.deliver_order(self.uow, staff, order_id, self._tick())

    @rule(data=st.data())
    def ship_and_deliver(self, data: st.DataObject) -> None:
        candidates = self._orders(OrderStatus.PROCESSING)
        if candidates:
            order_id = data.draw(st.sampled_from(candidates))
            fulfilment.ship_order(self.uow, self.admin, order_id, self._tick())
            fulfilment.deliver_order(self.uow, self.admin, order_id, self._tick())

    @rule(data=st.data(), step=st.sampled_from(["ship", "deliver", "receive", "refund"]))
    def a_customer_is_refused_the_staffs_work(self, data: st.DataObject, step: str) -> None:
        orders = self._orders(*OrderStatus)
        if not orders:
            return
        order_id = data.draw(st.sampled_from(orders))
        customer = data.draw(st.sampled_from(self.customers))
        before = self.uow.orders.find_readonly(order_id).status
        action = {
            "ship": fulfilment.ship_order,
            "deliver": fulfilment.deliver_order,
            "receive": fulfilment.receive_return,
            "refund": fulfilment.refund_return,
        }[step]
        try:
            action(self.uow, customer, order_id, self._tick())
        except PermissionDenied as denied:
            assert "lacks permission manage_orders" in str(denied)
        else:
            raise AssertionError(f"customer {customer} did the staff's {step} on {order_id}")
        assert self.uow.orders.find_readonly(order_id).status is before

    @rule(data=st.data())
    def request_return(self, data: st.DataObject) -> None:
        candidates = [
            o
            for o in self._orders(OrderStatus.DELIVERED, OrderStatus.REFUNDED)
            if self.uow.orders.find_readonly(o).returnable
        ]
        if not candidates:
            return
        order_id = data.draw(st.sampled_from(candidates))
        order = self.uow.orders.find_readonly(order_id)
        left = order.returnable
        sku = data.draw(st.sampled_from(sorted(left)))
        units = {sku: data.draw(st.integers(1, left[sku]))}
        fulfilment.request_return(self.uow, order.user_id, order_id, units, self._tick())

    @rule(data=st.data())
    def return_everything(self, data: st.DataObject) -> None:
        candidates = [
            o
            for o in self._orders(OrderStatus.DELIVERED, OrderStatus.REFUNDED)
            if self.uow.orders.find_readonly(o).returnable
        ]
        if candidates:
            order_id = data.draw(st.sampled_from(candidates))
            order = self.uow.orders.find_readonly(order_id)
            units = order.returnable
            fulfilment.request_return(self.uow, order.user_id, order_id, units, self._tick())
            fulfilment.receive_return(self.uow, self.admin, order_id, self._tick())
            fulfilment.refund_return(self.uow, self.admin, order_id, self._tick())

    @rule(data=st.data())
    def receive_return(self, data: st.DataObject) -> None:
        candidates = self._orders(OrderStatus.RETURN_REQUESTED)
        if candidates:
            staff = data.draw(st.sampled_from(self.staff))
            order_id = data.draw(st.sampled_from(candidates))
            fulfilment.receive_return(self.uow, staff, order_id, self._tick())

    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        candidates = self._orders(OrderStatus.RETURNED)
        if candidates:
            staff = data.draw(st.sampled_from(self.staff))
            order_id = data.draw(st.sampled_from(candidates))
            fulfilment.refund_return(self.uow, staff, order_id, self._tick())

    @rule(minutes=st.sampled_from([1, 10, 20]))
    def time_passes_and_reservations_expire(self, minutes: int) -> None:
        """Expire every pending order whose reservation ran out, a payment in flight or not."""
        now = self._tick(60.0 * minutes)
        for order_id in self._orders(OrderStatus.PENDING):
            if fulfilment.expire_order(self.uow, order_id, now):
                self._cancelled_with_the_order(order_id)

    @rule(sku=st.sampled_from(sorted(STOCK)), qty=st.integers(1, 5))
    def supplier_restocks(self, sku: str, qty: int) -> None:
        with self.uow:
            self.uow.stock.get(sku).restock(qty, inventory.SUPPLIER, self._tick())
            self.uow.commit()

    # --- the invariant ---------------------------------------------------------------------
    @invariant()
    def the_books_balance(self) -> None:
        books = audit_books(self.uow)
        assert books.ok, books.violations
        for order_id, payment_id in self.open.items():
            payment = self.uow.payments.find_readonly(payment_id)
            assert payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED), order_id
        for order_id, payment_id in self.late.items():
            assert self.uow.payments.find_readonly(payment_id).status is PaymentStatus.CANCELLED
            assert self.uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
        tally.add("stateful_steps")

    def teardown(self) -> None:
        uow = getattr(self, "uow", None)
        for order in uow.orders.values() if uow is not None else ():
            tally.add(f"stateful_orders_{order.status.value}")


TestShop = Shop.TestCase
TestShop.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("late", ["approved", "declined", "failed", "timeout"])
@pytest.mark.parametrize("how", ["cancel", "expire"])
def test_cancelling_while_the_gateway_holds_the_payment_closes_it(how, late):
    """Once a bug: the payment stayed pending for ever, a late approval raised on the order."""
    shop = Shop()
    shop.open_shop()
    user = shop.customers[0]
    shopping.add_to_cart(shop.uow, user, "SKU-A", 1, 1.0)
    order_id = shopping.checkout(shop.uow, user, 2.0, policies=shop.policies)
    start = shopping.begin_payment(
        shop.uow,
        order_id,
        CARD,
        gateway="card",
        idempotency_key="k",
        now=3.0,
        policies=shop.policies,
    )
    if how == "cancel":
        assert fulfilment.cancel_order(shop.uow, user, order_id, 4.0, "too slow") == Money(0)
    else:
        assert fulfilment.expire_order(shop.uow, order_id, 2.0 + shop.policies.reservation_ttl)
    # the payment is closed with its order, the books have nothing in limbo
    payment = shop.uow.payments.find_readonly(start.payment_id)
    assert payment.status is PaymentStatus.CANCELLED
    assert shop.uow.idempotency.find_readonly("k").outcome == "cancelled"
    assert audit_books(shop.uow).ok
    # the gateway's answer arrives late: it never revives the order
    outcome = shopping.record_gateway_answer(shop.uow, start.payment_id, late, 2000.0)
    assert (outcome, payment.status) == {
        "approved": ("voided", PaymentStatus.VOIDED),
        "declined": ("declined", PaymentStatus.DECLINED),
        "failed": ("cancelled", PaymentStatus.CANCELLED),
        "timeout": ("cancelled", PaymentStatus.CANCELLED),
    }[late]
    assert shop.uow.orders.find_readonly(order_id).status is OrderStatus.CANCELLED
    voids = [(e.kind, e.payment_id, e.amount) for e in shop.uow.ledger]
    voided = [(EntryKind.VOID, start.payment_id, Money(1849))]  # 12.50 + 8 % tax + 4.99
    assert voids == (voided if late == "approved" else [])
    assert shop.uow.stock.find_readonly("SKU-A").available == STOCK["SKU-A"]
    books = audit_books(shop.uow)
    assert books.ok, books.violations
    replay = shopping.begin_payment(
        shop.uow,
        order_id,
        CARD,
        gateway="card",
        idempotency_key="k",
        now=2001.0,
        policies=shop.policies,
    )
    assert (replay.action, replay.outcome) == ("replayed", "cancelled")
