"""The event journal: each tenant's PREMIS chain, cut into segments that leave the database.

The chain (``premis_events.prev_hash``/``hash``) proves nothing on its own: it
lives in the database an insider could rewrite, hashes and all. So the chain
is cut into segments that are written to both sites' tapes, beside the AIPs,
and each segment's head hash is time-stamped by a TSA. A rewritten database
then disagrees with the tapes, and a rewritten tape with the time-stamp.

A segment file is JSON Lines, readable in fifty years with nothing but a
text editor and sha256::

    {"segment":{"first_seq":1,"format":"preservation-journal/1","head":"…","last_seq":9,…}}
    {"event":{…the event's fields, canonical JSON…},"hash":"<sha256 of that JSON>"}

The event's canonical JSON is exactly the text the chain hash is computed
over (keys sorted, no spaces, ASCII), so checking a line is one sha256 over
a slice of it, and the line itself is still plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from preservation.catalog import service as catalog
from preservation.catalog.models import JournalSegment, PremisEvent, Tenant

__all__ = [
    "FORMAT",
    "JournalEvent",
    "ParsedSegment",
    "canonical",
    "cut_segments",
    "event_fields",
    "iter_chain",
    "parse_segment",
    "render_segment",
    "segment_path",
    "stamp_path",
]

FORMAT = "preservation-journal/1"
#: Events per segment at most: a segment is one tape file, regenerated and
#: hashed whole when written, so its size is bounded (about 40 MB).
MAX_SEGMENT_EVENTS = 100_000
_EVENT_PREFIX = b'{"event":'
_HASH_INFIX = b',"hash":"'
_HASH_SUFFIX = b'"}'

#: The columns the chain hash covers, in the order the rows are read.
_COLUMNS = (
    PremisEvent.uuid,
    PremisEvent.tenant_id,
    PremisEvent.seq,
    PremisEvent.sip_id,
    PremisEvent.aip_id,
    PremisEvent.type,
    PremisEvent.occurred_at,
    PremisEvent.detail,
    PremisEvent.outcome,
    PremisEvent.outcome_detail,
    PremisEvent.agents,
    PremisEvent.objects,
    PremisEvent.prev_hash,
    PremisEvent.hash,
)


#: The chain's hash rule lives with the chain (the catalogue); the journal writes its text.
canonical = catalog.canonical_event
event_fields = catalog.event_fields


class JournalEvent(NamedTuple):
    """One event as a verifier sees it: its number, its claimed hash, its canonical text.

    A tuple, not a dataclass: a million are made per check, and a tuple is made
    three times faster.
    """

    seq: int
    hash: str
    prev: str | None
    text: bytes  # the canonical JSON the hash must cover

    @property
    def intact(self) -> bool:
        return hashlib.sha256(self.text).hexdigest() == self.hash


def iter_chain(
    session: Session, tenant_id: str, first: int = 1, last: int | None = None
) -> Iterator[JournalEvent]:
    """The database's chain in seq order, as canonical text, streamed (no ORM objects).

    The stored hash is returned as stored: a row edited without its hash shows
    as a text that does not hash to it, a row edited with it as a text that
    disagrees with the tape. Rows are read through the driver, untyped, and
    the canonical text is put together directly: at a million events a
    ``json.dumps`` of a dict per row is most of the cost of ``verify-history``.
    """
    sql = (
        "SELECT seq, uuid, tenant_id, sip_id, aip_id, type, occurred_at, detail, outcome, "
        "outcome_detail, agents, objects, prev_hash, hash FROM premis_events "
        "WHERE tenant_id = %(t)s AND seq >= %(first)s"
        + (" AND seq <= %(last)s" if last is not None else "")
        + " ORDER BY seq"
    )
    params: dict[str, Any] = {"t": tenant_id, "first": first, "last": last}
    connection = session.connection()
    if connection.dialect.paramstyle == "qmark":
        sql = sql.replace("%(t)s", "?").replace("%(first)s", "?").replace("%(last)s", "?")
        args: Any = (tenant_id, first) + ((last,) if last is not None else ())
    else:
        args = params
    memo: dict[Any, str] = {}
    enc = _encode
    template = _CANONICAL
    event = JournalEvent
    result = connection.exec_driver_sql(sql, args).yield_per(5000)
    # The loop is the cost of verify-history: no call it can do without.
    for (
        seq,
        uuid,
        tenant,
        sip,
        aip,
        kind,
        at,
        detail,
        outcome,
        why,
        agents,
        objects,
        prev,
        h,
    ) in result:
        agents_text = memo.get(agents) if isinstance(agents, str) else None
        if agents_text is None:
            agents_text = _json_piece(agents, memo)
        objects_text = memo.get(objects) if isinstance(objects, str) else None
        if objects_text is None:
            objects_text = _json_piece(objects, memo)
        text = template % (
            agents_text,
            "null" if aip is None else enc(aip),
            _at(at),
            enc(detail),
            objects_text,
            enc(outcome),
            enc(why),
            "null" if prev is None else enc(prev),
            seq,
            "null" if sip is None else enc(sip),
            enc(tenant),
            enc(kind),
            enc(uuid),
        )
        yield event(seq, h, prev, text.encode("ascii"))


#: ``canonical_event`` of the hashed fields, its keys in sorted order, as a template.
_CANONICAL = (
    '{"agents":%s,"aip":%s,"at":%s,"detail":%s,"objects":%s,"outcome":%s,'
    '"outcome_detail":%s,"prev":%s,"seq":%d,"sip":%s,"tenant":%s,"type":%s,"uuid":%s}'
)
_encode = json.encoder.encode_basestring_ascii


_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), default=str
).encode  # catalog.canonical_event's rule, built once


def _json_piece(value: Any, memo: dict[Any, str]) -> str:
    """A JSON column's value as canonical text (the driver gives text, or parsed JSON)."""
    if isinstance(value, str):
        done = _CANONICAL_JSON(json.loads(value))
        if len(memo) < 100_000:
            memo[value] = done
        return done
    return str(_CANONICAL_JSON(value))


def _at(value: Any) -> str:
    """``occurred_at`` as the chain hashes it, from a driver's datetime or SQLite's text."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return '"' + value[:10] + "T" + value[11:] + '"'
        value = datetime.fromisoformat(value)
    return str(_encode(catalog.iso_time(value)))


def _line(event: JournalEvent) -> bytes:
    return b"".join(
        (_EVENT_PREFIX, event.text, _HASH_INFIX, event.hash.encode(), _HASH_SUFFIX, b"\n")
    )


def render_segment(
    tenant_id: str,
    first: int,
    last: int,
    prev: str | None,
    head: str,
    events: Iterable[JournalEvent],
) -> bytes:
    """The segment file's bytes: a header line, then one line per event."""
    header = {
        "segment": {
            "format": FORMAT,
            "tenant": tenant_id,
            "first_seq": first,
            "last_seq": last,
            "prev": prev,
            "head": head,
            "hash_rule": "sha256 over the 'event' value as written (canonical JSON)",
        }
    }
    parts = [canonical(header).encode() + b"\n"]
    parts += [_line(e) for e in events]
    return b"".join(parts)


@dataclass
class ParsedSegment:
    """A segment file read back: its header, its events, and what is wrong with it."""

    header: dict[str, Any]
    events: list[JournalEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        return int(self.header.get("first_seq", 0))

    @property
    def last_seq(self) -> int:
        return int(self.header.get("last_seq", 0))

    @property
    def head(self) -> str | None:
        value = self.header.get("head")
        return str(value) if value else None


def parse_segment(data: bytes, name: str = "segment") -> ParsedSegment:
    """Split a segment file into events without trusting it; every defect is a problem."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        header = json.loads(lines[0])["segment"] if lines else {}
        if not isinstance(header, dict):
            raise TypeError("not an object")
    except (ValueError, KeyError, TypeError) as err:
        return ParsedSegment({}, problems=[f"{name}: line 1 is not a segment header ({err})"])
    parsed = ParsedSegment(header)
    for number, line in enumerate(lines[1:], start=2):
        end = len(line) - len(_HASH_SUFFIX) - 64 - len(_HASH_INFIX)
        if (
            not line.startswith(_EVENT_PREFIX)
            or not line.endswith(_HASH_SUFFIX)
            or end <= len(_EVENT_PREFIX)
            or line[end : end + len(_HASH_INFIX)] != _HASH_INFIX
        ):
            parsed.problems.append(f"{name}: line {number} is not a journal event line")
            continue
        text = line[len(_EVENT_PREFIX) : end]
        claimed = line[end + len(_HASH_INFIX) : -len(_HASH_SUFFIX)].decode("ascii", "replace")
        found = _top_level(text)
        if found is None:
            parsed.problems.append(f"{name}: line {number}: the event has no seq or prev")
            continue
        seq, prev = found
        parsed.events.append(JournalEvent(seq=seq, hash=claimed, prev=prev, text=text))
    return parsed


_TAIL = re.compile(rb'"prev":(?:null|"([0-9a-f]{64})"),"seq":([0-9]+),')


def _top_level(text: bytes) -> tuple[int, str | None] | None:
    """``seq`` and ``prev`` of an event's canonical text, without a JSON parse.

    Keys are sorted, and every key after ``prev`` holds a scalar, so the last
    ``"prev":`` is the top-level one (a string cannot hold an unescaped quote,
    and a nested object comes before it). A tenth of the cost of
    ``json.loads``, which matters at a million events.
    """
    m = _TAIL.match(text, text.rfind(b'"prev":'))
    if m is None:
        return None
    prev = m.group(1)
    return int(m.group(2)), None if prev is None else prev.decode("ascii")


def segment_path(tenant_id: str, first: int, last: int) -> str:
    """Zero-padded so that a directory listing is the chain's order."""
    return f"/{tenant_id}/.journal/{first:012d}-{last:012d}.jsonl"


def stamp_path(tenant_id: str, first: int, last: int) -> str:
    """The segment's RFC 3161 reply (DER), beside it: ``openssl ts -verify -in`` reads it."""
    return f"/{tenant_id}/.journal/{first:012d}-{last:012d}.tsr"


def cut_segments(session: Session, *, tenant_id: str | None = None) -> list[JournalSegment]:
    """Cut every tenant's events since its last segment into a new segment row.

    The segment's digest is taken now, from the chain as it stands; the bytes
    written to tape later must hash the same, or the chain changed in between.
    """
    made: list[JournalSegment] = []
    stmt = select(Tenant).order_by(Tenant.id)
    if tenant_id is not None:
        stmt = stmt.where(Tenant.id == tenant_id)
    for tenant in session.scalars(stmt):
        count = tenant.event_count or 0
        done = session.scalar(
            select(JournalSegment.last_seq)
            .where(JournalSegment.tenant_id == tenant.id)
            .order_by(JournalSegment.last_seq.desc())
            .limit(1)
        )
        first = (done or 0) + 1
        while first <= count:
            last = min(count, first + MAX_SEGMENT_EVENTS - 1)
            events = list(iter_chain(session, tenant.id, first, last))
            if not events:
                break
            last = events[-1].seq
            data = render_segment(tenant.id, first, last, events[0].prev, events[-1].hash, events)
            segment = JournalSegment(
                tenant_id=tenant.id,
                first_seq=first,
                last_seq=last,
                prev_hash=events[0].prev,
                head_hash=events[-1].hash,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
            session.add(segment)
            made.append(segment)
            first = last + 1
    session.flush()
    return made


def segment_bytes(session: Session, segment: JournalSegment) -> bytes:
    """The segment regenerated from the database's chain (to be checked against its digest)."""
    events = iter_chain(session, segment.tenant_id, segment.first_seq, segment.last_seq)
    return render_segment(
        segment.tenant_id,
        segment.first_seq,
        segment.last_seq,
        segment.prev_hash,
        segment.head_hash,
        events,
    )
