"""Is this zip a sound SIARD 2.2 archive? Every problem as a finding, never an exception.

Ingest calls this on whatever arrives in a bag, so nothing in the archive is
trusted: the zip is checked from its central directory before anything is
decompressed (encryption, compression methods other than STORED and DEFLATE,
sizes that cannot be true), every XML document is parsed with entities, DTDs
and the network off and refused if it declares a DOCTYPE, and a table XSD that
imports or includes another document is refused rather than followed (lxml
would fetch it from wherever it says).

What is checked, each problem with its rule and the spec's requirement id:

- ``zip``: not a zip, truncated, an entry whose CRC-32 does not match (every
  entry is read once, through ``zipfile``, which checks it at the end), an
  encrypted entry (G_4.1-3), a compression method other than STORED or DEFLATE
  (G_4.1-2), declared sizes no real entry can have (a zip bomb or a lie), two
  entries with one name, entries that share bytes in the file or declare more
  than DEFLATE can hold in all (then nothing is inflated: ``reader.zip_hazards``);
- ``structure``: ``header/metadata.xml``, ``header/metadata.xsd`` (P_4.2-5) and
  ``header/siardversion/2.2/`` (or 2.1, P_4.2-4), nothing at the root but
  ``content/`` and ``header/`` (P_4.2-1), each table's folder holding its XML
  and XSD (P_4.2-3), no folder under ``content/`` that metadata.xml does not
  describe (P_4.3-1), entry names that stay inside the archive, files in a
  table's folder that no cell refers to, a table XML whose root is not a
  SIARD 2.1/2.2 ``table`` (2.0 and 1.0 name it otherwise);
- ``xml-entities``: a DOCTYPE (so an entity declaration) in metadata.xml, a
  table XSD or a table XML;
- ``metadata-xsd``: metadata.xml against ``schemas/siard-metadata-2.2.xsd``
  (M_5.0-1; a 2.1 archive is checked as 2.2, its version attribute aside);
- ``table-xsd``: each table's XML against its own XSD from the archive
  (T_6.0-2), streamed: lxml validates while parsing and each row is cleared;
- ``table-xsd-metadata``: the XSD's ``c1..cN`` against the metadata's
  columns: number (P_4.3-2), order of names (T_6.1-2), types (P_4.3-3),
  nullability as ``minOccurs`` (P_4.3-7);
- ``row-count``: rows counted in the XML against ``<rows>`` (P_4.3-10);
- ``lob``: a cell's LOB file exists in the zip, its ``length`` (bytes for
  binary, characters for text) and ``digest`` match (T_6.4-5).

Per table and rule the first five problems are given in full, then one more
saying how many followed. Schema errors stop being collected at a few hundred
(lxml keeps every error in memory); the rows are then counted without the schema.

Statistics for characterisation: ``schemas``, ``tables``, ``rows`` (counted,
not the metadata's), ``lob_count`` and ``lob_bytes`` (``reader.lob_files``:
the distinct files in the tables' folders other than their XML and XSD, from
the zip's listing, each once however many cells refer to it; the
characterisation tool counts the same; inlined values are part of the table
XML), ``source_dbms`` (``databaseProduct``).

Speed: the table XML is read once, validated by libxml2 as it streams; per
row, Python only counts it and looks for LOB files in the LOB columns. Measured
on bench_siard's table exported from SQLite (bigint, varchar, timestamp,
numeric, boolean, date and an escaped text column), one core of a shared
2-core machine: about 135,000 rows/s; peak RSS 43 MB at 20,000 rows and at
200,000 alike.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import re
import threading
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lxml import etree

from preservation.errors import SiardError
from preservation.siard.metadata import METADATA_XSD, parse_metadata, xml_parser
from preservation.siard.model import (
    MAX_METADATA_BYTES,
    ROW_TAG,
    TABLE_NS,
    TABLE_TAG,
    Archive,
    Column,
    Progress,
    Schema,
    Table,
    table_label,
)
from preservation.siard.reader import (
    BINARY_TYPES,
    METADATA_ENTRY,
    ZIP_ERRORS,
    declares_doctype,
    lob_files,
    lob_name,
    table_root,
    tree_has_doctype,
    zip_hazards,
)
from preservation.siard.types import base_type, is_lob, xsd_type_of

__all__ = ["RULES", "Problem", "SiardReport", "validate_siard"]

#: Every rule a problem can name.
RULES = (
    "zip",
    "structure",
    "xml-entities",
    "metadata-xsd",
    "table-xsd",
    "table-xsd-metadata",
    "row-count",
    "lob",
    "unreadable",
)

METADATA_XSD_ENTRY = "header/metadata.xsd"
VERSIONS = ("2.2", "2.1")
#: Problems per table and rule given in full; the rest are counted.
DETAILED = 5
#: Schema errors lxml may keep for one table before we stop collecting them.
MAX_SCHEMA_ERRORS = 400
#: Limit for a table XSD, read whole (metadata.xml's is ``model.MAX_METADATA_BYTES``).
MAX_XSD_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024

_XS = "http://www.w3.org/2001/XMLSchema"
_CELL = re.compile(r"^c([1-9][0-9]*)$")
_DIGESTS = {"MD5": "md5", "SHA-1": "sha1", "SHA1": "sha1", "SHA-256": "sha256", "SHA256": "sha256"}
#: Table XSD types the spec allows for one SQL:2008 type besides the usual (P_4.3-3).
_ALTERNATIVES = {
    "string": {"string", "clobType"},
    "clobType": {"clobType", "string"},
    "hexBinary": {"hexBinary", "blobType"},
    "blobType": {"blobType", "hexBinary"},
    "dateType": {"dateType", "date"},
    "timeType": {"timeType", "time"},
    "dateTimeType": {"dateTimeType", "dateTime"},
}
_TEXT_BASES = frozenset({"CHARACTER", "CHARACTER VARYING"})


@dataclass(frozen=True)
class Problem:
    """One way the archive breaks the format: where (zip entry, ``schema.table``) and which rule."""

    entry: str | None
    table: str | None
    rule: str
    message: str

    @property
    def where(self) -> str:
        """``schema.table (zip entry)``, as far as known: the CLI and findings say it alike."""
        return " ".join(x for x in (self.table, f"({self.entry})" if self.entry else None) if x)


@dataclass
class SiardReport:
    """What ``validate_siard`` found, and what the archive holds as far as it could tell."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    #: The SIARD version the ``header/siardversion/`` folder names.
    version: str | None = None
    schemas: int = 0
    tables: int = 0
    rows: int = 0
    lob_count: int = 0
    lob_bytes: int = 0
    source_dbms: str | None = None
    #: The metadata as read, for callers (None when metadata.xml could not be read).
    archive: Archive | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


_compiled = threading.local()


def _metadata_schema() -> etree.XMLSchema:
    """The shipped SIARD 2.2 metadata XSD, compiled once per thread.

    Per thread, not per process: an ``XMLSchema`` keeps the error log of its
    last validation, which two threads validating at once would mix.
    """
    schema: etree.XMLSchema | None = getattr(_compiled, "metadata", None)
    if schema is None:
        schema = etree.XMLSchema(etree.parse(str(METADATA_XSD), parser=xml_parser()))
        _compiled.metadata = schema
    return schema


def _local(qname: str | None) -> str | None:
    """The local name of a QName-valued attribute (``xs:integer`` -> ``integer``)."""
    if not qname:
        return None
    return qname.rsplit(":", 1)[-1]


def _without_namespaces(message: str) -> str:
    """An lxml message with the table namespace dropped and XML Schema's written ``xs:``."""
    return message.replace(f"{{{TABLE_NS}}}", "").replace(f"{{{_XS}}}", "xs:")


class _Tap:
    """A zip entry read for lxml: counts bytes for progress and keeps the zip's own error."""

    def __init__(self, stream: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self.stream = stream
        self.on_bytes = on_bytes
        self.error: BaseException | None = None
        self.at_end = False

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except ZIP_ERRORS as exc:
            self.error = exc
            raise
        if not data:
            self.at_end = True
        self.on_bytes(len(data))
        return data

    def drain(self) -> None:
        """Read what lxml left, so the CRC-32 is checked at the entry's end."""
        try:
            while not self.at_end and self.error is None:
                self.read(CHUNK)
        except ZIP_ERRORS:
            pass


@dataclass(frozen=True, slots=True)
class _Lob:
    """A column whose cells may name a LOB file (``binary``: its length is in bytes)."""

    tag: str
    column: Column
    binary: bool


@dataclass(frozen=True)
class _Pass:
    """One reading of a table: rows seen, whether through </table>, and what stopped it."""

    count: int
    complete: bool
    stopped: bool
    #: What lxml said when it stopped, if not already reported.
    fatal: str | None


@dataclass
class _RecordType:
    """The ``c1..cN`` of a table XSD's row type: (name, minOccurs, type's local name)."""

    cells: list[tuple[str, str, str | None]]


class _Validation:
    def __init__(self, zf: zipfile.ZipFile, report: SiardReport, progress: Progress | None) -> None:
        self.zf = zf
        self.report = report
        self.progress = progress
        self.infos: dict[str, zipfile.ZipInfo] = {}
        #: Entries not to be read at all (encrypted, absurd sizes, unknown compression).
        self.unreadable: set[str] = set()
        #: Entries already read to their end (CRC-32 checked).
        self.checked: set[str] = set()
        #: Entries found damaged (their other findings are left out).
        self.damaged: set[str] = set()
        self.detailed: Counter[tuple[str | None, str]] = Counter()
        self.more: Counter[tuple[str | None, str]] = Counter()
        self.more_entry: dict[tuple[str | None, str], str | None] = {}
        self.folders: dict[str, str] = {}
        self.pending: list[tuple[str, str, str]] = []
        self.table_bytes = 0
        self.table_done = 0
        #: LOB entries some cell refers to, and the table folders whose every row was read.
        self.referenced: set[str] = set()
        self.rows_read: set[str] = set()

    # -- recording ----------------------------------------------------------------

    def add(
        self, entry: str | None, table: str | None, rule: str, message: str, *, always: bool = False
    ) -> None:
        key = (table, rule)
        if table is not None and self.detailed[key] >= DETAILED and not always:
            self.more[key] += 1
            self.more_entry.setdefault(key, entry)
            return
        self.detailed[key] += 1
        self.report.problems.append(Problem(entry, table, rule, message))

    def flush(self) -> None:
        for (table, rule), count in self.more.items():
            self.report.problems.append(
                Problem(
                    self.more_entry[(table, rule)],
                    table,
                    rule,
                    f"{count:,} more {rule} problems like the ones above",
                )
            )
        self.more.clear()

    # -- the whole -------------------------------------------------------------------

    def run(self) -> None:
        self.check_entries()
        self.check_structure()
        archive = self.check_metadata()
        if archive is not None:
            self.report.archive = archive
            self.report.schemas = len(archive.schemas)
            self.report.tables = len(archive.tables())
            self.report.source_dbms = archive.database_product
            lobs = lob_files(archive, self.infos.values())
            self.report.lob_count = len(lobs)
            self.report.lob_bytes = sum(info.file_size for info in lobs)
            self.check_content_folders(archive)
        self.emit_entry_problems()
        if archive is not None:
            tables = archive.tables()
            self.table_bytes = sum(
                self.infos[archive.entry(s, t)].file_size
                for s, t in tables
                if archive.entry(s, t) in self.infos
            )
            for schema, table in tables:
                self.check_table(archive, schema, table)
            self.check_unreferenced()
        self.check_crcs()
        self.flush()

    # -- the zip ------------------------------------------------------------------------

    def check_entries(self) -> None:
        """What the central directory says, before anything is decompressed.

        The findings wait in ``pending`` until metadata.xml says which table
        each entry belongs to (``emit_entry_problems``).
        """
        for info in self.zf.infolist():
            name = info.filename
            if name in self.infos:
                self.pending.append((name, "zip", "is the name of two entries (G_4.1-1)"))
                self.unreadable.add(name)
            self.infos[name] = info
            if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                self.pending.append((name, "structure", "is a name that leaves the archive"))
                self.unreadable.add(name)
            if info.flag_bits & 0x1:
                self.pending.append((name, "zip", "is encrypted (G_4.1-3)"))
                self.unreadable.add(name)
            elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                self.pending.append(
                    (
                        name,
                        "zip",
                        f"is compressed with method {info.compress_type}; SIARD allows only "
                        "stored or deflate (G_4.1-2)",
                    )
                )
                self.unreadable.add(name)
        hazards = zip_hazards(self.zf, self.report.path)
        for name, text in hazards.entries.items():
            if name not in self.unreadable:
                self.pending.append((name, "zip", text))
                self.unreadable.add(name)
        if hazards.whole:
            # Nothing is inflated: not metadata.xml, not a table, not a CRC check.
            for text in hazards.whole:
                self.add(None, None, "zip", f"{self.report.path.name}: {text}")
            self.unreadable.update(self.infos)

    def emit_entry_problems(self) -> None:
        for name, rule, text in self.pending:
            table = self.table_of(name)
            self.add(name, table, rule, text)
        self.pending.clear()

    def readable(self, name: str) -> bool:
        return name in self.infos and name not in self.unreadable and name not in self.damaged

    def damage(self, name: str, table: str | None, exc: BaseException) -> None:
        self.damaged.add(name)
        self.checked.add(name)
        self.add(name, table, "zip", f"is damaged: {exc}")

    def read_whole(self, name: str, limit: int, table: str | None) -> bytes | None:
        """An entry's bytes (CRC-32 checked), or None with a finding."""
        try:
            with self.zf.open(name) as stream:
                data = stream.read(limit + 1)
        except ZIP_ERRORS as exc:
            self.damage(name, table, exc)
            return None
        self.checked.add(name)
        if len(data) > limit:
            self.add(name, table, "zip", f"holds more than {limit:,} bytes: refused")
            return None
        return data

    def check_crcs(self) -> None:
        """Every entry not read yet, read to its end: zipfile checks the CRC-32 there."""
        rest = [
            info
            for name, info in self.infos.items()
            if name not in self.checked and self.readable(name) and not info.is_dir()
        ]
        total = sum(info.file_size for info in rest)
        done = 0
        for info in rest:
            try:
                with self.zf.open(info) as stream:
                    while chunk := stream.read(CHUNK):
                        done += len(chunk)
                        if self.progress is not None:
                            self.progress("zip", done, total)
            except ZIP_ERRORS as exc:
                self.damage(info.filename, self.table_of(info.filename), exc)
            self.checked.add(info.filename)

    def check_unreferenced(self) -> None:
        """Files in a table's LOB folders that no cell refers to (only tables read to the end)."""
        for name in self.infos:
            parts = name.split("/")
            if len(parts) < 5 or parts[0] != "content" or name.endswith("/"):
                continue
            if "/".join(parts[:3]) + "/" not in self.rows_read or name in self.referenced:
                continue
            self.add(
                name,
                self.table_of(name),
                "structure",
                "is in the table's folder, but no cell of the table refers to it "
                "(P_4.2-3, P_4.3-1)",
            )

    def table_of(self, name: str) -> str | None:
        parts = name.split("/")
        if len(parts) >= 4 and parts[0] == "content":
            return self.folders.get(f"{parts[1]}/{parts[2]}")
        return None

    # -- structure ----------------------------------------------------------------------

    def check_structure(self) -> None:
        roots = sorted({name.split("/", 1)[0] for name in self.infos})
        for root in roots:
            if root not in ("content", "header"):
                self.add(
                    root,
                    None,
                    "structure",
                    "is at the archive's root: only content/ and header/ may be there (P_4.2-1)",
                )
        for name in (METADATA_ENTRY, METADATA_XSD_ENTRY):
            if name not in self.infos:
                self.add(name, None, "structure", "is missing (P_4.2-5)")
        versions = {
            name.split("/")[2]
            for name in self.infos
            if name.startswith("header/siardversion/") and len(name.split("/")) > 3
        }
        found = [v for v in VERSIONS if v in versions]
        if found:
            self.report.version = found[0]
        else:
            named = ", ".join(sorted(versions)) or "none"
            self.add(
                "header/siardversion/2.2/",
                None,
                "structure",
                f"is missing, and so is header/siardversion/2.1/ (found: {named}) (P_4.2-4)",
            )

    def check_content_folders(self, archive: Archive) -> None:
        for schema, table in archive.tables():
            self.folders[f"{schema.folder}/{table.folder}"] = table_label(schema, table)
        schema_folders = {s.folder for s in archive.schemas}
        reported: set[str] = set()
        for name in self.infos:
            parts = name.split("/")
            if parts[0] != "content" or len(parts) < 2 or parts[1] == "":
                continue
            problem = None
            if parts[1] not in schema_folders:
                where = f"content/{parts[1]}" + ("/" if len(parts) > 2 else "")
                problem = "is not the folder of a schema in metadata.xml (P_4.2-2, P_4.3-1)"
            elif len(parts) >= 3 and parts[2] and f"{parts[1]}/{parts[2]}" not in self.folders:
                where = f"content/{parts[1]}/{parts[2]}" + ("/" if len(parts) > 3 else "")
                if len(parts) == 3:
                    problem = "is a file where only table folders may be (P_4.2-2)"
                else:
                    problem = "is not the folder of a table in metadata.xml (P_4.3-1)"
            elif (
                len(parts) == 4
                and parts[3]
                and parts[3]
                not in (
                    f"{parts[2]}.xml",
                    f"{parts[2]}.xsd",
                )
            ):
                where = name
                problem = "is neither the table's XML nor its XSD, nor in a LOB folder (P_4.2-3)"
            if problem is not None and where not in reported:
                reported.add(where)
                self.add(where, self.table_of(name), "structure", problem)

    # -- metadata.xml --------------------------------------------------------------------

    def check_metadata(self) -> Archive | None:
        if not self.readable(METADATA_ENTRY):
            return None
        data = self.read_whole(METADATA_ENTRY, MAX_METADATA_BYTES, None)
        if data is None:
            return None
        tree = None
        if not declares_doctype(data):
            try:
                tree = etree.ElementTree(etree.fromstring(data, parser=xml_parser()))
            except etree.XMLSyntaxError as exc:
                self.add(
                    METADATA_ENTRY,
                    None,
                    "metadata-xsd",
                    f"is not well-formed XML: {exc} (M_5.0-1)",
                )
                return None
        if tree is None or tree_has_doctype(tree):
            self.add(
                METADATA_ENTRY,
                None,
                "xml-entities",
                "declares a DOCTYPE: DTDs and entities are refused in SIARD XML (G_3.1-1)",
            )
            return None
        root = tree.getroot()
        if root.get("version") in VERSIONS:
            root.set("version", "2.2")
        schema = _metadata_schema()
        if not schema.validate(tree):
            errors = self.schema_errors(schema.error_log)
            for error in errors[:DETAILED]:
                self.add(
                    METADATA_ENTRY,
                    None,
                    "metadata-xsd",
                    f"line {error.line}: {_without_namespaces(error.message)} (M_5.0-1)",
                )
            if len(errors) > DETAILED:
                self.add(
                    METADATA_ENTRY,
                    None,
                    "metadata-xsd",
                    f"{len(errors) - DETAILED:,} more errors against "
                    "the SIARD metadata XSD (M_5.0-1)",
                )
        try:
            return parse_metadata(data)
        except SiardError as exc:
            self.add(exc.entry or METADATA_ENTRY, exc.table, exc.rule, exc.message)
            return None

    # -- one table ------------------------------------------------------------------------

    def check_table(self, archive: Archive, schema: Schema, table: Table) -> None:
        label = table_label(schema, table)
        entry = archive.entry(schema, table)
        xsd_entry = entry[: -len(".xml")] + ".xsd"
        missing = [name for name in (entry, xsd_entry) if name not in self.infos]
        for name in missing:
            self.add(name, label, "structure", "is missing (P_4.2-3)")
        xsd = None
        record = None
        if xsd_entry not in missing and self.readable(xsd_entry):
            parsed = self.load_xsd(xsd_entry, label)
            if parsed is not None:
                xsd, record = parsed
                if record is not None:
                    self.check_xsd_against_metadata(record, table, xsd_entry, label)
        if entry in missing or not self.readable(entry):
            return
        try:
            with self.zf.open(entry) as head:
                tag, doctype = table_root(head)
        except ZIP_ERRORS as exc:
            self.damage(entry, label, exc)
            return
        if doctype:
            self.add(
                entry, label, "xml-entities", "declares a DOCTYPE: DTDs and entities are refused"
            )
            return
        if tag is not None and tag != TABLE_TAG:
            self.add(
                entry,
                label,
                "structure",
                f"its root is {tag}, not a SIARD 2.1/2.2 table ({TABLE_TAG}): only SIARD 2.1 "
                "and 2.2 tables are read (SIARD 2.0 and 1.0 name their tables otherwise)",
            )
            return
        self.stream_table(archive, schema, table, entry, label, xsd, record)

    def load_xsd(
        self, name: str, label: str
    ) -> tuple[etree.XMLSchema | None, _RecordType | None] | None:
        data = self.read_whole(name, MAX_XSD_BYTES, label)
        if data is None:
            return None
        root = None
        if not declares_doctype(data):
            try:
                root = etree.fromstring(data, parser=xml_parser())
            except etree.XMLSyntaxError as exc:
                self.add(name, label, "table-xsd", f"is not well-formed XML: {exc}")
                return None
        if root is None or tree_has_doctype(root.getroottree()):
            self.add(
                name,
                label,
                "xml-entities",
                "declares a DOCTYPE: DTDs and entities are refused",
            )
            return None
        outside = [
            str(element.get("schemaLocation"))
            for element in root.iter(
                f"{{{_XS}}}import", f"{{{_XS}}}include", f"{{{_XS}}}redefine", f"{{{_XS}}}override"
            )
            if element.get("schemaLocation")
        ]
        if outside:
            self.add(
                name,
                label,
                "table-xsd",
                f"refers to other schema documents ({', '.join(outside)}), "
                "which are not fetched: a table XSD must stand alone (T_6.1-1)",
            )
            return None
        record = self.record_type(root)
        try:
            return etree.XMLSchema(root), record
        except etree.XMLSchemaParseError as exc:
            self.add(name, label, "table-xsd", f"is not a usable XSD: {exc}")
            return None, record

    def record_type(self, root: Any) -> _RecordType | None:
        """The cells of the row type: the ``row`` element's named or inline complex type."""
        for element in root.iter(f"{{{_XS}}}element"):
            if element.get("name") != "row":
                continue
            type_name = _local(element.get("type"))
            complex_type = None
            if type_name is not None:
                for candidate in root.iterchildren(f"{{{_XS}}}complexType"):
                    if candidate.get("name") == type_name:
                        complex_type = candidate
            else:
                complex_type = element.find(f"{{{_XS}}}complexType")
            if complex_type is None:
                return None
            sequence = complex_type.find(f"{{{_XS}}}sequence")
            if sequence is None:
                return _RecordType([])
            return _RecordType(
                [
                    (
                        cell.get("name") or "",
                        cell.get("minOccurs", "1").strip(),
                        _local(cell.get("type")),
                    )
                    for cell in sequence.iterchildren(f"{{{_XS}}}element")
                ]
            )
        return None

    def check_xsd_against_metadata(
        self, record: _RecordType, table: Table, name: str, label: str
    ) -> None:
        cells, columns = record.cells, table.columns
        rule = "table-xsd-metadata"
        if len(cells) != len(columns):
            self.add(
                name,
                label,
                rule,
                f"metadata.xml has {len(columns)} columns, {name} has {len(cells)} cells (P_4.3-2)",
            )
        for number, ((cell, min_occurs, xsd_type), column) in enumerate(
            zip(cells, columns, strict=False), start=1
        ):
            if cell != f"c{number}":
                self.add(
                    name,
                    label,
                    rule,
                    f"cell {number} of {name} is <{cell}>, not <c{number}> (T_6.1-2)",
                )
                continue
            optional = min_occurs == "0"
            if optional != column.nullable:
                said = "nullable" if column.nullable else "not nullable"
                self.add(
                    name,
                    label,
                    rule,
                    f"column {column.name} is {said} in metadata.xml, but {cell} "
                    f'has minOccurs="{min_occurs}" in {name} (P_4.3-7)',
                )
            expected = self.expected_type(column)
            if expected is not None and xsd_type is not None and xsd_type not in expected:
                self.add(
                    name,
                    label,
                    rule,
                    f"column {column.name} is {column.type} in metadata.xml, but "
                    f"{cell} is of type {xsd_type} in {name} (P_4.3-3)",
                )

    @staticmethod
    def expected_type(column: Column) -> set[str] | None:
        """The table XSD types P_4.3-3 allows for a column, None for a type we do not know."""
        xsd = xsd_type_of(column.type)
        if xsd == "xs:string" and base_type(column.type) not in _TEXT_BASES:
            return None
        local = xsd.rsplit(":", 1)[-1]
        return _ALTERNATIVES.get(local, {local})

    # -- the rows ---------------------------------------------------------------------------

    def on_table_bytes(self, count: int) -> None:
        self.table_done += count
        if self.progress is not None and count:
            self.progress("tables", self.table_done, self.table_bytes)

    def stream_table(
        self,
        archive: Archive,
        schema: Schema,
        table: Table,
        entry: str,
        label: str,
        xsd: etree.XMLSchema | None,
        record: _RecordType | None,
    ) -> None:
        lobs = self.lob_columns(table, record)
        first = self.parse_rows(archive, schema, table, entry, label, xsd, lobs, skip=0)
        if first is None:
            return
        counted, complete = first.count, first.complete
        if not complete and xsd is not None:
            # Stopped by too many schema errors, or broken XML (which lxml reports
            # vaguely while validating): the rest, and the break, without the schema.
            second = self.parse_rows(
                archive, schema, table, entry, label, None, lobs, skip=first.count
            )
            if second is None:
                return
            if second.complete and first.fatal is not None and not first.stopped:
                self.add(entry, label, "table-xsd", f"{first.fatal} (T_6.0-2)")
            counted, complete = second.count, second.complete
        if complete:
            self.rows_read.add(entry.rsplit("/", 1)[0] + "/")
            self.report.rows += counted
            if counted != table.rows:
                self.add(
                    entry,
                    label,
                    "row-count",
                    f"metadata.xml says {table.rows:,} rows, the table's XML holds "
                    f"{counted:,} (P_4.3-10)",
                )

    def lob_columns(self, table: Table, record: _RecordType | None) -> list[_Lob]:
        """Cells that may hold a LOB (by metadata type or by XSD type)."""
        xsd_lob = set()
        if record is not None:
            xsd_lob = {cell for cell, _, t in record.cells if t in ("clobType", "blobType")}
        return [
            _Lob(
                f"{{{TABLE_NS}}}c{number}",
                column,
                base_type(column.type) in BINARY_TYPES,
            )
            for number, column in enumerate(table.columns, start=1)
            if is_lob(column.type) or f"c{number}" in xsd_lob
        ]

    def parse_rows(
        self,
        archive: Archive,
        schema: Schema,
        table: Table,
        entry: str,
        label: str,
        xsd: etree.XMLSchema | None,
        lobs: list[_Lob],
        skip: int,
    ) -> _Pass | None:
        """One reading of a table's XML, with or without its schema (None: damaged).

        Schema errors are reported when ``xsd`` is given, XML that is not
        well-formed when it is not (lxml's message for it is exact only then).
        With ``skip``, rows before it were seen by an earlier pass: not checked again.
        """
        try:
            stream = self.zf.open(entry)
        except ZIP_ERRORS as exc:
            self.damage(entry, label, exc)
            return None
        tap = _Tap(stream, self.on_table_bytes if skip == 0 else lambda n: None)
        count = 0
        ended = stopped = False
        kwargs: dict[str, Any] = {"schema": xsd} if xsd is not None else {}
        # The table's own end is asked for too: with a schema, lxml may report a
        # document cut off or broken after a schema error as that schema error,
        # so having seen </table> is what says every row was counted.
        events = etree.iterparse(
            tap,
            events=("end",),
            tag=(ROW_TAG, TABLE_TAG),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            **kwargs,
        )
        fatal: BaseException | None = None
        with stream:
            try:
                # A DOCTYPE was refused by check_table, from the bytes and the root's parse.
                for _, row in events:
                    parent = row.getparent()
                    if parent is None:
                        ended = True
                        continue
                    if lobs and count >= skip:
                        self.check_lob_cells(archive, schema, table, row, lobs, label)
                    row.clear()
                    count += 1
                    if count % 1024 == 0:
                        # Only rows seen: lxml parses ahead, later rows may be in the tree.
                        del parent[: parent.index(row)]
                        if xsd is not None and len(events.error_log) > MAX_SCHEMA_ERRORS:
                            stopped = True
                            break
            except etree.XMLSyntaxError as exc:
                fatal = exc
            except ZIP_ERRORS as exc:
                fatal = exc
            if tap.error is None and not stopped:
                tap.drain()
        self.checked.add(entry)
        if tap.error is not None:
            self.damage(entry, label, tap.error)
            return None
        complete = ended or (fatal is None and not stopped)
        # The parser's own log: an exception's error_log may hold older parses' errors.
        errors = self.schema_errors(events.error_log)
        shown: set[str] = set()
        for error in errors:
            if (error.domain_name == "PARSER") == (xsd is not None):
                continue
            message = self.describe(error.message, table)
            if message in shown:
                continue
            shown.add(message)
            if xsd is None:
                complete = False
                text = f"is not well-formed XML after {count:,} rows: {message} (line {error.line})"
            else:
                text = f"{message}"
            self.add(entry, label, "table-xsd", text + " (T_6.0-2)")
        if stopped:
            self.add(
                entry,
                label,
                "table-xsd",
                f"more than {MAX_SCHEMA_ERRORS} errors against its XSD; "
                f"not checked beyond row {count:,} (T_6.0-2)",
                always=True,
            )
        elif xsd is None and not complete and not shown:
            self.add(
                entry,
                label,
                "table-xsd",
                f"is not well-formed XML after {count:,} rows: "
                f"{fatal or 'it ends before </table>'} (T_6.0-2)",
            )
        detail = None
        if fatal is not None:
            detail = self.describe(str(fatal), table)
            if detail in shown or xsd is None:
                detail = None
        return _Pass(count, complete, stopped, detail)

    @staticmethod
    def schema_errors(log: Any) -> list[Any]:
        """The errors (not warnings) of an lxml error log."""
        return [e for e in log if e.level_name in ("ERROR", "FATAL")]

    @staticmethod
    def describe(message: str, table: Table) -> str:
        """An lxml message with the namespace dropped and each cell named by its column."""
        message = _without_namespaces(message)

        def name(match: re.Match[str]) -> str:
            number = int(match.group(1))
            if 1 <= number <= len(table.columns):
                return f"'c{number}' ({table.columns[number - 1].name})"
            return match.group(0)

        return re.sub(r"'c([0-9]+)'", name, message)

    # -- LOBs -------------------------------------------------------------------------------

    def check_lob_cells(
        self,
        archive: Archive,
        schema: Schema,
        table: Table,
        row: Any,
        lobs: list[_Lob],
        label: str,
    ) -> None:
        for lob in lobs:
            cell = row.find(lob.tag)
            if cell is None:
                continue
            file = cell.get("file")
            if file is not None:
                self.check_lob_file(archive, schema, table, lob, cell, file, label)

    def check_lob_file(
        self,
        archive: Archive,
        schema: Schema,
        table: Table,
        lob: _Lob,
        cell: Any,
        file: str,
        label: str,
    ) -> None:
        column, binary = lob.column, lob.binary
        entry = archive.entry(schema, table)
        try:
            name = lob_name(self.infos, archive, schema, table, column, file)
        except SiardError:
            self.add(
                entry,
                label,
                "lob",
                f"column {column.name} points to {file!r}, outside the archive "
                "(LOBs outside it are not checked)",
            )
            return
        self.referenced.add(name)
        if name not in self.infos:
            self.add(
                name,
                label,
                "lob",
                f"column {column.name} points to {name}, which is not in the archive (T_6.4-5)",
            )
            return
        if not self.readable(name):
            return
        digest_type = (cell.get("digestType") or "").strip().upper()
        algorithm = _DIGESTS.get(digest_type)
        measured = self.measure_lob(name, label, binary, algorithm)
        if measured is None:
            return
        length, digest = measured
        unit = "bytes" if binary else "characters"
        declared = cell.get("length")
        if declared is not None:
            try:
                expected = int(declared)
            except ValueError:
                expected = -1
            if expected != length:
                self.add(
                    name,
                    label,
                    "lob",
                    f"column {column.name}: the file holds {length:,} {unit}, the "
                    f"cell says length {declared} (T_6.4-5)",
                )
        declared_digest = cell.get("digest")
        if declared_digest:
            if algorithm is None:
                self.add(
                    name,
                    label,
                    "lob",
                    f"column {column.name}: digestType {digest_type or '(none)'} "
                    f"of {name} is not MD5, SHA-1 or SHA-256 (T_6.2-1)",
                )
            elif digest is not None and not _digest_matches(declared_digest, digest):
                self.add(
                    name,
                    label,
                    "lob",
                    f"column {column.name}: the file has {digest_type} "
                    f"{digest.hex()}, the cell says {declared_digest} (T_6.4-5)",
                )

    def measure_lob(
        self, name: str, label: str, binary: bool, algorithm: str | None
    ) -> tuple[int, bytes | None] | None:
        """Length (bytes or characters) and digest of a LOB entry, read once in chunks."""
        hasher = hashlib.new(algorithm) if algorithm else None
        decoder = None if binary else codecs.getincrementaldecoder("utf-8")()
        length = 0
        try:
            with self.zf.open(name) as stream:
                while chunk := stream.read(CHUNK):
                    if hasher is not None:
                        hasher.update(chunk)
                    if decoder is None:
                        length += len(chunk)
                    else:
                        length += len(decoder.decode(chunk))
                if decoder is not None:
                    length += len(decoder.decode(b"", final=True))
        except ZIP_ERRORS as exc:
            self.damage(name, label, exc)
            return None
        except UnicodeDecodeError as exc:
            self.checked.add(name)
            self.add(name, label, "lob", f"is the file of a text column, and not UTF-8: {exc}")
            return None
        self.checked.add(name)
        return length, hasher.digest() if hasher is not None else None


def _digest_matches(declared: str, digest: bytes) -> bool:
    """Hexadecimal in either case, or Base64 for the SHA variants (metadata.xsd's digestType)."""
    declared = declared.strip()
    if declared.lower() == digest.hex():
        return True
    try:
        return base64.b64decode(declared, validate=True) == digest
    except (ValueError, TypeError):
        return False


def validate_siard(path: str | Path, *, progress: Progress | None = None) -> SiardReport:
    """Check a SIARD archive (see the module notes); ``report.valid`` when nothing was found.

    ``progress(step, done, total)`` is called as table XML is read (step
    ``"tables"``, bytes) and as the remaining entries' CRCs are checked
    (step ``"zip"``, bytes).
    """
    report = SiardReport(path=Path(path))
    try:
        zf = zipfile.ZipFile(report.path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        report.problems.append(
            Problem(
                None,
                None,
                "zip",
                f"{report.path.name} is not a readable zip archive: {exc} (G_4.1-1)",
            )
        )
        return report
    with zf:
        validation = _Validation(zf, report, progress)
        try:
            validation.run()
        except Exception as exc:  # noqa: BLE001 - a bad archive is a finding, whatever breaks
            validation.flush()
            report.problems.append(
                Problem(
                    None,
                    None,
                    "unreadable",
                    f"{report.path.name} could not be checked to the end: "
                    f"{type(exc).__name__}: {exc}",
                )
            )
    return report
