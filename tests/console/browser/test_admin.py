"""The admin page in Chromium: an admin sees every tenant, a curator only their own; axe-core."""

from __future__ import annotations

from tests.console.browser.conftest import (
    ADMIN,
    ANN,
    CARLA,
    READER,
    OpenPage,
    check_axe,
    shoot,
    tr,
)


def test_an_admin_sees_every_tenant_and_adds_a_token(open_page: OpenPage) -> None:
    page = open_page(ADMIN)
    response = page.goto("/console/admin")
    assert response is not None and response.status == 200
    body = page.locator("main").inner_text()
    assert "museum" in body and "library" in body
    assert ANN in body and CARLA in body
    check_axe(page, "admin")
    shoot(page, "admin")

    # A new token: its secret shown once, on the answer to the POST.
    page.fill("#token-label", "catalogue harvester")
    page.select_option("#token-role", "consumer")
    page.select_option("#token-tenant", "museum")
    with page.expect_navigation():
        page.click("form[action='/console/admin/tokens'] button[type=submit]")
    secret = page.locator("#created-secret").input_value()
    assert len(secret) > 20
    check_axe(page, "admin with a new token")
    page.goto("/console/admin")
    assert secret not in page.content()


def test_a_curator_sees_only_their_tenant_and_a_consumer_not_the_page(
    open_page: OpenPage,
) -> None:
    page = open_page(ANN)
    page.goto("/console/admin")
    body = page.locator("main").inner_text()
    assert ANN in body and CARLA not in body
    assert page.locator("form[action='/console/admin/tenants']").count() == 0
    check_axe(page, "admin (curator)")

    reader = open_page(READER)
    response = reader.goto("/console/admin")
    assert response is not None and response.status == 403
    assert reader.locator("h1").inner_text() == tr("en", "You may not do this")
    assert reader.locator("nav a[href='/console/admin']").count() == 0
    check_axe(reader, "403 page")
