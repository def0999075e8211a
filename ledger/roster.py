"""The signed roster: who the Participants are and which keys speak for them (DESIGN §4).

Modelled on TUF root metadata. A `Roster` lists the network, each Participant (code,
name, countries, log key, node URL, status, permitted zones), read-only observers, a
version and a threshold. A `SignedRoster` carries it with Ed25519 signatures over
`Roster.signed_bytes` by Participants' log keys. Pure logic: reading the file and
storing the trusted version belong to the caller.

Trust starts at version 1, which every listed Participant must sign (`verify_first`).
Version n+1 is trusted (`verify_next`) only when it is signed by

- the threshold of version n's *active* Participants with version n's keys (consent:
  every active one when ``threshold`` is None, the default), and
- the threshold of version n+1's active Participants with version n+1's keys, and
- every key that version n+1 brings in (an admission or a rotation), so a new key
  proves its holder has it whatever the threshold.

Rotation, admission, suspension and readmission are all just new versions. With the
default threshold a suspension needs the suspended Participant's own signature; a
network that must be able to suspend without consent sets a threshold below the count
of active Participants. Signatures are matched by note key id and then checked; a
signature by an unknown key is ignored and no Participant is counted twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

from ledger.encoding import decode, encode
from ledger.errors import EncodingError, KeyFileError, RosterError
from ledger.fields import is_country, is_participant_code, text_problem
from ledger.keys import ALG_ED25519, Signer, Verifier

ROSTER_CONTEXT: Final = b"kimberley/roster/v1\n"
MAX_ROSTER_SIZE: Final = 1 << 20
MAX_SIGNATURES: Final = 1024

Status: TypeAlias = Literal["active", "suspended"]
STATUSES: Final[tuple[Status, ...]] = ("active", "suspended")


class RosterVersionError(RosterError):
    """A roster whose version does not follow the trusted one: rollback, replay or gap."""


class RosterSignatureError(RosterError):
    """A roster lacking signatures it needs; `missing` names the Participants who did not sign."""

    def __init__(self, version: int, missing: tuple[str, ...], message: str) -> None:
        self.version, self.missing = version, missing
        super().__init__(message)


def _fail(where: str, problem: str) -> RosterError:
    return RosterError(f"{where}: {problem}")


def _fields(body: object, keys: tuple[str, ...], where: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise _fail(where, "must be a map")
    if set(body) != set(keys):
        missing, extra = sorted(set(keys) - set(body)), sorted(map(str, set(body) - set(keys)))
        raise _fail(where, f"missing fields {missing}, unexpected fields {extra}")
    return body


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(where, f"must be {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_typed(v, str, f"{where}[{i}]") for i, v in enumerate(_typed(value, list, where)))


def _verifier(text: Any, where: str) -> Verifier:
    try:
        return Verifier.from_text(_typed(text, str, where))
    except KeyFileError as e:
        raise _fail(where, str(e)) from e


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_distinct(items: Iterable[object], where: str) -> None:
    seen: set[object] = set()
    for item in items:
        if item in seen:
            raise _fail(where, f"{item!r} is listed twice")
        seen.add(item)


@dataclass(frozen=True, slots=True)
class Participant:
    """A KP Participant: its log key is named ``<network>/<code>``.

    ``zones`` None means unrestricted; a tuple restricts exports to actors registered
    in one of those zones (the Central African Republic's "compliant zones").
    """

    code: str
    name: str
    countries: tuple[str, ...]
    key: Verifier
    url: str
    status: Status = "active"
    zones: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = f"participant {self.code!r}"
        if not is_participant_code(self.code):
            raise _fail(where, "code must be an ISO 3166-1 alpha-2 code or EU")
        for what, problem in (("name", text_problem(self.name, 256)), ("url", _url(self.url))):
            if problem:
                raise _fail(where, f"{what} {problem}")
        if not self.countries or not all(is_country(c) for c in self.countries):
            raise _fail(where, f"countries {self.countries!r}: want ISO 3166-1 alpha-2 codes")
        _check_distinct(self.countries, f"{where} countries")
        if self.key.alg != ALG_ED25519 or not self.key.name.endswith("/" + self.code):
            raise _fail(
                where, f"key {self.key.name!r} must be an Ed25519 log key <network>/{self.code}"
            )
        if self.status not in STATUSES:
            raise _fail(where, f"status {self.status!r} must be one of {STATUSES}")
        if self.zones is not None:
            if not self.zones or any(text_problem(z, 256) for z in self.zones):
                raise _fail(where, "zones must be None (unrestricted) or a list of zone names")
            _check_distinct(self.zones, f"{where} zones")

    @property
    def active(self) -> bool:
        """True when the Participant may trade."""
        return self.status == "active"

    def to_body(self) -> dict[str, Any]:
        """The canonical map of this Participant (the key as verifier-key text)."""
        body = {name: getattr(self, name) for name in _PARTICIPANT_FIELDS}
        zones = None if self.zones is None else list(self.zones)
        return body | {"countries": list(self.countries), "key": self.key.to_text(), "zones": zones}

    @classmethod
    def from_body(cls, body: object, where: str) -> Participant:
        """Decode one Participant map strictly."""
        b = _fields(body, _PARTICIPANT_FIELDS, where)
        values = {k: _typed(b[k], str, f"{where}.{k}") for k in ("code", "name", "url", "status")}
        zones = None if b["zones"] is None else _strings(b["zones"], f"{where}.zones")
        countries = _strings(b["countries"], f"{where}.countries")
        key = _verifier(b["key"], f"{where}.key")
        try:
            return cls(**values, countries=countries, key=key, zones=zones)
        except RosterError as e:
            raise _fail(where, str(e)) from None


_PARTICIPANT_FIELDS: Final = ("code", "name", "countries", "key", "url", "status", "zones")


def _url(url: object) -> str | None:
    if isinstance(url, str) and len(url) <= 2048 and not any(c.isspace() for c in url):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return None
    return "must be an http(s) URL"


@dataclass(frozen=True, slots=True)
class Observer:
    """A read-only auditor (KP monitoring, civil society) known by name and key."""

    name: str
    key: Verifier

    def __post_init__(self) -> None:
        problem = text_problem(self.name, 256)
        if problem:
            raise _fail(f"observer {self.name!r}", f"name {problem}")

    def to_body(self) -> dict[str, Any]:
        """The canonical map of this observer."""
        return {"name": self.name, "key": self.key.to_text()}

    @classmethod
    def from_body(cls, body: object, where: str) -> Observer:
        """Decode one observer map strictly."""
        b = _fields(body, ("name", "key"), where)
        name, key = _typed(b["name"], str, f"{where}.name"), _verifier(b["key"], f"{where}.key")
        try:
            return cls(name, key)
        except RosterError as e:
            raise _fail(where, str(e)) from None


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of the roster; ``threshold`` is what the *next* version needs from this one."""

    network: str
    version: int
    participants: tuple[Participant, ...]
    observers: tuple[Observer, ...] = ()
    threshold: int | None = None
    _by_code: Mapping[str, Participant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"roster v{self.version}"
        if not _positive_int(self.version):
            raise _fail(where, "version must be an integer from 1")
        net = self.network
        if not net or net != net.strip("/") or any(c.isspace() or c == "+" for c in net):
            raise _fail(where, f"network {net!r} must be non-empty, no spaces, '+' or edge '/'")
        _check_distinct((p.code for p in self.participants), f"{where} participant codes")
        _check_distinct((p.key.public_key.hex() for p in self.participants), f"{where} keys")
        _check_distinct((o.name for o in self.observers), f"{where} observer names")
        for p in self.participants:
            if p.key.name != f"{net}/{p.code}":
                raise _fail(where, f"{p.code}'s key is named {p.key.name!r}, want {net}/{p.code}")
        active = len(self.active_codes())
        if active == 0:
            raise _fail(where, "no active participant: nobody could sign the next version")
        t = self.threshold
        if t is not None and not (_positive_int(t) and t <= active):
            raise _fail(where, f"threshold {t!r} must be None or 1 to {active} (active ones)")
        object.__setattr__(self, "_by_code", {p.code: p for p in self.participants})

    def participant(self, code: str) -> Participant | None:
        """The Participant with `code`, or None."""
        return self._by_code.get(code)

    def by_origin(self, origin: str) -> Participant | None:
        """The Participant whose log origin is `origin` (``<network>/<code>``), or None."""
        network, _, code = origin.rpartition("/")
        return self._by_code.get(code) if network == self.network else None

    def origin(self, code: str) -> str:
        """The log origin of Participant `code`: ``<network>/<code>``."""
        return f"{self.network}/{code}"

    def active_codes(self) -> tuple[str, ...]:
        """Codes of the active Participants, in roster order."""
        return tuple(p.code for p in self.participants if p.active)

    def log_key(self, origin: str) -> Verifier:
        """The key that signs `origin`'s log; RosterError for an origin not on the roster."""
        participant = self.by_origin(origin)
        if participant is None:
            raise _fail(f"roster v{self.version}", f"no participant with log origin {origin!r}")
        return participant.key

    def required_signatures(self) -> int:
        """How many of this version's active Participants must sign the next version."""
        return len(self.active_codes()) if self.threshold is None else self.threshold

    def to_body(self) -> dict[str, Any]:
        """The canonical map of this roster."""
        return {
            "network": self.network,
            "version": self.version,
            "participants": [p.to_body() for p in self.participants],
            "observers": [o.to_body() for o in self.observers],
            "threshold": self.threshold,
        }

    @classmethod
    def from_body(cls, body: object) -> Roster:
        """Decode a roster map strictly; RosterError naming the version and the field."""
        keys = ("network", "version", "participants", "observers", "threshold")
        b = _fields(body, keys, "roster")
        version = _typed(b["version"], int, "roster version")
        where = f"roster v{version}"
        parts = _typed(b["participants"], list, f"{where} participants")
        observers = _typed(b["observers"], list, f"{where} observers")
        threshold = b["threshold"]
        return cls(
            network=_typed(b["network"], str, f"{where} network"),
            version=version,
            participants=tuple(
                Participant.from_body(p, f"{where} participants[{i}]") for i, p in enumerate(parts)
            ),
            observers=tuple(
                Observer.from_body(o, f"{where} observers[{i}]") for i, o in enumerate(observers)
            ),
            threshold=None if threshold is None else _typed(threshold, int, f"{where} threshold"),
        )

    def signed_bytes(self) -> bytes:
        """The bytes every roster signature covers: context line + canonical body."""
        return ROSTER_CONTEXT + encode(self.to_body())

    def digest(self) -> bytes:
        """SHA-256 of `signed_bytes`: a short fingerprint to pin a version out of band."""
        return hashlib.sha256(self.signed_bytes()).digest()


Signature: TypeAlias = tuple[bytes, bytes]
"""(4-byte note key id of the signing key, 64-byte Ed25519 signature)."""


@dataclass(frozen=True, slots=True)
class SignedRoster:
    """A roster with signatures over its `Roster.signed_bytes`; the roster file format."""

    roster: Roster
    signatures: tuple[Signature, ...] = ()

    def sign(self, signer: Signer) -> SignedRoster:
        """A copy with `signer`'s signature added (replacing an earlier one by the same key)."""
        key_id = signer.verifier.key_id
        kept = tuple(s for s in self.signatures if s[0] != key_id)
        signature = signer.sign(self.roster.signed_bytes())
        return SignedRoster(self.roster, (*kept, (key_id, signature)))

    def to_bytes(self) -> bytes:
        """The roster file: canonical msgpack ``{roster: map, signatures: [{key_id, sig}]}``."""
        sigs = [{"key_id": kid, "sig": sig} for kid, sig in self.signatures]
        return encode({"roster": self.roster.to_body(), "signatures": sigs})

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRoster:
        """Decode a roster file strictly (canonical bytes, exact fields); RosterError if not."""
        try:
            doc = decode(data, max_size=MAX_ROSTER_SIZE)
        except EncodingError as e:
            raise RosterError(f"roster file: {e}") from e
        top = _fields(doc, ("roster", "signatures"), "roster file")
        roster = Roster.from_body(top["roster"])
        raw = _typed(top["signatures"], list, f"roster v{roster.version} signatures")
        if len(raw) > MAX_SIGNATURES:
            raise _fail(
                f"roster v{roster.version}", f"{len(raw)} signatures, limit {MAX_SIGNATURES}"
            )
        signatures = []
        for i, item in enumerate(raw):
            where = f"roster v{roster.version} signatures[{i}]"
            s = _fields(item, ("key_id", "sig"), where)
            kid, sig = _typed(s["key_id"], bytes, where), _typed(s["sig"], bytes, where)
            if len(kid) != 4 or len(sig) != 64:
                raise _fail(where, "want a 4-byte key id and a 64-byte signature")
            signatures.append((kid, sig))
        return cls(roster, tuple(signatures))


def _signed_by(signed: SignedRoster, keys: Mapping[str, Verifier]) -> set[str]:
    """Codes whose key in `keys` made one of the signatures; each code counts once."""
    message = signed.roster.signed_bytes()
    candidates: dict[bytes, list[tuple[str, Verifier]]] = {}
    for code, key in keys.items():
        candidates.setdefault(key.key_id, []).append((code, key))
    good: set[str] = set()
    for key_id, signature in signed.signatures:
        for code, key in candidates.get(key_id, ()):
            if code not in good and key.verify(message, signature):
                good.add(code)
    return good


def _require(version: int, codes: Sequence[str], good: set[str], need: int, whose: str) -> None:
    missing = tuple(c for c in codes if c not in good)
    have = len(codes) - len(missing)
    if have < need:
        raise RosterSignatureError(
            version,
            missing,
            f"roster v{version}: signed by {have} of the {need} required {whose}; "
            f"missing signatures: {', '.join(missing)}",
        )


def _keys(roster: Roster) -> dict[str, Verifier]:
    return {p.code: p.key for p in roster.participants}


def verify_first(signed: SignedRoster) -> Roster:
    """Trust version 1 of a roster: it must be signed by every Participant it lists."""
    roster = signed.roster
    if roster.version != 1:
        raise RosterVersionError(f"roster v{roster.version}: the first trusted roster must be v1")
    codes = [p.code for p in roster.participants]
    _require(1, codes, _signed_by(signed, _keys(roster)), len(codes), "participants of v1")
    return roster


def verify_next(trusted: Roster, signed: SignedRoster) -> Roster:
    """Trust the version after `trusted`, TUF-style (see the module docstring)."""
    new = signed.roster
    v = new.version
    if v != trusted.version + 1:
        raise RosterVersionError(f"roster v{v}: {_version_problem(trusted, new)}")
    if new.network != trusted.network:
        raise _fail(f"roster v{v}", f"network {new.network!r} differs from {trusted.network!r}")
    old_keys, new_keys = _keys(trusted), _keys(new)
    new_good = _signed_by(signed, new_keys)
    for roster, good in ((trusted, _signed_by(signed, old_keys)), (new, new_good)):
        label = f"v{roster.version}"
        whose = f"active participants of {label} (with their {label} keys)"
        _require(v, roster.active_codes(), good, roster.required_signatures(), whose)
    fresh = [code for code, key in new_keys.items() if key != old_keys.get(code)]
    _require(v, fresh, new_good, len(fresh), f"new keys of v{v}, each proving possession")
    return new


def _version_problem(trusted: Roster, new: Roster) -> str:
    if new.version > trusted.version + 1:
        return f"skips from trusted v{trusted.version}; apply v{trusted.version + 1} first"
    if new.version < trusted.version:
        return f"rollback: older than trusted v{trusted.version}"
    if new == trusted:
        return "replay: this version is already trusted"
    return "version reused with other content than the trusted one"


def verify_chain(first: bytes, later: Sequence[bytes]) -> Roster:
    """Trust roster file `first` (v1), then each of `later` in turn; the last one trusted."""
    trusted = verify_first(SignedRoster.from_bytes(first))
    for data in later:
        trusted = verify_next(trusted, SignedRoster.from_bytes(data))
    return trusted
