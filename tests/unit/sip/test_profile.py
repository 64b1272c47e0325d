"""The BagIt profile check: one key at a time, each passing and failing, on a bag's facts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from preservation.errors import ConfigurationError
from preservation.sip.profile import (
    BagFacts,
    bag_facts,
    check_profile,
    parse_profile,
    serialisation_of,
)
from tests.unit.sip.conftest import BagFactory

ID = "https://archive.example/profiles/test-v1.json"

FACTS = BagFacts(
    bagit_version="1.0",
    bag_info={"Source-Organization": ["City Museum"], "BagIt-Profile-Identifier": [ID]},
    manifests=frozenset({"sha256"}),
    tag_manifests=frozenset({"sha256"}),
    fetch_txt=False,
    tag_files=frozenset(
        {"bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"}
    ),
    payload={"data/a.txt": 6, "data/sub/b.bin": 5000},
    serialization=None,
    submitted_as="bag1",
)


def profile(**keys: Any) -> dict[str, Any]:
    """A minimal valid profile document plus ``keys`` (``Bag_Info`` for ``Bag-Info``...)."""
    doc: dict[str, Any] = {
        "BagIt-Profile-Info": {
            "BagIt-Profile-Identifier": ID,
            "BagIt-Profile-Version": "1.4.0",
            "Source-Organization": "Test",
            "External-Description": "for tests",
            "Version": "1",
        },
        "Accept-BagIt-Version": ["1.0"],
    }
    doc.update({k.replace("_", "-"): v for k, v in keys.items()})
    return doc


def problems(doc: dict[str, Any], facts: BagFacts = FACTS, **changes: Any) -> list[dict[str, Any]]:
    return check_profile(
        parse_profile(doc, source="test.json"), dataclasses.replace(facts, **changes)
    )


def errors(doc: dict[str, Any], facts: BagFacts = FACTS, **changes: Any) -> list[tuple[str, str]]:
    return [
        (p["rule"], p["file"]) for p in problems(doc, facts, **changes) if p["severity"] == "error"
    ]


def test_the_base_bag_meets_the_minimal_profile() -> None:
    assert problems(profile()) == []


# -- Bag-Info ------------------------------------------------------------------------------


def test_bag_info_required_label_absent_or_blank_is_an_error() -> None:
    doc = profile(Bag_Info={"Contact-Email": {"required": True}})
    assert errors(doc) == [("profile-bag-info", "bag-info.txt")]
    blank = {**FACTS.bag_info, "Contact-Email": ["  "]}
    assert errors(doc, bag_info=blank) == [("profile-bag-info", "bag-info.txt")]
    given = {**FACTS.bag_info, "contact-email": ["a@b.example"]}  # labels match in any case
    assert errors(doc, bag_info=given) == []
    [p] = problems(doc)
    assert ID in p["message"] and "'Contact-Email'" in p["message"]


def test_bag_info_values_limit_what_a_label_may_say() -> None:
    doc = profile(Bag_Info={"Source-Organization": {"values": ["City Museum", "Film Archive"]}})
    assert errors(doc) == []
    other = {**FACTS.bag_info, "Source-Organization": ["Elsewhere"]}
    [p] = problems(doc, bag_info=other)
    assert p["rule"] == "profile-bag-info"
    assert "'Elsewhere'" in p["message"] and "'City Museum'" in p["message"]
    # An optional label with values binds only when present.
    absent = {"BagIt-Profile-Identifier": [ID]}
    assert errors(profile(Bag_Info={"Title": {"values": ["x"]}}), bag_info=absent) == []


def test_bag_info_repeatable_false_refuses_a_second_value() -> None:
    twice = {**FACTS.bag_info, "Source-Organization": ["City Museum", "Film Archive"]}
    assert errors(profile(Bag_Info={"Source-Organization": {}}), bag_info=twice) == []
    doc = profile(Bag_Info={"Source-Organization": {"repeatable": False}})
    assert errors(doc) == []
    [p] = problems(doc, bag_info=twice)
    assert p["rule"] == "profile-bag-info" and "2 times" in p["message"]


def test_bag_info_description_binds_nothing() -> None:
    doc = profile(Bag_Info={"Title": {"description": "a title, if you like"}})
    assert problems(doc) == []


def test_a_bag_not_naming_the_profile_is_warned_not_refused() -> None:
    unnamed = {"Source-Organization": ["City Museum"]}
    [p] = problems(profile(), bag_info=unnamed)
    assert (p["severity"], p["rule"]) == ("warning", "profile-identifier")
    other = {**unnamed, "BagIt-Profile-Identifier": ["https://other.example/p.json"]}
    [p] = problems(profile(), bag_info=other)
    assert p["severity"] == "warning" and "https://other.example/p.json" in p["message"]


# -- manifests -----------------------------------------------------------------------------


def test_manifests_required() -> None:
    doc = profile(Manifests_Required=["sha256", "sha512"])
    assert errors(doc) == [("profile-manifests-required", "manifest-sha512.txt")]
    assert errors(doc, manifests=frozenset({"sha256", "sha512"})) == []


def test_manifests_allowed() -> None:
    doc = profile(Manifests_Allowed=["sha256", "sha512"])
    assert errors(doc) == []
    [p] = problems(doc, manifests=frozenset({"sha256", "md5"}))
    assert (p["rule"], p["file"]) == ("profile-manifests-allowed", "manifest-md5.txt")
    assert "sha256, sha512" in p["message"]


def test_tag_manifests_required() -> None:
    doc = profile(Tag_Manifests_Required=["sha512"])
    assert errors(doc) == [("profile-tag-manifests-required", "tagmanifest-sha512.txt")]
    assert errors(doc, tag_manifests=frozenset({"sha512"})) == []


def test_tag_manifests_allowed() -> None:
    doc = profile(Tag_Manifests_Allowed=["sha512"])
    assert errors(doc) == [("profile-tag-manifests-allowed", "tagmanifest-sha256.txt")]
    assert errors(doc, tag_manifests=frozenset()) == []


# -- fetch.txt -----------------------------------------------------------------------------


def test_allow_fetch_txt() -> None:
    assert errors(profile(), fetch_txt=True) == []  # allowed by default
    doc = profile(**{"Allow-Fetch.txt": False})
    assert errors(doc) == []
    assert errors(doc, fetch_txt=True) == [("profile-allow-fetch-txt", "fetch.txt")]


def test_fetch_txt_required() -> None:
    doc = profile(**{"Fetch.txt-Required": True})
    assert errors(doc) == [("profile-fetch-txt-required", "fetch.txt")]
    assert errors(doc, fetch_txt=True) == []


# -- serialisation and version ---------------------------------------------------------------


def test_serialization_forbidden() -> None:
    doc = profile(Serialization="forbidden")
    assert errors(doc) == []
    zipped = {"serialization": "application/zip", "submitted_as": "bag1.zip"}
    assert errors(doc, **zipped) == [("profile-serialization", "bag1.zip")]


def test_serialization_required() -> None:
    doc = profile(Serialization="required", Accept_Serialization=["application/zip"])
    [p] = problems(doc)
    assert (p["rule"], p["file"]) == ("profile-serialization", "bag1")
    assert "as a folder" in p["message"]
    assert errors(doc, serialization="application/zip", submitted_as="bag1.zip") == []


def test_accept_serialization_knows_the_other_names_of_a_type() -> None:
    doc = profile(Accept_Serialization=["application/zip", "application/tar"])
    assert errors(doc) == []  # a folder: optional serialisation
    assert errors(doc, serialization="application/x-tar", submitted_as="b.tar") == []
    [p] = problems(doc, serialization="application/gzip", submitted_as="b.tgz")
    assert (p["rule"], p["file"]) == ("profile-accept-serialization", "b.tgz")
    assert "application/gzip" in p["message"]


def test_accept_bagit_version() -> None:
    doc = profile(Accept_BagIt_Version=["0.97", "1.0"])
    assert errors(doc) == []
    [p] = problems(profile(), bagit_version="0.97")
    assert (p["rule"], p["file"]) == ("profile-accept-bagit-version", "bagit.txt")
    assert "0.97" in p["message"] and ID in p["message"]


# -- tag files and payload files -----------------------------------------------------------


def test_tag_files_required() -> None:
    doc = profile(Tag_Files_Required=["meta/provenance.xml"])
    assert errors(doc) == [("profile-tag-files-required", "meta/provenance.xml")]
    with_it = FACTS.tag_files | {"meta/provenance.xml"}
    assert errors(doc, tag_files=with_it) == []


def test_tag_files_allowed_globs_and_leaves_the_rfc_tag_files_alone() -> None:
    extra = FACTS.tag_files | {"meta/a.xml", "meta/deep/b.xml", "notes.txt"}
    assert errors(profile(), tag_files=extra) == []  # default: every tag file
    assert errors(profile(Tag_Files_Allowed=[])) == []  # bagit.txt, manifests...: other keys
    doc = profile(Tag_Files_Allowed=["meta/*"])
    assert errors(doc, tag_files=extra) == [("profile-tag-files-allowed", "notes.txt")]


def test_payload_files_required_files_and_folders() -> None:
    assert errors(profile(Payload_Files_Required=["data/a.txt", "data/sub/"])) == []
    doc = profile(Payload_Files_Required=["data/LICENSE.txt", "data/src/"])
    found = problems(doc)
    assert [(p["rule"], p["file"]) for p in found] == [
        ("profile-payload-files-required", "data/LICENSE.txt"),
        ("profile-payload-files-required", "data/src/"),
    ]
    assert "folder data/src/" in found[1]["message"]


def test_payload_files_allowed() -> None:
    assert errors(profile(Payload_Files_Allowed=["data/*"])) == []
    doc = profile(Payload_Files_Allowed=["data/*.txt"])
    assert errors(doc) == [("profile-payload-files-allowed", "data/sub/b.bin")]


def test_data_empty() -> None:
    doc = profile(Data_Empty=True)
    [p] = problems(doc)
    assert (p["rule"], p["file"]) == ("profile-data-empty", "data")
    assert "2 file(s), 5006 bytes" in p["message"]
    assert errors(doc, payload={}) == []
    assert errors(doc, payload={"data/.keep": 0}) == []
    assert errors(doc, payload={"data/.keep": 1}) == [("profile-data-empty", "data")]
    assert errors(profile(Data_Empty=False)) == []


def test_every_broken_key_is_reported_not_only_the_first() -> None:
    doc = profile(
        Manifests_Required=["md5"],
        **{"Allow-Fetch.txt": False},
        Data_Empty=True,
        Bag_Info={"Title": {"required": True}},
    )
    rules = {r for r, _ in errors(doc, fetch_txt=True, bagit_version="0.97")}
    assert rules == {
        "profile-accept-bagit-version",
        "profile-manifests-required",
        "profile-allow-fetch-txt",
        "profile-data-empty",
        "profile-bag-info",
    }


# -- the profile itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "where"),
    [
        ({"Manifests_Required": ["md5"], "Manifests_Allowed": ["sha256"]}, "Manifests-Allowed"),
        (
            {"Tag_Manifests_Required": ["md5"], "Tag_Manifests_Allowed": []},
            "Tag-Manifests-Allowed",
        ),
        ({"Allow-Fetch.txt": False, "Fetch.txt-Required": True}, "Fetch.txt-Required"),
        ({"Serialization": "required"}, "Accept-Serialization"),
        ({"Tag_Files_Required": ["a/b"], "Tag_Files_Allowed": ["c/*"]}, "Tag-Files-Allowed"),
        (
            {"Payload_Files_Required": ["data/src/"], "Payload_Files_Allowed": ["data/doc/*"]},
            "Payload-Files-Allowed",
        ),
    ],
)
def test_a_profile_that_would_refuse_every_bag_is_refused(keys: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_profile(profile(**keys), source="/etc/profiles/p.json")
    assert info.value.message.startswith("/etc/profiles/p.json: ")
    assert f"at {where}:" in info.value.message
    assert info.value.context["rule"] == "bagit-profile"


def test_a_profile_without_its_version_follows_1_1() -> None:
    doc = profile()
    del doc["BagIt-Profile-Info"]["BagIt-Profile-Version"]
    assert parse_profile(doc, source="p.json").spec_version == "1.1.0"


# -- the facts of a real bag ---------------------------------------------------------------


def test_bag_facts_of_a_bag_on_disk(make_bag: BagFactory, tmp_path: Path) -> None:
    bag = make_bag(info={"Source-Organization": "City Museum"}, tagmanifest=True)
    (bag / "meta").mkdir()
    (bag / "meta" / "provenance.xml").write_text("<p/>")
    facts = bag_facts(bag, submitted=bag)
    assert facts.bagit_version == "1.0"
    assert facts.bag_info["Source-Organization"] == ["City Museum"]
    assert facts.manifests == {"sha256", "sha512"}
    assert facts.tag_manifests == {"sha256"}
    assert facts.fetch_txt is False
    assert "meta/provenance.xml" in facts.tag_files and "bagit.txt" in facts.tag_files
    assert dict(facts.payload) == {"data/a.txt": 6, "data/sub/b.bin": 5000}
    assert (facts.serialization, facts.submitted_as) == (None, bag.name)
    archive = tmp_path / "bag.TGZ"
    archive.write_bytes(b"")
    assert bag_facts(bag, submitted=archive).serialization == "application/gzip"


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("b.zip", "application/zip"),
        ("b.tar", "application/x-tar"),
        ("b.tar.gz", "application/gzip"),
        ("b.tgz", "application/gzip"),
    ],
)
def test_serialisation_of(tmp_path: Path, name: str, mime: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert serialisation_of(tmp_path / name) == mime
    assert serialisation_of(tmp_path) is None
