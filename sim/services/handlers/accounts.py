"""Account use cases: register, login, logout, authenticate, record activity, change role.

Each function opens one transaction on the unit of work and commits it. E-mail uniqueness
is kept by ``uow.emails``, a unique index of :class:`EmailClaim` records keyed by the
normalized address, so registering and logging in never scan the users. Error messages
never contain passwords or session tokens (at most a short token prefix).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from sim.domain.errors import (
    AuthenticationFailed,
    DuplicateEmail,
    InvalidEmail,
    NotFound,
    PermissionDenied,
    SessionInvalid,
)
from sim.domain.users import (
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
    check_password_strength,
    normalize_email,
    require,
    token_hint,
)
from sim.services.store import UnitOfWork

LOGIN_FAILED = "invalid e-mail or password"
"""The one message for an unknown e-mail and a wrong password (no account enumeration)."""


def register(
    uow: UnitOfWork,
    email: str,
    password: str,
    now: float,
    *,
    role: Role | str = Role.CUSTOMER,
    hasher: PasswordHasher,
    keep_recent: int = RECENT_ACTIVITY_LIMIT,
) -> str:
    """Create a user (and their activity log); return the new user id.

    Raises InvalidEmail, WeakPassword, or DuplicateEmail if the address is taken. The
    checks run before an id is drawn, so a rejected registration leaves no gap in the ids.
    The activity log keeps the ``keep_recent`` latest entries besides its counts.
    """
    with uow:
        user_id = _register(uow, email, password, now, role, hasher, keep_recent)
        uow.commit()
    return user_id


def register_many(
    uow: UnitOfWork,
    accounts: Iterable[tuple[str, str]],
    now: float,
    *,
    role: Role | str = Role.CUSTOMER,
    hasher: PasswordHasher,
    keep_recent: int = RECENT_ACTIVITY_LIMIT,
) -> list[str]:
    """Register every ``(email, password)`` of ``accounts`` in one transaction; return the ids.

    Each account is checked as :func:`register` checks it (an e-mail given twice in the batch
    is a DuplicateEmail too). All or none: the first rejection rolls the whole batch back
    (the ids drawn for the accounts before it stay drawn, a gap as a database sequence
    leaves). Building a shop's customer base this way saves a transaction per customer.
    """
    with uow:
        ids = [
            _register(uow, email, password, now, role, hasher, keep_recent)
            for email, password in accounts
        ]
        uow.commit()
    return ids


def _register(
    uow: UnitOfWork,
    email: str,
    password: str,
    now: float,
    role: Role | str,
    hasher: PasswordHasher,
    keep_recent: int,
) -> str:
    # One registration inside the caller's transaction.
    normalized = normalize_email(email)
    if normalized in uow.emails:
        raise DuplicateEmail(f"e-mail {normalized!r} is already registered")
    check_password_strength(password, normalized)
    user_id = uow.next_id("user")
    uow.users.add(User.register(user_id, normalized, password, role, now, hasher))
    uow.emails.add(EmailClaim(normalized, user_id))
    uow.activity.add(ActivityLog.create(user_id, keep_recent))
    return user_id


def login(
    uow: UnitOfWork,
    email: str,
    password: str,
    now: float,
    *,
    hasher: PasswordHasher,
    policy: LoginPolicy,
    token_factory: Callable[[int], str] = secrets.token_urlsafe,
) -> str:
    """Check the credentials and open a session; return its token.

    An unknown e-mail, a wrong password and a locked account all raise AuthenticationFailed
    with the same message and cost the same hashing work, so an answer never tells whether an
    address has an account (a lockout that only real accounts show would). A wrong password's
    failure count and any lockout are committed before the error is raised; the lockout is
    visible to the shop as the ``AccountLockedOut`` event, not to whoever tries to log in.
    """
    try:
        normalized = normalize_email(email)
    except InvalidEmail:
        normalized = ""
    with uow:
        claim = uow.emails.find_readonly(normalized) if normalized else None
        if claim is None:
            hasher.hash(password)  # the same work as a real check: no timing side channel
            raise AuthenticationFailed(LOGIN_FAILED)
        user: User = uow.users.get(claim.user_id)
        if user.is_locked(now):
            hasher.hash(password)  # the work a check would do, even the right password refused
            raise AuthenticationFailed(LOGIN_FAILED)
        if not user.verify_login(password, hasher, now, policy):
            uow.commit()
            raise AuthenticationFailed(LOGIN_FAILED)
        session = uow.sessions.add(Session.open(user.id, now, policy.session_ttl, token_factory))
        uow.commit()
    return session.token


def logout(uow: UnitOfWork, token: str, now: float) -> None:
    """End the session and forget it; raise SessionInvalid for an unknown token."""
    with uow:
        session = _session(uow, token)
        session.end(now)
        uow.sessions.remove(token)
        uow.commit()


def authenticate(uow: UnitOfWork, token: str, now: float, *, policy: LoginPolicy) -> str:
    """Return the user id of a valid session and slide its expiry forward.

    Raises SessionInvalid if the token is unknown or the session has expired or ended (such a
    session is then removed, and that removal committed, before raising).
    """
    with uow:
        session = _session(uow, token)
        if not session.is_valid(now):
            uow.sessions.remove(token)
            uow.commit()
            raise SessionInvalid(f"session {token_hint(token)} is {session.status(now)}")
        session.touch(now, policy.session_ttl)
        uow.commit()
    return session.user_id


def purge_sessions(uow: UnitOfWork, now: float) -> int:
    """Remove every session expired or ended at ``now``; return how many were removed.

    Abandoned sessions are never logged out; the engine calls this now and then so the
    session store stays bounded however long a simulation runs.
    """
    with uow:
        stale = [s.token for s in uow.sessions.values() if not s.is_valid(now)]
        for token in stale:
            uow.sessions.remove(token)
        uow.commit()
    return len(stale)


def record_activity(
    uow: UnitOfWork, user_id: str, kind: ActivityKind | str, ref: str, now: float
) -> None:
    """Count one activity of a user (creating their log if they have none yet)."""
    with uow:
        log: ActivityLog | None = uow.activity.find(user_id)
        if log is None:
            if user_id not in uow.users:
                raise NotFound(f"user {user_id!r} not found")
            log = uow.activity.add(ActivityLog(user_id))
        log.record(kind, ref, now)
        uow.commit()


def change_role(uow: UnitOfWork, actor_id: str, user_id: str, role: Role | str, now: float) -> None:
    """Give a user another role; the actor needs manage_users and may not change their own."""
    with uow:
        actor: User = uow.users.get(actor_id)
        require(actor, Permission.MANAGE_USERS)
        if actor_id == user_id:
            raise PermissionDenied(f"user {actor_id} may not change their own role")
        user: User = uow.users.get(user_id)
        user.change_role(role, now)
        uow.commit()


def _session(uow: UnitOfWork, token: str) -> Session:
    # Not uow.sessions.get: its NotFound message would contain the whole token.
    session: Session | None = uow.sessions.find(token)
    if session is None:
        raise SessionInvalid(f"unknown session {token_hint(token)}")
    return session
