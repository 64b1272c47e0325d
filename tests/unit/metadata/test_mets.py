"""The METS writers: schema-valid, complete, compact, and refusing bad input."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import pytest
from lxml import etree

from preservation.errors import MetadataError
from preservation.metadata import (
    FileRef,
    ObjectLink,
    RepresentationRef,
    dublin_core,
    read_mets,
    validate_mets,
    write_representation_mets,
    write_root_mets,
)
from preservation.metadata.mets import METS_NS, PREMIS_NS, XLINK_NS
from preservation.metadata.validation import safe_parser

from .conftest import AIP_ID, Sample, make_sample

NS = {
    "mets": METS_NS,
    "premis": PREMIS_NS,
    "xlink": XLINK_NS,
    "dc": "http://purl.org/dc/elements/1.1/",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def write_rep(tmp_path: Path, sample: Sample, name: str = "METS.xml") -> Path:
    dest = tmp_path / name
    # Generators, not lists: the writer must work from a single pass.
    write_representation_mets(dest, sample.package, (f for f in sample.files), iter(sample.events))
    return dest


def parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), safe_parser())


def schema_refs(tmp_path: Path) -> list[FileRef]:
    return [
        FileRef.from_file(f"schemas/{p.name}", p, "application/xml")
        for p in sorted(SCHEMAS.glob("*.xsd"))
    ]


# -- validity ---------------------------------------------------------------------------


def test_representation_mets_is_valid_against_mets_premis_xlink(tmp_path: Path, sample: Sample):
    assert len(sample.files) >= 50
    dest = write_rep(tmp_path, sample)
    assert validate_mets(dest) == []


def test_root_mets_of_version_1_is_valid(tmp_path: Path, sample: Sample):
    rep = write_rep(tmp_path, sample)
    dest = tmp_path / "root.xml"
    write_root_mets(
        dest,
        sample.package,
        [RepresentationRef.from_file("rep1", 1, rep)],
        schemas=schema_refs(tmp_path),
    )
    assert validate_mets(dest) == []


def test_root_mets_of_a_later_version_points_into_earlier_versions(tmp_path: Path):
    sample = make_sample(n_files=5, representation="rep2", version=3)
    reps = [RepresentationRef("rep1", 1, "a" * 64, 10), RepresentationRef("rep2", 3, "b" * 64, 20)]
    previous = [(1, "METS.xml"), (2, "METS.xml"), (1, "metadata/preservation/fido & co.csv")]
    dest = tmp_path / "METS.xml"
    write_root_mets(dest, sample.package, reps, previous_versions=previous)
    assert validate_mets(dest) == []

    tree = parse(dest)
    hrefs = [unquote(h) for h in tree.xpath("//mets:FLocat/@xlink:href", namespaces=NS)]
    assert f"../../{AIP_ID}.v1/data/representations/rep1/METS.xml" in hrefs
    assert "representations/rep2/METS.xml" in hrefs
    assert f"../../{AIP_ID}.v1/data/metadata/preservation/fido & co.csv" in hrefs
    labels = tree.xpath("//mets:structMap[@LABEL='CSIP']/mets:div/mets:div/@LABEL", namespaces=NS)
    assert labels == [
        "Metadata",
        "Schemas",
        "Representations/rep1",
        "Representations/rep2",
        "Previous versions",
    ]
    mptrs = tree.xpath(
        "//mets:div[@LABEL='Representations/rep1']/mets:mptr/@xlink:href", namespaces=NS
    )
    assert mptrs == [f"../../{AIP_ID}.v1/data/representations/rep1/METS.xml"]


def test_root_mets_without_any_file_is_still_valid(tmp_path: Path):
    sample = make_sample(n_files=1)
    dest = tmp_path / "METS.xml"
    write_root_mets(dest, sample.package, [])
    assert validate_mets(dest) == []


def test_root_mets_refuses_references_to_the_future(tmp_path: Path):
    sample = make_sample(n_files=1, version=2)
    with pytest.raises(MetadataError, match="after this version"):
        write_root_mets(
            tmp_path / "a.xml", sample.package, [RepresentationRef("rep9", 3, "a" * 64, 1)]
        )
    with pytest.raises(MetadataError, match="between 1 and 1"):
        write_root_mets(tmp_path / "b.xml", sample.package, [], previous_versions=[(2, "METS.xml")])
    with pytest.raises(MetadataError, match="plain relative"):
        write_root_mets(tmp_path / "c.xml", sample.package, [], previous_versions=[(1, "../x")])
    assert list(tmp_path.iterdir()) == []


# -- content ----------------------------------------------------------------------------


def test_every_file_is_described_with_checksum_size_mime_and_location(
    tmp_path: Path, sample: Sample
):
    tree = parse(write_rep(tmp_path, sample))
    by_id = {f.id: f for f in sample.files}
    files = tree.xpath("//mets:fileGrp[@USE='original']/mets:file", namespaces=NS)
    assert [f.get("ID") for f in files] == [f.id for f in sample.files]
    for el in files:
        expected = by_id[el.get("ID")]
        assert el.get("CHECKSUM") == expected.digests["sha256"]
        assert el.get("CHECKSUMTYPE") == "SHA-256"
        assert el.get("SIZE") == str(expected.size)
        assert el.get("MIMETYPE") == expected.format.mime
        (flocat,) = el.findall("mets:FLocat", NS)
        assert flocat.get("LOCTYPE") == "URL"
        href = flocat.get(f"{{{XLINK_NS}}}href")
        assert not any(c in href for c in ' %#?\n\r\t"<>') or "%" in href
        assert "representations/rep1/" + unquote(href) == expected.path


def test_admid_links_each_file_to_its_premis_object_and_its_events(tmp_path: Path, sample: Sample):
    tree = parse(write_rep(tmp_path, sample))
    for el, expected in zip(tree.xpath("//mets:file", namespaces=NS), sample.files, strict=True):
        tech_id, *event_ids = el.get("ADMID").split()
        (obj,) = tree.xpath(f"//mets:techMD[@ID='{tech_id}']//premis:object", namespaces=NS)
        assert obj.findtext(
            "premis:objectIdentifier/premis:objectIdentifierValue", namespaces=NS
        ) == el.get("ID")
        assert obj.findtext("premis:originalName", namespaces=NS) == expected.original_name
        linked = [
            tree.xpath(
                f"//mets:digiprovMD[@ID='{i}']//premis:eventIdentifierValue/text()", namespaces=NS
            )[0]
            for i in event_ids
        ]
        assert linked == [str(e) for e in expected.event_ids]


def test_premis_object_carries_fixity_size_format_and_original_name(tmp_path: Path, sample: Sample):
    tree = parse(write_rep(tmp_path, sample))
    objects = tree.xpath("//premis:object[@xsi:type='file']", namespaces=NS)
    assert len(objects) == len(sample.files)
    first, unidentified, ambiguous = objects[0], objects[3], objects[7]
    algorithms = first.xpath(".//premis:messageDigestAlgorithm/text()", namespaces=NS)
    assert algorithms == ["SHA-256", "SHA-512", "MD5", "SHA-1"]
    assert first.findtext(".//premis:compositionLevel", namespaces=NS) == "0"
    assert first.findtext(".//premis:size", namespaces=NS) == "1000"
    assert first.xpath(".//premis:formatRegistryKey/text()", namespaces=NS) == ["fmt/353"]
    assert first.findtext(".//premis:formatVersion", namespaces=NS) == "6.0"
    assert first.findtext(".//premis:originalName", namespaces=NS) == "café/naïve résumé.txt"
    assert "unidentified" in unidentified.xpath(".//premis:formatNote/text()", namespaces=NS)
    assert not unidentified.xpath(".//premis:formatRegistry", namespaces=NS)
    assert ambiguous.xpath(".//premis:formatRegistryKey/text()", namespaces=NS) == [
        "fmt/353",
        "fmt/154",
    ]


def test_a_failed_identification_keeps_its_reason(tmp_path: Path, sample: Sample):
    # file-000014 timed out; file-000004 simply matched nothing. They must not look alike.
    tree = parse(write_rep(tmp_path, sample))

    def notes(file_id: str) -> list[str]:
        return tree.xpath(
            f"//mets:techMD[@ID='tech-{file_id}']//premis:formatNote/text()", namespaces=NS
        )

    assert "identification failed: timeout after 1e-05s" in notes("file-000014")
    assert not any(n.startswith("identification failed") for n in notes("file-000004"))
    assert "identification warning: 2 candidate formats: fmt/353, fmt/154" in notes("file-000008")
    failures = tree.xpath("//premis:event[.//premis:eventOutcome='failure']", namespaces=NS)
    assert len(failures) == 3  # files 14, 34 and 54 timed out
    failure = failures[0]
    assert failure.findtext("premis:eventType", namespaces=NS) == "format identification"
    assert (
        failure.findtext(".//premis:eventOutcomeDetailNote", namespaces=NS)
        == "timeout after 1e-05s"
    )
    assert failure.findtext(".//premis:linkingObjectIdentifierValue", namespaces=NS) == (
        "file-000014"
    )
    (file_el,) = tree.xpath("//mets:file[@ID='file-000014']", namespaces=NS)
    event_mets_id = failure.getparent().getparent().getparent().get("ID")
    assert event_mets_id in file_el.get("ADMID").split()


def premis_links_resolve(tree: etree._ElementTree) -> list[str]:
    """Every linkingObjectIdentifier names a PREMIS object of the same document."""
    objects = {
        (
            o.findtext("premis:objectIdentifier/premis:objectIdentifierType", namespaces=NS),
            o.findtext("premis:objectIdentifier/premis:objectIdentifierValue", namespaces=NS),
        )
        for o in tree.xpath("//premis:object", namespaces=NS)
    }
    dangling = []
    for link in tree.xpath("//premis:linkingObjectIdentifier", namespaces=NS):
        key = (
            link.findtext("premis:linkingObjectIdentifierType", namespaces=NS),
            link.findtext("premis:linkingObjectIdentifierValue", namespaces=NS),
        )
        if key not in objects:
            dangling.append(f"{key[0]}:{key[1]}")
    return dangling


def test_package_events_link_to_package_objects_in_both_documents(tmp_path: Path):
    sample = make_sample(n_files=5)
    rep_id = f"{AIP_ID}/rep1"
    digest_events = {"fixity check", "message digest calculation", "format identification"}
    events = tuple(
        replace(e, objects=(ObjectLink(rep_id),)) if e.type in digest_events else e
        for e in sample.package.events
    )
    sample.package = replace(sample.package, events=events)
    rep = write_rep(tmp_path, sample)
    root = tmp_path / "root.xml"
    write_root_mets(root, sample.package, [RepresentationRef.from_file("rep1", 1, rep)])
    for path in (rep, root):
        tree = parse(path)
        assert validate_mets(path) == []
        assert premis_links_resolve(tree) == []
        (entity,) = tree.xpath("//premis:object[@xsi:type='intellectualEntity']", namespaces=NS)
        assert entity.findtext(".//premis:objectIdentifierValue", namespaces=NS) == str(AIP_ID)
        (representation,) = tree.xpath("//premis:object[@xsi:type='representation']", namespaces=NS)
        assert representation.findtext(".//premis:objectIdentifierValue", namespaces=NS) == rep_id
        fixity = tree.xpath("//premis:event[premis:eventType='fixity check']", namespaces=NS)[0]
        assert fixity.findtext(".//premis:linkingObjectIdentifierValue", namespaces=NS) == rep_id
    parsed = read_mets(root)
    assert ("intellectualEntity", "UUID", str(AIP_ID)) in parsed.package_objects
    assert ("representation", "local", rep_id) in parsed.package_objects
    assert parsed.package.events == events


def test_every_event_has_outcome_agent_and_object_links(tmp_path: Path, sample: Sample):
    tree = parse(write_rep(tmp_path, sample))
    events = tree.xpath("//premis:event", namespaces=NS)
    assert len(events) == len(sample.package.events) + len(sample.events)
    for event in events:
        for part in (
            "eventOutcomeInformation/premis:eventOutcome",
            "linkingAgentIdentifier",
            "linkingObjectIdentifier",
        ):
            assert event.find(f"premis:{part}", NS) is not None, part
    # A package event points at the AIP; a file event at its file.
    ingestion = tree.xpath("//premis:event[premis:eventType='ingestion']", namespaces=NS)[0]
    assert ingestion.findtext(".//premis:linkingObjectIdentifierValue", namespaces=NS) == str(
        AIP_ID
    )
    warning = tree.xpath(
        "//premis:event[premis:eventOutcome='warning' or .//premis:eventOutcome='warning']",
        namespaces=NS,
    )[0]
    assert (
        warning.findtext(".//premis:linkingObjectIdentifierValue", namespaces=NS) == "file-000004"
    )


def test_package_events_are_written_once_not_per_file(tmp_path: Path):
    sample = make_sample(n_files=200)
    text = write_rep(tmp_path, sample).read_text("utf-8")
    assert text.count("<eventType>ingestion</eventType>") == 1
    assert text.count("<eventType>format identification</eventType>") == 1 + len(sample.events)


def test_structmap_mirrors_the_folder_tree(tmp_path: Path, sample: Sample):
    tree = parse(write_rep(tmp_path, sample))
    (top,) = tree.xpath("//mets:structMap[@TYPE='PHYSICAL']/mets:div", namespaces=NS)
    assert top.get("LABEL") == "rep1"
    paths = {}
    for fptr in top.iter(f"{{{METS_NS}}}fptr"):
        labels = [d.get("LABEL") for d in fptr.iterancestors(f"{{{METS_NS}}}div")][::-1]
        paths[fptr.get("FILEID")] = "/".join(labels[1:])
    for f in sample.files:
        assert f"representations/rep1/{paths[f.id]}/" == f.path.rsplit("/", 1)[0] + "/"
    # One div per folder, not one per file.
    assert len(top.xpath(".//mets:div[@LABEL='deep']", namespaces=NS)) == 1
    assert len(top.xpath(".//mets:div[@LABEL='series-1']", namespaces=NS)) == 1


def test_bag_info_becomes_dublin_core_and_is_kept_verbatim(tmp_path: Path, sample: Sample):
    pairs = dublin_core(sample.package)
    assert ("identifier", f"urn:uuid:{AIP_ID}") in pairs
    assert ("description", "Survey maps, 1850–1900 <scanned>") in pairs
    assert ("creator", "Ministry of Maps & Charts") in pairs
    assert ("date", "2024-05-30") in pairs
    assert ("relation", "MAPS") in pairs
    assert ("title", 'Küstenkarten "Nord"') in pairs
    assert [v for k, v in pairs if k == "identifier"][1:] == ["MAPS-0001", "urn:x-maps:42"]
    assert not any(v == "123456.60" for _, v in pairs)  # Payload-Oxum is not description

    tree = parse(write_rep(tmp_path, sample))
    assert tree.xpath("//mets:mdWrap[@MDTYPE='DC']//dc:creator/text()", namespaces=NS) == [
        "Ministry of Maps & Charts"
    ]
    agents = tree.xpath("//mets:metsHdr/mets:agent/mets:name/text()", namespaces=NS)
    assert agents == [
        "preservation",
        "fido",
        "State Archive of Atlantis",
        "Ministry of Maps & Charts",
        "Ada Lovelace",
    ]


def test_file_like_destination_gets_the_same_bytes(tmp_path: Path, sample: Sample):
    dest = write_rep(tmp_path, sample)
    buffer = io.BytesIO()
    write_representation_mets(buffer, sample.package, sample.files, sample.events)
    assert buffer.getvalue() == dest.read_bytes()


def test_mets_is_compact(tmp_path: Path):
    sample = make_sample(n_files=1000)
    dest = write_rep(tmp_path, sample)
    assert dest.stat().st_size / len(sample.files) <= 3 * 1024


# -- refusals ---------------------------------------------------------------------------


def _refuses(tmp_path: Path, sample: Sample, match: str) -> None:
    dest = tmp_path / "METS.xml"
    with pytest.raises(MetadataError, match=match):
        write_representation_mets(dest, sample.package, sample.files, sample.events)
    assert list(tmp_path.iterdir()) == [], "a refused METS must leave nothing behind"


def test_refuses_a_file_naming_an_unknown_event(tmp_path: Path, sample: Sample):
    sample.events.pop()
    _refuses(tmp_path, sample, "neither a package event nor among the events given")


def test_refuses_an_event_by_an_unknown_agent(tmp_path: Path, sample: Sample):
    from dataclasses import replace

    from preservation.metadata import AgentLink

    sample.events[0] = replace(sample.events[0], agents=(AgentLink("nobody"),))
    _refuses(tmp_path, sample, "names agent 'nobody'")


def test_refuses_duplicate_ids_and_paths(tmp_path: Path, sample: Sample):
    from dataclasses import replace

    sample.files[10] = replace(sample.files[10], id=sample.files[9].id)
    _refuses(tmp_path, sample, "given twice")
    sample = make_sample()
    sample.files[10] = replace(sample.files[10], path=sample.files[11].path)
    _refuses(tmp_path, sample, "same path")


def test_refuses_files_outside_the_representation_and_reserved_ids(tmp_path: Path, sample: Sample):
    from dataclasses import replace

    sample.files[5] = replace(sample.files[5], path="representations/rep2/data/x.tif")
    _refuses(tmp_path, sample, "not under 'representations/rep1/'")
    sample = make_sample()
    sample.files[5] = replace(sample.files[5], id="ev-1")
    _refuses(tmp_path, sample, "starts like an ID")


def test_refuses_names_xml_cannot_carry(tmp_path: Path, sample: Sample):
    from dataclasses import replace

    bad = replace(sample.files[20], original_name="bell\x07.txt")
    sample.files[20] = bad
    dest = tmp_path / "METS.xml"
    with pytest.raises(MetadataError, match="XML 1.0 cannot carry") as info:
        write_representation_mets(dest, sample.package, sample.files, sample.events)
    assert info.value.path == "bell\x07.txt"
    assert list(tmp_path.iterdir()) == []


def test_a_crash_midway_leaves_no_partial_document(tmp_path: Path, sample: Sample):
    def files():
        yield from sample.files[:30]
        raise RuntimeError("staging database went away")

    dest = tmp_path / "METS.xml"
    with pytest.raises(RuntimeError):
        write_representation_mets(dest, sample.package, files(), sample.events)
    assert list(tmp_path.iterdir()) == []


def test_rewriting_replaces_atomically(tmp_path: Path, sample: Sample):
    dest = write_rep(tmp_path, sample)
    first = dest.read_bytes()
    write_rep(tmp_path, sample)
    assert dest.read_bytes() == first  # deterministic for the same input
    assert sorted(p.name for p in tmp_path.iterdir()) == ["METS.xml"]


def test_two_representations_in_one_package_get_distinct_objids(tmp_path: Path):
    one = make_sample(n_files=3)
    two = make_sample(n_files=3, representation="rep2", version=2)
    a, b = write_rep(tmp_path, one, "a.xml"), write_rep(tmp_path, two, "b.xml")
    assert parse(a).getroot().get("OBJID") == f"{AIP_ID}/rep1"
    assert parse(b).getroot().get("OBJID") == f"{AIP_ID}/rep2"
    assert read_mets(b).package.representation == "rep2"
    assert uuid.UUID(parse(b).getroot().get("OBJID").split("/")[0]) == AIP_ID
