"""The catalog: products and categories (write side), search and recommendations (read models).

Write side: :class:`Product` and :class:`Category` are aggregates kept in the unit of work's
repositories; they validate their fields and record ``Product*`` / ``Category*`` events. The
category tree's rules are pure functions over a parent map (:func:`ancestors`,
:func:`check_parent`).

Read side (CQRS): :class:`CatalogIndex` answers :class:`SearchQuery` from indexes, never by
scanning every product: an inverted index token -> {sku: weight}, the SKUs of each category
(sub-categories reached through the tree) and a price-sorted list searched with ``bisect``.
The smallest candidate set is taken first and the other criteria are checked per candidate.
:class:`Recommender` counts co-purchases and sales per SKU. Both are updated by bus
subscribers after a commit, so a rolled-back write never reaches them.

Search assumes one currency: prices are compared by their minor units.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import chain, repeat
from operator import neg
from types import MappingProxyType
from typing import Any

from sim.domain.errors import CategoryCycle, InvalidProduct, InvalidValue
from sim.domain.events import (
    CategoryCreated,
    CategoryMoved,
    DomainEvent,
    EventSource,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    events_field,
)
from sim.domain.money import Money
from sim.domain.snapshots import ShallowCopied


# --- categories ------------------------------------------------------------------------------
def _check_category_name(category_id: str, name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidValue(f"category {category_id!r}: name must be non-empty text, got {name!r}")
    return name.strip()


def ancestors(parents: Mapping[str, str | None], category_id: str) -> list[str]:
    """Return a category's ancestors, nearest first: its parent, grand-parent, ... the root.

    ``parents`` maps each category id to its parent id (None for a top-level category). An
    id missing from the map counts as a root. Raises CategoryCycle if the map holds a loop.
    """
    chain_: list[str] = []
    seen = {category_id}
    parent = parents.get(category_id)
    while parent is not None:
        if parent in seen:
            raise CategoryCycle(
                f"category tree has a cycle: {category_id!r} reaches {parent!r} twice"
            )
        chain_.append(parent)
        seen.add(parent)
        parent = parents.get(parent)
    return chain_


def check_parent(
    parents: Mapping[str, str | None], category_id: str, new_parent_id: str | None
) -> None:
    """Raise CategoryCycle if giving ``category_id`` the parent ``new_parent_id`` makes a loop.

    A loop appears when the new parent is the category itself or one of its descendants.
    """
    if new_parent_id is None:
        return
    if new_parent_id == category_id:
        raise CategoryCycle(f"category {category_id!r} cannot be its own parent")
    if category_id in ancestors(parents, new_parent_id):
        raise CategoryCycle(
            f"moving category {category_id!r} under {new_parent_id!r} would make a cycle: "
            f"{new_parent_id!r} is a descendant of {category_id!r}"
        )


@dataclass(slots=True)
class Category(ShallowCopied, EventSource):
    """A node of the category tree (``parent_id`` None: a top-level category)."""

    id: str
    name: str
    parent_id: str | None = None
    events: list[DomainEvent] = events_field()

    @classmethod
    def create(cls, id: str, name: str, parent_id: str | None, now: float) -> Category:
        """Create a category after checking its id and name; records ``CategoryCreated``."""
        if not isinstance(id, str) or not id.strip():
            raise InvalidValue(f"category id must be non-empty text, got {id!r}")
        clean = _check_category_name(id, name)
        check_parent({}, id, parent_id)
        category = cls(id, clean, parent_id)
        category.record(CategoryCreated(at=now, category_id=id, parent_id=parent_id))
        return category

    def move_to(self, parent_id: str | None, parents: Mapping[str, str | None], now: float) -> bool:
        """Re-parent the category; return False (and record nothing) if the parent is the same.

        ``parents`` is the tree's parent map; raises CategoryCycle if the move makes a loop.
        Records ``CategoryMoved``.
        """
        if parent_id == self.parent_id:
            return False
        check_parent(parents, self.id, parent_id)
        old, self.parent_id = self.parent_id, parent_id
        self.record(
            CategoryMoved(at=now, category_id=self.id, old_parent_id=old, new_parent_id=parent_id)
        )
        return True


# --- products --------------------------------------------------------------------------------
def _check_sku(sku: str) -> str:
    if not isinstance(sku, str) or not sku.strip():
        raise InvalidProduct(f"SKU must be non-empty text, got {sku!r}")
    return sku


def _check_name(sku: str, name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidProduct(f"{sku}: name must be non-empty text, got {name!r}")
    return name.strip()


def _check_description(sku: str, description: str) -> str:
    if not isinstance(description, str):
        raise InvalidProduct(f"{sku}: description must be text, got {description!r}")
    return description


def _check_price(sku: str, price: Money) -> Money:
    if not isinstance(price, Money) or price.minor <= 0:
        raise InvalidProduct(f"{sku}: price must be a positive Money amount, got {price!r}")
    return price


def _check_category(sku: str, category_id: str) -> str:
    if not isinstance(category_id, str) or not category_id.strip():
        raise InvalidProduct(f"{sku}: category id must be non-empty text, got {category_id!r}")
    return category_id


@dataclass(slots=True)
class Product(ShallowCopied, EventSource):
    """A product for sale: name, description, category, price and owner (None: the shop)."""

    sku: str
    name: str
    description: str
    category_id: str
    price: Money
    merchant_id: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None = None
    events: list[DomainEvent] = events_field()

    @classmethod
    def create(
        cls,
        sku: str,
        name: str,
        description: str,
        category_id: str,
        price: Money,
        now: float,
        merchant_id: str | None = None,
    ) -> Product:
        """Create a product after checking its fields; records ``ProductCreated``.

        Raises InvalidProduct for a blank SKU, name or category id, a description that is not
        text, or a price that is not a positive Money amount. The name is stripped.
        """
        sku = _check_sku(sku)
        product = cls(
            sku,
            _check_name(sku, name),
            _check_description(sku, description),
            _check_category(sku, category_id),
            _check_price(sku, price),
            merchant_id,
            now,
            now,
        )
        product.record(ProductCreated(at=now, sku=sku))
        return product

    def update(
        self,
        now: float,
        *,
        name: str | None = None,
        description: str | None = None,
        price: Money | None = None,
        category_id: str | None = None,
    ) -> bool:
        """Change the given fields (None: keep); return True and record ``ProductUpdated`` if any.

        Every given field is checked before any is changed, so a rejected update changes nothing.
        """
        sku = self.sku
        if self.deleted_at is not None:
            raise InvalidProduct(f"{sku}: deleted at t={self.deleted_at:.1f}s, cannot be updated")
        new_name = self.name if name is None else _check_name(sku, name)
        new_description = (
            self.description if description is None else _check_description(sku, description)
        )
        new_price = self.price if price is None else _check_price(sku, price)
        new_category = (
            self.category_id if category_id is None else _check_category(sku, category_id)
        )
        new = (new_name, new_description, new_price, new_category)
        if new == (self.name, self.description, self.price, self.category_id):
            return False
        self.name, self.description, self.price, self.category_id = new
        self.updated_at = now
        self.record(ProductUpdated(at=now, sku=sku))
        return True

    def mark_deleted(self, now: float) -> None:
        """Mark the product deleted; records ``ProductDeleted``; raises if deleted already."""
        if self.deleted_at is not None:
            raise InvalidProduct(f"{self.sku}: deleted already at t={self.deleted_at:.1f}s")
        self.deleted_at = now
        self.updated_at = now
        self.record(ProductDeleted(at=now, sku=self.sku))


# --- text ------------------------------------------------------------------------------------
NAME_WEIGHT = 3
"""Relevance of one occurrence of a query term in a product's name (one in its description: 1)."""

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Split text into lower-case alphanumeric tokens (every other character separates)."""
    return _TOKEN.findall(text.lower())


def term_weights(name: str, description: str) -> dict[str, int]:
    """Return each token's weight in a product: NAME_WEIGHT per name hit, 1 per description hit."""
    weights: dict[str, int] = {}
    for token in tokenize(name):
        weights[token] = weights.get(token, 0) + NAME_WEIGHT
    for token in tokenize(description):
        weights[token] = weights.get(token, 0) + 1
    return weights


# --- search query and result -----------------------------------------------------------------
SORTS = ("relevance", "price_asc", "price_desc", "name", "newest", "best_selling")
"""The sort orders of a search; every one breaks ties by SKU."""

DEFAULT_PAGE_SIZE = 20
"""Results per page unless a query says otherwise."""

MAX_PAGE_SIZE = 100
"""The most results one page may hold."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What a shopper searches for: text, category, price range, stock, sort and page.

    ``text`` is split like product text; every term must match (AND); text without any
    token filters nothing. ``category_id`` includes its sub-categories. Prices are
    inclusive bounds. ``page`` counts from 1.
    """

    text: str | None = None
    category_id: str | None = None
    min_price: Money | None = None
    max_price: Money | None = None
    in_stock_only: bool = False
    sort: str = "relevance"
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def __post_init__(self) -> None:
        """Reject an unknown sort, a bad page or page size, or an empty price range."""
        if self.sort not in SORTS:
            raise InvalidValue(f"unknown sort {self.sort!r}; expected one of {', '.join(SORTS)}")
        if type(self.page) is not int or self.page < 1:
            raise InvalidValue(f"page must be an integer >= 1, got {self.page!r}")
        size = self.page_size
        if type(size) is not int or not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidValue(f"page size must be an integer in 1..{MAX_PAGE_SIZE}, got {size!r}")
        low, high = self.min_price, self.max_price
        for bound in (low, high):
            if bound is not None and (not isinstance(bound, Money) or bound.minor < 0):
                raise InvalidValue(f"price bounds must be non-negative Money, got {bound!r}")
        if low is not None and high is not None and low.minor > high.minor:
            raise InvalidValue(f"min price {low} is above max price {high}")

    def terms(self) -> list[str]:
        """Return the distinct tokens of ``text`` in order of first appearance."""
        return list(dict.fromkeys(tokenize(self.text))) if self.text else []


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results: the SKUs on it, the number of matches and of pages."""

    items: tuple[str, ...]
    total: int
    page: int
    pages: int


# --- the search index (read model) -----------------------------------------------------------
@dataclass(slots=True)
class ProductView:
    """What the search index keeps of a product (light: no description text)."""

    sku: str
    name_key: str
    """The name in lower case (the ``name`` sort's key)."""
    category_id: str
    price: int
    """Price in minor units."""
    created_at: float
    terms: tuple[str, ...]


PRICE_EDITS_BEFORE_REBUILD = 256
"""Price changes applied to the sorted price list in place before it is dropped and re-sorted
lazily (a bulk load then costs one sort instead of one insertion per product)."""

_SKU_ORDER = object()  # sort marker: by SKU alone
_KEEP_ORDER = object()  # sort marker: candidates are in the right order already


class CatalogIndex:
    """The catalog's search read model: inverted index, category sets and a price list.

    Update it with :meth:`add_category`, :meth:`upsert` and :meth:`remove` (from committed
    events); query it with :meth:`search`.
    """

    def __init__(self) -> None:
        self._views: dict[str, ProductView] = {}
        self._postings: dict[str, dict[str, int]] = {}
        self._by_category: dict[str, list[str]] = {}  # each category's SKUs, sorted
        self._parents: dict[str, str | None] = {}
        self._children: dict[str, set[str]] = {}
        self._subtrees: dict[str, frozenset[str]] = {}
        self._prices: list[tuple[int, str]] | None = []
        self._price_edits = 0

    def __len__(self) -> int:
        """Return the number of indexed products."""
        return len(self._views)

    def __contains__(self, sku: object) -> bool:
        """Return True if the SKU is indexed."""
        return sku in self._views

    def view(self, sku: str) -> ProductView | None:
        """Return the indexed view of a product, or None."""
        return self._views.get(sku)

    # --- categories ------------------------------------------------------------------------
    def add_category(self, category: Category) -> None:
        """Add a category or record its new parent; raise CategoryCycle if that makes a loop."""
        cid, parent = category.id, category.parent_id
        if cid in self._parents:
            old = self._parents[cid]
            if old == parent:
                return
            check_parent(self._parents, cid, parent)
            if old is not None:
                self._children[old].discard(cid)
        else:
            check_parent(self._parents, cid, parent)
        self._parents[cid] = parent
        if parent is not None:
            self._children.setdefault(parent, set()).add(cid)
        self._subtrees.clear()

    def subtree(self, category_id: str) -> frozenset[str]:
        """Return the category and all its descendants (cached until the tree changes)."""
        found = self._subtrees.get(category_id)
        if found is None:
            members = {category_id}
            stack = [category_id]
            while stack:
                for child in self._children.get(stack.pop(), ()):
                    if child not in members:
                        members.add(child)
                        stack.append(child)
            found = self._subtrees[category_id] = frozenset(members)
        return found

    # --- products --------------------------------------------------------------------------
    def upsert(self, product: Product) -> None:
        """Index a product, or re-index it after a change (only what changed is touched)."""
        sku = product.sku
        weights = term_weights(product.name, product.description)
        price = product.price.minor
        old = self._views.get(sku)
        postings = self._postings
        if old is not None:
            for term in old.terms:
                if term not in weights:
                    self._unpost(term, sku)
            if old.category_id != product.category_id:
                self._leave_category(old.category_id, sku)
                insort(self._by_category.setdefault(product.category_id, []), sku)
            if old.price != price:
                self._price_remove(old.price, sku)
                self._price_add(price, sku)
        else:
            insort(self._by_category.setdefault(product.category_id, []), sku)
            self._price_add(price, sku)
        for term, weight in weights.items():
            posting = postings.get(term)
            if posting is None:
                postings[term] = {sku: weight}
            else:
                posting[sku] = weight
        self._views[sku] = ProductView(
            sku,
            product.name.lower(),
            product.category_id,
            price,
            product.created_at,
            tuple(weights),
        )

    def remove(self, sku: str) -> bool:
        """Drop a product from the index; return False if it was not indexed."""
        old = self._views.pop(sku, None)
        if old is None:
            return False
        for term in old.terms:
            self._unpost(term, sku)
        self._leave_category(old.category_id, sku)
        self._price_remove(old.price, sku)
        return True

    def _leave_category(self, category_id: str, sku: str) -> None:
        members = self._by_category[category_id]
        del members[bisect_left(members, sku)]
        if not members:
            del self._by_category[category_id]

    def _unpost(self, term: str, sku: str) -> None:
        posting = self._postings[term]
        del posting[sku]
        if not posting:
            del self._postings[term]

    # --- the price list: kept sorted in place, or dropped after many edits and re-sorted ----
    def _price_add(self, price: int, sku: str) -> None:
        prices = self._prices
        if prices is None:
            return
        if self._price_edits >= PRICE_EDITS_BEFORE_REBUILD:
            self._prices = None
            return
        self._price_edits += 1
        insort(prices, (price, sku))

    def _price_remove(self, price: int, sku: str) -> None:
        prices = self._prices
        if prices is None:
            return
        if self._price_edits >= PRICE_EDITS_BEFORE_REBUILD:
            self._prices = None
            return
        self._price_edits += 1
        del prices[bisect_left(prices, (price, sku))]

    def _best_selling_page(
        self,
        query: SearchQuery,
        cats: frozenset[str],
        size: int,
        ranked: Callable[[str], Sequence[tuple[int, str]]],
        sales: Mapping[str, int],
        excluded: Set[str],
    ) -> SearchPage:
        """Serve a best-selling page of a category (``size`` products) from sales rankings.

        The same page as ranking the category: SKUs by (-units, sku), unsold ones after in
        SKU order, ``excluded`` (sold-out) ones left out of the page and the total.
        """
        views = self._views
        if excluded:
            hidden = sum(1 for sku in excluded if sku in views and views[sku].category_id in cats)
            size -= hidden
        page_size = query.page_size
        first = (query.page - 1) * page_size
        end = first + page_size
        pages = -(-size // page_size)
        if first >= size:
            return SearchPage((), size, query.page, pages)
        lists = [ranked(c) for c in cats]
        stream = lists[0] if len(lists) == 1 else heapq.merge(*lists)
        items = _take(stream, excluded, end)
        if len(items) < end:  # top up with the unsold, in SKU order
            members = [self._by_category.get(c, ()) for c in cats]
            skus = members[0] if len(members) == 1 else heapq.merge(*members)
            unsold = (sku for sku in skus if sku not in sales)
            items.extend(_take(zip(repeat(0), unsold), excluded, end - len(items)))
        return SearchPage(tuple(items[first:end]), size, query.page, pages)

    def _price_list(self) -> list[tuple[int, str]]:
        prices = self._prices
        if prices is None:
            prices = self._prices = sorted((v.price, sku) for sku, v in self._views.items())
        self._price_edits = 0
        return prices

    # --- search ----------------------------------------------------------------------------
    def search(
        self,
        query: SearchQuery,
        in_stock: Callable[[str], bool] | None = None,
        sales: Callable[[str], int] | Mapping[str, int] | None = None,
        *,
        sold_out: Set[str] | None = None,
        ranked: Callable[[str], Sequence[tuple[int, str]]] | None = None,
    ) -> SearchPage:
        """Return the page of products matching ``query``, sorted; ties are broken by SKU.

        ``in_stock`` says whether a SKU can be bought, or ``sold_out`` is the set of SKUs that
        cannot (one of them is needed when ``in_stock_only``; the set is checked without a
        Python call per candidate). ``sales`` gives units sold for the ``best_selling`` sort,
        as a function or a mapping SKU -> units (missing SKUs sold 0; a mapping ranks the
        candidates without a Python call each); without it that sort is by SKU. The smallest
        candidate set among the text postings, the category and the price range is
        enumerated; the other criteria are checked per candidate.

        ``ranked`` (with a ``sales`` mapping that agrees with it, e.g.
        :meth:`Recommender.ranked_in` and :attr:`Recommender.sales_table`) gives a category's
        sold SKUs already in best-selling order: a ``best_selling`` query by category alone
        then reads the page off those lists instead of ranking the whole category.
        """
        if query.in_stock_only and in_stock is None and sold_out is None:
            raise InvalidValue("in_stock_only needs an in_stock function or a sold_out set")
        views = self._views
        postings: list[dict[str, int]] = []
        for term in query.terms():
            posting = self._postings.get(term)
            if posting is None:
                return SearchPage((), 0, query.page, 0)
            postings.append(posting)
        postings.sort(key=len)

        # Candidate sources with their sizes; the smallest is enumerated.
        best_size = len(views)
        base: Iterable[str] = views
        base_kind = "all"
        if postings:
            if len(postings) == 1:
                base = postings[0]
            else:  # AND of the terms: set intersections in C, smallest posting first
                common = postings[0].keys() & postings[1].keys()
                for posting in postings[2:]:
                    common &= posting.keys()
                base = common
            best_size, base_kind = len(base), "text"
        cats: frozenset[str] | None = None
        if query.category_id is not None:
            cats = self.subtree(query.category_id)
            size = sum(len(self._by_category.get(c, ())) for c in cats)
            if size < best_size:
                best_size, base_kind = size, "category"
                by_category = self._by_category
                base = chain.from_iterable(by_category.get(c, ()) for c in cats)
        low = query.min_price.minor if query.min_price is not None else None
        high = query.max_price.minor if query.max_price is not None else None
        has_price = low is not None or high is not None
        if has_price and (self._prices is not None or base_kind == "all"):
            prices = self._price_list()
            start = 0 if low is None else bisect_left(prices, (low,))
            stop = len(prices) if high is None else bisect_left(prices, (high + 1,))
            if stop - start < best_size:
                best_size, base_kind = stop - start, "price"
                base = [sku for _, sku in prices[start:stop]]

        if (
            ranked is not None
            and base_kind == "category"
            and not postings
            and not has_price
            and query.sort == "best_selling"
            and isinstance(sales, Mapping)
            and (not query.in_stock_only or sold_out is not None)
        ):
            assert cats is not None
            excluded = sold_out if query.in_stock_only and sold_out else frozenset()
            return self._best_selling_page(query, cats, best_size, ranked, sales, excluded)

        # Filter the base by the other criteria.
        others = postings if base_kind != "text" else []
        check_cats = cats if base_kind != "category" else None
        stock = in_stock if query.in_stock_only and sold_out is None else None
        if base_kind == "price":
            low = high = None  # the base is the price range already
        if others or check_cats is not None or stock is not None or (low, high) != (None, None):
            matches = self._filter(base, others, check_cats, low, high, stock)
        else:
            matches = list(base)
        if query.in_stock_only and sold_out is not None and sold_out:
            matches = [sku for sku in matches if sku not in sold_out]

        # Sort only as much as the requested page needs.
        total = len(matches)
        size = query.page_size
        first = (query.page - 1) * size
        end = first + size
        pages = -(-total // size)
        if first >= total:
            return SearchPage((), total, query.page, pages)
        if query.sort == "best_selling" and isinstance(sales, Mapping):
            ordered = _best_selling(matches, sales, end)
            return SearchPage(tuple(ordered[first:end]), total, query.page, pages)
        key = self._sort_key(query.sort, postings, sales, base_kind)
        if key is _KEEP_ORDER:
            ordered = matches
        elif key is _SKU_ORDER:
            ordered = heapq.nsmallest(end, matches) if end * 4 < total else sorted(matches)
        elif end * 4 < total:
            ordered = heapq.nsmallest(end, matches, key=key)  # type: ignore[arg-type]
        else:
            ordered = sorted(matches, key=key)  # type: ignore[arg-type]
        return SearchPage(tuple(ordered[first:end]), total, query.page, pages)

    def _filter(
        self,
        base: Iterable[str],
        others: list[dict[str, int]],
        cats: frozenset[str] | None,
        low: int | None,
        high: int | None,
        stock: Callable[[str], bool] | None,
    ) -> list[str]:
        """Return the SKUs of ``base`` in every posting, category set, price range and stock."""
        views = self._views
        check_price = low is not None or high is not None
        lo = low if low is not None else 0
        hi = high if high is not None else float("inf")
        matches: list[str] = []
        append = matches.append
        for sku in base:
            if others and not all(sku in posting for posting in others):
                continue
            if cats is not None or check_price:
                v = views[sku]
                if cats is not None and v.category_id not in cats:
                    continue
                if check_price and not lo <= v.price <= hi:
                    continue
            if stock is not None and not stock(sku):
                continue
            append(sku)
        return matches

    def _sort_key(
        self,
        sort: str,
        postings: list[dict[str, int]],
        sales: Callable[[str], int] | Mapping[str, int] | None,
        base_kind: str,
    ) -> Any:
        views = self._views
        if sort == "relevance":
            if not postings:
                return _SKU_ORDER
            if len(postings) == 1:
                only = postings[0]
                return lambda s: (-only[s], s)
            return lambda s: (-sum(p[s] for p in postings), s)
        if sort == "price_asc":
            if base_kind == "price":
                return _KEEP_ORDER  # enumerated from the (price, sku)-sorted list
            return lambda s: (views[s].price, s)
        if sort == "price_desc":
            return lambda s: (-views[s].price, s)
        if sort == "name":
            return lambda s: (views[s].name_key, s)
        if sort == "newest":
            return lambda s: (-views[s].created_at, s)
        if sales is None:  # best_selling with no sales figures
            return _SKU_ORDER
        assert callable(sales)  # a mapping is ranked in search()
        return lambda s: (-sales(s), s)


def _take(ranked: Iterable[tuple[int, str]], excluded: Set[str], n: int) -> list[str]:
    """Return the first ``n`` SKUs of ``ranked`` that are not ``excluded``."""
    out: list[str] = []
    if n <= 0:
        return out
    for _, sku in ranked:
        if sku not in excluded:
            out.append(sku)
            if len(out) == n:
                break
    return out


def _best_selling(matches: list[str], sales: Mapping[str, int], end: int) -> list[str]:
    """Return the first ``end`` of ``matches`` by (-units sold, sku); SKUs not in ``sales`` sold 0.

    Only the SKUs with sales are ranked by their units (two C-level sorts: by SKU, then a
    stable sort by units, descending); the unsold follow in SKU order. A mapping that holds
    units <= 0 is ranked the plain way.
    """
    sold = sales.keys() & matches
    if sold and min(map(sales.__getitem__, sold)) <= 0:
        decorated = sorted(zip(map(neg, map(sales.get, matches, repeat(0))), matches, strict=True))
        return [sku for _, sku in decorated[:end]]
    ranked = sorted(sold)
    ranked.sort(key=sales.__getitem__, reverse=True)  # stable: SKU order within equal units
    if len(ranked) < end:
        unsold = set(matches) - sold
        ranked.extend(heapq.nsmallest(end - len(ranked), unsold) if unsold else ())
    return ranked[:end]


# --- recommendations (read model) ------------------------------------------------------------
MAX_PAIR_BASKET = 100
"""Orders with more distinct SKUs than this count as sales but not as co-purchases."""


class Recommender:
    """Co-purchase counts and sales per SKU: "bought together" and best sellers.

    Sales count orders (an order with a SKU sells it once, whatever the quantity). The
    category of each SKU comes from :meth:`set_category` (the catalog events); SKUs sold
    before their category is known count in the overall best sellers only until it is.
    """

    def __init__(self) -> None:
        self._pairs: dict[str, dict[str, int]] = {}
        self._sales: dict[str, int] = {}
        self._category: dict[str, str] = {}
        # One string object per known SKU: an order read back from a store brings copies of
        # its SKUs, and every pair, sale and ranking entry would otherwise keep its own copy.
        self._skus: dict[str, str] = {}
        # Each category's sold SKUs as (-units, sku), ascending: best sellers first, ties by
        # SKU. Kept sorted as sales come in (a bisect and an insort per SKU of an order).
        self._ranked_in: dict[str, list[tuple[int, str]]] = {}
        self._top_all: tuple[int, list[str]] | None = None
        # Per SKU, its top co-purchases as last ranked (k, SKUs): a SKU's page is viewed far
        # more often than it is ordered, so the ranking is redone only when its pairs change.
        self._top_pairs: dict[str, tuple[int, list[str]]] = {}

    def sales(self, sku: str) -> int:
        """Return how many recorded orders contained the SKU."""
        return self._sales.get(sku, 0)

    @property
    def sales_table(self) -> Mapping[str, int]:
        """Return a live read-only view SKU -> orders containing it (SKUs never sold absent).

        Pass it as ``sales`` to :meth:`CatalogIndex.search` for a fast ``best_selling`` sort.
        """
        return MappingProxyType(self._sales)

    def set_category(self, sku: str, category_id: str) -> None:
        """Tell the recommender (or remind it) which category a SKU is in."""
        old = self._category.get(sku)
        if old == category_id:
            return
        sku = self._skus.setdefault(sku, sku)
        self._category[sku] = category_id
        units = self._sales.get(sku)
        if units is not None:
            if old is not None:
                self._leave(old, sku, units)
            insort(self._ranked_in.setdefault(category_id, []), (-units, sku))

    def _leave(self, category_id: str, sku: str, units: int) -> None:
        ranked = self._ranked_in[category_id]
        del ranked[bisect_left(ranked, (-units, sku))]
        if not ranked:
            del self._ranked_in[category_id]

    def forget(self, sku: str) -> None:
        """Drop a SKU (a deleted product): its sales, its pairs and its category."""
        category = self._category.pop(sku, None)
        self._skus.pop(sku, None)
        units = self._sales.pop(sku, None)
        if units is not None:
            self._top_all = None
            if category is not None:
                self._leave(category, sku, units)
        self._top_pairs.pop(sku, None)
        for other in self._pairs.pop(sku, {}):
            self._top_pairs.pop(other, None)
            partners = self._pairs[other]
            del partners[sku]
            if not partners:
                del self._pairs[other]

    def record_order(self, skus: Iterable[str]) -> None:
        """Count one order: a sale of each distinct SKU and a co-purchase of each pair."""
        known = self._skus
        unique = sorted({known.get(sku, sku) for sku in skus})
        sales = self._sales
        for sku in unique:
            units = sales.get(sku, 0)
            sales[sku] = units + 1
            category = self._category.get(sku)
            if category is not None:
                ranked = self._ranked_in.setdefault(category, [])
                if units:
                    del ranked[bisect_left(ranked, (-units, sku))]
                insort(ranked, (-units - 1, sku))
        if unique:
            self._top_all = None
        if len(unique) > MAX_PAIR_BASKET:
            return
        pairs, top_pairs = self._pairs, self._top_pairs
        for i, a in enumerate(unique):
            top_pairs.pop(a, None)
            with_a = pairs.setdefault(a, {})
            for b in unique[i + 1 :]:
                with_a[b] = with_a.get(b, 0) + 1
                with_b = pairs.setdefault(b, {})
                with_b[a] = with_b.get(a, 0) + 1

    def co_purchases(self, sku: str, other: str) -> int:
        """Return how many recorded orders contained both SKUs."""
        return self._pairs.get(sku, {}).get(other, 0)

    def best_sellers(self, category_id: str | None, k: int) -> list[str]:
        """Return the ``k`` best-selling SKUs (of one category, or overall for None).

        Most orders first, ties by SKU; only SKUs with at least one sale.
        """
        if k < 1:
            return []
        if category_id is not None:
            return [sku for _, sku in self._ranked_in.get(category_id, ())[:k]]
        cached = self._top_all
        if cached is not None and cached[0] >= k:
            return cached[1][:k]
        sales = self._sales
        top = heapq.nsmallest(k, sales, key=lambda s: (-sales[s], s))
        self._top_all = (k, top)
        return list(top)

    def ranked_in(self, category_id: str) -> Sequence[tuple[int, str]]:
        """Return a category's sold SKUs as ``(-units, sku)``, best sellers first (read only).

        The live list (not a copy): pass the method as ``ranked`` to
        :meth:`CatalogIndex.search` for a ``best_selling`` page without ranking the category.
        """
        return self._ranked_in.get(category_id, ())

    def bought_together(
        self, sku: str, k: int, category_of: Callable[[str], str | None]
    ) -> list[str]:
        """Return up to ``k`` SKUs most often bought with ``sku`` (ties by SKU).

        If there are fewer than ``k``, the list is topped up with the best sellers of the
        SKU's category (``category_of(sku)``; overall best sellers if it has none), without
        the SKU itself and without repeats.
        """
        if k < 1:
            return []
        cached = self._top_pairs.get(sku)
        if cached is not None and cached[0] >= k:
            picks = cached[1][:k]  # the first k of a longer ranking are the top k
        elif sku in self._pairs:  # (kept only for SKUs with pairs: those are bounded)
            top = [s for s, _ in heapq.nsmallest(k, self._pairs[sku].items(), key=_pair_key)]
            self._top_pairs[sku] = (k, top)
            picks = top[:]
        else:
            picks = []
        if len(picks) < k:
            chosen = {sku, *picks}
            for candidate in self.best_sellers(category_of(sku), k + len(chosen)):
                if candidate not in chosen:
                    picks.append(candidate)
                    chosen.add(candidate)
                    if len(picks) == k:
                        break
        return picks


def _pair_key(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]
