"""RFC 4998 §4.2 hash trees: one time-stamp for many data object groups.

A time-stamp costs a round trip to a TSA and is what a court is shown, so one
is bought per batch, not per version: the versions' hashes become the leaves of
a binary hash tree and only its root is stamped. Each version keeps its
*reduced* hash tree (§4.3), the few sibling hashes that lead from its leaf to
the root, so it can be proven alone, long after its neighbours are gone.

Children are concatenated in binary ascending order before hashing (§4.2),
never in position order: a verifier then needs no left/right flags, which is
why a reduced tree is only lists of hashes.

The tree is kept as its levels, so the reduced tree of any group is index
arithmetic over ``log2(n)`` levels, and 100,000 groups build in a fraction of
a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALGORITHMS",
    "OIDS",
    "HashTree",
    "build",
    "digest",
    "hasher",
    "verify_reduced",
]

Hasher = Callable[..., Any]

ALGORITHMS: dict[str, Hasher] = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
"""Hash algorithms a record may use, by the names asn1crypto and hashlib both know."""

OIDS: dict[str, str] = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
"""The AlgorithmIdentifier OIDs (RFC 5754) that go into records and time-stamp requests."""


def hasher(algorithm: str) -> Hasher:
    """The hashlib constructor; an unknown name is a programming error, not data."""
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(
            f"unsupported hash algorithm {algorithm!r} (supported: {', '.join(ALGORITHMS)})"
        ) from None


def digest(algorithm: str, data: bytes) -> bytes:
    return bytes(hasher(algorithm)(data).digest())


def _join_sorted(hashes: Sequence[bytes]) -> bytes:
    return b"".join(sorted(hashes))


def _group_node(new: Hasher, hashes: Sequence[bytes]) -> bytes:
    # A lone hash is its own node: a version stamped alone must verify against
    # the plain hash of its tar, as RFC 4998 allows a single data object to be a leaf.
    if len(hashes) == 1:
        return hashes[0]
    return bytes(new(_join_sorted(hashes)).digest())


@dataclass(frozen=True)
class HashTree:
    """A built tree: its groups as given and every level from the group nodes up."""

    algorithm: str
    groups: tuple[tuple[bytes, ...], ...]
    levels: tuple[tuple[bytes, ...], ...]

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def depth(self) -> int:
        """Levels above the group nodes (0 for a single group)."""
        return len(self.levels) - 1

    def __len__(self) -> int:
        return len(self.groups)

    def reduced(self, index: int) -> list[list[bytes]]:
        """Group ``index``'s reduced hash tree as RFC 4998 PartialHashtree lists.

        The first list is the group itself, so every member can be found in it;
        then one sibling per level where the node had one. A node carried up
        alone adds no list: there is nothing to hash it with.
        """
        if not 0 <= index < len(self.groups):
            raise IndexError(f"group {index} is not in a tree of {len(self.groups)}")
        out: list[list[bytes]] = [list(self.groups[index])]
        position = index
        for level in self.levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                out.append([level[sibling]])
            position >>= 1
        return out

    def reduced_all(self) -> Iterator[list[list[bytes]]]:
        """Every group's reduced tree, in group order (for storing them in one pass)."""
        for index in range(len(self.groups)):
            yield self.reduced(index)


def build(groups: Sequence[Sequence[bytes]], algorithm: str) -> HashTree:
    """Hash ``groups`` (each the hashes of one data object group) into a tree.

    Nodes pair left to right; an odd node at the end of a level is carried up
    unchanged rather than hashed with itself, so it costs no extra list in its
    reduced tree.
    """
    if not groups:
        raise ValueError("a hash tree needs at least one data object group")
    new = hasher(algorithm)
    size = new().digest_size
    frozen: list[tuple[bytes, ...]] = []
    for number, group in enumerate(groups):
        if not group:
            raise ValueError(f"data object group {number} has no hash")
        for value in group:
            if len(value) != size:
                raise ValueError(
                    f"data object group {number} holds a {len(value)}-byte value, "
                    f"not a {algorithm} hash ({size} bytes)"
                )
        frozen.append(tuple(bytes(v) for v in group))

    level = tuple(_group_node(new, group) for group in frozen)
    levels = [level]
    while len(level) > 1:
        # zip stops at the shorter slice: an odd last node is left for the append below.
        parents = [
            new(a + b if a <= b else b + a).digest()
            for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            parents.append(level[-1])
        level = tuple(parents)
        levels.append(level)
    return HashTree(algorithm=algorithm, groups=tuple(frozen), levels=tuple(levels))


def verify_reduced(leaf_hash: bytes, reduced: Sequence[Sequence[bytes]], algorithm: str) -> bytes:
    """The root that ``reduced`` leads ``leaf_hash`` to (RFC 4998 §4.3, steps 2 and 3).

    Compare the result with the time-stamped hash; a ``ValueError`` means the
    leaf is not in the first list at all, which is the commoner failure and
    deserves its own message.
    """
    if not reduced or not reduced[0]:
        raise ValueError("the reduced hash tree is empty")
    if leaf_hash not in reduced[0]:
        raise ValueError("the hash is not in the first list of the reduced hash tree")
    new = hasher(algorithm)
    node = _group_node(new, reduced[0])
    for partial in reduced[1:]:
        node = bytes(new(_join_sorted([*partial, node])).digest())
    return node
