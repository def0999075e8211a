"""Four real nodes on 127.0.0.1 replicate and witness each other while a trade happens.

Botswana and Russia export to the EU, Antwerp mixes the two parcels and re-exports to India.
No proof file changes hands: each importer proves the certificate from the exporter's log as
its node synced it. At the end every node holds every log at the same checkpoint, every
node's checkpoint carries other Participants' cosignatures, and Botswana sees its certificate
confirmed in the EU's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ledger.checkpoint import Checkpoint, witnessed_by
from ledger.keys import Verifier, load_signer
from ledger.note import Note
from node.auth import SignatureAuth
from node.local import LocalNodes, free_port
from tests.test_custody_cli import PARTICIPANTS, _actor, _export, _mine, cli, init_network

NET = "kp.example"
#: Seconds between a node's sync-and-witness rounds.
ROUND = 0.3
#: How long the network may take to converge after each step.
CONVERGE_SECONDS = 60.0


def wait_until(what: str, done: Callable[[], bool]) -> None:
    """Poll `done` until it holds; fail naming `what` after CONVERGE_SECONDS."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sizes(base: str) -> dict[str, int]:
    """Each log's size as the node at `base` holds it (health is open to anyone)."""
    logs: dict[str, int] = httpx.get(f"{base}/health", timeout=5, trust_env=False).json()["logs"]
    return logs


def served_checkpoint(
    client: httpx.Client, base: str, origin: str
) -> tuple[Checkpoint, Note] | None:
    """The checkpoint a node serves for `origin`, or None if it serves none."""
    response = client.get(f"{base}/{origin}/checkpoint")
    if response.status_code != 200:
        return None
    note = Note.from_bytes(response.content)
    return Checkpoint.parse(note.text), note


@pytest.fixture
def nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, str]]:
    """BW, RU, EU and IN, each a data directory served by a running node that syncs."""
    ports = {code: free_port() for code in PARTICIPANTS}
    urls = {code: f"http://127.0.0.1:{port}" for code, port in ports.items()}
    dirs = init_network(tmp_path, capsys, urls)
    running = LocalNodes(
        {code: Path(path) for code, path in dirs.items()},
        ports,
        sync_every=ROUND,
        log_dir=tmp_path / "logs",
    )
    with running:
        yield {f"data:{c}": d for c, d in dirs.items()} | {f"url:{c}": running.url(c) for c in dirs}


def holds(nodes: dict[str, str], code: str, origin_code: str, size: int) -> Callable[[], bool]:
    """True once `code`'s node holds at least `size` entries of `origin_code`'s log."""
    origin = f"{NET}/{origin_code}"
    return lambda: sizes(nodes[f"url:{code}"]).get(origin, 0) >= size


def own_size(nodes: dict[str, str], code: str) -> int:
    """The size of `code`'s own log as its node serves it."""
    return sizes(nodes[f"url:{code}"])[f"{NET}/{code}"]


def test_four_nodes_trade_replicate_witness_and_converge(
    nodes: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    bw, ru, eu, india = (nodes[f"data:{c}"] for c in ("BW", "RU", "EU", "IN"))
    for data, actors in (
        (bw, [("MINE-1", "mine"), ("EXP-1", "exporter")]),
        (ru, [("MINE-R", "mine"), ("EXP-R", "exporter")]),
        (eu, [("IMP-1", "importer"), ("EXP-1", "exporter")]),
        (india, [("IMP-1", "importer")]),
    ):
        for actor, role in actors:
            _actor(capsys, data, actor, role)
    _mine(capsys, bw, "P1", "MINE-1", "1000.00", "1500000", "2026-03-01", "BW")
    _mine(capsys, ru, "R1", "MINE-R", "400.00", "480000", "2026-03-02", "RU")
    _export(capsys, bw, "BW-2026-000001", "EXP-1", "EU", ["P1"], "1500000", str(tmp_path / "a"))
    _export(capsys, ru, "RU-2026-000001", "EXP-R", "EU", ["R1"], "480000", str(tmp_path / "b"))

    # The EU proves both certificates from the logs its node pulled: no file changes hands.
    wait_until("EU to hold BW's export", holds(nodes, "EU", "BW", own_size(nodes, "BW")))
    wait_until("EU to hold RU's export", holds(nodes, "EU", "RU", own_size(nodes, "RU")))
    for cert in ("BW-2026-000001", "RU-2026-000001"):
        cli(capsys, "import", "--certificate", cert, "--importer", "IMP-1",
            "--received", "2026-03-07", "--data", eu)  # fmt: skip
    cli(capsys, "merge", "BW-2026-000001", "RU-2026-000001", "--into", "MIX-1",
        "--value-usd", "2100000", "--data", eu)  # fmt: skip
    _export(capsys, eu, "EU-2026-000001", "EXP-1", "IN", ["MIX-1"], "2300000", str(tmp_path / "c"))

    wait_until("IN to hold the EU's export", holds(nodes, "IN", "EU", own_size(nodes, "EU")))
    cli(capsys, "import", "--certificate", "EU-2026-000001", "--importer", "IMP-1",
        "--received", "2026-03-09", "--data", india)  # fmt: skip
    got = json.loads(cli(capsys, "parcel", "show", "EU-2026-000001", "--json", "--data", india))
    assert (got["carats"], got["origins"]) == (1400_00, ["BW", "RU"])

    # Convergence: every node serves every log at the owner's checkpoint (size and root).
    # Reads are for roster members only: this client signs as India.
    member = load_signer(Path(india) / "log.key")
    client = httpx.Client(auth=SignatureAuth(member), timeout=5, trust_env=False)
    request.addfinalizer(client.close)
    codes = list(PARTICIPANTS)
    final = {c: own_size(nodes, c) for c in codes}

    def converged() -> bool:
        for owner in codes:
            origin = f"{NET}/{owner}"
            want = served_checkpoint(client, nodes[f"url:{owner}"], origin)
            assert want is not None and want[0].size == final[owner]
            for holder in codes:
                seen = served_checkpoint(client, nodes[f"url:{holder}"], origin)
                if seen is None or (seen[0].size, seen[0].root) != (want[0].size, want[0].root):
                    return False
        return True

    wait_until("every node to serve every log at the same checkpoint", converged)

    # Witnessing: each node's newest checkpoint is cosigned by the three other Participants.
    witnesses = {c: Verifier.from_text(k) for c, k in _keys(nodes, capsys).items()}

    def cosigned(owner: str) -> Callable[[], bool]:
        def check() -> bool:
            served = served_checkpoint(client, nodes[f"url:{owner}"], f"{NET}/{owner}")
            assert served is not None
            others = [witnesses[c].as_cosigner() for c in codes if c != owner]
            return len(witnessed_by(served[1], served[0], others)) == len(others)

        return check

    for owner in codes:
        wait_until(f"{owner}'s checkpoint to be cosigned by all", cosigned(owner))

    # Cross-verify: Botswana sees its certificate confirmed in the EU's log as synced.
    shown = json.loads(cli(capsys, "certificate", "show", "BW-2026-000001", "--json", "--data", bw))
    assert shown["confirmation"] == "confirmed"
    assert shown["confirmed_by"] == f"{NET}/EU entry 2"
    # ... and says so once: not `awaiting` (its own log's view) beside it
    assert (shown["status"], shown["import_index"]) == ("confirmed", 2)
    # ... while the EU's own export to India is confirmed by India's import.
    shown = json.loads(cli(capsys, "certificate", "show", "EU-2026-000001", "--json", "--data", eu))
    assert shown["confirmation"] == "confirmed"


def _keys(nodes: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    return {
        c: cli(capsys, "log", "key", "--data", nodes[f"data:{c}"]).strip()
        for c in ("BW", "RU", "EU", "IN")
    }
