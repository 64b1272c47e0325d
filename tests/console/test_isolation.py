"""Tenancy in the console: every page and action that takes an id is a 404 for another tenant.

The routes are walked from the console's own routers, so a page added later
is tried without anyone remembering to add it here; the test fails if a path
parameter appears that it has no id for. The intruder is a curator of
another tenant with a valid session and CSRF token, so a 404 is the tenancy
rule and not a missing login or token; the owner, by contrast, reaches every
GET with the same ids. Ids in forms rather than in the path (a migration's
AIP, a user's e-mail) are tried too.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation.audit.runs import start_audit
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, Disposal
from preservation.console import PREFIX, pages
from preservation.context import Context
from preservation.migrate import service as migrations
from preservation.retention import Actor, request_disposal
from preservation.tokens import create_token
from tests.api.test_isolation import _ready_dip
from tests.console.conftest import People, add_aip

ADMIN_ONLY = {f"{PREFIX}/admin/tokens/{{token_id}}/revoke"}


def _console_routes() -> list[tuple[str, str]]:
    return [
        (method, PREFIX + route.path)
        for module in pages.ALL
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods)
    ]


def test_every_console_route_with_an_id_is_404_for_another_tenant(
    client: TestClient, ctx: Context, people: People
) -> None:
    aip = add_aip(ctx, "museum", title="Private letters", external_identifier="SECRET-1")
    dip = _ready_dip(ctx, aip)
    with session_scope(ctx.sessions) as s:
        row = s.scalar(select(AIP).where(AIP.id == aip))
        assert row is not None
        row.retention_until = row.created_at
        s.flush()
        request_disposal(s, aip, "museum", Actor(id="user:x", label="alice"), reason="expired")
        disposal = s.scalar(select(Disposal.id))
        assert disposal
        audit = start_audit(s, ("site-a", "site-b"), "museum", "alice").audit_id
        policy, text = migrations.read_policy(None)
        migration = migrations.start_migration(
            s, policy, text, puid="fmt/11", tenant_id="museum", who="alice"
        ).migration_id
        token = create_token(s, role="consumer", tenant_id="museum", label="reader").token.id
    ids = {
        "aip_id": aip,
        "dip_id": dip,
        "disposal_id": disposal,
        "audit_id": audit,
        "migration_id": migration,
        "token_id": token,
    }
    people.add("alice@museum.example", "curator", "museum")
    people.add("mallory@archive.example", "curator", "archive")

    owner = TestClient(client.app, raise_server_exceptions=False)
    people.log_in(owner, "alice@museum.example")
    csrf = people.log_in(client, "mallory@archive.example")

    tried = []
    for method, path in _console_routes():
        params = re.findall(r"{(\w+)}", path)
        if not params or path == f"{PREFIX}/lang/{{code}}":
            continue
        if path in ADMIN_ONLY:
            # Refused by role before any id is looked at: nothing is revealed either.
            r = client.post(path.replace("{token_id}", ids["token_id"]), data={"csrf": csrf})
            assert r.status_code == 403, (path, r.status_code)
            continue
        url = path
        for name in params:
            assert name in ids, f"no id to try for {{{name}}} in {path}: add one to this test"
            url = url.replace(f"{{{name}}}", ids[name])
        if method == "GET":
            r = client.get(url, follow_redirects=False)
        else:
            r = client.post(url, data={"csrf": csrf, "reason": "mine now"}, follow_redirects=False)
        assert r.status_code == 404, (method, path, r.status_code, r.text[:300])
        assert "Private letters" not in r.text and "SECRET-1" not in r.text
        tried.append((method, path))
        if method == "GET":
            # A fragment's route sends a plain browser to its page: the owner lands there.
            assert owner.get(url).status_code == 200, path
    assert len(tried) >= 10, tried

    # Ids in the query or the form: another tenant's AIP to migrate, its user to reset.
    r = client.get(f"{PREFIX}/migrations/new", params={"aip": aip})
    assert r.status_code == 404, r.text[:300]
    r = client.post(
        f"{PREFIX}/admin/users/password",
        data={"csrf": csrf, "email": "alice@museum.example", "password": "x" * 20},
    )
    assert r.status_code == 404, r.text[:300]
    r = client.post(
        f"{PREFIX}/admin/users/disable", data={"csrf": csrf, "email": "alice@museum.example"}
    )
    assert r.status_code == 404, r.text[:300]
    # Nothing the intruder did changed anything, and their searches find nothing.
    with session_scope(ctx.sessions) as s:
        row = s.get(AIP, aip)
        assert row is not None and row.state.value == "active"
    r = client.get(f"{PREFIX}/search", params={"q": "private"})
    assert r.status_code == 200 and "Private letters" not in r.text
    assert "Private letters" not in client.get(f"{PREFIX}/").text
    assert owner.get(f"{PREFIX}/", follow_redirects=False).status_code == 200
