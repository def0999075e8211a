"""The trusted roster chain kept in a node's data directory: ``<data>/roster/v<N>.roster``.

Installing a version verifies it against the chain already held (version 1 must be
signed by every Participant it lists), checks that it lists the data directory's key (a
Participant's log key, or an observer's: `ledger.roster_membership`), then writes it
atomically (temp file, fsync, rename), so a crash never leaves a half-written roster.

Version 1 has no predecessor to vouch for it: anyone can make a v1 signed by keys of
their own that lists a given (public) observer key. A Participant signed its v1 itself;
an observer signs nothing, so its only anchor is v1's SHA-256, compared with one
published out of band (`v1_sha256`). The membership check says the roster names this
directory; it says nothing about who wrote the roster.

A file byte-identical to a version already held is skipped, so re-running an install
that succeeded succeeds.
Loading re-verifies the whole chain from version 1 on every open: the chain is short and
trust is never cached.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import RosterError
from ledger.keys import Verifier
from ledger.roster import Roster, SignedRoster, verify_chain, verify_first, verify_next
from ledger.roster_membership import check_participant

_FILE = re.compile(r"v([1-9][0-9]*)\.roster")


def roster_dir(data: Path) -> Path:
    """Where the data directory keeps its roster chain."""
    return data / "roster"


def _versions(data: Path) -> list[tuple[int, Path]]:
    folder = roster_dir(data)
    if not folder.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _FILE.fullmatch(p.name)))
    for expected, (version, path) in enumerate(found, start=1):
        if version != expected:
            raise RosterError(
                f"roster chain in {folder} has a gap: {path.name} after v{expected - 1}"
            )
    return found


def roster_chain(data: Path) -> list[bytes]:
    """The installed roster files v1..vN, in version order; RosterError if none is installed."""
    files = _versions(data)
    if not files:
        raise RosterError(f"no roster installed in {data} (run `kimberley roster install FILE`)")
    return [path.read_bytes() for _, path in files]


def load_roster(data: Path) -> Roster:
    """The newest trusted roster, re-verified from version 1; RosterError if none is installed."""
    first, *later = roster_chain(data)
    return verify_chain(first, later)


def install_roster(data: Path, file_bytes: bytes, own_key: Verifier) -> Roster:
    """Verify a roster file against the chain held and store it as the newest version;
    it must list `own_key` as a Participant's log key."""

    def listed(roster: Roster) -> object:
        return check_participant(roster, own_key)

    return install_versions(data, [file_bytes], listed).roster


@dataclass(frozen=True, slots=True)
class Installed:
    """What an install did: the newest trusted roster, the versions written and the
    versions skipped as already held, and v1's SHA-256 (hex) when v1 was written."""

    roster: Roster
    written: tuple[int, ...]
    skipped: tuple[int, ...]
    v1: Roster | None
    v1_sha256: str | None


def sha256_hex(file_bytes: bytes) -> str:
    """The SHA-256 of a roster file, as published out of band for v1."""
    return hashlib.sha256(file_bytes).hexdigest()


def install_versions(
    data: Path,
    files: Sequence[bytes],
    listed: Callable[[Roster], object],
    v1_sha256: str | None = None,
) -> Installed:
    """Verify roster files in version order, each against the one before (the first against
    the chain held, or as version 1), check that the newest lists this data directory
    (`listed`: `check_participant` or `check_observer`, raising RosterError), then store
    them all, in order. So an observer or Participant admitted in version 3 installs 1 to 3
    at once, though versions 1 and 2 do not name it. Nothing is stored unless all pass.

    A file byte-identical to a version held is skipped. `v1_sha256`, when given, must be
    the SHA-256 of the chain's v1 (the one held, or the one installed now).
    """
    if not files:
        raise RosterError("no roster file to install")
    held = [path.read_bytes() for _, path in _versions(data)]
    trusted = load_roster(data) if held else None
    verified: list[tuple[Roster, bytes]] = []
    skipped: list[int] = []
    for file_bytes in files:
        signed = SignedRoster.from_bytes(file_bytes)
        version = signed.roster.version
        if not verified and 1 <= version <= len(held) and held[version - 1] == file_bytes:
            skipped.append(version)
            continue
        trusted = verify_first(signed) if trusted is None else verify_next(trusted, signed)
        verified.append((trusted, file_bytes))
    assert trusted is not None  # files is not empty: each was verified or is held
    first = held[0] if held else verified[0][1]
    if v1_sha256 is not None and sha256_hex(first).lower() != v1_sha256.strip().lower():
        raise RosterError(
            f"roster v1 has SHA-256 {sha256_hex(first)}, not the expected {v1_sha256.strip()}; "
            "nothing installed"
        )
    listed(trusted)
    for roster, file_bytes in verified:
        _write(roster_dir(data), roster.version, file_bytes)
    v1 = verified[0][0] if verified and not held else None
    return Installed(
        trusted,
        tuple(r.version for r, _ in verified),
        tuple(skipped),
        v1,
        sha256_hex(first) if v1 is not None else None,
    )


def _write(folder: Path, version: int, file_bytes: bytes) -> None:
    """Store one verified version atomically: temp file, fsync, rename."""
    folder.mkdir(exist_ok=True)
    temp = folder / f".v{version}.roster.tmp"
    with open(temp, "wb") as f:
        f.write(file_bytes)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, folder / f"v{version}.roster")
