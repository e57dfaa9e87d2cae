"""The edge server's MQTT codecs: 3.1.1 read against paho-mqtt's encoder and written for
paho-mqtt's parser, MQTT 5 round trips through mqtt5, framing, the specification's
rejections, and fuzzing in which nothing but MalformedPacket ever escapes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import mqtt5
import paho.mqtt.client as paho
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet as paho_packet

from iot_gateway.edge.codec import codec_for
from iot_gateway.edge.v5 import V5Codec
from iot_gateway.edge.v311 import V311Codec
from iot_gateway.edge.wire import (
    Codec,
    MalformedPacket,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocol,
    connect_version,
    frame_length,
)

QOS = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)
V311, V31, V5 = V311Codec(4), V311Codec(3), V5Codec()
CODECS: tuple[Codec, ...] = (V311, V31, V5)
CODEC_IDS = ["3.1.1", "3.1", "5"]

# --- Helpers -------------------------------------------------------------------------------


class _Wire:
    """Stands in for paho's socket: keeps what paho sends, hands paho what a test feeds it."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.incoming = bytearray()

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.incoming:
            raise BlockingIOError
        chunk = bytes(self.incoming[:size])
        del self.incoming[:size]
        return chunk

    def close(self) -> None:
        pass


def _paho(protocol: int = paho.MQTTv311, **options: Any) -> tuple[paho.Client, _Wire]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol, **options)
    wire = _Wire()
    client._sock = wire
    return client, wire


def paho_sends(act: Callable[[paho.Client], object], **options: Any) -> memoryview:
    """What paho's own encoder writes when ``act`` drives a fresh client."""
    client, wire = _paho(**options)
    act(client)
    return memoryview(bytes(wire.sent))


def paho_publish(
    client: paho.Client,
    packet_id: int,
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
) -> None:
    info = paho.MQTTMessageInfo(packet_id)  # paho marks it published once written
    client._send_publish(packet_id, topic.encode(), payload, qos, retain, dup, info)


def paho_receives(data: bytes) -> tuple[int, bytes]:
    """Frames ``data`` with paho's reader: the fixed-header byte and the body it cut out.

    Fails unless ``data`` is exactly one whole packet."""
    client, wire = _paho()
    wire.incoming += data
    packets: list[tuple[int, bytes]] = []

    def handle() -> paho.MQTTErrorCode:
        packets.append((client._in_packet["command"], bytes(client._in_packet["packet"])))
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    client._packet_handle = handle
    assert client._packet_read() == paho.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert len(packets) == 1
    assert not wire.incoming
    return packets[0]


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        out.append(size & 0x7F | (0x80 if size > 0x7F else 0))
        size >>= 7
        if not size:
            return bytes(out)


def frame(first: int, *fields: bytes) -> memoryview:
    """A packet from its first byte and the bytes of its fields, with the right length."""
    body = b"".join(fields)
    return memoryview(bytes([first]) + _remaining_length(len(body)) + body)


def string(value: str | bytes) -> bytes:
    """An MQTT string or binary field: two-byte length, then the bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw


def rejects(codec: Codec, data: bytes | memoryview) -> MalformedPacket:
    with pytest.raises(MalformedPacket) as caught:
        codec.read(memoryview(data))
    return caught.value


def read_or_reject(codec: Codec, data: bytes | memoryview) -> None:
    """Reading may fail, but only with MalformedPacket (or a subclass)."""
    with contextlib.suppress(MalformedPacket):
        codec.read(memoryview(data))


def members(enum: Any) -> list[Any]:
    """mqtt5's enums are not iterable at run time (nor hashable, nor ints)."""
    return [getattr(enum, name) for name in dir(enum) if name.isupper()]


# --- Strategies ----------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
LEVEL = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#/$"), max_size=8)
TOPIC_NAMES = st.lists(LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
TOPIC_FILTERS = st.builds(
    lambda levels, multi: "/".join([*levels, "#"] if multi else levels),
    st.lists(st.one_of(st.just("+"), LEVEL), min_size=1, max_size=4),
    st.booleans(),
).filter(bool)
PACKET_IDS = st.integers(1, 0xFFFF)
PAYLOADS = st.binary(max_size=300)  # past 127 bytes the remaining length takes two bytes
QOS_LEVELS = st.integers(0, 2)
USER_PROPERTIES = st.lists(st.tuples(TEXT, TEXT), max_size=2)


@st.composite
def wills(draw: st.DrawFn) -> tuple[str, bytes, int, bool] | None:
    if not draw(st.booleans()):
        return None
    return draw(TOPIC_NAMES), draw(PAYLOADS), draw(QOS_LEVELS), draw(st.booleans())


# --- MQTT 3.1.1 and 3.1: reading what paho-mqtt writes -----------------------------------


@given(
    protocol=st.sampled_from([paho.MQTTv311, paho.MQTTv31]),
    client_id=TEXT,
    clean=st.booleans(),
    keep_alive=st.integers(0, 0xFFFF),
    will=wills(),
    username=st.none() | TEXT,
    password=st.none() | st.binary(max_size=20),
)
@example(paho.MQTTv311, "", True, 0, None, None, None)
@example(paho.MQTTv311, "dévice-1", False, 60, ("€/will", b"", 2, True), "ü", b"\x00\xff")
def test_v311_reads_paho_connect(
    protocol: int,
    client_id: str,
    clean: bool,
    keep_alive: int,
    will: tuple[str, bytes, int, bool] | None,
    username: str | None,
    password: bytes | None,
) -> None:
    if protocol == paho.MQTTv31:
        client_id = client_id or "c"  # paho makes one up for MQTT 3.1
    clean = clean or not client_id  # paho refuses an empty client id without clean session

    def connect(client: paho.Client) -> None:
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(*will)
        client._send_connect(keep_alive)

    sent = paho_sends(connect, protocol=protocol, client_id=client_id, clean_session=clean)
    level = connect_version(sent)
    assert level == (3 if protocol == paho.MQTTv31 else 4)
    expected_will = None
    if will is not None:
        topic, message, qos, retain = will
        expected_will = mqtt5.Will(topic, payload=message, qos=QOS[qos], retain=retain)
    assert codec_for(level).read(sent) == mqtt5.ConnectPacket(
        client_id,
        username=username,
        password=password if username is not None else None,
        clean_start=clean,
        will=expected_will,
        keep_alive=keep_alive,
    )


@given(
    topic=TOPIC_NAMES,
    payload=PAYLOADS,
    qos=QOS_LEVELS,
    retain=st.booleans(),
    dup=st.booleans(),
    packet_id=PACKET_IDS,
)
@example("a", b"", 0, False, False, 1)
@example("データ/温度", "ünïcödé".encode(), 2, True, True, 0xFFFF)
def test_v311_reads_paho_publish(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int
) -> None:
    dup = dup and qos > 0
    sent = paho_sends(
        lambda client: paho_publish(client, packet_id, topic, payload, qos, retain, dup)
    )
    assert V311.read(sent) == mqtt5.PublishPacket(
        topic,
        payload,
        qos=QOS[qos],
        retain=retain,
        packet_id=packet_id if qos else None,
        duplicate=dup,
    )


@given(
    packet_id=PACKET_IDS,
    filters=st.lists(st.tuples(TOPIC_FILTERS, QOS_LEVELS), min_size=1, max_size=5),
)
def test_v311_reads_paho_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> None:
    def subscribe(client: paho.Client) -> None:
        client._last_mid = packet_id - 1  # paho numbers its packets from here
        client._send_subscribe(0, [(pattern.encode(), qos) for pattern, qos in filters])

    assert V311.read(paho_sends(subscribe)) == mqtt5.SubscribePacket(
        packet_id,
        [
            mqtt5.TopicFilter(pattern, max_qos=QOS[qos], retain_as_published=False)
            for pattern, qos in filters
        ],
    )


@given(packet_id=PACKET_IDS, patterns=st.lists(TOPIC_FILTERS, min_size=1, max_size=5))
def test_v311_reads_paho_unsubscribe(packet_id: int, patterns: list[str]) -> None:
    def unsubscribe(client: paho.Client) -> None:
        client._last_mid = packet_id - 1
        client._send_unsubscribe(0, [pattern.encode() for pattern in patterns])

    assert V311.read(paho_sends(unsubscribe)) == mqtt5.UnsubscribePacket(packet_id, patterns)


ACKS = [
    ("_send_puback", mqtt5.PubAckPacket),
    ("_send_pubrec", mqtt5.PubRecPacket),
    ("_send_pubrel", mqtt5.PubRelPacket),
    ("_send_pubcomp", mqtt5.PubCompPacket),
]


@pytest.mark.parametrize(("send", "packet"), ACKS)
@given(packet_id=PACKET_IDS)
def test_v311_reads_paho_acknowledgements(
    send: str, packet: Callable[[int], mqtt5.Packet], packet_id: int
) -> None:
    sent = paho_sends(lambda client: getattr(client, send)(packet_id))
    assert V311.read(sent) == packet(packet_id)


def test_v311_reads_paho_pingreq_and_disconnect() -> None:
    assert V311.read(paho_sends(lambda client: client._send_pingreq())) == mqtt5.PingReqPacket()
    assert V311.read(paho_sends(lambda c: c._send_disconnect())) == mqtt5.DisconnectPacket()


# --- MQTT 3.1.1: what the codec writes, read by paho-mqtt ---------------------------------


@given(
    topic=TOPIC_NAMES,
    payload=PAYLOADS,
    qos=QOS_LEVELS,
    retain=st.booleans(),
    dup=st.booleans(),
    packet_id=PACKET_IDS,
    user_properties=USER_PROPERTIES,
)
def test_paho_reads_v311_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int,
    user_properties: list[tuple[str, str]],
) -> None:
    packet = mqtt5.PublishPacket(
        topic,
        payload,
        qos=QOS[qos],
        retain=retain,
        packet_id=packet_id if qos else None,
        duplicate=dup and qos > 0,
        user_properties=user_properties,  # MQTT 5 only: dropped
    )
    header, body = paho_receives(V311.write(packet))
    decoded = paho_packet.decode_publish(header, body, paho.MQTTv311)
    assert header >> 4 == 3
    assert (decoded.topic.decode(), bytes(decoded.payload)) == (topic, payload)
    assert (decoded.qos, decoded.retain, decoded.dup) == (qos, retain, dup and qos > 0)
    assert decoded.mid == (packet_id if qos else 0)


@pytest.mark.parametrize(
    ("packet", "failure", "first", "decode"),
    [
        (
            mqtt5.PubAckPacket,
            mqtt5.PubAckReasonCode.NOT_AUTHORIZED,
            0x40,
            paho_packet.decode_puback,
        ),
        (
            mqtt5.PubRecPacket,
            mqtt5.PubRecReasonCode.QUOTA_EXCEEDED,
            0x50,
            paho_packet.decode_pubrec,
        ),
        (
            mqtt5.PubRelPacket,
            mqtt5.PubRelReasonCode.PACKET_ID_NOT_FOUND,
            0x62,
            paho_packet.decode_pubrel,
        ),
        (
            mqtt5.PubCompPacket,
            mqtt5.PubCompReasonCode.PACKET_ID_NOT_FOUND,
            0x70,
            paho_packet.decode_pubcomp,
        ),
    ],
)
@given(packet_id=PACKET_IDS, failed=st.booleans())
def test_paho_reads_v311_acknowledgements(
    packet: Any, failure: Any, first: int, decode: Any, packet_id: int, failed: bool
) -> None:
    # 3.1.1 acknowledgements have no reason code: a failure's is dropped.
    sent = V311.write(packet(packet_id, reason_code=failure) if failed else packet(packet_id))
    assert sent == bytes([first, 2]) + packet_id.to_bytes(2, "big")
    header, body = paho_receives(sent)
    assert decode(header, body, paho.MQTTv311).mid == packet_id


CONNACK_RETURN_CODES = {
    "SUCCESS": 0,
    "UNSUPPORTED_PROTOCOL_VERSION": 1,
    "CLIENT_ID_NOT_VALID": 2,
    "BAD_USER_NAME_OR_PASSWORD": 4,
    "NOT_AUTHORIZED": 5,
}


@pytest.mark.parametrize("reason", members(mqtt5.ConnAckReasonCode), ids=lambda r: r.name)
@pytest.mark.parametrize("session_present", [False, True])
def test_paho_reads_v311_connack(reason: mqtt5.ConnAckReasonCode, session_present: bool) -> None:
    sent = V311.write(mqtt5.ConnAckPacket(session_present=session_present, reason_code=reason))
    header, body = paho_receives(sent)
    decoded = paho_packet.decode_connack(header, body, paho.MQTTv311)
    return_code = CONNACK_RETURN_CODES.get(reason.name, 3)  # anything else: server unavailable
    assert decoded.rc == return_code
    assert decoded.flags == (1 if session_present and return_code == 0 else 0)  # MQTT-3.2.2-4


@given(
    packet_id=PACKET_IDS,
    reasons=st.lists(st.sampled_from(members(mqtt5.SubAckReasonCode)), min_size=1, max_size=8),
)
def test_paho_reads_v311_suback(packet_id: int, reasons: list[mqtt5.SubAckReasonCode]) -> None:
    header, body = paho_receives(V311.write(mqtt5.SubAckPacket(packet_id, reasons)))
    decoded = paho_packet.decode_suback(header, body, paho.MQTTv311)
    assert decoded.mid == packet_id
    assert decoded.granted_qos == tuple(r.value if r.value <= 2 else 0x80 for r in reasons)


@given(packet_id=PACKET_IDS)
def test_paho_reads_v311_unsuback(packet_id: int) -> None:
    reasons = [mqtt5.UnsubAckReasonCode.NO_SUBSCRIPTION_EXISTED]
    header, body = paho_receives(V311.write(mqtt5.UnsubAckPacket(packet_id, reasons)))
    assert header == 0xB0
    assert paho_packet.decode_unsuback(header, body, paho.MQTTv311).mid == packet_id


def test_v311_writes_pingresp_and_nothing_for_disconnect() -> None:
    assert paho_receives(V311.write(mqtt5.PingRespPacket())) == (0xD0, b"")
    assert V311.write(mqtt5.DisconnectPacket()) == b""


@pytest.mark.parametrize(
    "packet", [mqtt5.PingReqPacket(), mqtt5.ConnectPacket("c"), mqtt5.AuthPacket()], ids=repr
)
def test_v311_refuses_to_write_what_only_a_client_sends(packet: mqtt5.Packet) -> None:
    with pytest.raises(TypeError, match="a server does not send"):
        V311.write(packet)


# --- MQTT 5: round trips through mqtt5 -----------------------------------------------------

REASONS = {
    cls: members(cls)
    for cls in (
        mqtt5.PubAckReasonCode,
        mqtt5.PubRecReasonCode,
        mqtt5.PubRelReasonCode,
        mqtt5.PubCompReasonCode,
        mqtt5.DisconnectReasonCode,
        mqtt5.AuthReasonCode,
        mqtt5.RetainHandling,
    )
}
OPTIONAL_TEXT = st.none() | TEXT
OPTIONAL_BINARY = st.none() | st.binary(max_size=20)


@st.composite
def v5_publishes(draw: st.DrawFn) -> mqtt5.PublishPacket:
    qos = draw(QOS_LEVELS)
    return mqtt5.PublishPacket(
        draw(TOPIC_NAMES),
        draw(PAYLOADS),
        qos=QOS[qos],
        retain=draw(st.booleans()),
        packet_id=draw(PACKET_IDS) if qos else None,
        duplicate=qos > 0 and draw(st.booleans()),
        payload_format_indicator=draw(st.integers(0, 1)),
        message_expiry_interval=draw(st.none() | st.integers(0, 2**32 - 1)),
        content_type=draw(OPTIONAL_TEXT),
        response_topic=draw(st.none() | TOPIC_NAMES),
        correlation_data=draw(OPTIONAL_BINARY),
        topic_alias=draw(st.none() | st.integers(1, 0xFFFF)),
        user_properties=draw(USER_PROPERTIES),
    )


@st.composite
def v5_connects(draw: st.DrawFn) -> mqtt5.ConnectPacket:
    will = None
    if draw(st.booleans()):
        will = mqtt5.Will(
            draw(TOPIC_NAMES),
            payload=draw(PAYLOADS),  # None would come back as b"": mqtt5 writes it empty
            qos=QOS[draw(QOS_LEVELS)],
            retain=draw(st.booleans()),
            content_type=draw(OPTIONAL_TEXT),
            response_topic=draw(st.none() | TOPIC_NAMES),
            will_delay_interval=draw(st.integers(0, 2**32 - 1)),
            user_properties=draw(USER_PROPERTIES),
        )
    method = draw(OPTIONAL_TEXT)
    return mqtt5.ConnectPacket(
        draw(TEXT),
        username=draw(OPTIONAL_TEXT),
        password=draw(OPTIONAL_BINARY),  # MQTT 5 allows a password without a user name
        clean_start=draw(st.booleans()),
        will=will,
        keep_alive=draw(st.integers(0, 0xFFFF)),
        session_expiry_interval=draw(st.integers(0, 2**32 - 1)),
        authentication_method=method,
        authentication_data=draw(OPTIONAL_BINARY) if method is not None else None,
        receive_max=draw(st.integers(1, 0xFFFF)),
        max_packet_size=draw(st.none() | st.integers(1, 2**32 - 1)),
        user_properties=draw(USER_PROPERTIES),
    )


@st.composite
def v5_subscribes(draw: st.DrawFn) -> mqtt5.SubscribePacket:
    filters = [
        mqtt5.TopicFilter(
            draw(TOPIC_FILTERS),
            max_qos=QOS[draw(QOS_LEVELS)],
            no_local=draw(st.booleans()),
            retain_as_published=draw(st.booleans()),
            retain_handling=draw(st.sampled_from(REASONS[mqtt5.RetainHandling])),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    subscription_id = draw(st.none() | st.integers(1, 268_435_455))
    return mqtt5.SubscribePacket(draw(PACKET_IDS), filters, subscription_id=subscription_id)


def _acks(packet: Any, reasons: Any) -> st.SearchStrategy[mqtt5.Packet]:
    return st.builds(
        packet,
        PACKET_IDS,
        reason_code=st.sampled_from(REASONS[reasons]),
        reason_str=OPTIONAL_TEXT,
        user_properties=USER_PROPERTIES,
    )


V5_CLIENT_PACKETS = st.one_of(
    v5_publishes(),
    v5_connects(),
    v5_subscribes(),
    st.builds(
        mqtt5.UnsubscribePacket,
        PACKET_IDS,
        st.lists(TOPIC_FILTERS, min_size=1, max_size=4),
        user_properties=USER_PROPERTIES,
    ),
    _acks(mqtt5.PubAckPacket, mqtt5.PubAckReasonCode),
    _acks(mqtt5.PubRecPacket, mqtt5.PubRecReasonCode),
    _acks(mqtt5.PubRelPacket, mqtt5.PubRelReasonCode),
    _acks(mqtt5.PubCompPacket, mqtt5.PubCompReasonCode),
    st.just(mqtt5.PingReqPacket()),
    st.builds(
        mqtt5.DisconnectPacket,
        reason_code=st.sampled_from(REASONS[mqtt5.DisconnectReasonCode]),
        session_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
        reason_str=OPTIONAL_TEXT,
        user_properties=USER_PROPERTIES,
    ),
    st.builds(
        mqtt5.AuthPacket,
        reason_code=st.sampled_from(REASONS[mqtt5.AuthReasonCode]),
        authentication_method=TEXT,
        authentication_data=OPTIONAL_BINARY,
        reason_str=OPTIONAL_TEXT,
        user_properties=USER_PROPERTIES,
    ),
)


@settings(max_examples=300)
@given(V5_CLIENT_PACKETS)
def test_v5_reads_what_mqtt5_writes(packet: mqtt5.Packet) -> None:
    assert V5.read(memoryview(packet.write())) == packet
    assert V5.write(packet) == packet.write()


def test_v5_reads_the_short_auth_that_mqtt5_refuses() -> None:
    # §3.15.2.1: success without properties may be sent as a bare fixed header.
    assert V5.read(memoryview(b"\xf0\x00")) == mqtt5.AuthPacket()


def test_v5_reads_a_publish_by_topic_alias_alone() -> None:
    packet = mqtt5.PublishPacket("", b"x", topic_alias=3)
    assert V5.read(memoryview(packet.write())) == packet


# --- Framing and protocol detection --------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "start", "expected"),
    [
        (b"", 0, None),
        (b"\xc0", 0, None),
        (b"\xc0\x00", 0, 2),
        (b"\xc0\x00\xc0\x00", 2, 2),
        (b"\xc0\x00\xc0", 2, None),
        (b"\x30\x03\x00\x01", 0, None),  # one body byte short
        (b"\x30\x03\x00\x01a", 0, 5),
        (b"\x30\x03\x00\x01a\xc0\x00", 0, 5),  # the next packet is not counted
        (b"\x30\x80", 0, None),  # the remaining length continues
        (b"\x30\x80\x01" + bytes(128), 0, 131),
        (b"\x30\x80\x01" + bytes(127), 0, None),
        (b"\x30\x85\x00abcde", 0, 8),  # a non-minimal length is still a length
    ],
)
def test_frame_length(buffer: bytes, start: int, expected: int | None) -> None:
    assert frame_length(buffer, start, 1 << 20) == expected
    assert frame_length(memoryview(buffer), start, 1 << 20) == expected
    assert frame_length(bytearray(buffer), start, 1 << 20) == expected


def test_frame_length_refuses_an_oversize_packet_from_its_header_alone() -> None:
    header = b"\x30\xff\xff\xff\x7f"  # announces 256 MB; nothing of the body has arrived
    with pytest.raises(PacketTooLarge, match="268435460 bytes") as caught:
        frame_length(header, 0, 1 << 20)
    assert caught.value.reason_code == 0x95
    assert frame_length(b"\x30\x03\x00\x01a", 0, 5) == 5
    with pytest.raises(PacketTooLarge):
        frame_length(b"\x30\x03", 0, 4)


def test_frame_length_refuses_a_remaining_length_over_four_bytes() -> None:
    for buffer in (b"\x30\xff\xff\xff\xff", b"\x30\xff\xff\xff\xff\x01", b"\x30\x80\x80\x80\x80"):
        with pytest.raises(MalformedPacket, match="longer than 4 bytes") as caught:
            frame_length(buffer, 0, 1 << 30)
        assert type(caught.value) is MalformedPacket
        for codec in CODECS:
            assert type(rejects(codec, buffer)) is MalformedPacket


@given(st.binary(max_size=40), st.binary(max_size=8), st.integers(2, 1 << 16))
def test_frame_length_finds_each_packet_of_a_stream(
    payload: bytes, prefix: bytes, max_size: int
) -> None:
    packet = mqtt5.PublishPacket("t", payload).write()
    buffer = prefix + packet + b"\xc0"
    start = len(prefix)
    if len(packet) > max_size:
        with pytest.raises(PacketTooLarge):
            frame_length(buffer, start, max_size)
    else:
        assert frame_length(buffer, start, max_size) == len(packet)
        for cut in range(start, start + len(packet)):
            assert frame_length(buffer[:cut], start, max_size) is None


@pytest.mark.parametrize(
    ("name", "level", "expected"),
    [("MQIsdp", 3, 3), ("MQTT", 4, 4), ("MQTT", 5, 5)],
)
def test_connect_version(name: str, level: int, expected: int) -> None:
    connect = frame(0x10, string(name), bytes([level, 2, 0, 0]), string("c"))
    assert connect_version(connect) == expected


@pytest.mark.parametrize(
    ("name", "level"),
    [("MQTT", 3), ("MQIsdp", 4), ("MQTT", 6), ("MQTT", 0x84), ("mqtt", 4), ("HTTP", 4)],
)
def test_connect_version_refuses_other_protocols(name: str, level: int) -> None:
    with pytest.raises(UnsupportedProtocol) as caught:
        connect_version(frame(0x10, string(name), bytes([level, 2, 0, 0]), string("c")))
    assert caught.value.reason_code == 0x84


@pytest.mark.parametrize("data", [b"\x30\x02\x00\x00", b"\x11\x00", b"\xc0\x00", b""])
def test_the_first_packet_must_be_connect(data: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="the first packet must be CONNECT"):
        connect_version(memoryview(data))


@pytest.mark.parametrize("data", [b"\x10\x00", b"\x10\x02\x00\x04", b"\x10\x06\x00\x04MQTT"])
def test_connect_version_of_a_cut_short_connect(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        connect_version(memoryview(data))


def test_codec_for_each_level() -> None:
    assert codec_for(3) == V311Codec(3)
    assert codec_for(4) == V311Codec(4)
    assert isinstance(codec_for(5), V5Codec)
    assert [codec_for(level).version for level in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(UnsupportedProtocol):
        codec_for(6)


def test_a_codec_reads_only_connects_of_its_own_level() -> None:
    v311_connect = paho_sends(lambda client: client._send_connect(0), client_id="c")
    with pytest.raises(UnsupportedProtocol):
        V31.read(v311_connect)
    with pytest.raises(UnsupportedProtocol):
        V5.read(v311_connect)
    with pytest.raises(UnsupportedProtocol):
        V311.read(memoryview(mqtt5.ConnectPacket("c").write()))


def test_error_reason_codes() -> None:
    assert MalformedPacket("x").reason_code == 0x81
    assert ProtocolViolation("x").reason_code == 0x82
    assert MalformedPacket("topic alias out of range", 0x94).reason_code == 0x94


# --- What a server must refuse -------------------------------------------------------------

CONNECT_V311 = (string("MQTT"), b"\x04")
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe2\x82"]


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("topic", [*BAD_UTF8, b"a\x00b", b"\x00"])
def test_topic_names_that_are_not_utf8_or_hold_u0000(codec: Codec, topic: bytes) -> None:
    properties = b"\x00" if codec is V5 else b""
    error = rejects(codec, frame(0x32, string(topic), b"\x00\x01", properties, b"payload"))
    assert type(error) is MalformedPacket
    assert "UTF-8" in str(error) or "U+0000" in str(error)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("topic", ["a/+", "#", "a/#", "+/b", "sport+"])
def test_wildcards_in_a_publish_topic(codec: Codec, topic: str) -> None:
    properties = b"\x00" if codec is V5 else b""
    error = rejects(codec, frame(0x30, string(topic), properties))
    assert isinstance(error, ProtocolViolation)
    assert "wildcard" in str(error)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    ("first", "kind", "words"),
    [
        (0x36, MalformedPacket, "QoS 3"),
        (0x37, MalformedPacket, "QoS 3"),
        (0x3E, MalformedPacket, "QoS 3"),
        (0x38, ProtocolViolation, "DUP"),
    ],
)
def test_publish_flags(codec: Codec, first: int, kind: type, words: str) -> None:
    properties = b"\x00" if codec is V5 else b""
    error = rejects(codec, frame(first, string("t"), b"\x00\x01", properties))
    assert type(error) is kind
    assert words in str(error)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    ("first", "head", "tail"),  # MQTT 5 has properties between head and tail, if there is a tail
    [
        (0x32, string("t") + b"\x00\x00", b""),
        (0x34, string("t") + b"\x00\x00", b""),
        (0x40, b"\x00\x00", None),
        (0x50, b"\x00\x00", None),
        (0x62, b"\x00\x00", None),
        (0x70, b"\x00\x00", None),
        (0x82, b"\x00\x00", string("t") + b"\x01"),
        (0xA2, b"\x00\x00", string("t")),
    ],
    ids=lambda value: hex(value) if isinstance(value, int) else None,
)
def test_packet_identifier_zero(codec: Codec, first: int, head: bytes, tail: bytes | None) -> None:
    properties = b"\x00" if codec is V5 and tail is not None else b""
    error = rejects(codec, frame(first, head, properties, tail or b""))
    assert type(error) is ProtocolViolation
    assert "packet identifier is 0" in str(error)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    "first",
    [0x11, 0x41, 0x48, 0x52, 0x60, 0x64, 0x71, 0x80, 0x83, 0xA0, 0xC1, 0xE2],
    ids=hex,
)
def test_wrong_fixed_header_flags(codec: Codec, first: int) -> None:
    assert type(rejects(codec, frame(first, b"\x00\x01"))) is MalformedPacket


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize("first", [0x20, 0x90, 0xB0, 0xD0])
def test_packets_only_a_server_sends(codec: Codec, first: int) -> None:
    error = rejects(codec, frame(first, b"\x00\x01\x00"))
    assert type(error) is ProtocolViolation
    assert "a client must not send" in str(error)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_reserved_packet_types(codec: Codec) -> None:
    assert type(rejects(codec, b"\x00\x00")) is MalformedPacket
    if codec is not V5:
        assert type(rejects(codec, b"\xf0\x00")) is MalformedPacket  # AUTH is MQTT 5 only


@pytest.mark.parametrize(
    ("flags", "fields", "words"),
    [
        (0x03, (), "reserved flag"),
        (0x0A, (), "will QoS or will retain"),
        (0x22, (), "will QoS or will retain"),
        (0x1E, (string("w"), string(b"")), "will QoS is 3"),
        (0x42, (string(b"pw"),), "password flag without the user name flag"),
        (0x06, (string(""), string(b"")), "will topic is empty"),
        (0x06, (string("w/+"), string(b"")), "wildcard"),
        (0x82, (), "cut short"),
        (0x02, (b"\x00",), "after its last field"),
    ],
)
def test_v311_connect_rejections(flags: int, fields: tuple[bytes, ...], words: str) -> None:
    packet = frame(0x10, *CONNECT_V311, bytes([flags]), b"\x00\x3c", string("c"), *fields)
    assert words in str(rejects(V311, packet))


@pytest.mark.parametrize(
    ("flags", "words"),
    [(0x03, "reserved flag"), (0x0A, "will QoS or will retain"), (0x22, "will retain")],
)
def test_v5_connect_flag_rejections(flags: int, words: str) -> None:
    packet = frame(0x10, string("MQTT"), bytes([5, flags]), b"\x00\x3c\x00", string("c"))
    assert words in str(rejects(V5, packet))


def test_v5_accepts_a_password_without_a_user_name() -> None:
    packet = mqtt5.ConnectPacket("c", password=b"secret")
    assert V5.read(memoryview(packet.write())) == packet


@pytest.mark.parametrize(
    ("packet", "kind", "words"),
    [
        (frame(0x82, b"\x00\x01"), ProtocolViolation, "no topic filters"),
        (frame(0x82, b"\x00\x01", string("a"), b"\x03"), MalformedPacket, "0x03"),
        (frame(0x82, b"\x00\x01", string("a"), b"\x41"), MalformedPacket, "0x41"),
        (frame(0x82, b"\x00\x01", string("a")), MalformedPacket, "no requested QoS"),
        (frame(0x82, b"\x00\x01", string(""), b"\x00"), ProtocolViolation, "empty topic filter"),
        (frame(0x82, b"\x00\x01", string("a/#/b"), b"\x00"), ProtocolViolation, "not a valid"),
        (frame(0xA2, b"\x00\x01"), ProtocolViolation, "no topic filters"),
        (frame(0xA2, b"\x00\x01", string("")), ProtocolViolation, "empty topic filter"),
        (frame(0xA2, b"\x00\x01", string("a#")), ProtocolViolation, "invalid topic filter"),
        (frame(0x40, b"\x00\x01\x00"), MalformedPacket, "remaining length of 2"),
        (frame(0x40, b"\x00"), MalformedPacket, "remaining length of 2"),
        (frame(0xC0, b"\x00"), MalformedPacket, "remaining length of 0"),
        (frame(0xE0, b"\x00"), MalformedPacket, "remaining length of 0"),
        (frame(0x30, string("")), ProtocolViolation, "empty topic name"),
        (frame(0x30, b"\x00\x05ab"), MalformedPacket, "past the end"),
        (frame(0x32, string("t"), b"\x01"), MalformedPacket, "cut short"),
        (frame(0x30, b"\x00"), MalformedPacket, "cut short"),
        (memoryview(b"\x30\x05\x00\x01a"), MalformedPacket, "remaining length is 5"),
        (memoryview(b"\x30\x02\x00\x01a"), MalformedPacket, "remaining length is 2"),
        (memoryview(b"\xc0"), MalformedPacket, "shorter than a fixed header"),
    ],
    ids=lambda value: bytes(value).hex() if isinstance(value, memoryview) else None,
)
def test_v311_rejections(packet: memoryview, kind: type, words: str) -> None:
    error = rejects(V311, packet)
    assert type(error) is kind
    assert words in str(error)


@pytest.mark.parametrize(
    ("packet", "kind", "words"),
    [
        (frame(0x82, b"\x00\x01\x00"), ProtocolViolation, "no topic filters"),
        (frame(0x82, b"\x00\x01\x00", string("a"), b"\xc1"), MalformedPacket, "reserved bits"),
        (
            frame(0x82, b"\x00\x01\x00", string("$share/g/a"), b"\x05"),
            ProtocolViolation,
            "no local",
        ),
        (frame(0x82, b"\x00\x01\x00", string(""), b"\x01"), ProtocolViolation, "empty"),
        (frame(0xA2, b"\x00\x01\x00"), ProtocolViolation, "no topic filters"),
        (frame(0x30, string("t"), b"\x02\x0b\x01"), ProtocolViolation, "subscription identifier"),
        (frame(0x30, string("t"), b"\x04\x08\x00\x01#"), ProtocolViolation, "wildcard"),
        (frame(0x30, string("t"), b"\x02\x01\x02"), ProtocolViolation, "payload format"),
        (frame(0x30, string("t"), b"\x02\x7f\x00"), MalformedPacket, "unknown property"),
        (frame(0x30, string("t"), b"\x05\x03\x00\x05ab"), MalformedPacket, "past the end"),
        (frame(0x30, string("t"), b"\x09\x02\x00\x00"), MalformedPacket, "properties run past"),
        (frame(0x40, b"\x00\x01\x00\x00\x00"), MalformedPacket, "after its properties"),
        (frame(0x30, string("t")), MalformedPacket, "not valid MQTT 5"),  # no property length
        (frame(0xF0, b"\x00"), MalformedPacket, "not valid MQTT 5"),
        (frame(0xF0, b"\x18\x02\x16\x00"), MalformedPacket, "binary data length is cut short"),
        (
            frame(0xF0, b"\x18\x05\x16", string(b"dd")),
            ProtocolViolation,
            "without an authentication method",
        ),
        (
            frame(0x10, string("MQTT"), b"\x05\x04\x00\x00\x00", string("c"), b"\x00", string("")),
            ProtocolViolation,
            "will topic is empty",
        ),
    ],
    ids=lambda value: bytes(value).hex() if isinstance(value, memoryview) else None,
)
def test_v5_rejections(packet: memoryview, kind: type, words: str) -> None:
    error = rejects(V5, packet)
    assert type(error) is kind
    assert words in str(error)


# mqtt5.read panics (pyo3 PanicException, a BaseException) on invalid UTF-8 in any string;
# V5Codec must catch every one first.
V5_STRING_PLACES = {
    "topic": mqtt5.PublishPacket("ZZ", b""),
    "content type": mqtt5.PublishPacket("t", b"", content_type="ZZ"),
    "response topic": mqtt5.PublishPacket("t", b"", response_topic="ZZ"),
    "user property name": mqtt5.PublishPacket("t", b"", user_properties=[("ZZ", "v")]),
    "user property value": mqtt5.PublishPacket("t", b"", user_properties=[("k", "ZZ")]),
    "client id": mqtt5.ConnectPacket("ZZ"),
    "user name": mqtt5.ConnectPacket("c", username="ZZ"),
    "will topic": mqtt5.ConnectPacket("c", will=mqtt5.Will("ZZ")),
    "will content type": mqtt5.ConnectPacket("c", will=mqtt5.Will("w", content_type="ZZ")),
    "authentication method": mqtt5.ConnectPacket("c", authentication_method="ZZ"),
    "topic filter": mqtt5.SubscribePacket(1, [mqtt5.TopicFilter("ZZ")]),
    "unsubscribe filter": mqtt5.UnsubscribePacket(1, ["ZZ"]),
    "reason string": mqtt5.PubAckPacket(
        1, reason_code=mqtt5.PubAckReasonCode.NOT_AUTHORIZED, reason_str="ZZ"
    ),
    "disconnect reason string": mqtt5.DisconnectPacket(reason_str="ZZ"),
    "auth method": mqtt5.AuthPacket(authentication_method="ZZ"),
}


@pytest.mark.parametrize("place", V5_STRING_PLACES)
@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0", b"\x00Z"])
def test_v5_refuses_bad_strings_before_mqtt5_sees_them(place: str, bad: bytes) -> None:
    data = V5_STRING_PLACES[place].write().replace(b"ZZ", bad)
    assert type(rejects(V5, data)) is MalformedPacket


V311_STRING_PLACES = {
    "client id": frame(0x10, *CONNECT_V311, b"\x02\x00\x00", string("ZZ")),
    "will topic": frame(0x10, *CONNECT_V311, b"\x06\x00\x00", string("c"), string("ZZ"), b"\0\0"),
    "user name": frame(0x10, *CONNECT_V311, b"\x82\x00\x00", string("c"), string("ZZ")),
    "topic filter": frame(0x82, b"\x00\x01", string("ZZ"), b"\x01"),
    "unsubscribe filter": frame(0xA2, b"\x00\x01", string("ZZ")),
}


@pytest.mark.parametrize("place", V311_STRING_PLACES)
@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0", b"\x00Z"])
def test_v311_refuses_bad_strings(place: str, bad: bytes) -> None:
    data = bytes(V311_STRING_PLACES[place]).replace(b"ZZ", bad)
    assert type(rejects(V311, data)) is MalformedPacket


# --- Fuzzing -------------------------------------------------------------------------------


def _v311_seeds() -> list[bytes]:
    def connect(client: paho.Client) -> None:
        client.username_pw_set("user", b"pw")
        client.will_set("w/t", b"bye", 1, True)
        client._send_connect(30)

    actions: list[Callable[[paho.Client], object]] = [
        connect,
        lambda client: paho_publish(client, 7, "a/é", b"payload", 1, False, True),
        lambda client: paho_publish(client, 0, "t", b"", 0, True, False),
        lambda client: client._send_subscribe(0, [(b"a/#", 1), (b"+/b", 2)]),
        lambda client: client._send_unsubscribe(0, [b"a/#", b"b"]),
        lambda client: client._send_pubrel(9),
        lambda client: client._send_pingreq(),
    ]
    return [bytes(paho_sends(act, client_id="dev")) for act in actions]


def _v5_seeds() -> list[bytes]:
    packets: list[mqtt5.Packet] = [
        mqtt5.PublishPacket(
            "a/é",
            b"payload",
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=7,
            content_type="json",
            response_topic="r",
            correlation_data=b"id",
            user_properties=[("k", "v")],
            message_expiry_interval=60,
        ),
        mqtt5.PublishPacket("t", b""),
        mqtt5.ConnectPacket(
            "dev",
            username="user",
            password=b"pw",
            will=mqtt5.Will("w/t", payload=b"bye", content_type="c", user_properties=[("a", "b")]),
            authentication_method="m",
            authentication_data=b"d",
            user_properties=[("a", "b")],
        ),
        mqtt5.SubscribePacket(
            3, [mqtt5.TopicFilter("a/#"), mqtt5.TopicFilter("+/b")], subscription_id=4
        ),
        mqtt5.UnsubscribePacket(3, ["a/#", "b"]),
        mqtt5.PubAckPacket(1, reason_code=mqtt5.PubAckReasonCode.NOT_AUTHORIZED, reason_str="x"),
        mqtt5.DisconnectPacket(reason_str="bye", user_properties=[("a", "b")]),
        mqtt5.AuthPacket(authentication_method="m", authentication_data=b"d"),
    ]
    return [packet.write() for packet in packets]


SEEDS = _v311_seeds() + _v5_seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid packet with a few bytes changed, inserted, or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        change = draw(st.sampled_from(["set", "insert", "cut"]))
        if change == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif change == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        else:
            del data[at:]
    if draw(st.booleans()) and len(data) > 1:  # keep the remaining length honest
        body = bytes(data[2:]) if data[1] < 0x80 else bytes(data[3:])
        data = bytearray(frame(data[0], body))
    return bytes(data)


@settings(max_examples=3000)
@given(st.one_of(st.binary(max_size=80), mutated()), st.integers(2, 1 << 12))
def test_only_malformed_packet_escapes(data: bytes, max_size: int) -> None:
    for codec in CODECS:
        read_or_reject(codec, data)
    start = 0
    while True:
        try:
            size = frame_length(data, start, max_size)
        except MalformedPacket:
            return
        if size is None:
            return
        assert size >= 2
        for codec in CODECS:
            read_or_reject(codec, memoryview(data)[start : start + size])
        start += size


@pytest.mark.parametrize("seed", SEEDS, ids=lambda seed: seed[:6].hex())
def test_every_cut_short_packet_is_incomplete_or_malformed(seed: bytes) -> None:
    for cut in range(len(seed)):
        assert frame_length(seed[:cut], 0, 1 << 20) is None
        for codec in CODECS:
            rejects(codec, seed[:cut])
