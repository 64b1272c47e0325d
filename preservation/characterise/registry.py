"""Which tools measure, and which validators check, each PRONOM format.

The registry is data, not code, so that an archive can add a format family or
drop a tool without a release: a JSON file (``settings.characterisation_registry``,
or the ``default-registry.json`` shipped beside this module) checked against
``schemas/characterisation-registry.schema.json`` on every load. One more rule
the schema cannot state: a PUID belongs to one entry only, otherwise the
answer for that format would depend on the order of the file.

A broken file is a ``ConfigurationError`` naming the file, the JSON path and
the rule, raised at load time: a typo must stop a worker at start-up, not skip
the characterisation of every SIP quietly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from preservation.errors import ConfigurationError

__all__ = [
    "KINDS",
    "TOOLS",
    "VALIDATORS",
    "FormatEntry",
    "Kind",
    "Registry",
    "load_registry",
]

Kind = Literal["image", "audio", "video", "document", "text", "database", "other"]

#: The kinds of significant properties (``properties.significant_properties``).
KINDS: tuple[str, ...] = ("image", "audio", "video", "document", "text", "database", "other")
#: Characterisation tools an entry may name (``tools.ToolBox``).
TOOLS: tuple[str, ...] = ("mediainfo", "exiftool", "ffprobe", "siard")
#: Format validators an entry may name (``validation``).
VALIDATORS: tuple[str, ...] = (
    "qpdf",
    "jpylyzer",
    "pillow",
    "ffmpeg",
    "xml",
    "mediaconch",
    "siard",
)

SCHEMA_NAME = "characterisation-registry.schema.json"
DEFAULT_REGISTRY = "default-registry.json"
_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True, slots=True)
class FormatEntry:
    """One format family: its PUIDs, its kind of properties, its tools and validators.

    ``characterise`` is in order of precedence: where two tools give the same
    property, the first one's value is kept.
    """

    name: str
    kind: Kind
    puids: tuple[str, ...]
    characterise: tuple[str, ...] = ()
    validate: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    """The entries of one registry file, looked up by PUID."""

    entries: tuple[FormatEntry, ...]
    source: str = "<memory>"
    _by_puid: Mapping[str, FormatEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_puid: dict[str, FormatEntry] = {}
        for entry in self.entries:
            for puid in entry.puids:
                by_puid.setdefault(puid, entry)
        object.__setattr__(self, "_by_puid", by_puid)

    def entry_for(self, puid: str | None) -> FormatEntry | None:
        """The entry listing ``puid``; None for an unidentified file or an unlisted format."""
        if puid is None:
            return None
        return self._by_puid.get(puid)

    def __iter__(self) -> Iterator[FormatEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def load_registry(path: Path | None = None, *, schemas_dir: Path | None = None) -> Registry:
    """The registry at ``path``, validated; None: the one shipped with the package.

    The shipped registry is read once per process (workers call this per SIP);
    a file of the archive's own is read each time, so an edit takes effect on
    the next SIP without a restart.
    """
    schemas = (schemas_dir or _SCHEMAS_DIR).resolve()
    if path is None:
        return _default_registry(schemas)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigurationError(
            f"{path}: characterisation registry not found", path=path, rule="registry-file"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigurationError(
            f"{path}: characterisation registry not readable: {err}", path=path
        ) from err
    return _parse(text, str(path), schemas)


@functools.lru_cache(maxsize=4)
def _default_registry(schemas_dir: Path) -> Registry:
    shipped = resources.files("preservation.characterise").joinpath(DEFAULT_REGISTRY)
    return _parse(shipped.read_text(encoding="utf-8"), str(shipped), schemas_dir)


def _validator(schemas_dir: Path) -> Any:
    from preservation.schema_files import json_validator

    return json_validator(schemas_dir, SCHEMA_NAME)


def _parse(text: str, source: str, schemas_dir: Path) -> Registry:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigurationError(
            f"{source}: not JSON: {err} (rule json)", path=source, rule="json"
        ) from err
    problems = sorted(
        _validator(schemas_dir).iter_errors(document), key=lambda e: list(e.absolute_path)
    )
    if problems:
        detail = "; ".join(
            f"at {'/'.join(map(str, p.absolute_path)) or '(top)'}: {p.message} (rule {p.validator})"
            for p in problems
        )
        first = problems[0]
        raise ConfigurationError(
            f"{source}: breaks {SCHEMA_NAME}: {detail}",
            path=source,
            rule=f"{SCHEMA_NAME}#{first.validator}",
            at="/".join(map(str, first.absolute_path)),
        )
    entries: list[FormatEntry] = []
    owner: dict[str, int] = {}
    for index, raw in enumerate(document["formats"]):
        for position, puid in enumerate(raw["puids"]):
            if puid in owner:
                other = owner[puid]
                raise ConfigurationError(
                    f"{source}: at formats/{index}/puids/{position}: {puid} is listed by "
                    f"formats/{other} ({document['formats'][other]['name']!r}) and again by "
                    f"formats/{index} ({raw['name']!r}); a PUID may appear in one entry only "
                    "(rule unique-puid)",
                    path=source,
                    rule="unique-puid",
                    at=f"formats/{index}/puids/{position}",
                )
            owner[puid] = index
        entries.append(
            FormatEntry(
                name=raw["name"],
                kind=raw["kind"],
                puids=tuple(raw["puids"]),
                characterise=tuple(raw.get("characterise", ())),
                validate=tuple(raw.get("validate", ())),
            )
        )
    return Registry(entries=tuple(entries), source=source)
