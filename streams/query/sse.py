"""Server-Sent Events straight from the Kafka log: live readings and alerts, resumable.

Every event's ``id`` is a log position: ``partition:offset`` for a device's readings (one
partition holds a device), a vector ``p:o,p:o,...`` over the alert topic's partitions for
alerts (the last record read from each). A client that reconnects with ``Last-Event-ID`` (or
``?after=``) is served from just after that position: no gap, no duplicate. The first event of
a stream, ``hello``, carries the starting position as its id, so even a client that saw no
event yet resumes exactly. Without a position a stream starts at the log's end (live).

Memory per subscriber is bounded by the reader's fetch size; records are fetched only when
the previous ones were written to the client. A client more than ``max_behind`` records
behind the log, or one that does not take a write within ``write_timeout_s``, gets a
``disconnect`` event with the reason and its resume position, and the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from streams.query.logtail import LogReader, format_vector
from streams.query.metrics import QueryMetrics

__all__ = ["SseLimits", "Subscriptions", "stream_log"]

Decode = Callable[[Any], Awaitable[dict[str, object] | None]]
"""Turns a record into an event's data, or None to pass over it (another device)."""


@dataclass(frozen=True, slots=True)
class SseLimits:
    max_behind: int = 10_000
    write_timeout_s: float = 5.0
    heartbeat_s: float = 15.0


class SlowClientError(Exception):
    """The client is too far behind or stopped taking writes."""


class Subscriptions:
    """Open streams of one server: a cap, a count, and one stop signal for shutdown."""

    def __init__(self, limit: int, metrics: QueryMetrics) -> None:
        self.limit = limit
        self.open = 0
        self.stopping = asyncio.Event()
        self._metrics = metrics

    def admit(self) -> bool:
        if self.open >= self.limit or self.stopping.is_set():
            return False
        self.open += 1
        self._metrics.subscribers.set(self.open)
        return True

    def leave(self, reason: str) -> None:
        self.open -= 1
        self._metrics.subscribers.set(self.open)
        self._metrics.disconnects.labels(reason).inc()


def _frame(event: str, event_id: str | None, data: Mapping[str, object]) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


async def _write(response: web.StreamResponse, data: bytes, limits: SseLimits) -> None:
    try:
        await asyncio.wait_for(response.write(data), limits.write_timeout_s)
    except TimeoutError:
        raise SlowClientError("write_timeout") from None


async def _check_behind(reader: LogReader, partitions: Sequence[int], limits: SseLimits) -> None:
    if await reader.behind(partitions) > limits.max_behind:
        raise SlowClientError("too_slow")


async def stream_log(
    request: web.Request,
    reader: LogReader,
    starts: Mapping[int, int],
    decode: Decode,
    *,
    event: str,
    limits: SseLimits,
    subscriptions: Subscriptions,
) -> web.StreamResponse:
    """Serves one stream from ``starts`` (next offset per partition) until the client leaves.

    ``starts`` must have been positioned on ``reader`` already (``reader.seek``).
    """
    single = len(starts) == 1
    cursor = {p: o - 1 for p, o in starts.items()}  # last offset read per partition

    def position() -> str:
        if single:
            ((p, o),) = cursor.items()
            return f"{p}:{o}"
        return format_vector(cursor)

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    reason = "client_left"
    partitions: Sequence[int] = sorted(starts)
    try:
        await _write(response, b"retry: 1000\n" + _frame("hello", position(), {}), limits)
        quiet_since = time.monotonic()
        while not subscriptions.stopping.is_set():
            records = await reader.read(timeout_ms=500)
            for partition, record in records:
                data = await decode(record)
                cursor[partition] = record.offset
                if data is not None:
                    data = {**data, "position": f"{partition}:{record.offset}"}
                    await _write(response, _frame(event, position(), data), limits)
            await _check_behind(reader, partitions, limits)
            if records:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= limits.heartbeat_s:
                await _write(response, b": keep-alive\n\n", limits)
                quiet_since = time.monotonic()
        reason = "shutdown"
        await _write(response, _frame("disconnect", position(), {"reason": reason}), limits)
    except SlowClientError as exc:
        reason = str(exc)
        frame = _frame("disconnect", position(), {"reason": reason, "resume": position()})
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(response.write(frame), 1.0)
    except ConnectionError:
        reason = "client_left"
    finally:
        subscriptions.leave(reason)
    return response
