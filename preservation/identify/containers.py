"""Container checks that fido's own container signatures cannot make: SIARD 2.1 and 2.2.

fido 1.6.1 ships ``container-signature-20200121.xml``, which predates SIARD
2.2 (fmt/1777) altogether, and whose SIARD 2.1 signature (fmt/1196) is the
bare path ``header/siardversion/2.1/``: fido's ``ZipPackage`` only looks at
file entries, so an empty folder never matches. Both answer "ZIP Format"
(x-fmt/263). What tells a SIARD archive apart is in the zip's central
directory, the listing at its end: the empty folder ``header/siardversion/
<version>/`` beside ``header/metadata.xml`` (SIARD 2.2, P_4.2-2 and 4.2-5).

So this check reads the central directory, never the archive's content, and
only the bytes of it that matter: the end-of-central-directory record (ZIP64
too), then the listing in 1 MiB pieces, searched for the two names with
``bytes.find`` (C speed; a listing of a million LOB files is some 90 MB and
is scanned in tens of milliseconds, where ``zipfile`` would build a million
``ZipInfo`` objects). A hit counts only where it is a name: the 46-byte
central file header before it, with the name length that ends it.

Where no version folder is there but ``header/metadata.xml`` is, the head of
that file says which SIARD it claims (the 1.0 and 2.0 namespaces, or the 2.x
``version`` attribute); that case is rare enough to go through ``zipfile``.

``FidoEngine`` runs it in the worker processes, on the files fido calls a
plain ZIP or could not identify by signature at all, so it costs nothing on
any other file and needs no process of its own.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["SIARD_PUIDS", "ContainerMatch", "has_zip_end", "siard_container", "zip_listing_found"]

#: SIARD version (the folder name under ``header/siardversion/``) -> PRONOM id.
SIARD_PUIDS = {"2.2": "fmt/1777", "2.1": "fmt/1196", "2.0": "fmt/995", "1.0": "fmt/161"}

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_CENTRAL_SIZE = 46
_MAX_COMMENT = 0xFFFF
_CHUNK = 1 << 20
#: Bytes a piece shares with the next, so a header split between two is seen whole.
_OVERLAP = 512

_VERSION_FOLDER = b"header/siardversion/"
_METADATA = b"header/metadata.xml"
_FOLDER_NAME = re.compile(rb"header/siardversion/(\d+\.\d+)/")
#: How much of metadata.xml is read to see which SIARD it claims.
_HEAD = 2048
_NAMESPACES = (
    (
        re.compile(rb'xmlns(?::\w+)?="http://www\.bar\.admin\.ch/xmlns/siard/1\.0/metadata\.xsd"'),
        "1.0",
    ),
    (
        re.compile(rb'xmlns(?::\w+)?="http://www\.bar\.admin\.ch/xmlns/siard/2\.0/metadata\.xsd"'),
        "2.0",
    ),
)
_SIARD2_NS = re.compile(rb'xmlns(?::\w+)?="http://www\.bar\.admin\.ch/xmlns/siard/2/metadata\.xsd"')
_VERSION_ATTRIBUTE = re.compile(rb'\sversion\s*=\s*["\'](2\.[12])["\']')


@dataclass(frozen=True, slots=True)
class ContainerMatch:
    """A format found by a container check: its PUID, and what in the zip said so."""

    puid: str
    version: str
    evidence: str

    @property
    def note(self) -> str:
        """The identification's note: ``container check: header/siardversion/2.2/``."""
        return f"container check: {self.evidence}"


def has_zip_end(path: Path) -> bool:
    """True when the last 22 bytes are an end-of-central-directory record (a zip with no comment).

    The cheap test for a file that no signature named: one read of 22 bytes.
    """
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            if size < _EOCD_SIZE:
                return False
            stream.seek(size - _EOCD_SIZE)
            return stream.read(4) == _EOCD
    except OSError:
        return False


def zip_listing_found(path: Path) -> bool:
    """True when ``path`` ends with a zip's end record pointing at a listing inside the file.

    False for a truncated or otherwise cut-off zip, and for anything else.
    """
    try:
        with open(path, "rb") as stream:
            return _central_directory(stream) is not None
    except (OSError, struct.error, ValueError):
        return False


def siard_container(path: Path) -> ContainerMatch | None:
    """The SIARD version ``path`` is, by its central directory; None for anything else.

    Never raises for a bad file: a damaged or truncated zip is simply not
    recognised here (validation is where it becomes a finding).
    """
    try:
        with open(path, "rb") as stream:
            found = _central_directory(stream)
            if found is None:
                return None
            start, size = found
            folder, metadata = _find_names(stream, start, size)
    except (OSError, struct.error, ValueError):
        return None
    if folder is not None and metadata:
        version = folder.decode("ascii")
        puid = SIARD_PUIDS.get(version)
        if puid is not None:
            return ContainerMatch(puid, version, f"header/siardversion/{version}/")
    if metadata:
        return _by_metadata_head(path)
    return None


def _central_directory(stream: BinaryIO) -> tuple[int, int] | None:
    """(offset, size) of the central directory, measured back from the end record.

    Measured back rather than read from the record's offset field, so that a
    zip with bytes before it (a self-extractor's stub) is read right, as
    ``zipfile`` does.
    """
    size = stream.seek(0, 2)
    if size < _EOCD_SIZE:
        return None
    tail_size = min(size, _EOCD_SIZE + _MAX_COMMENT)
    stream.seek(size - tail_size)
    tail = stream.read(tail_size)
    at = tail.rfind(_EOCD)
    while at >= 0 and at + _EOCD_SIZE > len(tail):
        at = tail.rfind(_EOCD, 0, at)
    if at < 0:
        return None
    eocd_pos = size - tail_size + at
    (_sig, _disk, _cd_disk, _here, entries, cd_size, cd_offset, _comment) = struct.unpack(
        "<4s4H2LH", tail[at : at + _EOCD_SIZE]
    )
    end = eocd_pos
    # A ZIP64 end record sits between the listing and this one whenever a writer
    # used it (Python's zipfile does past 65,535 entries without saturating the
    # fields here), so its locator is looked for every time, as zipfile does.
    if eocd_pos >= 20 + 56:
        stream.seek(eocd_pos - 20 - 56)
        record, locator = stream.read(56), stream.read(20)
        if locator[:4] == _ZIP64_LOCATOR and record[:4] == _ZIP64_EOCD:
            cd_size = struct.unpack("<Q", record[40:48])[0]
            end = eocd_pos - 20 - 56
        elif entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            return None  # saturated fields and no ZIP64 record: cannot be read
    start = end - cd_size
    if start < 0 or cd_size <= 0:
        return None
    return start, cd_size


def _find_names(stream: BinaryIO, start: int, size: int) -> tuple[bytes | None, bool]:
    """The version folder's version (or None), and whether ``header/metadata.xml`` is listed."""
    folder: bytes | None = None
    metadata = False
    offset = 0
    while offset < size and (folder is None or not metadata):
        stream.seek(start + offset)
        piece = stream.read(min(_CHUNK, size - offset))
        if not piece:
            break
        last = offset + len(piece) >= size
        # A hit belongs to this piece if its header starts before the overlap;
        # one starting in the overlap is left to the next piece, which holds it whole.
        limit = len(piece) if last else len(piece) - _OVERLAP
        if folder is None:
            folder = _first_folder(piece, limit)
        if not metadata:
            metadata = _is_listed(piece, limit, _METADATA)
        if last:
            break
        offset += len(piece) - _OVERLAP
    return folder, metadata


def _names_at(piece: bytes, limit: int, prefix: bytes) -> list[bytes]:
    """Every entry name in ``piece`` starting with ``prefix``, its header before ``limit``."""
    names: list[bytes] = []
    at = piece.find(prefix, _CENTRAL_SIZE)
    while 0 <= at:
        header = at - _CENTRAL_SIZE
        if header >= limit:
            break
        if piece[header : header + 4] == _CENTRAL:
            length = int.from_bytes(piece[header + 28 : header + 30], "little")
            name = piece[at : at + length]
            if len(name) == length:
                names.append(name)
        at = piece.find(prefix, at + 1)
    return names


def _first_folder(piece: bytes, limit: int) -> bytes | None:
    for name in _names_at(piece, limit, _VERSION_FOLDER):
        match = _FOLDER_NAME.match(name)
        if match is not None:
            return match.group(1)
    return None


def _is_listed(piece: bytes, limit: int, name: bytes) -> bool:
    return name in _names_at(piece, limit, name)


def _by_metadata_head(path: Path) -> ContainerMatch | None:
    """No version folder: what the head of ``header/metadata.xml`` claims."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("header/metadata.xml") as member:
            head = member.read(_HEAD)
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error, RuntimeError, ValueError, EOFError):
        return None  # encrypted, damaged, an unknown compression: not recognised here
    for namespace, version in _NAMESPACES:
        if namespace.search(head):
            return ContainerMatch(
                SIARD_PUIDS[version], version, f"header/metadata.xml (SIARD {version} namespace)"
            )
    if _SIARD2_NS.search(head):
        attribute = _VERSION_ATTRIBUTE.search(head)
        if attribute is not None:
            version = attribute.group(1).decode("ascii")
            return ContainerMatch(
                SIARD_PUIDS[version], version, f'header/metadata.xml (version="{version}")'
            )
    return None
