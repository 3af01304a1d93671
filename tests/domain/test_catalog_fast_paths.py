"""Fast forms of search inputs and cheap snapshots give exactly what the plain forms give.

``CatalogIndex.search`` takes a ``sold_out`` set instead of an ``in_stock`` predicate, a
sales mapping instead of a sales function, and the recommender's per-category sales rankings
instead of ranking a category; the results must be identical. Immutable values
(``Money``, ``OrderLine``) deep-copy to themselves; ``Cart`` and ``StockItem`` copy their
mutable parts.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.carts import Cart
from sim.domain.catalog import (
    CatalogIndex,
    Category,
    Product,
    Recommender,
    SearchPage,
    SearchQuery,
)
from sim.domain.inventory import StockItem
from sim.domain.money import Money
from sim.domain.orders import OrderLine

SKUS = [f"SKU-{i:03d}" for i in range(40)]


def _index() -> CatalogIndex:
    index = CatalogIndex()
    for c in ("c1", "c2"):
        index.add_category(Category.create(c, c.upper(), None, 0.0))
    for i, sku in enumerate(SKUS):
        product = Product.create(
            sku, f"Thing {i % 7}", "plain words", "c1" if i % 3 else "c2", Money(100 + i), 0.0
        )
        index.upsert(product)
    return index


INDEX = _index()


@settings(max_examples=150, deadline=None)
@given(
    sold_out=st.sets(st.sampled_from(SKUS), max_size=20),
    sales=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), max_size=30),
    category=st.sampled_from([None, "c1", "c2"]),
    in_stock_only=st.booleans(),
    page=st.integers(1, 4),
    size=st.integers(1, 12),
)
def test_a_sold_out_set_and_a_sales_mapping_give_the_plain_results(
    sold_out, sales, category, in_stock_only, page, size
):
    query = SearchQuery(
        category_id=category,
        in_stock_only=in_stock_only,
        sort="best_selling",
        page=page,
        page_size=size,
    )
    plain = INDEX.search(
        query, in_stock=lambda s: s not in sold_out, sales=lambda s: sales.get(s, 0)
    )
    fast = INDEX.search(query, sales=sales, sold_out=frozenset(sold_out))
    assert fast == plain


def test_a_mapping_with_units_of_zero_or_below_ranks_them_with_the_unsold():
    query = SearchQuery(category_id="c2", sort="best_selling", page_size=5)
    sales = {"SKU-003": 0, "SKU-006": 2, "SKU-009": -1}
    plain = INDEX.search(query, sales=lambda s: sales.get(s, 0))
    fast = INDEX.search(query, sales=sales)
    assert fast == plain
    assert fast.items == ("SKU-006", "SKU-000", "SKU-003", "SKU-012", "SKU-015")


def test_in_stock_only_needs_a_predicate_or_a_set():
    with pytest.raises(Exception, match="in_stock function or a sold_out set"):
        INDEX.search(SearchQuery(in_stock_only=True))
    page = INDEX.search(SearchQuery(in_stock_only=True, page_size=3), sold_out=set())
    assert page.items == ("SKU-000", "SKU-001", "SKU-002")


def test_the_sales_table_is_a_live_read_only_view():
    recommender = Recommender()
    table = recommender.sales_table
    recommender.record_order(["SKU-001", "SKU-002"])
    recommender.record_order(["SKU-002"])
    assert dict(table) == {"SKU-001": 1, "SKU-002": 2}
    with pytest.raises(TypeError):
        table["SKU-003"] = 1  # type: ignore[index]


def test_immutable_values_deep_copy_to_themselves():
    price = Money(1999)
    line = OrderLine("SKU-1", "c1", price, 2, Money(0), Money(320))
    assert copy.deepcopy(price) is price
    assert copy.copy(price) is price
    assert copy.deepcopy(line) is line


def test_a_cart_snapshot_is_independent_of_the_cart():
    cart = Cart.create("user-1", 0.0)
    cart.add("SKU-1", 2, 1.0)
    cart.add_coupon("TEN", 2.0)
    events = list(cart.events)
    snapshot = copy.deepcopy(cart)
    assert snapshot == cart
    assert snapshot.events == events
    assert snapshot.events is not cart.events
    cart.add("SKU-2", 1, 3.0)
    cart.remove_coupon("TEN", 4.0)
    assert snapshot.lines == {"SKU-1": 2}
    assert snapshot.coupon_codes == ["TEN"]
    assert snapshot.events == events
    assert len(cart.events) > len(events)


def test_a_stock_snapshot_keeps_every_counter():
    item = StockItem("SKU-1", 10)
    item.reserve(3, "r-1", 0.0)
    item.commit(2, "r-1", 1.0)
    item.restock(5, "supplier", 2.0)
    snapshot = copy.deepcopy(item)
    assert snapshot == item
    assert (snapshot.on_hand, snapshot.reserved, snapshot.sold, snapshot.received) == (13, 1, 2, 5)
    item.release(1, "r-1", "cancelled", 3.0)
    assert snapshot.reserved == 1
    assert len(snapshot.events) == len(item.events) - 2


def _tree_index() -> CatalogIndex:
    # root > (a > a1), b: a search of "root" or "a" merges several categories' rankings
    index = CatalogIndex()
    for cid, parent in (("root", None), ("a", "root"), ("a1", "a"), ("b", "root")):
        index.add_category(Category.create(cid, cid.upper(), parent, 0.0))
    return index


TREE = ("root", "a", "a1", "b")


@settings(max_examples=200, deadline=None)
@given(
    homes=st.lists(st.sampled_from(TREE), min_size=len(SKUS), max_size=len(SKUS)),
    orders=st.lists(st.lists(st.sampled_from(SKUS), min_size=1, max_size=4), max_size=40),
    moves=st.lists(st.tuples(st.sampled_from(SKUS), st.sampled_from(TREE)), max_size=5),
    deleted=st.sets(st.sampled_from(SKUS), max_size=4),
    sold_out=st.sets(st.sampled_from(SKUS), max_size=15),
    category=st.sampled_from(TREE),
    in_stock_only=st.booleans(),
    page=st.integers(1, 4),
    size=st.integers(1, 12),
)
def test_the_recommenders_rankings_give_the_plain_best_selling_page(
    homes, orders, moves, deleted, sold_out, category, in_stock_only, page, size
):
    index, recommender = _tree_index(), Recommender()
    products = {}
    for sku, home in zip(SKUS, homes, strict=True):
        products[sku] = Product.create(sku, "Thing", "plain", home, Money(100), 0.0)
        index.upsert(products[sku])
        recommender.set_category(sku, home)
    half = len(orders) // 2
    for basket in orders[:half]:
        recommender.record_order(basket)
    for sku, home in moves:  # a product moved to another category after some sales
        products[sku].update(0.0, category_id=home)
        index.upsert(products[sku])
        recommender.set_category(sku, home)
    for basket in orders[half:]:
        recommender.record_order(basket)
    for sku in deleted:
        index.remove(sku)
        recommender.forget(sku)
    query = SearchQuery(
        category_id=category,
        in_stock_only=in_stock_only,
        sort="best_selling",
        page=page,
        page_size=size,
    )
    sales = recommender.sales_table
    plain = index.search(
        query, in_stock=lambda s: s not in sold_out, sales=lambda s: sales.get(s, 0)
    )
    fast = index.search(query, sales=sales, sold_out=sold_out, ranked=recommender.ranked_in)
    assert fast == plain
    for cid in TREE:  # each ranking is the category's sold SKUs by (-units, sku)
        expected = sorted(
            (-units, sku) for sku, units in sales.items() if products[sku].category_id == cid
        )
        assert list(recommender.ranked_in(cid)) == expected
        assert recommender.best_sellers(cid, 3) == [sku for _, sku in expected[:3]]


def test_a_ranked_page_past_the_end_is_empty_and_counts_the_in_stock_matches():
    index, recommender = _tree_index(), Recommender()
    for i, sku in enumerate(SKUS[:5]):
        index.upsert(Product.create(sku, "Thing", "plain", "b", Money(100 + i), 0.0))
        recommender.set_category(sku, "b")
    recommender.record_order([SKUS[3]])
    recommender.record_order([SKUS[3], SKUS[1]])
    query = SearchQuery(category_id="b", in_stock_only=True, sort="best_selling", page_size=2)
    ranked = recommender.ranked_in
    first = index.search(query, sales=recommender.sales_table, sold_out={SKUS[1]}, ranked=ranked)
    assert first == SearchPage((SKUS[3], SKUS[0]), 4, 1, 2)
    late = SearchQuery(category_id="b", sort="best_selling", page=4, page_size=2)
    assert index.search(late, sales=recommender.sales_table, ranked=ranked) == SearchPage(
        (), 5, 4, 3
    )
