"""Simulated devices: many MQTT 5 clients publishing realistic readings with sequence numbers.

Each device is its own MQTT connection (client id = device id), publishes QoS 1 to
``devices/<id>/telemetry`` on a fixed schedule, and counts a reading as delivered when the
broker's PUBACK arrives. Sequence numbers continue across runs (kept in a state file), so
event ids (``<device>:<seq>``) never repeat by accident. Optional injection of duplicates
(the same reading published twice) and bad payloads exercises the DLQ and deduplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiomqtt

BAD_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("invalid_json", b'{"metrics": {"temp_c": 21.5}'),
    ("invalid_utf8", b'{"metrics": {"temp_c": 21.5}, "attributes": {"x": "\xff\xfe"}}'),
    ("not_an_object", b"[1, 2, 3]"),
    ("schema_mismatch", b'{"metrics": {"temp_c": "warm"}}'),
)
"""Injected bad inputs and the DLQ reason the gateway must give each."""


NO_MATCHING_SUBSCRIBERS = 16
"""MQTT 5 PUBACK reason code 0x10: accepted, but nobody subscribed, so the broker dropped it."""
FIRST_FAILURE_CODE = 0x80
"""MQTT 5 PUBACK reason codes from 0x80 up say the broker did not accept the message."""
RECONNECT_FIRST_S, RECONNECT_CAP_S = 0.2, 5.0
"""A device's first wait before reconnecting, and the longest (doubling in between)."""
REFUSED = "refused: "
"""How ``connect_error`` starts when the server refused the login (not retried)."""


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """What to simulate; ``rate`` is messages per second across all devices."""

    devices: int = 10
    rate: float = 10.0
    duration_s: float | None = None
    count: int | None = None
    """Stop after this many publishes in total (whichever of duration/count comes first)."""
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "sim"
    topic_template: str = "devices/{device_id}/telemetry"
    duplicate_ratio: float = 0.0
    bad_ratio: float = 0.0
    state_file: Path | None = None
    ledger: Path | None = None
    """Append one JSON line per PUBACKed publish: device_id, seq, kind (ok/duplicate/bad)."""
    seed: int | None = None
    connect_concurrency: int = 50
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    device_passwords: Mapping[str, str] | None = field(default=None, repr=False)
    """When set, each device logs in as itself (username = device id) with its password."""

    def login(self, device_id: str) -> tuple[str | None, str | None]:
        """The username and password ``device_id`` connects with."""
        if self.device_passwords is not None:
            return device_id, self.device_passwords.get(device_id)
        return self.username, self.password


@dataclass(slots=True)
class SimulationReport:
    """What happened: publishes attempted and acknowledged by the broker, by kind."""

    attempted: int = 0
    acked: int = 0
    failed: int = 0
    acked_by_kind: dict[str, int] = field(default_factory=dict)
    unrouted: int = 0
    """PUBACKs with reason code 16 (no subscriber took the message): sent again."""
    refused: int = 0
    """Good readings the server refused (PUBACK reason code 0x80 or more)."""
    reconnects: int = 0
    """Connections made again after one was lost."""
    connect_failures: int = 0
    connect_error: str = ""
    """Why the first device that could not connect was refused."""
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0


class _Device:
    """One device's readings: a slow random walk per metric, seq strictly increasing."""

    def __init__(self, device_id: str, seq: int, rng: random.Random) -> None:
        self.device_id = device_id
        self.seq = seq
        self._rng = rng
        self._temp = rng.uniform(15, 30)
        self._humidity = rng.uniform(30, 70)
        self._battery = rng.uniform(60, 100)

    def reading(self, now_ms: int) -> dict[str, object]:
        self.seq += 1
        rng = self._rng
        self._temp += rng.gauss(0, 0.3)
        self._humidity = min(100.0, max(0.0, self._humidity + rng.gauss(0, 0.5)))
        self._battery = max(0.0, self._battery - rng.uniform(0, 0.01))
        if rng.random() < 0.002:  # an occasional spike, so alert rules have something to see
            self._temp += rng.choice((-1, 1)) * rng.uniform(15, 25)
        return {
            "seq": self.seq,
            "ts": now_ms,
            "metrics": {
                "temp_c": round(self._temp, 2),
                "humidity_pct": round(self._humidity, 2),
                "battery_pct": round(self._battery, 3),
            },
            "attributes": {"fw": "1.4.2"},
        }


def _load_state(path: Path | None) -> dict[str, int]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


SEQ_LEASE = 1_000
"""How far ahead the periodic save puts each device's sequence number: a simulator killed
between saves starts past every number it used (a gap the platform reports), never on one
it already sent (a reading the platform would drop as a duplicate event id)."""


def _save_state(path: Path | None, devices: list[_Device], ahead: int = 0) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _load_state(path) | {device.device_id: device.seq + ahead for device in devices}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    tmp.replace(path)


def fleet_ids(prefix: str, devices: int) -> list[str]:
    """The simulated devices' ids: ``<prefix>-00000``, ``<prefix>-00001``, ..."""
    return [f"{prefix}-{i:05d}" for i in range(devices)]


class Simulation:
    """Runs ``settings`` until the duration or count is reached, or ``stop()``."""

    def __init__(
        self, settings: SimulationSettings, progress: Callable[[SimulationReport], None] | None
    ) -> None:
        self.settings = settings
        self.report = SimulationReport()
        self._progress = progress
        self._stopping = asyncio.Event()
        rng = random.Random(settings.seed)  # noqa: S311 - simulated readings, not secrets
        state = _load_state(settings.state_file)
        self._devices = [
            _Device(name, state.get(name, 0), random.Random(rng.random()))  # noqa: S311
            for name in fleet_ids(settings.prefix, settings.devices)
        ]
        self._rng = rng
        self._budget = settings.count
        self._ledger: IO[str] | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def _deliver(
        self, client: aiomqtt.Client, codes: _PubackCodes, topic: str, payload: bytes
    ) -> int:
        """Publishes until the server has handed the message on; returns the PUBACK's reason
        code. Code 16 (no matching subscribers; e.g. a restarted Mosquitto before the
        gateways have subscribed again) means it was dropped, so the device sends it again.
        A lost connection raises ``MqttError`` (the caller reconnects and sends it again)."""
        delay = 0.2
        while True:
            codes.latest = 0
            await client.publish(topic, payload, qos=1)
            if codes.latest != NO_MATCHING_SUBSCRIBERS:
                return codes.latest
            self.report.unrouted += 1
            if self._stopping.is_set():
                raise aiomqtt.MqttError("stopped before any subscriber took the message")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def run(self) -> SimulationReport:
        started = time.monotonic()
        self._ledger = self.settings.ledger.open("a") if self.settings.ledger else None
        connect_slots = asyncio.Semaphore(self.settings.connect_concurrency)
        deadline = (
            started + self.settings.duration_s if self.settings.duration_s is not None else None
        )
        ticker = asyncio.create_task(self._tick(started))
        try:
            await asyncio.gather(
                *(self._run_device(d, connect_slots, started, deadline) for d in self._devices)
            )
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if self._ledger:
                self._ledger.close()
            _save_state(self.settings.state_file, self._devices)
            self.report.seconds = time.monotonic() - started
        return self.report

    async def _tick(self, started: float) -> None:
        """Every second: progress, and the devices' sequence numbers saved ``SEQ_LEASE``
        ahead (see there); a clean stop saves them exactly."""
        while True:
            await asyncio.sleep(1.0)
            self.report.seconds = time.monotonic() - started
            _save_state(self.settings.state_file, self._devices, SEQ_LEASE)  # a small file
            if self._progress is not None:
                self._progress(self.report)

    def _take_budget(self) -> bool:
        if self._budget is None:
            return True
        if self._budget <= 0:
            return False
        self._budget -= 1
        return True

    async def _run_device(
        self,
        device: _Device,
        connect_slots: asyncio.Semaphore,
        started: float,
        deadline: float | None,
    ) -> None:
        """One device, as real ones behave: it reconnects (with backoff) whenever its
        connection is lost and first sends again what was not acknowledged."""
        settings = self.settings
        interval = settings.devices / settings.rate
        # Spread the devices' schedules over one interval so load is even.
        schedule = _Schedule(started + self._rng.uniform(0, interval), interval, deadline)
        topic = settings.topic_template.format(device_id=device.device_id)
        unacknowledged: list[_Outgoing] = []
        backoff = RECONNECT_FIRST_S
        connected_once = False
        while not self._stopping.is_set() and not schedule.over():
            client = await self._connect(device, connect_slots, refused_ends=not connected_once)
            if client is None:
                if not connected_once and self.report.connect_error.startswith(REFUSED):
                    return  # a refused login is not retried
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, RECONNECT_CAP_S)
                continue
            if connected_once:
                self.report.reconnects += 1
            connected_once, backoff = True, RECONNECT_FIRST_S
            try:
                if await self._publish_until_done(client, device, topic, schedule, unacknowledged):
                    return
            except aiomqtt.MqttError:
                self.report.failed += 1  # the connection is gone: reconnect, send again
            finally:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)

    async def _publish_until_done(
        self,
        client: aiomqtt.Client,
        device: _Device,
        topic: str,
        schedule: _Schedule,
        unacknowledged: list[_Outgoing],
    ) -> bool:
        """Sends what was not acknowledged, then a message per tick; True when the device
        is done (duration, count or stop), ``MqttError`` when the connection is lost."""
        codes = _PubackCodes(client)
        while True:
            while unacknowledged:
                await self._send(client, codes, topic, unacknowledged[0])
                unacknowledged.pop(0)
            if self._stopping.is_set() or schedule.over():
                return True
            wait = schedule.next_at - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
                continue
            schedule.next_at += schedule.interval
            if not self._take_budget():
                return True
            unacknowledged.extend(self._next_messages(device))

    async def _connect(
        self, device: _Device, connect_slots: asyncio.Semaphore, *, refused_ends: bool
    ) -> aiomqtt.Client | None:
        username, password = self.settings.login(device.device_id)
        async with connect_slots:
            client = aiomqtt.Client(
                self.settings.host,
                self.settings.port,
                identifier=device.device_id,
                username=username,
                password=password,
                protocol=aiomqtt.ProtocolVersion.V5,
                timeout=15,
            )
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                self.report.connect_failures += 1
                refused = isinstance(exc, aiomqtt.MqttCodeError) and refused_ends
                if not self.report.connect_error or refused:
                    self.report.connect_error = f"{REFUSED if refused else ''}{exc}"
                return None
        return client

    def _next_messages(self, device: _Device) -> list[_Outgoing]:
        """The next reading (or bad payload), and its duplicate when one is injected."""
        roll = self._rng.random()
        settings = self.settings
        if roll < settings.bad_ratio:
            kind, payload = self._rng.choice(BAD_PAYLOADS)
            return [_Outgoing(device.device_id, payload, kind, None)]
        reading = device.reading(int(time.time() * 1000))
        payload = json.dumps(reading, separators=(",", ":")).encode()
        message = _Outgoing(device.device_id, payload, "ok", device.seq)
        if roll > 1 - settings.duplicate_ratio:
            return [message, _Outgoing(device.device_id, payload, "duplicate", device.seq)]
        return [message]

    async def _send(
        self, client: aiomqtt.Client, codes: _PubackCodes, topic: str, message: _Outgoing
    ) -> None:
        """Publishes ``message`` once it is acknowledged (``MqttError`` if the connection
        is lost first). A refusal (reason code 0x80 or more) is an answer too: for a bad
        payload it is the expected one (the server dead-lettered it); a good reading
        refused is counted as failed and not sent again."""
        self.report.attempted += 1
        code = await self._deliver(client, codes, topic, message.payload)
        if code >= FIRST_FAILURE_CODE and message.kind in ("ok", "duplicate"):
            self.report.failed += 1
            self.report.refused += 1
            return
        self.report.acked += 1
        kinds = self.report.acked_by_kind
        kinds[message.kind] = kinds.get(message.kind, 0) + 1
        if self._ledger is not None:
            entry = {"device_id": message.device_id, "seq": message.seq, "kind": message.kind}
            self._ledger.write(json.dumps(entry) + "\n")


@dataclass(slots=True)
class _Schedule:
    """When a device publishes next, how often, and until when."""

    next_at: float
    interval: float
    deadline: float | None

    def over(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A message a device sends, kept until acknowledged."""

    device_id: str
    payload: bytes
    kind: str
    seq: int | None


class _PubackCodes:
    """The reason code of each PUBACK a client receives. aiomqtt keeps them to itself, so
    they are read off paho's callback; a device has one publish in flight at a time, so the
    latest code answers its latest publish."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.latest = 0
        paho = client._client  # the reason code is only on paho's callback
        forward = paho.on_publish

        def on_publish(*args: Any) -> None:
            self.latest = int(getattr(args[3], "value", args[3]))
            if forward is not None:
                forward(*args)

        paho.on_publish = on_publish


def format_progress(report: SimulationReport) -> str:
    """One line of progress for a terminal."""
    rate = report.rate if math.isfinite(report.rate) else 0.0
    return (
        f"{report.seconds:6.1f}s  acked {report.acked:>9,}  failed {report.failed:>6,}  "
        f"{rate:>9,.0f} msg/s"
    )
