"""Logging in: argon2id hashes, the session cookie's flags, lockout, CSRF, isolation of sessions."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import ConsoleUser, utcnow
from preservation.context import Context
from preservation.users import MAX_FAILURES, set_password
from tests.console.conftest import PASSWORD, People, csrf_of


def test_a_password_is_kept_only_as_an_argon2id_hash(ctx: Context, people: People) -> None:
    people.add("ann@museum.example", "curator", "museum")
    with session_scope(ctx.sessions) as s:
        user = s.scalar(select(ConsoleUser))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_the_session_cookie_is_signed_httponly_and_strict(
    client: TestClient, people: People
) -> None:
    people.add("ann@museum.example", "curator", "museum")
    page = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"email": "ann@museum.example", "password": PASSWORD, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "pv_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert client.get("/console/").status_code == 200
    # A changed byte is a forged cookie: back to the login page.
    value = client.cookies.get("pv_session")
    assert value
    client.cookies.set(
        "pv_session", value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1], path="/console"
    )
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_a_login_is_locked_after_repeated_failures_and_a_new_password_ends_sessions(
    ctx: Context, client: TestClient, people: People
) -> None:
    people.add("ann@museum.example", "curator", "museum")
    token = csrf_of(client.get("/console/login").text)

    def attempt(password: str) -> int:
        r = client.post(
            "/console/login",
            data={"email": "ann@museum.example", "password": password, "csrf": token},
            follow_redirects=False,
        )
        return r.status_code

    assert [attempt("wrong guess") for _ in range(MAX_FAILURES)] == [401] * MAX_FAILURES
    # Locked: even the right password is refused, without being looked at.
    assert attempt(PASSWORD) == 429
    with session_scope(ctx.sessions) as s:
        user = s.scalar(select(ConsoleUser))
        assert user is not None and user.locked_until is not None
        user.locked_until = utcnow() - timedelta(seconds=1)  # the while has passed
    assert attempt(PASSWORD) == 303
    assert client.get("/console/", follow_redirects=False).status_code == 200
    with session_scope(ctx.sessions) as s:
        set_password(s, "ann@museum.example", "another long passphrase")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_is_refused(client: TestClient, people: People) -> None:
    people.add("ann@museum.example", "curator", "museum")
    page = client.get("/console/login")
    # The login form itself: no token, no login, even with the right password.
    r = client.post("/console/login", data={"email": "ann@museum.example", "password": PASSWORD})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    people.log_in(client, "ann@museum.example")
    r = client.post("/console/logout", follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/console/", follow_redirects=False).status_code == 200
    r = client.post(
        "/console/logout",
        data={"csrf": csrf_of(client.get("/console/").text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert page.status_code == 200


def test_the_login_never_redirects_off_the_console(client: TestClient, people: People) -> None:
    people.add("ann@museum.example", "curator", "museum")
    for target in ("https://evil.example/", "//evil.example/", "/api/v1/aips", "/console\\@evil"):
        client.cookies.clear()
        page = client.get("/console/login")
        r = client.post(
            "/console/login",
            data={
                "email": "ann@museum.example",
                "password": PASSWORD,
                "csrf": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/console/", target


def test_the_language_follows_accept_language_and_the_switch(
    client: TestClient, people: People
) -> None:
    r = client.get("/console/login", headers={"Accept-Language": "fr-BE,fr;q=0.9,en;q=0.5"})
    assert r.headers["content-language"] == "fr" and '<html lang="fr">' in r.text
    r = client.get("/console/lang/nl?next=/console/login", follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/console/login", headers={"Accept-Language": "fr"})
    assert r.headers["content-language"] == "nl"


def test_logging_out_ends_the_session_even_for_a_copied_cookie(
    client: TestClient, people: People
) -> None:
    people.add("ann@museum.example", "curator", "museum")

    def put_back(cookie: str) -> None:
        client.cookies.clear()
        client.cookies.set("pv_session", cookie, path="/console")

    csrf = people.log_in(client, "ann@museum.example")
    copied = client.cookies.get("pv_session")
    assert copied
    r = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    # The browser forgot it; someone who copied it earlier puts it back.
    put_back(copied)
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    # Replaying the ended cookie's logout does not end the next session.
    client.cookies.clear()
    people.log_in(client, "ann@museum.example")
    fresh = client.cookies.get("pv_session")
    assert fresh
    put_back(copied)
    assert (
        client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False).status_code
        == 303
    )
    put_back(fresh)
    assert client.get("/console/", follow_redirects=False).status_code == 200


def _log_in_to(client: TestClient, login_url: str) -> str:
    """Follow a login link as a browser does: its form, then where the login sends one."""
    page = client.get(login_url)
    assert page.status_code == 200
    next_field = re.search(r'name="next" value="([^"]*)"', page.text)
    assert next_field
    r = client.post(
        "/console/login",
        data={
            "email": "ann@museum.example",
            "password": PASSWORD,
            "csrf": csrf_of(page.text),
            "next": html.unescape(next_field.group(1)),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    return r.headers["location"]


def test_the_login_comes_back_to_the_whole_address_with_every_query_parameter(
    client: TestClient, people: People
) -> None:
    people.add("ann@museum.example", "curator", "museum")
    for page in ("/console/search?q=a&puid=fmt/1", "/console/search?q=a%26b&puid=fmt%2F1"):
        client.cookies.clear()
        r = client.get(page, follow_redirects=False)
        assert r.status_code == 303
        login_url = r.headers["location"]
        assert login_url.startswith("/console/login?next=") and login_url.count("?") == 1
        assert "&" not in login_url  # the page's query is one value of the link's
        assert _log_in_to(client, login_url) == page


def test_an_htmx_request_comes_back_to_the_page_it_was_sent_from(
    client: TestClient, people: People
) -> None:
    people.add("ann@museum.example", "curator", "museum")

    def login_link(current: str | None) -> str:
        headers = {"HX-Request": "true"}
        if current is not None:
            headers["HX-Current-URL"] = current
        r = client.get("/console/dashboard/coverage", headers=headers, follow_redirects=False)
        assert r.status_code == 204
        return r.headers["hx-redirect"]

    link = login_link("http://testserver/console/search?q=a&puid=fmt/1")
    assert _log_in_to(client, link) == "/console/search?q=a&puid=fmt/1"
    # The header is the browser's to write: only a console page of ours is taken from it.
    for current in ("https://evil.example/", "http://testserver//evil.example/", None, "junk"):
        client.cookies.clear()
        assert _log_in_to(client, login_link(current)) == "/console/", current


def test_htmx_keeps_no_page_snapshots_and_the_browser_asks_for_no_favicon(
    client: TestClient, people: People
) -> None:
    """Snapshots in sessionStorage would keep a page and its CSRF token after a logout."""
    people.add("ann@museum.example", "curator", "museum")
    people.log_in(client, "ann@museum.example")
    r = client.get("/console/")
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", r.text)
    assert meta
    config = json.loads(meta.group(1))
    assert config["historyCacheSize"] == 0 and config["allowEval"] is False
    assert '<link rel="icon" href="data:,">' in r.text
    policy = r.headers["content-security-policy"]
    assert "img-src 'self' data:" in policy  # the empty icon is allowed
