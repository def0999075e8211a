"""What the custody benchmarks build alike: the network's name, its roster, a certificate."""

from __future__ import annotations

from collections.abc import Mapping

from ledger.keys import Verifier
from ledger.records import Export
from ledger.roster import Participant, Roster

NET = "kp.example"


def roster_of(keys: Mapping[str, Verifier]) -> Roster:
    """Roster v1 of `NET`: each code's Authority and log key (the EU's for BE, DE and NL)."""
    return Roster(
        NET,
        1,
        tuple(
            Participant(
                code,
                f"Authority of {code}",
                ("BE", "DE", "NL") if code == "EU" else (code,),
                key,
                f"https://{code.lower()}.kp.example/",
            )
            for code, key in keys.items()
        ),
    )


def certificate(
    number: str,
    parcels: tuple[str, ...],
    carats: int,
    dest: str,
    origins: tuple[str, ...] = ("BW",),
    issued: str = "2026-03-05",
) -> Export:
    """Certificate `number` of EXP-1's `parcels` to `dest`, at US$1.50 a hundredth of a carat,
    issued on a day in March and expiring on the same day of June."""
    return Export(
        number,
        "KP Authority",
        "EXP-1",
        f"{dest} buyer",
        dest,
        parcels,
        carats,
        carats * 150,
        len(parcels),
        "7102.31",
        origins,
        issued,
        issued.replace("-03-", "-06-"),
        f"S-{number}",
    )
