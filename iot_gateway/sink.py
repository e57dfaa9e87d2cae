"""Kafka records out, in closed batches per topic-partition, each completed by its batch's ack.

Both modes hand every decided message to a :class:`KafkaSink`. Records are grouped by
topic-partition, keeping their order, and each group becomes one closed Kafka record batch
handed to aiokafka with ``send_batch``: one future per batch instead of one per record.
A record's ``done`` callback runs once Kafka (acks=all, idempotent producer) acknowledged
its batch, with ``None``, or once the batch failed, with the error; callbacks of one batch
run in record order. Each topic-partition's batches are handed over in order by a lane of
their own, so a partition whose leader is gone (until Kafka elects another) holds back only
its own records, never the other partitions'. Partitions are
:func:`contracts.partitioning.partition_for` of the key, so each device keeps one partition.

The first failed batch fails the sink: ``failed`` is set, every record not yet handed to
aiokafka and every later ``put`` completes with the error at once, and the owner replaces
the sink and its producer (an idempotent producer that lost a batch must not go on, or the
partition's sequence would have a hole). Nothing is ever completed successfully that Kafka
did not acknowledge.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter

from contracts.partitioning import partition_for
from iot_gateway.config import GatewayConfig
from iot_gateway.errors import ProduceFailedError
from iot_gateway.ingest import KafkaRecord
from iot_gateway.leaders import LeaderWatch
from iot_gateway.metrics import GatewayMetrics

Done = Callable[[BaseException | None], object]
"""Called once per record: ``None`` when Kafka acknowledged it, else the error."""


class Fence(Protocol):
    """Who a record is written for (a connection): once ``fenced``, its records still
    waiting are dropped, never written (see ``edge.session_log``)."""

    @property
    def fenced(self) -> bool: ...


class FencedError(ProduceFailedError):
    """The record's connection was taken over before it could be written."""


def kafka_producer(config: GatewayConfig, instance: str) -> AIOKafkaProducer:
    """The idempotent, acks=all producer every gateway record goes through."""
    kafka = config.kafka
    return AIOKafkaProducer(
        **kafka.aiokafka_kwargs(),
        client_id=f"{kafka.client_id}-{instance}",
        enable_idempotence=True,
        acks="all",
        linger_ms=kafka.linger_ms,
        max_batch_size=kafka.max_batch_bytes,
        request_timeout_ms=kafka.request_timeout_ms,
    )


@dataclass(slots=True)
class _Queued:
    record: KafkaRecord
    done: Done
    taken_at: float
    """When the sink took it, on the monotonic clock (the produce latency's start)."""
    fence: Fence | None = None


@dataclass(slots=True)
class _Batch:
    """Records bound for one topic-partition, in arrival order, with their callbacks."""

    topic: str
    partition: int
    builder: BatchBuilder
    done: list[Done] = field(default_factory=list)
    taken: list[float] = field(default_factory=list)

    def add(self, queued: _Queued) -> bool:
        """Appends one record; False (nothing added) when the batch is full."""
        record = queued.record
        appended = self.builder.append(
            key=record.key, value=record.value, timestamp=None, headers=list(record.headers)
        )
        if appended is None:
            return False
        self.done.append(queued.done)
        self.taken.append(queued.taken_at)
        return True


class KafkaSink:
    """Puts records on Kafka for one producer; see the module docstring for the guarantees.

    ``put`` never blocks. Records are submitted by :meth:`flush` (the bridge calls it after
    each batch of messages) or by :meth:`run`, which flushes ``linger_s`` after the first
    record of a round (the edge runs it). ``in_flight`` counts records put and not yet
    completed; :meth:`when_relieved` is how callers wait for it to fall.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        metrics: GatewayMetrics,
        *,
        linger_s: float = 0.0,
        max_in_flight: int = 10_000,
        gate: Callable[[], Awaitable[None]] | None = None,
        leader_stall_s: float | None = None,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._linger_s = linger_s
        self.max_in_flight = max_in_flight
        self._gate = gate
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._partitions = _Partitions(producer)
        self._produced: dict[str, Counter] = {}
        self._relief: list[Callable[[], object]] = []
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self.in_flight = 0
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leaders = (
            LeaderWatch(producer, metrics.leaders_rediscovered, leader_stall_s)
            if leader_stall_s
            else None
        )

    @property
    def saturated(self) -> bool:
        """True while ``max_in_flight`` records or more wait for Kafka."""
        return self.in_flight >= self.max_in_flight

    def when_relieved(self, callback: Callable[[], object]) -> None:
        """Calls ``callback`` once, when in-flight records fall to half the bound (or the sink
        fails)."""
        self._relief.append(callback)

    def put(self, record: KafkaRecord, done: Done, fence: Fence | None = None) -> None:
        """Queues ``record``; ``done`` is called once its fate is known (see the module)."""
        if self.failed.done():
            done(self.failed.exception())
            return
        self.in_flight += 1
        self._queue.append(_Queued(record, done, time.monotonic(), fence))
        self._wake.set()

    async def run(self) -> None:
        """Flushes until cancelled: ``linger_s`` after the first record of each round."""
        while not self.failed.done():
            await self._wake.wait()
            if self._linger_s:
                await asyncio.sleep(self._linger_s)
            await self.flush()

    async def flush(self) -> None:
        """Hands every queued record to its partition's lane, grouped into batches.

        Each lane hands its batches to aiokafka in order and waits while an earlier batch of
        its partition is not yet sent (aiokafka keeps one queued batch per partition): that
        wait, through ``in_flight``, is the back-pressure toward the input. With a ``gate``,
        waits for it first, then drops the records of fenced connections.
        """
        self._wake.clear()
        if self._gate is not None and self._queue:
            await self._gate()
        queued, self._queue = self._queue, []
        if not queued:
            return
        if self._gate is not None:
            queued = self._unfenced(queued)
        self._partitions.new_round()
        batches: dict[tuple[str, int], _Batch] = {}
        unadded = 0  # queued[unadded:] are in no batch yet
        try:
            for item in queued:
                if self.failed.done() or not await self._add(batches, item):
                    break
                unadded += 1
            for key, batch in batches.items():
                self._lane(key).push(batch)
            batches.clear()
        except Exception as exc:  # metadata failures: the sink cannot go on
            self._fail(ProduceFailedError(f"produce failed: {type(exc).__name__}: {exc}"))
            raise self.failed.exception() from exc  # type: ignore[misc]
        finally:
            if self.failed.done():
                error = self.failed.exception()
                for batch in batches.values():
                    self._complete_batch(batch, error)
                self._complete(queued[unadded:], error)

    def _lane(self, key: tuple[str, int]) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            lane.task = asyncio.create_task(self._hand_over(lane))
        return lane

    async def _hand_over(self, lane: _Lane) -> None:
        """A lane's task: submits its batches in order until the sink fails, then completes
        what is left with the error."""
        try:
            while not self.failed.done():
                if not lane.batches:
                    lane.wake.clear()
                    await lane.wake.wait()
                    continue
                try:
                    await self._submit(lane.batches[0])
                except Exception as exc:  # send failures: the sink cannot go on
                    self._fail(ProduceFailedError(f"produce failed: {type(exc).__name__}: {exc}"))
                    break
                lane.batches.popleft()
        finally:  # failed, or closed by the owner: nothing is left without an answer
            error = self.failed.exception() if self.failed.done() else _CLOSED
            while lane.batches:
                self._complete_batch(lane.batches.popleft(), error)

    async def close(self) -> None:
        """Stops the lanes (the owner is done with this sink and its producer)."""
        if self._leaders is not None:
            self._leaders.close()
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _unfenced(self, queued: list[_Queued]) -> list[_Queued]:
        fenced = [item for item in queued if item.fence is not None and item.fence.fenced]
        if not fenced:
            return queued
        self._complete(fenced, FencedError("its connection was taken over; not written"))
        return [item for item in queued if item.fence is None or not item.fence.fenced]

    async def _add(self, batches: dict[tuple[str, int], _Batch], item: _Queued) -> bool:
        """Adds ``item`` to its partition's batch, handing that batch to the partition's lane
        first if it is full; False (and the sink failed) if the record alone does not fit a
        batch."""
        topic = item.record.topic
        partition = await self._partitions.of(topic, item.record.key)
        batch = batches.get((topic, partition))
        if batch is not None:
            if batch.add(item):
                return True
            self._lane((topic, partition)).push(batch)  # full
        batch = batches[topic, partition] = _Batch(topic, partition, self._producer.create_batch())
        if batch.add(item):
            return True
        self._fail(ProduceFailedError(f"a record does not fit a batch of {topic}"))
        return False

    async def drain(self, timeout_s: float) -> int:
        """Waits up to ``timeout_s`` for in-flight records; returns how many are left."""
        deadline = time.monotonic() + timeout_s
        await self.flush()
        while self.in_flight and not self.failed.done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # completions arrive as producer callbacks
        return self.in_flight

    async def _submit(self, batch: _Batch) -> None:
        batch.builder.close()
        while True:
            try:
                future = await self._producer.send_batch(
                    batch.builder, batch.topic, partition=batch.partition
                )
                break
            except KafkaTimeoutError:
                # Not taken: the partition's earlier batch still waits for its leader (or
                # its metadata for Kafka). Nothing was handed over, so waiting again keeps
                # the order and writes nothing twice.
                if self.failed.done():
                    raise
        future.add_done_callback(functools.partial(self._delivered, batch))
        if self._leaders is not None:
            self._leaders.watch(batch.topic, batch.partition, future)

    def _delivered(self, batch: _Batch, future: asyncio.Future[object]) -> None:
        if future.cancelled() or future.exception() is not None:
            cause = "cancelled" if future.cancelled() else future.exception()
            error = ProduceFailedError(f"produce to {batch.topic} failed: {cause}")
            self._fail(error)
            self._complete_batch(batch, error)
            return
        produced = self._produced.get(batch.topic)
        if produced is None:
            produced = self._produced[batch.topic] = self._metrics.produced.labels(batch.topic)
        produced.inc(len(batch.done))
        now = time.monotonic()  # the wall clock may have been stepped meanwhile
        observe = self._metrics.produce_latency.observe
        for taken_at in batch.taken:
            observe(now - taken_at)
        self._complete_batch(batch, None)

    def _complete_batch(self, batch: _Batch, error: BaseException | None) -> None:
        self.in_flight -= len(batch.done)
        for done in batch.done:
            done(error)
        self._relieve()

    def _complete(self, queued: list[_Queued], error: BaseException | None) -> None:
        self.in_flight -= len(queued)
        for item in queued:
            item.done(error)
        self._relieve()

    def _fail(self, error: ProduceFailedError) -> None:
        if not self.failed.done():
            self.failed.set_exception(error)
            self.failed.exception()  # retrieved: the owner may only look at .done()
            for lane in self._lanes.values():
                lane.wake.set()  # each completes what it holds with the error
            queued, self._queue = self._queue, []
            self._complete(queued, error)
            self._wake.set()

    def _relieve(self) -> None:
        if self._relief and (self.in_flight <= self.max_in_flight // 2 or self.failed.done()):
            callbacks, self._relief = self._relief, []
            for callback in callbacks:
                with contextlib.suppress(Exception):
                    callback()


_CLOSED = ProduceFailedError("the gateway's Kafka producer was closed; not written")


@dataclass(slots=True)
class _Lane:
    """One topic-partition's batches waiting to be handed to aiokafka, in order."""

    batches: deque[_Batch] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def push(self, batch: _Batch) -> None:
        self.batches.append(batch)
        self.wake.set()


class _Partitions:
    """Each key's partition (:func:`contracts.partitioning.partition_for`), remembered per key.

    The topic's partitions are checked once per round (flush); if they changed, what was
    remembered for the topic is forgotten.
    """

    def __init__(self, producer: AIOKafkaProducer, max_keys: int = 65_536) -> None:
        self._producer = producer
        self._max_keys = max_keys
        self._topics: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        self._checked: set[str] = set()

    def new_round(self) -> None:
        self._checked.clear()

    async def of(self, topic: str, key: bytes | None) -> int:
        if topic not in self._checked:
            current = sorted(await self._producer.partitions_for(topic))
            known = self._topics.get(topic)
            if known is None or known[0] != current:
                self._topics[topic] = (current, {})
            self._checked.add(topic)
        all_partitions, by_key = self._topics[topic]
        if key is None:
            return random.choice(all_partitions)  # noqa: S311 - spreading, not security
        partition = by_key.get(key)
        if partition is None:
            partition = all_partitions[partition_for(key, len(all_partitions))]
            if len(by_key) >= self._max_keys:
                by_key.clear()
            by_key[key] = partition
        return partition
