"""SIARD in characterisation: the ``siard`` tool, the ``database`` properties, the validator.

The archives are real: a small SQLite database exported by the project's own
exporter, then given descriptions, a lying row count, a damaged entry
(tests/siard_edits.py). The tool reads metadata.xml and the zip's listing;
the validator wraps ``validate_siard`` and names table, entry and rule.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from preservation.catalog.search import parse_property_filter
from preservation.characterise import (
    KINDS,
    PROPERTY_KEYS,
    TOOLS,
    VALIDATORS,
    FileToCharacterise,
    ToolBox,
    characterise,
    load_registry,
    significant_properties,
)
from preservation.characterise.properties import DESCRIBED_LIMIT
from preservation.characterise.siard import SiardTool, describe_siard
from preservation.characterise.validation import (
    Finding,
    _chunk_size,
    siard_problem_text,
    validate_files,
    validator,
)
from preservation.metadata.mets import PROPERTY_LISTS, PROPERTY_NAMES
from tests.siard_edits import (
    COLUMN_DESCRIPTION,
    METADATA,
    TABLE_DESCRIPTION,
    damage_entry,
    edit_metadata,
    lying_rows,
    small_siard,
)

PERSON_XML = "content/schema0/table1/table1.xml"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("siard")
    good = small_siard(folder)
    return {
        "good": good,
        "lying": lying_rows(good, folder / "lying.siard"),
        "damaged": damage_entry(
            good, folder / "damaged.siard", "content/schema0/table1/table1.xml"
        ),
    }


def _table(record: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        t for s in record["schemas"] for t in s["tables"] if t["name"] == name
    ]
    assert len(found) == 1
    return found[0]


# -- the names ---------------------------------------------------------------------


def test_the_new_names_are_known_everywhere() -> None:
    assert "database" in KINDS and "siard" in TOOLS and "siard" in VALIDATORS
    assert "siard" in ToolBox().names()
    assert PROPERTY_KEYS["database"] == (
        "schemas",
        "tables",
        "rows",
        "lob_count",
        "lob_bytes",
        "source_dbms",
        "described",
    )
    assert set(PROPERTY_KEYS["database"]) <= PROPERTY_NAMES  # written in the METS too
    assert PROPERTY_LISTS == {"described"}
    for puid in ("fmt/1777", "fmt/1196"):
        entry = load_registry().entry_for(puid)
        assert entry is not None and entry.kind == "database"
        assert entry.characterise == ("siard",) and entry.validate == ("siard",)
    two_oh = load_registry().entry_for("fmt/995")
    assert two_oh is not None and two_oh.validate == ()
    assert parse_property_filter("tables>=2").value == 2.0
    assert parse_property_filter("source_dbms=SQLite").value == "SQLite"


# -- the tool ----------------------------------------------------------------------


def test_the_tool_describes_the_database_from_its_metadata(archives: dict[str, Path]) -> None:
    run = SiardTool().run([archives["good"]], names=["rep1/data/family.siard"])
    assert run.tool == "siard" and run.version.startswith("preservation ")
    assert run.errors == {}
    [record] = run.per_file
    assert run.document == [record]
    json.dumps(run.document)  # plain JSON, as the AIP keeps it
    assert str(archives["good"].parent) not in json.dumps(run.document)
    assert record["file"] == "rep1/data/family.siard"
    assert record["siard_version"] == "2.2"
    assert record["dbname"] == "family.db"
    assert record["source_dbms"].startswith("SQLite ")
    assert [s["name"] for s in record["schemas"]] == ["main"]
    person = _table(record, "person")
    assert person["description"] == TABLE_DESCRIPTION and person["rows"] == 2
    assert [c["name"] for c in person["columns"]] == ["id", "name", "born", "portrait"]
    born = next(c for c in person["columns"] if c["name"] == "born")
    assert born == {"name": "born", "type": "DATE", "description": COLUMN_DESCRIPTION}
    assert _table(record, "letter")["rows"] == 3
    assert (record["lob_count"], record["lob_bytes"]) == (1, 6000)  # the portrait's file


def test_the_database_properties(archives: dict[str, Path]) -> None:
    record = describe_siard(archives["good"])
    props = significant_properties("database", {"siard": record})
    assert list(props) == list(PROPERTY_KEYS["database"])
    assert {k: props[k] for k in ("schemas", "tables", "rows", "lob_count", "lob_bytes")} == {
        "schemas": 1,
        "tables": 2,
        "rows": 5,
        "lob_count": 1,
        "lob_bytes": 6000,
    }
    assert props["source_dbms"].startswith("SQLite ")
    described = props["described"]
    for word in ("main.person", "main.letter", "postmark", "born", TABLE_DESCRIPTION):
        assert word in described
    assert COLUMN_DESCRIPTION in described and "Family papers, digitised" in described
    assert len(described) == len(set(described))  # "id" once, though both tables have it


def test_described_is_capped_tables_first_and_holds_only_what_xml_and_jsonb_can() -> None:
    tables = [
        {
            "name": f"table_{t}",
            "description": f"about\x00 table\x07 {t}\n\ton two lines",
            "rows": 10,
            "columns": [{"name": f"col_{t}_{c}", "type": "INTEGER"} for c in range(40)],
        }
        for t in range(300)
    ]
    record = {"dbname": "big", "schemas": [{"name": "s", "tables": tables, "views": []}]}
    props = significant_properties("database", {"siard": record})
    described = props["described"]
    assert sum(map(len, described)) <= DESCRIBED_LIMIT
    assert all(f"s.table_{t}" in described for t in range(300))  # every table, before columns
    assert "about table 299 on two lines" in described
    assert "col_0_0" in described and "col_299_39" not in described
    assert not any(ch in line for line in described for ch in "\x00\x07\n\t")
    assert (props["tables"], props["rows"]) == (300, 3000)


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (lambda p: p.write_bytes(b"no zip at all" * 10), "zip"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("header/siardversion/2.2/", ""), "structure"),
        (
            lambda p: zipfile.ZipFile(p, "w").writestr(
                METADATA, '<!DOCTYPE x [<!ENTITY e "boom">]><siardArchive/>'
            ),
            "xml-entities",
        ),
    ],
    ids=["not-a-zip", "no-metadata", "doctype"],
)
def test_an_archive_that_cannot_be_described_is_an_error_not_an_exception(
    archives: dict[str, Path], tmp_path: Path, make: Any, rule: str
) -> None:
    bad = tmp_path / "bad.siard"
    make(bad)
    run = SiardTool().run([archives["good"], bad], names=["good.siard", "bad.siard"])
    assert run.per_file[0]["dbname"] == "family.db" and run.per_file[1] == {}
    assert list(run.errors) == [1] and run.errors[1].endswith(f"(rule {rule})")
    assert run.document[1] == {"file": "bad.siard", "error": run.errors[1]}


def test_the_batch_runner_calls_it_for_siard_formats(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    files = [
        FileToCharacterise("db", archives["good"], "fmt/1777"),
        FileToCharacterise("zip", archives["good"], "x-fmt/263"),  # a plain ZIP: no tool
    ]
    with ToolBox() as tools:
        result = characterise(files, registry=load_registry(), out_dir=tmp_path, tools=tools)
    assert result.kinds == {"db": "database"}
    assert result.properties["db"]["tables"] == 2
    assert [p.name for p in result.documents] == ["siard-001.json"]
    document = json.loads(result.documents[0].read_text("utf-8"))
    assert document["tool"] == "siard" and document["output"][0]["dbname"] == "family.db"


# -- the validator -----------------------------------------------------------------


def test_a_sound_archive_is_valid(archives: dict[str, Path]) -> None:
    [finding] = validator("siard").check([archives["good"]])
    assert finding == Finding(True, "siard", finding.tool_version)
    assert "SIARD 2.2" in finding.tool_version


def test_a_lying_row_count_names_the_table_entry_and_rule(archives: dict[str, Path]) -> None:
    [finding] = validator("siard").check([archives["lying"]])
    assert finding.valid is False
    assert finding.message.startswith("main.letter (content/schema0/table0/table0.xml): ")
    assert "says 4 rows" in finding.message and "holds 3" in finding.message
    assert finding.message.endswith("(rule row-count)")


def test_a_damaged_zip_is_rule_zip(archives: dict[str, Path], tmp_path: Path) -> None:
    [damaged] = validator("siard").check([archives["damaged"]])
    assert damaged.valid is False and "(rule zip)" in damaged.message
    assert damaged.message.startswith("main.person (content/schema0/table1/table1.xml): ")
    cut = tmp_path / "cut.siard"
    cut.write_bytes(archives["good"].read_bytes()[:300])
    [truncated] = validator("siard").check([cut])
    assert truncated.valid is False and truncated.message.endswith("(rule zip)")
    assert "/" not in truncated.message.split(" ", 1)[0]  # the file's name, not its path


def test_every_problem_is_listed_with_its_rule_and_the_rule_survives_a_long_message() -> None:
    from preservation.siard.validate import Problem

    entry = "content/schema0/table0/table0.xml"
    long = siard_problem_text(Problem(entry, "s.t", "table-xsd", "x" * 2000))
    assert long.endswith("… (rule table-xsd)") and len(long) < 400
    bare = siard_problem_text(Problem(None, None, "table-xsd", "no metadata.xml"))
    assert bare == "no metadata.xml (rule table-xsd)"


def test_each_archive_is_its_own_task(archives: dict[str, Path], tmp_path: Path) -> None:
    """A database per task: two archives are checked side by side, not queued in one chunk."""
    assert _chunk_size(validator("siard"), 10, 2) == 1
    other = edit_metadata(archives["good"], tmp_path / "copy.siard", lambda a: None)
    found = validate_files({"siard": [archives["good"], other, archives["lying"]]})
    assert [found[p][0].valid for p in (archives["good"], other, archives["lying"])] == [
        True,
        True,
        False,
    ]


def test_a_zip_bomb_is_refused_before_anything_is_inflated(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    from preservation.errors import SiardError
    from tests.unit.siard.test_validate import with_overlapping_entries

    names = [f"content/schema0/table1/lob9/record{i}.txt" for i in range(3)]
    bomb = with_overlapping_entries(archives["good"], tmp_path / "bomb.siard", names, 50_000)
    with pytest.raises(SiardError) as refused:
        describe_siard(bomb)
    assert refused.value.rule == "zip" and "share bytes" in refused.value.message


def test_the_tool_and_the_validator_count_the_same_lob_files(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    from preservation.siard.validate import validate_siard

    # A file in a table's folder no cell refers to is a LOB file of the archive all the
    # same; one outside every table's folder is none (the validator reports both).
    extra = tmp_path / "extra.siard"
    with zipfile.ZipFile(archives["good"]) as zin, zipfile.ZipFile(extra, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("content/schema0/table1/lob9/unused.bin", b"x" * 100)
        zout.writestr("content/schema0/stray.bin", b"y" * 10)
    for path, expected in ((archives["good"], (1, 6000)), (extra, (2, 6100))):
        record = describe_siard(path)
        report = validate_siard(path)
        assert (record["lob_count"], record["lob_bytes"]) == expected, path.name
        assert (report.lob_count, report.lob_bytes) == expected, path.name
