"""Device state: latest values, first/last seen, counts, and sequence-number loss accounting.

Decisions (pure functions of the log, event time only):

* **Latest value per metric is latest by event time** (``ts``); on equal ``ts`` the later
  event in log order wins. Devices flush buffered readings after a reconnect, and with
  log-order semantics an old buffered reading would overwrite a fresher one. The result is
  still deterministic: the same log in the same order gives the same state.
* ``first_seen``/``last_seen`` are the minimum/maximum event time applied; ``last_seen`` is
  also the device's watermark for window lateness.
* ``last_seq`` is the highest sequence number applied, ``first_seq`` the lowest, both of the
  device's current boot epoch (``boot``).

Readings without ``seq`` are de-duplicated by event id for ``SeqWindow.horizon_ms`` of event
time: the ids of the device's readings dated at most that far behind its newest one are kept
(``recent``); a reading dated further back can no longer be proven new or a duplicate and is
skipped, counted in ``out_of_window``. A reading whose time the gateway stamped (``ts_stamped``)
has an id of its own at every receipt, so only its record logged twice is a duplicate.

Device restarts: a device that names its boot epoch (``boot``, raised at every start) gets a
fresh window per epoch, exactly; readings of an older epoch are out of the window. A device
that restarts ``seq`` without naming an epoch is recognised when a would-be duplicate carries a
device-given ``ts`` later than any applied (a true duplicate never does); its time is kept
(``restart_ts``), and a device-dated reading dated before it belongs to the old sequence and is
out of the window (a broker's redelivery of an old reading after the restart would otherwise
be new in the new window). Either way the restart is counted (``seq_resets``) and what the
old sequence still missed is written off.

Sequence window (the inbox for events that carry ``seq``): the state keeps the missing ranges
(``gaps``) between ``first_seq`` and ``last_seq``, which makes de-duplication exact: a ``seq``
above ``last_seq`` or inside a gap is new (a late arrival fills its gap), any other ``seq`` at
or above ``seq_floor`` is a duplicate. The state is bounded by :class:`SeqWindow`: ranges that
fall more than ``size`` below ``last_seq``, or beyond the ``max_gaps`` newest ranges, are
written off (counted in ``lost``) and ``seq_floor`` rises past them. An event below
``seq_floor`` can no longer be proven new or duplicate; it is skipped and counted in
``out_of_window``, never silently dropped.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from operator import itemgetter
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "Admission",
    "DeviceState",
    "DeviceTracker",
    "LatestValue",
    "RecentEvent",
    "SeqWindow",
]


_LOW = itemgetter(0)
_NEVER = 2**62


class LatestValue(NamedTuple):
    """A metric's latest value and the event time it was measured at."""

    value: float
    ts: int


class RecentEvent(NamedTuple):
    """The id of a device's reading without ``seq``, kept within the horizon (a store row)."""

    device_id: str
    event_id: str
    ts: int


class Admission(IntEnum):
    """What the sequence window says about an event's ``seq``."""

    NEW = 0
    DUPLICATE = 1
    OUT_OF_WINDOW = 2


@dataclass(frozen=True, slots=True)
class SeqWindow:
    """Bounds of the per-device sequence window; keep them stable for a store's lifetime."""

    size: int = 1_000_000
    max_gaps: int = 256
    horizon_ms: int = 600_000
    """How far behind the device's newest reading (event time) a reading without ``seq`` is
    still recognised as a duplicate."""

    def __post_init__(self) -> None:
        if self.size < 1 or self.max_gaps < 1 or self.horizon_ms < 0:
            raise ValueError("SeqWindow size and max_gaps must be positive, horizon_ms >= 0")


_NO_COUNTS: Mapping[str, int] = MappingProxyType({})
_NO_METRICS: Mapping[str, LatestValue] = MappingProxyType({})


class DeviceState(NamedTuple):
    """The device-state projection of one device (also its store row); immutable.

    A named tuple rather than a dataclass: one is built per changed device per batch, and
    it is a row.
    """

    device_id: str
    first_seen: int
    last_seen: int
    count: int  # type: ignore[assignment]  # the domain word wins over tuple.count()
    first_seq: int | None
    last_seq: int | None
    seq_floor: int | None
    gaps: tuple[tuple[int, int], ...]
    missing: int
    lost: int
    duplicates: int
    out_of_window: int
    invalid_values: int
    late: Mapping[str, int] = _NO_COUNTS
    metrics: Mapping[str, LatestValue] = _NO_METRICS
    boot: int | None = None
    seq_resets: int = 0
    restart_ts: int | None = None


class DeviceTracker:
    """Mutable working copy of one device's state, owned by a projector; not thread-safe."""

    __slots__ = (
        "boot",
        "count",
        "device_id",
        "duplicates",
        "expired",
        "first_seen",
        "first_seq",
        "gaps",
        "invalid_values",
        "last_seen",
        "last_seq",
        "late",
        "lost",
        "metrics",
        "missing",
        "next_close",
        "out_of_window",
        "recent",
        "recent_order",
        "recent_pruned",
        "restart_ts",
        "seq_floor",
        "seq_resets",
        "windows",
    )

    def __init__(self, device_id: str, ts: int) -> None:
        self.device_id = device_id
        self.first_seen = ts
        self.last_seen = ts
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.seq_floor: int | None = None
        self.gaps: list[tuple[int, int]] = []
        self.missing = 0
        self.lost = 0
        self.duplicates = 0
        self.out_of_window = 0
        self.invalid_values = 0
        self.late: dict[str, int] = {}
        self.metrics: dict[str, LatestValue] = {}
        self.boot: int | None = None
        self.seq_resets = 0
        self.restart_ts: int | None = None
        # this device's cached open windows, (size_ms, start_ms) -> metric -> accumulator,
        # and the earliest time one closes (owned by the projector)
        self.windows: dict[tuple[int, int], dict[str, list[Any]]] = {}
        self.next_close = _NEVER
        # window size -> start of the newest window already deleted by retention (in memory)
        self.expired: dict[int, int] = {}
        # ids of readings without seq within the horizon, and (ts, id) in arrival order
        self.recent: dict[str, int] = {}
        self.recent_order: deque[tuple[int, str]] = deque()
        self.recent_pruned = -_NEVER  # the cutoff the store last pruned the device's ids at

    @classmethod
    def from_state(cls, state: DeviceState) -> DeviceTracker:
        tracker = cls(state.device_id, state.first_seen)
        tracker.last_seen = state.last_seen
        tracker.count = state.count
        tracker.first_seq = state.first_seq
        tracker.last_seq = state.last_seq
        tracker.seq_floor = state.seq_floor
        tracker.gaps = list(state.gaps)
        tracker.missing = state.missing
        tracker.lost = state.lost
        tracker.duplicates = state.duplicates
        tracker.out_of_window = state.out_of_window
        tracker.invalid_values = state.invalid_values
        tracker.late = dict(state.late)
        tracker.metrics = dict(state.metrics)
        tracker.boot = state.boot
        tracker.seq_resets = state.seq_resets
        tracker.restart_ts = state.restart_ts
        return tracker

    def snapshot(self) -> DeviceState:
        return DeviceState(
            self.device_id,
            self.first_seen,
            self.last_seen,
            self.count,
            self.first_seq,
            self.last_seq,
            self.seq_floor,
            tuple(self.gaps),
            self.missing,
            self.lost,
            self.duplicates,
            self.out_of_window,
            self.invalid_values,
            dict(self.late) if self.late else _NO_COUNTS,
            dict(self.metrics),
            self.boot,
            self.seq_resets,
            self.restart_ts,
        )

    def admit(
        self, seq: int, window: SeqWindow, boot: int | None = None, ts: int | None = None
    ) -> Admission:
        """Classifies ``seq`` of boot epoch ``boot`` and, when it is new, records it.

        A newer ``boot`` restarts the window; an older one is out of the window. Without a
        boot epoch, ``ts`` (the device-given time; None when the gateway stamped it) tells
        the sequences apart: a ``seq`` the window would call a duplicate is a restart when
        ``ts`` is later than any applied (a true duplicate carries its original's time,
        which is never later), and a reading dated before the latest such restart is of
        the old sequence, out of the window.
        """
        if boot is not None:
            if boot != self.boot:
                if self.boot is not None and boot < self.boot:
                    return Admission.OUT_OF_WINDOW
                if self.last_seq is not None:
                    self._restart()
                self.boot = boot
                self.restart_ts = None
        elif ts is not None and self.restart_ts is not None and ts < self.restart_ts:
            return Admission.OUT_OF_WINDOW
        admission = self._classify(seq, window)
        fresh = boot is None and ts is not None and ts > self.last_seen
        if admission is not Admission.NEW and fresh:
            self._restart()
            self.restart_ts = ts
            admission = self._classify(seq, window)
        return admission

    def admit_unnumbered(self, event_id: str, ts: int, window: SeqWindow) -> Admission:
        """Classifies a device-dated reading without ``seq`` by its id, within the horizon
        behind the device's newest reading; records it when it is new."""
        if ts < self.last_seen - window.horizon_ms:
            return Admission.OUT_OF_WINDOW
        if event_id in self.recent:
            return Admission.DUPLICATE
        self.recent[event_id] = ts
        self.recent_order.append((ts, event_id))
        return Admission.NEW

    def forget_recent(self, window: SeqWindow) -> int:
        """Drops remembered ids older than the horizon (oldest arrivals first); returns the
        cutoff: every id dated at or after it is still remembered."""
        cutoff = self.last_seen - window.horizon_ms
        order, recent = self.recent_order, self.recent
        while order and order[0][0] < cutoff:
            _, event_id = order.popleft()
            del recent[event_id]
        return cutoff

    def _restart(self) -> None:
        """The device restarted its sequence: what the old one still missed is lost."""
        self.seq_resets += 1
        self.lost += self.missing
        self.missing = 0
        self.gaps = []
        self.first_seq = self.last_seq = self.seq_floor = None

    def _classify(self, seq: int, window: SeqWindow) -> Admission:
        last = self.last_seq
        if last is None:
            self.first_seq = self.last_seq = seq
            self.seq_floor = seq - window.size + 1
            return Admission.NEW
        if seq > last:
            if seq > last + 1:
                self.gaps.append((last + 1, seq - 1))
                self.missing += seq - 1 - last
            self.last_seq = seq
            self._bound(window)
            return Admission.NEW
        floor = self.seq_floor
        if floor is not None and seq < floor:
            return Admission.OUT_OF_WINDOW
        first = self.first_seq
        if first is not None and seq < first:
            if seq < first - 1:
                self.gaps.insert(0, (seq + 1, first - 1))
                self.missing += first - 1 - seq
            self.first_seq = seq
            self._bound(window)
            return Admission.NEW
        return self._fill(seq)

    def _fill(self, seq: int) -> Admission:
        gaps = self.gaps
        index = bisect.bisect_right(gaps, seq, key=_LOW) - 1
        if index < 0:
            return Admission.DUPLICATE
        lo, hi = gaps[index]
        if seq > hi:
            return Admission.DUPLICATE
        self.missing -= 1
        if lo == hi:
            del gaps[index]
        elif seq == lo:
            gaps[index] = (lo + 1, hi)
        elif seq == hi:
            gaps[index] = (lo, hi - 1)
        else:
            gaps[index : index + 1] = [(lo, seq - 1), (seq + 1, hi)]
        return Admission.NEW

    def _bound(self, window: SeqWindow) -> None:
        assert self.last_seq is not None  # noqa: S101 - admit() sets it first
        floor = self.last_seq - window.size + 1
        gaps = self.gaps
        if len(gaps) > window.max_gaps:
            floor = max(floor, gaps[len(gaps) - window.max_gaps - 1][1] + 1)
        if self.seq_floor is not None and floor <= self.seq_floor:
            return
        self.seq_floor = floor
        while gaps and gaps[0][0] < floor:
            lo, hi = gaps[0]
            if hi < floor:
                del gaps[0]
                written_off = hi - lo + 1
            else:
                gaps[0] = (floor, hi)
                written_off = floor - lo
            self.lost += written_off
            self.missing -= written_off
