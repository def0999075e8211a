"""`kimberley roster ...`: draft, sign, install, show and verify the signed roster."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.options import DEFAULT_DATA, DataOption, JsonOption, open_data, open_reading
from cli.output import console, emit_json, read_bounded
from ledger.errors import LedgerError, RosterError
from ledger.observer_dir import ObserverDir
from ledger.roster import MAX_ROSTER_SIZE, Roster, SignedRoster, verify_chain
from ledger.roster_files import (
    install_versions,
    load_roster,
    roster_chain,
    roster_dir,
    sha256_hex,
)
from ledger.roster_membership import check_listed
from ledger.words import counted

#: What --v1-sha256 must look like: a SHA-256 in hex.
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

roster_app = typer.Typer(help="The signed roster of Participants, keys, nodes and embargoes.")


def not_a_draft(path: Path, data: bytes) -> bytes:
    """`data`, the bytes of roster file `path`, unless they are JSON (a roster draft given
    where the signed roster file made from it belongs): RosterError saying how to make one,
    where the decoder would only count "trailing bytes"."""
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    try:
        json.loads(data.decode("utf-8-sig"))
        is_json = True
    except ValueError:  # UnicodeDecodeError too; a signed roster file is never UTF-8 text
        is_json = text.startswith(b"{")
    if is_json:
        raise RosterError(
            f"{path} looks like a JSON roster draft, not a signed roster file: make one with "
            f"`kimberley roster init {path} --out FILE` and have every Participant sign FILE "
            "with `kimberley roster sign FILE`"
        )
    return data


def _roster_file(path: Path) -> bytes:
    """The bytes of roster file `path`: read only up to MAX_ROSTER_SIZE (a device or a huge
    file is refused, not loaded), not a JSON draft, and a roster file, or RosterError
    naming `path` and what is wrong."""
    data = read_bounded(path, MAX_ROSTER_SIZE, "roster", RosterError)
    not_a_draft(path, data)
    try:
        SignedRoster.from_bytes(data)
    except LedgerError as e:  # say which of several files it is
        raise RosterError(f"{path}: {e}") from None
    return data


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


@roster_app.command("init")
def init(
    draft: Annotated[Path, typer.Argument(help="JSON draft: the roster body (see README).")],
    out: Annotated[Path, typer.Option(help="Roster file to write, still unsigned.")],
) -> None:
    """Turn a JSON draft into an unsigned roster file for every Participant to sign."""
    try:
        body = json.loads(draft.read_text())
    except json.JSONDecodeError as e:
        raise RosterError(f"{draft}: not valid JSON: {e.msg} at line {e.lineno}") from e
    roster = Roster.from_body(body)
    if out.exists():
        raise RosterError(f"{out} already exists; refusing to overwrite")
    out.write_bytes(SignedRoster(roster).to_bytes())
    console.print(
        f"wrote roster v{roster.version} of {roster.network} to {out}; "
        f"signatures needed from {', '.join(p.code for p in roster.participants)}"
    )


@roster_app.command("sign")
def sign(
    file: Annotated[Path, typer.Argument(help="Roster file; the signature is added in place.")],
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Add this Participant's signature to a roster file."""
    node = open_data(data)
    signed = SignedRoster.from_bytes(_roster_file(file))
    mine = signed.roster.by_origin(node.origin)
    if mine is None or mine.key != node.signer.verifier:
        raise RosterError(
            f"roster v{signed.roster.version} does not list {node.origin} "
            "with this node's key; refusing to sign"
        )
    _write_atomically(file, signed.sign(node.signer).to_bytes())
    console.print(f"{node.participant} signed roster v{signed.roster.version} ({file})")


@roster_app.command("install")
def install(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="Fully signed roster files, in version order (from v1 for a new directory, "
            "or from the version after the one installed; versions already held, byte for "
            "byte, are skipped).",
        ),
    ],
    v1_sha256: Annotated[
        str | None,
        typer.Option(
            "--v1-sha256",
            metavar="HEX",
            help="SHA-256 that roster v1 must have, as published out of band by the KP "
            "chair/secretariat. Required for an observer's first install; optional for a "
            "Participant, which signed v1 itself.",
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Verify rosters against the chain this node trusts and make the newest the current one.

    The newest must list this data directory: a Participant's log key, or in an observer's
    data directory an observer with exactly its key. That only says the roster names this
    directory; v1's SHA-256 (printed whenever v1 is installed) is what anchors the chain.
    """
    node = open_reading(data)
    if v1_sha256 is not None and not _SHA256_HEX.fullmatch(v1_sha256.strip()):
        raise RosterError(f"--v1-sha256 {v1_sha256!r} is not a SHA-256 (64 hex digits)")
    first = not roster_dir(data).is_dir() or not any(roster_dir(data).glob("v*.roster"))
    given = [_roster_file(f) for f in files]
    if first and given:
        version = SignedRoster.from_bytes(given[0]).roster.version
        if version != 1:
            raise RosterError(
                f"roster v{version}: the first trusted roster must be v1; give v1 first "
                "and the later versions after it, in order"
            )
    if isinstance(node, ObserverDir) and first and v1_sha256 is None:
        raise RosterError(
            "an observer's first install needs --v1-sha256 HEX: v1's SHA-256 as published out "
            "of band by the KP chair/secretariat (an observer signs nothing, so nothing else "
            "tells a real v1 from one made up around its public key); compare with "
            "`sha256sum FILE`"
        )
    done = install_versions(data, given, check_listed(node), v1_sha256)
    roster = done.roster
    for version in done.skipped:
        console.print(f"v{version} already installed")
    if done.v1 is not None:
        signers = ", ".join(f"{p.code} (key id {p.key.key_id.hex()})" for p in done.v1.participants)
        console.print(f"roster v1 SHA-256: {done.v1_sha256}", soft_wrap=True)
        console.print(f"roster v1 signed by its Participants: {signers}", soft_wrap=True)
    who = f"; this directory reads as observer {node.name}" if isinstance(node, ObserverDir) else ""
    if not done.written:
        console.print(f"nothing new installed: the current roster is v{roster.version}{who}")
        return
    console.print(
        f"installed roster v{roster.version} of {roster.network} "
        f"({counted(len(roster.participants), 'participant')}){who}"
    )


def _show(roster: Roster, as_json: bool) -> None:
    """The roster for a person: a table of who is who, then each key whole on a line of its
    own (never cut to the terminal's width nor broken by a table's borders: keys are copied
    from here), as `kimberley log key` prints them; its name says whose it is."""
    if as_json:
        emit_json(roster.to_body())
        return
    table = Table(title=f"{roster.network} roster v{roster.version}")
    for column in ("code", "name", "status", "zones"):
        table.add_column(column)
    longest = max((len(p.url) for p in roster.participants), default=0)
    table.add_column("node", overflow="fold", min_width=min(longest, 40))  # whole, if it fits
    for p in roster.participants:
        zones = "any" if p.zones is None else ", ".join(p.zones)
        table.add_row(p.code, p.name, p.status, zones, p.url)
    console.print(table)
    console.print("log keys:")
    for p in roster.participants:
        console.print(p.key.to_text(), markup=False, soft_wrap=True)
    for o in roster.observers:
        console.print(f"observer (read-only) {o.name}, key:", markup=False, soft_wrap=True)
        console.print(o.key.to_text(), markup=False, soft_wrap=True)


@roster_app.command("show")
def show(data: DataOption = DEFAULT_DATA, as_json: JsonOption = False) -> None:
    """Show the current trusted roster (re-verified from version 1), and v1's SHA-256,
    the chain's anchor, to compare with the one the KP chair publishes."""
    roster = load_roster(data)
    _show(roster, as_json)
    if not as_json:
        console.print(f"roster v1 SHA-256: {sha256_hex(roster_chain(data)[0])}", soft_wrap=True)


@roster_app.command("verify")
def verify(
    trusted: Annotated[Path, typer.Argument(help="Version 1, obtained out of band.")],
    later: Annotated[list[Path] | None, typer.Argument(help="Versions 2, 3, ... in order.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a roster chain from a trusted version 1, with no data directory."""
    anchor = _roster_file(trusted)
    roster = verify_chain(anchor, [_roster_file(p) for p in later or []])
    _show(roster, as_json)
    if not as_json:
        console.print(f"roster v1 SHA-256: {sha256_hex(anchor)}", soft_wrap=True)
