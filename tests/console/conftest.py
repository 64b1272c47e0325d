"""Fixtures for the console: the API's app and holdings, plus people who log in.

The app, the data root and the catalogue (both backends) are the API tests'
(``tests/api/conftest.py``); :class:`People` adds users and logs a
:class:`~fastapi.testclient.TestClient` in through the real login form, so
every test goes through the session cookie and the CSRF token a browser uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.users import add_user
from tests.api.conftest import Tokens, add_aip, ago, api_settings, client, ctx, tokens

__all__ = [
    "PASSWORD",
    "People",
    "Tokens",
    "add_aip",
    "ago",
    "api_settings",
    "client",
    "csrf_of",
    "ctx",
    "people",
    "tokens",
]

PASSWORD = "a long enough passphrase"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@dataclass
class People:
    ctx: Context

    def add(self, email: str, role: str, tenant: str | None, password: str = PASSWORD) -> str:
        with session_scope(self.ctx.sessions) as s:
            if tenant is not None:
                service.ensure_tenant(s, tenant, tenant.title())
            add_user(s, email=email, role=role, password=password, tenant_id=tenant)
        return email

    def log_in(self, client: TestClient, email: str, password: str = PASSWORD) -> str:
        """Log ``client`` in through the form; returns the session's CSRF token."""
        page = client.get("/console/login")
        assert page.status_code == 200, page.text
        r = client.post(
            "/console/login",
            data={"email": email, "password": password, "csrf": csrf_of(page.text), "next": ""},
            follow_redirects=False,
        )
        assert r.status_code == 303, (r.status_code, r.text[:500])
        home = client.get("/console/")
        assert home.status_code == 200, home.text[:500]
        return csrf_of(home.text)


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest: these tests log in hundreds of times, and the cost
    parameters are argon2-cffi's to get right, not the pages'. Still argon2id; a hash
    made with the real parameters (the browser suite's users) still verifies."""
    from argon2 import PasswordHasher

    from preservation import users

    monkeypatch.setattr(
        users, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    )


@pytest.fixture
def people(ctx: Context) -> People:
    return People(ctx)
