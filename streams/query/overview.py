"""The fleet overview's hour of ingest: rates and freshness sampled from the telemetry log.

Every ``every_s`` the query API notes the telemetry topic's end offsets (what the gateways
wrote: every acknowledged reading) and the offsets the store applied, summed over the
partitions. Two successive samples give the ingest rate, the apply rate and, from the lag at
the later one, the acknowledged-to-applied freshness estimate ``lag / apply rate`` (the
Grafana dashboard's figure): how long the store needs for what is acknowledged but not yet
applied. The samples of the last ``span_s`` are kept, in memory, per worker; a worker that
just started has a short history.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.times import time_fields
from streams.query.positions import LogPositions

__all__ = ["IngestSample", "IngestSamples", "sample_ingest", "sample_of"]

log = logging.getLogger("streams.query")


@dataclass(frozen=True, slots=True)
class IngestSample:
    """The telemetry log at one moment, summed over its partitions."""

    time_ms: int
    written: int
    """Records in the log: the sum of the end offsets."""
    applied: int
    """Records the store applied: the sum of (last applied offset + 1)."""

    @property
    def lag(self) -> int:
        return max(0, self.written - self.applied)


def sample_of(time_ms: int, applied: Mapping[int, int], end: Mapping[int, int]) -> IngestSample:
    """A sample from one answer's positions (applied: last offset applied, -1 for none)."""
    return IngestSample(time_ms, sum(end.values()), sum(o + 1 for o in applied.values()))


class IngestSamples:
    """The samples of the last ``span_s`` seconds, oldest first, and the rates between them."""

    def __init__(self, span_s: float = 3600.0, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._span_ms = round(span_s * 1000)
        self._samples: deque[IngestSample] = deque()

    def add(self, sample: IngestSample) -> None:
        """Keeps ``sample``; samples older than the span before it are dropped."""
        self._samples.append(sample)
        while self._samples[0].time_ms < sample.time_ms - self._span_ms:
            self._samples.popleft()

    def series(self) -> list[dict[str, object]]:
        """One point per pair of successive samples, at the later one's time: records per
        second written to the log and applied, the lag, and the freshness estimate in seconds
        (null while nothing is applied and something waits: no rate to divide by)."""
        points: list[dict[str, object]] = []
        for before, after in itertools.pairwise(self._samples):
            seconds = (after.time_ms - before.time_ms) / 1000
            if seconds <= 0:
                continue
            applied_per_s = max(0, after.applied - before.applied) / seconds
            freshness = after.lag / applied_per_s if applied_per_s else None
            points.append(
                {
                    **time_fields("time", after.time_ms),
                    "ingest_per_s": round(max(0, after.written - before.written) / seconds, 3),
                    "applied_per_s": round(applied_per_s, 3),
                    "lag": after.lag,
                    "freshness_s": 0.0 if after.lag == 0 else _rounded(freshness),
                }
            )
        return points


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def sample_ingest(
    samples: IngestSamples,
    positions: LogPositions,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Adds a sample every ``samples.every_s`` until cancelled; a failed read is logged and
    skipped (the next sample's rate then spans the gap)."""
    partitions = list(range(positions.partitions))
    while True:
        try:
            reflects = await positions.eventual(partitions)
        except Exception as exc:  # a sample is worth a log line, never the task
            log.warning("overview: no ingest sample: %s", exc)
        else:
            samples.add(sample_of(int(clock() * 1000), reflects.applied, reflects.end))
        await asyncio.sleep(samples.every_s)
