"""PUBACKs in the order the PUBLISH packets arrived, each only once its record is durable.

MQTT requires a receiver to acknowledge QoS 1 messages in arrival order. Kafka acknowledges
records of different partitions in any order, so completions are held until every earlier
message is complete too, then released as one in-order run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Slot:
    mid: int
    done: bool = False


class AckWindow:
    """Tracks messages from arrival to PUBACK for one MQTT connection.

    ``admit`` a message when it arrives, ``complete`` it when its record (or DLQ record) is
    acknowledged by Kafka. ``send_ack`` is called for each releasable mid, in arrival order.
    A new connection needs a new window: mids are per connection.
    """

    def __init__(self, send_ack: Callable[[int], object]) -> None:
        self._send_ack = send_ack
        self._slots: deque[_Slot] = deque()
        self.acked = 0

    def __len__(self) -> int:
        """Messages admitted and not acknowledged yet (in flight)."""
        return len(self._slots)

    def admit(self, mid: int) -> _Slot:
        slot = _Slot(mid)
        self._slots.append(slot)
        return slot

    def complete(self, slot: _Slot) -> None:
        slot.done = True
        slots = self._slots
        while slots and slots[0].done:
            self._send_ack(slots.popleft().mid)
            self.acked += 1
