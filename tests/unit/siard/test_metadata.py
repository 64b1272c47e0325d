"""metadata.xml and table XSDs: valid against the shipped XSD, and read back into the same model."""

from __future__ import annotations

from datetime import date

import pytest
from lxml import etree

from preservation.errors import SiardError
from preservation.siard.metadata import (
    METADATA_XSD,
    lob_entry,
    metadata_xml,
    parse_metadata,
    table_xsd,
)
from preservation.siard.model import (
    TABLE_NS,
    Archive,
    Column,
    ForeignKey,
    Key,
    Schema,
    Table,
    View,
)

EVERY_TYPE = [
    "INTEGER",
    "SMALLINT",
    "BIGINT",
    "NUMERIC",
    "NUMERIC(12)",
    "NUMERIC(12, 3)",
    "REAL",
    "DOUBLE PRECISION",
    "CHARACTER(36)",
    "CHARACTER VARYING",
    "CHARACTER VARYING(40)",
    "CHARACTER LARGE OBJECT",
    "XML",
    "BINARY LARGE OBJECT",
    "BOOLEAN",
    "DATE",
    "TIME(6)",
    "TIME WITH TIME ZONE(6)",
    "TIMESTAMP(0)",
    "TIMESTAMP(6)",
    "TIMESTAMP WITH TIME ZONE(6)",
]


def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(METADATA_XSD)))


def _archive() -> Archive:
    columns = [
        Column(
            name=f"col_{n}",
            type=t,
            type_original=t.lower(),
            nullable=n != 0,
            lob_folder="content/schema0/table0/" if "OBJECT" in t or t == "XML" else None,
            description="x  y\x01\\" if n == 3 else None,
        )
        for n, t in enumerate(EVERY_TYPE)
    ]
    parent = Table(
        name="parent",
        folder="table0",
        columns=columns,
        rows=7,
        description="the parent <&>",
        primary_key=Key("parent_pk", ["col_0"]),
        candidate_keys=[Key("parent_uk", ["col_1", "col_2"], description="unique")],
    )
    child = Table(
        name="child table",
        folder="table1",
        columns=[Column("id", "INTEGER", nullable=False), Column("parent", "INTEGER")],
        rows=0,
        primary_key=Key("child_pk", ["id"]),
        foreign_keys=[
            ForeignKey("child_fk", ["parent"], "main", "parent", ["col_0"], "CASCADE", "NO ACTION")
        ],
    )
    other = Schema(name="other", folder="schema1", description="second schema")
    other.tables.append(Table("t", "table0", [Column("a", "DATE")], rows=1))
    return Archive(
        dbname="sample",
        schemas=[
            Schema(
                name="main",
                folder="schema0",
                tables=[parent, child],
                views=[View("v", [Column("col_0", "INTEGER")], query_original="SELECT  1")],
            ),
            other,
        ],
        data_owner="The owner",
        data_origin_timespan="2001-2024",
        archival_date=date(2024, 5, 1),
        description="d",
        producer_application="preservation 0.1.0",
        database_product="PostgreSQL 16.2",
        connection="postgresql+psycopg://postgres@127.0.0.1:5432/x",
        database_user="postgres",
    )


def test_metadata_is_valid_against_the_shipped_xsd() -> None:
    document = etree.fromstring(metadata_xml(_archive()))
    schema = _schema()
    assert schema.validate(document), schema.error_log


def test_metadata_without_optional_parts_is_valid() -> None:
    archive = Archive(dbname="", schemas=[Schema("main", "schema0")])
    document = etree.fromstring(metadata_xml(archive))
    schema = _schema()
    assert schema.validate(document), schema.error_log


def test_metadata_reads_back_into_the_same_model() -> None:
    archive = _archive()
    assert parse_metadata(metadata_xml(archive)) == archive


def test_unknown_referential_actions_are_left_out() -> None:
    archive = _archive()
    archive.schemas[0].tables[1].foreign_keys[0].delete_action = "whatever"
    document = etree.fromstring(metadata_xml(archive))
    assert _schema().validate(document)


def test_a_doctype_is_refused() -> None:
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<siardArchive xmlns="http://www.bar.admin.ch/xmlns/siard/2/metadata.xsd">'
        b"<dbname>&e;</dbname></siardArchive>"
    )
    with pytest.raises(SiardError) as caught:
        parse_metadata(evil)
    assert caught.value.rule == "xml-entities"


def test_not_xml_and_wrong_root_are_refused() -> None:
    with pytest.raises(SiardError) as caught:
        parse_metadata(b"<siardArchive")
    assert caught.value.rule == "metadata-xsd"
    with pytest.raises(SiardError):
        parse_metadata(b"<other/>")


def test_a_table_without_a_name_is_refused() -> None:
    data = (
        b'<siardArchive xmlns="http://www.bar.admin.ch/xmlns/siard/2/metadata.xsd">'
        b"<schemas><schema><name>s</name><folder>schema0</folder><tables><table>"
        b"<folder>table0</folder></table></tables></schema></schemas></siardArchive>"
    )
    with pytest.raises(SiardError, match="no <name>"):
        parse_metadata(data)


def _rows(xml: str) -> etree._Element:
    return etree.fromstring(f'<table xmlns="{TABLE_NS}" version="2.2">{xml}</table>'.encode())


def test_table_xsd_types_and_nullability() -> None:
    table = _archive().schemas[0].tables[0]
    schema = etree.XMLSchema(etree.fromstring(table_xsd(table)))
    cells = {
        "INTEGER": "1",
        "NUMERIC(12, 3)": "-1.250",
        "DOUBLE PRECISION": "INF",
        "CHARACTER LARGE OBJECT": "text",
        "BINARY LARGE OBJECT": "00FF",
        "BOOLEAN": "true",
        "DATE": "0001-01-01Z",
        "TIME(6)": "23:59:59.999999Z",
        "TIMESTAMP WITH TIME ZONE(6)": "9999-12-31T23:59:59.999999Z",
    }
    row = "".join(
        f"<c{n}>{cells[t]}</c{n}>" for n, t in enumerate(EVERY_TYPE, start=1) if t in cells
    )
    assert schema.validate(_rows(f"<row>{row}</row>")), schema.error_log
    lob = EVERY_TYPE.index("BINARY LARGE OBJECT") + 1
    assert schema.validate(
        _rows(
            f'<row><c1>1</c1><c{lob} file="lob{lob}/record0.bin" length="5" '
            f'digestType="SHA-256" digest="ab"/></row>'
        )
    ), schema.error_log
    assert not schema.validate(_rows("<row><c2>1</c2></row>"))  # c1 is not nullable
    assert not schema.validate(_rows("<row><c1>x</c1></row>"))
    day = EVERY_TYPE.index("DATE") + 1
    assert not schema.validate(_rows(f"<row><c1>1</c1><c{day}>10000-01-01Z</c{day}></row>"))


def test_lob_entries_resolve_against_both_lob_folders() -> None:
    archive = _archive()
    schema = archive.schemas[0]
    table = schema.tables[0]
    column = table.columns[EVERY_TYPE.index("BINARY LARGE OBJECT")]
    assert lob_entry(schema, table, column, "lob14/record0.bin") == (
        "content/schema0/table0/lob14/record0.bin"
    )
    plain = Column("c", "BLOB")
    assert lob_entry(schema, table, plain, "content/schema1/table7/lob1/record0.xml") == (
        "content/schema1/table7/lob1/record0.xml"
    )
    assert lob_entry(schema, table, plain, "file:a%20b/./c/../d.bin", "x/") == "x/a b/d.bin"
    with pytest.raises(SiardError) as caught:
        lob_entry(schema, table, plain, "../../etc/passwd")
    assert caught.value.rule == "lob"
