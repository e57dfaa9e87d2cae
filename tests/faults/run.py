"""``make faults``: the whole pipeline under simulated load while faults are injected, then
the checker's verdicts.

    .venv/bin/python -m tests.faults.run [--seed N] [--duration S] [--devices N] [--rate R]

An isolated stack (its own Kafka cluster of ``--brokers`` nodes, Mosquitto and PostgreSQL on
free ports, state under ``.local/faults/``) runs gateways and one stream worker on SQLite, or
``--workers`` of them on PostgreSQL (``--store postgres``: one more joins under load, and
PostgreSQL is killed and frozen too). In direct mode (the default) two
gateways share one MQTT port (SO_REUSEPORT) and the devices connect to them; with
``--mode bridge`` the devices connect to Mosquitto and one gateway subscribes to it.
Simulated devices publish (with duplicates and bad payloads; each reconnects and sends
again what was not acknowledged, as real devices do; by default a realistic fleet, see
``devstack.device_models.REALISTIC``: some reboot with or without a boot epoch, some send
no seq or neither seq nor ts, some clocks are off and a few glitch) while a seeded
schedule kills with SIGKILL and restarts a gateway, the worker, Kafka (and Mosquitto in
bridge mode), and freezes each with SIGSTOP/SIGCONT. Afterwards everything drains, the
processes stop, and the checker compares the devices' acknowledged publishes, the Kafka
topics and the projections. Prints a verdict per invariant and writes them as JSON
(``.local/faults/verdict-<seed>.json``); exit status 1 if an invariant fails. The shared
dev stack is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from contracts.topics import ALERTS
from devstack import DevStackSettings
from devstack.device_models import REALISTIC, TIDY, DeviceMix
from devstack.kafka import kafka_nodes
from devstack.postgres import Postgres
from devstack.process import running_pid
from devstack.simulator import Simulation, SimulationReport, SimulationSettings
from streams.projections.alerts import load_alert_rules
from streams.projections.windows import DEFAULT_WINDOWS
from tests.clocks import RELOAD_S, HostClock
from tests.disks import fill, small_disk
from tests.e2e.gateway_harness import kill_leftovers
from tests.e2e.streams_harness import RULES
from tests.faults import stack
from tests.faults.availability import (
    AppliedSample,
    Cost,
    FaultSpan,
    ack_times,
    applied_times,
    check_cluster_availability,
    costs,
    format_costs,
)
from tests.faults.balancer import Balancer
from tests.faults.chart import draw
from tests.faults.checker import (
    BrokerCrash,
    History,
    Projections,
    check,
    format_verdicts,
    verdicts_json,
)
from tests.faults.collect import AckClock, end_offsets, read_header, read_log
from tests.faults.network import HostNetwork
from tests.faults.schedule import (
    DELAY_MS,
    KAFKA_NODES,
    LOSS_PERCENT,
    NETWORK_ACTIONS,
    SLOW_LOSS,
    Action,
    Fault,
    Target,
    Topology,
    make_schedule,
    missing_kinds,
)
from tests.oracle import oracle
from tests.stacks import isolated_settings

CLOCK_STEPS_BACK = "iot_gateway_clock_steps_back"
DISK_SIZE = "1g"
"""Each server's small disk: room for a run's data (a fill takes what is left)."""
SAVE_MARGIN_S = 0.05
"""Mosquitto's snapshot is taken when a save starts; the file's mtime is when it ended."""


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


def say(line: str) -> None:
    print(line, flush=True)


@dataclass(slots=True)
class Load:
    """The simulated devices, run in this process so that every PUBACK can be dated.

    A Mosquitto kill ends an epoch (the devices' connections die with it); the next epoch
    continues each device's sequence numbers (the state file) in a ledger of its own.
    """

    settings: DevStackSettings
    port: int
    """Where the devices connect: the gateways' shared port, or Mosquitto's."""
    folder: Path
    devices: int
    rate: float
    seed: int
    mix: DeviceMix
    """The fleet's kinds of device, the same in every epoch."""
    clocks: list[AckClock] = field(default_factory=list)
    reports: list[SimulationReport] = field(default_factory=list)
    _simulation: Simulation | None = None
    _task: asyncio.Task[SimulationReport] | None = None

    def start(self) -> None:
        username, password = stack.device_login(self.settings)
        clock = AckClock(self.folder / f"ledger-{len(self.clocks)}.jsonl")
        self._simulation = Simulation(
            SimulationSettings(
                devices=self.devices,
                rate=self.rate,
                host=self.settings.host,
                port=self.port,
                prefix="fdev",
                topic_template=stack.DEVICE_TOPIC,
                duplicate_ratio=0.02,
                bad_ratio=0.01,
                state_file=self.folder / "sim-state.json",
                ledger=clock.ledger,
                mix=self.mix,
                seed=self.seed * 1000 + len(self.clocks),
                connect_concurrency=25,
                username=username,
                password=password,
            ),
            progress=None,
        )
        clock.sample(0)
        self.clocks.append(clock)
        self._task = asyncio.create_task(self._simulation.run())

    def sample(self) -> None:
        if self._simulation is not None:
            self.clocks[-1].sample(self._simulation.report.acked)

    async def stop(self) -> None:
        if self._simulation is None or self._task is None:
            return
        self.sample()
        self._simulation.stop()
        report = await self._task
        self.clocks[-1].sample(report.acked)
        self.reports.append(report)
        self._simulation, self._task = None, None

    async def sampling(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.1)

    def totals(self) -> tuple[int, int]:
        """PUBACKs received and publishes failed so far, over every epoch."""
        reports = self._all_reports()
        return sum(r.acked for r in reports), sum(r.failed for r in reports)

    def reboots(self) -> int:
        """Devices that rebooted (and started a new sequence), over every epoch."""
        return sum(r.reboots for r in self._all_reports())

    def _all_reports(self) -> list[SimulationReport]:
        if self._simulation is None:
            return [*self.reports]
        return [*self.reports, self._simulation.report]


@dataclass(slots=True)
class World:
    """Everything one run starts, and what happened to it."""

    settings: DevStackSettings
    gateways: list[stack.AppProcess]
    workers: list[stack.AppProcess]
    store: stack.WorkerStore
    load: Load
    clock: Clock
    rules: Path
    """The alert rules every worker gets."""
    folder: Path
    """The run's folder: logs and the workers' own files."""
    crashes: list[BrokerCrash] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    applied: list[AppliedSample] = field(default_factory=list)
    """The worker's position on each partition, sampled (for the applied stalls)."""
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    load_started: float = 0.0
    """When the devices started (``time.monotonic()``)."""
    network: HostNetwork | None = None
    """Hosts of their own for servers and processes (``--hosts``), else None: loopback."""
    clocks: dict[str, HostClock] = field(default_factory=dict)
    """The gateway hosts' wall clocks, by gateway (``--hosts``)."""
    disks: dict[str, Path] = field(default_factory=dict)
    """The small disks under the Kafka nodes' log dirs and PostgreSQL, by server
    (``--hosts``)."""
    unfelt: list[str] = field(default_factory=list)
    """Faults whose effect was not seen where they were aimed (the injection failed)."""

    @property
    def apps(self) -> list[stack.AppProcess]:
        return [*self.gateways, *self.workers]

    def new_worker(self) -> stack.AppProcess:
        """Another worker process of the group (not started)."""
        number = len(self.workers) + 1
        host = self.network.add(f"worker-{number}") if self.network else None
        worker = stack.worker_process(
            self.settings, self.store, self.rules, self.folder, number, host
        )
        self.workers.append(worker)
        return worker


async def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


def _first_ready(gateways: list[stack.AppProcess], timeout_s: float = 120) -> float:
    """Blocks until one of ``gateways`` is ready (its session and subscription are up)."""
    deadline = time.monotonic() + timeout_s
    while not any(gateway.ready() for gateway in gateways):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no gateway back within {timeout_s:.0f}s")
        time.sleep(0.05)
    return time.monotonic()


async def cut_links(world: World, fault: Fault) -> str:
    """Cuts (or makes lossy) the links ``fault`` names for its hold time, then heals them."""
    assert world.network is not None, "network faults need hosts of their own"
    kafka = [node.name for node in kafka_nodes(world.settings)]
    if fault.target in KAFKA_NODES:
        host = (await _server(world, fault.target)).name
        peers = [node for node in kafka if node != host]
    else:
        host = f"{fault.target}-{fault.instance + 1}"
        peers = {Action.CUT_FROM_STORE: ["postgres"], Action.CUT_FROM_DEVICES: ["devices"]}.get(
            fault.action, kafka
        )
    if fault.action is Action.SLOW:
        return await slow_link(world, fault, host, peers)
    network = world.network
    if fault.action is Action.LOSSY:
        network.lossy(host, peers, LOSS_PERCENT, tag="fault")
    else:
        one_way = fault.action is Action.CUT_ONE_WAY
        network.cut(host, peers, tag="fault", inbound=not one_way)
    try:
        await asyncio.sleep(fault.hold_s)
    finally:
        network.heal(host, "fault")
    return f"{host}'s links to {', '.join(peers)} healed"


async def slow_link(world: World, fault: Fault, host: str, peers: list[str]) -> str:
    """Delays a gateway's links to Kafka (and loses a few of their packets) for the fault's
    hold time; its produce latency meanwhile must show at least half the added round trip."""
    assert world.network is not None, "network faults need hosts of their own"
    network, slowed = world.network, world.gateways[fault.instance]
    before = await _blocking(_produce_latency, slowed)
    at_most = fault.hold_s + 30  # the programs stop by themselves even if this one dies
    await _blocking(
        lambda: network.delay(
            host, peers, DELAY_MS, tag="fault", loss_percent=SLOW_LOSS, at_most_s=at_most
        )
    )
    try:
        await asyncio.sleep(fault.hold_s)
        after = await _blocking(_produce_latency, slowed)
    finally:
        await _blocking(network.heal, host, "fault")  # it waits out what the link holds
    healed = f"{host}'s links to {', '.join(peers)} healed"
    (total, count), round_trip = (after[0] - before[0], after[1] - before[1]), 2 * DELAY_MS / 1000
    mean = total / count if count else 0.0
    if mean < round_trip / 2:  # undelayed, it is tens of ms; records begun before the
        world.unfelt.append(  # delay took hold, or acknowledged as it began, pull it down
            f"{fault.label}: the gateway's produce latency averaged {mean:.3f}s over "
            f"{count:.0f} records, under half the {round_trip:.1f}s round trip"
        )
    devices = await _blocking(slowed.metric, "iot_gateway_edge_connections")
    return (
        f"{healed}; meanwhile its {count:.0f} records took {mean:.2f}s on average to Kafka "
        f"({devices:.0f} devices connected to it)"
    )


def _produce_latency(gateway: stack.AppProcess) -> tuple[float, float]:
    """The gateway's produce latency histogram so far: its sum (s) and count."""
    name = "iot_gateway_produce_latency_seconds"
    return gateway.metric(f"{name}_sum"), gateway.metric(f"{name}_count")


async def step_clock(world: World, fault: Fault) -> str:
    """Steps a gateway host's wall clock by ``fault.step_s`` for its hold time, then back
    to the true time. Either way the gateway's clock went back once (at the step, or when
    set right), which its receive clock must have seen and held its pace through."""
    gateway = world.gateways[fault.instance]
    clock = world.clocks[gateway.name]
    before = await _blocking(gateway.metric, CLOCK_STEPS_BACK)
    clock.step(fault.step_s)
    try:
        await asyncio.sleep(fault.hold_s)
    finally:
        clock.step(0.0)
    await asyncio.sleep(RELOAD_S + 1.0)  # the gateway reads its clock again, stamps again
    seen = await _blocking(gateway.metric, CLOCK_STEPS_BACK) - before
    if seen < 1:
        world.unfelt.append(f"{fault.label}: the gateway never saw its clock go back")
    return f"{gateway.name}'s clock set right; it saw its clock go back {seen:.0f} times"


async def fill_disk(world: World, fault: Fault) -> str:
    """Fills the disk under a Kafka node's log dir or PostgreSQL's data for the fault's hold
    time, then gives it room again and restarts the server if it stopped."""
    server = await _server(world, fault.target)
    log = server.service.log_file
    logged = log.stat().st_size if log.exists() else 0
    filler = await _blocking(fill, world.disks[server.name])
    try:
        await asyncio.sleep(fault.hold_s)
    finally:
        filler.unlink()
    stopped = running_pid(server.service.handle) is None
    with log.open("rb") as text:
        text.seek(logged)
        refused = b"No space left on device" in text.read()
    if not (refused or stopped):
        world.unfelt.append(f"{fault.label}: {server.name} neither stopped nor logged ENOSPC")
    took = await _blocking(stack.restart_servers, world.settings, lambda _: None)
    what = "stopped" if stopped else "kept running"
    return (
        f"{server.name} {what}{', its writes refused' if refused else ''}; room again, "
        f"the stack up in {took:.1f}s"
    )


async def inject(world: World, fault: Fault) -> str:
    """Applies ``fault`` and repairs it; returns what happened, for the progress output."""
    if fault.action in NETWORK_ACTIONS:
        return await cut_links(world, fault)
    if fault.action is Action.CLOCK_STEP:
        return await step_clock(world, fault)
    if fault.action is Action.DISK_FULL:
        return await fill_disk(world, fault)
    if fault.action is Action.JOIN:
        joining = world.new_worker()
        joining.start()
        took = await _blocking(joining.wait_ready, 90)
        return f"{joining.name} joined, ready in {took:.1f}s"
    if fault.target in (Target.GATEWAY, Target.WORKER):
        return await hit_process(world, fault)
    return await hit_server(world, fault)


async def hit_process(world: World, fault: Fault) -> str:
    """Kills or freezes a gateway or worker, then restarts or resumes it."""
    apps = world.gateways if fault.target is Target.GATEWAY else world.workers
    app = apps[fault.instance]
    if fault.action in (Action.PAUSE, Action.LONG_PAUSE):
        app.pause()
        await asyncio.sleep(fault.hold_s)
        app.resume()
        return f"{app.name} resumed"
    app.kill()
    await asyncio.sleep(fault.hold_s)
    app.start()
    took = await _blocking(app.wait_ready, 90)
    return f"{app.name} restarted, ready in {took:.1f}s"


async def _server(world: World, target: Target) -> stack.Server:
    """The server a fault on ``target`` hits (a Kafka node found by its role)."""
    if target in KAFKA_NODES:
        node: stack.Server = await _blocking(stack.kafka_server, world.settings, target)
        return node
    if target is Target.POSTGRES:
        return stack.postgres_server(world.settings)
    return stack.mosquitto_server(world.settings)


async def hit_server(world: World, fault: Fault) -> str:
    """Kills or freezes a Kafka node, PostgreSQL or Mosquitto, then restarts or resumes it."""
    server = await _server(world, fault.target)
    if fault.action is Action.PAUSE:
        pid = server.pause()
        await asyncio.sleep(fault.hold_s)
        server.resume(pid)
        return f"{server.name} resumed"
    if fault.target is Target.MOSQUITTO:
        frozen = world.gateways if fault.action is Action.KILL_WITH_BACKLOG else []
        for gateway in frozen:
            gateway.pause()
        if frozen:
            await asyncio.sleep(fault.hold_s)  # the broker queues in memory meanwhile
        saved = stack.mosquitto_saved_at(world.settings)
        world.load.sample()
        server.kill()
        killed = time.monotonic()
        saved_at = world.clock.started if saved is None else saved - SAVE_MARGIN_S
        for gateway in frozen:
            gateway.resume()
        await world.load.stop()  # the devices' connections died with the broker
        if not frozen:
            await asyncio.sleep(fault.hold_s)
        took = await _blocking(stack.restart_servers, world.settings, lambda _: None)
        restarted = time.monotonic() - took  # it answers within `took`; count from the start
        world.load.start()  # devices reconnect at once, as real ones do
        back = await _blocking(_first_ready, world.gateways)
        world.crashes.append(BrokerCrash(saved_at, killed, restarted, back))
        return (
            f"mosquitto restarted in {took:.1f}s, a gateway subscribed again "
            f"{back - restarted:.1f}s after its start; it had last saved "
            f"{killed - saved_at:.2f}s before the kill"
        )
    server.kill()
    await asyncio.sleep(fault.hold_s)
    took = await _blocking(stack.restart_servers, world.settings, lambda _: None)
    return f"{server.name} restarted in {took:.1f}s"


async def _status_line(world: World, faults_done: int, faults: int) -> str:
    acked, failed = world.load.totals()
    try:
        ends = await asyncio.wait_for(
            end_offsets(stack.client_for(world.settings), stack.TELEMETRY_TOPIC), 3
        )
        logged = f"{sum(ends.values()):,}"
    except Exception:  # Kafka may be the one that is down
        logged = "?"
    applied = "?"
    with contextlib.suppress(Exception):
        applied = f"{sum((await _blocking(world.store.applied)).values()):,}"
    return (
        f"[{world.clock():6.1f}s] acked {acked:,} (failed {failed:,}) | log {logged} | "
        f"worker at {applied} | faults {faults_done}/{faults}"
    )


async def supervise(world: World, faults: list[Fault]) -> None:
    """Progress every 5 s; a platform process that died on its own is reported and restarted
    (as its supervisor would in production)."""
    last = 0.0
    while True:
        await asyncio.sleep(0.5)
        for app in world.apps:
            if not app.running() and not app.expected_down:
                code = app.process.returncode if app.process else None
                world.unexpected_exits.append(
                    {"at_s": round(world.clock(), 1), "process": app.name, "exit": code}
                )
                say(
                    f"[{world.clock():6.1f}s] !! {app.name} exited by itself ({code}); "
                    f"restarting. Its log ends:\n{app.tail(8)}"
                )
                app.start()
        if world.clock() - last >= 5:
            last = world.clock()
            say(await _status_line(world, len(world.done), len(faults)))


async def sample_applied(world: World) -> None:
    """The worker's positions twice a second (a failed read, e.g. mid-restart, is skipped)."""
    while True:
        with contextlib.suppress(Exception):
            positions = await _blocking(world.store.applied)
            world.applied.append((time.monotonic(), positions))
        await asyncio.sleep(0.5)


def write_differences(history: History, path: Path, most: int = 20) -> None:
    """The device states the store and the oracle disagree on (``most`` of them, both
    sides), beside the run's logs: where to start when ``projections_equal_oracle`` fails."""
    expected = {state.device_id: state for state in history.oracle.devices}
    differing = [
        {"store": state._asdict(), "oracle": oracle_state._asdict()}
        for state in history.projections.devices
        if (oracle_state := expected.get(state.device_id)) is not None and oracle_state != state
    ]
    if differing:
        path.write_text(json.dumps(differing[:most], indent=1, default=str) + "\n")
        say(f"{len(differing)} device states differ; the first {most} in {path}")


def report_availability(
    world: World, args: argparse.Namespace, seed: int, load_started: float, load_ended: float
) -> tuple[list[Cost], Path]:
    """What each fault cost (printed), and the chart of the run (PNG in the run's folder and
    ``.local/faults/``)."""
    acks = [ack for clock in world.load.clocks for ack in clock.acks()]
    acked = ack_times(acks, world.settings.kafka_partitions)
    applied = applied_times(world.applied)
    spans = [
        FaultSpan(mark["label"], mark["at"], mark["repaired"], mark["kafka_node"], mark["overlaps"])
        for mark in sorted(world.done, key=lambda mark: mark["at"])
    ]
    found = costs(spans, acked, applied, load_started, load_ended)
    say(format_costs(found))
    chart = draw(
        args.out / f"availability-{seed}.png",
        f"{args.mode} mode, {args.brokers} Kafka node(s), seed {seed}: readings per second",
        acked,
        world.applied,
        spans,
        load_started,
        load_ended,
    )
    say(f"[{world.clock():6.1f}s] chart of the run: {chart}")
    return found, chart


async def run_faults(
    world: World, faults: list[Fault], load_started: float, duration: float
) -> None:
    """Injects each fault at its time; one that overlaps the one before starts while that one
    still holds, and the next that does not waits until both are repaired."""
    holding: list[asyncio.Task[None]] = []
    for number, fault in enumerate(faults, 1):
        if not fault.overlaps:
            await asyncio.gather(*holding)
            holding = []
        delay = load_started + fault.at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        holding.append(asyncio.create_task(_inject_one(world, fault, number, len(faults))))
    await asyncio.gather(*holding)
    rest = load_started + duration - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)


async def _inject_one(world: World, fault: Fault, number: int, faults: int) -> None:
    at = time.monotonic() - world.load_started
    say(f"[{world.clock():6.1f}s] fault {number}/{faults}: {fault} (at t+{at:.1f}s)")
    began = time.monotonic()
    outcome = await inject(world, fault)
    took = time.monotonic() - began
    say(f"[{world.clock():6.1f}s]   ... {outcome} ({took:.1f}s)")
    world.done.append(
        {
            "at": began,
            "repaired": time.monotonic(),
            "kafka_node": fault.target in KAFKA_NODES,
            "overlaps": fault.overlaps,
            "label": fault.label,
            "fault": str(fault),
            "started_s": round(at, 1),
            "repaired_after_s": round(took, 1),
            "outcome": outcome,
        }
    )


async def _until(what: str, condition: Callable[[], Awaitable[bool]], timeout_s: float) -> float:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        await asyncio.sleep(1)
    return time.monotonic() - started


async def drain(world: World) -> None:
    """Waits until the gateways have nothing left to deliver (the log's end stops moving for
    5 s) and the worker has applied the whole log and published its outbox."""
    client = stack.client_for(world.settings)
    seen: list[tuple[float, int]] = []

    async def log_settled() -> bool:
        ends = await end_offsets(client, stack.TELEMETRY_TOPIC)
        dlq = await end_offsets(client, stack.DLQ_TOPIC)
        total = sum(ends.values()) + sum(dlq.values())
        if not seen or seen[-1][1] != total:
            seen.append((time.monotonic(), total))
        return time.monotonic() - seen[-1][0] >= 5

    took = await _until("the log settling", log_settled, 120)
    say(f"[{world.clock():6.1f}s] log settled at {seen[-1][1]:,} records after {took:.0f}s")
    ends = await end_offsets(client, stack.TELEMETRY_TOPIC)

    def caught_up_now() -> bool:
        at = world.store.applied()
        backlog = world.store.reader().outbox_backlog()
        return backlog == 0 and all(at.get(p, 0) >= end for p, end in ends.items() if end)

    async def caught_up() -> bool:
        return bool(await _blocking(caught_up_now))

    took = await _until("the worker catching up", caught_up, 120)
    say(f"[{world.clock():6.1f}s] worker caught up and outbox empty after {took:.0f}s")


async def collect(
    world: World, rules: Path, mode: str, stop_codes: Mapping[str, int | None]
) -> History:
    client = stack.client_for(world.settings)
    log, events = await read_log(client, stack.TELEMETRY_TOPIC)
    expected = oracle(events, windows=DEFAULT_WINDOWS, rules=load_alert_rules(rules))
    store = world.store.reader()
    actual = Projections(store.devices(), store.windows(), store.alert_states())
    return History(
        acks=[ack for clock in world.load.clocks for ack in clock.acks()],
        log=log,
        dlq_reasons=await read_header(client, stack.DLQ_TOPIC, "reason"),
        projections=actual,
        oracle=Projections(expected.devices, expected.windows, expected.alerts),
        expected_alerts=[d.event_id for d in expected.derived],
        published_alerts=await read_header(client, ALERTS.name, "event_id"),
        crashes=world.crashes,
        faults=[(mark["at"], mark["label"]) for mark in world.done],
        redelivering_broker=mode == "bridge",
        exits=[(e["at_s"], e["process"], e["exit"]) for e in world.unexpected_exits],
        stop_codes=stop_codes,
    )


def _network(brokers: int, gateways: int) -> HostNetwork:
    """Hosts of their own for the Kafka nodes, PostgreSQL, the gateways (workers get theirs
    as they are made) and the devices, where this process moves: the devices it simulates,
    HAProxy and what the suite itself connects to come from there."""
    nodes = DevStackSettings(kafka_brokers=brokers).kafka_nodes
    network = HostNetwork.create(
        [
            *(node.name for node in nodes),
            "postgres",
            *(f"gateway-{n}" for n in range(1, gateways + 1)),
            "devices",
        ]
    )
    network.enter("devices")  # before any other thread starts: they follow
    return network


def _mount_disks(settings: DevStackSettings, mounts: contextlib.ExitStack) -> dict[str, Path]:
    """A small disk of its own (tmpfs of ``DISK_SIZE``) under each Kafka node's log dir and
    under PostgreSQL's folder, owned by the server's user and mounted before the stack
    prepares them; the disk-full faults fill them."""
    postgres = Postgres(settings)
    folders: dict[str, tuple[Path, str | None]] = {
        node.name: (node.data_dir, None) for node in kafka_nodes(settings)
    }
    folders[postgres.name] = (postgres.home, postgres.run_as)
    return {
        name: mounts.enter_context(small_disk(folder, DISK_SIZE, owner))
        for name, (folder, owner) in folders.items()
    }


def _remove_hosts(balancer: Balancer | None, network: HostNetwork | None) -> None:
    if balancer is not None:
        balancer.stop()
    if network is not None:
        network.remove()


async def run(args: argparse.Namespace) -> int:
    clock = Clock()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    gateways = args.gateways or (2 if args.mode == "direct" else 1)
    topology = Topology(args.mode, gateways, args.brokers, args.workers, args.store, args.hosts)
    faults = make_schedule(seed, args.duration, topology)
    say(
        f"fault suite: {args.mode} mode, {gateways} gateway(s), {args.brokers} Kafka node(s), "
        f"{args.workers} worker(s) on {args.store}, seed {seed}, "
        f"{args.duration:.0f}s of load, {args.devices} devices at {args.rate:g} msg/s; "
        f"repeat with `make faults FAULTS_SEED={seed}`"
        + (" FAULTS_ARGS='--mode bridge'" if args.mode == "bridge" else "")
    )
    say("schedule:\n" + "\n".join(f"  {fault}" for fault in faults))
    lacking = missing_kinds(faults, topology)
    if lacking:
        say(f"the run is too short to inject every kind of fault: missing {lacking}")
        return 2
    mix = dataclasses.replace(REALISTIC if args.fleet == "realistic" else TIDY, seed=seed)
    folder = args.out / f"run-{seed}-{time.strftime('%Y%m%dT%H%M%S')}"
    folder.mkdir(parents=True)
    shared = DevStackSettings.from_env()
    network = _network(args.brokers, gateways) if args.hosts else None
    settings = isolated_settings(
        folder / "stack",
        secure=shared.secure,
        gateway_mode=args.mode,
        kafka_brokers=args.brokers,
        kafka_heap="384m" if args.brokers > 1 else "512m",
        server_hosts=network.servers() if network else (),
    )
    device_port = settings.mqtt_port  # the gateways' shared port, or Mosquitto's
    say(
        f"[{clock():6.1f}s] starting an isolated stack in {folder} "
        f"(Kafka {settings.kafka_bootstrap}, devices connect to MQTT port {device_port})"
    )
    world: World | None = None
    balancer: Balancer | None = None
    tasks: list[asyncio.Task[None]] = []
    mounts = contextlib.ExitStack()
    try:
        disks = _mount_disks(settings, mounts) if network else {}
        names = [f"gateway-{n}" for n in range(1, gateways + 1)] if network else []
        clocks = {name: HostClock(folder / f"clock-{name}") for name in names}
        await _blocking(stack.start_stack, settings, lambda _: None)
        rules = folder / "alerts.yaml"
        rules.write_text(RULES)
        config = stack.write_gateway_config(
            folder / "gateway.yaml", settings, args.mode, device_port
        )
        store = (
            stack.WorkerStore.postgres(settings)
            if args.store == "postgres"
            else stack.WorkerStore.sqlite(folder / "state.db")
        )
        world = World(
            settings=settings,
            gateways=[
                stack.gateway_process(
                    settings,
                    config,
                    n,
                    folder,
                    network.hosts[f"gateway-{n}"] if network else None,
                    clocks.get(f"gateway-{n}"),
                )
                for n in range(1, gateways + 1)
            ],
            workers=[],
            store=store,
            load=Load(settings, device_port, folder, args.devices, args.rate, seed, mix),
            clock=clock,
            rules=rules,
            folder=folder,
            network=network,
            clocks=clocks,
            disks=disks,
        )
        for _ in range(args.workers):
            world.new_worker()
        # One at a time: the first creates the schema registry's single-partition topic
        # (started together, a metadata request may auto-create it with 6 partitions).
        for app in world.apps:
            app.start()
            await _blocking(app.wait_ready, 120)
        if network is not None:
            balancer = Balancer(settings.host, device_port, world.gateways, folder)
            balancer.start()
        say(
            f"[{clock():6.1f}s] stack, {gateways} gateway(s) and {args.workers} worker(s) ready; "
            "devices start"
        )
        world.load.start()
        load_started = world.load_started = time.monotonic()
        tasks = [
            asyncio.create_task(world.load.sampling()),
            asyncio.create_task(supervise(world, faults)),
            asyncio.create_task(sample_applied(world)),
        ]
        await run_faults(world, faults, load_started, args.duration)
        await world.load.stop()
        load_ended = time.monotonic()
        acked, failed = world.load.totals()
        say(
            f"[{clock():6.1f}s] load stopped: {acked:,} PUBACKs, {failed:,} publishes failed, "
            f"{world.load.reboots():,} device reboots"
        )
        await drain(world)
        for task in tasks:
            task.cancel()
        unready = [app.name for app in world.apps if not await _blocking(app.ready)]
        exits = {app.name: app.terminate() for app in world.apps}
        say(f"[{clock():6.1f}s] processes stopped with SIGTERM: {exits}")
        history = dataclasses.replace(
            await collect(world, rules, args.mode, exits), unready=unready, unfelt=world.unfelt
        )
        write_differences(history, folder / "differences.json")
        found, chart = report_availability(world, args, seed, load_started, load_ended)
        verdicts = check(history)
        if args.brokers > 1:
            verdicts.append(check_cluster_availability(found))
        say(format_verdicts(verdicts))
        document = verdicts_json(
            verdicts,
            seed=seed,
            wall_s=round(clock(), 1),
            load={
                "mode": args.mode,
                "devices": args.devices,
                "rate": args.rate,
                "duration_s": args.duration,
                "gateways": gateways,
                "kafka_nodes": args.brokers,
                "fleet": args.fleet,
                "mix": dataclasses.asdict(mix),
            },
            acked=acked,
            failed_publishes=failed,
            reboots=world.load.reboots(),
            schedule=[{**dataclasses.asdict(f), "text": str(f)} for f in faults],
            faults=world.done,
            unexpected_exits=world.unexpected_exits,
            availability=[cost.as_json() for cost in found],
            chart=str(chart),
            exit_codes=exits,
            run_dir=str(folder),
        )
        for name in (f"verdict-{seed}.json", "latest.json"):
            (args.out / name).write_text(document + "\n")
        say(f"[{clock():6.1f}s] verdicts written to {args.out / f'verdict-{seed}.json'}")
        return 0 if all(v.ok for v in verdicts) else 1
    finally:
        for task in tasks:
            task.cancel()
        if world is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(world.load.stop(), 20)
            for app in world.apps:
                with contextlib.suppress(Exception):
                    app.resume()
            with contextlib.suppress(Exception):
                world.store.close()
        kill_leftovers()
        await _blocking(stack.stop_stack, settings, lambda _: None)
        mounts.close()
        _remove_hosts(balancer, network)
        say(f"[{clock():6.1f}s] isolated stack stopped (seed {seed})")


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Drops the devices' connection errors nobody awaited (a killed broker makes hundreds)
    and paho's writes to sockets it already closed (a dropped connection); anything else goes
    to the default handler."""
    failure = context.get("exception")
    if isinstance(failure, aiomqtt.MqttError):
        return
    if isinstance(failure, OSError) and failure.errno == errno.EBADF:
        return
    loop.default_exception_handler(context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="fault schedule seed (random)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load (190 in direct mode on sqlite; 230 in bridge mode or on postgres, "
        "which have more kinds of fault to fit; 540 with --hosts, whose links are cut, clocks "
        "stepped and disks filled too)",
    )
    parser.add_argument(
        "--devices", type=int, default=None, help="simulated devices (300 direct, 200 bridge)"
    )
    parser.add_argument(
        "--mode",
        choices=("direct", "bridge"),
        default="direct",
        help="direct: devices connect to the gateways; bridge: to Mosquitto (default: direct)",
    )
    parser.add_argument(
        "--gateways",
        type=int,
        default=None,
        help="gateway processes (default: 2 sharing the port in direct mode; 1 in bridge mode, "
        "where with more a device's readings may reach Kafka out of order, see the README)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages/s over all devices (1500 in direct mode; 200 in bridge mode, whose "
        "Mosquitto crash windows are measured at that rate)",
    )
    parser.add_argument(
        "--fleet",
        choices=("realistic", "tidy"),
        default="realistic",
        help="realistic: devices of every kind (rebooting, without seq or ts, clocks off); "
        "tidy: every device numbers and dates its readings (default: realistic)",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=3,
        help="Kafka nodes: 3, a cluster (RF 3, min ISR 2) whose leader and active controller "
        "the faults hit; 1, the single node (default: 3)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the workers' store: sqlite (one worker) or postgres (--workers of them, one more "
        "joining under load, and PostgreSQL killed and frozen too) (default: sqlite)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (1 on sqlite, 2 on postgres)"
    )
    parser.add_argument(
        "--hosts",
        action="store_true",
        help="each Kafka node, PostgreSQL, gateway and worker on a host of its own (network "
        "namespaces on a bridge, devices behind HAProxy; needs root): links are cut and made "
        "lossy, gateway clocks stepped and server disks filled too (direct mode)",
    )
    parser.add_argument("--out", type=Path, default=Path(".local/faults"))
    args = parser.parse_args(argv)
    direct = args.mode == "direct"
    args.devices = args.devices or (300 if direct else 200)
    args.rate = args.rate or (1500.0 if direct else 200.0)
    args.duration = args.duration or (
        540.0 if args.hosts else 190.0 if direct and args.store == "sqlite" else 230.0
    )
    args.workers = args.workers or (2 if args.store == "postgres" else 1)
    if args.store == "sqlite" and args.workers != 1:
        parser.error("an SQLite store serves one worker: use --store postgres for more")
    if args.hosts and not direct:
        parser.error("--hosts runs direct mode (Mosquitto stays on this host)")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a killed broker is the point
    args.out = args.out.resolve()

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        loop.set_exception_handler(_quiet)
        return await run(args)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything the run started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
