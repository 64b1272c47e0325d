"""preservation/characterise/registry.py: the shipped registry, and what a broken one says."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest

from preservation.characterise import KINDS, TOOLS, VALIDATORS, FormatEntry, load_registry
from preservation.characterise.registry import DEFAULT_REGISTRY, SCHEMA_NAME
from preservation.config import Settings
from preservation.errors import ConfigurationError
from tests.unit.characterise.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "schemas" / SCHEMA_NAME


def _pronom_names() -> dict[str, str]:
    """Every PUID in fido's shipped PRONOM signatures, with its name."""
    import fido  # type: ignore[import-untyped]
    from fido.versions import get_local_versions  # type: ignore[import-untyped]

    versions = get_local_versions(fido.CONFIG_DIR)
    root = ET.parse(Path(fido.CONFIG_DIR, versions.pronom_signature)).getroot()
    return {f.findtext("puid") or "": f.findtext("name") or "" for f in root.findall("format")}


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "Portable Network Graphics",
        "kind": "image",
        "puids": ["fmt/11", "fmt/12"],
        "characterise": ["exiftool"],
        "validate": ["pillow"],
    }
    return entry | changes


def test_the_default_registry_is_loaded_once_per_process(settings: Settings) -> None:
    assert settings.characterisation_registry is None
    assert load_registry() is load_registry()
    assert load_registry(settings.characterisation_registry) is load_registry()


@pytest.mark.parametrize(
    ("puid", "name", "kind", "tools", "validators"),
    [
        ("fmt/11", "Portable Network Graphics", "image", ("exiftool",), ("pillow",)),
        ("fmt/645", "JPEG (raw, JFIF, Exif)", "image", ("exiftool",), ("pillow",)),
        ("x-fmt/392", "JPEG 2000 Part 1 (JP2)", "image", ("exiftool",), ("jpylyzer",)),
        ("fmt/141", None, "audio", ("mediainfo",), ("ffmpeg",)),
        ("fmt/712", None, "audio", ("mediainfo",), ("ffmpeg",)),
        ("fmt/279", "FLAC", "audio", ("mediainfo",), ("ffmpeg",)),
        ("fmt/569", "Matroska and WebM", "video", ("mediainfo", "ffprobe"), None),
        ("x-fmt/384", "QuickTime", "video", ("mediainfo", "ffprobe"), ("ffmpeg",)),
        ("fmt/1129", None, "document", ("exiftool",), ("qpdf",)),
        ("fmt/412", None, "document", ("exiftool",), ()),
        ("fmt/101", None, "text", (), ("xml",)),
        ("x-fmt/18", None, "text", (), ()),
    ],
)
def test_default_entries(
    puid: str,
    name: str | None,
    kind: str,
    tools: tuple[str, ...],
    validators: tuple[str, ...] | None,
) -> None:
    entry = load_registry().entry_for(puid)
    assert entry is not None and puid in entry.puids
    assert entry.kind == kind
    assert entry.characterise == tools
    if name is not None:
        assert entry.name == name
    if validators is not None:
        assert entry.validate == validators


def test_matroska_is_also_checked_by_mediaconch() -> None:
    entry = load_registry().entry_for("fmt/569")
    assert entry is not None and entry.validate == ("ffmpeg", "mediaconch")


def test_no_entry_for_an_unidentified_file_or_an_unlisted_format() -> None:
    registry = load_registry()
    assert registry.entry_for(None) is None
    assert registry.entry_for("fmt/99999") is None
    assert registry.entry_for("") is None


def test_every_default_puid_is_a_pronom_format_fido_knows() -> None:
    known = _pronom_names()
    registry = load_registry()
    unknown = [(e.name, p) for e in registry for p in e.puids if p not in known]
    assert unknown == []
    assert sum(len(e.puids) for e in registry) > 150


def test_what_fido_says_for_the_sample_files_reaches_the_right_entries(
    samples: dict[str, Path],
) -> None:
    from preservation.identify import get_engine

    names = list(SAMPLES)
    found = get_engine("fido").identify_batch([samples[n] for n in names])
    assert {n: r.puid for n, r in zip(names, found, strict=True)} == {
        n: puid for n, (_, puid) in SAMPLES.items()
    }
    registry = load_registry()
    for name, (_, puid) in SAMPLES.items():
        entry = registry.entry_for(puid)
        assert entry is not None, name


def test_the_schema_and_the_code_name_the_same_kinds_tools_and_validators() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    fields = schema["$defs"]["format"]["properties"]
    assert tuple(fields["kind"]["enum"]) == KINDS
    assert tuple(fields["characterise"]["items"]["enum"]) == TOOLS
    assert tuple(fields["validate"]["items"]["enum"]) == VALIDATORS


def test_the_shipped_file_is_readable_one_entry_per_family() -> None:
    shipped = Path(__file__).resolve().parents[3] / "preservation" / "characterise"
    document = json.loads((shipped / DEFAULT_REGISTRY).read_text(encoding="utf-8"))
    names = [entry["name"] for entry in document["formats"]]
    assert len(names) == len(set(names))


def test_entries_are_frozen() -> None:
    entry = load_registry().entry_for("fmt/11")
    assert isinstance(entry, FormatEntry)
    with pytest.raises(FrozenInstanceError):
        entry.kind = "audio"  # type: ignore[misc]


def test_an_archive_registry_is_read_afresh_each_time(tmp_path: Path) -> None:
    path = _write(tmp_path, {"formats": [_entry()]})
    first = load_registry(path)
    assert first.entry_for("fmt/11") == FormatEntry(
        name="Portable Network Graphics",
        kind="image",
        puids=("fmt/11", "fmt/12"),
        characterise=("exiftool",),
        validate=("pillow",),
    )
    assert first.entry_for("fmt/13") is None
    _write(tmp_path, {"formats": [_entry(puids=["fmt/13"], characterise=[])]})
    second = load_registry(path)
    assert second.entry_for("fmt/11") is None
    entry = second.entry_for("fmt/13")
    assert entry is not None and entry.characterise == () and entry.validate == ("pillow",)


def test_tools_and_validators_may_be_left_out(tmp_path: Path) -> None:
    path = _write(tmp_path, {"formats": [{"name": "Text", "kind": "text", "puids": ["x-fmt/111"]}]})
    entry = load_registry(path).entry_for("x-fmt/111")
    assert entry is not None and entry.characterise == () and entry.validate == ()


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigurationError, match="not found") as caught:
        load_registry(missing)
    assert caught.value.path == str(missing)


def test_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text('{"formats": [', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"registry\.json: not JSON") as caught:
        load_registry(path)
    assert caught.value.path == str(path)


@pytest.mark.parametrize(
    ("document", "where", "rule"),
    [
        ({"formats": [_entry(kind="moving image")]}, "at formats/0/kind", "enum"),
        ({"formats": [_entry(characterise=["jhove"])]}, "at formats/0/characterise/0", "enum"),
        ({"formats": [_entry(validate=["veraPDF"])]}, "at formats/0/validate/0", "enum"),
        ({"formats": [_entry(puids=["png"])]}, "at formats/0/puids/0", "pattern"),
        ({"formats": [_entry(puids=[])]}, "at formats/0/puids", "minItems"),
        ({"formats": [_entry(colour="red")]}, "at formats/0", "additionalProperties"),
        ({"formats": [_entry(characterise=["exiftool", "exiftool"])]}, "characterise", "unique"),
        ({"entries": []}, "at (top)", "required"),
    ],
)
def test_a_schema_break_names_the_file_the_json_path_and_the_rule(
    tmp_path: Path, document: Any, where: str, rule: str
) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(ConfigurationError) as caught:
        load_registry(path)
    message = caught.value.message
    assert message.startswith(f"{path}: breaks {SCHEMA_NAME}: ")
    assert where in message
    assert f"(rule {rule}" in message


def test_a_puid_in_two_entries_names_the_file_and_both_entries(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "formats": [
                _entry(),
                _entry(name="Images, again", puids=["fmt/13", "fmt/12"]),
            ]
        },
    )
    with pytest.raises(ConfigurationError) as caught:
        load_registry(path)
    message = caught.value.message
    assert message.startswith(f"{path}: at formats/1/puids/1: fmt/12 ")
    assert "'Portable Network Graphics'" in message and "'Images, again'" in message
    assert "formats/0" in message and "rule unique-puid" in message
    assert caught.value.context["rule"] == "unique-puid"
