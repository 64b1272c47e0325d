"""Access copies of a SIARD archive: one SQLite database and one CSV file per table.

A reader of an access DIP should not need a SIARD tool: the SQLite file opens
in any SQL client (its types and keys as ``load`` makes them on SQLite), and
the CSV files in anything that reads a spreadsheet. Both are made in one pass
over the archive (``access_copies``): each row, as it goes into SQLite, is
also written to its table's CSV file.

Table names are ``load.flat_names``'s (the table's own name, or
``<schema>__<table>`` when the tables are spread over several schemas; names
that SQLite would take for one, ``Order`` and ``order``, numbered in archive
order: ``Order``, ``order_2``; never refused), made
safe as file names for the CSV files: characters no file system takes
(``< > : " / \\ | ? *``, control characters) become ``_``, trailing dots and
spaces go, Windows' reserved names (``CON``, ``NUL``, ``COM1``...) get a
leading ``_``, and names that would then meet on a case-insensitive file
system are numbered (``users.csv``, ``Users-2.csv``).

Column names are ``load.flat_columns``'s in both: a table's own, except that
names SQLite would take for one (``Name`` and ``name``) are numbered in
archive order (``Name``, ``name_2``), so the CSV header and the SQLite table
agree; ``AccessCopies.summary.renamed`` says which were.

CSV as RFC 4180 has it: UTF-8 without a byte order mark, CRLF line ends, a
header row of column names, fields quoted only when they hold a comma, a
quote or a line break, quotes doubled. A CSV field is text, so:

- NULL is an empty field, and so is the empty string: **CSV cannot tell them
  apart** (nor a NULL from an empty BLOB). The SQLite copy and the SIARD itself
  keep the difference; a reader to whom it matters must use one of those;
- binary is upper-case hexadecimal, as SIARD writes it;
- booleans are ``true``/``false``; decimals are written with every archived
  digit, never with an exponent; doubles as Python's shortest exact form, and
  ``NaN``, ``INF``, ``-INF``;
- dates, times and timestamps are ISO 8601 (``2024-05-01T12:30:00``); those
  with a time zone are in UTC and say so (``+00:00``).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from preservation.siard.load import LoadSummary, flat_columns, flat_names, load_archive
from preservation.siard.model import Archive, Progress, Schema, Table
from preservation.siard.reader import naming_archive, open_siard
from preservation.siard.types import lexical_form

__all__ = [
    "CSV_PUID",
    "SIARD_PUIDS",
    "SQLITE_PUID",
    "UNREAD_SIARD_PUIDS",
    "AccessCopies",
    "access_copies",
    "csv_names",
    "to_csv",
    "to_sqlite",
]

#: SIARD 2.2 and 2.1 in PRONOM: the files an access DIP gives as tables (the reader's versions).
SIARD_PUIDS = frozenset({"fmt/1777", "fmt/1196"})
#: SIARD 2.0 and 1.0: their table XML is in other namespaces, which the reader does not read.
#: An access DIP sends such an archive as it is, its PREMIS event saying why.
UNREAD_SIARD_PUIDS = {"fmt/995": "SIARD 2.0", "fmt/161": "SIARD 1.0"}
SQLITE_PUID = "fmt/729"  # SQLite Database File Format 3
CSV_PUID = "x-fmt/18"  # Comma Separated Values

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(10)}
_MAX_NAME_BYTES = 200  # leaves room for "-NN.csv" under the usual 255-byte limit


@dataclass(frozen=True)
class AccessCopies:
    sqlite: Path
    csv: list[Path]
    summary: LoadSummary


def _safe_file_name(name: str) -> str:
    safe = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).rstrip(" .")
    if not safe or safe in (".", ".."):
        safe = "_"
    if safe.split(".")[0].upper() in _RESERVED:
        safe = "_" + safe
    while len(safe.encode("utf-8")) > _MAX_NAME_BYTES:
        safe = safe[:-1]
    return safe


def csv_names(archive: Archive) -> dict[tuple[str, str], str]:
    """Each table's CSV file name (``flat_names``, made safe for any file system).

    From ``flat_names``, so that a table's CSV file and its SQLite table carry
    one name; made safe because a DIP is unpacked on whatever system its
    reader has (Windows refuses ``:`` and ``CON``; macOS and Windows fold
    case, so ``users.csv`` and ``Users.csv`` would be one file there).
    """
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for key, flat in flat_names(archive).items():
        stem = _safe_file_name(flat)
        name, n = stem, 1
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name.casefold())
        names[key] = name + ".csv"
    return names


# -- CSV fields --------------------------------------------------------------------------


def _iso(v: date | time) -> str:
    return v.isoformat()


_FIELD: dict[type, Callable[[Any], str]] = {
    type(None): lambda v: "",
    bytes: lambda v: v.hex().upper(),
    bool: lambda v: "true" if v else "false",
    Decimal: lambda v: format(v, "f"),
    float: lexical_form("DOUBLE PRECISION"),  # as SIARD writes it: NaN, INF, -INF
    datetime: _iso,
    date: _iso,
    time: _iso,
}


def _fields(row: list[Any]) -> list[Any]:
    get = _FIELD.get
    return [f(v) if (f := get(type(v))) is not None else v for v in row]


class _CsvTee:
    """Rows of each table on their way to SQLite, written to its CSV file as they pass."""

    def __init__(self, archive: Archive, out_dir: Path) -> None:
        self.names = csv_names(archive)
        self.out_dir = out_dir
        self.written: list[Path] = []

    def open(self, schema: Schema, table: Table) -> tuple[IO[str], Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / self.names[(schema.name, table.name)]
        handle = open(path, "x", encoding="utf-8", newline="")  # never over someone's file
        writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(flat_columns(table))
        self.written.append(path)
        return handle, writer

    def discard(self) -> None:
        """Delete the files written so far (all of them new: ``open`` makes them)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()

    def wrap(
        self, rows: Callable[[Schema, Table], Iterator[list[Any]]]
    ) -> Callable[[Schema, Table], Iterator[list[Any]]]:
        def tee(schema: Schema, table: Table) -> Iterator[list[Any]]:
            handle, writer = self.open(schema, table)
            with handle:
                for row in rows(schema, table):
                    writer.writerow(_fields(row))
                    yield row

        return tee


def to_csv(siard: str | Path, out_dir: Path) -> list[Path]:
    """One CSV file per table of ``siard`` in ``out_dir``, in archive order (module notes).

    The files must be new: one already there is refused (``FileExistsError``).
    """
    with naming_archive(siard), open_siard(siard) as reader:
        tee = _CsvTee(reader.archive, Path(out_dir))
        tee_rows = tee.wrap(reader.rows)
        try:
            for schema, table in reader.archive.tables():
                for _row in tee_rows(schema, table):
                    pass
        except BaseException:
            tee.discard()
            raise
    return tee.written


def to_sqlite(siard: str | Path, dest: Path, *, progress: Progress | None = None) -> LoadSummary:
    """A new SQLite database at ``dest`` holding every table of ``siard`` (``load``'s SQLite rules).

    ``dest`` must not exist; the file is written under a temporary name and
    appears only once complete.
    """
    with naming_archive(siard), open_siard(siard) as reader:
        return _to_sqlite(reader.archive, reader.rows, Path(dest), progress)


def access_copies(
    siard: str | Path, dest: Path, csv_dir: Path, *, progress: Progress | None = None
) -> AccessCopies:
    """``to_sqlite`` and ``to_csv`` in one reading of the archive.

    A ``SiardError`` (of these three) names the archive file in its message; if
    one is raised, no file of the copies is left (nor by ``to_csv``).
    """
    with naming_archive(siard), open_siard(siard) as reader:
        tee = _CsvTee(reader.archive, Path(csv_dir))
        try:
            summary = _to_sqlite(reader.archive, tee.wrap(reader.rows), Path(dest), progress)
        except BaseException:
            tee.discard()
            raise
    return AccessCopies(Path(dest), tee.written, summary)


def _to_sqlite(
    archive: Archive,
    rows: Callable[[Schema, Table], Iterator[list[Any]]],
    dest: Path,
    progress: Progress | None,
) -> LoadSummary:
    if dest.exists():
        raise FileExistsError(f"{dest} exists: an access copy is written to a new file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    try:
        url = sa.engine.URL.create("sqlite", database=str(part))
        summary = load_archive(archive, rows, url, progress=progress)
        part.replace(dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return summary
