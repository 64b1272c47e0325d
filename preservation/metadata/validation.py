"""Validate METS documents against METS 1.12.1 + PREMIS 3.0 + XLink, offline.

The LoC METS schema imports XLink from ``http://www.loc.gov/...``; an archive
must validate without a network (tape recovery rooms have none, and a fetched
schema can change). ``schemas/mets-premis.xsd`` imports the local
``xlink.xsd`` before METS, so libxml2 skips the remote import; a resolver maps
the well-known LoC addresses to the local copies as a second line of defence,
and the parser refuses network access outright. PREMIS is loaded beside METS
because ``xmlData`` is ``processContents="lax"``: without the PREMIS schema,
PREMIS inside METS would only be checked for well-formedness.

Compiling the schemas takes a noticeable fraction of a second, so each schema
folder is compiled once per process and cached. ``XMLSchema`` objects are not
safe to share between threads, so the cache is per thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

from lxml import etree

from preservation.errors import MetadataError

__all__ = [
    "DC_SCHEMA",
    "DEFAULT_SCHEMAS_DIR",
    "PREMIS_SCHEMA",
    "WRAPPER_SCHEMA",
    "load_schema",
    "safe_parser",
    "validate_dublin_core",
    "validate_mets",
    "validate_premis",
]

#: The repository's schemas/ folder (also ``Settings.schemas_dir``'s default).
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
#: The schema that pulls METS, XLink and PREMIS together from local files.
WRAPPER_SCHEMA = "mets-premis.xsd"
#: A standalone PREMIS document (``metadata/preservation/premis.xml``).
PREMIS_SCHEMA = "premis-v3-0.xsd"
#: The OAI-PMH Dublin Core container (``metadata/descriptive/dc.xml``); it imports
#: DCMI's simpledc20021212.xsd, which imports the W3C xml.xsd (for xml:lang).
DC_SCHEMA = "oai_dc.xsd"

# Remote schema addresses found in the LoC schemas and in METS documents in the wild.
_KNOWN_REMOTE = {
    "http://www.loc.gov/standards/xlink/xlink.xsd": "xlink.xsd",
    "https://www.loc.gov/standards/xlink/xlink.xsd": "xlink.xsd",
    "http://www.loc.gov/standards/mets/mets.xsd": "mets-1.12.1.xsd",
    "https://www.loc.gov/standards/mets/mets.xsd": "mets-1.12.1.xsd",
    "http://www.loc.gov/standards/mets/version1121/mets.xsd": "mets-1.12.1.xsd",
    "http://www.loc.gov/standards/premis/premis.xsd": "premis-v3-0.xsd",
    "http://www.loc.gov/standards/premis/v3/premis.xsd": "premis-v3-0.xsd",
    "http://www.loc.gov/standards/premis/v3/premis-v3-0.xsd": "premis-v3-0.xsd",
    "http://www.openarchives.org/OAI/2.0/oai_dc.xsd": "oai_dc.xsd",
    "https://www.openarchives.org/OAI/2.0/oai_dc.xsd": "oai_dc.xsd",
    "http://dublincore.org/schemas/xmls/simpledc20021212.xsd": "simpledc20021212.xsd",
    "https://dublincore.org/schemas/xmls/simpledc20021212.xsd": "simpledc20021212.xsd",
    "http://www.w3.org/2001/03/xml.xsd": "xml.xsd",
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
    "https://www.w3.org/2001/xml.xsd": "xml.xsd",
}


class _LocalSchemas(etree.Resolver):
    """Answer requests for well-known remote schemas from the local folder."""

    def __init__(self, schemas_dir: Path) -> None:
        super().__init__()
        self.schemas_dir = schemas_dir

    # lxml-stubs give Resolver an outdated signature and omit resolve_filename.
    def resolve(  # type: ignore[override]
        self, system_url: str | None, public_id: str | None, context: object
    ) -> object:
        local = _KNOWN_REMOTE.get(system_url or "")
        if local is not None:
            return self.resolve_filename(str(self.schemas_dir / local), context)  # type: ignore[attr-defined]
        return None  # local files resolve normally; anything else meets no_network


def safe_parser() -> etree.XMLParser:
    """An XML parser for untrusted input: no entity expansion, no DTD, no network (§9)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


_cache = threading.local()


def load_schema(schemas_dir: Path | None = None, name: str = WRAPPER_SCHEMA) -> etree.XMLSchema:
    """The compiled schema ``name`` of ``schemas_dir`` (METS+PREMIS+XLink), cached per thread."""
    folder = Path(schemas_dir or DEFAULT_SCHEMAS_DIR).resolve()
    schemas: dict[tuple[Path, str], etree.XMLSchema] = _cache.__dict__.setdefault("schemas", {})
    schema = schemas.get((folder, name))
    if schema is None:
        wrapper = folder / name
        if not wrapper.is_file():
            raise MetadataError(
                f"no {name} in {folder}: the schemas folder is incomplete", path=folder
            )
        parser = safe_parser()
        parser.resolvers.add(_LocalSchemas(folder))
        try:
            schema = etree.XMLSchema(etree.parse(str(wrapper), parser))
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
            raise MetadataError(
                f"the XML schemas in {folder} do not compile: {exc}", path=folder
            ) from exc
        schemas[(folder, name)] = schema
    return schema


def validate_mets(
    source: str | Path | etree._ElementTree | etree._Element, schemas_dir: Path | None = None
) -> list[str]:
    """Every schema error in a METS document, as ``"line N: message"``; empty if valid.

    A list rather than an exception, because a curator wants all problems at
    once and the describe stage records them in a PREMIS validation event. A
    file that is not well-formed XML gives one entry saying so.
    """
    tree = _parse(source)
    if isinstance(tree, list):
        return tree
    return _schema_problems(tree, load_schema(schemas_dir)) + _reference_problems(tree)


def validate_premis(
    source: str | Path | etree._ElementTree | etree._Element, schemas_dir: Path | None = None
) -> list[str]:
    """Every schema error in a standalone PREMIS 3.0 document; empty if valid."""
    tree = _parse(source)
    if isinstance(tree, list):
        return tree
    return _schema_problems(tree, load_schema(schemas_dir, PREMIS_SCHEMA))


def validate_dublin_core(
    source: str | Path | etree._ElementTree | etree._Element, schemas_dir: Path | None = None
) -> list[str]:
    """Every schema error in an ``oai_dc`` Dublin Core record; empty if valid.

    Needs ``oai_dc.xsd``, ``simpledc20021212.xsd`` and ``xml.xsd`` in
    ``schemas_dir``; their published addresses are answered from there.
    """
    tree = _parse(source)
    if isinstance(tree, list):
        return tree
    return _schema_problems(tree, load_schema(schemas_dir, DC_SCHEMA))


def _parse(
    source: str | Path | etree._ElementTree | etree._Element,
) -> etree._ElementTree | etree._Element | list[str]:
    """The tree, or the one problem that it is not well-formed."""
    if not isinstance(source, str | Path):
        return source
    try:
        return etree.parse(str(source), safe_parser())
    except etree.XMLSyntaxError as exc:
        return [f"not well-formed XML: {exc}"]
    except OSError as exc:
        raise MetadataError(f"cannot read {source}: {exc}", path=source) from exc


def _schema_problems(
    tree: etree._ElementTree | etree._Element, schema: etree.XMLSchema
) -> list[str]:
    if schema.validate(tree):
        return []
    return [f"line {error.line}: {error.message}" for error in cast(list[Any], schema.error_log)]


# METS attributes of type IDREF/IDREFS that must name an ID in the same document.
_IDREF_ATTRIBUTES = ("ADMID", "DMDID", "FILEID", "STRUCTID", "BEGIN", "END")


def _reference_problems(tree: etree._ElementTree | etree._Element) -> list[str]:
    """Dangling and duplicate METS IDs, which libxml2's XSD validation lets through.

    XSD says an IDREF must match an ID, but libxml2 only checks that for DTDs;
    a METS whose ``ADMID`` points nowhere would pass, and its file would lose
    its PREMIS record for a future reader.
    """
    problems: list[str] = []
    ids: set[str] = set()
    # Attribute results are "smart strings" that know their element and name.
    for value in cast(list[Any], tree.xpath("//@ID")):
        if value in ids:
            problems.append(f"line {value.getparent().sourceline}: ID {value} is used twice")
        ids.add(str(value))
    query = " | ".join(f"//@{name}" for name in _IDREF_ATTRIBUTES)
    for value in cast(list[Any], tree.xpath(query)):
        for ref in str(value).split():
            if ref not in ids:
                problems.append(
                    f"line {value.getparent().sourceline}: {value.attrname} names {ref}, "
                    "which is not the ID of any element"
                )
    return problems
