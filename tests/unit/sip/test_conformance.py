"""The Library of Congress BagIt conformance suite, every case.

``valid`` bags must be accepted, ``invalid`` and ``linux-only`` ones refused,
``warning`` ones accepted with at least one warning. ``windows-only`` cases name
Windows absolute, UNC and ``%VAR%`` paths: we refuse them on Linux too, because
such a bag is unsafe wherever it is later unpacked (docs/validation.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from preservation.sip import validate_bag

SUITE = Path(__file__).resolve().parents[2] / "data" / "bagit-conformance-suite"
CASES = sorted(p for p in SUITE.glob("v*/*/*") if p.is_dir())
EXPECT = {
    "valid": "accept",
    "invalid": "reject",
    "linux-only": "reject",
    "windows-only": "reject",
    "warning": "warn",
}
# Git and many copy tools drop .DS_Store; upstream has it as an empty file (its
# sha512 in the manifest is that of zero bytes), so put it back if it is missing.
DROPPED = {"v0.97/warning/special-system-files": ["data/.DS_Store"]}


def test_suite_is_complete() -> None:
    by_kind = {kind: [c for c in CASES if c.parent.name == kind] for kind in EXPECT}
    assert len(CASES) >= 60
    assert all(by_kind.values()), "every kind of case is present"
    assert {c.parent.name for c in CASES} <= set(EXPECT)


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c.relative_to(SUITE)))
def test_conformance_case(case: Path, tmp_path: Path) -> None:
    rel = str(case.relative_to(SUITE))
    if rel in DROPPED:
        copy = tmp_path / case.name
        shutil.copytree(case, copy)
        for name in DROPPED[rel]:
            (copy / name).touch()
        case = copy
    report = validate_bag(case, processes=2)
    expected = EXPECT[Path(rel).parts[1]]
    if expected == "accept":
        assert report.valid, report.to_text()
    elif expected == "reject":
        assert not report.valid, report.to_text()
    else:
        assert report.valid, report.to_text()
        assert report.warnings, report.to_text()


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        ("v1.0/invalid/bagit-with-invalid-whitespace", "bagit-txt-version"),
        ("v0.97/warning/made-with-md5sum-tools", "manifest-binary-marker"),
        ("v0.97/warning/relative-path", "path-not-normalised"),
        ("v0.97/invalid/bom-in-bagit.txt", "bagit-txt-bom"),
        ("v1.0/invalid/notAllManifestsListAllFiles", "payload-not-in-manifest"),
        ("v1.0/invalid/same-filename-listed-twice-with-the-same-hash", "manifest-duplicate-entry"),
        ("v0.97/windows-only/out-of-scope-file-paths-using-unc", "path-windows-absolute"),
        ("v0.97/linux-only/out-of-scope-file-paths-using-shortcut", "path-home-shortcut"),
        ("v0.97/invalid/out-of-scope-file-paths-using-dot-notation", "path-traversal"),
    ],
)
def test_cases_bagit_gets_wrong_are_caught_for_the_right_reason(case: str, rule: str) -> None:
    """The three cases bagit 1.9.0 gets wrong, and others, fail or warn on the rule meant."""
    assert rule in validate_bag(SUITE / case).rules()


def test_minimal_reports_name_file_and_section() -> None:
    report = validate_bag(SUITE / "v0.97/invalid/corrupt-data-file")
    mismatch = [p for p in report.errors if p.rule == "manifest-digest-mismatch"]
    assert mismatch and mismatch[0].file == "data/bare-filename"
    assert mismatch[0].section == "3"
