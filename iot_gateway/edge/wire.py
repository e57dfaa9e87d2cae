"""MQTT on the wire for the edge server: framing, protocol detection, errors, primitives.

The server cuts frames out of its receive buffer with `frame_length`, learns the protocol
level from the first frame with `connect_version`, and from then on turns every frame into
an `mqtt5` packet object with the `Codec` for that level (``codec.codec_for``). Whatever the
level, the session code sees one packet model. Codecs are sans-IO and keep no state between
frames.

Every way a client's bytes can be wrong raises `MalformedPacket` or a subclass; its
``reason_code`` is the MQTT 5 reason code to report (CONNACK or DISCONNECT) before closing.
The underscored primitives below are shared by the two codecs (``v5``, ``v311``) only.
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


# --- Wire primitives, shared by the codecs -------------------------------------------------------

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
