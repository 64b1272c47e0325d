"""DIPs through the REST API: asked for, followed, downloaded whole or resumed, refused by rule.

The AIPs that are recalled are real ingests of a small bag into emulated tape
(on both catalogue backends); the refusals that need no tape use the
catalogue-only holdings of :func:`tests.api.conftest.add_aip`. The recall
window is long here, so a request stays queued until the test runs the batch
itself, except in the one test that follows the embedded timer end to end.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bagit
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from preservation import ingest
from preservation.access import cache
from preservation.access.recall import run_batch
from preservation.catalog.database import session_scope
from preservation.catalog.models import DIP, utcnow
from preservation.config import Settings
from preservation.context import Context
from tests.api.conftest import Tokens, add_aip, ago
from tests.polling import wait_for

PROBLEM = "application/problem+json"


@pytest.fixture
def api_settings(tmp_path: Path, catalog_url: str) -> Settings:
    """The conftest's settings, with a recall window no test waits out by accident."""
    s = Settings(
        home=tmp_path / "var",
        database_url=catalog_url,
        quiescent_seconds=0.2,
        site_wait_seconds=5,
        tape_idle_unmount_seconds=0.5,
        recall_window_seconds=3600,
    )
    s.ensure_dirs()
    return s


@pytest.fixture(autouse=True)
def _no_window_left_open() -> Iterator[None]:
    """Each accepted POST starts a window timer; those still waiting end with the test."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        if isinstance(thread, threading.Timer):
            thread.cancel()


def small_bag(where: Path, name: str = "ledger") -> Path:
    bag = where / name
    (bag / "images").mkdir(parents=True)
    (bag / "notes").mkdir()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(bag / "images" / "plate.png")
    (bag / "notes" / "reading.txt").write_text("Read in the archive, 1921.\n" * 200)
    bagit.make_bag(str(bag), {"Source-Organization": "Museum"}, checksums=["sha256"])
    return bag


def ingested(ctx: Context, tmp_path: Path, tenant: str = "museum") -> str:
    result = ingest.run_ingest(ctx, small_bag(tmp_path), tenant=tenant)
    assert result.state == "committed", result
    assert result.aip_id
    return result.aip_id


def problem(r: Any, status: int, rule: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["rule"] == rule, body
    return body


def test_a_consumer_asks_follows_and_downloads_a_dip_whole_or_resumed(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    aip_id = ingested(ctx, tmp_path)
    reader = tokens.headers("consumer", "museum", "reader")
    intruder = tokens.headers("curator", "library", "mallory")

    r = client.post("/api/v1/dips", json={"aip_id": aip_id, "kind": "original"}, headers=reader)
    assert r.status_code == 202, r.text
    view = r.json()
    dip_id = view["dip_id"]
    location = r.headers["location"]
    assert location == view["status_url"] == f"/api/v1/dips/{dip_id}"
    assert (view["state"], view["kind"], view["version"], view["files_total"]) == (
        "queued", "original", 1, 2,
    )  # fmt: skip
    assert view["requested_by"] == "reader" and view["download_url"] is None

    # Queued: its status says so, and there is nothing to download yet.
    shown = client.get(location, headers=reader).json()
    assert (shown["state"], shown["progress"], shown["size"], shown["etag"]) == (
        "queued", {}, None, None,
    )  # fmt: skip
    problem(client.get(f"{location}/download", headers=reader), 409, "dip-not-ready")
    assert [d["dip_id"] for d in client.get("/api/v1/dips", headers=reader).json()] == [dip_id]
    # Another tenant: no such DIP, in any form.
    for url in (location, f"{location}/download"):
        r = client.get(url, headers=intruder)
        assert r.status_code == 404 and "reader" not in r.text, r.text
    assert client.get("/api/v1/dips", headers=intruder).json() == []

    report = run_batch(ctx)
    assert report.ready == [dip_id], report

    shown = client.get(location, headers=reader).json()
    assert shown["state"] == "ready", shown
    assert shown["progress"]["cartridges"] and shown["progress"]["bytes_read"] > 0
    assert shown["progress"]["bytes_read"] == shown["progress"]["bytes_to_read"]
    assert shown["download_url"] == f"{location}/download"
    size, etag = shown["size"], shown["etag"]

    r = client.get(shown["download_url"], headers=reader)
    assert r.status_code == 200, r.text
    whole = r.content
    assert r.headers["content-type"] == "application/zip"
    assert int(r.headers["content-length"]) == len(whole) == size
    assert r.headers["etag"] == f'"{hashlib.sha256(whole).hexdigest()}"' == f'"{etag}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert f'filename="dip-{dip_id}.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert zf.testzip() is None
        assert f"{dip_id}/data/representations/original/data/images/plate.png" in zf.namelist()

    # Resumed: the rest from where it broke, equal to the whole once put together.
    had = size // 3
    r = client.get(shown["download_url"], headers=reader | {"Range": f"bytes={had}-"})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"] == f"bytes {had}-{size - 1}/{size}"
    assert int(r.headers["content-length"]) == size - had
    assert whole[:had] + r.content == whole
    r = client.get(
        shown["download_url"],
        headers=reader | {"Range": f"bytes={had}-", "If-Range": f'"{etag}"'},
    )
    assert r.status_code == 206 and r.content == whole[had:]
    r = client.get(  # the file changed since (another etag): the whole new file
        shown["download_url"], headers=reader | {"Range": f"bytes={had}-", "If-Range": '"old"'}
    )
    assert r.status_code == 200 and r.content == whole
    r = client.get(shown["download_url"], headers=reader | {"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == whole[:100]
    # Past the end: 416, saying how long the file is.
    r = client.get(shown["download_url"], headers=reader | {"Range": f"bytes={size}-"})
    body = problem(r, 416, "range-not-satisfiable")
    assert r.headers["content-range"] == f"bytes */{size}"
    assert str(size) in body["detail"]
    # Already had: 304, no body.
    r = client.get(shown["download_url"], headers=reader | {"If-None-Match": f'"{etag}"'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == f'"{etag}"'
    r = client.get(shown["download_url"], headers=reader | {"If-None-Match": '"other"'})
    assert r.status_code == 200 and r.content == whole

    # The AIP's history names who asked.
    events = client.get(f"/api/v1/aips/{aip_id}/events", headers=reader).json()["items"]
    [dissemination] = [e for e in events if e["type"] == "dissemination"]
    assert "reader" in str(dissemination["agents"]) and dip_id in dissemination["detail"]

    # Past its time the DIP leaves the cache: status says expired, the download is gone.
    with session_scope(ctx.sessions) as s:
        s.get_one(DIP, dip_id).expires_at = utcnow() - timedelta(seconds=1)
    assert cache.evict(ctx) == [dip_id]
    assert not cache.zip_path(ctx.settings, dip_id).exists()
    shown = client.get(location, headers=reader).json()
    assert (shown["state"], shown["download_url"]) == ("expired", None)
    problem(client.get(f"{location}/download", headers=reader), 410, "dip-expired")
    problem(
        client.get(f"{location}/download", headers=reader | {"Range": "bytes=0-"}),
        410,
        "dip-expired",
    )


def test_a_ready_dip_whose_zip_left_the_cache_is_gone_not_an_error(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    aip_id = ingested(ctx, tmp_path)
    reader = tokens.headers("consumer", "museum", "reader")
    r = client.post("/api/v1/dips", json={"aip_id": aip_id}, headers=reader)
    assert r.status_code == 202, r.text
    dip_id = r.json()["dip_id"]
    assert run_batch(ctx).ready == [dip_id]
    cache.zip_path(ctx.settings, dip_id).unlink()  # an operator cleared the cache
    body = problem(
        client.get(f"/api/v1/dips/{dip_id}/download", headers=reader), 410, "dip-expired"
    )
    assert "request it again" in body["detail"]


def test_a_dip_of_an_aip_disposed_of_since_it_was_built_is_no_longer_handed_out(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    aip_id = ingested(ctx, tmp_path)
    reader = tokens.headers("consumer", "museum", "reader")
    alice = tokens.headers("curator", "museum", "alice")
    bob = tokens.headers("curator", "museum", "bob")
    r = client.post("/api/v1/dips", json={"aip_id": aip_id}, headers=reader)
    dip_id = r.json()["dip_id"]
    assert run_batch(ctx).ready == [dip_id]
    download = f"/api/v1/dips/{dip_id}/download"
    assert client.get(download, headers=reader).status_code == 200

    r = client.put(f"/api/v1/aips/{aip_id}/retention", json={"until": "2020-01-01"}, headers=alice)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/aips/{aip_id}/disposal", json={"reason": "expired"}, headers=alice)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/disposals/{r.json()['disposal_id']}/approve", headers=bob)
    assert r.json()["state"] == "disposed", r.text

    # Disposed of: its content is not disseminated any more, from tape or from the cache.
    body = problem(client.get(download, headers=reader), 410, "disposed")
    assert body["tombstone"]["aip_id"] == aip_id
    problem(client.get(download, headers=reader | {"Range": "bytes=10-"}), 410, "disposed")
    # And the next sweep of the cache takes the zip away.
    assert cache.evict(ctx) == [dip_id]
    assert not cache.zip_path(ctx.settings, dip_id).exists()
    shown = client.get(f"/api/v1/dips/{dip_id}", headers=reader).json()
    assert (shown["state"], shown["reason"]) == ("expired", "its AIP was disposed of")


def test_requests_that_cannot_be_served_are_refused_with_their_rule(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    aip = add_aip(ctx, "museum", title="Ledger", names=["data/notes/a.txt", "data/img/b.png"],
                  puids=["x-fmt/111", "fmt/11"], created_at=ago(400))  # fmt: skip
    reader = tokens.headers("consumer", "museum", "reader")
    alice = tokens.headers("curator", "museum", "alice")
    bob = tokens.headers("curator", "museum", "bob")

    def post(body: dict[str, Any], headers: dict[str, str] = reader) -> Any:
        return client.post("/api/v1/dips", json=body, headers=headers)

    body = problem(post({"aip_id": aip, "version": 2}), 404, "no-such-version")
    assert "has no version 2 (its versions: 1)" in body["detail"]
    body = problem(post({"aip_id": aip, "files": "*.tif"}), 400, "no-matching-files")
    assert "'*.tif'" in body["detail"]
    body = problem(post({"aip_id": aip, "kind": "thumbnail"}), 400, "dip-kind")
    assert "original, preservation, access" in body["detail"]
    problem(post({"aip_id": "ledger"}), 400, "uuid")
    assert post({"aip_id": aip, "version": 0}).status_code == 422
    assert post({"aip_id": aip, "colour": "red"}).status_code == 422
    assert client.post("/api/v1/dips", json={"aip_id": aip}).status_code == 401
    # Another tenant's AIP is not found, exactly like no AIP at all.
    elsewhere = add_aip(ctx, "library", title="Their ledger")
    r = post({"aip_id": elsewhere})
    assert r.status_code == 404 and "Their ledger" not in r.text
    nobody = "00000000-0000-4000-8000-000000000000"
    assert post({"aip_id": nobody}).json()["detail"] == r.json()["detail"].replace(
        elsewhere, nobody
    )

    # Disposed by two curators: gone, and the tombstone says what it was.
    assert (
        client.put(
            f"/api/v1/aips/{aip}/retention", json={"until": "2020-01-01"}, headers=alice
        ).status_code
        == 200
    )
    r = client.post(f"/api/v1/aips/{aip}/disposal", json={"reason": "expired"}, headers=alice)
    assert r.status_code == 201, r.text
    r = client.post(f"/api/v1/disposals/{r.json()['disposal_id']}/approve", headers=bob)
    assert r.status_code == 200 and r.json()["state"] == "disposed", r.text
    body = problem(post({"aip_id": aip}), 410, "disposed")
    assert body["tombstone"]["aip_id"] == aip and body["tombstone"]["state"] == "disposed"
    assert body["tombstone"]["disposed_at"] and "Ledger" not in str(body)
    # Nothing refused was queued.
    assert client.get("/api/v1/dips", headers=reader).json() == []


def test_the_embedded_window_serves_requests_that_arrive_together_in_one_batch(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    aip_id = ingested(ctx, tmp_path)
    reader = tokens.headers("consumer", "museum", "reader")
    ctx.settings.recall_window_seconds = 1.0  # the three POSTs take a few milliseconds
    asked = [
        client.post("/api/v1/dips", json={"aip_id": aip_id, "kind": kind}, headers=reader)
        for kind in ("original", "preservation", "access")
    ]
    assert [r.status_code for r in asked] == [202] * 3, [r.text for r in asked]
    locations = [r.headers["location"] for r in asked]

    def states() -> list[str]:
        return [client.get(url, headers=reader).json()["state"] for url in locations]

    wait_for(lambda: set(states()) <= {"ready", "failed"}, "the recall batch", limit=60)
    views = [client.get(url, headers=reader).json() for url in locations]
    assert [v["state"] for v in views] == ["ready"] * 3, views
    for v in views:
        r = client.get(v["download_url"], headers=reader)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == v["etag"]
        names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
        image = "images/plate.jpg" if v["kind"] == "access" else "images/plate.png"
        assert f"{v['dip_id']}/data/representations/{v['kind']}/data/{image}" in names
    with session_scope(ctx.sessions) as s:
        assert len({row.batch_id for row in s.scalars(select(DIP))}) == 1
