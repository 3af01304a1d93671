"""Users: roles and permissions, registration rules, password hashing, lockout, sessions, activity.

Everything here is deterministic except the security randomness (salts, session tokens),
which comes from ``secrets`` through injectable callables. Passwords are never stored:
only a PBKDF2-HMAC-SHA256 encoding, which no repr shows. Session tokens never appear in
reprs or error messages beyond a short prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

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
    DomainEvent,
    EventSource,
    LoginFailed,
    UserLoggedIn,
    UserLoggedOut,
    UserRegistered,
    UserRoleChanged,
    events_field,
)
from sim.domain.snapshots import ShallowCopied


# --- roles and permissions -----------------------------------------------------------------
class Role(str, Enum):
    """What kind of account a user has; decides the user's permissions."""

    CUSTOMER = "customer"
    MERCHANT = "merchant"
    ADMIN = "admin"


class Permission(str, Enum):
    """Something a user may be allowed to do."""

    BROWSE = "browse"
    PURCHASE = "purchase"
    MANAGE_OWN_PRODUCTS = "manage_own_products"
    MANAGE_ALL_PRODUCTS = "manage_all_products"
    MANAGE_INVENTORY = "manage_inventory"
    MANAGE_COUPONS = "manage_coupons"
    MANAGE_ORDERS = "manage_orders"
    """Ship, deliver and refund orders, and place bulk orders."""
    VIEW_ALL_ORDERS = "view_all_orders"
    MANAGE_USERS = "manage_users"


_CUSTOMER = frozenset({Permission.BROWSE, Permission.PURCHASE})
_MERCHANT = _CUSTOMER | {
    Permission.MANAGE_OWN_PRODUCTS,
    Permission.MANAGE_INVENTORY,
    Permission.MANAGE_ORDERS,
}

PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.CUSTOMER: _CUSTOMER,
        Role.MERCHANT: _MERCHANT,
        Role.ADMIN: frozenset(Permission),
    }
)
"""The permissions of each role (read-only)."""


def as_role(value: Role | str) -> Role:
    """Return ``value`` as a Role; raise InvalidValue for an unknown role name."""
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidValue(f"unknown role {value!r}; expected one of {names}") from None


def require(user: User, permission: Permission) -> None:
    """Raise PermissionDenied unless the user's role grants ``permission``."""
    if permission not in PERMISSIONS[user.role]:
        raise PermissionDenied(
            f"user {user.id} ({user.role.value}) lacks permission {Permission(permission).value}"
        )


def require_owner_or_admin(user: User, owner_id: str, permission: Permission) -> None:
    """Raise PermissionDenied unless the user has ``permission`` and is an admin or the owner."""
    require(user, permission)
    if user.role is not Role.ADMIN and user.id != owner_id:
        raise PermissionDenied(
            f"user {user.id} ({user.role.value}) may use {Permission(permission).value} "
            f"only on their own resources, not on those of {owner_id}"
        )


# --- registration rules --------------------------------------------------------------------
MAX_EMAIL_LENGTH = 254
"""The longest e-mail address accepted (RFC 5321's path limit less the angle brackets)."""

MIN_PASSWORD_LENGTH = 10
"""The fewest characters a password may have."""

MIN_LOCAL_PART_CHECKED = 3
"""E-mail local parts at least this long must not appear inside the password."""

_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(
    rf"{_ATOM}(?:\.{_ATOM})*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]"
)


def normalize_email(email: str) -> str:
    """Return the e-mail stripped and lower-cased; raise InvalidEmail unless local@domain.tld."""
    if not isinstance(email, str):
        raise InvalidEmail(f"an e-mail address must be text, got {email!r}")
    normalized = email.strip().lower()
    if len(normalized) > MAX_EMAIL_LENGTH or _EMAIL.fullmatch(normalized) is None:
        raise InvalidEmail(f"not an e-mail address of the form local@domain.tld: {email!r}")
    return normalized


def check_password_strength(password: str, email: str) -> None:
    """Raise WeakPassword listing every strength rule the password breaks (never the password).

    Rules: at least :data:`MIN_PASSWORD_LENGTH` characters, a letter and a digit, not one
    character repeated, and not containing the e-mail's local part (case-insensitively,
    when that part has at least :data:`MIN_LOCAL_PART_CHECKED` characters).
    """
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters (got {len(password)})")
    if not any(map(str.isalpha, password)):
        problems.append("a letter")
    if not any(map(str.isdigit, password)):
        problems.append("a digit")
    if password and len(set(password)) == 1:
        problems.append("more than one distinct character")
    local = email.strip().lower().partition("@")[0]
    if len(local) >= MIN_LOCAL_PART_CHECKED and local in password.lower():
        problems.append("no part of the e-mail address (its local part)")
    if problems:
        raise WeakPassword("password too weak: needs " + "; ".join(problems))


# --- password hashing ----------------------------------------------------------------------
PBKDF2_ALGORITHM = "pbkdf2_sha256"
"""The algorithm tag at the start of every encoded password hash."""

SALT_BYTES = 16
"""Bytes of random salt per password hash."""

DEFAULT_ITERATIONS = 600_000
"""PBKDF2-HMAC-SHA256 iterations: OWASP's recommendation (Password Storage Cheat Sheet)."""

FAST_ITERATIONS = 1_000
"""Iterations of :meth:`PasswordHasher.fast`: for simulations and tests, not for real storage."""


def _parse_hash(encoded: str) -> tuple[int, bytes, bytes] | None:
    """Split ``pbkdf2_sha256$<iterations>$<salt hex>$<digest hex>``; None if malformed."""
    try:
        algorithm, iterations, salt_hex, digest_hex = encoded.split("$")
        rounds = int(iterations)
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except (AttributeError, ValueError):
        return None
    if algorithm != PBKDF2_ALGORITHM or rounds < 1 or not salt or not digest:
        return None
    return rounds, salt, digest


@dataclass(frozen=True, slots=True)
class PasswordHasher:
    """PBKDF2-HMAC-SHA256 password hashing with a random salt per password."""

    iterations: int = DEFAULT_ITERATIONS
    salt_factory: Callable[[int], bytes] = field(
        default=secrets.token_bytes, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Reject a non-positive iteration count."""
        if type(self.iterations) is not int or self.iterations < 1:
            raise InvalidValue(f"iterations must be a positive integer, got {self.iterations!r}")

    @classmethod
    def fast(cls, salt_factory: Callable[[int], bytes] = secrets.token_bytes) -> PasswordHasher:
        """Return a hasher with few iterations, for simulations and tests only."""
        return cls(FAST_ITERATIONS, salt_factory)

    def hash(self, password: str) -> str:
        """Return ``pbkdf2_sha256$<iterations>$<salt hex>$<digest hex>`` for a fresh salt."""
        salt = self.salt_factory(SALT_BYTES)
        if len(salt) != SALT_BYTES:
            raise InvalidValue(f"salt factory gave {len(salt)} bytes, expected {SALT_BYTES}")
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, self.iterations)
        return f"{PBKDF2_ALGORITHM}${self.iterations}${salt.hex()}${digest.hex()}"

    def verify(self, password: str, encoded: str) -> bool:
        """Return True if ``password`` matches ``encoded`` (compared in constant time).

        The iterations and salt come from ``encoded``, so hashes made with another iteration
        count still verify. A malformed or foreign encoding never matches.
        """
        parsed = _parse_hash(encoded)
        if parsed is None:
            return False
        rounds, salt, expected = parsed
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds, len(expected))
        return hmac.compare_digest(actual, expected)

    def needs_rehash(self, encoded: str) -> bool:
        """Return True if ``encoded`` is malformed or was made with other parameters."""
        parsed = _parse_hash(encoded)
        return parsed is None or parsed[0] != self.iterations or len(parsed[1]) != SALT_BYTES


# --- users ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How many failed logins lock an account, for how long, and how long sessions last."""

    max_failures: int = 5
    lockout_seconds: float = 900.0
    session_ttl: float = 1800.0
    """Idle time after which a session expires; each use slides the expiry forward."""

    def __post_init__(self) -> None:
        """Reject non-positive limits."""
        if self.max_failures < 1:
            raise InvalidValue(f"max_failures must be at least 1, got {self.max_failures}")
        if self.lockout_seconds < 0:
            raise InvalidValue(f"lockout_seconds must be >= 0, got {self.lockout_seconds}")
        if self.session_ttl <= 0:
            raise InvalidValue(f"session_ttl must be positive, got {self.session_ttl}")


@dataclass(frozen=True, slots=True)
class EmailClaim:
    """A registered e-mail address and the user holding it (the unique index ``uow.emails``)."""

    email: str
    user_id: str


@dataclass(slots=True)
class User(ShallowCopied, EventSource):
    """A user account: identity, role, password hash and the failed-login lockout state."""

    id: str
    email: str
    role: Role
    password_hash: str = field(repr=False)
    created_at: float
    failed_logins: int = 0
    locked_until: float | None = None
    events: list[DomainEvent] = events_field()

    @classmethod
    def register(
        cls,
        id: str,
        email: str,
        password: str,
        role: Role | str,
        now: float,
        hasher: PasswordHasher,
    ) -> User:
        """Create an account after checking the e-mail and the password's strength."""
        role = as_role(role)
        normalized = normalize_email(email)
        check_password_strength(password, normalized)
        user = cls(id, normalized, role, hasher.hash(password), now)
        user.record(UserRegistered(at=now, user_id=id, role=role.value))
        return user

    def is_locked(self, now: float) -> bool:
        """Return True while a lockout is in force at ``now``."""
        return self.locked_until is not None and now < self.locked_until

    def verify_login(
        self, password: str, hasher: PasswordHasher, now: float, policy: LoginPolicy
    ) -> bool:
        """Check a login attempt; return False on a wrong password (state changed, not raised).

        Raises AccountLocked while locked. A failure counts towards the lockout, which starts
        at the ``policy.max_failures``-th consecutive failure; the caller commits that before
        it reports the failure. A success resets the count, records ``UserLoggedIn`` and
        upgrades the stored hash if ``hasher`` uses other parameters.
        """
        if self.locked_until is not None:
            if now < self.locked_until:
                raise AccountLocked(
                    f"user {self.id} is locked after {self.failed_logins} failed logins "
                    f"until t={self.locked_until:.1f}s"
                )
            self.locked_until = None
            self.failed_logins = 0
        if not hasher.verify(password, self.password_hash):
            self.failed_logins += 1
            self.record(LoginFailed(at=now, user_id=self.id, failures=self.failed_logins))
            if self.failed_logins >= policy.max_failures:
                self.locked_until = now + policy.lockout_seconds
                self.record(AccountLockedOut(at=now, user_id=self.id, until=self.locked_until))
            return False
        self.failed_logins = 0
        if hasher.needs_rehash(self.password_hash):
            self.password_hash = hasher.hash(password)
        self.record(UserLoggedIn(at=now, user_id=self.id))
        return True

    def change_role(self, role: Role | str, now: float) -> None:
        """Give the user another role (no change and no event if it is the same)."""
        new = as_role(role)
        if new is self.role:
            return
        old, self.role = self.role, new
        self.record(UserRoleChanged(at=now, user_id=self.id, old=old.value, new=new.value))


# --- sessions ------------------------------------------------------------------------------
TOKEN_BYTES = 32
"""Random bytes in a session token (43 URL-safe characters)."""


def token_hint(token: str) -> str:
    """Return a short, safe prefix of a session token for reprs and messages."""
    return token[:6] + "..."


@dataclass(slots=True, repr=False)
class Session(ShallowCopied, EventSource):
    """A logged-in session: valid until it ends or sits idle past its sliding expiry."""

    token: str
    user_id: str
    created_at: float
    expires_at: float
    ended_at: float | None = None
    events: list[DomainEvent] = events_field()

    @classmethod
    def open(
        cls,
        user_id: str,
        now: float,
        ttl: float,
        token_factory: Callable[[int], str] = secrets.token_urlsafe,
    ) -> Session:
        """Open a session for ``user_id`` expiring ``ttl`` seconds from ``now`` if unused."""
        if ttl <= 0:
            raise InvalidValue(f"session ttl must be positive, got {ttl}")
        return cls(token_factory(TOKEN_BYTES), user_id, now, now + ttl)

    def __repr__(self) -> str:
        """Show the session with only a prefix of its token."""
        return (
            f"Session(token={token_hint(self.token)!r}, user_id={self.user_id!r}, "
            f"created_at={self.created_at!r}, expires_at={self.expires_at!r}, "
            f"ended_at={self.ended_at!r})"
        )

    def is_valid(self, now: float) -> bool:
        """Return True if the session has not ended and has not expired at ``now``."""
        return self.ended_at is None and now < self.expires_at

    def touch(self, now: float, ttl: float) -> None:
        """Slide the expiry to ``now + ttl``; raise SessionInvalid if no longer valid."""
        if not self.is_valid(now):
            raise SessionInvalid(f"session {token_hint(self.token)} is {self.status(now)}")
        self.expires_at = now + ttl

    def end(self, now: float) -> None:
        """Log out: end the session; raise SessionInvalid if it has ended already."""
        if self.ended_at is not None:
            raise SessionInvalid(f"session {token_hint(self.token)} is {self.status(now)}")
        self.ended_at = now
        self.record(UserLoggedOut(at=now, user_id=self.user_id))

    def status(self, now: float) -> str:
        """Describe the session at ``now``: ``valid``, ``expired at t=...s`` or ``ended at ...``."""
        if self.ended_at is not None:
            return f"ended at t={self.ended_at:.1f}s"
        return f"expired at t={self.expires_at:.1f}s" if now >= self.expires_at else "valid"


# --- activity ------------------------------------------------------------------------------
class ActivityKind(str, Enum):
    """A kind of shopper activity tracked for analytics."""

    VIEWED = "viewed"
    SEARCHED = "searched"
    ADDED_TO_CART = "added_to_cart"
    PURCHASED = "purchased"


RECENT_ACTIVITY_LIMIT = 200
"""Recent activities kept per user; older ones survive only in the counts."""


_KINDS: tuple[ActivityKind, ...] = tuple(ActivityKind)
_KIND_CODE: dict[ActivityKind, int] = {kind: code for code, kind in enumerate(_KINDS)}
_TIME = struct.Struct("<d")


@dataclass(slots=True)
class ActivityLog(ShallowCopied):
    """One user's activity: counts per kind, first and last time seen, the latest entries.

    Memory is bounded: counts and times are scalars and :attr:`recent` keeps at most ``keep``
    ``(at, kind, ref)`` entries, oldest first (:data:`RECENT_ACTIVITY_LIMIT` unless
    :meth:`create` was told otherwise). A shop holds one log per customer, each full after a
    while, so the entries are stored packed: the times as float64s in ``times``, the kinds as
    one byte each in ``kinds`` and the refs in a list (about 17 bytes an entry, against about
    100 for a tuple of three). It records no domain events (its ``record`` counts an
    activity), so it is not an EventSource.
    """

    user_id: str
    counts: dict[ActivityKind, int] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None
    keep: int = RECENT_ACTIVITY_LIMIT
    times: bytes = field(default=b"", repr=False)
    kinds: bytes = field(default=b"", repr=False)
    refs: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        """Reject a ``keep`` that is not an integer >= 0 or entries of unequal lengths."""
        keep = self.keep
        if type(keep) is not int or keep < 0:
            raise InvalidValue(f"entries kept must be an integer >= 0, got {keep!r}")
        n = len(self.refs)
        if len(self.kinds) != n or len(self.times) != n * _TIME.size or n > keep:
            raise InvalidValue(
                f"activity log of {self.user_id}: {n} refs, {len(self.kinds)} kinds and "
                f"{len(self.times)} bytes of times do not make at most {keep} entries"
            )

    @classmethod
    def create(cls, user_id: str, keep: int = RECENT_ACTIVITY_LIMIT) -> ActivityLog:
        """Return an empty log that keeps the ``keep`` latest entries (0: counts only)."""
        return cls(user_id, keep=keep)

    @property
    def recent(self) -> list[tuple[float, ActivityKind, str]]:
        """Return the kept entries as ``(at, kind, ref)``, oldest first."""
        times = (at for (at,) in _TIME.iter_unpack(self.times))
        return [
            (at, _KINDS[code], ref)
            for at, code, ref in zip(times, self.kinds, self.refs, strict=True)
        ]

    def record(self, kind: ActivityKind | str, ref: str, now: float) -> None:
        """Count one activity of ``kind`` on ``ref`` (a SKU, a query, an order id) at ``now``."""
        kind = ActivityKind(kind)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.first_seen is None or now < self.first_seen:
            self.first_seen = now
        if self.last_seen is None or now > self.last_seen:
            self.last_seen = now
        if self.keep:
            times, kinds, refs = self.times + _TIME.pack(now), self.kinds, self.refs
            kinds += bytes((_KIND_CODE[kind],))
            refs.append(ref)
            if len(refs) > self.keep:  # drop the oldest: at most ``keep`` entries move
                times, kinds = times[_TIME.size :], kinds[1:]
                del refs[0]
            self.times, self.kinds = times, kinds

    def count(self, kind: ActivityKind | str) -> int:
        """Return how many activities of ``kind`` were recorded."""
        return self.counts.get(ActivityKind(kind), 0)

    def conversion(self) -> float:
        """Return purchases per view (0.0 when nothing was viewed)."""
        views = self.counts.get(ActivityKind.VIEWED, 0)
        return self.counts.get(ActivityKind.PURCHASED, 0) / views if views else 0.0

    def recent_refs(self, kind: ActivityKind | str, limit: int = 10) -> list[str]:
        """Return the refs of the latest activities of ``kind``, newest first, at most ``limit``."""
        code = _KIND_CODE[ActivityKind(kind)]
        refs: list[str] = []
        for k, ref in zip(reversed(self.kinds), reversed(self.refs), strict=True):
            if len(refs) >= limit:
                break
            if k == code:
                refs.append(ref)
        return refs


def summarize(logs: Iterable[ActivityLog], since: float | None = None) -> dict[str, Any]:
    """Return shop-wide activity: users, active users, totals per kind and overall conversion.

    A user is active if they did anything (at or after ``since``, when given). Totals are keyed
    by the kind's value; conversion is total purchases per total view (0.0 with no views).
    """
    totals = dict.fromkeys(ActivityKind, 0)
    users = active = 0
    for log in logs:
        users += 1
        for kind, n in log.counts.items():
            totals[kind] += n
        if log.last_seen is not None and (since is None or log.last_seen >= since):
            active += 1
    views = totals[ActivityKind.VIEWED]
    return {
        "users": users,
        "active_users": active,
        "totals": {kind.value: n for kind, n in totals.items()},
        "conversion": totals[ActivityKind.PURCHASED] / views if views else 0.0,
    }
