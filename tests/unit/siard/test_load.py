"""preservation/siard/load.py: a SIARD back into PostgreSQL and SQLite, table by table.

The archives are real ones: the sample database (every common type) on SQLite
and on PostgreSQL, exported by ``export_database``. Each is loaded into both
kinds of database and read back: every row and value, every column's type
and every key must be the archive's. PostgreSQL databases are throwaway ones,
made and dropped by this module.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from preservation.errors import InvalidRequestError, SiardError
from preservation.siard.load import flat_names, load_archive, load_siard, sqlite_type
from preservation.siard.model import Archive, Column, ForeignKey, Key, Schema, Table
from preservation.siard.reader import open_siard
from preservation.siard.types import base_type, sql2008_of, type_params
from tests.siard_edits import METADATA, exported_sqlite, replaced, rewrite, sub

MakeDatabase = Callable[[], str]


@pytest.fixture(scope="module")
def archives(
    pg_database: MakeDatabase, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The sample database exported from SQLite and from PostgreSQL."""
    from preservation.siard.export import export_database
    from tests.siard_samples import create_sample_database

    where = tmp_path_factory.mktemp("sources")
    out: dict[str, Path] = {}
    for backend in ("sqlite", "postgresql"):
        url = f"sqlite:///{where / 'source.sqlite'}" if backend == "sqlite" else pg_database()
        create_sample_database(url)
        out[backend] = where / f"{backend}.siard"
        export_database(url, out[backend])
    return out


def target_url(backend: str, pg_database: MakeDatabase, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'target.sqlite'}"
    return pg_database()


# -- reading back ------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """One form for values that are equal but spelled differently (1.10 and 1.1, NaN)."""
    if isinstance(value, Decimal):
        return ("decimal", value.normalize() if value.is_finite() else str(value))
    if isinstance(value, float):
        return ("float", "NaN" if math.isnan(value) else value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def canonical_rows(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(canonical(v) for v in row) for row in rows), key=repr)


def from_sqlite(declared: str, value: Any) -> Any:
    """A value as SQLite keeps it, in the Python form the archive gave it (load's SQLite rules)."""
    if value is None:
        return None
    name = declared.split("(")[0].strip()
    if name in ("NUMERIC", "DECIMAL"):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if name.endswith("_TEXT"):
        return Decimal(value)
    if name in ("REAL", "DOUBLE PRECISION", "FLOAT"):
        return float(value)
    if name == "BOOLEAN":
        return bool(value)
    if name == "TIMESTAMP":
        return datetime.fromisoformat(value)
    if name == "DATE":
        return date.fromisoformat(value)
    if name == "TIME":
        return time.fromisoformat(value)
    return value


def sqlite_rows(path: Path, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        declared = [r[2] for r in conn.execute(f'PRAGMA table_info("{name}")')]
        rows = [
            tuple(from_sqlite(d, v) for d, v in zip(declared, row, strict=True))
            for row in conn.execute(f'SELECT * FROM "{name}"')
        ]
    return declared, rows


def kept_by_sqlite(sql2008: str) -> str:
    """The SQL:2008 type a SQLite column reflects as, for an archived type (see load's notes)."""
    base = base_type(sql2008)
    precision, _ = type_params(sql2008)
    if base in ("NUMERIC", "DECIMAL") and (precision is None or precision > 15):
        return "CHARACTER LARGE OBJECT"
    if base in ("REAL", "FLOAT"):
        return "DOUBLE PRECISION"  # SQLite's REAL is 8 bytes
    if base in ("BINARY", "BINARY VARYING", "DATALINK"):
        return "BINARY LARGE OBJECT"
    if base in ("XML",):
        return "CHARACTER LARGE OBJECT"
    if base == "INTERVAL":
        return "CHARACTER VARYING"
    return sql2008.replace(" WITH TIME ZONE", "")  # the offset is in the value


# -- the round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
@pytest.mark.parametrize("source", ["sqlite", "postgresql"])
def test_every_table_comes_back_with_its_rows_values_types_and_keys(
    source: str,
    target: str,
    archives: dict[str, Path],
    pg_database: MakeDatabase,
    tmp_path: Path,
) -> None:
    siard = archives[source]
    url = target_url(target, pg_database, tmp_path)
    seen: list[tuple[str, int, int]] = []
    summary = load_siard(siard, url, progress=lambda *a: seen.append(a))

    with open_siard(siard) as reader:
        archive = reader.archive
        expected = {
            (s.name, t.name): canonical_rows(reader.rows(s, t)) for s, t in archive.tables()
        }
    total = sum(len(rows) for rows in expected.values())
    assert total > 0
    assert (summary.tables, summary.rows) == (len(expected), total)
    assert seen and seen[-1][1:] == (total, total)
    assert summary.problems == ()
    names = flat_names(archive)

    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        for schema, table in archive.tables():
            label = f"{schema.name}.{table.name}"
            if target == "sqlite":
                name, where = names[(schema.name, table.name)], None
                assert summary.names[label] == name
                declared, rows = sqlite_rows(tmp_path / "target.sqlite", name)
                assert declared == [sqlite_type(c.type) for c in table.columns], label
                want_types = [kept_by_sqlite(c.type) for c in table.columns]
            else:
                name, where = table.name, schema.name
                with engine.connect() as conn:
                    reflected = sa.Table(name, sa.MetaData(), schema=where, autoload_with=conn)
                    rows = [tuple(r) for r in conn.execute(sa.select(reflected))]
                want_types = [c.type for c in table.columns]
            assert canonical_rows(rows) == expected[(schema.name, table.name)], label

            columns = inspector.get_columns(name, schema=where)
            assert [c["name"] for c in columns] == [c.name for c in table.columns], label
            got_types = [sql2008_of(c["type"], engine.dialect.name) for c in columns]
            assert got_types == want_types, label
            assert [c["nullable"] for c in columns] == [
                c.nullable and not (table.primary_key and c.name in table.primary_key.columns)
                for c in table.columns
            ], label

            pk = inspector.get_pk_constraint(name, schema=where)
            assert pk["constrained_columns"] == (
                table.primary_key.columns if table.primary_key else []
            ), label
            fks = inspector.get_foreign_keys(name, schema=where)
            assert sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in fks
            ) == sorted(
                (
                    fk.columns,
                    names[(fk.referenced_schema, fk.referenced_table)]
                    if target == "sqlite"
                    else fk.referenced_table,
                    fk.referenced_columns,
                )
                for fk in table.foreign_keys
            ), label
            uniques = inspector.get_unique_constraints(name, schema=where)
            assert sorted(u["column_names"] for u in uniques) == sorted(
                k.columns for k in table.candidate_keys
            ), label
    finally:
        engine.dispose()


# -- an archive built in the test: keys, errors ------------------------------------------


def two_tables(rows_of_refs: list[list[Any]]) -> tuple[Archive, dict[str, list[list[Any]]]]:
    """``people`` and ``visits`` (visits.person -> people.id), with the given visits."""
    people = Table(
        "people",
        "table0",
        [
            Column("id", "INTEGER", nullable=False),
            Column("name", "CHARACTER VARYING(40)"),
            Column("born", "TIMESTAMP WITH TIME ZONE(6)"),
            Column("wealth", "NUMERIC(40, 10)"),
            Column("score", "DOUBLE PRECISION"),
        ],
        rows=2,
        primary_key=Key("people_pk", ["id"]),
        candidate_keys=[Key("people_name_key", ["name"])],
    )
    visits = Table(
        "visits",
        "table1",
        [Column("id", "INTEGER", nullable=False), Column("person", "INTEGER")],
        rows=len(rows_of_refs),
        primary_key=Key("visits_pk", ["id"]),
        foreign_keys=[ForeignKey("visits_person_fk", ["person"], "reg", "people", ["id"])],
    )
    # visits first: the order of the tables must not matter to their keys
    archive = Archive("test", [Schema("reg", "schema0", [visits, people])])
    big = Decimal("123456789012345678901234567890.0123456789")
    data = {
        "people": [
            [1, "Ada", datetime(1815, 12, 10, 12, 0, tzinfo=UTC), big, float("nan")],
            [2, "Alan", None, Decimal("0.0000000001"), float("-inf")],
        ],
        "visits": rows_of_refs,
    }
    return archive, data


def rows_from(data: dict[str, list[list[Any]]]) -> Callable[[Schema, Table], Iterator[list[Any]]]:
    return lambda schema, table: iter(data[table.name])


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_values_stay_exact_and_a_broken_foreign_key_is_reported_not_mended(
    target: str, pg_database: MakeDatabase, tmp_path: Path
) -> None:
    archive, data = two_tables([[1, 1], [2, 3]])  # person 3 does not exist
    url = target_url(target, pg_database, tmp_path)
    summary = load_archive(archive, rows_from(data), url)
    assert summary.rows == 4
    (problem,) = summary.problems
    assert problem.startswith("reg.visits:") and "people" in problem

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if target == "sqlite":
                got = conn.exec_driver_sql("SELECT wealth, born, score FROM people ORDER BY id")
                assert got.all() == [
                    (
                        "123456789012345678901234567890.0123456789",
                        "1815-12-10 12:00:00+00:00",
                        "NaN",
                    ),
                    ("0.0000000001", None, float("-inf")),
                ]
                assert conn.exec_driver_sql("SELECT count(*) FROM visits").scalar() == 2
            else:
                got = conn.exec_driver_sql(
                    "SELECT wealth, born, score::text FROM reg.people ORDER BY id"
                )
                assert got.all() == [
                    (data["people"][0][3], data["people"][0][2], "NaN"),
                    (Decimal("0.0000000001"), None, "-Infinity"),
                ]
                # The key is declared all the same, NOT VALID: it holds for new rows.
                valid = conn.exec_driver_sql(
                    "SELECT convalidated FROM pg_constraint WHERE conname = 'visits_person_fk'"
                ).scalar()
                assert valid is False
    finally:
        engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_an_existing_table_is_refused_before_anything_is_loaded_unless_replaced(
    target: str, pg_database: MakeDatabase, tmp_path: Path
) -> None:
    archive, data = two_tables([[1, 1]])
    url = target_url(target, pg_database, tmp_path)
    engine = sa.create_engine(url)
    people = "people" if target == "sqlite" else "reg.people"
    try:
        with engine.begin() as conn:  # only the second table of the archive is there
            if target == "postgresql":
                conn.exec_driver_sql("CREATE SCHEMA reg")
            conn.exec_driver_sql(f"CREATE TABLE {people} (kept INTEGER)")
            conn.exec_driver_sql(f"INSERT INTO {people} VALUES (7)")

        with pytest.raises(SiardError) as refused:
            load_archive(archive, rows_from(data), url)
        assert refused.value.rule == "target-exists"
        assert refused.value.table == "reg.people"
        assert "reg.people" in refused.value.message
        tables = set(
            sa.inspect(engine).get_table_names(schema=None if target == "sqlite" else "reg")
        )
        assert tables == {"people"}  # visits, first in the archive, was not created
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT kept FROM {people}").all() == [(7,)]

        summary = load_archive(archive, rows_from(data), url, replace=True)
        assert (summary.tables, summary.rows, summary.problems) == (2, 3, ())
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT name FROM {people} ORDER BY id").all() == [
                ("Ada",),
                ("Alan",),
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_refused_row_leaves_nothing_of_the_load(
    target: str, pg_database: MakeDatabase, tmp_path: Path
) -> None:
    archive, data = two_tables([[1, 1], [1, 2]])  # the same primary key twice
    url = target_url(target, pg_database, tmp_path)
    with pytest.raises(SiardError) as refused:
        load_archive(archive, rows_from(data), url)
    assert (refused.value.rule, refused.value.table) == ("load", "reg.visits")
    engine = sa.create_engine(url)
    try:
        assert (
            sa.inspect(engine).get_table_names(schema=None if target == "sqlite" else "reg") == []
        )
    finally:
        engine.dispose()


def test_sqlite_names_tables_by_schema_only_when_there_are_several() -> None:
    def table(name: str) -> Table:
        return Table(name, "table0", [Column("a", "INTEGER")])

    one = Archive("db", [Schema("sales", "schema0", [table("orders")]), Schema("empty", "schema1")])
    assert flat_names(one) == {("sales", "orders"): "orders"}
    two = Archive(
        "db",
        [
            Schema("sales", "schema0", [table("orders")]),
            Schema("stock", "schema1", [table("orders")]),
        ],
    )
    assert flat_names(two) == {
        ("sales", "orders"): "sales__orders",
        ("stock", "orders"): "stock__orders",
    }
    # Names SQLite takes for one are numbered in archive order, never refused; a table's
    # own name is not numbered into (orders_2 is taken: the clash becomes orders_3).
    clash = Archive(
        "db",
        [Schema("s", "schema0", [table("Orders"), table("orders"), table("ORDERS_2")])],
    )
    assert flat_names(clash) == {
        ("s", "Orders"): "Orders",
        ("s", "orders"): "orders_3",
        ("s", "ORDERS_2"): "ORDERS_2",
    }
    assert flat_names(clash) == flat_names(clash)  # deterministic
    spread = Archive(
        "db",
        [
            Schema("a__b", "schema0", [table("c")]),
            Schema("a", "schema1", [table("b__c"), table("B__C")]),
        ],
    )
    assert list(flat_names(spread).values()) == ["a__b__c", "a__b__c_2", "a__B__C_3"]


@pytest.mark.parametrize(
    ("sql2008", "declared"),
    [
        ("INTEGER", "INTEGER"),
        ("NUMERIC(10, 2)", "NUMERIC(10, 2)"),
        ("DECIMAL(15)", "DECIMAL(15)"),
        ("NUMERIC(16, 2)", "NUMERIC_TEXT(16, 2)"),
        ("NUMERIC", "NUMERIC_TEXT"),
        ("TIMESTAMP WITH TIME ZONE(6)", "TIMESTAMP"),
        ("TIMESTAMP(3)", "TIMESTAMP"),
        ("BOOLEAN", "BOOLEAN"),
        ("BINARY VARYING(16)", "BLOB"),
        ("BINARY LARGE OBJECT", "BLOB"),
        ("CHARACTER(36)", "CHAR(36)"),
        ("VARCHAR(20)", "VARCHAR(20)"),
        ("CHARACTER LARGE OBJECT", "TEXT"),
        ("DOUBLE PRECISION", "DOUBLE PRECISION"),
        ("INTERVAL DAY TO SECOND(6)", "VARCHAR"),
    ],
)
def test_sqlite_declared_types_name_the_sql_type_where_values_stay_exact(
    sql2008: str, declared: str
) -> None:
    assert sqlite_type(sql2008) == declared


def percent_archive() -> tuple[Archive, dict[str, list[list[Any]]]]:
    """Names with ``%`` (schema, tables, columns, keys): no paramstyle may touch them."""
    parent = Table(
        "100% pure",
        "table0",
        [Column("id", "INTEGER", nullable=False), Column("rate %", "NUMERIC(5, 2)")],
        rows=2,
        primary_key=Key("pk 100%", ["id"]),
        candidate_keys=[Key("uq rate %", ["rate %"])],
    )
    child = Table(
        "child %s",
        "table1",
        [Column("id", "INTEGER", nullable=False), Column("pure %", "INTEGER")],
        rows=1,
        primary_key=Key("pk child %s", ["id"]),
        foreign_keys=[ForeignKey("fk %(x)s", ["pure %"], "s %", "100% pure", ["id"])],
    )
    archive = Archive("pct", [Schema("s %", "schema0", [parent, child])])
    data: dict[str, list[list[Any]]] = {
        "100% pure": [[1, Decimal("1.50")], [2, Decimal("99.99")]],
        "child %s": [[1, 2]],
    }
    return archive, data


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_names_with_a_percent_sign_load_and_replace(
    target: str, pg_database: MakeDatabase, tmp_path: Path
) -> None:
    archive, data = percent_archive()
    url = target_url(target, pg_database, tmp_path)
    for replace in (False, True):  # the second time drops and creates again
        summary = load_archive(archive, rows_from(data), url, replace=replace)
        assert (summary.tables, summary.rows, summary.problems) == (2, 3, ())
    engine = sa.create_engine(url)
    try:
        where = None if target == "sqlite" else "s %"
        assert set(sa.inspect(engine).get_table_names(schema=where)) == {"100% pure", "child %s"}
        with engine.connect() as conn:
            t = sa.Table("100% pure", sa.MetaData(), schema=where, autoload_with=conn)
            got = conn.execute(sa.select(t.c["id"], t.c["rate %"]).order_by(t.c["id"])).all()
            assert [(i, Decimal(str(r))) for i, r in got] == [
                (1, Decimal("1.50")),
                (2, Decimal("99.99")),
            ]
        fks = sa.inspect(engine).get_foreign_keys("child %s", schema=where)
        assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [
            (["pure %"], "100% pure")
        ]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://archivist:s3cret@db.example/app",
        "oracle://archivist:s3cret@db.example/app",
        "postgresql+psycopg2://archivist:s3cret@db.example/app",
        "mssql+pyodbc://archivist:s3cret@db.example/app",
    ],
)
def test_an_unsupported_target_is_refused_by_name_before_any_driver_is_imported(
    url: str,
) -> None:
    archive, data = two_tables([[1, 1]])
    with pytest.raises(InvalidRequestError) as refused:
        load_archive(archive, rows_from(data), url)
    message = refused.value.message
    assert "s3cret" not in message and "archivist@db.example/app" in message
    assert url.split(":")[0] in message
    assert "postgresql+psycopg" in message and "SQLite" in message


def lying(rows: int) -> tuple[Archive, dict[str, list[list[Any]]]]:
    """``two_tables`` whose metadata says ``visits`` has ``rows`` rows; it holds 2."""
    archive, data = two_tables([[1, 1], [2, 2]])
    archive.schemas[0].tables[0].rows = rows
    return archive, data


@pytest.mark.parametrize("recorded", [3, 1])
@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_rows_other_than_metadata_records_refuse_the_load_and_leave_nothing(
    target: str, recorded: int, pg_database: MakeDatabase, tmp_path: Path
) -> None:
    archive, data = lying(recorded)
    url = target_url(target, pg_database, tmp_path)
    with pytest.raises(SiardError) as refused:
        load_archive(archive, rows_from(data), url)
    err = refused.value
    assert (err.rule, err.table, err.entry) == (
        "row-count",
        "reg.visits",
        "content/schema0/table1/table1.xml",
    )
    assert f"says {recorded} rows" in err.message and "holds 2" in err.message
    assert "P_4.3-10" in err.message
    if target == "sqlite":
        assert not (tmp_path / "target.sqlite").exists()  # the load made it: it goes
        assert not list(tmp_path.iterdir())
    else:
        engine = sa.create_engine(url)
        try:
            assert not sa.inspect(engine).has_schema("reg")  # one transaction, rolled back
        finally:
            engine.dispose()


def test_a_failed_load_keeps_a_sqlite_file_that_was_there_without_its_tables(
    tmp_path: Path,
) -> None:
    target = tmp_path / "target.sqlite"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE kept (a INTEGER)")
        conn.execute("INSERT INTO kept VALUES (7)")
    conn.close()
    archive, data = lying(5)
    with pytest.raises(SiardError):
        load_archive(archive, rows_from(data), f"sqlite:///{target}")
    with sqlite3.connect(target) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert names == ["kept"]
        assert conn.execute("SELECT a FROM kept").fetchall() == [(7,)]
    conn.close()


def test_a_refused_load_into_a_new_sqlite_file_leaves_no_file(tmp_path: Path) -> None:
    archive, data = two_tables([[1, 1], [1, 2]])  # the same primary key twice
    target = tmp_path / "new.sqlite"
    with pytest.raises(SiardError):
        load_archive(archive, rows_from(data), f"sqlite:///{target}")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def small_siard(tmp_path: Path) -> Path:
    script = """
        CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        INSERT INTO t VALUES (1, 'a'), (2, 'b');
    """
    return exported_sqlite(tmp_path / "small.sqlite", script, tmp_path / "small.siard")


def test_errors_of_load_siard_name_the_archive_once(small_siard: Path, tmp_path: Path) -> None:
    lie = replaced({b"<rows>2</rows>": b"<rows>9</rows>"})
    liar = rewrite(small_siard, tmp_path / "liar.siard", change={METADATA: lie})
    target = tmp_path / "out.sqlite"
    with pytest.raises(SiardError) as refused:
        load_siard(liar, f"sqlite:///{target}")
    err = refused.value
    assert err.rule == "row-count" and err.path == str(liar)
    assert err.message.startswith(f"{liar}: main.t: metadata.xml says 9 rows")
    assert err.message.count("liar.siard") == 1 and str(err) == err.message
    assert not target.exists()

    entity = sub(rb"\?>", b'?>\n<!DOCTYPE x [<!ENTITY e "e">]>')
    doctype = rewrite(small_siard, tmp_path / "doctype.siard", change={METADATA: entity})
    with pytest.raises(SiardError) as refused:
        load_siard(doctype, f"sqlite:///{target}")
    assert refused.value.message.count("doctype.siard") == 1
    assert "header/metadata.xml" in refused.value.message
    assert not target.exists()


def test_the_sqlite_foreign_key_check_counts_row_by_row_never_all_at_once(
    tmp_path: Path,
) -> None:
    from preservation.siard.load import _sqlite_foreign_key_check

    class OneAtATime(sqlite3.Cursor):
        def fetchall(self) -> list[Any]:
            raise AssertionError("every broken row read into memory at once")

    class Connection(sqlite3.Connection):
        def execute(self, *args: Any) -> sqlite3.Cursor:
            return self.cursor(OneAtATime).execute(*args)

    archive, _ = two_tables([])
    conn = sqlite3.connect(tmp_path / "fk.sqlite", factory=Connection)
    try:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, person REFERENCES people(id))")
        conn.executemany("INSERT INTO visits VALUES (?, ?)", [(i, i) for i in range(2500)])
        conn.commit()
        names = {("reg", "people"): "people", ("reg", "visits"): "visits"}
        problems = _sqlite_foreign_key_check(conn, archive, names, lambda n: f'"{n}"')
    finally:
        conn.close()
    assert problems == ["reg.visits: 2,500 row(s) refer to no row of people (foreign key check)"]


def test_tables_whose_sqlite_names_clash_load_side_by_side(tmp_path: Path) -> None:
    def table(name: str, folder: str) -> Table:
        return Table(name, folder, [Column("a", "INTEGER")], rows=1)

    archive = Archive(
        "db", [Schema("s", "schema0", [table("Order", "table0"), table("order", "table1")])]
    )
    data = {"Order": [[1]], "order": [[2]]}
    target = tmp_path / "clash.sqlite"
    summary = load_archive(archive, rows_from(data), f"sqlite:///{target}")
    assert summary.names == {"s.Order": "Order", "s.order": "order_2"}
    with sqlite3.connect(target) as conn:
        assert conn.execute('SELECT a FROM "Order"').fetchall() == [(1,)]
        assert conn.execute('SELECT a FROM "order_2"').fetchall() == [(2,)]
    conn.close()


@pytest.fixture
def case_columns(tmp_path: Path) -> Path:
    """``people`` with columns ``Name`` and ``name`` (a PostgreSQL table can have both), keyed."""
    script = """
        CREATE TABLE people (id INTEGER PRIMARY KEY, "Name" TEXT, xame TEXT UNIQUE);
        INSERT INTO people VALUES (1, 'Ada Lovelace', 'ada');
        CREATE TABLE pets (id INTEGER PRIMARY KEY, owner TEXT REFERENCES people (xame));
        INSERT INTO pets VALUES (7, 'ada');
    """
    plain = exported_sqlite(tmp_path / "case.sqlite", script, tmp_path / "plain.siard")
    # ``>xame<``: the column's name and the key columns that name it.
    rename = replaced({b">xame<": b">name<"})
    return rewrite(plain, tmp_path / "case.siard", change={METADATA: rename})


def test_columns_differing_only_in_case_are_numbered_on_sqlite_keys_and_all(
    case_columns: Path, tmp_path: Path
) -> None:
    target = tmp_path / "case_target.sqlite"
    summary = load_siard(case_columns, f"sqlite:///{target}")
    assert summary.rows == 2
    assert summary.renamed == (
        "main.people: column 'name' loaded as 'name_2' "
        "(SQLite takes names differing only in case for one)",
    )
    assert summary.problems == ()
    with sqlite3.connect(target) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(people)")]
        assert columns == ["id", "Name", "name_2"]
        assert conn.execute('SELECT "Name", name_2 FROM people').fetchall() == [
            ("Ada Lovelace", "ada")
        ]
        (fk,) = conn.execute("PRAGMA foreign_key_list(pets)").fetchall()
        assert (fk[2], fk[3], fk[4]) == ("people", "owner", "name_2")
        (unique,) = [i for i in conn.execute("PRAGMA index_list(people)") if i[3] == "u"]
        assert [c[2] for c in conn.execute(f'PRAGMA index_info("{unique[1]}")')] == ["name_2"]
    conn.close()


def test_flat_columns_keeps_the_first_and_numbers_past_names_taken() -> None:
    from preservation.siard.load import flat_columns

    table = Table(
        "t", "table0", [Column(n, "INTEGER") for n in ("a", "A", "a_2", "B", "b")], rows=0
    )
    assert flat_columns(table) == ["a", "A_3", "a_2", "B", "b_2"]


def pk_clash_archive() -> tuple[Archive, dict[str, list[list[Any]]]]:
    """Keys PostgreSQL refuses as archived: ``pk`` twice, a 62-byte table, ``a`` beside ``pk_a``."""
    long = "t" * 62

    def table(name: str, folder: str, key: str, fks: list[ForeignKey] | None = None) -> Table:
        return Table(
            name,
            folder,
            [Column("id", "INTEGER", nullable=False), Column("ref", "INTEGER")],
            rows=1,
            primary_key=Key(key, ["id"]),
            candidate_keys=[Key("uq", ["ref"])],
            foreign_keys=fks or [],
        )

    tables = [
        table("a", "table0", "pk_a"),  # a table of that name follows
        table("pk_a", "table1", "pk"),
        table("b", "table2", "pk", [ForeignKey("fk", ["ref"], "s", "a", ["id"])]),
        table(long, "table3", f"pk_{long}", [ForeignKey("fk", ["ref"], "s", "b", ["id"])]),
    ]
    archive = Archive("db", [Schema("s", "schema0", tables)])
    return archive, {t.name: [[1, 1]] for t in tables}


def test_constraint_names_postgresql_would_refuse_are_made_unique_within_63_bytes(
    pg_database: MakeDatabase,
) -> None:
    archive, data = pk_clash_archive()
    url = pg_database()
    summary = load_archive(archive, rows_from(data), url)
    assert summary.rows == 4 and summary.problems == ()
    long = "t" * 62
    renamed = {line.split(" declared as ")[0]: line for line in summary.renamed}
    assert set(renamed) == {
        "s.a: primary key 'pk_a'",  # the table pk_a has the name
        "s.b: primary key 'pk'",  # pk_a's key took it first
        "s.b: candidate key 'uq'",
        "s.pk_a: candidate key 'uq'",
        f"s.{long}: candidate key 'uq'",
        f"s.{long}: primary key 'pk_{long}'",  # 65 bytes
        f"s.{long}: foreign key 'fk'",  # b's took it first
    }
    assert "longer than 63 bytes" in renamed[f"s.{long}: primary key 'pk_{long}'"]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = conn.exec_driver_sql(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint"
                " WHERE connamespace = 's'::regnamespace"
            ).all()
    finally:
        engine.dispose()
    declared = [n for _, n in names]
    assert len(declared) == len(set(declared)) == 4 + 4 + 2
    assert all(len(n.encode()) <= 63 for n in declared)
    assert ("s.pk_a", "pk") in names  # kept where unique
    assert ("s.b", "fk") in names and ("s.a", "uq") in names
    # Deterministic: a second load elsewhere names them alike.
    again = load_archive(archive, rows_from(data), pg_database())
    assert again.renamed == summary.renamed


def test_a_url_whose_port_is_not_a_number_is_refused_without_its_password() -> None:
    archive, data = two_tables([[1, 1]])
    with pytest.raises(InvalidRequestError) as refused:
        load_archive(archive, rows_from(data), "postgresql://u:pw@h:notaport/db")
    message = refused.value.message
    assert "pw" not in message.replace("postgresql", "") and "notaport" in message
    assert "port" in message
