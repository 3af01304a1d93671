"""A small shop for the security tests: every role, products of the shop and of a merchant."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sim.domain.coupons import PERCENT, Coupon
from sim.domain.inventory import StockItem
from sim.domain.money import Money
from sim.domain.payments import Card
from sim.domain.users import PasswordHasher, Role
from sim.services.handlers import accounts, catalog, fulfilment, shopping
from sim.services.policies import ShopPolicies
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers

PASSWORD = "Known-secret-Pa55word"
"""Every test user's password: it must never show up in a log, a repr or a report."""

CARD = Card("4242424242424242", 12, 2030, "Sec Tester", "US")


@dataclass
class Shop:
    uow: UnitOfWork
    policies: ShopPolicies
    customer: str
    other: str
    merchant: str
    other_merchant: str
    admin: str
    category: str
    sub: str
    """A second top-level category (admins may move it under ``category``)."""
    shop_sku: str
    merchant_sku: str
    pending: str
    """A pending order of ``customer``."""
    delivered: str
    """A paid, shipped and delivered order of ``customer``."""
    paid: str
    """A paid order of ``customer`` waiting to ship (processing)."""
    shipped: str
    """A shipped order of ``customer``."""
    returning: str
    """A delivered order of ``customer`` with a return requested."""
    returned: str
    """A delivered order of ``customer`` whose return arrived, not yet refunded."""


def make_shop() -> Shop:
    hasher = PasswordHasher(iterations=1)
    policies = ShopPolicies(hasher=hasher)
    uow = attach_subscribers(UnitOfWork())
    ids = {}
    for name, role in (
        ("customer", Role.CUSTOMER),
        ("other", Role.CUSTOMER),
        ("merchant", Role.MERCHANT),
        ("other_merchant", Role.MERCHANT),
        ("admin", Role.ADMIN),
    ):
        ids[name] = accounts.register(
            uow, f"{name}@shop.example", PASSWORD, 0.0, role=role, hasher=hasher
        )
    category = catalog.create_category(uow, ids["admin"], "Things", None, 0.0)
    sub = catalog.create_category(uow, ids["admin"], "Small things", None, 0.0)
    shop_sku = catalog.create_product(
        uow, ids["admin"], name="Lamp", description="a lamp", category_id=category,
        price=Money(2500), now=0.0, sku="SKU-SHOP",
    )  # fmt: skip
    merchant_sku = catalog.create_product(
        uow, ids["merchant"], name="Mug", description="a mug", category_id=category,
        price=Money(900), now=0.0, sku="SKU-MERCH",
    )  # fmt: skip
    with uow:
        uow.stock.add(StockItem(shop_sku, 100))
        uow.stock.add(StockItem(merchant_sku, 100))
        uow.coupons.add(Coupon.create("SAVE10", PERCENT, 1000))
        uow.commit()
    customer = ids["customer"]
    shopping.add_to_cart(uow, customer, shop_sku, 2, 1.0)
    delivered = shopping.checkout(uow, customer, 1.0, policies=policies)
    start = shopping.begin_payment(
        uow, delivered, CARD, gateway="gw", idempotency_key="k1", now=2.0, policies=policies
    )
    shopping.record_gateway_answer(uow, start.payment_id, "approved", 3.0)
    fulfilment.ship_order(uow, ids["admin"], delivered, 4.0)
    fulfilment.deliver_order(uow, ids["admin"], delivered, 5.0)
    shopping.add_to_cart(uow, customer, merchant_sku, 1, 6.0)
    pending = shopping.checkout(uow, customer, 6.0, policies=policies)
    staff = ids["admin"]
    later = []  # orders of the customer in the staff's steps: paid, shipped, returning, returned
    for n in range(4):
        shopping.add_to_cart(uow, customer, shop_sku, 1, 7.0)
        order = shopping.checkout(uow, customer, 7.0, policies=policies)
        start = shopping.begin_payment(
            uow, order, CARD, gateway="gw", idempotency_key=f"k{n + 2}", now=7.0,
            policies=policies,
        )  # fmt: skip
        shopping.record_gateway_answer(uow, start.payment_id, "approved", 7.0)
        if n >= 1:
            fulfilment.ship_order(uow, staff, order, 8.0)
        if n >= 2:
            fulfilment.deliver_order(uow, staff, order, 8.0)
            fulfilment.request_return(uow, customer, order, {shop_sku: 1}, 8.0)
        if n >= 3:
            fulfilment.receive_return(uow, staff, order, 8.0)
        later.append(order)
    return Shop(
        uow, policies, customer, ids["other"], ids["merchant"], ids["other_merchant"],
        ids["admin"], category, sub, shop_sku, merchant_sku, pending, delivered, *later,
    )  # fmt: skip


@pytest.fixture
def shop() -> Shop:
    return make_shop()
