"""One real file of every sample kind, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.samples import KINDS, write_sample


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    return {
        kind: write_sample(kind, root / f"sample-{kind}.{ext}", seed=7)
        for kind, (ext, _) in KINDS.items()
    }


@pytest.fixture(scope="session")
def unknown_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No extension, no signature: neither fido nor siegfried can say anything."""
    path = tmp_path_factory.mktemp("unknown") / "mystery"
    path.write_bytes(bytes(range(7, 250)) * 97)
    return path
