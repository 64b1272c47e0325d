"""The catalogue rebuilt from the tapes alone, compared table by table with the one ingest wrote.

Real ingests of two tenants on the embedded default (emulated libraries, the
catalogue on SQLite and PostgreSQL), a metadata update (a version 2), an
approved disposal, journal syncs that time-stamp the history on a real TSA on
loopback and write it to tape, evidence renewed both ways; the catalogue is
snapshot, deleted and rebuilt with ``storage.rebuild`` from the cartridges,
then compared. What the tapes cannot give back is listed below with the
reason, and everything else must be equal: the event chain included.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import bagit
import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from preservation import ingest, retention, versions
from preservation.catalog import make_engine, session_scope, upgrade
from preservation.catalog.models import (
    SIP,
    AIPVersion,
    Base,
    CopyStatus,
    JournalFile,
    PremisEvent,
    Tenant,
    utcnow,
)
from preservation.catalog.service import verify_event_chain
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConflictError, DataRootError, SiteUnavailableError
from preservation.evidence import periods
from preservation.evidence.history import verify_history
from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki
from preservation.evidence.on_tape import file_bytes
from preservation.evidence.stamping import configured_tsa
from preservation.evidence.sync import sync_journal
from preservation.metadata.dc_input import dc_from_json
from preservation.migrate import run
from preservation.migrate import service as migrations
from preservation.storage.rebuild import NOT_ON_TAPE, rebuild_catalogue
from preservation.storage.recovery import recover, repair
from preservation.storage.sites import build_sites
from tests.conftest import require_program
from tests.trees import tree_digest

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"

#: Tables the tapes do not hold at all: requests, decisions, credentials,
#: operational state. (A SIP row is rebuilt per AIP, compared below by its AIP.)
NOT_RESTORED_TABLES = {
    "stage_leases": "who runs a stage now: operational",
    "stage_runs": "stage timings for /metrics: operational",
    "api_tokens": "credentials are never written to tape",
    "console_users": "people and their password hashes are never written to tape",
    "idempotency_keys": "upload retries: operational",
    "audits": "audit runs: their findings are events of the catalogue",
    "migrations": "a curator's request: its outcome is a version on tape",
    "migration_items": "per-AIP progress of a request",
    "migration_files": "per-file progress of a request",
    "dips": "access requests and cached downloads",
    "disposals": "the four-eyes decision is catalogue-only; its effect (the AIP left "
    "the LTFS index) is what the tape shows",
    "legal_holds": "a legal decision: restored only from events a later version's METS "
    "carries (none here; see the retention and holds test below)",
}

#: Tables of the journal on tape, compared once time-stamped: an evidence period
#: still waiting for the TSA is not written to tape (here none waits).
JOURNAL_TABLES = {
    "journal_segments", "journal_files", "journal_copies", "evidence_stamps", "evidence_leaves",
}  # fmt: skip

#: Fields of the compared tables that cannot be restored as they were, and why
#: (the rebuild's own list, rebuild.NOT_ON_TAPE, says the same to operators).
NOT_RESTORED_FIELDS = {
    "tenants": {"created_at": "not on tape: the first event found dates it"},
    "agents": {"id": "surrogate key; agents compare by identifier"},
    "sips": {
        "id": "the SIP id is not on tape; the rebuilt SIP is named by its AIP",
        "source_path": "where the bag came from is not on tape",
        "attempts": "operational",
        "last_error": "operational",
        "created_at": "not on tape",
        "updated_at": "not on tape",
    },
    "aips": {
        "sip_id": "the SIP id is not on tape",
        "created_at": "not on tape: the ingestion event's time stands in",
        "retention_until": "a curator's date comes back (to the day) only when a later "
        "version's METS records it (tested below); else re-derived from the tenant's rules",
        "disposed_at": "the update time of the index generation that dropped the AIP",
    },
    "aip_versions": {
        "id": "surrogate key; versions compare by (AIP, number)",
        "created_at": "the METS creation date stands in",
        "committed_at": "the commit event or the tar's LTFS time stands in",
        "staging_path": "a pending version's tar waits under its SIP's staging folder, "
        "and the SIP id is not on tape (None once committed, checked below)",
    },
    "files": {
        "id": "surrogate key; files compare by (AIP, version, path)",
        "sip_id": "the SIP id is not on tape",
    },
    # Every event was journalled (the last sync came after the last event): the chain
    # comes back whole. Those after the last sync: test_rebuild_journal.py.
    "premis_events": {"id": "surrogate key; events compare by uuid"},
    "tape_copies": {
        "id": "surrogate key; copies compare by (AIP, version, site, barcode)",
        "written_at": "the tar's LTFS modify time stands in",
        "verified_at": "the tar's LTFS modify time stands in",
    },
    "cartridges": {
        "used": "the catalogue counts it when a copy is stored, not when a disposal appends an "
        "index generation; the rebuild reads the tape's own figure (checked below: not less)",
        "errors": "a counter of the catalogue's",
        "mounts": "a counter of the catalogue's",
        "updated_at": "not on tape",
    },
    "aip_texts": {"id": "surrogate key; search rows compare by AIP"},
    "journal_segments": {
        "id": "surrogate key; segments compare by (tenant, first event)",
        "created_at": "the segment file's LTFS modify time stands in for the cut",
        "stamped_at": "the token's genTime stands in for its arrival (checked below: close)",
    },
    "journal_files": {
        "id": "surrogate key; files compare by (tenant, path)",
        "created_at": "the file's LTFS modify time stands in",
    },
    "journal_copies": {
        "id": "surrogate key; copies compare by (tenant, path, site)",
        "written_at": "the file's LTFS modify time stands in",
    },
    "evidence_stamps": {
        "created_at": "the token's genTime stands in",
        "stamped_at": "the token's genTime stands in for its arrival (checked below: close)",
    },
    "evidence_leaves": {"id": "surrogate key; leaves compare by (stamp, position)"},
}


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LoopbackTsa]:
    """A real RFC 3161 TSA (openssl ts) on loopback, under a PKI made for the test."""
    require_program("openssl")
    with LoopbackTsa(make_pki(tmp_path / "tsa-pki")) as running:
        yield running


@pytest.fixture
def ctx(catalog_url: str, tmp_path: Path, tsa: LoopbackTsa) -> Iterator[Context]:
    settings = Settings(
        home=tmp_path / "var",
        database_url=catalog_url,
        tsa_url=tsa.url,
        tsa_certs=tsa.pki.ca_cert,
    )
    settings.ensure_dirs()
    c = open_context(settings)
    yield c
    c.close()


def _variant(tmp_path: Path, name: str) -> Path:
    """The sample bag with one more file: another AIP, not a duplicate."""
    bag = tmp_path / f"bag-{name}"
    shutil.copytree(SAMPLE, bag)
    (bag / "data" / "notes" / f"{name}.txt").write_text(f"the {name} bag\n")
    bagit.Bag(str(bag)).save(manifests=True)
    return bag


def _png_policy(tmp_path: Path) -> Path:
    """The default policy's PNG-to-TIFF action alone: a migration in a second."""
    from preservation.migrate.policy import default_policy_path

    default = json.loads(default_policy_path().read_text())
    policy = {
        "name": "png-only",
        "description": "PNG to uncompressed TIFF, nothing else",
        "mode": "best-effort",
        "actions": [a for a in default["actions"] if a["id"] == "image-to-tiff"],
        "rules": [
            {
                "name": "PNG",
                "puids": ["fmt/11", "fmt/12", "fmt/13"],
                "preservation": ["image-to-tiff"],
            }
        ],
    }
    path = tmp_path / "png-only.json"
    path.write_text(json.dumps(policy))
    return path


def _archive(ctx: Context, tmp_path: Path) -> dict[str, str]:
    """Two tenants, four AIPs; one gets a version 2 (metadata), one is migrated (its
    version 2 holds a TIFF made from its PNG) then gets a version 3 (metadata), one is
    disposed of. The journal is synced to tape after the ingests and at the end, so each
    tenant's history is two segments on tape and every event is journalled."""
    aips = {}
    for key, tenant, bag in (
        ("a", "museum", SAMPLE),
        ("b", "museum", _variant(tmp_path, "b")),
        ("c", "library", _variant(tmp_path, "c")),
        ("d", "library", _variant(tmp_path, "d")),
    ):
        result = ingest.run_ingest(ctx, bag, tenant=tenant)
        assert result.state == "committed", result
        assert result.aip_id
        aips[key] = result.aip_id
    assert sync_journal(ctx).problems == []
    record = dc_from_json({"Title": "Lettres du donateur, 1921", "creator": "Hélène Martin"})
    info = versions.prepare_metadata_version(
        ctx, aips["a"], record, tenant_id="museum", who="jane@museum"
    )
    assert versions.finish_version(ctx, info.version_id) is True
    policy, text = migrations.read_policy(_png_policy(tmp_path))
    with session_scope(ctx.sessions) as s:
        started = migrations.start_migration(s, policy, text, aip_ids=[aips["b"]], who="jane")
    run.run_migration(ctx, started.migration_id)
    with session_scope(ctx.sessions) as s:
        done = migrations.get_migration(s, started.migration_id, None)
        assert (done.state, done.files_migrated) == ("done", 1), done
    # A metadata version after the migration: its METS carries the migration as history.
    after = versions.prepare_metadata_version(
        ctx, aips["b"], dc_from_json({"Title": "Dessins"}), tenant_id="museum", who="jane"
    )
    assert versions.finish_version(ctx, after.version_id) is True
    alice = retention.Actor(id="cli:alice", label="alice")
    bob = retention.Actor(id="cli:bob", label="bob")
    with session_scope(ctx.sessions) as s:
        retention.set_retention(s, aips["d"], None, alice, until=utcnow() - timedelta(days=1))
        disposal = retention.request_disposal(s, aips["d"], None, alice, reason="retention over")
    assert retention.approve_disposal(ctx, disposal.disposal_id, None, bob).state == "disposed"
    assert sync_journal(ctx).problems == []
    for site in build_sites(ctx).values():
        site.release_all()
    return aips


def _snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows as plain dicts (times naive UTC, enums as values)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in Base.metadata.sorted_tables:
                rows = []
                for row in conn.execute(table.select()).mappings():
                    rows.append({k: _plain(v) for k, v in row.items()})
                out[table.name] = rows
            return out
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        return value.value
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)
    return value


def _normalise(snap: dict[str, list[dict[str, Any]]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """Each compared table keyed by natural keys, surrogate ids replaced by what they name."""
    versions = {v["id"]: (v["aip_id"], v["number"]) for v in snap["aip_versions"]}
    files = {f["id"]: (*versions[f["aip_version_id"]], f["aip_path"]) for f in snap["files"]}
    segments = {s["id"]: (s["tenant_id"], s["first_seq"]) for s in snap["journal_segments"]}
    journal_files = {f["id"]: (f["tenant_id"], f["path"]) for f in snap["journal_files"]}
    stamped = {s["id"] for s in snap["evidence_stamps"] if s["token"] is not None}
    out: dict[str, dict[Any, dict[str, Any]]] = {}

    def keep(table: str, row: dict[str, Any]) -> dict[str, Any]:
        dropped = NOT_RESTORED_FIELDS.get(table, {})
        return {k: v for k, v in row.items() if k not in dropped}

    out["tenants"] = {t["id"]: keep("tenants", t) for t in snap["tenants"]}
    out["agents"] = {a["identifier"]: keep("agents", a) for a in snap["agents"]}
    out["sips"] = {s["aip_id"]: keep("sips", s) for s in snap["sips"] if s["aip_id"]}
    out["aips"] = {a["id"]: keep("aips", a) for a in snap["aips"]}
    out["aip_versions"] = {
        (v["aip_id"], v["number"]): keep("aip_versions", v) for v in snap["aip_versions"]
    }
    out["files"] = {}
    for f in snap["files"]:
        row = keep("files", f)
        row["aip_version_id"] = versions[f["aip_version_id"]]
        row["derived_from"] = files.get(f["derived_from"])
        out["files"][files[f["id"]]] = row
    out["premis_events"] = {e["uuid"]: keep("premis_events", e) for e in snap["premis_events"]}
    out["tape_copies"] = {}
    for c in snap["tape_copies"]:
        row = keep("tape_copies", c)
        row["aip_version_id"] = versions[c["aip_version_id"]]
        out["tape_copies"][(*versions[c["aip_version_id"]], c["site"], c["barcode"])] = row
    out["cartridges"] = {c["barcode"]: keep("cartridges", c) for c in snap["cartridges"]}
    out["aip_formats"] = {(f["aip_id"], f["puid"]): f for f in snap["aip_formats"]}
    # The search body is a bag of words: its order follows whatever order the
    # database returned the file rows in, which PostgreSQL does not keep.
    out["aip_texts"] = {
        t["aip_id"]: keep("aip_texts", t) | {"body": sorted(t["body"].split())}
        for t in snap["aip_texts"]
    }
    out["journal_segments"] = {
        (s["tenant_id"], s["first_seq"]): keep("journal_segments", s)
        for s in snap["journal_segments"]
    }
    out["journal_files"] = {
        (f["tenant_id"], f["path"]): keep("journal_files", f)
        | {"segment_id": segments.get(f["segment_id"])}
        for f in snap["journal_files"]
    }
    out["journal_copies"] = {
        (*journal_files[c["file_id"]], c["site"]): keep("journal_copies", c)
        | {"file_id": journal_files[c["file_id"]]}
        for c in snap["journal_copies"]
    }
    out["evidence_stamps"] = {
        s["id"]: keep("evidence_stamps", s) for s in snap["evidence_stamps"] if s["id"] in stamped
    }
    out["evidence_leaves"] = {
        (leaf["stamp_id"], leaf["position"]): keep("evidence_leaves", leaf)
        | {"aip_version_id": versions.get(leaf["aip_version_id"])}
        for leaf in snap["evidence_leaves"]
        if leaf["stamp_id"] in stamped
    }
    return out


def _differences(old: dict[Any, dict[str, Any]], new: dict[Any, dict[str, Any]]) -> list[str]:
    """What differs, row by row and field by field: readable when a comparison fails."""
    out = [f"only before: {k}" for k in old.keys() - new.keys()]
    out += [f"only after: {k}" for k in new.keys() - old.keys()]
    for key in old.keys() & new.keys():
        for field in sorted(old[key].keys() | new[key].keys()):
            if old[key].get(field) != new[key].get(field):
                out.append(f"{key}.{field}: {old[key].get(field)!r} != {new[key].get(field)!r}")
    return sorted(out)


def _rebuild_fresh(ctx: Context, url: str) -> Context:
    """Delete the catalogue (drop every table, or the SQLite file) and open an empty one."""
    ctx.close()
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink()
    else:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
    upgrade(url)
    return open_context(ctx.settings)


def _evidence_record(ctx: Context, aip_id: str, number: int) -> bytes:
    """The version's RFC 4998 record (DER), as `evidence export` writes it.

    One version's only: the tables it is made from are compared whole, and assembling
    a record with a rehashed chain sometimes costs over a second (asn1crypto re-encoding).
    """
    with session_scope(ctx.sessions) as s:
        version_id = s.scalars(
            select(AIPVersion.id).where(AIPVersion.aip_id == aip_id, AIPVersion.number == number)
        ).one()
        return periods.record_for_version(s, version_id)


def test_the_rebuilt_catalogue_equals_the_ingested_one_but_for_what_no_tape_holds(
    ctx: Context, catalog_url: str, tmp_path: Path
) -> None:
    aips = _archive(ctx, tmp_path)
    # Evidence renewed both ways (RFC 4998 §5.2, then §5.3, which closes the renewed
    # chain), and the renewals synced to tape as well.
    stamper = configured_tsa(ctx)
    assert stamper is not None
    periods.renew_timestamps(ctx, stamper)
    periods.renew_hash_trees(ctx, stamper, "sha512")
    assert sync_journal(ctx).problems == []
    for site in build_sites(ctx).values():
        site.release_all()
    # Sealed at the first sync, renewed, then rehashed: two chains, one of two stamps.
    record = _evidence_record(ctx, aips["a"], 1)
    before = _snapshot(catalog_url)
    assert {s["kind"] for s in before["evidence_stamps"]} == {"initial", "renewal", "rehash"}
    assert all(s["token"] for s in before["evidence_stamps"]), "every stamp is on tape"
    assert all(s["token"] for s in before["journal_segments"])
    ctx = _rebuild_fresh(ctx, catalog_url)
    try:
        # The start-up check refuses the written cartridges and names the command.
        with pytest.raises(DataRootError) as refused:
            build_sites(ctx)
        assert "preservation catalog rebuild --from-tapes" in refused.value.message

        tapes = tree_digest(ctx.settings.tape_dir)
        seen: list[tuple[str, int, int]] = []
        report = rebuild_catalogue(ctx, progress=lambda *p: seen.append(p))
        assert tree_digest(ctx.settings.tape_dir) == tapes, "the cartridges were only read"
        assert report.problems == [] and report.missing == [] and report.sites_lost == {}
        assert (report.tenants, report.aips, report.aips_disposed) == (2, 4, 1)
        assert (report.versions, report.copies, report.copies_disposed) == (7, 14, 2)
        assert report.events == report.journal_events == len(before["premis_events"])
        assert report.journal_segments == 4, "two syncs with events, for each tenant"
        assert report.evidence_stamps == len(before["evidence_stamps"])
        assert seen, "progress is reported"
        after = _snapshot(catalog_url)

        # Every table is either compared or explicitly not restored.
        compared = {
            "tenants", "agents", "sips", "aips", "aip_versions", "files", "premis_events",
            "tape_copies", "cartridges", "aip_formats", "aip_texts", *JOURNAL_TABLES,
        }  # fmt: skip
        assert set(before) == compared | set(NOT_RESTORED_TABLES)
        for table in NOT_RESTORED_TABLES:
            assert after[table] == [], table

        # Every event comes back as it was, seq, SIP, objects and hashes included: the
        # journal holds them all, so the tenants' heads and counts are the old ones too.
        old, new = _normalise(before), _normalise(after)
        differences = {table: _differences(old[table], new[table]) for table in sorted(compared)}
        assert {t: d for t, d in differences.items() if d} == {}
        assert len(new["evidence_leaves"]) == len(before["evidence_leaves"])
        assert any(s["renewed_by"] for s in new["evidence_stamps"].values())
        assert any(s["closed"] for s in new["evidence_stamps"].values())

        for c in before["cartridges"]:
            [now] = [n for n in after["cartridges"] if n["barcode"] == c["barcode"]]
            assert now["used"] >= c["used"], c["barcode"]
        # A time-stamp's arrival is not on tape; the token's own time is close to it.
        for table, key in (("journal_segments", "sha256"), ("evidence_stamps", "id")):
            when = {r[key]: r["stamped_at"] for r in before[table]}
            for r in after[table]:
                assert abs(r["stamped_at"] - when[r[key]]) < timedelta(seconds=5), (table, r[key])

        # The chain is whole, its head where the events end.
        with session_scope(ctx.sessions) as s:
            for tenant in ("museum", "library"):
                assert verify_event_chain(s, tenant) == []
                row = s.get_one(Tenant, tenant)
                last = s.scalars(
                    select(PremisEvent)
                    .where(PremisEvent.tenant_id == tenant)
                    .order_by(PremisEvent.seq.desc())
                ).first()
                assert last is not None and row.event_head == last.hash
                assert row.event_count == last.seq
        # An evidence record is assembled again byte for byte, and each journal file is
        # regenerated from the rows as it is on tape (what a sync checks before it writes
        # a missing copy).
        assert _evidence_record(ctx, aips["a"], 1) == record
        with session_scope(ctx.sessions) as s:
            for row in s.scalars(select(JournalFile)):
                assert hashlib.sha256(file_bytes(s, row)).hexdigest() == row.sha256, row.path

        # The disposed AIP is a tombstone again; its copies are disposed, bytes reclaimable.
        tomb = new["aips"][aips["d"]]
        assert tomb["state"] == "disposed" and tomb["descriptive"] is None

        # The copies are where the rows say: a version is recovered through them.
        bag = recover(ctx, aips["a"], 2, dest_dir=tmp_path / "recovered")
        assert (bag / "data" / "metadata" / "descriptive" / "dc.xml").is_file()

        # The history checks against the journal copies the rows name, stamps verified.
        build_sites(ctx)
        checked = verify_history(ctx)
        assert checked.ok, checked.to_dict()
        assert [(t.segments, t.stamps_verified, t.not_on_tape) for t in checked.tenants] == [
            (2, 2, 0),
            (2, 2, 0),
        ]

        # And the archive works on: a new ingest lands after the old AIPs, and the next
        # sync cuts, seals (a stamp id after the restored ones) and writes it.
        result = ingest.run_ingest(ctx, _variant(tmp_path, "e"), tenant="museum")
        assert result.state == "committed", result
        synced = sync_journal(ctx)
        assert synced.problems == [] and (synced.segments_cut, synced.periods_sealed) == (1, 1)
        with session_scope(ctx.sessions) as s:
            assert verify_event_chain(s, "museum") == []
        assert verify_history(ctx).ok
    finally:
        ctx.close()


def test_one_site_lost_rebuilds_from_the_other_and_names_what_is_missing(
    settings: Settings, tmp_path: Path
) -> None:
    ctx = open_context(settings)
    try:
        aips = _archive(ctx, tmp_path)
    finally:
        ctx.close()
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    shutil.rmtree(settings.tape_dir / "site-b")
    ctx = open_context(settings)
    try:
        report = rebuild_catalogue(ctx)
        assert report.sites_read == ["site-a"] and set(report.sites_lost) == {"site-b"}
        live = [(aips["a"], 1), (aips["a"], 2), (aips["c"], 1)]
        live += [(aips["b"], 1), (aips["b"], 2), (aips["b"], 3)]
        assert sorted((m["aip_id"], m["version"]) for m in report.missing) == sorted(live)
        assert {m["site"] for m in report.missing} == {"site-b"}
        after = _snapshot(settings.catalog_url)
        assert {c["site"] for c in after["tape_copies"]} == {"site-a"}
        assert {c["site"] for c in after["cartridges"]} == {"site-a"}
        assert len(after["tape_copies"]) == 7  # six live versions and the tombstone's
        assert {a["state"] for a in after["aips"] if a["id"] != aips["d"]} == {"active"}

        # What the report lists as missing is what repair writes again at the lost site.
        repaired = repair(ctx)
        assert repaired.ok, repaired.to_dict()
        with session_scope(ctx.sessions) as s:
            at_b = {
                (v.aip_id, v.number)
                for v in s.scalars(select(AIPVersion))
                for c in v.copies
                if c.site == "site-b" and c.status is CopyStatus.VERIFIED
            }
        assert at_b == set(live)
    finally:
        ctx.close()


def test_a_version_one_site_never_got_comes_back_pending_from_the_other(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Site B was down at ingest: the AIP was pending, and is again, read from site A.

    The head of each version is read at one site chosen by its name; here site
    B is made the reader of every version, so the pending AIP's head must come
    from site A in the second pass, with a second mount of that one cartridge.
    """
    ctx = open_context(settings)
    try:
        done = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert done.state == "committed" and done.aip_id
        flag = settings.tape_dir / "site-b" / "DOWN"
        flag.write_text("maintenance window")
        with pytest.raises(SiteUnavailableError):
            ingest.run_ingest(ctx, _variant(tmp_path, "p"), tenant="museum", wait_seconds=0)
        [sip_id] = ingest.pending_sips(ctx)
        with session_scope(ctx.sessions) as s:
            pending_id = s.get_one(SIP, sip_id).aip_id
        assert pending_id
        for site in build_sites(ctx).values():
            site.release_all()
        before = _normalise(_snapshot(settings.catalog_url))
    finally:
        ctx.close()
    flag.unlink()
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    monkeypatch.setattr(
        "preservation.storage.rebuild._Shared.reads_here", lambda self, key, site: site == "site-b"
    )
    ctx = open_context(settings)
    try:
        report = rebuild_catalogue(ctx)
        assert report.problems == [] and report.tars_read == 2
        assert report.missing == [{"aip_id": pending_id, "version": 1, "site": "site-b"}]
        raw = _snapshot(settings.catalog_url)
        after = _normalise(raw)
        for table in ("aips", "aip_versions", "files", "tape_copies"):
            assert _differences(before[table], after[table]) == [], table
        assert after["aips"][pending_id]["state"] == "pending"
        assert {v["staging_path"] for v in raw["aip_versions"]} == {None}
        assert after["sips"][pending_id]["state"] == "packaged"
    finally:
        ctx.close()


def test_a_rebuild_into_a_catalogue_that_holds_anything_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_VIRUS_SCAN", "false")
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(SAMPLE), "--tenant", "museum", "--json"])
    assert done.exit_code == 0, done.output

    refused = runner.invoke(app, ["catalog", "rebuild", "--from-tapes", "--json"])
    assert refused.exit_code == 1, refused.output
    assert '"rule": "catalogue-not-empty"' in refused.stdout
    assert "PRESERVATION_DATABASE_URL" in refused.stdout

    without = runner.invoke(app, ["catalog", "rebuild", "--json"])
    assert without.exit_code == 2 and "--from-tapes" in without.stdout

    (home / "catalog.sqlite").unlink()
    # Beside written cartridges, an empty catalogue refuses to start the tape sites,
    # and says how to get the catalogue back.
    started = runner.invoke(app, ["tape", "ls", "--json"])
    assert started.exit_code == 3, started.output
    assert "preservation catalog rebuild --from-tapes" in started.stdout
    # One site named twice (letter and name) is read once; the other site not read
    # makes the rebuild partial: the report, then exit 3.
    rebuilt = runner.invoke(
        app,
        ["catalog", "rebuild", "--from-tapes", "--site", "A", "--site", "site-a", "--json"],
    )
    assert rebuilt.exit_code == 3, rebuilt.output
    assert '"sites_read": [\n    "site-a"\n  ]' in rebuilt.stdout
    assert json.loads(rebuilt.stdout)["complete"] is False
    assert json.loads(rebuilt.stdout)["sites_lost"] == {"site-b": "not asked for (--site)"}

    with pytest.raises(ConflictError):
        settings = Settings(home=home)
        c = open_context(settings)
        try:
            rebuild_catalogue(c)
        finally:
            c.close()
    assert set(NOT_ON_TAPE)  # the operators' list is not empty either


def _ingestion_completed(ctx: Context) -> int:
    with session_scope(ctx.sessions) as s:
        return sum(
            1
            for e in s.scalars(select(PremisEvent).where(PremisEvent.type == "ingestion"))
            if e.detail.startswith("ingestion completed")
        )


def test_a_lost_cartridge_leaves_its_aips_committed_and_repair_writes_the_copies_again(
    settings: Settings, tmp_path: Path
) -> None:
    """One cartridge of site B gone (not the site): its AIPs were committed, and stay so.

    The site's other cartridges are read, so "every site read" is no proof that a
    version missing there was never stored: the cartridge that held it is gone.
    """
    ctx = open_context(settings)
    try:
        ids = []
        for name in ("x", "y"):
            done = ingest.run_ingest(ctx, _variant(tmp_path, name), tenant="museum")
            assert done.state == "committed" and done.aip_id
            ids.append(done.aip_id)
        for site in build_sites(ctx).values():
            site.release_all()
    finally:
        ctx.close()
    cartridges = settings.tape_dir / "site-b" / "cartridges"
    assert (cartridges / "B00001L9").is_dir()
    shutil.rmtree(cartridges / "B00001L9")
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    ctx = open_context(settings)
    try:
        report = rebuild_catalogue(ctx)
        assert report.sites_lost == {} and set(report.sites_read) == {"site-a", "site-b"}
        assert list(report.cartridges_missing) == ["B00001L9"]
        assert sorted((m["aip_id"], m["version"], m["site"]) for m in report.missing) == sorted(
            (aip_id, 1, "site-b") for aip_id in ids
        )
        after = _snapshot(settings.catalog_url)
        assert {a["state"] for a in after["aips"]} == {"active"}
        assert {s["state"] for s in after["sips"]} == {"committed"}
        assert all(v["committed_at"] is not None for v in after["aip_versions"])
        assert all(a["descriptive"] for a in after["aips"])

        # Repair writes the missing copies at site B, and commits nothing again.
        completed = _ingestion_completed(ctx)
        repaired = repair(ctx)
        assert repaired.ok, repaired.to_dict()
        with session_scope(ctx.sessions) as s:
            at_b = {
                v.aip_id
                for v in s.scalars(select(AIPVersion))
                for c in v.copies
                if c.site == "site-b" and c.status is CopyStatus.VERIFIED
            }
        assert at_b == set(ids)
        assert _ingestion_completed(ctx) == completed
    finally:
        ctx.close()


def test_a_curators_retention_date_and_legal_holds_come_back_from_a_later_versions_premis(
    settings: Settings, tmp_path: Path
) -> None:
    from datetime import UTC, date, datetime

    from preservation.catalog.models import AIP, LegalHold

    ctx = open_context(settings)
    try:
        done = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert done.state == "committed" and done.aip_id
        aip_id = done.aip_id
        alice = retention.Actor(id="cli:alice", label="alice")
        with session_scope(ctx.sessions) as s:
            retention.set_retention(s, aip_id, None, alice, until=date(2099, 1, 1))
            retention.place_hold(s, aip_id, None, alice, reason="case 7")
            retention.lift_hold(s, aip_id, None, alice, reason="case 7 closed")
            retention.place_hold(s, aip_id, None, alice, reason="case 42")
        info = versions.prepare_metadata_version(
            ctx, aip_id, dc_from_json({"Title": "T2"}), tenant_id="museum", who="alice"
        )
        assert versions.finish_version(ctx, info.version_id) is True
        for site in build_sites(ctx).values():
            site.release_all()
        with session_scope(ctx.sessions) as s:
            before = [
                (h.reason, h.placed_by, h.lifted_by, h.lift_reason)
                for h in s.scalars(select(LegalHold).order_by(LegalHold.id))
            ]
    finally:
        ctx.close()
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    ctx = open_context(settings)
    try:
        report = rebuild_catalogue(ctx)
        assert report.problems == [] and report.holds == 2
        with session_scope(ctx.sessions) as s:
            aip = s.get_one(AIP, aip_id)
            assert aip.retention_until is not None
            assert aip.retention_until.replace(tzinfo=UTC) == datetime(2099, 1, 1, tzinfo=UTC)
            after = [
                (h.reason, h.placed_by, h.lifted_by, h.lift_reason)
                for h in s.scalars(select(LegalHold).order_by(LegalHold.id))
            ]
            assert after == before
            view = retention.get_retention(s, aip_id, None)
            assert view.on_hold and not view.disposable
            assert [h.reason for h in view.holds if h.lifted_at is None] == ["case 42"]
    finally:
        ctx.close()


def test_the_command_exits_3_for_a_partial_rebuild_and_0_for_a_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_VIRUS_SCAN", "false")
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(SAMPLE), "--tenant", "museum", "--json"])
    assert done.exit_code == 0, done.output

    (home / "catalog.sqlite").unlink()
    partial = runner.invoke(
        app, ["catalog", "rebuild", "--from-tapes", "--site", "A", "--site", "A"]
    )
    assert partial.exit_code == 3, partial.output
    assert "catalogue rebuilt from" in partial.output  # the report is printed all the same
    assert "site site-b not read" in partial.output and "partial rebuild" in partial.output

    (home / "catalog.sqlite").unlink()
    whole = runner.invoke(app, ["catalog", "rebuild", "--from-tapes", "--json"])
    assert whole.exit_code == 0, whole.output
    report = json.loads(whole.stdout)
    assert report["complete"] is True and report["sites_read"] == ["site-a", "site-b"]


def test_scratch_cartridges_start_up_registered_in_the_empty_catalogue_are_replaced(
    settings: Settings,
) -> None:
    """Beside a real library, start-up registers unknown barcodes as scratch before the
    rebuild runs (the first mount then refuses the written ones): that is still empty."""
    from preservation.catalog.models import Cartridge, CartridgeState
    from preservation.storage.sites import _register_cartridges

    ctx = open_context(settings)
    try:
        done = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert done.state == "committed" and done.aip_id
        for site in build_sites(ctx).values():
            site.release_all()
        with session_scope(ctx.sessions) as s:
            written = {
                c.barcode for c in s.scalars(select(Cartridge)) if c.state is CartridgeState.FILLING
            }
    finally:
        ctx.close()
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    ctx = open_context(settings)
    try:
        for name in ("site-a", "site-b"):
            barcodes = sorted(p.name for p in (settings.tape_dir / name / "cartridges").iterdir())
            _register_cartridges(ctx, name, barcodes, 10**12)
        report = rebuild_catalogue(ctx)
        assert report.complete, report.to_dict()
        with session_scope(ctx.sessions) as s:
            rows = {c.barcode: c for c in s.scalars(select(Cartridge))}
            assert {b for b, c in rows.items() if c.state is CartridgeState.FILLING} == written
            assert all(c.volume_uuid for b, c in rows.items() if b in written)
        build_sites(ctx)  # and the archive starts
    finally:
        ctx.close()

    # A scratch row with a copy, or any other state, is a catalogue in use: refused.
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    ctx = open_context(settings)
    try:
        with session_scope(ctx.sessions) as s:
            s.add(
                Cartridge(
                    barcode="A00001L9", site="site-a", state=CartridgeState.FULL, capacity=1,
                    used=0, errors=0,
                )
            )  # fmt: skip
        with pytest.raises(ConflictError):
            rebuild_catalogue(ctx)
    finally:
        ctx.close()


def test_a_real_librarys_refusal_names_the_rebuild_which_clears_the_marks_of_what_it_catalogued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from preservation.catalog.models import CartridgeState
    from preservation.errors import StorageError
    from preservation.storage import changer
    from preservation.storage.rebuild import _clear_unverified_marks

    library = changer.ScsiLibrary(
        cast(changer.MtxChanger, SimpleNamespace()),
        ["/dev/nst0"],
        name="site-a",
        state_dir=tmp_path,
        read_only=True,
    )
    monkeypatch.setattr(changer, "_holds_data", lambda device: True)
    with pytest.raises(StorageError) as refused:
        library._verify_blank("A00001L9", cast(Any, SimpleNamespace()))
    assert "preservation catalog rebuild --from-tapes" in refused.value.message

    marks = tmp_path / "unverified"
    marks.mkdir()
    for barcode in ("A00001L9", "A00002L9", "A00003L9"):
        (marks / barcode).touch()
    _clear_unverified_marks(
        {"site-a": library},
        [
            {"site": "site-a", "barcode": "A00001L9", "state": CartridgeState.FILLING},
            {"site": "site-a", "barcode": "A00002L9", "state": CartridgeState.SCRATCH},
            {"site": "site-a", "barcode": "A00003L9", "state": CartridgeState.SUSPECT},
        ],
    )
    assert sorted(p.name for p in marks.iterdir()) == ["A00002L9", "A00003L9"]


def test_each_files_events_are_found_by_one_index_not_a_scan_per_file() -> None:
    """The index gives each file exactly the events the scan per file gave, in order."""
    import uuid
    from datetime import UTC, datetime

    from preservation.metadata.model import AgentLink, Event, ObjectLink
    from preservation.storage.rebuild import _events_by_object

    def event(*objects: str) -> Event:
        return Event(
            id=uuid.uuid4(),
            type="validation",
            datetime=datetime(2026, 1, 1, tzinfo=UTC),
            outcome="success",
            agents=(AgentLink("agent-1"),),
            objects=tuple(ObjectLink(object_id=o) for o in objects),
        )

    events = [event("f1", "f2"), event("f2", "f2"), event(), event("f3"), event("f1")]
    naming = _events_by_object(events)
    for f in ("f1", "f2", "f3", "f4"):
        scanned = [e for e in events if any(o.object_id == f for o in e.objects)]
        assert naming.get(f, []) == scanned, f


def test_a_replication_event_on_tape_names_the_cartridge_a_missing_copy_was_on(
    settings: Settings, tmp_path: Path
) -> None:
    """A library with no list of the cartridges it should hold (a real one): the
    replication events a later METS carries say where the missing copies were."""
    ctx = open_context(settings)
    try:
        done = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
        assert done.state == "committed" and done.aip_id
        info = versions.prepare_metadata_version(
            ctx, done.aip_id, dc_from_json({"Title": "T2"}), tenant_id="museum", who="jane"
        )
        assert versions.finish_version(ctx, info.version_id) is True
        for site in build_sites(ctx).values():
            site.release_all()
    finally:
        ctx.close()
    shutil.rmtree(settings.tape_dir / "site-b" / "cartridges" / "B00001L9")
    Path(settings.catalog_url.removeprefix("sqlite:///")).unlink()
    # No configured cartridge count to miss one by: only the events can tell.
    ctx = open_context(settings.model_copy(update={"tape_cartridges_per_site": 0}))
    try:
        report = rebuild_catalogue(ctx)
        assert list(report.cartridges_missing) == ["B00001L9"]
        assert "replication event" in report.cartridges_missing["B00001L9"]
        assert not report.complete
        assert sorted((m["version"], m["site"]) for m in report.missing) == [
            (1, "site-b"),
            (2, "site-b"),
        ]
        after = _snapshot(settings.catalog_url)
        assert [a["state"] for a in after["aips"]] == ["active"]
        assert all(v["committed_at"] is not None for v in after["aip_versions"])
        assert after["aips"][0]["descriptive"]["title"] == ["T2"]
    finally:
        ctx.close()
