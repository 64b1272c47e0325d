"""The search page: the API's search as a form, paged by cursor, with or without htmx."""

from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from preservation.console.pages.search import PER_PAGE
from preservation.context import Context
from tests.console.conftest import People, add_aip, ago


def titles(page: str) -> list[str]:
    """The results' titles, in order."""
    return [
        htmllib.unescape(t)
        for t in re.findall(r'<td><a href="/console/aips/[0-9a-f-]+">([^<]*)</a>', page)
    ]


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)"[^>]*rel="{rel}"', page)
    return htmllib.unescape(found.group(1)) if found else None


def logged_in(client: TestClient, people: People, role: str = "consumer") -> None:
    people.add(f"{role}@museum.example", role, "museum")
    people.log_in(client, f"{role}@museum.example")


def test_not_logged_in_goes_to_the_login_page(client: TestClient) -> None:
    r = client.get("/console/search?q=maps", follow_redirects=False)
    assert r.status_code == 303
    # The search is one value of the login link, so all of it comes back.
    assert r.headers["location"] == "/console/login?next=/console/search%3Fq%3Dmaps"


def test_consumer_and_curator_search_by_words(
    ctx: Context, client: TestClient, people: People
) -> None:
    add_aip(ctx, "museum", title="Maps of Liège", words="cartography")
    add_aip(ctx, "museum", title="Letters home", words="correspondence")
    for role in ("consumer", "curator"):
        client.cookies.clear()
        logged_in(client, people, role)
        r = client.get("/console/search", params={"q": "liege"})
        assert r.status_code == 200
        assert "<h1>Search</h1>" in r.text
        assert titles(r.text) == ["Maps of Liège"]
        assert 'value="liege"' in r.text  # the form shows what was asked
    r = client.get("/console/search", params={"q": "nothing-like-this"})
    assert r.status_code == 200 and titles(r.text) == []
    assert "No AIP matches this search." in r.text


def test_search_by_puid_dates_and_external_identifier(
    ctx: Context, client: TestClient, people: People
) -> None:
    old = add_aip(
        ctx,
        "museum",
        title="Old scan",
        puids=("fmt/353",),
        created_at=ago(400),
        external_identifier="INV-1921-001",
    )
    add_aip(ctx, "museum", title="New text", puids=("fmt/101",), created_at=ago(2))
    add_aip(ctx, "museum", title="New scan", puids=("fmt/353", "fmt/43"), created_at=ago(1))
    logged_in(client, people)

    r = client.get("/console/search", params={"puid": "fmt/353"})
    assert titles(r.text) == ["New scan", "Old scan"]
    # Each result names the formats it holds.
    row = r.text[r.text.index("New scan") :]
    row = row[: row.index("</tr>")]
    assert "fmt/353" in row and "fmt/43" in row

    day = (ago(2) - timedelta(days=1)).date().isoformat()
    r = client.get("/console/search", params={"from": day})
    assert titles(r.text) == ["New scan", "New text"]
    r = client.get("/console/search", params={"to": (ago(100)).date().isoformat()})
    assert titles(r.text) == ["Old scan"]
    # The end day is included whole.
    r = client.get("/console/search", params={"to": ago(2).date().isoformat(), "puid": "fmt/101"})
    assert titles(r.text) == ["New text"]

    r = client.get("/console/search", params={"external_identifier": "INV-1921-001"})
    assert titles(r.text) == ["Old scan"]
    assert f"/console/aips/{old}" in r.text and "INV-1921-001" in r.text


def test_bad_input_is_said_on_the_page_with_a_400(client: TestClient, people: People) -> None:
    logged_in(client, people)
    r = client.get("/console/search", params={"from": "2024-02-31"})
    assert r.status_code == 400
    assert "2024-02-31 is not a date" in r.text
    assert "<h1>Search</h1>" in r.text and 'value="2024-02-31"' in r.text
    r = client.get("/console/search", params={"puid": "TIFF"})
    assert r.status_code == 400 and "TIFF is not a PRONOM id" in r.text
    r = client.get("/console/search", params={"from": "2024-05-01", "to": "2024-04-01"})
    assert r.status_code == 400 and "The end date is before the start date." in r.text
    # A cursor that is not ours: the first page again, said so, not an error.
    r = client.get("/console/search", params={"cursor": "not-a-cursor"})
    assert r.status_code == 200 and "can no longer be found" in r.text
    # With htmx the message replaces the results (htmx does not swap a 400).
    r = client.get("/console/search", params={"from": "31/12/2024"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text
    assert 'role="alert"' in r.text and "31/12/2024 is not a date" in r.text


def test_results_are_paged_forward_and_back(
    ctx: Context, client: TestClient, people: People
) -> None:
    total = PER_PAGE * 2 + 3
    for i in range(total):
        add_aip(ctx, "museum", title=f"Register {i:03d}", created_at=ago(total - i))
    logged_in(client, people)
    first = client.get("/console/search", params={"q": "register"}).text
    assert titles(first) == [
        f"Register {i:03d}" for i in range(total - 1, total - 1 - PER_PAGE, -1)
    ]
    assert link(first, "prev") is None
    second_url = link(first, "next")
    assert second_url and "cursor=" in second_url and "q=register" in second_url
    second = client.get(second_url).text
    assert titles(second)[0] == f"Register {total - 1 - PER_PAGE:03d}"
    third_url = link(second, "next")
    assert third_url
    third = client.get(third_url).text
    assert titles(third) == ["Register 002", "Register 001", "Register 000"]
    assert link(third, "next") is None
    back_url = link(third, "prev")
    assert back_url
    assert titles(client.get(back_url).text) == titles(second)
    prev_of_second = link(second, "prev")
    assert prev_of_second
    assert titles(client.get(prev_of_second).text) == titles(first)
    # htmx: the same URL gives the results alone, for the swap, with links htmx follows.
    r = client.get(second_url, headers={"HX-Request": "true"})
    assert r.text.lstrip().startswith('<section id="results"')
    assert "<html" not in r.text and titles(r.text) == titles(second)
    assert 'hx-push-url="true"' in r.text
    # A back-button restore asks for the whole page.
    restored = client.get(
        second_url, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restored.text


def test_a_tenant_finds_only_its_own_and_an_admin_finds_all(
    ctx: Context, client: TestClient, people: People
) -> None:
    add_aip(ctx, "museum", title="Shared word museum", external_identifier="SAME-1")
    add_aip(ctx, "library", title="Shared word library", external_identifier="SAME-1")
    people.add("root@archive.example", "admin", None)
    logged_in(client, people)
    for params in ({"q": "shared"}, {"external_identifier": "SAME-1"}, {"puid": "fmt/353"}, {}):
        assert titles(client.get("/console/search", params=params).text) == [
            "Shared word museum"
        ], params
    client.cookies.clear()
    people.log_in(client, "root@archive.example")
    found = titles(client.get("/console/search", params={"q": "shared"}).text)
    assert sorted(found) == ["Shared word library", "Shared word museum"]


def test_the_search_page_speaks_dutch_and_french(client: TestClient, people: People) -> None:
    logged_in(client, people)
    nl = client.get("/console/search", headers={"Accept-Language": "nl"}).text
    assert "<h1>Zoeken</h1>" in nl and ">Resultaten</h2>" in nl
    fr = client.get("/console/search", headers={"Accept-Language": "fr"}).text
    assert "<h1>Recherche</h1>" in fr and ">Résultats</h2>" in fr
    bad = client.get(
        "/console/search", params={"from": "gisteren"}, headers={"Accept-Language": "nl"}
    )
    assert bad.status_code == 400 and "gisteren is geen datum" in bad.text
