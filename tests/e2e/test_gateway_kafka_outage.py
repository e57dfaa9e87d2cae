"""Kafka stopped for over ten seconds under load: no loss, bounded memory, recovery alone.

Runs on a second, isolated stack (own ports and state dir), so stopping its Kafka disturbs
nothing else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import DevStackSettings, up
from devstack.clients import kafka_client
from devstack.kafka import Kafka
from devstack.process import running_pid, stop
from devstack.simulator import Simulation, SimulationSettings
from tests.clients import mqtt_login_kwargs
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    event_ids,
    ledger_ids,
    write_config,
)
from tests.stacks import isolated_settings, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OUTAGE_S = 12.0


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[DevStackSettings]:
    settings = isolated_settings(tmp_path / "stack", gateway_mode="bridge")
    with running_stack(settings):
        yield settings


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_kafka_outage_under_load_loses_nothing_and_memory_stays_bounded(
    isolated: DevStackSettings, tmp_path: Path, outage: str
) -> None:
    """``stopped``: the broker shuts down (connections refused); ``frozen``: SIGSTOP, so
    connections stay open and requests hang, as with a broker that is up but not answering."""
    prefix, topic, dlq = "outage", "outage.telemetry", "outage.dlq"
    await create_topics(kafka_client(isolated), topic, dlq)
    config = write_config(
        tmp_path / "gateway.yaml",
        prefix=prefix,
        topic=topic,
        dlq=dlq,
        mqtt_port=isolated.mqtt_port,
        bootstrap=isolated.kafka_bootstrap,
    )
    gateway = GatewayProcess(config, "outage-gw", tmp_path / "gateway.log", isolated)
    gateway.start()
    await gateway.wait_ready(60)
    ledger = tmp_path / "ledger.jsonl"
    simulation = Simulation(
        SimulationSettings(
            devices=20,
            rate=300,
            duration_s=OUTAGE_S + 14,
            port=isolated.mqtt_port,
            prefix="outage-dev",
            topic_template=f"{prefix}/devices/{{device_id}}/telemetry",
            ledger=ledger,
            seed=3,
            **mqtt_login_kwargs(isolated),
        ),
        progress=None,
    )
    running = asyncio.create_task(simulation.run())
    await asyncio.sleep(4)
    baseline = gateway.rss_kib()
    kafka = Kafka(isolated).handle
    kafka_pid = running_pid(kafka)
    assert kafka_pid is not None
    if outage == "stopped":
        assert await asyncio.to_thread(stop, kafka)
    else:
        os.kill(kafka_pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    peak, in_flight = baseline, 0.0
    while time.monotonic() - stopped_at < OUTAGE_S:
        peak = max(peak, gateway.rss_kib())
        metrics = (await asyncio.to_thread(gateway.stats))["metrics"]
        in_flight = max(in_flight, metrics["iot_gateway_in_flight"])
        assert gateway.process is not None
        assert gateway.process.poll() is None
        await asyncio.sleep(0.5)
    if outage == "stopped":
        await asyncio.to_thread(up, isolated, lambda _: None)
    else:
        os.kill(kafka_pid, signal.SIGCONT)
    report = await running
    assert report.failed == 0

    good, _ = ledger_ids(ledger)
    seen = await event_ids(kafka_client(isolated), topic, good, timeout_s=90)
    assert not good - set(seen), f"{len(good - set(seen))} acknowledged readings lost"
    # Held back at receive_maximum (500 in write_config), the backlog waits in the broker.
    # In flight never exceeds receive_maximum (500 in write_config): the broker's Receive
    # Maximum, or failing that the gateway's own InboundFlow, keeps the backlog in the broker.
    assert in_flight <= 500
    assert peak - baseline < 64 * 1024, f"RSS grew from {baseline} KiB to {peak} KiB"
    assert gateway.ready()  # it reconnected by itself
    assert gateway.terminate() == 0
