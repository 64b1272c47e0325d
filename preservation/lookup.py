"""Finding and reading what a tenant holds: AIPs, their versions, files and events, SIPs.

Every function takes the asker's tenant (``None`` for an admin, who sees
every tenant) and scopes its query by it, in SQL, so another tenant's row is
never loaded, let alone returned: it is simply *not found*, the same
:class:`NotFoundError` as an id that does not exist. The API answers both
with 404, so a tenant cannot even learn that someone else's AIP exists.

The views are pydantic models: the API uses them as response schemas (its
OpenAPI document and schemathesis check them), the CLI prints their JSON.
One definition, so ``preservation aip show --json`` and ``GET /aips/{id}``
cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict
from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from preservation.catalog.models import (
    AIP,
    SIP,
    AIPState,
    AIPVersion,
    File,
    LegalHold,
    PremisEvent,
    SIPState,
    TapeCopy,
)
from preservation.catalog.search import SearchQuery, invalid_files_of, search_aips
from preservation.errors import InvalidRequestError, NotFoundError

__all__ = [
    "AIPPage",
    "AIPSummary",
    "CopyView",
    "EventPage",
    "EventView",
    "FileView",
    "SIPPage",
    "SIPView",
    "VersionDetail",
    "VersionView",
    "aip_by_external_id",
    "aip_events",
    "aip_summary",
    "aip_versions",
    "Instant",
    "check_uuid",
    "list_sip_views",
    "scoped",
    "scoped_aip",
    "scoped_sip",
    "search",
    "sip_view",
    "version_detail",
]


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time the service shows is UTC, and says so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A datetime that always carries its offset: RFC 3339, as OpenAPI's date-time demands.
Instant = Annotated[datetime, AfterValidator(_aware)]


_Owned = TypeVar("_Owned")


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class AIPSummary(_View):
    aip_id: str
    tenant: str
    state: str
    sip_id: str
    external_identifier: str | None
    source_bag_name: str
    created_at: Instant
    versions: int
    current_version: int
    bytes: int
    descriptive: dict[str, list[str]] | None
    retention_until: Instant | None
    on_hold: bool
    disposed_at: Instant | None
    # Files that a format validator found malformed (any version): a finding, kept.
    invalid_files: int = 0


class CopyView(_View):
    site: str
    barcode: str
    path: str
    status: str
    length: int
    sha256: str
    verified_at: Instant | None


class VersionView(_View):
    number: int
    reason: str
    created_at: Instant
    committed_at: Instant | None
    tar_name: str
    tar_size: int | None
    tar_sha256: str | None
    copies: list[CopyView]


class FileView(_View):
    path: str
    aip_path: str | None
    version: int
    size: int
    sha256: str
    sha512: str
    puid: str | None
    format_name: str | None
    format_version: str | None
    mime: str | None
    # Significant properties: width, height, duration, sample_rate, page_count...
    properties: dict[str, Any] | None = None
    # False: malformed by at least one validator; None: no validator checked it.
    valid: bool | None = None
    # Each validator's verdict: tool, version, valid, message.
    validation: list[dict[str, Any]] | None = None


class VersionDetail(VersionView):
    aip_id: str
    files: list[FileView]
    next_cursor: str | None


class EventView(_View):
    uuid: str
    seq: int
    type: str
    occurred_at: Instant
    outcome: str
    detail: str
    outcome_detail: str
    agents: dict[str, Any]
    objects: dict[str, Any]
    sip_id: str | None
    aip_id: str | None
    prev_hash: str | None
    hash: str


class EventPage(_View):
    items: list[EventView]
    next_cursor: str | None


class AIPPage(_View):
    items: list[AIPSummary]
    next_cursor: str | None


class SIPView(_View):
    sip_id: str
    tenant: str
    name: str
    state: str
    stage: str | None
    interrupted: bool
    aip_id: str | None
    external_identifier: str | None
    files: int
    bytes: int
    problems: list[dict[str, Any]]
    created_at: Instant
    updated_at: Instant
    status_url: str


class SIPPage(_View):
    items: list[SIPView]
    next_cursor: str | None


def check_uuid(value: str, *, field: str) -> str:
    """An id must be a UUID: anything else is the caller's mistake, said as such (not 404)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidRequestError(
            f"{field} {value[:80]!r} is not an id: ids are UUIDs "
            "(8-4-4-4-12 hexadecimal digits)",
            rule="uuid",
            field=field,
        ) from exc


def scoped(
    session: Session, model: type[_Owned], row_id: str, tenant_id: str | None, *, what: str
) -> _Owned:
    """The row if it exists *for this asker*; otherwise not found, whoever owns it.

    The one place an id from outside meets the tenant: every tenant-owned
    thing (SIP, AIP, disposal, audit) is fetched through here, so a foreign id
    and a missing one cannot be told apart.
    """
    field = f"{what.lower()}_id"
    row_id = check_uuid(row_id, field=field)
    stmt = select(model).where(model.id == row_id)  # type: ignore[attr-defined]
    if tenant_id is not None:
        stmt = stmt.where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    row = session.scalar(stmt)
    if row is None:
        raise NotFoundError(f"no {what} {row_id}", **{field: row_id})
    return row


def scoped_aip(session: Session, aip_id: str, tenant_id: str | None) -> AIP:
    return scoped(session, AIP, aip_id, tenant_id, what="AIP")


def scoped_sip(session: Session, sip_id: str, tenant_id: str | None) -> SIP:
    return scoped(session, SIP, sip_id, tenant_id, what="SIP")


# -- AIPs -----------------------------------------------------------------------------------


def _summaries(session: Session, aips: Sequence[AIP]) -> list[AIPSummary]:
    """Views of many AIPs with three grouped queries, never one per AIP."""
    ids = [a.id for a in aips]
    sizes: dict[str, tuple[int, int, int]] = {}
    holds: set[str] = set()
    invalid: dict[str, int] = {}
    if ids:
        for aip_id, count, top, size in session.execute(
            select(
                AIPVersion.aip_id,
                func.count(),
                func.max(AIPVersion.number),
                func.coalesce(func.sum(AIPVersion.tar_size), 0),
            )
            .where(AIPVersion.aip_id.in_(ids))
            .group_by(AIPVersion.aip_id)
        ):
            sizes[aip_id] = (int(count), int(top or 0), int(size or 0))
        holds = set(
            session.scalars(
                select(LegalHold.aip_id).where(
                    LegalHold.aip_id.in_(ids), LegalHold.lifted_at.is_(None)
                )
            )
        )
        invalid = dict(
            session.execute(
                select(AIPVersion.aip_id, func.count())
                .join(File, File.aip_version_id == AIPVersion.id)
                .where(AIPVersion.aip_id.in_(ids), File.valid.is_(False))
                .group_by(AIPVersion.aip_id)
            ).all()
        )
    return [
        AIPSummary(
            aip_id=a.id,
            tenant=a.tenant_id,
            state=a.state.value,
            sip_id=a.sip_id,
            external_identifier=a.external_identifier,
            source_bag_name=a.source_bag_name,
            created_at=a.created_at,
            versions=sizes.get(a.id, (0, 0, 0))[0],
            current_version=sizes.get(a.id, (0, 0, 0))[1],
            bytes=sizes.get(a.id, (0, 0, 0))[2],
            descriptive=a.descriptive,
            retention_until=a.retention_until,
            on_hold=a.id in holds,
            disposed_at=a.disposed_at,
            invalid_files=int(invalid.get(a.id, 0)),
        )
        for a in aips
    ]


def _with_totals(stmt: Select[Any]) -> Select[Any]:
    """The AIPs of ``stmt`` with their version totals and hold flag, in the same query.

    A lookup is one round trip to the catalogue rather than three: at a few
    hundred microseconds each on PostgreSQL, round trips are most of its time.
    """
    v = AIPVersion
    totals = (
        select(func.count(), func.coalesce(func.max(v.number), 0))
        .where(v.aip_id == AIP.id)
        .correlate(AIP)
    )
    return stmt.add_columns(
        totals.with_only_columns(func.count()).scalar_subquery(),
        totals.with_only_columns(func.coalesce(func.max(v.number), 0)).scalar_subquery(),
        totals.with_only_columns(func.coalesce(func.sum(v.tar_size), 0)).scalar_subquery(),
        exists()
        .where(LegalHold.aip_id == AIP.id, LegalHold.lifted_at.is_(None))
        .correlate(AIP),
        invalid_files_of(AIP.id)
        .with_only_columns(func.count())
        .correlate(AIP)
        .scalar_subquery(),
    )


def _summary(
    a: AIP, count: int, top: int, size: int, held: bool, invalid: int = 0
) -> AIPSummary:
    return AIPSummary(
        aip_id=a.id,
        tenant=a.tenant_id,
        state=a.state.value,
        sip_id=a.sip_id,
        external_identifier=a.external_identifier,
        source_bag_name=a.source_bag_name,
        created_at=a.created_at,
        versions=int(count or 0),
        current_version=int(top or 0),
        bytes=int(size or 0),
        descriptive=a.descriptive,
        retention_until=a.retention_until,
        on_hold=bool(held),
        disposed_at=a.disposed_at,
        invalid_files=int(invalid or 0),
    )


def aip_summary(session: Session, aip_id: str, tenant_id: str | None) -> AIPSummary:
    aip_id = check_uuid(aip_id, field="aip_id")
    stmt = select(AIP).where(AIP.id == aip_id)
    if tenant_id is not None:
        stmt = stmt.where(AIP.tenant_id == tenant_id)
    row = session.execute(_with_totals(stmt)).first()
    if row is None:
        raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
    return _summary(*row)


def aip_by_external_id(session: Session, value: str, tenant_id: str | None) -> AIPSummary:
    """The AIP a submitter's ``External-Identifier`` names; the newest if several do.

    An identifier is the submitter's, so it is unique only within a tenant, and
    even there a resubmission may repeat it (``on_duplicate: warn``): the newest
    AIP is the answer, and search lists them all.
    """
    stmt = select(AIP).where(AIP.external_identifier == value)
    if tenant_id is not None:
        stmt = stmt.where(AIP.tenant_id == tenant_id)
    # The newest is picked here, not by ORDER BY created_at DESC LIMIT 1: given that
    # ORDER BY, SQLite (no planner statistics: nothing runs ANALYZE on the catalogue)
    # walks the (tenant_id, created_at, id) index newest first and reads the tenant's
    # AIPs until the identifier turns up, 85 ms at 40,000 AIPs (bench_catalogue.py);
    # without it, it seeks (tenant_id, external_identifier). Few AIPs share one.
    row = max(
        session.execute(_with_totals(stmt)).all(),
        key=lambda r: (r[0].created_at, r[0].id),
        default=None,
    )
    if row is None:
        raise NotFoundError(f"no AIP with External-Identifier {value!r}", external_identifier=value)
    return _summary(*row)


def search(
    session: Session, query: SearchQuery, *, cursor: str | None = None, limit: int = 50
) -> AIPPage:
    page = search_aips(session, query, cursor=cursor, limit=limit)
    return AIPPage(items=_summaries(session, page.aips), next_cursor=page.next_cursor)


def _copies(session: Session, version_ids: Sequence[int]) -> dict[int, list[CopyView]]:
    out: dict[int, list[CopyView]] = defaultdict(list)
    if not version_ids:
        return out
    rows = session.scalars(
        select(TapeCopy)
        .where(TapeCopy.aip_version_id.in_(list(version_ids)))
        .order_by(TapeCopy.site, TapeCopy.id)
    )
    for c in rows:
        out[c.aip_version_id].append(
            CopyView(
                site=c.site,
                barcode=c.barcode,
                path=c.path,
                status=c.status.value,
                length=c.length,
                sha256=c.sha256,
                verified_at=c.verified_at,
            )
        )
    return out


def _version_view(v: AIPVersion, copies: list[CopyView]) -> dict[str, Any]:
    return {
        "number": v.number,
        "reason": v.reason,
        "created_at": v.created_at,
        "committed_at": v.committed_at,
        "tar_name": v.tar_name,
        "tar_size": v.tar_size,
        "tar_sha256": v.tar_sha256,
        "copies": copies,
    }


def aip_versions(session: Session, aip_id: str, tenant_id: str | None) -> list[VersionView]:
    aip = scoped_aip(session, aip_id, tenant_id)
    versions = list(
        session.scalars(
            select(AIPVersion).where(AIPVersion.aip_id == aip.id).order_by(AIPVersion.number)
        )
    )
    copies = _copies(session, [v.id for v in versions])
    return [VersionView(**_version_view(v, copies[v.id])) for v in versions]


def version_detail(
    session: Session,
    aip_id: str,
    number: int,
    tenant_id: str | None,
    *,
    cursor: str | None = None,
    limit: int = 1000,
) -> VersionDetail:
    """Version ``number`` and the files of its tree: its own and those it keeps from earlier ones.

    Versions are forward deltas, so version N's tree is every file of versions
    1..N; each file says which version holds its bytes. Paged by file id,
    because a version may hold a million files.
    """
    aip = scoped_aip(session, aip_id, tenant_id)
    version = session.scalar(
        select(AIPVersion).where(AIPVersion.aip_id == aip.id, AIPVersion.number == number)
    )
    if version is None:
        raise NotFoundError(f"AIP {aip.id} has no version {number}", aip_id=aip.id)
    after = _int_cursor(cursor)
    rows = session.execute(
        select(File, AIPVersion.number)
        .join(AIPVersion, File.aip_version_id == AIPVersion.id)
        .where(AIPVersion.aip_id == aip.id, AIPVersion.number <= number, File.id > after)
        .order_by(File.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    files = [
        FileView(
            path=f.original_name,
            aip_path=f.aip_path,
            version=n,
            size=f.size,
            sha256=f.sha256,
            sha512=f.sha512,
            puid=f.puid,
            format_name=f.format_name,
            format_version=f.format_version,
            mime=f.mime,
            properties=f.properties,
            valid=f.valid,
            validation=f.validation,
        )
        for f, n in rows
    ]
    return VersionDetail(
        aip_id=aip.id,
        **_version_view(version, _copies(session, [version.id])[version.id]),
        files=files,
        next_cursor=str(rows[-1][0].id) if more and rows else None,
    )


def _int_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidRequestError(
            f"cursor {cursor[:40]!r} is not one this service gave out: pass the "
            "next_cursor of the previous page unchanged",
            rule="cursor",
            field="cursor",
        )
    return int(cursor)


def aip_events(
    session: Session,
    aip_id: str,
    tenant_id: str | None,
    *,
    cursor: str | None = None,
    limit: int = 500,
) -> EventPage:
    """The AIP's PREMIS events in chain order, with the hashes that chain them.

    The events of its SIP come first (validation, identification happened
    before the AIP had an id), so the whole history of the object is here.
    """
    aip = scoped_aip(session, aip_id, tenant_id)
    after = _int_cursor(cursor)
    rows = list(
        session.scalars(
            select(PremisEvent)
            .where(
                PremisEvent.tenant_id == aip.tenant_id,
                or_(PremisEvent.aip_id == aip.id, PremisEvent.sip_id == aip.sip_id),
                PremisEvent.seq > after,
            )
            .order_by(PremisEvent.seq)
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(
        items=[event_view(e) for e in rows],
        next_cursor=str(rows[-1].seq) if more and rows else None,
    )


def event_view(e: PremisEvent) -> EventView:
    return EventView(
        uuid=e.uuid,
        seq=e.seq,
        type=e.type,
        occurred_at=e.occurred_at,
        outcome=e.outcome,
        detail=e.detail,
        outcome_detail=e.outcome_detail,
        agents=e.agents or {},
        objects=e.objects or {},
        sip_id=e.sip_id,
        aip_id=e.aip_id,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


# -- SIPs -----------------------------------------------------------------------------------


def _sip_view(session: Session, sip: SIP, live: set[str]) -> SIPView:
    from preservation.sips import stage_as_seen

    stage, interrupted = stage_as_seen(sip.stage, alive=sip.id in live)
    problems = _problems(sip)
    return SIPView(
        sip_id=sip.id,
        tenant=sip.tenant_id,
        name=sip.name,
        state=sip.state.value,
        stage=stage or None,
        interrupted=interrupted,
        aip_id=sip.aip_id,
        external_identifier=sip.external_identifier,
        files=sip.file_count or 0,
        bytes=sip.payload_bytes or 0,
        problems=problems,
        created_at=sip.created_at,
        updated_at=sip.updated_at,
        status_url=f"/api/v1/sips/{sip.id}",
    )


def _problems(sip: SIP) -> list[dict[str, Any]]:
    """What is wrong with the SIP: a rejection's report problems, or the stage's error."""
    import json
    from pathlib import Path

    if not sip.last_error:
        return []
    if sip.state is SIPState.REJECTED and "report in " in sip.last_error:
        report = Path(sip.last_error.rsplit("report in ", 1)[-1]) / "report.json"
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            found = [
                {k: p.get(k) for k in ("severity", "file", "rule", "message")}
                for p in data.get("problems", [])
                if isinstance(p, dict)
            ]
            if found:
                return found
        except (OSError, ValueError):
            pass
    stage, _, message = sip.last_error.partition(": ")
    return [{"severity": "error", "file": None, "rule": stage, "message": message or stage}]


def sip_view(session: Session, sip_id: str, tenant_id: str | None) -> SIPView:
    from datetime import UTC

    from preservation.sips import live_leases

    sip = scoped_sip(session, sip_id, tenant_id)
    return _sip_view(session, sip, live_leases(session, [sip.id], datetime.now(UTC)))


def list_sip_views(
    session: Session,
    tenant_id: str | None,
    *,
    state: SIPState | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> SIPPage:
    """SIPs newest first, cursor-paged like the AIP search."""
    from datetime import UTC

    from sqlalchemy import and_

    from preservation.catalog.search import decode_cursor
    from preservation.sips import live_leases

    stmt = select(SIP)
    if tenant_id is not None:
        stmt = stmt.where(SIP.tenant_id == tenant_id)
    if state is not None:
        stmt = stmt.where(SIP.state == state)
    if cursor:
        created, sip_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(SIP.created_at < created, and_(SIP.created_at == created, SIP.id < sip_id))
        )
    found = list(
        session.scalars(stmt.order_by(SIP.created_at.desc(), SIP.id.desc()).limit(limit + 1))
    )
    more = len(found) > limit
    found = found[:limit]
    live = live_leases(session, [s.id for s in found], datetime.now(UTC))
    next_cursor = None
    if more and found:
        from preservation.catalog.search import encode_position

        next_cursor = encode_position(found[-1].created_at, found[-1].id)
    return SIPPage(items=[_sip_view(session, s, live) for s in found], next_cursor=next_cursor)


#: Kept for callers that filter on them.
AIP_STATES = [s.value for s in AIPState]
SIP_STATES = [s.value for s in SIPState]
