"""`kimberley demo`: the whole single-log cycle in a scratch directory, printed as it goes.

init a Botswana node, record production and an export, sign a checkpoint, prove one
entry's inclusion and the log's consistency, check both proofs as an outsider would
(with only the verifier key), and replay the whole log.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli.output import console
from ledger import merkle
from ledger.checkpoint import TlogProof
from ledger.datadir import DataDir
from ledger.keys import Verifier
from ledger.verify import verify_log

_MINE = {
    "parcel": "BW-JW-2026-0001",
    "mine": "BW-MINE-JWANENG",
    "carats": 1250000,
    "value": 187500000,
    "date": "2026-03-02",
    "origin": "BW",
}


def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="Keep data here.")] = None,
    records: Annotated[int, typer.Option(help="Production records to append.")] = 1000,
) -> None:
    """Run the single-log walk-through: init, append, checkpoint, prove, verify."""
    with tempfile.TemporaryDirectory(prefix="kimberley-demo-") as scratch:
        path = directory or Path(scratch) / "bw"
        node = DataDir.init(path, "BW", "kp.example")
        log = node.own_log()
        console.print(
            f"[bold]1. init[/]  {node.origin} in {path}\n   key {node.signer.verifier.to_text()}"
        )
        first = log.append_many(
            [
                ("parcel.mine", {**_MINE, "parcel": f"BW-JW-2026-{i:06d}"})
                for i in range(records // 2)
            ]
        )
        old_size = first[-1].size
        log.append_many(
            [
                ("parcel.mine", {**_MINE, "parcel": f"BW-JW-2026-{i:06d}"})
                for i in range(records // 2, records)
            ]
        )
        console.print(f"[bold]2. append[/]  {records} parcel.mine records in two durable batches")
        note = log.checkpoint()
        console.print("[bold]3. checkpoint[/]")
        console.out(note.decode(), end="")
        key = Verifier.from_text(node.signer.verifier.to_text())
        cp = log.open_checkpoint(note)
        index = records // 3
        proof = TlogProof(
            index=index,
            hashes=tuple(log.inclusion_proof(index, cp.size)),
            checkpoint=note,
            extra=log.entry(index),
        )
        checked = TlogProof.from_text(proof.to_text()).verify(key)
        console.print(
            f"[bold]4. inclusion[/]  entry {index} proven in the tree of size "
            f"{checked.size} with {len(proof.hashes)} hashes: verified with the key alone"
        )
        old_root = log.root(old_size)
        merkle.verify_consistency(
            old_size, cp.size, old_root, cp.root, log.consistency_proof(old_size, cp.size)
        )
        console.print(
            f"[bold]5. consistency[/]  size {old_size} "
            f"({base64.b64encode(old_root).decode()[:12]}...) is a prefix of size {cp.size}"
        )
        report = verify_log(node.store, key)
        console.print(
            f"[bold]6. verify[/]  replayed {report.size} entries and "
            f"{report.checkpoints} checkpoints: every byte, signature and hash checks out"
        )
        node.close()
