"""Run once in the fork server (see `ledger.worker_start`): take on the caller's import path
and main module, then load the workers' modules, so each worker forked from it is ready.

What a fixed CPython's fork server does with its default preload (gh-126631, 3.13.8+ and
3.14), done here for every version, and in this order:

1. the caller's ``sys.path`` (CPython 3.11 ignores the one it is given: gh-117378), and
   if this package was first found elsewhere on the default path, it is loaded again
   from the caller's, so workers run the caller's copy of `ledger`;
2. the caller's ``sys.argv`` and main module, imported once as ``__mp_main__`` (its
   ``__main__`` block does not run), so a child finds it loaded and does not run it
   again, and functions the caller defined in it can still be sent to any of its
   fork-server pools;
3. the workers' modules.

Every step is skipped where it fails: a worker then does that work itself, as before.
Only the fork server runs this: importing the module anywhere else does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import sys
import types
from multiprocessing import process, spawn
from typing import Any

#: Where the caller leaves what its fork server should take on: JSON with "path" (its
#: sys.path), "argv" (its sys.argv, which its main module may read as it is imported),
#: "ledger" (where its `ledger` package is) and "main" (see `main_spec`).
CALLER_ENV = "KIMBERLEY_FORK_SERVER"
#: Loaded once by the fork server, for every worker forked from it.
WORKER_MODULES = ("ledger.run_checks", "ledger.verify", "ledger.workers")


def in_fork_server() -> bool:
    """True while multiprocessing's fork server is starting up (loading its preloads)."""
    server = sys.modules.get("multiprocessing.forkserver")
    if server is None:
        return False
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is server.main.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def take_on_caller(caller: dict[str, Any]) -> None:
    """Steps 1 to 3 above, for the caller's `caller` settings."""
    path = caller.get("path")
    if isinstance(path, list) and all(isinstance(p, str) for p in path):
        sys.path[:] = path
    found = getattr(sys.modules.get("ledger"), "__file__", None)
    if caller.get("ledger") and found != caller["ledger"]:
        for name in [n for n in sys.modules if n == "ledger" or n.startswith("ledger.")]:
            del sys.modules[name]  # found elsewhere on the default path: load the caller's
    argv = caller.get("argv")
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        sys.argv[:] = argv
    how, _, main = str(caller.get("main", "")).partition(":")
    with contextlib.suppress(Exception):  # any error of the caller's script: workers meet it
        import_main(how, main)
    for name in WORKER_MODULES:
        with contextlib.suppress(ImportError):
            __import__(name)


def import_main(how: str, main: str) -> None:
    """Import the caller's main module (a file or a module name) as ``__mp_main__`` and
    make it this process's ``__main__``, as a child process would load it. Marked as
    inheriting meanwhile, as multiprocessing marks a child: a script that would start
    processes outside its ``__main__`` block then fails instead of running here."""
    me = process.current_process()
    me._inheriting = True  # type: ignore[attr-defined]
    try:
        if how == "path" and main:
            spawn.import_main_path(main)
        elif how == "name" and main and main != "__main__" and not main.endswith(".__main__"):
            loaded = types.ModuleType("__mp_main__")
            loaded.__dict__.update(runpy.run_module(main, run_name="__mp_main__", alter_sys=True))
            sys.modules["__main__"] = sys.modules["__mp_main__"] = loaded
    finally:
        del me._inheriting  # type: ignore[attr-defined]


def _start() -> None:
    if not in_fork_server():
        return
    try:
        caller = json.loads(os.environ.get(CALLER_ENV, "{}"))
    except ValueError:
        return
    if isinstance(caller, dict):
        take_on_caller(caller)


_start()
