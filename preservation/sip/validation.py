"""Strict RFC 8493 validation of a bag directory, reporting every problem found.

Two passes. The first is structural and reads only tag files and directory
entries: it walks the bag with ``lstat`` semantics (no symlink followed, no FIFO
or device opened), parses every manifest line, and works out which digests each
file must have. The second reads each file once (:mod:`preservation.sip.digests`)
and compares. Ingest uses :func:`validate_and_stage`, where the second pass also
writes the staged copy, so the payload is read once in all.

The ``bagit`` library supplies tag parsing; it is not asked to validate because
it stops at the first problem, forgives a malformed ``bagit.txt``, does not
decode ``%25`` and follows symlinks (docs/validation.md lists the differences).
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bagit  # type: ignore[import-untyped]

from preservation.sip.baginfo import (
    BagDeclaration,
    decode_tag_text,
    info_file_name,
    parse_bag_declaration,
    parse_oxum,
    parse_tags,
)
from preservation.sip.digests import DigestJob, DigestResult, digest_files, staged_path
from preservation.sip.manifest import (
    FetchEntry,
    ManifestEntry,
    digest_length,
    hashlib_name,
    manifest_algorithm,
    parse_fetch,
    parse_manifest,
)
from preservation.sip.report import Problem, ValidationReport

__all__ = ["StagedFile", "validate_and_stage", "validate_bag"]

_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", ".directory", "icon\r"}
_STAGING_ALGORITHMS = ("sha256", "sha512")
_FALLBACK = BagDeclaration("1.0", (1, 0), "utf-8")
_DIGEST_RULES = {"manifest-digest-mismatch", "tagmanifest-digest-mismatch"}


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A payload file copied into staging, with the digests the AIP will carry.

    ``submitted`` holds the digests the depositor's manifests gave, keyed by the
    BagIt algorithm id (``sha256``), all of them verified against the copy.
    """

    relpath: str
    size: int
    sha256: str
    sha512: str
    submitted: dict[str, str]


@dataclass(frozen=True, slots=True)
class _DiskFile:
    relpath: str
    size: int
    device: int
    inode: int


@dataclass(slots=True)
class _Plan:
    """What the structural pass learnt: the files to read and what they must hash to."""

    report: ValidationReport
    files: dict[str, _DiskFile] = field(default_factory=dict)
    # disk relpath -> hashlib name -> accepted digests
    payload_expected: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    tag_expected: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # disk relpath -> name the file has in the manifest (what we stage it as)
    payload_names: dict[str, str] = field(default_factory=dict)
    # hashlib name -> BagIt id, for the payload manifests
    payload_algorithms: dict[str, str] = field(default_factory=dict)


def validate_bag(path: Path, *, processes: int = 2, check_fetch: bool = True) -> ValidationReport:
    """Validate the bag at ``path`` and report every problem; never raises for a bad bag.

    ``check_fetch`` True (ingest) refuses a bag whose ``fetch.txt`` names files that
    are absent: the archive holds bytes, not promises of bytes. False accepts such
    a "holey" bag as RFC 8493 does, with a warning per missing file.
    """
    plan = _plan(Path(path), check_fetch=check_fetch)
    jobs = _jobs(plan, dest_dir=None)
    _record(plan, digest_files(jobs, processes=processes))
    return plan.report


def validate_and_stage(
    bag_dir: Path,
    dest_dir: Path,
    *,
    processes: int = 2,
    fsync: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ValidationReport, list[StagedFile]]:
    """Validate and copy the payload into ``dest_dir`` reading each byte once.

    The staged list is empty unless the report is valid: a refused bag leaves no
    staged file behind (each copy is written under a temporary name and renamed
    only once its digests match; on any error the renamed ones are removed too).
    A bag with structural errors is still hashed, so its report is complete, but
    nothing is copied.
    """
    bag_dir = Path(bag_dir)
    dest_dir = Path(os.path.abspath(dest_dir))
    bag_real = bag_dir.resolve()
    dest_real = dest_dir.resolve()
    if dest_real == bag_real or bag_real in dest_real.parents:
        raise ValueError(f"staging area {dest_dir} is inside the bag {bag_dir}")
    if dest_real / "data" in (bag_real, *bag_real.parents):
        raise ValueError(f"staging into {dest_dir} would overwrite the bag {bag_dir}")
    plan = _plan(bag_dir, check_fetch=True)
    copy = plan.report.valid
    created_dirs: list[str] = []
    if copy:
        created_dirs = _make_parents(dest_dir, plan.payload_names.values())
    results = digest_files(
        _jobs(plan, dest_dir=dest_dir if copy else None, fsync=fsync),
        processes=processes,
        progress=progress,
    )
    _record(plan, results)
    staged = [r for r in results if r.staged]
    if not plan.report.valid:
        for r in staged:
            os.unlink(r.job.copy_to)  # type: ignore[arg-type]
        for d in reversed(created_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        return plan.report, []
    out = []
    for r in sorted(staged, key=lambda r: r.job.relpath):
        submitted = {
            plan.payload_algorithms[name]: r.digests[name]
            for name in plan.payload_expected.get(r.job.relpath, {})
        }
        out.append(
            StagedFile(
                relpath=plan.payload_names[r.job.relpath],
                size=r.size,
                sha256=r.digests["sha256"],
                sha512=r.digests["sha512"],
                submitted=submitted,
            )
        )
    return plan.report, out


def _make_parents(dest_dir: Path, relpaths: Iterable[str]) -> list[str]:
    """Create every directory the staged files need; return those we created, outermost first."""
    created: list[str] = []
    wanted = sorted({os.path.dirname(staged_path(dest_dir, rel)) for rel in relpaths})
    for directory in [os.fspath(dest_dir), *wanted]:
        missing = []
        probe = directory
        while not os.path.isdir(probe) and probe != os.path.dirname(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(directory, exist_ok=True)
        created.extend(reversed(missing))
    return created


# --------------------------------------------------------------------------- structure


def _plan(bag_dir: Path, *, check_fetch: bool) -> _Plan:
    report = ValidationReport(bag=bag_dir)
    plan = _Plan(report)
    try:
        st = os.stat(bag_dir)
    except OSError as exc:
        report.error("bag-missing", f"the bag {bag_dir} cannot be opened: {exc.strerror}")
        return plan
    if not stat.S_ISDIR(st.st_mode):
        report.error("bag-not-directory", f"{bag_dir} is not a directory")
        return plan

    dirs = _scan(bag_dir, plan)
    declaration = _declaration(bag_dir, plan)
    report.version = declaration.version if declaration else None
    decl = declaration or _FALLBACK
    if "data" not in dirs:
        report.error(
            "payload-directory-missing",
            "the bag has no payload directory 'data/'",
            "data",
            "2.1.2",
        )
    _names(plan)
    fetch = _fetch(bag_dir, plan, decl, check_fetch)
    _manifests(bag_dir, plan, decl, fetch)
    _bag_info(bag_dir, plan, decl, pending=any(e.path not in plan.files for e in fetch))
    return plan


def _scan(bag_dir: Path, plan: _Plan) -> set[str]:
    """Every directory entry of the bag, by lstat: regular files kept, the rest judged."""
    report = plan.report
    dirs: set[str] = set()
    root = os.fspath(bag_dir)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = list(it)
        except OSError as exc:
            report.error(
                "directory-unreadable", f"cannot list directory: {exc.strerror}", rel_dir or "."
            )
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                report.error(
                    "name-not-utf8",
                    "this name is not valid UTF-8, so no manifest can name it",
                    shown,
                )
                continue
            if entry.is_symlink():
                _symlink(bag_dir, rel, entry.path, report)
            elif entry.is_dir(follow_symlinks=False):
                dirs.add(rel)
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                plan.files[rel] = _DiskFile(rel, st.st_size, st.st_dev, st.st_ino)
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
                kind = (
                    "named pipe (FIFO)"
                    if stat.S_ISFIFO(mode)
                    else "character device"
                    if stat.S_ISCHR(mode)
                    else "block device"
                    if stat.S_ISBLK(mode)
                    else "socket"
                    if stat.S_ISSOCK(mode)
                    else "special file"
                )
                report.error(
                    "special-file",
                    f"is a {kind}; a bag may hold only regular files and "
                    "directories, and it was not opened",
                    rel,
                )
    return dirs


def _symlink(bag_dir: Path, rel: str, full: str, report: ValidationReport) -> None:
    # readlink reads the link itself, never its target.
    target = os.readlink(full)
    resolved = os.path.normpath(os.path.join(os.path.dirname(full), target))
    inside = os.path.commonpath(
        [os.path.abspath(bag_dir), os.path.abspath(resolved)]
    ) == os.path.abspath(bag_dir)
    if inside:
        report.error(
            "symlink",
            f"is a symbolic link (to {target!r}); links are refused "
            "because the archive keeps bytes, not references",
            rel,
        )
    else:
        report.error(
            "symlink-escapes",
            f"is a symbolic link pointing outside the bag (to {target!r}); it was not followed",
            rel,
        )


def _read(bag_dir: Path, rel: str, plan: _Plan) -> bytes | None:
    """A tag file's bytes, opened without following links; None (with a problem) if unreadable."""
    try:
        fd = os.open(bag_dir / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(0, "not a regular file")
            return handle.read()
    except OSError as exc:
        plan.report.error("file-unreadable", f"cannot be read: {exc.strerror}", rel)
        return None


def _decode(raw: bytes, rel: str, decl: BagDeclaration, plan: _Plan) -> str | None:
    try:
        text, had_bom = decode_tag_text(raw, decl.encoding)
    except UnicodeDecodeError as exc:
        plan.report.error(
            "tag-file-encoding",
            f"is not valid {decl.encoding} as bagit.txt declares: {exc.reason}",
            rel,
            "2.1.1",
        )
        return None
    if had_bom:
        plan.report.warn("tag-file-bom", "starts with a UTF-8 byte-order mark", rel, "2.1.1")
    return text


def _declaration(bag_dir: Path, plan: _Plan) -> BagDeclaration | None:
    if "bagit.txt" not in plan.files:
        plan.report.error(
            "bagit-txt-missing", "the bag declaration bagit.txt is missing", "bagit.txt", "2.1.1"
        )
        return None
    raw = _read(bag_dir, "bagit.txt", plan)
    if raw is None:
        return None
    declaration, problems = parse_bag_declaration(raw)
    plan.report.problems.extend(problems)
    return declaration


def _names(plan: _Plan) -> None:
    """Names that one filesystem keeps apart and another merges.

    Every path prefix counts, not only whole file paths: ``data/café/x`` (NFC)
    and ``data/café/y`` (NFD) are two folders here and one on a normalising
    filesystem (macOS, many NAS shares), and a file ``data/café`` beside a
    folder ``data/café/`` in the other form cannot be restored there at all.
    A clash is reported once, at the shallowest path where it happens.
    """
    kinds = _path_kinds(plan.files)
    by_nfc: dict[str, list[str]] = defaultdict(list)
    for path in kinds:
        by_nfc[unicodedata.normalize("NFC", path)].append(path)
    clashing = {key for key, paths in by_nfc.items() if len(paths) > 1}
    by_fold: dict[str, list[str]] = defaultdict(list)
    for key in sorted(by_nfc):
        if _below_clash(key, clashing):
            continue
        if key in clashing:
            paths = sorted(by_nfc[key])
            for path in paths:
                others = ", ".join(f"{kinds[o]} {ascii(o)}" for o in paths if o != path)
                plan.report.error(
                    "name-normalisation-collision",
                    f"the {kinds[path]} {ascii(path)} differs from the {others} only in "
                    "Unicode normalisation; they would become one on a normalising filesystem",
                    path,
                )
            continue
        by_fold[key.casefold()].append(key)
    folded_clashes = {fold for fold, keys in by_fold.items() if len(keys) > 1}
    for fold in sorted(folded_clashes):
        if _below_clash(fold, folded_clashes):
            continue
        keys = sorted(by_fold[fold])
        for key in keys:
            path = by_nfc[key][0]
            others = ", ".join(f"{kinds[by_nfc[o][0]]} {o!r}" for o in keys if o != key)
            plan.report.warn(
                "name-case-collision",
                f"the {kinds[path]} differs from the {others} only in letter case; they "
                "cannot both be restored onto a case-insensitive filesystem",
                path,
            )
    for rel in plan.files:
        name = rel.rsplit("/", 1)[-1]
        if rel.startswith("data/") and (name.lower() in _SYSTEM_FILES or name.startswith("._")):
            plan.report.warn(
                "system-file",
                "is a file an operating system creates by itself, probably not meant as content",
                rel,
            )


def _path_kinds(files: Iterable[str]) -> dict[str, str]:
    """Every file and every folder above one, each marked ``file`` or ``folder``."""
    kinds: dict[str, str] = {}
    for rel in files:
        kinds[rel] = "file"
        cut = rel.rfind("/")
        while cut > 0:
            folder = rel[:cut]
            if folder in kinds:
                break  # its own parents were added with it
            kinds[folder] = "folder"
            cut = rel.rfind("/", 0, cut)
    return kinds


def _below_clash(path: str, clashing: set[str]) -> bool:
    """Whether a folder above ``path`` already clashes (and was reported)."""
    cut = path.rfind("/")
    while cut > 0:
        if path[:cut] in clashing:
            return True
        cut = path.rfind("/", 0, cut)
    return False


def _fetch(bag_dir: Path, plan: _Plan, decl: BagDeclaration, check: bool) -> list[FetchEntry]:
    if "fetch.txt" not in plan.files:
        return []
    raw = _read(bag_dir, "fetch.txt", plan)
    text = _decode(raw, "fetch.txt", decl, plan) if raw is not None else None
    if text is None:
        return []
    entries, problems = parse_fetch(text)
    plan.report.problems.extend(problems)
    for entry in entries:
        if entry.path in plan.files:
            continue
        if check:
            plan.report.error(
                "fetch-file-absent",
                f"is listed in fetch.txt (line {entry.line}) to be downloaded from "
                f"{entry.url} but is not in the bag; the archive accepts only complete "
                "bags, so deposit the file itself",
                entry.path,
                "2.2.3",
            )
        else:
            plan.report.warn(
                "fetch-file-pending",
                f"is to be fetched from {entry.url} (fetch.txt line {entry.line}); "
                "it is not yet in the bag and its digest was not checked",
                entry.path,
                "2.2.3",
            )
    return entries


def _manifests(bag_dir: Path, plan: _Plan, decl: BagDeclaration, fetch: list[FetchEntry]) -> None:
    report = plan.report
    payload: dict[str, list[ManifestEntry]] = {}
    tags: dict[str, list[ManifestEntry]] = {}
    for rel in sorted(plan.files):
        if "/" in rel:
            continue
        kind = manifest_algorithm(rel)
        if kind is None:
            continue
        is_tag, algorithm = kind
        name = hashlib_name(algorithm)
        if name is None:
            report.error(
                "manifest-algorithm-unsupported",
                f"uses checksum algorithm {algorithm!r}, which this archive cannot verify",
                rel,
                "2.4",
            )
            continue
        raw = _read(bag_dir, rel, plan)
        text = _decode(raw, rel, decl, plan) if raw is not None else None
        if text is None:
            continue
        entries, problems = parse_manifest(text, rel, algorithm, digest_length(name), tag=is_tag)
        report.problems.extend(problems)
        (tags if is_tag else payload)[name] = entries
        if not is_tag:
            plan.payload_algorithms[name] = algorithm
    report.algorithms = sorted(plan.payload_algorithms.values())
    if not payload:
        report.error(
            "manifest-missing", "the bag has no payload manifest (manifest-ALG.txt)", None, "2.1.3"
        )

    fetch_missing = {e.path for e in fetch if e.path not in plan.files}
    resolver = _Resolver(plan, decl)
    payload_files = {rel for rel in plan.files if rel.startswith("data/")}
    for name, entries in payload.items():
        manifest = f"manifest-{plan.payload_algorithms[name]}.txt"
        listed = _apply_manifest(
            plan, resolver, entries, name, plan.payload_expected, decl, skip=fetch_missing
        )
        for rel in sorted(payload_files - listed):
            report.error(
                "payload-not-in-manifest",
                f"is in the payload but not listed in {manifest}; every payload file "
                "must be in every payload manifest",
                rel,
                "3",
            )
        for entry in fetch:
            if entry.path not in {e.path for e in entries}:
                report.error(
                    "fetch-not-in-manifest",
                    f"is listed in fetch.txt but not in {manifest}",
                    entry.path,
                    "2.2.3",
                )
    for name, entries in tags.items():
        _apply_manifest(plan, resolver, entries, name, plan.tag_expected, decl, skip=set())
    for rel in plan.payload_expected:
        plan.payload_names.setdefault(rel, rel)


class _Resolver:
    """Finds the file on disk a manifest path means, saying when it had to be lenient."""

    def __init__(self, plan: _Plan, decl: BagDeclaration) -> None:
        self.plan = plan
        self.decl = decl
        self.nfc: dict[str, list[str]] = defaultdict(list)
        self.fold: dict[str, list[str]] = defaultdict(list)
        for rel in plan.files:
            key = unicodedata.normalize("NFC", rel)
            self.nfc[key].append(rel)
            self.fold[key.casefold()].append(rel)

    def resolve(self, entry: ManifestEntry) -> str | None:
        files = self.plan.files
        if entry.path in files:
            return entry.path
        report = self.plan.report
        where = f"{entry.manifest} line {entry.line}"
        if (
            entry.literal != entry.path
            and entry.literal in files
            and self.decl.version_info < (1, 0)
        ):
            report.warn(
                "percent-encoding-legacy",
                f"{where} matches this file only without RFC 8493 percent-decoding "
                "(BagIt before 1.0 did not encode paths)",
                entry.literal,
                "2.1.3",
            )
            return entry.literal
        key = unicodedata.normalize("NFC", entry.path)
        if len(self.nfc.get(key, ())) == 1:
            found = self.nfc[key][0]
            report.warn(
                "path-normalisation-differs",
                f"{where} names {entry.path!r} in another Unicode normalisation form "
                "than the file on disk",
                found,
            )
            return found
        folded = self.fold.get(key.casefold(), [])
        if len(folded) == 1:
            found = folded[0]
            report.warn(
                "path-case-differs",
                f"{where} names {entry.path!r}, which exists only in another letter case",
                found,
            )
            return found
        return None


def _apply_manifest(
    plan: _Plan,
    resolver: _Resolver,
    entries: list[ManifestEntry],
    name: str,
    expected: dict[str, dict[str, list[str]]],
    decl: BagDeclaration,
    *,
    skip: set[str],
) -> set[str]:
    """Resolve one manifest's entries to files; return the files it covers."""
    report = plan.report
    by_file: dict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in entries:
        found = resolver.resolve(entry)
        if found is None:
            if entry.path in skip:
                continue  # reported by the fetch.txt check, as absent or pending
            hint = ""
            if entry.path != entry.path.rstrip() and entry.path.rstrip() in plan.files:
                hint = (
                    f"; {entry.path.rstrip()!r} exists, but the manifest's path ends in "
                    "whitespace, which is part of the name"
                )
            report.error(
                "file-missing",
                f"is listed in {entry.manifest} (line {entry.line}) but is not in the bag{hint}",
                entry.path,
                "3",
            )
            continue
        by_file[found].append(entry)
    for rel, listed in by_file.items():
        digests = sorted({e.digest for e in listed})
        if len(listed) > 1:
            lines = ", ".join(str(e.line) for e in listed)
            manifest = listed[0].manifest
            if len(digests) > 1:
                report.error(
                    "manifest-duplicate-conflict",
                    f"is listed {len(listed)} times in {manifest} (lines {lines}) "
                    "with different digests",
                    rel,
                    "2.1.3",
                )
            elif decl.version_info >= (1, 0):
                report.error(
                    "manifest-duplicate-entry",
                    f"is listed {len(listed)} times in {manifest} (lines {lines}); "
                    "BagIt 1.0 allows one line per file",
                    rel,
                    "2.1.3",
                )
            else:
                report.warn(
                    "manifest-duplicate-entry",
                    f"is listed {len(listed)} times in {manifest} (lines {lines}) "
                    "with the same digest",
                    rel,
                    "2.1.3",
                )
        expected.setdefault(rel, {})[name] = digests
        exact = [e.path for e in listed if e.path == rel]
        if expected is plan.payload_expected and not exact:
            plan.payload_names.setdefault(rel, listed[0].path)
    return set(by_file)


def _bag_info(bag_dir: Path, plan: _Plan, decl: BagDeclaration, *, pending: bool) -> None:
    rel = info_file_name(decl.version_info)
    if rel not in plan.files:
        return
    raw = _read(bag_dir, rel, plan)
    text = _decode(raw, rel, decl, plan) if raw is not None else None
    if text is None:
        return
    try:
        tags = parse_tags(text, rel)
    except bagit.BagValidationError as exc:
        plan.report.error("bag-info-malformed", str(exc), rel, "2.2.2")
        return
    values = tags.get("Payload-Oxum", [])
    if not values:
        return
    if len(values) > 1:
        plan.report.error(
            "payload-oxum-repeated", f"declares Payload-Oxum {len(values)} times", rel, "2.2.2"
        )
    oxum = parse_oxum(values[0])
    if oxum is None:
        plan.report.error(
            "payload-oxum-malformed",
            f"Payload-Oxum {values[0]!r} is not OCTETS.FILES",
            rel,
            "2.2.2",
        )
        return
    if pending:
        return  # the Oxum counts files still to be fetched
    octets = sum(f.size for r, f in plan.files.items() if r.startswith("data/"))
    count = sum(1 for r in plan.files if r.startswith("data/"))
    if (octets, count) != tuple(oxum):
        plan.report.error(
            "payload-oxum-mismatch",
            f"Payload-Oxum says {oxum.files} files and {oxum.octets} bytes, the payload has "
            f"{count} files and {octets} bytes",
            rel,
            "2.2.2",
        )


# --------------------------------------------------------------------------- digests


def _jobs(plan: _Plan, *, dest_dir: Path | None, fsync: bool = False) -> list[DigestJob]:
    jobs = []
    root = os.fspath(plan.report.bag)
    for expected, is_payload in ((plan.payload_expected, True), (plan.tag_expected, False)):
        for rel, wanted in expected.items():
            disk = plan.files[rel]
            algorithms = tuple(wanted)
            copy_to = None
            if is_payload and dest_dir is not None:
                algorithms = tuple(dict.fromkeys((*algorithms, *_STAGING_ALGORITHMS)))
                copy_to = staged_path(dest_dir, plan.payload_names[rel])
            jobs.append(
                DigestJob(
                    rel,
                    os.path.join(root, rel),
                    disk.size,
                    disk.device,
                    disk.inode,
                    wanted,
                    algorithms,
                    copy_to,
                    fsync,
                )
            )
    return jobs


def _record(plan: _Plan, results: list[DigestResult]) -> None:
    report = plan.report
    found: list[Problem] = []
    for r in results:
        rel = r.job.relpath
        report.files_hashed += 1
        report.bytes_hashed += r.size
        is_payload = rel in plan.payload_expected
        if r.error is not None:
            found.append(Problem("error", "file-unreadable", r.error, rel))
            continue
        if r.size != r.job.size:
            found.append(
                Problem(
                    "error",
                    "file-changed",
                    f"was {r.job.size} bytes when listed and {r.size} when read; "
                    "the bag changed during validation",
                    rel,
                )
            )
        for name, want, got in r.mismatched:
            manifest = ("manifest-" if is_payload else "tagmanifest-") + (
                plan.payload_algorithms.get(name, name) + ".txt"
            )
            found.append(
                Problem(
                    "error",
                    "manifest-digest-mismatch" if is_payload else "tagmanifest-digest-mismatch",
                    f"{name} digest {got} does not match {want} in {manifest}: the file is "
                    "not the one that was bagged",
                    rel,
                    "3" if is_payload else "2.2.1",
                )
            )
    report.problems.extend(sorted(found, key=lambda p: (p.file or "", p.rule, p.message)))
