"""The benchmark's load generator speaks MQTT 5 CONNECT with and without a login."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

import pytest

from bench.loadgen import connect_packet, drop_sessions


@dataclass
class Connect:
    flags: int
    keepalive: int
    properties: bytes
    client_id: str
    username: str | None
    password: bytes | None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _field(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + length], pos + 2 + length


def parse_connect(packet: bytes) -> Connect:
    """A CONNECT as MQTT 5.0 section 3.1 lays it out (no will); the whole packet is used up."""
    assert packet[0] == 0x10
    length, pos = _varint(packet, 1)
    assert len(packet) == pos + length
    name, pos = _field(packet, pos)
    assert (name, packet[pos]) == (b"MQTT", 5)
    flags = packet[pos + 1]
    assert not flags & 0x01  # reserved
    assert not flags & 0x04  # no will (no will properties, topic or payload follow)
    (keepalive,) = struct.unpack_from("!H", packet, pos + 2)
    properties_length, pos = _varint(packet, pos + 4)
    properties, pos = packet[pos : pos + properties_length], pos + properties_length
    client_id, pos = _field(packet, pos)
    username = password = None
    if flags & 0x80:
        raw, pos = _field(packet, pos)
        username = raw.decode()
    if flags & 0x40:
        password, pos = _field(packet, pos)
    assert pos == len(packet)
    return Connect(flags, keepalive, properties, client_id.decode(), username, password)


def test_an_anonymous_connect_has_no_login_flags_or_fields() -> None:
    connect = parse_connect(connect_packet("loadgen-1", keepalive_s=30))
    assert connect == Connect(0x02, 30, b"", "loadgen-1", None, None)


def test_a_login_sets_flag_bits_7_and_6_and_follows_the_client_id_in_order() -> None:
    connect = parse_connect(connect_packet("loadgen-2", username="admin", password="s3crét"))
    assert connect.flags == 0x80 | 0x40 | 0x02
    assert (connect.client_id, connect.username) == ("loadgen-2", "admin")
    assert connect.password == "s3crét".encode()


def test_a_long_login_still_frames_the_packet() -> None:
    password = "p" * 300  # remaining length beyond one varint byte
    connect = parse_connect(connect_packet("c", username="u" * 40, password=password))
    assert (connect.username, connect.password) == ("u" * 40, password.encode())


async def _broker(reason: int, received: list[bytes]) -> tuple[asyncio.Server, int]:
    """A one-packet broker: records each CONNECT, answers CONNACK ``reason``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(1)
        size = b""
        while not size or size[-1] & 0x80:
            size += await reader.readexactly(1)
        length, _ = _varint(size, 0)
        received.append(head + size + await reader.readexactly(length))
        writer.write(bytes((0x20, 3, 0, reason, 0)))
        await writer.drain()
        await reader.read()  # DISCONNECT or close
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_drop_sessions_logs_in_with_each_clean_start_connect() -> None:
    received: list[bytes] = []
    server, port = await _broker(0x00, received)
    async with server:
        await drop_sessions(
            "127.0.0.1", port, ["gw-0", "gw-1"], username="admin", password="secret"
        )
    connects = [parse_connect(packet) for packet in received]
    assert [c.client_id for c in connects] == ["gw-0", "gw-1"]
    assert {(c.flags, c.username, c.password) for c in connects} == {(0xC2, "admin", b"secret")}


async def test_drop_sessions_fails_when_the_broker_refuses_the_login() -> None:
    server, port = await _broker(0x86, [])  # bad user name or password
    async with server:
        with pytest.raises(ConnectionError, match="0x86"):
            await drop_sessions("127.0.0.1", port, ["gw-0"], username="admin", password="x")
