"""METS/PREMIS: describing an AIP version so it explains itself (docs/architecture.md §3.5, §4).

* :mod:`~preservation.metadata.model`: the plain values (package, files, events,
  agents) the describe stage builds from the catalogue.
* :func:`write_representation_mets` / :func:`write_root_mets`: METS 1.12.1 with
  PREMIS 3.0, streamed with ``lxml.etree.xmlfile`` so that 100,000 files never
  sit in memory as a tree, and compact (under 3 KB a file).
* :func:`write_dublin_core` / :func:`write_package_premis`: the package's own
  metadata files (``metadata/descriptive/dc.xml``,
  ``metadata/preservation/premis.xml``), which the root METS points to.
* :func:`read_mets`: the way back, streaming, complete enough to rebuild the
  catalogue from tapes alone.
* :func:`validate_mets`, :func:`validate_premis`, :func:`validate_dublin_core`:
  against the XSDs in ``schemas/``, offline.

``docs/metadata.md`` describes the documents and why they look as they do.
"""

from preservation.metadata.mets import (
    DC_ELEMENTS,
    dublin_core,
    dublin_core_from_bag_info,
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
    MetadataRef,
    ObjectLink,
    PackageDescription,
    RepresentationRef,
    representation_identifier,
)
from preservation.metadata.reader import ParsedMets, read_mets
from preservation.metadata.records import write_dublin_core, write_package_premis
from preservation.metadata.validation import (
    load_schema,
    validate_dublin_core,
    validate_mets,
    validate_premis,
)

__all__ = [
    "DC_ELEMENTS",
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
    "MetadataRef",
    "ObjectLink",
    "PackageDescription",
    "ParsedMets",
    "RepresentationRef",
    "dublin_core",
    "dublin_core_from_bag_info",
    "load_schema",
    "read_mets",
    "representation_identifier",
    "validate_dublin_core",
    "validate_mets",
    "validate_premis",
    "write_dublin_core",
    "write_package_premis",
    "write_representation_mets",
    "write_root_mets",
]
