"""Which held logs a read command shows, and naming one: by its full origin, or by its
Participant code alone.

Read commands take ``--origin kp.example/BW`` or ``--origin BW``; a code is enough where
only one held log ends in it (`resolve_origin`, pure). `held_logs` picks the logs of a data
directory of either kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ledger.datadir import DataDir
from ledger.errors import LogError
from ledger.log import Log
from ledger.observer_dir import AnyDataDir
from ledger.roster_files import load_roster


def resolve_origin(held: Sequence[str], name: str) -> str:
    """The held origin `name` names; LogError saying what is held when it names none, or
    several."""
    if name in held:
        return name
    folded = [o for o in held if o.lower() == name.lower()]  # kp.example/bw: case is no name
    if len(folded) == 1:
        return folded[0]
    if "/" not in name:
        matches = [o for o in held if o.rpartition("/")[2] == name.upper()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise LogError(f"{name} names several logs held here: {', '.join(matches)}")
    raise LogError(f"no log {name} is held here (held: {', '.join(held) or 'none'})")


def held_logs(node: AnyDataDir, data: Path, origin: str | None) -> tuple[list[Log], bool]:
    """The logs a read command shows, and whether one log was asked for (the answer is
    then that log's, not a list).

    The named log (any held: the own or a replica), else a Participant's own log, else,
    in an observer's data directory, every log it holds. A replica is read with its key
    from the roster installed in `data`; no log is created.
    """
    if origin is None and isinstance(node, DataDir):
        return [node.own_log()], True
    with node.store.read() as txn:
        held = node.store.origins(txn)
    names = held if origin is None else [resolve_origin(held, origin)]
    one = origin is not None
    if isinstance(node, DataDir) and names == [node.origin]:
        return [node.own_log()], one
    if not names:
        return [], one
    roster = load_roster(data)
    return [Log(node.store, roster.log_key(name)) for name in names], one
