"""`kimberley log ...` and `kimberley proof ...`: the raw log, its checkpoints and proofs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.custody_cmd import open_custody
from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_data, open_reading
from cli.output import console, emit_bytes, emit_json, jsonable, progress_bar
from ledger import merkle
from ledger.checkpoint import TlogProof, open_checkpoint
from ledger.entry import parse_entry
from ledger.errors import EncodingError, LogError, ProofError, RosterError
from ledger.held_logs import held_logs
from ledger.keys import Verifier
from ledger.log import Log
from ledger.note import b64decode_strict
from ledger.records import parse_record
from ledger.verify import verify_log
from ledger.words import counted

log_app = typer.Typer(
    help="The Participant's own log: append, show, checkpoint, verify (show and verify also "
    "any log held, as in an observer's data directory)."
)
proof_app = typer.Typer(help="Inclusion and consistency proofs from the own log.")


def _no_floats(text: str) -> Any:
    raise EncodingError(f"float {text} in --body: use integers (hundredths of a carat, US cents)")


def parse_body(text: str) -> dict[str, Any]:
    """Parse a JSON object for a record body, refusing floats and non-objects."""
    try:
        body = json.loads(text, parse_float=_no_floats)
    except json.JSONDecodeError as e:
        raise EncodingError(f"--body is not valid JSON: {e.msg} at column {e.colno}") from e
    if not isinstance(body, dict):
        raise EncodingError("--body must be a JSON object")
    return body


@log_app.command("append")
def append(
    kind: Annotated[str, typer.Argument(help="Entry kind, e.g. parcel.mine.")],
    body: Annotated[str, typer.Option("--body", help="The record body as a JSON object.")],
    unchecked: Annotated[
        bool,
        typer.Option(
            "--unchecked",
            help="Append it raw, no custody rule checked: for tools and tests only. On a "
            "network the other nodes refuse an entry that breaks a rule and never hold the "
            "log past it.",
        ),
    ] = False,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Append one record, checked against every custody rule under the installed roster
    (as the record commands are); `--unchecked` appends it raw."""
    fields = parse_body(body)
    if unchecked:
        done = open_data(data).own_log().append(kind, fields)
    else:
        try:
            custody = open_custody(data)
        except RosterError as e:
            raise RosterError(f"{e}: the custody rules need it (or append --unchecked)") from e
        done = custody.append(parse_record(kind, fields))
    if as_json:
        emit_json({"index": done.index, "leaf_hash": done.leaf_hash, "size": done.size})
    else:
        console.print(f"appended {kind} at index {done.index} (log size {done.size})")


OriginOption = Annotated[
    str | None,
    typer.Option(
        "--origin",
        help="A log held here: kp.example/BW, or BW (default: the own log; in an "
        "observer's data directory, every log held).",
    ),
]


def _summary(log: Log) -> dict[str, Any]:
    head = log.head()
    return {
        "origin": log.origin,
        "size": head.size,
        "root": base64.b64encode(log.root(head.size)).decode(),
        "key": log.verifier.to_text(),
    }


@log_app.command("show")
def show(
    index: Annotated[
        int | None, typer.Argument(help="Entry index; omit for the log summary.")
    ] = None,
    origin: OriginOption = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Show the log summary, or one entry decoded (of the own log, or --origin's).

    --json prints one object for one log (a Participant's own, or --origin's), and a list
    of objects, one per log held, in an observer's data directory without --origin."""
    logs, one = held_logs(open_reading(data), data, origin)
    if index is None:
        summaries = [_summary(log) for log in logs]
        if as_json:
            emit_json(summaries[0] if one else summaries)
            return
        if not summaries:
            console.print(f"no logs held in {data} yet (run `kimberley sync`)")
        for n, summary in enumerate(summaries):
            if n:
                console.print()
            for name, value in summary.items():
                console.print(f"[bold]{name:>6}[/] {value}")
        return
    if len(logs) != 1:
        held = ", ".join(log.origin for log in logs) or "none"
        raise LogError(f"name the log of entry {index} with --origin (held here: {held})")
    entry = parse_entry(logs[0].entry(index))
    shown = {
        "origin": entry.origin,
        "index": entry.index,
        "kind": entry.kind,
        "time_ms": entry.time_ms,
        "prev": entry.prev,
        "body": entry.body,
    }
    if as_json:
        emit_json(shown)
        return
    table = Table(title=f"{entry.origin} entry {entry.index}", show_header=False)
    for name, value in jsonable(shown).items():
        table.add_row(name, json.dumps(value, indent=1) if isinstance(value, dict) else str(value))
    console.print(table)


@log_app.command("checkpoint")
def checkpoint(
    sign: Annotated[bool, typer.Option("--sign", help="Sign a fresh checkpoint first.")] = False,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Print the latest signed checkpoint (a C2SP tlog-checkpoint note)."""
    log = open_data(data).own_log()
    note = log.sign_checkpoint() if sign else log.checkpoint()
    if as_json:
        cp = log.open_checkpoint(note)
        emit_json(
            {
                "origin": cp.origin,
                "size": cp.size,
                "root": base64.b64encode(cp.root).decode(),
                "note": note.decode(),
            }
        )
    else:
        emit_bytes(note)


@log_app.command("key")
def key(data: DataOption = DEFAULT_DATA, as_json: JsonOption = False) -> None:
    """Print this data directory's verifier key (C2SP signed-note vkey): the log's, or in
    an observer's data directory the observer's (for the roster draft)."""
    text = open_reading(data).signer.verifier.to_text()
    if as_json:
        emit_json({"key": text})
    else:
        console.out(text)


@log_app.command("verify")
def verify(
    origin: OriginOption = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
    threads: Annotated[
        int | None, typer.Option(min=0, help="Signature threads (default, or 0: one per core).")
    ] = None,
) -> None:
    """Replay the log from index 0 and re-check every byte, signature, hash and checkpoint
    (the own log, or --origin's; in an observer's data directory, every log held).

    --json prints one object for one log, and a list of objects in an observer's data
    directory without --origin (as `log show`)."""
    logs, one = held_logs(open_reading(data), data, origin)
    results = [_verify_one(log, threads, as_json) for log in logs]
    if as_json:
        emit_json(results[0] if one else results)
        return
    if not results:
        console.print(f"no logs held in {data} yet (run `kimberley sync`)")
    for result in results:
        console.print(
            f"{result['origin']}: {counted(result['size'], 'entry', 'entries')} and "
            f"{counted(result['checkpoints'], 'checkpoint')} verified, root {result['root']}"
        )


def _verify_one(log: Log, threads: int | None, as_json: bool) -> dict[str, Any]:
    """Replay one log with a progress bar; its verified summary (IntegrityError if not)."""
    size = log.size()
    with progress_bar("verifying", size, enabled=not as_json) as bar:
        task = bar.add_task(f"verifying {log.origin}", total=size)
        report = verify_log(
            log.store,
            log.verifier,
            threads=threads,
            progress=lambda n: bar.update(task, completed=n),
        )
    return {
        "origin": report.origin,
        "size": report.size,
        "ok": True,
        "root": base64.b64encode(report.root).decode(),
        "checkpoints": report.checkpoints,
    }


@proof_app.command("inclusion")
def inclusion(
    index: Annotated[int, typer.Argument(help="Index of the entry to prove.")],
    size: Annotated[
        int | None, typer.Option(help="Tree size (default: latest checkpoint).")
    ] = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Print a C2SP tlog-proof@v1 for one entry, with the entry in `extra`."""
    proof = open_data(data).own_log().entry_proof(index, size)
    emit_bytes(proof.to_text().encode())


@proof_app.command("consistency")
def consistency(
    old: Annotated[int, typer.Argument(help="The older tree size.")],
    new: Annotated[int, typer.Argument(help="The newer tree size.")],
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Print an RFC 9162 consistency proof, one base64 hash per line (empty for equal sizes)."""
    if old == 0 and new > 0:  # as `proof verify-consistency` and RFC 9162 would refuse it
        raise ProofError(
            f"consistency from size 0 to size {new}: the empty tree is a prefix of every tree, "
            "so there is nothing to prove (give an older size of at least 1)"
        )
    log = open_data(data).own_log()
    for digest in log.consistency_proof(old, new):
        console.out(base64.b64encode(digest).decode())


def read_key(text: str) -> Verifier:
    """A verifier key given inline or as the path of a file holding it."""
    path = Path(text)
    return Verifier.from_text(path.read_text() if path.is_file() else text)


@proof_app.command("verify")
def verify_proof(
    proof_file: Annotated[Path, typer.Argument(help="A tlog-proof@v1 file.")],
    key: Annotated[str, typer.Option(help="The log's verifier key, or a file holding it.")],
    as_json: JsonOption = False,
) -> None:
    """Check a tlog-proof offline: the checkpoint signature and the entry's inclusion."""
    proof = TlogProof.from_text(proof_file.read_text())
    cp = proof.verify(read_key(key))
    if as_json:
        emit_json({"ok": True, "origin": cp.origin, "index": proof.index, "size": cp.size})
    else:
        console.print(f"ok: entry {proof.index} is in {cp.origin} at size {cp.size}")


@proof_app.command("verify-consistency")
def verify_consistency(
    old: Annotated[int, typer.Argument(help="The older tree size.")],
    old_root: Annotated[str, typer.Argument(help="Base64 root at the older size.")],
    new_checkpoint: Annotated[Path, typer.Argument(help="The newer signed checkpoint file.")],
    proof_file: Annotated[Path, typer.Argument(help="Consistency proof: base64 hash per line.")],
    key: Annotated[str, typer.Option(help="The log's verifier key, or a file holding it.")],
) -> None:
    """Check offline that a newer checkpoint extends an older tree (the log did not fork)."""
    cp, _ = open_checkpoint(new_checkpoint.read_bytes(), read_key(key))
    hashes = [b64decode_strict(line, "proof hash") for line in proof_file.read_text().split()]
    merkle.verify_consistency(old, cp.size, b64decode_strict(old_root, "old root"), cp.root, hashes)
    console.print(f"ok: size {old} is a prefix of {cp.origin} at size {cp.size}")
