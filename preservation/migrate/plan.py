"""Which files a migration touches, decided from the catalogue alone (no tape is read).

The plan is what ``--dry-run`` prints and what a request records before any
work starts: per AIP, the current files whose format has a rule, and the
actions that apply. An action is left out for a file already in its target
format (an ODT is not turned into an ODT), except an image target whose
source is compressed (an LZW TIFF still becomes an uncompressed one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from preservation.catalog.models import AIP, AIPState, AIPVersion, File
from preservation.errors import InvalidRequestError, NotFoundError
from preservation.migrate.policy import Action, Policy

__all__ = ["PlannedFile", "current_files", "plan_migration", "representation_of"]

#: A TIFF (or BMP) with this compression is already what the image rule makes.
_UNCOMPRESSED = {"None", "none", "uncompressed", "Uncompressed", None}


@dataclass(frozen=True)
class PlannedFile:
    """One current file of an AIP and the actions the policy gives it."""

    file_id: int
    aip_id: str
    path: str  # the submitter's path ("data/...")
    aip_path: str  # inside the AIP ("data/representations/rep1/data/...")
    puid: str | None
    size: int
    actions: tuple[Action, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "path": self.path,
            "aip_path": self.aip_path,
            "puid": self.puid,
            "size": self.size,
            "actions": [
                {"id": a.id, "tool": a.tool, "target_puid": a.target_puid, "kind": a.kind}
                for a in self.actions
            ],
        }


def representation_of(aip_path: str) -> str:
    """``data/representations/<rep>/data/...`` -> ``<rep>``."""
    parts = aip_path.split("/")
    return parts[2] if len(parts) > 3 and parts[1] == "representations" else "rep1"


def current_files(session: Session, aip_id: str) -> list[File]:
    """The AIP's current representation: every file of a committed version not superseded."""
    return list(
        session.scalars(
            select(File)
            .join(AIPVersion, AIPVersion.id == File.aip_version_id)
            .where(
                AIPVersion.aip_id == aip_id,
                AIPVersion.committed_at.is_not(None),
                File.superseded_in.is_(None),
            )
            .order_by(File.id)
        )
    )


def actions_for(policy: Policy, f: File) -> tuple[Action, ...]:
    rule = policy.rule_for(f.puid)
    if rule is None:
        return ()
    props = f.properties or {}
    return tuple(
        a
        for a in rule.preservation
        if not (
            a.target_puid == f.puid
            and (a.kind != "image" or props.get("compression") in _UNCOMPRESSED)
        )
    )


def plan_migration(
    session: Session,
    policy: Policy,
    *,
    aip_ids: Sequence[str] = (),
    puid: str | None = None,
    tenant_id: str | None = None,
) -> dict[str, list[PlannedFile]]:
    """Per AIP (in the order asked, or by id for ``--puid``), the files and their actions.

    ``tenant_id`` None is an administrator. An AIP the asker may not see is
    :class:`NotFoundError`, like one that does not exist. With ``puid``, only
    files of that format count, and only active AIPs holding one are chosen.
    An AIP with nothing to do is still listed, with no files.
    """
    if not aip_ids and not puid:
        raise InvalidRequestError(
            "name the AIPs to migrate, or a PRONOM id (--puid) whose files to migrate",
            rule="selection",
            field="aip_ids",
        )
    chosen: list[str] = []
    for aip_id in aip_ids:
        aip = session.get(AIP, aip_id)
        if aip is None or (tenant_id is not None and aip.tenant_id != tenant_id):
            raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
        if aip.state is not AIPState.ACTIVE:
            raise InvalidRequestError(
                f"AIP {aip_id} is {aip.state.value}: only an active AIP can be migrated",
                rule="aip-not-active",
                field="aip_ids",
            )
        if aip_id not in chosen:
            chosen.append(aip_id)
    if puid and not aip_ids:
        stmt = (
            select(AIP.id)
            .join(AIPVersion, AIPVersion.aip_id == AIP.id)
            .join(File, File.aip_version_id == AIPVersion.id)
            .where(
                AIP.state == AIPState.ACTIVE,
                File.puid == puid,
                File.superseded_in.is_(None),
                AIPVersion.committed_at.is_not(None),
            )
            .distinct()
            .order_by(AIP.id)
        )
        if tenant_id is not None:
            stmt = stmt.where(AIP.tenant_id == tenant_id)
        chosen = list(session.scalars(stmt))
    out: dict[str, list[PlannedFile]] = {}
    for aip_id in chosen:
        planned = []
        for f in current_files(session, aip_id):
            if puid and f.puid != puid:
                continue
            actions = actions_for(policy, f)
            if actions:
                planned.append(
                    PlannedFile(
                        file_id=f.id,
                        aip_id=aip_id,
                        path=f.original_name,
                        aip_path=f.aip_path or "",
                        puid=f.puid,
                        size=f.size,
                        actions=actions,
                    )
                )
        out[aip_id] = planned
    return out
