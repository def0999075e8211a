"""The signed roster: file codec, first-version trust, TUF-style updates and every refusal."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import decode, encode
from ledger.errors import RosterError
from ledger.keys import Signer, Verifier
from ledger.roster import (
    ROSTER_CONTEXT,
    Observer,
    Participant,
    Roster,
    RosterSignatureError,
    RosterVersionError,
    SignedRoster,
    verify_chain,
    verify_first,
    verify_next,
)

NET = "kp.example"
COUNTRIES = {"BW": ("BW",), "ZA": ("ZA",), "CF": ("CF",), "EU": ("BE", "DE", "FR", "NL")}


def signer(code: str, generation: int = 0) -> Signer:
    """A deterministic log key for `code`; a later `generation` is a rotated key."""
    seed = hashlib.sha256(f"{code}/{generation}".encode()).digest()
    return Signer(f"{NET}/{code}", seed)


def member(code: str, generation: int = 0, **changes: object) -> Participant:
    """Participant `code` with its key of `generation`."""
    p = Participant(
        code,
        f"Authority of {code}",
        COUNTRIES.get(code, (code,)),
        signer(code, generation).verifier,
        f"https://{code.lower()}.kp.example/",
    )
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


def roster(version: int, *members: Participant, threshold: int | None = None) -> Roster:
    """A roster of `members` at `version`."""
    auditor = Observer("KP Working Group on Monitoring", Signer("wgm", bytes(32)).verifier)
    return Roster(NET, version, members, (auditor,), threshold)


def signed(r: Roster, *signers: Signer) -> SignedRoster:
    """`r` signed by each of `signers`, in order."""
    out = SignedRoster(r)
    for s in signers:
        out = out.sign(s)
    return out


V1 = roster(1, member("BW"), member("ZA"), member("EU"))
ALL_V1 = (signer("BW"), signer("ZA"), signer("EU"))


def test_first_version_signed_by_everyone_is_trusted() -> None:
    """Version 1 signed by every listed Participant is accepted as the trust root."""
    assert verify_first(signed(V1, *ALL_V1)) == V1


def test_first_version_missing_one_signature_is_refused_naming_it() -> None:
    """Version 1 lacking one Participant's signature is refused, naming that Participant."""
    with pytest.raises(RosterSignatureError, match=r"^roster v1: .*missing signatures: ZA$") as e:
        verify_first(signed(V1, signer("BW"), signer("EU")))
    assert (e.value.version, e.value.missing) == (1, ("ZA",))


def test_first_version_needs_suspended_participants_too() -> None:
    """Every listed Participant signs version 1, suspended ones included."""
    v1 = roster(1, member("BW"), member("CF", status="suspended"))
    with pytest.raises(RosterSignatureError, match=r"missing signatures: CF"):
        verify_first(signed(v1, signer("BW")))
    assert verify_first(signed(v1, signer("BW"), signer("CF"))) == v1


def test_first_trusted_roster_must_be_version_one() -> None:
    """A version-2 roster cannot serve as the trust root, however well signed."""
    v2 = dataclasses.replace(V1, version=2)
    with pytest.raises(
        RosterVersionError, match=r"^roster v2: the first trusted roster must be v1"
    ):
        verify_first(signed(v2, *ALL_V1))


def test_file_round_trips_through_canonical_bytes() -> None:
    """A signed roster file decodes to the same roster and signatures and re-encodes identically."""
    data = signed(V1, *ALL_V1).to_bytes()
    again = SignedRoster.from_bytes(data)
    assert again == signed(V1, *ALL_V1)
    assert again.to_bytes() == data
    assert verify_chain(data, []) == V1


def test_signed_bytes_carry_the_roster_context() -> None:
    """Roster signatures cover a context line, so they cannot pass for entry or note signatures."""
    assert V1.signed_bytes() == ROSTER_CONTEXT + encode(V1.to_body())
    assert V1.signed_bytes().startswith(b"kimberley/roster/v1\n")
    assert len(V1.digest()) == 32


@given(st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    """Changing any one byte of a signed roster file makes it fail to decode or to verify."""
    blob = bytearray(signed(V1, *ALL_V1).to_bytes())
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(RosterError):
        verify_chain(bytes(blob), [])


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b + b"\x00", "roster file: 1 trailing bytes"),
        (lambda b: b[:-1], "roster file: malformed msgpack"),
        (lambda b: b"", "roster file"),
        (lambda b: encode({"roster": decode(b)["roster"]}), "roster file: missing fields"),
        (lambda b: encode(decode(b) | {"x": 1}), "unexpected fields \\['x'\\]"),
    ],
)
def test_malformed_files_are_refused(mangle: object, message: str) -> None:
    """Trailing bytes, truncation and missing or extra top-level fields are refused."""
    data = signed(V1, *ALL_V1).to_bytes()
    with pytest.raises(RosterError, match=message):
        SignedRoster.from_bytes(mangle(data))  # type: ignore[operator]


def body_with(path: tuple[str | int, ...], value: object) -> bytes:
    """V1's signed file with the roster body item at `path` replaced by `value`."""
    doc = decode(signed(V1, *ALL_V1).to_bytes())
    target = doc["roster"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return encode(doc)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("version",), True, "roster version: must be int"),
        (("version",), 0, "roster v0: version must be an integer from 1"),
        (("threshold",), 4, "roster v1: threshold 4 must be None or 1 to 3"),
        (("threshold",), 0, "threshold 0"),
        (("threshold",), "2", "roster v1 threshold: must be int"),
        (("network",), "kp example", "network 'kp example'"),
        (("participants", 1, "code"), "XX", "participant 'XX': code must be"),
        (("participants", 1, "status"), "expelled", "status 'expelled' must be one of"),
        (("participants", 1, "countries"), [], "countries ()"),
        (("participants", 1, "countries"), ["ZA", "ZA"], "countries: 'ZA' is listed twice"),
        (("participants", 1, "url"), "ftp://za.example/", "url must be an http\\(s\\) URL"),
        (("participants", 1, "zones"), [], "zones must be None"),
        (("participants", 1, "zones"), ["North", "North"], "zones: 'North' is listed twice"),
        (("participants", 1, "key"), "not a key", "participants\\[1\\].key: verifier key must"),
        (("participants", 1, "key"), signer("BW").verifier.to_text(), "must be an Ed25519 log"),
        (("participants", 1, "key"), signer("ZA").verifier.as_cosigner().to_text(), "Ed25519"),
        (
            ("participants", 1, "key"),
            Signer("kp.other/ZA", bytes(32)).verifier.to_text(),
            "ZA's key is named 'kp.other/ZA', want kp.example/ZA",
        ),
        (("participants", 1, "extra"), 1, "unexpected fields \\['extra'\\]"),
        (("observers", 0, "name"), "", "observer '': name must be text"),
        (("participants",), [], "no active participant"),
    ],
)
def test_malformed_rosters_are_refused_naming_the_version(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    """Each malformed roster body is refused with a RosterError naming what is wrong."""
    with pytest.raises(RosterError, match=message) as caught:
        SignedRoster.from_bytes(body_with(path, value))
    assert str(caught.value).startswith(("roster v", "roster version"))


def test_participant_codes_are_unique() -> None:
    """A roster listing one code twice is refused, whatever the keys."""
    with pytest.raises(RosterError, match=r"roster v1 participant codes: 'BW' is listed twice"):
        roster(1, member("BW"), member("BW", 1))


def test_two_participants_may_not_share_a_key() -> None:
    """Two codes with one public key are refused, so one signature can never count twice."""
    za = member("ZA")
    same_key = Verifier(f"{NET}/EU", za.key.public_key)
    with pytest.raises(RosterError, match=r"roster v1 keys: .* is listed twice"):
        roster(1, za, dataclasses.replace(member("EU"), key=same_key))


def test_key_must_be_named_for_the_network() -> None:
    """A Participant key named for another network is refused."""
    other = Signer("kp.other/BW", bytes(32)).verifier
    with pytest.raises(RosterError, match=r"BW's key is named 'kp.other/BW', want kp.example/BW"):
        roster(1, dataclasses.replace(member("BW"), key=other))


def test_signature_entries_are_checked() -> None:
    """A signature entry with a wrong-length key id or signature is refused."""
    doc = decode(signed(V1, *ALL_V1).to_bytes())
    doc["signatures"][0]["sig"] = b"x" * 63
    with pytest.raises(RosterError, match=r"signatures\[0\]: want a 4-byte key id"):
        SignedRoster.from_bytes(encode(doc))


def test_lookups() -> None:
    """Participants are found by code and by log origin; unknown ones are None or refused."""
    v1 = roster(1, member("BW"), member("ZA", status="suspended"), member("CF", zones=("Sangha",)))
    assert v1.participant("ZA") == member("ZA", status="suspended")
    assert v1.participant("NA") is None
    assert v1.by_origin("kp.example/CF") == v1.participant("CF")
    assert v1.by_origin("kp.other/CF") is None
    assert v1.active_codes() == ("BW", "CF")
    assert v1.log_key("kp.example/BW") == signer("BW").verifier
    assert v1.origin("BW") == "kp.example/BW"
    with pytest.raises(
        RosterError, match=r"roster v1: no participant with log origin 'kp.example/NA'"
    ):
        v1.log_key("kp.example/NA")


def test_signing_twice_with_one_key_keeps_one_signature() -> None:
    """Re-signing with the same key replaces its signature instead of adding a second."""
    s = signed(V1, signer("BW"), signer("ZA"), signer("BW"))
    assert [kid for kid, _ in s.signatures] == [
        signer("ZA").verifier.key_id,
        signer("BW").verifier.key_id,
    ]


# -- updates --------------------------------------------------------------------------


def test_rotation_with_old_and_new_keys_is_accepted() -> None:
    """A key rotation signed by all old keys and by the new key is trusted."""
    v2 = roster(2, member("BW", 1), member("ZA"), member("EU"))
    assert verify_next(V1, signed(v2, *ALL_V1, signer("BW", 1))) == v2


def test_rotation_without_the_new_key_is_refused() -> None:
    """A rotation the new key did not sign is refused: the holder must prove possession."""
    v2 = roster(2, member("BW", 1), member("ZA"), member("EU"))
    with pytest.raises(
        RosterSignatureError, match=r"^roster v2: .*v2 keys.*missing signatures: BW"
    ):
        verify_next(V1, signed(v2, *ALL_V1))


def test_rotation_without_the_old_key_is_refused() -> None:
    """A rotation signed only by the new key is refused: the old key must consent."""
    v2 = roster(2, member("BW", 1), member("ZA"), member("EU"))
    with pytest.raises(RosterSignatureError, match=r"v1 keys.*missing signatures: BW") as e:
        verify_next(V1, signed(v2, signer("BW", 1), signer("ZA"), signer("EU")))
    assert e.value.missing == ("BW",)


def test_admission_needs_everyone_and_the_newcomer() -> None:
    """Admitting a Participant needs all current ones and the newcomer's own signature."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU"), member("CF"))
    with pytest.raises(RosterSignatureError, match=r"missing signatures: CF"):
        verify_next(V1, signed(v2, *ALL_V1))
    with pytest.raises(RosterSignatureError, match=r"v1 keys.*missing signatures: EU"):
        verify_next(V1, signed(v2, signer("BW"), signer("ZA"), signer("CF")))
    assert verify_next(V1, signed(v2, *ALL_V1, signer("CF"))) == v2


def test_suspended_newcomer_still_proves_its_key() -> None:
    """A Participant admitted as suspended must still sign with its new key."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU"), member("CF", status="suspended"))
    with pytest.raises(RosterSignatureError, match=r"new keys of v2.*missing signatures: CF"):
        verify_next(V1, signed(v2, *ALL_V1))


def test_suspension_under_default_consent_needs_the_suspended() -> None:
    """With no threshold, suspending a Participant needs every active one, itself included."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU", status="suspended"))
    with pytest.raises(RosterSignatureError, match=r"v1 keys.*missing signatures: EU"):
        verify_next(V1, signed(v2, signer("BW"), signer("ZA")))
    assert verify_next(V1, signed(v2, *ALL_V1)) == v2


def test_suspension_and_readmission_under_a_threshold() -> None:
    """With a 2-of-3 threshold, two Participants suspend a third; readmission needs its key."""
    v1 = roster(1, member("BW"), member("ZA"), member("CF"), threshold=2)
    v2 = roster(2, member("BW"), member("ZA"), member("CF", status="suspended"), threshold=2)
    assert verify_next(v1, signed(v2, signer("BW"), signer("ZA"))) == v2
    v3 = roster(3, member("BW"), member("ZA"), member("CF", zones=("Berberati",)), threshold=2)
    assert verify_next(v2, signed(v3, signer("BW"), signer("ZA"), signer("CF"))) == v3


def test_suspended_participants_do_not_count_towards_the_threshold() -> None:
    """A suspended Participant's signature cannot make up for a missing active one."""
    v2 = roster(2, member("BW"), member("ZA"), member("CF", status="suspended"), threshold=2)
    v3 = roster(3, member("BW"), member("ZA"), member("CF", status="suspended"), threshold=1)
    with pytest.raises(RosterSignatureError, match=r"signed by 1 of the 2 required active"):
        verify_next(v2, signed(v3, signer("BW"), signer("CF")))


def test_threshold_is_respected() -> None:
    """A 2-of-3 roster accepts two signatures for the next version and refuses one."""
    v1 = roster(1, member("BW"), member("ZA"), member("EU"), threshold=2)
    v2 = roster(2, member("BW"), member("ZA"), member("EU"), threshold=2)
    with pytest.raises(RosterSignatureError, match=r"signed by 1 of the 2 required") as e:
        verify_next(v1, signed(v2, signer("BW")))
    assert e.value.missing == ("ZA", "EU")
    assert verify_next(v1, signed(v2, signer("BW"), signer("EU"))) == v2


def test_new_threshold_applies_to_the_new_keys() -> None:
    """The new version must also meet its own threshold with its own keys."""
    v1 = roster(1, member("BW"), member("ZA"), member("EU"), threshold=1)
    v2 = roster(2, member("BW"), member("ZA"), member("EU"))  # back to consent of all
    with pytest.raises(RosterSignatureError, match=r"active participants of v2.*ZA, EU"):
        verify_next(v1, signed(v2, signer("BW")))


def test_duplicate_signatures_count_once() -> None:
    """The same signature repeated, or a second signature by one Participant, counts once."""
    v1 = roster(1, member("BW"), member("ZA"), member("EU"), threshold=2)
    v2 = roster(2, member("BW"), member("ZA"), member("EU"), threshold=2)
    one = signed(v2, signer("BW")).signatures[0]
    with pytest.raises(RosterSignatureError, match=r"signed by 1 of the 2"):
        verify_next(v1, SignedRoster(v2, (one, one, one)))


def test_forged_signature_is_refused() -> None:
    """A signature by another key filed under a Participant's key id does not count."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU"), threshold=None)
    good = signed(v2, signer("ZA"), signer("EU"))
    forged = (signer("BW").verifier.key_id, Signer.generate(f"{NET}/BW").sign(v2.signed_bytes()))
    with pytest.raises(RosterSignatureError, match=r"missing signatures: BW"):
        verify_next(V1, SignedRoster(v2, (*good.signatures, forged)))


def test_signature_over_another_version_does_not_count() -> None:
    """A Participant's signature of v1 does not count as its signature of v2."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU"))
    old = signed(V1, signer("BW")).signatures[0]
    with pytest.raises(RosterSignatureError, match=r"missing signatures: BW"):
        verify_next(V1, SignedRoster(v2, (old, *signed(v2, signer("ZA"), signer("EU")).signatures)))


def test_unknown_signers_are_ignored() -> None:
    """A signature by a key outside the roster neither helps nor hurts."""
    v2 = roster(2, member("BW"), member("ZA"), member("EU"))
    stranger = Signer.generate(f"{NET}/XX")
    assert verify_next(V1, signed(v2, stranger, *ALL_V1)) == v2
    with pytest.raises(RosterSignatureError, match=r"missing signatures: EU"):
        verify_next(V1, signed(v2, stranger, signer("BW"), signer("ZA")))


def chain() -> tuple[Roster, Roster, Roster]:
    """Versions 2 (BW rotates), 3 (CF admitted) and 4 (CF suspended) after V1."""
    v2 = roster(2, member("BW", 1), member("ZA"), member("EU"))
    v3 = roster(3, member("BW", 1), member("ZA"), member("EU"), member("CF"))
    v4 = roster(4, member("BW", 1), member("ZA"), member("EU"), member("CF", status="suspended"))
    return v2, v3, v4


def chain_files() -> list[bytes]:
    """The signed files of `chain()`, each signed as its predecessor requires."""
    v2, v3, v4 = chain()
    now = (signer("BW", 1), signer("ZA"), signer("EU"))
    return [
        signed(v2, *ALL_V1, signer("BW", 1)).to_bytes(),
        signed(v3, *now, signer("CF")).to_bytes(),
        signed(v4, *now, signer("CF")).to_bytes(),
    ]


def test_chain_of_updates_is_followed_to_the_latest() -> None:
    """Rotation, admission and suspension in turn lead from v1 to the latest version."""
    v1_file = signed(V1, *ALL_V1).to_bytes()
    latest = verify_chain(v1_file, chain_files())
    assert latest == chain()[2]
    assert latest.log_key("kp.example/BW") == signer("BW", 1).verifier


def test_rollback_is_refused() -> None:
    """An older version than the trusted one is refused as a rollback."""
    _, v3, _ = chain()
    files = chain_files()
    with pytest.raises(RosterVersionError, match=r"^roster v2: rollback: older than trusted v3"):
        verify_next(v3, SignedRoster.from_bytes(files[0]))


def test_replay_is_refused() -> None:
    """Presenting the trusted version again is refused as a replay."""
    v1_file = signed(V1, *ALL_V1).to_bytes()
    files = chain_files()
    with pytest.raises(RosterVersionError, match=r"^roster v2: replay"):
        verify_chain(v1_file, [files[0], files[0]])
    with pytest.raises(RosterVersionError, match=r"^roster v1: replay"):
        verify_chain(v1_file, [v1_file])


def test_reused_version_with_other_content_is_refused() -> None:
    """A second, different roster with the trusted version number is refused."""
    v2, _, _ = chain()
    other = roster(2, member("BW"), member("ZA"), member("EU"), threshold=2)
    with pytest.raises(RosterVersionError, match=r"^roster v2: version reused with other content"):
        verify_next(v2, signed(other, *ALL_V1))


def test_skipping_a_version_is_refused() -> None:
    """A version beyond the next one is refused until the one between is applied."""
    _, v3, _ = chain()
    with pytest.raises(RosterVersionError, match=r"^roster v3: skips from trusted v1; apply v2"):
        verify_next(V1, signed(v3, *ALL_V1))


def test_network_cannot_change() -> None:
    """A next version naming another network is refused."""
    other = Roster(
        "kp.other",
        2,
        (
            Participant(
                "BW",
                "Botswana",
                ("BW",),
                Signer("kp.other/BW", bytes(32)).verifier,
                "https://bw.example/",
            ),
        ),
    )
    with pytest.raises(RosterError, match=r"^roster v2: network 'kp.other' differs"):
        verify_next(V1, SignedRoster(other))


@given(
    st.lists(
        st.sampled_from(["BW", "ZA", "EU", "CF", "NA", "AE", "IN"]),
        min_size=1,
        max_size=7,
        unique=True,
    ),
    st.data(),
)
def test_any_roster_round_trips(codes: list[str], data: st.DataObject) -> None:
    """Any well-formed roster survives the file format unchanged."""
    statuses = [data.draw(st.sampled_from(["active", "suspended"])) for _ in codes]
    statuses[0] = "active"
    zones = [data.draw(st.none() | st.just(("North", "Sangha"))) for _ in codes]
    members = tuple(
        member(c, status=s, zones=z) for c, s, z in zip(codes, statuses, zones, strict=True)
    )
    active = statuses.count("active")
    threshold = data.draw(st.none() | st.integers(1, active))
    r = Roster(NET, data.draw(st.integers(1, 2**40)), members, (), threshold)
    s = SignedRoster(r, ((b"\x01\x02\x03\x04", bytes(64)),))
    assert SignedRoster.from_bytes(s.to_bytes()) == s
    assert Roster.from_body(r.to_body()) == r
