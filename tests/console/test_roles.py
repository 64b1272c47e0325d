"""Roles, structurally: every console route is guarded, and a consumer changes nothing.

The page tests check each route they know; these walk the routers, so a route
added tomorrow is checked without anyone remembering to. A consumer reads and
asks for DIPs; every other POST is someone else's, and is refused with the
role's 403 (not the CSRF 403, not a 404: the ids in the paths are real).
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from preservation.catalog.database import session_scope
from preservation.catalog.models import Disposal
from preservation.console.deps import csrf_checked, viewer
from preservation.console.pages import ALL, account
from preservation.context import Context
from preservation.tokens import create_token
from tests.console.conftest import People, add_aip

CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The changing routes a consumer may use, each with the reason.
CONSUMER_MAY = {
    # Logging in needs no session at all: it is how one gets one.
    ("POST", "/console/login"),
    # Ending one's own sessions is everyone's right.
    ("POST", "/console/logout"),
    # Asking for a DIP is what a consumer is for (the role's one change).
    ("POST", "/console/aips/{aip_id}/dip"),
}


def _changing_routes() -> list[tuple[str, APIRoute]]:
    found: list[tuple[str, APIRoute]] = []
    for page in ALL:
        for route in page.router.routes:
            if isinstance(route, APIRoute):
                found.extend(
                    (method, route) for method in sorted((route.methods or set()) & CHANGING)
                )
    return found


def test_the_consumer_exceptions_are_routes_that_exist() -> None:
    """A renamed route must not leave a stale exception behind, letting its new name pass."""
    known = {(method, "/console" + route.path) for method, route in _changing_routes()}
    assert known >= CONSUMER_MAY


def test_a_consumer_is_refused_every_change_but_their_own(
    ctx: Context, client: TestClient, people: People
) -> None:
    people.add("carl@museum.example", "consumer", "museum")
    aip_id = add_aip(ctx, "museum", title="Minutes")
    with session_scope(ctx.sessions) as s:
        disposal = Disposal(
            tenant_id="museum",
            aip_id=aip_id,
            reason="duplicate",
            requested_by="u-1",
            requested_by_label="Ann",
        )
        s.add(disposal)
        s.flush()
        ids = {
            "aip_id": aip_id,
            "disposal_id": disposal.id,
            "token_id": create_token(s, role="consumer", tenant_id="museum").token.id,
        }
    csrf = people.log_in(client, "carl@museum.example")

    checked: list[str] = []
    for method, route in _changing_routes():
        template = "/console" + route.path
        if (method, template) in CONSUMER_MAY:
            continue
        names = set(re.findall(r"{(\w+)}", route.path))
        assert names <= ids.keys(), f"{template}: give the test a real {names - ids.keys()}"
        url = template.format(**ids)
        r = client.request(
            method,
            url,
            data={"csrf": csrf},
            headers={"X-CSRF-Token": csrf},
            follow_redirects=False,
        )
        assert r.status_code == 403, (method, url, r.status_code, r.text[:300])
        # The role's refusal, not the CSRF one: the token was right.
        assert "<code>role</code>" in r.text, (method, url)
        checked.append(template)
    assert "/console/admin/users" in checked and "/console/dashboard/audits" in checked
    # Still logged in, and still the consumer they were.
    assert client.get("/console/", follow_redirects=False).status_code == 200


@pytest.mark.parametrize("page", [p for p in ALL if p is not account], ids=lambda p: p.__name__)
def test_every_page_route_needs_a_viewer_and_checks_csrf(page: object) -> None:
    """``deps.router()`` puts both on every route; a router built otherwise would lose them."""
    routes = [r for r in page.router.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]
    assert routes
    for route in routes:
        calls = {d.call for d in route.dependant.dependencies}
        assert viewer in calls and csrf_checked in calls, route.path


def test_only_the_account_routes_need_no_session(client: TestClient) -> None:
    """Every console route mounted on the app, whichever module made it, is guarded."""
    open_routes = {r.path for r in account.router.routes if isinstance(r, APIRoute)}
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or not route.path.startswith("/console"):
            continue
        if route.path.removeprefix("/console") in open_routes:
            continue
        calls = {d.call for d in route.dependant.dependencies}
        assert viewer in calls and csrf_checked in calls, route.path
