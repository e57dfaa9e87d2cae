"""The embedded registry as a replicated state machine over a real Kafka partition."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.avro import AvroSchema, CompatibilityMode, encode, parse_schema
from contracts.registry import (
    EmbeddedSchemaRegistry,
    IncompatibleSchemaError,
    RegistryError,
    SchemaCache,
    SchemaNotFoundError,
)
from contracts.registry.state import RegistryState
from devstack import DevStackSettings
from devstack.clients import kafka_client, mqtt_login
from iotctl.main import main
from tests.stacks import free_port


def schema(name: str, *extra: dict[str, Any]) -> AvroSchema:
    fields = [{"name": "x", "type": "int"}, *extra]
    return parse_schema({"type": "record", "name": name, "fields": fields})


def snapshot(state: RegistryState) -> dict[str, Any]:
    """Everything observable about a state, for comparing two processes."""
    subjects = state.subjects()
    return {
        "global": state.get_compatibility(),
        "subjects": {
            subject: [
                (v, state.version(subject, v).schema_id, state.subject_compatibility(subject))
                for v in state.versions(subject)
            ]
            for subject in subjects
        },
    }


async def test_two_processes_registering_concurrently_agree(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    one = EmbeddedSchemaRegistry(kafka_client(settings), topic=topic)
    two = EmbeddedSchemaRegistry(kafka_client(settings), topic=topic)
    await asyncio.gather(one.start(), two.start())
    try:
        # Each writes its own schemas, plus the same schemas to shared subjects, interleaved.
        own = [
            (registry, f"own-{i}-{n}", schema(f"S{i}x{n}"))
            for i, registry in enumerate((one, two))
            for n in range(10)
        ]
        defaults = [{"name": f"f{k}", "type": "int", "default": 0} for k in range(6)]
        shared = [
            (registry, f"shared-{n % 3}", schema("T", *defaults[:n]))
            for n in range(6)
            for registry in (one, two)
        ]
        results = await asyncio.gather(*(r.register(s, sc) for r, s, sc in [*own, *shared]))
        assert len({res.schema_id for res in results}) == 26  # 20 own + 6 shared schemas
        await asyncio.gather(one.sync(), two.sync())
        assert snapshot(one.state) == snapshot(two.state)
        for r, subject, sc in [*own, *shared]:  # every answer is what both folded
            found = one.state.lookup(subject, sc)
            assert found is not None
            assert found == await r.lookup(subject, sc)
        assert one.state.versions("shared-0") == (1, 2)
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_of_two_mutually_incompatible_schemas_exactly_one_wins_everywhere(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    one = EmbeddedSchemaRegistry(kafka_client(settings), topic=topic)
    two = EmbeddedSchemaRegistry(kafka_client(settings), topic=topic)
    await asyncio.gather(one.start(), two.start())
    try:
        await one.register("s-value", schema("R"))
        await one.set_compatibility(CompatibilityMode.FULL_TRANSITIVE, "s-value")
        as_int = schema("R", {"name": "y", "type": "int", "default": 0})
        as_bool = schema("R", {"name": "y", "type": "boolean", "default": False})
        outcomes = await asyncio.gather(
            one.register("s-value", as_int), two.register("s-value", as_bool),
            return_exceptions=True,
        )  # fmt: skip
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        rejected = [o for o in outcomes if isinstance(o, IncompatibleSchemaError)]
        assert (len(accepted), len(rejected)) == (1, 1)
        assert "'y'" in str(rejected[0])
        await asyncio.gather(one.sync(), two.sync())
        assert one.state.versions("s-value") == two.state.versions("s-value") == (1, 2)
        assert one.state.version("s-value", 2) == two.state.version("s-value", 2) == accepted[0]
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_a_restarted_process_sees_the_same_state_and_appends_nothing_new(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as first:
        await first.register("a-value", schema("A"))
        await first.register("a-value", schema("A", {"name": "y", "type": "long", "default": 1}))
        await first.set_compatibility(CompatibilityMode.NONE, "b-value")
        await first.register("b-value", schema("B"))
        await first.delete_version("a-value", 1)
        before, end = snapshot(first.state), await first.sync()
    async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as second:
        assert snapshot(second.state) == before
        assert second.position == end
        again = await second.register("b-value", schema("B"))  # idempotent: no new record
        assert (again.version, await second.sync()) == (1, end)


async def test_malformed_records_are_skipped_alike_by_every_process(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as registry:
        producer = AIOKafkaProducer(**kafka_client(settings).aiokafka_kwargs())
        await producer.start()
        try:
            for junk in (b"", b"\xff\x00", b'{"format":1,"op":"Explode"}', b"[]"):
                await producer.send_and_wait(topic, junk, partition=0)
            await producer.send_and_wait(
                topic, b'{"format":1,"op":"Register","subject":"z","schema":"nope"}', partition=0
            )
        finally:
            await producer.stop()
        first = await registry.register("a-value", schema("A"))
        assert first.schema_id == 1
        async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as fresh:
            assert snapshot(fresh.state) == snapshot(registry.state)
            assert fresh.state.subjects() == ("a-value",)


async def test_a_log_topic_with_several_partitions_is_refused(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    admin = AIOKafkaAdminClient(**kafka_client(settings).aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    with pytest.raises(RegistryError, match="3 partitions"):
        async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic):
            pass


async def test_schema_cache_fetches_an_unknown_writer_schema_once(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("schemas")
    async with (
        EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as writer_side,
        EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as reader_side,
    ):
        producer_cache = SchemaCache(writer_side)
        registered = await producer_cache.register("a-value", schema("A"))
        frame = encode({"x": 7}, registered)
        calls = 0
        fetch = reader_side.schema_by_id

        async def counting(schema_id: int) -> AvroSchema:
            nonlocal calls
            calls += 1
            return await fetch(schema_id)

        reader_side.schema_by_id = counting  # type: ignore[method-assign]
        consumer_cache = SchemaCache(reader_side)
        assert consumer_cache.writer_schema(registered.schema_id) is None
        values = await asyncio.gather(*(consumer_cache.decode(frame) for _ in range(20)))
        assert values == [{"x": 7}] * 20
        assert calls == 1
        assert consumer_cache.writer_schema(registered.schema_id) == registered.schema
        with pytest.raises(SchemaNotFoundError):
            await consumer_cache.decode(b"\x00\x00\x00\x03\xe7\x0e")


def test_cli_push_is_idempotent_and_show_lists_the_registry(
    settings: DevStackSettings, unique: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--registry", "embedded", "--kafka", settings.kafka_bootstrap, "--topic", unique("s")]
    assert main(["schemas", "push", *flags, "--json"]) == 0
    first = capsys.readouterr().out
    assert main(["schemas", "push", *flags, "--json"]) == 0
    second = capsys.readouterr().out
    assert '"registered": true' in first
    assert '"registered": true' not in second
    assert first.replace('"registered": true', '"registered": false') == second
    assert main(["schemas", "show", *flags]) == 0
    shown = capsys.readouterr().out
    assert "iot.telemetry.v1-value" in shown
    assert "v1 (id " in shown
    assert "v2 (id " in shown


def test_cli_serve_answers_rest_and_stops_on_sigterm(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "iotctl.main", "schemas", "serve", "--port", str(port)]
    command += ["--kafka", settings.kafka_bootstrap, "--topic", unique("schemas")]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, env={**os.environ})
    try:
        body = asyncio.run(_get_when_up(f"http://127.0.0.1:{port}/config"))
        assert body == {"compatibilityLevel": "BACKWARD"}
        if settings.secure:  # on the secured stack only its admin may write
            url, change = f"http://127.0.0.1:{port}/config", {"compatibility": "FULL"}
            assert asyncio.run(_put(url, change, None)) == 401
            admin = mqtt_login(settings)  # the admin's password, the same on every plane
            assert admin is not None
            assert asyncio.run(_put(url, change, (admin.username, admin.password))) == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()


async def _get_when_up(url: str) -> Any:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    return await response.json(content_type=None)
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def _put(url: str, body: Any, login: tuple[str, str] | None) -> int:
    headers = {} if login is None else {"Authorization": aiohttp.encode_basic_auth(*login)}
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, json=body, headers=headers) as response,
    ):
        return response.status
