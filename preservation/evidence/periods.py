"""Evidence records in the catalogue: periods sealed into hash trees, records assembled, renewed.

RFC 4998 in the shape an archive needs: one time-stamp per period, not per
version. Every version committed since the last seal becomes one leaf group
(its tar's digest and its root METS's digest); the period's tree root is
time-stamped once; each version keeps only its reduced hash tree (log2 n
hashes). A version's ``EvidenceRecord`` is assembled on demand from its
leaves and the stamps above them.

Renewal follows §5.2 and §5.3. A time-stamp renewal covers the time-stamps
of every open chain in one new tree (one TSA call for the whole archive). A
hash-tree renewal rehashes the data itself with the new algorithm (the tars
are read back from tape), over the whole record so far, and starts a new
chain per version; the old chains are closed.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    AIPState,
    AIPVersion,
    EvidenceLeaf,
    EvidenceStamp,
    utcnow,
)
from preservation.context import Context
from preservation.errors import ConflictError, NotFoundError
from preservation.evidence import hashtree, records
from preservation.evidence.tsa import TimeStampAuthority

__all__ = [
    "KIND_INITIAL",
    "KIND_REHASH",
    "KIND_RENEWAL",
    "RenewalReport",
    "export_record",
    "pack_reduced",
    "record_for_version",
    "renew_hash_trees",
    "renew_timestamps",
    "seal_periods",
    "unpack_reduced",
]

log = logging.getLogger(__name__)

KIND_INITIAL = "initial"
KIND_RENEWAL = "renewal"
KIND_REHASH = "rehash"
_BATCH = 5000


def pack_reduced(lists: Sequence[Sequence[bytes]]) -> bytes:
    """PartialHashtree lists as bytes: per list, a count byte then the hashes."""
    out = bytearray()
    for level in lists:
        out.append(len(level))
        for h in level:
            out += h
    return bytes(out)


def unpack_reduced(data: bytes, size: int) -> list[list[bytes]]:
    lists: list[list[bytes]] = []
    i = 0
    while i < len(data):
        count = data[i]
        i += 1
        lists.append([data[i + k * size : i + (k + 1) * size] for k in range(count)])
        i += count * size
    return lists


def _hash_size(algorithm: str) -> int:
    return int(hashtree.ALGORITHMS[algorithm]().digest_size)


def _split(hashes: bytes, size: int) -> list[bytes]:
    return [hashes[i : i + size] for i in range(0, len(hashes), size)]


def _insert_tree(
    session: Session,
    stamp: EvidenceStamp,
    groups: list[list[bytes]],
    version_ids: Sequence[int | None],
    covers: Sequence[int | None],
) -> None:
    tree = hashtree.build(groups, stamp.algorithm)
    stamp.root = tree.root
    stamp.leaves = len(groups)
    session.add(stamp)
    session.flush()
    rows = [
        {
            "stamp_id": stamp.id,
            "aip_version_id": version_ids[i],
            "covers_stamp_id": covers[i],
            "position": i,
            "hashes": b"".join(groups[i]),
            "reduced": pack_reduced(tree.reduced(i)),
        }
        for i in range(len(groups))
    ]
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(EvidenceLeaf), rows[start : start + _BATCH])


def seal_periods(session: Session, *, tenant_id: str | None = None) -> list[EvidenceStamp]:
    """One tree per tenant over its versions committed since the last seal; stamps to request.

    The stamp rows are made without a token: the TSA is asked afterwards, and
    may be away; the tree is fixed now either way.
    """
    sealed = (
        select(EvidenceLeaf.aip_version_id)
        .join(EvidenceStamp, EvidenceStamp.id == EvidenceLeaf.stamp_id)
        .where(EvidenceStamp.kind == KIND_INITIAL, EvidenceLeaf.aip_version_id.is_not(None))
    )
    stmt = (
        select(AIP.tenant_id, AIPVersion.id, AIPVersion.tar_sha256, AIPVersion.mets_sha256)
        .join(AIP, AIP.id == AIPVersion.aip_id)
        .where(
            AIPVersion.committed_at.is_not(None),
            AIPVersion.tar_sha256.is_not(None),
            AIP.state != AIPState.DISPOSED,
            AIPVersion.id.not_in(sealed),
        )
        .order_by(AIP.tenant_id, AIPVersion.committed_at, AIPVersion.id)
    )
    if tenant_id is not None:
        stmt = stmt.where(AIP.tenant_id == tenant_id)
    by_tenant: dict[str, list[tuple[int, list[bytes]]]] = defaultdict(list)
    for tenant, version_id, tar_sha, mets_sha in session.execute(stmt):
        group = [bytes.fromhex(tar_sha or "")]
        if mets_sha:
            group.append(bytes.fromhex(mets_sha))
        by_tenant[tenant].append((version_id, group))
    made = []
    for tenant, items in by_tenant.items():
        stamp = EvidenceStamp(tenant_id=tenant, kind=KIND_INITIAL, algorithm="sha256", closed=False)
        _insert_tree(
            session,
            stamp,
            [g for _, g in items],
            [v for v, _ in items],
            [None] * len(items),
        )
        made.append(stamp)
    return made


def record_for_version(session: Session, version_id: int) -> bytes:
    """The version's RFC 4998 EvidenceRecord (DER), from its leaves and the stamps above them.

    Chains are the version's own leaves (the initial tree, then each hash-tree
    renewal), each followed by its time-stamp renewals; a renewal still
    waiting for its token ends its chain for now.
    """
    leaves = session.execute(
        select(EvidenceLeaf, EvidenceStamp)
        .join(EvidenceStamp, EvidenceStamp.id == EvidenceLeaf.stamp_id)
        .where(EvidenceLeaf.aip_version_id == version_id)
        .order_by(EvidenceStamp.id)
    ).all()
    chains: list[list[bytes]] = []
    for leaf, stamp in leaves:
        if stamp.token is None:
            break  # a later chain cannot be shown before this one is stamped
        chain = [_ats(stamp, leaf)]
        current = stamp
        while current.renewed_by is not None:
            nxt = session.get_one(EvidenceStamp, current.renewed_by)
            if nxt.token is None:
                break
            link = session.scalar(
                select(EvidenceLeaf).where(
                    EvidenceLeaf.stamp_id == nxt.id, EvidenceLeaf.covers_stamp_id == current.id
                )
            )
            if link is None:
                break
            chain.append(_ats(nxt, link))
            current = nxt
        chains.append(chain)
    if not chains:
        raise NotFoundError(
            "this version has no time-stamped evidence record yet: it is sealed at the "
            "next journal sync (`preservation history sync`), and stamped once the TSA answers"
        )
    return records.evidence_record(chains)


def _ats(stamp: EvidenceStamp, leaf: EvidenceLeaf) -> bytes:
    assert stamp.token is not None
    reduced = unpack_reduced(leaf.reduced, _hash_size(stamp.algorithm))
    return records.archive_time_stamp(stamp.algorithm, reduced, stamp.token)


@dataclass
class RenewalReport:
    kind: str
    stamps: list[int]
    leaves: int

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "stamps": self.stamps, "leaves": self.leaves}


def _open_stamps(session: Session, tenant_id: str | None) -> list[EvidenceStamp]:
    stmt = select(EvidenceStamp).where(
        EvidenceStamp.renewed_by.is_(None), EvidenceStamp.closed.is_(False)
    )
    if tenant_id is not None:
        stmt = stmt.where(EvidenceStamp.tenant_id == tenant_id)
    return list(session.scalars(stmt.order_by(EvidenceStamp.id)))


def _refuse_waiting(stamps: Sequence[EvidenceStamp]) -> None:
    waiting = [s.id for s in stamps if s.token is None]
    if waiting:
        raise ConflictError(
            f"{len(waiting)} evidence stamp(s) still wait for the TSA (ids {waiting[:10]}): "
            "renewal covers stamped chains only; run `preservation history sync` once the "
            "TSA answers, then renew",
            rule="stamps-waiting",
        )


def renew_timestamps(
    ctx: Context, tsa: TimeStampAuthority, *, tenant_id: str | None = None
) -> RenewalReport:
    """RFC 4998 §5.2: one new time-stamp over the time-stamps of every open chain.

    For when the TSA's key or algorithm nears the end of its safe life: the
    old time-stamps are covered by a new one before they can be doubted.
    """
    from preservation.evidence.sync import BUSY, LEASE
    from preservation.lease import hold_lease

    with (
        hold_lease(ctx.sessions, LEASE, seconds=3600, busy=BUSY),
        session_scope(ctx.sessions) as session,
    ):
        stamps = _open_stamps(session, tenant_id)
        _refuse_waiting(stamps)
        made: list[int] = []
        leaves = 0
        groups_of: dict[tuple[str, str], list[EvidenceStamp]] = defaultdict(list)
        for s in stamps:
            groups_of[(s.tenant_id, s.algorithm)].append(s)
        for (tenant, algorithm), olds in groups_of.items():
            groups = [[hashtree.digest(algorithm, s.token or b"")] for s in olds]
            stamp = EvidenceStamp(
                tenant_id=tenant, kind=KIND_RENEWAL, algorithm=algorithm, closed=False
            )
            _insert_tree(session, stamp, groups, [None] * len(olds), [s.id for s in olds])
            stamp.token = tsa.stamp(stamp.root, algorithm)
            stamp.stamped_at = utcnow()
            for s in olds:
                s.renewed_by = stamp.id
            made.append(stamp.id)
            leaves += len(olds)
    return RenewalReport(KIND_RENEWAL, made, leaves)


def renew_hash_trees(
    ctx: Context,
    tsa: TimeStampAuthority,
    algorithm: str,
    *,
    tenant_id: str | None = None,
) -> RenewalReport:
    """RFC 4998 §5.3: rehash every version with ``algorithm`` and start a new chain.

    The data must be read again (the old digests are what is in doubt), so
    each version's tar is read back from tape, hashed whole and its root
    METS hashed on the way. The new leaf covers the new digest and the whole
    record so far, so the old evidence carries over into the new chain.
    """
    if algorithm not in hashtree.ALGORITHMS:
        raise NotFoundError(
            f"unknown hash algorithm {algorithm!r} (one of {', '.join(hashtree.ALGORITHMS)})"
        )
    from preservation.evidence.sync import BUSY, LEASE
    from preservation.lease import hold_lease

    # Days, for a large archive: every tar is read back.
    with hold_lease(ctx.sessions, LEASE, seconds=14 * 86400, busy=BUSY):
        return _renew_hash_trees(ctx, tsa, algorithm, tenant_id)


def _renew_hash_trees(
    ctx: Context, tsa: TimeStampAuthority, algorithm: str, tenant_id: str | None
) -> RenewalReport:
    from preservation.storage.recovery import read_version_tar

    with session_scope(ctx.sessions) as session:
        stamps = _open_stamps(session, tenant_id)
        _refuse_waiting(stamps)
        # Only these chains are carried over and closed: a period sealed while
        # the tars are read is not in the new trees, and stays open.
        renewed = {s.tenant_id: [] for s in stamps}  # type: dict[str, list[int]]
        for s in stamps:
            renewed[s.tenant_id].append(s.id)
        stmt = (
            select(AIP.tenant_id, AIPVersion.id, AIPVersion.aip_id, AIPVersion.number)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                AIPVersion.id.in_(
                    select(EvidenceLeaf.aip_version_id).where(
                        EvidenceLeaf.aip_version_id.is_not(None)
                    )
                ),
                AIP.state != AIPState.DISPOSED,
            )
            .order_by(AIP.tenant_id, AIPVersion.id)
        )
        if tenant_id is not None:
            stmt = stmt.where(AIP.tenant_id == tenant_id)
        versions = session.execute(stmt).all()
    by_tenant: dict[str, list[tuple[int, list[bytes]]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(dir=_scratch(ctx)) as tmp:
        for tenant, version_id, aip_id, number in versions:
            dest = Path(tmp) / f"{aip_id}.v{number}.tar"
            read_version_tar(ctx, aip_id, number, dest)
            hashes = _rehash(dest, algorithm, f"{aip_id}.v{number}")
            dest.unlink()
            with session_scope(ctx.sessions) as session:
                record = record_for_version(session, version_id)
            by_tenant[tenant].append(
                (version_id, records.tree_renewal_leaves(record, hashes, algorithm))
            )
    made: list[int] = []
    leaves = 0
    with session_scope(ctx.sessions) as session:
        for tenant, items in by_tenant.items():
            stamp = EvidenceStamp(
                tenant_id=tenant, kind=KIND_REHASH, algorithm=algorithm, closed=False
            )
            _insert_tree(
                session, stamp, [g for _, g in items], [v for v, _ in items], [None] * len(items)
            )
            stamp.token = tsa.stamp(stamp.root, algorithm)
            stamp.stamped_at = utcnow()
            session.execute(
                update(EvidenceStamp)
                .where(EvidenceStamp.id.in_(renewed.get(tenant, [])))
                .values(closed=True)
                .execution_options(synchronize_session=False)
            )
            made.append(stamp.id)
            leaves += len(items)
    return RenewalReport(KIND_REHASH, made, leaves)


def _rehash(tar_path: Path, algorithm: str, root: str) -> list[bytes]:
    """The tar's digest and its root METS's, with ``algorithm``: the version's leaf group."""
    whole = hashlib.new(algorithm)
    with open(tar_path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            whole.update(chunk)
    hashes = [whole.digest()]
    with tarfile.open(tar_path, "r:") as tar:
        try:
            member = tar.extractfile(f"{root}/data/METS.xml")
        except KeyError:
            member = None
        if member is not None:
            mets = hashlib.new(algorithm)
            while chunk := member.read(1 << 20):
                mets.update(chunk)
            hashes.append(mets.digest())
    return hashes


def _scratch(ctx: Context) -> Path | None:
    staging = Path(ctx.settings.staging_dir)
    return staging if staging.is_dir() else None


def export_record(
    ctx: Context,
    aip_id: str,
    *,
    version: int | None = None,
    tenant_id: str | None = None,
    exact: bool = False,
) -> tuple[str, int, bytes]:
    """(AIP id, version number, DER record) for the newest or the given version.

    Another tenant's AIP is "not found", as everywhere else; ``exact`` (the
    API) takes no id prefix, so that no answer tells of another tenant's ids.
    """
    from preservation.catalog import service as catalog

    with session_scope(ctx.sessions) as session:
        if exact:
            full = aip_id
        elif tenant_id is not None:
            # A prefix among this tenant's AIPs only: an ambiguity must not list another's.
            matches = list(
                session.scalars(
                    select(AIP.id)
                    .where(AIP.tenant_id == tenant_id, AIP.id.startswith(aip_id.lower()))
                    .limit(2)
                )
            )
            if len(aip_id) < catalog.MIN_ID_PREFIX or len(matches) != 1:
                raise NotFoundError(f"no single AIP {aip_id} of tenant {tenant_id}")
            full = matches[0]
        else:
            full = catalog.resolve_aip_id(session, aip_id)
        aip = session.get(AIP, full)
        if aip is None or (tenant_id is not None and aip.tenant_id != tenant_id):
            raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
        stmt = select(AIPVersion).where(
            AIPVersion.aip_id == full, AIPVersion.committed_at.is_not(None)
        )
        if version is not None:
            stmt = stmt.where(AIPVersion.number == version)
        row = session.scalar(stmt.order_by(AIPVersion.number.desc()).limit(1))
        if row is None:
            which = f"version {version}" if version is not None else "a committed version"
            raise NotFoundError(f"AIP {full} has no {which}", aip_id=full)
        return full, row.number, record_for_version(session, row.id)
