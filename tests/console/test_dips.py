"""DIPs from the console: asked for on the AIP page, followed on /console/dips, downloaded.

The recall window is long (the API's DIP tests' settings), so a request stays
queued until the test runs the batch itself, as an operator's timer would.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from preservation.access.recall import run_batch
from preservation.context import Context
from tests.api.test_dips import _no_window_left_open, api_settings, ingested, small_bag
from tests.console.conftest import People

__all__ = ["_no_window_left_open", "api_settings"]

POLLING = 'hx-trigger="every 2s"'


def test_a_consumer_asks_for_a_dip_follows_it_and_downloads_the_zip(
    client: TestClient, ctx: Context, people: People, tmp_path: Path
) -> None:
    aip = ingested(ctx, tmp_path)
    people.add("carol@museum.example", "consumer", "museum")
    people.add("dave@museum.example", "consumer", "museum")
    people.add("cora@museum.example", "curator", "museum")
    people.add("mallory@library.example", "curator", "library")
    csrf = people.log_in(client, "carol@museum.example")

    r = client.post(
        f"/console/aips/{aip}/dip",
        data={"csrf": csrf, "kind": "original", "files": "images/*"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    location = r.headers["location"]
    assert location.startswith("/console/dips?asked=")
    dip_id = location.split("asked=")[1].split("#")[0]

    page = client.get(location)
    assert page.status_code == 200
    assert f'id="dip-{dip_id}"' in page.text and "queued" in page.text
    assert POLLING in page.text  # followed live while it moves
    assert f"/console/dips/{dip_id}/download" not in page.text
    r = client.get(f"/console/dips/{dip_id}/download")
    assert r.status_code == 409 and "not ready yet" in r.text

    assert run_batch(ctx).ready == [dip_id]

    fragment = client.get("/console/dips", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "ready" in fragment.text and POLLING not in fragment.text  # settled: polling stops
    single = client.get(f"/console/dips/{dip_id}").text
    assert f'href="/console/dips/{dip_id}/download"' in single and POLLING not in single

    r = client.get(f"/console/dips/{dip_id}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="dip-{dip_id}.zip"' in r.headers["content-disposition"]
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        plate = f"{dip_id}/data/representations/original/data/images/plate.png"
        assert plate in names
        assert not [n for n in names if n.endswith("reading.txt")]  # only what matched
        original = small_bag(tmp_path / "again") / "data" / "images" / "plate.png"
        assert zf.read(plate) == original.read_bytes()
    # Resumable, as the API's download is.
    r = client.get(f"/console/dips/{dip_id}/download", headers={"Range": "bytes=10-"})
    assert r.status_code == 206 and int(r.headers["content-length"]) > 0

    # Another reader of the tenant does not see it: every request of the tenant is a
    # curator's to see, and a consumer asking for it gets their own list.
    client.cookies.clear()
    people.log_in(client, "dave@museum.example")
    assert f"dip-{dip_id}" not in client.get("/console/dips").text
    everyone = client.get("/console/dips?all=1")
    assert everyone.status_code == 200 and f"dip-{dip_id}" not in everyone.text
    assert 'href="/console/dips?all=1"' not in everyone.text
    # A curator of the tenant sees it among the tenant's requests.
    client.cookies.clear()
    people.log_in(client, "cora@museum.example")
    assert f"dip-{dip_id}" not in client.get("/console/dips").text
    assert f"dip-{dip_id}" in client.get("/console/dips?all=1").text

    # Another tenant: not found, the page and the download alike.
    client.cookies.clear()
    people.log_in(client, "mallory@library.example")
    for url in (f"/console/dips/{dip_id}", f"/console/dips/{dip_id}/download"):
        r = client.get(url)
        assert r.status_code == 404 and "carol" not in r.text, url
    assert f"dip-{dip_id}" not in client.get("/console/dips?all=1").text


def test_a_request_the_service_refuses_is_said_on_the_aip_page(
    client: TestClient, ctx: Context, people: People, tmp_path: Path
) -> None:
    aip = ingested(ctx, tmp_path)
    people.add("carol@museum.example", "consumer", "museum")
    csrf = people.log_in(client, "carol@museum.example")
    r = client.post(
        f"/console/aips/{aip}/dip", data={"csrf": csrf, "kind": "original", "files": "*.tif"}
    )
    assert r.status_code == 400 and "matches &#39;*.tif&#39;" in r.text
    assert "notice error" in r.text and 'id="history-heading"' in r.text
    assert "No DIP request yet." in client.get("/console/dips").text
    # Without the form's token: refused before anything is queued.
    r = client.post(f"/console/aips/{aip}/dip", data={"kind": "original"})
    assert r.status_code == 403
