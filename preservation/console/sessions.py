"""Who is logged in: a signed session cookie, its CSRF token, and the secret behind both.

The cookie holds the user's id, their ``session_epoch`` and a random CSRF
secret, signed with itsdangerous (HMAC-SHA1 over a key derived from the
console secret) and time-limited. Nothing in it is secret, and nothing in it
can be changed: a changed byte fails the signature. It is ``HttpOnly``
(scripts cannot read it), ``SameSite=Strict`` (no other site's page can send
it), limited to ``/console`` and ``Secure`` when the request came over HTTPS.
Each request checks the epoch against the catalogue, so a password change,
a disable or a logout elsewhere ends the session at once.

Every state-changing request carries the CSRF secret back: forms in a hidden
``csrf`` field, htmx in an ``X-CSRF-Token`` header (set once on ``<body>``).
``SameSite=Strict`` already stops a cross-site form from carrying the cookie;
the token is the second lock, for browsers and proxies that get SameSite wrong.
Before login there is no session, so the login form's token rides in a
short-lived signed cookie of its own (double submit).

The signing key is ``PRESERVATION_CONSOLE_SECRET`` if set (every API replica
must share it), else a random key made once in ``<home>/console.key`` (mode
0600), which an embedded installation keeps across restarts.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from preservation.config import Settings

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "SESSION_SECONDS",
    "Session",
    "Signer",
    "console_secret",
]

COOKIE = "pv_session"
LOGIN_COOKIE = "pv_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
PATH = "/console"
#: A working day; the person logs in again the next morning.
SESSION_SECONDS = 10 * 3600
LOGIN_FORM_SECONDS = 3600


def console_secret(settings: Settings) -> bytes:
    configured = getattr(settings, "console_secret", None)
    if configured:
        return str(configured).encode("utf-8")
    path: Path = settings.home_dir / "console.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


@dataclass(frozen=True)
class Session:
    user_id: str
    epoch: int
    csrf: str


class Signer:
    """Signs and reads the two cookies; one per app, built from the console secret."""

    def __init__(self, secret: bytes) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="preservation.console.session")
        self._login = URLSafeTimedSerializer(secret, salt="preservation.console.login")

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._session.loads(raw, max_age=SESSION_SECONDS)
            return Session(str(data["u"]), int(data["e"]), str(data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def start(self, response: Response, request: Request, user_id: str, epoch: int) -> Session:
        session = Session(user_id, epoch, secrets.token_urlsafe(32))
        value = self._session.dumps({"u": user_id, "e": epoch, "c": session.csrf})
        _set(response, request, COOKIE, value, SESSION_SECONDS)
        response.delete_cookie(LOGIN_COOKIE, path=PATH)
        return session

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")

    def login_csrf(self, request: Request) -> tuple[str, bool]:
        """The login form's token: the one in its cookie, or a new one (``True``: set it)."""
        raw = request.cookies.get(LOGIN_COOKIE)
        if raw:
            try:
                token: str = self._login.loads(raw, max_age=LOGIN_FORM_SECONDS)
                return token, False
            except BadSignature:
                pass
        return secrets.token_urlsafe(32), True

    def set_login_csrf(self, response: Response, request: Request, token: str) -> None:
        _set(response, request, LOGIN_COOKIE, self._login.dumps(token), LOGIN_FORM_SECONDS)

    def login_csrf_ok(self, request: Request, sent: str | None) -> bool:
        raw = request.cookies.get(LOGIN_COOKIE)
        if not raw or not sent:
            return False
        try:
            token: str = self._login.loads(raw, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return False
        return hmac.compare_digest(token, sent)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
