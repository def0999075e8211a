"""Whether a roster lists a data directory's key: as a Participant's log key or an observer's.

A node installs only a roster that names it, with exactly the key it holds: a roster
that dropped or re-keyed it would leave the node unable to sign (a Participant) or to read
from its peers (an observer). Pure checks; `ledger.roster_files` calls them on install.
Being listed says nothing about who made the roster: that is the chain's signatures, and
for v1 its published hash.
"""

from __future__ import annotations

from collections.abc import Callable

from ledger.errors import RosterError
from ledger.keys import Verifier
from ledger.observer_dir import AnyDataDir, ObserverDir
from ledger.roster import Observer, Participant, Roster


def check_participant(roster: Roster, key: Verifier) -> Participant:
    """The Participant whose log key is `key`; RosterError if `roster` lists none."""
    mine = roster.by_origin(key.name)
    if mine is None or mine.key != key:
        raise RosterError(f"roster v{roster.version} does not list this node's key for {key.name}")
    return mine


def check_observer(roster: Roster, key: Verifier, network: str) -> Observer:
    """The observer whose key is `key` on `network`; RosterError naming what is wrong if none."""
    where = f"roster v{roster.version}"
    if roster.network != network:
        raise RosterError(
            f"{where} is for network {roster.network!r}; this observer's data directory is "
            f"for {network!r}"
        )
    named = [o for o in roster.observers if o.key.name == key.name]
    for observer in named:
        if observer.key == key:
            return observer
    if named:
        raise RosterError(
            f"{where} lists observer {key.name} with another key ({named[0].key.to_text()}) "
            f"than this data directory's ({key.to_text()})"
        )
    listed = ", ".join(o.key.name for o in roster.observers) or "none"
    raise RosterError(f"{where} lists no observer {key.name} (its observers: {listed})")


def check_listed(node: AnyDataDir) -> Callable[[Roster], Participant | Observer]:
    """The membership check for `node`'s kind of data directory: `check_observer` with its
    key and network for an observer's, `check_participant` with its log key otherwise."""
    key = node.signer.verifier
    if isinstance(node, ObserverDir):
        network = node.network
        return lambda roster: check_observer(roster, key, network)
    return lambda roster: check_participant(roster, key)
