"""Sync: a node pulls a peer's log over real HTTP or from a static mirror, trusting none of it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from ledger.datadir import DataDir
from ledger.entry import parse_entry, seal, sign_entry
from ledger.errors import EncodingError, IntegrityError, NoteError, PeerError, ProofError
from ledger.keys import Signer
from ledger.read_ahead import ReadAhead
from ledger.replica import Replica
from ledger.roster_files import install_roster
from ledger.verify import verify_log
from ledger.worker_start import worker_pool
from node.sources import DirectorySource, HttpSource, SyncLimits
from node.sync import pull
from node.tlog_tiles import decode_bundle, encode_bundle
from tests.conftest import mine_body
from tests.test_serve import roster_of, running_node, signed_by


def publish(data: Path, out: Path) -> None:
    """Publish a node's logs as static files from another process, as an operator would."""
    code = "import sys; from pathlib import Path; from node.publish import publish; "
    code += "publish(Path(sys.argv[1]), Path(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, str(data), str(out)], check=True, timeout=60)


@pytest.fixture
def bw(tmp_path: Path) -> Iterator[DataDir]:
    """Botswana's node with 700 entries in three commits."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    log = node.own_log()
    for start, stop in ((0, 300), (300, 600), (600, 700)):
        log.append_many([("parcel.mine", mine_body(i)) for i in range(start, stop)])
    yield node
    node.close()


@pytest.fixture
def eu(tmp_path: Path) -> Iterator[DataDir]:
    """The EU node that pulls Botswana's log."""
    node = DataDir.init(tmp_path / "eu", "EU", "kp.example")
    yield node
    node.close()


def test_a_node_pulls_a_peers_log_over_http_and_catches_up_later(
    bw: DataDir, eu: DataDir, tmp_path: Path
) -> None:
    """A pull from a running node rebuilds the log exactly; a later pull fetches only the new.

    BW's node serves roster members only; the EU signs its requests with its log key.
    """
    limits = SyncLimits(batch_entries=256)
    keys = {bw.origin: bw.signer, eu.origin: eu.signer}
    install_roster(bw.path, signed_by(roster_of(keys), keys).to_bytes(), bw.signer.verifier)
    with running_node(bw.path, tmp_path) as base:
        anonymous = HttpSource(base, bw.origin, limits)
        with pytest.raises(PeerError, match="HTTP 401"):
            pull(eu.store, bw.signer.verifier, anonymous)
        anonymous.close()
        source = HttpSource(base, bw.origin, limits, signer=eu.signer)
        first = pull(eu.store, bw.signer.verifier, source, limits=limits)
        assert (first.before, first.after) == (0, 700)
        bw.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(700, 1000)])
        second = pull(eu.store, bw.signer.verifier, source, limits=limits)
        assert (second.before, second.after) == (700, 1000)
        third = pull(eu.store, bw.signer.verifier, source, limits=limits)
        assert (third.before, third.after) == (1000, 1000)
        source.close()
    replica = Replica(eu.store, bw.signer.verifier)
    assert replica.root() == bw.own_log().root()
    assert verify_log(eu.store, bw.signer.verifier, threads=2).size == 1000


def test_a_static_mirror_is_a_source_like_any_other(
    bw: DataDir, eu: DataDir, tmp_path: Path
) -> None:
    """`tiles publish` output on disk syncs to the same verified replica."""
    publish(bw.path, tmp_path / "mirror")
    report = pull(eu.store, bw.signer.verifier, DirectorySource(tmp_path / "mirror", bw.origin))
    assert report.after == 700
    assert Replica(eu.store, bw.signer.verifier).root() == bw.own_log().root()


def _hostile(
    bw: DataDir, tmp_path: Path, change: Callable[[str, bytes], bytes | None]
) -> HttpSource:
    """A peer serving Botswana's published mirror through `change(path, body)` (None = 404)."""
    publish(bw.path, tmp_path / "mirror")
    root = tmp_path / "mirror"

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.lstrip("/")
        file = root / path
        if not file.is_file():
            return httpx.Response(404)
        body = change(path.split(bw.origin + "/", 1)[1], file.read_bytes())
        return httpx.Response(404) if body is None else httpx.Response(200, content=body)

    limits = SyncLimits(retries=1, batch_entries=256)
    return HttpSource("http://peer.test", bw.origin, limits, transport=httpx.MockTransport(handler))


def _flip_in_bundle(path: str, body: bytes) -> bytes:
    if path.startswith("tile/entries/001"):
        changed = bytearray(body)
        changed[100] ^= 0x01
        return bytes(changed)
    return body


def _in_bundle(edit: Callable[[list[bytes]], list[bytes]]) -> Callable[[str, bytes], bytes]:
    """A change that edits the entries of bundle 1 (entries 256-511) and re-encodes it."""

    def change(path: str, body: bytes) -> bytes:
        if not path.startswith("tile/entries/001"):
            return body
        return encode_bundle(edit(decode_bundle(body)))

    return change


def _swap(entries: list[bytes]) -> list[bytes]:
    entries[10], entries[11] = entries[11], entries[10]
    return entries


def _duplicate(entries: list[bytes]) -> list[bytes]:
    entries[11] = entries[10]
    return entries


def _bad_signature(entries: list[bytes]) -> list[bytes]:
    entry = parse_entry(entries[10])
    entries[10] = seal(entry.payload, bytes(64))
    return entries


def _signed_by_another_participant(entries: list[bytes]) -> list[bytes]:
    """Entry 266 with its exact payload, signed by South Africa's key instead of Botswana's."""
    za = Signer.generate("kp.example/ZA")
    entries[10] = sign_entry(za, parse_entry(entries[10]).payload)
    return entries


def _closes_mid_response(path: str, body: bytes) -> bytes:
    if path.startswith("tile/entries/001"):
        raise httpx.RemoteProtocolError("peer closed the connection mid-response")
    return body


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (_flip_in_bundle, IntegrityError),
        (_in_bundle(_swap), IntegrityError),
        (_in_bundle(_duplicate), IntegrityError),
        (_in_bundle(_bad_signature), IntegrityError),
        (_in_bundle(_signed_by_another_participant), IntegrityError),
        (_closes_mid_response, PeerError),
        (lambda p, b: b[:-7] if p.startswith("tile/entries/") else b, EncodingError),
        (lambda p, b: b + b"\x00\x01x" if p.startswith("tile/entries/000") else b, EncodingError),
        (
            lambda p, b: b.replace(b"kp.example/BW", b"kp.example/ZA") if p == "checkpoint" else b,
            NoteError,
        ),
        (lambda p, b: None if p.startswith("tile/entries/002") else b, PeerError),
        (lambda p, b: b[:32] + bytes(32) + b[64:] if p.startswith("tile/1/000") else b, ProofError),
        (lambda p, b: b * 400 if p == "checkpoint" else b, PeerError),
    ],
    ids=[
        "flipped-entry-byte",
        "reordered-entries",
        "duplicated-entry",
        "bad-signature",
        "signed-by-another-participant",
        "closed-mid-response",
        "truncated-bundle",
        "padded-bundle",
        "checkpoint-of-another-log",
        "missing-bundle",
        "forged-tree-hash",
        "oversized-checkpoint",
    ],
)
def test_a_hostile_peer_gets_nothing_stored_beyond_what_verified(
    bw: DataDir,
    eu: DataDir,
    tmp_path: Path,
    change: Callable[[str, bytes], bytes | None],
    error: type[Exception],
) -> None:
    """Each fault is refused with a typed error; what is stored is only ever a verified prefix."""
    source = _hostile(bw, tmp_path, change)
    with pytest.raises(error):
        pull(eu.store, bw.signer.verifier, source, limits=source.limits)
    replica = Replica(eu.store, bw.signer.verifier)
    size = replica.size()
    assert size < 700
    if size:
        assert replica.root(size) == bw.own_log().root(size)
        assert verify_log(eu.store, bw.signer.verifier, threads=2).size == size


def test_a_rolled_back_checkpoint_changes_nothing(bw: DataDir, eu: DataDir, tmp_path: Path) -> None:
    """A peer that later serves an older checkpoint cannot shrink or alter the replica."""
    publish(bw.path, tmp_path / "mirror")
    pull(eu.store, bw.signer.verifier, DirectorySource(tmp_path / "mirror", bw.origin))
    older = bw.own_log().checkpoint(600)
    (tmp_path / "mirror" / bw.origin / "checkpoint").write_bytes(older)
    report = pull(eu.store, bw.signer.verifier, DirectorySource(tmp_path / "mirror", bw.origin))
    assert (report.before, report.after, report.checkpoint_size) == (700, 700, 600)
    assert Replica(eu.store, bw.signer.verifier).size() == 700


def test_a_stalled_peer_times_out(bw: DataDir, eu: DataDir) -> None:
    """A peer that never answers is abandoned after the timeout, with nothing stored."""

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("stalled", request=request)

    limits = SyncLimits(retries=2, backoff=0.01)
    source = HttpSource("http://peer.test", bw.origin, limits, transport=httpx.MockTransport(stall))
    with pytest.raises(PeerError, match="stalled"):
        pull(eu.store, bw.signer.verifier, source, limits=limits)
    assert Replica(eu.store, bw.signer.verifier).size() == 0


def test_a_mirror_file_that_is_not_a_regular_file_is_refused(bw: DataDir, tmp_path: Path) -> None:
    """A checkpoint that is a link to a device is refused instead of read without end."""
    root = tmp_path / "mirror" / bw.origin
    root.mkdir(parents=True)
    (root / "checkpoint").symlink_to("/dev/zero")
    with pytest.raises(PeerError, match="not a regular file"):
        DirectorySource(tmp_path / "mirror", bw.origin).fetch("checkpoint", 65536)


def test_a_peer_that_drips_bytes_is_abandoned(bw: DataDir, eu: DataDir) -> None:
    """A response that keeps trickling past the whole-fetch deadline is given up on."""

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            while True:
                time.sleep(0.05)
                yield b"x"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Drip())

    limits = SyncLimits(retries=1, fetch_seconds=0.3)
    source = HttpSource(
        "http://peer.test", bw.origin, limits, transport=httpx.MockTransport(handler)
    )
    started = time.monotonic()
    with pytest.raises(PeerError, match="longer than"):
        pull(eu.store, bw.signer.verifier, source, limits=limits)
    assert time.monotonic() - started < 5


def test_sync_asks_for_uncompressed_responses(bw: DataDir, eu: DataDir, tmp_path: Path) -> None:
    """The puller asks for identity encoding, so its size limits count real bytes."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(404)

    source = HttpSource(
        "http://peer.test", bw.origin, SyncLimits(retries=1), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(PeerError):
        source.fetch("checkpoint", 1024)
    assert seen == ["identity"]


def _spy_pools(monkeypatch: pytest.MonkeyPatch) -> list[Executor]:
    """Record every worker pool `pull` opens, to look at it once the pull is over."""
    pools: list[Executor] = []

    @contextmanager
    def spy(
        count: int, *, processes: bool, started: threading.Event | None = None
    ) -> Iterator[Executor]:
        with worker_pool(count, processes=processes, started=started) as pool:
            pools.append(pool)
            yield pool

    monkeypatch.setattr("node.sync.worker_pool", spy)
    return pools


def _finished(pools: list[Executor]) -> bool:
    """True when every pool refuses new work and no read-ahead thread is left running."""
    for pool in pools:
        with pytest.raises(RuntimeError, match="shutdown"):
            pool.submit(int)
    return not any(t.name == "read-ahead" for t in threading.enumerate())


def test_a_pipelined_pull_names_the_first_bad_entry_of_a_later_batch(
    bw: DataDir, eu: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked in worker processes while the batches before are stored, a bad signature at
    522 (third batch of 256) is reported at 522, and exactly the two batches before it kept."""
    pools = _spy_pools(monkeypatch)

    def bad_522(path: str, body: bytes) -> bytes:
        if not path.startswith("tile/entries/002"):
            return body
        return encode_bundle(_bad_signature(decode_bundle(body)))

    source = _hostile(bw, tmp_path, bad_522)
    limits = replace(source.limits, batch_entries=256, processes_from=0, batches_ahead=3)
    with pytest.raises(IntegrityError) as caught:
        pull(eu.store, bw.signer.verifier, source, limits=limits)
    assert caught.value.index == 522 and "signature" in str(caught.value)
    assert isinstance(pools[0], ProcessPoolExecutor) and _finished(pools)
    assert Replica(eu.store, bw.signer.verifier).size() == 512
    assert verify_log(eu.store, bw.signer.verifier, threads=2).size == 512


def test_a_peer_closing_mid_pipeline_leaves_only_whole_verified_batches(
    bw: DataDir, eu: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch of bundle 2 fails while the two batches before it are still being checked:
    both are stored (in order, with progress reported), nothing after them."""
    pools = _spy_pools(monkeypatch)

    def closes(path: str, body: bytes) -> bytes:
        if path.startswith("tile/entries/002"):
            raise httpx.RemoteProtocolError("peer closed the connection mid-response")
        return body

    source = _hostile(bw, tmp_path, closes)
    limits = replace(source.limits, batch_entries=256, processes_from=0)
    seen: list[int] = []
    with pytest.raises(PeerError, match="closed"):
        pull(
            eu.store,
            bw.signer.verifier,
            source,
            limits=limits,
            progress=lambda d, _: seen.append(d),
        )
    assert seen == [256, 512] and _finished(pools)
    assert Replica(eu.store, bw.signer.verifier).root() == bw.own_log().root(512)


def test_a_progress_callback_that_stops_the_pull_leaves_no_workers_behind(
    bw: DataDir, eu: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raising from `progress` (how a stopping node leaves) ends the pull after that batch;
    the pull resumes from there later, and its pool and read-ahead are gone both times."""
    pools = _spy_pools(monkeypatch)
    publish(bw.path, tmp_path / "mirror")
    source = DirectorySource(tmp_path / "mirror", bw.origin)
    limits = SyncLimits(batch_entries=256, processes_from=0)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt(f"stopped at {done} of {total}")

    with pytest.raises(KeyboardInterrupt, match="stopped at 256 of 700"):
        pull(eu.store, bw.signer.verifier, source, limits=limits, progress=stop)
    assert Replica(eu.store, bw.signer.verifier).size() == 256 and _finished(pools)
    assert pull(eu.store, bw.signer.verifier, source, limits=limits).before == 256
    assert len(pools) == 2 and _finished(pools)
    assert Replica(eu.store, bw.signer.verifier).root() == bw.own_log().root()


def test_a_small_pull_checks_in_threads(
    bw: DataDir, eu: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below `processes_from` entries no process is started."""
    pools = _spy_pools(monkeypatch)
    publish(bw.path, tmp_path / "mirror")
    pull(eu.store, bw.signer.verifier, DirectorySource(tmp_path / "mirror", bw.origin))
    assert [type(p) for p in pools] == [ThreadPoolExecutor] and _finished(pools)


def test_read_ahead_delivers_items_in_order_then_the_error_and_stops_when_left() -> None:
    """Fetching runs ahead in a thread: the reader gets every item before the failure, in
    order, and leaving early stops the thread even while it waits on a full queue."""

    def fetches() -> Iterator[int]:
        yield from range(3)
        raise PeerError("bundle 3: HTTP 500")

    got: list[int] = []
    with pytest.raises(PeerError, match="bundle 3"), ReadAhead(fetches(), 1) as items:
        got.extend(items)
    assert got == [0, 1, 2]

    fetched: list[int] = []

    def endless() -> Iterator[int]:
        for n in range(1_000_000):
            fetched.append(n)
            yield n

    with ReadAhead(endless(), 2) as items:
        assert next(items) == 0
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
    assert len(fetched) <= 5
