"""Format engines by name, built at most once per process.

Worker processes ask for an engine by name (a string pickles; a loaded engine
with 2,000 compiled patterns should not), so the name is the contract. Besides
the built-in names, ``"package.module:Class"`` selects any class implementing
``FormatEngine``, the way other backends of the pipeline are chosen by dotted
path; tests use that to run a deliberately slow engine in real workers.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from preservation.errors import ConfigurationError
from preservation.identify.interfaces import FormatEngine

__all__ = ["engine_names", "get_engine", "register_engine"]


def _fido() -> FormatEngine:
    from preservation.identify.fido import FidoEngine

    return FidoEngine()


def _siegfried() -> FormatEngine:
    from preservation.identify.siegfried import SiegfriedEngine

    return SiegfriedEngine()


_factories: dict[str, Callable[[], FormatEngine]] = {"fido": _fido, "siegfried": _siegfried}
_engines: dict[str, FormatEngine] = {}
_lock = threading.Lock()


def register_engine(name: str, factory: Callable[[], FormatEngine]) -> None:
    """Make ``factory`` available as ``name`` in this process (and forked children)."""
    with _lock:
        _factories[name] = factory
        _engines.pop(name, None)


def engine_names() -> list[str]:
    """The names ``get_engine`` accepts besides dotted paths."""
    return sorted(_factories)


def get_engine(name: str = "fido") -> FormatEngine:
    """The process's engine called ``name``, built on first use and then reused."""
    with _lock:
        engine = _engines.get(name)
        if engine is None:
            engine = _build(name)
            _engines[name] = engine
        return engine


def _build(name: str) -> FormatEngine:
    factory = _factories.get(name)
    if factory is not None:
        return factory()
    if ":" not in name:
        raise ConfigurationError(
            f"unknown format engine {name!r}; choose one of {', '.join(sorted(_factories))} "
            "or give a dotted path 'package.module:Class'"
        )
    module_name, _, attr = name.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigurationError(f"format engine {name!r} cannot be loaded: {err}") from err
    engine = target()
    if not isinstance(engine, FormatEngine):
        raise ConfigurationError(f"format engine {name!r} does not implement FormatEngine")
    return engine
