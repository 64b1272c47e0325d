"""The wiring every entry point builds once: settings, catalogue sessions, clock.

The CLI, the API factory and the Celery worker each build one ``Context`` from
settings; stage functions receive it instead of reaching for globals, so tests
build their own with a private data root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from preservation.catalog import make_engine, make_sessionmaker, upgrade
from preservation.config import Settings

__all__ = ["Context", "open_context"]


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Storage objects (tape libraries per site) are built on first use and cached here.
    cache: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Stop helpers and end tape batches: index partitions are written at unmount."""
        pool = self.cache.pop("identify_pool", None)
        if pool is not None:
            pool.close()
        if self.cache.get("storage.sites"):
            from preservation.storage.service import release_drives

            release_drives(self)
        self.engine.dispose()


def open_context(settings: Settings | None = None, *, migrate: bool = True) -> Context:
    """Make the data root, bring the catalogue schema up to date, return the wiring."""
    settings = settings or Settings()
    settings.ensure_dirs()
    if migrate:
        upgrade(settings.catalog_url)
    engine = make_engine(settings.catalog_url)
    return Context(settings=settings, engine=engine, sessions=make_sessionmaker(engine))
