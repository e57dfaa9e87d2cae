"""The projector: applies admitted telemetry events to the in-memory projections.

It is a deterministic fold over the log: the same events in the same order give the same
state and the same derived events, whatever the wall clock says. It caches the state of the
devices it has seen and tracks what changed since :meth:`Projector.take_changes`, so a caller
can write exactly the changed rows (write-through). It does no I/O; the caller loads cached
devices from the store (:meth:`Projector.load`) before applying their events and drops the
whole cache (:meth:`Projector.clear`) when a write of its changes failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from contracts.topics import ALERTS
from streams.domain import DerivedEvent, TelemetryEvent
from streams.projections.alerts import AlertRule, AlertState, alert_event
from streams.projections.device import (
    Admission,
    DeviceState,
    DeviceTracker,
    LatestValue,
    RecentEvent,
    SeqWindow,
)
from streams.projections.windows import DEFAULT_WINDOWS, WindowAggregate, WindowSpec

__all__ = ["ProjectionChanges", "Projector"]

_NEVER = 2**62
_UNCHANGED = -1  # the stamp of a window loaded from the store (takes are stamped from 0)
_NEVER_EXPIRED = -(2**62)
_new_tuple = tuple.__new__  # builds named-tuple rows without their Python-level __new__


@dataclass(frozen=True, slots=True)
class ProjectionChanges:
    """Rows changed since the last take, and the derived events, in log order."""

    devices: Sequence[DeviceState]
    windows: Sequence[WindowAggregate]
    alerts: Sequence[AlertState]
    derived: Sequence[DerivedEvent]
    expired: Sequence[ExpiredWindows] = ()
    recent: Sequence[RecentEvent] = ()
    """Ids of readings without ``seq`` remembered since the last take."""
    forgotten: Sequence[tuple[str, int]] = ()
    """(device, cutoff): the device's remembered ids dated before the cutoff may go."""
    metrics_added: Sequence[tuple[str, str]] = ()
    """(metric, device_id) of each metric a device got its first latest value of since the
    last take: with the metrics of the devices loaded, every metric of ``devices``."""


class ExpiredWindows(NamedTuple):
    """A device's windows of one size that retention deletes: those starting at or before
    ``through_start``."""

    device_id: str
    size_ms: int
    through_start: int


class Projector:
    """Device state, windowed aggregates and alerts for the devices it caches; not thread-safe."""

    def __init__(
        self,
        windows: Sequence[WindowSpec] = DEFAULT_WINDOWS,
        rules: Sequence[AlertRule] = (),
        seq_window: SeqWindow | None = None,
        alerts_topic: str = ALERTS.name,
    ) -> None:
        if len({spec.size_ms for spec in windows}) != len(windows):
            raise ValueError("window sizes must be distinct")
        if len({spec.name for spec in windows}) != len(windows):
            raise ValueError("window names must be distinct")
        self.windows = tuple(windows)
        self.rules = tuple(rules)
        self.seq_window = seq_window or SeqWindow()
        self.alerts_topic = alerts_topic
        self._spec_by_size = {spec.size_ms: spec for spec in windows}
        self._retained = tuple(spec for spec in windows if spec.retention_ms is not None)
        self._rules_by_metric: dict[str, tuple[AlertRule, ...]] = {}
        for rule in rules:
            self._rules_by_metric[rule.metric] = (*self._rules_by_metric.get(rule.metric, ()), rule)
        self._trackers: dict[str, DeviceTracker] = {}
        self._absent: set[str] = set()
        self._alerts: dict[tuple[str, str], AlertState] = {}
        self._dirty_devices: dict[str, DeviceTracker] = {}
        # A window's accumulator is [device_id, metric, size_ms, start_ms, count, min, max,
        # sum, stamp], cached in its device's tracker; the stamp is the take that will write
        # it, so the changed windows are those of the changed devices with this stamp.
        self._stamp = 0
        self._dirty_alerts: dict[tuple[str, str], AlertState] = {}
        self._derived: list[DerivedEvent] = []
        self._recent: list[RecentEvent] = []
        self._metrics_added: list[tuple[str, str]] = []

    # -- cache management -------------------------------------------------------------------

    def unknown(self, device_ids: Iterable[str]) -> list[str]:
        """The ids among ``device_ids`` that must be loaded before their events are applied."""
        trackers, absent = self._trackers, self._absent
        return [d for d in dict.fromkeys(device_ids) if d not in trackers and d not in absent]

    def load(
        self,
        requested: Iterable[str],
        states: Iterable[DeviceState],
        windows: Iterable[WindowAggregate],
        alerts: Iterable[AlertState],
        recent: Iterable[RecentEvent] = (),
    ) -> None:
        """Caches stored state; ``requested`` ids without a state are known to be new."""
        for state in states:
            self._trackers[state.device_id] = DeviceTracker.from_state(state)
        for device_id in requested:
            if device_id not in self._trackers:
                self._absent.add(device_id)
        for row in windows:
            tracker = self._trackers.get(row.device_id)
            spec = self._spec_by_size.get(row.size_ms)
            if tracker is None or spec is None or spec.is_closed(row.start_ms, tracker.last_seen):
                continue
            slot = tracker.windows.setdefault((row.size_ms, row.start_ms), {})
            slot[row.metric] = [*row, _UNCHANGED]
            tracker.next_close = min(
                tracker.next_close, row.start_ms + spec.size_ms + spec.grace_ms
            )
        for kept in sorted(recent, key=lambda r: r.ts):
            tracker = self._trackers.get(kept.device_id)
            if tracker is not None and kept.event_id not in tracker.recent:
                tracker.recent[kept.event_id] = kept.ts
                tracker.recent_order.append((kept.ts, kept.event_id))
        names = {rule.name for rule in self.rules}
        for alert in alerts:
            if alert.rule in names and alert.device_id in self._trackers:
                self._alerts[(alert.device_id, alert.rule)] = alert

    def drop(self, device_ids: Iterable[str]) -> None:
        """Forgets cached devices (e.g. their partition moved to another worker)."""
        for device_id in device_ids:
            self._trackers.pop(device_id, None)
            self._absent.discard(device_id)
            for rule in self.rules:
                self._alerts.pop((device_id, rule.name), None)

    def clear(self) -> None:
        """Forgets every cached device and every pending change."""
        self._trackers.clear()
        self._absent.clear()
        self._alerts.clear()
        self._dirty_devices.clear()
        self._dirty_alerts.clear()
        self._derived.clear()
        self._recent.clear()
        self._metrics_added.clear()

    # -- applying ---------------------------------------------------------------------------

    def apply(  # noqa: PLR0912, PLR0915 - the hot path, inlined on purpose
        self, event: TelemetryEvent
    ) -> Admission:
        """Applies one event unless it is a duplicate; every outcome is counted per device.

        Events with ``seq`` are judged by the device's sequence window, device-dated events
        without it by their id within the horizon (see :mod:`streams.projections.device`).
        Only a NEW event changes values, windows and alerts.
        """
        device_id = event.device_id
        ts = event.ts
        tracker = self._trackers.get(device_id)
        if tracker is None:
            tracker = self._trackers[device_id] = DeviceTracker(device_id, ts)
            self._absent.discard(device_id)
        self._dirty_devices[device_id] = tracker
        admission = Admission.NEW
        if event.seq is not None:
            device_ts = None if event.ts_stamped else ts
            admission = tracker.admit(event.seq, self.seq_window, event.boot, device_ts)
        else:
            admission = tracker.admit_unnumbered(event.event_id, ts, self.seq_window)
            if admission is Admission.NEW:
                self._recent.append(_new_tuple(RecentEvent, (device_id, event.event_id, ts)))
        if admission is not Admission.NEW:
            if admission is Admission.DUPLICATE:
                tracker.duplicates += 1
            else:
                tracker.out_of_window += 1
            return admission
        watermark = tracker.last_seen
        tracker.count += 1
        if ts > watermark:
            tracker.last_seen = ts
        elif ts < tracker.first_seen:
            tracker.first_seen = ts
        slots = tracker.windows
        open_slots: list[tuple[dict[str, list[Any]], int, int]] = []
        for spec in self.windows:
            size = spec.size_ms
            start = ts - ts % size
            closes = start + size + spec.grace_ms
            if closes <= watermark:
                tracker.late[spec.name] = tracker.late.get(spec.name, 0) + 1
                continue
            slot = slots.get((size, start))
            if slot is None:
                slot = slots[size, start] = {}
                if closes < tracker.next_close:  # noqa: PLR1730 - hot path
                    tracker.next_close = closes
            open_slots.append((slot, size, start))
        metrics = tracker.metrics
        stamp = self._stamp
        isfinite = math.isfinite
        for name, value in event.metrics.items():
            if not isfinite(value):
                tracker.invalid_values += 1
                continue
            current = metrics.get(name)
            if current is None or ts >= current[1]:
                if current is None:
                    self._metrics_added.append((name, device_id))
                metrics[name] = _new_tuple(LatestValue, (value, ts))
                rules = self._rules_by_metric.get(name)
                if rules is not None:
                    self._evaluate(device_id, rules, value, ts, event.event_id)
            for slot, size, start in open_slots:
                acc = slot.get(name)
                if acc is None:
                    slot[name] = [device_id, name, size, start, 1, value, value, value, stamp]
                else:
                    acc[4] += 1
                    if value < acc[5]:  # noqa: PLR1730 - cheaper than min() per value
                        acc[5] = value
                    if value > acc[6]:  # noqa: PLR1730
                        acc[6] = value
                    acc[7] += value
                    acc[8] = stamp
        return Admission.NEW

    def _evaluate(
        self, device_id: str, rules: tuple[AlertRule, ...], value: float, ts: int, cause: str
    ) -> None:
        for rule in rules:
            key = (device_id, rule.name)
            state = self._alerts.get(key)
            active = state is not None and state.active
            new = rule.transition(active, value)
            if new is None:
                continue
            state = AlertState(device_id, rule.name, new, ts, value, cause)
            self._alerts[key] = self._dirty_alerts[key] = state
            self._derived.append(alert_event(rule, state, self.alerts_topic))

    # -- write-through ------------------------------------------------------------------------

    def take_changes(self) -> ProjectionChanges:
        """Returns and forgets what changed since the last take; evicts windows now closed."""
        dirty, stamp = self._dirty_devices.values(), self._stamp
        changes = ProjectionChanges(
            devices=[tracker.snapshot() for tracker in dirty],
            windows=[
                _new_tuple(WindowAggregate, acc[:8])
                for tracker in dirty
                for slot in tracker.windows.values()
                for acc in slot.values()
                if acc[8] == stamp
            ],
            alerts=list(self._dirty_alerts.values()),
            derived=list(self._derived),
            expired=self._expired() if self._retained else (),
            recent=list(self._recent),
            forgotten=self._forgotten(),
            metrics_added=list(self._metrics_added),
        )
        for tracker in self._dirty_devices.values():
            if tracker.last_seen >= tracker.next_close:
                self._evict_closed(tracker)
        self._stamp += 1
        self._dirty_devices.clear()
        self._dirty_alerts.clear()
        self._derived.clear()
        self._recent.clear()
        self._metrics_added.clear()
        return changes

    def _forgotten(self) -> list[tuple[str, int]]:
        """Forgets remembered ids past the horizon; the devices whose stored ones may go
        (once their cutoff moved on by a tenth of the horizon, to bound the deletes)."""
        window = self.seq_window
        step = max(1, window.horizon_ms // 10)
        forgotten = []
        for tracker in self._dirty_devices.values():
            if tracker.recent or tracker.recent_pruned > -_NEVER:
                cutoff = tracker.forget_recent(window)
                if cutoff >= tracker.recent_pruned + step:
                    tracker.recent_pruned = cutoff
                    forgotten.append((tracker.device_id, cutoff))
        return forgotten

    def _expired(self) -> list[ExpiredWindows]:
        """Windows of the changed devices that retention deletes since the last take."""
        expired = []
        for tracker in self._dirty_devices.values():
            for spec in self._retained:
                through = spec.expired_through(tracker.last_seen)
                assert through is not None  # noqa: S101 - only specs with a retention
                if through > tracker.expired.get(spec.size_ms, _NEVER_EXPIRED):
                    tracker.expired[spec.size_ms] = through
                    expired.append(ExpiredWindows(tracker.device_id, spec.size_ms, through))
        return expired

    def _evict_closed(self, tracker: DeviceTracker) -> None:
        watermark = tracker.last_seen
        next_close = _NEVER
        slots = tracker.windows
        for size, start in list(slots):
            closes = start + size + self._spec_by_size[size].grace_ms
            if closes <= watermark:
                del slots[size, start]
            elif closes < next_close:
                next_close = closes
        tracker.next_close = next_close

    # -- reads (tests and replay) -----------------------------------------------------------

    def device(self, device_id: str) -> DeviceState | None:
        tracker = self._trackers.get(device_id)
        return None if tracker is None else tracker.snapshot()
