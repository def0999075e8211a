"""`kimberley sync`: pull other Participants' logs from a peer node or a static mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_data
from cli.output import console, emit_json, errors, progress_bar
from ledger.errors import LedgerError
from ledger.roster_files import load_roster
from node.sources import DirectorySource, HttpSource, TileSource
from node.sync import SyncReport, pull


def sync(
    peer: Annotated[
        str, typer.Option(help="Peer node or static mirror: http(s) URL or directory.")
    ],
    origin: Annotated[
        list[str] | None, typer.Option(help="Log to pull (default: all others).")
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Pull and verify every roster log (or the named ones) the peer serves.

    A log that cannot be pulled (not served, a fork, an entry breaking a rule) is reported
    on its own line and the others are still pulled; the exit status is then 1.
    """
    node = open_data(data)
    roster = load_roster(data)
    origins = origin or [
        roster.origin(p.code) for p in roster.participants if p.code != node.participant
    ]
    reports: list[SyncReport] = []
    failed: list[tuple[str, LedgerError]] = []
    with progress_bar("sync", 0, enabled=not as_json) as bar:
        for name in origins:
            key = roster.log_key(name)
            source: TileSource
            if peer.startswith(("http://", "https://")):
                source = HttpSource(peer, name, signer=node.signer)
            else:
                source = DirectorySource(Path(peer), name)
            task = bar.add_task(name, total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            try:
                reports.append(pull(node.store, key, source, progress=advance, roster=roster))
            except LedgerError as refused:  # this log only: the others may still be pulled
                failed.append((name, refused))
            finally:
                source.close()
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
    else:
        for r in reports:
            console.print(
                f"{r.origin}: {r.before} -> {r.after} entries verified "
                f"(checkpoint size {r.checkpoint_size})"
            )
        for name, why in failed:
            errors.print(f"error: {name}: {why}", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
