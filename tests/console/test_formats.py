"""The formats page: the risk report per PRONOM id, and "Migrate these" for those who may."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from preservation.catalog.database import session_scope
from preservation.catalog.models import AIPVersion, File
from preservation.context import Context
from tests.console.conftest import People, add_aip


def row(page: str, puid: str) -> str:
    found = re.search(rf'<tr data-puid="{re.escape(puid)}">(.*?)</tr>', page, re.S)
    assert found, puid
    return found.group(1)


def cells(page: str, puid: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row(page, puid), re.S)
    ]


def holdings(ctx: Context) -> None:
    add_aip(ctx, "museum", title="Scans", puids=("fmt/353", "fmt/353", "fmt/43"))
    add_aip(ctx, "museum", title="More scans", puids=("fmt/353",))
    add_aip(ctx, "museum", title="Texts", puids=("x-fmt/111",))
    add_aip(ctx, "library", title="Library scans", puids=("fmt/353",) * 5)


def test_not_logged_in_goes_to_the_login_page(client: TestClient) -> None:
    r = client.get("/console/formats", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_the_report_counts_files_and_aips_of_the_viewers_tenant(
    ctx: Context, client: TestClient, people: People
) -> None:
    holdings(ctx)
    people.add("carl@museum.example", "consumer", "museum")
    people.log_in(client, "carl@museum.example")
    r = client.get("/console/formats")
    assert r.status_code == 200 and "<h1>Formats</h1>" in r.text
    tiff = cells(r.text, "fmt/353")
    assert tiff[0] == "fmt/353"
    assert tiff[2] == "3"  # files: the museum's, not the library's five
    assert tiff[4] == "2"  # AIPs holding them
    assert 'href="/console/search?puid=fmt/353"' in row(r.text, "fmt/353")
    assert cells(r.text, "x-fmt/111")[2] == "1"
    # A consumer sees the policy's action but gets no "Migrate these".
    assert "Migrate these" not in r.text
    # Another tenant's report, asked for by name, is not found.
    assert client.get("/console/formats", params={"tenant": "library"}).status_code == 404


def test_a_curator_gets_migrate_these_for_a_format_the_policy_migrates(
    ctx: Context, client: TestClient, people: People
) -> None:
    holdings(ctx)
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    page = client.get("/console/formats").text
    from preservation import formats

    policy = formats.load_format_policy(ctx.settings)
    for puid in ("fmt/353", "fmt/43", "x-fmt/111"):
        rule = policy.rule_for(puid)
        link = f'href="/console/migrations/new?puid={puid}"'
        assert (link in row(page, puid)) is bool(rule and rule.preservation), puid
    assert 'href="/console/migrations/new?puid=fmt/353"' in page


def test_findings_are_said_in_words(ctx: Context, client: TestClient, people: People) -> None:
    aip = add_aip(ctx, "museum", title="Doubtful", puids=("fmt/353", "fmt/353", "fmt/43"))
    with session_scope(ctx.sessions) as s:
        version = s.scalar(select(AIPVersion.id).where(AIPVersion.aip_id == aip))
        ids = list(
            s.scalars(select(File.id).where(File.aip_version_id == version).order_by(File.id))
        )
        s.execute(update(File).where(File.id == ids[0]).values(valid=False))
        s.execute(update(File).where(File.id == ids[2]).values(identification_basis="extension"))
        s.execute(update(File).where(File.id == ids[1]).values(puid=None))
    people.add("carl@museum.example", "consumer", "museum")
    people.log_in(client, "carl@museum.example")
    page = client.get("/console/formats").text
    assert "1 malformed" in row(page, "fmt/353")
    assert "1 by extension only" in row(page, "fmt/43")
    unidentified = re.search(r"<tr>\s*<td class=\"mono\">—</td>(.*?)</tr>", page, re.S)
    assert unidentified and "Not identified" in unidentified.group(1)
    assert 'class="badge bad">not identified<' in unidentified.group(1)


def test_an_admin_sees_every_tenant_or_one(
    ctx: Context, client: TestClient, people: People
) -> None:
    holdings(ctx)
    people.add("root@archive.example", "admin", None)
    people.log_in(client, "root@archive.example")
    page = client.get("/console/formats").text
    assert cells(page, "fmt/353")[2] == "8" and cells(page, "fmt/353")[4] == "3"
    assert '<option value="library"' in page
    page = client.get("/console/formats", params={"tenant": "library"}).text
    assert cells(page, "fmt/353")[2] == "5"
    assert 'data-puid="x-fmt/111"' not in page


def test_the_formats_page_speaks_dutch_and_french(
    ctx: Context, client: TestClient, people: People
) -> None:
    holdings(ctx)
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    nl = client.get("/console/formats", headers={"Accept-Language": "nl"}).text
    assert "<h1>Formaten</h1>" in nl and "<h2>Risicorapport</h2>" in nl
    assert "Deze migreren" in nl
    fr = client.get("/console/formats", headers={"Accept-Language": "fr"}).text
    assert "<h2>Rapport de risques</h2>" in fr and "Migrer ces fichiers" in fr


def test_an_admins_migrate_these_keeps_the_reports_tenant(
    ctx: Context, client: TestClient, people: People
) -> None:
    """From one tenant's report, "Migrate these" is that tenant's files, not every tenant's."""
    holdings(ctx)
    people.add("root@archive.example", "admin", None)
    people.log_in(client, "root@archive.example")
    page = client.get("/console/formats", params={"tenant": "library"}).text
    assert 'href="/console/migrations/new?puid=fmt/353&amp;tenant=library"' in row(page, "fmt/353")
    # Every tenant's report: no tenant in the link.
    page = client.get("/console/formats").text
    assert 'href="/console/migrations/new?puid=fmt/353"' in row(page, "fmt/353")
