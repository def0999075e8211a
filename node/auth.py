"""Who may read a node: HTTP Message Signatures (RFC 9421) with Ed25519 over roster keys.

KP trade data is confidential between Participants and observers, so a node serves only
requests signed by a roster member (unless its network is configured public). A client
signs each request with its Ed25519 key; ``keyid`` is the key's name (for a Participant
its log origin ``<network>/<code>``), and the node checks the signature against the key
the roster lists under that name.

What a signature must cover here (the subset of RFC 9421 we use)::

    Signature-Input: sig=("@method" "@authority" "@path" ["@query"])
                     ;created=<unix s>;nonce="<random>";keyid="<key name>";alg="ed25519"
    Signature: sig=:<base64 Ed25519 signature over the signature base>:

``@query`` must be covered whenever the request has a query, and may be without one
(its value is then ``?``); the 401's Accept-Signature hint always lists it. The signature
base, the Structured Field (RFC 8941) parsing and serialisation of both headers, and
header-field components (needed for the RFC's Appendix B.2.6 example, which
`tests/test_auth.py` reproduces byte for byte) follow the RFC; component parameters
(``;sf``, ``;req``, ...), other algorithms and response signatures are refused or not
implemented.

Replay: ``created`` must lie within `AccessLimits.window` seconds of the node's clock and
the (keyid, nonce) pair must be new; `ReplayGuard` remembers pairs until they would be
stale anyway, in bounded memory (when full it forgets the oldest and from then on refuses
anything created no later than it, so a forgotten nonce can never be replayed).

Why hand-written and not PyPI ``http-message-signatures``: that package does Ed25519
through ``cryptography`` (a second crypto stack beside PyNaCl, which signs everything
else here) and its general component model is far larger than the four derived
components and four parameters we need; the subset fits in this module and is checked
against the RFC's own vector.

Not covered: the request body. The one endpoint that takes a body, the witness's
``add-checkpoint``, authenticates its body itself (a checkpoint signed by a roster log).
A reverse proxy in front of a node must pass the Host header and the raw path unchanged,
or every signature fails. Who is a member is `roster_members`; the HTTP side is
`node.serve.MembersOnly`; clients use `SignatureAuth` (httpx) or `sign_request`.

    AuthError (401)                 no usable member signature
    ├── MalformedSignatureError      missing, unparsable or not what this node requires
    ├── UnknownKeyError              keyid not on the roster
    ├── BadSignatureError            does not verify under the roster key
    ├── StaleSignatureError          created/expires outside the window
    ├── ReplayedSignatureError       nonce already seen from that key
    └── SuspendedMemberError (403)   a suspended Participant
"""

from __future__ import annotations

import base64
import binascii
import heapq
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import httpx

from ledger.errors import LedgerError
from ledger.keys import Signer, Verifier
from ledger.roster import Roster

ALG: Final = "ed25519"
LABEL: Final = "sig"
#: Components every request signature must cover (plus "@query" when there is a query).
REQUIRED_COMPONENTS: Final = ("@method", "@authority", "@path")
#: Components a 401's Accept-Signature asks for: "@query" always, as a request without a
#: query may cover it too (its value is then "?", RFC 9421 §2.2.7), so one hint fits all.
HINTED_COMPONENTS: Final = (*REQUIRED_COMPONENTS, "@query")
#: Signature parameters this implementation knows, with their Structured Field type.
_PARAM_TYPES: Final[Mapping[str, type]] = {
    "created": int,
    "expires": int,
    "nonce": str,
    "alg": str,
    "keyid": str,
    "tag": str,
}
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


class AuthError(LedgerError):
    """A request without a usable signature by a roster member (HTTP 401)."""

    status = 401


class MalformedSignatureError(AuthError):
    """Signature headers missing, unparsable, or not covering what the node requires."""


class UnknownKeyError(AuthError):
    """A keyid that names no roster member."""


class BadSignatureError(AuthError):
    """A signature that does not verify under the member's roster key."""


class StaleSignatureError(AuthError):
    """A signature created too long ago or in the future, or expired."""


class ReplayedSignatureError(AuthError):
    """A (keyid, nonce) pair this node has already accepted."""


class SuspendedMemberError(AuthError):
    """A suspended Participant: known and verified, but not allowed (HTTP 403)."""

    status = 403


# -- the message ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestParts:
    """What a signature can cover of one HTTP request, as sent on the wire.

    `authority` is the Host, lowercased, without the scheme's default port; `path` is the
    raw (percent-encoded) path; `query` the raw query without ``?``, None when empty;
    `fields` the header fields as (lowercase name, value) in order.
    """

    method: str
    authority: str
    path: str
    query: str | None
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, method: str, scheme: str, host: str, target: str, fields: Iterable[tuple[str, str]]
    ) -> RequestParts:
        """From the parts of a request line: `target` is the raw path with its query."""
        path, _, query = target.partition("?")
        return cls(
            method,
            normalise_authority(host, scheme),
            path or "/",
            query or None,
            tuple((name.lower(), value) for name, value in fields),
        )

    @classmethod
    def from_httpx(cls, request: httpx.Request) -> RequestParts:
        """The parts of a request an httpx client is about to send."""
        host = request.headers.get("host") or request.url.netloc.decode("ascii")
        target, fields = request.url.raw_path.decode("ascii"), request.headers.multi_items()
        return cls.of(request.method, request.url.scheme, host, target, fields)

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> RequestParts:
        """The parts of a request an ASGI server received (bytes read as Latin-1)."""
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        host = next((v for k, v in fields if k.lower() == "host"), "")
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw.decode("latin-1").partition("?")[0]
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{path}?{query}" if query else path
        return cls.of(scope["method"], scope.get("scheme", "http"), host, target, fields)

    def field(self, name: str) -> str | None:
        """The value of header field `name`: every line's trimmed value joined by ", "."""
        values = [v.strip(" \t") for n, v in self.fields if n == name]
        return ", ".join(values) if values else None


def normalise_authority(host: str, scheme: str) -> str:
    """A Host value as RFC 9421 @authority: lowercase, without the scheme's default port."""
    host = host.strip().lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default and host.endswith(":" + default):
        host = host[: -len(default) - 1]
    return host


def component_value(parts: RequestParts, name: str) -> str:
    """The value of one covered component; MalformedSignatureError if the request lacks it."""
    derived = {
        "@method": parts.method,
        "@authority": parts.authority,
        "@path": parts.path,
        "@query": "?" + (parts.query or ""),
    }
    if name.startswith("@"):
        if name not in derived:
            raise MalformedSignatureError(f"derived component {name!r} is not supported")
        return derived[name]
    value = parts.field(name)
    if value is None:
        raise MalformedSignatureError(f"covered field {name!r} is not in the request")
    return value


# -- Structured Fields (RFC 8941), the part the two headers use ------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """A Structured Field token (distinct from a string, which is quoted)."""

    value: str


Bare: TypeAlias = int | str | bytes | bool | Token
Params: TypeAlias = tuple[tuple[str, Bare], ...]
InnerList: TypeAlias = tuple[tuple[Bare, Params], ...]
DictMember: TypeAlias = tuple[Bare | InnerList, Params]
"""A dictionary member: an item or an inner list of (item, params), and its own params."""


_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_INTEGER = re.compile(r"-?([0-9]+)")
_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")
_BOOLEAN = re.compile(r"\?([01])")
_PRINTABLE = re.compile(r"[ -~]*")
_VISIBLE = re.compile(r"[!-~]+")
_SPACES = re.compile(r" *")
_OWS = re.compile(r"[ \t]*")


class _Parser:
    """A strict RFC 8941 dictionary parser (no decimals; duplicate keys refused)."""

    def __init__(self, text: str, header: str) -> None:
        self.text, self.pos, self.header = text, 0, header

    def fail(self, problem: str) -> MalformedSignatureError:
        return MalformedSignatureError(f"{self.header} at character {self.pos}: {problem}")

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def match(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise self.fail(f"expected {what}")
        self.pos = found.end()
        return found

    def dictionary(self) -> dict[str, DictMember]:
        out: dict[str, DictMember] = {}
        self.match(_SPACES, "spaces")
        while self.pos < len(self.text):
            key = self.match(_KEY, "a key")[0]
            if key in out:
                raise self.fail(f"key {key!r} appears twice")
            value: Bare | InnerList = True
            if self.peek() == "=":
                self.pos += 1
                value = self.inner_list() if self.peek() == "(" else self.bare()
            out[key] = (value, self.params())
            self.match(_OWS, "spaces")
            if self.pos == len(self.text):
                break
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.pos += 1
            self.match(_OWS, "spaces")
            if self.pos == len(self.text):
                raise self.fail("trailing comma")
        return out

    def params(self) -> Params:
        out: list[tuple[str, Bare]] = []
        while self.peek() == ";":
            self.pos += 1
            self.match(_SPACES, "spaces")
            key = self.match(_KEY, "a parameter name")[0]
            if any(k == key for k, _ in out):
                raise self.fail(f"parameter {key!r} appears twice")
            value: Bare = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare()
            out.append((key, value))
        return tuple(out)

    def inner_list(self) -> InnerList:
        self.pos += 1  # the "(" the caller saw
        items: list[tuple[Bare, Params]] = []
        while True:
            self.match(_SPACES, "spaces")
            if self.peek() == ")":
                self.pos += 1
                return tuple(items)
            items.append((self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise self.fail("expected a space or ')' in an inner list")

    def bare(self) -> Bare:
        char = self.peek()
        if char == '"':
            found = self.match(_STRING, 'a string: printable ASCII, only " and \\ escaped')
            return re.sub(r"\\(.)", r"\1", found[1])
        if char == ":":
            found = self.match(_BYTES, "a base64 byte sequence")
            try:
                return base64.b64decode(found[1], validate=True)
            except (binascii.Error, ValueError):
                raise self.fail("a byte sequence is base64") from None
        if char == "?":
            found = self.match(_BOOLEAN, "?0 or ?1")
            return found[1] == "1"
        if char == "-" or char.isdigit():
            found = self.match(_INTEGER, "an integer")
            if len(found[1]) > 15 or self.peek() == ".":
                raise self.fail("an integer has at most 15 digits and no decimals")
            return int(found[0])
        return Token(self.match(_TOKEN, "an integer, string, byte sequence or token")[0])


def parse_dictionary(text: str, header: str) -> dict[str, DictMember]:
    """An RFC 8941 dictionary; MalformedSignatureError naming `header` and the position."""
    return _Parser(text, header).dictionary()


def serialize_string(value: str) -> str:
    """An RFC 8941 string: quoted, with '"' and '\\' escaped."""
    if not _PRINTABLE.fullmatch(value):
        raise MalformedSignatureError(f"{value!r} is not printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- signature parameters and the signature base ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """The covered components and the parameters of one signature, in the signer's order."""

    components: tuple[str, ...]
    params: tuple[tuple[str, int | str], ...]

    def __post_init__(self) -> None:
        for name in self.components:
            if not _VISIBLE.fullmatch(name) or name != name.lower():
                raise MalformedSignatureError(f"component {name!r} is not a lowercase name")
        if len(set(self.components)) != len(self.components):
            raise MalformedSignatureError(f"a component is covered twice: {self.components}")
        seen: set[str] = set()
        for key, value in self.params:
            kind = _PARAM_TYPES.get(key)
            if kind is None:
                raise MalformedSignatureError(f"unknown signature parameter {key!r}")
            if type(value) is not kind or key in seen:
                raise MalformedSignatureError(f"parameter {key!r} must appear once, as {kind}")
            seen.add(key)

    @classmethod
    def make(
        cls,
        components: Iterable[str],
        *,
        created: int,
        keyid: str,
        nonce: str | None = None,
        alg: str | None = ALG,
        expires: int | None = None,
    ) -> SignatureParams:
        """Parameters in the order created, expires, nonce, keyid, alg (None ones left out)."""
        pairs = (
            ("created", created),
            ("expires", expires),
            ("nonce", nonce),
            ("keyid", keyid),
            ("alg", alg),
        )
        return cls(tuple(components), tuple((k, v) for k, v in pairs if v is not None))

    def get(self, key: str) -> int | str | None:
        """The value of parameter `key`, or None."""
        return next((v for k, v in self.params if k == key), None)

    def serialize(self) -> str:
        """The inner list with parameters: the value of ``@signature-params``."""
        items = " ".join(serialize_string(c) for c in self.components)
        params = "".join(
            f";{k}={v}" if isinstance(v, int) else f";{k}={serialize_string(v)}"
            for k, v in self.params
        )
        return f"({items}){params}"

    @classmethod
    def from_member(cls, member: DictMember, label: str) -> SignatureParams:
        """From one parsed Signature-Input member; no component parameters accepted."""
        value, params = member
        if not isinstance(value, tuple):
            raise MalformedSignatureError(f"Signature-Input {label!r} is not an inner list")
        components: list[str] = []
        for item, item_params in value:
            if not isinstance(item, str) or item_params:
                raise MalformedSignatureError(
                    f"Signature-Input {label!r}: components must be plain strings, "
                    f"got {item!r} with parameters {item_params!r}"
                )
            components.append(item)
        checked: list[tuple[str, int | str]] = []
        for key, param in params:
            if isinstance(param, bool) or not isinstance(param, int | str):
                raise MalformedSignatureError(f"Signature-Input {label!r}: bad {key!r}")
            checked.append((key, param))
        return cls(tuple(components), tuple(checked))


def signature_base(parts: RequestParts, params: SignatureParams) -> bytes:
    """The bytes an RFC 9421 signature signs: one line per component, then the parameters."""
    lines = []
    for name in params.components:
        value = component_value(parts, name)
        if not value.isascii() or "\n" in value or "\r" in value:
            raise MalformedSignatureError(f"covered component {name!r} is not one line of ASCII")
        lines.append(f'"{name}": {value}\n')
    return ("".join(lines) + f'"@signature-params": {params.serialize()}').encode("ascii")


def sign_parts(
    parts: RequestParts, params: SignatureParams, signer: Signer, label: str = LABEL
) -> dict[str, str]:
    """The Signature-Input and Signature header fields signing `parts` with `params`."""
    signature = signer.sign(signature_base(parts, params))
    return {
        "Signature-Input": f"{label}={params.serialize()}",
        "Signature": f"{label}=:{base64.b64encode(signature).decode()}:",
    }


def parse_signature(signature_input: str, signature: str) -> tuple[SignatureParams, bytes]:
    """The one signature the two headers carry: its parameters and its 64 bytes."""
    inputs = parse_dictionary(signature_input, "Signature-Input")
    values = parse_dictionary(signature, "Signature")
    if len(inputs) != 1:
        raise MalformedSignatureError(f"want exactly one signature, got labels {sorted(inputs)}")
    [(label, member)] = inputs.items()
    found = values.get(label)
    if found is None or not isinstance(found[0], bytes) or len(found[0]) != 64:
        raise MalformedSignatureError(f"Signature has no 64-byte value for label {label!r}")
    return SignatureParams.from_member(member, label), found[0]


def verify_parts(
    parts: RequestParts, params: SignatureParams, signature: bytes, key: Verifier
) -> bool:
    """True when `signature` is `key`'s Ed25519 signature of the request's signature base."""
    return key.verify(signature_base(parts, params), signature)


# -- who may read ---------------------------------------------------------------------------

Role = Literal["participant", "observer", "node"]


@dataclass(frozen=True, slots=True)
class RosterMember:
    """A key allowed to sign requests, known by its keyid (the key's name)."""

    keyid: str
    key: Verifier
    role: Role
    suspended: bool = False


def roster_members(roster: Roster | None, own: Verifier | None) -> dict[str, RosterMember]:
    """Members by keyid: Participants (by log origin), observers, and the node's own key.

    The node's own key is always a member (its operator reads its own node); a Participant
    wins over an observer whose key has the same name.
    """
    members: dict[str, RosterMember] = {}
    if roster is not None:
        for o in roster.observers:
            members[o.key.name] = RosterMember(o.key.name, o.key, "observer")
        for p in roster.participants:
            members[p.key.name] = RosterMember(p.key.name, p.key, "participant", not p.active)
    if own is not None:
        members[own.name] = RosterMember(own.name, own, "node")
    return members


@dataclass(frozen=True, slots=True)
class AccessLimits:
    """Bounds on request signatures: clock window, nonce memory, header sizes."""

    window: int = 300
    max_nonces: int = 100_000
    max_nonce_length: int = 64
    max_header: int = 4096


class ReplayGuard:
    """Remembers accepted (keyid, nonce) pairs while their `created` is inside the window."""

    def __init__(self, limits: AccessLimits = AccessLimits()) -> None:
        self.limits = limits
        self._seen: set[tuple[str, str]] = set()
        self._by_age: list[tuple[int, str, str]] = []
        self._floor: int | None = None
        self._lock = threading.Lock()

    def admit(self, keyid: str, nonce: str, created: int, now: int) -> None:
        """Record the pair; StaleSignatureError or ReplayedSignatureError if it may not pass."""
        window = self.limits.window
        if abs(now - created) > window:
            raise StaleSignatureError(
                f"signature by {keyid!r} created at {created}, {_skew(created, now)} "
                f"by this node's clock (allowed: {window} s either way)"
            )
        with self._lock:
            while self._by_age and self._by_age[0][0] < now - window:
                _, k, n = heapq.heappop(self._by_age)
                self._seen.discard((k, n))
            if self._floor is not None and created <= self._floor:
                raise StaleSignatureError(
                    f"signature by {keyid!r} created at {created}: not after {self._floor}, "
                    "the oldest this node still remembers nonces for"
                )
            if (keyid, nonce) in self._seen:
                raise ReplayedSignatureError(f"nonce {nonce!r} of {keyid!r} was already used")
            if len(self._by_age) >= self.limits.max_nonces:
                oldest, k, n = heapq.heappop(self._by_age)
                self._seen.discard((k, n))
                self._floor = oldest if self._floor is None else max(self._floor, oldest)
            heapq.heappush(self._by_age, (created, keyid, nonce))
            self._seen.add((keyid, nonce))

    def remembered(self) -> int:
        """How many (keyid, nonce) pairs are held now."""
        return len(self._seen)


def _skew(created: int, now: int) -> str:
    """How far `created` lies from `now`, in words: "400 s ago" or "400 s in the future"."""
    return f"{now - created} s ago" if created <= now else f"{created - now} s in the future"


def authenticate(
    parts: RequestParts,
    members: Mapping[str, RosterMember],
    guard: ReplayGuard,
    now: int,
) -> RosterMember:
    """The member who signed this request; an AuthError subclass saying why it may not pass.

    Order: headers present and well formed, required components and parameters, a known
    keyid, a valid signature, fresh and not replayed, and finally not suspended.
    """
    limits = guard.limits
    signature_input, signature = parts.field("signature-input"), parts.field("signature")
    if signature_input is None or signature is None:
        raise MalformedSignatureError("request is not signed (no Signature-Input and Signature)")
    if max(len(signature_input), len(signature)) > limits.max_header:
        raise MalformedSignatureError(f"signature headers longer than {limits.max_header}")
    params, value = parse_signature(signature_input, signature)
    need = REQUIRED_COMPONENTS + (("@query",) if parts.query is not None else ())
    missing = [c for c in need if c not in params.components]
    if missing:
        raise MalformedSignatureError(f"signature does not cover {missing}")
    keyid, nonce, created, alg = (params.get(k) for k in ("keyid", "nonce", "created", "alg"))
    if not isinstance(keyid, str) or not isinstance(created, int) or not isinstance(nonce, str):
        raise MalformedSignatureError("signature lacks keyid, created or nonce")
    if alg != ALG:
        raise MalformedSignatureError(f"signature alg {alg!r}, want {ALG!r}")
    if not 0 < len(nonce) <= limits.max_nonce_length:
        raise MalformedSignatureError(f"nonce of {len(nonce)} characters")
    member = members.get(keyid)
    if member is None:
        raise UnknownKeyError(f"keyid {keyid!r} is not a roster member")
    if not verify_parts(parts, params, value, member.key):
        raise BadSignatureError(f"signature by {keyid!r} does not verify with its roster key")
    expires = params.get("expires")
    if isinstance(expires, int) and now > expires:
        raise StaleSignatureError(f"signature by {keyid!r} expired at {expires}")
    guard.admit(keyid, nonce, created, now)
    if member.suspended:
        raise SuspendedMemberError(f"{keyid} is suspended on the roster")
    return member


def accept_signature_header() -> str:
    """The Accept-Signature value (RFC 9421 §5.1) a 401 sends: what to sign and how.

    It lists "@query" for every request, with a query or not: a client that signs what
    it lists is accepted for any request to this node.
    """
    components = " ".join(serialize_string(c) for c in HINTED_COMPONENTS)
    return f'{LABEL}=({components});created;nonce;keyid;alg="{ALG}"'


# -- the client side ------------------------------------------------------------------------


def sign_request(
    request: httpx.Request, signer: Signer, *, now: int | None = None, nonce: str | None = None
) -> None:
    """Add Signature-Input and Signature to `request`, signed by `signer` as its key name."""
    parts = RequestParts.from_httpx(request)
    components = REQUIRED_COMPONENTS + (("@query",) if parts.query is not None else ())
    params = SignatureParams.make(
        components,
        created=int(time.time()) if now is None else now,
        nonce=secrets.token_urlsafe(16) if nonce is None else nonce,
        keyid=signer.name,
    )
    request.headers.update(sign_parts(parts, params, signer))


class SignatureAuth(httpx.Auth):
    """httpx authentication that signs every request (RFC 9421, Ed25519) with `signer`.

    Use as ``httpx.Client(auth=SignatureAuth(node.signer))``; each request, retries
    included, gets a fresh ``created`` and nonce.
    """

    def __init__(self, signer: Signer, clock: Callable[[], float] = time.time) -> None:
        self.signer, self.clock = signer, clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request, then send it once."""
        sign_request(request, self.signer, now=int(self.clock()))
        yield request
