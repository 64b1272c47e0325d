"""Metadata-only AIP versions end to end: a forward delta on tape, current once both copies hold.

Real ingest of the sample bag, emulated tape libraries under a private data
root, the catalogue on SQLite and PostgreSQL: the same path as
``PUT /api/v1/aips/{id}/metadata`` and ``preservation aip metadata``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
from lxml import etree
from sqlalchemy import select

from preservation import ingest, versions
from preservation.catalog import AIP, AIPState, AIPVersion, PremisEvent, service, session_scope
from preservation.catalog.search import SearchQuery, search_aips
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConflictError, NotFoundError, SiteUnavailableError
from preservation.inventory import describe_aip
from preservation.metadata import read_mets, validate_dublin_core, validate_mets, validate_premis
from preservation.metadata.dc_input import dc_from_json, dc_from_xml
from preservation.metadata.mets import DC_NS, METS_NS, PREMIS_NS
from preservation.storage.recovery import read_version_head, recover
from tests.trees import tree_digest

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"
NEW_RECORD = {
    "Title": "Lettres du donateur, 1921",
    "subject": ["correspondence", "donors"],
    "creator": "Hélène Martin",
}


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


def ingest_bag(ctx: Context, tenant: str = "museum") -> str:
    result = ingest.run_ingest(ctx, SAMPLE, tenant=tenant)
    assert result.state == "committed", result
    assert result.aip_id
    return result.aip_id


def found(ctx: Context, q: str, tenant: str = "museum") -> list[str]:
    with session_scope(ctx.sessions) as s:
        return [a.id for a in search_aips(s, SearchQuery(tenant_id=tenant, q=q)).aips]


def down(settings: Settings, site: str) -> Path:
    flag = settings.tape_dir / site / "DOWN"
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text("maintenance window")
    return flag


def verified(shown: dict[str, Any], number: int) -> list[dict[str, Any]]:
    [v] = [v for v in shown["versions"] if v["number"] == number]
    return [c for c in v["copies"] if c["status"] == "verified"]


def test_a_metadata_update_is_version_2_on_both_sites_and_current_once_committed(
    catalog_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "var", database_url=catalog_url)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        aip_id = ingest_bag(ctx)
        with session_scope(ctx.sessions) as s:
            assert s.get_one(AIP, aip_id).descriptive is not None  # set at ingest's commit
        assert found(ctx, "pipeline") == [aip_id]  # a word of the bag's Title
        v1_before = recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1-before")

        info = versions.prepare_metadata_version(
            ctx, aip_id, dc_from_json(NEW_RECORD), tenant_id="museum", who="jane@museum"
        )
        assert (info.aip_id, info.number, info.state) == (aip_id, 2, "pending")
        # Prepared, not yet safe: the AIP is still what it was.
        assert found(ctx, "lettres") == [] and found(ctx, "pipeline") == [aip_id]
        assert describe_aip(ctx, aip_id)["versions"][1]["state"] == "pending"

        assert versions.finish_version(ctx, info.version_id) is True
        assert versions.finish_version(ctx, info.version_id) is False  # idempotent

        shown = describe_aip(ctx, aip_id)
        assert shown["state"] == AIPState.ACTIVE.value
        assert [(v["number"], v["reason"], v["state"]) for v in shown["versions"]] == [
            (1, "ingest", "committed"),
            (2, "metadata", "committed"),
        ]
        copies = verified(shown, 2)
        assert sorted(c["site"] for c in copies) == ["site-a", "site-b"]
        assert len({c["barcode"] for c in copies}) == 2
        assert {c["path"] for c in copies} == {f"/museum/{aip_id}/v2.tar"}
        assert shown["descriptive"] == {
            "title": ["Lettres du donateur, 1921"],
            "creator": ["Hélène Martin"],
            "subject": ["correspondence", "donors"],
            "identifier": [f"urn:uuid:{aip_id}"],
        }
        assert found(ctx, "lettres") == [aip_id] and found(ctx, "donors") == [aip_id]
        assert found(ctx, "pipeline") == []  # the old title's word is gone
        assert versions.pending_versions(ctx) == []
        assert list((settings.staging_dir / "versions").iterdir()) == []  # tar released
        with session_scope(ctx.sessions) as s:
            assert service.verify_event_chain(s, "museum") == []
            [modification] = [
                e
                for e in service.list_events(s, aip_id=aip_id)
                if e.type == "metadata modification"
            ]
            assert modification.agents["implementer"] == ["jane@museum"]
            assert modification.objects["version"] == 2

        # Version 1 is untouched on tape, byte for byte.
        v1_after = recover(ctx, aip_id, 1, dest_dir=tmp_path / "v1-after")
        assert tree_digest(v1_after) == tree_digest(v1_before)

        # Version 2, whole: its own dc.xml, METS and PREMIS, and all of v1's originals.
        bag = recover(ctx, aip_id, 2, dest_dir=tmp_path / "v2")
        assert bag == tmp_path / "v2" / f"{aip_id}.v2"
        bagit.Bag(str(bag)).validate()
        assert [p.name for p in (tmp_path / "v2").iterdir()] == [bag.name]  # no work left
        data = bag / "data"
        for original in (SAMPLE / "data").rglob("*"):
            if original.is_file():
                rel = original.relative_to(SAMPLE / "data")
                copy = data / "representations" / "rep1" / "data" / rel
                assert copy.read_bytes() == original.read_bytes(), rel
        assert (data / "submission" / "bag-info.txt").read_bytes() == (
            SAMPLE / "bag-info.txt"
        ).read_bytes()
        titles = etree.parse(str(data / "metadata/descriptive/dc.xml")).findall(f"{{{DC_NS}}}title")
        assert [t.text for t in titles] == ["Lettres du donateur, 1921"]
        assert validate_mets(data / "METS.xml") == []
        assert validate_premis(data / "metadata/preservation/premis.xml") == []
        assert validate_dublin_core(data / "metadata/descriptive/dc.xml") == []
        parsed = read_mets(data / "METS.xml")
        assert parsed.package.version == 2
        [rep] = parsed.representations
        assert (rep.name, rep.version) == ("rep1", 1)
        rep_mets = data / "representations/rep1/METS.xml"
        assert rep.sha256 == hashlib.sha256(rep_mets.read_bytes()).hexdigest()
        assert rep.size == rep_mets.stat().st_size
        assert (1, "submission/bag-info.txt") in parsed.previous_versions
        hrefs = [
            el.get("{http://www.w3.org/1999/xlink}href")
            for el in etree.parse(str(data / "METS.xml")).iter(f"{{{METS_NS}}}FLocat")
        ]
        assert f"../../{aip_id}.v1/data/representations/rep1/METS.xml" in hrefs
        events = {e.type for e in parsed.package.events}
        assert {"ingestion", "replication", "metadata modification"} <= events
        agents = {a.name: a.type for a in parsed.package.agents}
        assert agents["jane@museum"] == "person"
        # With no version named, recovery gives the current one.
        assert recover(ctx, aip_id, dest_dir=tmp_path / "current").name == f"{aip_id}.v2"
    finally:
        ctx.close()


def test_the_version_2_tar_holds_only_what_is_new(ctx: Context, tmp_path: Path) -> None:
    import tarfile

    aip_id = ingest_bag(ctx)
    info = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "New")], tenant_id=None, who="admin"
    )
    with session_scope(ctx.sessions) as s:
        tar_path = Path(s.get_one(AIPVersion, info.version_id).staging_path or "")
    with tarfile.open(tar_path) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        assert all(m.uid == 0 and m.gid == 0 and not m.uname for m in tar.getmembers())
    assert tarfile.open(tar_path).getmembers()[0].name == f"{aip_id}.v2"
    assert names[:2] == ["bag-info.txt", "bagit.txt"]  # tag files lead the tar
    assert not [n for n in names if n.startswith(("data/representations/", "data/submission/"))]
    assert {"data/METS.xml", "data/metadata/descriptive/dc.xml"} <= set(names)
    assert "data/metadata/preservation/premis.xml" in names
    assert any(n.startswith("data/schemas/") for n in names)
    versions.submit_version(ctx, info.version_id)  # no broker: finished in this process
    assert describe_aip(ctx, aip_id)["versions"][1]["state"] == "committed"


def test_another_tenants_aip_is_not_found_exactly_like_no_aip(ctx: Context) -> None:
    aip_id = ingest_bag(ctx, tenant="museum")
    record = dc_from_json({"title": "x"})
    with pytest.raises(NotFoundError) as theirs:
        versions.prepare_metadata_version(ctx, aip_id, record, tenant_id="library", who="eve")
    nobody = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as none:
        versions.prepare_metadata_version(ctx, nobody, record, tenant_id="library", who="eve")
    assert theirs.value.message.replace(aip_id, "ID") == none.value.message.replace(nobody, "ID")
    assert set(theirs.value.to_dict()) == set(none.value.to_dict())
    with session_scope(ctx.sessions) as s:
        assert len(s.get_one(AIP, aip_id).versions) == 1
        assert not [e for e in service.list_events(s, aip_id=aip_id) if e.type.startswith("meta")]


def test_a_pending_aip_and_a_version_in_flight_are_conflicts(
    ctx: Context, settings: Settings
) -> None:
    flag = down(settings, "site-b")
    with pytest.raises(SiteUnavailableError):
        ingest.run_ingest(ctx, SAMPLE, tenant="museum", wait_seconds=0)
    [sip_id] = ingest.pending_sips(ctx)
    aip_id = ingest.result_of(ctx, sip_id).aip_id
    assert aip_id
    with pytest.raises(ConflictError) as pending:
        versions.prepare_metadata_version(
            ctx, aip_id, [("title", "x")], tenant_id="museum", who="jane"
        )
    assert pending.value.context["rule"] == "aip-not-active"
    flag.unlink()
    [done] = ingest.resume(ctx)
    assert done.state == "committed"

    first = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "First")], tenant_id="museum", who="jane"
    )
    with pytest.raises(ConflictError) as in_flight:
        versions.prepare_metadata_version(
            ctx, aip_id, [("title", "Second")], tenant_id="museum", who="joe"
        )
    assert in_flight.value.context["rule"] == "version-in-flight"
    # The same request again (a client retrying) is the version it already made.
    again = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "First")], tenant_id="museum", who="jane"
    )
    assert again == first
    versions.finish_version(ctx, first.version_id)
    second = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "Second")], tenant_id="museum", who="joe"
    )
    assert second.number == 3
    versions.finish_version(ctx, second.version_id)
    assert describe_aip(ctx, aip_id)["descriptive"]["title"] == ["Second"]
    # Finishing version 2 again never brings its record back over version 3's.
    assert versions.finish_version(ctx, first.version_id) is False
    assert describe_aip(ctx, aip_id)["descriptive"]["title"] == ["Second"]


def test_a_site_down_while_finishing_leaves_the_version_pending_and_the_aip_readable(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx)
    before = describe_aip(ctx, aip_id)["descriptive"]
    info = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "Lettres")], tenant_id="museum", who="jane"
    )
    flag = down(settings, "site-b")
    with pytest.raises(SiteUnavailableError, match="site-b"):
        versions.finish_version(ctx, info.version_id)
    with pytest.raises(SiteUnavailableError):
        versions.run_version(ctx, info.version_id, wait_seconds=0)
    shown = describe_aip(ctx, aip_id)
    assert shown["state"] == "active" and shown["descriptive"] == before
    assert shown["versions"][1]["state"] == "pending"
    assert [c["site"] for c in verified(shown, 2)] == ["site-a"]
    assert [v.version_id for v in versions.pending_versions(ctx)] == [info.version_id]
    assert found(ctx, "lettres") == []
    # Still readable, as it was: the current version is the committed one.
    assert recover(ctx, aip_id, dest_dir=tmp_path / "now").name == f"{aip_id}.v1"

    flag.unlink()
    assert versions.finish_version(ctx, info.version_id) is True
    shown = describe_aip(ctx, aip_id)
    assert shown["descriptive"]["title"] == ["Lettres"]
    assert sorted(c["site"] for c in verified(shown, 2)) == ["site-a", "site-b"]
    assert found(ctx, "lettres") == [aip_id]
    assert versions.pending_versions(ctx) == []


def test_a_crash_leaves_nothing_half_made_and_a_rerun_finishes(
    ctx: Context, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import preservation.aip

    aip_id = ingest_bag(ctx)
    real_serialise = preservation.aip.serialise_aip

    def killed(*args: Any, **kwargs: Any) -> Any:
        real_serialise(*args, **kwargs)  # the tar is written, the catalogue not yet
        raise RuntimeError("killed while packaging")

    monkeypatch.setattr(preservation.aip, "serialise_aip", killed)
    with pytest.raises(RuntimeError):
        versions.prepare_metadata_version(ctx, aip_id, [("title", "x")], tenant_id=None, who="a")
    monkeypatch.setattr(preservation.aip, "serialise_aip", real_serialise)
    with session_scope(ctx.sessions) as s:
        assert len(s.get_one(AIP, aip_id).versions) == 1
        assert "metadata modification" not in {e.type for e in service.list_events(s)}
    assert list((settings.staging_dir / "versions").iterdir()) == []

    info = versions.prepare_metadata_version(
        ctx, aip_id, [("title", "Lettres")], tenant_id=None, who="a"
    )
    assert info.number == 2
    # Killed between the commit and making the record current: a rerun mends it.
    real_current = versions._make_current
    monkeypatch.setattr(versions, "_make_current", lambda *_: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        versions.finish_version(ctx, info.version_id)
    assert describe_aip(ctx, aip_id)["versions"][1]["state"] == "committed"
    assert describe_aip(ctx, aip_id)["descriptive"]["title"] != ["Lettres"]
    monkeypatch.setattr(versions, "_make_current", real_current)
    assert versions.finish_version(ctx, info.version_id) is False
    assert describe_aip(ctx, aip_id)["descriptive"]["title"] == ["Lettres"]
    assert found(ctx, "lettres") == [aip_id]


def test_an_aip_without_recorded_contents_gets_them_from_the_head_of_its_tar(
    ctx: Context, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx)
    with session_scope(ctx.sessions) as s:
        v1 = s.scalar(select(AIPVersion).where(AIPVersion.aip_id == aip_id))
        assert v1 is not None
        [creation] = [e for e in service.list_events(s, aip_id=aip_id) if e.type == "creation"]
        recorded = creation.objects["contents"]
        version_id = v1.id
    head = read_version_head(ctx, version_id)
    assert set(head) == set(recorded)
    for path, (number, size, sha256) in head.items():
        assert (number, sha256) == (recorded[path][0], recorded[path][2]), path
        assert size in (None, recorded[path][1]), path
    assert head["representations/rep1/METS.xml"] == recorded["representations/rep1/METS.xml"]

    # An AIP ingested before the catalogue kept them: its creation event lacks them.
    with session_scope(ctx.sessions) as s:
        event = s.scalar(select(PremisEvent).where(PremisEvent.id == creation.id))
        assert event is not None
        event.objects = {"files": 26}
    info = versions.prepare_metadata_version(
        ctx,
        aip_id,
        dc_from_xml(
            b"<metadata xmlns:dc='%s'><dc:title>Old AIP</dc:title></metadata>" % DC_NS.encode()
        ),
        tenant_id=None,
        who="a",
    )
    versions.finish_version(ctx, info.version_id)
    bag = recover(ctx, aip_id, 2, dest_dir=tmp_path / "v2")
    bagit.Bag(str(bag)).validate()
    assert validate_mets(bag / "data" / "METS.xml") == []
    premis_agents = etree.parse(str(bag / "data/metadata/preservation/premis.xml")).iter(
        f"{{{PREMIS_NS}}}agentName"
    )
    assert "a" in {el.text for el in premis_agents}


def test_cli_repair_commits_a_version_a_site_outage_left_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from preservation.cli import app

    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    settings = Settings(home=home)
    ctx = open_context(settings)
    try:
        aip_id = ingest_bag(ctx)
        info = versions.prepare_metadata_version(
            ctx, aip_id, [("title", "Lettres")], tenant_id=None, who="admin"
        )
        flag = down(settings, "site-b")
        with pytest.raises(SiteUnavailableError):
            versions.finish_version(ctx, info.version_id)
    finally:
        ctx.close()
    runner = CliRunner()
    # While version 2 waits, `recover` with no version gives the AIP as it is: version 1.
    shown = runner.invoke(app, ["recover", aip_id, "--to", str(tmp_path / "r"), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["version"] == 1
    flag.unlink()
    repaired = runner.invoke(app, ["repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    [done] = json.loads(repaired.stdout)["versions"]
    assert (done["aip_id"], done["number"]) == (aip_id, 2)
    body = json.loads(runner.invoke(app, ["show", aip_id, "--json"]).stdout)
    assert body["descriptive"]["title"] == ["Lettres"]
    assert [v["state"] for v in body["versions"]] == ["committed", "committed"]
    text = runner.invoke(app, ["show", aip_id])
    assert "Lettres" in text.output and "(metadata, committed)" in text.output
    latest = runner.invoke(app, ["recover", aip_id, "--to", str(tmp_path / "r2"), "--json"])
    assert json.loads(latest.stdout)["version"] == 2
