"""Which files a migration touches, decided from the catalogue alone (no tape is read).

The plan is what ``--dry-run`` prints and what a request records before any
work starts: per AIP, the current files whose format has a rule, and the
actions that apply. An action is left out for a file already in its target
format (an ODT is not turned into an ODT), except an image whose source is
compressed (an LZW TIFF still becomes an uncompressed one) and a film not yet
in FFV1 (an H.264 Matroska still becomes FFV1), and for a file already kept in
that format by an earlier migration (:func:`actions_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from preservation.catalog.models import AIP, AIPState, AIPVersion, File
from preservation.errors import InvalidRequestError, NotFoundError
from preservation.migrate.policy import Action, Policy

__all__ = [
    "PlannedFile",
    "aips_holding",
    "count_aips_holding",
    "current_files",
    "plan_migration",
    "representation_of",
]

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


#: MediaInfo's names of sound codecs that lose nothing.
_LOSSLESS_AUDIO = {"PCM", "FLAC", "ALAC", "WavPack", "TTA", "Monkey's Audio", "MLP", "TrueHD"}
#: The formats whose rules a container holding only sound is migrated by: lossless, lossy.
_SOUND_LIKE = ("fmt/141", "fmt/134")


def actions_for(
    policy: Policy, f: File, produced: frozenset[str] = frozenset()
) -> tuple[Action, ...]:
    """The preservation actions the policy gives ``f``; ``produced``: PUIDs it already has.

    ``produced`` are the formats of the current outputs made from the same
    source (for an output: its siblings): a Word file already kept as PDF/A
    and ODT gets neither again, and its ODT is not turned into a second PDF/A.
    An MPEG-4 or QuickTime file holding sound alone (an ``.m4a``) is migrated
    as sound is, by the rule for WAV or MP3: FFV1 would have no picture to keep.
    """
    rule = policy.rule_for(f.puid)
    if rule is None:
        return ()
    props = f.properties or {}
    actions = rule.preservation
    if (
        any(a.kind == "video" for a in actions)
        and props.get("audio_codec")
        and not props.get("video_codec")
    ):
        lossless = props.get("audio_codec") in _LOSSLESS_AUDIO
        sound = policy.rule_for(_SOUND_LIKE[0] if lossless else _SOUND_LIKE[1])
        actions = sound.preservation if sound is not None else ()
    return tuple(
        a for a in actions if not _already(a, f.puid, props) and a.target_puid not in produced
    )


def _already(action: Action, puid: str | None, props: dict[str, Any]) -> bool:
    """Whether the file is already what ``action`` would make of it."""
    if action.target_puid != puid:
        return False
    if action.kind == "image":  # an LZW TIFF still becomes an uncompressed one
        return props.get("compression") in _UNCOMPRESSED
    if action.kind == "video":  # an H.264 Matroska still becomes FFV1
        return props.get("video_codec") == "FFV1"
    return True


def _produced(files: Sequence[File]) -> dict[int, frozenset[str]]:
    """Per file, the formats already made from its source and current beside it."""
    by_source: dict[int, set[str]] = {}
    for f in files:
        if f.derived_from is not None and f.puid:
            by_source.setdefault(f.derived_from, set()).add(f.puid)
    out: dict[int, frozenset[str]] = {}
    for f in files:
        made = by_source.get(f.id, set()) | (
            by_source.get(f.derived_from, set()) if f.derived_from is not None else set()
        )
        out[f.id] = frozenset(made)
    return out


def aips_holding(puid: str, tenant_id: str | None) -> Select[str]:
    """The active AIPs a migration by PUID chooses: a current, committed file of that format."""
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
    return stmt


def count_aips_holding(session: Session, puid: str, tenant_id: str | None) -> int:
    """How many AIPs :func:`aips_holding` chooses, counted by the database."""
    chosen = aips_holding(puid, tenant_id).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(chosen)) or 0)


def plan_migration(
    session: Session,
    policy: Policy,
    *,
    aip_ids: Sequence[str] = (),
    puid: str | None = None,
    tenant_id: str | None = None,
    limit: int | None = None,
) -> dict[str, list[PlannedFile]]:
    """Per AIP (in the order asked, or by id for ``--puid``), the files and their actions.

    ``tenant_id`` None is an administrator. An AIP the asker may not see is
    :class:`NotFoundError`, like one that does not exist. With ``puid``, only
    files of that format count, and only active AIPs holding one are chosen.
    An AIP with nothing to do is still listed, with no files. ``limit`` plans
    only the first AIPs (by id) a PUID chooses: a preview of a format held by
    thousands of AIPs reads a page of them, not all their files.
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
        stmt = aips_holding(puid, tenant_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        chosen = list(session.scalars(stmt))
    out: dict[str, list[PlannedFile]] = {}
    for aip_id in chosen:
        planned = []
        files = current_files(session, aip_id)
        produced = _produced(files)
        for f in files:
            if puid and f.puid != puid:
                continue
            actions = actions_for(policy, f, produced[f.id])
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
