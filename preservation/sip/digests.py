"""Reading payload bytes once: every digest, and optionally the staged copy, from one read.

Validation and staging are I/O bound on tape-sized submissions, so the rule is
that each byte is read from the SIP once, in 1 MiB chunks into a reused buffer,
and fed to every hasher (and the copy) from that same buffer. Files are spread
over a thread pool: hashlib releases the GIL for buffers over 2 KiB, so threads
scale on hashing without the pickling and fork cost of a process pool.

When a bag has fewer large files than threads (a film archive's one 500 GB
MXF), the idle threads would be wasted: then the algorithms of one file are
split across threads instead, each chunk read once and hashed by sha256 in
one thread while sha512 runs in another, so one file uses every core.

Nothing here follows a symlink or blocks on a FIFO: files are opened with
``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` to be the very regular
file the directory scan saw, so a swap between scan and read is caught.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHUNK_SIZE", "DigestJob", "DigestResult", "digest_files"]

CHUNK_SIZE = 1 << 20
_BATCH_BYTES = 8 << 20
_BATCH_FILES = 128
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_local = threading.local()


@dataclass(slots=True)
class DigestJob:
    """One file to read: where it is, what the scan saw, what the bag says it hashes to.

    ``expected`` maps hashlib names to one or more accepted hex digests (more than
    one only when a broken manifest lists a file twice; any mismatch is reported).
    ``copy_to`` asks for a staged copy, published only if every digest matches.
    """

    relpath: str
    source: str
    size: int
    device: int
    inode: int
    expected: dict[str, list[str]]
    algorithms: tuple[str, ...]
    copy_to: str | None = None
    fsync: bool = False


@dataclass(slots=True)
class DigestResult:
    """What reading one file found. ``error`` is set when it could not be read at all."""

    job: DigestJob
    digests: dict[str, str] = field(default_factory=dict)
    size: int = 0
    error: str | None = None
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # alg, expected, found
    staged: bool = False


def _buffer() -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(CHUNK_SIZE))
        _local.buf = buf
    return buf


_CONSTRUCTORS: dict[str, Callable[[], Any]] = {}


def _hasher(name: str) -> Any:
    # hashlib.sha256() is several times cheaper than hashlib.new("sha256"), which
    # matters for thousands of 4 KB files.
    ctor = _CONSTRUCTORS.get(name)
    if ctor is None:
        direct = getattr(hashlib, name, None)
        ctor = direct if callable(direct) else (lambda n=name: hashlib.new(n))
        _CONSTRUCTORS[name] = ctor
    return ctor()


#: Files at least this big get their algorithms spread over spare threads.
SPLIT_BYTES = 64 << 20


def _digest_one(job: DigestJob, helper: ThreadPoolExecutor | None = None) -> DigestResult:
    result = DigestResult(job)
    try:
        fd = os.open(job.source, _READ_FLAGS)
    except OSError as exc:
        result.error = f"cannot be opened: {exc.strerror}"
        return result
    out: int | None = None
    tmp: str | None = None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (job.device, job.inode):
            result.error = "was replaced while the bag was being read"
            return result
        if st.st_size > CHUNK_SIZE:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        if job.copy_to is not None:
            parent, name = os.path.split(job.copy_to)
            tmp = os.path.join(parent, f".{name}.{os.getpid()}.{threading.get_ident()}.part")
            out = os.open(tmp, _WRITE_FLAGS, 0o644)
        hashers = [(name, _hasher(name)) for name in job.algorithms]
        updates = [h.update for _, h in hashers]
        # Split only what is worth a hand-off per chunk; the chunk buffer stays
        # untouched until every helper is done with it.
        spread = helper if helper is not None and len(updates) > 1 else None
        buf = _buffer()
        total = 0
        while True:
            n = os.readv(fd, [buf])
            if not n:
                break
            chunk = buf[:n]
            if spread is not None:
                pending = [spread.submit(update, chunk) for update in updates[1:]]
                updates[0](chunk)
                for future in pending:
                    future.result()
            else:
                for update in updates:
                    update(chunk)
            if out is not None:
                written = 0
                while written < n:
                    written += os.write(out, chunk[written:])
            total += n
        result.size = total
        result.digests = {name: h.hexdigest() for name, h in hashers}
        for name, accepted in job.expected.items():
            found = result.digests[name]
            for digest in accepted:
                if digest != found:
                    result.mismatched.append((name, digest, found))
        if out is not None:
            if job.fsync:
                os.fsync(out)
            os.close(out)
            out = None
            if result.mismatched or total != job.size:
                os.unlink(tmp)  # type: ignore[arg-type]
            else:
                os.replace(tmp, job.copy_to)  # type: ignore[arg-type]
                result.staged = True
            tmp = None
    except OSError as exc:
        result.error = f"could not be read or copied: {exc.strerror}"
    finally:
        os.close(fd)
        if out is not None:
            os.close(out)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return result


def _digest_batch(batch: Sequence[DigestJob]) -> list[DigestResult]:
    return [_digest_one(job) for job in batch]


def _batches(jobs: Iterable[DigestJob]) -> list[list[DigestJob]]:
    """Largest files first, alone; small files grouped so a task is worth scheduling."""
    out: list[list[DigestJob]] = []
    current: list[DigestJob] = []
    size = 0
    for job in sorted(jobs, key=lambda j: j.size, reverse=True):
        if job.size >= _BATCH_BYTES:
            out.append([job])
            continue
        current.append(job)
        size += job.size
        if size >= _BATCH_BYTES or len(current) >= _BATCH_FILES:
            out.append(current)
            current, size = [], 0
    if current:
        out.append(current)
    return out


def digest_files(
    jobs: Iterable[DigestJob],
    *,
    processes: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[DigestResult]:
    """Read every job once with ``processes`` threads; results in no particular order.

    ``progress(done, total)`` is called in the caller's thread as batches finish
    (files), so a terminal can show a bar for a bag of many gigabytes.
    """
    batches = _batches(jobs)
    total = sum(len(b) for b in batches)
    out: list[DigestResult] = []
    spare = processes - len(batches)
    if spare > 0 and any(j.size >= SPLIT_BYTES for b in batches for j in b):
        # Fewer batches than threads: large files share their algorithms with
        # the spare threads (one helper pool, so at most ``processes`` threads hash).
        with (
            ThreadPoolExecutor(max_workers=spare, thread_name_prefix="digest-alg") as helper,
            ThreadPoolExecutor(max_workers=len(batches), thread_name_prefix="digest") as pool,
        ):

            def run(batch: Sequence[DigestJob]) -> list[DigestResult]:
                return [
                    _digest_one(job, helper if job.size >= SPLIT_BYTES else None) for job in batch
                ]

            for rs in pool.map(run, batches):
                out.extend(rs)
                if progress:
                    progress(len(out), total)
        return out
    if processes <= 1 or len(batches) <= 1:
        results = map(_digest_batch, batches)
        for rs in results:
            out.extend(rs)
            if progress:
                progress(len(out), total)
        return out
    with ThreadPoolExecutor(max_workers=processes, thread_name_prefix="digest") as pool:
        for rs in pool.map(_digest_batch, batches):
            out.extend(rs)
            if progress:
                progress(len(out), total)
    return out


def staged_path(dest_dir: Path, relpath: str) -> str:
    """Where a payload file goes under ``dest_dir``; relpath is already checked safe."""
    return os.path.join(os.fspath(dest_dir), *relpath.split("/"))
