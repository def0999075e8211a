"""Shared fixtures, the hypothesis profile, and builders of the custody tests' networks
and records."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from ledger.datadir import DataDir
from ledger.keys import Verifier
from ledger.records import ActorRegister, Export, ParcelMine, ParcelShare
from ledger.roster import Participant, Roster

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DataDir]:
    """A fresh Botswana data directory."""
    data = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    yield data
    data.close()


def mine_body(n: int, carats: int = 1_000_00) -> dict[str, object]:
    """A plausible production record body for parcel number `n`."""
    return {
        "parcel": f"BW-P-{n:06d}",
        "mine": "BW-MINE-1",
        "carats": carats,
        "value": carats * 150,
        "date": "2026-03-02",
        "origin": "BW",
    }


# -- custody networks and records -----------------------------------------------------

NET = "kp.example"


@contextmanager
def data_dirs(root: Path, codes: Iterable[str]) -> Iterator[dict[str, DataDir]]:
    """A fresh data directory on `NET` for each of `codes` under `root`, closed on leaving."""
    made = {code: DataDir.init(root / code, code, NET) for code in codes}
    try:
        yield made
    finally:
        for node in made.values():
            node.close()


def roster_for(
    keys: Mapping[str, Verifier],
    zones: Mapping[str, tuple[str, ...]] | None = None,
    **status: str,
) -> Roster:
    """Roster v1 of `NET`: each code's Authority and log key (the EU's for BE, DE and NL),
    active unless `status` says otherwise (e.g. CF="suspended"), exporting only from its
    `zones` where given."""
    zones = zones or {}
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
                status=status.get(code, "active"),  # type: ignore[arg-type]
                zones=zones.get(code),
            )
            for code, key in keys.items()
        ),
    )


def actor(actor_id: str, role: str, zone: str = "Main") -> ActorRegister:
    """A licensed actor in `zone`."""
    return ActorRegister(actor_id, role, f"{actor_id} Ltd", f"L-{actor_id}", "Capital", zone)


def mined(parcel: str, carats: int, mine: str = "MINE-1", origin: str = "BW") -> ParcelMine:
    """Production of `carats` hundredths at `mine`."""
    return ParcelMine(parcel, mine, carats, carats * 150, "2026-03-01", origin)


def shares(*pairs: tuple[str, int]) -> tuple[ParcelShare, ...]:
    """Parcel shares valued at US$1.50 a hundredth."""
    return tuple(ParcelShare(p, c, c * 150) for p, c in pairs)


def export(
    number: str, parcels: tuple[str, ...], carats: int, dest: str = "IN", **over: Any
) -> Export:
    """A certificate of EXP-1's `parcels` of Botswana origin, issued 2026-03-05, expiring
    2026-06-05; `over` replaces any field."""
    fields: dict[str, Any] = dict(
        certificate=number,
        authority="KP Authority",
        exporter="EXP-1",
        importer=f"{dest} buyer",
        destination=dest,
        parcels=parcels,
        carats=carats,
        value=carats * 150,
        parcel_count=len(parcels),
        hs_code="7102.31",
        origins=("BW",),
        issued="2026-03-05",
        expires="2026-06-05",
        seal=f"S-{number}",
    )
    return Export(**(fields | over))
