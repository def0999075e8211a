"""A one-shot sync of the roster's logs (`kimberley sync`), each from the first source that
can serve it, for a Participant's node or an observer's directory alike.

Which logs: every Participant's but the node's own (an observer has none, so all of them).
Where from: the peers given, in order; by default the log's owner's node (its roster URL),
then every other Participant's node, whose replica is as good since `node.sync.pull`
trusts no byte it did not verify. The next source is tried only when one could not serve
the log at all (unreachable, refusing the request, not holding it: `PeerError`). A source
that served something that fails verification (a fork, a bad signature, a rule broken)
ends that log's pull with that error: it must be reported, not papered over by a replica
that stopped short of the same entry.

A one-shot sync only pulls. Witnessing (asking peers to cosign the own checkpoint) is a
duty of a running Participant node (`node.peers`); an observer never cosigns nor asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.errors import PeerError
from ledger.roster import Roster
from ledger.store import Store
from node.sources import TileSource
from node.sync import Progress, SyncReport, pull

#: Opens the source at a location (URL or directory) for one origin.
OpenSource = Callable[[str, str], TileSource]


def logs_to_pull(roster: Roster, own_code: str | None) -> list[str]:
    """The origins of every roster Participant's log but `own_code`'s (None: an observer)."""
    return [roster.origin(p.code) for p in roster.participants if p.code != own_code]


def roster_sources(roster: Roster, origin: str, own_code: str | None) -> list[str]:
    """The nodes to pull `origin` from: its owner's first, then every other Participant's
    but the own node's, by their roster URLs."""
    owner = roster.by_origin(origin)
    first = [] if owner is None else [owner]
    rest = [p for p in roster.participants if p is not owner and p.code != own_code]
    return list(dict.fromkeys(p.url for p in first + rest))


def pull_first(
    store: Store,
    roster: Roster,
    origin: str,
    locations: Sequence[str],
    open_source: OpenSource,
    progress: Progress | None = None,
) -> SyncReport:
    """Pull `origin` (custody rules included) from the first of `locations` that serves it.

    A verification failure is raised as it is; when no location could serve the log, one
    PeerError names what each said.
    """
    key = roster.log_key(origin)
    unserved: list[PeerError] = []
    for location in locations:
        source = open_source(location, origin)
        try:
            return pull(store, key, source, progress=progress, roster=roster)
        except PeerError as e:
            unserved.append(e)
        finally:
            source.close()
    if len(unserved) == 1:
        raise unserved[0]
    if not unserved:
        raise PeerError(f"{origin}: no source to pull from")
    raise PeerError("; ".join(str(e) for e in unserved))
