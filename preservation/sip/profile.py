"""BagIt profiles (bagit-profiles specification 1.1 to 1.4): a tenant's contract with its producers.

RFC 8493 leaves much open (which manifests, which bag-info labels, extra tag
files, serialisation); a tenant that has agreed those with its producers
writes them down as a profile, and ingest holds every bag to it. The check is
a pure function of the bag's facts (:class:`BagFacts`), so every door (hot
folder, ``ingest``, ``validate``, the API) judges a bag the same way and the
tests need no bag on disk; :func:`bag_facts` is the thin shell that reads them.

The profile is read from the tenant's rules and never fetched over the network:
an archive must judge a bag the same way in fifty years, when the URL is gone.
Where the specification is silent, the stricter reading is taken, because a
profile is a promise the producer made:

* a ``required`` bag-info label needs a non-blank value, not just the label;
* labels are matched without regard to case, as RFC 8493 readers do;
* ``Tag-Files-Allowed`` governs the tag files RFC 8493 does not define (the
  declaration, bag-info, fetch.txt and the manifests have their own keys);
* glob patterns follow ``fnmatch``: ``*`` also matches ``/``, so ``data/src/*``
  allows a whole folder and ``*`` (the default) every file.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from preservation.errors import ConfigurationError
from preservation.sip.baginfo import info_file_name, read_bag_info, read_declaration

__all__ = [
    "SERIALISATION_TYPES",
    "BagFacts",
    "BagItProfile",
    "TagRule",
    "bag_facts",
    "check_profile",
    "parse_profile",
    "serialisation_of",
]

Serialization = Literal["forbidden", "required", "optional"]

#: The MIME type a serialised bag is known by, from its name, and the other
#: names profiles use for the same format (``application/tar`` is common).
SERIALISATION_TYPES: dict[str, frozenset[str]] = {
    "application/zip": frozenset(
        {"application/zip", "application/x-zip", "application/x-zip-compressed"}
    ),
    "application/x-tar": frozenset({"application/x-tar", "application/tar"}),
    "application/gzip": frozenset(
        {
            "application/gzip",
            "application/x-gzip",
            "application/tar+gzip",
            "application/x-gtar",
            "application/x-compressed-tar",
        }
    ),
}
_SUFFIX_TYPES = (
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".tar", "application/x-tar"),
    (".zip", "application/zip"),
)
_MANIFEST = re.compile(r"(tag)?manifest-([^/]+)\.txt")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True, slots=True)
class TagRule:
    """One ``Bag-Info`` entry; ``description`` and ``recommended`` bind no bag, so are dropped."""

    label: str
    required: bool = False
    values: tuple[str, ...] = ()
    repeatable: bool = True


@dataclass(frozen=True, slots=True)
class BagItProfile:
    """A profile as ingest applies it. ``None`` for an ``-Allowed`` list means "anything"."""

    identifier: str
    source: str  # where it was read, for messages about the profile itself
    spec_version: str
    accept_bagit_version: tuple[str, ...]
    bag_info: tuple[TagRule, ...] = ()
    manifests_required: tuple[str, ...] = ()
    manifests_allowed: tuple[str, ...] | None = None
    tag_manifests_required: tuple[str, ...] = ()
    tag_manifests_allowed: tuple[str, ...] | None = None
    allow_fetch: bool = True
    fetch_required: bool = False
    data_empty: bool = False
    serialization: Serialization = "optional"
    accept_serialization: tuple[str, ...] = ()
    tag_files_required: tuple[str, ...] = ()
    tag_files_allowed: tuple[str, ...] | None = None
    payload_files_required: tuple[str, ...] = ()
    payload_files_allowed: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class BagFacts:
    """What a profile can ask about a bag, read once from a bag already found valid.

    Paths are relative to the bag's root, ``/``-separated, as manifests name
    them; ``payload`` maps each file under ``data/`` to its size.
    ``serialization`` is the MIME type of the archive it came in, or None for
    a folder; ``submitted_as`` is the name it was submitted under.
    """

    bagit_version: str
    bag_info: Mapping[str, Sequence[str]]
    manifests: frozenset[str]
    tag_manifests: frozenset[str]
    fetch_txt: bool
    tag_files: frozenset[str]
    payload: Mapping[str, int]
    serialization: str | None = None
    submitted_as: str = ""
    info_file: str = "bag-info.txt"


# -- the profile document ------------------------------------------------------------------


def parse_profile(document: Mapping[str, Any], *, source: str, named_by: str = "") -> BagItProfile:
    """The profile in ``document``, refused whole if it contradicts itself.

    ``document`` has passed the ``bagit_profile`` definition of
    ``schemas/archiving-rules.schema.json`` (``rules.py`` checks it first), so
    only what a schema cannot say is checked here: an ``-Allowed`` list that
    leaves out what its ``-Required`` list demands, ``Fetch.txt-Required``
    with fetch.txt forbidden, required serialisation with no accepted type.
    Each would refuse every bag, which is a mistake in the profile, not in the
    bags. ``source`` names the profile in the error, and ``named_by`` where the
    rules name it, for an operator looking for the line to fix.
    """
    info = document["BagIt-Profile-Info"]

    def refuse(key: str, message: str) -> ConfigurationError:
        return ConfigurationError(
            f"{source}: at {key}: {message} (rule bagit-profile){named_by and ' ' + named_by}",
            path=source,
            rule="bagit-profile",
        )

    def strings(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in document.get(key, ()))

    def optional(key: str) -> tuple[str, ...] | None:
        return strings(key) if key in document else None

    manifests_required = tuple(v.lower() for v in strings("Manifests-Required"))
    manifests_allowed = _lowered(optional("Manifests-Allowed"))
    tag_required = tuple(v.lower() for v in strings("Tag-Manifests-Required"))
    tag_allowed = _lowered(optional("Tag-Manifests-Allowed"))
    for key, required, allowed in (
        ("Manifests-Allowed", manifests_required, manifests_allowed),
        ("Tag-Manifests-Allowed", tag_required, tag_allowed),
    ):
        left_out = [a for a in required if allowed is not None and a not in allowed]
        if left_out:
            raise refuse(
                key, f"leaves out {', '.join(left_out)}, which {key[:-8]}-Required demands"
            )
    allow_fetch = bool(document.get("Allow-Fetch.txt", True))
    fetch_required = bool(document.get("Fetch.txt-Required", False))
    if fetch_required and not allow_fetch:
        raise refuse("Fetch.txt-Required", "true while Allow-Fetch.txt is false")
    serialization: Serialization = document.get("Serialization", "optional")
    accept_serialization = strings("Accept-Serialization")
    if serialization == "required" and not accept_serialization:
        raise refuse(
            "Accept-Serialization", "Serialization is required, but no MIME type is accepted"
        )
    tag_files_required = strings("Tag-Files-Required")
    tag_files_allowed = optional("Tag-Files-Allowed")
    payload_required = strings("Payload-Files-Required")
    payload_allowed = optional("Payload-Files-Allowed")
    for key, required, allowed in (
        ("Tag-Files-Allowed", tag_files_required, tag_files_allowed),
        ("Payload-Files-Allowed", payload_required, payload_allowed),
    ):
        uncovered = [r for r in required if allowed is not None and not _covered(r, allowed)]
        if uncovered:
            raise refuse(
                key,
                f"allows none of {', '.join(uncovered)}, which {key[:-8]}-Required demands",
            )
    rules = tuple(
        TagRule(
            label=label,
            required=bool(spec.get("required", False)),
            values=tuple(str(v) for v in spec.get("values", ())),
            repeatable=bool(spec.get("repeatable", True)),
        )
        for label, spec in document.get("Bag-Info", {}).items()
    )
    return BagItProfile(
        identifier=str(info["BagIt-Profile-Identifier"]),
        source=source,
        # A profile that does not say follows 1.1.0 (the specification, BagIt-Profile-Info).
        spec_version=str(info.get("BagIt-Profile-Version", "1.1.0")),
        accept_bagit_version=strings("Accept-BagIt-Version"),
        bag_info=rules,
        manifests_required=manifests_required,
        manifests_allowed=manifests_allowed,
        tag_manifests_required=tag_required,
        tag_manifests_allowed=tag_allowed,
        allow_fetch=allow_fetch,
        fetch_required=fetch_required,
        data_empty=bool(document.get("Data-Empty", False)),
        serialization=serialization,
        accept_serialization=accept_serialization,
        tag_files_required=tag_files_required,
        tag_files_allowed=tag_files_allowed,
        payload_files_required=payload_required,
        payload_files_allowed=payload_allowed,
    )


def _lowered(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(v.lower() for v in values)


def _covered(required: str, patterns: Iterable[str]) -> bool:
    """A required path (a folder ends in ``/``) is allowed by one of the patterns."""
    return any(fnmatchcase(required, p) or fnmatchcase(required.rstrip("/"), p) for p in patterns)


# -- the check -----------------------------------------------------------------------------


def check_profile(profile: BagItProfile, facts: BagFacts) -> list[dict[str, Any]]:
    """Every way the bag breaks the profile, as report problems (rule ``profile-<key>``).

    Everything is checked, even after ``Accept-BagIt-Version`` or
    ``Accept-Serialization`` fails (which the specification calls fatal): the
    bag is refused either way, and its producer should learn everything at once.
    """
    named = f"profile {profile.identifier}"
    problems: list[dict[str, Any]] = []

    def add(rule: str, file: str | None, message: str, severity: str = "error") -> None:
        problems.append(
            {
                "severity": severity,
                "file": file,
                "rule": f"profile-{rule}",
                "message": f"{named} {message}",
            }
        )

    # Accept-BagIt-Version
    if _version(facts.bagit_version) not in {_version(v) for v in profile.accept_bagit_version}:
        add(
            "accept-bagit-version",
            "bagit.txt",
            f"does not accept BagIt-Version {facts.bagit_version} "
            f"(Accept-BagIt-Version: {', '.join(profile.accept_bagit_version)})",
        )
    # Serialization, Accept-Serialization
    accepted = ", ".join(profile.accept_serialization) or "any"
    if facts.serialization is None and profile.serialization == "required":
        add(
            "serialization",
            facts.submitted_as or None,
            f"requires a serialised bag (Serialization: required; Accept-Serialization: "
            f"{accepted}); this one was submitted as a folder",
        )
    elif facts.serialization is not None and profile.serialization == "forbidden":
        add(
            "serialization",
            facts.submitted_as or None,
            f"forbids serialised bags (Serialization: forbidden); this one came as "
            f"{facts.serialization}: submit the bag folder itself",
        )
    elif facts.serialization is not None and profile.accept_serialization:
        names = SERIALISATION_TYPES.get(facts.serialization, frozenset({facts.serialization}))
        if not names & {t.lower() for t in profile.accept_serialization}:
            add(
                "accept-serialization",
                facts.submitted_as or None,
                f"does not accept {facts.serialization} (Accept-Serialization: {accepted})",
            )
    _check_bag_info(profile, facts, add)
    # Manifests and tag manifests
    for kind, prefix, present, required, allowed in (
        (
            "manifests",
            "manifest",
            facts.manifests,
            profile.manifests_required,
            profile.manifests_allowed,
        ),
        (
            "tag-manifests",
            "tagmanifest",
            facts.tag_manifests,
            profile.tag_manifests_required,
            profile.tag_manifests_allowed,
        ),
    ):
        key = "Manifests" if kind == "manifests" else "Tag-Manifests"
        for algorithm in required:
            if algorithm not in present:
                add(
                    f"{kind}-required",
                    f"{prefix}-{algorithm}.txt",
                    f"requires {prefix}-{algorithm}.txt ({key}-Required: {', '.join(required)})",
                )
        for algorithm in sorted(present):
            if allowed is not None and algorithm not in allowed:
                add(
                    f"{kind}-allowed",
                    f"{prefix}-{algorithm}.txt",
                    f"does not allow {prefix}-{algorithm}.txt "
                    f"({key}-Allowed: {', '.join(allowed) or 'none'})",
                )
    # Allow-Fetch.txt, Fetch.txt-Required
    if facts.fetch_txt and not profile.allow_fetch:
        add("allow-fetch-txt", "fetch.txt", "does not allow fetch.txt (Allow-Fetch.txt: false)")
    if not facts.fetch_txt and profile.fetch_required:
        add("fetch-txt-required", "fetch.txt", "requires fetch.txt (Fetch.txt-Required: true)")
    # Tag-Files-Required, Tag-Files-Allowed
    for path in profile.tag_files_required:
        if path not in facts.tag_files:
            add("tag-files-required", path, f"requires the tag file {path} (Tag-Files-Required)")
    if profile.tag_files_allowed is not None:
        for path in sorted(facts.tag_files):
            if not _rfc8493_tag_file(path, facts.info_file) and not _matches(
                path, profile.tag_files_allowed
            ):
                add(
                    "tag-files-allowed",
                    path,
                    f"does not allow the tag file {path} "
                    f"(Tag-Files-Allowed: {', '.join(profile.tag_files_allowed) or 'none'})",
                )
    # Payload-Files-Required, Payload-Files-Allowed, Data-Empty
    for path in profile.payload_files_required:
        folder = path.rstrip("/")
        if not any(p == folder or p.startswith(folder + "/") for p in facts.payload):
            what = "folder" if path.endswith("/") else "file"
            add(
                "payload-files-required",
                path,
                f"requires the payload {what} {path} (Payload-Files-Required)",
            )
    if profile.payload_files_allowed is not None:
        patterns = ", ".join(profile.payload_files_allowed) or "none"
        for path in sorted(facts.payload):
            if not _matches(path, profile.payload_files_allowed):
                add(
                    "payload-files-allowed",
                    path,
                    f"does not allow the payload file {path} (Payload-Files-Allowed: {patterns})",
                )
    if profile.data_empty:
        sizes = list(facts.payload.values())
        if not (len(sizes) == 0 or sizes == [0]):
            add(
                "data-empty",
                "data",
                f"requires an empty payload, no file or one empty file (Data-Empty: true); "
                f"found {len(sizes)} file(s), {sum(sizes)} bytes",
            )
    return problems


def _check_bag_info(profile: BagItProfile, facts: BagFacts, add: Any) -> None:
    """``Bag-Info``: required (with a value), values, repeatable; and the profile's own label."""
    by_label: dict[str, list[str]] = {}
    for label, values in facts.bag_info.items():
        by_label.setdefault(label.lower(), []).extend(values)
    file = facts.info_file
    for rule in profile.bag_info:
        values = by_label.get(rule.label.lower(), [])
        if rule.required and not any(v.strip() for v in values):
            add("bag-info", file, f"requires {rule.label!r} in {file} with a value")
        if rule.values:
            for value in values:
                if value.strip() not in rule.values:
                    add(
                        "bag-info",
                        file,
                        f"allows {rule.label!r} only as one of "
                        f"{', '.join(repr(v) for v in rule.values)}; found {value!r}",
                    )
        if not rule.repeatable and len(values) > 1:
            add(
                "bag-info",
                file,
                f"allows {rule.label!r} once; found it {len(values)} times "
                f"({', '.join(repr(v) for v in values)})",
            )
    # The specification has every conforming bag name its profile. The tenant's
    # rules already say which profile applies, so a bag that does not is told,
    # not refused; one that names only other profiles was made for another contract.
    declared = [v.strip() for v in by_label.get("bagit-profile-identifier", [])]
    if profile.identifier not in declared:
        said = (
            f"BagIt-Profile-Identifier {', '.join(map(repr, declared))}"
            if declared
            else "no BagIt-Profile-Identifier"
        )
        add("identifier", file, f"applies (tenant rule), but the bag declares {said}", "warning")


def _version(text: str) -> tuple[int, ...]:
    """``"1.0"`` and ``"1"`` are one version; an unreadable one matches nothing."""
    if not _VERSION.fullmatch(text.strip()):
        return (-1,)
    parts = [int(p) for p in text.strip().split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(path, p) for p in patterns)


def _rfc8493_tag_file(path: str, info_file: str) -> bool:
    """The tag files RFC 8493 defines, which other profile keys govern."""
    return path in {"bagit.txt", info_file, "fetch.txt"} or _MANIFEST.fullmatch(path) is not None


# -- the shell: reading the facts ----------------------------------------------------------


def serialisation_of(submitted: Path) -> str | None:
    """The MIME type a submission's name gives it; None for a folder."""
    name = submitted.name.lower()
    if submitted.is_dir():
        return None
    for suffix, mime in _SUFFIX_TYPES:
        if name.endswith(suffix):
            return mime
    return None


def bag_facts(bag_dir: Path, *, submitted: Path) -> BagFacts:
    """The facts of a bag that validation has accepted, by directory listing and tag files only.

    ``submitted`` is what was handed in (the folder, or the archive that
    ``bag_dir`` was unpacked from). Links are never followed (validation has
    refused any already); no payload byte is read.
    """
    declaration = read_declaration(bag_dir)
    info_file = info_file_name(declaration.version_info)
    tag_files: set[str] = set()
    payload: dict[str, int] = {}
    root = os.fspath(bag_dir)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            if rel.startswith("data/"):
                payload[rel] = st.st_size
            else:
                tag_files.add(rel)
        dirnames.sort()
    found = [(m.group(1), m.group(2).lower()) for m in map(_MANIFEST.fullmatch, tag_files) if m]
    return BagFacts(
        bagit_version=declaration.version,
        bag_info=read_bag_info(bag_dir),
        manifests=frozenset(alg for tag, alg in found if not tag),
        tag_manifests=frozenset(alg for tag, alg in found if tag),
        fetch_txt="fetch.txt" in tag_files,
        tag_files=frozenset(tag_files),
        payload=payload,
        serialization=serialisation_of(submitted),
        submitted_as=submitted.name,
        info_file=info_file,
    )
