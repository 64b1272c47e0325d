"""LTFS volumes (ISO/IEC 20919, format 2.4.0) on any :class:`TapeDevice`, in pure Python.

Why our own: the archive must write and read the open tape format from inside
the pipeline (no FUSE mount, no daemon), stream each AIP once while hashing it,
and record where every AIP starts so recalls can be sorted by position.

Layout we write, the same as the reference implementation (see
``tests/data/ltfs/README.md`` and ``docs/tape-format.md``)::

    partition a (0): VOL1 FM label FM | FM index FM          <- rewritten at unmount
    partition b (1): VOL1 FM label FM | FM index(1) FM | data... FM index(2) FM | ...

Every ``sync()`` appends an index construct to the data partition with the next
generation number, a pointer to itself and one back to the previous data
partition index. ``unmount()`` replaces the index partition's index with the
newest one. ``mount()`` prefers the index partition, but walks back from the
data partition's end of data when the index partition is damaged or older
(power lost after a sync, before unmount): nothing synced is ever lost.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from preservation import __version__
from preservation.errors import (
    FixityMismatchError,
    LTFSFormatError,
    MediaError,
    NotFoundError,
    StorageError,
    TapeFullError,
    WriteProtectedError,
    WrongCartridgeError,
)
from preservation.storage.interfaces import (
    MamAttribute,
    MamFormat,
    MamId,
    TapeDevice,
)
from preservation.storage.ltfs_index import (
    DirectoryNode,
    Extent,
    FileNode,
    Index,
    IndexLocation,
    check_name,
)
from preservation.storage.ltfs_label import (
    LTFS_VERSION,
    Coherency,
    Label,
    format_time,
    parse_vol1,
    vol1_label,
    volser,
)

__all__ = ["BLOCK_SIZE", "SHA256_XATTR", "FileEntry", "LTFSFileReader", "LTFSVolume"]

log = logging.getLogger(__name__)

BLOCK_SIZE = 512 * 1024
SHA256_XATTR = "ltfs.hash.sha256sum"
CREATOR = f"preservation {__version__} - Python - ltfs"
_PART_NUMBER = {"a": 0, "b": 1}
_PART_LETTER = {0: "a", 1: "b"}
_MAX_LABEL_BYTES = 1 << 20
_MAX_INDEX_BYTES = 1 << 31
_WALK_BACK_LIMIT = 64
_DEFAULT_INDEX_PARTITION = 128 * 10**9  # bytes; drives round up to whole wraps


class _Vouched:
    """A digest the caller already knows: nothing to compute, the read-back will check it."""

    def __init__(self, hexdigest: str) -> None:
        self._hex = hexdigest

    def update(self, _data: object) -> None:
        return None

    def hexdigest(self) -> str:
        return self._hex


#: Blocks a read may run ahead of its digest (bounded memory: 8 x 512 KiB).
_VERIFY_AHEAD = 8


@dataclass(frozen=True)
class FileEntry:
    """A file on the volume as the catalogue records it."""

    path: str
    size: int
    sha256: str | None
    start_block: int | None
    extents: tuple[Extent, ...]
    uid: int
    modify_time: str


Source = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes] | str | os.PathLike[str]


class LTFSVolume:
    """A mounted LTFS volume: build with :meth:`format` or :meth:`mount`, end with :meth:`unmount`.

    Not thread-safe: one volume drives one tape, and a tape does one thing at a time.
    """

    def __init__(
        self,
        device: TapeDevice,
        label: Label,
        index: Index,
        *,
        barcode: str,
        read_only: bool,
        dp_last: IndexLocation | None,
        dp_last_generation: int,
        index_partition_current: bool,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        self.device = device
        self.label = label
        self.barcode = barcode
        self.read_only = read_only
        self._index = index
        self._dp_last = dp_last
        self._dp_last_generation = dp_last_generation
        self._ip_current = index_partition_current
        self._now_ns = now_ns or time.time_ns
        self._dirty = False
        self._mounted = True
        self._append_at: int | None = None  # next data partition block, when known
        self._buffer = bytearray(label.blocksize)
        self._index_size_hint = len(index.to_xml())
        self._ip = _PART_NUMBER[label.index_partition]
        self._dp = _PART_NUMBER[label.data_partition]

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def format(
        cls,
        device: TapeDevice,
        barcode: str,
        volume_uuid: str | None = None,
        *,
        volume_name: str | None = None,
        blocksize: int = BLOCK_SIZE,
        index_partition_bytes: int | None = None,
        now_ns: Callable[[], int] | None = None,
    ) -> LTFSVolume:
        """Make the cartridge an empty LTFS volume; everything on it is lost."""
        if not device.loaded:
            device.load()
        if device.write_protected:
            raise WriteProtectedError("cannot format a write-protected cartridge", barcode=barcode)
        volser(barcode)  # validate before touching the tape
        clock = now_ns or time.time_ns
        if device.partition_count < 2 or index_partition_bytes is not None:
            device.create_partitions(index_partition_bytes or _DEFAULT_INDEX_PARTITION)
        volume_uuid = str(uuidlib.UUID(volume_uuid)) if volume_uuid else str(uuidlib.uuid4())
        stamp = format_time(clock())
        root = DirectoryNode(
            name=volume_name or barcode,
            uid=1,
            creation_time=stamp,
            change_time=stamp,
            modify_time=stamp,
            access_time=stamp,
            backup_time=stamp,
        )
        index = Index(
            volume_uuid=volume_uuid,
            generation=1,
            update_time=stamp,
            location=IndexLocation("b", 0),
            previous=None,
            root=root,
            highest_uid=1,
            creator=f"{CREATOR} - format",
        )
        labels = {}
        for number in (1, 0):  # data partition first, as the reference does
            label = Label(
                volume_uuid, stamp, f"{CREATOR} - format", _PART_LETTER[number], blocksize
            )
            labels[number] = label
            device.locate(number, 0)
            device.write_block(vol1_label(barcode))
            device.write_filemarks(1)
            device.write_block(label.to_xml())
            device.write_filemarks(1)
        volume = cls(
            device,
            labels[0],
            index,
            barcode=barcode,
            read_only=False,
            dp_last=None,
            dp_last_generation=0,
            index_partition_current=False,
            now_ns=clock,
        )
        volume._write_dp_index(generation=1)
        volume._write_ip_index()
        volume._write_identity_attributes(volume_name or barcode)
        volume._write_coherency()
        return volume

    @classmethod
    def mount(
        cls,
        device: TapeDevice,
        expected_barcode: str | None = None,
        *,
        read_only: bool = False,
        trust_mam: bool = True,
        now_ns: Callable[[], int] | None = None,
    ) -> LTFSVolume:
        """Read the label and newest index; refuse a cartridge other than the one expected."""
        if not device.loaded:
            device.load()
        label, found_volser = _read_label(device)
        mam_barcode = _mam_text(device, MamId.BARCODE)
        if expected_barcode is not None:
            wanted = volser(expected_barcode)
            if found_volser != wanted or (mam_barcode and mam_barcode != expected_barcode.strip()):
                raise WrongCartridgeError(
                    f"the drive holds volume {mam_barcode or found_volser}, not {expected_barcode}",
                    barcode=expected_barcode,
                    found=mam_barcode or found_volser,
                )
        ip, dp = _PART_NUMBER[label.index_partition], _PART_NUMBER[label.data_partition]
        ip_index = _try_read_last_index(device, ip, label)
        consistent = False
        if trust_mam and ip_index is not None:
            consistent = _coherent(device, ip_index, ip, dp)
        dp_index = None if consistent else _try_read_last_index(device, dp, label)
        candidates = [i for i in (ip_index, dp_index) if i is not None]
        if not candidates:
            raise LTFSFormatError(
                "no readable LTFS index on either partition", barcode=expected_barcode
            )
        newest = max(candidates, key=lambda i: (i.generation, i is ip_index))
        if newest is not ip_index:
            log.warning(
                "index partition of %s is %s; using data partition index generation %d",
                found_volser,
                "unreadable" if ip_index is None else f"stale (gen {ip_index.generation})",
                newest.generation,
            )
        dp_last: IndexLocation | None
        if dp_index is not None:
            dp_last, dp_gen = dp_index.location, dp_index.generation
        else:  # trusted index partition: its back pointer names the newest data partition index
            previous = newest.previous
            dp_last = previous if previous is not None and previous.partition == "b" else None
            dp_gen = newest.generation
        writable = not read_only and not device.write_protected
        return cls(
            device,
            label,
            newest,
            barcode=expected_barcode or mam_barcode or found_volser,
            read_only=not writable,
            dp_last=dp_last,
            dp_last_generation=dp_gen,
            index_partition_current=newest is ip_index,
            now_ns=now_ns,
        )

    def sync(self) -> bool:
        """Write an index to the data partition if anything changed; True if one was written."""
        self._check_open()
        if not self._dirty:
            return False
        self._write_dp_index(generation=self._index.generation + 1)
        self._write_coherency()
        return True

    def unmount(self, *, unload: bool = False) -> None:
        """Sync, then make the index partition hold the newest index (the fast path at mount)."""
        if not self._mounted:
            return
        if not self.read_only:
            try:
                self.sync()
            except TapeFullError:
                # No room for an index on the data partition: the index partition
                # still has room and then alone describes the last files.
                log.warning(
                    "data partition of %s is full; index kept on index partition only", self.barcode
                )
                self._index.generation += 1
                self._index.update_time = self._stamp()  # a generation no copy stamped yet
                self._dirty = False
            if not self._ip_current:  # also repairs a stale or damaged index partition
                self._write_ip_index()
                self._write_coherency()
        self._mounted = False
        if unload:
            self.device.unload()

    def __enter__(self) -> LTFSVolume:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.unmount()
            return
        try:
            self.unmount()
        except StorageError:
            log.exception("unmount after an error failed as well")

    # -- properties ---------------------------------------------------------------------

    @property
    def volume_uuid(self) -> str:
        return self._index.volume_uuid

    @property
    def generation(self) -> int:
        return self._index.generation

    @property
    def index_partition_current(self) -> bool:
        """True when the index partition holds the newest index.

        Right after a mount this tells whether the last writer unmounted
        cleanly: a writer that died, or still holds the volume, leaves newer
        indexes on the data partition only.
        """
        return self._ip_current

    @property
    def index(self) -> Index:
        return self._index

    @property
    def blocksize(self) -> int:
        return self.label.blocksize

    @property
    def free_bytes(self) -> int:
        """Bytes a new file may still use, keeping room for the indexes to come.

        The reserve is the early-warning zone a drive keeps (about 1 % of the
        partition) plus two indexes of the current size.
        """
        space = self.device.status().partitions[self._dp]
        if space.remaining is None or space.capacity is None:
            return 0
        reserve = max(space.capacity // 100, 4 * self.blocksize) + 2 * self._index_size_hint
        return max(0, space.remaining - reserve)

    # -- writing ------------------------------------------------------------------------

    def write_file(
        self, path: str, source: Source, size: int | None = None, sha256: str | None = None
    ) -> FileEntry:
        """Stream ``source`` to the data partition in one pass, hashing the same buffers.

        ``source`` is bytes, a binary file object, an iterable of byte chunks or
        a path. Parent directories are created. An existing path is refused: an
        archive adds versions, it never overwrites one.

        ``sha256``, when the caller knows the content's digest already (the
        catalogue recorded it), is written as ``ltfs.hash.sha256sum`` without
        hashing the stream: the caller then owes a read-back, which checks the
        bytes on tape against exactly that digest and so catches a damaged
        source as well as a damaged write, at half the hashing.
        """
        self._check_writable()
        parent, name = self._parent_for_new(path)
        if size is not None and size > self.free_bytes:
            raise TapeFullError(
                f"{size} bytes do not fit: {self.free_bytes} bytes free",
                barcode=self.barcode,
                path=path,
            )
        self._seek_append()
        if self.device.status().early_warning:
            raise TapeFullError(
                "the tape passed early warning: no new files", barcode=self.barcode, path=path
            )
        start = self.device.position().block
        digest: Any = _Vouched(sha256) if sha256 is not None else hashlib.sha256()
        try:
            total = self._stream(source, digest)
        except BaseException:
            self._append_at = None  # where the tape stopped is now unknown
            raise
        self._append_at = start + (total + self.blocksize - 1) // self.blocksize
        if size is not None and total != size:
            raise StorageError(
                f"{path}: the source gave {total} bytes, {size} were announced",
                path=path,
                barcode=self.barcode,
            )
        stamp = self._stamp()
        self._index.highest_uid += 1
        extents = [Extent(0, "b", start, 0, total)] if total else []
        node = FileNode(
            name=name,
            uid=self._index.highest_uid,
            creation_time=stamp,
            change_time=stamp,
            modify_time=stamp,
            access_time=stamp,
            backup_time=stamp,
            xattrs={SHA256_XATTR: digest.hexdigest().encode("ascii")},
            length=total,
            extents=extents,
        )
        parent.children[name] = node
        parent.modify_time = parent.change_time = stamp
        self._dirty = True
        self._ip_current = False
        self._index_size_hint += 1024
        return _entry(_normalise(path), node)

    def _stream(self, source: Source, digest: Any) -> int:
        write = self.device.write_block
        bs = self.blocksize
        if isinstance(source, bytes | bytearray | memoryview):
            view = memoryview(source).cast("B")
            for offset in range(0, view.nbytes, bs):
                piece = view[offset : offset + bs]
                digest.update(piece)
                write(piece)
            return view.nbytes
        if isinstance(source, str | os.PathLike):
            with open(source, "rb", buffering=0) as handle:
                return self._stream_reader(handle, digest)
        if hasattr(source, "readinto") or hasattr(source, "read"):
            return self._stream_reader(source, digest)  # type: ignore[arg-type]
        view = memoryview(self._buffer)
        filled = total = 0
        # Whole blocks are hashed on a helper thread while the drive writes them
        # (hashlib drops the GIL), in order, and all are done before the caller
        # may refill its buffer: the digest costs no time on the write path.
        # A vouched digest (the store stage's) needs no hashing, so no helper thread.
        hasher = (
            None
            if isinstance(digest, _Vouched)
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltfs-sha256")
        )
        try:
            for chunk in source:
                chunk_view = memoryview(chunk).cast("B")
                offset = 0
                size = chunk_view.nbytes
                if filled == 0:  # whole blocks straight from the caller's buffer: no copy
                    pending = []
                    try:
                        while size - offset >= bs:
                            piece = chunk_view[offset : offset + bs]
                            if hasher is not None:
                                pending.append(hasher.submit(digest.update, piece))
                            write(piece)
                            offset += bs
                            total += bs
                    finally:
                        for done in pending:
                            done.result()
                filled, total = self._stream_tail(
                    chunk_view, offset, size, view, filled, total, digest
                )
        finally:
            if hasher is not None:
                hasher.shutdown(wait=True)
        if filled:
            digest.update(view[:filled])
            write(view[:filled])
            total += filled
        return total

    def _stream_tail(
        self,
        chunk_view: memoryview,
        offset: int,
        size: int,
        view: memoryview,
        filled: int,
        total: int,
        digest: Any,
    ) -> tuple[int, int]:
        """The part of a chunk that is not whole blocks: gathered in the volume's buffer."""
        write = self.device.write_block
        bs = self.blocksize
        while offset < size:
            take = min(bs - filled, size - offset)
            view[filled : filled + take] = chunk_view[offset : offset + take]
            filled += take
            offset += take
            if filled == bs:
                digest.update(view)
                write(view)
                total += bs
                filled = 0
        return filled, total

    def _stream_reader(self, handle: IO[bytes], digest: Any) -> int:
        bs = self.blocksize
        view = memoryview(self._buffer)
        readinto = getattr(handle, "readinto", None)
        total = 0
        while True:
            filled = 0
            while filled < bs:
                if readinto is not None:
                    got = readinto(view[filled:])
                else:
                    data = handle.read(bs - filled)
                    got = len(data)
                    view[filled : filled + got] = data
                if not got:
                    break
                filled += got
            if filled:
                piece = view[:filled]
                digest.update(piece)
                self.device.write_block(piece)
                total += filled
            if filled < bs:
                return total

    def remove(self, path: str, *, prune: bool = True) -> FileEntry:
        """Drop a file from the index; the next :meth:`sync` writes a generation without it.

        This is an LTFS delete: only the index changes. The file's blocks stay
        on the data partition, outside every index from then on, until the
        cartridge is repacked and reformatted; they are never written over either, since
        the writer only appends at end of data (tape cannot rewrite in the
        middle). Older index generations, walked back from the newest, still
        name the file: the history of a volume is append-only as well.

        ``prune`` also drops the directories the removal leaves empty (the
        AIP's folder, then its tenant's if that was the last AIP), never the
        root. Returns the entry as it was. A path the index does not list
        raises :class:`NotFoundError` naming it; a directory, IsADirectoryError.
        """
        self._check_writable()
        parts = _split(path)
        chain: list[DirectoryNode] = [self._index.root]
        try:
            node = self._lookup(path)
        except FileNotFoundError:
            node = None
        if node is None:
            raise NotFoundError(
                f"{_normalise(path)} is not in the index of volume {self.barcode}",
                path=path,
                barcode=self.barcode,
            )
        if isinstance(node, DirectoryNode):
            raise IsADirectoryError(path)
        for part in parts[:-1]:
            child = chain[-1].children[part]
            assert isinstance(child, DirectoryNode)
            chain.append(child)
        entry = _entry(_normalise(path), node)
        stamp = self._stamp()
        del chain[-1].children[parts[-1]]
        chain[-1].modify_time = chain[-1].change_time = stamp
        if prune:
            for depth in range(len(chain) - 1, 0, -1):
                if chain[depth].children:
                    break
                del chain[depth - 1].children[parts[depth - 1]]
                chain[depth - 1].modify_time = chain[depth - 1].change_time = stamp
        self._dirty = True
        self._ip_current = False
        return entry

    def _parent_for_new(self, path: str) -> tuple[DirectoryNode, str]:
        parts = _split(path)
        if not parts:
            raise IsADirectoryError(path)
        directory = self._index.root
        for part in parts[:-1]:
            child = directory.children.get(check_name(part))
            if child is None:
                stamp = self._stamp()
                self._index.highest_uid += 1
                child = DirectoryNode(
                    part, self._index.highest_uid, stamp, stamp, stamp, stamp, stamp
                )
                directory.children[part] = child
                directory.modify_time = directory.change_time = stamp
            elif not isinstance(child, DirectoryNode):
                raise NotADirectoryError(f"{path}: {part} is a file")
            directory = child
        name = check_name(parts[-1])
        if name in directory.children:
            raise FileExistsError(f"{path} already exists on volume {self.barcode}")
        return directory, name

    # -- reading ------------------------------------------------------------------------

    def stat(self, path: str) -> FileEntry:
        node = self._lookup(path)
        if isinstance(node, DirectoryNode):
            raise IsADirectoryError(path)
        return _entry(_normalise(path), node)

    def exists(self, path: str) -> bool:
        try:
            self._lookup(path)
        except FileNotFoundError:
            return False
        return True

    def is_dir(self, path: str) -> bool:
        try:
            return isinstance(self._lookup(path), DirectoryNode)
        except FileNotFoundError:
            return False

    def listdir(self, path: str = "/") -> list[str]:
        node = self._lookup(path)
        if not isinstance(node, DirectoryNode):
            raise NotADirectoryError(path)
        return sorted(node.children)

    def walk(self, top: str = "/") -> Iterator[FileEntry]:
        """Every file under ``top`` (recursively), in name order: how a catalogue is rebuilt."""
        node = self._lookup(top)
        if not isinstance(node, DirectoryNode):
            raise NotADirectoryError(top)
        prefix = _normalise(top).rstrip("/")
        sub = Index(self._index.volume_uuid, 0, "", IndexLocation("a", 0), None, node, 0)
        for rel, file_node in sub.walk():
            yield _entry(prefix + rel, file_node)

    def open(self, path: str, *, verify: bool = True) -> LTFSFileReader:
        """A sequential reader; with ``verify`` a full read checks the sha256 attribute."""
        self._check_open()
        node = self._lookup(path)
        if isinstance(node, DirectoryNode):
            raise IsADirectoryError(path)
        return LTFSFileReader(self, _normalise(path), node, verify=verify)

    def read_bytes(self, path: str, *, verify: bool = True) -> bytes:
        with self.open(path, verify=verify) as reader:
            return reader.read()

    def _lookup(self, path: str) -> FileNode | DirectoryNode:
        node: FileNode | DirectoryNode = self._index.root
        for part in _split(path):
            if not isinstance(node, DirectoryNode) or part not in node.children:
                raise FileNotFoundError(f"{path} is not on volume {self.barcode}")
            node = node.children[part]
        return node

    # -- index writing ------------------------------------------------------------------

    def _write_dp_index(self, generation: int) -> None:
        device = self.device
        self._seek_append()
        device.write_filemarks(1)
        location = IndexLocation("b", device.position().block)
        # A new generation is stamped here, once: the index partition's copy
        # of it, written at unmount, carries the same time (as the reference's
        # do), so the two copies differ only in where they say they are.
        self._write_index_construct(
            generation, location, self._dp_last, self._stamp(), leading_filemark=False
        )
        self._dp_last = location
        self._dp_last_generation = generation
        self._append_at = device.position().block
        self._dirty = False
        self._ip_current = False

    def _write_ip_index(self) -> None:
        device = self.device
        device.locate(self._ip, 0)
        device.space_filemarks(2)  # past VOL1 FM label FM: the index area
        location = IndexLocation("a", device.position().block + 1)
        self._write_index_construct(
            self._index.generation, location, self._dp_last, self._index.update_time
        )
        self._ip_current = True
        self._append_at = None

    def _write_index_construct(
        self,
        generation: int,
        location: IndexLocation,
        previous: IndexLocation | None,
        update_time: str,
        *,
        leading_filemark: bool = True,
    ) -> None:
        index = self._index
        saved = (index.generation, index.location, index.previous, index.update_time, index.creator)
        index.generation, index.location, index.previous = generation, location, previous
        index.update_time = update_time
        index.creator = CREATOR
        try:
            data = index.to_xml()
            if leading_filemark:
                self.device.write_filemarks(1)
            view = memoryview(data)
            for offset in range(0, len(data), self.blocksize):
                self.device.write_block(view[offset : offset + self.blocksize])
            self.device.write_filemarks(1)
        except BaseException:
            (index.generation, index.location, index.previous, index.update_time, index.creator) = (
                saved
            )
            raise
        self._index_size_hint = len(data)

    def _write_identity_attributes(self, volume_name: str) -> None:
        def ascii_attr(attr_id: int, text: str, width: int) -> MamAttribute:
            return MamAttribute(attr_id, MamFormat.ASCII, text.encode("ascii")[:width].ljust(width))

        attributes = [
            ascii_attr(MamId.APPLICATION_VENDOR, "OAISPRES", 8),
            ascii_attr(MamId.APPLICATION_NAME, "preservation LTFS", 32),
            ascii_attr(MamId.APPLICATION_VERSION, __version__, 8),
            MamAttribute(
                MamId.USER_MEDIUM_TEXT_LABEL,
                MamFormat.TEXT,
                volume_name.encode("utf-8")[:160].ljust(160, b"\0"),
            ),
            MamAttribute(MamId.TEXT_LOCALIZATION_ID, MamFormat.BINARY, bytes([0x81])),
            ascii_attr(MamId.BARCODE, self.barcode, 32),
            MamAttribute(MamId.MEDIA_POOL, MamFormat.TEXT, bytes(160)),  # no pool yet
            ascii_attr(MamId.APPLICATION_FORMAT_VERSION, LTFS_VERSION, 16),
            # The reference mkltfs writes "unlocked" here, and its ltfs reads the
            # lock at mount to decide whether the volume may be written.
            MamAttribute(MamId.VOLUME_LOCK_STATUS, MamFormat.BINARY, bytes([0])),
        ]
        for attribute in attributes:
            self._set_attribute(attribute, self._ip)

    def _write_coherency(self) -> None:
        vcr_attr = _read_attr(self.device, MamId.VOLUME_CHANGE_REFERENCE)
        if vcr_attr is None:
            return  # the drive cannot tell us; mounts will walk the data partition
        vcr = int.from_bytes(vcr_attr.value, "big")
        ip_block = self._index.location.block if self._ip_current else 0
        records = []
        if self._ip_current:
            records.append((self._ip, self._index.generation, ip_block))
        if self._dp_last is not None:
            records.append((self._dp, self._dp_last_generation, self._dp_last.block))
        for partition, generation, block in records:
            value = Coherency(vcr, generation, block, self.volume_uuid).encode()
            self._set_attribute(
                MamAttribute(MamId.VOLUME_COHERENCY_INFORMATION, MamFormat.BINARY, value), partition
            )

    def _set_attribute(self, attribute: MamAttribute, partition: int) -> None:
        try:
            self.device.write_attribute(attribute, partition)
        except WriteProtectedError:
            raise
        except StorageError as err:  # MAM is an accelerator, never the only copy of anything
            log.warning("could not write MAM attribute %#06x: %s", attribute.id, err)

    # -- helpers ------------------------------------------------------------------------

    def _seek_append(self) -> None:
        position = self.device.position()
        if self._append_at is not None and position.partition == self._dp:
            if position.block == self._append_at:
                return
        if self._append_at is not None:
            self.device.locate(self._dp, self._append_at)
        else:
            self.device.set_partition(self._dp)
            self.device.seek_eod()
        self._append_at = self.device.position().block

    def _stamp(self) -> str:
        return format_time(self._now_ns())

    def _check_open(self) -> None:
        if not self._mounted:
            raise StorageError("the volume is not mounted", barcode=self.barcode)

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise WriteProtectedError(
                f"volume {self.barcode} is mounted read-only", barcode=self.barcode
            )


class LTFSFileReader(io.RawIOBase):
    """Reads one file extent by extent, block by block; verifies sha256 at the end if asked."""

    def __init__(self, volume: LTFSVolume, path: str, node: FileNode, *, verify: bool) -> None:
        super().__init__()
        self.path = path
        self.size = node.length
        self._volume = volume
        self._node = node
        expected = node.xattrs.get(SHA256_XATTR)
        self.expected_sha256 = expected.decode("ascii").strip().lower() if expected else None
        self._digest = hashlib.sha256() if verify else None
        self._chunks = self._generate()
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def iter_chunks(self) -> Iterator[memoryview]:
        """The file as tape blocks (no copying); each view is valid until the next one."""
        if self._pending.nbytes:
            chunk, self._pending = self._pending, memoryview(b"")
            yield chunk
        yield from self._chunks

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        while not self._pending.nbytes:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        take = min(target.nbytes, self._pending.nbytes)
        target[:take] = self._pending[:take]
        self._pending = self._pending[take:]
        return take

    def readall(self) -> bytes:
        out = bytearray()
        for chunk in self.iter_chunks():
            out += chunk
        return bytes(out)

    def _generate(self) -> Iterator[memoryview]:
        # The digest runs on a helper thread, in order, at most a few blocks
        # behind the drive: reading and hashing overlap, memory stays bounded.
        hasher = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltfs-verify")
            if self._digest is not None
            else None
        )
        inflight: deque[Future[None]] = deque()
        try:
            yield from self._blocks(hasher, inflight)
            while inflight:
                inflight.popleft().result()
            self._finish()
        finally:
            if hasher is not None:
                hasher.shutdown(wait=True)

    def _blocks(
        self, hasher: ThreadPoolExecutor | None, inflight: deque[Future[None]]
    ) -> Iterator[memoryview]:
        volume = self._volume
        device = volume.device
        blocksize = volume.blocksize
        position = 0
        account = functools.partial(self._account, hasher=hasher, inflight=inflight)
        for extent in self._node.extents:
            if extent.file_offset > position:  # a sparse hole reads as zeros
                yield from account(memoryview(bytes(extent.file_offset - position)))
                position = extent.file_offset
            partition = _PART_NUMBER.get(extent.partition)
            if partition is None:
                raise LTFSFormatError(f"{self.path}: extent on unknown partition", path=self.path)
            here = device.position()
            if (here.partition, here.block) != (partition, extent.start_block):
                device.locate(partition, extent.start_block)
            remaining, skip = extent.byte_count, extent.byte_offset
            while remaining > 0:
                block = device.read_block(blocksize)
                if not block:
                    raise MediaError(
                        f"{self.path}: filemark inside the file's data",
                        path=self.path,
                        barcode=volume.barcode,
                    )
                piece = memoryview(block)[skip : skip + remaining]
                skip = 0
                remaining -= piece.nbytes
                position += piece.nbytes
                yield from account(piece)
        if position < self.size:
            yield from account(memoryview(bytes(self.size - position)))

    def _account(
        self,
        piece: memoryview,
        *,
        hasher: ThreadPoolExecutor | None,
        inflight: deque[Future[None]],
    ) -> Iterator[memoryview]:
        # Each block is a fresh object from the device, never reused: hashing it
        # later is safe; the consumer only reads it.
        if self._digest is not None:
            if hasher is None:
                self._digest.update(piece)
            else:
                inflight.append(hasher.submit(self._digest.update, piece))
                if len(inflight) > _VERIFY_AHEAD:
                    inflight.popleft().result()
        yield piece

    @property
    def sha256(self) -> str | None:
        """The digest of every byte read, once the file was read to its end with ``verify``.

        A caller checking the bytes against a digest of its own (the catalogue's)
        takes this one rather than hashing the same bytes a second time.
        """
        return self._digest.hexdigest() if self._done and self._digest is not None else None

    def _finish(self) -> None:
        self._done = True
        if self._digest is None or self.expected_sha256 is None:
            return
        actual = self._digest.hexdigest()
        if actual != self.expected_sha256:
            raise FixityMismatchError(
                f"{self.path} on {self._volume.barcode}: sha256 {actual} != recorded "
                f"{self.expected_sha256}",
                path=self.path,
                barcode=self._volume.barcode,
                expected=self.expected_sha256,
                actual=actual,
            )


# -- mount helpers (module level: they work on a device before a volume exists) ---------


def _read_label(device: TapeDevice) -> tuple[Label, str]:
    """VOL1 and the XML label, from partition a or else its copy on partition b."""
    errors: list[StorageError] = []
    for partition in (0, 1):
        try:
            device.locate(partition, 0)
            found = parse_vol1(device.read_block(_MAX_LABEL_BYTES))
            if device.read_block(_MAX_LABEL_BYTES) != b"":
                raise LTFSFormatError("no filemark after VOL1")
            label = Label.from_xml(_read_until_filemark(device, _MAX_LABEL_BYTES))
            return label, found
        except StorageError as err:
            log.warning("partition %d: no usable LTFS label: %s", partition, err)
            errors.append(err)
    detail = "; ".join(str(e) for e in errors)
    if all(isinstance(e, MediaError) for e in errors):
        raise MediaError(f"the volume labels cannot be read ({detail})") from errors[-1]
    raise LTFSFormatError(f"not an LTFS volume ({detail})") from errors[-1]


def _read_until_filemark(device: TapeDevice, limit: int, *, first: bytes | None = None) -> bytes:
    out = bytearray(first or b"")
    while True:
        block = device.read_block(max(limit, 1))
        if not block:
            return bytes(out)
        out += block
        if len(out) > limit:
            raise LTFSFormatError("structure larger than allowed before its filemark")


def _looks_like_index(block: bytes) -> bool:
    head = block[:512].lstrip()
    return (
        head.startswith(b"<?xml")
        and b"<ltfsindex" in block[:4096]
        or head.startswith(b"<ltfsindex")
    )


def _try_read_last_index(device: TapeDevice, partition: int, label: Label) -> Index | None:
    """The newest complete index on a partition, walking back from end of data.

    Each index sits between two filemarks; data never contains one. So from
    end of data, crossing two filemarks back and one forward lands on the
    last index (or, after a crash, on data written after it: then we go one
    filemark further back and try again).
    """
    letter = _PART_LETTER[partition]
    try:
        device.set_partition(partition)
        device.seek_eod()
        device.space_filemarks(-2)
    except StorageError as err:
        log.warning("partition %s: cannot reach its last index: %s", letter, err)
        return None
    for _ in range(_WALK_BACK_LIMIT):
        mark = device.position().block
        if mark < 3:  # the label's filemarks: no index before them
            return None
        try:
            device.space_filemarks(1)
            start = device.position().block
            first = device.read_block(max(label.blocksize, _MAX_LABEL_BYTES))
            if first and _looks_like_index(first):
                data = _read_until_filemark(device, _MAX_INDEX_BYTES, first=first)
                index = Index.from_xml(data)
                if index.location != IndexLocation(letter, start):
                    raise LTFSFormatError(
                        f"index at {letter}/{start} says it is at "
                        f"{index.location.partition}/{index.location.block}"
                    )
                if index.volume_uuid != label.volume_uuid:
                    raise LTFSFormatError("index belongs to another volume")
                return index
        except (MediaError, LTFSFormatError) as err:
            log.warning("partition %s: index after block %d unusable: %s", letter, mark, err)
        except StorageError as err:
            log.warning("partition %s: %s", letter, err)
        try:
            device.locate(partition, mark)
            device.space_filemarks(-1)
        except StorageError:
            return None
    return None


def _coherent(device: TapeDevice, ip_index: Index, ip: int, dp: int) -> bool:
    """True when MAM proves nothing was written after the index partition's index."""
    vcr = _read_attr(device, MamId.VOLUME_CHANGE_REFERENCE)
    raw = [_read_attr(device, MamId.VOLUME_COHERENCY_INFORMATION, p) for p in (ip, dp)]
    if vcr is None or raw[0] is None or raw[1] is None:
        return False
    c_ip, c_dp = Coherency.decode(raw[0].value), Coherency.decode(raw[1].value)
    if c_ip is None or c_dp is None:
        return False
    current = int.from_bytes(vcr.value, "big")
    return (
        c_ip.vcr == c_dp.vcr == current
        and c_ip.generation == ip_index.generation
        and c_ip.generation >= c_dp.generation
        and c_ip.volume_uuid == ip_index.volume_uuid
    )


def _read_attr(device: TapeDevice, attr_id: int, partition: int = 0) -> MamAttribute | None:
    try:
        return device.read_attribute(attr_id, partition)
    except StorageError as err:
        log.info("MAM attribute %#06x unreadable: %s", attr_id, err)
        return None


def _mam_text(device: TapeDevice, attr_id: int) -> str | None:
    attribute = _read_attr(device, attr_id)
    return attribute.text() or None if attribute is not None else None


def _split(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"LTFS paths are absolute: {path!r}")
    return [part for part in path.split("/") if part]


def _normalise(path: str) -> str:
    return "/" + "/".join(_split(path))


def _entry(path: str, node: FileNode) -> FileEntry:
    raw = node.xattrs.get(SHA256_XATTR)
    return FileEntry(
        path=path,
        size=node.length,
        sha256=raw.decode("ascii").strip().lower() if raw else None,
        start_block=node.extents[0].start_block if node.extents else None,
        extents=tuple(node.extents),
        uid=node.uid,
        modify_time=node.modify_time,
    )
