"""What every route receives: the context, the asker, and role checks.

The asker is resolved from the ``Authorization: Bearer`` header on every
request (``tokens.authenticate``); the routes then pass ``principal.tenant_id``
to the service functions, which scope their queries by it. An admin's
``tenant_id`` is None: every tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.context import Context
from preservation.retention import Actor
from preservation.tokens import Principal, authenticate

__all__ = ["Asker", "Ctx", "actor_of", "get_context", "needs"]

# auto_error=False: a missing header is our AuthenticationError (401 problem), not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A token from `preservation token create`.")


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(get_context)]


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    ctx = get_context(request)
    with session_scope(ctx.sessions) as s:
        return authenticate(s, request.headers.get("authorization"))


def needs(role: Role) -> Callable[..., Principal]:
    """A dependency: the asker, if their role allows ``role`` (else 403)."""

    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        principal.require(role)
        return principal

    check.__name__ = f"needs_{role.value}"
    return check


Asker = Annotated[Principal, Depends(needs(Role.CONSUMER))]


def actor_of(principal: Principal) -> Actor:
    return Actor(id=principal.token_id, label=principal.label or f"token {principal.token_id[:8]}")
