"""RFC 6962 Merkle math: published vectors, a slow RFC reference, mutated proofs, compact ranges."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.errors import ProofError, RootMismatchError
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeReader,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from tests.merkle_reference import mth, path, path_sides, proof

VECTORS = Path(__file__).parent / "vectors" / "merkle"
TREE = json.loads((VECTORS / "tree.json").read_text())
INCLUSION = json.loads((VECTORS / "inclusion.json").read_text())
CONSISTENCY = json.loads((VECTORS / "consistency.json").read_text())
ENTRIES = [bytes.fromhex(e) for e in TREE["leaves"]]
MAX_SIZE = 600


class Tree:
    """Every complete node over `entries`, served by readers that refuse any node outside the
    tree size asked about and count their reads."""

    def __init__(self, entries: list[bytes]) -> None:
        level = [leaf_hash(e) for e in entries]
        self.levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)
        self.reads = 0

    def reader(self, size: int) -> NodeReader:
        def node(level: int, index: int) -> bytes:
            assert (index + 1) << level <= size, f"node ({level}, {index}) outside size {size}"
            self.reads += 1
            return self.levels[level][index]

        return node

    def nodes(self) -> set[tuple[int, int, bytes]]:
        return {(lv, i, h) for lv, hashes in enumerate(self.levels) for i, h in enumerate(hashes)}


def entries_of(n: int, salt: bytes) -> list[bytes]:
    """`n` distinct entries; distinct leaves keep a wrong index from verifying by accident."""
    return [salt + b"/%d" % i for i in range(n)]


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def probe_hashes(p: dict[str, Any]) -> list[bytes]:
    return [b64(h) for h in p["proof"] or []]


def vector_id(record: dict[str, Any]) -> str:
    return str(record["file"]).removeprefix("testdata/")


sizes = st.integers(min_value=1, max_value=MAX_SIZE)
salts = st.binary(max_size=6)


# --- known answers ------------------------------------------------------------------------------


def test_hashes_are_domain_separated_sha256() -> None:
    """The empty root is SHA-256 of nothing; leaves hash under 0x00 and nodes under 0x01."""
    nodes = TREE["nodes"]
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == bytes.fromhex(TREE["roots"][0])
    assert leaf_hash(b"") == bytes.fromhex(nodes[0][0])
    assert leaf_hash(b"\x00") == bytes.fromhex(nodes[0][1])
    assert node_hash(bytes.fromhex(nodes[0][0]), bytes.fromhex(nodes[0][1])) == bytes.fromhex(
        nodes[1][0]
    )


@pytest.mark.parametrize("size", range(9))
def test_published_roots_for_sizes_0_to_8(size: int) -> None:
    """tree_root, CompactRange and the RFC reference all give the published root of each size."""
    want = bytes.fromhex(TREE["roots"][size])
    tree = Tree(ENTRIES)
    rng = CompactRange()
    for leaf in tree.levels[0][:size]:
        rng.append(leaf)
    assert tree_root(size, tree.reader(size)) == rng.root() == mth(ENTRIES[:size]) == want


def test_published_node_hashes_are_the_complete_subtrees() -> None:
    """Every complete node of the 8-leaf tree matches the published node hashes."""
    assert [[h.hex() for h in level] for level in Tree(ENTRIES).levels] == TREE["nodes"]


@pytest.mark.parametrize("size", range(9))
def test_published_compact_ranges(size: int) -> None:
    """The frontier after `size` appends, or read from storage, is the published compact tree."""
    want = [bytes.fromhex(TREE["nodes"][lv][i]) for lv, i in TREE["compact"][size]]
    tree = Tree(ENTRIES)
    rng = CompactRange()
    for leaf in tree.levels[0][:size]:
        rng.append(leaf)
    assert rng.hashes == want
    assert CompactRange.from_reader(size, tree.reader(size)).hashes == want


@pytest.mark.parametrize("record", INCLUSION, ids=vector_id)
def test_published_inclusion_probe(record: dict[str, Any]) -> None:
    """Each published happy path verifies and each named corruption of it is rejected."""
    p = record["probe"]
    args = (p["leafIdx"], p["treeSize"], b64(p["leafHash"]), probe_hashes(p))
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, b64(p["root"]))
    else:
        verify_inclusion(*args, b64(p["root"]))
        assert root_from_inclusion_proof(*args) == b64(p["root"])


@pytest.mark.parametrize("record", CONSISTENCY, ids=vector_id)
def test_published_consistency_probe(record: dict[str, Any]) -> None:
    """Each published consistency proof verifies and each named corruption of it is rejected."""
    p = record["probe"]
    args = (p["size1"], p["size2"], b64(p["root1"]), b64(p["root2"]), probe_hashes(p))
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_generated_proofs_equal_the_published_happy_paths() -> None:
    """Proof generation over the 8-leaf tree reproduces every published happy-path proof."""
    tree = Tree(ENTRIES)
    for record in INCLUSION:
        p = record["probe"]
        if not p["wantErr"]:
            index, size = p["leafIdx"], p["treeSize"]
            assert tree.levels[0][index] == b64(p["leafHash"])
            assert inclusion_proof(index, size, tree.reader(size)) == probe_hashes(p)
    for record in CONSISTENCY:
        p = record["probe"]
        if not p["wantErr"]:
            size1, size2 = p["size1"], p["size2"]
            assert consistency_proof(size1, size2, tree.reader(size2)) == probe_hashes(p)


# --- against the RFC reference ------------------------------------------------------------------


@given(size=st.integers(min_value=0, max_value=MAX_SIZE), salt=salts)
def test_root_matches_reference(size: int, salt: bytes) -> None:
    """tree_root equals the recursive RFC MTH and reads only popcount(size) nodes."""
    entries = entries_of(size, salt)
    tree = Tree(entries)
    assert tree_root(size, tree.reader(size)) == mth(entries)
    assert tree.reads == size.bit_count()


@given(size=sizes, salt=salts, data=st.data())
def test_inclusion_proof_matches_reference_and_verifies(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    """inclusion_proof equals the RFC PATH and verifies against the root."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    entries = entries_of(size, salt)
    tree = Tree(entries)
    got = inclusion_proof(index, size, tree.reader(size))
    assert got == path(index, entries)
    verify_inclusion(index, size, leaf_hash(entries[index]), got, mth(entries))


@given(size2=sizes, salt=salts, data=st.data())
def test_consistency_proof_matches_reference_and_verifies(
    size2: int, salt: bytes, data: st.DataObject
) -> None:
    """consistency_proof equals the RFC PROOF and verifies between the two roots."""
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    entries = entries_of(size2, salt)
    got = consistency_proof(size1, size2, Tree(entries).reader(size2))
    assert got == proof(size1, entries)
    verify_consistency(size1, size2, mth(entries[:size1]), mth(entries), got)


# --- mutations ----------------------------------------------------------------------------------


def flip(proof_hashes: list[bytes], data: st.DataObject) -> list[bytes]:
    """A copy of the proof with one bit of one hash flipped."""
    i = data.draw(st.integers(min_value=0, max_value=len(proof_hashes) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=31))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    h = bytearray(proof_hashes[i])
    h[byte] ^= 1 << bit
    return [*proof_hashes[:i], bytes(h), *proof_hashes[i + 1 :]]


def swap(proof_hashes: list[bytes], data: st.DataObject) -> list[bytes]:
    """A copy of the proof with two different hashes swapped."""
    n = len(proof_hashes)
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    assume(proof_hashes[i] != proof_hashes[j])
    out = list(proof_hashes)
    out[i], out[j] = out[j], out[i]
    return out


def drop(proof_hashes: list[bytes], data: st.DataObject) -> list[bytes]:
    """A copy of the proof with one hash removed."""
    i = data.draw(st.integers(min_value=0, max_value=len(proof_hashes) - 1))
    return proof_hashes[:i] + proof_hashes[i + 1 :]


def insert(proof_hashes: list[bytes], data: st.DataObject) -> list[bytes]:
    """A copy of the proof with one extra hash (garbage or a copy of a member) anywhere."""
    i = data.draw(st.integers(min_value=0, max_value=len(proof_hashes)))
    extra = data.draw(st.sampled_from([*proof_hashes, b"\x00" * 32, b""]))
    return [*proof_hashes[:i], extra, *proof_hashes[i:]]


Mutation = Callable[[list[bytes], st.DataObject], list[bytes]]
WELL_FORMED: list[Mutation] = [flip, swap]
MALFORMED: list[Mutation] = [drop, insert]


@given(size=st.integers(min_value=3, max_value=MAX_SIZE), salt=salts, data=st.data())
def test_mutated_inclusion_proofs_are_rejected(size: int, salt: bytes, data: st.DataObject) -> None:
    """Flipped or swapped hashes lead to another root; dropped or added hashes are refused."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    entries = entries_of(size, salt)
    good = path(index, entries)
    leaf, root = leaf_hash(entries[index]), mth(entries)
    mutate = data.draw(st.sampled_from(WELL_FORMED + MALFORMED))
    assume(len(good) >= 2 or mutate is not swap)
    bad = mutate(good, data)
    with pytest.raises(RootMismatchError if mutate in WELL_FORMED else ProofError):
        verify_inclusion(index, size, leaf, bad, root)


@given(size=sizes, salt=salts, data=st.data())
def test_inclusion_proof_at_another_index_is_rejected(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    """A proof checked at any other index, for the same leaf and root, fails."""
    assume(size >= 2)
    index, other = data.draw(
        st.lists(st.integers(0, size - 1), min_size=2, max_size=2, unique=True)
    )
    entries = entries_of(size, salt)
    with pytest.raises(ProofError):
        verify_inclusion(other, size, leaf_hash(entries[index]), path(index, entries), mth(entries))


@given(size=sizes, salt=salts, data=st.data())
def test_inclusion_proof_at_another_size_fails_unless_the_path_has_the_same_shape(
    size: int, salt: bytes, data: st.DataObject
) -> None:
    """Under another tree size a proof verifies exactly when its left/right shape is unchanged."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    other = data.draw(st.integers(min_value=index + 1, max_value=2 * MAX_SIZE))
    assume(other != size)
    entries = entries_of(size, salt)
    args = (index, other, leaf_hash(entries[index]), path(index, entries), mth(entries))
    if path_sides(index, other) == path_sides(index, size):
        verify_inclusion(*args)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


@given(size2=st.integers(min_value=2, max_value=MAX_SIZE), salt=salts, data=st.data())
def test_mutated_consistency_proofs_are_rejected(
    size2: int, salt: bytes, data: st.DataObject
) -> None:
    """Flipped or swapped hashes lead to other roots; dropped or added hashes are refused."""
    size1 = data.draw(st.integers(min_value=1, max_value=size2 - 1))
    entries = entries_of(size2, salt)
    good = proof(size1, entries)
    mutate = data.draw(st.sampled_from(WELL_FORMED + MALFORMED))
    assume(len(good) >= 2 or mutate is not swap)
    bad = mutate(good, data)
    with pytest.raises(RootMismatchError if mutate in WELL_FORMED else ProofError):
        verify_consistency(size1, size2, mth(entries[:size1]), mth(entries), bad)


@given(size2=st.integers(min_value=2, max_value=MAX_SIZE), salt=salts, data=st.data())
def test_consistency_with_wrong_roots_or_sizes_is_rejected(
    size2: int, salt: bytes, data: st.DataObject
) -> None:
    """Swapped or altered roots fail, and so do other sizes whenever the proof length differs."""
    size1 = data.draw(st.integers(min_value=1, max_value=size2 - 1))
    entries = entries_of(size2, salt)
    good, root1, root2 = proof(size1, entries), mth(entries[:size1]), mth(entries)
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, size2, root2, root1, good)
    bad1, bad2 = flip([root1], data)[0], flip([root2], data)[0]
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, size2, bad1, root2, good)
    with pytest.raises(RootMismatchError):
        verify_consistency(size1, size2, root1, bad2, good)
    other1 = data.draw(st.integers(min_value=1, max_value=size2 - 1))
    other2 = data.draw(st.integers(min_value=other1 + 1, max_value=MAX_SIZE))
    dummy = [b""] * other2
    if len(proof(other1, dummy)) != len(good):
        with pytest.raises(ProofError, match="wrong proof size"):
            verify_consistency(other1, other2, root1, root2, good)


def test_a_proof_alone_does_not_pin_the_tree_size() -> None:
    """A proof of the same shape verifies under another size: only a signed checkpoint binds it."""
    roots = [bytes.fromhex(r) for r in TREE["roots"]]
    tree = Tree(ENTRIES)
    verify_inclusion(0, 6, tree.levels[0][0], inclusion_proof(0, 5, tree.reader(5)), roots[5])
    verify_consistency(6, 7, roots[6], roots[8], consistency_proof(6, 8, tree.reader(8)))


# --- preconditions ------------------------------------------------------------------------------


def test_preconditions_are_reported_with_got_and_want() -> None:
    """Malformed arguments raise ProofError saying what was given and what was wanted."""
    tree = Tree(ENTRIES)
    leaf, root = tree.levels[0][5], bytes.fromhex(TREE["roots"][8])
    p = inclusion_proof(5, 8, tree.reader(8))
    with pytest.raises(ProofError, match="wrong proof size 4, want 3"):
        verify_inclusion(5, 8, leaf, [*p, p[0]], root)
    with pytest.raises(ProofError, match=r"proof\[1\] is 31 bytes, want 32"):
        verify_inclusion(5, 8, leaf, [p[0], p[1][:31], p[2]], root)
    with pytest.raises(ProofError, match="leaf hash is 9 bytes, want 32"):
        verify_inclusion(5, 8, b"WrongLeaf", p, root)
    with pytest.raises(ProofError, match="root is 0 bytes, want 32"):
        verify_inclusion(5, 8, leaf, p, b"")
    with pytest.raises(ProofError, match="leaf index 8 out of range for tree size 8"):
        verify_inclusion(8, 8, leaf, p, root)
    with pytest.raises(ProofError, match="need 0 <= size1 <= size2"):
        verify_consistency(5, 4, root, root, [])


def test_consistency_edge_sizes() -> None:
    """Equal sizes need equal roots and no proof; size 0 to a larger size is always refused."""
    root = bytes.fromhex(TREE["roots"][3])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(3, 3, root, root, [])
    with pytest.raises(ProofError, match="wrong proof size 1, want 0"):
        verify_consistency(3, 3, root, root, [root])
    with pytest.raises(RootMismatchError):
        verify_consistency(3, 3, EMPTY_ROOT, root, [])
    with pytest.raises(ProofError, match="nothing to prove"):
        verify_consistency(0, 3, EMPTY_ROOT, root, [])
    with pytest.raises(ProofError, match="nothing to prove"):
        verify_consistency(0, 3, EMPTY_ROOT, root, [root])
    reader = Tree(ENTRIES).reader(8)
    assert consistency_proof(0, 8, reader) == consistency_proof(8, 8, reader) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda r: inclusion_proof(8, 8, r),
        lambda r: inclusion_proof(-1, 8, r),
        lambda r: inclusion_proof(0, 0, r),
        lambda r: consistency_proof(5, 4, r),
        lambda r: consistency_proof(-1, 4, r),
        lambda r: tree_root(-1, r),
        lambda r: CompactRange.from_reader(-1, r),
    ],
)
def test_bad_arguments_to_generation_raise_proof_error(
    call: Callable[[NodeReader], object],
) -> None:
    """Out-of-range indices and sizes are refused before any node is read."""
    tree = Tree(ENTRIES)
    with pytest.raises(ProofError):
        call(tree.reader(8))
    assert tree.reads == 0


# --- cost ---------------------------------------------------------------------------------------


UNIFORM = [leaf_hash(b"")]
for _ in range(64):
    UNIFORM.append(node_hash(UNIFORM[-1], UNIFORM[-1]))


@given(
    size2=st.integers(min_value=1, max_value=2**62),
    data=st.data(),
)
def test_proofs_of_huge_trees_read_only_logarithmically_many_nodes(
    size2: int, data: st.DataObject
) -> None:
    """Proofs in trees of up to 2**62 leaves read O(log n) nodes, none twice, and verify."""
    reads: list[tuple[int, int]] = []

    def node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size2
        reads.append((level, index))
        return UNIFORM[level]  # every leaf equal, so each node is known without the leaves

    bits = size2.bit_length()
    index = data.draw(st.integers(min_value=0, max_value=size2 - 1))
    size1 = data.draw(st.integers(min_value=1, max_value=size2))
    root2 = tree_root(size2, node)
    root1 = tree_root(size1, node)
    reads.clear()
    verify_inclusion(index, size2, UNIFORM[0], inclusion_proof(index, size2, node), root2)
    assert len(reads) <= 2 * bits
    assert len(set(reads)) == len(reads)
    reads.clear()
    verify_consistency(size1, size2, root1, root2, consistency_proof(size1, size2, node))
    assert len(reads) <= 3 * bits
    assert len(set(reads)) == len(reads)


# --- compact range ------------------------------------------------------------------------------


@given(n=st.integers(min_value=0, max_value=MAX_SIZE), salt=salts)
def test_compact_range_root_tracks_every_size(n: int, salt: bytes) -> None:
    """After each append the compact range root equals the tree root; at the end, the RFC MTH."""
    entries = entries_of(n, salt)
    tree = Tree(entries)
    rng = CompactRange()
    assert rng.root() == EMPTY_ROOT
    for size, leaf in enumerate(tree.levels[0], start=1):
        rng.append(leaf)
        assert rng.size == size
        assert rng.root() == tree_root(size, tree.reader(size))
    assert rng.root() == mth(entries)


@given(n=st.integers(min_value=0, max_value=MAX_SIZE), salt=salts)
def test_on_node_reports_exactly_the_complete_nodes(n: int, salt: bytes) -> None:
    """on_node reports each complete node once, bottom up from the leaf, with its index."""
    tree = Tree(entries_of(n, salt))
    seen: list[tuple[int, int, bytes]] = []
    rng = CompactRange()
    for size, leaf in enumerate(tree.levels[0]):
        before = len(seen)
        rng.append(leaf, lambda level, index, h: seen.append((level, index, h)))
        merged = (~size & (size + 1)).bit_length() - 1  # trailing one bits of the old size
        assert [lv for lv, _, _ in seen[before:]] == list(range(merged + 1))
    assert len(seen) == len(set(seen))
    assert set(seen) == tree.nodes()


@given(n=st.integers(min_value=0, max_value=MAX_SIZE), salt=salts, data=st.data())
def test_compact_range_resumes_from_storage(n: int, salt: bytes, data: st.DataObject) -> None:
    """A range loaded by from_reader, or rebuilt from size and hashes, goes on like the original."""
    tree = Tree(entries_of(n, salt))
    m = data.draw(st.integers(min_value=0, max_value=n))
    full = CompactRange()
    for leaf in tree.levels[0][:m]:
        full.append(leaf)
    loaded = CompactRange.from_reader(m, tree.reader(m))
    rebuilt = CompactRange(full.size, full.hashes)
    assert loaded.hashes == full.hashes
    for leaf in tree.levels[0][m:]:
        for rng in (full, loaded, rebuilt):
            rng.append(leaf)
    assert full.hashes == loaded.hashes == rebuilt.hashes
    assert full.root() == loaded.root() == rebuilt.root() == tree_root(n, tree.reader(n))


def test_compact_range_rejects_a_frontier_that_cannot_be() -> None:
    """The hash count must equal popcount(size), each hash must be 32 bytes, size non-negative."""
    h = leaf_hash(b"")
    with pytest.raises(ProofError, match="has 1 hashes, want 2"):
        CompactRange(3, [h])
    with pytest.raises(ProofError, match="has 1 hashes, want 0"):
        CompactRange(0, [h])
    with pytest.raises(ProofError, match="31 bytes, want 32"):
        CompactRange(1, [h[:31]])
    with pytest.raises(ProofError, match="negative"):
        CompactRange(-1)


def test_failed_on_node_leaves_the_range_unchanged() -> None:
    """If on_node raises part way (a failed store write), the range is as before and retryable."""
    tree = Tree(ENTRIES)
    rng = CompactRange()
    for leaf in tree.levels[0][:7]:
        rng.append(leaf)
    before = list(rng.hashes)

    def fail_at_level_2(level: int, index: int, h: bytes) -> None:
        if level == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        rng.append(tree.levels[0][7], fail_at_level_2)
    assert (rng.size, rng.hashes) == (7, before)
    rng.append(tree.levels[0][7], lambda level, index, h: None)
    assert rng.root() == bytes.fromhex(TREE["roots"][8])
