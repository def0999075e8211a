"""Worker processes start with a fork from a preloaded fork server, without running the
caller's main script again (CPython's own preloading of it has never worked)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ledger.fork_server_main import stand_in
from ledger.worker_start import MAIN_ENV, main_spec

#: A main script that notes each time it runs, then replays a log in worker processes.
SCRIPT = """
import os, sys
from pathlib import Path
with open(sys.argv[2], "a") as runs:
    runs.write(f"{os.getpid()} {__name__}\\n")
if __name__ == "__main__":
    from ledger.datadir import DataDir
    from ledger.verify import verify_log
    node = DataDir.init(Path(sys.argv[1]), "BW", "kp.example")
    log = node.own_log()
    log.append_many([("note", {"n": i}) for i in range(300)])
    for _ in range(2):  # a second pool forks from the same fork server
        report = verify_log(node.store, node.signer.verifier, threads=2, processes_from=0)
    print(report.size)
"""


def _run(tmp_path: Path) -> tuple[str, list[str]]:
    script = tmp_path / "replay_main.py"
    script.write_text(textwrap.dedent(SCRIPT))
    runs = tmp_path / "runs.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "bw"), str(runs)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, runs.read_text().splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="no fork server on Windows")
def test_workers_do_not_run_the_main_script_again(tmp_path: Path) -> None:
    out, runs = _run(tmp_path)
    assert out.split() == ["300"]
    # only the caller ran it: no worker of either pool did (each used to, as __mp_main__)
    assert [line.split()[1] for line in runs] == ["__main__"]


def test_the_main_module_is_named_as_multiprocessing_names_it() -> None:
    # under pytest the main module is pytest's own: a file, or a module with -m
    spec = main_spec()
    how, _, where = spec.partition(":")
    assert how in ("path", "name") and where


def test_stand_in_leaves_a_process_with_a_main_script_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAIN_ENV, "path:/nowhere/else.py")
    main = sys.modules["__main__"]
    before = (getattr(main, "__file__", None), getattr(main, "__spec__", None))
    assert before != (None, None)  # pytest runs from a script or a module
    assert stand_in() is False
    assert (getattr(main, "__file__", None), getattr(main, "__spec__", None)) == before
