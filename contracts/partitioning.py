"""Key to partition: the rule by which a device's records land on one partition.

Kafka's default partitioner (the Java client's, aiokafka's and librdkafka's
``murmur2_random``): murmur2 of the key bytes, made positive, modulo the partition count.
The gateway produces with it and the query API finds a device's partition with it, so a
strong read waits on the partition that holds the device's records.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) Kafka's default partitioner gives ``key``."""
    data = key.encode() if isinstance(key, str) else key
    return int(murmur2(data) & 0x7FFFFFFF) % partitions
