"""A test oracle for the stream projections, and the helpers that build logs and replay them.

The oracle computes device state, windows, alerts and derived events *directly* from the
de-duplicated log (each event id once, exact, unbounded), in the simplest way that follows the
documented semantics; the processor (bounded inbox, write-through cache, store) must agree
with it. Imported by the property and contract tests; the tests here check the oracle itself
on hand-written logs.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streams import BatchProcessor, BatchResult, Position, TelemetryEvent
from streams.domain import DerivedEvent
from streams.projections import (
    AlertRule,
    AlertState,
    DeviceState,
    LatestValue,
    SeqWindow,
    WindowAggregate,
    WindowSpec,
    alert_event,
)

TOPIC = "iot.telemetry.v1"
BASE_TS = 1_700_000_000_000
WINDOWS = (WindowSpec("10s", 10_000, 2_000), WindowSpec("1m", 60_000, 15_000))
RULES = (
    AlertRule("temp-high", "temp", "above", 25.0, 20.0),
    AlertRule("hum-low", "hum", "below", 30.0, 35.0),
)
Log = list[tuple[Position, TelemetryEvent]]


def event(
    device_id: str,
    ts: int,
    seq: int | None = None,
    event_id: str | None = None,
    boot: int | None = None,
    **metrics: float,
) -> TelemetryEvent:
    """A telemetry event; the id follows the gateway's rule (device + boot + seq, else given)."""
    if event_id is None:
        epoch = "" if boot is None else f"{boot}:"
        event_id = f"{device_id}#{epoch}{seq}" if seq is not None else f"{device_id}@{ts}"
    return TelemetryEvent(
        event_id, device_id, BASE_TS + ts, BASE_TS + ts + 1, seq, metrics, boot=boot
    )


def partition_of(device_id: str, partitions: int) -> int:
    return zlib.crc32(device_id.encode()) % partitions


def make_log(
    events: Iterable[TelemetryEvent],
    partitions: int = 2,
    partitioner: Callable[[str, int], int] = partition_of,
) -> Log:
    """Positions for events in log order; the partition follows the key (device id)."""
    offsets = [0] * partitions
    log: Log = []
    for item in events:
        part = partitioner(item.device_id, partitions)
        log.append((Position(TOPIC, part, offsets[part]), item))
        offsets[part] += 1
    return log


def apply_in_batches(processor: BatchProcessor, log: Log, size: int) -> list[BatchResult]:
    return [processor.apply(log[i : i + size]) for i in range(0, len(log), size)]


@dataclass
class _Device:
    device_id: str
    first_seen: int
    last_seen: int
    count: int = 0
    seqs: set[int] = field(default_factory=set)
    boot: int | None = None
    seq_resets: int = 0
    restart_ts: int | None = None
    lost: int = 0
    out_of_window: int = 0
    duplicates: int = 0
    invalid_values: int = 0
    late: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, LatestValue] = field(default_factory=dict)

    def state(self, seq_window: SeqWindow) -> DeviceState:
        first = min(self.seqs) if self.seqs else None
        last = max(self.seqs) if self.seqs else None
        gaps: list[tuple[int, int]] = []
        if first is not None and last is not None:
            missing_seqs = [s for s in range(first, last + 1) if s not in self.seqs]
            for s in missing_seqs:
                if gaps and gaps[-1][1] == s - 1:
                    gaps[-1] = (gaps[-1][0], s)
                else:
                    gaps.append((s, s))
        return DeviceState(
            device_id=self.device_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            count=self.count,
            first_seq=first,
            last_seq=last,
            seq_floor=None if last is None else last - seq_window.size + 1,
            gaps=tuple(gaps),
            missing=sum(hi - lo + 1 for lo, hi in gaps),
            lost=self.lost,
            duplicates=self.duplicates,
            out_of_window=self.out_of_window,
            invalid_values=self.invalid_values,
            late=dict(self.late),
            metrics=dict(self.metrics),
            boot=self.boot,
            seq_resets=self.seq_resets,
            restart_ts=self.restart_ts,
        )

    def restart(self) -> None:
        """A new sequence: what the old one missed is lost."""
        if self.seqs:
            self.lost += max(self.seqs) - min(self.seqs) + 1 - len(self.seqs)
        self.seqs = set()
        self.seq_resets += 1

    def admits(self, item: TelemetryEvent) -> bool | None:
        """Whether a sequenced event is new (True), a duplicate (False) or of an older
        sequence (None): exact, per boot; without a boot, a repeated seq with a device time
        later than any seen is a restart, and a device time before that one's is of the
        sequence before it."""
        assert item.seq is not None
        device_dated = item.boot is None and not item.ts_stamped
        if item.boot is not None and item.boot != self.boot:
            if self.boot is not None and item.boot < self.boot:
                return None
            if self.seqs:
                self.restart()
            self.boot, self.restart_ts = item.boot, None
        if device_dated and self.restart_ts is not None and item.ts < self.restart_ts:
            return None
        if item.seq not in self.seqs:
            return True
        if device_dated and item.ts > self.last_seen:
            self.restart()
            self.restart_ts = item.ts
            return True
        return False


@dataclass(frozen=True)
class Expected:
    devices: list[DeviceState]
    windows: list[WindowAggregate]
    alerts: list[AlertState]
    derived: list[DerivedEvent]


def _alerts(
    rules: Sequence[AlertRule],
    states: dict[tuple[str, str], AlertState],
    item: TelemetryEvent,
    name: str,
    value: float,
) -> list[DerivedEvent]:
    """Hysteresis, by hand, for one new current value of metric ``name``."""
    derived = []
    for rule in (r for r in rules if r.metric == name):
        key = (item.device_id, rule.name)
        active = key in states and states[key].active
        above = rule.direction == "above"
        raises = value > rule.raise_at if above else value < rule.raise_at
        clears = value < rule.clear_at if above else value > rule.clear_at
        if (not active and raises) or (active and clears):
            state = AlertState(item.device_id, rule.name, not active, item.ts, value, item.event_id)
            states[key] = state
            derived.append(alert_event(rule, state))
    return derived


def _admitted(device: _Device, item: TelemetryEvent, seen: set[str], horizon_ms: int) -> bool:
    """Whether the event is new; a duplicate, an older boot's event or a reading without seq
    dated beyond the horizon behind the device's newest is counted."""
    new: bool | None
    if item.seq is None:
        if item.ts < device.last_seen - horizon_ms:
            new = None
        else:
            new = item.event_id not in seen
            seen.add(item.event_id)
    else:
        new = device.admits(item)
    if new is None:
        device.out_of_window += 1
    elif not new:
        device.duplicates += 1
    return bool(new)


def oracle(
    events: Iterable[TelemetryEvent],
    windows: Sequence[WindowSpec] = WINDOWS,
    rules: Sequence[AlertRule] = RULES,
    seq_window: SeqWindow | None = None,
) -> Expected:
    """The projections of the log's events (log order, each offset once), de-duplicated."""
    seq_window = seq_window or SeqWindow()
    devices: dict[str, _Device] = {}
    aggregates: dict[tuple[str, str, int, int], list[float]] = {}
    alert_states: dict[tuple[str, str], AlertState] = {}
    derived: list[DerivedEvent] = []
    seen: set[str] = set()
    for item in events:
        device = devices.get(item.device_id)
        if device is None:
            device = devices[item.device_id] = _Device(item.device_id, item.ts, item.ts)
        if not _admitted(device, item, seen, seq_window.horizon_ms):
            continue
        watermark = device.last_seen if device.count else item.ts
        device.count += 1
        device.first_seen = min(device.first_seen, item.ts)
        device.last_seen = max(device.last_seen, item.ts)
        if item.seq is not None:
            device.seqs.add(item.seq)
        open_specs = []
        for spec in windows:
            start = item.ts - item.ts % spec.size_ms
            if start + spec.size_ms + spec.grace_ms <= watermark:
                device.late[spec.name] = device.late.get(spec.name, 0) + 1
            else:
                open_specs.append((spec.size_ms, start))
        for name, value in item.metrics.items():
            if not math.isfinite(value):
                device.invalid_values += 1
                continue
            current = device.metrics.get(name)
            if current is None or item.ts >= current.ts:
                device.metrics[name] = LatestValue(value, item.ts)
                derived += _alerts(rules, alert_states, item, name, value)
            for size, start in open_specs:
                agg = aggregates.setdefault(
                    (item.device_id, name, size, start), [0, value, value, 0.0]
                )
                agg[0] += 1
                agg[1] = min(agg[1], value)
                agg[2] = max(agg[2], value)
                agg[3] = agg[3] + value if agg[0] > 1 else value
    by_size = {spec.size_ms: spec for spec in windows}

    def retained(key: tuple[str, str, int, int]) -> bool:
        through = by_size[key[2]].expired_through(devices[key[0]].last_seen)
        return through is None or key[3] > through

    return Expected(
        devices=[devices[d].state(seq_window) for d in sorted(devices)],
        windows=[
            WindowAggregate(*key, int(a[0]), a[1], a[2], a[3])
            for key, a in sorted(aggregates.items())
            if retained(key)
        ],
        alerts=[alert_states[k] for k in sorted(alert_states)],
        derived=derived,
    )


def random_events(seed: int, count: int, devices: int = 6) -> list[TelemetryEvent]:
    """A reproducible log: mostly in order, some late or out of order, gaps, duplicates,
    devices without seq, values that cross the alert thresholds, and devices that reboot:
    with a boot epoch (every third one from the second) or restarting seq without one."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(range(devices), 0)
    boots = dict.fromkeys(range(devices), 0)
    events: list[TelemetryEvent] = []
    for n in range(count):
        index = rng.randrange(devices)
        device_id = f"dev-{index}"
        if events and rng.random() < 0.08:
            events.append(rng.choice(events[-30:]))  # a gateway duplicate at a later offset
            continue
        ts = n * 700 - (rng.randrange(40_000) if rng.random() < 0.1 else 0)
        seq = boot = None
        if index % 3:
            if rng.random() < 0.01:  # a reboot: seq starts again
                seqs[index] = 0
                boots[index] += 1
            seqs[index] += rng.choice((1, 1, 1, 2))
            seq = seqs[index] - (rng.randrange(4) if rng.random() < 0.1 else 0)
            boot = boots[index] if index % 3 == 1 else None
        metrics = {"temp": round(rng.uniform(10, 35), 1), "hum": round(rng.uniform(20, 45), 1)}
        events.append(
            event(
                device_id,
                ts,
                seq=seq,
                event_id=None if seq is not None else f"h{n}",
                boot=boot,
                **metrics,
            )
        )
    return events


# -- the oracle itself ---------------------------------------------------------------------
