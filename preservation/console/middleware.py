"""For every console request: its language, and the security headers a page needs.

A plain ASGI middleware rather than a dependency: the language is a context
variable, and one set here is seen by the route, its dependencies and the
template, whichever thread they run in.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preservation.console import i18n

__all__ = ["LANG_COOKIE", "ConsoleMiddleware", "SECURITY_HEADERS"]

LANG_COOKIE = "lang"

#: No inline script or style anywhere in the console, so the policy can forbid both.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
        b"object-src 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class ConsoleMiddleware:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookie = None
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
                cookie = jar[LANG_COOKIE].value if LANG_COOKIE in jar else None
            except Exception:  # noqa: BLE001 - a malformed cookie header means no choice made
                cookie = None
        lang = i18n.choose(cookie, headers.get("accept-language"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                extra.append((b"content-language", lang.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        with i18n.using(lang):
            await self.app(scope, receive, send_with_headers)
