"""Pools of workers for replays and pulls; worker processes that start with a fork from a
fork server that holds the workers' modules.

Replays and pulls check entries in worker processes forked from multiprocessing's fork
server, never from the caller (it holds an open LMDB environment). Left as it is, every
worker ran the caller's main script again before its first task, because the fork
server's own preloading of the main module has never worked (CPython gh-126631, fixed in
3.13 and later point releases): here that cost 0.15 s of CPU per worker under a script
and 0.5 s under the `kimberley` command, whose main imports the whole command line, for
each pool. With `worker_context`, the fork server imports the workers' modules once and
stands in for the caller's main module (`ledger.fork_server_main`), so a worker starts
with a fork and runs no main script: it only ever runs functions of `ledger`.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing import spawn
from multiprocessing.context import BaseContext

#: What the fork server imports once, for every worker forked from it.
PRELOAD = ("ledger.fork_server_main", "ledger.run_checks", "ledger.verify", "ledger.workers")
#: Where the caller tells its fork server its main module: ``path:<file>`` or ``name:<module>``.
MAIN_ENV = "KIMBERLEY_WORKER_MAIN"


def worker_context() -> BaseContext:
    """The fork server's context, preloaded as above; spawn where there is no fork server.

    Takes effect when this process's fork server starts, at its first worker process.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    os.environ[MAIN_ENV] = main_spec()
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
    started once, with the workers' modules loaded (`ledger.worker_start`), and each pool
    forks its workers from it. The pool lives for the `with` block only: on the way out,
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
        if launcher is not None:
            launcher.join()
        pool.shutdown(wait=True, cancel_futures=True)


def _start_workers(pool: Executor, count: int, started: threading.Event | None) -> None:
    """Start `pool`'s `count` processes with no-op tasks (one is started per task submitted
    while none idles), then set `started`."""
    try:
        for _ in range(count):
            pool.submit(int)
    finally:
        if started is not None:
            started.set()
