"""The gateway's runtime: MQTT messages in, Kafka records out, PUBACK only after Kafka's ack.

Guarantees:
- A message is acknowledged to the broker only after Kafka (acks=all, idempotent producer)
  acknowledged its record, or its DLQ record. PUBACKs go out in arrival order.
- If a produce fails, nothing after it is acknowledged: the connection is dropped and the
  broker redelivers every unacknowledged message from the persistent session. Duplicates
  that this creates carry the same ``event_id`` and are absorbed downstream.
- In-flight work is bounded by ``receive_maximum``: sent to the broker as the MQTT 5 Receive
  Maximum and, since Mosquitto 2.0 does not enforce that, also by the gateway itself, which
  stops reading the broker's socket at the bound (``mqtt.InboundFlow``). While Kafka is down
  the broker's session queue holds the backlog and the gateway reconnects with backoff.
- ``stop()`` (SIGTERM) stops taking messages, waits for in-flight records, then disconnects.

Hot path: messages are taken from the MQTT client in batches of up to ``RECEIVE_BATCH``. A
batch waits at most ``kafka.linger_ms`` from its first message for more to arrive (the
linger moved from aiokafka's per-partition batches to here: paho reads one packet per turn
of the event loop, so without it every turn would carry a batch of one). Each batch's records
become one closed Kafka record batch per topic-partition, handed to aiokafka with
``send_batch``: one future per batch instead of one per record.
Partitions are :func:`contracts.partitioning.partition_for` of the key, so each device
keeps one partition. Counters are updated once per batch. None of this changes a guarantee
above: a message's PUBACK still waits for the batch holding its record to be acknowledged,
and PUBACKs still go out in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter

from contracts.partitioning import partition_for
from iot_gateway.acks import AckWindow, _Slot
from iot_gateway.config import GatewayConfig
from iot_gateway.errors import ProduceFailedError
from iot_gateway.ingest import Accepted, Authorize, Ingest, RecordCodec, Throttled, allow_all
from iot_gateway.metrics import GatewayMetrics
from iot_gateway.mqtt import InboundFlow, persistent_client, puback, subscribe_all
from iot_gateway.ratelimit import DeviceRateLimiter

log = logging.getLogger("iot_gateway")

RECEIVE_BATCH = 256
"""Most messages handled per turn of the event loop (bounds the time between PUBACK flushes)."""

LINGER_STEP_S = 0.001
"""While a batch lingers, how often the queue is looked at."""

SessionTask = Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]
"""Extra work that runs for the life of each MQTT session (e.g. the downlink)."""


class Backoff:
    """Exponential backoff with full jitter, reset after a healthy session."""

    def __init__(self, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s, self.attempt = first_s, cap_s, 0

    def next_delay(self) -> float:
        self.attempt += 1
        return random.uniform(0, min(self.cap_s, self.first_s * 2**self.attempt))  # noqa: S311

    def reset(self) -> None:
        self.attempt = 0


def kafka_producer(config: GatewayConfig) -> AIOKafkaProducer:
    """The idempotent, acks=all producer every gateway record goes through."""
    kafka = config.kafka
    return AIOKafkaProducer(
        **kafka.aiokafka_kwargs(),
        client_id=f"{kafka.client_id}-{config.mqtt.client_id}",
        enable_idempotence=True,
        acks="all",
        linger_ms=kafka.linger_ms,
        max_batch_size=kafka.max_batch_bytes,
        request_timeout_ms=kafka.request_timeout_ms,
    )


class Gateway:
    """One gateway process's bridge; ``run`` until ``stop``."""

    def __init__(
        self,
        config: GatewayConfig,
        codecs: Mapping[str, RecordCodec],
        authorize: Authorize = allow_all,
        session_tasks: tuple[SessionTask, ...] = (),
    ) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.rate_limiter = DeviceRateLimiter(
            config.limits.device_rate_per_s, config.limits.device_burst, time.monotonic
        )
        self.ingest = Ingest(config.routes, codecs, config.limits, self.rate_limiter, authorize)
        self._session_tasks = list(session_tasks)
        self._stopping = asyncio.Event()
        self._outstanding = 0  # produce requests not yet answered by Kafka
        self._flow: InboundFlow | None = None  # the current session's read throttle
        self._produced: dict[str, Counter] = {}  # topic -> its child counter, looked up once
        self.ready = False

    def add_session_task(self, task: SessionTask) -> None:
        """Runs ``task(client)`` alongside each MQTT session; its failure ends the session."""
        self._session_tasks.append(task)

    def stop(self) -> None:
        """Asks ``run`` to drain and return; safe to call from a signal handler."""
        self._stopping.set()

    async def run(self) -> None:
        """Runs sessions until ``stop``; Kafka and broker failures are retried with backoff."""
        backoff = Backoff()
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._session()
            except (aiomqtt.MqttError, KafkaError, ProduceFailedError, OSError) as exc:
                side = "mqtt" if isinstance(exc, aiomqtt.MqttError) else "kafka"
                self.metrics.reconnects.labels(side).inc()
                log.warning("session ended: %s: %s", type(exc).__name__, exc)
            finally:
                self.ready = False
                self.metrics.mqtt_connected.set(0)
                self.metrics.kafka_connected.set(0)
            if time.monotonic() - started > 30:
                backoff.reset()
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff.next_delay())

    async def _session(self) -> None:
        producer = kafka_producer(self.config)
        await producer.start()
        self.metrics.kafka_connected.set(1)
        try:
            client = persistent_client(self.config.mqtt)
            async with client:
                self.metrics.mqtt_connected.set(1)
                await subscribe_all(client, self.config.subscriptions)
                log.info(
                    "session up: %s as %s", self.config.subscriptions, self.config.mqtt.client_id
                )
                self.ready = True
                await self._pump(client, producer)
        finally:
            await producer.stop()

    async def _pump(self, client: aiomqtt.Client, producer: AIOKafkaProducer) -> None:
        acked = self.metrics.acked

        def send_ack(mid: int) -> None:
            puback(client, mid)
            acked.inc()

        window = AckWindow(send_ack)
        self._flow = InboundFlow(
            client, self.config.mqtt.receive_maximum, self.metrics.mqtt_paused.set
        )
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        receive = asyncio.create_task(self._receive(client, producer, window, failed))
        extras = [asyncio.create_task(task(client)) for task in self._session_tasks]
        stop = asyncio.create_task(self._stopping.wait())
        watched: set[asyncio.Future[Any]] = {receive, stop, failed, *extras}
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            receive.cancel()
            for future in (receive, *extras):
                if future.done() and not future.cancelled():
                    error = future.exception()
                    if error is not None:
                        raise error
            await self._drain(window, failed)
        finally:
            self._flow.resume()
            self._flow = None
            for task in (receive, stop, *extras):
                task.cancel()
            await asyncio.gather(receive, stop, *extras, return_exceptions=True)

    async def _drain(self, window: AckWindow, failed: asyncio.Future[None]) -> None:
        """Waits for in-flight records before disconnecting (bounded by the request timeout)."""
        deadline = time.monotonic() + self.config.kafka.request_timeout_ms / 1000
        while self._outstanding and not failed.done() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # completions arrive as producer callbacks
        if failed.done():
            failed.result()
        log.info("drained: %d message(s) left unacknowledged for redelivery", len(window))

    async def _receive(
        self,
        client: aiomqtt.Client,
        producer: AIOKafkaProducer,
        window: AckWindow,
        failed: asyncio.Future[None],
    ) -> None:
        received: dict[str, Counter] = {}  # route -> its child counter, looked up once
        partitions = _Partitions(producer)
        linger_s = self.config.kafka.linger_ms / 1000
        async with contextlib.aclosing(_batches(client, linger_s)) as batches:
            async for batch in batches:
                await self._handle(batch, producer, partitions, window, failed, received)
                if failed.done():
                    return
                if self._flow is not None:
                    self._flow.update(len(window))

    async def _handle(
        self,
        batch: list[aiomqtt.Message],
        producer: AIOKafkaProducer,
        partitions: _Partitions,
        window: AckWindow,
        failed: asyncio.Future[None],
        received: dict[str, Counter],
    ) -> None:
        """Admits and decides each message of ``batch`` in order, then produces the records.

        Records are grouped by topic-partition, keeping their order; a group is submitted
        when it is full and at the end of the batch.
        """
        metrics, ingest, dlq_topic = self.metrics, self.ingest, self.config.kafka.dlq_topic
        max_payload = self.config.limits.max_payload_bytes
        partitions.new_round()
        outgoing: dict[tuple[str, int], _Outgoing] = {}
        counts: dict[str, int] = {}
        try:
            for message in batch:
                if failed.done():
                    return
                received_at = time.time()
                topic = message.topic.value
                payload = message.payload
                slot = window.admit(message.mid) if message.qos > 0 else None
                result = ingest.process(topic, payload, int(received_at * 1000))
                while isinstance(result, Throttled):  # back-pressure: the session waits
                    metrics.throttled.inc(result.wait_s)
                    await asyncio.sleep(result.wait_s)
                    result = ingest.process(topic, payload, int(received_at * 1000))
                key: bytes | None
                if isinstance(result, Accepted):
                    kafka_topic, key, value = result.kafka_topic, result.key, result.value
                    headers = result.headers
                else:
                    metrics.rejected.labels(result.reason).inc()
                    value, extra = result.dlq_value(payload, max_payload)
                    kafka_topic = dlq_topic
                    key = result.device_id.encode() if result.device_id else None
                    headers = (*result.headers(topic, int(received_at * 1000)), *extra)
                partition = await partitions.of(kafka_topic, key)
                group = outgoing.get((kafka_topic, partition))
                if group is None:
                    group = outgoing[kafka_topic, partition] = _Outgoing(
                        kafka_topic, partition, producer.create_batch()
                    )
                if not group.add(key, value, headers, slot, received_at):
                    await self._submit(producer, group, window, failed)  # full
                    group = outgoing[kafka_topic, partition] = _Outgoing(
                        kafka_topic, partition, producer.create_batch()
                    )
                    if not group.add(key, value, headers, slot, received_at):
                        raise ProduceFailedError(f"a record does not fit a batch of {kafka_topic}")
                name = result.route or "-"
                counts[name] = counts.get(name, 0) + 1
            for group in outgoing.values():
                await self._submit(producer, group, window, failed)
        finally:
            for name, count in counts.items():
                counter = received.get(name)
                if counter is None:
                    counter = received[name] = metrics.received.labels(name)
                counter.inc(count)
            metrics.in_flight.set(len(window))

    async def _submit(
        self,
        producer: AIOKafkaProducer,
        group: _Outgoing,
        window: AckWindow,
        failed: asyncio.Future[None],
    ) -> None:
        """Hands a closed batch to aiokafka; its records complete together when Kafka acks it.

        Waits while an earlier batch of the same partition is not yet sent (aiokafka keeps
        one queued batch per partition): that wait is the back-pressure toward the broker.
        """
        group.builder.close()
        future = await producer.send_batch(group.builder, group.topic, partition=group.partition)
        self._outstanding += len(group.slots)
        future.add_done_callback(functools.partial(self._delivered, window, group, failed))

    def _delivered(
        self,
        window: AckWindow,
        group: _Outgoing,
        failed: asyncio.Future[None],
        future: asyncio.Future[object],
    ) -> None:
        self._outstanding -= len(group.slots)
        if future.cancelled() or future.exception() is not None:
            if not failed.done():
                error = future.exception() if not future.cancelled() else "cancelled"
                failed.set_exception(
                    ProduceFailedError(f"produce to {group.topic} failed: {error}")
                )
            return
        metrics = self.metrics
        produced = self._produced.get(group.topic)
        if produced is None:
            produced = self._produced[group.topic] = metrics.produced.labels(group.topic)
        produced.inc(len(group.slots))
        now = time.time()
        observe = metrics.produce_latency.observe
        for received_at in group.received:
            observe(now - received_at)
        if not failed.done():
            for slot in group.slots:
                if slot is not None:
                    window.complete(slot)
            if self._flow is not None:
                self._flow.update(len(window))
        if not self._outstanding:
            metrics.in_flight.set(len(window))


@dataclass(slots=True)
class _Outgoing:
    """Records bound for one topic-partition, in arrival order, with their MQTT slots."""

    topic: str
    partition: int
    builder: BatchBuilder
    slots: list[_Slot | None] = field(default_factory=list)
    received: list[float] = field(default_factory=list)

    def add(
        self,
        key: bytes | None,
        value: bytes,
        headers: tuple[tuple[str, bytes], ...],
        slot: _Slot | None,
        received_at: float,
    ) -> bool:
        """Appends one record; False (nothing added) when the batch is full."""
        if self.builder.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
            return False
        self.slots.append(slot)
        self.received.append(received_at)
        return True


class _Partitions:
    """Each key's partition (:func:`contracts.partitioning.partition_for`), remembered per key.

    The topic's partitions are checked once per round (receive batch); if they changed,
    what was remembered for the topic is forgotten.
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


async def _batches(
    client: aiomqtt.Client, linger_s: float
) -> AsyncGenerator[list[aiomqtt.Message], None]:
    """The client's messages in arrival order, in lists of up to ``RECEIVE_BATCH``.

    A list is yielded when it is full or ``linger_s`` after its first message. Waiting for a
    first message goes through ``client.messages`` (which ends with ``MqttError`` on
    disconnect); everything else is taken from aiomqtt's queue without its per-message task
    and ``asyncio.wait``, which cost more than the rest of our per-message work.
    """
    queue: asyncio.Queue[aiomqtt.Message] = client._queue  # aiomqtt's queue of received messages
    messages = client.messages
    loop = asyncio.get_running_loop()
    while True:
        batch = [await anext(messages)] if queue.empty() else []
        deadline = loop.time() + linger_s
        while len(batch) + queue.qsize() < RECEIVE_BATCH:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, LINGER_STEP_S))
        while len(batch) < RECEIVE_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        yield batch
