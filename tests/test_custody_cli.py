"""End to end through the CLI only: Botswana mines and exports to the EU, Antwerp sorts and
mixes with a Russian parcel and re-exports to India, India confirms. Certificate proof files
are the only thing passed between the four data directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run

PARTICIPANTS = {"BW": "Botswana", "RU": "Russia", "EU": "European Union", "IN": "India"}
COUNTRIES = {"BW": ["BW"], "RU": ["RU"], "EU": ["BE", "DE", "NL"], "IN": ["IN"]}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must succeed; return its stdout."""
    code, out, err = run(capsys, *args)
    assert code == 0, f"kimberley {' '.join(args)} failed: {err}"
    return out


def init_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], urls: dict[str, str]
) -> dict[str, str]:
    """Init a data directory per Participant (code -> path) and install, on each, a roster v1
    that every one of them signed, naming each node at its URL in `urls`."""
    dirs = {code: str(tmp_path / code.lower()) for code in PARTICIPANTS}
    keys = {}
    for code, path in dirs.items():
        cli(capsys, "init", "--participant", code, "--network", "kp.example", "--data", path)
        keys[code] = cli(capsys, "log", "key", "--data", path).strip()
    draft = {
        "network": "kp.example",
        "version": 1,
        "threshold": None,
        "observers": [],
        "participants": [
            {
                "code": code,
                "name": name,
                "countries": COUNTRIES[code],
                "key": keys[code],
                "url": urls[code],
                "status": "active",
                "zones": None,
            }
            for code, name in PARTICIPANTS.items()
        ],
    }
    (tmp_path / "draft.json").write_text(json.dumps(draft))
    roster = str(tmp_path / "roster-v1.roster")
    cli(capsys, "roster", "init", str(tmp_path / "draft.json"), "--out", roster)
    for path in dirs.values():
        cli(capsys, "roster", "sign", roster, "--data", path)
    for path in dirs.values():
        cli(capsys, "roster", "install", roster, "--data", path)
    return dirs


@pytest.fixture
def network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Four initialised Participants sharing a roster every one of them signed."""
    urls = {code: f"http://127.0.0.1:{8470 + i}" for i, code in enumerate(PARTICIPANTS)}
    return init_network(tmp_path, capsys, urls) | {"tmp": str(tmp_path)}


def _actor(capsys: pytest.CaptureFixture[str], data: str, actor: str, role: str) -> None:
    cli(
        capsys,
        "actor",
        "register",
        actor,
        "--role",
        role,
        "--name",
        f"{actor} Ltd",
        "--licence",
        f"L-{actor}",
        "--location",
        "Capital",
        "--zone",
        "Main",
        "--data",
        data,
    )


def _mine(
    capsys: pytest.CaptureFixture[str],
    data: str,
    parcel: str,
    mine: str,
    carats: str,
    usd: str,
    date: str,
    origin: str,
) -> None:
    cli(
        capsys,
        "mine",
        parcel,
        "--mine",
        mine,
        "--carats",
        carats,
        "--value-usd",
        usd,
        "--date",
        date,
        "--origin",
        origin,
        "--data",
        data,
    )


def _import(
    capsys: pytest.CaptureFixture[str], data: str, proof: str, importer: str, received: str
) -> None:
    """Import the certificate of the proof file `proof` at `data`'s node."""
    cli(capsys, "import", proof, "--importer", importer, "--received", received, "--data", data)


def _export(
    capsys: pytest.CaptureFixture[str],
    data: str,
    cert: str,
    exporter: str,
    dest: str,
    parcels: list[str],
    usd: str,
    out: str,
) -> None:
    args = [
        "export",
        "--certificate",
        cert,
        "--exporter",
        exporter,
        "--importer",
        f"{dest} buyer",
        "--destination",
        dest,
        "--value-usd",
        usd,
        "--hs-code",
        "7102.31",
        "--issued",
        "2026-03-05",
        "--expires",
        "2026-06-05",
        "--seal",
        f"S-{cert}",
        "--authority",
        "KP Authority",
        "--out",
        out,
        "--data",
        data,
    ]
    for parcel in parcels:
        args += ["--parcel", parcel]
    cli(capsys, *args)


def test_a_parcel_travels_botswana_antwerp_india(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Custody moves across four logs; each step shows in `parcel`, `certificate`, `custody`."""
    bw, ru, eu, india, tmp = (network[k] for k in ("BW", "RU", "EU", "IN", "tmp"))
    _actor(capsys, bw, "BW-MINE-JWANENG", "mine")
    _actor(capsys, bw, "BW-EXP-ODC", "exporter")
    _mine(capsys, bw, "BW-P-1", "BW-MINE-JWANENG", "1200.50", "180000", "2026-03-01", "BW")
    _export(
        capsys, bw, "BW-2026-000001", "BW-EXP-ODC", "EU", ["BW-P-1"], "180000", f"{tmp}/bw.proof"
    )
    # The mine's and the exporter's history: registration, then what each did.
    mine = json.loads(cli(capsys, "actor", "show", "BW-MINE-JWANENG", "--json", "--data", bw))
    assert (mine["role"], mine["status"], mine["entries"]) == ("mine", "active", [0, 2])
    exporter = json.loads(cli(capsys, "actor", "show", "BW-EXP-ODC", "--json", "--data", bw))
    assert exporter["entries"] == [1, 3]
    assert "not registered" in run(capsys, "actor", "show", "NOBODY", "--data", bw)[2]

    _actor(capsys, ru, "RU-MINE-MIR", "mine")
    _actor(capsys, ru, "RU-EXP-ALROSA", "exporter")
    _mine(capsys, ru, "RU-P-1", "RU-MINE-MIR", "300", "30000", "2026-03-02", "RU")
    _export(
        capsys, ru, "RU-2026-000001", "RU-EXP-ALROSA", "EU", ["RU-P-1"], "30000", f"{tmp}/ru.proof"
    )

    _actor(capsys, eu, "EU-IMP-ANTWERP", "importer")
    _actor(capsys, eu, "EU-EXP-ANTWERP", "exporter")
    _import(capsys, eu, f"{tmp}/bw.proof", "EU-IMP-ANTWERP", "2026-03-07")
    _import(capsys, eu, f"{tmp}/ru.proof", "EU-IMP-ANTWERP", "2026-03-08")
    show = ("certificate", "show", "BW-2026-000001", "--json", "--data", bw)
    shown = json.loads(cli(capsys, *show, "--as-of", "2026-03-20"))
    assert shown["status"] == "awaiting"  # the exporter learns of the import only by sync (node)
    shown = json.loads(cli(capsys, *show, "--as-of", "2026-06-01"))  # past due: not "overdue",
    assert shown["status"] == "unverifiable"  # as the EU's log is not held here to tell
    assert shown["unverifiable"] == "kp.example/EU's log is not held here"
    cli(
        capsys,
        "split",
        "BW-2026-000001",
        "--output",
        "EU-A:700.50:110000",
        "--output",
        "EU-B:500:70000",
        "--data",
        eu,
    )
    cli(
        capsys,
        "merge",
        "EU-B",
        "RU-2026-000001",
        "--into",
        "EU-MIX-1",
        "--value-usd",
        "101000",
        "--data",
        eu,
    )
    mixed = json.loads(cli(capsys, "parcel", "show", "EU-MIX-1", "--json", "--data", eu))
    assert mixed["carats"] == 80000
    assert sorted(mixed["origins"]) == ["BW", "RU"]
    _export(
        capsys,
        eu,
        "EU-2026-000001",
        "EU-EXP-ANTWERP",
        "IN",
        ["EU-MIX-1"],
        "101000",
        f"{tmp}/eu.proof",
    )

    _actor(capsys, india, "IN-IMP-SURAT", "importer")
    _import(capsys, india, f"{tmp}/eu.proof", "IN-IMP-SURAT", "2026-03-20")
    held = json.loads(cli(capsys, "custody", "--json", "--data", india))
    assert [(p["parcel"], p["carats"]) for p in held] == [("EU-2026-000001", 80000)]
    left = json.loads(cli(capsys, "custody", "--json", "--data", eu))
    assert [(p["parcel"], p["carats"]) for p in left] == [("EU-A", 70050)]
    cert = json.loads(
        cli(capsys, "certificate", "show", "EU-2026-000001", "--json", "--data", india)
    )
    assert cert["status"] == "imported"
    for path in (bw, ru, eu, india):
        assert json.loads(cli(capsys, "log", "verify", "--json", "--data", path))["ok"] is True


def test_log_append_checks_the_custody_rules_unless_told_not_to(
    network: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`log append` under a roster refuses a production at an unregistered mine (which would
    stop every peer's copy of the log there for good) and stores nothing; a legal record
    goes in; `--unchecked` still writes raw; with no roster it asks for one."""
    bw = network["BW"]
    body = {
        "parcel": "BW-P-1",
        "mine": "BW-MINE-1",
        "carats": 100_00,
        "value": 15_000_00,
        "date": "2026-03-02",
        "origin": "BW",
    }
    append = ("log", "append", "parcel.mine", "--body", json.dumps(body), "--data", bw)
    code, out, err = run(capsys, *append)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "BW-MINE-1" in err and err.count("\n") == 1, err
    assert json.loads(cli(capsys, "log", "show", "--json", "--data", bw))["size"] == 0
    _actor(capsys, bw, "BW-MINE-1", "mine")
    assert "at index 1" in cli(capsys, *append)
    code, _, err = run(capsys, *append)  # the same parcel again: refused by the rules
    assert code == 1 and "BW-P-1" in err
    assert "at index 2" in cli(capsys, *append, "--unchecked")  # raw: the caller's choice
    bare = str(tmp_path / "bare")
    cli(capsys, "init", "--participant", "BW", "--network", "kp.example", "--data", bare)
    code, _, err = run(capsys, "log", "append", "parcel.mine", "--body", "{}", "--data", bare)
    assert code == 1 and "no roster installed" in err and "--unchecked" in err


def test_mine_echoes_carats_in_one_form(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Carats typed as 500 print as 500.00 ct, as every other command prints them."""
    bw = network["BW"]
    _actor(capsys, bw, "BW-MINE-1", "mine")
    args = ("mine", "BW-P-1", "--mine", "BW-MINE-1", "--carats", "500", "--value-usd", "1000")
    out = cli(capsys, *args, "--date", "2026-03-01", "--origin", "BW", "--data", bw)
    assert "mined BW-P-1: 500.00 ct (entry 1)" in out


def test_refusals_are_one_line_and_change_nothing(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A double import, a misdirected certificate and an unknown parcel are refused by name."""
    bw, eu, india, tmp = (network[k] for k in ("BW", "EU", "IN", "tmp"))
    _actor(capsys, bw, "BW-MINE-1", "mine")
    _actor(capsys, bw, "BW-EXP-1", "exporter")
    _mine(capsys, bw, "BW-P-9", "BW-MINE-1", "10", "1000", "2026-03-01", "BW")
    _export(capsys, bw, "BW-2026-000009", "BW-EXP-1", "EU", ["BW-P-9"], "1000", f"{tmp}/c.proof")
    _actor(capsys, eu, "EU-IMP-1", "importer")
    _actor(capsys, india, "IN-IMP-1", "importer")
    _import(capsys, eu, f"{tmp}/c.proof", "EU-IMP-1", "2026-03-07")
    size = json.loads(cli(capsys, "log", "show", "--json", "--data", eu))["size"]
    for data, importer in ((eu, "EU-IMP-1"), (india, "IN-IMP-1")):
        code, _, err = run(
            capsys,
            "import",
            f"{tmp}/c.proof",
            "--importer",
            importer,
            "--received",
            "2026-03-08",
            "--data",
            data,
        )
        assert code == 1
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert json.loads(cli(capsys, "log", "show", "--json", "--data", eu))["size"] == size
    code, _, err = run(
        capsys, "split", "NOPE", "--output", "A:1:1", "--output", "B:1:1", "--data", eu
    )
    assert code == 1 and "NOPE" in err


def test_sync_pulls_a_partners_log_from_a_static_mirror(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`kimberley sync --peer DIR` verifies and stores Botswana's log on the EU's node."""
    bw, eu, tmp = network["BW"], network["EU"], network["tmp"]
    _actor(capsys, bw, "BW-MINE-1", "mine")
    _mine(capsys, bw, "BW-P-1", "BW-MINE-1", "10", "1000", "2026-03-01", "BW")
    cli(capsys, "tiles", "publish", f"{tmp}/mirror", "--data", bw)
    out = cli(
        capsys,
        "sync",
        "--peer",
        f"{tmp}/mirror",
        "--origin",
        "kp.example/BW",
        "--data",
        eu,
        "--json",
    )
    assert json.loads(out) == [
        {
            "origin": "kp.example/BW",
            "before": 0,
            "after": 2,
            "checkpoint": 2,
            "short_of": None,
            "refused": None,
            "source": f"{tmp}/mirror",
            "from_owner": False,
            "behind": [],
            "skipped": [],
        }
    ]


@pytest.mark.parametrize("scheme", ["ftp", "FILE", "s3"])
def test_sync_refuses_a_peer_url_of_another_scheme_up_front(
    network: dict[str, str], capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    """A --peer URL that is neither http nor https is a usage error naming its scheme
    (exit 2), before anything is pulled, not a directory path that does not exist."""
    eu, tmp = network["EU"], network["tmp"]
    cli(capsys, "tiles", "publish", f"{tmp}/mirror", "--data", network["BW"])
    peers = ["--peer", f"{tmp}/mirror", "--peer", f"{scheme}://x"]
    code, out, err = run(capsys, "sync", *peers, "--origin", "BW", "--data", eu)
    assert (code, out) == (2, "")
    assert err == (
        f"error: --peer '{scheme}://x': {scheme}:// is not a scheme sync can pull from "
        "(give an http:// or https:// URL, or a directory of static tiles)\n"
    )
    code, _, err = run(capsys, "log", "show", "--origin", "BW", "--data", eu)
    assert (code, err) == (1, "error: no log BW is held here (held: kp.example/EU)\n")


def test_sync_goes_on_past_a_log_it_cannot_pull(
    network: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A log the peer does not serve is reported on its own line; the others are still
    pulled and kept, and the exit status says that not all were."""
    bw, eu, tmp = network["BW"], network["EU"], network["tmp"]
    _actor(capsys, bw, "BW-MINE-1", "mine")
    cli(capsys, "tiles", "publish", f"{tmp}/mirror", "--data", bw)  # Botswana's log only
    args = ["--origin", "kp.example/RU", "--origin", "kp.example/BW", "--data", eu]
    code, out, err = run(capsys, "sync", "--peer", f"{tmp}/mirror", *args)
    assert code == 1
    assert "kp.example/BW: 0 -> 1 entry verified" in out
    assert err.startswith("error: kp.example/RU: ") and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "sync", "--peer", f"{tmp}/mirror", *args, "--json")
    assert code == 1
    assert [r["origin"] for r in json.loads(out)] == ["kp.example/BW", "kp.example/RU"]
    assert "error" in json.loads(out)[1]
