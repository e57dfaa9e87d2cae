"""MQTT on the wire for the edge server: framing, protocol detection and the packet codecs.

The server cuts frames out of its receive buffer with `frame_length`, learns the protocol
level from the first frame with `connect_version`, and from then on turns every frame into
an `mqtt5` packet object with the `Codec` that `codec_for` gives it. Whatever the level,
the session code sees one packet model. Codecs are sans-IO and keep no state between frames.

Every way a client's bytes can be wrong raises `MalformedPacket` or a subclass; its
``reason_code`` is the MQTT 5 reason code to report (CONNACK or DISCONNECT) before closing.
"""

from __future__ import annotations

from typing import Final, NoReturn, Protocol

import mqtt5
from mqtt5 import Packet

from iot_gateway.errors import GatewayError


# Named as in the MQTT specification, not ...Error as ruff's N818 would have it.
class MalformedPacket(GatewayError):  # noqa: N818
    """The client sent bytes that are not a valid packet; the connection must be closed.

    ``reason_code`` is the class's MQTT 5 reason code unless the raiser passes another.
    """

    reason_code: int = 0x81

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class ProtocolViolation(MalformedPacket):
    """The packet is well formed but the specification forbids it (a protocol error)."""

    reason_code = 0x82


class PacketTooLarge(MalformedPacket):
    """The packet is larger than the server accepts; raised from its fixed header alone."""

    reason_code = 0x95


class UnsupportedProtocol(MalformedPacket):
    """CONNECT names a protocol or protocol level the server does not speak."""

    reason_code = 0x84


class Codec(Protocol):
    """Turns frames of one protocol level into `mqtt5` packets and packets into bytes."""

    @property
    def version(self) -> int:
        """The protocol level: 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0)."""
        ...

    def read(self, frame: memoryview) -> Packet:
        """Decodes one complete frame a client sent (as cut by `frame_length`).

        Raises `MalformedPacket` or a subclass for anything the specification rejects,
        never another exception; packets only a server sends are a `ProtocolViolation`.
        """
        ...

    def write(self, packet: Packet) -> bytes:
        """Encodes a packet the server sends; b"" when the level has no such packet."""
        ...


def frame_length(buffer: bytes | bytearray | memoryview, start: int, max_size: int) -> int | None:
    """The size of the packet at ``buffer[start]`` (fixed header included) once all of it is
    in ``buffer``; None while bytes are missing.

    Raises `PacketTooLarge` as soon as the fixed header says the packet exceeds ``max_size``,
    before its body arrives, and `MalformedPacket` for a remaining length over 4 bytes.
    """
    end = len(buffer)
    pos = start + 1
    if pos >= end:
        return None
    byte = buffer[pos]
    length = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift == 28:
            raise MalformedPacket("the remaining length is longer than 4 bytes")
        pos += 1
        if pos >= end:
            return None
        byte = buffer[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
    size = pos + 1 - start + length
    if size > max_size:
        raise PacketTooLarge(f"the packet has {size} bytes; the limit is {max_size}")
    return size if start + size <= end else None


def connect_version(frame: memoryview) -> int:
    """The protocol level of a complete CONNECT frame: 3 ("MQIsdp", MQTT 3.1),
    4 ("MQTT", 3.1.1) or 5 ("MQTT", 5.0); `UnsupportedProtocol` for anything else."""
    if not frame or frame[0] != 0x10:
        raise ProtocolViolation("the first packet must be CONNECT")
    pos = _body_start(frame)
    name, pos = _utf8(frame, pos, len(frame))
    if pos >= len(frame):
        raise MalformedPacket("CONNECT ends before its protocol level")
    level = frame[pos]
    if (name == "MQTT" and level in (4, 5)) or (name == "MQIsdp" and level == 3):
        return level
    raise UnsupportedProtocol(f"protocol {name!r} at level {level} is not supported")


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


def codec_for(version: int) -> Codec:
    """The codec for a protocol level from `connect_version`."""
    from iot_gateway.edge.v311 import V311Codec  # noqa: PLC0415  (v311 builds on this module)

    if version == 5:
        return V5Codec()
    if version in (3, 4):
        return V311Codec(version)
    raise UnsupportedProtocol(f"protocol level {version} is not supported")


# --- Wire primitives, shared with v311 -------------------------------------------------------

# Packet types (§2.1.2).
_CONNECT: Final = 1
_PUBLISH: Final = 3
_SUBSCRIBE: Final = 8
_UNSUBSCRIBE: Final = 10
_PINGREQ: Final = 12
_AUTH: Final = 15
_NAMES: Final = (
    "packet type 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)
# The fixed-header flags (§2.1.3) of every packet a client sends, except PUBLISH.
_CLIENT_FLAGS: Final = {1: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 10: 2, 12: 0, 14: 0, 15: 0}
_SERVER_ONLY: Final = frozenset({2, 9, 11, 13})
_QOS: Final = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)


def _body_start(frame: memoryview) -> int:
    """Where the variable header starts, once the remaining length matches the frame."""
    size = len(frame)
    if size < 2:
        raise MalformedPacket("the packet is shorter than a fixed header")
    length = frame[1]
    if length < 0x80:
        pos = 2
    else:
        length, pos = _varint(frame, 1, size)
    if pos + length != size:
        raise MalformedPacket(
            f"the remaining length is {length} but {size - pos} bytes follow the fixed header"
        )
    return pos


def _varint(frame: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The variable byte integer at ``pos`` (§1.5.5) and the position after it."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= end:
            raise MalformedPacket("a variable byte integer is cut short")
        byte = frame[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MalformedPacket("a variable byte integer is longer than 4 bytes")


def _utf8(frame: memoryview, pos: int, end: int) -> tuple[str, int]:
    """The UTF-8 string at ``pos`` and the position after it; rejects what §1.5.4 rejects."""
    start = pos + 2
    if start > end:
        raise MalformedPacket("a string length is cut short")
    stop = start + (frame[pos] << 8 | frame[pos + 1])
    if stop > end:
        raise MalformedPacket("a string runs past the end of the packet")
    try:
        text = frame[start:stop].tobytes().decode()
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"a string is not well-formed UTF-8: {exc.reason}") from exc
    if "\x00" in text:
        raise MalformedPacket("a string contains the null character U+0000")
    return text, stop


def _binary(frame: memoryview, pos: int, end: int) -> tuple[bytes, int]:
    """The binary data at ``pos`` (two-byte length, then bytes) and the position after it."""
    start = pos + 2
    if start > end:
        raise MalformedPacket("a binary data length is cut short")
    stop = start + (frame[pos] << 8 | frame[pos + 1])
    if stop > end:
        raise MalformedPacket("binary data runs past the end of the packet")
    return frame[start:stop].tobytes(), stop


def _packet_id(frame: memoryview, pos: int, end: int) -> int:
    """The packet identifier at ``pos``; 0 is not one (§2.2.1)."""
    if pos + 2 > end:
        raise MalformedPacket("the packet identifier is cut short")
    packet_id = frame[pos] << 8 | frame[pos + 1]
    if not packet_id:
        raise ProtocolViolation("the packet identifier is 0")
    return packet_id


def _topic_name(frame: memoryview, pos: int, end: int, what: str) -> tuple[str, int]:
    """A string that names a topic, so has no wildcards (MQTT-3.3.2-2)."""
    topic, pos = _utf8(frame, pos, end)
    if "+" in topic or "#" in topic:
        raise ProtocolViolation(f"the {what} {topic!r} contains a wildcard")
    return topic, pos


def _check_header(first: int, version: int) -> None:
    """Rejects packet types a client must not send and wrong fixed-header flags."""
    kind = first >> 4
    flags = _CLIENT_FLAGS.get(kind) if version == 5 or kind != _AUTH else None
    if flags is None:
        if kind in _SERVER_ONLY:
            raise ProtocolViolation(f"a client must not send {_NAMES[kind]}")
        raise MalformedPacket(f"packet type {kind} is reserved")
    if first & 0x0F != flags:
        raise MalformedPacket(
            f"{_NAMES[kind]} must have fixed-header flags {flags:#x}, not {first & 0x0F:#x}"
        )


# PUBLISH fixed-header flags (DUP, QoS, RETAIN) -> QoS; None for QoS 3 and for DUP on QoS 0.
_PUBLISH_QOS: Final = tuple(
    None if flags & 0x06 == 0x06 or flags & 0x0E == 0x08 else flags >> 1 & 3 for flags in range(16)
)


def _reject_publish_flags(first: int) -> NoReturn:
    if first & 0x06 == 0x06:
        raise MalformedPacket("PUBLISH has QoS 3, which does not exist")
    raise ProtocolViolation("a QoS 0 PUBLISH has the DUP flag set")


def _check_connect_flags(flags: int, version: int) -> None:
    if flags & 0x01:
        raise MalformedPacket("the reserved flag of CONNECT is set")
    will_qos = flags >> 3 & 3
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("the will QoS is 3, which does not exist")
    elif will_qos or flags & 0x20:
        raise MalformedPacket("CONNECT sets will QoS or will retain without the will flag")
    if version < 5 and flags & 0xC0 == 0x40:
        raise MalformedPacket("CONNECT sets the password flag without the user name flag")


def _check_filter(pattern: str, packet: str) -> None:
    if not pattern:
        raise ProtocolViolation(f"{packet} has an empty topic filter")


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
