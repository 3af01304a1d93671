from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import secrets
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.domain.errors import (
    AccountLocked,
    InvalidEmail,
    InvalidValue,
    PermissionDenied,
    SessionInvalid,
    WeakPassword,
)
from sim.domain.events import (
    AccountLockedOut,
    LoginFailed,
    UserLoggedIn,
    UserLoggedOut,
    UserRegistered,
    UserRoleChanged,
)
from sim.domain.users import (
    PERMISSIONS,
    RECENT_ACTIVITY_LIMIT,
    ActivityKind,
    ActivityLog,
    EmailClaim,
    LoginPolicy,
    PasswordHasher,
    Permission,
    Role,
    Session,
    User,
    as_role,
    check_password_strength,
    normalize_email,
    require,
    require_owner_or_admin,
    summarize,
    token_hint,
)

PASSWORD = "Tr0ub4dor-and-3"
HASHER = PasswordHasher.fast()


def counting_salts():
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def make_user(role: Role = Role.CUSTOMER, user_id: str = "user-1") -> User:
    return User.register(user_id, "ann@example.com", PASSWORD, role, 0.0, HASHER)


# --- roles and permissions ---------------------------------------------------------------
def test_permission_table():
    assert PERMISSIONS[Role.CUSTOMER] == {Permission.BROWSE, Permission.PURCHASE}
    assert PERMISSIONS[Role.MERCHANT] == {
        Permission.BROWSE,
        Permission.PURCHASE,
        Permission.MANAGE_OWN_PRODUCTS,
        Permission.MANAGE_INVENTORY,
        Permission.MANAGE_ORDERS,
    }
    assert PERMISSIONS[Role.ADMIN] == set(Permission)
    with pytest.raises(TypeError):
        PERMISSIONS[Role.CUSTOMER] = frozenset()  # type: ignore[index]


def test_require_passes_for_granted_permissions():
    require(make_user(Role.CUSTOMER), Permission.PURCHASE)
    require(make_user(Role.MERCHANT), Permission.MANAGE_INVENTORY)
    require(make_user(Role.ADMIN), Permission.MANAGE_USERS)


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        (Role.CUSTOMER, Permission.MANAGE_OWN_PRODUCTS),
        (Role.CUSTOMER, Permission.MANAGE_ORDERS),
        (Role.MERCHANT, Permission.MANAGE_ALL_PRODUCTS),
        (Role.MERCHANT, Permission.MANAGE_COUPONS),
        (Role.MERCHANT, Permission.VIEW_ALL_ORDERS),
        (Role.MERCHANT, Permission.MANAGE_USERS),
    ],
)
def test_require_denies_and_names_user_role_and_permission(role, permission):
    with pytest.raises(PermissionDenied) as err:
        require(make_user(role, "user-9"), permission)
    assert str(err.value) == f"user user-9 ({role.value}) lacks permission {permission.value}"


def test_owner_or_admin():
    merchant = make_user(Role.MERCHANT, "user-2")
    admin = make_user(Role.ADMIN, "user-3")
    require_owner_or_admin(merchant, "user-2", Permission.MANAGE_OWN_PRODUCTS)
    require_owner_or_admin(admin, "user-2", Permission.MANAGE_OWN_PRODUCTS)
    with pytest.raises(
        PermissionDenied, match="only on their own resources, not on those of user-7"
    ):
        require_owner_or_admin(merchant, "user-7", Permission.MANAGE_OWN_PRODUCTS)
    with pytest.raises(PermissionDenied, match=r"user-1 \(customer\) lacks permission manage_own"):
        require_owner_or_admin(make_user(), "user-1", Permission.MANAGE_OWN_PRODUCTS)


def test_as_role():
    assert as_role("merchant") is Role.MERCHANT
    assert as_role(Role.ADMIN) is Role.ADMIN
    with pytest.raises(InvalidValue, match="unknown role 'root'; expected one of customer, merch"):
        as_role("root")


# --- e-mail and password rules -----------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann@Example.COM ", "ann@example.com"),
        ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk"),
        ("o'neil@shop-1.io", "o'neil@shop-1.io"),
    ],
)
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ann",
        "ann@example",
        "@example.com",
        "ann@.com",
        "ann@example.",
        "ann@@example.com",
        "ann example@example.com",
        ".ann@example.com",
        "ann..b@example.com",
        "ann@-example.com",
        "ann@example.c",
        "ann@example.1com",
        "a" * 250 + "@example.com",
    ],
)
def test_normalize_email_rejects(raw):
    with pytest.raises(InvalidEmail, match=r"not an e-mail address of the form local@domain\.tld"):
        normalize_email(raw)


def test_normalize_email_rejects_non_text():
    with pytest.raises(InvalidEmail, match="must be text, got None"):
        normalize_email(None)  # type: ignore[arg-type]


@given(st.from_regex(r"[a-z0-9]{1,10}@[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True))
@settings(max_examples=200)
def test_normalize_email_is_idempotent_and_case_insensitive(email):
    assert normalize_email(email) == email
    assert normalize_email(f" {email.upper()}\t") == email


def test_strong_password_passes():
    check_password_strength(PASSWORD, "ann@example.com")
    check_password_strength("ab34567890", "ab@example.com")  # short local parts are not checked


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("abc123", "at least 10 characters (got 6)"),
        ("abcdefghijkl", "a digit"),
        ("123456789012", "a letter"),
        ("aaaaaaaaaaaa", "a digit; more than one distinct character"),
        ("my-ann123456", "no part of the e-mail address"),
        ("my-ANN123456", "no part of the e-mail address"),
        ("", "at least 10 characters (got 0); a letter; a digit"),
    ],
)
def test_weak_passwords(password, fragment):
    with pytest.raises(WeakPassword) as err:
        check_password_strength(password, " Ann@Example.com")
    message = str(err.value)
    assert message.startswith("password too weak: needs ")
    assert fragment in message
    if password:
        assert password not in message


def test_weak_password_lists_every_problem():
    with pytest.raises(WeakPassword) as err:
        check_password_strength("1111", "x@example.com")
    assert str(err.value) == (
        "password too weak: needs at least 10 characters (got 4); a letter; "
        "more than one distinct character"
    )


# --- hashing -----------------------------------------------------------------------------
def test_hash_format_and_round_trip():
    hasher = PasswordHasher(iterations=1_000, salt_factory=lambda n: b"\x01" * n)
    encoded = hasher.hash(PASSWORD)
    algorithm, iterations, salt, digest = encoded.split("$")
    assert (algorithm, iterations, salt) == ("pbkdf2_sha256", "1000", "01" * 16)
    expected = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"\x01" * 16, 1_000)
    assert digest == expected.hex()
    assert hasher.verify(PASSWORD, encoded) is True
    assert hasher.verify(PASSWORD + "x", encoded) is False
    assert PASSWORD not in encoded


def test_defaults_and_fast():
    assert PasswordHasher().iterations == 600_000
    assert PasswordHasher.fast().iterations == 1_000
    assert PasswordHasher.fast(lambda n: b"\x02" * n).hash("x").split("$")[2] == "02" * 16
    assert "salt_factory" not in repr(PasswordHasher())


def test_different_salts_give_different_hashes():
    hasher = PasswordHasher.fast(counting_salts())
    first, second = hasher.hash(PASSWORD), hasher.hash(PASSWORD)
    assert first != second
    assert first.split("$")[3] != second.split("$")[3]
    assert hasher.verify(PASSWORD, first) and hasher.verify(PASSWORD, second)


def test_default_salts_come_from_secrets():
    assert PasswordHasher().salt_factory is secrets.token_bytes
    assert PasswordHasher.fast().salt_factory is secrets.token_bytes
    assert PasswordHasher.fast().hash("x") != PasswordHasher.fast().hash("x")


def test_verify_uses_constant_time_compare(monkeypatch):
    encoded = HASHER.hash(PASSWORD)
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert HASHER.verify(PASSWORD, encoded) is True
    assert HASHER.verify("wrong", encoded) is False
    assert len(calls) == 2
    assert calls[0][1] == bytes.fromhex(encoded.split("$")[3])


def test_verify_uses_the_encoded_iterations():
    old = PasswordHasher(iterations=500).hash(PASSWORD)
    assert HASHER.verify(PASSWORD, old) is True
    assert HASHER.needs_rehash(old) is True
    assert HASHER.needs_rehash(HASHER.hash(PASSWORD)) is False


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "pbkdf2_sha256$1000$abcd",
        "md5$1000$00$00",
        "pbkdf2_sha256$x$00$00",
        "pbkdf2_sha256$0$00$00",
        "pbkdf2_sha256$1000$zz$00",
        "pbkdf2_sha256$1000$$00",
        "pbkdf2_sha256$1000$00$",
        None,
    ],
)
def test_malformed_hashes_never_verify_and_need_rehash(encoded):
    assert HASHER.verify(PASSWORD, encoded) is False
    assert HASHER.needs_rehash(encoded) is True


def test_short_salt_in_hash_needs_rehash():
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", b"\x00" * 8, 1_000).hex()
    encoded = f"pbkdf2_sha256$1000${'00' * 8}${digest}"
    assert HASHER.verify("pw", encoded) is True
    assert HASHER.needs_rehash(encoded) is True


def test_hasher_validation():
    with pytest.raises(InvalidValue, match="iterations must be a positive integer, got 0"):
        PasswordHasher(iterations=0)
    with pytest.raises(InvalidValue, match=r"iterations must be a positive integer, got 1\.5"):
        PasswordHasher(iterations=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="salt factory gave 4 bytes, expected 16"):
        PasswordHasher.fast(lambda n: b"abcd").hash("x")


@given(st.text(max_size=40))
@settings(max_examples=50, deadline=None)
def test_round_trip_property(password):
    encoded = HASHER.hash(password)
    assert HASHER.verify(password, encoded)
    assert not HASHER.verify(password + "!", encoded)


# --- users -------------------------------------------------------------------------------
def test_register():
    user = User.register("user-1", " Ann@Example.com", PASSWORD, "merchant", 5.0, HASHER)
    assert (user.id, user.email, user.role, user.created_at) == (
        "user-1",
        "ann@example.com",
        Role.MERCHANT,
        5.0,
    )
    assert (user.failed_logins, user.locked_until) == (0, None)
    assert user.password_hash.startswith("pbkdf2_sha256$1000$")
    assert HASHER.verify(PASSWORD, user.password_hash)
    assert user.events == [UserRegistered(at=5.0, user_id="user-1", role="merchant")]


def test_register_validates():
    with pytest.raises(InvalidEmail):
        User.register("u", "nope", PASSWORD, Role.CUSTOMER, 0.0, HASHER)
    with pytest.raises(WeakPassword, match="no part of the e-mail"):
        User.register("u", "UB4dor@x.com", PASSWORD, Role.CUSTOMER, 0.0, HASHER)
    with pytest.raises(InvalidValue, match="unknown role 'boss'"):
        User.register("u", "a@x.com", PASSWORD, "boss", 0.0, HASHER)


def test_password_never_in_repr_or_str():
    user = make_user()
    for text in (repr(user), str(user)):
        assert PASSWORD not in text
        assert user.password_hash not in text
        assert "password" not in text
    assert "ann@example.com" in repr(user)


def test_successful_login_resets_failures():
    user = make_user()
    policy = LoginPolicy()
    assert user.verify_login("wrong", HASHER, 1.0, policy) is False
    assert user.failed_logins == 1
    assert user.verify_login(PASSWORD, HASHER, 2.0, policy) is True
    assert user.failed_logins == 0
    assert user.events[1:] == [
        LoginFailed(at=1.0, user_id="user-1", failures=1),
        UserLoggedIn(at=2.0, user_id="user-1"),
    ]


def test_lockout_after_exactly_max_failures_and_unlock_after_lockout_seconds():
    user = make_user()
    user.events.clear()
    policy = LoginPolicy(max_failures=3, lockout_seconds=100.0)
    for t in (1.0, 2.0):
        assert user.verify_login("wrong", HASHER, t, policy) is False
        assert not user.is_locked(t)
        assert user.locked_until is None
    assert user.verify_login("wrong", HASHER, 3.0, policy) is False
    assert user.locked_until == 103.0
    assert user.is_locked(3.0) and user.is_locked(102.9)
    assert not user.is_locked(103.0)
    assert user.events == [
        LoginFailed(at=1.0, user_id="user-1", failures=1),
        LoginFailed(at=2.0, user_id="user-1", failures=2),
        LoginFailed(at=3.0, user_id="user-1", failures=3),
        AccountLockedOut(at=3.0, user_id="user-1", until=103.0),
    ]
    # Even the right password is refused while locked, and nothing changes.
    with pytest.raises(AccountLocked) as err:
        user.verify_login(PASSWORD, HASHER, 102.9, policy)
    assert str(err.value) == "user user-1 is locked after 3 failed logins until t=103.0s"
    assert (user.failed_logins, len(user.events)) == (3, 4)
    # After the lockout the count starts afresh: one failure does not lock again.
    assert user.verify_login("wrong", HASHER, 103.0, policy) is False
    assert (user.failed_logins, user.locked_until) == (1, None)
    assert user.verify_login(PASSWORD, HASHER, 104.0, policy) is True
    assert user.failed_logins == 0


def test_successful_login_upgrades_an_outdated_hash():
    user = User.register("u", "ann@example.com", PASSWORD, Role.CUSTOMER, 0.0, PasswordHasher(500))
    assert user.verify_login(PASSWORD, HASHER, 1.0, LoginPolicy()) is True
    assert user.password_hash.startswith("pbkdf2_sha256$1000$")
    assert HASHER.verify(PASSWORD, user.password_hash)


def test_login_policy_defaults_and_validation():
    policy = LoginPolicy()
    assert (policy.max_failures, policy.lockout_seconds, policy.session_ttl) == (5, 900.0, 1800.0)
    with pytest.raises(InvalidValue, match="max_failures must be at least 1, got 0"):
        LoginPolicy(max_failures=0)
    with pytest.raises(InvalidValue, match="lockout_seconds must be >= 0, got -1"):
        LoginPolicy(lockout_seconds=-1)
    with pytest.raises(InvalidValue, match="session_ttl must be positive, got 0"):
        LoginPolicy(session_ttl=0)


def test_change_role():
    user = make_user()
    user.events.clear()
    user.change_role("admin", 7.0)
    assert user.role is Role.ADMIN
    user.change_role(Role.ADMIN, 8.0)  # the same role: nothing happens
    assert user.events == [UserRoleChanged(at=7.0, user_id="user-1", old="customer", new="admin")]
    with pytest.raises(InvalidValue, match="unknown role"):
        user.change_role("king", 9.0)


def test_user_survives_deepcopy():
    user = make_user()
    clone = copy.deepcopy(user)
    assert clone == user and clone is not user
    clone.verify_login("wrong", HASHER, 1.0, LoginPolicy())
    assert (user.failed_logins, len(user.events)) == (0, 1)


def test_email_claim():
    claim = EmailClaim("ann@example.com", "user-1")
    assert (claim.email, claim.user_id) == ("ann@example.com", "user-1")


# --- sessions ----------------------------------------------------------------------------
def test_session_open_uses_32_random_bytes():
    asked = []

    def factory(n):
        asked.append(n)
        return "T" * 43

    session = Session.open("user-1", 10.0, 60.0, factory)
    assert asked == [32]
    assert (session.token, session.user_id, session.created_at, session.expires_at) == (
        "T" * 43,
        "user-1",
        10.0,
        70.0,
    )
    assert session.ended_at is None
    assert len(Session.open("user-1", 0.0, 1.0).token) == 43
    with pytest.raises(InvalidValue, match="session ttl must be positive, got 0"):
        Session.open("user-1", 0.0, 0)


def test_session_repr_shows_only_a_token_prefix():
    session = Session.open("user-1", 0.0, 60.0, lambda n: "abcdef" + "Z" * 37)
    assert "Z" not in repr(session) and "Z" not in str(session)
    assert "token='abcdef...'" in repr(session)
    assert token_hint("abcdefghij") == "abcdef..."


def test_session_expiry_and_sliding():
    session = Session.open("user-1", 0.0, 60.0, lambda n: "tok-" + "x" * 39)
    assert session.is_valid(59.9) and not session.is_valid(60.0)
    assert session.status(10.0) == "valid"
    session.touch(50.0, 60.0)
    assert session.expires_at == 110.0
    assert session.is_valid(109.0) and not session.is_valid(110.0)
    with pytest.raises(SessionInvalid) as err:
        session.touch(110.0, 60.0)
    assert str(err.value) == "session tok-xx... is expired at t=110.0s"
    assert "x" * 39 not in str(err.value)


def test_session_end():
    session = Session.open("user-1", 0.0, 60.0, lambda n: "tok-" + "x" * 39)
    session.end(5.0)
    assert session.ended_at == 5.0
    assert not session.is_valid(6.0)
    assert session.status(6.0) == "ended at t=5.0s"
    assert session.events == [UserLoggedOut(at=5.0, user_id="user-1")]
    with pytest.raises(SessionInvalid, match=r"session tok-xx\.\.\. is ended at t=5\.0s"):
        session.end(6.0)
    with pytest.raises(SessionInvalid, match="is ended at"):
        session.touch(6.0, 60.0)


def test_session_survives_deepcopy():
    session = Session.open("user-1", 0.0, 60.0)
    clone = copy.deepcopy(session)
    clone.touch(30.0, 60.0)
    assert (session.expires_at, clone.expires_at) == (60.0, 90.0)


# --- activity ----------------------------------------------------------------------------
def test_activity_log_counts_and_times():
    log = ActivityLog("user-1")
    assert (log.first_seen, log.last_seen, log.conversion()) == (None, None, 0.0)
    log.record(ActivityKind.VIEWED, "SKU-1", 10.0)
    log.record("viewed", "SKU-2", 12.0)
    log.record(ActivityKind.SEARCHED, "red shoes", 11.0)
    log.record(ActivityKind.VIEWED, "SKU-3", 5.0)
    log.record(ActivityKind.PURCHASED, "order-1", 20.0)
    assert log.count(ActivityKind.VIEWED) == 3
    assert log.count("searched") == 1
    assert log.count(ActivityKind.ADDED_TO_CART) == 0
    assert (log.first_seen, log.last_seen) == (5.0, 20.0)
    assert log.conversion() == pytest.approx(1 / 3)
    assert log.recent[0] == (10.0, ActivityKind.VIEWED, "SKU-1")
    assert log.recent_refs(ActivityKind.VIEWED) == ["SKU-3", "SKU-2", "SKU-1"]
    assert log.recent_refs("viewed", limit=2) == ["SKU-3", "SKU-2"]
    assert log.recent_refs(ActivityKind.ADDED_TO_CART) == []
    with pytest.raises(ValueError):
        log.record("teleported", "x", 1.0)


def test_activity_log_is_bounded():
    log = ActivityLog("user-1")
    for i in range(RECENT_ACTIVITY_LIMIT * 5 + 3):
        log.record(ActivityKind.VIEWED, f"SKU-{i}", float(i))
    assert RECENT_ACTIVITY_LIMIT == 200
    assert len(log.recent) == 200
    assert log.recent[0] == (803.0, ActivityKind.VIEWED, "SKU-803")
    assert log.recent[-1] == (1002.0, ActivityKind.VIEWED, "SKU-1002")
    assert log.count(ActivityKind.VIEWED) == 1003
    assert log.first_seen == 0.0


def test_an_activity_log_can_keep_fewer_entries_or_counts_only():
    short, counts_only = ActivityLog.create("user-1", keep=2), ActivityLog.create("user-2", 0)
    for i in range(5):
        short.record(ActivityKind.VIEWED, f"SKU-{i}", float(i))
        counts_only.record(ActivityKind.SEARCHED, f"q{i}", float(i))
    assert list(short.recent) == [
        (3.0, ActivityKind.VIEWED, "SKU-3"),
        (4.0, ActivityKind.VIEWED, "SKU-4"),
    ]
    assert copy.deepcopy(short).keep == 2
    assert (short.count("viewed"), counts_only.count("searched")) == (5, 5)
    assert list(counts_only.recent) == [] and counts_only.last_seen == 4.0
    assert ActivityLog.create("user-3").keep == RECENT_ACTIVITY_LIMIT
    for bad in (-1, 2.0, True):
        with pytest.raises(InvalidValue, match=r"entries kept must be an integer >= 0"):
            ActivityLog.create("user-4", keep=bad)
        with pytest.raises(InvalidValue, match=r"entries kept must be an integer >= 0"):
            ActivityLog("user-4", keep=bad)
    with pytest.raises(InvalidValue, match=r"1 refs, 0 kinds and 0 bytes of times"):
        ActivityLog("user-5", refs=["SKU-1"])
    with pytest.raises(InvalidValue, match=r"do not make at most 0 entries"):
        ActivityLog("user-5", keep=0, times=bytes(8), kinds=b"\x00", refs=["SKU-1"])


def test_an_activity_log_keeps_its_entries_packed_and_small():
    log = ActivityLog.create("user-1", keep=20)
    for i in range(25):
        kind = ActivityKind.VIEWED if i % 3 else ActivityKind.ADDED_TO_CART
        log.record(kind, f"SKU-{i}", 100.0 + i / 8)
    assert len(log.times) == 20 * 8 and len(log.kinds) == 20 and len(log.refs) == 20
    assert log.recent[0] == (100.625, ActivityKind.VIEWED, "SKU-5")
    assert log.recent[-1] == (103.0, ActivityKind.ADDED_TO_CART, "SKU-24")
    assert log.recent_refs("added_to_cart", limit=3) == ["SKU-24", "SKU-21", "SKU-18"]
    tuples = 20 * (sys.getsizeof((1.0, ActivityKind.VIEWED, "x")) + sys.getsizeof(1.0))
    packed = sys.getsizeof(log.times) + sys.getsizeof(log.kinds) + 20 * 8
    assert packed * 4 < tuples  # the point of packing them


def test_activity_log_deepcopy_is_independent_and_stays_bounded():
    log = ActivityLog("user-1")
    log.record(ActivityKind.VIEWED, "SKU-1", 1.0)
    clone = copy.deepcopy(log)
    assert clone == log
    assert clone.keep == RECENT_ACTIVITY_LIMIT and clone.recent is not log.recent
    clone.record(ActivityKind.PURCHASED, "order-1", 2.0)
    assert log.count(ActivityKind.PURCHASED) == 0
    assert len(log.recent) == 1
    assert (log.last_seen, clone.last_seen) == (1.0, 2.0)


def test_summarize():
    a, b, c = ActivityLog("a"), ActivityLog("b"), ActivityLog("c")
    for t in (1.0, 2.0, 3.0, 4.0):
        a.record(ActivityKind.VIEWED, "SKU-1", t)
    a.record(ActivityKind.PURCHASED, "order-1", 5.0)
    b.record(ActivityKind.SEARCHED, "socks", 50.0)
    b.record(ActivityKind.ADDED_TO_CART, "SKU-2", 60.0)
    summary = summarize([a, b, c])
    assert summary == {
        "users": 3,
        "active_users": 2,
        "totals": {"viewed": 4, "searched": 1, "added_to_cart": 1, "purchased": 1},
        "conversion": 0.25,
    }
    assert summarize([a, b, c], since=10.0)["active_users"] == 1
    assert summarize(iter([])) == {
        "users": 0,
        "active_users": 0,
        "totals": {"viewed": 0, "searched": 0, "added_to_cart": 0, "purchased": 0},
        "conversion": 0.0,
    }
