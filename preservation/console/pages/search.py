"""The search page: ``GET /api/v1/aips`` as a form, with the same query and the same cursor.

The form is a plain GET, so a search is a link one can keep or send, and it
works without JavaScript; with htmx the results alone are swapped and the URL
pushed, so the back button still walks through the searches.

Paging is the service's cursor (newest first), never an offset. A cursor
only goes forward, so "previous" is the trail of cursors that led here, kept
in the link (``back``) rather than in a session: the page stays a plain URL.
The trail keeps the last :data:`TRAIL` pages; further back, "first page".

A mistyped date or PUID is the viewer's mistake, said on the page beside the
form with a 400. An htmx request gets the same message with a 200 instead:
htmx does not swap an error response into the page, and the message must be
seen where the results would have been.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from starlette.responses import Response

from preservation import lookup
from preservation.api.deps import Db
from preservation.catalog.search import SearchQuery, formats_of
from preservation.console import render
from preservation.console.deps import Viewer
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.console.pages.dashboard import state_labels
from preservation.errors import InvalidRequestError

router = console_router()

#: Results per page.
PER_PAGE = 25
#: Cursors kept for "previous"; older pages are reached from the first one.
TRAIL = 20
_PUID = r"^[a-z-]+/[0-9]+$"


@dataclass
class Form:
    """What was typed, as typed (shown back in the form), and what is wrong with it."""

    q: str = ""
    puid: str = ""
    external_identifier: str = ""
    created_from: str = ""
    created_to: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.q or self.puid or self.external_identifier or self.created_from or self.created_to
        )

    def params(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("q", self.q),
                ("puid", self.puid),
                ("external_identifier", self.external_identifier),
                ("from", self.created_from),
                ("to", self.created_to),
            )
            if v
        }


def _day(form: Form, name: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        form.errors[name] = _(
            "%(value)s is not a date: write it as YYYY-MM-DD, e.g. 2024-03-31."
        ) % {"value": value[:40]}
        return None


def _query(form: Form, tenant_id: str | None) -> SearchQuery | None:
    """The service's query, or None when the form has mistakes (each one in ``form.errors``)."""
    import re

    if form.puid and not re.fullmatch(_PUID, form.puid):
        form.errors["puid"] = _(
            "%(value)s is not a PRONOM id: it looks like fmt/353 or x-fmt/392."
        ) % {"value": form.puid[:40]}
    start = _day(form, "from", form.created_from)
    end = _day(form, "to", form.created_to)
    if start and end and end < start:
        form.errors["to"] = _("The end date is before the start date.")
    if form.errors:
        return None
    return SearchQuery(
        tenant_id=tenant_id,
        q=form.q or None,
        puid=form.puid or None,
        external_identifier=form.external_identifier or None,
        # Whole days in UTC, the end day included.
        created_after=datetime.combine(start, time(), UTC) if start else None,
        created_before=datetime.combine(end + timedelta(days=1), time(), UTC) if end else None,
    )


def _title(summary: lookup.AIPSummary) -> str:
    titles = (summary.descriptive or {}).get("title") or []
    return next((t for t in titles if t.strip()), "") or summary.source_bag_name


def _link(form: Form, cursor: str | None, back: list[str]) -> str:
    params: list[tuple[str, str]] = list(form.params().items())
    if cursor:
        params.append(("cursor", cursor))
    params += [("back", c) for c in back]
    return "/console/search" + (f"?{urlencode(params)}" if params else "")


@router.get("/search")
def search(
    request: Request,
    db: Db,
    viewer: Viewer,
    q: Annotated[str, Query(max_length=500)] = "",
    puid: Annotated[str, Query(max_length=32)] = "",
    external_identifier: Annotated[str, Query(max_length=255)] = "",
    created_from: Annotated[str, Query(alias="from", max_length=40)] = "",
    created_to: Annotated[str, Query(alias="to", max_length=40)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    back: Annotated[list[str], Query(max_length=TRAIL)] = [],  # noqa: B006 - copied by FastAPI
) -> Response:
    form = Form(
        q=q.strip(),
        puid=puid.strip(),
        external_identifier=external_identifier.strip(),
        created_from=created_from.strip(),
        created_to=created_to.strip(),
    )
    query = _query(form, viewer.tenant_id)
    page: lookup.AIPPage | None = None
    if query is not None:
        try:
            page = lookup.search(db, query, cursor=cursor, limit=PER_PAGE)
        except InvalidRequestError:
            # A cursor that is not ours (edited, or cut by a mail client): start again.
            form.errors["cursor"] = _(
                "This page of results can no longer be found; the search starts again from "
                "the newest."
            )
            page = lookup.search(db, query, limit=PER_PAGE)
            cursor, back = None, []
    rows: list[dict[str, Any]] = []
    if page is not None:
        formats = formats_of(db, [a.aip_id for a in page.items])
        rows = [
            {"aip": a, "title": _title(a), "formats": formats.get(a.aip_id, {})} for a in page.items
        ]
    trail = [*back, cursor] if cursor else list(back)
    context = {
        "section": "search",
        "states": state_labels(),
        "form": form,
        "rows": rows,
        "page": page,
        "first_page": cursor is None,
        "next_url": _link(form, page.next_cursor, trail[-TRAIL:])
        if page and page.next_cursor
        else None,
        "previous_url": _link(form, back[-1] if back else None, back[:-1])
        if cursor is not None
        else None,
        "first_url": _link(form, None, []) if len(back) >= 1 else None,
    }
    invalid = bool(form.errors) and page is None
    htmx = render.is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true"
    if htmx:
        return render.page(request, "search/_results.html", context)
    return render.page(request, "search.html", context, status=400 if invalid else 200)
