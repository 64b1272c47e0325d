"""Engines and sessions for the catalogue, built in entry points, never at import.

SQLite's own errors (a file that is no database, a damaged one, a read-only
one) are turned into :class:`~preservation.errors.DataRootError` here, on the
engine, so every caller meets one error naming the file and the fix rather than
a driver exception from deep inside a query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from preservation.errors import CatalogueContentionError, DataRootError

if TYPE_CHECKING:
    from alembic.config import Config

#: The revision the newest migration ends at. Alembic is imported only when the
#: catalogue is not there yet (a tenth of a second of every command otherwise);
#: tests/unit/catalog/test_catalog.py checks this against the migrations.
HEAD_REVISION = "0010"

__all__ = [
    "catalogue_error",
    "HEAD_REVISION",
    "head_revision",
    "known_revisions",
    "make_engine",
    "make_sessionmaker",
    "schema_revision",
    "session_scope",
    "sqlite_path",
    "upgrade",
]

MIGRATIONS = Path(__file__).parent / "migrations"

#: What to do with a catalogue SQLite cannot read; the rebuild from tape is not written yet.
DAMAGED_HINT = (
    "restore it from a backup, or move it aside and rebuild the catalogue from the tapes "
    "(that command is still to come; the tapes keep every AIP meanwhile)"
)


def sqlite_path(url: str | URL) -> Path | None:
    """The catalogue's file for a SQLite URL; None for a server database or memory."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def catalogue_error(error: BaseException, path: Path | None) -> DataRootError | None:
    """The operator's version of a SQLite failure on the catalogue, or None if not ours.

    Only what the operator must fix is translated: a file that is no database,
    a damaged one, one that cannot be written or opened. A locked database or a
    constraint violation stays what it is: the caller handles those.
    """
    original = getattr(error, "orig", None) or error
    if not isinstance(original, sqlite3.Error):
        return None
    name = getattr(original, "sqlite_errorname", "") or ""
    where = str(path) if path is not None else "the catalogue"
    said = str(original)
    if name.startswith("SQLITE_NOTADB"):
        message = f"{where} is not a catalogue database (SQLite: {said}); {DAMAGED_HINT}"
    elif name.startswith("SQLITE_CORRUPT"):
        message = f"the catalogue {where} is damaged (SQLite: {said}); {DAMAGED_HINT}"
    elif name.startswith("SQLITE_READONLY"):
        message = (
            f"the catalogue {where} is read-only (SQLite: {said}); this command writes, "
            "so it needs a writable data root"
        )
    elif name.startswith("SQLITE_CANTOPEN"):
        message = (
            f"the catalogue {where} cannot be opened (SQLite: {said}); check that the "
            "file and its folder exist and may be read (and written, to change anything)"
        )
    else:
        return None
    return DataRootError(message, path=where, sqlite_error=name)


def make_engine(url: str, *, read_only: bool = False, immutable: bool = False) -> Engine:
    """An engine on the catalogue; ``read_only`` opens a SQLite file without writing to it.

    ``immutable`` is for a file on read-only media: SQLite then takes no locks
    and looks for no journal, which a read-only folder could not hold anyway.
    """
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        target: str | URL = url
        if read_only and path is not None:
            query = {"immutable": "1"} if immutable else {"mode": "ro"}
            target = URL.create(
                "sqlite", database="file:" + quote(str(path)), query=query | {"uri": "true"}
            )
        engine = create_engine(target, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the watcher read while a stage writes; foreign keys are off by default.
            # A read-only connection must not ask for WAL: changing the mode is a write.
            cur = dbapi_conn.cursor()
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "handle_error")
        def _translate(context: ExceptionContext) -> None:
            translated = catalogue_error(context.original_exception, path)
            if translated is not None:
                raise translated from context.original_exception

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "handle_error", _contention)
    return engine


#: SQLSTATEs after which the same transaction, run again, may well succeed.
RETRYABLE_SQLSTATES = {
    "40P01": "deadlock detected",
    "40001": "serialization failure",
}


def _contention(context: ExceptionContext) -> None:
    """A deadlock victim is a transient error (retried), not a failed stage.

    Workers on different SIPs of one tenant, or on one SIP's two sites,
    take the same rows in different orders now and then; PostgreSQL then
    aborts one transaction. Left as a driver error, the task failed for good
    and its SIP waited for stall recovery.
    """
    sqlstate = getattr(context.original_exception, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        raise CatalogueContentionError(
            f"the catalogue aborted a transaction ({RETRYABLE_SQLSTATES[sqlstate]}, "
            f"SQLSTATE {sqlstate}); it is retried",
            sqlstate=sqlstate,
        ) from context.original_exception


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the catalogue schema up to date; the only way tables are ever created.

    Alembic builds its own engine (without the foreign-key pragma, which batch
    migrations on SQLite must not run under), so its errors are translated here.
    """
    from alembic import command

    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        command.upgrade(alembic_config(url), revision)
    except (DBAPIError, sqlite3.Error) as err:
        translated = catalogue_error(err, path)
        if translated is None:
            raise
        raise translated from err


def schema_revision(engine: Engine) -> str | None:
    """The catalogue's Alembic revision; None when it has no schema yet.

    Read with plain SQL from Alembic's own table, so that a catalogue already
    up to date never needs Alembic imported.
    """
    from sqlalchemy import inspect

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def head_revision(url: str = "sqlite://") -> str | None:
    """The revision this code's migrations end at, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def known_revisions() -> set[str]:
    """Every revision this code knows, to tell an older catalogue from a newer one."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}
