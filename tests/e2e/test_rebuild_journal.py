"""The event journal on tape brings the history back with the catalogue, even when it is behind.

What the comparison in test_catalog_rebuild.py cannot show: events recorded
after the last sync (only a METS holds them) chained on from the journal's
head, after which ``verify-history`` finds the history intact; a damaged
segment copy at one site passed over for the other site's; and the choices
the rebuild makes between copies of a segment (a gap, two whole copies that
differ).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from preservation import versions
from preservation.catalog.database import session_scope
from preservation.catalog.models import JournalCopy, JournalFile, PremisEvent, Tenant
from preservation.catalog.service import verify_event_chain
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.evidence import journal
from preservation.evidence.journal import JournalEvent
from preservation.metadata.dc_input import dc_from_json
from preservation.storage.rebuild import RebuildReport, _JournalCopy, _tenant_journals
from preservation.storage.sites import build_sites
from tests.e2e.test_cli_tape import SAMPLE, run

TENANT = "museum"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded default with no TSA: segments travel unstamped, which is enough here."""
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_JOURNAL_INTERVAL_SECONDS", "0.001")  # sync per ingest
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    monkeypatch.delenv("PRESERVATION_TSA_URL", raising=False)
    return home


def _ctx(home: Path) -> Context:
    return open_context(Settings(home=home))


def _events(home: Path) -> dict[str, dict[str, Any]]:
    """Every event by uuid, each as its columns but the surrogate id."""
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            return {
                e.uuid: {
                    c.name: getattr(e, c.name)
                    for c in PremisEvent.__table__.columns
                    if c.name != "id"
                }
                for e in s.scalars(select(PremisEvent))
            }
    finally:
        ctx.close()


def _metadata_version(home: Path, aip_id: str, title: str) -> None:
    ctx = _ctx(home)
    try:
        info = versions.prepare_metadata_version(
            ctx, aip_id, dc_from_json({"Title": title}), tenant_id=TENANT, who="jane"
        )
        assert versions.finish_version(ctx, info.version_id) is True
        for site in build_sites(ctx).values():
            site.release_all()
    finally:
        ctx.close()


def test_events_after_the_last_sync_are_chained_on_from_the_journal_head(home: Path) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]  # and its sync
    synced = _events(home)
    journalled = len(synced)
    head = next(e["hash"] for e in synced.values() if e["seq"] == journalled)
    # A version 2 after the sync: its events wait for the next one, and its METS holds
    # those recorded before it was written.
    _metadata_version(home, aip_id, "T2")
    before = _events(home)
    assert len(before) > journalled

    (home / "catalog.sqlite").unlink()
    report = run("catalog", "rebuild", "--from-tapes")
    assert report["complete"] is True, report
    assert (report["journal_segments"], report["journal_events"]) == (1, journalled)
    after = _events(home)

    # The journal's events come back as they were, every field and hash.
    for key, event in synced.items():
        assert after[key] == before[key], event["seq"]
    # The others a METS holds follow on from the journal's head, in time order, with
    # new hashes; those no METS holds (version 2's own storing and commit) are lost.
    rest = sorted((e for e in after.values() if e["seq"] > journalled), key=lambda e: e["seq"])
    assert rest and report["events"] == journalled + len(rest)
    assert set(before) - set(after), "version 2's storing and commit: in no METS, not synced"
    assert [e["seq"] for e in rest] == list(range(journalled + 1, journalled + len(rest) + 1))
    assert rest[0]["prev_hash"] == head
    assert [e["occurred_at"] for e in rest] == sorted(e["occurred_at"] for e in rest)
    for e in rest:
        old = before[e["uuid"]]
        assert (e["type"], e["detail"], e["outcome"]) == (
            old["type"],
            old["detail"],
            old["outcome"],
        )
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            assert verify_event_chain(s, TENANT) == []
            tenant = s.get_one(Tenant, TENANT)
            assert (tenant.event_count, tenant.event_head) == (rest[-1]["seq"], rest[-1]["hash"])
    finally:
        ctx.close()

    # verify-history finds the history intact: the journal agrees with the database, and
    # the events after it are not on tape yet.
    checked = CliRunner().invoke(app, ["verify-history"])
    assert checked.exit_code == 0, checked.output
    assert "history intact" in checked.output
    [tenant_report] = run("verify-history")["tenants"]
    assert tenant_report["ok"] is True
    assert (tenant_report["segments"], tenant_report["not_yet_on_tape"]) == (1, len(rest))

    # The next sync puts the re-chained events on tape after the journal's head.
    assert run("history", "sync")["segments_cut"] == 1
    [tenant_report] = run("verify-history")["tenants"]
    assert tenant_report["ok"] is True
    assert (tenant_report["segments"], tenant_report["not_yet_on_tape"]) == (2, 0)


def test_a_damaged_segment_copy_at_one_site_gives_way_to_the_other_sites(home: Path) -> None:
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    before = _events(home)
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            path, barcode, block = s.execute(
                select(JournalFile.path, JournalCopy.barcode, JournalCopy.start_block)
                .join(JournalCopy, JournalCopy.file_id == JournalFile.id)
                .where(JournalFile.kind == "segment", JournalCopy.site == "site-a")
            ).one()
    finally:
        ctx.close()
    # One event's outcome changed inside the record on site A's cartridge, as a rewrite
    # of the tape (or a block decayed to other text) would leave it.
    record = home / "tape" / "site-a" / "cartridges" / barcode / f"1_{block}_R"
    data = record.read_bytes()
    assert b'"outcome":"success"' in data
    record.write_bytes(data.replace(b'"outcome":"success"', b'"outcome":"failure"', 1))

    (home / "catalog.sqlite").unlink()
    report = run("catalog", "rebuild", "--from-tapes", code=3)  # partial: a problem found
    [problem] = report["problems"]
    assert problem.startswith(f"{path} at site-a/{barcode}: event ") and "hash" in problem
    assert report["journal_events"] == len(before)
    assert _events(home) == before
    ctx = _ctx(home)
    try:
        with session_scope(ctx.sessions) as s:
            sites = s.scalars(
                select(JournalCopy.site)
                .join(JournalFile, JournalFile.id == JournalCopy.file_id)
                .where(JournalFile.path == path)
            ).all()
            assert sites == ["site-b"], "the damaged copy is not listed as a good one"
    finally:
        ctx.close()
    # The next sync writes site A's copy again, on another cartridge.
    assert run("history", "sync")["files_written"] == 1


# -- choosing between copies, without a tape ---------------------------------------------------


def _chain(n: int, *, changed: int | None = None) -> list[JournalEvent]:
    """A tenant's first ``n`` events as the journal writes them; ``changed`` one reworded,
    every hash after it recomputed (a consistent rewrite: the rule is public)."""
    events: list[JournalEvent] = []
    prev: str | None = None
    for seq in range(1, n + 1):
        fields = {
            "uuid": str(uuid.UUID(int=seq)),
            "tenant": TENANT,
            "seq": seq,
            "sip": "sip-1",
            "aip": None,
            "type": "ingestion",
            "at": datetime(2026, 1, 1, 0, 0, seq).isoformat(timespec="microseconds"),
            "detail": "rewritten" if seq == changed else f"event {seq}",
            "outcome": "success",
            "outcome_detail": "",
            "agents": {"implementer": ["preservation 1.0"]},
            "objects": {"files": seq},
            "prev": prev,
        }
        text = journal.canonical(fields).encode()
        events.append(JournalEvent(seq, hashlib.sha256(text).hexdigest(), prev, text))
        prev = events[-1].hash
    return events


def _file(events: list[JournalEvent], first: int, last: int) -> tuple[str, bytes]:
    run_ = events[first - 1 : last]
    data = journal.render_segment(TENANT, first, last, run_[0].prev, run_[-1].hash, run_)
    return journal.segment_path(TENANT, first, last), data


def _copies(*files: tuple[str, str, bytes]) -> dict[tuple[str, str], list[_JournalCopy]]:
    found: dict[tuple[str, str], list[_JournalCopy]] = {}
    for n, (site, path, data) in enumerate(files):
        copy = _JournalCopy(site, f"{site[-1].upper()}0000{n}L9", n, None, data)
        found.setdefault((TENANT, path), []).append(copy)
    return found


def test_copies_are_chosen_whole_and_in_order_or_not_at_all() -> None:
    events = _chain(7)
    first, second, third = _file(events, 1, 2), _file(events, 3, 5), _file(events, 6, 7)

    # A copy damaged at site A: site B's is restored, and only site B's is listed.
    damaged = second[1].replace(b"event 4", b"event 9")
    report = RebuildReport()
    found = _copies(
        ("site-a", *first),
        ("site-b", *first),
        ("site-a", second[0], damaged),
        ("site-b", *second),
        ("site-a", *third),
    )
    [restored] = _tenant_journals(found, report).values()
    assert [e["seq"] for e in restored.events] == list(range(1, 8))
    assert [e["hash"] for e in restored.events] == [e.hash for e in events]
    assert [c.site for c in restored.segments[1].file.copies] == ["site-b"]
    assert [c.site for c in restored.segments[0].file.copies] == ["site-a", "site-b"]
    [problem] = report.problems
    assert problem.startswith(f"{second[0]} at site-a/") and "event 4" in problem

    # A segment missing everywhere: the journal ends before it, and the report says so.
    report = RebuildReport()
    [restored] = _tenant_journals(_copies(("site-a", *first), ("site-a", *third)), report).values()
    assert [e["seq"] for e in restored.events] == [1, 2]
    assert "starting at event 3" in report.problems[0] and "from 6 follow" in report.problems[0]

    # Two whole copies that differ (one rewritten consistently): neither is trusted.
    forged = _file(_chain(7, changed=4), 3, 5)
    report = RebuildReport()
    found = _copies(("site-a", *first), ("site-a", *forged), ("site-b", *second))
    [restored] = _tenant_journals(found, report).values()
    assert [e["seq"] for e in restored.events] == [1, 2]
    assert "differ and each reads whole" in report.problems[0]

    # A segment that does not follow on from the one before is not restored either.
    report = RebuildReport()
    other = _file(_chain(7, changed=1), 3, 5)  # whole, but after another event 2
    found = _copies(("site-a", *first), ("site-a", *other))
    [restored] = _tenant_journals(found, report).values()
    assert [e["seq"] for e in restored.events] == [1, 2]
    assert "does not follow on" in report.problems[0]
