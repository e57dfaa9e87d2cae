"""The inbox's in-memory side: per-partition offsets.

An event at or below its partition's stored offset was applied already (a redelivery at the
same offset after a crash or a rebalance) and is skipped. Redeliveries at *other* offsets
(an MQTT resend after a lost PUBACK, a gateway retry) are recognised per device: by its
sequence window for events with ``seq``, by the ids of its recent readings otherwise (see
:mod:`streams.projections.device`).
"""

from __future__ import annotations

__all__ = ["PartitionInbox"]


class PartitionInbox:
    """Offsets of one partition: ``committed`` is in the store, ``offset`` includes this batch.

    ``-1`` means nothing applied yet (Kafka offsets start at 0).
    """

    __slots__ = ("committed", "offset")

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.offset = committed
