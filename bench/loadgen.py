"""A fast MQTT 5 QoS 1 load generator: asyncio protocols over raw sockets, pre-encoded packets.

Many simulated devices share a few TCP connections (device ``i`` always uses connection
``i % connections``, so each device's messages stay in order). Each connection keeps up to
``window`` PUBLISH packets in flight (never more than the broker's Receive Maximum from
CONNACK) and refills the window as PUBACKs arrive, in bursts written with one ``write``.
An optional target rate is paced per connection against the wall clock (open loop: a slow
PUBACK does not lower the offered rate until the window is full).

Payloads are realistic JSON telemetry, with ``seq`` increasing per device from 0::

    {"seq": 17, "ts": 1714564800123, "metrics": {"temp_c": 21.5, "humidity_pct": 40.1, ...}}

on topic ``<prefix>/devices/<device>/telemetry``. Only the header, topic and packet id are
spliced per message; the JSON is filled in with one bytes ``%`` format.

Run as a process (the benchmark does)::

    python -m bench.loadgen --prefix bench-x --devices 500 --connections 8 --duration 10 \\
        [--rate 5000] [--record-sends FILE] [--sample-every 1 --record-acks FILE] \\
        [--username admin]
    python -m bench.loadgen --prefix bench-x --connects 2000 --concurrency 20

Publish -> PUBACK latency is measured on every ``--sample-every``-th message (from just
before the write of the burst that holds it to the PUBACK's arrival, both on the monotonic
clock); ``--record-acks`` writes every sample (and the samples never acknowledged) as JSON.

``--connects N`` measures connection setup instead of publishing: N connections, at most
``--concurrency`` at a time being set up, each TCP connect + MQTT 5 CONNECT + CONNACK; all
are held open until the last CONNACK (and ``--hold`` seconds more), then disconnected.

On a broker that refuses anonymous clients, ``--username`` logs every connection in; the
password comes from the environment variable ``LOADGEN_MQTT_PASSWORD`` (not the command
line, which every user of the machine can read).

It prints one JSON line of progress every ``--progress`` seconds and a final summary line
(``"final": true``) on stdout. While running it reads commands on stdin: ``rate <msg/s>``
(0 or ``max`` = unthrottled) and ``stop``. It always stops by itself after ``--duration``
(``--connects``: after ``--duration`` at most, too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import struct
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD_ENV = "LOADGEN_MQTT_PASSWORD"  # noqa: S105 - a variable name, not a password
"""The environment variable with the password of ``--username``."""
_PUBACK = 0x40
_CONNACK = 0x20
_DISCONNECT = 0xE0
# MQTT 5 property ids -> value size (-1: UTF-8 string / binary, -2: string pair, 0: varint).
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: 0, 0x11: 4, 0x12: -1, 0x13: 2,
    0x15: -1, 0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2,
    0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip
_METRICS = tuple(
    b'{"temp_c": %.1f, "humidity_pct": %.1f, "battery_pct": %.1f}'
    % (18.0 + (i * 7 % 90) / 10, 35.0 + (i * 13 % 200) / 10, 100.0 - (i % 60) / 2)
    for i in range(64)
)


def varint(value: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str,
    keepalive_s: int = 60,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """MQTT 5 CONNECT, clean start, no session kept after the connection ends; with
    ``username``/``password`` when given (flags bits 7/6, payload fields after the client id)."""
    flags = 0x02  # clean start
    payload = _utf8(client_id)  # no will: no will properties, topic or payload
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
    if password is not None:
        flags |= 0x40
        payload += _utf8(password)  # binary data: the same 2-byte length prefix
    body = _utf8("MQTT") + bytes((5, flags)) + struct.pack("!H", keepalive_s) + b"\x00"
    body += payload
    return bytes((0x10,)) + varint(len(body)) + body


def parse_connack(body: bytes) -> tuple[int, int]:
    """(reason code, the broker's Receive Maximum) of a CONNACK's variable header."""
    reason = body[1]
    receive_maximum = 65_535
    length, pos = _read_varint(body, 2)
    end = pos + length
    while pos < end:
        prop = body[pos]
        pos += 1
        size = _PROPERTY_SIZES.get(prop)
        if size is None:
            break
        if prop == 0x21:
            receive_maximum = struct.unpack_from("!H", body, pos)[0]
        if size > 0:
            pos += size
        elif size == 0:
            _, pos = _read_varint(body, pos)
        else:
            for _ in range(-size):
                pos += 2 + struct.unpack_from("!H", body, pos)[0]
    return reason, receive_maximum


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def device_ids(prefix: str, devices: int) -> list[str]:
    """The device ids of a run: unique per prefix, valid MQTT topic levels."""
    tag = prefix.replace("/", "-")
    return [f"{tag}-d{index:05d}" for index in range(devices)]


@dataclass
class Stats:
    """What one connection (or the whole run) counted."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    ack_latency: list[tuple[float, float]] = field(default_factory=list)
    """Sampled messages: (monotonic send time, seconds until their PUBACK arrived)."""


class _Publisher(asyncio.Protocol):
    """One MQTT connection publishing the telemetry of its devices at QoS 1."""

    def __init__(
        self,
        client_id: str,
        prefix: str,
        devices: list[tuple[int, str]],
        window: int,
        sends: dict[int, array[float]] | None,
        sample_every: int,
        login: tuple[str, str | None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._login = login
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stats = Stats()
        self.credit = 0.0  # messages the pacer allows beyond what was sent
        self.unthrottled = True
        self.stopping = False
        self._buffer = bytearray()
        self._connected = False
        self._in_flight: deque[int] = deque()
        self._pid = 0
        self._devices = [
            (index, _utf8(f"{prefix}/devices/{device_id}/telemetry"))
            for index, device_id in devices
        ]
        self._seqs = [0] * len(self._devices)
        self._next = 0
        self._sends = sends
        self._sample_every = sample_every
        self._sampled: dict[int, float] = {}

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        username, password = self._login or (None, None)
        transport.write(connect_packet(self.client_id, username=username, password=password))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before CONNACK"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos, end = 0, len(buffer)
        acked = 0
        in_flight = self._in_flight
        while end - pos >= 2:
            command = buffer[pos]
            length = buffer[pos + 1]
            head = 2
            if length & 0x80:
                if end - pos < 5 and not _varint_complete(buffer, pos + 1, end):
                    break
                length, body_at = _read_varint(buffer, pos + 1)
                head = body_at - pos
            if end - pos < head + length:
                break
            if command == _PUBACK:
                pid = (buffer[pos + head] << 8) | buffer[pos + head + 1]
                failed = length > 2 and buffer[pos + head + 2] >= 0x80
                expected = in_flight.popleft() if in_flight else -1
                if failed or expected != pid:  # the broker acks in order; else it is a bug
                    self.stats.failed += 1
                if self._sampled:
                    sent_at = self._sampled.pop(pid, None)
                    if sent_at is not None:
                        self.stats.ack_latency.append((sent_at, time.monotonic() - sent_at))
                acked += 1
            else:
                self._control(command, bytes(buffer[pos + head : pos + head + length]))
            pos += head + length
        del buffer[:pos]
        if acked:
            self.stats.acked += acked
            self.pump()

    def _control(self, command: int, body: bytes) -> None:
        """CONNACK (ready, learn the broker's Receive Maximum) and DISCONNECT."""
        if command == _CONNACK:
            reason, receive_maximum = parse_connack(body)
            if reason != 0:
                self.ready.set_exception(ConnectionError(f"CONNACK reason {reason:#x}"))
                return
            self.window = min(self.window, receive_maximum)
            self._connected = True
            self.ready.set_result(None)
        elif command == _DISCONNECT:
            reason = body[0] if body else 0
            print(f"{self.client_id}: broker sent DISCONNECT {reason:#x}", file=sys.stderr)

    # publishing
    def pump(self) -> None:
        """Sends as many messages as the window and the pacer allow, in one write."""
        if not self._connected or self.stopping or self.transport is None:
            return
        room = self.window - len(self._in_flight)
        if not self.unthrottled:
            room = min(room, int(self.credit))
        if room <= 0:
            return
        if not self.unthrottled:
            self.credit -= room
        packets = []
        devices, seqs, in_flight, sends = self._devices, self._seqs, self._in_flight, self._sends
        count = len(devices)
        now = time.time()
        mono = time.monotonic()
        ts = int(now * 1000)
        pid = self._pid
        slot = self._next
        sample_every, stats_sent = self._sample_every, self.stats.sent
        for _ in range(room):
            index, topic = devices[slot]
            seq = seqs[slot]
            seqs[slot] = seq + 1
            metrics = _METRICS[(seq + index) & 63]
            payload = b'{"seq": %d, "ts": %d, "metrics": %b}' % (seq, ts, metrics)
            pid = pid + 1 if pid < 65_535 else 1
            remaining = len(topic) + 3 + len(payload)
            packets.append(
                (b"\x32%c" % remaining if remaining < 128 else b"\x32" + varint(remaining))
                + topic
                + b"%c%c\x00" % (pid >> 8, pid & 0xFF)
                + payload
            )
            in_flight.append(pid)
            if sends is not None:
                sends[index].append(now)
            stats_sent += 1
            if sample_every and stats_sent % sample_every == 0:
                self._sampled[pid] = mono
            slot += 1
            if slot == count:
                slot = 0
        self._pid, self._next, self.stats.sent = pid, slot, stats_sent
        self.transport.write(b"".join(packets))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unacknowledged_samples(self) -> list[float]:
        """Send times of sampled messages whose PUBACK has not arrived."""
        return list(self._sampled.values())

    def disconnect(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")
            self.transport.close()


def _varint_complete(buffer: bytearray, pos: int, end: int) -> bool:
    return any(not buffer[at] & 0x80 for at in range(pos, min(end, pos + 4)))


@dataclass
class LoadSettings:
    prefix: str
    devices: int = 500
    connections: int = 8
    window: int = 1_000
    rate: float = 0.0  # msg/s over all connections; 0 = as fast as the broker acks
    duration_s: float = 10.0
    host: str = "127.0.0.1"
    port: int = 1883
    tick_s: float = 0.002
    sample_every: int = 97  # measure publish -> PUBACK on every Nth message
    record_sends: Path | None = None
    record_acks: Path | None = None
    username: str | None = None  # MQTT login; None = anonymous
    password: str | None = field(default=None, repr=False)


class LoadGenerator:
    """Runs the publishers; ``set_rate`` and ``stop`` may be called while it runs."""

    def __init__(self, settings: LoadSettings) -> None:
        self.settings = settings
        self.publishers: list[_Publisher] = []
        self.started = 0.0
        self._rate = settings.rate
        self._stop = asyncio.Event()
        ids = device_ids(settings.prefix, settings.devices)
        self.device_ids = ids
        self.sends: dict[int, array[float]] | None = (
            {index: array("d") for index in range(len(ids))} if settings.record_sends else None
        )

    def set_rate(self, rate: float) -> None:
        self._rate = max(0.0, rate)
        for publisher in self.publishers:
            publisher.unthrottled = self._rate == 0
            publisher.credit = min(publisher.credit, 1.0)

    def stop(self) -> None:
        self._stop.set()

    def totals(self) -> Stats:
        total = Stats()
        for publisher in self.publishers:
            total.sent += publisher.stats.sent
            total.acked += publisher.stats.acked
            total.failed += publisher.stats.failed
            total.ack_latency.extend(publisher.stats.ack_latency)
        return total

    async def connect(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        groups: list[list[tuple[int, str]]] = [[] for _ in range(s.connections)]
        for index, device_id in enumerate(self.device_ids):
            groups[index % s.connections].append((index, device_id))
        tag = f"{s.prefix.replace('/', '-')}-{os.getpid()}"
        for number, devices in enumerate(groups):
            _, publisher = await loop.create_connection(
                lambda devices=devices, number=number: _Publisher(  # type: ignore[misc]
                    f"loadgen-{tag}-{number}",
                    s.prefix,
                    devices,
                    s.window,
                    self.sends,
                    s.sample_every,
                    None if s.username is None else (s.username, s.password),
                ),
                s.host,
                s.port,
            )
            self.publishers.append(publisher)
        await asyncio.wait_for(asyncio.gather(*(p.ready for p in self.publishers)), 10)

    async def run(self) -> Stats:
        """Publishes until ``duration_s`` passed or ``stop``; waits briefly for last PUBACKs."""
        s = self.settings
        self.set_rate(self._rate)
        self.started = time.monotonic()
        deadline = self.started + s.duration_s
        last = self.started
        for publisher in self.publishers:
            publisher.pump()
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(s.tick_s)
            now = time.monotonic()
            if self._rate:
                share = self._rate * (now - last) / len(self.publishers)
                for publisher in self.publishers:
                    publisher.credit = min(publisher.credit + share, publisher.window + share)
            last = now
            for publisher in self.publishers:
                if publisher.closed.done():
                    raise ConnectionError(f"{publisher.client_id}: connection lost")
                publisher.pump()
        self.elapsed = time.monotonic() - self.started
        for publisher in self.publishers:
            publisher.stopping = True
        settle = time.monotonic() + 5
        while any(p.in_flight for p in self.publishers) and time.monotonic() < settle:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # last PUBACKs arrive as protocol callbacks
        for publisher in self.publishers:
            publisher.disconnect()
        return self.totals()

    def write_sends(self, path: Path) -> None:
        """Each device's send times (epoch s), indexed by seq, as JSON."""
        assert self.sends is not None
        data = {self.device_ids[i]: times.tolist() for i, times in self.sends.items()}
        path.write_text(json.dumps(data))

    def write_acks(self, path: Path) -> None:
        """The PUBACK latency samples as JSON: ``acked``, a list of [monotonic send time,
        seconds to PUBACK], and ``unacked``, the send times of samples never acknowledged."""
        data = {
            "acked": [[round(t, 6), round(s, 7)] for t, s in self.totals().ack_latency],
            "unacked": [t for p in self.publishers for t in p.unacknowledged_samples],
        }
        path.write_text(json.dumps(data))


class _Connector(asyncio.Protocol):
    """One connection of ``connect_storm``: CONNECT on connect, done at the CONNACK."""

    def __init__(self, packet: bytes, connack: asyncio.Future[int]) -> None:
        self._packet, self.connack = packet, connack
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._packet)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        buffer = self._buffer
        if self.connack.done() or len(buffer) < 2:
            return
        if buffer[0] != _CONNACK:
            self.connack.set_exception(ConnectionError(f"{buffer[0]:#x}, not CONNACK"))
        elif _varint_complete(bytearray(buffer), 1, len(buffer)):
            length, start = _read_varint(buffer, 1)
            if len(buffer) >= start + length:
                self.connack.set_result(parse_connack(buffer[start : start + length])[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc or ConnectionError("closed before CONNACK"))


async def connect_storm(
    settings: LoadSettings, count: int, concurrency: int, hold_s: float = 0.0
) -> dict[str, object]:
    """Sets up ``count`` MQTT 5 connections, ``concurrency`` at a time (TCP connect, CONNECT,
    CONNACK), holds them all open until the last CONNACK and ``hold_s`` longer, then
    disconnects them.

    Prints ``{"connected": n}`` once all are up (or failed), before holding. A refused
    or failed connection is counted in ``failed``, never retried. Returns the summary line.
    """
    loop = asyncio.get_running_loop()
    tag = f"{settings.prefix.replace('/', '-')}-{os.getpid()}"
    login = settings.username, settings.password
    latencies: list[float] = []
    opened: list[_Connector] = []
    failed = 0
    next_index = 0

    async def worker() -> None:
        nonlocal failed, next_index
        while next_index < count:
            index, next_index = next_index, next_index + 1
            packet = connect_packet(f"conn-{tag}-{index}", username=login[0], password=login[1])
            connack: asyncio.Future[int] = loop.create_future()
            started = time.monotonic()
            try:
                _, connector = await loop.create_connection(
                    lambda packet=packet, connack=connack: _Connector(packet, connack),  # type: ignore[misc]
                    settings.host,
                    settings.port,
                )
                opened.append(connector)
                reason = await asyncio.wait_for(connack, 10)
            except (OSError, TimeoutError):
                failed += 1
                continue
            if reason != 0:
                failed += 1
                continue
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    with contextlib.suppress(TimeoutError):  # the bound: what connected by then is reported
        await asyncio.wait_for(asyncio.gather(*workers), settings.duration_s)
    seconds = time.monotonic() - started
    print(json.dumps({"connected": len(latencies), "failed": failed}), flush=True)
    await asyncio.sleep(hold_s)
    for connector in opened:
        if connector.transport is not None and not connector.transport.is_closing():
            connector.transport.write(b"\xe0\x00")
            connector.transport.close()
    await asyncio.sleep(0.2)  # let the closes go out
    return {
        "final": True,
        "connections": count,
        "connected": len(latencies),
        "failed": failed,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "rate": round(len(latencies) / seconds, 1) if seconds else None,
        "connack_ms": _latency_ms([(0.0, latency) for latency in latencies]),
    }


def _raise_file_limit(needed: int) -> None:
    """Raises the soft limit of open files toward ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def drop_sessions(
    host: str,
    port: int,
    client_ids: list[str],
    timeout_s: float = 5,
    *,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Ends the broker sessions of ``client_ids`` (clean start, expiry 0), queued messages too.

    Connecting with Clean Start and no Session Expiry discards the old session on the broker,
    including whatever it still queued for it; the connection is then closed at once. Logs in
    with ``username``/``password`` when given; a refused CONNECT (the session stays) raises
    ConnectionError.
    """
    for client_id in client_ids:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        try:
            writer.write(connect_packet(client_id, username=username, password=password))
            header = await asyncio.wait_for(reader.readexactly(2), timeout_s)
            body = await asyncio.wait_for(reader.readexactly(header[1]), timeout_s)
            if header[0] != _CONNACK or len(body) < 2 or body[1] != 0:
                reason = body[1] if header[0] == _CONNACK and len(body) > 1 else header[0]
                raise ConnectionError(f"{client_id}: CONNECT refused ({reason:#x})")
            writer.write(b"\xe0\x00")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_ms(samples: list[tuple[float, float]]) -> dict[str, float | int | None]:
    """p50/p90/p99/max in ms of (send time, latency s) samples."""
    latency = sorted(seconds for _, seconds in samples)
    return {
        "p50": _ms(_percentile(latency, 0.5)),
        "p90": _ms(_percentile(latency, 0.9)),
        "p99": _ms(_percentile(latency, 0.99)),
        "max": _ms(latency[-1] if latency else None),
        "samples": len(latency),
    }


async def _commands(generator: LoadGenerator) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if words[:1] == ["rate"] and len(words) == 2:
            generator.set_rate(0 if words[1] == "max" else float(words[1]))
        elif words[:1] == ["stop"]:
            generator.stop()


async def _progress(generator: LoadGenerator, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        totals = generator.totals()
        line = {
            "t": round(time.monotonic() - generator.started, 3),
            "wall": time.time(),
            "sent": totals.sent,
            "acked": totals.acked,
            "failed": totals.failed,
        }
        print(json.dumps(line), flush=True)


async def _main(args: argparse.Namespace) -> dict[str, object]:
    settings = LoadSettings(
        prefix=args.prefix,
        devices=args.devices,
        connections=args.connections,
        window=args.window,
        rate=args.rate,
        duration_s=args.duration,
        host=args.host,
        port=args.port,
        sample_every=args.sample_every,
        record_sends=args.record_sends,
        record_acks=args.record_acks,
        username=args.username,
        password=os.environ.get(PASSWORD_ENV) if args.username is not None else None,
    )
    if args.connects:
        _raise_file_limit(args.connects + 64)
        return await connect_storm(settings, args.connects, args.concurrency, args.hold)
    generator = LoadGenerator(settings)
    await generator.connect()
    helpers = [asyncio.create_task(_progress(generator, args.progress))]
    if args.commands:
        helpers.append(asyncio.create_task(_commands(generator)))
    cpu0 = time.process_time()
    try:
        totals = await generator.run()
    finally:
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    cpu = time.process_time() - cpu0
    if args.record_sends:
        generator.write_sends(args.record_sends)
    if args.record_acks:
        generator.write_acks(args.record_acks)
    return {
        "final": True,
        "sent": totals.sent,
        "acked": totals.acked,
        "failed": totals.failed,
        "seconds": round(generator.elapsed, 3),
        "rate": round(totals.acked / generator.elapsed, 1),
        "cpu_s": round(cpu, 3),
        "window": min(p.window for p in generator.publishers),
        "connections": len(generator.publishers),
        "puback_ms": _latency_ms(totals.ack_latency),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True, help="topic prefix (<prefix>/devices/...)")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--window", type=int, default=1_000, help="max in-flight per connection")
    parser.add_argument("--rate", type=float, default=0.0, help="msg/s in total; 0 = max")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (required bound)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--progress", type=float, default=0.5, help="seconds between lines")
    parser.add_argument("--commands", action="store_true", help="read rate/stop from stdin")
    parser.add_argument("--record-sends", type=Path, help="write per-message send times here")
    parser.add_argument(
        "--sample-every", type=int, default=97, help="PUBACK latency of every Nth message"
    )
    parser.add_argument("--record-acks", type=Path, help="write the PUBACK latency samples here")
    parser.add_argument(
        "--connects", type=int, default=0, help="measure N connection setups instead"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="--connects: setups at once")
    parser.add_argument("--hold", type=float, default=0.0, help="--connects: seconds held open")
    parser.add_argument(
        "--username", help=f"MQTT login (default: anonymous); the password from ${PASSWORD_ENV}"
    )
    args = parser.parse_args()
    summary = asyncio.run(_main(args))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
