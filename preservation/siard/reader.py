"""Rows out of a SIARD archive as Python values, one table at a time, in flat memory.

The access copies (SQLite, CSV) and ``load`` read every row of every table,
so this is their hot path: a table's XML is parsed straight from its zip entry
(``ZipFile.open``, never read whole) by lxml's ``iterparse`` filtered on the
``row`` tag, and each row element is cleared once its values are out, its
already-read siblings dropped every 1,024 rows, so a table of millions
of rows costs what one of a thousand does. Values are converted by one function
per column looked up before the first row (``types.value_parser``), so a cell
costs a dict lookup and a call. Measured on bench_siard's table exported from
SQLite (bigint, varchar, timestamp, numeric, boolean, date, escaped text): about
110,000 rows/s on one core, peak RSS 42 MB at 20,000 rows and at 200,000 alike.

The parser is set up as for anything from outside: no entity resolution, no
network, no DTD loading, no huge-tree mode; a table whose XML declares a
DOCTYPE is refused (``SiardError`` with rule ``xml-entities``) before any of
its rows is given out, because an internal DTD is how entity tricks start.

LOBs stored as files (a cell like ``<c3 file="lob3/record0.bin" length=".."/>``)
are read from their own zip entry: BLOB-like columns give ``bytes``, CLOB-like
ones ``str`` (UTF-8, the file's plain text, unescaped). The entry's name is the
archive's ``lobFolder``, then the column's, then the cell's ``file``, joined as
relative URIs (SIARD 2.2 section 5.1 and T_6.4-5; ``metadata.lob_entry``).
Some producers write ``file`` from the archive's root instead (the spec's own
example D.4b does): when the joined name is not in the zip but ``file`` alone
is, that is used. A LOB outside the zip (``..`` above its root) is not read:
``SiardError`` rule ``lob``.

Structured cells (ARRAY, UDT) are not part of the model and are not read.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Container, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

from lxml import etree

from preservation.errors import SiardError
from preservation.siard.metadata import lob_entry, parse_metadata
from preservation.siard.model import TABLE_NS, Archive, Column, Schema, Table
from preservation.siard.types import base_type, value_parser

__all__ = [
    "METADATA_ENTRY",
    "SiardReader",
    "ZipHazards",
    "declares_doctype",
    "lob_name",
    "open_siard",
    "table_label",
    "table_root",
    "zip_hazards",
]

METADATA_ENTRY = "header/metadata.xml"
#: More than this in metadata.xml is taken for a zip bomb, not a database's structure.
MAX_METADATA_BYTES = 256 * 1024 * 1024
#: Base types whose LOB files are bytes; every other LOB is text.
BINARY_TYPES = frozenset({"BINARY", "BINARY VARYING", "BINARY LARGE OBJECT", "DATALINK"})

#: No DEFLATE stream expands more than about 1032 times, so neither does a zip of them.
MAX_DEFLATE_RATIO = 1100

_ROW = f"{{{TABLE_NS}}}row"
_TABLE = f"{{{TABLE_NS}}}table"
#: Read rows are dropped from the tree this often (a clear per row, a delete per batch).
_DROP_EVERY = 1024
#: zipfile raises RuntimeError for an encrypted entry, NotImplementedError for a
#: compression method it does not know.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)
_LOCAL_HEADER = 30
_LOCAL_SIGNATURE = b"PK\x03\x04"
#: The prolog of an XML document up to a DOCTYPE: BOM, declaration, PIs, comments, space.
_DOCTYPE = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s|<\?.*?\?>|<!--.*?-->)*<!DOCTYPE", re.S)
_PROLOG_SCAN = 1024 * 1024


class ZipHazards(NamedTuple):
    """What a zip's central directory and local headers say before anything is inflated.

    ``entries``: entry name -> why that entry is not to be read (it follows the
    name in a sentence); ``whole``: why nothing in the archive is to be read
    (entries that overlap in the file, declared sizes no archive of that size holds).
    """

    entries: dict[str, str]
    whole: list[str]


def entry_size_absurd(info: zipfile.ZipInfo, size: int) -> bool:
    """Sizes no real entry of a ``size``-byte file has (a zip bomb or a damaged directory)."""
    if info.compress_size > size or info.header_offset > size:
        return True
    if info.compress_type == zipfile.ZIP_STORED:
        return info.file_size != info.compress_size
    return info.file_size > max(info.compress_size, 1) * MAX_DEFLATE_RATIO


def zip_hazards(zf: zipfile.ZipFile, path: Path) -> ZipHazards:
    """Entries and archives not to be inflated at all, from the directory and local headers.

    A zip bomb of overlapping entries (many central-directory entries whose
    data is the same few bytes, each quoting the next one's local header)
    keeps every entry within DEFLATE's ratio while the whole inflates to
    thousands of times the file; zipfile does not notice. Each entry's bytes
    (local header, name, extra field, compressed data) are laid out from its
    local header, and no two may share a byte or reach into the central
    directory; nor may the declared sizes add up to more than
    ``MAX_DEFLATE_RATIO`` times the file. A local header that is not one is
    left to zipfile, which refuses to open that entry.
    """
    size = path.stat().st_size
    entries: dict[str, str] = {}
    spans: list[tuple[int, int, str]] = []
    data_end = min(getattr(zf, "start_dir", size), size)
    with path.open("rb") as fp:
        for info in zf.infolist():
            if entry_size_absurd(info, size):
                entries[info.filename] = (
                    f"declares {info.file_size:,} bytes from {info.compress_size:,} in a "
                    f"file of {size:,}: not a real entry (damaged, or a zip bomb)"
                )
                continue
            fp.seek(info.header_offset)
            head = fp.read(_LOCAL_HEADER)
            if len(head) < _LOCAL_HEADER or head[:4] != _LOCAL_SIGNATURE:
                continue
            name_length, extra_length = struct.unpack_from("<HH", head, 26)
            start = info.header_offset
            end = start + _LOCAL_HEADER + name_length + extra_length + info.compress_size
            spans.append((start, end, info.filename))
    whole: list[str] = []
    spans.sort()
    overlaps: list[tuple[str, str]] = []
    last_end, last_name = 0, ""
    for start, end, name in spans:
        if start < last_end:
            overlaps.append((name, last_name))
        elif end > data_end:
            overlaps.append((name, "the central directory"))
        if end > last_end:
            last_end, last_name = end, name
    if overlaps:
        name, other = overlaps[0]
        more = f" ({len(overlaps) - 1:,} more entries overlap others)" if len(overlaps) > 1 else ""
        whole.append(
            f"the zip's entries share bytes in the file: {name} overlaps {other}{more}; a zip bomb "
            "or a damaged zip, so nothing in it is read (G_4.1-1)"
        )
    total = sum(info.file_size for info in zf.infolist() if info.filename not in entries)
    if total > max(size, 1) * MAX_DEFLATE_RATIO:
        whole.append(
            f"its entries declare {total:,} bytes in all from a file of {size:,}: more than "
            "DEFLATE can hold, a zip bomb or a damaged zip, so nothing in it is read"
        )
    return ZipHazards(entries, whole)


def declares_doctype(prefix: bytes) -> bool:
    """Whether XML starting with ``prefix`` has a DOCTYPE in its prolog (before the root).

    Found from the bytes, before parsing: a DOCTYPE with an external DTD and a
    reference to an entity only it declares fails to parse, which would hide it.
    """
    prefix = prefix[:_PROLOG_SCAN]
    if prefix[:2] in (b"\xff\xfe", b"\xfe\xff"):
        prefix = prefix.decode("utf-16", "ignore").encode()
    return _DOCTYPE.match(prefix) is not None


def table_root(stream: IO[bytes]) -> tuple[str | None, bool]:
    """A table XML's root tag (None if it cannot be parsed up to it) and whether it has a DOCTYPE.

    Reads only up to the root's start tag, so a table in another namespace
    (SIARD 2.0 names one per table, 1.0 another) is told apart before its rows
    are parsed: their ``row`` elements would be none of ours, never cleared.
    """
    parser = etree.XMLPullParser(
        events=("start",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    seen = b""
    while chunk := stream.read(64 * 1024):
        if len(seen) < _PROLOG_SCAN:
            seen += chunk
        try:
            parser.feed(chunk)
            for event in parser.read_events():
                element: Any = event[1]
                docinfo = element.getroottree().docinfo
                doctype = bool(docinfo.doctype) or docinfo.internalDTD is not None
                return element.tag, doctype or declares_doctype(seen)
        except etree.XMLSyntaxError:
            return None, declares_doctype(seen)
    return None, declares_doctype(seen)


def table_label(schema: Schema, table: Table) -> str:
    """How messages name a table: ``schema.table``, as the database spelled them."""
    return f"{schema.name}.{table.name}"


def lob_name(
    names: Container[str], archive: Archive, schema: Schema, table: Table, column: Column, file: str
) -> str:
    """The zip entry of a LOB cell: ``metadata.lob_entry``, or ``file`` alone if only that exists.

    ``names`` are the zip's entries. A name not in the zip is still returned
    (the caller reports it missing); one outside the zip raises ``SiardError``
    (rule ``lob``).
    """
    name = lob_entry(schema, table, column, file, archive.lob_folder)
    if name in names:
        return name
    alone = lob_entry(schema, table, replace(column, lob_folder=None), file)
    return alone if alone in names else name


def _read_limited(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    with zf.open(name) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise SiardError(
            f"{name} holds more than {limit:,} bytes: refused as a zip bomb",
            rule="zip",
            entry=name,
        )
    return data


def _doctype_error(docinfo: Any, label: str, entry: str) -> SiardError | None:
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        return SiardError(
            f"{entry} ({label}) declares a DOCTYPE: DTDs and entities are refused in SIARD XML",
            rule="xml-entities",
            table=label,
            entry=entry,
        )
    return None


class SiardReader:
    """An open SIARD archive: its metadata as ``archive`` and its tables' rows on demand.

    Holds the zip open until ``close`` (or the end of a ``with`` block); the
    generators ``rows`` returns read from it, so finish them first.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise SiardError(
                f"{self.path.name} is not a readable zip: {exc}", rule="zip", path=self.path
            ) from exc
        try:
            hazards = zip_hazards(self._zip, self.path)
            if hazards.whole:
                raise SiardError(hazards.whole[0], rule="zip", path=self.path)
            if hazards.entries:
                name, text = next(iter(hazards.entries.items()))
                raise SiardError(f"{name} {text}", rule="zip", entry=name, path=self.path)
            try:
                self._zip.getinfo(METADATA_ENTRY)
            except KeyError:
                raise SiardError(
                    f"{self.path.name} has no {METADATA_ENTRY} (P_4.2-5)",
                    rule="structure",
                    entry=METADATA_ENTRY,
                    path=self.path,
                ) from None
            try:
                data = _read_limited(self._zip, METADATA_ENTRY, MAX_METADATA_BYTES)
            except _ZIP_ERRORS as exc:
                raise SiardError(
                    f"{METADATA_ENTRY} cannot be read from the zip: {exc}",
                    rule="zip",
                    entry=METADATA_ENTRY,
                    path=self.path,
                ) from exc
            if declares_doctype(data):
                raise SiardError(
                    f"{METADATA_ENTRY} declares a DOCTYPE: DTDs and entities are refused in "
                    "SIARD XML (G_3.1-1)",
                    rule="xml-entities",
                    entry=METADATA_ENTRY,
                    path=self.path,
                )
            self.archive: Archive = parse_metadata(data)
        except BaseException:
            self._zip.close()
            raise

    # -- life cycle -------------------------------------------------------------

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SiardReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- looking up -------------------------------------------------------------

    def table(self, schema: Schema | str, table: Table | str) -> tuple[Schema, Table]:
        """The schema and table of the metadata, given either as model objects or by name."""
        schema_name = schema if isinstance(schema, str) else schema.name
        table_name = table if isinstance(table, str) else table.name
        for s in self.archive.schemas:
            if s.name != schema_name:
                continue
            for t in s.tables:
                if t.name == table_name:
                    return s, t
        raise SiardError(
            f"{self.path.name}: metadata.xml has no table {schema_name}.{table_name}",
            rule="structure",
            table=f"{schema_name}.{table_name}",
            path=self.path,
        )

    def _open_table(self, schema: Schema, table: Table) -> tuple[str, IO[bytes]]:
        entry = self.archive.entry(schema, table)
        label = table_label(schema, table)
        try:
            with self._zip.open(entry) as head:
                tag, doctype = table_root(head)
            stream = self._zip.open(entry)
        except KeyError:
            raise SiardError(
                f"{label}: {entry} is missing (P_4.2-3)",
                rule="structure",
                table=label,
                entry=entry,
                path=self.path,
            ) from None
        except _ZIP_ERRORS as exc:
            raise SiardError(
                f"{label}: {entry} cannot be read from the zip: {exc}",
                rule="zip",
                table=label,
                entry=entry,
                path=self.path,
            ) from exc
        if doctype:
            stream.close()
            raise SiardError(
                f"{entry} ({label}) declares a DOCTYPE: DTDs and entities are refused in SIARD XML",
                rule="xml-entities",
                table=label,
                entry=entry,
                path=self.path,
            )
        if tag is not None and tag != _TABLE:
            stream.close()
            raise SiardError(
                f"{label}: the root of {entry} is {tag}, not a SIARD 2.1/2.2 table "
                f"({_TABLE}); only SIARD 2.1 and 2.2 tables are read (SIARD 2.0 and 1.0 "
                "name their tables otherwise)",
                rule="structure",
                table=label,
                entry=entry,
                path=self.path,
            )
        return entry, stream

    # -- rows -------------------------------------------------------------------

    def rows(self, schema: Schema | str, table: Table | str) -> Iterator[list[Any]]:
        """Every row of a table, in file order, as a list with one value per column.

        A NULL (an omitted cell) is None; other values follow the row-value
        contract of ``types.value_parser``. Raises ``SiardError`` (rule
        ``table-xsd`` for XML or a value the column's type does not allow,
        ``zip`` for a damaged entry, ``lob`` for an unreadable LOB file,
        ``xml-entities`` for a DOCTYPE).
        """
        s, t = self.table(schema, table)
        return self._rows(s, t)

    def _elements(self, schema: Schema, table: Table) -> Iterator[Any]:
        """The ``row`` elements of a table's XML, each cleared after the caller's turn."""
        label = table_label(schema, table)
        entry, stream = self._open_table(schema, table)
        count = 0
        with stream:
            events = etree.iterparse(
                stream,
                events=("end",),
                tag=_ROW,
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                huge_tree=False,
            )
            try:
                for _, element in events:
                    if count == 0:
                        refused = _doctype_error(element.getroottree().docinfo, label, entry)
                        if refused is not None:
                            raise refused
                    yield element
                    element.clear()
                    count += 1
                    if count % _DROP_EVERY == 0:
                        # Only rows already given out: lxml parses ahead of the events,
                        # so rows after this one may be in the tree, not yet handed over.
                        parent = element.getparent()
                        del parent[: parent.index(element)]
                root = events.root
                if count == 0 and root is not None:
                    refused = _doctype_error(root.getroottree().docinfo, label, entry)
                    if refused is not None:
                        raise refused
            except etree.XMLSyntaxError as exc:
                raise SiardError(
                    f"{label}: {entry} is not well-formed XML after {count:,} rows: {exc}"
                    " (T_6.0-2)",
                    rule="table-xsd",
                    table=label,
                    entry=entry,
                    path=self.path,
                ) from exc
            except _ZIP_ERRORS as exc:
                raise SiardError(
                    f"{label}: {entry} is damaged in the zip: {exc}",
                    rule="zip",
                    table=label,
                    entry=entry,
                    path=self.path,
                ) from exc

    def _rows(self, schema: Schema, table: Table) -> Iterator[list[Any]]:
        label = table_label(schema, table)
        entry = self.archive.entry(schema, table)
        columns = table.columns
        width = len(columns)
        lookup = {
            f"{{{TABLE_NS}}}c{i + 1}": (i, value_parser(column.type))
            for i, column in enumerate(columns)
        }
        for count, element in enumerate(self._elements(schema, table)):
            row: list[Any] = [None] * width
            for cell in element:
                try:
                    index, parser = lookup[cell.tag]
                except KeyError:
                    raise self._bad_cell(label, entry, count, cell, None) from None
                text = cell.text
                if text is None:
                    file = cell.get("file")
                    if file is not None:
                        row[index] = self._lob(schema, table, columns[index], file, entry)
                        continue
                    text = ""
                try:
                    row[index] = parser(text)
                except ValueError:
                    raise self._bad_cell(label, entry, count, cell, columns[index]) from None
            yield row

    def _bad_cell(
        self, label: str, entry: str, index: int, cell: Any, column: Column | None
    ) -> SiardError:
        name = etree.QName(cell).localname
        if column is None:
            what = f"a cell <{name}> that is no column of the table"
        else:
            value = (cell.text or "")[:40]
            what = f"{value!r} in {name} ({column.name}), not of type {column.type}"
        return SiardError(
            f"{label}: {entry} row {index + 1:,} holds {what} (T_6.0-1)",
            rule="table-xsd",
            table=label,
            entry=entry,
            path=self.path,
        )

    def _lob(self, schema: Schema, table: Table, column: Column, file: str, entry: str) -> Any:
        label = table_label(schema, table)
        try:
            name = lob_name(self._zip.NameToInfo, self.archive, schema, table, column, file)
        except SiardError as exc:
            raise SiardError(
                f"{label}: {entry} points column {column.name} to {file!r}, "
                "which is not inside the archive (LOBs outside it are not read)",
                rule="lob",
                table=label,
                entry=entry,
                path=self.path,
            ) from exc
        if name not in self._zip.NameToInfo:
            raise SiardError(
                f"{label}: LOB {name} of column {column.name} is not in the archive (T_6.4-5)",
                rule="lob",
                table=label,
                entry=name,
                path=self.path,
            )
        try:
            data = self._zip.read(name)
        except _ZIP_ERRORS as exc:
            raise SiardError(
                f"{label}: LOB {name} of column {column.name} cannot be read: {exc}",
                rule="zip",
                table=label,
                entry=name,
                path=self.path,
            ) from exc
        if base_type(column.type) in BINARY_TYPES:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SiardError(
                f"{label}: LOB {name} of text column {column.name} is not UTF-8: {exc}",
                rule="lob",
                table=label,
                entry=name,
                path=self.path,
            ) from exc

    def table_count(self, schema: Schema | str, table: Table | str) -> int:
        """The rows a table's XML really holds (counted, not taken from the metadata)."""
        s, t = self.table(schema, table)
        return sum(1 for _ in self._elements(s, t))


def open_siard(path: str | Path) -> SiardReader:
    """Open a SIARD archive for reading: ``with open_siard(p) as siard: siard.rows(s, t)``.

    Raises ``SiardError`` when the file is no zip or its metadata.xml is
    missing or unreadable (rules ``zip``, ``structure``, ``xml-entities``, ...).
    """
    return SiardReader(path)
