"""Which formats are migrated, to what, by which tool, and how the result is proven.

A policy is a curator's decision written down, so it is data, not code: a JSON
file (``default-policy.json`` beside this module, or the archive's own) checked
against ``schemas/format-policy.schema.json`` on every load. Actions are named
once and referenced by id from the rules, because several source families share
one conversion (every word-processing format becomes the same PDF/A-2b).

The rules the schema cannot state are checked here, each a ``ConfigurationError``
naming the file, the rule and the JSON pointer of the part that breaks it:

* a PUID belongs to one rule only (``unique-puid``), or a file's fate would
  depend on the order of the file;
* action ids are unique (``unique-action-id``) and every id a rule names exists
  (``known-action``);
* an action names a tool of ``tools.TOOL_NAMES`` (``known-tool``), verifications
  of ``VERIFICATIONS`` (``known-verification``), a kind its tool can produce
  (``tool-kind``) and arguments its tool can run (``tool-arguments``).

The file's sha256 travels with every migration it drives: the PREMIS event of a
migration must say which decision it carried out, and a file edited in place
keeps its name.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from preservation.errors import ConfigurationError

__all__ = [
    "KINDS",
    "MODES",
    "VERIFICATIONS",
    "Action",
    "Policy",
    "Rule",
    "default_policy_path",
    "load_policy",
    "parse_policy",
]

#: What may be checked of an output before it replaces its source (``verify.py``).
VERIFICATIONS = frozenset(
    {"output", "identify", "validate", "properties", "pixels", "pcm", "framemd5", "pages"}
)
#: best-effort: every file that verifies is migrated, the rest stay as they are;
#: all-or-nothing: one failed file and nothing of the AIP is migrated.
MODES = ("best-effort", "all-or-nothing")
#: The tool families an action belongs to.
KINDS = ("image", "audio", "video", "document")

SCHEMA_NAME = "format-policy.schema.json"
DEFAULT_POLICY = "default-policy.json"
_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True)
class Action:
    """One conversion: a tool, its arguments, and what the output must be."""

    id: str
    tool: str
    arguments: tuple[str, ...]
    target_puid: str
    extension: str
    kind: str
    verification: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "arguments": list(self.arguments),
            "target_puid": self.target_puid,
            "extension": self.extension,
            "kind": self.kind,
            "verification": list(self.verification),
        }


@dataclass(frozen=True)
class Rule:
    """A family of source formats and the outputs each of its files gets."""

    name: str
    puids: tuple[str, ...]
    preservation: tuple[Action, ...]
    access: Action | None


@dataclass(frozen=True)
class Policy:
    """One policy file, loaded and checked; rules looked up by PUID, actions by id.

    ``actions`` holds every action the file defines, those no rule uses too, so
    that ``action`` answers for any id the file names; left empty, it is the
    actions of the rules.
    """

    name: str
    mode: str
    rules: tuple[Rule, ...]
    source: str
    sha256: str
    actions: tuple[Action, ...] = ()
    _by_puid: Mapping[str, Rule] = field(init=False, repr=False, compare=False)
    _by_id: Mapping[str, Action] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_puid: dict[str, Rule] = {}
        by_id: dict[str, Action] = {a.id: a for a in self.actions}
        for rule in self.rules:
            for puid in rule.puids:
                by_puid.setdefault(puid, rule)
            for act in (*rule.preservation, *((rule.access,) if rule.access else ())):
                by_id.setdefault(act.id, act)
        object.__setattr__(self, "_by_puid", by_puid)
        object.__setattr__(self, "_by_id", by_id)

    def rule_for(self, puid: str | None) -> Rule | None:
        """The rule listing ``puid``; None for an unidentified file or a format left as it is."""
        if puid is None:
            return None
        return self._by_puid.get(puid)

    def action(self, action_id: str) -> Action:
        """The action called ``action_id``; an unknown id is the policy's fault: it says so."""
        try:
            return self._by_id[action_id]
        except KeyError:
            raise ConfigurationError(
                f"{self.source}: policy {self.name!r} has no action {action_id!r} "
                f"(it has {', '.join(sorted(self._by_id)) or 'none'}) (rule known-action)",
                path=self.source,
                rule="known-action",
                action=action_id,
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The policy as the file states it, with its provenance (source, sha256)."""
        return {
            "name": self.name,
            "mode": self.mode,
            "source": self.source,
            "sha256": self.sha256,
            "actions": [a.to_dict() for a in self._by_id.values()],
            "rules": [
                {
                    "name": r.name,
                    "puids": list(r.puids),
                    "preservation": [a.id for a in r.preservation],
                    "access": r.access.id if r.access else None,
                }
                for r in self.rules
            ],
        }


def default_policy_path() -> Path:
    """The policy shipped with the package (read-only data inside the installed package)."""
    return Path(str(resources.files("preservation.migrate").joinpath(DEFAULT_POLICY)))


def load_policy(path: Path | None = None, *, schemas_dir: Path | None = None) -> Policy:
    """The policy at ``path``, checked; None: the shipped one, whose source is ``"default"``.

    The shipped policy is read once per process; an archive's own file is read
    on every call, so an edit applies to the next migration without a restart.
    """
    schemas = (schemas_dir or _SCHEMAS_DIR).resolve()
    if path is None:
        return _default_policy(schemas)
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigurationError(
            f"{path}: format policy not found (rule policy-file)", path=path, rule="policy-file"
        ) from err
    except OSError as err:
        raise ConfigurationError(
            f"{path}: format policy not readable: {err} (rule policy-file)",
            path=path,
            rule="policy-file",
        ) from err
    return _parse(data, str(path), schemas)


def parse_policy(data: bytes, source: str, *, schemas_dir: Path | None = None) -> Policy:
    """A policy from its file's bytes: what a request recorded is rebuilt exactly from them."""
    return _parse(data, source, (schemas_dir or _SCHEMAS_DIR).resolve())


@functools.lru_cache(maxsize=4)
def _default_policy(schemas_dir: Path) -> Policy:
    return _parse(default_policy_path().read_bytes(), "default", schemas_dir)


def _validator(schemas_dir: Path) -> Any:
    from preservation.schema_files import json_validator

    return json_validator(schemas_dir, SCHEMA_NAME)


def _pointer(*parts: object) -> str:
    """An RFC 6901 JSON pointer; the whole document is the empty string."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _broken(source: str, at: str, message: str, rule: str) -> ConfigurationError:
    return ConfigurationError(
        f"{source}: at {at or '(top)'}: {message} (rule {rule})", path=source, rule=rule, at=at
    )


def _parse(data: bytes, source: str, schemas_dir: Path) -> Policy:
    from preservation.migrate.tools import TOOL_KINDS, TOOL_NAMES, argument_problem

    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigurationError(
            f"{source}: not JSON: {err} (rule json)", path=source, rule="json"
        ) from err
    problems = sorted(
        _validator(schemas_dir).iter_errors(document), key=lambda e: list(map(str, e.absolute_path))
    )
    if problems:
        detail = "; ".join(
            f"at {_pointer(*p.absolute_path) or '(top)'}: {p.message} (rule {p.validator})"
            for p in problems
        )
        first = problems[0]
        raise ConfigurationError(
            f"{source}: breaks {SCHEMA_NAME}: {detail}",
            path=source,
            rule=f"{SCHEMA_NAME}#{first.validator}",
            at=_pointer(*first.absolute_path),
        )

    actions: dict[str, Action] = {}
    for index, raw in enumerate(document["actions"]):
        at = _pointer("actions", index)
        if raw["id"] in actions:
            raise _broken(
                source, at + "/id", f"action id {raw['id']!r} is defined twice", "unique-action-id"
            )
        if raw["tool"] not in TOOL_NAMES:
            raise _broken(
                source,
                at + "/tool",
                f"unknown tool {raw['tool']!r}; tools are {', '.join(TOOL_NAMES)}",
                "known-tool",
            )
        for position, check in enumerate(raw["verification"]):
            if check not in VERIFICATIONS:
                raise _broken(
                    source,
                    f"{at}/verification/{position}",
                    f"unknown verification {check!r}; they are {', '.join(sorted(VERIFICATIONS))}",
                    "known-verification",
                )
        if raw["kind"] not in TOOL_KINDS[raw["tool"]]:
            raise _broken(
                source,
                at + "/kind",
                f"{raw['tool']} makes {' or '.join(TOOL_KINDS[raw['tool']])} outputs, "
                f"not {raw['kind']!r}",
                "tool-kind",
            )
        action = Action(
            id=raw["id"],
            tool=raw["tool"],
            arguments=tuple(raw["arguments"]),
            target_puid=raw["target_puid"],
            extension=raw["extension"],
            kind=raw["kind"],
            verification=tuple(raw["verification"]),
        )
        problem = argument_problem(action)
        if problem is not None:
            raise _broken(source, at + "/arguments", problem, "tool-arguments")
        actions[action.id] = action

    def resolve(action_id: str, at: str) -> Action:
        found = actions.get(action_id)
        if found is None:
            raise _broken(source, at, f"no action has the id {action_id!r}", "known-action")
        return found

    rules: list[Rule] = []
    owner: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, raw in enumerate(document["rules"]):
        at = _pointer("rules", index)
        if raw["name"] in names:
            raise _broken(
                source,
                at + "/name",
                f"rule name {raw['name']!r} is also the name of /rules/{names[raw['name']]}",
                "unique-rule-name",
            )
        names[raw["name"]] = index
        for position, puid in enumerate(raw["puids"]):
            if puid in owner:
                other = owner[puid]
                raise _broken(
                    source,
                    f"{at}/puids/{position}",
                    f"{puid} is listed by /rules/{other} "
                    f"({document['rules'][other]['name']!r}) and again by {at} "
                    f"({raw['name']!r}); a PUID may appear in one rule only",
                    "unique-puid",
                )
            owner[puid] = index
        access = raw.get("access")
        rules.append(
            Rule(
                name=raw["name"],
                puids=tuple(raw["puids"]),
                preservation=tuple(
                    resolve(a, f"{at}/preservation/{i}") for i, a in enumerate(raw["preservation"])
                ),
                access=resolve(access, at + "/access") if access is not None else None,
            )
        )
    return Policy(
        name=document["name"],
        mode=document.get("mode", MODES[0]),
        rules=tuple(rules),
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        actions=tuple(actions.values()),
    )
