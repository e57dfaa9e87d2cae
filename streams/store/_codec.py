"""Row encoding shared by the store adapters: same columns, same canonical JSON text.

JSON columns are written with sorted keys and compact separators, so equal state is equal
text in every adapter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from streams.domain import DerivedEvent
from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState, LatestValue

DEVICE_COLUMNS = (
    "device_id",
    "first_seen",
    "last_seen",
    "count",
    "first_seq",
    "last_seq",
    "seq_floor",
    "gaps",
    "missing",
    "lost",
    "duplicates",
    "out_of_window",
    "invalid_values",
    "late",
    "metrics",
    "boot",
    "seq_resets",
    "restart_ts",
)
WINDOW_COLUMNS = (
    "device_id",
    "metric",
    "size_ms",
    "start_ms",
    "count",
    "min",
    "max",
    "sum",
)
ALERT_COLUMNS = ("device_id", "rule", "active", "since", "value", "cause_event_id")
OUTBOX_COLUMNS = ("event_id", "topic", "msg_key", "kind", "ts", "payload")

_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def gap_key(group: str, topic: str, partition: int) -> str:
    """The ``meta`` key of a group's retention gap on one partition."""
    return f"retention_gap\x1f{group}\x1f{topic}\x1f{partition}"


def gap_from_key(key: str) -> tuple[str, int]:
    """(topic, partition) of a :func:`gap_key`."""
    _, _, topic, partition = key.split("\x1f")
    return topic, int(partition)


def dumps(value: object) -> str:
    """Canonical JSON text."""
    return _dumps(value)


def device_row(state: DeviceState) -> tuple[object, ...]:
    return (
        state.device_id,
        state.first_seen,
        state.last_seen,
        state.count,
        state.first_seq,
        state.last_seq,
        state.seq_floor,
        _dumps(state.gaps) if state.gaps else "[]",
        state.missing,
        state.lost,
        state.duplicates,
        state.out_of_window,
        state.invalid_values,
        _dumps(state.late) if state.late else "{}",
        _dumps(state.metrics),
        state.boot,
        state.seq_resets,
        state.restart_ts,
    )


def device_from_row(row: Sequence[Any]) -> DeviceState:
    metrics = {name: LatestValue(float(v), int(t)) for name, (v, t) in json.loads(row[14]).items()}
    return DeviceState(
        device_id=row[0],
        first_seen=row[1],
        last_seen=row[2],
        count=row[3],
        first_seq=row[4],
        last_seq=row[5],
        seq_floor=row[6],
        gaps=tuple((lo, hi) for lo, hi in json.loads(row[7])),
        missing=row[8],
        lost=row[9],
        duplicates=row[10],
        out_of_window=row[11],
        invalid_values=row[12],
        late=json.loads(row[13]),
        metrics=metrics,
        boot=row[15],
        seq_resets=row[16],
        restart_ts=row[17],
    )


def alert_row(state: AlertState) -> tuple[object, ...]:
    return (
        state.device_id,
        state.rule,
        state.active,
        state.since,
        state.value,
        state.cause_event_id,
    )


def alert_from_row(row: Sequence[Any]) -> AlertState:
    return AlertState(row[0], row[1], bool(row[2]), row[3], float(row[4]), row[5])


def outbox_row(event: DerivedEvent) -> tuple[object, ...]:
    return (event.event_id, event.topic, event.key, event.kind, event.ts, _dumps(event.payload))


def event_from_row(row: Sequence[Any]) -> DerivedEvent:
    """From (event_id, topic, msg_key, kind, ts, payload) columns."""
    return DerivedEvent(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))
