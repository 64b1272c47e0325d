"""The package's own metadata files, beside the METS (docs/architecture.md §4, CSIP ``metadata/``).

* ``metadata/descriptive/dc.xml``: the submitter's bag-info as simple Dublin
  Core in the OAI-PMH ``oai_dc`` container, the one DC record every harvester
  and repository already reads.
* ``metadata/preservation/premis.xml``: the package-level PREMIS (the AIP as
  an intellectual entity and its representations, the package events, the
  agents) as one standalone PREMIS 3.0 document.

Why separate files when the METS carries the same facts: an archive that
never parses METS (a catalogue importer, a future migration tool) finds the
descriptive and preservation records by name, as CSIP promises, and the root
METS points to them with an ``mdRef`` whose checksum proves they belong
together. Both are streamed with ``etree.xmlfile`` like the METS and written
atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from lxml import etree

from preservation.errors import MetadataError
from preservation.metadata.mets import (
    DC_NS,
    PREMIS_NS,
    XSI_NS,
    _output,
    _premis_agent,
    _premis_event,
    _translated,
    dublin_core,
    premis_package_objects,
)
from preservation.metadata.model import PackageDescription

__all__ = ["OAI_DC_NS", "OAI_DC_SCHEMA_URL", "write_dublin_core", "write_package_premis"]

OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
#: Where oai_dc's schema is published; the validator maps it to ``schemas/oai_dc.xsd``.
OAI_DC_SCHEMA_URL = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
# PREMIS as the default namespace, as in the METS (lxml's stubs do not allow a None key).
_PREMIS_NSMAP: Any = {None: PREMIS_NS, "xsi": XSI_NS}


def write_dublin_core(dest: Path | str | IO[bytes], package: PackageDescription) -> None:
    """Write the package's Dublin Core record (``oai_dc:dc``), mapped by :func:`dublin_core`."""
    aip_id = str(package.aip_id)
    nsmap = {"oai_dc": OAI_DC_NS, "dc": DC_NS, "xsi": XSI_NS}
    attrib = {f"{{{XSI_NS}}}schemaLocation": f"{OAI_DC_NS} {OAI_DC_SCHEMA_URL}"}
    with (
        _translated(f"Dublin Core record of AIP {aip_id}", aip_id=aip_id),
        _output(dest) as out,
        etree.xmlfile(out, encoding="UTF-8") as xf,
    ):
        xf.write_declaration()
        with xf.element(f"{{{OAI_DC_NS}}}dc", attrib, nsmap=nsmap):
            xf.write("\n")
            for element, value in dublin_core(package):
                with xf.element(f"{{{DC_NS}}}{element}"):
                    xf.write(value)
                xf.write("\n")


def write_package_premis(
    dest: Path | str | IO[bytes],
    package: PackageDescription,
    representations: Sequence[str] = (),
    *,
    schemas_prefix: str = "../../schemas/",
) -> None:
    """Write the package-level PREMIS: objects, then events, then agents (PREMIS order).

    ``representations`` names the representations besides
    ``package.representation`` (a later version's rep2 beside rep1).
    ``schemas_prefix`` is where ``premis-v3-0.xsd`` lies relative to ``dest``.
    """
    aip_id = str(package.aip_id)
    agent_ids = {a.id for a in package.agents}
    for event in package.events:
        for link in event.agents:
            if link.agent_id not in agent_ids:
                raise MetadataError(
                    f"event {event.id} ({event.type}) names agent {link.agent_id!r}, which is "
                    "not among the package's agents",
                    aip_id=aip_id,
                )
    names = list(dict.fromkeys([package.representation, *representations]))
    attrib = {
        "version": "3.0",
        f"{{{XSI_NS}}}schemaLocation": f"{PREMIS_NS} {schemas_prefix}premis-v3-0.xsd",
    }
    with (
        _translated(f"package PREMIS of AIP {aip_id}", aip_id=aip_id),
        _output(dest) as out,
        etree.xmlfile(out, encoding="UTF-8") as xf,
    ):
        xf.write_declaration()
        with xf.element(f"{{{PREMIS_NS}}}premis", attrib, nsmap=_PREMIS_NSMAP):
            xf.write("\n")
            for obj in premis_package_objects(aip_id, names):
                xf.write(obj)
                xf.write("\n")
            for event in package.events:
                xf.write(_premis_event(event, aip_id))
                xf.write("\n")
            for agent in package.agents:
                xf.write(_premis_agent(agent))
                xf.write("\n")
