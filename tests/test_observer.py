"""An observer's (auditor's) data directory through the CLI: init, roster install, the refusals
of what needs an own log, and the read commands on logs it synced from a static mirror."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from ledger.datadir import DataDir
from ledger.errors import LogError, ObserverDirError, PeerError, RosterError
from ledger.held_logs import resolve_origin
from ledger.keys import Signer, Verifier
from ledger.observer_dir import ObserverDir
from ledger.roster import Observer, Participant, Roster, SignedRoster
from ledger.roster_files import load_roster
from ledger.roster_membership import check_observer
from node.pull_logs import logs_to_pull, roster_sources
from node.sources import HttpSource, SyncLimits
from tests.test_cli import run
from tests.test_custody_cli import _actor, _export, _import, _mine, cli

NET = "kp.example"
AUDITOR = "kp-monitoring"
NAMES = {"BW": "Botswana", "EU": "European Union", "IN": "India"}
COUNTRIES = {"BW": ["BW"], "EU": ["BE", "NL"], "IN": ["IN"]}


def init_participants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codes: list[str]
) -> dict[str, str]:
    """A Participant data directory per code (code -> path)."""
    dirs = {code: str(tmp_path / code.lower()) for code in codes}
    for code, path in dirs.items():
        cli(capsys, "init", "--participant", code, "--network", NET, "--data", path)
    return dirs


def init_observer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str = AUDITOR
) -> tuple[str, str]:
    """An observer's data directory named `name`: (path, the key text init printed)."""
    path = str(tmp_path / f"obs-{name}")
    out = cli(capsys, "init", "--observer", name, "--network", NET, "--data", path, "--json")
    return path, json.loads(out)["key"]


def signed_roster(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dirs: dict[str, str],
    urls: dict[str, str],
    observers: dict[str, str],
    version: int = 1,
) -> str:
    """A roster file of `version` listing `dirs`' Participants at `urls` and `observers`
    (display name -> key text), signed by every Participant."""
    draft = {
        "network": NET,
        "version": version,
        "threshold": None,
        "observers": [{"name": name, "key": key} for name, key in observers.items()],
        "participants": [
            {
                "code": code,
                "name": NAMES[code],
                "countries": COUNTRIES[code],
                "key": cli(capsys, "log", "key", "--data", path).strip(),
                "url": urls[code],
                "status": "active",
                "zones": None,
            }
            for code, path in dirs.items()
        ],
    }
    draft_file = tmp_path / f"draft-v{version}.json"
    draft_file.write_text(json.dumps(draft))
    roster = str(tmp_path / f"roster-v{version}.roster")
    cli(capsys, "roster", "init", str(draft_file), "--out", roster)
    for path in dirs.values():
        cli(capsys, "roster", "sign", roster, "--data", path)
    return roster


def anchor(v1: str) -> list[str]:
    """``--v1-sha256`` with the hash of the v1 file `v1`, which an observer's first install
    needs (as published out of band)."""
    return ["--v1-sha256", hashlib.sha256(Path(v1).read_bytes()).hexdigest()]


def install(capsys: pytest.CaptureFixture[str], roster: str, dirs: list[str]) -> None:
    """Install `roster` in every data directory of `dirs` (a v1 with its hash)."""
    first = SignedRoster.from_bytes(Path(roster).read_bytes()).roster.version == 1
    for path in dirs:
        cli(capsys, "roster", "install", roster, *(anchor(roster) if first else []), "--data", path)


def one_error_line(err: str) -> str:
    """The single `error:` line a failed command printed (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def fingerprint(path: str) -> dict[str, str]:
    """Hash of every file under a data directory but LMDB's lock file (readers take it)."""
    found = {}
    for file in sorted(Path(path).rglob("*")):
        if file.is_file() and file.name != "lock.mdb":
            found[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


URLS = {code: f"http://127.0.0.1:{8470 + i}" for i, code in enumerate(NAMES)}


# -- init -------------------------------------------------------------------------------------


def test_init_observer_makes_a_private_key_a_store_and_no_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`init --observer` writes observer.key (0600) with the key it prints, a store that
    records the observer and network, no log key and no log; a Participant's open refuses it."""
    path, key = init_observer(tmp_path, capsys)
    data = Path(path)
    assert stat.S_IMODE(os.stat(data / "observer.key").st_mode) == 0o600
    assert not (data / "log.key").exists()
    node = ObserverDir.open(data)
    try:
        assert node.signer.verifier == Verifier.from_text(key)
        assert (node.name, node.network) == (AUDITOR, NET)
        with node.store.read() as txn:
            assert node.store.origins(txn) == []
            assert node.store.get_meta(txn, "origin") is None
    finally:
        node.close()
    with pytest.raises(ObserverDirError, match="observer's data directory; it has no log"):
        DataDir.open(data)
    assert cli(capsys, "log", "key", "--data", path).strip() == key
    code, out, _ = run(
        capsys,
        "init",
        "--observer",
        "civil-society",
        "--network",
        NET,
        "--data",
        str(tmp_path / "cs"),
    )
    assert code == 0
    assert "observer key: civil-society+" in out


@pytest.mark.parametrize(
    "options",
    [[], ["--participant", "BW", "--observer", AUDITOR]],
    ids=["neither", "both"],
)
def test_init_takes_exactly_one_of_participant_and_observer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    """Neither or both of --participant and --observer: one usage line, exit 2, nothing made."""
    data = tmp_path / "d"
    code, _, err = run(capsys, "init", *options, "--network", NET, "--data", str(data))
    assert code == 2
    assert "exactly one of --participant" in one_error_line(err)
    assert not data.exists()


@pytest.mark.parametrize("name", ["kp.example/BW", "kp monitoring", "kp+m", "-x", ""])
def test_init_observer_refuses_a_name_that_cannot_be_a_key_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """An observer name with '/', a space, '+' or a leading '-' is refused before anything
    is written (a '/' would read as a log origin)."""
    data = tmp_path / "d"
    code, _, err = run(capsys, "init", "--observer", name, "--network", NET, "--data", str(data))
    assert code == 1
    assert "observer name" in one_error_line(err)
    assert not data.exists()


def test_init_never_turns_one_kind_of_directory_into_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init --observer on a Participant's directory, and --participant on an observer's, are
    refused and leave the directory as it was."""
    bw = init_participants(tmp_path, capsys, ["BW"])["BW"]
    obs, _ = init_observer(tmp_path, capsys)
    for path, options in ((bw, ["--observer", AUDITOR]), (obs, ["--participant", "BW"])):
        before = fingerprint(path)
        code, _, err = run(capsys, "init", *options, "--network", NET, "--data", path)
        assert code == 1
        assert "already holds a ledger" in one_error_line(err)
        assert fingerprint(path) == before


# -- roster install ------------------------------------------------------------------------------


def test_roster_install_takes_a_roster_listing_this_observer_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The observer installs the roster that lists it; roster show then lists the observer."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    roster = signed_roster(tmp_path, capsys, dirs, URLS, {"KP Monitoring": key})
    out = cli(capsys, "roster", "install", roster, *anchor(roster), "--data", obs)
    assert "installed roster v1 of kp.example (2 participants)" in out
    assert f"observer {AUDITOR}" in out
    shown = json.loads(cli(capsys, "roster", "show", "--json", "--data", obs))
    assert shown["observers"] == [{"name": "KP Monitoring", "key": key}]
    assert AUDITOR in cli(capsys, "roster", "show", "--data", obs)


def test_roster_install_refuses_another_key_under_this_observer_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A roster listing an observer of this name with another key is refused, naming both
    keys, and nothing is installed."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    other = Signer.generate(AUDITOR).verifier.to_text()
    roster = signed_roster(tmp_path, capsys, dirs, URLS, {"KP Monitoring": other})
    code, _, err = run(capsys, "roster", "install", roster, *anchor(roster), "--data", obs)
    line = one_error_line(err)
    assert code == 1
    assert f"lists observer {AUDITOR} with another key" in line
    assert other in line and key in line
    assert not (Path(obs) / "roster").exists() or not any((Path(obs) / "roster").iterdir())


def test_roster_install_refuses_a_roster_without_this_observer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A roster that does not list this observer at all is refused, naming who it lists."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, _ = init_observer(tmp_path, capsys)
    _, civil_key = init_observer(tmp_path, capsys, "civil-society")
    roster = signed_roster(tmp_path, capsys, dirs, URLS, {"Civil Society": civil_key})
    code, _, err = run(capsys, "roster", "install", roster, *anchor(roster), "--data", obs)
    assert code == 1
    assert f"lists no observer {AUDITOR} (its observers: civil-society)" in one_error_line(err)
    with pytest.raises(RosterError, match="no roster installed"):
        load_roster(Path(obs))


def test_roster_install_checks_the_signatures_for_an_observer_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A v1 that lists the observer but lacks a Participant's signature is refused, as it
    is for a Participant."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    signed_roster(tmp_path, capsys, dirs, URLS, {"KP Monitoring": key})
    half = str(tmp_path / "half.roster")
    cli(capsys, "roster", "init", str(tmp_path / "draft-v1.json"), "--out", half)
    cli(capsys, "roster", "sign", half, "--data", dirs["BW"])
    code, _, err = run(capsys, "roster", "install", half, *anchor(half), "--data", obs)
    assert code == 1
    assert "missing signatures: EU" in one_error_line(err)
    assert not (Path(obs) / "roster" / "v1.roster").exists()


def test_an_observer_admitted_in_v2_installs_v1_and_v2_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 alone does not list a later observer and is refused; v1 and v2 given together
    are verified as a chain and installed, v2 current."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    v1 = signed_roster(tmp_path, capsys, dirs, URLS, {})
    install(capsys, v1, list(dirs.values()))
    v2 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP Monitoring": key}, version=2)
    code, _, err = run(capsys, "roster", "install", v1, *anchor(v1), "--data", obs)
    assert code == 1 and "lists no observer" in one_error_line(err)
    code, _, err = run(capsys, "roster", "install", v2, *anchor(v1), "--data", obs)
    assert code == 1 and "first trusted roster must be v1" in one_error_line(err)
    out = cli(capsys, "roster", "install", v1, v2, *anchor(v1), "--data", obs)
    assert "installed roster v2" in out
    assert load_roster(Path(obs)).version == 2
    assert sorted(p.name for p in (Path(obs) / "roster").iterdir()) == ["v1.roster", "v2.roster"]


def test_check_observer_wants_the_network_name_and_key() -> None:
    """The pure check: the right key passes; another network, another key, or a key of
    another name each fail with a message naming the problem."""
    me = Signer.generate(AUDITOR).verifier
    bw = Signer.generate(f"{NET}/BW").verifier
    part = Participant("BW", "Botswana", ("BW",), bw, "http://127.0.0.1:1")

    def roster(*observers: Observer) -> Roster:
        return Roster(NET, 1, (part,), observers)

    assert check_observer(roster(Observer("KP", me)), me, NET) == Observer("KP", me)
    with pytest.raises(RosterError, match="is for network 'kp.example'"):
        check_observer(roster(Observer("KP", me)), me, "other.example")
    with pytest.raises(RosterError, match="with another key"):
        check_observer(roster(Observer("KP", Signer.generate(AUDITOR).verifier)), me, NET)
    with pytest.raises(RosterError, match="lists no observer"):
        check_observer(roster(Observer("KP", Signer.generate("other").verifier)), me, NET)


# -- what needs an own log ----------------------------------------------------------------------


@pytest.fixture
def observer_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """`make_observer_dir`."""
    return make_observer_dir(tmp_path, capsys)


def make_observer_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """BW and EU with a roster that lists the auditor, installed on all three directories."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    roster = signed_roster(tmp_path, capsys, dirs, URLS, {"KP Monitoring": key})
    install(capsys, roster, [*dirs.values(), obs])
    return dirs | {"obs": obs, "roster": roster, "tmp": str(tmp_path)}


OWN_LOG_COMMANDS = {
    "log append": ["log", "append", "parcel.mine", "--body", "{}"],
    "log checkpoint": ["log", "checkpoint", "--sign"],
    "proof inclusion": ["proof", "inclusion", "0"],
    "actor register": [
        "actor",
        "register",
        "A",
        "--role",
        "mine",
        "--name",
        "n",
        "--licence",
        "l",
        "--location",
        "x",
        "--zone",
        "z",
    ],
    "mine": [
        "mine",
        "P",
        "--mine",
        "A",
        "--carats",
        "1",
        "--value-usd",
        "1",
        "--date",
        "2026-01-01",
        "--origin",
        "BW",
    ],
    "custody": ["custody"],
    "node serve": ["node", "serve", "--listen", "127.0.0.1:1"],
}


@pytest.mark.parametrize("command", OWN_LOG_COMMANDS.values(), ids=OWN_LOG_COMMANDS.keys())
def test_commands_that_need_an_own_log_refuse_an_observer_dir(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Each says in one line that this is an observer's data directory with no log of its
    own, exits non-zero, and changes nothing stored."""
    obs = observer_dir["obs"]
    before = fingerprint(obs)
    code, _, err = run(capsys, *command, "--data", obs)
    assert code != 0
    assert "is an observer's data directory; it has no log of its own" in one_error_line(err)
    assert fingerprint(obs) == before


def test_an_observer_does_not_sign_rosters(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`roster sign` in an observer's directory is refused and the file is left unsigned
    by it."""
    roster = Path(observer_dir["roster"])
    before = roster.read_bytes()
    code, _, err = run(capsys, "roster", "sign", str(roster), "--data", observer_dir["obs"])
    assert code == 1
    assert "observer's data directory" in one_error_line(err)
    assert roster.read_bytes() == before


# -- what reads -----------------------------------------------------------------------------------


def _trade_and_publish(observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    """BW mines and exports to the EU, which imports; both logs published to one mirror."""
    bw, eu, tmp = observer_dir["BW"], observer_dir["EU"], observer_dir["tmp"]
    _actor(capsys, bw, "BW-MINE-1", "mine")
    _actor(capsys, bw, "BW-EXP-1", "exporter")
    _mine(capsys, bw, "BW-P-1", "BW-MINE-1", "120.50", "18000", "2026-03-01", "BW")
    _export(capsys, bw, "BW-2026-000001", "BW-EXP-1", "EU", ["BW-P-1"], "18000", f"{tmp}/bw.proof")
    _actor(capsys, eu, "EU-IMP-1", "importer")
    _import(capsys, eu, f"{tmp}/bw.proof", "EU-IMP-1", "2026-03-07")
    mirror = f"{tmp}/mirror"
    for path in (bw, eu):
        cli(capsys, "tiles", "publish", mirror, "--data", path)
    return mirror


def test_read_commands_work_on_logs_an_observer_synced(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """After `sync --peer MIRROR` pulls both logs, log show/verify, trace, stats and audit
    all answer from the observer's directory."""
    obs = observer_dir["obs"]
    mirror = _trade_and_publish(observer_dir, capsys)
    out = cli(capsys, "sync", "--peer", mirror, "--data", obs, "--json")
    assert {r["origin"]: r["after"] for r in json.loads(out)} == {
        f"{NET}/BW": 4,
        f"{NET}/EU": 2,
    }
    shown = json.loads(cli(capsys, "log", "show", "--json", "--data", obs))
    assert [(s["origin"], s["size"]) for s in shown] == [(f"{NET}/BW", 4), (f"{NET}/EU", 2)]
    entry = json.loads(cli(capsys, "log", "show", "2", "--origin", "BW", "--json", "--data", obs))
    assert (entry["kind"], entry["body"]["parcel"]) == ("parcel.mine", "BW-P-1")
    verified = json.loads(cli(capsys, "log", "verify", "--json", "--data", obs))
    assert [(v["origin"], v["size"], v["ok"]) for v in verified] == [
        (f"{NET}/BW", 4, True),
        (f"{NET}/EU", 2, True),
    ]
    one = json.loads(cli(capsys, "log", "verify", "--origin", "EU", "--json", "--data", obs))
    assert (one["origin"], one["size"]) == (f"{NET}/EU", 2)
    traced = cli(capsys, "trace", "BW-2026-000001", "--json", "--data", obs)
    assert "BW-MINE-1" in traced
    stats = json.loads(cli(capsys, "stats", "--json", "--data", obs))
    assert stats  # production, exports and imports over both logs
    assert json.loads(cli(capsys, "evidence", "list", "--json", "--data", obs))
    report = json.loads(cli(capsys, "audit", "--json", "--data", obs))
    assert report["total"] == 0
    assert [(log["origin"], log["replayed"]) for log in report["logs"]] == [
        (f"{NET}/BW", 4),
        (f"{NET}/EU", 2),
    ]


def test_log_show_of_an_entry_needs_origin_when_several_logs_are_held(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An observer holds no log of its own, so `log show INDEX` without --origin names the
    logs held; an unknown --origin says what is held."""
    obs = observer_dir["obs"]
    mirror = _trade_and_publish(observer_dir, capsys)
    cli(capsys, "sync", "--peer", mirror, "--data", obs)
    code, _, err = run(capsys, "log", "show", "0", "--data", obs)
    assert code == 1
    assert "name the log of entry 0 with --origin" in one_error_line(err)
    code, _, err = run(capsys, "log", "show", "--origin", "IN", "--data", obs)
    assert code == 1
    assert "no log IN is held here (held: kp.example/BW, kp.example/EU)" in one_error_line(err)


def test_sync_in_an_observer_dir_checks_the_custody_rules(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry breaking a rule (appended raw, past the rules) is refused by the observer's
    sync as by a Participant's: one line for that log, the other pulled, exit 1; the audit
    then reports the rule at that entry."""
    bw, obs, tmp = observer_dir["BW"], observer_dir["obs"], observer_dir["tmp"]
    mirror = _trade_and_publish(observer_dir, capsys)
    body = {
        "parcel": "BW-P-9",
        "mine": "BW-MINE-NONE",
        "carats": 100,
        "value": 100,
        "date": "2026-03-09",
        "origin": "BW",
    }
    raw = ("log", "append", "parcel.mine", "--body", json.dumps(body), "--unchecked")
    cli(capsys, *raw, "--data", bw)
    cli(capsys, "tiles", "publish", mirror, "--data", bw)
    code, out, err = run(capsys, "sync", "--peer", mirror, "--data", obs)
    assert code == 1
    assert f"{NET}/EU: 0 -> 2 entries verified" in out
    assert one_error_line(err).startswith(f"error: {NET}/BW: ")
    code, out, _ = run(capsys, "audit", "--json", "--data", obs, "--scratch", tmp)
    report = json.loads(out)
    assert code == 1
    assert [(f["origin"], f["index"]) for f in report["findings"]] == [(f"{NET}/BW", 4)]


# -- pure parts ------------------------------------------------------------------------------------


def test_resolve_origin_takes_a_full_origin_or_a_unique_code() -> None:
    """BW names kp.example/BW; a code on two networks is ambiguous; a missing one says what
    is held."""
    held = ["kp.example/BW", "kp.example/EU", "other.example/EU"]
    assert resolve_origin(held, "kp.example/EU") == "kp.example/EU"
    assert resolve_origin(held, "bw") == "kp.example/BW"
    assert resolve_origin(held, "kp.example/bw") == "kp.example/BW"  # any case, as the code
    with pytest.raises(LogError, match="names several logs"):
        resolve_origin(held, "EU")
    with pytest.raises(LogError, match=r"no log IN is held here \(held: kp.example/BW"):
        resolve_origin(held, "IN")


def test_an_observer_pulls_every_log_and_each_first_from_its_owner() -> None:
    """A Participant pulls every log but its own; an observer all of them; each log first
    from its owner's node, then from the others', never from the own node."""
    keys = {c: Signer.generate(f"{NET}/{c}").verifier for c in NAMES}
    parts = tuple(Participant(c, NAMES[c], (COUNTRIES[c][0],), keys[c], URLS[c]) for c in NAMES)
    roster = Roster(NET, 1, parts)
    assert logs_to_pull(roster, None) == [f"{NET}/BW", f"{NET}/EU", f"{NET}/IN"]
    assert logs_to_pull(roster, "EU") == [f"{NET}/BW", f"{NET}/IN"]
    assert roster_sources(roster, f"{NET}/IN", None) == [URLS["IN"], URLS["BW"], URLS["EU"]]
    assert roster_sources(roster, f"{NET}/IN", "BW") == [URLS["IN"], URLS["EU"]]


def test_a_node_s_plain_text_refusal_is_quoted_in_the_sync_error() -> None:
    """A 401's first line (the node's reason) is quoted, without control characters and
    bounded; an HTML error page is not quoted."""

    def node(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/html/"):
            return httpx.Response(404, html="<html><body>Not Found</body></html>")
        reason = "keyid 'rogue' is not a roster member\x1b[2J" + "x" * 500 + "\nsecond line\n"
        return httpx.Response(401, text=reason)

    transport = httpx.MockTransport(node)
    source = HttpSource("http://node", f"{NET}/BW", transport=transport)
    with pytest.raises(PeerError) as refused:
        source.fetch("checkpoint", 1000)
    message = str(refused.value)
    assert message.startswith(f"http://node/{NET}/BW/checkpoint: HTTP 401: keyid 'rogue' is not")
    assert "\x1b" not in message and "second line" not in message
    assert len(message) < 300
    html = HttpSource("http://node/html", f"{NET}/BW", transport=transport)
    with pytest.raises(PeerError) as missing:
        html.fetch("checkpoint", 1000)
    assert str(missing.value) == f"http://node/html/{NET}/BW/checkpoint: HTTP 404"


def _dripping_refusal(head: bytes, stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """A 127.0.0.1 server answering one request with a text/plain 401 whose body is `head`
    and then a byte every 0.05 s, until `stop` (or 600 bytes)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        with server, server.accept()[0] as conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 1000\r\n\r\n" + head
            )
            for _ in range(600):
                if stop.is_set():
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("head", "fetch_seconds", "reason"),
    [(b"", 1.0, ": xxx"), (b"keyid 'rogue' is not a roster member\n", 30.0, ": keyid 'rogue'")],
    ids=["no-newline", "after-the-first-line"],
)
def test_a_dripping_refusal_holds_a_fetch_no_longer_than_fetch_seconds(
    head: bytes, fetch_seconds: float, reason: str
) -> None:
    """A 401 whose reason drips a byte per 0.05 s ends the fetch at `fetch_seconds` (not after
    512 bytes, 26 s), and at once after the reason's first line."""
    stop = threading.Event()
    server, thread = _dripping_refusal(head, stop)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    limits = SyncLimits(timeout=1, fetch_seconds=fetch_seconds, retries=1)
    source = HttpSource(url, f"{NET}/BW", limits)
    started = time.monotonic()
    try:
        with pytest.raises(PeerError) as refused:
            source.fetch("checkpoint", 1000)
        took = time.monotonic() - started
    finally:
        stop.set()
        source.close()
        thread.join(timeout=5)
    assert f"HTTP 401{reason}" in str(refused.value)
    assert took < 4, f"the refusal held the fetch {took:.1f} s"
