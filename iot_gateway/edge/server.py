"""The edge: the gateway as the devices' own MQTT server (``mode: direct``).

One process serves plain MQTT and MQTT over TLS (``edge`` settings), checks every login
against the password file the policy renders, every PUBLISH and SUBSCRIBE against the
policy, and hands every message to one :class:`~iot_gateway.sink.KafkaSink`. The
acknowledgement rules are the connection's (``connection.py``); this module owns what is
shared by all connections: the listeners, the sink and its producer, sessions, logins,
keep-alive and connect timeouts.

While Kafka cannot take records the process is not ready and refuses new connections with
CONNACK 0x88 (3.1.1: 3, server unavailable): devices keep their messages and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mqtt5
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from iot_gateway.backoff import Backoff
from iot_gateway.clock import received_now
from iot_gateway.config import GatewayConfig
from iot_gateway.downlink import Command, CommandReader, DecodeCommand
from iot_gateway.edge.connection import EdgeConnection
from iot_gateway.edge.directory import Claimed, SessionRecord, Takeover
from iot_gateway.edge.downlink import EdgeDownlink
from iot_gateway.edge.session_log import SessionLog, SessionLogError
from iot_gateway.edge.sessions import Outgoing, Session, SessionTable
from iot_gateway.edge.wire import PacketTooLarge
from iot_gateway.ingest import (
    Accepted,
    Authorize,
    Ingest,
    KafkaRecord,
    RecordCodec,
    Rejected,
    Throttled,
    allow_all,
    kafka_record,
)
from iot_gateway.metrics import GatewayMetrics
from iot_gateway.ratelimit import DeviceRateLimiter
from iot_gateway.sink import KafkaSink, kafka_producer
from security.logins import PasswordFile

log = logging.getLogger("iot_gateway.edge")

SubscribeAuthorize = Callable[[str, str], str | None]
"""(principal, topic filter) -> None when allowed, else the reason it is not."""

SWEEP_EVERY_S = 1.0
"""How often keep-alives, connect timeouts, session expiry and revoked logins are checked."""

MAX_DOWNLINK_QOS = 1
"""Commands reach devices at QoS 1 at most."""


def _allow_subscribe(principal: str, topic_filter: str) -> str | None:
    return None


class EdgeServer:
    """One gateway process in direct mode; ``run`` until ``stop``."""

    def __init__(
        self,
        config: GatewayConfig,
        codecs: Mapping[str, RecordCodec],
        *,
        authorize: Authorize = allow_all,
        authorize_subscribe: SubscribeAuthorize = _allow_subscribe,
        logins: PasswordFile | None = None,
        decode_command: DecodeCommand | None = None,
        presence_codec: RecordCodec | None = None,
    ) -> None:
        self.config = config
        self.settings = config.edge
        self.metrics = GatewayMetrics()
        self.rate_limiter = DeviceRateLimiter(
            config.limits.device_rate_per_s, config.limits.device_burst, time.monotonic
        )
        self.ingest = Ingest(config.routes, codecs, config.limits, self.rate_limiter, authorize)
        self._authorize_subscribe = authorize_subscribe
        self.logins = logins
        self.dlq_topic = config.kafka.dlq_topic
        self.keep_bytes = config.limits.max_payload_bytes
        self.sessions = SessionTable()
        self._presence_codec = presence_codec
        self.connections: set[EdgeConnection] = set()
        self._received: dict[str, Counter] = {}
        self._sink: KafkaSink | None = None
        self._stopping = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self.ports: dict[str, int] = {}
        """The listening ports, by "mqtt"/"mqtts" (useful with port 0)."""
        self._claims: set[asyncio.Future[None]] = set()
        self._log = (
            None
            if config.edge.sessions_topic is None
            else SessionLog(
                config,
                config.edge.sessions_topic,
                self._taken_over,
                lease_s=config.edge.fence_lease_s,
                pause_s=config.edge.fence_pause_s,
            )
        )
        self._downlink = (
            None
            if decode_command is None
            else EdgeDownlink(
                config,
                CommandReader(config, decode_command, self.metrics),
                self.deliver,
                self.metrics,
            )
        )

    # -- what connections use ------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Listening, and Kafka takes records."""
        sink = self._sink
        return bool(self._servers) and sink is not None and not sink.failed.done()

    @property
    def downlink_reading(self) -> bool:
        """The command consumer is reading (commands published from now on are delivered)."""
        return self._downlink is not None and self._downlink.reading

    @property
    def sink(self) -> KafkaSink:
        """The current sink (connections are accepted only once one runs)."""
        sink = self._sink
        if sink is None:
            raise RuntimeError("no Kafka sink yet: connections are accepted only once it runs")
        return sink

    def attach(self, connection: EdgeConnection) -> None:
        self.connections.add(connection)
        self.metrics.connections.set(len(self.connections))

    def detach(self, connection: EdgeConnection) -> None:
        self.connections.discard(connection)
        self.metrics.connections.set(len(self.connections))
        if connection.session is not None:
            session = connection.session
            self.sessions.release(session, connection, time.monotonic(), self._session_now_ms())
            if not connection.taken_over and session.holder is None:
                self._persist(session)
            if not connection.taken_over:
                self._presence(connection, "DISCONNECTED", connection.end_reason)

    def _presence(self, connection: EdgeConnection, kind: str, reason: str | None) -> None:
        """A ``DeviceEvent`` (CONNECTED or DISCONNECTED) of the connection's principal."""
        codec, sink = self._presence_codec, self._sink
        principal = connection.principal
        if codec is None or sink is None or sink.failed.done() or principal is None:
            return
        now = time.time()
        stamp = int(now * 1000)
        event_id = f"{principal}:{kind.lower()}:{stamp}:{self.settings.instance}"
        value = codec.encode(
            {
                "event_id": event_id,
                "device_id": principal,
                "kind": kind,
                "ts": stamp,
                "principal": principal,
                "reason": reason,
                "attributes": {
                    "client_id": connection.client_id or "",
                    "protocol": {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(connection.version, "?"),
                    "peer": connection.peer,
                    "gateway": self.settings.instance,
                },
            }
        )
        key = principal.encode()
        headers = (  # what a reader needs without decoding (streams.query.presence)
            ("event_id", event_id.encode()),
            ("device_id", key),
            ("kind", kind.encode()),
            ("ts", str(stamp).encode()),
            *((("reason", reason.encode()),) if reason else ()),
        )
        sink.put(KafkaRecord(self.settings.presence_topic, key, value, headers), _ignore)

    def record_of(
        self, result: Accepted | Rejected, topic: str, payload: bytes, stamp: int
    ) -> KafkaRecord:
        """The Kafka record of a decided message (its DLQ record if rejected), counted."""
        if isinstance(result, Rejected):
            self.metrics.rejected.labels(result.reason).inc()
        name = result.route or "-"
        counter = self._received.get(name)
        if counter is None:
            counter = self._received[name] = self.metrics.received.labels(name)
        counter.inc()
        return kafka_record(
            result, topic, payload, stamp, dlq_topic=self.dlq_topic, keep=self.keep_bytes
        )

    def connect(self, connection: EdgeConnection, packet: mqtt5.ConnectPacket) -> None:
        """Answers a CONNECT: checks the login, claims the session (with a sessions topic:
        across every gateway process, before the CONNACK), opens or resumes it, sends CONNACK.
        """
        if not self.ready:
            connection.refuse(0x88, "Kafka is not available")
            return
        if packet.authentication_method is not None:
            connection.refuse(0x8C, "enhanced authentication is not supported")
            return
        principal = self._login(connection, packet)
        if principal is None:
            return
        client_id, assigned = packet.client_id, None
        if not client_id:
            if not packet.clean_start:
                connection.refuse(0x85, "an empty client id needs a clean session")
                return
            client_id = assigned = f"auto-{uuid.uuid4().hex}"
        settings = self.settings
        if connection.version == 5:
            expiry = min(packet.session_expiry_interval, settings.max_session_expiry_s)
        else:
            expiry = 0 if packet.clean_start else settings.max_session_expiry_s
        request = _Connect(connection, packet, principal, client_id, assigned, expiry)
        log_ = self._log
        if log_ is None:
            self._open(request, None)
            return
        known = log_.directory.get(client_id)
        if (
            known is not None
            and known.principal != principal
            and not known.expired(self._session_now_ms())
        ):
            connection.refuse(0x87, f"client id {client_id!r} belongs to another principal")
            return
        connection.hold_for_connect()
        task = asyncio.ensure_future(self._claim_and_open(log_, request))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claim_and_open(self, log_: SessionLog, request: _Connect) -> None:
        try:
            claimed = await log_.claim(
                request.client_id,
                request.principal,
                clean_start=request.packet.clean_start,
                expiry_s=request.expiry,
            )
        except (SessionLogError, KafkaError, TimeoutError) as exc:
            log.warning("session of %r not claimed: %s", request.client_id, exc)
            request.connection.refuse(0x88, "the session could not be claimed")
            return
        if request.connection.closed:
            return
        self._open(request, claimed)
        request.connection.release_after_connect()

    def _open(self, request: _Connect, claimed: Claimed | None) -> None:
        connection, packet, settings = request.connection, request.packet, self.settings
        opened = self.sessions.open(
            request.client_id,
            request.principal,
            clean_start=packet.clean_start,
            expiry_s=request.expiry,
            holder=connection,
        )
        if opened is None:
            connection.refuse(0x87, f"client id {request.client_id!r} belongs to another principal")
            return
        session, present = opened
        if claimed is not None:
            session.epoch = claimed.record.epoch
            if claimed.present and not present:  # resumed from another process
                session.subscriptions.update(claimed.record.subscriptions)
                session.outgoing.update(claimed.record.outgoing)
            present = present or claimed.present
        keep_alive = packet.keep_alive
        server_keep_alive = None
        if keep_alive == 0 or keep_alive > settings.max_keepalive_s:
            keep_alive = settings.max_keepalive_s
            server_keep_alive = keep_alive if connection.version == 5 else None
        connection.principal, connection.client_id = request.principal, request.client_id
        connection.keep_alive_s = keep_alive
        connection.accept(session, present, packet.will)
        connection.send(
            mqtt5.ConnAckPacket(
                session_present=present,
                assigned_client_id=request.assigned,
                server_keep_alive=server_keep_alive,
                receive_max=settings.receive_maximum,
                topic_alias_max=settings.topic_alias_maximum,
                max_qos=mqtt5.QoS.EXACTLY_ONCE,
                retain_available=False,
                max_packet_size=settings.max_packet_bytes,
                wildcard_subscription_available=True,
                subscription_id_available=False,
                shared_subscription_available=False,
                session_expiry_interval=request.expiry if connection.version == 5 else None,
            )
        )
        self.metrics.connects.labels("0x00").inc()
        self._presence(connection, "CONNECTED", None)
        self._persist(session)
        now_ms = _now_ms()
        for packet_id, outgoing in list(session.outgoing.items()):  # sent again, or at last
            if outgoing.expires_at is not None and outgoing.expires_at < now_ms:
                del session.outgoing[packet_id]
                self.metrics.downlink.labels("expired").inc()
                continue
            connection.send(outgoing.publish(packet_id, again=present))

    def _session_now_ms(self) -> int:
        """Now, for session expiry: the sessions log's clock (see ``directory.LogClock``)."""
        if self._log is None:
            return _now_ms()
        return self._log.directory.clock.now_ms()

    def _persist(self, session: Session) -> None:
        """Writes the session's state to the sessions topic (when there is one)."""
        if self._log is None or session.epoch < 0:
            return
        self._log.update(
            SessionRecord(
                session.client_id,
                session.principal,
                self.settings.instance,
                session.epoch,
                session.holder is not None,
                session.expiry_s,
                session.disconnected_at_ms,
                dict(session.subscriptions),
                dict(session.outgoing),
            )
        )

    def _taken_over(self, takeover: Takeover) -> None:
        """A claim was folded: a connection here with an older epoch loses its session."""
        session = self.sessions.get(takeover.client_id)
        if session is None or session.epoch >= takeover.epoch:
            return
        if session.holder is not None:
            session.holder.take_over()
        if takeover.owner != self.settings.instance:
            self.sessions.drop(session)  # it lives in another process now

    def deliver(self, command: Command) -> int:
        """Hands ``command`` to every session here subscribed to its topic: sent at once to a
        connected client, kept for one that is away. Returns how many sessions took it."""
        taken = 0
        for session in self.sessions.subscribers(command.topic):
            packet_id = session.next_packet_id()
            if packet_id is None:  # 65,535 commands unacknowledged: the client is not reading
                self.metrics.downlink.labels("dropped").inc()
                continue
            outgoing = Outgoing(
                command.topic, command.payload, command.command_id, command.expires_at
            )
            session.outgoing[packet_id] = outgoing
            if session.holder is not None:
                session.holder.send(outgoing.publish(packet_id, again=False))
                self.metrics.downlink.labels("delivered").inc()
            else:
                self.metrics.downlink.labels("queued").inc()
            self._persist(session)  # a device reconnecting anywhere gets it
            taken += 1
        return taken + self._queue_in_directory(command)

    def _queue_in_directory(self, command: Command) -> int:
        """Queues ``command`` in the sessions topic for sessions this process last held but
        no longer has in memory (it restarted): the device gets it wherever it reconnects."""
        if self._log is None:
            return 0
        queued = 0
        for record in self._log.directory.waiting_for(self.settings.instance, command.topic):
            if self.sessions.get(record.client_id) is not None:
                continue  # held in memory: queued above
            if len(record.outgoing) >= 65_535:
                self.metrics.downlink.labels("dropped").inc()
                continue
            packet_id = next(p for p in range(1, 65_536) if p not in record.outgoing)
            outgoing = dict(record.outgoing)
            outgoing[packet_id] = Outgoing(
                command.topic, command.payload, command.command_id, command.expires_at
            )
            self._log.update(dataclasses.replace(record, outgoing=outgoing))
            self.metrics.downlink.labels("queued").inc()
            queued += 1
        return queued

    def _login(self, connection: EdgeConnection, packet: mqtt5.ConnectPacket) -> str | None:
        """The principal the CONNECT logs in as, or None (and the CONNECT refused)."""
        username, password = packet.username, packet.password
        if self.logins is None:  # policy.enabled=false: anyone, as whom they say
            return username or packet.client_id or "anonymous"
        if username is None or password is None or not self.logins.verify(username, password):
            connection.refuse(0x86, f"bad username or password for {username!r}")
            return None
        return username

    def subscribe(
        self, connection: EdgeConnection, session: Session, packet: mqtt5.SubscribePacket
    ) -> None:
        """Grants each filter the policy lets the session's principal subscribe to (QoS 1 at
        most); the others get 0x87 (3.1.1: 0x80)."""
        principal = session.principal
        codes: list[mqtt5.SubAckReasonCode] = []
        for topic_filter in packet.topic_filters:
            pattern = topic_filter.pattern
            if pattern.startswith("$share/"):
                codes.append(mqtt5.SubAckReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
                continue
            denied = self._authorize_subscribe(principal, pattern)
            if denied is not None:
                log.info("%s may not subscribe to %r: %s", principal, pattern, denied)
                codes.append(mqtt5.SubAckReasonCode.NOT_AUTHORIZED)
                continue
            qos = min(int(topic_filter.max_qos), MAX_DOWNLINK_QOS)
            session.subscriptions[pattern] = qos
            codes.append(mqtt5.SubAckReasonCode(qos))
        self._persist(session)
        connection.send(mqtt5.SubAckPacket(packet.packet_id, codes))

    def unsubscribe(
        self, connection: EdgeConnection, session: Session, packet: mqtt5.UnsubscribePacket
    ) -> None:
        codes = [
            mqtt5.UnsubAckReasonCode.SUCCESS
            if session.subscriptions.pop(pattern, None) is not None
            else mqtt5.UnsubAckReasonCode.NO_SUBSCRIPTION_EXISTED
            for pattern in packet.patterns
        ]
        self._persist(session)
        connection.send(mqtt5.UnsubAckPacket(packet.packet_id, codes))

    def command_acknowledged(self, session: Session, packet_id: int) -> None:
        """The client acknowledged command ``packet_id``: it is not sent again."""
        if session.outgoing.pop(packet_id, None) is not None:
            self.metrics.downlink.labels("acknowledged").inc()
            self._persist(session)

    def publish_will(self, connection: EdgeConnection, will: mqtt5.Will) -> None:
        """An abnormal end publishes the will, through the same pipeline as any message."""
        if self._sink is None or self._sink.failed.done():
            return
        received_at = received_now()
        stamp = int(received_at * 1000)
        payload = will.payload or b""
        result = self.ingest.process(will.topic, payload, stamp, connection.principal)
        if isinstance(result, Throttled):
            return  # a will is not worth holding a closed connection for
        self._sink.put(self.record_of(result, will.topic, payload, stamp), _ignore)

    def dead_letter_too_large(
        self, connection: EdgeConnection, rest: memoryview, exc: PacketTooLarge
    ) -> None:
        """Writes a DLQ record naming the oversized PUBLISH (topic if it arrived, no payload),
        then disconnects the client with 0x95 once Kafka has it."""
        topic = _topic_of(rest)
        rejected = Rejected("packet_too_large", str(exc), None, connection.principal)
        self.metrics.rejected.labels("packet_too_large").inc()
        record = kafka_record(
            rejected, topic, b"", int(time.time() * 1000), dlq_topic=self.dlq_topic, keep=0
        )

        def done(error: BaseException | None) -> None:
            connection.disconnect(0x95, str(exc))

        self.sink.put(record, done)

    # -- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks ``run`` to drain and return; safe to call from a signal handler."""
        self._stopping.set()

    async def run(self) -> None:
        """Serves until ``stop``: listeners up while a producer runs; a failed producer is
        replaced with backoff (its connections were closed without acknowledgements)."""
        background = [asyncio.create_task(self._sweep())]
        if self._downlink is not None:
            background.append(asyncio.create_task(self._downlink.run()))
        backoff = Backoff()
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    await self._produce_until_failure()
                except Exception as exc:
                    self.metrics.reconnects.labels("kafka").inc()
                    log.warning("Kafka producer ended: %s: %s", type(exc).__name__, exc)
                if time.monotonic() - started > 30:
                    backoff.reset()
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), backoff.next_delay())
        finally:
            for task in background:
                task.cancel()
            await self._close_listeners()
            for connection in list(self.connections):
                connection.disconnect(0x8B, "the server is shutting down")
            await asyncio.gather(*background, return_exceptions=True)

    async def _produce_until_failure(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            sessions = self._log
            if sessions is not None:
                await sessions.start()
                stack.push_async_callback(sessions.stop)
            producer = kafka_producer(self.config, self.settings.instance)
            await producer.start()
            stack.push_async_callback(producer.stop)
            self.metrics.kafka_connected.set(1)
            stack.callback(self.metrics.kafka_connected.set, 0)
            sink = KafkaSink(
                producer,
                self.metrics,
                linger_s=self.config.kafka.linger_ms / 1000,
                max_in_flight=self.settings.max_in_flight,
                gate=None if sessions is None else sessions.until_fresh,
                leader_stall_s=self.config.kafka.leader_stall_s,
            )
            stack.push_async_callback(sink.close)
            self._sink = sink
            tasks = [asyncio.create_task(sink.run())]
            if sessions is not None:
                tasks.append(asyncio.create_task(sessions.run()))
            stack.push_async_callback(_cancel_all, tasks)
            if not self._servers:
                await self._listen()
            await self._serve_until_failure(sink, tasks)

    async def _serve_until_failure(self, sink: KafkaSink, tasks: list[asyncio.Task[None]]) -> None:
        """Returns on ``stop`` (after draining) and raises when the sink or a task fails."""
        stop = asyncio.create_task(self._stopping.wait())
        try:
            watched: set[asyncio.Future[Any]] = {stop, sink.failed, *tasks}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if self._stopping.is_set():
            await self._close_listeners()
            left = await sink.drain(self.config.kafka.request_timeout_ms / 1000)
            log.info("drained: %d message(s) left unacknowledged", left)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
        if sink.failed.done():
            sink.failed.result()

    async def _listen(self) -> None:
        settings, loop = self.settings, asyncio.get_running_loop()
        listeners: list[tuple[str, int, ssl.SSLContext | None]] = []
        if settings.port is not None:
            listeners.append(("mqtt", settings.port, None))
        if settings.cert_file is not None and settings.key_file is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(settings.cert_file, settings.key_file)
            listeners.append(("mqtts", settings.tls_port, tls))
        for name, port, context in listeners:
            server = await loop.create_server(
                lambda: EdgeConnection(self),
                settings.host,
                port,
                ssl=context,
                reuse_port=settings.reuse_port,
                backlog=4096,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            self.ports[name] = bound
            for sock in server.sockets:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("%s on %s:%d", name, settings.host, bound)

    async def _close_listeners(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _sweep(self) -> None:
        """Keep-alive and CONNECT timeouts, session expiry, revoked logins; every second."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            now = loop.time()
            users = self.logins.users if self.logins is not None else None
            for connection in list(self.connections):
                if connection.session is None:
                    if now - connection.opened_at > self.settings.connect_timeout_s:
                        connection.abort("no CONNECT in time")
                elif now - connection.last_seen > 1.5 * connection.keep_alive_s:
                    connection.disconnect(0x8D, "keep-alive timeout")
                elif users is not None and connection.principal not in users:
                    connection.disconnect(0x98, "its login was revoked")
            self.sessions.expire(time.monotonic())
            self.metrics.sessions.set(len(self.sessions))
            if self._log is not None:
                for record in self._log.directory.expired(self._session_now_ms()):
                    if record.owner == self.settings.instance:
                        self._log.delete(record.client_id)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class _Connect:
    """A CONNECT that passed the checks, on its way to a session."""

    connection: EdgeConnection
    packet: mqtt5.ConnectPacket
    principal: str
    client_id: str
    assigned: str | None
    expiry: int


def _ignore(error: BaseException | None) -> None:
    """A will or a QoS 0 message: nobody waits for its acknowledgement."""


def _topic_of(rest: memoryview) -> str:
    """The topic of a PUBLISH whose start is in ``rest``, if that much arrived ("" if not)."""
    position = 1
    while position < len(rest) and position < 5 and rest[position] & 0x80:
        position += 1
    position += 1
    if position + 2 > len(rest):
        return ""
    length = int.from_bytes(rest[position : position + 2], "big")
    raw = bytes(rest[position + 2 : position + 2 + length])
    if len(raw) < length:
        return ""
    return raw.decode("utf-8", errors="replace")
