from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sim.domain.catalog import CatalogIndex, Product, Recommender, SearchQuery
from sim.domain.errors import (
    AlreadyExists,
    CategoryCycle,
    InvalidProduct,
    InvalidValue,
    NotFound,
    PermissionDenied,
)
from sim.domain.events import (
    CategoryCreated,
    CategoryMoved,
    DomainEvent,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
)
from sim.domain.money import Money
from sim.domain.users import PasswordHasher, Role
from sim.services.bus import MessageBus
from sim.services.handlers import accounts
from sim.services.handlers import catalog as handlers
from sim.services.store import UnitOfWork
from tests.services.conftest import new_uow

PASSWORD = "Corr3ct-horse-battery"
ADMIN, MERCHANT, OTHER_MERCHANT, CUSTOMER = (
    "user-000001",
    "user-000002",
    "user-000003",
    "user-000004",
)


@dataclass
class Shop:
    uow: UnitOfWork
    index: CatalogIndex
    recommender: Recommender
    events: list[DomainEvent] = field(default_factory=list)

    def skus(self, **query) -> tuple[str, ...]:
        return self.index.search(SearchQuery(**query)).items


def make_shop(*, attach: bool = True) -> Shop:
    bus = MessageBus()
    uow = new_uow(bus)
    hasher = PasswordHasher.fast()
    for email, role in (
        ("root@example.com", Role.ADMIN),
        ("seller@example.com", Role.MERCHANT),
        ("rival@example.com", Role.MERCHANT),
        ("buyer@example.com", Role.CUSTOMER),
    ):
        accounts.register(uow, email, PASSWORD, 0.0, role=role, hasher=hasher)
    shop = Shop(uow, CatalogIndex(), Recommender())
    if attach:
        handlers.attach_catalog_views(bus, uow, shop.index, shop.recommender)
    bus.subscribe(DomainEvent, shop.events.append)
    return shop


def add_product(shop: Shop, actor: str = ADMIN, **kw) -> str:
    fields = {
        "name": "Red Shirt",
        "description": "cotton shirt",
        "category_id": "category-000001",
        "price": Money(1999),
        "now": 1.0,
    }
    fields.update(kw)
    return handlers.create_product(shop.uow, actor, **fields)


def shop_with_category() -> Shop:
    shop = make_shop()
    handlers.create_category(shop.uow, ADMIN, "Clothes", None, 0.0)
    shop.events.clear()
    return shop


def spec(n: int, **kw) -> dict:
    row = {
        "name": f"Item {n}",
        "description": f"number {n}",
        "category_id": "category-000001",
        "price": Money(100 * n),
    }
    row.update(kw)
    return row


# --- categories --------------------------------------------------------------------------------
def test_admin_creates_categories_in_a_tree():
    shop = make_shop()
    top = handlers.create_category(shop.uow, ADMIN, "Clothes", None, 0.0)
    sub = handlers.create_category(shop.uow, ADMIN, " Shirts ", top, 1.0)
    assert (top, sub) == ("category-000001", "category-000002")
    category = shop.uow.categories.find_readonly(sub)
    assert (category.name, category.parent_id) == ("Shirts", top)
    assert shop.events == [
        CategoryCreated(at=0.0, category_id=top, parent_id=None),
        CategoryCreated(at=1.0, category_id=sub, parent_id=top),
    ]
    assert shop.index.subtree(top) == {top, sub}


@pytest.mark.parametrize("actor", [MERCHANT, CUSTOMER])
def test_only_admins_manage_categories(actor):
    shop = shop_with_category()
    with pytest.raises(PermissionDenied, match=f"user {actor} .* lacks permission manage_all"):
        handlers.create_category(shop.uow, actor, "Hats", None, 0.0)
    with pytest.raises(PermissionDenied, match="lacks permission manage_all_products"):
        handlers.move_category(shop.uow, actor, "category-000001", None, 0.0)
    assert len(shop.uow.categories) == 1


def test_create_category_rejects_an_unknown_parent_and_a_blank_name_without_using_an_id():
    shop = shop_with_category()
    with pytest.raises(NotFound, match="category 'nope' not found"):
        handlers.create_category(shop.uow, ADMIN, "Hats", "nope", 0.0)
    with pytest.raises(InvalidValue, match="category name must be non-empty text, got '  '"):
        handlers.create_category(shop.uow, ADMIN, "  ", None, 0.0)
    with pytest.raises(NotFound, match="user 'user-999999' not found"):
        handlers.create_category(shop.uow, "user-999999", "Hats", None, 0.0)
    assert handlers.create_category(shop.uow, ADMIN, "Hats", None, 0.0) == "category-000002"
    assert shop.events == [CategoryCreated(at=0.0, category_id="category-000002", parent_id=None)]


def test_move_category_reparents_and_the_index_follows():
    shop = shop_with_category()
    clothes = "category-000001"
    shirts = handlers.create_category(shop.uow, ADMIN, "Shirts", clothes, 0.0)
    sale = handlers.create_category(shop.uow, ADMIN, "Sale", None, 0.0)
    sku = add_product(shop, category_id=shirts)
    assert shop.skus(category_id=clothes) == (sku,)
    shop.events.clear()
    handlers.move_category(shop.uow, ADMIN, shirts, sale, 5.0)
    assert shop.uow.categories.find_readonly(shirts).parent_id == sale
    assert shop.events == [
        CategoryMoved(at=5.0, category_id=shirts, old_parent_id=clothes, new_parent_id=sale)
    ]
    assert shop.skus(category_id=clothes) == ()
    assert shop.skus(category_id=sale) == (sku,)
    handlers.move_category(shop.uow, ADMIN, shirts, sale, 6.0)  # the same parent: nothing
    handlers.move_category(shop.uow, ADMIN, shirts, None, 7.0)
    assert shop.skus(category_id=sale) == ()
    assert [type(e) for e in shop.events] == [CategoryMoved, CategoryMoved]


def test_move_category_refuses_a_cycle_and_unknown_ids():
    shop = shop_with_category()
    a = "category-000001"
    b = handlers.create_category(shop.uow, ADMIN, "B", a, 0.0)
    c = handlers.create_category(shop.uow, ADMIN, "C", b, 0.0)
    shop.events.clear()
    with pytest.raises(
        CategoryCycle, match=f"moving category '{a}' under '{c}' would make a cycle"
    ):
        handlers.move_category(shop.uow, ADMIN, a, c, 1.0)
    with pytest.raises(CategoryCycle, match="cannot be its own parent"):
        handlers.move_category(shop.uow, ADMIN, b, b, 1.0)
    with pytest.raises(NotFound, match="category 'nope' not found"):
        handlers.move_category(shop.uow, ADMIN, "nope", None, 1.0)
    with pytest.raises(NotFound, match="category 'nope' not found"):
        handlers.move_category(shop.uow, ADMIN, a, "nope", 1.0)
    assert shop.uow.categories.find_readonly(a).parent_id is None
    assert shop.events == []


# --- creating products: the permission matrix ---------------------------------------------------
def test_admin_creates_shop_owned_products_and_products_for_a_merchant():
    shop = shop_with_category()
    own = add_product(shop, sku="SKU-1")
    theirs = add_product(shop, sku="SKU-2", merchant_id=MERCHANT)
    assert shop.uow.products.find_readonly(own).merchant_id is None
    assert shop.uow.products.find_readonly(theirs).merchant_id == MERCHANT
    assert shop.events == [ProductCreated(at=1.0, sku="SKU-1"), ProductCreated(at=1.0, sku="SKU-2")]


def test_admin_cannot_give_a_product_to_someone_who_is_not_a_merchant():
    shop = shop_with_category()
    for owner in (CUSTOMER, ADMIN, "user-999999"):
        with pytest.raises(InvalidProduct, match=f"owner '{owner}' is not a registered merchant"):
            add_product(shop, merchant_id=owner)
    assert len(shop.uow.products) == 0


def test_a_merchant_creates_products_owned_by_themself():
    shop = shop_with_category()
    first = add_product(shop, MERCHANT)
    second = add_product(shop, MERCHANT, merchant_id=MERCHANT, name="Blue Shirt")
    assert [shop.uow.products.find_readonly(s).merchant_id for s in (first, second)] == [
        MERCHANT,
        MERCHANT,
    ]


def test_a_merchant_cannot_create_for_another_merchant():
    shop = shop_with_category()
    with pytest.raises(PermissionDenied, match=f"user {MERCHANT} .* only on their own resources"):
        add_product(shop, MERCHANT, merchant_id=OTHER_MERCHANT)
    assert len(shop.uow.products) == 0


def test_a_customer_cannot_create_products():
    shop = shop_with_category()
    with pytest.raises(PermissionDenied, match="lacks permission manage_all_products"):
        add_product(shop, CUSTOMER)
    with pytest.raises(PermissionDenied, match="lacks permission manage_own_products"):
        add_product(shop, CUSTOMER, merchant_id=CUSTOMER)
    assert len(shop.uow.products) == 0
    assert shop.events == []


def test_generated_skus_are_sequential_and_rejected_products_use_none():
    shop = shop_with_category()
    assert add_product(shop) == "sku-000001"
    with pytest.raises(InvalidProduct, match="new product: price must be a positive Money amount"):
        add_product(shop, price=Money(0))
    with pytest.raises(InvalidProduct, match="new product: unknown category 'nope'"):
        add_product(shop, category_id="nope")
    assert add_product(shop) == "sku-000002"


def test_create_product_rejects_a_taken_sku_and_keeps_the_first():
    shop = shop_with_category()
    add_product(shop, sku="SKU-1", name="First")
    with pytest.raises(AlreadyExists, match="product 'SKU-1' already exists"):
        add_product(shop, sku="SKU-1", name="Second")
    assert shop.uow.products.find_readonly("SKU-1").name == "First"
    assert shop.skus(text="second") == ()
    assert shop.skus(text="first") == ("SKU-1",)


# --- updating and deleting: the permission matrix -----------------------------------------------
def merchant_and_shop_products(shop: Shop) -> tuple[str, str]:
    theirs = add_product(shop, MERCHANT, sku="SKU-M", name="Merchant Mug")
    ours = add_product(shop, ADMIN, sku="SKU-S", name="Shop Shirt")
    shop.events.clear()
    return theirs, ours


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        (ADMIN, "SKU-M", True),
        (ADMIN, "SKU-S", True),
        (MERCHANT, "SKU-M", True),
        (MERCHANT, "SKU-S", False),
        (OTHER_MERCHANT, "SKU-M", False),
        (OTHER_MERCHANT, "SKU-S", False),
        (CUSTOMER, "SKU-M", False),
        (CUSTOMER, "SKU-S", False),
    ],
)
def test_update_and_delete_permission_matrix(actor, target, allowed):
    shop = shop_with_category()
    merchant_and_shop_products(shop)
    if allowed:
        assert handlers.update_product(shop.uow, actor, target, 2.0, name="Renamed") is True
        handlers.delete_product(shop.uow, actor, target, 3.0)
        assert target not in shop.uow.products
        assert shop.events == [
            ProductUpdated(at=2.0, sku=target),
            ProductDeleted(at=3.0, sku=target),
        ]
    else:
        with pytest.raises(PermissionDenied, match=f"user {actor} "):
            handlers.update_product(shop.uow, actor, target, 2.0, name="Renamed")
        with pytest.raises(PermissionDenied, match=f"user {actor} "):
            handlers.delete_product(shop.uow, actor, target, 3.0)
        assert shop.uow.products.find_readonly(target).name != "Renamed"
        assert shop.events == []


def test_update_product_changes_fields_and_the_index_follows():
    shop = shop_with_category()
    hats = handlers.create_category(shop.uow, ADMIN, "Hats", None, 0.0)
    sku = add_product(shop, sku="SKU-1")
    changed = handlers.update_product(
        shop.uow,
        ADMIN,
        sku,
        4.0,
        name="Wool Hat",
        description="warm",
        price=Money(2500),
        category_id=hats,
    )
    assert changed is True
    product = shop.uow.products.find_readonly(sku)
    assert (product.name, product.description, product.price, product.category_id) == (
        "Wool Hat",
        "warm",
        Money(2500),
        hats,
    )
    assert product.updated_at == 4.0
    assert shop.skus(text="shirt") == ()
    assert shop.skus(text="wool warm") == (sku,)
    assert shop.skus(category_id="category-000001") == ()
    assert shop.skus(category_id=hats) == (sku,)
    assert shop.skus(min_price=Money(2500), max_price=Money(2500)) == (sku,)
    assert handlers.update_product(shop.uow, ADMIN, sku, 5.0, name="Wool Hat") is False


def test_update_product_rejects_unknown_fields_categories_and_products():
    shop = shop_with_category()
    sku = add_product(shop, sku="SKU-1")
    shop.events.clear()
    with pytest.raises(InvalidProduct, match="SKU-1: cannot change colour, merchant_id; fields"):
        handlers.update_product(shop.uow, ADMIN, sku, 2.0, colour="red", merchant_id=MERCHANT)
    with pytest.raises(InvalidProduct, match="SKU-1: unknown category 'nope'"):
        handlers.update_product(shop.uow, ADMIN, sku, 2.0, category_id="nope", name="New")
    with pytest.raises(InvalidProduct, match="SKU-1: name must be non-empty"):
        handlers.update_product(shop.uow, ADMIN, sku, 2.0, name=" ")
    with pytest.raises(NotFound, match="product 'SKU-9' not found"):
        handlers.update_product(shop.uow, ADMIN, "SKU-9", 2.0, name="New")
    with pytest.raises(NotFound, match="product 'SKU-9' not found"):
        handlers.delete_product(shop.uow, ADMIN, "SKU-9", 2.0)
    assert shop.uow.products.find_readonly(sku).name == "Red Shirt"
    assert shop.events == []


def test_delete_removes_the_product_from_store_index_and_recommendations():
    shop = shop_with_category()
    mug = add_product(shop, sku="SKU-MUG", name="Mug")
    cup = add_product(shop, sku="SKU-CUP", name="Cup")
    shop.recommender.record_order([mug, cup])
    assert shop.recommender.best_sellers("category-000001", 5) == [cup, mug]
    handlers.delete_product(shop.uow, ADMIN, mug, 3.0)
    assert mug not in shop.uow.products
    assert mug not in shop.index
    assert shop.skus(text="mug") == ()
    assert shop.recommender.sales(mug) == 0
    assert shop.recommender.bought_together(cup, 3, lambda s: "category-000001") == []
    assert shop.recommender.best_sellers("category-000001", 5) == [cup]


# --- rollback ----------------------------------------------------------------------------------
def test_a_failed_bulk_create_leaves_no_product_and_no_index_entry():
    shop = shop_with_category()
    specs = [spec(1, sku="B-1"), spec(2, sku="B-2"), spec(3, sku="B-3", price=Money(0))]
    with pytest.raises(InvalidProduct, match="B-3: price must be a positive Money amount"):
        handlers.bulk_create_products(shop.uow, ADMIN, specs, 1.0)
    assert len(shop.uow.products) == 0
    assert len(shop.index) == 0
    assert shop.skus(text="one") == ()
    assert shop.events == []


def test_a_failed_update_rolls_back_and_the_index_keeps_the_old_state():
    shop = shop_with_category()
    sku = add_product(shop, sku="SKU-1")
    shop.events.clear()
    with pytest.raises(InvalidProduct):
        handlers.update_product(shop.uow, ADMIN, sku, 2.0, name="Wool Hat", price=Money(-1))
    assert shop.uow.products.find_readonly(sku).name == "Red Shirt"
    assert shop.skus(text="shirt") == (sku,)
    assert shop.skus(text="wool") == ()


# --- bulk creation -----------------------------------------------------------------------------
def test_bulk_create_makes_every_product_in_one_transaction():
    shop = shop_with_category()
    specs = [spec(1, sku="A-1"), spec(2), spec(3, sku="A-3", merchant_id=MERCHANT)]
    skus = handlers.bulk_create_products(shop.uow, ADMIN, specs, 2.0)
    assert skus == ["A-1", "sku-000001", "A-3"]
    owners = [shop.uow.products.find_readonly(s).merchant_id for s in skus]
    assert owners == [None, None, MERCHANT]
    assert shop.events == [ProductCreated(at=2.0, sku=s) for s in skus]
    assert shop.skus(sort="price_desc") == ("A-3", "sku-000001", "A-1")
    assert shop.skus(text="item", min_price=Money(200)) == ("A-3", "sku-000001")


def test_bulk_create_by_a_merchant_owns_every_product_and_checks_each_owner():
    shop = shop_with_category()
    skus = handlers.bulk_create_products(shop.uow, MERCHANT, [spec(1), spec(2)], 2.0)
    assert [shop.uow.products.find_readonly(s).merchant_id for s in skus] == [MERCHANT, MERCHANT]
    with pytest.raises(PermissionDenied, match="only on their own resources"):
        handlers.bulk_create_products(
            shop.uow, MERCHANT, [spec(3), spec(4, merchant_id=OTHER_MERCHANT)], 3.0
        )
    with pytest.raises(PermissionDenied, match="lacks permission"):
        handlers.bulk_create_products(shop.uow, CUSTOMER, [spec(5)], 3.0)
    assert len(shop.uow.products) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": "X", "description": "", "category_id": "category-000001"}, "missing ['price']"),
        ({**spec(1), "colour": "red"}, "unknown ['colour']"),
        (spec(1, category_id="nope"), "new product: unknown category 'nope'"),
    ],
)
def test_bulk_create_rejects_bad_specs(bad, message):
    shop = shop_with_category()
    with pytest.raises(InvalidProduct, match=message.replace("[", r"\[").replace("]", r"\]")):
        handlers.bulk_create_products(shop.uow, ADMIN, [spec(9), bad], 2.0)
    assert len(shop.uow.products) == 0
    assert len(shop.index) == 0


def test_bulk_create_with_a_duplicate_sku_creates_nothing():
    shop = shop_with_category()
    with pytest.raises(AlreadyExists, match="product 'D-1' already exists"):
        handlers.bulk_create_products(
            shop.uow, ADMIN, [spec(1, sku="D-1"), spec(2, sku="D-1")], 2.0
        )
    assert len(shop.uow.products) == 0
    assert len(shop.index) == 0


# --- the views ---------------------------------------------------------------------------------
def test_attaching_late_indexes_what_the_store_holds():
    shop = make_shop(attach=False)
    top = handlers.create_category(shop.uow, ADMIN, "Top", None, 0.0)
    sub = handlers.create_category(shop.uow, ADMIN, "Sub", top, 0.0)
    sku = add_product(shop, category_id=sub, sku="SKU-1")
    shop.recommender.record_order([sku])
    index, recommender = CatalogIndex(), shop.recommender
    handlers.attach_catalog_views(shop.uow.bus, shop.uow, index, recommender)
    assert index.search(SearchQuery(category_id=top)).items == (sku,)
    assert recommender.best_sellers(sub, 1) == [sku]
    other = add_product(shop, category_id=top, sku="SKU-2", name="Blue Shirt")
    assert index.search(SearchQuery(text="blue")).items == (other,)


def test_a_product_gone_before_its_event_is_delivered_is_dropped_from_the_views():
    shop = shop_with_category()
    with shop.uow:  # created and deleted in one transaction: both events find nothing
        created = Product.create("SKU-T", "Temp", "", "category-000001", Money(100), 1.0)
        shop.uow.products.add(created)
        created.mark_deleted(1.0)
        shop.uow.products.remove("SKU-T")
        shop.uow.commit()
    assert [type(e) for e in shop.events] == [ProductCreated, ProductDeleted]
    assert "SKU-T" not in shop.index
