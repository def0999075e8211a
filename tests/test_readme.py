"""The README's hand example runs as written: what a new user types first must work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def hand_example() -> str:
    """The shell block that follows "Example, by hand" in the README."""
    text = README.read_text()
    found = re.search(r"Example, by hand.*?```sh\n(.*?)```", text, re.S)
    assert found is not None, "the README lost its hand example"
    return found.group(1)


@pytest.mark.skipif(shutil.which("bash") is None, reason="the example is a bash script")
def test_the_readmes_hand_example_runs_and_proves_its_entry(tmp_path: Path) -> None:
    """Every command of the example exits 0, in order, and the last proves the production."""
    script = hand_example().replace("/tmp/bw", str(tmp_path / "bw"))
    assert "kimberley log append" not in script  # a raw append would poison a network's log
    scripts = Path(sys.executable).parent  # where pip put the `kimberley` command
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mined BW-JW-2026-0001: 12500.00 ct (entry 1)" in done.stdout
    assert done.stdout.rstrip().endswith("ok: entry 1 is in kp.example/BW at size 2")
