"""Every package says what it exports, and exports what it says."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import preservation

PACKAGES = sorted(
    name
    for _, name, is_pkg in pkgutil.walk_packages(preservation.__path__, "preservation.")
    if is_pkg and ".migrations" not in name
)


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_is_complete_and_sorted(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} needs a docstring saying what it is for"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported)


def test_every_subpackage_is_covered() -> None:
    assert {
        "preservation.sip",
        "preservation.identify",
        "preservation.metadata",
        "preservation.aip",
        "preservation.storage",
        "preservation.catalog",
    } <= set(PACKAGES)
