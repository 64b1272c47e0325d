"""Checking the history: the database chain against the tape journal and its time-stamps.

Three witnesses, each able to lie alone, none able to lie together without
being caught:

- the database chain (fast to read, and what an insider can rewrite);
- the journal on each site's tapes (what was cut from the chain and written
  away, beyond a single administrator's reach in the other data centre);
- the RFC 3161 time-stamps over each segment's head (what no one here can
  forge, given the TSA's key is not ours).

A segment copy is *authentic* when its events hash as they claim, follow
each other, end at the head its header names, and a valid time-stamp covers
that head. The database is then compared with an authentic copy event by
event, and every disagreement is reported at the sequence number where it
starts: the first of them is the answer to "where was history rewritten?".
"""

from __future__ import annotations

import array
import bisect
import hashlib
import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import JournalCopy, JournalFile, JournalSegment, Tenant
from preservation.context import Context
from preservation.errors import PreservationError
from preservation.evidence import journal
from preservation.evidence.journal import JournalEvent, ParsedSegment
from preservation.evidence.on_tape import FoundFile, reply_token, scan_journal
from preservation.evidence.tsa import TsaTrust, token_info, verify_token

__all__ = ["Disagreement", "HistoryHead", "HistoryReport", "history_head", "verify_history"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Disagreement:
    seq: int
    where: str  # "database", "site-a journal", "database vs journal"
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "where": self.where, "what": self.what}


@dataclass
class TenantHistory:
    tenant: str
    database_events: int = 0
    journal_events: int = 0
    segments: int = 0
    segments_stamped: int = 0
    stamps_verified: int = 0
    not_on_tape: int = 0
    findings: list[Disagreement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> Disagreement | None:
        # On a tie the database's own finding comes first: it is the record of the two.
        return (
            min(self.findings, key=lambda d: (d.seq, not d.where.startswith("database")))
            if self.findings
            else None
        )

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "tenant": self.tenant,
            "ok": self.ok,
            "database_events": self.database_events,
            "journal_events": self.journal_events,
            "segments": self.segments,
            "segments_stamped": self.segments_stamped,
            "stamps_verified": self.stamps_verified,
            "not_yet_on_tape": self.not_on_tape,
            "first_disagreement": first.to_dict() if first else None,
            "disagreements": [d.to_dict() for d in sorted(self.findings, key=lambda d: d.seq)],
            "notes": self.notes,
        }


@dataclass
class HistoryReport:
    tenants: list[TenantHistory] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tenants)

    @property
    def events(self) -> int:
        return sum(t.database_events for t in self.tenants)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "tenants": [t.to_dict() for t in self.tenants],
        }


def _trust(ctx: Context) -> TsaTrust | None:
    if ctx.settings.tsa_certs is None:
        return None
    return TsaTrust.from_pem_files([ctx.settings.tsa_certs])


@dataclass
class _Verdict:
    """What one distinct copy of a segment is worth (cached by its bytes)."""

    parsed: ParsedSegment
    whole: bool
    stamped: bool
    stamp_time: datetime | None
    problems: list[tuple[int, str]]


@dataclass
class _Copy:
    site: str
    barcode: str
    path: str
    data: bytes
    verdict: _Verdict
    reply: bytes | None = None

    @property
    def stem(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".jsonl")


def _check(parsed: ParsedSegment, token: bytes | None, trust: TsaTrust | None) -> _Verdict:
    """Is this copy whole (every event hashes and follows), and is its head time-stamped?"""
    problems: list[tuple[int, str]] = [(parsed.first_seq, p) for p in parsed.problems]
    whole = not problems
    expected_seq = parsed.first_seq
    prev = parsed.header.get("prev")
    for e in parsed.events:
        if e.seq != expected_seq:
            problems.append((expected_seq, f"event {expected_seq} is missing (found {e.seq})"))
            whole = False
            break
        if not e.intact:
            problems.append((e.seq, f"event {e.seq} does not hash to its recorded hash"))
            whole = False
            break
        if e.prev != prev:
            problems.append((e.seq, f"event {e.seq} does not follow event {e.seq - 1}"))
            whole = False
            break
        prev = e.hash
        expected_seq += 1
    if whole and (expected_seq - 1 != parsed.last_seq or prev != parsed.head):
        problems.append((parsed.last_seq, "the segment does not end at the head it names"))
        whole = False
    stamped, when = False, None
    if token is not None and parsed.head and trust is not None:
        try:
            info = verify_token(token, bytes.fromhex(parsed.head), trust, "sha256")
            stamped, when = True, info.gen_time
        except (PreservationError, ValueError) as err:
            problems.append(
                (parsed.last_seq, f"the time-stamp does not cover this segment's head: {err}")
            )
            whole = False
    return _Verdict(parsed, whole, stamped, when, problems)


def _verify_tenant(ctx: Context, tenant_id: str, trust: TsaTrust | None) -> TenantHistory:
    out = TenantHistory(tenant_id)
    with session_scope(ctx.sessions) as session:
        catalogue_tokens = {
            (f, la): t
            for f, la, t in session.execute(
                select(
                    JournalSegment.first_seq, JournalSegment.last_seq, JournalSegment.token
                ).where(JournalSegment.tenant_id == tenant_id)
            )
        }
        claimed = {
            (site, path)
            for site, path in session.execute(
                select(JournalCopy.site, JournalFile.path)
                .join(JournalFile, JournalFile.id == JournalCopy.file_id)
                .where(JournalFile.tenant_id == tenant_id, JournalFile.kind == "segment")
            )
        }
    if trust is None and catalogue_tokens and any(catalogue_tokens.values()):
        out.notes.append("time-stamps present, not checked: no TSA certificate is set")
    # The database's witness works in a process of its own while the tapes are read:
    # at a million events each side is seconds of CPU, and there are cores for both.
    database = _database_side(ctx, tenant_id)
    found: list[FoundFile] = []
    read_sites: list[str] = []
    for site in ctx.settings.sites:
        try:
            files, notes = scan_journal(ctx, tenant_id, site)
        except PreservationError as err:
            out.notes.append(f"site {site}: journal not read: {err}")
            continue
        read_sites.append(site)
        found += files
        out.notes += notes
    copies = _segment_copies(found, catalogue_tokens, trust, out)
    reference = _reference(copies)
    ref_data = {id(c.verdict.parsed) for c in reference}
    for c in copies:  # every copy the reference is not: where does it part from it?
        if id(c.verdict.parsed) not in ref_data:
            _first_difference(c, reference, out)
    _missing_from_sites(found, claimed, read_sites, out)
    out.segments = len(reference)
    out.segments_stamped = sum(1 for c in reference if c.verdict.stamped)
    out.stamps_verified = out.segments_stamped
    _compare_database(database.result(), [c.verdict.parsed for c in reference], out)
    return out


def _segment_copies(
    found: list[FoundFile],
    catalogue_tokens: dict[tuple[int, int], bytes | None],
    trust: TsaTrust | None,
    out: TenantHistory,
) -> list[_Copy]:
    """Every readable copy of every segment, checked; what is wrong with each, reported."""
    replies: dict[tuple[str, str, str], bytes] = {
        (f.site, f.barcode, f.path): f.data
        for f in found
        if f.path.endswith(".tsr") and f.data is not None
    }
    by_site_reply = {(site, path): data for (site, _b, path), data in replies.items()}
    copies: list[_Copy] = []
    for f in found:
        if not f.path.endswith(".jsonl") or "/evidence-" in f.path:
            continue
        stem = f.path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        where = f"{f.site} journal {stem}"
        first = int(stem.split("-", 1)[0]) if stem.split("-", 1)[0].isdigit() else 0
        if f.data is None:
            out.findings.append(
                Disagreement(first, where, f"unreadable on cartridge {f.barcode}: {f.error}")
            )
            continue
        tsr = f.path.removesuffix(".jsonl") + ".tsr"
        reply = replies.get((f.site, f.barcode, tsr)) or by_site_reply.get((f.site, tsr))
        same = next(
            (c for c in copies if c.data == f.data and c.reply == reply and c.path == f.path),
            None,
        )
        if same is not None:  # the same bytes at the other site: checked once, told per site
            for seq, what in same.verdict.problems:
                out.findings.append(Disagreement(seq, where, f"{what} (cartridge {f.barcode})"))
            copies.append(_Copy(f.site, f.barcode, f.path, f.data, same.verdict, reply))
            continue
        parsed = journal.parse_segment(f.data, f"{f.site}:{f.path}")
        token = catalogue_tokens.get((parsed.first_seq, parsed.last_seq))
        if reply is not None:
            try:
                token = reply_token(reply)
            except (ValueError, PreservationError) as err:
                out.findings.append(
                    Disagreement(
                        parsed.last_seq,
                        f"{f.site} journal {stem}.tsr",
                        f"the time-stamp reply on cartridge {f.barcode} is damaged ({err})",
                    )
                )
        verdict = _check(parsed, token, trust)
        for seq, what in verdict.problems:
            out.findings.append(Disagreement(seq, where, f"{what} (cartridge {f.barcode})"))
        copies.append(_Copy(f.site, f.barcode, f.path, f.data, verdict, reply))
    return copies


def _reference(copies: list[_Copy]) -> list[_Copy]:
    """The authentic journal: whole copies following on from seq 1, the earliest stamp first.

    Two whole copies of one range that differ were both written by someone
    who knew the hash rule; the one stamped first is the original (a rewrite
    can only be stamped later), a stamped one beats an unstamped one.
    """
    never = datetime.max.replace(tzinfo=UTC)
    whole = sorted(
        (c for c in copies if c.verdict.whole),
        key=lambda c: (
            c.verdict.parsed.first_seq,
            not c.verdict.stamped,
            c.verdict.stamp_time or never,
        ),
    )
    reference: list[_Copy] = []
    expected, prev = 1, None
    for c in whole:
        parsed = c.verdict.parsed
        if parsed.first_seq == expected and parsed.header.get("prev") == prev:
            reference.append(c)
            expected, prev = parsed.last_seq + 1, parsed.head
    return reference


def _first_difference(copy: _Copy, reference: list[_Copy], out: TenantHistory) -> None:
    """Name the first event where a copy that is not the reference parts from it."""
    if any(copy.data == r.data for r in reference):
        return  # the same bytes as a reference copy, on another cartridge or site
    starts = [r.verdict.parsed.first_seq for r in reference]
    where = f"{copy.site} journal {copy.stem}"
    for e in copy.verdict.parsed.events:
        i = bisect.bisect_right(starts, e.seq) - 1
        if i < 0 or e.seq > reference[i].verdict.parsed.last_seq:
            break  # beyond the authentic journal: nothing to compare with
        ref = reference[i].verdict.parsed.events[e.seq - starts[i]]
        if ref.hash != e.hash or ref.text != e.text:
            later = copy.verdict.stamped and copy.verdict.whole
            out.findings.append(
                Disagreement(
                    e.seq,
                    where,
                    f"event {e.seq} differs from the time-stamped journal (cartridge "
                    f"{copy.barcode})"
                    + ("; this copy was stamped later: the journal was rewritten" if later else ""),
                )
            )
            return


def _missing_from_sites(
    found: list[FoundFile],
    claimed: set[tuple[str, str]],
    read_sites: list[str],
    out: TenantHistory,
) -> None:
    """A segment the catalogue says a site holds, and that is on none of its cartridges.

    A copy that is there but bad was reported where it parts from the journal.
    """
    present = {(f.site, f.path) for f in found}
    for site, path in sorted(claimed):
        if site not in read_sites or (site, path) in present:
            continue
        stem = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        first = int(stem.split("-", 1)[0]) if stem.split("-", 1)[0].isdigit() else 0
        out.findings.append(
            Disagreement(
                first,
                f"{site} journal {stem}",
                "written there (the catalogue says), but on none of its cartridges",
            )
        )


def _journal_events(reference: list[ParsedSegment]) -> Iterator[JournalEvent]:
    for segment in reference:
        yield from segment.events


@dataclass
class _DatabaseChain:
    """The database's chain as its witness saw it: its own breaks, and each event's digest."""

    count: int = 0  # the tenant's event count, read with its head
    rows: int = 0
    seqs: array.array[int] = field(default_factory=lambda: array.array("q"))
    digests: bytearray = field(default_factory=bytearray)  # sha256 of each row's text
    findings: list[Disagreement] = field(default_factory=list)


#: Chains at least this long are read by a child process, beside the tape reading.
PARALLEL_EVENTS = 50_000


class _Done:
    def __init__(self, value: _DatabaseChain) -> None:
        self._value = value

    def result(self) -> _DatabaseChain:
        return self._value


def _database_side(ctx: Context, tenant_id: str) -> Any:
    with session_scope(ctx.sessions) as session:
        count = session.scalar(select(Tenant.event_count).where(Tenant.id == tenant_id)) or 0
    if count < PARALLEL_EVENTS or "fork" not in multiprocessing.get_all_start_methods():
        return _Done(_read_database_chain(ctx.settings.catalog_url, tenant_id, ctx.engine))
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    future = pool.submit(_read_database_chain, ctx.settings.catalog_url, tenant_id, None)
    pool.shutdown(wait=False)
    return future


def _read_database_chain(url: str, tenant_id: str, engine: Any) -> _DatabaseChain:
    """Walk the database's chain: its own breaks, and the digest of every event's text.

    Runs in a child process for long chains (its own engine: a connection is
    never shared across a fork). The head and the count are read in one row,
    so events recorded while the check runs (after ``count``) are left out.
    """
    from preservation.catalog.database import make_engine, make_sessionmaker

    own = engine or make_engine(url)
    sessions = make_sessionmaker(own)
    out = _DatabaseChain()
    try:
        with session_scope(sessions) as session:
            row = session.execute(
                select(Tenant.event_head, Tenant.event_count).where(Tenant.id == tenant_id)
            ).first()
            head, count = (row[0], int(row[1] or 0)) if row is not None else (None, 0)
            out.count = count
            prev: str | None = None
            expected = 1
            broken = False
            last_hash: str | None = None
            sha = hashlib.sha256
            for e in journal.iter_chain(session, tenant_id, 1, count):
                digest = sha(e.text)
                out.seqs.append(e.seq)
                out.digests += digest.digest()
                out.rows += 1
                last_hash = e.hash
                if not broken:
                    if e.seq != expected:
                        what = f"event {expected} is missing (found {e.seq})"
                        out.findings.append(Disagreement(expected, "database", what))
                        broken = True
                    elif digest.hexdigest() != e.hash:
                        what = f"event {e.seq} was altered after it was recorded"
                        out.findings.append(Disagreement(e.seq, "database", what))
                        broken = True
                    elif e.prev != prev:
                        what = f"event {e.seq} does not follow its predecessor"
                        out.findings.append(Disagreement(e.seq, "database", what))
                        broken = True
                prev = e.hash
                expected = e.seq + 1
            if head != last_hash and not broken:
                what = "the newest events of the chain were removed"
                out.findings.append(Disagreement(expected, "database", what))
    finally:
        if engine is None:
            own.dispose()
    return out


def _compare_database(
    database: _DatabaseChain, reference: list[ParsedSegment], out: TenantHistory
) -> None:
    """The database's events against the authentic journal, by the digest of their text.

    A journal event in the reference hashes to its recorded hash (it is whole),
    so a database event whose text hashes to the same value is the same text.
    """
    out.findings += database.findings
    out.database_events = database.rows
    journal_end = reference[-1].last_seq if reference else 0
    tape = _journal_events(reference)
    digests = database.digests.hex()
    for i, seq in enumerate(database.seqs):
        pending = next(tape, None)
        if pending is None:
            break
        if pending.seq < seq:
            what = f"event {pending.seq} is on tape but not in the database"
            out.findings.append(Disagreement(pending.seq, "database vs journal", what))
            break
        if pending.seq > seq:
            what = f"event {seq} is in the database but not where the tape journal has it"
            out.findings.append(Disagreement(seq, "database vs journal", what))
            break
        if digests[64 * i : 64 * i + 64] != pending.hash:
            what = f"event {seq} in the database differs from the tape journal"
            out.findings.append(Disagreement(seq, "database vs journal", what))
            break
    else:
        pending = next(tape, None)
        if pending is not None:
            what = f"events from {pending.seq} on are on tape but not in the database"
            out.findings.append(Disagreement(pending.seq, "database vs journal", what))
    out.not_on_tape = sum(1 for seq in database.seqs if seq > journal_end)
    out.journal_events = sum(len(ref.events) for ref in reference)


def verify_history(ctx: Context, *, tenant_id: str | None = None) -> HistoryReport:
    started = time.perf_counter()
    report = HistoryReport()
    trust = _trust(ctx)
    with session_scope(ctx.sessions) as session:
        stmt = select(Tenant.id).order_by(Tenant.id)
        if tenant_id is not None:
            stmt = stmt.where(Tenant.id == tenant_id)
        tenants = list(session.scalars(stmt))
    for t in tenants:
        report.tenants.append(_verify_tenant(ctx, t, trust))
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class HistoryHead:
    tenant: str
    seq: int
    head: str | None
    stamped_seq: int | None
    stamped_head: str | None
    stamped_at: datetime | None
    tsa: str | None
    serial: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "seq": self.seq,
            "head": self.head,
            "latest_time_stamp": None
            if self.stamped_seq is None
            else {
                "seq": self.stamped_seq,
                "head": self.stamped_head,
                "time": self.stamped_at.isoformat() if self.stamped_at else None,
                "tsa": self.tsa,
                "serial": self.serial,
            },
        }


def history_head(ctx: Context, *, tenant_id: str | None = None) -> list[HistoryHead]:
    """Each tenant's head, and the newest time-stamped head: what to hand a notary."""
    heads = []
    with session_scope(ctx.sessions) as session:
        stmt = select(Tenant).order_by(Tenant.id)
        if tenant_id is not None:
            stmt = stmt.where(Tenant.id == tenant_id)
        for tenant in session.scalars(stmt):
            seg = session.scalar(
                select(JournalSegment)
                .where(JournalSegment.tenant_id == tenant.id, JournalSegment.token.is_not(None))
                .order_by(JournalSegment.last_seq.desc())
                .limit(1)
            )
            info = token_info(seg.token) if seg is not None and seg.token else None
            heads.append(
                HistoryHead(
                    tenant=tenant.id,
                    seq=tenant.event_count or 0,
                    head=tenant.event_head,
                    stamped_seq=seg.last_seq if seg else None,
                    stamped_head=seg.head_hash if seg else None,
                    stamped_at=info.gen_time if info else None,
                    tsa=info.tsa if info else None,
                    serial=info.serial if info else None,
                )
            )
    return heads
