"""METS/PREMIS: describing an AIP version so that it explains itself (DESIGN §3.5, §4).

* :mod:`~preservation.metadata.model`: the plain values (package, files, events,
  agents) the describe stage builds from the catalogue.
* :func:`write_representation_mets` / :func:`write_root_mets`: METS 1.12.1 with
  PREMIS 3.0, streamed with ``lxml.etree.xmlfile`` so that 100,000 files never
  sit in memory as a tree, and compact (under 3 KB a file).
* :func:`read_mets`: the way back, streaming, complete enough to rebuild the
  catalogue from tapes alone.
* :func:`validate_mets`: against the XSDs in ``schemas/``, offline.

``docs/metadata.md`` describes the documents and why they look as they do.
"""

from preservation.metadata.mets import (
    dublin_core,
    write_representation_mets,
    write_root_mets,
)
from preservation.metadata.model import (
    AGENT_TYPES,
    CSIP_PROFILE,
    EVENT_OUTCOMES,
    EVENT_TYPES,
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    FileRef,
    ObjectLink,
    PackageDescription,
    RepresentationRef,
)
from preservation.metadata.reader import ParsedMets, read_mets
from preservation.metadata.validation import load_schema, validate_mets

__all__ = [
    "AGENT_TYPES",
    "CSIP_PROFILE",
    "EVENT_OUTCOMES",
    "EVENT_TYPES",
    "Agent",
    "AgentLink",
    "Event",
    "FileFormat",
    "FileObject",
    "FileRef",
    "ObjectLink",
    "PackageDescription",
    "ParsedMets",
    "RepresentationRef",
    "dublin_core",
    "load_schema",
    "read_mets",
    "validate_mets",
    "write_representation_mets",
    "write_root_mets",
]
