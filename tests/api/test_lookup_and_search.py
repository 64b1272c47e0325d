"""Lookup by id and External-Identifier, versions, events, and search on both backends."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from preservation.catalog.models import AIPState
from preservation.context import Context
from tests.api.conftest import Tokens, add_aip, ago


def _all_pages(client: TestClient, headers: dict[str, str], **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get("/api/v1/aips", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [a["aip_id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            return ids


def test_lookup_by_id_external_id_versions_and_events(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    aip = add_aip(ctx, "museum", title="Letters of Liège", external_identifier="INV-1921/7")
    h = tokens.headers("consumer", "museum")
    r = client.get(f"/api/v1/aips/{aip}", headers=h)
    assert r.status_code == 200
    assert r.json()["descriptive"] == {"title": ["Letters of Liège"]}
    assert r.json()["versions"] == 1
    r = client.get("/api/v1/aips/by-external-id/INV-1921%2F7", headers=h)
    assert r.status_code in (200, 404)  # an encoded slash may not reach the route
    r = client.get("/api/v1/aips", params={"external_identifier": "INV-1921/7"}, headers=h)
    assert [a["aip_id"] for a in r.json()["items"]] == [aip]
    add_aip(ctx, "museum", external_identifier="INV-2")
    r = client.get("/api/v1/aips/by-external-id/INV-2", headers=h)
    assert r.status_code == 200 and r.json()["external_identifier"] == "INV-2"
    versions = client.get(f"/api/v1/aips/{aip}/versions", headers=h).json()
    assert [v["number"] for v in versions] == [1]
    detail = client.get(f"/api/v1/aips/{aip}/versions/1", headers=h).json()
    assert detail["files"][0]["puid"] == "fmt/353"
    assert len(detail["files"][0]["sha256"]) == 64
    assert client.get(f"/api/v1/aips/{aip}/versions/2", headers=h).status_code == 404
    events = client.get(f"/api/v1/aips/{aip}/events", headers=h).json()["items"]
    assert events and all(len(e["hash"]) == 64 for e in events)
    assert events[0]["type"] == "ingestion"


def test_search_gives_the_same_answers_on_both_backends(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    """Run once per backend (catalog_url); the expectations are the same literals."""
    a = add_aip(ctx, "museum", title="Carte de Liège", puids=("fmt/353",), created_at=ago(30))
    b = add_aip(
        ctx,
        "museum",
        title="Kaart van Gent",
        puids=("fmt/43", "fmt/353"),
        created_at=ago(20),
        names=("data/scans/LIEGE_1921.tif",),
    )
    c = add_aip(ctx, "museum", words="minutes of the board", puids=("fmt/95",), created_at=ago(10))
    d = add_aip(
        ctx,
        "museum",
        title="Carte postale",
        state=AIPState.PENDING,
        created_at=ago(5),
        puids=("fmt/11",),
    )
    add_aip(ctx, "archive", title="Carte de Liège")  # another tenant: never in museum's answers
    h = tokens.headers("consumer", "museum")

    def ids(**params: Any) -> list[str]:
        return _all_pages(client, h, **params)

    assert ids(q="liege") == [b, a]  # title word, and a file-name word without its accent
    assert ids(q="LIÈGE carte") == [a]
    assert ids(q="cart*") == [d, a]
    assert ids(q="minutes board") == [c]
    assert ids(q="nothing-like-this") == []
    assert ids(puid="fmt/353") == [b, a]
    assert ids(q="liege", puid="fmt/43") == [b]
    assert ids(created_after=ago(25).isoformat(), created_before=ago(7).isoformat()) == [c, b]
    assert ids(state="pending") == [d]
    assert ids() == [d, c, b, a]
    admin = tokens.headers("admin", None)
    r = client.get("/api/v1/aips", params={"q": "liege carte"}, headers=admin)
    assert len(r.json()["items"]) == 2  # an admin sees every tenant


def test_cursor_paging_is_stable_and_has_no_ceiling(
    client: TestClient, ctx: Context, tokens: Tokens
) -> None:
    made = [add_aip(ctx, "museum", title=f"item {i}", created_at=ago(1)) for i in range(23)]
    h = tokens.headers("consumer", "museum")
    paged = _all_pages(client, h, limit=5)
    assert sorted(paged) == sorted(made) and len(set(paged)) == 23
    r = client.get("/api/v1/aips", params={"cursor": "not-a-cursor"}, headers=h)
    assert r.status_code == 400 and r.json()["rule"] == "cursor"


def test_format_findings_through_the_api(client: TestClient, ctx: Context, tokens: Tokens) -> None:
    """Which files failed format validation, and why, on both backends; scoped by tenant."""
    from sqlalchemy import select

    from preservation.catalog import session_scope
    from preservation.catalog.models import AIP, AIPVersion, File

    broken = add_aip(ctx, "museum", title="broken", puids=("fmt/11", "fmt/18"))
    clean = add_aip(ctx, "museum", title="clean", puids=("fmt/11",))
    with session_scope(ctx.sessions) as s:
        files = s.scalars(
            select(File)
            .join(AIPVersion, File.aip_version_id == AIPVersion.id)
            .join(AIP, AIPVersion.aip_id == AIP.id)
            .order_by(File.id)
        ).all()
        for f in files:
            f.valid = True
            f.properties = {"width": 640, "height": 480}
            f.validation = [{"tool": "pillow", "version": "12", "valid": True, "message": ""}]
        pdf = next(f for f in files if f.puid == "fmt/18")
        pdf.valid = False
        pdf.properties = {"page_count": 3, "pdf_version": "1.4", "encrypted": False}
        pdf.validation = [
            {"tool": "qpdf", "version": "12.4.2", "valid": False, "message": "xref not found"}
        ]
    h = tokens.headers("consumer", "museum")
    assert client.get(f"/api/v1/aips/{broken}", headers=h).json()["invalid_files"] == 1
    assert client.get(f"/api/v1/aips/{clean}", headers=h).json()["invalid_files"] == 0
    assert _all_pages(client, h, invalid="true") == [broken]
    assert _all_pages(client, h, invalid="false") == [clean]
    version = client.get(f"/api/v1/aips/{broken}/versions/1", headers=h).json()
    [bad] = [f for f in version["files"] if f["valid"] is False]
    assert bad["validation"][0]["message"] == "xref not found"
    assert bad["properties"]["page_count"] == 3
    # Another tenant's search never counts or names them.
    other = tokens.headers("consumer", "library")
    assert _all_pages(client, other, invalid="true") == []
    assert _all_pages(client, other, property="width>=640") == []

    # By significant property: one file must meet every condition (in the PUID, if given).
    assert sorted(_all_pages(client, h, property="width>=640")) == sorted([broken, clean])
    assert _all_pages(client, h, property="width>640") == []
    assert _all_pages(client, h, property="page_count=3") == [broken]
    assert _all_pages(client, h, property=["page_count>2", "pdf_version=1.4"]) == [broken]
    assert _all_pages(client, h, property=["page_count>2", "width>=640"]) == []  # not one file
    assert _all_pages(client, h, property="encrypted=false") == [broken]
    assert _all_pages(client, h, property="width>=640", puid="fmt/18") == []
    assert sorted(_all_pages(client, h, property="width=640", puid="fmt/11")) == sorted(
        [broken, clean]
    )
    for bad in ("width>wide", "colour>1", "video_codec>AVC", "nonsense"):
        r = client.get("/api/v1/aips", params={"property": bad}, headers=h)
        assert r.status_code in (400, 422), (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert bad in r.text
