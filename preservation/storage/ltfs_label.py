"""The small fixed structures of an LTFS volume: VOL1, the XML label, coherency, timestamps.

Kept apart from the index (:mod:`ltfs_index`) because these never grow and are
checked on every mount: they tell us whether a cartridge is LTFS at all, which
cartridge it is and where its newest index should be.
Format references: ISO/IEC 20919 (LTFS 2.4), sections on the partition label
and the volume coherency MAM attribute.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from preservation.errors import LTFSFormatError

__all__ = [
    "LTFS_VERSION",
    "Coherency",
    "Label",
    "format_time",
    "parse_time",
    "parse_vol1",
    "vol1_label",
    "xml_parser",
]

LTFS_VERSION = "2.4.0"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_VOLSER_RE = re.compile(r"^[A-Z0-9]{6}$")
_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$")
PARTITION_LETTERS = "ab"


def xml_parser() -> etree.XMLParser:
    """A parser that never fetches, expands or trusts anything from the tape."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
        remove_blank_text=True,
    )


def format_time(ns: int | None = None) -> str:
    """LTFS time: UTC, always nine fractional digits (``2026-11-25T10:00:00.000000000Z``)."""
    if ns is None:
        ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch; tolerant of fewer fractional digits (older writers)."""
    match = _TIME_RE.match(text.strip())
    if not match:
        raise LTFSFormatError(f"not an LTFS time stamp: {text!r}")
    base = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = int((match[2] or "0").ljust(9, "0"))
    return int(base.timestamp()) * 1_000_000_000 + frac


def volser(barcode: str) -> str:
    """The six-character volume identifier VOL1 holds (LTO barcodes may be 8: drop the media id)."""
    ident = barcode.strip().upper()[:6]
    if not _VOLSER_RE.match(ident):
        raise LTFSFormatError(
            f"barcode {barcode!r} cannot name an LTFS volume: it needs six letters or digits",
            barcode=barcode,
        )
    return ident


def vol1_label(barcode: str) -> bytes:
    """The 80-byte ANSI VOL1 label LTFS puts first on each partition."""
    label = (
        "VOL1"
        + volser(barcode)
        + "L"  # accessibility: only an LTFS-aware program should write
        + " " * 13
        + "LTFS".ljust(13)  # implementation identifier
        + " " * 14  # owner identifier
        + " " * 28
        + "4"  # label standard version
    )
    assert len(label) == 80
    return label.encode("ascii")


def parse_vol1(block: bytes) -> str:
    """Check a VOL1 label is an LTFS one and return its volume identifier."""
    if len(block) != 80 or not block.startswith(b"VOL1"):
        raise LTFSFormatError("the first block is not an 80-byte VOL1 label: not an LTFS volume")
    text = block.decode("ascii", errors="replace")
    if text[24:37].rstrip() != "LTFS":
        raise LTFSFormatError(f"VOL1 implementation identifier is {text[24:37]!r}, not LTFS")
    if text[79] != "4":
        raise LTFSFormatError(f"VOL1 label standard version {text[79]!r} is not 4")
    return text[4:10].rstrip()


@dataclass(frozen=True)
class Label:
    """The ``<ltfslabel>`` record: identity and geometry of the volume."""

    volume_uuid: str
    format_time: str
    creator: str
    partition: str  # which partition this copy sits on
    blocksize: int
    compression: bool = False
    index_partition: str = "a"
    data_partition: str = "b"
    version: str = LTFS_VERSION

    def to_xml(self) -> bytes:
        root = etree.Element("ltfslabel", version=self.version)
        etree.SubElement(root, "creator").text = self.creator
        etree.SubElement(root, "formattime").text = self.format_time
        etree.SubElement(root, "volumeuuid").text = self.volume_uuid
        location = etree.SubElement(root, "location")
        etree.SubElement(location, "partition").text = self.partition
        partitions = etree.SubElement(root, "partitions")
        etree.SubElement(partitions, "index").text = self.index_partition
        etree.SubElement(partitions, "data").text = self.data_partition
        etree.SubElement(root, "blocksize").text = str(self.blocksize)
        etree.SubElement(root, "compression").text = "true" if self.compression else "false"
        etree.indent(root, space="    ")
        return XML_DECLARATION + etree.tostring(root, encoding="UTF-8") + b"\n"

    @classmethod
    def from_xml(cls, data: bytes) -> Label:
        try:
            root = etree.fromstring(data, xml_parser())
        except etree.XMLSyntaxError as err:
            raise LTFSFormatError(f"the LTFS label is not well-formed XML: {err}") from err
        if root.tag != "ltfslabel":
            raise LTFSFormatError(f"expected <ltfslabel>, found <{root.tag}>")
        version = root.get("version", "")
        if not re.match(r"^[12]\.\d+\.\d+$", version):
            raise LTFSFormatError(f"unsupported LTFS label version {version!r}")

        def text(path: str) -> str:
            value = root.findtext(path)
            if value is None:
                raise LTFSFormatError(f"the LTFS label has no <{path}>")
            return value.strip()

        try:
            uuid.UUID(text("volumeuuid"))
            blocksize = int(text("blocksize"))
        except ValueError as err:
            raise LTFSFormatError(f"the LTFS label is malformed: {err}") from err
        return cls(
            volume_uuid=text("volumeuuid"),
            format_time=text("formattime"),
            creator=root.findtext("creator", "").strip(),
            partition=text("location/partition"),
            blocksize=blocksize,
            compression=root.findtext("compression", "false").strip() == "true",
            index_partition=text("partitions/index"),
            data_partition=text("partitions/data"),
            version=version,
        )


@dataclass(frozen=True)
class Coherency:
    """Volume Coherency Information (MAM 0x080C): which index a partition ends with.

    The drive changes its volume change reference (VCR) whenever the medium is
    written; an LTFS writer records the VCR next to the generation and block of
    the index it just wrote. At mount, equal VCRs on both partitions and the
    drive mean nothing was written after the indexes: the index partition can
    be trusted without walking the data partition.
    """

    vcr: int
    generation: int
    block: int
    volume_uuid: str

    def encode(self) -> bytes:
        app = b"LTFS\0" + self.volume_uuid.encode("ascii") + b"\0" + bytes([1])
        return (
            bytes([8])
            + self.vcr.to_bytes(8, "big")
            + self.generation.to_bytes(8, "big")
            + self.block.to_bytes(8, "big")
            + len(app).to_bytes(2, "big")
            + app
        )

    @classmethod
    def decode(cls, raw: bytes) -> Coherency | None:
        """None when the attribute is not an LTFS one (another application wrote it)."""
        if not raw:
            return None
        offset = 1 + raw[0]
        if len(raw) < offset + 18:
            return None
        vcr = int.from_bytes(raw[1:offset], "big")
        generation = int.from_bytes(raw[offset : offset + 8], "big")
        block = int.from_bytes(raw[offset + 8 : offset + 16], "big")
        app_len = int.from_bytes(raw[offset + 16 : offset + 18], "big")
        app = raw[offset + 18 : offset + 18 + app_len]
        if not app.startswith(b"LTFS\0"):
            return None
        volume_uuid = app[5:].split(b"\0", 1)[0].decode("ascii", errors="replace")
        return cls(vcr, generation, block, volume_uuid)
