"""One edge connection driven without sockets: the acknowledgement rules, in order.

The connection runs against the real ``EdgeServer`` logic (logins off, real ingest and
codecs) with a recording transport and a sink that completes records when the test says,
so "Kafka acknowledged record 2 before record 1" is a line of the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import mqtt5
import pytest

from contracts.avro import SchemaCatalog
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import GatewayConfig
from iot_gateway.edge.connection import EdgeConnection
from iot_gateway.edge.server import EdgeServer
from iot_gateway.ingest import KafkaRecord
from tests.fakes import InMemorySchemas

SUBJECT = "iot.telemetry.v1-value"


class Transport(asyncio.Transport):
    """Records what the connection writes and whether it reads, closes or aborts."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.reading = True
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def packets(self) -> list[mqtt5.Packet]:
        """What the server sent, decoded as MQTT 5, and forgotten."""
        found, view = [], memoryview(bytes(self.out))
        while view:
            packet, used = mqtt5.read(view)
            found.append(packet)
            view = view[used:]
        self.out.clear()
        return found


class Sink:
    """Keeps every record with its callback until the test completes it."""

    def __init__(self, max_in_flight: int = 1_000) -> None:
        self.records: list[tuple[KafkaRecord, Callable[[BaseException | None], object]]] = []
        self.max_in_flight = max_in_flight
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def saturated(self) -> bool:
        return len(self.records) >= self.max_in_flight

    def when_relieved(self, callback: Callable[[], object]) -> None:
        pass

    def put(
        self,
        record: KafkaRecord,
        done: Callable[[BaseException | None], object],
        _: float,
        fence: object = None,
    ) -> None:
        self.records.append((record, done))

    def ack(self, index: int, error: BaseException | None = None) -> None:
        self.records[index][1](error)


@pytest.fixture
def server() -> EdgeServer:
    config = GatewayConfig(
        mode="direct",
        routes=[
            {
                "name": "telemetry",
                "filter": "devices/+/telemetry",
                "kafka_topic": "t",
                "subject": SUBJECT,
            }
        ],
        policy={"enabled": False},
        edge={"receive_maximum": 3, "topic_alias_maximum": 2, "sessions_topic": None},
    )
    schemas = InMemorySchemas()
    codec = SubjectCodec(schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT)))
    return EdgeServer(config, {SUBJECT: codec})


@pytest.fixture
async def sink(server: EdgeServer) -> Sink:
    fake = Sink()
    server._sink = fake  # type: ignore[assignment]  # the sink is the test's
    server._servers = [object()]  # type: ignore[list-item]  # "listening": CONNECT is answered
    return fake


def _connected(server: EdgeServer, transport: Transport) -> EdgeConnection:
    connection = EdgeConnection(server)
    connection.connection_made(transport)
    connection.data_received(mqtt5.ConnectPacket("dev-1", username="dev-1").write())
    (connack,) = transport.packets()
    assert isinstance(connack, mqtt5.ConnAckPacket)
    assert connack.reason_code == mqtt5.ConnAckReasonCode.SUCCESS
    return connection


def _publish(packet_id: int, seq: int, qos: int = 1, **extra: Any) -> bytes:
    topic = extra.pop("topic", "devices/dev-1/telemetry")
    payload = json.dumps({"seq": seq, "metrics": {"t": 1.0}}).encode()
    return mqtt5.PublishPacket(
        topic, payload, qos=mqtt5.QoS(qos), packet_id=packet_id or None, **extra
    ).write()


async def test_acknowledgements_wait_for_kafka_and_keep_packet_order(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(_publish(1, 1) + _publish(2, 2))
    assert transport.packets() == []  # nothing acknowledged before Kafka
    sink.ack(1)  # Kafka acknowledged the second record first
    assert transport.packets() == []
    sink.ack(0)
    acks = transport.packets()
    assert [a.packet_id for a in acks] == [1, 2]  # type: ignore[union-attr]
    assert all(isinstance(a, mqtt5.PubAckPacket) for a in acks)


async def test_a_failed_record_closes_the_connection_without_any_later_acknowledgement(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(_publish(1, 1) + _publish(2, 2))
    sink.ack(0, RuntimeError("broker gone"))
    sink.ack(1)
    assert transport.aborted
    assert transport.packets() == []


async def test_qos2_is_received_once_and_released_with_pubcomp(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(_publish(7, 1, qos=2))
    sink.ack(0)
    (pubrec,) = transport.packets()
    assert isinstance(pubrec, mqtt5.PubRecPacket)
    connection.data_received(_publish(7, 1, qos=2, duplicate=True))  # PUBREC was lost
    assert len(sink.records) == 1  # not ingested again
    assert isinstance(transport.packets()[0], mqtt5.PubRecPacket)
    connection.data_received(mqtt5.PubRelPacket(7).write())
    (pubcomp,) = transport.packets()
    assert isinstance(pubcomp, mqtt5.PubCompPacket)
    assert pubcomp.reason_code == mqtt5.PubCompReasonCode.SUCCESS


async def test_more_than_receive_maximum_in_flight_is_a_protocol_error(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(b"".join(_publish(n, n) for n in (1, 2, 3)))
    assert not transport.closed
    connection.data_received(_publish(4, 4))
    (disconnect,) = transport.packets()
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert disconnect.reason_code == mqtt5.DisconnectReasonCode.RECEIVE_MAX_EXCEEDED
    assert transport.closed
    assert len(sink.records) == 3


async def test_qos0_does_not_count_against_receive_maximum(server: EdgeServer, sink: Sink) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(b"".join(_publish(n, n) for n in (1, 2, 3)))
    connection.data_received(_publish(0, 9, qos=0))
    assert not transport.closed
    assert len(sink.records) == 4


async def test_topic_aliases_resolve_and_abuse_disconnects(server: EdgeServer, sink: Sink) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    connection.data_received(_publish(1, 1, topic_alias=1))
    connection.data_received(_publish(2, 2, topic="", topic_alias=1))
    topics = {dict(record.headers)["mqtt_topic"] for record, _ in sink.records}
    assert topics == {b"devices/dev-1/telemetry"}
    connection.data_received(_publish(3, 3, topic_alias=5))  # above topic_alias_maximum (2)
    (disconnect,) = transport.packets()
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert disconnect.reason_code == mqtt5.DisconnectReasonCode.TOPIC_ALIAS_INVALID


async def test_a_rejected_message_is_dead_lettered_and_its_puback_says_why(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    bad = mqtt5.PublishPacket(
        "devices/dev-1/telemetry", b"{not json", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=1
    )
    connection.data_received(bad.write())
    ((record, _),) = sink.records
    assert record.topic == server.dlq_topic
    assert dict(record.headers)["reason"] == b"invalid_json"
    sink.ack(0)
    (puback,) = transport.packets()
    assert isinstance(puback, mqtt5.PubAckPacket)
    assert puback.reason_code == mqtt5.PubAckReasonCode.PAYLOAD_FORMAT_INVALID


async def test_a_packet_split_across_reads_and_a_garbage_one_after(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = _connected(server, transport)
    data = _publish(1, 1)
    for byte in data:  # one byte per read
        connection.data_received(bytes([byte]))
    assert len(sink.records) == 1
    connection.data_received(b"\x30\xff\xff\xff\xff\x01")  # a 5-byte remaining length
    (disconnect,) = transport.packets()
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert disconnect.reason_code == mqtt5.DisconnectReasonCode.MALFORMED_PACKET
    assert transport.closed
    assert server.metrics.protocol_errors.labels("0x81")._value.get() == 1


async def test_a_newer_connection_takes_the_session_over(server: EdgeServer, sink: Sink) -> None:
    old, new = Transport(), Transport()
    _connected(server, old)
    _connected(server, new)
    (disconnect,) = old.packets()
    assert isinstance(disconnect, mqtt5.DisconnectPacket)
    assert disconnect.reason_code == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
    assert old.closed
    assert not new.closed


async def test_a_connect_while_kafka_is_down_is_refused(server: EdgeServer, sink: Sink) -> None:
    sink.failed.set_exception(RuntimeError("Kafka is down"))
    sink.failed.exception()
    transport = Transport()
    connection = EdgeConnection(server)
    connection.connection_made(transport)
    connection.data_received(mqtt5.ConnectPacket("dev-1").write())
    (connack,) = transport.packets()
    assert isinstance(connack, mqtt5.ConnAckPacket)
    assert connack.reason_code == mqtt5.ConnAckReasonCode.SERVER_UNAVAILABLE
    assert transport.closed


def _v311_publish(packet_id: int, seq: int) -> bytes:
    topic = b"devices/dev-3/telemetry"
    payload = json.dumps({"seq": seq}).encode()
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return bytes((0x32, len(body))) + body


async def test_a_311_connection_is_not_read_while_its_window_is_full(
    server: EdgeServer, sink: Sink
) -> None:
    transport = Transport()
    connection = EdgeConnection(server)
    connection.connection_made(transport)
    client_id = b"dev-3"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    connection.data_received(bytes((0x10, len(body))) + body)
    assert transport.out == b"\x20\x02\x00\x00"  # CONNACK accepted, 3.1.1 form
    transport.out.clear()
    connection.data_received(b"".join(_v311_publish(n, n) for n in (1, 2, 3, 4)))
    assert not transport.reading  # receive_maximum (3) unacknowledged: stop reading
    assert len(sink.records) == 3  # the fourth waits in the buffer, unread
    for index in range(3):
        sink.ack(index)
    assert transport.reading
    assert len(sink.records) == 4  # read again once acknowledgements went out
    assert transport.out == b"".join(b"\x40\x02\x00" + bytes((n,)) for n in (1, 2, 3))
