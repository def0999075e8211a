"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.datadir import DATA_ENV, DEFAULT_DATA_DIR, DataDir
from ledger.observer_dir import AnyDataDir, open_any

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        envvar=DATA_ENV,
        help=f"Data directory of this node (default ./{DEFAULT_DATA_DIR} or ${DATA_ENV}).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DEFAULT_DATA = Path(DEFAULT_DATA_DIR)


_opened: list[AnyDataDir] = []


def open_data(path: Path) -> DataDir:
    """Open a Participant's data directory, for a command that needs its own log (an
    observer's is refused: ObserverDirError); `close_all` releases it when the command ends."""
    node = DataDir.open(path)
    _opened.append(node)
    return node


def open_reading(path: Path) -> AnyDataDir:
    """Open a data directory of either kind, for a command that only reads the logs held
    (or, for sync and evidence, keeps them); `close_all` releases it when the command ends."""
    node = open_any(path)
    _opened.append(node)
    return node


def close_all() -> None:
    """Close every data directory this command opened, whether it succeeded or failed."""
    while _opened:
        _opened.pop().close()
