"""The AIP page: what it shows of a catalogue-only AIP and of a real ingest, and its actions.

Everything goes through the browser's path: the login form, the session
cookie, the CSRF field of each form. The actions are the API's service
functions, so what is asserted here is the page's side: the right buttons for
the role, the refusal shown where it happened, and the state after the
redirect.
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from preservation import lookup, retention, versions
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, AIPState, AIPVersion, Disposal, File, PremisEvent
from preservation.context import Context
from preservation.evidence.journal import cut_segments
from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki
from preservation.evidence.stamping import stamp_waiting
from preservation.evidence.tsa import HttpTimeStampAuthority
from tests.api.test_dips import ingested
from tests.conftest import require_program
from tests.console.conftest import People, add_aip, ago
from tests.polling import wait_for


def form_actions(html: str) -> set[str]:
    return set(re.findall(r'<form method="post" action="([^"]+)"', html))


def test_a_catalogue_only_aip_shows_its_files_history_and_retention(
    client: TestClient, ctx: Context, people: People, tmp_path: Path
) -> None:
    aip = add_aip(
        ctx,
        "museum",
        title="Ledger of 1921",
        names=["data/notes/a.txt", "data/img/b.png"],
        puids=["x-fmt/111", "fmt/11"],
        external_identifier="INV-1921",
    )
    people.add("carol@museum.example", "consumer", "museum")
    csrf = people.log_in(client, "carol@museum.example")

    r = client.get(f"/console/aips/{aip}")
    assert r.status_code == 200, r.text[:500]
    page = r.text
    assert "<h1>Ledger of 1921</h1>" in page and "INV-1921" in page
    assert "data/notes/a.txt" in page and "data/img/b.png" in page
    assert "x-fmt/111" in page and "fmt/11" in page
    assert "Version 1" in page and "ingest" in page
    # The history: the fixture's ingestion event, its chain hash, not yet in a segment.
    with session_scope(ctx.sessions) as s:
        event = s.scalars(select(PremisEvent).where(PremisEvent.aip_id == aip)).one()
        seq, digest = event.seq, event.hash
    assert "ingestion" in page and digest[:12] in page
    assert "not yet in a journal segment" in page
    assert "chained only: no time-stamping authority is configured" in page
    assert "permanently" in page  # no retention date
    # A consumer may ask for a DIP and nothing else.
    actions = form_actions(page)
    assert f"/console/aips/{aip}/dip" in actions
    assert not {a for a in actions if a.endswith(("/retention", "/hold", "/disposal"))}
    assert "Edit the descriptive metadata" not in page and "Preview a migration" not in page
    # And a consumer's POST to a curator's action is refused, even with the token.
    r = client.post(
        f"/console/aips/{aip}/hold",
        data={"csrf": csrf, "reason": "mine"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert client.get(f"/console/aips/{aip}/metadata").status_code == 403
    assert "on hold" not in client.get(f"/console/aips/{aip}").text

    # Once the journal is cut, the event's segment is named, waiting for the TSA.
    with session_scope(ctx.sessions) as s:
        cut_segments(s, tenant_id="museum")
    page = client.get(f"/console/aips/{aip}").text
    assert "waiting for the TSA" in page and f"segment 1–{seq}" in page
    assert "Time-stamped up to" not in page

    # Stamped by a real (loopback) TSA: the event says so, and the chain's head too.
    require_program("openssl")
    with LoopbackTsa(make_pki(tmp_path / "tsa")) as tsa:
        with HttpTimeStampAuthority(tsa.url) as stamper:
            assert stamp_waiting(ctx, stamper).stamped == 1
    page = client.get(f"/console/aips/{aip}").text
    assert "waiting for the TSA" not in page and '<span class="badge ok">stamped</span>' in page
    assert f"Time-stamped up to event {seq} on" in page


def test_another_tenants_aip_is_the_404_page(
    client: TestClient, ctx: Context, people: People
) -> None:
    theirs = add_aip(ctx, "library", title="Their secret ledger")
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "ann@museum.example")
    nobody = "00000000-0000-4000-8000-000000000000"
    pages = [client.get(f"/console/aips/{aip}") for aip in (theirs, nobody)]
    assert [r.status_code for r in pages] == [404, 404]
    assert "Their secret ledger" not in pages[0].text
    assert pages[0].text.replace(theirs, nobody) == pages[1].text
    for path in ("retention", "hold", "disposal", "dip", "metadata"):
        r = client.post(
            f"/console/aips/{theirs}/{path}",
            data={"csrf": csrf, "reason": "x", "until": "2020-01-01"},
            follow_redirects=False,
        )
        assert r.status_code == 404, (path, r.status_code)
    assert client.get(f"/console/aips/{theirs}/metadata").status_code == 404
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, theirs).retention_until is None


def test_a_disposal_takes_two_curators(client: TestClient, ctx: Context, people: People) -> None:
    aip = add_aip(ctx, "museum", title="Old ledger", created_at=ago(400))
    people.add("alice@museum.example", "curator", "museum")
    people.add("bob@museum.example", "curator", "museum")
    csrf = people.log_in(client, "alice@museum.example")
    base = f"/console/aips/{aip}"

    page = client.get(base).text
    assert {f"{base}/retention", f"{base}/hold", f"{base}/disposal"} <= form_actions(page)
    assert "Edit the descriptive metadata" in page
    assert f"/console/migrations/new?aip={aip}" in page

    # Refused by the service: kept permanently, said on the AIP's page.
    r = client.post(f"{base}/disposal", data={"csrf": csrf, "reason": "expired"})
    assert (
        r.status_code == 409 and "no retention date" in r.text and "<h1>Old ledger</h1>" in r.text
    )

    r = client.post(
        f"{base}/retention", data={"csrf": csrf, "until": "2020-01-01"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"{base}?done=retention"
    page = client.get(r.headers["location"]).text
    assert "The retention is set: the AIP is kept until January 1, 2020." in page
    assert "may be disposed of" in page

    # A hold beats the date; lifted, the disposal may be asked for.
    r = client.post(f"{base}/hold", data={"csrf": csrf, "reason": "court case 42"})
    assert r.status_code == 200 and "court case 42" in r.text and "on hold" in r.text
    r = client.post(f"{base}/disposal", data={"csrf": csrf, "reason": "expired"})
    assert r.status_code == 409 and "legal hold" in r.text
    r = client.post(f"{base}/hold/lift", data={"csrf": csrf, "reason": "case closed"})
    assert r.status_code == 200 and "case closed" in r.text

    r = client.post(
        f"{base}/disposal",
        data={"csrf": csrf, "reason": "retention expired"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "waiting for approval" in page and "retention expired" in page
    [approve] = [a for a in form_actions(page) if a.endswith("/approve")]

    # The same curator may not approve: the four-eyes refusal is shown on the page.
    r = client.post(approve, data={"csrf": csrf})
    assert r.status_code == 403, r.status_code
    assert "four eyes" in r.text and "<h1>Old ledger</h1>" in r.text
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip).state is AIPState.ACTIVE

    client.cookies.clear()
    csrf = people.log_in(client, "bob@museum.example")
    r = client.post(approve, data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    page = client.get(r.headers["location"]).text
    assert "disposed of" in page and "bob@museum.example" in page
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip).state is AIPState.DISPOSED
    # A tombstone has no actions left.
    assert not [a for a in form_actions(page) if a.startswith(base)]


def test_a_real_ingest_and_a_new_description_as_version_2(
    client: TestClient, ctx: Context, people: People, tmp_path: Path
) -> None:
    aip = ingested(ctx, tmp_path)
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "ann@museum.example")

    page = client.get(f"/console/aips/{aip}").text
    assert "images/plate.png" in page and "notes/reading.txt" in page
    assert "fmt/11" in page and "Portable Network Graphics" in page  # PNG, identified
    assert "width" in page  # characterisation: the image's properties
    for site in ctx.settings.sites:
        assert f"<td>{site}</td>" in page
    assert "verified" in page
    assert page.count("being stored") == 0 and 'hx-trigger="every 2s"' not in page

    form = client.get(f"/console/aips/{aip}/metadata")
    assert form.status_code == 200
    assert 'id="dc-title"' in form.text and '<label for="dc-title">' in form.text
    # An element outside simple Dublin Core cannot be sent; an empty record is refused.
    r = client.post(f"/console/aips/{aip}/metadata", data={"csrf": csrf})
    assert r.status_code == 400 and "the record is empty" in r.text

    r = client.post(
        f"/console/aips/{aip}/metadata",
        data={
            "csrf": csrf,
            "title": "Ledger of the reading room",
            "subject": "ledgers\nreading rooms",
            "date": "1921",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"] == f"/console/aips/{aip}?done=metadata&version=2"

    def timeline() -> str:
        r = client.get(f"/console/aips/{aip}/versions", headers={"HX-Request": "true"})
        assert r.status_code == 200
        return r.text

    # Polled until version 2 is stored; then the fragment stops asking.
    wait_for(lambda: "being stored" not in timeline(), "version 2 stored", limit=180)
    assert "hx-trigger" not in timeline() and "Version 2" in timeline()
    with session_scope(ctx.sessions) as s:
        versions = s.scalars(select(AIPVersion).where(AIPVersion.aip_id == aip)).all()
        assert [(v.number, v.reason) for v in versions] == [(1, "ingest"), (2, "metadata")]
    # The record becomes the AIP's in the step after the commit (crash-safe, rerun on
    # resume), so the page may show the old title for a moment after the timeline settles.
    wait_for(
        lambda: "<h1>Ledger of the reading room</h1>" in client.get(f"/console/aips/{aip}").text,
        "the new record is the AIP's",
        limit=60,
    )
    page = client.get(f"/console/aips/{aip}").text
    assert "ledgers; reading rooms" in page and "Version 2" in page
    # The form now starts from the new record.
    form = client.get(f"/console/aips/{aip}/metadata").text
    assert "ledgers\nreading rooms</textarea>" in form


def test_the_pages_speak_dutch_and_french(client: TestClient, ctx: Context, people: People) -> None:
    aip = add_aip(ctx, "museum", title="Ledger", puids=["fmt/11"], names=["data/a.png"])
    people.add("ann@museum.example", "curator", "museum")
    people.log_in(client, "ann@museum.example")
    pages = (
        f"/console/aips/{aip}",
        f"/console/aips/{aip}/metadata",
        f"/console/migrations/new?aip={aip}",
        "/console/migrations",
        "/console/dips",
    )
    said = {
        "nl": ("Bewaring en blokkeringen", "Beschrijvende metadata", "Migratie starten"),
        "fr": ("Conservation et gels", "Métadonnées descriptives", "Lancer la migration"),
    }
    english = ("Retention and holds", "Save as a new version", "Start migration", "No DIP request")
    for lang, words in said.items():
        texts = [client.get(p, headers={"Accept-Language": lang}) for p in pages]
        assert [r.status_code for r in texts] == [200] * len(pages)
        whole = "".join(r.text for r in texts)
        assert all(w in whole for w in words), lang
        assert not [e for e in english if e in whole], lang


def test_recorded_values_and_refusals_are_said_in_the_viewers_language(
    client: TestClient, ctx: Context, people: People
) -> None:
    """Event types and outcomes, why an AIP is kept, a refusal: not the service's English alone."""
    aip = add_aip(ctx, "museum", title="Ledger", puids=["fmt/11", "fmt/11"])
    with session_scope(ctx.sessions) as s:
        ids = list(s.scalars(select(AIPVersion.id).where(AIPVersion.aip_id == aip)))
        s.execute(update(File).where(File.aip_version_id.in_(ids)).values(valid=False))
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "ann@museum.example")
    base = f"/console/aips/{aip}"

    nl = client.get(base, headers={"Accept-Language": "nl"}).text
    assert "<td>opname</td>" in nl and '<span class="badge ok">geslaagd</span>' in nl
    assert "<td>ingestion</td>" not in nl and ">success<" not in nl
    assert "2 misvormde bestanden" in nl
    # Kept permanently: said in Dutch, not as the API's "set one (PUT .../retention)".
    assert "het heeft geen bewaartermijn" in nl and "PUT" not in nl
    fr = client.get(base, headers={"Accept-Language": "fr"}).text
    assert "<td>versement</td>" in fr and ">réussi<" in fr and "2 fichiers mal formés" in fr
    assert "il n'a pas de date de conservation" in fr
    en = client.get(base).text
    assert "<td>ingestion</td>" in en and "2 malformed files" in en

    # A refusal: a lead in the viewer's language, the service's reason (naming the rule) after it.
    r = client.post(
        f"{base}/disposal",
        data={"csrf": csrf, "reason": "expired"},
        headers={"Accept-Language": "fr"},
    )
    assert r.status_code == 409
    said = html.unescape(r.text)
    assert "Rien n'a été modifié\xa0: " in said and "no retention date" in said

    # Decisions are events too: a hold is a "policy assignment", shown in words.
    client.post(f"{base}/hold", data={"csrf": csrf, "reason": "court case 42"})
    nl = client.get(base, headers={"Accept-Language": "nl"}).text
    assert "<td>toekenning van een beleidsregel</td>" in nl
    assert "er geldt een juridische blokkering" in nl


def test_a_forged_link_does_not_make_the_page_claim_what_did_not_happen(
    client: TestClient, ctx: Context, people: People
) -> None:
    """``?done=`` is anyone's to write: each notice is shown only when the AIP bears it out."""
    aip = add_aip(ctx, "museum", title="Ledger")
    people.add("ann@museum.example", "curator", "museum")
    csrf = people.log_in(client, "ann@museum.example")
    base = f"/console/aips/{aip}"
    claims = {
        "approved": "the AIP is disposed of",
        "hold": "The legal hold was placed.",
        "lifted": "The legal hold was lifted.",
        "disposal": "The disposal was requested",
        "metadata": "A new version with the new description",
    }
    for done, claim in claims.items():
        for query in (f"?done={done}", f"?done={done}&version=1", f"?done={done}&version=2"):
            page = client.get(base + query).text
            assert claim not in page and 'class="notice ok"' not in page, query
    with session_scope(ctx.sessions) as s:
        s.execute(update(AIP).where(AIP.id == aip).values(state=AIPState.DISPOSED))
    assert "The retention is set" not in client.get(f"{base}?done=retention").text
    with session_scope(ctx.sessions) as s:
        s.execute(update(AIP).where(AIP.id == aip).values(state=AIPState.ACTIVE))

    # The real thing still says so, in the viewer's language.
    assert "kept permanently" in client.get(f"{base}?done=retention").text
    r = client.post(f"{base}/hold", data={"csrf": csrf, "reason": "court case 42"})
    assert r.status_code == 200, r.text[:300]
    nl = client.get(f"{base}?done=hold", headers={"Accept-Language": "nl"}).text
    assert "De juridische blokkering is ingesteld." in nl
    assert "The legal hold was lifted." not in client.get(f"{base}?done=lifted").text


def test_the_actions_work_in_the_thread_pool_not_on_the_event_loop(
    client: TestClient, ctx: Context, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking query on the event loop stalls every request of the process: the actions'
    service calls, and the AIP page a refusal renders, must run where no loop is running."""
    on_loop: list[str] = []

    def spied(module: object, name: str) -> None:
        real = getattr(module, name)

        def call(*args: object, **kwargs: object) -> object:
            try:
                asyncio.get_running_loop()
                on_loop.append(name)
            except RuntimeError:
                pass
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    for name in ("set_retention", "place_hold", "lift_hold", "request_disposal"):
        spied(retention, name)
    spied(retention, "approve_disposal")
    spied(lookup, "aip_summary")
    spied(versions, "prepare_metadata_version")

    aip = add_aip(ctx, "museum", title="Old ledger", created_at=ago(400))
    people.add("alice@museum.example", "curator", "museum")
    people.add("bob@museum.example", "curator", "museum")
    csrf = people.log_in(client, "alice@museum.example")
    base = f"/console/aips/{aip}"
    post = {"follow_redirects": False}
    # Refused (kept permanently): the page is rendered again, off the loop too.
    assert client.post(f"{base}/disposal", data={"csrf": csrf, "reason": "x"}).status_code == 409
    r = client.post(f"{base}/retention", data={"csrf": csrf, "until": "2020-01-01"}, **post)
    assert r.status_code == 303
    assert (
        client.post(f"{base}/hold", data={"csrf": csrf, "reason": "case"}, **post).status_code
        == 303
    )
    r = client.post(f"{base}/hold/lift", data={"csrf": csrf, "reason": "closed"}, **post)
    assert r.status_code == 303
    r = client.post(f"{base}/disposal", data={"csrf": csrf, "reason": "expired"}, **post)
    assert r.status_code == 303
    r = client.post(f"{base}/metadata", data={"csrf": csrf}, **post)
    assert r.status_code == 400  # an empty record: refused, the form again
    # Without the CSRF field the form is still refused: reading it twice changed nothing.
    assert client.post(f"{base}/hold", data={"reason": "case"}, **post).status_code == 403
    with session_scope(ctx.sessions) as s:
        disposal = s.scalars(select(Disposal.id).where(Disposal.aip_id == aip)).one()
    client.cookies.clear()
    csrf = people.log_in(client, "bob@museum.example")
    r = client.post(f"{base}/disposals/{disposal}/approve", data={"csrf": csrf}, **post)
    assert r.status_code == 303, r.text[:300]
    assert on_loop == [], on_loop
