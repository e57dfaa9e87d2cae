"""Simulated devices: many MQTT 5 clients publishing realistic readings.

Each device is its own MQTT connection (client id = device id), publishes QoS 1 to
``devices/<id>/telemetry`` on a fixed schedule, and counts a reading as delivered when the
broker's PUBACK arrives. What a device sends follows its kind (``device_models``: with or
without seq, boot epoch and ts, rebooting now and then, its clock skewed or glitching);
by default every device numbers and dates its readings. Sequence numbers and boot epochs
continue across runs (kept in a state file), so event ids never repeat by accident.
Optional injection of duplicates (the same reading published twice) and bad payloads
exercises the DLQ and deduplication.
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

from devstack.device_models import (
    TIDY,
    DeviceMix,
    Reading,
    SimulatedDevice,
    load_counters,
    save_counters,
)

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
REBOOT_S = (0.5, 2.0)
"""How long a rebooting device is off (uniform): disconnected, measuring nothing."""
IMPLAUSIBLE = "implausible_timestamp"
"""The DLQ reason of a reading dated by a glitched clock."""


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
    """Append one JSON line per PUBACKed publish: device_id, device_kind, kind (ok,
    duplicate, else the DLQ reason expected), and for a reading seq, boot, ts and event_id
    (the gateway's, when the device can know it), or its metrics when it has none."""
    mix: DeviceMix = TIDY
    """What kinds of device the fleet holds (by default all number and date readings)."""
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
    reboots: int = 0
    """Devices that went off for a moment and started a new sequence."""
    connect_failures: int = 0
    connect_error: str = ""
    """Why the first device that could not connect was refused."""
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0


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
        counters = load_counters(settings.state_file)
        ids = fleet_ids(settings.prefix, settings.devices)
        kinds = settings.mix.assign(ids)
        self._devices = [
            SimulatedDevice(
                name,
                settings.topic_template.format(device_id=name),
                *kinds[name],
                counters.get(name, {}),
                random.Random(rng.random()),  # noqa: S311
            )
            for name in ids
        ]
        self._rng = rng
        self._budget = settings.count
        self._ledger: IO[str] | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def _deliver(
        self, client: aiomqtt.Client, codes: _PubackCodes, topic: str, message: _Outgoing
    ) -> int:
        """Publishes until the server has handed the message on; returns the PUBACK's reason
        code. Code 16 (no matching subscribers; e.g. a restarted Mosquitto before the
        gateways have subscribed again) means it was dropped, so the device sends it again.
        A lost connection raises ``MqttError`` (the caller reconnects and sends it again)."""
        delay = 0.2
        while True:
            codes.latest = 0
            message.publishes += 1
            await client.publish(topic, message.payload, qos=1)
            if codes.latest != NO_MATCHING_SUBSCRIBERS:
                return codes.latest
            self.report.unrouted += 1
            if self._stopping.is_set():
                raise aiomqtt.MqttError("stopped before any subscriber took the message")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def run(self) -> SimulationReport:
        started = time.monotonic()
        # Saved ahead at once: a simulator killed before its first periodic save still
        # starts its next run past every epoch and number this one uses.
        save_counters(self.settings.state_file, self._devices, ahead=True)
        for device in self._devices:
            device.plan_reboot(started, self.settings.mix.uptime_s)
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
            save_counters(self.settings.state_file, self._devices, ahead=False)
            self.report.seconds = time.monotonic() - started
        return self.report

    async def _tick(self, started: float) -> None:
        """Every second: progress, and the devices' counters saved ahead (see
        ``SEQ_LEASE``); a clean stop saves them exactly."""
        while True:
            await asyncio.sleep(1.0)
            self.report.seconds = time.monotonic() - started
            save_counters(self.settings.state_file, self._devices, ahead=True)  # a small file
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
        device: SimulatedDevice,
        connect_slots: asyncio.Semaphore,
        started: float,
        deadline: float | None,
    ) -> None:
        """One device, as real ones behave: it reconnects (with backoff) whenever its
        connection is lost and first sends again what was not acknowledged; one of a
        rebooting kind disconnects now and then, is off for a moment and starts anew."""
        settings = self.settings
        interval = settings.devices / settings.rate
        # Spread the devices' schedules over one interval so load is even.
        schedule = _Schedule(started + self._rng.uniform(0, interval), interval, deadline)
        unacknowledged: list[_Outgoing] = []
        backoff = RECONNECT_FIRST_S
        connected_once = lost = False
        while not self._stopping.is_set() and not schedule.over():
            client = await self._connect(device, connect_slots, refused_ends=not connected_once)
            if client is None:
                if not connected_once and self.report.connect_error.startswith(REFUSED):
                    return  # a refused login is not retried
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, RECONNECT_CAP_S)
                continue
            if lost:
                self.report.reconnects += 1
            connected_once, lost, backoff = True, False, RECONNECT_FIRST_S
            rebooting = False
            try:
                if await self._publish_until_done(client, device, schedule, unacknowledged):
                    return
                rebooting = True
            except aiomqtt.MqttError:
                self.report.failed += 1  # the connection is gone: reconnect, send again
                lost = True
            finally:
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.__aexit__(None, None, None)
            if rebooting:
                await self._reboot(device, schedule)

    async def _reboot(self, device: SimulatedDevice, schedule: _Schedule) -> None:
        """The device is off for a moment (it measures nothing meanwhile), then starts a new
        sequence. Called with nothing unacknowledged: a reboot loses no reading."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._rng.uniform(*REBOOT_S))
        now = time.monotonic()
        while schedule.next_at < now:
            schedule.next_at += schedule.interval
        device.reboot()
        device.plan_reboot(now, self.settings.mix.uptime_s)
        self.report.reboots += 1

    async def _publish_until_done(
        self,
        client: aiomqtt.Client,
        device: SimulatedDevice,
        schedule: _Schedule,
        unacknowledged: list[_Outgoing],
    ) -> bool:
        """Sends what was not acknowledged, then a message per tick; True when the device
        is done (duration, count or stop), False when it is to reboot (all acknowledged),
        ``MqttError`` when the connection is lost."""
        codes = _PubackCodes(client)
        while True:
            while unacknowledged:
                await self._send(client, codes, device.topic, unacknowledged[0])
                unacknowledged.pop(0)
            if self._stopping.is_set() or schedule.over():
                return True
            if time.monotonic() >= device.reboot_at:
                return False
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
        self, device: SimulatedDevice, connect_slots: asyncio.Semaphore, *, refused_ends: bool
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

    def _next_messages(self, device: SimulatedDevice) -> list[_Outgoing]:
        """The next reading (or bad payload, or reading dated by a glitched clock), and its
        duplicate when one is injected."""
        roll = self._rng.random()
        settings = self.settings
        if roll < settings.bad_ratio:
            kind, payload = self._rng.choice(BAD_PAYLOADS)
            return [_Outgoing(device, payload, kind, None)]
        glitches = settings.mix.glitches
        if glitches and device.kind.dates and self._rng.random() < glitches:
            glitched = device.reading(int(time.time() * 1000), glitch=True)
            return [_Outgoing(device, glitched.payload, IMPLAUSIBLE, glitched)]
        reading = device.reading(int(time.time() * 1000))
        message = _Outgoing(device, reading.payload, "ok", reading)
        if roll > 1 - settings.duplicate_ratio:
            return [message, _Outgoing(device, reading.payload, "duplicate", reading)]
        return [message]

    async def _send(
        self, client: aiomqtt.Client, codes: _PubackCodes, topic: str, message: _Outgoing
    ) -> None:
        """Publishes ``message`` once it is acknowledged (``MqttError`` if the connection
        is lost first). A refusal (reason code 0x80 or more) is an answer too: for a bad
        payload it is the expected one (the server dead-lettered it); a good reading
        refused is counted as failed and not sent again."""
        self.report.attempted += 1
        code = await self._deliver(client, codes, topic, message)
        if code >= FIRST_FAILURE_CODE and message.kind in ("ok", "duplicate"):
            self.report.failed += 1
            self.report.refused += 1
            return
        self.report.acked += 1
        kinds = self.report.acked_by_kind
        kinds[message.kind] = kinds.get(message.kind, 0) + 1
        if self._ledger is not None:
            self._ledger.write(json.dumps(message.ledger()) + "\n")


@dataclass(slots=True)
class _Schedule:
    """When a device publishes next, how often, and until when."""

    next_at: float
    interval: float
    deadline: float | None

    def over(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(slots=True)
class _Outgoing:
    """A message a device sends, kept until acknowledged, and how often it was published
    (again after a lost connection, or after reason code 16)."""

    device: SimulatedDevice
    payload: bytes
    kind: str
    reading: Reading | None
    """What the payload holds, when it is a reading (a glitched one too)."""
    publishes: int = 0

    def ledger(self) -> dict[str, object]:
        """Its line in the ledger, once acknowledged."""
        entry: dict[str, object] = {
            "device_id": self.device.device_id,
            "device_kind": str(self.device.kind),
            "kind": self.kind,
            "publishes": self.publishes,
        }
        if self.reading is None:
            return entry | {"seq": None}
        return entry | self.reading.ledger()


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
