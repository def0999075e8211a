"""The own log: durable appends, the hash chain, tiles, checkpoints and proofs."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import lmdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.datadir import DataDir
from ledger.entry import ZERO_HASH, parse_entry
from ledger.errors import (
    AlreadyInitialisedError,
    IntegrityError,
    LogError,
    NotInitialisedError,
    StoreError,
)
from ledger.keys import Signer
from ledger.log import Log
from ledger.store import Store, entry_key
from ledger.verify import verify_log
from tests.conftest import mine_body


def test_append_chains_each_entry_to_its_predecessor(node: DataDir) -> None:
    """Every entry names the leaf hash of the one before it; the first names zeros."""
    log = node.own_log()
    done = log.append_many([("parcel.mine", mine_body(i)) for i in range(5)])
    assert [a.index for a in done] == [0, 1, 2, 3, 4]
    assert all(a.size == 5 for a in done)
    prev = ZERO_HASH
    for i in range(5):
        entry = parse_entry(log.entry(i))
        assert (entry.index, entry.prev, entry.origin) == (i, prev, "kp.example/BW")
        prev = merkle.leaf_hash(entry.raw)
    assert prev == done[-1].leaf_hash


def test_each_commit_signs_a_checkpoint_of_the_new_root(node: DataDir) -> None:
    """After each append the latest checkpoint carries the size and root of the whole log."""
    log = node.own_log()
    for n in range(1, 4):
        log.append("parcel.mine", mine_body(n))
        cp, _ = open_checkpoint(log.checkpoint(), node.signer.verifier)
        leaves = [merkle.leaf_hash(raw) for raw in log.entries()]
        rng = merkle.CompactRange()
        for leaf in leaves:
            rng.append(leaf)
        assert (cp.origin, cp.size, cp.root) == ("kp.example/BW", n, rng.root())
    assert [size for size, _ in log.checkpoints()] == [1, 2, 3]


def test_times_never_go_backwards_even_if_the_clock_does(node: DataDir) -> None:
    """An entry's time is at least its predecessor's, whatever the wall clock says."""
    times = iter([5_000, 1_000, 7_000])
    log = node.own_log(clock=lambda: next(times))
    for i in range(3):
        log.append("parcel.mine", mine_body(i))
    assert [parse_entry(raw).time_ms for raw in log.entries()] == [5_000, 5_000, 7_000]


@given(
    batches=st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8), data=st.data()
)
def test_every_inclusion_and_consistency_proof_verifies(
    tmp_path_factory: pytest.TempPathFactory, batches: list[int], data: st.DataObject
) -> None:
    """For any sequence of append batches, proofs at any size verify against the stored roots."""
    path = tmp_path_factory.mktemp("log")
    node = DataDir.init(path / "d", "BW", "kp.example")
    log = node.own_log()
    sizes = [0]
    for batch in batches:
        log.append_many([("parcel.mine", mine_body(i)) for i in range(batch)])
        sizes.append(log.size())
    size = sizes[-1]
    roots = {s: log.root(s) for s in sizes}
    for s in sizes[1:]:
        cp, _ = open_checkpoint(log.checkpoint(s), node.signer.verifier)
        assert cp.root == roots[s]
    for _ in range(10):
        s = data.draw(st.integers(min_value=1, max_value=size))
        i = data.draw(st.integers(min_value=0, max_value=s - 1))
        leaf = merkle.leaf_hash(log.entry(i))
        merkle.verify_inclusion(i, s, leaf, log.inclusion_proof(i, s), log.root(s))
        s1 = data.draw(st.integers(min_value=1, max_value=s))
        merkle.verify_consistency(s1, s, log.root(s1), log.root(s), log.consistency_proof(s1, s))
    node.close()


def test_a_snapshot_reader_keeps_its_size_while_the_writer_appends(node: DataDir) -> None:
    """A reader iterating entries sees the size of its snapshot, not later appends."""
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(10)])
    reader = log.entries()
    first = next(reader)
    log.append_many([("parcel.mine", mine_body(i)) for i in range(10, 20)])
    assert len([first, *reader]) == 10
    assert log.size() == 20


def test_two_handles_on_one_store_keep_one_consistent_tree(node: DataDir) -> None:
    """Appends through a second handle (another process's view) are picked up by the first."""
    one, two = node.own_log(), node.own_log()
    one.append("parcel.mine", mine_body(0))
    two.append_many([("parcel.mine", mine_body(i)) for i in range(1, 300)])
    one.append("parcel.mine", mine_body(300))
    rng = merkle.CompactRange()
    for raw in one.entries():
        rng.append(merkle.leaf_hash(raw))
    assert one.root() == rng.root() == two.root()


def test_a_failing_record_writes_nothing_of_its_batch(node: DataDir) -> None:
    """A batch with a record that cannot be encoded leaves the log exactly as it was."""
    log = node.own_log()
    log.append("parcel.mine", mine_body(0))
    before = (log.size(), log.root(), log.checkpoint())
    with pytest.raises(Exception, match="float"):
        log.append_many([("parcel.mine", mine_body(1)), ("parcel.mine", {"carats": 1.5})])
    assert (log.size(), log.root(), log.checkpoint()) == before
    log.append("parcel.mine", mine_body(1))
    assert log.size() == 2


def test_out_of_range_requests_name_the_problem(node: DataDir) -> None:
    """Asking for an entry, proof or size the log does not have is a LogError saying so."""
    log = node.own_log()
    log.append("parcel.mine", mine_body(0))
    with pytest.raises(LogError, match="no entry 5"):
        log.entry(5)
    with pytest.raises(LogError, match="outside"):
        log.inclusion_proof(1, 1)
    with pytest.raises(LogError, match="size 9"):
        log.root(9)


def test_a_replica_cannot_be_appended_to(node: DataDir) -> None:
    """Only the log's own signer appends; a replica handle refuses."""
    other = DataDir.init(node.path.parent / "ru", "RU", "kp.example")
    replica = Log(node.store, other.signer.verifier)
    with pytest.raises(LogError, match="replica"):
        replica.append("parcel.mine", mine_body(0))
    other.close()


def test_init_refuses_to_overwrite_and_open_needs_init(tmp_path: Path) -> None:
    """init never replaces an existing ledger; open on an empty directory says to run init."""
    DataDir.init(tmp_path / "d", "BW", "kp.example").close()
    with pytest.raises(AlreadyInitialisedError):
        DataDir.init(tmp_path / "d", "BW", "kp.example")
    with pytest.raises(NotInitialisedError, match="kimberley init"):
        DataDir.open(tmp_path / "empty")


def test_a_gap_in_the_stored_entries_is_named_where_it_starts(tmp_path: Path) -> None:
    """Entries read in cursor runs stop at a missing one: the reads before it are whole, and
    the error (or the replay's fault) names its index."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(600)])
    stored = list(log.entries())
    with node.store.write() as txn:
        assert txn.delete(entry_key(log.log_id, 300), db=node.store.db("entries"))
    with node.store.read() as txn:
        assert node.store.entry_run(txn, log.log_id, 250, 400) == (stored[250:300], 300)
        assert node.store.entry_run(txn, log.log_id, 301, 600) == (stored[301:], None)
        assert node.store.entry_run(txn, log.log_id, 590, 610) == (stored[590:], 600)
    read: list[bytes] = []
    with pytest.raises(StoreError, match="entry 300 is missing"):
        read.extend(log.entries())
    assert read == stored[:300]
    with pytest.raises(IntegrityError, match="entry is missing") as caught:
        verify_log(node.store, node.signer.verifier)
    assert caught.value.index == 300
    node.close()


@pytest.fixture(scope="module")
def two_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataDir, bytes, list[bytes]]:
    """Botswana's log of 300 entries with another log's entries stored right after it."""
    node = DataDir.init(tmp_path_factory.mktemp("runs") / "bw", "BW", "kp.example")
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(300)])
    other = Signer.generate("kp.example/ZA")
    Log(node.store, other.verifier, other).append_many(
        [("parcel.mine", mine_body(i)) for i in range(40)]
    )
    return node, log.log_id, list(log.entries())


@given(
    missing=st.sets(st.integers(min_value=0, max_value=299), max_size=4),
    start=st.integers(min_value=0, max_value=320),
    length=st.integers(min_value=0, max_value=300),
)
def test_entry_runs_read_what_is_stored_and_stop_at_the_first_gap(
    two_logs: tuple[DataDir, bytes, list[bytes]], missing: set[int], start: int, length: int
) -> None:
    """A run of entries is every stored entry from its start up to the first one missing
    (deleted, or past the log's end where the next log's entries follow), whose index it
    names; it never takes another log's entries."""
    node, log_id, stored = two_logs
    stop = start + length
    gap = next((i for i in range(start, stop) if i in missing or i >= len(stored)), None)
    want = stored[start : stop if gap is None else gap]
    txn = node.store.env.begin(write=True, buffers=False)
    try:
        for index in missing:
            txn.delete(entry_key(log_id, index), db=node.store.db("entries"))
        got = node.store.entry_run(txn, log_id, start, stop)
    finally:
        txn.abort()  # the fixture's log stays whole for the next example
    assert got == (want, gap)


def test_a_truncated_or_empty_data_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """A data file cut short (a bad copy, a full disk) is refused with a StoreError naming
    it, before any read could run past its end and kill the process; an empty one is not
    silently made into a new store."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    node.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(2_000)])
    node.close()
    data = tmp_path / "bw" / "store" / "data.mdb"
    whole = data.stat().st_size
    for cut, problem in ((whole // 2, "was truncated"), (0, "is empty")):
        with open(data, "r+b") as f:
            f.truncate(cut)
        with pytest.raises(StoreError, match=problem):
            DataDir.open(tmp_path / "bw")
        assert data.stat().st_size == cut


def test_a_data_file_shorter_than_its_header_counts_but_whole_still_opens(tmp_path: Path) -> None:
    """Pages a transaction took and freed again are counted by LMDB's header but never
    written, so a sound file can be shorter than the count: such a store still opens (a
    child process reads every table before the store is refused as truncated)."""
    path = tmp_path / "store"
    for seed in range(60):  # LMDB leaves such a file in about one transaction in six
        shutil.rmtree(path, ignore_errors=True)
        Store(path, create=True).close()
        env = lmdb.open(str(path), map_size=1 << 30, max_dbs=32)
        tables = [env.open_db(b"entries"), env.open_db(b"holding")]
        draw = random.Random(seed)
        with env.begin(write=True) as txn:
            keys = [b"x%06d" % draw.randrange(10**6) for _ in range(draw.randrange(100, 8000))]
            for key in keys:
                txn.put(key, b"w" * draw.randrange(10, 1500), db=draw.choice(tables))
            draw.shuffle(keys)
            for key in keys[: draw.randrange(len(keys))]:
                for table in tables:
                    txn.delete(key, db=table)
        counted = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        env.close()
        if (path / "data.mdb").stat().st_size < counted:
            break
    else:
        pytest.fail("no transaction left a file shorter than its header counts")
    Store(path).close()
