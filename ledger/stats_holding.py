"""How much of each log a node holds, and what that leaves the statistics unable to tell.

A node's tables are only as whole as the logs it holds. A log is held only in part
(`ledger.holding`) when a sync here refused an entry for breaking a custody rule
(`ledger.refusals`) or verified a checkpoint its owner signed of more entries than are held
(a pull that stopped midway); a Participant whose log was never pulled is not held at all;
a log pulled without the roster (an auditor's verbatim copy) has no custody index, so which
of its entries the rules accept is not known here. Pure: `HeldLog`s come in, sentences for
people go out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger.holding import Holding


@dataclass(frozen=True, slots=True)
class HeldLog:
    """One log as held here (`holding`), and whether the custody rules were applied to it."""

    holding: Holding
    judged: bool = True  #: custody rules applied here (the custody index knows what they accept)

    @property
    def origin(self) -> str:
        """The log's origin."""
        return self.holding.origin

    @property
    def size(self) -> int:
        """Entries held, 0 .. size - 1."""
        return self.holding.size

    @property
    def participant(self) -> str:
        """The log's Participant code: ``kp.example/CF`` -> ``CF``."""
        return self.origin.rpartition("/")[2]

    @property
    def partial(self) -> bool:
        """True when the owner's log goes on past what is held here (a refused entry, or a
        checkpoint signed of more entries)."""
        return self.holding.in_part


def _entries(n: int) -> str:
    return f"{n:,} {'entry' if n == 1 else 'entries'}"


def _exports(n: int) -> str:
    return f"{n:,} {'export' if n == 1 else 'exports'}"


def _stop(held: Holding, code: str) -> str:
    """Where and why log `held` (of Participant `code`) stops short of its owner's, in words:
    the refused entry and its rule, or else the entries held and the size signed."""
    refused = held.refusal
    if refused is None:
        return held.stopped_short(code)
    signed = ""
    if held.signed_at_least is not None:
        signed = f" of at least {_entries(held.signed_at_least)} (its signed checkpoint)"
    return (
        f"{code}'s log is held here only to entry {held.size - 1}{signed}: entry "
        f"{held.size} was refused for rule {refused.rule}"
    )


def holding_notes(
    logs: Sequence[HeldLog], not_held: Sequence[str], unjudged: Mapping[str, int]
) -> list[str]:
    """One sentence per log held in part, not held, or held without the custody rules."""
    notes = []
    for log in logs:
        code = log.participant
        late = unjudged.get(code, 0)
        if log.partial:
            say = f"{_stop(log.holding, code)}. {code}'s figures stop there"
            if late:
                say += (
                    f", and {_exports(late)} to or from {code} cannot be judged overdue "
                    "(the import or void may lie beyond)"
                )
            notes.append(say + ".")
        if not log.judged:
            notes.append(
                f"{code}'s log is held verbatim, without the custody rules applied here: its "
                "figures count every entry, even one the rules would refuse (`kimberley audit` "
                "checks them)."
            )
    for code in not_held:
        say = f"{code}'s log is not held here: its production, exports and imports are missing"
        late = unjudged.get(code, 0)
        if late:
            say += f", and {_exports(late)} to {code} cannot be judged overdue"
        notes.append(say + ".")
    return notes
