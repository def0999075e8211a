"""The cross-log checks: per certificate number, over the few facts kept of its exports and imports.

Pure: the facts come in, findings go out. A certificate is imported at most once on all the
logs, an import's export was not voided, and an export neither imported nor voided within
``overdue_days`` of its issue is overdue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ledger.audit_findings import EXPORT_OVERDUE, UNVERIFIABLE, VIOLATION, Finding
from ledger.quick_init import quick_init
from ledger.rules import CertificateAlreadyImported, CertificateVoided
from ledger.words import counted


@quick_init
@dataclass(frozen=True, slots=True)
class ExportFact:
    """What the cross-log checks need of one export entry."""

    certificate: str
    origin: str
    index: int
    destination: str
    issued: str
    flagged: bool  # the export itself broke a rule (already reported)
    void_index: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class ImportFact:
    """What the cross-log checks need of one import entry."""

    certificate: str
    origin: str
    index: int
    export_origin: str
    export_index: int
    time_ms: int
    flagged: bool  # the import itself broke a rule (already reported)
    verified: bool  # checked against the export entry (False: that log is not held)


# -- the cross-log checks (pure) -------------------------------------------------------


def cross_check(
    exports: Sequence[ExportFact],
    imports: Sequence[ImportFact],
    *,
    audited: frozenset[str],
    as_of: str,
    overdue_days: int,
    cut_short: frozenset[str] = frozenset(),
) -> list[Finding]:
    """Findings over every export and import entry of one certificate number.

    Entries already reported by the rules are left out, except that any import, even a
    reported one, confirms that the shipment arrived. `audited` holds the Participant
    codes whose logs were replayed: an export is overdue only when its destination's was.
    `cut_short` holds those whose log was not replayed to its owner's end (a fault, a key
    not on the roster, an entry a sync here refused): when the export's destination or its
    exporter is one, the import or the void may lie past where the replay stopped, so the
    export is only unverifiable, not an overdue violation of its exporter.
    """
    if _received_once(exports, imports):  # the usual certificate: nothing to find
        return []
    accepted = sorted(
        (i for i in imports if not i.flagged), key=lambda i: (i.time_ms, i.origin, i.index)
    )
    found = [_twice(later, accepted[0]) for later in accepted[1:]]
    voided = [_voided(i, exports) for i in accepted[:1] if i.verified]
    confirmed = {(i.export_origin, i.export_index) for i in imports}
    late = [
        _overdue(e, as_of, overdue_days, _short(e, cut_short))
        for e in exports
        if not (e.flagged or e.void_index is not None or (e.origin, e.index) in confirmed)
        and e.destination in audited
    ]
    return found + [f for f in (*voided, *late) if f is not None]


def _received_once(exports: Sequence[ExportFact], imports: Sequence[ImportFact]) -> bool:
    """True for one export and one import of it, unvoided: no second import, no voided
    export imported, nothing overdue, so `cross_check` has no finding to make."""
    if len(exports) != 1 or len(imports) != 1:
        return False
    e, i = exports[0], imports[0]
    return e.void_index is None and e.index == i.export_index and e.origin == i.export_origin


def _twice(later: ImportFact, first: ImportFact) -> Finding:
    """A certificate imported again, on any log, after its first import."""
    return Finding(
        VIOLATION,
        CertificateAlreadyImported.rule,
        later.origin,
        later.index,
        f"import: certificate {later.certificate!r} was already imported on {first.origin} "
        f"at entry {first.index}",
        (
            ("certificate", later.certificate),
            ("first_import", f"{first.origin} entry {first.index}"),
        ),
    )


def _voided(imp: ImportFact, exports: Sequence[ExportFact]) -> Finding | None:
    """An import of a certificate its exporter voided (before or after the import)."""
    for e in exports:
        if (e.origin, e.index) == (
            imp.export_origin,
            imp.export_index,
        ) and e.void_index is not None:
            return Finding(
                VIOLATION,
                CertificateVoided.rule,
                imp.origin,
                imp.index,
                f"import: certificate {imp.certificate!r} was voided on {e.origin} at entry "
                f"{e.void_index}",
                (
                    ("certificate", imp.certificate),
                    ("void", f"{e.origin} entry {e.void_index}"),
                    ("export", f"{e.origin} entry {e.index}"),
                ),
            )
    return None


def _short(e: ExportFact, cut_short: frozenset[str]) -> str | None:
    """The Participant whose log, cut short, may hold what settles `e`: its destination's
    (the import) or its exporter's (a void); None when both were replayed to the end."""
    for code in (e.destination, e.origin.rpartition("/")[2]):
        if code in cut_short:
            return code
    return None


def _overdue(e: ExportFact, as_of: str, overdue_days: int, short: str | None) -> Finding | None:
    """An export neither imported nor voided more than `overdue_days` after its issue;
    unverifiable when the log of `short` was not replayed to its end."""
    days = (date.fromisoformat(as_of) - date.fromisoformat(e.issued)).days
    if days <= overdue_days:
        return None
    why = "" if short is None else f"; {short}'s log was not replayed to its end"
    return Finding(
        VIOLATION if short is None else UNVERIFIABLE,
        EXPORT_OVERDUE,
        e.origin,
        e.index,
        f"export: certificate {e.certificate!r} to {e.destination}, issued {e.issued}, is "
        f"neither imported nor voided {counted(days, 'day')} later (as of {as_of}; limit "
        f"{overdue_days})" + why,
        (
            ("certificate", e.certificate),
            ("destination", e.destination),
            ("issued", e.issued),
            ("as_of", as_of),
            ("days", days),
        ),
    )
