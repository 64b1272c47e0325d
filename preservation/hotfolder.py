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

A directory bag whose bag-info has no Payload-Oxum has nothing to prove it
complete but silence, so it must stay quiet ``NO_OXUM_FACTOR`` times longer
before it is taken: a pause in an upload that long is unlikely, and the
validation that follows still checks every manifest.

A directory bag whose Payload-Oxum does not match what is on disk is most
likely still arriving, so it is left alone while it changes. But one that
stays unchanged for ``incomplete_bag_seconds`` (by default ``INCOMPLETE_FACTOR``
quiet periods) will not complete by itself: an upload broke off, or the bag was
wrong from the start. Waiting for it forever would leave the submitter with no
word, so it is then taken like a finished bag, and the validate stage rejects
it with its whole report (each missing, extra or changed file, and the Oxum
itself, are errors there). Making it ready, rather than setting it aside here,
keeps one place, the validator, that says what is wrong with a bag.

An entry that can never become a bag (a stray file that is not a serialised
bag, a folder with no ``bagit.txt``) is given ``STRAY_FACTOR`` times the quiet
period to turn into one; after that it is moved, bytes untouched, to
``rejected/<name>/`` with ``report.json`` and ``report.txt`` (rule
``not-a-bag``), so that the submitter hears about it instead of it lying in
the folder forever.

A tenant folder whose name is not a valid tenant id
(:func:`preservation.tenants.is_valid_tenant_id`: ``Museum``, ``bad name``)
is never scanned: a SIP of it could not be registered, and a bag claimed from
it would be stuck in its claim folder. Nothing in it is moved, so that the
operator can rename the folder and have its bags taken as they are;
:func:`invalid_tenant_folders` lists such folders for the caller to report.
Hidden entries (a name starting with ``.``) are ignored at both levels:
uploads in progress, the watcher's heartbeat, file-system housekeeping.

The functions here print nothing and remember nothing between scans: what a
scan found is returned, or handed to a ``skipped`` callback, and the caller
(the CLI's ``watch``, the beat task) decides what to tell.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from preservation.tenants import is_valid_tenant_id

__all__ = [
    "INCOMPLETE_FACTOR",
    "NO_OXUM_FACTOR",
    "STRAY_FACTOR",
    "Candidate",
    "claim",
    "dropped_path",
    "find_ready",
    "incomplete_wait",
    "invalid_tenant_folders",
    "orphaned_claims",
    "release",
    "scan",
    "set_aside_stray",
    "tenant_folders",
]

SERIALISED = (".tar", ".tar.gz", ".tgz", ".zip")
RESERVED = {".claimed", "rejected", "kept"}
NO_OXUM_FACTOR = 3.0  # quiet periods a directory bag without Payload-Oxum must wait
STRAY_FACTOR = 10.0  # quiet periods an entry that is not a bag gets before it is set aside
# Quiet periods a directory bag whose Payload-Oxum does not match may stay unchanged
# before it is taken (and rejected by validation); when incomplete_bag_seconds is None.
INCOMPLETE_FACTOR = 10.0
NOT_A_BAG = "not-a-bag"

# Candidate.kind: why it is (not) ready, in a word. Only CHANGING has a reason
# that changes from scan to scan (the seconds since the last change).
CHANGING = "changing"
INCOMPLETE = "incomplete"  # Payload-Oxum does not match; ready once unchanged long enough


@dataclass(frozen=True)
class Candidate:
    tenant: str
    path: Path
    ready: bool
    reason: str  # why it is (not yet) ready
    stray: bool = False  # not a bag, and quiet for long enough to be set aside
    kind: str = "ready"  # CHANGING, INCOMPLETE, "no-oxum", NOT_A_BAG, ...

    @property
    def lasting_reason(self) -> str:
        """The reason without what changes at every scan, for a watcher that tells
        a skipped bag again only when this changes (not each time a second passes)."""
        return "changed recently (not yet quiet)" if self.kind == CHANGING else self.reason


def incomplete_wait(quiescent_seconds: float, incomplete_bag_seconds: float | None) -> float:
    """How long an incomplete directory bag must stay unchanged before it is taken."""
    if incomplete_bag_seconds is None:
        return quiescent_seconds * INCOMPLETE_FACTOR
    return incomplete_bag_seconds


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


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


def tenant_folders(ingest_dir: Path) -> list[Path]:
    """The tenant folders that are scanned: real folders named by a valid tenant id."""
    return [p for p in _folders(ingest_dir) if is_valid_tenant_id(p.name)]


def invalid_tenant_folders(ingest_dir: Path) -> list[Path]:
    """Folders under ``ingest/`` whose name is not a valid tenant id: never scanned.

    Hidden folders are not listed (they are ignored, like hidden entries in a
    tenant folder), nor are symbolic links, which are never followed.
    """
    return [p for p in _folders(ingest_dir) if not is_valid_tenant_id(p.name)]


def _folders(ingest_dir: Path) -> list[Path]:
    if not ingest_dir.is_dir():
        return []
    return sorted(
        p
        for p in ingest_dir.iterdir()
        if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
    )


def scan(
    ingest_dir: Path,
    *,
    quiescent_seconds: float,
    incomplete_bag_seconds: float | None = None,
    now: float | None = None,
) -> Iterator[Candidate]:
    """Every bag in every tenant folder, with whether it may be taken now.

    ``incomplete_bag_seconds`` None means ``INCOMPLETE_FACTOR`` quiet periods.
    Folders not named by a valid tenant id are skipped (see
    :func:`invalid_tenant_folders`).
    """
    now = time.time() if now is None else now
    incomplete = incomplete_wait(quiescent_seconds, incomplete_bag_seconds)
    for tenant_dir in tenant_folders(ingest_dir):
        for entry in sorted(tenant_dir.iterdir()):
            if entry.name in RESERVED or entry.name.startswith("."):
                continue
            yield _judge(tenant_dir.name, entry, quiescent_seconds, incomplete, now)


def _judge(tenant: str, entry: Path, quiescent: float, incomplete: float, now: float) -> Candidate:
    try:
        st = os.lstat(entry)
        newest, size, count = _newest_change(entry)
    except FileNotFoundError:
        return Candidate(tenant, entry, False, "vanished while scanning", kind="vanished")
    if stat.S_ISLNK(st.st_mode):
        # Still taken, so that validation rejects it with a report rather than ignoring it.
        return Candidate(tenant, entry, now - newest >= quiescent, "symbolic link", kind="symlink")
    quiet = now - newest
    stray = quiet >= quiescent * STRAY_FACTOR
    set_aside = f"set aside after {quiescent * STRAY_FACTOR:g}s unchanged"
    if stat.S_ISREG(st.st_mode) and not entry.name.lower().endswith(SERIALISED):
        return Candidate(
            tenant,
            entry,
            False,
            f"not a bag (expected a folder, .tar, .tar.gz or .zip); {set_aside}",
            stray=stray,
            kind=NOT_A_BAG,
        )
    if quiet < quiescent:
        return Candidate(
            tenant, entry, False, f"changed {quiet:.1f}s ago (not yet quiet)", kind=CHANGING
        )
    if stat.S_ISDIR(st.st_mode):
        if not (entry / "bagit.txt").exists():
            return Candidate(
                tenant,
                entry,
                False,
                f"no bagit.txt yet; {set_aside}",
                stray=stray,
                kind=NOT_A_BAG,
            )
        declared = _declared_oxum(entry)
        if declared is None and quiet < quiescent * NO_OXUM_FACTOR:
            return Candidate(
                tenant,
                entry,
                False,
                f"no Payload-Oxum: waiting for {quiescent * NO_OXUM_FACTOR:.0f}s of quiet",
                kind="no-oxum",
            )
        if declared is not None and declared != (size, count):
            mismatch = f"Payload-Oxum {declared[0]}.{declared[1]} but {size}.{count} on disk"
            if quiet < incomplete:
                return Candidate(
                    tenant,
                    entry,
                    False,
                    f"{mismatch} since {_utc(newest)}; rejected after {incomplete:g}s unchanged",
                    kind=INCOMPLETE,
                )
            # It will not complete by itself: taken, so that validation reports every problem.
            return Candidate(
                tenant,
                entry,
                True,
                f"{mismatch} and unchanged for {quiet:.0f}s: taken to report what is wrong",
                kind=INCOMPLETE,
            )
    return Candidate(tenant, entry, True, "quiescent")


def find_ready(
    ingest_dir: Path,
    *,
    quiescent_seconds: float,
    incomplete_bag_seconds: float | None = None,
    now: float | None = None,
    skipped: Callable[[Candidate], None] | None = None,
) -> list[Candidate]:
    """The bags ready to claim; strays met on the way are set aside into ``rejected/``.

    Every other candidate (not ready, or a stray just set aside, its reason
    then saying where it went) is handed to ``skipped``, for the caller to tell.
    """
    ready = []
    for candidate in scan(
        ingest_dir,
        quiescent_seconds=quiescent_seconds,
        incomplete_bag_seconds=incomplete_bag_seconds,
        now=now,
    ):
        if candidate.ready:
            ready.append(candidate)
            continue
        if candidate.stray:
            target = set_aside_stray(candidate)
            if target is None:
                continue  # moved by someone else meanwhile: nothing to tell
            reason = candidate.reason.split(";")[0]
            candidate = replace(
                candidate, reason=f"{reason}; set aside in {target.parent.name}/{target.name}/"
            )
        if skipped is not None:
            skipped(candidate)
    return ready


def set_aside_stray(candidate: Candidate) -> Path | None:
    """Move an entry that is not a bag to ``rejected/<name>/`` with its reports.

    The reports are written first and the entry moved last, with one rename,
    so its bytes are never copied or changed. Returns the folder, or None when
    another watcher (or the submitter) moved the entry first.
    """
    entry = candidate.path
    root = entry.parent / "rejected"
    root.mkdir(exist_ok=True)
    target = root / entry.name
    if target.exists():
        target = root / f"{entry.name}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:8]}"
    target.mkdir()
    kind = "a folder with no bagit.txt" if entry.is_dir() else "a file that is not .tar or .zip"
    problem = {
        "severity": "error",
        "file": entry.name,
        "rule": NOT_A_BAG,
        "message": f"{entry.name} is not a BagIt bag ({kind}) and has not changed for "
        "a long time; put a bag (a folder with bagit.txt, or a .tar, .tar.gz, .tgz or "
        ".zip of one) in the ingest folder",
    }
    report = {
        "sip_id": None,
        "tenant": candidate.tenant,
        "bag": entry.name,
        "source": str(entry),
        "stage": "receive",
        "valid": False,
        "problems": [problem],
    }
    (target / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (target / "report.txt").write_text(
        f"{entry.name!r} (tenant {candidate.tenant}) was set aside, not ingested.\n"
        f"Source: {entry}\n"
        f"  ERROR: {entry.name}: {NOT_A_BAG}: {problem['message']}\n"
    )
    try:
        os.rename(entry, target / entry.name)
    except FileNotFoundError:
        shutil.rmtree(target, ignore_errors=True)
        return None
    return target


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
    """Claimed bags still in their claim folder: (tenant, path) for the caller to check.

    Only in folders named by a valid tenant id, like :func:`scan`.
    """
    for tenant_dir in tenant_folders(ingest_dir):
        claims = tenant_dir / ".claimed"
        if not claims.is_dir():
            continue
        for claim_dir in sorted(claims.iterdir()):
            for entry in claim_dir.iterdir():
                yield tenant_dir.name, entry


def dropped_path(claimed: Path) -> Path | None:
    """Where the submitter dropped a claimed bag (``<tenant>/<bag>``); None if not a claim.

    A report names this path: the claim folder is this module's business, and
    the submitter never saw it.
    """
    claim_dir = claimed.parent
    if claim_dir.parent.name != ".claimed":
        return None
    return claim_dir.parent.parent / claimed.name


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
