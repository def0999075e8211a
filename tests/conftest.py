"""Shared fixtures and the hypothesis profile."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ledger.datadir import DataDir

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
