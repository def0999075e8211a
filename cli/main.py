"""The `kimberley` command: one entry point that turns every LedgerError into one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.audit_cmd import audit_command
from cli.custody_cmd import register_commands
from cli.demo import demo
from cli.entry import INTERRUPTED
from cli.evidence_cmd import evidence_app
from cli.log_cmd import log_app, proof_app
from cli.node_cmd import node_app, tiles_app
from cli.options import DEFAULT_DATA, DataOption, JsonOption, close_all
from cli.output import USAGE, CommandFailed, console, emit_json, errors, os_error_text
from cli.roster_cmd import roster_app
from cli.stats_cmd import stats
from cli.sync_cmd import sync
from cli.trace_cmd import trace_command, verify_bundle_command
from ledger.datadir import DataDir
from ledger.errors import LedgerError
from ledger.observer_dir import ObserverDir

app = typer.Typer(
    name="kimberley",
    help="Kimberley Ledger: signed chain-of-custody logs for rough diamonds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(log_app, name="log")
app.add_typer(proof_app, name="proof")
app.add_typer(roster_app, name="roster")
app.add_typer(node_app, name="node")
app.add_typer(tiles_app, name="tiles")
app.add_typer(evidence_app, name="evidence")
app.command("sync")(sync)
app.command("stats")(stats)
app.command("audit")(audit_command)
app.command("demo")(demo)
app.command("trace")(trace_command)
app.command("verify-bundle")(verify_bundle_command)
register_commands(app)


@app.command("init")
def init(
    network: Annotated[str, typer.Option(help="Network name, e.g. kp.example.")],
    participant: Annotated[
        str | None, typer.Option(help="A Participant's node: ISO 3166-1 alpha-2 code, or EU.")
    ] = None,
    observer: Annotated[
        str | None,
        typer.Option(
            help="An observer's (auditor's) read-only directory: its key name, e.g. kp-monitoring."
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Create a data directory: a Participant's (a new log key and an empty, checkpointed
    log) or an observer's (a new key to read with, and no log of its own)."""
    if (participant is None) == (observer is None):
        raise CommandFailed(
            "init takes exactly one of --participant CODE (a Participant's node) and "
            "--observer NAME (an auditor's read-only directory)",
            USAGE,
        )
    if observer is not None:
        _init_observer(observer, network, data, as_json)
        return
    assert participant is not None
    node = DataDir.init(data, participant.upper(), network)
    try:
        node.own_log().sign_checkpoint()
        key = node.signer.verifier.to_text()
    finally:
        node.close()
    if as_json:
        emit_json({"origin": node.origin, "key": key, "data": str(data)})
    else:
        console.print(f"initialised {node.origin} in {data}")
        console.print(f"log key: {key}")


def _init_observer(name: str, network: str, data: Path, as_json: bool) -> None:
    """`init --observer`: the key goes into the roster draft's observers."""
    node = ObserverDir.init(data, name, network)
    try:
        key = node.signer.verifier.to_text()
    finally:
        node.close()
    if as_json:
        emit_json({"observer": name, "network": network, "key": key, "data": str(data)})
    else:
        console.print(f"initialised observer {name} of {network} in {data} (no log of its own)")
        console.print(f"observer key: {key}")
        console.print(
            "next: have the roster's authors list it under observers, then "
            "`kimberley roster install FILE... --v1-sha256 HEX` (v1's hash as the KP chair "
            "publishes it) and `kimberley sync`"
        )


def main() -> None:
    """Run the CLI; print one readable line and exit non-zero on any error."""
    try:
        code = app(standalone_mode=False)
    except LedgerError as e:
        errors.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(e.exit_code if isinstance(e, CommandFailed) else 1)
    except typer.Abort:
        errors.print("aborted")
        sys.exit(INTERRUPTED)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: unknown command, bad option value, ...
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        errors.print(f"error: {' '.join(message.split())}", markup=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(INTERRUPTED)
    except OSError as e:
        errors.print(f"error: {os_error_text(e)}", markup=False)
        sys.exit(1)
    finally:
        close_all()
    if code == INTERRUPTED:  # typer turns Ctrl-C into a plain exit status of 130
        errors.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
