"""Interop: Go's sumdb note and tlog packages accept the checkpoints and proofs our CLI prints.

The Go toolchain vendors golang.org/x/mod/sumdb/{note,tlog}; at test time they are copied
into a temporary GOPATH next to tests/interop/verify.go (ours) and built offline.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.datadir import DataDir
from ledger.keys import Signer

REPO = Path(__file__).resolve().parents[1]
GO = shutil.which("go")
pytestmark = pytest.mark.skipif(
    GO is None, reason="`go` is not on PATH (apt-get install golang-go): Go interop not checked"
)

# The log gets FINAL entries; the (index, size) and (old, new) pairs to prove. Size 4 is a
# complete subtree, 3 and 7 are not. Each CLI run costs ~0.5 s, so the lists stay short.
FINAL = 7
INCLUSIONS = ((0, 7), (2, 7), (6, 7), (0, 1), (2, 3), (3, 4))
CONSISTENCIES = ((1, 3), (1, 4), (3, 7), (4, 7), (7, 7))


def _go_env(gopath: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        GOPATH=str(gopath),
        GO111MODULE="off",
        GOFLAGS="",
        GOPROXY="off",
        GOTOOLCHAIN="local",
    )
    if not env.get("HOME") and not env.get("XDG_CACHE_HOME") and not env.get("GOCACHE"):
        env["GOCACHE"] = str(gopath / "cache")
    return env


@pytest.fixture(scope="module")
def go_verify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our Go verifier, built offline against the toolchain's vendored sumdb packages."""
    assert GO is not None
    gopath = tmp_path_factory.mktemp("gopath")
    env = _go_env(gopath)
    goroot = subprocess.run(
        [GO, "env", "GOROOT"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    vendor = Path(goroot) / "src" / "cmd" / "vendor" / "golang.org" / "x"
    if not (vendor / "mod" / "sumdb" / "tlog").is_dir():
        pytest.skip(f"this Go toolchain does not vendor golang.org/x/mod/sumdb under {vendor}")
    src = gopath / "src"
    for package in ("mod/sumdb/note", "mod/sumdb/tlog", "crypto/ed25519"):
        if (vendor / package).is_dir():  # newer x/mod imports crypto/ed25519 directly
            shutil.copytree(vendor / package, src / "golang.org" / "x" / package)
    (src / "interop").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "interop" / "verify.go", src / "interop" / "verify.go")
    binary = gopath / "verify"
    built = subprocess.run(
        [GO, "build", "-o", str(binary), "interop"],
        cwd=src / "interop",
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"go build failed:\n{built.stderr}"
    return binary


def kimberley(*args: str) -> bytes:
    """Run our CLI (the `kimberley` entry point) and return its stdout bytes."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, f"kimberley {' '.join(args)} failed:\n{done.stderr.decode()}"
    return done.stdout


@dataclass
class Published:
    """What the CLI printed for a log of FINAL entries, each output saved in `dir`."""

    dir: Path
    vkey: Path
    checkpoints: dict[int, Path] = field(default_factory=dict)
    inclusions: dict[tuple[int, int], Path] = field(default_factory=dict)
    consistencies: dict[tuple[int, int], Path] = field(default_factory=dict)

    def save(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path


def checkpoint_of(proof: bytes) -> bytes:
    """The checkpoint note a tlog-proof carries after its blank line."""
    return proof.split(b"\n\n", 1)[1]


def extra_of(proof: bytes) -> bytes:
    """The entry bytes a tlog-proof carries on its `extra` line."""
    line = proof.split(b"\n")[1]
    assert line.startswith(b"extra ")
    return base64.b64decode(line[len(b"extra ") :], validate=True)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A log built with `kimberley` and the key, checkpoints and proofs it printed."""
    out = tmp_path_factory.mktemp("published")
    data = str(out / "bw")
    kimberley("init", "--participant", "BW", "--network", "kp.example", "--data", data)
    pub = Published(out, out / "vkey")
    pub.vkey.write_bytes(kimberley("log", "key", "--data", data))
    pub.checkpoints[0] = pub.save("cp0", kimberley("log", "checkpoint", "--data", data))
    for n in range(FINAL):
        body = f'{{"parcel": "BW-P-{n:06d}", "mine": "BW-MINE-1", "carats": {1000 + n}}}'
        done = kimberley(
            "log", "append", "parcel.mine", "--body", body, "--unchecked", "--json", "--data", data
        )
        assert (json.loads(done)["index"], json.loads(done)["size"]) == (n, n + 1)
    pub.checkpoints[FINAL] = pub.save(f"cp{FINAL}", kimberley("log", "checkpoint", "--data", data))
    jobs: dict[str, list[str]] = {}
    for index, size in INCLUSIONS:
        size_option = [] if size == FINAL else ["--size", str(size)]  # default: the latest
        jobs[f"incl-{index}-{size}"] = ["proof", "inclusion", str(index), *size_option]
    for old, new in CONSISTENCIES:
        jobs[f"cons-{old}-{new}"] = ["proof", "consistency", str(old), str(new)]
    with ThreadPoolExecutor(4) as pool:
        runs = pool.map(lambda a: kimberley(*a, "--data", data), jobs.values())
        outputs = dict(zip(jobs, runs, strict=True))
    for name, output in outputs.items():
        kind, a, b = name.split("-")
        key = (int(a), int(b))
        (pub.inclusions if kind == "incl" else pub.consistencies)[key] = pub.save(name, output)
    for (_, size), proof in pub.inclusions.items():  # the older checkpoints, as proofs carry them
        if size not in pub.checkpoints:
            pub.checkpoints[size] = pub.save(f"cp{size}", checkpoint_of(proof.read_bytes()))
    return pub


def go(binary: Path, *args: Path | str) -> subprocess.CompletedProcess[str]:
    """Run the Go verifier."""
    return subprocess.run(
        [str(binary), *map(str, args)], check=False, capture_output=True, text=True, timeout=60
    )


def accepted(binary: Path, *args: Path | str) -> str:
    """Run the Go verifier and return its `ok ...` line, failing the test if it rejects."""
    done = go(binary, *args)
    assert done.returncode == 0, f"Go rejected {args}: {done.stderr}"
    assert done.stdout.startswith("ok "), done.stdout
    return done.stdout.strip()


def test_go_note_package_opens_every_checkpoint(go_verify: Path, published: Published) -> None:
    """Go's note.Open accepts each checkpoint the CLI prints, under `kimberley log key`."""
    for size, note in published.checkpoints.items():
        origin, got_size, root = accepted(go_verify, "checkpoint", published.vkey, note).split()[2:]
        assert (origin, int(got_size)) == ("kp.example/BW", size)
        assert note.read_text("utf-8").split("\n")[2] == root


@pytest.fixture(scope="module")
def log_entries(published: Published) -> list[bytes]:
    """The exact bytes of every entry of the published log."""
    node = DataDir.open(published.dir / "bw")
    try:
        return list(node.own_log().entries())
    finally:
        node.close()


def test_go_tlog_recomputes_each_checkpoint_root(
    go_verify: Path, published: Published, log_entries: list[bytes]
) -> None:
    """Go's tlog hashes the log's entries into the very root each checkpoint signs."""
    entries = published.save("entries", b"".join(base64.b64encode(e) + b"\n" for e in log_entries))
    for size in sorted(published.checkpoints)[1:]:  # tlog.TreeHash(0) is all zeros, not RFC 6962's
        accepted(go_verify, "root", published.vkey, published.checkpoints[size], entries)


def test_go_tlog_checks_every_inclusion_proof(
    go_verify: Path, published: Published, log_entries: list[bytes]
) -> None:
    """Go's tlog.CheckRecord accepts each `kimberley proof inclusion` for the entry it names."""
    for (index, size), proof in published.inclusions.items():
        assert extra_of(proof.read_bytes()) == log_entries[index]
        assert checkpoint_of(proof.read_bytes()) == published.checkpoints[size].read_bytes()
        entry = published.save(f"entry{index}", log_entries[index])
        for given in ([], [entry]):  # the entry the proof carries, then the log's own bytes
            assert accepted(go_verify, "inclusion", published.vkey, proof, *given) == (
                f"ok inclusion {index} {size}"
            )


def test_go_tlog_checks_every_consistency_proof(go_verify: Path, published: Published) -> None:
    """Go's tlog.CheckTree accepts each `kimberley proof consistency` between two checkpoints."""
    for (old, new), proof in published.consistencies.items():
        cps = published.checkpoints
        assert accepted(go_verify, "consistency", published.vkey, cps[old], cps[new], proof) == (
            f"ok consistency {old} {new}"
        )


def flip_b64(text: str, at: int = 0) -> str:
    """The base64 `text` with one bit of its decoded byte `at` flipped."""
    raw = bytearray(base64.b64decode(text, validate=True))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


Edit = Callable[[str], str]


def edit_line(text: str, number: int, change: Edit) -> str:
    """`text` with line `number` replaced by `change(line)`."""
    lines = text.split("\n")
    lines[number] = change(lines[number])
    return "\n".join(lines)


def flip_signature(line: str) -> str:
    """A note signature line with one bit of the Ed25519 signature (after the key id) flipped."""
    dash, name, sig = line.split(" ")
    return f"{dash} {name} {flip_b64(sig, 10)}"


def flip_root(note: str) -> str:
    """A checkpoint note with one bit of its root hash flipped."""
    return edit_line(note, 2, flip_b64)


def in_checkpoint(edit: Edit) -> Edit:
    """Apply `edit` to the checkpoint a tlog-proof carries after its blank line."""

    def edited(proof: str) -> str:
        head, note = proof.split("\n\n", 1)
        return head + "\n\n" + edit(note)

    return edited


def replace(line: str) -> Edit:
    """An edit that swaps a whole line for `line`."""
    return lambda _: line


# Each case: Go mode, the published file to edit (see `published`), and the edit.
TAMPERED: dict[str, tuple[str, str, Edit]] = {
    "checkpoint root bit": ("checkpoint", "cp7", flip_root),
    "checkpoint size": ("checkpoint", "cp7", lambda t: edit_line(t, 1, replace("8"))),
    "checkpoint origin": ("checkpoint", "cp7", lambda t: edit_line(t, 0, replace("kp.example/BX"))),
    "checkpoint signature bit": ("checkpoint", "cp7", lambda t: edit_line(t, 4, flip_signature)),
    "inclusion hash bit": ("inclusion", "incl-2-7", lambda t: edit_line(t, 4, flip_b64)),
    "inclusion entry bit": (
        "inclusion",
        "incl-2-7",
        lambda t: edit_line(t, 1, lambda x: "extra " + flip_b64(x[6:], 40)),
    ),
    "inclusion index": ("inclusion", "incl-2-7", lambda t: edit_line(t, 2, replace("index 3"))),
    "inclusion checkpoint root bit": ("inclusion", "incl-2-7", in_checkpoint(flip_root)),
    "inclusion checkpoint signature bit": (
        "inclusion",
        "incl-2-7",
        in_checkpoint(lambda t: edit_line(t, 4, flip_signature)),
    ),
    "consistency hash bit": ("consistency", "cons-3-7", lambda t: edit_line(t, 1, flip_b64)),
    "consistency old checkpoint root bit": ("consistency", "cp3", flip_root),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_go_rejects_a_tampered_checkpoint_or_proof(
    go_verify: Path, published: Published, tmp_path: Path, case: str
) -> None:
    """One flipped bit or edited line in a checkpoint or proof makes Go reject what it accepted."""
    mode, name, edit = TAMPERED[case]
    original = published.dir / name
    tampered = tmp_path / name
    tampered.write_text(edit(original.read_text("utf-8")), "utf-8")
    assert tampered.read_bytes() != original.read_bytes()

    def args(path: Path) -> list[Path]:
        if mode != "consistency":
            return [published.vkey, path]
        files = {
            "cp3": published.checkpoints[3],
            "cp7": published.checkpoints[7],
            "cons-3-7": published.consistencies[(3, 7)],
            name: path,
        }
        return [published.vkey, files["cp3"], files["cp7"], files["cons-3-7"]]

    accepted(go_verify, mode, *args(original))
    done = go(go_verify, mode, *args(tampered))
    assert done.returncode == 1, f"Go accepted the tampered {name}: {done.stdout}"
    assert done.stderr.startswith("verify: "), done.stderr


def test_go_rejects_a_checkpoint_under_another_key_of_the_same_name(
    go_verify: Path, published: Published, tmp_path: Path
) -> None:
    """A checkpoint does not verify against a different key that merely has the log's name."""
    other = tmp_path / "other.vkey"
    other.write_text(Signer.generate("kp.example/BW").verifier.to_text(), "utf-8")
    done = go(go_verify, "checkpoint", other, published.checkpoints[7])
    assert done.returncode == 1
    assert "no verifiable signatures" in done.stderr


def test_go_rejects_a_consistency_proof_for_another_old_size(
    go_verify: Path, published: Published
) -> None:
    """A consistency proof from size 3 does not prove size 4 a prefix of size 7."""
    cps = published.checkpoints
    done = go(
        go_verify, "consistency", published.vkey, cps[4], cps[7], published.consistencies[(3, 7)]
    )
    assert done.returncode == 1
    assert "invalid transparency proof" in done.stderr
