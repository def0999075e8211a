"""The entry signer: builds, signs and chains entries on a thread of its own.

Each entry names its predecessor's leaf hash, so signing is strictly sequential; but
libsodium releases the GIL while it signs, so the caller's thread can meanwhile check
rules, store entries and extend the tree. The signer owns the chain (index, prev); the
caller keeps the LMDB write transaction, which must stay on the thread that opened it.

    caller: hook + canonical body ──► signer: payload, sign, seal, leaf ──► caller: put, tree
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from queue import SimpleQueue
from types import TracebackType
from typing import Any

from ledger.encoding import pack_canonical
from ledger.entry import ENTRY_CONTEXT, VERSION, seal
from ledger.keys import Signer

_END = None
#: How many records the caller may run ahead of the signer (bounds memory).
WINDOW = 256


class ChainSigner:
    """Signs a run of entries continuing the chain at (index, prev), in submission order."""

    def __init__(self, signer: Signer, origin: str, index: int, prev: bytes, time_ms: int) -> None:
        self._todo: SimpleQueue[tuple[str, Any] | None] = SimpleQueue()
        self._done: SimpleQueue[tuple[bytes, bytes] | BaseException] = SimpleQueue()
        self._pending = 0
        self._thread = threading.Thread(
            target=self._run,
            args=(signer, origin, index, prev, time_ms),
            daemon=True,
            name=f"sign {origin}",
        )
        self._thread.start()

    def _run(self, signer: Signer, origin: str, index: int, prev: bytes, time_ms: int) -> None:
        sign, sha256, todo, done = signer.sign, hashlib.sha256, self._todo, self._done
        try:
            while (item := todo.get()) is not _END:
                kind, body = item
                payload = pack_canonical([VERSION, origin, index, prev, time_ms, kind, body])
                raw = seal(payload, sign(ENTRY_CONTEXT + payload))
                prev = sha256(b"\x00" + raw).digest()
                done.put((raw, prev))
                index += 1
        except BaseException as e:  # handed to the caller, who re-raises it
            done.put(e)

    def submit(self, kind: str, canonical_body: Mapping[str, Any]) -> Iterator[tuple[bytes, bytes]]:
        """Queue one record (body already canonical); yield results that the window forces out."""
        self._todo.put((kind, canonical_body))
        self._pending += 1
        while self._pending > WINDOW:
            yield self._take()

    def finish(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield every remaining (entry bytes, leaf hash) in order."""
        self._todo.put(_END)
        while self._pending:
            yield self._take()

    def _take(self) -> tuple[bytes, bytes]:
        result = self._done.get()
        self._pending -= 1
        if isinstance(result, BaseException):
            self._pending = 0
            raise result
        return result

    def __enter__(self) -> ChainSigner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the signer thread, whether the run finished or was abandoned."""
        self._todo.put(_END)
        self._thread.join()
