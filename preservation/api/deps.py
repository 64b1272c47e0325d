"""What every route receives: the context, the asker, and role checks.

The asker is resolved from the ``Authorization: Bearer`` header on every
request (``tokens.authenticate``); the routes then pass ``principal.tenant_id``
to the service functions, which scope their queries by it. An admin's
``tenant_id`` is None: every tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.context import Context
from preservation.retention import Actor
from preservation.tokens import Principal, authenticate

__all__ = ["Asker", "Ctx", "Db", "actor_of", "get_context", "needs"]

# auto_error=False: a missing header is our AuthenticationError (401 problem), not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A token from `preservation token create`.")


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(get_context)]


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request, shared by the token check and the route.

    Committed when the route returns, before the response is sent (scope
    "function"), rolled back if it raises. One session rather than one for the
    token and one for the route halves the connection checkouts and commits,
    which are most of a lookup's time on PostgreSQL.
    """
    with session_scope(get_context(request).sessions) as session:
        yield session


Db = Annotated[Session, Depends(_session, scope="function")]


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    db: Db,
) -> Principal:
    return authenticate(db, request.headers.get("authorization"))


def _principal_alone(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The asker, checked in a transaction of its own that ends at once.

    For routes that stream a long body (an upload): a shared request session
    would hold a pooled connection, idle in a transaction, for the whole upload.
    """
    with session_scope(get_context(request).sessions) as session:
        return authenticate(session, request.headers.get("authorization"))


def needs(role: Role, *, long_request: bool = False) -> Callable[..., Principal]:
    """A dependency: the asker, if their role allows ``role`` (else 403)."""
    source = _principal_alone if long_request else _principal

    # A default, not Annotated[...]: the annotation is a string here (postponed
    # evaluation) and could not name the local ``source``.
    def check(principal: Principal = Depends(source)) -> Principal:  # noqa: B008
        principal.require(role)
        return principal

    check.__name__ = f"needs_{role.value}"
    return check


Asker = Annotated[Principal, Depends(needs(Role.CONSUMER))]


def actor_of(principal: Principal) -> Actor:
    return Actor(id=principal.token_id, label=principal.label or f"token {principal.token_id[:8]}")
