"""The MQTT 5 codec: mqtt5's reader and writer, behind the checks the spec requires of a
server that mqtt5 does not make (and that would make it panic on invalid UTF-8)."""

from __future__ import annotations

from typing import Final

import mqtt5
from mqtt5 import Packet

from iot_gateway.edge.wire import (
    _AUTH,
    _CONNECT,
    _NAMES,
    _PINGREQ,
    _PUBLISH,
    _PUBLISH_QOS,
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
    _varint,
    connect_version,
)


class V5Codec:
    """MQTT 5.0, with the `mqtt5` package as the parser and writer.

    Before `mqtt5.read` sees a frame, `read` checks what mqtt5 lets through or cannot
    survive: strings that are not UTF-8 (mqtt5 panics on them), U+0000, wildcards in
    topic names, QoS 0 with DUP, packet identifier 0, CONNECT reserved and will flags,
    subscription option reserved bits, empty SUBSCRIBE and UNSUBSCRIBE.
    """

    version: Final = 5

    def read(self, frame: memoryview) -> Packet:
        """Decodes one complete frame from a client (see `Codec.read`)."""
        pos = _body_start(frame)
        end = len(frame)
        first = frame[0]
        kind = first >> 4
        has_properties = False
        if kind == _PUBLISH:
            has_properties = _check_publish(frame, first, pos, end)
        else:
            _check_header(first, 5)
            if kind == _AUTH and pos == end:
                return mqtt5.AuthPacket()  # the short form of §3.15.2.1, which mqtt5 refuses
            _V5_CHECKS[kind](frame, pos, end)
        try:
            packet, used = mqtt5.read(frame)
        except (IndexError, ValueError) as exc:
            raise MalformedPacket(f"{_NAMES[kind]} is not valid MQTT 5: {exc}") from exc
        if used != end:
            raise MalformedPacket(f"{_NAMES[kind]} ends {end - used} bytes before its frame")
        if has_properties or kind in (_CONNECT, _AUTH):
            _check_decoded(packet)
        return packet

    def write(self, packet: Packet) -> bytes:
        """The packet's MQTT 5 bytes."""
        return packet.write()


# --- MQTT 5 checks ahead of mqtt5.read ---------------------------------------------------------

# Property identifier (§2.2.2.2) -> size of a fixed-size value.
_FIXED_PROPERTIES: Final = {
    0x01: 1, 0x17: 1, 0x19: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1,
    0x13: 2, 0x21: 2, 0x22: 2, 0x23: 2,
    0x02: 4, 0x11: 4, 0x18: 4, 0x27: 4,
}  # fmt: skip
_STRING_PROPERTIES: Final = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY_PROPERTIES: Final = frozenset({0x09, 0x16})
_PAYLOAD_FORMAT: Final = 0x01
_RESPONSE_TOPIC: Final = 0x08
_SUBSCRIPTION_ID: Final = 0x0B
_USER_PROPERTY: Final = 0x26


def _check_properties(frame: memoryview, pos: int, end: int) -> int:
    """Checks the strings of the properties at ``pos``; the position after them."""
    length, pos = _varint(frame, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("the properties run past the end of the packet")
    while pos < stop:
        ident = frame[pos]
        pos += 1
        size = _FIXED_PROPERTIES.get(ident)
        if size is not None:
            if ident == _PAYLOAD_FORMAT and pos < stop and frame[pos] > 1:
                raise ProtocolViolation(f"the payload format indicator is {frame[pos]}")
            pos += size
        elif ident in _STRING_PROPERTIES:
            if ident == _RESPONSE_TOPIC:
                pos = _topic_name(frame, pos, stop, "response topic")[1]
            else:
                pos = _utf8(frame, pos, stop)[1]
        elif ident == _USER_PROPERTY:
            pos = _utf8(frame, _utf8(frame, pos, stop)[1], stop)[1]
        elif ident in _BINARY_PROPERTIES:
            pos = _binary(frame, pos, stop)[1]
        elif ident == _SUBSCRIPTION_ID:
            pos = _varint(frame, pos, stop)[1]
        else:
            raise MalformedPacket(f"unknown property identifier {ident:#x}")
    if pos != stop:
        raise MalformedPacket("the last property runs past the end of the properties")
    return stop


def _check_publish(frame: memoryview, first: int, pos: int, end: int) -> bool:
    """Checks a PUBLISH; whether it has properties."""
    qos = _PUBLISH_QOS[first & 0x0F]
    if qos is None:
        _reject_publish_flags(first)
    pos = _topic_name(frame, pos, end, "topic name")[1]
    if qos:
        _packet_id(frame, pos, end)
        pos += 2
    if pos < end and frame[pos]:
        _check_properties(frame, pos, end)
        return True
    return False


def _check_connect(frame: memoryview, pos: int, end: int) -> None:
    version = connect_version(frame)
    if version != 5:
        raise UnsupportedProtocol(f"CONNECT asks for protocol level {version}, not 5")
    pos = _utf8(frame, pos, end)[1]  # the protocol name, then level, flags, keep alive
    if pos + 4 > end:
        raise MalformedPacket("CONNECT is cut short in its variable header")
    flags = frame[pos + 1]
    _check_connect_flags(flags, 5)
    pos = _check_properties(frame, pos + 4, end)
    pos = _utf8(frame, pos, end)[1]  # the client identifier
    if flags & 0x04:
        topic, pos = _topic_name(frame, _check_properties(frame, pos, end), end, "will topic")
        if not topic:
            raise ProtocolViolation("the will topic is empty")
        pos = _binary(frame, pos, end)[1]
    if flags & 0x80:
        pos = _utf8(frame, pos, end)[1]
    if flags & 0x40:
        pos = _binary(frame, pos, end)[1]
    if pos != end:
        raise MalformedPacket("CONNECT has bytes after its last field")


def _check_ack(frame: memoryview, pos: int, end: int) -> None:
    """PUBACK, PUBREC, PUBREL, PUBCOMP: packet identifier, then optional reason and properties."""
    _packet_id(frame, pos, end)
    _check_reason(frame, pos + 2, end)


def _check_reason(frame: memoryview, pos: int, end: int) -> None:
    """DISCONNECT and AUTH (and the tail of the acks): optional reason code and properties."""
    if pos + 1 < end:
        pos = _check_properties(frame, pos + 1, end)
        if pos != end:
            raise MalformedPacket("the packet has bytes after its properties")


def _check_subscribe(frame: memoryview, pos: int, end: int) -> None:
    _packet_id(frame, pos, end)
    pos = _check_properties(frame, pos + 2, end)
    if pos == end:
        raise ProtocolViolation("SUBSCRIBE has no topic filters")
    while pos < end:
        pattern, pos = _utf8(frame, pos, end)
        _check_filter(pattern, "SUBSCRIBE")
        if pos == end:
            raise MalformedPacket("a SUBSCRIBE topic filter has no subscription options")
        options = frame[pos]
        pos += 1
        if options & 0xC0:
            raise MalformedPacket("reserved bits of the subscription options are set")
        if options & 0x04 and pattern.startswith("$share/"):
            raise ProtocolViolation("no local is set on a shared subscription")


def _check_unsubscribe(frame: memoryview, pos: int, end: int) -> None:
    _packet_id(frame, pos, end)
    pos = _check_properties(frame, pos + 2, end)
    if pos == end:
        raise ProtocolViolation("UNSUBSCRIBE has no topic filters")
    while pos < end:
        pattern, pos = _utf8(frame, pos, end)
        _check_filter(pattern, "UNSUBSCRIBE")


def _check_decoded(packet: Packet) -> None:
    """What is easier to see on the decoded packet than in its bytes."""
    if isinstance(packet, mqtt5.PublishPacket) and packet.subscription_ids:
        raise ProtocolViolation("a client's PUBLISH must not carry a subscription identifier")
    if (
        isinstance(packet, mqtt5.ConnectPacket | mqtt5.AuthPacket)
        and packet.authentication_data is not None
        and packet.authentication_method is None
    ):
        raise ProtocolViolation("authentication data without an authentication method")


def _check_nothing(frame: memoryview, pos: int, end: int) -> None:
    """PINGREQ: mqtt5 checks that it is empty."""


_V5_CHECKS: Final = {
    _CONNECT: _check_connect,
    4: _check_ack,  # PUBACK
    5: _check_ack,  # PUBREC
    6: _check_ack,  # PUBREL
    7: _check_ack,  # PUBCOMP
    _SUBSCRIBE: _check_subscribe,
    _UNSUBSCRIBE: _check_unsubscribe,
    _PINGREQ: _check_nothing,
    14: _check_reason,  # DISCONNECT
    _AUTH: _check_reason,
}
