"""Export of live SQLite and PostgreSQL databases: valid XML, the right values, keys and LOBs.

Each archive is read back here with lxml alone (not the project's reader),
so these tests check the format, not agreement between two of our modules.
"""

from __future__ import annotations

import hashlib
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree

from preservation.errors import DestinationError, InvalidRequestError
from preservation.siard.connect import engine_for, redact_url
from preservation.siard.export import export_database
from preservation.siard.metadata import METADATA_XSD, lob_entry, parse_metadata, xml_parser
from preservation.siard.model import TABLE_NS, Archive
from preservation.siard.types import is_lob, value_parser
from tests.siard_samples import (
    LOB_BYTES,
    LOB_TEXT,
    create_sample_database,
    expected_rows,
    sorted_rows,
)

T = "{" + TABLE_NS + "}"


def read_siard(path: Path) -> tuple[Archive, dict[tuple[str, str], list[tuple[Any, ...]]]]:
    """Every check a reader makes, with lxml: XSDs, row counts, LOB lengths and digests."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert "header/siardversion/2.2/" in names
        assert zf.read("header/metadata.xsd") == METADATA_XSD.read_bytes()
        metadata = zf.read("header/metadata.xml")
        schema = etree.XMLSchema(etree.parse(str(METADATA_XSD)))
        assert schema.validate(etree.fromstring(metadata)), schema.error_log
        archive = parse_metadata(metadata)
        tables = {}
        for s, t in archive.tables():
            base = f"content/{s.folder}/{t.folder}/{t.folder}"
            xsd = etree.XMLSchema(etree.fromstring(zf.read(base + ".xsd"), xml_parser()))
            document = etree.fromstring(zf.read(base + ".xml"), xml_parser())
            assert xsd.validate(document), (s.name, t.name, xsd.error_log)
            parsers = [value_parser(c.type) for c in t.columns]
            rows = []
            for row in document.iterchildren(T + "row"):
                values: list[Any] = [None] * len(t.columns)
                for cell in row:
                    n = int(etree.QName(cell).localname[1:]) - 1
                    column = t.columns[n]
                    file = cell.get("file")
                    if file is not None:
                        assert is_lob(column.type)
                        data = zf.read(lob_entry(s, t, column, file, archive.lob_folder))
                        assert cell.get("digestType") == "SHA-256"
                        assert cell.get("digest") == hashlib.sha256(data).hexdigest()
                        if file.endswith(".txt"):
                            values[n] = data.decode("utf-8")
                            assert int(cell.get("length", "-1")) == len(values[n])
                        else:
                            values[n] = data
                            assert int(cell.get("length", "-1")) == len(data)
                        continue
                    values[n] = parsers[n](cell.text or "")
                rows.append(tuple(values))
            assert len(rows) == t.rows, (s.name, t.name)
            tables[(s.name, t.name)] = sorted_rows(rows)
    return archive, tables


def table_xml(path: Path, archive: Archive, table: str) -> str:
    for s, t in archive.tables():
        if t.name == table:
            with zipfile.ZipFile(path) as zf:
                return zf.read(archive.entry(s, t)).decode("utf-8")
    raise KeyError(table)


# -- SQLite ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Archive]:
    folder = tmp_path_factory.mktemp("siard-sqlite")
    url = f"sqlite:///{folder / 'sample.sqlite'}"
    create_sample_database(url)
    dest = folder / "sample.siard"
    archive = export_database(url, dest, data_owner="Test owner")
    return url, dest, archive


def test_sqlite_values_come_back_as_they_went_in(sqlite_export: tuple[str, Path, Archive]) -> None:
    url, dest, _ = sqlite_export
    _, tables = read_siard(dest)
    assert tables == expected_rows(url)


def test_sqlite_metadata(sqlite_export: tuple[str, Path, Archive]) -> None:
    url, dest, returned = sqlite_export
    archive, _ = read_siard(dest)
    assert archive == returned
    assert [s.name for s in archive.schemas] == ["main"]
    assert archive.dbname == "sample.sqlite"
    assert archive.data_owner == "Test owner"
    assert archive.data_origin_timespan == "(unknown)"
    assert archive.producer_application and archive.producer_application.startswith("preservation")
    assert archive.database_product and archive.database_product.startswith("SQLite")
    assert archive.connection == url
    tables = {t.name: t for _, t in archive.tables()}
    assert tables["everything"].rows == 54
    assert tables["department"].primary_key is not None
    assert tables["department"].primary_key.columns == ["id"]
    assert [k.columns for k in tables["department"].candidate_keys] == [["name"]]
    assert tables["assignment"].primary_key is not None
    assert tables["assignment"].primary_key.columns == ["employee_id", "project"]
    (fk,) = tables["employee"].foreign_keys
    assert (fk.referenced_schema, fk.referenced_table) == ("main", "department")
    assert (fk.columns, fk.referenced_columns, fk.delete_action) == (
        ["department_id"],
        ["id"],
        "CASCADE",
    )
    (view,) = archive.schemas[0].views
    assert view.name == "employee_names"
    assert [c.name for c in view.columns] == ["employee", "department"]
    assert view.query_original and "LEFT JOIN department" in view.query_original
    note = next(c for c in tables["everything"].columns if c.name == "note")
    assert note.type == "CHARACTER LARGE OBJECT"
    assert note.lob_folder == "content/schema0/table3/"
    assert not tables["everything"].columns[0].nullable


def test_nulls_are_left_out_and_text_is_escaped(sqlite_export: tuple[str, Path, Archive]) -> None:
    _, dest, archive = sqlite_export
    xml = table_xml(dest, archive, "everything")
    assert "<row><c1>54</c1></row>" in xml  # the row of NULLs: every other cell left out
    assert "controls \\u0001 \\u0008 \\u001f \\u007f \\u0085 end" in xml
    assert "back\\u005cslash \\u005cu0041" in xml
    assert "&amp;&lt;&gt;&quot;&apos;" in xml
    assert "\\u0020\\u0020leading, two\\u0020\\u0020three" in xml
    assert "cr\\u000dlf\ncrlf\\u000d\ntab\t." in xml
    assert "<c7></c7>" in xml or "<c9></c9>" in xml  # the empty string is an empty element
    assert "\x01" not in xml and "\r" not in xml


def test_lobs_are_files_with_digests(sqlite_export: tuple[str, Path, Archive]) -> None:
    _, dest, archive = sqlite_export
    with zipfile.ZipFile(dest) as zf:
        text = zf.read("content/schema0/table3/lob9/record0.txt")
        binary = zf.read("content/schema0/table3/lob14/record1.bin")
    assert text.decode("utf-8") == LOB_TEXT
    assert binary == LOB_BYTES
    xml = table_xml(dest, archive, "everything")
    digest = hashlib.sha256(LOB_BYTES).hexdigest()
    assert (
        f'<c14 file="lob14/record1.bin" length="{len(LOB_BYTES)}" '
        f'digestType="SHA-256" digest="{digest}"/>'
    ) in xml


def test_a_higher_threshold_inlines_the_lobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_sample_database(url, rows=5)
    dest = tmp_path / "x.siard"
    export_database(url, dest, lob_threshold=1_000_000)
    with zipfile.ZipFile(dest) as zf:
        assert not [n for n in zf.namelist() if "/lob" in n]
    _, tables = read_siard(dest)
    assert tables == expected_rows(url, rows=5)


def test_schema_selection_and_progress(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_sample_database(url, rows=5)
    seen: list[tuple[str, int, int]] = []
    archive = export_database(
        url, tmp_path / "x.siard", schemas=["main"], progress=lambda *a: seen.append(a)
    )
    assert [s.name for s in archive.schemas] == ["main"]
    assert ("main.everything", 9, 9) in seen
    with pytest.raises(InvalidRequestError, match="no schema 'nope'"):
        export_database(url, tmp_path / "y.siard", schemas=["nope"])
    assert not (tmp_path / "y.siard").exists()


def test_bad_urls_and_destinations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no such database file"):
        export_database(f"sqlite:///{tmp_path / 'missing.sqlite'}", tmp_path / "x.siard")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(InvalidRequestError, match="not a database URL"):
        export_database("not a url", tmp_path / "x.siard")
    with pytest.raises(InvalidRequestError, match="cannot export this database: PostgreSQL"):
        export_database("mysql://u@h/db", tmp_path / "x.siard")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_sample_database(url, rows=1)
    with pytest.raises(DestinationError):
        export_database(url, tmp_path / "no" / "such" / "x.siard")
    with pytest.raises(InvalidRequestError) as caught:
        export_database("postgresql://nobody:secret@127.0.0.1:1/none", tmp_path / "x.siard")
    assert "secret" not in str(caught.value) and "127.0.0.1:1/none" in str(caught.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "db.sqlite"]


def test_redact_url_drops_the_password() -> None:
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u@h:5432/db"
    # One that does not parse still shows, without its password.
    assert redact_url("postgresql://u:secret@h:notaport/db") == "postgresql://u@h:notaport/db"


def test_a_port_that_is_not_a_number_is_refused_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="a port is a number") as caught:
        export_database("postgresql://u:secret@h:notaport/db", tmp_path / "x.siard")
    assert "secret" not in str(caught.value)
    assert "postgresql://u@h:notaport/db" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://u:secret@h/db", "postgresql+asyncpg://u@h/db", "sqlite+aiosqlite:///x"],
)
def test_only_psycopg_3_and_sqlite3_are_taken(url: str, tmp_path: Path) -> None:
    # The exporter streams with psycopg 3's cursor; another driver would fail later, obscurely.
    with pytest.raises(InvalidRequestError, match="psycopg 3") as caught:
        export_database(url, tmp_path / "x.siard")
    assert "secret" not in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_engine_for_takes_postgresql_as_psycopg_3(tmp_path: Path) -> None:
    engine = engine_for("postgresql://u@h/db", purpose="load")
    assert engine.url.drivername == "postgresql+psycopg"
    # A load may create its SQLite file; an export needs one there.
    assert engine_for(f"sqlite:///{tmp_path / 'new.db'}", purpose="load").dialect.name == "sqlite"
    with pytest.raises(InvalidRequestError, match="no such database file"):
        engine_for(f"sqlite:///{tmp_path / 'new.db'}", purpose="export")


def test_an_odd_sqlite_database(tmp_path: Path) -> None:
    """Quoted names, no declared type, an unknown type, a table without rows."""
    db = tmp_path / "odd.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "odd name" ("a b" , "c""d" TEXT, e WHATEVER)')
        conn.exec_driver_sql(
            """INSERT INTO "odd name" VALUES (1, 'x', 2.5), ('t', NULL, NULL), (NULL, '', 7)"""
        )
        conn.exec_driver_sql("CREATE TABLE empty (id INTEGER PRIMARY KEY)")
    engine.dispose()
    dest = tmp_path / "odd.siard"
    archive = export_database(f"sqlite:///{db}", dest)
    _, tables = read_siard(dest)
    assert tables[("main", "empty")] == []
    # No declared type, or one SQLite's dialect does not know: text, which holds anything.
    assert tables[("main", "odd name")] == sorted_rows(
        [("1", "x", "2.5"), ("t", None, None), (None, "", "7")]
    )
    odd = next(t for _, t in archive.tables() if t.name == "odd name")
    assert [c.name for c in odd.columns] == ["a b", 'c"d', "e"]
    assert [c.type for c in odd.columns] == [
        "CHARACTER VARYING",
        "CHARACTER LARGE OBJECT",
        "CHARACTER VARYING",
    ]
    assert [c.type_original for c in odd.columns] == [None, "TEXT", "WHATEVER"]


def _sqlite(path: Path, *statements: str) -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return f"sqlite:///{path}"


def test_sqlite_declared_types_sqlalchemy_does_not_know(tmp_path: Path) -> None:
    """Not NUMERIC by SQLAlchemy's affinity guess: mapped by name, or text; typeOriginal kept."""
    url = _sqlite(
        tmp_path / "declared.sqlite",
        "CREATE TABLE t (id integer PRIMARY KEY, s STRING, u UUID, x XML, m MONEY, "
        "z TIMESTAMP WITH TIME ZONE, n varchar(5), q, d Decimal(8,2))",
        "INSERT INTO t VALUES (1, 'some text', 'c0ffee00-0000-4000-8000-000000000001', "
        "'<a>b</a>', '$5.00', '2024-05-01 12:00:00+02:00', 'abc', x'41', 1.5)",
        "INSERT INTO t VALUES (2, 7, 'x', 'y', 12.5, '2024-05-01 12:00:00', 'd', 3, 2)",
    )
    dest = tmp_path / "declared.siard"
    archive = export_database(url, dest, lob_threshold=0)
    (table,) = [t for _, t in archive.tables()]
    assert [(c.type, c.type_original) for c in table.columns] == [
        ("INTEGER", "INTEGER"),  # SQLite spells a rowid alias so
        ("CHARACTER VARYING", "STRING"),
        ("CHARACTER(36)", "UUID"),
        ("XML", "XML"),
        ("CHARACTER VARYING", "MONEY"),
        ("TIMESTAMP WITH TIME ZONE(6)", "TIMESTAMP WITH TIME ZONE"),
        ("CHARACTER VARYING(5)", "varchar(5)"),
        ("CHARACTER VARYING", None),
        ("NUMERIC(8, 2)", "Decimal(8,2)"),
    ]
    assert table.columns[3].lob_folder  # XML is a LOB type: its values went to files
    _, tables = read_siard(dest)  # every table valid against its XSD
    assert tables[("main", "t")] == sorted_rows(
        [
            (
                1,
                "some text",
                "c0ffee00-0000-4000-8000-000000000001",
                "<a>b</a>",
                "$5.00",
                datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
                "abc",
                "A",
                Decimal("1.50"),
            ),
            (2, "7", "x", "y", "12.5", datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "d", "3", 2),
        ]
    )


def test_sqlite_numbers_in_a_lob_column(tmp_path: Path) -> None:
    """JSON columns have NUMERIC affinity: 5 is stored as an integer, and is written as text."""
    url = _sqlite(
        tmp_path / "j.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, j JSON, c CLOB)",
        "INSERT INTO t VALUES (1, 5, 2.5), (2, '{\"a\": 1}', 123456789), (3, x'6869', NULL)",
    )
    for threshold in (0, 4096):
        dest = tmp_path / f"j{threshold}.siard"
        export_database(url, dest, lob_threshold=threshold)
        _, tables = read_siard(dest)
        assert tables[("main", "t")] == [
            (1, "5", "2.5"),
            (2, '{"a": 1}', "123456789"),
            (3, "hi", None),
        ]


def test_bytes_that_are_not_utf8_in_a_text_column_stop_the_export(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path / "b.sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, note VARCHAR(9), n NUMERIC)",
        "INSERT INTO t VALUES (1, 'ok', 'ok', 1), (2, x'c3a9', 'fine', 2), (3, 'x', x'ff00', 3)",
    )
    dest = tmp_path / "b.siard"
    with pytest.raises(InvalidRequestError) as caught:
        export_database(url, dest)
    message = str(caught.value)
    assert "main.t" in message and "'note'" in message and "row 3" in message
    assert "not UTF-8" in message and "(utf-8)" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "b.sqlite"]
    url = _sqlite(
        tmp_path / "c.sqlite", "CREATE TABLE u (n NUMERIC)", "INSERT INTO u VALUES (x'80')"
    )
    with pytest.raises(InvalidRequestError, match=r"main\.u, column 'n', row 1: .*not UTF-8"):
        export_database(url, tmp_path / "c.siard")


def test_sqlite_decimals_are_written_exactly_as_stored_never_rounded_to_the_scale(
    tmp_path: Path,
) -> None:
    # SQLite does not round to a NUMERIC's scale: the float stored is the value.
    url = _sqlite(
        tmp_path / "n.sqlite",
        "CREATE TABLE m (id INTEGER PRIMARY KEY, two NUMERIC(10, 2), none NUMERIC(10, 0), "
        "d DECIMAL(30, 4))",
        "INSERT INTO m VALUES (1, 1.005, 1.5, 1e-7), (2, 2.123456, 7, 1e20), "
        "(3, 12, -0.5, 3.25), (4, 0.1, 0, -2)",
    )
    dest = tmp_path / "n.siard"
    export_database(url, dest)
    with zipfile.ZipFile(dest) as zf:
        xml = zf.read("content/schema0/table0/table0.xml").decode()
    rows = [
        ("1.005", "1.5", "0.0000001"),
        ("2.123456", "7", "100000000000000000000"),
        ("12", "-0.5", "3.25"),
        ("0.1", "0", "-2"),
    ]
    for n, (two, none, d) in enumerate(rows, start=1):
        assert f"<row><c1>{n}</c1><c2>{two}</c2><c3>{none}</c3><c4>{d}</c4></row>" in xml
    _, tables = read_siard(dest)
    assert [r[1:] for r in tables[("main", "m")]] == [
        tuple(Decimal(x) for x in row) for row in rows
    ]


def test_sqlite_virtual_tables_are_exported_without_their_shadow_tables(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path / "fts.sqlite",
        "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE VIRTUAL TABLE search USING fts5(title, body)",
        "INSERT INTO search VALUES ('one', 'the first'), ('two', 'the second')",
        "INSERT INTO note VALUES (1, 'kept')",
    )
    dest = tmp_path / "fts.siard"
    archive = export_database(url, dest)
    # Not search_data, search_idx, search_content, search_docsize, search_config.
    assert sorted(t.name for _, t in archive.tables()) == ["note", "search"]
    _, tables = read_siard(dest)
    assert tables[("main", "search")] == [("one", "the first"), ("two", "the second")]
    from preservation.siard.validate import validate_siard

    assert validate_siard(dest).valid


def test_shadow_tables_by_module_where_sqlite_cannot_list_them() -> None:
    from preservation.siard.export import _shadow_names

    assert _shadow_names(
        [
            ("s", "CREATE VIRTUAL TABLE s USING fts5(a)"),
            ("old", "create virtual table old using FTS4(a)"),
            ("r", 'CREATE VIRTUAL TABLE "r" USING rtree(id, x0, x1)'),
            ("c", "CREATE VIRTUAL TABLE c USING csv(filename='x')"),  # keeps none
        ]
    ) == {
        *(f"s_{x}" for x in ("data", "idx", "content", "docsize", "config")),
        *(f"old_{x}" for x in ("content", "segments", "segdir", "docsize", "stat")),
        *(f"r_{x}" for x in ("node", "parent", "rowid")),
    }


def test_sqlite_values_that_do_not_fit_their_type_are_kept_and_fail_the_xsd(
    tmp_path: Path,
) -> None:
    db = tmp_path / "loose.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE loose (n NUMERIC, f REAL)")
        conn.exec_driver_sql("INSERT INTO loose VALUES (1.5, 2.5), (x'00', 'z<')")
    engine.dispose()
    dest = tmp_path / "loose.siard"
    export_database(f"sqlite:///{db}", dest)
    with zipfile.ZipFile(dest) as zf:
        xsd = etree.XMLSchema(etree.fromstring(zf.read("content/schema0/table0/table0.xsd")))
        xml = zf.read("content/schema0/table0/table0.xml")
    assert b"<c1>\\u0000</c1><c2>z&lt;</c2>" in xml
    assert not xsd.validate(etree.fromstring(xml))


# -- PostgreSQL --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_sample_url(pg_database: Callable[[], str]) -> str:
    """A throwaway database holding the sample (conftest's maker drops it)."""
    url = pg_database()
    create_sample_database(url)
    return url


@pytest.fixture(scope="module")
def pg_export(pg_sample_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Archive]:
    dest = tmp_path_factory.mktemp("siard-pg") / "sample.siard"
    return dest, export_database(pg_sample_url, dest)


@pytest.mark.postgres
def test_postgres_values_come_back_as_they_went_in(
    pg_sample_url: str, pg_export: tuple[Path, Archive]
) -> None:
    dest, _ = pg_export
    _, tables = read_siard(dest)
    expected = expected_rows(pg_sample_url)
    assert tables.keys() == expected.keys()
    for key in expected:
        assert tables[key] == expected[key], key


@pytest.mark.postgres
def test_postgres_metadata(pg_sample_url: str, pg_export: tuple[Path, Archive]) -> None:
    dest, returned = pg_export
    archive, _ = read_siard(dest)
    assert archive == returned
    assert [s.name for s in archive.schemas] == ["ledger", "public"] or [
        s.name for s in archive.schemas
    ] == ["public", "ledger"]
    assert archive.database_user == "postgres"
    assert archive.database_product and archive.database_product.startswith("PostgreSQL")
    assert archive.connection == redact_url(pg_sample_url)
    schemas = {s.name: s for s in archive.schemas}
    assert schemas["ledger"].tables[0].name == "entry"
    (fk,) = schemas["ledger"].tables[0].foreign_keys
    assert (fk.referenced_schema, fk.referenced_table) == ("public", "employee")
    tables = {t.name: t for t in schemas["public"].tables}
    assert tables["department"].description == "Departments & units"
    name = next(c for c in tables["employee"].columns if c.name == "name")
    assert name.description == "Full name"
    assert not name.nullable
    (candidate,) = tables["department"].candidate_keys
    assert (candidate.name, candidate.columns) == ("department_name_key", ["name"])
    (employee_fk,) = tables["employee"].foreign_keys
    assert (employee_fk.name, employee_fk.delete_action) == ("employee_department_fk", "CASCADE")
    columns = {c.name: c for c in tables["everything"].columns}
    assert columns["stamp_tz"].type == "TIMESTAMP WITH TIME ZONE(6)"
    assert columns["single"].type == "REAL"
    assert columns["ident"].type == "CHARACTER(36)"
    assert columns["doc"].type == "CHARACTER LARGE OBJECT"
    assert columns["doc"].type_original == "JSONB"
    (view,) = schemas["public"].views
    assert view.name == "employee_names" and view.query_original
    assert tables["everything"].rows == 54


@pytest.mark.postgres
def test_postgres_timestamps_are_utc_with_z(pg_export: tuple[Path, Archive]) -> None:
    dest, archive = pg_export
    xml = table_xml(dest, archive, "everything")
    columns = [c.name for _, t in archive.tables() if t.name == "everything" for c in t.columns]
    n = columns.index("stamp_tz") + 1
    # Row 2 (id 2) was written at 2020-07-01 00:30 +05:30, that is 2020-06-30 19:00 UTC.
    assert f"<c{n}>2020-06-30T19:00:00Z</c{n}>" in xml
    when = datetime(2020, 6, 30, 19, 0, tzinfo=UTC)
    assert value_parser("TIMESTAMP WITH TIME ZONE(6)")("2020-06-30T19:00:00Z") == when


@pytest.mark.postgres
def test_postgres_schema_selection(pg_sample_url: str, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    archive = export_database(
        pg_sample_url,
        tmp_path / "ledger.siard",
        schemas=["ledger"],
        progress=lambda *a: seen.append(a),
    )
    assert [s.name for s in archive.schemas] == ["ledger"]
    assert seen[-1] == ("ledger.entry", 20, 20)
    _, tables = read_siard(tmp_path / "ledger.siard")
    assert list(tables) == [("ledger", "entry")]


@pytest.mark.postgres
def test_postgres_without_chunked_rows_uses_a_named_cursor(
    pg_sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq before 17 cannot stream in chunks: the same archive comes from a named cursor."""
    import psycopg

    monkeypatch.setattr(psycopg.pq, "version", lambda: 160000)
    export_database(pg_sample_url, tmp_path / "named.siard")
    _, tables = read_siard(tmp_path / "named.siard")
    assert tables == expected_rows(pg_sample_url)


@pytest.mark.postgres
def test_a_partitioned_table_is_one_table_with_each_row_once(
    pg_sample_url: str, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg_sample_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA parts")
            conn.exec_driver_sql(
                "CREATE TABLE parts.visit (id int, year int) PARTITION BY RANGE (year)"
            )
            conn.exec_driver_sql(
                "CREATE TABLE parts.visit_old PARTITION OF parts.visit "
                "FOR VALUES FROM (0) TO (2000)"
            )
            conn.exec_driver_sql(
                "CREATE TABLE parts.visit_new PARTITION OF parts.visit "
                "FOR VALUES FROM (2000) TO (3000)"
            )
            conn.exec_driver_sql("INSERT INTO parts.visit VALUES (1, 1990), (2, 2010), (3, 2020)")
        archive = export_database(pg_sample_url, tmp_path / "parts.siard", schemas=["parts"])
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA parts CASCADE")
        engine.dispose()
    assert [(t.name, t.rows) for _, t in archive.tables()] == [("visit", 3)]


def _pg_run(url: str, *statements: str) -> None:
    """Statements through psycopg itself: no parameters, so a % is a %."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@pytest.mark.postgres
def test_postgres_names_with_percent_signs(pg_sample_url: str, tmp_path: Path) -> None:
    """psycopg's quoting doubles %; the raw cursor must get the names as they are."""
    _pg_run(
        pg_sample_url,
        'CREATE SCHEMA "50%"',
        'CREATE TABLE "50%"."100% pure" (id int PRIMARY KEY, "rate %" numeric(5, 2), '
        '"%(x)s" text, "%s" bytea)',
        """INSERT INTO "50%"."100% pure" VALUES (1, 12.5, 'a', '\\x00ff'), (2, NULL, NULL, NULL)""",
    )
    try:
        seen: list[tuple[str, int, int]] = []
        dest = tmp_path / "pct.siard"
        archive = export_database(
            pg_sample_url, dest, schemas=["50%"], progress=lambda *a: seen.append(a)
        )
    finally:
        _pg_run(pg_sample_url, 'DROP SCHEMA "50%" CASCADE')
    assert [t.name for _, t in archive.tables()] == ["100% pure"]
    _, tables = read_siard(dest)
    assert tables[("50%", "100% pure")] == [
        (1, Decimal("12.50"), "a", b"\x00\xff"),
        (2, None, None, None),
    ]
    assert seen[-1] == ("50%.100% pure", 2, 2)


@pytest.mark.postgres
def test_postgres_types_sqlalchemy_does_not_know(pg_sample_url: str, tmp_path: Path) -> None:
    """xml is XML (a LOB type), a domain its base type; materialized views are views."""
    engine = sa.create_engine(pg_sample_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA odd")
            conn.exec_driver_sql("CREATE DOMAIN odd.positive AS integer CHECK (VALUE > 0)")
            conn.exec_driver_sql("CREATE DOMAIN odd.code AS varchar(4)")
            conn.exec_driver_sql(
                "CREATE TABLE odd.doc (id odd.positive PRIMARY KEY, body xml, c odd.code, "
                "m money, t timestamp(3) with time zone)"
            )
            conn.exec_driver_sql(
                "INSERT INTO odd.doc VALUES (1, '<a>b &amp; c</a>', 'ab', 5, "
                "'2024-01-02 03:04:05.678+01'), (2, NULL, NULL, NULL, NULL)"
            )
            conn.exec_driver_sql(
                "CREATE MATERIALIZED VIEW odd.bodies AS SELECT id, body FROM odd.doc"
            )
        archive = export_database(
            pg_sample_url, tmp_path / "odd.siard", schemas=["odd"], lob_threshold=3
        )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA odd CASCADE")
        engine.dispose()
    (schema,) = archive.schemas
    columns = {c.name: c for c in schema.tables[0].columns}
    assert columns["id"].type == "INTEGER"
    assert (columns["body"].type, columns["body"].type_original) == ("XML", "xml")
    assert columns["body"].lob_folder
    assert columns["c"].type == "CHARACTER VARYING(4)"
    assert columns["m"].type_original == "MONEY"
    assert columns["t"].type == "TIMESTAMP WITH TIME ZONE(3)"
    (view,) = schema.views
    assert view.name == "bodies" and view.query_original and "odd.doc" in view.query_original
    assert [(c.name, c.type) for c in view.columns] == [("id", "INTEGER"), ("body", "XML")]
    _, tables = read_siard(tmp_path / "odd.siard")
    ((first, body, code, _, stamp), second) = tables[("odd", "doc")]
    assert (first, body, code) == (1, "<a>b &amp; c</a>", "ab")
    assert stamp == datetime(2024, 1, 2, 2, 4, 5, 678000, tzinfo=UTC)
    assert second == (2, None, None, None, None)


@pytest.mark.postgres
def test_postgres_values_siard_cannot_hold_are_kept_and_warned_of(
    pg_sample_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(pg_sample_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA unfit")
            conn.exec_driver_sql(
                "CREATE TABLE unfit.t (n numeric, d date, s timestamp, z timestamptz, "
                "txt text, f float8)"
            )
            conn.exec_driver_sql(
                "INSERT INTO unfit.t VALUES (1.5, '2024-01-01', '2024-01-01', '2024-01-01', "
                "'NaN infinity BC', 'NaN'), "
                "('NaN', 'infinity', '-infinity', 'infinity', 'x', 'Infinity'), "
                "('-Infinity', '0044-03-15 BC', '0044-03-15 12:00 BC', NULL, NULL, NULL)"
            )
        warnings: list[str] = []
        dest = tmp_path / "unfit.siard"
        export_database(pg_sample_url, dest, schemas=["unfit"], warn=warnings.append)
        export_database(
            pg_sample_url, tmp_path / "none.siard", schemas=["public"], warn=warnings.append
        )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA unfit CASCADE")
        engine.dispose()
    (warning,) = warnings
    assert warning.startswith("unfit.t: 7 value(s)") and "will not pass validation" in warning
    with zipfile.ZipFile(dest) as zf:
        xml = zf.read("content/schema0/table0/table0.xml").decode()
    assert "<c1>NaN</c1><c2>infinityZ</c2>" in xml  # as the database holds them


@pytest.mark.postgres
def test_postgres_table_the_user_may_not_read(pg_sample_url: str, tmp_path: Path) -> None:
    """Reflection works, the SELECT is refused: the table and the database's error, no file."""
    role = f"siard_reader_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(pg_sample_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA ledger TO {role}")
    try:
        url = sa.make_url(pg_sample_url).set(username=role, password=None)
        dest = tmp_path / "denied.siard"
        with pytest.raises(InvalidRequestError) as caught:
            export_database(url.render_as_string(hide_password=False), dest, schemas=["ledger"])
        assert "ledger.entry: cannot be read: permission denied" in str(caught.value)
        assert list(tmp_path.iterdir()) == []
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()
