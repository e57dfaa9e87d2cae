"""Alert history, read from the alert topic (the log of every transition) over a time range.

The store keeps only each rule's current state; the history is the log itself. A request
reads the partitions that can hold the asked device (one, by key; all without a device) from
the first record at or after ``from`` (Kafka's time index), or from just after the positions
``after`` (a vector ``p:o,...`` over those partitions), up to the end offsets as of the
request, and keeps the device's transitions with event time in ``[from, to)``.

Paging is by log position, not by time: records arrive in offset order per partition, not
in time order across partitions, so a later ``from`` would skip transitions. When an answer
stops early (``limit`` matches, ``MAX_SCANNED`` records read, or ``max_seconds`` spent)
``truncated`` is true and ``next_after`` is the vector to pass as ``after``: every record at
or before it was either returned or filtered out, none after it was looked at. Records that
cannot be decoded are skipped and counted (``undecodable``), never an error. Records
published more than once by the outbox relay (at least once) are returned once per answer,
by ``event_id``. A start older than the log's first retained record reads on from that
record and says so in ``gap``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from streams.query.logtail import format_vector, gaps
from streams.query.params import HistoryQuery
from streams.query.shapes import alert_record_json

__all__ = ["MAX_SCANNED", "HistoryLog", "alert_history"]

MAX_SCANNED = 200_000
"""Records one request reads at most (the answer says so when it stopped there)."""

DecodeAlert = Callable[[bytes | None], Awaitable[dict[str, Any] | None]]
"""An alert record's value as a dict, or None when it cannot be decoded."""


class HistoryLog(Protocol):
    """What the history needs of :class:`~streams.query.logtail.LogReader`."""

    async def offsets_at(self, partitions: list[int], at_ms: int) -> dict[int, int]: ...

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]: ...

    async def seek(self, starts: Mapping[int, int]) -> dict[int, int]: ...

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]: ...


def _when(alert: dict[str, Any] | None) -> tuple[int, str] | None:
    if alert is None:
        return None
    try:
        return int(alert["ts"]), str(alert["event_id"])
    except (KeyError, TypeError, ValueError):
        return None


async def alert_history(
    reader: HistoryLog,
    partitions: list[int],
    query: HistoryQuery,
    decode: DecodeAlert,
    *,
    after: Mapping[int, int] | None = None,
    max_scanned: int = MAX_SCANNED,
    max_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, object]:
    """One page of the history (see the module docstring); ``after`` covers ``partitions``."""
    if after is None:
        requested = await reader.offsets_at(partitions, query.start_ms)
    else:
        requested = {p: after[p] + 1 for p in partitions}
    ends = await reader.end_offsets(partitions)
    todo = {p for p in partitions if requested[p] < ends[p]}
    starts = dict(requested)
    if todo:
        starts.update(await reader.seek({p: requested[p] for p in todo}))
        todo = {p for p in todo if starts[p] < ends[p]}
    cursor = {p: starts[p] - 1 for p in partitions}
    alerts: list[dict[str, object]] = []
    seen: set[str] = set()
    scanned = undecodable = 0
    stopped = False
    want = None if query.device_id is None else query.device_id.encode()
    deadline = clock() + max_seconds
    while todo and not stopped:
        for partition, record in await reader.read(timeout_ms=1000, max_records=1000):
            if partition not in todo or record.offset >= ends[partition]:
                todo.discard(partition)
                continue
            if scanned >= max_scanned or len(alerts) >= query.limit or clock() >= deadline:
                stopped = True
                break
            scanned += 1
            cursor[partition] = record.offset
            if record.offset + 1 >= ends[partition]:
                todo.discard(partition)
            if want is not None and record.key != want:
                continue
            alert = await decode(record.value)
            when = _when(alert)
            if alert is None or when is None:
                undecodable += 1
                continue
            ts, event_id = when
            if not query.start_ms <= ts < query.end_ms or event_id in seen:
                continue
            seen.add(event_id)
            alerts.append({**alert_record_json(alert), "position": f"{partition}:{record.offset}"})
        if len(alerts) >= query.limit and todo:
            stopped = True
    truncated = stopped and bool(todo)
    return {
        "alerts": alerts,
        "truncated": truncated,
        "next_after": format_vector(cursor) if truncated else None,
        "read_to": format_vector(cursor),
        "end": {str(p): o for p, o in sorted(ends.items())},
        "scanned": scanned,
        "undecodable": undecodable,
        "gap": gaps(requested, starts),
    }
