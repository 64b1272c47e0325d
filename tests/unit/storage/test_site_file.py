"""The site file: one emulated and one real (mtx + st) site built by build_sites, and its errors."""

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
from sqlalchemy import select

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIPVersion, Cartridge, CartridgeState
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConfigurationError, SiteUnavailableError, StorageError
from preservation.storage import service
from preservation.storage.changer import ScsiLibrary
from preservation.storage.library import EmulatedLibrary
from preservation.storage.ltfs import LTFSVolume
from preservation.storage.siteconfig import site_specs
from preservation.storage.sites import build_sites, get_site

from .fake_mtx import DriveBays, FakeLibrary, install

MIB = 1 << 20
SCSI_BARCODES = ["LIB001L9", "LIB002L9", "LIB003L9"]
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


def _settings(home: Path, site_file: Path | None, **kw: Any) -> Settings:
    return Settings(
        home=home, site_file=site_file, tape_capacity=32 * MIB, tape_cartridges_per_site=4, **kw
    )


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLibrary:
    state = tmp_path / "library.json"
    library = FakeLibrary.create(state, drives=2, slots=[*SCSI_BARCODES, None], ie_slots=[None])
    install(tmp_path / "bin", state, monkeypatch)
    return library


@pytest.fixture
def ctx(tmp_path: Path, fake: FakeLibrary) -> Iterator[Context]:
    site_file = _write(tmp_path / "sites.json", SITE_FILE)
    context = open_context(_settings(tmp_path / "var", site_file))
    yield context
    context.close()


def test_one_emulated_and_one_scsi_site(ctx: Context, fake: FakeLibrary) -> None:
    bays = DriveBays(fake)
    sites = build_sites(ctx, durability="none", device_factory=bays.device)
    emulated, real = sites["site-a"].library, sites["site-b"].library
    assert isinstance(emulated, EmulatedLibrary) and isinstance(real, ScsiLibrary)
    assert emulated.barcodes() == ["A00001L9", "A00002L9"]
    assert real.drive_paths == ["/dev/nst0", "/dev/nst1"]
    with session_scope(ctx.sessions) as session:
        rows = {
            c.barcode: (c.site, c.state, c.capacity) for c in session.scalars(select(Cartridge))
        }
    assert rows == {
        "A00001L9": ("site-a", CartridgeState.SCRATCH, 32 * MIB),
        "A00002L9": ("site-a", CartridgeState.SCRATCH, 32 * MIB),
        **{b: ("site-b", CartridgeState.SCRATCH, 64 * MIB) for b in SCSI_BARCODES},
    }
    assert real.unverified() == SCSI_BARCODES  # registered without a load, checked at first

    site = sites["site-b"]
    data = os.urandom(2 * MIB + 5)
    with site.lock:
        volume, formatted = site.open_volume("LIB002L9", format_blank=True)
        volume.write_file("/t1/aip/v1.tar", [data], size=len(data))
        volume.sync()
        site.library.flush("LIB002L9")
        assert formatted and volume.read_bytes("/t1/aip/v1.tar") == data
    assert fake.drive(0) == "LIB002L9" and fake.slot(2) is None
    assert real.unverified() == ["LIB001L9", "LIB003L9"]
    site.release_all()
    assert fake.slot(2) == "LIB002L9" and fake.drive(0) is None

    again = build_sites(ctx, durability="none", device_factory=bays.device)  # a worker's start
    assert isinstance(again["site-b"].library, ScsiLibrary)
    assert again["site-b"].library.unverified() == ["LIB001L9", "LIB003L9"]
    with again["site-b"].lock:
        volume, formatted = again["site-b"].open_volume("LIB002L9")
        assert not formatted and volume.read_bytes("/t1/aip/v1.tar") == data
    again["site-b"].release_all()
    assert fake.slot(2) == "LIB002L9"


def _foreign_volume(fake: FakeLibrary, bays: DriveBays, slot: int) -> list[bytes | None]:
    """Another archive's LTFS volume on the cartridge in ``slot``; its data partition."""
    slots = fake.read()["slots"]
    barcode = slots[slot - 1]["barcode"]
    slots[slot - 1]["barcode"] = None
    fake.update(slots=slots, drives=[{"barcode": barcode, "source": slot}, None])
    foreign = bays.device("/dev/nst0")
    foreign.load()
    LTFSVolume.format(foreign, barcode).unmount()
    foreign.unload()
    slots[slot - 1]["barcode"] = barcode
    fake.update(slots=slots, drives=[None, None])
    return list(bays.tapes[barcode].parts[1])


def test_an_unknown_cartridge_holding_data_is_never_written(
    ctx: Context, fake: FakeLibrary
) -> None:
    bays = DriveBays(fake)
    before = _foreign_volume(fake, bays, 3)

    site = build_sites(ctx, durability="none", device_factory=bays.device)["site-b"]
    with site.lock, pytest.raises(StorageError, match="LIB003L9 was taken as scratch"):
        site.open_volume("LIB003L9", format_blank=True)
    assert bays.tapes["LIB003L9"].parts[1] == before
    assert fake.slot(3) == "LIB003L9" and site.library.mounted() == {}
    site.release_all()


def _version(ctx: Context, size: int) -> int:
    """An AIP version whose staging tar holds ``size`` random bytes, ready to store."""
    staging = ctx.settings.staging_dir / "aip1"
    staging.mkdir(parents=True)
    tar_path = staging / "v1.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bag1/data/payload.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    with session_scope(ctx.sessions) as s:
        sip = catalog.create_sip(s, tenant_id="t1", name="bag1", source_path=str(staging))
        aip = catalog.create_aip(s, sip)
        version = catalog.create_aip_version(s, aip, 1)
        version.staging_path = str(tar_path)
        version.tar_sha256 = hashlib.sha256(tar_path.read_bytes()).hexdigest()
        version.tar_size = tar_path.stat().st_size
        return version.id


def test_the_store_writes_both_sites_and_passes_over_a_foreign_cartridge(
    ctx: Context, fake: FakeLibrary
) -> None:
    bays = DriveBays(fake)
    before = _foreign_volume(fake, bays, 1)
    build_sites(ctx, durability="none", device_factory=bays.device)
    version_id = _version(ctx, 1_500_000)
    copies = {site: service.store_version(ctx, version_id, site) for site in ctx.settings.sites}
    assert service.commit_version(ctx, version_id)
    service.release_drives(ctx)
    assert copies["site-a"].barcode == "A00001L9"
    assert copies["site-b"].barcode == "LIB002L9"  # LIB001L9 holds another archive's data
    assert bays.tapes["LIB001L9"].parts[1] == before
    with session_scope(ctx.sessions) as session:
        states = {c.barcode: c.state for c in session.scalars(select(Cartridge))}
    assert states["LIB001L9"] == CartridgeState.SUSPECT  # never written again
    assert states["LIB002L9"] == CartridgeState.FILLING
    assert [fake.slot(n) for n in (1, 2, 3)] == SCSI_BARCODES
    library = get_site(ctx, "site-b").library
    volume = LTFSVolume.mount(library.mount("LIB002L9"), "LIB002L9", read_only=True)
    with session_scope(ctx.sessions) as session:
        version = session.get_one(AIPVersion, version_id)
        staging, digest = Path(version.staging_path or ""), version.tar_sha256
    data = volume.read_bytes(copies["site-b"].path)
    assert hashlib.sha256(data).hexdigest() == digest
    if staging.is_file():
        assert data == staging.read_bytes()
    library.close()


def test_a_changer_that_cannot_be_read_leaves_the_other_site_working(
    ctx: Context, fake: FakeLibrary
) -> None:
    fake.update(fail={"status": "mtx: cannot open SCSI device '/dev/sg3' - No such device"})
    sites = build_sites(ctx, durability="none", device_factory=DriveBays(fake).device)
    with session_scope(ctx.sessions) as session:
        assert set(session.scalars(select(Cartridge.site))) == {"site-a"}
    with sites["site-b"].lock, pytest.raises(SiteUnavailableError, match="No such device"):
        sites["site-b"].open_volume("LIB001L9", format_blank=True)
    fake.update(fail={})
    build_sites(ctx, durability="none", device_factory=DriveBays(fake).device)
    with session_scope(ctx.sessions) as session:
        assert len(list(session.scalars(select(Cartridge).where(Cartridge.site == "site-b")))) == 3


def test_without_a_site_file_every_site_is_emulated_as_before(tmp_path: Path) -> None:
    specs = site_specs(_settings(tmp_path, None, tape_drives_per_site=3, tape_media="L8"))
    assert [(s.name, s.library, s.drive_count, s.cartridges, s.media) for s in specs] == [
        ("site-a", "emulated", 3, 4, "L8"),
        ("site-b", "emulated", 3, 4, "L8"),
    ]


def test_the_site_file_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "sites.json", SITE_FILE)
    monkeypatch.setenv("PRESERVATION_SITE_FILE", str(path))
    assert Settings().site_file == path
    specs = site_specs(Settings(home=tmp_path))
    assert [(s.name, s.library) for s in specs] == [("site-a", "emulated"), ("site-b", "scsi")]
    assert specs[1].changer == "/dev/sg3" and specs[1].capacity == 64 * MIB


def _with(change: dict[str, Any]) -> dict[str, Any]:
    document = json.loads(json.dumps(SITE_FILE))
    document["sites"][1].update(change)
    return document


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (_with({"drives": ["/dev/st0"]}), "at sites/1/drives/0: '/dev/st0' does not match"),
        (_with({"drives": []}), "at sites/1/drives: [] should be non-empty"),
        (_with({"changer": None}), "at sites/1/changer: None is not of type 'string'"),
        (_with({"cartridges": 8}), "at sites/1: Additional properties are not allowed"),
        (_with({"library": "fibre"}), "at sites/1/library: 'fibre' is not one of"),
        ({"sites": [{"name": "site-a", "library": "scsi"}]}, "'changer' is a required property"),
        ({"site": []}, "at (top): 'sites' is a required property"),
    ],
)
def test_a_bad_site_file_names_the_file_and_the_place(
    tmp_path: Path, document: Any, where: str
) -> None:
    path = _write(tmp_path / "sites.json", document)
    with pytest.raises(ConfigurationError) as caught:
        site_specs(_settings(tmp_path, path))
    message = str(caught.value)
    assert message.startswith(f"{path}: breaks sites.schema.json: ")
    assert where in message
    assert caught.value.path == str(path)


def test_site_names_must_be_the_settings_sites(tmp_path: Path) -> None:
    document = json.loads(json.dumps(SITE_FILE))
    document["sites"].reverse()
    path = _write(tmp_path / "sites.json", document)
    with pytest.raises(ConfigurationError, match=r"at sites: the site file names \['site-b'"):
        site_specs(_settings(tmp_path, path))
    assert [s.name for s in site_specs(_settings(tmp_path, path, sites=("site-b", "site-a")))] == [
        "site-b",
        "site-a",
    ]


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "site file not found"), ("{not json", "not readable JSON")],
)
def test_a_missing_or_unreadable_site_file(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "sites.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=match):
        site_specs(_settings(tmp_path, path))


def test_one_changer_per_site(tmp_path: Path) -> None:
    document = json.loads(json.dumps(SITE_FILE))
    document["sites"][0] = {**document["sites"][1], "name": "site-a"}
    path = _write(tmp_path / "sites.json", document)
    with pytest.raises(ConfigurationError, match="at sites/1/changer: /dev/sg3 is already"):
        site_specs(_settings(tmp_path, path))


def test_the_old_backend_setting_points_at_the_site_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path, None, tape_backend="mypackage:RealDrive")
    with pytest.raises(ConfigurationError, match="PRESERVATION_SITE_FILE"):
        site_specs(settings)
