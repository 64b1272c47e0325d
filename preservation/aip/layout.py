"""Where things go inside one AIP version's bag (docs/architecture.md, §4 The AIP).

The folder structure is the E-ARK Common Specification (CSIP) inside a BagIt 1.0
bag, because European archives already know how to read it and because it lets
a future reader find the METS, the originals and the schemas by name alone::

    <aip_dir>/bagit.txt, bag-info.txt, manifest-*.txt, tagmanifest-*.txt
    <aip_dir>/data/METS.xml                            root METS
    <aip_dir>/data/metadata/descriptive/dc.xml         bag-info as Dublin Core
    <aip_dir>/data/metadata/preservation/premis.xml    package-level PREMIS (and tool output)
    <aip_dir>/data/representations/<rep>/METS.xml      representation METS
    <aip_dir>/data/representations/<rep>/data/...      the files, submitter's paths kept
    <aip_dir>/data/submission/                         the SIP's tag files, as received
    <aip_dir>/data/schemas/                            the XSDs the METS documents use

Every module that reads or writes an AIP asks :class:`AIPLayout` for a path
instead of joining strings, so that the structure is defined once. The walker
:func:`walk_package` is likewise the single definition of what may be inside a
package at all: regular files and folders, nothing that points elsewhere.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from preservation.errors import ConfigurationError, InvalidSIPError, UnsafeArchiveError

__all__ = [
    "DEFAULT_REPRESENTATION",
    "AIPLayout",
    "PackageEntry",
    "copy_schemas",
    "copy_submission",
    "walk_package",
]

#: The originals' representation; migrations add rep2, rep3... in later versions.
DEFAULT_REPRESENTATION = "rep1"


def _safe_relpath(relpath: str, *, what: str) -> PurePosixPath:
    """A relative POSIX path that cannot leave the folder it is joined to."""
    pure = PurePosixPath(relpath)
    if not relpath or pure.is_absolute() or "\\" in relpath or relpath.startswith("~"):
        raise UnsafeArchiveError(f"{what} {relpath!r} is not a plain relative path", path=relpath)
    if any(part in ("", ".", "..") for part in relpath.split("/")):
        raise UnsafeArchiveError(f"{what} {relpath!r} has an empty, '.' or '..' part", path=relpath)
    return pure


@dataclass(frozen=True)
class AIPLayout:
    """The paths of one AIP version being built in ``root`` (the bag's top folder).

    ``representation`` names the representation this version adds: ``rep1``
    for the originals at ingest, ``rep2``... for migrations.
    """

    root: Path
    representation: str = DEFAULT_REPRESENTATION

    def __post_init__(self) -> None:
        name = self.representation
        if not name or "/" in name or name in (".", "..") or name != name.strip():
            raise ValueError(f"representation name {name!r} must be one plain folder name")
        object.__setattr__(self, "root", Path(self.root))

    # -- the bag --------------------------------------------------------------------------

    @property
    def payload(self) -> Path:
        """The bag's ``data/`` folder: everything the manifests cover."""
        return self.root / "data"

    @property
    def root_mets(self) -> Path:
        return self.payload / "METS.xml"

    @property
    def metadata(self) -> Path:
        return self.payload / "metadata"

    @property
    def descriptive(self) -> Path:
        return self.metadata / "descriptive"

    @property
    def preservation(self) -> Path:
        return self.metadata / "preservation"

    @property
    def dc_record(self) -> Path:
        """The package's Dublin Core record (bag-info mapped to DC, ``oai_dc``)."""
        return self.descriptive / "dc.xml"

    @property
    def premis_record(self) -> Path:
        """The package-level PREMIS: the AIP's objects, events and agents."""
        return self.preservation / "premis.xml"

    @property
    def representations(self) -> Path:
        return self.payload / "representations"

    @property
    def representation_dir(self) -> Path:
        return self.representations / self.representation

    @property
    def representation_mets(self) -> Path:
        return self.representation_dir / "METS.xml"

    @property
    def representation_data(self) -> Path:
        """Where this representation's files go, under the submitter's own paths."""
        return self.representation_dir / "data"

    @property
    def submission(self) -> Path:
        return self.payload / "submission"

    @property
    def schemas(self) -> Path:
        return self.payload / "schemas"

    # -- mapping submitter paths ---------------------------------------------------------

    def original(self, relpath: str) -> Path:
        """Where a file goes, given its path relative to the SIP's ``data/`` folder.

        Refuses paths that could land outside the representation, so that a
        hostile manifest entry can never make staging write elsewhere.
        """
        return self.representation_data.joinpath(*_safe_relpath(relpath, what="payload path").parts)

    def original_bag_path(self, relpath: str) -> str:
        """The bag-relative manifest path of an original (the key of ``known_digests``)."""
        rel = _safe_relpath(relpath, what="payload path")
        return f"data/representations/{self.representation}/data/{rel.as_posix()}"

    def bag_path(self, path: Path) -> str:
        """The bag-relative POSIX path of a file inside the bag, as manifests spell it."""
        return Path(path).relative_to(self.root).as_posix()

    def create(self) -> AIPLayout:
        """Make every CSIP folder (idempotent), so writers never need ``mkdir``."""
        for folder in (
            self.descriptive,
            self.preservation,
            self.representation_data,
            self.submission,
            self.schemas,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class PackageEntry:
    """One regular file or folder in a package, found by :func:`walk_package`."""

    relpath: str  # POSIX, relative to the walked root
    path: Path
    is_dir: bool
    size: int
    mtime: int


def walk_package(root: Path, *, skip: Collection[str] = ()) -> Iterator[PackageEntry]:
    """Every folder and regular file under ``root``, depth first, sorted by name.

    ``skip`` names top-level entries not to enter (a SIP's ``data/`` when only
    its tag files are wanted), so large payloads are not walked for nothing.

    Sorted by code point, not by filesystem order, so manifests and tars come
    out identical on every machine. Symlinks, devices, sockets and FIFOs are
    refused: an AIP holds bytes, never a pointer to bytes somewhere else, and a
    tar of a symlink would not preserve what it pointed to.
    """
    root = Path(root)

    def walk(folder: Path, prefix: str) -> Iterator[PackageEntry]:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not prefix and entry.name in skip:
                continue
            relpath = f"{prefix}{entry.name}"
            try:
                relpath.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidSIPError(
                    f"file name {relpath!r} is not valid UTF-8; BagIt manifests and pax "
                    "headers need UTF-8 names",
                    path=os.fsdecode(os.path.join(folder, entry.name)),
                ) from None
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                yield PackageEntry(relpath, Path(entry.path), True, 0, int(st.st_mtime))
                yield from walk(Path(entry.path), relpath + "/")
            elif stat.S_ISREG(st.st_mode):
                yield PackageEntry(relpath, Path(entry.path), False, st.st_size, int(st.st_mtime))
            else:
                kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                raise UnsafeArchiveError(
                    f"{relpath} is a {kind}; a package may hold only regular files and folders",
                    path=entry.path,
                )

    yield from walk(root, "")


def _copy_file(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest, follow_symlinks=False)  # keep mtime: tars reflect the original


def copy_submission(sip_bag_dir: Path, layout: AIPLayout) -> list[str]:
    """Keep the SIP's tag files (bagit.txt, bag-info.txt, manifests...) as received.

    Everything at the top of the submitted bag except its ``data/`` folder is
    copied, tag folders included: the submitter's own manifests are the
    evidence that what we stored is what they sent. Returns bag-relative paths.
    """
    sip_bag_dir = Path(sip_bag_dir)
    copied = []
    for entry in walk_package(sip_bag_dir, skip={"data"}):
        if entry.is_dir:
            continue
        dest = layout.submission.joinpath(*entry.relpath.split("/"))
        _copy_file(entry.path, dest)
        copied.append(layout.bag_path(dest))
    return copied


def copy_schemas(schemas_dir: Path, layout: AIPLayout) -> list[str]:
    """Copy the project's XSDs so the package explains itself without the internet.

    Sub-folders are kept, so ``schemaLocation`` values relative to one schema
    still resolve inside the package. Returns bag-relative paths.
    """
    schemas_dir = Path(schemas_dir)
    xsds = [e for e in walk_package(schemas_dir) if not e.is_dir and e.relpath.endswith(".xsd")]
    if not xsds:
        raise ConfigurationError(
            f"no XML schemas (*.xsd) found in {schemas_dir}; an AIP must carry the schemas "
            "its METS uses",
            path=schemas_dir,
        )
    copied = []
    for entry in xsds:
        dest = layout.schemas.joinpath(*entry.relpath.split("/"))
        _copy_file(entry.path, dest)
        copied.append(layout.bag_path(dest))
    return copied
