"""Dashboard, search and formats in Chromium, in each language, each passing axe-core."""

from __future__ import annotations

import pytest

from tests.console.browser.conftest import (
    ANN,
    LANGS,
    OpenPage,
    Site,
    check_axe,
    html_lang,
    shoot,
    switch_language,
    tr,
)


@pytest.mark.parametrize("lang", LANGS)
def test_the_dashboard_shows_what_needs_a_person(
    open_page: OpenPage, site: Site, lang: str
) -> None:
    page = open_page(ANN)
    if lang != "en":
        switch_language(page, lang)
    assert html_lang(page) == lang
    assert page.locator("h1").inner_text() == tr(lang, "Dashboard")
    assert page.locator("h2#attention").inner_text() == tr(lang, "Needs a person")
    # The bag ingest rejected is listed with its report.
    assert "damaged-transfer" in page.locator("main").inner_text()
    # Audit coverage comes in by htmx after the page loads.
    page.locator("#coverage-slot:not([hx-get])").wait_for()
    check_axe(page, f"dashboard ({lang})")
    if lang == "en":
        shoot(page, "dashboard")


@pytest.mark.parametrize("lang", LANGS)
def test_search_finds_by_words_puid_and_external_identifier_and_opens_the_aip(
    open_page: OpenPage, site: Site, lang: str
) -> None:
    page = open_page(ANN, lang=lang)  # the language from the browser's Accept-Language
    page.goto("/console/search")
    assert html_lang(page) == lang
    assert page.locator("h1").inner_text() == tr(lang, "Search")
    results = page.locator("#results")

    # Words, through the form (htmx swaps the results in and pushes the URL).
    page.fill("#q", "burgemeester")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**/console/search?*q=burgemeester*")
    brieven = site.holdings["brieven"]
    results.locator(f"a[href='/console/aips/{brieven.aip_id}']").wait_for()
    assert results.locator("tbody tr").count() == 1
    check_axe(page, f"search with results ({lang})")

    # A PRONOM id: the catalogue-only holdings with TIFFs, not the other tenant's.
    page.goto("/console/search?puid=fmt/353")
    tiffs = results.locator("tbody tr")
    assert tiffs.count() >= 4
    assert site.holdings["foreign"].title not in results.inner_text()

    # The submitter's External-Identifier.
    page.goto("/console/search?external_identifier=harbour")
    harbour = site.holdings["harbour"]
    link = results.locator(f"a[href='/console/aips/{harbour.aip_id}']")
    assert results.locator("tbody tr").count() == 1
    with page.expect_navigation():
        link.click()
    assert page.locator("h1").inner_text() == harbour.title
    assert html_lang(page) == lang


def test_search_lists_everything_newest_first_and_says_what_is_wrong(
    open_page: OpenPage, site: Site
) -> None:
    page = open_page(ANN)
    page.goto("/console/search")
    rows = page.locator("#results tbody tr")
    assert rows.count() >= len(site.catalogue_only) + 4
    body = page.locator("#results").inner_text()
    assert "Brieven van de burgemeester" in body and "Palais de justice" in body
    check_axe(page, "search, every AIP")
    shoot(page, "search")
    # Another tenant's words find nothing.
    page.goto("/console/search?q=Incunabula")
    assert page.locator("#results tbody tr").count() == 0
    # A mistake is said next to the form, not a crash.
    response = page.goto("/console/search?puid=not-a-puid")
    assert response is not None and response.status == 400
    assert page.locator("#results [role=alert]").count() == 1
    check_axe(page, "search with a mistake")


def test_the_formats_page_offers_to_migrate_a_puid(open_page: OpenPage, site: Site) -> None:
    page = open_page(ANN)
    response = page.goto("/console/formats")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == tr("en", "Formats")
    assert page.locator("tr[data-puid='fmt/353']").count() == 1
    migrate = page.locator("a[href^='/console/migrations/new?puid=']")
    assert migrate.count() >= 1
    check_axe(page, "formats")
    shoot(page, "formats")
    with page.expect_navigation():
        migrate.first.click()
    assert page.locator("h1").inner_text() == tr("en", "Preview a migration")
