"""docs/architecture.md §2.3: the library never imports the workers; the engine is plugged in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.errors import ConfigurationError
from preservation.submission import load_submitter

LIBRARY = Path(__file__).resolve().parents[2] / "preservation"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_preservation_never_imports_workers() -> None:
    offenders = {
        str(path.relative_to(LIBRARY)): sorted(
            n for n in _imports(path) if n == "workers" or n.startswith("workers.")
        )
        for path in LIBRARY.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_submitter_is_resolved_by_dotted_path(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, submitter="os.path:basename")
    assert load_submitter(s)("/a/b") == "b"


@pytest.mark.parametrize(
    "target", ["no-colon", "no_such_module_xyz:f", "os:no_such_attr", "os:sep"]
)
def test_a_bad_submitter_is_a_configuration_error(tmp_path: Path, target: str) -> None:
    with pytest.raises(ConfigurationError, match="submitter"):
        load_submitter(Settings(home=tmp_path, submitter=target))


def test_the_default_submitter_is_the_workers_ingest_workflow(tmp_path: Path) -> None:
    from workers.tasks import submit

    assert load_submitter(Settings(home=tmp_path)) is submit
