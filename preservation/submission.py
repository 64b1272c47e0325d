"""Submissions at the door, and handing a SIP to the distributed engine.

What is refused before anything is registered lives here, so that every way
in (the CLI, later the API) refuses the same things the same way: a path
that is not a bag is reported and never copied, moved or given a SIP row.
``validate_submission`` is the same strict check ingest makes, writing
nowhere but a temporary folder; with a tenant, it asks the catalogue (read
only, if there is one) whether the bag repeats one of the tenant's AIPs.

The distributed engine is chosen by dotted path in the settings.

The library never imports ``workers/`` (docs/architecture.md, §2.3 Layering): the Celery app, its
queues and the shape of the ingest workflow belong to the workers. When a
broker is configured, the CLI and the watcher hand a received SIP to the
callable named by ``PRESERVATION_SUBMITTER`` (default
``workers.tasks:submit``), resolved at run time, the way the tape backend is.
Another engine plugs in by naming its own callable.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import SQLAlchemyError

from preservation.config import Settings
from preservation.errors import ConfigurationError, InvalidSIPError, PreservationError

if TYPE_CHECKING:
    from preservation.rules import TenantRules

__all__ = ["NOT_A_BAG", "load_submitter", "refuse_if_not_a_bag", "validate_submission"]

NOT_A_BAG = "not-a-bag"
SERIALISED_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def refuse_if_not_a_bag(path: Path) -> None:
    """Raise with a report when ``path`` cannot be a bag; the path is only looked at.

    A symbolic link is let through: validation rejects it with its own rule.
    """

    def refuse(rule: str, message: str) -> None:
        problem = {"severity": "error", "file": str(path), "rule": rule, "message": message}
        raise InvalidSIPError(f"{path}: {message}", problems=[problem], path=path, rule=rule)

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        refuse("no-such-path", "no such file or directory")
        return
    except OSError as exc:
        refuse("unreadable-path", f"cannot be read: {exc.strerror}")
        return
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        if not (path / "bagit.txt").is_file():
            refuse(
                NOT_A_BAG,
                "a folder with no bagit.txt is not a BagIt bag (RFC 8493 §2.1.1); "
                "make it a bag first (e.g. `bagit.py --sha256 FOLDER`)",
            )
        return
    if not stat.S_ISREG(st.st_mode) or not path.name.lower().endswith(SERIALISED_SUFFIXES):
        refuse(
            NOT_A_BAG,
            "not a bag: expected a folder with bagit.txt, or a .tar, .tar.gz, .tgz or .zip of one",
        )


def validate_submission(
    settings: Settings, path: Path, *, tenant: str | None = None, processes: int = 2
) -> dict[str, Any]:
    """The strict validation report of a bag, as one dict whatever the outcome.

    With ``tenant``, the tenant's archiving rules apply too. A serialised bag
    is unpacked into a temporary folder: under the data root when one is set
    explicitly and exists (it has room for bags; /tmp is often small or in
    RAM), otherwise in the system's temporary folder, never under the current
    one. No data root is ever made.
    """
    from preservation.rules import missing_bag_info, profile_problems, rules_for
    from preservation.sip import open_serialised_bag, read_bag_info, validate_bag
    from preservation.tenants import check_tenant_id

    rules = rules_for(settings, check_tenant_id(tenant, source="--tenant")) if tenant else None
    base: Path | None = None
    if "home" in settings.model_fields_set and settings.home_dir.is_dir():
        try:
            settings.staging_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryDirectory(prefix="validate-", dir=settings.staging_dir).cleanup()
            base = settings.staging_dir
        except OSError:  # a data root that cannot be written: the system's temp will do
            base = None
    report: dict[str, Any] = {
        "bag": str(path),
        "tenant": tenant,
        "valid": False,
        "bagit_version": None,
        "algorithms": [],
        "files_hashed": 0,
        "bytes_hashed": 0,
        "error_count": 0,
        "warning_count": 0,
        "duplicate_check": None,
        "format_check": _format_check(rules),
        "problems": [],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="validate-", dir=base) as tmp:
            refuse_if_not_a_bag(path)
            bag = path
            if path.is_file() and path.name.lower().endswith(SERIALISED_SUFFIXES):
                bag = open_serialised_bag(
                    path,
                    Path(tmp),
                    max_bytes=settings.unpack_max_bytes,
                    max_members=settings.unpack_max_members,
                    max_ratio=settings.unpack_max_ratio,
                )
            result = validate_bag(bag, processes=processes)
            report |= result.to_dict() | {"bag": str(path)}
            if rules is not None and result.valid and tenant is not None:
                info = read_bag_info(bag)
                report["problems"] += missing_bag_info(rules, info)
                report["problems"] += profile_problems(rules, bag, submitted=path)
                found, report["duplicate_check"] = _duplicates(settings, tenant, bag, info)
                report["problems"] += found
    except InvalidSIPError as err:
        report["problems"] = [
            p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in err.problems
        ] or [
            {
                "severity": "error",
                "file": err.path,
                "rule": err.context.get("rule", type(err).__name__),
                "message": err.message,
                "rfc8493": None,
            }
        ]
    report["error_count"] = sum(p.get("severity") == "error" for p in report["problems"])
    report["warning_count"] = sum(p.get("severity") == "warning" for p in report["problems"])
    report["valid"] = report["error_count"] == 0 and report["bagit_version"] is not None
    return report


def _format_check(rules: TenantRules | None) -> str | None:
    """What ``validate`` can say of the tenant's ``allowed_formats``: formats are known
    only after identification, which is ingest's work, so only that it will apply."""
    if rules is None or rules.allowed_formats is None:
        return None
    policy = rules.allowed_formats
    return (
        f"not done: formats are identified at ingest, where tenant {rules.tenant}'s "
        f"allowed_formats ({', '.join(sorted(policy.puids))}) applies: a file in another "
        f"format {'rejects the bag' if policy.otherwise == 'reject' else 'is a warning'}"
    )


def _duplicates(
    settings: Settings, tenant: str, bag: Path, info: dict[str, list[str]]
) -> tuple[list[dict[str, Any]], str]:
    """The tenant's AIPs the bag repeats (rule ``on_duplicate``), and how far that was checked.

    Only where there is a catalogue to ask, opened read-only: ``validate`` must
    not make an archive, and a catalogue it cannot read makes the check
    "not done", never the bag invalid. The payload's sha256 digests come from
    its verified ``manifest-sha256.txt``, or from one more read of the payload.
    """
    from preservation.catalog import session_scope
    from preservation.catalog.database import sqlite_path
    from preservation.context import open_context
    from preservation.ingest import duplicate_problems

    catalogue = sqlite_path(settings.catalog_url)
    if catalogue is not None and not catalogue.is_file():
        return [], f"not done: no catalogue at {catalogue}"
    try:
        ctx = open_context(settings, migrate=False, read_only=True)
    except PreservationError as err:
        return [], f"not done: {err.message}"
    try:
        with session_scope(ctx.sessions) as s:
            found = duplicate_problems(ctx, s, None, tenant, info, _payload_sha256s(bag))
    except (PreservationError, SQLAlchemyError) as err:
        return [], f"not done: {err}"
    finally:
        ctx.close()
    return found, "done"


def _payload_sha256s(bag: Path) -> list[str]:
    """Every payload file's sha256, as a multiset: the manifest's when the bag has one."""
    manifest = bag / "manifest-sha256.txt"
    if manifest.is_file():
        lines = [
            line.split(maxsplit=1)
            for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip()
        ]
        paths = [parts[-1].strip() for parts in lines]
        if len(set(paths)) == len(paths):  # one line per file: the verified digests
            return [parts[0].lower() for parts in lines]
    found: list[str] = []
    for path in sorted((bag / "data").rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                found.append(hashlib.file_digest(fh, "sha256").hexdigest())
    return found


def load_submitter(settings: Settings) -> Callable[[str], None]:
    """The ``module:callable`` that starts a received SIP's workflow on the workers."""
    return load_callable(settings.submitter, "submitter")


def load_callable(target: str, setting: str) -> Callable[[Any], None]:
    """A ``module:callable`` named by a setting; a bad one names the setting and the rule."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"{setting} {target!r} must be 'module:callable'", rule=f"{setting}-dotted-path"
        )
    try:
        module = importlib.import_module(module_name)
        submit = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"{setting} {target!r} cannot be loaded: {exc}", rule=f"{setting}-dotted-path"
        ) from exc
    if not callable(submit):
        raise ConfigurationError(f"{setting} {target!r} is not callable")
    return cast(Callable[[Any], None], submit)
