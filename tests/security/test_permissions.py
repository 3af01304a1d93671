"""Role checks on every mutating use case: a matrix of role x action, allowed or PermissionDenied.

Roles: the customer who owns the order or cart in question, another customer, a merchant (who
owns ``SKU-MERCH``) and an admin. What each may do is the permission table of
:mod:`sim.domain.users` (``PERMISSIONS``) as the handlers apply it: categories and shop products
need ``manage_all_products`` (admins); a merchant manages their own products only; an order is
cancelled, or a return opened, by its customer or an admin; bulk orders and the staff's
steps (ship, deliver, receive and refund a return) need ``manage_orders`` (merchants and
admins); roles are changed by ``manage_users`` (admins), never one's own. Every shopper acts
on their own cart (``purchase``: every role). A refused action changes nothing.
A completeness test makes every public handler either part of the matrix or explicitly listed
as a system use case (no actor: the engine calls it) or a read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from sim.domain.errors import PermissionDenied
from sim.domain.money import Money
from sim.domain.orders import OrderStatus
from sim.domain.users import PERMISSIONS, Permission, Role
from sim.services.handlers import accounts, catalog, fulfilment, shopping
from tests.security.conftest import Shop

ROLES = ("customer", "other customer", "merchant", "admin")


def _actor(shop: Shop, role: str) -> str:
    return {
        "customer": shop.customer,
        "other customer": shop.other,
        "merchant": shop.merchant,
        "admin": shop.admin,
    }[role]


def _state(shop: Shop) -> tuple:
    """What any of the actions would change: enough to see that a refusal changed nothing."""
    uow = shop.uow
    return (
        sorted((u.id, u.role.value) for u in uow.users.values()),
        sorted((c.id, c.parent_id) for c in uow.categories.values()),
        sorted((p.sku, p.name, p.price.minor) for p in uow.products.values()),
        sorted((o.id, o.status.value, tuple(sorted(o.pending_return.items())))
               for o in uow.orders.values()),
        sorted(
            (c.user_id, tuple(sorted(c.lines.items())), tuple(c.coupon_codes))
            for c in uow.carts.values()
        ),
        len(uow.ledger),
    )  # fmt: skip


Action = Callable[[Shop, str], object]

ACTIONS: dict[str, Action] = {
    "change_role": lambda s, a: accounts.change_role(s.uow, a, s.other, Role.MERCHANT, 9.0),
    "create_category": lambda s, a: catalog.create_category(s.uow, a, "New", None, 9.0),
    "move_category": lambda s, a: catalog.move_category(s.uow, a, s.sub, s.category, 9.0),
    "create_product": lambda s, a: catalog.create_product(
        s.uow,
        a,
        name="Pen",
        description="a pen",
        category_id=s.category,
        price=Money(199),
        now=9.0,
    ),
    "update_merchant_product": lambda s, a: catalog.update_product(
        s.uow, a, s.merchant_sku, 9.0, name="Better mug"
    ),
    "update_shop_product": lambda s, a: catalog.update_product(
        s.uow, a, s.shop_sku, 9.0, price=Money(1)
    ),
    "delete_merchant_product": lambda s, a: catalog.delete_product(s.uow, a, s.merchant_sku, 9.0),
    "delete_shop_product": lambda s, a: catalog.delete_product(s.uow, a, s.shop_sku, 9.0),
    "bulk_create_products": lambda s, a: catalog.bulk_create_products(
        s.uow,
        a,
        [{"name": "Cup", "description": "a cup", "category_id": s.category, "price": Money(300)}],
        9.0,
    ),
    "cancel_order": lambda s, a: fulfilment.cancel_order(s.uow, a, s.pending, 9.0, "no"),
    "request_return": lambda s, a: fulfilment.request_return(
        s.uow, a, s.delivered, {s.shop_sku: 1}, 9.0
    ),
    "ship_order": lambda s, a: fulfilment.ship_order(s.uow, a, s.paid, 9.0),
    "deliver_order": lambda s, a: fulfilment.deliver_order(s.uow, a, s.shipped, 9.0),
    "receive_return": lambda s, a: fulfilment.receive_return(s.uow, a, s.returning, 9.0),
    "refund_return": lambda s, a: fulfilment.refund_return(s.uow, a, s.returned, 9.0),
    "bulk_place_orders": lambda s, a: fulfilment.bulk_place_orders(
        s.uow, a, [(s.other, {s.shop_sku: 1})], 9.0, policies=s.policies
    ),
    "add_to_own_cart": lambda s, a: shopping.add_to_cart(s.uow, a, s.shop_sku, 1, 9.0),
    "apply_coupon_to_own_cart": lambda s, a: (
        shopping.add_to_cart(s.uow, a, s.shop_sku, 1, 9.0),
        shopping.apply_coupon(s.uow, a, "SAVE10", 9.0, policies=s.policies),
    ),
    "checkout_own_cart": lambda s, a: (
        shopping.add_to_cart(s.uow, a, s.merchant_sku, 1, 9.0),
        shopping.checkout(s.uow, a, 9.0, policies=s.policies),
    ),
}

T, F = True, False
MATRIX: dict[str, tuple[bool, bool, bool, bool]] = {
    #                          customer, other customer, merchant, admin
    "change_role":             (F, F, F, T),
    "create_category":         (F, F, F, T),
    "move_category":           (F, F, F, T),
    "create_product":          (F, F, T, T),
    "update_merchant_product": (F, F, T, T),
    "update_shop_product":     (F, F, F, T),
    "delete_merchant_product": (F, F, T, T),
    "delete_shop_product":     (F, F, F, T),
    "bulk_create_products":    (F, F, T, T),
    "cancel_order":            (T, F, F, T),
    "request_return":          (T, F, F, T),
    "ship_order":              (F, F, T, T),
    "deliver_order":           (F, F, T, T),
    "receive_return":          (F, F, T, T),
    "refund_return":           (F, F, T, T),
    "bulk_place_orders":       (F, F, T, T),
    "add_to_own_cart":         (T, T, T, T),
    "apply_coupon_to_own_cart": (T, T, T, T),
    "checkout_own_cart":       (T, T, T, T),
}  # fmt: skip

CASES = [
    pytest.param(action, role, MATRIX[action][i], id=f"{action}-{role.replace(' ', '_')}")
    for action in MATRIX
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("action", "role", "allowed"), CASES)
def test_role_by_action(shop, action, role, allowed):
    actor = _actor(shop, role)
    before = _state(shop)
    if allowed:
        ACTIONS[action](shop, actor)
        assert _state(shop) != before, "an allowed action changed nothing"
    else:
        with pytest.raises(PermissionDenied) as denied:
            ACTIONS[action](shop, actor)
        assert actor in str(denied.value)
        assert _state(shop) == before, "a refused action left a change behind"


def test_the_matrix_follows_the_permission_table():
    merchant, customer = PERMISSIONS[Role.MERCHANT], PERMISSIONS[Role.CUSTOMER]
    assert Permission.MANAGE_OWN_PRODUCTS in merchant
    assert Permission.MANAGE_ALL_PRODUCTS not in merchant
    assert Permission.MANAGE_ORDERS in merchant and Permission.MANAGE_ORDERS not in customer
    assert Permission.MANAGE_USERS not in merchant
    assert PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert all(Permission.PURCHASE in PERMISSIONS[role] for role in Role)


def test_another_merchant_may_not_touch_a_merchants_product(shop):
    before = _state(shop)
    for action in ("update_merchant_product", "delete_merchant_product"):
        with pytest.raises(PermissionDenied, match="only on their own resources"):
            ACTIONS[action](shop, shop.other_merchant)
    assert _state(shop) == before


def test_nobody_changes_their_own_role(shop):
    with pytest.raises(PermissionDenied, match="may not change their own role"):
        accounts.change_role(shop.uow, shop.admin, shop.admin, Role.CUSTOMER, 9.0)
    assert shop.uow.users.find_readonly(shop.admin).role is Role.ADMIN


def test_a_refused_cancel_leaves_the_order_and_its_stock_alone(shop):
    order = shop.uow.orders.find_readonly(shop.pending)
    item = shop.uow.stock.find_readonly(shop.merchant_sku)
    with pytest.raises(PermissionDenied):
        fulfilment.cancel_order(shop.uow, shop.other, shop.pending, 9.0, "mine now")
    assert order.status is OrderStatus.PENDING
    assert item.reserved == 1


# --- every handler is classified ------------------------------------------------------------------

IN_MATRIX = {
    "accounts.change_role",
    "catalog.create_category",
    "catalog.move_category",
    "catalog.create_product",
    "catalog.update_product",
    "catalog.delete_product",
    "catalog.bulk_create_products",
    "fulfilment.cancel_order",
    "fulfilment.request_return",
    "fulfilment.bulk_place_orders",
    "fulfilment.ship_order",
    "fulfilment.deliver_order",
    "fulfilment.receive_return",
    "fulfilment.refund_return",
    "shopping.add_to_cart",
    "shopping.apply_coupon",
    "shopping.checkout",
    "shopping.change_quantity",  # own cart, as add_to_cart
    "shopping.remove_from_cart",  # own cart
    "shopping.fit_cart_to_stock",  # own cart, as change_quantity
    "shopping.remove_coupon",  # own cart
    "shopping.view_cart",  # own cart (touches it)
}
SYSTEM = {
    # no actor: account plumbing the user triggers with credentials or a token
    "accounts.register",
    "accounts.register_many",  # register, for a batch (the simulated customer base)
    "accounts.login",
    "accounts.logout",
    "accounts.authenticate",
    "accounts.purge_sessions",
    "accounts.record_activity",
    # no actor: the engine drives them (a gateway's answer, the warehouse, the clock)
    "shopping.check_abandoned",
    "shopping.place_order",  # a building block inside checkout / bulk_place_orders
    "shopping.release_order",  # a building block
    "shopping.close_open_payments",  # a building block of every cancellation
    "shopping.begin_payment",
    "shopping.record_gateway_answer",
    "shopping.abandon_payment",
    "fulfilment.expire_order",
    "catalog.attach_catalog_views",
}
READS = {"shopping.price_user_cart", "fulfilment.order_history"}


def test_every_public_handler_is_in_the_matrix_or_listed_as_system_or_read():
    found = set()
    for module in (accounts, catalog, fulfilment, shopping):
        short = module.__name__.rsplit(".", 1)[1]
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                found.add(f"{short}.{name}")
    assert found == IN_MATRIX | SYSTEM | READS
    actor_names = {"actor_id", "user_id"}
    for qualified in IN_MATRIX:
        module, name = qualified.split(".")
        function = getattr(
            {
                "accounts": accounts,
                "catalog": catalog,
                "fulfilment": fulfilment,
                "shopping": shopping,
            }[module],
            name,
        )
        assert actor_names & set(inspect.signature(function).parameters), qualified
