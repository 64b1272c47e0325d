"""Rebuilding the catalogue from the tapes alone: LTFS indexes, then each tar's METS and PREMIS.

The catalogue is a cache of what the tapes say (docs/architecture.md §1): if
it is lost, every cartridge's LTFS index names the version tars, their
positions and digests, and each tar's root and representation METS name the
AIP, its files, formats and history. This module reads exactly that, and
nothing else, and writes the rows in bulk into an empty catalogue.

It reads the libraries read-only (no lock file, no new cartridge, no index
written) and mounts each cartridge once. Of a tar it reads only the tar
headers and the few members it needs, seeking over the payload, so a
rebuild costs index reads and a few hundred kilobytes per version, not the
archive's size. The sites are read at once, one thread each, as their
drives would work; each version's tar is read at one site only, the other
copy recorded from its index, and a version that site lacks is read from
another copy afterwards (the one case of a second mount).

What the tapes do not hold cannot come back (:data:`NOT_ON_TAPE` lists it,
with the reason); what they hold only approximately (times) is set from the
nearest evidence and said so.

The event chain comes back from the journal each tenant's syncs wrote beside
the AIPs (``/<tenant>/.journal/``, :mod:`preservation.evidence.on_tape`):
every event up to the last segment that reads whole and follows on from the
one before is restored exactly, hashes and all, with the segments, their
time-stamps and the evidence records' hash trees. Only the events METS holds
beyond it (recorded after the last sync) are chained on from the journal's
head, in time order, with new hashes: their old hashes cover fields that were
never written to tape, so they cannot be recomputed, and a chain that
pretended to be the old one would be a forgery. A tenant with no journal on
tape is chained again from its first event so.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    SIP,
    Agent,
    AIPState,
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    EvidenceLeaf,
    EvidenceStamp,
    File,
    JournalCopy,
    JournalFile,
    JournalSegment,
    LegalHold,
    PremisEvent,
    SIPState,
    TapeCopy,
    Tenant,
)
from preservation.context import Context
from preservation.errors import ConflictError, NotFoundError, PreservationError, StorageError
from preservation.evidence import journal
from preservation.evidence.journal import ParsedSegment
from preservation.metadata.model import Event, FileObject
from preservation.storage.emulator import EmulatedCartridge
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import EmulatedLibrary, TapeLibrary, barcode_for
from preservation.storage.ltfs import SHA256_XATTR, LTFSVolume
from preservation.storage.ltfs_index import DirectoryNode, Extent, FileNode, Index, IndexLocation
from preservation.storage.siteconfig import site_specs
from preservation.storage.sites import _is_blank, build_sites, site_letter

__all__ = [
    "NOT_ON_TAPE",
    "RebuildReport",
    "TarHead",
    "catalogue_is_empty",
    "read_tar_head",
    "rebuild_catalogue",
    "resolve_site",
]

log = logging.getLogger(__name__)

#: Every catalogue field the rebuild cannot restore as it was, and why. The
#: e2e test compares everything else, table by table, with the catalogue the
#: ingests wrote.
NOT_ON_TAPE: dict[str, str] = {
    "sips": "a SIP is a submission in flight; the tapes hold AIPs. Each rebuilt AIP gets a "
    "committed SIP named by the AIP's own id, with its bag-info, name, Payload-Oxum and "
    "files from version 1; the original SIP id, source path, attempts and times are gone, "
    "and rejected or unfinished submissions left nothing on tape",
    "files.sip_id": "the SIP id is not on tape (see sips)",
    "aip_versions.staging_path": "a pending version's tar waits under its SIP's staging "
    "folder, named by the SIP id, which is not on tape",
    "premis_events.sip_id/aip_id/objects (after the last journal sync)": "an event the "
    "journal holds comes back exactly (its SIP id then names the original SIP, of which no "
    "row comes back: see sips). For an event only a METS holds, the SIP id is not on tape "
    "(events of version 1's ingest name the rebuilt SIP, every other its AIP), ingest's "
    "first events had no AIP yet (the rebuild names it), and the counts and digests kept "
    "with an event ({'files': 9}) are catalogue-only",
    "premis_events.seq/prev_hash/hash, tenants.event_head/event_count (after the last "
    "journal sync)": "restored exactly from the journal on tape, from event 1 up to the "
    "last segment that reads whole at some site and follows on from the one before. The "
    "events a METS holds beyond it (recorded after the last `history sync`, or after a "
    "segment that could not be restored, which the report names) are chained on from the "
    "journal's head in time order: their seq, prev_hash and hash are new (the old hashes "
    "cover fields no METS holds), and so are the tenant's head and count. A tenant with no "
    "journal on tape is chained again from event 1",
    "premis_events (after the last journal sync and the newest version)": "an event the "
    "journal does not hold comes back only from a METS, and each version's METS is written "
    "before its tar is stored: the newest version's creation, replication and commit "
    "events, audits, retention, holds, disposal requests and deletions recorded after the "
    "last sync exist only in the catalogue",
    "premis_events.id, aip_versions.id, files.id, tape_copies.id, agents.id, "
    "journal_segments.id, journal_files.id, journal_copies.id, evidence_leaves.id": "surrogate "
    "keys; rebuilt in time order, so equal only when nothing else took numbers between "
    "(evidence_stamps.id comes back: the evidence files name their stamps by it)",
    "journal_segments, journal_files, journal_copies (not yet on tape)": "a segment cut and "
    "not yet written, or whose only copies are unreadable, is not restored, nor any after "
    "it: its events come back re-chained (above) and the next sync cuts them again. A "
    "segment's time-stamp comes back from its reply file (.tsr), written once the TSA "
    "answered; without one the segment comes back unstamped, and the next sync asks again. "
    "A copy whose bytes differ from the one restored is not listed (the report names it): "
    "the next sync writes the file at that site again",
    "journal_segments.created_at/stamped_at, journal_files.created_at, "
    "journal_copies.written_at, evidence_stamps.created_at/stamped_at/stamp_error, "
    "journal_segments.stamp_error": "not on tape: the file's LTFS modify time stands in for "
    "when it was cut and written, the time-stamp token's genTime for when it was stamped "
    "(and for an evidence stamp's creation); a stamp error is the catalogue's",
    "evidence_stamps, evidence_leaves (waiting for the TSA)": "an evidence period goes to "
    "tape only once its time-stamp is there: a period still waiting is lost, and the next "
    "sync seals its versions in a new one. A leaf naming a version or a stamp not restored "
    "keeps no link to it (the report says so)",
    "agents": "METS names each agent by name and version; the catalogue identifier is "
    "rebuilt from them (name and version, or the identifying tool as files name it)",
    "tenants.created_at, aips.created_at, aip_versions.created_at/committed_at": "not on "
    "tape; set from the nearest evidence (the ingestion event, the METS creation date, "
    "the tar's LTFS modify time)",
    "tape_copies.written_at/verified_at": "set to the tar's LTFS modify time; the copy is "
    "marked verified on the strength of the sha256 the index recorded when it was written "
    "and read back: run `preservation audit` for fresh proof",
    "tape_copies (failed, discarded, writing)": "a copy that failed its read-back, or was "
    "superseded, is either not in the index or looks like a good one: listed copies come "
    "back verified (failed only if the rebuild itself cannot read their METS), and "
    "disposed ones disposed",
    "aips.retention_until": "a curator's date comes back from the newest 'policy assignment' "
    "event that set it ('retention of AIP ... set to <date>'), to the day (midnight UTC), when "
    "a later version's METS carries it; without one it is re-derived from the tenant's rules "
    "and the commit time, so a date set after the newest version was written is lost",
    "legal_holds": "restored from the 'policy assignment' events a later version's METS "
    "carries: reason, placed_by (the authorizer) and placed_at (the event's time), and a "
    "lift's lifted_by, lifted_at and lift_reason; ids are new. A hold placed or lifted after "
    "the newest version was written is lost (place it again), and a lift of fewer holds "
    "than stood does not say which (it names catalogue ids): all stay in force, and the "
    "report says so",
    "aips.disposed_at": "set to the update time of the first LTFS index generation that no "
    "longer lists the AIP (seconds after the approval)",
    "cartridges.state (full, suspect, failed, retired), errors, mounts, updated_at": "the "
    "catalogue's judgement of a cartridge and its counters; written cartridges come back "
    "filling, blank ones scratch",
    "cartridges at a lost site": "a site whose tape folder is gone has no cartridges; the "
    "report lists every version missing there, for `preservation repair`",
    "disposals, api_tokens, idempotency_keys, audits, migrations, "
    "migration_items, migration_files, dips, stage_runs, stage_leases": "requests, "
    "decisions, credentials and operational state: catalogue-only by design",
    "files.validation[].message": "a validator's empty message is written to METS as "
    "'well-formed' (or 'not checked'); the rebuild reads those back as empty. A migration "
    "output's verdicts come from its migration event's checks, which give no message for a "
    "valid file and no version for one not checked",
}

_TAR_PATH = re.compile(r"/(?P<tenant>[^/]+)/(?P<aip>[0-9a-f-]{36})/v(?P<number>[1-9][0-9]*)\.tar\Z")
# What preservation.evidence.on_tape writes beside a tenant's AIPs.
_JOURNAL_PATH = re.compile(r"/(?P<tenant>[^/]+)/\.journal/[^/]+\Z")
_SEGMENT_FILE = re.compile(r"(?P<first>[0-9]{12})-(?P<last>[0-9]{12})\.jsonl\Z")
_EVIDENCE_FILE = re.compile(r"evidence-(?P<stamp>[0-9]{10,})\.jsonl\Z")
_SOURCE_URI = re.compile(
    r"(?:\.\./)+(?P<aip>[^/]+)\.v(?P<version>[0-9]+)/data/(?P<mets>.+/METS\.xml)#(?P<file>.+)\Z"
)
_REPLICATED = re.compile(
    r"[^:]*: v(?P<number>[1-9][0-9]*) to site (?P<site>\S+) cartridge (?P<barcode>\S+)\Z"
)
# What preservation.retention records as "policy assignment" events.
_RETENTION_SET = re.compile(r"retention of AIP \S+ set to (?P<until>\S+)\Z")
_HOLD_PLACED = re.compile(r"legal hold placed on AIP \S+: (?P<reason>.*)\Z", re.S)
_HOLD_LIFTED = re.compile(r"legal hold lifted on AIP \S+: (?P<reason>.*)\Z", re.S)
_BATCH = 5000
_ORGANISATION_ID = "agent-organisation"
_SUBMITTER_ID = "agent-submitter"


# -- the report ---------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    """What was read, what was restored, and what is missing where."""

    sites_read: list[str] = field(default_factory=list)
    sites_lost: dict[str, str] = field(default_factory=dict)  # site -> why
    cartridges: int = 0
    cartridges_written: int = 0
    cartridges_unreadable: dict[str, str] = field(default_factory=dict)  # barcode -> why
    # Cartridges a site should hold and its library does not (a configured emulated
    # barcode gone, or one a replication event names for a copy not found): barcode -> why.
    cartridges_missing: dict[str, str] = field(default_factory=dict)
    tenants: int = 0
    aips: int = 0
    aips_disposed: int = 0
    versions: int = 0
    files: int = 0
    events: int = 0
    # Of the events, those restored exactly from the tenants' journals on tape.
    journal_events: int = 0
    journal_segments: int = 0
    evidence_stamps: int = 0
    holds: int = 0
    copies: int = 0
    copies_disposed: int = 0
    tars_read: int = 0
    bytes_read: int = 0
    # Drive time per site on the emulated libraries' LTO-9 timing (robot moves,
    # loads, locates, reads, unloads): what real drives would spend, one per site.
    tape_seconds: dict[str, float] = field(default_factory=dict)
    # Versions without a copy at a configured site: {"aip_id", "version", "site"}.
    missing: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every site and cartridge read, nothing amiss: the catalogue is all the tapes say."""
        return not (
            self.sites_lost
            or self.cartridges_unreadable
            or self.cartridges_missing
            or self.problems
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "sites_read": self.sites_read,
            "sites_lost": self.sites_lost,
            "cartridges": self.cartridges,
            "cartridges_written": self.cartridges_written,
            "cartridges_unreadable": self.cartridges_unreadable,
            "cartridges_missing": self.cartridges_missing,
            "tenants": self.tenants,
            "aips": self.aips,
            "aips_disposed": self.aips_disposed,
            "versions": self.versions,
            "files": self.files,
            "events": self.events,
            "journal_events": self.journal_events,
            "journal_segments": self.journal_segments,
            "evidence_stamps": self.evidence_stamps,
            "holds": self.holds,
            "copies": self.copies,
            "copies_disposed": self.copies_disposed,
            "tars_read": self.tars_read,
            "bytes_read": self.bytes_read,
            "tape_seconds": {site: round(s, 1) for site, s in self.tape_seconds.items()},
            "missing": self.missing,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
            "not_restored": NOT_ON_TAPE,
        }


Progress = Callable[[str, int, int], None]


# -- reading a tar on tape, header by header ---------------------------------------------------


class _ExtentReader(io.RawIOBase):
    """A file on tape as a seekable stream: the tar module then reads headers, not payload.

    Our writer starts every file on a record of its own at byte 0 with
    fixed-size records (docs/tape-format.md §2), so any byte's record is
    computable: a seek costs a locate, never a read of what lies between.
    The last record read is kept, since a tar's small members share one.
    """

    def __init__(self, device: TapeDevice, blocksize: int, extents: list[Extent], size: int):
        super().__init__()
        self._device = device
        self._blocksize = blocksize
        self._extents = sorted(extents, key=lambda e: e.file_offset)
        self._size = size
        self._pos = 0
        self._cached: tuple[int, int] | None = None
        self._block = b""
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        done = 0
        while done < target.nbytes and self._pos < self._size:
            piece = self._piece(target.nbytes - done)
            target[done : done + len(piece)] = piece
            done += len(piece)
            self._pos += len(piece)
        return done

    def _piece(self, wanted: int) -> bytes:
        extent = None
        for e in self._extents:
            if e.file_offset <= self._pos < e.file_offset + e.byte_count:
                extent = e
                break
        if extent is None:  # a sparse hole reads as zeros
            following = [e.file_offset for e in self._extents if e.file_offset > self._pos]
            end = min([self._size, *following])
            return bytes(min(wanted, end - self._pos))
        within = extent.byte_offset + (self._pos - extent.file_offset)
        block = extent.start_block + within // self._blocksize
        skip = within % self._blocksize
        partition = 0 if extent.partition == "a" else 1
        if self._cached != (partition, block):
            here = self._device.position()
            if (here.partition, here.block) != (partition, block):
                self._device.locate(partition, block)
            self._block = self._device.read_block(self._blocksize)
            if not self._block:
                raise StorageError(f"a filemark inside a file's data at block {block}")
            self.bytes_read += len(self._block)
            self._cached = (partition, block)
        left = extent.file_offset + extent.byte_count - self._pos
        return self._block[skip : skip + min(wanted, left)]


@dataclass
class TarHead:
    """What a version tar says about itself: its bag-info and METS documents, parsed."""

    bag_info: dict[str, list[str]]
    root: Any  # ParsedMets of data/METS.xml
    representations: dict[str, Any]  # rep name -> ParsedMets, those this version holds
    submitted: dict[str, dict[str, str]]  # submitter path -> {algorithm: digest} (version 1)
    bytes_read: int = 0
    # The root METS's sha256, one of the two hashes an evidence record covers per version.
    mets_sha256: str | None = None


def _wanted(rel: str) -> bool:
    if rel in ("bag-info.txt", "data/METS.xml"):
        return True
    parts = rel.split("/")
    if len(parts) == 4 and parts[:2] == ["data", "representations"] and parts[3] == "METS.xml":
        return True
    return (
        len(parts) == 3
        and parts[:2] == ["data", "submission"]
        and (parts[2] == "bag-info.txt" or parts[2].startswith("manifest-"))
    )


def read_tar_head(device: TapeDevice, blocksize: int, node: FileNode, scratch: Path) -> TarHead:
    """Read a version tar's bag-info, root and representation METS, submitted manifests.

    Only headers and those members are read: tarfile seeks over everything
    else. The METS reader takes a file, so each member lands in ``scratch``
    first: a few kilobytes per file of the AIP for its representation METS,
    the size of the rows it becomes.
    """
    from preservation.aip.bag import decode_manifest_path
    from preservation.metadata.reader import read_mets
    from preservation.sip.baginfo import parse_tags

    reader = _ExtentReader(device, blocksize, list(node.extents), node.length)
    found: dict[str, Path] = {}
    mets = hashlib.sha256()
    with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 16), mode="r:") as tar:
        for member in tar:
            top, _, rel = member.name.partition("/")
            if not member.isfile() or ".." in rel.split("/") or not _wanted(rel):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            target = scratch / rel.replace("/", "__")
            with open(target, "wb") as out:
                while chunk := handle.read(1 << 20):
                    out.write(chunk)
                    if rel == "data/METS.xml":
                        mets.update(chunk)
            found[rel] = target
    if "data/METS.xml" not in found or "bag-info.txt" not in found:
        raise StorageError("the tar holds no bag-info.txt or data/METS.xml: not one of our AIPs")
    root = read_mets(found["data/METS.xml"])
    reps = {
        rel.split("/")[2]: read_mets(path)
        for rel, path in found.items()
        if rel.startswith("data/representations/")
    }
    submitted: dict[str, dict[str, str]] = defaultdict(dict)
    for rel, path in found.items():
        name = rel.rsplit("/", 1)[-1]
        if rel.startswith("data/submission/manifest-") and name.endswith(".txt"):
            algorithm = name.removeprefix("manifest-").removesuffix(".txt")
            for line in path.read_text("utf-8").splitlines():
                digest, _, path_in_bag = line.partition(" ")
                if path_in_bag:
                    submitted[decode_manifest_path(path_in_bag.lstrip(" *"))][algorithm] = (
                        digest.lower()
                    )
    return TarHead(
        bag_info=parse_tags(found["bag-info.txt"].read_text("utf-8")),
        root=root,
        representations=reps,
        submitted=dict(submitted),
        bytes_read=reader.bytes_read,
        mets_sha256=mets.hexdigest(),
    )


# -- what each cartridge holds -----------------------------------------------------------------


@dataclass
class _Copy:
    site: str
    barcode: str
    volume_uuid: str
    path: str
    start_block: int | None
    length: int
    sha256: str
    modified: datetime | None
    disposed_at: datetime | None = None  # from the index generation that dropped it
    error: str | None = None  # its tar's head could not be read: a failed copy
    node: FileNode | None = None  # where its bytes are, for a second try elsewhere
    blocksize: int = 0


@dataclass
class _JournalCopy:
    """One copy of a journal file, read whole from one cartridge (they are small)."""

    site: str
    barcode: str
    start_block: int | None
    modified: datetime | None
    data: bytes


@dataclass
class _Version:
    tenant: str
    aip_id: str
    number: int
    copies: list[_Copy] = field(default_factory=list)
    head: TarHead | None = None
    claimed: bool = False  # a site's reader is reading its head now


@dataclass
class _Shared:
    """What the sites' readers share: each site is read by a thread of its own.

    Each version's head is read at one site only, chosen by a hash of its
    name among the sites being read, so the two sites' drives share the
    reading; a version the chosen site lacks (or cannot read) is read from
    another copy afterwards (:func:`_read_missing_heads`).
    """

    versions: dict[tuple[str, int], _Version]
    report: RebuildReport
    aips: _AIPProgress
    readers: list[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (tenant, path) -> every copy of that journal file found, at any site.
    journal: dict[tuple[str, str], list[_JournalCopy]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def reads_here(self, key: tuple[str, int], site: str) -> bool:
        n = zlib.crc32(f"{key[0]}/v{key[1]}".encode()) % len(self.readers)
        return self.readers[n] == site

    def add(self, key: tuple[str, int], tenant: str, copy: _Copy) -> _Version | None:
        """Record a copy; the version, claimed, if this site is to read its head now."""
        with self.lock:
            version = self.versions.get(key)
            if version is None:
                version = self.versions[key] = _Version(tenant, key[0], key[1])
                self.aips.found()
            version.copies.append(copy)
            if version.head is None and not version.claimed and self.reads_here(key, copy.site):
                version.claimed = True
                return version
            return None

    def read(self, version: _Version, head: TarHead) -> None:
        with self.lock:
            version.head = head
            self.report.tars_read += 1
            self.report.bytes_read += head.bytes_read
            self.aips.read()

    def journal_file(self, tenant: str, path: str, copy: _JournalCopy, bytes_read: int) -> None:
        with self.lock:
            copies = self.journal[(tenant, path)]
            for other in copies:
                if other.data == copy.data:
                    copy.data = other.data  # the other site's copy, held once: segments grow
                    break
            copies.append(copy)
            self.report.bytes_read += bytes_read

    def problem(self, what: str) -> None:
        with self.lock:
            self.report.problems.append(what)

    def failed(self, version: _Version, copy: _Copy, err: Exception) -> None:
        with self.lock:
            version.claimed = False
            copy.error = f"its METS could not be read during the rebuild: {err}"
            self.report.problems.append(
                f"{copy.site}/{copy.barcode}{copy.path}: unreadable head: {err}"
            )


def _ltfs_time(text_value: str | None) -> datetime | None:
    if not text_value:
        return None
    value = text_value.strip().rstrip("Z")
    head, _, frac = value.partition(".")
    try:
        parsed = datetime.fromisoformat(head + (f".{frac[:6]}" if frac else ""))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


def _uids(directory: DirectoryNode) -> Iterator[tuple[int, str, FileNode | DirectoryNode]]:
    stack: list[tuple[str, DirectoryNode]] = [("", directory)]
    yield directory.uid, "/", directory
    while stack:
        prefix, node = stack.pop()
        for name, child in node.children.items():
            path = f"{prefix}/{name}"
            yield child.uid, path, child
            if isinstance(child, DirectoryNode):
                stack.append((path, child))


def _read_index_at(device: TapeDevice, location: IndexLocation) -> Index:
    device.locate(0 if location.partition == "a" else 1, location.block)
    data = bytearray()
    while True:
        block = device.read_block(1 << 20)
        if not block:
            break
        data += block
    return Index.from_xml(bytes(data))


def _removed_files(
    device: TapeDevice, newest: Index, problems: list[str], barcode: str
) -> list[tuple[str, FileNode, Index]]:
    """Files older index generations list and the newest does not, with the index that dropped them.

    LTFS gives every file and folder a uid from a counter the index keeps
    (``highestfileuid``): when every uid up to it is still listed, nothing
    ever left the volume and no older generation needs reading. Otherwise
    the generations are walked back, each once, until every missing uid is
    found.
    """
    listed = {uid for uid, _, _ in _uids(newest.root)}
    missing = set(range(1, newest.highest_uid + 1)) - listed
    found: list[tuple[str, FileNode, Index]] = []
    newer, location = newest, newest.previous
    seen: set[IndexLocation] = set()
    while missing and location is not None and location not in seen:
        seen.add(location)
        try:
            older = _read_index_at(device, location)
        except PreservationError as err:
            problems.append(f"{barcode}: index generation at {location}: {err}")
            break
        for uid, path, node in _uids(older.root):
            if uid in missing:
                missing.discard(uid)
                if isinstance(node, FileNode):
                    found.append((path, node, newer))
        newer, location = older, older.previous
    return found


# -- the rebuild ---------------------------------------------------------------------------------


_CHECKED_TABLES = (Tenant, AIP, SIP, AIPVersion, File, PremisEvent, TapeCopy, Cartridge)


def catalogue_is_empty(session: Session) -> bool:
    """Nothing in it but, at most, cartridges registered as scratch with no copy on them.

    Start-up beside a real (SCSI) library registers the barcodes the catalogue
    does not know as scratch before any mount (marked unverified, so the first
    mount refuses one that holds data): a lost catalogue so gains those rows
    before anyone runs the rebuild, which replaces them.
    """
    if session.scalar(
        select(func.count()).select_from(Cartridge).where(Cartridge.state != CartridgeState.SCRATCH)
    ):
        return False
    return all(
        not session.scalar(select(func.count()).select_from(model))
        for model in _CHECKED_TABLES
        if model is not Cartridge
    )


def resolve_site(ctx: Context, name: str) -> str:
    """A site by name (``site-a``) or by its barcode letter (``A``)."""
    sites = list(ctx.settings.sites)
    if name in sites:
        return name
    for site in sites:
        if site_letter(ctx.settings, site) == name.upper():
            return site
    raise NotFoundError(f"no site {name!r}; configured: {', '.join(sites)}", site=name)


def rebuild_catalogue(
    ctx: Context,
    *,
    sites: list[str] | None = None,
    progress: Progress | None = None,
    write: bool = True,
) -> RebuildReport:
    """Read every cartridge of ``sites`` (default: all) and write the catalogue they describe.

    Refuses a catalogue that holds anything (rule ``catalogue-not-empty``):
    rows a running archive has and the tapes do not (SIPs in flight,
    disposals, tokens) would be lost or contradicted, so the operator
    points the command at a new, empty database instead. ``write=False``
    reads exactly as much and writes nothing (the benchmark's baseline).
    """
    started = time.perf_counter()
    update_progress = progress or (lambda what, done, total: None)
    report = RebuildReport()
    if write:
        with session_scope(ctx.sessions) as session:
            if not catalogue_is_empty(session):
                url = ctx.settings.catalog_url
                where = (
                    f"move the SQLite file ({url.removeprefix('sqlite:///')}) aside"
                    if url.startswith("sqlite")
                    else "create a new database"
                )
                raise ConflictError(
                    "the catalogue is not empty: a rebuild from the tapes writes into an empty "
                    "catalogue only, so nothing it holds beyond the tapes (SIPs in flight, "
                    f"disposals, holds, tokens) is lost or contradicted. To rebuild, {where} "
                    "and point PRESERVATION_DATABASE_URL at an empty one (or leave it unset "
                    "for the default SQLite file), then run it again",
                    rule="catalogue-not-empty",
                )
    chosen = list(dict.fromkeys(sites or ctx.settings.sites))  # each site once, in order
    versions: dict[tuple[str, int], _Version] = {}
    cartridges: list[dict[str, Any]] = []
    gone: dict[str, set[str]] = defaultdict(set)  # site -> cartridges it should hold, not there
    scratch = Path(tempfile.mkdtemp(prefix="rebuild-", dir=_scratch_parent(ctx)))
    try:
        # The libraries exactly as the archive builds them (site file, emulated or
        # SCSI), but read-only: no lock, no cartridge added, none registered, and
        # so none of build_sites' refusal of cartridges the catalogue lacks.
        readers = build_sites(replace(ctx, cache={}, read_only=True), durability="none")
        specs = {spec.name: spec for spec in site_specs(ctx.settings)}
        capacity = {name: spec.capacity for name, spec in specs.items()}
        libraries: dict[str, TapeLibrary] = {}
        work: list[tuple[str, TapeLibrary, str]] = []
        for site in chosen:
            library = readers[site].library
            cartridge_dir = getattr(library, "cartridge_dir", None)
            if isinstance(library, EmulatedLibrary) and not library.cartridge_dir.is_dir():
                report.sites_lost[site] = f"no tape folder at {cartridge_dir}"
                continue
            try:
                barcodes = library.barcodes()
            except StorageError as err:  # a real library's changer that does not answer
                report.sites_lost[site] = f"its library cannot be read: {err}"
                continue
            report.sites_read.append(site)
            libraries[site] = library
            work += [(site, library, barcode) for barcode in barcodes]
            if isinstance(library, EmulatedLibrary):
                # The site file's cartridges are made at start-up and never removed
                # but by `tape export`: one gone held copies no index can now name.
                spec = specs[site]
                letter = site_letter(ctx.settings, site)
                for number in range(1, spec.cartridges + 1):
                    barcode = barcode_for(letter, number, spec.media)
                    if barcode in barcodes:
                        continue
                    exported = ctx.settings.tape_dir / site / "exported" / barcode
                    gone[site].add(barcode)
                    report.cartridges_missing[barcode] = (
                        f"site {site}: exported (`tape export`), not in the library"
                        if exported.exists()
                        else f"site {site}: one of its {spec.cartridges} cartridges, gone "
                        f"from {cartridge_dir}"
                    )
        clock_start = {site: lib.clock.now() for site, lib in libraries.items()}
        # Two bars: cartridges (known from the slots), and AIP versions, whose
        # total grows as each cartridge's index names its tars.
        aips = _AIPProgress(update_progress)
        shared = _Shared(versions, report, aips, list(libraries))
        done = [0]

        def read_site(site: str) -> list[dict[str, Any]]:
            rows = []
            (scratch / site).mkdir()
            for barcode in [b for s, _, b in work if s == site]:
                rows.append(
                    _read_cartridge(
                        libraries[site], site, capacity[site], barcode, shared, scratch / site
                    )
                )
                with shared.lock:
                    done[0] += 1
                    update_progress("cartridges", done[0], len(work))
            return rows

        # The sites are read at once, each by its own drive, as two data centres would be.
        with ThreadPoolExecutor(max_workers=max(1, len(libraries))) as pool:
            for rows in pool.map(read_site, list(libraries)):
                cartridges += rows
        _read_missing_heads(libraries, shared, scratch / "again")
        update_progress("AIP versions", aips.done, aips.total)
        report.cartridges_written = sum(
            1 for row in cartridges if row["state"] is not CartridgeState.SCRATCH
        )
        report.tape_seconds = {
            site: lib.clock.now() - clock_start[site] for site, lib in libraries.items()
        }
        for site in ctx.settings.sites:
            if site not in chosen:
                report.sites_lost.setdefault(site, "not asked for (--site)")
        report.cartridges = len(cartridges)
        if write:
            _write_catalogue(
                ctx, versions, shared.journal, cartridges, gone, report, update_progress
            )
            _clear_unverified_marks(libraries, cartridges)
        else:
            report.versions = len(versions)
            report.aips = len({aip for aip, _ in versions})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _clear_unverified_marks(
    libraries: dict[str, TapeLibrary], cartridges: list[dict[str, Any]]
) -> None:
    """A real library's unverified marks on the cartridges now catalogued as written.

    Start-up marked them when the catalogue did not know them, so that their
    first mount refuses them as uncatalogued data; the catalogue knows them
    now. A blank or unreadable one keeps its mark, checked at its first mount.
    """
    for site, library in libraries.items():
        marks = getattr(library, "unverified_dir", None)
        if not isinstance(marks, Path) or not marks.is_dir():
            continue
        for row in cartridges:
            if row["site"] == site and row["state"] is CartridgeState.FILLING:
                (marks / row["barcode"]).unlink(missing_ok=True)


class _AIPProgress:
    """The "AIP versions" bar: read so far, of those the indexes named so far."""

    def __init__(self, update: Progress) -> None:
        self._update = update
        self.total = 0
        self.done = 0

    def found(self) -> None:
        self.total += 1

    def read(self) -> None:
        self.done += 1
        if self.done % 50 == 0 or self.done == self.total:
            self._update("AIP versions", self.done, self.total)


def _scratch_parent(ctx: Context) -> Path | None:
    """Under the data root's staging folder when it exists: a large METS is not /tmp's to hold."""
    staging = Path(ctx.settings.staging_dir)
    return staging if staging.is_dir() else None


def _read_cartridge(
    library: TapeLibrary,
    site: str,
    capacity: int,
    barcode: str,
    shared: _Shared,
    scratch: Path,
) -> dict[str, Any]:
    """One cartridge: its row, and every version tar it lists now or listed once."""
    row: dict[str, Any] = {
        "barcode": barcode,
        "site": site,
        "state": CartridgeState.SCRATCH,
        "volume_uuid": None,
        "capacity": capacity,
        "used": 0,
        "errors": 0,
        "mounts": 0,
        "reclaimable": 0,
    }
    # An emulated cartridge's folder tells blank from written without a drive;
    # a real one is loaded, and is blank when both partitions end at block 0.
    if isinstance(library, EmulatedLibrary):
        if EmulatedCartridge(library.cartridge_path(barcode), barcode).is_blank():
            return row
    report = shared.report
    try:
        device = library.mount(barcode)
    except PreservationError as err:
        report.cartridges_unreadable[barcode] = str(err)
        report.problems.append(f"site {site}: cartridge {barcode} cannot be mounted: {err}")
        row["state"] = CartridgeState.SUSPECT
        return row
    try:
        if not isinstance(library, EmulatedLibrary) and _is_blank(device):
            return row
        volume = LTFSVolume.mount(device, barcode, read_only=True)
        row["volume_uuid"] = volume.volume_uuid
        row["state"] = CartridgeState.FILLING
        space = device.status().partitions[1]
        if space.capacity is not None:
            row["capacity"] = space.capacity
            remaining = space.remaining if space.remaining is not None else volume.free_bytes
            row["used"] = max(0, space.capacity - remaining)
        listed = [(path, node, None) for path, node in volume.index.walk()]
        removed = _removed_files(device, volume.index, report.problems, barcode)
        for path, node, dropped_by in [*listed, *removed]:
            in_journal = _JOURNAL_PATH.match(path)
            if in_journal is not None:
                if dropped_by is None:  # a journal file is never disposed of
                    tenant = in_journal["tenant"]
                    _read_journal_file(
                        device, volume.blocksize, site, barcode, tenant, path, node, shared
                    )
                continue
            match = _TAR_PATH.match(path)
            if match is None:
                continue
            key = (match["aip"], int(match["number"]))
            sha = node.xattrs.get(SHA256_XATTR)
            copy = _Copy(
                site=site,
                barcode=barcode,
                volume_uuid=volume.volume_uuid,
                path=path,
                start_block=min((e.start_block for e in node.extents), default=None),
                length=node.length,
                sha256=sha.decode("ascii").strip().lower() if sha else "",
                modified=_ltfs_time(node.modify_time),
                disposed_at=_ltfs_time(dropped_by.update_time) if dropped_by else None,
                node=node,
                blocksize=volume.blocksize,
            )
            if copy.disposed_at is not None:
                row["reclaimable"] += node.length
            version = shared.add(key, match["tenant"], copy)
            if version is not None:
                _read_head(device, version, copy, shared, scratch)
    except PreservationError as err:
        report.cartridges_unreadable[barcode] = str(err)
        report.problems.append(f"site {site}: cartridge {barcode} holds no readable LTFS: {err}")
        row["state"] = CartridgeState.SUSPECT
    finally:
        try:
            library.unmount(barcode)
        except PreservationError as err:
            log.warning("rebuild: unmounting %s: %s", barcode, err)
    return row


def _read_journal_file(
    device: TapeDevice,
    blocksize: int,
    site: str,
    barcode: str,
    tenant: str,
    path: str,
    node: FileNode,
    shared: _Shared,
) -> None:
    """A journal file, whole and as it is: which copy to trust is decided once all are read."""
    reader = _ExtentReader(device, blocksize, list(node.extents), node.length)
    try:
        data = reader.readall()
    except (PreservationError, OSError) as err:
        shared.problem(f"{site}/{barcode}{path}: unreadable journal file: {err}")
        return
    copy = _JournalCopy(
        site=site,
        barcode=barcode,
        start_block=node.extents[0].start_block if node.extents else None,
        modified=_ltfs_time(node.modify_time),
        data=bytes(data),
    )
    shared.journal_file(tenant, path, copy, reader.bytes_read)


def _read_head(
    device: TapeDevice, version: _Version, copy: _Copy, shared: _Shared, scratch: Path
) -> None:
    assert copy.node is not None
    try:
        shared.read(version, read_tar_head(device, copy.blocksize, copy.node, scratch))
    except (PreservationError, OSError, tarfile.TarError) as err:
        shared.failed(version, copy, err)
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()


def _read_missing_heads(libraries: dict[str, TapeLibrary], shared: _Shared, scratch: Path) -> None:
    """Heads the chosen site did not have or could not read, from another copy.

    The only second mounts of a rebuild, and only when a site lacks a
    version (a copy lost, a site down at ingest) or a copy is damaged; one
    mount per cartridge still, whatever it holds for this pass.
    """
    scratch.mkdir(exist_ok=True)
    wanted: dict[tuple[str, str], list[tuple[_Version, _Copy]]] = defaultdict(list)
    for version in shared.versions.values():
        if version.head is None:
            for copy in version.copies:
                if copy.error is None and copy.node is not None and copy.site in libraries:
                    wanted[(copy.site, copy.barcode)].append((version, copy))
    for (site, barcode), items in sorted(wanted.items()):
        if all(version.head is not None for version, _ in items):
            continue
        library = libraries[site]
        try:
            device = library.mount(barcode)
        except PreservationError as err:
            shared.report.problems.append(f"site {site}: cartridge {barcode}: {err}")
            continue
        try:
            for version, copy in items:
                if version.head is None:
                    _read_head(device, version, copy, shared, scratch)
        finally:
            try:
                library.unmount(barcode)
            except PreservationError as err:
                log.warning("rebuild: unmounting %s: %s", barcode, err)


# -- from what was read to rows ----------------------------------------------------------


def _agent_identifiers(agents: list[Any], tools: set[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """METS agent id -> (catalogue identifier, agents row) for the agents the catalogue keeps.

    The catalogue names a tool ``"<name> <version>"``, except a format
    engine, whose agent version adds its signatures (files name that engine
    as their identifying tool, ``fido 1.6.1``, which settles it), and the
    virus scanner, whose version already starts with its name.
    """
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for agent in agents:
        if agent.id in (_ORGANISATION_ID, _SUBMITTER_ID):
            continue
        if agent.type == "software":
            identifier = f"{agent.name} {agent.version}" if agent.version else agent.name
            if agent.version and agent.version.startswith(agent.name + " "):
                identifier = agent.version  # named in full already (the virus scanner)
            for tool in tools:
                rest = tool.removeprefix(agent.name + " ")
                if rest != tool and agent.version and agent.version.startswith(rest + " ("):
                    identifier = tool
        else:
            identifier = agent.name
        out[agent.id] = (
            identifier,
            {
                "identifier": identifier,
                "name": agent.name,
                "type": agent.type,
                "version": agent.version,
            },
        )
    return out


def _event_row(event: Event, tenant: str, aip_id: str, agent_ids: dict[str, Any]) -> dict[str, Any]:
    agents: dict[str, list[str]] = {}
    for link in event.agents:
        if link.agent_id == _ORGANISATION_ID and link.role == "authorizer":
            continue  # every event names the tenant's organisation: METS only
        identifier = agent_ids.get(link.agent_id, (link.agent_id, None))[0]
        agents.setdefault(link.role or "", []).append(identifier)
    return {
        "uuid": str(event.id),
        "tenant_id": tenant,
        "aip_id": aip_id,
        "type": event.type,
        "occurred_at": event.datetime,
        "detail": event.detail or "",
        "outcome": event.outcome,
        "outcome_detail": event.outcome_detail or "",
        "agents": agents,
        "objects": {},
    }


def _identification(f: FileObject, engines: dict[str, str]) -> dict[str, Any]:
    engine, _, engine_version = (f.format.tool or "").partition(" ")
    return {
        "puids": list(f.format.puids),
        "engine": engine or None,
        "engine_version": engine_version or None,
        "signature_release": engines.get(f.format.tool or ""),
        "warning": f.format.warning,
        "error": f.format.error,
    }


def _validation(events: list[Event]) -> list[dict[str, Any]] | None:
    verdicts = []
    for e in events:
        if e.type != "validation" or not (e.detail or "").startswith("format validation with "):
            continue
        tool, _, version = (e.detail or "").removeprefix("format validation with ").partition(" ")
        valid = True if e.outcome == "success" else False if e.outcome == "failure" else None
        message = e.outcome_detail or ""
        if (valid is True and message == "well-formed") or (
            valid is None and message == "not checked"
        ):
            message = ""
        verdicts.append({"tool": tool, "version": version, "valid": valid, "message": message})
    return verdicts or None


def _ingest_valid(validation: list[dict[str, Any]] | None) -> bool | None:
    """As characterisation decides: any failure is invalid, any success valid."""
    verdicts = [x["valid"] for x in validation or []]
    if any(v is False for v in verdicts):
        return False
    return True if any(v is True for v in verdicts) else None


def _output_valid(validation: list[dict[str, Any]] | None) -> bool | None:
    """As a migration decides for its output: valid only if every validator said so."""
    verdicts = [x["valid"] for x in validation or []]
    if any(v is False for v in verdicts):
        return False
    return True if verdicts and all(v is True for v in verdicts) else None


_CHECK = re.compile(r"(?:PASS|FAIL) validation \((?P<tool>[^)]*)\): (?P<rest>.*)\Z", re.S)


def _checked_output(events: list[Event], file_id: str) -> list[dict[str, Any]] | None:
    """A migration output's verdicts, from the checks its ``migration`` event lists.

    Each is a line ``PASS validation (<tool>): valid (<version>)``, ``FAIL
    validation (<tool>): invalid (<version>): <message>`` or ``... not
    checked: <message>`` (whose version the METS does not give).
    """
    verdicts = []
    for e in events:
        if e.type != "migration" or not any(
            o.object_id == file_id and o.role == "outcome" for o in e.objects
        ):
            continue
        for line in (e.outcome_detail or "").splitlines():
            m = _CHECK.match(line)
            if m is None:
                continue
            tool, rest = m["tool"], m["rest"]
            if rest.startswith(("valid (", "invalid (")):
                version, message = _parenthesised(rest[rest.index("(") :])
                valid = rest.startswith("valid (")
                verdicts.append(
                    {
                        "tool": tool,
                        "version": version,
                        "valid": valid,
                        "message": message.removeprefix(": "),
                    }
                )
            elif rest.startswith("not checked: "):
                verdicts.append(
                    {
                        "tool": tool,
                        "version": None,
                        "valid": None,
                        "message": rest.removeprefix("not checked: "),
                    }
                )
    return verdicts or None


def _parenthesised(text: str) -> tuple[str, str]:
    """``(a (b) c)rest`` -> (``a (b) c``, ``rest``): a version holds parentheses itself."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[1:i], text[i + 1 :]
    return text[1:], ""


# -- the journal, from the copies found ------------------------------------------------------------


_T = TypeVar("_T")


@dataclass
class _Chosen:
    """A journal file as restored: its bytes, and the copies that hold exactly them (one a site)."""

    path: str
    data: bytes
    copies: list[_JournalCopy]

    @property
    def written(self) -> datetime:
        times = [c.modified for c in self.copies if c.modified is not None]
        return min(times) if times else datetime.now(UTC)


@dataclass
class _Segment:
    parsed: ParsedSegment
    file: _Chosen
    events: list[dict[str, Any]]
    token: bytes | None = None
    stamped_at: datetime | None = None
    reply: _Chosen | None = None


@dataclass
class _Bundle:
    header: dict[str, Any]
    leaves: list[dict[str, Any]]
    token: bytes
    stamped_at: datetime
    file: _Chosen | None = None


@dataclass
class _TenantJournal:
    tenant: str
    segments: list[_Segment] = field(default_factory=list)
    bundles: list[_Bundle] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for s in self.segments for e in s.events]


def _pick(
    path: str,
    copies: list[_JournalCopy],
    read: Callable[[bytes], _T],
    report: RebuildReport,
    prefer: Callable[[_T], bool] = lambda _: False,
) -> tuple[_T, _Chosen] | None:
    """The copy to restore, and every site holding those very bytes.

    ``read`` raises saying what is wrong with a copy (a damaged block, an
    edit). A copy that fails is never chosen over one that reads. Two that
    read and differ are a tape rewritten by someone who knew the hash rule:
    only a time-stamp (``prefer``) tells the original, and without one
    neither is restored, rather than a forgery by chance.
    """
    by_bytes: dict[bytes, list[_JournalCopy]] = defaultdict(list)
    for c in copies:
        by_bytes[c.data].append(c)

    def where(data: bytes) -> str:
        return ", ".join(sorted(f"{c.site}/{c.barcode}" for c in by_bytes[data]))

    sound: list[tuple[_T, bytes]] = []
    for data in by_bytes:
        try:
            sound.append((read(data), data))
        except (ValueError, KeyError, TypeError, IndexError, PreservationError) as err:
            why = str(err) if isinstance(err, ValueError | PreservationError) else repr(err)
            report.problems.append(f"{path} at {where(data)}: {why}")
    if len(sound) > 1:
        preferred = [s for s in sound if prefer(s[0])]
        if len(preferred) != 1:
            report.problems.append(
                f"{path}: the copies at {'; '.join(where(d) for _, d in sound)} differ and each "
                "reads whole: none is restored (`preservation verify-history` compares them "
                "once the catalogue is back)"
            )
            return None
        for _, other in sound:
            if other != preferred[0][1]:
                report.problems.append(
                    f"{path} at {where(other)}: differs from the time-stamped copy; not restored"
                )
        sound = preferred
    if not sound:
        return None
    value, data = sound[0]
    newest: dict[str, _JournalCopy] = {}
    for c in sorted(by_bytes[data], key=lambda c: (c.modified or _EPOCH, c.barcode)):
        newest[c.site] = c  # a write whose read-back failed was tried again elsewhere, later
    return value, _Chosen(path, data, [newest[site] for site in sorted(newest)])


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _journal_row(tenant: str, event: journal.JournalEvent) -> dict[str, Any]:
    """An event of the journal as the row it was: a row that hashes otherwise is refused."""
    fields = json.loads(event.text)
    row = {
        "uuid": fields["uuid"],
        "tenant_id": fields["tenant"],
        "seq": fields["seq"],
        "sip_id": fields["sip"],
        "aip_id": fields["aip"],
        "type": fields["type"],
        "occurred_at": datetime.fromisoformat(fields["at"]).replace(tzinfo=UTC),
        "detail": fields["detail"],
        "outcome": fields["outcome"],
        "outcome_detail": fields["outcome_detail"],
        "agents": fields["agents"],
        "objects": fields["objects"],
        "prev_hash": fields["prev"],
        "hash": event.hash,
    }
    again = journal.canonical(journal.event_fields(SimpleNamespace(**row))).encode()
    if row["tenant_id"] != tenant or row["seq"] != event.seq or again != event.text:
        raise ValueError(f"event {event.seq} does not read back as the row it was")
    return row


def _read_segment(
    tenant: str, first: int, last: int, data: bytes
) -> tuple[ParsedSegment, list[dict[str, Any]]]:
    """A segment copy checked as verify-history checks one, and its events as rows."""
    parsed = journal.parse_segment(data, "the segment")
    if parsed.problems:
        raise ValueError("; ".join(parsed.problems[:3]))
    header = parsed.header
    if (
        header.get("format") != journal.FORMAT
        or header.get("tenant") != tenant
        or (parsed.first_seq, parsed.last_seq) != (first, last)
    ):
        raise ValueError(f"its header does not name events {first}-{last} of tenant {tenant}")
    rows: list[dict[str, Any]] = []
    prev, seq = header.get("prev"), first
    for e in parsed.events:
        if e.seq != seq:
            raise ValueError(f"event {seq} is missing (found {e.seq})")
        if not e.intact:
            raise ValueError(f"event {e.seq} does not hash to its recorded hash")
        if e.prev != prev:
            raise ValueError(f"event {e.seq} does not follow event {e.seq - 1}")
        rows.append(_journal_row(tenant, e))
        prev, seq = e.hash, seq + 1
    if seq - 1 != last or prev != parsed.head:
        raise ValueError("it does not end at the head its header names")
    return parsed, rows


def _read_reply(data: bytes) -> tuple[bytes, datetime, str]:
    """A segment's RFC 3161 reply: its token, the token's time and the hash it stamps (hex)."""
    from preservation.evidence.on_tape import reply_token
    from preservation.evidence.tsa import token_info

    try:
        token = reply_token(data)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"not an RFC 3161 reply: {err}") from None
    info = token_info(token)
    return token, info.gen_time, info.imprint.hex()


def _stamped_heads(copies: list[_JournalCopy]) -> set[str]:
    heads = set()
    for c in copies:
        try:
            heads.add(_read_reply(c.data)[2])
        except (ValueError, PreservationError):
            continue
    return heads


def _head_stamped(heads: set[str], segment: tuple[ParsedSegment, Any]) -> bool:
    return segment[0].head in heads


def _over(head: str | None, reply: tuple[bytes, datetime, str]) -> bool:
    return reply[2] == head


def _read_bundle(tenant: str, stamp_id: int, data: bytes) -> _Bundle:
    """An evidence file, each leaf's reduced tree checked to lead to the root its token stamps."""
    from preservation.evidence import hashtree
    from preservation.evidence.on_tape import EVIDENCE_FORMAT
    from preservation.evidence.periods import pack_reduced
    from preservation.evidence.tsa import token_info

    lines = data.decode("utf-8").splitlines()
    header = json.loads(lines[0])["evidence"]
    if (
        header.get("format") != EVIDENCE_FORMAT
        or header.get("tenant") != tenant
        or header.get("stamp") != stamp_id
        or header.get("algorithm") not in hashtree.ALGORITHMS
    ):
        raise ValueError(f"its header does not name stamp {stamp_id} of tenant {tenant}")
    algorithm = header["algorithm"]
    root = bytes.fromhex(header["root"])
    token = base64.b64decode(header["time_stamp_token"], validate=True)
    info = token_info(token)
    if info.imprint != root:
        raise ValueError("its time-stamp is not over its tree's root")
    leaves = []
    for position, line in enumerate(lines[1:]):
        leaf = json.loads(line)["leaf"]
        hashes = [bytes.fromhex(h) for h in leaf["hashes"]]
        reduced = [[bytes.fromhex(h) for h in level] for level in leaf["reduced"]]
        if (
            leaf["position"] != position
            or not hashes
            or not set(hashes) <= set(reduced[0] if reduced else [])
            or hashtree.verify_reduced(hashes[0], reduced, algorithm) != root
        ):
            raise ValueError(f"leaf {position} does not lead to the root")
        leaves.append(
            {
                "position": position,
                "hashes": b"".join(hashes),
                "reduced": pack_reduced(reduced),
                "aip": leaf.get("aip"),
                "version": leaf.get("version"),
                "covers_stamp": leaf.get("covers_stamp"),
            }
        )
    if len(leaves) != header["leaves"]:
        raise ValueError(f"{len(leaves)} leaves, its header says {header['leaves']}")
    return _Bundle(header, leaves, token, info.gen_time)


def _tenant_journals(
    found: dict[tuple[str, str], list[_JournalCopy]], report: RebuildReport
) -> dict[str, _TenantJournal]:
    """Each tenant's journal as it can be restored, the copies to trust chosen."""
    files: dict[str, dict[str, list[_JournalCopy]]] = defaultdict(dict)
    for (tenant, path), copies in found.items():
        files[tenant][path] = copies
    out: dict[str, _TenantJournal] = {}
    for tenant, paths in sorted(files.items()):
        tj = _TenantJournal(tenant)
        _restore_segments(tj, paths, report)
        for path in sorted(paths):
            m = _EVIDENCE_FILE.match(path.rsplit("/", 1)[-1])
            if m is None:
                continue
            stamp_id = int(m["stamp"])
            picked = _pick(path, paths[path], partial(_read_bundle, tenant, stamp_id), report)
            if picked is not None:
                bundle, chosen = picked
                bundle.file = chosen
                tj.bundles.append(bundle)
        if tj.segments or tj.bundles:
            out[tenant] = tj
    return out


def _restore_segments(
    tj: _TenantJournal, paths: dict[str, list[_JournalCopy]], report: RebuildReport
) -> None:
    """The segments from event 1 on, each following the one before, until one cannot."""
    tenant = tj.tenant
    starting: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for path in paths:
        m = _SEGMENT_FILE.match(path.rsplit("/", 1)[-1])
        if m is not None:
            starting[int(m["first"])].append((int(m["last"]), path))
    expected, prev = 1, None
    seen: set[str] = set()
    while starting:
        candidates = starting.pop(expected, [])
        restored: _Segment | None = None
        # A later sync's segment can start where an unreadable one did: longest first.
        for last, path in sorted(candidates, reverse=True):
            reply = path.removesuffix(".jsonl") + ".tsr"
            stamped = _stamped_heads(paths.get(reply, []))
            picked = _pick(
                path,
                paths[path],
                partial(_read_segment, tenant, expected, last),
                report,
                prefer=partial(_head_stamped, stamped),
            )
            if picked is None:
                continue
            (parsed, rows), chosen = picked
            uuids = {r["uuid"] for r in rows}
            if parsed.header.get("prev") != prev or len(uuids) != len(rows) or uuids & seen:
                report.problems.append(
                    f"{path}: does not follow on from event {expected - 1} of the segment "
                    "before (or repeats an event)"
                )
                continue
            restored = _Segment(parsed, chosen, rows)
            if reply in paths:
                head = parsed.head
                found = _pick(reply, paths[reply], _read_reply, report, partial(_over, head))
                if found is not None and found[0][2] == head:
                    restored.token, restored.stamped_at, _ = found[0]
                    restored.reply = found[1]
                elif found is not None:
                    report.problems.append(f"{reply}: its time-stamp is not over {path}'s head")
            seen |= uuids
            break
        if restored is None:
            later = ", ".join(str(f) for f in sorted(starting))
            report.problems.append(
                f"tenant {tenant}: no segment of the journal on tape starting at event "
                f"{expected} could be restored"
                + (f" (segments from {later} follow)" if later else "")
                + f": the journal comes back up to event {expected - 1}, the events after it "
                "that METS holds are chained on from there, with new hashes"
            )
            return
        tj.segments.append(restored)
        expected, prev = restored.parsed.last_seq + 1, restored.parsed.head


def _write_journal(
    session: Session,
    journals: dict[str, _TenantJournal],
    version_ids: dict[tuple[str, int], int],
    report: RebuildReport,
) -> None:
    """The journal's rows, after the versions: a leaf names its version by the new id.

    Stamp ids are kept as the evidence files give them, since those files name
    one another by them (``renews``, ``closes``, ``covers_stamp``) and a later
    sync regenerates each file from the rows to check it against the tape.
    """
    from preservation.evidence.on_tape import KIND_EVIDENCE, KIND_SEGMENT, KIND_STAMP
    from preservation.evidence.periods import KIND_REHASH

    files: list[tuple[dict[str, Any], _Chosen]] = []
    segments = [(tj.tenant, s) for tj in journals.values() for s in tj.segments]
    segment_ids = _insert_returning(
        session,
        JournalSegment,
        [
            {
                "tenant_id": tenant,
                "first_seq": s.parsed.first_seq,
                "last_seq": s.parsed.last_seq,
                "prev_hash": s.parsed.header.get("prev"),
                "head_hash": s.parsed.head,
                "sha256": hashlib.sha256(s.file.data).hexdigest(),
                "size": len(s.file.data),
                "created_at": s.file.written,
                "token": s.token,
                "stamped_at": s.stamped_at,
                "stamp_error": None,
            }
            for tenant, s in segments
        ],
    )
    for (tenant, s), segment_id in zip(segments, segment_ids, strict=True):
        files.append(
            ({"tenant_id": tenant, "kind": KIND_SEGMENT, "segment_id": segment_id}, s.file)
        )
        if s.reply is not None:
            files.append(
                ({"tenant_id": tenant, "kind": KIND_STAMP, "segment_id": segment_id}, s.reply)
            )
    report.journal_segments = len(segments)

    bundles: dict[int, _Bundle] = {}
    for tj in journals.values():
        for b in tj.bundles:
            if b.header["stamp"] in bundles:
                report.problems.append(
                    f"evidence stamp {b.header['stamp']}: found for two tenants; only the "
                    "first is restored"
                )
                continue
            bundles[b.header["stamp"]] = b
    renewed_by: dict[int, int] = {}
    closed: set[int] = set()
    for stamp_id, b in bundles.items():
        for old in b.header.get("renews") or []:
            renewed_by[int(old)] = stamp_id
        if b.header["kind"] == KIND_REHASH:
            closed.update(int(old) for old in b.header.get("closes") or [])
    _bulk(
        session,
        EvidenceStamp,
        [
            {
                "id": stamp_id,
                "tenant_id": b.header["tenant"],
                "kind": b.header["kind"],
                "algorithm": b.header["algorithm"],
                "root": bytes.fromhex(b.header["root"]),
                "leaves": b.header["leaves"],
                "token": b.token,
                "created_at": b.stamped_at,
                "stamped_at": b.stamped_at,
                "stamp_error": None,
                "renewed_by": None,
                "closed": stamp_id in closed,
            }
            for stamp_id, b in sorted(bundles.items())
        ],
    )
    renewals = [{"id": old, "renewed_by": new} for old, new in renewed_by.items() if old in bundles]
    if renewals:
        session.execute(update(EvidenceStamp), renewals)
    _advance_sequence(session, EvidenceStamp.__tablename__)
    leaves = []
    for stamp_id, b in sorted(bundles.items()):
        for leaf in b.leaves:
            version_id = None
            if leaf["aip"] is not None:
                version_id = version_ids.get((leaf["aip"], int(leaf["version"])))
                if version_id is None:
                    report.problems.append(
                        f"evidence stamp {stamp_id}, leaf {leaf['position']}: AIP {leaf['aip']} "
                        f"v{leaf['version']} was not restored; the leaf names no version"
                    )
            covers = leaf["covers_stamp"]
            if covers is not None and covers not in bundles:
                report.problems.append(
                    f"evidence stamp {stamp_id}, leaf {leaf['position']}: the stamp it renews "
                    f"({covers}) is not on tape; the leaf names none"
                )
                covers = None
            leaves.append(
                {
                    "stamp_id": stamp_id,
                    "aip_version_id": version_id,
                    "covers_stamp_id": covers,
                    "position": leaf["position"],
                    "hashes": leaf["hashes"],
                    "reduced": leaf["reduced"],
                }
            )
        assert b.file is not None
        row = {"tenant_id": b.header["tenant"], "kind": KIND_EVIDENCE, "stamp_id": stamp_id}
        files.append((row, b.file))
    _bulk(session, EvidenceLeaf, leaves)
    report.evidence_stamps = len(bundles)

    file_rows = [
        {
            "segment_id": None,
            "stamp_id": None,
            **row,
            "path": chosen.path,
            "sha256": hashlib.sha256(chosen.data).hexdigest(),
            "size": len(chosen.data),
            "created_at": chosen.written,
        }
        for row, chosen in files
    ]
    file_ids = _insert_returning(session, JournalFile, file_rows)
    _bulk(
        session,
        JournalCopy,
        [
            {
                "file_id": file_id,
                "site": c.site,
                "barcode": c.barcode,
                "start_block": c.start_block,
                "written_at": c.modified or chosen.written,
            }
            for (_, chosen), file_id in zip(files, file_ids, strict=True)
            for c in chosen.copies
        ],
    )


def _insert_returning(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` in batches; their new ids, in the same order."""
    ids: list[int] = []
    for start in range(0, len(rows), _BATCH):
        ids += session.scalars(
            insert(model).returning(model.id, sort_by_parameter_order=True),
            rows[start : start + _BATCH],
        ).all()
    return ids


def _advance_sequence(session: Session, table: str) -> None:
    """PostgreSQL's id sequence past ids given explicitly: the next stamp must not reuse one.

    SQLite numbers a new row after the largest id already there, so needs nothing.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        sql_text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
        )
    )


def _write_catalogue(
    ctx: Context,
    versions: dict[tuple[str, int], _Version],
    journal_found: dict[tuple[str, str], list[_JournalCopy]],
    cartridges: list[dict[str, Any]],
    gone: dict[str, set[str]],
    report: RebuildReport,
    progress: Progress,
) -> None:
    from preservation.catalog.search import index_aips
    from preservation.metadata.dc_input import dc_as_record
    from preservation.rules import retention_until, rules_for

    by_aip: dict[str, list[_Version]] = defaultdict(list)
    for v in versions.values():
        if v.head is None:
            report.problems.append(
                f"AIP {v.aip_id} v{v.number}: no copy's METS could be read; not restored"
            )
            continue
        by_aip[v.aip_id].append(v)
    for vs in by_aip.values():
        vs.sort(key=lambda v: v.number)
    configured = list(ctx.settings.sites)
    highest: dict[str, int] = defaultdict(int)
    for aip_id, number in versions:
        highest[aip_id] = max(highest[aip_id], number)
    replicated, unread = _unread_sites(versions, cartridges, gone, report)
    journals = _tenant_journals(journal_found, report)

    tenants: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    sips: list[dict[str, Any]] = []
    aips: list[dict[str, Any]] = []
    version_rows: list[tuple[_Version, dict[str, Any]]] = []
    events: dict[str, dict[str, Any]] = {}
    indexed: list[str] = []
    holds: list[dict[str, Any]] = []
    curated: dict[str, datetime | None] = {}  # AIP -> the retention a curator last set
    file_plan: list[tuple[_Version, list[dict[str, Any]], list[FileObject]]] = []

    for aip_id, vs in by_aip.items():
        first, newest = vs[0], vs[-1]
        assert first.head is not None and newest.head is not None
        if first.number != 1:
            report.problems.append(
                f"AIP {aip_id}: versions {', '.join(str(v.number) for v in vs)} found, "
                "not version 1; its SIP and originals are not restored"
            )
        tenant = newest.tenant
        package = newest.head.root.package
        tenants.setdefault(tenant, {"id": tenant, "name": package.organisation, "first": None})
        tools = {
            f.format.tool
            for v in vs
            for rep in (v.head.representations.values() if v.head else [])
            for f in rep.files
            if f.format.tool
        }
        # METS agent ids are numbered per document: each version's events use its own.
        agent_ids: dict[int, dict[str, Any]] = {}
        engines: dict[str, str] = {}
        for v in vs:
            assert v.head is not None
            mapped = agent_ids[v.number] = _agent_identifiers(
                list(v.head.root.package.agents), tools
            )
            for identifier, row in mapped.values():
                if row["type"] == "person":
                    row["tenant_id"] = tenant
                agents.setdefault(identifier, row)
                version_text = row.get("version") or ""
                if identifier in tools and " (signatures " in version_text:
                    engines[identifier] = version_text.split(" (signatures ", 1)[1][:-1]
        aip_events: list[dict[str, Any]] = []  # this AIP's own: never a scan of all events
        for v in vs:
            assert v.head is not None
            for event in v.head.root.package.events:
                row = _event_row(event, tenant, aip_id, agent_ids[v.number])
                if v.number == 1:
                    row["sip_id"] = aip_id
                if row["uuid"] not in events:
                    events[row["uuid"]] = row
                    aip_events.append(row)
        disposed = [c.disposed_at for v in vs for c in v.copies if c.disposed_at is not None]
        bag_info = first.head.root.package.bag_info if first.number == 1 else package.bag_info
        aip_bag = newest.head.bag_info
        started = [e["occurred_at"] for e in aip_events if e["type"] == "ingestion"]
        created = min(started) if started else package.created
        first_files = first.head.representations.get("rep1") if first.number == 1 else None
        sips.append(
            {
                "id": aip_id,
                "tenant_id": tenant,
                "name": _first(aip_bag, "Source-Bag-Name") or "",
                "source_path": "",
                "state": SIPState.COMMITTED,
                "stage": "committed",
                "external_identifier": _first(bag_info, "External-Identifier"),
                "bag_info": bag_info,
                "payload_oxum": _first(bag_info, "Payload-Oxum"),
                "file_count": len(first_files.files) if first_files else 0,
                "payload_bytes": sum(f.size for f in first_files.files) if first_files else 0,
                "aip_id": aip_id,
                "created_at": created,
                "updated_at": created,
            }
        )
        # A version missing at a site was committed when the evidence says so: a
        # later version (made only from a committed one), its commit event, a
        # replication event naming that site, or a site not wholly read (lost, a
        # cartridge gone or unreadable: the copy may be there). Only one missing at
        # a site read whole, with no such evidence, was never committed (the site
        # was down at its store): version 1 so leaves the AIP pending, a later one
        # leaves the AIP as its last committed version. Every copy missing is listed.
        uncommitted: set[int] = set()
        for v in vs:
            if disposed:
                break  # a tombstone misses nothing: its copies were meant to go
            sites_with = {c.site for c in v.copies}
            absent = [site for site in configured if site not in sites_with]
            for site in absent:
                report.missing.append({"aip_id": aip_id, "version": v.number, "site": site})
            if absent and not (
                v.number < highest[aip_id]
                or (v.number == 1 and _commit_events(aip_events))
                or all(site in unread or (aip_id, v.number, site) in replicated for site in absent)
            ):
                uncommitted.add(v.number)
        state = (
            AIPState.DISPOSED
            if disposed
            else AIPState.PENDING
            if 1 in uncommitted
            else AIPState.ACTIVE
        )
        if 1 in uncommitted:
            sips[-1]["state"], sips[-1]["stage"] = SIPState.PACKAGED, "packaged"
        current = [v for v in vs if v.number not in uncommitted] or vs[:1]
        assert current[-1].head is not None
        committed = [None if v.number in uncommitted else _committed_at(v, aip_events) for v in vs]
        aips.append(
            {
                "id": aip_id,
                "tenant_id": tenant,
                "sip_id": aip_id,
                "external_identifier": _first(aip_bag, "External-Identifier"),
                "source_bag_name": _first(aip_bag, "Source-Bag-Name") or "",
                "state": state,
                "created_at": created,
                # Set at commit, with the search index; a tombstone loses both.
                "descriptive": dc_as_record(current[-1].head.root.dublin_core)
                if state is AIPState.ACTIVE
                else None,
                "retention_until": None,
                "disposed_at": min(disposed) if disposed else None,
                "_committed": committed[0],
            }
        )
        _policy(aip_id, tenant, aip_events, curated, holds, report)
        if state is AIPState.ACTIVE:
            indexed.append(aip_id)
        for v, when in zip(vs, committed, strict=True):
            assert v.head is not None
            # A later version's root METS carries the whole history, so its events
            # do not say why it was made; its shape does: a migration adds a
            # representation, a metadata update only a new record.
            reason = (
                "ingest" if v.number == 1 else "migration" if v.head.representations else "metadata"
            )
            good = [c for c in v.copies if c.sha256]
            version_rows.append(
                (
                    v,
                    {
                        "aip_id": aip_id,
                        "number": v.number,
                        "reason": reason,
                        "tar_name": f"v{v.number}.tar",
                        "tar_size": good[0].length if good else None,
                        "tar_sha256": good[0].sha256 if good else None,
                        "staging_path": None,
                        "mets_sha256": v.head.mets_sha256,
                        "created_at": v.head.root.package.created,
                        "committed_at": when,
                    },
                )
            )
            shas = {c.sha256 for c in good}
            if len(shas) > 1:
                report.problems.append(
                    f"AIP {aip_id} v{v.number}: its copies' LTFS digests differ "
                    f"({', '.join(sorted(shas))}); run `preservation audit`"
                )
            # A migration's files become rows when it commits: none for one that did not.
            held: dict[str, Any] = (
                {} if v.number > 1 and v.number in uncommitted else v.head.representations
            )
            for _name, rep in sorted(held.items()):
                own = [f for f in rep.files if f.held_in is None]
                naming = _events_by_object(rep.events)
                rows = []
                for f in own:
                    submitted = (
                        first.head.submitted.get(f.original_name, {}) if v.number == 1 else {}
                    )
                    own_events = naming.get(f.id, [])
                    if f.derived_from:
                        validation = _checked_output(own_events, f.id)
                        valid = _output_valid(validation)
                    else:
                        validation = _validation(own_events)
                        valid = _ingest_valid(validation)
                    rows.append(
                        {
                            "sip_id": aip_id,
                            "original_name": f.original_name,
                            "aip_path": f"data/{f.path}",
                            "size": f.size,
                            "sha256": f.digests["sha256"],
                            "sha512": f.digests.get("sha512", ""),
                            "submitted_digests": submitted,
                            "puid": f.format.puids[0] if f.format.puids else None,
                            "format_name": f.format.name,
                            "format_version": f.format.version,
                            "mime": f.format.mime,
                            "identification_basis": f.format.basis,
                            "identification": _identification(f, engines),
                            "properties": dict(f.properties) or None,
                            "valid": valid,
                            "validation": validation,
                        }
                    )
                file_plan.append((v, rows, own))

    # Tenants: their first event dates them. One the journal alone names (its only
    # submissions were refused, or its AIPs are gone) has its id for a name, as at its start.
    for tenant_id in journals:
        tenants.setdefault(tenant_id, {"id": tenant_id, "name": tenant_id, "first": None})
    for e in [*events.values(), *(e for tj in journals.values() for e in tj.events)]:
        t = tenants[e["tenant_id"]]
        if t["first"] is None or e["occurred_at"] < t["first"]:
            t["first"] = e["occurred_at"]

    retention = {
        a["id"]: retention_until(rules_for(ctx.settings, a["tenant_id"]), a["_committed"])
        for a in aips
        if a["_committed"] is not None and a["state"] is AIPState.ACTIVE
    }
    retention.update(curated)  # a curator's date, when a METS on tape records it

    with session_scope(ctx.sessions) as session:
        if not catalogue_is_empty(session):
            raise ConflictError(
                "the catalogue was written to while the tapes were read; rebuild into an "
                "empty catalogue",
                rule="catalogue-not-empty",
            )
        _bulk(
            session,
            Tenant,
            [
                {"id": t["id"], "name": t["name"], "created_at": t["first"], "event_count": 0}
                for t in sorted(tenants.values(), key=lambda t: t["id"])
            ],
        )
        if agents:
            session.execute(insert(Agent), sorted(agents.values(), key=lambda a: a["identifier"]))
        _bulk(session, SIP, sorted(sips, key=lambda s: s["created_at"]))
        aip_rows = []
        for a in sorted(aips, key=lambda a: a["created_at"]):
            row = {k: v for k, v in a.items() if not k.startswith("_")}
            row["retention_until"] = retention.get(a["id"])
            aip_rows.append(row)
        _bulk(session, AIP, aip_rows)
        _bulk(session, LegalHold, sorted(holds, key=lambda h: h["placed_at"]))
        report.holds = len(holds)
        progress("catalogue", 1, 6)

        ordered = sorted(version_rows, key=lambda vr: (vr[1]["created_at"], vr[1]["aip_id"]))
        ids: dict[tuple[str, int], int] = {}
        for start in range(0, len(ordered), _BATCH):
            chunk = ordered[start : start + _BATCH]
            returned = session.scalars(
                insert(AIPVersion).returning(AIPVersion.id, sort_by_parameter_order=True),
                [row for _, row in chunk],
            ).all()
            for (v, _), new_id in zip(chunk, returned, strict=True):
                ids[(v.aip_id, v.number)] = new_id
        report.versions = len(ids)
        progress("catalogue", 2, 6)

        # Files in version order, then the links a migration made between them.
        file_ids: dict[tuple[str, int, str], int] = {}
        links: list[tuple[int, FileObject, _Version]] = []
        file_plan.sort(key=lambda p: ids[(p[0].aip_id, p[0].number)])
        pending_rows: list[tuple[_Version, dict[str, Any], FileObject]] = []
        for v, rows, own in file_plan:
            version_id = ids[(v.aip_id, v.number)]
            for row, f in zip(rows, own, strict=True):
                row["aip_version_id"] = version_id
                pending_rows.append((v, row, f))
        for start in range(0, len(pending_rows), _BATCH):
            chunk2 = pending_rows[start : start + _BATCH]
            returned = session.scalars(
                insert(File).returning(File.id, sort_by_parameter_order=True),
                [row for _, row, _ in chunk2],
            ).all()
            for (v, row, f), new_id in zip(chunk2, returned, strict=True):
                rep_path = row["aip_path"].removeprefix("data/").split("/data/", 1)[0]
                file_ids[(v.aip_id, v.number, f"{rep_path}/METS.xml#{f.id}")] = new_id
                if f.derived_from:
                    links.append((new_id, f, v))
        report.files = len(pending_rows)
        derived = []
        superseded = []
        for new_id, f, v in links:
            m = _SOURCE_URI.match(f.derived_from or "")
            source = (
                file_ids.get((v.aip_id, int(m["version"]), f"{m['mets']}#{m['file']}"))
                if m
                else None
            )
            if source is None:
                report.problems.append(
                    f"AIP {v.aip_id} v{v.number}: {f.path} derives from {f.derived_from}, "
                    "which was not restored"
                )
                continue
            derived.append({"id": new_id, "derived_from": source})
            superseded.append({"id": source, "superseded_in": v.number})
        if derived:
            session.execute(update(File), derived)
            session.execute(update(File), superseded)
        progress("catalogue", 3, 6)

        # Events: the journal's as they were, then those only a METS holds, chained on
        # from its head in time order (a tenant without a journal: all of them, from 1).
        by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events.values():
            by_tenant[e["tenant_id"]].append(e)
        event_rows: list[dict[str, Any]] = []
        heads: dict[str, tuple[str | None, int]] = {}
        for tenant_id in sorted(set(by_tenant) | set(journals)):
            kept = journals[tenant_id].events if tenant_id in journals else []
            event_rows += kept
            report.journal_events += len(kept)
            known = {e["uuid"] for e in kept}
            prev: str | None = kept[-1]["hash"] if kept else None
            seq = start = kept[-1]["seq"] if kept else 0
            rows_ = [e for e in by_tenant.get(tenant_id, []) if e["uuid"] not in known]
            rows_.sort(key=lambda e: (e["occurred_at"], e["uuid"]))
            for seq, e in enumerate(rows_, start=start + 1):
                e.setdefault("sip_id", None)
                e["seq"] = seq
                e["prev_hash"] = prev
                e["hash"] = catalog.event_hash(
                    {
                        "uuid": e["uuid"],
                        "tenant": tenant_id,
                        "seq": seq,
                        "sip": e["sip_id"],
                        "aip": e["aip_id"],
                        "type": e["type"],
                        "at": e["occurred_at"]
                        .astimezone(UTC)
                        .replace(tzinfo=None)
                        .isoformat(timespec="microseconds"),
                        "detail": e["detail"],
                        "outcome": e["outcome"],
                        "outcome_detail": e["outcome_detail"],
                        "agents": e["agents"],
                        "objects": e["objects"],
                        "prev": prev,
                    }
                )
                prev = e["hash"]
                event_rows.append(e)
            heads[tenant_id] = (prev, seq)
        event_rows.sort(key=lambda e: (e["occurred_at"], e["uuid"]))
        _bulk(session, PremisEvent, event_rows)
        for tenant_id, (head, count) in heads.items():
            session.execute(
                update(Tenant)
                .where(Tenant.id == tenant_id)
                .values(event_head=head, event_count=count)
                .execution_options(synchronize_session=False)
            )
        report.events = len(event_rows)
        progress("catalogue", 4, 6)

        session.execute(delete(Cartridge))  # scratch rows start-up registered, if any
        _bulk(session, Cartridge, cartridges)
        copy_rows = []
        for v, _row in ordered:
            for c in sorted(
                v.copies, key=lambda c: (c.modified or datetime.min.replace(tzinfo=UTC), c.site)
            ):
                copy_rows.append(
                    {
                        "aip_version_id": ids[(v.aip_id, v.number)],
                        "site": c.site,
                        "barcode": c.barcode,
                        "volume_uuid": c.volume_uuid,
                        "path": c.path,
                        "start_block": c.start_block,
                        "length": c.length,
                        "sha256": c.sha256,
                        "status": CopyStatus.DISPOSED
                        if c.disposed_at
                        else CopyStatus.FAILED
                        if c.error
                        else CopyStatus.VERIFIED,
                        "error": c.error,
                        "written_at": c.modified,
                        "verified_at": c.modified,
                    }
                )
        _bulk(session, TapeCopy, copy_rows)
        report.copies = len(copy_rows)
        report.copies_disposed = sum(1 for c in copy_rows if c["status"] is CopyStatus.DISPOSED)
        progress("catalogue", 5, 6)
        _write_journal(session, journals, ids, report)
        index_aips(session, indexed)
        progress("catalogue", 6, 6)
    report.tenants = len(tenants)
    report.aips = len(aips)
    report.aips_disposed = sum(1 for a in aips if a["state"] is AIPState.DISPOSED)


def _unread_sites(
    versions: dict[tuple[str, int], _Version],
    cartridges: list[dict[str, Any]],
    gone: dict[str, set[str]],
    report: RebuildReport,
) -> tuple[set[tuple[str, int, str]], dict[str, str]]:
    """Copies replication events say were written, and the sites not wholly read, with why.

    A later version's METS carries the replication events of the earlier ones
    (``metadata: v1 to site site-b cartridge B00001L9``): a copy they name that
    no index lists was on a cartridge that is gone, when that cartridge was not
    read, and the report names it.
    """
    read = {(row["site"], row["barcode"]) for row in cartridges}
    replicated: set[tuple[str, int, str]] = set()
    for (aip_id, _number), v in sorted(versions.items()):
        if v.head is None:
            continue
        for event in v.head.root.package.events:
            m = _REPLICATED.match(event.detail or "") if event.type == "replication" else None
            if m is None or event.outcome != "success":
                continue
            number, site, barcode = int(m["number"]), m["site"], m["barcode"]
            replicated.add((aip_id, number, site))
            named = versions.get((aip_id, number))
            if (
                named is not None
                and site in report.sites_read
                and all(c.site != site for c in named.copies)
                and (site, barcode) not in read
            ):
                gone[site].add(barcode)
                report.cartridges_missing.setdefault(
                    barcode,
                    f"site {site}: not in the library, yet AIP {aip_id} v{number}'s "
                    "replication event says its copy was written there",
                )
    unread = {site: f"not read: {why}" for site, why in report.sites_lost.items()}
    site_of = {row["barcode"]: row["site"] for row in cartridges}
    for barcode, why in report.cartridges_unreadable.items():
        unread.setdefault(site_of.get(barcode, ""), f"cartridge {barcode} unreadable: {why}")
    for site, barcodes in gone.items():
        unread.setdefault(site, f"cartridge(s) {', '.join(sorted(barcodes))} not in the library")
    return replicated, unread


def _policy(
    aip_id: str,
    tenant: str,
    own: list[dict[str, Any]],
    curated: dict[str, datetime | None],
    holds: list[dict[str, Any]],
    report: RebuildReport,
) -> None:
    """A curator's retention date and legal holds, from the ``policy assignment`` events found.

    As :mod:`preservation.retention` records them: ``retention of AIP <id> set
    to <date>|permanent`` (the date to the day), ``legal hold placed on AIP
    <id>: <reason>`` and ``... lifted ...: <reason>`` with ``holds <ids>``,
    each naming who decided as its authorizer. A lift names the catalogue's
    hold ids, which the tapes do not keep: a lift of fewer holds than stand
    cannot say which, so they all stay in force (the safe side) and the
    report says so.
    """
    aip_holds: list[dict[str, Any]] = []
    for e in sorted(own, key=lambda e: (e["occurred_at"], e["uuid"])):
        if e["type"] != "policy assignment" or e["outcome"] != "success":
            continue
        detail = e["detail"]
        who = (e["agents"].get("authorizer") or [""])[0]
        if m := _RETENTION_SET.match(detail):
            until = m["until"]
            try:
                curated[aip_id] = (
                    None
                    if until == "permanent"
                    else datetime.combine(date.fromisoformat(until), datetime.min.time(), UTC)
                )
            except ValueError:
                report.problems.append(f"AIP {aip_id}: retention event {e['uuid']}: {detail!r}")
        elif m := _HOLD_PLACED.match(detail):
            aip_holds.append(
                {
                    "aip_id": aip_id,
                    "tenant_id": tenant,
                    "reason": m["reason"],
                    "placed_by": who,
                    "placed_at": e["occurred_at"],
                    "lifted_by": None,
                    "lifted_at": None,
                    "lift_reason": None,
                }
            )
        elif m := _HOLD_LIFTED.match(detail):
            standing = [h for h in aip_holds if h["lifted_at"] is None]
            named = [x for x in e["outcome_detail"].removeprefix("holds ").split(",") if x.strip()]
            if len(named) < len(standing):
                report.problems.append(
                    f"AIP {aip_id}: {len(named)} of its {len(standing)} legal holds were lifted "
                    f"at {e['occurred_at'].isoformat()} ({m['reason']}), and the tapes do not "
                    "say which: all are restored in force; lift the right ones again"
                )
                continue
            for h in standing:
                h["lifted_by"], h["lifted_at"], h["lift_reason"] = (
                    who,
                    e["occurred_at"],
                    m["reason"],
                )
    holds += aip_holds


def _events_by_object(events: list[Event]) -> dict[str, list[Event]]:
    """Each object's events, in document order, each once: one pass, not one per file."""
    naming: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        for object_id in dict.fromkeys(o.object_id for o in e.objects):
            naming[object_id].append(e)
    return naming


def _commit_events(own: list[dict[str, Any]]) -> list[datetime]:
    """When ingest committed version 1, if a later version's METS carries the event."""
    return [
        e["occurred_at"]
        for e in own
        if e["type"] == "ingestion" and e["detail"].startswith("ingestion completed")
    ]


def _first(bag_info: dict[str, list[str]], label: str) -> str | None:
    for key, values in bag_info.items():
        if key.lower() == label.lower() and values:
            return values[0]
    return None


def _committed_at(v: _Version, own: list[dict[str, Any]]) -> datetime | None:
    """When the version became safe: its commit event if a later METS has it, else its last copy."""
    done = _commit_events(own) if v.number == 1 else []
    if done:
        return min(done)
    written = [c.modified for c in v.copies if c.modified is not None]
    return max(written) if written else None


def _bulk(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(model), rows[start : start + _BATCH])
