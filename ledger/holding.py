"""How much of a log is held here: the one answer the audit, trace, stats and `certificate
show` share.

A replica is a clean prefix of its owner's log. Two kept records can show that the owner's
log goes on past it:

- a verified refusal (`ledger.refusals.verified_refusal`): a sync here refused the entry
  right after those held for breaking a custody rule, and the log is held here only up to it;
- a seen checkpoint (`ledger.seen_checkpoints.seen_size`): a sync here verified a checkpoint
  the owner signed of more entries than are held, and stopped before fetching the rest.

A refusal, where there is one, explains the stop (its entry and rule are what a person
needs); a larger signed checkpoint alone says only that more exists. Neither ever applies
to the node's own log, which is never synced: all of it is here. Each record counts only
when it checks out against the log's roster key; with no key, nothing kept is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError, RosterError
from ledger.keys import Verifier
from ledger.refusals import Refusal, verified_refusal
from ledger.roster import Roster
from ledger.seen_checkpoints import seen_size
from ledger.store import Store


@dataclass(frozen=True, slots=True)
class Holding:
    """Log `origin` as held here: entries [0, size), and what shows its owner's log goes on."""

    origin: str
    size: int  #: entries held, 0 .. size - 1
    #: the size of the largest checkpoint of the log a sync here verified, when it is larger
    #: than `size` (a pull that stopped midway); else None
    signed: int | None = None
    #: the entry a sync here refused at index `size` for breaking a rule, verified; else None
    refusal: Refusal | None = None
    #: the size of the checkpoint `refusal` was served under, when its note verifies
    refusal_signed: int | None = None

    @property
    def in_part(self) -> bool:
        """True when the owner's log goes on past what is held here."""
        return self.refusal is not None or self.signed is not None

    @property
    def signed_at_least(self) -> int | None:
        """The most entries the owner is known here to have signed past those held, or None."""
        sizes = [n for n in (self.signed, self.refusal_signed) if n is not None and n > self.size]
        return max(sizes, default=None)

    def stopped_short(self, name: str) -> str:
        """The stop in words, for a log held short of a signed checkpoint with no refusal to
        explain it: `name` is the log as the caller names it (``IN``, ``kp.example/IN``).
        Each command words a refusal itself, with the refused entry's rule and use."""
        signed = self.signed_at_least
        if signed is None:
            raise ValueError(f"{self.origin} is not held short of a signed checkpoint")
        if self.size == 0:
            return (
                f"{name}'s log is held here with none of the {signed:,} entries its owner "
                "signed (a sync here stopped before them)"
            )
        return (
            f"{name}'s log is held here only to entry {self.size - 1} ({self.size:,} of the "
            f"{signed:,} entries its owner signed: a sync here stopped before the rest)"
        )


def holding(
    store: Store, txn: lmdb.Transaction, origin: str, log_id: bytes, key: Verifier | None
) -> Holding:
    """How `origin`'s log (`log_id` in `store`) stands in snapshot `txn`, judged with the
    log's roster `key` (None: not on the roster, or no roster; nothing kept is trusted)."""
    size = store.head(txn, log_id).size
    if key is None or store.get_meta(txn, "origin") == origin:
        return Holding(origin, size)  # the own log, or no key to check the records with
    seen = seen_size(store, txn, origin, key, beyond=size)
    refused = verified_refusal(store, txn, log_id, key)
    served = None
    if refused is not None and refused.note:
        try:
            served = open_checkpoint(refused.note, key)[0].size
        except LedgerError:
            served = None  # a note that does not verify tells nothing
    return Holding(origin, size, seen if seen > size else None, refused, served)


def held_log(
    store: Store, txn: lmdb.Transaction, origin: str, key: Verifier | None
) -> Holding | None:
    """`holding` of `origin`'s log, looked up in snapshot `txn`; None when none of it is held."""
    log_id = store.log_id(txn, origin)
    return None if log_id is None else holding(store, txn, origin, log_id, key)


def roster_key(roster: Roster | None, origin: str) -> Verifier | None:
    """The key `roster` gives `origin`'s log, the one a Holding is judged with; None with no
    roster or for an origin not on it (then nothing kept is trusted)."""
    if roster is None:
        return None
    try:
        return roster.log_key(origin)
    except RosterError:
        return None
