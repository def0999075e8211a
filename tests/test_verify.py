"""Replay verification finds the first bad index, whatever byte was changed."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import verify as verify_module
from ledger.datadir import DataDir
from ledger.entry import encode_payload, parse_entry, sign_entry
from ledger.errors import IntegrityError
from ledger.keys import Signer
from ledger.log import Log
from ledger.replica import Replica
from ledger.run_checks import CheckedRun, check_entries
from ledger.store import Head, Store, checkpoint_key, entry_key, tile_key
from ledger.verify import (
    CHUNK,
    PROCESS_CHUNK,
    STARTER_ENTRIES,
    SharedWorkers,
    VerifyReport,
    _assign,
    shared_workers,
    verify_log,
    verify_logs,
)
from tests.conftest import mine_body

SIZE = 600  # more than two full level-0 tiles, so level-1 nodes exist too


def _log_in_batches(path: Path, size: int, batch: int) -> DataDir:
    """Botswana's node at `path` with `size` entries appended `batch` at a time, each batch
    a commit with its own checkpoint."""
    node = DataDir.init(path / "bw", "BW", "kp.example")
    log = node.own_log()
    for start in range(0, size, batch):
        log.append_many(
            [("parcel.mine", mine_body(i)) for i in range(start, min(size, start + batch))]
        )
    return node


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A log of SIZE entries in batches, so it has many checkpoints."""
    return _log_in_batches(tmp_path_factory.mktemp("v"), SIZE, 97)


def _stored(value: bytes | memoryview | None) -> bytes:
    """A value the test expects to be stored."""
    assert value is not None
    return bytes(value)


def _flip(node: DataDir, db: str, key: bytes, position: int) -> bytes:
    """Flip one bit of a stored value; return the original so the test can restore it."""
    with node.store.write() as txn:
        original = _stored(txn.get(key, db=node.store.db(db)))
        changed = bytearray(original)
        changed[position % len(changed)] ^= 0x01
        txn.put(key, bytes(changed), db=node.store.db(db))
    return original


def _restore(node: DataDir, db: str, key: bytes, value: bytes) -> None:
    with node.store.write() as txn:
        txn.put(key, value, db=node.store.db(db))


@contextmanager
def _replaced(node: DataDir, key: bytes, make: Callable[[bytes], bytes | None]) -> Iterator[None]:
    """Replace stored entry `key` by make(original) (None deletes it), restoring it afterwards."""
    with node.store.write() as txn:
        original = _stored(txn.get(key, db=node.store.db("entries")))
        replacement = make(original)
        if replacement is None:
            txn.delete(key, db=node.store.db("entries"))
        else:
            txn.put(key, replacement, db=node.store.db("entries"))
    try:
        yield
    finally:
        _restore(node, "entries", key, original)


def _first_fault(node: DataDir) -> IntegrityError:
    """Run a replay that must fail; return its error."""
    with pytest.raises(IntegrityError) as caught:
        verify_log(node.store, node.signer.verifier, threads=2)
    return caught.value


def test_an_untouched_log_verifies(built: DataDir) -> None:
    """A clean log replays with every entry and every checkpoint checked."""
    report = verify_log(built.store, built.signer.verifier, threads=2)
    assert report.size == SIZE
    assert report.checkpoints == len(range(0, SIZE, 97)) + 0
    assert report.root == built.own_log().root()


@given(index=st.integers(min_value=0, max_value=SIZE - 1), position=st.integers(0, 10_000))
def test_flipping_any_entry_byte_fails_at_that_index(
    built: DataDir, index: int, position: int
) -> None:
    """A single flipped bit anywhere in entry i is reported at index i."""
    log_id = built.own_log().log_id
    key = entry_key(log_id, index)
    original = _flip(built, "entries", key, position)
    try:
        with pytest.raises(IntegrityError) as caught:
            verify_log(built.store, built.signer.verifier, threads=2)
        assert caught.value.index == index
    finally:
        _restore(built, "entries", key, original)


@given(number=st.integers(min_value=0, max_value=2), position=st.integers(0, 256 * 32 - 1))
def test_flipping_any_level0_tree_hash_fails_at_its_leaf(
    built: DataDir, number: int, position: int
) -> None:
    """A flipped bit in a stored leaf-level tile is reported at the entry that hash belongs to."""
    log_id = built.own_log().log_id
    key = tile_key(log_id, 0, number)
    with built.store.read() as txn:
        width = len(_stored(txn.get(key, db=built.store.db("tiles"))))
    position %= width
    original = _flip(built, "tiles", key, position)
    try:
        with pytest.raises(IntegrityError) as caught:
            verify_log(built.store, built.signer.verifier, threads=2)
        assert caught.value.index == number * 256 + position // 32
    finally:
        _restore(built, "tiles", key, original)


def test_flipping_a_level1_tree_hash_fails_where_that_node_completes(built: DataDir) -> None:
    """A flipped bit in the level-1 tile is reported at the last leaf under the corrupted node."""
    log_id = built.own_log().log_id
    key = tile_key(log_id, 1, 0)
    original = _flip(built, "tiles", key, 32 + 5)  # node 1 at level 8: leaves 256..511
    try:
        with pytest.raises(IntegrityError, match="tree hash") as caught:
            verify_log(built.store, built.signer.verifier, threads=2)
        assert caught.value.index == 511
    finally:
        _restore(built, "tiles", key, original)


def test_a_corrupted_checkpoint_is_reported(built: DataDir) -> None:
    """A stored checkpoint whose bytes changed fails verification naming its size."""
    log = built.own_log()
    size = [s for s, _ in log.checkpoints()][2]
    key = log.log_id + size.to_bytes(8, "big")
    original = _flip(built, "checkpoints", key, 20)
    try:
        with pytest.raises(IntegrityError, match=f"checkpoint at size {size}") as caught:
            verify_log(built.store, built.signer.verifier, threads=2)
        assert caught.value.index == size - 1
    finally:
        _restore(built, "checkpoints", key, original)


def test_a_validly_signed_entry_with_a_broken_chain_is_found(built: DataDir) -> None:
    """An entry re-signed with the right key but a wrong prev is caught by the chain check."""
    log = built.own_log()
    forged = sign_entry(built.signer, encode_payload(log.origin, 300, bytes(32), 1, "x", {}))
    with _replaced(built, entry_key(log.log_id, 300), lambda _: forged):
        fault = _first_fault(built)
    assert (fault.index, "prev" in fault.reason) == (300, True)


def test_an_entry_signed_by_another_key_is_found(built: DataDir) -> None:
    """An otherwise perfect entry signed by someone else's key fails its signature check."""
    log = built.own_log()
    impostor = Signer.generate(log.origin)
    with _replaced(
        built, entry_key(log.log_id, 0), lambda raw: sign_entry(impostor, parse_entry(raw).payload)
    ):
        fault = _first_fault(built)
    assert (fault.index, "signature" in fault.reason) == (0, True)


def test_a_missing_entry_is_reported(built: DataDir) -> None:
    """Deleting an entry from the store is reported at its index."""
    log = built.own_log()
    with _replaced(built, entry_key(log.log_id, 450), lambda _: None):
        fault = _first_fault(built)
    assert (fault.index, "missing" in fault.reason) == (450, True)


def test_a_head_that_disagrees_with_the_entries_is_reported(built: DataDir) -> None:
    """A head naming another last leaf than the entries produce fails at the last index."""
    log = built.own_log()
    head = log.head()
    with built.store.write() as txn:
        built.store.put_head(txn, log.log_id, Head(head.size, bytes(32), head.time_ms))
    try:
        with pytest.raises(IntegrityError, match="head") as caught:
            verify_log(built.store, built.signer.verifier, threads=2)
        assert caught.value.index == SIZE - 1
    finally:
        with built.store.write() as txn:
            built.store.put_head(txn, log.log_id, head)


#: The most a starter thread checks before the worker processes take over (it stops sooner
#: once one is up), so every entry from BASE on is checked in a worker process; below it an
#: entry may fall to either, which the comparison with the other paths does not mind.
BASE = STARTER_ENTRIES
PROCESS_SIZE = BASE + 2_100  # then two full worker-process runs of 1024 and a partial one


@pytest.fixture(scope="module")
def bigger(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A log of PROCESS_SIZE entries, checkpointed every 250 (inside worker-process runs)."""
    return _log_in_batches(tmp_path_factory.mktemp("vp"), PROCESS_SIZE, 250)


def _both_paths(node: DataDir) -> list[object]:
    """The outcome of a replay in worker processes, then of one in threads, each handing
    entries to `on_verified`; then of one in processes without it (a starter thread
    checks the first entries until a worker is up), and of the log twice in one
    `verify_logs` on shared workers, each of which must equal the first.

    Each also checks what `on_verified` was handed: every entry before the first fault
    (all of them on a clean log), in order, each exactly as stored.
    """
    outcomes: list[object] = []
    stored = list(node.own_log().entries())
    for processes_from in (0, 10**9):
        handed: list[bytes] = []

        def collect(start: int, raws: list[bytes], handed: list[bytes] = handed) -> None:
            assert start == len(handed)
            handed.extend(raws)

        try:
            outcomes.append(
                verify_log(
                    node.store,
                    node.signer.verifier,
                    threads=2,
                    processes_from=processes_from,
                    on_verified=collect,
                )
            )
            assert handed == stored
        except IntegrityError as e:
            outcomes.append((e.index, e.reason))
            assert handed == stored[: e.index]
    try:
        started: object = verify_log(node.store, node.signer.verifier, threads=2, processes_from=0)
    except IntegrityError as e:
        started = (e.index, e.reason)
    assert started == outcomes[0]
    with shared_workers(node.own_log().size(), 2, busy=True) as shared:
        assert shared.processes
        kept: list[list[bytes]] = []  # what each log's turn handed on

        def begin(origin: str, size: int) -> tuple[None, Callable[[int, list[bytes]], None]]:
            assert (origin, size) == (node.origin, len(stored))
            kept.append([])

            def keep(start: int, raws: list[bytes], kept: list[bytes] = kept[-1]) -> None:
                assert start == len(kept)
                kept.extend(raws)

            return None, keep

        # one pool, the log twice in one stream (as an audit's logs); that the second's
        # first runs go out early is test_the_next_log_s_runs_are_out_before...'s to show
        twice = verify_logs(node.store, [node.signer.verifier] * 2, shared, begin)
        for n, again in enumerate(twice):
            seen = (again.index, again.reason) if isinstance(again, IntegrityError) else again
            assert seen == outcomes[0]
            intact = again.index if isinstance(again, IntegrityError) else len(stored)
            assert kept[n] == stored[:intact]
        assert len(kept) == 2
    return outcomes


def test_worker_processes_verify_a_clean_log_like_threads(bigger: DataDir) -> None:
    """The process path checks every entry and checkpoint and reports the same root."""
    in_processes, in_threads = _both_paths(bigger)
    assert in_processes == in_threads
    assert in_processes == VerifyReport(
        bigger.origin, PROCESS_SIZE, bigger.own_log().root(), len(range(0, PROCESS_SIZE, 250))
    )


def _impostor_signed(node: DataDir, raw: bytes) -> bytes:
    return sign_entry(Signer.generate(node.origin), parse_entry(raw).payload)


def _forged_prev(node: DataDir, index: int) -> bytes:
    payload = encode_payload(node.origin, index, bytes(32), 1, "x", {})
    return sign_entry(node.signer, payload)


Corruption = Callable[[DataDir, bytes], AbstractContextManager[object]]


@contextmanager
def _flipped(node: DataDir, db: str, key: bytes, position: int) -> Iterator[None]:
    original = _flip(node, db, key, position)
    try:
        yield
    finally:
        _restore(node, db, key, original)


@pytest.mark.parametrize(
    ("corrupt", "index"),
    [
        (
            lambda n, log_id: _flipped(n, "entries", entry_key(log_id, BASE + 1500), 100),
            BASE + 1500,
        ),
        (
            lambda n, log_id: _replaced(
                n, entry_key(log_id, BASE + 1100), lambda raw: _impostor_signed(n, raw)
            ),
            BASE + 1100,
        ),
        (
            lambda n, log_id: _replaced(
                n, entry_key(log_id, BASE + 1024), lambda _: _forged_prev(n, BASE + 1024)
            ),
            BASE + 1024,
        ),
        (
            lambda n, log_id: _flipped(
                n, "tiles", tile_key(log_id, 0, BASE // 256 + 5), 7 * 32 + 3
            ),
            BASE + 5 * 256 + 7,
        ),
        (
            lambda n, log_id: _flipped(
                n, "tiles", tile_key(log_id, 1, 0), (BASE // 256 + 3) * 32 + 1
            ),
            BASE + 1023,
        ),
        (
            lambda n, log_id: _flipped(n, "checkpoints", log_id + (3750).to_bytes(8, "big"), 20),
            3749,
        ),
        (lambda n, log_id: _flipped(n, "entries", entry_key(log_id, 700), 100), 700),
    ],
    ids=[
        "entry-byte",
        "signature",
        "chain-at-run-start",
        "level0-tile",
        "level1-tile",
        "checkpoint",
        "entry-byte-in-the-starter-thread",
    ],
)
def test_worker_processes_find_the_same_first_fault_as_threads(
    bigger: DataDir, corrupt: Corruption, index: int
) -> None:
    """Corrupted bytes, a foreign signature, a broken chain, a bad tile or checkpoint: the
    process path reports the same first bad index, for the same reason, as the thread path."""
    with corrupt(bigger, bigger.own_log().log_id):
        in_processes, in_threads = _both_paths(bigger)
    assert in_processes == in_threads
    assert isinstance(in_processes, tuple) and in_processes[0] == index


def test_checked_entries_and_their_fault_cross_a_process_boundary(built: DataDir) -> None:
    """What a worker returns, a fault included, pickles back equal (replica sync ships it too)."""
    log = built.own_log()
    raws = [*log.entries(0, 3), b"\x92\xc4\x00"]
    checked = check_entries(built.signer.verifier, 0, raws, bodies=True)
    back = pickle.loads(pickle.dumps((built.signer.verifier, checked)))
    assert back[0] == built.signer.verifier
    assert (back[1].leaves, back[1].bodies) == (checked.leaves, checked.bodies)
    assert back[1].fault is not None
    assert (back[1].fault.index, back[1].fault.reason) == (
        3,
        "malformed msgpack: entry of 3 bytes is truncated",
    )


@given(
    size=st.integers(min_value=0, max_value=20_000),
    workers=st.integers(min_value=1, max_value=8),
    processes=st.booleans(),
    up_after=st.integers(min_value=0, max_value=40),
)
def test_runs_cover_the_log_once_in_order_from_tile_boundaries(
    size: int, workers: int, processes: bool, up_after: int
) -> None:
    """However the starter, the processes and the tail share a log, every entry is in
    exactly one run, in order, and every run but the last starts on a tile boundary (where
    a worker hashes whole tiles); the workers start and end on short runs, so the caller
    starts soon and no worker ends alone."""
    store = cast(Store, SimpleNamespace(path=Path("/nowhere")))
    pool, starter = object(), object()
    asked = iter(range(10**9))
    runs = list(
        _assign(
            size,
            store,
            cast(Executor, pool),
            processes=processes,
            workers=workers,
            starter=cast(Executor, starter) if processes else None,
            ready=lambda: next(asked) >= up_after,
        )
    )
    starts, stops = [run[2] for run in runs], [run[3] for run in runs]
    assert starts == [0, *stops[:-1]][: len(runs)]
    assert (stops[-1] if runs else 0) == size
    assert all(start % 256 == 0 for _, _, start, _ in runs)
    assert all(stop > start for _, _, start, stop in runs)
    first = [run for run in runs if run[0] is pool][:workers]
    for who, _, start, stop in runs:
        if who is starter or not processes or start >= size - workers * PROCESS_CHUNK:
            assert stop - start <= CHUNK
    if processes:  # each worker's first run is short, so the caller's in-order work starts
        assert all(stop - start <= CHUNK for _, _, start, stop in first)


def test_a_fault_leaves_no_runs_queued_on_shared_workers(
    bigger: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fault, the runs of that log not yet started are dropped, so the next log on
    the same shared workers does not wait behind them."""
    checked: list[int] = []
    real = verify_module.check_stored_run

    def slowly(*args: Any) -> CheckedRun:
        time.sleep(0.05)  # two threads take two runs at a time
        checked.append(args[3])
        return real(*args)

    monkeypatch.setattr(verify_module, "check_stored_run", slowly)
    log_id = bigger.own_log().log_id
    with shared_workers(100, 2) as shared, _flipped(bigger, "entries", entry_key(log_id, 10), 100):
        assert not shared.processes
        twice = [bigger.signer.verifier] * 2
        with closing(verify_logs(bigger.store, twice, shared, lambda _o, _n: (None, None))) as out:
            fault = next(out)  # the second log's turn has not come: none of its runs is out
            assert isinstance(fault, IntegrityError)
            assert fault.index == 10
            idle = threading.Barrier(shared.count)  # every worker thread at it: none is busy
            wait([shared.pool.submit(idle.wait) for _ in range(shared.count)])
            # 5 runs were handed out (2 x 2 workers + 1); the fault in the first is found
            # at about 50 ms, when the threads are starting the third and fourth: the fifth
            # never runs
            assert len(checked) <= 4


@contextmanager
def _garbage_checkpoint_at_zero(node: DataDir, log_id: bytes) -> Iterator[None]:
    """A stored checkpoint at size 0 that does not parse: the replay faults before its
    first run."""
    key, db = checkpoint_key(log_id, 0), node.store.db("checkpoints")
    with node.store.write() as txn:
        txn.put(key, b"garbage", db=db)
    try:
        yield
    finally:
        with node.store.write() as txn:
            txn.delete(key, db=db)


@pytest.fixture(scope="module")
def two_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataDir, Signer]:
    """Botswana's node holding its log of 1,500 entries and a copy of Namibia's of 700."""
    path = tmp_path_factory.mktemp("two")
    node = _log_in_batches(path, 1_500, 250)
    other = DataDir.init(path / "na", "NA", "kp.example")
    log = other.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(700)])
    Replica(node.store, log.verifier).accept(list(log.entries()), log.checkpoint())
    other.close()
    return node, other.signer


@pytest.mark.parametrize("fault", ["before its first run", "at entry 10"])
def test_a_log_that_faults_leaves_the_next_log_s_replay_whole(
    two_logs: tuple[DataDir, Signer], fault: str
) -> None:
    """A fault in one log, found before any of its runs was taken or with its runs out,
    changes nothing for the log after it: that one is verified whole, every entry handed on."""
    node, namibia = two_logs
    log_id = node.own_log().log_id
    planted = (
        _garbage_checkpoint_at_zero(node, log_id)
        if fault == "before its first run"
        else _flipped(node, "entries", entry_key(log_id, 10), 100)
    )
    handed: dict[str, list[bytes]] = {}

    def begin(origin: str, size: int) -> tuple[None, Callable[[int, list[bytes]], None]]:
        kept = handed.setdefault(origin, [])
        return None, lambda start, raws: kept.extend(raws)

    verifiers = [node.signer.verifier, namibia.verifier]
    with (
        shared_workers(100, 2) as shared,
        planted,
        closing(verify_logs(node.store, verifiers, shared, begin)) as out,
    ):
        first, second = list(out)
    assert isinstance(first, IntegrityError)
    assert first.index == (0 if fault == "before its first run" else 10)
    copy = Log(node.store, namibia.verifier)
    assert second == VerifyReport(namibia.name, 700, copy.root(), 1)
    assert handed[namibia.name] == list(copy.entries())


class _Recorder(ThreadPoolExecutor):
    """A one-thread pool that notes the start of each run submitted to it, in order."""

    def __init__(self) -> None:
        super().__init__(1)
        self.submitted: list[tuple[bytes, int]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append((args[1], args[3]))  # log id, start
        return super().submit(fn, *args, **kwargs)


def test_the_next_log_s_runs_are_out_before_the_last_run_of_a_log_is_taken(
    built: DataDir,
) -> None:
    """verify_logs hands the workers the next log's first runs while it still takes back the
    last ones of the log before, so the workers do not wait at each log's start."""
    pool = _Recorder()
    shared = SharedWorkers(pool, 2, False, threading.Event())
    taken: list[tuple[int, int]] = []  # (log's turn, entries handed on so far)
    turns: list[str] = []

    def begin(origin: str, size: int) -> tuple[None, Callable[[int, list[bytes]], None]]:
        turns.append(origin)
        turn = len(turns) - 1
        return None, lambda start, raws: taken.append((turn, len(pool.submitted)))

    with pool, closing(verify_logs(built.store, [built.signer.verifier] * 2, shared, begin)) as out:
        reports = list(out)
    assert all(isinstance(r, VerifyReport) and r.size == SIZE for r in reports)
    log_id = built.own_log().log_id
    runs = len(
        list(
            _assign(
                SIZE,
                built.store,
                pool,
                processes=False,
                workers=2,
                starter=None,
                ready=lambda: True,
            )
        )
    )
    assert pool.submitted == [(log_id, start) for start in range(0, SIZE, CHUNK)] * 2
    assert len(pool.submitted) == 2 * runs
    # when the first log's last run was handed on, the second's first runs were out
    last_of_first = [submitted for turn, submitted in taken if turn == 0][-1]
    assert last_of_first > runs
