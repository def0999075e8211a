"""`kimberley demo` end to end: real nodes, the planted faults found, nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import run

#: What the demo runs as a subprocess when a test needs to interrupt it.
_CLI = "from cli.main import main; main()"


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that name `path` (the demo's node processes do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


def test_a_small_demo_trades_traces_audits_and_stops_every_node(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Six Participants: the trace reaches a Botswana mine with every hop verified and its
    bundle verifies offline; the audit finds exactly the planted faults; all nodes stop."""
    code, out, err = run(
        capsys, "demo", "--participants", "6", "--records", "600", "--dir", str(tmp_path)
    )
    assert code == 0, err
    assert "6 Participants (BW, RU, CF, EU, AE, IN)" in out
    assert "violations planted: reused certificate, revaluation, outside zone, forged import" in out
    assert "every one verified" in out
    assert "mined in BW" in out
    assert "verified offline against roster v1 alone" in out
    assert "at least 1 roster Participant other than the log's own" in out
    assert "exactly what was planted" in out
    for rule in ("certificate.unique", "export.zone", "import.proof", "import.once"):
        assert rule in out
    assert "hub-revaluation" in out and "outside-permitted-zone" in out
    # The CAR's doctored export stops its log on every other node, after the entries before it.
    assert re.search(r"│ CF .*│ 0 of 5 nodes .*│ entry [1-9][0-9]* ", out)
    assert "all 6 nodes stopped" in out
    assert (tmp_path / "trace.bundle").is_file()
    assert processes_using(tmp_path) == []


def test_a_demo_interrupted_by_ctrl_c_stops_its_nodes(tmp_path: Path) -> None:
    """SIGINT while the nodes run: one line, exit 130, and no node process left behind."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI,
            "demo",
            "--participants",
            "4",
            "--records",
            "20000",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "logs").is_dir() or len(processes_using(tmp_path)) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the demo's nodes did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the trade is under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):  # a failure here must not leak into later tests
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 130
    assert err.decode().strip().splitlines()[-1] == "interrupted"
    assert processes_using(tmp_path) == []
