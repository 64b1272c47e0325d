"""Virus scanning at ingest, with the real clamd the session starts, through every way in.

The scan runs right after staging, before identification and characterisation:
no format tool may parse a file carrying a known virus, and nothing infected
may reach tape, where it would be kept for decades and copied at every
migration. An infected bag is rejected at stage ``scan`` with a report naming
each file and signature, the same from the CLI, a hot folder and the API. A
scanner that cannot be reached makes the SIP wait, never pass unscanned. Only
the tenant's own rule turns scanning off for its bags.

The signatures are the test database of tests/scanning.py (EICAR and a marker
string), since there is no network for freshclam; clamscan, the fallback
without a daemon, is checked on the same database.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit  # type: ignore[import-untyped]
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from preservation import ingest
from preservation.api import create_app
from preservation.catalog import AIPVersion, SIPState, TapeCopy, service, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ScannerUnavailableError
from preservation.metadata.reader import read_mets
from preservation.storage import recovery
from preservation.tokens import create_token
from tests.scanning import (
    EICAR,
    EICAR_SIGNATURE,
    MARKER,
    MARKER_SIGNATURE,
    clamd_program,
    make_signature_db,
    require_clamd,
    require_clamscan,
)
from tests.trees import tree_digest

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"
EICAR_FILE = "data/downloads/eicar.com"
MARKER_FILE = "data/notes/deep/inside/letter to café.txt"


def _infected(root: Path, name: str, relpath: str, content: bytes) -> Path:
    """A copy of the sample bag with one more file, its manifests made again."""
    bag_dir = root / name
    shutil.copytree(SAMPLE, bag_dir)
    target = bag_dir / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    bagit.Bag(str(bag_dir)).save(manifests=True)
    return bag_dir


@pytest.fixture
def eicar_bag(tmp_path: Path) -> Path:
    return _infected(tmp_path / "bags", "downloads", EICAR_FILE, EICAR)


@pytest.fixture
def marker_bag(tmp_path: Path) -> Path:
    letter = b"Dear donor,\nthank you for the letters.\n" + MARKER + b"\nYours,\n"
    return _infected(tmp_path / "bags", "letters", MARKER_FILE, letter)


@pytest.fixture
def scanner(virus_scanner: str | None) -> str:
    """The session's clamd socket; without clamd, skip locally and FAIL under CI."""
    require_clamd()
    assert virus_scanner is not None
    return virus_scanner


@pytest.fixture
def ctx(settings: Settings, scanner: str) -> Iterator[Context]:
    assert settings.clamd_socket == scanner  # every Settings() scans through the session's clamd
    c = open_context(settings)
    yield c
    c.close()


def _events(ctx: Context, sip_id: str, kind: str | None = None) -> list[Any]:
    with session_scope(ctx.sessions) as s:
        found = [e for e in service.list_events(s, sip_id=sip_id) if kind in (None, e.type)]
        s.expunge_all()
        return found


def _nothing_on_tape(ctx: Context) -> None:
    with session_scope(ctx.sessions) as s:
        assert s.scalar(select(func.count()).select_from(AIPVersion)) == 0
        assert s.scalar(select(func.count()).select_from(TapeCopy)) == 0


def _engine(program: str | None = None) -> str:
    """``ClamAV 1.4.6``, as the engine (the session's clamd by default) calls itself."""
    done = subprocess.run(
        [program or clamd_program() or "clamd", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().split("/", 1)[0]


def _assert_rejected_at_scan(
    ctx: Context, result: ingest.IngestResult, file: str, signature: str, engine: str = ""
) -> dict[str, Any]:
    """The one problem, its report, its failed event, and nothing left behind; the report."""
    assert result.state == SIPState.REJECTED.value
    [problem] = result.problems
    assert (problem["rule"], problem["file"], problem["signature"]) == (
        "virus-found",
        file,
        signature,
    )
    assert problem["severity"] == "error" and signature in problem["message"]
    report = json.loads((Path(result.rejected_to or "") / "report.json").read_text())
    assert report["stage"] == "scan"
    assert report["problems"] == result.problems
    assert f"{file}: virus-found" in (Path(result.rejected_to or "") / "report.txt").read_text()
    [check] = _events(ctx, result.sip_id, "virus check")
    assert check.outcome == "failure"
    assert (engine or _engine()) in check.detail and "nothing was written to tape" in check.detail
    assert [p["signature"] for p in json.loads(check.outcome_detail)] == [signature]
    # Rejected before identification: no format tool ever opened the files.
    assert _events(ctx, result.sip_id, "format identification") == []
    assert _events(ctx, result.sip_id, "metadata extraction") == []
    _nothing_on_tape(ctx)
    assert not (ctx.settings.staging_dir / result.sip_id).exists()
    with session_scope(ctx.sessions) as s:
        assert service.get_sip(s, result.sip_id).aip_id is None
        assert service.verify_event_chain(s, "museum") == []
    return dict(report)


# -- a clean bag ----------------------------------------------------------------------------


def test_a_clean_bag_records_a_virus_check_naming_engine_and_signatures(
    tmp_path: Path, scanner: str
) -> None:
    """The check is evidence: which engine, which signatures, so an audit can judge it later."""
    db = make_signature_db(tmp_path / "clamav-db")  # the very signatures clamd loaded
    settings = Settings(home=tmp_path / "var", quiescent_seconds=0.2, clamav_db=db)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        result = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert result.state == SIPState.COMMITTED.value, result.problems
        [check] = _events(ctx, result.sip_id, "virus check")
        engine = _engine()
        assert re.fullmatch(r"ClamAV \d+\.\d+\.\d+", engine)
        assert check.outcome == "success" and check.outcome_detail == "no virus found"
        assert engine in check.detail
        assert "preservation-test.ndb" in check.detail and "3 signatures" in check.detail
        # The agent is the engine with its signature release: which signatures looked.
        [program] = check.agents["executing program"]
        assert program.startswith(f"{engine} (signatures ") and "3 signatures" in program
        with session_scope(ctx.sessions) as s:
            files = len(service.list_files(s, sip_id=result.sip_id))
            assert service.verify_event_chain(s, "museum") == []
        tags = check.objects["tag_files"]
        assert check.objects == {"files": files, "tag_files": tags} and tags >= 3
        assert check.detail.startswith(f"{files + tags} file(s) scanned with {engine}")

        bag = recovery.recover(ctx, result.aip_id or "", dest_dir=tmp_path / "recovered")
        for mets in (bag / "data" / "METS.xml", bag / "data" / "representations/rep1/METS.xml"):
            package = read_mets(mets).package
            [agent] = [a for a in package.agents if a.name == "ClamAV"]
            assert agent.type == "software" and engine in (agent.version or "")
            [event] = [e for e in package.events if e.type == "virus check"]
            assert event.outcome == "success"
            programs = [a.agent_id for a in event.agents if a.role == "executing program"]
            assert programs == [agent.id]
    finally:
        ctx.close()


# -- an infected bag, by each way in ----------------------------------------------------------


@pytest.mark.parametrize(
    ("bag_fixture", "file", "signature"),
    [
        ("eicar_bag", EICAR_FILE, EICAR_SIGNATURE),
        ("marker_bag", MARKER_FILE, MARKER_SIGNATURE),
    ],
)
def test_an_infected_bag_is_rejected_at_scan_and_nothing_reaches_tape(
    ctx: Context, request: pytest.FixtureRequest, bag_fixture: str, file: str, signature: str
) -> None:
    """Found anywhere in the payload, however deep, and named by its path in the bag."""
    bag: Path = request.getfixturevalue(bag_fixture)
    before = tree_digest(bag)
    result = ingest.run_ingest(ctx, bag, tenant="museum")
    _assert_rejected_at_scan(ctx, result, file, signature)
    assert tree_digest(bag) == before  # the submitter's own copy is never touched
    rejected = Path(result.rejected_to or "")
    assert (rejected / bag.name / file).read_bytes() == (bag / file).read_bytes()


def test_a_failed_virus_check_names_clamav_as_its_executing_program(
    ctx: Context, eicar_bag: Path
) -> None:
    """Who found the virus is part of the evidence, whatever the outcome of the check."""
    result = ingest.run_ingest(ctx, eicar_bag, tenant="museum")
    assert result.state == SIPState.REJECTED.value
    [check] = _events(ctx, result.sip_id, "virus check")
    assert check.outcome == "failure"
    [program] = check.agents["executing program"]
    assert program.startswith(f"{_engine()} (signatures ")


def test_cli_ingest_of_an_infected_bag_exits_non_zero_with_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eicar_bag: Path, scanner: str
) -> None:
    """A script sees exit 1 and the problem as JSON; a person sees the file and signature."""
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.delenv("PRESERVATION_BROKER_URL", raising=False)
    before = tree_digest(eicar_bag)
    done = CliRunner().invoke(app, ["ingest", str(eicar_bag), "--tenant", "museum", "--json"])
    assert done.exit_code == 1, done.output
    body = json.loads(done.stdout)
    assert body["state"] == "rejected" and body["aip_id"] is None
    [problem] = body["problems"]
    assert (problem["rule"], problem["file"], problem["signature"]) == (
        "virus-found",
        EICAR_FILE,
        EICAR_SIGNATURE,
    )
    report = json.loads((Path(body["rejected_to"]) / "report.json").read_text())
    assert report["stage"] == "scan" and report["problems"] == body["problems"]
    assert report["source"] == str(eicar_bag)
    assert tree_digest(eicar_bag) == before

    ctx = open_context(Settings(home=home))
    try:
        _assert_rejected_at_scan(
            ctx, ingest.result_of(ctx, body["sip_id"]), EICAR_FILE, EICAR_SIGNATURE
        )
    finally:
        ctx.close()
    text = CliRunner().invoke(app, ["ingest", str(eicar_bag), "--tenant", "museum"])
    assert text.exit_code == 1
    assert EICAR_FILE in text.output and EICAR_SIGNATURE in text.output


def test_an_infected_bag_in_a_hot_folder_is_moved_aside_with_its_report(
    ctx: Context, marker_bag: Path
) -> None:
    """A dropped bag belongs to the archive once claimed: it is moved aside, not copied."""
    dropped = ctx.settings.ingest_dir / "museum" / marker_bag.name
    dropped.parent.mkdir(parents=True)
    shutil.copytree(marker_bag, dropped)
    before = tree_digest(dropped)
    time.sleep(0.3)  # quiet for longer than quiescent_seconds
    [sip_id] = ingest.scan_and_claim(ctx, submit=lambda _sip_id: None)
    result = ingest.run_sip(ctx, sip_id)
    report = _assert_rejected_at_scan(ctx, result, MARKER_FILE, MARKER_SIGNATURE)
    rejected = ctx.settings.ingest_dir / "museum" / "rejected" / marker_bag.name
    assert result.rejected_to == str(rejected)
    assert report["source"] == str(dropped)
    assert tree_digest(rejected / marker_bag.name) == before  # moved, as it came
    assert not dropped.exists()
    claimed = ctx.settings.ingest_dir / "museum" / ".claimed"
    assert not claimed.exists() or not any(claimed.iterdir())


def _zip(tmp_path: Path, bag: Path) -> bytes:
    archive = shutil.make_archive(
        str(tmp_path / bag.name), "zip", root_dir=bag.parent, base_dir=bag.name
    )
    return Path(archive).read_bytes()


def test_an_infected_upload_ends_rejected_and_the_api_says_why(
    tmp_path: Path, eicar_bag: Path, scanner: str
) -> None:
    """The uploader only has the API: the SIP's status must say which file and why."""
    settings = Settings(
        home=tmp_path / "var",
        quiescent_seconds=0.2,
        site_wait_seconds=5,
        tape_idle_unmount_seconds=0.5,
        max_upload_bytes=50 * 2**20,
    )
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        with session_scope(ctx.sessions) as s:
            service.ensure_tenant(s, "museum", "Museum")
            token = create_token(s, role="submitter", tenant_id="museum", label="upload").secret
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(ctx=ctx), raise_server_exceptions=False) as client:
            r = client.post(
                "/api/v1/sips",
                content=_zip(tmp_path, eicar_bag),
                params={"name": "downloads"},
                headers={**headers, "Content-Type": "application/zip"},
            )
            assert r.status_code == 202, r.text
            url = r.json()["status_url"]
            deadline = time.monotonic() + 120
            body = client.get(url, headers=headers).json()
            ended = {*ingest.TERMINAL_STATES, "failed"}
            while body["state"] not in ended and time.monotonic() < deadline:
                time.sleep(0.2)
                body = client.get(url, headers=headers).json()
        assert body["state"] == "rejected", body
        assert body["aip_id"] is None
        [problem] = body["problems"]
        assert (problem["rule"], problem["file"]) == ("virus-found", EICAR_FILE)
        assert EICAR_SIGNATURE in problem["message"]
        result = ingest.result_of(ctx, body["sip_id"])
        _assert_rejected_at_scan(ctx, result, EICAR_FILE, EICAR_SIGNATURE)
        uploads = settings.ingest_dir / "museum" / ".uploads"
        assert not uploads.exists() or not any(uploads.iterdir())
    finally:
        ctx.close()


# -- a scanner away ---------------------------------------------------------------------------


def test_an_unreachable_scanner_leaves_the_sip_pending_until_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scanner: str
) -> None:
    """Never ingested unscanned, never rejected for the scanner's fault: it waits, then goes on."""
    home = tmp_path / "var"
    away = Settings(
        home=home,
        quiescent_seconds=0.2,
        clamd_socket=str(tmp_path / "no-clamd-here.sock"),
        site_wait_seconds=2,
    )
    away.ensure_dirs()
    ctx = open_context(away)
    try:
        with pytest.raises(ScannerUnavailableError) as info:
            ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        [sip_id] = ingest.pending_sips(ctx)
        with session_scope(ctx.sessions) as s:
            sip = service.get_sip(s, sip_id)
            assert sip.state is SIPState.STAGED  # staged, not scanned, not rejected
            assert sip.aip_id is None
            assert (sip.last_error or "").startswith("scan: ScannerUnavailableError: ")
            assert "no-clamd-here.sock" in (sip.last_error or "")
        assert "no-clamd-here.sock" in info.value.message
        assert _events(ctx, sip_id, "virus check") == []
        _nothing_on_tape(ctx)
        assert (away.staging_dir / sip_id).exists()  # kept for the next try
        [still] = ingest.resume(ctx, wait_seconds=0)
        assert still.state == SIPState.STAGED.value
        assert still.error is not None and "no-clamd-here.sock" in still.error
        assert ingest.result_of(ctx, sip_id).state == SIPState.STAGED.value
    finally:
        ctx.close()

    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    shown = CliRunner().invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)["sips"]
    assert row["sip_id"] == sip_id and row["state"] == "staged"
    assert "ScannerUnavailableError" in row["last_error"]

    back = open_context(Settings(home=home, quiescent_seconds=0.2))  # the real socket again
    try:
        assert back.settings.clamd_socket == scanner
        [done] = ingest.resume(back)
        assert done.state == SIPState.COMMITTED.value, done
        [check] = _events(back, sip_id, "virus check")
        assert check.outcome == "success"
        with session_scope(back.sessions) as s:
            assert service.get_sip(s, sip_id).last_error is None
            assert service.verify_event_chain(s, "museum") == []
        assert ingest.pending_sips(back) == []
    finally:
        back.close()


# -- a tenant's choice ------------------------------------------------------------------------


def test_a_tenant_that_turns_scanning_off_ingests_the_bag_unscanned(
    ctx: Context, eicar_bag: Path
) -> None:
    """``virus_scan: false`` is the tenant's own decision about its own holdings.

    A virology lab, or a digital-forensics collection, must preserve malware
    exactly as seized: scanning would reject the very evidence it deposits,
    and its bytes are only ever handed back to it. The archive stores bits; it
    never executes them. So the rule turns scanning off for that tenant alone,
    the event trail shows no virus check was claimed, and every other tenant's
    bag is still scanned by the same archive.
    """
    (ctx.settings.home_dir / "archiving-rules.json").write_text(
        json.dumps({"tenants": {"forensics": {"virus_scan": False}}})
    )
    kept = ingest.run_ingest(ctx, eicar_bag, tenant="forensics")
    assert kept.state == SIPState.COMMITTED.value, kept.problems
    assert _events(ctx, kept.sip_id, "virus check") == []
    with session_scope(ctx.sessions) as s:
        names = {f.original_name for f in service.list_files(s, sip_id=kept.sip_id)}
        assert service.verify_event_chain(s, "forensics") == []
    assert EICAR_FILE in names

    other = ingest.run_ingest(ctx, eicar_bag, tenant="museum")
    assert other.state == SIPState.REJECTED.value
    assert [p["signature"] for p in other.problems] == [EICAR_SIGNATURE]


# -- without a daemon -------------------------------------------------------------------------


def test_clamscan_rejects_the_bag_where_there_is_no_clamd(tmp_path: Path, eicar_bag: Path) -> None:
    """No clamd configured: clamscan runs once for the batch, on the given signatures."""
    require_clamscan()
    settings = Settings(
        home=tmp_path / "var",
        quiescent_seconds=0.2,
        clamd_socket=None,
        clamav_db=make_signature_db(tmp_path / "clamav-db"),
        virus_scan=True,  # on even where the session found no clamd and turned it off
    )
    assert settings.clamd_socket is None and settings.virus_scan
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        engine = _engine("clamscan")
        result = ingest.run_ingest(ctx, eicar_bag, tenant="museum")
        _assert_rejected_at_scan(ctx, result, EICAR_FILE, EICAR_SIGNATURE, engine)
        [check] = _events(ctx, result.sip_id, "virus check")
        assert "preservation-test.ndb" in check.detail
        clean = ingest.run_ingest(ctx, SAMPLE, tenant="library")
        assert clean.state == SIPState.COMMITTED.value, clean.problems
        [ok] = _events(ctx, clean.sip_id, "virus check")
        assert ok.outcome == "success" and engine in ok.detail
    finally:
        ctx.close()


def test_a_virus_in_a_tag_folder_is_found_too(ctx: Context, scanner: str, tmp_path: Path) -> None:
    """Tag files go into the AIP as received (data/submission/), so they are scanned as well."""
    bag = _infected(tmp_path / "bags", "tagged", "extra/readme.txt", EICAR)
    assert (bag / "extra" / "readme.txt").is_file()  # a tag folder, outside data/
    result = ingest.run_ingest(ctx, bag, tenant="museum")
    assert result.state == SIPState.REJECTED.value, result.problems
    [problem] = result.problems
    assert problem["rule"] == "virus-found"
    assert problem["file"] == "extra/readme.txt"
    assert problem["signature"] == EICAR_SIGNATURE
    _nothing_on_tape(ctx)
