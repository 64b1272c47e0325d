"""A real ClamAV for tests, with signatures made here: there is no network for freshclam.

``make_signature_db`` writes a tiny database (three signatures: a marker
string, one file by its MD5, and the EICAR test string, which ClamAV itself does
not know without the official release). ``running_clamd`` starts the real
clamd on it, on a private socket, in about a tenth of a second. Tests that need
ClamAV call ``require_clamd``/``require_clamscan``: they skip on a developer's
machine without it and FAIL under CI, like every other real service here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import service_missing

__all__ = [
    "EICAR",
    "EICAR_SIGNATURE",
    "HASHED",
    "HASH_SIGNATURE",
    "MARKER",
    "MARKER_SIGNATURE",
    "SAMPLES",
    "SAMPLE_DETECTIONS",
    "clamd_available",
    "clamd_program",
    "clamscan_available",
    "free_port",
    "make_signature_db",
    "require_clamd",
    "require_clamscan",
    "running_clamd",
    "write_files",
]

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
"""The anti-virus test file (68 bytes); harmless, and detected by every engine that knows it."""

MARKER = b"PRESERVATION-SCAN-TEST-MARKER-5d1c0e9a"
"""Any file containing these bytes is detected (a body signature, .ndb)."""

HASHED = b"This exact file, and only it, is flagged by its MD5 (.hdb).\n"
"""A file with exactly this content is detected; one byte more and it is clean."""

# ClamAV appends ".UNOFFICIAL" to the names of signatures it did not get from Cisco.
MARKER_SIGNATURE = "Preservation.Test.Marker.UNOFFICIAL"
EICAR_SIGNATURE = "Preservation.Test.EICAR.UNOFFICIAL"
HASH_SIGNATURE = "Preservation.Test.Hash.UNOFFICIAL"

SIGNATURES = 3

SAMPLES = {
    "clean.txt": b"nothing to see",
    "empty": b"",
    "eicar.com": EICAR,
    "letter.txt": b"Dear archivist, " + MARKER + b" regards",
    "hashed.bin": HASHED,
    "almost-hashed.bin": HASHED + b"!",
}
"""One batch every scanner must judge alike: three files detected, three clean."""

SAMPLE_DETECTIONS = {
    ("eicar.com", EICAR_SIGNATURE),
    ("letter.txt", MARKER_SIGNATURE),
    ("hashed.bin", HASH_SIGNATURE),
}


def write_files(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Each named file with its content, in ``folder``; their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in files}


def make_signature_db(folder: Path) -> Path:
    """Write the test signatures into ``folder`` (made if missing) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = MARKER_SIGNATURE.removesuffix(".UNOFFICIAL")
    eicar = EICAR_SIGNATURE.removesuffix(".UNOFFICIAL")
    (folder / "preservation-test.ndb").write_text(
        f"{name}:0:*:{MARKER.hex()}\n{eicar}:0:*:{EICAR.hex()}\n", encoding="ascii"
    )
    md5 = hashlib.md5(HASHED).hexdigest()
    (folder / "preservation-test.hdb").write_text(
        f"{md5}:{len(HASHED)}:{HASH_SIGNATURE.removesuffix('.UNOFFICIAL')}\n", encoding="ascii"
    )
    return folder


def clamd_program() -> str | None:
    """clamd lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/usr/local/sbin")


def clamd_available() -> bool:
    return clamd_program() is not None


def clamscan_available() -> bool:
    return shutil.which("clamscan") is not None


def require_clamd() -> str:
    """clamd's program, or skip (locally) / fail (CI) the test."""
    program = clamd_program()
    if program is None:
        service_missing("clamd", FileNotFoundError("not installed (apt install clamav-daemon)"))
    assert program is not None
    return program


def require_clamscan() -> None:
    if not clamscan_available():
        service_missing("clamscan", FileNotFoundError("not installed (apt install clamav)"))


def free_port() -> int:
    """A TCP port nobody listens on right now (another process could still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(address: str | tuple[str, int]) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(address)
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_clamd(
    db: Path,
    workdir: Path,
    *,
    stream_max_length: str = "1M",
    tcp_port: int | None = None,
    start_timeout: float = 60.0,
) -> Iterator[str]:
    """The real clamd on ``db``, listening on a unix socket; yields the socket's path.

    ``stream_max_length`` is small so a test can pass it with a modest file;
    ``tcp_port`` also opens 127.0.0.1:<port> (for ``tcp://``). AlertExceedsMax is
    on, as the pipeline's clamd should have it. No ``User`` line: clamd runs as
    whoever runs the tests (as root it does not drop privileges, and starts).
    """
    program = require_clamd()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    sock = workdir / "clamd.sock"
    short: str | None = None
    if len(os.fsencode(sock)) >= 100:  # sun_path holds 108 bytes
        short = tempfile.mkdtemp(prefix="clamd-", dir="/tmp")
        sock = Path(short) / "s"
    log = workdir / "clamd.log"
    conf = workdir / "clamd.conf"
    lines = [
        f"LocalSocket {sock}",
        "FixStaleSocket yes",
        "Foreground yes",
        f"DatabaseDirectory {db}",
        f"LogFile {log}",
        "LogTime yes",
        f"PidFile {workdir / 'clamd.pid'}",
        f"TemporaryDirectory {workdir / 'tmp'}",
        f"StreamMaxLength {stream_max_length}",
        "AlertExceedsMax yes",
        "MaxThreads 4",
        "SelfCheck 3600",
    ]
    if tcp_port is not None:
        lines += [f"TCPSocket {tcp_port}", "TCPAddr 127.0.0.1"]
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = workdir / "clamd.out"
    with output.open("wb") as out:
        process = subprocess.Popen([program, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while not _pong(str(sock)):
            if process.poll() is not None or time.monotonic() > deadline:
                state = (
                    f"exited {process.returncode}"
                    if process.poll() is not None
                    else f"no PONG in {start_timeout} s"
                )
                raise RuntimeError(
                    f"clamd did not start ({state}); {conf}:\n{conf.read_text()}\n"
                    f"log:\n{_tail(log)}\noutput:\n{_tail(output)}"
                )
            time.sleep(0.02)
        if tcp_port is not None:
            while not _pong(("127.0.0.1", tcp_port)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"clamd does not answer on 127.0.0.1:{tcp_port}")
                time.sleep(0.02)
        yield str(sock)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)
