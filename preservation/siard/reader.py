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
``SiardError`` rule ``lob``. Nor is one that declares more than
``MAX_LOB_BYTES`` (1 GiB): a LOB is read whole, as one value, so its size
is bounded, not only its compression ratio.

Structured cells (ARRAY, UDT) are not part of the model and are not read.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

from lxml import etree

from preservation.errors import SiardError
from preservation.siard.metadata import lob_entry, parse_metadata
from preservation.siard.model import (
    MAX_METADATA_BYTES,
    ROW_TAG,
    TABLE_NS,
    TABLE_TAG,
    Archive,
    Column,
    Schema,
    Table,
    table_entry,
    table_folder,
    table_label,
)
from preservation.siard.types import base_type, value_parser

__all__ = [
    "MAX_LOB_BYTES",
    "METADATA_ENTRY",
    "ZIP_ERRORS",
    "SiardReader",
    "ZipHazards",
    "declares_doctype",
    "lob_files",
    "lob_name",
    "naming_archive",
    "open_siard",
    "table_root",
    "tree_has_doctype",
    "zip_hazards",
]

METADATA_ENTRY = "header/metadata.xml"
#: Base types whose LOB files are bytes; every other LOB is text.
BINARY_TYPES = frozenset({"BINARY", "BINARY VARYING", "BINARY LARGE OBJECT", "DATALINK"})

#: No DEFLATE stream expands more than about 1032 times, so neither does a zip of them.
MAX_DEFLATE_RATIO = 1100

#: A LOB file is read whole into memory, as one cell's value: one declaring more than this
#: (a 1 GiB BLOB is already more than a row of an access copy should carry) is refused
#: rather than read, whatever its compression ratio; DEFLATE's ratio alone would let a
#: 1 GB archive hold a 1 TB LOB.
MAX_LOB_BYTES = 1024 * 1024 * 1024
#: Read rows are dropped from the tree this often (a clear per row, a delete per batch).
_DROP_EVERY = 1024
#: What reading a damaged zip entry raises: zipfile raises RuntimeError for an encrypted
#: entry, NotImplementedError for a compression method it does not know.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)
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


def tree_has_doctype(tree: Any) -> bool:
    """Whether a parsed document (an lxml ``ElementTree``) declares a DOCTYPE or a DTD.

    The check after parsing, beside ``declares_doctype`` before it: one for
    every XML document of an archive (metadata.xml, a table XSD, a table's XML).
    """
    docinfo = tree.docinfo
    return bool(docinfo.doctype) or docinfo.internalDTD is not None


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
                doctype = tree_has_doctype(element.getroottree())
                return element.tag, doctype or declares_doctype(seen)
        except etree.XMLSyntaxError:
            return None, declares_doctype(seen)
    return None, declares_doctype(seen)


def lob_files(archive: Archive, infos: Iterable[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The archive's LOB files: entries in a table's folder other than its XML and XSD.

    Counted from the zip's listing (``infos``), each file once, however many
    cells refer to it (or whether any does): the ``lob_count`` and
    ``lob_bytes`` of characterisation and of validation's statistics alike.
    """
    own = {
        table_folder(s, t): (table_entry(s, t), table_entry(s, t, ".xsd"))
        for s, t in archive.tables()
    }
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if info.is_dir() or len(parts) < 4 or parts[0] != "content":
            continue
        folder = "/".join(parts[:3]) + "/"
        if folder in own and name not in own[folder]:
            files.setdefault(name, info)
    return list(files.values())


@contextmanager
def naming_archive(path: str | Path) -> Iterator[None]:
    """A ``SiardError`` from within names the archive file once: ``<path>: <message>``.

    For callers that read an archive (load, access copies, a bag): the reader's
    own messages name an entry or a table, not which file it is in.
    """
    try:
        yield
    except SiardError as err:
        name = str(path)
        if name not in err.message and Path(path).name not in err.message:
            err.message = f"{name}: {err.message}"
            err.args = (err.message,)
        if err.path is None:
            err.path = name
        raise


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
            raise self._error(
                None, None, "zip", f"{self.path.name} is not a readable zip: {exc}"
            ) from exc
        try:
            hazards = zip_hazards(self._zip, self.path)
            if hazards.whole:
                raise self._error(None, None, "zip", hazards.whole[0])
            if hazards.entries:
                name, text = next(iter(hazards.entries.items()))
                raise self._error(None, name, "zip", f"{name} {text}")
            try:
                self._zip.getinfo(METADATA_ENTRY)
            except KeyError:
                raise self._error(
                    None,
                    METADATA_ENTRY,
                    "structure",
                    f"{self.path.name} has no {METADATA_ENTRY} (P_4.2-5)",
                ) from None
            try:
                data = _read_limited(self._zip, METADATA_ENTRY, MAX_METADATA_BYTES)
            except ZIP_ERRORS as exc:
                raise self._error(
                    None,
                    METADATA_ENTRY,
                    "zip",
                    f"{METADATA_ENTRY} cannot be read from the zip: {exc}",
                ) from exc
            if declares_doctype(data):
                raise self._error(
                    None,
                    METADATA_ENTRY,
                    "xml-entities",
                    f"{METADATA_ENTRY} declares a DOCTYPE: DTDs and entities are refused in "
                    "SIARD XML (G_3.1-1)",
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

    def _error(self, table: str | None, entry: str | None, rule: str, message: str) -> SiardError:
        """The ``SiardError`` to raise for this archive, naming the table and entry it is about."""
        return SiardError(message, rule=rule, table=table, entry=entry, path=self.path)

    # -- looking up -------------------------------------------------------------

    def infolist(self) -> list[zipfile.ZipInfo]:
        """The zip's entries, as its central directory lists them (nothing is inflated)."""
        return self._zip.infolist()

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
        raise self._error(
            f"{schema_name}.{table_name}",
            None,
            "structure",
            f"{self.path.name}: metadata.xml has no table {schema_name}.{table_name}",
        )

    def _open_table(self, schema: Schema, table: Table) -> tuple[str, IO[bytes]]:
        entry = self.archive.entry(schema, table)
        label = table_label(schema, table)
        try:
            with self._zip.open(entry) as head:
                tag, doctype = table_root(head)
            stream = self._zip.open(entry)
        except KeyError:
            raise self._error(
                label, entry, "structure", f"{label}: {entry} is missing (P_4.2-3)"
            ) from None
        except ZIP_ERRORS as exc:
            raise self._error(
                label, entry, "zip", f"{label}: {entry} cannot be read from the zip: {exc}"
            ) from exc
        if doctype:
            stream.close()
            raise self._error(
                label,
                entry,
                "xml-entities",
                f"{entry} ({label}) declares a DOCTYPE: DTDs and entities are refused in SIARD XML",
            )
        if tag is not None and tag != TABLE_TAG:
            stream.close()
            raise self._error(
                label,
                entry,
                "structure",
                f"{label}: the root of {entry} is {tag}, not a SIARD 2.1/2.2 table "
                f"({TABLE_TAG}); only SIARD 2.1 and 2.2 tables are read (SIARD 2.0 and 1.0 "
                "name their tables otherwise)",
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
                tag=ROW_TAG,
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                huge_tree=False,
            )
            try:
                # A DOCTYPE was refused by _open_table, from the bytes and the root's parse.
                for _, element in events:
                    yield element
                    element.clear()
                    count += 1
                    if count % _DROP_EVERY == 0:
                        # Only rows already given out: lxml parses ahead of the events,
                        # so rows after this one may be in the tree, not yet handed over.
                        parent = element.getparent()
                        del parent[: parent.index(element)]
            except etree.XMLSyntaxError as exc:
                raise self._error(
                    label,
                    entry,
                    "table-xsd",
                    f"{label}: {entry} is not well-formed XML after {count:,} rows: {exc}"
                    " (T_6.0-2)",
                ) from exc
            except ZIP_ERRORS as exc:
                raise self._error(
                    label, entry, "zip", f"{label}: {entry} is damaged in the zip: {exc}"
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
                        row[index] = self._lob(schema, table, columns[index], file, entry, count)
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
        return self._error(
            label, entry, "table-xsd", f"{label}: {entry} row {index + 1:,} holds {what} (T_6.0-1)"
        )

    def _lob(
        self, schema: Schema, table: Table, column: Column, file: str, entry: str, row: int
    ) -> Any:
        label = table_label(schema, table)
        try:
            name = lob_name(self._zip.NameToInfo, self.archive, schema, table, column, file)
        except SiardError as exc:
            raise self._error(
                label,
                entry,
                "lob",
                f"{label}: {entry} points column {column.name} to {file!r}, "
                "which is not inside the archive (LOBs outside it are not read)",
            ) from exc
        if name not in self._zip.NameToInfo:
            raise self._error(
                label,
                name,
                "lob",
                f"{label}: LOB {name} of column {column.name} is not in the archive (T_6.4-5)",
            )
        size = self._zip.NameToInfo[name].file_size
        if size > MAX_LOB_BYTES:
            raise self._error(
                label,
                name,
                "lob",
                f"{label}: {entry} row {row + 1:,} points column {column.name} to LOB {name} "
                f"of {size:,} bytes: more than {MAX_LOB_BYTES:,}, which is read into memory "
                "as one value; refused",
            )
        try:
            data = self._zip.read(name)
        except ZIP_ERRORS as exc:
            raise self._error(
                label,
                name,
                "zip",
                f"{label}: LOB {name} of column {column.name} cannot be read: {exc}",
            ) from exc
        if base_type(column.type) in BINARY_TYPES:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._error(
                label,
                name,
                "lob",
                f"{label}: LOB {name} of text column {column.name} is not UTF-8: {exc}",
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
