"""How much of each log a node holds, and what that leaves the statistics unable to tell.

A node's tables are only as whole as the logs it holds. A sync that refuses an entry for
breaking a custody rule holds that log only up to it (`ledger.refusals`); a Participant
whose log was never pulled is not held at all; a log pulled without the roster (an
auditor's verbatim copy) has no custody index, so which of its entries the rules accept
is not known here. Pure: `HeldLog`s come in, sentences for people go out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HeldLog:
    """One log as held here: entries [0, size), and why it stops there if a sync refused more."""

    origin: str
    size: int  #: entries held, 0 .. size - 1
    judged: bool = True  #: custody rules applied here (the custody index knows what they accept)
    refused_rule: str | None = None  #: entry `size` was refused by a sync here for this rule
    refused_reason: str = ""
    signed_size: int | None = None  #: size of the checkpoint the refused entry came under

    @property
    def participant(self) -> str:
        """The log's Participant code: ``kp.example/CF`` -> ``CF``."""
        return self.origin.rpartition("/")[2]

    @property
    def partial(self) -> bool:
        """True when the owner's log goes on past what is held here (a refused entry)."""
        return self.refused_rule is not None


def _entries(n: int) -> str:
    return f"{n:,} {'entry' if n == 1 else 'entries'}"


def _exports(n: int) -> str:
    return f"{n:,} {'export' if n == 1 else 'exports'}"


def holding_notes(
    logs: Sequence[HeldLog], not_held: Sequence[str], unjudged: Mapping[str, int]
) -> list[str]:
    """One sentence per log held in part, not held, or held without the custody rules."""
    notes = []
    for log in logs:
        code = log.participant
        late = unjudged.get(code, 0)
        if log.partial:
            signed = ""
            if log.signed_size is not None:
                signed = f" of at least {_entries(log.signed_size)} (its signed checkpoint)"
            say = (
                f"{code}'s log is held here only to entry {log.size - 1}{signed}: entry "
                f"{log.size} was refused for rule {log.refused_rule}. {code}'s figures stop there"
            )
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
