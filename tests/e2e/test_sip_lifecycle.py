"""A SIP lifecycle an operator can trust: the door, stuck SIPs, interrupts, resume, status.

Each test reproduces what a user hit on the embedded default (SQLite, emulated
tape under ``PRESERVATION_HOME``), through the ``preservation`` command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from preservation.catalog import SIP, CopyStatus, StageLease, TapeCopy, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    monkeypatch.setenv("PRESERVATION_SITE_WAIT_SECONDS", "0")
    return home


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def run(*args: str, code: int = 0) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return json.loads(result.stdout)


def rows(home: Path, model: Any) -> list[Any]:
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            found = list(s.scalars(select(model)))
            s.expunge_all()
            return found
    finally:
        ctx.close()


def _env(home: Path, **extra: str) -> dict[str, str]:
    # A clean slate, but for the test run's virus scanner (tests/conftest.py).
    scanner = {"PRESERVATION_CLAMD_SOCKET", "PRESERVATION_VIRUS_SCAN"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PRESERVATION_") or k in scanner
    }
    env |= {
        "PRESERVATION_HOME": str(home),
        "PRESERVATION_TAPE_CARTRIDGES_PER_SITE": "3",
        "PRESERVATION_TAPE_CAPACITY": str(256 << 20),
        "PRESERVATION_SITE_WAIT_SECONDS": "0",
        **extra,
    }
    return env


def _preservation(home: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "preservation.cli", *args],
        env=_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a failpoint kills its whole process group, not pytest
    )


# -- 1. tenant ids at the door --------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["..", "", "a/b", "Museum", "-x", "x" * 64])
def test_bad_tenant_exits_2_naming_the_option_and_leaves_nothing(home: Path, tenant: str) -> None:
    result = cli("ingest", str(SAMPLE), "--tenant", tenant)
    assert result.exit_code == 2, result.output
    assert "--tenant" in result.stderr and "1-63 characters" in result.stderr
    assert not (home / "staging").exists() or not any((home / "staging").iterdir())
    if (home / "catalog.sqlite").exists():
        assert rows(home, SIP) == [] and rows(home, TapeCopy) == []
    assert not (home / "tape").exists() or not list((home / "tape").rglob("*.tar"))
    body = run("ingest", str(SAMPLE), "--tenant", tenant, code=2)
    assert body["rule"] == "tenant-id" and "--tenant" in body["message"]


def test_good_tenant_still_ingests_and_repair_is_clean(home: Path) -> None:
    body = run("ingest", str(SAMPLE), "--tenant", "kbr.be_archive-2")
    assert body["state"] == "committed"
    assert run("repair")["failed"] == []


# -- 3. no SIP can block the archive ---------------------------------------------------------


def _crash_in_store(home: Path) -> str:
    """An ingest killed mid-write at a site, as a power cut leaves it: WRITING rows, a lease."""
    proc = _preservation(
        home,
        "ingest",
        str(SAMPLE),
        "--tenant",
        "museum",
        PRESERVATION_FAILPOINTS="store",
        PRESERVATION_FAILPOINT_DIR=str(home.parent),
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    [sip] = rows(home, SIP)
    return sip.id


def test_status_shows_an_interrupted_stage_never_running(home: Path) -> None:
    sip_id = _crash_in_store(home)
    [row] = run("status")["sips"]
    assert row["sip_id"] == sip_id and len(row["sip_id"]) == 36  # full ids with --json
    assert row["interrupted"] is True
    assert row["stage"].endswith("(interrupted)") and "running" not in row["stage"]
    assert row["aip_id"] and len(row["aip_id"]) == 36
    human = cli("status")
    assert "(interrupted)" in human.stdout and "(running)" not in human.stdout
    assert sip_id[:8] in human.stdout and row["aip_id"][:8] in human.stdout  # the AIP column
    # Nor does ingesting the bag again call the dead runner's stage running.
    again = cli("ingest", str(SAMPLE), "--tenant", "museum")
    assert again.exit_code == 2 and sip_id in again.stderr
    assert "(interrupted)" in again.stderr and "(running)" not in again.stderr


def test_sip_discard_ends_a_stuck_sip(home: Path) -> None:
    sip_id = _crash_in_store(home)
    writing = [c for c in rows(home, TapeCopy) if c.status is CopyStatus.WRITING]
    assert writing, "the crash should have left a WRITING claim"
    assert (home / "staging" / sip_id).exists()

    refused = cli("sip", "discard", sip_id[:8])
    assert refused.exit_code == 2 and "--yes" in refused.stderr

    body = run("sip", "discard", sip_id[:8], "--yes")  # an 8-character prefix is enough
    assert body["sip_id"] == sip_id and body["state"] == "rejected"
    assert body["stage_before"].endswith("(interrupted)"), body  # its runner was dead
    assert set(body["discarded_copies"]) >= {c.id for c in writing}
    assert not (home / "staging" / sip_id).exists()
    copies = rows(home, TapeCopy)
    assert copies and all(c.status is CopyStatus.DISCARDED for c in copies)
    assert rows(home, StageLease) == []
    rejected = Path(body["rejected_to"])
    assert (rejected / "report.json").is_file() and (rejected / SAMPLE.name / "bagit.txt").is_file()
    report = json.loads((rejected / "report.json").read_text())
    assert report["stage"] == "discard" and report["problems"][0]["rule"] == "sip-discarded"

    ctx = open_context(Settings(home=home))
    try:
        from preservation.catalog import service

        with session_scope(ctx.sessions) as s:
            events = [e.type for e in service.list_events(s, sip_id=sip_id)]
            assert service.verify_event_chain(s, "museum") == []
    finally:
        ctx.close()
    assert "deletion" in events

    # Nothing is left for the archive's own tools to trip over.
    assert run("resume") == []
    repaired = run("repair")
    assert repaired["failed"] == [] and repaired["rebuilt"] == []
    assert run("status", "--state", "rejected")["sips"][0]["sip_id"] == sip_id
    assert run("audit")["ok"] is True
    # The same bag can now be ingested afresh.
    assert run("ingest", str(SAMPLE), "--tenant", "museum")["state"] == "committed"


def test_sip_discard_refuses_a_committed_sip(home: Path) -> None:
    sip_id = run("ingest", str(SAMPLE), "--tenant", "museum")["sip_id"]
    body = run("sip", "discard", sip_id, "--yes", code=2)
    assert "committed" in body["message"]


def test_sip_discard_refuses_while_an_ingest_waits_for_a_site(home: Path) -> None:
    """The runner is alive between its attempts: the SIP is not ended under it."""
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    proc = _preservation(
        home, "ingest", str(SAMPLE), "--tenant", "museum", PRESERVATION_SITE_WAIT_SECONDS="120"
    )
    try:

        def waiting() -> bool:
            found = rows(home, SIP)
            return bool(found) and found[0].state.value == "packaged"

        wait_for(waiting, "the ingest to wait for site-b", limit=60)
        [sip] = rows(home, SIP)
        refused = cli("sip", "discard", sip.id, "--yes")
        assert refused.exit_code == 3, refused.output
        assert "being worked on" in refused.stderr and sip.id in refused.stderr
        assert rows(home, SIP)[0].state.value == "packaged"
        assert proc.poll() is None  # the ingest waits on, undisturbed
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    # Once the runner has stopped, the SIP can be ended.
    body = run("sip", "discard", sip.id, "--yes")
    assert body["state"] == "rejected"


def test_resume_goes_on_after_a_failing_sip_and_says_which(home: Path, tmp_path: Path) -> None:
    # Two SIPs left pending by site-b being down.
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    first = run("ingest", str(SAMPLE), "--tenant", "museum", code=3)
    other = tmp_path / "other"
    shutil.copytree(SAMPLE, other)
    second = run("ingest", str(other), "--tenant", "museum", code=3)
    assert first["sip_id"] and second["sip_id"]
    flag.unlink()
    # The first one's staging tar is lost: it can no longer finish (the other
    # order, the second failing, would not show that the list goes on).
    shutil.rmtree(home / "staging" / first["sip_id"])
    result = cli("resume", "--json")
    assert result.exit_code == 3, result.output
    outcomes = {r["sip_id"]: r for r in json.loads(result.stdout)}
    assert set(outcomes) == {first["sip_id"], second["sip_id"]}
    assert outcomes[second["sip_id"]]["state"] == "committed"
    assert outcomes[first["sip_id"]]["state"] != "committed"
    aip_of = {r["sip_id"]: r["aip_id"] for r in run("status")["sips"]}
    error = outcomes[first["sip_id"]]["error"]
    assert f"AIP {aip_of[first['sip_id']]} v1: the staging tar is gone" in error, error
    human = cli("resume")
    assert human.exit_code == 3
    assert first["sip_id"] in human.stderr  # the failure names its SIP


def test_a_lost_staging_tar_is_named_by_the_version_number(home: Path, tmp_path: Path) -> None:
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    run("ingest", str(SAMPLE), "--tenant", "museum", code=3)
    other = tmp_path / "other"
    shutil.copytree(SAMPLE, other)
    second = run("ingest", str(other), "--tenant", "museum", code=3)  # version row 2, its v1
    flag.unlink()
    shutil.rmtree(home / "staging" / second["sip_id"])
    outcomes = {r["sip_id"]: r for r in run("resume", code=3)}
    error = outcomes[second["sip_id"]]["error"]
    aip_of = {r["sip_id"]: r["aip_id"] for r in run("status")["sips"]}
    assert f"AIP {aip_of[second['sip_id']]} v1: the staging tar is gone" in error, error


def test_ingest_pending_sip_reported_then_status_filters_and_prefixes(home: Path) -> None:
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    pending = run("ingest", str(SAMPLE), "--tenant", "museum", code=3)
    sip_id = pending["sip_id"]
    # Ingesting the same bag again points to resume instead of making a second AIP.
    again = cli("ingest", str(SAMPLE), "--tenant", "museum")
    assert again.exit_code == 2, again.output
    assert sip_id in again.stderr and f"preservation resume {sip_id}" in again.stderr
    # So is another spelling of it: a symlink, or a path through one.
    link = home.parent / "link-to-sample"
    link.symlink_to(SAMPLE)
    for spelling in (link, home.parent / "." / "link-to-sample"):
        other = cli("ingest", str(spelling), "--tenant", "museum")
        assert other.exit_code == 2, other.output
        assert f"preservation resume {sip_id}" in other.stderr
    assert len(rows(home, SIP)) == 1
    assert [r["sip_id"] for r in run("status", "--state", "packaged")["sips"]] == [sip_id]
    assert run("status", "--state", "committed")["sips"] == []
    assert cli("status", "--state", "nonsense").exit_code == 2
    # The last error is the site's, until a later stage succeeds.
    [row] = run("status")["sips"]
    assert "site-b" in (row["last_error"] or "")
    flag.unlink()
    too_short = cli("resume", sip_id[:7])
    assert too_short.exit_code == 2 and "at least 8" in too_short.stderr
    [done] = run("resume", sip_id[:8])
    assert done["state"] == "committed"
    [row] = run("status")["sips"]
    assert row["last_error"] is None
    aip_id = done["aip_id"]
    assert run("show", aip_id[:8])["aip_id"] == aip_id
    bag = run("recover", aip_id[:10], "--to", str(home.parent / "out"))["bag"]
    assert Path(bag, "bagit.txt").is_file()
    assert cli("show", "00000000").exit_code == 1


def test_last_error_is_cleared_once_a_later_stage_succeeds(home: Path) -> None:
    from preservation import ingest

    settings = Settings(home=home)
    ctx = open_context(settings)
    try:
        sip_id = ingest.receive(ctx, SAMPLE, tenant="museum")
        real = ingest.STAGE_FUNCTIONS["identify"]
        calls = {"n": 0}

        def flaky(c: Any, s: str, *a: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("identification tool crashed")
            real(c, s, *a)

        ingest.STAGE_FUNCTIONS["identify"] = flaky
        try:
            ingest.run_stage(ctx, "validate", sip_id)
            with pytest.raises(OSError):
                ingest.run_stage(ctx, "identify", sip_id)
            with session_scope(ctx.sessions) as s:
                assert "crashed" in (s.get(SIP, sip_id).last_error or "")  # type: ignore[union-attr]
            ingest.run_stage(ctx, "identify", sip_id)
            ingest.run_stage(ctx, "describe", sip_id)
            with session_scope(ctx.sessions) as s:
                assert s.get(SIP, sip_id).last_error is None  # type: ignore[union-attr]
            # One site's store succeeding does not hide the other site's failure.
            ingest.run_stage(ctx, "package", sip_id)
            with session_scope(ctx.sessions) as s:
                sip = s.get(SIP, sip_id)
                assert sip is not None
                sip.last_error = "store:site-b: SiteUnavailableError: site-b down"
            ingest.run_stage(ctx, "store", sip_id, "site-a")
            with session_scope(ctx.sessions) as s:
                assert "site-b" in (s.get(SIP, sip_id).last_error or "")  # type: ignore[union-attr]
            ingest.run_stage(ctx, "store", sip_id, "site-b")
            with session_scope(ctx.sessions) as s:
                assert s.get(SIP, sip_id).last_error is None  # type: ignore[union-attr]
        finally:
            ingest.STAGE_FUNCTIONS["identify"] = real
    finally:
        ctx.close()


# -- 4. interrupts ---------------------------------------------------------------------------


def _big_bag(root: Path, files: int = 3000) -> Path:
    bag = root / "many-files"
    (bag).mkdir(parents=True)
    for i in range(files):
        (bag / f"note-{i:05d}.txt").write_text(f"note {i}\n" * 20)
    bagit.make_bag(str(bag), checksums=["sha256"])
    return bag


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_ingest_says_how_to_resume_and_exits_130(
    home: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    bag = _big_bag(tmp_path)
    proc = _preservation(home, "ingest", str(bag), "--tenant", "museum")
    staging = home / "staging"
    wait_for(
        lambda: (
            staging.is_dir() and any(not p.name.startswith("validate") for p in staging.iterdir())
        ),  # noqa: E501
        "the SIP's staging folder",
        limit=60,
    )
    time.sleep(0.3)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    [sip] = rows(home, SIP)
    assert f"SIP {sip.id} stopped during stage " in stderr or (
        f"SIP {sip.id} stopped between two stages" in stderr
    )
    assert f"preservation resume {sip.id}" in stderr
    assert "Traceback" not in stderr
    again = cli("ingest", str(bag), "--tenant", "museum")
    assert again.exit_code == 2 and f"preservation resume {sip.id}" in again.stderr
    [done] = run("resume", sip.id)
    assert done["state"] == "committed"
    assert len(rows(home, SIP)) == 1


# -- 6/7. errors and smaller things ------------------------------------------------------------


def test_audit_finds_an_active_version_short_of_copies(home: Path) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", "museum")["aip_id"]
    assert run("audit")["ok"] is True
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            copy = s.scalars(select(TapeCopy).where(TapeCopy.site == "site-b")).one()
            copy.status = CopyStatus.DISCARDED
    finally:
        ctx.close()
    body = run("audit", code=3)
    assert body["ok"] is False and body["failed"] == []
    [finding] = body["under_replicated"]
    assert finding["aip_id"] == aip_id and finding["missing_sites"] == ["site-b"]
    human = cli("audit")
    assert human.exit_code == 3 and "all ok" not in human.stdout
    assert "UNDER-REPLICATED" in human.stderr


def test_ingest_empty_path_is_a_usage_error(home: Path) -> None:
    result = cli("ingest", "", "--tenant", "museum")
    assert result.exit_code == 2 and "PATH is empty" in result.stderr
    assert run("ingest", "", "--tenant", "museum", code=2)["error"] == "UsageError"


def test_a_folder_that_is_not_a_bag_is_refused_and_not_copied(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 1000)
    body = run("ingest", str(folder), "--tenant", "museum", code=1)
    assert body["state"] == "refused" and body["problems"][0]["rule"] == "not-a-bag"
    assert not (home / "rejected").exists() or not any((home / "rejected").iterdir())
    assert (folder / "a.jpg").is_file()
    if (home / "catalog.sqlite").exists():
        assert rows(home, SIP) == []
    missing = cli("ingest", str(tmp_path / "nope"), "--tenant", "museum")
    assert missing.exit_code == 1 and "no such file" in missing.stderr


def test_usage_errors_honour_json(home: Path) -> None:
    body = run("ingest", str(SAMPLE), code=2)  # --tenant missing
    assert body["error"] == "UsageError" and "--tenant" in body["message"]
    assert run("status", "--bogus", code=2)["error"] == "UsageError"
    # Our own usage errors have Click's shape, with the command that refused.
    short = run("resume", "1234", code=2)
    assert short["rule"] == "id-prefix" and short["command"] == "preservation resume"


def test_validate_writes_nothing_under_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESERVATION_HOME", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    zipped = shutil.make_archive(str(tmp_path / "sample"), "zip", SAMPLE.parent, SAMPLE.name)
    for target in (str(SAMPLE), zipped):
        result = cli("validate", target)
        assert result.exit_code == 0, result.output
    assert list(cwd.iterdir()) == []


def test_validate_json_has_one_shape_and_applies_the_tenant_rules(
    home: Path, tmp_path: Path
) -> None:
    keys = None
    empty = tmp_path / "empty.zip"
    import zipfile

    zipfile.ZipFile(empty, "w").close()
    (home).mkdir(parents=True, exist_ok=True)
    (home / "archiving-rules.json").write_text(
        json.dumps({"tenants": {"strict": {"required_bag_info": ["Source-Organization-Id"]}}})
    )
    cases = [
        ([str(SAMPLE)], 0),
        ([str(ROOT / "examples" / "bags" / "invalid-bag")], 1),
        ([str(empty)], 1),
        ([str(SAMPLE), "--tenant", "strict"], 1),
    ]
    for args, code in cases:
        body = run("validate", *args, code=code)
        keys = keys or set(body)
        assert set(body) == keys, args
        assert body["valid"] is (code == 0)
    strict = run("validate", str(SAMPLE), "--tenant", "strict", code=1)
    assert strict["problems"][-1]["rule"] == "tenant-required-bag-info"
    assert run("validate", str(SAMPLE), "--tenant", "museum")["valid"] is True
    assert run("validate", str(SAMPLE), "--tenant", "Bad", code=2)["rule"] == "tenant-id"


def test_validate_tenant_applies_on_duplicate_reading_the_catalogue_only(home: Path) -> None:
    nothing = run("validate", str(SAMPLE), "--tenant", "museum")
    assert nothing["duplicate_check"].startswith("not done: no catalogue")
    assert not home.exists()  # validate made no archive
    first = run("ingest", str(SAMPLE), "--tenant", "museum")
    catalogue = home / "catalog.sqlite"
    before = (catalogue.stat().st_mtime_ns, catalogue.read_bytes())
    warned = run("validate", str(SAMPLE), "--tenant", "museum")
    assert warned["valid"] is True and warned["duplicate_check"] == "done"
    assert {p["rule"] for p in warned["problems"]} == {
        "duplicate-payload",
        "duplicate-external-identifier",
    }
    assert all(p["aip_id"] == first["aip_id"] for p in warned["problems"])
    assert run("validate", str(SAMPLE), "--tenant", "library")["problems"] == []
    (home / "archiving-rules.json").write_text(
        json.dumps({"tenants": {"museum": {"on_duplicate": "reject"}}})
    )
    refused = run("validate", str(SAMPLE), "--tenant", "museum", code=1)
    assert refused["valid"] is False and first["aip_id"] in refused["problems"][0]["message"]
    assert (catalogue.stat().st_mtime_ns, catalogue.read_bytes()) == before


def test_implicit_data_root_is_said_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESERVATION_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    # Where there is no ./var, a command that only reads says so and makes none.
    for command in (
        ["status"],
        ["show", "0" * 8],
        ["tape", "ls"],
        ["audit"],
        ["repair"],
        ["resume"],
        ["sip", "discard", "0" * 8, "--yes"],
    ):
        result = cli(*command)
        assert result.exit_code == 3, (command, result.output)
        assert "no archive at" in result.stderr and "PRESERVATION_HOME" in result.stderr
        assert list(tmp_path.iterdir()) == [], command
    (tmp_path / "var").mkdir()
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "PRESERVATION_HOME is not set" in result.stderr
    assert str(tmp_path / "var") in result.stderr.replace("\n", "")


def test_human_output_never_shows_raw_json_log_lines(home: Path) -> None:
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    proc = _preservation(
        home, "ingest", str(SAMPLE), "--tenant", "museum", PRESERVATION_SITE_WAIT_SECONDS="2.5"
    )
    out, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert "pending" in stderr
    assert not [line for line in (out + stderr).splitlines() if line.lstrip().startswith("{")]


def test_status_tells_a_remote_runner_at_work_from_one_whose_lease_expired(home: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from preservation.catalog import service
    from preservation.sips import sip_rows

    ctx = open_context(Settings(home=home))
    try:
        now = datetime.now(UTC)
        with session_scope(ctx.sessions) as s:
            ids = []
            for seconds in (60, -60):  # a worker elsewhere at work, and one gone silent
                sip = service.create_sip(s, tenant_id="museum", name="bag", source_path="/x")
                sip.stage = "identify (running)"
                s.add(
                    StageLease(
                        key=f"sip:{sip.id}",
                        owner="worker-7.example:4242:0badf00d",
                        expires_at=now + timedelta(seconds=seconds),
                    )
                )
                ids.append(sip.id)
        _, shown = sip_rows(ctx)
        by_id = {row["sip_id"]: row for row in shown}
        assert by_id[ids[0]]["stage"] == "identify (running)"
        assert by_id[ids[0]]["interrupted"] is False
        assert by_id[ids[1]]["stage"] == "identify (interrupted)"
        assert by_id[ids[1]]["interrupted"] is True
    finally:
        ctx.close()


def test_an_interrupt_before_the_sip_exists_is_json_under_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from preservation.cli.ingest import _interrupted

    code = _interrupted(None, None, True)
    assert code.exit_code == 130
    body = json.loads(capsys.readouterr().out)
    assert body["state"] == "interrupted" and body["sip_id"] is None and body["resume"] is None
