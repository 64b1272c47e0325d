"""Small SIARD archives for the ingest tests, and the ways a submitter's archive goes wrong.

``small_database`` is a SQLite file of two related tables (one with a BLOB
large enough to be stored as a LOB file); ``small_siard`` exports it with the
project's exporter and gives the tables and columns descriptions through
``edit_metadata`` (SQLite has no comments to export). ``edit_metadata`` also
makes an archive that lies (a row count), and ``damage_entry`` one whose zip
is damaged inside an entry while its listing stays whole. ``rewrite`` copies
an archive with entries changed (by ``sub`` or ``replaced``), dropped or added;
``exported_sqlite`` exports a SQLite database made from a script.
"""

from __future__ import annotations

import re
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

from preservation.siard.model import Archive

METADATA = "header/metadata.xml"
#: Descriptions given by ``small_siard``: the words search must find.
TABLE_DESCRIPTION = "Correspondents of the Lovelace household"
COLUMN_DESCRIPTION = "Birthday as written in the parish register"


def small_database(path: Path) -> Path:
    """``person`` (4 columns, a 6,000-byte BLOB) and ``letter`` (a foreign key to it)."""
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE person (
                id INTEGER PRIMARY KEY, name TEXT NOT NULL, born DATE, portrait BLOB
            );
            CREATE TABLE letter (
                id INTEGER PRIMARY KEY,
                person_id INTEGER REFERENCES person(id),
                postmark VARCHAR(40),
                body TEXT
            );
            """
        )
        db.execute("INSERT INTO person VALUES (1, 'Ada', '1815-12-10', ?)", (bytes(6000),))
        db.execute("INSERT INTO person VALUES (2, 'Charles', NULL, NULL)")
        db.executemany(
            "INSERT INTO letter VALUES (?, ?, ?, ?)",
            [(1, 1, "Marylebone", "Dear Charles"), (2, 2, None, "Dear Ada"), (3, 1, "Ockham", "")],
        )
    return path


def edit_metadata(siard: Path, dest: Path, change: Callable[[Archive], None]) -> Path:
    """A copy of ``siard`` whose metadata.xml is the model after ``change``; all else as it was."""
    from preservation.siard.metadata import metadata_xml, parse_metadata

    with zipfile.ZipFile(siard) as source, zipfile.ZipFile(dest, "w") as out:
        archive = parse_metadata(source.read(METADATA))
        change(archive)
        for info in source.infolist():
            data = metadata_xml(archive) if info.filename == METADATA else source.read(info)
            out.writestr(info, data)
    return dest


def exported_sqlite(source: Path, script: str, dest: Path) -> Path:
    """``dest``: the SQLite database ``source``, made by the SQL ``script``, exported to SIARD."""
    from preservation.siard.export import export_database

    with sqlite3.connect(source) as conn:
        conn.executescript(script)
    conn.close()
    export_database(f"sqlite:///{source}", dest)
    return dest


def rewrite(
    src: Path,
    dest: Path,
    *,
    change: dict[str, Callable[[bytes], bytes]] | None = None,
    drop: set[str] | frozenset[str] = frozenset(),
    add: dict[str, bytes] | None = None,
) -> Path:
    """A copy of ``src`` with entries changed, dropped or added (same names, same order)."""
    change = change or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info)
            if info.filename in change:
                data = change[info.filename](data)
            zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dest


def sub(pattern: bytes, replacement: bytes, count: int = 1) -> Callable[[bytes], bytes]:
    """A change for ``rewrite``: ``re.subn`` of ``pattern``, which must be found."""

    def apply(data: bytes) -> bytes:
        changed, made = re.subn(pattern, replacement, data, count=count)
        assert made, f"{pattern!r} not found"
        return changed

    return apply


def replaced(replacements: dict[bytes, bytes]) -> Callable[[bytes], bytes]:
    """A change for ``rewrite``: every occurrence of each key replaced by its value, in turn."""

    def apply(data: bytes) -> bytes:
        for old, new in replacements.items():
            data = data.replace(old, new)
        return data

    return apply


def clashing_tables(folder: Path, renames: dict[bytes, bytes]) -> Path:
    """Tables ``Order`` (row 1) and ``xrder`` (row 2) exported, metadata.xml changed by ``renames``.

    ``{b"<name>xrder</name>": b"<name>order</name>"}`` makes two tables PostgreSQL
    tells apart and SQLite takes for one name.
    """
    script = """
        CREATE TABLE "Order" (id INTEGER PRIMARY KEY);
        INSERT INTO "Order" VALUES (1);
        CREATE TABLE xrder (id INTEGER PRIMARY KEY);
        INSERT INTO xrder VALUES (2);
    """
    plain = exported_sqlite(folder / "clash.sqlite", script, folder / "plain.siard")
    return rewrite(plain, folder / "clash.siard", change={METADATA: replaced(renames)})


def clashing_columns(folder: Path, name: str) -> Path:
    """``people`` with columns ``Name`` and ``name``, which SQLite takes for one; one row.

    Exported with ``xame`` for ``name`` and renamed in metadata.xml; the row is
    ``(1, name, 'ada')``.
    """
    script = f"""
        CREATE TABLE people (id INTEGER PRIMARY KEY, "Name" TEXT, xame TEXT);
        INSERT INTO people VALUES (1, '{name}', 'ada');
    """
    plain = exported_sqlite(folder / "case.sqlite", script, folder / "plain.siard")
    rename = replaced({b"<name>xame</name>": b"<name>name</name>"})
    return rewrite(plain, folder / "case.siard", change={METADATA: rename})


def describe(archive: Archive) -> None:
    """What an archivist adds: descriptions of the database, a table and a column."""
    archive.description = "Family papers, digitised"
    for _schema, table in archive.tables():
        if table.name == "person":
            table.description = TABLE_DESCRIPTION
            for column in table.columns:
                if column.name == "born":
                    column.description = COLUMN_DESCRIPTION


def small_siard(folder: Path, name: str = "family.siard") -> Path:
    """The small database exported to SIARD 2.2, with descriptions."""
    from preservation.siard.export import export_database

    folder.mkdir(parents=True, exist_ok=True)
    database = small_database(folder / "family.db")
    plain = folder / f"plain-{name}"
    export_database(f"sqlite:///{database}", plain)
    found = edit_metadata(plain, folder / name, describe)
    plain.unlink()
    database.unlink()
    return found


def lying_rows(siard: Path, dest: Path, table: str = "letter") -> Path:
    """A copy whose metadata.xml says ``table`` has one row more than its XML holds."""

    def lie(archive: Archive) -> None:
        for _schema, found in archive.tables():
            if found.name == table:
                found.rows += 1

    return edit_metadata(siard, dest, lie)


def damage_entry(siard: Path, dest: Path, entry: str) -> Path:
    """A copy with bytes of ``entry``'s stored data changed: its CRC fails, the listing is whole."""
    with zipfile.ZipFile(siard) as archive:
        info = archive.getinfo(entry)
    data = bytearray(siard.read_bytes())
    local = info.header_offset
    name_length = int.from_bytes(data[local + 26 : local + 28], "little")
    extra_length = int.from_bytes(data[local + 28 : local + 30], "little")
    start = local + 30 + name_length + extra_length
    middle = start + info.compress_size // 2
    for at in range(middle, min(middle + 8, start + info.compress_size)):
        data[at] ^= 0x20
    dest.write_bytes(bytes(data))
    return dest
