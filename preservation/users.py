"""People who log in to the console: accounts, argon2id passwords, lockout.

Tokens are for programs (``tokens.py``); users are for people, who choose
their own passwords, so a password is kept only as an argon2id hash
(argon2-cffi's defaults, RFC 9106's second recommended option) and checked at
that hash's cost. A user resolves to the same :class:`~preservation.tokens.Principal`
a token does, so every service function scopes a person exactly as it scopes
a program, and events name the person.

Who manages whom keeps the four-eyes rules honest: a curator approves another
curator's disposal, so a curator who could make a second curator account, or
take over a peer's by setting its password, could approve their own. A
curator therefore manages only the roles below their own (consumers and
submitters of their tenant); curator and admin accounts are an admin's to
add, reset and disable (:func:`may_manage`). Nobody disables themselves: the
last admin would lock everyone out of the console.

Guessing is throttled per account: after ``MAX_FAILURES`` wrong passwords in a
row the account is locked for ``LOCK_SECONDS``, and a login during the lock
fails without looking at the password. An unknown e-mail costs one hash as
well, so the answer's timing does not tell which accounts exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from preservation.catalog.models import ConsoleUser, Role, Tenant, utcnow
from preservation.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
)
from preservation.tokens import Principal

__all__ = [
    "LOCK_SECONDS",
    "MAX_FAILURES",
    "MIN_PASSWORD_LENGTH",
    "LoginResult",
    "add_user",
    "disable_user",
    "end_sessions",
    "list_users",
    "log_in",
    "may_manage",
    "principal_of",
    "set_password",
    "user_for_session",
]

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
#: NIST SP 800-63B's floor for a chosen secret; length, not composition rules.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so that costs what a real check costs.
_DUMMY_HASH = _hasher.hash("not a password anyone has")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidRequestError(f"{value!r} is not an e-mail address", rule="email")
    return email


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", rule="password-length"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", rule="password-length"
        )
    return password


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


def _iso(value: datetime | None) -> str | None:
    """UTC with its offset, as written or as read back (SQLite gives naive datetimes)."""
    aware = _aware(value)
    return aware.isoformat() if aware is not None else None


def _view(user: ConsoleUser) -> dict[str, Any]:
    locked = _aware(user.locked_until)
    return {
        "id": user.id,
        "email": user.email,
        "tenant": user.tenant_id,
        "role": user.role.value,
        "created_at": _iso(user.created_at),
        "last_login_at": _iso(user.last_login_at),
        "locked_until": _iso(locked) if locked and locked > utcnow() else None,
        "disabled_at": _iso(user.disabled_at),
    }


def add_user(
    session: Session, *, email: str, role: Role | str, password: str, tenant_id: str | None
) -> dict[str, Any]:
    """A new user; tenancy follows the token rules (admin: none; everyone else: one)."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidRequestError(
            f"role {role!r} is not one of {', '.join(r.value for r in Role)}", rule="role"
        ) from exc
    if role is Role.ADMIN and tenant_id is not None:
        raise InvalidRequestError(
            "an admin sees every tenant: give --role admin without --tenant", rule="admin-tenant"
        )
    if role is not Role.ADMIN:
        if tenant_id is None:
            raise InvalidRequestError(
                f"a {role.value} belongs to one tenant: give --tenant", rule="user-tenant"
            )
        if session.get(Tenant, tenant_id) is None:
            raise NotFoundError(
                f"no tenant {tenant_id!r}: add it first with `preservation tenant add`",
                tenant=tenant_id,
            )
    address = _email(email)
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == address)):
        raise ConflictError(f"there is already a user {address}", rule="user-exists")
    user = ConsoleUser(
        email=address,
        role=role,
        tenant_id=tenant_id,
        password_hash=_hasher.hash(_check_password(password)),
        session_epoch=1,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    return _view(user)


def _by_email(session: Session, email: str, tenant_id: str | None = None) -> ConsoleUser:
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()))
    if user is None or (tenant_id is not None and user.tenant_id != tenant_id):
        raise NotFoundError(f"no user {email.strip()}", user=email.strip())
    return user


def may_manage(manager: Role, role: Role) -> bool:
    """Whether a person of role ``manager`` may give ``role``, or reset or disable its holder.

    An admin manages everyone; a curator only the roles strictly below
    curator; nobody else manages anyone.
    """
    if manager is Role.ADMIN:
        return True
    return manager is Role.CURATOR and role.rank < Role.CURATOR.rank


def _check_manager(by: Principal | None, user: ConsoleUser) -> None:
    """``by`` (a person in the console; ``None``: the operator at the CLI) may manage ``user``."""
    if by is not None and not may_manage(by.role, user.role):
        raise ForbiddenError(
            f"a {by.role.value} may not change the account of a {user.role.value}: "
            "curator and admin accounts are managed by admins only",
            rule="user-manager",
        )


def set_password(
    session: Session,
    email: str,
    password: str,
    *,
    tenant_id: str | None = None,
    by: Principal | None = None,
) -> dict[str, Any]:
    """A new password; it ends the user's open sessions and lifts a lock."""
    user = _by_email(session, email, tenant_id)
    _check_manager(by, user)
    user.password_hash = _hasher.hash(_check_password(password))
    user.password_changed_at = utcnow()
    user.session_epoch += 1
    user.failed_logins = 0
    user.locked_until = None
    session.flush()
    return _view(user)


def disable_user(
    session: Session, email: str, *, tenant_id: str | None = None, by: Principal | None = None
) -> dict[str, Any]:
    """No more logins, and the open sessions end; the account stays, for the history."""
    user = _by_email(session, email, tenant_id)
    _check_manager(by, user)
    if by is not None and by.token_id == principal_of(user).token_id:
        raise InvalidRequestError(
            "nobody disables their own account: another admin does that", rule="disable-self"
        )
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        user.session_epoch += 1
        session.flush()
    return _view(user)


def end_sessions(session: Session, user_id: str) -> None:
    """End every open session of the user, on every browser: a logout.

    Deleting the cookie ends only the browser's copy; one copied before (a
    shared machine, a proxy log) would still work until it expires, so the
    epoch every cookie carries moves on instead.
    """
    user = session.get(ConsoleUser, user_id)
    if user is not None:
        user.session_epoch += 1
        session.flush()


def list_users(session: Session, *, tenant_id: str | None = None) -> list[dict[str, Any]]:
    stmt = select(ConsoleUser).order_by(ConsoleUser.email)
    if tenant_id is not None:
        stmt = stmt.where(ConsoleUser.tenant_id == tenant_id)
    return [_view(u) for u in session.scalars(stmt)]


@dataclass(frozen=True)
class LoginResult:
    user_id: str
    epoch: int
    principal: Principal


def principal_of(user: ConsoleUser) -> Principal:
    """The user as the asker every service function understands; events name the e-mail."""
    return Principal(f"user:{user.id}", user.tenant_id, user.role, user.email)


def log_in(
    session: Session, email: str, password: str, *, now: datetime | None = None
) -> LoginResult:
    """The user, if the password is right and the account neither locked nor disabled.

    A wrong password, an unknown e-mail and a disabled account get the same
    refusal ("wrong e-mail or password"). A locked account gets its own, which
    tells the person at the door that the account exists (only an account is
    ever locked) but nothing about the password tried. The caller commits
    the failure count even when this raises.
    """
    now = now or utcnow()
    user = session.scalar(
        select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()).with_for_update()
    )
    refused = AuthenticationError("wrong e-mail or password", rule="login")
    if user is None or user.disabled_at is not None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise refused
    locked = _aware(user.locked_until)
    if locked is not None and locked > now:
        raise AuthenticationError(
            "too many failed logins: this account is locked for a while; try again later",
            rule="login-locked",
            locked_until=locked.isoformat(),
        )
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + timedelta(seconds=LOCK_SECONDS)
            user.failed_logins = 0
        session.flush()
        raise refused from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    session.flush()
    return LoginResult(user.id, user.session_epoch, principal_of(user))


def user_for_session(session: Session, user_id: str, epoch: int) -> Principal | None:
    """The principal behind a session cookie, or None if it has been ended since."""
    user = session.get(ConsoleUser, user_id)
    if user is None or user.disabled_at is not None or user.session_epoch != epoch:
        return None
    return principal_of(user)
