"""Write an AIP version's METS documents (METS 1.12.1 with PREMIS 3.0), streaming.

Two documents per version (docs/architecture.md, §4 The AIP): the representation METS
(``data/representations/<rep>/METS.xml``), which describes every file, and the
root METS (``data/METS.xml``), which describes the package and points to the
representation METS documents, including those of earlier versions.

Why streaming: a SIP can hold 100,000 files, and a METS tree of that size
would cost gigabytes in lxml. Files come in as an iterable and go out through
``etree.xmlfile`` one small subtree at a time. What must be remembered for the
later sections is kept compact: the ``<fileSec>`` is spooled to a temporary
file while the per-file ``<amdSec>`` elements are written (METS wants amdSec
before fileSec, and the iterable can only be walked once), and the
``<structMap>`` is built from one ``(path, id)`` pair per file.

Why it is small (under 3 KB a file, where Archivematica writes about 12 KB):
package-level events are written once and each ``<mets:file>`` points to them
through its ``ADMID`` (the METS way to link a file to its digiprovMD), rather
than repeating events or ``linkingEventIdentifier`` blocks per file; and each
PREMIS object declares PREMIS as its default namespace, so its thirty-odd
elements carry no prefix. docs/metadata.md explains the scheme.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from lxml import etree

from preservation.errors import MetadataError
from preservation.metadata.model import (
    Agent,
    Event,
    FileObject,
    FileRef,
    MetadataRef,
    PackageDescription,
    RepresentationRef,
    representation_identifier,
)

__all__ = [
    "BAG_INFO_NS",
    "CSIP_NS",
    "DC_NS",
    "METS_NS",
    "PREMIS_NS",
    "XLINK_NS",
    "XSI_NS",
    "digest_algorithm_name",
    "DC_ELEMENTS",
    "dublin_core",
    "dublin_core_element",
    "dublin_core_from_bag_info",
    "dublin_core_from_record",
    "held_href",
    "href_for",
    "premis_package_objects",
    "source_object_uri",
    "write_representation_mets",
    "write_root_mets",
]

METS_NS = "http://www.loc.gov/METS/"
PREMIS_NS = "http://www.loc.gov/premis/v3"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
DC_NS = "http://purl.org/dc/elements/1.1/"
CSIP_NS = "https://DILCIS.eu/XML/METS/CSIPExtensionMETS"
#: Our own small vocabulary for the submitter's bag-info, kept verbatim so the
#: catalogue can be rebuilt from tape; Dublin Core alone would lose fields.
BAG_INFO_NS = "urn:preservation:bagit:bag-info"

#: Our vocabulary of significant properties (schemas/characterisation.xsd), inside
#: each file's PREMIS objectCharacteristicsExtension.
CHARACTERISATION_NS = "urn:preservation:characterisation"
#: Each property's XML Schema type, so the reader gives back the value it was given.
PROPERTY_TYPES: dict[str, type] = {
    "width": int,
    "height": int,
    "bit_depth": int,
    "sample_rate": int,
    "channels": int,
    "page_count": int,
    "duration": float,
    "frame_rate": float,
    "encrypted": bool,
    "schemas": int,
    "tables": int,
    "rows": int,
    "lob_count": int,
    "lob_bytes": int,
}
#: Properties whose value is a list of one-line strings, written one per line.
PROPERTY_LISTS = frozenset({"described"})
PROPERTY_NAMES = (
    frozenset(PROPERTY_TYPES)
    | {
        "colour_space",
        "compression",
        "audio_codec",
        "video_codec",
        "pdf_version",
        "source_dbms",
    }
    | PROPERTY_LISTS
)
_CHARACTERISATION_NSMAP: Any = {None: CHARACTERISATION_NS}

_ROOT_NSMAP = {"mets": METS_NS, "xlink": XLINK_NS, "xsi": XSI_NS, "csip": CSIP_NS}
# PREMIS as the default namespace saves the "premis:" prefix on ~35 elements a file.
# (Typed Any: lxml takes None as the default-namespace key; its stubs do not say so.)
_PREMIS_NSMAP: Any = {None: PREMIS_NS}
_PREMIS_OBJECT_NSMAP: Any = {None: PREMIS_NS, "xsi": XSI_NS}
_BAG_INFO_NSMAP: Any = {None: BAG_INFO_NS}

#: Used by the reader too: these strings are the contract between the two.
PACKAGE_AMD_ID = "amd-package"
EVENTS_AMD_ID = "amd-events"
DC_DMD_ID = "dmd-dc"
DMD_FILE_PREFIX = "dmd-file-"
PROV_FILE_PREFIX = "prov-file-"
BAG_INFO_DMD_ID = "dmd-baginfo"
BAG_INFO_MDTYPE = "BAGIT-BAG-INFO"
ALT_VERSION = "AIP-VERSION"
ALT_REPRESENTATION = "REPRESENTATION"
DOC_ROOT = "root"
DOC_REPRESENTATION = "representation"
TENANT_NOTE_PREFIX = "tenant: "
SCHEMAS_USE = "Schemas"
REPRESENTATIONS_USE = "Representations/"
PREVIOUS_USE = "Previous versions"
PACKAGE_OBJECT_TYPE = "UUID"
PACKAGE_TECH_ID = "obj-package"
LOCAL = "local"
#: How a migration's source object, in an earlier version's METS, is identified.
URI = "URI"
#: PREMIS relationshipSubType of a migration's output towards its source.
DERIVED_SUBTYPE = "has source"
UNIDENTIFIED_NOTE = "unidentified"
UNKNOWN_FORMAT_NAME = "unknown"
BASIS_NOTE = "basis: "
TOOL_NOTE = "tool: "
FAILED_NOTE = "identification failed: "
WARNING_NOTE = "identification warning: "

_M = f"{{{METS_NS}}}"
_P = f"{{{PREMIS_NS}}}"
_XL = f"{{{XLINK_NS}}}"
# PREMIS tags, built once: the writer makes some thirty elements per file.
_P_agent = _P + "agent"
_P_agentName = _P + "agentName"
_P_agentNote = _P + "agentNote"
_P_agentType = _P + "agentType"
_P_agentVersion = _P + "agentVersion"
_P_compositionLevel = _P + "compositionLevel"
_P_event = _P + "event"
_P_eventDateTime = _P + "eventDateTime"
_P_eventDetail = _P + "eventDetail"
_P_eventDetailInformation = _P + "eventDetailInformation"
_P_eventOutcome = _P + "eventOutcome"
_P_eventOutcomeDetail = _P + "eventOutcomeDetail"
_P_eventOutcomeDetailNote = _P + "eventOutcomeDetailNote"
_P_eventOutcomeInformation = _P + "eventOutcomeInformation"
_P_eventType = _P + "eventType"
_P_fixity = _P + "fixity"
_P_format = _P + "format"
_P_formatDesignation = _P + "formatDesignation"
_P_formatName = _P + "formatName"
_P_formatNote = _P + "formatNote"
_P_formatRegistry = _P + "formatRegistry"
_P_formatRegistryKey = _P + "formatRegistryKey"
_P_formatRegistryName = _P + "formatRegistryName"
_P_formatVersion = _P + "formatVersion"
_P_linkingAgentIdentifier = _P + "linkingAgentIdentifier"
_P_linkingAgentIdentifierType = _P + "linkingAgentIdentifierType"
_P_linkingAgentIdentifierValue = _P + "linkingAgentIdentifierValue"
_P_linkingAgentRole = _P + "linkingAgentRole"
_P_linkingObjectIdentifier = _P + "linkingObjectIdentifier"
_P_linkingObjectIdentifierType = _P + "linkingObjectIdentifierType"
_P_linkingObjectIdentifierValue = _P + "linkingObjectIdentifierValue"
_P_linkingObjectRole = _P + "linkingObjectRole"
_P_messageDigest = _P + "messageDigest"
_P_messageDigestAlgorithm = _P + "messageDigestAlgorithm"
_P_object = _P + "object"
_P_objectCharacteristics = _P + "objectCharacteristics"
_P_objectCharacteristicsExtension = _P + "objectCharacteristicsExtension"
_P_originalName = _P + "originalName"
_P_relatedObjectIdentifier = _P + "relatedObjectIdentifier"
_P_relatedObjectIdentifierType = _P + "relatedObjectIdentifierType"
_P_relatedObjectIdentifierValue = _P + "relatedObjectIdentifierValue"
_P_relationship = _P + "relationship"
_P_relationshipSubType = _P + "relationshipSubType"
_P_relationshipType = _P + "relationshipType"
_P_size = _P + "size"
# METS IDs this module makes up; a file id starting so could collide with them.
_RESERVED_ID_PREFIXES = (
    "agent-",
    "amd-",
    "div-",
    "dmd-",
    "ev-",
    "filesec",
    "grp-",
    "mets-",
    "obj-",
    "prev-",
    "prov-",
    "schema-",
    "struct-",
    "tech-",
)
_SCHEMAS = "mets-1.12.1.xsd", "xlink.xsd", "premis-v3-0.xsd"
# MDTYPE values METS 1.12.1 enumerates; anything else is OTHER + OTHERMDTYPE.
_MDTYPES = frozenset(
    "MARC MODS EAD DC NISOIMG LC-AV VRA TEIHDR DDI FGDC LOM PREMIS PREMIS:OBJECT "
    "PREMIS:AGENT PREMIS:RIGHTS PREMIS:EVENT TEXTMD METSRIGHTS NAP EAC-CPF LIDO OTHER".split()
) | {"ISO 19115:2003"}

# BagIt algorithm names -> PREMIS messageDigestAlgorithm
# (id.loc.gov/vocabulary/preservation/cryptographicHashFunctions).
_ALGORITHMS = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha224": "SHA-224",
    "sha256": "SHA-256",
    "sha384": "SHA-384",
    "sha512": "SHA-512",
}


def digest_algorithm_name(bagit_name: str) -> str:
    """The PREMIS spelling of a BagIt algorithm name ("sha256" -> "SHA-256")."""
    return _ALGORITHMS.get(bagit_name, bagit_name.upper())


# -- Dublin Core ----------------------------------------------------------------------

_DC_ELEMENTS = (
    "title",
    "creator",
    "subject",
    "description",
    "publisher",
    "contributor",
    "date",
    "type",
    "format",
    "identifier",
    "source",
    "language",
    "relation",
    "coverage",
    "rights",
)
# RFC 8493 reserved bag-info labels that have a Dublin Core meaning (lower case).
_BAGIT_TO_DC = {
    "external-description": "description",
    "internal-sender-description": "description",
    "source-organization": "creator",
    "bagging-date": "date",
    "external-identifier": "identifier",
    "internal-sender-identifier": "identifier",
    "bag-group-identifier": "relation",
}


def dublin_core(package: PackageDescription) -> list[tuple[str, str]]:
    """The package's simple Dublin Core ``(element, value)`` pairs, in element order.

    A curator's record (``package.descriptive``, from a metadata update)
    replaces what the bag-info says; otherwise the bag-info is mapped by
    :func:`dublin_core_from_bag_info`. Either way the AIP's UUID is the first
    identifier, so the record names the package it describes.
    """
    if package.descriptive is None:
        return dublin_core_from_bag_info(str(package.aip_id), package.bag_info)
    return dublin_core_from_record(str(package.aip_id), package.descriptive)


def dublin_core_from_record(
    aip_id: str, descriptive: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """A curator's record as the package's Dublin Core: the AIP's urn:uuid identifier first."""
    urn = f"urn:uuid:{aip_id}"
    pairs = [("identifier", urn)] + [
        (element, value)
        for element, value in descriptive
        if value.strip() and (element, value) != ("identifier", urn)
    ]
    return _in_element_order(pairs)


def dublin_core_from_bag_info(
    aip_id: str, bag_info: Mapping[str, Sequence[str]]
) -> list[tuple[str, str]]:
    """Map the submitter's bag-info to simple Dublin Core ``(element, value)`` pairs.

    Labels are matched case-insensitively, as BagIt readers do. Besides the RFC
    8493 labels, a label named after a DC element (``Title``, ``Subject``) or
    prefixed ``DC-`` (``DC-Coverage``) maps to that element, so a submitter can
    give real descriptive metadata without a second file.
    """
    pairs: list[tuple[str, str]] = [("identifier", f"urn:uuid:{aip_id}")]
    for label, values in bag_info.items():
        element = dublin_core_element(label)
        if element is not None:
            pairs.extend((element, value) for value in values if value.strip())
    return _in_element_order(pairs)


def dublin_core_element(label: str) -> str | None:
    """The Dublin Core element a bag-info label maps to (see above); None if it maps to none."""
    key = label.strip().lower()
    element = _BAGIT_TO_DC.get(key)
    if element is None:
        bare = key.removeprefix("dc-")
        element = bare if bare in _DC_ELEMENTS else None
    return element


#: The fifteen elements of simple Dublin Core, in the order records list them.
DC_ELEMENTS = _DC_ELEMENTS


def _in_element_order(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    order = {name: i for i, name in enumerate(_DC_ELEMENTS)}
    return sorted(pairs, key=lambda pair: order[pair[0]])


# -- helpers ----------------------------------------------------------------------------

# RFC 3987 lets an IRI carry these ASCII characters as they are; everything else
# ASCII (space, %, #, ?, quotes, brackets...) is percent-encoded, non-ASCII is kept
# so a reader sees "café.txt", not "caf%C3%A9.txt".
_IRI_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
)


_IRI_AS_IS = re.compile("[A-Za-z0-9\\-._~!$&'()*+,;=:@/\u0080-\U0010ffff]*")


def href_for(relpath: str) -> str:
    """The xlink:href for a relative path: a valid IRI that decodes back with ``unquote``."""
    if _IRI_AS_IS.fullmatch(relpath):
        return relpath  # the usual case: nothing to escape, one regex instead of a loop
    out = []
    for ch in relpath:
        if ch in _IRI_SAFE or ord(ch) > 0x7F:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _previous_href(aip_id: str, version: int, path: str) -> str:
    # The tar of version K unpacks to "<aip>.vK/"; versions are unpacked side by
    # side (docs/aip-format.md §4), so this relative link resolves on disk.
    return href_for(f"../../{aip_id}.v{version}/data/{path}")


def _schema_location(prefix: str) -> str:
    mets, xlink, premis = (prefix + name for name in _SCHEMAS)
    return f"{METS_NS} {mets} {XLINK_NS} {xlink} {PREMIS_NS} {premis}"


_SubElement = etree.SubElement


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = _SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


_IDENTIFIER_TAGS = {
    kind: (_P + f"{kind}Identifier", _P + f"{kind}IdentifierType", _P + f"{kind}IdentifierValue")
    for kind in ("object", "event", "agent")
}


def _identifier(parent: etree._Element, kind: str, id_type: str, value: str) -> None:
    box_tag, type_tag, value_tag = _IDENTIFIER_TAGS[kind]
    box = _SubElement(parent, box_tag)
    _SubElement(box, type_tag).text = id_type
    _SubElement(box, value_tag).text = value


def _premis_agent(agent: Agent) -> etree._Element:
    el = etree.Element(_P_agent, nsmap=_PREMIS_NSMAP)
    _identifier(el, "agent", LOCAL, agent.id)
    _sub(el, _P_agentName, agent.name)
    _sub(el, _P_agentType, agent.type)
    if agent.version is not None:
        _sub(el, _P_agentVersion, agent.version)
    if agent.note is not None:
        _sub(el, _P_agentNote, agent.note)
    return el


def _premis_event(event: Event, aip_id: str) -> etree._Element:
    el = etree.Element(_P_event, nsmap=_PREMIS_NSMAP)
    _identifier(el, "event", "UUID", str(event.id))
    _sub(el, _P_eventType, event.type)
    _sub(el, _P_eventDateTime, event.datetime.isoformat())
    if event.detail is not None:
        _sub(_sub(el, _P_eventDetailInformation), _P_eventDetail, event.detail)
    outcome = _sub(el, _P_eventOutcomeInformation)
    _sub(outcome, _P_eventOutcome, event.outcome)
    if event.outcome_detail is not None:
        detail = _sub(outcome, _P_eventOutcomeDetail)
        _sub(detail, _P_eventOutcomeDetailNote, event.outcome_detail)
    for link in event.agents:
        box = _sub(el, _P_linkingAgentIdentifier)
        _sub(box, _P_linkingAgentIdentifierType, LOCAL)
        _sub(box, _P_linkingAgentIdentifierValue, link.agent_id)
        if link.role is not None:
            _sub(box, _P_linkingAgentRole, link.role)
    objects = [(o.id_type or LOCAL, o.object_id, o.role) for o in event.objects]
    if not objects:  # the package as a whole: link to the AIP's UUID
        objects = [(PACKAGE_OBJECT_TYPE, aip_id, None)]
    for id_type, value, role in objects:
        box = _sub(el, _P_linkingObjectIdentifier)
        _sub(box, _P_linkingObjectIdentifierType, id_type)
        _sub(box, _P_linkingObjectIdentifierValue, value)
        if role is not None:
            _sub(box, _P_linkingObjectRole, role)
    return el


def _premis_object(file: FileObject) -> etree._Element:
    el = etree.Element(_P_object, {f"{{{XSI_NS}}}type": "file"}, nsmap=_PREMIS_OBJECT_NSMAP)
    _identifier(el, "object", LOCAL, file.id)
    chars = _sub(el, _P_objectCharacteristics)
    _sub(chars, _P_compositionLevel, "0")
    # sha256 first: it is the digest the fileSec CHECKSUM repeats.
    for algorithm in sorted(file.digests, key=lambda a: (a != "sha256", a != "sha512", a)):
        fixity = _sub(chars, _P_fixity)
        _sub(fixity, _P_messageDigestAlgorithm, digest_algorithm_name(algorithm))
        _sub(fixity, _P_messageDigest, file.digests[algorithm])
    _sub(chars, _P_size, str(file.size))
    fmt = file.format
    notes = []
    if fmt.basis is not None:
        notes.append(BASIS_NOTE + fmt.basis)
    if fmt.tool is not None:
        notes.append(TOOL_NOTE + fmt.tool)
    if fmt.error is not None:
        notes.append(FAILED_NOTE + fmt.error)
    if fmt.warning is not None:
        notes.append(WARNING_NOTE + fmt.warning)
    # PREMIS needs at least one <format>; an unidentified file says so explicitly.
    keys: Sequence[str | None] = fmt.puids or [None]
    for i, puid in enumerate(keys):
        box = _sub(chars, _P_format)
        if i == 0 and (fmt.name is not None or puid is None):
            designation = _sub(box, _P_formatDesignation)
            _sub(designation, _P_formatName, fmt.name or UNKNOWN_FORMAT_NAME)
            if fmt.version is not None:
                _sub(designation, _P_formatVersion, fmt.version)
        if puid is not None:
            registry = _sub(box, _P_formatRegistry)
            _sub(registry, _P_formatRegistryName, "PRONOM")
            _sub(registry, _P_formatRegistryKey, puid)
        if i == 0:
            if not fmt.identified:
                _sub(box, _P_formatNote, UNIDENTIFIED_NOTE)
            for note in notes:
                _sub(box, _P_formatNote, note)
    if any(name in PROPERTY_NAMES for name in file.properties):
        extension = _sub(chars, _P_objectCharacteristicsExtension)
        props = etree.SubElement(  # the extension holds one element of our own vocabulary
            extension,
            f"{{{CHARACTERISATION_NS}}}significantProperties",
            nsmap=_CHARACTERISATION_NSMAP,
        )
        for name, value in sorted(file.properties.items()):
            if name not in PROPERTY_NAMES:
                continue  # only what schemas/characterisation.xsd declares
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, list):
                text = "\n".join(str(item) for item in value)
            else:
                text = str(value)
            etree.SubElement(props, f"{{{CHARACTERISATION_NS}}}{name}").text = text
    _sub(el, _P_originalName, file.original_name)
    if file.derived_from is not None:
        box = _sub(el, _P_relationship)
        _sub(box, _P_relationshipType, "derivation")
        _sub(box, _P_relationshipSubType, DERIVED_SUBTYPE)
        related = _sub(box, _P_relatedObjectIdentifier)
        _sub(related, _P_relatedObjectIdentifierType, URI)
        _sub(related, _P_relatedObjectIdentifierValue, file.derived_from)
    return el


def source_object_uri(aip_id: str, version: int, representation: str, file_id: str) -> str:
    """How a later representation METS names a file object of an earlier version's METS.

    Relative to a representation METS (``<aip>.vN/data/representations/<rep>/``),
    the way its own FLocats point into earlier versions, plus the object's METS ID.
    """
    return href_for(
        f"../../../../{aip_id}.v{version}/data/representations/{representation}/METS.xml"
    ) + f"#{file_id}"


def held_href(aip_id: str, version: int, path: str) -> str:
    """A representation METS's link to a file an earlier version's tar holds."""
    return href_for(f"../../../../{aip_id}.v{version}/data/{path}")


def _relationship(parent: etree._Element, subtype: str, id_type: str, value: str) -> None:
    box = _sub(parent, _P_relationship)
    _sub(box, _P_relationshipType, "structural")
    _sub(box, _P_relationshipSubType, subtype)
    related = _sub(box, _P_relatedObjectIdentifier)
    _sub(related, _P_relatedObjectIdentifierType, id_type)
    _sub(related, _P_relatedObjectIdentifierValue, value)


def premis_package_objects(aip_id: str, representations: Sequence[str]) -> list[etree._Element]:
    """The AIP as a PREMIS intellectual entity, and each of its representations.

    Package events link to the entity (``UUID`` = the AIP id) or to a
    representation (``local`` = ``<aip>/<rep>``, see
    :func:`~preservation.metadata.model.representation_identifier`); these
    objects are what those links resolve to, in the same document.
    """
    entity = etree.Element(
        _P_object, {f"{{{XSI_NS}}}type": "intellectualEntity"}, nsmap=_PREMIS_OBJECT_NSMAP
    )
    _identifier(entity, "object", PACKAGE_OBJECT_TYPE, aip_id)
    rep_ids = [representation_identifier(aip_id, name) for name in representations]
    for rep_id in rep_ids:
        _relationship(entity, "is represented by", LOCAL, rep_id)
    out = [entity]
    for rep_id in rep_ids:
        el = etree.Element(
            _P_object, {f"{{{XSI_NS}}}type": "representation"}, nsmap=_PREMIS_OBJECT_NSMAP
        )
        _identifier(el, "object", LOCAL, rep_id)
        _relationship(el, "represents", PACKAGE_OBJECT_TYPE, aip_id)
        out.append(el)
    return out


@contextmanager
def _output(dest: Path | str | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary stream for ``dest``; a path is written atomically (temp + rename).

    A half-written METS must never be mistaken for a finished one after a crash:
    the describe stage is re-run, and an existing METS.xml means "done".
    """
    if not isinstance(dest, str | os.PathLike):
        yield dest
        return
    path = Path(dest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _translated(what: str, **context: Any) -> Iterator[None]:
    """Turn lxml's refusals into a MetadataError a curator can act on."""
    try:
        yield
    except MetadataError:
        raise
    except (ValueError, etree.LxmlError) as exc:
        raise MetadataError(
            f"{what}: cannot be written as XML ({exc}); XML 1.0 cannot carry control "
            "characters or undecodable bytes in names or values",
            **context,
        ) from exc


class _Writer:
    """The state of one document being written: the xmlfile and the event ID map."""

    def __init__(self, xf: Any, package: PackageDescription) -> None:
        self.xf = xf
        self.package = package
        self.aip_id = str(package.aip_id)
        self.event_mets_ids: dict[Any, str] = {}
        self.agent_ids = {agent.id for agent in package.agents}

    def element(self, name: str, attrib: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.xf.element(_M + name, attrib or {}, **kw)

    def newline(self) -> None:
        # One block per line: the file stays greppable and diffable in a text editor.
        self.xf.write("\n")

    def header(self, kind: str, document_path: str) -> None:
        package = self.package
        with self.element(
            "metsHdr",
            {"CREATEDATE": package.created.isoformat(), f"{{{CSIP_NS}}}OAISPACKAGETYPE": "AIP"},
        ):
            for agent in package.agents:
                if agent.type == "software":
                    self._hdr_agent("CREATOR", "OTHER", agent.name, agent.version, "SOFTWARE")
            self._hdr_agent(
                "ARCHIVIST",
                "ORGANIZATION",
                package.organisation,
                TENANT_NOTE_PREFIX + package.tenant,
            )
            lowered = {k.lower(): v for k, v in package.bag_info.items()}
            for label, agent_type in (
                ("source-organization", "ORGANIZATION"),
                ("contact-name", "INDIVIDUAL"),
            ):
                for value in lowered.get(label, [])[:1]:
                    self._hdr_agent("OTHER", agent_type, value, None, other_role="SUBMITTER")
            for alt_type, value in (
                (ALT_VERSION, str(package.version)),
                (ALT_REPRESENTATION, package.representation),
            ):
                with self.element("altRecordID", {"TYPE": alt_type}):
                    self.xf.write(value)
            with self.element("metsDocumentID", {"TYPE": kind}):
                self.xf.write(document_path)
        self.newline()

    def _hdr_agent(
        self,
        role: str,
        agent_type: str,
        name: str,
        note: str | None,
        other_type: str | None = None,
        other_role: str | None = None,
    ) -> None:
        attrib = {"ROLE": role, "TYPE": agent_type}
        if other_type is not None:
            attrib = {"ROLE": role, "TYPE": "OTHER", "OTHERTYPE": other_type}
        if other_role is not None:
            attrib["OTHERROLE"] = other_role
        with self.element("agent", attrib):
            with self.element("name"):
                self.xf.write(name)
            if note is not None:
                with self.element("note"):
                    self.xf.write(note)

    def md_ref(self, ref: MetadataRef) -> None:
        attrib = {
            "LOCTYPE": "URL",
            _XL + "type": "simple",
            _XL + "href": href_for(ref.path),
            "MDTYPE": ref.mdtype,
            "MIMETYPE": ref.mime,
            "SIZE": str(ref.size),
            "CHECKSUM": ref.sha256,
            "CHECKSUMTYPE": "SHA-256",
        }
        if ref.mdtype not in _MDTYPES:
            attrib.update(MDTYPE="OTHER", OTHERMDTYPE=ref.mdtype)
        with self.element("mdRef", attrib):
            pass

    def dmd(self, files: Sequence[MetadataRef] = ()) -> list[str]:
        created = self.package.created.isoformat()
        with _translated("descriptive metadata (bag-info)", aip_id=self.aip_id):
            with self.element("dmdSec", {"ID": DC_DMD_ID, "CREATED": created, "STATUS": "CURRENT"}):
                with self.element("mdWrap", {"MDTYPE": "DC"}):
                    with self.element("xmlData", nsmap={"dc": DC_NS}):
                        for element, value in dublin_core(self.package):
                            with self.xf.element(f"{{{DC_NS}}}{element}"):
                                self.xf.write(value)
            self.newline()
            with self.element(
                "dmdSec", {"ID": BAG_INFO_DMD_ID, "CREATED": created, "STATUS": "CURRENT"}
            ):
                with self.element("mdWrap", {"MDTYPE": "OTHER", "OTHERMDTYPE": BAG_INFO_MDTYPE}):
                    with self.element("xmlData"):
                        info = etree.Element(f"{{{BAG_INFO_NS}}}bagInfo", nsmap=_BAG_INFO_NSMAP)
                        for label, values in self.package.bag_info.items():
                            for value in values:
                                _sub(info, f"{{{BAG_INFO_NS}}}field", value).set("label", label)
                        self.xf.write(info)
            self.newline()
            ids = [DC_DMD_ID, BAG_INFO_DMD_ID]
            for i, ref in enumerate(files, 1):
                ids.append(f"{DMD_FILE_PREFIX}{i}")
                attrib = {"ID": ids[-1], "CREATED": created, "STATUS": "CURRENT"}
                with self.element("dmdSec", attrib):
                    self.md_ref(ref)
                self.newline()
        return ids

    def digiprov(self, mets_id: str, mdtype: str, premis: etree._Element) -> None:
        with self.element("digiprovMD", {"ID": mets_id}):
            with self.element("mdWrap", {"MDTYPE": mdtype}):
                with self.element("xmlData"):
                    self.xf.write(premis)
        self.newline()

    def event(self, event: Event) -> str:
        if event.id in self.event_mets_ids:
            raise MetadataError(f"event {event.id} is given twice", aip_id=self.aip_id)
        for link in event.agents:
            if link.agent_id not in self.agent_ids:
                raise MetadataError(
                    f"event {event.id} ({event.type}) names agent {link.agent_id!r}, which is "
                    "not among the package's agents",
                    aip_id=self.aip_id,
                )
        mets_id = f"ev-{len(self.event_mets_ids) + 1}"
        with _translated(f"event {event.id} ({event.type})", aip_id=self.aip_id):
            self.digiprov(mets_id, "PREMIS:EVENT", _premis_event(event, self.aip_id))
        self.event_mets_ids[event.id] = mets_id
        return mets_id

    def package_amd(
        self, representations: Sequence[str], files: Sequence[MetadataRef] = ()
    ) -> list[str]:
        """Package objects, agents and package events, once; their METS IDs (for ADMID)."""
        ids: list[str] = [PACKAGE_TECH_ID]
        names = list(dict.fromkeys([self.package.representation, *representations]))
        with self.element("amdSec", {"ID": PACKAGE_AMD_ID}):
            self.newline()
            with self.element("techMD", {"ID": PACKAGE_TECH_ID}):
                with self.element("mdWrap", {"MDTYPE": "PREMIS:OBJECT"}):
                    with self.element("xmlData"):
                        for obj in premis_package_objects(self.aip_id, names):
                            self.xf.write(obj)
            self.newline()
            for i, agent in enumerate(self.package.agents, 1):
                with _translated(f"agent {agent.id}", aip_id=self.aip_id):
                    self.digiprov(f"agent-{i}", "PREMIS:AGENT", _premis_agent(agent))
                ids.append(f"agent-{i}")
            for event in self.package.events:
                ids.append(self.event(event))
            for i, ref in enumerate(files, 1):
                ids.append(f"{PROV_FILE_PREFIX}{i}")
                with self.element("digiprovMD", {"ID": ids[-1]}):
                    self.md_ref(ref)
                self.newline()
        self.newline()
        return ids

    def file_events(self, events: Iterable[Event]) -> None:
        iterator = iter(events)
        first = next(iterator, None)
        if first is None:
            return
        with self.element("amdSec", {"ID": EVENTS_AMD_ID}):
            self.newline()
            self.event(first)
            for event in iterator:
                self.event(event)
        self.newline()


def write_representation_mets(
    dest: Path | str | IO[bytes],
    package: PackageDescription,
    files: Iterable[FileObject],
    events: Iterable[Event] = (),
    *,
    file_group: str = "original",
    schemas_prefix: str = "../../schemas/",
) -> None:
    """Write the representation METS for ``package.representation``.

    ``files`` is consumed once, in order; their ``path`` must lie under
    ``representations/<rep>/``. ``events`` are the events that concern single
    files (per-file format identification with a warning, a migration); they
    are written before the files, so each file's ``event_ids`` may name them or
    the package's own events. A path ``dest`` is written atomically.

    Raises :class:`MetadataError` for a dangling event or agent reference, a
    duplicate file id or path, or a value XML cannot carry.
    """
    rep = package.representation
    prefix = f"representations/{rep}/"
    aip_id = str(package.aip_id)
    # Spool beside the destination: /tmp may be small, the AIP's disk is not.
    spool_dir = str(Path(dest).parent) if isinstance(dest, str | os.PathLike) else None
    with (
        _translated(f"representation METS of AIP {aip_id}", aip_id=aip_id),
        _output(dest) as out,
        tempfile.SpooledTemporaryFile(max_size=8 << 20, dir=spool_dir) as spool,
        etree.xmlfile(out, encoding="UTF-8") as xf,
    ):
        xf.write_declaration()
        root_attrib = {
            "OBJID": f"{aip_id}/{rep}",
            "LABEL": f"Representation {rep} of AIP {aip_id} version {package.version}",
            "TYPE": package.type,
            "PROFILE": package.profile,
            f"{{{XSI_NS}}}schemaLocation": _schema_location(schemas_prefix),
        }
        with xf.element(_M + "mets", root_attrib, nsmap=_ROOT_NSMAP):
            xf.write("\n")
            w = _Writer(xf, package)
            w.header(DOC_REPRESENTATION, f"{prefix}METS.xml")
            w.dmd()
            w.package_amd([rep])
            w.file_events(events)
            tree_entries = _write_files(w, files, prefix, file_group, spool)
            # The spooled fileSec is complete XML; hand it to the stream unchanged.
            xf.flush()
            spool.seek(0)
            shutil.copyfileobj(spool, out)
            out.write(b"\n")
            _write_physical_structmap(w, rep, tree_entries)
            xf.write("\n")


def _write_files(
    w: _Writer, files: Iterable[FileObject], prefix: str, file_group: str, spool: IO[bytes]
) -> list[tuple[str, str]]:
    """Per-file amdSecs to the document, fileSec entries to ``spool``; (tree key, id) back."""
    entries: list[tuple[str, str]] = []
    seen_ids: set[str] = set()
    with ExitStack() as stack:
        sxf = stack.enter_context(etree.xmlfile(spool, encoding="UTF-8"))
        stack.enter_context(
            sxf.element(
                _M + "fileSec", {"ID": "filesec"}, nsmap={"mets": METS_NS, "xlink": XLINK_NS}
            )
        )
        sxf.write("\n")
        stack.enter_context(sxf.element(_M + "fileGrp", {"ID": "grp-files", "USE": file_group}))
        sxf.write("\n")
        for file in files:
            if file.id.startswith(_RESERVED_ID_PREFIXES):
                raise MetadataError(
                    f"file id {file.id!r} starts like an ID the METS writer uses itself "
                    f"({', '.join(_RESERVED_ID_PREFIXES)})",
                    path=file.path,
                )
            if file.id in seen_ids:
                raise MetadataError(f"file id {file.id!r} is given twice", path=file.path)
            seen_ids.add(file.id)
            if file.held_in is not None:
                # An unchanged file of an earlier representation: same place in the tree.
                parts = file.path.split("/", 2)
                if len(parts) < 3 or parts[0] != "representations":
                    raise MetadataError(
                        f"file {file.id} path {file.path!r} is not in a representation",
                        path=file.path,
                    )
                if file.held_in >= w.package.version:
                    raise MetadataError(
                        f"file {file.id} is said to be held by version {file.held_in}, which "
                        f"is not earlier than this version {w.package.version}",
                        path=file.path,
                    )
                relpath = parts[2]
                href = held_href(w.aip_id, file.held_in, file.path)
            elif not file.path.startswith(prefix):
                raise MetadataError(
                    f"file {file.id} path {file.path!r} is not under {prefix!r}", path=file.path
                )
            else:
                relpath = file.path[len(prefix) :]
                href = href_for(relpath)
            admid = [f"tech-{file.id}"]
            for event_id in file.event_ids:
                mets_id = w.event_mets_ids.get(event_id)
                if mets_id is None:
                    raise MetadataError(
                        f"file {file.id} names event {event_id}, which is neither a package "
                        "event nor among the events given",
                        path=file.path,
                    )
                admid.append(mets_id)
            with _translated(f"file {file.id}", path=file.original_name, aip_id=w.aip_id):
                with w.element("amdSec", {"ID": f"amd-{file.id}"}):
                    with w.element("techMD", {"ID": f"tech-{file.id}"}):
                        with w.element("mdWrap", {"MDTYPE": "PREMIS:OBJECT"}):
                            with w.element("xmlData"):
                                w.xf.write(_premis_object(file))
                w.newline()
                attrib = {"ID": file.id}
                if file.format.mime:
                    attrib["MIMETYPE"] = file.format.mime
                attrib.update(
                    SIZE=str(file.size),
                    CHECKSUM=file.digests["sha256"],
                    CHECKSUMTYPE="SHA-256",
                    ADMID=" ".join(admid),
                )
                with sxf.element(_M + "file", attrib):
                    flocat = {
                        "LOCTYPE": "URL",
                        _XL + "type": "simple",
                        _XL + "href": href,
                    }
                    with sxf.element(_M + "FLocat", flocat):
                        pass
                sxf.write("\n")
            entries.append((_tree_key(relpath), file.id))
    return entries


def _tree_key(relpath: str) -> str:
    """A sort key that puts a folder's files before its sub-folders (METS: fptr before div).

    One string per file rather than a tuple of tuples keeps 100,000 keys small.
    "\\x00" ends the folders and "\\x01" starts each one; neither can occur in a
    name that reached this point, because XML 1.0 cannot carry them.
    """
    *dirs, name = relpath.split("/")
    return "".join("\x01" + d for d in dirs) + "\x00" + name


def _write_physical_structmap(w: _Writer, rep: str, entries: list[tuple[str, str]]) -> None:
    """Nested divs mirroring the folders, one fptr per file, in a single pass."""
    entries.sort()
    for previous, current in zip(entries, entries[1:], strict=False):
        if previous[0] == current[0]:
            path = current[0].replace("\x00", "/").replace("\x01", "/").lstrip("/")
            raise MetadataError(f"two files have the same path {path!r}", path=path)
    with w.element("structMap", {"ID": "struct-physical", "TYPE": "PHYSICAL", "LABEL": "CSIP"}):
        with w.element("div", {"ID": "div-representation", "LABEL": rep}):
            w.newline()
            open_dirs: list[tuple[str, Any]] = []
            for key, file_id in entries:
                dirs = key.partition("\x00")[0].split("\x01")[1:]
                common = 0
                while (
                    common < min(len(open_dirs), len(dirs)) and open_dirs[common][0] == dirs[common]
                ):
                    common += 1
                while len(open_dirs) > common:
                    open_dirs.pop()[1].__exit__(None, None, None)
                    w.newline()
                for name in dirs[common:]:
                    context = w.element("div", {"LABEL": name})
                    context.__enter__()
                    open_dirs.append((name, context))
                    w.newline()
                with w.element("fptr", {"FILEID": file_id}):
                    pass
                w.newline()
            while open_dirs:
                open_dirs.pop()[1].__exit__(None, None, None)
                w.newline()


def write_root_mets(
    dest: Path | str | IO[bytes],
    package: PackageDescription,
    representations: Sequence[RepresentationRef],
    *,
    schemas: Sequence[FileRef] = (),
    previous_versions: Sequence[tuple[int, str]] = (),
    schemas_prefix: str = "schemas/",
    descriptive: Sequence[MetadataRef] = (),
    preservation: Sequence[MetadataRef] = (),
) -> None:
    """Write the root METS of one AIP version: the package, and where everything is.

    ``descriptive`` and ``preservation`` are the package's metadata files
    (``metadata/descriptive/dc.xml``, ``metadata/preservation/premis.xml``);
    each gets a ``dmdSec`` or a package ``digiprovMD`` with an ``mdRef``
    carrying its size and sha256.

    ``representations`` lists every representation of the current state; one
    whose ``version`` is older than ``package.version`` is pointed to in that
    version's folder (``../../<aip>.vK/data/...``), so a version N METS is
    complete without copying anything. ``previous_versions`` names other files
    of earlier versions as ``(version, path relative to that version's data/)``.
    """
    aip_id = str(package.aip_id)
    names = [rep.name for rep in representations]
    if len(set(names)) != len(names):
        raise MetadataError(f"representation names are not unique: {names}", aip_id=aip_id)
    for rep in representations:
        if rep.version > package.version:
            raise MetadataError(
                f"representation {rep.name} is from version {rep.version}, after this "
                f"version {package.version}",
                aip_id=aip_id,
            )
    for version, path in previous_versions:
        if not 1 <= version < package.version:
            raise MetadataError(
                f"previous-version file {path!r} names version {version}; it must be "
                f"between 1 and {package.version - 1}",
                aip_id=aip_id,
            )
        FileRef(path=path, size=0, sha256="0")  # the same path rules as any package file
    with (
        _translated(f"root METS of AIP {aip_id}", aip_id=aip_id),
        _output(dest) as out,
        etree.xmlfile(out, encoding="UTF-8") as xf,
    ):
        xf.write_declaration()
        root_attrib = {
            "OBJID": aip_id,
            "LABEL": f"AIP {aip_id} version {package.version}",
            "TYPE": package.type,
            "PROFILE": package.profile,
            f"{{{XSI_NS}}}schemaLocation": _schema_location(schemas_prefix),
        }
        with xf.element(_M + "mets", root_attrib, nsmap=_ROOT_NSMAP):
            xf.write("\n")
            w = _Writer(xf, package)
            w.header(DOC_ROOT, "METS.xml")
            dmd_ids = w.dmd(descriptive)
            amd_ids = w.package_amd([r.name for r in representations], preservation)
            _write_root_filesec(w, representations, schemas, previous_versions)
            _write_csip_structmap(w, dmd_ids, amd_ids, representations, schemas, previous_versions)
            xf.write("\n")


def _file_entry(
    w: _Writer,
    file_id: str,
    href: str,
    mime: str | None,
    size: int | None = None,
    sha256: str | None = None,
) -> None:
    attrib = {"ID": file_id}
    if mime:
        attrib["MIMETYPE"] = mime
    if size is not None and sha256 is not None:
        attrib.update(SIZE=str(size), CHECKSUM=sha256, CHECKSUMTYPE="SHA-256")
    with w.element("file", attrib):
        with w.element("FLocat", {"LOCTYPE": "URL", _XL + "type": "simple", _XL + "href": href}):
            pass
    w.newline()


def _rep_href(w: _Writer, rep: RepresentationRef) -> str:
    if rep.version == w.package.version:
        return href_for(rep.path)
    return _previous_href(w.aip_id, rep.version, rep.path)


def _write_root_filesec(
    w: _Writer,
    representations: Sequence[RepresentationRef],
    schemas: Sequence[FileRef],
    previous_versions: Sequence[tuple[int, str]],
) -> None:
    if not (representations or schemas or previous_versions):
        return  # fileSec needs at least one fileGrp; the structMap alone is valid
    with w.element("fileSec", {"ID": "filesec"}):
        w.newline()
        if schemas:
            with w.element("fileGrp", {"ID": "grp-schemas", "USE": SCHEMAS_USE}):
                w.newline()
                for i, ref in enumerate(schemas, 1):
                    _file_entry(
                        w, f"schema-{i}", href_for(ref.path), ref.mime, ref.size, ref.sha256
                    )
            w.newline()
        for rep in representations:
            with w.element(
                "fileGrp", {"ID": f"grp-rep-{rep.name}", "USE": REPRESENTATIONS_USE + rep.name}
            ):
                w.newline()
                _file_entry(
                    w, f"mets-rep-{rep.name}", _rep_href(w, rep), "text/xml", rep.size, rep.sha256
                )
            w.newline()
        if previous_versions:
            with w.element("fileGrp", {"ID": "grp-previous", "USE": PREVIOUS_USE}):
                w.newline()
                for i, (version, path) in enumerate(previous_versions, 1):
                    _file_entry(w, f"prev-{i}", _previous_href(w.aip_id, version, path), None)
            w.newline()
    w.newline()


def _write_csip_structmap(
    w: _Writer,
    dmd_ids: list[str],
    amd_ids: list[str],
    representations: Sequence[RepresentationRef],
    schemas: Sequence[FileRef],
    previous_versions: Sequence[tuple[int, str]],
) -> None:
    with w.element("structMap", {"ID": "struct-csip", "TYPE": "PHYSICAL", "LABEL": "CSIP"}):
        with w.element("div", {"ID": "div-package", "LABEL": w.aip_id}):
            w.newline()
            metadata = {"ID": "div-metadata", "LABEL": "Metadata", "DMDID": " ".join(dmd_ids)}
            if amd_ids:
                metadata["ADMID"] = " ".join(amd_ids)
            with w.element("div", metadata):
                pass
            w.newline()
            with w.element("div", {"ID": "div-schemas", "LABEL": SCHEMAS_USE}):
                for i in range(1, len(schemas) + 1):
                    with w.element("fptr", {"FILEID": f"schema-{i}"}):
                        pass
            w.newline()
            for rep in representations:
                label = REPRESENTATIONS_USE + rep.name
                with w.element("div", {"ID": f"div-rep-{rep.name}", "LABEL": label}):
                    mptr = {
                        "LOCTYPE": "URL",
                        _XL + "type": "simple",
                        _XL + "href": _rep_href(w, rep),
                        _XL + "title": f"mets-rep-{rep.name}",
                    }
                    with w.element("mptr", mptr):
                        pass
                    with w.element("fptr", {"FILEID": f"mets-rep-{rep.name}"}):
                        pass
                w.newline()
            if previous_versions:
                with w.element("div", {"ID": "div-previous", "LABEL": PREVIOUS_USE}):
                    by_version: dict[int, list[int]] = {}
                    for i, (version, _path) in enumerate(previous_versions, 1):
                        by_version.setdefault(version, []).append(i)
                    for version in sorted(by_version):
                        with w.element("div", {"LABEL": f"v{version}"}):
                            for i in by_version[version]:
                                with w.element("fptr", {"FILEID": f"prev-{i}"}):
                                    pass
                w.newline()
