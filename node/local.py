"""A network of real nodes on this machine: one `kimberley node serve` process per data directory.

Used by the demo (and usable by anyone trying the system out): every node listens on
127.0.0.1, syncs and witnesses the others through the URLs of the installed roster, and is
stopped when the context ends, whether it ends normally, by an error or by Ctrl-C. A node
that exits early or does not answer `/health` in time is an error naming it and its log file.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from ledger.errors import PeerError

#: What each node process runs: the CLI's own entry point.
_COMMAND = "from cli.main import main; main()"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalNodes:
    """Node processes for `data_dirs` (code -> directory) on the given loopback `ports`.

    `options` are passed to every `node serve` (e.g. ``--public``); `sync_every` 0 turns
    the nodes' peer rounds off.
    """

    def __init__(
        self,
        data_dirs: Mapping[str, Path],
        ports: Mapping[str, int],
        *,
        sync_every: float,
        log_dir: Path,
        startup_seconds: float = 30.0,
        options: Sequence[str] = (),
    ) -> None:
        self.data_dirs = dict(data_dirs)
        self.ports = dict(ports)
        self.sync_every = sync_every
        self.options = tuple(options)
        self.log_dir = log_dir
        self.startup_seconds = startup_seconds
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, code: str) -> str:
        """The base URL of `code`'s node."""
        return f"http://127.0.0.1:{self.ports[code]}"

    def log_file(self, code: str) -> Path:
        """Where `code`'s node writes its output."""
        return self.log_dir / f"node-{code.lower()}.log"

    def __enter__(self) -> LocalNodes:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for code, data in self.data_dirs.items():
                with self.log_file(code).open("wb") as log:
                    self.processes[code] = subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _COMMAND,
                            "node",
                            "serve",
                            "--data",
                            str(data),
                            "--listen",
                            f"127.0.0.1:{self.ports[code]}",
                            "--sync-every",
                            str(self.sync_every),
                            *self.options,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_seconds
        waiting = set(self.processes)
        with httpx.Client(timeout=1, trust_env=False) as client:
            while waiting:
                for code in sorted(waiting):
                    if self.processes[code].poll() is not None:
                        raise PeerError(
                            f"the {code} node exited at start ({self._last_words(code)}); "
                            f"see {self.log_file(code)}"
                        )
                    try:
                        if client.get(f"{self.url(code)}/health").status_code == 200:
                            waiting.discard(code)
                    except httpx.TransportError:
                        pass
                if waiting and time.monotonic() > deadline:
                    raise PeerError(
                        f"nodes {', '.join(sorted(waiting))} did not answer within "
                        f"{self.startup_seconds:.0f} s; see {self.log_dir}"
                    )
                time.sleep(0.05)

    def _last_words(self, code: str) -> str:
        lines = self.log_file(code).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s) and reap it."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def running(self) -> list[str]:
        """Codes of the nodes still running."""
        return [code for code, p in self.processes.items() if p.poll() is None]
