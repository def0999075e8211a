"""Proof bundles: built from a node's store, verified offline with roster v1 alone to the same
trace; every mutation (a flipped byte, a dropped, reordered or swapped proof, a removed
cosignature, a dropped declaration, a padded roster) is refused with its reason."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.bundle import (
    MAX_DETAIL,
    Bundle,
    BundleError,
    WitnessPolicyError,
    build_bundle,
    clean_detail,
    trusted_roster,
    verify_bundle,
)
from ledger.encoding import decode, encode
from ledger.fields import text_problem
from ledger.note import Note
from ledger.roster import SignedRoster
from ledger.trace import (
    ABSENT_REASONS,
    BACKWARD,
    ENTRY_NOT_HELD,
    FORWARD,
    FROZEN_ORIGIN,
    HASH_MISMATCH,
    IN_CUSTODY,
    PARCEL,
    Start,
    Trace,
)
from tests.test_cli import run
from tests.test_trace import WITNESS, Network, at, network, reader_of

__all__ = ["network"]  # the session fixture, shared with the trace tests


def bundled(
    path: Path, start: Start, rosters: list[bytes], direction: str = BACKWARD, witnesses: int = 1
) -> tuple[Trace, bytes]:
    """Trace `start` in the store at `path` and bundle it."""
    with reader_of(path) as reader:
        return build_bundle(reader, start, direction, rosters, witnesses=witnesses)


@pytest.fixture(scope="session")
def hub(network: Network) -> tuple[Trace, bytes]:
    """India's mixed parcel traced back to BW, RU and CA, bundled."""
    start = Start(PARCEL, "EU-2026-000001", at("IN"))
    return bundled(network.dirs["IN"], start, [network.roster_file])


@pytest.fixture(scope="session")
def broken(network: Network) -> tuple[Trace, bytes]:
    """India's parcel with goods of the doctored CF export: a declared absence, bundled."""
    start = Start(PARCEL, "EU-2026-000003", at("IN"))
    return bundled(network.dirs["IN"], start, [network.roster_file])


def test_a_bundle_verifies_offline_to_the_very_same_trace(
    network: Network, hub: tuple[Trace, bytes]
) -> None:
    """With nothing but roster v1, the verifier re-derives the store's trace exactly and names
    each log's checkpoint and the witness who cosigned it."""
    built, data = hub
    verified = verify_bundle(data, network.roster_file)
    assert verified.trace == built
    assert verified.roster.version == 1 and verified.declared == () and verified.frozen == ()
    assert "at least 1 roster Participant other than the log's own" in verified.policy
    logs = {log.origin: log.witnesses for log in verified.logs}
    assert logs == {at(c): (WITNESS[c],) for c in ("BW", "RU", "CA", "EU", "IN")}
    assert sum(log.entries for log in verified.logs) == len(built.entries) == 13


def test_a_forward_bundle_declares_where_goods_rest(network: Network) -> None:
    """Forward from Botswana's parcel: the hops are proved, 'in custody' is declared."""
    start = Start(PARCEL, "BW-P1", at("BW"))
    built, data = bundled(network.dirs["IN"], start, [network.roster_file], FORWARD)
    verified = verify_bundle(data, network.roster_file)
    assert verified.trace == built
    assert {(d.subject, d.reason) for d in verified.declared} == {
        ("EU-B", IN_CUSTODY),
        ("EU-2026-000001", IN_CUSTODY),
    }


def test_a_break_travels_in_the_bundle_and_is_shown_offline(
    network: Network,
    broken: tuple[Trace, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CF export India's node does not hold is declared, and the verifier shows the break
    and the 40 ct of unknown origin; the command says so up front and exits 1."""
    built, data = broken
    verified = verify_bundle(data, network.roster_file)
    assert verified.trace == built and verified.trace.unknown == 40_00
    (declared,) = verified.declared
    assert (declared.ask, declared.origin, declared.reason) == ("entry", at("CF"), ENTRY_NOT_HELD)
    assert declared.subject == str(network.cf_doctored)
    (tmp_path / "b.bundle").write_bytes(data)
    (tmp_path / "v1.roster").write_bytes(network.roster_file)
    args = (str(tmp_path / "b.bundle"), "--trust", str(tmp_path / "v1.roster"))
    code, out, _ = run(capsys, "verify-bundle", *args)
    assert code == 1  # authentic, but it does not prove where all the goods came from
    assert "; the trace it proves has 1 break (below)" in out.splitlines()[0]
    code, out, _ = run(capsys, "verify-bundle", *args, "--json")
    assert code == 1 and json.loads(out)["trace"]["complete"] is False


def test_the_witness_policy_is_enforced_and_stated(network: Network) -> None:
    """A store with no cosigned checkpoint: no bundle under the default policy (the log is
    named); with --witnesses 0 one is made, refused by a default verifier, accepted by one
    that states it accepts log signatures alone. The fork and the freeze show offline."""
    start = Start(PARCEL, "EU-MIX", at("EU"))
    with pytest.raises(WitnessPolicyError, match=r"no checkpoint of kp\.example/BW covering"):
        bundled(network.views["fork"], start, [network.roster_file])
    built, data = bundled(network.views["fork"], start, [network.roster_file], witnesses=0)
    with pytest.raises(WitnessPolicyError, match="cosigned by 0 other Participant"):
        verify_bundle(data, network.roster_file)
    verified = verify_bundle(data, network.roster_file, witnesses=0)
    assert verified.policy.startswith("none: checkpoints signed by their log alone")
    assert verified.trace == built and verified.frozen == (at("BW"),)
    assert {b.reason for b in verified.trace.breaks} == {HASH_MISMATCH, FROZEN_ORIGIN}


def test_the_roster_chain_is_checked_signature_by_signature(
    network: Network, hub: tuple[Trace, bytes]
) -> None:
    """Another v1 is refused; a v2 signed by all is followed; a v2 padded with a stray
    signature is refused although the chain rules would ignore it."""
    other = SignedRoster(dataclasses.replace(network.roster, threshold=1))
    for signer in network.signers.values():
        other = other.sign(signer)
    with pytest.raises(BundleError, match="not the trusted roster v1"):
        verify_bundle(hub[1], other.to_bytes())
    v2 = SignedRoster(dataclasses.replace(network.roster, version=2))
    for signer in network.signers.values():
        v2 = v2.sign(signer)
    start = Start(PARCEL, "EU-2026-000002", at("IN"))
    chain = [network.roster_file, v2.to_bytes()]
    _, data = bundled(network.dirs["IN"], start, chain)
    assert verify_bundle(data, network.roster_file).roster.version == 2
    padded = SignedRoster(v2.roster, (*v2.signatures, (b"\x00\x01\x02\x03", bytes(64))))
    assert trusted_roster([network.roster_file, v2.to_bytes()]).version == 2
    with pytest.raises(BundleError, match="roster v2 signature 8 is by no roster key"):
        trusted_roster([network.roster_file, padded.to_bytes()])


# -- every mutation is refused ---------------------------------------------------------------


def _without_cosignatures(bundle: Bundle, origin_at: int) -> Bundle:
    """Every proof of one log with its checkpoint's cosignature lines removed."""
    origin = _origin(bundle, origin_at)

    def strip(note: bytes) -> bytes:
        parsed = Note.from_bytes(note)
        return Note(parsed.text, parsed.signatures[:1]).to_bytes()

    proofs = tuple(
        dataclasses.replace(p, checkpoint=strip(p.checkpoint)) if _of(p, origin) else p
        for p in bundle.proofs
    )
    return dataclasses.replace(bundle, proofs=proofs)


def _origin(bundle: Bundle, i: int) -> str:
    return Note.from_bytes(bundle.proofs[i % len(bundle.proofs)].checkpoint).text.split("\n")[0]


def _of(proof: object, origin: str) -> bool:
    return Note.from_bytes(proof.checkpoint).text.startswith(origin + "\n")  # type: ignore[attr-defined]


#: Builder text that could pose as a verifier's own line or hide what it says on a terminal.
UNPRINTABLE = [
    "as of size 9\ncomplete: 1 hop, every one verified",
    "\x1b[1;32mALL GOOD\x1b[0m",
    "as of size 9\r",
    "tab\there",
    "bidi \u202egnorw\u202c",
    "zero\u200bwidth",
    "line\u2028separator",
    "next\x85line",
    " leading space",
]


def mutate(data: bytes, how: str, i: int, j: int, byte: int) -> bytes:
    """One mutation of a bundle file; `i`, `j` pick parts, `byte` is what a flip XORs in."""
    bundle = Bundle.from_bytes(data)
    proofs = list(bundle.proofs)
    n = len(proofs)
    i, j = i % n, j % n
    if j == i:
        j = (i + 1) % n
    match how:
        case "flip":
            at_ = i * 7919 % len(data)
            return data[:at_] + bytes([data[at_] ^ byte]) + data[at_ + 1 :]
        case "flip-proof-text":
            text = proofs[i].to_text().encode()
            k = j * 131 % len(text)
            flipped = text[:k] + bytes([text[k] ^ byte]) + text[k + 1 :]
            raw = bundle.to_bytes()
            return raw.replace(text, flipped)
        case "drop":
            del proofs[i]
        case "swap":
            proofs[i], proofs[j] = proofs[j], proofs[i]
        case "duplicate":
            proofs.insert(i, proofs[i])
        case "replace-hashes":
            if proofs[i].hashes == proofs[j].hashes:
                proofs[i] = dataclasses.replace(proofs[i], hashes=proofs[i].hashes[:-1])
            else:
                proofs[i] = dataclasses.replace(proofs[i], hashes=proofs[j].hashes)
        case "replace-proof":
            proofs[i] = proofs[j]
        case "uncosign":
            return _without_cosignatures(bundle, i).to_bytes()
        case "drop-declared":
            return dataclasses.replace(bundle, absent=bundle.absent[1:]).to_bytes()
        case "detail":  # builder text that would pose as the verifier's own
            first = dataclasses.replace(bundle.absent[0], detail=UNPRINTABLE[i % len(UNPRINTABLE)])
            return dataclasses.replace(bundle, absent=(first, *bundle.absent[1:])).to_bytes()
        case "declare-twice":  # a second answer to the same question
            first = bundle.absent[0]
            other = dataclasses.replace(first, reason=ABSENT_REASONS[j % len(ABSENT_REASONS)])
            if other == first:
                other = dataclasses.replace(first, detail=first.detail + " again")
            return dataclasses.replace(bundle, absent=tuple(sorted({first, other}))).to_bytes()
    return dataclasses.replace(bundle, proofs=tuple(proofs)).to_bytes()


MUTATIONS = [
    "flip",
    "flip-proof-text",
    "drop",
    "swap",
    "duplicate",
    "replace-hashes",
    "replace-proof",
    "uncosign",
    "drop-declared",
    "detail",
    "declare-twice",
]


@given(
    which=st.sampled_from(["hub", "broken"]),
    how=st.sampled_from(MUTATIONS),
    i=st.integers(0, 10_000),
    j=st.integers(0, 10_000),
    byte=st.integers(1, 255),
)
def test_every_mutation_of_a_bundle_is_refused_with_a_reason(
    network: Network,
    hub: tuple[Trace, bytes],
    broken: tuple[Trace, bytes],
    which: str,
    how: str,
    i: int,
    j: int,
    byte: int,
) -> None:
    """A flipped byte anywhere, a dropped, swapped, duplicated or replaced proof, stripped
    cosignatures, a dropped or doubled declaration or an unprintable detail: verification fails,
    saying why."""
    data = hub[1] if which == "hub" else broken[1]
    if how in ("drop-declared", "detail", "declare-twice") and which == "hub":
        how = "drop"  # the hub bundle declares nothing
    mutated = mutate(data, how, i, j, byte)
    assert mutated != data
    with pytest.raises(BundleError, match=r"^bundle: \S") as caught:
        verify_bundle(mutated, network.roster_file)
    assert len(str(caught.value)) < 2000


def test_the_decoder_round_trips_and_is_strict(hub: tuple[Trace, bytes]) -> None:
    """A bundle re-encodes to its own bytes; trailing bytes and an unknown version fail."""
    data = hub[1]
    assert Bundle.from_bytes(data).to_bytes() == data
    with pytest.raises(BundleError, match="trailing"):
        Bundle.from_bytes(data + b"\x00")
    newer = data.replace(b"kimberley/trace-bundle/v1", b"kimberley/trace-bundle/v2")
    with pytest.raises(BundleError, match="format"):
        Bundle.from_bytes(newer)


# -- the command line ------------------------------------------------------------------------


def test_trace_bundle_then_verify_bundle_offline(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kimberley trace --bundle` writes it; `kimberley verify-bundle --trust` checks it with no
    data directory, states the policy and shows the origins; a tampered copy fails in one line."""
    out_file, trust = tmp_path / "in.bundle", tmp_path / "v1.roster"
    trust.write_bytes(network.roster_file)
    data = str(network.dirs["IN"])
    code, out, err = run(
        capsys,
        "trace",
        "EU-2026-000002",
        "--origin",
        "IN",
        "--data",
        data,
        "--bundle",
        str(out_file),
    )
    assert code == 0, err
    assert f"proof bundle: {out_file}" in out
    again = tmp_path / "again.bundle"
    args = ("trace", "EU-2026-000002", "--origin", "IN", "--data", data, "--json")
    code, out, err = run(capsys, *args, "--bundle", str(again))
    made = json.loads(out)["bundle"]
    assert code == 0 and made["file"] == str(again) and made["entries"] == 7
    assert again.read_bytes() == out_file.read_bytes()  # the same snapshot, the same bytes
    code, out, err = run(capsys, "verify-bundle", str(out_file), "--trust", str(trust))
    assert code == 0, err
    assert "bundle verified offline against roster v1" in out
    assert "witness policy: every checkpoint cosigned by at least 1 roster" in out
    assert "origin AO: AO-P1 @ AO (entry 3), MINE-1, 2026-03-01: 500.00 ct, 100.00%" in out
    code, out, err = run(capsys, "verify-bundle", str(out_file), "--trust", str(trust), "--json")
    doc = json.loads(out)
    assert doc["verified"] is True and doc["roster_version"] == 1
    assert [o["country"] for o in doc["trace"]["origins"]] == ["AO"]
    tampered = bytearray(out_file.read_bytes())
    tampered[len(tampered) // 2] ^= 0x20
    out_file.write_bytes(bytes(tampered))
    code, out, err = run(capsys, "verify-bundle", str(out_file), "--trust", str(trust))
    assert code == 2 and out == "" and err.startswith("error: bundle: ")
    assert len(err.strip().splitlines()) == 1


def test_trace_bundle_refuses_without_cosigned_checkpoints(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node whose checkpoints nobody cosigned cannot bundle under the default policy."""
    data = str(network.dirs["BW"])  # Botswana's own node: no witness cosigned anything there
    code, _, err = run(
        capsys, "trace", "BW-P1", "--data", data, "--bundle", str(tmp_path / "x.bundle")
    )
    assert code == 2 and "no checkpoint of kp.example/BW covering entry 3" in err
    assert not (tmp_path / "x.bundle").exists()


def test_verify_bundle_reads_a_device_only_up_to_its_limit(
    network: Network, tmp_path: Path
) -> None:
    """`verify-bundle /dev/zero` under a 4 GB address-space limit is refused in one line
    (the file is read only up to the bundle size limit), not a MemoryError traceback."""
    trust = tmp_path / "v1.roster"
    trust.write_bytes(network.roster_file)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4_000_000_000, 4_000_000_000))

    command = [sys.executable, "-c", "from cli.entry import main; main()", "verify-bundle"]
    done = subprocess.run(
        [*command, "/dev/zero", "--trust", str(trust)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "error: bundle /dev/zero is over the 67,108,864-byte limit: not a Kimberley bundle file\n"
    )


def test_verify_bundle_says_what_is_wrong_with_its_inputs(
    network: Network, hub: tuple[Trace, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle given as --trust, an empty file, a roster v2, or a roster given as the bundle:
    each error says what the file is, in one line, not a roster mismatch or a msgpack fault."""
    bundle, trust = tmp_path / "hub.bundle", tmp_path / "v1.roster"
    bundle.write_bytes(hub[1])
    trust.write_bytes(network.roster_file)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    v2 = SignedRoster(dataclasses.replace(network.roster, version=2))
    for signer in network.signers.values():
        v2 = v2.sign(signer)
    newer = tmp_path / "v2.roster"
    newer.write_bytes(v2.to_bytes())
    cases = [
        (bundle, bundle, "error: --trust: not a roster file (roster file: "),
        (bundle, empty, "error: --trust: the roster file is empty"),
        (bundle, newer, "error: --trust: this is roster version 2; trust starts at the roster v1"),
        (trust, trust, "error: bundle: not a Kimberley proof bundle (another format, want "),
        (empty, trust, "error: bundle: not a Kimberley proof bundle (the file is empty)"),
        (tmp_path / "none", trust, f"error: bundle {tmp_path / 'none'}: No such file"),
    ]
    for file, trusted, said in cases:
        code, out, err = run(capsys, "verify-bundle", str(file), "--trust", str(trusted))
        assert code == 2 and out == "", err
        assert err.startswith(said) and len(err.strip().splitlines()) == 1, (file, err)


def test_trace_bundle_write_errors_name_the_path_given(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--bundle DIR` and a file in a missing directory are refused naming the path given,
    never the temporary file beside it."""
    args = ("trace", "EU-2026-000002", "--origin", "IN", "--data", str(network.dirs["IN"]))
    code, _, err = run(capsys, *args, "--bundle", str(tmp_path))
    assert code == 2 and err == f"error: --bundle {tmp_path} is a directory; give a file name\n"
    missing = tmp_path / "no" / "x.bundle"
    code, _, err = run(capsys, *args, "--bundle", str(missing))
    assert code == 2 and err.startswith(f"error: cannot write the bundle to {missing}: ")
    assert ".tmp" not in err


# -- what the builder declares ----------------------------------------------------------------


def _declaring(data: bytes, **changes: str) -> bytes:
    """The bundle with its first declaration changed."""
    bundle = Bundle.from_bytes(data)
    first = dataclasses.replace(bundle.absent[0], **changes)
    return dataclasses.replace(bundle, absent=(first, *bundle.absent[1:])).to_bytes()


@pytest.mark.parametrize("text", UNPRINTABLE)
def test_a_declared_detail_must_be_printable_text(
    network: Network, broken: tuple[Trace, bytes], text: str
) -> None:
    """Control characters, newlines, bidi and other format characters in a detail (and in
    every other text field a bundle carries) are refused by the strict parse."""
    with pytest.raises(BundleError, match=r"^bundle: absent\[0\]\.detail must "):
        verify_bundle(_declaring(broken[1], detail=text), network.roster_file)
    for field in ("subject", "origin"):
        with pytest.raises(BundleError, match=rf"^bundle: absent\[0\]\.{field} must "):
            Bundle.from_bytes(_declaring(broken[1], **{field: text}))
    bundle = Bundle.from_bytes(broken[1])
    for where, changed in (
        ("start.name", dataclasses.replace(bundle, start=Start(PARCEL, text, at("IN")))),
        ("start.origin", dataclasses.replace(bundle, start=Start(PARCEL, "X", text))),
        ("frozen", dataclasses.replace(bundle, frozen=(text,))),
    ):
        with pytest.raises(BundleError, match=rf"^bundle: {where} must "):
            Bundle.from_bytes(changed.to_bytes())


def test_two_answers_to_one_question_are_refused(
    network: Network, broken: tuple[Trace, bytes]
) -> None:
    """A second declaration of the same (ask, origin, subject), with another reason or only
    another detail, is refused: the last one must not silently win."""
    bundle = Bundle.from_bytes(broken[1])
    (first,) = bundle.absent
    for other in (
        dataclasses.replace(first, reason="not-imported", detail=""),
        dataclasses.replace(first, detail="another sentence"),
    ):
        twice = dataclasses.replace(bundle, absent=tuple(sorted([first, other]))).to_bytes()
        with pytest.raises(BundleError, match="two answers to one question"):
            verify_bundle(twice, network.roster_file)


def test_a_bundle_without_details_is_v1_and_still_verifies(
    network: Network, broken: tuple[Trace, bytes]
) -> None:
    """Without any detail a bundle keeps format v1 (what older verifiers read); with one it is
    v2; the other id, or an empty detail, is a second encoding of the same bundle: refused."""
    built, data = broken
    assert b"kimberley/trace-bundle/v2" in data and Bundle.from_bytes(data).absent[0].detail
    plain = _declaring(data, detail="")
    assert b"kimberley/trace-bundle/v1" in plain and b"detail" not in plain
    verified = verify_bundle(plain, network.roster_file)
    assert verified.trace.unknown == built.unknown and len(verified.trace.breaks) == 1
    assert Bundle.from_bytes(plain).to_bytes() == plain
    with pytest.raises(BundleError, match="format kimberley/trace-bundle/v1 but a declaration"):
        Bundle.from_bytes(data.replace(b"trace-bundle/v2", b"trace-bundle/v1"))
    with pytest.raises(BundleError, match="format kimberley/trace-bundle/v2 but no declaration"):
        Bundle.from_bytes(plain.replace(b"trace-bundle/v1", b"trace-bundle/v2"))
    doc = decode(data)
    doc["absent"][0]["detail"] = ""
    with pytest.raises(BundleError, match=r"absent\[0\] has an empty detail"):
        Bundle.from_bytes(encode(doc))


def test_the_builder_cleans_a_detail_it_bundles() -> None:
    """A sentence with line breaks or control characters is bundled printable, never refused."""
    assert clean_detail("as of size 9\n\x1b[1mbold\u202e ") == "as of size 9  [1mbold"
    assert clean_detail("\n\t") == "" and clean_detail("x" * 2000) == "x" * MAX_DETAIL
    for text in UNPRINTABLE:
        assert text_problem(clean_detail(text), MAX_DETAIL) is None


def test_verify_bundle_shows_declarations_as_the_builders_word(
    network: Network,
    broken: tuple[Trace, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every line with builder text says "builder says"; JSON marks declared nodes and breaks."""
    (tmp_path / "v1.roster").write_bytes(network.roster_file)
    forward = bundled(
        network.dirs["IN"], Start(PARCEL, "BW-P1", at("BW")), [network.roster_file], FORWARD
    )[1]
    for name, data in (("broken", broken[1]), ("forward", forward)):
        (tmp_path / name).write_bytes(data)
        args = ("verify-bundle", str(tmp_path / name), "--trust", str(tmp_path / "v1.roster"))
        _, out, _ = run(capsys, *args)
        details = {d.detail for d in Bundle.from_bytes(data).absent}
        assert details and all(details)
        for line in out.splitlines():
            if any(d in line for d in details):
                assert "builder says: " in line, line
        if name == "forward":
            assert "builder says: rests in-custody: " in out
        else:
            assert f"break {ENTRY_NOT_HELD} on " in out
        _, out, _ = run(capsys, *args, "--json")
        doc = json.loads(out)["trace"]
        noted = [n for n in doc["nodes"] if n["note"]]
        assert noted or doc["breaks"]
        assert all(n["declared"] for n in noted) and all(b["declared"] for b in doc["breaks"])
        assert not any(
            n["declared"] for n in doc["nodes"] if n["status"] == "verified" and not n["end"]
        )
