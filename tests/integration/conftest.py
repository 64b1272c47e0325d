"""Fixtures for the distributed tests: a private data root, PostgreSQL, Redis, workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from preservation.catalog import make_engine, upgrade
from workers.localcluster import Cluster


@pytest.fixture
def fresh_pg(pg_url: str) -> str:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    upgrade(pg_url)
    return pg_url


@pytest.fixture
def cluster(tmp_path: Path, fresh_pg: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(home=tmp_path / "home", database_url=fresh_pg, broker_url=redis_url)
    try:
        yield c
    finally:
        c.stop()
