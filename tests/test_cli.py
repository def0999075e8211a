"""The `kimberley` CLI as a clerk or a script uses it: outputs, proofs, one-line errors."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import main
from ledger import merkle
from ledger.checkpoint import TlogProof, open_checkpoint
from ledger.datadir import DataDir
from ledger.keys import Verifier
from ledger.note import b64decode_strict


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["kimberley", *args]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """An initialised BW data directory with three raw entries."""
    path = str(tmp_path / "bw")
    assert (
        run(capsys, "init", "--participant", "BW", "--network", "kp.example", "--data", path)[0]
        == 0
    )
    for i in range(3):
        body = json.dumps({"parcel": f"BW-{i}", "carats": 100 * (i + 1)})
        args = ("log", "append", "parcel.mine", "--body", body, "--unchecked", "--data", path)
        assert run(capsys, *args)[0] == 0
    return path


def test_init_then_show_reports_origin_size_and_key(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After init and three appends, `log show --json` names the origin, size 3 and the key."""
    code, out, _ = run(capsys, "log", "show", "--json", "--data", data)
    shown = json.loads(out)
    assert code == 0
    assert (shown["origin"], shown["size"]) == ("kp.example/BW", 3)
    assert Verifier.from_text(shown["key"]).name == "kp.example/BW"


def test_show_entry_decodes_the_body(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`log show 1 --json` prints the record as appended, with its chain link in hex."""
    code, out, _ = run(capsys, "log", "show", "1", "--json", "--data", data)
    entry = json.loads(out)
    assert code == 0
    assert entry["kind"] == "parcel.mine"
    assert entry["body"] == {"carats": 200, "parcel": "BW-1"}
    assert len(entry["prev"]) == 64


def test_data_directory_comes_from_the_environment(
    data: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --data the CLI uses $KIMBERLEY_DATA."""
    monkeypatch.setenv("KIMBERLEY_DATA", data)
    code, out, _ = run(capsys, "log", "key")
    assert code == 0
    assert out.startswith("kp.example/BW+")


def test_checkpoint_and_inclusion_proof_verify_with_the_key_alone(
    data: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The tlog-proof printed for an entry verifies offline against the printed verifier key."""
    key = run(capsys, "log", "key", "--data", data)[1].strip()
    note = run(capsys, "log", "checkpoint", "--data", data)[1].encode()
    cp, _ = open_checkpoint(note, Verifier.from_text(key))
    assert cp.size == 3
    code, text, _ = run(capsys, "proof", "inclusion", "1", "--data", data)
    assert code == 0
    proof = TlogProof.from_text(text)
    assert proof.verify(Verifier.from_text(key)).size == 3
    (tmp_path / "p.txt").write_text(text)
    code, out, _ = run(capsys, "proof", "verify", str(tmp_path / "p.txt"), "--key", key)
    assert (code, out.startswith("ok: entry 1")) == (0, True)


def test_a_tampered_proof_file_is_refused(
    data: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Changing one hash in a proof file makes `proof verify` fail with one line."""
    key = run(capsys, "log", "key", "--data", data)[1].strip()
    text = run(capsys, "proof", "inclusion", "0", "--data", data)[1]
    lines = text.splitlines(keepends=True)
    hash_line = next(i for i, line in enumerate(lines) if len(line.strip()) == 44)
    lines[hash_line] = ("A" if lines[hash_line][0] != "A" else "B") + lines[hash_line][1:]
    (tmp_path / "p.txt").write_text("".join(lines))
    code, _, err = run(capsys, "proof", "verify", str(tmp_path / "p.txt"), "--key", key)
    assert code != 0
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1


def test_consistency_proof_links_old_and_new_sizes(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`proof consistency 1 3` prints base64 hashes that prove size 1 is a prefix of size 3."""
    code, out, _ = run(capsys, "proof", "consistency", "1", "3", "--data", data)
    assert code == 0
    hashes = [b64decode_strict(line, "hash") for line in out.split()]
    node = DataDir.open(Path(data))
    log = node.own_log()
    merkle.verify_consistency(1, 3, log.root(1), log.root(3), hashes)
    node.close()


def test_verify_reports_entries_and_checkpoints(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`log verify --json` replays the log and says how much it checked."""
    code, out, _ = run(capsys, "log", "verify", "--json", "--data", data)
    report = json.loads(out)
    assert code == 0
    assert report["ok"] is True
    assert (report["size"], report["checkpoints"]) == (3, 4)  # init's empty checkpoint + 3 appends


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["log", "show"], "no ledger"),
        (["log", "append", "x", "--body", '{"carats": 1.5}'], "float"),
        (["log", "append", "x", "--body", "[1]"], "JSON object"),
        (["log", "append", "x", "--body", "{"], "not valid JSON"),
        (["log", "show", "99"], "no entry 99"),
        (["proof", "inclusion", "7"], "not in the checkpoint"),
        (["proof", "consistency", "5", "2"], "old size 5"),
        (["proof", "consistency", "0", "2"], "nothing to prove"),
        (["init", "--participant", "Botswana", "--network", "kp.example"], "alpha-2"),
        (["log", "show", "notanumber"], "'index'"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_gets_one_readable_line_and_a_nonzero_exit(
    data: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Every mistake prints `error: ...` on one line, no traceback, and exits non-zero."""
    where = ["--data", data + "-missing"] if args == ["log", "show"] else ["--data", data]
    if args[0] == "frobnicate":
        where = []
    code, _, err = run(capsys, *args, *where)
    assert code != 0
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_init_refuses_an_existing_directory(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A second init on the same directory is refused and the key is untouched."""
    key = run(capsys, "log", "key", "--data", data)[1]
    code, _, err = run(
        capsys, "init", "--participant", "BW", "--network", "kp.example", "--data", data
    )
    assert code == 1
    assert "refusing to overwrite" in err
    assert run(capsys, "log", "key", "--data", data)[1] == key


def test_a_negative_thread_count_is_a_usage_error(
    data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--threads below 0 is refused in one line (0 means one per core), not a traceback."""
    for command in (["audit"], ["log", "verify"]):
        code, _, err = run(capsys, *command, "--threads", "-3", "--data", data)
        assert code == 2
        assert err.strip().startswith("error:")
        assert "threads" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("command", [["audit"], ["stats"], ["certificate", "show", "BW-2026-1"]])
def test_an_as_of_day_no_kp_certificate_can_have_is_refused(
    data: str, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Every command that takes --as-of refuses a day before the KPCS began (2003-01-01) or
    more than a year ahead, in one line saying why, with exit 2; the first day is accepted."""
    far = (datetime.now(UTC).date() + timedelta(days=400)).isoformat()
    for day, why in [
        ("0001-01-01", "0001-01-01 is before 2003-01-01, when the KPCS began"),
        ("2002-12-31", "2002-12-31 is before 2003-01-01, when the KPCS began"),
        (far, f"{far} is more than a year after today"),
        ("2026-02-30", "'2026-02-30' is not a date YYYY-MM-DD"),
    ]:
        code, out, err = run(capsys, *command, "--as-of", day, "--data", data)
        assert (code, out) == (2, "")
        assert err.startswith("error: Invalid value for '--as-of': " + why), err
        assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *command, "--as-of", "2003-01-01", "--data", data)
    assert "--as-of" not in err
