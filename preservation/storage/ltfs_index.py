"""The LTFS index: the volume's directory tree and where every byte sits on tape.

An index is an XML document (ISO/IEC 20919 ``<ltfsindex>``, version 2.4.0 when
we write it, 1.x-2.x when we read it). This module is a pure core: it turns
bytes into an :class:`Index` and back, with no tape I/O, so the LTFS shell in
:mod:`preservation.storage.ltfs` can stay about positions and blocks.
Times are kept as the strings found on tape so a read-modify-write keeps them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from lxml import etree

from preservation.errors import LTFSFormatError
from preservation.storage.ltfs_label import LTFS_VERSION, XML_DECLARATION, xml_parser

__all__ = [
    "DirectoryNode",
    "Extent",
    "FileNode",
    "Index",
    "IndexLocation",
    "check_name",
]

_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_VERSION_RE = re.compile(r"^([12])\.(\d+)\.(\d+)$")


def check_name(name: str) -> str:
    """Refuse names LTFS cannot hold or other LTFS readers would mangle."""
    if name in ("", ".", "..") or "/" in name or ":" in name or "\0" in name:
        raise LTFSFormatError(f"{name!r} is not a valid LTFS file name", path=name)
    if len(name.encode("utf-8")) > 255:
        raise LTFSFormatError("an LTFS file name is at most 255 bytes", path=name)
    return name


@dataclass(frozen=True)
class IndexLocation:
    partition: str  # "a" or "b"
    block: int


@dataclass(frozen=True)
class Extent:
    """A run of bytes of a file: ``byte_count`` bytes from ``byte_offset`` in ``start_block``."""

    file_offset: int
    partition: str
    start_block: int
    byte_offset: int
    byte_count: int


@dataclass
class _Node:
    name: str
    uid: int
    creation_time: str
    change_time: str
    modify_time: str
    access_time: str
    backup_time: str
    readonly: bool = False
    xattrs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FileNode(_Node):
    length: int = 0
    extents: list[Extent] = field(default_factory=list)


@dataclass
class DirectoryNode(_Node):
    children: dict[str, FileNode | DirectoryNode] = field(default_factory=dict)


@dataclass
class Index:
    volume_uuid: str
    generation: int
    update_time: str
    location: IndexLocation
    previous: IndexLocation | None
    root: DirectoryNode
    highest_uid: int
    creator: str = ""
    version: str = LTFS_VERSION
    allow_policy_update: bool = True
    volume_lock: str | None = "unlocked"
    policy: bytes | None = None  # a <dataplacementpolicy> kept verbatim

    def walk(self) -> Iterator[tuple[str, FileNode]]:
        """Every file with its absolute path, directories first-seen order, names sorted."""
        stack: list[tuple[str, DirectoryNode]] = [("", self.root)]
        while stack:
            prefix, directory = stack.pop()
            subdirs = []
            for name in sorted(directory.children):
                child = directory.children[name]
                if isinstance(child, DirectoryNode):
                    subdirs.append((f"{prefix}/{name}", child))
                else:
                    yield f"{prefix}/{name}", child
            stack.extend(reversed(subdirs))

    # -- XML out ------------------------------------------------------------------------

    def to_xml(self) -> bytes:
        root = etree.Element("ltfsindex", version=self.version)
        sub = etree.SubElement
        sub(root, "creator").text = self.creator
        sub(root, "volumeuuid").text = self.volume_uuid
        sub(root, "generationnumber").text = str(self.generation)
        sub(root, "updatetime").text = self.update_time
        location = sub(root, "location")
        sub(location, "partition").text = self.location.partition
        sub(location, "startblock").text = str(self.location.block)
        if self.previous is not None:
            previous = sub(root, "previousgenerationlocation")
            sub(previous, "partition").text = self.previous.partition
            sub(previous, "startblock").text = str(self.previous.block)
        sub(root, "allowpolicyupdate").text = "true" if self.allow_policy_update else "false"
        if self.policy is not None:
            root.append(etree.fromstring(self.policy, xml_parser()))
        sub(root, "highestfileuid").text = str(self.highest_uid)
        if self.volume_lock is not None:
            sub(root, "volumelockstate").text = self.volume_lock
        _write_directory(root, self.root)
        return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)

    # -- XML in -------------------------------------------------------------------------

    @classmethod
    def from_xml(cls, data: bytes) -> Index:
        try:
            root = etree.fromstring(data, xml_parser())
        except etree.XMLSyntaxError as err:
            raise LTFSFormatError(f"the LTFS index is not well-formed XML: {err}") from err
        if root.tag != "ltfsindex":
            raise LTFSFormatError(f"expected <ltfsindex>, found <{root.tag}>")
        version = root.get("version", "")
        if not _VERSION_RE.match(version):
            raise LTFSFormatError(f"unsupported LTFS index version {version!r}")
        try:
            location = _location(root.find("location"))
            if location is None:
                raise LTFSFormatError("the LTFS index has no <location>")
            directory = root.find("directory")
            if directory is None:
                raise LTFSFormatError("the LTFS index has no root <directory>")
            policy = root.find("dataplacementpolicy")
            return cls(
                volume_uuid=_text(root, "volumeuuid"),
                generation=int(_text(root, "generationnumber")),
                update_time=_text(root, "updatetime"),
                location=location,
                previous=_location(root.find("previousgenerationlocation")),
                root=_read_directory(directory),
                highest_uid=int(root.findtext("highestfileuid") or 0),
                creator=(root.findtext("creator") or "").strip(),
                version=version,
                allow_policy_update=(root.findtext("allowpolicyupdate") or "true").strip()
                == "true",
                volume_lock=(root.findtext("volumelockstate") or "").strip() or None,
                policy=etree.tostring(policy) if policy is not None else None,
            )
        except ValueError as err:
            raise LTFSFormatError(f"the LTFS index is malformed: {err}") from err


def _text(element: etree._Element, tag: str) -> str:
    value = element.findtext(tag)
    if value is None:
        raise LTFSFormatError(f"<{element.tag}> has no <{tag}>")
    return value.strip()


def _location(element: etree._Element | None) -> IndexLocation | None:
    if element is None:
        return None
    partition = _text(element, "partition")
    if partition not in ("a", "b"):
        raise LTFSFormatError(f"unknown partition {partition!r}")
    return IndexLocation(partition, int(_text(element, "startblock")))


def _name(element: etree._Element) -> str:
    name_el = element.find("name")
    if name_el is None:
        raise LTFSFormatError(f"a <{element.tag}> has no <name>")
    name = name_el.text or ""
    if name_el.get("percentencoded", "false") == "true":
        name = unquote(name)
    return name


def _common(element: etree._Element) -> dict[str, object]:
    xattrs: dict[str, bytes] = {}
    for xattr in element.iterfind("extendedattributes/xattr"):
        key = xattr.findtext("key")
        value_el = xattr.find("value")
        if key is None:
            raise LTFSFormatError("an extended attribute has no <key>")
        raw = "" if value_el is None else (value_el.text or "")
        if value_el is not None and value_el.get("type") == "base64":
            xattrs[key] = base64.b64decode("".join(raw.split()))
        else:
            xattrs[key] = raw.encode("utf-8")
    times = {
        tag: (element.findtext(tag) or "").strip()
        for tag in ("creationtime", "changetime", "modifytime", "accesstime", "backuptime")
    }
    return {
        "name": _name(element),
        "uid": int(element.findtext("fileuid") or 0),
        "creation_time": times["creationtime"],
        "change_time": times["changetime"] or times["creationtime"],
        "modify_time": times["modifytime"] or times["creationtime"],
        "access_time": times["accesstime"] or times["creationtime"],
        "backup_time": times["backuptime"] or times["creationtime"],
        "readonly": (element.findtext("readonly") or "false").strip() == "true",
        "xattrs": xattrs,
    }


def _read_directory(element: etree._Element) -> DirectoryNode:
    node = DirectoryNode(**_common(element))  # type: ignore[arg-type]
    contents = element.find("contents")
    for child in contents if contents is not None else ():
        if child.tag == "directory":
            entry: FileNode | DirectoryNode = _read_directory(child)
        elif child.tag == "file":
            entry = _read_file(child)
        else:
            continue
        if entry.name in node.children or "/" in entry.name or entry.name in ("", ".", ".."):
            raise LTFSFormatError(f"bad or duplicate name {entry.name!r} in the index")
        node.children[entry.name] = entry
    return node


def _read_file(element: etree._Element) -> FileNode:
    extents = [
        Extent(
            file_offset=int(_text(ext, "fileoffset")),
            partition=_text(ext, "partition"),
            start_block=int(_text(ext, "startblock")),
            byte_offset=int(_text(ext, "byteoffset")),
            byte_count=int(_text(ext, "bytecount")),
        )
        for ext in element.iterfind("extentinfo/extent")
    ]
    extents.sort(key=lambda e: e.file_offset)
    return FileNode(
        **_common(element),  # type: ignore[arg-type]
        length=int(_text(element, "length")),
        extents=extents,
    )


def _write_name(parent: etree._Element, name: str) -> None:
    element = etree.SubElement(parent, "name")
    if _XML_UNSAFE.search(name):
        element.set("percentencoded", "true")
        element.text = quote(name, safe="")
    else:
        element.text = name


def _write_common_head(element: etree._Element, node: _Node) -> None:
    sub = etree.SubElement
    sub(element, "readonly").text = "true" if node.readonly else "false"
    sub(element, "creationtime").text = node.creation_time
    sub(element, "changetime").text = node.change_time
    sub(element, "modifytime").text = node.modify_time
    sub(element, "accesstime").text = node.access_time
    sub(element, "backuptime").text = node.backup_time
    sub(element, "fileuid").text = str(node.uid)
    if node.xattrs:
        xattrs = sub(element, "extendedattributes")
        for key in sorted(node.xattrs):
            xattr = sub(xattrs, "xattr")
            sub(xattr, "key").text = key
            raw = node.xattrs[key]
            value = sub(xattr, "value")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None or _XML_UNSAFE.search(text):
                value.set("type", "base64")
                value.text = base64.b64encode(raw).decode("ascii")
            else:
                value.text = text


def _write_directory(parent: etree._Element, node: DirectoryNode) -> None:
    element = etree.SubElement(parent, "directory")
    _write_name(element, node.name)
    _write_common_head(element, node)
    contents = etree.SubElement(element, "contents")
    for name in sorted(node.children):
        child = node.children[name]
        if isinstance(child, DirectoryNode):
            _write_directory(contents, child)
        else:
            _write_file(contents, child)


def _write_file(parent: etree._Element, node: FileNode) -> None:
    sub = etree.SubElement
    element = sub(parent, "file")
    _write_name(element, node.name)
    sub(element, "length").text = str(node.length)
    _write_common_head(element, node)
    if node.extents:
        info = sub(element, "extentinfo")
        for ext in node.extents:
            extent = sub(info, "extent")
            sub(extent, "fileoffset").text = str(ext.file_offset)
            sub(extent, "partition").text = ext.partition
            sub(extent, "startblock").text = str(ext.start_block)
            sub(extent, "byteoffset").text = str(ext.byte_offset)
            sub(extent, "bytecount").text = str(ext.byte_count)
