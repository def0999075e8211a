"""Replay a stored log from index 0 and re-check every byte of it.

For each entry: canonical bytes, shape, origin, index, the Ed25519 signature, the `prev`
chain and time order; then the leaf hash, every stored tree tile, every stored checkpoint
(signature and root) and the head. Workers parse, signature-check and chain runs of
entries in parallel (`ledger.run_checks`), each reading its own runs from the store;
this process checks in order what is sequential: the chain between runs, the tree and
the checkpoints. Big logs use worker processes (from a fork server, never forked from this
process, which holds an open LMDB environment; threads would queue for the GIL behind
each other's Python work); small ones use threads (libsodium releases the GIL), to spare
the process start-up. Entries stream with a bounded number of runs in flight, so memory
stays flat whatever the log size. The first bad index is reported. `verify_logs` replays
several logs on one pool, the runs of the next log following those of the one before.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
)
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import lmdb

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.entry import ZERO_HASH
from ledger.errors import IntegrityError, LedgerError, LogError
from ledger.keys import Verifier
from ledger.run_checks import (
    PREV_BREAK,
    TILE_BYTES,
    TIME_BREAK,
    CheckedRun,
    Fault,
    check_run,
)
from ledger.store import Store, tile_key
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH, subtree_hash
from ledger.worker_start import worker_pool

#: Entries per run handed to a worker thread (also replica sync's unit of work).
CHUNK = 256
#: Entries per run handed to a worker process: bigger runs amortise the pickling.
PROCESS_CHUNK = 1024
#: Logs with at least this many entries are checked in worker processes.
PROCESS_THRESHOLD = 20_000
#: The same when the caller replays each verified run in this process meanwhile (an audit):
#: worker threads would hold the GIL against it, so processes pay off much sooner.
BUSY_PROCESS_THRESHOLD = 2 * PROCESS_CHUNK
#: With worker processes, a thread of the replaying process checks the first entries in
#: runs of CHUNK until the worker processes are started (about 0.1 s for a process's first
#: pool, while its fork server loads; a few ms after), on the core left idle: at most
#: this many.
STARTER_ENTRIES = 32 * CHUNK
Progress = Callable[[int], None]
#: Receives verified entries: the index of the first, then their bytes.
Verified = Callable[[int, list[bytes]], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a clean replay covered."""

    origin: str
    size: int
    root: bytes
    checkpoints: int


class WorkerError(LedgerError):
    """A worker process died mid-replay (killed, out of memory): the log was not checked."""


class _TileCheck:
    """Compares each recomputed tile-level node with the stored tile that should hold it."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, log_id: bytes) -> None:
        self._txn, self._db, self._log_id = txn, db, log_id
        self._tiles: dict[int, tuple[int, bytes]] = {}

    def tile(self, level: int, number: int) -> bytes:
        cached = self._tiles.get(level)
        if cached is None or cached[0] != number:
            data = self._txn.get(tile_key(self._log_id, level, number), db=self._db)
            cached = (number, b"" if data is None else bytes(data))
            self._tiles[level] = cached
        return cached[1]

    def __call__(self, level: int, index: int, digest: bytes) -> None:
        if level % TILE_HEIGHT:
            return
        number, offset = divmod(index, TILE_WIDTH)
        tile = self.tile(level // TILE_HEIGHT, number)
        if tile[offset * HASH_SIZE : (offset + 1) * HASH_SIZE] != digest:
            raise Fault(
                ((index + 1) << level) - 1,
                f"stored tree hash at level {level} "
                f"index {index} (tile {level // TILE_HEIGHT}/{number}) is wrong",
            )

    def leaves_match(self, start: int, leaves: bytes) -> bool:
        """True when the level-0 tiles from leaf `start` (a tile boundary) hold `leaves`."""
        for at in range(0, len(leaves), TILE_BYTES):
            number = start // TILE_WIDTH + at // TILE_BYTES
            if self.tile(0, number)[:TILE_BYTES] != leaves[at : at + TILE_BYTES]:
                return False
        return True

    def check_edges(self, size: int) -> None:
        """The right-edge partial tiles must hold exactly the nodes the size implies."""
        level = 0
        while (size >> (level * TILE_HEIGHT)) > 0:
            count = size >> (level * TILE_HEIGHT)
            number, width = divmod(count, TILE_WIDTH)
            tile = self.tile(level, number)
            if len(tile) != width * HASH_SIZE:
                raise Fault(
                    size - 1,
                    f"tile {level}/{number} holds {len(tile) // HASH_SIZE} hashes, want {width}",
                )
            level += 1


def _processes_from(*, busy: bool) -> int:
    """Entries from which worker processes pay off: BUSY_PROCESS_THRESHOLD when the caller
    replays rules on the verified entries meanwhile, else PROCESS_THRESHOLD."""
    return BUSY_PROCESS_THRESHOLD if busy else PROCESS_THRESHOLD


@dataclass(frozen=True, slots=True)
class SharedWorkers:
    """Verify workers for the replays of several logs (`verify_logs`, an audit), so that
    each log does not start and stop a pool of its own: `count` processes, or threads;
    `started` is set once they are up."""

    pool: Executor
    count: int
    processes: bool
    started: threading.Event


@contextmanager
def shared_workers(
    entries: int, threads: int | None = None, *, busy: bool = False
) -> Iterator[SharedWorkers]:
    """`threads` workers (default: one per core) for replays of `entries` in all: processes
    from PROCESS_THRESHOLD entries (BUSY_PROCESS_THRESHOLD when the caller replays rules on
    the verified entries meanwhile, as an `on_verified` does), else threads.
    Processes are started at once, in the background."""
    count = threads or os.cpu_count() or 1
    processes = entries >= _processes_from(busy=busy)
    started = threading.Event()
    with worker_pool(count, processes=processes, started=started) as pool:
        yield SharedWorkers(pool, count, processes, started)


def verify_log(
    store: Store,
    verifier: Verifier,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    processes_from: int | None = None,
    on_verified: Verified | None = None,
) -> VerifyReport:
    """Replay `verifier.name`'s log; raise IntegrityError naming the first bad index.

    `threads` workers (default: one per core) check runs of entries: processes for a log
    of at least `processes_from` entries (default PROCESS_THRESHOLD, or
    BUSY_PROCESS_THRESHOLD with `on_verified`), threads below. `on_verified(start, raws)`
    gets every entry before the first fault, in order, in runs, while later runs are still
    being checked: an audit replays the rules on them at the same time.
    """
    origin = verifier.name
    workers = threads or os.cpu_count() or 1
    with store.read() as txn:
        log_id, size = _log_of(store, txn, origin)
        if processes_from is None:
            processes_from = _processes_from(busy=on_verified is not None)
        in_processes = size >= processes_from
        # no starter thread beside an on_verified replay (it would hold the GIL against it)
        starts = in_processes and on_verified is None
        up = threading.Event()  # set once the worker processes are started
        with (
            worker_pool(1, processes=False) if starts else nullcontext() as starter,
            worker_pool(workers, processes=in_processes, started=up) as pool,
        ):
            runs = _assign(
                size,
                store,
                pool,
                processes=in_processes,
                workers=workers,
                starter=starter,
                ready=up.is_set,
            )
            pipeline = _Pipeline(
                (_Run(0, w, source, log_id, verifier, a, b) for w, source, a, b in runs),
                2 * workers + 1,
            )
            try:
                replay = _Replay(txn, store, log_id, verifier)
                root, count = replay.run(pipeline, 0, progress, on_verified)
            except Fault as bad:
                raise IntegrityError(origin, bad.index, bad.reason) from None
            except BrokenExecutor as e:
                raise WorkerError(f"{origin}: a verify worker stopped: {e}") from e
            finally:
                pipeline.close()
    return VerifyReport(origin, size, root, count)


#: What `verify_logs` asks of its caller as each log's turn comes (its origin and size):
#: that log's progress callback and `on_verified`, either may be None.
Begin = Callable[[str, int], tuple[Progress | None, Verified | None]]


def verify_logs(
    store: Store,
    verifiers: Sequence[Verifier],
    shared: SharedWorkers,
    begin: Begin,
    *,
    snapshot: lmdb.Transaction | None = None,
) -> Generator[VerifyReport | IntegrityError, None, None]:
    """`verify_log` for each of `verifiers`' logs in turn, on the `shared` workers: each
    log's report, or the IntegrityError naming its first bad index, in order.

    The runs of all the logs go to the workers as one stream, so the next log's first runs
    are checked while this process still takes the last ones of the log before (an audit
    of many small logs otherwise left the cores idle at each log's start and end). `begin`
    is called when a log's turn comes, once the caller has taken the outcome of the one
    before. A fault drops the runs of its log not yet taken; a worker that dies raises
    WorkerError. Close the iterator when leaving it early. The logs' sizes are read in
    `snapshot` when given (the caller's read transaction, so both agree on them), else in
    a snapshot of their own.

    Until the worker processes are up (about 0.1 s), a thread of this process checks the
    first runs, as `verify_log`'s starter does. Once the first runs are handed on, it
    holds the GIL against the caller's replay of them for the rest of that time: measured,
    it still gains (a 100k audit's first 256 entries verified at 0.06 s instead of 0.24 s,
    both cores busier over the audit).
    """
    starts = shared.processes and not shared.started.is_set()
    with (
        nullcontext(snapshot) if snapshot is not None else store.read() as txn,
        worker_pool(1, processes=False) if starts else nullcontext() as starter,
    ):
        logs = [(verifier, *_log_of(store, txn, verifier.name)) for verifier in verifiers]

        def runs() -> Iterator[_Run]:
            for n, (verifier, log_id, size) in enumerate(logs):
                assigned = _assign(
                    size,
                    store,
                    shared.pool,
                    processes=shared.processes,
                    workers=shared.count,
                    starter=starter,
                    ready=shared.started.is_set,
                )
                for worker, source, start, stop in assigned:
                    if not pipeline.wants(n):
                        break
                    yield _Run(n, worker, source, log_id, verifier, start, stop)

        pipeline = _Pipeline(runs(), 2 * shared.count + 1)
        origin = ""
        try:
            for n, (verifier, log_id, size) in enumerate(logs):
                origin = verifier.name
                progress, on_verified = begin(origin, size)
                try:
                    replay = _Replay(txn, store, log_id, verifier)
                    root, count = replay.run(pipeline, n, progress, on_verified)
                except Fault as bad:  # its runs still out are cancelled by the next take
                    yield IntegrityError(origin, bad.index, bad.reason)
                    continue
                yield VerifyReport(origin, size, root, count)
        except BrokenExecutor as e:
            raise WorkerError(f"{origin}: a verify worker stopped: {e}") from e
        finally:
            pipeline.close()


def _log_of(store: Store, txn: lmdb.Transaction, origin: str) -> tuple[bytes, int]:
    """The id and size of `origin`'s log; LogError when the store holds none."""
    log_id = store.log_id(txn, origin)
    if log_id is None:
        raise LogError(f"no log for {origin} in this store")
    return log_id, store.head(txn, log_id).size


#: One run to check: by whom, reading from where (a thread reads through the Store, a
#: process opens it read-only by path), and its bounds.
Assignment = tuple[Executor, "Store | str", int, int]


def _assign(
    size: int,
    store: Store,
    pool: Executor,
    *,
    processes: bool,
    workers: int,
    starter: Executor | None,
    ready: Callable[[], bool],
) -> Iterator[Assignment]:
    """Runs of a log of `size`, decided as they are asked for: to `starter` (when given) in
    runs of CHUNK while the process `pool` is not `ready`, up to STARTER_ENTRIES; then
    PROCESS_CHUNK runs to the `processes`, but a first CHUNK run for each worker, so the
    caller's in-order work starts sooner, and CHUNK runs for the last `workers` x
    PROCESS_CHUNK entries, so the workers finish together rather than one alone on a long
    last run; else CHUNK runs to the threads of `pool`. Every run but the last starts on
    a tile boundary."""
    at = 0
    if starter is not None:
        cap = min(size, STARTER_ENTRIES)
        while at < cap and not ready():
            yield starter, store, at, min(cap, at + CHUNK)
            at = min(cap, at + CHUNK)
    source: Store | str = str(store.path) if processes else store
    chunk = PROCESS_CHUNK if processes else CHUNK
    head = at + workers * CHUNK if processes else at
    tail = max(at, size - workers * PROCESS_CHUNK) if processes else size
    while at < size:
        stop = min(size, at + (chunk if head <= at < tail else CHUNK))
        yield pool, source, at, stop
        at = stop


def read_run(
    txn: lmdb.Transaction, store: Store, log_id: bytes, start: int, stop: int
) -> tuple[list[bytes], Fault | None]:
    """Entry bytes `start`...`stop - 1`; a gap in the keys cuts the run there, with a fault."""
    raws, missing = store.entry_run(txn, log_id, start, stop)
    return raws, None if missing is None else Fault(missing, "entry is missing")


#: Read-only stores a worker process has opened, by path: one per process, kept open.
_READERS: dict[str, Store] = {}


def check_stored_run(
    source: Store | str, log_id: bytes, verifier: Verifier, start: int, stop: int
) -> CheckedRun:
    """`check_run` on stored entries `start`...`stop - 1`, read by the worker itself.

    A worker process opens the store read-only once (by path) and reads its own runs, so
    the replaying process neither reads nor ships the entry bytes; a worker thread reads
    through the caller's `Store`. Entries below the head never change, so the worker's
    snapshot agrees with the caller's on them.
    """
    if isinstance(source, str):
        store = _READERS.get(source)
        if store is None:
            store = _READERS[source] = Store(Path(source), readonly=True)
    else:
        store = source
    with store.read() as txn:
        raws, gap = read_run(txn, store, log_id, start, stop)
    run = check_run(verifier, start, raws)
    if gap is not None and run.fault is None:
        return replace(run, fault=gap)
    return run


@dataclass(frozen=True, slots=True)
class _Run:
    """One run handed to a worker: the place of its log in the replay, who checks it, where
    it reads from, its log, and its bounds."""

    log: int
    worker: Executor
    source: Store | str
    log_id: bytes
    verifier: Verifier
    start: int
    stop: int


class _Pipeline:
    """Runs handed to their workers in order, at most `in_flight` pending at once, and
    taken back in the same order: the runs of one log, or of several logs in turn.

    Logs are numbered in replay order. Runs of a log before the one being taken, or of a
    dropped log, are not wanted: they are never handed out, and those already out are
    cancelled, so one log that stops early cannot leave its runs in the way of the next.
    """

    def __init__(self, runs: Iterator[_Run], in_flight: int) -> None:
        self._runs, self._in_flight = runs, in_flight
        self._pending: deque[tuple[_Run, Future[CheckedRun]]] = deque()
        self._taking = 0  # the log being taken
        self._dropped: set[int] = set()

    def wants(self, log: int) -> bool:
        """Whether runs of `log` are still wanted (its turn has not passed; not dropped)."""
        return log >= self._taking and log not in self._dropped

    def take(self, log: int) -> tuple[_Run, Future[CheckedRun]] | None:
        """The next run of `log` (the log being replayed) and its outcome to come, after
        handing out runs up to `in_flight`; None once `log` has no run left."""
        self._taking = log
        pending = self._pending
        while pending and not self.wants(pending[0][0].log):
            pending.popleft()[1].cancel()
        while len(pending) < self._in_flight and (run := next(self._runs, None)) is not None:
            future = run.worker.submit(
                check_stored_run, run.source, run.log_id, run.verifier, run.start, run.stop
            )
            pending.append((run, future))
        if pending and pending[0][0].log == log:
            return pending.popleft()
        return None

    def drop(self, log: int) -> None:
        """Hand out no more runs of `log` and cancel those not started: after a fault they
        are not needed, and shared workers would check them before the next log's."""
        self._dropped.add(log)
        while self._pending and self._pending[0][0].log == log:
            self._pending.popleft()[1].cancel()

    def close(self) -> None:
        """Cancel every run not yet started (the replay has ended, or failed)."""
        while self._pending:
            self._pending.popleft()[1].cancel()


class _Handover:
    """Runs waiting to go to `on_verified`, in order, once nothing later can fault them."""

    def __init__(self, on_verified: Verified | None) -> None:
        self.on_verified = on_verified
        self.runs: deque[tuple[int, list[bytes]]] = deque()

    def hold(self, start: int, raws: list[bytes]) -> None:
        """Keep a run until it is known good."""
        if self.on_verified is not None:
            self.runs.append((start, raws))

    def pass_on(self, *, keep: int = 0, before: int | None = None) -> None:
        """Hand on all but the last `keep` runs, cut to the entries below `before`."""
        if self.on_verified is None:
            return
        while len(self.runs) > keep:
            start, raws = self.runs.popleft()
            if before is not None:
                raws = raws[: max(0, before - start)]
            if raws:
                self.on_verified(start, raws)


class _Replay:
    """The in-order half of a replay: the chain between runs, the tree, the checkpoints."""

    def __init__(
        self, txn: lmdb.Transaction, store: Store, log_id: bytes, verifier: Verifier
    ) -> None:
        self.txn, self.store, self.log_id, self.verifier = txn, store, log_id, verifier
        self.tiles = _TileCheck(txn, store.db("tiles"), log_id)
        self.checkpoints = store.checkpoints(txn, log_id)
        self.rng = merkle.CompactRange()
        self.prev, self.last_time, self.checked = ZERO_HASH, 0, 0
        self.next_cp = next(self.checkpoints, None)
        self._check_checkpoints()

    def run(
        self,
        pipeline: _Pipeline,
        log: int,
        progress: Progress | None,
        on_verified: Verified | None = None,
    ) -> tuple[bytes, int]:
        """Take the runs of `log` from the `pipeline` in order, as their workers check them.

        Workers read their own runs. Each verified run goes to `on_verified` one run late
        (the end-of-log checks can still fault the last entry); on a fault, the log's runs
        not started are dropped and every entry before it goes first.
        """
        held = _Handover(on_verified)
        try:
            while (taken := pipeline.take(log)) is not None:
                run, future = taken
                if on_verified is not None:
                    raws = read_run(self.txn, self.store, self.log_id, run.start, run.stop)[0]
                    held.hold(run.start, raws)
                self.add(future.result())
                held.pass_on(keep=1)
                if progress is not None:
                    progress(self.rng.size)
            result = self.finish()
        except Fault as bad:
            pipeline.drop(log)
            held.pass_on(before=bad.index)
            raise
        held.pass_on()
        return result

    def add(self, run: CheckedRun) -> None:
        """Chain a checked run onto the entries so far, grow the tree, check checkpoints."""
        if run.count:
            if run.first_prev != self.prev:
                raise Fault(run.start, PREV_BREAK)
            if run.first_time < self.last_time:
                raise Fault(
                    run.start, TIME_BREAK.format(time=run.first_time, before=self.last_time)
                )
            self._grow(run)
            self.prev, self.last_time = run.leaves[-HASH_SIZE:], run.last_time
        if run.fault is not None:
            raise run.fault

    def _grow(self, run: CheckedRun) -> None:
        """Append the run's leaves, checking each stored checkpoint at its size on the way.

        A whole level-0 tile whose stored hashes equal the run's joins the tree as one
        level-8 subtree (checkpoints at sizes inside it are checked on a scratch copy of
        the tree's edge); any other leaf is appended alone, so a fault is found at its leaf.
        """
        rng, tiles, leaves, nodes = self.rng, self.tiles, run.leaves, run.nodes
        end = run.start + run.count
        while (at := rng.size) < end:
            offset = (at - run.start) * HASH_SIZE
            node = offset // TILE_WIDTH
            tile = leaves[offset : offset + TILE_BYTES]
            if (
                at % TILE_WIDTH == 0
                and at + TILE_WIDTH <= end
                and node < len(nodes)
                and tiles.leaves_match(at, tile)
            ):
                self._check_inside(tile)
                rng.append_subtree(TILE_HEIGHT, nodes[node : node + HASH_SIZE], tiles)
            else:
                rng.append(tile[:HASH_SIZE], tiles)
            self._check_checkpoints()

    def _check_inside(self, tile: bytes) -> None:
        """Check the stored checkpoints at sizes inside a whole tile about to join the tree:
        each against the root of the tree so far plus the tile's leaves up to its size."""
        base = self.rng.size
        while self.next_cp is not None and self.next_cp[0] < base + TILE_WIDTH:
            size = self.next_cp[0]
            edge, at = list(self.rng.hashes), 0
            for level in range(TILE_HEIGHT - 1, -1, -1):  # the tile's leaves below `size`
                if (size - base) >> level & 1:  # as perfect subtrees, largest first
                    width = HASH_SIZE << level
                    edge.append(subtree_hash(tile[at : at + width], level))
                    at += width
            scratch = merkle.CompactRange(size, edge)
            self.next_cp, self.checked = _check_checkpoints(
                self.next_cp, self.checkpoints, size, scratch, self.verifier, self.checked
            )

    def _check_checkpoints(self) -> None:
        self.next_cp, self.checked = _check_checkpoints(
            self.next_cp, self.checkpoints, self.rng.size, self.rng, self.verifier, self.checked
        )

    def finish(self) -> tuple[bytes, int]:
        """The right-edge tiles, leftover checkpoints and the head; the root and checkpoints."""
        size = self.rng.size
        self.tiles.check_edges(size)
        if self.next_cp is not None:
            raise Fault(
                max(size - 1, 0), f"checkpoint at size {self.next_cp[0]} is beyond the log size"
            )
        head = self.store.head(self.txn, self.log_id)
        if size and (head.last_leaf != self.prev or head.time_ms != self.last_time):
            raise Fault(size - 1, "stored head does not match the last entry")
        return self.rng.root(), self.checked


def _check_checkpoints(
    next_cp: tuple[int, bytes] | None,
    rest: Iterator[tuple[int, bytes]],
    size: int,
    rng: merkle.CompactRange,
    verifier: Verifier,
    checked: int,
) -> tuple[tuple[int, bytes] | None, int]:
    """Check every stored checkpoint at `size` against the recomputed root."""
    while next_cp is not None and next_cp[0] <= size:
        at, note = next_cp
        index = max(at - 1, 0)
        try:
            cp, _ = open_checkpoint(note, verifier)
        except LedgerError as e:
            raise Fault(index, f"checkpoint at size {at}: {e}") from None
        if cp.size != at:
            raise Fault(index, f"checkpoint stored at size {at} says size {cp.size}")
        if cp.root != rng.root():
            raise Fault(index, f"checkpoint at size {at} has a root the entries do not produce")
        checked += 1
        next_cp = next(rest, None)
    return next_cp, checked
