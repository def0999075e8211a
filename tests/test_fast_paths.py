"""The fast paths of the custody rules agree with the reference paths they stand in for.

Records are checked, encoded and decoded by code compiled per class from ``SCHEMA``
(`ledger.fields`), built by a slot-setting ``__init__`` (`quick_init`), and indexed through
cursors (`LmdbTables`); the audit keeps only the state the rules read. Each must give
exactly what the plain version gives: the same refusals and messages, the same maps, the
same rows.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.audit import _day
from ledger.audit_entries import _verified_fields
from ledger.custody_index import (
    INDEX_DBS,
    Foreign,
    Index,
    LmdbTables,
    MemoryTables,
    apply_record,
)
from ledger.encoding import pack_canonical
from ledger.entry import encode_payload, parse_entry, sign_entry
from ledger.fields import (
    Body,
    RecordFieldError,
    certificate_problem,
    is_participant_code,
    text_problem,
)
from ledger.keys import Signer
from ledger.quick_init import quick_init
from ledger.records import (
    ActorRegister,
    Export,
    ExportRef,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.rules import IMPORTED, CertificateState
from tests.strategies import records

#: Values a field may be given instead of a good one: wrong types, bad text, bad codes,
#: duplicates, nested parts where scalars belong and the other way round.
ODD_VALUES: list[Any] = [
    None,
    -1,
    0,
    1,
    True,
    1.5,
    2**70,
    "",
    " x",
    "x" * 300,
    "a\x00b",
    "cafe\u0301",
    "x\u200b",
    "2026-02-30",
    "2026-03-02",
    "BW",
    "EU",
    "ZZ",
    "BW-2026-0000001",
    "BW-2026-1000001",
    "XX-2026-000001",
    "kp.example/BW",
    "7102.31",
    b"x",
    bytes(32),
    [],
    (),
    ("P-1",),
    ("P-1", "P-1"),
    ("BW", "BW"),
    ("P-1", 3),
    ParcelShare("P-1", 100, 5),
    (ParcelShare("P-1", 1, 1), ParcelShare("P-1", 2, 1)),
    (ParcelShare("P-1", 1, 1), ParcelShare("P-2", 2, 1)),
    ExportRef("kp.example/BW", 3, bytes(32)),
]


def unchecked(cls: type[Body], values: dict[str, Any]) -> Body:
    """An instance of `cls` holding `values`, made without running any check."""
    made = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(made, name, value)
    return made


def refusal(check: Any, record: Body) -> str | None:
    """The RecordFieldError message `check(record)` raises, or None when it passes."""
    try:
        check(record)
    except RecordFieldError as e:
        return str(e)
    return None


@given(records(), st.data())
def test_compiled_checks_refuse_exactly_what_the_schema_loop_refuses(
    record: Record, data: st.DataObject
) -> None:
    """With one or two fields replaced by odd values, the compiled ``__post_init__`` and
    `Body`'s loop over ``SCHEMA`` refuse the same field with the same message."""
    values = {name: getattr(record, name) for name in record.SCHEMA}
    for name in data.draw(st.lists(st.sampled_from(list(values)), min_size=1, max_size=2)):
        values[name] = data.draw(st.sampled_from(ODD_VALUES))
    odd = unchecked(type(record), values)
    assert refusal(type(record).__post_init__, odd) == refusal(Body.__post_init__, odd)


@given(records())
def test_compiled_to_body_is_the_schema_map_in_key_order(record: Record) -> None:
    """The compiled ``to_body`` equals `Body.to_body` (the loop), keys sorted, and decodes back."""
    body = record.to_body()
    assert body == Body.to_body(record)
    assert list(body) == sorted(record.SCHEMA)
    assert type(record).from_body(body) == record


@given(records(), st.booleans())
def test_values_kept_in_a_scratch_store_give_the_record_back(record: Record, tuples: bool) -> None:
    """The compiled ``to_values`` equals `Body.to_values` (the loop); packed and unpacked
    (lists as lists or tuples), then ``_from_values``,
    gives the record back: equal, hashing alike, each field of the type `from_body` gives."""
    assert record.to_values() == Body.to_values(record)  # compiled == the schema loop
    row = msgpack.unpackb(pack_canonical(record.to_values()), raw=False, use_list=not tuples)
    again = type(record)._from_values(row)
    assert again == record and hash(again) == hash(record)
    assert again.to_body() == record.to_body()
    for name in record.SCHEMA:
        assert type(getattr(again, name)) is type(getattr(record, name))


def test_a_refused_nested_part_names_its_path() -> None:
    """Decoding stops at the first bad list or map in SCHEMA order and names the path."""
    body = ParcelSplit("P-1", (ParcelShare("P-2", 1, 1), ParcelShare("P-3", 1, 1))).to_body()
    body["outputs"][1]["carats"] = 0
    with pytest.raises(RecordFieldError, match=r"parcel.split: outputs\[1\].carats = 0"):
        ParcelSplit.from_body(body)


# -- quick_init -----------------------------------------------------------------------


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    """A frozen value with a default and a check, as records and parcel states are."""

    name: str
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count {self.count} is negative")


def test_quick_init_keeps_the_dataclass_contract() -> None:
    """Positional and keyword arguments, defaults, the check, equality, hashing,
    `replace` and frozenness are those of the plain dataclass."""
    assert _Checked("a") == _Checked(name="a", count=1) == _Checked("a", 1)
    assert hash(_Checked("a")) == hash(_Checked("a", 1))
    assert dataclasses.replace(_Checked("a"), count=3) == _Checked("a", 3)
    with pytest.raises(ValueError, match="count -2 is negative"):
        _Checked("a", -2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Checked("a").count = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Checked()  # type: ignore[call-arg]


def test_quick_init_leaves_a_class_it_cannot_speed_up() -> None:
    """A field with a default factory keeps the ``__init__`` dataclasses wrote."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Listed:
        items: list[int] = dataclasses.field(default_factory=list)

    plain = Listed.__init__
    assert quick_init(Listed).__init__ is plain
    assert Listed().items == []


# -- scalar checks --------------------------------------------------------------------


def reference_text_problem(v: object, max_len: int) -> str | None:
    """`text_problem` as specified: length, NFC and no surrounding spaces, no controls."""
    if not isinstance(v, str) or not 0 < len(v) <= max_len:
        return f"must be text of 1 to {max_len} characters"
    if v != v.strip() or not unicodedata.is_normalized("NFC", v):
        return "must be NFC-normalised with no leading or trailing spaces"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in v):
        return "must not contain control or format characters"
    return None


@given(st.text(max_size=12) | st.sampled_from(["a\x7f", "\tA", "A ", "é", "e\u0301", "~"]))
def test_text_check_fast_path_agrees_with_the_specification(value: str) -> None:
    """Printable ASCII takes a shortcut; every text gets the answer the full check gives."""
    assert text_problem(value, 8) == reference_text_problem(value, 8)


@given(
    st.from_regex(r"[A-Z]{2}-[0-9]{4}-[0-9]{5,11}", fullmatch=True)
    | st.from_regex(r"(EU|BW|ZZ|bw)-2026-0?[0-9]{6}", fullmatch=True)
    | st.text(max_size=16)
)
def test_certificate_check_fast_path_agrees_with_the_rule(number: str) -> None:
    """Issuer a Participant code, a year, a serial of six digits or more without padding."""
    parts = number.split("-")
    good = (
        len(parts) == 3
        and len(parts[0]) == 2
        and parts[0].isupper()
        and parts[0].isascii()
        and is_participant_code(parts[0])
        and len(parts[1]) == 4
        and all(part.isascii() and part.isdigit() for part in parts[1:])
        and 6 <= len(parts[2]) <= 10
        and not (len(parts[2]) > 6 and parts[2].startswith("0"))
    )
    assert (certificate_problem(number) is None) == good


@given(
    st.text(max_size=20),
    st.integers(0, 400),
    st.integers(0, 2**44),
    st.sampled_from(["parcel.mine", "import"]),
)
def test_audit_reads_a_verified_entry_as_the_strict_parser_does(
    note: str, padding: int, time_ms: int, kind: str
) -> None:
    """The audit's unpacking of a verified entry gives the time, kind and body the strict
    parser gives, whether the payload's header is a bin8 or (from 256 bytes) a bin16."""
    body = {"note": note + "x" * padding}
    payload = encode_payload("kp.example/BW", 7, bytes(32), time_ms, kind, body)
    raw = sign_entry(_SIGNER, payload)
    entry = parse_entry(raw)
    assert _verified_fields(raw) == (entry.time_ms, entry.kind, entry.body)


_SIGNER = Signer.generate("kp.example/BW")


@given(st.integers(0, 2**44))
def test_audit_day_is_the_utc_calendar_date(time_ms: int) -> None:
    """The audit's cached day of an entry time is its UTC date."""
    expected = datetime.fromtimestamp(time_ms / 1000, tz=UTC).date().isoformat()
    assert _day(time_ms) == expected


# -- index storage --------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lmdb.Environment]:
    """An LMDB environment with the custody databases (each example aborts its writes)."""
    path = tmp_path_factory.mktemp("tables")
    environment = lmdb.open(str(path), map_size=1 << 26, max_dbs=len(INDEX_DBS))
    yield environment
    environment.close()


KEYS = st.sampled_from([b"a", b"ab", b"b", b"c\x00", b"zz"])
OPS = st.lists(
    st.tuples(st.sampled_from(["put", "delete", "get"]), st.sampled_from(INDEX_DBS[:3]), KEYS),
    max_size=25,
)


@given(OPS)
def test_cursor_tables_behave_like_memory_tables(env: lmdb.Environment, ops: list[Any]) -> None:
    """Gets, puts, deletes (of missing keys too) and scans through `LmdbTables`' cursors
    give what plain dicts give."""
    dbs = {name: env.open_db(name.encode()) for name in INDEX_DBS}
    memory = MemoryTables()
    txn = env.begin(write=True, buffers=False)
    try:
        stored = LmdbTables(txn, dbs)
        for n, (op, db, key) in enumerate(ops):
            if op == "put":
                value = b"%d" % n
                stored.put(db, key, value)
                memory.put(db, key, value)
            elif op == "delete":
                stored.delete(db, key)
                memory.delete(db, key)
            assert stored.get(db, key) == memory.get(db, key)
            assert stored.getter(db)(key) == memory.getter(db)(key)
        for db in INDEX_DBS[:3]:
            assert list(stored.scan(db, b"")) == list(memory.scan(db, b""))
    finally:
        txn.abort()


def _trade() -> list[Record]:
    """Actors, production, a split, a merge, an export and its void."""
    mine = ActorRegister("M-1", "mine", "Mine", "L-1", "Jwaneng", "Jwaneng")
    exporter = ActorRegister("E-1", "exporter", "Exporter", "L-2", "Gaborone", "Gaborone")
    mined = [ParcelMine(f"P-{i}", "M-1", 1000, 500, "2026-03-02", "BW") for i in range(3)]
    split = ParcelSplit("P-0", (ParcelShare("P-0a", 400, 1), ParcelShare("P-0b", 600, 1)))
    merge = ParcelMerge(("P-1", "P-2"), ParcelShare("P-M", 2000, 2))
    export = Export(
        "BW-2026-000001",
        "Ministry",
        "E-1",
        "Buyer",
        "IN",
        ("P-0a", "P-M"),
        2400,
        900,
        2,
        "7102.31",
        ("BW",),
        "2026-03-05",
        "2026-06-05",
        "S-1",
    )
    void = ExportVoid("BW-2026-000001", 7, "cancelled")
    return [mine, exporter, *mined, split, merge, export, void]


def test_an_index_without_listings_keeps_the_same_rule_state() -> None:
    """The audit's scratch index (no listings) holds the same actors, parcels and
    certificates as a full one, and nothing in the listings or the foreign proofs."""
    full, bare = MemoryTables(), MemoryTables()
    with_lists, without = Index(full, b"L1"), Index(bare, b"L1", listings=False)
    for index, record in enumerate(_trade()):
        for ix in (with_lists, without):
            apply_record(ix, index, record, "kp.example/BW", lambda _o, _i: None, None)
    sent = next(r for r in _trade() if isinstance(r, Export))
    ref = ExportRef("kp.example/BW", 7, bytes(range(32)))
    foreign = Foreign(ref.origin, ref.index, ref.leaf_hash, sent, b"tlog-proof text")
    shares = (ParcelShare("IN-1", sent.carats, sent.parcel_count),)
    number, carats = sent.certificate, sent.carats
    received = Import(ref, number, "I-1", shares, carats, 1, "2026-03-09", True, None)
    for ix in (Index(full, b"L2"), Index(bare, b"L2", listings=False)):
        apply_record(ix, 0, received, "kp.example/IN", lambda _o, _i: foreign, None)
    kept_by_readers = ("parcel_log", "actor_log", "holding", "awaiting", "foreign_proofs")
    for db in INDEX_DBS:
        if db in kept_by_readers:
            assert not bare.rows[db]
        else:
            assert full.rows[db] == bare.rows[db]
    assert all(full.rows[db] for db in ("parcel_log", "actor_log", "holding", "foreign_proofs"))
    assert with_lists.parcel("P-M") == without.parcel("P-M")
    expected = CertificateState(
        number,
        ref.origin,
        ref.index,
        ref.leaf_hash,
        sent.destination,
        carats,
        sent.value,
        sent.issued,
        sent.expires,
        IMPORTED,
        0,
        sent.parcels,
    )
    assert Index(full, b"L2").certificate(number) == expected
    assert Index(bare, b"L2").certificate(number) == expected


def test_cursor_index_rows_equal_memory_rows(tmp_path: Path) -> None:
    """The same records indexed through LMDB cursors and into dicts store the same bytes."""
    environment = lmdb.open(str(tmp_path / "ix"), map_size=1 << 24, max_dbs=len(INDEX_DBS))
    dbs = {name: environment.open_db(name.encode()) for name in INDEX_DBS}
    memory = MemoryTables()
    with environment.begin(write=True, buffers=False) as txn:
        stored = Index(LmdbTables(txn, dbs), b"L1")
        kept = Index(memory, b"L1")
        for index, record in enumerate(_trade()):
            for ix in (stored, kept):
                apply_record(ix, index, record, "kp.example/BW", lambda _o, _i: None, None)
        assert LmdbTables(txn, dbs).dump(b"L1") == memory.dump(b"L1")
        assert stored.parcel("P-0a") == kept.parcel("P-0a")
    environment.close()
