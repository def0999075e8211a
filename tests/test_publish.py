"""Static publication: the files a plain web server hands out are the node's bytes, written once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.node_cmd import tiles_app
from ledger.checkpoint import open_checkpoint
from ledger.datadir import DataDir
from ledger.errors import LogError
from node.publish import log_dir, publish
from node.tlog_tiles import tiles_for_size
from tests.conftest import mine_body
from tests.test_serve import running_node

BW = "kp.example/BW"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """Python's stdlib http.server over `root` on 127.0.0.1; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` as its relative path -> (inode, mtime in ns)."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def append(data: Path, start: int, count: int) -> None:
    """Append `count` production records to BW's log, then release the store."""
    node = DataDir.open(data)
    try:
        node.own_log().append_many([("parcel.mine", mine_body(start + i)) for i in range(count)])
    finally:
        node.close()


def assert_same_bytes(node_url: str, static_url: str, paths: list[str]) -> None:
    """The node and the static server answer each path with the same 200 body."""
    with (
        httpx.Client(base_url=node_url, trust_env=False) as node,
        httpx.Client(base_url=static_url, trust_env=False) as static,
    ):
        for path in paths:
            from_node, from_static = node.get(f"/{path}"), static.get(f"/{path}")
            assert (from_node.status_code, from_static.status_code) == (200, 200), path
            assert from_node.content == from_static.content, path


def test_published_files_match_the_node_and_only_new_ones_are_written(tmp_path: Path) -> None:
    """A static server over the output answers like the node; republishing adds only new files."""
    data, out = tmp_path / "bw", tmp_path / "www"
    node = DataDir.init(data, "BW", "kp.example")
    node.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(600)])
    key = node.signer.verifier
    node.close()

    first = publish(data, out)
    assert [(log.origin, log.size) for log in first.logs] == [(BW, 600)]
    assert first.written == sum(1 for _ in tiles_for_size(600)) + 1 == 8
    before = files_under(out)
    assert "kp.example/BW/tile/0/002.p/88" in before

    with (
        # a network that publishes its tiles statically is public: the node serves them unsigned
        running_node(data, tmp_path, "--public") as node_url,
        static_server(out) as static_url,
    ):
        assert_same_bytes(node_url, static_url, sorted(before))
        append(data, 600, 200)  # the node keeps serving while the log grows
        second = publish(data, out)
        after = files_under(out)
        new = sorted(set(after) - set(before))
        assert new == sorted(
            f"{BW}/{p}"
            for p in [
                "tile/0/002",
                "tile/0/003.p/32",
                "tile/entries/002",
                "tile/entries/003.p/32",
                "tile/1/000.p/3",
            ]
        )
        assert second.written == len(new) + 1  # and the checkpoint
        assert {p: after[p] for p in before if not p.endswith("checkpoint")} == {
            p: v for p, v in before.items() if not p.endswith("checkpoint")
        }
        assert_same_bytes(node_url, static_url, sorted(after))
        with httpx.Client(trust_env=False) as client:
            cp, _ = open_checkpoint(client.get(f"{static_url}/{BW}/checkpoint").content, key)
        assert cp.size == 800

    third = publish(data, out)
    assert (third.written, third.kept) == (0, sum(1 for _ in tiles_for_size(800)) + 1)
    assert files_under(out) == after
    assert not [p for p in after if ".tmp-" in p]


def test_an_older_checkpoint_is_not_published_over_a_newer_one(tmp_path: Path) -> None:
    """Publishing a smaller tree of the same origin into the output is refused (no rollback)."""
    big = DataDir.init(tmp_path / "big", "BW", "kp.example")
    big.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(5)])
    big.close()
    small = DataDir.init(tmp_path / "small", "BW", "kp.example")
    small.own_log().append("parcel.mine", mine_body(0))
    small.close()
    publish(tmp_path / "big", tmp_path / "www")
    with pytest.raises(LogError, match="roll it back"):
        publish(tmp_path / "small", tmp_path / "www")


def test_only_the_named_origin_is_published(tmp_path: Path) -> None:
    """--origin limits publication to that log; an unknown origin is a LogError naming the logs."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    node.own_log().append("parcel.mine", mine_body(0))
    node.close()
    report = publish(tmp_path / "bw", tmp_path / "www", BW)
    assert [log.origin for log in report.logs] == [BW]
    report = publish(tmp_path / "bw", tmp_path / "www", "bw")  # its code alone, as elsewhere
    assert [log.origin for log in report.logs] == [BW]
    with pytest.raises(LogError, match=r"kp\.example/BW"):
        publish(tmp_path / "bw", tmp_path / "www", "kp.example/ZA")


@pytest.mark.parametrize("origin", ["../etc", "a/../../b", "/abs", "a//b", "a\\b"])
def test_origins_cannot_escape_the_output_directory(tmp_path: Path, origin: str) -> None:
    """An origin that would name a path outside the output directory is refused."""
    with pytest.raises(LogError, match="cannot be used as a path"):
        log_dir(tmp_path, origin)


def test_cli_publish_prints_a_json_summary(tmp_path: Path) -> None:
    """`kimberley tiles publish OUT --json` reports each log's size and files written."""
    node = DataDir.init(tmp_path / "bw", "BW", "kp.example")
    node.own_log().append_many([("parcel.mine", mine_body(i)) for i in range(300)])
    node.close()
    args = ["publish", str(tmp_path / "www"), "--data", str(tmp_path / "bw"), "--json"]
    result = CliRunner().invoke(tiles_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["written"] == 6  # 1 full + 1 partial tile and bundle, tile/1 .p/1, checkpoint
    assert summary["logs"][0]["origin"] == BW
    assert summary["logs"][0]["size"] == 300
    again = json.loads(CliRunner().invoke(tiles_app, args).stdout)
    assert (again["written"], again["kept"]) == (0, 6)
