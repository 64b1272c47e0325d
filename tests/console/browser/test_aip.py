"""An AIP's page in Chromium: what a curator does there, and what another tenant may not see.

Each test that changes an AIP uses its own real ingest (the session's
holdings), so the tests can run in any order: the migration runs on
``palais``, the disposal on ``duplicates``; ``harbour`` and ``brieven`` are
only read here.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, AIPState, AIPVersion
from preservation.migrate import service as migrations
from tests.console.browser.conftest import (
    ANN,
    BOB,
    CARLA,
    LANGS,
    READER,
    OpenPage,
    Site,
    check_axe,
    html_lang,
    shoot,
    switch_language,
    tr,
    wait_until,
)


def aip_url(aip_id: str) -> str:
    return f"/console/aips/{aip_id}"


@pytest.mark.parametrize("lang", LANGS)
def test_the_aip_page_shows_versions_files_history_copies_and_retention(
    open_page: OpenPage, site: Site, lang: str
) -> None:
    harbour = site.holdings["harbour"]
    page = open_page(ANN)
    response = page.goto(aip_url(harbour.aip_id))
    assert response is not None and response.status == 200
    if lang != "en":
        switch_language(page, lang)  # through the header's links, back to the same AIP
    assert html_lang(page) == lang
    assert page.url.endswith(aip_url(harbour.aip_id))
    assert page.locator("h1").inner_text() == harbour.title
    assert page.locator("#retention-heading").inner_text() == tr(lang, "Retention and holds")
    # The versions as a timeline, the files with their formats, the PREMIS history.
    assert page.locator("#versions ol.timeline li").count() >= 1
    body = page.locator("main").inner_text()
    assert "plate.png" in body and "reading.txt" in body
    assert "fmt/11" in body or "fmt/12" in body or "fmt/13" in body  # PNG's PUIDs
    assert "ingestion" in body.lower() or tr(lang, "ingestion").lower() in body.lower()
    check_axe(page, f"AIP page ({lang})")
    if lang == "en":
        shoot(page, "aip")


def test_a_foreign_tenants_aip_is_the_404_page(open_page: OpenPage, site: Site) -> None:
    foreign = site.holdings["foreign"]
    page = open_page(ANN)
    response = page.goto(aip_url(foreign.aip_id))
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == tr("en", "Not found")
    assert foreign.title not in page.content()
    check_axe(page, "404 page")
    shoot(page, "not-found")
    # Its own curator sees it.
    other = open_page(CARLA)
    response = other.goto(aip_url(foreign.aip_id))
    assert response is not None and response.status == 200
    assert other.locator("h1").inner_text() == foreign.title


def test_a_post_without_the_csrf_token_is_refused(open_page: OpenPage, site: Site) -> None:
    aip_id = site.holdings["brieven"].aip_id
    page = open_page(ANN)
    page.goto(aip_url(aip_id))
    # The logged-in browser's own cookies, but no token: the request a forged form makes.
    r = page.request.post(f"/console/aips/{aip_id}/hold", form={"reason": "forged"})
    assert r.status == 403, (r.status, r.text()[:300])
    status = page.evaluate(
        """url => fetch(url, {method: 'POST', body: new URLSearchParams({reason: 'forged'})})
                 .then(r => r.status)""",
        f"/console/aips/{aip_id}/hold",
    )
    assert status == 403
    # A token that is not the session's is refused as well.
    r = page.request.post(
        f"/console/aips/{aip_id}/hold", form={"reason": "forged", "csrf": "not-the-token"}
    )
    assert r.status == 403
    page.reload()
    assert "forged" not in page.locator("#retention").inner_text()


def test_a_consumer_sees_no_curators_buttons(open_page: OpenPage, site: Site) -> None:
    aip_id = site.holdings["brieven"].aip_id
    page = open_page(READER)
    page.goto(aip_url(aip_id))
    assert page.locator(f"form[action='/console/aips/{aip_id}/dip']").count() == 1
    assert page.locator(f"form[action='/console/aips/{aip_id}/disposal']").count() == 0
    assert page.locator("a[href^='/console/migrations/new']").count() == 0
    # And the server refuses what the page does not offer.
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(
        f"/console/aips/{aip_id}/hold", form={"reason": "not mine to place", "csrf": token}
    )
    assert r.status == 403


def test_a_curator_previews_and_runs_a_migration_and_the_aip_gets_a_new_version(
    open_page: OpenPage, site: Site
) -> None:
    palais = site.holdings["palais"]
    page = open_page(ANN)
    page.goto(aip_url(palais.aip_id))
    with page.expect_navigation():
        page.click("a[href^='/console/migrations/new']")
    assert "/console/migrations/new" in page.url
    # The dry run lists the PNG, what it becomes and by which tool; nothing is recorded.
    table = page.locator("main table").first.inner_text()
    assert "plate.png" in table and "image-to-tiff" in table and "fmt/353" in table
    assert "reading.txt" not in table
    with session_scope(site.ctx.sessions) as s:
        assert migrations.list_migrations(s, "museum") == []
    check_axe(page, "migration preview")
    shoot(page, "migration-preview")

    with page.expect_navigation():
        page.click("form[action='/console/migrations'] button[type=submit]")
    assert "/console/migrations/" in page.url
    migration_id = page.url.rstrip("/").rsplit("/", 1)[1]
    # Live progress: the fragment polls until the migration is over, then stops.
    progress = page.locator("#progress")
    wait_until(lambda: progress.get_attribute("hx-trigger") is None, "the migration to finish")
    with session_scope(site.ctx.sessions) as s:
        view = migrations.get_migration(s, migration_id, "museum")
    assert (view.state, view.files_migrated, view.files_failed) == ("done", 1, 0), view
    bar = page.locator("#migration-bar")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "1"
    assert "image-to-tiff" in progress.inner_text()
    check_axe(page, "migration progress")
    shoot(page, "migration-progress")

    # The AIP's page: version 2 in the timeline, the TIFF among its files.
    with page.expect_navigation():
        page.click(f"#progress a[href='{aip_url(palais.aip_id)}']")
    timeline = page.locator("#versions ol.timeline")
    wait_until(
        lambda: (
            "Version 2" in timeline.inner_text()
            and page.locator("#versions [role=status]").count() == 0
        ),
        "version 2 to be stored",
    )
    with session_scope(site.ctx.sessions) as s:
        numbers = s.scalars(
            select(AIPVersion.number).where(AIPVersion.aip_id == palais.aip_id)
        ).all()
    assert sorted(numbers) == [1, 2]
    page.reload()
    assert ".tif" in page.locator("main").inner_text()


def test_a_disposal_asked_by_one_curator_is_approved_by_another(
    open_page: OpenPage, site: Site
) -> None:
    duplicates = site.holdings["duplicates"]
    ann = open_page(ANN)
    ann.goto(aip_url(duplicates.aip_id))
    ann.fill("#disposal-reason", "Scanned again in 2024; these duplicates are not kept.")
    with ann.expect_navigation():
        ann.click(f"form[action='/console/aips/{duplicates.aip_id}/disposal'] button")
    approve = "form[action*='/disposals/'][action$='/approve'] button"
    assert ann.locator(approve).count() == 1
    check_axe(ann, "AIP page with a disposal waiting")
    # Ann may not approve her own request (four eyes): refused, and said so.
    with ann.expect_navigation():
        ann.click(approve)
    assert ann.locator(".notice.error").count() == 1
    with session_scope(site.ctx.sessions) as s:
        assert s.get_one(AIP, duplicates.aip_id).state is AIPState.ACTIVE

    bob = open_page(BOB)
    bob.goto(aip_url(duplicates.aip_id))
    with bob.expect_navigation():
        bob.click(approve)
    assert bob.locator(".notice.error").count() == 0
    with session_scope(site.ctx.sessions) as s:
        aip: Any = s.get_one(AIP, duplicates.aip_id)
        assert aip.state is AIPState.DISPOSED and aip.descriptive is None
    body = bob.locator("main").inner_text()
    assert ANN in body and BOB in body  # who asked and who approved
