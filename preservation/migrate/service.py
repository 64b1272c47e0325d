"""Migration requests: what a curator asked for, and how far it got.

A request is recorded whole before any work starts: the policy's own bytes
(a worker elsewhere applies exactly what the curator previewed), one item
per AIP and one row per (file, action). Workers then fill the rows in; the
API and the CLI read them back as per-file progress and results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from preservation.catalog.models import Migration, MigrationFile, MigrationItem, Tenant
from preservation.errors import InvalidRequestError, NotFoundError
from preservation.lookup import Instant
from preservation.migrate.plan import count_aips_holding, plan_migration
from preservation.migrate.policy import MODES, Policy, load_policy, parse_policy

__all__ = [
    "FileResult",
    "ItemView",
    "MigrationView",
    "TERMINAL",
    "dry_run",
    "get_migration",
    "list_migrations",
    "policy_of",
    "read_policy",
    "settle",
    "start_migration",
]

#: Item states after which a worker has nothing left to do.
TERMINAL = frozenset({"committed", "failed", "unchanged"})


class FileResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    action: str
    target_puid: str
    state: str
    output: str | None
    tool: str | None
    tool_version: str | None
    checks: list[dict[str, Any]] | None
    error: str | None
    seconds_tool: float | None
    seconds_verify: float | None


class ItemView(BaseModel):
    model_config = ConfigDict(frozen=True)
    aip_id: str
    state: str
    step: str | None
    version: int | None
    files_total: int
    files_done: int
    files_failed: int
    error: str | None
    files: list[FileResult]


class MigrationView(BaseModel):
    model_config = ConfigDict(frozen=True)
    migration_id: str
    tenant: str | None
    state: str
    mode: str
    requested_by: str
    policy: dict[str, Any]
    selection: dict[str, Any]
    created_at: Instant
    started_at: Instant | None
    finished_at: Instant | None
    aips_total: int
    aips_done: int
    files_total: int
    files_done: int
    files_migrated: int
    files_failed: int
    error: str | None
    items: list[ItemView]
    status_url: str


def read_policy(path: Path | None) -> tuple[Policy, str]:
    """The policy and its file's text, from one read (the request keeps the text).

    None is the policy shipped with the package.
    """
    from preservation.migrate.policy import default_policy_path

    if path is None:
        return load_policy(None), default_policy_path().read_text(encoding="utf-8")
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        from preservation.errors import ConfigurationError

        raise ConfigurationError(
            f"{path}: format policy not readable: {err.strerror or err} (rule policy-file)",
            path=path,
            rule="policy-file",
        ) from err
    return parse_policy(data, str(path)), data.decode("utf-8", "replace")


def policy_of(migration: Migration) -> Policy:
    """The very policy a request was made under, rebuilt from the text it recorded."""
    source = str(migration.policy.get("source", "recorded"))
    return parse_policy(str(migration.policy.get("document", "")).encode("utf-8"), source)


def dry_run(
    session: Session,
    policy: Policy,
    *,
    aip_ids: Sequence[str] = (),
    puid: str | None = None,
    tenant_id: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """What a request would do: per AIP, the files, their actions and targets.

    With ``limit`` (a PUID's selection) only the first AIPs are planned: then
    ``aips_total`` is counted by the database, ``complete`` is false, and the
    files, outputs and bytes are those of the AIPs planned.
    """
    plan = plan_migration(
        session, policy, aip_ids=aip_ids, puid=puid, tenant_id=tenant_id, limit=limit
    )
    total = len(plan)
    if limit is not None and puid and not aip_ids and total >= limit:
        total = count_aips_holding(session, puid, tenant_id)
    return {
        "policy": {"name": policy.name, "source": policy.source, "sha256": policy.sha256},
        "mode": policy.mode,
        "aips": [
            {"aip_id": aip_id, "files": [f.to_dict() for f in files]}
            for aip_id, files in plan.items()
        ],
        "files": sum(len(files) for files in plan.values()),
        "outputs": sum(len(f.actions) for files in plan.values() for f in files),
        "bytes": sum(f.size for files in plan.values() for f in files),
        "aips_total": total,
        "complete": total == len(plan),
    }


def start_migration(
    session: Session,
    policy: Policy,
    policy_text: str,
    *,
    aip_ids: Sequence[str] = (),
    puid: str | None = None,
    tenant_id: str | None = None,
    who: str,
    mode: str | None = None,
) -> MigrationView:
    """Record a request with its plan; the caller hands its id to the runner after commit."""
    mode = mode or policy.mode
    if mode not in MODES:
        raise InvalidRequestError(
            f"mode {mode!r} is not one of {', '.join(MODES)}", rule="mode", field="mode"
        )
    if tenant_id is not None and session.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"no tenant {tenant_id}", tenant=tenant_id)
    plan = plan_migration(session, policy, aip_ids=aip_ids, puid=puid, tenant_id=tenant_id)
    selection: dict[str, Any] = {"aip_ids": list(aip_ids)} if aip_ids else {"puid": puid}
    if tenant_id is None and plan:
        # An administrator's request for one tenant's AIPs is that tenant's to follow too.
        from preservation.catalog.models import AIP

        owners = set(session.scalars(select(AIP.tenant_id).where(AIP.id.in_(list(plan)))))
        if len(owners) == 1:
            tenant_id = owners.pop()
    m = Migration(
        tenant_id=tenant_id,
        requested_by_label=who,
        selection=selection,
        policy={
            "name": policy.name,
            "source": policy.source,
            "sha256": hashlib.sha256(policy_text.encode("utf-8")).hexdigest(),
            "document": policy_text,
        },
        policy_sha256=policy.sha256,
        mode=mode,
        state="queued" if any(plan.values()) else "done",
    )
    session.add(m)
    session.flush()
    items = []
    for aip_id, files in plan.items():
        item = MigrationItem(
            migration_id=m.id,
            aip_id=aip_id,
            state="queued" if files else "unchanged",
            files_total=sum(len(f.actions) for f in files),
            files_done=0,
            files_failed=0,
        )
        items.append((item, files))
        session.add(item)
    session.flush()
    rows = [
        {
            "item_id": item.id,
            "source_file_id": f.file_id,
            "action_id": action.id,
            "target_puid": action.target_puid,
            "state": "pending",
        }
        for item, files in items
        for f in files
        for action in f.actions
    ]
    if rows:
        session.execute(insert(MigrationFile), rows)
    return migration_view(session, m)


def _counts(session: Session, migration_id: str) -> dict[str, int]:
    rows = session.execute(
        select(MigrationFile.state, func.count())
        .join(MigrationItem, MigrationItem.id == MigrationFile.item_id)
        .where(MigrationItem.migration_id == migration_id)
        .group_by(MigrationFile.state)
    )
    return {state: n for state, n in rows}


def migration_view(session: Session, m: Migration, *, with_files: bool = True) -> MigrationView:
    from preservation.catalog.models import File

    items = list(
        session.scalars(
            select(MigrationItem)
            .where(MigrationItem.migration_id == m.id)
            .order_by(MigrationItem.id)
        )
    )
    by_item: dict[int, list[FileResult]] = {}
    if with_files and items:
        rows = session.execute(
            select(MigrationFile, File.original_name)
            .join(File, File.id == MigrationFile.source_file_id)
            .where(MigrationFile.item_id.in_([i.id for i in items]))
            .order_by(MigrationFile.id)
        )
        for r, name in rows:
            by_item.setdefault(r.item_id, []).append(
                FileResult(
                    path=name,
                    action=r.action_id,
                    target_puid=r.target_puid,
                    state=r.state,
                    output=r.aip_path,
                    tool=r.tool,
                    tool_version=r.tool_version,
                    checks=r.checks,
                    error=r.error,
                    seconds_tool=r.seconds_tool,
                    seconds_verify=r.seconds_verify,
                )
            )
    counts = _counts(session, m.id)
    return MigrationView(
        migration_id=m.id,
        tenant=m.tenant_id,
        state=m.state,
        mode=m.mode,
        requested_by=m.requested_by_label,
        policy={k: v for k, v in (m.policy or {}).items() if k != "document"},
        selection=m.selection or {},
        created_at=m.created_at,
        started_at=m.started_at,
        finished_at=m.finished_at,
        aips_total=len(items),
        aips_done=sum(1 for i in items if i.state in TERMINAL),
        files_total=sum(counts.values()),
        files_done=sum(counts.get(k, 0) for k in ("migrated", "failed", "skipped", "discarded")),
        files_migrated=counts.get("migrated", 0),
        files_failed=counts.get("failed", 0),
        error=m.error,
        items=[
            ItemView(
                aip_id=i.aip_id,
                state=i.state,
                step=i.step,
                version=i.version,
                files_total=i.files_total,
                files_done=i.files_done,
                files_failed=i.files_failed,
                error=i.error,
                files=by_item.get(i.id, []),
            )
            for i in items
        ],
        status_url=f"/api/v1/migrations/{m.id}",
    )


def get_migration(session: Session, migration_id: str, tenant_id: str | None) -> MigrationView:
    """A request as its tenant sees it; another tenant's is not found, like none."""
    from preservation.lookup import check_uuid

    check_uuid(migration_id, field="migration_id")
    m = session.get(Migration, migration_id)
    if m is None or (tenant_id is not None and m.tenant_id != tenant_id):
        raise NotFoundError(f"no migration {migration_id}", migration_id=migration_id)
    return migration_view(session, m)


def list_migrations(
    session: Session, tenant_id: str | None, limit: int = 50
) -> list[MigrationView]:
    stmt = select(Migration).order_by(Migration.created_at.desc()).limit(limit)
    if tenant_id is not None:
        stmt = stmt.where(Migration.tenant_id == tenant_id)
    return [migration_view(session, m, with_files=False) for m in session.scalars(stmt)]


def settle(session: Session, migration_id: str) -> None:
    """The request is done once every item is; failed when none of them committed."""
    from preservation.catalog.models import utcnow

    m = session.get_one(Migration, migration_id)
    states = list(
        session.scalars(
            select(MigrationItem.state).where(MigrationItem.migration_id == migration_id)
        )
    )
    if states and all(state in TERMINAL for state in states) and m.finished_at is None:
        m.state = "failed" if all(x == "failed" for x in states) else "done"
        m.finished_at = utcnow()
