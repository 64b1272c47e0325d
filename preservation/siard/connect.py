"""A database URL made into an engine, the same way for export and load.

Two databases are supported, each through one driver: SQLite (Python's own
``sqlite3``) and PostgreSQL through psycopg 3, the driver this project ships
and the one whose streaming (libpq's chunked rows) and COPY the exporter and
the loader are written for. A URL naming another driver
(``postgresql+psycopg2``, ``postgresql+asyncpg``) or another database is
refused up front, with what is supported, rather than failing later in code
that assumes psycopg 3. A URL's password never appears in a message
(``redact_url``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from preservation.errors import InvalidRequestError

__all__ = ["SUPPORTED", "engine_for", "redact_url"]

#: What messages tell a user to write instead.
SUPPORTED = (
    "PostgreSQL through psycopg 3 (postgresql://... or postgresql+psycopg://...) "
    "and SQLite (sqlite:///path/to/file) are supported"
)

_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}

#: ``user:password@`` in a URL that does not parse, so its password can still be hidden.
_CREDENTIALS = re.compile(r"(//[^/:@]*):[^/@]*@")


def redact_url(url: str | sa.URL) -> str:
    """The URL without its password, as metadata.xml's ``connection`` and messages show it.

    A URL that does not parse (a port that is not a number, say) has its
    password cut out of the text as given, so the message can still show it.
    """
    try:
        parsed = sa.make_url(url) if isinstance(url, str) else url
    except (sa.exc.ArgumentError, ValueError):
        return _CREDENTIALS.sub(r"\1@", str(url)) if "://" in str(url) else "(not a database URL)"
    return parsed._replace(password=None).render_as_string(hide_password=False)


def _parse(url: str | sa.URL) -> sa.URL:
    if isinstance(url, sa.URL):
        return url
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError as err:
        raise InvalidRequestError(f"{redact_url(url)}: not a database URL: {SUPPORTED}") from err
    except ValueError as err:  # make_url's int() of the port
        raise InvalidRequestError(
            f"{redact_url(url)}: not a database URL ({err}; a port is a number): {SUPPORTED}"
        ) from err


def engine_for(url: str | sa.URL, *, purpose: Literal["export", "load"]) -> sa.Engine:
    """An engine for ``url``: SQLite, or PostgreSQL through psycopg 3 (``postgresql`` means it).

    ``purpose`` says what the engine is for, in messages and in one check: a
    database to export from must be a SQLite file that exists (an in-memory or
    missing one would be exported as empty), while a load may create one.
    Raises ``InvalidRequestError``, naming the URL without its password, for a
    URL that does not parse, another database or driver, or a driver that
    cannot be loaded.
    """
    parsed = _parse(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise InvalidRequestError(
            f"{redact_url(parsed)}: cannot {purpose} this database: {SUPPORTED}"
        )
    parsed = parsed.set(drivername=driver)
    if purpose == "export" and driver == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise InvalidRequestError(
                f"{redact_url(parsed)}: name a SQLite database file to export"
            )
        if not Path(database).is_file():
            raise InvalidRequestError(f"{redact_url(parsed)}: no such database file {database}")
    try:
        # An export opens one connection and disposes of the engine: nothing to pool.
        if purpose == "export":
            return sa.create_engine(parsed, poolclass=sa.pool.NullPool)
        return sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
        raise InvalidRequestError(
            f"{redact_url(parsed)}: cannot be used ({err}): {SUPPORTED}"
        ) from err
