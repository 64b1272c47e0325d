"""A DIP in Chromium: asked for on the AIP's page, followed live, downloaded, the zip checked."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from tests.console.browser.conftest import READER, OpenPage, Site, check_axe, shoot


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_consumer_asks_for_a_dip_follows_it_and_downloads_the_zip(
    open_page: OpenPage, site: Site, tmp_path: Path
) -> None:
    harbour = site.holdings["harbour"]
    page = open_page(READER)
    page.goto(f"/console/aips/{harbour.aip_id}")
    page.select_option("#dip-kind", "original")
    with page.expect_navigation():
        page.click(f"form[action='/console/aips/{harbour.aip_id}/dip'] button[type=submit]")
    assert "/console/dips" in page.url and "asked=" in page.url
    dip_id = page.url.split("asked=", 1)[1].split("#", 1)[0].split("&", 1)[0]
    row = page.locator(f"#dip-{dip_id}")
    assert row.count() == 1
    # Live status: the list polls while the recall runs, the download link appears when ready.
    link = row.locator(f"a[href='/console/dips/{dip_id}/download']")
    link.wait_for(state="visible", timeout=60_000)
    check_axe(page, "DIPs")
    shoot(page, "dips")

    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"dip-{dip_id}.zip"
    zip_path = tmp_path / download.suggested_filename
    download.save_as(zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert all(n.startswith(f"{dip_id}/") for n in names), names[:5]
        for rel, original in harbour.payload().items():
            [member] = [n for n in names if n.endswith(f"/original/data/{rel}")]
            assert sha256(zf.read(member)) == sha256(original.read_bytes()), rel

    # The single DIP's page says the same, and passes axe-core too.
    page.goto(f"/console/dips/{dip_id}")
    assert page.locator(f"#dip-{dip_id} a[href$='/download']").count() == 1
    check_axe(page, "one DIP")


def test_another_tenants_dip_is_the_404_page(open_page: OpenPage, site: Site) -> None:
    from preservation.access import service as dips
    from preservation.catalog.database import session_scope

    with session_scope(site.ctx.sessions) as s:
        view = dips.request_dip(
            s, aip_id=site.holdings["foreign"].aip_id, tenant_id="library", kind="original",
            files_glob=None, requested_by="carla", cache_bytes=site.ctx.settings.dip_cache_bytes,
        )  # fmt: skip
    page = open_page(READER)
    response = page.goto(f"/console/dips/{view.dip_id}")
    assert response is not None and response.status == 404
    assert page.request.get(f"/console/dips/{view.dip_id}/download").status == 404
    page.goto("/console/dips?all=1")
    assert view.dip_id not in page.content()
