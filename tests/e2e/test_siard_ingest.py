"""SIARD archives through the embedded ingest: identified, described, validated, searchable.

A bag holding a sound SIARD 2.2 archive (a small SQLite database exported by
the project's exporter, with descriptions) commits with PUID fmt/1777 by the
container check, the ``database`` properties in the catalogue and in the
METS on tape, and a ``siard`` verdict of valid. A bag of faulty archives (a
row count that lies, an entry whose CRC fails, a ``.siard`` cut short)
commits under the default rule with a finding per file naming the table, the
entry and the rule, and is rejected at ``characterise`` under
``invalid_formats: reject`` with the same findings in its report. The bags
given by path are never touched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit  # type: ignore[import-untyped]
import pytest

from preservation import ingest
from preservation.catalog import File, SIPState, service, session_scope
from preservation.catalog.search import SearchQuery, parse_property_filter
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.lookup import search
from preservation.metadata.reader import read_mets
from preservation.storage import recovery
from tests.siard_edits import (
    COLUMN_DESCRIPTION,
    TABLE_DESCRIPTION,
    damage_entry,
    lying_rows,
    small_siard,
)
from tests.trees import tree_digest

CHARACTERISATION = "data/metadata/preservation/characterisation"
#: The faulty bag's files, and what the siard validator must say about each.
FAULTS = {
    "data/lying.siard": ("main.letter (content/schema0/table0/table0.xml): ", "row-count"),
    "data/damaged.siard": ("main.person (content/schema0/table1/table1.xml): ", "zip"),
    "data/cut-short.siard": ("cut-short.siard", "zip"),
}


def _bag(folder: Path) -> Path:
    bagit.make_bag(str(folder), {"Source-Organization": "Family archive"}, checksums=["sha256"])
    return folder


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = tmp_path_factory.mktemp("siard-bags")
    good = small_siard(made / "exports")
    sound = made / "database"
    sound.mkdir()
    shutil.copyfile(good, sound / "family.siard")
    faulty = made / "faulty"
    faulty.mkdir()
    lying_rows(good, faulty / "lying.siard")
    damage_entry(good, faulty / "damaged.siard", "content/schema0/table1/table1.xml")
    (faulty / "cut-short.siard").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"database": _bag(sound), "faulty": _bag(faulty)}


def _context(tmp_path_factory: pytest.TempPathFactory, rules: dict[str, Any] | None) -> Context:
    settings = Settings(home=tmp_path_factory.mktemp("archive") / "var", quiescent_seconds=0.2)
    settings.ensure_dirs()
    if rules is not None:
        (settings.home_dir / "archiving-rules.json").write_text(json.dumps(rules))
    return open_context(settings)


@pytest.fixture(scope="module")
def ingested(
    bags: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, virus_scanner: str | None
) -> Iterator[tuple[Context, dict[str, ingest.IngestResult]]]:
    """Both bags ingested once, tenant ``family``, default rules (a finding is a warning)."""
    ctx = _context(tmp_path_factory, None)
    try:
        yield (
            ctx,
            {name: ingest.run_ingest(ctx, bag, tenant="family") for name, bag in bags.items()},
        )
    finally:
        ctx.close()


def _files(ctx: Context, sip_id: str) -> dict[str, File]:
    with session_scope(ctx.sessions) as s:
        rows = {f.original_name: f for f in service.list_files(s, sip_id=sip_id)}
        s.expunge_all()
        return rows


def test_a_sound_siard_is_identified_described_and_valid(
    ingested: tuple[Context, dict[str, ingest.IngestResult]],
) -> None:
    ctx, results = ingested
    result = results["database"]
    assert result.state == SIPState.COMMITTED.value, (result.problems, result.error)
    assert result.warnings == []
    [row] = _files(ctx, result.sip_id).values()
    assert (row.puid, row.identification_basis, row.format_version) == (
        "fmt/1777",
        "container",
        "2.2",
    )
    assert row.identification and row.identification["warning"] == (
        "container check: header/siardversion/2.2/"
    )
    props = row.properties or {}
    assert {k: props.get(k) for k in ("schemas", "tables", "rows", "lob_count", "lob_bytes")} == {
        "schemas": 1,
        "tables": 2,
        "rows": 5,
        "lob_count": 1,
        "lob_bytes": 6000,
    }
    assert props["source_dbms"].startswith("SQLite ")
    assert {"main.person", "main.letter", "postmark", TABLE_DESCRIPTION} <= set(props["described"])
    assert row.valid is True
    assert [(v["tool"], v["valid"], v["message"]) for v in row.validation or []] == [
        ("siard", True, "")
    ]

    with session_scope(ctx.sessions) as s:
        events = [e for e in service.list_events(s, sip_id=result.sip_id)]
        extraction = [e for e in events if e.type == "metadata extraction"]
        assert [e.agents["executing program"][0].split(" ", 1)[0] for e in extraction] == ["siard"]
        assert extraction[0].outcome == "success"
        validation = [e for e in events if e.type == "validation" and "results_sha256" in e.objects]
        assert len(validation) == 1 and validation[0].outcome == "success"
        for words in ("postmark", "parish register", "lovelace"):
            found = search(s, SearchQuery(tenant_id="family", q=words)).items
            assert result.aip_id in [a.aip_id for a in found], words  # (the faulty copies too)
        assert search(s, SearchQuery(tenant_id="museum", q="postmark")).items == []
        wide = SearchQuery(tenant_id="family", properties=(parse_property_filter("tables>=2"),))
        assert result.aip_id in [a.aip_id for a in search(s, wide).items]
        none = SearchQuery(tenant_id="family", properties=(parse_property_filter("tables>2"),))
        assert search(s, none).items == []


def test_the_aip_on_tape_holds_the_description_and_the_verdict(
    ingested: tuple[Context, dict[str, ingest.IngestResult]], tmp_path: Path
) -> None:
    """Without the catalogue: the siard tool's document, and the properties in the METS."""
    ctx, results = ingested
    result = results["database"]
    bag = recovery.recover(ctx, result.aip_id or "", dest_dir=tmp_path / "recovered")
    document = json.loads((bag / CHARACTERISATION / "siard-001.json").read_text("utf-8"))
    assert document["tool"] == "siard" and document["files"] == ["rep1/data/family.siard"]
    [record] = document["output"]
    tables = {t["name"]: t for s in record["schemas"] for t in s["tables"]}
    assert tables["person"]["description"] == TABLE_DESCRIPTION
    assert COLUMN_DESCRIPTION in json.dumps(record, ensure_ascii=False)
    assert str(ctx.settings.staging_dir) not in json.dumps(document)

    rep = read_mets(bag / "data" / "representations" / "rep1" / "METS.xml")
    [obj] = rep.files
    [row] = _files(ctx, result.sip_id).values()
    assert obj.properties == row.properties  # the described list comes back a list
    assert obj.format.puids == ("fmt/1777",)
    assert obj.format.warning == "container check: header/siardversion/2.2/"
    validations = [e for e in rep.events if e.type == "validation"]
    assert [e.outcome for e in validations] == ["success"]


def test_faulty_archives_are_findings_naming_table_entry_and_rule(
    ingested: tuple[Context, dict[str, ingest.IngestResult]], bags: dict[str, Path]
) -> None:
    ctx, results = ingested
    result = results["faulty"]
    assert result.state == SIPState.COMMITTED.value, (result.problems, result.error)
    files = _files(ctx, result.sip_id)
    assert set(files) == set(FAULTS)
    assert files["data/cut-short.siard"].identification_basis == "extension"
    warned = {w["file"]: w for w in result.warnings if w["rule"] == "invalid-format"}
    assert set(warned) == set(FAULTS)
    for name, (where, rule) in FAULTS.items():
        row = files[name]
        assert row.puid == "fmt/1777" and row.valid is False, name
        [verdict] = row.validation or []
        assert verdict["tool"] == "siard" and verdict["valid"] is False
        assert where in verdict["message"] and f"(rule {rule})" in verdict["message"], verdict
        assert warned[name]["tool"] == "siard" and f"(rule {rule})" in warned[name]["message"]
    lying = files["data/lying.siard"].validation or []
    assert "says 4 rows" in lying[0]["message"] and "holds 3" in lying[0]["message"]
    # the archives that can be described still are; the cut one is a tool error, not a crash
    assert (files["data/lying.siard"].properties or {}).get("tables") == 2
    assert not files["data/cut-short.siard"].properties
    with session_scope(ctx.sessions) as s:
        assert search(s, SearchQuery(tenant_id="family", invalid=True)).items[0].aip_id == (
            result.aip_id
        )
        assert service.verify_event_chain(s, "family") == []


def test_rule_reject_rejects_the_bag_with_the_findings_in_its_report(
    bags: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = tree_digest(bags["faulty"])
    ctx = _context(tmp_path_factory, {"tenants": {"family": {"invalid_formats": "reject"}}})
    try:
        result = ingest.run_ingest(ctx, bags["faulty"], tenant="family")
        assert result.state == SIPState.REJECTED.value
        assert {p["file"] for p in result.problems} == set(FAULTS)
        report = json.loads((Path(result.rejected_to or "") / "report.json").read_text())
        assert report["stage"] == "characterise"
        by_file = {p["file"]: p for p in report["problems"]}
        for name, (where, rule) in FAULTS.items():
            problem = by_file[name]
            assert problem["rule"] == "invalid-format" and problem["tool"] == "siard"
            assert where in problem["message"] and f"(rule {rule})" in problem["message"]
        text = (Path(result.rejected_to or "") / "report.txt").read_text()
        assert "main.letter" in text and "(rule row-count)" in text
        assert not (ctx.settings.staging_dir / result.sip_id).exists()
    finally:
        ctx.close()
    assert tree_digest(bags["faulty"]) == before  # a bag given by path is never touched
