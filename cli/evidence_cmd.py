"""`kimberley evidence ...`: equivocation evidence this node holds, and the logs it froze.

`verify` needs no data directory: anyone holding an evidence file and the log's verifier
key can check that the log signed two histories.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.log_cmd import read_key
from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_reading
from cli.output import console, emit_json, jsonable
from ledger import freeze
from ledger.entry import parse_entry
from ledger.errors import LedgerError, LogError
from ledger.evidence import MAX_EVIDENCE_SIZE, Evidence, EvidenceError, LeafFork, verify_evidence
from ledger.held_logs import resolve_origin
from ledger.log import wall_clock_ms

evidence_app = typer.Typer(help="Equivocation evidence and the logs frozen on this node.")

EvidenceId = Annotated[str, typer.Argument(help="Evidence id, or a unique prefix of it.")]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary(evidence: Evidence) -> dict[str, Any]:
    """What the evidence says: kind, whether it proves anything, both checkpoints, the leaf."""
    a, b = evidence.checkpoints()
    out: dict[str, Any] = {
        "origin": evidence.origin,
        "kind": evidence.kind,
        "proven": evidence.proven,
        "checkpoints": [{"size": cp.size, "root": cp.root.hex()} for cp in (a, b)],
    }
    if isinstance(evidence.detail, LeafFork):
        out["index"] = evidence.detail.index
        out["entries"] = [_entry(e) for e in (evidence.detail.entry_a, evidence.detail.entry_b)]
    return out


def _entry(raw: bytes) -> dict[str, Any]:
    try:
        entry = parse_entry(raw)
    except LedgerError as e:
        return {"bytes": len(raw), "undecodable": str(e)}
    return {"index": entry.index, "kind": entry.kind, "time_ms": entry.time_ms, "body": entry.body}


def _record_json(record: freeze.EvidenceRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "source": record.source,
        "recorded": _when(record.recorded_ms),
        **_summary(record.evidence()),
    }


@evidence_app.command("list")
def list_evidence(data: DataOption = DEFAULT_DATA, as_json: JsonOption = False) -> None:
    """Every piece of evidence held here, and the origins frozen now."""
    node = open_reading(data)
    with node.store.read() as txn:
        held = freeze.records(node.store, txn)
        frozen = {
            o: freeze.frozen_by(node.store, txn, o) for o in freeze.frozen_origins(node.store, txn)
        }
    if as_json:
        emit_json(
            {
                "evidence": [_record_json(r) for r in held],
                "frozen": [
                    {"origin": o, "since": _when(e.time_ms), "evidence": e.evidence}
                    for o, e in frozen.items()
                    if e is not None
                ],
            }
        )
        return
    if not held:
        console.print("no equivocation evidence on this node")
    else:
        table = Table("id", "origin", "kind", "sizes", "recorded", "seen by")
        for r in held:
            a, b = r.evidence().checkpoints()
            table.add_row(
                r.id[:16], r.origin, r.kind, f"{a.size} / {b.size}", _when(r.recorded_ms), r.source
            )
        console.print(table)
    for origin, event in frozen.items():
        if event is not None:
            console.print(
                f"frozen: {origin} since {_when(event.time_ms)} (evidence {event.evidence[:16]})"
            )


@evidence_app.command("show")
def show(
    evidence_id: EvidenceId, data: DataOption = DEFAULT_DATA, as_json: JsonOption = False
) -> None:
    """One piece of evidence: both checkpoints, the entry that differs, the origin's freezes."""
    node = open_reading(data)
    with node.store.read() as txn:
        record = freeze.find(node.store, txn, evidence_id)
        events = freeze.history(node.store, txn, record.origin)
    shown = _record_json(record)
    shown["freezes"] = [
        {
            "action": e.action,
            "time": _when(e.time_ms),
            "evidence": e.evidence,
            "by": e.by,
            "reason": e.reason,
        }
        for e in events
    ]
    if as_json:
        emit_json(shown)
        return
    verdict = "proves equivocation" if shown["proven"] else "does NOT prove equivocation"
    console.print(f"evidence {record.id}\n{record.origin}: {record.kind}, {verdict}")
    console.print(f"seen by {record.source} at {shown['recorded']}")
    for name, cp in zip(("first ", "second"), shown["checkpoints"], strict=True):
        console.print(f"{name} checkpoint: size {cp['size']}, root {cp['root']}")
    if "index" in shown:
        for name, entry in zip(("first ", "second"), shown["entries"], strict=True):
            text = json.dumps(jsonable(entry), sort_keys=True)
            console.print(f"{name} entry {shown['index']}: {text}")
    for e in shown["freezes"]:
        who = f" by {e['by']}: {e['reason']}" if e["action"] == "unfrozen" else ""
        console.print(f"{e['action']} at {e['time']}{who}")


@evidence_app.command("export")
def export(
    evidence_id: EvidenceId,
    file: Annotated[Path, typer.Argument(help="Write the evidence file here.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Write one piece of evidence as a file anyone can check with the log's key (a new
    file: one already there is not overwritten)."""
    node = open_reading(data)
    with node.store.read() as txn:
        record = freeze.find(node.store, txn, evidence_id)
    try:
        out = file.open("xb")  # never over a file already there (earlier evidence)
    except FileExistsError:
        raise EvidenceError(f"{file} exists already; choose another file name") from None
    except OSError as e:
        raise EvidenceError(f"cannot write {file}: {e.strerror}") from None
    try:
        with out:  # a full disk may only show when the file is closed
            out.write(record.data)
    except OSError as e:
        file.unlink(missing_ok=True)  # this call made it: no half-written evidence left
        raise EvidenceError(f"cannot write {file}: {e.strerror}") from None
    if as_json:
        emit_json({"id": record.id, "file": str(file), "bytes": len(record.data)})
    else:
        console.print(f"wrote {record.kind} evidence about {record.origin} to {file}")


@evidence_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="An evidence file.")],
    key: Annotated[str, typer.Option(help="The log's verifier key, or a file holding it.")],
    as_json: JsonOption = False,
) -> None:
    """Check an evidence file with only the log's key: did the log sign two histories?"""
    try:
        with file.open("rb") as f:
            data = f.read(MAX_EVIDENCE_SIZE + 1)
    except OSError as e:
        raise EvidenceError(f"cannot read {file}: {e.strerror}") from None
    evidence = verify_evidence(data, read_key(key))
    if not evidence.proven:
        raise EvidenceError(
            f"{file}: {evidence.origin} {evidence.kind}: both checkpoints are validly signed, "
            "but the failed proof may just be wrong; this is not a proof of equivocation"
        )
    summary = _summary(evidence)
    if as_json:
        emit_json({"id": evidence.id, "valid": True, **summary})
        return
    a, b = summary["checkpoints"]
    where = f", entry {summary['index']} differs" if "index" in summary else ""
    console.print(
        f"valid: {evidence.origin} signed two histories ({evidence.kind}: sizes "
        f"{a['size']} and {b['size']}{where})"
    )


@evidence_app.command("unfreeze")
def unfreeze(
    origin: Annotated[str, typer.Argument(help="The frozen log's origin, e.g. kp.example/BW.")],
    reason: Annotated[str, typer.Option(help="Why the operator lifts the freeze (recorded).")],
    by: Annotated[str | None, typer.Option(help="Operator's name (default: the OS user).")] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Let sync and the witness take an origin again; the evidence is kept. The origin may
    be given as `kp.example/BW` or `BW`, as elsewhere."""
    node = open_reading(data)
    operator = by or _os_user()
    with node.store.write() as txn:
        frozen = freeze.frozen_origins(node.store, txn)
        try:
            origin = resolve_origin(frozen, origin)
        except LogError:
            listed = ", ".join(frozen) or "none"
            raise LogError(f"{origin} is not frozen on this node (frozen: {listed})") from None
        event = freeze.unfreeze(
            node.store, txn, origin, by=operator, reason=reason, now_ms=wall_clock_ms()
        )
    if as_json:
        emit_json(
            {"origin": origin, "by": event.by, "reason": event.reason, "time": _when(event.time_ms)}
        )
    else:
        console.print(f"unfroze {origin} ({event.by}: {event.reason}); its evidence is kept")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
