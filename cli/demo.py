"""`kimberley demo`: a parcel from a Botswana mine through Antwerp to India, on one machine.

Four Participants (BW, RU, EU, IN) each get a data directory and a log key and all sign
roster v1. Botswana and Russia record production and export to the EU. Antwerp imports
both shipments against their certificate proofs, sorts and mixes them, and re-exports to
India, which confirms receipt. The demo then shows custody, a certificate proof checked
with nothing but the exporter's key, a consistency proof between two checkpoints, a
refused double import, and a full replay of every log. Here the proof files are the only
thing that passes between Participants; running nodes and syncing them is `node serve` and
`sync`, which the demo does not start yet.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.custody_cmd import certificate_totals
from cli.output import console
from ledger import merkle
from ledger.checkpoint import TlogProof
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import RuleViolation
from ledger.keys import Verifier
from ledger.quantities import format_carats, format_usd
from ledger.records import ActorRegister, Export, ParcelMerge, ParcelMine, ParcelShare, ParcelSplit
from ledger.roster import Participant, Roster, SignedRoster
from ledger.roster_files import install_roster, load_roster
from ledger.verify import verify_log

NETWORK = "kp.example"
PARTICIPANTS = {
    "BW": ("Botswana", ("BW",)),
    "RU": ("Russian Federation", ("RU",)),
    "EU": ("European Union", ("BE", "DE", "NL")),
    "IN": ("India", ("IN",)),
}


def _network(base: Path) -> dict[str, Custody]:
    """Init four data directories and install a roster v1 that all four signed."""
    nodes = {code: DataDir.init(base / code.lower(), code, NETWORK) for code in PARTICIPANTS}
    roster = Roster(
        NETWORK,
        1,
        tuple(
            Participant(
                code, name, countries, nodes[code].signer.verifier, f"http://127.0.0.1:{8470 + i}"
            )
            for i, (code, (name, countries)) in enumerate(PARTICIPANTS.items())
        ),
    )
    signed = SignedRoster(roster)
    for node in nodes.values():
        signed = signed.sign(node.signer)
    for node in nodes.values():
        install_roster(node.path, signed.to_bytes(), node.signer.verifier)
    return {code: Custody(node, load_roster(node.path)) for code, node in nodes.items()}


def _actors(custody: Custody, *actors: tuple[str, str]) -> None:
    custody.append_many(
        ActorRegister(actor, role, f"{actor.title()} Ltd", f"L-{actor}", "Capital", "Main")
        for actor, role in actors
    )


def _export(
    custody: Custody,
    cert: str,
    exporter: str,
    dest: str,
    parcels: list[str],
    value: int,
    issued: str,
) -> TlogProof:
    carats, origins = certificate_totals(custody, parcels)
    custody.append(
        Export(
            cert,
            "KP Authority",
            exporter,
            f"{dest} buyer",
            dest,
            tuple(parcels),
            carats,
            value,
            len(parcels),
            "7102.31",
            origins,
            issued,
            "2026-12-31",
            f"SEAL-{cert}",
        )
    )
    return custody.export_proof(cert)


def _custody_table(network: dict[str, Custody], shown: int = 3) -> Table:
    """Each Participant's parcels in custody: the first few, then how many more."""
    table = Table(title="parcels in custody now")
    for column in ("Participant", "parcel", "carats", "US$", "mining origins"):
        table.add_column(column)
    for code, custody in network.items():
        count = 0
        for count, p in enumerate(custody.in_custody(), start=1):
            if count <= shown:
                table.add_row(
                    code,
                    p.parcel,
                    format_carats(p.carats),
                    format_usd(p.value),
                    ", ".join(p.origins),
                )
        if count > shown:
            table.add_row(code, f"... {count - shown} more", "", "", "")
        if count == 0:
            table.add_row(code, "(none)", "", "", "")
    return table


def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="Keep the data here.")] = None,
    records: Annotated[int, typer.Option(help="Production records Botswana appends.")] = 1000,
) -> None:
    """Trace a parcel Botswana -> Antwerp -> India across four signed logs."""
    with tempfile.TemporaryDirectory(prefix="kimberley-demo-") as scratch:
        base = directory or Path(scratch)
        net = _network(base)
        bw, ru, eu, india = (net[c] for c in ("BW", "RU", "EU", "IN"))
        console.print(
            f"[bold]1. network[/]  {', '.join(net)} initialised in {base}; "
            "roster v1 signed by all four and installed on each"
        )

        _actors(bw, ("BW-MINE-JWANENG", "mine"), ("BW-EXP-ODC", "exporter"))
        first = bw.append_many(
            ParcelMine(
                f"BW-JW-2026-{i:06d}",
                "BW-MINE-JWANENG",
                1200_50 + i,
                180_000_00,
                "2026-03-02",
                "BW",
            )
            for i in range(records)
        )
        old_size = first[-1].size
        bw_proof = _export(
            bw,
            "BW-2026-000001",
            "BW-EXP-ODC",
            "EU",
            ["BW-JW-2026-000001"],
            180_000_00,
            "2026-03-05",
        )
        _actors(ru, ("RU-MINE-MIR", "mine"), ("RU-EXP-ALROSA", "exporter"))
        ru.append(ParcelMine("RU-MIR-2026-1", "RU-MINE-MIR", 300_00, 30_000_00, "2026-03-03", "RU"))
        ru_proof = _export(
            ru, "RU-2026-000001", "RU-EXP-ALROSA", "EU", ["RU-MIR-2026-1"], 30_000_00, "2026-03-05"
        )
        console.print(
            f"[bold]2. production and export[/]  Botswana recorded {records} parcels "
            "from Jwaneng and issued BW-2026-000001 to the EU; Russia issued "
            "RU-2026-000001 to the EU"
        )

        key = Verifier.from_text(bw.node.signer.verifier.to_text())
        cp = TlogProof.from_text(bw_proof.to_text()).verify(key)
        console.print(
            f"[bold]3. certificate proof[/]  BW-2026-000001 is entry {bw_proof.index} "
            f"of {cp.origin} at size {cp.size}: checked with only Botswana's key "
            f"({len(bw_proof.hashes)} hashes)"
        )
        merkle.verify_consistency(
            old_size,
            cp.size,
            bw.log.root(old_size),
            cp.root,
            bw.log.consistency_proof(old_size, cp.size),
        )
        console.print(
            f"   consistency: Botswana's log at size {old_size} is a prefix of size "
            f"{cp.size} (root {base64.b64encode(cp.root).decode()[:16]}...)"
        )

        _actors(eu, ("EU-IMP-ANTWERP", "importer"), ("EU-EXP-ANTWERP", "exporter"))
        eu.import_certificate(bw_proof, importer="EU-IMP-ANTWERP", received="2026-03-07")
        eu.import_certificate(ru_proof, importer="EU-IMP-ANTWERP", received="2026-03-08")
        eu.append(
            ParcelSplit(
                "BW-2026-000001",
                (
                    ParcelShare("EU-ANT-A", 700_51, 110_000_00),
                    ParcelShare("EU-ANT-B", 500_00, 70_000_00),
                ),
            )
        )
        eu.append(
            ParcelMerge(
                ("EU-ANT-B", "RU-2026-000001"), ParcelShare("EU-ANT-MIX-1", 800_00, 101_000_00)
            )
        )
        eu_proof = _export(
            eu, "EU-2026-000001", "EU-EXP-ANTWERP", "IN", ["EU-ANT-MIX-1"], 101_000_00, "2026-03-10"
        )
        console.print(
            "[bold]4. Antwerp[/]  imported both against their proofs, split the "
            "Botswana parcel, mixed 500 ct of it with the Russian 300 ct, and issued "
            "EU-2026-000001 to India"
        )

        _actors(india, ("IN-IMP-SURAT", "importer"))
        india.import_certificate(eu_proof, importer="IN-IMP-SURAT", received="2026-03-20")
        console.print("[bold]5. India[/]  confirmed receipt of EU-2026-000001")
        console.print(_custody_table(net))

        try:
            india.import_certificate(eu_proof, importer="IN-IMP-SURAT", received="2026-03-21")
        except RuleViolation as e:
            console.print(f"[bold]6. a second import of the same certificate is refused[/]: {e}")

        for code, custody in net.items():
            report = verify_log(custody.store, custody.node.signer.verifier)
            console.print(
                f"[bold]7. verify {code}[/]  {report.size} entries and "
                f"{report.checkpoints} checkpoints replayed: every byte, signature "
                "and hash checks out"
            )
        for custody in net.values():
            custody.node.close()
