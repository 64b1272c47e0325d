"""One runner per SIP stage at a time, across every worker and watcher.

Celery's ``acks_late`` and the watcher's stall resubmission both mean a
stage's message can be delivered twice: after a worker died, after a broker
restart, or while a long queue makes a healthy SIP look stalled. Every stage
is idempotent when run *after* another run, but two runs *at the same time*
would rebuild the same staging folder under each other. So a stage runs only
under the SIP's lease: a row with an owner and an expiry, taken in one upsert
and renewed while the stage works (the renewal also keeps the SIP off the
stall list).

Renewals come from one keeper thread per process, not a thread per stage:
a stage of a small SIP takes milliseconds, and must not pay for a thread.
A holder that died leaves its lease to expire. A holder on this very host
whose process is gone is replaced at once, so a worker restarted after a
SIGKILL does not sit out the expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.errors import SIPBusyError

__all__ = ["hold_lease", "hold_sip_lease", "lease_is_live", "lease_owner"]

log = logging.getLogger("preservation.lease")

_HOST = socket.gethostname()
_TOKEN = uuid.uuid4().hex[:8]


def lease_owner() -> str:
    """This process, as a lease holder: ``host:pid:token`` (the token guards pid reuse)."""
    return f"{_HOST}:{os.getpid()}:{_TOKEN}"


def _dead_local_holder(holder: str | None) -> bool:
    """True when ``holder`` is a process of this host that no longer exists."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return holder != lease_owner()  # our pid, another token: a previous life
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_is_live(owner: str | None, expires_at: datetime | None, now: datetime) -> bool:
    """Whether a lease still stands for a runner: unexpired, and not a process known dead.

    A holder killed on this host is dead at once, not when its lease runs out,
    so ``status`` can say "interrupted" without waiting for the expiry.
    """
    if owner is None or expires_at is None:
        return False
    if expires_at.tzinfo is None:  # SQLite hands back naive UTC
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at > now and not _dead_local_holder(owner)


def _take(
    sessions: sessionmaker[Session],
    key: str,
    sip_id: str,
    owner: str,
    seconds: float,
    stage: str | None = None,
) -> bool:
    """One transaction: the lease (if free), the SIP's heartbeat and its running stage."""
    now = datetime.now(UTC)
    until = now + timedelta(seconds=seconds)
    with session_scope(sessions) as s:
        taken = service.take_lease(s, key, owner, until=until, now=now)
        if not taken:
            holder, _ = service.lease_holder(s, key)
            if _dead_local_holder(holder):
                taken = service.take_lease(s, key, owner, until=until, now=now, replace=holder)
        if taken:
            service.touch_sip(s, sip_id, now, stage)
        return taken


@dataclass
class _Held:
    sessions: sessionmaker[Session]
    key: str
    sip_id: str
    owner: str
    seconds: float
    renew_at: float  # time.monotonic()


class _Keeper:
    """The process's one renewal thread, started on first use (and again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._held: dict[str, _Held] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, held: _Held) -> None:
        with self._lock:
            self._held[held.key] = held
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            self._lock.notify()

    def remove(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [h for h in self._held.values() if h.renew_at <= now]
                upcoming = [h.renew_at for h in self._held.values() if h.renew_at > now]
                if not due:
                    self._lock.wait(timeout=min(upcoming, default=now + 60) - now)
                    continue
            for held in due:
                try:
                    if not _take(held.sessions, held.key, held.sip_id, held.owner, held.seconds):
                        log.warning(
                            "SIP %s: lease %s lost to another runner", held.sip_id, held.key
                        )
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                    log.exception("SIP %s: lease renewal failed", held.sip_id)
                held.renew_at = time.monotonic() + held.seconds / 3


_keeper = _Keeper()


@contextmanager
def hold_sip_lease(
    sessions: sessionmaker[Session],
    sip_id: str,
    *,
    seconds: float,
    part: str = "",
    stage: str | None = None,
) -> Iterator[None]:
    """Run the body under the SIP's lease, renewed every third of ``seconds``.

    ``part`` names work that may run beside the SIP's other stages (one
    site's tape write: ``store:site-a``) and so gets a lease of its own;
    ``stage`` is recorded on the SIP as the stage at work. Raises
    :class:`SIPBusyError` (transient: Celery retries it) when another live
    runner holds the lease.
    """
    owner = lease_owner()
    key = f"sip:{sip_id}" + (f":{part}" if part else "")
    if not _take(sessions, key, sip_id, owner, seconds, stage):
        with session_scope(sessions) as s:
            holder, until = service.lease_holder(s, key)
        raise SIPBusyError(
            f"SIP {sip_id} is being worked on by {holder} (lease {key} until {until}); "
            "a second runner waits rather than run beside it",
            sip_id=sip_id,
        )
    _keeper.add(_Held(sessions, key, sip_id, owner, seconds, time.monotonic() + seconds / 3))
    try:
        yield
    finally:
        _keeper.remove(key)
        with session_scope(sessions) as s:
            service.drop_lease(s, key, owner)


@contextmanager
def hold_lease(
    sessions: sessionmaker[Session], key: str, *, seconds: float, busy: str
) -> Iterator[None]:
    """Run the body as the one holder of ``key`` across every process and host, or refuse.

    For work that must never run twice at once but belongs to no SIP (the
    journal sync, evidence renewal). Not renewed: ``seconds`` is the longest
    the work may take; a holder that died on this host is replaced at once,
    one on another host when its lease expires. Raises ConflictError with
    ``busy`` when a live holder has it.
    """
    from preservation.errors import ConflictError

    owner = lease_owner()
    now = datetime.now(UTC)
    until = now + timedelta(seconds=seconds)
    with session_scope(sessions) as s:
        taken = service.take_lease(s, key, owner, until=until, now=now)
        if not taken:
            holder, expires = service.lease_holder(s, key)
            if _dead_local_holder(holder):
                taken = service.take_lease(s, key, owner, until=until, now=now, replace=holder)
    if not taken:
        raise ConflictError(f"{busy} (held by {holder} until {expires})", rule="one-at-a-time")
    try:
        yield
    finally:
        with session_scope(sessions) as s:
            service.drop_lease(s, key, owner)
