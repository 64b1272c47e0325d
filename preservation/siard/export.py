"""A live database, through SQLAlchemy reflection, written as a SIARD 2.2 archive.

Structure comes from reflection (schemas, tables, columns with their SQL:2008
types, primary, foreign and candidate keys, comments, views as metadata);
rows are streamed and written into the zip a batch of rows at a time (one
write per batch of 5,000), so memory does not grow with a table. PostgreSQL
is read through libpq's chunked rows on a plain cursor where libpq is 17 or
later (no round trip per batch), a named server-side cursor otherwise;
SQLite through ``fetchmany``. Layout and LOB convention: see ``metadata``.

Speed is the reason for the shape of ``_TablePlan``. Each table's per-row
work is one function generated for its columns (no per-cell dispatch), which
builds the row with one f-string; each batch of a text column is escaped in
one ``escape`` call on the values joined. PostgreSQL renders every cell it can
(numbers, booleans, dates, timestamps in UTC, hex), neighbours concatenated
into one string, in its own process; with SQLite, in this process, Python's
formatting is cheaper than SQLite's ``||``, so values come raw.

Measured with bench/bench_siard.py (1,000,000 rows, best of 3, idle
machine; bench/results/20261206T2255Z-siard.json): SQLite 2.87 s against
``sqlite3 DB ".dump readings"`` 1.00 s, ratio 0.346; PostgreSQL 1.78 s
against ``psql -c "COPY readings TO STDOUT"`` 0.61 s, ratio 0.342 (the
issue's target is >= 0.3); peak RSS 66 MB on both, x1.03 and x1.01 of that
for a table a tenth the size.
Tried and dropped as slower: the server escaping text too (its string
functions cost more than ``str.replace`` on a batch), COPY of fully rendered
rows, and a thread fetching the next batch while this one is written.

Values: text is escaped (``text.escape``); ``TIMESTAMP WITH TIME ZONE`` is
converted to UTC; every date and time carries ``Z`` (see ``types``); floats
are Python's shortest round-trip repr (``INF``, ``-INF``, ``NaN``). In SQLite,
where a column's declared type does not bind its values, a value is written as
stored, and one that does not fit the column's type makes the table XML fail
its XSD, which the validator reports, rather than being silently changed; a
column of a type SQLite's dialect does not know, or of none, is text, which
holds anything (``types.declared_sql2008``). Bytes that are not UTF-8 in a
column written as text stop the export (``_NotText``): no text holds them.
PostgreSQL's numeric ``NaN`` and infinities, and its infinite and BC dates and
timestamps, are written as the database renders them, fail the XSD likewise,
and are counted (``_unfit``, a substring test per batch) for a warning.

PostgreSQL is read in one REPEATABLE READ transaction, so every table is of
the same moment, as pg_dump does; SQLite is read in one read transaction.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOMAIN

from preservation import SOFTWARE_AGENT
from preservation.errors import DestinationError, InvalidRequestError
from preservation.siard.connect import engine_for, redact_url
from preservation.siard.metadata import METADATA_XSD, metadata_xml, table_xsd
from preservation.siard.model import (
    SIARD_VERSION,
    TABLE_NS,
    XSI_NS,
    Archive,
    Column,
    ForeignKey,
    Key,
    Progress,
    Schema,
    Table,
    View,
    first_line,
    table_entry,
    table_folder,
    table_label,
)
from preservation.siard.text import escape
from preservation.siard.types import (
    base_type,
    declared_sql2008,
    is_lob,
    lexical_form,
    sql2008_of,
    type_original_of,
)

__all__ = ["export_database"]

#: PostgreSQL's own schemas, never exported unless asked for by name.
PG_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})

_BATCH = 5000

# -- reflection ------------------------------------------------------------------


def _schema_names(inspector: sa.Inspector, dialect: str, wanted: Sequence[str] | None) -> list[str]:
    present = list(inspector.get_schema_names())
    if dialect == "sqlite":
        present = [s for s in present if s != "temp"]
    if wanted:
        missing = [s for s in wanted if s not in present]
        if missing:
            raise InvalidRequestError(
                f"no schema {', '.join(map(repr, missing))} in the database; "
                f"it has {', '.join(present) or 'none'}"
            )
        return list(dict.fromkeys(wanted))
    return [
        s
        for s in present
        if s not in PG_SYSTEM_SCHEMAS and not s.startswith(("pg_toast", "pg_temp"))
    ]


def _comment(inspector: sa.Inspector, name: str, schema: str) -> str | None:
    try:
        return inspector.get_table_comment(name, schema=schema).get("text") or None
    except NotImplementedError:
        return None


_GENERATED = re.compile(r"\s*\bGENERATED\s+ALWAYS\b", re.IGNORECASE)


def _quote(name: str) -> str:
    """An identifier for SQL sent to the driver's own cursor (SQLite and PostgreSQL alike).

    Not the dialect's ``identifier_preparer``: for psycopg it doubles ``%``, which
    only a statement with parameters undoes, so ``"rate %"`` would reach the server
    as ``"rate %%"``.
    """
    return '"' + name.replace('"', '""') + '"'


def _declared_types(
    conn: sa.Connection, reflected: list[Any], name: str, schema: str
) -> dict[str, str]:
    """The database's own text of each column's type, where SQLAlchemy's reflection loses it.

    SQLite: every column (``PRAGMA table_info``: any text is a type there, and
    SQLAlchemy guesses NUMERIC for names it does not know). PostgreSQL: a table's
    columns, in one query, when one is of a type SQLAlchemy does not know (``xml``)
    or of a domain (its base type's text: SQLAlchemy drops a length from it).
    """
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"PRAGMA {_quote(schema)}.table_xinfo({_quote(name)})")
        # A generated column's type reads "INTEGER GENERATED ALWAYS".
        return {str(row[1]): _GENERATED.sub("", str(row[2] or "")).strip() for row in rows}
    if not any(isinstance(r["type"], sa.types.NullType | DOMAIN) for r in reflected):
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, CASE WHEN t.typtype = 'd' "
            "THEN format_type(t.typbasetype, t.typtypmod) "
            "ELSE format_type(a.atttypid, a.atttypmod) END FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :name "
            "AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"schema": schema, "name": name},
    )
    return {str(column): str(text) for column, text in rows}


_PG_PARAMS = re.compile(r"\((\d+)(?:,(\d+))?\)")


def _with_params(sql2008: str, text: str) -> str:
    """``sql2008`` with the length, precision or scale of PostgreSQL's ``format_type`` text."""
    match = _PG_PARAMS.search(text)
    base = base_type(sql2008)
    if match is None:
        return sql2008
    if base in ("CHARACTER", "CHARACTER VARYING") or base.startswith(("TIME", "TIMESTAMP")):
        return f"{base}({match[1]})"
    if base in ("NUMERIC", "DECIMAL"):
        return f"{base}({match[1]}, {match[2]})" if match[2] else f"{base}({match[1]})"
    return sql2008


def _columns(
    conn: sa.Connection, inspector: sa.Inspector, name: str, schema: str, folder: str | None
) -> list[Column]:
    dialect = conn.dialect
    columns = []
    reflected_columns = inspector.get_columns(name, schema=schema)
    declared = _declared_types(conn, reflected_columns, name, schema)
    for reflected in reflected_columns:
        sa_type = reflected["type"]
        text = declared.get(reflected["name"])
        if dialect.name == "sqlite":
            sql2008 = declared_sql2008(text, dialect)
            type_original = text or None
        elif text is not None and isinstance(sa_type, sa.types.NullType):
            sql2008 = declared_sql2008(text, dialect)
            type_original = text
        else:
            sql2008 = sql2008_of(sa_type, dialect.name)
            type_original = type_original_of(sa_type, dialect)
            if text is not None and isinstance(sa_type, DOMAIN):
                sql2008 = _with_params(sql2008, text)
        default = reflected.get("default")
        columns.append(
            Column(
                name=reflected["name"],
                type=sql2008,
                type_original=type_original,
                nullable=bool(reflected.get("nullable", True)),
                default_value=str(default) if default is not None else None,
                description=reflected.get("comment") or None,
                lob_folder=folder if folder and is_lob(sql2008) else None,
            )
        )
    return columns


def _keys(inspector: sa.Inspector, table: Table, schema: str) -> None:
    pk = inspector.get_pk_constraint(table.name, schema=schema)
    if pk and pk.get("constrained_columns"):
        table.primary_key = Key(
            name=pk.get("name") or f"pk_{table.name}",
            columns=list(pk["constrained_columns"]),
            description=pk.get("comment") or None,
        )
    for n, fk in enumerate(inspector.get_foreign_keys(table.name, schema=schema), start=1):
        options = fk.get("options") or {}
        table.foreign_keys.append(
            ForeignKey(
                name=fk.get("name") or f"fk_{table.name}_{n}",
                columns=list(fk["constrained_columns"]),
                # None: found through the search path, the connection's default schema.
                referenced_schema=fk.get("referred_schema")
                or inspector.default_schema_name
                or schema,
                referenced_table=fk["referred_table"],
                referenced_columns=list(fk["referred_columns"]),
                delete_action=(options.get("ondelete") or None),
                update_action=(options.get("onupdate") or None),
                description=fk.get("comment") or None,
            )
        )
    for n, unique in enumerate(inspector.get_unique_constraints(table.name, schema=schema), 1):
        table.candidate_keys.append(
            Key(
                name=unique.get("name") or f"uk_{table.name}_{n}",
                columns=list(unique["column_names"]),
                description=unique.get("comment") or None,
            )
        )


@dataclass
class _Reflected:
    schema: Schema
    table: Table


def _partitions(conn: sa.Connection, schema_name: str) -> set[str]:
    """PostgreSQL's partitions of a schema: reflection lists them beside their parent.

    The parent's rows are those of all its partitions, so exporting both would
    archive every row twice; the parent (whose definition is the table's) is kept.
    """
    if conn.dialect.name != "postgresql":
        return set()
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relispartition"
        ),
        {"schema": schema_name},
    )
    return {name for (name,) in rows}


#: The shadow tables each of SQLite's virtual table modules keeps (``name_suffix``),
#: for a SQLite too old for ``PRAGMA table_list`` (before 3.37) to say which they are.
_SHADOW_SUFFIXES = {
    "fts5": ("data", "idx", "content", "docsize", "config"),
    "fts4": ("content", "segments", "segdir", "docsize", "stat"),
    "fts3": ("content", "segments", "segdir", "docsize", "stat"),
    "rtree": ("node", "parent", "rowid"),
    "rtree_i32": ("node", "parent", "rowid"),
    "geopoly": ("node", "parent", "rowid"),
}
_USING = re.compile(r"\bUSING\s+(\w+)", re.IGNORECASE)


def _shadow_names(virtual: Sequence[tuple[str, str]]) -> set[str]:
    """The shadow tables of SQLite's virtual tables, given as (name, CREATE VIRTUAL TABLE sql)."""
    names: set[str] = set()
    for name, sql in virtual:
        match = _USING.search(sql or "")
        for suffix in _SHADOW_SUFFIXES.get(match[1].lower() if match else "", ()):
            names.add(f"{name}_{suffix}")
    return names


def _shadow_tables(conn: sa.Connection, schema_name: str) -> set[str]:
    """SQLite's shadow tables: a virtual table's (FTS5's index, say) storage, reflected as tables.

    They hold the virtual table's own data (its index, its copy of the text),
    whose rows are read through it; exported beside it they would archive the
    same content again, in a module's private layout.
    """
    if conn.dialect.name != "sqlite":
        return set()
    rows = conn.exec_driver_sql(f"PRAGMA {_quote(schema_name)}.table_list").fetchall()
    if rows:  # SQLite 3.37 and later; older ones ignore a pragma they do not know
        return {str(row[1]) for row in rows if row[2] == "shadow"}
    virtual = conn.exec_driver_sql(
        f"SELECT name, sql FROM {_quote(schema_name)}.sqlite_master "
        "WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
    ).fetchall()
    return _shadow_names([(str(name), str(sql)) for name, sql in virtual])


def _reflect(
    conn: sa.Connection, wanted: Sequence[str] | None
) -> tuple[list[Schema], list[_Reflected]]:
    inspector = sa.inspect(conn)
    dialect = conn.dialect
    schemas: list[Schema] = []
    reflected: list[_Reflected] = []
    with warnings.catch_warnings():
        # Types SQLAlchemy does not know are read from the database's own text of
        # them (``_declared_types``, ``types.declared_sql2008``): its warnings are moot.
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        for s_number, schema_name in enumerate(_schema_names(inspector, dialect.name, wanted)):
            schema = Schema(name=schema_name, folder=f"schema{s_number}")
            skipped = _partitions(conn, schema_name) | _shadow_tables(conn, schema_name)
            for table_name in inspector.get_table_names(schema=schema_name):
                if table_name in skipped:
                    continue  # its rows are read through its parent or its virtual table
                table = Table(name=table_name, folder=f"table{len(schema.tables)}", columns=[])
                lob_folder = table_folder(schema, table)
                table.columns = _columns(conn, inspector, table_name, schema_name, lob_folder)
                if not table.columns:
                    continue  # a table of no columns has no place in SIARD (M_5.5-1)
                table.description = _comment(inspector, table_name, schema_name)
                _keys(inspector, table, schema_name)
                schema.tables.append(table)
                reflected.append(_Reflected(schema, table))
            view_names = list(inspector.get_view_names(schema=schema_name))
            if dialect.name == "postgresql":  # a materialized view is a view, its rows not kept
                view_names += inspector.get_materialized_view_names(schema=schema_name)
            for view_name in view_names:
                columns = _columns(conn, inspector, view_name, schema_name, None)
                if not columns:
                    continue
                try:
                    query = inspector.get_view_definition(view_name, schema=schema_name)
                except NotImplementedError:
                    query = None
                schema.views.append(
                    View(
                        name=view_name,
                        columns=columns,
                        query_original=str(query).strip() if query else None,
                        description=_comment(inspector, view_name, schema_name),
                    )
                )
            schemas.append(schema)
    return schemas, reflected


# -- how each table is read and rendered -------------------------------------------


@dataclass
class _TablePlan:
    """The SELECT list and the generated row renderer of one table."""

    select: list[str]
    render_source: str
    lob_columns: dict[int, str] = field(default_factory=dict)
    #: The column whose raw value each SELECT item is (to name it in an error).
    names: dict[int, str] = field(default_factory=dict)
    #: PostgreSQL: finds the cells SIARD's types cannot hold (``_unfit``), if any may be.
    unfit: re.Pattern[str] | None = None


def _pg_cell(column: Column, quoted: str) -> str | None:
    """PostgreSQL SQL giving the cell's content (no tags), or None when Python must do it."""
    base = base_type(column.type)
    if base in ("INTEGER", "SMALLINT", "BIGINT", "NUMERIC", "DECIMAL"):
        return f"{quoted}::text"
    if base == "BOOLEAN":
        return f"CASE WHEN {quoted} THEN 'true' ELSE 'false' END"
    if base in ("DATE", "TIME"):
        return f"{quoted}::text || 'Z'"
    if base == "TIME WITH TIME ZONE":
        return f"({quoted} AT TIME ZONE 'UTC')::time::text || 'Z'"
    if base == "TIMESTAMP":
        return f"replace({quoted}::text, ' ', 'T') || 'Z'"
    if base == "TIMESTAMP WITH TIME ZONE":
        return f"replace(({quoted} AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z'"
    if base in ("REAL", "DOUBLE PRECISION", "FLOAT"):
        return (
            f"CASE {quoted} WHEN 'Infinity' THEN 'INF' WHEN '-Infinity' THEN '-INF' "
            f"ELSE {quoted}::text END"
        )
    if base in ("BINARY", "BINARY VARYING"):
        return f"upper(encode({quoted}, 'hex'))"
    return None


_TEXT_NATIVE = {"CHARACTER", "CHARACTER VARYING", "CHARACTER LARGE OBJECT"}
_PG_TEXT_TYPES = {"TEXT", "VARCHAR", "CHARACTER VARYING", "CHAR", "CHARACTER", "BPCHAR", "NAME"}


def _text_lob_cell(inline: str, v: str, number: int, threshold: int) -> str:
    """A CLOB or XML cell: ``inline`` when short, else a LOB file.

    A value that is not a string (SQLite keeps numbers and bytes in a column of
    any type) is taken as its text (``_text``), as ``escape_lobs`` takes it.
    """
    s = "s" + v[1:]
    return (
        f"({inline} if len({s} := ({v} if {v}.__class__ is str else text({v}))) <= {threshold} "
        f"else lob({number}, {s}, i))"
    )


def _source(body: list[str], batch: list[str], escaped: list[int], row: str) -> str:
    """The generated module: ``make(...)`` returns ``render(rows, i, out) -> i``."""
    names = "".join(f", x{k}" for k in escaped)
    lists = "".join(f", e{k}" for k in escaped)
    return "\n".join(
        [
            "def make(lexical_form, tolerant, escape_texts, escape_lobs, txt, text, lob):",
            *body,
            "    def render(rows, i, out):",
            *batch,
            f"        for r{names} in zip(rows{lists}):" if escaped else "        for r in rows:",
            f'            out.append(f"<row>{row}</row>\\n")',
            "            i += 1",
            "        return i",
            "    return render",
        ]
    )


def _plan_sqlite(table: Table, threshold: int) -> _TablePlan:
    """SQLite: raw values, formatted in Python (measured: faster than SQLite's ``||``).

    A value whose Python type is not what the column's type stores (SQLite does
    not enforce declared types) is written as escaped text (``txt``): the XML
    stays well-formed, and the cell fails the XSD, where the validator names it.
    """
    select: list[str] = []
    parts: list[str] = []
    body: list[str] = []
    batch: list[str] = []
    escaped: list[int] = []
    lobs: dict[int, str] = {}
    for k, column in enumerate(table.columns):
        number = k + 1
        select.append(_quote(column.name))
        tag, end = f"<c{number}>", f"</c{number}>"
        base = base_type(column.type)
        v = f"v{k}"
        other = f"'{tag}' + txt({v}) + '{end}'"
        if base in ("INTEGER", "SMALLINT", "BIGINT"):
            cell = f"(f'{tag}{{{v}}}{end}' if {v}.__class__ is int else {other})"
        elif base in ("NUMERIC", "DECIMAL"):
            # SQLite keeps a NUMERIC(p,s) value as an integer or a float, never
            # rounded to the scale: the float is written as its shortest exact
            # decimal (repr, in plain notation), never to ``s`` places, which
            # would change it (1.005 is not 1.00) and still pass the XSD.
            # A float's repr is already that decimal unless it has an exponent
            # (1e-07) or is not a number (inf, nan): only those go through Decimal.
            body.append(f"    f{k} = tolerant(lexical_form({column.type!r}))")
            cell = (
                f"(f'{tag}{{{v}}}{end}' if {v}.__class__ is int"
                f" else f'{tag}{{d{k}}}{end}' if {v}.__class__ is float"
                f" and 'e' not in (d{k} := repr({v})) and 'n' not in d{k}"
                f" else '{tag}' + f{k}({v}) + '{end}')"
            )
        elif base == "BOOLEAN":
            cell = f"('{tag}true{end}' if {v} == 1 else '{tag}false{end}' if {v} == 0 else {other})"
        elif base in ("BINARY", "BINARY VARYING", "BINARY LARGE OBJECT", "DATALINK"):
            inline = f"'{tag}' + {v}.hex().upper() + '{end}'"
            if is_lob(column.type):
                lobs[number] = "bin"
                inline = f"(lob({number}, {v}, i) if len({v}) > {threshold} else {inline})"
            cell = f"({inline} if {v}.__class__ is bytes else {other})"
        elif base in ("DATE", "TIME", "TIMESTAMP"):
            # SQLAlchemy stores these as ISO text ('2024-05-01 12:00:00.000000').
            text = f"x{k}.replace(' ', 'T', 1)" if base == "TIMESTAMP" else f"x{k}"
            body.append(f"    f{k} = tolerant(lexical_form({column.type!r}))")
            batch.append(f"        e{k} = escape_texts([r[{k}] for r in rows])")
            escaped.append(k)
            cell = (
                f"('{tag}' + {text} + 'Z{end}' if {v}.__class__ is str "
                f"else '{tag}' + f{k}({v}) + '{end}')"
            )
        elif base in _KNOWN_PY:
            body.append(f"    f{k} = tolerant(lexical_form({column.type!r}))")
            cell = f"'{tag}' + f{k}({v}) + '{end}'"
        else:
            cell = f"'{tag}' + x{k} + '{end}'"
            if is_lob(column.type):
                lobs[number] = "txt"
                batch.append(f"        e{k} = escape_lobs([r[{k}] for r in rows], {threshold})")
                cell = _text_lob_cell(cell, v, number, threshold)
            else:
                batch.append(f"        e{k} = escape_texts([r[{k}] for r in rows])")
            escaped.append(k)
        parts.append(f"{{'' if ({v} := r[{k}]) is None else {cell}}}")
    names = {k: c.name for k, c in enumerate(table.columns)}
    return _TablePlan(select, _source(body, batch, escaped, "".join(parts)), lobs, names)


def _plan_postgres(table: Table, threshold: int) -> _TablePlan:
    """PostgreSQL: the server renders every cell it can, neighbours joined into one string.

    It works in a process of its own, so this costs the export little; Python
    escapes text (a batch of a column at a time) and writes LOBs.
    """
    select: list[str] = []
    parts: list[str] = []
    lobs: dict[int, str] = {}
    segment: list[str] = []
    body: list[str] = []
    batch: list[str] = []
    escaped: list[int] = []
    names: dict[int, str] = {}

    def flush() -> None:
        if segment:
            select.append(" || ".join(segment) if len(segment) > 1 else segment[0])
            parts.append(f"{{r[{len(select) - 1}]}}")
            segment.clear()

    for number, column in enumerate(table.columns, start=1):
        quoted = _quote(column.name)
        tag, end = f"<c{number}>", f"</c{number}>"
        base = base_type(column.type)
        sql = _pg_cell(column, quoted)
        if sql is not None:
            cell = f"'{tag}' || {sql} || '{end}'"
            if column.nullable:  # not coalesce(): CASE makes 'false' of a NULL
                cell = f"CASE WHEN {quoted} IS NULL THEN '' ELSE {cell} END"
            segment.append(cell)
            continue
        if base in ("BINARY LARGE OBJECT", "DATALINK"):
            # The database renders small values inline; large ones come raw, for a file.
            size = f"octet_length({quoted})"
            hexed = f"upper(encode({quoted}, 'hex'))"
            segment.append(
                f"CASE WHEN {quoted} IS NULL OR {size} > {threshold} THEN '' "
                f"ELSE '{tag}' || {hexed} || '{end}' END"
            )
            flush()
            select.append(f"CASE WHEN {size} > {threshold} THEN {quoted} END")
            k = len(select) - 1
            names[k] = column.name
            parts.append(f"{{'' if (v{k} := r[{k}]) is None else lob({number}, v{k}, i)}}")
            lobs[number] = "bin"
            continue
        flush()
        if base in _TEXT_NATIVE | {"XML"} or base not in _KNOWN_PY:
            # Text comes raw; each batch's values of the column are escaped in one go.
            original = (column.type_original or "").upper().split("(")[0].strip()
            if original not in _PG_TEXT_TYPES:
                select.append(f"{quoted}::text")
            else:
                select.append(quoted)
            k = len(select) - 1
            names[k] = column.name
            cell = f"'{tag}' + x{k} + '{end}'"
            if is_lob(column.type):
                lobs[number] = "txt"
                batch.append(f"        e{k} = escape_lobs([r[{k}] for r in rows], {threshold})")
                cell = _text_lob_cell(cell, f"v{k}", number, threshold)
            else:
                batch.append(f"        e{k} = escape_texts([r[{k}] for r in rows])")
            escaped.append(k)
            parts.append(f"{{'' if (v{k} := r[{k}]) is None else {cell}}}")
            continue
        select.append(quoted)
        k = len(select) - 1
        names[k] = column.name
        body.append(f"    f{k} = tolerant(lexical_form({column.type!r}))")
        parts.append(f"{{'' if (v{k} := r[{k}]) is None else '{tag}' + f{k}(v{k}) + '{end}'}}")
    flush()
    source = _source(body, batch, escaped, "".join(parts))
    return _TablePlan(
        select=select, render_source=source, lob_columns=lobs, names=names, unfit=_unfit(table)
    )


#: What PostgreSQL renders for values SIARD's types cannot hold: numeric NaN and
#: infinities (xs:decimal has none), infinite dates and timestamps, and those
#: before Christ ("0044-03-15 BC"; xs:date's year 0 and below are not SIARD's).
_UNFIT_NUMERIC = r"(?:NaN|-?Infinity)<"
_UNFIT_DATE = r"(?:-?infinity|[^<]*BC)"
#: Strings one of which a batch holds when it may hold such a value (a quick test first).
_UNFIT_HINTS = ("NaN", "nfinity", "BC")


def _unfit(table: Table) -> re.Pattern[str] | None:
    """A pattern matching each cell of ``table`` PostgreSQL renders unfit for SIARD, or None."""
    numeric = [
        n for n, c in enumerate(table.columns, 1) if base_type(c.type) in ("NUMERIC", "DECIMAL")
    ]
    dated = [
        n
        for n, c in enumerate(table.columns, 1)
        if base_type(c.type) in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
    ]
    alternatives = []
    if numeric:
        alternatives.append(f"<c(?:{'|'.join(map(str, numeric))})>{_UNFIT_NUMERIC}")
    if dated:
        alternatives.append(f"<c(?:{'|'.join(map(str, dated))})>{_UNFIT_DATE}")
    return re.compile("|".join(alternatives)) if alternatives else None


#: Base types with a Python lexical form in ``types.lexical_form`` (the rest are text).
_KNOWN_PY = {
    "INTEGER",
    "SMALLINT",
    "BIGINT",
    "NUMERIC",
    "DECIMAL",
    "REAL",
    "DOUBLE PRECISION",
    "FLOAT",
    "BOOLEAN",
    "BINARY",
    "BINARY VARYING",
    "DATE",
    "TIME",
    "TIME WITH TIME ZONE",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
}


class _NotText(Exception):
    """Bytes in a column written as text that are not UTF-8: no text to write them as."""

    def __init__(self, value: Any):
        super().__init__("not UTF-8 text")
        self.value = value


def _text(value: Any) -> str:
    """A text column's value as a string (SQLite may hold bytes or numbers in one).

    Bytes are decoded as UTF-8, and raise ``_NotText`` when they are not: the
    export changes no value (a replacement character would pass validation).
    """
    if value is None:
        return ""
    if value.__class__ is str:
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _NotText(value) from None
    return str(value)


def _tolerant(convert: Callable[[Any], str]) -> Callable[[Any], str]:
    """``convert``, but a value it cannot take is written as text (SQLite's loose typing).

    The cell then fails the table's XSD, and the validator names it: an archive
    that says what the database held beats an export that stops, or one that
    quietly changes the value.
    """

    def lexical(value: Any) -> str:
        try:
            return convert(value)
        except (TypeError, ValueError, ArithmeticError, AttributeError):
            return escape(_text(value))

    return lexical


def _txt(value: Any) -> str:
    """A value as escaped text, whatever its type (the fallback of SQLite's loose typing)."""
    return escape(_text(value))


#: Joins a batch of one column's values for one ``escape`` call; a private-use
#: character that ``escape`` leaves alone (when a value holds it, values go one by one).
_SEP = "\ue000"


def _escape_all(texts: list[str]) -> list[str]:
    """``texts`` escaped, in one ``escape`` call on them joined: a call per cell costs more.

    When none needs escaping (the usual case), ``escape`` gives back the very
    string it was given, and the list is returned as it is, not split again.
    """
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:
        return [escape(t) for t in texts]
    done = escape(joined)
    return texts if done is joined else done.split(_SEP)


def escape_texts(values: list[Any]) -> list[str]:
    """A batch of a text column's values, escaped together (``_escape_all``) for speed.

    A value that is not a string (SQLite holds any type in any column) is taken
    as its text; NULL is "", which the row leaves out anyway.
    """
    return _escape_all([v if v.__class__ is str else _text(v) for v in values])


def escape_lobs(values: list[Any], limit: int) -> list[str]:
    """As ``escape_texts``, skipping values longer than ``limit``: they go to LOB files."""
    return _escape_all(
        [
            ("" if len(v) > limit else v)
            if v.__class__ is str
            else _empty_if_longer(_text(v), limit)
            for v in values
        ]
    )


def _empty_if_longer(text: str, limit: int) -> str:
    """ "" for a value that goes to a LOB file (escaping it inline would be wasted)."""
    return "" if len(text) > limit else text


# -- writing -------------------------------------------------------------------


class _LobSpool:
    """LOB values of the table being written, on disk until its XML entry is closed.

    A zip can take one entry at a time, and the table's XML is open while its
    rows are read, so large values wait in files beside the archive.
    """

    def __init__(self, directory: Path, schema: Schema, table: Table, kinds: dict[int, str]):
        self.directory = directory
        self.base = table_folder(schema, table)  # the column's lobFolder, as ``_reflect`` set it
        self.kinds = kinds
        self.entries: list[tuple[str, Path]] = []

    def __call__(self, number: int, value: Any, row: int) -> str:
        kind = self.kinds[number]
        if isinstance(value, str):
            data = value.encode("utf-8", errors="surrogatepass")
            length = len(value)
        else:
            data = bytes(value)
            length = len(data)
        relative = f"lob{number}/record{row}.{kind}"
        spooled = self.directory / f"{len(self.entries)}.lob"
        spooled.write_bytes(data)
        self.entries.append((self.base + relative, spooled))
        digest = hashlib.sha256(data).hexdigest()
        return (
            f'<c{number} file="{relative}" length="{length}" '
            f'digestType="SHA-256" digest="{digest}"/>'
        )

    def flush_into(self, archive: zipfile.ZipFile) -> None:
        for name, path in self.entries:
            archive.write(path, name, compress_type=zipfile.ZIP_STORED)
            path.unlink()
        self.entries.clear()


def _rows(conn: sa.Connection, sql: str, dialect: str) -> Iterator[list[Any]]:
    """Batches of raw DB-API rows, streamed, never the whole result in memory.

    PostgreSQL: libpq's chunked-rows mode (libpq 17 and later, which psycopg's
    wheels bring) streams with no round trip per batch, so the server renders
    rows while these are written (measured: a third faster than a named cursor,
    the fallback for older libpq). SQLite: ``fetchmany``.
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    if dialect == "postgresql":
        import psycopg

        if psycopg.pq.version() >= 170000:
            stream = raw.cursor().stream(sql, size=_BATCH)
            try:
                while batch := list(itertools.islice(stream, _BATCH)):
                    yield batch
            finally:
                stream.close()
            return
    cursor = raw.cursor(name="siard_export") if dialect == "postgresql" else raw.cursor()
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            yield batch
    finally:
        cursor.close()


def _row_total(conn: sa.Connection, dialect: str, qualified: str) -> int:
    """The rows to expect, for progress only: PostgreSQL's planner estimate where it has one.

    ``count(*)`` of a large PostgreSQL table reads it a second time; an estimate
    off by a little only moves the bar. SQLite counts (it has no estimate).
    """
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if dialect == "postgresql":
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [qualified]
            )
            estimate = cursor.fetchone()[0]
            if estimate is not None and estimate >= 0:
                return int(estimate)
        cursor.execute(f"SELECT count(*) FROM {qualified}")
        return int(cursor.fetchone()[0] or 0)
    finally:
        cursor.close()


def _driver_errors() -> tuple[type[Exception], ...]:
    """The errors of the drivers' own cursors, which rows are read with (not SQLAlchemy's)."""
    import sqlite3

    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the project ships psycopg
        pass
    else:
        errors.append(psycopg.Error)
    return tuple(errors)


def _not_text(label: str, plan: _TablePlan, batch: list[Any], done: int, value: Any) -> str:
    """The message for bytes that are not UTF-8 in a text column: where they are."""
    where = ""
    for i, row in enumerate(batch):
        for k, cell in enumerate(row):
            if cell is value:
                where = f", column {plan.names.get(k, '?')!r}, row {done + i + 1}"
                break
        if where:
            break
    return (
        f"{label}{where}: the value is not UTF-8 text ({len(bytes(value))} bytes in a column "
        "exported as text); the export changes no value: fix it, or make the column a BLOB "
        "(utf-8)"
    )


def _write_table(
    conn: sa.Connection,
    archive: zipfile.ZipFile,
    spool_dir: Path,
    item: _Reflected,
    threshold: int,
    progress: Progress | None,
) -> int:
    """Write one table's XML, XSD and LOB files; the count of cells unfit for SIARD (``_unfit``)."""
    schema, table = item.schema, item.table
    dialect = conn.dialect.name
    qualified = f"{_quote(schema.name)}.{_quote(table.name)}"
    if dialect == "postgresql":
        plan = _plan_postgres(table, threshold)
    else:
        plan = _plan_sqlite(table, threshold)
    namespace: dict[str, Any] = {}
    exec(compile(plan.render_source, f"<siard row renderer {qualified}>", "exec"), namespace)  # noqa: S102 - our own generated code, no input in it but column numbers
    spool = _LobSpool(spool_dir, schema, table, plan.lob_columns)
    render = namespace["make"](
        lexical_form, _tolerant, escape_texts, escape_lobs, _txt, _text, spool
    )
    sql = f"SELECT {', '.join(plan.select)} FROM {qualified}"
    label = table_label(schema, table)
    try:
        return _write_rows(
            conn, archive, spool, item, plan, render, (sql, qualified, label), progress
        )
    except _driver_errors() as err:
        raise InvalidRequestError(f"{label}: cannot be read: {first_line(err)}") from err


def _write_rows(
    conn: sa.Connection,
    archive: zipfile.ZipFile,
    spool: _LobSpool,
    item: _Reflected,
    plan: _TablePlan,
    render: Callable[[list[Any], int, list[str]], int],
    names: tuple[str, str, str],
    progress: Progress | None,
) -> int:
    schema, table = item.schema, item.table
    dialect = conn.dialect.name
    sql, qualified, label = names
    total = _row_total(conn, dialect, qualified) if progress is not None else 0
    unfit = 0
    entry = table_entry(schema, table)
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<table xmlns="{TABLE_NS}" xmlns:xsi="{XSI_NS}" '
        f'xsi:schemaLocation="{TABLE_NS} {table.folder}.xsd" version="{SIARD_VERSION}">\n'
    )
    count = 0
    stamp = time.localtime()[:6]
    with archive.open(zipfile.ZipInfo(entry, date_time=stamp), "w", force_zip64=True) as sink:
        sink.write(head.encode("utf-8"))
        out: list[str] = []
        for batch in _rows(conn, sql, dialect):
            # One write per batch: a write per row costs more than the rendering.
            try:
                count = render(batch, count, out)
            except _NotText as err:
                raise InvalidRequestError(_not_text(label, plan, batch, count, err.value)) from None
            chunk = "".join(out)
            if plan.unfit is not None and any(hint in chunk for hint in _UNFIT_HINTS):
                unfit += len(plan.unfit.findall(chunk))
            sink.write(chunk.encode("utf-8"))
            out.clear()
            if progress is not None:
                progress(label, count, max(total, count))
        sink.write(b"</table>\n")
    spool.flush_into(archive)
    table.rows = count
    archive.writestr(
        table_entry(schema, table, ".xsd"),
        table_xsd(table),
        compress_type=zipfile.ZIP_STORED,
    )
    if progress is not None:
        progress(label, count, count)
    return unfit


def _product(conn: sa.Connection) -> tuple[str, str | None]:
    if conn.dialect.name == "postgresql":
        version = conn.exec_driver_sql("SELECT version()").scalar()
        user = conn.exec_driver_sql("SELECT current_user").scalar()
        return str(version), str(user) if user is not None else None
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}", None


def _dbname(url: sa.URL) -> str:
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "sqlite").name
    return url.database or "(unknown)"


def export_database(
    url: str,
    dest: Path,
    *,
    schemas: Sequence[str] | None = None,
    lob_threshold: int = 4096,
    progress: Progress | None = None,
    dbname: str | None = None,
    description: str | None = None,
    data_owner: str | None = None,
    data_origin_timespan: str | None = None,
    archiver: str | None = None,
    archiver_contact: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Archive:
    """Write the database at ``url`` as the SIARD 2.2 archive ``dest``; its model, with row counts.

    ``schemas`` picks schemas by name (default: every one but PostgreSQL's own;
    SQLite's is ``main``). LOB-typed values (BLOB, CLOB, XML) longer than
    ``lob_threshold`` (bytes, or characters for text) go to files of their own.
    ``progress(label, rows_done, rows_expected)`` is called per batch of rows.
    ``dest`` appears whole or not at all (written beside it, then renamed).
    ``warn(message)`` is told of each table holding values SIARD's types cannot
    hold (PostgreSQL's numeric NaN and infinities, infinite or BC dates and
    timestamps): they are written as the database holds them, and the archive
    will not pass validation. Raises ``InvalidRequestError`` for a URL that
    cannot be read, a schema not there, a table that cannot be read (the
    database's error: no privilege, say), bytes that are not UTF-8 in a text
    column; ``DestinationError`` where ``dest`` cannot be written.
    """
    dest = Path(dest)
    if lob_threshold < 0:
        raise InvalidRequestError(f"lob threshold {lob_threshold} is negative")
    if not dest.parent.is_dir():
        raise DestinationError(
            f"{dest.parent}: no such folder to write {dest.name} into", path=dest
        )
    engine = engine_for(url, purpose="export")
    database_errors: tuple[type[Exception], ...] = (sa.exc.DBAPIError, *_driver_errors())
    about = {
        "dbname": dbname or _dbname(engine.url),
        "description": description,
        "data_owner": data_owner or "(unknown)",
        "data_origin_timespan": data_origin_timespan or "(unknown)",
        "archiver": archiver,
        "archiver_contact": archiver_contact,
    }
    try:
        part = dest.with_name(f".{dest.name}.part")
        spool_dir = Path(tempfile.mkdtemp(prefix=".siard-lobs-", dir=dest.parent))
        try:
            with engine.connect() as conn:
                archive = _export(
                    conn, part, spool_dir, schemas, lob_threshold, (progress, warn), about
                )
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(spool_dir, ignore_errors=True)
    except database_errors as err:
        raise InvalidRequestError(f"{redact_url(url)}: {first_line(err)}") from err
    except OSError as err:
        raise DestinationError(f"{dest}: cannot be written: {err}", path=dest) from err
    finally:
        engine.dispose()
    return archive


def _export(
    conn: sa.Connection,
    part: Path,
    spool_dir: Path,
    wanted: Sequence[str] | None,
    threshold: int,
    callbacks: tuple[Progress | None, Callable[[str], None] | None],
    about: dict[str, Any],
) -> Archive:
    progress, warn = callbacks
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, YMD'")
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        conn.exec_driver_sql("SET LOCAL IntervalStyle = 'iso_8601'")
        conn.exec_driver_sql("SET LOCAL extra_float_digits = 1")
        conn.exec_driver_sql("SET LOCAL standard_conforming_strings = on")
    else:
        conn.exec_driver_sql("BEGIN")  # one read transaction: every table of one moment
    product, user = _product(conn)
    schemas, reflected = _reflect(conn, wanted)
    archive = Archive(
        schemas=schemas,
        archival_date=date.today(),
        producer_application=SOFTWARE_AGENT,
        database_product=product,
        connection=redact_url(conn.engine.url),
        database_user=user,
        **about,
    )
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for item in reflected:
            unfit = _write_table(conn, zf, spool_dir, item, threshold, progress)
            if unfit and warn is not None:
                warn(
                    f"{table_label(item.schema, item.table)}: {unfit} value(s) SIARD's types "
                    "cannot hold (numeric NaN or infinity, an infinite or BC date or "
                    "timestamp), written as the database holds them: the archive will "
                    "not pass validation"
                )
        zf.mkdir(f"header/siardversion/{SIARD_VERSION}")
        zf.write(METADATA_XSD, "header/metadata.xsd", compress_type=zipfile.ZIP_STORED)
        zf.writestr("header/metadata.xml", metadata_xml(archive), compress_type=zipfile.ZIP_STORED)
    return archive
