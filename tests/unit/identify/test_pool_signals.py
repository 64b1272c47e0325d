"""Identification workers start deaf to Ctrl-C; the parent's own Ctrl-C is delayed, not lost.

Ctrl-C reaches the whole process group. A worker or forkserver still
importing its modules when it lands would print a traceback on the user's
terminal beside the clean "interrupted: ... resume" message.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from preservation.identify.pool import _sigint_ignored_by_children


@pytest.fixture(autouse=True)
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler, whatever an earlier test left behind."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _ignored_by(status: str) -> bool:
    [line] = [line for line in status.splitlines() if line.startswith("SigIgn:")]
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def test_a_process_started_inside_ignores_sigint_from_its_first_instruction() -> None:
    with _sigint_ignored_by_children():
        child = subprocess.run(
            [sys.executable, "-S", "-c", "print(open('/proc/self/status').read())"],
            capture_output=True,
            text=True,
            check=True,
        )
    assert _ignored_by(child.stdout)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_meant_for_the_parent_meanwhile_is_delivered_after() -> None:
    with pytest.raises(KeyboardInterrupt):
        with _sigint_ignored_by_children():
            # Aimed at this thread, as a terminal's Ctrl-C is when no other runs.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
