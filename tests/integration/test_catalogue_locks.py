"""Row locks on PostgreSQL, as a flood of ingests meets them.

* The tenant's event chain is locked ``FOR NO KEY UPDATE``: a transaction
  appending an event must not hold up every other transaction that writes a
  row of the same tenant (a new SIP, a stage heartbeat), whose foreign-key
  check takes ``FOR KEY SHARE`` on the tenant. A plain ``FOR UPDATE`` made
  two tape workers on one SIP deadlock, and the SIP stuck at ``packaged``.
* A deadlock PostgreSQL breaks anyway is a transient error, which Celery
  retries, not a failed stage.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import text

from preservation.catalog import make_engine, make_sessionmaker, service, session_scope
from preservation.errors import CatalogueContentionError, TransientError


def test_an_event_being_appended_does_not_block_other_writes_of_its_tenant(
    fresh_pg: str,
) -> None:
    engine = make_engine(fresh_pg)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as s:
            sip = service.create_sip(s, tenant_id="flood", name="first", source_path="/in/first")
            first = sip.id
        with session_scope(sessions) as appending:
            service.record_event(appending, tenant_id="flood", type="ingestion", outcome="success")
            # Meanwhile, another worker writes rows of the same tenant. Before, its
            # foreign-key check waited for the chain's lock: here, the lock timeout.
            with session_scope(sessions) as other:
                other.execute(text("SET LOCAL lock_timeout = '2s'"))
                service.create_sip(other, tenant_id="flood", name="second", source_path="/in/2")
                service.touch_sip(other, first, datetime.now(UTC), "store:site-b (running)")
    finally:
        engine.dispose()


def test_a_deadlock_is_a_transient_error_that_is_retried(fresh_pg: str) -> None:
    engine = make_engine(fresh_pg)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as s:
            s.execute(text("CREATE TABLE deadlock_probe (id int PRIMARY KEY, n int)"))
            s.execute(text("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)"))
        both_hold_one = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def take(first: int, second: int) -> None:
            try:
                with session_scope(sessions) as s:
                    s.execute(
                        text("UPDATE deadlock_probe SET n = n + 1 WHERE id = :i"), {"i": first}
                    )
                    both_hold_one.wait()
                    s.execute(
                        text("UPDATE deadlock_probe SET n = n + 1 WHERE id = :i"), {"i": second}
                    )
            except BaseException as err:  # noqa: BLE001 - asserted below
                errors.append(err)

        workers = [threading.Thread(target=take, args=order) for order in ((1, 2), (2, 1))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert len(errors) == 1, errors  # PostgreSQL aborts one of the two, the other commits
        [err] = errors
        assert isinstance(err, CatalogueContentionError), repr(err)
        assert isinstance(err, TransientError)  # workers.tasks retries TransientError
        assert err.context["sqlstate"] == "40P01"
        assert "deadlock" in err.message
    finally:
        engine.dispose()
