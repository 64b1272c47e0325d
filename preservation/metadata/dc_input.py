"""A curator's Dublin Core record as it comes in: JSON or XML, checked before anything is made.

A metadata update (``PUT /api/v1/aips/{id}/metadata``, ``preservation aip
metadata``) replaces an AIP's descriptive record with one the curator sends.
Whatever the door, the record arrives here first and leaves as plain
``(element, value)`` pairs of the fifteen simple Dublin Core elements, or is
refused with an :class:`~preservation.errors.InvalidRequestError` naming the
field and the rule, before any version, event or file exists.

Why so strict: the record goes to tape for decades, into an ``oai_dc`` file
that must validate, and into the search index. An unknown element would be
silently dropped by the writer, a dcterms refinement is not simple DC, and a
megabyte "title" is a mistake, not a title.

The XML is untrusted input (docs/architecture.md §9): it is parsed with
entities unresolved, no DTD, no network and no huge trees, and any DOCTYPE is
refused outright, so neither an external entity (XXE) nor an expansion bomb
can get past the door, even as an unexpanded reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lxml import etree

from preservation.errors import InvalidRequestError
from preservation.metadata.mets import DC_ELEMENTS, DC_NS
from preservation.metadata.records import OAI_DC_NS

__all__ = [
    "ACCEPTED_XML_ROOTS",
    "MAX_VALUE_CHARS",
    "MAX_VALUES",
    "MAX_VALUES_PER_ELEMENT",
    "MAX_XML_BYTES",
    "check_dc",
    "dc_as_record",
    "dc_from_json",
    "dc_from_xml",
]

#: Longer than any real title or abstract; past it the value is a mistake (or an attack).
MAX_VALUE_CHARS = 10_000
#: Values one element may have, and the record in all.
MAX_VALUES_PER_ELEMENT = 100
MAX_VALUES = 500
#: An XML record larger than this is refused unparsed.
MAX_XML_BYTES = 2 * 1024 * 1024

SRW_DC_NS = "info:srw/schema/1/dc-schema"
#: The containers simple DC comes in: OAI-PMH's ``oai_dc:dc``, SRU's ``srw_dc:dc``,
#: and the un-namespaced ``<metadata>``/``<record>``/``<dc>`` of DCMI's XML guidelines.
ACCEPTED_XML_ROOTS = (
    f"{{{OAI_DC_NS}}}dc",
    f"{{{SRW_DC_NS}}}dc",
    "metadata",
    "record",
    "dc",
)

# Characters XML 1.0 cannot carry (tab, LF and CR it can): the oai_dc file could not hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DC = f"{{{DC_NS}}}"


def _refuse(message: str, rule: str, field: str | None = None) -> InvalidRequestError:
    if field is None:
        return InvalidRequestError(message, rule=rule)
    return InvalidRequestError(message, rule=rule, field=field)


def check_dc(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs, checked and in element order; the one gate every way in goes through.

    A caller holding pairs it made itself (not from JSON or XML) still calls
    this: the service refuses what the doors refuse.
    """
    by_element: dict[str, list[str]] = {}
    for element, value in pairs:
        if element not in DC_ELEMENTS:
            raise _refuse(
                f"{element!r} is not one of the fifteen simple Dublin Core elements "
                f"({', '.join(DC_ELEMENTS)})",
                "dc-element",
                str(element),
            )
        by_element.setdefault(element, []).append(value)
    total = 0
    for element, values in by_element.items():
        if len(values) > MAX_VALUES_PER_ELEMENT:
            raise _refuse(
                f"{element}: {len(values)} values; at most {MAX_VALUES_PER_ELEMENT} per element",
                "dc-too-many-values",
                element,
            )
        total += len(values)
        for value in values:
            _check_value(element, value)
    if total > MAX_VALUES:
        raise _refuse(
            f"the record has {total} values; at most {MAX_VALUES} in all",
            "dc-too-many-values",
        )
    if not total:
        raise _refuse(
            "the record is empty: give at least one Dublin Core element with a value",
            "dc-empty",
        )
    order = {name: i for i, name in enumerate(DC_ELEMENTS)}
    return [
        (element, value)
        for element in sorted(by_element, key=order.__getitem__)
        for value in by_element[element]
    ]


def _check_value(element: str, value: object) -> None:
    if not isinstance(value, str):
        raise _refuse(
            f"{element}: a value must be a string, not {type(value).__name__}",
            "dc-value-type",
            element,
        )
    if not value.strip():
        raise _refuse(
            f"{element}: an empty value; leave the element out instead", "dc-empty-value", element
        )
    if len(value) > MAX_VALUE_CHARS:
        raise _refuse(
            f"{element}: a value of {len(value)} characters; at most {MAX_VALUE_CHARS}",
            "dc-value-too-long",
            element,
        )
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise _refuse(
            f"{element}: a value holds the control character U+{ord(bad.group()):04X}, "
            "which XML 1.0 cannot carry",
            "dc-value-characters",
            element,
        )


def dc_from_json(document: object) -> list[tuple[str, str]]:
    """``{"title": "x", "subject": ["a", "b"]}`` as checked ``(element, value)`` pairs.

    Keys are the element names in any case; each value is a string or a list
    of strings (an empty list gives the element no value).
    """
    if not isinstance(document, Mapping):
        raise _refuse(
            "the Dublin Core record must be a JSON object of element names to a string or a "
            f"list of strings, not {type(document).__name__}",
            "dc-json-object",
        )
    pairs: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for key, raw in document.items():
        if not isinstance(key, str):
            raise _refuse(f"{key!r} is not an element name", "dc-element", str(key))
        element = key.strip().lower()
        if element not in DC_ELEMENTS:
            raise _refuse(
                f"{key!r} is not one of the fifteen simple Dublin Core elements "
                f"({', '.join(DC_ELEMENTS)})",
                "dc-element",
                key,
            )
        if element in seen:
            raise _refuse(
                f"{key!r} and {seen[element]!r} name the same element; give it once, "
                "with a list of values",
                "dc-duplicate-element",
                key,
            )
        seen[element] = key
        values: Sequence[Any] = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list):
            raise _refuse(
                f"{key}: expected a string or a list of strings, not {type(raw).__name__}",
                "dc-value-type",
                key,
            )
        if len(values) > MAX_VALUES_PER_ELEMENT:
            raise _refuse(
                f"{key}: {len(values)} values; at most {MAX_VALUES_PER_ELEMENT} per element",
                "dc-too-many-values",
                key,
            )
        for value in values:
            _check_value(key, value)
            pairs.append((element, value))
    return check_dc(pairs)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )


def _doctype_refused() -> InvalidRequestError:
    return _refuse(
        "the XML has a DOCTYPE (a document type or entity declarations); a Dublin Core "
        "record needs none, and none is accepted",
        "xml-doctype",
    )


def dc_from_xml(data: bytes) -> list[tuple[str, str]]:
    """An ``oai_dc:dc`` record (or another simple-DC container) as checked pairs.

    Every child of the root must be one of the fifteen elements in the
    ``http://purl.org/dc/elements/1.1/`` namespace, holding text only.
    """
    if len(data) > MAX_XML_BYTES:
        raise _refuse(
            f"the XML record is {len(data)} bytes; at most {MAX_XML_BYTES}", "dc-too-large"
        )
    # Refused before parsing when it can be seen in the bytes (UTF-8 and ASCII);
    # the parsed document's own DOCTYPE is checked below for any other encoding.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _doctype_refused()
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno
        raise _refuse(
            f"the XML is not well-formed (line {line}): {exc.msg}", "xml-well-formed"
        ) from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _doctype_refused()
    if root.tag not in ACCEPTED_XML_ROOTS:
        raise _refuse(
            f"the root element is {_name(root)}; a Dublin Core record is an oai_dc:dc "
            f"({OAI_DC_NS}), an srw_dc:dc, or a <metadata>, <record> or <dc> holding "
            "dc:* elements",
            "xml-root",
        )
    pairs: list[tuple[str, str]] = []
    for child in root:
        if not isinstance(child.tag, str):
            continue  # an entity reference left unexpanded cannot occur: no DOCTYPE got here
        element = child.tag[len(_DC) :] if child.tag.startswith(_DC) else None
        if element is None or element not in DC_ELEMENTS:
            raise _refuse(
                f"line {child.sourceline}: {_name(child)} is not one of the fifteen simple "
                f"Dublin Core elements in {DC_NS}",
                "dc-element",
                element or etree.QName(child).localname,
            )
        if len(child):
            raise _refuse(
                f"line {child.sourceline}: dc:{element} holds elements; a Dublin Core value "
                "is text only",
                "dc-value-type",
                element,
            )
        value = child.text or ""
        if not value.strip():
            raise _refuse(
                f"line {child.sourceline}: dc:{element} is empty; leave it out instead",
                "dc-empty-value",
                element,
            )
        pairs.append((element, value))
    return check_dc(pairs)


def _name(el: etree._Element) -> str:
    qname = etree.QName(el)
    where = f" in {qname.namespace}" if qname.namespace else ""
    return f"<{qname.localname}>{where}"


def dc_as_record(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Pairs as the catalogue keeps a record (``AIP.descriptive``): ``{element: [values]}``."""
    record: dict[str, list[str]] = {}
    for element, value in pairs:
        record.setdefault(element, []).append(value)
    return record
