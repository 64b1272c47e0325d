"""describe_package: from catalogue rows to the METS, Dublin Core and PREMIS of a version."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from preservation.aip import AIPLayout, copy_schemas
from preservation.metadata import (
    read_mets,
    validate_dublin_core,
    validate_mets,
    validate_premis,
)
from preservation.metadata.description import describe_package
from preservation.metadata.mets import METS_NS, PREMIS_NS, XLINK_NS
from preservation.metadata.validation import DEFAULT_SCHEMAS_DIR, safe_parser

from .test_mets import premis_links_resolve

AIP_ID = "0b7f5f0e-93c4-4d59-9d53-6a3c2f1f7e11"
FIDO = "fido 1.6.1"
RELEASE = "PRONOM v109"
DC_SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
NS = {"mets": METS_NS, "premis": PREMIS_NS, "xlink": XLINK_NS}


def file_row(n: int, name: str, **ident: Any) -> SimpleNamespace:
    data = name.encode()
    identification = {
        "puids": ident.pop("puids", []),
        "engine": "fido",
        "engine_version": "1.6.1",
        "signature_release": RELEASE,
        "warning": ident.pop("warning", None),
        "error": ident.pop("error", None),
    }
    return SimpleNamespace(
        original_name=f"data/{name}",
        aip_path=f"data/representations/rep1/data/{name}",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        sha512=hashlib.sha512(data).hexdigest(),
        submitted_digests={},
        puid=(identification["puids"] or [None])[0],
        format_name=ident.pop("format_name", None),
        format_version=None,
        mime=ident.pop("mime", None),
        identification_basis=ident.pop("basis", "none"),
        identification=identification,
    )


def event_row(n: int, kind: str, agent: str = "preservation 0.1.0") -> SimpleNamespace:
    return SimpleNamespace(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        type=kind,
        occurred_at=datetime(2024, 6, 1, 12, n, tzinfo=UTC),
        outcome="success",
        agents={"executing program": [agent]},
        detail=f"{kind} done",
        outcome_detail="",
    )


ROWS = [
    file_row(
        1,
        "images/a.png",
        puids=["fmt/11"],
        format_name="PNG",
        mime="image/png",
        basis="signature",
    ),
    file_row(2, "slow/regex-trap.bin", error="timeout after 1e-05s"),
    file_row(3, "notes/readme.txt", puids=["x-fmt/111"], warning="match on extension only"),
    file_row(4, "mystery.dat"),  # no match at all, and no reason to say more
]
EVENTS = [
    event_row(1, "validation"),
    event_row(2, "fixity check"),
    event_row(3, "message digest calculation"),
    event_row(4, "format identification", agent=FIDO),
]
BAG_INFO = {
    "Source-Organization": ["Museum of Things"],
    "External-Description": ["Letters & drawings"],
    "External-Identifier": ["MUS-42"],
    "Bagging-Date": ["2024-05-30"],
    "Payload-Oxum": ["1.1"],
}


@pytest.fixture
def layout(tmp_path: Path) -> AIPLayout:
    layout = AIPLayout(tmp_path / "aip").create()
    copy_schemas(DEFAULT_SCHEMAS_DIR, layout)
    describe_package(
        layout,
        aip_id=AIP_ID,
        version=1,
        tenant="museum",
        organisation="Museum of Things",
        bag_info=BAG_INFO,
        files=ROWS,
        events=EVENTS,
        agents={FIDO: SimpleNamespace(name="fido", version=f"1.6.1 (signatures {RELEASE})")},
    )
    return layout


def parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), safe_parser())


def test_every_document_is_valid_and_every_premis_link_resolves(layout: AIPLayout) -> None:
    for mets in (layout.representation_mets, layout.root_mets):
        assert validate_mets(mets) == []
        assert premis_links_resolve(parse(mets)) == []
    assert validate_premis(layout.premis_record) == []
    assert premis_links_resolve(parse(layout.premis_record)) == []
    assert validate_dublin_core(layout.dc_record, DC_SCHEMAS) == []


def test_a_failed_identification_is_not_mistaken_for_no_match(layout: AIPLayout) -> None:
    parsed = read_mets(layout.representation_mets)
    by_name = {f.original_name: f for f in parsed.files}
    trap, readme, mystery = (
        by_name["data/slow/regex-trap.bin"],
        by_name["data/notes/readme.txt"],
        by_name["data/mystery.dat"],
    )
    assert trap.format.error == "timeout after 1e-05s"
    assert readme.format.warning == "match on extension only"
    assert mystery.format.error is None and mystery.format.warning is None
    # One event per failed or doubtful file, none for the clean ones.
    assert [(e.outcome, e.outcome_detail) for e in parsed.events] == [
        ("failure", "timeout after 1e-05s"),
        ("warning", "match on extension only"),
    ]
    failure, warning = parsed.events
    assert failure.type == "format identification"
    assert [o.object_id for o in failure.objects] == [trap.id]
    assert failure.id in trap.event_ids and warning.id in readme.event_ids
    assert not set(trap.event_ids) & {e.id for e in parsed.events} - {failure.id}
    assert len(mystery.event_ids) == len(by_name["data/images/a.png"].event_ids) == len(EVENTS)
    # Done by fido, as an agent with its version, not by "preservation".
    agent = {a.id: a for a in parsed.package.agents}[failure.agents[0].agent_id]
    assert (agent.name, agent.type) == ("fido", "software")
    assert RELEASE in (agent.version or "")


def test_content_events_link_to_the_representation_object(layout: AIPLayout) -> None:
    for mets in (layout.representation_mets, layout.root_mets):
        parsed = read_mets(mets)
        links = {e.type: [o.object_id for o in e.objects] for e in parsed.package.events}
        rep_id = f"{AIP_ID}/rep1"
        assert links == {
            "validation": [],  # the package as a whole: its UUID
            "fixity check": [rep_id],
            "message digest calculation": [rep_id],
            "format identification": [rep_id],
        }
        assert ("representation", "local", rep_id) in parsed.package_objects
        assert ("intellectualEntity", "UUID", AIP_ID) in parsed.package_objects


def test_dublin_core_record_is_written_from_bag_info(layout: AIPLayout) -> None:
    root = parse(layout.dc_record).getroot()
    assert root.tag == "{http://www.openarchives.org/OAI/2.0/oai_dc/}dc"
    pairs = [(etree.QName(el).localname, el.text) for el in root]
    identifiers = [value for element, value in pairs if element == "identifier"]
    assert identifiers == [f"urn:uuid:{AIP_ID}", "MUS-42"]
    assert ("creator", "Museum of Things") in pairs
    assert ("description", "Letters & drawings") in pairs
    assert not any(value == "1.1" for _, value in pairs)  # Payload-Oxum is not DC


def test_package_premis_holds_objects_events_and_agents(layout: AIPLayout) -> None:
    root = parse(layout.premis_record).getroot()
    assert root.get("version") == "3.0"
    kinds = [etree.QName(el).localname for el in root]
    assert kinds == ["object", "object"] + ["event"] * len(EVENTS) + ["agent"] * kinds.count(
        "agent"
    )
    assert kinds.count("agent") >= 3  # the software, the organisation, the submitter
    assert root.xpath("premis:event/premis:eventType/text()", namespaces=NS) == [
        e.type for e in EVENTS
    ]


def test_root_mets_points_to_both_records_with_their_digests(layout: AIPLayout) -> None:
    tree = parse(layout.root_mets)
    parsed = read_mets(layout.root_mets)
    expected = {
        "metadata/descriptive/dc.xml": (layout.dc_record, "DC"),
        "metadata/preservation/premis.xml": (layout.premis_record, "PREMIS"),
    }
    refs = {r.path: r for r in parsed.descriptive + parsed.preservation}
    assert set(refs) == set(expected)
    for path, (file, mdtype) in expected.items():
        data = file.read_bytes()
        ref = refs[path]
        assert (ref.mdtype, ref.size, ref.sha256) == (
            mdtype,
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        (el,) = tree.xpath(f"//mets:mdRef[@xlink:href='{path}']", namespaces=NS)
        assert el.get("LOCTYPE") == "URL" and el.get("CHECKSUMTYPE") == "SHA-256"
        # The href is relative to the root METS and reaches the file.
        assert (layout.root_mets.parent / path).read_bytes() == data
    assert [r.path for r in parsed.descriptive] == ["metadata/descriptive/dc.xml"]
    assert [r.path for r in parsed.preservation] == ["metadata/preservation/premis.xml"]
    (metadata_div,) = tree.xpath("//mets:div[@ID='div-metadata']", namespaces=NS)
    assert "dmd-file-1" in metadata_div.get("DMDID").split()
    assert "prov-file-1" in metadata_div.get("ADMID").split()


def test_describing_again_gives_the_same_per_file_events(layout: AIPLayout, tmp_path: Path) -> None:
    first = read_mets(layout.representation_mets).events
    again = AIPLayout(tmp_path / "again").create()
    copy_schemas(DEFAULT_SCHEMAS_DIR, again)
    describe_package(
        again,
        aip_id=AIP_ID,
        version=1,
        tenant="museum",
        organisation="Museum of Things",
        bag_info=BAG_INFO,
        files=ROWS,
        events=EVENTS,
        agents={},
    )
    assert [e.id for e in read_mets(again.representation_mets).events] == [e.id for e in first]
