"""Formats, DIPs, admin and migrations in each language, switched through the header's links.

One curator's session goes round every language on every page: the links come
back to the same page, ``<html lang>`` follows, and the heading is the
translation the catalogue holds (French keeps "Formats", "Migrations" and
"Administration"; the navigation's "Dashboard" shows the page is not simply
English).
"""

from __future__ import annotations

from tests.console.browser.conftest import ANN, OpenPage, html_lang, switch_language, tr

PAGES = (
    ("/console/formats", "Formats"),
    ("/console/dips", "DIPs"),
    ("/console/admin", "Administration"),
    ("/console/migrations", "Migrations"),
)


def test_formats_dips_admin_and_migrations_in_three_languages(open_page: OpenPage) -> None:
    page = open_page(ANN)
    for path, heading in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        for lang in ("nl", "fr", "en"):
            switch_language(page, lang)
            assert page.url.endswith(path), (lang, page.url)
            assert html_lang(page) == lang
            assert page.locator("h1").inner_text() == tr(lang, heading, cognate=True), (path, lang)
            nav = page.locator("header nav").inner_text()
            assert tr(lang, "Dashboard") in nav, (path, lang, nav)
