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
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from typing import Any

import aiomqtt
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from iot_gateway.acks import AckWindow, Slot
from iot_gateway.backoff import Backoff
from iot_gateway.clock import received_now
from iot_gateway.config import GatewayConfig
from iot_gateway.errors import ProduceFailedError
from iot_gateway.ingest import (
    Authorize,
    Ingest,
    RecordCodec,
    Rejected,
    Throttled,
    allow_all,
    kafka_record,
)
from iot_gateway.metrics import GatewayMetrics
from iot_gateway.mqtt import InboundFlow, persistent_client, puback, subscribe_all
from iot_gateway.ratelimit import DeviceRateLimiter
from iot_gateway.sink import KafkaSink, kafka_producer

log = logging.getLogger("iot_gateway")

RECEIVE_BATCH = 256
"""Most messages handled per turn of the event loop (bounds the time between PUBACK flushes)."""

LINGER_STEP_S = 0.001
"""While a batch lingers, how often the queue is looked at."""

SessionTask = Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]
"""Extra work that runs for the life of each MQTT session (e.g. the downlink)."""


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
        self._flow: InboundFlow | None = None  # the current session's read throttle
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
        producer = kafka_producer(self.config, self.config.mqtt.client_id)
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
                sink = KafkaSink(
                    producer, self.metrics, leader_stall_s=self.config.kafka.leader_stall_s
                )
                try:
                    await self._pump(client, sink)
                finally:
                    await sink.close()
        finally:
            await producer.stop()

    async def _pump(self, client: aiomqtt.Client, sink: KafkaSink) -> None:
        acked = self.metrics.acked

        def send_ack(mid: int) -> None:
            puback(client, mid)
            acked.inc()

        window: AckWindow[int] = AckWindow(send_ack)
        self._flow = InboundFlow(
            client, self.config.mqtt.receive_maximum, self.metrics.mqtt_paused.set
        )
        receive = asyncio.create_task(self._receive(client, sink, window))
        extras = [asyncio.create_task(task(client)) for task in self._session_tasks]
        stop = asyncio.create_task(self._stopping.wait())
        watched: set[asyncio.Future[Any]] = {receive, stop, sink.failed, *extras}
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            receive.cancel()
            for future in (receive, *extras):
                if future.done() and not future.cancelled():
                    error = future.exception()
                    if error is not None:
                        raise error
            await self._drain(window, sink)
        finally:
            self._flow.resume()
            self._flow = None
            for task in (receive, stop, *extras):
                task.cancel()
            await asyncio.gather(receive, stop, *extras, return_exceptions=True)

    async def _drain(self, window: AckWindow[int], sink: KafkaSink) -> None:
        """Waits for in-flight records before disconnecting (bounded by the request timeout)."""
        if not sink.failed.done():
            await sink.drain(self.config.kafka.request_timeout_ms / 1000)
        if sink.failed.done():
            sink.failed.result()
        log.info("drained: %d message(s) left unacknowledged for redelivery", len(window))

    async def _receive(
        self, client: aiomqtt.Client, sink: KafkaSink, window: AckWindow[int]
    ) -> None:
        received: dict[str, Counter] = {}  # route -> its child counter, looked up once
        linger_s = self.config.kafka.linger_ms / 1000
        async with contextlib.aclosing(_batches(client, linger_s)) as batches:
            async for batch in batches:
                await self._handle(batch, sink, window, received)
                if sink.failed.done():
                    return
                if self._flow is not None:
                    self._flow.update(len(window))

    async def _handle(
        self,
        batch: list[aiomqtt.Message],
        sink: KafkaSink,
        window: AckWindow[int],
        received: dict[str, Counter],
    ) -> None:
        """Admits and decides each message of ``batch`` in order, then produces the records."""
        metrics, ingest, dlq_topic = self.metrics, self.ingest, self.config.kafka.dlq_topic
        max_payload = self.config.limits.max_payload_bytes
        counts: dict[str, int] = {}
        try:
            for message in batch:
                if sink.failed.done():
                    return
                received_at = received_now()
                topic = message.topic.value
                payload = message.payload
                stamp = int(received_at * 1000)
                result = ingest.process(topic, payload, stamp)
                while isinstance(result, Throttled):  # back-pressure: the session waits
                    metrics.throttled.inc(result.wait_s)
                    await asyncio.sleep(result.wait_s)
                    result = ingest.process(topic, payload, stamp)
                if isinstance(result, Rejected):
                    metrics.rejected.labels(result.reason).inc()
                record = kafka_record(
                    result, topic, payload, stamp, dlq_topic=dlq_topic, keep=max_payload
                )
                if message.qos > 0:
                    sink.put(record, self._completer(window, window.admit(message.mid)))
                else:
                    sink.put(record, _ignore)
                name = result.route or "-"
                counts[name] = counts.get(name, 0) + 1
            await sink.flush()
        finally:
            for name, count in counts.items():
                counter = received.get(name)
                if counter is None:
                    counter = received[name] = metrics.received.labels(name)
                counter.inc(count)
            metrics.in_flight.set(len(window))

    def _completer(
        self, window: AckWindow[int], slot: Slot[int]
    ) -> Callable[[BaseException | None], None]:
        """Completes ``slot`` once its record is acknowledged; a failure fails the sink, which
        ends the session (nothing after it is acknowledged)."""

        def done(error: BaseException | None) -> None:
            if error is None:
                window.complete(slot)
                if self._flow is not None:
                    self._flow.update(len(window))

        return done


def _ignore(error: BaseException | None) -> None:
    """QoS 0 messages are acknowledged to nobody."""


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
