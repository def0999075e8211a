"""Where a pull's bytes come from: a peer node over HTTP or a static mirror on disk.

Sources are trusted for nothing: they only bound what they read (time, size, retries)
so a hostile or broken peer cannot hold a pull or exhaust memory. Everything they serve
is verified by `node.sync` and `ledger.replica` before it is stored.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from ledger.errors import PeerError, ProofError
from ledger.keys import Signer
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH, node_from_tiles
from ledger.verify import PROCESS_THRESHOLD
from node.auth import SignatureAuth
from node.tlog_tiles import ENTRIES, MAX_BUNDLE_SIZE, TileRef, decode_bundle


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """Bounds on what a pull will wait for, fetch and hold.

    `timeout` bounds each network read; `fetch_seconds` the whole of one fetch, so a peer
    that drips a byte per read cannot hold a pull for hours. `workers` check entries (0:
    one per core), in processes when at least `processes_from` entries are to be pulled;
    `batches_ahead` batches are fetched and checked while the one before is stored.
    """

    timeout: float = 10.0
    fetch_seconds: float = 60.0
    retries: int = 3
    backoff: float = 0.2
    max_checkpoint: int = 64 * 1024
    batch_entries: int = 4096
    workers: int = 0
    processes_from: int = PROCESS_THRESHOLD
    batches_ahead: int = 2


class TileSource(Protocol):
    """Where a log's tlog-tiles resources come from (relative paths under the log prefix)."""

    def fetch(self, path: str, limit: int) -> bytes:
        """The resource's bytes; PeerError if missing, failing or larger than `limit`."""
        ...

    def close(self) -> None:
        """Release whatever the source holds open."""
        ...


class HttpSource:
    """A peer node or static web server: GET <base>/<origin>/<path>, bounded and retried.

    With a `signer`, each GET is signed (RFC 9421, `node.auth.SignatureAuth`) so a peer
    that serves only roster members answers it.
    """

    def __init__(
        self,
        base: str,
        origin: str,
        limits: SyncLimits = SyncLimits(),
        transport: httpx.BaseTransport | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.prefix = f"{base.rstrip('/')}/{origin}/"
        self.limits = limits
        # trust_env=False: node-to-node traffic never goes through proxies picked up from the
        # environment by accident.
        # Accept-Encoding identity: the size limit then counts the bytes that arrive, so a
        # small compressed response cannot expand into a huge one before it is checked.
        self.client = httpx.Client(
            timeout=limits.timeout,
            transport=transport,
            trust_env=False,
            headers={"Accept-Encoding": "identity"},
            auth=SignatureAuth(signer) if signer is not None else None,
        )

    def fetch(self, path: str, limit: int) -> bytes:
        """Fetch with retries and backoff on transport errors and 5xx; 4xx fails at once."""
        url = self.prefix + path
        for attempt in range(self.limits.retries):
            try:
                return self._get(url, limit)
            except (httpx.TransportError, _Retry) as e:
                if attempt == self.limits.retries - 1:
                    raise PeerError(f"{url}: {e or type(e).__name__}") from None
                time.sleep(self.limits.backoff * 2**attempt)
        raise PeerError(f"{url}: no attempt made")

    def _get(self, url: str, limit: int) -> bytes:
        deadline = time.monotonic() + self.limits.fetch_seconds
        with self.client.stream("GET", url) as response:
            if response.status_code >= 500:
                raise _Retry(f"HTTP {response.status_code}")
            if response.status_code != 200:
                reason = _reason(response, deadline)
                raise PeerError(f"{url}: HTTP {response.status_code}{reason}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise PeerError(f"{url}: response larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise _Retry(f"took longer than {self.limits.fetch_seconds} s")
            return bytes(body)

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()


class _Retry(Exception):
    """Internal: a failure worth another attempt."""


#: How much of a refusal's text is read, and shown: the node says why in its first line.
_REASON_BYTES = 512
_REASON_CHARS = 200


def _reason(response: httpx.Response, deadline: float) -> str:
    """``": "`` and the first line of a plain-text refusal (a node's "keyid 'x' is not a
    roster member"), bounded and stripped of control characters; "" for anything else.

    Reading stops at the first newline, at `_REASON_BYTES`, or once `deadline` (the
    fetch's, `time.monotonic()`) has passed, checked after every chunk: a peer dripping its
    refusal a byte at a time holds the fetch no longer than `fetch_seconds` plus one read.
    """
    if not response.headers.get("content-type", "").startswith("text/plain"):
        return ""
    head = b""
    try:
        for chunk in response.iter_bytes():
            head += chunk
            if b"\n" in head or len(head) >= _REASON_BYTES or time.monotonic() > deadline:
                break
    except httpx.HTTPError:  # a reason cut short is still a refusal: say what arrived
        pass
    line = head[:_REASON_BYTES].split(b"\n", 1)[0].decode("utf-8", "replace")
    line = "".join(c for c in line if c.isprintable()).strip()
    return f": {line[:_REASON_CHARS]}" if line else ""


class DirectorySource:
    """A static mirror on disk: the output of `kimberley tiles publish`."""

    def __init__(self, root: Path, origin: str) -> None:
        self.root = root / origin

    def fetch(self, path: str, limit: int) -> bytes:
        """Read one regular file, never more than `limit` bytes (no devices, FIFOs, growth)."""
        file = self.root / path
        try:
            with open(file, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise PeerError(f"{file}: not a regular file")
                data = f.read(limit + 1)
        except OSError as e:
            raise PeerError(f"{file}: {e.strerror}") from None
        if len(data) > limit:
            raise PeerError(f"{file}: larger than {limit} bytes")
        return data

    def close(self) -> None:
        """Nothing to release."""


class RemoteTree:
    """Complete-subtree hashes of the served tree of `size` entries, from fetched hash tiles."""

    def __init__(self, source: TileSource, size: int) -> None:
        self.source, self.size = source, size
        self._tiles: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        """Hash of the subtree covering leaves [index << level, (index + 1) << level)."""
        found = node_from_tiles(self._tile, level, index)
        if found is None:
            raise ProofError(f"served tiles are too short for tree node {level}/{index}")
        return found

    def _tile(self, level: int, number: int) -> bytes:
        key = (level, number)
        if key not in self._tiles:
            nodes = self.size >> (level * TILE_HEIGHT)
            width = min(TILE_WIDTH, nodes - number * TILE_WIDTH)
            data = self.source.fetch(TileRef(level, number, width).path(), width * HASH_SIZE)
            if len(data) != width * HASH_SIZE:
                raise ProofError(
                    f"served tile {level}/{number} has {len(data)} bytes, want {width * HASH_SIZE}"
                )
            self._tiles[key] = data
        return self._tiles[key]


def fetch_entry(source: TileSource, size: int, index: int) -> bytes:
    """Entry `index` of the served tree of `size` entries, from its entry bundle."""
    number, skip = divmod(index, TILE_WIDTH)
    width = min(TILE_WIDTH, size - number * TILE_WIDTH)
    data = source.fetch(TileRef(ENTRIES, number, width).path(), MAX_BUNDLE_SIZE)
    return decode_bundle(data, width=width)[skip]


def where(source: TileSource) -> str:
    """Where a source reads from, for evidence records."""
    if isinstance(source, HttpSource):
        return source.prefix
    if isinstance(source, DirectorySource):
        return str(source.root)
    return type(source).__name__
