"""An observer's data directory and roster chain: v1's hash as the only anchor, a chain
verified link by link, re-installs, a failed init that can be retried, the store's kind
checked on open, and the demo's verbatim copy that `sync` refuses."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.datadir import DataDir
from ledger.errors import ObserverDirError, StoreError
from ledger.observer_dir import ObserverDir, open_any
from ledger.roster_files import load_roster
from tests.test_cli import run
from tests.test_custody_cli import cli
from tests.test_observer import (
    AUDITOR,
    NET,
    URLS,
    anchor,
    fingerprint,
    init_observer,
    init_participants,
    install,
    one_error_line,
    signed_roster,
)


def test_an_observer_s_first_install_needs_v1_s_published_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A made-up v1 listing the observer's (public) key, signed by made-up Participants,
    is refused unless its hash is the one published; without --v1-sha256 nothing is
    installed; the real v1 installs and its hash and signers' key ids are printed."""
    obs, key = init_observer(tmp_path, capsys)
    real = signed_roster(tmp_path / "real", capsys, _dirs(tmp_path / "real", capsys), URLS,
                         {"KP": key})  # fmt: skip
    fake = signed_roster(tmp_path / "fake", capsys, _dirs(tmp_path / "fake", capsys), URLS,
                         {"KP": key})  # fmt: skip
    before = fingerprint(obs)
    code, _, err = run(capsys, "roster", "install", fake, "--data", obs)
    assert code == 1 and "needs --v1-sha256" in one_error_line(err)
    code, _, err = run(capsys, "roster", "install", fake, *anchor(real), "--data", obs)
    assert code == 1 and "not the expected" in one_error_line(err)
    assert fingerprint(obs) == before
    out = cli(capsys, "roster", "install", real, *anchor(real), "--data", obs)
    digest = hashlib.sha256(Path(real).read_bytes()).hexdigest()
    assert f"roster v1 SHA-256: {digest}" in out
    bw_key_id = json.loads(cli(capsys, "roster", "show", "--json", "--data", obs))["participants"][
        0
    ]["key"].split("+")[1]
    assert f"BW (key id {bw_key_id})" in out


def _dirs(base: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    base.mkdir()
    return init_participants(base, capsys, ["BW", "EU"])


def test_a_participant_may_give_v1_s_hash_and_it_must_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Participant installs v1 without the option (it signed v1) or with the right hash;
    a wrong one is refused."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    v1 = signed_roster(tmp_path, capsys, dirs, URLS, {})
    code, _, err = run(capsys, "roster", "install", v1, "--v1-sha256", "00" * 32,
                       "--data", dirs["BW"])  # fmt: skip
    assert code == 1 and "not the expected" in one_error_line(err)
    assert "roster v1 SHA-256" in cli(capsys, "roster", "install", v1, "--data", dirs["BW"])
    cli(capsys, "roster", "install", v1, *anchor(v1), "--data", dirs["EU"])


def test_an_under_signed_version_between_two_good_ones_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1, a v2 signed by BW alone (v1 requires both), and a v3 signed by both: installed
    together, v2 is refused and not one file is stored."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    v1 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key})
    signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key}, version=2)  # writes its draft
    v2 = str(tmp_path / "v2-half.roster")
    cli(capsys, "roster", "init", str(tmp_path / "draft-v2.json"), "--out", v2)
    cli(capsys, "roster", "sign", v2, "--data", dirs["BW"])
    v3 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key}, version=3)
    code, _, err = run(capsys, "roster", "install", v1, v2, v3, *anchor(v1), "--data", obs)
    assert code == 1 and "missing signatures: EU" in one_error_line(err)
    assert not (Path(obs) / "roster").exists() or not any((Path(obs) / "roster").iterdir())


def test_re_installing_versions_held_skips_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`roster install v1 v2` run twice: the second says both are installed and succeeds;
    a different file claiming v1 is still refused."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    v1 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key})
    v2 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key}, version=2)
    cli(capsys, "roster", "install", v1, v2, *anchor(v1), "--data", obs)
    out = cli(capsys, "roster", "install", v1, v2, "--data", obs)
    assert "v1 already installed" in out and "v2 already installed" in out
    assert "nothing new installed: the current roster is v2" in out  # not "installed"
    assert load_roster(Path(obs)).version == 2
    v1_hash = hashlib.sha256(Path(v1).read_bytes()).hexdigest()
    assert f"roster v1 SHA-256: {v1_hash}" in cli(capsys, "roster", "show", "--data", obs)
    assert f"roster v1 SHA-256: {v1_hash}" in cli(capsys, "roster", "verify", v1, v2)
    other = signed_roster(tmp_path / "o", capsys, _dirs(tmp_path / "o", capsys), URLS, {"KP": key})
    code, _, _ = run(capsys, "roster", "install", other, "--data", obs)
    assert code == 1


@pytest.mark.parametrize("kind", [["--participant", "BW"], ["--observer", AUDITOR]])
def test_a_failed_init_can_be_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: list[str]
) -> None:
    """A file where the store goes makes init fail and leaves no key; once it is removed,
    init succeeds."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "store").write_text("not a directory")
    code, _, err = run(capsys, "init", *kind, "--network", NET, "--data", str(data))
    assert code == 1 and "Traceback" not in err
    assert sorted(p.name for p in data.iterdir()) == ["store"]
    (data / "store").unlink()
    cli(capsys, "init", *kind, "--network", NET, "--data", str(data))


def test_a_store_recording_an_observer_is_no_participant_s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log key beside a store whose meta records an observer is refused as an observer's
    directory (ObserverDirError, not a store failure)."""
    bw = Path(init_participants(tmp_path, capsys, ["BW"])["BW"])
    node = DataDir.open(bw)
    with node.store.write() as txn:
        node.store.put_meta(txn, "observer", AUDITOR)
    node.close()
    with pytest.raises(ObserverDirError, match="observer's data directory") as refused:
        DataDir.open(bw)
    assert not isinstance(refused.value, StoreError)


def test_sync_refuses_a_directory_pulled_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An observer's directory marked verbatim (the demo's auditor copy) refuses `sync` in
    one line and changes nothing; read commands still answer."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    install(capsys, signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key}), [obs])
    node = ObserverDir.open(Path(obs))
    node.mark_verbatim()
    node.close()
    before = fingerprint(obs)
    code, _, err = run(capsys, "sync", "--peer", str(tmp_path / "none"), "--data", obs)
    assert code == 1 and "pulled verbatim" in one_error_line(err)
    assert fingerprint(obs) == before
    assert json.loads(cli(capsys, "log", "show", "--json", "--data", obs)) == []
    code, out, err = run(capsys, "trace", "BW-2026-000001", "--data", obs)  # nothing indexed
    assert code == 2 and out == "" and "holds its logs verbatim" in one_error_line(err)
    node = ObserverDir.open(Path(obs))
    try:
        assert node.verbatim
    finally:
        node.close()


def test_a_first_install_says_what_is_wrong_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v2 alone into a new directory is told it must start from v1 (not first asked for a
    hash it would then refuse anyway); a --v1-sha256 that is no SHA-256 is refused before
    anything is read; nothing is installed either way."""
    dirs = init_participants(tmp_path, capsys, ["BW", "EU"])
    obs, key = init_observer(tmp_path, capsys)
    v2 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key}, version=2)
    code, _, err = run(capsys, "roster", "install", v2, "--data", obs)
    assert code == 1 and "roster v2: the first trusted roster must be v1" in one_error_line(err)
    v1 = signed_roster(tmp_path, capsys, dirs, URLS, {"KP": key})
    code, _, err = run(capsys, "roster", "install", v1, "--v1-sha256", "b7d52a80", "--data", obs)
    assert code == 1 and "is not a SHA-256 (64 hex digits)" in one_error_line(err)
    assert not (Path(obs) / "roster").exists() or not any((Path(obs) / "roster").iterdir())


def _killed_init(data: Path, kind: list[str]) -> None:
    """Run `kimberley init` in a process that dies (no clean-up) just before the key file is
    written, as a kill -9 at that instant would."""
    script = (
        "import os, sys\n"
        "import ledger.datadir as d\n"
        "d._write_key = lambda path, signer: os._exit(9)\n"
        "from cli.main import app\n"
        "app(sys.argv[1:])\n"
    )
    args = ["init", *kind, "--network", NET, "--data", str(data)]
    command = [sys.executable, "-c", script, *args]
    died = subprocess.run(command, check=False, capture_output=True, timeout=60)
    assert died.returncode == 9


@pytest.mark.parametrize("kind", [["--participant", "BW"], ["--observer", AUDITOR]])
def test_an_init_killed_before_its_key_leaves_a_directory_init_can_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: list[str]
) -> None:
    """Killed after the store but before the key: commands say so (one line, exit 1), and
    init run again clears that empty store and finishes; a keyless store holding a log is
    never removed: init refuses it, naming the missing key."""
    data = tmp_path / "d"
    _killed_init(data, kind)
    assert (data / "store" / "data.mdb").exists() and not (data / "log.key").exists()
    code, _, err = run(capsys, "log", "show", "--data", str(data))
    assert code == 1 and "holds a store but no key file" in one_error_line(err)
    cli(capsys, "init", *kind, "--network", NET, "--data", str(data))
    key = "log.key" if kind[0] == "--participant" else "observer.key"
    assert (data / key).exists()
    open_any(data).close()  # the directory opens: key and store agree
    bw = Path(init_participants(tmp_path / "p", capsys, ["BW"])["BW"])
    (bw / "log.key").unlink()
    before = (bw / "store" / "data.mdb").read_bytes()
    code, _, err = run(capsys, "init", *kind, "--network", NET, "--data", str(bw))
    assert code == 1 and "holds 1 log(s) but" in one_error_line(err)
    assert "restore the key file" in one_error_line(err)
    assert (bw / "store" / "data.mdb").read_bytes() == before


def test_two_inits_of_one_directory_at_once_leave_one_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second init while the first is between its store and its key waits for the first,
    then refuses: the directory keeps the first's key and its checkpoint verifies (before,
    the second took the first's store for a killed init's and both exited 0)."""
    data = tmp_path / "d"
    script = (
        "import sys, time\n"
        "import ledger.datadir as d\n"
        "write = d._write_key\n"
        "def slow(path, signer):\n"
        "    time.sleep(2)\n"
        "    write(path, signer)\n"
        "d._write_key = slow\n"
        "from cli.main import main\n"
        "sys.argv = ['kimberley', *sys.argv[1:]]\n"
        "main()\n"
    )
    args = ["init", "--participant", "BW", "--network", NET, "--data", str(data)]
    first = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (data / "store" / "data.mdb").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        code, _, err = run(capsys, *args)
        assert code == 1 and "already holds a ledger" in one_error_line(err)
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0
    key = cli(capsys, "log", "key", "--data", str(data)).strip()
    assert key in out.decode()  # the first init's key is the directory's
    cli(capsys, "log", "verify", "--data", str(data))  # its checkpoint verifies with it


def test_a_key_link_whose_target_is_missing_is_no_unfinished_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An observer's key kept as a link to a volume not mounted: init refuses the directory
    instead of taking it for a killed init's and replacing the store and the key."""
    obs, _ = init_observer(tmp_path, capsys)
    key = Path(obs) / "observer.key"
    key.unlink()
    key.symlink_to(tmp_path / "not-mounted" / "observer.key")
    store = (Path(obs) / "store" / "data.mdb").read_bytes()
    code, _, err = run(capsys, "init", "--observer", AUDITOR, "--network", NET, "--data", obs)
    assert code == 1 and "already holds a ledger" in one_error_line(err)
    assert key.is_symlink() and (Path(obs) / "store" / "data.mdb").read_bytes() == store
