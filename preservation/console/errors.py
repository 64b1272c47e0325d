"""Errors as pages: the same exception tree as the API, shown as HTML under ``/console``.

The API's handlers (``api/problems.py``) stay in charge of every other path;
for a console path the status is the one the API would give, and the page
says what went wrong in the viewer's language, with the service's own
message (which names the file, the field or the rule) beneath. A request for
another tenant's AIP gets the same 404 page as a request for no AIP at all.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from preservation.api.problems import STATUS
from preservation.console import render
from preservation.console.deps import CsrfRefused, LoginRequired
from preservation.console.i18n import gettext as _
from preservation.errors import PreservationError

__all__ = ["error_page", "install_error_pages"]


def _titles() -> dict[int, str]:
    return {
        400: _("The request is not valid"),
        401: _("Please log in"),
        403: _("You may not do this"),
        404: _("Not found"),
        405: _("Not allowed here"),
        409: _("This conflicts with the current state"),
        410: _("This is gone"),
        413: _("This is too large"),
        415: _("This kind of file is not accepted"),
        416: _("That range is not available"),
        422: _("The submission is not valid"),
        500: _("Something went wrong on our side"),
        503: _("Not available right now; try again in a moment"),
    }


def error_page(request: Request, status: int, detail: str, *, rule: str | None = None) -> Response:
    titles = _titles()
    if status == 404:
        # Never say whether the thing exists for someone else.
        detail = _("There is nothing here, or it is not yours to see.")
    return render.page(
        request,
        "error.html",
        {
            "status": status,
            "title": titles.get(status, titles[500]),
            "detail": detail,
            "rule": rule,
        },
        status=status,
    )


def _is_console(request: Request, prefix: str) -> bool:
    path = request.url.path
    return path == prefix or path.startswith(prefix + "/")


def install_error_pages(app: FastAPI, prefix: str) -> None:
    api_handlers: dict[Any, Any] = dict(app.exception_handlers)

    def wrap(exc_class: Any, console_handler: Any) -> None:
        fallback = api_handlers.get(exc_class)

        async def handler(request: Request, exc: Exception) -> Response:
            if _is_console(request, prefix) or fallback is None:
                page: Response = console_handler(request, exc)
                return page
            response: Response = await fallback(request, exc)
            return response

        app.add_exception_handler(exc_class, handler)

    def on_preservation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PreservationError)
        status = next((code for cls, code, _t in STATUS if isinstance(exc, cls)), 500)
        return error_page(request, status, exc.message, rule=exc.context.get("rule"))

    def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        )
        return error_page(request, 400, detail, rule="invalid")

    def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code, str(exc.detail or ""))

    def on_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = f"{prefix}/login?next={exc.next_path}"
        if render.is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    def on_csrf(request: Request, exc: Exception) -> Response:
        return error_page(
            request,
            403,
            _(
                "The form was not sent from this console (its security token is missing or "
                "stale). Reload the page and try again."
            ),
            rule="csrf",
        )

    wrap(PreservationError, on_preservation)
    wrap(RequestValidationError, on_validation)
    wrap(StarletteHTTPException, on_http)
    app.add_exception_handler(LoginRequired, lambda r, e: on_login(r, e))
    app.add_exception_handler(CsrfRefused, lambda r, e: on_csrf(r, e))
