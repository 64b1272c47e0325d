"""The REST API on the distributed engine: a real `preservation api` process, Celery workers,
Redis and PostgreSQL. An upload is ingested by the workers, a metadata update's version
is written by the tape workers (the version chord), an audit runs on the audit worker.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.catalog.service import ensure_tenant
from preservation.tokens import create_token
from workers.localcluster import ROOT, Cluster

SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_upload_metadata_and_audit_through_the_api_on_the_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    with session_scope(cluster.sessions) as s:
        ensure_tenant(s, "museum", "The Museum")
        submitter = create_token(s, role=Role.SUBMITTER, tenant_id="museum").secret
        curator = create_token(s, role=Role.CURATOR, tenant_id="museum", label="ann").secret
    cluster.start_all()
    cluster.start_worker("audit", "audit")
    port = _free_port()
    cluster.start(
        "api", [sys.executable, "-m", "preservation.cli", "api", "--port", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    _until(lambda: _ok(f"{base}/healthz"), "the API")
    body = Path(
        shutil.make_archive(str(tmp_path / "bag"), "zip", SAMPLE.parent, SAMPLE.name)
    ).read_bytes()
    with httpx.Client(base_url=base, timeout=30) as client:
        up = {"Authorization": f"Bearer {submitter}"}
        cur = {"Authorization": f"Bearer {curator}"}
        r = client.post(
            "/api/v1/sips", content=body, headers={**up, "Content-Type": "application/zip"}
        )
        assert r.status_code == 202, r.text
        status_url = r.json()["status_url"]
        sip = _until(
            lambda: (x := client.get(status_url, headers=up).json())["state"]
            in {"committed", "rejected"}
            and x,
            "the workers' ingest",
        )
        assert sip["state"] == "committed", sip
        aip = sip["aip_id"]
        found = client.get("/api/v1/aips", params={"q": "sunset"}, headers=up).json()
        assert [a["aip_id"] for a in found["items"]] == [aip]

        r = client.put(
            f"/api/v1/aips/{aip}/metadata",
            json={"title": "Kaart van Gent", "subject": ["maps"]},
            headers=cur,
        )
        assert r.status_code == 202, r.text
        version_url = r.json()["status_url"]
        v2 = _until(
            lambda: (x := client.get(version_url, headers=cur).json())["committed_at"] and x,
            "version 2 on the tape workers",
        )
        assert {c["site"] for c in v2["copies"] if c["status"] == "verified"} == {
            "site-a",
            "site-b",
        }
        found = client.get("/api/v1/aips", params={"q": "gent"}, headers=up).json()
        assert [a["aip_id"] for a in found["items"]] == [aip]

        # The tape workers keep their cartridges mounted between writes (an audit would
        # skip them, busy): stop them, as tests/integration/test_audit_worker.py does.
        for name in ("tape-a", "tape-b", "watcher"):
            cluster.kill(name)
        r = client.post("/api/v1/audits", json={}, headers=cur)
        assert r.status_code == 202, r.text
        audit = _until(
            lambda: (x := client.get(r.json()["status_url"], headers=cur).json())["state"]
            in {"done", "failed"}
            and x,
            "the audit worker",
        )
        assert audit["state"] == "done" and audit["report"]["ok"] is True, audit["report"]
        assert audit["copies_done"] == 4  # two versions, two sites


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
