"""Drawing items lazily: in batches, or in a background thread ahead of their reader.

`ReadAhead` pays where the drawing blocks outside the GIL: replica sync fetches the next
entry bundles over the network while the last batch is checked and stored. (It does not
pay for building records ahead of a bulk append: building and the rules both need the GIL.)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last may be shorter), drawn lazily."""
    stream = iter(items)
    while part := list(islice(stream, size)):
        yield part


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
