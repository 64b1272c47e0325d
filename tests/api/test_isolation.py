"""Tenants never see each other's holdings: every route that takes an id answers 404.

The test walks the OpenAPI document rather than a hand-kept list, so a route
added later is covered (or fails here for want of an id to try).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation.access.cache import zip_path
from preservation.access.service import expiry, request_dip
from preservation.audit.runs import start_audit
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, DIP, DIPState, Disposal, utcnow
from preservation.context import Context
from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki
from preservation.evidence.periods import seal_periods
from preservation.evidence.stamping import stamp_waiting
from preservation.evidence.tsa import HttpTimeStampAuthority
from preservation.migrate import service as migrations
from tests.api.conftest import Tokens, add_aip
from tests.conftest import require_program

#: A valid body for each route that needs one, so the body is never the reason for a 4xx.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("put", "/api/v1/aips/{aip_id}/metadata"): {"json": {"title": "mine now"}},
    ("put", "/api/v1/aips/{aip_id}/retention"): {"json": {"until": "2001-01-01"}},
    ("post", "/api/v1/aips/{aip_id}/hold"): {"json": {"reason": "curiosity"}},
    ("delete", "/api/v1/aips/{aip_id}/hold"): {"params": {"reason": "curiosity"}},
    ("post", "/api/v1/aips/{aip_id}/disposal"): {"json": {"reason": "curiosity"}},
}
#: Admin-only routes: another tenant's token gets 403 there, whatever the id.
ADMIN_ONLY = {"/api/v1/tokens/{token_id}"}


def _ready_dip(ctx: Context, aip_id: str) -> str:
    """A DIP request of the AIP, made ready as a recall batch leaves it (the zip a stand-in:
    these AIPs are in the catalogue only, with nothing on tape to recall)."""
    with session_scope(ctx.sessions) as s:
        dip_id = request_dip(
            s, aip_id=aip_id, tenant_id="museum", kind="original", requested_by="alice"
        ).dip_id
    data = b"PK\x05\x06" + bytes(18)  # an empty zip
    path = zip_path(ctx.settings, dip_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with session_scope(ctx.sessions) as s:
        row = s.get_one(DIP, dip_id)
        row.state, row.zip_size = DIPState.READY, len(data)
        row.zip_sha256 = hashlib.sha256(data).hexdigest()
        row.ready_at, row.expires_at = utcnow(), expiry(3600)
    return dip_id


def _stamped(ctx: Context, workdir: Path) -> None:
    """Seal and time-stamp the committed versions: the evidence route has a record to give."""
    require_program("openssl")
    with LoopbackTsa(make_pki(workdir)) as tsa:
        with session_scope(ctx.sessions) as s:
            seal_periods(s)
        with HttpTimeStampAuthority(tsa.url) as client:
            assert stamp_waiting(ctx, client).waiting == 0


def test_every_route_with_an_id_is_404_for_another_tenant(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    aip = add_aip(ctx, "museum", title="Private", external_identifier="SECRET-1")
    _stamped(ctx, tmp_path / "tsa")
    curator_a = tokens.headers("curator", "museum", "alice")
    # Things of every kind that has an id: a DIP, a disposal, an audit, a hold.
    dip = _ready_dip(ctx, aip)
    with session_scope(ctx.sessions) as s:
        row = s.scalar(select(AIP).where(AIP.id == aip))
        assert row is not None
        sip = row.sip_id
        row.retention_until = row.created_at
    assert (
        client.post(
            f"/api/v1/aips/{aip}/disposal", json={"reason": "expired"}, headers=curator_a
        ).status_code
        == 201
    )
    with session_scope(ctx.sessions) as s:
        disposal = s.scalar(select(Disposal.id))
        audit = start_audit(s, ("site-a", "site-b"), "museum", "alice").audit_id
        policy, text = migrations.read_policy(None)
        migration = migrations.start_migration(
            s, policy, text, puid="fmt/11", tenant_id="museum", who="alice"
        ).migration_id
    ids = {
        "aip_id": aip,
        "sip_id": sip,
        "number": "1",
        "value": "SECRET-1",
        "disposal_id": disposal,
        "audit_id": audit,
        "migration_id": migration,
        "dip_id": dip,
    }
    intruder = tokens.headers("curator", "archive", "mallory")
    document = client.get("/api/v1/openapi.json").json()
    tried = []
    for path, operations in document["paths"].items():
        params = re.findall(r"{(\w+)}", path)
        if not params or path in ADMIN_ONLY:
            continue
        url = path
        for name in params:
            assert name in ids, f"no id to try for {{{name}}} in {path}: add one to this test"
            url = url.replace(f"{{{name}}}", ids[name])
        for method in operations:
            kwargs = BODIES.get((method, path), {})
            r = client.request(method.upper(), url, headers=intruder, **kwargs)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert "Private" not in r.text and "alice" not in r.text
            tried.append((method, path))
            # The owner, by contrast, reaches it (the id is right, the 404 is the tenant).
            if method == "get":
                assert client.get(url, headers=curator_a).status_code == 200, path
    assert len(tried) >= 13
    assert {("get", "/api/v1/dips/{dip_id}"), ("get", "/api/v1/dips/{dip_id}/download")} <= set(
        tried
    )
    # Nothing the intruder did changed anything.
    with session_scope(ctx.sessions) as s:
        row = s.get(AIP, aip)
        assert row is not None and row.state.value == "active"
    r = client.get("/api/v1/aips", params={"q": "private"}, headers=intruder)
    assert r.json()["items"] == []
    r = client.get("/api/v1/sips", headers=intruder)
    assert r.json()["items"] == []
    r = client.get("/api/v1/disposals", headers=intruder)
    assert r.json() == []
    r = client.get("/api/v1/migrations", headers=intruder)
    assert r.json() == []
    r = client.get("/api/v1/dips", headers=intruder)
    assert r.json() == []
    # Asking for a DIP of another tenant's AIP: not found, and nothing queued.
    r = client.post("/api/v1/dips", json={"aip_id": aip}, headers=intruder)
    assert r.status_code == 404 and "Private" not in r.text, r.text
    with session_scope(ctx.sessions) as s:
        assert list(s.scalars(select(DIP.id))) == [dip]
    # Naming another tenant's AIP in a migration request: not found, dry run or not.
    for dry_run in (True, False):
        r = client.post(
            "/api/v1/migrations",
            json={"aip_ids": [aip], "dry_run": dry_run},
            headers=intruder,
        )
        assert r.status_code == 404, r.text
        assert "Private" not in r.text
