"""Field checks and the schema-driven codec behind every custody record (`ledger.records`).

A record class lists its fields once, in ``SCHEMA``, each with a spec: `Scalar` (one
checked value), `ListOf` (a non-empty list of distinct items, a tuple in Python) or
`Nested` (a map decoded by another `Body` class). `Body` then gives the class a
validating ``__post_init__``, ``to_body()`` and a strict ``from_body()``. Scalars are
checked once, by the constructor; ``from_body`` only reshapes lists and nested maps, so
a decoded record costs no more checks than one built by hand.

Identifiers (actors, parcels) are ASCII ``[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}``, so two
ids are equal exactly when their bytes are. Free text is NFC-normalised Unicode without
control characters or surrounding spaces, so a zone typed on two machines compares
equal to the roster's.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import types
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, Self, TypeAlias, cast

from ledger.errors import RecordError
from ledger.quantities import MAX_CARATS, MAX_CENTS

#: ISO 3166-1 alpha-2 codes officially assigned (as listed by Debian's iso-codes).
ISO_3166_ALPHA2: Final = frozenset(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN "  # noqa: SIM905 (249 codes: a list literal would take 249 lines)
    "BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ "
    "DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL "
    "GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM "
    "JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME "
    "MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP "
    "NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD "
    "SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO "
    "TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW".split()
)
#: The European Union takes part in the KPCS as one Participant.
EU: Final = "EU"
_PARTICIPANT_CODES: Final = ISO_3166_ALPHA2 | {EU}

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_CERTIFICATE = re.compile(r"(?P<issuer>[A-Z]{2})-(?P<year>[0-9]{4})-(?P<serial>[0-9]{6,10})")
#: The common spelling (a six-digit serial), good whenever its issuer is a Participant code.
_SIX_DIGIT_CERTIFICATE = re.compile(r"[A-Z]{2}-[0-9]{4}-[0-9]{6}").fullmatch
_ident_match = _IDENT.fullmatch
_MAX_INDEX = 2**63 - 1
_MISSING: Final = object()

#: A value check: None when the value is good, else what is wrong with it.
Check: TypeAlias = Callable[[object], "str | None"]


class RecordFieldError(RecordError):
    """A record field that is missing, unexpected, ill-typed or out of range."""

    def __init__(self, kind: str, field: str, value: object, problem: str) -> None:
        self.kind, self.field, self.value, self.problem = kind, field, value, problem
        shown = "" if value is _MISSING else f" = {short_repr(value)}"
        super().__init__(f"{kind}: {field}{shown}: {problem}")


def short_repr(value: object) -> str:
    """`repr` cut to 80 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- codes and scalar checks ------------------------------------------------------------


def is_country(code: object) -> bool:
    """True for an assigned ISO 3166-1 alpha-2 code (upper case)."""
    return isinstance(code, str) and code in ISO_3166_ALPHA2


def is_participant_code(code: object) -> bool:
    """True for a KP Participant code: an ISO 3166-1 alpha-2 code or ``EU``."""
    return code == EU or is_country(code)


def certificate_problem(number: object) -> str | None:
    """What is wrong with a certificate number (``BW-2026-000123``), or None."""
    if type(number) is str and _SIX_DIGIT_CERTIFICATE(number) and number[:2] in _PARTICIPANT_CODES:
        return None  # the fast path: what the checks below accept, spelled the common way
    if not isinstance(number, str) or (m := _CERTIFICATE.fullmatch(number)) is None:
        return "must be a certificate number like BW-2026-000123 (issuer-year-serial)"
    if not is_participant_code(m["issuer"]):
        return f"issuer {m['issuer']!r} is not an ISO 3166-1 alpha-2 code or EU"
    if len(m["serial"]) > 6 and m["serial"].startswith("0"):
        return "serial must be zero-padded to exactly 6 digits, no more"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(low: int, high: int, what: str) -> Check:
    def check(v: object) -> str | None:
        if type(v) is int and low <= v <= high:
            return None  # the fast path: a plain int in range
        if not _is_int(v):
            return f"must be an integer ({what})"
        if not low <= v <= high:  # type: ignore[operator]
            return f"must be between {low} and {high} ({what})"
        return None

    return check


def _ident(v: object) -> str | None:
    if isinstance(v, str) and _ident_match(v):
        return None
    return "must be an id of 1-80 ASCII letters, digits or ._:/- starting with a letter or digit"


def text_problem(v: object, max_len: int) -> str | None:
    """What is wrong with a free-text value (names, reasons, zones), or None."""
    if not isinstance(v, str) or not 0 < len(v) <= max_len:
        return f"must be text of 1 to {max_len} characters"
    if v.isascii() and v.isprintable() and v == v.strip():
        return None  # the fast path: ASCII is NFC; printable ASCII has no Cc/Cf/Zl/Zp
    if v != v.strip() or not unicodedata.is_normalized("NFC", v):
        return "must be NFC-normalised with no leading or trailing spaces"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in v):
        return "must not contain control or format characters"
    return None


def _country(v: object) -> str | None:
    if isinstance(v, str) and v in ISO_3166_ALPHA2:  # is_country, inline: a hot check
        return None
    return "must be an ISO 3166-1 alpha-2 country code"


def _participant(v: object) -> str | None:
    ok = is_participant_code(v)
    return None if ok else "must be a Participant code (ISO 3166-1 alpha-2 or EU)"


def _date(v: object) -> str | None:
    if isinstance(v, str) and _DATE.fullmatch(v):
        try:
            datetime.date.fromisoformat(v)
        except ValueError:
            return "is not a calendar date"
        return None
    return "must be an ISO 8601 date YYYY-MM-DD"


def _log_origin(v: object) -> str | None:
    if isinstance(v, str):
        network, _, code = v.rpartition("/")
        if network and is_participant_code(code) and not any(c.isspace() or c == "+" for c in v):
            return None
    return "must be a log origin <network>/<participant code>, e.g. kp.example/BW"


def _hash32(v: object) -> str | None:
    return None if isinstance(v, bytes) and len(v) == 32 else "must be 32 bytes"


def _bool(v: object) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


# -- field specs ----------------------------------------------------------------------


class _BadValueError(Exception):
    """A bad value at `path` below the field being checked ("", "[2]", "[2].carats")."""

    def __init__(self, path: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.path, self.value, self.problem = path, value, problem


def _at(prefix: str, fn: Callable[[Any], Any], value: Any) -> Any:
    try:
        return fn(value)
    except _BadValueError as e:
        raise _BadValueError(prefix + e.path, e.value, e.problem) from None


#: What `quick_check` says of a value `check` would refuse (`check` then says why).
_REFUSED: Final = "refused"


def _itself(item: object) -> object:
    return item


class FieldSpec(Protocol):
    """How one field is decoded from a body, checked, and encoded back.

    `quick_check` is `check` on the happy path: None exactly when `check` passes, without
    building the paths and messages of an error (records are built and decoded by the
    hundred thousand; the rare refusal then goes through `check` for its message).
    """

    def decode(self, raw: Any) -> Any: ...
    def check(self, value: Any) -> None: ...
    def quick_check(self, value: Any) -> str | None: ...
    def encode(self, value: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Scalar:
    """A field holding one value, checked by `test`."""

    test: Check

    def decode(self, raw: Any) -> Any:
        return raw  # checked once, by the constructor

    def check(self, value: Any) -> None:
        problem = self.test(value)
        if problem is not None:
            raise _BadValueError("", value, problem)

    def quick_check(self, value: Any) -> str | None:
        return self.test(value)

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class Nested:
    """A field holding a map decoded by another `Body` class."""

    cls: type[Body]

    def decode(self, raw: Any) -> Any:
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise _BadValueError("", raw, "must be a map")
        try:
            return self.cls.from_body(raw)
        except RecordFieldError as e:
            raise _BadValueError("." + e.field, e.value, e.problem) from None

    def check(self, value: Any) -> None:
        if not isinstance(value, self.cls):
            raise _BadValueError("", value, f"must be a {self.cls.KIND}")

    def quick_check(self, value: Any) -> str | None:
        return None if isinstance(value, self.cls) else _REFUSED

    def encode(self, value: Any) -> Any:
        return value.to_body()


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of at least `min_len` items, distinct by `key`; a tuple in Python."""

    item: Scalar | Nested
    min_len: int
    key: Callable[[Any], object] = _itself
    #: The quick check's per-item test: a scalar item's test, else None (nested maps: the
    #: item must be an instance of the nested class).
    _item_test: Check | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        test = self.item.test if isinstance(self.item, Scalar) else None
        object.__setattr__(self, "_item_test", test)

    def decode(self, raw: Any) -> Any:
        if not isinstance(raw, list):
            raise _BadValueError("", raw, "must be a list")
        item = self.item
        if isinstance(item, Scalar):
            return tuple(raw)  # a scalar decodes as itself
        decoded = []
        for i, x in enumerate(raw):
            try:
                decoded.append(item.decode(x))
            except _BadValueError as e:
                raise _BadValueError(f"[{i}]" + e.path, e.value, e.problem) from None
        return tuple(decoded)

    def check(self, value: Any) -> None:
        if not isinstance(value, tuple):
            raise _BadValueError("", value, "must be a tuple")
        if len(value) < self.min_len:
            raise _BadValueError("", value, f"must list at least {self.min_len}")
        seen: dict[object, int] = {}
        for i, item in enumerate(value):
            _at(f"[{i}]", self.item.check, item)
            first = seen.setdefault(self.key(item), i)
            if first != i:
                raise _BadValueError(f"[{i}]", self.key(item), f"duplicates [{first}]")

    def quick_check(self, value: Any) -> str | None:
        if not isinstance(value, tuple) or len(value) < self.min_len:
            return _REFUSED
        test = self._item_test
        if test is not None:
            for x in value:
                if test(x) is not None:
                    return _REFUSED
        else:
            cls = cast(Nested, self.item).cls
            for x in value:
                if not isinstance(x, cls):
                    return _REFUSED
        if len(value) == 1:
            return None
        key = self.key
        keys = value if key is _itself else [key(x) for x in value]
        try:
            distinct = len(set(keys)) == len(keys)
        except TypeError:  # an unhashable key: `check` raises it as before
            return _REFUSED
        return None if distinct else _REFUSED

    def encode(self, value: Any) -> Any:
        if isinstance(self.item, Scalar):
            return list(value)  # a scalar encodes as itself
        return [self.item.encode(x) for x in value]


def _remembered(test: Check, size: int = 4096) -> Check:
    """`test` with its answers for str values remembered (the first `size` distinct ones).

    Dates, names, places and codes repeat across thousands of records; their checks (NFC,
    character categories, calendar dates) cost more than a dict lookup. Pure functions of
    the value, so remembering changes no answer.
    """
    answers: dict[str, str | None] = {}

    def check(v: object) -> str | None:
        if type(v) is not str:
            return test(v)
        try:
            return answers[v]
        except KeyError:
            answer = test(v)
            if len(answers) < size:
                answers[v] = answer
            return answer

    return check


def one_of(options: tuple[str, ...]) -> Scalar:
    """A field holding one of `options`."""
    return Scalar(
        lambda v: None if isinstance(v, str) and v in options else f"must be one of {options}"
    )


def text(max_len: int, *, optional: bool = False) -> Scalar:
    """A free-text field of at most `max_len` characters, or None when `optional`."""
    return Scalar(
        _remembered(lambda v: None if optional and v is None else text_problem(v, max_len))
    )


IDENT = Scalar(_ident)
NAME = text(256)
NOTE = text(2048)
CARATS = Scalar(_int_in(1, MAX_CARATS, "hundredths of a carat"))
CENTS = Scalar(_int_in(0, MAX_CENTS, "US cents"))
INDEX = Scalar(_int_in(0, _MAX_INDEX, "a log index"))
COUNT = Scalar(_int_in(1, _MAX_INDEX, "a count"))
DATE = Scalar(_remembered(_date))
COUNTRY = Scalar(_country)
PARTICIPANT = Scalar(_participant)
CERTIFICATE = Scalar(certificate_problem)
LOG_ORIGIN = Scalar(_remembered(_log_origin))
HASH32 = Scalar(_hash32)
BOOL = Scalar(_bool)


class Body:
    """Base of records and their nested parts: checks, encodes and decodes by ``SCHEMA``.

    Subclasses are ``@dataclass(frozen=True, slots=True)`` whose fields are exactly the
    keys of ``SCHEMA``, in order, and may override `check_together` for invariants
    that span fields.

    Each subclass gets its own straight-line ``__post_init__``, ``to_body`` and body
    decoder, compiled from ``SCHEMA`` when the class is made (see `_compile`): records are
    built, encoded and decoded by the hundred thousand, and a loop over a schema costs
    more than the checks themselves. The loops below are the reference they must match;
    a refused value always goes through them, so every error message comes from here.
    """

    __slots__ = ()
    KIND: ClassVar[str]
    SCHEMA: ClassVar[Mapping[str, FieldSpec]]
    #: SCHEMA's keys, to compare a body's keys with in one step.
    _KEYS: ClassVar[frozenset[str]] = frozenset()
    #: Builds the class from a body with exactly SCHEMA's keys (compiled per class).
    _FROM_FIELDS: ClassVar[Callable[[Mapping[str, Any]], Any]]
    #: Builds the class from `to_values` output, with no checks (compiled per class).
    _FROM_VALUES: ClassVar[Callable[[Sequence[Any]], Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "SCHEMA" in cls.__dict__:
            cls._KEYS = frozenset(cls.SCHEMA)
            _compile(cls)

    def __post_init__(self) -> None:
        self._check_fields()
        self.check_together()

    def _check_fields(self) -> None:
        """Check every field in SCHEMA order; RecordFieldError for the first one refused."""
        for name, spec in self.SCHEMA.items():
            try:
                spec.check(getattr(self, name))
            except _BadValueError as e:
                raise RecordFieldError(self.KIND, name + e.path, e.value, e.problem) from None

    def check_together(self) -> None:
        """Check invariants across fields; the default has none."""

    def fail(self, field: str, value: object, problem: str) -> None:
        """Refuse this record: `field` holds `value`, which has `problem`."""
        raise RecordFieldError(self.KIND, field, value, problem)

    def to_body(self) -> dict[str, Any]:
        """The canonical map of this record: keys sorted at every level; ints, str, bytes,
        lists, bool, None (so its bytes need no re-check before signing)."""
        return {name: self.SCHEMA[name].encode(getattr(self, name)) for name in sorted(self.SCHEMA)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Decode a body map strictly: exactly the schema's keys, each well typed and valid."""
        if type(body) is not dict and not isinstance(body, Mapping):
            raise RecordFieldError(cls.KIND, "body", body, "must be a map")
        if body.keys() != cls._KEYS:
            for key in body:
                if key not in cls.SCHEMA:
                    raise RecordFieldError(cls.KIND, str(key), body[key], "unexpected field")
            missing = next(name for name in cls.SCHEMA if name not in body)
            raise RecordFieldError(cls.KIND, missing, _MISSING, "missing")
        made: Self = cls._FROM_FIELDS(body)
        return made

    def to_values(self) -> tuple[Any, ...]:
        """The field values in SCHEMA order, nested parts as their own values: a compact
        form in which a process can keep a record it has checked (see `_from_values`)."""
        values = []
        for name, spec in self.SCHEMA.items():
            value = getattr(self, name)
            if isinstance(spec, Nested):
                value = value.to_values()
            elif isinstance(spec, ListOf) and isinstance(spec.item, Nested):
                value = [item.to_values() for item in value]
            values.append(value)
        return tuple(values)

    @classmethod
    def _from_values(cls, values: Sequence[Any]) -> Self:
        """The record `to_values` gave `values` for in this process (lists may come back as
        lists or tuples), rebuilt with NO checks: each field stored through its slot.

        Private on purpose: a record built from anything else would be signed and indexed
        unchecked. Its one caller is the audit, reading back each export it replayed.
        """
        made: Self = cls._FROM_VALUES(values)
        return made


def _compile(cls: type[Body]) -> None:
    """Give `cls` straight-line ``__post_init__``, ``to_body`` and ``_FROM_FIELDS``.

    The same steps as `Body`'s loops, written out per field (as `dataclasses` writes
    ``__init__``): ``__post_init__`` runs every field's quick check and, if one refuses,
    `Body._check_fields` for the error; ``to_body`` writes the keys in sorted order;
    ``_FROM_FIELDS`` decodes lists and nested maps in SCHEMA order, then builds the record
    (passing the fields by position: they are SCHEMA's keys in order).
    """
    names = list(cls.SCHEMA)
    if "__dataclass_fields__" in cls.__dict__:  # the class as the dataclass decorator made it
        made = [f.name for f in dataclasses.fields(cast(Any, cls))]
        if made != names:
            raise TypeError(f"{cls.__name__}: fields {made} are not SCHEMA's keys {names}")
    scope: dict[str, Any] = {"cls": cls, "_Bad": _BadValueError, "_Err": RecordFieldError}
    quick, decoding, arguments, encoded = [], [], [], {}
    for i, (name, spec) in enumerate(cls.SCHEMA.items()):
        if not name.isidentifier():
            raise TypeError(f"{cls.__name__}: field {name!r} is not an identifier")
        scope[f"_q{i}"] = spec.test if isinstance(spec, Scalar) else spec.quick_check
        quick.append(f"_q{i}(self.{name}) is None")
        if isinstance(spec, Scalar):  # taken and written as it is
            arguments.append(f"body[{name!r}]")
            encoded[name] = f"self.{name}"
        else:
            scope[f"_d{i}"], scope[f"_e{i}"] = spec.decode, spec.encode
            decoding += _decoding(i, name)
            arguments.append(f"_v{i}")
            encoded[name] = f"_e{i}(self.{name})"
    together = cls.check_together is not Body.check_together
    source = [
        "def __post_init__(self):",
        f"    if not ({' and '.join(quick) or 'True'}):",
        "        self._check_fields()",
        *(["    self.check_together()"] if together else []),
        "def to_body(self):",
        "    return {" + ", ".join(f"{n!r}: {encoded[n]}" for n in sorted(names)) + "}",
        "def from_fields(body):",
        *decoding,
        f"    return cls({', '.join(arguments)})",
    ]
    exec("\n".join(source), scope)  # noqa: S102 (the source is built from identifiers alone)
    for name, doc in (("__post_init__", "Check every field."), ("to_body", Body.to_body.__doc__)):
        scope[name].__doc__ = doc
        scope[name].__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, scope[name])
    cls._FROM_FIELDS = staticmethod(scope["from_fields"])
    _compile_values(cls)


def _compile_values(cls: type[Body]) -> None:
    """Give `cls` ``to_values`` and ``_FROM_VALUES`` (see `Body.to_values`), written out per
    field: nested parts as their own values; ``_FROM_VALUES`` makes every list field a
    tuple again. Until the dataclass decorator has remade the class with its slots,
    ``_FROM_VALUES`` is left out (that class is not kept).
    """
    slots = [cls.__dict__.get(name) for name in cls.SCHEMA]
    scope: dict[str, Any] = {"cls": cls, "_new": object.__new__}
    out, build = [], ["def from_values(values):", "    self = _new(cls)"]
    for i, (name, spec) in enumerate(cls.SCHEMA.items()):
        item = spec.item if isinstance(spec, ListOf) else spec
        if isinstance(item, Nested):
            scope[f"_n{i}"] = item.cls
            if isinstance(spec, ListOf):
                out.append(f"[x.to_values() for x in self.{name}]")
                value = f"tuple([_n{i}._FROM_VALUES(x) for x in values[{i}]])"
            else:
                out.append(f"self.{name}.to_values()")
                value = f"_n{i}._FROM_VALUES(values[{i}])"
        else:
            out.append(f"self.{name}")
            value = f"tuple(values[{i}])" if isinstance(spec, ListOf) else f"values[{i}]"
        build.append(f"    _s{i}(self, {value})")
        scope[f"_s{i}"] = getattr(slots[i], "__set__", None)
    source = ["def to_values(self):", f"    return ({', '.join(out)},)"]
    if all(isinstance(slot, types.MemberDescriptorType) for slot in slots):
        source += [*build, "    return self"]
    exec("\n".join(source), scope)  # noqa: S102 (the source is built from identifiers alone)
    scope["to_values"].__qualname__ = f"{cls.__qualname__}.to_values"
    scope["to_values"].__doc__ = Body.to_values.__doc__
    setattr(cls, "to_values", scope["to_values"])  # noqa: B010 (mypy refuses assigning a method)
    if "from_values" in scope:
        cls._FROM_VALUES = staticmethod(scope["from_values"])


def _decoding(i: int, name: str) -> list[str]:
    """Source lines decoding field `name` (number `i`) into ``_v<i>``, refusing as `Body` does."""
    return [
        "    try:",
        f"        _v{i} = _d{i}(body[{name!r}])",
        "    except _Bad as e:",
        f"        raise _Err(cls.KIND, {name!r} + e.path, e.value, e.problem) from None",
    ]
