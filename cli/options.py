"""Options shared by every command."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
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

#: The day the KPCS began: no KP certificate is older, so no earlier day is one to judge at.
KPCS_START = date(2003, 1, 1)
#: How far after today an --as-of day may be: further is a slip (2062 for 2026), not a plan.
AS_OF_AHEAD = timedelta(days=366)


def check_as_of(value: str | None) -> str | None:
    """An --as-of day as given (YYYY-MM-DD), refused as a usage error (exit 2) when it is no
    date, before the KPCS began or over a year after today; None stays None."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or day.isoformat() != value:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD")
    if day < KPCS_START:
        raise typer.BadParameter(
            f"{value} is before {KPCS_START}, when the KPCS began: no KP certificate is older"
        )
    today = datetime.now(UTC).date()
    if day > today + AS_OF_AHEAD:
        raise typer.BadParameter(
            f"{value} is more than a year after today ({today}); give a day no later than "
            f"{today + AS_OF_AHEAD}"
        )
    return value


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
