"""The shop's configurable rules in one value: pricing, reservations, fraud, abandonment."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.domain.carts import ShippingRule, TaxPolicy
from sim.domain.clock import MINUTE
from sim.domain.money import Money
from sim.domain.payments import FraudRules
from sim.domain.users import LoginPolicy, PasswordHasher


@dataclass(frozen=True)
class ShopPolicies:
    """Every rule a use case needs that is configuration rather than code.

    Defaults: US-style sales tax of 8 %, 4.99 shipping free from 50.00, checkout
    reservations held 15 minutes (Saleor's per-site setting is minutes), a cart counted
    as abandoned after 30 minutes untouched.
    """

    tax: TaxPolicy = field(default_factory=lambda: TaxPolicy(default_rate_bp=800))
    shipping: ShippingRule = field(
        default_factory=lambda: ShippingRule(flat=Money(499), free_over=Money(5000))
    )
    reservation_ttl: float = 15 * MINUTE
    abandonment_after: float = 30 * MINUTE
    fraud: FraudRules = field(default_factory=FraudRules)
    shipping_country: str = "US"
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    login: LoginPolicy = field(default_factory=LoginPolicy)
