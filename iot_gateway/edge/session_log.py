"""The sessions topic of one gateway process: claims and updates out, the fold in.

Why Kafka, and why this way: the edge already depends on Kafka and nothing else, a compacted
topic keeps each client id's latest state for as long as needed, and a record's offset is a
fencing token for free (offsets of one partition only grow, and a client id always maps to
one partition). A claim is acknowledged by all in-sync replicas before CONNACK, so a process
that crashes right after answering never leaves the session unclaimed.

**Fencing a holder that was paused or cut off.** A process may produce records for a
connection only while its view of the claims is *fresh*: it asks Kafka for the topic's end
offsets at most every ``confirm_every_s`` and, once it has read up to them, its view is
confirmed as of the moment it asked. A process that was frozen (SIGSTOP, a long GC pause) or
cut off from Kafka for longer than ``lease_s`` holds every record back until its view is
confirmed again; by then it has read any claim written meanwhile, closed the connections that
were taken over, and dropped their records unacknowledged (the device sends them again to
its new holder). A shorter freeze is noticed too: a ticker runs every ``pause_s``/4, and a
gap longer than ``pause_s`` (``edge.fence_pause_s``) voids the confirmation. So a zombie
holder never writes a reading after a takeover it missed, unless the takeover came within
``lease_s`` of a confirmation while the process kept running (it then reads the claim
within a fetch).

Updates are written by one task, the latest state per client id (a burst of disconnects is
one write per session, not one task per change); ``stop`` writes what is pending first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from iot_gateway.config import GatewayConfig
from iot_gateway.edge.directory import (
    LOG_APPEND_TIME,
    Claimed,
    Directory,
    SessionRecord,
    Takeover,
    claim,
)
from iot_gateway.errors import GatewayError

log = logging.getLogger("iot_gateway.edge")

_Client = TypeVar("_Client", AIOKafkaProducer, AIOKafkaConsumer)


class SessionLogError(GatewayError):
    """The sessions topic could not be read or written."""

    retriable = True


class SessionLog:
    """Claims, updates and the fold of the sessions topic (see the module docstring)."""

    def __init__(
        self,
        config: GatewayConfig,
        topic: str,
        on_takeover: Callable[[Takeover], object],
        *,
        lease_s: float = 1.0,
        confirm_every_s: float = 0.25,
        pause_s: float = 0.5,
    ) -> None:
        self._config = config
        self.topic = topic
        self._on_takeover = on_takeover
        self.lease_s = lease_s
        self._confirm_every_s = confirm_every_s
        self.directory = Directory()
        self._warned_clock = False
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._folded = asyncio.Condition()
        self._confirmed_at = float("-inf")
        self._confirmed = asyncio.Event()
        self._pause_s = pause_s
        self._ticked_at = time.monotonic()
        self._pending: dict[str, bytes | None] = {}  # client id -> its latest state to write
        self._written = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connects and reads the topic up to its end (the state before this process)."""
        kafka, instance = self._config.kafka, self._config.edge.instance
        producer = AIOKafkaProducer(
            **kafka.aiokafka_kwargs(),
            client_id=f"{kafka.client_id}-{instance}-sessions",
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=kafka.request_timeout_ms,
        )
        consumer = AIOKafkaConsumer(
            **kafka.aiokafka_kwargs(),
            client_id=f"{kafka.client_id}-{instance}-sessions",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await producer.start()
        try:
            await consumer.start()
            partitions = await producer.partitions_for(self.topic)
            self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(self._partitions)
            await consumer.seek_to_beginning(*self._partitions)
        except BaseException:
            await producer.stop()
            await consumer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        asked = time.monotonic()
        ends = await consumer.end_offsets(self._partitions)
        while not await self._reached(ends):
            await self._fold(await consumer.getmany(timeout_ms=200, max_records=5_000))
        self._confirm(asked)
        log.info("%d session(s) in %s", len(self.directory), self.topic)

    async def stop(self) -> None:
        """Writes what is pending (bounded by the request timeout), then disconnects."""
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._write_pending(), self._config.kafka.request_timeout_ms / 1000
                )
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None

    async def run(self) -> None:
        """Folds new records, confirms the view's freshness and writes the holder's updates,
        until cancelled."""
        self._ticked_at = time.monotonic()
        tasks = [
            asyncio.create_task(self._tick()),
            asyncio.create_task(self._write_forever()),
        ]
        try:
            await self._fold_and_confirm()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write_forever(self) -> None:
        """Writes pending updates; updates of one client id made meanwhile are coalesced
        (each carries the whole state, so only the latest matters)."""
        while True:
            await self._written.wait()
            self._written.clear()
            await self._write_pending()

    async def _write_pending(self) -> None:
        producer = self._require(self._producer)
        pending, self._pending = self._pending, {}
        futures = []
        for client_id, value in pending.items():
            futures.append(await producer.send(self.topic, value, key=client_id.encode()))
        for future in futures:
            future.add_done_callback(_log_failure)
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)

    async def _tick(self) -> None:
        """Notices when this process did not run for a while (frozen, starved): the view it
        had confirmed before may miss claims written meanwhile, so it is confirmed anew."""
        while True:
            now = time.monotonic()
            if now - self._ticked_at > self._pause_s:
                log.warning(
                    "this process did not run for %.1fs: session claims are read again before "
                    "any record is written",
                    now - self._ticked_at,
                )
                self._confirmed_at = float("-inf")
            self._ticked_at = now
            await asyncio.sleep(self._pause_s / 4)

    async def _fold_and_confirm(self) -> None:
        consumer = self._require(self._consumer)
        asked_at = float("-inf")
        pending: tuple[float, dict[TopicPartition, int]] | None = None
        while True:
            await self._fold(await consumer.getmany(timeout_ms=100, max_records=5_000))
            now = time.monotonic()
            if pending is None and now - asked_at >= self._confirm_every_s:
                asked_at = now
                pending = (now, await consumer.end_offsets(self._partitions))
            if pending is not None and await self._reached(pending[1]):
                self._confirm(pending[0])
                pending = None

    # -- what the server asks ----------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """The view of the claims was confirmed less than ``lease_s`` ago, and the process has
        run all along since (a gap longer than ``pause_s`` voids the confirmation)."""
        now = time.monotonic()
        return now - self._confirmed_at < self.lease_s and now - self._ticked_at < self._pause_s

    async def until_fresh(self) -> None:
        """Returns once the view is fresh (at once, nearly always)."""
        started = time.monotonic()
        while not self.fresh:
            self._confirmed.clear()
            await self._confirmed.wait()
        held = time.monotonic() - started
        if held > 1.0:
            log.info("records held %.1fs until the session claims were confirmed", held)

    async def claim(
        self, client_id: str, principal: str, *, clean_start: bool, expiry_s: int
    ) -> Claimed:
        """Makes this process the session's holder; returns the session as claimed, once
        this process has read its own claim (so every earlier state is folded in)."""
        producer = self._require(self._producer)
        value = claim(
            principal=principal,
            owner=self._config.edge.instance,
            clean_start=clean_start,
            expiry_s=expiry_s,
            at_ms=self.directory.clock.now_ms(),  # the broker's stamp decides, if it stamps
        )
        try:
            metadata = await producer.send_and_wait(self.topic, value, key=client_id.encode())
        except KafkaError as exc:
            raise SessionLogError(f"the claim of {client_id!r} was not written: {exc}") from exc
        self.directory.clock.seen(metadata.timestamp, metadata.timestamp_type)
        async with asyncio.timeout(self._config.kafka.request_timeout_ms / 1000):
            async with self._folded:
                while (claimed := self.directory.claimed(client_id, metadata.offset)) is None:
                    await self._folded.wait()
        return claimed

    def update(self, record: SessionRecord) -> None:
        """Writes the holder's new state soon (in order with its claim; failures logged)."""
        if self._producer is None:
            return
        self.directory.written(record)
        self._pending[record.client_id] = record.update()
        self._written.set()

    def delete(self, client_id: str) -> None:
        """Forgets an expired session (a tombstone: compaction removes it)."""
        if self._producer is None:
            return
        self.directory.forget(client_id)
        self._pending[client_id] = None
        self._written.set()

    # -- internals -------------------------------------------------------------------------

    async def _fold(self, batches: dict[TopicPartition, list[object]]) -> None:
        if not batches:
            return
        takeovers: list[Takeover] = []
        for records in batches.values():
            for record in records:
                key = getattr(record, "key", None)
                if key is None:
                    continue
                stamp = getattr(record, "timestamp_type", 0)
                if stamp != LOG_APPEND_TIME and not self._warned_clock:
                    self._warned_clock = True
                    log.warning(
                        "%s keeps its writers' timestamps: session expiry follows the "
                        "gateways' wall clocks; set its message.timestamp.type=LogAppendTime",
                        self.topic,
                    )
                taken = self.directory.apply(
                    key.decode(errors="replace"),
                    getattr(record, "value", None),
                    record.offset,  # type: ignore[attr-defined]
                    getattr(record, "timestamp", None),
                    stamp,
                )
                if taken is not None:
                    takeovers.append(taken)
        for taken in takeovers:
            self._on_takeover(taken)
        async with self._folded:
            self._folded.notify_all()

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        consumer = self._require(self._consumer)
        for partition, end in ends.items():
            if await consumer.position(partition) < end:
                return False
        return True

    def _confirm(self, asked_at: float) -> None:
        self._confirmed_at = max(self._confirmed_at, asked_at)
        self._confirmed.set()

    @staticmethod
    def _require(client: _Client | None) -> _Client:
        if client is None:
            raise SessionLogError("the sessions topic is not connected")
        return client


def _log_failure(task: asyncio.Future[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a session update was not written: %s", task.exception())
