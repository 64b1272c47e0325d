"""Rebuild the whole of AIP version N from its forward delta and the earlier versions it names.

Version N's tar holds only what N added, and a root METS that names, for
everything else, the earlier version holding it (a representation by its
METS, in ``../../<aip>.vK/data/representations/<rep>/METS.xml``; any other
file in the "Previous versions" file group). Recovery unpacks vN, asks its
METS which earlier versions it needs, unpacks each of those once, and moves
the named files into vN's folder. The result is the complete tree of
version N as one BagIt bag: the payload files are the bytes from tape, and
the manifests are the tapes' own lines for those files (so nothing is
hashed again); only ``Payload-Oxum`` and the tag manifests are rewritten,
because the payload is now larger than vN's tar alone.

What a METS read from tape names is untrusted (docs/architecture.md §9): a
path that could leave the bag is refused, as is one that is missing from the
version said to hold it, or that vN already holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from preservation.aip.bag import (
    ALGORITHMS,
    decode_manifest_path,
    encode_manifest_path,
    hash_file,
)
from preservation.aip.layout import _safe_relpath, walk_package
from preservation.errors import MetadataError

__all__ = ["carry_over", "earlier_files", "read_manifests", "rewrite_tag_files"]


def earlier_files(bag: Path) -> dict[int, list[str]]:
    """The files of earlier versions that version N's root METS names, by version.

    Paths are relative to ``data/``; a representation is its whole folder
    (``representations/rep1``: its METS and its files). Empty for a version
    that holds everything itself (version 1).
    """
    from preservation.metadata.reader import read_mets

    parsed = read_mets(Path(bag) / "data" / "METS.xml")
    number = parsed.package.version
    wanted: dict[int, list[str]] = {}
    for rep in parsed.representations:
        if rep.version < number:
            wanted.setdefault(rep.version, []).append(f"representations/{rep.name}")
    for version, path in parsed.previous_versions:
        _safe_relpath(path, what="previous-version file")
        wanted.setdefault(version, []).append(path)
    for version, paths in wanted.items():
        if not 1 <= version < number:
            raise MetadataError(
                f"version {number}'s METS names version {version} for {paths[0]!r}; "
                f"only versions 1 to {number - 1} can hold its files",
                path=bag,
            )
    return wanted


def read_manifests(bag: Path) -> dict[str, dict[str, str]]:
    """``data/<path> -> {algorithm: digest}`` from a bag's payload manifests."""
    out: dict[str, dict[str, str]] = {}
    for algorithm in ALGORITHMS:
        manifest = Path(bag) / f"manifest-{algorithm}.txt"
        if not manifest.is_file():
            continue
        for line in manifest.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            digest, _, path = line.partition(" ")
            out.setdefault(decode_manifest_path(path.lstrip(" ")), {})[algorithm] = digest.lower()
    return out


def carry_over(earlier: Path, bag: Path, paths: list[str]) -> dict[str, dict[str, str]]:
    """Move the named files or folders of an unpacked earlier version into ``bag``.

    Returns the earlier version's manifest lines for every file moved, for
    :func:`rewrite_tag_files`. A rename, not a copy: both folders are on the
    same file system (recovery unpacks them side by side).
    """
    digests = read_manifests(earlier)
    moved: dict[str, dict[str, str]] = {}
    for path in paths:
        relpath = _safe_relpath(path, what="file of an earlier version").as_posix()
        source = Path(earlier) / "data" / relpath
        target = Path(bag) / "data" / relpath
        if not (source.exists() and not source.is_symlink()):
            raise MetadataError(
                f"{Path(earlier).name} has no data/{relpath}, which {Path(bag).name}'s METS "
                "says it holds",
                path=source,
            )
        if target.exists() or target.is_symlink():
            raise MetadataError(
                f"{Path(bag).name} holds data/{relpath} itself, and its METS also names it "
                f"in {Path(earlier).name}",
                path=target,
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        prefix = f"data/{relpath}"
        moved.update(
            {k: v for k, v in digests.items() if k == prefix or k.startswith(prefix + "/")}
        )
    return moved


def rewrite_tag_files(bag: Path, carried: Mapping[str, Mapping[str, str]]) -> None:
    """Make ``bag`` (version N's own bag plus what was carried in) one valid bag again.

    The manifests become vN's lines plus ``carried``; a payload file neither
    names (there should be none) is hashed here rather than left out.
    ``Payload-Oxum`` is recounted; every other ``bag-info.txt`` line stays
    as it was on tape. The tag manifests are written last.
    """
    bag = Path(bag)
    digests = read_manifests(bag) | {k: dict(v) for k, v in carried.items()}
    files = {f"data/{e.relpath}": e for e in walk_package(bag / "data") if not e.is_dir}
    for rel, entry in files.items():
        if set(digests.get(rel, {})) != set(ALGORITHMS):
            digests[rel] = hash_file(entry.path)
    digests = {rel: d for rel, d in digests.items() if rel in files}
    tag_names = ["bagit.txt", "bag-info.txt"]
    for algorithm in ALGORITHMS:
        lines = [f"{digests[p][algorithm]}  {encode_manifest_path(p)}\n" for p in sorted(digests)]
        _write(bag / f"manifest-{algorithm}.txt", "".join(lines).encode("utf-8"))
        tag_names.append(f"manifest-{algorithm}.txt")
    info = bag / "bag-info.txt"
    oxum = f"Payload-Oxum: {sum(e.size for e in files.values())}.{len(files)}"
    lines = info.read_text(encoding="utf-8").splitlines() if info.is_file() else []
    lines = [oxum if line.startswith("Payload-Oxum:") else line for line in lines]
    if oxum not in lines:
        lines.append(oxum)
    _write(info, "".join(line + "\n" for line in lines).encode("utf-8"))
    for algorithm in ALGORITHMS:
        lines = [
            f"{hash_file(bag / name)[algorithm]}  {name}\n"
            for name in sorted(tag_names)
            if (bag / name).is_file()
        ]
        _write(bag / f"tagmanifest-{algorithm}.txt", "".join(lines).encode("utf-8"))


def _write(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)
