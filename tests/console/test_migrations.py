"""Migrations from the console: the dry run, the start, the live progress to the end.

A real ingest of a small bag (a PNG and a text file): the PNG has the
cheapest action of the shipped policy (Pillow to uncompressed TIFF), the text
none, so the preview has one line and the run one file to convert.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import AIPVersion, Migration, MigrationItem
from preservation.console.pages import migrations as migrations_page
from preservation.context import Context
from preservation.migrate import run, service
from tests.api.test_dips import ingested
from tests.console.conftest import People, add_aip
from tests.polling import wait_for

POLLING = 'hx-trigger="every 2s"'


def test_a_curator_previews_and_runs_a_migration_and_follows_it(
    client: TestClient, ctx: Context, people: People, tmp_path: Path
) -> None:
    aip = ingested(ctx, tmp_path)
    people.add("ann@museum.example", "curator", "museum")
    people.add("mallory@library.example", "curator", "library")
    csrf = people.log_in(client, "ann@museum.example")

    r = client.get(f"/console/migrations/new?aip={aip}")
    assert r.status_code == 200, r.text[:500]
    preview = r.text
    rows = re.findall(r"<tr>\s*<td class=\"mono\">([^<]+)</td>", preview)
    assert rows == ["data/images/plate.png"], rows  # the text file has no action
    assert "image-to-tiff" in preview and "fmt/353" in preview and "pillow" in preview
    assert "Start migration" in preview
    with session_scope(ctx.sessions) as s:  # a dry run records nothing
        assert s.scalars(select(Migration)).all() == []

    r = client.post("/console/migrations", data={"csrf": csrf, "aip": aip}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    location = r.headers["location"]
    migration_id = location.rsplit("/", 1)[1]
    assert location == f"/console/migrations/{migration_id}"
    page = client.get(location)
    assert page.status_code == 200 and "<h1>" in page.text and aip in page.text

    def fragment() -> str:
        r = client.get(location, headers={"HX-Request": "true"})
        assert r.status_code == 200 and "<html" not in r.text
        return r.text

    wait_for(lambda: POLLING not in fragment(), "the migration to finish", limit=180)
    done = fragment()
    assert "done" in done and "migrated" in done and "1 of 1 AIPs" in done, done
    assert "data/representations/rep2/data/images/plate.tif" in done
    assert f"/console/aips/{aip}?version=2" in done
    with session_scope(ctx.sessions) as s:
        versions = s.scalars(select(AIPVersion).where(AIPVersion.aip_id == aip)).all()
        assert [(v.number, v.reason) for v in versions] == [(1, "ingest"), (2, "migration")]
    assert migration_id[:8] in client.get("/console/migrations").text

    # Another tenant's curator: no such migration, no preview of that AIP.
    client.cookies.clear()
    other = people.log_in(client, "mallory@library.example")
    assert client.get(location).status_code == 404
    assert client.get(f"/console/migrations/new?aip={aip}").status_code == 404
    r = client.post("/console/migrations", data={"csrf": other, "aip": aip})
    assert r.status_code == 404
    assert migration_id[:8] not in client.get("/console/migrations").text


def test_consumers_neither_preview_nor_start_migrations(
    client: TestClient, ctx: Context, people: People
) -> None:
    aip = add_aip(ctx, "museum", title="Plates", puids=["fmt/11"], names=["data/a.png"])
    people.add("carol@museum.example", "consumer", "museum")
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "carol@museum.example")
    assert client.get(f"/console/migrations/new?aip={aip}").status_code == 403
    r = client.post("/console/migrations", data={"csrf": csrf, "aip": aip})
    assert r.status_code == 403
    assert "Preview a migration" not in client.get(f"/console/aips/{aip}").text
    with session_scope(ctx.sessions) as s:
        assert s.scalars(select(Migration)).all() == []

    # A curator's preview by PUID, of the catalogue alone.
    client.cookies.clear()
    people.log_in(client, "ann@museum.example")
    r = client.get("/console/migrations/new?puid=fmt/11")
    assert r.status_code == 200 and "data/a.png" in r.text and "image-to-tiff" in r.text
    r = client.get(f"/console/migrations/new?aip={aip}&puid=fmt/11")
    assert r.status_code == 400


def test_the_mode_and_the_step_are_said_in_the_viewers_language(
    client: TestClient, ctx: Context, people: People
) -> None:
    aip = add_aip(ctx, "museum", title="Plates", puids=["fmt/11"], names=["data/a.png"])
    with session_scope(ctx.sessions) as s:
        policy, text = service.read_policy(None)
        migration = service.start_migration(
            s, policy, text, aip_ids=[aip], tenant_id="museum", who="ann"
        ).migration_id
        item = s.scalars(select(MigrationItem).where(MigrationItem.migration_id == migration)).one()
        item.state, item.step = "running", "convert"
    people.add("ann@museum.example", "curator", "museum")
    people.log_in(client, "ann@museum.example")
    page = f"/console/migrations/{migration}"
    nl = client.get(page, headers={"Accept-Language": "nl"}).text
    assert "· zo goed mogelijk (behouden wat geverifieerd is)" in nl and "best-effort" not in nl
    assert "· wordt omgezet" in nl and "· convert" not in nl
    fr = client.get(page, headers={"Accept-Language": "fr", "HX-Request": "true"}).text
    assert "· en cours de conversion" in fr
    preview = client.get(f"/console/migrations/new?aip={aip}", headers={"Accept-Language": "fr"})
    assert "mode au mieux (garder ce qui est vérifié)" in html.unescape(preview.text)


def test_an_admin_migrates_the_tenant_chosen_and_a_curator_only_their_own(
    client: TestClient, ctx: Context, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    museum = add_aip(ctx, "museum", title="Plates", puids=["fmt/11"], names=["data/a.png"])
    library = add_aip(ctx, "library", title="Maps", puids=["fmt/11"], names=["data/m.png"])
    submitted: list[str] = []
    monkeypatch.setattr(run, "submit_migration", lambda _ctx, mid: submitted.append(mid))
    people.add("root@archive.example", "admin", None)
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "root@archive.example")

    r = client.get("/console/migrations/new", params={"puid": "fmt/11", "tenant": "library"})
    assert r.status_code == 200, r.text[:300]
    assert library in r.text and museum not in r.text
    assert '<input type="hidden" name="tenant" value="library">' in r.text
    r = client.post(
        "/console/migrations",
        data={"csrf": csrf, "puid": "fmt/11", "tenant": "library"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    with session_scope(ctx.sessions) as s:
        [migration] = s.scalars(select(Migration)).all()
        assert migration.tenant_id == "library" and submitted == [migration.id]
        items = s.scalars(select(MigrationItem.aip_id)).all()
        assert items == [library]
    # No tenant named: every tenant's, as the API does for an admin.
    r = client.get("/console/migrations/new", params={"puid": "fmt/11"})
    assert library in r.text and museum in r.text and 'name="tenant"' not in r.text

    # A curator's scope is their own tenant: named, it is the same; another is a 404.
    client.cookies.clear()
    csrf = people.log_in(client, "ann@museum.example")
    r = client.get("/console/migrations/new", params={"puid": "fmt/11", "tenant": "museum"})
    assert r.status_code == 200 and museum in r.text and library not in r.text
    r = client.get("/console/migrations/new", params={"puid": "fmt/11", "tenant": "library"})
    assert r.status_code == 404
    r = client.post(
        "/console/migrations", data={"csrf": csrf, "puid": "fmt/11", "tenant": "library"}
    )
    assert r.status_code == 404
    assert len(submitted) == 1


def test_a_puids_preview_plans_a_page_of_aips_and_counts_the_rest(
    client: TestClient, ctx: Context, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    aips = sorted(
        add_aip(ctx, "museum", title=f"Plates {n}", puids=["fmt/11"], names=["data/a.png"])
        for n in range(3)
    )
    add_aip(ctx, "library", title="Maps", puids=["fmt/11"], names=["data/m.png"])
    policy, _text = service.read_policy(None)
    with session_scope(ctx.sessions) as s:
        whole = service.dry_run(s, policy, puid="fmt/11", tenant_id="museum")
        assert whole["aips_total"] == 3 and whole["complete"] and whole["files"] == 3
        part = service.dry_run(s, policy, puid="fmt/11", tenant_id="museum", limit=2)
        assert [a["aip_id"] for a in part["aips"]] == aips[:2]
        assert part["aips_total"] == 3 and not part["complete"] and part["files"] == 2
        # Every tenant's, for an admin; a limit not reached leaves the plan whole.
        assert service.dry_run(s, policy, puid="fmt/11", limit=2)["aips_total"] == 4
        exact = service.dry_run(s, policy, puid="fmt/11", tenant_id="museum", limit=3)
        assert exact["aips_total"] == 3 and exact["complete"]

    monkeypatch.setattr(migrations_page, "PREVIEW_AIPS", 2)
    people.add("ann@museum.example", "curator", "museum")
    people.log_in(client, "ann@museum.example")
    page = client.get("/console/migrations/new", params={"puid": "fmt/11"}).text
    assert aips[0] in page and aips[1] in page and aips[2] not in page
    assert '<p class="big">3</p>' in page and "in the first 2 AIPs" in page
    assert "…and 1 more AIP, not planned here" in page and "Start migration" in page
