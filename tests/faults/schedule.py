"""The fault schedule: (time, fault) steps, random but fully determined by a seed.

Every kind of fault appears at least once (in a seeded order), then random ones fill the
run; a failing run is repeated with ``--seed``. Faults do not overlap: a step whose time
comes while the previous fault is still being repaired waits for it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


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

    @property
    def label(self) -> str:
        """What and whom, e.g. ``kill -9 gateway-2``."""
        who = f"{self.target}-{self.instance + 1}" if self.target is Target.GATEWAY else self.target
        if self.action is Action.KILL_WITH_BACKLOG:
            return f"{Action.KILL} {who} with a backlog"
        return f"{self.action} {who}"

    def __str__(self) -> str:
        verb = {Action.KILL: "dead", Action.PAUSE: "frozen"}.get(self.action, "gateways frozen")
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
)
"""Each fault the suite must inject at least once per run."""

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

COST_S = {
    Target.GATEWAY: 2.0,
    Target.WORKER: 3.0,
    Target.KAFKA: 12.0,
    Target.KAFKA_LEADER: 12.0,
    Target.KAFKA_CONTROLLER: 12.0,
    Target.MOSQUITTO: 4.0,
}
"""About how long a kill of each target takes to repair (restart and ready), for spacing."""

PAUSE_S = (2.0, 5.0)
"""Pauses stay below the clients' request timeouts (MQTT publish 15 s, Kafka 30 s)."""


def kinds_for(
    mode: str, kinds: Sequence[tuple[Action, Target]], brokers: int = 1
) -> list[tuple[Action, Target]]:
    """``kinds`` that apply to a gateway ``mode`` and a Kafka of ``brokers`` nodes: in direct
    mode there is no Mosquitto; in a cluster a Kafka fault hits the partition leader and,
    as another kind, the active controller."""
    applying = []
    for action, target in kinds:
        if target is Target.MOSQUITTO and mode != "bridge":
            continue
        if target is Target.KAFKA and brokers > 1:
            applying += [(action, Target.KAFKA_LEADER), (action, Target.KAFKA_CONTROLLER)]
        else:
            applying.append((action, target))
    return applying


def make_schedule(
    seed: int,
    duration_s: float,
    *,
    mode: str = "direct",
    gateways: int = 2,
    brokers: int = 1,
    start_s: float = 8.0,
    gap_s: tuple[float, float] = (4.0, 8.0),
    quiet_tail_s: float = 10.0,
) -> list[Fault]:
    """The faults of one run: every kind in ``REQUIRED`` once, then random ``EXTRA`` ones,
    spaced by ``gap_s`` plus each fault's own repair time, all starting before
    ``duration_s - quiet_tail_s`` (the load's last seconds run without faults)."""
    rng = random.Random(seed)
    kinds = kinds_for(mode, REQUIRED, brokers)
    extra = kinds_for(mode, EXTRA, brokers)
    rng.shuffle(kinds)
    faults: list[Fault] = []
    at = start_s
    while True:
        action, target = kinds.pop(0) if kinds else rng.choice(extra)
        hold = rng.uniform(0.2, 2.5) if action is Action.KILL else rng.uniform(*PAUSE_S)
        cost = hold + (0.5 if action is Action.PAUSE else COST_S[target])
        if at + cost > duration_s - quiet_tail_s:
            break
        instance = rng.randrange(gateways) if target is Target.GATEWAY else 0
        faults.append(Fault(round(at, 1), action, target, round(hold, 1), instance))
        at += cost + rng.uniform(*gap_s)
    return faults


def missing_kinds(
    faults: Sequence[Fault], mode: str = "direct", brokers: int = 1
) -> list[tuple[Action, Target]]:
    """Required kinds a schedule lacks (a run too short to inject them all)."""
    present = {(f.action, f.target) for f in faults}
    return [kind for kind in kinds_for(mode, REQUIRED, brokers) if kind not in present]
