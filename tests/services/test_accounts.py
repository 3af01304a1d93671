from __future__ import annotations

import itertools

import pytest

from sim.domain.errors import (
    AuthenticationFailed,
    DuplicateEmail,
    InvalidEmail,
    NotFound,
    PermissionDenied,
    SessionInvalid,
    WeakPassword,
)
from sim.domain.events import (
    AccountLockedOut,
    DomainEvent,
    LoginFailed,
    UserLoggedIn,
    UserLoggedOut,
    UserRegistered,
    UserRoleChanged,
)
from sim.domain.users import (
    ActivityKind,
    ActivityLog,
    EmailClaim,
    LoginPolicy,
    PasswordHasher,
    Role,
    User,
)
from sim.services.bus import MessageBus
from sim.services.handlers import accounts
from sim.services.store import UnitOfWork
from tests.services.conftest import new_uow

PASSWORD = "Tr0ub4dor-and-3"
HASHER = PasswordHasher.fast()
POLICY = LoginPolicy(max_failures=3, lockout_seconds=300.0, session_ttl=600.0)


def make_uow() -> tuple[UnitOfWork, list[DomainEvent]]:
    bus = MessageBus()
    seen: list[DomainEvent] = []
    bus.subscribe(DomainEvent, seen.append)
    return new_uow(bus), seen


def tokens():
    counter = itertools.count(1)
    return lambda n: f"token{next(counter):02d}" + "s" * 38


def register(uow: UnitOfWork, email: str = "ann@example.com", role: Role = Role.CUSTOMER) -> str:
    return accounts.register(uow, email, PASSWORD, 0.0, role=role, hasher=HASHER)


def login(uow: UnitOfWork, password: str = PASSWORD, now: float = 10.0, **kw) -> str:
    return accounts.login(uow, "ann@example.com", password, now, hasher=HASHER, policy=POLICY, **kw)


# --- register ----------------------------------------------------------------------------
def test_register_creates_user_claim_and_activity_log():
    uow, seen = make_uow()
    user_id = accounts.register(uow, " Ann@Example.com ", PASSWORD, 3.0, hasher=HASHER)
    assert user_id == "user-000001"
    user = uow.users.get(user_id)
    assert (user.email, user.role, user.created_at) == ("ann@example.com", Role.CUSTOMER, 3.0)
    assert uow.emails.get("ann@example.com") == EmailClaim("ann@example.com", user_id)
    assert uow.activity.get(user_id) == ActivityLog(user_id)
    assert seen == [UserRegistered(at=3.0, user_id=user_id, role="customer")]
    merchant = accounts.register(
        uow, "bob@example.com", PASSWORD, 4.0, role="merchant", hasher=HASHER
    )
    assert merchant == "user-000002"
    assert uow.users.get(merchant).role is Role.MERCHANT


def test_register_rejects_duplicate_email_case_insensitively():
    uow, seen = make_uow()
    register(uow)
    with pytest.raises(DuplicateEmail, match=r"e-mail 'ann@example\.com' is already registered"):
        accounts.register(uow, "ANN@example.com ", "0ther-passw0rd", 1.0, hasher=HASHER)
    assert len(uow.users) == 1 and len(uow.emails) == 1 and len(uow.activity) == 1
    assert len(seen) == 1


def test_register_rejections_leave_no_trace_and_no_id_gap():
    uow, seen = make_uow()
    with pytest.raises(InvalidEmail):
        accounts.register(uow, "ann-at-example.com", PASSWORD, 0.0, hasher=HASHER)
    with pytest.raises(WeakPassword, match="a digit"):
        accounts.register(uow, "ann@example.com", "no digits here", 0.0, hasher=HASHER)
    assert (len(uow.users), len(uow.emails), len(uow.activity), seen) == (0, 0, 0, [])
    assert register(uow) == "user-000001"


def test_register_many_registers_a_batch_in_one_transaction():
    uow, seen = make_uow()
    commits = []
    original = uow.commit
    uow.commit = lambda: (commits.append(1), original())[1]  # type: ignore[method-assign]
    ids = accounts.register_many(
        uow,
        [(" Ann@Example.com ", PASSWORD), ("bob@example.com", "An0ther-passw0rd")],
        5.0,
        hasher=HASHER,
        keep_recent=3,
    )
    assert ids == ["user-000001", "user-000002"] and commits == [1]
    assert uow.users.get(ids[0]).email == "ann@example.com"
    assert uow.emails.get("bob@example.com") == EmailClaim("bob@example.com", ids[1])
    assert uow.activity.get(ids[1]) == ActivityLog(ids[1], keep=3)
    assert seen == [
        UserRegistered(at=5.0, user_id=ids[0], role="customer"),
        UserRegistered(at=5.0, user_id=ids[1], role="customer"),
    ]
    assert accounts.register_many(uow, [], 6.0, hasher=HASHER) == []


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        ([("cy@example.com", PASSWORD), ("CY@example.com", PASSWORD)], DuplicateEmail, "cy@"),
        ([("cy@example.com", PASSWORD), ("ann@example.com", PASSWORD)], DuplicateEmail, "ann@"),
        ([("cy@example.com", PASSWORD), ("dee@example.com", "no digits")], WeakPassword, "digit"),
        ([("cy@example.com", PASSWORD), ("dee-at-example.com", PASSWORD)], InvalidEmail, "dee-"),
    ],
)
def test_register_many_is_all_or_none(batch, error, message):
    uow, seen = make_uow()
    register(uow)
    with pytest.raises(error, match=message):
        accounts.register_many(uow, batch, 1.0, hasher=HASHER)
    assert (len(uow.users), len(uow.emails), len(uow.activity), len(seen)) == (1, 1, 1, 1)
    assert "cy@example.com" not in uow.emails


def test_register_does_not_scan_users(monkeypatch):
    uow, _ = make_uow()
    register(uow)

    def no_scan():
        raise AssertionError("register must use the e-mail index, not scan the users")

    monkeypatch.setattr(uow.users, "values", no_scan)
    with pytest.raises(DuplicateEmail):
        register(uow)
    assert register(uow, "bob@example.com") == "user-000002"


# --- login -------------------------------------------------------------------------------
def test_login_opens_a_session():
    uow, seen = make_uow()
    user_id = register(uow)
    seen.clear()
    token = login(uow, now=10.0, token_factory=tokens())
    assert token == "token01" + "s" * 38
    session = uow.sessions.get(token)
    assert (session.user_id, session.created_at, session.expires_at) == (user_id, 10.0, 610.0)
    assert seen == [UserLoggedIn(at=10.0, user_id=user_id)]


def test_login_with_default_token_factory_gives_distinct_tokens():
    uow, _ = make_uow()
    register(uow)
    first, second = login(uow), login(uow)
    assert first != second and len(first) == 43
    assert len(uow.sessions) == 2


def test_unknown_email_and_wrong_password_fail_alike():
    uow, _ = make_uow()
    register(uow)
    with pytest.raises(AuthenticationFailed) as unknown:
        accounts.login(uow, "zed@example.com", PASSWORD, 1.0, hasher=HASHER, policy=POLICY)
    with pytest.raises(AuthenticationFailed) as invalid:
        accounts.login(uow, "not an e-mail", PASSWORD, 1.0, hasher=HASHER, policy=POLICY)
    with pytest.raises(AuthenticationFailed) as wrong:
        login(uow, "Wr0ng-password")
    assert str(unknown.value) == str(invalid.value) == str(wrong.value)
    assert str(wrong.value) == "invalid e-mail or password"


def test_unknown_email_costs_a_hash(monkeypatch):
    uow, _ = make_uow()
    calls = []
    monkeypatch.setattr(PasswordHasher, "hash", lambda self, pw: calls.append(pw) or "x")
    with pytest.raises(AuthenticationFailed):
        accounts.login(uow, "zed@example.com", "whatever", 1.0, hasher=HASHER, policy=POLICY)
    assert calls == ["whatever"]


def test_wrong_password_commits_the_failure_before_raising():
    uow, seen = make_uow()
    user_id = register(uow)
    seen.clear()
    with pytest.raises(AuthenticationFailed):
        login(uow, "Wr0ng-password", now=5.0)
    assert uow.users.get(user_id).failed_logins == 1
    assert seen == [LoginFailed(at=5.0, user_id=user_id, failures=1)]
    assert len(uow.sessions) == 0


def test_lockout_after_max_failures_then_unlock():
    uow, seen = make_uow()
    user_id = register(uow)
    seen.clear()
    for t in (1.0, 2.0, 3.0):
        with pytest.raises(AuthenticationFailed):
            login(uow, "Wr0ng-password", now=t)
    user = uow.users.get(user_id)
    assert (user.failed_logins, user.locked_until) == (3, 303.0)
    assert seen[-1] == AccountLockedOut(at=3.0, user_id=user_id, until=303.0)
    # the right password while locked: answered as any failed login, nothing counted
    with pytest.raises(AuthenticationFailed) as locked:
        login(uow, now=302.0)
    assert str(locked.value) == accounts.LOGIN_FAILED
    assert type(locked.value) is AuthenticationFailed
    assert uow.users.get(user_id).failed_logins == 3
    assert len(uow.sessions) == 0
    token = login(uow, now=303.0)
    assert uow.sessions.get(token).user_id == user_id
    user = uow.users.get(user_id)  # a rolled-back transaction restored a copy
    assert (user.failed_logins, user.locked_until) == (0, None)


# --- sessions ----------------------------------------------------------------------------
def test_authenticate_returns_user_and_slides_expiry():
    uow, _ = make_uow()
    user_id = register(uow)
    token = login(uow, now=0.0)
    assert accounts.authenticate(uow, token, 500.0, policy=POLICY) == user_id
    assert uow.sessions.get(token).expires_at == 1100.0
    assert accounts.authenticate(uow, token, 1099.0, policy=POLICY) == user_id
    assert uow.sessions.get(token).expires_at == 1699.0


def test_authenticate_expired_session_is_removed():
    uow, _ = make_uow()
    register(uow)
    token = login(uow, now=0.0)
    with pytest.raises(SessionInvalid) as err:
        accounts.authenticate(uow, token, 600.0, policy=POLICY)
    assert str(err.value) == f"session {token[:6]}... is expired at t=600.0s"
    assert token not in str(err.value)
    assert token not in uow.sessions
    with pytest.raises(SessionInvalid, match="unknown session"):
        accounts.authenticate(uow, token, 601.0, policy=POLICY)


def test_authenticate_unknown_token_never_shows_the_token():
    uow, _ = make_uow()
    secret = "Q" * 43
    with pytest.raises(SessionInvalid) as err:
        accounts.authenticate(uow, secret, 1.0, policy=POLICY)
    assert str(err.value) == "unknown session QQQQQQ..."


def test_logout_ends_and_forgets_the_session():
    uow, seen = make_uow()
    user_id = register(uow)
    token = login(uow, now=0.0)
    seen.clear()
    accounts.logout(uow, token, 20.0)
    assert seen == [UserLoggedOut(at=20.0, user_id=user_id)]
    assert token not in uow.sessions
    with pytest.raises(SessionInvalid, match="unknown session"):
        accounts.authenticate(uow, token, 21.0, policy=POLICY)
    with pytest.raises(SessionInvalid, match="unknown session"):
        accounts.logout(uow, token, 22.0)


def test_purge_sessions_removes_expired_only():
    uow, _ = make_uow()
    register(uow)
    factory = tokens()
    old = login(uow, now=0.0, token_factory=factory)
    fresh = login(uow, now=100.0, token_factory=factory)
    assert accounts.purge_sessions(uow, 650.0) == 1
    assert old not in uow.sessions and fresh in uow.sessions
    assert accounts.purge_sessions(uow, 650.0) == 0


# --- activity and roles ------------------------------------------------------------------
def test_record_activity():
    uow, _ = make_uow()
    user_id = register(uow)
    accounts.record_activity(uow, user_id, ActivityKind.VIEWED, "SKU-1", 5.0)
    accounts.record_activity(uow, user_id, "purchased", "order-000001", 9.0)
    log = uow.activity.get(user_id)
    assert (log.count(ActivityKind.VIEWED), log.count(ActivityKind.PURCHASED)) == (1, 1)
    assert (log.first_seen, log.last_seen) == (5.0, 9.0)


def test_record_activity_creates_a_missing_log_and_rejects_unknown_users():
    uow, _ = make_uow()
    with uow:
        uow.users.add(User.register("u-9", "z@example.com", PASSWORD, Role.CUSTOMER, 0.0, HASHER))
        uow.commit()
    accounts.record_activity(uow, "u-9", ActivityKind.SEARCHED, "socks", 1.0)
    assert uow.activity.get("u-9").count(ActivityKind.SEARCHED) == 1
    with pytest.raises(NotFound, match="user 'ghost' not found"):
        accounts.record_activity(uow, "ghost", ActivityKind.VIEWED, "SKU-1", 1.0)
    assert "ghost" not in uow.activity


def test_record_activity_rolls_back_a_bad_kind():
    uow, _ = make_uow()
    user_id = register(uow)
    with pytest.raises(ValueError):
        accounts.record_activity(uow, user_id, "teleported", "x", 1.0)
    assert uow.activity.get(user_id).last_seen is None


def test_change_role_by_admin():
    uow, seen = make_uow()
    admin = register(uow, "root@example.com", Role.ADMIN)
    user_id = register(uow)
    seen.clear()
    accounts.change_role(uow, admin, user_id, Role.MERCHANT, 30.0)
    assert uow.users.get(user_id).role is Role.MERCHANT
    assert seen == [UserRoleChanged(at=30.0, user_id=user_id, old="customer", new="merchant")]


def test_change_role_needs_manage_users_and_another_user():
    uow, _ = make_uow()
    admin = register(uow, "root@example.com", Role.ADMIN)
    merchant = register(uow, "shop@example.com", Role.MERCHANT)
    user_id = register(uow)
    with pytest.raises(
        PermissionDenied, match=r"user-000002 \(merchant\) lacks permission manage_u"
    ):
        accounts.change_role(uow, merchant, user_id, Role.ADMIN, 1.0)
    with pytest.raises(PermissionDenied, match="user-000001 may not change their own role"):
        accounts.change_role(uow, admin, admin, Role.CUSTOMER, 1.0)
    with pytest.raises(NotFound, match="user 'nobody' not found"):
        accounts.change_role(uow, admin, "nobody", Role.ADMIN, 1.0)
    assert [u.role for u in uow.users.values()] == [Role.ADMIN, Role.MERCHANT, Role.CUSTOMER]
