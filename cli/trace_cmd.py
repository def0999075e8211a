"""`kimberley trace` and `kimberley verify-bundle`: provenance across logs, and its offline proof.

A trace prints as a tree for people (`--json` for scripts, `--dot` for Graphviz); carats are
computed exactly (`ledger.trace`) and rounded only here, to hundredths of a carat.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_reading
from cli.output import CommandFailed, console, emit_json, errors, read_bounded
from cli.roster_cmd import not_a_draft
from ledger.bundle import MAX_BUNDLE_SIZE, BundleError, VerifiedBundle, build_bundle, verify_bundle
from ledger.errors import LedgerError
from ledger.fields import certificate_problem
from ledger.observer_dir import ObserverDir
from ledger.quantities import format_carats
from ledger.roster import MAX_ROSTER_SIZE, Roster
from ledger.roster_files import roster_chain
from ledger.trace import (
    ABSENT_REASONS,
    BACKWARD,
    CERTIFICATE,
    ENDS,
    FORWARD,
    FROZEN_ORIGIN,
    PARCEL,
    UNKNOWN_PARCEL,
    VERIFIED,
    Absent,
    Edge,
    Node,
    NodeKey,
    Start,
    Trace,
    TraceError,
    trace,
)
from ledger.trace_store import StoreTraceReader, installed_roster, open_reader
from ledger.words import counted

#: Statuses, ends and break reasons that rest on a reader's answer that something is absent
#: (or an origin frozen), not on an entry: in a verified bundle, the builder's declarations.
#: (HASH_MISMATCH and EXPORT_MISMATCH the walk finds in proved entries itself.)
DECLARED_REASONS = frozenset((*ABSENT_REASONS, FROZEN_ORIGIN))

Ident = Annotated[str, typer.Argument(metavar="PARCEL_ID|CERT_NO", help="What to trace.")]
Dot = Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT.")]
Witnesses = Annotated[
    int,
    typer.Option(
        "--witnesses",
        min=0,
        help="Witness policy: cosignatures each checkpoint needs from roster Participants "
        "other than its log's own (0: the log's signature alone).",
    ),
]


class OutputChoiceError(LedgerError):
    """Two output formats asked for at once."""


def trace_command(
    ident: Ident,
    forward: Annotated[
        bool, typer.Option("--forward", help="Where the goods went (default: where from).")
    ] = False,
    origin: Annotated[
        str | None,
        typer.Option(
            "--origin",
            help="The parcel's log, if on several: a Participant code (IN) or origin "
            "(kp.example/IN).",
        ),
    ] = None,
    dot: Dot = False,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Also write an offline proof bundle here.")
    ] = None,
    witnesses: Witnesses = 1,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Trace a parcel or certificate across every log held here, to its mines or onwards.

    Exit status: 0 when the trace is complete, 1 when it has breaks (it is printed either
    way), 2 when it cannot run (the error line says why).
    """
    try:
        complete = _trace(ident, forward, origin, dot, bundle, witnesses, data, as_json)
    except LedgerError as e:
        raise CommandFailed(str(e), CANNOT_TRACE) from e
    if not complete:
        raise typer.Exit(1)


#: The exit status of `trace` and `verify-bundle` when they cannot run: 1 means breaks.
CANNOT_TRACE = 2


def _trace(
    ident: str,
    forward: bool,
    origin: str | None,
    dot: bool,
    bundle: Path | None,
    witnesses: int,
    data: Path,
    as_json: bool,
) -> bool:
    """Run and print the trace; whether it is complete."""
    _one_format(as_json, dot)
    node = open_reading(data)
    if isinstance(node, ObserverDir) and node.verbatim:
        raise TraceError(
            f"{data} holds its logs verbatim (pulled without the custody rules, as the demo's "
            "auditor copy is): nothing is indexed to trace through; `kimberley audit` and "
            "`stats` read it, and an observer's own synced directory traces"
        )
    direction = FORWARD if forward else BACKWARD
    with open_reader(node.store, node.network) as reader:
        start, notes = _start(reader, ident, origin, installed_roster(node.store))
        if bundle is None:
            result = trace(reader, start, direction)
        else:
            result, made = build_bundle(
                reader, start, direction, roster_chain(data), witnesses=witnesses
            )
            _write(bundle, made)
    if as_json:
        doc = trace_json(result) | {"notes": notes}
        if bundle is not None:
            doc["bundle"] = {
                "file": str(bundle),
                "bytes": len(made),
                "entries": len(result.entries),
            }
        emit_json(doc)
        return result.complete
    if dot:
        _print_dot(result)
    else:
        show_trace(result)
    for note in notes:  # DOT keeps stdout a graph: its notes go to stderr
        (errors if dot else console).print(f"note: {note}", markup=False, soft_wrap=True)
    if bundle is not None and not dot:
        console.print(
            f"proof bundle: {bundle} ({counted(len(made), 'byte')}, "
            f"{counted(len(result.entries), 'entry', 'entries')}); "
            f"check it with `kimberley verify-bundle {bundle} --trust ROSTER_V1`"
        )
    return result.complete


def _start(
    reader: StoreTraceReader, ident: str, origin: str | None, roster: Roster | None
) -> tuple[Start, list[str]]:
    """What `ident` names (on the log `origin` names, if given), and notes for the user on
    what else it names; a name that can only be a slip is refused."""
    if origin is None:
        start = reader.resolve(ident)
        return start, other_readings(reader, start)
    _check_origin(reader, origin, roster)
    start = reader.resolve(ident, origin)
    if start.kind == PARCEL and certificate_problem(ident) is None:
        made = reader.creator(start.origin, ident)
        if isinstance(made, Absent) and made.reason == UNKNOWN_PARCEL:
            code = start.origin.rpartition("/")[2]
            logs = [o.rpartition("/")[2] for o in reader.parcel_logs(ident)]
            goods = f", or the parcel of that id with --origin {' or '.join(logs)}"
            raise TraceError(
                f"no parcel {ident!r} on {code}'s log; {ident} is a certificate number: "
                f"trace the certificate without --origin{goods if logs else ''}"
            )
    return start, []


def _check_origin(reader: StoreTraceReader, name: str, roster: Roster | None) -> None:
    """Refuse an --origin that names no log held here and no Participant of the roster
    installed here: it can only be a typing slip, and tracing it would call anything a
    parcel that is not on that log."""
    origin = reader.origin_of(name)
    if origin in reader.origins() or (roster is not None and roster.by_origin(origin)):
        return
    code = origin.rpartition("/")[2]
    listed = "none is installed"
    if roster is not None:
        listed = f"v{roster.version}: {', '.join(p.code for p in roster.participants)}"
    raise TraceError(
        f"--origin {name}: {code} is not a Participant on the roster here ({listed}), "
        "and no log of it is held"
    )


def other_readings(reader: StoreTraceReader, start: Start) -> list[str]:
    """What else the name traced from `start` names, and how to trace that instead: a
    certificate number is also a parcel's id on every log that imported the goods (an
    import names them after the certificate), and may be one on another log by chance."""
    logs = reader.parcel_logs(start.name) if start.kind == CERTIFICATE else []
    if not logs:
        return []
    readings = []
    for origin in logs:
        code = origin.rpartition("/")[2]
        made = reader.creator(origin, start.name)  # an entry: the parcel is on that log
        imported = made == reader.importer(origin, start.name)
        readings.append(
            f"on {code}'s log ({'imported under it, ' if imported else ''}{code} entry {made})"
        )
    options = " or ".join(f"--origin {o.rpartition('/')[2]}" for o in logs)
    which = "that parcel" if len(logs) == 1 else "one of those parcels"
    return [
        f"{start.name} is also the id of a parcel {' and '.join(readings)}; this traces the "
        f"certificate; to trace {which} instead, add {options}"
    ]


def verify_bundle_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The proof bundle.")],
    trust: Annotated[Path, typer.Option("--trust", help="The roster v1 file you trust.")],
    witnesses: Witnesses = 1,
    dot: Dot = False,
    as_json: JsonOption = False,
) -> None:
    """Check a proof bundle offline against roster v1 alone, and show the trace it proves.

    Exit status: 0 when the bundle verifies and its trace is complete, 1 when it verifies
    but the trace it proves has breaks, 2 when it does not verify or cannot be read.
    """
    try:
        _one_format(as_json, dot)
        data = read_bounded(file, MAX_BUNDLE_SIZE, "bundle", BundleFileError)
        trusted = not_a_draft(
            trust, read_bounded(trust, MAX_ROSTER_SIZE, "trusted roster", BundleFileError)
        )
        verified = verify_bundle(data, trusted, witnesses=witnesses)
    except LedgerError as e:
        raise CommandFailed(str(e), CANNOT_TRACE) from e
    if dot:
        _print_dot(verified.trace)
    elif as_json:
        emit_json(verified_json(verified, trusted))
    else:
        _show_verified(verified, trusted)
    if not verified.trace.complete:
        raise typer.Exit(1)


def _one_format(as_json: bool, dot: bool) -> None:
    if as_json and dot:
        raise OutputChoiceError("choose one of --json and --dot")


class BundleFileError(BundleError):
    """A bundle or roster file that cannot be read or written, named by the user's path."""


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temp file beside it, then a rename); errors
    name `path`, never the temp file."""
    if path.is_dir():
        raise BundleFileError(f"--bundle {path} is a directory; give a file name")
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise BundleFileError(f"cannot write the bundle to {path}: {e.strerror or e}") from e


# -- numbers -------------------------------------------------------------------------


def exact(value: Fraction) -> str:
    """Hundredths of a carat (or a share) exactly: ``"600"`` or ``"1100/3"``."""
    return str(value)


def carats(value: Fraction | int) -> str:
    """Rounded to hundredths of a carat: ``"600.00"``."""
    return format_carats(round(value))


def apportion(parts: Sequence[Fraction], total: Fraction | int) -> list[int]:
    """Each part rounded to whole hundredths so that they add up to the total rounded
    (largest remainder): the parts shown add up to the whole shown."""
    rounded = [math.floor(p) for p in parts]
    left = round(total) - sum(rounded)
    by_remainder = sorted(range(len(parts)), key=lambda i: (rounded[i] - parts[i], i))
    for i in by_remainder[: max(0, min(left, len(parts)))]:
        rounded[i] += 1
    return rounded


def percent(value: Fraction) -> str:
    """A share as a percentage, two decimals: ``"54.55%"``."""
    return f"{float(value * 100):.2f}%"


# -- JSON ----------------------------------------------------------------------------


def _id(key: NodeKey) -> str:
    return f"{key[0]}:{key[1]}:{key[2]}"


def trace_json(result: Trace, *, declared: bool = False) -> dict[str, Any]:
    """The trace for scripts: exact fractions as strings beside rounded carats.

    `declared` (a verified bundle's trace): each node and break says `"declared": true` when
    it rests on the builder's word (its status, end, note or detail), false when proved."""
    total = result.node(result.root).flow

    def share(value: Fraction) -> dict[str, str]:
        fraction = value / total if total else Fraction(0)
        return {"share": exact(fraction), "percent": percent(fraction)}

    return {
        "direction": result.direction,
        "root": _id(result.root),
        "complete": result.complete,
        "carats": carats(total),
        "nodes": [_node_json(n, declared) for n in result.nodes],
        "edges": [
            {
                "source": _id(e.source),
                "target": _id(e.target),
                "kind": e.kind,
                "origin": e.origin,
                "index": e.index,
                "status": e.status,
                "hundredths": exact(e.carats),
                "carats": carats(e.carats),
                **share(e.carats),
                "countries": [
                    {"country": c, "hundredths": exact(v), "carats": carats(v), **share(v)}
                    for c, v in e.countries
                ],
            }
            for e in result.edges
        ],
        "origins": [
            {
                "origin": s.origin,
                "parcel": s.parcel,
                "entry": s.entry,
                "country": s.mined.country,
                "mine": s.mined.mine,
                "date": s.mined.date,
                "hundredths": exact(s.carats),
                "carats": carats(s.carats),
                **share(s.carats),
            }
            for s in result.sources
        ],
        "unknown": {"hundredths": exact(result.unknown), "carats": carats(result.unknown)},
        "destinations": [
            {
                "node": _id(d.node),
                "end": d.end,
                "hundredths": exact(d.carats),
                "carats": carats(d.carats),
                **share(d.carats),
                "portion": None if d.portion is None else exact(d.portion),
            }
            for d in result.destinations
        ],
        "breaks": [
            {"reason": b.reason, "origin": b.origin, "where": b.where, "detail": b.detail}
            | ({"declared": b.reason in DECLARED_REASONS} if declared else {})
            for b in result.breaks
        ],
        "entries": [{"origin": o, "index": i} for o, i in result.entries],
    }


def _node_json(n: Node, declared: bool) -> dict[str, Any]:
    mined = n.mined
    marked = {"declared": _declared(n)} if declared else {}
    return marked | {
        "id": _id(n.key),
        "kind": n.kind,
        "origin": n.origin,
        "name": n.name,
        "carats": None if n.carats is None else carats(n.carats),
        "entry": n.entry,
        "record": n.record,
        "status": n.status,
        "end": n.end,
        "note": n.note,
        "mined": None
        if mined is None
        else {"country": mined.country, "mine": mined.mine, "date": mined.date},
        "hundredths": exact(n.flow),
    }


def verified_json(verified: VerifiedBundle, trusted: bytes) -> dict[str, Any]:
    """What verify-bundle established, for scripts."""
    return {
        "verified": True,
        "policy": verified.policy,
        "trusted_roster_sha256": hashlib.sha256(trusted).hexdigest(),
        "roster_version": verified.roster.version,
        "logs": [
            {
                "origin": log.origin,
                "size": log.size,
                "root": log.root,
                "witnesses": list(log.witnesses),
                "entries": log.entries,
            }
            for log in verified.logs
        ],
        "declared": [
            {
                "ask": d.ask,
                "origin": d.origin,
                "subject": d.subject,
                "reason": d.reason,
                "detail": d.detail,
            }
            for d in verified.declared
        ],
        "frozen": list(verified.frozen),
        "trace": trace_json(verified.trace, declared=True),
    }


def _declared(n: Node) -> bool:
    """Whether the node's status, end or note is the builder's word (in a bundle)."""
    return bool(n.note) or n.status in DECLARED_REASONS or n.end in DECLARED_REASONS


# -- DOT -----------------------------------------------------------------------------


def _print_dot(result: Trace) -> None:
    sys.stdout.write(trace_dot(result) + "\n")


def _quote(text: str) -> str:
    """A DOT string literal; newlines become DOT's line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def trace_dot(result: Trace) -> str:
    """The trace as a Graphviz digraph: goods flow left to right; breaks in red."""
    total = result.node(result.root).flow or Fraction(1)
    lines = ["digraph trace {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for n in result.nodes:
        label = f"{_label(n)}\n{carats(n.flow)} ct traced"
        if n.mined is not None:
            label += f"\nmined {n.mined.country} {n.mined.mine} {n.mined.date}"
        if n.end is not None or n.status != VERIFIED:
            label += f"\n{n.end or n.status}"
        style = ["shape=note"] if n.kind == CERTIFICATE else []
        if n.status != VERIFIED or n.end not in (None, *ENDS):
            style += ["color=red", "style=dashed"]
        attrs = ", ".join([f"label={_quote(label)}", *style])
        lines.append(f"  {_quote(_id(n.key))} [{attrs}];")
    for e in result.edges:
        flow = f"{carats(e.carats)} ct {percent(e.carats / total)}"
        label = f"{e.kind} {_code(e.origin)}#{e.index}\n{flow}"
        color = "" if e.status == VERIFIED else ", color=red"
        lines.append(
            f"  {_quote(_id(e.source))} -> {_quote(_id(e.target))} [label={_quote(label)}{color}];"
        )
    lines.append("}")
    return "\n".join(lines)


# -- the tree for people -------------------------------------------------------------


def _code(origin: str) -> str:
    return origin.rpartition("/")[2]


def _label(n: Node) -> str:
    if n.kind == CERTIFICATE:
        return f"certificate {n.name} ({_code(n.origin)} entry {n.entry})"
    return f"{n.name} @ {_code(n.origin)}"


def _status(text: str) -> str:
    if text == VERIFIED:
        return "[green]verified[/]"
    return f"[bold red]{escape(text)}[/]"


def show_trace(result: Trace, *, declared: bool = False) -> None:
    """Print the trace as a tree, the origins or destinations, and every break; `declared`
    (a verified bundle's trace) labels what rests on the builder's word "builder says"."""
    root = result.node(result.root)
    what = "where it came from" if result.direction == BACKWARD else "where it went"
    console.print(f"[bold]{escape(_label(root))}[/]: {carats(root.flow)} ct, {what}")
    console.print(_tree(result, declared), soft_wrap=False)
    _summary(result, declared)


def _says(declared: bool, reason: str | None) -> str:
    """ "builder says: " before what a bundle's builder declared."""
    return "builder says: " if declared and reason in DECLARED_REASONS else ""


def _tree(result: Trace, declared: bool) -> Tree:
    """The walk from the traced node, each node shown once (a DAG: repeats say so)."""
    backward = result.direction == BACKWARD
    nodes = {n.key: n for n in result.nodes}
    links: dict[NodeKey, list[Edge]] = {}
    for e in result.edges:
        links.setdefault(e.target if backward else e.source, []).append(e)
    tree = Tree(escape(_label(nodes[result.root])))
    seen = {result.root}
    # each node's carats as shown (hundredths): its edges' shown carats add up to it
    stack = [(tree, result.root, round(nodes[result.root].flow))]
    while stack:
        branch, key, whole = stack.pop()
        edges = links.get(key, [])
        for e, shown in zip(edges, apportion([e.carats for e in edges], whole), strict=True):
            far = nodes[e.source if backward else e.target]
            text = _hop(e, shown, far, nodes[result.root].flow, declared)
            if far.key in seen:
                branch.add(text + " [dim](shown above)[/]")
                continue
            seen.add(far.key)
            far_whole = shown if far.flow == e.carats else round(far.flow)
            stack.append((branch.add(text), far.key, far_whole))
    return tree


def _hop(e: Edge, shown: int, far: Node, total: Fraction, declared: bool) -> str:
    """Two lines: the node reached (mining facts, status, where goods rest), then the entry
    that moved the goods, its status, and the traced carats along it (`shown`, rounded so
    that siblings add up) by country."""
    text = f"[bold]{escape(_label(far))}[/]"
    if far.mined is not None:
        m = far.mined
        text += f" [cyan]mined in {m.country} at {escape(m.mine)} on {m.date}[/]"
    if far.status != VERIFIED:
        text += f" {_says(declared, far.status)}{_status(far.status)}"
    if far.end is not None:
        text += f" [yellow]{_says(declared, far.end)}{escape(far.end)}[/]"
    verb = {"split": "split", "merge": "merged", "export": "exported", "import": "imported"}
    text += (
        f"\n{verb.get(e.kind, e.kind)} by {_code(e.origin)} entry {e.index}, {_status(e.status)}: "
        f"{carats(shown)} ct, {percent(e.carats / total)}"
    )
    if e.countries:
        split = apportion([v for _, v in e.countries], shown)
        parts = (f"{c} {carats(v)} ct" for (c, _), v in zip(e.countries, split, strict=True))
        text += " [dim](" + ", ".join(parts) + ")[/]"
    return text


def _summary(result: Trace, declared: bool) -> None:
    """Origins (backward) or resting places (forward), then every break."""
    total = result.node(result.root).flow
    *shown, unknown = apportion([*(s.carats for s in result.sources), result.unknown], total)
    for s, ct in zip(result.sources, shown, strict=True):
        m = s.mined
        console.print(
            f"origin {m.country}: {escape(s.parcel)} @ {_code(s.origin)} (entry {s.entry}), "
            f"{escape(m.mine)}, {m.date}: {carats(ct)} ct, {percent(s.share)}"
        )
    if result.unknown:
        console.print(
            f"[bold red]unknown origin[/]: {carats(unknown)} ct, "
            f"{percent(result.unknown / total)} (behind the breaks below)"
        )
    nodes = {n.key: n for n in result.nodes}
    resting = apportion([d.carats for d in result.destinations], total)
    for d, ct in zip(result.destinations, resting, strict=True):
        portion = "" if d.portion is None else f", {percent(d.portion)} of it"
        note = nodes[d.node].note
        says = _says(declared, d.end)
        rests = f"rests {escape(d.end)}" if d.end in ENDS else f"stops at a break ({d.end})"
        console.print(
            f"{says}{rests}: {escape(_label(nodes[d.node]))}: {carats(ct)} ct, "
            f"{percent(d.share)} of the traced goods{portion}"
            + (f" [dim]({says}{escape(note)})[/]" if note else "")
        )
    for b in result.breaks:
        console.print(
            f"[bold red]break[/] {b.reason} on {escape(b.origin)} ({escape(b.where)}): "
            f"{_says(declared, b.reason)}{escape(b.detail)}"
        )
    if result.complete:
        console.print(f"complete: {counted(len(result.edges), 'hop')}, every one verified")


def _show_verified(verified: VerifiedBundle, trusted: bytes) -> None:
    digest = hashlib.sha256(trusted).hexdigest()[:16]
    breaks = len(verified.trace.breaks)
    console.print(
        f"[bold green]bundle verified offline[/] against roster v1 (sha256 {digest}...), "
        f"chain to v{verified.roster.version}"
        + (
            ""
            if verified.trace.complete
            else f"; the trace it proves has {counted(breaks, 'break')} (below)"
        )
    )
    console.print(f"witness policy: {verified.policy}")
    for log in verified.logs:
        cosigned = ", ".join(log.witnesses) or "nobody"
        console.print(
            f"  {log.origin}: checkpoint size {log.size}, cosigned by {cosigned}; "
            f"{counted(log.entries, 'entry', 'entries')} proved"
        )
    for d in verified.declared:
        console.print(
            f"  declared by the bundle's builder, not provable offline: {d.ask} "
            f"{escape(d.subject)} {escape(d.origin)} is {d.reason}"
            + (f" (builder says: {escape(d.detail)})" if d.detail else "")
        )
    for origin in verified.frozen:
        console.print(f"  declared frozen by the bundle's builder: {escape(origin)}")
    show_trace(verified.trace, declared=True)
