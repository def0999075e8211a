"""The roster commands as a new user meets them: a JSON draft given where the signed file
belongs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import run
from tests.test_custody_cli import PARTICIPANTS, init_network

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
