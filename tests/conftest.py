"""Shared fixtures: real services, each test run on its own database.

PostgreSQL gets a throwaway database per run (created here, dropped after);
Redis gets its own database number and key prefix. When a service is missing,
tests skip on a developer's machine but FAIL under CI (``CI=true``): a green CI
run must mean the integration tests really ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preservation.catalog import make_engine, make_sessionmaker, upgrade
from preservation.config import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get(
    "PRESERVATION_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("PRESERVATION_TEST_REDIS", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "bags"


def service_missing(what: str, err: Exception) -> None:
    message = f"{what} is not reachable: {err}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: integration tests must run, not skip)")
    pytest.skip(message)


def require_program(name: str) -> str:
    """The program's path; not on PATH, the test skips locally and FAILS under CI."""
    import shutil

    found = shutil.which(name)
    if found is None:
        service_missing(name, FileNotFoundError(f"{name} is not on PATH"))
    assert found is not None
    return found


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards."""
    import psycopg

    name = f"preservation_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as err:  # noqa: BLE001 - any connection failure means "missing"
        service_missing("PostgreSQL at " + PG_ADMIN_URL, err)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MakeDatabase = Callable[[], str]


@pytest.fixture(scope="module")
def pg_database() -> Iterator[MakeDatabase]:
    """A maker of throwaway PostgreSQL databases, all dropped when the module is done.

    For tests whose data is a database of its own (SIARD sources and load
    targets), apart from the catalogue's ``pg_url``: each call gives a new,
    empty database URL (``postgresql+psycopg://``).
    """
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=5).close()
    except Exception as err:  # noqa: BLE001 - any connection failure means "missing"
        service_missing("PostgreSQL at " + PG_ADMIN_URL, err)
    made: list[str] = []

    def make() -> str:
        name = f"preservation_db_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        return f"{base}/{name}"

    yield make
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The catalogue on both backends; PostgreSQL gets a schema reset per test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        upgrade(url)
        yield url
        return
    url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    upgrade(url)
    yield url


@pytest.fixture
def session_factory(catalog_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(catalog_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as err:  # noqa: BLE001
        service_missing("Redis at " + REDIS_TEST_URL, err)
    # No FLUSHDB: another test run may share this database; every user of it
    # works under its own key prefix and deletes its own keys.
    yield REDIS_TEST_URL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded default under a private data root."""
    s = Settings(home=tmp_path / "var", quiescent_seconds=0.2)
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session", autouse=True)
def virus_scanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """Every ingest in the tests is scanned by a real clamd, on signatures made here.

    The socket goes into the environment, so every ``Settings()`` (and every
    CLI process or Celery worker a test starts) scans through it. Without
    ClamAV a developer's run turns scanning off; under CI it fails, as for any
    other real service the tests need.
    """
    from tests.scanning import clamd_available, make_signature_db, running_clamd

    saved = {k: os.environ.get(k) for k in ("PRESERVATION_CLAMD_SOCKET", "PRESERVATION_VIRUS_SCAN")}
    if not clamd_available():
        if IN_CI:
            pytest.fail("clamd (Debian: clamav-daemon) is not installed (CI=true: it must be)")
        os.environ["PRESERVATION_VIRUS_SCAN"] = "false"
        yield None
    else:
        work = tmp_path_factory.mktemp("clamd")
        db = make_signature_db(work / "db")
        with running_clamd(db, work, stream_max_length="100M") as socket_path:
            os.environ["PRESERVATION_CLAMD_SOCKET"] = socket_path
            yield socket_path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
