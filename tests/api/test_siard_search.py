"""A database's tables and columns are found through the API, on both catalogue backends.

A bag holding a SIARD archive, exported from a small SQLite database and given
descriptions (tests/siard_edits.py), goes through a real ingest; then
``GET /api/v1/aips?q=`` finds the AIP by a column name, by a word of a table
description and by ``schema.table``, and by a ``database`` property; the
search index rebuilt from the catalogue finds it the same way. Another
tenant finds nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bagit  # type: ignore[import-untyped]
from fastapi.testclient import TestClient

from preservation import ingest
from preservation.catalog import SIPState, session_scope
from preservation.catalog.search import reindex
from preservation.context import Context
from tests.api.conftest import Tokens
from tests.siard_edits import small_siard


def _ids(client: TestClient, headers: dict[str, str], **params: str) -> list[str]:
    r = client.get("/api/v1/aips", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [item["aip_id"] for item in r.json()["items"]]


def test_tables_columns_and_descriptions_are_searchable(
    client: TestClient, ctx: Context, tokens: Tokens, tmp_path: Path
) -> None:
    bag = tmp_path / "family-papers"
    bag.mkdir()
    shutil.copyfile(small_siard(tmp_path / "export"), bag / "family.siard")
    bagit.make_bag(str(bag), {"Source-Organization": "Family archive"}, checksums=["sha256"])
    result = ingest.run_ingest(ctx, bag, tenant="museum")
    assert result.state == SIPState.COMMITTED.value, (result.problems, result.error)
    aip = result.aip_id
    museum = tokens.headers("consumer", "museum")
    library = tokens.headers("consumer", "library")

    def found_by(headers: dict[str, str]) -> dict[str, list[str]]:
        return {
            "column name": _ids(client, headers, q="postmark"),
            "table description word": _ids(client, headers, q="Lovelace"),
            "column description words": _ids(client, headers, q="parish register"),
            "schema.table": _ids(client, headers, q="main.person"),
            "property": _ids(client, headers, property="tables>=2"),
            "LOB property": _ids(client, headers, property="lob_count=1"),
        }

    assert found_by(museum) == {how: [aip] for how in found_by(museum)}
    assert _ids(client, museum, q="nothing-like-this") == []
    assert all(ids == [] for ids in found_by(library).values())

    with session_scope(ctx.sessions) as s:
        assert reindex(s) == 1  # the index as `preservation db reindex` rebuilds it
    assert found_by(museum) == {how: [aip] for how in found_by(museum)}
    assert all(ids == [] for ids in found_by(library).values())
