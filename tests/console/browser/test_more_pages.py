"""The pages the other browser tests pass by, each through axe-core: a form, lists, fragments.

The metadata form and the coverage page are only read here (saving metadata
makes a version, which the AIP tests do not expect); the audit is a real one,
started from the dashboard as a curator does and followed until it is over, so
no drive is still busy with it when a later test recalls a DIP.
"""

from __future__ import annotations

from preservation.catalog.database import session_scope
from preservation.migrate import service as migrations
from tests.api.conftest import add_aip
from tests.console.browser.conftest import (
    ANN,
    CARLA,
    OpenPage,
    Site,
    check_axe,
    tr,
    wait_until,
)


def test_the_metadata_form_and_the_coverage_page(open_page: OpenPage, site: Site) -> None:
    brieven = site.holdings["brieven"]
    page = open_page(ANN)
    response = page.goto(f"/console/aips/{brieven.aip_id}/metadata")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == tr("en", "Descriptive metadata")
    assert page.locator("#dc-title").input_value() == brieven.title
    check_axe(page, "metadata form")

    # Without htmx, the audit coverage is a page of its own (the dashboard's fallback link).
    response = page.goto("/console/dashboard/coverage")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == tr("en", "Audit coverage")
    assert page.locator("#coverage-slot table").count() == 1
    check_axe(page, "audit coverage page")


def test_an_audit_started_from_the_dashboard_is_followed_to_its_end(
    open_page: OpenPage, site: Site
) -> None:
    page = open_page(ANN)  # the login ends on the dashboard
    audits = page.locator("#audit-list li.audit")
    before = audits.count()
    page.fill("#audit-max", "2")
    page.click("form[action='/console/dashboard/audits'] button[type=submit]")  # htmx
    wait_until(lambda: audits.count() == before + 1, "the new audit in the list", limit=15)
    audit = audits.first
    audit_id = (audit.get_attribute("id") or "").removeprefix("audit-")
    assert audit_id, audit.inner_html()
    assert page.url.rstrip("/").endswith("/console")  # htmx: no navigation
    check_axe(page, "dashboard with an audit started")

    # The fragment polls itself until the audit is over, then stops.
    wait_until(lambda: audit.get_attribute("hx-trigger") is None, "the audit to finish")
    assert audit.get_attribute("data-state") == "done", audit.inner_text()
    check_axe(page, "dashboard with the audit done")

    response = page.goto(f"/console/dashboard/audits/{audit_id}")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == tr("en", "Audit %(id)s") % {"id": audit_id[:8]}
    assert page.locator(f"#audit-{audit_id}[data-state=done]").count() == 1
    check_axe(page, "one audit")
    # Another tenant's curator does not see it.
    other = open_page(CARLA)
    response = other.goto(f"/console/dashboard/audits/{audit_id}")
    assert response is not None and response.status == 404


def test_the_migrations_list(open_page: OpenPage, site: Site) -> None:
    # The library's own migration (of TIFFs, which the policy keeps: nothing to do, done at
    # once), so that the list has a row without touching the museum's, which the AIP tests
    # count.
    aip_id = add_aip(site.ctx, "library", title="Maps, already TIFF", puids=("fmt/353",))
    policy, text = migrations.read_policy(site.ctx.settings.migration_policy)
    with session_scope(site.ctx.sessions) as s:
        view = migrations.start_migration(
            s, policy, text, aip_ids=[aip_id], tenant_id="library", who="carla"
        )
    assert view.state == "done"

    page = open_page(CARLA)
    response = page.goto("/console/migrations")
    assert response is not None and response.status == 200
    assert page.locator("h1").inner_text() == tr("en", "Migrations")
    link = page.locator(f"main table a[href='/console/migrations/{view.migration_id}']")
    assert link.count() == 1
    check_axe(page, "migrations")
