"""Secrets stay secret: passwords and tokens never in logs, reprs, errors or reports; constant-time
comparison; lockout after failed logins; session expiry; session tokens and salts from ``secrets``.
"""

from __future__ import annotations

import ast
import hmac
import inspect
import logging
import re
import secrets
from pathlib import Path

import pytest

import sim
import sim.engine.runner as runner
from sim.domain import users
from sim.domain.errors import (
    AuthenticationFailed,
    DomainError,
    SessionInvalid,
    WeakPassword,
)
from sim.domain.events import AccountLockedOut, DomainEvent, LoginFailed
from sim.domain.users import LoginPolicy, PasswordHasher, Session
from sim.engine.world import build_world, password_for
from sim.scenario import apply_overrides, parse_scenario
from sim.services.handlers import accounts, fulfilment, shopping
from tests.engine._tiny import smoke_data
from tests.security.conftest import CARD, PASSWORD, make_shop

ENGINE_ADMIN_PASSWORD = "Sim-operator-9f2k-2026"
SIMULATED_PASSWORD = re.compile(r"pw-[0-9a-f]{16}-7")
HASH = re.compile(r"pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]+")
REAL_TOKEN_URLSAFE = secrets.token_urlsafe
REAL_TOKEN_BYTES = secrets.token_bytes


def _leaks(text: str, secrets_: list[str]) -> list[str]:
    found = [s for s in secrets_ if s in text]
    found += SIMULATED_PASSWORD.findall(text) + HASH.findall(text)
    return found


def _every_aggregate(uow) -> list[object]:
    items: list[object] = []
    for name, part in vars(uow).items():
        if hasattr(part, "values") and callable(part.values) and not name.startswith("_"):
            items.extend(part.values())
        elif hasattr(part, "_entries"):
            items.extend(part)
    return items


# --- passwords never in logs, reprs, errors or reports ------------------------------------------


def test_the_use_cases_log_no_password_and_no_aggregate_shows_one(caplog):
    caplog.set_level(logging.DEBUG)
    shop = make_shop()
    uow, policies = shop.uow, shop.policies
    published: list[DomainEvent] = []
    uow.bus.subscribe(DomainEvent, published.append)
    tokens = [
        accounts.login(
            uow, "customer@shop.example", PASSWORD, 10.0, hasher=policies.hasher,
            policy=policies.login,
        )
    ]  # fmt: skip
    errors: list[DomainError] = []
    for attempt in ("Wrong-" + PASSWORD, PASSWORD + "x", PASSWORD.upper()):
        with pytest.raises(AuthenticationFailed) as failed:
            accounts.login(
                uow, "other@shop.example", attempt, 11.0, hasher=policies.hasher,
                policy=policies.login,
            )  # fmt: skip
        errors.append(failed.value)
    with pytest.raises(WeakPassword) as weak:
        accounts.register(uow, "weak@shop.example", "weakling", 12.0, hasher=policies.hasher)
    errors.append(weak.value)
    with pytest.raises(SessionInvalid) as stale:
        accounts.authenticate(uow, tokens[0], 10.0 + 10**6, policy=policies.login)
    errors.append(stale.value)
    # the rest of the use cases, so their logs and events are in too
    fulfilment.cancel_order(uow, shop.customer, shop.pending, 13.0, "no")
    fulfilment.request_return(uow, shop.customer, shop.delivered, {shop.shop_sku: 1}, 14.0)
    fulfilment.receive_return(uow, shop.admin, shop.delivered, 15.0)
    fulfilment.refund_return(uow, shop.admin, shop.delivered, 16.0)
    shopping.add_to_cart(uow, shop.other, shop.shop_sku, 1, 17.0)
    order = shopping.checkout(uow, shop.other, 17.0, policies=policies)
    shopping.begin_payment(
        uow, order, CARD, gateway="gw", idempotency_key="kk", now=18.0, policies=policies
    )
    accounts.change_role(uow, shop.admin, shop.other, "merchant", 19.0)

    watched = [PASSWORD, "Wrong-" + PASSWORD, PASSWORD + "x", PASSWORD.upper(), "weakling"]
    watched += tokens
    aggregates = _every_aggregate(uow)
    assert len(aggregates) > 30
    hashes = [u.password_hash for u in uow.users.values()]
    texts = {
        "logs": caplog.text + "\n".join(r.getMessage() for r in caplog.records),
        "reprs": "\n".join(repr(a) for a in aggregates),
        "events": "\n".join(repr(e) for e in published),
        "errors": "\n".join(f"{e!r} {e}" for e in errors),
    }
    for where, text in texts.items():
        assert _leaks(text, watched + hashes) == [], where
    assert "pbkdf2_sha256" not in texts["reprs"]
    session = Session.open(shop.customer, 0.0, 60.0)
    assert session.token not in repr(session) and session.token[:6] in repr(session)


def test_a_simulated_run_and_its_report_folder_hold_no_password(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    worlds = []

    def build(env, scenario, streams):
        worlds.append(build_world(env, scenario, streams))
        return worlds[-1]

    monkeypatch.setattr(runner, "build_world", build)
    scenario = parse_scenario(
        apply_overrides(smoke_data(), {"horizon": "2m", "behavior.profile": "tpcw-ordering"})
    )
    result = runner.run(scenario, 3)
    (world,) = worlds
    tokens = [s.token for s in world.uow.sessions.values()]
    assert tokens, "returning shoppers logged in"
    passwords = [password_for(email) for email in world.population_emails[:50]]
    assert all(SIMULATED_PASSWORD.fullmatch(p) for p in passwords)

    from sim.reporting.report import write_run_report

    write_run_report([result], tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".json", ".csv", ".html"}
    watched = [ENGINE_ADMIN_PASSWORD, *tokens]
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert _leaks(text, watched) == [], path.name
    assert _leaks(caplog.text, watched) == []
    reprs = "\n".join(repr(a) for a in _every_aggregate(world.uow))
    assert _leaks(reprs, watched) == []
    assert _leaks(repr(result.audit) + repr(result.kpis), watched) == []


def test_no_module_of_the_package_logs_or_prints_a_password():
    """A static guard: no logging or print call passes anything named like a secret."""
    package = Path(sim.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in {"debug", "info", "warning", "error", "exception", "critical", "print"}:
                continue
            for arg in ast.walk(node):
                if isinstance(arg, ast.Name) and re.search(r"password|token|secret", arg.id):
                    offenders.append(f"{path.name}:{node.lineno}: {arg.id}")
    assert offenders == []


# --- constant-time comparison ------------------------------------------------------------------


def test_password_checks_compare_in_constant_time(monkeypatch):
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(hmac, "compare_digest", _Spy(hmac.compare_digest, calls))
    shop = make_shop()
    policies = shop.policies
    accounts.login(
        shop.uow, "customer@shop.example", PASSWORD, 1.0, hasher=policies.hasher,
        policy=policies.login,
    )  # fmt: skip
    with pytest.raises(AuthenticationFailed):
        accounts.login(
            shop.uow, "customer@shop.example", "Wrong-pass-123", 2.0, hasher=policies.hasher,
            policy=policies.login,
        )  # fmt: skip
    assert calls == [(32, 32), (32, 32)]  # both checks, right and wrong, through compare_digest


class _Spy:
    """Count the calls of ``hmac.compare_digest`` and still compare for real."""

    def __init__(self, real, calls):
        self.real, self.calls = real, calls

    def __call__(self, a, b):
        self.calls.append((len(a), len(b)))
        return self.real(a, b)


def test_no_secret_is_compared_with_double_equals():
    """Static: in users.py and accounts.py no == / != touches a hash, digest, password or token."""
    secret = re.compile(r"password|digest|hash|token|expected|actual")
    offenders = []
    for module in (users, accounts):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
            ):
                sides = [node.left, *node.comparators]
                if any(isinstance(side, ast.Constant) for side in sides):
                    continue  # a secret's length or shape against a constant is no leak
                names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
                names += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
                if any(secret.search(n) for n in names):
                    offenders.append(f"{module.__name__}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_an_unknown_email_costs_the_same_hashing_as_a_wrong_password():
    shop = make_shop()
    hashed: list[str] = []

    class Counting(PasswordHasher):
        def hash(self, password: str) -> str:
            hashed.append("hash")
            return super().hash(password)

        def verify(self, password: str, encoded: str) -> bool:
            hashed.append("verify")
            return super().verify(password, encoded)

    hasher = Counting(iterations=1)
    for email in ("nobody@shop.example", "customer@shop.example"):
        with pytest.raises(AuthenticationFailed) as failed:
            accounts.login(
                shop.uow, email, "Wrong-pass-1", 1.0, hasher=hasher, policy=LoginPolicy()
            )
        assert str(failed.value) == accounts.LOGIN_FAILED  # no account enumeration
    assert hashed == ["hash", "verify"]  # one key derivation each
    # a failure that locks, then the right password while locked: one derivation each, and
    # the same answer as for an address without an account
    locking = LoginPolicy(max_failures=2, lockout_seconds=60.0)
    for password in ("Wrong-pass-1", PASSWORD):
        with pytest.raises(AuthenticationFailed) as failed:
            accounts.login(
                shop.uow, "customer@shop.example", password, 2.0, hasher=hasher, policy=locking
            )
        assert str(failed.value) == accounts.LOGIN_FAILED
    assert shop.uow.users.find_readonly(shop.customer).is_locked(2.0)
    assert hashed == ["hash", "verify", "verify", "hash"]


# --- lockout -------------------------------------------------------------------------------------


def test_failed_logins_lock_the_account_then_it_reopens():
    shop = make_shop()
    uow, hasher = shop.uow, shop.policies.hasher
    policy = LoginPolicy(max_failures=3, lockout_seconds=600.0)
    events: list[DomainEvent] = []
    uow.bus.subscribe(DomainEvent, events.append)

    def login(password: str, now: float) -> str:
        return accounts.login(
            uow, "customer@shop.example", password, now, hasher=hasher, policy=policy
        )

    for n in range(3):
        with pytest.raises(AuthenticationFailed):
            login("Wrong-pass-123", 10.0 + n)
    user = uow.users.find_readonly(shop.customer)
    assert (user.failed_logins, user.locked_until) == (3, 612.0)
    with pytest.raises(AuthenticationFailed) as locked:
        login(PASSWORD, 100.0)  # even the right password, while locked
    # the answer of an unknown address: a lockout would tell that the account exists
    with pytest.raises(AuthenticationFailed) as unknown:
        accounts.login(uow, "nobody@shop.example", PASSWORD, 100.0, hasher=hasher, policy=policy)
    assert str(locked.value) == str(unknown.value) == accounts.LOGIN_FAILED
    assert shop.customer not in str(locked.value)
    assert [type(e) for e in events if isinstance(e, (LoginFailed, AccountLockedOut))] == [
        LoginFailed, LoginFailed, LoginFailed, AccountLockedOut,
    ]  # fmt: skip
    assert login(PASSWORD, 612.0)  # the lockout is over
    user = uow.users.find_readonly(shop.customer)
    assert (user.failed_logins, user.locked_until) == (0, None)
    with pytest.raises(AuthenticationFailed):
        login("Wrong-pass-123", 700.0)
    assert uow.users.find_readonly(shop.customer).failed_logins == 1  # no instant re-lock


# --- sessions ------------------------------------------------------------------------------------


def test_sessions_expire_when_idle_slide_when_used_and_end_at_logout():
    shop = make_shop()
    uow, hasher = shop.uow, shop.policies.hasher
    policy = LoginPolicy(session_ttl=1800.0)
    token = accounts.login(
        uow, "customer@shop.example", PASSWORD, 0.0, hasher=hasher, policy=policy
    )
    assert accounts.authenticate(uow, token, 1799.0, policy=policy) == shop.customer
    assert accounts.authenticate(uow, token, 3598.0, policy=policy) == shop.customer  # slid
    with pytest.raises(SessionInvalid) as expired:
        accounts.authenticate(uow, token, 5398.0, policy=policy)
    assert str(expired.value) == f"session {token[:6]}... is expired at t=5398.0s"
    assert token not in uow.sessions  # an expired session is removed
    with pytest.raises(SessionInvalid, match=r"unknown session"):
        accounts.authenticate(uow, token, 5399.0, policy=policy)

    other = accounts.login(uow, "customer@shop.example", PASSWORD, 6000.0, hasher=hasher,
                           policy=policy)  # fmt: skip
    accounts.logout(uow, other, 6001.0)
    with pytest.raises(SessionInvalid) as ended:
        accounts.authenticate(uow, other, 6002.0, policy=policy)
    assert other not in str(ended.value) and other[:6] in str(ended.value)
    assert accounts.purge_sessions(uow, 10**6) == 0


def test_stale_sessions_are_purged():
    shop = make_shop()
    policy = LoginPolicy(session_ttl=60.0)
    for n in range(5):
        accounts.login(shop.uow, "customer@shop.example", PASSWORD, float(n),
                       hasher=shop.policies.hasher, policy=policy)  # fmt: skip
    assert accounts.purge_sessions(shop.uow, 62.0) == 3
    assert len(shop.uow.sessions) == 2


# --- randomness from secrets ----------------------------------------------------------------------


def test_session_tokens_and_salts_come_from_secrets_by_default():
    """The defaults are bound when the functions are defined: they are secrets' own functions."""
    assert inspect.signature(accounts.login).parameters["token_factory"].default is (
        REAL_TOKEN_URLSAFE
    )
    assert inspect.signature(Session.open).parameters["token_factory"].default is (
        REAL_TOKEN_URLSAFE
    )
    assert PasswordHasher().salt_factory is REAL_TOKEN_BYTES
    assert PasswordHasher.fast().salt_factory is REAL_TOKEN_BYTES
    for module in (users, accounts):
        tree = ast.parse(inspect.getsource(module))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        assert "random" not in imported and "secrets" in imported


def test_the_token_factory_is_what_opens_a_session(monkeypatch):
    asked: list[int] = []

    def fake_token_urlsafe(nbytes: int) -> str:
        asked.append(nbytes)
        return f"tok-{len(asked):040d}"

    monkeypatch.setattr(secrets, "token_urlsafe", fake_token_urlsafe)
    shop = make_shop()
    token = accounts.login(
        shop.uow, "customer@shop.example", PASSWORD, 1.0, hasher=shop.policies.hasher,
        policy=shop.policies.login, token_factory=secrets.token_urlsafe,
    )  # fmt: skip
    assert token == "tok-" + "1".zfill(40)
    assert asked == [users.TOKEN_BYTES] == [32]
    monkeypatch.undo()
    real = {
        accounts.login(shop.uow, "customer@shop.example", PASSWORD, 2.0 + n,
                       hasher=shop.policies.hasher, policy=shop.policies.login)
        for n in range(200)
    }  # fmt: skip
    assert len(real) == 200  # never repeated
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in real)  # 32 random bytes


def test_salts_differ_per_password_hash():
    hasher = PasswordHasher(iterations=1)
    hashes = {hasher.hash(PASSWORD) for _ in range(100)}
    assert len(hashes) == 100
    assert all(hasher.verify(PASSWORD, h) for h in hashes)
