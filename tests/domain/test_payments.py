from __future__ import annotations

import copy
import itertools

import pytest

from sim.domain.clock import DAY
from sim.domain.errors import (
    CurrencyMismatch,
    IdempotencyConflict,
    IllegalTransition,
    InvalidAmount,
    InvalidPaymentMethod,
    InvalidValue,
    RefundExceedsCharge,
)
from sim.domain.events import PaymentCaptured, PaymentDeclined, PaymentRefunded, PaymentVoided
from sim.domain.money import Money
from sim.domain.payments import (
    PAYMENT_TRANSITIONS,
    BankTransfer,
    Card,
    FraudContext,
    FraudRules,
    IdempotencyRecord,
    Payment,
    PaymentMethod,
    PaymentStatus,
    RetryPolicy,
    RiskAssessment,
    Wallet,
    card_brand,
    check_idempotency_key,
    iban_valid,
    luhn_valid,
    replay_or_conflict,
    request_fingerprint,
)

P = PaymentStatus
JAN_2026 = 0.0
FEB_2026 = 31 * DAY


def m(minor: int) -> Money:
    return Money(minor)


def card(number="4242 4242 4242 4242", month=1, year=2026, holder="Ada", country="US") -> Card:
    return Card(number, month, year, holder, country)


# --- Luhn, brands, cards -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number",
    [
        "4242424242424242",
        "4111111111111111",
        "5555555555554444",
        "2223003122003222",
        "378282246310005",
        "6011111111111117",
        "79927398713",
        "0",
    ],
)
def test_luhn_accepts_known_valid_numbers(number):
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number", ["4242424242424241", "1234567812345678", "79927398710", "", "4242x42424242424", "٣"]
)
def test_luhn_rejects_invalid_numbers(number):
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("378282246310005", "amex"),
        ("341111111111111", "amex"),
        ("5105105105105100", "mastercard"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000007", "mastercard"),
        ("2220990000000000", "card"),
        ("6011111111111117", "discover"),
        ("6500000000000002", "discover"),
        ("6445644564456445", "discover"),
        ("6500", "discover"),
        ("9999999999999995", "card"),
        ("12ab", "card"),
        ("", "card"),
    ],
)
def test_card_brand_by_prefix(number, brand):
    assert card_brand(number) == brand


def test_card_normalises_the_number_and_never_shows_it():
    c = card("4242-4242 4242-4242")
    assert c.number == "4242424242424242"
    assert c.last4 == "4242"
    assert c.brand == "visa"
    assert c.fingerprint == "visa-4242"
    assert c.kind == "card"
    assert "4242424242424242" not in repr(c)
    assert "Ada" in repr(c)
    assert isinstance(c, PaymentMethod)
    c.validate(JAN_2026)


def test_card_number_must_be_a_string():
    with pytest.raises(
        InvalidPaymentMethod, match="card number must be a string of digits, got int"
    ):
        Card(4242424242424242, 1, 2026, "Ada", "US")  # type: ignore[arg-type]


def test_card_is_valid_through_the_last_second_of_its_expiry_month():
    c = card(month=1, year=2026)
    c.validate(JAN_2026)
    c.validate(FEB_2026 - 1)
    with pytest.raises(
        InvalidPaymentMethod, match=r"card ending 4242: expired 01/2026 \(now 2026-02\)"
    ):
        c.validate(FEB_2026)


def test_card_expired_last_year_and_valid_next_year():
    with pytest.raises(InvalidPaymentMethod, match=r"expired 12/2025 \(now 2026-01\)"):
        card(month=12, year=2025).validate(JAN_2026)
    card(month=1, year=2027).validate(380 * DAY)
    card(month=2, year=2026).validate(FEB_2026)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(number="4242424242424241"), "card ending 4241: number fails the Luhn check"),
        (dict(number="79927398713"), "has 11 digits"),
        (dict(number="42424242424242420000"), "has 20 digits"),
        (dict(month=13), r"bad expiry 13/2026"),
        (dict(month=0), r"bad expiry 0/2026"),
        (dict(year=26.0), r"bad expiry 1/26.0"),
        (dict(holder="  "), "holder name is empty"),
        (dict(country="us"), "card: billing country must be two capital letters"),
        (dict(country="USA"), "got 'USA'"),
    ],
)
def test_card_validation_errors(kwargs, fragment):
    with pytest.raises(InvalidPaymentMethod, match=fragment):
        card(**kwargs).validate(JAN_2026)


# --- wallets and bank transfers ------------------------------------------------------------------
def test_wallet_fingerprint_hides_the_id():
    w = Wallet("paypal", "W-000123456", "GB")
    assert w.kind == "wallet"
    assert w.fingerprint == "paypal-3456"
    assert "W-000123456" not in repr(w)
    assert isinstance(w, PaymentMethod)
    w.validate(JAN_2026)
    Wallet("apple_pay", "x").validate(JAN_2026)
    assert Wallet("apple_pay", "x").billing_country == ""


@pytest.mark.parametrize(
    ("wallet", "fragment"),
    [
        (Wallet("venmo", "abc"), "wallet: provider must be one of"),
        (Wallet("paypal", ""), r"wallet paypal: id must be 1-64 characters without spaces \(0"),
        (Wallet("paypal", "a b"), "without spaces"),
        (Wallet("paypal", "a" * 65), r"\(65 given\)"),
        (Wallet("paypal", "abc", "gb"), "wallet: billing country must be two capital letters"),
    ],
)
def test_wallet_validation_errors(wallet, fragment):
    with pytest.raises(InvalidPaymentMethod, match=fragment):
        wallet.validate(JAN_2026)


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "nl91abna0417164300",
        "FR14 2004 1010 0505 0001 3M02 606",
        "MT84MALT011000012345MTLCAST001S",
    ],
)
def test_iban_accepts_valid_ibans(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 33",
        "DE89 3704 0044 0532 0130 0",
        "DE89370400440532013000X",
        "GB82-WEST-1234-5698-7654-32",
        "1282WEST12345698765432",
        "GBAAWEST12345698765432",
        "GB82WEST",
        "MT84MALT011000012345MTLCAST001SAAAA",
    ],
)
def test_iban_rejects_invalid_ibans(iban):
    assert not iban_valid(iban)


def test_bank_transfer():
    b = BankTransfer("de89 3704 0044 0532 0130 00", "Grace")
    assert b.iban == "DE89370400440532013000"
    assert b.kind == "bank_transfer"
    assert b.billing_country == "DE"
    assert b.fingerprint == "iban-DE-3000"
    assert "DE89370400440532013000" not in repr(b)
    assert isinstance(b, PaymentMethod)
    b.validate(JAN_2026)
    with pytest.raises(InvalidPaymentMethod, match=r"IBAN DE\.\.3001 fails the mod-97 check"):
        BankTransfer("DE89370400440532013001", "Grace").validate(JAN_2026)
    with pytest.raises(InvalidPaymentMethod, match="bank transfer: holder name is empty"):
        BankTransfer("DE89370400440532013000", "").validate(JAN_2026)


# --- fraud rules ---------------------------------------------------------------------------------
NOW = 10_000.0


def ctx(amount=5000, billing="US", shipping="US", times=(), failed=0) -> FraudContext:
    return FraudContext("u-1", m(amount), billing, shipping, tuple(times), failed, NOW)


RULES = FraudRules()


def test_a_plain_payment_is_approved_with_score_zero():
    assert RULES.assess(ctx()) == RiskAssessment(0, "approve", ())


def test_velocity_counts_attempts_inside_the_window_only():
    inside = [NOW - i * 60 for i in range(5)]  # 5 attempts in the last hour
    assert RULES.assess(ctx(times=inside)) == RiskAssessment(35, "approve", ("velocity",))
    assert RULES.assess(ctx(times=inside[:4])).score == 0
    edge = [*inside[:4], NOW - 3600.0, NOW + 1.0]  # at the window's edge, in the future: out
    assert RULES.assess(ctx(times=edge)).score == 0


def test_single_rules_and_their_weights():
    assert RULES.assess(ctx(amount=100_000)) == RiskAssessment(30, "approve", ("large_amount",))
    assert RULES.assess(ctx(amount=99_999)).score == 0
    assert RULES.assess(ctx(shipping="GB")) == RiskAssessment(25, "approve", ("country_mismatch",))
    assert RULES.assess(ctx(billing="", shipping="GB")).score == 0
    assert RULES.assess(ctx(failed=3)) == RiskAssessment(40, "approve", ("failed_attempts",))
    assert RULES.assess(ctx(failed=2)).score == 0


def test_combined_rules_lead_to_review_and_block():
    review = RULES.assess(ctx(amount=150_000, shipping="GB"))
    assert review == RiskAssessment(55, "review", ("large_amount", "country_mismatch"))
    times = [NOW - 1.0] * 5
    block = RULES.assess(ctx(amount=150_000, shipping="GB", times=times))
    assert block == RiskAssessment(90, "block", ("velocity", "large_amount", "country_mismatch"))
    everything = RULES.assess(ctx(amount=150_000, shipping="GB", times=times, failed=9))
    assert everything.score == 100
    assert everything.decision == "block"
    assert everything.reasons == ("velocity", "large_amount", "country_mismatch", "failed_attempts")


def test_thresholds_are_inclusive():
    rules = FraudRules(review_at=25, block_at=40)
    assert rules.assess(ctx(shipping="GB")).decision == "review"
    assert rules.assess(ctx(failed=5)).decision == "block"
    assert rules.assess(ctx(failed=5)).score == 40


def test_fraud_amount_in_another_currency_is_an_error():
    other = FraudContext("u-1", Money(100, "EUR"), "US", "US", (), 0, NOW)
    with pytest.raises(CurrencyMismatch):
        RULES.assess(other)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(velocity_window=0), "velocity window must be positive"),
        (dict(max_attempts_in_window=0), "attempt limits must be at least 1, got 0 and 3"),
        (dict(max_failed_attempts=0), "got 5 and 0"),
        (dict(velocity_weight=101), "velocity_weight must be 0..100, got 101"),
        (dict(failed_attempts_weight=-1), "failed_attempts_weight must be 0..100"),
        (dict(review_at=90, block_at=80), "need 0 <= review_at <= block_at <= 100"),
        (dict(block_at=101), "got 50 and 101"),
    ],
)
def test_fraud_rules_reject_bad_settings(kwargs, fragment):
    with pytest.raises(InvalidValue, match=fragment):
        FraudRules(**kwargs)


# --- the payment aggregate -----------------------------------------------------------------------
def new_payment(amount=5000) -> Payment:
    return Payment.create(
        "pay-1", "o-1", m(amount), card(), gateway="card-a", idempotency_key="key-1", now=1.0
    )


def test_create_snapshots_the_method_without_secrets():
    p = new_payment()
    assert (p.id, p.order_id, p.amount, p.gateway, p.idempotency_key) == (
        "pay-1",
        "o-1",
        m(5000),
        "card-a",
        "key-1",
    )
    assert (p.method_kind, p.fingerprint) == ("card", "visa-4242")
    assert p.status is P.PENDING
    assert (p.created_at, p.updated_at, p.attempts, p.refunded, p.last_error) == (
        1.0,
        1.0,
        0,
        m(0),
        None,
    )
    assert p.captured == m(0)
    assert p.refundable == m(0)
    assert p.events == []


def test_create_rejects_a_non_positive_amount_and_a_bad_key():
    with pytest.raises(
        InvalidAmount, match=r"payment pay-1: amount must be positive, got 0\.00 USD"
    ):
        new_payment(0)
    with pytest.raises(InvalidValue, match="idempotency key must be 1-255 characters, got 256"):
        Payment.create("p", "o", m(1), card(), gateway="g", idempotency_key="k" * 256, now=0.0)


LEGAL = {
    (P.PENDING, P.AUTHORIZED),
    (P.PENDING, P.DECLINED),
    (P.PENDING, P.FAILED),
    (P.FAILED, P.AUTHORIZED),
    (P.FAILED, P.DECLINED),
    (P.FAILED, P.FAILED),
    (P.PENDING, P.CANCELLED),
    (P.FAILED, P.CANCELLED),
    (P.CANCELLED, P.VOIDED),
    (P.CANCELLED, P.DECLINED),
    (P.AUTHORIZED, P.CAPTURED),
    (P.AUTHORIZED, P.VOIDED),
    (P.CAPTURED, P.PARTIALLY_REFUNDED),
    (P.CAPTURED, P.REFUNDED),
    (P.PARTIALLY_REFUNDED, P.PARTIALLY_REFUNDED),
    (P.PARTIALLY_REFUNDED, P.REFUNDED),
}

SETUP = {
    P.PENDING: [],
    P.AUTHORIZED: [lambda p: p.authorize(2.0)],
    P.CAPTURED: [lambda p: p.authorize(2.0), lambda p: p.capture(3.0)],
    P.DECLINED: [lambda p: p.decline("insufficient_funds", 2.0)],
    P.FAILED: [lambda p: p.fail("timeout", 2.0)],
    P.VOIDED: [lambda p: p.authorize(2.0), lambda p: p.void(3.0)],
    P.CANCELLED: [lambda p: p.cancel(2.0)],
    P.PARTIALLY_REFUNDED: [
        lambda p: p.authorize(2.0),
        lambda p: p.capture(3.0),
        lambda p: p.refund(m(1000), 4.0),
    ],
    P.REFUNDED: [
        lambda p: p.authorize(2.0),
        lambda p: p.capture(3.0),
        lambda p: p.refund(m(5000), 4.0),
    ],
}

ACTIONS = {
    P.AUTHORIZED: lambda p: p.authorize(9.0),
    P.CAPTURED: lambda p: p.capture(9.0),
    P.DECLINED: lambda p: p.decline("do_not_honor", 9.0),
    P.FAILED: lambda p: p.fail("gateway_error", 9.0),
    P.VOIDED: lambda p: p.void(9.0),
    P.CANCELLED: lambda p: p.cancel(9.0),
    P.PARTIALLY_REFUNDED: lambda p: p.refund(m(1), 9.0),
    P.REFUNDED: lambda p: p.refund(p.refundable if p.refundable else m(1), 9.0),
}

EVENTS = {
    P.CAPTURED: PaymentCaptured(at=9.0, payment_id="pay-1", order_id="o-1", amount=m(5000)),
    P.DECLINED: PaymentDeclined(at=9.0, payment_id="pay-1", order_id="o-1", reason="do_not_honor"),
    P.VOIDED: PaymentVoided(at=9.0, payment_id="pay-1", order_id="o-1", amount=m(5000)),
}


def payment_in(status: PaymentStatus) -> Payment:
    p = new_payment()
    for step in SETUP[status]:
        step(p)
    assert p.status is status
    p.events.clear()
    return p


def test_payment_transition_table():
    table = {(a, b) for a, targets in PAYMENT_TRANSITIONS.items() for b in targets}
    assert table == LEGAL
    assert set(PAYMENT_TRANSITIONS) == set(P)
    assert str(P.PARTIALLY_REFUNDED) == "partially_refunded"


@pytest.mark.parametrize(("old", "new"), list(itertools.product(P, ACTIONS)))
def test_every_payment_transition_from_every_state(old, new):
    p = payment_in(old)
    before = copy.deepcopy(p)
    if (old, new) in LEGAL:
        ACTIONS[new](p)
        assert p.status is new
        assert p.updated_at == 9.0
        if new in EVENTS:
            assert p.events == [EVENTS[new]]
        elif new in (P.REFUNDED, P.PARTIALLY_REFUNDED):
            assert [type(e) for e in p.events] == [PaymentRefunded]
        else:
            assert p.events == []
    else:
        target = "refunded" if new is P.PARTIALLY_REFUNDED else new.value
        with pytest.raises(
            IllegalTransition, match=f"^payment pay-1: cannot go from {old.value} to {target}$"
        ):
            ACTIONS[new](p)
        assert p == before
        assert p.events == []


def test_attempts_count_every_gateway_answer_and_keep_the_last_error():
    p = new_payment()
    p.fail("timeout", 2.0)
    p.fail("gateway_error", 3.0)
    assert (p.status, p.attempts, p.last_error) == (P.FAILED, 2, "gateway_error")
    p.authorize(4.0)
    p.capture(5.0)
    assert (p.status, p.attempts) == (P.CAPTURED, 3)
    assert p.captured == m(5000)
    q = new_payment()
    q.fail("timeout", 2.0)
    q.decline("insufficient_funds", 3.0)
    assert (q.status, q.attempts, q.last_error) == (P.DECLINED, 2, "insufficient_funds")


def test_a_payment_cancelled_with_its_order_settles_the_gateways_late_answer():
    late_approval = new_payment()
    late_approval.fail("timeout", 2.0)
    late_approval.cancel(3.0)
    assert (late_approval.status, late_approval.attempts) == (P.CANCELLED, 1)
    assert (late_approval.captured, late_approval.refundable) == (m(0), m(0))
    assert late_approval.events == []  # no money moved: nothing for the ledger
    late_approval.void(4.0)  # the gateway approved after all: the authorisation is voided
    assert (late_approval.status, late_approval.attempts) == (P.VOIDED, 2)
    assert late_approval.captured == m(0)
    assert late_approval.events == [
        PaymentVoided(at=4.0, payment_id="pay-1", order_id="o-1", amount=m(5000))
    ]
    late_decline = new_payment()
    late_decline.cancel(3.0)
    late_decline.decline("do_not_honor", 4.0)
    assert (late_decline.status, late_decline.attempts, late_decline.last_error) == (
        P.DECLINED,
        1,
        "do_not_honor",
    )
    for step in (lambda p: p.authorize(5.0), lambda p: p.fail("timeout", 5.0)):
        closed = new_payment()
        closed.cancel(3.0)
        with pytest.raises(IllegalTransition, match="payment pay-1: cannot go from cancelled to"):
            step(closed)
        assert (closed.status, closed.attempts) == (P.CANCELLED, 0)
    voided_normally = payment_in(P.AUTHORIZED)
    voided_normally.void(5.0)
    assert voided_normally.attempts == 1  # the authorisation's, not one more


def test_partial_refunds_then_the_rest():
    p = payment_in(P.CAPTURED)
    p.refund(m(1000), 10.0)
    assert p.status is P.PARTIALLY_REFUNDED
    assert (p.refunded, p.refundable, p.captured) == (m(1000), m(4000), m(5000))
    p.refund(m(1500), 11.0)
    assert p.status is P.PARTIALLY_REFUNDED
    with pytest.raises(
        RefundExceedsCharge,
        match=r"payment pay-1: refund of 25\.01 USD exceeds the 25\.00 USD left of the 50\.00",
    ):
        p.refund(m(2501), 12.0)
    assert p.refunded == m(2500)
    p.refund(m(2500), 13.0)
    assert p.status is P.REFUNDED
    assert (p.refunded, p.refundable) == (m(5000), m(0))
    assert p.events == [
        PaymentRefunded(at=10.0, payment_id="pay-1", order_id="o-1", amount=m(1000)),
        PaymentRefunded(at=11.0, payment_id="pay-1", order_id="o-1", amount=m(1500)),
        PaymentRefunded(at=13.0, payment_id="pay-1", order_id="o-1", amount=m(2500)),
    ]
    with pytest.raises(IllegalTransition, match="cannot go from refunded to refunded"):
        p.refund(m(1), 14.0)


def test_refund_rejects_non_positive_amounts_and_other_currencies():
    p = payment_in(P.CAPTURED)
    with pytest.raises(InvalidAmount, match=r"payment pay-1: refund must be positive, got 0\.00"):
        p.refund(m(0), 10.0)
    with pytest.raises(CurrencyMismatch):
        p.refund(Money(100, "EUR"), 10.0)
    assert p.status is P.CAPTURED
    assert p.refunded == m(0)


def test_refund_more_than_captured_at_once():
    p = payment_in(P.CAPTURED)
    with pytest.raises(RefundExceedsCharge, match=r"refund of 50\.01 USD exceeds the 50\.00 USD"):
        p.refund(m(5001), 10.0)


# --- idempotency ---------------------------------------------------------------------------------
FP = request_fingerprint("o-1", m(5000), "visa-4242")


def record(created_at=100.0) -> IdempotencyRecord:
    return IdempotencyRecord("key-1", FP, "pay-1", "captured", created_at)


def test_request_fingerprint_names_the_parameters():
    assert FP == "o-1|5000|USD|visa-4242"
    assert request_fingerprint("o-1", m(5001), "visa-4242") != FP


def test_a_new_key_runs_the_request():
    assert replay_or_conflict(None, "key-1", FP, 100.0) is None


def test_the_same_request_replays_the_stored_outcome():
    rec = record()
    assert replay_or_conflict(rec, "key-1", FP, 100.0 + DAY) is rec
    assert rec.outcome == "captured"
    assert rec.payment_id == "pay-1"


def test_the_same_key_with_other_parameters_conflicts():
    other = request_fingerprint("o-1", m(4999), "visa-4242")
    with pytest.raises(IdempotencyConflict, match=r"idempotency key 'key-1' was first used for"):
        replay_or_conflict(record(), "key-1", other, 200.0)


def test_a_record_older_than_the_ttl_is_pruned():
    rec = record()
    assert not rec.is_expired(100.0 + DAY)
    assert rec.is_expired(100.0 + DAY + 0.001)
    assert replay_or_conflict(rec, "key-1", FP, 100.0 + DAY + 0.001) is None
    other = request_fingerprint("o-2", m(1), "visa-4242")
    assert replay_or_conflict(rec, "key-1", other, 100.0 + DAY + 1) is None
    assert replay_or_conflict(rec, "key-1", FP, 161.0, ttl=60.0) is None
    assert replay_or_conflict(rec, "key-1", FP, 160.0, ttl=60.0) is rec


def test_idempotency_keys_are_checked():
    check_idempotency_key("k" * 255)
    for bad in ("", "k" * 256):
        with pytest.raises(InvalidValue, match="idempotency key must be 1-255 characters"):
            check_idempotency_key(bad)
    with pytest.raises(InvalidValue, match="got None"):
        check_idempotency_key(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="got 0"):
        IdempotencyRecord("", FP, "pay-1", "captured", 0.0)
    with pytest.raises(InvalidValue, match="got 256"):
        replay_or_conflict(None, "k" * 256, FP, 0.0)
    with pytest.raises(InvalidValue, match="idempotency record 'key-1' looked up for key 'key-2'"):
        replay_or_conflict(record(), "key-2", FP, 100.0)


def test_settle_stores_the_outcome_to_replay():
    rec = IdempotencyRecord("key-1", FP, "pay-1", "pending", 0.0)
    rec.settle("declined")
    assert replay_or_conflict(rec, "key-1", FP, 1.0).outcome == "declined"


# --- retries -------------------------------------------------------------------------------------
def test_retry_defaults_follow_stripe_python():
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base, policy.cap, policy.jitter, policy.min_delay) == (
        3,
        0.5,
        5.0,
        True,
        0.5,
    )


def test_retry_delays_with_the_smallest_jitter():
    policy = RetryPolicy()
    assert [policy.delay(n, 0.0) for n in range(1, 6)] == [0.5, 0.5, 1.0, 2.0, 2.5]


def test_retry_delays_with_the_largest_jitter():
    policy = RetryPolicy()
    u = 0.999999
    factor = 0.5 + 0.5 * u
    expected = [0.5, 1.0 * factor, 2.0 * factor, 4.0 * factor, 5.0 * factor]
    assert [policy.delay(n, u) for n in range(1, 6)] == pytest.approx(expected, abs=1e-12)
    assert policy.delay(5, u) == pytest.approx(4.9999975)


def test_retry_delays_without_jitter_and_far_attempts():
    policy = RetryPolicy(jitter=False)
    assert [policy.delay(n, 0.7) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert RetryPolicy().delay(10_000, 0.0) == 2.5
    assert RetryPolicy(base=0.1, min_delay=0.0).delay(1, 0.0) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("attempt", "u", "fragment"),
    [
        (0, 0.0, "attempt must be at least 1, got 0"),
        (1, 1.0, r"u must be in \[0, 1\), got 1.0"),
        (1, -0.1, "got -0.1"),
    ],
)
def test_retry_delay_rejects_bad_arguments(attempt, u, fragment):
    with pytest.raises(InvalidValue, match=fragment):
        RetryPolicy().delay(attempt, u)


@pytest.mark.parametrize(
    ("attempt", "outcome", "expected"),
    [
        (1, "failed", True),
        (2, "timeout", True),
        (3, "failed", False),
        (3, "timeout", False),
        (1, "declined", False),
        (1, "captured", False),
    ],
)
def test_should_retry(attempt, outcome, expected):
    assert RetryPolicy().should_retry(attempt, outcome) is expected


def test_retry_policy_rejects_bad_settings():
    with pytest.raises(InvalidValue, match="max_attempts must be at least 1, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(InvalidValue, match="need 0 < base <= cap"):
        RetryPolicy(base=6.0)
    with pytest.raises(InvalidValue, match="min_delay -1"):
        RetryPolicy(min_delay=-1)
    assert RetryPolicy(max_attempts=1).should_retry(1, "failed") is False
