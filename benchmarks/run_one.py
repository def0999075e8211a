"""Run one timed step of a benchmark in a process whose main module loads nothing.

    python -m benchmarks.run_one NAME --one N [options]   (run by `common.run_scales`)

Worker processes come from a fork server that imports the caller's main module once
(`ledger.worker_start`). The `kimberley` command's is `cli.entry`, which loads nothing; a
benchmark script's would load the harness (rich tables, data builders) into the fork
server, about 0.14 s of CPU that no user's command pays. So each timed run imports its
benchmark as a module from here and calls its main, and the fork server loads this one.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> None:
    """Call benchmark NAME's main with the arguments after NAME (as if run as its script)."""
    name = sys.argv[1]
    script = Path(__file__).resolve().parent / f"{name}.py"
    sys.argv = [str(script), *sys.argv[2:]]
    importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main()
