"""One runner per SIP stage at a time, across every worker and watcher.

Celery's ``acks_late`` and the watcher's stall resubmission both mean a
stage's message can be delivered twice: after a worker died, after a broker
restart, or while a long queue makes a healthy SIP look stalled. Every stage
is idempotent when run *after* another run, but two runs *at the same time*
would rebuild the same staging folder under each other. So a stage runs only
under the SIP's lease: a row-level claim with an expiry, renewed by a
heartbeat thread while the stage works (and that renewal also keeps the SIP
off the stall list).

A holder that died leaves its lease to expire. A holder on this very host
whose process is gone is replaced at once, so a worker restarted after a
SIGKILL does not sit out the expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.errors import SIPBusyError

__all__ = ["hold_sip_lease", "lease_owner"]

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


def _take(
    sessions: sessionmaker[Session], key: str, sip_id: str, owner: str, seconds: float
) -> bool:
    now = datetime.now(UTC)
    with session_scope(sessions) as s:
        holder, _ = service.lease_holder(s, key)
        replace = holder if _dead_local_holder(holder) else None
        taken = service.take_lease(
            s, key, owner, until=now + timedelta(seconds=seconds), now=now, replace=replace
        )
        if taken:
            service.touch_sip(s, sip_id, now)
        return taken


@contextmanager
def hold_sip_lease(
    sessions: sessionmaker[Session], sip_id: str, *, seconds: float, part: str = ""
) -> Iterator[None]:
    """Run the body under the SIP's lease, renewed every third of ``seconds``.

    ``part`` names work that may run beside the SIP's other stages (one
    site's tape write: ``store:site-a``) and so gets a lease of its own.
    Raises :class:`SIPBusyError` (transient: Celery retries it) when another
    live runner holds the lease.
    """
    owner = lease_owner()
    key = f"sip:{sip_id}" + (f":{part}" if part else "")
    if not _take(sessions, key, sip_id, owner, seconds):
        with session_scope(sessions) as s:
            holder, until = service.lease_holder(s, key)
        raise SIPBusyError(
            f"SIP {sip_id} is being worked on by {holder} (lease {key} until {until}); "
            "a second runner waits rather than run beside it",
            sip_id=sip_id,
        )
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not _take(sessions, key, sip_id, owner, seconds):
                    log.warning("SIP %s: lease %s lost to another runner", sip_id, key)
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                log.exception("SIP %s: lease renewal failed", sip_id)

    beat = threading.Thread(target=renew, name=f"lease-{sip_id[:8]}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with session_scope(sessions) as s:
            service.drop_lease(s, key, owner)
