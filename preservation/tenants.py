"""What a tenant id may be: one rule, checked at every door.

A tenant id becomes a folder under ``ingest/``, a directory on every LTFS
volume (``/<tenant>/<aip>/v<N>.tar``), a PREMIS agent and, later, a path
segment of the API. A value that is fine in one of those and not in another
(``..``, ``a/b``, the empty string, upper case that a case-insensitive file
system folds) got half-way through ingest before failing at the tape, leaving
a SIP that nothing could finish. So the rule is checked where an id comes in
(the CLI, the hot folders, the archiving rules, the API) and nowhere needs to
second-guess it later.
"""

from __future__ import annotations

import re
from typing import Any

from preservation.errors import InvalidTenantError

__all__ = [
    "TENANT_ID_PATTERN",
    "TENANT_ID_RULE",
    "add_tenant",
    "check_tenant_id",
    "is_valid_tenant_id",
    "list_tenants",
]

# Also in schemas/archiving-rules.schema.json (propertyNames of "tenants"); a test keeps
# the two equal.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
TENANT_ID_RULE = (
    "a tenant id is 1-63 characters: lower-case letters, digits, '.', '_' and '-', "
    "starting with a letter or digit"
)
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def is_valid_tenant_id(value: str) -> bool:
    # fullmatch: a '$' alone would let a trailing newline through.
    return _TENANT_ID.fullmatch(value) is not None


def check_tenant_id(value: str, *, source: str = "tenant id") -> str:
    """Return ``value`` if it is a valid tenant id; raise naming ``source`` and the rule."""
    if not is_valid_tenant_id(value):
        raise InvalidTenantError(
            f"{source}: {value!r} is not a valid tenant id ({TENANT_ID_RULE})",
            rule="tenant-id",
            tenant=value,
        )
    return value


# -- the tenants the service knows ------------------------------------------------------


def add_tenant(session: Any, tenant_id: str, name: str) -> Any:
    """Register a tenant (the institution), or rename it; its id is checked by the rule."""
    from preservation.catalog import service

    check_tenant_id(tenant_id, source="tenant id")
    if not name.strip():
        raise InvalidTenantError("a tenant needs a name (--name)", rule="tenant-name")
    return service.ensure_tenant(session, tenant_id, name.strip())


def list_tenants(session: Any) -> list[dict[str, Any]]:
    """Every tenant with its holdings at a glance: AIPs, bytes, SIPs in flight."""
    from sqlalchemy import func, select

    from preservation.catalog.models import AIP, SIP, AIPVersion, SIPState, Tenant

    aips = dict(
        session.execute(select(AIP.tenant_id, func.count()).group_by(AIP.tenant_id)).all()
    )
    size = dict(
        session.execute(
            select(AIP.tenant_id, func.coalesce(func.sum(AIPVersion.tar_size), 0))
            .join(AIPVersion, AIPVersion.aip_id == AIP.id)
            .group_by(AIP.tenant_id)
        ).all()
    )
    in_flight = dict(
        session.execute(
            select(SIP.tenant_id, func.count())
            .where(SIP.state.not_in([SIPState.COMMITTED, SIPState.REJECTED]))
            .group_by(SIP.tenant_id)
        ).all()
    )
    return [
        {
            "id": t.id,
            "name": t.name,
            "created_at": t.created_at.isoformat(),
            "aips": int(aips.get(t.id, 0)),
            "bytes": int(size.get(t.id, 0)),
            "sips_in_flight": int(in_flight.get(t.id, 0)),
            "events": int(t.event_count or 0),
        }
        for t in session.scalars(select(Tenant).order_by(Tenant.id))
    ]
