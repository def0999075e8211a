"""Which source `kimberley sync` takes each log from (`node.pull_logs`): the next source only
when one cannot serve a checkpoint that verifies; after that, that source's failure is the
log's, reported with the source, never papered over by another copy (a fork, an older one)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.datadir import DataDir
from ledger.errors import PeerError, ProofError, RuleViolation
from ledger.freeze import frozen_by
from ledger.observer_dir import ObserverDir
from ledger.roster_files import load_roster
from node.peers import Peers
from node.pull_logs import LogPull, pull_first
from node.sources import DirectorySource, TileSource
from tests.test_cli import run
from tests.test_custody_cli import cli
from tests.test_observer import NET, make_observer_dir, one_error_line

BW = f"{NET}/BW"


def _register(capsys: pytest.CaptureFixture[str], data: str, actor: str) -> None:
    """Append one actor.register entry to `data`'s own log."""
    cli(capsys, "actor", "register", actor, "--role", "mine", "--name", "n", "--licence", "l",
        "--location", "x", "--zone", "z", "--data", data)  # fmt: skip


def _publish(capsys: pytest.CaptureFixture[str], data: str, mirror: Path) -> str:
    """Publish `data`'s log (and the replicas it holds) as static tiles under `mirror`."""
    cli(capsys, "tiles", "publish", str(mirror), "--data", data)
    return str(mirror)


@pytest.fixture
def observer_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """BW and EU with a roster listing the auditor, installed in all three directories."""
    return make_observer_dir(tmp_path, capsys)


@pytest.fixture
def forked(observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Two histories BW signed, sharing entry 0, each published: `A` (entries A1, A2 after
    it) and `B` (B1, B2), both of size 3; `A2` is A at size 2 and `EU` the EU's log."""
    bw, tmp = observer_dir["BW"], Path(observer_dir["tmp"])
    _register(capsys, bw, "BW-MINE-1")
    shutil.copytree(bw, tmp / "bw2")
    bw2 = str(tmp / "bw2")
    _register(capsys, bw, "BW-MINE-A1")
    a2 = _publish(capsys, bw, tmp / "mA2")
    _register(capsys, bw, "BW-MINE-A2")
    _register(capsys, bw2, "BW-MINE-B1")
    _register(capsys, bw2, "BW-MINE-B2")
    return observer_dir | {
        "A2": a2,
        "A": _publish(capsys, bw, tmp / "mA"),
        "B": _publish(capsys, bw2, tmp / "mB"),
        "EU": _publish(capsys, observer_dir["EU"], tmp / "mEU"),
    }


def _broken(mirror: str, name: str, part: str) -> str:
    """A copy of `mirror`, beside it, whose BW `tile/<part>` files are deleted."""
    copy = Path(mirror).parent / name
    shutil.copytree(mirror, copy)
    shutil.rmtree(copy / NET / "BW" / "tile" / part)
    return str(copy)


class Puller:
    """Pulls BW into the observer's directory with `pull_first`, recording what it opens."""

    def __init__(self, node: ObserverDir) -> None:
        self.node, self.roster, self.tried = node, load_roster(node.path), list[str]()

    def _open(self, location: str, origin: str) -> TileSource:
        self.tried.append(location)
        return DirectorySource(Path(location), origin)

    def __call__(self, *locations: str) -> LogPull:
        self.tried.clear()
        return pull_first(self.node.store, self.roster, BW, list(locations), self._open)

    def held(self) -> int:
        """How many BW entries the observer holds."""
        store = self.node.store
        with store.read() as txn:
            log_id = store.log_id(txn, BW)
            return 0 if log_id is None else store.head(txn, log_id).size


@pytest.fixture
def pull(observer_dir: dict[str, str]) -> Iterator[Puller]:
    """A `Puller` on the observer's directory, closed after the test."""
    node = ObserverDir.open(Path(observer_dir["obs"]))
    try:
        yield Puller(node)
    finally:
        node.close()


def test_sources_that_cannot_serve_a_verifying_checkpoint_are_passed_over(
    forked: dict[str, str], pull: Puller
) -> None:
    """A missing mirror, and one serving EU's checkpoint under BW's name (another key), are
    passed over, each with its reason; the next source's log is pulled and named."""
    tmp = Path(forked["tmp"])
    (tmp / "wrong-key" / NET).mkdir(parents=True)
    (tmp / "wrong-key" / NET / "BW").symlink_to(Path(forked["EU"]) / NET / "EU")
    done = pull(f"{tmp}/none", str(tmp / "wrong-key"), forked["A"])
    assert done.error is None and done.report is not None
    assert (done.report.after, done.source) == (3, forked["A"])
    assert pull.tried == [f"{tmp}/none", str(tmp / "wrong-key"), forked["A"]]
    assert [u.location for u in done.skipped] == [f"{tmp}/none", str(tmp / "wrong-key")]
    assert "checkpoint refused" in done.skipped[1].reason
    assert not done.from_owner  # a mirror, not BW's node
    nothing = pull(f"{tmp}/none", f"{tmp}/nothing")
    assert isinstance(nothing.error, PeerError) and nothing.source is None
    assert "none" in str(nothing.error) and "nothing" in str(nothing.error)
    assert pull.held() == 3


def test_no_fallback_once_a_source_served_a_verifying_checkpoint(
    forked: dict[str, str], pull: Puller
) -> None:
    """A's checkpoint verifies but its entry bundles are gone: the pull of BW fails from A
    and neither the fork B nor the older A2 is taken in its place; nothing is stored."""
    broken = _broken(forked["A"], "mA-broken", "entries")
    for other in (forked["B"], forked["A2"]):
        done = pull(broken, other)
        assert (done.source, pull.tried, done.report) == (broken, [broken], None)
        assert isinstance(done.error, PeerError)
    assert pull.held() == 0


def test_a_fork_of_entries_held_is_not_replaced_by_another_source(
    forked: dict[str, str], pull: Puller
) -> None:
    """Holding A at size 2, a source serving B (which forks at entry 1) fails the pull as a
    fork, kept as evidence; the next source (A, consistent) is not tried."""
    assert pull(forked["A2"]).error is None
    done = pull(forked["B"], forked["A"])
    assert isinstance(done.error, ProofError)
    assert (done.source, pull.tried, pull.held()) == (forked["B"], [forked["B"]], 2)
    with pull.node.store.read() as txn:
        assert frozen_by(pull.node.store, txn, BW) is not None


def test_a_rule_refusal_is_not_replaced_by_another_source(
    observer_dir: dict[str, str], capsys: pytest.CaptureFixture[str], pull: Puller
) -> None:
    """A source whose BW log has an entry breaking a custody rule fails BW's pull with that
    rule, the entries before it kept; a mirror that stopped before the entry is not tried."""
    bw, tmp = observer_dir["BW"], Path(observer_dir["tmp"])
    _register(capsys, bw, "BW-MINE-1")
    good = _publish(capsys, bw, tmp / "good")
    body = {"parcel": "P", "mine": "NONE", "carats": 1, "value": 1, "date": "2026-03-09",
            "origin": "BW"}  # fmt: skip
    cli(
        capsys,
        "log",
        "append",
        "parcel.mine",
        "--body",
        json.dumps(body),
        "--unchecked",
        "--data",
        bw,
    )
    bad = _publish(capsys, bw, tmp / "bad")
    done = pull(bad, good)
    assert isinstance(done.error, RuleViolation)
    assert (done.source, pull.tried, pull.held()) == (bad, [bad], 1)
    after = pull(good)  # the mirror from before the entry: short, and the refusal is why
    assert (after.error, after.short_of, after.refused) == (None, 2, (1, done.error.rule))


def test_a_source_missing_a_hash_tile_cannot_serve_it_and_is_no_fork(
    forked: dict[str, str], pull: Puller
) -> None:
    """Holding A at 2, a copy of A at 3 without its hash tiles cannot prove consistency: a
    PeerError from that source (no fork reported, nothing frozen), and no fallback."""
    assert pull(forked["A2"]).error is None
    no_tiles = _broken(forked["A"], "mA-no-tiles", "0")
    done = pull(no_tiles, forked["A"])
    assert isinstance(done.error, PeerError), done.error
    assert "tile/0/" in str(done.error)
    assert (done.source, pull.tried, pull.held()) == (no_tiles, [no_tiles], 2)
    with pull.node.store.read() as txn:
        assert frozen_by(pull.node.store, txn, BW) is None
    assert pull(forked["A"]).error is None and pull.held() == 3


def test_sync_reports_each_log_s_source_and_refuses_to_fall_back(
    forked: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync --origin BW` (a bare code) with A broken then B: exit 1, one line naming A,
    nothing held; from a missing mirror then A: the source, the mirror passed over and
    that it is not the owner's node, in text and JSON."""
    obs, tmp = forked["obs"], forked["tmp"]
    broken = _broken(forked["A"], "mA-broken", "entries")
    code, out, err = run(capsys, "sync", "--origin", "BW", "--peer", broken, "--peer",
                         forked["B"], "--data", obs)  # fmt: skip
    line = one_error_line(err)
    assert (code, out) == (1, "")
    assert line.startswith(f"error: {BW}: ") and f"checkpoint from {broken}; no fallback" in line
    code, out, _ = run(capsys, "sync", "--origin", "BW", "--peer", broken, "--json", "--data", obs)
    (shown,) = json.loads(out)
    assert (code, shown["source"], shown["skipped"], "after" in shown) == (1, broken, [], False)
    out = cli(capsys, "sync", "--origin", "bw", "--peer", f"{tmp}/none", "--peer", forked["A"],
              "--data", obs)  # fmt: skip
    assert f"{BW}: 0 -> 3 entries verified (checkpoint size 3) from {forked['A']}" in out
    assert "(not the owner's node)" in out and f"passed over: {tmp}/none" in out
    out = cli(capsys, "sync", "--origin", BW, "--peer", forked["A"], "--json", "--data", obs)
    (shown,) = json.loads(out)
    assert (shown["after"], shown["source"], shown["from_owner"]) == (3, forked["A"], False)
    out = cli(capsys, "sync", "--origin", BW, "--peer", forked["A2"], "--data", obs)  # stale
    assert "3 -> 3 entries verified (checkpoint size 2)" in out
    assert "(behind the 3 entries held here)" in out
    code, _, err = run(capsys, "sync", "--origin", "ZZ", "--data", obs)
    assert code == 1 and "no participant with log origin 'kp.example/ZZ'" in one_error_line(err)


def test_from_owner_compares_the_source_with_the_owner_s_roster_url() -> None:
    """A pull from the owner's URL (trailing '/' aside) is from the owner; any other is not."""
    owner = "http://127.0.0.1:8470"
    assert LogPull(BW, owner + "/", owner, ()).from_owner
    assert not LogPull(BW, "http://127.0.0.1:8471", owner, ()).from_owner
    assert not LogPull(BW, None, owner, ()).from_owner


def test_a_source_behind_what_the_log_signed_is_passed_over_for_the_next(
    forked: dict[str, str], pull: Puller
) -> None:
    """Holding A at 3, the stale mirror A2 (size 2) is still checked, then passed over as
    behind, and nothing is short; the next source is tried. After a pull from a copy of A
    without its entry bundles stopped short (checkpoint 3 verified, nothing held), a later
    pull from A2 alone leaves the log short of 3 and says so; A then brings the rest."""
    stale = pull(forked["A2"])
    assert (stale.report and stale.report.after, stale.short_of) == (2, None)
    broken = _broken(forked["A"], "mA-broken", "entries")
    stopped = pull(broken)
    assert isinstance(stopped.error, PeerError) and pull.held() == 2
    behind = pull(forked["A2"])
    assert behind.error is None and behind.report is not None
    assert (behind.report.after, behind.short_of, behind.source) == (2, 3, forked["A2"])
    done = pull(forked["A2"], forked["A"])
    assert pull.tried == [forked["A2"], forked["A"]]
    assert done.report is not None and (done.report.after, done.short_of) == (3, None)
    assert done.skipped == () and [u.location for u in done.behind] == [forked["A2"]]
    assert "its checkpoint of 2 entries is behind the 3 the log has signed" in done.behind[0].reason
    again = pull(forked["A2"], forked["B"])  # B forks at 1: it is still checked, and caught
    assert isinstance(again.error, ProofError) and again.source == forked["B"]


def test_sync_exits_1_for_a_log_held_short_of_a_checkpoint_it_verified(
    forked: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync` from a stale mirror after an interrupted pull: the log line, then one error line
    naming both sizes, exit 1; in JSON `short_of`. From the stale mirror then A: exit 0."""
    obs = forked["obs"]
    broken = _broken(forked["A"], "mA-broken", "entries")
    cli(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--data", obs)
    code, _, _ = run(capsys, "sync", "--origin", "BW", "--peer", broken, "--data", obs)
    assert code == 1
    code, out, err = run(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--data", obs)
    assert code == 1 and "2 -> 2 entries verified (checkpoint size 2)" in out
    assert one_error_line(err) == (
        f"error: {BW}: held here to 2 of the 3 entries the log has signed (a checkpoint a "
        "sync here verified); no source served the rest"
    )
    code, out, _ = run(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--json",
                       "--data", obs)  # fmt: skip
    (shown,) = json.loads(out)
    assert (code, shown["after"], shown["short_of"]) == (1, 2, 3)
    code, out, _ = run(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--peer",
                       forked["A"], "--data", obs)  # fmt: skip
    assert code == 0 and "2 -> 3 entries verified (checkpoint size 3)" in out
    assert f"pulled, but behind: {forked['A2']}: its checkpoint of 2 entries is behind" in out


def test_entries_a_source_behind_brought_are_reported_when_the_next_source_fails(
    forked: dict[str, str], capsys: pytest.CaptureFixture[str], pull: Puller
) -> None:
    """After an interrupted pull (3 signed, none held), the stale mirror A2 brings 2 entries
    and the next source fails: the pull reports both the 2 entries and the failure, in the
    text and the JSON (before, only the failure, with A2 'passed over')."""
    broken = _broken(forked["A"], "mA-broken", "entries")
    assert isinstance(pull(broken).error, PeerError) and pull.held() == 0
    done = pull(forked["A2"], broken)
    assert isinstance(done.error, PeerError) and done.source == broken and pull.held() == 2
    assert done.report is not None and (done.report.before, done.report.after) == (0, 2)
    assert [u.location for u in done.behind] == [forked["A2"]] and done.skipped == ()
    pull.node.close()
    obs = forked["obs"]
    code, out, _ = run(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--peer",
                         broken, "--json", "--data", obs)  # fmt: skip
    (shown,) = json.loads(out)
    assert code == 1 and (shown["before"], shown["after"]) == (2, 2) and "error" in shown
    assert [b["source"] for b in shown["behind"]] == [forked["A2"]]


def test_a_running_node_reports_a_frozen_log_once_a_round(
    forked: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """EU's node, holding BW's A at size 2, meets the fork B: BW is frozen. Each later
    background round says so once, not once per source it could have asked."""
    data = Path(forked["tmp"]) / "eu"
    cli(capsys, "sync", "--origin", "BW", "--peer", forked["A2"], "--data", str(data))
    code, _, _ = run(capsys, "sync", "--origin", "BW", "--peer", forked["B"], "--data", str(data))
    assert code == 1
    node = DataDir.open(data)
    try:
        extra = ("http://127.0.0.1:9", "http://127.0.0.1:19")  # more sources than the roster's
        peers = Peers(data, node.store, node.signer, extra_peers=extra)
        report = peers.round()
    finally:
        node.close()
    about_bw = [f for f in report.faults if BW in f]
    assert len(about_bw) == 1 and "is frozen on this node for equivocation" in about_bw[0]
