"""RFC 4998 Evidence Records: proof that a version existed, unchanged, since its first stamp.

A record is what outlives us: a version's hashes, the reduced hash tree that
leads from them to a time-stamped root, and the renewals that keep the proof
alive as signature algorithms and hash algorithms weaken. It is stored and
exchanged as DER only, so that any RFC 4998 verifier, not just this one, can
check it; these functions take and give bytes for the same reason.

Two renewals (§5.2), and what each new ArchiveTimeStamp must cover:

* time-stamp renewal (the TSA's key or algorithm ages): a new ArchiveTimeStamp
  in the same chain, over the hash of the previous one's ``timeStamp`` field;
* hash-tree renewal (the hash algorithm ages): a new chain, over
  ``H'(h'(d) + H'(ArchiveTimeStampSequence so far))`` for each data object d.

:func:`verify` applies the §5.3 rules in order and stops at the first that
fails, naming the chain, the ArchiveTimeStamp and the rule, because the one
reading a failed verification is deciding whether a record can be trusted.

The ASN.1 below is the module of RFC 4998 Appendix A, DEFINITIONS IMPLICIT
TAGS. asn1crypto's own ``tsp.ArchiveTimeStampSequence`` lacks the chain level,
so these classes are defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]

from preservation.errors import PreservationError
from preservation.evidence.hashtree import ALGORITHMS, hasher, verify_reduced

if TYPE_CHECKING:
    from preservation.evidence.tsa import StampInfo

__all__ = [
    "ArchiveTimeStamp",
    "ArchiveTimeStampChain",
    "ArchiveTimeStampSequence",
    "DataObject",
    "EvidenceError",
    "EvidenceRecord",
    "PartialHashtree",
    "VerificationReport",
    "append_chain",
    "append_to_last_chain",
    "archive_time_stamp",
    "ats_algorithm",
    "data_digests",
    "evidence_record",
    "format_time",
    "parse",
    "timestamp_renewal_input",
    "tree_renewal_leaves",
    "verify",
]

CHUNK = 1024 * 1024


class EvidenceError(PreservationError):
    """A record or token is malformed or does not verify; the message says what and where."""


def format_time(moment: datetime) -> str:
    """UTC in ISO 8601 with a ``Z``; milliseconds only when the TSA gave them."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


# --- ASN.1 (RFC 4998 Appendix A) ---------------------------------------------


class AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    """A digest AlgorithmIdentifier written with its parameters absent.

    asn1crypto's ``DigestAlgorithm`` always writes NULL parameters for SHA-2;
    RFC 5754 §2 says to generate them absent (and to accept both, which this
    does: parameters are read as anything).
    """

    _fields = [
        ("algorithm", algos.DigestAlgorithmId),
        ("parameters", core.Any, {"optional": True}),
    ]


class PartialHashtree(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.OctetString


class PartialHashtrees(core.SequenceOf):  # type: ignore[misc]
    _child_spec = PartialHashtree


class ArchiveTimeStamp(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("digest_algorithm", AlgorithmIdentifier, {"implicit": 0, "optional": True}),
        ("attributes", cms.CMSAttributes, {"implicit": 1, "optional": True}),
        ("reduced_hashtree", PartialHashtrees, {"implicit": 2, "optional": True}),
        ("time_stamp", cms.ContentInfo),
    ]


class ArchiveTimeStampChain(core.SequenceOf):  # type: ignore[misc]
    _child_spec = ArchiveTimeStamp


class ArchiveTimeStampSequence(core.SequenceOf):  # type: ignore[misc]
    _child_spec = ArchiveTimeStampChain


class DigestAlgorithms(core.SequenceOf):  # type: ignore[misc]
    _child_spec = AlgorithmIdentifier


class CryptoInfos(core.SequenceOf):  # type: ignore[misc]
    _child_spec = cms.CMSAttribute


class EncryptionInfo(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("encryption_info_type", core.ObjectIdentifier),
        ("encryption_info_value", core.Any),
    ]


class EvidenceRecord(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("version", core.Integer),
        ("digest_algorithms", DigestAlgorithms),
        ("crypto_infos", CryptoInfos, {"implicit": 0, "optional": True}),
        ("encryption_info", EncryptionInfo, {"implicit": 1, "optional": True}),
        ("archive_time_stamp_sequence", ArchiveTimeStampSequence),
    ]


# --- building ------------------------------------------------------------------


def _algorithm_name(identifier: Any) -> str:
    return str(identifier["algorithm"].native)


def _load_ats(der: bytes, where: str = "the ArchiveTimeStamp") -> Any:
    try:
        ats = ArchiveTimeStamp.load(der, strict=True)
        _check_ats(ats, where)
    except EvidenceError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        raise EvidenceError(f"{where} is not an RFC 4998 ArchiveTimeStamp: {err}") from None
    return ats


def _check_ats(ats: Any, where: str) -> None:
    """Touch every field a verifier reads, so a broken one fails here, named."""
    info = ats["time_stamp"]
    if info["content_type"].native != "signed_data":
        raise EvidenceError(f"{where}: its timeStamp is not CMS SignedData")
    encap = info["content"]["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise EvidenceError(f"{where}: its timeStamp does not hold an RFC 3161 TSTInfo")
    imprint = encap["content"].parsed["message_imprint"]
    _ = imprint["hashed_message"].native
    _ = ats_algorithm(ats)
    reduced = ats["reduced_hashtree"]
    if not isinstance(reduced, core.Void):
        if len(reduced) == 0 or any(len(partial) == 0 for partial in reduced):
            raise EvidenceError(f"{where}: its reduced hash tree has an empty list")
        _ = reduced.native


def ats_algorithm(ats: Any) -> str:
    """The ArchiveTimeStamp's hash algorithm: its own field, else the token's (RFC 4998 §4.1)."""
    if not isinstance(ats["digest_algorithm"], core.Void):
        return _algorithm_name(ats["digest_algorithm"])
    encap = ats["time_stamp"]["content"]["encap_content_info"]
    return _algorithm_name(encap["content"].parsed["message_imprint"]["hash_algorithm"])


def _reduced(ats: Any) -> list[list[bytes]] | None:
    tree = ats["reduced_hashtree"]
    if isinstance(tree, core.Void):
        return None
    return [[bytes(value.native) for value in partial] for partial in tree]


def _imprint(ats: Any) -> bytes:
    encap = ats["time_stamp"]["content"]["encap_content_info"]
    return bytes(encap["content"].parsed["message_imprint"]["hashed_message"].native)


def archive_time_stamp(algorithm: str, reduced: list[list[bytes]] | None, token: bytes) -> bytes:
    """One ArchiveTimeStamp (DER): the token as the TSA signed it, byte for byte.

    The algorithm is written even though the token's imprint implies it: a
    reader should not have to open the token to know which hash to compute.
    """
    size = hasher(algorithm)().digest_size
    if reduced is not None:
        if not reduced or not all(reduced):
            raise ValueError("a reduced hash tree has at least one list, and no empty one")
        if any(len(v) != size for partial in reduced for v in partial):
            raise ValueError(f"a {algorithm} reduced hash tree holds {size}-byte hashes only")
    try:
        info = cms.ContentInfo.load(token, strict=True)
    except ValueError as err:
        raise EvidenceError(f"the time-stamp token is not a CMS ContentInfo: {err}") from None
    value: dict[str, Any] = {"digest_algorithm": {"algorithm": algorithm}, "time_stamp": info}
    if reduced is not None:
        value["reduced_hashtree"] = [[bytes(v) for v in partial] for partial in reduced]
    der = bytes(ArchiveTimeStamp(value).dump())
    ats = _load_ats(der, "the new ArchiveTimeStamp")
    # A token over another tree would only be found when the record is verified,
    # perhaps years on; the reduced tree's root must be what was stamped.
    if reduced is not None:
        root = verify_reduced(reduced[0][0], reduced, algorithm)
        if root != _imprint(ats):
            raise EvidenceError(
                f"the time-stamp covers {_imprint(ats).hex()}, but the reduced hash tree "
                f"leads to {root.hex()}"
            )
    return der


def _digest_algorithms(chains: Sequence[Sequence[Any]]) -> list[dict[str, str]]:
    names: list[str] = []
    for chain in chains:
        for ats in chain:
            name = ats_algorithm(ats)
            if name not in names:
                names.append(name)
    return [{"algorithm": name} for name in names]


def _check_chain(chain: Sequence[Any], number: int) -> None:
    if not chain:
        raise EvidenceError(f"chain {number} has no ArchiveTimeStamp")
    first = ats_algorithm(chain[0])
    for position, ats in enumerate(chain[1:], start=2):
        if ats_algorithm(ats) != first:
            raise EvidenceError(
                f"chain {number}, ATS {position} uses {ats_algorithm(ats)} after {first}: "
                "all ArchiveTimeStamps of a chain use one hash algorithm (RFC 4998 §5.3)"
            )


def evidence_record(chains: Sequence[Sequence[bytes]]) -> bytes:
    """An EvidenceRecord (DER, version 1) of ArchiveTimeStampChains given as ATS DERs."""
    if not chains:
        raise EvidenceError("an evidence record needs at least one ArchiveTimeStampChain")
    parsed = [
        [_load_ats(der, f"chain {k}, ATS {j}") for j, der in enumerate(chain, start=1)]
        for k, chain in enumerate(chains, start=1)
    ]
    for number, chain in enumerate(parsed, start=1):
        _check_chain(chain, number)
    record = EvidenceRecord(
        {
            "version": 1,
            "digest_algorithms": _digest_algorithms(parsed),
            "archive_time_stamp_sequence": [ArchiveTimeStampChain(c) for c in parsed],
        }
    )
    return bytes(record.dump())


def parse(der: bytes) -> EvidenceRecord:
    """The EvidenceRecord in ``der``, checked down to every ArchiveTimeStamp's fields."""
    try:
        record: EvidenceRecord = EvidenceRecord.load(der, strict=True)
        version = record["version"].native
        if version != 1:
            raise EvidenceError(f"the evidence record is version {version}, not 1 (RFC 4998)")
        _ = record["digest_algorithms"].native
        if not isinstance(record["crypto_infos"], core.Void):
            _ = record["crypto_infos"].native
        if not isinstance(record["encryption_info"], core.Void):
            _ = record["encryption_info"].native
        sequence = record["archive_time_stamp_sequence"]
        if len(sequence) == 0:
            raise EvidenceError("the evidence record has no ArchiveTimeStampChain")
        for k, chain in enumerate(sequence, start=1):
            _check_chain(list(chain), k)
            for j, ats in enumerate(chain, start=1):
                _check_ats(ats, f"chain {k}, ATS {j}")
    except EvidenceError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        raise EvidenceError(f"not an RFC 4998 evidence record: {err}") from None
    return record


def _chains(record: Any) -> list[list[Any]]:
    return [list(chain) for chain in record["archive_time_stamp_sequence"]]


def _sequence_der(chains: Sequence[Sequence[Any]]) -> bytes:
    """The DER ArchiveTimeStampSequence of ``chains``, tag and length included (§5.2)."""
    return bytes(ArchiveTimeStampSequence([ArchiveTimeStampChain(list(c)) for c in chains]).dump())


def timestamp_renewal_input(ats_der: bytes, algorithm: str) -> bytes:
    """What a time-stamp renewal must cover (RFC 4998 §5.2): the hash of the previous
    ArchiveTimeStamp's ``timeStamp`` field, the DER ContentInfo as the TSA signed it."""
    ats = _load_ats(ats_der)
    return _renewal_input(ats, algorithm)


def _renewal_input(ats: Any, algorithm: str) -> bytes:
    return bytes(hasher(algorithm)(ats["time_stamp"].dump()).digest())


def _tree_renewal_leaf(new: Callable[..., Any], data_hash: bytes, sequence_hash: bytes) -> bytes:
    # RFC 4998 §5.2, hash-tree renewal, step 4: "h(i) = H(h(d(i)) + ha(i))": the data
    # object's hash first, then the hash of the ArchiveTimeStampSequence, plainly
    # concatenated (not sorted); §5.3 step 3 reads the same order ("the concatenation
    # of the data object hash and the hash value of all older ArchiveTimeStampChain").
    return bytes(new(data_hash + sequence_hash).digest())


def tree_renewal_leaves(
    record_der: bytes, data_hashes: Sequence[bytes], algorithm: str
) -> list[bytes]:
    """The leaves a hash-tree renewal with ``algorithm`` must cover for this record (§5.2).

    ``data_hashes`` are the data objects' hashes computed with the NEW
    algorithm; the leaves go into one group per version, in the same order.
    """
    new = hasher(algorithm)
    size = new().digest_size
    for value in data_hashes:
        if len(value) != size:
            raise ValueError(f"a {algorithm} hash has {size} bytes, not {len(value)}")
    record = parse(record_der)
    sequence_hash = bytes(new(_sequence_der(_chains(record))).digest())
    return [_tree_renewal_leaf(new, h, sequence_hash) for h in data_hashes]


def _with_sequence(record: Any, chains: list[list[Any]]) -> bytes:
    record["archive_time_stamp_sequence"] = ArchiveTimeStampSequence(
        [ArchiveTimeStampChain(c) for c in chains]
    )
    record["digest_algorithms"] = DigestAlgorithms(_digest_algorithms(chains))
    return bytes(record.dump())


def append_chain(record_der: bytes, ats_der: bytes) -> bytes:
    """The record with a new chain holding ``ats_der``: a hash-tree renewal (§5.2).

    Whether the new ArchiveTimeStamp covers the right leaves needs the data,
    so it is left to :func:`verify`.
    """
    record = parse(record_der)
    return _with_sequence(record, [*_chains(record), [_load_ats(ats_der)]])


def append_to_last_chain(record_der: bytes, ats_der: bytes) -> bytes:
    """The record with ``ats_der`` after the last ArchiveTimeStamp: a time-stamp renewal.

    Refused unless it uses the chain's algorithm and covers the last
    time-stamp, since either mistake would make the whole record fail later.
    """
    record = parse(record_der)
    chains = _chains(record)
    last = chains[-1][-1]
    ats = _load_ats(ats_der)
    algorithm = ats_algorithm(ats)
    if algorithm != ats_algorithm(last):
        raise EvidenceError(
            f"the renewal uses {algorithm}, the chain it extends {ats_algorithm(last)} "
            "(RFC 4998 §5.3: one hash algorithm per chain)"
        )
    if not _covers(ats, _renewal_input(last, algorithm)):
        raise EvidenceError(
            "the renewal does not cover the record's last time-stamp (RFC 4998 §5.2)"
        )
    chains[-1].append(ats)
    return _with_sequence(record, chains)


def _covers(ats: Any, leaf: bytes) -> bool:
    reduced = _reduced(ats)
    if reduced is None:
        return leaf == _imprint(ats)
    return leaf in reduced[0]


# --- verification ----------------------------------------------------------------

DataObject = Path | str | bytes
"""A data object to verify: a file (by path) or its bytes."""


def data_digests(obj: DataObject, algorithms: Sequence[str]) -> dict[str, bytes]:
    """``obj`` hashed with every algorithm at once: one read of a tar, however many chains."""
    hashes = {name: hasher(name)() for name in algorithms}
    if isinstance(obj, bytes):
        for h in hashes.values():
            h.update(obj)
    else:
        with open(obj, "rb") as handle:
            while chunk := handle.read(CHUNK):
                for h in hashes.values():
                    h.update(chunk)
    return {name: bytes(h.digest()) for name, h in hashes.items()}


def _named(
    data: Mapping[str, DataObject] | Sequence[DataObject] | DataObject,
) -> dict[str, DataObject]:
    if isinstance(data, bytes | str | Path):
        data = [data]
    if isinstance(data, Mapping):
        return dict(data)
    named: dict[str, DataObject] = {}
    for number, obj in enumerate(data, start=1):
        named[f"data object {number}" if isinstance(obj, bytes) else str(obj)] = obj
    return named


@dataclass
class VerificationReport:
    """The outcome of :func:`verify`: each step that held, and the first that did not."""

    ok: bool
    steps: list[str] = field(default_factory=list)
    failure: str | None = None
    stamps: list[StampInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--json`` output and API answers."""
        return {
            "ok": self.ok,
            "steps": list(self.steps),
            "failure": self.failure,
            "stamps": [stamp.to_dict() for stamp in self.stamps],
        }

    def __str__(self) -> str:
        lines = [*self.steps]
        lines.append("VERIFIED" if self.ok else f"FAILED: {self.failure}")
        return "\n".join(lines)


class _Failed(Exception):
    pass


def verify(
    record_der: bytes,
    data: Mapping[str, DataObject] | Sequence[DataObject],
    verify_token: Callable[[bytes, bytes, str], StampInfo],
) -> VerificationReport:
    """Check ``record_der`` against the data object group ``data`` (RFC 4998 §5.3).

    ``data`` is the group's objects (a version's tar, and its METS if it was
    covered too), named by a mapping's keys or by their paths.
    ``verify_token(token, root, algorithm)`` checks a token's signature and
    imprint against the trusted TSA certificates, raising EvidenceError; a
    ``TsaTrust``'s ``verify`` method is one. Files are read once, hashed with
    every algorithm the record uses. A malformed record or token is a failed
    report, never an exception: the answer to "does this verify?" is no. A
    file that cannot be read is an OSError: that answers nothing about the record.
    """
    report = VerificationReport(ok=False)
    try:
        record = parse(record_der)
        objects = _named(data)
        if not objects:
            raise _Failed("no data object was given to verify against the record")
        chains = _chains(record)
        listed = [_algorithm_name(a) for a in record["digest_algorithms"]]
        used = [d["algorithm"] for d in _digest_algorithms(chains)]
        for name in used:
            if name not in listed:
                raise _Failed(f"the record's digestAlgorithms does not list {name}, which it uses")
            if name not in ALGORITHMS:
                raise _Failed(f"the record uses {name}, which this verifier cannot compute")
        hashes = {name: data_digests(obj, used) for name, obj in objects.items()}
        for step in _walk(chains, hashes, verify_token, report):
            report.steps.append(step)
    except _Failed as failed:
        report.failure = str(failed)
        return report
    except EvidenceError as err:
        report.failure = err.message
        return report
    report.ok = True
    return report


def _walk(
    chains: list[list[Any]],
    hashes: dict[str, dict[str, bytes]],
    verify_token: Callable[[bytes, bytes, str], StampInfo],
    report: VerificationReport,
) -> Iterator[str]:
    previous: StampInfo | None = None
    for k, chain in enumerate(chains, start=1):
        algorithm = ats_algorithm(chain[0])
        new = hasher(algorithm)
        for j, ats in enumerate(chain, start=1):
            where = f"chain {k}, ATS {j}"
            reduced = _reduced(ats)
            leaves: dict[str, bytes]
            if j > 1:
                leaves = {f"the time-stamp of ATS {j - 1}": _renewal_input(chain[j - 2], algorithm)}
            elif k == 1:
                leaves = {name: h[algorithm] for name, h in hashes.items()}
            else:
                sequence_hash = bytes(new(_sequence_der(chains[: k - 1])).digest())
                leaves = {
                    name: _tree_renewal_leaf(new, h[algorithm], sequence_hash)
                    for name, h in hashes.items()
                }
            for name, leaf in leaves.items():
                if _covers(ats, leaf):
                    continue
                if j > 1:
                    raise _Failed(
                        f"{where} does not cover {name} "
                        "(time-stamp renewal, RFC 4998 §5.2): the chain is broken"
                    )
                if k == 1:
                    raise _Failed(
                        f"{name} is not covered by this evidence record ({where}: its "
                        f"{algorithm} hash is not among the hashes time-stamped)"
                    )
                raise _Failed(
                    f"{where}: {name} is not covered by this hash-tree renewal to {algorithm} "
                    "(RFC 4998 §5.3: H(h(d) + H(ArchiveTimeStampSequence)) is not among "
                    "the hashes time-stamped)"
                )
            first = next(iter(leaves.values()))
            root = first if reduced is None else verify_reduced(first, reduced, algorithm)
            try:
                info = verify_token(ats["time_stamp"].dump(), root, algorithm)
            except EvidenceError as err:
                raise _Failed(f"{where}: {err.message}") from None
            if (
                previous is not None
                and previous.signer_not_after is not None
                and info.gen_time > previous.signer_not_after
            ):
                raise _Failed(
                    f"{where} was stamped at {format_time(info.gen_time)}, after the "
                    "certificate of the time-stamp it renews had expired "
                    f"({format_time(previous.signer_not_after)}): RFC 4998 §5.3 wants each "
                    "time-stamp renewed while it is still valid"
                )
            if previous is not None and info.gen_time < previous.gen_time:
                raise _Failed(
                    f"{where} was stamped at {format_time(info.gen_time)}, before the "
                    f"time-stamp it follows ({format_time(previous.gen_time)}): "
                    "time-stamps must be in ascending order"
                )
            previous = info
            report.stamps.append(info)
            depth = 0 if reduced is None else len(reduced) - 1
            yield f"{where}: {algorithm} tree of depth {depth}, {info.describe()}"
