"""The checkout stands alone: its docs cite only its own files, and builds leave it clean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT = (".md", ".py", ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini")


def _tracked() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.fail(f"git ls-files failed in {ROOT}: {err}")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_document_cites_a_design_text_outside_the_repository() -> None:
    cited = re.compile(r"DESIGN(\.md)?\s*§|\.\./shared")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _tracked()
        if path.suffix in TEXT
        and path.is_file()
        and path != Path(__file__)
        and cited.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == [], offenders


def test_architecture_document_covers_the_layout_the_stages_and_the_invariants() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").lower()
    for topic in ("layout", "stages", "invariants"):
        assert topic in text, topic


def test_build_products_are_ignored_and_not_tracked() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8")
    assert "*.egg-info/" in ignored or "preservation.egg-info/" in ignored
    assert not [p for p in _tracked() if any(part.endswith(".egg-info") for part in p.parts)]
