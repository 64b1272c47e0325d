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

from dataclasses import dataclass, field
from datetime import date

__all__ = [
    "METADATA_NS",
    "SIARD_VERSION",
    "TABLE_NS",
    "Archive",
    "Column",
    "ForeignKey",
    "Key",
    "Schema",
    "Table",
    "View",
]

SIARD_VERSION = "2.2"
METADATA_NS = "http://www.bar.admin.ch/xmlns/siard/2/metadata.xsd"
TABLE_NS = "http://www.bar.admin.ch/xmlns/siard/2/table.xsd"


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
        return f"content/{schema.folder}/{table.folder}/{table.folder}.xml"
