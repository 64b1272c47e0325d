"""POST /api/v1/sips: a real bag streamed in, ingested on the embedded default, found after.

Also what must never leave anything behind: an oversized, truncated, mistyped
or misnamed upload, and an Idempotency-Key used twice.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from preservation.api import create_app
from preservation.context import Context
from tests.api.conftest import Tokens
from tests.conftest import EXAMPLES


def _zip(tmp_path: Path, bag: str) -> bytes:
    archive = shutil.make_archive(str(tmp_path / bag), "zip", root_dir=EXAMPLES, base_dir=bag)
    return Path(archive).read_bytes()


def _wait(client: TestClient, url: str, headers: dict[str, str], done: set[str]) -> Any:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body["state"] in done:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{url} did not reach {done}: {body}")


def _leftovers(ctx: Context, tenant: str) -> list[Path]:
    uploads = ctx.settings.ingest_dir / tenant / ".uploads"
    return list(uploads.iterdir()) if uploads.is_dir() else []


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_bag_uploaded_is_ingested_and_found(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    body = _zip(tmp_path, "sample-collection")
    h = tokens.headers("submitter", "museum")
    r = client.post(
        "/api/v1/sips",
        content=body,
        params={"name": "sample-collection"},
        headers={**h, "Content-Type": "application/zip", "Idempotency-Key": "k-1"},
    )
    assert r.status_code == 202, r.text
    sip = r.json()
    assert r.headers["location"] == sip["status_url"] and sip["created"] is True
    again = client.post(
        "/api/v1/sips",
        content=body,
        headers={**h, "Content-Type": "application/zip", "Idempotency-Key": "k-1"},
    )
    assert again.status_code == 202 and again.json()["sip_id"] == sip["sip_id"]
    assert again.json()["created"] is False
    other = client.post(
        "/api/v1/sips",
        content=body + b"trailing bytes",
        headers={**h, "Content-Type": "application/zip", "Idempotency-Key": "k-1"},
    )
    assert other.status_code == 409, other.text
    assert other.json()["rule"] == "idempotency-key-reused"
    done = _wait(client, sip["status_url"], h, {"committed", "rejected", "failed"})
    assert done["state"] == "committed", done
    aip = client.get(f"/api/v1/aips/{done['aip_id']}", headers=h).json()
    assert aip["state"] == "active" and aip["descriptive"]
    found = client.get("/api/v1/aips", params={"q": "sunset"}, headers=h).json()["items"]
    assert [a["aip_id"] for a in found] == [done["aip_id"]]  # a file name, searchable
    versions = client.get(f"/api/v1/aips/{done['aip_id']}/versions", headers=h).json()
    assert {c["site"] for c in versions[0]["copies"] if c["status"] == "verified"} == {
        "site-a",
        "site-b",
    }
    assert _leftovers(ctx, "museum") == []
    assert not (ctx.settings.ingest_dir / "museum" / ".claimed" / sip["sip_id"]).exists()
    # The stages' durations reach the metrics, from whichever process ran them.
    metrics = client.get("/metrics", headers=tokens.headers("admin", None)).text
    for stage in ("validate", "scan", "identify", "characterise", "describe", "package", "commit"):
        assert f'preservation_stage_seconds_count{{stage="{stage}"}} 1.0' in metrics, stage
    assert 'preservation_tape_mounts_total{site="site-a"}' in metrics
    # An audit asked for through the API reads both copies back, with progress on its row.
    curator = tokens.headers("curator", "museum")
    r = client.post("/api/v1/audits", json={"site": "nowhere"}, headers=curator)
    assert r.status_code == 400 and r.json()["rule"] == "site"
    r = client.post("/api/v1/audits", json={}, headers=curator)
    assert r.status_code == 202 and r.headers["location"] == r.json()["status_url"]
    audit = _wait(client, r.json()["status_url"], curator, {"done", "failed"})
    assert audit["report"]["ok"] is True, audit
    assert audit["copies_done"] == audit["copies_total"] == 2
    assert audit["tenant"] == "museum"
    other = tokens.headers("curator", "archive")
    assert client.get(r.json()["status_url"], headers=other).status_code == 404
    # Bounds travel with the queued audit to the worker; nonsense bounds are a 422.
    r = client.post("/api/v1/audits", json={"max_cartridges": 0}, headers=curator)
    assert r.status_code == 422
    r = client.post("/api/v1/audits", json={"max_cartridges": 1}, headers=curator)
    one = _wait(client, r.json()["status_url"], curator, {"done", "failed"})
    assert one["max_cartridges"] == 1 and len(one["report"]["cartridges"]) == 1
    assert one["report"]["checked"] == 1
    # Coverage: the curator's tenant only; every copy was checked just now.
    cov = client.get("/api/v1/audits/coverage", headers=curator).json()
    assert cov["tenant"] == "museum" and cov["complete"] is True
    assert {s["site"]: s["checked_copies"] for s in cov["sites"]} == {"site-a": 1, "site-b": 1}
    assert client.get("/api/v1/audits/coverage", headers=other).json()["sites"][0]["copies"] == 0


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_an_invalid_bag_is_rejected_with_its_report(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    h = tokens.headers("submitter", "museum")
    r = client.post(
        "/api/v1/sips",
        content=_zip(tmp_path, "invalid-bag"),
        headers={**h, "Content-Type": "application/zip"},
    )
    assert r.status_code == 202
    done = _wait(client, r.json()["status_url"], h, {"committed", "rejected", "failed"})
    assert done["state"] == "rejected"
    rules = {p["rule"] for p in done["problems"]}
    assert rules and all(p["message"] for p in done["problems"]), done
    rejected = ctx.settings.ingest_dir / "museum" / "rejected"
    assert any((d / "report.json").is_file() for d in rejected.iterdir())


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_refused_uploads_leave_nothing(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    h = tokens.headers("submitter", "museum")
    body = _zip(tmp_path, "sample-collection")
    cases = [
        ({"Content-Type": "application/json"}, body, {}, 415, "content-type"),
        ({}, body, {}, 415, "content-type"),
        ({"Content-Type": "application/x-tar"}, body, {}, 415, "content-type-mismatch"),
        ({"Content-Type": "application/zip"}, b"", {}, 400, "empty-upload"),
        ({"Content-Type": "application/zip"}, body, {"name": "../../etc/passwd"}, 400,
         "bag-name"),
        ({"Content-Type": "application/zip", "Idempotency-Key": "bad key\x7f"}, body, {}, 400,
         "idempotency-key"),
        ({"Content-Type": "application/zip"}, b"PK\x03\x04" + b"\0" * (51 * 2**20), {}, 413,
         "max-upload-bytes"),
    ]
    for extra, content, params, status, rule in cases:
        r = client.post("/api/v1/sips", content=content, params=params, headers={**h, **extra})
        assert r.status_code == status, (rule, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["rule"] == rule
    assert _leftovers(ctx, "museum") == []
    assert client.get("/api/v1/sips", headers=h).json()["items"] == []


@pytest.fixture
def server(ctx: Context) -> Iterator[str]:
    """The app under a real uvicorn on loopback, for what a test client cannot send."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(ctx=ctx), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_truncated_upload_is_deleted(server: str, ctx: Context, tokens: Tokens) -> None:
    token = tokens.make("submitter", "museum")
    host, port = server.split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(
            b"POST /api/v1/sips HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/zip\r\nContent-Length: 1000000\r\n\r\n"
            + b"PK\x03\x04"
            + b"\0" * 5000
        )
        time.sleep(0.5)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(4096)
    deadline = time.monotonic() + 10
    while _leftovers(ctx, "museum") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(ctx, "museum") == []
    assert not (ctx.settings.ingest_dir / "museum" / ".claimed").exists() or not any(
        (ctx.settings.ingest_dir / "museum" / ".claimed").iterdir()
    )
