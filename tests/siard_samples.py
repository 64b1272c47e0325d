"""A small database with every common type, for SIARD tests on SQLite and PostgreSQL.

``create_sample_database(url)`` builds it; ``expected_rows(url)`` says what each
table holds, as the SIARD value contract gives it back (int, Decimal, float,
bool, str, bytes, date, time, datetime: aware UTC for ``WITH TIME ZONE``,
naive otherwise), keyed by ``(schema, table)``, rows sorted. Compare with
``sorted_rows``, which sorts any rows the same way.

What is in it:

- ``everything``: one column per common type, text with control characters
  (U+0001, U+0008, U+001F, U+007F, U+0085), backslashes, runs of spaces, CR,
  LF, TAB, ``&<>"'``, non-BMP characters and the empty string; binary including
  empty; one text and one binary value above the default LOB threshold (4096);
  a row of NULLs in every nullable column. PostgreSQL adds ``uuid``, ``jsonb``,
  a ``timestamptz`` and a ``timetz``.
- ``department`` (primary key, unique name, comments on PostgreSQL),
  ``employee`` (foreign key to it) and ``assignment`` (composite primary key,
  foreign key to ``employee``); the view ``employee_names``.
- PostgreSQL only: schema ``ledger`` with ``entry``, whose foreign key crosses
  schemas to ``public.employee``.

SQLite's schema is ``main``, PostgreSQL's default ``public``.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

__all__ = [
    "LOB_BYTES",
    "LOB_TEXT",
    "TEXTS",
    "create_sample_database",
    "default_schema",
    "expected_rows",
    "sorted_rows",
]

TEXTS = [
    "plain",
    "",
    "controls \x01 \x08 \x1f \x7f \x85 end",
    "back\\slash \\u0041 \\\\",
    "  leading, two  three   four    ",
    "cr\rlf\ncrlf\r\ntab\t.",
    "&<>\"'",
    "emoji 😀 and 𝄞, Zürich façade",
    " ",
    "x\ufffe",
]
#: Above the default LOB threshold (4096): a LOB file each.
LOB_TEXT = "long text with \x01 & <escapes>  and spaces. " * 120
LOB_BYTES = bytes(range(256)) * 20
BINARIES = [b"", b"\x00\x01\xff", bytes(range(256))]
FLOATS = [0.1, -1.5e300, 2.5, float("inf"), float("-inf"), 1e-300]
REALS = [1.5, -2.25, 0.0, float("inf")]
NUMERICS = [Decimal("-123456789.123"), Decimal("0.001"), Decimal("0.000"), Decimal("42.500")]
PLUS_FIVE = timezone(timedelta(hours=5, minutes=30))
MINUS_EIGHT = timezone(timedelta(hours=-8))


def default_schema(url: str) -> str:
    return "main" if sa.make_url(url).get_backend_name() == "sqlite" else "public"


def _is_pg(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "postgresql"


def _tables(url: str) -> tuple[sa.MetaData, dict[str, sa.Table]]:
    postgres = _is_pg(url)
    meta = sa.MetaData()
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("small", sa.SmallInteger),
        sa.Column("big", sa.BigInteger),
        sa.Column("amount", sa.Numeric(12, 3)),
        sa.Column("ratio", sa.Double),
        sa.Column("single", sa.REAL),
        sa.Column("name", sa.String(200)),
        sa.Column("code", sa.CHAR(3)),
        sa.Column("note", sa.Text),
        sa.Column("flag", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("at", sa.Time),
        sa.Column("stamp", sa.DateTime),
        sa.Column("data", sa.LargeBinary),
    ]
    if postgres:
        columns += [
            sa.Column("stamp_tz", sa.DateTime(timezone=True)),
            sa.Column("at_tz", sa.Time(timezone=True)),
            sa.Column("ident", sa.Uuid),
            sa.Column("doc", pg.JSONB(none_as_null=True)),
        ]
    tables = {
        "everything": sa.Table("everything", meta, *columns, comment="every type"),
        "department": sa.Table(
            "department",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("name", sa.String(80), nullable=False, comment="what it is called"),
            sa.UniqueConstraint("name", name="department_name_key"),
            comment="Departments & units",
        ),
        "employee": sa.Table(
            "employee",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column(
                "department_id",
                sa.Integer,
                sa.ForeignKey("department.id", name="employee_department_fk", ondelete="CASCADE"),
            ),
            sa.Column("name", sa.String(80), nullable=False, comment="Full name"),
        ),
        "assignment": sa.Table(
            "assignment",
            meta,
            sa.Column(
                "employee_id",
                sa.Integer,
                sa.ForeignKey("employee.id", name="assignment_employee_fk"),
                primary_key=True,
                autoincrement=False,
            ),
            sa.Column("project", sa.String(20), primary_key=True),
            sa.Column("hours", sa.Integer, nullable=False),
        ),
    }
    if postgres:
        tables["ledger.entry"] = sa.Table(
            "entry",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("employee_id", sa.Integer, sa.ForeignKey("employee.id")),
            sa.Column("amount", sa.Numeric(10, 2), nullable=False),
            sa.Column("booked", sa.DateTime(timezone=True)),
            schema="ledger",
        )
    return meta, tables


def _everything(url: str, rows: int) -> list[dict[str, Any]]:
    """The rows inserted into ``everything``: special ones first, then ``rows`` ordinary ones."""
    postgres = _is_pg(url)
    out: list[dict[str, Any]] = []
    for n in range(rows + 3):
        row: dict[str, Any] = {
            "id": n + 1,
            "small": (n % 200) - 100,
            "big": [2**62, -(2**63), 0][n % 3] + (n if n % 3 == 0 else 0),
            "amount": NUMERICS[n % len(NUMERICS)],
            "ratio": FLOATS[n % len(FLOATS)],
            "single": REALS[n % len(REALS)],
            "name": TEXTS[n % len(TEXTS)],
            "code": ["abc", "   ", "a\\&"][n % 3],
            "note": TEXTS[(n + 3) % len(TEXTS)],
            "flag": n % 2 == 0,
            "day": [date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29)][n % 3]
            + timedelta(days=0 if n % 3 != 2 else n),
            "at": [time(0, 0), time(23, 59, 59, 999999), time(12, 30, 0, 500)][n % 3],
            "stamp": datetime(2000, 1, 1, 0, 0, 0) + timedelta(seconds=n * 3601, microseconds=n),
            "data": BINARIES[n % len(BINARIES)],
        }
        if postgres:
            zone = [UTC, PLUS_FIVE, MINUS_EIGHT][n % 3]
            row["stamp_tz"] = datetime(2020, 6, 30, 23, 30, tzinfo=zone) + timedelta(hours=n)
            row["at_tz"] = time(1, 15, tzinfo=zone)
            row["ident"] = f"00000000-0000-4000-8000-{n:012d}"
            row["doc"] = {"n": n, "text": TEXTS[n % len(TEXTS)]}
        out.append(row)
    # Special rows: the LOBs, and a row of NULLs.
    out[0]["note"] = LOB_TEXT
    out[1]["data"] = LOB_BYTES
    nulls: dict[str, Any] = {key: None for key in out[0]}
    nulls["id"] = rows + 4
    out.append(nulls)
    if postgres:
        out[2]["ratio"] = float("nan")
    return out


def _departments() -> list[dict[str, Any]]:
    return [{"id": n, "name": f"Department {n} & <{n}>"} for n in range(1, 6)]


def _employees(rows: int) -> list[dict[str, Any]]:
    return [
        {"id": n, "department_id": None if n % 7 == 0 else n % 5 + 1, "name": f"Person {n}"}
        for n in range(1, max(rows, 10) + 1)
    ]


def _assignments(rows: int) -> list[dict[str, Any]]:
    return [
        {"employee_id": n % max(rows, 10) + 1, "project": f"P{n % 3}", "hours": n}
        for n in range(max(rows, 10))
    ] + [{"employee_id": 1, "project": "P9", "hours": 0}]


def create_sample_database(url: str, *, rows: int = 50) -> None:
    """Build the sample in the (existing, empty) database at ``url``; SQLite files are made."""
    engine = sa.create_engine(url)
    try:
        meta, tables = _tables(url)
        with engine.begin() as conn:
            if _is_pg(url):
                conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS ledger")
            meta.create_all(conn)
            conn.execute(tables["everything"].insert(), _everything(url, rows))
            conn.execute(tables["department"].insert(), _departments())
            conn.execute(tables["employee"].insert(), _employees(rows))
            conn.execute(tables["assignment"].insert(), _assignments(rows))
            if _is_pg(url):
                conn.execute(
                    tables["ledger.entry"].insert(),
                    [
                        {
                            "id": n,
                            "employee_id": n % 10 + 1,
                            "amount": Decimal(n) / 4,
                            "booked": datetime(2021, 1, 1, tzinfo=PLUS_FIVE) + timedelta(days=n),
                        }
                        for n in range(1, 21)
                    ],
                )
                conn.exec_driver_sql("COMMENT ON SCHEMA ledger IS 'the books'")
            conn.exec_driver_sql(
                "CREATE VIEW employee_names AS SELECT e.name AS employee, d.name AS department "
                "FROM employee e LEFT JOIN department d ON d.id = e.department_id"
            )
    finally:
        engine.dispose()


def _contract(value: Any, *, aware: bool) -> Any:
    """A value as the SIARD value contract returns it."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        return value.replace(tzinfo=UTC) if aware else value
    if isinstance(value, time) and value.tzinfo is not None:
        offset = value.utcoffset() or timedelta(0)
        moved = datetime.combine(date(2000, 1, 1), value.replace(tzinfo=None)) - offset
        return moved.time().replace(tzinfo=UTC)
    return value


def _everything_expected(url: str, rows: int) -> list[tuple[Any, ...]]:
    postgres = _is_pg(url)
    keys = list(_everything(url, 0)[0])
    out = []
    for row in _everything(url, rows):
        values = []
        for key in keys:
            value = row[key]
            if key == "doc" and value is not None:
                value = _jsonb_text(value)
            elif key == "ident" and value is not None:
                value = str(value)
            values.append(_contract(value, aware=postgres and key == "stamp_tz"))
        out.append(tuple(values))
    return out


def _jsonb_text(value: dict[str, Any]) -> str:
    """PostgreSQL's text of a jsonb object: keys by length then bytes, ``": "`` and ``", "``."""
    import json

    items = sorted(value.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
    return (
        "{"
        + ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in items)
        + "}"
    )


def expected_rows(url: str, *, rows: int = 50) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    """What every table of the sample holds, as SIARD gives it back, rows sorted."""
    schema = default_schema(url)
    out = {
        (schema, "everything"): _everything_expected(url, rows),
        (schema, "department"): [tuple(r.values()) for r in _departments()],
        (schema, "employee"): [tuple(r.values()) for r in _employees(rows)],
        (schema, "assignment"): [tuple(r.values()) for r in _assignments(rows)],
    }
    if _is_pg(url):
        out[("ledger", "entry")] = [
            (
                n,
                n % 10 + 1,
                Decimal(n) / 4,
                (datetime(2021, 1, 1, tzinfo=PLUS_FIVE) + timedelta(days=n)).astimezone(UTC),
            )
            for n in range(1, 21)
        ]
    return {key: sorted_rows(value) for key, value in out.items()}


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, float) and math.isnan(value):
        return (1, "nan")
    return (2, repr(value))


def sorted_rows(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as tuples in one order whatever order they came in (NaN made comparable)."""
    normal = [
        tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in rows
    ]
    return sorted(normal, key=lambda r: tuple(_sort_key(v) for v in r))
