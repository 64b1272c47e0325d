"""Bad input gets a 4xx problem body naming the field or rule, and nothing is stored."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from preservation.catalog.database import session_scope
from preservation.catalog.models import PremisEvent
from preservation.context import Context
from tests.api.conftest import Tokens, add_aip

PROBLEM = "application/problem+json"


def _events(ctx: Context) -> int:
    with session_scope(ctx.sessions) as s:
        return int(s.scalar(select(func.count()).select_from(PremisEvent)) or 0)


def test_no_token_unknown_token_and_revoked_token_are_401(
    client: TestClient, tokens: Tokens
) -> None:
    r = client.get("/api/v1/aips")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["rule"] == "bearer-token"
    r = client.get("/api/v1/aips", headers={"Authorization": "Bearer pvt_nope"})
    assert r.status_code == 401
    admin = tokens.headers("admin", None)
    made = client.post(
        "/api/v1/tokens", json={"role": "consumer", "tenant": "museum"}, headers=admin
    )
    assert made.status_code == 404  # no such tenant yet
    client.post("/api/v1/tenants", json={"id": "museum", "name": "Museum"}, headers=admin)
    made = client.post(
        "/api/v1/tokens", json={"role": "consumer", "tenant": "museum", "label": "web"},
        headers=admin,
    )
    assert made.status_code == 201
    secret = made.json()["token"]
    h = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/aips", headers=h).status_code == 200
    listed = client.get("/api/v1/tokens", headers=admin).json()
    assert all("token" not in t and secret not in str(t) for t in listed)
    assert client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/aips", headers=h).status_code == 401


def test_roles(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    aip = add_aip(ctx, "museum")
    consumer = tokens.headers("consumer", "museum")
    curator = tokens.headers("curator", "museum")
    r = client.post(f"/api/v1/aips/{aip}/hold", json={"reason": "case 1"}, headers=consumer)
    assert r.status_code == 403 and r.json()["rule"] == "role"
    assert client.get("/api/v1/tenants", headers=curator).status_code == 403
    assert client.get("/metrics", headers=curator).status_code == 403
    r = client.post("/api/v1/sips", content=b"x", headers=consumer)
    assert r.status_code == 403


def test_bad_bodies_are_problems_and_store_nothing(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    aip = add_aip(ctx, "museum")
    h = tokens.headers("curator", "museum")
    before = _events(ctx)
    cases = [
        ("put", f"/api/v1/aips/{aip}/retention", {"content": b"{not json",
         "headers": {"content-type": "application/json"}}, 422),
        ("put", f"/api/v1/aips/{aip}/retention", {"json": {"until": 12}}, 422),
        ("put", f"/api/v1/aips/{aip}/retention", {"json": {"until": "2020-01-01", "x": 1}}, 422),
        ("put", f"/api/v1/aips/{aip}/retention", {"json": {}}, 400),
        ("put", f"/api/v1/aips/{aip}/retention", {"json": {"period": "ten years"}}, 400),
        ("post", f"/api/v1/aips/{aip}/hold", {"json": {"reason": ""}}, 422),
        ("post", f"/api/v1/aips/{aip}/hold", {"json": {"why": "x"}}, 422),
        ("put", f"/api/v1/aips/{aip}/metadata", {"content": b"title=x",
         "headers": {"content-type": "text/plain"}}, 415),
        ("put", f"/api/v1/aips/{aip}/metadata", {"json": {"colour": "red"}}, 400),
        ("put", f"/api/v1/aips/{aip}/metadata", {"json": {"title": 5}}, 400),
        ("put", f"/api/v1/aips/{aip}/metadata", {"content": (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" '
            b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&x;</dc:title></oai_dc:dc>'
        ), "headers": {"content-type": "application/xml"}}, 400),
        ("get", "/api/v1/aips/not-an-id", {}, 400),
        ("get", "/api/v1/aips/..%2F..%2Fetc", {}, 404),  # no route has that many segments
        ("get", "/api/v1/aips/%2E%2E", {}, 400),
        ("get", "/api/v1/aips/by-external-id/..%2Fx", {}, 404),
        ("get", "/api/v1/sips/12345", {}, 400),
        ("get", "/api/v1/aips", {"params": {"limit": "lots"}}, 422),
        ("get", "/api/v1/aips", {"params": {"created_after": "yesterday"}}, 422),
        ("get", "/api/v1/aips", {"params": {"state": "gone"}}, 422),
        ("get", "/api/v1/nowhere", {}, 404),
    ]
    for method, url, kwargs, status in cases:
        r = getattr(client, method)(url, headers={**h, **kwargs.pop("headers", {})}, **kwargs)
        assert r.status_code == status, (method, url, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM, (url, r.headers["content-type"])
        body = r.json()
        assert body["status"] == status and body["detail"] and body["type"].startswith("http")
        assert body.get("rule"), body
    assert _events(ctx) == before
    r = client.put(f"/api/v1/aips/{aip}/retention", json={"until": 12}, headers=h)
    assert r.json()["field"] == "body:until"


def test_health_and_metrics(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    add_aip(ctx, "museum")
    r = client.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["catalogue"]["ok"] is True
    assert "museum" not in r.text
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=tokens.headers("admin", None))
    assert r.status_code == 200
    text = r.text
    for name in (
        "preservation_sips", "preservation_aips", "preservation_aip_bytes",
        "preservation_tape_copies", "preservation_cartridges", "preservation_tape_mounts",
        "preservation_audit_failures", "preservation_queue_depth",
        "preservation_stage_seconds",
    ):
        assert f"# TYPE {name}" in text, name
    assert 'preservation_aips{state="active",tenant="museum"} 1.0' in text
    (ctx.settings.tape_dir / "site-b").mkdir(parents=True, exist_ok=True)
    (ctx.settings.tape_dir / "site-b" / "DOWN").write_text("maintenance")
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["checks"]["site:site-b"]["ok"] is False
