"""Workers for replica sync: a pool that checks a peer's entries, and a read-ahead thread.

A pull checks entries off the main process, which meanwhile applies the custody rules
and stores the batch before: `ledger.verify.worker_pool` gives worker processes for a big pull
(threads queue for the GIL behind the main thread's Python work) and threads for a small
one (no process start-up). `check_span` is what a worker runs on one span of entries: everything
per entry (see `ledger.verify.check_entries`) and the `prev` chain and time order inside
the span, so only the span's first entry is left to chain in order. `ReadAhead` runs the
fetching in a thread (network I/O releases the GIL) a bounded number of items ahead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

from ledger.entry import ZERO_HASH
from ledger.keys import Verifier
from ledger.tiles import HASH_SIZE
from ledger.verify import CHUNK, PROCESS_CHUNK, Fault, chain_fault, check_entries

T = TypeVar("T")


def span_size(pool: Executor) -> int:
    """Entries per span handed to one of `pool`'s workers: bigger spans for processes
    amortise the pickling."""
    return PROCESS_CHUNK if isinstance(pool, ProcessPoolExecutor) else CHUNK


@dataclass(frozen=True, slots=True)
class CheckedSpan:
    """What a worker found in entries `start`...: the leaf hashes of those before `fault`.

    `leaves` joins them; `first_prev` and `first_time` are the first entry's, for the
    caller to chain onto the entry before the span; `bodies` holds each one's (kind,
    body) when asked, for the custody rules.
    """

    start: int
    leaves: bytes
    first_prev: bytes
    first_time: int
    last_time: int
    fault: Fault | None
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many entries passed."""
        return len(self.leaves) // HASH_SIZE


def check_span(verifier: Verifier, start: int, raws: list[bytes], bodies: bool) -> CheckedSpan:
    """Check entries `start`... one by one, then their chain inside the span (a worker's job)."""
    checked = check_entries(verifier, start, raws, bodies=bodies)
    prevs, times, leaves, fault = checked.prevs, checked.times, checked.leaves, checked.fault
    count = len(leaves)
    if prevs[1:] != leaves[:-1] or times != sorted(times):
        count, fault = chain_fault(
            start,
            prevs,
            times,
            leaves,
            fault,
            prev_break="prev does not match the previous leaf",
            time_break="time {time} goes backwards",
        )
    if not count:
        return CheckedSpan(start, b"", ZERO_HASH, 0, 0, fault)
    return CheckedSpan(
        start,
        b"".join(leaves[:count]),
        prevs[0],
        times[0],
        times[count - 1],
        fault,
        checked.bodies[:count],
    )


class _End:
    """Marks the end of the items, or carries the exception that ended them."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """Runs `items` in a thread, at most `depth` items ahead of the reader; in order.

    An exception raised by `items` reaches the reader after the items before it. Leaving
    the `with` block stops the thread at its next item and waits for it up to `wait`
    seconds (a fetch under way is not interrupted; the thread is a daemon).
    """

    def __init__(self, items: Iterator[T], depth: int, *, wait: float = 10.0) -> None:
        self._items, self._wait = items, wait
        self._queue: queue.Queue[T | _End] = queue.Queue(max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)

    def _run(self) -> None:
        try:
            for item in self._items:
                self._queue.put(item)
                if self._stop.is_set():
                    return
            self._queue.put(_End())
        except BaseException as e:  # handed to the reader, who raises it
            self._queue.put(_End(e))

    def __enter__(self) -> Iterator[T]:
        self._thread.start()
        return self._read()

    def _read(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        deadline = time.monotonic() + self._wait
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:  # unblock a put on a full queue, so the thread sees the stop
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)
