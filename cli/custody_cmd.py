"""Custody commands a KP authority's clerk uses: actors, production, sorting, certificates.

Options take clerk-readable quantities (`--carats 1234.56`, `--value-usd 250000`) and
ISO 8601 dates; every record goes through `ledger.custody.Custody`, so the KPCS rules
are checked before anything is stored.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.options import DEFAULT_DATA, DataOption, JsonOption, check_as_of, open_data
from cli.output import console, emit_json, jsonable
from ledger.checkpoint import TlogProof
from ledger.custody import Custody, ParcelState
from ledger.errors import LedgerError, RecordError
from ledger.quantities import format_carats, format_usd, parse_carats, parse_usd
from ledger.records import (
    ActorRegister,
    ActorRevoke,
    Export,
    ExportVoid,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster_files import load_roster
from ledger.rules import UnknownParcel
from ledger.words import counted

actor_app = typer.Typer(help="Licensed mines, exporters, importers and traders.")
parcel_app = typer.Typer(help="Parcels on this log.")
certificate_app = typer.Typer(help="KP certificates issued or imported here.")

Carats = Annotated[str, typer.Option("--carats", help="Carats, e.g. 1234.56.")]
Usd = Annotated[str, typer.Option("--value-usd", help="Value in US$, e.g. 250000 or 99.50.")]


def open_custody(data: Path) -> Custody:
    """This node's custody engine under its current trusted roster."""
    return Custody(open_data(data), load_roster(data))


def certificate_totals(custody: Custody, parcels: list[str]) -> tuple[int, tuple[str, ...]]:
    """Carats and mining origins a certificate for `parcels` must state, from their states."""
    states = parcels_in_custody(custody, parcels)
    return sum(s.carats for s in states), tuple(sorted({c for s in states for c in s.origins}))


def parcels_in_custody(custody: Custody, parcels: list[str]) -> list[ParcelState]:
    """The states of parcels the command totals up; an unknown parcel is named."""
    states = []
    for parcel in parcels:
        state = custody.parcel(parcel)
        if state is None:
            raise UnknownParcel(f"parcel {parcel} is not on this log")
        states.append(state)
    return states


def _record(data: Path, record: Record, as_json: bool, what: str) -> None:
    done = open_custody(data).append(record)
    if as_json:
        emit_json(
            {
                "kind": record.KIND,
                "index": done.index,
                "leaf_hash": done.leaf_hash,
                "size": done.size,
            }
        )
    else:
        console.print(f"{what} (entry {done.index})")


@actor_app.command("register")
def register(
    actor: Annotated[str, typer.Argument(help="Actor id, e.g. BW-MINE-JWANENG.")],
    role: Annotated[str, typer.Option(help="mine, artisanal, exporter, importer or trader.")],
    name: Annotated[str, typer.Option(help="Registered name.")],
    licence: Annotated[str, typer.Option(help="Licence number.")],
    location: Annotated[str, typer.Option(help="Location (town, district).")],
    zone: Annotated[str, typer.Option(help="Production or trading zone.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Register a licensed actor on this log."""
    record = ActorRegister(
        actor=actor, role=role, name=name, licence=licence, location=location, zone=zone
    )
    _record(data, record, as_json, f"registered {role} {actor}")


@actor_app.command("revoke")
def revoke(
    actor: Annotated[str, typer.Argument(help="Actor id.")],
    reason: Annotated[str, typer.Option(help="Why the licence is revoked.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Revoke an actor's licence: it can no longer mine or export."""
    _record(data, ActorRevoke(actor=actor, reason=reason), as_json, f"revoked {actor}")


@actor_app.command("show")
def actor_show(
    actor: Annotated[str, typer.Argument(help="Actor id.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Show a licensed actor, its status and every entry that names it."""
    custody = open_custody(data)
    state = custody.actor(actor)
    if state is None:
        raise LedgerError(f"actor {actor} is not registered on this log")
    _show_state(f"actor {actor}", state | {"entries": custody.actor_entries(actor)}, as_json)


def mine(
    parcel: Annotated[str, typer.Argument(help="New parcel id.")],
    mine_id: Annotated[str, typer.Option("--mine", help="Registered mine actor id.")],
    carats: Carats,
    value_usd: Usd,
    date: Annotated[str, typer.Option(help="Production date, YYYY-MM-DD.")],
    origin: Annotated[str, typer.Option(help="Country of mining origin (ISO alpha-2).")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Record rough diamonds produced at a registered mine."""
    record = ParcelMine(
        parcel=parcel,
        mine=mine_id,
        carats=parse_carats(carats),
        value=parse_usd(value_usd),
        date=date,
        origin=origin.upper(),
    )
    _record(data, record, as_json, f"mined {parcel}: {format_carats(record.carats)} ct")


def _share(text: str) -> ParcelShare:
    """Parse ``ID:CARATS:USD`` from the command line."""
    parts = text.split(":")
    if len(parts) != 3:
        raise RecordError(f"--output {text!r}: want PARCEL:CARATS:USD, e.g. EU-A:600.00:90000")
    return ParcelShare(parcel=parts[0], carats=parse_carats(parts[1]), value=parse_usd(parts[2]))


def split(
    parcel: Annotated[str, typer.Argument(help="Parcel to split.")],
    output: Annotated[list[str], typer.Option(help="PARCEL:CARATS:USD, repeat per output.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Split (sort) a parcel into outputs; carats must be conserved."""
    record = ParcelSplit(input=parcel, outputs=tuple(_share(o) for o in output))
    _record(data, record, as_json, f"split {parcel} into {counted(len(output), 'parcel')}")


def merge(
    parcels: Annotated[list[str], typer.Argument(help="Parcels to mix.")],
    into: Annotated[str, typer.Option(help="Id of the mixed parcel.")],
    value_usd: Usd,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Merge (mix) parcels into one; its carats are the sum of the inputs'."""
    custody = open_custody(data)
    carats = sum(s.carats for s in parcels_in_custody(custody, parcels))
    record = ParcelMerge(
        inputs=tuple(parcels),
        output=ParcelShare(parcel=into, carats=carats, value=parse_usd(value_usd)),
    )
    done = custody.append(record)
    if as_json:
        emit_json({"kind": record.KIND, "index": done.index, "carats": carats})
    else:
        console.print(
            f"merged {counted(len(parcels), 'parcel')} into {into}: {format_carats(carats)} ct "
            f"(entry {done.index})"
        )


def export(
    certificate: Annotated[str, typer.Option(help="Certificate number, e.g. BW-2026-000123.")],
    exporter: Annotated[str, typer.Option(help="Registered exporter actor id.")],
    importer: Annotated[str, typer.Option(help="Importer (consignee) name at destination.")],
    destination: Annotated[str, typer.Option(help="Destination Participant code.")],
    parcel: Annotated[list[str], typer.Option(help="Parcel id, repeat per parcel.")],
    value_usd: Usd,
    hs_code: Annotated[str, typer.Option(help="7102.10, 7102.21 or 7102.31.")],
    issued: Annotated[str, typer.Option(help="Date of issue, YYYY-MM-DD.")],
    expires: Annotated[str, typer.Option(help="Date of expiry, YYYY-MM-DD.")],
    seal: Annotated[str, typer.Option(help="Container seal number.")],
    authority: Annotated[str, typer.Option(help="Issuing authority.")],
    out: Annotated[Path, typer.Option(help="Write the certificate proof file here.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Issue a KP certificate for parcels in custody and write its proof file."""
    custody = open_custody(data)
    carats, origins = certificate_totals(custody, parcel)
    record = Export(
        certificate=certificate,
        authority=authority,
        exporter=exporter,
        importer=importer,
        destination=destination.upper(),
        parcels=tuple(parcel),
        carats=carats,
        value=parse_usd(value_usd),
        parcel_count=len(parcel),
        hs_code=hs_code,
        origins=origins,
        issued=issued,
        expires=expires,
        seal=seal,
    )
    done = custody.append(record)
    proof = custody.export_proof(certificate)
    out.write_text(proof.to_text())
    if as_json:
        emit_json(
            {
                "certificate": certificate,
                "index": done.index,
                "proof": str(out),
                "carats": record.carats,
            }
        )
    else:
        console.print(
            f"certificate {certificate}: {format_carats(record.carats)} ct to "
            f"{record.destination} (entry {done.index}); proof written to {out}"
        )


def void(
    certificate: Annotated[str, typer.Argument(help="Certificate number to cancel.")],
    reason: Annotated[str, typer.Option(help="Why it is cancelled.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Cancel a certificate that has not been imported."""
    custody = open_custody(data)
    state = custody.certificate(certificate)
    if state is None:
        raise LedgerError(f"certificate {certificate} was not issued here")
    done = custody.append(
        ExportVoid(certificate=certificate, export_index=state.index, reason=reason)
    )
    if as_json:
        emit_json({"certificate": certificate, "index": done.index})
    else:
        console.print(f"voided {certificate} (entry {done.index})")


def import_(
    importer: Annotated[str, typer.Option(help="Registered importer actor id here.")],
    received: Annotated[str, typer.Option(help="Date of receipt, YYYY-MM-DD.")],
    proof_file: Annotated[
        Path | None,
        typer.Argument(
            help="The certificate proof file from the exporter; omit it to take the proof "
            "from the exporter's log as synced here (with --certificate)."
        ),
    ] = None,
    certificate: Annotated[
        str | None, typer.Option(help="Certificate number, proved from the synced log.")
    ] = None,
    carats: Annotated[str | None, typer.Option("--carats", help="Carats received.")] = None,
    value_usd: Annotated[str | None, typer.Option("--value-usd", help="Value received.")] = None,
    parcel: Annotated[str | None, typer.Option(help="Id for the received parcel.")] = None,
    seal_broken: Annotated[bool, typer.Option(help="The container seal was not intact.")] = False,
    discrepancy: Annotated[
        str | None, typer.Option(help="What differs from the certificate.")
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Confirm receipt of a shipment against its certificate proof (KPCS Section III)."""
    if (proof_file is None) == (certificate is None):
        raise LedgerError("give either a proof file or --certificate (proved from the synced log)")
    custody = open_custody(data)
    if proof_file is not None:
        proof = TlogProof.from_text(proof_file.read_text())
    else:
        assert certificate is not None
        proof = custody.synced_export_proof(certificate)
    got_carats = None if carats is None else parse_carats(carats)
    got_value = None if value_usd is None else parse_usd(value_usd)
    shares = None
    if parcel is not None:
        if got_carats is None or got_value is None:
            raise RecordError("--parcel needs --carats and --value-usd (what was received)")
        shares = [ParcelShare(parcel=parcel, carats=got_carats, value=got_value)]
    done = custody.import_certificate(
        proof,
        importer=importer,
        received=received,
        parcels=shares,
        carats=got_carats,
        value=got_value,
        seal_intact=not seal_broken,
        discrepancy=discrepancy,
    )
    if as_json:
        emit_json({"index": done.index, "leaf_hash": done.leaf_hash})
    else:
        console.print(f"import confirmed (entry {done.index})")


@parcel_app.command("show")
def parcel_show(
    parcel: Annotated[str, typer.Argument(help="Parcel id.")],
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Show a parcel's state and the entries that mention it."""
    custody = open_custody(data)
    state = custody.parcel(parcel)
    if state is None:
        raise LedgerError(f"parcel {parcel} is not on this log")
    _show_state(
        f"parcel {parcel}", asdict(state) | {"entries": custody.parcel_entries(parcel)}, as_json
    )


def _show_state(title: str, shown: dict[str, Any], as_json: bool) -> None:
    """One record's state as JSON, or as a two-column table with readable quantities."""
    if as_json:
        emit_json(shown)
        return
    table = Table(title=title, show_header=False)
    for key, value in jsonable(shown).items():
        table.add_row(key, _readable(key, value))
    console.print(table)


def _readable(key: str, value: Any) -> str:
    if key == "carats" and isinstance(value, int):
        return f"{format_carats(value)} ct"
    if key == "value" and isinstance(value, int):
        return f"US$ {format_usd(value)}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


@certificate_app.command("show")
def certificate_show(
    number: Annotated[str, typer.Argument(help="Certificate number.")],
    overdue_days: Annotated[
        int, typer.Option(help="Days after issue an unconfirmed export is overdue.", min=1)
    ] = 30,
    as_of: Annotated[
        str | None,
        typer.Option(callback=check_as_of, help="Judge overdue as of this date (default today)."),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    as_json: JsonOption = False,
) -> None:
    """Show a certificate issued or imported here, and whether it is confirmed.

    For a certificate issued here, `confirmation` cross-verifies it against the importer's
    log as synced here: confirmed, awaiting, overdue (no import after --overdue-days), voided,
    or unverifiable (past due, but that log is not held here, or held only in part: up to an
    entry a sync here refused, or short of a checkpoint its owner signed): `status` is that
    too.
    """
    custody = open_custody(data)
    state = custody.certificate(number)
    if state is None:
        raise LedgerError(f"certificate {number} is not known here")
    shown = asdict(state)
    if state.origin == custody.origin:
        today = as_of or datetime.now(UTC).date().isoformat()
        seen = custody.confirmation(number, today, overdue_days)
        # the exporter's own log never records the import: its `awaiting` would contradict
        # the importer's log, so status and import index are the cross-verified ones
        shown["status"] = shown["confirmation"] = seen.status
        shown["import_index"] = seen.import_index
        shown["confirmed_by"] = (
            None if seen.import_index is None else f"{seen.destination} entry {seen.import_index}"
        )
        shown["destination_entries_held"] = seen.destination_size
        if seen.unverifiable is not None:
            shown["unverifiable"] = seen.unverifiable
    _show_state(f"certificate {number}", shown, as_json)


def custody_now(data: DataOption = DEFAULT_DATA, as_json: JsonOption = False) -> None:
    """List the parcels in this Participant's custody now."""
    parcels = list(open_custody(data).in_custody())
    if as_json:
        emit_json([asdict(p) for p in parcels])
        return
    table = Table(title=f"in custody: {counted(len(parcels), 'parcel')}")
    for column in ("parcel", "carats", "US$", "origins", "entry"):
        table.add_column(column)
    for p in parcels:
        table.add_row(
            p.parcel,
            format_carats(p.carats),
            format_usd(p.value),
            ", ".join(p.origins),
            str(p.entry),
        )
    console.print(table)


def register_commands(app: typer.Typer) -> None:
    """Mount the custody commands on the top-level app."""
    app.add_typer(actor_app, name="actor")
    app.add_typer(parcel_app, name="parcel")
    app.add_typer(certificate_app, name="certificate")
    app.command("mine")(mine)
    app.command("split")(split)
    app.command("merge")(merge)
    app.command("export")(export)
    app.command("void")(void)
    app.command("import")(import_)
    app.command("custody")(custody_now)
