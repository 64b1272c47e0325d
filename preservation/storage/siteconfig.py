"""What each site's tape library is: the site file, or the settings' emulated defaults.

A site file (``PRESERVATION_SITE_FILE``) is JSON checked against
``schemas/sites.schema.json`` on every load, so a mistake names the file, the
place in it and the rule it breaks before any robot moves. It must list the
sites of ``PRESERVATION_SITES`` with the same names in the same order: the
rest of the system (queues ``store.<site>``, the barcode letter of an
emulated site, monitoring) reads the site list from the settings, and one
list that silently disagreed with the other would send copies nowhere.
Without a site file every site is emulated, as the settings describe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from preservation.config import Settings
from preservation.errors import ConfigurationError

__all__ = ["SCHEMA_NAME", "SiteSpec", "load_site_file", "site_specs"]

SCHEMA_NAME = "sites.schema.json"
DEFAULT_BACKEND = "preservation.storage.emulator:EmulatedTapeDevice"


@dataclass(frozen=True)
class SiteSpec:
    """One site's library. ``emulated`` uses drive_count/cartridges/media; ``scsi`` the nodes."""

    name: str
    library: Literal["emulated", "scsi"]
    capacity: int
    drive_count: int = 0
    cartridges: int = 0
    media: str = "L9"
    changer: str | None = None
    drive_paths: tuple[str, ...] = ()
    mtx_timeout: float | None = None


def site_specs(settings: Settings) -> list[SiteSpec]:
    """Every configured site's library, in ``settings.sites`` order."""
    if settings.site_file is None:
        if settings.tape_backend != DEFAULT_BACKEND:
            raise ConfigurationError(
                f"PRESERVATION_TAPE_BACKEND={settings.tape_backend!r} is no longer read: "
                "real libraries are described in a site file (PRESERVATION_SITE_FILE, "
                'a site with "library": "scsi"); unset PRESERVATION_TAPE_BACKEND',
                rule="tape-backend-deprecated",
            )
        return [_emulated(settings, name, {}) for name in settings.sites]
    return load_site_file(settings, settings.site_file)


def load_site_file(settings: Settings, path: Path) -> list[SiteSpec]:
    """The site file, validated against the schema and against ``settings.sites``."""
    import jsonschema  # here: an archive with no site file never pays its import

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: site file not found", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not readable JSON: {exc}", path=path) from exc
    schema: dict[str, Any] = json.loads(
        (settings.schemas_dir / SCHEMA_NAME).read_text(encoding="utf-8")
    )
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if problems:
        detail = "; ".join(
            f"at {'/'.join(map(str, p.absolute_path)) or '(top)'}: {p.message} (rule {p.validator})"
            for p in problems
        )
        raise ConfigurationError(
            f"{path}: breaks {SCHEMA_NAME}: {detail}", path=path, rule="sites-schema"
        )
    entries: list[dict[str, Any]] = document["sites"]
    names = [entry["name"] for entry in entries]
    if names != list(settings.sites):
        raise ConfigurationError(
            f"{path}: at sites: the site file names {names} but PRESERVATION_SITES is "
            f"{list(settings.sites)}: list the same sites in the same order in both "
            f"(e.g. PRESERVATION_SITES='{json.dumps(names)}')",
            path=path,
            rule="sites-match-settings",
        )
    specs: list[SiteSpec] = []
    for index, entry in enumerate(entries):
        if entry["library"] == "emulated":
            specs.append(_emulated(settings, entry["name"], entry))
            continue
        changers = {s.changer: s.name for s in specs if s.changer}
        if entry["changer"] in changers:
            raise ConfigurationError(
                f"{path}: at sites/{index}/changer: {entry['changer']} is already the changer "
                f"of site {changers[entry['changer']]}: each site has a library of its own",
                path=path,
                rule="one-library-per-site",
            )
        specs.append(
            SiteSpec(
                name=entry["name"],
                library="scsi",
                capacity=int(entry.get("capacity", settings.tape_capacity)),
                changer=entry["changer"],
                drive_paths=tuple(entry["drives"]),
                mtx_timeout=entry.get("mtx_timeout"),
            )
        )
    return specs


def _emulated(settings: Settings, name: str, entry: dict[str, Any]) -> SiteSpec:
    return SiteSpec(
        name=name,
        library="emulated",
        capacity=int(entry.get("capacity", settings.tape_capacity)),
        drive_count=int(entry.get("drives", settings.tape_drives_per_site)),
        cartridges=int(entry.get("cartridges", settings.tape_cartridges_per_site)),
        media=str(entry.get("media", settings.tape_media)),
    )
