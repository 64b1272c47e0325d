"""The journal on tape: which files go beside the AIPs, their bytes, and reading them back.

Three kinds of file, all under ``/<tenant>/.journal/`` on every site:

- ``<first>-<last>.jsonl``: a segment of the event chain (:mod:`.journal`);
- ``<first>-<last>.tsr``: the segment head's RFC 3161 reply, once the TSA answered;
- ``evidence-<stamp>.jsonl``: one time-stamped hash tree (a period, or a
  renewal), with each leaf's reduced tree: every version's evidence record
  can be assembled from it, and the rebuild restores them from it.

The bytes are regenerated from the catalogue when they are written and must
match the digest taken when the file was registered: a journal rewritten in
the database between the cut and the write is refused, not copied to tape.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import tsp  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIPVersion,
    Cartridge,
    EvidenceLeaf,
    EvidenceStamp,
    JournalCopy,
    JournalFile,
    JournalSegment,
    utcnow,
)
from preservation.context import Context
from preservation.errors import (
    PreservationError,
    SiteUnavailableError,
    StorageError,
)
from preservation.evidence import journal
from preservation.evidence.periods import KIND_REHASH, unpack_reduced
from preservation.evidence.tsa import normalise_token, token_response

__all__ = [
    "EVIDENCE_FORMAT",
    "TapeJournal",
    "WriteRound",
    "FoundFile",
    "evidence_path",
    "file_bytes",
    "read_journal",
    "register_files",
    "scan_journal",
    "token_as_reply",
    "write_pending",
]

log = logging.getLogger(__name__)

EVIDENCE_FORMAT = "preservation-evidence/1"
_BATCH_FILES = 64
KIND_SEGMENT = "segment"
KIND_STAMP = "stamp"
KIND_EVIDENCE = "evidence"


def evidence_path(tenant_id: str, stamp_id: int) -> str:
    return f"/{tenant_id}/.journal/evidence-{stamp_id:010d}.jsonl"


def token_as_reply(token: bytes) -> bytes:
    """The token as a granted TimeStampResp: the ``.tsr`` that ``openssl ts -verify -in`` reads."""
    return token_response(token)


def reply_token(reply: bytes) -> bytes:
    """The token inside a TimeStampResp file read back from tape."""
    parsed = tsp.TimeStampResp.load(reply)
    return normalise_token(bytes(parsed["time_stamp_token"].dump()))


def _evidence_bytes(session: Session, stamp: EvidenceStamp) -> bytes:
    assert stamp.token is not None
    size = hashlib.new(stamp.algorithm).digest_size
    covered = [
        s
        for (s,) in session.execute(
            select(EvidenceStamp.id).where(EvidenceStamp.renewed_by == stamp.id)
        )
    ]
    header: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "tenant": stamp.tenant_id,
        "stamp": stamp.id,
        "kind": stamp.kind,
        "algorithm": stamp.algorithm,
        "root": stamp.root.hex(),
        "leaves": stamp.leaves,
        "renews": covered,
        "time_stamp_token": base64.b64encode(stamp.token).decode("ascii"),
        "rule": "RFC 4998: each leaf's first list holds its hashes; hash the sorted "
        "concatenation of each list with the value from the list before; the last "
        "value is the root, the token's messageImprint",
    }
    if stamp.kind == KIND_REHASH:
        header["closes"] = [
            s
            for (s,) in session.execute(
                select(EvidenceStamp.id).where(
                    EvidenceStamp.tenant_id == stamp.tenant_id,
                    EvidenceStamp.closed.is_(True),
                    EvidenceStamp.id < stamp.id,
                )
            )
        ]
    lines = [journal.canonical({"evidence": header})]
    rows = session.execute(
        select(EvidenceLeaf, AIPVersion.aip_id, AIPVersion.number)
        .outerjoin(AIPVersion, AIPVersion.id == EvidenceLeaf.aip_version_id)
        .where(EvidenceLeaf.stamp_id == stamp.id)
        .order_by(EvidenceLeaf.position)
    )
    for leaf, aip_id, number in rows:
        entry: dict[str, Any] = {
            "position": leaf.position,
            "hashes": [leaf.hashes[i : i + size].hex() for i in range(0, len(leaf.hashes), size)],
            "reduced": [[h.hex() for h in level] for level in unpack_reduced(leaf.reduced, size)],
        }
        if aip_id is not None:
            entry["aip"] = aip_id
            entry["version"] = number
        if leaf.covers_stamp_id is not None:
            entry["covers_stamp"] = leaf.covers_stamp_id
        lines.append(journal.canonical({"leaf": entry}))
    return ("\n".join(lines) + "\n").encode()


def file_bytes(session: Session, row: JournalFile) -> bytes:
    """The file's bytes, regenerated from the catalogue."""
    if row.kind == KIND_SEGMENT:
        return journal.segment_bytes(session, session.get_one(JournalSegment, row.segment_id))
    if row.kind == KIND_STAMP:
        token = session.get_one(JournalSegment, row.segment_id).token
        assert token is not None
        return token_as_reply(token)
    return _evidence_bytes(session, session.get_one(EvidenceStamp, row.stamp_id))


def register_files(session: Session) -> int:
    """A JournalFile row for every segment, segment stamp and stamped tree not yet registered."""
    made = 0
    have_segment = select(JournalFile.segment_id).where(JournalFile.kind == KIND_SEGMENT)
    for seg in session.scalars(
        select(JournalSegment).where(JournalSegment.id.not_in(have_segment))
    ):
        session.add(
            JournalFile(
                tenant_id=seg.tenant_id,
                kind=KIND_SEGMENT,
                path=journal.segment_path(seg.tenant_id, seg.first_seq, seg.last_seq),
                sha256=seg.sha256,
                size=seg.size,
                segment_id=seg.id,
            )
        )
        made += 1
    have_stamp = select(JournalFile.segment_id).where(JournalFile.kind == KIND_STAMP)
    for seg in session.scalars(
        select(JournalSegment).where(
            JournalSegment.token.is_not(None), JournalSegment.id.not_in(have_stamp)
        )
    ):
        assert seg.token is not None
        data = token_as_reply(seg.token)
        session.add(
            JournalFile(
                tenant_id=seg.tenant_id,
                kind=KIND_STAMP,
                path=journal.stamp_path(seg.tenant_id, seg.first_seq, seg.last_seq),
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                segment_id=seg.id,
            )
        )
        made += 1
    have_tree = select(JournalFile.stamp_id).where(
        JournalFile.kind == KIND_EVIDENCE, JournalFile.stamp_id.is_not(None)
    )
    for stamp in session.scalars(
        select(EvidenceStamp).where(
            EvidenceStamp.token.is_not(None), EvidenceStamp.id.not_in(have_tree)
        )
    ):
        data = _evidence_bytes(session, stamp)
        session.add(
            JournalFile(
                tenant_id=stamp.tenant_id,
                kind=KIND_EVIDENCE,
                path=evidence_path(stamp.tenant_id, stamp.id),
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                stamp_id=stamp.id,
            )
        )
        made += 1
    session.flush()
    return made


@dataclass
class WriteRound:
    written: int = 0
    waiting: int = 0
    problems: list[str] = field(default_factory=list)


def write_pending(ctx: Context, *, sites: list[str] | None = None) -> WriteRound:
    """Every registered journal file onto every site that lacks it; a site down waits.

    A copy on a cartridge that left service (retired by a media migration,
    failed, suspect) counts as lacking: the file is written again on a healthy
    cartridge, from the catalogue, checked against the digest it was cut with.
    """
    from preservation.storage.planning import BAD_CARTRIDGE_STATES
    from preservation.storage.service import write_side_files

    result = WriteRound()
    sites = list(sites or ctx.settings.sites)
    with session_scope(ctx.sessions) as session:
        healthy = {
            b
            for (b,) in session.execute(
                select(Cartridge.barcode).where(Cartridge.state.not_in(BAD_CARTRIDGE_STATES))
            )
        }
        done = {
            (f, s)
            for f, s, barcode in session.execute(
                select(JournalCopy.file_id, JournalCopy.site, JournalCopy.barcode)
            )
            if barcode in healthy
        }
        files = [
            (row.id, row.path)
            for row in session.scalars(select(JournalFile).order_by(JournalFile.id))
            if any((row.id, s) not in done for s in sites)
        ]
    ready: list[tuple[int, str, bytes]] = []
    for file_id, path in files:
        with session_scope(ctx.sessions) as session:
            row = session.get_one(JournalFile, file_id)
            data = file_bytes(session, row)
            if hashlib.sha256(data).hexdigest() != row.sha256:
                # The chain was edited after the cut: this file is not copied (the
                # tapes keep what was cut), the others still are.
                message = (
                    f"{path}: the catalogue's event chain changed since this segment was cut "
                    f"(sha256 {hashlib.sha256(data).hexdigest()}, cut as {row.sha256}); it is "
                    "not written to tape. Run `preservation verify-history` to see where"
                )
                log.error(message)
                result.problems.append(message)
                continue
        ready.append((file_id, path, data))
    for site in sites:
        todo = [(f, p, d) for f, p, d in ready if (f, site) not in done]
        # A few at a time, one sync point each: a first sync after an upgrade
        # may cut a long history, and one batch must still fit one cartridge.
        for start in range(0, len(todo), _BATCH_FILES):
            batch = todo[start : start + _BATCH_FILES]
            try:
                copies = write_side_files(ctx, site, [(p, d) for _, p, d in batch])
            except (SiteUnavailableError, StorageError) as err:
                result.waiting += len(todo) - start
                result.problems.append(f"site {site}: {err}")
                break
            with session_scope(ctx.sessions) as session:
                for (file_id, _path, _data), copy in zip(batch, copies, strict=True):
                    existing = session.scalar(
                        select(JournalCopy).where(
                            JournalCopy.file_id == file_id, JournalCopy.site == site
                        )
                    )
                    if existing is None:
                        existing = JournalCopy(file_id=file_id, site=site)
                        session.add(existing)
                    existing.barcode = copy.barcode
                    existing.start_block = copy.start_block
                    existing.written_at = utcnow()
            result.written += len(batch)
    return result


# -- reading the journal back ------------------------------------------------------------------


@dataclass
class TapeJournal:
    """One site's journal files for one tenant, as found on its cartridges."""

    site: str
    files: dict[str, bytes] = field(default_factory=dict)  # path -> bytes
    problems: list[str] = field(default_factory=list)

    def segments(self) -> Iterator[tuple[str, bytes]]:
        for path in sorted(self.files):
            if path.endswith(".jsonl") and "/evidence-" not in path:
                yield path, self.files[path]


def read_journal(ctx: Context, tenant_id: str, site: str) -> TapeJournal:
    """Every journal file of ``tenant_id`` on ``site``'s cartridges, read raw.

    Read without trusting the LTFS index's digest (an altered file must come
    back as it is, to be compared, not refused). Each file is read from the
    cartridge its catalogued copy names (a copy rewritten after damage is read
    where it now is); other journal files found on those cartridges are read
    too. Each cartridge is mounted once.
    """
    from preservation.storage.sites import get_site

    found = TapeJournal(site)
    with session_scope(ctx.sessions) as session:
        placed = {
            path: barcode
            for path, barcode in session.execute(
                select(JournalFile.path, JournalCopy.barcode)
                .join(JournalFile, JournalFile.id == JournalCopy.file_id)
                .where(JournalFile.tenant_id == tenant_id, JournalCopy.site == site)
            )
        }
    the_site = get_site(ctx, site)
    prefix = f"/{tenant_id}/.journal/"
    with the_site.lock:
        for barcode in sorted(set(placed.values())):
            try:
                volume, _ = the_site.open_volume(barcode)
                for entry in volume.walk(prefix):
                    if placed.get(entry.path, barcode) != barcode:
                        continue  # catalogued elsewhere: read there
                    if entry.path in found.files and entry.path not in placed:
                        continue
                    found.files[entry.path] = volume.read_bytes(entry.path, verify=False)
            except (PreservationError, FileNotFoundError, NotADirectoryError) as err:
                found.problems.append(f"site {site}: cartridge {barcode}: {err}")
            finally:
                try:
                    the_site.release(barcode)
                except PreservationError:
                    pass
    return found


@dataclass(frozen=True)
class FoundFile:
    """One journal file as one cartridge holds it (``data`` None: it could not be read)."""

    site: str
    barcode: str
    path: str
    data: bytes | None
    error: str | None = None


def scan_journal(ctx: Context, tenant_id: str, site: str) -> tuple[list[FoundFile], list[str]]:
    """Every copy of every journal file of ``tenant_id`` on every cartridge of ``site``.

    The catalogue is not asked where the journal is: an insider who rewrote
    the chain could have rewritten that too. Each written cartridge in the
    library is mounted once and its ``/<tenant>/.journal/`` read raw, file by
    file (a damaged file is a finding, not the end of the cartridge).
    """
    from preservation.catalog.models import CartridgeState
    from preservation.storage.emulator import EmulatedCartridge
    from preservation.storage.library import EmulatedLibrary
    from preservation.storage.sites import get_site

    found: list[FoundFile] = []
    notes: list[str] = []
    the_site = get_site(ctx, site)
    library = the_site.library
    with session_scope(ctx.sessions) as session:
        scratch = {
            b
            for (b,) in session.execute(
                select(Cartridge.barcode).where(
                    Cartridge.site == site, Cartridge.state == CartridgeState.SCRATCH
                )
            )
        }
    prefix = f"/{tenant_id}/.journal/"
    with the_site.lock:
        the_site.check_available()
        for barcode in sorted(library.barcodes()):
            if isinstance(library, EmulatedLibrary):
                if EmulatedCartridge(library.cartridge_path(barcode), barcode).is_blank():
                    continue
            elif barcode in scratch:
                continue  # a real blank costs a mount: the catalogue's scratch are skipped
            try:
                volume, _ = the_site.open_volume(barcode)
            except PreservationError as err:
                notes.append(f"site {site}: cartridge {barcode} not read: {err}")
                continue
            try:
                try:
                    entries = list(volume.walk(prefix))
                except (FileNotFoundError, NotADirectoryError):
                    entries = []
                for entry in entries:
                    try:
                        data = volume.read_bytes(entry.path, verify=False)
                    except (PreservationError, OSError) as err:
                        found.append(FoundFile(site, barcode, entry.path, None, str(err)))
                        continue
                    found.append(FoundFile(site, barcode, entry.path, data))
            finally:
                try:
                    the_site.release(barcode)
                except PreservationError:
                    pass
    return found, notes
