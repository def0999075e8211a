"""The `kimberley` console script's entry point: imports the command line only when run.

Worker processes come from a fork server that imports the caller's main script once
(`ledger.worker_start`); with the script pointing here, that import costs nothing, where
`cli.main` (typer, rich, the node, every command: about 0.3 s of CPU) would be loaded
again in the fork server for every replay, pull or audit the command runs.
"""

from __future__ import annotations

import sys

#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), here and in `cli.main`.
INTERRUPTED = 130


def main() -> None:
    """Run the `kimberley` command line (`cli.main.main`); Ctrl-C while it loads ends the
    command as Ctrl-C during a command does: one line, status 130."""
    try:
        from cli.main import main as run_command_line  # noqa: PLC0415 (see the module text)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED)
    run_command_line()
