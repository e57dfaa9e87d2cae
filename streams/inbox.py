"""The inbox's in-memory side: per-partition offsets and the bounded recent-id set.

Events that carry ``seq`` are de-duplicated exactly by the device's sequence window
(:mod:`streams.projections.device`). Events without ``seq`` (their ``event_id`` is a content
hash) are de-duplicated by :class:`RecentIds`: the ids of the last ``capacity`` such events
applied on the partition, first in, first out.

Why the bound is safe: a duplicate that reaches the log at a *different offset* comes from
upstream redelivery (an MQTT QoS 1 resend after a lost PUBACK, a gateway retry), and upstream
resends only what is still in flight, so the copy lands on the same partition (key =
device id) within a bounded distance of the original: at most the broker's in-flight window
per session times the number of gateways. ``capacity`` (65,536 by default) must exceed that
distance; redeliveries at the *same* offset (consumer crash, rebalance) are caught exactly by
the stored offset, whatever the distance. The set is stored as a ring of ``capacity`` slots
per partition, so its table never grows beyond that.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PartitionInbox", "RecentIds"]


class RecentIds:
    """The ids of the last ``capacity`` seq-less events applied on one partition (a ring)."""

    __slots__ = ("_index", "_new", "_slots", "capacity", "count")

    def __init__(self, capacity: int, count: int = 0, entries: Iterable[tuple[int, str]] = ()):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.count = count
        self._slots: list[str | None] = [None] * capacity
        self._index: dict[str, int] = {}
        self._new: dict[int, tuple[int, str]] = {}
        oldest = count - capacity
        for n, event_id in sorted(entries):
            if oldest <= n < count:
                slot = n % capacity
                previous = self._slots[slot]
                if previous is not None:
                    self._index.pop(previous, None)
                self._slots[slot] = event_id
                self._index[event_id] = n

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def add(self, event_id: str) -> None:
        """Records ``event_id`` as applied, evicting the oldest id when the ring is full."""
        n = self.count
        slot = n % self.capacity
        previous = self._slots[slot]
        if previous is not None:
            del self._index[previous]
        self._slots[slot] = event_id
        self._index[event_id] = n
        self._new[slot] = (n, event_id)
        self.count = n + 1

    def take_new(self) -> list[tuple[int, int, str]]:
        """(slot, n, event_id) of the slots written since the last take, then forgets them."""
        rows = [(slot, n, event_id) for slot, (n, event_id) in self._new.items()]
        self._new.clear()
        return rows


class PartitionInbox:
    """Offsets of one partition: ``committed`` is in the store, ``offset`` includes this batch.

    ``-1`` means nothing applied yet (Kafka offsets start at 0).
    """

    __slots__ = ("committed", "offset", "recent")

    def __init__(self, committed: int, recent: RecentIds) -> None:
        self.committed = committed
        self.offset = committed
        self.recent = recent
