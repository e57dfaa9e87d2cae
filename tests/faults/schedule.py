"""The fault schedule: (time, fault) steps, random but fully determined by a seed.

Every kind of fault appears at least once (in a seeded order), then random ones fill the
run; a failing run is repeated with ``--seed``. Faults follow one another, except pairs
made to overlap (``OVERLAPPING``): the second starts while the first still holds.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

DELAY_MS = 200
SLOW_LOSS = 2
"""A slow link's delay each way (ms) and the share of its packets lost (%)."""


class Target(StrEnum):
    GATEWAY = "gateway"
    WORKER = "worker"
    KAFKA = "kafka"
    """The one Kafka node; in a cluster, the two roles below stand for it."""
    KAFKA_LEADER = "kafka-leader"
    """The node leading the most telemetry partitions (a cluster)."""
    KAFKA_CONTROLLER = "kafka-controller"
    """The node leading the KRaft controller quorum (a cluster)."""
    MOSQUITTO = "mosquitto"
    POSTGRES = "postgres"
    """The workers' store (when it is PostgreSQL)."""


KAFKA_NODES = frozenset({Target.KAFKA, Target.KAFKA_LEADER, Target.KAFKA_CONTROLLER})


class Action(StrEnum):
    KILL = "kill -9"
    """SIGKILL, then a restart after ``hold_s`` (the restart itself takes what it takes)."""
    PAUSE = "pause"
    """SIGSTOP, then SIGCONT after ``hold_s``."""
    KILL_WITH_BACKLOG = "kill -9 with backlog"
    """Mosquitto only: every gateway frozen for ``hold_s`` (the broker queues what devices
    publish, in memory), then Mosquitto SIGKILLed and the gateways resumed: the case where
    Mosquitto's persistence interval matters."""
    LONG_PAUSE = "long pause"
    """SIGSTOP for longer than the process's session (a worker's consumer group session, a
    gateway's fencing lease and its devices' publish timeout), then SIGCONT: a zombie whose
    work others took over meanwhile, and which must not write over them when it wakes."""
    JOIN = "join"
    """Workers only: one more worker process joins the group under load (and stays)."""
    CUT_FROM_PEERS = "cut from the other Kafka nodes"
    """A Kafka node's links to the other nodes dropped both ways for ``hold_s`` (clients
    still reach it): an isolated leader or controller."""
    CUT_ONE_WAY = "one-way cut from the other Kafka nodes"
    """What a Kafka node sends the other nodes is dropped, what they send it arrives: an
    asymmetric partition."""
    CUT_FROM_KAFKA = "cut from Kafka"
    """A gateway's or worker's links to every Kafka node dropped (a worker still reaches
    PostgreSQL: a zombie whose partitions another worker takes over)."""
    CUT_FROM_DEVICES = "cut from its devices"
    """A gateway's links to the devices' host (the load balancer in front of the gateways)
    dropped: the devices must find the other gateway, which takes their sessions over."""
    CUT_FROM_STORE = "cut from PostgreSQL"
    """A worker's link to its store dropped (it still reaches Kafka)."""
    LOSSY = "lossy link to Kafka"
    """A gateway's packets to and from Kafka lost at random (``LOSS_PERCENT``)."""
    SLOW = f"slow link to Kafka ({DELAY_MS} ms each way, {SLOW_LOSS}% lost)"
    """A gateway's packets to and from Kafka held ``DELAY_MS`` each way and ``SLOW_LOSS``
    percent of them lost: a congested or far-away link."""
    CLOCK_STEP = "clock step"
    """A gateway host's wall clock stepped by ``step_s`` (back or ahead) for ``hold_s``, then
    stepped back to the true time (its monotonic clock runs on untouched)."""
    DISK_FULL = "disk full"
    """The disk under a Kafka node's log dir, or under PostgreSQL's data, filled up for
    ``hold_s``, then given room again (and the server restarted if it stopped)."""


NETWORK_ACTIONS = frozenset(
    {
        Action.CUT_FROM_PEERS,
        Action.CUT_ONE_WAY,
        Action.CUT_FROM_KAFKA,
        Action.CUT_FROM_DEVICES,
        Action.CUT_FROM_STORE,
        Action.LOSSY,
        Action.SLOW,
    }
)
"""Faults of links between hosts: only where each component has a host of its own."""
HOST_ACTIONS = NETWORK_ACTIONS | {Action.CLOCK_STEP, Action.DISK_FULL}
"""Faults of a host: its links, its clock, its disk (hosts of their own only)."""
LOSS_PERCENT = 20
STEP_S = (60.0, 600.0)
"""How far a clock is stepped, back or ahead (NTP steps past 128 ms; a VM resumed, an
operator's ``date``, a bad time server step by minutes)."""


@dataclass(frozen=True, slots=True)
class Topology:
    """What a run starts: the gateway ``mode``, how many gateways, Kafka nodes and workers,
    and the workers' ``store`` (``sqlite``: one worker; ``postgres``: any number)."""

    mode: str = "direct"
    gateways: int = 2
    brokers: int = 1
    workers: int = 1
    store: str = "sqlite"
    hosts: bool = False
    """Each server and platform process on a host of its own (network faults apply)."""

    def applies(self, target: Target) -> bool:
        """Whether ``target`` exists in this topology."""
        if target is Target.MOSQUITTO:
            return self.mode == "bridge"
        if target is Target.POSTGRES:
            return self.store == "postgres"
        if target is Target.KAFKA:
            return self.brokers == 1
        if target in KAFKA_NODES:
            return self.brokers > 1
        return True


@dataclass(frozen=True, slots=True)
class Fault:
    """One step: at ``at_s`` after the load started, ``action`` on ``target``."""

    at_s: float
    action: Action
    target: Target
    hold_s: float
    """Seconds dead (before the restart) or frozen (before SIGCONT)."""
    instance: int = 0
    """Which process of the target's kind (gateways run as several)."""
    overlaps: bool = False
    """Starts while the fault before it still holds (they are repaired together)."""
    step_s: float = 0.0
    """How far a clock step moves the host's wall clock (negative: back)."""

    @property
    def label(self) -> str:
        """What and whom, e.g. ``kill -9 gateway-2``, ``join worker``."""
        numbered = self.target in (Target.GATEWAY, Target.WORKER)
        who = f"{self.target}-{self.instance + 1}" if numbered else self.target
        if self.action is Action.KILL_WITH_BACKLOG:
            return f"{Action.KILL} {who} with a backlog"
        if self.action is Action.JOIN:
            return f"{Action.JOIN} {self.target}"
        if self.action in NETWORK_ACTIONS:
            return f"{who} {self.action}"
        if self.action is Action.CLOCK_STEP:
            return f"{who}'s clock stepped {'back' if self.step_s < 0 else 'ahead'}"
        if self.action is Action.DISK_FULL:
            return f"{who}'s disk full"
        return f"{self.action} {who}"

    def __str__(self) -> str:
        return ("  + " if self.overlaps else "") + self._text()

    def _text(self) -> str:
        if self.action is Action.JOIN:
            return f"t+{self.at_s:5.1f}s  one more worker joins"
        if self.action in NETWORK_ACTIONS or self.action is Action.DISK_FULL:
            return f"t+{self.at_s:5.1f}s  {self.label} for {self.hold_s:.1f}s"
        if self.action is Action.CLOCK_STEP:
            return (
                f"t+{self.at_s:5.1f}s  {self.label} {abs(self.step_s):.0f}s for {self.hold_s:.1f}s"
            )
        verb = {Action.KILL: "dead", Action.PAUSE: "frozen", Action.LONG_PAUSE: "frozen"}.get(
            self.action, "gateways frozen"
        )
        return f"t+{self.at_s:5.1f}s  {self.label} ({verb} {self.hold_s:.1f}s)"


REQUIRED: tuple[tuple[Action, Target], ...] = (
    (Action.KILL, Target.GATEWAY),
    (Action.KILL, Target.WORKER),
    (Action.KILL, Target.KAFKA),
    (Action.KILL, Target.MOSQUITTO),
    (Action.KILL_WITH_BACKLOG, Target.MOSQUITTO),
    (Action.PAUSE, Target.GATEWAY),
    (Action.PAUSE, Target.WORKER),
    (Action.PAUSE, Target.KAFKA),
    (Action.PAUSE, Target.MOSQUITTO),
    (Action.KILL, Target.POSTGRES),
    (Action.PAUSE, Target.POSTGRES),
    (Action.JOIN, Target.WORKER),
    (Action.LONG_PAUSE, Target.WORKER),
    (Action.LONG_PAUSE, Target.GATEWAY),
    (Action.CUT_FROM_PEERS, Target.KAFKA_LEADER),
    (Action.CUT_FROM_PEERS, Target.KAFKA_CONTROLLER),
    (Action.CUT_ONE_WAY, Target.KAFKA_LEADER),
    (Action.CUT_FROM_KAFKA, Target.GATEWAY),
    (Action.CUT_FROM_KAFKA, Target.WORKER),
    (Action.CUT_FROM_DEVICES, Target.GATEWAY),
    (Action.CUT_FROM_STORE, Target.WORKER),
    (Action.LOSSY, Target.GATEWAY),
    (Action.SLOW, Target.GATEWAY),
    (Action.CLOCK_STEP, Target.GATEWAY),
    (Action.DISK_FULL, Target.KAFKA_LEADER),
    (Action.DISK_FULL, Target.POSTGRES),
)
"""Each fault the suite must inject at least once per run (of those its topology has)."""

EXTRA: tuple[tuple[Action, Target], ...] = (
    (Action.KILL, Target.GATEWAY),
    (Action.KILL, Target.GATEWAY),
    (Action.KILL, Target.WORKER),
    (Action.KILL, Target.WORKER),
    (Action.KILL, Target.KAFKA),
    (Action.KILL, Target.MOSQUITTO),
    (Action.PAUSE, Target.GATEWAY),
    (Action.PAUSE, Target.WORKER),
)
"""What fills the rest of a run, drawn at random (processes more often than servers)."""

Kind = tuple[Action, Target]
Step = tuple[Kind, ...]
"""One kind of fault, or kinds injected together."""

OVERLAPPING: tuple[tuple[Kind, Kind], ...] = (
    ((Action.KILL, Target.KAFKA_LEADER), (Action.KILL, Target.GATEWAY)),
    ((Action.PAUSE, Target.POSTGRES), (Action.KILL, Target.WORKER)),
)
"""Pairs injected together at least once per run (of those the topology has): the second
fault OVERLAP_S after the first, while it still holds."""
OVERLAP_S = 1.0

COST_S = {
    Target.GATEWAY: 2.0,
    Target.WORKER: 3.0,
    Target.KAFKA: 12.0,
    Target.KAFKA_LEADER: 12.0,
    Target.KAFKA_CONTROLLER: 12.0,
    Target.MOSQUITTO: 4.0,
    Target.POSTGRES: 4.0,
}
"""About how long a kill of each target takes to repair (restart and ready), for spacing."""

PAUSE_S = (2.0, 5.0)
CUT_S = (8.0, 14.0)
"""Links stay cut (clocks stepped, disks full) past a Kafka node's fencing (4 s) and a
worker's group session (6 s)."""
LONG_PAUSE_S = (12.0, 16.0)
"""Past a worker's group session (6 s), a gateway's lease (1 s) and a device's publish
timeout (15 s), at times."""
"""Pauses stay below the clients' request timeouts (MQTT publish 15 s, Kafka 30 s)."""


def kinds_for(
    kinds: Sequence[tuple[Action, Target]], topology: Topology
) -> list[tuple[Action, Target]]:
    """``kinds`` that apply to ``topology``: in direct mode there is no Mosquitto, only a
    PostgreSQL store can be killed and be joined by more workers, and in a cluster a Kafka
    fault hits the partition leader and, as another kind, the active controller."""
    applying = []
    for action, target in kinds:
        if action in HOST_ACTIONS and not topology.hosts:
            continue
        if action is Action.CUT_FROM_STORE and topology.store != "postgres":
            continue
        if target is Target.KAFKA and topology.brokers > 1:
            applying += [(action, Target.KAFKA_LEADER), (action, Target.KAFKA_CONTROLLER)]
        elif action is Action.JOIN and topology.store != "postgres":
            continue
        elif topology.applies(target):
            applying.append((action, target))
    return applying


def make_schedule(
    seed: int,
    duration_s: float,
    topology: Topology = Topology(),
    *,
    start_s: float = 8.0,
    gap_s: tuple[float, float] = (4.0, 8.0),
    quiet_tail_s: float = 10.0,
) -> list[Fault]:
    """The faults of one run: every kind in ``REQUIRED`` once, then random ``EXTRA`` ones,
    spaced by ``gap_s`` plus each fault's own repair time, all starting before
    ``duration_s - quiet_tail_s`` (the load's last seconds run without faults)."""
    rng = random.Random(seed)
    steps: list[tuple[tuple[Action, Target], ...]] = [
        (kind,) for kind in kinds_for(REQUIRED, topology)
    ]
    steps += pairs_for(topology)
    extra = kinds_for(EXTRA, topology)
    rng.shuffle(steps)
    faults: list[Fault] = []
    at = start_s
    while True:
        step = steps.pop(0) if steps else (rng.choice(extra),)
        drawn = [_draw(rng, kind, topology, at + OVERLAP_S * n) for n, kind in enumerate(step)]
        cost = max(fault.at_s - at + _cost(fault) for fault in drawn)
        if at + cost > duration_s - quiet_tail_s:
            break
        faults += [dataclasses.replace(fault, overlaps=n > 0) for n, fault in enumerate(drawn)]
        at += cost + rng.uniform(*gap_s)
    return faults


def _draw(rng: random.Random, kind: Kind, topology: Topology, at: float) -> Fault:
    action, target = kind
    hold = {
        Action.KILL: rng.uniform(0.2, 2.5),
        Action.JOIN: 0.0,
        Action.LONG_PAUSE: rng.uniform(*LONG_PAUSE_S),
    }.get(action, rng.uniform(*(CUT_S if action in HOST_ACTIONS else PAUSE_S)))
    instances = {Target.GATEWAY: topology.gateways, Target.WORKER: topology.workers}
    instance = rng.randrange(instances.get(target, 1))
    step = 0.0
    if action is Action.CLOCK_STEP:
        step = rng.choice((-1, 1)) * rng.uniform(*STEP_S)
    return Fault(round(at, 1), action, target, round(hold, 1), instance, step_s=round(step))


def _cost(fault: Fault) -> float:
    """About how long ``fault`` takes from its start until it is repaired."""
    if fault.action in (Action.PAUSE, Action.LONG_PAUSE):
        return fault.hold_s + 0.5
    if fault.target in KAFKA_NODES:  # cut off or killed, a node must rejoin and catch up
        return fault.hold_s + COST_S[fault.target]
    if fault.action in NETWORK_ACTIONS or fault.action is Action.CLOCK_STEP:
        return fault.hold_s + 3.0
    return fault.hold_s + COST_S[fault.target]


def pairs_for(topology: Topology) -> list[Step]:
    """The ``OVERLAPPING`` pairs whose two kinds both apply to ``topology``."""
    return [
        (first[0], second[0])
        for pair in OVERLAPPING
        if len(first := kinds_for(pair[:1], topology)) == 1
        and len(second := kinds_for(pair[1:], topology)) == 1
    ]


def missing_kinds(
    faults: Sequence[Fault],
    topology: Topology = Topology(),
) -> list[Step]:
    """Required kinds, and pairs, a schedule lacks (a run too short to inject them all)."""
    present = {(f.action, f.target) for f in faults}
    together = {
        ((a.action, a.target), (b.action, b.target))
        for a, b in itertools.pairwise(faults)
        if b.overlaps
    }
    missing: list[Step] = [(k,) for k in kinds_for(REQUIRED, topology) if k not in present]
    return missing + [pair for pair in pairs_for(topology) if pair not in together]
