from __future__ import annotations

import copy
import re
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain import catalog
from sim.domain.catalog import (
    MAX_PAIR_BASKET,
    NAME_WEIGHT,
    CatalogIndex,
    Category,
    Product,
    Recommender,
    SearchPage,
    SearchQuery,
    ancestors,
    check_parent,
    term_weights,
    tokenize,
)
from sim.domain.errors import CategoryCycle, InvalidProduct, InvalidValue
from sim.domain.events import (
    CategoryCreated,
    CategoryMoved,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
)
from sim.domain.money import Money

# --- categories ------------------------------------------------------------------------------
PARENTS = {"root": None, "a": "root", "b": "a", "c": "b", "other": None}


def test_ancestors_are_listed_nearest_first():
    assert ancestors(PARENTS, "c") == ["b", "a", "root"]
    assert ancestors(PARENTS, "root") == []
    assert ancestors(PARENTS, "unknown") == []
    assert ancestors({"x": "missing"}, "x") == ["missing"]


def test_ancestors_detects_a_loop_in_the_map():
    with pytest.raises(CategoryCycle, match="cycle"):
        ancestors({"x": "y", "y": "z", "z": "x"}, "x")


def test_check_parent_rejects_self_and_descendants_and_allows_the_rest():
    with pytest.raises(CategoryCycle, match="'a' cannot be its own parent"):
        check_parent(PARENTS, "a", "a")
    with pytest.raises(CategoryCycle, match="moving category 'a' under 'c' would make a cycle"):
        check_parent(PARENTS, "a", "c")
    check_parent(PARENTS, "a", "other")
    check_parent(PARENTS, "c", "root")
    check_parent(PARENTS, "c", None)


def test_category_create_records_an_event_and_rejects_bad_fields():
    category = Category.create("cat-1", "  Books ", "root", 5.0)
    assert (category.id, category.name, category.parent_id) == ("cat-1", "Books", "root")
    assert category.events == [CategoryCreated(at=5.0, category_id="cat-1", parent_id="root")]
    with pytest.raises(InvalidValue, match="category 'cat-2': name must be non-empty"):
        Category.create("cat-2", "   ", None, 0.0)
    with pytest.raises(InvalidValue, match="category id must be non-empty"):
        Category.create("", "Books", None, 0.0)
    with pytest.raises(CategoryCycle, match="own parent"):
        Category.create("cat-3", "Loop", "cat-3", 0.0)


def test_category_move_records_the_old_and_new_parent():
    category = Category("a", "A", "root")
    assert category.move_to("other", PARENTS, 7.0) is True
    assert category.parent_id == "other"
    assert category.events == [
        CategoryMoved(at=7.0, category_id="a", old_parent_id="root", new_parent_id="other")
    ]
    assert category.move_to("other", PARENTS, 8.0) is False
    assert len(category.events) == 1


def test_category_move_under_a_descendant_raises_and_changes_nothing():
    category = Category("a", "A", "root")
    with pytest.raises(CategoryCycle, match="'c' is a descendant of 'a'"):
        category.move_to("c", PARENTS, 1.0)
    assert category.parent_id == "root"
    assert category.events == []


# --- products --------------------------------------------------------------------------------
def make_product(sku: str = "SKU-1", **kw) -> Product:
    fields = {
        "name": "Red Shirt",
        "description": "cotton shirt",
        "category_id": "clothes",
        "price": Money(1999),
        "now": 1.0,
    }
    fields.update(kw)
    return Product.create(sku, **fields)


def test_product_create_sets_fields_and_records_created():
    product = make_product(name="  Red Shirt  ", merchant_id="m-1")
    assert product.name == "Red Shirt"
    assert (product.created_at, product.updated_at, product.deleted_at) == (1.0, 1.0, None)
    assert product.merchant_id == "m-1"
    assert product.events == [ProductCreated(at=1.0, sku="SKU-1")]


@pytest.mark.parametrize(
    ("sku", "fields", "message"),
    [
        ("", {}, "SKU must be non-empty text, got ''"),
        ("  ", {}, "SKU must be non-empty text"),
        ("SKU-1", {"name": " "}, "SKU-1: name must be non-empty text"),
        ("SKU-1", {"name": None}, "SKU-1: name must be non-empty text, got None"),
        ("SKU-1", {"description": 5}, "SKU-1: description must be text, got 5"),
        ("SKU-1", {"price": Money(0)}, "SKU-1: price must be a positive Money amount"),
        ("SKU-1", {"price": Money(-5)}, "positive Money"),
        ("SKU-1", {"price": 1999}, "got 1999"),
        ("SKU-1", {"category_id": ""}, "SKU-1: category id must be non-empty text"),
    ],
)
def test_product_create_rejects_bad_fields(sku, fields, message):
    with pytest.raises(InvalidProduct, match=re.escape(message)):
        make_product(sku, **fields)


def test_product_update_changes_given_fields_and_records_updated():
    product = make_product()
    product.events.clear()
    assert product.update(5.0, price=Money(2500), name="Blue Shirt") is True
    assert (product.name, product.price, product.description) == (
        "Blue Shirt",
        Money(2500),
        "cotton shirt",
    )
    assert product.updated_at == 5.0
    assert product.events == [ProductUpdated(at=5.0, sku="SKU-1")]


def test_product_update_without_a_change_records_nothing():
    product = make_product()
    product.events.clear()
    assert product.update(5.0) is False
    assert product.update(6.0, name="Red Shirt", category_id="clothes") is False
    assert product.updated_at == 1.0
    assert product.events == []


def test_product_update_checks_every_field_before_changing_any():
    product = make_product()
    with pytest.raises(InvalidProduct, match="price must be a positive"):
        product.update(5.0, name="New", description="new", price=Money(0))
    assert (product.name, product.description) == ("Red Shirt", "cotton shirt")
    assert product.update(5.0, category_id="hats", description="") is True
    assert (product.category_id, product.description) == ("hats", "")


def test_product_delete_records_deleted_once():
    product = make_product()
    product.events.clear()
    product.mark_deleted(9.0)
    assert (product.deleted_at, product.updated_at) == (9.0, 9.0)
    assert product.events == [ProductDeleted(at=9.0, sku="SKU-1")]
    with pytest.raises(InvalidProduct, match=r"SKU-1: deleted already at t=9\.0s"):
        product.mark_deleted(10.0)
    with pytest.raises(InvalidProduct, match=r"SKU-1: deleted at t=9\.0s, cannot be updated"):
        product.update(10.0, name="Again")


def test_product_survives_deepcopy():
    product = make_product(merchant_id="m-1")
    product.mark_deleted(3.0)
    clone = copy.deepcopy(product)
    assert clone == product
    assert [clone.merchant_id, clone.deleted_at, clone.events] == ["m-1", 3.0, product.events]
    clone.events.clear()
    clone.name = "Changed"
    assert product.name == "Red Shirt"
    assert len(product.events) == 2


# --- text ------------------------------------------------------------------------------------
def test_tokenize_lowercases_and_splits_on_non_alphanumerics():
    assert tokenize("Wi-Fi 6E router_pro, 2-PACK!") == [
        "wi",
        "fi",
        "6e",
        "router",
        "pro",
        "2",
        "pack",
    ]
    assert tokenize("Crème brûlée") == ["crème", "brûlée"]
    assert tokenize(" ... ") == []


def test_term_weights_count_name_hits_above_description_hits():
    assert NAME_WEIGHT == 3
    assert term_weights("Red red shirt", "a red shirt") == {"red": 7, "shirt": 4, "a": 1}


# --- search query ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sort": "cheapest"}, "unknown sort 'cheapest'"),
        ({"page": 0}, "page must be an integer >= 1, got 0"),
        ({"page": 1.0}, "page must be an integer >= 1, got 1.0"),
        ({"page_size": 0}, "page size must be an integer in 1..100, got 0"),
        ({"page_size": 101}, "got 101"),
        ({"min_price": Money(-1)}, "price bounds must be non-negative Money"),
        ({"max_price": 500}, "price bounds must be non-negative Money, got 500"),
        ({"min_price": Money(500), "max_price": Money(499)}, "min price 5.00 USD is above max"),
    ],
)
def test_search_query_rejects_bad_values(fields, message):
    with pytest.raises(InvalidValue, match=re.escape(message)):
        SearchQuery(**fields)


def test_search_query_defaults_and_terms():
    query = SearchQuery(text="Red, red SHIRT")
    assert (query.sort, query.page, query.page_size, query.in_stock_only) == (
        "relevance",
        1,
        20,
        False,
    )
    assert query.terms() == ["red", "shirt"]
    assert SearchQuery().terms() == []


# --- the index on a small hand-built catalog -------------------------------------------------
#   electronics > audio > headphones ;  electronics > computers ;  kitchen
CATEGORIES = [
    Category("electronics", "Electronics"),
    Category("audio", "Audio", "electronics"),
    Category("headphones", "Headphones", "audio"),
    Category("computers", "Computers", "electronics"),
    Category("kitchen", "Kitchen"),
]
PRODUCTS = [
    # sku, name, description, category, price, created_at
    ("P1", "Wireless Headphones", "bluetooth over-ear headphones", "headphones", 19900, 10.0),
    ("P2", "Studio Headphones", "wired headphones for the studio", "headphones", 9900, 20.0),
    ("P3", "Bluetooth Speaker", "portable wireless speaker", "audio", 4999, 30.0),
    ("P4", "Laptop Pro", "a fast laptop with wireless networking", "computers", 129900, 40.0),
    ("P5", "USB Cable", "charging cable for headphones and phones", "electronics", 999, 50.0),
    ("P6", "Coffee Mug", "ceramic mug", "kitchen", 899, 60.0),
    ("P7", "Kettle", "electric kettle, wireless base", "kitchen", 2999, 70.0),
]
STOCK = {"P1": 0, "P2": 3, "P3": 5, "P4": 1, "P5": 0, "P6": 9, "P7": 2}
SALES = {"P1": 5, "P3": 5, "P6": 2}


def product(sku, name, description, category, price, created) -> Product:
    return Product.create(sku, name, description, category, Money(price), created)


def make_index() -> CatalogIndex:
    index = CatalogIndex()
    for category in CATEGORIES:
        index.add_category(category)
    for row in PRODUCTS:
        index.upsert(product(*row))
    return index


def in_stock(sku: str) -> bool:
    return STOCK[sku] > 0


def search(index: CatalogIndex, **kw) -> tuple[str, ...]:
    return index.search(SearchQuery(**kw), in_stock=in_stock, sales=lambda s: SALES.get(s, 0)).items


def test_index_size_membership_and_views():
    index = make_index()
    assert len(index) == 7
    assert "P3" in index
    assert "P9" not in index
    view = index.view("P3")
    assert view is not None
    assert (view.name_key, view.category_id, view.price, view.created_at) == (
        "bluetooth speaker",
        "audio",
        4999,
        30.0,
    )
    assert index.view("P9") is None


def test_text_search_ranks_name_hits_above_description_hits():
    index = make_index()
    assert search(index, text="wireless") == ("P1", "P3", "P4", "P7")
    assert search(index, text="headphones") == ("P1", "P2", "P5")


def test_multi_word_text_search_ands_the_terms_case_and_punctuation_insensitive():
    index = make_index()
    assert search(index, text="wireless headphones") == ("P1",)
    assert search(index, text="Headphones, WIRELESS!") == ("P1",)
    assert search(index, text="bluetooth wireless speaker") == ("P3",)
    assert search(index, text="wireless kettle base electric") == ("P7",)


def test_text_without_matches_gives_an_empty_page():
    index = make_index()
    page = index.search(SearchQuery(text="wireless toaster"))
    assert page == SearchPage((), 0, 1, 0)


def test_text_without_tokens_filters_nothing():
    index = make_index()
    assert search(index, text="!!!") == ("P1", "P2", "P3", "P4", "P5", "P6", "P7")
    assert search(index, text="") == ("P1", "P2", "P3", "P4", "P5", "P6", "P7")


def test_category_search_includes_sub_categories():
    index = make_index()
    assert search(index, category_id="electronics") == ("P1", "P2", "P3", "P4", "P5")
    assert search(index, category_id="audio") == ("P1", "P2", "P3")
    assert search(index, category_id="headphones") == ("P1", "P2")
    assert search(index, category_id="kitchen") == ("P6", "P7")
    assert search(index, category_id="unknown") == ()


def test_price_range_is_inclusive():
    index = make_index()
    assert search(index, min_price=Money(1000), max_price=Money(10000)) == ("P2", "P3", "P7")
    assert search(index, min_price=Money(999), max_price=Money(9900)) == ("P2", "P3", "P5", "P7")
    assert search(index, min_price=Money(100000)) == ("P4",)
    assert search(index, max_price=Money(899)) == ("P6",)
    assert search(index, max_price=Money(898)) == ()


def test_criteria_combine():
    index = make_index()
    assert search(index, text="wireless", category_id="electronics", max_price=Money(20000)) == (
        "P1",
        "P3",
    )
    assert search(index, text="wireless", category_id="kitchen") == ("P7",)
    assert search(index, category_id="audio", min_price=Money(5000)) == ("P1", "P2")


def test_in_stock_filter():
    index = make_index()
    assert search(index, text="wireless", in_stock_only=True) == ("P3", "P4", "P7")
    assert search(index, category_id="electronics", in_stock_only=True) == ("P2", "P3", "P4")
    with pytest.raises(InvalidValue, match="in_stock_only needs an in_stock function"):
        index.search(SearchQuery(in_stock_only=True))


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("relevance", ("P1", "P2", "P3", "P4", "P5", "P6", "P7")),
        ("price_asc", ("P6", "P5", "P7", "P3", "P2", "P1", "P4")),
        ("price_desc", ("P4", "P1", "P2", "P3", "P7", "P5", "P6")),
        ("name", ("P3", "P6", "P7", "P4", "P2", "P5", "P1")),
        ("newest", ("P7", "P6", "P5", "P4", "P3", "P2", "P1")),
        ("best_selling", ("P1", "P3", "P6", "P2", "P4", "P5", "P7")),
    ],
)
def test_every_sort_over_the_whole_catalog(sort, expected):
    index = make_index()
    assert search(index, sort=sort) == expected
    # The first page alone (a partial sort) agrees with the full order.
    assert search(index, sort=sort, page_size=1) == expected[:1]
    assert search(index, sort=sort, page=2, page_size=1) == expected[1:2]


def test_best_selling_without_sales_figures_is_by_sku():
    index = make_index()
    page = index.search(SearchQuery(category_id="kitchen", sort="best_selling"))
    assert page.items == ("P6", "P7")


def test_sorts_break_ties_by_sku():
    index = CatalogIndex()
    for sku in ("B", "C", "A"):
        index.upsert(product(sku, "Same Name", "same", "x", 500, 1.0))
    for sort in ("relevance", "price_asc", "price_desc", "name", "newest", "best_selling"):
        assert search_items(index, sort=sort) == ("A", "B", "C"), sort
    assert search_items(index, sort="price_asc", min_price=Money(500)) == ("A", "B", "C")
    assert search_items(index, sort="relevance", text="same") == ("A", "B", "C")


def search_items(index: CatalogIndex, **kw) -> tuple[str, ...]:
    return index.search(SearchQuery(**kw), sales=lambda sku: 0).items


def test_sorts_apply_within_a_filtered_set():
    index = make_index()
    assert search(index, text="wireless", sort="price_desc") == ("P4", "P1", "P3", "P7")
    assert search(index, text="wireless", sort="price_asc") == ("P7", "P3", "P1", "P4")
    assert search(index, category_id="audio", sort="newest") == ("P3", "P2", "P1")
    assert search(index, max_price=Money(5000), sort="price_asc") == ("P6", "P5", "P7", "P3")
    assert search(index, max_price=Money(5000), sort="name") == ("P3", "P6", "P7", "P5")


def test_pagination_edges():
    index = make_index()
    q = {"sort": "price_asc", "page_size": 3}
    pages = [index.search(SearchQuery(page=n, **q)) for n in (1, 2, 3, 4)]
    assert pages[0] == SearchPage(("P6", "P5", "P7"), 7, 1, 3)
    assert pages[1] == SearchPage(("P3", "P2", "P1"), 7, 2, 3)
    assert pages[2] == SearchPage(("P4",), 7, 3, 3)
    assert pages[3] == SearchPage((), 7, 4, 3)
    assert index.search(SearchQuery(page_size=7)) == SearchPage(
        ("P1", "P2", "P3", "P4", "P5", "P6", "P7"), 7, 1, 1
    )
    assert index.search(SearchQuery(page_size=100, page=2)).items == ()
    assert index.search(SearchQuery(category_id="none")) == SearchPage((), 0, 1, 0)


def test_upsert_reindexes_only_what_changed():
    index = make_index()
    changed = product("P3", "Bluetooth Radio", "portable radio", "kitchen", 1500, 30.0)
    index.upsert(changed)
    assert len(index) == 7
    assert search(index, text="speaker") == ()
    assert search(index, text="radio") == ("P3",)
    assert search(index, text="wireless") == ("P1", "P4", "P7")
    assert search(index, category_id="audio") == ("P1", "P2")
    assert search(index, category_id="kitchen") == ("P3", "P6", "P7")
    assert search(index, min_price=Money(1000), max_price=Money(2000)) == ("P3",)
    assert search(index, sort="price_asc", page_size=3) == ("P6", "P5", "P3")


def test_remove_drops_every_trace():
    index = make_index()
    assert index.remove("P6") is True
    assert index.remove("P6") is False
    assert len(index) == 6
    assert "P6" not in index
    assert search(index, text="mug") == ()
    assert search(index, category_id="kitchen") == ("P7",)
    assert search(index, max_price=Money(999)) == ("P5",)
    assert index.remove("P7") is True
    assert search(index, category_id="kitchen") == ()


def test_moving_a_category_moves_its_products_in_searches():
    index = make_index()
    index.add_category(Category("audio", "Audio", "kitchen"))
    assert search(index, category_id="electronics") == ("P4", "P5")
    assert search(index, category_id="kitchen") == ("P1", "P2", "P3", "P6", "P7")
    index.add_category(Category("audio", "Audio", "kitchen"))  # no change
    index.add_category(Category("audio", "Audio", None))
    assert search(index, category_id="kitchen") == ("P6", "P7")
    assert search(index, category_id="audio") == ("P1", "P2", "P3")


def test_index_rejects_a_category_cycle():
    index = make_index()
    with pytest.raises(CategoryCycle, match="'headphones' is a descendant of 'electronics'"):
        index.add_category(Category("electronics", "Electronics", "headphones"))
    with pytest.raises(CategoryCycle, match="own parent"):
        index.add_category(Category("new", "New", "new"))
    assert search(index, category_id="electronics") == ("P1", "P2", "P3", "P4", "P5")


def test_the_price_list_is_rebuilt_lazily_after_many_edits():
    index = make_index()
    with mock.patch.object(catalog, "PRICE_EDITS_BEFORE_REBUILD", 2):
        for price, sku in ((100, "P4"), (200, "P5"), (300, "P6")):
            index.upsert(product(sku, "Thing", "", "kitchen", price, 1.0))
        assert index._prices is None
        # A text search with a price range checks prices per candidate (no rebuild) ...
        assert search(index, text="thing", max_price=Money(250)) == ("P4", "P5")
        assert index._prices is None
        # ... a price-only search rebuilds the list.
        assert search(index, max_price=Money(250), sort="price_asc") == ("P4", "P5")
        assert index._prices == sorted(index._prices or [])
        assert len(index._prices or []) == 7
        index.remove("P5")
        index.upsert(product("P8", "Thing", "", "kitchen", 150, 1.0))
        index.upsert(product("P9", "Thing", "", "kitchen", 160, 1.0))
        assert index._prices is None
        assert index.remove("P9") is True
        assert search(index, max_price=Money(250), sort="price_desc") == ("P8", "P4")


# --- the index equals a naive scan (property) ------------------------------------------------
VOCAB = ["red", "blue", "shirt", "shoe", "hat", "wool", "x1"]
TREE = {"root": None, "wear": "root", "feet": "wear", "head": "wear", "misc": None}
SKUS = [f"S{i:02d}" for i in range(12)]

words = st.lists(st.sampled_from([*VOCAB, "Red", "SHOE"]), max_size=4)
product_rows = st.fixed_dictionaries(
    {
        "name": words.filter(bool).map(" ".join),
        "description": words.map(", ".join),
        "category": st.sampled_from(sorted(TREE)),
        "price": st.integers(1, 40),
        "created": st.integers(0, 5).map(float),
        "stock": st.booleans(),
        "sales": st.integers(0, 3),
    }
)


query_words = st.lists(st.sampled_from([*VOCAB, "pink", "Hat!"]), max_size=2)


@st.composite
def queries(draw) -> SearchQuery:
    low = draw(st.none() | st.integers(0, 45))
    high = draw(st.none() | st.integers(low or 0, 60))
    return SearchQuery(
        text=draw(st.none() | query_words.map(" ".join)),
        category_id=draw(st.none() | st.sampled_from([*TREE, "nowhere"])),
        min_price=None if low is None else Money(low),
        max_price=None if high is None else Money(high),
        in_stock_only=draw(st.booleans()),
        sort=draw(st.sampled_from(catalog.SORTS)),
        page=draw(st.integers(1, 3)),
        page_size=draw(st.integers(1, 5)),
    )


def naive_search(rows: dict[str, dict], query: SearchQuery) -> SearchPage:
    def toks(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    terms = list(dict.fromkeys(toks(query.text or "")))

    def score(row: dict) -> int:
        name, desc = toks(row["name"]), toks(row["description"])
        return sum(3 * name.count(t) + desc.count(t) for t in terms)

    def under(category: str, top: str) -> bool:
        node: str | None = category
        while node is not None:
            if node == top:
                return True
            node = TREE[node]
        return False

    hits = []
    for sku, row in rows.items():
        name, desc = toks(row["name"]), toks(row["description"])
        if any(t not in name and t not in desc for t in terms):
            continue
        if query.category_id is not None and not under(row["category"], query.category_id):
            continue
        if query.min_price is not None and row["price"] < query.min_price.minor:
            continue
        if query.max_price is not None and row["price"] > query.max_price.minor:
            continue
        if query.in_stock_only and not row["stock"]:
            continue
        hits.append(sku)
    keys = {
        "relevance": lambda s: (-score(rows[s]), s),
        "price_asc": lambda s: (rows[s]["price"], s),
        "price_desc": lambda s: (-rows[s]["price"], s),
        "name": lambda s: (rows[s]["name"].lower(), s),
        "newest": lambda s: (-rows[s]["created"], s),
        "best_selling": lambda s: (-rows[s]["sales"], s),
    }
    ordered = sorted(hits, key=keys[query.sort])
    first = (query.page - 1) * query.page_size
    items = tuple(ordered[first : first + query.page_size])
    return SearchPage(items, len(hits), query.page, -(-len(hits) // query.page_size))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.dictionaries(st.sampled_from(SKUS), product_rows, max_size=12),
    changes=st.lists(st.tuples(st.sampled_from(SKUS), st.none() | product_rows), max_size=6),
    searches=st.lists(queries(), min_size=1, max_size=4),
    rebuild_after=st.sampled_from([0, 3, 256]),
)
def test_indexed_search_equals_a_naive_scan(rows, changes, searches, rebuild_after):
    with mock.patch.object(catalog, "PRICE_EDITS_BEFORE_REBUILD", rebuild_after):
        index = CatalogIndex()
        for cid, parent in TREE.items():
            index.add_category(Category(cid, cid, parent))

        def put(sku: str, row: dict) -> None:
            index.upsert(
                product(
                    sku,
                    row["name"],
                    row["description"],
                    row["category"],
                    row["price"],
                    row["created"],
                )
            )

        for sku, row in rows.items():
            put(sku, row)
        current = dict(rows)
        for sku, row in changes:  # updates, inserts and removals after the first load
            if row is None:
                assert index.remove(sku) is (sku in current)
                current.pop(sku, None)
            else:
                put(sku, row)
                current[sku] = row
        for query in searches:
            page = index.search(
                query,
                in_stock=lambda s: current[s]["stock"],
                sales=lambda s: current[s]["sales"],
            )
            assert page == naive_search(current, query)


# --- recommendations -------------------------------------------------------------------------
def make_recommender() -> Recommender:
    rec = Recommender()
    for sku, category in {"A": "x", "B": "x", "C": "y", "D": "y", "E": "y", "F": "y"}.items():
        rec.set_category(sku, category)
    rec.record_order(["A", "B", "C"])
    rec.record_order(["A", "B"])
    rec.record_order(["D", "A"])
    rec.record_order(["B", "C", "C"])  # a SKU twice in one order counts once
    rec.record_order(["E"])
    return rec


CATEGORY_OF = {"A": "x", "B": "x", "C": "y", "D": "y", "E": "y", "F": "y", "G": None}.get


def test_an_orders_copies_of_known_skus_are_not_kept():
    # An order read back from a store brings new string objects for its SKUs: the
    # recommender's pairs, sales and rankings keep the ones the catalog told it about.
    rec = Recommender()
    known = {sku: rec.set_category(sku, "c") or sku for sku in ("sku-1", "sku-2")}
    copies = ["".join(("sku-", n)) for n in "21"]
    assert [copy is known[copy] for copy in copies] == [False, False]
    rec.record_order(copies)
    rec.record_order(["".join(("sku-", "3"))])  # not known: kept as it comes
    kept = [*rec._pairs, *rec._pairs["sku-1"], *rec._sales, *(s for _, s in rec._ranked_in["c"])]
    assert all(sku is known[sku] for sku in kept if sku != "sku-3")
    assert len(kept) == 9 and rec.co_purchases("sku-1", "sku-2") == 1
    rec.forget("sku-1")
    assert rec._skus == {"sku-2": "sku-2"}


def test_sales_and_co_purchases_are_counted_per_order():
    rec = make_recommender()
    assert [rec.sales(s) for s in "ABCDEFG"] == [3, 3, 2, 1, 1, 0, 0]
    assert rec.co_purchases("A", "B") == 2
    assert rec.co_purchases("B", "A") == 2
    assert rec.co_purchases("B", "C") == 2
    assert rec.co_purchases("A", "D") == 1
    assert rec.co_purchases("A", "E") == 0
    assert rec.co_purchases("Z", "A") == 0


def test_bought_together_ranks_by_count_then_sku():
    rec = make_recommender()
    assert rec.bought_together("A", 1, CATEGORY_OF) == ["B"]
    assert rec.bought_together("A", 3, CATEGORY_OF) == ["B", "C", "D"]
    assert rec.bought_together("B", 2, CATEGORY_OF) == ["A", "C"]
    assert rec.bought_together("A", 0, CATEGORY_OF) == []


def test_bought_together_tops_up_with_category_best_sellers():
    rec = make_recommender()
    # D was bought with A only; category y's best sellers are C (2), D (1), E (1).
    assert rec.bought_together("D", 3, CATEGORY_OF) == ["A", "C", "E"]
    # Never bought together: all from the category, without the SKU itself.
    assert rec.bought_together("E", 5, CATEGORY_OF) == ["C", "D"]
    assert rec.bought_together("F", 2, CATEGORY_OF) == ["C", "D"]
    # A's partners fill 3 places; the top-up adds nothing new from category x.
    assert rec.bought_together("A", 5, CATEGORY_OF) == ["B", "C", "D"]
    # No category: overall best sellers.
    assert rec.bought_together("G", 3, CATEGORY_OF) == ["A", "B", "C"]


_SKUS = "ABCDEF"
_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.lists(st.sampled_from(_SKUS), min_size=1, max_size=4)),
        st.tuples(st.just("forget"), st.sampled_from(_SKUS)),
    ),
    max_size=12,
)


def _answers(rec: Recommender) -> dict[tuple[str, int], list[str]]:
    # Longest first, so that the shorter answers can come from a kept ranking.
    return {(sku, k): rec.bought_together(sku, k, CATEGORY_OF) for sku in _SKUS for k in (5, 2, 1)}


@settings(max_examples=150, deadline=None)
@given(_CHANGES)
def test_bought_together_answers_as_a_fresh_recommender_does(changes):
    # The live recommender keeps each SKU's ranked partners between orders; a fresh one
    # replaying the same history ranks from scratch. Every answer after every change must
    # agree, so a ranking kept after an order or a forget changed the SKU's pairs fails here.
    live = make_recommender()
    _answers(live)
    for done in range(1, len(changes) + 1):
        kind, arg = changes[done - 1]
        live.record_order(arg) if kind == "order" else live.forget(arg)
        fresh = make_recommender()
        for past_kind, past in changes[:done]:
            fresh.record_order(past) if past_kind == "order" else fresh.forget(past)
        assert _answers(live) == _answers(fresh)


def test_bought_together_follows_new_orders_after_an_answer():
    rec = make_recommender()
    assert rec.bought_together("D", 1, CATEGORY_OF) == ["A"]
    rec.record_order(["D", "E"])
    rec.record_order(["D", "E"])
    assert rec.bought_together("D", 1, CATEGORY_OF) == ["E"]
    assert rec.bought_together("D", 2, CATEGORY_OF) == ["E", "A"]
    rec.forget("E")
    assert rec.bought_together("D", 1, CATEGORY_OF) == ["A"]


def test_best_sellers_overall_and_per_category():
    rec = make_recommender()
    assert rec.best_sellers(None, 3) == ["A", "B", "C"]
    assert rec.best_sellers(None, 10) == ["A", "B", "C", "D", "E"]
    assert rec.best_sellers("y", 2) == ["C", "D"]
    assert rec.best_sellers("y", 1) == ["C"]  # from the cached ranking
    assert rec.best_sellers("x", 5) == ["A", "B"]
    assert rec.best_sellers("nowhere", 5) == []
    assert rec.best_sellers(None, 0) == []
    rec.record_order(["D"])
    rec.record_order(["D"])
    assert rec.best_sellers("y", 1) == ["D"]
    assert rec.best_sellers(None, 2) == ["A", "B"]
    assert rec.best_sellers(None, 3) == ["A", "B", "D"]


def test_best_sellers_follow_a_category_change():
    rec = make_recommender()
    assert rec.best_sellers("y", 5) == ["C", "D", "E"]
    rec.set_category("C", "x")
    rec.set_category("C", "x")  # no change
    assert rec.best_sellers("y", 5) == ["D", "E"]
    assert rec.best_sellers("x", 5) == ["A", "B", "C"]
    rec.set_category("E", "z")
    rec.set_category("D", "z")
    assert rec.best_sellers("y", 5) == []
    assert rec.best_sellers("z", 5) == ["D", "E"]


def test_sales_before_the_category_is_known_count_once_it_is():
    rec = Recommender()
    rec.record_order(["N"])
    assert rec.best_sellers(None, 1) == ["N"]
    assert rec.best_sellers("new", 1) == []
    rec.set_category("N", "new")
    assert rec.best_sellers("new", 1) == ["N"]
    rec.set_category("Q", "new")  # no sales yet: not a best seller
    assert rec.best_sellers("new", 5) == ["N"]


def test_forget_drops_sales_pairs_and_category():
    rec = make_recommender()
    rec.forget("A")
    assert rec.sales("A") == 0
    assert rec.co_purchases("B", "A") == 0
    assert rec.co_purchases("D", "A") == 0
    assert rec.bought_together("B", 3, CATEGORY_OF) == ["C"]
    assert rec.best_sellers(None, 10) == ["B", "C", "D", "E"]
    assert rec.best_sellers("x", 5) == ["B"]
    rec.forget("B")
    assert rec.best_sellers("x", 5) == []
    rec.forget("F")  # never sold
    rec.forget("unknown")
    assert rec.best_sellers(None, 10) == ["C", "D", "E"]


def test_huge_orders_count_as_sales_but_not_as_pairs():
    rec = Recommender()
    skus = [f"K{i:03d}" for i in range(MAX_PAIR_BASKET + 1)]
    rec.record_order(skus)
    assert rec.sales("K000") == 1
    assert rec.co_purchases("K000", "K001") == 0
    rec.record_order(skus[:MAX_PAIR_BASKET])
    assert rec.co_purchases("K000", "K099") == 1
    rec.record_order([])
    assert rec.sales("K000") == 2
