"""One device connection to the edge: MQTT 3.1.1 or 5.0 in, Kafka records out.

Guarantees (for a QoS 1 or 2 PUBLISH):
- Its PUBACK (PUBREC for QoS 2) is written only after Kafka acknowledged its record or its
  DLQ record, and acknowledgements go out in the order the PUBLISH packets arrived.
- If a record cannot be produced, the connection is closed without acknowledging it or
  anything after it: the device sends them again (MQTT's redelivery on reconnect).
- A QoS 2 packet id whose PUBREC went out is remembered by the session until its PUBREL, so
  a PUBLISH resent with that id is acknowledged again and not ingested twice.
- Work is bounded: MQTT 5 clients may have ``receive_maximum`` messages unacknowledged (more
  is a protocol error, 0x93); a 3.1.1 connection is not read while it has that many, and no
  connection is read while the process has ``max_in_flight`` records waiting for Kafka.

Bad input never crashes the server: a malformed packet closes its connection (MQTT 5 with
the reason code), a packet over ``max_packet_bytes`` becomes a DLQ record without its
payload, and everything the ingest pipeline rejects is a DLQ record with its reason (MQTT 5
clients also get the matching PUBACK reason code).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import mqtt5

from iot_gateway.acks import AckWindow, Slot
from iot_gateway.clock import received_now
from iot_gateway.config import EdgeSettings
from iot_gateway.edge.codec import codec_for
from iot_gateway.edge.sessions import Session
from iot_gateway.edge.wire import (
    Codec,
    MalformedPacket,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocol,
    connect_version,
    frame_length,
)
from iot_gateway.ingest import Accepted, Ingest, KafkaRecord, Rejected, Throttled
from iot_gateway.metrics import GatewayMetrics
from iot_gateway.sink import KafkaSink


class Host(Protocol):
    """What a connection needs of its server (``server.EdgeServer``)."""

    settings: EdgeSettings
    metrics: GatewayMetrics
    ingest: Ingest

    @property
    def sink(self) -> KafkaSink: ...

    def attach(self, connection: EdgeConnection) -> None: ...

    def detach(self, connection: EdgeConnection) -> None: ...

    def connect(self, connection: EdgeConnection, packet: mqtt5.ConnectPacket) -> None: ...

    def subscribe(
        self, connection: EdgeConnection, session: Session, packet: mqtt5.SubscribePacket
    ) -> None: ...

    def unsubscribe(
        self, connection: EdgeConnection, session: Session, packet: mqtt5.UnsubscribePacket
    ) -> None: ...

    def command_acknowledged(self, session: Session, packet_id: int) -> None: ...

    def publish_will(self, connection: EdgeConnection, will: mqtt5.Will) -> None: ...

    def dead_letter_too_large(
        self, connection: EdgeConnection, rest: memoryview, exc: PacketTooLarge
    ) -> None: ...

    def record_of(
        self, result: Accepted | Rejected, topic: str, payload: bytes, stamp: int
    ) -> KafkaRecord:
        """The Kafka record of a decided message (its DLQ record if rejected), counted."""
        ...


log = logging.getLogger("iot_gateway.edge")

PUBACK_REASONS = {
    "invalid_topic": 0x90,
    "unknown_route": 0x90,
    "invalid_device_id": 0x90,
    "payload_too_large": 0x97,
    "rate_limited": 0x97,
    "unauthorized": 0x87,
    "device_mismatch": 0x87,
    "invalid_utf8": 0x99,
    "invalid_json": 0x99,
    "not_an_object": 0x99,
    "schema_mismatch": 0x99,
    "invalid_avro": 0x99,
    "packet_too_large": 0x95,
    "implausible_timestamp": 0x99,
}
"""The MQTT 5 PUBACK/PUBREC reason code a device gets for each DLQ reason."""

_PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 3, 4, 5, 6, 7
_SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT, _AUTH = 8, 10, 12, 14, 15
_PINGRESP = b"\xd0\x00"


def _ack(kind: int, packet_id: int, reason: int = 0) -> bytes:
    """PUBACK/PUBREC/PUBCOMP bytes; without a reason code when it is 0 (valid in 3.1.1 and 5)."""
    if reason:
        return bytes((kind << 4, 3, packet_id >> 8, packet_id & 0xFF, reason))
    return bytes((kind << 4, 2, packet_id >> 8, packet_id & 0xFF))


class EdgeConnection(asyncio.Protocol):
    """The asyncio protocol of one client connection (see the module docstring)."""

    def __init__(self, server: Host) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._codec: Codec | None = None
        self.version = 0
        self.principal: str | None = None
        self.client_id: str | None = None
        self.session: Session | None = None
        self.keep_alive_s = 0
        self.last_seen = self._loop.time()
        self.opened_at = self.last_seen
        self._window: AckWindow[bytes] = AckWindow(self._queue_ack)
        self._acks: list[bytes] = []
        self._held = False  # not reading: throttled or back-pressured
        self._closing = False
        self._will: mqtt5.Will | None = None
        self._aliases: dict[int, str] = {}
        self._receive_maximum = server.settings.receive_maximum
        self._connecting = False
        self.end_reason = "connection lost"
        """Why the connection ended, for the DISCONNECTED presence event."""
        self.taken_over = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport
        self._server.attach(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._will is not None:
            will, self._will = self._will, None
            self._server.publish_will(self, will)
        self._server.detach(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = self._loop.time()
        if self._buffer:
            data = self._buffer + data
        self._buffer = b""
        self._consume(data)

    def pause_writing(self) -> None:
        """The device does not read its acknowledgements: stop reading it too."""
        self._hold()

    def resume_writing(self) -> None:
        self._release()

    # -- reading ---------------------------------------------------------------------------

    def _consume(self, data: bytes) -> None:
        position, end = 0, len(data)
        max_size = self._server.settings.max_packet_bytes
        view = memoryview(data)
        try:
            while position < end and not self._held and not self._closing:
                size = frame_length(data, position, max_size)
                if size is None:
                    break
                if not self._packet(view[position : position + size]):
                    break  # throttled: the same packet is read again later
                position += size
        except PacketTooLarge as exc:
            self._too_large(view[position:], exc)
            return
        except MalformedPacket as exc:
            self._protocol_error(exc)
            return
        except Exception:  # a bug must cost this connection only, never the server
            log.exception("closing %s after an internal error", self.client_id or self.peer)
            self._server.metrics.protocol_errors.labels("0x83").inc()
            self.disconnect(0x83, "internal error")
            return
        self._buffer = data[position:]
        if self._acks:
            self._write_acks()

    def _packet(self, frame: memoryview) -> bool:
        """Handles one complete packet; False if it must be read again later (throttled)."""
        codec = self._codec
        if codec is None:
            self._connect(frame)
            return True
        packet = codec.read(frame)
        if isinstance(packet, mqtt5.PublishPacket):
            return self._publish(packet)
        if isinstance(packet, mqtt5.PingReqPacket):
            self._write(_PINGRESP)
        elif isinstance(packet, mqtt5.PubAckPacket):
            self._server.command_acknowledged(self._session(), packet.packet_id)
        elif isinstance(packet, mqtt5.PubRelPacket):
            self._pubrel(packet)
        elif isinstance(packet, mqtt5.SubscribePacket):
            self._server.subscribe(self, self._session(), packet)
        elif isinstance(packet, mqtt5.UnsubscribePacket):
            self._server.unsubscribe(self, self._session(), packet)
        elif isinstance(packet, mqtt5.DisconnectPacket):
            self._disconnect(packet)
        else:  # CONNECT again, PUBREC/PUBCOMP (we never send QoS 2), AUTH, server packets
            raise ProtocolViolation(f"unexpected {type(packet).__name__} from a client")
        return True

    def _session(self) -> Session:
        session = self.session
        if session is None:
            raise ProtocolViolation("no session: the CONNECT was refused")
        return session

    def _connect(self, frame: memoryview) -> None:
        self.version = version = connect_version(frame)
        codec = codec_for(version)
        packet = codec.read(frame)
        if not isinstance(packet, mqtt5.ConnectPacket):
            raise ProtocolViolation("the first packet must be CONNECT")
        self._codec, self.version = codec, version
        self._server.connect(self, packet)

    def _publish(self, packet: mqtt5.PublishPacket) -> bool:
        server = self._server
        topic = packet.topic
        if self.version == 5:
            topic = self._resolve_alias(topic, packet.topic_alias)
            if packet.retain:
                self.disconnect(0x9A, "retained messages are not supported")
                return True
        qos = int(packet.qos)  # mqtt5's QoS is not an int: QoS 0 is truthy
        packet_id = packet.packet_id or 0
        session = self._session()
        if qos == 2 and packet_id in session.awaiting_release:
            slot = self._window.admit(_ack(_PUBREC, packet_id))
            self._window.complete(slot)  # already in Kafka: acknowledge again, in order
            return True
        if qos and self.version == 5 and len(self._window) >= self._receive_maximum:
            self.disconnect(0x93, f"more than {self._receive_maximum} unacknowledged messages")
            return True
        received_at = received_now()
        stamp = int(received_at * 1000)
        payload = packet.payload
        result = server.ingest.process(topic, payload, stamp, self.principal)
        if isinstance(result, Throttled):
            server.metrics.throttled.inc(result.wait_s)
            self._hold()
            self._loop.call_later(result.wait_s, self._release)
            return False
        reason = 0
        if isinstance(result, Rejected) and self.version == 5:
            reason = PUBACK_REASONS[result.reason]
        record = server.record_of(result, topic, payload, stamp)
        if qos == 0:
            server.sink.put(record, _ignore, self)
        else:
            slot = self._window.admit(_ack(_PUBACK if qos == 1 else _PUBREC, packet_id, reason))
            server.sink.put(record, self._completer(slot, qos, packet_id), self)
            if self.version != 5 and len(self._window) >= self._receive_maximum:
                self._hold()  # 3.1.1 has no Receive Maximum: stop reading instead
        if server.sink.saturated:
            self._hold()
            server.sink.when_relieved(self._release)
        return True

    def _resolve_alias(self, topic: str, alias: int | None) -> str:
        if alias is None:
            return topic
        if alias == 0 or alias > self._server.settings.topic_alias_maximum:
            raise MalformedPacket(f"topic alias {alias} is out of range", 0x94)
        if topic:
            self._aliases[alias] = topic
            return topic
        known = self._aliases.get(alias)
        if known is None:
            raise ProtocolViolation(f"topic alias {alias} was never set")
        return known

    def _completer(self, slot: Slot[bytes], qos: int, packet_id: int) -> _Completion:
        return _Completion(self, slot, qos, packet_id)

    def _pubrel(self, packet: mqtt5.PubRelPacket) -> None:
        session = self._session()
        if packet.packet_id in session.awaiting_release:
            session.awaiting_release.discard(packet.packet_id)
            self._write(_ack(_PUBCOMP, packet.packet_id))
        else:  # 0x92: packet identifier not found
            self._write(_ack(_PUBCOMP, packet.packet_id, 0x92 if self.version == 5 else 0))

    def _disconnect(self, packet: mqtt5.DisconnectPacket) -> None:
        if packet.reason_code != mqtt5.DisconnectReasonCode.DISCONNECT_WITH_WILL_MESSAGE:
            self._will = None
        if self.session is not None and packet.session_expiry_interval is not None:
            self.session.expiry_s = min(
                packet.session_expiry_interval, self._server.settings.max_session_expiry_s
            )
        self._server.metrics.disconnects.labels("client").inc()
        self.end_reason = "the client disconnected"
        self.close()

    # -- flow control ----------------------------------------------------------------------

    def hold_for_connect(self) -> None:
        """Reads nothing more until the session is claimed (the CONNACK comes first)."""
        self._connecting = True
        self._hold()

    def release_after_connect(self) -> None:
        self._connecting = False
        self._release()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def fenced(self) -> bool:
        """Taken over: what this connection received and did not write is dropped."""
        return self.taken_over

    def _hold(self) -> None:
        if not self._held and self._transport is not None:
            self._held = True
            self._transport.pause_reading()

    def _release(self) -> None:
        """Reads again if nothing holds the connection back any more."""
        if not self._held or self._closing or self._transport is None or self._connecting:
            return
        window_full = self.version != 5 and len(self._window) >= self._receive_maximum
        if window_full or self._server.sink.saturated:
            if self._server.sink.saturated:
                self._server.sink.when_relieved(self._release)
            return
        self._held = False
        self._transport.resume_reading()
        if self._buffer:
            data, self._buffer = self._buffer, b""
            self._consume(data)

    # -- writing ---------------------------------------------------------------------------

    def _queue_ack(self, ack: bytes) -> None:
        self._acks.append(ack)

    def _write_acks(self) -> None:
        acks, self._acks = self._acks, []
        self._server.metrics.acked.inc(len(acks))
        self._write(b"".join(acks))

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing and data:
            self._transport.write(data)

    def send(self, packet: mqtt5.Packet) -> None:
        """Writes ``packet`` in this connection's protocol version."""
        if self._codec is not None:
            self._write(self._codec.write(packet))

    def delivered(self, slot: Slot[bytes], qos: int, packet_id: int) -> None:
        """Kafka acknowledged the record of ``slot``: release what is now in order."""
        if self._closing:
            return
        if qos == 2 and self.session is not None:
            self.session.awaiting_release.add(packet_id)
        self._window.complete(slot)
        if self._acks:
            self._write_acks()
        if self._held and len(self._window) <= self._receive_maximum // 2:
            self._release()

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes after writing what is queued (no will unless it is due)."""
        if not self._closing and self._transport is not None:
            self._closing = True
            self._transport.close()

    def abort(self, why: str) -> None:
        """Drops the connection at once: nothing more is acknowledged, the will is sent."""
        if self._transport is not None and not self._closing:
            log.info("closing %s: %s", self.client_id or self.peer, why)
            self.end_reason = why
            self._closing = True
            self._transport.abort()

    def disconnect(self, reason: int, why: str) -> None:
        """Closes the connection; an MQTT 5 client is told ``reason`` first."""
        if self._closing:
            return
        log.info("disconnecting %s: %s (0x%02X)", self.client_id or self.peer, why, reason)
        self.end_reason = why
        self._server.metrics.disconnects.labels(f"0x{reason:02x}").inc()
        if self.version == 5 and self._codec is not None:
            packet = mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode(reason))
            self._write(self._codec.write(packet))
        self.close()

    def take_over(self) -> None:
        self._will = None  # MQTT-3.1.4-3: a takeover is a normal end for the will
        self.taken_over = True  # the device stays connected: no DISCONNECTED event
        self.disconnect(0x8E, "a newer connection took over its session")

    def refuse(self, reason: int, why: str) -> None:
        """Answers CONNECT with a failure CONNACK and closes."""
        log.info("refusing %s: %s (0x%02X)", self.peer, why, reason)
        self._server.metrics.connects.labels(f"0x{reason:02x}").inc()
        self.send(mqtt5.ConnAckPacket(reason_code=mqtt5.ConnAckReasonCode(reason)))
        self.close()

    def accept(self, session: Session, present: bool, will: mqtt5.Will | None) -> None:
        self.session = session
        self._will = will

    def _protocol_error(self, exc: MalformedPacket) -> None:
        self._server.metrics.protocol_errors.labels(f"0x{exc.reason_code:02x}").inc()
        if self._codec is not None:
            self.disconnect(exc.reason_code, str(exc))
        elif isinstance(exc, UnsupportedProtocol):  # 3.1.1's CONNACK "unacceptable version"
            log.info("refusing %s: %s", self.peer, exc)
            self._write(b"\x20\x02\x00\x01")
            self.close()
        elif self.version == 5:  # a malformed MQTT 5 CONNECT: say why
            self._codec = codec_for(5)
            self.refuse(exc.reason_code, str(exc))
        else:
            self.abort(f"malformed CONNECT: {exc}")

    def _too_large(self, rest: memoryview, exc: PacketTooLarge) -> None:
        """A PUBLISH over the limit goes to the DLQ without its payload, then the connection
        closes (MQTT 5: 0x95) once that record is in Kafka."""
        self._server.metrics.protocol_errors.labels("0x95").inc()
        if self._codec is None or rest[0] >> 4 != _PUBLISH:
            self.disconnect(0x95, str(exc))
            return
        self._hold()
        self._server.dead_letter_too_large(self, rest, exc)

    @property
    def peer(self) -> str:
        if self._transport is None:
            return "?"
        peer = self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class _Completion:
    """The ``done`` callback of one acknowledged-QoS record (cheaper than a closure)."""

    __slots__ = ("_connection", "_packet_id", "_qos", "_slot")

    def __init__(
        self, connection: EdgeConnection, slot: Slot[bytes], qos: int, packet_id: int
    ) -> None:
        self._connection, self._slot, self._qos, self._packet_id = connection, slot, qos, packet_id

    def __call__(self, error: BaseException | None) -> None:
        if error is None:
            self._connection.delivered(self._slot, self._qos, self._packet_id)
        else:
            self._connection.abort(f"Kafka did not take a record: {error}")


def _ignore(error: BaseException | None) -> None:
    """QoS 0: nobody is acknowledged, whatever happens."""
