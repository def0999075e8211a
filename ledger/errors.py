"""Every failure the ledger can report, rooted in one `LedgerError`.

Callers catch the most specific class they can act on; the CLI catches `LedgerError`
once and prints its message. Foreign exceptions (msgpack, nacl, lmdb) are wrapped at
the boundary with ``raise ... from e``.

    LedgerError
    ├── EncodingError            malformed or non-canonical bytes
    │   ├── EntryTooLargeError   an entry over the 65,535-byte tile-bundle limit
    │   └── RecordError          a custody record body with missing or ill-typed fields
    ├── KeyFileError             a key file or verifier-key text that cannot be used
    ├── SignatureError           a signature that does not verify
    ├── ProofError               an inclusion or consistency proof that does not verify
    │   └── RootMismatchError    the proof is well formed but leads to another root
    ├── NoteError                a signed note or checkpoint that is malformed or untrusted
    ├── RosterError              a roster that is malformed, under-signed or out of order
    ├── StoreError               the LMDB store cannot be opened, read or written
    │   ├── NotInitialisedError  no ledger in the data directory
    │   └── AlreadyInitialisedError
    ├── DataDirError             a data directory whose key and store disagree, or that
    │                            cannot be used as asked (logs pulled verbatim, for sync)
    ├── ObserverDirError         an observer's data directory, asked for a log of its own
    ├── InvalidNameError         a network, Participant code or observer name that cannot be used
    ├── LogError                 a request the log cannot serve (index out of range, ...)
    ├── IntegrityError           replay found a stored byte that is wrong (carries the index)
    ├── PeerError                a peer or mirror that fails, stalls, or serves too much
    └── RuleViolation            a custody rule is broken (subclasses name the rule)
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class EncodingError(LedgerError):
    """Bytes that are not canonical Kimberley msgpack, or do not have the expected shape."""


class EntryTooLargeError(EncodingError):
    """An entry larger than the tile entry-bundle limit (65,535 bytes)."""


class RecordError(EncodingError):
    """A custody record whose body lacks a field, has a wrong type or an impossible value."""


class KeyFileError(LedgerError):
    """A private key file or a verifier key text that is missing, malformed or unsafe."""


class SignatureError(LedgerError):
    """A signature that does not verify under the key it claims."""


class ProofError(LedgerError):
    """An inclusion or consistency proof that is malformed or does not verify."""


class RootMismatchError(ProofError):
    """A well-formed proof that leads to a root other than the expected one."""

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        self.expected = expected
        self.calculated = calculated
        super().__init__(f"root mismatch: calculated {calculated.hex()}, expected {expected.hex()}")


class NoteError(LedgerError):
    """A signed note, checkpoint or cosignature that is malformed or not signed by a known key."""


class RosterError(LedgerError):
    """A roster that is malformed, lacks the signatures its predecessor requires, or rolls back."""


class StoreError(LedgerError):
    """The LMDB store cannot be opened, read or written."""


class NotInitialisedError(StoreError):
    """The data directory holds no ledger yet (run `kimberley init`)."""


class AlreadyInitialisedError(StoreError):
    """The data directory already holds a ledger; refusing to overwrite it."""


class DataDirError(LedgerError):
    """A data directory whose key file and store disagree, or that cannot serve the command
    (an auditor's copy pulled verbatim, without the custody rules, refuses `sync`)."""


class ObserverDirError(LedgerError):
    """A command that needs the Participant's own log, run on an observer's data directory
    (an auditor's: it holds synced logs only, and its key signs requests, never entries).
    Not a StoreError: the store is fine, the directory is of the other kind."""


class InvalidNameError(LedgerError):
    """A network name, Participant code or observer name that cannot name a log or key."""


class LogError(LedgerError):
    """A request the log cannot serve: an index or size out of range, an unknown origin."""


class IntegrityError(LedgerError):
    """Replay found stored data that is wrong; `index` names the first bad entry."""

    def __init__(self, origin: str, index: int, reason: str) -> None:
        self.origin = origin
        self.index = index
        self.reason = reason
        super().__init__(f"{origin} entry {index}: {reason}")


class PeerError(LedgerError):
    """A peer or static mirror that cannot be reached, fails, stalls or sends too much."""


class RuleViolation(LedgerError):
    """A custody rule is broken; subclasses name the rule, the message the values."""

    rule = "custody"
