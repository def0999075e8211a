"""The node over real HTTP: a uvicorn server on 127.0.0.1 serving every log as C2SP tlog-tiles."""

from __future__ import annotations

import gzip
import re
import secrets
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from cli.node_cmd import parse_listen
from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.datadir import DataDir
from ledger.errors import LedgerError
from ledger.keys import Signer, Verifier
from ledger.log import Log
from ledger.roster import Observer, Participant, Roster, SignedRoster
from ledger.roster_files import install_roster
from node.auth import (
    RequestParts,
    SignatureAuth,
    SignatureParams,
    parse_dictionary,
    sign_parts,
    sign_request,
)
from node.local import LocalNodes, free_port
from node.serve import ListenError, accepts_gzip, listen_sockets
from node.tlog_tiles import ENTRIES, TileRef, decode_bundle, tiles_for_size
from tests.conftest import mine_body

BW, ZA = "kp.example/BW", "kp.example/ZA"
CF, NA = "kp.example/CF", "kp.example/NA"  # on the roster: CF suspended, NA suspended in v2
SIZE = 600  # two full tiles and a partial one of 88 at level 0; a partial of 2 at level 1
STARTUP_SECONDS = 15.0


@contextmanager
def running_node(
    data: Path, log_dir: Path, *options: str, port: int | None = None, sync_every: float = 0
) -> Iterator[str]:
    """Run `kimberley node serve` in a subprocess; yield its base URL; always stop it.

    Peer sync is off unless `sync_every` is set (test rosters name hosts that must never
    be contacted). Its output goes to `log_dir`/node-node.log.
    """
    nodes = LocalNodes(
        {"node": data},
        {"node": port or free_port()},
        sync_every=sync_every,
        log_dir=log_dir,
        startup_seconds=STARTUP_SECONDS,
        options=options,
    )
    with nodes:
        yield nodes.url("node")


@dataclass
class Served:
    """The running node, the entries it holds and the keys that check them."""

    client: httpx.Client
    entries: list[bytes] = field(repr=False)
    bw: Verifier
    za: Verifier
    base: str = ""
    data: Path = Path()
    keys: dict[str, Signer] = field(default_factory=dict)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A node holding BW's own log of 600 entries and a 3-entry log of ZA, over real HTTP.

    Its roster lists BW, ZA, NA, CF (suspended) and an observer; the client signs as ZA.
    """
    tmp = tmp_path_factory.mktemp("serve")
    node = DataDir.init(tmp / "bw", "BW", "kp.example")
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(SIZE)])
    entries = list(log.entries())
    za = Signer.generate(ZA)  # a second log in the same store, as sync will hold replicas
    Log(node.store, za.verifier, za).append_many([("parcel.mine", mine_body(i)) for i in range(3)])
    bw = node.signer.verifier
    keys = {BW: node.signer, ZA: za, CF: Signer.generate(CF), NA: Signer.generate(NA)}
    keys["observer"] = Signer.generate("kp-monitoring")
    roster = roster_of(keys, CF=True)
    install_roster(tmp / "bw", signed_by(roster, keys).to_bytes(), bw)
    node.close()
    with (
        running_node(tmp / "bw", tmp) as base,
        httpx.Client(base_url=base, trust_env=False, auth=SignatureAuth(za)) as c,
    ):
        yield Served(c, entries, bw, za.verifier, base, tmp / "bw", keys)


def roster_of(keys: dict[str, Signer], version: int = 1, **suspended: bool) -> Roster:
    """A roster of the Participant keys in `keys` (named <network>/<code>) and the observer."""
    participants = tuple(
        Participant(
            code,
            f"Authority of {code}",
            ("BE", "FR") if code == "EU" else (code,),
            signer.verifier,
            f"https://{code.lower()}.kp.example/",
            "suspended" if suspended.get(code) else "active",
        )
        for name, signer in keys.items()
        if (code := name.rpartition("/")[2]) and name != "observer"
    )
    observers = tuple(Observer("KP", k.verifier) for n, k in keys.items() if n == "observer")
    return Roster("kp.example", version, participants, observers)


def signed_by(roster: Roster, keys: dict[str, Signer]) -> SignedRoster:
    """`roster` signed by every Participant key in `keys`."""
    signed = SignedRoster(roster)
    for name, signer in keys.items():
        if name != "observer":
            signed = signed.sign(signer)
    return signed


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
        assert "immutable" in cache and "max-age=31536000" in cache
        assert "private" in cache  # signed reads: no shared cache may keep them
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
    assert response.headers["cache-control"] == "no-store"
    assert get_ok(served.client, f"/{BW}/checkpoint").content == before


def test_a_refused_method_is_an_error_like_any_other_and_counted(served: Served) -> None:
    """A signed POST, PUT, DELETE or OPTIONS of a checkpoint gets a 405 saying what is
    allowed, not to be stored by any cache, and /metrics counts it under the checkpoint."""
    counter = r'kimberley_http_requests_total\{endpoint="checkpoint",code="405"\} (\d+)'

    def counted() -> int:
        found = re.search(counter, get_ok(served.client, "/metrics").text)
        return 0 if found is None else int(found[1])

    before = counted()
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = served.client.request(method, f"/{BW}/checkpoint")
        assert response.status_code == 405
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["allow"] == "GET, HEAD"
        assert response.text == f"{method} is not allowed here: GET, HEAD only\n"
    assert counted() == before + 4


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


NODE_SERVE = (sys.executable, "-c", "from cli.main import main; main()", "node", "serve")


def test_serving_on_an_address_in_use_is_one_error_line_and_nothing_starts(
    tmp_path: Path,
) -> None:
    """`node serve` on a port another socket listens on exits 1 with one error line naming
    the address, before the app (and its peer sync) starts; uvicorn logs nothing."""
    DataDir.init(tmp_path / "bw", "BW", "kp.example").close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [*NODE_SERVE, "--data", str(tmp_path / "bw"), "--listen", listen, "--sync-every", "1"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: cannot listen on {listen}: address already in use\n"


# -- who may read: RFC 9421 signatures checked against the roster ----------------------------


def signed_get(
    served: Served, signer: Signer, path: str, *, now: int | None = None
) -> httpx.Request:
    """A GET of `path` on the served node, signed by `signer` (at `now`, default the clock)."""
    request = httpx.Request("GET", served.base + path)
    sign_request(request, signer, now=now)
    return request


def send(request: httpx.Request) -> httpx.Response:
    """Send a prepared request as is, with no client-side auth."""
    with httpx.Client(trust_env=False) as client:
        return client.send(request)


def test_members_signed_reads_are_served(served: Served) -> None:
    """A Participant, an observer and the node's own key each read the checkpoint."""
    for who in (ZA, "observer", BW):
        response = send(signed_get(served, served.keys[who], f"/{BW}/checkpoint"))
        assert response.status_code == 200, (who, response.text)
        assert open_checkpoint(response.content, served.bw)[0].size == SIZE


@pytest.mark.parametrize("path", [f"/{BW}/checkpoint", f"/{BW}/tile/0/000", "/metrics", "/x"])
def test_unsigned_requests_are_401_except_health(served: Served, path: str) -> None:
    """Without a signature nothing but /health answers; the 401 says what to sign."""
    with httpx.Client(base_url=served.base, trust_env=False) as anonymous:
        response = anonymous.get(path)
        assert response.status_code == 401
        assert "not signed" in response.text
        assert '"@method"' in response.headers["accept-signature"]
        assert response.headers["cache-control"] == "no-store"
        assert anonymous.get("/health").status_code == 200
    refused = r'kimberley_http_requests_total\{endpoint="refused",code="401"\} [1-9]'
    assert re.search(refused, get_ok(served.client, "/metrics").text)


def test_keys_not_on_the_roster_are_401(served: Served) -> None:
    """A stranger's key, or another key under a member's name, is refused."""
    stranger = send(signed_get(served, Signer.generate("kp.example/XX"), f"/{BW}/checkpoint"))
    assert (stranger.status_code, "not a roster member" in stranger.text) == (401, True)
    impostor = send(signed_get(served, Signer.generate(ZA), f"/{BW}/checkpoint"))
    assert (impostor.status_code, "does not verify" in impostor.text) == (401, True)


def test_a_suspended_participant_is_403(served: Served) -> None:
    """CF is on the roster, suspended: its valid signature earns a 403."""
    response = send(signed_get(served, served.keys[CF], f"/{BW}/checkpoint"))
    assert response.status_code == 403
    assert "suspended" in response.text


def test_a_replayed_or_stale_signature_is_401(served: Served) -> None:
    """The same signed request twice, or one created 10 minutes ago or ahead, is refused."""
    request = signed_get(served, served.keys[ZA], f"/{BW}/checkpoint")
    assert send(request).status_code == 200
    again = send(request)
    assert (again.status_code, "already used" in again.text) == (401, True)
    for skew in (-600, 600):
        old = signed_get(served, served.keys[ZA], f"/{BW}/checkpoint", now=int(time.time()) + skew)
        assert send(old).status_code == 401


def test_a_stale_signature_is_401_saying_which_way_the_clocks_differ(served: Served) -> None:
    """A request created 400 s ago hears "400 s ago"; one 400 s ahead, "in the future"."""
    now = int(time.time())
    behind = send(signed_get(served, served.keys[ZA], f"/{BW}/checkpoint", now=now - 400))
    assert behind.status_code == 401
    assert re.search(
        r", 40\d s ago by this node's clock \(allowed: 300 s either way\)", behind.text
    )
    ahead = send(signed_get(served, served.keys[ZA], f"/{BW}/checkpoint", now=now + 400))
    assert ahead.status_code == 401
    assert re.search(r", (39\d|400) s in the future by this node's clock", ahead.text)


def signed_as_hinted(hint: str, signer: Signer, url: str) -> httpx.Request:
    """A GET of `url` signed as an RFC 9421 client reads a 401's Accept-Signature `hint`:
    covering exactly the components it lists, with the parameters it names."""
    [(inner, params)] = parse_dictionary(hint, "Accept-Signature").values()
    assert isinstance(inner, tuple)
    assert [k for k, _ in params] == ["created", "nonce", "keyid", "alg"]
    request = httpx.Request("GET", url)
    parts = RequestParts.from_httpx(request)
    signature = SignatureParams.make(
        (str(c) for c, _ in inner),
        created=int(time.time()),
        nonce=secrets.token_urlsafe(16),
        keyid=signer.name,
    )
    request.headers.update(sign_parts(parts, signature, signer))
    return request


@pytest.mark.parametrize("path", [f"/{BW}/checkpoint", f"/{BW}/checkpoint?fresh=1"])
def test_a_request_signed_as_the_401_hint_says_is_served(served: Served, path: str) -> None:
    """Following the Accept-Signature of a 401 gets the same request in, query or not."""
    with httpx.Client(trust_env=False) as anonymous:
        refused = anonymous.get(served.base + path)
    assert refused.status_code == 401
    hint = refused.headers["accept-signature"]
    response = send(signed_as_hinted(hint, served.keys[ZA], served.base + path))
    assert response.status_code == 200, response.text
    assert open_checkpoint(response.content, served.bw)[0].size == SIZE


def test_a_signature_over_another_path_is_401(served: Served) -> None:
    """Headers signed for ZA's checkpoint do not open BW's."""
    genuine = signed_get(served, served.keys[ZA], f"/{ZA}/checkpoint")
    tampered = httpx.Request(
        "GET",
        f"{served.base}/{BW}/checkpoint",
        headers={k: genuine.headers[k] for k in ("signature-input", "signature")},
    )
    response = send(tampered)
    assert (response.status_code, "does not verify" in response.text) == (401, True)


def test_a_roster_update_takes_effect_while_the_node_runs(served: Served) -> None:
    """NA reads until roster v2 suspends it; from then on the running node answers 403."""
    assert send(signed_get(served, served.keys[NA], f"/{BW}/checkpoint")).status_code == 200
    v2 = roster_of(served.keys, version=2, CF=True, NA=True)
    install_roster(served.data, signed_by(v2, served.keys).to_bytes(), served.bw)
    assert send(signed_get(served, served.keys[NA], f"/{BW}/checkpoint")).status_code == 403
    assert send(signed_get(served, served.keys[ZA], f"/{BW}/checkpoint")).status_code == 200


def test_a_public_node_serves_unsigned_reads_only(tmp_path: Path) -> None:
    """With --public, GETs need no signature and stay publicly cacheable; POSTs still do."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    node.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(3)])
    node.close()
    with (
        running_node(tmp_path / "bw", tmp_path, "--public") as base,
        httpx.Client(base_url=base, trust_env=False) as anonymous,
    ):
        response = anonymous.get(f"/{BW}/tile/entries/000.p/3")
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("public")
        assert anonymous.head(f"/{BW}/checkpoint").status_code == 200
        assert anonymous.post("/add-checkpoint", content=b"old 0\n\n").status_code == 401


@dataclass
class Probe:
    """A client that signs nothing by itself, the node's URL, and keys to sign with."""

    client: httpx.Client
    base: str
    keys: dict[str, Signer]


@pytest.fixture(scope="module")
def probe(served: Served) -> Iterator[Probe]:
    """The served node's members' keys plus a stranger's and an impostor's (another ZA key)."""
    keys = served.keys | {"stranger": Signer.generate("kp.example/XX")}
    keys["impostor"] = Signer.generate(ZA)
    with httpx.Client(trust_env=False) as client:
        yield Probe(client, served.base, keys)


REQUEST_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]
PATH_TEXT = st.text(
    alphabet=string.ascii_letters + string.digits + "/._-~%:@!$&'()*+,;=", max_size=40
)
PATHS = st.one_of(
    PATH_TEXT.map(lambda p: "/" + p),
    st.sampled_from(
        [
            f"/{BW}/checkpoint",
            f"/{BW}/tile/0/000",
            f"/{BW}/tile/entries/000.p/5",
            f"/{ZA}/tile/1/000.p/1",
            "/add-checkpoint",
            "/metrics",
            "/health",
            "/heal%74h",
        ]
    ),
    st.tuples(st.sampled_from([f"/{BW}/", f"/{ZA}/", "/kp.example/"]), PATH_TEXT).map("".join),
)
HEADER_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
).map(str.strip)  # HTTP itself forbids leading and trailing spaces in a field value
HEADERS = st.dictionaries(
    st.sampled_from(
        ["signature-input", "signature", "accept-encoding", "content-type", "date", "x-extra"]
    ),
    st.one_of(
        HEADER_VALUE,
        st.sampled_from(['sig=("@method" "@path");created=1;keyid="kp.example/ZA"', "sig=:AA==:"]),
    ),
    max_size=3,
)
SIGNERS = st.sampled_from([ZA, "observer", None, CF, "stranger", "impostor"])


@given(
    method=st.one_of(
        st.just("GET"),
        st.sampled_from(REQUEST_METHODS),
        st.text(alphabet=string.ascii_uppercase, min_size=1, max_size=8).filter(
            lambda m: m != "CONNECT"
        ),
    ),
    path=PATHS,
    query=st.one_of(st.none(), st.text(alphabet=string.ascii_letters + "=&%", max_size=12)),
    headers=HEADERS,
    body=st.binary(max_size=300),
    who=SIGNERS,
)
def test_no_request_makes_the_node_fail_or_lets_a_stranger_in(
    probe: Probe,
    method: str,
    path: str,
    query: str | None,
    headers: dict[str, str],
    body: bytes,
    who: str | None,
) -> None:
    """Random methods, paths, headers and bodies, signed or not: never a 5xx; no 200 without a
    member's signature except /health; a suspended member gets only 403."""
    url = probe.base + path + ("" if query is None else "?" + query)
    request = probe.client.build_request(method, url, headers=headers, content=body)
    if who is not None:
        sign_request(request, probe.keys[who])
    response = probe.client.send(request)
    event(f"{who}: {response.status_code}")
    assert response.status_code < 500, (method, url, response.status_code, response.text)
    if unquote(request.url.path) == "/health":
        return
    if who in (None, "stranger", "impostor"):
        assert response.status_code == 401, (method, url, response.status_code)
    if who == CF:
        assert response.status_code == 403, (method, url, response.status_code)


def test_nothing_any_caller_sent_changed_a_log(served: Served) -> None:
    """After every request the tests sent, the node still holds exactly the logs it started with."""
    health = httpx.get(served.base + "/health", trust_env=False).json()
    assert health["logs"] == {BW: SIZE, ZA: 3}
    checkpoint = get_ok(served.client, f"/{BW}/checkpoint").content
    assert open_checkpoint(checkpoint, served.bw)[0].size == SIZE


def test_an_address_family_this_host_lacks_is_skipped_when_another_binds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that also resolves to a family the host cannot make sockets of (IPv6 switched
    off) is served on the other, as uvicorn's asyncio did; with none left, one ListenError."""
    real = socket.getaddrinfo
    lacking = (9999, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))  # no such family here

    def resolve(host: str | None, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [lacking, *real("127.0.0.1", port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    sockets = listen_sockets("localhost", 0)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET]
    finally:
        for s in sockets:
            s.close()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [lacking])
    with pytest.raises(ListenError, match="no address of it can be used on this host"):
        listen_sockets("localhost", 0)
