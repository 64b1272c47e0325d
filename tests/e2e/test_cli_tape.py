"""The operator's tape commands end to end: list, show, audit, repair, recover, after damage.

Everything runs through the ``preservation`` command on the embedded default
(SQLite, emulated libraries under ``PRESERVATION_HOME``); the damage is done the
way a failing tape does it, by changing the bytes of a block on the cartridge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bagit
import pytest
from typer.testing import CliRunner

from preservation.cli import app

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
TENANT = "museum"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    return home


def run(*args: str, code: int = 0) -> Any:
    """Invoke the CLI with --json and return the parsed stdout, checking the exit code."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return json.loads(result.stdout)


def corrupt_block(home: Path, copy: dict[str, Any]) -> None:
    """Flip one byte of the copy's first block, as silent media decay would."""
    block = (
        home / "tape" / copy["site"] / "cartridges" / copy["barcode"] / f"1_{copy['start_block']}_R"
    )
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0x01
    block.write_bytes(bytes(data))


def test_tape_audit_repair_recover_through_the_cli(home: Path, tmp_path: Path) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    path = f"/{TENANT}/{aip_id}/v1.tar"

    # tape ls: cartridges at both sites, one verified copy at each.
    cartridges = run("tape", "ls")
    assert {c["site"] for c in cartridges} == {"site-a", "site-b"}
    holding = {c["site"]: c for c in cartridges if c["copies"].get("verified")}
    assert set(holding) == {"site-a", "site-b"}
    assert all(c["copies"] == {"verified": 1} for c in holding.values())
    assert all(c["used"] > 0 and c["state"] == "filling" for c in holding.values())
    only_b = run("tape", "ls", "--site", "site-b")
    assert {c["site"] for c in only_b} == {"site-b"}
    assert run("tape", "ls", "--site", "nowhere", code=1)["error"] == "NotFoundError"

    # tape show: the AIP's path, in tape order, with its block and verification time.
    shown = run("tape", "show", holding["site-b"]["barcode"])
    assert shown["volume_uuid"] and shown["site"] == "site-b"
    [copy_b] = shown["contents"]
    assert copy_b["path"] == path and copy_b["aip_id"] == aip_id
    assert copy_b["status"] == "verified" and copy_b["verified_at"]
    assert copy_b["start_block"] is not None
    text = CliRunner().invoke(app, ["tape", "show", holding["site-a"]["barcode"]])
    assert text.exit_code == 0 and holding["site-a"]["barcode"] in text.stdout

    # recover: a bag stock bagit accepts; the target folder may hold other things.
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.txt").write_text("left alone\n")
    bag = Path(run("recover", aip_id, "--to", str(out))["bag"])
    assert bag == out / f"{aip_id}.v1"
    bagit.Bag(str(bag)).validate()
    assert (out / "unrelated.txt").read_text() == "left alone\n"
    again = run("recover", aip_id, "--to", str(out), code=2)
    assert "already exists" in again["message"]

    # A healthy archive: audit clean, repair has nothing to do.
    audit = run("audit")
    assert audit["ok"] and audit["checked"] == 2
    report = run("repair")
    assert report["ok"] and report["rebuilt"] == [] and report["failed"] == []

    # Damage site B's copy on the cartridge itself; the audit finds it (and, told
    # not to repair, leaves it to `repair`).
    corrupt_block(home, copy_b)
    audit = run("audit", "--no-repair", code=3)
    [bad] = audit["failed"]
    assert (bad["copy_id"], bad["barcode"], bad["path"]) == (
        copy_b["id"],
        copy_b["barcode"],
        path,
    )
    assert [r["result"] for r in audit["copies"]].count("ok") == 1
    assert audit["repairs"] == [] and audit["unrepaired"] == [bad]

    # Repair rebuilds it from site A onto another site-B cartridge.
    report = run("repair")
    assert report["ok"]
    [rebuilt] = report["rebuilt"]
    assert rebuilt["site"] == "site-b" and rebuilt["barcode"] != copy_b["barcode"]
    assert report["discarded"] == [copy_b["id"]]
    statuses = {c["status"] for c in run("tape", "show", copy_b["barcode"])["contents"]}
    assert statuses == {"discarded"}

    audit = run("audit")
    assert audit["ok"] and audit["checked"] == 2
    bag = Path(run("recover", aip_id, "--version", "1", "--to", str(tmp_path / "again"))["bag"])
    bagit.Bag(str(bag)).validate()


def test_unknown_barcode_and_aip_are_clear_errors(home: Path, tmp_path: Path) -> None:
    missing = run("tape", "show", "Z99999L9", code=1)
    assert missing["error"] == "NotFoundError" and missing["barcode"] == "Z99999L9"
    text = CliRunner().invoke(app, ["tape", "show", "Z99999L9"])
    assert text.exit_code == 1 and "no cartridge Z99999L9" in text.output

    unknown = "00000000-0000-0000-0000-000000000000"
    lost = run("recover", unknown, "--to", str(tmp_path / "x"), code=1)
    assert lost["error"] == "NotFoundError" and lost["aip_id"] == unknown
    assert not (tmp_path / "x").exists()  # nothing made for an AIP that does not exist

    a_file = tmp_path / "file"
    a_file.write_text("")
    # The catalogue answers first; a --to that cannot take a bag is test_data_root's.
    assert run("recover", unknown, "--to", str(a_file), code=1)["error"] == "NotFoundError"
    # An empty --to is a usage error, never the current folder.
    empty = run("recover", unknown, "--to", "", code=2)
    assert empty["error"] == "UsageError" and "--to is empty" in empty["message"]

    # An empty archive audits clean and needs no repair.
    empty_audit = run("audit")
    assert {k: empty_audit[k] for k in ("site", "ok", "checked", "matched", "cartridges")} == {
        "site": None,
        "ok": True,
        "checked": 0,
        "matched": 0,
        "cartridges": [],
    }
    assert empty_audit["failed"] == empty_audit["copies"] == empty_audit["repairs"] == []
    assert run("repair")["ok"]
