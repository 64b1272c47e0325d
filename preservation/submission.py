"""Handing a SIP to the distributed engine, chosen by dotted path in the settings.

The library never imports ``workers/`` (DESIGN §2): the Celery app, its
queues and the shape of the ingest workflow belong to the workers. When a
broker is configured, the CLI and the watcher hand a received SIP to the
callable named by ``PRESERVATION_SUBMITTER`` (default
``workers.tasks:submit``), resolved at run time, the way the tape backend is.
Another engine plugs in by naming its own callable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from preservation.config import Settings
from preservation.errors import ConfigurationError

__all__ = ["load_submitter"]


def load_submitter(settings: Settings) -> Callable[[str], None]:
    """The ``module:callable`` that starts a received SIP's workflow on the workers."""
    target = settings.submitter
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"submitter {target!r} must be 'module:callable'", rule="submitter-dotted-path"
        )
    try:
        module = importlib.import_module(module_name)
        submit = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"submitter {target!r} cannot be loaded: {exc}", rule="submitter-dotted-path"
        ) from exc
    if not callable(submit):
        raise ConfigurationError(f"submitter {target!r} is not callable")
    return cast(Callable[[str], None], submit)
