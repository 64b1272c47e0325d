"""The wiring every entry point builds once: settings, catalogue sessions, clock.

The CLI, the API factory and the Celery worker each build one ``Context`` from
settings; stage functions receive it instead of reaching for globals, so tests
build their own with a private data root.

Opening a context is also where a data root that cannot be used as it is gets
refused (:class:`~preservation.errors.DataRootError`), before any work starts:
a file where the folder should be, a folder that cannot be made, a catalogue
that is no database. A data root on read-only media is opened read-only, so an
archive copy can still be listed and recovered from without writing a byte.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from preservation.catalog import make_engine, make_sessionmaker, upgrade
from preservation.catalog.database import (
    HEAD_REVISION,
    head_revision,
    known_revisions,
    schema_revision,
    sqlite_path,
)
from preservation.config import Settings
from preservation.errors import DataRootError

__all__ = ["Context", "check_data_root", "open_context"]

#: What a read-only data root still serves, for the messages that refuse the rest.
READ_ONLY_COMMANDS = "status, show, tape ls, tape show, recover"


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Storage objects (tape libraries per site) are built on first use and cached here.
    cache: dict[str, Any] = field(default_factory=dict)
    # Nothing under the data root may be written: catalogue, staging, tapes, locks.
    read_only: bool = False

    def close(self) -> None:
        """Stop helpers and end tape batches: index partitions are written at unmount."""
        pool = self.cache.pop("identify_pool", None)
        if pool is not None:
            pool.close()
        tools = self.cache.pop("characterisation_tools", None)
        if tools is not None:
            tools.close()  # a running ExifTool is told to stop, not left behind
        if self.cache.get("storage.sites"):
            from preservation.storage.service import release_drives

            release_drives(self)
        self.engine.dispose()


def open_context(
    settings: Settings | None = None, *, migrate: bool = True, read_only: bool | None = None
) -> Context:
    """Check and prepare the data root, bring the catalogue up to date, return the wiring.

    ``read_only``: True opens the data root without writing anything (no
    folders made, no migration, SQLite opened read-only); False insists on
    writing and refuses a read-only root; None (the default) writes where it
    can and falls back to read-only when the data root is on read-only media.
    Everything that makes the data root or catalogue unusable is raised here,
    as :class:`DataRootError`, so no caller starts work it cannot finish.
    """
    settings = settings or Settings()
    read_only = _prepare_root(settings, read_only)
    url = settings.catalog_url
    engine = _catalogue_engine(settings, read_only)
    try:
        revision = schema_revision(engine)
        if revision == HEAD_REVISION:
            pass  # up to date: nothing to check, nothing to migrate
        elif read_only:
            _check_schema_for_reading(settings, engine)
        else:
            if sqlite_path(url) is not None:
                _check_schema_known(settings, engine)
            if migrate:
                upgrade(url)
    except BaseException:
        engine.dispose()
        raise
    return Context(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        read_only=read_only,
    )


def check_data_root(settings: Settings, *, read_only: bool | None = None) -> bool:
    """Refuse an unusable data root now, as :func:`open_context` would; True if read-only.

    For callers that must report the problem before their own work begins
    (the CLI checks before a command prints anything).
    """
    ctx = open_context(settings, migrate=False, read_only=read_only)
    ctx.close()
    return ctx.read_only


# -- the data root ------------------------------------------------------------------------------


def _prepare_root(settings: Settings, read_only: bool | None) -> bool:
    """Make the data root's folders when writing; return whether to open it read-only."""
    home = settings.home_dir
    if home.exists() or home.is_symlink():
        if not home.is_dir():
            raise DataRootError(
                f"the data root {home} (PRESERVATION_HOME) is a file, not a folder: "
                "set PRESERVATION_HOME to a folder, or move the file away",
                path=home,
            )
    elif read_only:
        raise DataRootError(
            f"there is no data root at {home} to read: set PRESERVATION_HOME to the "
            "archive's data root folder",
            path=home,
        )
    else:
        _make_dirs(settings)
        return False
    writable = _root_writable(settings)
    if read_only is False and not writable:
        raise DataRootError(
            f"the data root {home} is read-only: this command writes (catalogue, staging, "
            f"tapes), so run it on a writable data root; a read-only one serves "
            f"{READ_ONLY_COMMANDS}",
            path=home,
        )
    if read_only or not writable:
        return True
    _make_dirs(settings)
    return False


def _root_writable(settings: Settings) -> bool:
    """Whether this process may write the data root (read-only media and immutable files say no).

    ``os.access`` asks the kernel, which refuses root too on a read-only mount
    or an immutable folder; permission bits alone never stop root.
    """
    folders = [settings.home_dir, settings.tape_dir]
    catalogue = sqlite_path(settings.catalog_url)
    if catalogue is not None:
        folders.append(catalogue.parent)
    for folder in folders:
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return False
    return not (catalogue is not None and catalogue.exists() and not os.access(catalogue, os.W_OK))


def _make_dirs(settings: Settings) -> None:
    home = settings.home_dir
    try:
        settings.ensure_dirs()
    except OSError as err:
        raise DataRootError(_cannot_create(home, err), path=home) from err


def _cannot_create(home: Path, err: OSError) -> str:
    where = Path(err.filename) if err.filename else home
    blocker = next((p for p in (where, *where.parents) if p.exists() or p.is_symlink()), None)
    if isinstance(err, FileExistsError | NotADirectoryError) and blocker is not None:
        if not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder"
        else:
            reason = f"{where} exists and is not a folder"
    elif err.errno == errno.EROFS:
        reason = f"{blocker or where} is on read-only media"
    elif isinstance(err, PermissionError):
        reason = f"permission denied on {where}"
    else:
        reason = f"{err.strerror or err} ({where})"
    what = "create the data root" if where == home or where in home.parents else "prepare"
    return (
        f"cannot {what} {home}: {reason}; set PRESERVATION_HOME to a folder this user "
        "may create and write, or create that folder first"
    )


# -- the catalogue -------------------------------------------------------------------------------


def _catalogue_engine(settings: Settings, read_only: bool) -> Engine:
    """The catalogue's engine, probed once so a file that is no database fails here."""
    url = settings.catalog_url
    path = sqlite_path(url)
    if not read_only or path is None:
        engine = make_engine(url)
    else:
        if not path.is_file():
            raise DataRootError(
                f"no catalogue at {path} to read, and the data root {settings.home_dir} "
                f"{_why_read_only(settings)}: point PRESERVATION_HOME at an archive's data root",
                path=settings.home_dir,
            )
        engine = make_engine(url, read_only=True, immutable=_needs_immutable(path))
    if path is not None:
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
        except BaseException:
            engine.dispose()
            raise
    return engine


def _why_read_only(settings: Settings) -> str:
    return "was opened read-only" if _root_writable(settings) else "is read-only"


def _needs_immutable(path: Path) -> bool:
    """Whether SQLite must read without locks or journal: its folder cannot hold them.

    A write-ahead log left by a writer that did not close holds committed
    transactions; it can be read in place only beside its shared-memory file,
    and ``immutable`` would silently ignore it, so that case is refused.
    """
    if os.access(path.parent, os.W_OK | os.X_OK):
        return False
    wal = path.with_name(path.name + "-wal")
    if not (wal.is_file() and wal.stat().st_size > 0):
        return True
    if path.with_name(path.name + "-shm").is_file():
        return False
    raise DataRootError(
        f"the catalogue {path} has a write-ahead log ({wal.name}) that was never folded in, "
        "and its folder is read-only, so SQLite cannot read it: open the data root once "
        "on writable media (any command does), then copy it to the read-only media again",
        path=path,
    )


def _check_schema_known(settings: Settings, engine: Engine) -> None:
    """Refuse a catalogue written by a newer version before a migration trips over it."""
    revision = schema_revision(engine)
    if revision is not None and revision not in known_revisions():
        raise DataRootError(_newer(settings, revision), path=sqlite_path(settings.catalog_url))


def _check_schema_for_reading(settings: Settings, engine: Engine) -> None:
    """Without a migration, the schema must already be the one this code reads."""
    revision = schema_revision(engine)
    head = head_revision()
    if revision == head:
        return
    path = sqlite_path(settings.catalog_url) or settings.catalog_url
    if revision is not None and revision not in known_revisions():
        raise DataRootError(_newer(settings, revision), path=path)
    state = "has no schema" if revision is None else f"is at schema revision {revision}"
    raise DataRootError(
        f"the catalogue {path} {state}, older than this version's {head}, and the data root "
        f"{settings.home_dir} {_why_read_only(settings)}, so it cannot be upgraded: run "
        "`preservation db upgrade` on a writable copy first",
        path=path,
    )


def _newer(settings: Settings, revision: str) -> str:
    path = sqlite_path(settings.catalog_url) or "the catalogue"
    return (
        f"the catalogue {path} is at schema revision {revision}, which this version of "
        "preservation does not know: it was written by a newer version; upgrade preservation"
    )
