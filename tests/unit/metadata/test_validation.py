"""Offline validation: the schemas compile without a network and really check PREMIS."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from lxml import etree

from preservation.errors import MetadataError
from preservation.metadata import load_schema, validate_mets, write_representation_mets
from preservation.metadata.validation import DEFAULT_SCHEMAS_DIR, _LocalSchemas, safe_parser

from .conftest import Sample


def _in_fresh_thread(fn):
    """Run ``fn`` where the per-thread schema cache is empty; return or re-raise."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def test_without_a_local_xlink_the_mets_schema_cannot_compile():
    # Proves the parser really is offline: were it fetching the LoC URL, this would pass.
    parsed = etree.parse(str(DEFAULT_SCHEMAS_DIR / "mets-1.12.1.xsd"), safe_parser())
    with pytest.raises(etree.XMLSchemaParseError, match="simpleLink"):
        etree.XMLSchema(parsed)


def test_the_wrapper_alone_makes_validation_offline():
    parsed = etree.parse(str(DEFAULT_SCHEMAS_DIR / "mets-premis.xsd"), safe_parser())
    assert isinstance(etree.XMLSchema(parsed), etree.XMLSchema)


def test_the_resolver_alone_also_makes_validation_offline():
    parser = safe_parser()
    parser.resolvers.add(_LocalSchemas(DEFAULT_SCHEMAS_DIR))
    parsed = etree.parse(str(DEFAULT_SCHEMAS_DIR / "mets-1.12.1.xsd"), parser)
    assert isinstance(etree.XMLSchema(parsed), etree.XMLSchema)


def test_each_thread_compiles_its_own_schema():
    mine = load_schema()
    theirs = _in_fresh_thread(load_schema)
    assert isinstance(theirs, etree.XMLSchema) and theirs is not mine


def test_the_loc_mets_schema_is_kept_unmodified():
    # The remote import stays in the file: the wrapper, not an edit, makes it offline.
    text = (DEFAULT_SCHEMAS_DIR / "mets-1.12.1.xsd").read_text("utf-8")
    assert 'schemaLocation="http://www.loc.gov/standards/xlink/xlink.xsd"' in text
    shared = Path("/work/shared/schemas/mets-1.12.1.xsd")
    if shared.exists():
        assert shared.read_bytes() == (DEFAULT_SCHEMAS_DIR / "mets-1.12.1.xsd").read_bytes()


def test_schema_is_compiled_once_per_thread():
    assert load_schema() is load_schema()


def test_premis_inside_mets_is_validated_not_just_parsed(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    text = dest.read_text("utf-8")
    broken = text.replace(
        "<compositionLevel>0</compositionLevel>", "<compositionLevel>zero</compositionLevel>", 1
    )
    (tmp_path / "bad.xml").write_text(broken, "utf-8")
    errors = validate_mets(tmp_path / "bad.xml")
    assert len(errors) == 1 and "compositionLevel" in errors[0] and errors[0].startswith("line ")


def test_mets_structure_errors_are_all_reported(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    tree = etree.parse(str(dest), safe_parser())
    ns = {"mets": "http://www.loc.gov/METS/"}
    for el in tree.xpath("//mets:file", namespaces=ns)[:3]:
        el.set("SIZE", "big")
    errors = validate_mets(tree)
    assert len(errors) == 3 and all("SIZE" in e for e in errors)


def test_a_dangling_idref_is_invalid(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    text = dest.read_text("utf-8").replace('FILEID="file-000001"', 'FILEID="file-999999"')
    (tmp_path / "bad.xml").write_text(text, "utf-8")
    (problem,) = validate_mets(tmp_path / "bad.xml")
    assert "FILEID names file-999999" in problem


def test_a_duplicate_id_is_invalid(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    text = dest.read_text("utf-8").replace('ID="amd-file-000002"', 'ID="amd-file-000001"')
    (tmp_path / "bad.xml").write_text(text, "utf-8")
    assert any("amd-file-000001" in e for e in validate_mets(tmp_path / "bad.xml"))


def test_not_well_formed_is_one_problem(tmp_path: Path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<mets")
    (problem,) = validate_mets(bad)
    assert problem.startswith("not well-formed")


def test_a_schemas_folder_without_the_wrapper_is_a_configuration_problem(tmp_path: Path):
    for name in ("mets-1.12.1.xsd", "xlink.xsd", "premis-v3-0.xsd"):
        shutil.copy(DEFAULT_SCHEMAS_DIR / name, tmp_path / name)
    with pytest.raises(MetadataError, match="mets-premis.xsd"):
        load_schema(tmp_path)


def test_package_public_names_exist():
    import preservation.metadata as package

    for name in package.__all__:
        assert hasattr(package, name), name
