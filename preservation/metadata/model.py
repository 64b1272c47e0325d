"""The plain values the METS/PREMIS writer takes and the reader gives back.

They are deliberately free of XML: the describe stage builds them from the
catalogue and staging results, the writer turns them into METS, and the reader
turns a METS found on tape back into exactly the same values. Keeping them
dumb dataclasses is what makes "round trip equals input" a testable promise.

Each class checks its own invariants on construction and raises
:class:`~preservation.errors.MetadataError`, so a bad value is refused where it
is made, naming the field, rather than surfacing as a schema error in a
100,000-file document.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from uuid import UUID

from preservation.errors import MetadataError

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
    "MetadataRef",
    "ObjectLink",
    "PackageDescription",
    "RepresentationRef",
    "representation_identifier",
]

#: The E-ARK Common Specification profile our packages follow (METS/@PROFILE).
CSIP_PROFILE = "https://earkcsip.dilcis.eu/profile/E-ARK-CSIP.xml"

#: PREMIS agentType values we use (id.loc.gov/vocabulary/preservation/agentType).
AGENT_TYPES = frozenset({"software", "organization", "person"})

#: eventOutcome values; "warning" is how an unidentified file stays a result, not a crash.
EVENT_OUTCOMES = frozenset({"success", "failure", "warning"})

#: The Library of Congress PREMIS eventType vocabulary
#: (id.loc.gov/vocabulary/preservation/eventType). A closed list, so that a typo
#: such as "fixity-check" is caught at ingest and not found by a reader in 2070.
EVENT_TYPES = frozenset(
    {
        "accession",
        "appraisal",
        "capture",
        "compiling",
        "compression",
        "creation",
        "deaccession",
        "decompression",
        "decryption",
        "deletion",
        "digital signature generation",
        "digital signature validation",
        "displaying",
        "dissemination",
        "encryption",
        "execution",
        "exporting",
        "extraction",
        "filename change",
        "fixity check",
        "forensic feature analysis",
        "format identification",
        "imaging",
        "information package creation",
        "information package merging",
        "information package splitting",
        "ingestion",
        "ingestion end",
        "ingestion start",
        "interpreting",
        "message digest calculation",
        "metadata extraction",
        "metadata modification",
        "migration",
        "modification",
        "normalization",
        "packing",
        "policy assignment",
        "printing",
        "quarantine",
        "recovery",
        "redaction",
        "refreshment",
        "rendering",
        "replication",
        "transfer",
        "unpacking",
        "unquarantine",
        "validation",
        "virus check",
    }
)

# METS IDs are xs:ID, i.e. NCNames; file ids become METS IDs, so they must be NCNames.
# (ASCII subset: enough for "file-000001" and refuses anything surprising.)
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# Digest keys are BagIt manifest algorithm names (lower case), e.g. "sha256", "md5".
_ALGORITHM = re.compile(r"[a-z0-9][a-z0-9_\-]*\Z")
_HEX = re.compile(r"[0-9a-f]+\Z")
# Characters XML 1.0 cannot carry at all (tab, LF and CR it can).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _require_aware(value: datetime, what: str) -> None:
    # A naive timestamp is ambiguous forever once on tape; refuse it here.
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise MetadataError(f"{what} must be a timezone-aware datetime, got {value!r}")


def _require_ncname(value: str, what: str) -> None:
    if not isinstance(value, str) or not _NCNAME.match(value):
        raise MetadataError(
            f"{what} {value!r} must start with a letter or '_' and hold only "
            "letters, digits, '.', '-', '_' (it becomes a METS ID)"
        )


def _require_relpath(value: str, what: str) -> None:
    parts = value.split("/") if isinstance(value, str) else [""]
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise MetadataError(f"{what} {value!r} is not a plain relative POSIX path", path=value)
    if _NOT_XML.search(value):
        raise MetadataError(
            f"{what} {value!r} holds a control character or undecodable byte that XML 1.0 "
            "cannot carry",
            path=value,
        )


@dataclass(frozen=True, slots=True)
class Agent:
    """A PREMIS agent: the software, organisation or person that acted.

    ``id`` is local to the AIP (events link to it); ``version`` matters for
    software, because "fido" alone does not say which signatures were used.
    """

    id: str
    name: str
    type: str
    version: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise MetadataError(f"agent needs an id and a name, got {self.id!r}/{self.name!r}")
        if self.type not in AGENT_TYPES:
            raise MetadataError(
                f"agent {self.id!r} has type {self.type!r}; expected one of {sorted(AGENT_TYPES)}"
            )


@dataclass(frozen=True, slots=True)
class AgentLink:
    """Which agent took part in an event, and how ("executing program", "implementer")."""

    agent_id: str
    role: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectLink:
    """Which object an event concerned, and how ("source", "outcome" for a migration).

    ``id_type`` None is an object of the same document (PREMIS ``local``); a
    migration's source lives in an earlier version's METS, so it is linked
    by ``URI``: the relative link to that document with the object's METS ID
    as fragment, which resolves on disk as the versions unpack side by side.
    """

    object_id: str
    role: str | None = None
    id_type: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A PREMIS event.

    ``objects`` empty means the event concerns the package as a whole (it is
    then linked to the AIP's UUID); files that the event concerns say so in
    their own :attr:`FileObject.event_ids`, which is the compact direction of
    the link (see docs/metadata.md).
    """

    id: UUID
    type: str
    datetime: datetime
    outcome: str
    agents: tuple[AgentLink, ...]
    objects: tuple[ObjectLink, ...] = ()
    detail: str | None = None
    outcome_detail: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, UUID):
            raise MetadataError(f"event id must be a UUID, got {self.id!r}")
        if self.type not in EVENT_TYPES:
            raise MetadataError(
                f"event {self.id} has type {self.type!r}, which is not in the PREMIS "
                "eventType vocabulary"
            )
        _require_aware(self.datetime, f"event {self.id} datetime")
        if self.outcome not in EVENT_OUTCOMES:
            raise MetadataError(
                f"event {self.id} has outcome {self.outcome!r}; expected one of "
                f"{sorted(EVENT_OUTCOMES)}"
            )
        if not self.agents:
            # PREMIS allows it, but an event nobody performed is useless as evidence.
            raise MetadataError(f"event {self.id} ({self.type}) names no agent")


@dataclass(frozen=True, slots=True)
class FileFormat:
    """What a format engine said about one file.

    An unidentified file is a ``FileFormat`` with no ``puids`` and no ``name``:
    still a record (with the tool that tried), never a missing value.
    Several ``puids`` mean the engine could not decide between them.

    ``error`` says why identification did not finish (a per-file timeout, an
    unreadable file), ``warning`` why its answer is doubtful (extension only,
    several candidates). Without them a timeout would look exactly like "no
    signature matched" to a curator reading the METS in twenty years.
    """

    puids: tuple[str, ...] = ()
    name: str | None = None
    version: str | None = None
    mime: str | None = None
    basis: str | None = None
    tool: str | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def identified(self) -> bool:
        return bool(self.puids or self.name)


@dataclass(frozen=True, slots=True)
class FileObject:
    """One file of a representation, as PREMIS describes it.

    ``path`` is relative to the bag's ``data/`` folder
    (``representations/rep1/data/x/y.tif``); ``original_name`` is the
    submitter's own path, kept because it is evidence. ``digests`` maps BagIt
    algorithm names to lower-case hex and must hold ``sha256`` (METS CHECKSUM).
    """

    id: str
    original_name: str
    path: str
    size: int
    digests: Mapping[str, str]
    format: FileFormat = field(default_factory=FileFormat)
    event_ids: tuple[UUID, ...] = ()
    # Significant properties (width, duration, page_count...), written as PREMIS
    # objectCharacteristicsExtension.
    properties: Mapping[str, int | float | str | bool | list[str]] = field(default_factory=dict)
    # The earlier AIP version whose tar holds the file, when a later
    # representation lists it unchanged; None: the METS's own version holds it.
    held_in: int | None = None
    # A migration's output: the URI of its source object (PREMIS derivation).
    derived_from: str | None = None

    def __post_init__(self) -> None:
        _require_ncname(self.id, "file id")
        _require_relpath(self.path, f"path of {self.id}")
        if not self.original_name:
            raise MetadataError(f"file {self.id} has no original name", path=self.path)
        if self.held_in is not None and (not isinstance(self.held_in, int) or self.held_in < 1):
            raise MetadataError(f"file {self.id}: held_in must be a version number", path=self.path)
        if not isinstance(self.size, int) or self.size < 0:
            raise MetadataError(f"file {self.id} has invalid size {self.size!r}", path=self.path)
        if "sha256" not in self.digests:
            raise MetadataError(f"file {self.id} has no sha256 digest", path=self.path)
        for algorithm, value in self.digests.items():
            if not _ALGORITHM.match(algorithm) or not _HEX.match(value or ""):
                raise MetadataError(
                    f"file {self.id}: digest {algorithm!r}={value!r} must be a lower-case "
                    "algorithm name and lower-case hex",
                    path=self.path,
                )


@dataclass(frozen=True, slots=True)
class PackageDescription:
    """What one AIP version is: identity, owner, the submitter's bag-info, history.

    ``events`` are package-level (ingestion, validation...): written once per
    METS document, and linked from each file through ``FileObject.event_ids``.
    """

    aip_id: UUID
    version: int
    tenant: str
    organisation: str
    created: datetime
    bag_info: dict[str, list[str]] = field(default_factory=dict)
    representation: str = "rep1"
    profile: str = CSIP_PROFILE
    type: str = "Mixed"
    file_group: str = "original"
    agents: tuple[Agent, ...] = ()
    events: tuple[Event, ...] = ()
    # A curator's Dublin Core record ((element, value) pairs) that replaces the
    # one mapped from bag-info: set by a metadata update (a new version).
    descriptive: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.aip_id, UUID):
            raise MetadataError(f"aip_id must be a UUID, got {self.aip_id!r}")
        if not isinstance(self.version, int) or self.version < 1:
            raise MetadataError(f"AIP version must be 1 or more, got {self.version!r}")
        _require_aware(self.created, "package created")
        _require_ncname(self.representation, "representation name")
        if not self.tenant or not self.organisation:
            raise MetadataError("package needs a tenant and an organisation name")
        ids = [a.id for a in self.agents]
        if len(set(ids)) != len(ids):
            raise MetadataError(f"agent ids are not unique: {ids}")
        for key, values in self.bag_info.items():
            if not key or not isinstance(values, list):
                raise MetadataError(f"bag-info field {key!r} must map to a list of values")

    @property
    def representation_id(self) -> str:
        """The PREMIS identifier (type ``local``) of the representation this version adds."""
        return representation_identifier(self.aip_id, self.representation)


def representation_identifier(aip_id: UUID | str, name: str) -> str:
    """A representation's PREMIS object identifier: the OBJID of its METS, ``<aip>/<rep>``.

    Unique across AIPs (it starts with the AIP's UUID) and resolvable: it names
    the representation METS document, whose OBJID is the same string.
    """
    return f"{aip_id}/{name}"


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True, slots=True)
class RepresentationRef:
    """A representation METS the root METS points to.

    ``version`` is the AIP version whose tar holds it: a version N root METS
    points into earlier versions for representations it did not change.
    """

    name: str
    version: int
    sha256: str
    size: int

    def __post_init__(self) -> None:
        _require_ncname(self.name, "representation name")
        if self.version < 1 or self.size < 0 or not _HEX.match(self.sha256):
            raise MetadataError(f"representation {self.name!r}: bad version, size or sha256")

    @property
    def path(self) -> str:
        """Where the representation METS is, relative to its version's ``data/``."""
        return f"representations/{self.name}/METS.xml"

    @classmethod
    def from_file(cls, name: str, version: int, mets_file: Path) -> RepresentationRef:
        """Describe a representation METS just written (its digest goes in CHECKSUM)."""
        sha256, size = _sha256_and_size(Path(mets_file))
        return cls(name=name, version=version, sha256=sha256, size=size)


@dataclass(frozen=True, slots=True)
class FileRef:
    """A package file other than the originals (a schema, say), for the root METS."""

    path: str
    size: int
    sha256: str
    mime: str | None = None

    def __post_init__(self) -> None:
        _require_relpath(self.path, "package file")
        if self.size < 0 or not _HEX.match(self.sha256):
            raise MetadataError(f"{self.path}: bad size or sha256", path=self.path)

    @classmethod
    def from_file(cls, path_in_package: str, file: Path, mime: str | None = None) -> FileRef:
        """Describe a file on disk under its path relative to the bag's ``data/``."""
        sha256, size = _sha256_and_size(Path(file))
        return cls(path=path_in_package, size=size, sha256=sha256, mime=mime)


@dataclass(frozen=True, slots=True)
class MetadataRef:
    """A metadata file of the package (``metadata/descriptive/dc.xml``...) for the root METS.

    The root METS points to it with an ``mdRef`` (not a copy in ``mdWrap``), so
    the file itself stays the one record and its digest proves it unchanged.
    ``mdtype`` is the METS MDTYPE: ``DC``, ``PREMIS``, ``OTHER``.
    """

    path: str
    mdtype: str
    size: int
    sha256: str
    mime: str = "text/xml"

    def __post_init__(self) -> None:
        _require_relpath(self.path, "metadata file")
        if not self.mdtype or self.size < 0 or not _HEX.match(self.sha256):
            raise MetadataError(f"{self.path}: bad MDTYPE, size or sha256", path=self.path)

    @classmethod
    def from_file(
        cls, path_in_package: str, mdtype: str, file: Path, mime: str = "text/xml"
    ) -> MetadataRef:
        """Describe a metadata file on disk under its path relative to the bag's ``data/``."""
        sha256, size = _sha256_and_size(Path(file))
        return cls(path=path_in_package, mdtype=mdtype, size=size, sha256=sha256, mime=mime)
