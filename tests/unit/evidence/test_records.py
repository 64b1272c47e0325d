"""RFC 4998 records over real time-stamps: build, renew both ways, verify, and fail by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from preservation.evidence import records
from preservation.evidence.hashtree import build
from preservation.evidence.loopback_tsa import LoopbackTsa, TsaPki, make_pki
from preservation.evidence.records import (
    EvidenceError,
    append_chain,
    append_to_last_chain,
    archive_time_stamp,
    evidence_record,
    parse,
    timestamp_renewal_input,
    tree_renewal_leaves,
    verify,
)
from preservation.evidence.tsa import HttpTimeStampAuthority, StampInfo, TsaTrust
from tests.conftest import require_program

VERSIONS = 5
TARS = [f"tar of version {i}\n".encode() * (1000 + i) for i in range(VERSIONS)]
METS = [f"<mets>version {i}</mets>".encode() for i in range(VERSIONS)]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


@dataclasses.dataclass
class World:
    first: HttpTimeStampAuthority
    second: HttpTimeStampAuthority
    first_ca: bytes
    second_ca: bytes

    def trust(self, *cas: bytes) -> Callable[[bytes, bytes, str], StampInfo]:
        return TsaTrust.from_pem(b"".join(cas)).verify


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_program("openssl")
    first: TsaPki = make_pki(tmp_path_factory.mktemp("first"), "First TSA")
    second: TsaPki = make_pki(tmp_path_factory.mktemp("second"), "Second TSA")
    with LoopbackTsa(first) as one, LoopbackTsa(second) as two:
        with (
            HttpTimeStampAuthority(one.url) as a,
            HttpTimeStampAuthority(two.url) as b,
        ):
            yield World(a, b, first.ca_pem, second.ca_pem)


@dataclasses.dataclass
class Batch:
    records: list[bytes]
    token: bytes


@pytest.fixture(scope="module")
def batch(world: World) -> Batch:
    """Five versions under one time-stamp, as a journal cut stamps them."""
    tree = build([[sha256(t), sha256(m)] for t, m in zip(TARS, METS, strict=True)], "sha256")
    token = world.first.stamp(tree.root)
    made = [
        evidence_record([[archive_time_stamp("sha256", tree.reduced(i), token)]])
        for i in range(VERSIONS)
    ]
    return Batch(made, token)


@pytest.fixture(scope="module")
def renewed(world: World, batch: Batch) -> list[bytes]:
    """Every record after a time-stamp renewal by the second TSA (one stamp for all)."""
    ats = parse(batch.records[0])["archive_time_stamp_sequence"][0][0].dump()
    leaf = timestamp_renewal_input(ats, "sha256")
    tree = build([[leaf], [sha256(b"another stamp renewed alongside")]], "sha256")
    renewal = archive_time_stamp("sha256", tree.reduced(0), world.second.stamp(tree.root))
    return [append_to_last_chain(record, renewal) for record in batch.records]


def rehash(world: World, olds: list[bytes]) -> list[bytes]:
    """A hash-tree renewal to SHA-512 of every record in ``olds``, by the second TSA."""
    groups = [
        tree_renewal_leaves(record, [sha512(TARS[i]), sha512(METS[i])], "sha512")
        for i, record in enumerate(olds)
    ]
    tree = build(groups, "sha512")
    token = world.second.stamp(tree.root, "sha512")
    return [
        append_chain(record, archive_time_stamp("sha512", tree.reduced(i), token))
        for i, record in enumerate(olds)
    ]


def test_the_ats_tags_are_implicit(world: World) -> None:
    h1, h2, h3 = sha256(b"1"), sha256(b"2"), sha256(b"3")
    token = world.first.stamp(build([[h1, h2], [h3]], "sha256").root)
    der = archive_time_stamp("sha256", [[h1, h2], [h3]], token)
    # [0] AlgorithmIdentifier: A0, then the SEQUENCE's contents (the OID, parameters absent).
    algorithm = bytes.fromhex("a00b 0609 608648016503040201")
    # [2] SEQUENCE OF PartialHashtree: A2 (70 + 36 = 106 = 0x6a bytes).
    tree = (
        bytes.fromhex("a26a 3044 0420")
        + h1
        + bytes.fromhex("0420")
        + h2
        + bytes.fromhex("3022 0420")
        + h3
    )
    body = algorithm + tree + token
    assert len(body) > 0xFF
    assert der == bytes.fromhex("3082") + len(body).to_bytes(2, "big") + body


def test_an_ats_must_hold_the_tree_its_token_covers(batch: Batch) -> None:
    with pytest.raises(EvidenceError, match="but the reduced hash tree leads to"):
        archive_time_stamp("sha256", [[sha256(b"elsewhere")]], batch.token)
    with pytest.raises(EvidenceError, match="not a CMS ContentInfo"):
        archive_time_stamp("sha256", None, b"junk")
    with pytest.raises(ValueError, match="32-byte hashes only"):
        archive_time_stamp("sha256", [[b"short"]], batch.token)


def test_a_record_round_trips(batch: Batch) -> None:
    record = parse(batch.records[2])
    assert record.dump() == batch.records[2]
    assert record["version"].native == 1
    assert [a["algorithm"].native for a in record["digest_algorithms"]] == ["sha256"]
    (chain,) = record["archive_time_stamp_sequence"]
    (ats,) = chain
    assert ats["time_stamp"].dump() == batch.token
    assert ats["reduced_hashtree"].native[0] == [sha256(TARS[2]), sha256(METS[2])]
    assert timestamp_renewal_input(ats.dump(), "sha256") == sha256(batch.token)


def test_every_version_verifies_with_its_tar_and_mets(
    world: World, batch: Batch, tmp_path: Path
) -> None:
    trust = world.trust(world.first_ca)
    tar = tmp_path / "v3.tar"
    tar.write_bytes(TARS[3])
    for i, record in enumerate(batch.records):
        report = verify(record, {"tar": TARS[i], "METS": METS[i]}, trust)
        assert report.ok, report.failure
    report = verify(batch.records[3], [tar], trust)
    assert report.ok and report.failure is None
    (step,) = report.steps
    assert re.fullmatch(
        r"chain 1, ATS 1: sha256 tree of depth 3, stamped 20\d\d-\d\d-\d\dT[\d:.]+Z "
        r"by CN=First TSA,O=Preservation loopback, serial \d+",
        step,
    ), step
    assert str(report).endswith("VERIFIED")
    as_dict = report.to_dict()
    assert as_dict["ok"] is True and as_dict["steps"] == report.steps
    (stamp,) = as_dict["stamps"]
    assert stamp["algorithm"] == "sha256" and stamp["gen_time"].endswith("Z")
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_data_it_does_not_cover_is_named(world: World, batch: Batch, tmp_path: Path) -> None:
    trust = world.trust(world.first_ca)
    report = verify(batch.records[1], {"v1.tar": TARS[2]}, trust)
    assert not report.ok
    assert report.failure is not None
    assert report.failure.startswith("v1.tar is not covered by this evidence record")
    assert "chain 1, ATS 1" in report.failure
    other = tmp_path / "other.tar"
    other.write_bytes(b"x")
    report = verify(batch.records[1], [TARS[1], other], trust)
    assert report.failure is not None
    assert report.failure.startswith(f"{other} is not covered by this evidence record")
    assert str(report).startswith("FAILED: ")


def test_a_tampered_token_or_tree_fails(world: World, batch: Batch) -> None:
    trust = world.trust(world.first_ca)
    record = batch.records[0]
    at = record.index(b"First TSA")  # the TSTInfo's tsa name: signed content
    report = verify(record[:at] + b"W" + record[at + 1 :], [TARS[0]], trust)
    assert report.failure is not None
    assert report.failure.startswith("chain 1, ATS 1: the time-stamp token does not verify")

    sibling = parse(record)["archive_time_stamp_sequence"][0][0]["reduced_hashtree"][1][0]
    value = sibling.native
    broken = record.replace(value, bytes([value[0] ^ 1]) + value[1:])
    report = verify(broken, [TARS[0]], trust)
    assert report.failure is not None
    assert re.match(r"chain 1, ATS 1: the time-stamp covers sha256 [0-9a-f]+, not", report.failure)


def test_garbage_is_not_a_record(world: World) -> None:
    with pytest.raises(EvidenceError, match="not an RFC 4998 evidence record"):
        parse(b"\x30\x03\x02\x01\x01")
    with pytest.raises(EvidenceError, match="not an RFC 4998 evidence record"):
        parse(b"")
    report = verify(b"junk", [b"data"], world.trust(world.first_ca))
    assert not report.ok
    assert report.failure is not None and "not an RFC 4998 evidence record" in report.failure


def test_timestamp_renewal_by_a_second_tsa(
    world: World, batch: Batch, renewed: list[bytes]
) -> None:
    both = world.trust(world.first_ca, world.second_ca)
    for i, record in enumerate(renewed):
        report = verify(record, [TARS[i], METS[i]], both)
        assert report.ok, report.failure
        assert [s.split(":")[0] for s in report.steps] == ["chain 1, ATS 1", "chain 1, ATS 2"]
        assert "by CN=Second TSA" in report.steps[1]
        assert report.stamps[0].gen_time <= report.stamps[1].gen_time
    # The first token still has to verify: the renewal extends a proof, it does not replace it.
    report = verify(renewed[0], [TARS[0]], world.trust(world.second_ca))
    assert report.failure is not None
    assert report.failure.startswith("chain 1, ATS 1: the time-stamp token does not verify")
    report = verify(renewed[0], [TARS[0]], world.trust(world.first_ca))
    assert report.failure is not None
    assert report.failure.startswith("chain 1, ATS 2: the time-stamp token does not verify")


def test_a_renewal_must_cover_the_last_stamp(world: World, batch: Batch) -> None:
    stray = sha256(b"not the last time-stamp")
    ats = archive_time_stamp("sha256", [[stray]], world.second.stamp(stray))
    with pytest.raises(EvidenceError, match="does not cover the record's last time-stamp"):
        append_to_last_chain(batch.records[0], ats)
    wider = sha512(b"x")
    ats = archive_time_stamp("sha512", None, world.second.stamp(wider, "sha512"))
    with pytest.raises(EvidenceError, match="uses sha512, the chain it extends sha256"):
        append_to_last_chain(batch.records[0], ats)


def test_a_broken_renewal_chain_is_named(world: World, batch: Batch) -> None:
    # An ATS over something else, forced into the chain as a renewal would be.
    stray = sha256(b"not the last time-stamp")
    ats = archive_time_stamp("sha256", [[stray]], world.second.stamp(stray))
    first = parse(batch.records[0])["archive_time_stamp_sequence"][0][0].dump()
    record = evidence_record([[first, ats]])
    report = verify(record, [TARS[0]], world.trust(world.first_ca, world.second_ca))
    assert report.failure == (
        "chain 1, ATS 2 does not cover the time-stamp of ATS 1 "
        "(time-stamp renewal, RFC 4998 §5.2): the chain is broken"
    )


def test_hash_tree_renewal_to_sha512(world: World, batch: Batch, renewed: list[bytes]) -> None:
    both = world.trust(world.first_ca, world.second_ca)
    for olds in (batch.records, renewed):
        for i, record in enumerate(rehash(world, olds)):
            parsed = parse(record)
            names = [a["algorithm"].native for a in parsed["digest_algorithms"]]
            assert names == ["sha256", "sha512"]
            assert len(parsed["archive_time_stamp_sequence"]) == 2
            report = verify(record, {"tar": TARS[i], "METS": METS[i]}, both)
            assert report.ok, report.failure
            # The fifth of five groups is carried up twice: one sibling on its path.
            depth = 1 if i == 4 else 3
            assert report.steps[-1].startswith(f"chain 2, ATS 1: sha512 tree of depth {depth},")
            report = verify(record, {"tar": TARS[(i + 1) % VERSIONS]}, both)
            assert report.failure is not None
            assert report.failure.startswith("tar is not covered by this evidence record")


def test_tree_renewal_leaves_follow_section_5_2(batch: Batch) -> None:
    record = batch.records[4]
    sequence = parse(record)["archive_time_stamp_sequence"].dump()
    assert sequence[0] == 0x30  # the DER of the whole ArchiveTimeStampSequence, tag included
    (leaf,) = tree_renewal_leaves(record, [sha512(TARS[4])], "sha512")
    # h(i) = H(h(d(i)) + ha(i)): the data object's hash first.
    assert leaf == sha512(sha512(TARS[4]) + sha512(sequence))
    with pytest.raises(ValueError, match="64 bytes, not 32"):
        tree_renewal_leaves(record, [sha256(TARS[4])], "sha512")


def test_a_renewal_over_another_sequence_is_refused(
    world: World, batch: Batch, renewed: list[bytes]
) -> None:
    # Leaves computed over the renewed record, appended to the record before the renewal.
    (rehashed,) = rehash(world, [renewed[0]])
    new_chain = parse(rehashed)["archive_time_stamp_sequence"][1][0].dump()
    wrong = append_chain(batch.records[0], new_chain)
    report = verify(wrong, [TARS[0]], world.trust(world.first_ca, world.second_ca))
    assert report.failure is not None
    assert report.failure.startswith(
        "chain 2, ATS 1: data object 1 is not covered by this hash-tree renewal"
    )


def test_time_stamps_must_be_in_ascending_order(world: World, renewed: list[bytes]) -> None:
    real = world.trust(world.first_ca, world.second_ca)

    def backdating(token: bytes, digest: bytes, algorithm: str) -> StampInfo:
        info = real(token, digest, algorithm)
        if "Second TSA" in info.tsa:
            return dataclasses.replace(info, gen_time=info.gen_time - timedelta(hours=1))
        return info

    report = verify(renewed[0], [TARS[0]], backdating)
    assert report.failure is not None
    assert re.fullmatch(
        r"chain 1, ATS 2 was stamped at \S+Z, before the time-stamp it follows \(\S+Z\): "
        r"time-stamps must be in ascending order",
        report.failure,
    ), report.failure
    assert len(report.steps) == 1


def test_a_version_stamped_alone_needs_no_tree(world: World) -> None:
    token = world.first.stamp(sha256(TARS[0]))
    record = evidence_record([[archive_time_stamp("sha256", None, token)]])
    trust = world.trust(world.first_ca)
    report = verify(record, [TARS[0]], trust)
    assert report.ok, report.failure
    assert report.steps[0].startswith("chain 1, ATS 1: sha256 tree of depth 0")
    assert not verify(record, [TARS[0], METS[0]], trust).ok


def test_digest_algorithms_are_listed_in_order_of_first_use(world: World, batch: Batch) -> None:
    first = parse(batch.records[0])["archive_time_stamp_sequence"][0][0].dump()
    wide = sha512(b"y")
    other = archive_time_stamp("sha512", None, world.second.stamp(wide, "sha512"))
    record = parse(evidence_record([[first], [other]]))
    assert [a["algorithm"].native for a in record["digest_algorithms"]] == ["sha256", "sha512"]
    record = parse(evidence_record([[other], [first]]))
    assert [a["algorithm"].native for a in record["digest_algorithms"]] == ["sha512", "sha256"]
    with pytest.raises(EvidenceError, match="chain 1, ATS 2 uses sha512 after sha256"):
        evidence_record([[first, other]])
    with pytest.raises(EvidenceError, match="at least one"):
        evidence_record([])


def test_data_is_read_once_for_every_algorithm(tmp_path: Path) -> None:
    big = tmp_path / "big.tar"
    payload = bytes(range(256)) * 9000  # a little over 2 MiB: more than one chunk
    big.write_bytes(payload)
    assert records.data_digests(big, ["sha256", "sha512"]) == {
        "sha256": sha256(payload),
        "sha512": sha512(payload),
    }


def test_a_renewal_made_after_the_old_certificate_expired_fails(
    world: World, renewed: list[bytes]
) -> None:
    """RFC 4998 §5.3: each time-stamp must be renewed while its certificate is valid."""
    import dataclasses

    real = world.trust(world.first_ca, world.second_ca)
    ok = verify(renewed[0], [TARS[0]], real)
    assert ok.ok and ok.stamps[0].signer_not_after is not None  # the token names its signer

    def expired_early(token: bytes, digest: bytes, algorithm: str) -> StampInfo:
        info = real(token, digest, algorithm)
        if "Second TSA" in info.tsa:
            return info
        # As if the first TSA's certificate had lapsed the moment it stamped.
        return dataclasses.replace(info, signer_not_after=info.gen_time)

    assert ok.stamps[1].gen_time > ok.stamps[0].gen_time  # milliseconds apart at least
    late = verify(renewed[0], [TARS[0]], expired_early)
    assert late.failure is not None and "had expired" in late.failure
    assert late.failure.startswith("chain 1, ATS 2")
