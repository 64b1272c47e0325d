"""ClamAV's command-line scanner, run once per batch, for hosts without clamd.

clamscan loads the whole signature database every time it starts (seconds
and about a gigabyte with the official release), so it is given a whole batch
through ``--file-list`` and never run per file. A file list holds one name a
line, so names with a line break are handed over as symbolic links with plain
names, made in a private folder: clamscan follows a link it is given directly,
and the same single run scans them.

clamscan reports a file past its size limits as OK without reading it; it is
run with ``--alert-exceeds-max`` so that such a file becomes an error in the
report (the scanner cannot vouch for it), not a clean verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from preservation.errors import ScannerUnavailableError
from preservation.scan.interfaces import Batch, ScanReport, describe_database

__all__ = ["DEFAULT_DATABASE", "ClamscanScanner"]

DEFAULT_DATABASE = Path("/var/lib/clamav")
"""Where ClamAV's packages keep the signatures freshclam fetches, and clamscan looks by default."""

# Lines clamscan prints when it cannot load signatures, before it scans anything.
_DATABASE_TROUBLE = (
    b"cl_load",
    b"cli_loaddbdir",
    b"No supported database files",
    b"database initialization error",
    b"Malformed database",
    b"Can't load",
    b"cli_cvdload",
)


class ClamscanScanner:
    """clamscan, one process per batch, with the signatures in ``database``.

    ``database`` None means ClamAV's default folder (kept by freshclam). Each
    batch also asks ``clamscan --version`` for the release it names, once per
    state of the database folder: freshclam replacing a file is noticed.
    """

    name = "clamscan"

    def __init__(
        self,
        database: Path | None = None,
        *,
        executable: str = "clamscan",
        timeout: float | None = None,
    ) -> None:
        self.database = Path(database) if database is not None else None
        self.executable = executable
        self.timeout = timeout
        self._version: tuple[object, tuple[str, str | None]] | None = None

    @property
    def folder(self) -> Path:
        """The signature folder clamscan loads, for reports and messages."""
        return self.database if self.database is not None else DEFAULT_DATABASE

    def scan(self, paths: Sequence[Path]) -> ScanReport:
        batch = Batch(paths)
        program = self._program()
        engine, reported = self._engine_version(program)
        if batch.targets:
            self._run(program, batch)
        return batch.report(engine, describe_database(self.folder, reported))

    def _program(self) -> str:
        found = shutil.which(self.executable)
        if found is None:
            raise ScannerUnavailableError(
                f"clamscan is not installed ({self.executable!r} is not on PATH): install "
                "ClamAV (apt install clamav), or set PRESERVATION_CLAMD_SOCKET to use clamd",
                tool="clamscan",
            )
        return found

    def _folder_state(self) -> object:
        try:
            return sorted(
                (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                for entry in os.scandir(self.folder)
            )
        except OSError:
            return None

    def _engine_version(self, program: str) -> tuple[str, str | None]:
        """("ClamAV 1.4.6", "27420/Thu Nov  5 08:00:00 2026" or None for custom signatures)."""
        state = (program, self._folder_state())
        if self._version is not None and self._version[0] == state:
            return self._version[1]
        command = [program, "--version"]
        if self.database is not None:
            command += ["-d", str(self.database)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ScannerUnavailableError(
                f"clamscan will not start ({program}): {err}", tool="clamscan"
            ) from err
        line = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not line.startswith("ClamAV"):
            raise ScannerUnavailableError(
                f"clamscan will not start ({program} --version exited {done.returncode}: "
                f"{(line or done.stderr.decode('utf-8', 'replace')).strip()[:300]})",
                tool="clamscan",
            )
        engine, _, database = line.partition("/")
        self._version = (state, (engine, database or None))
        return engine, database or None

    def _command(self, program: str, file_list: str) -> list[str]:
        command = [
            program,
            "--no-summary",
            "--stdout",
            "--alert-exceeds-max=yes",
            # ClamAV's own defaults (100 MB a file, 400 MB a scan) would make every
            # larger recording wait; these are its highest (just under 4 GB), and a
            # file past them is still reported, never passed.
            "--max-filesize=4000M",
            "--max-scansize=4000M",
            "--follow-file-symlinks=1",  # the links we make for awkward names, no others
            f"--file-list={file_list}",
        ]
        if self.database is not None:
            command[1:1] = ["-d", str(self.database)]
        return command

    def _run(self, program: str, batch: Batch) -> None:
        with tempfile.TemporaryDirectory(prefix="clamscan-") as work:
            # What clamscan will print for each target -> the target.
            printed: dict[bytes, bytes] = {}
            for target in batch.targets:
                if b"\n" in target or b"\r" in target:
                    alias = os.path.join(os.fsencode(work), b"%d" % len(printed))
                    os.symlink(target, alias)
                    printed[alias] = target
                else:
                    printed[target] = target
            file_list = os.path.join(work, "files")
            with open(file_list, "wb") as f:
                f.write(b"".join(name + b"\n" for name in printed))
            with tempfile.TemporaryFile() as stderr:
                try:
                    done = subprocess.run(
                        self._command(program, file_list),
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        timeout=self.timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired as err:
                    raise ScannerUnavailableError(
                        f"clamscan did not finish a batch of {len(printed)} files in "
                        f"{self.timeout} s",
                        tool="clamscan",
                    ) from err
                except OSError as err:
                    raise ScannerUnavailableError(
                        f"clamscan will not start ({program}): {err}", tool="clamscan"
                    ) from err
                stderr.seek(0)
                errors = stderr.read()
        self._settle(batch, printed, done.returncode, done.stdout, errors)

    def _settle(
        self,
        batch: Batch,
        printed: dict[bytes, bytes],
        returncode: int,
        stdout: bytes,
        stderr: bytes,
    ) -> None:
        """Read clamscan's lines back onto the targets; tell a broken engine from bad files."""
        answered = 0
        unknown: list[bytes] = []
        for line in stdout.split(b"\n"):
            if not line:
                continue
            warning = line.startswith(b"WARNING: ")
            body = line[len(b"WARNING: ") :] if warning else line
            name, verdict = _split(body, printed)
            if name is None:
                unknown.append(line)
                continue
            target = printed[name]
            if verdict == b"Empty file":
                verdict = b"OK"  # clamscan skips empty files; nothing in them can be infected
            if warning or not batch.verdict(target, verdict):
                batch.fail(target, os.fsdecode(verdict).strip())
            answered += 1
        if returncode < 0:
            raise ScannerUnavailableError(
                f"clamscan was killed by signal {-returncode} (out of memory?) "
                f"after {answered} of {len(printed)} files",
                tool="clamscan",
            )
        if returncode not in (0, 1, 2):
            raise ScannerUnavailableError(
                f"clamscan exited {returncode}: {_tail(stderr + stdout)}", tool="clamscan"
            )
        if returncode == 2 and answered == 0:
            text = _tail(stderr + b"\n" + b"\n".join(unknown))
            if any(marker in stderr for marker in _DATABASE_TROUBLE):
                raise ScannerUnavailableError(
                    f"clamscan has no usable signatures in {self.folder}: {text}. Run "
                    f"freshclam, or point PRESERVATION_CLAMAV_DB at a folder of "
                    f".cvd/.cld/.ndb/.hdb files",
                    path=self.folder,
                    tool="clamscan",
                )
            raise ScannerUnavailableError(f"clamscan failed: {text}", tool="clamscan")


def _split(line: bytes, printed: dict[bytes, bytes]) -> tuple[bytes | None, bytes]:
    """``<name>: <verdict>``, parsed from the right: names may hold ": " themselves.

    The longest known name wins, so of "a" and "a: b" the line "a: b: OK" is about "a: b".
    """
    end = len(line)
    while True:
        end = line.rfind(b": ", 0, end)
        if end < 0:
            return None, line
        if line[:end] in printed:
            return line[:end], line[end + 2 :]


def _tail(text: bytes, limit: int = 500) -> str:
    lines = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines)[-limit:] or "no output"
