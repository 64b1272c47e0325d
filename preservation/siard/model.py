"""What a SIARD archive says about its database, as plain values.

One model for both directions: the exporter fills it from SQLAlchemy
reflection and writes it as ``header/metadata.xml``; the reader parses
``metadata.xml`` back into it, and the validator, the characterisation, the
loader and the access copies (SQLite, CSV) all work from it. Names are kept
as the database spelled them (SIARD stores delimited identifiers unquoted);
types are SQL:2008 type strings (``INTEGER``, ``CHARACTER VARYING(255)``,
``TIMESTAMP WITH TIME ZONE(6)``, the precision where the metadata
XSD's pattern puts it), the only type vocabulary the format has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

__all__ = [
    "MAX_METADATA_BYTES",
    "METADATA_NS",
    "ROW_TAG",
    "SIARD_VERSION",
    "TABLE_NS",
    "TABLE_TAG",
    "XSI_NS",
    "Progress",
    "Archive",
    "Column",
    "ForeignKey",
    "Key",
    "Schema",
    "Table",
    "View",
    "first_line",
    "table_entry",
    "table_folder",
    "table_label",
]

SIARD_VERSION = "2.2"
METADATA_NS = "http://www.bar.admin.ch/xmlns/siard/2/metadata.xsd"
TABLE_NS = "http://www.bar.admin.ch/xmlns/siard/2/table.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: The elements of a table's XML, as lxml names them (``{namespace}local``).
ROW_TAG = f"{{{TABLE_NS}}}row"
TABLE_TAG = f"{{{TABLE_NS}}}table"
#: More than this in metadata.xml is taken for a zip bomb, not a database's structure.
MAX_METADATA_BYTES = 256 * 1024 * 1024

#: ``progress("schema.table", rows_done, rows_expected)``, called per batch of rows.
Progress = Callable[[str, int, int], None]


@dataclass
class Column:
    """One column: ``type`` is SQL:2008; ``type_original`` is the source DBMS's own spelling."""

    name: str
    type: str
    type_original: str | None = None
    nullable: bool = True
    default_value: str | None = None
    description: str | None = None
    #: ``lobFolder`` of the column, relative to the archive's (LOB columns only).
    lob_folder: str | None = None
    mime_type: str | None = None


@dataclass
class Key:
    """A primary or candidate (unique) key."""

    name: str
    columns: list[str]
    description: str | None = None


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    referenced_schema: str
    referenced_table: str
    referenced_columns: list[str]
    delete_action: str | None = None
    update_action: str | None = None
    description: str | None = None


@dataclass
class Table:
    """``folder`` is the table's folder under its schema's (``table0``); ``rows`` is as recorded."""

    name: str
    folder: str
    columns: list[Column]
    rows: int = 0
    description: str | None = None
    primary_key: Key | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    candidate_keys: list[Key] = field(default_factory=list)


@dataclass
class View:
    """A view is kept as metadata only: its query and its columns, never its rows."""

    name: str
    columns: list[Column]
    query: str | None = None
    query_original: str | None = None
    description: str | None = None


@dataclass
class Schema:
    name: str
    folder: str
    tables: list[Table] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    description: str | None = None


@dataclass
class Archive:
    """The whole of ``metadata.xml`` that this project writes and reads."""

    dbname: str
    schemas: list[Schema]
    data_owner: str = "(unknown)"
    data_origin_timespan: str = "(unknown)"
    archival_date: date | None = None
    description: str | None = None
    archiver: str | None = None
    archiver_contact: str | None = None
    producer_application: str | None = None
    database_product: str | None = None
    connection: str | None = None
    database_user: str | None = None
    lob_folder: str | None = None

    def tables(self) -> list[tuple[Schema, Table]]:
        """Every table with its schema, in archive order."""
        return [(s, t) for s in self.schemas for t in s.tables]

    def entry(self, schema: Schema, table: Table) -> str:
        """The zip entry of a table's XML: ``content/schema0/table0/table0.xml``."""
        return table_entry(schema, table)


def table_entry(schema: Schema, table: Table, suffix: str = ".xml") -> str:
    """The zip entry of a table's XML (``content/schema0/table0/table0.xml``), or its ``.xsd``."""
    return f"{table_folder(schema, table)}{table.folder}{suffix}"


def table_folder(schema: Schema, table: Table) -> str:
    """A table's folder in the zip, with its trailing slash: ``content/schema0/table0/``.

    Our archives' LOB columns name it as their ``lobFolder`` (see ``metadata``),
    so a LOB's entry is this folder and the cell's ``file``.
    """
    return f"content/{schema.folder}/{table.folder}/"


def table_label(schema: Schema | str, table: Table | str) -> str:
    """How messages name a table: ``schema.table``, as the database spelled them."""
    s = schema if isinstance(schema, str) else schema.name
    t = table if isinstance(table, str) else table.name
    return f"{s}.{t}"


def first_line(err: BaseException) -> str:
    """The first line of a database error, for a one-line message.

    SQLAlchemy wraps the driver's error (``orig``) in text of its own (the
    statement, a link); the driver's own first line is what names the cause.
    PostgreSQL's further lines (DETAIL, HINT, LINE with a caret) need the
    statement beside them to make sense.
    """
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
