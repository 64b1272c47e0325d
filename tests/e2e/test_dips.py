"""DIPs end to end: asked for, recalled from emulated tape, packed as E-ARK zips, handed out.

Real ingests of small bags (a PNG, two text files) on the embedded default,
a real format migration (PNG to TIFF, with Pillow) and a real metadata
update where versions are needed, real faults on the emulated cartridges.
What is asserted is what a reader and an archivist rely on: the zip is a
valid bag whose METS and PREMIS say what it is and where it came from, each
kind holds the files it promises, a bad copy on one site costs the reader
nothing and is rebuilt, a batch mounts each cartridge once, and the cache
keeps to its limits.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import bagit
import pytest
from lxml import etree
from PIL import Image
from sqlalchemy import select

from preservation import dispatch, ingest, retention, versions
from preservation.access import cache, recall
from preservation.access import service as dips
from preservation.catalog import service, session_scope
from preservation.catalog.models import DIP, AIPVersion, CopyStatus, DIPState, TapeCopy, utcnow
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConflictError, GoneError, InvalidRequestError, NotFoundError
from preservation.metadata import validate_mets, validate_premis
from preservation.metadata.mets import CSIP_NS, METS_NS, PREMIS_NS
from preservation.migrate import run
from preservation.migrate import service as migrations
from preservation.storage.library import EmulatedLibrary
from preservation.storage.service import release_drives
from preservation.storage.sites import get_site

REPO = Path(__file__).resolve().parents[2]
M = f"{{{METS_NS}}}"
P = f"{{{PREMIS_NS}}}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    dispatch.shutdown(c, wait=True)  # a repair a batch left on the background pool
    c.close()


@pytest.fixture
def pool_held(ctx: Context) -> Iterator[threading.Event]:
    """The embedded pool's one thread, kept busy until the event is set (at the latest when
    the test ends): a repair a batch hands it waits, so what the batch recorded can be seen
    before the repair mends it."""
    hold = threading.Event()
    dispatch.run_in_background(ctx, "the test's hold", hold.wait)
    yield hold
    hold.set()


# -- helpers ---------------------------------------------------------------------------------------


def make_bag(
    where: Path,
    name: str,
    colour: tuple[int, int, int] = (200, 30, 30),
    note: str = "",
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A small bag: a PNG (migrated to TIFF, rendered as JPEG), a note and a table."""
    bag = where / name
    (bag / "images").mkdir(parents=True)
    (bag / "notes").mkdir()
    Image.new("RGB", (48, 32), colour).save(bag / "images" / "plate.png")
    (bag / "notes" / "reading.txt").write_text(note or f"Notes on the {name} plates.\n")
    (bag / "notes" / "sizes.csv").write_text("plate,width,height\n1,48,32\n")
    for path, data in (extra or {}).items():
        (bag / path).parent.mkdir(parents=True, exist_ok=True)
        (bag / path).write_bytes(data)
    bagit.make_bag(
        str(bag),
        {"Source-Organization": "Museum", "Title": f"The {name} plates"},
        checksums=["sha256"],
    )
    return bag


def payload(bag: Path) -> dict[str, bytes]:
    data = bag / "data"
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}


def ingest_bag(ctx: Context, bag: Path, tenant: str = "museum") -> str:
    result = ingest.run_ingest(ctx, bag, tenant=tenant)
    assert result.state == "committed", result
    assert result.aip_id
    return result.aip_id


def ask(ctx: Context, aip_id: str, **kw: Any) -> str:
    kw.setdefault("requested_by", "reader@museum")
    with session_scope(ctx.sessions) as s:
        return dips.request_dip(s, aip_id=aip_id, tenant_id=None, **kw).dip_id


def status(ctx: Context, dip_id: str) -> dips.DIPView:
    with session_scope(ctx.sessions) as s:
        return dips.get_dip(s, dip_id, None)


def unpack(ctx: Context, dip_id: str, where: Path) -> dict[str, bytes]:
    """The DIP's zip from the cache, checked and extracted: its representation's files."""
    path = cache.zip_path(ctx.settings, dip_id)
    view = status(ctx, dip_id)
    assert view.state == "ready", view
    assert path.stat().st_size == view.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == view.etag
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert all(n.startswith(f"{dip_id}/") for n in zf.namelist())
        zf.extractall(where)
    bag = where / dip_id
    bagit.Bag(str(bag)).validate()
    rep = bag / "data" / "representations" / view.kind / "data"
    return {p.relative_to(rep).as_posix(): p.read_bytes() for p in rep.rglob("*") if p.is_file()}


def check_metadata(bag: Path, dip_id: str, aip_id: str, version: int) -> etree._Element:
    """The METS and PREMIS of an extracted DIP: valid, and saying what the DIP is. The PREMIS."""
    mets_path = bag / "data" / "METS.xml"
    premis_path = bag / "data" / "metadata" / "preservation" / "premis.xml"
    assert validate_mets(mets_path) == []
    assert validate_premis(premis_path) == []
    mets = etree.parse(str(mets_path)).getroot()
    assert mets.get("OBJID") == dip_id
    header = mets.find(M + "metsHdr")
    assert header is not None and header.get(f"{{{CSIP_NS}}}OAISPACKAGETYPE") == "DIP"
    alt = {a.get("TYPE"): a.text for a in header.iter(M + "altRecordID")}
    assert alt == {"AIP": aip_id, "AIP-VERSION": str(version)}
    # Every file the METS lists is in the bag with the size and digest it gives.
    for f in mets.iter(M + "file"):
        flocat = f.find(M + "FLocat")
        assert flocat is not None
        target = bag / "data" / unquote(flocat.get(XLINK_HREF, ""))
        assert target.stat().st_size == int(f.get("SIZE", "-1"))
        assert hashlib.sha256(target.read_bytes()).hexdigest() == f.get("CHECKSUM")
    return etree.parse(str(premis_path)).getroot()


def premis_events(premis: etree._Element) -> list[tuple[str, str, str]]:
    return [
        (e.findtext(P + "eventType"), e.findtext(f"{P}eventOutcomeInformation/{P}eventOutcome"),
         e.findtext(f"{P}eventDetailInformation/{P}eventDetail"))
        for e in premis.iter(P + "event")
    ]  # fmt: skip


def premis_links(premis: etree._Element) -> list[tuple[str, str, str, str | None]]:
    """Every object an event links to: (event type, identifier type, value, role)."""
    return [
        (e.findtext(P + "eventType") or "", link.findtext(P + "linkingObjectIdentifierType") or "",
         link.findtext(P + "linkingObjectIdentifierValue") or "",
         link.findtext(P + "linkingObjectRole"))
        for e in premis.iter(P + "event")
        for link in e.iter(P + "linkingObjectIdentifier")
    ]  # fmt: skip


def premis_objects(premis: etree._Element) -> set[str]:
    return {
        o.findtext(f"{P}objectIdentifier/{P}objectIdentifierValue") or ""
        for o in premis.iter(P + "object")
    }


def mets_files(bag: Path) -> dict[str, str]:
    """The METS file IDs of an extracted DIP, each with its location."""
    mets = etree.parse(str(bag / "data" / "METS.xml")).getroot()
    return {
        f.get("ID", ""): f.find(M + "FLocat").get(XLINK_HREF, "")  # type: ignore[union-attr]
        for f in mets.iter(M + "file")
    }


def premis_agents(premis: etree._Element) -> set[str]:
    return {a.findtext(P + "agentName") or "" for a in premis.iter(P + "agent")}


def migrate(ctx: Context, aip_id: str) -> None:
    """The default policy on the AIP: the PNG becomes an uncompressed TIFF (Pillow), version 2."""
    policy, text = migrations.read_policy(None)
    with session_scope(ctx.sessions) as s:
        view = migrations.start_migration(s, policy, text, aip_ids=[aip_id], who="jane@museum")
    run.run_migration(ctx, view.migration_id)
    with session_scope(ctx.sessions) as s:
        view = migrations.get_migration(s, view.migration_id, None)
    assert view.state == "done" and view.items[0].state == "committed", view


def update_metadata(ctx: Context, aip_id: str, title: str) -> int:
    info = versions.prepare_metadata_version(
        ctx, aip_id, [("title", title)], tenant_id="museum", who="jane@museum"
    )
    assert versions.finish_version(ctx, info.version_id)
    return info.number


def tape_copies(ctx: Context, aip_id: str) -> list[TapeCopy]:
    with session_scope(ctx.sessions) as s:
        rows = list(
            s.scalars(
                select(TapeCopy)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .where(AIPVersion.aip_id == aip_id)
                .order_by(TapeCopy.id)
            )
        )
        s.expunge_all()
    return rows


def library(ctx: Context, site: str) -> EmulatedLibrary:
    lib = get_site(ctx, site).library
    assert isinstance(lib, EmulatedLibrary)
    return lib


def dispose(ctx: Context, aip_id: str) -> None:
    """Two curators agree: the AIP becomes a tombstone."""
    alice = retention.Actor(id="cli:alice", label="alice")
    bob = retention.Actor(id="cli:bob", label="bob")
    with session_scope(ctx.sessions) as s:
        retention.set_retention(s, aip_id, None, alice, until=utcnow() - timedelta(days=1))
        disposal = retention.request_disposal(s, aip_id, None, alice, reason="retention over")
    view = retention.approve_disposal(ctx, disposal.disposal_id, None, bob)
    assert view.state == "disposed", view


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preservation.cli", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PRESERVATION_HOME": str(settings.home),
            "PRESERVATION_DATABASE_URL": settings.database_url or "",
            "COLUMNS": "200",
        },
        cwd=REPO,
        timeout=300,
    )


# -- the CLI ---------------------------------------------------------------------------------------


def test_the_cli_asks_follows_and_fetches_a_dip_that_is_a_valid_e_ark_bag(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    # A name with a space and a letter outside ASCII: the zip, the manifest and the METS
    # must each spell it their own way.
    bag = make_bag(tmp_path, "ledger", extra={"notes/Über die Tafeln.txt": b"Tafel 1\n"})
    aip_id = ingest_bag(ctx, bag)
    release_drives(ctx)  # the CLI is another process: it mounts the cartridges itself
    asked = _cli(  # the AIP by a prefix of its id, as a curator types it
        settings, "dip", "request", aip_id[:8], "--kind", "original", "--by", "Ada Reader",
        "--json",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stdout + asked.stderr[-2000:]
    view = json.loads(asked.stdout)
    dip_id = view["dip_id"]
    assert (view["state"], view["kind"], view["aip_id"], view["version"]) == (
        "ready", "original", aip_id, 1,
    )  # fmt: skip
    assert view["requested_by"] == "Ada Reader" and view["files_total"] == 4
    assert view["download_url"] == f"/api/v1/dips/{dip_id}/download"

    # dip status: the state, the cartridge read, the bytes.
    shown = _cli(settings, "dip", "status", dip_id, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    shown_view = json.loads(shown.stdout)
    [site_a] = [c for c in tape_copies(ctx, aip_id) if c.site == "site-a"]
    assert shown_view["state"] == "ready"
    assert shown_view["progress"]["cartridges"] == [site_a.barcode]
    read = shown_view["progress"]["bytes_read"]
    assert read == shown_view["progress"]["bytes_to_read"] > 0
    assert shown_view["size"] > 0 and len(shown_view["etag"]) == 64
    text = _cli(settings, "dip", "status", dip_id)
    assert text.returncode == 0, text.stderr[-2000:]
    assert f"DIP {dip_id}: ready" in text.stdout and site_a.barcode in text.stdout
    assert "read" in text.stdout and shown_view["etag"] in text.stdout
    listed = _cli(settings, "dip", "status", "--json")
    assert [v["dip_id"] for v in json.loads(listed.stdout)] == [dip_id]

    # dip get: the zip, as the cache holds it, checked on the way.
    got = _cli(settings, "dip", "get", dip_id, "--to", str(tmp_path / "out"), "--json")
    assert got.returncode == 0, got.stderr[-2000:]
    fetched = tmp_path / "out" / f"dip-{dip_id}.zip"
    assert json.loads(got.stdout)["path"] == str(fetched)
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == shown_view["etag"]
    with zipfile.ZipFile(fetched) as zf:
        assert zf.testzip() is None
        [uber] = [i for i in zf.infolist() if i.filename.endswith("/Über die Tafeln.txt")]
        assert uber.flag_bits & 0x800  # the name is flagged UTF-8, as unzip tools expect
        zf.extractall(tmp_path / "unzipped")
    dip_bag = tmp_path / "unzipped" / dip_id
    bagit.Bag(str(dip_bag)).validate()
    info = bagit.Bag(str(dip_bag)).info
    assert (info["DIP-Identifier"], info["AIP-Identifier"], info["DIP-Kind"]) == (
        dip_id, aip_id, "original",
    )  # fmt: skip
    rep = dip_bag / "data" / "representations" / "original" / "data"
    assert {
        p.relative_to(rep).as_posix(): p.read_bytes() for p in rep.rglob("*") if p.is_file()
    } == payload(bag)
    premis = check_metadata(dip_bag, dip_id, aip_id, 1)
    [(_, outcome, detail)] = [e for e in premis_events(premis) if e[0] == "dissemination"]
    assert outcome == "success" and "Ada Reader" in detail
    assert "Ada Reader" in premis_agents(premis)
    mets = etree.parse(str(dip_bag / "data" / "METS.xml")).getroot()
    assert "Ada Reader" in [a.findtext(M + "name") for a in mets.iter(M + "agent")]

    # A zip that decayed in the cache is not handed out as if it were whole.
    cached_zip = cache.zip_path(settings, dip_id)
    data = bytearray(cached_zip.read_bytes())
    data[len(data) // 2] ^= 0x01
    cached_zip.write_bytes(bytes(data))
    damaged = _cli(settings, "dip", "get", dip_id, "--to", str(tmp_path / "again"))
    assert damaged.returncode == 3, damaged.stdout + damaged.stderr[-2000:]
    assert "sha256" in damaged.stderr
    assert not (tmp_path / "again").exists() or list((tmp_path / "again").iterdir()) == []

    # The AIP's own history: a dissemination event naming the requester; the chain holds.
    with session_scope(ctx.sessions) as s:
        [event] = [e for e in service.list_events(s, aip_id=aip_id) if e.type == "dissemination"]
        assert event.outcome == "success" and dip_id in event.detail
        assert "Ada Reader" in event.agents["authorizer"]
        assert event.objects["dip"] == dip_id
        assert service.verify_event_chain(s, "museum") == []


def test_the_cli_refuses_what_cannot_be_served_with_a_clear_message(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx, make_bag(tmp_path, "ledger"))
    gone = ingest_bag(ctx, make_bag(tmp_path, "album", (30, 30, 200)))
    dispose(ctx, gone)
    release_drives(ctx)

    def refused(code: int, *args: str) -> str:
        r = _cli(settings, "dip", *args)
        assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr[-2000:])
        return " ".join((r.stdout + r.stderr).split())

    assert f"AIP {aip_id} has no version 7 (its versions: 1)" in refused(
        1, "request", aip_id, "--version", "7"
    )
    assert "matches '*.tif'" in refused(2, "request", aip_id, "--files", "*.tif")
    assert "--kind must be one of original, preservation, access" in refused(
        2, "request", aip_id, "--kind", "thumbnail"
    )
    message = refused(1, "request", gone, "--json")
    problem = json.loads(message)
    assert problem["rule"] == "disposed" and "was disposed of" in problem["message"]
    assert problem["tombstone"]["aip_id"] == gone and problem["tombstone"]["disposed_at"]
    # Asked for and not served yet: no zip to get.
    queued = _cli(settings, "dip", "request", aip_id, "--no-wait", "--json")
    assert queued.returncode == 0, queued.stderr[-2000:]
    dip_id = json.loads(queued.stdout)["dip_id"]
    assert json.loads(queued.stdout)["state"] == "queued"
    assert "not ready yet" in refused(1, "get", dip_id, "--to", str(tmp_path / "out"))
    assert not (tmp_path / "out" / f"dip-{dip_id}.zip").exists()
    with session_scope(ctx.sessions) as s:  # refusals leave no request behind
        assert [d.id for d in s.scalars(select(DIP))] == [dip_id]


# -- kinds and versions ----------------------------------------------------------------------------


def test_each_kind_and_version_holds_the_files_it_promises(ctx: Context, tmp_path: Path) -> None:
    bag = make_bag(tmp_path, "ledger")
    original = payload(bag)
    aip_id = ingest_bag(ctx, bag)
    migrate(ctx, aip_id)  # version 2: plate.png becomes plate.tif
    assert update_metadata(ctx, aip_id, "The ledger plates, catalogued") == 3
    release_drives(ctx)

    asked = {
        "original": ask(ctx, aip_id, kind="original"),
        "preservation": ask(ctx, aip_id, kind="preservation"),
        "access": ask(ctx, aip_id, kind="access"),
        "notes": ask(ctx, aip_id, kind="preservation", files_glob="notes/*.txt"),
        "v1": ask(ctx, aip_id, kind="preservation", version=1),
    }
    report = recall.run_batch(ctx)
    assert sorted(report.ready) == sorted(asked.values()) and report.failed == {}, report
    assert report.tars == 2  # versions 1 and 2 hold every file; version 3 holds none
    barcodes = {c.barcode for c in tape_copies(ctx, aip_id) if c.site == "site-a"}
    assert report.visits == len(barcodes) and report.mounts <= len(barcodes)

    files = {name: unpack(ctx, dip_id, tmp_path / name) for name, dip_id in asked.items()}
    assert files["original"] == original
    assert files["v1"] == original  # version 1's current files are the originals
    notes = {k: v for k, v in original.items() if k != "images/plate.png"}
    assert set(files["preservation"]) == {"images/plate.tif", *notes}
    assert {k: files["preservation"][k] for k in notes} == notes
    with Image.open(tmp_path / "preservation" / asked["preservation"] / "data" /
                    "representations/preservation/data/images/plate.tif") as tif:  # fmt: skip
        assert (tif.format, tif.size) == ("TIFF", (48, 32))
    assert set(files["access"]) == {"images/plate.jpg", *notes}
    assert files["access"]["images/plate.jpg"][:3] == b"\xff\xd8\xff"  # a JPEG
    assert files["notes"] == {"notes/reading.txt": original["notes/reading.txt"]}

    for name, dip_id in asked.items():
        version = 1 if name in ("v1", "original") else 3  # an original DIP is version 1's
        premis = check_metadata(tmp_path / name / dip_id, dip_id, aip_id, version)
        kinds = [e[0] for e in premis_events(premis)]
        links = premis_links(premis)
        objects = premis_objects(premis)
        for event_type, id_type, value, _role in links:  # a local link names an object here
            assert id_type != "local" or value in objects, (name, event_type, value, objects)
        if name == "access":
            [(_, outcome, detail)] = [e for e in premis_events(premis) if e[0] == "migration"]
            assert outcome == "success" and "images/plate.tif" in detail and "fmt/43" in detail
            assert sorted(kinds) == ["dissemination", "migration"]
            # The rendition event names what it was made from (the AIP's TIFF) and what it made.
            made = {(t, v, r) for e, t, v, r in links if e == "migration"}
            [(source_type, source, _)] = [m for m in made if m[2] == "source"]
            assert source_type == "URI" and source.startswith(f"{aip_id}.v2/")
            assert source.endswith("/images/plate.tif")
            [(_, outcome_id, _)] = [m for m in made if m[2] == "outcome"]
            assert outcome_id in objects
            located = mets_files(tmp_path / name / dip_id)[outcome_id]
            assert located == "representations/access/data/images/plate.jpg"
        else:
            assert kinds == ["dissemination"]
    with session_scope(ctx.sessions) as s:
        events = [e for e in service.list_events(s, aip_id=aip_id) if e.type == "dissemination"]
        assert sorted(e.objects["dip"] for e in events) == sorted(asked.values())

    # Version 2 on its own: its tar and version 1's (the files it did not change), one batch.
    release_drives(ctx)
    dip_id = ask(ctx, aip_id, kind="preservation", version=2)
    report = recall.run_batch(ctx)
    assert report.ready == [dip_id] and report.tars == 2, report
    with session_scope(ctx.sessions) as s:
        sizes = dict(
            s.execute(
                select(AIPVersion.number, AIPVersion.tar_size).where(AIPVersion.aip_id == aip_id)
            ).all()
        )
    progress = status(ctx, dip_id).progress
    assert progress["bytes_read"] == progress["bytes_to_read"] >= sizes[1] + sizes[2]
    assert set(unpack(ctx, dip_id, tmp_path / "v2")) == set(files["preservation"])
    check_metadata(tmp_path / "v2" / dip_id, dip_id, aip_id, 2)

    # What cannot be: a version past the last, a kind not made, a pattern matching nothing.
    with session_scope(ctx.sessions) as s:
        with pytest.raises(NotFoundError, match="has no version 4") as no_version:
            dips.request_dip(s, aip_id=aip_id, tenant_id=None, version=4, requested_by="x")
        assert no_version.value.context["rule"] == "no-such-version"
        with pytest.raises(InvalidRequestError) as bad_kind:
            dips.request_dip(s, aip_id=aip_id, tenant_id=None, kind="thumbs", requested_by="x")
        assert bad_kind.value.context["rule"] == "dip-kind"
        with pytest.raises(InvalidRequestError) as nothing:
            dips.request_dip(
                s, aip_id=aip_id, tenant_id=None, kind="original", files_glob="*.tif",
                requested_by="x",
            )  # fmt: skip
        assert nothing.value.context["rule"] == "no-matching-files"
        with pytest.raises(NotFoundError):
            dips.request_dip(s, aip_id=aip_id, tenant_id="library", requested_by="x")


def test_an_access_dip_keeps_rendition_names_apart_and_sends_what_cannot_be_rendered_as_it_is(
    ctx: Context, tmp_path: Path
) -> None:
    tif = io.BytesIO()
    Image.new("RGB", (48, 32), (0, 90, 0)).save(tif, format="TIFF", compression="tiff_lzw")
    png = tmp_path / "probe.png"
    Image.new("RGB", (48, 32), (9, 9, 9)).save(png)
    broken = png.read_bytes()[:60]  # a PNG cut short: identified as PNG, decoded by nothing
    bag = make_bag(tmp_path, "ledger", extra={
        "images/plate.tif": tif.getvalue(), "images/broken.png": broken,
    })  # fmt: skip
    aip_id = ingest_bag(ctx, bag)
    dip_id = ask(ctx, aip_id, kind="access", files_glob="images/*")
    assert recall.run_batch(ctx).ready == [dip_id]

    files = unpack(ctx, dip_id, tmp_path / "dip")
    # plate.png and plate.tif both make a JPEG named plate.jpg: the second is numbered.
    assert set(files) == {"images/plate.jpg", "images/plate-2.jpg", "images/broken.png"}
    assert files["images/broken.png"] == broken
    for name in ("images/plate.jpg", "images/plate-2.jpg"):
        with Image.open(io.BytesIO(files[name])) as jpeg:
            assert (jpeg.format, jpeg.size) == ("JPEG", (48, 32))
    premis = check_metadata(tmp_path / "dip" / dip_id, dip_id, aip_id, 1)
    renditions = {d.split(" by ")[0]: o for t, o, d in premis_events(premis) if t == "migration"}
    assert renditions == {
        "access rendition of images/broken.png": "failure",
        "access rendition of images/plate.png": "success",
        "access rendition of images/plate.tif": "success",
    }
    located = mets_files(tmp_path / "dip" / dip_id)
    for event_type, id_type, value, role in premis_links(premis):
        if event_type == "migration" and role == "outcome":
            assert id_type == "local" and located[value].endswith(".jpg")


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True], ids=["repair-in-background", "repair-inline"])
def test_a_corrupt_copy_at_site_a_is_served_from_site_b_and_rebuilt(
    ctx: Context, tmp_path: Path, inline: bool, pool_held: threading.Event
) -> None:
    bag = make_bag(tmp_path, "ledger")
    aip_id = ingest_bag(ctx, bag)
    [bad] = [c for c in tape_copies(ctx, aip_id) if c.site == "site-a"]
    [site_b] = [c for c in tape_copies(ctx, aip_id) if c.site == "site-b"]
    release_drives(ctx)  # the fault hooks act on the next load
    library(ctx, "site-a").faults(bad.barcode).bit_flips.add((1, bad.start_block))

    dip_id = ask(ctx, aip_id, kind="original")
    report = recall.run_batch(ctx, repair_inline=inline)

    assert report.ready == [dip_id] and report.failed == {}, report
    assert report.failed_copies == [bad.id] and report.repair_scheduled
    assert unpack(ctx, dip_id, tmp_path / "dip") == payload(bag)
    assert status(ctx, dip_id).progress["cartridges"] == [site_b.barcode]  # served from site-b
    if not inline:
        [failed] = [c for c in tape_copies(ctx, aip_id) if c.id == bad.id]
        assert failed.status == CopyStatus.FAILED and "sha256" in (failed.error or "")
        assert [c.status for c in tape_copies(ctx, aip_id) if c.site == "site-a"] == [
            CopyStatus.FAILED
        ]  # not rebuilt yet: the repair waits on the pool
    pool_held.set()
    dispatch.shutdown(ctx, wait=True)
    after = {c.id: c for c in tape_copies(ctx, aip_id)}
    assert after[bad.id].status in (CopyStatus.FAILED, CopyStatus.DISCARDED)
    rebuilt = [
        c for c in after.values()
        if c.site == "site-a" and c.status == CopyStatus.VERIFIED and c.id != bad.id
    ]  # fmt: skip
    assert len(rebuilt) == 1, after
    assert after[site_b.id].status == CopyStatus.VERIFIED
    # The rebuilt copy serves the next reader, with site-b's cartridge refusing to load.
    release_drives(ctx)
    library(ctx, "site-b").faults(site_b.barcode).unreadable = True
    again = ask(ctx, aip_id, kind="original")
    report = recall.run_batch(ctx)
    assert report.ready == [again] and report.failed_copies == [], report
    assert status(ctx, again).progress["cartridges"] == [rebuilt[0].barcode]
    assert unpack(ctx, again, tmp_path / "again") == payload(bag)


def test_a_corrupt_copy_with_the_other_site_down_waits_for_that_site_rather_than_failing(
    ctx: Context, tmp_path: Path, pool_held: threading.Event
) -> None:
    bag = make_bag(tmp_path, "ledger")
    aip_id = ingest_bag(ctx, bag)
    [bad] = [c for c in tape_copies(ctx, aip_id) if c.site == "site-a"]
    release_drives(ctx)
    library(ctx, "site-a").faults(bad.barcode).bit_flips.add((1, bad.start_block))
    site_b = get_site(ctx, "site-b")
    site_b.forced_down = True

    dip_id = ask(ctx, aip_id, kind="original")
    report = recall.run_batch(ctx)

    # Site-b's copy is good, only not readable now: the request waits for it.
    assert (report.ready, report.failed, report.requeued) == ([], {}, [dip_id]), report
    assert report.failed_copies == [bad.id]
    waiting = status(ctx, dip_id)
    assert waiting.state == "queued" and "waiting for tape" in (waiting.reason or "")
    # It waits its backoff, then a batch takes it, site-b back, and serves it from there.
    assert recall.run_batch(ctx).dips == []
    with session_scope(ctx.sessions) as s:
        row = s.get_one(DIP, dip_id)
        assert row.attempts == 1 and row.not_before is not None
        row.not_before = utcnow() - timedelta(seconds=1)  # the backoff has passed
    site_b.forced_down = None
    report = recall.run_batch(ctx)
    assert report.ready == [dip_id], report
    assert unpack(ctx, dip_id, tmp_path / "dip") == payload(bag)
    assert status(ctx, dip_id).progress["cartridges"] == [
        c.barcode for c in tape_copies(ctx, aip_id) if c.site == "site-b"
    ]


def test_a_dip_whose_every_copy_is_bad_fails_saying_why(
    ctx: Context, tmp_path: Path, pool_held: threading.Event
) -> None:
    aip_id = ingest_bag(ctx, make_bag(tmp_path, "ledger"))
    copies = tape_copies(ctx, aip_id)
    release_drives(ctx)
    for c in copies:
        library(ctx, c.site).faults(c.barcode).bit_flips.add((1, c.start_block))

    dip_id = ask(ctx, aip_id, kind="original")
    report = recall.run_batch(ctx)

    assert report.ready == [] and list(report.failed) == [dip_id], report
    assert sorted(report.failed_copies) == sorted(c.id for c in copies)
    failed = status(ctx, dip_id)
    assert failed.state == "failed" and failed.download_url is None
    for c in copies:  # the reason names each copy tried
        assert f"{c.site}/{c.barcode}" in (failed.reason or ""), failed.reason
    with session_scope(ctx.sessions) as s:
        with pytest.raises(ConflictError) as refused:
            dips.ready_row(s, dip_id, None)
        assert refused.value.context["rule"] == "dip-failed"
    assert not cache.zip_path(ctx.settings, dip_id).exists()
    assert not ctx.settings.dip_dir.exists() or list(ctx.settings.dip_dir.iterdir()) == []


def test_one_batch_mounts_each_cartridge_once_for_many_requests(
    ctx: Context, tmp_path: Path
) -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    aips = [ingest_bag(ctx, make_bag(tmp_path, f"box{i}", c)) for i, c in enumerate(colours)]
    release_drives(ctx)  # nothing mounted: every cartridge read costs a mount
    asked = [ask(ctx, a, kind=k) for a in aips for k in ("original", "preservation")]
    mounts = {s: library(ctx, s).stats.mounts for s in ctx.settings.sites}

    report = recall.run_batch(ctx)

    assert sorted(report.ready) == sorted(asked), report
    assert report.tars == 3  # each version tar once, though two DIPs want it
    read = {c for d in asked for c in status(ctx, d).progress["cartridges"]}
    assert 1 <= report.mounts <= len(read), (report, read)
    assert report.visits == len(read)
    assert sum(library(ctx, s).stats.mounts - mounts[s] for s in mounts) == report.mounts
    with session_scope(ctx.sessions) as s:
        batches = {row.batch_id for row in s.scalars(select(DIP))}
    assert batches == {report.batch_id}


# -- the cache -------------------------------------------------------------------------------------


def test_the_cache_expires_old_dips_and_makes_room_oldest_first(
    ctx: Context, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx, make_bag(tmp_path, "ledger"))
    first, second = ask(ctx, aip_id, kind="original"), ask(ctx, aip_id, kind="original")
    assert sorted(recall.run_batch(ctx, dip_ids=[first]).ready) == [first]
    assert sorted(recall.run_batch(ctx, dip_ids=[second]).ready) == [second]
    sizes = {d: status(ctx, d).size or 0 for d in (first, second)}

    # The cap: the two built fit exactly, a third does not; the oldest leaves for it.
    ctx.settings.dip_cache_bytes = sum(sizes.values())
    third = ask(ctx, aip_id, kind="original")
    assert recall.run_batch(ctx).ready == [third]
    gone = status(ctx, first)
    assert gone.state == "expired" and "left the cache early" in (gone.reason or "")
    assert gone.download_url is None and gone.size is None
    assert not cache.zip_path(ctx.settings, first).exists()
    for kept in (second, third):
        assert status(ctx, kept).state == "ready"
        assert cache.zip_path(ctx.settings, kept).is_file()
    with session_scope(ctx.sessions) as s:
        with pytest.raises(GoneError) as expired:
            dips.ready_row(s, first, None)
        assert expired.value.context["rule"] == "dip-expired"

    # A zip is bigger than the files it holds (METS, PREMIS, tag files, headers): room
    # for the fourth's files alone is not room for its zip, and the cap still holds.
    fourth = ask(ctx, aip_id, kind="original")
    ctx.settings.dip_cache_bytes = cap = cached(ctx) + status(ctx, fourth).bytes_total
    assert recall.run_batch(ctx).ready == [fourth]
    assert cached(ctx) <= cap
    assert [status(ctx, d).state for d in (second, third, fourth)] == [
        "expired", "ready", "ready",
    ]  # fmt: skip

    # The time to live: a ready DIP past its expiry is expired by the next sweep.
    with session_scope(ctx.sessions) as s:
        s.get_one(DIP, third).expires_at = utcnow() - timedelta(minutes=1)
    assert status(ctx, third).state == "expired"  # shown so at once
    assert cache.evict(ctx) == [third]
    with session_scope(ctx.sessions) as s:
        assert s.get_one(DIP, third).state == DIPState.EXPIRED
        with pytest.raises(GoneError):
            dips.ready_row(s, third, None)
    assert not cache.zip_path(ctx.settings, third).exists()
    assert status(ctx, fourth).state == "ready"
    assert cache.evict(ctx) == []
    # Asked again, it is built again from tape.
    again = ask(ctx, aip_id, kind="original")
    assert recall.run_batch(ctx).ready == [again]
    assert status(ctx, again).etag is not None


def cached(ctx: Context) -> int:
    """Bytes the cache's ready DIPs take, as the files on disk say."""
    with session_scope(ctx.sessions) as s:
        ready = list(s.scalars(select(DIP.id).where(DIP.state == DIPState.READY)))
    return sum(cache.zip_path(ctx.settings, d).stat().st_size for d in ready)


# -- ZIP64 -----------------------------------------------------------------------------------------


def test_entries_and_offsets_past_the_zip64_limit_are_written_as_zip64(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = make_bag(tmp_path, "ledger", note="a long reading\n" * 400)  # 6 KB
    aip_id = ingest_bag(ctx, bag)
    dip_id = ask(ctx, aip_id, kind="original")
    limit = 1000
    with monkeypatch.context() as patched:
        patched.setattr(zipfile, "ZIP64_LIMIT", limit)
        assert recall.run_batch(ctx).ready == [dip_id]
    path = cache.zip_path(ctx.settings, dip_id)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None
        big = [i for i in infos if i.file_size > limit or i.header_offset > limit]
        assert len(big) >= 3  # the long note, the METS, and every entry after the first KB
        for i in big:  # the ZIP64 extra field (0x0001) in the central directory
            assert _has_zip64_extra(i.extra), i.filename
    assert unpack(ctx, dip_id, tmp_path / "dip") == payload(bag)
    raw = path.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # ZIP64 end records
    if shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "No errors detected" in tested.stdout


def _has_zip64_extra(extra: bytes) -> bool:
    """Whether a central directory entry's extra field holds a ZIP64 record (id 0x0001)."""
    i = 0
    while i + 4 <= len(extra):
        tag = int.from_bytes(extra[i : i + 2], "little")
        size = int.from_bytes(extra[i + 2 : i + 4], "little")
        if tag == 0x0001:
            return True
        i += 4 + size
    return False


def test_a_dip_bigger_than_the_cache_is_refused_and_a_disposed_aips_dip_shows_expired(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    aip_id = ingest_bag(ctx, make_bag(tmp_path, "ledger"))
    with session_scope(ctx.sessions) as s:
        with pytest.raises(InvalidRequestError) as refused:
            dips.request_dip(
                s, aip_id=aip_id, tenant_id=None, requested_by="reader", cache_bytes=10
            )
    assert refused.value.context["rule"] == "dip-too-large"
    assert "does not fit the DIP cache (10 bytes)" in refused.value.message

    dip_id = ask(ctx, aip_id)
    assert recall.run_batch(ctx).ready == [dip_id]
    assert status(ctx, dip_id).state == "ready"
    dispose(ctx, aip_id)
    # Before any cache sweep: the status already says the DIP is gone, and why.
    view = status(ctx, dip_id)
    assert view.state == "expired" and view.reason == "its AIP was disposed of", view
    assert view.download_url is None
    with session_scope(ctx.sessions) as s:
        [listed] = [v for v in dips.list_dips(s, None) if v.dip_id == dip_id]
    assert listed.state == "expired"
