"""Kimberley Ledger core: encoding, keys, Merkle tree, notes, LMDB storage and verification.

No network code lives here; `node/` and `cli/` build on this package, never the reverse.
"""
