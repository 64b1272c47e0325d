"""``header/metadata.xml`` and the table XSDs, written from the model and read back into it.

Conventions of the archives we write (the reader accepts others where the
spec allows them):

- Layout: ``header/metadata.xml``, ``header/metadata.xsd`` (a copy of
  ``schemas/siard-metadata-2.2.xsd``), ``header/siardversion/2.2/``;
  ``content/schemaN/tableM/tableM.xml`` and ``tableM.xsd``, N and M from 0.
- LOBs: a value of a LOB column (BLOB, CLOB, XML) larger than the exporter's
  threshold is the zip entry ``content/schemaN/tableM/lobK/recordR.bin`` (binary)
  or ``.txt`` (text, UTF-8, not escaped), K the column's number (1-based, as in
  ``cK``), R the row's index in the table (0-based). Its cell is
  ``<cK file="lobK/recordR.bin" length="..." digestType="SHA-256" digest="..."/>``:
  ``length`` in bytes for binary, in characters for text (T_6.2-1); ``digest``
  the lower-case hex SHA-256 of the entry's bytes.
- Where the file is, in one rule: ``file`` is relative to the column's
  ``lobFolder``, which is relative to the archive's ``lobFolder``. We write no
  archive ``lobFolder`` (the zip's root) and, for every LOB column, the column
  ``lobFolder`` ``content/schemaN/tableM/`` (trailing slash). A reader joins
  archive lobFolder (default ``""``) + column lobFolder (default ``""``) +
  ``file`` and normalises the result to a zip entry name.
- Text in metadata.xml (names, descriptions, queries) is escaped with
  ``text.escape_chars`` (what XML cannot hold, CR and the backslash) and
  unescaped on reading (G_3.3-3 applies to all fields).
- Types are SQL:2008 strings as ``types.sql2008_of`` writes them; ``nullable``
  is always written, and the table XSD's ``minOccurs="0"`` says the same.
- ``users`` is mandatory in the XSD; we list the database user we read as.

``parse_metadata`` reads with external entities, the network and DTDs off; a
document with a DOCTYPE is refused (``SiardError(rule="xml-entities")``), as is
one that is not well-formed or lacks what the model needs (``rule="metadata-xsd"``).
It does not validate against the XSD: the validator does that, and reports.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree

from preservation.errors import SiardError
from preservation.siard.model import (
    METADATA_NS,
    SIARD_VERSION,
    TABLE_NS,
    XSI_NS,
    Archive,
    Column,
    ForeignKey,
    Key,
    Schema,
    Table,
    View,
)
from preservation.siard.text import escape_chars, unescape
from preservation.siard.types import xsd_type_of

__all__ = [
    "METADATA_XSD",
    "REFERENTIAL_ACTIONS",
    "lob_entry",
    "metadata_xml",
    "parse_metadata",
    "table_xsd",
    "xml_parser",
]

#: The SIARD 2.2 metadata XSD this project ships (copied into every archive as header/metadata.xsd).
METADATA_XSD = Path(__file__).resolve().parents[2] / "schemas" / "siard-metadata-2.2.xsd"

#: The referential actions the metadata XSD allows.
REFERENTIAL_ACTIONS = frozenset({"CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION"})

_M = "{" + METADATA_NS + "}"
_NSMAP: Any = {None: METADATA_NS, "xsi": XSI_NS}


def xml_parser() -> etree.XMLParser:
    """The parser for anything inside a SIARD archive: no entities, no network, no DTD."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def lob_entry(
    schema: Schema, table: Table, column: Column, file: str, archive_lob_folder: str | None = None
) -> str:
    """The zip entry a cell's ``file`` names: archive + column ``lobFolder`` + ``file``, normalised.

    A ``file:`` scheme prefix is dropped and %-escapes decoded (G_3.4-2); an
    absolute path starts again from the zip's root; ``..`` segments are resolved
    and may not leave the archive (``SiardError(rule="lob")``: external LOBs are
    not supported).
    """
    parts: list[str] = []
    for piece in (archive_lob_folder or "", column.lob_folder or "", file):
        if piece.startswith("file:"):
            piece = piece[len("file:") :]
        piece = unquote(piece)
        if piece.startswith("/"):
            parts = []
        for segment in piece.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if not parts:
                    raise SiardError(
                        f"LOB file {file!r} points outside the archive",
                        rule="lob",
                        table=f"{schema.name}.{table.name}",
                    )
                parts.pop()
                continue
            parts.append(segment)
    return "/".join(parts)


# -- writing -------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _M + tag)
    if text is not None:
        element.text = escape_chars(text)
    return element


def _opt(parent: etree._Element, tag: str, text: str | None) -> None:
    if text is not None and text != "":
        _sub(parent, tag, text)


def _columns(parent: etree._Element, columns: list[Column]) -> None:
    holder = _sub(parent, "columns")
    for column in columns:
        element = _sub(holder, "column")
        _sub(element, "name", column.name)
        _opt(element, "lobFolder", column.lob_folder)
        _sub(element, "type", column.type)
        _opt(element, "mimeType", column.mime_type)
        _opt(element, "typeOriginal", column.type_original)
        _sub(element, "nullable", "true" if column.nullable else "false")
        _opt(element, "defaultValue", column.default_value)
        _opt(element, "description", column.description)


def _key(parent: etree._Element, tag: str, key: Key) -> None:
    element = _sub(parent, tag)
    _sub(element, "name", key.name)
    _opt(element, "description", key.description)
    for column in key.columns:
        _sub(element, "column", column)


def _table(parent: etree._Element, table: Table) -> None:
    element = _sub(parent, "table")
    _sub(element, "name", table.name)
    _sub(element, "folder", table.folder)
    _opt(element, "description", table.description)
    _columns(element, table.columns)
    if table.primary_key is not None:
        _key(element, "primaryKey", table.primary_key)
    if table.foreign_keys:
        holder = _sub(element, "foreignKeys")
        for fk in table.foreign_keys:
            fk_element = _sub(holder, "foreignKey")
            _sub(fk_element, "name", fk.name)
            _sub(fk_element, "referencedSchema", fk.referenced_schema)
            _sub(fk_element, "referencedTable", fk.referenced_table)
            for column, referenced in zip(fk.columns, fk.referenced_columns, strict=True):
                reference = _sub(fk_element, "reference")
                _sub(reference, "column", column)
                _sub(reference, "referenced", referenced)
            for tag, action in (
                ("deleteAction", fk.delete_action),
                ("updateAction", fk.update_action),
            ):
                if action and action.upper() in REFERENTIAL_ACTIONS:
                    _sub(fk_element, tag, action.upper())
            _opt(fk_element, "description", fk.description)
    if table.candidate_keys:
        holder = _sub(element, "candidateKeys")
        for key in table.candidate_keys:
            _key(holder, "candidateKey", key)
    _sub(element, "rows", str(table.rows))


def _view(parent: etree._Element, view: View) -> None:
    element = _sub(parent, "view")
    _sub(element, "name", view.name)
    _opt(element, "query", view.query)
    _opt(element, "queryOriginal", view.query_original)
    _opt(element, "description", view.description)
    _columns(element, view.columns)


def metadata_xml(archive: Archive) -> bytes:
    """``header/metadata.xml`` for ``archive`` (valid against the SIARD 2.2 metadata XSD)."""
    root = etree.Element(_M + "siardArchive", nsmap=_NSMAP)
    root.set("version", SIARD_VERSION)
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{METADATA_NS} metadata.xsd")
    _sub(root, "dbname", archive.dbname or "(unknown)")
    _opt(root, "description", archive.description)
    _opt(root, "archiver", archive.archiver)
    _opt(root, "archiverContact", archive.archiver_contact)
    _sub(root, "dataOwner", archive.data_owner or "(unknown)")
    _sub(root, "dataOriginTimespan", archive.data_origin_timespan or "(unknown)")
    _opt(root, "lobFolder", archive.lob_folder)
    _opt(root, "producerApplication", archive.producer_application)
    _sub(root, "archivalDate", (archive.archival_date or date.today()).isoformat())
    _opt(root, "databaseProduct", archive.database_product)
    _opt(root, "connection", archive.connection)
    _opt(root, "databaseUser", archive.database_user)
    schemas = _sub(root, "schemas")
    for schema in archive.schemas:
        element = _sub(schemas, "schema")
        _sub(element, "name", schema.name)
        _sub(element, "folder", schema.folder)
        _opt(element, "description", schema.description)
        if schema.tables:
            tables = _sub(element, "tables")
            for table in schema.tables:
                _table(tables, table)
        if schema.views:
            views = _sub(element, "views")
            for view in schema.views:
                _view(views, view)
    users = _sub(root, "users")
    if archive.database_user:
        _sub(_sub(users, "user"), "name", archive.database_user)
    return bytes(
        etree.tostring(
            root, xml_declaration=True, encoding="UTF-8", standalone=True, pretty_print=True
        )
    )


_TABLE_XSD_HEAD = f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<xs:schema xmlns="{TABLE_NS}" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
targetNamespace="{TABLE_NS}" elementFormDefault="qualified" attributeFormDefault="unqualified" \
version="{SIARD_VERSION}">
  <xs:element name="table">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="row" type="recordType" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:attribute name="version" type="versionType" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:simpleType name="versionType">
    <xs:restriction base="xs:string">
      <xs:whiteSpace value="collapse"/>
      <xs:enumeration value="{SIARD_VERSION}"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="recordType">
    <xs:sequence>
"""

_TABLE_XSD_TAIL = """    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="clobType">
    <xs:simpleContent>
      <xs:extension base="xs:string">
        <xs:attribute name="file" type="xs:anyURI"/>
        <xs:attribute name="length" type="xs:integer"/>
        <xs:attribute name="digestType" type="digestTypeType"/>
        <xs:attribute name="digest" type="xs:string"/>
        <xs:attribute name="dlurlpathonly" type="xs:anyURI"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:complexType name="blobType">
    <xs:simpleContent>
      <xs:extension base="xs:hexBinary">
        <xs:attribute name="file" type="xs:anyURI"/>
        <xs:attribute name="length" type="xs:integer"/>
        <xs:attribute name="digestType" type="digestTypeType"/>
        <xs:attribute name="digest" type="xs:string"/>
        <xs:attribute name="dlurlpathonly" type="xs:anyURI"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:simpleType name="digestTypeType">
    <xs:restriction base="xs:string">
      <xs:whiteSpace value="collapse"/>
      <xs:enumeration value="MD5"/>
      <xs:enumeration value="SHA-1"/>
      <xs:enumeration value="SHA-256"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="dateType">
    <xs:restriction base="xs:date">
      <xs:minInclusive value="0001-01-01Z"/>
      <xs:maxExclusive value="10000-01-01Z"/>
      <xs:pattern value="\\d{4}-\\d{2}-\\d{2}Z?"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="timeType">
    <xs:restriction base="xs:time">
      <xs:pattern value="\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z?"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="dateTimeType">
    <xs:restriction base="xs:dateTime">
      <xs:minInclusive value="0001-01-01T00:00:00Z"/>
      <xs:maxExclusive value="10000-01-01T00:00:00Z"/>
      <xs:pattern value="\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z?"/>
    </xs:restriction>
  </xs:simpleType>
</xs:schema>
"""


def table_xsd(table: Table) -> bytes:
    """``tableM.xsd``: rows of ``c1..cN`` typed per P_4.3-3, ``minOccurs="0"`` where nullable."""
    lines = [_TABLE_XSD_HEAD]
    for number, column in enumerate(table.columns, start=1):
        optional = ' minOccurs="0"' if column.nullable else ""
        lines.append(
            f'      <xs:element name="c{number}" type="{xsd_type_of(column.type)}"{optional}/>\n'
        )
    lines.append(_TABLE_XSD_TAIL)
    return "".join(lines).encode("utf-8")


# -- reading -------------------------------------------------------------------


class _Reader:
    """Children by local name in the document's own namespace (2.1 and 2.2 share it)."""

    def __init__(self, namespace: str | None) -> None:
        self.prefix = "{" + namespace + "}" if namespace else ""

    def child(self, element: etree._Element, tag: str) -> etree._Element | None:
        return element.find(self.prefix + tag)

    def children(self, element: etree._Element | None, tag: str) -> list[etree._Element]:
        if element is None:
            return []
        return list(element.iterfind(self.prefix + tag))

    def text(self, element: etree._Element | None, tag: str) -> str | None:
        if element is None:
            return None
        found = element.find(self.prefix + tag)
        if found is None:
            return None
        return unescape(found.text or "")

    def required(self, element: etree._Element, tag: str, where: str) -> str:
        value = self.text(element, tag)
        if value is None:
            raise SiardError(
                f"header/metadata.xml: {where} has no <{tag}>",
                rule="metadata-xsd",
                entry="header/metadata.xml",
            )
        return value


def _parse_bool(text: str | None, default: bool) -> bool:
    if text is None:
        return default
    return text.strip() in ("true", "1")


def _parse_columns(r: _Reader, element: etree._Element, where: str) -> list[Column]:
    columns = []
    for column in r.children(r.child(element, "columns"), "column"):
        name = r.required(column, "name", where)
        sql_type = r.text(column, "type") or r.text(column, "typeName") or "CHARACTER VARYING"
        columns.append(
            Column(
                name=name,
                type=sql_type.strip(),
                type_original=r.text(column, "typeOriginal"),
                nullable=_parse_bool(r.text(column, "nullable"), True),
                default_value=r.text(column, "defaultValue"),
                description=r.text(column, "description"),
                lob_folder=r.text(column, "lobFolder"),
                mime_type=r.text(column, "mimeType"),
            )
        )
    return columns


def _parse_key(r: _Reader, element: etree._Element | None) -> Key | None:
    if element is None:
        return None
    return Key(
        name=r.text(element, "name") or "",
        columns=[unescape(c.text or "") for c in r.children(element, "column")],
        description=r.text(element, "description"),
    )


def _parse_rows(text: str | None, where: str) -> int:
    try:
        return int((text or "0").strip())
    except ValueError as err:
        raise SiardError(
            f"header/metadata.xml: {where} has rows {text!r}, not a number",
            rule="metadata-xsd",
            entry="header/metadata.xml",
        ) from err


def _parse_table(r: _Reader, element: etree._Element, schema_name: str) -> Table:
    name = r.required(element, "name", f"a table of schema {schema_name}")
    where = f"table {schema_name}.{name}"
    table = Table(
        name=name,
        folder=r.required(element, "folder", where),
        columns=_parse_columns(r, element, where),
        rows=_parse_rows(r.text(element, "rows"), where),
        description=r.text(element, "description"),
        primary_key=_parse_key(r, r.child(element, "primaryKey")),
    )
    for fk in r.children(r.child(element, "foreignKeys"), "foreignKey"):
        references = r.children(fk, "reference")
        table.foreign_keys.append(
            ForeignKey(
                name=r.text(fk, "name") or "",
                columns=[r.text(ref, "column") or "" for ref in references],
                referenced_schema=r.text(fk, "referencedSchema") or schema_name,
                referenced_table=r.required(fk, "referencedTable", where),
                referenced_columns=[r.text(ref, "referenced") or "" for ref in references],
                delete_action=r.text(fk, "deleteAction"),
                update_action=r.text(fk, "updateAction"),
                description=r.text(fk, "description"),
            )
        )
    for key in r.children(r.child(element, "candidateKeys"), "candidateKey"):
        parsed = _parse_key(r, key)
        if parsed is not None:
            table.candidate_keys.append(parsed)
    return table


def parse_metadata(data: bytes) -> Archive:
    """The model of a ``metadata.xml`` (SIARD 2.x); ``SiardError`` where it cannot be read."""
    entry = "header/metadata.xml"
    try:
        root = etree.fromstring(data, parser=xml_parser())
    except etree.XMLSyntaxError as err:
        raise SiardError(
            f"{entry}: not well-formed XML: {err}", rule="metadata-xsd", entry=entry
        ) from err
    tree = root.getroottree()
    docinfo: Any = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise SiardError(
            f"{entry}: has a DOCTYPE (entity declarations are refused)",
            rule="xml-entities",
            entry=entry,
        )
    qname = etree.QName(root)
    if qname.localname != "siardArchive":
        raise SiardError(
            f"{entry}: the root element is <{qname.localname}>, not <siardArchive>",
            rule="metadata-xsd",
            entry=entry,
        )
    r = _Reader(qname.namespace)
    schemas = []
    for schema_element in r.children(r.child(root, "schemas"), "schema"):
        name = r.required(schema_element, "name", "a schema")
        schema = Schema(
            name=name,
            folder=r.required(schema_element, "folder", f"schema {name}"),
            description=r.text(schema_element, "description"),
        )
        for table in r.children(r.child(schema_element, "tables"), "table"):
            schema.tables.append(_parse_table(r, table, name))
        for view in r.children(r.child(schema_element, "views"), "view"):
            view_name = r.required(view, "name", f"a view of schema {name}")
            schema.views.append(
                View(
                    name=view_name,
                    columns=_parse_columns(r, view, f"view {name}.{view_name}"),
                    query=r.text(view, "query"),
                    query_original=r.text(view, "queryOriginal"),
                    description=r.text(view, "description"),
                )
            )
        schemas.append(schema)
    archival = r.text(root, "archivalDate")
    archival_date = None
    if archival:
        try:
            archival_date = date.fromisoformat(archival.strip()[:10])
        except ValueError:
            archival_date = None
    values: dict[str, Any] = {
        "dbname": r.text(root, "dbname") or "",
        "schemas": schemas,
        "data_owner": r.text(root, "dataOwner") or "(unknown)",
        "data_origin_timespan": r.text(root, "dataOriginTimespan") or "(unknown)",
        "archival_date": archival_date,
        "description": r.text(root, "description"),
        "archiver": r.text(root, "archiver"),
        "archiver_contact": r.text(root, "archiverContact"),
        "producer_application": r.text(root, "producerApplication"),
        "database_product": r.text(root, "databaseProduct"),
        "connection": r.text(root, "connection"),
        "database_user": r.text(root, "databaseUser"),
        "lob_folder": r.text(root, "lobFolder"),
    }
    return Archive(**values)
