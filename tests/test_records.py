"""Custody records: codec round trips, every refusal named, clerk-facing quantities."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import decode, encode, pack_canonical
from ledger.errors import LedgerError, RecordError
from ledger.quantities import (
    MAX_CARATS,
    MAX_CENTS,
    QuantityError,
    format_carats,
    format_usd,
    parse_carats,
    parse_usd,
)
from ledger.records import (
    RECORD_KINDS,
    Export,
    ExportRef,
    ParcelMerge,
    ParcelShare,
    ParcelSplit,
    RecordFieldError,
    certificate_issuer,
    parse_record,
)
from tests.strategies import RECORD_STRATEGIES, records

DELETE = object()

VALID: dict[str, dict[str, Any]] = {
    "actor.register": {
        "actor": "BW-MINE-1",
        "role": "mine",
        "name": "Jwaneng Mine",
        "licence": "ML-1978/12",
        "location": "Jwaneng",
        "zone": "Southern",
    },
    "actor.revoke": {"actor": "BW-MINE-1", "reason": "licence expired"},
    "parcel.mine": {
        "parcel": "BW-P-000001",
        "mine": "BW-MINE-1",
        "carats": 123456,
        "value": 18_518_400,
        "date": "2026-03-02",
        "origin": "BW",
    },
    "parcel.split": {
        "input": "P1",
        "outputs": [
            {"parcel": "P2", "carats": 100, "value": 10},
            {"parcel": "P3", "carats": 50, "value": 5},
        ],
    },
    "parcel.merge": {
        "inputs": ["P1", "P2"],
        "output": {"parcel": "P3", "carats": 150, "value": 15},
    },
    "export": {
        "certificate": "BW-2026-000123",
        "authority": "Government Diamond Valuator",
        "exporter": "BW-EXP-1",
        "importer": "Antwerp Rough NV",
        "destination": "EU",
        "parcels": ["P1", "P2"],
        "carats": 700_000_00,
        "value": 70_000_000_00,
        "parcel_count": 2,
        "hs_code": "7102.31",
        "origins": ["BW"],
        "issued": "2026-03-02",
        "expires": "2026-05-31",
        "seal": "SEAL-0042",
    },
    "import": {
        "export_ref": {"origin": "kp.example/BW", "index": 7, "leaf_hash": bytes(32)},
        "certificate": "BW-2026-000123",
        "importer": "EU-IMP-1",
        "parcels": [{"parcel": "P1", "carats": 400_000_00, "value": 40_000_000_00}],
        "carats": 400_000_00,
        "value": 40_000_000_00,
        "received": "2026-03-09",
        "seal_intact": True,
        "discrepancy": None,
    },
    "export.void": {
        "certificate": "BW-2026-000123",
        "export_index": 12,
        "reason": "shipment cancelled",
    },
}


def mutated(kind: str, path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """A copy of VALID[kind] with the item at `path` replaced by `value` (or deleted)."""
    body = copy.deepcopy(VALID[kind])
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize("kind", list(RECORD_KINDS))
def test_every_valid_example_decodes(kind: str) -> None:
    """Each realistic example body decodes to its kind and encodes back to the same map."""
    record = parse_record(kind, VALID[kind])
    assert kind == record.KIND
    assert record.to_body() == VALID[kind]


@given(records())
def test_any_record_round_trips_through_canonical_bytes(record: Any) -> None:
    """A record's body survives canonical msgpack and decodes to an equal record."""
    data = encode(record.to_body())
    assert parse_record(record.KIND, decode(data)) == record
    assert encode(parse_record(record.KIND, decode(data)).to_body()) == data


@given(records())
def test_a_record_body_is_already_canonical(record: Any) -> None:
    """Custody signs `to_body()` without re-sorting it: its plain packing is the canonical one."""
    body = record.to_body()
    assert pack_canonical(body) == encode(body)


@pytest.mark.parametrize("kind", list(RECORD_KINDS))
@given(data=st.data())
def test_each_kind_round_trips(kind: str, data: st.DataObject) -> None:
    """Every kind's strategy draws records that round-trip through their own class."""
    record = data.draw(RECORD_STRATEGIES[kind]())
    assert type(record) is RECORD_KINDS[kind]
    assert RECORD_KINDS[kind].from_body(decode(encode(record.to_body()))) == record


@pytest.mark.parametrize("cls", [*RECORD_KINDS.values(), ParcelShare, ExportRef])
def test_schema_lists_exactly_the_dataclass_fields(cls: Any) -> None:
    """Each class's schema names its fields in declaration order, so bodies match the design."""
    assert list(cls.SCHEMA) == [f.name for f in dataclasses.fields(cls)]


@given(records(), st.data())
def test_a_missing_field_is_named(record: Any, data: st.DataObject) -> None:
    """Dropping any field from a body is refused with the kind and that field's name."""
    body = record.to_body()
    name = data.draw(st.sampled_from(sorted(body)))
    del body[name]
    with pytest.raises(RecordFieldError, match=f"^{record.KIND}: {name}: missing$"):
        parse_record(record.KIND, body)


@given(records())
def test_an_extra_field_is_named(record: Any) -> None:
    """A body with a field the kind does not define is refused, naming the field."""
    body = record.to_body() | {"colour": "D"}
    with pytest.raises(RecordFieldError, match=r"colour = 'D': unexpected field"):
        parse_record(record.KIND, body)


@given(records(), st.data(), st.sampled_from([1.5, b"x", [], {}, -1]))
def test_an_ill_typed_field_is_named(record: Any, data: st.DataObject, bad: object) -> None:
    """Replacing a field with a float or another wrong type is refused, naming field and value."""
    body = record.to_body()
    name = data.draw(st.sampled_from(sorted(body)))
    body[name] = bad
    with pytest.raises(RecordFieldError) as caught:
        parse_record(record.KIND, body)
    assert caught.value.kind == record.KIND
    assert caught.value.field.split("[")[0].split(".")[0] == name
    assert str(caught.value).startswith(f"{record.KIND}: {name}")


BAD = [
    ("parcel.mine", ("carats",), 0, "carats = 0: must be between 1"),
    ("parcel.mine", ("carats",), -100, "carats = -100"),
    ("parcel.mine", ("carats",), True, "carats = True: must be an integer"),
    ("parcel.mine", ("carats",), 1.0, "carats = 1.0"),
    ("parcel.mine", ("carats",), MAX_CARATS + 1, "must be between 1 and"),
    ("parcel.mine", ("value",), -1, "value = -1: must be between 0"),
    ("parcel.mine", ("value",), MAX_CENTS + 1, "value"),
    ("parcel.mine", ("date",), "2026-02-30", "date = '2026-02-30': is not a calendar date"),
    ("parcel.mine", ("date",), "2026-2-3", "must be an ISO 8601 date"),
    ("parcel.mine", ("date",), "20260203", "must be an ISO 8601 date"),
    ("parcel.mine", ("date",), "2026-03-02T00:00", "must be an ISO 8601 date"),
    ("parcel.mine", ("origin",), "UK", "origin = 'UK': must be an ISO 3166-1"),
    ("parcel.mine", ("origin",), "bw", "origin = 'bw'"),
    ("parcel.mine", ("origin",), "EU", "origin = 'EU'"),
    ("parcel.mine", ("parcel",), "P 1", "parcel = 'P 1': must be an id"),
    ("parcel.mine", ("parcel",), "", "parcel = ''"),
    ("parcel.mine", ("parcel",), "\u03a11", "must be an id"),  # Greek capital rho
    ("parcel.mine", ("parcel",), "-P1", "must be an id"),
    ("parcel.mine", ("mine",), "M" * 81, "mine = 'MMM"),
    ("actor.register", ("role",), "miner", "role = 'miner': must be one of"),
    ("actor.register", ("name",), " Jwaneng", "must be NFC-normalised with no leading"),
    ("actor.register", ("name",), "Jwa\nneng", "must not contain control"),
    ("actor.register", ("zone",), "Berbe\u0301rati", "NFC"),
    ("actor.register", ("zone",), "", "zone = '': must be text of 1 to 256"),
    ("actor.register", ("licence",), "x" * 257, "must be text of 1 to 256"),
    ("actor.revoke", ("reason",), None, "reason = None"),
    (
        "parcel.split",
        ("outputs",),
        [{"parcel": "P2", "carats": 1, "value": 1}],
        "outputs = (ParcelShare(parcel='P2', carats=1, value=1),): must list at least 2",
    ),
    ("parcel.split", ("outputs", 1, "parcel"), "P2", "outputs[1] = 'P2': duplicates [0]"),
    ("parcel.split", ("outputs", 1, "parcel"), "P1", "outputs[1].parcel = 'P1': is the input"),
    ("parcel.split", ("outputs", 0, "carats"), 0, "outputs[0].carats = 0"),
    ("parcel.split", ("outputs", 0, "grade"), "D", "outputs[0].grade = 'D': unexpected field"),
    ("parcel.split", ("outputs", 0, "value"), DELETE, "outputs[0].value: missing"),
    ("parcel.split", ("outputs", 0), ["P2", 1, 1], "outputs[0] = ['P2', 1, 1]: must be a map"),
    ("parcel.split", ("outputs",), "P2,P3", "outputs = 'P2,P3': must be a list"),
    ("parcel.merge", ("inputs",), ["P1"], "inputs = ('P1',): must list at least 2"),
    ("parcel.merge", ("inputs", 1), "P1", "inputs[1] = 'P1': duplicates [0]"),
    ("parcel.merge", ("output", "parcel"), "P2", "output.parcel = 'P2': is one of the inputs"),
    ("parcel.merge", ("output",), None, "output = None: must be a map"),
    ("export", ("certificate",), "BW-2026-123", "certificate = 'BW-2026-123': must be a"),
    ("export", ("certificate",), "BW-2026-0000123", "zero-padded to exactly 6 digits"),
    ("export", ("certificate",), "XX-2026-000123", "issuer 'XX' is not"),
    ("export", ("certificate",), "bw-2026-000123", "must be a certificate number"),
    ("export", ("certificate",), "EU-2026-000123", "destination = 'EU': is the certificate's"),
    ("export", ("hs_code",), "7102.39", "hs_code = '7102.39': must be one of"),
    ("export", ("hs_code",), 7102.31, "hs_code = 7102.31"),
    ("export", ("destination",), "XK", "destination = 'XK': must be a Participant code"),
    ("export", ("parcels",), [], "parcels = (): must list at least 1"),
    ("export", ("parcels", 1), "P1", "parcels[1] = 'P1': duplicates [0]"),
    ("export", ("origins",), [], "origins = (): must list at least 1"),
    ("export", ("origins", 0), "EU", "origins[0] = 'EU': must be an ISO 3166-1"),
    ("export", ("parcel_count",), 0, "parcel_count = 0: must be between 1"),
    ("export", ("expires",), "2026-03-02", "expires = '2026-03-02': must be after issued"),
    ("export", ("expires",), "2026-03-01", "must be after issued (2026-03-02)"),
    ("export", ("seal",), None, "seal = None: must be text"),
    ("import", ("export_ref", "leaf_hash"), bytes(31), "export_ref.leaf_hash = b'"),
    ("import", ("export_ref", "leaf_hash"), "00" * 32, "export_ref.leaf_hash = '0000"),
    ("import", ("export_ref", "index"), -1, "export_ref.index = -1: must be between 0"),
    ("import", ("export_ref", "origin"), "BW", "export_ref.origin = 'BW': must be a log origin"),
    ("import", ("export_ref", "origin"), "kp example/BW", "must be a log origin"),
    ("import", ("export_ref",), [], "export_ref = []: must be a map"),
    ("import", ("seal_intact",), 1, "seal_intact = 1: must be true or false"),
    ("import", ("discrepancy",), "", "discrepancy = '': must be text"),
    ("import", ("parcels",), [], "parcels = (): must list at least 1"),
    ("import", ("received",), "2026-13-01", "received = '2026-13-01': is not a calendar date"),
    ("export.void", ("export_index",), -3, "export_index = -3"),
    ("export.void", ("export_index",), False, "export_index = False: must be an integer"),
]


@pytest.mark.parametrize(("kind", "path", "value", "message"), BAD)
def test_each_bad_value_is_refused_with_kind_field_and_value(
    kind: str, path: tuple[str | int, ...], value: object, message: str
) -> None:
    """Each invalid value is refused with a RecordError naming the kind, field and value."""
    with pytest.raises(RecordError) as caught:
        parse_record(kind, mutated(kind, path, value))
    assert str(caught.value).startswith(f"{kind}: ")
    assert message in str(caught.value)


def test_long_values_are_shortened_in_messages() -> None:
    """A huge bad value is cut short in the message, so one line stays readable."""
    with pytest.raises(RecordError) as caught:
        parse_record("actor.revoke", mutated("actor.revoke", ("reason",), "x" * 5000))
    assert len(str(caught.value)) < 200


def test_unknown_kind_is_refused() -> None:
    """A kind the ledger does not define is refused, listing the known kinds."""
    with pytest.raises(RecordError, match=r"unknown record kind 'parcel.steal'; known: actor"):
        parse_record("parcel.steal", {})


def test_a_body_that_is_not_a_map_is_refused() -> None:
    """A body that is a list rather than a map is refused naming the kind."""
    with pytest.raises(RecordError, match=r"^export: body = \[\]: must be a map"):
        parse_record("export", [])  # type: ignore[arg-type]


def test_record_errors_are_ledger_errors() -> None:
    """Field errors are RecordErrors, so the CLI's single LedgerError handler prints them."""
    assert issubclass(RecordFieldError, RecordError)
    assert issubclass(QuantityError, RecordError)
    assert issubclass(RecordError, LedgerError)


def test_constructing_an_invalid_record_directly_is_refused() -> None:
    """Records built in code are checked like decoded ones: an invalid one cannot exist."""
    with pytest.raises(RecordFieldError, match=r"^parcel share: carats = 0"):
        ParcelShare("P1", 0, 1)
    share = ParcelShare("P2", 1, 1)
    with pytest.raises(RecordFieldError, match=r"outputs = \[.*must be a tuple"):
        ParcelSplit("P1", [share, ParcelShare("P3", 1, 1)])  # type: ignore[arg-type]
    with pytest.raises(RecordFieldError, match=r"output = 'P3': must be a parcel share"):
        ParcelMerge(("P1", "P2"), "P3")  # type: ignore[arg-type]


def test_records_are_immutable_and_hashable() -> None:
    """Records are frozen values that can be set members and dict keys."""
    record = ParcelMerge.from_body(VALID["parcel.merge"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.output = ParcelShare("P9", 1, 1)  # type: ignore[misc]
    assert record in {record}


def test_export_knows_its_issuer_and_whether_it_is_mixed() -> None:
    """An export reports its issuer from the certificate number and is mixed with 2+ origins."""
    export = parse_record("export", VALID["export"])
    assert isinstance(export, Export)
    assert (export.issuer, export.mixed) == ("BW", False)
    mixed = parse_record("export", mutated("export", ("origins",), ["BW", "ZA"]))
    assert isinstance(mixed, Export) and mixed.mixed


@pytest.mark.parametrize(
    ("number", "issuer"),
    [("BW-2026-000123", "BW"), ("EU-2024-1234567", "EU"), ("AE-2023-000000", "AE")],
)
def test_certificate_issuer_reads_the_prefix(number: str, issuer: str) -> None:
    """The issuer of a well-formed certificate number is its two-letter prefix."""
    assert certificate_issuer(number) == issuer


@pytest.mark.parametrize(
    "number",
    [
        "BW-2026-00123",
        "BW-2026-0000123",
        "ZZ-2026-000123",
        "BW-26-000123",
        "BW2026000123",
        " BW-2026-000123",
        "BW-2026-000123\n",
        "",
    ],
)
def test_certificate_issuer_refuses_malformed_numbers(number: str) -> None:
    """A certificate number in any other spelling is refused, so each number has one form."""
    with pytest.raises(RecordError, match=r"certificate number"):
        certificate_issuer(number)


# -- quantities -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hundredths"),
    [
        ("1234.56", 123456),
        ("1234.5", 123450),
        ("1234", 123400),
        ("0.01", 1),
        ("0", 0),
        ("007.10", 710),
        (" 12.00 ", 1200),
        ("10000000000", MAX_CARATS),
    ],
)
def test_parse_carats_reads_plain_decimals(text: str, hundredths: int) -> None:
    """Carats typed with up to two decimals become exact hundredths of a carat."""
    assert parse_carats(text) == hundredths


@pytest.mark.parametrize(
    "text",
    [
        "1234.567",
        "-1",
        "+1",
        "1e3",
        "1E2",
        "nan",
        "inf",
        "1,234.56",
        "1234,56",
        "1 234",
        "1.",
        ".5",
        "",
        "  ",
        "0x10",
        "١٢٣",
        "1_000",
        "10000000000.01",
        "9" * 30,
    ],
)
def test_parse_carats_refuses_anything_else(text: str) -> None:
    """Extra decimals, signs, exponents, separators and foreign digits are refused."""
    with pytest.raises(QuantityError, match=r"carats"):
        parse_carats(text)


def test_parse_refuses_non_text() -> None:
    """A float handed to the parser is refused rather than rounded."""
    with pytest.raises(QuantityError, match=r"must be given as text, got float"):
        parse_carats(12.5)  # type: ignore[arg-type]
    with pytest.raises(QuantityError, match=r"got int"):
        parse_usd(100)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("250000", 25_000_000),
        ("250000.50", 25_000_050),
        ("250000.5", 25_000_050),
        ("0.99", 99),
        ("0", 0),
    ],
)
def test_parse_usd_reads_dollars_as_cents(text: str, cents: int) -> None:
    """Dollar amounts with up to two decimals become exact US cents."""
    assert parse_usd(text) == cents


@pytest.mark.parametrize("text", ["$250000", "250,000", "250000.505", "-5", "1e6", "US$1"])
def test_parse_usd_refuses_anything_else(text: str) -> None:
    """Currency signs, separators, a third decimal, signs and exponents are refused."""
    with pytest.raises(QuantityError, match=r"US\$ value"):
        parse_usd(text)


def test_formatters_show_two_decimals() -> None:
    """Formatted quantities always carry two decimals and keep a negative sign."""
    assert format_carats(123456) == "1234.56"
    assert format_carats(5) == "0.05"
    assert format_carats(-5) == "-0.05"
    assert format_usd(25_000_050) == "250000.50"
    assert format_usd(0) == "0.00"


@given(st.integers(0, MAX_CARATS), st.integers(0, MAX_CENTS))
def test_formatting_and_parsing_are_inverse(hundredths: int, cents: int) -> None:
    """What the CLI prints, the CLI reads back as the same integer."""
    assert parse_carats(format_carats(hundredths)) == hundredths
    assert parse_usd(format_usd(cents)) == cents
