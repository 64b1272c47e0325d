"""The Content-Security-Policy as Chromium enforces it: no console page needs what it refuses.

Every browser test runs under the policy (``open_page`` fails a test on any
refusal), but each only goes where its story takes it. This one walks every
kind of page, htmx fragments included, and first proves that a refusal would
be heard at all: a policy that is never sent, or a listener that hears
nothing, would pass every test.
"""

from __future__ import annotations

from typing import Any

from tests.console.browser.conftest import (
    ANN,
    OpenPage,
    Site,
    csp_violations,
    log_in,
)


def visit(page: Any, path: str) -> None:
    """``path``, answered 200 with the policy in its headers."""
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "style-src 'self'" in policy, (path, policy)


def test_a_refusal_would_be_heard(open_page: OpenPage) -> None:
    page = open_page()
    visit(page, "/console/login")
    refused = csp_violations(page)
    # What a template with a <script> or <style> block or a style="" attribute would do.
    page.evaluate(
        """() => {
             const script = document.createElement('script');
             script.textContent = 'window.inline = true';
             document.head.append(script);
             const style = document.createElement('style');
             style.textContent = 'body { outline: 1px solid red }';
             document.head.append(style);
             document.body.insertAdjacentHTML('beforeend', '<p style="color: red">x</p>');
           }"""
    )
    expected = ("script-src-elem", "style-src-elem", "style-src-attr")
    for _ in range(100):  # waiting on the page, so that its reports are heard
        events = [r for r in refused if r.startswith("event")]
        if all(any(f"{d} refused inline" in r for r in events) for d in expected):
            break
        page.wait_for_timeout(50)
    else:
        raise AssertionError(f"not every refusal was heard: {refused}")
    assert page.evaluate("window.inline === undefined")
    messages = [r for r in refused if r.startswith("console")]
    assert any("script-src" in r for r in messages) and any("style-src" in r for r in messages)
    refused.clear()  # heard, as they should be: not the console's doing


def test_no_page_needs_anything_the_policy_refuses(open_page: OpenPage, site: Site) -> None:
    harbour = site.holdings["harbour"]
    page = open_page()
    visit(page, "/console/login")
    log_in(page, ANN)

    visit(page, "/console/")
    page.locator("#coverage-slot:not([hx-get])").wait_for()  # the htmx fragment is in

    visit(page, "/console/search")
    page.fill("#q", "harbour")
    page.click("form[role=search] button[type=submit]")  # htmx swaps the results in
    page.wait_for_url("**/console/search?*q=harbour*")
    page.locator(f"#results a[href='/console/aips/{harbour.aip_id}']").wait_for()

    for path in (
        f"/console/aips/{harbour.aip_id}",
        f"/console/aips/{harbour.aip_id}/metadata",
        f"/console/migrations/new?aip={harbour.aip_id}",
        "/console/migrations",
        "/console/formats",
        "/console/dips",
        "/console/admin",
        "/console/dashboard/coverage",
    ):
        visit(page, path)
    page.wait_for_load_state("networkidle")  # the last page's requests, if any, are in

    refused = csp_violations(page)
    assert refused == [], "\n".join(refused)
