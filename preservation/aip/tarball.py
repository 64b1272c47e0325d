"""One AIP version as one uncompressed POSIX pax tar, and its safe unpacking.

Why this exact shape (docs/architecture.md, §4 The AIP and §7 Invariants):

* **pax (POSIX.1-2001), uncompressed.** Any ``tar`` of the last twenty years,
  and surely of the next fifty, reads it; pax headers carry UTF-8 file names
  and sizes above 8 GiB; and a bad block on tape damages one file, not the
  rest of a compressed stream.
* **Deterministic.** Entries sorted, owner 0/0 with no user names, modes
  0644/0755, whole-second mtimes: the same bag gives the same bytes, so its
  sha256 identifies the content, and the two sites' copies can be compared by
  digest alone.
* **Tag files first.** ``bagit.txt``, ``bag-info.txt`` and the manifests lead
  the archive, so a reader streaming from tape learns the expected digests
  before the payload arrives and can verify in one pass.
* **Digest while writing.** The sha256 recorded for tape verification is
  computed from the very bytes handed to the file, not by reading the tar back,
  which would cost a second full read of the largest object in the pipeline.
* **Verify while reading.** Each payload file's sha256 is checked as it is
  copied in, against the digest staging recorded: the manifests were written
  from those recorded digests, so a staged file damaged since (a power cut
  before write-back, a disk fault, a hand in the staging area) must stop the
  package rather than travel to tape under a manifest that no longer fits it.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from preservation.aip.layout import PackageEntry, walk_package
from preservation.errors import FixityMismatchError, MetadataError, UnsafeArchiveError

__all__ = ["TarSummary", "serialise_aip", "unpack_aip"]

COPY_BUFFER = 1 << 20
#: ``filter="data"`` arrived in 3.11.4 (PEP 706); older interpreters rely on our checks alone.
HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


@dataclass(frozen=True)
class TarSummary:
    path: Path
    size: int
    sha256: str


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        # tarfile hands over bytes or memoryviews; both hash and write without copying.
        self._raw.write(data)
        self._sha256.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _HashingReader:
    """A read-only file object that hashes what is read from it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._sha256.update(data)
        return data

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def _ordered(aip_dir: Path) -> list[PackageEntry]:
    """Top-level tag files first (sorted), then the ``data/`` tree (sorted, depth first)."""
    entries = list(walk_package(aip_dir))
    top_files = [e for e in entries if "/" not in e.relpath and not e.is_dir]
    rest = [e for e in entries if not ("/" not in e.relpath and not e.is_dir)]
    return top_files + rest


def _tarinfo(name: str, entry: PackageEntry | None, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    if entry is None or entry.is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o644
        info.size = entry.size
    return info


def serialise_aip(
    aip_dir: Path,
    tar_path: Path,
    *,
    arcname: str,
    mtime: int | None = None,
    expected_sha256: Mapping[str, str] | None = None,
) -> TarSummary:
    """Write the bag in ``aip_dir`` to ``tar_path`` under the top folder ``arcname``.

    ``arcname`` is conventionally ``<aip-uuid>.v<N>``, so an extracted version
    names itself. Entry mtimes come from the files, or all equal ``mtime`` when
    given (what makes two builds of the same AIP byte-identical). The tar is
    written under a temporary name and renamed into place only when complete
    and flushed to disk, so a crash never leaves a plausible-looking half tar.

    ``expected_sha256`` maps bag-relative paths to the sha256 each file must
    still have; a file that differs raises :class:`FixityMismatchError` naming
    it, and no tar is left behind.
    """
    aip_dir = Path(aip_dir)
    tar_path = Path(tar_path)
    if not arcname or "/" in arcname or arcname in (".", ".."):
        raise ValueError(f"arcname {arcname!r} must be one plain folder name")
    if not (aip_dir / "bagit.txt").is_file():
        raise MetadataError(
            f"{aip_dir} is not a bag (no bagit.txt); run write_aip_bag first", path=aip_dir
        )
    entries = _ordered(aip_dir)  # walk (and refuse links) before creating anything

    tar_path.parent.mkdir(parents=True, exist_ok=True)
    partial = tar_path.with_name(f".{tar_path.name}.partial")
    root_mtime = mtime if mtime is not None else int(aip_dir.stat().st_mtime)
    try:
        with open(partial, "wb") as raw:
            out = _HashingWriter(raw)
            with tarfile.TarFile(
                fileobj=out,  # type: ignore[arg-type]  # write/tell is all "w" mode needs
                mode="w",
                format=tarfile.PAX_FORMAT,
                encoding="utf-8",
                copybufsize=COPY_BUFFER,
            ) as tar:
                tar.addfile(_tarinfo(arcname, None, root_mtime))
                for entry in entries:
                    info = _tarinfo(
                        f"{arcname}/{entry.relpath}",
                        entry,
                        mtime if mtime is not None else entry.mtime,
                    )
                    if entry.is_dir:
                        tar.addfile(info)
                    else:
                        want = (expected_sha256 or {}).get(entry.relpath)
                        with open(entry.path, "rb") as fh:
                            if want is None:
                                tar.addfile(info, fh)
                                continue
                            reader = _HashingReader(fh)
                            tar.addfile(info, reader)
                        if reader.hexdigest() != want:
                            raise FixityMismatchError(
                                f"{entry.relpath}: staged copy no longer matches the digest "
                                f"recorded at staging (sha256 {reader.hexdigest()}, expected "
                                f"{want}); not packaged",
                                path=entry.path,
                                rule="staged-file-changed",
                            )
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, tar_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(tar_path.parent)
    return TarSummary(path=tar_path, size=out.size, sha256=out.hexdigest())


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_members(members: list[tarfile.TarInfo], tar_path: Path) -> str:
    """Refuse anything but plain files and folders under one top folder; return it."""
    tops: set[str] = set()
    seen: set[str] = set()
    for m in members:
        name = m.name
        parts = PurePosixPath(name).parts
        problem = None
        if not (m.isreg() or m.isdir()):
            problem = "is a link or special file"
        elif name.startswith("/") or "\\" in name or not parts:
            problem = "has an absolute or non-POSIX path"
        elif any(p in ("..", ".") for p in name.rstrip("/").split("/")):
            problem = "has a '.' or '..' part"
        elif name.rstrip("/") in seen:
            problem = "appears twice (a later copy would silently replace the first)"
        if problem:
            raise UnsafeArchiveError(
                f"{tar_path.name}: member {name!r} {problem}; refusing to unpack",
                path=tar_path,
                member=name,
            )
        seen.add(name.rstrip("/"))
        tops.add(parts[0])
    if len(tops) != 1:
        raise UnsafeArchiveError(
            f"{tar_path.name} must hold exactly one top folder, found {sorted(tops)}",
            path=tar_path,
        )
    return tops.pop()


def unpack_aip(tar_path: Path, dest: Path) -> Path:
    """Extract an AIP tar into ``dest``; return the bag folder (``dest/<arcname>``).

    Every member is checked before any byte is written: only regular files and
    folders, relative paths without ``..``, no duplicates, one top folder that
    does not exist yet. Where available, tarfile's ``data`` filter (PEP 706)
    adds its own checks and drops modes a tape should never grant.
    """
    tar_path = Path(tar_path)
    dest = Path(dest)
    try:
        tar = tarfile.open(tar_path, mode="r:")  # uncompressed only, as we write them
    except tarfile.TarError as err:
        raise UnsafeArchiveError(
            f"{tar_path.name} is not an uncompressed tar: {err}", path=tar_path
        ) from err
    with tar:
        members = tar.getmembers()
        top = _check_members(members, tar_path)
        target = dest / top
        if target.exists():
            raise UnsafeArchiveError(
                f"{target} already exists; refusing to unpack over it", path=target
            )
        dest.mkdir(parents=True, exist_ok=True)
        if HAS_DATA_FILTER:
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(dest, members=members)
    return target
