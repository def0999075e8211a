"""What the audit reads of an entry `verify_logs` has already checked: its fields, its UTC day.

Both sit on the per-entry path, so they only unpack and convert: the checks were done.
"""

from __future__ import annotations

import functools
from datetime import date, timedelta
from typing import Any, Final

import msgpack


def _verified_fields(raw: bytes) -> tuple[int, str, dict[str, Any]]:
    """Time, kind and body of an entry `verify_logs` has just checked (canonical, well formed).

    `ledger.entry.parse_entry` would check all of it again; this only unpacks.
    """
    payload = msgpack.unpackb(raw, raw=False)[0]
    _, _, _, _, time_ms, kind, body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return time_ms, kind, body


_EPOCH: Final = date(1970, 1, 1)


def _day(time_ms: int) -> str:
    """The UTC date of `time_ms` (Unix time: every day is 86,400,000 ms)."""
    return _utc_date(time_ms // 86_400_000)


@functools.lru_cache(maxsize=1024)
def _utc_date(days: int) -> str:
    """The date `days` after 1970-01-01 (entries of one log fall on few days: cached)."""
    return (_EPOCH + timedelta(days=days)).isoformat()
