"""Pages from templates: one autoescaped Jinja environment, gettext in the request's language.

A page is rendered whole for a normal request and as its fragment alone
when htmx asks (``HX-Request``), so the same route serves a first load
without JavaScript and a live refresh with it. Templates get the viewer,
the CSRF token, the language and the switch's choices, and a few filters
(``when``: dates in the viewer's language, ``size``: bytes in binary units).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from preservation.console import i18n

__all__ = ["TEMPLATES", "env", "is_htmx", "page"]

TEMPLATES = Path(__file__).parent / "templates"


def _when(value: datetime | date | str | None, style: str = "medium") -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(value, datetime):
        return str(format_datetime(value, format=style, locale=i18n.current(), tzinfo=value.tzinfo))
    return str(format_date(value, format=style, locale=i18n.current()))


def _number(value: int | float | None) -> str:
    return "—" if value is None else format_decimal(value, locale=i18n.current())


def _size(value: int | float | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            text = format_decimal(
                round(size, 1) if unit != "B" else int(size), locale=i18n.current()
            )
            return f"{text} {unit}"
        size /= 1024
    return f"{value} B"


def _make_env() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    environment.filters["when"] = _when
    environment.filters["number"] = _number
    environment.filters["size"] = _size
    return environment


env = _make_env()


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` in the request's language; base context from ``request.state``."""
    state = request.state
    values: dict[str, Any] = {
        "request": request,
        "viewer": getattr(state, "viewer", None),
        "csrf": getattr(state, "csrf", ""),
        "lang": i18n.current(),
        "languages": i18n.LANGUAGES,
        "htmx": is_htmx(request),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    values.update(context or {})
    html = env.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=headers)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Vary", "Accept-Language, Cookie, HX-Request")
    return response
