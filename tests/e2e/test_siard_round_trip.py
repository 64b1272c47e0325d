"""A database through the whole safe and back: export, bag, ingest, DIP, load, compare.

The source is a real database (SQLite, and PostgreSQL with two schemas) with
every common type (tests/siard_samples.py). It is exported to SIARD with the
CLI, bagged with the CLI, ingested on the embedded default (emulated tape on
two sites), recalled as DIPs, and loaded back with the CLI into PostgreSQL and
into SQLite. The comparison is table by table. PostgreSQL keeps every
SQL:2008 type, so the loaded database is exported again and both archives are
read back: structure (tables, columns, types, keys) and every value compared
in one canonical form, without trusting either driver to spell a timestamp or
a decimal the same way. SQLite has fewer types: its copies (the loaded file
and the access DIP's) are read directly, every value as SQLite keeps it, each
column's type as the one SQLite can hold for the archived type, and the keys.
The access DIP's CSVs hold every table, its columns and its rows.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import create_engine, inspect

from preservation import dispatch, ingest
from preservation.access import cache, recall
from preservation.access import service as dips
from preservation.catalog import session_scope
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.siard.types import sql2008_of
from tests.siard_samples import create_sample_database, expected_rows
from tests.unit.siard.test_load import canonical_rows, kept_by_sqlite, sqlite_rows

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    dispatch.shutdown(c, wait=True)
    c.close()


def cli(*args: str) -> None:
    from typer.testing import CliRunner

    from preservation.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)


def structure_and_rows(siard: Path) -> dict[str, Any]:
    """Each table by schema and name: structure, recorded count and rows in canonical form."""
    from preservation.siard.reader import open_siard

    out: dict[str, Any] = {}
    with open_siard(siard) as reader:
        for schema, table in reader.archive.tables():
            out[f"{schema.name}.{table.name}"] = {
                "columns": [(c.name, c.type, c.nullable) for c in table.columns],
                "primary_key": table.primary_key.columns if table.primary_key else None,
                "foreign_keys": sorted(
                    (fk.columns, fk.referenced_schema, fk.referenced_table, fk.referenced_columns)
                    for fk in table.foreign_keys
                ),
                "rows": canonical_rows(reader.rows(schema, table)),
                "recorded_rows": table.rows,
            }
    return out


def assert_same_tables(source: dict[str, Any], target: dict[str, Any]) -> None:
    assert sorted(source) == sorted(target)
    for name, want in source.items():
        got = target[name]
        assert got["columns"] == want["columns"], name
        assert got["primary_key"] == want["primary_key"], name
        assert got["foreign_keys"] == want["foreign_keys"], name
        assert got["recorded_rows"] == want["recorded_rows"] == len(want["rows"]), name
        assert got["rows"] == want["rows"], name


def assert_sqlite_holds(path: Path, siard: Path, source: dict[str, Any]) -> None:
    """A SQLite copy: every table, its rows and values as SQLite keeps them, its types, its keys."""
    from preservation.siard.load import flat_names
    from preservation.siard.reader import open_siard

    with open_siard(siard) as reader:
        archive = reader.archive
    names = flat_names(archive)
    engine = create_engine(f"sqlite:///{path}")
    try:
        inspector = inspect(engine)
        assert len(inspector.get_table_names()) == len(source)
        for schema, table in archive.tables():
            label = f"{schema.name}.{table.name}"
            name = names[(schema.name, table.name)]
            _, rows = sqlite_rows(path, name)
            assert canonical_rows(rows) == source[label]["rows"], label
            got = [sql2008_of(c["type"], "sqlite") for c in inspector.get_columns(name)]
            assert got == [kept_by_sqlite(c.type) for c in table.columns], label
            pk = inspector.get_pk_constraint(name)["constrained_columns"]
            assert pk == (source[label]["primary_key"] or []), label
            fks = sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in inspector.get_foreign_keys(name)
            )
            assert fks == sorted(
                (fk.columns, names[(fk.referenced_schema, fk.referenced_table)],
                 fk.referenced_columns)
                for fk in table.foreign_keys
            ), label  # fmt: skip
    finally:
        engine.dispose()


def ingest_siard(ctx: Context, siard: Path, where: Path) -> str:
    bag = where / "bag"
    cli("siard", "bag", str(siard), "--to", str(bag))
    bagit.Bag(str(bag)).validate()
    result = ingest.run_ingest(ctx, bag, tenant="registry")
    assert result.state == "committed", result
    assert result.aip_id
    return result.aip_id


def fetch_dip(ctx: Context, aip_id: str, kind: str, where: Path) -> Path:
    """The DIP's representation folder, from a real recall off emulated tape."""
    with session_scope(ctx.sessions) as s:
        dip_id = dips.request_dip(
            s, aip_id=aip_id, tenant_id=None, kind=kind, requested_by="reader@registry"
        ).dip_id
    assert dip_id in recall.run_batch(ctx).ready
    path = cache.zip_path(ctx.settings, dip_id)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        zf.extractall(where)
    bag = where / dip_id
    bagit.Bag(str(bag)).validate()
    return bag / "data" / "representations" / kind / "data"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_comes_back_table_by_table_after_export_ingest_dip_and_load(
    backend: str, ctx: Context, tmp_path: Path, pg_database: Any
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}" if backend == "sqlite" else pg_database()
    create_sample_database(source_url)
    exported = tmp_path / "register.siard"
    cli("siard", "export", "--url", source_url, "--to", str(exported))
    cli("siard", "validate", str(exported))
    source = structure_and_rows(exported)
    # The archive holds what the database holds: every table, every value as inserted.
    inserted = expected_rows(source_url)
    assert sorted(source) == sorted(f"{s}.{t}" for s, t in inserted)
    for (schema, table), rows in inserted.items():
        nan = float("nan")
        rows = [tuple(nan if v == "NaN" else v for v in row) for row in rows]
        assert source[f"{schema}.{table}"]["rows"] == canonical_rows(rows), (schema, table)

    aip_id = ingest_siard(ctx, exported, tmp_path)

    # The preservation DIP gives the .siard back bit for bit.
    original = fetch_dip(ctx, aip_id, "preservation", tmp_path / "dip-p")
    (back,) = list(original.rglob("*.siard"))
    assert back.read_bytes() == exported.read_bytes()

    # Loaded into both kinds of database. PostgreSQL keeps every SQL:2008 type: exported
    # again, the archive holds the same tables, types, keys and values. SQLite keeps what
    # SQLite can (its types are fewer), every value unchanged.
    pg_target = pg_database()
    cli("siard", "load", str(back), "--url", pg_target)
    again = tmp_path / "again.siard"
    cli("siard", "export", "--url", pg_target, "--to", str(again))
    assert_same_tables(source, structure_and_rows(again))
    loaded = tmp_path / "loaded.sqlite"
    cli("siard", "load", str(back), "--url", f"sqlite:///{loaded}")
    assert_sqlite_holds(loaded, back, source)

    # The access DIP: the tables as a SQLite database and one CSV per table.
    access = fetch_dip(ctx, aip_id, "access", tmp_path / "dip-a")
    assert not list(access.rglob("*.siard"))
    (sqlite_file,) = list(access.rglob("*.sqlite"))
    assert_sqlite_holds(sqlite_file, back, source)
    csvs = sorted(access.rglob("*.csv"))
    assert len(csvs) == len(source)
    widths = sorted((len(t["columns"]), len(t["rows"])) for t in source.values())
    seen = []
    for path in csvs:
        raw = path.read_bytes()
        assert raw.endswith(b"\r\n")  # RFC 4180 line ends
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        seen.append((len(rows[0]), len(rows) - 1))
    assert sorted(seen) == widths
