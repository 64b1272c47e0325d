"""Every string of the console in Dutch and French, and no English left on a page.

The message ids are found the way ``pybabel`` finds them, with the method map
of ``babel.cfg`` itself (Python sources, and Jinja templates with
``jinja2.ext.i18n``), so this test and the catalogue template cannot disagree
about what a string is. Each must have a translation in every ``.po`` of
``locale/nl/`` and ``locale/fr/`` taken together (they are merged at run
time), not empty and not fuzzy, with the same ``%(name)s`` placeholders as the
English. Then every console page a GET reaches is rendered for an admin in
both languages, those with an id too (an AIP with its history, a disposal
request, a migration, a DIP, an audit, seeded for the purpose), and must not
show an English message id whose translation differs: that catches a
catalogue that is missing or not loaded. Text marked as in another language
(``lang="en"``: an event's recorded detail, a service's message) or
``translate="no"`` is data, not interface, and is left out.

A string never wrapped in gettext cannot be caught that way, so the values the
code records and the pages name (PREMIS event types and outcomes, states,
migration modes and steps) are checked too: each has a label in every
language, a label the same as the English only for a true cognate listed
here, and no page shows the bare English value as a piece of text of its own
(a cell, a badge, a part between "·").

Keeping the catalogues up to date, from the repository's root::

    # the template of every string, for translators and tools
    pybabel extract -F babel.cfg -o preservation/console/locale/console.pot .
    # a new part of the console: start its catalogue in each language from the
    # template, then delete the entries that belong to other parts
    pybabel init -i preservation/console/locale/console.pot -l nl \\
        -o preservation/console/locale/nl/<part>.po

The catalogues are split by part (``common.po``, ``admin.po``, ...), so
``pybabel update`` on one of them would pull every part's strings into it;
instead, run this test: it names each missing string with the file it comes
from, and the string goes into that part's ``.po`` by hand. Message ids are
the English text, so changing the English is changing the id: the
translations must follow.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from preservation.audit.runs import start_audit
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP
from preservation.console import PREFIX, i18n, pages
from preservation.console.i18n import LOCALE_DIR
from preservation.console.pages import aip as aip_page
from preservation.console.pages import migrations as migrations_page
from preservation.context import Context
from preservation.metadata.model import EVENT_OUTCOMES, EVENT_TYPES
from preservation.migrate import service as migrations
from preservation.migrate.policy import MODES
from preservation.retention import Actor, request_disposal
from tests.api.test_isolation import _ready_dip
from tests.console.conftest import People, add_aip

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("nl", "fr")
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc]")
#: Shorter ids ("OK", "Id") turn up inside other words and data; they are checked in the .po only.
MIN_LENGTH = 4
#: Routes with an id that are not pages: the language switch, a zip.
NOT_PAGES = frozenset({f"{PREFIX}/lang/{{code}}", f"{PREFIX}/dips/{{dip_id}}/download"})
#: Pages that need a query to be more than a 400: what they are asked for.
QUERIES = {f"{PREFIX}/migrations/new": "puid=fmt/11"}
#: Recorded values whose label may be the English word itself: real cognates, nothing else.
#: A value missing here and "translated" as itself is English on the page, and fails.
SAME_IN = {
    "nl": frozenset(),
    "fr": frozenset(
        {
            "capture",
            "compression",
            "extraction",
            "migration",
            "modification",
            "validation",
            "original",
        }
    ),
}


def migration_steps() -> set[str]:
    """The steps the migration runner records on an item, read from its source."""
    source = (ROOT / "preservation" / "migrate" / "run.py").read_text(encoding="utf-8")
    found = set(re.findall(r'\bstep="([a-z-]+)"', source))
    found |= set(re.findall(r'item\.step = "[a-z]+", "([a-z-]+)"', source))
    assert len(found) >= 4, found
    return found


def vocabularies() -> dict[str, tuple[set[str], dict[str, str]]]:
    """Per kind: the values the code records, and the console's labels for them (English)."""
    return {
        "event type": (set(EVENT_TYPES), aip_page.event_type_labels()),
        # A disposal asked for is a deaccession whose outcome is still "pending".
        "event outcome": (set(EVENT_OUTCOMES) | {"pending"}, aip_page.outcome_labels()),
        "migration mode": (set(MODES), migrations_page.mode_labels()),
        "migration step": (migration_steps(), migrations_page.step_labels()),
        "state": (set(aip_page.state_labels()), aip_page.state_labels()),
    }


def labelled(lang: str) -> dict[str, str]:
    """Every recorded value with its label in ``lang``."""
    with i18n.using(lang):
        return {
            value: label
            for _values, labels in vocabularies().values()
            for value, label in labels.items()
        }


def extracted() -> dict[str, set[str]]:
    """Every message id in the console's sources, with the files it comes from."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[str, set[str]] = defaultdict(set)
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found[msgid].add(f"{filename}:{lineno}")
    return dict(found)


def catalogue(lang: str) -> dict[str, list[tuple[str, Message]]]:
    """Each message id of one language with every (file, entry) that translates it."""
    entries: dict[str, list[tuple[str, Message]]] = defaultdict(list)
    for po in sorted((LOCALE_DIR / lang).glob("*.po")):
        with po.open("rb") as fh:
            for message in read_po(fh, locale=lang):
                if not message.id:
                    continue
                for msgid in message.id if isinstance(message.id, tuple) else (message.id,):
                    entries[msgid].append((po.name, message))
    return dict(entries)


def translated(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple) else [message.string]


@pytest.fixture(scope="module")
def sources() -> dict[str, set[str]]:
    found = extracted()
    assert len(found) > 50, "extraction found almost nothing: is babel.cfg's map still right?"
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_string_has_a_translation(sources: dict[str, set[str]], lang: str) -> None:
    entries = catalogue(lang)
    problems: dict[str, list[str]] = defaultdict(list)
    for msgid, where in sorted(sources.items()):
        origin = ", ".join(sorted({w.rsplit(":", 1)[0] for w in where}))
        found = entries.get(msgid)
        if not found:
            problems[origin].append(f"missing: {msgid!r}")
            continue
        for po, message in found:
            if message.fuzzy:
                problems[origin].append(f"fuzzy in {po}: {msgid!r}")
            texts = translated(message)
            if not all(t.strip() for t in texts):
                problems[origin].append(f"empty in {po}: {msgid!r}")
                continue
            wanted = set(PLACEHOLDER.findall(msgid))
            for text in texts:
                if set(PLACEHOLDER.findall(text)) != wanted:
                    problems[origin].append(f"placeholders differ in {po}: {msgid!r} -> {text!r}")
    report = "\n".join(
        f"{origin}:\n  " + "\n  ".join(items) for origin, items in sorted(problems.items())
    )
    assert not problems, f"{lang}: strings without a proper translation, by source\n{report}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_string_in_two_catalogues_is_translated_the_same(lang: str) -> None:
    """The merged catalogue keeps one of them, by file name: both must say the same."""
    differing = {
        msgid: {po: translated(m) for po, m in found}
        for msgid, found in catalogue(lang).items()
        if len({tuple(translated(m)) for _po, m in found}) > 1
    }
    assert not differing, f"{lang}: translated differently in different files: {differing}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_recorded_value_has_a_label_in_each_language(lang: str) -> None:
    english = {kind: labels for kind, (_values, labels) in vocabularies().items()}
    with i18n.using(lang):
        spoken = {kind: labels for kind, (_values, labels) in vocabularies().items()}
    problems = []
    for kind, (values, _labels) in vocabularies().items():
        for value in sorted(values):
            if value not in english[kind]:
                problems.append(f"{kind} {value!r}: no label")
                continue
            said = spoken[kind][value]
            if said in (value, english[kind][value]) and value not in SAME_IN[lang]:
                problems.append(f"{kind} {value!r}: shown as {said!r}, the English")
    assert not problems, f"{lang}: recorded values without a label of their own:\n" + "\n".join(
        problems
    )


class _Text(HTMLParser):
    """What a person sees or hears of a page: text, and the labels of things.

    ``pieces`` are the text nodes one by one (and split at "·"), to find a bare
    value shown as a cell or badge of its own. An element in a language of its
    own (``lang`` below ``<html>``) or marked ``translate="no"`` holds data (a
    recorded detail, a service's English message) and is skipped.
    """

    SPOKEN = frozenset({"aria-label", "title", "placeholder", "alt"})
    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
    VOID |= frozenset({"source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.pieces: list[str] = []
        self._hidden = 0
        self._data: list[str] = []  # open tags inside a translate="no" element
        self.lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._data:
            if tag not in self.VOID:
                self._data.append(tag)
            return
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "html":
            self.lang = dict(attrs).get("lang") or ""
        named = dict(attrs)
        if (named.get("translate") == "no" or (tag != "html" and "lang" in named)) and (
            tag not in self.VOID
        ):
            self._data.append(tag)
        said = [v for k, v in attrs if k in self.SPOKEN and v]
        self.parts.extend(said)
        self.pieces.extend(said)

    def handle_endtag(self, tag: str) -> None:
        if self._data:
            if tag in self._data:
                while self._data and self._data.pop() != tag:
                    pass
            return
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and not self._data:
            self.parts.append(data)
            self.pieces.extend(p.strip(" \n\t()—:,;") for p in data.split("·"))


def visible(html: str) -> tuple[str, str]:
    parser = _Text()
    parser.feed(html)
    return parser.lang, " ".join(" ".join(parser.parts).split())


def bare_values(html: str, labels: dict[str, str]) -> set[str]:
    """The recorded values the page shows as a piece of text on their own, untranslated."""
    parser = _Text()
    parser.feed(html)
    return {p for p in parser.pieces if p in labels and labels[p] != p}


def console_pages(ids: dict[str, str]) -> Iterator[str]:
    """Every console page a GET reaches, whoever adds it, with ``ids`` in its path.

    From the console's own list of page routers rather than ``app.routes``:
    FastAPI now includes routers lazily, so the app's list does not show them.
    A page with an id this test has no value for fails it: seed one.
    """
    for module in pages.ALL:
        for route in module.router.routes:
            if not isinstance(route, APIRoute) or "GET" not in route.methods:
                continue
            path = PREFIX + route.path
            if path in NOT_PAGES:
                continue
            for name in re.findall(r"{(\w+)}", path):
                assert name in ids, f"no {{{name}}} to show {path} with: seed one in this test"
                path = path.replace(f"{{{name}}}", ids[name])
            query = QUERIES.get(PREFIX + route.path)
            yield f"{path}?{query}" if query else path


def seeded(ctx: Context) -> dict[str, str]:
    """One of each thing a page with an id shows, all in the museum's tenant.

    The AIP has its ingestion event (the fixture records one), a retention
    date, a disposal asked for (a "deaccession" event, outcome "pending"); a
    migration of its PNG is queued, a DIP of it is ready, an audit is queued.
    """
    aip = add_aip(
        ctx, "museum", title="Letters of the founders", puids=("fmt/11", "fmt/353", "fmt/43")
    )
    dip = _ready_dip(ctx, aip)
    with session_scope(ctx.sessions) as s:
        row = s.get_one(AIP, aip)
        row.retention_until = row.created_at
        s.flush()
        request_disposal(
            s, aip, "museum", Actor(id="user:x", label="alice"), reason="its time is over"
        )
        audit = start_audit(s, ("site-a", "site-b"), "museum", "alice").audit_id
        policy, text = migrations.read_policy(None)
        migration = migrations.start_migration(
            s, policy, text, puid="fmt/11", tenant_id="museum", who="alice"
        ).migration_id
    return {"aip_id": aip, "dip_id": dip, "audit_id": audit, "migration_id": migration}


def test_no_page_shows_an_english_message_id(
    client: TestClient, ctx: Context, people: People, sources: dict[str, set[str]]
) -> None:
    ids = seeded(ctx)
    people.add("ann@museum.example", "curator", "museum")
    people.add("root@safe.example", "admin", None)
    people.log_in(client, "root@safe.example")
    paths = sorted(set(console_pages(ids)))
    assert "/console/admin" in paths and "/console/" in paths
    assert f"/console/aips/{ids['aip_id']}" in paths
    assert f"/console/migrations/{ids['migration_id']}" in paths
    # Fragments that htmx polls, as htmx gets them (the pages above include them too).
    fragments = [
        f"htmx: /console/migrations/{ids['migration_id']}",
        f"htmx: /console/dashboard/audits/{ids['audit_id']}",
        f"htmx: /console/dips/{ids['dip_id']}",
    ]
    seen: dict[str, list[str]] = defaultdict(list)
    for lang in LANGUAGES:
        entries = catalogue(lang)
        merged = {msgid: translated(found[-1][1])[0] for msgid, found in entries.items() if found}
        # An English id may rightly appear inside a translation ("Label" in Dutch).
        translations_text = "\n".join(merged.values())
        suspects = [
            msgid
            for msgid in sources
            if len(msgid) >= MIN_LENGTH
            and not PLACEHOLDER.search(msgid)
            and merged.get(msgid) != msgid  # missing counts: English is shown
            and not _contains(translations_text, msgid)
        ]
        labels = labelled(lang)
        shown: set[str] = set()
        for path in [*paths, *fragments, "logged out: /console/login"]:
            headers = {"Accept-Language": lang}
            if path.startswith("logged out: "):
                client.cookies.clear()
                path = path.removeprefix("logged out: ")
            fragment = path.startswith("htmx: ")
            if fragment:
                path = path.removeprefix("htmx: ")
                headers["HX-Request"] = "true"
            r = client.get(path, headers=headers)
            assert r.status_code < 400, (path, lang, r.status_code)
            where = f"{lang} {'htmx ' if fragment else ''}{r.url.path}"
            if where in shown:  # /console/login, logged in, is the dashboard again
                continue
            shown.add(where)
            page_lang, text = visible(r.text)
            assert fragment or page_lang == lang, (path, lang, page_lang)
            for msgid in suspects:
                if _contains(text, msgid):
                    seen[where].append(msgid)
            seen[where].extend(sorted(bare_values(r.text, labels)))
        people.log_in(client, "root@safe.example")
    seen = {where: found for where, found in seen.items() if found}
    assert not seen, f"English shown untranslated: {dict(seen)}"


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
