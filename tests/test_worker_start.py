"""Worker processes start with a fork from a fork server that has loaded the caller's main
module once, from the caller's own import path (CPython's own preloading of it has never
worked before 3.13.8: gh-126631)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ledger
from ledger import fork_server_main
from ledger.fork_server_main import CALLER_ENV, in_fork_server
from ledger.worker_start import main_spec

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork server on Windows")

#: A main script that notes each time it runs, replays a log in worker processes twice,
#: then sends one of its own functions to a fork-server pool of its own.
SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
with open(sys.argv[2], "a") as runs:
    runs.write(f"{os.getpid()} {__name__}\\n")

def where(n):
    import ledger
    return n * n, ledger.__file__

if __name__ == "__main__":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from ledger.datadir import DataDir
    from ledger.verify import verify_log
    from ledger.worker_start import worker_pool
    node = DataDir.init(Path(sys.argv[1]), "BW", "kp.example")
    node.own_log().append_many([("note", {"n": i}) for i in range(300)])
    for _ in range(2):  # a second pool forks from the same fork server
        report = verify_log(node.store, node.signer.verifier, threads=2, processes_from=0)
    with worker_pool(1, processes=True) as pool:
        squared, used = pool.submit(where, 7).result()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=context) as other:
        other_squared, _ = other.submit(where, 8).result()
    import ledger
    print(report.size, squared, other_squared, used == ledger.__file__)
"""


def _run(tmp_path: Path, package_dir: Path, cwd: Path) -> tuple[list[str], list[str]]:
    script = tmp_path / "replay_main.py"
    script.write_text(textwrap.dedent(SCRIPT))
    runs = tmp_path / "runs.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", CALLER_ENV)}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "bw"), str(runs), str(package_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), runs.read_text().splitlines()


def test_the_main_script_runs_once_in_the_fork_server_not_in_each_worker(
    tmp_path: Path,
) -> None:
    out, runs = _run(tmp_path, REPO, REPO)
    assert out == ["300", "49", "64", "True"]
    # the caller ran it, and the fork server imported it once (its __main__ block aside);
    # four workers in two pools used to run it once more each
    assert sorted(line.split()[1] for line in runs) == ["__main__", "__mp_main__"]


def test_workers_run_the_callers_copy_of_the_package(tmp_path: Path) -> None:
    """A second copy of the code, first on the caller's path (a worktree, a benchmark run
    from another checkout), is what the workers run, not the one installed."""
    copy = tmp_path / "copy"
    shutil.copytree(Path(ledger.__file__).parent, copy / "ledger")
    out, _ = _run(tmp_path, copy, Path("/"))
    assert out == ["300", "49", "64", "True"]


def test_the_main_module_is_named_as_multiprocessing_names_it() -> None:
    how, _, where = main_spec().partition(":")
    main = sys.modules["__main__"]
    if getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
        assert how == ""  # run from a -c command or a REPL: nothing to name
    else:
        assert how in ("path", "name") and where


def test_only_the_fork_server_takes_on_the_callers_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CALLER_ENV, json.dumps({"path": ["/nowhere"], "main": "path:/x.py"}))
    path, main = list(sys.path), sys.modules["__main__"]
    assert not in_fork_server()
    fork_server_main._start()
    assert sys.path == path and sys.modules["__main__"] is main


def test_the_kimberley_script_loads_the_command_line_only_when_run() -> None:
    """The fork server imports the `kimberley` script once per command that starts worker
    processes; its entry module must not pull in the command line (typer, rich, the node),
    which the workers never use."""
    heavy = ("cli", "typer", "rich", "node")
    probe = f"import sys, cli.entry; print([m for m in sys.modules if m.split('.')[0] in {heavy}])"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    assert sorted(done.stdout.strip()[1:-1].replace("'", "").split(", ")) == ["cli", "cli.entry"]
