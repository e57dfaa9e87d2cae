"""MQTT 3.1.1, and the MQTT 3.1 it grew from, in the server's one packet model: `mqtt5` objects.

`V311Codec.read` decodes what a client sends into the MQTT 5 packet classes, with 3.1.1
meanings carried over (clean session becomes clean start; a subscription does not keep the
retain flag of forwarded messages, as MQTT-3.3.1-9 asks). `write` encodes what a server
sends and drops what 3.1.1 cannot say: properties, reason codes of acknowledgements, and
DISCONNECT, which only a client sends in 3.1.1. CONNACK and SUBACK reason codes become
3.1.1 return codes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import mqtt5
from mqtt5 import Packet

from iot_gateway.edge.wire import (
    _CONNECT,
    _NAMES,
    _PINGREQ,
    _PUBLISH,
    _PUBLISH_QOS,
    _QOS,
    _SUBSCRIBE,
    _UNSUBSCRIBE,
    MalformedPacket,
    ProtocolViolation,
    UnsupportedProtocol,
    _binary,
    _body_start,
    _check_connect_flags,
    _check_filter,
    _check_header,
    _packet_id,
    _reject_publish_flags,
    _topic_name,
    _utf8,
    connect_version,
)


@dataclass(frozen=True, slots=True)
class V311Codec:
    """MQTT 3.1.1 (protocol level 4) or MQTT 3.1 (level 3, protocol name "MQIsdp").

    Both levels get the 3.1.1 rules, which 3.1 clients follow in practice (a 3.1 client
    that sets DUP on a resent SUBSCRIBE is refused). Rules that need an answer rather than
    a closed connection, such as an empty client identifier without clean session
    (CONNACK 0x02), are the session's to apply.
    """

    version: int = 4

    def __post_init__(self) -> None:
        if self.version not in (3, 4):
            raise ValueError(f"V311Codec speaks protocol levels 3 and 4, not {self.version}")

    def read(self, frame: memoryview) -> Packet:
        """Decodes one complete frame from a client (see `Codec.read`)."""
        pos = _body_start(frame)
        end = len(frame)
        first = frame[0]
        kind = first >> 4
        if kind == _PUBLISH:  # the hot path
            qos = _PUBLISH_QOS[first & 0x0F]
            if qos is None:
                _reject_publish_flags(first)
            topic, pos = _topic_name(frame, pos, end, "topic name")
            if not topic:
                raise ProtocolViolation("PUBLISH has an empty topic name")
            if not qos:
                return mqtt5.PublishPacket(topic, frame[pos:].tobytes(), retain=first & 1 == 1)
            return mqtt5.PublishPacket(
                topic,
                frame[pos + 2 :].tobytes(),
                qos=_QOS[qos],
                retain=first & 1 == 1,
                packet_id=_packet_id(frame, pos, end),
                duplicate=first & 8 == 8,
            )
        _check_header(first, self.version)
        ack = _ACKS.get(kind)
        if ack is not None:
            if end - pos != 2:
                raise MalformedPacket(f"{_NAMES[kind]} must have a remaining length of 2")
            return ack(_packet_id(frame, pos, end))
        if kind == _CONNECT:
            return _read_connect(frame, pos, self.version)
        if kind == _SUBSCRIBE:
            return _read_subscribe(frame, pos)
        if kind == _UNSUBSCRIBE:
            return _read_unsubscribe(frame, pos)
        if pos != end:
            raise MalformedPacket(f"{_NAMES[kind]} must have a remaining length of 0")
        return mqtt5.PingReqPacket() if kind == _PINGREQ else mqtt5.DisconnectPacket()

    def write(self, packet: Packet) -> bytes:
        """The packet's 3.1.1 bytes; b"" for DISCONNECT (the server just closes).

        Raises TypeError for packets only a client sends.
        """
        match packet:
            case mqtt5.PubAckPacket():
                return _ACK.pack(0x40, 2, packet.packet_id)
            case mqtt5.PublishPacket():
                return _write_publish(packet)
            case mqtt5.PubRecPacket():
                return _ACK.pack(0x50, 2, packet.packet_id)
            case mqtt5.PubRelPacket():
                return _ACK.pack(0x62, 2, packet.packet_id)
            case mqtt5.PubCompPacket():
                return _ACK.pack(0x70, 2, packet.packet_id)
            case mqtt5.ConnAckPacket():
                code = _CONNACK_RETURN_CODES.get(int(packet.reason_code), 3)
                # MQTT-3.2.2-4: a refusal never says the session is present.
                return bytes((0x20, 2, int(packet.session_present and not code), code))
            case mqtt5.SubAckPacket():
                codes = bytes(c if c <= 2 else 0x80 for c in map(int, packet.reason_codes))
                return _fixed_header(0x90, 2 + len(codes)) + _ID.pack(packet.packet_id) + codes
            case mqtt5.UnsubAckPacket():
                return _ACK.pack(0xB0, 2, packet.packet_id)
            case mqtt5.PingRespPacket():
                return b"\xd0\x00"
            case mqtt5.DisconnectPacket():
                return b""
        raise TypeError(f"a server does not send {type(packet).__name__}")


_ID: Final = struct.Struct(">H")
_ACK: Final = struct.Struct(">BBH")
_ACKS: Final[dict[int, Callable[[int], Packet]]] = {
    4: mqtt5.PubAckPacket,
    5: mqtt5.PubRecPacket,
    6: mqtt5.PubRelPacket,
    7: mqtt5.PubCompPacket,
}
# MQTT 5 CONNACK reason code -> 3.1.1 return code; anything else is 3, server unavailable.
# (mqtt5's enums are neither hashable nor ints at run time, whatever its stubs say: int() them.)
_CONNACK_RETURN_CODES: Final = {
    0x00: 0,  # success
    0x84: 1,  # unsupported protocol version
    0x85: 2,  # client identifier not valid
    0x86: 4,  # bad user name or password
    0x87: 5,  # not authorized
}
_MAX_REMAINING_LENGTH: Final = 268_435_455


def _read_connect(frame: memoryview, pos: int, version: int) -> mqtt5.ConnectPacket:
    end = len(frame)
    level = connect_version(frame)
    if level != version:
        raise UnsupportedProtocol(f"CONNECT asks for protocol level {level}, not {version}")
    pos = _utf8(frame, pos, end)[1]  # the protocol name, then level, flags, keep alive
    if pos + 4 > end:
        raise MalformedPacket("CONNECT is cut short in its variable header")
    flags = frame[pos + 1]
    keep_alive = frame[pos + 2] << 8 | frame[pos + 3]
    _check_connect_flags(flags, version)
    client_id, pos = _utf8(frame, pos + 4, end)
    will = None
    if flags & 0x04:
        topic, pos = _topic_name(frame, pos, end, "will topic")
        if not topic:
            raise ProtocolViolation("the will topic is empty")
        message, pos = _binary(frame, pos, end)
        qos, retain = _QOS[flags >> 3 & 3], flags & 0x20 == 0x20
        will = mqtt5.Will(topic, payload=message, qos=qos, retain=retain)
    username: str | None = None
    password: bytes | None = None
    if flags & 0x80:
        username, pos = _utf8(frame, pos, end)
    if flags & 0x40:
        password, pos = _binary(frame, pos, end)
    if pos != end:
        raise MalformedPacket("CONNECT has bytes after its last field")
    return mqtt5.ConnectPacket(
        client_id,
        username=username,
        password=password,
        clean_start=flags & 0x02 == 0x02,
        will=will,
        keep_alive=keep_alive,
    )


def _read_subscribe(frame: memoryview, pos: int) -> mqtt5.SubscribePacket:
    end = len(frame)
    packet_id = _packet_id(frame, pos, end)
    pos += 2
    if pos == end:
        raise ProtocolViolation("SUBSCRIBE has no topic filters")
    filters = []
    while pos < end:
        pattern, pos = _utf8(frame, pos, end)
        _check_filter(pattern, "SUBSCRIBE")
        if pos == end:
            raise MalformedPacket("a SUBSCRIBE topic filter has no requested QoS")
        requested = frame[pos]
        pos += 1
        if requested > 2:
            raise MalformedPacket(f"the requested QoS byte is {requested:#04x}, not 0, 1 or 2")
        try:
            filters.append(
                mqtt5.TopicFilter(pattern, max_qos=_QOS[requested], retain_as_published=False)
            )
        except ValueError as exc:
            raise ProtocolViolation(f"{pattern!r} is not a valid topic filter") from exc
    return mqtt5.SubscribePacket(packet_id, filters)


def _read_unsubscribe(frame: memoryview, pos: int) -> mqtt5.UnsubscribePacket:
    end = len(frame)
    packet_id = _packet_id(frame, pos, end)
    pos += 2
    if pos == end:
        raise ProtocolViolation("UNSUBSCRIBE has no topic filters")
    patterns = []
    while pos < end:
        pattern, pos = _utf8(frame, pos, end)
        _check_filter(pattern, "UNSUBSCRIBE")
        patterns.append(pattern)
    try:
        return mqtt5.UnsubscribePacket(packet_id, patterns)
    except ValueError as exc:
        raise ProtocolViolation(f"UNSUBSCRIBE names an invalid topic filter: {exc}") from exc


def _write_publish(packet: mqtt5.PublishPacket) -> bytes:
    topic = packet.topic.encode()
    if not topic:
        raise ValueError("MQTT 3.1.1 has no topic aliases: a PUBLISH needs its topic name")
    qos = int(packet.qos)
    payload = packet.payload
    variable = _ID.pack(len(topic)) + topic
    first = 0x30 | qos << 1 | packet.retain
    if qos:
        packet_id = packet.packet_id
        if packet_id is None:
            raise ValueError(f"a QoS {qos} PUBLISH needs a packet identifier")
        variable += _ID.pack(packet_id)
        first |= packet.duplicate << 3
    return _fixed_header(first, len(variable) + len(payload)) + variable + payload


def _fixed_header(first: int, remaining: int) -> bytes:
    if remaining < 0x80:
        return bytes((first, remaining))
    if remaining > _MAX_REMAINING_LENGTH:
        raise ValueError(f"{remaining} bytes are more than an MQTT packet can hold")
    header = bytearray((first,))
    while remaining > 0x7F:
        header.append(remaining & 0x7F | 0x80)
        remaining >>= 7
    header.append(remaining)
    return bytes(header)
