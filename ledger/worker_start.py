"""Worker processes that start with a fork: a fork server that holds the workers' modules.

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
from multiprocessing import spawn
from multiprocessing.context import BaseContext

#: What the fork server imports once, for every worker forked from it.
PRELOAD = ("ledger.fork_server_main", "ledger.verify", "ledger.workers")
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
