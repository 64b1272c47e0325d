"""Schemathesis against the app: no 5xx, and every response matches the OpenAPI document.

Generated requests (valid and not) hit every operation with an admin token
and with a tenant curator's, on an archive that holds something, so the
lookups find real rows as well as missing ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from preservation.api import create_app
from preservation.catalog import upgrade
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.tokens import create_token
from tests.api.conftest import add_aip


@schemathesis.serializer("application/zip", "application/x-tar", "application/gzip")
def _raw_bytes(_ctx: Any, value: Any) -> bytes:
    """Upload bodies are bytes: whatever was generated goes as it is."""
    from schemathesis.transport.serialization import serialize_binary

    return serialize_binary(value)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{root / 'catalog.sqlite'}"
    upgrade(url)
    s = Settings(home=root / "var", database_url=url, max_upload_bytes=2**20)
    s.ensure_dirs()
    ctx: Context = open_context(s)
    for i in range(3):
        add_aip(ctx, "museum", title=f"record {i}", external_identifier=f"EXT-{i}")
    with session_scope(ctx.sessions) as session:
        admin = create_token(session, role=Role.ADMIN, label="fuzz-admin").secret
        curator = create_token(session, role=Role.CURATOR, tenant_id="museum").secret
    app = create_app(ctx=ctx)
    try:
        yield {"app": app, "admin": admin, "curator": curator}
    finally:
        ctx.close()


_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def _fuzz(app: Any, token: str) -> int:
    """Every operation, generated cases each; the number of operations covered."""
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    covered = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @_SETTINGS
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            case.call_and_validate(checks=CHECKS)

        run()
        covered += 1
    return covered


def test_api_conforms_as_admin(fuzz_context: dict[str, Any]) -> None:
    assert _fuzz(fuzz_context["app"], fuzz_context["admin"]) >= 20


def test_api_conforms_as_tenant_curator(fuzz_context: dict[str, Any]) -> None:
    assert _fuzz(fuzz_context["app"], fuzz_context["curator"]) >= 20
