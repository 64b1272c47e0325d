"""Fixtures for the REST API: an app on a private data root, tenants, tokens, holdings.

The catalogue runs on both backends (``catalog_url``); holdings are written
straight into it by :func:`add_aip`, in the shape ingest leaves them, so that
the routes are exercised on hundreds of AIPs in seconds. The tests that need
real bytes on (emulated) tape upload a real bag instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from preservation.api import create_app
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    SIP,
    AIPState,
    AIPVersion,
    File,
    Role,
    SIPState,
)
from preservation.catalog.search import index_aips
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.tokens import create_token


@pytest.fixture
def api_settings(tmp_path: Path, catalog_url: str) -> Settings:
    s = Settings(
        home=tmp_path / "var",
        database_url=catalog_url,
        quiescent_seconds=0.2,
        site_wait_seconds=5,
        tape_idle_unmount_seconds=0.5,
        max_upload_bytes=50 * 2**20,
    )
    s.ensure_dirs()
    return s


@pytest.fixture
def ctx(api_settings: Settings) -> Iterator[Context]:
    c = open_context(api_settings)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx=ctx), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Tokens:
    ctx: Context

    def make(self, role: Role | str, tenant: str | None, label: str = "") -> str:
        with session_scope(self.ctx.sessions) as s:
            if tenant is not None:
                service.ensure_tenant(s, tenant, tenant.title())
            return create_token(
                s, role=role, tenant_id=tenant, label=label or f"{role}-{tenant}"
            ).secret

    def headers(self, role: Role | str, tenant: str | None, label: str = "") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.make(role, tenant, label)}"}


@pytest.fixture
def tokens(ctx: Context) -> Tokens:
    return Tokens(ctx)


def add_aip(
    ctx: Context,
    tenant: str,
    *,
    title: str = "",
    words: str = "",
    puids: Sequence[str] = ("fmt/353",),
    external_identifier: str | None = None,
    created_at: datetime | None = None,
    state: AIPState = AIPState.ACTIVE,
    names: Sequence[str] = (),
) -> str:
    """One AIP as ingest leaves it in the catalogue: SIP, AIP, version 1, files, index."""
    created = created_at or datetime.now(UTC)
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, tenant, tenant.title())
        sip = SIP(
            id=str(uuid.uuid4()),
            tenant_id=tenant,
            name=f"bag-{uuid.uuid4().hex[:6]}",
            source_path="/nowhere",
            state=SIPState.COMMITTED,
            external_identifier=external_identifier,
            bag_info={"Source-Organization": [tenant.title()], "Note": [words]},
            created_at=created,
        )
        s.add(sip)
        s.flush()
        aip = AIP(
            id=str(uuid.uuid4()),
            tenant_id=tenant,
            sip_id=sip.id,
            external_identifier=external_identifier,
            source_bag_name=sip.name,
            state=state,
            created_at=created,
            descriptive={"title": [title]} if title else None,
        )
        s.add(aip)
        s.flush()
        sip.aip_id = aip.id
        version = AIPVersion(
            aip_id=aip.id,
            number=1,
            tar_name="v1.tar",
            tar_size=1000,
            tar_sha256="0" * 64,
            created_at=created,
            committed_at=created,
        )
        s.add(version)
        s.flush()
        for i, puid in enumerate(puids):
            name = names[i] if i < len(names) else f"data/file-{i}.bin"
            s.add(
                File(
                    sip_id=sip.id,
                    aip_version_id=version.id,
                    original_name=name,
                    aip_path=f"data/representations/rep1/{name}",
                    size=10,
                    sha256=f"{i:064x}",
                    sha512="0" * 128,
                    puid=puid,
                )
            )
        s.flush()
        service.record_event(
            s, tenant_id=tenant, sip_id=sip.id, aip_id=aip.id, type="ingestion",
            outcome="success", detail="made by the test fixture",
        )
        index_aips(s, [aip.id])
        return aip.id


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
