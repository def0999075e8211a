"""Output for people and for scripts: rich on a terminal, plain JSON with `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.errors import LedgerError

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False)


#: Exit status of a command line that cannot be run as given, as for typer's own usage errors.
USAGE = 2


class CommandFailed(LedgerError):
    """A command that could not do its job, with the exit status it documents for that
    (the audit: 2, since 1 means findings); any other LedgerError exits 1."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def os_error_text(e: OSError) -> str:
    """One line for a failed file operation: what went wrong, then the file."""
    return f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")


def jsonable(value: Any) -> Any:
    """Make a decoded record printable as JSON: bytes become lowercase hex strings."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [jsonable(v) for v in value]
    return value


def emit_bytes(data: bytes) -> None:
    """Write signed text (notes, proofs) byte for byte, whatever the console's encoding."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def emit_json(value: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=True) + "\n")


def progress_bar(description: str, total: int, *, enabled: bool = True) -> Progress:
    """A progress bar on stderr (silent when not a terminal or when `enabled` is false)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=not enabled or not errors.is_terminal,  # else rich ends with a bare newline
        transient=True,
    )


def read_bounded(path: Path, limit: int, what: str, error: Callable[[str], LedgerError]) -> bytes:
    """The bytes of the file at `path`, read only up to `limit` (a device or a huge file is
    refused, not loaded); `error(message)` for a file that cannot be read or is too large,
    the message naming `path` as the user gave it and `what` it should be."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{what} {path}: {e.strerror or e}") from e
    if len(data) > limit:
        raise error(f"{what} {path} is over the {limit:,}-byte limit: not a Kimberley {what} file")
    return data
