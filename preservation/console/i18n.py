"""The console's three languages: choosing one per request, and the catalogues.

Strings are marked with gettext in templates (``{% trans %}``, ``_()``) and in
Python (``i18n.gettext``); ``pybabel extract -F babel.cfg`` finds them. The
translations are plain ``.po`` files under ``locale/<lang>/``, one per part of
the console so that parts are translated independently, merged and compiled
in memory when the first page is rendered: there is no compiled ``.mo`` in the
repository to drift from its source, and no build step.

The language is the ``lang`` cookie's (set by the switch in the page header),
else the best match of ``Accept-Language``, else English. The choice lives in
a context variable for the length of one request, so the Jinja environment can
be shared by every thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.core import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

__all__ = [
    "DEFAULT",
    "LANGUAGES",
    "LOCALE_DIR",
    "choose",
    "current",
    "gettext",
    "ngettext",
    "translations",
    "using",
]

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT = "en"
#: The console's languages, each named in itself for the switch.
LANGUAGES: dict[str, str] = {"en": "English", "nl": "Nederlands", "fr": "Français"}

_current: ContextVar[str] = ContextVar("console_language", default=DEFAULT)


@cache
def translations(lang: str) -> NullTranslations:
    """Every ``.po`` of one language merged; English is the message ids themselves."""
    merged: NullTranslations = NullTranslations()
    folder = LOCALE_DIR / lang
    if lang == DEFAULT or not folder.is_dir():
        return merged
    first: Translations | None = None
    for po in sorted(folder.glob("*.po")):
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)
        buf.seek(0)
        part = Translations(buf)
        if first is None:
            first = part
        else:
            first.merge(part)
    return first or merged


def choose(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    if accept_language:
        wanted = []
        for item in accept_language.split(","):
            tag, _, params = item.strip().partition(";")
            q = 1.0
            if params.strip().startswith("q="):
                try:
                    q = float(params.strip()[2:])
                except ValueError:
                    q = 0.0
            if tag and q > 0:
                wanted.append((q, tag.strip().replace("-", "_")))
        wanted.sort(key=lambda pair: -pair[0])
        found = negotiate_locale([t for _, t in wanted], list(LANGUAGES))
        if found:
            return found
        for _, tag in wanted:  # "nl_BE" when only "nl" is offered
            base = tag.split("_")[0].lower()
            if base in LANGUAGES:
                return base
    return DEFAULT


def current() -> str:
    return _current.get()


def locale() -> Locale:
    return Locale.parse(current())


@contextmanager
def using(lang: str) -> Iterator[None]:
    token = _current.set(lang if lang in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)
