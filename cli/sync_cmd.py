"""`kimberley sync`: pull the roster's logs from their nodes, a peer or a static mirror.

Works the same in a Participant's data directory (every log but its own) and in an
observer's (every log): requests are signed with the directory's key, a log key or the
observer's, and every entry is verified, custody rules included, before it is stored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_reading
from cli.output import USAGE, CommandFailed, console, emit_json, errors, progress_bar
from ledger.errors import DataDirError
from ledger.keys import Signer
from ledger.observer_dir import ObserverDir
from ledger.roster_files import load_roster
from ledger.words import counted
from node.pull_logs import LogPull, logs_to_pull, pull_first, roster_origin, roster_sources
from node.sources import DirectorySource, HttpSource, TileSource


def sync(
    peer: Annotated[
        list[str] | None,
        typer.Option(
            help="Peer node or static mirror (http(s) URL or directory), tried in order "
            "(repeatable). Default: each log's owner's node from the roster, then the other "
            "Participants' nodes."
        ),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(help="Log to pull, kp.example/BW or BW (repeatable; default: all others)."),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Pull and verify every roster log (or the named ones): all but the own log in a
    Participant's data directory, all of them in an observer's.

    Each log is pulled from the first source that serves a checkpoint signed by its roster
    key, and only from that one: a source that then fails (a fork, an entry breaking a rule,
    a tile it cannot serve) fails that log for this sync. Each log line names its source and
    the sources passed over, and says when it is not the owner's node. A log that cannot be
    pulled is reported on its own line and the others are still pulled; the exit status is
    then 1. So it is when a log stays held short of a checkpoint an earlier sync verified
    (a source behind that size is passed over for the next, which may hold the rest).
    """
    for location in peer or ():  # a location of another URL scheme is no directory either
        _url_scheme(location)
    node = open_reading(data)
    if isinstance(node, ObserverDir) and node.verbatim:
        raise DataDirError(
            f"{data} holds logs pulled verbatim (custody rules unchecked, as by the demo); "
            "sync would add rule-checked entries to them: init a new observer's directory"
        )
    roster = load_roster(data)
    own_code = None if isinstance(node, ObserverDir) else node.participant
    origins = [roster_origin(roster, o) for o in origin] if origin else None
    pulls: list[LogPull] = []

    def open_source(location: str, name: str) -> TileSource:
        return _source(location, name, node.signer)

    with progress_bar("sync", 0, enabled=not as_json) as bar:
        for name in origins or logs_to_pull(roster, own_code):
            task = bar.add_task(name, total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            places = peer or roster_sources(roster, name, own_code)
            pulls.append(pull_first(node.store, roster, name, places, open_source, advance))
    _print(pulls, as_json)
    if any(p.error is not None or p.short_of is not None for p in pulls):
        raise typer.Exit(1)


#: A location that starts with a URL scheme (RFC 3986: a letter, then letters, digits, +-.).
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def _url_scheme(location: str) -> str | None:
    """The URL scheme `location` starts with, lowercased, or None for a directory; a usage
    error (exit 2) naming the scheme for any but http and https, rather than a file path
    (``ftp:/x/...``) that names no directory."""
    found = _URL_SCHEME.match(location)
    if found is None:
        return None
    scheme = found[1].lower()
    if scheme not in ("http", "https"):
        raise CommandFailed(
            f"--peer {location!r}: {found[1]}:// is not a scheme sync can pull from "
            "(give an http:// or https:// URL, or a directory of static tiles)",
            USAGE,
        )
    return scheme


def _source(location: str, origin: str, signer: Signer) -> TileSource:
    """A node or web server (requests signed by `signer`), or a directory of static tiles."""
    if _url_scheme(location) is not None:
        return HttpSource(location, origin, signer=signer)
    return DirectorySource(Path(location), origin)


def _print(pulls: list[LogPull], as_json: bool) -> None:
    """Each log pulled, with its source and the sources passed over, then each that could
    not be, one line each on stderr (or one JSON list, pulled logs first)."""
    pulls = [p for p in pulls if p.report is not None] + [p for p in pulls if p.report is None]
    if as_json:
        emit_json([_json(p) for p in pulls])
        return
    for p in pulls:
        if p.report is None:
            continue
        r = p.report
        came = (  # a failed pull's entries came from the sources behind, listed below
            f" from {p.source}" + ("" if p.from_owner else " [yellow](not the owner's node)[/]")
            if p.error is None
            else ", from the sources behind below"
        )
        console.print(
            f"{r.origin}: {r.before:,} -> {counted(r.after, 'entry', 'entries')} verified "
            f"(checkpoint size {r.checkpoint_size:,}){came}"
            + (
                f" [yellow](behind the {counted(r.before, 'entry', 'entries')} held here)[/]"
                if r.checkpoint_size < r.before
                else ""
            ),
            soft_wrap=True,
        )
        if p.short_of is not None:
            why = (
                "no source served the rest"
                if p.refused is None
                else f"a sync here refused entry {p.refused[0]} ({p.refused[1]}; see the audit)"
            )
            errors.print(
                f"error: {r.origin}: held here to {r.after:,} of the "
                f"{counted(p.short_of, 'entry', 'entries')} the log has signed (a checkpoint a "
                f"sync here verified); {why}",
                markup=False,
                soft_wrap=True,
            )
        for u in p.behind:
            console.print(f"  pulled, but behind: {u.reason}", markup=False, soft_wrap=True)
        for u in p.skipped:
            console.print(f"  passed over: {u.reason}", markup=False, soft_wrap=True)
    for p in pulls:
        if p.error is not None:
            where = "" if p.source is None else f" (checkpoint from {p.source}; no fallback)"
            errors.print(f"error: {p.origin}: {p.error}{where}", markup=False, soft_wrap=True)


def _json(p: LogPull) -> dict[str, object]:
    """One log's line of `sync --json`."""
    shown: dict[str, object] = {"origin": p.origin}
    if p.report is not None:
        r = p.report
        shown |= {"before": r.before, "after": r.after, "checkpoint": r.checkpoint_size}
        shown["short_of"] = p.short_of
        shown["refused"] = None if p.refused is None else list(p.refused)
    if p.error is not None:
        shown["error"] = str(p.error)
    return shown | {
        "source": p.source,
        "from_owner": p.from_owner,
        "behind": [{"source": u.location, "note": u.reason} for u in p.behind],
        "skipped": [{"source": u.location, "error": u.reason} for u in p.skipped],
    }
