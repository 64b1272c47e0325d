"""preservation/siard/reader.py: the rows of an exported archive are the source's values.

Archives are made by ``export_database`` from real databases: a small SQLite
one whose values are known here exactly (escaped characters, NULL and '',
LOBs inline and as files), timestamps with time zones in PostgreSQL, and the
sample database of every common type on both, compared value by value with
what the source database itself returns.
"""

from __future__ import annotations

import re
import sqlite3
import struct
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from preservation.errors import SiardError
from preservation.siard.reader import open_siard
from tests.unit.siard.test_validate import central_header, with_overlapping_entries

TEXTS = [
    "plain",
    "",
    None,
    "back\\slash \\u005c  two  spaces\ttab\nnewline\r\ncrlf \x01\x07\x1f\x7f\x9f",
    "<tag> & \"quotes\" 'apos' ]]> é ü 漢字 🎉",
]
BIG_TEXT = "ß and \\ and  two spaces, " * 300  # over 4096 characters: a LOB file
BIG_BYTES = bytes(range(256)) * 20  # over 4096 bytes: a LOB file
TABLE0 = "content/schema0/table0/table0.xml"


def expected_rows() -> list[list[Any]]:
    rows: list[list[Any]] = []
    for i, text in enumerate(TEXTS, start=1):
        rows.append(
            [
                i,
                text,
                BIG_TEXT if i == 2 else (None if i == 3 else f"clob {i}"),
                BIG_BYTES if i == 4 else (None if i == 3 else bytes([i, 0, 255])),
                Decimal(f"{i}.25") if i != 3 else None,
                datetime(2024, 2, i, 12, 30, 15, 250000) if i != 3 else None,
                date(1999, 12, 31 - i) if i != 3 else None,
                i % 2 == 0,
                i / 3,
            ]
        )
    return rows


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from preservation.siard.export import export_database

    where = tmp_path_factory.mktemp("reader")
    source = where / "source.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute(
            """
            CREATE TABLE things (
                id INTEGER PRIMARY KEY,
                label VARCHAR(200),
                body TEXT,
                data BLOB,
                price NUMERIC(10, 2),
                seen TIMESTAMP,
                born DATE,
                flag BOOLEAN NOT NULL,
                ratio DOUBLE PRECISION
            )
            """
        )
        for row in expected_rows():
            values = list(row)
            values[4] = None if row[4] is None else str(row[4])
            values[5] = None if row[5] is None else row[5].isoformat(" ")
            values[6] = None if row[6] is None else row[6].isoformat()
            conn.execute("INSERT INTO things VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
    dest = where / "small.siard"
    export_database(f"sqlite:///{source}", dest)
    return dest


def test_rows_are_the_source_values(small: Path) -> None:
    with open_siard(small) as siard:
        (schema,) = siard.archive.schemas
        (table,) = schema.tables
        rows = list(siard.rows(schema, table))
        assert rows == list(siard.rows(schema.name, table.name))
        assert siard.table_count(schema.name, table.name) == len(rows) == table.rows
    assert rows == expected_rows()
    # The big values really were LOB files.
    with zipfile.ZipFile(small) as zf:
        lobs = sorted(n for n in zf.namelist() if "/lob" in n)
    assert [n.rsplit(".", 1)[-1] for n in lobs] == ["txt", "bin"]


def test_every_row_of_a_longer_table(tmp_path: Path) -> None:
    """Past the 1,024 rows after which rows read are dropped from the tree, none is lost."""
    from preservation.siard.export import export_database

    source = tmp_path / "long.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE long (id INTEGER PRIMARY KEY, label VARCHAR(20))")
        conn.executemany(
            "INSERT INTO long VALUES (?, ?)", [(i, f"row {i}") for i in range(1, 5001)]
        )
    export_database(f"sqlite:///{source}", tmp_path / "long.siard")
    with open_siard(tmp_path / "long.siard") as siard:
        rows = list(siard.rows("main", "long"))
        assert siard.table_count("main", "long") == 5000
    assert rows == [[i, f"row {i}"] for i in range(1, 5001)]


def test_lob_file_named_from_the_archive_root(small: Path, tmp_path: Path) -> None:
    """Producers that write ``file`` from the zip's root (the spec's D.4b) are read too."""
    path = tmp_path / "rooted.siard"
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == TABLE0:
                data = data.replace(b'file="lob', b'file="content/schema0/table0/lob')
            if info.filename == "header/metadata.xml":
                data = data.replace(b"<lobFolder>content/schema0/table0/</lobFolder>", b"")
            zout.writestr(info, data)
    with open_siard(path) as siard:
        rows = list(siard.rows("main", "things"))
    assert rows == expected_rows()


def test_unknown_table(small: Path) -> None:
    with open_siard(small) as siard, pytest.raises(SiardError) as caught:
        siard.rows("main", "nothing")
    assert caught.value.rule == "structure" and caught.value.table == "main.nothing"


def test_not_a_zip_and_no_metadata(tmp_path: Path) -> None:
    junk = tmp_path / "junk.siard"
    junk.write_bytes(b"no zip here")
    with pytest.raises(SiardError) as caught:
        open_siard(junk)
    assert caught.value.rule == "zip"
    empty = tmp_path / "empty.siard"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("content/", b"")
    with pytest.raises(SiardError) as caught:
        open_siard(empty)
    assert caught.value.rule == "structure" and caught.value.entry == "header/metadata.xml"


def rewritten(small: Path, dest: Path, old: bytes, new: bytes) -> Path:
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == TABLE0:
                assert old in data
                data = data.replace(old, new, 1)
            zout.writestr(info, data)
    return dest


def test_doctype_in_a_table_is_refused_before_any_row(small: Path, tmp_path: Path) -> None:
    secret = f"MARKER-{uuid.uuid4().hex}"
    (tmp_path / "secret.txt").write_text(secret)
    doctype = f'?><!DOCTYPE table [<!ENTITY leak SYSTEM "file://{tmp_path}/secret.txt">]>'
    path = rewritten(small, tmp_path / "bad.siard", b"?>", doctype.encode())
    path = rewritten(path, tmp_path / "worse.siard", b"<c2>plain</c2>", b"<c2>&leak;</c2>")
    seen: list[Any] = []
    with open_siard(path) as siard, pytest.raises(SiardError) as caught:
        for row in siard.rows("main", "things"):
            seen.append(row)
    assert caught.value.rule == "xml-entities" and caught.value.table == "main.things"
    assert seen == [] and secret not in str(caught.value)


def test_value_the_type_does_not_allow(small: Path, tmp_path: Path) -> None:
    path = rewritten(small, tmp_path / "bad.siard", b"<c1>2</c1>", b"<c1>abc</c1>")
    with open_siard(path) as siard, pytest.raises(SiardError) as caught:
        list(siard.rows("main", "things"))
    error = caught.value
    assert (error.rule, error.table, error.entry) == ("table-xsd", "main.things", TABLE0)
    assert "row 2" in error.message and "'abc'" in error.message and "(id)" in error.message
    assert re.search(r"\(id\), not of type [A-Z]", error.message)


def test_missing_lob_file(small: Path, tmp_path: Path) -> None:
    path = tmp_path / "nolob.siard"
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith(".bin"):
                zout.writestr(info, zin.read(info))
    with open_siard(path) as siard, pytest.raises(SiardError) as caught:
        list(siard.rows("main", "things"))
    assert caught.value.rule == "lob" and caught.value.table == "main.things"
    assert caught.value.entry == "content/schema0/table0/lob4/record3.bin"


# -- PostgreSQL: time zones, and the sample database ------------------------------------------


def test_timestamps_with_time_zone_come_back_in_utc(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    from preservation.siard.export import export_database

    pg_source = pg_database()
    engine = sa.create_engine(pg_source)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA zones")
        conn.exec_driver_sql("CREATE TABLE zones.t (id int PRIMARY KEY, at timestamptz)")
        conn.exec_driver_sql(
            "INSERT INTO zones.t VALUES (1, '2024-03-01 12:00:00.123456+02'), "
            "(2, '1969-12-31 23:59:59-05:30'), (3, NULL)"
        )
    engine.dispose()
    export_database(pg_source, tmp_path / "zones.siard", schemas=["zones"])
    with open_siard(tmp_path / "zones.siard") as siard:
        rows = list(siard.rows("zones", "t"))
    assert rows == [
        [1, datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)],
        [2, datetime(1970, 1, 1, 5, 29, 59, tzinfo=UTC)],
        [3, None],
    ]
    assert rows[0][1].utcoffset().total_seconds() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sample_database_reads_back_as_the_source_holds_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Every table of the sample database, every row and value, as inserted into the source."""
    from preservation.siard.export import export_database
    from tests.siard_samples import (
        create_sample_database,
        default_schema,
        expected_rows,
        sorted_rows,
    )

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'sample.sqlite'}"
    else:
        url = request.getfixturevalue("pg_database")()
    create_sample_database(url)
    export_database(url, tmp_path / "sample.siard")
    expected = expected_rows(url)
    with open_siard(tmp_path / "sample.siard") as siard:
        read = {
            (schema.name, table.name): sorted_rows(list(siard.rows(schema, table)))
            for schema, table in siard.archive.tables()
        }
    assert read.keys() == expected.keys()
    for key, rows in expected.items():
        assert read[key] == rows, key
    everything = read[(default_schema(url), "everything")]
    assert any(isinstance(v, bytes) and len(v) > 4096 for row in everything for v in row)
    assert any(row[1:].count(None) == len(row) - 1 for row in everything)


# -- hostile and foreign archives ------------------------------------------------------------


def central_flags(data: bytearray, name: str, *, flag: int = 0, method: int | None = None) -> None:
    """Set a flag bit or the compression method in ``name``'s central directory header."""
    at = central_header(bytes(data), name)
    data[at + 8] |= flag
    if method is not None:
        struct.pack_into("<H", data, at + 10, method)


def test_overlapping_entries_are_refused_on_opening(small: Path, tmp_path: Path) -> None:
    names = [f"content/schema0/table0/lob9/record{i}.txt" for i in range(3)]
    path = with_overlapping_entries(small, tmp_path / "overlap.siard", names, 50_000)
    with pytest.raises(SiardError) as caught:
        open_siard(path)
    assert caught.value.rule == "zip" and "share bytes" in caught.value.message


def test_table_of_another_siard_version_is_refused_not_read_as_empty(
    small: Path, tmp_path: Path
) -> None:
    ns20 = b"http://www.admin.ch/xmlns/siard/2.0/schema0/table0.xsd"
    path = rewritten(
        small, tmp_path / "v20.siard", b"http://www.bar.admin.ch/xmlns/siard/2/table.xsd", ns20
    )
    with open_siard(path) as siard, pytest.raises(SiardError) as caught:
        list(siard.rows("main", "things"))
    error = caught.value
    assert (error.rule, error.table, error.entry) == ("structure", "main.things", TABLE0)
    assert ns20.decode() in error.message and "only SIARD 2.1 and 2.2" in error.message


def test_encrypted_metadata_is_a_zip_error(small: Path, tmp_path: Path) -> None:
    data = bytearray(small.read_bytes())
    central_flags(data, "header/metadata.xml", flag=0x01)
    path = tmp_path / "encrypted.siard"
    path.write_bytes(bytes(data))
    with pytest.raises(SiardError) as caught:
        open_siard(path)
    assert (caught.value.rule, caught.value.entry) == ("zip", "header/metadata.xml")


def test_unknown_compression_of_a_table_is_a_zip_error(small: Path, tmp_path: Path) -> None:
    data = bytearray(small.read_bytes())
    central_flags(data, TABLE0, method=99)
    path = tmp_path / "method99.siard"
    path.write_bytes(bytes(data))
    with open_siard(path) as siard, pytest.raises(SiardError) as caught:
        list(siard.rows("main", "things"))
    assert (caught.value.rule, caught.value.entry) == ("zip", TABLE0)


def test_external_dtd_in_metadata_is_refused_as_such(small: Path, tmp_path: Path) -> None:
    path = tmp_path / "dtd.siard"
    with zipfile.ZipFile(small) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "header/metadata.xml":
                data = data.replace(
                    b"?>", b'?><!DOCTYPE siardArchive SYSTEM "http://127.0.0.1:9/x.dtd">', 1
                )
                data = re.sub(rb"<dbname>[^<]*</dbname>", b"<dbname>&x;</dbname>", data)
            zout.writestr(info, data)
    with pytest.raises(SiardError) as caught:
        open_siard(path)
    assert (caught.value.rule, caught.value.entry) == ("xml-entities", "header/metadata.xml")


def test_a_lob_larger_than_the_limit_is_refused_not_read(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from preservation.siard import reader

    monkeypatch.setattr(reader, "MAX_LOB_BYTES", 1000)
    read: list[str] = []
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: read.append(name))
    with open_siard(small) as siard, pytest.raises(SiardError) as caught:
        list(siard.rows("main", "things"))
    error = caught.value
    assert error.rule == "lob" and error.table == "main.things"
    assert error.entry == "content/schema0/table0/lob3/record1.txt"  # row 2's text
    assert "table0.xml row 2 " in error.message and error.entry in error.message
    assert "more than 1,000" in error.message
    assert read == []  # refused from the directory's size, before reading
