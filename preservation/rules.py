"""Per-tenant archiving rules, from one JSON file checked against a JSON schema.

An archive's rules differ by institution: one wants its submitted bags kept
after ingest, another demands an ``External-Identifier`` on every bag. They
live in one file (``PRESERVATION_RULES_FILE``, default
``<home>/archiving-rules.json``) that operators edit, so the file is checked
against ``schemas/archiving-rules.schema.json`` on every load, and a mistake
names the file, the place in it and the rule it breaks instead of being
half-applied. ``defaults`` apply to every tenant; a tenant's own entry
overrides them key by key. No file means the settings' defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from preservation.config import Settings
from preservation.errors import ConfigurationError

__all__ = ["TenantRules", "load_rules", "missing_bag_info", "rules_for"]

SCHEMA_NAME = "archiving-rules.schema.json"


@dataclass(frozen=True)
class TenantRules:
    tenant: str
    organisation: str | None = None
    keep_sips: bool = False
    required_bag_info: tuple[str, ...] = ()
    # A bag repeating one of the tenant's AIPs (same payload or External-Identifier).
    on_duplicate: Literal["warn", "reject"] = "warn"


def _rules_path(settings: Settings) -> Path:
    return settings.rules_file or settings.home_dir / "archiving-rules.json"


def load_rules(settings: Settings) -> dict[str, Any]:
    """The rules document, validated; ``{}`` when there is no file."""
    import jsonschema

    path = _rules_path(settings)
    if not path.is_file():
        if settings.rules_file is not None:
            raise ConfigurationError(f"{path}: archiving rules file not found", path=path)
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not readable JSON: {exc}", path=path) from exc
    schema = json.loads((settings.schemas_dir / SCHEMA_NAME).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if problems:
        detail = "; ".join(
            f"at {'/'.join(map(str, p.absolute_path)) or '(top)'}: {p.message} (rule {p.validator})"
            for p in problems
        )
        raise ConfigurationError(
            f"{path}: breaks {SCHEMA_NAME}: {detail}", path=path, rule="archiving-rules-schema"
        )
    # The schema's pattern is searched with Python's re, whose '$' also matches
    # before a final newline: the one rule decides, as at every other door.
    from preservation.tenants import TENANT_ID_RULE, is_valid_tenant_id

    for key in document.get("tenants", {}):
        if not is_valid_tenant_id(key):
            raise ConfigurationError(
                f"{path}: breaks {SCHEMA_NAME}: at tenants: {key!r} is not a valid tenant id "
                f"({TENANT_ID_RULE})",
                path=path,
                rule="tenant-id",
            )
    return dict(document)


def rules_for(
    settings: Settings, tenant: str, document: dict[str, Any] | None = None
) -> TenantRules:
    """The rules that apply to ``tenant``: settings, then ``defaults``, then its own entry."""
    doc = load_rules(settings) if document is None else document
    merged: dict[str, Any] = {"keep_sips": settings.keep_sips}
    merged.update(doc.get("defaults", {}))
    merged.update(doc.get("tenants", {}).get(tenant, {}))
    return TenantRules(
        tenant=tenant,
        organisation=merged.get("organisation"),
        keep_sips=bool(merged.get("keep_sips", False)),
        required_bag_info=tuple(merged.get("required_bag_info", ())),
        on_duplicate="reject" if merged.get("on_duplicate") == "reject" else "warn",
    )


def missing_bag_info(rules: TenantRules, info: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The tenant's required bag-info labels that are absent or empty, as report problems."""
    present = {label.lower() for label, values in info.items() if any(v.strip() for v in values)}
    return [
        {
            "severity": "error",
            "file": "bag-info.txt",
            "rule": "tenant-required-bag-info",
            "message": f"tenant {rules.tenant}'s archiving rules require {label!r} with a value",
        }
        for label in rules.required_bag_info
        if label.lower() not in present
    ]
