"""Publish logs as static C2SP tlog-tiles files, for any web server, CDN or object store.

    <out>/<origin>/checkpoint
    <out>/<origin>/tile/<L>/<N>[.p/<W>]
    <out>/<origin>/tile/entries/<N>[.p/<W>]

The same paths and bytes as the node serves (`node.serve`), so a plain static server
over `out` answers like the node does. Each log is published at the size of its latest
stored checkpoint: every tile and bundle of that tree (full ones and the right-edge
partial ones), then the checkpoint, last, so a reader who sees a checkpoint finds every
tile it needs.

Incremental and append-only: the bytes at a tile path never change (a partial tile has
its width in its path), so a file already there is kept, never rewritten, and old partial
tiles stay for clients holding an older checkpoint. Each file is written to a temporary
name, fsynced and renamed into place, so a crash leaves a tile absent or whole, never
short. A checkpoint older than the one already published is refused (no rollback).

Each tile is read in its own short LMDB snapshot: the tiles of a checkpointed size never
change as the log grows, so publishing a large log never pins old pages for long.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError, LogError, NoteError, StoreError
from ledger.held_logs import resolve_origin
from ledger.note import Note
from ledger.store import Store, tile_key
from ledger.tiles import HASH_SIZE
from node.tlog_tiles import TileRef, encode_bundle, tiles_for_size

#: progress(done, total): files considered so far, over every log being published.
Progress = Callable[[int, int], None]
#: Mode of published files: readable by the web server, whatever the temp file's mode.
FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Published:
    """What one log's publication did: its size, and files written versus already there."""

    origin: str
    size: int
    written: int
    kept: int
    bytes_written: int
    checkpoint_written: bool


@dataclass(frozen=True, slots=True)
class PublishReport:
    """Every log published in one run, into `out_dir`."""

    out_dir: Path
    logs: tuple[Published, ...]

    @property
    def written(self) -> int:
        """Files written in this run, checkpoints included."""
        return sum(log.written for log in self.logs)

    @property
    def kept(self) -> int:
        """Files that were already published and left untouched."""
        return sum(log.kept for log in self.logs)


@dataclass(frozen=True, slots=True)
class _Plan:
    origin: str
    log_id: bytes
    note: bytes
    size: int


def publish(
    data_dir: Path, out_dir: Path, origin: str | None = None, *, progress: Progress | None = None
) -> PublishReport:
    """Publish every log in `data_dir` (or only `origin`) under `out_dir`; see the module doc."""
    store = Store(data_dir / "store")
    try:
        plans = _plans(store, origin)
        total = sum(sum(1 for _ in tiles_for_size(p.size)) + 1 for p in plans)
        done = [0]

        def step() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        logs = tuple(_publish_log(store, p, log_dir(out_dir, p.origin), step) for p in plans)
    finally:
        store.close()
    return PublishReport(out_dir, logs)


def log_dir(out_dir: Path, origin: str) -> Path:
    """Where `origin`'s files go; refuses origins that would climb out of `out_dir`."""
    parts = origin.split("/")
    if any(p in {"", ".", ".."} or "\\" in p or "\x00" in p for p in parts):
        raise LogError(f"origin {origin!r} cannot be used as a path under {out_dir}")
    return out_dir.joinpath(*parts)


def _plans(store: Store, only: str | None) -> list[_Plan]:
    """Each log to publish, with its latest checkpoint and that checkpoint's size."""
    plans: list[_Plan] = []
    with store.read() as txn:
        origins = store.origins(txn)
        if only is not None:
            origins = [resolve_origin(origins, only)]  # `BW` or `kp.example/BW`
        for origin in origins:
            log_id = store.log_id(txn, origin)
            assert log_id is not None
            note = store.latest_checkpoint(txn, log_id)
            if note is None:
                if only is not None:
                    raise LogError(f"{origin} has no checkpoint yet; nothing to publish")
                continue
            cp = _parse_checkpoint(note)
            if cp.origin != origin:
                raise LogError(f"the checkpoint stored for {origin} names {cp.origin}")
            if cp.size > store.head(txn, log_id).size:
                raise StoreError(f"{origin}'s checkpoint is ahead of its entries")
            plans.append(_Plan(origin, log_id, note, cp.size))
    return plans


def _publish_log(store: Store, plan: _Plan, root: Path, step: Callable[[], None]) -> Published:
    """Write the missing tiles of one log, then its checkpoint."""
    old = root / "checkpoint"
    if old.exists():
        published = _parse_checkpoint(old.read_bytes())
        if published.size > plan.size:
            raise LogError(
                f"{root} already holds {plan.origin} at size {published.size}; "
                f"refusing to roll it back to {plan.size}"
            )
    written = kept = nbytes = 0
    dirs: set[Path] = set()
    for ref in tiles_for_size(plan.size):
        path = root / ref.path()
        if path.exists():
            kept += 1
        else:
            data = _read_tile(store, plan.log_id, ref)
            write_atomic(path, data)
            dirs.update(p for p in path.parents if p.is_relative_to(root))
            written, nbytes = written + 1, nbytes + len(data)
        step()
    for directory in dirs:  # renames and new directories are durable before the checkpoint
        _fsync_dir(directory)
    fresh = not old.exists() or old.read_bytes() != plan.note
    if fresh:
        write_atomic(old, plan.note)
        _fsync_dir(root)
        written, nbytes = written + 1, nbytes + len(plan.note)
    else:
        kept += 1
    step()
    return Published(plan.origin, plan.size, written, kept, nbytes, fresh)


def _read_tile(store: Store, log_id: bytes, ref: TileRef) -> bytes:
    """The bytes of one hash tile or entry bundle, from a short snapshot."""
    with store.read() as txn:
        if ref.is_bundle:
            return encode_bundle(store.entries(txn, log_id, ref.start, ref.start + ref.width))
        stored = txn.get(tile_key(log_id, ref.level, ref.number), db=store.db("tiles"))
        need = ref.width * HASH_SIZE
        if stored is None or len(stored) < need:
            raise StoreError(f"tile {ref.path()} is missing below the checkpointed size")
        return bytes(stored[:need])


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` at `path` via a synced temporary file and a rename: whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_checkpoint(note: bytes) -> Checkpoint:
    """The checkpoint in a signed note, unverified: only its size and origin are used here."""
    try:
        return Checkpoint.parse(Note.from_bytes(note).text)
    except NoteError as e:
        raise LedgerError(f"unreadable checkpoint: {e}") from e
