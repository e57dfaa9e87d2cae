"""What each fault cost in availability: how long readings went unacknowledged and unapplied.

Ingest is judged per partition from the devices' PUBACK timeline (the simulator's ledger,
dated to the sampling period): a partition's readings come from some fifty devices at once,
so a gap between two of its PUBACKs is a stall of the platform, not a device resting. The
worst partition gives a fault's *ingest stall*: the longest such gap that overlaps the fault's
window (from its start until it was repaired and ``SETTLE_S`` more, or the next fault),
counted from the fault's start. The
*applied stall* is the same over the worker's positions, sampled; it includes waiting for
ingest. *Recovered after* is when the last gap longer than ``GAP_S`` in the window ended,
counted from the fault's start.

In a Kafka cluster the target is the issue's: one node lost or isolated costs at most
``CLUSTER_STALL_S`` of ingest stall (and, checked elsewhere, no acknowledged reading).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.partitioning import partition_for
from tests.faults.checker import GOOD_KINDS, Ack, Status, Verdict

SETTLE_S = 10.0
"""How long after its repair a fault's window stays open (clients reconnect, leaders move)."""
GAP_S = 1.0
"""A partition without a PUBACK for longer than this is stalled (its devices send 5/s)."""
CLUSTER_STALL_S = 10.0
"""The longest ingest stall one lost or isolated Kafka node may cause in a cluster."""


@dataclass(frozen=True, slots=True)
class FaultSpan:
    """One injected fault, on ``time.monotonic()``'s clock."""

    label: str
    started: float
    repaired: float
    kafka_node: bool
    """Whether the fault hit a Kafka node (the cluster target applies)."""
    overlaps: bool = False
    """Started while the fault before it held: both are charged the stalls of their joint
    window."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What one fault cost."""

    label: str
    started_s: float
    """Since the load started."""
    ingest_stall_s: float
    applied_stall_s: float
    recovered_after_s: float
    kafka_node: bool

    def as_json(self) -> dict[str, object]:
        return {
            "fault": self.label,
            "started_s": round(self.started_s, 1),
            "ingest_stall_s": round(self.ingest_stall_s, 1),
            "applied_stall_s": round(self.applied_stall_s, 1),
            "recovered_after_s": round(self.recovered_after_s, 1),
        }


AppliedSample = tuple[float, Mapping[int, int]]
"""(monotonic time, each partition's applied position)."""


def ack_times(acks: Sequence[Ack], partitions: int) -> dict[int, list[float]]:
    """When each telemetry partition's readings were acknowledged, in order (each PUBACK
    dated by the sample that first counted it)."""
    times: dict[int, list[float]] = {p: [] for p in range(partitions)}
    for ack in acks:
        if ack.kind in GOOD_KINDS:
            times[partition_for(ack.device_id, partitions)].append(ack.by)
    for series in times.values():
        series.sort()
    return times


def applied_times(samples: Sequence[AppliedSample]) -> dict[int, list[float]]:
    """When each partition's applied position was seen to move."""
    times: dict[int, list[float]] = {}
    last: dict[int, int] = {}
    for at, positions in samples:
        for partition, position in positions.items():
            if position != last.get(partition):
                times.setdefault(partition, []).append(at)
                last[partition] = position
    return times


def _gaps(series: Sequence[float], begin: float, end: float) -> list[tuple[float, float]]:
    """The gaps between consecutive times of ``series`` that overlap ``[begin, end]``; with
    no time at all after ``begin``, the gap runs to ``end``."""
    first = max(bisect.bisect_left(series, begin) - 1, 0)
    points = [t for t in series[first:] if t <= end]
    if not points or points[-1] < end:
        points.append(end)
    if points[0] > begin:
        points.insert(0, begin)
    return [(a, b) for a, b in itertools.pairwise(points) if b > begin and a < end]


def _window_gaps(
    times: Mapping[int, Sequence[float]], begin: float, end: float
) -> list[tuple[float, float]]:
    """Every partition's gaps overlapping ``[begin, end]``."""
    return [gap for series in times.values() for gap in _gaps(series, begin, end)]


def _longest(gaps: Sequence[tuple[float, float]], begin: float) -> float:
    """The longest gap, counted from ``begin`` at the earliest: a stall an earlier fault
    began is that fault's until this one starts."""
    return max((b - max(a, begin) for a, b in gaps), default=0.0)


def costs(
    faults: Sequence[FaultSpan],
    acked: Mapping[int, Sequence[float]],
    applied: Mapping[int, Sequence[float]],
    load_started: float,
    load_ended: float,
) -> list[Cost]:
    """Each fault's cost (module doc), its window closed by the next fault's start."""
    found = []
    for index, fault in enumerate(faults):
        begin = fault.started
        end = min(fault.repaired + SETTLE_S, load_ended)
        after = [later for later in faults[index + 1 :] if not later.overlaps]
        if after:
            end = min(end, after[0].started)
        end = max(end, begin)
        ingest = _window_gaps(acked, begin, end)
        stalls = [b for a, b in ingest if b - a > GAP_S]
        found.append(
            Cost(
                fault.label,
                begin - load_started,
                _longest(ingest, begin),
                _longest(_window_gaps(applied, begin, end), begin),
                max(stalls, default=begin) - begin,
                fault.kafka_node,
            )
        )
    return found


def check_cluster_availability(found: Sequence[Cost]) -> Verdict:
    """Every fault on one Kafka node of a cluster stalled ingest for at most
    ``CLUSTER_STALL_S``."""
    kafka = [cost for cost in found if cost.kafka_node]
    over = [cost for cost in kafka if cost.ingest_stall_s > CLUSTER_STALL_S]
    worst = max((cost.ingest_stall_s for cost in kafka), default=0.0)
    return Verdict(
        "one_kafka_node_lost_stalls_ingest_briefly",
        Status.FAIL if over or not kafka else Status.PASS,
        f"{len(kafka)} fault(s) on one Kafka node: longest ingest stall {worst:.1f}s "
        f"(target <= {CLUSTER_STALL_S:.0f}s), {len(over)} over",
        {"faults": len(kafka), "over": len(over), "longest_ingest_stall_ms": round(worst * 1000)},
        tuple(
            f"{cost.label} at t+{cost.started_s:.0f}s: {cost.ingest_stall_s:.1f}s" for cost in over
        ),
    )


def format_costs(found: Sequence[Cost]) -> str:
    """A table of what each fault cost."""
    rows = [
        f"{cost.label:<32} t+{cost.started_s:5.1f}s  {cost.ingest_stall_s:10.1f}s  "
        f"{cost.applied_stall_s:11.1f}s  {cost.recovered_after_s:7.1f}s"
        for cost in found
    ]
    header = "fault                              at     ingest stall  applied stall  recovered"
    return "\n".join([header, *rows])
