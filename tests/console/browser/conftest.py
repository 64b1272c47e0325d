"""The console in a real browser: one live server, real holdings, Debian's Chromium.

Everything here is built once per test session, because a real ingest and a
browser start are the expensive parts and every test only reads them or adds
its own requests (each test uses its own AIP where it changes one):

- ``site``: ``create_app`` served by uvicorn (in a thread of this process, on
  127.0.0.1 and a free port) over a private data root (embedded default:
  SQLite and emulated tape). DIP recalls and migrations run on the app's
  embedded pool as they do in production, with a recall window of half a
  second so a test waits seconds, not the default thirty.
- Holdings: real ingests of small bags (a PNG the default policy migrates with
  Pillow, the cheapest real migration; a text file; Dutch and French titles),
  a rejected bag, one AIP of the other tenant, and catalogue-only AIPs that
  make the search page look like an archive's.
- ``browser``: Chromium through Playwright's ``executable_path`` (``playwright
  install`` cannot download here). Missing, the tests skip on a developer's
  machine and FAIL under CI, like every other real service the tests need.

Every page runs under the console's Content-Security-Policy, as in production:
whatever the policy refuses, in any test, fails that test (``open_page``).

Helpers: :func:`log_in` (through the form, as a person does), :func:`check_axe`
(axe-core's serious and critical violations fail the test), :func:`shoot`
(a 1280×800 screenshot into ``docs/console/`` when ``PRESERVATION_SCREENSHOTS=1``)
and :func:`csp_violations` (what the policy refused so far).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import bagit
import pytest
from PIL import Image

from preservation import ingest
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, utcnow
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.users import add_user
from tests.api.conftest import add_aip, ago
from tests.conftest import IN_CI, ROOT, service_missing

CHROMIUM = Path(os.environ.get("PRESERVATION_TEST_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe.min.js"
SHOTS = ROOT / "docs" / "console"
PASSWORD = "a long enough passphrase"
LANGS = ("en", "nl", "fr")
VIEWPORT = {"width": 1280, "height": 800}

ANN = "ann@museum.example"  # curator
BOB = "bob@museum.example"  # the second curator (four eyes)
READER = "reader@museum.example"  # consumer
ADMIN = "admin@safe.example"  # every tenant
CARLA = "carla@library.example"  # the other tenant's curator


@dataclass
class Holding:
    """A real ingest: its AIP and the bag it came from (for comparing what comes back)."""

    aip_id: str
    title: str
    bag: Path
    tenant: str = "museum"

    def payload(self) -> dict[str, Path]:
        """The bag's payload files by their path under ``data/``."""
        data = self.bag / "data"
        return {p.relative_to(data).as_posix(): p for p in data.rglob("*") if p.is_file()}


@dataclass
class Site:
    base_url: str
    ctx: Context
    holdings: dict[str, Holding] = field(default_factory=dict)
    catalogue_only: dict[str, str] = field(default_factory=dict)  # title -> AIP id

    def url(self, path: str) -> str:
        return self.base_url + path


# -- holdings --------------------------------------------------------------------------


def make_bag(
    where: Path, name: str, title: str, *, colour: tuple[int, int, int], note: str
) -> Path:
    """A small real bag: a PNG (which the default policy migrates to TIFF) and a text file."""
    bag = where / name
    (bag / "images").mkdir(parents=True)
    (bag / "notes").mkdir()
    Image.new("RGB", (64, 48), colour).save(bag / "images" / "plate.png")
    (bag / "notes" / "reading.txt").write_text(note * 50, encoding="utf-8")
    bagit.make_bag(
        str(bag),
        {"Source-Organization": "Museum", "Title": title, "External-Identifier": name},
        checksums=["sha256"],
    )
    return bag


def _ingest(ctx: Context, bag: Path, title: str, tenant: str = "museum") -> Holding:
    result = ingest.run_ingest(ctx, bag, tenant=tenant)
    assert result.state == "committed", result
    assert result.aip_id
    return Holding(result.aip_id, title, bag, tenant)


def _rejected_bag(where: Path) -> Path:
    """A bag whose manifest no longer matches a file: ingest rejects it, with a report."""
    bag = make_bag(where, "damaged-transfer", "Damaged transfer", colour=(90, 90, 90), note="x\n")
    (bag / "data" / "notes" / "reading.txt").write_text("changed after bagging\n")
    return bag


#: Catalogue-only AIPs, so that search shows what an archive holds: (title, PUIDs, days ago).
DEMO_HOLDINGS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("Notulen van de gemeenteraad van Leuven, 1952", ("fmt/95", "fmt/95"), 900),
    ("Registres paroissiaux de Namur, 1780–1795", ("fmt/353", "fmt/353", "fmt/353"), 700),
    ("Glass plate negatives of the Antwerp docks", ("fmt/353", "fmt/43"), 650),
    ("Affiches de l'Exposition universelle de Bruxelles, 1958", ("fmt/43", "fmt/11"), 500),
    ("Kaarten van de Scheldepolders, 1830", ("fmt/353",), 420),
    ("Oral history interviews: Ghent textile workers", ("fmt/141", "fmt/134"), 300),
    ("Correspondance du Musée royal, 1911", ("fmt/95", "fmt/40"), 200),
    ("Museum annual report 2019", ("fmt/276",), 120),
    ("Bouwtekeningen stadhuis Brugge", ("fmt/353", "fmt/12"), 60),
    ("Exhibition photographs, spring 2024", ("fmt/43", "fmt/43", "fmt/645"), 10),
)


def _seed(ctx: Context, work: Path) -> Site:
    with session_scope(ctx.sessions) as s:
        service.ensure_tenant(s, "museum", "Royal Museum of Art and History")
        service.ensure_tenant(s, "library", "Royal Library")
        for email, role, tenant in (
            (ANN, "curator", "museum"),
            (BOB, "curator", "museum"),
            (READER, "consumer", "museum"),
            (ADMIN, "admin", None),
            (CARLA, "curator", "library"),
        ):
            add_user(s, email=email, role=role, password=PASSWORD, tenant_id=tenant)

    site = Site(base_url="", ctx=ctx)
    bags = work / "bags"
    for key, title, colour, note in (
        ("harbour", "Ledger of the Brussels harbour, 1921", (10, 120, 200), "Read, 1921.\n"),
        ("brieven", "Brieven van de burgemeester, 1914–1918", (160, 80, 40), "Geachte heer,\n"),
        ("palais", "Plans du Palais de justice de Bruxelles", (40, 160, 90), "Échelle 1:200.\n"),
        ("duplicates", "Duplicate scans, 2003 (to be disposed of)", (200, 200, 60), "Duplicate.\n"),
    ):  # fmt: skip
        site.holdings[key] = _ingest(
            ctx, make_bag(bags, key, title, colour=colour, note=note), title
        )
    foreign_title = "Incunabula of the Royal Library"
    site.holdings["foreign"] = _ingest(
        ctx,
        make_bag(bags, "incunabula", foreign_title, colour=(0, 0, 0), note="Folio 1r.\n"),
        foreign_title,
        tenant="library",
    )
    rejected = ingest.run_ingest(ctx, _rejected_bag(bags), tenant="museum")
    assert rejected.state == "rejected", rejected

    # The disposal's AIP is past its retention date (a disposal may only be asked for then).
    with session_scope(ctx.sessions) as s:
        aip = s.get_one(AIP, site.holdings["duplicates"].aip_id)
        aip.retention_until = utcnow() - timedelta(days=1)

    for title, puids, days in DEMO_HOLDINGS:
        site.catalogue_only[title] = add_aip(
            ctx, "museum", title=title, puids=puids, created_at=ago(days),
            external_identifier=f"INV-{abs(hash(title)) % 100000:05d}",
        )  # fmt: skip
    return site


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, virus_scanner: str | None) -> Iterator[Site]:
    """The console served over HTTP, on real holdings (built once for the whole suite)."""
    import uvicorn

    from preservation.api import create_app

    work = tmp_path_factory.mktemp("console-browser")
    settings = Settings(
        home=work / "var",
        quiescent_seconds=0.2,
        site_wait_seconds=5,
        tape_idle_unmount_seconds=0.5,
        recall_window_seconds=0.5,
    )
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        site = _seed(ctx, work)
        port = free_port()
        config = uvicorn.Config(
            create_app(ctx=ctx), host="127.0.0.1", port=port, log_level="warning",
            lifespan="on", access_log=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="console-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console's server did not start")
            time.sleep(0.02)
        site.base_url = f"http://127.0.0.1:{port}"
        try:
            yield site
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        ctx.close()


# -- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright; missing, a skip locally and a failure in CI."""
    if not CHROMIUM.exists():
        service_missing(f"Chromium at {CHROMIUM}", FileNotFoundError(str(CHROMIUM)))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        except Exception as err:  # noqa: BLE001 - a browser that will not start is "missing"
            if IN_CI:
                raise
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {err}")
        try:
            yield b
        finally:
            b.close()


OpenPage = Callable[..., Any]


#: Each open context's policy violations, by ``id(context)`` (see :func:`csp_violations`).
_VIOLATIONS: dict[int, list[str]] = {}

#: In every document, before its own scripts: each violation the policy reports goes to the
#: test (an exposed binding outlives the navigation, a variable in the page would not).
_CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', e => {
  window.__cspViolation(e.violatedDirective + ' refused ' + (e.blockedURI || 'inline')
    + ' at ' + (e.sourceFile || document.URL) + ':' + e.lineNumber
    + (e.sample ? ' (' + e.sample.slice(0, 80) + ')' : ''));
}, true);
"""


def _watch_csp(context: Any) -> list[str]:
    """Every policy violation in ``context`` from now on, as a growing list.

    Heard twice over: the ``securitypolicyviolation`` events the documents fire
    (listened for by an init script, which Playwright adds whatever the policy
    says) and Chromium's "Refused to ..." console messages.
    """
    seen: list[str] = []

    def on_event(source: dict[str, Any], text: str) -> None:
        seen.append(f"event on {source['page'].url}: {text}")

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            where = message.page.url if message.page is not None else "?"
            seen.append(f"console on {where}: {message.text}")

    context.expose_binding("__cspViolation", on_event)
    context.add_init_script(_CSP_LISTENER)
    context.on("console", on_console)
    return seen


#: A task later in the page, every violation event queued before it has fired, and its report
#: (a message to the test, as this answer is) is ahead of the answer on the same connection.
_SETTLE = "() => new Promise(resolve => setTimeout(resolve, 0))"


def csp_violations(page: Any) -> list[str]:
    """What the policy has refused in ``page``'s context, up to now (the test may clear it).

    The sync API hears of events only while the test waits on the browser, so
    this waits on the page once first; ``time.sleep`` would hear nothing.
    """
    page.evaluate(_SETTLE)
    return _VIOLATIONS[id(page.context)]


@pytest.fixture
def open_page(browser: Any, site: Site) -> Iterator[OpenPage]:
    """``open_page(user=None, lang="en")``: a fresh browser context's page, logged in if asked.

    Each call is a new context (its own cookies), so two curators can work
    side by side in one test. The Content-Security-Policy is in force, as in
    production (:func:`check_axe` runs under it), and anything it refuses in
    any test fails that test when the test is over: the console has no inline
    script or style, and this is where that is kept true.
    """
    contexts: list[Any] = []

    def make(user: str | None = None, lang: str = "en", **options: Any) -> Any:
        context = browser.new_context(
            viewport=VIEWPORT,
            locale={"en": "en-GB", "nl": "nl-BE", "fr": "fr-BE"}.get(lang, lang),
            base_url=site.base_url,
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        _VIOLATIONS[id(context)] = _watch_csp(context)
        page = context.new_page()
        if user is not None:
            log_in(page, user)
        return page

    yield make
    refused = []
    for context in contexts:
        for page in context.pages:
            try:
                page.evaluate(_SETTLE)
            except Exception:  # noqa: BLE001 - a page gone or crashed has nothing more to say
                pass
        refused += _VIOLATIONS.pop(id(context))
        context.close()
    if refused:
        pytest.fail(
            "the Content-Security-Policy refused:\n" + "\n".join(f"- {r}" for r in refused),
            pytrace=False,
        )


def log_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Through the login form, as a person does; ends on the dashboard."""
    page.goto("/console/login")
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form[action='/console/login'] button[type=submit]")
    assert "/console/login" not in page.url, f"login as {email} failed: {page.url}"


# -- checks ----------------------------------------------------------------------------


@cache
def _axe_run() -> str:
    """axe-core's source and the call that runs it, as one script for ``page.evaluate``."""
    return AXE.read_text(encoding="utf-8") + "\n;axe.run(document, {resultTypes: ['violations']})"


def check_axe(page: Any, name: str) -> None:
    """axe-core on the page as it stands: any serious or critical violation fails the test.

    Evaluated through the DevTools protocol rather than added as a ``<script>``
    tag, so it runs under the Content-Security-Policy too (which refuses an
    inline script tag, as it should).
    """
    result = page.evaluate(_axe_run())
    bad = [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
    if bad:
        lines = [f"axe-core on {name} ({page.url}): {len(bad)} serious/critical violation(s)"]
        for v in bad:
            lines.append(f"- [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
            for node in v["nodes"][:5]:
                lines.append(f"    at {json.dumps(node['target'])}: {node['html'][:200]}")
                if node.get("failureSummary"):
                    lines.append("      " + node["failureSummary"].replace("\n", "\n      "))
        pytest.fail("\n".join(lines), pytrace=False)


def shoot(page: Any, name: str) -> None:
    """A 1280×800 screenshot to ``docs/console/<name>.png``, only when asked for."""
    if os.environ.get("PRESERVATION_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def html_lang(page: Any) -> str:
    return str(page.evaluate("document.documentElement.lang"))


def switch_language(page: Any, code: str) -> None:
    """Through the header's language links, as a person does; the page comes back in it."""
    with page.expect_navigation():
        page.click(f"ul.languages a[hreflang='{code}']")
    assert html_lang(page) == code, (code, html_lang(page), page.url)


def wait_until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {limit} s")
        time.sleep(0.1)


def tr(lang: str, msgid: str, *, cognate: bool = False) -> str:
    """``msgid`` as the console shows it in ``lang``; in nl and fr it must really be translated.

    ``cognate``: the translation may be the English word itself (French
    "Formats", "Migrations"), but the language's catalogue must still hold it.
    """
    from preservation.console.i18n import translations

    catalogue = translations(lang)
    text = catalogue.gettext(msgid)
    if lang != "en":
        if cognate:
            assert msgid in getattr(catalogue, "_catalog", {}), f"{msgid!r} is not in {lang}"
        else:
            assert text != msgid, f"{msgid!r} has no {lang} translation"
    return text
