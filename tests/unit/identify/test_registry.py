"""Engines by name, one per process."""

from __future__ import annotations

import pytest

from preservation.errors import ConfigurationError
from preservation.identify import FidoEngine, engine_names, get_engine, register_engine, registry
from tests.unit.identify.fakes import ENGINE as FAKE
from tests.unit.identify.fakes import NamedBehaviourEngine


def test_built_in_names() -> None:
    assert {"fido", "siegfried"} <= set(engine_names())
    engine = get_engine("fido")
    assert isinstance(engine, FidoEngine)
    assert get_engine("fido") is engine


def test_dotted_path_and_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_engine(FAKE), NamedBehaviourEngine)
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_engines", dict(registry._engines))
    register_engine("fake-for-test", NamedBehaviourEngine)
    assert "fake-for-test" in engine_names()
    assert get_engine("fake-for-test").name == "fake"


@pytest.mark.parametrize("name", ["droid", "tests.unit.identify.fakes:Missing", "builtins:object"])
def test_bad_names_are_configuration_errors(name: str) -> None:
    with pytest.raises(ConfigurationError):
        get_engine(name)
