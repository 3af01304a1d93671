"""Catalog use cases: categories and products (create, move, update, delete, bulk load).

Each function is one transaction on the unit of work: it commits or leaves no trace.
Authorisation: categories are managed by admins (``manage_all_products``); a product is
created, edited and deleted by an admin or by the merchant who owns it (a merchant's new
products are their own; a shop-owned product, ``merchant_id`` None, is admins' only).

The search read model (:class:`~sim.domain.catalog.CatalogIndex`) and the recommender are
kept in step by :func:`attach_catalog_views`, whose subscribers run after each commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sim.domain.catalog import CatalogIndex, Category, Product, Recommender
from sim.domain.errors import InvalidProduct, InvalidValue
from sim.domain.events import (
    CategoryCreated,
    CategoryMoved,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
)
from sim.domain.money import Money
from sim.domain.users import Permission, Role, User, require, require_owner_or_admin
from sim.services.bus import MessageBus
from sim.services.store import UnitOfWork

PRODUCT_FIELDS = frozenset({"name", "description", "price", "category_id"})
"""The product fields :func:`update_product` may change."""

SPEC_REQUIRED = frozenset({"name", "description", "category_id", "price"})
"""The keys every product spec of :func:`bulk_create_products` must have."""

SPEC_FIELDS = SPEC_REQUIRED | {"merchant_id", "sku"}
"""The keys a product spec of :func:`bulk_create_products` may have."""


# --- authorisation -----------------------------------------------------------------------------
def _authorize(actor: User, owner_id: str | None) -> None:
    """Admins may manage every product; merchants only their own; nobody else any."""
    if owner_id is None:
        require(actor, Permission.MANAGE_ALL_PRODUCTS)
    else:
        require_owner_or_admin(actor, owner_id, Permission.MANAGE_OWN_PRODUCTS)


def _owner_for_new(uow: UnitOfWork, actor: User, merchant_id: str | None) -> str | None:
    """Return the owner of a product ``actor`` creates; raise PermissionDenied if not allowed.

    A merchant's products are their own; an admin's are the shop's unless they name a
    merchant (who must exist and be a merchant).
    """
    if merchant_id is None and actor.role is Role.MERCHANT:
        merchant_id = actor.id
    _authorize(actor, merchant_id)
    if merchant_id is not None and actor.role is not Role.MERCHANT:
        owner = uow.users.find_readonly(merchant_id)
        if owner is None or owner.role is not Role.MERCHANT:
            raise InvalidProduct(f"owner {merchant_id!r} is not a registered merchant")
    return merchant_id


def _check_category_exists(uow: UnitOfWork, sku: str, category_id: str) -> None:
    if uow.categories.find_readonly(category_id) is None:
        raise InvalidProduct(f"{sku}: unknown category {category_id!r}")


def _parents(uow: UnitOfWork) -> dict[str, str | None]:
    return {c.id: c.parent_id for c in uow.categories.values()}


# --- categories --------------------------------------------------------------------------------
def create_category(
    uow: UnitOfWork, actor_id: str, name: str, parent_id: str | None, now: float
) -> str:
    """Add a category (under ``parent_id``, or at the top for None); return its id.

    Raises PermissionDenied for a non-admin, NotFound for an unknown parent, InvalidValue
    for a blank name.
    """
    with uow:
        require(uow.users.get(actor_id), Permission.MANAGE_ALL_PRODUCTS)
        if parent_id is not None:
            uow.categories.get(parent_id)
        if not isinstance(name, str) or not name.strip():
            raise InvalidValue(f"category name must be non-empty text, got {name!r}")
        category_id = uow.next_id("category")
        uow.categories.add(Category.create(category_id, name, parent_id, now))
        uow.commit()
    return category_id


def move_category(
    uow: UnitOfWork, actor_id: str, category_id: str, new_parent_id: str | None, now: float
) -> None:
    """Give a category another parent (None: make it top-level).

    Raises PermissionDenied for a non-admin, NotFound for an unknown category or parent,
    CategoryCycle if the new parent is the category or one of its descendants.
    """
    with uow:
        require(uow.users.get(actor_id), Permission.MANAGE_ALL_PRODUCTS)
        category = uow.categories.get(category_id)
        if new_parent_id is not None:
            uow.categories.get(new_parent_id)
        category.move_to(new_parent_id, _parents(uow), now)
        uow.commit()


# --- products ----------------------------------------------------------------------------------
def create_product(
    uow: UnitOfWork,
    actor_id: str,
    *,
    name: str,
    description: str,
    category_id: str,
    price: Money,
    now: float,
    merchant_id: str | None = None,
    sku: str | None = None,
) -> str:
    """Add a product to the catalog; return its SKU (``sku-000001``... if none is given).

    Raises PermissionDenied (a customer; a merchant creating for someone else),
    InvalidProduct (bad fields, unknown category, an owner who is not a merchant) or
    AlreadyExists (the SKU is taken).
    """
    with uow:
        actor = uow.users.get(actor_id)
        owner = _owner_for_new(uow, actor, merchant_id)
        sku = _create(uow, sku, name, description, category_id, price, owner, now)
        uow.commit()
    return sku


def _create(
    uow: UnitOfWork,
    sku: str | None,
    name: str,
    description: str,
    category_id: str,
    price: Money,
    owner: str | None,
    now: float,
) -> str:
    label = sku if sku is not None else "new product"
    _check_category_exists(uow, label, category_id)
    if sku is None:
        Product.create(label, name, description, category_id, price, now)  # check before an id
        sku = uow.next_id("sku")
    uow.products.add(Product.create(sku, name, description, category_id, price, now, owner))
    return sku


def update_product(uow: UnitOfWork, actor_id: str, sku: str, now: float, **changes: Any) -> bool:
    """Change a product's name, description, price or category; return True if anything changed.

    Raises NotFound, PermissionDenied (not an admin nor the owning merchant), or
    InvalidProduct (an unknown field, a bad value, an unknown category).
    """
    unknown = sorted(set(changes) - PRODUCT_FIELDS)
    if unknown:
        raise InvalidProduct(
            f"{sku}: cannot change {', '.join(unknown)}; "
            f"fields: {', '.join(sorted(PRODUCT_FIELDS))}"
        )
    with uow:
        actor = uow.users.get(actor_id)
        product = uow.products.get(sku)
        _authorize(actor, product.merchant_id)
        category_id = changes.get("category_id")
        if category_id is not None:
            _check_category_exists(uow, sku, category_id)
        changed = product.update(now, **changes)
        uow.commit()
    return changed


def delete_product(uow: UnitOfWork, actor_id: str, sku: str, now: float) -> None:
    """Remove a product from the catalog (it records ``ProductDeleted``).

    Raises NotFound or PermissionDenied (not an admin nor the owning merchant).
    """
    with uow:
        actor = uow.users.get(actor_id)
        product = uow.products.get(sku)
        _authorize(actor, product.merchant_id)
        product.mark_deleted(now)
        uow.products.remove(sku)
        uow.commit()


def bulk_create_products(
    uow: UnitOfWork, actor_id: str, specs: Iterable[Mapping[str, Any]], now: float
) -> list[str]:
    """Create many products in one transaction (all or nothing); return their SKUs in order.

    Each spec is a mapping with ``name``, ``description``, ``category_id`` and ``price``,
    optionally ``merchant_id`` and ``sku``. Rules and errors are those of
    :func:`create_product`; the first failing spec rolls every product back.
    """
    skus: list[str] = []
    with uow:
        actor = uow.users.get(actor_id)
        owners: dict[str | None, str | None] = {}
        for n, spec in enumerate(specs, 1):
            keys = spec.keys()
            if not keys >= SPEC_REQUIRED or not keys <= SPEC_FIELDS:
                raise InvalidProduct(
                    f"product spec {n}: missing {sorted(SPEC_REQUIRED - keys)}, "
                    f"unknown {sorted(keys - SPEC_FIELDS)}"
                )
            requested = spec.get("merchant_id")
            if requested not in owners:
                owners[requested] = _owner_for_new(uow, actor, requested)
            skus.append(
                _create(
                    uow,
                    spec.get("sku"),
                    spec["name"],
                    spec["description"],
                    spec["category_id"],
                    spec["price"],
                    owners[requested],
                    now,
                )
            )
        uow.commit()
    return skus


# --- read models -------------------------------------------------------------------------------
def attach_catalog_views(
    bus: MessageBus, uow: UnitOfWork, index: CatalogIndex, recommender: Recommender
) -> None:
    """Keep ``index`` and ``recommender`` in step with the catalog in ``uow``.

    Loads what the store holds already, then subscribes to the category and product events:
    each handler re-reads the aggregate (``find_readonly``) after the commit and indexes it,
    or drops it from the views if it is gone.
    """

    def sync_category(event: CategoryCreated | CategoryMoved) -> None:
        category = uow.categories.find_readonly(event.category_id)
        if category is not None:
            index.add_category(category)

    def sync_product(event: ProductCreated | ProductUpdated | ProductDeleted) -> None:
        product = uow.products.find_readonly(event.sku)
        if product is None:
            index.remove(event.sku)
            recommender.forget(event.sku)
        else:
            index.upsert(product)
            recommender.set_category(product.sku, product.category_id)

    for category in uow.categories.values():
        index.add_category(category)
    for product in uow.products.values():
        index.upsert(product)
        recommender.set_category(product.sku, product.category_id)
    bus.subscribe(CategoryCreated, sync_category)
    bus.subscribe(CategoryMoved, sync_category)
    bus.subscribe(ProductCreated, sync_product)
    bus.subscribe(ProductUpdated, sync_product)
    bus.subscribe(ProductDeleted, sync_product)
