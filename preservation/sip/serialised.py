"""Unpacking a serialised bag (``.tar``, ``.tar.gz``/``.tgz``, ``.zip``) without trusting it.

An archive is a program the depositor wrote for our disk: it can name files
outside the folder, plant links that later writes follow, or expand a few
kilobytes into terabytes. So this module does not call ``extractall``. It first
reads every header and refuses the archive if any member is a link or device,
names a path that is absolute or uses ``..``, needs a file to be a folder too, or
if the running declared total passes the limits (stopping at that member, so a
``.tar.gz`` bomb is not decompressed to its end just to be refused); then it
extracts member by member, counting the bytes actually written, because a header
can lie and a zip's sizes are only advisory.

The size limit is also capped by the free space of the unpack folder's
filesystem, less a reserve: a limit of 1 TiB means nothing on a disk with 40 GB
free, and a half-unpacked bag that filled the disk takes the catalogue and every
other ingest down with it.

The layout is checked on the headers too: an archive must hold one folder (or
the bag's own files, ``bagit.txt`` among them, at its top) and must not be empty.
Unpacking ``mybag/`` beside ``__MACOSX/``, or nothing at all, would only fail
later as a bag missing ``bagit.txt``, which sends the depositor looking for a
file they did send. Zip member names are read the way Info-ZIP writes them (see
``_zip_name``), because a name decoded in the wrong code page unpacks as a file
the manifest does not list, and is reported as missing.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from preservation.errors import InvalidSIPError, UnsafeArchiveError

__all__ = ["open_serialised_bag"]

_CHUNK = 1 << 20
_RESERVE_SHARE = 0.05
_RESERVE_CAP = 1 << 30
_DRIVE = re.compile(r"[A-Za-z]:")
_UTF8_NAME = 0x800  # general purpose bit 11: the header name is UTF-8
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path extra field
_LISTED_TOP_ENTRIES = 10


@dataclass(frozen=True, slots=True)
class _Member:
    parts: tuple[str, ...]
    size: int
    is_dir: bool
    mtime: float | None


def open_serialised_bag(
    archive: Path,
    workdir: Path,
    *,
    max_bytes: int,
    max_members: int,
    max_ratio: float,
    free_space_reserve: int | None = None,
) -> Path:
    """Unpack ``archive`` into ``workdir`` (new or empty) and return the bag's root folder.

    The root is ``workdir`` itself when the archive holds ``bagit.txt`` at its top,
    or the single top-level folder that RFC 8493 serialisations normally have;
    anything else (two folders, a folder beside ``__MACOSX/``, loose files) is
    refused with rule ``archive-top-level``, an archive with no members with
    ``archive-empty``, and a zip member name that is neither flagged UTF-8, nor
    valid UTF-8, nor described by an Info-ZIP Unicode Path field with
    ``archive-member-encoding`` (all InvalidSIPError). Raises UnsafeArchiveError
    (``rule`` and ``member`` in its context) when a member could escape or the
    archive would exceed ``max_bytes`` uncompressed, ``max_members`` entries or
    ``max_ratio`` uncompressed/archive size; on any failure whatever was unpacked
    is removed. The archive is only ever read.

    The byte limit is further capped at the free space of ``workdir``'s
    filesystem minus ``free_space_reserve`` bytes (default: 5% of the
    filesystem's size or 1 GiB, whichever is smaller), refused with rule
    ``archive-exceeds-free-space``. The free space is measured once, before
    unpacking; two unpacks racing for one disk can still both pass.
    """
    archive = Path(archive)
    workdir = Path(workdir)
    kind = _kind(archive)
    archive_size = os.stat(archive).st_size
    if archive_size == 0:  # else "damaged", with every decompressor tarfile tried
        raise _empty(archive)

    created = not workdir.exists()
    if not created and any(workdir.iterdir()):
        raise ValueError(f"unpack folder {workdir} is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        limits = _Limits(
            archive,
            archive_size,
            max_bytes,
            max_members,
            max_ratio,
            space=_FreeSpace.measure(workdir, free_space_reserve),
        )
        with _corrupt_as_invalid(archive):
            # Pass 1: headers only, each checked against the running declared
            # totals. Pass 2: extraction, re-checking the bytes as they are written.
            reader = _tar_members if kind == "tar" else _zip_members
            for _ in reader(archive, limits, None):
                pass
            top = limits.top_folder()
            limits.reset()
            list(reader(archive, limits, workdir))
    except BaseException:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for child in workdir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return workdir if top is None else workdir / top


@dataclass(frozen=True, slots=True)
class _FreeSpace:
    """What the unpack folder's filesystem can take, measured before the first byte."""

    folder: Path
    free: int
    reserve: int

    @classmethod
    def measure(cls, folder: Path, reserve: int | None) -> _FreeSpace:
        usage = shutil.disk_usage(folder)
        if reserve is None:
            reserve = min(int(usage.total * _RESERVE_SHARE), _RESERVE_CAP)
        return cls(folder, usage.free, max(reserve, 0))

    @property
    def usable(self) -> int:
        return max(self.free - self.reserve, 0)


class _Limits:
    """The limits, checked on running declared figures first and then on bytes written."""

    def __init__(
        self,
        archive: Path,
        archive_size: int,
        max_bytes: int,
        max_members: int,
        max_ratio: float,
        *,
        space: _FreeSpace | None = None,
    ) -> None:
        self.archive = archive
        self.archive_size = archive_size
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.max_ratio = max_ratio
        self.space = space
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.declared = 0
        self.written = 0
        # parts -> is_dir, for duplicates; files and implied folders, for clashes
        self.seen: dict[tuple[str, ...], tuple[bool, str]] = {}
        self.files: dict[tuple[str, ...], str] = {}
        self.folders: dict[tuple[str, ...], str] = {}

    def refuse(self, rule: str, message: str, member: str | None = None) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"{self.archive.name}: {message}", path=self.archive, rule=rule, member=member
        )

    def reject(self, rule: str, message: str, member: str | None = None) -> InvalidSIPError:
        """For an archive that is not unsafe, only not a bag: its layout or its names."""
        error = InvalidSIPError(f"{self.archive.name}: {message}", path=self.archive, rule=rule)
        if member is not None:
            error.context["member"] = member
        return error

    def top_folder(self) -> str | None:
        """The bag's folder from the headers seen, or None for a bag at the archive's top."""
        tops = {parts[0]: (parts[0],) in self.folders for parts in self.seen}
        if not tops:
            raise _empty(self.archive)
        if "bagit.txt" in tops and not tops["bagit.txt"]:
            return None
        if len(tops) == 1 and all(tops.values()):
            return next(iter(tops))
        names = sorted(name + "/" if is_dir else name for name, is_dir in tops.items())
        listed = ", ".join(names[:_LISTED_TOP_ENTRIES])
        if len(names) > _LISTED_TOP_ENTRIES:
            listed += f", and {len(names) - _LISTED_TOP_ENTRIES} more"
        entries = "entry" if len(names) == 1 else "entries"
        raise self.reject(
            "archive-top-level",
            f"found {len(names)} top-level {entries}: {listed}; "
            "a serialised bag must hold exactly one folder",
        )

    def member(self, name: str, size: int) -> None:
        self.count += 1
        if self.count > self.max_members:
            raise self.refuse(
                "archive-too-many-members", f"more than {self.max_members} members", name
            )
        self.declared += size
        self.check_totals(self.declared, self.count, name)

    def check_totals(self, total: int, count: int, name: str | None = None) -> None:
        if count > self.max_members:
            raise self.refuse(
                "archive-too-many-members",
                f"{count} members, the limit is {self.max_members}",
                name,
            )
        if total > self.max_bytes:
            raise self.refuse(
                "archive-too-large", f"unpacks to more than {self.max_bytes} bytes", name
            )
        if self.space is not None and total > self.space.usable:
            raise self.refuse(
                "archive-exceeds-free-space",
                f"unpacks to more than {self.space.usable} bytes, the free space of "
                f"{self.space.folder} ({self.space.free} bytes) less a reserve of "
                f"{self.space.reserve} bytes",
                name,
            )
        if total > self.max_ratio * self.archive_size:
            raise self.refuse(
                "archive-ratio",
                f"unpacks to {total} bytes from "
                f"{self.archive_size}, more than {self.max_ratio:g} times its "
                "size (a decompression bomb?)",
                name,
            )

    def wrote(self, name: str, n: int) -> None:
        self.written += n
        self.check_totals(self.written, self.count, name)

    def name(self, raw: str, is_dir: bool) -> tuple[str, ...] | None:
        """Safe path parts of a member name; None for the archive's own root entry."""
        if not raw or "\x00" in raw:
            raise self.refuse("archive-member-name", "a member has an empty or NUL name", raw)
        if raw.startswith(("/", "\\")) or _DRIVE.match(raw):
            raise self.refuse(
                "archive-member-absolute", f"member {raw!r} has an absolute path", raw
            )
        if any(p == ".." for p in re.split(r"[\\/]", raw)):
            raise self.refuse(
                "archive-member-traversal",
                f"member {raw!r} uses '..' to leave the unpack folder",
                raw,
            )
        parts = tuple(p for p in raw.split("/") if p not in ("", "."))
        if not parts:
            if is_dir:
                return None
            raise self.refuse("archive-member-name", f"member {raw!r} has no file name", raw)
        if parts in self.seen:
            was_dir, other = self.seen[parts]
            if was_dir == is_dir:
                raise self.refuse(
                    "archive-member-duplicate",
                    f"member {raw!r} appears twice; the second would overwrite the first",
                    raw,
                )
            raise self.clash(raw, parts, wants_folder=is_dir, other=other)
        self._clashes(raw, parts, is_dir)
        self.seen[parts] = (is_dir, raw)
        return parts

    def _clashes(self, raw: str, parts: tuple[str, ...], is_dir: bool) -> None:
        """Refuse a member whose path another member needs as a folder, or the reverse.

        A file ``data/x`` and a member ``data/x/y`` cannot both be unpacked: one of
        them would fail with an OS error halfway through, or worse, depending on
        the order, silently become something the depositor did not send.
        """
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            if prefix in self.files:
                raise self.clash(raw, prefix, wants_folder=True, other=self.files[prefix])
            self.folders.setdefault(prefix, raw)
        if is_dir:
            self.folders.setdefault(parts, raw)
        else:
            if parts in self.folders:
                raise self.clash(raw, parts, wants_folder=False, other=self.folders[parts])
            self.files[parts] = raw

    def clash(
        self, raw: str, path: tuple[str, ...], *, wants_folder: bool, other: str
    ) -> UnsafeArchiveError:
        want, have = ("folder", "file") if wants_folder else ("file", "folder")
        return self.refuse(
            "archive-member-clash",
            f"member {raw!r} needs {'/'.join(path)!r} to be a {want}, but member "
            f"{other!r} makes it a {have}; both cannot be unpacked",
            raw,
        )


def _empty(archive: Path) -> InvalidSIPError:
    return InvalidSIPError(
        f"{archive.name}: the archive is empty", path=archive, rule="archive-empty"
    )


def _kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    raise UnsafeArchiveError(
        f"{archive.name}: only .tar, .tar.gz, .tgz and .zip serialisations are accepted",
        path=archive,
        rule="archive-format-unsupported",
    )


@contextmanager
def _corrupt_as_invalid(archive: Path) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InvalidSIPError(
            f"{archive.name} is damaged or not the archive its name says: {exc}",
            path=archive,
            rule="archive-corrupt",
        ) from exc


def _tar_members(archive: Path, limits: _Limits, dest: Path | None) -> Iterator[_Member]:
    with tarfile.open(archive, "r:*") as tf:
        while True:
            info = tf.next()
            if info is None:
                return
            tf.members = []  # type: ignore[attr-defined]  # else every header is kept
            if info.issym() or info.islnk():
                raise limits.refuse(
                    "archive-member-link",
                    f"member {info.name!r} is a "
                    f"{'symbolic' if info.issym() else 'hard'} link to "
                    f"{info.linkname!r}; links are refused",
                    info.name,
                )
            if info.issparse() or not (info.isreg() or info.isdir()):
                raise limits.refuse(
                    "archive-member-special",
                    f"member {info.name!r} is not a regular file or directory",
                    info.name,
                )
            parts = limits.name(info.name, info.isdir())
            limits.member(info.name, info.size if info.isreg() else 0)
            if parts is None:
                continue
            member = _Member(parts, info.size if info.isreg() else 0, info.isdir(), info.mtime)
            if dest is not None:
                source = tf.extractfile(info) if info.isreg() else None
                _extract(member, source, dest, limits, info.name)
            yield member


def _zip_members(archive: Path, limits: _Limits, dest: Path | None) -> Iterator[_Member]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise limits.refuse(
                "archive-too-many-members",
                f"{len(infos)} members, the limit is {limits.max_members}",
            )
        for info in infos:
            name = _zip_name(info, limits)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise limits.refuse(
                    "archive-member-link",
                    f"member {name!r} is a symbolic link; links are refused",
                    name,
                )
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise limits.refuse(
                    "archive-member-special",
                    f"member {name!r} is not a regular file or directory",
                    name,
                )
            if info.flag_bits & 0x1:
                raise limits.refuse(
                    "archive-member-encrypted",
                    f"member {name!r} is encrypted",
                    name,
                )
            parts = limits.name(name, info.is_dir())
            limits.member(name, 0 if info.is_dir() else info.file_size)
            if parts is None:
                continue
            mtime = None
            member = _Member(parts, 0 if info.is_dir() else info.file_size, info.is_dir(), mtime)
            if dest is not None:
                try:
                    source = None if info.is_dir() else zf.open(info)
                except NotImplementedError as exc:  # compression method zipfile lacks
                    raise limits.refuse(
                        "archive-member-compression",
                        f"member {name!r} uses a compression method that "
                        f"cannot be read here ({exc})",
                        name,
                    ) from exc
                _extract(member, source, dest, limits, name)
            yield member


def _zip_name(info: zipfile.ZipInfo, limits: _Limits) -> str:
    """The member's name as its author meant it, not as zipfile guessed it.

    Without general purpose bit 11 zipfile decodes a name as cp437, the code page
    of DOS; almost no archive today is cp437. Info-ZIP writes the name in the
    local code page and the UTF-8 name in a Unicode Path extra field, whose CRC
    of the header name proves it still describes that name (a tool that renamed
    the member without knowing the field leaves a stale one, to be ignored). Many
    other tools write UTF-8 and forget the flag. A name that is none of these is
    refused rather than guessed: a guess that is wrong unpacks a file the
    manifest does not list, and the curator is told the depositor's file is
    missing.
    """
    if info.flag_bits & _UTF8_NAME:
        return info.orig_filename  # the name before zipfile cuts it at a NUL
    raw = info.orig_filename.encode("cp437")  # cp437 maps every byte: undoes zipfile's decode
    unicode_path = _unicode_path(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "backslashreplace")
        raise limits.reject(
            "archive-member-encoding",
            f"member names are not UTF-8 and no Unicode Path field (0x7075) was found "
            f"for member '{shown}'; re-create the zip with UTF-8 names",
            shown,
        ) from None


def _unicode_path(extra: bytes, raw: bytes) -> str | None:
    """The UTF-8 name of an Info-ZIP Unicode Path field that matches ``raw``, if there is one."""
    while len(extra) >= 4:
        kind, size = int.from_bytes(extra[:2], "little"), int.from_bytes(extra[2:4], "little")
        body, extra = extra[4 : 4 + size], extra[4 + size :]
        if kind != _UNICODE_PATH or len(body) < 5 or body[0] != 1:
            continue
        if int.from_bytes(body[1:5], "little") != zlib.crc32(raw):
            continue
        try:
            return body[5:].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _extract(
    member: _Member, source: IO[bytes] | None, dest: Path, limits: _Limits, raw: str
) -> None:
    """Write one member below ``dest``; any OS failure becomes a refusal naming the member.

    The header pass should leave nothing for the OS to object to, but a name too
    long for this filesystem, a full disk or a permission can still fail a write,
    and the depositor deserves a rejection report rather than a traceback.
    """
    try:
        _write_member(member, source, dest, limits, raw)
    except gzip.BadGzipFile:
        raise  # damage in the archive itself: _corrupt_as_invalid reports it
    except OSError as exc:
        raise limits.refuse(
            "archive-member-unwritable",
            f"member {raw!r} could not be unpacked: {exc.strerror or exc}",
            raw,
        ) from exc


def _write_member(
    member: _Member, source: IO[bytes] | None, dest: Path, limits: _Limits, raw: str
) -> None:
    """Write one member below ``dest``, counting bytes; never through a link, never over a file."""
    target = os.path.join(os.fspath(dest), *member.parts)
    if member.is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError as exc:
        raise limits.refuse(
            "archive-member-duplicate", f"member {raw!r} would overwrite another member", raw
        ) from exc
    written = 0
    with os.fdopen(fd, "wb") as out:
        if source is not None:
            with source:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > member.size:
                        raise limits.refuse(
                            "archive-member-size",
                            f"member {raw!r} holds "
                            f"more than the {member.size} bytes its header "
                            "declares",
                            raw,
                        )
                    limits.wrote(raw, len(chunk))
                    out.write(chunk)
    if member.mtime is not None:
        os.utime(target, (member.mtime, member.mtime))
