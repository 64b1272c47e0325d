"""preservation/siard/bag.py: metadata read as the reader reads it; bombs, damage: SiardError."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from preservation.errors import SiardError
from preservation.siard import reader
from preservation.siard.bag import bag_siard
from tests.unit.siard.test_validate import central_header, with_overlapping_entries


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from preservation.siard.export import export_database

    where = tmp_path_factory.mktemp("bag")
    source = where / "source.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "one"), (2, "two")])
    dest = where / "small.siard"
    export_database(f"sqlite:///{source}", dest)
    return dest


def test_a_sound_archive_is_bagged(small: Path, tmp_path: Path) -> None:
    bag = bag_siard(small, tmp_path / "bag")
    assert (bag / "data" / "small.siard").read_bytes() == small.read_bytes()


def test_overlapping_entries_are_refused(small: Path, tmp_path: Path) -> None:
    names = [f"content/schema0/table0/lob9/record{i}.txt" for i in range(3)]
    path = with_overlapping_entries(small, tmp_path / "overlap.siard", names, 50_000)
    with pytest.raises(SiardError) as caught:
        bag_siard(path, tmp_path / "bag")
    assert caught.value.rule == "zip" and "share bytes" in caught.value.message
    assert not (tmp_path / "bag").exists()


@pytest.mark.parametrize(("flag", "method"), [(0x01, None), (0, 99)])
def test_encrypted_or_unknown_method_metadata_is_a_zip_error(
    small: Path, tmp_path: Path, flag: int, method: int | None
) -> None:
    data = bytearray(small.read_bytes())
    at = central_header(bytes(data), "header/metadata.xml")
    data[at + 8] |= flag
    if method is not None:
        struct.pack_into("<H", data, at + 10, method)
    path = tmp_path / "odd.siard"
    path.write_bytes(bytes(data))
    with pytest.raises(SiardError) as caught:
        bag_siard(path, tmp_path / "bag")
    assert (caught.value.rule, caught.value.entry) == ("zip", "header/metadata.xml")


def test_metadata_read_is_bounded(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_METADATA_BYTES", 100)
    with pytest.raises(SiardError) as caught:
        bag_siard(small, tmp_path / "bag")
    assert caught.value.rule == "zip" and "more than 100 bytes" in caught.value.message


def test_the_payload_is_where_payload_name_says(small: Path, tmp_path: Path) -> None:
    from preservation.siard.bag import payload_name

    other = tmp_path / "x.zip"
    other.write_bytes(small.read_bytes())
    assert payload_name(small) == "data/small.siard"
    assert payload_name(other) == "data/x.zip.siard"
    bag = bag_siard(other, tmp_path / "bag")
    assert [p.name for p in (bag / "data").iterdir()] == ["x.zip.siard"]
    assert (bag / payload_name(other)).read_bytes() == small.read_bytes()


def test_an_error_names_the_archive_once(small: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.siard"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SiardError) as caught:
        bag_siard(bad, tmp_path / "bag")
    assert caught.value.message.count("bad.siard") == 1 and caught.value.path == str(bad)
