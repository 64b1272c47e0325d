"""Every read and write of the catalogue goes through these functions.

They take a ``Session`` and plain values, flush but never commit: the caller (a
pipeline stage, a Celery task, an API view) owns the transaction, so a stage's
result and its PREMIS events land together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.orm import Session

from preservation.catalog.models import (
    AIP,
    SIP,
    Agent,
    AIPState,
    AIPVersion,
    CopyStatus,
    File,
    PremisEvent,
    SIPState,
    StageLease,
    TapeCopy,
    Tenant,
    utcnow,
)
from preservation.errors import AmbiguousIdError, InvalidRequestError, NotFoundError

#: The shortest id prefix accepted where a full UUID is expected: `status` prints 8.
MIN_ID_PREFIX = 8

__all__ = [
    "MIN_ID_PREFIX",
    "add_staged_files",
    "agents_by_identifier",
    "assign_files_to_version",
    "count_sips_by_state",
    "create_aip",
    "create_aip_version",
    "create_sip",
    "drop_lease",
    "ensure_agent",
    "ensure_tenant",
    "canonical_event",
    "event_fields",
    "event_hash",
    "iso_time",
    "find_aips",
    "get_aip",
    "get_sip",
    "lease_holder",
    "list_events",
    "list_files",
    "list_sips",
    "lock_tenant",
    "locked",
    "record_event",
    "resolve_aip_id",
    "resolve_sip_id",
    "set_sip_state",
    "sips_from_source",
    "sips_with_external_identifier",
    "sips_with_payload",
    "stalled_sips",
    "take_lease",
    "touch_sip",
    "update_files",
    "verified_copies",
    "verify_event_chain",
]


# -- row locks ------------------------------------------------------------------

_Row = TypeVar("_Row")


def locked(stmt: Select[_Row], *, skip_locked: bool = False) -> Select[_Row]:
    """The rows of ``stmt``, locked until the transaction ends, as they are now.

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: the plain form also blocks every
    other transaction's foreign-key checks against the row (a SIP or event of
    the tenant being written), and two tape workers on one SIP then
    deadlocked. ``populate_existing``: an object already in the session keeps
    the values it was loaded with unless the locked read refreshes it, and a
    counter read before the lock (the tenant's event count) would be stale.
    SQLite has no row locks; its writers are serialised by the database lock.
    """
    return stmt.with_for_update(key_share=True, skip_locked=skip_locked).execution_options(
        populate_existing=True
    )


# -- tenants and agents -------------------------------------------------------


def ensure_tenant(session: Session, tenant_id: str, name: str | None = None) -> Tenant:
    """The tenant's row, made if new; two first ingests of a tenant at once both get it."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        _insert_if_absent(session, Tenant, ["id"], id=tenant_id, name=name or tenant_id)
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
    elif name and tenant.name != name:
        tenant.name = name
    return tenant


def _insert_if_absent(session: Session, model: Any, keys: list[str], **values: Any) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a row another writer just made is not an error.

    Get-then-insert races: two workers that both find a tenant or agent
    missing would both insert it, and one would fail on the key.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        session.execute(pg)
    else:
        lite = sqlite.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        session.execute(lite)


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Hold the tenant's row until the transaction ends: one writer per tenant past here.

    Checking for duplicates and recording what a SIP staged must be one step,
    or two copies of a bag validated side by side would each find the other
    absent. An UPDATE takes PostgreSQL's row lock and SQLite's write lock
    alike (``SELECT ... FOR UPDATE`` is a no-op on SQLite).
    """
    session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(event_count=Tenant.event_count)
    )


def ensure_agent(
    session: Session,
    identifier: str,
    *,
    name: str,
    type: str,
    version: str | None = None,
    tenant_id: str | None = None,
) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.identifier == identifier))
    if agent is None:
        _insert_if_absent(
            session,
            Agent,
            ["identifier"],
            identifier=identifier,
            name=name,
            type=type,
            version=version,
            tenant_id=tenant_id,
        )
        agent = session.scalar(select(Agent).where(Agent.identifier == identifier))
        assert agent is not None
    return agent


# -- SIPs -----------------------------------------------------------------------


def create_sip(
    session: Session, *, tenant_id: str, name: str, source_path: str, sip_id: str | None = None
) -> SIP:
    ensure_tenant(session, tenant_id)
    if sip_id is not None:
        existing = session.get(SIP, sip_id)
        if existing is not None:
            return existing  # receiving is idempotent by SIP id
    sip = SIP(tenant_id=tenant_id, name=name, source_path=source_path, state=SIPState.RECEIVED)
    if sip_id is not None:
        sip.id = sip_id
    session.add(sip)
    session.flush()
    return sip


def get_sip(session: Session, sip_id: str, *, for_update: bool = False) -> SIP:
    stmt = select(SIP).where(SIP.id == sip_id)
    if for_update:
        stmt = locked(stmt)
    sip = session.scalar(stmt)
    if sip is None:
        raise NotFoundError(f"no SIP {sip_id}", sip_id=sip_id)
    return sip


def set_sip_state(
    session: Session,
    sip: SIP,
    state: SIPState,
    *,
    stage: str | None = None,
    error: str | None = None,
) -> None:
    sip.state = state
    sip.stage = stage if stage is not None else state.value
    sip.last_error = error
    sip.updated_at = utcnow()
    session.flush()


def list_sips(
    session: Session,
    *,
    tenant_id: str | None = None,
    states: Sequence[SIPState] | None = None,
    limit: int = 200,
) -> list[SIP]:
    stmt = select(SIP).order_by(SIP.created_at.desc()).limit(limit)
    if tenant_id:
        stmt = stmt.where(SIP.tenant_id == tenant_id)
    if states:
        stmt = stmt.where(SIP.state.in_(list(states)))
    return list(session.scalars(stmt))


def sips_from_source(session: Session, tenant_id: str, source_path: str) -> list[SIP]:
    """SIPs of this tenant still in flight from the same submitted path."""
    stmt = select(SIP).where(
        SIP.tenant_id == tenant_id,
        SIP.source_path == source_path,
        SIP.state.not_in([SIPState.COMMITTED, SIPState.REJECTED]),
    )
    return list(session.scalars(stmt))


def _resolve_id(session: Session, column: Any, text: str, what: str) -> str:
    """A full id, or a unique prefix of at least MIN_ID_PREFIX characters, as a full id."""
    text = text.strip().lower()
    if len(text) < MIN_ID_PREFIX:
        raise InvalidRequestError(
            f"{what} id {text!r} is too short: give the full id or at least "
            f"{MIN_ID_PREFIX} characters of it",
            rule="id-prefix",
        )
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    found = list(
        session.scalars(select(column).where(column.like(escaped + "%", escape="\\")).limit(6))
    )
    if not found:
        raise NotFoundError(f"no {what} {text}", **{f"{what.lower()}_id": text})
    if len(found) > 1 and text not in found:
        shown = ", ".join(sorted(found)[:5]) + (", ..." if len(found) > 5 else "")
        raise AmbiguousIdError(
            f"{what} id prefix {text!r} names more than one {what}: {shown}; give more of it",
            rule="id-prefix",
        )
    return text if text in found else found[0]


def resolve_sip_id(session: Session, text: str) -> str:
    return _resolve_id(session, SIP.id, text, "SIP")


def resolve_aip_id(session: Session, text: str) -> str:
    return _resolve_id(session, AIP.id, text, "AIP")


def stalled_sips(session: Session, *, older_than: datetime, limit: int = 500) -> list[SIP]:
    """SIPs in flight whose row has not moved since ``older_than``: their messages were lost."""
    stmt = (
        select(SIP)
        .where(
            SIP.state.not_in([SIPState.COMMITTED, SIPState.REJECTED]),
            SIP.updated_at < older_than,
        )
        .order_by(SIP.updated_at)
        .limit(limit)
    )
    return list(session.scalars(locked(stmt, skip_locked=True)))


def lease_holder(session: Session, key: str) -> tuple[str | None, datetime | None]:
    """Who holds the lease ``key``, and until when (both None when nobody does)."""
    row = session.get(StageLease, key)
    return (row.owner, row.expires_at) if row is not None else (None, None)


def take_lease(
    session: Session,
    key: str,
    owner: str,
    *,
    until: datetime,
    now: datetime,
    replace: str | None = None,
) -> bool:
    """Take (or renew) the lease ``key``; the database arbitrates, not the caller.

    It succeeds when the lease is free, expired, already ours, or held by
    ``replace`` (a holder the caller knows is dead). One upsert (``INSERT ...
    ON CONFLICT DO UPDATE ... WHERE``, on SQLite and PostgreSQL alike): the
    row is written only if the condition holds, so two workers can never both
    hold one lease, and a stage pays one statement for it.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - the catalogue's two
        raise NotImplementedError(f"leases on {dialect}")
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = StageLease.__table__
    free = (table.c.owner == owner) | (table.c.expires_at < now)
    if replace is not None:
        free = free | (table.c.owner == replace)
    stmt = (
        upsert(StageLease)
        .values(key=key, owner=owner, expires_at=until)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"owner": owner, "expires_at": until},
            where=free,
        )
        # RETURNING, not rowcount: psycopg counts a conflict the WHERE refused as a row.
        .returning(table.c.owner)
    )
    return session.execute(stmt).first() is not None


def drop_lease(session: Session, key: str, owner: str) -> None:
    """Give the lease back, only if it is still ours."""
    session.execute(
        delete(StageLease)
        .where(StageLease.key == key, StageLease.owner == owner)
        .execution_options(synchronize_session=False)
    )


def touch_sip(session: Session, sip_id: str, now: datetime, stage: str | None = None) -> None:
    """A heartbeat: the SIP is being worked on, so it is not stalled.

    With ``stage``, also say which stage is at work (for ``status``), unless
    the SIP has already ended.
    """
    session.execute(
        update(SIP)
        .where(SIP.id == sip_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if stage is not None:
        session.execute(
            update(SIP)
            .where(SIP.id == sip_id, SIP.state.not_in([SIPState.COMMITTED, SIPState.REJECTED]))
            .values(stage=stage)
            .execution_options(synchronize_session=False)
        )


def count_sips_by_state(session: Session, tenant_id: str | None = None) -> dict[str, int]:
    stmt = select(SIP.state, func.count()).group_by(SIP.state)
    if tenant_id:
        stmt = stmt.where(SIP.tenant_id == tenant_id)
    return {str(state.value): n for state, n in session.execute(stmt)}


# -- files ----------------------------------------------------------------------


def add_staged_files(session: Session, sip_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Bulk insert of staged files: one statement per batch, never one per file."""
    batch: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        batch.append({"sip_id": sip_id, **row})
        if len(batch) >= 5000:
            session.execute(insert(File), batch)
            total += len(batch)
            batch = []
    if batch:
        session.execute(insert(File), batch)
        total += len(batch)
    return total


def list_files(
    session: Session, *, sip_id: str | None = None, aip_version_id: int | None = None
) -> list[File]:
    stmt = select(File).order_by(File.id)
    if sip_id is not None:
        stmt = stmt.where(File.sip_id == sip_id)
    if aip_version_id is not None:
        stmt = stmt.where(File.aip_version_id == aip_version_id)
    return list(session.scalars(stmt))


def assign_files_to_version(session: Session, sip_id: str, version_id: int) -> None:
    """The staged files of a SIP become the files of its AIP version, in one statement."""
    session.execute(update(File).where(File.sip_id == sip_id).values(aip_version_id=version_id))


def agents_by_identifier(session: Session) -> dict[str, Agent]:
    return {a.identifier: a for a in session.scalars(select(Agent))}


def update_files(session: Session, updates: Sequence[Mapping[str, Any]]) -> None:
    """What a stage learnt about each file (its format, its properties), one bulk UPDATE.

    Rows carry ``id`` and the columns to set: one statement for the whole SIP,
    never one per file.
    """
    if updates:
        session.execute(update(File), list(updates))


# -- AIPs -----------------------------------------------------------------------


def create_aip(session: Session, sip: SIP, *, aip_id: str | None = None) -> AIP:
    existing = session.scalar(select(AIP).where(AIP.sip_id == sip.id))
    if existing is not None:
        return existing
    aip = AIP(
        tenant_id=sip.tenant_id,
        sip_id=sip.id,
        external_identifier=sip.external_identifier,
        source_bag_name=sip.name,
        state=AIPState.PENDING,
    )
    if aip_id:
        aip.id = aip_id
    session.add(aip)
    session.flush()
    sip.aip_id = aip.id
    return aip


def create_aip_version(
    session: Session, aip: AIP, number: int, *, reason: str = "ingest"
) -> AIPVersion:
    version = session.scalar(
        select(AIPVersion).where(AIPVersion.aip_id == aip.id, AIPVersion.number == number)
    )
    if version is None:
        version = AIPVersion(aip_id=aip.id, number=number, reason=reason, tar_name=f"v{number}.tar")
        session.add(version)
        session.flush()
    return version


def get_aip(session: Session, aip_id: str) -> AIP:
    aip = session.get(AIP, aip_id)
    if aip is None:
        raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
    return aip


def find_aips(
    session: Session,
    *,
    tenant_id: str | None = None,
    external_identifier: str | None = None,
    name: str | None = None,
    limit: int = 100,
) -> list[AIP]:
    stmt = select(AIP).order_by(AIP.created_at.desc()).limit(limit)
    if tenant_id:
        stmt = stmt.where(AIP.tenant_id == tenant_id)
    if external_identifier:
        stmt = stmt.where(AIP.external_identifier == external_identifier)
    if name:
        stmt = stmt.where(AIP.source_bag_name == name)
    return list(session.scalars(stmt))


#: sha256 of zero bytes: the digest most payloads share, a poor probe for candidates.
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_CANDIDATE_BATCH = 500


def sips_with_payload(
    session: Session,
    tenant_id: str,
    sha256s: Sequence[str],
    *,
    exclude_sip_id: str | None = None,
    limit: int = 10,
) -> list[SIP]:
    """The tenant's SIPs that staged exactly these sha256 digests, oldest first.

    The digests compare as a multiset: file names do not matter, how many files
    carry each digest does. A SIP's files are its AIP's version-1 files, so
    this finds AIPs (``SIP.aip_id``) and also SIPs still between validate and
    describe, which have none yet: two copies of one bag ingested side by side
    must not both pass. A rejected (or discarded) SIP does not count; a
    pending one does. An empty payload matches nothing.

    Never reads all the tenant's files: one grouped lookup of a few digests
    (through the index on ``files.sha256``) either shows one is new, which
    ends the check, or picks the rarest; one statement finds the candidates,
    SIPs with as many files of which one has that digest; one grouped
    statement per 500 candidates then counts their digests.
    """
    wanted = Counter(sha256s)
    if not wanted:
        return []
    probe = _rarest_digest(session, wanted)
    if probe is None:
        return []
    stmt = (
        select(SIP)
        .where(
            SIP.tenant_id == tenant_id,
            SIP.state != SIPState.REJECTED,
            SIP.file_count == len(sha256s),
            SIP.id.in_(select(File.sip_id).where(File.sha256 == probe)),
        )
        .order_by(SIP.created_at, SIP.id)
    )
    if exclude_sip_id is not None:
        stmt = stmt.where(SIP.id != exclude_sip_id)
    candidates = list(session.scalars(stmt))
    found: list[SIP] = []
    for start in range(0, len(candidates), _CANDIDATE_BATCH):
        batch = candidates[start : start + _CANDIDATE_BATCH]
        counts: dict[str, Counter[str]] = {sip.id: Counter() for sip in batch}
        for sip_id, digest, n in session.execute(
            select(File.sip_id, File.sha256, func.count())
            .where(File.sip_id.in_(list(counts)))
            .group_by(File.sip_id, File.sha256)
        ):
            counts[sip_id][digest] = n
        found += [sip for sip in batch if counts[sip.id] == wanted]
        if len(found) >= limit:
            break
    return found[:limit]


_PROBE_SAMPLE = 16


def _rarest_digest(session: Session, wanted: Counter[str]) -> str | None:
    """The least common of a few of the payload's digests; None if one is nowhere yet.

    Most submissions are new: one of their digests is in no file row, and one
    grouped lookup of a bounded sample (through the ``files.sha256`` index)
    ends the check there. Otherwise the rarest digest of the sample finds the
    fewest candidates: a logo present in every bag would find them all.
    """
    digests = sorted(d for d in wanted if d != _EMPTY_SHA256) or [_EMPTY_SHA256]
    step = max(1, len(digests) // _PROBE_SAMPLE)
    sample = digests[::step][:_PROBE_SAMPLE]
    seen = {
        sha256: n
        for sha256, n in session.execute(
            select(File.sha256, func.count()).where(File.sha256.in_(sample)).group_by(File.sha256)
        )
    }
    if len(seen) < len(sample):
        return None
    return min(sample, key=lambda d: (seen[d], d))


def sips_with_external_identifier(
    session: Session,
    tenant_id: str,
    identifiers: Iterable[str],
    *,
    exclude_sip_id: str | None = None,
    limit: int = 10,
) -> list[SIP]:
    """The tenant's SIPs whose External-Identifier is one of these, oldest first.

    As for :func:`sips_with_payload`, a rejected SIP does not count and one
    still in flight does; the identifier is the one the bag carried.
    """
    wanted = sorted({i for i in identifiers if i})
    if not wanted:
        return []
    stmt = (
        select(SIP)
        .where(
            SIP.tenant_id == tenant_id,
            SIP.external_identifier.in_(wanted),
            SIP.state != SIPState.REJECTED,
        )
        .order_by(SIP.created_at, SIP.id)
        .limit(limit)
    )
    if exclude_sip_id is not None:
        stmt = stmt.where(SIP.id != exclude_sip_id)
    return list(session.scalars(stmt))


def verified_copies(session: Session, version_id: int) -> list[TapeCopy]:
    return list(
        session.scalars(
            select(TapeCopy).where(
                TapeCopy.aip_version_id == version_id, TapeCopy.status == CopyStatus.VERIFIED
            )
        )
    )


# -- PREMIS events, chained by hash ----------------------------------------------------


def canonical_event(fields: Mapping[str, Any]) -> str:
    """The text an event's chain hash covers: keys sorted, no spaces, ASCII escapes.

    The one rule a verifier must know (docs/evidence.md): the tape journal
    writes exactly this text, so checking a line is one sha256 over it.
    """
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)


def event_hash(fields: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON form: any later edit of a stored event shows."""
    return hashlib.sha256(canonical_event(fields).encode()).hexdigest()


def event_fields(ev: Any) -> dict[str, Any]:
    """The hashed fields of an event (an ORM row, or a Core row with the same columns)."""
    return {
        "uuid": ev.uuid,
        "tenant": ev.tenant_id,
        "seq": ev.seq,
        "sip": ev.sip_id,
        "aip": ev.aip_id,
        "type": ev.type,
        "at": iso_time(ev.occurred_at),
        "detail": ev.detail,
        "outcome": ev.outcome,
        "outcome_detail": ev.outcome_detail,
        "agents": ev.agents,
        "objects": ev.objects,
        "prev": ev.prev_hash,
    }


def iso_time(dt: datetime) -> str:
    """UTC, naive, to the microsecond: the same text on every backend and session time zone.

    SQLite drops tzinfo (the value is UTC already); PostgreSQL gives it back in
    the session's zone, so an aware value is brought to UTC first.
    """
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds")


def record_event(
    session: Session,
    *,
    tenant_id: str,
    type: str,
    outcome: str,
    detail: str = "",
    outcome_detail: str = "",
    agents: Mapping[str, Sequence[str]] | None = None,
    objects: Mapping[str, Any] | None = None,
    sip_id: str | None = None,
    aip_id: str | None = None,
    occurred_at: datetime | None = None,
    event_uuid: str | None = None,
) -> PremisEvent:
    """Append one event to the tenant's chain, holding the tenant row lock (see :func:`locked`).

    ``event_uuid`` is for an event already written into a METS before it is
    recorded (a version built outside the transaction that makes it): the
    catalogue's event is then the same event, by id, time and content.
    """
    chain_head = locked(select(Tenant).where(Tenant.id == tenant_id))
    tenant = session.scalar(chain_head)
    if tenant is None:
        ensure_tenant(session, tenant_id)
        tenant = session.scalar(chain_head)  # made by another writer meanwhile: lock it too
        assert tenant is not None
    ev = PremisEvent(
        tenant_id=tenant_id,
        seq=(tenant.event_count or 0) + 1,
        sip_id=sip_id,
        aip_id=aip_id,
        type=type,
        occurred_at=occurred_at or utcnow(),
        detail=detail,
        outcome=outcome,
        outcome_detail=outcome_detail,
        agents={k: list(v) for k, v in (agents or {}).items()},
        objects=dict(objects or {}),
        prev_hash=tenant.event_head,
    )
    ev.uuid = event_uuid or str(uuid.uuid4())
    ev.hash = event_hash(event_fields(ev))
    session.add(ev)
    tenant.event_head = ev.hash
    tenant.event_count = ev.seq
    session.flush()
    return ev


def list_events(
    session: Session,
    *,
    tenant_id: str | None = None,
    sip_id: str | None = None,
    aip_id: str | None = None,
) -> list[PremisEvent]:
    stmt = select(PremisEvent).order_by(PremisEvent.tenant_id, PremisEvent.seq)
    if tenant_id:
        stmt = stmt.where(PremisEvent.tenant_id == tenant_id)
    if sip_id:
        stmt = stmt.where(PremisEvent.sip_id == sip_id)
    if aip_id:
        stmt = stmt.where(PremisEvent.aip_id == aip_id)
    return list(session.scalars(stmt))


def verify_event_chain(session: Session, tenant_id: str) -> list[str]:
    """Recompute the tenant's chain; return one line per break (empty: intact)."""
    problems: list[str] = []
    prev: str | None = None
    expected_seq = 1
    for ev in session.scalars(
        select(PremisEvent).where(PremisEvent.tenant_id == tenant_id).order_by(PremisEvent.seq)
    ):
        if ev.seq != expected_seq:
            problems.append(f"event seq {expected_seq} missing (found {ev.seq})")
        if ev.prev_hash != prev:
            problems.append(f"event {ev.seq} ({ev.uuid}) does not follow its predecessor")
        if event_hash(event_fields(ev)) != ev.hash:
            problems.append(f"event {ev.seq} ({ev.uuid}) was altered after it was recorded")
        prev = ev.hash
        expected_seq = ev.seq + 1
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None and tenant.event_head != prev:
        problems.append("the newest events of the chain were removed")
    return problems
