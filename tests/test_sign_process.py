"""Long append batches signed by a signing process: the same bytes, failures leave no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import sign_process
from ledger.chain import Drafter, link
from ledger.datadir import DataDir
from ledger.entry import encode_payload, parse_entry
from ledger.errors import EntryTooLargeError, LogError
from ledger.keys import Signer
from ledger.log import SIGN_PROCESS_MIN, Log
from ledger.verify import verify_log
from tests.conftest import mine_body

BATCH = SIGN_PROCESS_MIN + 3 * sign_process.CHUNK + 7  # several chunks and a ragged end


def fixed_clock() -> int:
    return 1_767_225_600_000


def records(first: int, count: int) -> list[tuple[str, Mapping[str, Any]]]:
    return [("parcel.mine", mine_body(i)) for i in range(first, first + count)]


@given(
    index=st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 1)),
    prev=st.binary(min_size=32, max_size=32),
    kind=st.text(min_size=1, max_size=20),
    body=st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1) | st.text()),
)
def test_a_filled_draft_is_exactly_the_canonical_payload(
    index: int, prev: bytes, kind: str, body: dict[str, Any]
) -> None:
    draft = Drafter("kp.example/BW", index, 1_700_000_000_000).draft(kind, body)
    filled = draft.template[: draft.offset] + prev + draft.template[draft.offset + 32 :]
    assert filled == encode_payload("kp.example/BW", index, prev, 1_700_000_000_000, kind, body)


def test_an_oversized_record_is_refused_before_anything_is_signed() -> None:
    drafter = Drafter("kp.example/BW", 7, 0)
    with pytest.raises(EntryTooLargeError, match="parcel.mine entry 7"):
        drafter.draft("parcel.mine", {"note": "x" * 65_500})
    assert drafter.index == 7


def test_the_signing_process_writes_the_same_bytes_as_signing_in_process(tmp_path: Path) -> None:
    signer = Signer.generate("kp.example/BW")
    logs = []
    for name, use_process in (("here", False), ("child", True)):
        node = DataDir.init(tmp_path / name, "BW", "kp.example")
        log = Log(node.store, signer.verifier, signer, clock=fixed_clock, sign_process=use_process)
        log.append_many(records(0, 5))
        # records stream in: a generator is read as it is signed, not listed first
        log.append_many(record for record in records(5, BATCH))
        logs.append((node, log))
    (_, here), (child_node, child) = logs
    assert list(child.entries()) == list(here.entries())
    assert child.checkpoint() == here.checkpoint()
    assert verify_log(child_node.store, signer.verifier).size == 5 + BATCH
    entry = parse_entry(child.entry(5 + BATCH - 1))
    assert entry.body == mine_body(BATCH + 4)
    for node, _ in logs:
        node.close()


def test_a_rule_failing_late_in_a_long_batch_leaves_the_log_and_the_signer_usable(
    node: DataDir,
) -> None:
    refused: list[int] = []

    def refuse(txn: Any, index: int, kind: str, body: Mapping[str, Any]) -> None:
        if index == BATCH - 2 and not refused:
            refused.append(index)
            raise LogError(f"record {index} refused")

    log = node.own_log(hook=refuse)
    with pytest.raises(LogError, match=f"record {BATCH - 2} refused"):
        log.append_many(records(0, BATCH))
    assert log.size() == 0
    log.append_many(records(0, BATCH - 2))  # the same signing process, still in step
    log.append_many(records(BATCH - 2, 1) * SIGN_PROCESS_MIN)
    assert log.size() == BATCH - 2 + SIGN_PROCESS_MIN
    assert verify_log(node.store, node.signer.verifier).size == log.size()


def test_a_batch_of_large_entries_fills_the_pipes_without_a_deadlock(node: DataDir) -> None:
    big = [("parcel.mine", {**mine_body(i), "note": "x" * 40_000}) for i in range(300)]
    node.own_log().append_many(big)
    assert verify_log(node.store, node.signer.verifier).size == 300


def test_a_signing_process_killed_mid_batch_fails_the_batch_and_the_next_one_restarts_it(
    node: DataDir,
) -> None:
    """The child is killed as the first entry of a batch is filed. The batch is longer than
    the child can have signed ahead by then (its first chunk and DEPTH more), so its end
    needs the dead child: the batch fails whole, and the next batch starts a new child.
    (Killed at entry 150 of a 256-entry batch, the child had at times signed all of it
    already, under load, and the batch rightly went through.)"""
    ahead = sign_process.FIRST_CHUNK + sign_process.DEPTH * sign_process.CHUNK
    batch = 2 * ahead
    killed: list[int] = []

    def kill_the_signer(txn: Any, index: int, kind: str, body: Mapping[str, Any]) -> None:
        if index == SIGN_PROCESS_MIN and not killed:
            pid = sign_process.signing_process(node.signer)._child.pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    log = node.own_log(hook=kill_the_signer)
    log.append_many(records(0, SIGN_PROCESS_MIN))
    with pytest.raises(LogError, match="signing process for kp.example/BW stopped"):
        log.append_many(records(SIGN_PROCESS_MIN, batch))
    assert killed and log.size() == SIGN_PROCESS_MIN
    log.append_many(records(SIGN_PROCESS_MIN, batch))
    assert sign_process.signing_process(node.signer)._child.pid != killed[0]
    assert verify_log(node.store, node.signer.verifier).size == SIGN_PROCESS_MIN + batch


def test_link_chains_every_entry_to_the_leaf_before_it() -> None:
    signer = Signer.generate("kp.example/BW")
    drafter = Drafter("kp.example/BW", 0, 5)
    raws, leaves = link(signer.sign, bytes(32), [drafter.draft("k", {"n": i}) for i in range(3)])
    assert [parse_entry(r).prev for r in raws] == [bytes(32), *leaves[:2]]


def test_the_signing_child_answers_a_malformed_frame_with_one_line_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ledger.sign_process"],
        input=b"\x00\x00\x00\x03abc",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode().startswith("kimberley signing process: ")
    assert b"Traceback" not in done.stderr
