"""Workers for replica sync: a pool that checks a peer's entries span by span.

A pull checks entries off the main process, which meanwhile applies the custody rules
and stores the batch before: `ledger.worker_start.worker_pool` gives worker processes for a big pull
(threads queue for the GIL behind the main thread's Python work) and threads for a small
one (no process start-up). `check_span` is what a worker runs on one span of entries: everything
per entry (see `ledger.run_checks.check_entries`) and the `prev` chain and time order inside
the span, so only the span's first entry is left to chain in order. `ledger.read_ahead.ReadAhead`
runs the fetching in a thread (network I/O releases the GIL) a bounded number of items ahead.
"""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor

from ledger.keys import Verifier
from ledger.run_checks import CheckedRun, check_run
from ledger.verify import CHUNK, PROCESS_CHUNK


def span_size(pool: Executor) -> int:
    """Entries per span handed to one of `pool`'s workers: bigger spans for processes
    amortise the pickling."""
    return PROCESS_CHUNK if isinstance(pool, ProcessPoolExecutor) else CHUNK


#: What a worker found in a span: `ledger.run_checks.CheckedRun`, bodies kept when asked.
CheckedSpan = CheckedRun
#: How a pull words a broken chain, inside a span and between spans alike.
PULL_PREV_BREAK = "prev does not match the previous leaf"
PULL_TIME_BREAK = "time {time} goes backwards"


def check_span(verifier: Verifier, start: int, raws: list[bytes], bodies: bool) -> CheckedSpan:
    """Check entries `start`... one by one, then their chain inside the span (a worker's job),
    a broken chain worded as replica sync's `accept` always has."""
    return check_run(
        verifier,
        start,
        raws,
        bodies=bodies,
        prev_break=PULL_PREV_BREAK,
        time_break=PULL_TIME_BREAK,
    )
