"""preservation/migrate/policy.py: the shipped policy, and what a broken one says."""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest

from preservation.characterise import load_registry
from preservation.errors import ConfigurationError
from preservation.migrate.policy import (
    MODES,
    SCHEMA_NAME,
    VERIFICATIONS,
    Action,
    default_policy_path,
    load_policy,
)
from preservation.migrate.tools import TOOL_KINDS, TOOL_NAMES

ROOT = Path(__file__).resolve().parents[3]


def _pronom_puids() -> set[str]:
    """Every PUID in fido's shipped PRONOM signatures."""
    import fido  # type: ignore[import-untyped]
    from fido.versions import get_local_versions  # type: ignore[import-untyped]

    versions = get_local_versions(fido.CONFIG_DIR)
    root = ET.parse(Path(fido.CONFIG_DIR, versions.pronom_signature)).getroot()
    return {f.findtext("puid") or "" for f in root.findall("format")}


def _document() -> dict[str, Any]:
    """A small valid policy to break in one place at a time."""
    return {
        "name": "test policy",
        "actions": [
            {
                "id": "to-flac",
                "tool": "ffmpeg",
                "arguments": ["-i", "{input}", "-c:a", "flac", "{output}"],
                "target_puid": "fmt/279",
                "extension": ".flac",
                "kind": "audio",
                "verification": ["output", "identify", "pcm"],
            },
            {
                "id": "to-tiff",
                "tool": "pillow",
                "arguments": ["format=TIFF"],
                "target_puid": "fmt/353",
                "extension": ".tif",
                "kind": "image",
                "verification": ["output", "pixels"],
            },
        ],
        "rules": [
            {"name": "WAV", "puids": ["fmt/141", "fmt/142"], "preservation": ["to-flac"]},
            {"name": "PNG", "puids": ["fmt/11"], "preservation": ["to-tiff"], "access": None},
        ],
    }


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
    return path


# --- the shipped policy -------------------------------------------------------------


def test_the_default_policy_loads_once_and_names_its_bytes() -> None:
    policy = load_policy()
    assert policy is load_policy(None)
    assert policy.name == "default"
    assert policy.source == "default"
    assert policy.mode == "best-effort"
    assert policy.sha256 == hashlib.sha256(default_policy_path().read_bytes()).hexdigest()
    assert len(policy.rules) >= 10


def test_the_default_policy_is_shipped_with_the_package() -> None:
    assert default_policy_path().parent == ROOT / "preservation" / "migrate"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "migrate/*.json" in pyproject["tool"]["setuptools"]["package-data"]["preservation"]
    assert SCHEMA_NAME in (ROOT / "schemas" / "README.md").read_text("utf-8")


def test_the_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((ROOT / "schemas" / SCHEMA_NAME).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    action = schema["$defs"]["action"]["properties"]
    assert set(action["tool"]["enum"]) == set(TOOL_NAMES)
    assert set(action["verification"]["items"]["enum"]) == VERIFICATIONS
    assert tuple(schema["properties"]["mode"]["enum"]) == MODES


def test_every_default_action_is_sound() -> None:
    policy = load_policy()
    actions = policy.to_dict()["actions"]
    assert len({a["id"] for a in actions}) == len(actions)
    for raw in actions:
        action = policy.action(raw["id"])
        assert action.tool in TOOL_NAMES
        assert action.kind in TOOL_KINDS[action.tool]
        assert set(action.verification) <= VERIFICATIONS
        assert action.verification[0] == "output"
        assert action.extension.startswith(".")


def test_every_default_puid_is_one_fido_knows_and_the_registry_characterises() -> None:
    """Same PUIDs as the characterisation registry, for sources and for targets alike."""
    policy, registry, pronom = load_policy(), load_registry(), _pronom_puids()
    for rule in policy.rules:
        for puid in rule.puids:
            assert puid in pronom, (rule.name, puid)
            assert registry.entry_for(puid) is not None, (rule.name, puid)
        for action in (*rule.preservation, *((rule.access,) if rule.access else ())):
            entry = registry.entry_for(action.target_puid)
            assert entry is not None, (action.id, action.target_puid)
            if "validate" in action.verification:
                # the verifier fails "validate" for a format without a validator
                assert entry.validate, (action.id, action.target_puid)


def test_rule_for_finds_the_rule_by_puid() -> None:
    policy = load_policy()
    jpeg = policy.rule_for("fmt/43")
    assert jpeg is not None
    assert [a.id for a in jpeg.preservation] == ["image-to-tiff"]
    assert jpeg.access is not None and jpeg.access.id == "image-to-jpeg-access"
    docx = policy.rule_for("fmt/412")
    assert docx is not None
    assert [a.target_puid for a in docx.preservation] == ["fmt/477", "fmt/290"]
    odt = policy.rule_for("fmt/290")
    assert odt is not None and [a.id for a in odt.preservation] == ["text-to-pdfa-2b"]
    assert policy.rule_for("fmt/477") is None  # PDF/A is left as it is
    assert policy.rule_for("x-fmt/111") is None
    assert policy.rule_for(None) is None
    pdf = policy.rule_for("fmt/276")
    assert pdf is not None and pdf.access is None


def test_an_unknown_action_id_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_policy().action("to-betamax")
    assert "to-betamax" in caught.value.message
    assert caught.value.context["rule"] == "known-action"


def test_to_dict_is_json_and_states_the_file() -> None:
    policy = load_policy()
    out = json.loads(json.dumps(policy.to_dict()))
    assert out["sha256"] == policy.sha256
    assert out["source"] == "default"
    assert [r["name"] for r in out["rules"]] == [r.name for r in policy.rules]
    word = next(r for r in out["rules"] if "fmt/412" in r["puids"])
    assert word["preservation"] == ["text-to-pdfa-2b", "text-to-odt"]
    assert word["access"] == "text-to-pdfa-2b"


def test_policy_records_are_frozen() -> None:
    policy = load_policy()
    with pytest.raises(FrozenInstanceError):
        policy.mode = "all-or-nothing"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        policy.rules[0].preservation[0].tool = "imagemagick"  # type: ignore[misc]


# --- a policy of one's own --------------------------------------------------------------


def test_a_policy_file_is_read_with_its_source_hash_and_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, _document())
    policy = load_policy(path)
    assert policy.source == str(path)
    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.mode == "best-effort"
    assert policy.rule_for("fmt/142") is policy.rule_for("fmt/141")
    flac = policy.action("to-flac")
    assert flac == Action(
        id="to-flac",
        tool="ffmpeg",
        arguments=("-i", "{input}", "-c:a", "flac", "{output}"),
        target_puid="fmt/279",
        extension=".flac",
        kind="audio",
        verification=("output", "identify", "pcm"),
    )
    strict = _document() | {"mode": "all-or-nothing"}
    assert load_policy(_write(tmp_path, strict)).mode == "all-or-nothing"


def test_an_action_no_rule_uses_is_still_an_action_of_the_policy(tmp_path: Path) -> None:
    document = _document()
    document["actions"].append(
        {
            "id": "magick-tiff",
            "tool": "imagemagick",
            "arguments": ["{input}", "-compress", "None", "{output}"],
            "target_puid": "fmt/353",
            "extension": ".tif",
            "kind": "image",
            "verification": ["output"],
        }
    )
    policy = load_policy(_write(tmp_path, document))
    assert policy.action("magick-tiff").tool == "imagemagick"
    assert "magick-tiff" in [a["id"] for a in policy.to_dict()["actions"]]


def _break(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(_document())
    change(document)
    return document


def _set(*path: Any, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


BROKEN: list[tuple[str, Any, str, str]] = [
    # (case, change, rule named, JSON pointer named)
    (
        "missing target",
        lambda d: d["actions"][0].pop("target_puid"),
        f"{SCHEMA_NAME}#required",
        "/actions/0",
    ),
    (
        "bad puid",
        _set("rules", 0, "puids", 1, value="PUID 142"),
        f"{SCHEMA_NAME}#pattern",
        "/rules/0/puids/1",
    ),
    (
        "unknown tool",
        _set("actions", 0, "tool", value="handbrake"),
        f"{SCHEMA_NAME}#enum",
        "/actions/0/tool",
    ),
    (
        "unknown verification",
        _set("actions", 1, "verification", 1, value="eyeball"),
        f"{SCHEMA_NAME}#enum",
        "/actions/1/verification/1",
    ),
    ("unknown mode", _set("mode", value="some"), f"{SCHEMA_NAME}#enum", "/mode"),
    (
        "puid in two rules",
        _set("rules", 1, "puids", value=["fmt/11", "fmt/142"]),
        "unique-puid",
        "/rules/1/puids/1",
    ),
    (
        "duplicate action id",
        _set("actions", 1, "id", value="to-flac"),
        "unique-action-id",
        "/actions/1/id",
    ),
    (
        "duplicate rule name",
        _set("rules", 1, "name", value="WAV"),
        "unique-rule-name",
        "/rules/1/name",
    ),
    (
        "unknown action",
        _set("rules", 0, "preservation", value=["to-flac", "to-mp3"]),
        "known-action",
        "/rules/0/preservation/1",
    ),
    (
        "unknown access action",
        _set("rules", 1, "access", value="to-jpeg"),
        "known-action",
        "/rules/1/access",
    ),
    (
        "kind the tool cannot make",
        _set("actions", 0, "kind", value="image"),
        "tool-kind",
        "/actions/0/kind",
    ),
    (
        "ffmpeg without an output",
        _set("actions", 0, "arguments", value=["-i", "{input}", "-c:a", "flac"]),
        "tool-arguments",
        "/actions/0/arguments",
    ),
    (
        "pillow format and extension disagree",
        _set("actions", 1, "arguments", value=["format=PNG"]),
        "tool-arguments",
        "/actions/1/arguments",
    ),
]


@pytest.mark.parametrize(("case", "change", "rule", "at"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_policy_names_the_file_the_rule_and_the_place(
    tmp_path: Path, case: str, change: Any, rule: str, at: str
) -> None:
    path = _write(tmp_path, _break(change))
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    err = caught.value
    assert str(path) in err.message
    assert err.path == str(path)
    assert err.context["rule"] == rule
    assert err.context["at"] == at
    assert at in err.message


@pytest.mark.parametrize(
    ("arguments", "extension", "words"),
    [
        (["--convert-to", "odt:writer8"], ".pdf", "'.odt'"),
        (["--convert-to", "pdf", "{input}"], ".pdf", "{input}"),
        (["--convert-to", "pdf", "--outdir", "/tmp"], ".pdf", "--outdir"),
        (["pdf"], ".pdf", "--convert-to"),
    ],
)
def test_libreoffice_arguments_are_checked(
    tmp_path: Path, arguments: list[str], extension: str, words: str
) -> None:
    document = _document()
    document["actions"][1] = {
        "id": "to-tiff",
        "tool": "libreoffice",
        "arguments": arguments,
        "target_puid": "fmt/477",
        "extension": extension,
        "kind": "document",
        "verification": ["output"],
    }
    with pytest.raises(ConfigurationError) as caught:
        load_policy(_write(tmp_path, document))
    assert caught.value.context["rule"] == "tool-arguments"
    assert words in caught.value.message


def test_ghostscript_must_keep_safer(tmp_path: Path) -> None:
    document = _document()
    document["actions"][1] = {
        "id": "to-tiff",
        "tool": "ghostscript",
        "arguments": ["-dNOSAFER", "-sDEVICE=pdfwrite", "-sOutputFile={output}", "{input}"],
        "target_puid": "fmt/276",
        "extension": ".pdf",
        "kind": "document",
        "verification": ["output"],
    }
    with pytest.raises(ConfigurationError, match="NOSAFER") as caught:
        load_policy(_write(tmp_path, document))
    assert caught.value.context["at"] == "/actions/1/arguments"


def test_not_json_and_no_file_are_configuration_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"name": "x", ')
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    assert str(path) in caught.value.message
    assert caught.value.context["rule"] == "json"
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigurationError) as caught:
        load_policy(missing)
    assert str(missing) in caught.value.message
    assert caught.value.context["rule"] == "policy-file"


def test_every_problem_the_schema_finds_is_listed(tmp_path: Path) -> None:
    document = _document()
    document["actions"][0]["extension"] = "flac"
    document["rules"][1]["puids"] = []
    with pytest.raises(ConfigurationError) as caught:
        load_policy(_write(tmp_path, document))
    assert "/actions/0/extension" in caught.value.message
    assert "/rules/1/puids" in caught.value.message
