"""The model refuses values that would make a wrong or unreadable METS, where they are made."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import datetime

import pytest

from preservation.errors import MetadataError
from preservation.metadata import (
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    PackageDescription,
    RepresentationRef,
)

from .conftest import CREATED, Sample

EVENT = Event(uuid.uuid4(), "ingestion", CREATED, "success", (AgentLink("a"),))


def test_event_vocabulary_outcome_time_and_agent_are_checked():
    with pytest.raises(MetadataError, match="PREMIS eventType"):
        replace(EVENT, type="fixity-check")
    with pytest.raises(MetadataError, match="outcome 'ok'"):
        replace(EVENT, outcome="ok")
    with pytest.raises(MetadataError, match="timezone-aware"):
        replace(EVENT, datetime=datetime(2024, 1, 1))
    with pytest.raises(MetadataError, match="names no agent"):
        replace(EVENT, agents=())
    with pytest.raises(MetadataError, match="must be a UUID"):
        replace(EVENT, id="not-a-uuid")


def test_agent_type_is_premis_vocabulary():
    with pytest.raises(MetadataError, match="type 'robot'"):
        Agent("x", "X", "robot")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"id": "1st file"}, "becomes a METS ID"),
        ({"path": "/etc/passwd"}, "plain relative"),
        ({"path": "representations/rep1/data/../../x"}, "plain relative"),
        ({"path": "representations/rep1/data/a\x01b"}, "XML 1.0 cannot carry"),
        ({"size": -1}, "invalid size"),
        ({"digests": {"md5": "d41d8cd98f00b204e9800998ecf8427e"}}, "no sha256"),
        ({"digests": {"sha256": "ABC"}}, "lower-case hex"),
        ({"digests": {"SHA-256": "abc", "sha256": "abc"}}, "lower-case algorithm"),
        ({"original_name": ""}, "no original name"),
    ],
)
def test_file_object_invariants(sample: Sample, change: dict, match: str):
    with pytest.raises(MetadataError, match=match):
        replace(sample.files[0], **change)


def test_unidentified_is_a_value_not_a_missing_one():
    assert not FileFormat(tool="fido").identified
    assert FileFormat(puids=("fmt/1",)).identified
    assert FileFormat(name="Something").identified


def test_package_invariants(sample: Sample):
    package = sample.package
    with pytest.raises(MetadataError, match="version must be 1 or more"):
        replace(package, version=0)
    with pytest.raises(MetadataError, match="representation name"):
        replace(package, representation="rep/1")
    with pytest.raises(MetadataError, match="not unique"):
        replace(package, agents=package.agents + package.agents[:1])
    with pytest.raises(MetadataError, match="list of values"):
        replace(package, bag_info={"Title": "not a list"})
    assert isinstance(package, PackageDescription)


def test_representation_ref_from_file(tmp_path):
    mets = tmp_path / "METS.xml"
    mets.write_bytes(b"<x/>")
    ref = RepresentationRef.from_file("rep1", 1, mets)
    assert ref.size == 4
    assert ref.sha256 == hashlib.sha256(b"<x/>").hexdigest()
    assert ref.path == "representations/rep1/METS.xml"


def test_file_objects_are_values(sample: Sample):
    copy = FileObject(**{f: getattr(sample.files[0], f) for f in FileObject.__dataclass_fields__})
    assert copy == sample.files[0]
