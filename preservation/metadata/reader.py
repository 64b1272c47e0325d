"""Read our METS documents back into the model, streaming.

This is how the catalogue is rebuilt from tapes alone, so it returns
everything the writer was given: the package (identity, tenant, bag-info,
agents, package events), every file with its digests, format and original
name, the per-file events, and for a root METS the representations, schemas
and earlier-version files it points to. ``read_mets(write(x)) == x`` is the
tested promise.

It uses ``iterparse`` and clears each element once handled, so memory grows
with the returned values, not with the document's tree. The parser expands
no entities, loads no DTD and never touches the network (docs/architecture.md §9): a METS
found on a tape is data, not instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote
from uuid import UUID

from lxml import etree

from preservation.errors import MetadataError
from preservation.metadata import mets
from preservation.metadata.model import (
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    FileRef,
    MetadataRef,
    ObjectLink,
    PackageDescription,
    RepresentationRef,
)

#: A file's significant properties, as FileObject.properties holds them.
Properties = dict[str, int | float | str | bool | list[str]]

__all__ = ["ParsedMets", "read_mets"]

_M = f"{{{mets.METS_NS}}}"
_P = f"{{{mets.PREMIS_NS}}}"
_XL = f"{{{mets.XLINK_NS}}}"
_DC = f"{{{mets.DC_NS}}}"
_BI = f"{{{mets.BAG_INFO_NS}}}"
_ALGORITHM_FROM_PREMIS = {
    premis: bagit
    for bagit in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
    if (premis := mets.digest_algorithm_name(bagit))
}
_PREVIOUS = re.compile(r"\.\./\.\./(?P<aip>[^/]+)\.v(?P<version>[0-9]+)/data/(?P<path>.+)\Z", re.S)
# From a representation METS, two folders deeper: a file an earlier version holds.
_HELD = re.compile(
    r"\.\./\.\./\.\./\.\./(?P<aip>[^/]+)\.v(?P<version>[0-9]+)/data/(?P<path>representations/.+)\Z",
    re.S,
)


@dataclass(slots=True)
class ParsedMets:
    """What one METS document says.

    ``kind`` is ``"representation"`` or ``"root"``. ``files`` and ``events``
    (events of single files) are filled for a representation METS;
    ``representations``, ``schemas`` and ``previous_versions`` for a root METS.
    ``package_objects`` are the package-level PREMIS objects of either, as
    ``(xsi:type, identifier type, identifier)``: what package events link to.
    ``descriptive`` and ``preservation`` are the metadata files a root METS
    points to (``mdRef``).
    """

    kind: str
    package: PackageDescription
    files: list[FileObject] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    file_group: str | None = None
    dublin_core: list[tuple[str, str]] = field(default_factory=list)
    representations: list[RepresentationRef] = field(default_factory=list)
    schemas: list[FileRef] = field(default_factory=list)
    previous_versions: list[tuple[int, str]] = field(default_factory=list)
    package_objects: list[tuple[str, str, str]] = field(default_factory=list)
    descriptive: list[MetadataRef] = field(default_factory=list)
    preservation: list[MetadataRef] = field(default_factory=list)


def _text(el: etree._Element, path: str) -> str | None:
    return el.findtext(path)


def _required(el: etree._Element, path: str, what: str) -> str:
    value = el.findtext(path)
    if value is None:
        raise MetadataError(f"{what}: missing {path.replace(_P, 'premis:').replace(_M, 'mets:')}")
    return value


class _Reader:
    """Accumulates one document's values as iterparse hands over its sections."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.root_attrib: dict[str, str] = {}
        self.kind: str | None = None
        self.created: datetime | None = None
        self.organisation: str | None = None
        self.tenant: str | None = None
        self.version: int | None = None
        self.representation: str | None = None
        self.bag_info: dict[str, list[str]] = {}
        self.dc: list[tuple[str, str]] = []
        self.agents: list[Agent] = []
        self.package_events: list[Event] = []
        self.file_events: list[Event] = []
        self.event_by_mets_id: dict[str, UUID] = {}
        # techMD ID -> (object id, original name, size, digests, format without MIME,
        # properties, the source a migration derived it from)
        self.objects: dict[
            str,
            tuple[
                str,
                str,
                int,
                dict[str, str],
                FileFormat,
                Properties,
                str | None,
            ],
        ] = {}
        self.files: list[FileObject] = []
        self.file_group: str | None = None
        self.representations: list[RepresentationRef] = []
        self.schemas: list[FileRef] = []
        self.previous: list[tuple[int, str]] = []
        self.package_objects: list[tuple[str, str, str]] = []
        self.descriptive: list[MetadataRef] = []
        self.preservation: list[MetadataRef] = []

    def error(self, message: str) -> MetadataError:
        return MetadataError(f"{self.source}: {message}", path=self.source)

    @property
    def aip_id(self) -> str:
        return self.root_attrib.get("OBJID", "").split("/")[0]

    # -- sections ------------------------------------------------------------------------

    def header(self, hdr: etree._Element) -> None:
        root = hdr.getparent()
        if root is None or root.tag != _M + "mets":
            raise self.error("metsHdr is not a child of mets:mets")
        self.root_attrib = {str(k): str(v) for k, v in root.attrib.items()}
        created = hdr.get("CREATEDATE")
        self.created = datetime.fromisoformat(created) if created else None
        for agent in hdr.iterchildren(_M + "agent"):
            if agent.get("ROLE") == "ARCHIVIST" and agent.get("TYPE") == "ORGANIZATION":
                self.organisation = agent.findtext(_M + "name")
                for note in agent.iterchildren(_M + "note"):
                    if (note.text or "").startswith(mets.TENANT_NOTE_PREFIX):
                        self.tenant = note.text[len(mets.TENANT_NOTE_PREFIX) :]  # type: ignore[index]
        for alt in hdr.iterchildren(_M + "altRecordID"):
            if alt.get("TYPE") == mets.ALT_VERSION:
                self.version = int(alt.text or "0")
            elif alt.get("TYPE") == mets.ALT_REPRESENTATION:
                self.representation = alt.text
        document = hdr.find(_M + "metsDocumentID")
        self.kind = document.get("TYPE") if document is not None else None
        if self.kind not in (mets.DOC_ROOT, mets.DOC_REPRESENTATION):
            raise self.error(
                "not a METS document written by this pipeline (no metsDocumentID TYPE)"
            )

    def md_ref(self, ref: etree._Element) -> MetadataRef:
        mdtype = ref.get("MDTYPE", "")
        return MetadataRef(
            path=unquote(ref.get(_XL + "href", "")),
            mdtype=ref.get("OTHERMDTYPE", mdtype) if mdtype == "OTHER" else mdtype,
            size=int(ref.get("SIZE", "-1")),
            sha256=ref.get("CHECKSUM", ""),
            mime=ref.get("MIMETYPE", ""),
        )

    def dmd(self, dmd: etree._Element) -> None:
        ref = dmd.find(_M + "mdRef")
        if ref is not None:
            self.descriptive.append(self.md_ref(ref))
            return
        wrap = dmd.find(_M + "mdWrap")
        data = wrap.find(_M + "xmlData") if wrap is not None else None
        if wrap is None or data is None:
            return
        if wrap.get("MDTYPE") == "DC":
            for el in data:
                if isinstance(el.tag, str) and el.tag.startswith(_DC):
                    self.dc.append((el.tag[len(_DC) :], el.text or ""))
        elif wrap.get("OTHERMDTYPE") == mets.BAG_INFO_MDTYPE:
            for el in data.iter(_BI + "field"):
                self.bag_info.setdefault(el.get("label", ""), []).append(el.text or "")

    def digiprov(self, md: etree._Element) -> None:
        ref = md.find(_M + "mdRef")
        if ref is not None:
            self.preservation.append(self.md_ref(ref))
            return
        wrap = md.find(_M + "mdWrap")
        if wrap is None:
            return
        mdtype = wrap.get("MDTYPE")
        if mdtype == "PREMIS:AGENT":
            for el in wrap.iter(_P + "agent"):
                self.agents.append(self.agent(el))
        elif mdtype == "PREMIS:EVENT":
            amd = md.getparent()
            package_level = amd is not None and amd.get("ID") == mets.PACKAGE_AMD_ID
            for el in wrap.iter(_P + "event"):
                event = self.event(el)
                self.event_by_mets_id[md.get("ID", "")] = event.id
                (self.package_events if package_level else self.file_events).append(event)

    def agent(self, el: etree._Element) -> Agent:
        return Agent(
            id=_required(el, f"{_P}agentIdentifier/{_P}agentIdentifierValue", "PREMIS agent"),
            name=_required(el, _P + "agentName", "PREMIS agent"),
            type=_required(el, _P + "agentType", "PREMIS agent"),
            version=_text(el, _P + "agentVersion"),
            note=_text(el, _P + "agentNote"),
        )

    def event(self, el: etree._Element) -> Event:
        what = "PREMIS event"
        agents = tuple(
            AgentLink(
                _required(link, _P + "linkingAgentIdentifierValue", what),
                _text(link, _P + "linkingAgentRole"),
            )
            for link in el.iterchildren(_P + "linkingAgentIdentifier")
        )
        objects: list[ObjectLink] = []
        for link in el.iterchildren(_P + "linkingObjectIdentifier"):
            id_type = _text(link, _P + "linkingObjectIdentifierType")
            value = _required(link, _P + "linkingObjectIdentifierValue", what)
            role = _text(link, _P + "linkingObjectRole")
            if id_type == mets.PACKAGE_OBJECT_TYPE and value == self.aip_id and role is None:
                continue  # the implicit "whole package" link
            objects.append(
                ObjectLink(value, role, None if id_type in (None, mets.LOCAL) else id_type)
            )
        info = el.find(_P + "eventOutcomeInformation")
        return Event(
            id=UUID(_required(el, f"{_P}eventIdentifier/{_P}eventIdentifierValue", what)),
            type=_required(el, _P + "eventType", what),
            datetime=datetime.fromisoformat(_required(el, _P + "eventDateTime", what)),
            outcome=_required(info, _P + "eventOutcome", what) if info is not None else "",
            agents=agents,
            objects=tuple(objects),
            detail=_text(el, f"{_P}eventDetailInformation/{_P}eventDetail"),
            outcome_detail=(
                _text(info, f"{_P}eventOutcomeDetail/{_P}eventOutcomeDetailNote")
                if info is not None
                else None
            ),
        )

    def tech(self, md: etree._Element) -> None:
        if md.get("ID") == mets.PACKAGE_TECH_ID:
            for el in md.iterfind(f"{_M}mdWrap/{_M}xmlData/{_P}object"):
                self.package_objects.append(
                    (
                        el.get(f"{{{mets.XSI_NS}}}type", ""),
                        _required(el, f"{_P}objectIdentifier/{_P}objectIdentifierType", "object"),
                        _required(el, f"{_P}objectIdentifier/{_P}objectIdentifierValue", "object"),
                    )
                )
            return
        obj = md.find(f"{_M}mdWrap/{_M}xmlData/{_P}object")
        if obj is None:
            return
        what = f"PREMIS object in {md.get('ID')}"
        chars = obj.find(_P + "objectCharacteristics")
        if chars is None:
            raise self.error(f"{what} has no objectCharacteristics")
        digests = {}
        for fixity in chars.iterchildren(_P + "fixity"):
            algorithm = _required(fixity, _P + "messageDigestAlgorithm", what)
            bagit_name = _ALGORITHM_FROM_PREMIS.get(algorithm, algorithm.lower())
            digests[bagit_name] = _required(fixity, _P + "messageDigest", what)
        formats = list(chars.iterchildren(_P + "format"))
        if not formats:
            raise self.error(f"{what} has no format")
        puids = tuple(
            key
            for f in formats
            if (key := f.findtext(f"{_P}formatRegistry/{_P}formatRegistryKey")) is not None
        )
        first = formats[0]
        notes = [n.text or "" for n in first.iterchildren(_P + "formatNote")]
        name: str | None = first.findtext(f"{_P}formatDesignation/{_P}formatName")
        if mets.UNIDENTIFIED_NOTE in notes:
            name = None

        def note(prefix: str) -> str | None:
            return next((n[len(prefix) :] for n in notes if n.startswith(prefix)), None)

        fmt = FileFormat(
            puids=puids,
            name=name,
            version=first.findtext(f"{_P}formatDesignation/{_P}formatVersion"),
            basis=note(mets.BASIS_NOTE),
            tool=note(mets.TOOL_NOTE),
            error=note(mets.FAILED_NOTE),
            warning=note(mets.WARNING_NOTE),
        )
        derived_from = None
        for rel in obj.iterchildren(_P + "relationship"):
            if _text(rel, _P + "relationshipType") == "derivation" and (
                _text(rel, _P + "relationshipSubType") == mets.DERIVED_SUBTYPE
            ):
                derived_from = _text(
                    rel, f"{_P}relatedObjectIdentifier/{_P}relatedObjectIdentifierValue"
                )
        self.objects[md.get("ID", "")] = (
            _required(obj, f"{_P}objectIdentifier/{_P}objectIdentifierValue", what),
            _required(obj, _P + "originalName", what),
            int(_required(chars, _P + "size", what)),
            digests,
            fmt,
            _properties(chars),
            derived_from,
        )

    def file(self, el: etree._Element) -> None:
        group = el.getparent()
        use = group.get("USE", "") if group is not None else ""
        flocat = el.find(_M + "FLocat")
        href = unquote(flocat.get(_XL + "href", "")) if flocat is not None else ""
        size = int(el.get("SIZE", "-1"))
        sha256 = el.get("CHECKSUM", "")
        if self.kind == mets.DOC_REPRESENTATION:
            self.representation_file(el, use, href, size, sha256)
        elif use == mets.SCHEMAS_USE:
            self.schemas.append(FileRef(href, size, sha256, el.get("MIMETYPE")))
        elif use.startswith(mets.REPRESENTATIONS_USE):
            name = use[len(mets.REPRESENTATIONS_USE) :]
            version = self.version or 0
            match = _PREVIOUS.match(href)
            if match:
                version = int(match["version"])
            self.representations.append(RepresentationRef(name, version, sha256, size))
        elif use == mets.PREVIOUS_USE:
            match = _PREVIOUS.match(href)
            if match is None:
                raise self.error(f"previous-version file {href!r} does not name a version")
            self.previous.append((int(match["version"]), match["path"]))

    def representation_file(
        self, el: etree._Element, use: str, href: str, size: int, sha256: str
    ) -> None:
        self.file_group = use
        admid = (el.get("ADMID") or "").split()
        file_id = el.get("ID", "")
        tech_ids = [i for i in admid if i in self.objects]
        if len(tech_ids) != 1:
            raise self.error(f"file {file_id} does not point to exactly one PREMIS object")
        object_id, original, premis_size, digests, fmt, properties, derived_from = (
            self.objects.pop(tech_ids[0])
        )
        if object_id != file_id or premis_size != size or digests.get("sha256") != sha256:
            raise self.error(
                f"file {file_id}: fileSec and PREMIS object disagree on id, size or sha256"
            )
        try:
            event_ids = tuple(self.event_by_mets_id[i] for i in admid if i != tech_ids[0])
        except KeyError as exc:
            raise self.error(f"file {file_id} points to unknown section {exc.args[0]}") from None
        mime = el.get("MIMETYPE")
        if mime is not None:
            fmt = replace(fmt, mime=mime)
        held = _HELD.match(href)
        if held is not None and held["aip"] != self.aip_id:
            raise self.error(f"file {file_id} points into another AIP ({held['aip']})")
        self.files.append(
            FileObject(
                id=file_id,
                original_name=original,
                path=held["path"] if held else f"representations/{self.representation}/{href}",
                held_in=int(held["version"]) if held else None,
                derived_from=derived_from,
                size=size,
                digests=digests,
                format=fmt,
                event_ids=event_ids,
                properties=properties,
            )
        )

    # -- result ----------------------------------------------------------------------------

    def result(self) -> ParsedMets:
        if self.kind is None or self.created is None or self.version is None:
            raise self.error("no METS header with creation date, version and document type")
        if self.organisation is None or self.tenant is None or self.representation is None:
            raise self.error(
                "the METS header names no archive organisation, tenant or representation"
            )
        try:
            aip_id = UUID(self.aip_id)
        except ValueError:
            raise self.error(
                f"OBJID {self.root_attrib.get('OBJID')!r} is not an AIP UUID"
            ) from None
        package = PackageDescription(
            aip_id=aip_id,
            version=self.version,
            tenant=self.tenant,
            organisation=self.organisation,
            created=self.created,
            bag_info=self.bag_info,
            representation=self.representation,
            profile=self.root_attrib.get("PROFILE", ""),
            type=self.root_attrib.get("TYPE", ""),
            agents=tuple(self.agents),
            events=tuple(self.package_events),
        )
        if self.objects:
            orphans = ", ".join(sorted(self.objects)[:5])
            raise self.error(f"PREMIS objects no file points to: {orphans}")
        return ParsedMets(
            kind=self.kind,
            package=package,
            files=self.files,
            events=self.file_events,
            file_group=self.file_group,
            dublin_core=self.dc,
            representations=self.representations,
            schemas=self.schemas,
            previous_versions=self.previous,
            package_objects=self.package_objects,
            descriptive=self.descriptive,
            preservation=self.preservation,
        )


_HANDLERS = {
    _M + "metsHdr": _Reader.header,
    _M + "dmdSec": _Reader.dmd,
    _M + "digiprovMD": _Reader.digiprov,
    _M + "techMD": _Reader.tech,
    _M + "file": _Reader.file,
}
# Handled or not, these are cleared when they end, so the tree never grows.
_RELEASED = (*_HANDLERS, _M + "amdSec", _M + "fptr", _M + "div")


def _release(el: etree._Element) -> None:
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


def read_mets(path: str | Path) -> ParsedMets:
    """Parse one METS document this pipeline wrote (root or representation).

    Raises :class:`MetadataError` naming the file if it is not well-formed, not
    ours, or inconsistent (a file without its PREMIS object, a dangling ADMID).
    """
    reader = _Reader(str(path))
    try:
        for _action, el in etree.iterparse(
            str(path),
            events=("end",),
            tag=_RELEASED,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        ):
            handler = _HANDLERS.get(el.tag)
            if handler is not None:
                handler(reader, el)
            _release(el)
    except etree.XMLSyntaxError as exc:
        raise reader.error(f"not well-formed XML: {exc}") from exc
    except OSError as exc:
        raise reader.error(f"cannot read: {exc}") from exc
    except MetadataError as exc:
        if exc.path == reader.source:
            raise
        raise reader.error(exc.message) from exc  # a model invariant, named with the file
    except (ValueError, TypeError) as exc:
        raise reader.error(f"unexpected value: {exc}") from exc
    return reader.result()


def _properties(chars: etree._Element) -> Properties:
    """A file's significant properties, typed as the writer's table says."""
    out: Properties = {}
    tag = f"{{{mets.CHARACTERISATION_NS}}}significantProperties"
    for box in chars.iterchildren(_P + "objectCharacteristicsExtension"):
        for props in box.iterchildren(tag):
            for el in props.iterchildren(etree.Element):
                name = etree.QName(el).localname
                text = el.text or ""
                if name in mets.PROPERTY_LISTS:
                    out[name] = text.split("\n") if text else []
                    continue
                kind = mets.PROPERTY_TYPES.get(name, str)
                out[name] = text == "true" if kind is bool else kind(text)
    return out
