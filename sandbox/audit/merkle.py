"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs.

Pure functions over raw 32-byte SHA-256 hashes, so the same code serves the log, its tests
against the Certificate Transparency vectors, and anyone re-checking an export. Leaves and
interior nodes get different prefixes (0x00, 0x01) so a leaf can never pass for a node.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): the RFC's split point."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of the leaves; the empty tree hashes to SHA-256 of nothing.

    Pairs each level left to right and carries an unpaired last node up unchanged, which
    builds exactly the RFC's tree (left subtree always the largest power of two) in O(n).
    """
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def roots_at(leaf_hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """The root of every prefix of the given sizes, in one pass over the leaves.

    Keeps the perfect subtrees of the tree so far (its "frontier"); folding them right to
    left gives the RFC root, so checking k checkpoints costs O(n + k log n), not O(k n).
    """
    wanted = set(sizes)
    if max(wanted, default=0) > len(leaf_hashes):
        raise ValueError(f"size {max(wanted)} beyond a tree of {len(leaf_hashes)} leaves")
    out = {0: root([])} if 0 in wanted else {}
    frontier: list[tuple[int, bytes]] = []  # (leaf count, hash), counts strictly decreasing
    for n, leaf in enumerate(leaf_hashes, start=1):
        count, node = 1, leaf
        while frontier and frontier[-1][0] == count:
            count, node = count * 2, node_hash(frontier.pop()[1], node)
        frontier.append((count, node))
        if n in wanted:
            acc = frontier[-1][1]
            for _, left in reversed(frontier[:-1]):
                acc = node_hash(left, acc)
            out[n] = acc
    return out


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaf_hashes`` (RFC 6962 §2.1.1)."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf index {index} outside a tree of size {len(leaf_hashes)}")

    def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
        n = len(leaves)
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return path(m, leaves[:k]) + [root(leaves[k:])]
        return path(m - k, leaves[k:]) + [root(leaves[:k])]

    return path(index, leaf_hashes)


def consistency_proof(m: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Proof that the first ``m`` leaves are a prefix of ``leaf_hashes`` (RFC 6962 §2.1.2)."""
    n = len(leaf_hashes)
    if not 0 <= m <= n:
        raise ValueError(f"old size {m} outside 0..{n}")
    if m in (0, n):
        return []

    def subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
        n = len(leaves)
        if m == n:
            return [] if whole else [root(leaves)]
        k = _split(n)
        if m <= k:
            return subproof(m, leaves[:k], whole) + [root(leaves[k:])]
        return subproof(m - k, leaves[k:], False) + [root(leaves[:k])]

    return subproof(m, leaf_hashes, True)


def _well_formed(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """True iff ``proof`` shows leaf hash ``leaf`` at ``index`` of the tree with that root (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size or not _well_formed(leaf, expected_root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff ``proof`` shows the tree ``old_root`` is a prefix of ``new_root`` (RFC 9162 §2.1.4.2)."""
    if not 0 <= old_size <= new_size or not _well_formed(*proof):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
