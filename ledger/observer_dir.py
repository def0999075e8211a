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

from ledger.datadir import OBSERVER_KEY, DataDir, Meta, check_network, create_store, open_keyed
from ledger.errors import DataDirError, InvalidNameError, NotInitialisedError
from ledger.keys import Signer
from ledger.store import Store

#: An observer's name is its key's name and the keyid of its signed requests: no '/', so it
#: can never read as a log origin (``<network>/<code>``).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
#: The store meta key set in a directory whose logs were pulled verbatim (rules unchecked).
VERBATIM = "verbatim"


def check_observer_name(name: str) -> str:
    """`name` if it can name an observer's key (e.g. ``kp-monitoring``); InvalidNameError if
    not."""
    if not _NAME.fullmatch(name):
        raise InvalidNameError(
            f"observer name {name!r} must be 1 to 64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit (e.g. kp-monitoring)"
        )
    return name


class ObserverDir:
    """An opened observer's data directory: the store of synced logs and the observer's key.

    `verbatim`: its logs were pulled without the custody rules (the demo's auditor copy,
    `mark_verbatim`); it is read as it is, and `kimberley sync` refuses to add to it.
    """

    def __init__(
        self, path: Path, store: Store, signer: Signer, network: str, verbatim: bool = False
    ) -> None:
        self.path = path
        self.store = store
        self.signer = signer
        self.network = network
        self.verbatim = verbatim

    @property
    def name(self) -> str:
        """The observer's name on the roster: its key's name."""
        return self.signer.name

    @classmethod
    def init(cls, path: Path, name: str, network: str) -> ObserverDir:
        """Create an observer's data directory with a fresh key; refuse to reuse any ledger.
        The store and its meta are written first, the key last (`datadir.create_store`)."""
        check_observer_name(name)
        check_network(network)
        signer = Signer.generate(name)
        meta = {"observer": name, "network": network}
        return cls(path, create_store(path, meta, OBSERVER_KEY, signer), signer, network)

    @classmethod
    def open(cls, path: Path) -> ObserverDir:
        """Open an observer's data directory, checking that its key and store agree
        (DataDirError if not)."""
        if not (path / OBSERVER_KEY).exists():
            raise NotInitialisedError(f"no observer's data directory in {path}")

        def check(signer: Signer, meta: Meta) -> None:
            name, network = meta["observer"], meta["network"]
            if name != signer.name or network is None:
                raise DataDirError(
                    f"{path}: the key is {signer.name!r}'s but the store records observer "
                    f"{name!r} of network {network!r}"
                )

        names = ("observer", "network", VERBATIM)
        signer, store, meta = open_keyed(path, OBSERVER_KEY, names, check)
        network = meta["network"]
        assert network is not None  # `check` refused a store without one
        return cls(path, store, signer, network, meta[VERBATIM] is not None)

    def mark_verbatim(self) -> None:
        """Record that this directory's logs are pulled verbatim, custody rules unchecked."""
        with self.store.write() as txn:
            self.store.put_meta(txn, VERBATIM, "custody rules not checked")
        self.verbatim = True

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
