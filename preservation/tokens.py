"""Bearer tokens: who is asking, for which tenant, with which role.

A token is shown once, when it is made, and only its sha256 is kept. Its
form, ``pvt_<44 characters>``, carries 256 random bits; the prefix lets a
secret scanner (and a person) recognise one that leaked into a log or a
repository. A slow password hash would buy nothing against 256 random bits
and would cost every request, so sha256 it is (passwords, which people
choose, get argon2id in the console).

Every request resolves its token to a :class:`Principal`; the API's
dependencies and every service function that takes one scope their queries
by ``Principal.tenant_id``: the one place tenancy is decided.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from preservation.catalog.models import APIToken, Role, Tenant, utcnow
from preservation.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
)

__all__ = [
    "TOKEN_PREFIX",
    "CreatedToken",
    "Principal",
    "Role",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "pvt_"
#: ``last_used_at`` is written at most this often per token: a read must not write each time.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's id, tenant (None for an admin), role and label."""

    token_id: str
    tenant_id: str | None
    role: Role
    label: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise ForbiddenError(
                f"this needs the {needed.value} role or above; the token "
                f"{self.label or self.token_id} is {self.role.value}",
                rule="role",
                needed=needed.value,
            )

    def sees(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    @property
    def who(self) -> str:
        """How events and disposals name the asker: label and token id."""
        return f"{self.label or 'token'} ({self.token_id})"


@dataclass(frozen=True)
class CreatedToken:
    token: APIToken
    secret: str  # shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session, *, role: Role | str, tenant_id: str | None = None, label: str = ""
) -> CreatedToken:
    """Make a token; an admin token has no tenant, every other token exactly one."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidRequestError(
            f"role {role!r} is not one of {', '.join(r.value for r in Role)}", rule="role"
        ) from exc
    if role is Role.ADMIN and tenant_id is not None:
        raise InvalidRequestError(
            "an admin token sees every tenant: give --role admin without --tenant",
            rule="admin-token-tenant",
        )
    if role is not Role.ADMIN:
        if tenant_id is None:
            raise InvalidRequestError(
                f"a {role.value} token belongs to one tenant: give --tenant", rule="token-tenant"
            )
        if session.get(Tenant, tenant_id) is None:
            raise NotFoundError(
                f"no tenant {tenant_id!r}: add it first with `preservation tenant add`",
                tenant=tenant_id,
            )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = APIToken(
        tenant_id=tenant_id, role=role, label=label.strip(), secret_sha256=_digest(secret)
    )
    session.add(token)
    session.flush()
    return CreatedToken(token, secret)


def list_tokens(session: Session, *, tenant_id: str | None = None) -> list[dict[str, Any]]:
    stmt = select(APIToken).order_by(APIToken.created_at, APIToken.id)
    if tenant_id is not None:
        stmt = stmt.where(APIToken.tenant_id == tenant_id)
    return [_token_dict(t) for t in session.scalars(stmt)]


def _token_dict(t: APIToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "tenant": t.tenant_id,
        "role": t.role.value,
        "label": t.label,
        "created_at": t.created_at.isoformat(),
        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
    }


def revoke_token(
    session: Session, token_id: str, *, tenant_id: str | None = None
) -> dict[str, Any]:
    """Revoke at once: the next request with it is refused. Revoking twice is harmless."""
    token = session.get(APIToken, token_id.strip())
    if token is None or (tenant_id is not None and token.tenant_id != tenant_id):
        raise NotFoundError(f"no token {token_id}", token=token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return _token_dict(token)


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The principal behind an ``Authorization: Bearer`` header, or AuthenticationError."""
    if not authorization:
        raise AuthenticationError(
            "this needs a token: send Authorization: Bearer <token>", rule="bearer-token"
        )
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationError(
            "the Authorization header must be 'Bearer <token>'", rule="bearer-token"
        )
    digest = _digest(secret)
    token = session.scalar(select(APIToken).where(APIToken.secret_sha256 == digest))
    # compare_digest: the lookup is by index, but the last step should not leak timing.
    if token is None or not hmac.compare_digest(token.secret_sha256, digest):
        raise AuthenticationError("the token is not known", rule="bearer-token")
    if token.revoked_at is not None:
        raise AuthenticationError("the token was revoked", rule="bearer-token")
    now = utcnow()
    last = token.last_used_at
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=now.tzinfo)) > (
        LAST_USED_RESOLUTION
    ):
        token.last_used_at = now
    return Principal(token.id, token.tenant_id, token.role, token.label)
