"""The history's evidence over HTTP: chain heads per tenant, evidence records as DER."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.evidence import records
from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki
from preservation.evidence.periods import seal_periods
from preservation.evidence.stamping import stamp_waiting
from preservation.evidence.tsa import HttpTimeStampAuthority, token_info
from tests.api.conftest import Tokens, add_aip
from tests.conftest import require_program


def test_heads_are_per_tenant_and_records_come_as_der(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    mine = add_aip(ctx, "museum", title="Mine")
    add_aip(ctx, "archive", title="Theirs")
    curator = tokens.headers("curator", "museum", "alice")
    admin = tokens.headers("admin", None, "root")

    # Not yet sealed: a problem body that says why, not an empty file.
    early = client.get(f"/api/v1/aips/{mine}/versions/1/evidence", headers=curator)
    assert early.status_code == 404
    assert early.headers["content-type"] == "application/problem+json"
    assert "no time-stamped evidence record yet" in early.json()["detail"]

    require_program("openssl")
    pki = make_pki(tmp_path / "tsa")
    with LoopbackTsa(pki) as tsa:
        with session_scope(ctx.sessions) as s:
            seal_periods(s)
        with HttpTimeStampAuthority(tsa.url) as stamper:
            stamp_waiting(ctx, stamper)

    r = client.get(f"/api/v1/aips/{mine}/versions/1/evidence", headers=curator)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert f'filename="{mine}-v1.ers"' in r.headers["content-disposition"]
    record = records.parse(r.content)
    (chain,) = record["archive_time_stamp_sequence"]
    (ats,) = chain
    info = token_info(bytes(ats["time_stamp"].dump()))
    assert info.tsa.startswith("CN=Loopback TSA")

    heads = client.get("/api/v1/history/head", headers=curator).json()["heads"]
    assert [h["tenant"] for h in heads] == ["museum"] and heads[0]["seq"] == 1
    everyone = client.get("/api/v1/history/head", headers=admin).json()["heads"]
    assert sorted(h["tenant"] for h in everyone) == ["archive", "museum"]
