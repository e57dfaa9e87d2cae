"""The telemetry topic's partition layout over its history, as the store records it.

Exactly-once rests on one writer per device: a device's records must all come on one
partition, the one the platform's partitioner (:func:`contracts.partitioning.partition_for`)
gives its id. Two things break that, and both are refused:

* **A partition count the store did not plan.** Adding partitions moves devices to other
  partitions, whose owner may be another worker, while their older records may still be
  unapplied on the old one. A worker finding the topic with another count than its store's
  layout refuses to apply anything (:class:`~streams.errors.PartitionLayoutError`) until
  ``iotctl replay repartition`` adds the partitions: it does so only once every worker
  applied every record (nothing of the old layout is pending), and records from which offset
  of each partition the new count applies.
* **A record on the wrong partition** (a producer with another partitioner, e.g. librdkafka's
  default ``consistent_random``): judged against the count in force at its offset, it is not
  applied but skipped and counted (``misrouted``); it stays in the log for ``replay copy``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from contracts.partitioning import partition_for

__all__ = ["MAX_PERIOD", "PartitionLayout"]

MAX_PERIOD = 1_000_000
"""Above this least common multiple of the counts, :meth:`PartitionLayout.sharing` does not
walk the residues and keeps all partitions in one group."""


@dataclass(frozen=True, slots=True)
class PartitionLayout:
    """Partition counts in force over the log: ``epochs[i]`` is (count, first offset per
    partition from which it applies; a partition not named: from its first record)."""

    epochs: tuple[tuple[int, Mapping[int, int]], ...]

    def __post_init__(self) -> None:
        if not self.epochs or any(count < 1 for count, _ in self.epochs):
            raise ValueError("a layout needs at least one partition count, each >= 1")

    @classmethod
    def single(cls, partitions: int) -> PartitionLayout:
        return cls(((partitions, MappingProxyType({})),))

    @property
    def partitions(self) -> int:
        """The partition count in force now."""
        return self.epochs[-1][0]

    def count_at(self, partition: int, offset: int) -> int:
        """The partition count in force for the record at ``offset`` of ``partition``."""
        for count, starts in reversed(self.epochs):
            if offset >= starts.get(partition, 0):
                return count
        return self.epochs[0][0]

    def routes(self, device_id: str, partition: int, offset: int) -> bool:
        """True when the platform's partitioner puts ``device_id`` on ``partition`` under
        the count in force at ``offset``."""
        return partition_for(device_id, self.count_at(partition, offset)) == partition

    def grown(self, partitions: int, ends: Mapping[int, int]) -> PartitionLayout:
        """This layout with ``partitions`` in force from the offsets ``ends`` on (the end
        offsets of the old partitions when the partitions are added)."""
        if partitions <= self.partitions:
            raise ValueError(f"{partitions} partitions is not more than {self.partitions}")
        return PartitionLayout((*self.epochs, (partitions, MappingProxyType(dict(ends)))))

    def sharing(self) -> list[list[int]]:
        """The partitions in groups that may hold records of one device (under different
        counts): a rebuild split between processes keeps each group in one of them. One
        group per partition while the count never changed."""
        counts = sorted({count for count, _ in self.epochs})
        period = math.lcm(*counts)
        parent = list(range(self.partitions))

        def root(p: int) -> int:
            while parent[p] != p:
                parent[p] = parent[parent[p]]
                p = parent[p]
            return p

        if period > MAX_PERIOD:  # too many residues to walk: keep every partition together
            return [list(range(self.partitions))]
        for residue in range(period if len(counts) > 1 else 0):
            first = root(residue % counts[0])
            for count in counts[1:]:
                parent[root(residue % count)] = first
        groups: dict[int, list[int]] = {}
        for p in range(self.partitions):
            groups.setdefault(root(p), []).append(p)
        return sorted(groups.values())

    def to_json(self) -> str:
        return json.dumps(
            [
                [count, {str(p): o for p, o in sorted(starts.items())}]
                for count, starts in self.epochs
            ]
        )

    @classmethod
    def from_json(cls, text: str) -> PartitionLayout:
        return cls(
            tuple(
                (int(count), MappingProxyType({int(p): int(o) for p, o in starts.items()}))
                for count, starts in json.loads(text)
            )
        )
