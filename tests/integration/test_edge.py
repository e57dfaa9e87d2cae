"""Direct mode: devices connect to the gateway itself, with clients nobody here wrote.

The edge runs in this process on its own ports against the real Kafka; devices are
registered in a device store, log in with the passwords it issued and are authorized by a
real policy file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import mqtt5
import paho.mqtt.client as paho
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from gmqtt import Client as GmqttClient
from paho.mqtt.enums import CallbackAPIVersion

from contracts.avro import SchemaCatalog, decode, encode
from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import kafka_client
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import GatewayConfig
from iot_gateway.edge.server import EdgeServer
from policy import generate_password_file
from security import DeviceStore
from security.hooks import PolicyWatch, watched_ingest_authorize, watched_subscribe_authorize
from security.logins import PasswordFile
from security.tls import LocalCA
from tests.fakes import InMemorySchemas

SUBJECT = "iot.telemetry.v1-value"

POLICY = """\
version: 1
groups:
  devices: {roles: [device]}
roles:
  device:
    rules:
      - id: own-telemetry
        effect: allow
        mqtt: {actions: [publish], topics: ["devices/%u/telemetry"]}
      - id: own-commands
        effect: allow
        mqtt: {actions: [subscribe], topics: ["devices/%u/commands"]}
"""


@dataclass(frozen=True, slots=True)
class Edge:
    server: EdgeServer
    kafka: KafkaClientSettings
    topic: str
    dlq: str
    commands: str
    presence: str
    schemas: InMemorySchemas
    passwords: dict[str, str]
    ca_file: Path

    @property
    def port(self) -> int:
        return self.server.ports["mqtt"]

    @property
    def tls_port(self) -> int:
        return self.server.ports["mqtts"]

    def device(self, index: int) -> tuple[str, str]:
        device_id = sorted(self.passwords)[index]
        return device_id, self.passwords[device_id]


async def _create_topics(kafka: KafkaClientSettings, *names: str) -> None:
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1) for name in names])
    finally:
        await admin.close()


async def _records(kafka: KafkaClientSettings, topic: str, count: int) -> list[object]:
    """Reads the topic from the start until ``count`` records arrived (20 s at most)."""
    consumer = AIOKafkaConsumer(
        topic, **kafka.aiokafka_kwargs(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=300)
                records.extend(r for rs in batch.values() for r in rs)
        extra = await consumer.getmany(timeout_ms=500)  # nothing more than expected
        records.extend(r for rs in extra.values() for r in rs)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
async def edge(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[Edge]:
    kafka = kafka_client(settings)
    topic, dlq, commands = unique("telemetry"), unique("dlq"), unique("commands")
    presence = unique("presence")
    await _create_topics(kafka, topic, dlq, commands, presence)
    store = DeviceStore(tmp_path / "devices.json")
    token = unique("d").rsplit(".", 1)[-1]
    issued = store.add_many([f"dev-{token}-a", f"dev-{token}-b"])
    passwords = {i.device.device_id: i.password for i in issued}
    (tmp_path / "passwords").write_text(generate_password_file(store.hashes()))
    (tmp_path / "policy.yaml").write_text(POLICY)
    tls = LocalCA(tmp_path / "ca").ensure()
    config = GatewayConfig(
        mode="direct",
        edge={
            "host": "127.0.0.1",
            "port": 0,
            "tls_port": 0,
            "cert_file": tls.server_cert,
            "key_file": tls.server_key,
            "password_file": tmp_path / "passwords",
            "max_packet_bytes": 4096,
            "receive_maximum": 20,
            "instance": unique("edge"),
            "presence_topic": presence,
        },
        kafka={**kafka.model_dump(), "dlq_topic": dlq},
        routes=[
            {
                "name": "telemetry",
                "filter": "devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        limits={"max_payload_bytes": 1024},
        policy={"file": tmp_path / "policy.yaml", "devices_file": tmp_path / "devices.json"},
        downlink={"kafka_topic": commands},
    )
    schemas = InMemorySchemas()
    catalog = SchemaCatalog.load()
    codec = SubjectCodec(schemas.register(SUBJECT, catalog.latest(SUBJECT)))
    events = "iot.device-events.v1-value"
    presence_codec = SubjectCodec(schemas.register(events, catalog.latest(events)))
    watch = PolicyWatch(tmp_path / "policy.yaml", tmp_path / "devices.json")

    async def decode_command(frame: bytes) -> dict[str, Any]:
        return dict(decode(frame, schemas))

    server = EdgeServer(
        config,
        {SUBJECT: codec},
        authorize=watched_ingest_authorize(watch),
        authorize_subscribe=watched_subscribe_authorize(watch),
        logins=PasswordFile(tmp_path / "passwords"),
        decode_command=decode_command,
        presence_codec=presence_codec,
    )
    task = asyncio.create_task(server.run())
    async with asyncio.timeout(20):
        while not server.ready:  # noqa: ASYNC110 - readiness is a flag, polled like /readyz
            await asyncio.sleep(0.05)
    try:
        yield Edge(server, kafka, topic, dlq, commands, presence, schemas, passwords, tls.ca_cert)
    finally:
        server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


def _reading(seq: int) -> bytes:
    return json.dumps({"seq": seq, "metrics": {"temperature": 20.5 + seq}}).encode()


async def _mosquitto_pub(
    edge: Edge, *args: str, payload: bytes
) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run,
        ["mosquitto_pub", "-h", "127.0.0.1", *args, "-s"],
        input=payload,
        capture_output=True,
        timeout=15,
        check=False,
    )


async def test_mosquitto_pub_in_every_version_and_qos_lands_in_kafka(edge: Edge) -> None:
    device_id, password = edge.device(0)
    topic = f"devices/{device_id}/telemetry"
    seq = 0
    for version in ("mqttv31", "mqttv311", "mqttv5"):
        for qos in ("0", "1", "2"):
            seq += 1
            done = await _mosquitto_pub(
                edge,
                *("-p", str(edge.port), "-V", version, "-q", qos, "-t", topic),
                *("-u", device_id, "-P", password, "-i", f"{device_id}-{seq}"),
                payload=_reading(seq),
            )
            assert done.returncode == 0, (version, qos, done.stderr)
    records = await _records(edge.kafka, edge.topic, seq)
    assert len(records) == seq
    assert {r.key for r in records} == {device_id.encode()}  # type: ignore[attr-defined]
    event_ids = {dict(r.headers)["event_id"] for r in records}  # type: ignore[attr-defined]
    assert event_ids == {f"{device_id}:{n}".encode() for n in range(1, seq + 1)}
    assert edge.server.metrics.connects.labels("0x00")._value.get() == seq


async def test_tls_with_the_stacks_ca(edge: Edge) -> None:
    device_id, password = edge.device(0)
    done = await _mosquitto_pub(
        edge,
        *("-p", str(edge.tls_port), "--cafile", str(edge.ca_file), "-V", "mqttv5", "-q", "1"),
        *("-t", f"devices/{device_id}/telemetry", "-u", device_id, "-P", password),
        payload=_reading(7),
    )
    assert done.returncode == 0, done.stderr
    records = await _records(edge.kafka, edge.topic, 1)
    assert [dict(r.headers)["event_id"] for r in records] == [f"{device_id}:7".encode()]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
async def test_a_bad_password_is_refused(edge: Edge, version: str) -> None:
    device_id, _ = edge.device(0)
    done = await _mosquitto_pub(
        edge,
        *("-p", str(edge.port), "-V", version, "-q", "1", "-t", f"devices/{device_id}/telemetry"),
        *("-u", device_id, "-P", "not-the-password"),
        payload=_reading(1),
    )
    assert done.returncode != 0
    assert b"not authori" in done.stderr.lower() or b"bad user name" in done.stderr.lower()
    assert edge.server.metrics.connects.labels("0x86")._value.get() == 1


def _paho_publish(edge: Edge, login: tuple[str, str], topic: str, qos: int) -> int:
    """Publishes one reading with paho over MQTT 5; returns the PUBACK/PUBREC reason code."""
    reasons: list[int] = []
    acked = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, client_id=login[0])
    client.username_pw_set(*login)

    def on_publish(c: object, u: object, mid: int, reason: object, props: object) -> None:
        reasons.append(int(getattr(reason, "value", 0)))
        acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", edge.port)
    client.loop_start()
    try:
        client.publish(topic, _reading(1), qos=qos)
        assert acked.wait(15), "no acknowledgement"
    finally:
        client.disconnect()
        client.loop_stop()
    return reasons[0]


async def test_another_devices_topic_is_refused_and_dead_lettered(edge: Edge) -> None:
    (device_a, password_a), (device_b, _) = edge.device(0), edge.device(1)
    other = f"devices/{device_b}/telemetry"
    code = await asyncio.to_thread(_paho_publish, edge, (device_a, password_a), other, 1)
    assert code == 0x87  # MQTT 5: Not authorized
    done = await _mosquitto_pub(  # MQTT 3.1.1 has no reason code: acknowledged, dead-lettered
        edge,
        *("-p", str(edge.port), "-V", "mqttv311", "-q", "1", "-t", other),
        *("-u", device_a, "-P", password_a),
        payload=_reading(2),
    )
    assert done.returncode == 0, done.stderr
    letters = await _records(edge.kafka, edge.dlq, 2)
    assert [dict(r.headers)["reason"] for r in letters] == [b"unauthorized"] * 2  # type: ignore[attr-defined]
    assert await _records(edge.kafka, edge.topic, 0) == []


async def test_an_oversized_packet_is_dead_lettered_without_its_payload(edge: Edge) -> None:
    device_id, password = edge.device(0)
    done = await _mosquitto_pub(
        edge,
        *("-p", str(edge.port), "-V", "mqttv311", "-q", "1"),
        *("-t", f"devices/{device_id}/telemetry", "-u", device_id, "-P", password),
        payload=b"x" * 10_000,
    )
    assert done.returncode != 0  # the connection was closed instead of a PUBACK
    (letter,) = await _records(edge.kafka, edge.dlq, 1)
    headers = dict(letter.headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"packet_too_large"
    assert headers["mqtt_topic"] == f"devices/{device_id}/telemetry".encode()
    assert letter.value == b""  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5])
async def test_aiomqtt_subscribes_to_its_own_commands_only(
    edge: Edge, protocol: aiomqtt.ProtocolVersion
) -> None:
    (device_a, password_a), (device_b, _) = edge.device(0), edge.device(1)
    async with aiomqtt.Client(
        "127.0.0.1",
        edge.port,
        identifier=device_a,
        username=device_a,
        password=password_a,
        protocol=protocol,
    ) as client:
        own = await client.subscribe(f"devices/{device_a}/commands", qos=1)
        other = await client.subscribe(f"devices/{device_b}/commands", qos=1)
        await client.publish(f"devices/{device_a}/telemetry", _reading(3), qos=1)
    assert [getattr(c, "value", c) for c in own] == [1]
    assert [getattr(c, "value", c) for c in other] == [
        0x87 if protocol == aiomqtt.ProtocolVersion.V5 else 0x80
    ]
    (record,) = await _records(edge.kafka, edge.topic, 1)
    assert dict(record.headers)["event_id"] == f"{device_a}:3".encode()  # type: ignore[attr-defined]


async def test_gmqtt_publishes_at_qos_2(edge: Edge) -> None:
    device_id, password = edge.device(1)
    client = GmqttClient(device_id)
    client.set_auth_credentials(device_id, password)
    await client.connect("127.0.0.1", edge.port, version=5)
    try:
        for seq in (1, 2, 3):
            client.publish(f"devices/{device_id}/telemetry", _reading(seq), qos=2)
        records = await _records(edge.kafka, edge.topic, 3)
    finally:
        await client.disconnect()
    assert sorted(dict(r.headers)["event_id"] for r in records) == [  # type: ignore[attr-defined]
        f"{device_id}:{n}".encode() for n in (1, 2, 3)
    ]


async def _send_commands(edge: Edge, device_id: str, *command_ids: str) -> None:
    subject = "iot.commands.v1-value"
    registered = edge.schemas.register(subject, SchemaCatalog.load().latest(subject))
    producer = AIOKafkaProducer(**edge.kafka.aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        for command_id in command_ids:
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
            await producer.send_and_wait(edge.commands, value=value, key=device_id.encode())
    finally:
        await producer.stop()


async def _commands_received(client: aiomqtt.Client, count: int) -> list[str]:
    received: list[str] = []
    async with asyncio.timeout(20):
        async for message in client.messages:
            received.append(json.loads(message.payload)["command_id"])
            if len(received) == count:
                return received
    return received


async def _downlink_reading(edge: Edge) -> None:
    """Waits until the edge's command consumer reads (it starts at the end of the topic)."""
    async with asyncio.timeout(20):
        while not edge.server.downlink_reading:  # noqa: ASYNC110 - a flag, like /readyz
            await asyncio.sleep(0.05)


async def test_a_command_reaches_the_connected_device(edge: Edge) -> None:
    device_id, password = edge.device(0)
    await _downlink_reading(edge)
    async with aiomqtt.Client(
        "127.0.0.1", edge.port, identifier=device_id, username=device_id, password=password
    ) as client:
        await client.subscribe(f"devices/{device_id}/commands", qos=1)
        await _send_commands(edge, device_id, "c-1", "c-2", "c-1")  # c-1 again: a relay repeat
        assert await _commands_received(client, 2) == ["c-1", "c-2"]
    duplicate = edge.server.metrics.downlink.labels("duplicate")
    async with asyncio.timeout(20):
        while duplicate._value.get() < 1:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.05)
    assert edge.server.metrics.downlink.labels("delivered")._value.get() == 2


async def test_a_persistent_session_gets_the_commands_sent_while_it_was_away(edge: Edge) -> None:
    device_id, password = edge.device(1)
    await _downlink_reading(edge)

    def persistent() -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            edge.port,
            identifier=device_id,
            username=device_id,
            password=password,
            clean_session=False,
        )

    async with persistent() as client:
        await client.subscribe(f"devices/{device_id}/commands", qos=1)
    await _send_commands(edge, device_id, "c-away-1", "c-away-2")
    queued = edge.server.metrics.downlink.labels("queued")
    async with asyncio.timeout(20):
        while queued._value.get() < 2:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.05)
    async with persistent() as client:
        assert await _commands_received(client, 2) == ["c-away-1", "c-away-2"]


async def test_connects_and_disconnects_are_presence_events(edge: Edge) -> None:
    device_id, password = edge.device(0)
    async with aiomqtt.Client(
        "127.0.0.1",
        edge.port,
        identifier=device_id,
        username=device_id,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
    ):
        pass
    silent = mqtt5.ConnectPacket(
        device_id, username=device_id, password=password.encode(), keep_alive=1
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(silent.write())
    await reader.read(64)  # CONNACK; then nothing, not even PINGREQ
    async with asyncio.timeout(10):
        assert await reader.read(64) != b""  # DISCONNECT 0x8D, then the end
        await reader.read(64)
    writer.close()
    records = await _records(edge.kafka, edge.presence, 4)
    events = [decode(r.value, edge.schemas) for r in records]  # type: ignore[attr-defined]
    headers = [dict(r.headers) for r in records]  # type: ignore[attr-defined]
    assert [h["kind"] for h in headers] == [b"CONNECTED", b"DISCONNECTED"] * 2
    assert headers[3]["reason"] == b"keep-alive timeout"  # what the query API folds
    assert [int(h["ts"]) for h in headers] == [e["ts"] for e in events]
    assert [(e["device_id"], e["kind"], e["reason"]) for e in events] == [
        (device_id, "CONNECTED", None),
        (device_id, "DISCONNECTED", "the client disconnected"),
        (device_id, "CONNECTED", None),
        (device_id, "DISCONNECTED", "keep-alive timeout"),
    ]
    assert events[0]["attributes"]["protocol"] == "5.0"


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
async def test_mosquitto_sub_as_a_device_receives_its_command(edge: Edge, version: str) -> None:
    device_id, password = edge.device(0)
    await _downlink_reading(edge)
    process = await asyncio.create_subprocess_exec(
        "mosquitto_sub",
        *("-h", "127.0.0.1", "-p", str(edge.port), "-V", version, "-q", "1", "-C", "1"),
        *("-W", "30", "-i", f"{device_id}-sub", "-u", device_id, "-P", password),
        *("-t", f"devices/{device_id}/commands"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):  # until its SUBSCRIBE was granted
            while not edge.server.sessions.subscribers(f"devices/{device_id}/commands"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await _send_commands(edge, device_id, f"c-{version}")
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err
    assert json.loads(out)["command_id"] == f"c-{version}"
