"""Reading the Kafka log directly: own consumer, assigned partitions, explicit offsets.

Push subscriptions and the alert history read the log itself rather than the store: a log
position (partition, offset) is exact, so resuming after it gives no gap and no duplicate, and
any worker can serve any stream (no consumer group, nothing to rebalance). Fetches are kept
small (``fetch_bytes`` per partition), which bounds the memory one reader holds; the reader
only fetches when asked, so a slow client slows its reader instead of filling a buffer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings
from streams.query.errors import BadParameterError

__all__ = ["LogReader", "format_vector", "gaps", "parse_vector"]

_OFFSET = re.compile(r"-?[0-9]{1,19}")


def parse_vector(raw: str, parameter: str, partitions: Iterable[int]) -> dict[int, int]:
    """``"p:o,p:o"`` (a log position per partition) for exactly ``partitions``."""
    wanted = set(partitions)
    vector: dict[int, int] = {}
    for part in raw.split(","):
        p, sep, o = part.strip().partition(":")
        if not sep or not p.isdecimal() or len(p) > 9 or not _OFFSET.fullmatch(o):
            raise BadParameterError(parameter, f"expected partition:offset[,...], got {raw[:60]!r}")
        partition, offset = int(p), int(o)
        if partition in vector or offset < -1:
            raise BadParameterError(parameter, f"repeated partition or offset < -1 in {raw[:60]!r}")
        vector[partition] = offset
    if set(vector) != wanted:
        raise BadParameterError(
            parameter, f"must name exactly the partitions {sorted(wanted)} of this stream"
        )
    return vector


def format_vector(vector: Mapping[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(vector.items()))


def gaps(requested: Mapping[int, int], starts: Mapping[int, int]) -> list[dict[str, int]]:
    """Ranges ``[from, to)`` of offsets asked for (``requested``) that the log no longer has
    (``starts``: what :meth:`LogReader.seek` started from), per partition."""
    return [
        {"partition": p, "from": requested[p], "to": starts[p]}
        for p in sorted(requested)
        if p in starts and requested[p] < starts[p]
    ]


class LogReader:
    """One topic's chosen partitions from chosen offsets; use as an async context manager."""

    def __init__(self, kafka: KafkaClientSettings, topic: str, *, fetch_bytes: int = 262_144):
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            # A position retention removed reads on from the first retained record (never
            # from the end: that would skip records silently); seek() reports such gaps.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=4 * fetch_bytes,
            **kafka.aiokafka_kwargs(),
        )

    async def __aenter__(self) -> LogReader:
        """Starts the consumer; if that fails, it is stopped again before the error rises."""
        try:
            await self._consumer.start()
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    def _tps(self, partitions: Iterable[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in partitions]

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        found = await self._consumer.end_offsets(self._tps(partitions))
        return {tp.partition: offset for tp, offset in found.items()}

    async def offsets_at(self, partitions: Sequence[int], at_ms: int) -> dict[int, int]:
        """The first offset at or after ``at_ms`` per partition (the end if none)."""
        tps = self._tps(partitions)
        stamped = await self._consumer.offsets_for_times(dict.fromkeys(tps, at_ms))
        ends = await self._consumer.end_offsets(tps)
        return {
            tp.partition: (stamped[tp].offset if stamped[tp] is not None else ends[tp])
            for tp in tps
        }

    async def seek(self, starts: Mapping[int, int]) -> dict[int, int]:
        """Assigns the partitions and positions each at its start offset (the next to read).

        Returns the offsets actually started from: a start before the log's first retained
        offset (retention removed it) reads from that first offset, and the caller sees the
        difference (records it will never get).
        """
        tps = self._tps(starts)
        self._consumer.assign(tps)
        firsts = await self._consumer.beginning_offsets(tps)
        actual: dict[int, int] = {}
        for tp in tps:
            actual[tp.partition] = max(starts[tp.partition], firsts[tp])
            self._consumer.seek(tp, actual[tp.partition])
        return actual

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]:
        """The next records as (partition, ConsumerRecord), in offset order per partition."""
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [(tp.partition, record) for tp, records in fetched.items() for record in records]

    async def behind(self, partitions: Iterable[int]) -> int | None:
        """How many records the reader still has to read (against the last known high water);
        None until a fetch told the high water of every partition."""
        lag = 0
        for tp in self._tps(partitions):
            high = self._consumer.highwater(tp)
            if high is None:
                return None
            lag += max(0, high - await self._consumer.position(tp))
        return lag
