"""The METS and PREMIS of a Dissemination Information Package (E-ARK DIP, CSIP layout).

A DIP is not an AIP: it holds a chosen set of files for one user, so its
metadata says what it is (``csip:OAISPACKAGETYPE="DIP"``), which AIP and
version it came from (``altRecordID``, and a PREMIS relationship from the DIP
to the AIP), and, for each file it holds, the digest to check it by, its
format, and the AIP file it was copied or made from. An access rendition has
a PREMIS ``migration`` event naming the tool that made it.

The writers stream (lxml ``xmlfile``), file by file, so a DIP of a million
files does not build its METS in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from lxml import etree

from preservation.metadata.mets import (
    CSIP_NS,
    DC_NS,
    METS_NS,
    PREMIS_NS,
    XLINK_NS,
    XSI_NS,
    _premis_agent,
    _premis_event,
    _premis_object,
    href_for,
)
from preservation.metadata.model import Agent, Event, FileFormat, FileObject

__all__ = [
    "DIP_PROFILE",
    "DipDescription",
    "DipFile",
    "aip_file_uri",
    "write_dip_mets",
    "write_dip_premis",
]

_M = f"{{{METS_NS}}}"
_P = f"{{{PREMIS_NS}}}"
_XL = f"{{{XLINK_NS}}}"
_NSMAP = {"mets": METS_NS, "xlink": XLINK_NS, "xsi": XSI_NS, "csip": CSIP_NS}
_SCHEMAS = (
    f"{METS_NS} https://www.loc.gov/standards/mets/mets.xsd "
    f"{XLINK_NS} https://www.loc.gov/standards/xlink/xlink.xsd"
)
#: The E-ARK DIP specification's METS profile (it extends CSIP's).
DIP_PROFILE = "https://earkdip.dilcis.eu/profile/E-ARK-DIP.xml"
PREMIS_PATH = "metadata/preservation/premis.xml"
PREMIS_AMD_ID = "amd-dip"
PREMIS_MD_ID = "digiprov-dip"
DC_DMD_ID = "dmd-dc"
#: altRecordID TYPEs: the AIP a DIP was made from, and which of its versions.
ALT_AIP = "AIP"
ALT_AIP_VERSION = "AIP-VERSION"


@dataclass(frozen=True)
class DipDescription:
    dip_id: str
    aip_id: str
    aip_version: int
    tenant: str
    kind: str  # original | preservation | access
    created: datetime
    requested_by: str
    software: Agent
    descriptive: dict[str, list[str]] = field(default_factory=dict)

    @property
    def representation(self) -> str:
        return self.kind

    @property
    def aip_uri(self) -> str:
        return f"urn:uuid:{self.aip_id}"


@dataclass(frozen=True)
class DipFile:
    """One file of the DIP: what it is, and which file of the AIP it came from."""

    id: str  # an NCName, unique in the DIP ("file-000001")
    path: str  # relative to the DIP's data/: representations/<kind>/data/...
    size: int
    sha256: str
    source: str  # aip_file_uri() of the AIP file it was copied or made from
    original_name: str
    format: FileFormat = field(default_factory=FileFormat)
    event_ids: tuple[Any, ...] = ()


def aip_file_uri(aip_id: str, version: int, member: str) -> str:
    """A file of an AIP, named as its tar on tape holds it (``<aip>.vN/data/...``)."""
    return href_for(f"{aip_id}.v{version}/{member}")


def _hdr(xf: Any, dip: DipDescription) -> None:
    with xf.element(
        _M + "metsHdr",
        {"CREATEDATE": dip.created.isoformat(), f"{{{CSIP_NS}}}OAISPACKAGETYPE": "DIP"},
    ):
        with xf.element(
            _M + "agent", {"ROLE": "CREATOR", "TYPE": "OTHER", "OTHERTYPE": "SOFTWARE"}
        ):
            with xf.element(_M + "name"):
                xf.write(dip.software.name)
            if dip.software.version:
                with xf.element(_M + "note", {f"{{{CSIP_NS}}}NOTETYPE": "SOFTWARE VERSION"}):
                    xf.write(dip.software.version)
        with xf.element(_M + "agent", {"ROLE": "OTHER", "OTHERROLE": "REQUESTER", "TYPE": "OTHER"}):
            with xf.element(_M + "name"):
                xf.write(dip.requested_by or "unknown")
        with xf.element(_M + "altRecordID", {"TYPE": ALT_AIP}):
            xf.write(dip.aip_id)
        with xf.element(_M + "altRecordID", {"TYPE": ALT_AIP_VERSION}):
            xf.write(str(dip.aip_version))
        with xf.element(_M + "metsDocumentID"):
            xf.write("METS.xml")
    xf.write("\n")


def write_dip_mets(
    dest: IO[bytes] | Path,
    dip: DipDescription,
    files: Iterable[DipFile],
    *,
    premis_size: int,
    premis_sha256: str,
) -> None:
    """The DIP's root METS: header, descriptive record, PREMIS by reference, every file."""
    files = list(files) if not isinstance(files, Sequence) else files
    rep = dip.representation
    with etree.xmlfile(dest, encoding="UTF-8") as xf:
        xf.write_declaration()
        attrib = {
            "OBJID": dip.dip_id,
            "LABEL": f"DIP of AIP {dip.aip_id} version {dip.aip_version} ({dip.kind})",
            "TYPE": "Mixed",
            "PROFILE": DIP_PROFILE,
            f"{{{CSIP_NS}}}CONTENTINFORMATIONTYPE": "MIXED",
            f"{{{XSI_NS}}}schemaLocation": _SCHEMAS,
        }
        with xf.element(_M + "mets", attrib, nsmap=_NSMAP):
            xf.write("\n")
            _hdr(xf, dip)
            if dip.descriptive:
                with xf.element(
                    _M + "dmdSec",
                    {"ID": DC_DMD_ID, "CREATED": dip.created.isoformat(), "STATUS": "CURRENT"},
                ):
                    with xf.element(_M + "mdWrap", {"MDTYPE": "DC"}):
                        with xf.element(_M + "xmlData", nsmap={"dc": DC_NS}):
                            for element, values in sorted(dip.descriptive.items()):
                                for value in values:
                                    with xf.element(f"{{{DC_NS}}}{element}"):
                                        xf.write(str(value))
                xf.write("\n")
            with xf.element(_M + "amdSec", {"ID": PREMIS_AMD_ID}):
                with xf.element(
                    _M + "digiprovMD",
                    {"ID": PREMIS_MD_ID, "CREATED": dip.created.isoformat(), "STATUS": "CURRENT"},
                ):
                    with xf.element(
                        _M + "mdRef",
                        {
                            "LOCTYPE": "URL",
                            _XL + "type": "simple",
                            _XL + "href": PREMIS_PATH,
                            "MDTYPE": "PREMIS",
                            "MIMETYPE": "text/xml",
                            "SIZE": str(premis_size),
                            "CHECKSUM": premis_sha256,
                            "CHECKSUMTYPE": "SHA-256",
                        },
                    ):
                        pass
            xf.write("\n")
            with xf.element(_M + "fileSec", {"ID": "filesec"}):
                with xf.element(
                    _M + "fileGrp", {"ID": f"grp-{rep}", "USE": f"Representations/{rep}"}
                ):
                    for f in files:
                        file_attrib = {
                            "ID": f.id,
                            "SIZE": str(f.size),
                            "CHECKSUM": f.sha256,
                            "CHECKSUMTYPE": "SHA-256",
                            "MIMETYPE": f.format.mime or "application/octet-stream",
                            "ADMID": PREMIS_AMD_ID,
                        }
                        with xf.element(_M + "file", file_attrib):
                            with xf.element(
                                _M + "FLocat",
                                {
                                    "LOCTYPE": "URL",
                                    _XL + "type": "simple",
                                    _XL + "href": href_for(f.path),
                                },
                            ):
                                pass
                        xf.write("\n")
            with xf.element(_M + "structMap", {"TYPE": "PHYSICAL", "LABEL": "CSIP"}):
                root_attrib = {"ID": "struct-dip", "LABEL": dip.dip_id}
                if dip.descriptive:
                    root_attrib["DMDID"] = DC_DMD_ID
                with xf.element(_M + "div", root_attrib):
                    with xf.element(
                        _M + "div",
                        {"ID": "struct-metadata", "LABEL": "Metadata", "ADMID": PREMIS_AMD_ID},
                    ):
                        pass
                    with xf.element(
                        _M + "div", {"ID": f"struct-{rep}", "LABEL": f"Representations/{rep}"}
                    ):
                        for f in files:
                            with xf.element(_M + "fptr", {"FILEID": f.id}):
                                pass
            xf.write("\n")


def write_dip_premis(
    dest: IO[bytes] | Path,
    dip: DipDescription,
    files: Iterable[DipFile],
    events: Sequence[Event],
    agents: Sequence[Agent],
) -> None:
    """PREMIS 3 for the DIP: the DIP as an entity made from the AIP, each file, events, agents."""
    with etree.xmlfile(dest, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(
            _P + "premis",
            {"version": "3.0"},
            nsmap={None: PREMIS_NS, "xsi": XSI_NS},
        ):
            xf.write("\n")
            entity = etree.Element(
                _P + "object",
                {f"{{{XSI_NS}}}type": "intellectualEntity"},
                nsmap={None: PREMIS_NS, "xsi": XSI_NS},  # type: ignore[dict-item]
            )
            ident = etree.SubElement(entity, _P + "objectIdentifier")
            etree.SubElement(ident, _P + "objectIdentifierType").text = "UUID"
            etree.SubElement(ident, _P + "objectIdentifierValue").text = dip.dip_id
            rel = etree.SubElement(entity, _P + "relationship")
            etree.SubElement(rel, _P + "relationshipType").text = "derivation"
            etree.SubElement(rel, _P + "relationshipSubType").text = "has source"
            related = etree.SubElement(rel, _P + "relatedObjectIdentifier")
            etree.SubElement(related, _P + "relatedObjectIdentifierType").text = "UUID"
            etree.SubElement(related, _P + "relatedObjectIdentifierValue").text = dip.aip_id
            xf.write(entity)
            xf.write("\n")
            for f in files:
                xf.write(
                    _premis_object(
                        FileObject(
                            id=f.id,
                            original_name=f.original_name,
                            path=f.path,
                            size=f.size,
                            digests={"sha256": f.sha256},
                            format=f.format,
                            derived_from=f.source,
                        )
                    )
                )
                xf.write("\n")
            for event in events:
                xf.write(_premis_event(event, dip.dip_id))
                xf.write("\n")
            for agent in agents:
                xf.write(_premis_agent(agent))
                xf.write("\n")
