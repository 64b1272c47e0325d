"""Per-tenant archiving rules, from one JSON file checked against a JSON schema.

An archive's rules differ by institution: one wants its submitted bags kept
after ingest, another demands an ``External-Identifier`` on every bag. They
live in one file (``PRESERVATION_RULES_FILE``, default
``<home>/archiving-rules.json``) that operators edit, so the file is checked
against ``schemas/archiving-rules.schema.json`` on every load, and a mistake
names the file, the place in it and the rule it breaks instead of being
half-applied. ``defaults`` apply to every tenant; a tenant's own entry
overrides them key by key. No file means the settings' defaults.

A ``bagit_profile`` named by path is read and checked with the rules, so a
broken profile stops the archive at the first load, naming the profile file,
rather than refusing bags one by one later. Retention periods are parsed by
one function, :func:`parse_period`, which the API uses for its input too, so
the rules file and a curator's request mean the same thing by ``P10Y``.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from preservation.config import Settings
from preservation.errors import ConfigurationError, InvalidRequestError
from preservation.sip.profile import BagItProfile, parse_profile

__all__ = [
    "FormatPolicy",
    "Period",
    "TenantRules",
    "format_problems",
    "load_rules",
    "missing_bag_info",
    "parse_period",
    "profile_problems",
    "retention_until",
    "rules_for",
]

SCHEMA_NAME = "archiving-rules.schema.json"
_PERIOD = re.compile(r"P(?=[0-9])(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)D)?")
# Past this a period is "permanent" in all but name, and a date beyond year
# 9999 cannot be stored: the limit keeps every retention date computable.
_MAX_PERIOD_YEARS = 1000
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Period:
    """An ISO 8601 period in calendar units: years, months, days (no weeks, no time)."""

    years: int = 0
    months: int = 0
    days: int = 0

    def __str__(self) -> str:
        parts = [(self.years, "Y"), (self.months, "M"), (self.days, "D")]
        return "P" + ("".join(f"{n}{unit}" for n, unit in parts if n) or "0D")

    def after(self, start: datetime) -> datetime:
        """``start`` plus the period, by the calendar: months first, clamped to the month's end.

        So P1Y from 29 February lands on 28 February, and P1M from 31 January on
        the last day of February; the days are added after. Time of day and
        time zone are kept.
        """
        months = start.month - 1 + self.years * 12 + self.months
        year, month = start.year + months // 12, months % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day) + timedelta(days=self.days)


def parse_period(text: str) -> Period:
    """``P10Y``, ``P6M``, ``P30D``, ``P1Y6M``: a retention period as the rules and the API take it.

    Only calendar units, in that order, each at most once; no weeks or times,
    since retention is counted in dates a records schedule names.
    """
    match = _PERIOD.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequestError(
            f"{text!r} is not a retention period: write ISO 8601 years, months and days, "
            "e.g. P10Y, P6M, P30D or P1Y6M (or 'permanent')",
            rule="retention-period",
            value=text,
        )
    years, months, days = (int(g) if g else 0 for g in match.groups())
    if years + months / 12 + days / 365 > _MAX_PERIOD_YEARS:
        raise InvalidRequestError(
            f"{text!r} is longer than {_MAX_PERIOD_YEARS} years: say 'permanent' instead",
            rule="retention-period",
            value=text,
        )
    return Period(years, months, days)


@dataclass(frozen=True)
class FormatPolicy:
    """The PRONOM formats a tenant accepts; a file in another (or unidentified) is ``otherwise``."""

    puids: frozenset[str]
    otherwise: Literal["warn", "reject"] = "warn"


@dataclass(frozen=True)
class TenantRules:
    tenant: str
    organisation: str | None = None
    keep_sips: bool = False
    required_bag_info: tuple[str, ...] = ()
    # A bag repeating one of the tenant's AIPs (same payload or External-Identifier).
    on_duplicate: Literal["warn", "reject"] = "warn"
    # How long a new AIP is kept from its commit; None keeps it permanently.
    default_retention: Period | None = None
    allowed_formats: FormatPolicy | None = None
    bagit_profile: BagItProfile | None = None
    # A file a format validator finds malformed: a finding ('warn') or a rejection.
    invalid_formats: Literal["warn", "reject"] = "warn"
    # Off only by the tenant's own choice; the settings' virus_scan turns it off for all.
    virus_scan: bool = True
    # Every copy of the tenant's AIPs is read back whole at least this often;
    # a copy whose last check is older is overdue (``audit --coverage``).
    audit_interval: Period = Period(years=1)


def retention_until(rules: TenantRules, start: datetime) -> datetime | None:
    """When an AIP committed at ``start`` may first be disposed of; None: kept permanently."""
    return None if rules.default_retention is None else rules.default_retention.after(start)


def _rules_path(settings: Settings) -> Path:
    return settings.rules_file or settings.home_dir / "archiving-rules.json"


def load_rules(settings: Settings) -> dict[str, Any]:
    """The rules document, validated; ``{}`` when there is no file."""
    path = _rules_path(settings)
    if not path.is_file():
        if settings.rules_file is not None:
            raise ConfigurationError(f"{path}: archiving rules file not found", path=path)
        return {}
    import jsonschema  # here: an archive with no rules file never pays its import
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not readable JSON: {exc}", path=path) from exc
    schema = _schema(settings)
    detail = _schema_problems(jsonschema.Draft202012Validator(schema), document)
    if detail:
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
    entries = [("defaults", document.get("defaults", {}))]
    entries += [(f"tenants/{t}", entry) for t, entry in document.get("tenants", {}).items()]
    for where, entry in entries:
        if isinstance(entry.get("default_retention"), str):
            _retention(entry["default_retention"], path, f"{where}/default_retention")
        if isinstance(entry.get("audit_interval"), str):
            _interval(entry["audit_interval"], path, f"{where}/audit_interval")
        if entry.get("bagit_profile") is not None:
            _profile(settings, entry["bagit_profile"], path, f"{where}/bagit_profile", schema)
    return dict(document)


def _schema(settings: Settings) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (settings.schemas_dir / SCHEMA_NAME).read_text(encoding="utf-8")
    )
    return loaded


def _schema_problems(validator: Any, document: Any) -> str:
    """Every place ``document`` breaks the schema, as one line; empty when it does not."""
    problems = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return "; ".join(
        f"at {'/'.join(map(str, p.absolute_path)) or '(top)'}: {p.message} (rule {p.validator})"
        for p in problems
    )


def _retention(text: str, path: Path, where: str) -> Period | None:
    if text == "permanent":
        return None
    try:
        return parse_period(text)
    except InvalidRequestError as err:
        raise ConfigurationError(
            f"{path}: at {where}: {err.message} (rule retention-period)",
            path=path,
            rule="retention-period",
        ) from err


def _interval(text: str, path: Path, where: str) -> Period:
    try:
        period = parse_period(text)
    except InvalidRequestError as err:
        raise ConfigurationError(
            f"{path}: at {where}: {err.message} (rule audit-interval)",
            path=path,
            rule="audit-interval",
        ) from err
    if period == Period():
        raise ConfigurationError(
            f"{path}: at {where}: an audit interval must be longer than nothing (rule "
            "audit-interval)",
            path=path,
            rule="audit-interval",
        )
    return period


def _profile(
    settings: Settings,
    value: str | dict[str, Any],
    path: Path,
    where: str,
    schema: dict[str, Any] | None = None,
) -> BagItProfile:
    """The profile a rule names: inline (checked with the rules) or a file, never a URL.

    A relative path is taken from the rules file's folder, so the rules and
    their profiles move together.
    """
    if isinstance(value, dict):
        return parse_profile(value, source=f"{path} at {where}")
    if _URL.match(value):
        raise ConfigurationError(
            f"{path}: at {where}: {value!r} is a URL; profiles are never fetched over the "
            "network: save the profile as a file and name its path (rule bagit-profile)",
            path=path,
            rule="bagit-profile",
        )
    import jsonschema

    file = (path.parent / value).resolve()
    named = f"(named by {path} at {where})"
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"{file}: BagIt profile not found {named}", path=file, rule="bagit-profile"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(
            f"{file}: BagIt profile is not readable JSON {named}: {exc}",
            path=file,
            rule="bagit-profile",
        ) from exc
    schema = schema or _schema(settings)
    profile_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/bagit_profile"}
    detail = _schema_problems(jsonschema.Draft202012Validator(profile_schema), document)
    if detail:
        raise ConfigurationError(
            f"{file}: breaks the bagit-profiles format ({SCHEMA_NAME}#/$defs/bagit_profile) "
            f"{named}: {detail}",
            path=file,
            rule="bagit-profile",
        )
    return parse_profile(document, source=str(file), named_by=named)


def rules_for(
    settings: Settings, tenant: str, document: dict[str, Any] | None = None
) -> TenantRules:
    """The rules that apply to ``tenant``: settings, then ``defaults``, then its own entry."""
    doc = load_rules(settings) if document is None else document
    merged: dict[str, Any] = {"keep_sips": settings.keep_sips}
    merged.update(doc.get("defaults", {}))
    merged.update(doc.get("tenants", {}).get(tenant, {}))
    own = doc.get("tenants", {}).get(tenant, {})

    def where(key: str) -> str:
        return f"{f'tenants/{tenant}' if key in own else 'defaults'}/{key}"

    path = _rules_path(settings)
    formats = merged.get("allowed_formats")
    profile = merged.get("bagit_profile")
    return TenantRules(
        tenant=tenant,
        organisation=merged.get("organisation"),
        keep_sips=bool(merged.get("keep_sips", False)),
        required_bag_info=tuple(merged.get("required_bag_info", ())),
        on_duplicate="reject" if merged.get("on_duplicate") == "reject" else "warn",
        default_retention=_retention(
            merged.get("default_retention", "permanent"), path, where("default_retention")
        ),
        allowed_formats=(
            FormatPolicy(
                frozenset(formats["puids"]),
                "reject" if formats.get("otherwise") == "reject" else "warn",
            )
            if formats
            else None
        ),
        bagit_profile=(
            None if profile is None else _profile(settings, profile, path, where("bagit_profile"))
        ),
        invalid_formats="reject" if merged.get("invalid_formats") == "reject" else "warn",
        virus_scan=bool(merged.get("virus_scan", True)),
        audit_interval=_interval(
            merged.get("audit_interval", "P1Y"), path, where("audit_interval")
        ),
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


def profile_problems(rules: TenantRules, bag: Path, *, submitted: Path) -> list[dict[str, Any]]:
    """How a bag accepted by validation breaks the tenant's BagIt profile (none without one).

    ``submitted`` is what was handed in, the folder or the archive ``bag`` was
    unpacked from: the profile may rule on serialisation.
    """
    from preservation.sip.profile import bag_facts, check_profile

    if rules.bagit_profile is None:
        return []
    return check_profile(rules.bagit_profile, bag_facts(bag, submitted=submitted))


def format_problems(
    rules: TenantRules, files: Iterable[tuple[str, str | None, str | None]]
) -> list[dict[str, Any]]:
    """Files whose format is not among the tenant's ``allowed_formats``, as report problems.

    ``files`` are (path in the bag, PUID or None, format name or None). An
    unidentified file is not allowed: a format nobody can name is one nobody
    has agreed to keep. The severity follows ``otherwise``.
    """
    policy = rules.allowed_formats
    if policy is None:
        return []
    severity = "error" if policy.otherwise == "reject" else "warning"
    problems = []
    for path, puid, name in files:
        if puid in policy.puids:
            continue
        what = f"{puid} ({name})" if puid and name else puid or "an unidentified format"
        problems.append(
            {
                "severity": severity,
                "file": path,
                "rule": "allowed-formats",
                "message": f"{what} is not among tenant {rules.tenant}'s allowed formats",
                "puid": puid,
            }
        )
    return problems
