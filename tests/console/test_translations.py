"""Every string of the console in Dutch and French, and no English left on a page.

The message ids are found the way ``pybabel`` finds them, with the method map
of ``babel.cfg`` itself (Python sources, and Jinja templates with
``jinja2.ext.i18n``), so this test and the catalogue template cannot disagree
about what a string is. Each must have a translation in every ``.po`` of
``locale/nl/`` and ``locale/fr/`` taken together (they are merged at run
time), not empty and not fuzzy, with the same ``%(name)s`` placeholders as the
English. Then every console page that a GET without path parameters reaches
is rendered for an admin in both languages, and must not show an English
message id whose translation differs: that catches a catalogue that is
missing or not loaded. (A string never wrapped in gettext cannot be caught
this way; review catches those.)

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

from preservation.console import PREFIX, pages
from preservation.console.i18n import LOCALE_DIR
from preservation.context import Context
from tests.console.conftest import People, add_aip

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("nl", "fr")
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc]")
#: Shorter ids ("OK", "Id") turn up inside other words and data; they are checked in the .po only.
MIN_LENGTH = 4


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


class _Text(HTMLParser):
    """What a person sees or hears of a page: text, and the labels of things."""

    SPOKEN = frozenset({"aria-label", "title", "placeholder", "alt"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0
        self.lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "html":
            self.lang = dict(attrs).get("lang") or ""
        self.parts.extend(v for k, v in attrs if k in self.SPOKEN and v)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible(html: str) -> tuple[str, str]:
    parser = _Text()
    parser.feed(html)
    return parser.lang, " ".join(" ".join(parser.parts).split())


def console_pages() -> Iterator[str]:
    """Every console page a GET reaches without path parameters, whoever adds it.

    From the console's own list of page routers rather than ``app.routes``:
    FastAPI now includes routers lazily, so the app's list does not show them.
    """
    for module in pages.ALL:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and "GET" in route.methods and "{" not in route.path:
                yield PREFIX + route.path


def test_no_page_shows_an_english_message_id(
    client: TestClient, ctx: Context, people: People, sources: dict[str, set[str]]
) -> None:
    add_aip(ctx, "museum", title="Letters of the founders", puids=("fmt/353", "fmt/43"))
    people.add("ann@museum.example", "curator", "museum")
    people.add("root@safe.example", "admin", None)
    people.log_in(client, "root@safe.example")
    paths = sorted(set(console_pages()))
    assert "/console/admin" in paths and "/console/" in paths
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
        shown: set[str] = set()
        for path in [*paths, "logged out: /console/login"]:
            if path.startswith("logged out: "):
                client.cookies.clear()
                path = path.removeprefix("logged out: ")
            r = client.get(path, headers={"Accept-Language": lang})
            assert r.status_code < 500, (path, lang, r.status_code)
            if str(r.url) in shown:  # /console/login, logged in, is the dashboard again
                continue
            shown.add(str(r.url))
            page_lang, text = visible(r.text)
            assert page_lang == lang, (path, lang, page_lang)
            for msgid in suspects:
                if _contains(text, msgid):
                    seen[f"{lang} {r.url.path}"].append(msgid)
        people.log_in(client, "root@safe.example")
    assert not seen, f"English message ids shown untranslated: {dict(seen)}"


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
