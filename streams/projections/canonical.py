"""Canonical encoding and hashing of projection rows, for byte-identical replay checks.

Rows are encoded as compact JSON arrays with mappings as sorted ``[key, value]`` pairs and
floats in Python's shortest round-trip form (``repr``), sorted by their primary key in code
point order (never a database collation), one row per line, and hashed with SHA-256. Equal
state gives equal hashes in every process and for every store adapter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState
from streams.projections.windows import WindowAggregate

__all__ = ["canonical_row", "hash_rows"]

Row = DeviceState | WindowAggregate | AlertState
_KEY_LENGTH: dict[type, int] = {DeviceState: 1, AlertState: 2, WindowAggregate: 4}


def canonical_row(row: Row) -> tuple[object, ...]:
    """The row as a tuple of JSON-encodable primitives; its first items are the primary key."""
    if isinstance(row, DeviceState):
        return (
            row.device_id,
            row.first_seen,
            row.last_seen,
            row.count,
            row.first_seq,
            row.last_seq,
            row.seq_floor,
            [list(gap) for gap in row.gaps],
            row.missing,
            row.lost,
            row.duplicates,
            row.out_of_window,
            row.invalid_values,
            sorted(row.late.items()),
            sorted([name, float(v.value), v.ts] for name, v in row.metrics.items()),
            row.boot,
            row.seq_resets,
            row.restart_ts,
        )
    if isinstance(row, AlertState):
        return (row.device_id, row.rule, row.active, row.since, row.value, row.cause_event_id)
    return (*row[:4], row.count, float(row.min), float(row.max), float(row.sum))


def hash_rows(rows: Iterable[Row]) -> str:
    """SHA-256 hex digest of the canonical rows in primary-key order."""
    encoded: list[tuple[object, ...]] = []
    key_length = 1
    for row in rows:
        key_length = _KEY_LENGTH[type(row)]
        encoded.append(canonical_row(row))
    encoded.sort(key=lambda item: item[:key_length])
    digest = hashlib.sha256()
    for item in encoded:
        digest.update(json.dumps(item, separators=(",", ":"), allow_nan=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
