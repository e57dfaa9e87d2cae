"""Direct mode scaled out: two gateway processes behind HAProxy (Debian's package, TCP mode).

Devices connect to HAProxy's port only. Both gateways take connections; one is killed with
SIGKILL under load and restarted; the devices reconnect through HAProxy and send again what
was not acknowledged. Every acknowledged reading is in Kafka, and each device's readings are
in one partition in the order of their sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from devstack import DevStackSettings
from devstack.clients import kafka_client, mqtt_login
from devstack.simulator import Simulation, SimulationSettings
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    ledger_ids,
    track,
    write_direct_config,
)
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SUBJECT = "iot.telemetry.v1-value"


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[int, list[int]], None]]:
    """Starts HAProxy in TCP mode in front of the given backend ports; stops it after."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    started: list[subprocess.Popen[bytes]] = []

    def start(front: int, backends: list[int]) -> None:
        servers = "\n".join(
            f"    server gw{n} 127.0.0.1:{port} check inter 300ms fall 2 rise 2"
            for n, port in enumerate(backends, 1)
        )
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            textwrap.dedent(
                f"""\
                defaults
                    mode tcp
                    timeout connect 2s
                    timeout client 120s
                    timeout server 120s
                frontend mqtt
                    bind 127.0.0.1:{front}
                    default_backend gateways
                backend gateways
                    balance roundrobin
                """
            )
            + servers
            + "\n"
        )
        with (tmp_path / "haproxy.log").open("ab") as log:
            started.append(
                track(subprocess.Popen([binary, "-f", str(config), "-db"], stdout=log, stderr=log))
            )

    yield start
    for process in started:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


async def _read_log(
    settings: DevStackSettings, topic: str, expected: int
) -> tuple[set[str], dict[str, set[int]], list[str]]:
    """The event ids in ``topic``; per device, the partitions its readings are in; and order
    violations (a new seq lower than one already logged)."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client(settings).aiokafka_kwargs(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    partitions: dict[str, set[int]] = {}
    highest: dict[str, int] = {}
    seen: set[bytes] = set()
    violations = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        device = record.key.decode()
        partitions.setdefault(device, set()).add(record.partition)
        event_id = dict(record.headers)["event_id"]
        if event_id in seen:
            continue  # a reading sent again after a reconnect
        seen.add(event_id)
        seq = int(event_id.decode().rsplit(":", 1)[1])
        if seq < highest.get(device, -1):
            violations.append(f"{device} seq {seq} after {highest[device]}")
        highest[device] = max(seq, highest.get(device, -1))
    return {e.decode() for e in seen}, partitions, violations


async def test_two_gateways_behind_haproxy_share_devices_and_one_dying_loses_nothing(
    settings: DevStackSettings,
    unique: Callable[[str], str],
    tmp_path: Path,
    haproxy: Callable[[int, list[int]], None],
) -> None:
    topic, dlq = unique("telemetry"), unique("dlq")
    await create_topics(kafka_client(settings), topic, dlq)
    front, port_1, port_2 = free_ports(3)
    gateways = [
        GatewayProcess(
            write_direct_config(
                tmp_path / f"gw-{n}.yaml", port=port, topic=topic, dlq=dlq, instance=f"gw-{n}"
            ),
            f"gw-{n}",
            tmp_path / f"gw-{n}.log",
            settings,
        )
        for n, port in ((1, port_1), (2, port_2))
    ]
    for gateway in gateways:
        gateway.start()
    await asyncio.gather(*(gateway.wait_ready() for gateway in gateways))
    haproxy(front, [port_1, port_2])
    ledger = tmp_path / "ledger.jsonl"
    login = mqtt_login(settings)
    simulation = Simulation(
        SimulationSettings(
            devices=30,
            rate=300,
            duration_s=14,
            host="127.0.0.1",
            port=front,
            prefix=unique("dev").replace(".", "-"),
            ledger=ledger,
            seed=5,
            username=login.username if login else None,
            password=login.password if login else None,
        ),
        progress=None,
    )
    running = asyncio.create_task(simulation.run())
    await asyncio.sleep(4)
    connects = [
        (await asyncio.to_thread(g.stats))["metrics"]["iot_gateway_edge_connects_total{code=0x00}"]
        for g in gateways
    ]
    assert all(count >= 5 for count in connects), connects  # HAProxy spreads the devices
    gateways[0].kill()
    await asyncio.sleep(2)
    gateways[0].start()
    await gateways[0].wait_ready()
    report = await running
    assert report.reconnects > 0  # the first gateway's devices came back through HAProxy
    good, _ = ledger_ids(ledger)
    assert len(good) > 2000
    logged, partitions, violations = await _read_log(settings, topic, len(good))
    assert good - logged == set()  # every acknowledged reading is in Kafka
    assert all(len(found) == 1 for found in partitions.values())  # one partition per device
    assert violations == []
    for gateway in gateways:
        assert gateway.terminate() == 0
    alerts = [
        line
        for line in (tmp_path / "haproxy.log").read_text().splitlines()
        if "[ALERT]" in line and "has no server available" not in line  # both stopped above
    ]
    assert alerts == []  # HAProxy took its config
