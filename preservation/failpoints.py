"""Named crash points, for proving that every stage survives a SIGKILL.

A failpoint does nothing unless ``PRESERVATION_FAILPOINTS`` names it (comma
separated). When armed, the first process to reach it kills its whole process
group with SIGKILL (a Celery worker and its pool, with no chance to clean up),
and leaves a marker in ``PRESERVATION_FAILPOINT_DIR`` so that the restarted
worker passes the same point. Production never sets the variable; the crash
tests in ``tests/integration/test_worker_crashes.py`` do.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["failpoint"]


def failpoint(name: str) -> None:
    armed = os.environ.get("PRESERVATION_FAILPOINTS")
    if not armed or name not in armed.split(","):
        return
    marker = Path(os.environ.get("PRESERVATION_FAILPOINT_DIR", ".")) / f"{name}.fired"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.killpg(os.getpgid(0), signal.SIGKILL)
