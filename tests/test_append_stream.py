"""Bulk appends in durable batches: the same log as batch by batch, and each failure
keeps exactly the batches committed before it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import EncodingError, LogError
from ledger.keys import Signer
from ledger.log import SIGN_PROCESS_MIN, EntryHook, Log
from ledger.records import Record as CustodyRecord
from ledger.rules import DuplicateParcel
from ledger.verify import verify_log
from tests.conftest import mine_body
from tests.test_rules import COUNTRIES, NET, mined, roster_of, setup_records

BATCH = SIGN_PROCESS_MIN + 50
Record = tuple[str, Mapping[str, Any]]


def fixed_clock() -> int:
    return 1_767_225_600_000


def records(first: int, count: int) -> Iterator[Record]:
    return (("parcel.mine", mine_body(i)) for i in range(first, first + count))


def test_a_stream_writes_the_log_and_checkpoints_of_appending_batch_by_batch(
    tmp_path: Path,
) -> None:
    signer = Signer.generate("kp.example/BW")
    count = 3 * BATCH + 17
    stream_node = DataDir.init(tmp_path / "stream", "BW", "kp.example")
    streamed = Log(stream_node.store, signer.verifier, signer, clock=fixed_clock)
    acks = list(streamed.append_stream(records(0, count), batch=BATCH))
    batch_node = DataDir.init(tmp_path / "batches", "BW", "kp.example")
    batched = Log(batch_node.store, signer.verifier, signer, clock=fixed_clock)
    for first in range(0, count, BATCH):
        batched.append_many(records(first, min(BATCH, count - first)))

    # each batch is acknowledged with its indexes and the tree size it committed
    assert [len(a) for a in acks] == [BATCH, BATCH, BATCH, 17]
    assert [a.index for ack in acks for a in ack] == list(range(count))
    assert [ack[-1].size for ack in acks] == [BATCH, 2 * BATCH, 3 * BATCH, count]
    assert list(streamed.entries()) == list(batched.entries())
    assert list(streamed.checkpoints()) == list(batched.checkpoints())
    assert verify_log(stream_node.store, signer.verifier).size == count
    stream_node.close()
    batch_node.close()


def test_a_bad_record_fails_its_own_batch_after_the_earlier_batches_committed(
    node: DataDir,
) -> None:
    log = node.own_log()
    bad = 2 * BATCH + 5

    def with_a_float() -> Iterator[Record]:
        for kind, body in records(0, 3 * BATCH):
            yield (
                kind,
                {**body, "carats": 1.5} if body["parcel"] == mine_body(bad)["parcel"] else body,
            )

    with pytest.raises(EncodingError, match="float"):
        for _ in log.append_stream(with_a_float(), batch=BATCH):
            pass
    assert log.size() == 2 * BATCH
    # the signing process is still in step: the stream goes on from the good records
    list(log.append_stream(records(2 * BATCH, BATCH), batch=BATCH))
    assert verify_log(node.store, node.signer.verifier).size == 3 * BATCH


def no_rules(txn: Any, index: int, kind: str, body: Mapping[str, Any]) -> None:
    """An entry hook that allows everything: the batch-by-batch path of a log with rules."""


@pytest.mark.parametrize("hook", [None, no_rules], ids=["overlapped", "batch-by-batch"])
def test_records_that_raise_exactly_at_a_batch_boundary_keep_every_earlier_batch(
    node: DataDir, hook: EntryHook | None
) -> None:
    def broken_source() -> Iterator[Record]:
        yield from records(0, 2 * BATCH)
        raise OSError("the national register went away")

    log = node.own_log(hook=hook)
    acked = 0
    with pytest.raises(OSError, match="national register"):
        for ack in log.append_stream(broken_source(), batch=BATCH):
            acked += len(ack)
    assert acked == log.size() == 2 * BATCH
    assert verify_log(node.store, node.signer.verifier).size == 2 * BATCH


def test_stopping_a_stream_early_keeps_exactly_the_batches_it_yielded(node: DataDir) -> None:
    log = node.own_log()
    stream = log.append_stream(records(0, 5 * BATCH), batch=BATCH)
    first = next(stream)
    stream.close()
    assert log.size() == len(first) == BATCH
    log.append_many(records(BATCH, SIGN_PROCESS_MIN))  # the signer is in step
    assert verify_log(node.store, node.signer.verifier).size == BATCH + SIGN_PROCESS_MIN


def test_another_writer_appending_mid_stream_stops_the_stream_without_a_fork(
    node: DataDir,
) -> None:
    log = node.own_log()
    stream = log.append_stream(records(0, 4 * BATCH), batch=BATCH)
    next(stream)
    other = node.own_log()  # e.g. `kimberley mine` on the same data directory
    other.append("parcel.mine", mine_body(10**6))
    with pytest.raises(LogError, match="another writer appended"):
        next(stream)
    assert log.size() == BATCH + 1
    assert verify_log(node.store, node.signer.verifier).size == BATCH + 1


def test_a_log_with_rules_streams_each_batch_through_them(node: DataDir) -> None:
    seen: list[int] = []

    def rules(txn: Any, index: int, kind: str, body: Mapping[str, Any]) -> None:
        if index == BATCH + 3:
            raise LogError(f"record {index} breaks a rule")
        seen.append(index)

    log = node.own_log(hook=rules)
    with pytest.raises(LogError, match=f"record {BATCH + 3} breaks a rule"):
        list(log.append_stream(records(0, 3 * BATCH), batch=BATCH))
    assert log.size() == BATCH
    assert seen[:BATCH] == list(range(BATCH))


def test_a_batch_size_below_one_is_refused(node: DataDir) -> None:
    with pytest.raises(LogError, match="batch size 0"):
        next(node.own_log().append_stream(records(0, 1), batch=0))


@pytest.fixture
def bw(tmp_path: Path) -> Iterator[Custody]:
    """Botswana's custody engine with its actors registered, in a network of five."""
    nodes = {code: DataDir.init(tmp_path / code, code, NET) for code in COUNTRIES}
    custody = Custody(nodes["BW"], roster_of(nodes))
    custody.append_many(setup_records())
    yield custody
    for node in nodes.values():
        node.close()


def test_a_custody_stream_commits_each_batch_through_the_rules_and_stops_at_a_breach(
    bw: Custody,
) -> None:
    """The rules see each batch of a bulk load; a parcel mined twice fails its own batch,
    and the batches before it stay, indexes and all, as a fresh replay has them."""
    before = bw.log.size()

    def production() -> Iterator[CustodyRecord]:
        for n in range(3 * BATCH):
            yield mined(f"BULK-{n:05d}", 1_00)
        yield mined("BULK-00007", 1_00)  # already mined in the first batch

    acked = 0
    with pytest.raises(DuplicateParcel, match="BULK-00007"):
        for ack in bw.append_stream(production(), batch=BATCH):
            acked += len(ack)
    assert acked == bw.log.size() - before == 3 * BATCH
    assert bw.parcel("BULK-00007") is not None and bw.parcel(f"BULK-{3 * BATCH - 1:05d}")
    assert bw.stored_indexes() == bw.replay_indexes()


def test_an_append_while_a_custody_stream_is_open_stops_the_stream(bw: Custody) -> None:
    """The stream's next batch is already chained to its last one, so an append in between
    stops it with an error; its committed batch and the interleaved record stay, and the
    indexes still equal a replay of the log."""
    before = bw.log.size()
    stream = bw.append_stream((mined(f"MID-{n:05d}", 1_00) for n in range(3 * BATCH)), batch=BATCH)
    assert len(next(stream)) == BATCH
    bw.append(mined("BETWEEN", 1_00))
    with pytest.raises(LogError, match="another writer appended"):
        next(stream)
    assert bw.log.size() == before + BATCH + 1
    assert bw.parcel("BETWEEN") is not None and bw.parcel(f"MID-{BATCH:05d}") is None
    assert bw.stored_indexes() == bw.replay_indexes()
    assert verify_log(bw.store, bw.node.signer.verifier).size == before + BATCH + 1
