"""Alert history, read from the alert topic (the log of every transition) over a time range.

The store keeps only each rule's current state; the history is the log itself. A request
reads the partitions that can hold the asked device (one, by key; all without a device) from
the first record at or after ``from`` (Kafka's time index) up to the end offsets as of the
request, keeps the device's transitions with event time in ``[from, to)``, and stops at
``limit`` (``truncated`` says so; ask again with a later ``from``). Records published more than
once by the outbox relay (at least once) are returned once, by ``event_id``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from streams.query.logtail import LogReader, format_vector
from streams.query.params import HistoryQuery

__all__ = ["alert_history"]

MAX_SCANNED = 200_000
"""Records one request reads at most (the answer says so when it stopped there)."""


async def alert_history(
    reader: LogReader,
    partitions: list[int],
    query: HistoryQuery,
    decode: Callable[[bytes | None], Awaitable[dict[str, Any]]],
) -> dict[str, object]:
    starts = await reader.offsets_at(partitions, query.start_ms)
    ends = await reader.end_offsets(partitions)
    todo = {p for p in partitions if starts[p] < ends[p]}
    cursor = {p: starts[p] - 1 for p in partitions}
    alerts: list[dict[str, object]] = []
    seen: set[str] = set()
    scanned = 0
    truncated = False
    if todo:
        await reader.seek({p: starts[p] for p in todo})
    want = None if query.device_id is None else query.device_id.encode()
    while todo and not truncated:
        for partition, record in await reader.read(timeout_ms=1000, max_records=1000):
            if partition not in todo or record.offset >= ends[partition]:
                todo.discard(partition)
                continue
            scanned += 1
            cursor[partition] = record.offset
            if record.offset + 1 >= ends[partition]:
                todo.discard(partition)
            if want is not None and record.key != want:
                continue
            alert = await decode(record.value)
            ts = int(alert.get("ts", 0))
            event_id = str(alert.get("event_id"))
            if not query.start_ms <= ts < query.end_ms or event_id in seen:
                continue
            seen.add(event_id)
            alerts.append({**alert, "position": f"{partition}:{record.offset}"})
            if len(alerts) >= query.limit or scanned >= MAX_SCANNED:
                truncated = True
                break
    return {
        "alerts": alerts,
        "truncated": truncated,
        "read_to": format_vector(cursor),
        "end": {str(p): o for p, o in sorted(ends.items())},
    }
