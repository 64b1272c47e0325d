"""`tape import` and `tape export`: cartridges in and out through a real library's I/E slots.

The real library is the fake ``mtx`` (``fake_mtx``) behind a site file, as in
``test_site_file``; the commands run through the CLI (``CliRunner``) as an
operator runs them, with ``PRESERVATION_HOME`` and ``PRESERVATION_SITE_FILE``
in the environment. The emulated library's behaviour (no import, export
moves the cartridge's folder) and ``--force`` run on the default site pair.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import Cartridge, CartridgeState, CopyStatus, TapeCopy
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConflictError, StorageError
from preservation.storage import service
from preservation.storage.inventory import export_cartridge, import_cartridges
from preservation.storage.ltfs import LTFSVolume
from preservation.storage.recovery import repair
from preservation.storage.sites import build_sites

from .fake_mtx import DriveBays, FakeLibrary, install

MIB = 1 << 20
POOL = ["LIB001L9", "LIB002L9"]
SITE_FILE = {
    "sites": [
        {"name": "site-a", "library": "emulated", "drives": 1, "cartridges": 2},
        {
            "name": "site-b",
            "library": "scsi",
            "changer": "/dev/sg3",
            "drives": ["/dev/nst0", "/dev/nst1"],
            "capacity": 64 * MIB,
        },
    ]
}
# Storage slots 1-4, import/export slots 5 and 6 (mtx numbers I/E slots after the others).
IE_FIRST = 5


def run(*args: str, code: int = 0) -> Any:
    """The CLI with --json: its parsed stdout, the exit code checked."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return json.loads(result.stdout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "var"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(32 * MIB))
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "2")
    return home


@pytest.fixture
def fake(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLibrary:
    """A real site-b over the fake mtx: two pool cartridges, two free slots, two I/E slots."""
    state = tmp_path / "library.json"
    library = FakeLibrary.create(state, drives=2, slots=[*POOL, None, None], ie_slots=[None, None])
    install(tmp_path / "bin", state, monkeypatch)
    site_file = tmp_path / "sites.json"
    site_file.write_text(json.dumps(SITE_FILE), encoding="utf-8")
    monkeypatch.setenv("PRESERVATION_SITE_FILE", str(site_file))
    run("tape", "ls")  # the archive's first start registers the pool
    return library


def put_in_ie(fake: FakeLibrary, *barcodes: str | None) -> None:
    """The operator puts cartridges in the mail slots (their door), in slot order."""
    state = fake.read()
    ie = [s for s in state["slots"] if s["ie"]]
    for slot, barcode in zip(ie, barcodes, strict=False):
        slot["barcode"] = barcode
    fake.update(slots=state["slots"])


def set_state(barcode: str, state: CartridgeState) -> None:
    ctx = open_context(Settings())
    try:
        with session_scope(ctx.sessions) as session:
            session.execute(
                update(Cartridge).where(Cartridge.barcode == barcode).values(state=state)
            )
    finally:
        ctx.close()


def rows(site: str | None = None) -> dict[str, dict[str, Any]]:
    listed = run("tape", "ls", *(["--site", site] if site else []))
    return {c["barcode"]: c for c in listed}


# -- import -------------------------------------------------------------------------------------


def test_import_registers_new_cartridges_scratch_and_unverified(
    home: Path, fake: FakeLibrary
) -> None:
    assert set(rows("site-b")) == set(POOL)
    put_in_ie(fake, "NEW001L9", "NEW002L9")

    done = run("tape", "import", "--site", "site-b")
    assert done["ok"] and done["left"] == []
    assert done["imported"] == [
        {"barcode": "NEW001L9", "slot": 3, "state": "scratch", "new": True, "unverified": True},
        {"barcode": "NEW002L9", "slot": 4, "state": "scratch", "new": True, "unverified": True},
    ]
    assert [fake.slot(n) for n in range(1, 7)] == [*POOL, "NEW001L9", "NEW002L9", None, None]
    assert ["transfer", "5", "3"] in fake.moves() and ["transfer", "6", "4"] in fake.moves()
    listed = rows("site-b")
    assert {b: r["state"] for b, r in listed.items()} == dict.fromkeys(
        [*POOL, "NEW001L9", "NEW002L9"], "scratch"
    )
    assert listed["NEW001L9"]["capacity"] == 64 * MIB  # the site file's, as at start-up
    unverified = home / "tape" / "site-b" / "unverified"
    assert {"NEW001L9", "NEW002L9"} <= {p.name for p in unverified.iterdir()}

    # Nothing waiting: nothing to do, and said so.
    assert run("tape", "import", "--site", "site-b") == {
        "site": "site-b",
        "ok": True,
        "imported": [],
        "left": [],
    }
    text = CliRunner().invoke(app, ["tape", "import", "--site", "site-b"])
    assert text.exit_code == 0 and "no cartridge waiting" in text.stdout


def test_import_leaves_what_cannot_join_the_pool(home: Path, fake: FakeLibrary) -> None:
    # A cleaning cartridge, and a label the library already holds.
    put_in_ie(fake, "CLN001L1", "LIB001L9")
    done = run("tape", "import", "--site", "site-b", code=1)
    assert done["imported"] == []
    assert [(c["barcode"], c["ie_slot"], c["rule"]) for c in done["left"]] == [
        ("CLN001L1", 5, "pool-cartridge"),
        ("LIB001L9", 6, "unique-barcode"),
    ]
    assert fake.moves() == []

    # Site A's cartridge is site A's; and with one storage slot free, one new one fits.
    put_in_ie(fake, "A00001L9", "NEW001L9")
    state = fake.read()
    state["slots"][3]["barcode"] = "OLD009L9"  # slot 4 taken: one free slot left
    fake.update(slots=state["slots"])
    done = run("tape", "import", "--site", "site-b", code=1)
    assert [c["barcode"] for c in done["imported"]] == ["NEW001L9"]
    assert [(c["barcode"], c["rule"]) for c in done["left"]] == [
        ("A00001L9", "one-site-per-cartridge")
    ]
    assert rows()["A00001L9"]["site"] == "site-a"

    put_in_ie(fake, "NEW002L9")
    done = run("tape", "import", "--site", "site-b", code=1)
    assert done["imported"] == []
    assert [(c["barcode"], c["rule"]) for c in done["left"]] == [("NEW002L9", "free-storage-slot")]
    text = CliRunner().invoke(app, ["tape", "import", "--site", "site-b"])
    assert text.exit_code == 1 and "no free storage slot" in text.stderr


def test_import_on_an_emulated_site_or_an_unknown_one_is_refused(
    home: Path, fake: FakeLibrary
) -> None:
    refused = run("tape", "import", "--site", "site-a", code=2)
    assert refused["error"] == "InvalidRequestError" and refused["rule"] == "real-library"
    assert "PRESERVATION_TAPE_MEDIA" in refused["message"]
    unknown = run("tape", "import", "--site", "site-z", code=1)
    assert unknown["error"] == "NotFoundError" and unknown["rule"] == "site"


def _write_foreign_volume(fake: FakeLibrary, bays: DriveBays, barcode: str) -> list[bytes | None]:
    """Another archive's LTFS volume on ``barcode`` (loaded by hand in drive 0, then removed)."""
    fake.update(drives=[{"barcode": barcode, "source": 3}, None])
    foreign = bays.device("/dev/nst0")
    foreign.load()
    LTFSVolume.format(foreign, barcode).unmount()
    foreign.unload()
    fake.update(drives=[None, None])
    return list(bays.tapes[barcode].parts[1])


def test_an_imported_tape_holding_data_is_never_written(home: Path, fake: FakeLibrary) -> None:
    bays = DriveBays(fake)
    before = _write_foreign_volume(fake, bays, "OLD001L9")
    put_in_ie(fake, "OLD001L9")
    ctx = open_context(Settings())
    try:
        site = build_sites(ctx, durability="none", device_factory=bays.device)["site-b"]
        outcome = import_cartridges(ctx, "site-b")
        assert outcome.barcodes == ["OLD001L9"] and outcome.ok
        with site.lock, pytest.raises(StorageError, match="OLD001L9 was taken as scratch"):
            site.open_volume("OLD001L9", format_blank=True)
        assert bays.tapes["OLD001L9"].parts[1] == before
        assert fake.slot(3) == "OLD001L9"  # back in the slot it was imported to
        site.release_all()
    finally:
        ctx.close()


# -- export -------------------------------------------------------------------------------------


def test_export_puts_a_retired_cartridge_in_an_ie_slot(home: Path, fake: FakeLibrary) -> None:
    before = rows("site-b")["LIB001L9"]["updated_at"]
    set_state("LIB001L9", CartridgeState.RETIRED)
    done = run("tape", "export", "LIB001L9")
    assert {k: done[k] for k in ("barcode", "site", "library", "ie_slot", "state")} == {
        "barcode": "LIB001L9",
        "site": "site-b",
        "library": "scsi",
        "ie_slot": IE_FIRST,
        "state": "retired",
    }
    assert not done["already"] and not done["forced"]
    assert fake.slot(1) is None and fake.slot(IE_FIRST) == "LIB001L9"
    assert ["transfer", "1", "5"] in fake.moves()
    assert not (home / "tape" / "site-b" / "unverified" / "LIB001L9").exists()
    row = rows("site-b")["LIB001L9"]  # the row stays, retired; updated_at says when it left
    assert row["state"] == "retired" and row["updated_at"] > before
    assert row["updated_at"] == done["exported_at"]

    again = run("tape", "export", "LIB001L9")  # a rerun only records it
    assert again["already"] and again["ie_slot"] == IE_FIRST
    text = CliRunner().invoke(app, ["tape", "export", "LIB001L9"])
    assert text.exit_code == 0 and "already in import/export slot 5" in text.stdout


def test_export_refusals(home: Path, fake: FakeLibrary) -> None:
    scratch = run("tape", "export", "LIB002L9", code=1)
    assert scratch["error"] == "ConflictError" and scratch["rule"] == "retired-before-export"
    assert scratch["state"] == "scratch"
    unknown = run("tape", "export", "ZZZ001L9", code=1)
    assert unknown["error"] == "NotFoundError" and unknown["rule"] == "catalogued"
    set_state("LIB002L9", CartridgeState.FULL)
    full = run("tape", "export", "LIB002L9", code=1)
    assert full["rule"] == "retired-before-export" and "--force" in full["message"]

    # Every mail slot full: nothing moves, and --force retires nothing either.
    put_in_ie(fake, "NEW001L9", "NEW002L9")
    busy = run("tape", "export", "LIB002L9", "--force", code=1)
    assert busy["rule"] == "free-ie-slot" and rows("site-b")["LIB002L9"]["state"] == "full"
    set_state("LIB002L9", CartridgeState.RETIRED)
    busy = run("tape", "export", "LIB002L9", code=1)
    assert busy["error"] == "ConflictError" and busy["rule"] == "free-ie-slot"
    assert "NEW001L9" in busy["message"] and fake.slot(2) == "LIB002L9"
    assert fake.moves() == []

    # Taken out by hand: the catalogue and the library disagree, and it is said.
    state = fake.read()
    state["slots"][1]["barcode"] = None
    fake.update(slots=state["slots"])
    gone = run("tape", "export", "LIB002L9", code=1)
    assert gone["error"] == "NotFoundError" and gone["rule"] == "cartridge-in-library"
    assert "/dev/sg3" in gone["message"]


def test_force_on_a_real_library_retires_then_moves(home: Path, fake: FakeLibrary) -> None:
    set_state("LIB002L9", CartridgeState.FULL)  # nothing live on it: no copy to find elsewhere
    done = run("tape", "export", "LIB002L9", "--force")
    assert done["forced"] and done["state"] == "retired" and done["ie_slot"] == IE_FIRST
    assert fake.slot(2) is None and fake.slot(IE_FIRST) == "LIB002L9"
    text = CliRunner().invoke(app, ["tape", "export", "LIB002L9"])
    assert text.exit_code == 0 and "already in import/export slot 5" in text.stdout


def test_emulated_export_moves_the_folder_and_start_up_does_not_refill_it(home: Path) -> None:
    run("tape", "ls")
    set_state("A00002L9", CartridgeState.RETIRED)
    done = run("tape", "export", "A00002L9")
    exported = home / "tape" / "site-a" / "exported" / "A00002L9"
    assert done["library"] == "emulated" and done["path"] == str(exported)
    assert done["ie_slot"] is None and done["state"] == "retired"
    assert (exported / "filedebug_tc_conf.xml").is_file()
    assert not (home / "tape" / "site-a" / "cartridges" / "A00002L9").exists()

    listed = rows("site-a")  # another start: the barcode is not added back blank
    assert listed["A00002L9"]["state"] == "retired"
    assert not (home / "tape" / "site-a" / "cartridges" / "A00002L9").exists()
    assert run("tape", "export", "A00002L9")["already"]
    assert run("tape", "import", "--site", "site-a", code=2)["rule"] == "real-library"
    missing = run("tape", "export", "B00009L9", code=1)
    assert missing["rule"] == "catalogued"


def test_tape_import_and_export_never_make_an_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESERVATION_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (
        ["tape", "import", "--site", "site-b"],
        ["tape", "export", "A00001L9"],
        ["media", "migrate", "--site", "site-a", "--from", "L7", "--to", "L9"],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 3, (command, result.output)
        assert "no archive at" in result.stderr
        assert list(tmp_path.iterdir()) == [], command


# -- export --force -----------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    settings = Settings(home=tmp_path / "var", tape_capacity=32 * MIB, tape_cartridges_per_site=3)
    context = open_context(settings)
    build_sites(context, durability="none")
    yield context
    context.close()


def _stored_version(ctx: Context) -> int:
    """One AIP version, verified at both sites and committed (the AIP active)."""
    staging = ctx.settings.staging_dir / "aip1"
    staging.mkdir(parents=True)
    tar_path = staging / "v1.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bag1/data/payload.bin")
        info.size = 300_000
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    with session_scope(ctx.sessions) as s:
        sip = catalog.create_sip(s, tenant_id="t1", name="bag1", source_path=str(staging))
        aip = catalog.create_aip(s, sip)
        version = catalog.create_aip_version(s, aip, 1)
        version.staging_path = str(tar_path)
        version.tar_sha256 = hashlib.sha256(tar_path.read_bytes()).hexdigest()
        version.tar_size = tar_path.stat().st_size
        version_id = version.id
    for site in ctx.settings.sites:
        service.store_version(ctx, version_id, site)
    assert service.commit_version(ctx, version_id)
    service.release_drives(ctx)
    return version_id


def _copy(ctx: Context, version_id: int, site: str) -> TapeCopy:
    with session_scope(ctx.sessions) as s:
        copy = s.scalars(
            select(TapeCopy).where(TapeCopy.aip_version_id == version_id, TapeCopy.site == site)
        ).one()
        s.expunge(copy)
        return copy


def test_force_exports_a_full_cartridge_only_when_the_other_site_holds_it(ctx: Context) -> None:
    version_id = _stored_version(ctx)
    a, b = _copy(ctx, version_id, "site-a"), _copy(ctx, version_id, "site-b")
    with session_scope(ctx.sessions) as s:
        s.get_one(Cartridge, a.barcode).state = CartridgeState.FULL
        s.get_one(TapeCopy, b.id).status = CopyStatus.FAILED

    with pytest.raises(ConflictError) as refused:
        export_cartridge(ctx, a.barcode)
    assert refused.value.context["rule"] == "retired-before-export"
    with pytest.raises(ConflictError) as refused:
        export_cartridge(ctx, a.barcode, force=True)
    assert refused.value.context["rule"] == "verified-copy-elsewhere"
    assert [m["site"] for m in refused.value.context["missing"]] == ["site-b"]
    with session_scope(ctx.sessions) as s:
        assert s.get_one(Cartridge, a.barcode).state == CartridgeState.FULL  # nothing changed
        s.get_one(TapeCopy, b.id).status = CopyStatus.VERIFIED

    done = export_cartridge(ctx, a.barcode, force=True)
    assert done["forced"] and done["state"] == "retired" and done["library"] == "emulated"
    assert Path(done["path"]).name == a.barcode and Path(done["path"]).parent.name == "exported"

    # The repair writes the version again at site A, from site B's copy.
    report = repair(ctx)
    assert report.ok
    [rebuilt] = report.rebuilt
    assert rebuilt["site"] == "site-a" and rebuilt["barcode"] != a.barcode
    assert report.discarded == [a.id]
