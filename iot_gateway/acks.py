"""PUBACKs in the order the PUBLISH packets arrived, each only once its record is durable.

MQTT requires a receiver to acknowledge QoS 1 messages in arrival order. Kafka acknowledges
records of different partitions in any order, so completions are held until every earlier
message is complete too, then released as one in-order run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Ack = TypeVar("Ack")


@dataclass(slots=True)
class Slot(Generic[Ack]):
    ack: Ack
    done: bool = False


class AckWindow(Generic[Ack]):
    """Tracks messages from arrival to PUBACK for one MQTT connection.

    ``admit`` a message with what acknowledges it (the bridge: its mid; the edge: the
    PUBACK or PUBREC packet) when it arrives, ``complete`` it when its record (or DLQ record)
    is acknowledged by Kafka. ``send_ack`` is called for each releasable ack, in arrival
    order. A new connection needs a new window: packet ids are per connection.
    """

    def __init__(self, send_ack: Callable[[Ack], object]) -> None:
        self._send_ack = send_ack
        self._slots: deque[Slot[Ack]] = deque()
        self.acked = 0

    def __len__(self) -> int:
        """Messages admitted and not acknowledged yet (in flight)."""
        return len(self._slots)

    def admit(self, ack: Ack) -> Slot[Ack]:
        slot = Slot(ack)
        self._slots.append(slot)
        return slot

    def complete(self, slot: Slot[Ack]) -> None:
        slot.done = True
        slots = self._slots
        while slots and slots[0].done:
            self._send_ack(slots.popleft().ack)
            self.acked += 1
