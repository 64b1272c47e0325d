"""Text in SIARD table XML: what XML cannot carry is escaped as ``\\u00xx`` (G_3.3-3, G_3.3-4).

XML 1.0 cannot hold most control characters, and a parser rewrites others
(CR and CRLF become LF), so a string must be changed before it goes into an
element and changed back after it comes out. SIARD's rule is a backslash
escape, ``\\u`` and four hexadecimal digits, for:

- U+0000 to U+0008, U+000B, U+000C, U+000E to U+001F (not legal in XML 1.0);
- U+000D (legal, but every parser turns it into LF: escaped so it survives);
- U+007F to U+009F (the spec's 127-159);
- the backslash itself, so an escape in the output is never ambiguous;
- every space of a run of two or more (a single space is kept as it is);
- beyond the spec, U+FFFE, U+FFFF and lone surrogates, which XML cannot hold
  either (none come out of a UTF-8 database, but a Python string can have them).

TAB and LF are kept. ``& < > " '`` become entity references (``escape`` is for
element content; the parser resolves the entities, so ``unescape`` only undoes
the backslash escapes). We write lower-case hexadecimal digits, as in the spec's
``\\u005c``; ``unescape`` reads either case.

``unescape(escape(s)) == s`` for every string: the backslash is always
escaped, so a ``\\uXXXX`` in escaped text is always an escape. A backslash in
foreign text that does not start one is left as it is.

LOB files (``lob3/record0.txt``) hold the value's plain UTF-8 bytes, unescaped:
the escaping is a matter of the XML only.
"""

from __future__ import annotations

import re

__all__ = ["escape", "escape_chars", "unescape"]

_ESCAPED = (
    list(range(0x00, 0x09))
    + [0x0B, 0x0C, 0x0D]
    + list(range(0x0E, 0x20))
    + list(range(0x7F, 0xA0))
    + [0x5C, 0xFFFE, 0xFFFF]
)
_CHARS: dict[int, str] = {c: f"\\u{c:04x}" for c in _ESCAPED}
for _c in range(0xD800, 0xE000):
    _CHARS[_c] = f"\\u{_c:04x}"

#: Anything ``escape`` would change; most values have none, and skip the work.
#: (A character class alone: with an alternation for "  " the search is twice as slow.)
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\\\\&<>\"'\ufffe\uffff\ud800-\udfff]")
_SPECIAL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\\\\\ufffe\uffff\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SPACE2 = "\\u0020\\u0020"


def _char(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def escape(s: str) -> str:
    """``s`` as the content of a SIARD table cell (SIARD escapes and XML entities).

    Written as C-level ``str.replace`` calls rather than one ``translate``: it
    runs for every text cell of an export, and is fast on long strings too (the
    exporter escapes a batch of a column's values joined into one string).
    """
    if _SPECIAL.search(s) is None and "  " not in s:
        return s
    if "\\" in s:  # first: the escapes below bring backslashes of their own
        s = s.replace("\\", "\\u005c")
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if '"' in s:
        s = s.replace('"', "&quot;")
    if "'" in s:
        s = s.replace("'", "&apos;")
    if _CONTROL.search(s) is not None:
        for char in set(_CONTROL.findall(s)):
            s = s.replace(char, _CHARS[ord(char)])
    if "  " in s:
        # Pairs first; what is left of an odd run is one space after an escaped one
        # (data backslashes are escaped by now, so "\u0020" here is always ours).
        s = s.replace("  ", _SPACE2).replace("\\u0020 ", _SPACE2)
    return s


def escape_chars(s: str) -> str:
    """``s`` for a text node built with lxml (which writes the entities itself), in metadata.xml.

    Only what XML cannot hold, CR and the backslash are escaped: runs of spaces
    are kept, so a view's query stays readable. ``unescape`` is its inverse too.
    """
    if _SPECIAL_CHARS.search(s) is None:
        return s
    return s.translate(_CHARS)


def unescape(s: str) -> str:
    """The original of a cell's text as the XML parser gave it (entities already resolved)."""
    if "\\" not in s:
        return s
    return _ESCAPE.sub(_char, s)
