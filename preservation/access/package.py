"""Pack a DIP: the chosen files out of their version tars, straight into a zip in the cache.

The zip holds one BagIt bag laid out as an E-ARK package
(``<dip>/data/METS.xml``, ``metadata/preservation/premis.xml``,
``representations/<kind>/data/...``). Each file goes from its verified tar
into a STORED zip entry (no compression, so any unzip reads it; ZIP64 where
sizes or offsets need it) while its sha256 is checked against the catalogue.
Local headers are patched in place once each entry's CRC is known, so no
entry needs a data descriptor: streaming readers (Java's ``ZipInputStream``)
read the zip too. The finished zip is hashed (from the page cache) for its
ETag. Memory stays flat whatever the size: a file is copied in 1 MiB chunks,
and tar members are found through one index per tar, not a scan per file.

Access renditions are made by the format policy's access actions with the
same tools as migrations; a file whose rule names none, or whose rendition
fails, goes as it is, and its PREMIS says so. A SIARD archive (a database) is
always given as tables, policy or not: ``<name>.sqlite`` and one CSV per table
in ``<name>-csv/`` take its place (``preservation.siard.access``), under one
PREMIS event naming them all; one that cannot be read as tables goes as it is.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import shutil
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from preservation import __version__
from preservation.access.service import Selected
from preservation.aip.bag import encode_manifest_path
from preservation.errors import FixityMismatchError, PreservationError, SiardError, StorageError
from preservation.metadata.dip import (
    PREMIS_PATH,
    DipDescription,
    DipFile,
    aip_file_uri,
    write_dip_mets,
    write_dip_premis,
)
from preservation.metadata.model import Agent, AgentLink, Event, FileFormat, ObjectLink
from preservation.siard.access import (
    CSV_PUID,
    SIARD_PUIDS,
    SQLITE_PUID,
    UNREAD_SIARD_PUIDS,
    access_copies,
)

__all__ = ["Built", "build_dip"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
SOFTWARE = Agent(id="preservation", name="preservation", type="software", version=__version__)
REQUESTER_ID = "requester"

Progress = Callable[[str, int, int], None]


def _no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class Built:
    path: Path
    size: int
    sha256: str
    files: int


def _zip_info(name: str, size: int, when: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size  # known up front: zipfile picks ZIP64 for this entry if it needs it
    info.external_attr = 0o644 << 16
    return info


def _copy_into(zf: zipfile.ZipFile, name: str, source: IO[bytes], size: int, when: datetime) -> str:
    digest = hashlib.sha256()
    copied = 0
    with zf.open(_zip_info(name, size, when), "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise StorageError(f"{name}: {copied} bytes read, {size} expected")
    return digest.hexdigest()


def _add_bytes(zf: zipfile.ZipFile, name: str, data: bytes, when: datetime) -> None:
    with zf.open(_zip_info(name, len(data), when), "w") as out:
        out.write(data)


def _renamed(path: str, extension: str, taken: set[str]) -> str:
    """The rendition's name: the source's with the new extension, numbered if that is taken."""
    p = PurePosixPath(path)
    stem = str(p.with_suffix("")) if p.suffix else path
    name, n = stem + extension, 1
    while name in taken:  # "a.tif" and "a.png" both make "a.jpg": keep them apart
        n += 1
        name = f"{stem}-{n}{extension}"
    taken.add(name)
    return name


class _Tar:
    """One verified version tar, open, with its members indexed by name once.

    ``TarFile.getmember`` scans the member list on every call: a DIP of many
    files would take time quadratic in their number.
    """

    def __init__(self, path: Path) -> None:
        self.tar = tarfile.open(path, "r:")
        self.index = {m.name: m for m in self.tar.getmembers()}

    def open(self, aip_id: str, s: Selected) -> IO[bytes]:
        name = f"{aip_id}.v{s.version}/{s.member}"
        member = self.index.get(name)
        handle = self.tar.extractfile(member) if member is not None and member.isfile() else None
        if handle is None:
            raise StorageError(
                f"{name} is not a file in the tar of version {s.version}", aip_id=aip_id
            )
        return handle

    def close(self) -> None:
        self.tar.close()


@dataclass(frozen=True)
class _Part:
    """A further file made from the same source (a SIARD's CSV files beside its SQLite copy)."""

    path: str
    local: Path
    file_id: str
    format: FileFormat


@dataclass
class _Entry:
    selected: Selected
    path: str  # in the DIP's representation data/
    local: Path | None = None  # a rendition made on disk; None: copied from the tar
    file_id: str = ""  # its METS file ID and PREMIS object identifier in the DIP
    format: FileFormat | None = None
    event: Event | None = None
    tool: Agent | None = None  # the tool that made its rendition
    extra: list[_Part] = field(default_factory=list)  # more files its rendition made


def _renditions(
    entries: list[_Entry],
    tars: Mapping[int, _Tar],
    aip_id: str,
    work: Path,
    workers: int,
    policy: Any,
    taken: set[str],
) -> None:
    """Make each file's access rendition where the policy names an access action.

    ``taken``: the DIP's paths so far, which a rendition's name must not meet.
    """
    from preservation.errors import ToolUnavailableError
    from preservation.migrate.tools import Job, tool

    by_action: dict[str, tuple[Any, list[tuple[_Entry, Job]]]] = {}
    for n, e in enumerate(entries):
        if e.selected.puid in SIARD_PUIDS or e.selected.puid in UNREAD_SIARD_PUIDS:
            continue  # given as tables (or said why not) by _siard_renditions, whatever the policy
        rule = policy.rule_for(e.selected.puid) if e.selected.puid else None
        action = rule.access if rule is not None else None
        if action is None or action.target_puid == e.selected.puid:
            continue  # no access action, or already in its format: sent as it is, not re-encoded
        src_dir = work / "src" / str(n)
        src_dir.mkdir(parents=True)
        source = src_dir / ("source" + PurePosixPath(e.selected.path).suffix.lower())
        with tars[e.selected.version].open(aip_id, e.selected) as handle, open(source, "wb") as out:
            shutil.copyfileobj(handle, out, _CHUNK)
        output = work / "out" / str(n) / ("rendition" + action.extension)
        output.parent.mkdir(parents=True)
        by_action.setdefault(action.id, (action, []))[1].append((e, Job(n, source, output)))
    for action, pairs in by_action.values():
        try:
            program = tool(action.tool)
            results = program.run(action, [j for _, j in pairs], workers=workers)
            agent = f"{action.tool} {program.version()}"
            tool_agent = Agent(
                id=f"tool-{action.tool}",
                name=action.tool,
                type="software",
                version=program.version(),
            )
        except ToolUnavailableError as err:
            log.warning("access rendition %s: %s", action.id, err)
            results, agent = [], action.tool
            for e, _job in pairs:
                e.event = _rendition_event(e, aip_id, action, agent, f"not made: {err}")
            continue
        for e, _job in pairs:
            e.tool = tool_agent
        outcome = {r.key: r for r in results}
        for e, job in pairs:
            result = outcome.get(job.key)
            if result is None or not result.ok or not job.output.is_file():
                why = (result.error if result is not None else None) or "no output"
                e.event = _rendition_event(
                    e, aip_id, action, agent, f"not made ({why}): sent as it is"
                )
                continue
            e.local = job.output
            taken.discard(e.selected.path)  # the rendition takes its source's place
            e.path = _renamed(e.selected.path, action.extension, taken)
            e.format = FileFormat(
                puids=(action.target_puid,),
                mime=mimetypes.guess_type("x" + action.extension)[0],
                basis="access action " + action.id,
            )
            e.event = _rendition_event(e, aip_id, action, agent, None)


@dataclass(frozen=True)
class _BuiltIn:
    """An access action of this software's own, named in PREMIS as the policy's actions are."""

    id: str
    target_puid: str


SIARD_ACCESS = _BuiltIn("siard-tables", f"{SQLITE_PUID} (SQLite) and {CSV_PUID} (CSV per table)")


def _siard_renditions(
    entries: list[_Entry],
    tars: Mapping[int, _Tar],
    aip_id: str,
    work: Path,
    taken: set[str],
    progress: Progress,
) -> None:
    """Give each SIARD archive as a SQLite database and one CSV file per table.

    SIARD 2.0 and 1.0 archives are sent as they are: their tables are in XML
    namespaces the reader does not read. Their PREMIS event says so.
    """
    agent = f"{SOFTWARE.name} {SOFTWARE.version}"
    for e in entries:
        version = UNREAD_SIARD_PUIDS.get(e.selected.puid or "")
        if version is not None:
            failure = (
                f"not made ({version}, {e.selected.puid}: only SIARD 2.1 and 2.2 tables are "
                "read): sent as it is"
            )
            e.event = _rendition_event(e, aip_id, SIARD_ACCESS, agent, failure)
    siards = [(n, e) for n, e in enumerate(entries) if e.selected.puid in SIARD_PUIDS]
    for done, (n, e) in enumerate(siards):
        progress("render", done, len(siards))
        s = e.selected
        source = work / "siard" / str(n) / "source.siard"
        source.parent.mkdir(parents=True)
        with tars[s.version].open(aip_id, s) as handle, open(source, "wb") as out:
            sha256 = _copy_file(handle, out)
        if sha256 != s.sha256:
            raise FixityMismatchError(
                f"{s.member} of AIP {aip_id} v{s.version}: sha256 {sha256}, catalogue {s.sha256}",
                aip_id=aip_id,
                path=s.member,
            )
        out_dir = work / "siard" / str(n) / "out"
        try:
            copies = access_copies(source, out_dir / "tables.sqlite", out_dir / "csv")
        except SiardError as err:
            # The error names the archive by its copy in the work folder: by its path here.
            failure = f"not made ({err.message.replace(str(source), s.path)}): sent as it is"
            e.event = _rendition_event(e, aip_id, SIARD_ACCESS, agent, failure)
            continue
        except (OSError, PreservationError):
            raise
        except Exception as err:  # noqa: BLE001 - an archive no reader expected: sent as it is
            log.exception("access rendition of %s in AIP %s", s.path, aip_id)
            failure = f"not made ({type(err).__name__}: {err}): sent as it is"
            e.event = _rendition_event(e, aip_id, SIARD_ACCESS, agent, failure)
            continue
        finally:
            source.unlink(missing_ok=True)
        taken.discard(s.path)  # the tables take the archive's place
        e.local = copies.sqlite
        e.path = _renamed(s.path, ".sqlite", taken)
        e.format = FileFormat(
            puids=(SQLITE_PUID,),
            name="SQLite Database File Format",
            mime="application/vnd.sqlite3",
            basis="access rendition of SIARD",
        )
        folder = _free_folder(e.path.removesuffix(".sqlite") + "-csv", taken)
        csv_format = FileFormat(
            puids=(CSV_PUID,),
            name="Comma Separated Values",
            mime="text/csv",
            basis="access rendition of SIARD",
        )
        for k, path in enumerate(copies.csv, 1):
            e.extra.append(_Part(f"{folder}/{path.name}", path, f"{e.file_id}-{k}", csv_format))
            taken.add(f"{folder}/{path.name}")
        e.event = _rendition_event(e, aip_id, SIARD_ACCESS, agent, None)
    progress("render", len(siards), len(siards))


def _copy_file(source: IO[bytes], out: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _free_folder(folder: str, taken: set[str]) -> str:
    """``folder``, numbered if a path of the DIP already lies in it."""
    name, n = folder, 1
    while any(p == name or p.startswith(name + "/") for p in taken):
        n += 1
        name = f"{folder}-{n}"
    return name


def _rendition_event(e: _Entry, aip_id: str, action: Any, agent: str, failure: str | None) -> Event:
    """Linked as the AIP's migration events are: the source by its URI, the rendition by id."""
    s = e.selected
    source = ObjectLink(aip_file_uri(aip_id, s.version, s.member), "source", "URI")
    made = (ObjectLink(e.file_id, "outcome"), *(ObjectLink(p.file_id, "outcome") for p in e.extra))
    return Event(
        id=uuid.uuid4(),
        type="migration",
        datetime=datetime.now(UTC),
        outcome="failure" if failure else "success",
        agents=(
            (AgentLink(e.tool.id, "executing program"), AgentLink(SOFTWARE.id))
            if e.tool is not None
            else (AgentLink(SOFTWARE.id, "executing program"),)
        ),
        objects=(source,) if failure else (source, *made),
        detail=f"access rendition of {e.selected.path} by {action.id} ({agent}) to "
        f"{action.target_puid}",
        outcome_detail=failure,
    )


def build_dip(
    dip: DipDescription,
    selection: Sequence[Selected],
    tars: Mapping[int, Path],
    dest: Path,
    *,
    work: Path,
    policy: Any = None,
    workers: int = 2,
    progress: Progress = _no_progress,
) -> Built:
    """Write the DIP zip to ``dest`` (atomically) from the verified version tars in ``tars``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.part")
    top = f"{dip.dip_id}/"
    rep_data = f"representations/{dip.kind}/data/"
    when = dip.created
    opened = {n: _Tar(p) for n, p in tars.items()}
    try:
        entries = [_Entry(s, s.path, file_id=f"file-{n:06d}") for n, s in enumerate(selection, 1)]
        taken = {e.selected.path for e in entries}
        if dip.kind == "access":
            _siard_renditions(entries, opened, dip.aip_id, work, taken, progress)
        if dip.kind == "access" and policy is not None:
            progress("render", 0, len(entries))
            _renditions(entries, opened, dip.aip_id, work, workers, policy, taken)
        files: list[DipFile] = []
        manifest: list[str] = []
        total = sum(e.selected.size for e in entries)
        done = 0
        progress("build", 0, total)
        with open(tmp, "wb") as raw:
            # A seekable file: zipfile patches each local header once the entry's CRC
            # is known, so no entry needs a data descriptor and streaming readers
            # (Java's ZipInputStream, libarchive) read it as well as unzip does.
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for e in entries:
                    s = e.selected
                    name = f"data/{rep_data}{e.path}"
                    if e.local is not None:
                        size = e.local.stat().st_size
                        with open(e.local, "rb") as fh:
                            sha256 = _copy_into(zf, top + name, fh, size, when)
                        e.local.unlink()
                    else:
                        with opened[s.version].open(dip.aip_id, s) as handle:
                            size = s.size
                            sha256 = _copy_into(zf, top + name, handle, size, when)
                        if sha256 != s.sha256:
                            raise FixityMismatchError(
                                f"{s.member} of AIP {dip.aip_id} v{s.version}: sha256 {sha256}, "
                                f"catalogue {s.sha256}",
                                aip_id=dip.aip_id,
                                path=s.member,
                            )
                    files.append(
                        DipFile(
                            id=e.file_id,
                            path=f"{rep_data}{e.path}",
                            size=size,
                            sha256=sha256,
                            source=aip_file_uri(dip.aip_id, s.version, s.member),
                            original_name=s.path,
                            format=e.format
                            or FileFormat(
                                puids=(s.puid,) if s.puid else (),
                                name=s.format_name,
                                mime=s.mime,
                            ),
                        )
                    )
                    manifest.append(f"{sha256}  {encode_manifest_path(name)}\n")
                    for part in e.extra:  # the CSV files of a SIARD's tables
                        files.append(_copy_part(zf, top, rep_data, part, dip.aip_id, s, when))
                        manifest.append(
                            f"{files[-1].sha256}  "
                            f"{encode_manifest_path(f'data/{rep_data}{part.path}')}\n"
                        )
                    done += s.size
                    progress("build", done, total)
                _write_tags(zf, dip, files, entries, manifest, work, when)
        digest, dest_size = _hash(tmp)  # just written: read back from the page cache
        tmp.replace(dest)
        return Built(dest, dest_size, digest, len(files))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for t in opened.values():
            t.close()


def _copy_part(
    zf: zipfile.ZipFile,
    top: str,
    rep_data: str,
    part: _Part,
    aip_id: str,
    s: Selected,
    when: datetime,
) -> DipFile:
    size = part.local.stat().st_size
    with open(part.local, "rb") as fh:
        sha256 = _copy_into(zf, f"{top}data/{rep_data}{part.path}", fh, size, when)
    part.local.unlink()
    return DipFile(
        id=part.file_id,
        path=f"{rep_data}{part.path}",
        size=size,
        sha256=sha256,
        source=aip_file_uri(aip_id, s.version, s.member),
        original_name=s.path,
        format=part.format,
    )


def _write_tags(
    zf: zipfile.ZipFile,
    dip: DipDescription,
    files: list[DipFile],
    entries: list[_Entry],
    manifest: list[str],
    work: Path,
    when: datetime,
) -> None:
    """PREMIS, METS, then the tag files: after the payload, because they hold its digests."""
    top = f"{dip.dip_id}/"
    dissemination = Event(
        id=uuid.uuid4(),
        type="dissemination",
        datetime=when,
        outcome="success",
        agents=(
            AgentLink(SOFTWARE.id, "executing program"),
            AgentLink(REQUESTER_ID, "authorizer"),
        ),
        detail=f"{dip.kind} DIP of AIP {dip.aip_id} version {dip.aip_version}: "
        f"{len(files)} file(s), requested by {dip.requested_by}",
    )
    events = [dissemination] + [e.event for e in entries if e.event is not None]
    agents = [
        SOFTWARE,
        Agent(id=REQUESTER_ID, name=dip.requested_by or "unknown", type="person"),
    ]
    # The tools that made access renditions, each once (as the AIP's migrations name them).
    agents += list({e.tool.id: e.tool for e in entries if e.tool is not None}.values())
    premis = work / "premis.xml"
    write_dip_premis(premis, dip, files, events, agents)
    premis_sha256, premis_size = _hash(premis)
    with open(premis, "rb") as fh:
        _copy_into(zf, f"{top}data/{PREMIS_PATH}", fh, premis_size, when)
    mets = work / "METS.xml"
    write_dip_mets(mets, dip, files, premis_size=premis_size, premis_sha256=premis_sha256)
    mets_sha256, mets_size = _hash(mets)
    with open(mets, "rb") as fh:
        _copy_into(zf, f"{top}data/METS.xml", fh, mets_size, when)
    manifest += [
        f"{premis_sha256}  data/{PREMIS_PATH}\n",
        f"{mets_sha256}  data/METS.xml\n",
    ]
    payload_bytes = sum(f.size for f in files) + premis_size + mets_size
    tags = {
        "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": _bag_info(dip, payload_bytes, len(files) + 2).encode("utf-8"),
        "manifest-sha256.txt": "".join(sorted(manifest)).encode("utf-8"),
    }
    tagmanifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(tags.items())
    )
    tags["tagmanifest-sha256.txt"] = tagmanifest.encode("utf-8")
    for name, data in tags.items():
        _add_bytes(zf, top + name, data, when)
    premis.unlink()
    mets.unlink()


def _bag_info(dip: DipDescription, payload_bytes: int, payload_files: int) -> str:
    from preservation.aip.bag import _tag_value

    lines = [
        ("DIP-Identifier", dip.dip_id),
        ("AIP-Identifier", dip.aip_id),
        ("AIP-Version", str(dip.aip_version)),
        ("DIP-Kind", dip.kind),
        ("Tenant", dip.tenant),
        ("Requested-By", dip.requested_by),
        ("Bagging-Date", dip.created.date().isoformat()),
        ("Bag-Software-Agent", f"preservation {__version__}"),
        ("Payload-Oxum", f"{payload_bytes}.{payload_files}"),
    ]
    return "".join(f"{k}: {_tag_value(v)}\n" for k, v in lines)


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
