"""Ingests side by side on PostgreSQL, as workers run them.

* Two copies of a bag validated at once: the second sees the first. The
  duplicate check and the file rows it compares against are written in one
  transaction that holds the tenant's row, so a second validate of the same
  payload waits for the first to commit instead of finding it absent.
* Two first ingests of a new tenant at once: both get the tenant's row; the
  second does not fail on its key.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from preservation import ingest
from preservation.catalog import SIPState, service, session_scope
from preservation.config import Settings
from preservation.context import open_context

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"


def _payload_rows(bag: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for f in sorted((bag / "data").rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            rows.append(
                {
                    "original_name": str(f.relative_to(bag / "data")),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "sha512": hashlib.sha512(data).hexdigest(),
                }
            )
    return rows


def _waiting_on_a_lock(pg_url: str) -> bool:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return bool(row and row[0])


def test_a_second_copy_validated_while_the_first_is_staging_is_a_duplicate(
    tmp_path: Path, fresh_pg: str
) -> None:
    settings = Settings(home=tmp_path / "var", database_url=fresh_pg, quiescent_seconds=0.2)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        copy = tmp_path / "bags" / "sample-copy"
        shutil.copytree(SAMPLE, copy)
        first = ingest.receive(ctx, SAMPLE, tenant="museum")
        second = ingest.receive(ctx, copy, tenant="museum")
        rows = _payload_rows(SAMPLE)
        outcome: dict[str, BaseException] = {}

        def validate_second() -> None:
            try:
                ingest.run_stage(ctx, "validate", second)
            except BaseException as err:  # noqa: BLE001 - reported by the test below
                outcome["error"] = err

        # The first SIP is in the middle of recording what it staged.
        with session_scope(ctx.sessions) as s:
            service.lock_tenant(s, "museum")
            service.add_staged_files(s, first, rows)
            service.get_sip(s, first).file_count = len(rows)
            worker = threading.Thread(target=validate_second)
            worker.start()
            deadline = time.monotonic() + 60
            while not _waiting_on_a_lock(fresh_pg):
                if not worker.is_alive() or time.monotonic() > deadline:
                    pytest.fail("the second validate ran its duplicate check without waiting")
                time.sleep(0.05)
        worker.join(60)
        assert "error" not in outcome, outcome
        with session_scope(ctx.sessions) as s:
            assert service.get_sip(s, second).state is SIPState.STAGED
            [event] = [e for e in service.list_events(s, sip_id=second) if e.type == "validation"]
            assert event.outcome == "warning"
            assert event.objects["duplicate_of"] == [first]
    finally:
        ctx.close()


def test_two_first_ingests_of_a_tenant_at_once_both_get_its_row(
    tmp_path: Path, fresh_pg: str
) -> None:
    settings = Settings(home=tmp_path / "var", database_url=fresh_pg)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        outcome: dict[str, object] = {}

        def second_writer() -> None:
            try:
                with session_scope(ctx.sessions) as s:
                    outcome["name"] = service.ensure_tenant(s, "newcomer", "Newcomer").name
                    service.ensure_agent(s, "org:newcomer", name="Newcomer", type="organization")
            except BaseException as err:  # noqa: BLE001 - reported by the test below
                outcome["error"] = err

        with session_scope(ctx.sessions) as s:
            service.ensure_tenant(s, "newcomer", "Newcomer")
            service.ensure_agent(s, "org:newcomer", name="Newcomer", type="organization")
            s.flush()
            worker = threading.Thread(target=second_writer)
            worker.start()
            deadline = time.monotonic() + 60
            while not _waiting_on_a_lock(fresh_pg):
                if not worker.is_alive() or time.monotonic() > deadline:
                    break  # it did not wait: it must not have failed either
                time.sleep(0.05)
        worker.join(60)
        assert "error" not in outcome, outcome
        assert outcome["name"] == "Newcomer"
    finally:
        ctx.close()
