"""RFC 4998 §4.2 hash trees: every reduced tree leads to the root, and only the right leaf does."""

from __future__ import annotations

import hashlib
import time

import pytest

from preservation.evidence import hashtree
from preservation.evidence.hashtree import build, digest, verify_reduced


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def groups_of(n: int, size: int) -> list[list[bytes]]:
    return [[h(f"version {i} part {j}".encode()) for j in range(size)] for i in range(n)]


@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("n", range(1, 41))
def test_every_reduced_tree_leads_to_the_root(n: int, size: int) -> None:
    groups = groups_of(n, size)
    tree = build(groups, "sha256")
    assert len(tree) == n
    for i, group in enumerate(groups):
        reduced = tree.reduced(i)
        assert reduced[0] == group
        assert all(len(partial) == 1 for partial in reduced[1:])
        for leaf in group:
            assert verify_reduced(leaf, reduced, "sha256") == tree.root
    assert list(tree.reduced_all()) == [tree.reduced(i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 33])
def test_a_flipped_byte_does_not_lead_to_the_root(n: int) -> None:
    groups = groups_of(n, 2)
    tree = build(groups, "sha256")
    for i in range(n):
        reduced = tree.reduced(i)
        for depth in range(len(reduced)):
            for k in range(len(reduced[depth])):
                broken = [list(p) for p in reduced]
                value = bytearray(broken[depth][k])
                value[5] ^= 0x01
                broken[depth][k] = bytes(value)
                leaf = groups[i][1 - k] if depth == 0 else groups[i][0]
                assert verify_reduced(leaf, broken, "sha256") != tree.root
        with pytest.raises(ValueError, match="not in the first list"):
            verify_reduced(h(b"another version"), reduced, "sha256")


def test_a_single_hash_is_its_own_root() -> None:
    leaf = h(b"only")
    tree = build([[leaf]], "sha256")
    assert tree.root == leaf
    assert tree.depth == 0
    assert tree.reduced(0) == [[leaf]]


def test_a_small_tree_computed_by_hand() -> None:
    a, b, c = h(b"a"), h(b"b"), h(b"c")
    m1, m2 = h(b"tar"), h(b"mets")

    def pair(x: bytes, y: bytes) -> bytes:
        return h(min(x, y) + max(x, y))

    # Level 0: the group nodes; a pair group hashes its members, lone hashes stand as they are.
    g = pair(m1, m2)
    level1 = [pair(a, b), pair(c, g)]
    root = pair(*level1)
    tree = build([[a], [b], [c], [m1, m2]], "sha256")
    assert tree.root == root
    assert tree.reduced(3) == [[m1, m2], [c], [pair(a, b)]]
    # An odd node is carried up: with five groups the fifth joins only at the top.
    e = h(b"e")
    tree5 = build([[a], [b], [c], [m1, m2], [e]], "sha256")
    assert tree5.root == pair(root, e)
    assert tree5.reduced(4) == [[e], [root]]
    assert tree5.levels[1][2] == e and tree5.levels[2][1] == e


def test_sorting_is_binary_ascending() -> None:
    low, high = b"\x7f" + b"\x00" * 31, b"\x80" + b"\x00" * 31
    # Signed bytes would put 0x80 first; RFC 4998 means unsigned, binary ascending order.
    assert build([[high], [low]], "sha256").root == h(low + high)
    assert build([[low], [high]], "sha256").root == h(low + high)
    assert build([[high, low]], "sha256").root == h(low + high)


def test_sha512_and_the_oids() -> None:
    leaves = [[hashlib.sha512(bytes([i])).digest()] for i in range(3)]
    tree = build(leaves, "sha512")
    assert len(tree.root) == 64
    assert verify_reduced(leaves[2][0], tree.reduced(2), "sha512") == tree.root
    assert digest("sha512", b"x") == hashlib.sha512(b"x").digest()
    assert hashtree.OIDS == {"sha256": "2.16.840.1.101.3.4.2.1", "sha512": "2.16.840.1.101.3.4.2.3"}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build([], "sha256")
    with pytest.raises(ValueError, match="group 1 has no hash"):
        build([[h(b"a")], []], "sha256")
    with pytest.raises(ValueError, match="not a sha512 hash"):
        build([[h(b"a")]], "sha512")
    with pytest.raises(ValueError, match="unsupported hash algorithm 'md5'"):
        build([[h(b"a")]], "md5")
    with pytest.raises(IndexError):
        build([[h(b"a")]], "sha256").reduced(1)


def test_a_hundred_thousand_versions_build_fast() -> None:
    groups = groups_of(100_000, 2)
    started = time.perf_counter()
    tree = build(groups, "sha256")
    assert time.perf_counter() - started < 3.0
    assert tree.depth == 17
    started = time.perf_counter()
    for i in range(0, 100_000, 997):
        assert verify_reduced(groups[i][0], tree.reduced(i), "sha256") == tree.root
    assert time.perf_counter() - started < 1.0
