"""The node over real HTTP: a uvicorn server on 127.0.0.1 serving every log as C2SP tlog-tiles."""

from __future__ import annotations

import gzip
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.node_cmd import parse_listen
from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.datadir import DataDir
from ledger.errors import LedgerError
from ledger.keys import Signer, Verifier
from ledger.log import Log
from node.serve import accepts_gzip
from node.tlog_tiles import ENTRIES, TileRef, decode_bundle, tiles_for_size
from tests.conftest import mine_body

BW, ZA = "kp.example/BW", "kp.example/ZA"
SIZE = 600  # two full tiles and a partial one of 88 at level 0; a partial of 2 at level 1
STARTUP_SECONDS = 15.0
_SERVER = "import sys; from cli.node_cmd import node_app; node_app(sys.argv[1:])"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_node(data: Path, log_file: Path) -> Iterator[str]:
    """Run `kimberley node serve` in a subprocess; yield its base URL; always stop it."""
    port = free_port()
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVER,
                "serve",
                "--data",
                str(data),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"node exited: {log_file.read_text()}"
            assert time.monotonic() < deadline, f"node not up: {log_file.read_text()}"
            try:
                if httpx.get(f"{base}/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Served:
    """The running node, the entries it holds and the keys that check them."""

    client: httpx.Client
    entries: list[bytes]
    bw: Verifier
    za: Verifier


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A node holding BW's own log of 600 entries and a 3-entry log of ZA, over real HTTP."""
    tmp = tmp_path_factory.mktemp("serve")
    node = DataDir.init(tmp / "bw", "BW", "kp.example")
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(SIZE)])
    entries = list(log.entries())
    za = Signer.generate(ZA)  # a second log in the same store, as sync will hold replicas
    Log(node.store, za.verifier, za).append_many([("parcel.mine", mine_body(i)) for i in range(3)])
    bw = node.signer.verifier
    node.close()
    with (
        running_node(tmp / "bw", tmp / "node.log") as base,
        httpx.Client(base_url=base, trust_env=False) as c,
    ):
        yield Served(c, entries, bw, za.verifier)


def get_ok(client: httpx.Client, path: str) -> httpx.Response:
    """GET a path that must exist."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response


def width_at(size: int, level: int, number: int) -> int:
    """How many hashes tile `number` at tile level `level` holds in a tree of `size`."""
    return min(256, (size >> (8 * level)) - 256 * number)


class TileTree:
    """A tlog-tiles client: tree nodes from fetched tiles, each tile fetched once."""

    def __init__(self, client: httpx.Client, origin: str, size: int) -> None:
        self.client, self.origin, self.size = client, origin, size
        self.tiles: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, number: int) -> bytes:
        if (level, number) not in self.tiles:
            ref = TileRef(level, number, width_at(self.size, level, number))
            data = get_ok(self.client, f"/{self.origin}/{ref.path()}").content
            assert len(data) == 32 * ref.width
            self.tiles[level, number] = data
        return self.tiles[level, number]

    def node(self, level: int, index: int) -> bytes:
        tile_level, sub = divmod(level, 8)
        number, offset = divmod(index << sub, 256)
        tile = self.tile(tile_level, number)
        row = [tile[i : i + 32] for i in range(32 * offset, 32 * (offset + (1 << sub)), 32)]
        while len(row) > 1:
            row = [merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]


def test_checkpoint_is_the_logs_latest_signed_note(served: Served) -> None:
    """GET <origin>/checkpoint returns the note signed by the log key, for the whole log."""
    response = get_ok(served.client, f"/{BW}/checkpoint")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    cp, _ = open_checkpoint(response.content, served.bw)
    assert (cp.origin, cp.size) == (BW, SIZE)


def test_level_zero_tiles_hold_the_leaf_hashes_of_the_bundled_entries(served: Served) -> None:
    """Each level-0 tile lists the RFC 6962 leaf hashes of the entries in the same bundle."""
    seen: list[bytes] = []
    for ref in tiles_for_size(SIZE):
        if ref.level != ENTRIES:
            continue
        data = get_ok(served.client, f"/{BW}/{ref.path()}").content
        bundle = decode_bundle(data, width=ref.width)
        tile = get_ok(served.client, f"/{BW}/{TileRef(0, ref.number, ref.width).path()}").content
        assert [merkle.leaf_hash(e) for e in bundle] == [
            tile[i : i + 32] for i in range(0, len(tile), 32)
        ]
        seen += bundle
    assert seen == served.entries


def test_root_recomputed_from_served_tiles_equals_the_checkpoint_root(served: Served) -> None:
    """A client that only fetches tiles computes the root the checkpoint signs."""
    cp, _ = open_checkpoint(get_ok(served.client, f"/{BW}/checkpoint").content, served.bw)
    tree = TileTree(served.client, BW, cp.size)
    assert merkle.tree_root(cp.size, tree.node) == cp.root
    assert (1, 0) in tree.tiles  # the root used the partial level-1 tile of width 2
    for index in (0, 255, 256, 599):
        proof = merkle.inclusion_proof(index, cp.size, tree.node)
        merkle.verify_inclusion(
            index, cp.size, merkle.leaf_hash(served.entries[index]), proof, cp.root
        )


def test_every_tile_of_the_tree_is_served(served: Served) -> None:
    """Every full and right-edge partial tile and bundle the spec lists for size 600 exists."""
    paths = [ref.path() for ref in tiles_for_size(SIZE)]
    assert "tile/1/000.p/2" in paths
    for path in paths:
        get_ok(served.client, f"/{BW}/{path}")


def test_tiles_are_immutable_and_the_checkpoint_short_lived(served: Served) -> None:
    """Full and partial tiles and bundles are cached a year as immutable; the checkpoint briefly."""
    for path in [
        "tile/0/000",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/001",
        "tile/entries/002.p/88",
    ]:
        response = get_ok(served.client, f"/{BW}/{path}")
        assert response.headers["content-type"] == "application/octet-stream"
        cache = response.headers["cache-control"]
        assert "immutable" in cache and "max-age=31536000" in cache and "public" in cache
    cache = get_ok(served.client, f"/{BW}/checkpoint").headers["cache-control"]
    assert "immutable" not in cache
    max_age = re.search(r"max-age=(\d+)", cache)
    assert "no-cache" in cache or "no-store" in cache or (max_age and int(max_age[1]) <= 10)


def test_entry_bundles_are_gzipped_only_when_the_client_accepts_it(served: Served) -> None:
    """Bundles come gzip-encoded to gzip clients and plain otherwise, with the same entries."""
    path = f"/{BW}/tile/entries/000"
    plain = served.client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with served.client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as zipped:
        raw = b"".join(zipped.iter_raw())
        assert zipped.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in zipped.headers["vary"].lower()
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content)


def test_a_partial_tile_of_an_older_size_is_a_prefix_of_the_stored_tile(served: Served) -> None:
    """A client holding an older checkpoint still gets its partial tiles: prefixes of today's."""
    full = get_ok(served.client, f"/{BW}/tile/0/000").content
    assert get_ok(served.client, f"/{BW}/tile/0/000.p/10").content == full[: 10 * 32]
    bundle = decode_bundle(get_ok(served.client, f"/{BW}/tile/entries/001.p/3").content)
    assert bundle == served.entries[256:259]


@pytest.mark.parametrize(
    "path",
    [
        "/kp.example/XX/checkpoint",  # unknown log
        "/kp.example/XX/tile/0/000",
        f"/{BW}/tile/0/003",  # beyond the tree
        f"/{BW}/tile/0/002",  # the right-edge tile is not full yet
        f"/{BW}/tile/0/002.p/89",  # wider than what exists
        f"/{BW}/tile/entries/002",
        f"/{BW}/tile/entries/002.p/89",
        f"/{BW}/tile/1/000",
        f"/{BW}/tile/2/000.p/1",  # no level 2 at size 600
        f"/{BW}/other",
        "/",
        "/kp.example",
    ],
)
def test_missing_logs_and_tiles_are_404(served: Served, path: str) -> None:
    """Unknown logs, tiles beyond the tree and unknown resources are 404 and not cached."""
    response = served.client.get(path)
    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/2",
        "tile/00/000",
        "tile/0/x000/000",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/entries/000.p/07",
        "tile/99/000",
        "tile/0/000/",
    ],
)
def test_malformed_tile_paths_of_a_known_log_are_400(served: Served, path: str) -> None:
    """A tile path that is not the canonical tlog-tiles spelling is a 400 with the reason."""
    response = served.client.get(f"/{BW}/{path}")
    assert response.status_code == 400
    assert response.text.strip()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [f"/{BW}/checkpoint", f"/{BW}/tile/0/000", "/health", "/x"])
def test_nothing_can_be_written(served: Served, method: str, path: str) -> None:
    """Every method but GET and HEAD is refused with 405, and the log is unchanged."""
    before = get_ok(served.client, f"/{BW}/checkpoint").content
    response = served.client.request(method, path, content=b"tile/0/000")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert get_ok(served.client, f"/{BW}/checkpoint").content == before


def test_head_answers_like_get_without_a_body(served: Served) -> None:
    """HEAD on a tile gives its headers and no body."""
    response = served.client.head(f"/{BW}/tile/0/000")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(8192)
    assert response.content == b""


def test_replica_logs_are_served_alongside_the_own_log(served: Served) -> None:
    """Every log in the store is served under its own origin, with its own checkpoint."""
    cp, _ = open_checkpoint(get_ok(served.client, f"/{ZA}/checkpoint").content, served.za)
    assert (cp.origin, cp.size) == (ZA, 3)
    tree = TileTree(served.client, ZA, cp.size)
    assert merkle.tree_root(cp.size, tree.node) == cp.root
    assert len(decode_bundle(get_ok(served.client, f"/{ZA}/tile/entries/000.p/3").content)) == 3


def test_health_and_metrics_report_each_log(served: Served) -> None:
    """/health is JSON with every log's size; /metrics counts entries and requests served."""
    health = get_ok(served.client, "/health")
    assert health.headers["content-type"] == "application/json"
    assert health.json() == {"status": "ok", "logs": {BW: SIZE, ZA: 3}}
    get_ok(served.client, f"/{BW}/tile/0/000")
    metrics = get_ok(served.client, "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert f'kimberley_log_entries{{origin="{BW}"}} {SIZE}\n' in text
    assert f'kimberley_log_entries{{origin="{ZA}"}} 3\n' in text
    counter = r'kimberley_http_requests_total\{endpoint="tile",code="200"\} (\d+)'
    served_tiles = re.search(counter, text)
    assert served_tiles and int(served_tiles[1]) >= 1
    assert "# TYPE kimberley_http_requests_total counter" in text


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("gzip, deflate", True),
        ("identity", False),
        ("", False),
        ("*", True),
        ("gzip;q=0, *", False),
        ("br, *;q=0.1", True),
        ("GZIP;q=0.5", True),
        ("gzip;q=x", False),
    ],
)
def test_accept_encoding_is_read_with_q_values(header: str, ok: bool) -> None:
    """gzip is used when named or matched by *, unless its q is 0."""
    assert accepts_gzip(header) is ok


def test_listen_addresses_parse_or_fail_with_a_ledger_error() -> None:
    """--listen takes HOST:PORT, bracketed IPv6 too; anything else is one clear error."""
    assert parse_listen("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ["8470", "127.0.0.1:", ":80", "host:0", "host:65536", "host:\uff18\uff10"]:
        with pytest.raises(LedgerError, match="HOST:PORT"):
            parse_listen(bad)
