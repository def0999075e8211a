"""An auditor end to end against real nodes on 127.0.0.1: `kimberley sync` in an observer's
data directory pulls every Participant's log from its node, signing as the observer, and
`kimberley audit` replays them; nodes whose roster does not list the observer refuse it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.local import LocalNodes, free_port
from tests.test_cli import run
from tests.test_custody_cli import _actor, _export, _import, _mine, cli
from tests.test_observer import (
    NET,
    anchor,
    init_observer,
    init_participants,
    install,
    signed_roster,
)

CODES = ["BW", "EU", "IN"]


def health(url: str) -> dict[str, int]:
    """The sizes of the logs a node holds (/health is open to anyone)."""
    logs: dict[str, int] = httpx.get(f"{url}/health", timeout=5, trust_env=False).json()["logs"]
    return logs


@pytest.fixture
def served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[dict[str, str], LocalNodes]]:
    """BW, EU and IN served by real nodes (no peer rounds: each serves its own log) under a
    roster v1 that lists the auditor kp-monitoring, whose data directory has it installed.
    Also an observer civil-society, admitted in a roster v2 that the nodes have not installed."""
    ports = {code: free_port() for code in CODES}
    urls = {code: f"http://127.0.0.1:{port}" for code, port in ports.items()}
    dirs = init_participants(tmp_path, capsys, CODES)
    obs, key = init_observer(tmp_path, capsys)
    civil, civil_key = init_observer(tmp_path, capsys, "civil-society")
    v1 = signed_roster(tmp_path, capsys, dirs, urls, {"KP Monitoring": key})
    install(capsys, v1, [*dirs.values(), obs])
    observers = {"KP Monitoring": key, "Civil Society": civil_key}
    v2 = signed_roster(tmp_path, capsys, dirs, urls, observers, version=2)
    cli(capsys, "roster", "install", v1, v2, *anchor(v1), "--data", civil)
    nodes = LocalNodes(
        {code: Path(path) for code, path in dirs.items()},
        ports,
        sync_every=0,
        log_dir=tmp_path / "logs",
    )
    with nodes:
        yield (
            (
                {f"data:{c}": d for c, d in dirs.items()}
                | {f"url:{c}": nodes.url(c) for c in CODES}
                | {"obs": obs, "civil": civil, "v2": v2, "tmp": str(tmp_path)}
            ),
            nodes,
        )


@pytest.fixture
def network(served: tuple[dict[str, str], LocalNodes]) -> dict[str, str]:
    """The paths and URLs of `served`."""
    return served[0]


def _trade(network: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """BW mines two parcels and exports one to the EU, which imports it, and one to India,
    which never confirms it."""
    bw, eu, tmp = network["data:BW"], network["data:EU"], network["tmp"]
    _actor(capsys, bw, "BW-MINE-1", "mine")
    _actor(capsys, bw, "BW-EXP-1", "exporter")
    _mine(capsys, bw, "BW-P-1", "BW-MINE-1", "120.50", "18000", "2026-03-01", "BW")
    _mine(capsys, bw, "BW-P-2", "BW-MINE-1", "80", "9000", "2026-03-02", "BW")
    _export(capsys, bw, "BW-2026-000001", "BW-EXP-1", "EU", ["BW-P-1"], "18000", f"{tmp}/eu.proof")
    _export(capsys, bw, "BW-2026-000002", "BW-EXP-1", "IN", ["BW-P-2"], "9000", f"{tmp}/in.proof")
    _actor(capsys, eu, "EU-IMP-1", "importer")
    _import(capsys, eu, f"{tmp}/eu.proof", "EU-IMP-1", "2026-03-07")
    _actor(capsys, network["data:IN"], "IN-IMP-1", "importer")


def test_an_observer_syncs_every_log_from_the_nodes_and_audits_them(
    served: tuple[dict[str, str], LocalNodes], capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync` with no --peer pulls each log from its owner's node as the roster names it;
    the audit of the observer's directory finds nothing before the export to India is due
    and exactly that overdue export after; a node that is down is one line, exit 1."""
    network, nodes = served
    _trade(network, capsys)
    obs = network["obs"]
    sizes = {origin: size for c in CODES for origin, size in health(network[f"url:{c}"]).items()}
    assert set(sizes) == {f"{NET}/{c}" for c in CODES}

    out = cli(capsys, "sync", "--data", obs, "--json")
    assert {r["origin"]: (r["before"], r["after"]) for r in json.loads(out)} == {
        origin: (0, size) for origin, size in sizes.items()
    }

    code, out, _ = run(capsys, "audit", "--as-of", "2026-03-20", "--json", "--data", obs)
    report = json.loads(out)
    assert (code, report["total"], report["findings"]) == (0, 0, [])
    assert {log["origin"]: log["replayed"] for log in report["logs"]} == sizes

    code, out, _ = run(capsys, "audit", "--as-of", "2026-06-01", "--json", "--data", obs)
    report = json.loads(out)
    assert code == 1
    assert [(f["rule"], f["origin"], f["index"]) for f in report["findings"]] == [
        ("export.overdue", f"{NET}/BW", 5)
    ]

    traced = json.loads(cli(capsys, "trace", "BW-2026-000001", "--json", "--data", obs))
    assert "BW-MINE-1" in json.dumps(traced)

    # India's node goes down while Botswana appends: BW is still pulled, IN is one line.
    _actor(capsys, network["data:BW"], "BW-EXP-2", "exporter")
    nodes.processes["IN"].terminate()
    nodes.processes["IN"].wait(timeout=10)
    code, out, err = run(capsys, "sync", "--data", obs)
    assert code == 1
    assert f"{NET}/BW: 6 -> 7 entries verified" in out
    assert f"{NET}/EU: 2 -> 2 entries verified" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {NET}/IN: ")


def test_nodes_refuse_an_observer_their_roster_does_not_list(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """civil-society is on roster v2, which the nodes have not installed: every node answers
    401, the sync prints one line per log saying the keyid is no roster member, exits 1 and
    stores nothing. Once the nodes install v2, the same sync pulls every log."""
    _trade(network, capsys)
    civil = network["civil"]
    code, out, err = run(capsys, "sync", "--data", civil)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == len(CODES)
    for code_, line in zip(CODES, lines, strict=True):
        assert line.startswith(f"error: {NET}/{code_}: ")
        assert "HTTP 401: keyid 'civil-society' is not a roster member" in line
    assert json.loads(cli(capsys, "log", "show", "--json", "--data", civil)) == []

    install(capsys, network["v2"], [network[f"data:{c}"] for c in CODES])
    out = cli(capsys, "sync", "--data", civil, "--json")
    assert sorted(r["origin"] for r in json.loads(out)) == [f"{NET}/{c}" for c in CODES]
