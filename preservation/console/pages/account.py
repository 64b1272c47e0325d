"""Logging in and out, and the language switch: the routes that need no session.

Logging out ends the person's sessions everywhere (their session epoch moves
on), not just this browser's cookie: a copy of the cookie taken earlier is
refused from then on.
"""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from preservation.api.deps import get_context
from preservation.catalog.database import session_scope
from preservation.console import i18n, render
from preservation.console.deps import CsrfRefused, signer
from preservation.console.i18n import gettext as _
from preservation.console.middleware import LANG_COOKIE
from preservation.console.sessions import CSRF_FIELD, PATH, Session, csrf_ok
from preservation.errors import AuthenticationError
from preservation.users import LOCK_SECONDS, end_sessions, log_in, user_for_session

router = APIRouter(include_in_schema=False)


def safe_next(value: str | None) -> str:
    """Only a console path of ours: never an open redirect to another site.

    ``value`` arrives decoded once (a query value, a form field), which is the
    URL as the browser wrote it; it is returned as it came. Decoding it again
    would turn the page's own ``%26`` or ``%25`` into an ``&`` or a lone ``%``.
    The check looks at the decoded form too, so an encoded ``/`` or ``\\``
    does not slip by it.
    """
    target = value or ""
    for form in (target, unquote(target)):
        if not form.startswith(PATH + "/") or form.startswith("//") or "\\" in form:
            return PATH + "/"
        if form.startswith(PATH + "/login"):
            return PATH + "/"
    return target


def _login_page(
    request: Request, *, next_path: str, email: str = "", failure: str = "", status: int = 200
) -> Response:
    token, fresh = signer(request).login_csrf(request)
    body = render.page(
        request,
        "login.html",
        {"login_csrf": token, "next_path": next_path, "email": email, "failure": failure},
        status=status,
    )
    if fresh:
        signer(request).set_login_csrf(body, request, token)
    if status == 429:
        body.headers["Retry-After"] = str(LOCK_SECONDS)
    return body


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    session = signer(request).read(request)
    if session is not None:
        with session_scope(get_context(request).sessions) as db:
            if user_for_session(db, session.user_id, session.epoch) is not None:
                return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")[:1024]
    next_path = safe_next(str(form.get("next") or ""))
    if not signer(request).login_csrf_ok(request, str(form.get(CSRF_FIELD) or "")):
        raise CsrfRefused()

    def attempt() -> tuple[str, int] | AuthenticationError:
        with session_scope(get_context(request).sessions) as db:
            try:
                result = log_in(db, email, password)
            except AuthenticationError as err:
                return err  # the scope still commits the failure count
            return result.user_id, result.epoch

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, AuthenticationError):
        locked = outcome.context.get("rule") == "login-locked"
        message = (
            _("Too many failed logins: this account is locked for a while. Try again later.")
            if locked
            else _("Wrong e-mail or password.")
        )
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            failure=message,
            status=429 if locked else 401,
        )
    user_id, epoch = outcome
    response = RedirectResponse(next_path, status_code=303)
    signer(request).start(response, request, user_id, epoch)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = signer(request).read(request)
    form = await request.form()
    sent = request.headers.get("X-CSRF-Token") or str(form.get(CSRF_FIELD) or "")
    if session is None or not csrf_ok(session, sent):
        raise CsrfRefused()

    def end(ended: Session) -> None:
        # Only a live session ends the others: a stale cookie (ended already) cannot
        # be replayed to log its owner out again and again.
        with session_scope(get_context(request).sessions) as db:
            if user_for_session(db, ended.user_id, ended.epoch) is not None:
                end_sessions(db, ended.user_id)

    await run_in_threadpool(end, session)
    response = RedirectResponse(PATH + "/login", status_code=303)
    signer(request).end(response)
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str | None = None) -> Response:  # noqa: A002
    """Remember the language for a year; the page comes back in it."""
    if code not in i18n.LANGUAGES:
        code = i18n.DEFAULT
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        path=PATH,
        samesite="strict",
        httponly=True,
        secure=request.url.scheme == "https",
    )
    return response
