"""Stage leases: one runner per SIP stage, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from preservation.catalog import StageLease, service, session_scope
from preservation.errors import SIPBusyError
from preservation.lease import hold_sip_lease, lease_owner


def _sip(session_factory) -> str:  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        return service.create_sip(s, tenant_id="t", name="bag", source_path="/x").id


def test_one_holder_at_a_time_until_expiry(session_factory) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=60)
    with session_scope(session_factory) as s:
        assert service.take_lease(s, "k", "a", until=soon, now=now)
    with session_scope(session_factory) as s:
        assert not service.take_lease(s, "k", "b", until=soon, now=now)
        assert service.take_lease(s, "k", "a", until=soon, now=now)  # renewal
        assert service.lease_holder(s, "k")[0] == "a"
    later = soon + timedelta(seconds=1)
    with session_scope(session_factory) as s:
        assert service.take_lease(s, "k", "b", until=later + timedelta(60), now=later)
    with session_scope(session_factory) as s:
        service.drop_lease(s, "k", "a")  # not a's any more: nothing happens
        assert service.lease_holder(s, "k")[0] == "b"
        service.drop_lease(s, "k", "b")
        assert service.lease_holder(s, "k") == (None, None)


def test_a_holder_known_dead_is_replaced(session_factory) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=60)
    with session_scope(session_factory) as s:
        assert service.take_lease(s, "k", "dead", until=soon, now=now)
    with session_scope(session_factory) as s:
        assert service.take_lease(s, "k", "b", until=soon, now=now, replace="dead")


def test_second_runner_of_a_stage_waits(session_factory) -> None:  # type: ignore[no-untyped-def]
    sip_id = _sip(session_factory)
    with hold_sip_lease(session_factory, sip_id, seconds=30):
        # Another process's lease is simulated by renaming ours in the table.
        with session_scope(session_factory) as s:
            row = s.get(StageLease, f"sip:{sip_id}")
            row.owner = "elsewhere.example:1:x"
        with pytest.raises(SIPBusyError, match=sip_id):
            with hold_sip_lease(session_factory, sip_id, seconds=30):
                pytest.fail("ran beside the holder")
        # One site's write has its own lease and may run beside it.
        with hold_sip_lease(session_factory, sip_id, seconds=30, part="store:site-a"):
            pass


def test_dead_local_process_lease_is_taken_over_at_once(session_factory) -> None:  # type: ignore[no-untyped-def]
    sip_id = _sip(session_factory)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = lease_owner().split(":", 1)[0]
    dead = f"{host}:{done.stdout.strip()}:deadbeef"
    now = datetime.now(UTC)
    with session_scope(session_factory) as s:
        assert service.take_lease(s, f"sip:{sip_id}", dead, until=now + timedelta(hours=1), now=now)
    with hold_sip_lease(session_factory, sip_id, seconds=30):
        with session_scope(session_factory) as s:
            assert service.lease_holder(s, f"sip:{sip_id}")[0] == lease_owner()


def test_heartbeat_renews_the_lease_and_the_sip(session_factory) -> None:  # type: ignore[no-untyped-def]
    sip_id = _sip(session_factory)
    with session_scope(session_factory) as s:
        before = service.get_sip(s, sip_id).updated_at
    with hold_sip_lease(session_factory, sip_id, seconds=0.6):
        with session_scope(session_factory) as s:
            first = service.lease_holder(s, f"sip:{sip_id}")[1]
        time.sleep(1.0)
        with session_scope(session_factory) as s:
            renewed = service.lease_holder(s, f"sip:{sip_id}")[1]
            touched = service.get_sip(s, sip_id).updated_at
    assert first is not None and renewed is not None and renewed > first
    assert touched > before
    with session_scope(session_factory) as s:
        assert service.lease_holder(s, f"sip:{sip_id}") == (None, None)


def test_racing_runners_never_both_hold(session_factory) -> None:  # type: ignore[no-untyped-def]
    wins: list[str] = []
    barrier = threading.Barrier(4)

    def race(name: str) -> None:
        barrier.wait()
        now = datetime.now(UTC)
        try:
            with session_scope(session_factory) as s:
                if service.take_lease(s, "race", name, until=now + timedelta(60), now=now):
                    wins.append(name)
        except Exception:  # noqa: BLE001 - a serialisation failure is a loss, not a win
            pass

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_a_remote_holder_is_live_until_its_lease_expires() -> None:
    """Another host's pid cannot be asked: only the expiry tells its runner died."""
    from preservation.lease import lease_is_live

    now = datetime.now(UTC)
    remote = "another-host.example:12345:abcdef01"
    assert lease_is_live(remote, now + timedelta(seconds=30), now)
    assert not lease_is_live(remote, now - timedelta(seconds=1), now)
    assert not lease_is_live(remote, (now - timedelta(seconds=1)).replace(tzinfo=None), now)
    assert not lease_is_live(None, now + timedelta(seconds=30), now)
