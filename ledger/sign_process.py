"""A signing process that links long append batches while the appender does everything else.

Signing is most of an append and it is sequential (ledger.chain), so for a long batch the
appending process hands drafts to a child process that holds the log key: the child signs
chunk k while the parent drafts chunk k+1 (canonical bytes) and files chunk k-1 (custody
rules, the tree, the tiles and LMDB). The child is ``python -m ledger.sign_process``,
fed length-prefixed msgpack frames on stdin: first ``[name, seed]``, then
``[prev or nil, [template...], [offset...]]`` per chunk; it answers ``[public_key]``, then
``[[entry...], leaves]`` per chunk. It dies with its pipe, so a killed parent leaves no child
behind, and nothing it signs counts until the parent commits.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import signal
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Generator, Iterator
from contextlib import suppress
from itertools import islice
from pathlib import Path
from typing import IO, Any

import msgpack

from ledger.chain import MAX_SIGNED, Draft, link
from ledger.errors import LedgerError, LogError
from ledger.keys import Signer

#: Drafts per frame: small enough that the pipeline fills fast, big enough to amortise I/O.
CHUNK = 64
#: The first chunk of a batch: the child waits for it, so it is drafted quickly.
FIRST_CHUNK = 16
#: Chunks sent ahead of the one being answered: the child never waits for the next one,
#: even while a stream's batch commits (its fsync took about 5 ms here: 6 x 64 x 20 µs is 7.7).
DEPTH = 6
#: Signing processes kept alive at once, one per log key in use (~20 MB each): a node signs
#: with one key; the demo's generated trade signs for all eleven Participants in turn.
MAX_PROCESSES = 12

_LENGTH = struct.Struct(">I")


def write_frame(out: IO[bytes], value: Any) -> None:
    """Write one length-prefixed msgpack frame and flush it."""
    data = msgpack.packb(value, use_bin_type=True)
    out.write(_LENGTH.pack(len(data)) + data)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """Read one frame; None at a clean end of stream."""
    header = inp.read(_LENGTH.size)
    if not header:
        return None
    if len(header) != _LENGTH.size:
        raise LogError("signing process pipe closed inside a frame header")
    (length,) = _LENGTH.unpack(header)
    data = inp.read(length)
    if len(data) != length:
        raise LogError(f"signing process pipe closed after {len(data)} of {length} bytes")
    return msgpack.unpackb(data, raw=False)


def _pipe_capacity(pipe: IO[bytes] | None) -> int:
    """Bytes the pipe holds before a write blocks (asking Linux for 1 MiB); 4 KiB if unknown."""
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return 4096
    with suppress(OSError):  # over the user's pipe quota: keep the default
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    try:
        return int(fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ))
    except OSError:
        return 4096


class SigningProcess:
    """The parent's handle on one child process signing for one log key."""

    def __init__(self, signer: Signer) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.signer = signer
        self._child = subprocess.Popen(
            [sys.executable, "-m", "ledger.sign_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.broken = False
        self._pipe_room = _pipe_capacity(self._child.stdin) // 2
        _pipe_capacity(self._child.stdout)  # room for the answers to chunks queued ahead
        self._io(write_frame, [signer.name, signer.seed])
        hello = self._io(read_frame)
        if hello != [signer.public_key]:
            self.close()
            raise LogError(f"signing process for {signer.name} did not start: {hello!r}")

    def _io(self, step: Any, *args: Any) -> Any:
        """One frame in or out; any failure leaves the child out of step, so it is stopped."""
        assert self._child.stdin is not None and self._child.stdout is not None
        pipe = self._child.stdin if step is write_frame else self._child.stdout
        try:
            return step(pipe, *args)
        except BaseException as e:
            self.close()
            if isinstance(e, (OSError, ValueError)):
                raise LogError(f"signing process for {self.signer.name} stopped: {e}") from e
            raise

    def _receive(self, count: int) -> tuple[list[bytes], list[bytes]]:
        reply = self._io(read_frame)
        if reply is None:
            self.close()
            raise LogError(f"signing process for {self.signer.name} stopped")
        raws, joined = reply
        if len(raws) != count or len(joined) != 32 * count:
            self.close()
            raise LogError(f"signing process for {self.signer.name} answered out of step")
        return raws, [joined[i : i + 32] for i in range(0, len(joined), 32)]

    def link(
        self, prev: bytes, drafts: Iterator[Draft]
    ) -> Generator[tuple[bytes, bytes], None, None]:
        """Signed entries and leaf hashes for `drafts`, in order, chained from `prev`.

        Up to DEPTH chunks are in flight, so the child always has the next chunk queued
        while this process drafts ahead and consumes results. A second chunk is sent only
        while the unanswered requests fit in half the pipe, so neither side can block on a
        full pipe while the other does too. If drafting or the consumer fails, the chunks
        in flight are drained, so the child stays in step for the next batch.
        """
        pending: deque[tuple[int, int]] = deque()  # (drafts, bytes) sent, not yet answered
        held: list[Draft] = []
        unanswered = 0
        more = True
        start: bytes | None = prev

        def send_ahead() -> None:
            nonlocal held, unanswered, more, start
            while more and len(pending) < DEPTH:
                if not held:
                    # a short first chunk starts the child sooner
                    held = list(islice(drafts, FIRST_CHUNK if start is not None else CHUNK))
                    if not held:
                        more = False
                        return
                size = sum(len(d.template) for d in held)
                if pending and unanswered + size > self._pipe_room:
                    return
                self._send(start, held)
                start = None
                pending.append((len(held), size))
                unanswered += size
                held = []

        try:
            send_ahead()
            while pending:
                count, size = pending[0]
                raws, leaves = self._receive(count)
                pending.popleft()
                unanswered -= size
                # refilled before the results are handed on, so the child has DEPTH chunks
                # queued while the consumer works (e.g. commits a batch of a stream)
                send_ahead()
                yield from zip(raws, leaves, strict=True)
        finally:
            while pending and not self.broken:
                self._receive(pending.popleft()[0])

    def _send(self, prev: bytes | None, drafts: list[Draft]) -> None:
        self._io(write_frame, [prev, [d.template for d in drafts], [d.offset for d in drafts]])

    def alive(self) -> bool:
        """True while the child runs and its pipes are in step."""
        return not self.broken and self._child.poll() is None

    def close(self) -> None:
        """Close the pipe (the child exits at its end) and reap the child."""
        if self.broken and self._child.returncode is not None:
            return
        self.broken = True
        for pipe in (self._child.stdin, self._child.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


_running: dict[bytes, SigningProcess] = {}


def signing_process(signer: Signer) -> SigningProcess:
    """The running signing process for `signer`'s key, started on first use."""
    found = _running.get(signer.public_key)
    if found is not None and found.alive():
        return found
    if found is not None:  # died or fell out of step: reap it and release its pipes
        del _running[signer.public_key]
        found.close()
    while len(_running) >= MAX_PROCESSES:
        _running.pop(next(iter(_running))).close()
    started = _running[signer.public_key] = SigningProcess(signer)
    return started


@atexit.register
def stop_all() -> None:
    """Stop every signing process this process started."""
    while _running:
        _running.popitem()[1].close()


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The child's loop: take the key, then link every chunk it is sent until the pipe ends."""
    hello = read_frame(inp)
    if hello is None:
        return
    name, seed = hello
    signer = Signer(name, seed)
    write_frame(out, [signer.public_key])
    sign, last = signer.sign_function(MAX_SIGNED), b""
    while (frame := read_frame(inp)) is not None:
        prev, templates, offsets = frame
        drafts = map(Draft, templates, offsets)
        raws, leaves = link(sign, last if prev is None else prev, drafts)
        if leaves:
            last = leaves[-1]
        write_frame(out, [raws, b"".join(leaves)])


def main() -> int:
    """Run the child; a failure is one line on stderr (the parent reports the stopped batch)."""
    # Ctrl-C reaches the whole process group: the parent decides; the child ends with its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (LedgerError, OSError, ValueError) as e:
        print(f"kimberley signing process: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
