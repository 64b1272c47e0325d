"""Logging in through the form in Chromium, in each language; the login page passes axe-core."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.browser.conftest import (
    ANN,
    LANGS,
    OpenPage,
    Site,
    check_axe,
    html_lang,
    log_in,
    shoot,
    switch_language,
    tr,
)


@pytest.mark.parametrize("lang", LANGS)
def test_the_login_page_speaks_the_browsers_language_and_passes_axe(
    open_page: OpenPage, lang: str
) -> None:
    page = open_page(lang=lang)
    page.goto("/console/")  # not logged in: sent to the login form
    assert "/console/login" in page.url
    assert html_lang(page) == lang
    assert page.locator("h1").inner_text() == tr(lang, "Log in")
    check_axe(page, f"login ({lang})")
    if lang == "en":
        shoot(page, "login")


def test_a_curator_logs_in_through_the_form_switches_language_and_logs_out(
    open_page: OpenPage, site: Site
) -> None:
    page = open_page()
    page.goto("/console/login")
    page.fill("#email", ANN)
    page.fill("#password", "not the password")
    page.click("form[action='/console/login'] button[type=submit]")
    assert page.locator("[role=alert]").is_visible()
    assert "/console/login" in page.url

    log_in(page, ANN)
    assert page.url.rstrip("/").endswith("/console")
    assert ANN in page.locator("header").inner_text()
    for code in ("nl", "fr", "en"):
        switch_language(page, code)
    page.click("header form[action='/console/logout'] button")
    page.wait_for_url("**/console/login*")
    page.goto("/console/")
    assert "/console/login" in page.url


def test_wrong_password_shows_the_failure_in_a_live_region(open_page: OpenPage) -> None:
    page: Any = open_page(lang="nl")
    page.goto("/console/login")
    page.fill("#email", ANN)
    page.fill("#password", "nope")
    page.click("form[action='/console/login'] button[type=submit]")
    alert = page.locator("[role=alert]")
    assert alert.is_visible() and alert.inner_text().strip() == tr(
        "nl", "Wrong e-mail or password."
    )
