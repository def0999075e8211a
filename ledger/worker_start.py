"""Pools of workers for replays and pulls; worker processes that start with a fork from a
fork server that has loaded the workers' modules.

Replays and pulls check entries in worker processes forked from multiprocessing's fork
server, never from the caller (it holds an open LMDB environment). Left as it is, every
worker ran the caller's main script again before its first task, because the fork
server's own preloading of the main module has never worked before CPython 3.13.8 and
3.14 (gh-126631): here that cost 0.15 s of CPU per worker under a script and 0.5 s under
the `kimberley` command, whose main imports the whole command line, for each pool. With
`worker_context`, the fork server does once what a fixed CPython's does (see
`ledger.fork_server_main`): it takes on the caller's import path, imports its main
module and the workers' modules, so a worker starts with a fork.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing import spawn
from multiprocessing.context import BaseContext

import ledger
from ledger.fork_server_main import CALLER_ENV

#: What the fork server loads first; it loads the rest itself.
PRELOAD = ("ledger.fork_server_main",)


def worker_context() -> BaseContext:
    """The fork server's context, set up as above; spawn where there is no fork server.

    Takes effect when this process's fork server starts, at its first worker process; the
    settings it takes on are left in the environment, written only when they change.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    caller = json.dumps(
        {"path": sys.path, "argv": sys.argv, "ledger": ledger.__file__, "main": main_spec()}
    )
    if os.environ.get(CALLER_ENV) != caller:
        os.environ[CALLER_ENV] = caller
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def main_spec() -> str:
    """How a child process would find this process's main module (as multiprocessing sends
    it to each child): ``path:<file>``, ``name:<module>``, or "" when there is none."""
    data = spawn.get_preparation_data("worker")
    if "init_main_from_path" in data:
        return f"path:{data['init_main_from_path']}"
    if "init_main_from_name" in data:
        return f"name:{data['init_main_from_name']}"
    return ""


@contextmanager
def worker_pool(
    count: int, *, processes: bool, started: threading.Event | None = None
) -> Iterator[Executor]:
    """`count` worker processes (from the fork server, else spawned) or threads.

    Processes never fork this one (it holds an open LMDB environment): the fork server is
    started once, with the workers' modules loaded (`worker_context`), and each pool forks
    its workers from it. The pool lives for the `with` block only: on the way out,
    work not yet started is cancelled and the workers are joined, on success and on error
    alike. Worker processes are started at once, so their start-up overlaps the caller's
    first reads; with `started`, by a thread of their own, which sets it once they are:
    the first start waits for the fork server to load (about 0.1 s), and the caller can
    do other work meanwhile (a submit to the pool waits for it).
    """
    pool: Executor
    launcher = None
    if processes:
        pool = ProcessPoolExecutor(count, mp_context=worker_context())
        if started is None:
            _start_workers(pool, count, None)
        else:
            launcher = threading.Thread(
                target=_start_workers, args=(pool, count, started), name="start-workers"
            )
            launcher.start()
    else:
        pool = ThreadPoolExecutor(count, thread_name_prefix="check")
        if started is not None:
            started.set()
    try:
        yield pool
    finally:
        try:
            if launcher is not None:
                launcher.join()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _start_workers(pool: Executor, count: int, started: threading.Event | None) -> None:
    """Start `pool`'s `count` processes with no-op tasks (one is started per task submitted
    while none idles), then set `started`. A failure to start one is left to the caller's
    next submit, which meets the same broken pool and raises it."""
    try:
        with contextlib.suppress(Exception):  # see above: raised again where it is handled
            for _ in range(count):
                pool.submit(int)
    finally:
        if started is not None:
            started.set()
