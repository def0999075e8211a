"""RFC 6962 / RFC 9162 Merkle tree math: hashes, roots, proofs and their verification.

Pure: storage is reached only through a `NodeReader` the caller passes in, so the same code
serves the LMDB store, a tile cache or an in-memory test tree. A node is named by
``(level, index)``: the perfect subtree over leaves ``[index << level, (index + 1) << level)``.
Proof generation asks for O(log n) such nodes, none twice, and never walks leaves: each proof
holds at most one hash of a range that is not a perfect subtree (the right edge of the tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger.errors import ProofError, RootMismatchError

HASH_SIZE = 32
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]
"""node(level, index) -> hash of the complete subtree over [index << level, (index+1) << level)."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || entry)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


# --- generation -----------------------------------------------------------------------------


def _range_hash(begin: int, end: int, node: NodeReader) -> bytes:
    """MTH of leaves [begin, end), folded from its perfect parts, largest first.

    Every range the RFC 6962 split produces is a perfect subtree or runs to the tree's right
    edge; either way `begin` is a multiple of the largest power of two <= end - begin, so the
    greedy parts are aligned subtrees.
    """
    parts: list[bytes] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        parts.append(node(level, begin >> level))
        begin += 1 << level
    root = parts.pop()
    while parts:
        root = node_hash(parts.pop(), root)
    return root


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): where RFC 6962 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_root(size: int, node: NodeReader) -> bytes:
    """Root hash of the first `size` leaves, from popcount(size) node reads."""
    if size < 0:
        raise ProofError(f"tree size {size} is negative")
    return EMPTY_ROOT if size == 0 else _range_hash(0, size, node)


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """Audit path of leaf `index` in a tree of `size` leaves (RFC 9162 2.1.3.1), leaf end first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} out of range for tree size {size}")
    path: list[bytes] = []
    begin, n, m = 0, size, index  # current subtree D[begin:begin+n], leaf m within it
    while n > 1:
        k = _split(n)
        if m < k:
            path.append(_range_hash(begin + k, begin + n, node))
            n = k
        else:
            path.append(_range_hash(begin, begin + k, node))
            begin, n, m = begin + k, n - k, m - k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, node: NodeReader) -> list[bytes]:
    """Proof that the tree of `size1` leaves is a prefix of the one of `size2` (RFC 9162 2.1.4.1).

    Empty when size1 is 0 or equal to size2: there is nothing to prove.
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"consistency from size {size1} to size {size2}: need 0 <= size1 <= size2")
    if size1 in (0, size2):
        return []
    proof: list[bytes] = []
    begin, n, m, whole = 0, size2, size1, True  # SUBPROOF(m, D[begin:begin+n], whole)
    while m != n:
        k = _split(n)
        if m <= k:
            proof.append(_range_hash(begin + k, begin + n, node))
            n = k
        else:
            proof.append(_range_hash(begin, begin + k, node))
            begin, n, m, whole = begin + k, n - k, m - k, False
    if not whole:
        proof.append(_range_hash(begin, begin + n, node))
    proof.reverse()
    return proof


# --- verification ---------------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof size {len(proof)}, want {want}")
    for i, h in enumerate(proof):
        _check_hash(f"proof[{i}]", h)


def _shape(index: int, size: int) -> tuple[int, int]:
    """Split an audit path into (inner, border): `inner` hashes below the level where the path
    leaves the right edge of the tree, then `border` left siblings on that edge."""
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def _chain(index: int, seed: bytes, proof: Sequence[bytes], inner: int) -> bytes:
    """Hash `seed` up through `proof`: the inner part by the bits of `index`, the border from
    the left."""
    h = seed
    for i, p in enumerate(proof):
        h = node_hash(h, p) if i < inner and not (index >> i) & 1 else node_hash(p, h)
    return h


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` leads to from leaf hash `leaf` at `index` in a tree of `size`.

    Raises ProofError when the arguments cannot describe a valid proof (RFC 9162 2.1.3.2).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} out of range for tree size {size}")
    _check_hash("leaf hash", leaf)
    inner, border = _shape(index, size)
    _check_proof(proof, inner + border)
    return _chain(index, leaf, proof, inner)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash `leaf` sits at `index` in the tree of `size` leaves with `root`.

    Raises ProofError for a malformed proof, RootMismatchError when it leads elsewhere.
    """
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(index, size, leaf, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (size1, root1) is a prefix of the tree (size2, root2) (RFC 9162 2.1.4.2).

    Equal sizes need an empty proof and equal roots. A proof from size 0 to a larger size is
    rejected, as RFC 9162 says: the empty tree is a prefix of every tree, so there is nothing to
    verify and the caller should not ask. Raises ProofError, or RootMismatchError for a
    well-formed proof that leads to other roots.
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"consistency from size {size1} to size {size2}: need 0 <= size1 <= size2")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise RootMismatchError(root2, root1)
        return
    if size1 == 0:
        raise ProofError(f"consistency from size 0 to size {size2}: nothing to prove, rejected")
    # The proof is the audit path of the last perfect subtree of size1 (level `shift`), seen in
    # the tree of size2 at that level, preceded by that subtree's hash unless it is all of size1.
    shift = (size1 & -size1).bit_length() - 1
    index, count = (size1 - 1) >> shift, ((size2 - 1) >> shift) + 1
    inner, border = _shape(index, count)
    start = 0 if index == 0 else 1
    _check_proof(proof, start + inner + border)
    seed = root1 if index == 0 else proof[0]
    path = proof[start:]
    calculated1 = seed
    for i, p in enumerate(path):
        if i >= inner or (index >> i) & 1:
            calculated1 = node_hash(p, calculated1)
    if calculated1 != root1:
        raise RootMismatchError(root1, calculated1)
    calculated2 = _chain(index, seed, path, inner)
    if calculated2 != root2:
        raise RootMismatchError(root2, calculated2)


# --- compact range --------------------------------------------------------------------------


class CompactRange:
    """The right frontier of a tree of `size` leaves: one perfect-subtree hash per set bit of
    size, largest (leftmost) first. Enough to append leaves and compute the root."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ProofError(f"compact range size {size} is negative")
        if len(hashes) != size.bit_count():
            raise ProofError(
                f"compact range of size {size} has {len(hashes)} hashes, want {size.bit_count()}"
            )
        for i, h in enumerate(hashes):
            _check_hash(f"compact range hash[{i}]", h)
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def from_reader(cls, size: int, node: NodeReader) -> CompactRange:
        """Load the frontier of a stored tree: popcount(size) node reads."""
        if size < 0:
            raise ProofError(f"compact range size {size} is negative")
        hashes: list[bytes] = []
        begin = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(node(level, begin >> level))
                begin += 1 << level
        return cls(size, hashes)

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """Add one 32-byte leaf hash (not checked: hot path). Calls on_node(level, index, hash)
        for the leaf and then for every complete node it completes, bottom up; if on_node
        raises, the range is left as it was."""
        if on_node is not None:
            self.append_subtree(0, leaf, on_node)
            return
        hashes, size = self.hashes, self.size
        self.size = size + 1
        while size & 1:
            leaf = _sha256(b"\x01" + hashes.pop() + leaf).digest()
            size >>= 1
        hashes.append(leaf)

    def append_subtree(
        self, level: int, digest: bytes, on_node: Callable[[int, int, bytes], None]
    ) -> None:
        """Add a perfect subtree of 2**level leaves whose root is `digest`; the size must be a
        multiple of 2**level. What 2**level leaf appends would do, reporting the same nodes
        from `level` up (the caller has the ones below); if on_node raises, the range is left
        as it was."""
        hashes, size, width = self.hashes, self.size, 1 << level
        index = size >> level
        on_node(level, index, digest)
        top = len(hashes)
        while index & 1:
            top -= 1
            index >>= 1
            level += 1
            digest = _sha256(b"\x01" + hashes[top] + digest).digest()
            on_node(level, index, digest)
        del hashes[top:]
        hashes.append(digest)
        self.size = size + width

    def root(self) -> bytes:
        """The tree root: the frontier hashes folded right to left (EMPTY_ROOT when empty)."""
        hashes = self.hashes
        if not hashes:
            return EMPTY_ROOT
        root = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            root = _sha256(b"\x01" + hashes[i] + root).digest()
        return root

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, hashes=[{len(self.hashes)} hashes])"
