"""RFC 9421 request signatures: the RFC's Ed25519 vector, parsing, and who may read a node."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.keys import Signer, Verifier
from ledger.roster import Observer, Participant, Roster
from node.auth import (
    AccessLimits,
    AuthError,
    BadSignatureError,
    MalformedSignatureError,
    ReplayedSignatureError,
    ReplayGuard,
    RequestParts,
    RosterMember,
    SignatureAuth,
    SignatureParams,
    StaleSignatureError,
    SuspendedMemberError,
    Token,
    UnknownKeyError,
    accept_signature_header,
    authenticate,
    normalise_authority,
    parse_dictionary,
    parse_signature,
    roster_members,
    sign_parts,
    sign_request,
    signature_base,
    verify_parts,
)

VECTORS = Path(__file__).parent / "vectors" / "rfc9421"
NOW = 1_790_000_000
NET = "kp.example"


def pem_tail(name: str, prefix: str) -> bytes:
    """The last 32 bytes of a PEM file's DER, after checking its fixed Ed25519 prefix."""
    lines = (VECTORS / name).read_text().splitlines()
    der = base64.b64decode("".join(line for line in lines if not line.startswith("-----")))
    assert der[:-32] == bytes.fromhex(prefix)
    return der[-32:]


def rfc_signer() -> Signer:
    """The RFC's test-key-ed25519 as one of our signers."""
    return Signer(
        "test-key-ed25519", pem_tail("test-key-ed25519.pem", "302e020100300506032b657004220420")
    )


def rfc_request() -> RequestParts:
    """The RFC's test request, read from its HTTP/1.1 text."""
    head, _, _ = (VECTORS / "test-request.http").read_text().partition("\n\n")
    request_line, *lines = head.split("\n")
    method, target, _ = request_line.split(" ")
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    host = next(v for k, v in fields if k.lower() == "host")
    return RequestParts.of(method, "https", host, target, [(k, v) for k, v in fields])


def rfc_headers() -> dict[str, str]:
    """The Signature-Input and Signature fields the RFC prints for sig-b26."""
    lines = (VECTORS / "b26-signature.txt").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)


RFC_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")


def test_rfc9421_b26_key_is_the_published_key_pair() -> None:
    """The seed in the B.1.4 private key gives the B.1.4 public key."""
    public = pem_tail("test-key-ed25519.pub.pem", "302a300506032b6570032100")
    assert rfc_signer().public_key == public


def test_rfc9421_b26_is_reproduced_byte_for_byte() -> None:
    """Our base and both header fields for the B.2.6 example equal the RFC's bytes."""
    params = SignatureParams.make(
        RFC_COMPONENTS, created=1618884473, keyid="test-key-ed25519", alg=None
    )
    base = signature_base(rfc_request(), params)
    assert base == (VECTORS / "b26-signature-base.txt").read_bytes()
    assert sign_parts(rfc_request(), params, rfc_signer(), label="sig-b26") == rfc_headers()


def test_rfc9421_b26_parses_and_verifies() -> None:
    """The RFC's headers parse to the same parameters and verify under the public key."""
    headers = rfc_headers()
    params, signature = parse_signature(headers["Signature-Input"], headers["Signature"])
    assert params.components == RFC_COMPONENTS
    assert params.params == (("created", 1618884473), ("keyid", "test-key-ed25519"))
    assert verify_parts(rfc_request(), params, signature, rfc_signer().verifier)


def _date(parts: RequestParts) -> RequestParts:
    """The request with another Date."""
    fields = tuple(
        (k, "Wed, 21 Apr 2021 02:07:55 GMT" if k == "date" else v) for k, v in parts.fields
    )
    return replace(parts, fields=fields)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("method", lambda p: replace(p, method="PUT")),
        ("path", lambda p: replace(p, path="/bar")),
        ("authority", lambda p: replace(p, authority="example.org")),
        ("covered-field", _date),
    ],
)
def test_rfc9421_b26_fails_when_a_covered_part_changes(
    name: str, change: Callable[[RequestParts], RequestParts]
) -> None:
    """Changing a covered component of the RFC request breaks the RFC's signature."""
    headers = rfc_headers()
    params, signature = parse_signature(headers["Signature-Input"], headers["Signature"])
    changed = change(rfc_request())
    assert changed != rfc_request()
    assert not verify_parts(changed, params, signature, rfc_signer().verifier), name


def test_rfc9421_b26_fails_with_a_flipped_byte_or_another_created() -> None:
    """A signature with one bit flipped, or parameters other than those signed, do not verify."""
    headers = rfc_headers()
    params, signature = parse_signature(headers["Signature-Input"], headers["Signature"])
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    key = rfc_signer().verifier
    assert not verify_parts(rfc_request(), params, flipped, key)
    later = SignatureParams(params.components, (("created", 1618884474), params.params[1]))
    assert not verify_parts(rfc_request(), later, signature, key)


# -- Structured Fields -----------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
components = st.lists(
    st.one_of(st.sampled_from(["@method", "@authority", "@path", "@query"]), names),
    unique=True,
    max_size=6,
)
printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(
    components,
    st.integers(0, 10**15 - 1),
    printable,
    printable.filter(bool),
    st.booleans(),
)
def test_signature_params_round_trip_through_the_header(
    covered: list[str], created: int, nonce: str, keyid: str, with_alg: bool
) -> None:
    """Serialised parameters parse back to the same components and parameters, in order."""
    params = SignatureParams.make(
        covered, created=created, nonce=nonce, keyid=keyid, alg="ed25519" if with_alg else None
    )
    signature = base64.b64encode(bytes(64)).decode()
    parsed, value = parse_signature(f"sig={params.serialize()}", f"sig=:{signature}:")
    assert (parsed, value) == (params, bytes(64))


@pytest.mark.parametrize(
    ("name", "signature_input", "signature"),
    [
        ("empty", "", "sig=:AA==:"),
        ("not-a-list", 'sig="@method"', "sig=:AA==:"),
        ("two-labels", 'a=("@method");created=1, b=("@path");created=1', "a=:AA==:"),
        ("trailing-comma", 'sig=("@method");created=1,', "sig=:AA==:"),
        ("unterminated-string", 'sig=("@method);created=1', "sig=:AA==:"),
        ("bad-escape", 'sig=("@me\\thod");created=1', "sig=:AA==:"),
        ("duplicate-param", 'sig=("@method");created=1;created=2', "sig=:AA==:"),
        ("decimal", 'sig=("@method");created=1.5', "sig=:AA==:"),
        ("sixteen-digits", 'sig=("@method");created=1234567890123456', "sig=:AA==:"),
        ("unknown-param", 'sig=("@method");color="red"', "sig=:AA==:"),
        ("created-as-string", 'sig=("@method");created="1"', "sig=:AA==:"),
        ("component-param", 'sig=("@method";req);created=1', "sig=:AA==:"),
        ("uppercase-component", 'sig=("Date");created=1', "sig=:AA==:"),
        ("component-twice", 'sig=("@path" "@path");created=1', "sig=:AA==:"),
        ("short-signature", 'sig=("@method");created=1', "sig=:AA==:"),
        ("other-label", 'sig=("@method");created=1', f"x=:{'A' * 86}==:"),
        ("not-base64", 'sig=("@method");created=1', "sig=:!!:"),
        ("non-ascii", 'sig=("@méthod");created=1', "sig=:AA==:"),
    ],
)
def test_malformed_signature_headers_are_refused(
    name: str, signature_input: str, signature: str
) -> None:
    """Each malformed or unsupported header is a MalformedSignatureError, never a crash."""
    with pytest.raises(MalformedSignatureError):
        parse_signature(signature_input, signature)


header_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet='sig=():;"\\ ,\t@-*?.01259abcAZ/+é', max_size=80),
)


@given(header_text, header_text)
def test_any_header_text_parses_or_fails_with_an_auth_error(a: str, b: str) -> None:
    """Arbitrary header text never raises anything but MalformedSignatureError."""
    with contextlib.suppress(MalformedSignatureError):
        parse_signature(a, b)


def test_dictionary_members_may_be_bare_items_with_parameters() -> None:
    """Booleans, tokens and integers parse as RFC 8941 says; keys without '=' are true."""
    parsed = parse_dictionary("a=?0, b, c=tok/en;x=-5, d=:AAE=:", "Test")
    assert parsed["a"] == (False, ())
    assert parsed["b"] == (True, ())
    assert parsed["c"] == (Token("tok/en"), (("x", -5),))
    assert parsed["d"] == (b"\x00\x01", ())


def test_authority_is_lowercased_without_the_default_port() -> None:
    """Host values normalise as RFC 9421 @authority."""
    assert normalise_authority("Example.COM:443", "https") == "example.com"
    assert normalise_authority("example.com:80", "http") == "example.com"
    assert normalise_authority("example.com:8443", "https") == "example.com:8443"
    assert normalise_authority("[::1]:80", "http") == "[::1]"
    assert normalise_authority("127.0.0.1:8470", "http") == "127.0.0.1:8470"


# -- who may read ----------------------------------------------------------------------------

ZA = Signer.generate(f"{NET}/ZA")
CF = Signer.generate(f"{NET}/CF")
BW = Signer.generate(f"{NET}/BW")
AUDITOR = Signer.generate("kp-monitoring")


def participant(signer: Signer, status: str = "active") -> Participant:
    """A roster Participant for `signer`'s log key."""
    code = signer.name.rpartition("/")[2]
    return Participant(
        code,
        f"Authority of {code}",
        (code,),
        signer.verifier,
        "https://x.example/",
        status,  # type: ignore[arg-type]
    )


ROSTER = Roster(
    NET,
    1,
    (participant(BW), participant(ZA), participant(CF, "suspended")),
    (Observer("KP Monitoring", AUDITOR.verifier),),
)
MEMBERS = roster_members(ROSTER, BW.verifier)


def signed(
    signer: Signer,
    url: str = "http://node.test/kp.example/BW/checkpoint",
    *,
    now: int = NOW,
    nonce: str | None = None,
    method: str = "GET",
) -> httpx.Request:
    """A request to the node signed by `signer`."""
    request = httpx.Request(method, url)
    sign_request(request, signer, now=now, nonce=nonce)
    return request


def check(request: httpx.Request, guard: ReplayGuard | None = None, now: int = NOW) -> RosterMember:
    """Authenticate an httpx request as the node would."""
    return authenticate(RequestParts.from_httpx(request), MEMBERS, guard or ReplayGuard(), now)


def test_members_are_participants_observers_and_the_node_itself() -> None:
    """Participants by log origin (suspended marked), observers by key name, and the own key."""
    assert {k: (m.role, m.suspended) for k, m in MEMBERS.items()} == {
        f"{NET}/BW": ("node", False),
        f"{NET}/ZA": ("participant", False),
        f"{NET}/CF": ("participant", True),
        "kp-monitoring": ("observer", False),
    }
    assert roster_members(None, None) == {}


def test_a_members_signed_request_passes_and_names_the_member() -> None:
    """Participants, observers and the node's own key pass."""
    assert check(signed(ZA)).keyid == f"{NET}/ZA"
    assert check(signed(AUDITOR)).role == "observer"
    assert check(signed(BW)).role == "node"


def test_every_refusal_has_its_own_error_and_status() -> None:
    """Unsigned, unknown, impostor, stale, future, replayed and suspended are told apart."""
    with pytest.raises(MalformedSignatureError, match="not signed"):
        check(httpx.Request("GET", "http://node.test/x"))
    with pytest.raises(UnknownKeyError, match="kp.example/XX"):
        check(signed(Signer.generate(f"{NET}/XX")))
    with pytest.raises(BadSignatureError):
        check(signed(Signer.generate(f"{NET}/ZA")))  # right name, wrong key
    with pytest.raises(StaleSignatureError):
        check(signed(ZA, now=NOW - 301))
    with pytest.raises(StaleSignatureError):
        check(signed(ZA, now=NOW + 301))
    guard = ReplayGuard()
    request = signed(ZA)
    check(request, guard)
    with pytest.raises(ReplayedSignatureError):
        check(request, guard)
    with pytest.raises(SuspendedMemberError) as caught:
        check(signed(CF))
    assert (caught.value.status, AuthError("x").status) == (403, 401)


def test_a_signature_over_another_request_does_not_pass() -> None:
    """Headers signed for one path, method or host do not authenticate another."""
    original = signed(ZA)
    for method, url in [
        ("GET", "http://node.test/kp.example/ZA/checkpoint"),
        ("POST", "http://node.test/kp.example/BW/checkpoint"),
        ("GET", "http://other.test/kp.example/BW/checkpoint"),
    ]:
        forged = httpx.Request(
            method, url, headers={k: original.headers[k] for k in ("signature-input", "signature")}
        )
        with pytest.raises(BadSignatureError):
            check(forged)


def test_a_query_must_be_covered_and_alg_must_be_ed25519() -> None:
    """A request with a query is refused unless @query is signed; alg is required."""
    request = signed(ZA, "http://node.test/x?a=1")
    assert '"@query"' in request.headers["signature-input"]
    check(request)
    parts = RequestParts.of("GET", "http", "node.test", "/x?a=1", [])
    no_query = SignatureParams.make(
        required := ("@method", "@authority", "@path"), created=NOW, nonce="n", keyid=ZA.name
    )
    with pytest.raises(MalformedSignatureError, match="@query"):
        authenticate(_with(parts, sign_parts(parts, no_query, ZA)), MEMBERS, ReplayGuard(), NOW)
    plain = RequestParts.of("GET", "http", "node.test", "/x", [])
    for alg in (None, "rsa-pss-sha512"):
        params = SignatureParams.make(required, created=NOW, nonce="n", keyid=ZA.name, alg=alg)
        with pytest.raises(MalformedSignatureError, match="alg"):
            authenticate(_with(plain, sign_parts(plain, params, ZA)), MEMBERS, ReplayGuard(), NOW)
    expired = SignatureParams.make(
        required, created=NOW - 10, nonce="n", keyid=ZA.name, expires=NOW - 1
    )
    with pytest.raises(StaleSignatureError, match="expired"):
        authenticate(_with(plain, sign_parts(plain, expired, ZA)), MEMBERS, ReplayGuard(), NOW)


def _with(parts: RequestParts, headers: dict[str, str]) -> RequestParts:
    """`parts` with the signature headers added."""
    added = tuple((k.lower(), v) for k, v in headers.items())
    return RequestParts(
        parts.method, parts.authority, parts.path, parts.query, parts.fields + added
    )


@given(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-~%", max_size=30),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&", max_size=10),
    st.sampled_from(["method", "path", "query", "authority"]),
)
def test_changing_any_required_component_breaks_the_signature(
    method: str, path: str, query: str, what: str
) -> None:
    """Whatever the request, a change to its method, path, query or host is detected."""
    parts = RequestParts.of(method, "http", "node.test", f"/{path}?{query}", [])
    params = SignatureParams.make(
        ("@method", "@authority", "@path", "@query"), created=NOW, nonce="n", keyid=ZA.name
    )
    headers = sign_parts(parts, params, ZA)
    changed = {
        "method": lambda: RequestParts.of(
            method + "X", "http", "node.test", f"/{path}?{query}", []
        ),
        "path": lambda: RequestParts.of(method, "http", "node.test", f"/{path}/?{query}", []),
        "query": lambda: RequestParts.of(method, "http", "node.test", f"/{path}?{query}&", []),
        "authority": lambda: RequestParts.of(
            method, "http", "node.test:81", f"/{path}?{query}", []
        ),
    }[what]()
    authenticate(_with(parts, headers), MEMBERS, ReplayGuard(), NOW)
    with pytest.raises(AuthError):
        authenticate(_with(changed, headers), MEMBERS, ReplayGuard(), NOW)


def test_the_replay_guard_forgets_old_nonces_and_stays_bounded() -> None:
    """Pairs expire with the window; when full, the oldest go and nothing that old passes."""
    guard = ReplayGuard(AccessLimits(window=300, max_nonces=3))
    for i in range(3):
        guard.admit("k", f"n{i}", NOW + i, NOW)
    guard.admit("k", "n3", NOW + 3, NOW)  # evicts n0 (created NOW)
    assert guard.remembered() == 3
    with pytest.raises(StaleSignatureError, match="remembers"):
        guard.admit("k", "n0", NOW, NOW)  # a forgotten nonce cannot come back
    with pytest.raises(ReplayedSignatureError):
        guard.admit("k", "n3", NOW + 3, NOW)
    guard.admit("other", "n3", NOW + 3, NOW)  # nonces are per key
    guard.admit("k", "n9", NOW + 400, NOW + 400)  # everything before NOW + 100 expires
    assert guard.remembered() == 1


def test_signature_auth_signs_each_request_afresh() -> None:
    """An httpx client with SignatureAuth sends requests the node accepts, each nonce new."""
    guard = ReplayGuard()
    seen: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        member = authenticate(RequestParts.from_httpx(request), MEMBERS, guard, NOW)
        seen.append(request.headers["signature-input"])
        return httpx.Response(200, text=member.keyid)

    auth = SignatureAuth(ZA, clock=lambda: NOW)
    with httpx.Client(transport=httpx.MockTransport(node), auth=auth) as client:
        for path in ("/kp.example/BW/checkpoint", "/kp.example/BW/checkpoint", "/x?y=1"):
            assert client.get(f"http://node.test{path}").text == ZA.name
    assert len(set(seen)) == 3


def test_the_401_hint_names_what_to_sign() -> None:
    """Accept-Signature lists the components (@query too) and parameters and parses as SF."""
    hint = accept_signature_header()
    assert hint == (
        'sig=("@method" "@authority" "@path" "@query");created;nonce;keyid;alg="ed25519"'
    )
    assert parse_dictionary(hint, "Accept-Signature")["sig"][1][-1] == ("alg", "ed25519")


@pytest.mark.parametrize("target", ["/kp.example/BW/checkpoint", "/x?a=1"])
def test_a_signature_covering_what_the_hint_lists_passes_with_or_without_a_query(
    target: str,
) -> None:
    """Covering exactly the hinted components is accepted, whether the request has a query."""
    [(inner, _)] = parse_dictionary(accept_signature_header(), "Accept-Signature").values()
    assert isinstance(inner, tuple)
    parts = RequestParts.of("GET", "http", "node.test", target, [])
    params = SignatureParams.make((str(c) for c, _ in inner), created=NOW, nonce="n", keyid=ZA.name)
    assert authenticate(_with(parts, sign_parts(parts, params, ZA)), MEMBERS, ReplayGuard(), NOW)


def test_a_stale_signature_says_which_way_the_clocks_differ() -> None:
    """Created 400 s before the node's clock reads "400 s ago", 400 s after "in the future"."""
    with pytest.raises(StaleSignatureError, match=r", 400 s ago by this node's clock \("):
        check(signed(ZA, now=NOW - 400))
    with pytest.raises(StaleSignatureError, match=r", 400 s in the future by this node's clock"):
        check(signed(ZA, now=NOW + 400))


def test_verifier_of_the_rfc_key_is_an_ordinary_ledger_key() -> None:
    """The RFC key round-trips through our verifier-key text, so rosters can carry such keys."""
    verifier = rfc_signer().verifier
    assert Verifier.from_text(verifier.to_text()) == verifier
