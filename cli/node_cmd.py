"""`kimberley node serve` and `kimberley tiles publish`: the logs over HTTP, live or static."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from cli.options import DEFAULT_DATA, DataOption, JsonOption
from cli.output import console, emit_json, errors, progress_bar
from ledger.datadir import no_own_log
from ledger.errors import LedgerError, ObserverDirError
from ledger.observer_dir import is_observer_dir
from ledger.words import counted
from node.publish import publish
from node.serve import listen_sockets, make_app

node_app = typer.Typer(
    help="The HTTP node: every log it holds, as C2SP tlog-tiles.", no_args_is_help=True
)
tiles_app = typer.Typer(
    help="Static C2SP tlog-tiles for any web server, CDN or object store.", no_args_is_help=True
)

DEFAULT_LISTEN = "127.0.0.1:8470"


@node_app.callback()
def node_group() -> None:
    """The HTTP node: every log it holds, as C2SP tlog-tiles."""


@tiles_app.callback()
def tiles_group() -> None:
    """Static C2SP tlog-tiles for any web server, CDN or object store."""


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 hosts in brackets) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise LedgerError(f"--listen {text!r} must be HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


@node_app.command("serve")
def serve(
    data: DataOption = DEFAULT_DATA,
    listen: Annotated[str, typer.Option(help="Address to listen on, HOST:PORT.")] = DEFAULT_LISTEN,
    sync_every: Annotated[
        float,
        typer.Option(
            help="Seconds between rounds of pulling every roster log from peers and asking "
            "them to cosign this node's checkpoint; 0 turns both off.",
            min=0,
        ),
    ] = 10.0,
    peer: Annotated[
        list[str] | None,
        typer.Option(help="Extra peer URL to pull from (the roster's URLs are always tried)."),
    ] = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="Serve reads (GET, HEAD) to anyone. By default every request but /health "
            "must be signed (RFC 9421, Ed25519) by a roster Participant or observer.",
        ),
    ] = False,
) -> None:
    """Serve every log in the data directory, keep the roster's logs in sync, until interrupted."""
    host, port = parse_listen(listen)
    if is_observer_dir(data):  # no own log to serve or have cosigned; not a witness either
        raise ObserverDirError(
            f"{no_own_log(data)} to serve, and an observer is no witness (pull logs with "
            "`kimberley sync`; mirror them with `kimberley tiles publish`)"
        )
    sockets = listen_sockets(host, port)  # before the store opens and the sync starts
    try:
        app = make_app(data, sync_interval=sync_every or None, peers=peer or (), public=public)
        who = "to anyone" if public else "to roster members' signed requests"
        errors.print(
            f"serving the logs in {data} on http://{listen}/ {who}", markup=False, soft_wrap=True
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="info", server_header=False))
        # On Ctrl-C uvicorn shuts down, then raises the signal again: the node exits 0, as
        # it did under uvicorn.run.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


@tiles_app.command("publish")
def publish_tiles(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the static tiles into.")],
    origin: Annotated[
        str | None, typer.Option(help="Publish only this log (default: every log).")
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Write each log's checkpoint, tiles and entry bundles as static files, incrementally."""
    with progress_bar("publishing", 0, enabled=not as_json) as bar:
        task = bar.add_task("publishing", total=None)
        report = publish(
            data,
            out_dir,
            origin,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        emit_json(
            {
                "out_dir": str(report.out_dir),
                "written": report.written,
                "kept": report.kept,
                "logs": [
                    {
                        "origin": log.origin,
                        "size": log.size,
                        "written": log.written,
                        "kept": log.kept,
                        "bytes_written": log.bytes_written,
                        "checkpoint_written": log.checkpoint_written,
                    }
                    for log in report.logs
                ],
            }
        )
        return
    for log in report.logs:
        console.print(
            f"{log.origin}: size {log.size}, {counted(log.written, 'file')} written "
            f"({counted(log.bytes_written, 'byte')}), {log.kept} already there"
        )
    if not report.logs:
        console.print("no checkpointed logs to publish")
