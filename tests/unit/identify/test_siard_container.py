"""The SIARD container check: fido's ZIP answer refined by the zip's central directory.

fido 1.6.1's container signatures predate SIARD 2.2 and cannot see the empty
``header/siardversion/2.1/`` folder, so both arrive as "ZIP Format"; the
check reads the listing at the end of the zip (never its content) and names
the SIARD version with the evidence. Archives are built here entry by entry,
so each rule of the check is shown by the smallest zip that tests it.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from preservation.identify import FidoEngine, containers, identify_files
from preservation.identify.containers import has_zip_end, siard_container

NS2 = "http://www.bar.admin.ch/xmlns/siard/2/metadata.xsd"


def metadata(version: str = "2.2", namespace: str = NS2) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<siardArchive xmlns="{namespace}" version="{version}"><dbname>x</dbname></siardArchive>'
    )


def write_zip(path: Path, entries: Iterable[tuple[str, str]], *, prefix: bytes = b"") -> Path:
    """A zip of (name, text) entries in order; a name ending in ``/`` is a folder entry."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in entries:
            archive.writestr(name, text)
    if prefix:
        path.write_bytes(prefix + path.read_bytes())
    return path


def siard(path: Path, version: str = "2.2", *, extra: Iterable[tuple[str, str]] = ()) -> Path:
    return write_zip(
        path,
        [
            (f"header/siardversion/{version}/", ""),
            ("content/schema0/table0/table0.xml", "<table/>"),
            *extra,
            ("header/metadata.xml", metadata(version)),
        ],
    )


@pytest.fixture(scope="module")
def engine() -> FidoEngine:
    return FidoEngine()


@pytest.mark.parametrize(("version", "puid"), [("2.2", "fmt/1777"), ("2.1", "fmt/1196")])
def test_a_siard_version_folder_turns_fidos_zip_into_siard(
    engine: FidoEngine, tmp_path: Path, version: str, puid: str
) -> None:
    found = engine.identify(siard(tmp_path / "db.siard", version))
    assert found.puids == (puid,)
    assert found.basis == "container" and found.known
    assert found.format_version == version and "SIARD" in (found.format_name or "")
    assert found.warning == f"container check: header/siardversion/{version}/"


def test_siard_2_0_by_its_folder_or_fidos_own_namespace_signature(
    engine: FidoEngine, tmp_path: Path
) -> None:
    by_folder = siard(tmp_path / "folder.siard", "2.0")
    assert engine.identify(by_folder).puids == ("fmt/995",)
    by_namespace = write_zip(
        tmp_path / "ns.siard",
        [
            (
                "header/metadata.xml",
                metadata("2.0", "http://www.bar.admin.ch/xmlns/siard/2.0/metadata.xsd"),
            )
        ],
    )
    found = engine.identify(by_namespace)
    assert found.puids == ("fmt/995",) and found.warning is None  # fido's own answer


def test_without_a_version_folder_the_metadata_claims_the_version(
    engine: FidoEngine, tmp_path: Path
) -> None:
    """A 2.2 archive missing its folder is still SIARD, so validation can say what is wrong."""
    path = write_zip(tmp_path / "nofolder.siard", [("header/metadata.xml", metadata("2.2"))])
    found = engine.identify(path)
    assert found.puids == ("fmt/1777",)
    assert found.warning == 'container check: header/metadata.xml (version="2.2")'


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([("readme.txt", "hello")], id="plain-zip"),
        pytest.param([("header/siardversion/2.2/", "")], id="folder-without-metadata"),
        pytest.param(
            [("header/siardversion/9.9/", ""), ("header/metadata.xml", "<x/>")],
            id="unknown-version",
        ),
        pytest.param(
            [("x/header/siardversion/2.2/", ""), ("x/header/metadata.xml", metadata())],
            id="names-deeper-down",
        ),
        pytest.param(
            [("notes.txt", "header/siardversion/2.2/ header/metadata.xml")], id="names-in-content"
        ),
        pytest.param([("header/metadata.xml", "<not-siard/>")], id="metadata-of-something-else"),
    ],
)
def test_other_zips_stay_zips(
    engine: FidoEngine, tmp_path: Path, entries: list[tuple[str, str]]
) -> None:
    found = engine.identify(write_zip(tmp_path / "other.zip", entries))
    assert found.puids == ("x-fmt/263",) and found.warning is None


def test_a_zip64_end_record_is_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big archives end in ZIP64 records; the listing is found through them."""
    with monkeypatch.context() as patched:
        patched.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # zip64 end records past 2 entries
        path = siard(tmp_path / "zip64.siard")
    data = path.read_bytes()
    assert data.rfind(b"PK\x06\x06") > data.rfind(b"PK\x01\x02")  # a ZIP64 end record
    match = siard_container(path)
    assert match is not None and match.puid == "fmt/1777"


def test_bytes_before_the_zip_do_not_hide_it(engine: FidoEngine, tmp_path: Path) -> None:
    """Bytes in front (a stub): fido's signatures miss the zip, the listing does not."""
    stub = bytes(range(7, 250)) * 20
    for name in ("db.siard", "db.bin"):
        plain = siard(tmp_path / f"plain-{name}")
        path = tmp_path / name
        path.write_bytes(stub + plain.read_bytes())
        found = engine.identify(path)
        assert found.puids == ("fmt/1777",), name
        assert found.warning == "container check: header/siardversion/2.2/"


def test_the_listing_is_read_in_pieces_and_every_split_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 1 KiB pieces, the two names are found wherever a piece boundary cuts them."""
    monkeypatch.setattr(containers, "_CHUNK", 1024)
    lobs = [(f"content/schema0/table0/lob2/record{i}.bin", "") for i in range(60)]
    for position in range(0, 61, 3):
        entries = [*lobs[:position], ("header/siardversion/2.2/", ""), *lobs[position:]]
        entries.append(("header/metadata.xml", metadata()))
        path = write_zip(tmp_path / f"split-{position}.siard", entries)
        match = siard_container(path)
        assert match is not None and match.version == "2.2", position


@pytest.mark.parametrize("keep", [10, 0.5, -30])
def test_a_cut_off_siard_is_siard_by_its_name_only(
    engine: FidoEngine, tmp_path: Path, keep: float
) -> None:
    """No end record, no listing: a ``.siard`` stays SIARD (so validation says what is wrong).

    A ``.zip`` cut the same way is whatever fido says: nothing claims it is SIARD.
    """
    whole = siard(tmp_path / "whole.siard").read_bytes()
    cut = whole[: int(len(whole) * keep) if isinstance(keep, float) else keep]
    broken, zipped = tmp_path / "broken.siard", tmp_path / "broken.zip"
    broken.write_bytes(cut)
    zipped.write_bytes(cut)
    assert siard_container(broken) is None
    found = engine.identify(broken)  # never raises
    assert found.error is None and found.basis == "extension"
    assert found.puids == ("fmt/1777", "fmt/1196", "fmt/995", "fmt/161")
    assert found.warning and "container check: no zip listing to read" in found.warning
    other = engine.identify(zipped)
    assert other.error is None and not set(other.puids) & {"fmt/1777", "fmt/1196"}


def test_damaged_content_with_an_intact_listing_is_still_siard(tmp_path: Path) -> None:
    path = siard(
        tmp_path / "damaged.siard", extra=[("content/schema0/table0/lob1/r.bin", "x" * 500)]
    )
    data = bytearray(path.read_bytes())
    at = data.index(b"x" * 500)
    data[at : at + 100] = bytes(100)
    path.write_bytes(bytes(data))
    match = siard_container(path)
    assert match is not None and match.puid == "fmt/1777"


def test_unidentified_files_cost_one_small_read(engine: FidoEngine, tmp_path: Path) -> None:
    text = tmp_path / "notes"
    text.write_bytes(bytes(range(7, 250)) * 97)
    assert not has_zip_end(text)
    found = engine.identify(text)
    assert found.puids == () and found.basis == "none"


def test_the_check_is_cheap(tmp_path: Path) -> None:
    """Central directory only: a 20,000-entry listing in milliseconds, not a ZipInfo per entry."""
    lobs = [(f"content/schema0/table0/lob2/record{i}.bin", "") for i in range(20_000)]
    path = siard(tmp_path / "many.siard", extra=lobs)
    started = time.perf_counter()
    for _ in range(10):
        assert siard_container(path) is not None
    per_file = (time.perf_counter() - started) / 10
    assert per_file < 0.05, per_file
    assert os.path.getsize(path) > 1_000_000


def test_in_the_worker_pool(tmp_path: Path) -> None:
    """What ingest runs: the pool's worker processes make the same call."""
    paths = [siard(tmp_path / "a.siard"), siard(tmp_path / "b.siard", "2.1")]
    results = identify_files(paths, workers=1)
    assert [r.puids for r in results] == [("fmt/1777",), ("fmt/1196",)]
    assert all(r.warning and r.warning.startswith("container check: ") for r in results)
