"""The node's HTTP API: every log it holds, as C2SP tlog-tiles, its witness, health and metrics.

    GET /<origin>/checkpoint                 latest signed checkpoint (text/plain)
    GET /<origin>/tile/<L>/<N>[.p/<W>]       hash tile (application/octet-stream)
    GET /<origin>/tile/entries/<N>[.p/<W>]   entry bundle, gzip when the client accepts it
    GET /health                              JSON: ok and the size of each log
    GET /metrics                             Prometheus text: entries per log, requests served
    POST /add-checkpoint                     tlog-witness: cosign another roster log's checkpoint

Access (`MembersOnly`, `node.auth`): KP trade data is confidential, so every request but
/health must carry an RFC 9421 Ed25519 signature by a roster Participant or observer (or
the node's own key): 401 if unsigned, unknown, invalid, stale or replayed, 403 for a
suspended Participant. A network configured public (`make_app(public=True)`, `node serve
--public`) serves GET and HEAD to anyone; POST still needs a member's signature.

An origin holds a '/' (``kp.example/BW``), so a path is split where the rest is
``checkpoint`` or starts with ``tile/``, and the part before must be a log in the store;
else 404. A known log with a tile path that is not the canonical spelling gets 400. A
method a route does not take gets 405 with Allow (`_Node.refused_by_router`). Every
answer is counted for /metrics by endpoint and status, and every error is one text line
marked no-store.

Every request reads one LMDB snapshot, so a tile and the size it is checked against come
from the same commit. The only write is the witness's: `POST /add-checkpoint` updates the
`witnessed` database (see node.witness) and nothing else; no Log object (whose constructor
registers the origin) is ever built. The witness cosigns with the data directory's key
(``log.key``, when present) and trusts the roster installed there, re-read on every
request; with no key or no roster every origin is unknown (404).

A tile's bytes at a path never change, so tiles and bundles, full or partial, are served
as immutable (``private`` when the request was signed, so shared caches keep no copy);
the checkpoint may be cached for a few seconds. A partial tile is served for any width up
to what the log holds, as the prefix of the stored tile, so clients holding an older
checkpoint still get their tiles.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import lmdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import LedgerError, RosterError
from ledger.keys import Signer, Verifier, load_signer
from ledger.note import MAX_NOTE_SIZE
from ledger.roster import Roster
from ledger.roster_files import load_roster, roster_dir
from ledger.store import Store, tile_key
from ledger.tiles import HASH_SIZE
from node.auth import (
    AuthError,
    ReplayGuard,
    RequestParts,
    RosterMember,
    accept_signature_header,
    authenticate,
    roster_members,
)
from node.peers import Peers
from node.tlog_tiles import TilePathError, TileRef, encode_bundle
from node.witness import MAX_PROOF_LINES, SIZE_TYPE, SizeConflictError, Witness, WitnessError

CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Tiles never change once served at a path: cache them for a year, never revalidate.
IMMUTABLE = "public, max-age=31536000, immutable"
#: The spec asks that the checkpoint not be cached beyond a few seconds.
CHECKPOINT_CACHE = "public, max-age=5"
#: Misses are not cached: the tile may exist after the next append.
NO_STORE = "no-store"
#: LMDB's largest key: a longer origin cannot be a stored log (and LMDB would raise).
MAX_KEY_SIZE = 511
#: gzip level for entry bundles (msgpack compresses well; hash tiles do not, and are not).
GZIP_LEVEL = 6
#: Largest add-checkpoint body: the old line, 63 proof lines, the blank line and a note.
MAX_WITNESS_BODY = 32 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_SIZE
#: The /metrics endpoint labels of the paths that are not a log's resource.
_FIXED_ENDPOINTS = {"/health": "health", "/metrics": "metrics", "/add-checkpoint": "witness"}
#: Connections waiting to be accepted (uvicorn's default).
BACKLOG = 2048


class ListenError(LedgerError):
    """The address to serve on cannot be listened on: in use, not this host's, not allowed."""


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """TCP sockets bound to `host`:`port` and listening, for `uvicorn.Server.run(sockets=)`.

    The node binds before anything else starts: uvicorn binds only after the app's startup
    (which starts the peer sync), and on failure logs several lines and exits 3. Here an
    address in use is one ListenError (``cannot listen on 127.0.0.1:8470: address already in
    use``) and nothing has run. The sockets are those uvicorn's asyncio would have made: one
    per address `host` resolves to (``localhost`` may be 127.0.0.1 and ::1), SO_REUSEADDR
    (a restarted node binds while old connections linger in TIME_WAIT, never beside a
    socket that listens), IPv6 ones IPv6 only; an address family this host cannot make a
    socket of is skipped, as asyncio does, so long as another is left.
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sockets: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(found):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this host lacks (no IPv6): skipped, as asyncio does
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as e:
        for sock in sockets:
            sock.close()
        why = e.strerror or str(e)
        raise ListenError(f"cannot listen on {shown}: {why[:1].lower()}{why[1:]}") from e
    if not sockets:
        raise ListenError(f"cannot listen on {shown}: no address of it can be used on this host")
    return sockets


def make_app(
    data_dir: Path,
    *,
    sync_interval: float | None = None,
    peers: Sequence[str] = (),
    public: bool = False,
) -> Starlette:
    """The ASGI app serving every log in `data_dir`'s store; closes the store on shutdown.

    With `sync_interval` (seconds) and a node key, a background thread keeps every roster
    log replicated and the own checkpoints cosigned (`node.peers`) while the app runs.
    Every request but /health must be signed by a roster member (`MembersOnly`); with
    `public`, GET and HEAD are served to anyone.
    """
    store = Store(data_dir / "store")
    key_path = data_dir / "log.key"
    signer = load_signer(key_path) if key_path.exists() else None
    node = _Node(store, data_dir, signer)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        worker = None
        if sync_interval is not None and signer is not None:
            duties = Peers(data_dir, store, signer, extra_peers=peers)
            worker = threading.Thread(
                target=duties.run, args=(stop, sync_interval), name="peers", daemon=True
            )
            worker.start()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=30)
            store.close()

    routes = [
        Route("/health", node.health, methods=["GET"]),
        Route("/metrics", node.metrics, methods=["GET"]),
        Route("/add-checkpoint", node.add_checkpoint, methods=["POST"]),
        Route("/{path:path}", node.log_resource, methods=["GET"]),
    ]
    own = signer.verifier if signer is not None else None
    access = Middleware(MembersOnly, data_dir=data_dir, own=own, public=public, count=node.count)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[access],
        exception_handlers={HTTPException: node.refused_by_router},
    )


class _Node:
    """The endpoints, over one store and one set of request counters."""

    def __init__(self, store: Store, data_dir: Path, signer: Signer | None) -> None:
        self.store = store
        self.data_dir = data_dir
        self.signer = signer
        self._served: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def count(self, kind: str, response: Response) -> Response:
        """Record one answered request for /metrics; return the response."""
        with self._lock:
            self._served[kind, response.status_code] += 1
        return response

    def refused_by_router(self, request: Request, error: Exception) -> Response:
        """What Starlette's router answers itself (405 for a method a route does not take),
        in the node's shape: one text line, no-store, counted under the path's endpoint."""
        assert isinstance(error, HTTPException)
        response = _error(error.status_code, error.detail)
        response.headers.update(error.headers or {})
        if error.status_code == 405 and "Allow" in response.headers:
            # Starlette lists a route's methods from a set, in no fixed order.
            allow = ", ".join(sorted(m.strip() for m in response.headers["Allow"].split(",")))
            response = _error(405, f"{request.method} is not allowed here: {allow} only")
            response.headers["Allow"] = allow
        return self.count(self._endpoint(request.url.path), response)

    def _endpoint(self, path: str) -> str:
        """The /metrics endpoint label of a request for `path`, as a GET of it is counted."""
        fixed = _FIXED_ENDPOINTS.get(path)
        if fixed is not None:
            return fixed
        with self.store.read() as txn:
            found = self._find_log(txn, path.removeprefix("/"))
        if found is None:
            return "unknown"
        if found[1] == "checkpoint":
            return "checkpoint"
        return "entries" if found[1].startswith("tile/entries/") else "tile"

    # -- tlog-tiles --------------------------------------------------------------------

    async def log_resource(self, request: Request) -> Response:
        """The checkpoint, a hash tile or an entry bundle of one log.

        Answered on the event loop itself: a read is a snapshot of memory-mapped pages
        (a bundle takes about 0.3 ms), which costs less than the hand-off to a worker thread
        that a plain function would get (about 0.15 ms of CPU per request). A request that
        accepts gzip goes to a worker thread: compressing a bundle (up to 16 MiB) would hold
        up every other request meanwhile.
        """
        gzip_ok = accepts_gzip(request.headers.get("accept-encoding", ""))
        if gzip_ok:
            return await run_in_threadpool(self._log_resource, request, gzip_ok)
        return self._log_resource(request, gzip_ok)

    def _log_resource(self, request: Request, gzip_ok: bool) -> Response:
        path: str = request.path_params["path"]
        if path == "add-checkpoint":  # the witness endpoint answers POST only
            response = _error(405, "add-checkpoint takes POST")
            response.headers["Allow"] = "POST"
            return self.count("witness", response)
        with self.store.read() as txn:
            found = self._find_log(txn, path)
            if found is None:
                return self.count("unknown", _error(404, "no such log or resource"))
            log_id, resource = found
            if resource == "checkpoint":
                return self.count("checkpoint", self._checkpoint(txn, log_id))
            try:
                ref = TileRef.from_path(resource)
            except TilePathError as e:
                return self.count("malformed", _error(400, str(e)))
            if ref.is_bundle:
                return self.count("entries", self._bundle(txn, log_id, ref, gzip_ok))
            return self.count("tile", self._tile(txn, log_id, ref))

    def _find_log(self, txn: lmdb.Transaction, path: str) -> tuple[bytes, str] | None:
        """(log id, resource) for the split of `path` whose first part is a stored origin."""
        for i in range(len(path) - 1, 0, -1):
            if path[i] != "/":
                continue
            resource = path[i + 1 :]
            if resource != "checkpoint" and not resource.startswith("tile/"):
                continue
            origin = path[:i]
            if len(origin.encode()) > MAX_KEY_SIZE:
                continue
            log_id = self.store.log_id(txn, origin)
            if log_id is not None:
                return log_id, resource
        return None

    def _checkpoint(self, txn: lmdb.Transaction, log_id: bytes) -> Response:
        note = self.store.latest_checkpoint(txn, log_id)
        if note is None:
            return _error(404, "the log has no checkpoint yet")
        return Response(
            note, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": CHECKPOINT_CACHE}
        )

    def _tile(self, txn: lmdb.Transaction, log_id: bytes, ref: TileRef) -> Response:
        stored = txn.get(tile_key(log_id, ref.level, ref.number), db=self.store.db("tiles"))
        need = ref.width * HASH_SIZE
        if stored is None or len(stored) < need:
            return _error(404, "no such tile in the log yet")
        return Response(
            bytes(stored[:need]), media_type=TILE_TYPE, headers={"Cache-Control": IMMUTABLE}
        )

    def _bundle(
        self, txn: lmdb.Transaction, log_id: bytes, ref: TileRef, gzip_ok: bool
    ) -> Response:
        if self.store.head(txn, log_id).size < ref.start + ref.width:
            return _error(404, "no such entry bundle in the log yet")
        body = encode_bundle(self.store.entries(txn, log_id, ref.start, ref.start + ref.width))
        headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
        if gzip_ok:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=TILE_TYPE, headers=headers)

    # -- tlog-witness -------------------------------------------------------------------

    async def add_checkpoint(self, request: Request) -> Response:
        """Cosign a roster log's checkpoint that is consistent with the one last witnessed."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WITNESS_BODY:
                return self.count("witness", _error(413, "request body too large"))
        response = await run_in_threadpool(self._witness, bytes(body))
        return self.count("witness", response)

    def _witness(self, body: bytes) -> Response:
        if self.signer is None:
            return _error(404, "this node has no key to witness with")
        try:
            roster: Roster | None = load_roster(self.data_dir)
        except RosterError:
            roster = None
        try:
            lines = Witness(self.store, self.signer, roster).add_checkpoint(body)
        except SizeConflictError as e:
            return Response(
                f"{e.held}\n",
                status_code=e.status,
                media_type=SIZE_TYPE,
                headers={"Cache-Control": NO_STORE},
            )
        except WitnessError as e:
            return _error(e.status, str(e))
        return Response(lines, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": NO_STORE})

    # -- operations --------------------------------------------------------------------

    def health(self, _: Request) -> Response:
        """JSON: the store answers, and each log's size."""
        body = json.dumps({"status": "ok", "logs": self._sizes()}, sort_keys=True) + "\n"
        response = Response(
            body, media_type="application/json", headers={"Cache-Control": NO_STORE}
        )
        return self.count("health", response)

    def metrics(self, _: Request) -> Response:
        """Prometheus text exposition: entries per log and requests served (this one included)."""
        with self._lock:
            self._served["metrics", 200] += 1
        lines = [
            "# HELP kimberley_log_entries Entries in each log this node serves.",
            "# TYPE kimberley_log_entries gauge",
        ]
        for origin, size in sorted(self._sizes().items()):
            lines.append(f'kimberley_log_entries{{origin="{_label(origin)}"}} {size}')
        lines += [
            "# HELP kimberley_http_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE kimberley_http_requests_total counter",
        ]
        with self._lock:
            served = sorted(self._served.items())
        for (kind, status), count in served:
            lines.append(
                f'kimberley_http_requests_total{{endpoint="{kind}",code="{status}"}} {count}'
            )
        return Response(
            "\n".join(lines) + "\n", media_type=METRICS_TYPE, headers={"Cache-Control": NO_STORE}
        )

    def _sizes(self) -> dict[str, int]:
        with self.store.read() as txn:
            sizes: dict[str, int] = {}
            for origin in self.store.origins(txn):
                log_id = self.store.log_id(txn, origin)
                assert log_id is not None
                sizes[origin] = self.store.head(txn, log_id).size
            return sizes


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an Accept-Encoding header allows gzip: named, or by ``*``, with q above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            weights[coding] = float(q)
        except ValueError:
            weights[coding] = 0.0
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def _label(value: str) -> str:
    """A Prometheus label value with backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _error(status: int, message: str) -> Response:
    return Response(
        message + "\n",
        status_code=status,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": NO_STORE},
    )


class MembersOnly:
    """ASGI middleware: only requests signed by a roster member (RFC 9421) reach the node.

    /health is open; with `public`, so are GET and HEAD. Anything else needs a signature
    (`node.auth.authenticate`): 401 with an Accept-Signature hint when it is missing, bad,
    stale, replayed or by a key the roster does not list, 403 for a suspended Participant.
    Members are the roster's Participants and observers and the node's own key; the roster
    is re-read when its files change (name, size, mtime, checked on each request).
    Responses to signed requests are marked ``private``: no shared cache may hand one
    member's answer to anyone else.
    """

    def __init__(
        self,
        app: ASGIApp,
        data_dir: Path,
        own: Verifier | None,
        public: bool,
        count: Callable[[str, Response], Response],
    ) -> None:
        self.app, self.data_dir, self.own = app, data_dir, own
        self.public, self.count = public, count
        self.guard = ReplayGuard()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._members: dict[str, RosterMember] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass open and well-signed requests on; answer the rest with 401 or 403."""
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        if self.public and scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        try:
            parts = RequestParts.from_asgi(scope)
            authenticate(parts, self.members(), self.guard, int(time.time()))
        except AuthError as e:
            response = _error(e.status, str(e))
            if e.status == 401:
                response.headers["Accept-Signature"] = accept_signature_header()
            await self.count("refused", response)(scope, receive, send)
            return

        async def send_private(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, _private(k, v)) for k, v in message["headers"]]
            await send(message)

        await self.app(scope, receive, send_private)

    def members(self) -> dict[str, RosterMember]:
        """Who may sign requests now: re-read when the roster files have changed."""
        stamp = _roster_stamp(self.data_dir)
        if stamp != self._stamp:
            try:
                roster: Roster | None = load_roster(self.data_dir)
            except RosterError:
                roster = None  # fail closed: only the node's own key
            self._members, self._stamp = roster_members(roster, self.own), stamp
        return self._members


def _private(name: bytes, value: bytes) -> bytes:
    """A Cache-Control value with ``public`` turned into ``private``; other headers as they are."""
    if name.lower() == b"cache-control" and value.startswith(b"public"):
        return b"private" + value[len(b"public") :]
    return value


def _roster_stamp(data_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of each file in the roster directory: changes when it does."""
    try:
        with os.scandir(roster_dir(data_dir)) as entries:
            return tuple(sorted((e.name, *_size_mtime(e.stat())) for e in entries))
    except OSError:
        return ()


def _size_mtime(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns
