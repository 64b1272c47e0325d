"""SQL:2008 types, the only type vocabulary SIARD has, to and from SQLAlchemy, XSD and Python.

The exporter names each reflected column's type in SQL:2008 (``sql2008_of``);
the table XSD gets the XML type the spec's P_4.3-3 table gives for it
(``xsd_type_of``); the reader turns a cell's lexical form back into a Python
value (``value_parser``, ``python_value``) and the loader creates a column of the
matching SQLAlchemy type (``sqlalchemy_type_of``).

Choices the spec leaves to the producer ("a translation of the proprietary
types ... is to be defined and documented in the corresponding application"):

- SQLite's ``REAL``/``FLOAT``/``DOUBLE`` are 8-byte doubles: ``DOUBLE PRECISION``;
  PostgreSQL's ``real`` is 4 bytes: ``REAL``.
- ``text`` (PostgreSQL, SQLite ``TEXT``), ``json``, ``jsonb`` and SQLAlchemy's
  ``Text``: ``CHARACTER LARGE OBJECT``; ``xml``: ``XML``; ``bytea`` and ``BLOB``:
  ``BINARY LARGE OBJECT``. These are the columns whose large values go to LOB files.
- ``uuid``: ``CHARACTER(36)``; an enum: ``CHARACTER VARYING(n)``, n its longest label.
- ``interval``, arrays, network addresses, ranges and any type this table does not
  know: ``CHARACTER VARYING``, the value as the database renders it as text,
  ``typeOriginal`` keeping the source's own name. (An ``INTERVAL`` as xs:duration
  cannot carry PostgreSQL's mixed-sign month/day/second intervals.)
- A declared type SQLAlchemy's dialect does not know (SQLite takes any text as a
  type; PostgreSQL's ``xml``) is read from the database's own text of it
  (``declared_sql2008``): ``XML`` is ``XML``, ``UUID`` ``CHARACTER(36)``,
  ``TIMESTAMP WITH TIME ZONE`` ``TIMESTAMP WITH TIME ZONE(6)``; any other (SQLite's
  ``STRING``, ``MONEY``, a column with no declared type) is ``CHARACTER VARYING``,
  which holds whatever SQLite stored in it, ``typeOriginal`` the declared text.
- Date-time types carry their fractional-second precision
  (``TIMESTAMP WITH TIME ZONE(6)``): the metadata XSD's pattern puts the
  precision after ``WITH TIME ZONE``, not after ``TIMESTAMP`` as SQL does;
  ``base_type`` reads both spellings.

Values: every date, time and timestamp is written with a trailing ``Z`` (the
spec's recommendation, T_6.3-2; and libxml2 finds ``0001-01-01`` without a zone
below dateType's ``minInclusive`` of ``0001-01-01Z``). ``... WITH TIME ZONE``
values are converted to UTC and read back as aware UTC values; the others are
read back naive, the ``Z`` dropped: they were never in a zone.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from preservation.siard.text import escape, unescape

__all__ = [
    "LOB_TYPES",
    "base_type",
    "declared_sql2008",
    "is_lob",
    "lexical_form",
    "python_value",
    "sql2008_of",
    "sqlalchemy_type_of",
    "type_original_of",
    "type_params",
    "value_parser",
    "xsd_type_of",
]

#: Base types whose values may be stored as separate files (T_6.2-1).
LOB_TYPES = frozenset({"CHARACTER LARGE OBJECT", "BINARY LARGE OBJECT", "XML", "DATALINK"})

#: Short and national spellings, as ``base_type`` names them.
_SYNONYMS = {
    "INT": "INTEGER",
    "DEC": "DECIMAL",
    "CHAR": "CHARACTER",
    "CHAR VARYING": "CHARACTER VARYING",
    "VARCHAR": "CHARACTER VARYING",
    "CLOB": "CHARACTER LARGE OBJECT",
    "NATIONAL CHARACTER": "CHARACTER",
    "NATIONAL CHAR": "CHARACTER",
    "NCHAR": "CHARACTER",
    "NATIONAL CHARACTER VARYING": "CHARACTER VARYING",
    "NATIONAL CHAR VARYING": "CHARACTER VARYING",
    "NCHAR VARYING": "CHARACTER VARYING",
    "NATIONAL CHARACTER LARGE OBJECT": "CHARACTER LARGE OBJECT",
    "NCHAR LARGE OBJECT": "CHARACTER LARGE OBJECT",
    "NCLOB": "CHARACTER LARGE OBJECT",
    "VARBINARY": "BINARY VARYING",
    "BLOB": "BINARY LARGE OBJECT",
}

_XSD = {
    "INTEGER": "xs:integer",
    "SMALLINT": "xs:integer",
    "BIGINT": "xs:integer",
    "NUMERIC": "xs:decimal",
    "DECIMAL": "xs:decimal",
    "REAL": "xs:float",
    "DOUBLE PRECISION": "xs:double",
    "FLOAT": "xs:double",
    "BOOLEAN": "xs:boolean",
    "CHARACTER": "xs:string",
    "CHARACTER VARYING": "xs:string",
    "CHARACTER LARGE OBJECT": "clobType",
    "XML": "clobType",
    "BINARY": "xs:hexBinary",
    "BINARY VARYING": "xs:hexBinary",
    "BINARY LARGE OBJECT": "blobType",
    "DATALINK": "blobType",
    "DATE": "dateType",
    "TIME": "timeType",
    "TIME WITH TIME ZONE": "timeType",
    "TIMESTAMP": "dateTimeType",
    "TIMESTAMP WITH TIME ZONE": "dateTimeType",
    "INTERVAL": "xs:duration",
}

_PARENS = re.compile(r"\s*\([^)]*\)")
_SPACE = re.compile(r"\s+")
_PARAMS = re.compile(r"\(\s*(\d+)\s*(?:[KMG]\s*)?(?:,\s*(\d+)\s*)?\)")


# -- SQL:2008 type strings ---------------------------------------------------


@functools.lru_cache(maxsize=512)
def base_type(sql2008: str) -> str:
    """The type without length, precision or scale, in its long spelling.

    ``"VARCHAR(20)"`` -> ``"CHARACTER VARYING"``; ``"TIMESTAMP(6) WITH TIME ZONE"``
    and ``"TIMESTAMP WITH TIME ZONE(6)"`` -> ``"TIMESTAMP WITH TIME ZONE"``;
    ``"INTERVAL DAY TO SECOND(6)"`` -> ``"INTERVAL"``.
    """
    name = _SPACE.sub(" ", _PARENS.sub("", sql2008)).strip().upper()
    if name.startswith("INTERVAL"):
        return "INTERVAL"
    return _SYNONYMS.get(name, name)


@functools.lru_cache(maxsize=512)
def type_params(sql2008: str) -> tuple[int | None, int | None]:
    """The first ``(n)`` or ``(p, s)`` of a type: length or precision, and scale.

    ``CLOB(2 K)``-style multipliers are applied (K, M, G).
    """
    match = _PARAMS.search(sql2008.upper())
    if match is None:
        return None, None
    first = int(match.group(1))
    unit = re.search(r"\d+\s*([KMG])\s*\)", match.group(0))
    if unit:
        first *= {"K": 1024, "M": 1024**2, "G": 1024**3}[unit.group(1)]
    return first, int(match.group(2)) if match.group(2) is not None else None


def xsd_type_of(sql2008: str) -> str:
    """The table XSD's type for a column (P_4.3-3); unknown types are ``xs:string``."""
    return _XSD.get(base_type(sql2008), "xs:string")


def is_lob(sql2008: str) -> bool:
    """True for the types whose values may live in separate files (BLOB, CLOB, XML, DATALINK)."""
    return base_type(sql2008) in LOB_TYPES


# -- from SQLAlchemy reflection ------------------------------------------------


def _precision_suffix(sa_type: Any, default: int) -> int:
    precision = getattr(sa_type, "precision", None)
    return default if precision is None else int(precision)


def sql2008_of(sa_type: TypeEngine[Any], dialect_name: str) -> str:
    """The SQL:2008 type for a reflected column type of ``dialect_name`` (see the module notes)."""
    name = type(sa_type).__name__.upper()
    if isinstance(sa_type, postgresql.DOMAIN):  # a domain's values are its base type's
        return sql2008_of(sa_type.data_type, dialect_name)
    if isinstance(sa_type, sa.Boolean):
        return "BOOLEAN"
    if isinstance(sa_type, sa.SmallInteger):
        return "SMALLINT"
    if isinstance(sa_type, sa.BigInteger):
        return "BIGINT"
    if isinstance(sa_type, sa.Integer):
        return "INTEGER"
    if isinstance(sa_type, sa.Float) or name in ("REAL", "DOUBLE", "DOUBLE_PRECISION", "FLOAT"):
        if name == "REAL" and dialect_name != "sqlite":
            return "REAL"
        return "DOUBLE PRECISION"
    if isinstance(sa_type, sa.Numeric):
        precision, scale = sa_type.precision, sa_type.scale
        if not precision:
            return "NUMERIC"
        if scale is None:
            return f"NUMERIC({precision})"
        return f"NUMERIC({precision}, {scale})"
    if isinstance(sa_type, sa.Uuid) or name == "UUID":
        return "CHARACTER(36)"
    if isinstance(sa_type, sa.JSON):
        return "CHARACTER LARGE OBJECT"
    if isinstance(sa_type, sa.Enum):
        labels = [str(e) for e in sa_type.enums] or [""]
        return f"CHARACTER VARYING({max(1, *(len(e) for e in labels))})"
    if isinstance(sa_type, sa.Text) or name in ("TEXT", "CLOB", "NCLOB", "TINYTEXT", "LONGTEXT"):
        return "CHARACTER LARGE OBJECT"
    if name == "XML":
        return "XML"
    if isinstance(sa_type, sa.String):
        length = sa_type.length
        if isinstance(sa_type, sa.CHAR | sa.NCHAR) or name in ("CHAR", "NCHAR", "BPCHAR"):
            return f"CHARACTER({length or 1})"
        return f"CHARACTER VARYING({length})" if length else "CHARACTER VARYING"
    if isinstance(sa_type, sa.LargeBinary) or name in ("BYTEA", "BLOB"):
        return "BINARY LARGE OBJECT"
    if isinstance(sa_type, sa.types._Binary):
        length = getattr(sa_type, "length", None)
        if name == "BINARY":
            return f"BINARY({length or 1})"
        return f"BINARY VARYING({length})" if length else "BINARY VARYING"
    if isinstance(sa_type, sa.DateTime) or name in ("TIMESTAMP", "DATETIME"):
        precision = _precision_suffix(sa_type, 6)
        suffix = f"({precision})"
        if getattr(sa_type, "timezone", False):
            return f"TIMESTAMP WITH TIME ZONE{suffix}"
        return f"TIMESTAMP{suffix}"
    if isinstance(sa_type, sa.Date):
        return "DATE"
    if isinstance(sa_type, sa.Time):
        precision = _precision_suffix(sa_type, 6)
        suffix = f"({precision})" if precision else ""
        if getattr(sa_type, "timezone", False):
            return f"TIME WITH TIME ZONE{suffix}"
        return f"TIME{suffix}"
    return "CHARACTER VARYING"


#: Declared type names SQLAlchemy's dialects do not map (SQL's, SQLite's doc's), and theirs.
_DECLARED = {
    "XML": "XML",
    "UUID": "CHARACTER(36)",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP WITH TIME ZONE(6)",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE(6)",
    "DOUBLE PRECISION": "DOUBLE PRECISION",
    "TINYINT": "SMALLINT",
    "INT2": "SMALLINT",
    "MEDIUMINT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "UNSIGNED BIG INT": "BIGINT",
    "CLOB": "CHARACTER LARGE OBJECT",
    "NCLOB": "CHARACTER LARGE OBJECT",
    "CHARACTER": "CHARACTER",
    "NATIVE CHARACTER": "CHARACTER",
    "CHARACTER VARYING": "CHARACTER VARYING",
    "VARYING CHARACTER": "CHARACTER VARYING",
    "NATIONAL CHARACTER VARYING": "CHARACTER VARYING",
}
_DECLARED_NAME = re.compile(r"([\w ]+)(\(.*?\))?")


def declared_sql2008(declared: str | None, dialect: sa.Dialect) -> str:
    """The SQL:2008 type for a declared type's text (SQLite's, PostgreSQL's ``format_type``).

    A name the dialect knows (case aside) is its SQLAlchemy type's; then the names
    of ``_DECLARED``; anything else, or no type, ``CHARACTER VARYING`` (the module notes).
    """
    text = _SPACE.sub(" ", declared or "").strip().upper()
    match = _DECLARED_NAME.match(text)
    name = match.group(1).strip() if match else ""
    args = [int(a) for a in re.findall(r"\d+", match.group(2) or "")] if match else []
    if name in _DECLARED:
        mapped = _DECLARED[name]
        if mapped == "CHARACTER":
            return f"CHARACTER({args[0] if args else 1})"
        if mapped == "CHARACTER VARYING" and args:
            return f"CHARACTER VARYING({args[0]})"
        return mapped
    known = getattr(dialect, "ischema_names", {}).get(name) if dialect.name == "sqlite" else None
    if known is not None:
        try:
            sa_type = known(*args)
        except TypeError:
            sa_type = known()
        return sql2008_of(sa_type, dialect.name)
    return "CHARACTER VARYING"


def type_original_of(sa_type: TypeEngine[Any], dialect: sa.Dialect) -> str:
    """The source DBMS's own spelling of a type (``typeOriginal``), as its dialect compiles it."""
    try:
        return str(sa_type.compile(dialect=dialect))
    except Exception:  # noqa: BLE001 - a type the dialect cannot compile still has a name
        return type(sa_type).__name__.upper()


# -- back to SQLAlchemy (load) ------------------------------------------------


def sqlalchemy_type_of(sql2008: str) -> TypeEngine[Any]:
    """A portable SQLAlchemy type for a SIARD column, for creating it in PostgreSQL or SQLite."""
    base = base_type(sql2008)
    first, second = type_params(sql2008)
    with_tz = "WITH TIME ZONE" in sql2008.upper()
    if base == "INTEGER":
        return sa.Integer()
    if base == "SMALLINT":
        return sa.SmallInteger()
    if base == "BIGINT":
        return sa.BigInteger()
    if base in ("NUMERIC", "DECIMAL"):
        return sa.Numeric(first, second, asdecimal=True)
    if base == "REAL":
        return sa.REAL()
    if base == "DOUBLE PRECISION":
        return sa.Double()
    if base == "FLOAT":
        return sa.Double() if first is None or first > 24 else sa.REAL()
    if base == "BOOLEAN":
        return sa.Boolean()
    if base == "CHARACTER":
        return sa.CHAR(first or 1)
    if base == "CHARACTER VARYING":
        return sa.String(first)
    if base in ("CHARACTER LARGE OBJECT", "XML"):
        return sa.Text()
    if base in ("BINARY", "BINARY VARYING", "BINARY LARGE OBJECT"):
        return sa.LargeBinary()
    if base == "DATE":
        return sa.Date()
    if base in ("TIME", "TIME WITH TIME ZONE"):
        return sa.Time(timezone=with_tz)
    if base in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
        return sa.DateTime(timezone=with_tz)
    if base == "INTERVAL":
        return sa.String()
    return sa.Text()


# -- lexical forms <-> Python values -------------------------------------------


def _strip_zone(text: str) -> str:
    text = text.strip()
    return text[:-1] if text.endswith("Z") else text


def _parse_bool(text: str) -> bool:
    text = text.strip()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not an xs:boolean: {text!r}")


def _parse_date(text: str) -> date:
    text = _strip_zone(text)
    if len(text) > 10:  # an offset: the date as written, the zone dropped
        text = text[:10]
    return date.fromisoformat(text)


def _parse_time(text: str) -> time:
    return time.fromisoformat(_strip_zone(text))


def _parse_time_tz(text: str) -> time:
    value = time.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _parse_timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _parse_timestamp_tz(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_binary(text: str) -> bytes:
    return bytes.fromhex(text.strip())


def _parse_float(text: str) -> float:
    return float(text.strip())


def _parse_int(text: str) -> int:
    return int(text.strip())


def _parse_decimal(text: str) -> Decimal:
    return Decimal(text.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "INTEGER": _parse_int,
    "SMALLINT": _parse_int,
    "BIGINT": _parse_int,
    "NUMERIC": _parse_decimal,
    "DECIMAL": _parse_decimal,
    "REAL": _parse_float,
    "DOUBLE PRECISION": _parse_float,
    "FLOAT": _parse_float,
    "BOOLEAN": _parse_bool,
    "BINARY": _parse_binary,
    "BINARY VARYING": _parse_binary,
    "BINARY LARGE OBJECT": _parse_binary,
    "DATE": _parse_date,
    "TIME": _parse_time,
    "TIME WITH TIME ZONE": _parse_time_tz,
    "TIMESTAMP": _parse_timestamp,
    "TIMESTAMP WITH TIME ZONE": _parse_timestamp_tz,
}


@functools.lru_cache(maxsize=512)
def value_parser(sql2008: str) -> Callable[[str], Any]:
    """The function from a cell's text (as the XML parser gives it) to its Python value.

    Look it up once per column and call it per cell: that is what makes reading fast.
    Text types (and unknown ones) are unescaped (``text.unescape``); binary is hex.
    Raises ``ValueError`` on a lexical form the type does not allow.
    """
    return _PARSERS.get(base_type(sql2008), unescape)


def python_value(sql2008: str, text: str) -> Any:
    """A cell's Python value: int, Decimal, float, bool, str, bytes, date, time or datetime."""
    return value_parser(sql2008)(text)


def _float_lexical(value: Any) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(value)


def _decimal_lexical(value: Any) -> str:
    if isinstance(value, float):
        value = Decimal(repr(value))
    elif not isinstance(value, Decimal):
        value = Decimal(value)
    return format(value, "f")


def _bool_lexical(value: Any) -> str:
    return "true" if value else "false"


def _timestamp_lexical(value: Any) -> str:
    if isinstance(value, str):
        return value.replace(" ", "T", 1) + "Z"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value.isoformat()) + "Z"


def _timestamp_tz_lexical(value: Any) -> str:
    if isinstance(value, str):  # SQLite: ISO text, with an offset or without (then UTC)
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return str(value.isoformat()) + "Z"
    return str(value.astimezone(UTC).replace(tzinfo=None).isoformat()) + "Z"


def _time_lexical(value: Any) -> str:
    if isinstance(value, str):
        return value + "Z"
    return str(value.replace(tzinfo=None).isoformat()) + "Z"


def _time_tz_lexical(value: Any) -> str:
    offset = value.utcoffset()
    if offset:
        value = (datetime.combine(date(2000, 1, 1), value.replace(tzinfo=None)) - offset).time()
    return str(value.replace(tzinfo=None).isoformat()) + "Z"


def _date_lexical(value: Any) -> str:
    return (value if isinstance(value, str) else str(value.isoformat())) + "Z"


def _hex_lexical(value: Any) -> str:
    return bytes(value).hex().upper()


def _text_lexical(value: Any) -> str:
    return escape(value if isinstance(value, str) else str(value))


_LEXICAL: dict[str, Callable[[Any], str]] = {
    "INTEGER": str,
    "SMALLINT": str,
    "BIGINT": str,
    "NUMERIC": _decimal_lexical,
    "DECIMAL": _decimal_lexical,
    "REAL": _float_lexical,
    "DOUBLE PRECISION": _float_lexical,
    "FLOAT": _float_lexical,
    "BOOLEAN": _bool_lexical,
    "BINARY": _hex_lexical,
    "BINARY VARYING": _hex_lexical,
    "BINARY LARGE OBJECT": _hex_lexical,
    "DATE": _date_lexical,
    "TIME": _time_lexical,
    "TIME WITH TIME ZONE": _time_tz_lexical,
    "TIMESTAMP": _timestamp_lexical,
    "TIMESTAMP WITH TIME ZONE": _timestamp_tz_lexical,
}


@functools.lru_cache(maxsize=512)
def lexical_form(sql2008: str) -> Callable[[Any], str]:
    """The function from a (non-None) Python value to the cell's content in table XML.

    The inverse of ``value_parser``, text already escaped for XML element content
    (``text.escape``); binary as upper-case hex. Used for inlined values.
    """
    return _LEXICAL.get(base_type(sql2008), _text_lexical)
