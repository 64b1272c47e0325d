"""The admin page: tenants, users and tokens, each scoped to the viewer's tenant and role."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import APIToken, ConsoleUser
from preservation.context import Context
from preservation.errors import AuthenticationError
from preservation.tokens import authenticate, create_token
from tests.console.conftest import PASSWORD, People

NEW_PASSWORD = "a different long passphrase"
NOTICE = re.compile(r'<p class="notice [a-z]+" role="status">([^<]*)</p>')


def post(client: TestClient, path: str, csrf: str, **data: str) -> httpx.Response:
    return client.post(f"/console/admin{path}", data={"csrf": csrf, **data}, follow_redirects=False)


@pytest.fixture
def two_tenants(people: People) -> People:
    people.add("root@safe.example", "admin", None)
    people.add("ann@museum.example", "curator", "museum")
    people.add("carl@museum.example", "consumer", "museum")
    people.add("sam@museum.example", "submitter", "museum")
    people.add("bob@library.example", "curator", "library")
    return people


def test_an_admin_sees_every_tenant_and_a_curator_only_their_own(
    client: TestClient, two_tenants: People, ctx: Context
) -> None:
    with session_scope(ctx.sessions) as s:
        create_token(s, role="submitter", tenant_id="library", label="library-scanner")
        create_token(s, role="consumer", tenant_id="museum", label="museum-website")
    two_tenants.log_in(client, "root@safe.example")
    page = client.get("/console/admin")
    assert page.status_code == 200
    for seen in ("museum", "library", "bob@library.example", "library-scanner", "museum-website"):
        assert seen in page.text
    assert 'action="/console/admin/tenants"' in page.text

    client.cookies.clear()
    two_tenants.log_in(client, "ann@museum.example")
    page = client.get("/console/admin")
    assert page.status_code == 200
    assert "ann@museum.example" in page.text and "carl@museum.example" in page.text
    assert "bob@library.example" not in page.text and "root@safe.example" not in page.text
    # Tokens are an admin's (as in the API): a curator sees none, not even their own tenant's.
    assert "museum-website" not in page.text and "library-scanner" not in page.text
    assert 'action="/console/admin/tenants"' not in page.text
    # A curator gives only the roles below their own.
    assert 'value="admin"' not in page.text and 'value="curator"' not in page.text
    assert 'value="submitter"' in page.text


@pytest.mark.parametrize("email", ["carl@museum.example", "sam@museum.example"])
def test_consumers_and_submitters_get_the_403_page(
    client: TestClient, two_tenants: People, email: str
) -> None:
    csrf = two_tenants.log_in(client, email)
    r = client.get("/console/admin")
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert 'href="/console/admin"' not in client.get("/console/").text
    r = post(client, "/users", csrf, email="eve@museum.example", role="consumer", password=PASSWORD)
    assert r.status_code == 403


def test_a_curator_adds_users_of_their_own_tenant_only(
    client: TestClient, two_tenants: People, ctx: Context
) -> None:
    csrf = two_tenants.log_in(client, "ann@museum.example")
    # The tenant the form names is not the curator's to choose.
    r = post(
        client,
        "/users",
        csrf,
        email=" Dora@Museum.Example ",
        role="submitter",
        password=PASSWORD,
        tenant="library",
    )
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/admin?done=user-added")
    page = client.get(r.headers["location"])
    assert "dora@museum.example" in page.text and 'class="notice ok"' in page.text
    with session_scope(ctx.sessions) as s:
        dora = s.scalar(select(ConsoleUser).where(ConsoleUser.email == "dora@museum.example"))
        assert dora is not None and dora.tenant_id == "museum"

    # Their own role or above: refused outright (a second curator is an admin's to make).
    for role in ("admin", "curator"):
        r = post(client, "/users", csrf, email="eve@museum.example", role=role, password=PASSWORD)
        assert r.status_code == 403, role
        assert "managed by administrators only" in r.text
    # Mistakes in the form come back with the form, and change nothing.
    r = post(
        client, "/users", csrf, email="dora@museum.example", role="consumer", password=PASSWORD
    )
    assert r.status_code == 409 and 'class="notice error"' in r.text
    r = post(client, "/users", csrf, email="eve@museum.example", role="consumer", password="short")
    assert r.status_code == 400 and 'value="eve@museum.example"' in r.text
    assert 'value="short"' not in r.text  # a password is never sent back
    r = post(client, "/users", csrf, email="eve@museum.example", role="ruler", password=PASSWORD)
    assert r.status_code == 400
    with session_scope(ctx.sessions) as s:
        assert (
            s.scalar(select(ConsoleUser).where(ConsoleUser.email == "eve@museum.example")) is None
        )


def test_an_admin_adds_tenants_and_users_of_any_tenant(
    client: TestClient, two_tenants: People, ctx: Context
) -> None:
    csrf = two_tenants.log_in(client, "root@safe.example")
    r = post(client, "/tenants", csrf, id="archive", name="The State Archive")
    assert r.status_code == 303
    assert "The State Archive" in client.get(r.headers["location"]).text
    r = post(client, "/tenants", csrf, id="Bad Id", name="x")
    assert r.status_code == 400 and 'class="notice error"' in r.text
    r = post(
        client,
        "/users",
        csrf,
        email="fay@archive.example",
        role="curator",
        password=PASSWORD,
        tenant="archive",
    )
    assert r.status_code == 303
    r = post(client, "/users", csrf, email="gus@safe.example", role="admin", password=PASSWORD)
    assert r.status_code == 303
    # An admin has no tenant: naming one is a mistake in the form.
    r = post(
        client,
        "/users",
        csrf,
        email="hal@safe.example",
        role="admin",
        password=PASSWORD,
        tenant="archive",
    )
    assert r.status_code == 400
    with session_scope(ctx.sessions) as s:
        rows = dict(s.execute(select(ConsoleUser.email, ConsoleUser.tenant_id)).all())
    assert rows["fay@archive.example"] == "archive" and rows["gus@safe.example"] is None
    assert "hal@safe.example" not in rows


def test_new_passwords_and_disabling_end_sessions_and_stop_at_the_tenant(
    client: TestClient, ctx: Context, two_tenants: People
) -> None:
    from preservation.api import create_app

    with TestClient(create_app(ctx=ctx), raise_server_exceptions=False) as carl:
        two_tenants.log_in(carl, "carl@museum.example")
        csrf = two_tenants.log_in(client, "ann@museum.example")
        for path in ("/users/password", "/users/disable"):
            r = post(client, path, csrf, email="bob@library.example", password=NEW_PASSWORD)
            assert r.status_code == 404, path
            assert "bob@library.example" not in r.text
        r = post(client, "/users/password", csrf, email="carl@museum.example", password="short")
        assert r.status_code == 400
        assert carl.get("/console/", follow_redirects=False).status_code == 200

        r = post(
            client, "/users/password", csrf, email="carl@museum.example", password=NEW_PASSWORD
        )
        assert r.status_code == 303
        assert carl.get("/console/", follow_redirects=False).status_code == 303
        carl.cookies.clear()
        two_tenants.log_in(carl, "carl@museum.example", NEW_PASSWORD)

        r = post(client, "/users/disable", csrf, email="carl@museum.example")
        assert r.status_code == 303
        page = client.get(r.headers["location"])
        assert "carl@museum.example" in page.text and 'class="badge bad"' in page.text
        assert carl.get("/console/", follow_redirects=False).status_code == 303
    with session_scope(ctx.sessions) as s:
        bob = s.scalar(select(ConsoleUser).where(ConsoleUser.email == "bob@library.example"))
        assert bob is not None and bob.disabled_at is None and bob.session_epoch == 1


def test_tokens_are_an_admins_as_in_the_api_and_shown_once(
    client: TestClient, ctx: Context, two_tenants: People
) -> None:
    with session_scope(ctx.sessions) as s:
        theirs = create_token(s, role="consumer", tenant_id="library", label="theirs").token.id
    csrf = two_tenants.log_in(client, "ann@museum.example")
    # A curator neither sees nor makes nor revokes tokens (the API's tokens are admin-only).
    assert "theirs" not in client.get("/console/admin").text
    assert post(client, "/tokens", csrf, role="submitter", label="scanner").status_code == 403
    assert post(client, f"/tokens/{theirs}/revoke", csrf).status_code == 403

    client.cookies.clear()
    csrf = two_tenants.log_in(client, "root@safe.example")
    r = post(client, "/tokens", csrf, role="submitter", label="scanner", tenant="museum")
    assert r.status_code == 201
    secret = re.search(r'value="(pvt_[^"]+)"', r.text)
    assert secret, r.text
    assert r.headers["cache-control"] == "no-store"
    with session_scope(ctx.sessions) as s:
        who = authenticate(s, f"Bearer {secret.group(1)}")
        assert (who.tenant_id, who.role.value, who.label) == ("museum", "submitter", "scanner")
        made = who.token_id
    page = client.get("/console/admin")
    assert "scanner" in page.text and "theirs" in page.text and secret.group(1) not in page.text
    r = post(client, f"/tokens/{made}/revoke", csrf)
    assert r.status_code == 303
    assert 'class="notice ok"' in client.get(r.headers["location"]).text
    with session_scope(ctx.sessions) as s:
        with pytest.raises(AuthenticationError):
            authenticate(s, f"Bearer {secret.group(1)}")
        row = s.get(APIToken, theirs)
        assert row is not None and row.revoked_at is None


def test_an_admin_makes_tokens_for_any_tenant_and_admin_tokens(
    client: TestClient, ctx: Context, two_tenants: People
) -> None:
    csrf = two_tenants.log_in(client, "root@safe.example")
    assert post(client, "/tokens", csrf, role="admin", label="ops").status_code == 201
    assert post(client, "/tokens", csrf, role="curator", tenant="library").status_code == 201
    assert post(client, "/tokens", csrf, role="curator").status_code == 400
    assert post(client, "/tokens", csrf, role="consumer", tenant="nowhere").status_code == 404
    with session_scope(ctx.sessions) as s:
        made = {(t.role.value, t.tenant_id) for t in s.scalars(select(APIToken))}
    assert made == {("admin", None), ("curator", "library")}


def test_changes_need_the_csrf_token(client: TestClient, ctx: Context, two_tenants: People) -> None:
    two_tenants.log_in(client, "ann@museum.example")
    r = client.post(
        "/console/admin/users/disable",
        data={"email": "carl@museum.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    with session_scope(ctx.sessions) as s:
        carl = s.scalar(select(ConsoleUser).where(ConsoleUser.email == "carl@museum.example"))
        assert carl is not None and carl.disabled_at is None


def test_a_link_cannot_make_the_notice_name_someone_not_there(
    client: TestClient, two_tenants: People
) -> None:
    two_tenants.log_in(client, "ann@museum.example")

    def notices(query: str) -> list[str]:
        return NOTICE.findall(client.get(f"/console/admin?{query}").text)

    assert notices("done=user-added&subject=mallory%40evil.example") == ["User added."]
    assert notices("done=user-added&subject=carl%40museum.example") == [
        "User carl@museum.example added."
    ]
    assert notices("done=nonsense") == []


def test_the_page_speaks_dutch_and_french(client: TestClient, two_tenants: People) -> None:
    two_tenants.log_in(client, "root@safe.example")
    nl = client.get("/console/admin", headers={"Accept-Language": "nl-BE"})
    fr = client.get("/console/admin", headers={"Accept-Language": "fr-BE"})
    assert "Gebruikers" in nl.text and "Utilisateurs" in fr.text


def test_curator_and_admin_accounts_are_managed_by_admins_only(
    client: TestClient, ctx: Context, two_tenants: People
) -> None:
    """A curator who could reset a peer curator could approve their own disposal as the peer."""
    two_tenants.add("cy@museum.example", "curator", "museum")
    csrf = two_tenants.log_in(client, "ann@museum.example")
    page = client.get("/console/admin").text
    # The page offers only what the curator may do: no reset or disable of a curator.
    assert 'option value="cy@museum.example"' not in page
    assert 'name="email" value="cy@museum.example"' not in page
    assert 'name="email" value="ann@museum.example"' not in page
    assert 'name="email" value="carl@museum.example"' in page
    for path in ("/users/password", "/users/disable"):
        for email in ("cy@museum.example", "ann@museum.example"):
            r = post(client, path, csrf, email=email, password=NEW_PASSWORD)
            assert r.status_code == 403, (path, email)
            assert "text/html" in r.headers["content-type"]
            assert "managed by administrators only" in r.text
    nl = post(client, "/users/disable", csrf, email="cy@museum.example")
    with session_scope(ctx.sessions) as s:
        cy = s.scalar(select(ConsoleUser).where(ConsoleUser.email == "cy@museum.example"))
        assert cy is not None and cy.disabled_at is None and cy.session_epoch == 1
    assert nl.status_code == 403

    # An admin manages curators and admins alike, but never disables themselves.
    client.cookies.clear()
    two_tenants.add("max@safe.example", "admin", None)
    csrf = two_tenants.log_in(client, "root@safe.example")
    page = client.get("/console/admin").text
    assert 'name="email" value="root@safe.example"' not in page
    assert 'name="email" value="cy@museum.example"' in page
    r = post(client, "/users/disable", csrf, email="root@safe.example")
    assert r.status_code == 400 and "cannot disable your own account" in r.text
    assert client.get("/console/", follow_redirects=False).status_code == 200
    r = post(client, "/users/password", csrf, email="cy@museum.example", password=NEW_PASSWORD)
    assert r.status_code == 303
    assert post(client, "/users/disable", csrf, email="cy@museum.example").status_code == 303
    assert post(client, "/users/disable", csrf, email="max@safe.example").status_code == 303
    with session_scope(ctx.sessions) as s:
        gone = s.scalars(
            select(ConsoleUser.email).where(ConsoleUser.disabled_at.is_not(None))
        ).all()
    assert sorted(gone) == ["cy@museum.example", "max@safe.example"]
