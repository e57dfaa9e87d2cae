"""No acknowledged message is lost: gateways killed with SIGKILL under load, real servers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from devstack.simulator import BAD_PAYLOADS, Simulation, SimulationSettings
from tests.clients import mqtt_login_kwargs
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    event_ids,
    ledger_ids,
    read_headers,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _simulation(
    settings: DevStackSettings, prefix: str, ledger: Path, *, rate: float, duration: float
) -> Simulation:
    return Simulation(
        SimulationSettings(
            devices=20,
            rate=rate,
            duration_s=duration,
            host=settings.host,
            port=settings.broker_port,
            prefix=f"{prefix}-dev",
            topic_template=f"{prefix}/devices/{{device_id}}/telemetry",
            duplicate_ratio=0.02,
            bad_ratio=0.02,
            ledger=ledger,
            seed=7,
            **mqtt_login_kwargs(settings),
        ),
        progress=None,
    )


@pytest.fixture
def prefix(unique: Callable[[str], str]) -> str:
    return unique("gw").replace(".", "-")


async def test_sigkill_the_gateway_repeatedly_under_load_loses_no_acknowledged_message(
    settings: DevStackSettings, prefix: str, tmp_path: Path
) -> None:
    topic, dlq = f"{prefix}.telemetry", f"{prefix}.dlq"
    await create_topics(kafka_client(settings), topic, dlq)
    config = write_config(
        tmp_path / "gateway.yaml",
        prefix=prefix,
        topic=topic,
        dlq=dlq,
        mqtt_port=settings.broker_port,
        bootstrap=settings.kafka_bootstrap,
    )
    gateway = GatewayProcess(config, f"{prefix}-1", tmp_path / "gateway.log")
    gateway.start()
    await gateway.wait_ready()
    ledger = tmp_path / "ledger.jsonl"
    # Publishing goes on until the gateway has been killed five times (however long its
    # restarts take on a loaded machine), then a little longer with the last one up.
    simulation = _simulation(settings, prefix, ledger, rate=400, duration=150)
    running = asyncio.create_task(simulation.run())
    rng = random.Random(11)
    try:
        for _ in range(5):
            await asyncio.sleep(rng.uniform(0.8, 2.0))
            gateway.kill()
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            gateway.start()
            await gateway.wait_ready()
        await asyncio.sleep(2)
    finally:
        simulation.stop()
    report = await running
    assert report.failed == 0
    good, bad = ledger_ids(ledger)
    assert len(good) > 2000

    seen = await event_ids(kafka_client(settings), topic, good, timeout_s=60)
    missing = good - set(seen)
    assert not missing, f"{len(missing)} acknowledged readings never reached Kafka"
    # Every acknowledged bad payload is in the DLQ with its reason (some twice: redelivered).
    rejected = await read_headers(
        kafka_client(settings), dlq, lambda seen: len(seen) >= bad, timeout_s=30
    )
    assert bad > 0
    assert len(rejected) >= bad
    assert {h["reason"] for h in rejected} <= {r.encode() for r, _ in BAD_PAYLOADS}
    assert gateway.terminate() == 0


async def test_two_gateways_share_the_load_and_killing_one_loses_nothing(
    settings: DevStackSettings, prefix: str, tmp_path: Path
) -> None:
    topic, dlq = f"{prefix}.telemetry", f"{prefix}.dlq"
    await create_topics(kafka_client(settings), topic, dlq)
    config = write_config(
        tmp_path / "gateway.yaml",
        prefix=prefix,
        topic=topic,
        dlq=dlq,
        mqtt_port=settings.broker_port,
        bootstrap=settings.kafka_bootstrap,
    )
    first = GatewayProcess(config, f"{prefix}-1", tmp_path / "gateway-1.log")
    second = GatewayProcess(config, f"{prefix}-2", tmp_path / "gateway-2.log")
    first.start()
    second.start()
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    ledger = tmp_path / "ledger.jsonl"
    running = asyncio.create_task(_simulation(settings, prefix, ledger, rate=300, duration=8).run())
    await asyncio.sleep(3)
    shares = [
        (await asyncio.to_thread(g.stats))["metrics"]["iot_gateway_pubacks_total"]
        for g in (first, second)
    ]
    assert all(share > 50 for share in shares), shares  # both take part
    second.kill()
    report = await running
    assert report.failed == 0
    # The killed gateway's unacknowledged messages wait in its session until it returns.
    second.start()
    await second.wait_ready()
    good, _ = ledger_ids(ledger)
    seen = await event_ids(kafka_client(settings), topic, good, timeout_s=60)
    assert not good - set(seen)
    assert first.terminate() == 0
    assert second.terminate() == 0
