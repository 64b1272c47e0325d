"""Turn a prepared AIP folder into a BagIt 1.0 bag (RFC 8493), hashing as little as possible.

The originals are the bulk of an AIP and were already hashed (sha256 and
sha512) while staging read them for the first and only time; reading a
terabyte again just to write manifests would double the ingest's I/O. So the
digests recorded at staging are *trusted* here, and only the files written
since (METS, PREMIS, schemas, the SIP's tag files) are hashed, each with one
read feeding both algorithms. If staging recorded a wrong digest, the bag fails
validation later, loudly; that is the design, and a test pins it.

The bag is written by hand rather than with ``bagit.make_bag``: that function
rehashes every file, writes BagIt 0.97 and does not percent-encode ``%``. The
output still validates with stock ``bagit.Bag(path).validate()`` (except for
file names containing ``%``, which bagit-python 1.9 fails to decode; see
:func:`encode_manifest_path`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from preservation import SOFTWARE_AGENT
from preservation.aip.layout import walk_package
from preservation.errors import FixityMismatchError, MetadataError

__all__ = [
    "ALGORITHMS",
    "BagSummary",
    "decode_manifest_path",
    "encode_manifest_path",
    "write_aip_bag",
]

#: Two algorithms from different families: one broken later still leaves the other.
ALGORITHMS: tuple[str, ...] = ("sha256", "sha512")
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
CHUNK = 1 << 20
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_PARTIAL_SUFFIX = ".partial"
_MANIFEST_NAME = re.compile(r"^(tag)?manifest-[A-Za-z0-9]+\.txt$")
#: Tags copied from the SIP's bag-info.txt, case-insensitively, all their values.
COPIED_TAGS = ("External-Identifier", "Source-Organization")


@dataclass(frozen=True)
class BagSummary:
    """What was written, for PREMIS events and the catalogue."""

    path: Path
    payload_octets: int
    payload_files: int
    #: bag-relative path -> {algorithm: hex digest}, every payload file
    digests: Mapping[str, Mapping[str, str]] = field(repr=False)
    #: bag-relative paths hashed here because staging had not (METS, schemas, ...)
    hashed_here: tuple[str, ...] = field(repr=False)
    #: tag file name -> {algorithm: hex digest}, as in the tag manifests
    tag_digests: Mapping[str, Mapping[str, str]] = field(repr=False)

    @property
    def payload_oxum(self) -> str:
        return f"{self.payload_octets}.{self.payload_files}"


def encode_manifest_path(path: str) -> str:
    """Percent-encode a path for a manifest line, as RFC 8493 §2.1.3 requires.

    Only ``%``, CR and LF are encoded (``%`` first, so that the escapes added
    for CR and LF are not encoded again). Note: bagit-python 1.9 decodes only
    ``%0D``/``%0A``, so it misreads names containing ``%``; the RFC wins here,
    because the manifests must stay readable by any conforming tool for decades.
    """
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_manifest_path(encoded: str) -> str:
    """Inverse of :func:`encode_manifest_path` (case-insensitive hex, one pass)."""
    table = {"%25": "%", "%0D": "\r", "%0A": "\n"}
    return re.sub(r"%(25|0[dD]|0[aA])", lambda m: table[m.group(0).upper()], encoded)


def hash_file(path: Path) -> dict[str, str]:
    """Both manifest digests (sha256, sha512) from one read of the file."""
    hashers = [hashlib.new(alg) for alg in ALGORITHMS]
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for h in hashers:
                h.update(chunk)
    return {alg: h.hexdigest() for alg, h in zip(ALGORITHMS, hashers, strict=True)}


def _hash_files(paths: list[tuple[str, Path]], processes: int) -> dict[str, dict[str, str]]:
    """Hash in threads: hashlib and file reads release the GIL, and threads (unlike
    processes) are safe inside a Celery prefork worker."""
    if processes <= 1 or len(paths) <= 1:
        return {rel: hash_file(p) for rel, p in paths}
    with ThreadPoolExecutor(max_workers=processes) as pool:
        results = pool.map(hash_file, [p for _, p in paths])
        return {rel: digests for (rel, _), digests in zip(paths, results, strict=True)}


def _check_known(known_digests: Mapping[str, Mapping[str, str]]) -> None:
    for rel, digests in known_digests.items():
        for alg in ALGORITHMS:
            value = digests.get(alg, "")
            if len(value) != _HEX_LENGTH[alg] or not re.fullmatch(r"[0-9a-f]+", value):
                raise ValueError(f"known digest {alg} of {rel} is not a lowercase hex {alg}")


def _tag_value(value: str) -> str:
    """One line per value: a CR or LF inside a value would forge a new tag."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(value)).strip()


def _lookup(bag_info: Mapping[str, Iterable[str]], label: str) -> list[str]:
    values: list[str] = []
    for key, got in bag_info.items():
        if key.strip().lower() == label.lower():
            values.extend([got] if isinstance(got, str) else list(got))
    return [v for v in (_tag_value(x) for x in values) if v]


def _bag_info(
    *,
    aip_id: str,
    version: int,
    tenant: str,
    source_bag_name: str,
    sip_info: Mapping[str, Iterable[str]],
    bagging_date: dt.date,
    octets: int,
    files: int,
) -> bytes:
    tags: list[tuple[str, str]] = [
        ("AIP-Identifier", aip_id),
        ("AIP-Version", str(version)),
        ("Tenant", tenant),
        ("Source-Bag-Name", source_bag_name),
    ]
    for label in COPIED_TAGS:
        tags += [(label, v) for v in _lookup(sip_info, label)]
    tags += [
        ("Bagging-Date", bagging_date.isoformat()),
        ("Bag-Software-Agent", SOFTWARE_AGENT),
        ("Payload-Oxum", f"{octets}.{files}"),
    ]
    return "".join(f"{label}: {_tag_value(value)}\n" for label, value in tags).encode("utf-8")


def _manifest(entries: Mapping[str, Mapping[str, str]], alg: str) -> bytes:
    # Two spaces, as sha256sum writes them: `sha256sum -c manifest-sha256.txt`
    # then checks a bag with no BagIt software at all.
    lines = [f"{entries[p][alg]}  {encode_manifest_path(p)}\n" for p in sorted(entries)]
    return "".join(lines).encode("utf-8")


def _write_atomic(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + _PARTIAL_SUFFIX)
    partial.write_bytes(content)
    os.replace(partial, path)


def _prepare_root(root: Path) -> None:
    """Clear what an earlier, interrupted run may have left; refuse strangers.

    Anything else at the top of the bag would be an unmanifested tag file
    written to tape, so it is an error rather than something silently bagged.
    """
    ours = {"data", "bagit.txt", "bag-info.txt"}
    for entry in sorted(os.listdir(root)):
        path = root / entry
        if entry.endswith(_PARTIAL_SUFFIX) or (
            _MANIFEST_NAME.match(entry) and entry.split("-", 1)[1][:-4] not in ALGORITHMS
        ):
            path.unlink()
        elif entry not in ours and not _MANIFEST_NAME.match(entry):
            raise MetadataError(
                f"unexpected {entry!r} at the top of the AIP; only data/ and the bag's own "
                "tag files belong there",
                path=path,
            )


def write_aip_bag(
    aip_dir: Path,
    *,
    aip_id: str,
    version: int,
    tenant: str,
    source_bag_name: str,
    bag_info: Mapping[str, Iterable[str]],
    known_digests: Mapping[str, Mapping[str, str]],
    processes: int = 2,
    bagging_date: dt.date | None = None,
) -> BagSummary:
    """Make ``aip_dir`` (its ``data/`` already filled) a BagIt 1.0 bag; safe to rerun.

    ``bag_info`` is the SIP's bag-info (label -> values); External-Identifier
    and Source-Organization are carried over so the AIP is findable by the
    submitter's terms. ``known_digests`` maps bag-relative paths
    (``data/representations/rep1/data/a.tif``) to ``{"sha256": ..., "sha512": ...}``
    computed at staging; those files are not read again. ``bagging_date``
    defaults to today (UTC); pass it to reproduce a bag byte for byte.
    """
    root = Path(aip_dir)
    payload = root / "data"
    if not (payload / "METS.xml").is_file():
        raise MetadataError(
            "the AIP has no data/METS.xml; describe the package before bagging it",
            aip_id=aip_id,
            path=payload / "METS.xml",
        )
    _check_known(known_digests)
    _prepare_root(root)

    files = {f"data/{e.relpath}": e for e in walk_package(payload) if not e.is_dir}
    missing = sorted(set(known_digests) - set(files))
    if missing:
        raise FixityMismatchError(
            f"{len(missing)} file(s) hashed at staging are not in the AIP, e.g. {missing[0]}",
            aip_id=aip_id,
            path=missing[0],
            missing=missing,
        )
    to_hash = [(rel, e.path) for rel, e in files.items() if rel not in known_digests]
    digests: dict[str, Mapping[str, str]] = dict(_hash_files(to_hash, processes))
    digests.update({rel: known_digests[rel] for rel in files if rel in known_digests})

    octets = sum(e.size for e in files.values())
    tag_files: dict[str, bytes] = {"bagit.txt": BAGIT_TXT}
    tag_files["bag-info.txt"] = _bag_info(
        aip_id=aip_id,
        version=version,
        tenant=tenant,
        source_bag_name=source_bag_name,
        sip_info=bag_info,
        bagging_date=bagging_date or dt.datetime.now(dt.UTC).date(),
        octets=octets,
        files=len(files),
    )
    for alg in ALGORITHMS:
        tag_files[f"manifest-{alg}.txt"] = _manifest(digests, alg)

    tag_digests = {
        name: {alg: hashlib.new(alg, content).hexdigest() for alg in ALGORITHMS}
        for name, content in tag_files.items()
    }
    for name, content in tag_files.items():
        _write_atomic(root / name, content)
    for alg in ALGORITHMS:
        _write_atomic(root / f"tagmanifest-{alg}.txt", _manifest(tag_digests, alg))

    return BagSummary(
        path=root,
        payload_octets=octets,
        payload_files=len(files),
        digests=digests,
        hashed_here=tuple(rel for rel, _ in to_hash),
        tag_digests=tag_digests,
    )
