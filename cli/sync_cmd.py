"""`kimberley sync`: pull the roster's logs from their nodes, a peer or a static mirror.

Works the same in a Participant's data directory (every log but its own) and in an
observer's (every log): requests are signed with the directory's key, a log key or the
observer's, and every entry is verified, custody rules included, before it is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_reading
from cli.output import console, emit_json, errors, progress_bar
from ledger.errors import LedgerError
from ledger.keys import Signer
from ledger.observer_dir import ObserverDir
from ledger.roster_files import load_roster
from node.pull_logs import logs_to_pull, pull_first, roster_sources
from node.sources import DirectorySource, HttpSource, TileSource
from node.sync import SyncReport


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
        list[str] | None, typer.Option(help="Log to pull (default: all others).")
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Pull and verify every roster log (or the named ones): all but the own log in a
    Participant's data directory, all of them in an observer's.

    A log that cannot be pulled (not served, a fork, an entry breaking a rule) is reported
    on its own line and the others are still pulled; the exit status is then 1.
    """
    node = open_reading(data)
    roster = load_roster(data)
    own_code = None if isinstance(node, ObserverDir) else node.participant
    origins = origin or logs_to_pull(roster, own_code)
    reports: list[SyncReport] = []
    failed: list[tuple[str, LedgerError]] = []

    def open_source(location: str, name: str) -> TileSource:
        return _source(location, name, node.signer)

    with progress_bar("sync", 0, enabled=not as_json) as bar:
        for name in origins:
            task = bar.add_task(name, total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            try:
                places = peer or roster_sources(roster, name, own_code)
                reports.append(
                    pull_first(node.store, roster, name, places, open_source, progress=advance)
                )
            except LedgerError as refused:  # this log only: the others may still be pulled
                failed.append((name, refused))
    _print(reports, failed, as_json)
    if failed:
        raise typer.Exit(1)


def _source(location: str, origin: str, signer: Signer) -> TileSource:
    """A node or web server (requests signed by `signer`), or a directory of static tiles."""
    if location.startswith(("http://", "https://")):
        return HttpSource(location, origin, signer=signer)
    return DirectorySource(Path(location), origin)


def _print(reports: list[SyncReport], failed: list[tuple[str, LedgerError]], as_json: bool) -> None:
    """Each log pulled, then each that could not be, one line each (or one JSON list)."""
    if as_json:
        emit_json(
            [
                {
                    "origin": r.origin,
                    "before": r.before,
                    "after": r.after,
                    "checkpoint": r.checkpoint_size,
                }
                for r in reports
            ]
            + [{"origin": name, "error": str(why)} for name, why in failed]
        )
        return
    for r in reports:
        console.print(
            f"{r.origin}: {r.before} -> {r.after} entries verified "
            f"(checkpoint size {r.checkpoint_size})"
        )
    for name, why in failed:
        errors.print(f"error: {name}: {why}", markup=False, soft_wrap=True)
