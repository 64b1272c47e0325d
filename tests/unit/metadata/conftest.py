"""A representative AIP description, with the names and values that break writers.

Sixty files in nested folders; names with unicode, ``& < > " '``, spaces,
``%``, ``#``, ``?``, tabs and CR/LF; three or four digests each; identified,
ambiguous and unidentified formats; package events linked from every file and
per-file events linked from a few.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from preservation.metadata import (
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    ObjectLink,
    PackageDescription,
)

AIP_ID = uuid.UUID("6f1c2a7e-3b8d-4e0f-9a51-2c7d8e9f0a1b")
CREATED = datetime(2024, 6, 1, 12, 30, 5, 123456, tzinfo=UTC)

TRICKY_NAMES = [
    "café/naïve résumé.txt",
    "Ünïcödé/日本語/ファイル.pdf",
    "special/a & b <c> \"d\" 'e'.txt",
    "special/100% sure #1?.doc",
    "special/tab\there.txt",
    "special/line\nbreak\r\nname.txt",
    "special/emoji 📦.png",
    "deep/a/b/c/d/e/f/g/leaf.bin",
    "x.tif",
]


def _digest(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


@dataclass
class Sample:
    package: PackageDescription
    files: list[FileObject]
    events: list[Event] = field(default_factory=list)


def make_sample(n_files: int = 60, representation: str = "rep1", version: int = 1) -> Sample:
    agents = (
        Agent("preservation-0.1.0", "preservation", "software", version="0.1.0"),
        Agent("fido-1.6.1", "fido", "software", version="1.6.1", note="DROID_SignatureFile_V119"),
        Agent("tenant-state-archive", "State Archive & Co <Ltd>", "organization"),
        Agent("person-jdoe", "Jane Doe", "person", note="asked for the ingest"),
    )
    stamp = CREATED - timedelta(minutes=5)
    ingest_agents = (AgentLink("preservation-0.1.0", "executing program"),)
    package_events = tuple(
        Event(
            id=uuid.uuid5(AIP_ID, kind),
            type=kind,
            datetime=stamp + timedelta(seconds=i),
            outcome="success",
            agents=ingest_agents + ((AgentLink("person-jdoe", "authorizer"),) if i == 0 else ()),
            detail=f"{kind} of the SIP" if i % 2 == 0 else None,
            outcome_detail="all files" if i == 1 else None,
        )
        for i, kind in enumerate(
            (
                "ingestion",
                "validation",
                "message digest calculation",
                "fixity check",
                "format identification",
            )
        )
    )
    package = PackageDescription(
        aip_id=AIP_ID,
        version=version,
        tenant="state-archive",
        organisation="State Archive of Atlantis",
        created=CREATED,
        bag_info={
            "Source-Organization": ["Ministry of Maps & Charts"],
            "Contact-Name": ["Ada Lovelace"],
            "External-Description": ["Survey maps, 1850–1900 <scanned>"],
            "Bagging-Date": ["2024-05-30"],
            "External-Identifier": ["MAPS-0001", "urn:x-maps:42"],
            "Bag-Group-Identifier": ["MAPS"],
            "Payload-Oxum": ["123456.60"],
            "Title": ['Küstenkarten "Nord"'],
            "X-Custom-Field": ["kept verbatim"],
        },
        representation=representation,
        agents=agents,
        events=package_events,
    )
    files: list[FileObject] = []
    events: list[Event] = []
    package_event_ids = tuple(e.id for e in package_events)
    for i in range(n_files):
        if i < len(TRICKY_NAMES):
            original = TRICKY_NAMES[i]
        else:
            original = f"series-{i % 4}/box {i % 7:02d}/item_{i:04d}.tif"
        digests = {
            "sha256": _digest("sha256", original),
            "sha512": _digest("sha512", original),
            "md5": _digest("md5", original),
        }
        if i % 5 == 0:
            digests["sha1"] = _digest("sha1", original)
        if i % 20 == 13:  # identification did not finish: not the same as "no match"
            fmt = FileFormat(
                basis="none",
                tool="fido 1.6.1 (DROID_SignatureFile_V119)",
                error="timeout after 1e-05s",
            )
        elif i % 10 == 3:
            fmt = FileFormat(tool="fido 1.6.1 (DROID_SignatureFile_V119)")  # unidentified
        elif i % 10 == 7:
            fmt = FileFormat(
                puids=("fmt/353", "fmt/154"),
                name="Tagged Image File Format",
                mime="image/tiff",
                basis="extension match tif; ambiguous",
                tool="fido 1.6.1 (DROID_SignatureFile_V119)",
                warning="2 candidate formats: fmt/353, fmt/154",
            )
        elif i % 10 == 9:
            fmt = FileFormat(puids=("x-fmt/111",), mime="text/plain")  # no name
        else:
            fmt = FileFormat(
                puids=("fmt/353",),
                name="Tagged Image File Format",
                version="6.0",
                mime="image/tiff",
                basis="byte match at [[0, 4]]",
                tool="fido 1.6.1 (DROID_SignatureFile_V119)",
            )
        file_id = f"file-{i + 1:06d}"
        own: tuple[uuid.UUID, ...] = ()
        if not fmt.identified:
            event = Event(
                id=uuid.uuid5(AIP_ID, f"warn-{file_id}"),
                type="format identification",
                datetime=stamp + timedelta(seconds=10),
                outcome="failure" if fmt.error else "warning",
                agents=(AgentLink("fido-1.6.1", "executing program"),),
                objects=(ObjectLink(file_id),),
                outcome_detail=fmt.error or f"no signature matched {original}",
            )
            events.append(event)
            own = (event.id,)
        files.append(
            FileObject(
                id=file_id,
                original_name=original,
                path=f"representations/{representation}/data/{original}",
                size=1000 + i,
                digests=digests,
                format=fmt,
                event_ids=package_event_ids + own,
            )
        )
    return Sample(package, files, events)


@pytest.fixture
def sample() -> Sample:
    return make_sample()
