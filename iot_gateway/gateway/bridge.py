"""The gateway's runtime: MQTT messages in, Kafka records out, PUBACK only after Kafka's ack.

Guarantees:
- A message is acknowledged to the broker only after Kafka (acks=all, idempotent producer)
  acknowledged its record, or its DLQ record. PUBACKs go out in arrival order.
- If a produce fails, nothing after it is acknowledged: the connection is dropped and the
  broker redelivers every unacknowledged message from the persistent session. Duplicates
  that this creates carry the same ``event_id`` and are absorbed downstream.
- In-flight work is bounded by the MQTT 5 Receive Maximum; while Kafka is down the gateway
  stops taking messages, the broker queues them, and the gateway reconnects with backoff.
- ``stop()`` (SIGTERM) stops taking messages, waits for in-flight records, then disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiomqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from iot_gateway.gateway.acks import AckWindow, _Slot
from iot_gateway.gateway.config import GatewayConfig
from iot_gateway.gateway.ingest import Accepted, Authorize, Ingest, RecordCodec, allow_all
from iot_gateway.gateway.metrics import GatewayMetrics
from iot_gateway.gateway.mqtt import persistent_client, puback, subscribe_all
from iot_gateway.gateway.ratelimit import DeviceRateLimiter

log = logging.getLogger("iot_gateway.gateway")

SessionTask = Callable[[aiomqtt.Client], Coroutine[Any, Any, None]]
"""Extra work that runs for the life of each MQTT session (e.g. the downlink)."""


class ProduceFailedError(Exception):
    """A record could not be written to Kafka; the session restarts without acknowledging it."""


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
        bootstrap_servers=kafka.bootstrap,
        client_id=f"{kafka.client_id}-{config.mqtt.client_id}",
        enable_idempotence=True,
        acks="all",
        linger_ms=kafka.linger_ms,
        max_batch_size=kafka.max_batch_bytes,
        request_timeout_ms=kafka.request_timeout_ms,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism or "PLAIN",
        sasl_plain_username=kafka.sasl_username,
        sasl_plain_password=(
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        ),
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
        def send_ack(mid: int) -> None:
            puback(client, mid)
            self.metrics.acked.inc()

        window = AckWindow(send_ack)
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
        metrics, ingest, dlq_topic = self.metrics, self.ingest, self.config.kafka.dlq_topic
        async for message in client.messages:
            if failed.done():
                return
            received_at = time.time()
            topic = message.topic.value
            payload = message.payload
            slot = window.admit(message.mid) if message.qos > 0 else None
            result = ingest.process(topic, payload, int(received_at * 1000))
            if isinstance(result, Accepted):
                route = result.kafka_topic
                future = await producer.send(
                    result.kafka_topic,
                    value=result.value,
                    key=result.key,
                    headers=list(result.headers),
                )
            else:
                route = dlq_topic
                metrics.rejected.labels(result.reason).inc()
                future = await producer.send(
                    dlq_topic,
                    value=payload,
                    key=result.device_id.encode() if result.device_id else None,
                    headers=list(result.headers(topic, int(received_at * 1000))),
                )
            metrics.received.labels(result.route or "-").inc()
            metrics.in_flight.set(len(window))
            self._outstanding += 1
            future.add_done_callback(
                functools.partial(self._delivered, window, slot, route, received_at, failed)
            )

    def _delivered(
        self,
        window: AckWindow,
        slot: _Slot | None,
        topic: str,
        received_at: float,
        failed: asyncio.Future[None],
        future: asyncio.Future[object],
    ) -> None:
        self._outstanding -= 1
        if future.cancelled() or future.exception() is not None:
            if not failed.done():
                error = future.exception() if not future.cancelled() else "cancelled"
                failed.set_exception(ProduceFailedError(f"produce to {topic} failed: {error}"))
            return
        self.metrics.produced.labels(topic).inc()
        self.metrics.produce_latency.observe(time.time() - received_at)
        if slot is not None and not failed.done():
            window.complete(slot)
        self.metrics.in_flight.set(len(window))
