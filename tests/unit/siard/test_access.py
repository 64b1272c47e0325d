"""preservation/siard/access.py: the SQLite copy and the CSV files of a SIARD in an access DIP."""

from __future__ import annotations

import csv
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from preservation.siard.access import access_copies, csv_names, to_csv, to_sqlite
from preservation.siard.model import Archive, Column, Schema, Table
from tests.siard_edits import (
    METADATA,
    clashing_columns,
    clashing_tables,
    replaced,
    rewrite,
)

ROWS = [
    (1, "a,b", bytes([0, 255, 16]), 1, 1.25, "2024-01-02 03:04:05", 0.5),
    (2, 'say "hi"', None, 0, None, None, None),
    (3, "line one\r\nline two", b"", None, None, None, None),
    (4, "", None, None, None, None, None),
    (5, None, None, None, None, None, None),
]


@pytest.fixture
def siard(tmp_path: Path) -> Path:
    """A small SQLite database with the values CSV has to be careful about, exported."""
    from preservation.siard.export import export_database

    source = tmp_path / "notes.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, raw BLOB, ok BOOLEAN,"
            " amount NUMERIC(10, 2), at TIMESTAMP, share DOUBLE)"
        )
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?, ?)", ROWS)
        conn.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, note INTEGER REFERENCES notes)")
        conn.execute("INSERT INTO tags VALUES (1, 3)")
    out = tmp_path / "notes.siard"
    export_database(f"sqlite:///{source}", out)
    return out


def test_csv_is_rfc_4180_with_a_header_crlf_and_fields_quoted_only_when_needed(
    siard: Path, tmp_path: Path
) -> None:
    written = to_csv(siard, tmp_path / "csv")
    assert [p.name for p in written] == ["notes.csv", "tags.csv"]
    raw = written[0].read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # UTF-8 without a byte order mark
    lines = raw.split(b"\r\n")
    assert lines[0] == b"id,body,raw,ok,amount,at,share"
    assert lines[1].startswith(b'1,"a,b",00FF10,true,')  # a comma quotes; binary is upper hex
    assert lines[2] == b'2,"say ""hi""",,false,,,'  # quotes doubled; NULL is an empty field
    assert lines[3] == b'3,"line one'  # a line break inside a field is kept, quoted
    assert lines[4] == b'line two",,,,,'
    assert lines[5:] == [b"4,,,,,,", b"5,,,,,,", b""]  # '' and NULL: the same empty field

    with open(written[0], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][:4] == ["1", "a,b", "00FF10", "true"]
    assert Decimal(rows[1][4]) == Decimal("1.25")
    assert rows[1][5] == "2024-01-02T03:04:05"  # ISO 8601
    assert float(rows[1][6]) == 0.5
    assert rows[3][1] == "line one\r\nline two"
    assert rows[4][1] == rows[5][1] == ""
    assert written[1].read_bytes() == b"id,note\r\n1,3\r\n"


def test_the_sqlite_copy_and_the_csv_files_come_from_one_reading(
    siard: Path, tmp_path: Path
) -> None:
    copies = access_copies(siard, tmp_path / "out" / "notes.sqlite", tmp_path / "out" / "csv")
    assert copies.sqlite.is_file() and not list((tmp_path / "out").glob("*.part"))
    assert [p.name for p in copies.csv] == ["notes.csv", "tags.csv"]
    assert (copies.summary.tables, copies.summary.rows, copies.summary.problems) == (2, 6, ())
    with sqlite3.connect(copies.sqlite) as conn:
        got = conn.execute("SELECT id, body, raw FROM notes ORDER BY id").fetchall()
        assert got == [r[:3] for r in ROWS]  # NULL and '' apart again, as the archive keeps them
        fk = conn.execute("PRAGMA foreign_key_list(tags)").fetchall()
        assert [(r[2], r[3], r[4]) for r in fk] == [("notes", "note", "id")]
    assert copies.csv[0].read_bytes() == to_csv(siard, tmp_path / "again")[0].read_bytes()


def test_an_access_copy_is_a_new_file(siard: Path, tmp_path: Path) -> None:
    dest = tmp_path / "taken.sqlite"
    dest.write_bytes(b"someone's")
    with pytest.raises(FileExistsError):
        to_sqlite(siard, dest)
    assert dest.read_bytes() == b"someone's"
    summary = to_sqlite(siard, tmp_path / "fresh.sqlite")
    assert summary.names == {"main.notes": "notes", "main.tags": "tags"}


def test_csv_file_names_are_safe_on_any_file_system() -> None:
    def table(name: str) -> Table:
        return Table(name, "t", [Column("a", "INTEGER")])

    one = Archive(
        "db",
        [Schema("s", "schema0", [table(n) for n in ("a/b:c", "CON", "x. ", "Ähre", "*")])],
    )
    assert list(csv_names(one).values()) == ["a_b_c.csv", "_CON.csv", "x.csv", "Ähre.csv", "_.csv"]
    # Apart in SQLite, not on every file system: numbered.
    two = Archive("db", [Schema("s", "schema0", [table("a/b"), table("a:b"), table("ähre")])])
    assert list(csv_names(two).values()) == ["a_b.csv", "a_b-2.csv", "ähre.csv"]
    three = Archive("db", [Schema("s", "schema0", [table("Ähre"), table("ähre")])])
    assert list(csv_names(three).values()) == ["Ähre.csv", "ähre-2.csv"]


@pytest.fixture
def clashing(tmp_path: Path) -> Path:
    """Tables ``Order`` and ``order`` (apart in PostgreSQL, one name to SQLite)."""
    return clashing_tables(tmp_path, {b"<name>xrder</name>": b"<name>order</name>"})


def test_tables_sqlite_cannot_tell_apart_are_numbered_in_both_copies(
    clashing: Path, tmp_path: Path
) -> None:
    copies = access_copies(clashing, tmp_path / "out" / "t.sqlite", tmp_path / "out" / "csv")
    assert copies.summary.names == {"main.Order": "Order", "main.order": "order_2"}
    assert [p.name for p in copies.csv] == ["Order.csv", "order_2.csv"]
    with sqlite3.connect(copies.sqlite) as conn:
        assert conn.execute('SELECT id FROM "Order"').fetchall() == [(1,)]
        assert conn.execute("SELECT id FROM order_2").fetchall() == [(2,)]
    conn.close()
    assert copies.csv[1].read_bytes() == b"id\r\n2\r\n"


def test_an_archive_that_cannot_be_used_is_named_in_the_error(siard: Path, tmp_path: Path) -> None:
    from preservation.errors import SiardError

    lie = replaced({b"<rows>5</rows>": b"<rows>6</rows>"})
    liar = rewrite(siard, tmp_path / "liar.siard", change={METADATA: lie})
    dest = tmp_path / "out" / "liar.sqlite"
    with pytest.raises(SiardError) as refused:
        access_copies(liar, dest, tmp_path / "out" / "csv")
    assert refused.value.rule == "row-count" and refused.value.path == str(liar)
    assert refused.value.message.startswith(f"{liar}: main.notes: metadata.xml says 6 rows")
    assert not dest.exists() and not list((tmp_path / "out").glob("*.sqlite*"))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # no CSV either
    # A message that names the archive already is left as it is.
    with pytest.raises(SiardError) as refused:
        to_csv(tmp_path / "missing.siard", tmp_path / "csv2")
    assert "missing.siard" in refused.value.message
    assert not refused.value.message.startswith(f"{tmp_path / 'missing.siard'}: ")


def test_columns_sqlite_cannot_tell_apart_are_numbered_in_the_table_and_the_csv_header(
    tmp_path: Path,
) -> None:
    case = clashing_columns(tmp_path, "Ada Lovelace")
    copies = access_copies(case, tmp_path / "out" / "t.sqlite", tmp_path / "out" / "csv")
    assert copies.summary.renamed == (
        "main.people: column 'name' loaded as 'name_2' "
        "(SQLite takes names differing only in case for one)",
    )
    with sqlite3.connect(copies.sqlite) as conn:
        assert conn.execute('SELECT id, "Name", name_2 FROM people').fetchall() == [
            (1, "Ada Lovelace", "ada")
        ]
    conn.close()
    assert copies.csv[0].read_bytes() == b"id,Name,name_2\r\n1,Ada Lovelace,ada\r\n"
