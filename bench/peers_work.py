"""The work every peer of ``bench.peers`` does per record, and what it hands back.

Our worker's projections, reduced to what the peers are compared on: per device the event
count and the latest value of each metric, a repeated ``seq`` dropped, and per device and
metric the 1-minute and 1-hour tumbling windows (count, sum, min, max). The functions are
plain and take and return JSON-shaped values (lists, dicts, numbers), so each framework keeps
them in its own state store; how a framework runs them is in ``bench.peer_quix`` and
``bench.peer_bytewax``. A peer reports an :class:`Outcome`, which ``bench.peers_log`` holds
against the oracle.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.avro import AvroSchema, decode
from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.decoding import telemetry_reader
from streams.projections import SeqWindow
from streams.projections.windows import DEFAULT_WINDOWS

WINDOWS = {spec.name: spec for spec in DEFAULT_WINDOWS}
"""Our worker's window sizes and grace periods; the peers use the same."""

MAX_GAPS = SeqWindow().max_gaps

WindowKey = tuple[str, str, int, int]
"""device id, metric, window size (ms), window start (ms)"""
WindowValue = tuple[int, float, float, float]
"""count, sum, min, max"""
DeviceValue = tuple[int, dict[str, tuple[float, int]]]
"""event count, and per metric the latest value and its event time"""


class OneSchema:
    """The writer schemas of a log written with one registered schema: what a peer's
    deserializer with a warm registry cache answers, without a registry round trip."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id, self.schema = schema_id, telemetry_reader()

    def writer_schema(self, schema_id: int) -> AvroSchema | None:
        return self.schema if schema_id == self.schema_id else None

    def record(self, frame: bytes) -> dict[str, Any]:
        """A Confluent-framed telemetry value as its record (the decoder our worker uses)."""
        return dict(decode(frame, self, reader=self.schema))


def admit(seen: Sequence[Any] | None, seq: int) -> list[Any] | None:
    """The device's sequence window after ``seq``, or None when ``seq`` was seen already.

    ``seen`` is ``[newest seq, [[first, last] of each gap below it]]``, the shape our worker
    keeps (a floor and at most ``MAX_GAPS`` gaps, oldest dropped first): a seq above the
    newest opens a gap for what it skipped, one inside a gap fills it, any other is a repeat.
    """
    if seen is None:
        return [seq, []]
    newest, gaps = seen[0], seen[1]
    if seq > newest:
        opened = [*gaps, [newest + 1, seq - 1]] if seq > newest + 1 else list(gaps)
        return [seq, opened[-MAX_GAPS:]]
    for index, (low, high) in enumerate(gaps):
        if low <= seq <= high:
            split = [part for part in ([low, seq - 1], [seq + 1, high]) if part[0] <= part[1]]
            return [newest, [*gaps[:index], *split, *gaps[index + 1 :]]]
    return None


def summarize(summary: Sequence[Any] | None, ts: int, metrics: Mapping[str, float]) -> list[Any]:
    """The device's ``[event count, {metric: [latest value, its ts]}]`` after one event; a
    value replaces the latest unless it is older (non-finite values are skipped)."""
    count, latest = (0, {}) if summary is None else (summary[0], dict(summary[1]))
    for name, value in metrics.items():
        if math.isfinite(value):
            current = latest.get(name)
            if current is None or ts >= current[1]:
                latest[name] = [value, ts]
    return [count + 1, latest]


def fold(
    window: Mapping[str, Sequence[float]] | None, metrics: Mapping[str, float]
) -> dict[str, list[float]]:
    """One device's window ``{metric: [count, sum, min, max]}`` with one more event."""
    out = {} if window is None else dict(window)
    for name, value in metrics.items():
        if not math.isfinite(value):
            continue
        agg = out.get(name)
        if agg is None:
            out[name] = [1, value, value, value]
        else:
            out[name] = [agg[0] + 1, agg[1] + value, min(agg[2], value), max(agg[3], value)]
    return out


@dataclass
class Outcome:
    """What a system computed; equal outcomes are equal projections."""

    devices: dict[str, DeviceValue] = field(default_factory=dict)
    windows: dict[WindowKey, WindowValue] = field(default_factory=dict)

    def device(self, device_id: str, summary: Sequence[Any]) -> None:
        """Records a device's newest summary (``summarize``'s shape)."""
        latest = {name: (float(v), int(ts)) for name, (v, ts) in summary[1].items()}
        self.devices[device_id] = (int(summary[0]), latest)

    def window(
        self, device_id: str, size_ms: int, start_ms: int, window: Mapping[str, Sequence[float]]
    ) -> None:
        """Records a window's newest aggregates (``fold``'s shape)."""
        for name, (count, total, low, high) in window.items():
            key = (device_id, name, size_ms, start_ms)
            self.windows[key] = (int(count), float(total), float(low), float(high))

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": [[d, c, latest] for d, (c, latest) in sorted(self.devices.items())],
            "windows": [[*k, *v] for k, v in sorted(self.windows.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        outcome = cls()
        for device_id, count, latest in data["devices"]:
            outcome.device(device_id, [count, latest])
        for device_id, name, size, start, count, total, low, high in data["windows"]:
            outcome.windows[(device_id, name, size, start)] = (count, total, low, high)
        return outcome


class Stopwatch:
    """Wall and CPU time from a peer's first record to ``stop``: start-up, the group join
    and state recovery are not counted, the final commit is."""

    def __init__(self) -> None:
        self.records = 0
        self.started: tuple[float, float] | None = None
        self.stopped: tuple[float, float] | None = None

    def tick(self) -> int:
        """Counts one record read (repeats included); returns the count so far."""
        if self.started is None:
            self.started = (time.perf_counter(), time.process_time())
        self.records += 1
        return self.records

    def stop(self) -> None:
        self.stopped = (time.perf_counter(), time.process_time())

    def report(self, outcome: Outcome) -> dict[str, Any]:
        assert self.started is not None, "no record was read"
        assert self.stopped is not None, "stop() was not called"
        seconds = self.stopped[0] - self.started[0]
        cpu = self.stopped[1] - self.started[1]
        return {
            "records": self.records,
            "seconds": round(seconds, 3),
            "events_per_s": round(self.records / seconds),
            "cpu_pct_of_one_core": round(100 * cpu / seconds, 1),
            "outcome": outcome.to_json(),
        }


def peer_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every peer process takes from ``bench.peers``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema-id", type=int, required=True)
    parser.add_argument("--records", type=int, required=True, help="records in the topic")
    parser.add_argument("--group", required=True, help="consumer group / run name")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the report goes (JSON)")
    return parser


def stack_kafka() -> KafkaClientSettings:
    """The dev stack's Kafka, as the bench principal (admin) logs in: the environment
    (``IOT_LOCAL_DIR``, ports) says which stack."""
    return kafka_client(DevStackSettings.from_env())


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report) + "\n", encoding="utf-8")
