"""Server-Sent Events straight from the Kafka log: live readings and alerts, resumable.

Every event's ``id`` is a log position: ``partition:offset`` for a device's readings (one
partition holds a device), a vector ``p:o,p:o,...`` over the alert topic's partitions for
alerts (the last record read from each). A client that reconnects with ``Last-Event-ID`` (or
``?after=``) is served from just after that position: no gap, no duplicate. The first event of
a stream, ``hello``, carries the starting position as its id, so even a client that saw no
event yet resumes exactly. Without a position a stream starts at the log's end (live).
A position older than the log's first retained record (retention deleted what followed it)
cannot be served without a gap: the stream starts at the first retained record and the
``hello`` event's data says so, ``{"gap": [{"partition", "from", "to"}]}`` (the offsets
``[from, to)`` are gone); ``gap`` is empty when nothing was skipped.

Memory per subscriber is bounded by the reader's fetch size; records are fetched only when
the previous ones were written to the client. A client that does not take a write within
``write_timeout_s``, or that falls more than ``max_behind`` records behind the log once it
was within that distance, gets a ``disconnect`` event with the reason and its resume
position, and the stream ends. A resuming client is served its backlog first, however
long. A keep-alive comment goes out whenever nothing was written for ``heartbeat_s``, so a
departed client is noticed even on a busy partition that holds nothing for its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from streams.query.errors import QueryError
from streams.query.logtail import format_vector, gaps
from streams.query.metrics import QueryMetrics
from streams.query.slots import ClientSlots, Refusal

__all__ = ["Reader", "SseLimits", "Subscriptions", "stream_log"]

Decode = Callable[[Any], Awaitable[dict[str, object] | None]]
"""Turns a record into an event's data, or None to pass over it (another device)."""


@dataclass(frozen=True, slots=True)
class SseLimits:
    max_behind: int = 10_000
    write_timeout_s: float = 5.0
    heartbeat_s: float = 15.0


class SlowClientError(QueryError):
    """The client is too far behind or stopped taking writes; it resumes with Last-Event-ID."""

    retriable = True


class Subscriptions:
    """Open streams of one server: slots (a cap for all, a cap per client), the gauge, and
    one stop signal for shutdown."""

    def __init__(self, limit: int, metrics: QueryMetrics, *, per_client: int | None = None) -> None:
        self._slots = ClientSlots(limit, per_client)
        self.stopping = asyncio.Event()
        self._metrics = metrics

    @property
    def open(self) -> int:
        return self._slots.open

    @property
    def per_client(self) -> int:
        return self._slots.per_client

    def admit(self, client: str = "") -> Refusal | None:
        """Takes a stream slot for ``client``; None when admitted, else why not."""
        if self.stopping.is_set():
            return "busy"
        refused = self._slots.take(client)
        self._metrics.subscribers.set(self.open)
        return refused

    def leave(self, reason: str, client: str = "") -> None:
        self._slots.give_back(client)
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


async def _check_behind(
    reader: Reader, partitions: Sequence[int], limits: SseLimits, *, caught_up: bool
) -> bool:
    """Whether the stream has been within ``max_behind`` of the log's end (it has caught up);
    SlowClientError if it had and is now further behind."""
    behind = await reader.behind(partitions)  # None: the log's end is not known yet
    if behind is None:
        return caught_up
    if caught_up and behind > limits.max_behind:
        raise SlowClientError("too_slow")
    return caught_up or behind <= limits.max_behind


class Reader(Protocol):
    """What a stream needs of :class:`~streams.query.logtail.LogReader` (after ``seek``)."""

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]: ...

    async def behind(self, partitions: Iterable[int]) -> int | None: ...


async def stream_log(
    request: web.Request,
    reader: Reader,
    starts: Mapping[int, int],
    decode: Decode,
    *,
    event: str,
    limits: SseLimits,
    subscriptions: Subscriptions,
    requested: Mapping[int, int] | None = None,
    clock: Callable[[], float] = time.monotonic,
    client: str = "",
) -> web.StreamResponse:
    """Serves one stream from ``starts`` (next offset per partition) until the client leaves.

    ``starts`` must have been positioned on ``reader`` already (they are ``reader.seek``'s
    answer); ``requested`` are the starts a resuming client asked for: where one is below
    its start (retention removed those records) the ``hello`` event's ``gap`` says so.

    The caller admitted the subscription; this leaves it exactly once on every path: a
    client gone before the response started, a write failing, cancellation, shutdown.

    A keep-alive comment is written whenever nothing was written for ``heartbeat_s`` (even
    while records of other devices pass by), so a departed client is noticed within about
    ``heartbeat_s``. ``max_behind`` applies once the stream has caught up with the log: a
    client resuming from far back is served its backlog (one fetch at a time, each written
    before the next is read) until it is within ``max_behind`` of the end; one that then falls
    further behind, or stops taking writes (``write_timeout_s``), is disconnected.
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
    reason = "client_left"
    partitions: Sequence[int] = sorted(starts)
    last_write = clock()

    async def write(data: bytes) -> None:
        nonlocal last_write
        await _write(response, data, limits)
        last_write = clock()

    try:
        await response.prepare(request)
        hello = {"gap": gaps(requested or {}, starts)}
        await write(b"retry: 1000\n" + _frame("hello", position(), hello))
        caught_up = False
        while not subscriptions.stopping.is_set():
            records = await reader.read(timeout_ms=500)
            for partition, record in records:
                data = await decode(record)
                cursor[partition] = record.offset
                if data is not None:
                    data = {**data, "position": f"{partition}:{record.offset}"}
                    await write(_frame(event, position(), data))
            caught_up = await _check_behind(reader, partitions, limits, caught_up=caught_up)
            if clock() - last_write >= limits.heartbeat_s:
                await write(b": keep-alive\n\n")
        reason = "shutdown"
        await write(_frame("disconnect", position(), {"reason": reason}))
    except SlowClientError as exc:
        reason = str(exc)
        frame = _frame("disconnect", position(), {"reason": reason, "resume": position()})
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(response.write(frame), 1.0)
    except ConnectionError:
        reason = "client_left"
    except BaseException:
        reason = "failed"
        raise
    finally:
        subscriptions.leave(reason, client)
    return response
