"""DIP requests: what a user may ask for, checked against the catalogue before any tape moves.

A request is refused at once, with the rule it broke, when it cannot succeed:
an AIP of another tenant (404, as if it did not exist), a disposed AIP (410,
with its tombstone), a version that does not exist, a kind we do not make, a
pattern matching no file. Everything else is queued for the next recall batch
(:mod:`preservation.access.recall`); the request row then shows where it is.

The files a DIP holds are chosen from the catalogue alone, so the choice is
known (and its size shown) before the batch recalls anything:

* ``original``: the files of version 1, as submitted;
* ``preservation``: the representation current at the version asked for
  (every file not replaced by a migration up to that version);
* ``access``: the same files, each made into the policy's access format when
  its rule names one (JPEG, MP3, MP4, PDF); a file with no access action goes
  as it is.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from preservation.catalog.models import AIP, DIP, AIPState, AIPVersion, DIPState, File, utcnow
from preservation.errors import GoneError, InvalidRequestError, NotFoundError
from preservation.lookup import Instant, scoped, scoped_aip

__all__ = [
    "KINDS",
    "DIPView",
    "Selected",
    "get_dip",
    "list_dips",
    "request_dip",
    "select_files",
]

KINDS = ("original", "preservation", "access")
#: A glob longer than this is a mistake or an attack, not a selection.
MAX_GLOB = 1024


@dataclass(frozen=True)
class Selected:
    """One file a DIP holds, as the catalogue knows it: where it is on tape and what it must be."""

    file_id: int
    version: int  # the AIP version whose tar holds it
    member: str  # its path in that version's bag ("data/representations/...")
    path: str  # its path in the DIP's representation, the submitter's own
    size: int
    sha256: str
    puid: str | None
    mime: str | None
    format_name: str | None
    derived_from: int | None


class DIPView(BaseModel):
    dip_id: str
    aip_id: str
    tenant: str
    version: int
    kind: str
    files: str | None
    state: str
    reason: str | None
    batch_id: str | None
    # Sent back to the queue (drives busy, a site down): not tried again before this.
    retry_at: Instant | None
    requested_by: str
    files_total: int
    bytes_total: int
    progress: dict[str, Any]
    size: int | None
    etag: str | None
    created_at: Instant
    started_at: Instant | None
    ready_at: Instant | None
    expires_at: Instant | None
    status_url: str
    download_url: str | None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def is_expired(row: DIP, now: datetime | None = None) -> bool:
    expires = _aware(row.expires_at)
    return row.state == DIPState.EXPIRED or (
        row.state == DIPState.READY and expires is not None and expires <= (now or utcnow())
    )


def view(row: DIP, *, disposed: bool = False) -> DIPView:
    """The request as its asker sees it; ``disposed``: its AIP is gone, so is the DIP."""
    state = DIPState.EXPIRED.value if is_expired(row) or disposed else row.state
    reason = row.error
    if disposed and row.state == DIPState.READY:
        reason = "its AIP was disposed of"
    base = f"/api/v1/dips/{row.id}"
    return DIPView(
        dip_id=row.id,
        aip_id=row.aip_id,
        tenant=row.tenant_id,
        version=row.version,
        kind=row.kind,
        files=row.files_glob,
        state=state,
        reason=reason,
        batch_id=row.batch_id,
        retry_at=row.not_before if row.state == DIPState.QUEUED else None,
        requested_by=row.requested_by_label,
        files_total=row.files_total,
        bytes_total=row.bytes_total,
        progress=dict(row.progress or {}),
        size=row.zip_size if state == DIPState.READY else None,
        etag=row.zip_sha256 if state == DIPState.READY else None,
        created_at=row.created_at,
        started_at=row.started_at,
        ready_at=row.ready_at,
        expires_at=row.expires_at,
        status_url=base,
        download_url=f"{base}/download" if state == DIPState.READY else None,
    )


def tombstone(aip: AIP) -> dict[str, Any]:
    """What is left of a disposed AIP: enough to say it existed and when it went."""
    return {
        "aip_id": aip.id,
        "state": str(aip.state),
        "created_at": _aware(aip.created_at).isoformat() if aip.created_at else None,  # type: ignore[union-attr]
        "disposed_at": _aware(aip.disposed_at).isoformat() if aip.disposed_at else None,  # type: ignore[union-attr]
        "external_identifier": aip.external_identifier,
    }


def refuse_disposed(aip: AIP) -> None:
    if aip.state == AIPState.DISPOSED:
        when = f" on {aip.disposed_at:%Y-%m-%d}" if aip.disposed_at else ""
        raise GoneError(
            f"AIP {aip.id} was disposed of{when}: it is no longer kept, so it cannot be "
            "disseminated",
            aip_id=aip.id,
            rule="disposed",
            tombstone=tombstone(aip),
        )


def committed_version(session: Session, aip: AIP, number: int | None) -> int:
    """The version asked for (the newest committed when None); refused if it is not there."""
    stmt = select(AIPVersion.number).where(
        AIPVersion.aip_id == aip.id, AIPVersion.committed_at.is_not(None)
    )
    numbers = sorted(session.scalars(stmt))
    if not numbers:
        raise InvalidRequestError(
            f"AIP {aip.id} has no committed version yet: it is still being stored",
            aip_id=aip.id,
            rule="not-committed",
        )
    if number is None:
        return numbers[-1]
    if number not in numbers:
        raise NotFoundError(
            f"AIP {aip.id} has no version {number} (its versions: "
            f"{', '.join(str(n) for n in numbers)})",
            aip_id=aip.id,
            rule="no-such-version",
            field="version",
        )
    return number


def _submitted_path(f: File) -> str:
    """The file's path inside its representation's ``data/``: the submitter's own tree."""
    parts = (f.aip_path or "").split("/", 4)
    if len(parts) == 5 and parts[0] == "data" and parts[1] == "representations":
        return parts[4]
    return f.original_name.removeprefix("data/")


def select_files(
    session: Session, aip_id: str, version: int, kind: str, files_glob: str | None
) -> list[Selected]:
    """The files a DIP of ``kind`` at ``version`` holds, in path order; refused if none match."""
    if kind not in KINDS:
        raise InvalidRequestError(
            f"kind {kind!r} is not one of {', '.join(KINDS)}", rule="dip-kind", field="kind"
        )
    stmt = (
        select(File, AIPVersion.number)
        .join(AIPVersion, AIPVersion.id == File.aip_version_id)
        .where(AIPVersion.aip_id == aip_id, AIPVersion.committed_at.is_not(None))
    )
    if kind == "original":
        stmt = stmt.where(AIPVersion.number == 1, File.derived_from.is_(None))
    else:
        stmt = stmt.where(
            AIPVersion.number <= version,
            or_(File.superseded_in.is_(None), File.superseded_in > version),
        )
    chosen: list[Selected] = []
    for f, number in session.execute(stmt.order_by(File.id)):
        path = _submitted_path(f)
        if files_glob and not fnmatch.fnmatchcase(path, files_glob):
            continue
        chosen.append(
            Selected(
                file_id=f.id,
                version=number,
                member=f.aip_path or f.original_name,
                path=path,
                size=f.size,
                sha256=f.sha256,
                puid=f.puid,
                mime=f.mime,
                format_name=f.format_name,
                derived_from=f.derived_from,
            )
        )
    if not chosen:
        what = f"matches {files_glob!r}" if files_glob else "is in it"
        raise InvalidRequestError(
            f"no file of AIP {aip_id} version {version} ({kind}) {what}",
            aip_id=aip_id,
            rule="no-matching-files" if files_glob else "no-files",
            field="files",
        )
    chosen.sort(key=lambda s: s.path)
    return chosen


def request_dip(
    session: Session,
    *,
    aip_id: str,
    tenant_id: str | None,
    version: int | None = None,
    kind: str = "preservation",
    files_glob: str | None = None,
    requested_by: str,
    cache_bytes: int | None = None,
) -> DIPView:
    """Check a request and queue it; the next recall batch takes it (see the module docstring).

    ``cache_bytes``: the DIP cache's size; a DIP whose files alone exceed it
    could never be kept for its download, so it is refused now, not after a recall.
    """
    if kind not in KINDS:
        raise InvalidRequestError(
            f"kind {kind!r} is not one of {', '.join(KINDS)}", rule="dip-kind", field="kind"
        )
    if files_glob is not None:
        files_glob = files_glob.strip() or None
    if files_glob is not None and (len(files_glob) > MAX_GLOB or "\x00" in files_glob):
        raise InvalidRequestError(
            f"files: a pattern of at most {MAX_GLOB} characters", rule="glob", field="files"
        )
    aip = scoped_aip(session, aip_id, tenant_id)
    refuse_disposed(aip)
    if aip.state != AIPState.ACTIVE:
        raise InvalidRequestError(
            f"AIP {aip.id} is {aip.state}: only a stored AIP can be disseminated",
            aip_id=aip.id,
            rule="not-active",
        )
    if kind == "original":
        if version not in (None, 1):
            raise InvalidRequestError(
                f"an original DIP holds version 1's files; --version {version} goes with "
                "kind preservation or access",
                aip_id=aip.id,
                rule="original-is-version-1",
                field="version",
            )
        version = 1
    number = committed_version(session, aip, version)
    chosen = select_files(session, aip.id, number, kind, files_glob)
    total = sum(s.size for s in chosen)
    if cache_bytes is not None and total > cache_bytes:
        raise InvalidRequestError(
            f"a DIP of {total} bytes does not fit the DIP cache ({cache_bytes} bytes): "
            "choose fewer files (files), or ask the operator for a larger cache",
            aip_id=aip.id,
            rule="dip-too-large",
            field="files",
        )
    row = DIP(
        attempts=0,
        tenant_id=aip.tenant_id,
        aip_id=aip.id,
        version=number,
        kind=kind,
        files_glob=files_glob,
        requested_by_label=requested_by[:255],
        state=DIPState.QUEUED,
        progress={},
        files_total=len(chosen),
        bytes_total=sum(s.size for s in chosen),
    )
    session.add(row)
    session.flush()
    return view(row)


def get_dip(session: Session, dip_id: str, tenant_id: str | None) -> DIPView:
    row = scoped(session, DIP, dip_id, tenant_id, what="DIP")
    state = session.scalar(select(AIP.state).where(AIP.id == row.aip_id))
    return view(row, disposed=state == AIPState.DISPOSED)


def list_dips(
    session: Session, tenant_id: str | None, *, limit: int = 50, requested_by: str | None = None
) -> list[DIPView]:
    """Recent requests, newest first; ``requested_by``: only those one person (label) made."""
    stmt = (
        select(DIP, AIP.state)
        .join(AIP, AIP.id == DIP.aip_id)
        .order_by(DIP.created_at.desc(), DIP.id)
        .limit(limit)
    )
    if tenant_id is not None:
        stmt = stmt.where(DIP.tenant_id == tenant_id)
    if requested_by is not None:
        stmt = stmt.where(DIP.requested_by_label == requested_by[:255])
    return [view(r, disposed=state == AIPState.DISPOSED) for r, state in session.execute(stmt)]


def ready_row(session: Session, dip_id: str, tenant_id: str | None) -> DIP:
    """A DIP whose zip may be downloaded now; anything else says why not."""
    from preservation.errors import ConflictError

    row = scoped(session, DIP, dip_id, tenant_id, what="DIP")
    refuse_disposed(session.get_one(AIP, row.aip_id))  # built before: not handed out after
    if is_expired(row):
        raise GoneError(
            f"DIP {row.id} expired on {_aware(row.expires_at):%Y-%m-%d %H:%M} UTC and left the "
            "cache: request it again",
            rule="dip-expired",
            dip_id=row.id,
        )
    if row.state == DIPState.FAILED:
        raise ConflictError(f"DIP {row.id} failed: {row.error}", rule="dip-failed", dip_id=row.id)
    if row.state != DIPState.READY:
        raise ConflictError(
            f"DIP {row.id} is {row.state}, not ready yet: follow /api/v1/dips/{row.id}",
            rule="dip-not-ready",
            dip_id=row.id,
        )
    return row


def expiry(ttl_seconds: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(seconds=ttl_seconds)
