"""RFC 6962 hashing and proofs against the Certificate Transparency reference vectors.

Vectors copied from transparency-dev/merkle (the Go library behind Certificate Transparency
and Trillian): leaves and roots from ``testonly/constants.go`` (LeafInputs, RootHashes),
inclusion and consistency proofs from ``proof/verify_test.go`` (inclusionProofs,
consistencyProofs; there leaf numbers are 1-based, here indexes are 0-based). The corruption
probes below mirror ``corruptInclusionProof`` / ``corruptConsistencyProof`` of that file.
"""
from __future__ import annotations

import hashlib

import pytest

from sandbox.audit import merkle

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = {  # tree size -> root
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
INCLUSION = [  # (0-based leaf index, tree size, audit path)
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
HASHES = [merkle.leaf_hash(x) for x in LEAVES]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY_ROOT = bytes.fromhex(ROOTS[0])


def _hx(proof: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in proof]


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ bit]) + out[i][1:]
    return out


@pytest.mark.parametrize("size", range(0, 9))
def test_roots(size: int) -> None:
    assert merkle.root(HASHES[:size]).hex() == ROOTS[size]


def test_first_leaf_hash_is_the_size_one_root() -> None:
    assert merkle.leaf_hash(b"").hex() == ROOTS[1]
    assert merkle.node_hash(HASHES[0], HASHES[1]).hex() == ROOTS[2]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    expected = _hx(proof)
    assert merkle.inclusion_proof(index, HASHES[:size]) == expected
    root = bytes.fromhex(ROOTS[size])
    assert merkle.verify_inclusion(index, size, HASHES[index], expected, root)

    bad = [
        (index - 1, size, HASHES[index], expected, root),
        (index + 1, size, HASHES[index], expected, root),
        (index ^ 2, size, HASHES[index], expected, root),
        (index, size * 2, HASHES[index], expected, root),
        (index, size // 2, HASHES[index], expected, root),
        (index, size, b"WrongLeaf", expected, root),
        (index, size, HASHES[index], expected, EMPTY_ROOT),
        (index, size, HASHES[index], expected, SOME_HASH),
        (index, size, HASHES[index], expected + [b""], root),
        (index, size, HASHES[index], expected + [root], root),
        (index, size, HASHES[index], [b""] + expected, root),
        (index, size, HASHES[index], [root] + expected, root),
    ]
    bad += [(index, size, HASHES[index], _flip(expected, i, 8), root) for i in range(len(expected))]
    if expected:
        bad.append((index, size, HASHES[index], expected[:-1], root))
    if len(expected) > 1:
        bad.append((index, size, HASHES[index], [expected[0], SOME_HASH] + expected[1:], root))
    for probe in bad:
        assert not merkle.verify_inclusion(*probe), probe


@pytest.mark.parametrize("old,new,proof", CONSISTENCY)
def test_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    expected = _hx(proof)
    assert merkle.consistency_proof(old, HASHES[:new]) == expected
    r1, r2 = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert merkle.verify_consistency(old, new, r1, r2, expected)
    if not expected:
        return
    bad = [
        (old - 1, new, r1, r2, expected),
        (old + 1, new, r1, r2, expected),
        (old ^ 2, new, r1, r2, expected),
        (old, new * 2, r1, r2, expected),
        (old, new // 2, r1, r2, expected),
        (old, new, b"WrongRoot", r2, expected),
        (old, new, r1, b"WrongRoot", expected),
        (old, new, r2, r1, expected),
        (old, new, r1, r2, []),
        (old, new, r1, r2, expected + [b""]),
        (old, new, r1, r2, expected + [r1]),
        (old, new, r1, r2, expected + [r2]),
        (old, new, r1, r2, [b""] + expected),
        (old, new, r1, r2, [r1] + expected),
        (old, new, r1, r2, [r2] + expected),
        (old, new, r1, r2, [expected[0]] + expected),
        (old, new, r1, r2, expected[:-1]),
    ]
    bad += [(old, new, r1, r2, _flip(expected, i, 16)) for i in range(len(expected))]
    for probe in bad:
        assert not merkle.verify_consistency(*probe), probe[:2]


def test_consistency_edge_cases() -> None:
    """Edge cases of TestVerifyConsistency in proof/verify_test.go."""
    r1, r2 = b"don't care 1", b"don't care 2"
    assert merkle.verify_consistency(0, 0, r1, r1, [])
    assert merkle.verify_consistency(0, 1, r1, r2, [])
    assert merkle.verify_consistency(1, 1, r2, r2, [])
    assert not merkle.verify_consistency(1, 1, r1, r2, [])
    assert not merkle.verify_consistency(1, 0, r1, r2, [])
    assert not merkle.verify_consistency(2, 1, r1, r2, [])
    assert not merkle.verify_consistency(1, 2, r1, r2, [])
    assert not merkle.verify_consistency(0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not merkle.verify_consistency(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])


def test_all_proofs_of_larger_trees_verify() -> None:
    """Every inclusion and consistency proof of every tree up to 33 leaves round-trips."""
    leaves = [merkle.leaf_hash(hashlib.sha256(bytes([i])).digest()) for i in range(33)]
    for n in range(1, 34):
        r = merkle.root(leaves[:n])
        for i in range(n):
            assert merkle.verify_inclusion(i, n, leaves[i], merkle.inclusion_proof(i, leaves[:n]), r)
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(m, leaves[:n])
            assert merkle.verify_consistency(m, n, merkle.root(leaves[:m]), r, proof), (m, n)


def test_roots_at_matches_root_of_each_prefix() -> None:
    assert merkle.roots_at(HASHES, range(9)) == {n: bytes.fromhex(r) for n, r in ROOTS.items()}
    with pytest.raises(ValueError):
        merkle.roots_at(HASHES, [9])
