"""Audit findings: their kinds and rule names, what one log's audit covered, and the tally.

Findings stream to the caller's sink as they are found; the tally only counts them per log
and per rule, so memory stays flat however many there are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.errors import LedgerError
from ledger.records import (
    ActorRegister,
    ActorRevoke,
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
)

INTEGRITY: Final = "integrity"
VIOLATION: Final = "violation"
UNVERIFIABLE: Final = "unverifiable"
#: Rule names of findings that are not a `RuleViolation` subclass.
LOG_INTEGRITY: Final = "log.integrity"
ROSTER_LISTED: Final = "roster.listed"
RECORD_WELL_FORMED: Final = "record.well-formed"
EXPORT_OVERDUE: Final = "export.overdue"
#: A log held here short of a checkpoint a sync here verified (the pull stopped midway).
LOG_HELD_WHOLE: Final = "log.held-whole"

Value = str | int
FindingSink = Callable[["Finding"], None]


class AuditError(LedgerError):
    """An audit that cannot run as asked: an origin not held, a bad as-of date."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong: what kind, which rule, at which entry of which log, and the values."""

    kind: str  # INTEGRITY | VIOLATION | UNVERIFIABLE
    rule: str
    origin: str
    index: int
    message: str
    values: tuple[tuple[str, Value], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready map of the finding."""
        return {
            "kind": self.kind,
            "rule": self.rule,
            "origin": self.origin,
            "index": self.index,
            "message": self.message,
            "values": dict(self.values),
        }


@dataclass(frozen=True, slots=True)
class LogAudit:
    """What the audit covered of one log: its size, the entries the rules replayed, findings."""

    origin: str
    size: int
    replayed: int
    findings: int
    intact: bool


@dataclass
class _Tally:
    """Findings counted as they stream past."""

    sink: FindingSink | None
    by_origin: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)

    def __call__(self, finding: Finding) -> None:
        self.by_origin[finding.origin] += 1
        self.by_rule[finding.rule] += 1
        if self.sink is not None:
            self.sink(finding)


def _values(record: Record) -> tuple[tuple[str, Value], ...]:
    """The ids and figures a finding about `record` names."""
    match record:
        case ActorRegister() | ActorRevoke():
            return (("actor", record.actor),)
        case ParcelMine():
            return (("parcel", record.parcel), ("carats", record.carats))
        case ParcelSplit():
            outputs = " ".join(s.parcel for s in record.outputs)
            carats = sum(s.carats for s in record.outputs)
            return (("parcel", record.input), ("outputs", outputs), ("carats", carats))
        case ParcelMerge():
            o = record.output
            return (
                ("parcels", " ".join(record.inputs)),
                ("output", o.parcel),
                ("carats", o.carats),
            )
        case Export():
            return (
                ("certificate", record.certificate),
                ("destination", record.destination),
                ("parcels", " ".join(record.parcels)),
                ("carats", record.carats),
            )
        case Import():
            ref = record.export_ref
            return (
                ("certificate", record.certificate),
                ("export", f"{ref.origin} entry {ref.index}"),
                ("carats", record.carats),
            )
        case ExportVoid():
            return (("certificate", record.certificate), ("export_index", record.export_index))
