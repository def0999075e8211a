"""A one-shot sync of the roster's logs (`kimberley sync`), each from the first source that
can serve it, for a Participant's node or an observer's directory alike.

Which logs: every Participant's but the node's own (an observer has none, so all of them).
Where from: the peers given, in order; by default the log's owner's node (its roster URL),
then every other Participant's node, whose replica is as good since `node.sync.pull`
trusts no byte it did not verify.

When to try the next source: only when one cannot serve a checkpoint that verifies with the
log's roster key (unreachable, refusing the request, not holding the log: `PeerError`; a
note that is malformed or signed by another key: `NoteError`). Once a source has served a
verifying checkpoint, that checkpoint is what the log signed, and this sync follows it or
fails for that log: a fork, a rule broken, an entry bundle or a proof tile it then cannot
serve, all end the log's pull with that error, reported with the source. Falling back then
would let another source's older or forked copy pass silently for the log the owner signed
further. So within one sync the first verifying checkpoint is the one the log must reach.

One exception, in the other direction: a source whose checkpoint is smaller than what this
directory knows the log has signed (the entries held, or a larger checkpoint an earlier sync
verified before it stopped) is pulled as usual (its checkpoint is still checked against the
entries held, so a fork is still caught) and then passed over as behind, and the next source
is tried for the rest. If none reaches that size the `LogPull` says how far short the log is
held (`short_of`), so `kimberley sync` does not call a log pulled that it knows is not whole.

Each log's `LogPull` says which source it came from, which were passed over and why, and
whether the source was the owner's own node (a replica may lag behind the owner).

A one-shot sync only pulls. Witnessing (asking peers to cosign the own checkpoint) is a
duty of a running Participant node (`node.peers`); an observer never cosigns nor asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError, NoteError, PeerError
from ledger.holding import Holding, held_log
from ledger.keys import Verifier
from ledger.roster import Roster
from ledger.store import Store
from ledger.words import counted
from node.sources import TileSource
from node.sync import Progress, SyncReport, fetch_checkpoint, pull

#: Opens the source at a location (URL or directory) for one origin.
OpenSource = Callable[[str, str], TileSource]


@dataclass(frozen=True, slots=True)
class Unserved:
    """A source passed over: it could not serve a checkpoint that verifies, and why."""

    location: str
    reason: str


@dataclass(frozen=True, slots=True)
class LogPull:
    """What one log's pull came to.

    `source` is the location whose verified checkpoint the pull followed last (None when
    no source served one); `owner` the owner's node URL on the roster; `skipped` the
    sources passed over without taking anything from them; `behind` the sources pulled
    from (their entries kept) whose checkpoint was behind what the log had signed. `error`
    is set when the log's pull failed, `report` when entries were verified: both when
    sources behind brought some before `source` failed. `short_of` is the size the log is
    known to have signed when the entries held after the pull stop short of it (no source
    served the rest), else None; `refused` then names the entry a sync here refused
    (index, rule) when that is where it stops.
    """

    origin: str
    source: str | None
    owner: str | None
    skipped: tuple[Unserved, ...]
    report: SyncReport | None = None
    error: LedgerError | None = None
    short_of: int | None = None
    refused: tuple[int, str] | None = None
    behind: tuple[Unserved, ...] = ()

    @property
    def from_owner(self) -> bool:
        """Whether the log came from its owner's own node, not a replica or mirror."""
        return self.source is not None and _same(self.source, self.owner)


def _same(location: str, url: str | None) -> bool:
    return url is not None and location.rstrip("/") == url.rstrip("/")


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
) -> LogPull:
    """Pull `origin` (custody rules included) from the first of `locations` that serves a
    checkpoint verifying with its roster key, and only from that one, unless that checkpoint
    is behind what the log is known to have signed (see the module docstring). Failures
    are returned in the `LogPull`, not raised: when no location served a checkpoint,
    `error` is one PeerError naming what each said."""
    key = roster.log_key(origin)
    owner = roster.by_origin(origin)
    owner_url = None if owner is None else owner.url
    skipped: list[Unserved] = []
    signed = _known_size(store, key)
    behind: list[tuple[Unserved, SyncReport]] = []  # sources pulled, behind `signed`
    for location in locations:
        source = open_source(location, origin)
        try:
            try:
                note = fetch_checkpoint(source, key)
            except PeerError as e:  # its message names the URL or file
                skipped.append(Unserved(location, str(e)))
                continue
            except NoteError as e:
                skipped.append(Unserved(location, f"{location}: checkpoint refused: {e}"))
                continue
            passed, earlier = tuple(skipped), tuple(u for u, _ in behind)
            so_far = behind[-1][1] if behind else None
            try:
                report = pull(store, key, source, progress=progress, roster=roster, note=note)
            except LedgerError as e:  # this source's checkpoint stands: no other source
                return LogPull(origin, location, owner_url, passed, so_far, e, behind=earlier)
            if so_far is not None:  # the entries came in two or more pulls: all of them
                report = SyncReport(origin, so_far.before, report.after, report.checkpoint_size)
            if report.checkpoint_size >= signed:
                return LogPull(origin, location, owner_url, passed, report, behind=earlier)
            lag = (  # `signed` stands: a checkpoint below it brings no entry past it
                f"{location}: its checkpoint of "
                f"{counted(report.checkpoint_size, 'entry', 'entries')} is behind the {signed:,} "
                "the log has signed"
            )
            behind.append((Unserved(location, lag), report))
        finally:
            source.close()
    if behind:  # every source that served the log is behind: the last one pulled stands
        last, report = behind[-1]
        earlier = tuple(u for u, _ in behind[:-1])
        if report.after >= signed:
            return LogPull(origin, last.location, owner_url, tuple(skipped), report, behind=earlier)
        held = _holding(store, key)
        stop = None if held is None else held.refusal
        refused = None if stop is None else (stop.index, stop.rule)
        return LogPull(
            origin,
            last.location,
            owner_url,
            tuple(skipped),
            report,
            short_of=signed,
            refused=refused,
            behind=earlier,
        )
    if not skipped:
        why = PeerError(f"{origin}: no source to pull from")
    else:
        why = PeerError("; ".join(u.reason for u in skipped))
    return LogPull(origin, None, owner_url, tuple(skipped), error=why)


def _known_size(store: Store, key: Verifier) -> int:
    """The largest size `key.name`'s log is known here to have signed: the entries held, or
    a larger checkpoint a sync here verified (`ledger.holding`)."""
    held = _holding(store, key)
    return 0 if held is None else max(held.size, held.signed_at_least or 0)


def _holding(store: Store, key: Verifier) -> Holding | None:
    """How `key.name`'s log stands here (None when none of it is held)."""
    with store.read() as txn:
        return held_log(store, txn, key.name, key)


def roster_origin(roster: Roster, name: str) -> str:
    """The roster log `name` names: an origin (``kp.example/BW``) or a Participant code
    (``BW``, ``bw``); RosterError if the roster lists no such Participant."""
    origin = name if "/" in name else roster.origin(name.upper())
    roster.log_key(origin)  # RosterError naming the roster version if not listed
    return origin
