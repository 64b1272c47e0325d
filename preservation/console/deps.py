"""What every console route receives: the viewer, checked CSRF, the request's transaction.

Every router of the console is built with :func:`router`, which puts two
dependencies on every route, so no page can forget them:

- the viewer: the logged-in user as a :class:`~preservation.tokens.Principal`
  (the same one a token gives, so service functions scope a person as they
  scope a program); no valid session means a redirect to the login page;
- the CSRF check on every method that changes something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request

from preservation.api.deps import Db, get_context
from preservation.catalog.models import Role
from preservation.console.sessions import CSRF_FIELD, CSRF_HEADER, Session, Signer, csrf_ok
from preservation.errors import ForbiddenError
from preservation.tokens import Principal
from preservation.users import user_for_session

__all__ = ["LoginRequired", "Viewer", "csrf_checked", "router", "signer", "viewer"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """No valid session: the error handler sends the browser to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A changing request without the session's CSRF token: a 403 page."""


def signer(request: Request) -> Signer:
    existing: Signer | None = getattr(request.app.state, "console_signer", None)
    if existing is None:
        from preservation.console.sessions import console_secret

        existing = Signer(console_secret(get_context(request).settings))
        request.app.state.console_signer = existing
    return existing


def _next_of(request: Request) -> str:
    """Where to come back to after logging in: the page the person was on.

    A plain GET is that page. Anything else (an htmx fragment, a form's POST)
    is not a page to land on: htmx names the page it was sent from in
    ``HX-Current-URL`` (a full URL, the browser's to write, so it passes the
    same check as a ``next`` typed into the login link); a form without htmx
    comes back to the dashboard.
    """
    # account imports this module (signer, CsrfRefused): imported here, not at the top.
    from preservation.console.pages.account import safe_next

    if request.method in SAFE_METHODS and request.headers.get("HX-Request") != "true":
        query = request.url.query
        return safe_next(request.url.path + (f"?{query}" if query else ""))
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    return safe_next(current.path + (f"?{current.query}" if current.query else ""))


def viewer(request: Request, db: Db) -> Principal:
    session = signer(request).read(request)
    principal = user_for_session(db, session.user_id, session.epoch) if session else None
    if principal is None or session is None:
        # One query value: the page's own ``?`` and ``&`` must not become the login link's.
        raise LoginRequired(quote(_next_of(request), safe="/"))
    request.state.viewer = principal
    request.state.session = session
    request.state.csrf = session.csrf
    return principal


async def csrf_checked(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    session: Session | None = getattr(request.state, "session", None)
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if session is None or not csrf_ok(session, sent):
        raise CsrfRefused()


Viewer = Annotated[Principal, Depends(viewer)]


def needs(role: Role) -> Callable[..., Principal]:
    """The viewer, if their role allows ``role``; else the 403 page."""

    def check(principal: Viewer) -> Principal:
        if not principal.role.allows(role):
            raise ForbiddenError(
                f"this needs the {role.value} role; {principal.label} is {principal.role.value}",
                rule="role",
            )
        return principal

    return check


def router(**kwargs: Any) -> APIRouter:
    """A console router: every route needs a viewer and, when it changes things, CSRF."""
    return APIRouter(
        include_in_schema=False,
        dependencies=[Depends(viewer), Depends(csrf_checked)],
        **kwargs,
    )
