"""A bounded bad-input run against the running platform's gateway: random device ids,
routes and payloads. Nothing makes the gateway exit, and every message is accounted for:
acknowledged, then either produced as telemetry or dead-lettered with a counted reason."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid
from collections.abc import Iterator

import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import TELEMETRY, TELEMETRY_DLQ
from devstack import DevStackSettings, SecuredStack
from devstack.apps import GatewayApp
from devstack.process import running_pid
from tests.clients import mqtt_login_kwargs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MESSAGES = 400
SEED = 20261205


def _counters(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
                for value in sample.labels.values():  # e.g. produced per topic
                    key = f"{sample.name}:{value}"
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _payload(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps({"seq": rng.randrange(10**6), "metrics": {"t": rng.random()}}).encode()
    if kind == 1:
        return rng.randbytes(rng.randrange(0, 300))  # garbage, often not UTF-8
    if kind == 2:
        return b"{" + b" " * rng.randrange(60_000, 120_000) + b"}"  # over the size limit
    if kind == 3:
        return json.dumps({"metrics": {"t": "warm"}, "seq": -1}).encode()  # schema mismatch
    if kind == 4:
        return json.dumps([1, 2, 3]).encode()
    return b'{"metrics": {"t": NaN}}'


def _device(rng: random.Random) -> str:
    alphabet = "abc-_.019éΩ ,;:*"
    return "fz-" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


@pytest.fixture
def registered(settings: DevStackSettings) -> Iterator[str]:
    """A registered device, so that its messages get past authorization to the parsers."""
    device_id = f"fz-{uuid.uuid4().hex[:10]}"
    stack = SecuredStack(settings)
    if settings.secure:
        stack.add_device(device_id)
    try:
        yield device_id
    finally:
        if settings.secure:
            stack.revoke_device(device_id)


async def test_random_input_is_accounted_for_and_never_stops_the_gateway(
    settings: DevStackSettings, registered: str
) -> None:
    app = GatewayApp(settings)
    pid, url = running_pid(app.handle), app.endpoint
    assert pid is not None, "the stack's gateway is not running (make up)"
    before = _counters(url)
    rng = random.Random(SEED)
    async with aiomqtt.Client(
        settings.host,
        settings.mqtt_port,
        protocol=aiomqtt.ProtocolVersion.V5,
        **mqtt_login_kwargs(settings),
    ) as client:
        for _ in range(MESSAGES):
            suffix = rng.choice(["", "", "/avro", "/unknown"])
            device = registered if rng.random() < 0.6 else _device(rng)
            topic = f"devices/{device}/telemetry{suffix}"
            await client.publish(topic, _payload(rng), qos=1)
    async with asyncio.timeout(60):
        while True:
            after = _counters(url)
            acked = after["iot_gateway_pubacks_total"] - before["iot_gateway_pubacks_total"]
            if acked >= MESSAGES:
                break
            await asyncio.sleep(0.5)
    assert running_pid(app.handle) == pid  # the same process: it never exited or restarted

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    telemetry = delta(f"iot_gateway_produced_total:{TELEMETRY.name}")
    dead = delta(f"iot_gateway_produced_total:{TELEMETRY_DLQ.name}")
    assert acked == MESSAGES
    assert telemetry + dead == MESSAGES  # each one in Kafka once: telemetry or the DLQ
    assert delta("iot_gateway_dlq_total") == dead  # every dead letter counted by its reason
    assert dead > MESSAGES / 2, (telemetry, dead)  # most of this input is bad on purpose
    assert telemetry > 0  # and the good part of it still gets through
    for reason in ("invalid_utf8", "invalid_json", "schema_mismatch", "payload_too_large"):
        assert delta(f"iot_gateway_dlq_total:{reason}") > 0, reason  # the parsers were reached
