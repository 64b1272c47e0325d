"""SIARD escaping (G_3.3-4): what XML cannot hold survives a trip through a real XML parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from preservation.siard.text import escape, escape_chars, unescape


def _through_xml(content: str) -> str:
    root = etree.fromstring(f"<c>{content}</c>".encode())
    return root.text or ""


def test_escapes_what_the_spec_lists() -> None:
    assert escape("a\\b") == "a\\u005cb"
    assert escape("\x00\x08\x0b\x0c\x0e\x1f\x7f\x85\x9f") == (
        "\\u0000\\u0008\\u000b\\u000c\\u000e\\u001f\\u007f\\u0085\\u009f"
    )
    assert escape("&<>\"'") == "&amp;&lt;&gt;&quot;&apos;"


def test_a_single_space_stays_and_every_space_of_a_run_is_escaped() -> None:
    assert escape("a b") == "a b"
    assert escape("a  b   c") == "a\\u0020\\u0020b\\u0020\\u0020\\u0020c"
    assert escape(" ") == " "


def test_tab_and_lf_stay_but_cr_is_escaped_because_parsers_drop_it() -> None:
    assert escape("a\tb\nc") == "a\tb\nc"
    assert escape("a\r\nb") == "a\\u000d\nb"
    assert unescape(_through_xml(escape("a\r\nb\rc"))) == "a\r\nb\rc"


def test_plain_text_is_returned_unchanged() -> None:
    text = "Zürich 😀 ok"
    assert escape(text) is text
    assert unescape(text) is text


def test_unescape_reads_both_cases_and_leaves_stray_backslashes() -> None:
    assert unescape("\\u005C\\u005c\\u00E9") == "\\\\é"
    assert unescape("C:\\temp") == "C:\\temp"


def test_every_code_point_round_trips_through_xml() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    for start in range(0, len(every), 65536):
        chunk = every[start : start + 65536]
        assert unescape(_through_xml(escape(chunk))) == chunk


def test_lone_surrogates_are_escaped_too() -> None:
    assert escape("\ud800") == "\\ud800"
    assert unescape(escape("x\udfffy")) == "x\udfffy"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_random_text_round_trips_through_xml(text: str) -> None:
    assert unescape(_through_xml(escape(text))) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \\\x00\x01\r\n\tu0a&<"))))
def test_escape_like_text_round_trips(text: str) -> None:
    assert unescape(_through_xml(escape(text))) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_escape_chars_round_trips_through_lxml(text: str) -> None:
    element = etree.Element("c")
    element.text = escape_chars(text)
    parsed = etree.fromstring(etree.tostring(element))
    assert unescape(parsed.text or "") == text
