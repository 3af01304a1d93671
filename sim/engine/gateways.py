"""Payment gateways: latency, declines, client timeouts, retries, idempotency, failover.

A gateway keeps the answer it gave to every idempotency key, as Stripe does: a retry of a
request that timed out on the client (but went through at the gateway) gets the first
answer replayed instead of a second charge.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.domain.payments import PaymentStatus
from sim.engine.stations import Station
from sim.scenario.schema import Gateway as GatewaySpec
from sim.services.handlers import shopping

if TYPE_CHECKING:
    from sim.engine.world import World

CONNECT_ERROR_TIME = 0.05
"""Seconds until a client notices that a gateway is down (connection refused)."""


@dataclass(eq=False)
class GatewayModel:
    """One payment gateway: its servers, its behaviour, and what it has settled per key."""

    spec: GatewaySpec
    station: Station
    outages: int = 0
    latency_factor: float = 1.0
    ghost_share: float = 0.0
    settled: dict[str, str] = field(default_factory=dict)
    replays: int = 0

    @property
    def down(self) -> bool:
        """Return True while an outage of this gateway is in force."""
        return self.outages > 0

    @property
    def name(self) -> str:
        """Return the gateway's name."""
        return self.spec.name

    def call(
        self, env: simpy.Environment, key: str, rng: np.random.Generator
    ) -> Generator[simpy.Event, Any, tuple[str, float, bool]]:
        """Send one authorisation request; return (answer, client latency, replayed).

        The answer is approved, declined, failed (gateway down) or timeout (the client gave
        up; the gateway may still have approved, and a retry with the same key replays it).
        ``replayed`` is True when the gateway answered from its idempotency record.
        """
        start = env.now
        if self.down:
            yield env.timeout(CONNECT_ERROR_TIME)
            return "failed", env.now - start, False
        spec = self.spec
        u_decline, u_ghost = rng.random(), rng.random()
        latency = spec.latency.sample(rng) * self.latency_factor
        req = self.station.request()
        timer = env.timeout(spec.timeout)
        got = yield req | timer
        if req not in got:
            # Gave up in the queue: the gateway never saw the call. A server granted at the
            # very instant the client gave up is handed straight back.
            if req.triggered:
                self.station.release(req)
            else:
                req.cancel()
            return "timeout", env.now - start, False
        answer = self.settled.get(key)
        replayed = answer is not None
        if answer is None:
            answer = "declined" if u_decline < spec.decline_rate else "approved"
            self.settled[key] = answer
        else:
            self.replays += 1
        left = spec.timeout - (env.now - start)
        if latency > left or (answer == "approved" and u_ghost < self.ghost_share):
            # The client gives up at its timeout, but the gateway's server works on until the
            # answer is out (``latency``), whether the client still waits for it or not.
            env.process(self._finish(env, req, latency))
            yield env.timeout(left)
            return "timeout", env.now - start, replayed
        yield env.timeout(latency)
        self.station.release(req)
        return answer, env.now - start, replayed

    def _finish(
        self, env: simpy.Environment, req: simpy.Event, work: float
    ) -> Generator[simpy.Event, Any, None]:
        """Keep the gateway's server busy with a call for ``work`` seconds, then free it."""
        yield env.timeout(work)
        self.station.release(req)


def choose(world: World, u: float) -> list[GatewayModel]:
    """Return the gateways in the order to try: the routed one first, then the others."""
    gateways = world.gateways
    cumulative = 0.0
    first = len(gateways) - 1
    for i, share in enumerate(world.shares):
        cumulative += share
        if u < cumulative:
            first = i
            break
    return [gateways[first], *gateways[:first], *gateways[first + 1 :]]


def pay(
    world: World, order_id: str, method: Any, rng: np.random.Generator
) -> Generator[simpy.Event, Any, str]:
    """Pay for an order: shop checks, gateway calls with retries and failover; return outcome.

    Retries keep the same idempotency key while they go to the same gateway; failing over
    to another gateway (only when the first one is down) uses a new key there.

    The order may be cancelled while its payment is at the gateway (its customer, an admin,
    the expiry of its reservation): the payment is then cancelled with it, no retry
    follows, and the answer still on its way is settled without the order (an approval
    voided). The outcome is then ``"cancelled"`` or ``"voided"`` (or ``"declined"``), and
    nothing is abandoned.
    """
    env, uow, rec = world.env, world.uow, world.recorder
    order_gateways = choose(world, rng.random())
    start = shopping.begin_payment(
        uow,
        order_id,
        method,
        gateway=order_gateways[0].name,
        idempotency_key=f"{order_id}@{order_gateways[0].name}",
        now=env.now,
        policies=world.policies,
    )
    if start.action == "blocked":
        rec.count("fraud_blocks")
        return "blocked"
    retry = world.retry
    outcome = "failed"
    for attempt in range(1, retry.max_attempts + 1):
        if attempt > 1 and _cancelled(world, start.payment_id):
            outcome = shopping.CANCELLED  # the order was cancelled between two attempts
            break
        gateway = next((g for g in order_gateways if not g.down), order_gateways[0])
        if gateway is not order_gateways[0]:
            rec.count("failovers")
        key = f"{order_id}@{gateway.name}"
        answer, latency, replayed = yield from gateway.call(env, key, rng)
        if replayed and answer == "approved":
            rec.count("double_charges_prevented")
        rec.payments.append(env.now, order_id, gateway.name, attempt, answer, latency)
        outcome = shopping.record_gateway_answer(
            uow, start.payment_id, answer, env.now, gateway=gateway.name
        )
        if outcome != "failed":
            break
        if attempt < retry.max_attempts:
            rec.count("payment_retries")
            yield env.timeout(retry.delay(attempt, rng.random()))
    if outcome == "failed":
        shopping.abandon_payment(uow, start.payment_id, env.now)
    elif outcome == "declined":
        rec.count("declines")
    elif outcome in (shopping.CANCELLED, shopping.VOIDED):
        rec.count("payments_cancelled")
        if outcome == shopping.VOIDED:
            rec.count("late_approvals_voided")
    return outcome


def _cancelled(world: World, payment_id: str) -> bool:
    """Return True if the payment was cancelled with its order (nothing left to retry)."""
    return world.uow.payments.find_readonly(payment_id).status is PaymentStatus.CANCELLED
