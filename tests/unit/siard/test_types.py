"""SQL:2008 type names from SQLAlchemy reflection, and values to and from their lexical forms."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from preservation.siard.types import (
    base_type,
    declared_sql2008,
    is_lob,
    lexical_form,
    python_value,
    sql2008_of,
    sqlalchemy_type_of,
    type_original_of,
    type_params,
    xsd_type_of,
)

PG = pg.psycopg.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("sa_type", "dialect", "expected"),
    [
        (sa.Integer(), "sqlite", "INTEGER"),
        (sa.SmallInteger(), "postgresql", "SMALLINT"),
        (sa.BigInteger(), "postgresql", "BIGINT"),
        (pg.INTEGER(), "postgresql", "INTEGER"),
        (sa.Numeric(12, 3), "postgresql", "NUMERIC(12, 3)"),
        (sa.Numeric(12), "postgresql", "NUMERIC(12)"),
        (sa.Numeric(), "postgresql", "NUMERIC"),
        (sqlite.DECIMAL(10, 2), "sqlite", "NUMERIC(10, 2)"),
        (sa.REAL(), "postgresql", "REAL"),
        (sa.REAL(), "sqlite", "DOUBLE PRECISION"),
        (pg.DOUBLE_PRECISION(), "postgresql", "DOUBLE PRECISION"),
        (sa.Float(), "sqlite", "DOUBLE PRECISION"),
        (sa.String(40), "postgresql", "CHARACTER VARYING(40)"),
        (sa.VARCHAR(), "postgresql", "CHARACTER VARYING"),
        (sa.CHAR(3), "postgresql", "CHARACTER(3)"),
        (sa.Text(), "postgresql", "CHARACTER LARGE OBJECT"),
        (sqlite.TEXT(), "sqlite", "CHARACTER LARGE OBJECT"),
        (sa.Boolean(), "sqlite", "BOOLEAN"),
        (sa.Date(), "sqlite", "DATE"),
        (sa.Time(), "sqlite", "TIME(6)"),
        (pg.TIME(timezone=True), "postgresql", "TIME WITH TIME ZONE(6)"),
        (pg.TIMESTAMP(precision=3), "postgresql", "TIMESTAMP(3)"),
        (sa.DateTime(), "sqlite", "TIMESTAMP(6)"),
        (pg.TIMESTAMP(timezone=True), "postgresql", "TIMESTAMP WITH TIME ZONE(6)"),
        (sa.LargeBinary(), "sqlite", "BINARY LARGE OBJECT"),
        (pg.BYTEA(), "postgresql", "BINARY LARGE OBJECT"),
        (sqlite.BLOB(), "sqlite", "BINARY LARGE OBJECT"),
        (pg.JSONB(), "postgresql", "CHARACTER LARGE OBJECT"),
        (pg.JSON(), "postgresql", "CHARACTER LARGE OBJECT"),
        (pg.UUID(), "postgresql", "CHARACTER(36)"),
        (pg.INTERVAL(), "postgresql", "CHARACTER VARYING"),
        (pg.INET(), "postgresql", "CHARACTER VARYING"),
        (pg.ARRAY(sa.Integer()), "postgresql", "CHARACTER VARYING"),
        (sa.types.NullType(), "sqlite", "CHARACTER VARYING"),
        (sa.Enum("a", "bbb", name="e"), "postgresql", "CHARACTER VARYING(3)"),
    ],
)
def test_reflected_types_map_to_sql2008(
    sa_type: sa.types.TypeEngine[Any], dialect: str, expected: str
) -> None:
    assert sql2008_of(sa_type, dialect) == expected


def test_type_original_is_the_dialect_spelling() -> None:
    assert type_original_of(pg.JSONB(), PG) == "JSONB"
    assert type_original_of(sa.Numeric(10, 2), sqlite.dialect()) == "NUMERIC(10, 2)"


@pytest.mark.parametrize(
    ("sql2008", "base", "xsd"),
    [
        ("VARCHAR(20)", "CHARACTER VARYING", "xs:string"),
        ("NCHAR VARYING(5)", "CHARACTER VARYING", "xs:string"),
        ("DECIMAL(8, 2)", "DECIMAL", "xs:decimal"),
        ("INT", "INTEGER", "xs:integer"),
        ("CLOB(2 K)", "CHARACTER LARGE OBJECT", "clobType"),
        ("BLOB", "BINARY LARGE OBJECT", "blobType"),
        ("XML", "XML", "clobType"),
        ("VARBINARY(16)", "BINARY VARYING", "xs:hexBinary"),
        ("TIMESTAMP(6) WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE", "dateTimeType"),
        ("TIMESTAMP WITH TIME ZONE(6)", "TIMESTAMP WITH TIME ZONE", "dateTimeType"),
        ("time  with time zone", "TIME WITH TIME ZONE", "timeType"),
        ("INTERVAL DAY(2) TO SECOND(6)", "INTERVAL", "xs:duration"),
        ("FLOAT(53)", "FLOAT", "xs:double"),
        ("REAL", "REAL", "xs:float"),
        ("DATE", "DATE", "dateType"),
        ("SOMETHING ELSE", "SOMETHING ELSE", "xs:string"),
    ],
)
def test_base_and_xsd_types(sql2008: str, base: str, xsd: str) -> None:
    assert base_type(sql2008) == base
    assert xsd_type_of(sql2008) == xsd


def test_lobs_and_parameters() -> None:
    assert is_lob("CLOB") and is_lob("BINARY LARGE OBJECT") and is_lob("XML")
    assert not is_lob("VARCHAR(4000)") and not is_lob("BINARY VARYING(10)")
    assert type_params("NUMERIC(10, 2)") == (10, 2)
    assert type_params("CLOB(2 K)") == (2048, None)
    assert type_params("INTEGER") == (None, None)


@pytest.mark.parametrize(
    ("sql2008", "expected"),
    [
        ("INTEGER", sa.Integer),
        ("BIGINT", sa.BigInteger),
        ("SMALLINT", sa.SmallInteger),
        ("NUMERIC(10, 2)", sa.Numeric),
        ("DOUBLE PRECISION", sa.Double),
        ("REAL", sa.REAL),
        ("BOOLEAN", sa.Boolean),
        ("CHARACTER(36)", sa.CHAR),
        ("CHARACTER VARYING(40)", sa.String),
        ("CHARACTER LARGE OBJECT", sa.Text),
        ("BINARY LARGE OBJECT", sa.LargeBinary),
        ("DATE", sa.Date),
        ("TIME(6)", sa.Time),
        ("TIMESTAMP WITH TIME ZONE(6)", sa.DateTime),
    ],
)
def test_sqlalchemy_types_for_load(sql2008: str, expected: type) -> None:
    made = sqlalchemy_type_of(sql2008)
    assert isinstance(made, expected)
    if sql2008.startswith("NUMERIC"):
        assert (made.precision, made.scale) == (10, 2)  # type: ignore[attr-defined]
    if "WITH TIME ZONE" in sql2008:
        assert made.timezone  # type: ignore[attr-defined]
    if sql2008 == "CHARACTER VARYING(40)":
        assert made.length == 40  # type: ignore[attr-defined]


PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("sql2008", "value", "lexical"),
    [
        ("INTEGER", -42, "-42"),
        ("BIGINT", 2**62, str(2**62)),
        ("NUMERIC(10, 2)", Decimal("-12.50"), "-12.50"),
        ("NUMERIC(30, 0)", Decimal("1E+20"), "100000000000000000000"),
        ("DOUBLE PRECISION", 0.1, "0.1"),
        ("DOUBLE PRECISION", float("inf"), "INF"),
        ("DOUBLE PRECISION", float("-inf"), "-INF"),
        ("REAL", 1.5, "1.5"),
        ("BOOLEAN", True, "true"),
        ("BOOLEAN", False, "false"),
        ("CHARACTER VARYING(20)", "a  b\\<", "a\\u0020\\u0020b\\u005c&lt;"),
        ("BINARY LARGE OBJECT", b"\x00\xff", "00FF"),
        ("BINARY LARGE OBJECT", b"", ""),
        ("DATE", date(1, 1, 1), "0001-01-01Z"),
        ("TIME(6)", time(23, 59, 58, 5), "23:59:58.000005Z"),
        ("TIMESTAMP(6)", datetime(2020, 2, 29, 12, 0), "2020-02-29T12:00:00Z"),
        (
            "TIMESTAMP WITH TIME ZONE(6)",
            datetime(2020, 1, 1, 1, 30, tzinfo=PLUS_TWO),
            "2019-12-31T23:30:00Z",
        ),
        ("TIME WITH TIME ZONE(6)", time(1, 0, tzinfo=PLUS_TWO), "23:00:00Z"),
    ],
)
def test_lexical_forms(sql2008: str, value: object, lexical: str) -> None:
    assert lexical_form(sql2008)(value) == lexical


@pytest.mark.parametrize(
    ("sql2008", "lexical", "value"),
    [
        ("INTEGER", "-42", -42),
        ("NUMERIC(10, 2)", "-12.50", Decimal("-12.50")),
        ("DOUBLE PRECISION", "-INF", float("-inf")),
        ("REAL", "1.5", 1.5),
        ("BOOLEAN", "1", True),
        ("BOOLEAN", "false", False),
        ("CHARACTER VARYING(20)", "a\\u0020\\u0020b\\u005c<", "a  b\\<"),
        ("BINARY LARGE OBJECT", "00ff", b"\x00\xff"),
        ("DATE", "2003-06-16Z", date(2003, 6, 16)),
        ("DATE", "2003-06-16", date(2003, 6, 16)),
        ("TIME(6)", "12:00:00.5Z", time(12, 0, 0, 500000)),
        ("TIMESTAMP(6)", "2020-01-01T00:00:00Z", datetime(2020, 1, 1)),
        ("TIMESTAMP(6)", "2020-01-01T00:00:00", datetime(2020, 1, 1)),
        ("TIMESTAMP WITH TIME ZONE(6)", "2020-01-01T00:00:00Z", datetime(2020, 1, 1, tzinfo=UTC)),
        (
            "TIMESTAMP WITH TIME ZONE(6)",
            "2020-01-01T02:00:00+02:00",
            datetime(2020, 1, 1, tzinfo=UTC),
        ),
        ("TIME WITH TIME ZONE(6)", "23:00:00Z", time(23, 0, tzinfo=UTC)),
        ("INTERVAL DAY TO SECOND", "P1DT2H", "P1DT2H"),
    ],
)
def test_python_values(sql2008: str, lexical: str, value: object) -> None:
    parsed = python_value(sql2008, lexical)
    assert parsed == value
    assert type(parsed) is type(value)


def test_nan_round_trips() -> None:
    import math

    assert lexical_form("DOUBLE PRECISION")(float("nan")) == "NaN"
    assert math.isnan(python_value("DOUBLE PRECISION", "NaN"))


def test_a_bad_lexical_form_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        python_value("INTEGER", "twelve")
    with pytest.raises(ValueError):
        python_value("BOOLEAN", "yes")


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("INTEGER", "INTEGER"),
        ("integer", "INTEGER"),
        ("varchar(20)", "CHARACTER VARYING(20)"),
        ("Decimal(8,2)", "NUMERIC(8, 2)"),
        ("DOUBLE PRECISION", "DOUBLE PRECISION"),
        ("TINYINT", "SMALLINT"),
        ("CHARACTER(4)", "CHARACTER(4)"),
        ("JSON", "CHARACTER LARGE OBJECT"),
        ("XML", "XML"),
        ("uuid", "CHARACTER(36)"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE(6)"),
        ("STRING", "CHARACTER VARYING"),
        ("MONEY", "CHARACTER VARYING"),
        ("WHATEVER(3)", "CHARACTER VARYING"),
        ("", "CHARACTER VARYING"),
        (None, "CHARACTER VARYING"),
    ],
)
def test_declared_types(declared: str | None, expected: str) -> None:
    assert declared_sql2008(declared, sqlite.dialect()) == expected


def test_postgres_declared_types_and_domains() -> None:
    assert declared_sql2008("xml", PG) == "XML"
    assert declared_sql2008("tsquery", PG) == "CHARACTER VARYING"
    domain = pg.DOMAIN("positive", sa.Integer())
    assert sql2008_of(domain, "postgresql") == "INTEGER"


def test_sqlite_timestamp_with_time_zone_text_is_utc() -> None:
    form = lexical_form("TIMESTAMP WITH TIME ZONE(6)")
    assert form("2024-05-01 12:00:00+02:00") == "2024-05-01T10:00:00Z"
    assert form("2024-05-01 12:00:00") == "2024-05-01T12:00:00Z"
