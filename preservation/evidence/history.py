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

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import JournalSegment, Tenant
from preservation.context import Context
from preservation.errors import PreservationError
from preservation.evidence import journal
from preservation.evidence.journal import JournalEvent, ParsedSegment
from preservation.evidence.on_tape import read_journal, reply_token
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
        return min(self.findings, key=lambda d: d.seq) if self.findings else None

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


def _check_copy(
    parsed: ParsedSegment,
    token: bytes | None,
    trust: TsaTrust | None,
    where: str,
    out: TenantHistory,
) -> tuple[bool, bool]:
    """Is this copy of a segment whole, and is its head time-stamped? (findings recorded)."""
    whole = True
    for problem in parsed.problems:
        out.findings.append(Disagreement(parsed.first_seq, where, problem))
        whole = False
    expected_seq = parsed.first_seq
    prev = parsed.header.get("prev")
    for e in parsed.events:
        if e.seq != expected_seq:
            out.findings.append(
                Disagreement(
                    expected_seq, where, f"event {expected_seq} is missing (found {e.seq})"
                )
            )
            whole = False
            break
        if not e.intact:
            out.findings.append(
                Disagreement(e.seq, where, f"event {e.seq} does not hash to its recorded hash")
            )
            whole = False
            break
        if e.prev != prev:
            out.findings.append(
                Disagreement(e.seq, where, f"event {e.seq} does not follow event {e.seq - 1}")
            )
            whole = False
            break
        prev = e.hash
        expected_seq += 1
    if whole and (expected_seq - 1 != parsed.last_seq or prev != parsed.head):
        out.findings.append(
            Disagreement(
                parsed.last_seq, where, "the segment does not end at the head its header names"
            )
        )
        whole = False
    stamped = False
    if token is not None and parsed.head:
        if trust is None:
            out.notes.append(f"{where}: time-stamp present, not checked (no TSA certificate set)")
        else:
            try:
                verify_token(token, bytes.fromhex(parsed.head), trust, "sha256")
                stamped = True
            except PreservationError as err:
                out.findings.append(
                    Disagreement(
                        parsed.last_seq,
                        where,
                        f"the time-stamp does not cover this segment's head: {err}",
                    )
                )
                whole = False
    return whole, stamped


def _verify_tenant(ctx: Context, tenant_id: str, trust: TsaTrust | None) -> TenantHistory:
    out = TenantHistory(tenant_id)
    with session_scope(ctx.sessions) as session:
        segments = list(
            session.execute(
                select(
                    JournalSegment.first_seq, JournalSegment.last_seq, JournalSegment.token
                ).where(JournalSegment.tenant_id == tenant_id)
            )
        )
    catalogue_tokens = {(f, la): t for f, la, t in segments}
    copies: dict[str, dict[str, bytes]] = {}
    for site in ctx.settings.sites:
        try:
            found = read_journal(ctx, tenant_id, site)
        except PreservationError as err:
            out.notes.append(f"site {site}: journal not read: {err}")
            continue
        copies[site] = found.files
        out.notes += found.problems
    # Per segment (by its file name), the copies at each site; the authentic one wins.
    names = sorted(
        {
            p
            for files in copies.values()
            for p in files
            if p.endswith(".jsonl") and "/evidence-" not in p
        }
    )
    reference: list[ParsedSegment] = []
    for path in names:
        stem = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        chosen: ParsedSegment | None = None
        chosen_data = b""
        chosen_rank = -1
        # Both sites usually hold the same bytes: those are checked once.
        seen: list[tuple[bytes, ParsedSegment, bool]] = []
        whole_copies: list[tuple[str, bytes, ParsedSegment]] = []
        for site, files in copies.items():
            data = files.get(path)
            if data is None:
                out.notes.append(f"site {site}: {path} is not on its tapes (yet)")
                continue
            same = next((v for v in seen if v[0] == data), None)
            if same is not None:
                parsed, whole = same[1], same[2]
                rank = chosen_rank if parsed is chosen else (1 if whole else 0)
            else:
                parsed = journal.parse_segment(data, f"{site}:{path}")
                reply = files.get(path.removesuffix(".jsonl") + ".tsr")
                token = (
                    reply_token(reply)
                    if reply
                    else catalogue_tokens.get((parsed.first_seq, parsed.last_seq))
                )
                whole, stamped = _check_copy(parsed, token, trust, f"{site} journal {stem}", out)
                rank = (2 if stamped else 0) + (1 if whole else 0)
                seen.append((data, parsed, whole))
            if whole:
                whole_copies.append((site, data, parsed))
            if whole and rank > chosen_rank:
                chosen, chosen_data, chosen_rank = parsed, data, rank
        if chosen is None:
            continue
        out.segments += 1
        if chosen_rank >= 2:
            out.segments_stamped += 1
            out.stamps_verified += 1
        reference.append(chosen)
        # A whole copy that differs from the chosen one is a rewrite of the tape by
        # someone who knew the hash rule: only the time-stamp tells them apart.
        for site, data, parsed in whole_copies:
            if data != chosen_data:
                _first_difference(site, stem, parsed, chosen, out)
    _compare_database(ctx, tenant_id, reference, out)
    return out


def _first_difference(
    site: str, stem: str, other: ParsedSegment, chosen: ParsedSegment, out: TenantHistory
) -> None:
    want = {e.seq: e.hash for e in chosen.events}
    for e in other.events:
        if want.get(e.seq) != e.hash:
            out.findings.append(
                Disagreement(
                    e.seq,
                    f"{site} journal {stem}",
                    f"event {e.seq} differs from the time-stamped copy",
                )
            )
            return


def _journal_events(reference: list[ParsedSegment]) -> Iterator[JournalEvent]:
    for segment in reference:
        yield from segment.events


def _compare_database(
    ctx: Context, tenant_id: str, reference: list[ParsedSegment], out: TenantHistory
) -> None:
    with session_scope(ctx.sessions) as session:
        tenant = session.get(Tenant, tenant_id)
        head = tenant.event_head if tenant else None
        prev: str | None = None
        expected = 1
        db_broken = False
        tape = _journal_events(reference)
        pending = next(tape, None)
        last_db_hash: str | None = None
        for e in journal.iter_chain(session, tenant_id):
            out.database_events += 1
            if not db_broken:
                if e.seq != expected:
                    out.findings.append(
                        Disagreement(
                            expected, "database", f"event {expected} is missing (found {e.seq})"
                        )
                    )
                    db_broken = True
                elif hashlib.sha256(e.text).hexdigest() != e.hash:
                    out.findings.append(
                        Disagreement(
                            e.seq, "database", f"event {e.seq} was altered after it was recorded"
                        )
                    )
                    db_broken = True
                elif e.prev != prev:
                    out.findings.append(
                        Disagreement(
                            e.seq, "database", f"event {e.seq} does not follow its predecessor"
                        )
                    )
                    db_broken = True
            prev = e.hash
            expected = e.seq + 1
            last_db_hash = e.hash
            while pending is not None and pending.seq < e.seq:
                out.findings.append(
                    Disagreement(
                        pending.seq,
                        "database vs journal",
                        f"event {pending.seq} is on tape but not in the database",
                    )
                )
                pending = None  # one is enough: everything after is shifted
                break
            if pending is None:
                if reference and e.seq <= reference[-1].last_seq:
                    continue
                out.not_on_tape += 1
                continue
            if pending.seq == e.seq:
                if pending.text != e.text or pending.hash != e.hash:
                    out.findings.append(
                        Disagreement(
                            e.seq,
                            "database vs journal",
                            f"event {e.seq} in the database differs from the tape journal",
                        )
                    )
                    pending = None
                    continue
                pending = next(tape, None)
            else:
                out.findings.append(
                    Disagreement(
                        e.seq,
                        "database vs journal",
                        f"event {e.seq} is in the database but not where the tape journal has it",
                    )
                )
                pending = None
        if pending is not None:
            out.findings.append(
                Disagreement(
                    pending.seq,
                    "database vs journal",
                    f"events from {pending.seq} on are on tape but not in the database",
                )
            )
        if head != last_db_hash and not db_broken:
            out.findings.append(
                Disagreement(expected, "database", "the newest events of the chain were removed")
            )
    for ref in reference:
        out.journal_events += len(ref.events)


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
