"""MQTT sessions across gateway processes (direct mode): one holder per client id, anywhere.

Two gateway processes on their own ports share one sessions topic. A persistent session
moves from one to the other with its subscriptions; a newer connection on one process takes
the session from a connection on the other (MQTT 5 DISCONNECT 0x8E); and a process frozen
with SIGSTOP while its device moved away writes nothing for that device when it wakes up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import mqtt5
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.avro import SchemaCatalog, encode
from contracts.registry.factory import open_registry
from contracts.topics import EDGE_SESSIONS
from devstack import DevStackSettings
from devstack.clients import kafka_client
from tests.clocks import RELOAD_S, HostClock
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    event_ids,
    write_direct_config,
)
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@dataclass(frozen=True, slots=True)
class Pair:
    first: GatewayProcess
    second: GatewayProcess
    ports: tuple[int, int]
    topic: str
    commands: str
    settings: DevStackSettings
    clocks: tuple[HostClock, HostClock]
    """Each process's wall clock, which a test may step."""


@pytest.fixture
async def pair(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[Pair]:
    topic, dlq, sessions = unique("telemetry"), unique("dlq"), unique("sessions")
    commands = unique("commands")
    await create_topics(kafka_client(settings), topic, dlq, commands)
    admin = AIOKafkaAdminClient(**kafka_client(settings).aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(sessions, 3, 1, topic_configs=dict(EDGE_SESSIONS.config))]
        )
    finally:
        await admin.close()
    ports = free_ports(2)
    clocks = (HostClock(tmp_path / "clock-1"), HostClock(tmp_path / "clock-2"))
    gateways = [
        GatewayProcess(
            write_direct_config(
                tmp_path / f"gw-{n}.yaml",
                port=port,
                topic=topic,
                dlq=dlq,
                kafka={"linger_ms": 0},
                commands=commands,
                instance=f"{unique('gw')}-{n}",
                sessions_topic=sessions,
            ),
            f"gw-{n}",
            tmp_path / f"gw-{n}.log",
            settings,
            clocks[n - 1].env(),
        )
        for n, port in enumerate(ports, 1)
    ]
    for gateway in gateways:
        gateway.start()
    await asyncio.gather(*(gateway.wait_ready() for gateway in gateways))
    try:
        yield Pair(
            gateways[0], gateways[1], (ports[0], ports[1]), topic, commands, settings, clocks
        )
    finally:
        for gateway in gateways:
            gateway.resume()
            assert gateway.terminate() == 0


class Device:
    """A raw MQTT 5 client: exact packets in and out, nothing done behind the test's back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._buffer = b""

    @classmethod
    async def connect(
        cls, port: int, client_id: str, *, clean: bool, expiry_s: int = 3600
    ) -> tuple[Device, bool]:
        """Connects with a session expiry of ``expiry_s`` (an hour); returns the device and
        session present."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        device = cls(reader, writer)
        device.send(
            mqtt5.ConnectPacket(
                client_id, clean_start=clean, session_expiry_interval=expiry_s, keep_alive=60
            )
        )
        connack = await device.next_packet()
        assert isinstance(connack, mqtt5.ConnAckPacket)
        assert connack.reason_code == mqtt5.ConnAckReasonCode.SUCCESS
        return device, connack.session_present

    def send(self, packet: mqtt5.Packet) -> None:
        self.writer.write(packet.write())

    async def next_packet(self, timeout_s: float = 15) -> mqtt5.Packet | None:
        """The next packet, or None when the server closed the connection."""
        async with asyncio.timeout(timeout_s):
            while True:
                if self._buffer:
                    try:
                        packet, used = mqtt5.read(memoryview(self._buffer))
                    except IndexError:
                        pass  # not all of it yet
                    else:
                        self._buffer = self._buffer[used:]
                        return packet
                chunk = await self.reader.read(4096)
                if not chunk:
                    return None
                self._buffer += chunk

    def publish(self, device_id: str, seq: int, packet_id: int) -> None:
        payload = json.dumps({"seq": seq, "metrics": {"t": 1.0}}).encode()
        self.send(
            mqtt5.PublishPacket(
                f"devices/{device_id}/telemetry",
                payload,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                packet_id=packet_id,
            )
        )

    def close(self) -> None:
        self.writer.close()


async def test_a_persistent_session_moves_to_another_process_with_its_subscriptions(
    pair: Pair,
) -> None:
    device, present = await Device.connect(pair.ports[0], "dev-move", clean=False)
    assert not present
    device.send(
        mqtt5.SubscribePacket(
            1, [mqtt5.TopicFilter("devices/dev-move/commands", max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
    )
    suback = await device.next_packet()
    assert isinstance(suback, mqtt5.SubAckPacket)
    device.send(mqtt5.DisconnectPacket())
    device.close()
    await asyncio.sleep(1.0)  # the first process writes its session updates in the background
    elsewhere, present = await Device.connect(pair.ports[1], "dev-move", clean=False)
    assert present  # session present: the second process knew the session
    elsewhere.close()


async def _leave_a_session(pair: Pair, client_id: str, expiry_s: int) -> None:
    """A device with a subscription disconnects from the first process, keeping its session."""
    device, _ = await Device.connect(pair.ports[0], client_id, clean=False, expiry_s=expiry_s)
    device.send(
        mqtt5.SubscribePacket(
            1, [mqtt5.TopicFilter(f"devices/{client_id}/commands", max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
    )
    assert isinstance(await device.next_packet(), mqtt5.SubAckPacket)
    device.send(mqtt5.DisconnectPacket())
    device.close()
    await asyncio.sleep(1.0)  # the release is written and read back by both processes


async def test_a_holder_whose_clock_jumps_ahead_keeps_a_session_that_has_not_expired(
    pair: Pair,
) -> None:
    """Expiry is counted on the log's clock: the holder's wall clock stepped an hour ahead
    (a bad time server, a VM resumed) must not end a session that left a second ago."""
    await _leave_a_session(pair, "dev-ahead", expiry_s=600)
    pair.clocks[0].step(3600.0)
    await asyncio.sleep(RELOAD_S + 2.0)  # the holder reads its clock again and sweeps twice
    back, present = await Device.connect(pair.ports[1], "dev-ahead", clean=False, expiry_s=600)
    assert present
    back.close()


async def test_a_claim_from_a_process_whose_clock_is_ahead_resumes_the_session(
    pair: Pair,
) -> None:
    """The process a device moves to has its clock an hour ahead: the session it claims
    left a second ago and is resumed, not found expired by that clock."""
    await _leave_a_session(pair, "dev-claim", expiry_s=600)
    pair.clocks[1].step(3600.0)
    await asyncio.sleep(RELOAD_S + 0.5)
    back, present = await Device.connect(pair.ports[1], "dev-claim", clean=False, expiry_s=600)
    assert present
    back.close()


async def test_a_session_past_its_expiry_is_gone_wherever_the_device_returns(pair: Pair) -> None:
    await _leave_a_session(pair, "dev-gone", expiry_s=1)
    await asyncio.sleep(2.5)  # past its expiry, and a sweep of the holder's
    back, present = await Device.connect(pair.ports[1], "dev-gone", clean=False, expiry_s=1)
    assert not present
    back.close()


async def test_a_newer_connection_on_another_process_takes_the_session_over(pair: Pair) -> None:
    old, _ = await Device.connect(pair.ports[0], "dev-take", clean=True)
    new, _ = await Device.connect(pair.ports[1], "dev-take", clean=True)
    packet = await old.next_packet()
    assert isinstance(packet, mqtt5.DisconnectPacket)
    assert packet.reason_code == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
    assert await old.next_packet() is None  # and the first process closed it
    old.close()
    new.close()


async def test_a_frozen_holder_writes_nothing_for_a_device_that_moved_away(pair: Pair) -> None:
    stale, _ = await Device.connect(pair.ports[0], "dev-zombie", clean=False)
    pair.first.pause()  # SIGSTOP: the device's next packet waits in the socket's buffer
    try:
        stale.publish("dev-zombie", 1, packet_id=1)
        await stale.writer.drain()
        await asyncio.sleep(1.5)  # frozen longer than edge.fence_lease_s and fence_pause_s
        fresh, _ = await Device.connect(pair.ports[1], "dev-zombie", clean=False)
        for seq in (1, 2):  # the unacknowledged reading again, then a new one
            fresh.publish("dev-zombie", seq, packet_id=seq)
            ack = await fresh.next_packet()
            assert isinstance(ack, mqtt5.PubAckPacket)
    finally:
        pair.first.resume()
    # Woken, the first process reads the stale connection's PUBLISH, sees the takeover it
    # missed, and drops the reading instead of writing it after the newer ones.
    gone = await stale.next_packet()
    assert isinstance(gone, mqtt5.DisconnectPacket)
    assert gone.reason_code == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER
    await asyncio.sleep(3.0)
    seen = await event_ids(
        kafka_client(pair.settings), pair.topic, {"dev-zombie:1", "dev-zombie:2"}, 30
    )
    assert sorted(seen) == ["dev-zombie:1", "dev-zombie:2"]  # each once: no zombie write
    fresh.close()
    stale.close()


async def _send_command(pair: Pair, device_id: str, command_id: str) -> None:
    kafka = kafka_client(pair.settings)
    subject = "iot.commands.v1-value"
    async with open_registry("embedded", kafka) as registry:
        registered = await registry.register(subject, SchemaCatalog.load().latest(subject))
    value = encode(
        {
            "command_id": command_id,
            "device_id": device_id,
            "name": "reboot",
            "params": {},
            "issued_at": int(time.time() * 1000),
            "expires_at": None,
        },
        registered,
    )
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(pair.commands, value=value, key=device_id.encode())
    finally:
        await producer.stop()


async def _queued(gateway: GatewayProcess) -> float:
    stats = await asyncio.to_thread(gateway.stats)
    return float(stats["metrics"].get("iot_gateway_downlink_total{outcome=queued}", 0))


async def test_a_command_sent_while_away_reaches_the_device_on_another_process(
    pair: Pair,
) -> None:
    device, _ = await Device.connect(pair.ports[0], "dev-away", clean=False)
    device.send(
        mqtt5.SubscribePacket(
            1, [mqtt5.TopicFilter("devices/dev-away/commands", max_qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
    )
    assert isinstance(await device.next_packet(), mqtt5.SubAckPacket)
    device.send(mqtt5.DisconnectPacket())
    device.close()
    await asyncio.sleep(2.0)  # both processes read the commands topic from its end by now
    await _send_command(pair, "dev-away", "cmd-while-away")
    async with asyncio.timeout(30):  # the first process queues it in the session's record
        while await _queued(pair.first) < 1:  # noqa: ASYNC110 - another process's counter
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # and writes the record (in the background)
    back, present = await Device.connect(pair.ports[1], "dev-away", clean=False)
    assert present
    command = await back.next_packet()
    assert isinstance(command, mqtt5.PublishPacket)
    assert json.loads(command.payload)["command_id"] == "cmd-while-away"
    back.send(mqtt5.PubAckPacket(command.packet_id or 0))
    back.close()
