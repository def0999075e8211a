"""Naming a log a store holds: by its full origin, or by its Participant code alone.

Read commands take ``--origin kp.example/BW`` or ``--origin BW``; a code is enough where
only one held log ends in it. Pure: the caller reads the held origins from the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.errors import LogError


def resolve_origin(held: Sequence[str], name: str) -> str:
    """The held origin `name` names; LogError saying what is held when it names none, or
    several."""
    if name in held:
        return name
    if "/" not in name:
        matches = [o for o in held if o.rpartition("/")[2] == name.upper()]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise LogError(f"{name} names several logs held here: {', '.join(matches)}")
    raise LogError(f"no log {name} is held here (held: {', '.join(held) or 'none'})")
