"""The dashboard: counts, what needs a person, sites, audits, each for the viewer's tenant only."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

import bagit
from fastapi.testclient import TestClient
from sqlalchemy import select

from preservation import ingest, retention
from preservation.audit import runs
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    SIP,
    AIPVersion,
    Audit,
    AuditState,
    Cartridge,
    CartridgeState,
    CopyStatus,
    Disposal,
    SIPState,
    TapeCopy,
    utcnow,
)
from preservation.context import Context
from tests.console.conftest import People, add_aip, ago, csrf_of


def text_of(html: str) -> str:
    """The page's words without tags, spaces folded: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(html: str, heading_id: str) -> str:
    """From the heading with this id to the next heading of the same or a higher level."""
    start = html.index(f'id="{heading_id}"')
    level = html[html.rindex("<h", 0, start) + 2]
    rest = html[start:]
    end = re.search(rf"<h[1-{level}][ >]", rest)
    return rest[: end.start()] if end else rest


def rejected_bag(ctx: Context, tmp_path: Path, tenant: str, name: str) -> str:
    """A real ingest of a bag changed after it was made: validation rejects it with a report."""
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, tenant, tenant.title())
    bag = tmp_path / name
    bag.mkdir(parents=True)
    (bag / "minutes.txt").write_text("Minutes of the board, 1921.\n")
    bagit.make_bag(str(bag), {"Source-Organization": tenant.title()}, checksums=["sha256"])
    (bag / "data" / "minutes.txt").write_text("Minutes of the board, 1922.\n")
    result = ingest.run_ingest(ctx, bag, tenant=tenant)
    assert result.state == "rejected", result
    return result.sip_id


def failed_copy(ctx: Context, aip_id: str, barcode: str, error: str) -> None:
    with session_scope(ctx.sessions) as s:
        if s.get(Cartridge, barcode) is None:
            s.add(Cartridge(barcode=barcode, site="site-a", state=CartridgeState.FULL))
            s.flush()
        version = s.scalar(select(AIPVersion).where(AIPVersion.aip_id == aip_id))
        assert version is not None
        s.add(
            TapeCopy(
                aip_version_id=version.id,
                site="site-a",
                barcode=barcode,
                path=f"/aips/{aip_id}/v1.tar",
                length=1000,
                sha256="0" * 64,
                status=CopyStatus.FAILED,
                written_at=utcnow(),
                error=error,
            )
        )


def pending_disposal(ctx: Context, aip_id: str, tenant: str, reason: str) -> str:
    with session_scope(ctx.sessions) as s:
        aip = s.get(AIP, aip_id)
        assert aip is not None
        aip.retention_until = ago(30)
        s.flush()
        view = retention.request_disposal(
            s, aip_id, tenant, retention.Actor(id="u-1", label="Ann"), reason=reason
        )
    return view.disposal_id


def interrupted_sip(ctx: Context, tenant: str, name: str, stage: str = "identify (running)") -> str:
    with session_scope(ctx.sessions) as s:
        sip = SIP(
            id=str(uuid.uuid4()),
            tenant_id=tenant,
            name=name,
            source_path="/nowhere",
            state=SIPState.SCANNED,
            stage=stage,
        )
        s.add(sip)
        return sip.id


def test_not_logged_in_goes_to_the_login_page(client: TestClient) -> None:
    for path in ("/console/", "/console/dashboard/coverage"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next=")
    r = client.get("/console/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/console/login")


def test_consumer_and_curator_see_the_counts_of_their_tenant(
    ctx: Context, client: TestClient, people: People
) -> None:
    for _ in range(3):
        add_aip(ctx, "museum", title="Museum piece")
    add_aip(ctx, "library", title="Library book")
    people.add("carl@museum.example", "consumer", "museum")
    people.add("cora@museum.example", "curator", "museum")
    for who in ("carl@museum.example", "cora@museum.example"):
        client.cookies.clear()
        people.log_in(client, who)
        html = client.get("/console/").text
        assert "<h1>Dashboard</h1>" in html
        assert 'data-sip-state="committed">3<' in html
        assert 'data-aip-state="active">3<' in html
        # Only a curator may start an audit; the form is not even shown to a consumer.
        assert ('action="/console/dashboard/audits"' in html) is (who.startswith("cora"))


def test_what_needs_a_person_is_the_viewers_tenants_and_an_admin_sees_every_one(
    ctx: Context, client: TestClient, people: People, tmp_path: Path
) -> None:
    museum_sip = rejected_bag(ctx, tmp_path / "m", "museum", "board-minutes")
    library_sip = rejected_bag(ctx, tmp_path / "l", "library", "loan-register")
    museum_aip = add_aip(ctx, "museum", title="Old photographs")
    library_aip = add_aip(ctx, "library", title="Old books")
    failed_copy(ctx, museum_aip, "MUS001L9", "sha256 mismatch on read-back (museum)")
    failed_copy(ctx, library_aip, "LIB001L9", "sha256 mismatch on read-back (library)")
    pending_disposal(ctx, museum_aip, "museum", "retention ended for the photographs")
    pending_disposal(ctx, library_aip, "library", "retention ended for the books")
    interrupted_sip(ctx, "museum", "museum-halfway")
    interrupted_sip(ctx, "library", "library-halfway")
    people.add("cora@museum.example", "curator", "museum")
    people.add("root@archive.example", "admin", None)

    people.log_in(client, "cora@museum.example")
    html = client.get("/console/").text
    seen = text_of(html)
    # The rejected bag with its report's problems, in an expandable block.
    rejected = section(html, "rejected")
    assert "board-minutes" in rejected and "<details>" in rejected
    assert "minutes.txt" in rejected  # the changed file, named by the validation report
    assert "loan-register" not in seen and library_sip not in html
    assert museum_sip in rejected
    # The failed copy, the disposal waiting for a second curator, the interrupted SIP.
    assert "sha256 mismatch on read-back (museum)" in section(html, "failed-copies")
    assert f"/console/aips/{museum_aip}" in section(html, "disposals")
    assert "retention ended for the photographs" in section(html, "disposals")
    stuck = section(html, "stuck")
    assert "museum-halfway" in stuck and 'badge warn">interrupted<' in stuck
    for foreign in ("(library)", "retention ended for the books", "library-halfway", library_aip):
        assert foreign not in html, foreign
    assert "LIB001L9" not in html

    client.cookies.clear()
    people.log_in(client, "root@archive.example")
    html = client.get("/console/").text
    for both in (
        "board-minutes",
        "loan-register",
        "sha256 mismatch on read-back (museum)",
        "sha256 mismatch on read-back (library)",
        "retention ended for the photographs",
        "retention ended for the books",
        "museum-halfway",
        "library-halfway",
    ):
        assert both in html, both


def test_a_bag_set_aside_by_the_hot_folder_is_shown_with_its_report(
    ctx: Context, client: TestClient, people: People
) -> None:
    from preservation.hotfolder import find_ready

    for tenant in ("museum", "library"):
        folder = ctx.settings.ingest_dir / tenant
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{tenant}-notes.docx").write_bytes(b"not a bag")
    find_ready(ctx.settings.ingest_dir, quiescent_seconds=0.0, now=time.time() + 3600)
    assert (ctx.settings.ingest_dir / "museum" / "rejected" / "museum-notes.docx").is_dir()
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    rejected = section(client.get("/console/").text, "rejected")
    assert "museum-notes.docx" in rejected and "not-a-bag" in rejected
    assert "library-notes.docx" not in rejected


def test_sites_show_their_drives_and_cartridges_by_state(
    ctx: Context, client: TestClient, people: People
) -> None:
    with session_scope(ctx.sessions) as s:
        for barcode, site, state in (
            ("TST001L9", "site-a", CartridgeState.FULL),
            ("TST002L9", "site-a", CartridgeState.FULL),
            ("TST003L9", "site-a", CartridgeState.SUSPECT),
            ("TST004L9", "site-b", CartridgeState.SCRATCH),
        ):
            s.add(Cartridge(barcode=barcode, site=site, state=state))
    people.add("carl@museum.example", "consumer", "museum")
    people.log_in(client, "carl@museum.example")
    html = section(client.get("/console/").text, "sites")

    def cell(site: str, state: str) -> str:
        found = re.search(rf'data-site="{site}" data-cartridge-state="{state}">([^<]*)<', html)
        assert found, (site, state)
        return found.group(1)

    assert cell("site-a", "full") == "2"
    assert cell("site-a", "suspect") == "1"
    assert cell("site-a", "scratch") == "0"
    assert cell("site-b", "scratch") == "1"
    drives = ctx.settings.tape_drives_per_site
    assert re.search(
        rf'<th scope="row">site-a</th>\s*<td>emulated</td>\s*<td class="num">{drives}<', html
    )


def test_audit_coverage_counts_the_tenants_overdue_copies(
    ctx: Context, client: TestClient, people: People
) -> None:
    museum_aip = add_aip(ctx, "museum", title="Checked long ago")
    library_aip = add_aip(ctx, "library", title="Also checked long ago")
    with session_scope(ctx.sessions) as s:
        s.add(Cartridge(barcode="COV001L9", site="site-a", state=CartridgeState.FULL))
        s.flush()
        for aip_id in (museum_aip, library_aip):
            version = s.scalar(select(AIPVersion).where(AIPVersion.aip_id == aip_id))
            assert version is not None
            s.add(
                TapeCopy(
                    aip_version_id=version.id,
                    site="site-a",
                    barcode="COV001L9",
                    path=f"/aips/{aip_id}/v1.tar",
                    length=1000,
                    sha256="0" * 64,
                    status=CopyStatus.VERIFIED,
                    written_at=ago(800),
                    verified_at=ago(800),  # past the default yearly interval
                )
            )
    people.add("cora@museum.example", "curator", "museum")
    people.add("root@archive.example", "admin", None)
    people.log_in(client, "cora@museum.example")
    # Without JavaScript the dashboard links to the coverage page; with it, htmx loads it.
    dashboard = client.get("/console/").text
    assert 'hx-get="/console/dashboard/coverage"' in dashboard
    assert 'href="/console/dashboard/coverage"' in dashboard
    fragment = client.get("/console/dashboard/coverage", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'data-overdue-site="site-a">1<' in fragment.text
    assert museum_aip[:8] in fragment.text and library_aip[:8] not in fragment.text
    page = client.get("/console/dashboard/coverage").text
    assert "<h1>Audit coverage</h1>" in page and 'data-overdue-site="site-a">1<' in page

    client.cookies.clear()
    people.log_in(client, "root@archive.example")
    fragment = client.get("/console/dashboard/coverage", headers={"HX-Request": "true"}).text
    assert 'data-overdue-site="site-a">2<' in fragment


def test_an_audits_progress_polls_until_it_is_done(
    ctx: Context, client: TestClient, people: People
) -> None:
    people.add("cora@museum.example", "curator", "museum")
    with session_scope(ctx.sessions) as s:
        mine = runs.start_audit(s, tuple(ctx.settings.sites), "museum", "Cora", site="site-a")
        row = s.get(Audit, mine.audit_id)
        assert row is not None
        row.state, row.started_at, row.copies_done, row.copies_total = (
            AuditState.RUNNING,
            utcnow(),
            3,
            10,
        )
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, "library", "Library")
        theirs = runs.start_audit(s, tuple(ctx.settings.sites), "library", "Lena")
    people.log_in(client, "cora@museum.example")

    html = client.get("/console/").text
    audits = section(html, "audits")
    assert f'id="audit-{mine.audit_id}"' in audits
    assert theirs.audit_id not in html
    url = f"/console/dashboard/audits/{mine.audit_id}"
    fragment = client.get(url, headers={"HX-Request": "true"}).text
    assert "<html" not in fragment
    assert f'hx-get="{url}"' in fragment and 'hx-trigger="every 2s"' in fragment
    assert re.search(r'<progress[^>]*max="10" value="3"', fragment)
    assert "3 of 10 copies read" in fragment

    with session_scope(ctx.sessions) as s:
        row = s.get(Audit, mine.audit_id)
        assert row is not None
        row.state, row.finished_at = AuditState.DONE, utcnow()
        row.copies_done = row.copies_total = 10
        row.report = {"ok": True, "checked": 10, "matched": 10, "failed": [], "summary": "x"}
    fragment = client.get(url, headers={"HX-Request": "true"}).text
    assert "hx-trigger" not in fragment  # finished: the polling stops
    assert "10 copies checked: 10 matched, 0 failed." in fragment
    # Without JavaScript the same URL is a page of its own.
    page = client.get(url)
    assert page.status_code == 200 and "<h1>" in page.text
    # Another tenant's audit is not found, like anything else of theirs.
    other = client.get(f"/console/dashboard/audits/{theirs.audit_id}")
    assert other.status_code == 404
    assert theirs.audit_id not in other.text.split('id="main"')[1]


def test_a_curator_starts_an_audit_and_a_consumer_may_not(
    ctx: Context, client: TestClient, people: People
) -> None:
    people.add("cora@museum.example", "curator", "museum")
    people.add("carl@museum.example", "consumer", "museum")
    people.log_in(client, "carl@museum.example")
    token = csrf_of(client.get("/console/").text)
    r = client.post("/console/dashboard/audits", data={"csrf": token, "site": ""})
    assert r.status_code == 403
    with session_scope(ctx.sessions) as s:
        assert s.scalar(select(Audit)) is None

    client.cookies.clear()
    token = people.log_in(client, "cora@museum.example")
    # Without the CSRF token: refused, and nothing started.
    r = client.post("/console/dashboard/audits", data={"site": "site-a"})
    assert r.status_code == 403
    r = client.post("/console/dashboard/audits", data={"csrf": token, "site": "nowhere"})
    assert r.status_code == 400 and "nowhere" in r.text
    r = client.post(
        "/console/dashboard/audits",
        data={"csrf": token, "site": "site-a", "max_cartridges": "2"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/#audits"
    with session_scope(ctx.sessions) as s:
        audit = s.scalar(select(Audit))
        assert audit is not None
        assert (audit.tenant_id, audit.site, audit.max_cartridges) == ("museum", "site-a", 2)
        assert "cora@museum.example" in audit.requested_by_label
        audit_id = audit.id
    # With htmx the new audit comes back as its fragment, for the list.
    r = client.post(
        "/console/dashboard/audits",
        data={"site": "site-b"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert r.status_code == 200 and '<li class="audit"' in r.text
    # The queued audits run in this process; the first one's page ends up showing it done.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope(ctx.sessions) as s:
            states = set(s.scalars(select(Audit.state)))
        if states <= {AuditState.DONE, AuditState.FAILED}:
            break
        time.sleep(0.2)
    fragment = client.get(
        f"/console/dashboard/audits/{audit_id}", headers={"HX-Request": "true"}
    ).text
    assert 'data-state="done"' in fragment and "hx-trigger" not in fragment


def test_an_audit_refused_from_htmx_is_said_beside_the_form(
    ctx: Context, client: TestClient, people: People
) -> None:
    """htmx swaps no 400: the refusal comes back as a notice with a 200, aimed at its slot."""
    people.add("cora@museum.example", "curator", "museum")
    token = people.log_in(client, "cora@museum.example")
    assert 'id="audit-refused"' in client.get("/console/").text
    htmx = {"HX-Request": "true", "X-CSRF-Token": token}
    for data, said in (
        ({"site": "nowhere"}, "nowhere"),
        ({"site": "site-a", "max_cartridges": "0"}, "1,000,000"),
    ):
        r = client.post("/console/dashboard/audits", data=data, headers=htmx)
        assert r.status_code == 200, data
        assert r.headers["hx-retarget"] == "#audit-refused"
        assert r.headers["hx-reswap"] == "innerHTML"
        assert 'class="notice error"' in r.text and said in r.text
        assert '<li class="audit"' not in r.text
    nl = client.post(
        "/console/dashboard/audits",
        data={"site": "nowhere"},
        headers={**htmx, "Accept-Language": "nl"},
    )
    assert "Er is geen locatie nowhere" in nl.text
    with session_scope(ctx.sessions) as s:
        assert s.scalar(select(Audit)) is None
    # A started one clears the last refusal (out of band) as it joins the list.
    r = client.post("/console/dashboard/audits", data={"site": "site-a"}, headers=htmx)
    assert r.status_code == 200 and '<li class="audit"' in r.text
    assert 'id="audit-refused" hx-swap-oob="innerHTML"' in r.text


def test_a_sip_quiet_for_long_is_stuck_and_one_being_worked_on_is_not(
    ctx: Context, client: TestClient, people: People
) -> None:
    from preservation.attention import STUCK_AFTER
    from preservation.lease import hold_sip_lease

    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, "museum", "Museum")
        for name, updated in (
            ("waiting-for-a-site", utcnow() - STUCK_AFTER - timedelta(minutes=1)),
            ("just-arrived", utcnow()),
        ):
            s.add(
                SIP(
                    id=str(uuid.uuid4()),
                    tenant_id="museum",
                    name=name,
                    source_path="/nowhere",
                    state=SIPState.PACKAGED,
                    stage="package",
                    created_at=updated,
                    updated_at=updated,
                )
            )
    working = interrupted_sip(ctx, "museum", "being-identified")
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    with hold_sip_lease(ctx.sessions, working, seconds=60, stage="identify (running)"):
        stuck = section(client.get("/console/").text, "stuck")
        assert "waiting-for-a-site" in stuck
        assert "just-arrived" not in stuck and "being-identified" not in stuck
        # The badge counts as the list does: the SIP with a live lease is not stuck.
        assert '<span class="badge warn">1</span>' in stuck
    stuck = section(client.get("/console/").text, "stuck")
    assert "being-identified" in stuck and '<span class="badge warn">2</span>' in stuck


def test_stages_and_severities_are_in_the_viewers_language(
    ctx: Context, client: TestClient, people: People
) -> None:
    """The stuck SIP's stage and a report's other severities are words, not the code's names."""
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, "museum", "Museum")
    interrupted_sip(ctx, "museum", "halfway-on-tape", stage="store:site-a (running)")
    bag = ctx.settings.ingest_dir / "museum" / "rejected" / "odd-report"
    bag.mkdir(parents=True)
    (bag / "report.json").write_text(
        json.dumps(
            {
                "bag": "odd-report",
                "problems": [
                    {"severity": "info", "rule": "r1", "message": "m1"},
                    {"severity": "bizarre", "rule": "r2", "message": "m2"},
                ],
            }
        )
    )
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    pages = {
        lang: client.get("/console/", headers={"Accept-Language": lang}).text
        for lang in ("en", "nl", "fr")
    }
    stuck = {lang: text_of(section(page, "stuck")) for lang, page in pages.items()}
    assert "writing to tape at site-a" in stuck["en"]
    assert "wegschrijven naar tape op locatie site-a" in stuck["nl"]
    assert "écriture sur bande sur le site site-a" in stuck["fr"]
    assert "store:site-a" not in stuck["nl"] and "(interrupted)" not in stuck["en"]
    rejected = {lang: text_of(section(page, "rejected")) for lang, page in pages.items()}
    assert "information" in rejected["en"] and "informatie" in rejected["nl"]
    assert "bizarre" in rejected["nl"]  # unknown to us: shown as the report says it


def test_long_lists_are_cut_short_and_their_counts_are_whole(
    ctx: Context, client: TestClient, people: People
) -> None:
    """Past LISTED rows the page lists LISTED and says how many there are, for each part."""
    from preservation.attention import LISTED

    many = LISTED + 3
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, "museum", "Museum")
    aip_id = add_aip(ctx, "museum", title="Old minutes")
    for n in range(many):
        interrupted_sip(ctx, "museum", f"halfway-{n}")
    with session_scope(ctx.sessions) as s:
        for n in range(many):
            s.add(
                Disposal(
                    tenant_id="museum",
                    aip_id=aip_id,
                    reason=f"duplicate {n}",
                    requested_by="u-1",
                    requested_by_label="Ann",
                )
            )
            s.add(Audit(tenant_id="museum", requested_by_label="Ann", state=AuditState.QUEUED))
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    page = client.get("/console/").text
    stuck, disposals, audits = (section(page, h) for h in ("stuck", "disposals", "audits"))
    assert f'<span class="badge warn">{many}</span>' in stuck
    assert stuck.count("halfway-") == LISTED
    assert f"The {LISTED} oldest of {many} stuck SIPs are shown." in stuck
    assert f'<span class="badge warn">{many}</span>' in disposals
    assert disposals.count("duplicate ") == LISTED
    assert f"The {LISTED} newest of {many} waiting disposals are shown." in disposals
    assert audits.count('<li class="audit"') == LISTED
    assert f"The {LISTED} newest of {many} audits in progress are shown." in audits


def test_the_dashboard_speaks_dutch_and_french(
    ctx: Context, client: TestClient, people: People
) -> None:
    people.add("cora@museum.example", "curator", "museum")
    people.log_in(client, "cora@museum.example")
    nl = client.get("/console/", headers={"Accept-Language": "nl-BE,nl;q=0.9"}).text
    assert '<h2 id="attention">Vraagt aandacht</h2>' in nl
    assert '<h2 id="sites">Locaties</h2>' in nl
    assert "Mislukte kopieën" in nl
    fr = client.get("/console/", headers={"Accept-Language": "fr-BE"}).text
    assert "<h1>Tableau de bord</h1>" in fr
    assert '<h2 id="attention">Demande une intervention</h2>' in fr
    assert "Copies en échec" in fr
