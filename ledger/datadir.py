"""A node's data directory: its LMDB store, its log key and who it is.

    <dir>/store/     the LMDB environment (every log this node holds)
    <dir>/log.key    the Participant's Ed25519 log key, mode 0600

The node's identity (network name, Participant code, origin) lives in the store's
`meta` database, written once by `init`. An observer's data directory (an auditor's,
`ledger.observer_dir`) has ``observer.key`` instead and no own log: `DataDir.open`
refuses it with `ObserverDirError`, so every command that needs the own log says so.

`init` writes the store and its meta first and the key file last (temp file, fsync,
rename): a key file means a finished init. A failed init removes what it created, so
the directory can be initialised again once the cause is fixed.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ledger.errors import (
    AlreadyInitialisedError,
    DataDirError,
    InvalidNameError,
    NotInitialisedError,
    ObserverDirError,
)
from ledger.keys import Signer, load_signer, save_signer
from ledger.log import Clock, EntryHook, Log, wall_clock_ms
from ledger.store import Store

DATA_ENV = "KIMBERLEY_DATA"
DEFAULT_DATA_DIR = "kimberley-data"
#: A Participant's log key file and an observer's key file, in the data directory.
LOG_KEY = "log.key"
OBSERVER_KEY = "observer.key"
_PARTICIPANT = re.compile(r"[A-Z]{2}")
_NETWORK = re.compile(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]")


def default_data_dir() -> Path:
    """``$KIMBERLEY_DATA`` if set, else ``./kimberley-data``."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


def check_network(network: str) -> str:
    """`network` if it looks like a domain name (``kp.example``); InvalidNameError if not."""
    if not _NETWORK.fullmatch(network):
        raise InvalidNameError(f"network {network!r} must look like a domain name, e.g. kp.example")
    return network


def make_origin(network: str, participant: str) -> str:
    """The log origin ``<network>/<participant>``, checking both parts."""
    if not _PARTICIPANT.fullmatch(participant):
        raise InvalidNameError(
            f"participant {participant!r} must be an ISO 3166-1 alpha-2 code or EU (e.g. BW)"
        )
    return f"{check_network(network)}/{participant}"


def holds_ledger(path: Path) -> bool:
    """True when `path` already holds a data directory of either kind (or a stray store)."""
    names = (LOG_KEY, OBSERVER_KEY, "store/data.mdb")
    return any(os.path.lexists(path / name) for name in names)  # a dangling key link counts


def not_initialised(path: Path) -> NotInitialisedError:
    """The refusal to open `path`, which holds no key: naming a store left without one."""
    if _keyless_store(path):
        return NotInitialisedError(
            f"{path} holds a store but no key file ({LOG_KEY} or {OBSERVER_KEY}): an init "
            "that stopped before writing its key (run `kimberley init` again) or a key "
            "that was removed (restore it)"
        )
    return NotInitialisedError(f"no ledger in {path} (run `kimberley init`)")


def no_own_log(path: Path) -> ObserverDirError:
    """The refusal of a command that needs the own log, in an observer's data directory."""
    return ObserverDirError(f"{path} is an observer's data directory; it has no log of its own")


def create_store(path: Path, meta: dict[str, str], key_file: str, signer: Signer) -> Store:
    """Make a data directory's store with its `meta`, then its key file, last: the key marks
    a finished init (`holds_ledger`). On any failure, what this call created is removed
    again, so the directory can be initialised once the cause is fixed."""
    if holds_ledger(path) and not _keyless_store(path):
        raise AlreadyInitialisedError(f"{path} already holds a ledger; refusing to overwrite")
    made_dir = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    with _init_lock(path):  # another init of `path` waits here, then finds this one's key
        _clear_unfinished_init(path)
        if holds_ledger(path):
            raise AlreadyInitialisedError(f"{path} already holds a ledger; refusing to overwrite")
        made_store = not (path / "store").exists()
        store: Store | None = None
        try:
            store = Store(path / "store", create=True)
            with store.write() as txn:
                for name, value in meta.items():
                    store.put_meta(txn, name, value)
            _write_key(path / key_file, signer)
        except BaseException:
            if store is not None:
                store.close()
            _undo(path, made_dir, made_store)
            raise
    return store


@contextmanager
def _init_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the directory `path` (flock, released when the process
    ends however it ends), so two inits of one directory run one after the other: the
    second would otherwise take the first's half-made store for a killed init's."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


#: A store's meta values by name (None for a name it does not record).
Meta = dict[str, str | None]


def open_keyed(
    path: Path, key_file: str, names: Sequence[str], check: Callable[[Signer, Meta], None]
) -> tuple[Signer, Store, Meta]:
    """Open the data directory `path` of either kind: its key from `key_file`, its store and
    the meta values `names`, which `check` judges against the key (raising to refuse); the
    store is closed again when anything fails."""
    signer = load_signer(path / key_file)
    store = Store(path / "store")
    try:
        with store.read() as txn:
            meta = {name: store.get_meta(txn, name) for name in names}
        check(signer, meta)
    except BaseException:
        store.close()
        raise
    return signer, store, meta


def _keyless_store(path: Path) -> bool:
    """True when `path` holds a store but neither key file: an init stopped (killed) before
    it wrote its key, or a key that was removed."""
    keys = (os.path.lexists(path / name) for name in (LOG_KEY, OBSERVER_KEY))  # a link too
    return (path / "store" / "data.mdb").exists() and not any(keys)


def _clear_unfinished_init(path: Path) -> None:
    """Remove the store an init left behind when it was killed before writing its key (the
    key is written last), so init can run again: only when that store holds no log, so
    nothing signed or pulled is ever removed. A keyless store with logs is refused."""
    if not _keyless_store(path):
        return
    store = Store(path / "store")
    try:
        with store.read() as txn:
            origins = store.origins(txn)
    finally:
        store.close()
    if origins:
        raise AlreadyInitialisedError(
            f"{path}/store holds {len(origins)} log(s) but {path} has no {LOG_KEY} or "
            f"{OBSERVER_KEY}: restore the key file; init will not overwrite a store with logs"
        )
    shutil.rmtree(path / "store")


def _write_key(path: Path, signer: Signer) -> None:
    """Write the key atomically: a temp file (0600, fsynced), renamed into place."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)  # left by a crashed init: never a key in use
    save_signer(temp, signer)
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _undo(path: Path, made_dir: bool, made_store: bool) -> None:
    """Remove what a failed init created (never what was there before it)."""
    if made_dir:
        shutil.rmtree(path, ignore_errors=True)
    elif made_store:
        shutil.rmtree(path / "store", ignore_errors=True)


class DataDir:
    """An opened data directory: the store plus this Participant's log key."""

    def __init__(self, path: Path, store: Store, signer: Signer) -> None:
        self.path = path
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.network, _, self.participant = self.origin.partition("/")

    @classmethod
    def init(cls, path: Path, participant: str, network: str) -> DataDir:
        """Create a new data directory with a fresh log key; refuse to reuse an existing one."""
        origin = make_origin(network, participant)
        signer = Signer.generate(origin)
        store = create_store(path, {"origin": origin}, LOG_KEY, signer)
        return cls(path, store, signer)

    @classmethod
    def open(cls, path: Path) -> DataDir:
        """Open an initialised data directory, checking that key and store agree;
        ObserverDirError for an observer's, which has no log of its own."""
        if not (path / LOG_KEY).exists():
            if (path / OBSERVER_KEY).exists():
                raise no_own_log(path)
            raise not_initialised(path)

        def check(signer: Signer, meta: Meta) -> None:
            if meta["observer"] is not None:
                raise no_own_log(path)
            if meta["origin"] != signer.name:
                raise DataDirError(
                    f"{path}: key is for {signer.name} but the store is {meta['origin']}"
                )

        signer, store, _ = open_keyed(path, LOG_KEY, ("origin", "observer"), check)
        return cls(path, store, signer)

    def own_log(self, *, hook: EntryHook | None = None, clock: Clock = wall_clock_ms) -> Log:
        """This Participant's own log, ready to append."""
        return Log(self.store, self.signer.verifier, self.signer, hook=hook, clock=clock)

    def close(self) -> None:
        """Release the store."""
        self.store.close()
