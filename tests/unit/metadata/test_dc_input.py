"""A curator's Dublin Core record at the door: JSON and XML in, checked pairs out, or refused."""

from __future__ import annotations

from typing import Any

import pytest

from preservation.errors import InvalidRequestError
from preservation.metadata.dc_input import (
    MAX_VALUE_CHARS,
    MAX_VALUES_PER_ELEMENT,
    check_dc,
    dc_as_record,
    dc_from_json,
    dc_from_xml,
)

OAI_DC = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"\n'
    b'           xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
    b"  <dc:subject>letters</dc:subject>\n"
    b"  <!-- a comment is fine -->\n"
    b"  <dc:title>Lettres du donateur</dc:title>\n"
    b"  <dc:subject>donors</dc:subject>\n"
    b"</oai_dc:dc>\n"
)


def refused(call: Any, *args: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        call(*args)
    return caught.value


def test_json_keys_in_any_case_strings_or_lists_in_element_order() -> None:
    pairs = dc_from_json({"Subject": ["a", "b"], "TITLE": "Lettres", "date": []})
    assert pairs == [("title", "Lettres"), ("subject", "a"), ("subject", "b")]
    assert dc_as_record(pairs) == {"title": ["Lettres"], "subject": ["a", "b"]}


@pytest.mark.parametrize(
    ("document", "rule", "field"),
    [
        ({"tilte": "x"}, "dc-element", "tilte"),
        ({"dcterms:abstract": "x"}, "dc-element", "dcterms:abstract"),
        ({"title": 3}, "dc-value-type", "title"),
        ({"title": ["ok", 4]}, "dc-value-type", "title"),
        ({"title": {"en": "x"}}, "dc-value-type", "title"),
        ({"title": "   "}, "dc-empty-value", "title"),
        ({"title": "x" * (MAX_VALUE_CHARS + 1)}, "dc-value-too-long", "title"),
        ({"subject": ["s"] * (MAX_VALUES_PER_ELEMENT + 1)}, "dc-too-many-values", "subject"),
        ({"title": "a\x00b"}, "dc-value-characters", "title"),
        ({"title": "a", "Title": "b"}, "dc-duplicate-element", "Title"),
    ],
)
def test_json_refusals_name_the_field_and_the_rule(
    document: dict[str, Any], rule: str, field: str
) -> None:
    err = refused(dc_from_json, document)
    assert err.context == {"rule": rule, "field": field}
    assert field in err.message or rule == "dc-value-too-long"


@pytest.mark.parametrize("document", [{}, {"title": []}, [], "title", None])
def test_json_that_is_no_record_at_all(document: Any) -> None:
    err = refused(dc_from_json, document)
    assert err.context["rule"] in {"dc-empty", "dc-json-object"}


def test_too_many_values_in_all() -> None:
    document = {name: [f"v{i}" for i in range(90)] for name in ("title", "subject", "date")}
    document |= {name: [f"v{i}" for i in range(90)] for name in ("type", "format", "source")}
    err = refused(dc_from_json, document)
    assert err.context["rule"] == "dc-too-many-values" and "in all" in err.message


def test_pairs_made_by_code_pass_the_same_gate() -> None:
    assert check_dc([("subject", "b"), ("title", "a")]) == [("title", "a"), ("subject", "b")]
    assert refused(check_dc, [("abstract", "x")]).context["rule"] == "dc-element"
    assert refused(check_dc, []).context["rule"] == "dc-empty"


def test_an_oai_dc_record() -> None:
    assert dc_from_xml(OAI_DC) == [
        ("title", "Lettres du donateur"),
        ("subject", "letters"),
        ("subject", "donors"),
    ]


@pytest.mark.parametrize("root", ["metadata", "record", "dc"])
def test_a_simple_dc_container(root: str) -> None:
    data = (
        f'<{root} xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:creator>Hélène Martin</dc:creator></{root}>"
    ).encode()
    assert dc_from_xml(data) == [("creator", "Hélène Martin")]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE dc [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
           xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&passwd;</dc:title></oai_dc:dc>
"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title></metadata>
"""
PLAIN_DOCTYPE = b"""<?xml version="1.0"?>
<!DOCTYPE metadata>
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>x</dc:title></metadata>
"""


@pytest.mark.parametrize("data", [XXE, LAUGHS, PLAIN_DOCTYPE], ids=["xxe", "laughs", "plain"])
def test_any_doctype_is_refused(data: bytes) -> None:
    err = refused(dc_from_xml, data)
    assert err.context == {"rule": "xml-doctype"}
    assert "root:" not in err.message  # nothing of /etc/passwd came back


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_doctype_in_another_encoding_is_refused_too(encoding: str) -> None:
    text = PLAIN_DOCTYPE.decode().replace('version="1.0"', f'version="1.0" encoding="{encoding}"')
    assert refused(dc_from_xml, text.encode(encoding)).context == {"rule": "xml-doctype"}


def test_malformed_xml_names_the_line() -> None:
    data = b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n<dc:title>x\n</metadata>'
    err = refused(dc_from_xml, data)
    assert err.context == {"rule": "xml-well-formed"}
    assert "line 3" in err.message


@pytest.mark.parametrize(
    ("data", "rule", "field"),
    [
        (b'<mets xmlns="http://www.loc.gov/METS/"/>', "xml-root", None),
        (b'<dc:title xmlns:dc="http://purl.org/dc/elements/1.1/">x</dc:title>', "xml-root", None),
        (
            b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:abstract>x</dc:abstract>'
            b"</metadata>",
            "dc-element",
            "abstract",
        ),
        (
            b'<metadata xmlns:t="http://purl.org/dc/terms/"><t:abstract>x</t:abstract></metadata>',
            "dc-element",
            "abstract",
        ),
        (b"<metadata><title>x</title></metadata>", "dc-element", "title"),
        (
            b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><b>x</b>'
            b"</dc:title></metadata>",
            "dc-value-type",
            "title",
        ),
        (b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"/>', "dc-empty", None),
    ],
)
def test_xml_refusals(data: bytes, rule: str, field: str | None) -> None:
    err = refused(dc_from_xml, data)
    assert err.context["rule"] == rule
    assert err.context.get("field") == field


def test_an_xml_value_too_long() -> None:
    data = (
        b'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>'
        + b"x" * (MAX_VALUE_CHARS + 1)
        + b"</dc:description></metadata>"
    )
    assert refused(dc_from_xml, data).context == {
        "rule": "dc-value-too-long",
        "field": "description",
    }
