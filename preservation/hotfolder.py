"""Per-tenant ingest folders: find finished bags and claim each exactly once.

Layout under ``<home>/ingest/``::

    <tenant>/<bag>                    dropped by the institution (directory or .tar/.zip)
    <tenant>/.claimed/<sip>/<bag>     taken by one watcher (an atomic rename)
    <tenant>/rejected/<bag>/          put aside with report.json and report.txt
    <tenant>/kept/<bag>               released but kept, when the tenant's rule says so

A bag is taken only when nothing in it has changed for ``quiescent_seconds``
and, for a directory, its Payload-Oxum matches what is on disk. Both checks are
stateless (read from the file system on each scan), so a beat task on any
machine can scan without remembering earlier scans. The claim is a rename on
the same file system: of two watchers racing for one bag, exactly one wins.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Candidate", "claim", "find_ready", "orphaned_claims", "release", "scan"]

SERIALISED = (".tar", ".tar.gz", ".tgz", ".zip")
RESERVED = {".claimed", "rejected", "kept"}


@dataclass(frozen=True)
class Candidate:
    tenant: str
    path: Path
    ready: bool
    reason: str  # why it is (not yet) ready


def _newest_change(path: Path) -> tuple[float, int, int]:
    """Newest mtime/ctime in the tree, total payload bytes and payload file count."""
    st = os.lstat(path)
    newest = max(st.st_mtime, st.st_ctime)
    if not stat.S_ISDIR(st.st_mode):
        return newest, st.st_size, 1
    size = count = 0
    data = os.path.join(path, "data")
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        in_payload = dirpath == data or dirpath.startswith(data + os.sep)
        for name in dirnames + filenames:
            est = os.lstat(os.path.join(dirpath, name))
            newest = max(newest, est.st_mtime, est.st_ctime)
            if in_payload and name in filenames and stat.S_ISREG(est.st_mode):
                size += est.st_size
                count += 1
    return newest, size, count


def _declared_oxum(bag: Path) -> tuple[int, int] | None:
    info = bag / "bag-info.txt"
    try:
        text = info.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "payload-oxum":
            octets, _, streams = value.strip().partition(".")
            if octets.isdigit() and streams.isdigit():
                return int(octets), int(streams)
    return None


def scan(
    ingest_dir: Path, *, quiescent_seconds: float, now: float | None = None
) -> Iterator[Candidate]:
    """Every bag in every tenant folder, with whether it may be taken now."""
    now = time.time() if now is None else now
    if not ingest_dir.is_dir():
        return
    for tenant_dir in sorted(p for p in ingest_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        for entry in sorted(tenant_dir.iterdir()):
            if entry.name in RESERVED or entry.name.startswith("."):
                continue
            yield _judge(tenant_dir.name, entry, quiescent_seconds, now)


def _judge(tenant: str, entry: Path, quiescent: float, now: float) -> Candidate:
    try:
        st = os.lstat(entry)
        newest, size, count = _newest_change(entry)
    except FileNotFoundError:
        return Candidate(tenant, entry, False, "vanished while scanning")
    if stat.S_ISLNK(st.st_mode):
        # Still taken, so that validation rejects it with a report rather than ignoring it.
        return Candidate(tenant, entry, now - newest >= quiescent, "symbolic link")
    if stat.S_ISREG(st.st_mode) and not entry.name.lower().endswith(SERIALISED):
        return Candidate(
            tenant, entry, False, "not a bag (expected a folder, .tar, .tar.gz or .zip)"
        )
    if now - newest < quiescent:
        return Candidate(tenant, entry, False, f"changed {now - newest:.1f}s ago")
    if stat.S_ISDIR(st.st_mode):
        if not (entry / "bagit.txt").exists():
            return Candidate(tenant, entry, False, "no bagit.txt yet")
        declared = _declared_oxum(entry)
        if declared is not None and declared != (size, count):
            return Candidate(
                tenant,
                entry,
                False,
                f"Payload-Oxum {declared[0]}.{declared[1]} but {size}.{count} on disk",
            )
    return Candidate(tenant, entry, True, "quiescent")


def find_ready(ingest_dir: Path, *, quiescent_seconds: float) -> list[Candidate]:
    return [c for c in scan(ingest_dir, quiescent_seconds=quiescent_seconds) if c.ready]


def claim(candidate: Candidate) -> Path | None:
    """Take the bag with one rename; None when another watcher was faster.

    The claim folder is named by a fresh UUID that becomes the SIP id.
    """
    claim_dir = candidate.path.parent / ".claimed" / str(uuid.uuid4())
    claim_dir.mkdir(parents=True)
    target = claim_dir / candidate.path.name
    try:
        os.rename(candidate.path, target)
    except FileNotFoundError:
        claim_dir.rmdir()
        return None
    return target


def orphaned_claims(ingest_dir: Path) -> Iterator[tuple[str, Path]]:
    """Claimed bags still in their claim folder: (tenant, path) for the caller to check."""
    if not ingest_dir.is_dir():
        return
    for claims in sorted(ingest_dir.glob("*/.claimed")):
        for claim_dir in sorted(claims.iterdir()):
            for entry in claim_dir.iterdir():
                yield claims.parent.name, entry


def release(claimed: Path, *, keep: bool) -> None:
    """After commit: the SIP is removed, or kept aside by tenant rule."""
    claim_dir = claimed.parent
    if not claimed.exists() and not claimed.is_symlink():
        return
    if keep:
        kept = claim_dir.parent.parent / "kept"
        kept.mkdir(exist_ok=True)
        target = kept / claimed.name
        if target.exists():
            target = kept / f"{claimed.name}.{claim_dir.name[:8]}"
        os.rename(claimed, target)
    elif claimed.is_dir() and not claimed.is_symlink():
        shutil.rmtree(claimed)
    else:
        claimed.unlink()
    try:
        claim_dir.rmdir()
    except OSError:
        pass
