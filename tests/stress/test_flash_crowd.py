"""100,000 shoppers in flight at once for one product of limited stock, through the handlers.

Every shopper is a generator of steps (add to cart, check out, begin the payment, the gateway's
answer); a seeded scheduler advances a random shopper one step at a time, so all 100,000
sessions are open together and their steps interleave: carts fill while others check out,
declined or abandoned payments give units back while others are paying. A shopper told "out
of stock" waits on a list; a unit given back wakes the first one, who tries again. At the
end exactly the stock is sold, nothing is oversold, every other shopper has a final outcome
(out of stock, declined or abandoned), and the books pass the audit.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Generator

from sim.domain.catalog import Product
from sim.domain.errors import OutOfStock
from sim.domain.inventory import StockItem
from sim.domain.money import Money
from sim.domain.payments import Card
from sim.domain.users import PasswordHasher
from sim.engine.audit import audit_books
from sim.services.handlers import accounts, shopping
from sim.services.policies import ShopPolicies
from sim.services.store import UnitOfWork
from sim.services.subscribers import attach_subscribers
from tests.stress import tally

SHOPPERS = 100_000
STOCK = 500
SKU = "SKU-DEAL"

Step = Generator[str, None, str]


def _shopper(
    uow: UnitOfWork,
    user_id: str,
    answer: str,
    policies: ShopPolicies,
    card: Card,
    clock: list[float],
    rejections: list[str],
) -> Step:
    while True:  # a sold-out deal cannot even be added: wait for a unit to come back
        try:
            shopping.add_to_cart(uow, user_id, SKU, 1, clock[0])
            break
        except OutOfStock as exc:
            rejections.append(str(exc))
            yield "waiting"
    yield "added"
    while True:
        try:
            order_id = shopping.checkout(uow, user_id, clock[0], policies=policies)
            break
        except OutOfStock as exc:
            rejections.append(str(exc))
            yield "waiting"  # parked on the wait list until a unit comes back
    yield "ordered"
    start = shopping.begin_payment(
        uow,
        order_id,
        card,
        gateway="card",
        idempotency_key=f"{order_id}@card",
        now=clock[0],
        policies=policies,
    )
    yield "paying"
    if answer == "abandon":
        shopping.record_gateway_answer(uow, start.payment_id, "timeout", clock[0])
        shopping.abandon_payment(uow, start.payment_id, clock[0])
        return "abandoned"
    return shopping.record_gateway_answer(uow, start.payment_id, answer, clock[0])


def test_a_hundred_thousand_shoppers_buy_exactly_the_stock():
    started = time.perf_counter()
    rng = random.Random(20260301)
    hasher = PasswordHasher(iterations=1)
    policies = ShopPolicies(hasher=hasher)
    uow = attach_subscribers(UnitOfWork(), notifications=False)
    with uow:
        uow.products.add(Product.create(SKU, "Deal", "the doorbuster", "deals", Money(1999), 0.0))
        uow.stock.add(StockItem(SKU, STOCK))
        uow.commit()
    card = Card("4242424242424242", 12, 2030, "Crowd Shopper", "US")
    clock = [1.0]
    rejections: list[str] = []
    answers = rng.choices(["approved", "declined", "abandon"], [90, 7, 3], k=SHOPPERS)
    users = [
        accounts.register(uow, f"shopper{i}@crowd.example", "Crowd-pass-123", 0.0, hasher=hasher)
        for i in range(SHOPPERS)
    ]
    active: list[Step] = [
        _shopper(uow, user, answer, policies, card, clock, rejections)
        for user, answer in zip(users, answers, strict=True)
    ]
    waiting: list[Step] = []
    outcomes: Counter[str] = Counter()
    item = uow.stock.find_readonly(SKU)
    steps = 0
    max_open = 0
    while active:
        i = rng.randrange(len(active))
        shopper = active[i]
        active[i] = active[-1]
        active.pop()
        clock[0] += 0.001
        steps += 1
        try:
            state = next(shopper)
        except StopIteration as done:
            outcome = done.value
            outcomes[outcome] += 1
            if outcome in ("declined", "abandoned") and waiting:
                active.append(waiting.pop(0))  # a unit came back: the first in line retries
            continue
        if state == "waiting":
            waiting.append(shopper)
        else:
            active.append(shopper)
        assert 0 <= item.reserved <= item.on_hand  # never oversold, at any step
        if steps % 50_000 == 0:
            max_open = max(max_open, len(active) + len(waiting))
    elapsed = time.perf_counter() - started
    item = uow.stock.find_readonly(SKU)
    # exactly the stock is sold, nothing is held, nothing oversold
    assert (item.sold, item.on_hand, item.reserved, item.available) == (STOCK, 0, 0, 0)
    assert outcomes["captured"] == STOCK
    # everybody else has a clear final outcome
    assert sum(outcomes.values()) + len(waiting) == SHOPPERS
    assert outcomes["declined"] + outcomes["abandoned"] > 0
    assert len(waiting) == SHOPPERS - STOCK - outcomes["declined"] - outcomes["abandoned"]
    assert set(rejections) == {f"{SKU}: 1 requested, 0 available"}
    assert len(rejections) >= len(waiting)
    for shopper in waiting:
        assert shopper.gi_frame is not None  # still parked: the final outcome is out of stock
    assert max_open > SHOPPERS * 0.9  # the sessions really were all in flight together
    books = audit_books(uow)
    assert books.ok, books.violations[:10]
    assert books.checked["orders"] == STOCK + outcomes["declined"] + outcomes["abandoned"]
    tally.add("flash_crowd_shoppers", SHOPPERS)
    tally.add("flash_crowd_steps", steps)
    tally.note("flash_crowd_seconds", round(elapsed, 1))
