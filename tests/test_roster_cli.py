"""The roster commands as a new user meets them: a JSON draft given where the signed file
belongs, and keys shown whole whatever the terminal's width."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import run
from tests.test_custody_cli import PARTICIPANTS, cli, init_network

URLS = {code: f"https://node.{code.lower()}.kp.example:8470" for code in PARTICIPANTS}


@pytest.fixture
def network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Four Participants sharing roster v1; their draft is at `tmp_path/draft.json`."""
    return init_network(tmp_path, capsys, URLS)


def test_a_json_draft_given_for_a_roster_file_says_how_to_make_one(
    network: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """install, sign, verify and verify-bundle --trust each name a JSON draft for what it is
    and the commands that make a signed roster of it, not its count of "trailing bytes"."""
    draft = str(tmp_path / "draft.json")
    said = (
        f"error: {draft} looks like a JSON roster draft, not a signed roster file: make one "
        f"with `kimberley roster init {draft} --out FILE` and have every Participant sign FILE "
        "with `kimberley roster sign FILE`\n"
    )
    bundle = tmp_path / "some.bundle"
    bundle.write_bytes(b"whatever")  # read before the trusted roster
    for args in [
        ("roster", "install", draft, "--data", network["BW"]),
        ("roster", "sign", draft, "--data", network["BW"]),
        ("roster", "verify", draft),
        ("verify-bundle", str(bundle), "--trust", draft),
    ]:
        code, out, err = run(capsys, *args)
        assert code != 0 and out == ""
        assert err == said, args
    indented = tmp_path / "indented.json"
    indented.write_text("\n  " + (tmp_path / "draft.json").read_text()[:40])  # cut short
    code, _, err = run(capsys, "roster", "verify", str(indented))
    assert code == 1 and "looks like a JSON roster draft" in err


@pytest.mark.parametrize("columns", ["80", "200"])
def test_roster_show_prints_every_key_and_node_whole(
    network: dict[str, str], capsys: pytest.CaptureFixture[str], columns: str
) -> None:
    """On a terminal 80 or 200 columns wide, each log key is one whole line (ready to copy)
    and each node URL is shown uncut."""
    keys = [cli(capsys, "log", "key", "--data", path).strip() for path in network.values()]
    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "roster", "show", "--data", network["EU"]],
        env={**os.environ, "COLUMNS": columns},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = shown.splitlines()
    for key in keys:
        assert key in lines
    for url in URLS.values():
        assert url in shown
    assert "…" not in shown


def test_a_roster_file_that_is_huge_or_broken_is_named_in_one_line(
    network: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file over the roster size limit is refused without being read whole, and among
    several files given, the one that is not a roster file is the one the error names."""
    huge = tmp_path / "huge.roster"
    with huge.open("wb") as f:
        f.truncate((1 << 20) + 1)  # sparse: over the limit without writing it
    code, out, err = run(capsys, "roster", "verify", str(huge))
    assert (code, out) == (1, "")
    assert err == (
        f"error: roster {huge} is over the 1,048,576-byte limit: not a Kimberley roster file\n"
    )
    broken = tmp_path / "broken.roster"
    broken.write_bytes(b"\x92\xc4\x01x")
    v1 = str(tmp_path / "roster-v1.roster")  # the network's, installed already
    code, _, err = run(capsys, "roster", "install", v1, str(broken), "--data", network["BW"])
    assert code == 1 and err.startswith(f"error: {broken}: ") and err.count("\n") == 1
