"""``preservation api`` as a benchmark's child process, and what the kernel says about its memory.

The API benchmarks measure the service as deployed: the ``preservation api``
command (uvicorn, one process), not an app object in the benchmark's own
interpreter, so that the client's work and the server's do not share a GIL
and the server's RSS is its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ApiServer", "cpu_seconds", "free_port", "reset_peak_rss", "rss_kib"]


def free_port() -> int:
    """A loopback port nobody listens on now (the child binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """The resident set now (``VmRSS``), KiB."""
    return _status(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The resident set's high-water mark (``VmHWM``) since start or the last reset, KiB."""
    return _status(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5, Linux 4.0+); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ApiServer:
    """``preservation api`` on a free loopback port, its log (access log too) in a file."""

    def __init__(self, env: dict[str, str], logfile: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = logfile.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "preservation.cli", "api", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the API exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the API did not answer within {timeout:g} s; see {self.log.name}")

    def stop(self, *, kill: bool = False) -> None:
        """Graceful (SIGINT, uvicorn's shutdown), or SIGKILL when its background work is moot."""
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
