"""An observer's data directory: a read-only auditor's key and the logs it synced.

    <dir>/store/          the LMDB environment: every Participant's log pulled, none of its own
    <dir>/observer.key    the observer's Ed25519 key, mode 0600, named as on the roster
    <dir>/roster/         the trusted roster chain (`ledger.roster_files`)

Observers (the KP Working Group on Monitoring, civil-society auditors) are on the roster
by name and key (`ledger.roster.Observer`); nodes serve them reads, and the key signs
those requests only, never an entry, a checkpoint, a roster or a cosignature.

What makes a directory an observer's is recorded twice: the key file is ``observer.key``,
not a Participant's ``log.key`` (so the node and the custody engine, which look for a log
key, never take it for one), and the store's `meta` database holds ``observer`` (the key's
name) and ``network`` where a Participant's holds ``origin``. Both are written once by
`ObserverDir.init`; `ObserverDir.open` checks that they agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeAlias

from ledger.datadir import OBSERVER_KEY, DataDir, check_network, holds_ledger
from ledger.errors import AlreadyInitialisedError, LedgerError, NotInitialisedError
from ledger.keys import Signer, load_signer, save_signer
from ledger.store import Store

#: An observer's name is its key's name and the keyid of its signed requests: no '/', so it
#: can never read as a log origin (``<network>/<code>``).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")


def check_observer_name(name: str) -> str:
    """`name` if it can name an observer's key (e.g. ``kp-monitoring``); LedgerError if not."""
    if not _NAME.fullmatch(name):
        raise LedgerError(
            f"observer name {name!r} must be 1 to 64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit (e.g. kp-monitoring)"
        )
    return name


class ObserverDir:
    """An opened observer's data directory: the store of synced logs and the observer's key."""

    def __init__(self, path: Path, store: Store, signer: Signer, network: str) -> None:
        self.path = path
        self.store = store
        self.signer = signer
        self.network = network

    @property
    def name(self) -> str:
        """The observer's name on the roster: its key's name."""
        return self.signer.name

    @classmethod
    def init(cls, path: Path, name: str, network: str) -> ObserverDir:
        """Create an observer's data directory with a fresh key; refuse to reuse any ledger."""
        check_observer_name(name)
        check_network(network)
        if holds_ledger(path):
            raise AlreadyInitialisedError(f"{path} already holds a ledger; refusing to overwrite")
        path.mkdir(parents=True, exist_ok=True)
        signer = Signer.generate(name)
        save_signer(path / OBSERVER_KEY, signer)
        store = Store(path / "store", create=True)
        with store.write() as txn:
            store.put_meta(txn, "observer", name)
            store.put_meta(txn, "network", network)
        return cls(path, store, signer, network)

    @classmethod
    def open(cls, path: Path) -> ObserverDir:
        """Open an observer's data directory, checking that its key and store agree."""
        if not (path / OBSERVER_KEY).exists():
            raise NotInitialisedError(f"no observer's data directory in {path}")
        signer = load_signer(path / OBSERVER_KEY)
        store = Store(path / "store")
        with store.read() as txn:
            name = store.get_meta(txn, "observer")
            network = store.get_meta(txn, "network")
        if name != signer.name or network is None:
            store.close()
            raise LedgerError(
                f"{path}: the key is {signer.name!r}'s but the store records observer "
                f"{name!r} of network {network!r}"
            )
        return cls(path, store, signer, network)

    def close(self) -> None:
        """Release the store."""
        self.store.close()


#: A data directory of either kind: a Participant's (own log) or an observer's (none).
AnyDataDir: TypeAlias = DataDir | ObserverDir


def is_observer_dir(path: Path) -> bool:
    """True when `path` is an observer's data directory (it holds an observer's key)."""
    return (path / OBSERVER_KEY).exists()


def open_any(path: Path) -> AnyDataDir:
    """Open a Participant's or an observer's data directory, whichever `path` holds."""
    if is_observer_dir(path):
        return ObserverDir.open(path)
    return DataDir.open(path)
