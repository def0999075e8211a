"""The audit's temporary LMDB environment: custody state per log and the cross-log facts.

Facts are keyed by certificate number, so the cross-log checks read them one number at a
time and memory stays flat whatever the number of certificates.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields
from operator import attrgetter
from typing import Any, Final

import lmdb
import msgpack

from ledger.audit_facts import ExportFact, ImportFact
from ledger.audit_findings import AuditError
from ledger.custody_index import INDEX_DBS
from ledger.encoding import pack_canonical

_FACT_DBS: Final = ("x_exports", "x_imports")
#: The exports replayed so far, by origin and index: leaf hash and field values
#: (`ExportReader`).
REPLAYED_EXPORTS: Final = "replayed_exports"


class ScratchError(AuditError):
    """The audit's scratch environment failed (its disk full, say): the audit cannot go on,
    and nothing held is touched."""


class _Scratch:
    """The temporary LMDB environment: custody state per log and the cross-log facts."""

    def __init__(self, path: str) -> None:
        self.path = path
        names = (*INDEX_DBS, *_FACT_DBS, REPLAYED_EXPORTS)
        try:
            self.env = lmdb.open(
                path, map_size=1 << 40, max_dbs=len(names), sync=False, metasync=False, lock=False
            )
            self.dbs = {name: self.env.open_db(name.encode()) for name in names}
        except lmdb.Error as e:
            raise self.failed(e) from e

    def failed(self, e: lmdb.Error) -> ScratchError:
        """The error for `e` raised by the scratch, named as such (not as the store's)."""
        where = os.path.dirname(self.path)
        return ScratchError(
            f"the audit's scratch store in {where} failed ({e}); is that disk full? "
            "Give the audit a scratch directory with room"
        )

    def begin(self, *, write: bool = False) -> lmdb.Transaction:
        """A transaction on the scratch (ScratchError if it cannot begin)."""
        try:
            return self.env.begin(write=write)
        except lmdb.Error as e:
            raise self.failed(e) from e

    def commit(self, txn: lmdb.Transaction) -> None:
        """Commit `txn`: where the scratch's pages reach its disk (ScratchError if they cannot)."""
        try:
            txn.commit()
        except lmdb.Error as e:
            raise self.failed(e) from e

    def put_fact(self, txn: lmdb.Transaction, fact: ExportFact | ImportFact) -> None:
        """Store an export's or import's facts under its certificate number."""
        db = "x_exports" if isinstance(fact, ExportFact) else "x_imports"
        txn.put(_fact_key(fact.certificate, fact.origin, fact.index), _pack(fact), db=self.dbs[db])

    def facts(self, txn: lmdb.Transaction, db: str) -> Iterator[tuple[str, list[Any]]]:
        """Rows of `db` grouped by certificate number, in number order."""
        group: list[Any] = []
        current = b""
        with txn.cursor(db=self.dbs[db]) as cur:
            for raw_key, value in cur:
                key = bytes(raw_key)  # bytes already (no buffers): bytes() returns it as is
                number = key[: key.find(b"\x00")]
                if number != current:
                    if group:
                        yield current.decode(), group
                        group = []
                    current = number
                group.append(_unpack(bytes(value)))
        if group:
            yield current.decode(), group


def _fact_key(certificate: str, origin: str, index: int) -> bytes:
    return certificate.encode() + b"\x00" + origin.encode() + b"\x00" + index.to_bytes(8, "big")


def _pack(fact: ExportFact | ImportFact) -> bytes:
    if isinstance(fact, ExportFact):
        return pack_canonical(("e", *_EXPORT_FACT_FIELDS(fact)))
    return pack_canonical(("i", *_IMPORT_FACT_FIELDS(fact)))


_EXPORT_FACT_FIELDS: Final = attrgetter(*(f.name for f in fields(ExportFact)))
_IMPORT_FACT_FIELDS: Final = attrgetter(*(f.name for f in fields(ImportFact)))


def _unpack(data: bytes) -> ExportFact | ImportFact:
    kind, *fields = msgpack.unpackb(data, raw=False)
    return ExportFact(*fields) if kind == "e" else ImportFact(*fields)


def _merge_groups(
    a: Iterator[tuple[str, list[Any]]], b: Iterator[tuple[str, list[Any]]]
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Pair two by-number group streams: (rows of a, rows of b) for every number in either."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            yield x[1], []
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            yield [], y[1]
            y = next(b, None)
        else:
            yield x[1], y[1]
            x, y = next(a, None), next(b, None)
