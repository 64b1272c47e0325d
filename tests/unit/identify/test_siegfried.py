"""siegfried through pygfried: same interface, comparable with fido file by file.

pygfried is an optional extra. Without it these tests skip on a developer's
machine but fail under CI (``CI=true``), where the extra is always installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from preservation.errors import IdentificationError
from preservation.identify import (
    FidoEngine,
    FormatEngine,
    SiegfriedEngine,
    compare,
    identify_files,
)
from preservation.identify import siegfried as siegfried_module

if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    import pygfried
else:
    pygfried = pytest.importorskip("pygfried")


@pytest.fixture(scope="module")
def engine() -> SiegfriedEngine:
    return SiegfriedEngine()


@pytest.mark.parametrize(
    ("kind", "puid", "basis"),
    [
        ("png", "fmt/11", "signature"),
        ("pdf", "fmt/18", "signature"),
        ("docx", "fmt/412", "container"),
        ("xlsx", "fmt/214", "container"),
        ("xls", "fmt/61", "container"),  # full OLE2 container match: only the workbook PUID
        ("pptx", "fmt/215", "container"),
        ("odt", "fmt/291", "container"),  # siegfried reads the ODF 1.2 manifest; fido says fmt/290
        ("csv", "x-fmt/18", "extension"),
    ],
)
def test_sample_kinds(
    engine: SiegfriedEngine, samples: dict[str, Path], kind: str, puid: str, basis: str
) -> None:
    [result] = engine.identify_batch([samples[kind]])
    assert (result.puid, result.basis, result.known) == (puid, basis, True)
    assert result.engine == "siegfried"


def test_versions_are_recorded(engine: SiegfriedEngine, samples: dict[str, Path]) -> None:
    assert isinstance(engine, FormatEngine)
    [result] = engine.identify_batch([samples["png"]])
    assert result.engine_version == pygfried.version()
    assert "DROID_SignatureFile" in result.signature_release


def test_unknown_and_missing(engine: SiegfriedEngine, unknown_file: Path, tmp_path: Path) -> None:
    unknown, missing = engine.identify_batch([unknown_file, tmp_path / "gone.pdf"])
    assert (unknown.known, unknown.basis, unknown.error) == (False, "none", None)
    assert "no match" in (unknown.warning or "")
    assert not missing.known and missing.error


def test_runs_in_the_worker_pool(samples: dict[str, Path]) -> None:
    paths = list(samples.values())
    results = identify_files(paths, engine_name="siegfried", workers=2, batch_size=4)
    assert [r.path for r in results] == paths
    assert all(r.engine == "siegfried" for r in results)
    assert sum(r.known for r in results) >= len(paths) - 1  # siegfried does not guess .ico


def test_compared_with_fido_file_by_file(engine: SiegfriedEngine, samples: dict[str, Path]) -> None:
    paths = list(samples.values())
    rows = compare(FidoEngine().identify_batch(paths), engine.identify_batch(paths))
    assert [row.path for row in rows] == paths
    by_name = {row.path.name: row for row in rows}
    for kind in ("png", "pdf", "docx", "xlsx", "tiff", "wav"):
        assert by_name[samples[kind].name].agree
    assert not by_name[samples["odt"].name].agree
    assert by_name[samples["odt"].name].puids == (("fmt/290",), ("fmt/291",))


def test_missing_pygfried_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(siegfried_module, "_scanner", None)
    monkeypatch.setitem(__import__("sys").modules, "pygfried", None)
    with pytest.raises(IdentificationError, match="pygfried"):
        SiegfriedEngine()
