"""The JSON schemas of ``schemas/`` that operators' files are checked against, loaded once.

The characterisation registry and the format policy are both files an
operator edits; each is refused, naming its schema, when it breaks it. A
schema that cannot be read is the installation's fault, said as such.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from preservation.errors import ConfigurationError

__all__ = ["json_validator"]


@functools.lru_cache(maxsize=8)
def json_validator(schemas_dir: Path, name: str) -> Any:
    """A Draft 2020-12 validator for ``schemas_dir/name``, one per process."""
    import jsonschema

    schema_path = schemas_dir / name
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigurationError(
            f"{schema_path}: the schema cannot be read: {err}", path=schema_path
        ) from err
    return jsonschema.Draft202012Validator(schema)
