"""The archiving service from a terminal: tenants, tokens, AIPs, SIPs, retention, disposal.

Every command is the CLI twin of an API route and calls the same service
function; these tests run them on the embedded default after a real ingest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from preservation.cli import app

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    return home


def run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return json.loads(result.stdout)


def test_tenants_and_tokens(home: Path) -> None:
    assert run("tenant", "add", "museum", "--name", "The Museum")["name"] == "The Museum"
    run("tenant", "add", "Bad Id", "--name", "x", code=2)
    assert [t["id"] for t in run("tenant", "ls")] == ["museum"]
    made = run("token", "create", "--tenant", "museum", "--role", "curator", "--label", "ann")
    assert made["token"].startswith("pvt_") and made["role"] == "curator"
    run("token", "create", "--tenant", "nobody", "--role", "consumer", code=1)
    run("token", "create", "--tenant", "museum", "--role", "admin", code=2)
    assert run("token", "create", "--role", "admin")["tenant"] is None
    listed = run("token", "ls")
    assert len(listed) == 2 and all("token" not in t for t in listed)
    assert made["token"] not in (home / "catalog.sqlite").read_bytes().decode("latin-1")
    assert run("token", "revoke", made["id"])["revoked_at"]


def test_aips_sips_retention_and_disposal(home: Path) -> None:
    ingested = run("ingest", str(SAMPLE), "--tenant", "museum")
    aip, sip = ingested["aip_id"], ingested["sip_id"]
    assert [a["aip_id"] for a in run("aip", "ls")["items"]] == [aip]
    assert [a["aip_id"] for a in run("aip", "search", "sunset")["items"]] == [aip]
    assert run("aip", "search", "sunset", "--puid", "fmt/11")["items"][0]["aip_id"] == aip
    assert run("aip", "search", "sunset", "--puid", "fmt/9999")["items"] == []
    assert run("aip", "search", "--tenant", "other")["items"] == []
    assert run("aip", "show", aip[:8])["aip_id"] == aip
    assert run("sip", "ls")["items"][0]["sip_id"] == sip
    assert run("sip", "show", sip)["state"] == "committed"
    reindexed = CliRunner().invoke(app, ["db", "reindex"])
    assert reindexed.exit_code == 0 and "1 AIPs" in reindexed.output

    view = run("aip", "retention", aip)
    assert view["disposable"] is False
    run("aip", "dispose", "request", aip, "--reason", "x", "--by", "ann", code=1)
    run("aip", "retention", aip, "--until", "2001-01-01", "--by", "ann")
    run("aip", "hold", aip, "--reason", "court", "--by", "ann")
    run("aip", "dispose", "request", aip, "--reason", "x", "--by", "ann", code=1)
    run("aip", "hold", aip, "--lift", "--reason", "closed", "--by", "ann")
    disposal = run("aip", "dispose", "request", aip, "--reason", "expired", "--by", "ann")
    run("aip", "dispose", "approve", disposal["disposal_id"], "--by", "ann", code=2)
    done = run("aip", "dispose", "approve", disposal["disposal_id"], "--by", "bob")
    assert done["state"] == "disposed" and done["pending_sites"] == []
    assert run("aip", "ls", "--state", "disposed")["items"][0]["aip_id"] == aip
    shown = run("aip", "show", aip)
    assert shown["state"] == "disposed"
    assert {c["status"] for v in shown["versions"] for c in v["copies"]} == {"disposed"}
    assert "deletion" in [e["type"] for e in shown["events"]]
