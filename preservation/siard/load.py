"""A SIARD archive back into a live database: PostgreSQL or SQLite.

Tables are created from the metadata with their columns, primary keys and
candidate (unique) keys, then filled from the table XML in batches, then tied
together by their foreign keys. Defaults, views, triggers and routines are not
recreated: a SIARD keeps them as text in the source DBMS's own dialect, which
is evidence, not something to run.

**PostgreSQL.** Every schema of the archive is created if missing and keeps
its name; the types are ``types.sqlalchemy_type_of``. Rows go in through
``COPY ... FROM STDIN``, the server's own bulk path, and the whole load is one
transaction: if one row is refused, nothing of the load is left. Foreign keys
are added with ``ALTER TABLE`` once every table is full, so the order of the
tables in the archive does not matter. A foreign key that the archived rows
break is still declared, ``NOT VALID`` (enforced for new rows only), and the
summary says so: the archive's rows are loaded as they were kept, not mended.
Constraint names are kept where PostgreSQL takes them: one that another
table or constraint of its schema already has (SQLite lets every table's key
be ``pk``; MySQL calls every primary key ``PRIMARY``), or longer than 63
bytes, is declared as ``<name cut short>_<8 hex digits>`` instead, and the
summary's ``renamed`` says so (``_pg_plan``).

**SQLite** has no schemas, so tables are flattened (``flat_names``): an
archive with tables in one schema gives the table names as they are; with two
or more, ``<schema>__<table>``; names that would then meet (SQLite folds ASCII
case: ``Order`` and ``order``) are numbered, ``order_2``, never refused; so are
a table's columns (``Name`` and ``name``: ``name_2``, ``flat_columns``), the
summary's ``renamed`` saying which. The
declared types (``sqlite_type``) keep the SQL name a reader expects
(``INTEGER``, ``NUMERIC(10, 2)``, ``TIMESTAMP``, ``BOOLEAN``, ``BLOB``) as far
as the values stay exact:

- ``DECIMAL``/``NUMERIC`` of up to 15 digits are numbers (SQLite keeps 15
  significant digits of a REAL exactly, and integers exactly); wider ones, or
  ones without a precision, would lose digits that way, so they are text in a
  column declared ``NUMERIC_TEXT(p, s)`` (TEXT affinity): the archived digits,
  unchanged, to be read as a decimal;
- timestamps are ISO 8601 text, ``YYYY-MM-DD HH:MM:SS[.ffffff]``, as SQLite's
  date functions read them; ``WITH TIME ZONE`` ones in UTC with ``+00:00``
  (SQLite has no zoned type: the offset is in the value, under ``TIMESTAMP``);
- a double's NaN is the text ``NaN`` (SQLite would store NULL);
- binary of every kind is a ``BLOB``; ``XML`` and ``INTERVAL`` are text.

Foreign keys are declared in ``CREATE TABLE`` and the rows inserted with the
check off (as every SQLite connection starts), in one transaction with batches
of 5,000; then ``PRAGMA foreign_key_check`` runs and what it finds goes into
the summary.

A table that already exists is refused (``SiardError``, rule
``target-exists``) before anything is created, unless ``replace`` is given:
then it is dropped first (on PostgreSQL with ``CASCADE``: the foreign keys of
other tables pointing at it go with it).

The rows of each table are counted as they go in: a table whose XML holds
other than the ``<rows>`` metadata.xml records for it is refused
(``SiardError``, rule ``row-count``, P_4.3-10). A load that fails leaves
nothing: PostgreSQL's one transaction and SQLite's are rolled back, and a
SQLite file the load itself created is deleted (one that was there is kept).
Only PostgreSQL through psycopg (``postgresql+psycopg://``; ``postgresql://``
means it) and SQLite are targets (``connect.engine_for``): another URL, or one
that does not parse, is refused by name, its password left out, before any
driver is imported.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import AddConstraint, CreateTable
from sqlalchemy.types import TypeEngine, UserDefinedType

from preservation.errors import SiardError
from preservation.siard.connect import engine_for
from preservation.siard.metadata import REFERENTIAL_ACTIONS
from preservation.siard.model import Archive, Progress, Schema, Table, first_line, table_label
from preservation.siard.reader import naming_archive, open_siard
from preservation.siard.types import base_type, sqlalchemy_type_of, type_params

__all__ = [
    "LoadSummary",
    "flat_columns",
    "flat_names",
    "load_archive",
    "load_siard",
    "sqlite_type",
]

Rows = Callable[[Schema, Table], Iterable[list[Any]]]

BATCH = 5000
#: Significant digits SQLite keeps exactly in a REAL (DBL_DIG).
EXACT_DIGITS = 15
#: PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1); a longer one is cut short.
PG_MAX_NAME_BYTES = 63


@dataclass(frozen=True)
class LoadSummary:
    """What was loaded: ``names`` maps each archived ``schema.table`` to its table in the target.

    ``problems`` are what the database found wrong with the archived rows (a
    foreign key they break, one that cannot be declared); the rows are loaded
    all the same. ``renamed`` says, a sentence each, which archived column and
    constraint names the target could not take as they are and what they
    became (``flat_columns`` on SQLite, constraint names on PostgreSQL).
    """

    tables: int
    rows: int
    names: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    renamed: tuple[str, ...] = ()


def _folded(name: str) -> bytes:
    return name.encode("utf-8").lower()  # ASCII only, as SQLite folds case


def _numbered(wanted: Iterable[str]) -> list[str]:
    """``wanted`` made distinct as SQLite compares names (ASCII case folded), in order.

    The first of names that meet keeps its name, the next is ``<name>_2``, then
    ``<name>_3`` (the number goes up until the name is free). A name wanted as
    it is is kept before a clashing one is numbered into it.
    """
    wanted = list(wanted)
    taken = {_folded(name) for name in wanted}
    seen: set[bytes] = set()
    names: list[str] = []
    for name in wanted:
        if _folded(name) in seen:
            n = 2
            while _folded(f"{name}_{n}") in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(_folded(name))
        seen.add(_folded(name))
        names.append(name)
    return names


def flat_names(archive: Archive) -> dict[tuple[str, str], str]:
    """Each table's name where there are no schemas (SQLite, a folder of CSV files).

    One rule for the SQLite copy and the CSV files, so both name a table alike:
    if the archive's tables are all in one schema, a table keeps its name; if
    they are spread over two or more, it is ``<schema>__<table>``. (Schemas
    without tables do not count: an empty ``public`` beside ``sales`` does not
    rename ``sales``' tables.) Names that would then meet as SQLite compares
    them (ASCII case folded: ``Order`` and ``order``; ``a__b`` made twice) are
    numbered in archive order: the first keeps its name, the next is
    ``Order_2``, then ``Order_3`` (the number goes up until the name is free).
    Nothing is refused: ``LoadSummary.names`` says where each table went.
    """
    populated = [s for s in archive.schemas if s.tables]
    several = len(populated) > 1
    keys = [(schema.name, table.name) for schema in populated for table in schema.tables]
    wanted = [f"{s}__{t}" if several else t for s, t in keys]
    return dict(zip(keys, _numbered(wanted), strict=True))


def flat_columns(table: Table) -> list[str]:
    """A table's column names as SQLite takes them (and the CSV header gives them), in order.

    SQLite compares column names with ASCII case folded, so a PostgreSQL table
    with columns ``Name`` and ``name`` would be refused ("duplicate column
    name"): they are numbered as ``flat_names`` numbers tables, in archive
    order, ``Name`` then ``name_2``. ``LoadSummary.renamed`` says which were.
    """
    return _numbered(c.name for c in table.columns)


def sqlite_type(sql2008: str) -> str:
    """The type a SQLite column is declared with for a SIARD column (see the module notes).

    SQLite stores any value in any column, so the declared name is for the
    reader: it keeps the SQL type a client expects (and the affinity that goes
    with it) wherever SQLite's storage keeps the archived value exact, and
    says ``NUMERIC_TEXT`` / text where it would not (wide decimals).
    """
    base = base_type(sql2008)
    first, second = type_params(sql2008)
    if base in ("INTEGER", "SMALLINT", "BIGINT", "REAL", "BOOLEAN", "DATE"):
        return base
    if base in ("NUMERIC", "DECIMAL"):
        args = "" if first is None else f"({first})" if second is None else f"({first}, {second})"
        if first is not None and first <= EXACT_DIGITS:
            return base + args
        return f"{base}_TEXT{args}"
    if base in ("DOUBLE PRECISION", "FLOAT"):
        return base
    if base == "CHARACTER":
        return f"CHAR({first or 1})"
    if base in ("CHARACTER VARYING", "INTERVAL"):
        return f"VARCHAR({first})" if first and base != "INTERVAL" else "VARCHAR"
    if base in ("BINARY", "BINARY VARYING", "BINARY LARGE OBJECT", "DATALINK"):
        return "BLOB"
    if base in ("TIME", "TIME WITH TIME ZONE"):
        return "TIME"
    if base in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
        return "TIMESTAMP"
    return "TEXT"  # CHARACTER LARGE OBJECT, XML, and anything unknown


class _Declared(UserDefinedType[Any]):
    """A column type spelled exactly as given (SQLite takes any name; affinity follows it)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


# -- values ------------------------------------------------------------------------------


def _decimal_text(v: Any) -> Any:
    return format(v, "f") if isinstance(v, Decimal) else v


def _double(v: Any) -> Any:
    return "NaN" if isinstance(v, float) and math.isnan(v) else v


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date | time) else v


def _timestamp(v: Any) -> Any:
    return v.isoformat(sep=" ") if isinstance(v, datetime) else v


def _utc(v: datetime) -> datetime:
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _timestamp_tz(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo is UTC else _utc(v)).isoformat(sep=" ")
    return v


def _aware(v: Any) -> Any:
    return _utc(v) if isinstance(v, datetime) and v.tzinfo is None else v


def _sqlite_converter(sql2008: str) -> Callable[[Any], Any] | None:
    base = base_type(sql2008)
    if base in ("NUMERIC", "DECIMAL"):
        return _decimal_text
    if base in ("REAL", "DOUBLE PRECISION", "FLOAT"):
        return _double
    if base in ("DATE", "TIME", "TIME WITH TIME ZONE"):
        return _iso
    if base == "TIMESTAMP":
        return _timestamp
    if base == "TIMESTAMP WITH TIME ZONE":
        return _timestamp_tz
    return None


def _pg_converter(sql2008: str) -> Callable[[Any], Any] | None:
    # A naive value in a zoned column would be read in the session's time zone: UTC it is.
    return _aware if base_type(sql2008) == "TIMESTAMP WITH TIME ZONE" else None


def _converted(
    rows: Iterable[list[Any]], converters: list[Callable[[Any], Any] | None]
) -> Iterable[tuple[Any, ...]]:
    """Each row as a fresh tuple (a batch must not share a reader's list), values converted.

    The row function is written out per table (``(r[0], f1(r[1]) ..., r[6])``):
    a loop over the columns in Python would cost more than the insert.
    """
    if not any(converters):
        return (tuple(row) for row in rows)
    scope: dict[str, Any] = {}
    cells = []
    for i, f in enumerate(converters):
        if f is None:
            cells.append(f"r[{i}]")
        else:
            scope[f"f{i}"] = f
            cells.append(f"(None if r[{i}] is None else f{i}(r[{i}]))")
    convert = eval(f"lambda r: ({', '.join(cells)},)", scope)  # indices and names only
    return map(convert, rows)


# -- structure ---------------------------------------------------------------------------


def _check_columns(table: Table, label: str, what: str, columns: list[str]) -> None:
    known = {c.name for c in table.columns}
    missing = [c for c in columns if c not in known]
    if missing or not columns:
        raise SiardError(
            f"{label}: the {what} names columns the table does not have: {missing or columns}",
            rule="keys",
            table=label,
        )


@dataclass
class _Plan:
    """How the archive's names become the target's: tables, columns, constraints.

    ``tables``: (schema, table) -> (target schema or None, table name);
    ``columns``: (schema, table) -> the loaded column names, in archive order;
    ``constraints``: (schema, table, kind, index) -> the constraint's name
    (None: the database names it), kind ``pk``, ``unique`` or ``fk``;
    ``renamed``: a sentence for each archived column or constraint name changed.
    """

    tables: dict[tuple[str, str], tuple[str | None, str]]
    columns: dict[tuple[str, str], list[str]]
    constraints: dict[tuple[str, str, str, int], str | None] = field(default_factory=dict)
    renamed: list[str] = field(default_factory=list)

    def column_map(self, schema: str, table: str, archived: Table) -> dict[str, str]:
        """Archived column name -> loaded one (the first, should the archive repeat a name)."""
        loaded = self.columns[(schema, table)]
        mapping: dict[str, str] = {}
        for column, name in zip(archived.columns, loaded, strict=True):
            mapping.setdefault(column.name, name)
        return mapping

    def constraint(self, schema: Schema, table: Table, kind: str, index: int) -> str | None:
        return self.constraints.get((schema.name, table.name, kind, index))


def _constraints(table: Table) -> Iterator[tuple[str, int, str, list[str]]]:
    """A table's constraints as (kind, index, archived name, columns), in a fixed order."""
    if table.primary_key is not None:
        yield "pk", 0, table.primary_key.name, table.primary_key.columns
    for i, key in enumerate(table.candidate_keys):
        yield "unique", i, key.name, key.columns
    for i, fk in enumerate(table.foreign_keys):
        yield "fk", i, fk.name, fk.columns


_KINDS = {"pk": "primary key", "unique": "candidate key", "fk": "foreign key"}


def _sqlite_plan(archive: Archive) -> _Plan:
    """Flat table names, columns numbered where SQLite would take two for one, constraints as kept.

    SQLite does not care whether constraint names repeat across tables.
    """
    names = flat_names(archive)
    plan = _Plan({k: (None, v) for k, v in names.items()}, {})
    for schema, table in archive.tables():
        key = (schema.name, table.name)
        plan.columns[key] = flat_columns(table)
        for column, loaded in zip(table.columns, plan.columns[key], strict=True):
            if loaded != column.name:
                plan.renamed.append(
                    f"{table_label(schema, table)}: column {column.name!r} loaded as "
                    f"{loaded!r} (SQLite takes names differing only in case for one)"
                )
        for kind, index, name, _columns in _constraints(table):
            plan.constraints[(schema.name, table.name, kind, index)] = name or None
    return plan


def _cut(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes of UTF-8, whole characters only."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _pg_plan(archive: Archive) -> _Plan:
    """Tables and columns as archived; constraint names PostgreSQL will take.

    PostgreSQL keeps a primary or unique key's index among the schema's
    relations (tables, indexes, sequences), so its name must differ from every
    other one there, and a name is at most ``PG_MAX_NAME_BYTES`` long (longer
    ones are cut, silently, so two could meet). The archive holds no such
    promise: SQLite lets every table call its key ``pk``, and a SIARD made from
    MySQL names each primary key ``PRIMARY``. So an archived name is kept only
    if it fits and is not yet taken in its schema (by a table, or by a
    constraint of any kind before it, in archive order); otherwise the
    constraint gets ``<name cut short>_<8 hex digits>``, the digits a hash of
    the schema, table, kind and name, deterministic and unique, and the summary
    says so. Foreign keys are named the same way, though PostgreSQL would
    allow theirs to repeat across tables. An unnamed constraint gets
    PostgreSQL's own kind of name (``<table>_pkey``, ``<table>_<columns>_key``,
    ``<table>_<columns>_fkey``) under the same rule, so that no name the
    server would choose later meets an archived one.
    """
    plan = _Plan(
        {(s.name, t.name): (s.name, t.name) for s, t in archive.tables()},
        {(s.name, t.name): [c.name for c in t.columns] for s, t in archive.tables()},
    )
    for schema in archive.schemas:
        taken = {_cut(t.name, PG_MAX_NAME_BYTES) for t in schema.tables}
        for table in schema.tables:
            for kind, index, archived, columns in _constraints(table):
                if archived:
                    wanted = archived
                elif kind == "pk":
                    wanted = f"{table.name}_pkey"
                else:
                    wanted = (
                        f"{table.name}_{'_'.join(columns)}_{'key' if kind == 'unique' else 'fkey'}"
                    )
                name = wanted
                if len(name.encode("utf-8")) > PG_MAX_NAME_BYTES or name in taken:
                    seed = "\0".join((schema.name, table.name, kind, str(index), wanted))
                    for attempt in itertools.count():
                        digits = hashlib.sha256(f"{seed}\0{attempt}".encode()).hexdigest()[:8]
                        name = f"{_cut(wanted, PG_MAX_NAME_BYTES - 9)}_{digits}"
                        if name not in taken:
                            break
                    if archived:
                        why = (
                            f"longer than {PG_MAX_NAME_BYTES} bytes"
                            if len(archived.encode("utf-8")) > PG_MAX_NAME_BYTES
                            else "already the name of a table or constraint in the schema"
                        )
                        plan.renamed.append(
                            f"{table_label(schema, table)}: {_KINDS[kind]} {archived!r} declared "
                            f"as {name!r} ({why}, which PostgreSQL refuses)"
                        )
                taken.add(name)
                plan.constraints[(schema.name, table.name, kind, index)] = name
    return plan


def _build(
    archive: Archive, plan: _Plan, type_of: Callable[[str], TypeEngine[Any]]
) -> tuple[sa.MetaData, dict[tuple[str, str], sa.Table]]:
    """Every table with its columns, primary and candidate keys (foreign keys come after)."""
    metadata = sa.MetaData()
    built: dict[tuple[str, str], sa.Table] = {}
    for schema, table in archive.tables():
        label = table_label(schema, table)
        key = (schema.name, table.name)
        where, name = plan.tables[key]
        if not table.columns:
            raise SiardError(f"{label} has no columns", rule="structure", table=label)
        columns = [
            sa.Column(loaded, type_of(c.type), nullable=c.nullable, autoincrement=False)
            for c, loaded in zip(table.columns, plan.columns[key], strict=True)
        ]
        loaded_name = plan.column_map(schema.name, table.name, table)
        t = sa.Table(name, metadata, *columns, schema=where)
        if table.primary_key is not None:
            _check_columns(table, label, "primary key", table.primary_key.columns)
            t.append_constraint(
                sa.PrimaryKeyConstraint(
                    *(loaded_name[c] for c in table.primary_key.columns),
                    name=plan.constraint(schema, table, "pk", 0),
                )
            )
        for i, key_ in enumerate(table.candidate_keys):
            _check_columns(table, label, f"candidate key {key_.name}", key_.columns)
            t.append_constraint(
                sa.UniqueConstraint(
                    *(loaded_name[c] for c in key_.columns),
                    name=plan.constraint(schema, table, "unique", i),
                )
            )
        built[key] = t
    return metadata, built


def _foreign_keys(
    archive: Archive,
    built: Mapping[tuple[str, str], sa.Table],
    plan: _Plan,
    problems: list[str],
) -> list[sa.ForeignKeyConstraint]:
    """The archive's foreign keys between loaded tables; one to a table not archived is reported."""
    made: list[sa.ForeignKeyConstraint] = []
    for schema, table in archive.tables():
        label = table_label(schema, table)
        for i, fk in enumerate(table.foreign_keys):
            referenced_key = (fk.referenced_schema or schema.name, fk.referenced_table)
            referenced = built.get(referenced_key)
            target = table_label(*referenced_key)
            if referenced is None:
                problems.append(
                    f"{label}: foreign key {fk.name} not declared: {target} is not in the archive"
                )
                continue
            _check_columns(table, label, f"foreign key {fk.name}", fk.columns)
            referenced_table = next(
                t for s, t in archive.tables() if (s.name, t.name) == referenced_key
            )
            referred = plan.column_map(*referenced_key, referenced_table)
            missing = [c for c in fk.referenced_columns if c not in referred]
            if missing or len(fk.referenced_columns) != len(fk.columns):
                problems.append(
                    f"{label}: foreign key {fk.name} not declared: it refers to columns "
                    f"{fk.referenced_columns} of {target}"
                )
                continue
            own = plan.column_map(schema.name, table.name, table)
            constraint = sa.ForeignKeyConstraint(
                [own[c] for c in fk.columns],
                [referenced.c[referred[c]] for c in fk.referenced_columns],
                name=plan.constraint(schema, table, "fk", i),
                ondelete=fk.delete_action if fk.delete_action in REFERENTIAL_ACTIONS else None,
                onupdate=fk.update_action if fk.update_action in REFERENTIAL_ACTIONS else None,
            )
            built[(schema.name, table.name)].append_constraint(constraint)
            made.append(constraint)
    return made


# -- loading -----------------------------------------------------------------------------


class _Counter:
    """Rows counted across the whole load, in batches of ``BATCH``, with ``progress`` per batch.

    One counter for every table, so progress runs over the archive's total
    (``<rows>`` of metadata.xml), and a table's loaded rows are the counter's
    rise over it, checked against its ``<rows>``.
    """

    def __init__(self, archive: Archive, progress: Progress | None) -> None:
        self.total = sum(t.rows for _, t in archive.tables())
        self.done = 0
        self.progress = progress

    def batches(
        self, label: str, rows: Iterable[tuple[Any, ...]]
    ) -> Iterable[list[tuple[Any, ...]]]:
        it = iter(rows)
        while batch := list(itertools.islice(it, BATCH)):
            yield batch
            self.done += len(batch)
            if self.progress is not None:
                self.progress(label, self.done, max(self.total, self.done))


def load_siard(
    path: str | Path,
    url: str,
    *,
    progress: Progress | None = None,
    replace: bool = False,
) -> LoadSummary:
    """Load every table of the SIARD archive at ``path`` into the database at ``url``.

    ``url`` is a SQLAlchemy URL (``postgresql+psycopg://...``, ``sqlite:///file``).
    A ``SiardError`` names the archive (``path``) in its message.
    """
    with naming_archive(path), open_siard(path) as reader:
        return load_archive(reader.archive, reader.rows, url, progress=progress, replace=replace)


def _new_sqlite_file(engine: sa.Engine) -> Path | None:
    """The SQLite file a load would create (none there yet), to be deleted if the load fails."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def load_archive(
    archive: Archive,
    rows: Rows,
    url: str | sa.URL,
    *,
    progress: Progress | None = None,
    replace: bool = False,
) -> LoadSummary:
    """``load_siard`` from an archive's model and a source of its rows (a reader's ``rows``).

    Errors of the database driver itself (used directly for speed: ``COPY``,
    ``executemany``) come out as SQLAlchemy's, like those of the statements it runs.
    If the load fails, nothing of it is left: a SQLite file it created is deleted
    (one that was there before is kept, without the load's tables).
    """
    engine = engine_for(url, purpose="load")
    created = _new_sqlite_file(engine)
    try:
        if engine.dialect.name == "sqlite":
            return _load_sqlite(engine, archive, rows, progress, replace)
        return _load_postgresql(engine, archive, rows, progress, replace)
    except engine.dialect.loaded_dbapi.Error as err:
        _discard(engine, created)
        raise sa.exc.DBAPIError.instance(
            None, None, err, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
        ) from err
    except BaseException:
        _discard(engine, created)
        raise
    finally:
        engine.dispose()


def _discard(engine: sa.Engine, created: Path | None) -> None:
    if created is not None:
        engine.dispose()  # the file is closed before it goes
        for leftover in (created, created.with_name(created.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _row_count(archive: Archive, schema: Schema, table: Table, loaded: int) -> None:
    """The rows loaded into a table must be as many as metadata.xml records (P_4.3-10)."""
    if loaded != table.rows:
        label = table_label(schema, table)
        entry = archive.entry(schema, table)
        raise SiardError(
            f"{label}: metadata.xml says {table.rows} rows, {entry} holds {loaded} (P_4.3-10)",
            rule="row-count",
            table=label,
            entry=entry,
        )


def _refused(label: str, where: str, err: Exception) -> SiardError:
    return SiardError(
        f"{label}: the database refused a row for {where}: {first_line(err)}",
        rule="load",
        table=label,
    )


def _load_sqlite(
    engine: sa.Engine, archive: Archive, rows: Rows, progress: Progress | None, replace: bool
) -> LoadSummary:
    plan = _sqlite_plan(archive)
    names = {k: name for k, (_, name) in plan.tables.items()}
    metadata, built = _build(archive, plan, lambda t: _Declared(sqlite_type(t)))
    problems: list[str] = []
    _foreign_keys(archive, built, plan, problems)
    dialect = engine.dialect
    quote = dialect.identifier_preparer.quote
    pooled = engine.raw_connection()
    try:
        conn = pooled.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        conn.isolation_level = None  # transactions by hand: DDL and rows in one
        conn.execute("PRAGMA foreign_keys = OFF")
        existing = {
            n.encode("utf-8").lower(): n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        for (schema_name, table_name), name in names.items():
            found = existing.get(name.encode("utf-8").lower())
            if found is not None and not replace:
                label = table_label(schema_name, table_name)
                raise SiardError(
                    f"{label}: the table {found!r} already exists in the target database",
                    rule="target-exists",
                    table=label,
                )
        counter = _Counter(archive, progress)
        conn.execute("BEGIN")
        try:
            for schema, table in archive.tables():
                label = table_label(schema, table)
                name = names[(schema.name, table.name)]
                t = built[(schema.name, table.name)]
                if replace:
                    conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
                conn.execute(str(CreateTable(t).compile(dialect=dialect)))
                insert = (
                    f"INSERT INTO {quote(name)} "
                    f"({', '.join(quote(c.name) for c in t.columns)}) "
                    f"VALUES ({', '.join('?' * len(table.columns))})"
                )
                converters = [_sqlite_converter(c.type) for c in table.columns]
                source = _converted(rows(schema, table), converters)
                before = counter.done
                for batch in counter.batches(label, source):
                    try:
                        conn.executemany(insert, batch)
                    except (sqlite3.IntegrityError, sqlite3.DataError) as err:
                        raise _refused(label, name, err) from err
                _row_count(archive, schema, table, counter.done - before)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        problems += _sqlite_foreign_key_check(conn, archive, names, quote)
    finally:
        pooled.close()
    return LoadSummary(
        tables=len(names),
        rows=counter.done,
        names={table_label(*k): v for k, v in names.items()},
        problems=tuple(problems),
        renamed=tuple(plan.renamed),
    )


def _sqlite_foreign_key_check(
    conn: sqlite3.Connection,
    archive: Archive,
    names: Mapping[tuple[str, str], str],
    quote: Callable[[str], str],
) -> list[str]:
    problems: list[str] = []
    for schema, table in archive.tables():
        if not table.foreign_keys:
            continue
        label = table_label(schema, table)
        name = names[(schema.name, table.name)]
        broken: dict[str, int] = {}
        try:
            # One row at a time, counted by the table referred to: never all of them in
            # memory (a table whose every row breaks a key would list them all).
            for _table, _rowid, parent, _fkid in conn.execute(
                f"PRAGMA foreign_key_check({quote(name)})"
            ):
                broken[parent] = broken.get(parent, 0) + 1
        except sqlite3.DatabaseError as err:  # "foreign key mismatch": no unique key referred to
            problems.append(f"{label}: its foreign keys cannot be checked: {err}")
            continue
        for parent, count in sorted(broken.items()):
            problems.append(
                f"{label}: {count:,} row(s) refer to no row of {parent} (foreign key check)"
            )
    return problems


def _load_postgresql(
    engine: sa.Engine, archive: Archive, rows: Rows, progress: Progress | None, replace: bool
) -> LoadSummary:
    import psycopg
    from psycopg import sql

    plan = _pg_plan(archive)
    metadata, built = _build(archive, plan, sqlalchemy_type_of)
    problems: list[str] = []
    counter = _Counter(archive, progress)
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for schema, table in archive.tables():
            if inspector.has_table(table.name, schema=schema.name) and not replace:
                label = table_label(schema, table)
                raise SiardError(
                    f"{label}: the table already exists in the target database",
                    rule="target-exists",
                    table=label,
                )
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        # Statements go to the driver as they are, without parameters: names quoted by
        # psycopg (or by a preparer that does not double "%" for a paramstyle), never by
        # the engine's own, whose "%%" the server would read as two percent signs.
        for schema in archive.schemas:
            if schema.tables:
                raw.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema.name))
                )
        for schema, table in archive.tables():
            label = table_label(schema, table)
            t = built[(schema.name, table.name)]
            qualified = sql.Identifier(schema.name, table.name)
            if replace:
                raw.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(qualified))
            raw.execute(_ddl(CreateTable(t)))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                qualified, sql.SQL(", ").join(sql.Identifier(c.name) for c in t.columns)
            )
            converters = [_pg_converter(c.type) for c in table.columns]
            source = _converted(rows(schema, table), converters)
            before = counter.done
            try:
                with raw.cursor() as cursor:
                    with cursor.copy(copy_sql) as copy:
                        for batch in counter.batches(label, source):
                            for row in batch:
                                copy.write_row(row)
            except (psycopg.DataError, psycopg.IntegrityError) as err:
                raise _refused(label, label, err) from err
            _row_count(archive, schema, table, counter.done - before)
        for constraint in _foreign_keys(archive, built, plan, problems):
            problems += _add_foreign_key(conn, raw, constraint)
    return LoadSummary(
        tables=len(built),
        rows=counter.done,
        names={table_label(*k): f"{t.schema}.{t.name}" for k, t in built.items()},
        problems=tuple(problems),
        renamed=tuple(plan.renamed),
    )


def _ddl(statement: Any) -> str:
    """DDL as PostgreSQL reads it when sent without parameters: no "%" doubled for a paramstyle."""
    from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

    dialect = pg_psycopg.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect))


def _add_foreign_key(
    conn: sa.Connection, raw: Any, constraint: sa.ForeignKeyConstraint
) -> list[str]:
    """Declare one foreign key; kept ``NOT VALID`` if the archived rows break it."""
    import psycopg

    table = constraint.table
    referred = constraint.referred_table
    label = f"{table.schema}.{table.name}"
    what = f"foreign key {constraint.name} to {referred.schema}.{referred.name}"
    ddl = _ddl(AddConstraint(constraint))
    try:
        with conn.begin_nested():
            raw.execute(ddl)
        return []
    except psycopg.IntegrityError as err:
        with conn.begin_nested():
            raw.execute(ddl + " NOT VALID")
        return [f"{label}: {what} declared NOT VALID: archived rows break it ({_why(err)})"]
    except psycopg.DatabaseError as err:  # e.g. no unique key on the referenced columns
        return [f"{label}: {what} not declared: {_why(err)}"]


def _why(err: Exception) -> str:
    diag = getattr(err, "diag", None)
    return str(getattr(diag, "message_detail", None) or first_line(err))
