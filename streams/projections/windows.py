"""Tumbling-window aggregates per device and metric (count, min, max, sum, mean).

Windows are aligned to the epoch: ``[start, start + size)`` with ``start = ts - ts % size``.
Lateness is measured against the device's watermark, the maximum event time applied for that
device *before* the event: an event whose window ended at least ``grace_ms`` before the
watermark (``start + size + grace_ms <= watermark``) is late for that window size. A late event
does not change the closed window; it is counted in ``DeviceState.late[spec.name]``, one per
event and window size. A window is final once closed, so only open windows are cached.

Retention: a window is deleted once the device's watermark passed its end plus grace plus
``retention_ms`` (None: kept for good). Event time decides, so the state stays a pure function
of the log: whatever the batching, the windows left are those not yet expired at the device's
last watermark (an expired window is closed, so no late event brings it back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DEFAULT_WINDOWS",
    "WindowAggregate",
    "WindowSpec",
    "window_start",
]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A tumbling window size with its grace period; ``name`` keys the late counters."""

    name: str
    size_ms: int
    grace_ms: int
    retention_ms: int | None = None

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.grace_ms < 0:
            raise ValueError(f"window {self.name!r}: size must be > 0 and grace >= 0")
        if self.retention_ms is not None and self.retention_ms < 0:
            raise ValueError(f"window {self.name!r}: retention must be >= 0")

    def expired_through(self, watermark: int) -> int | None:
        """The start of the newest window expired at ``watermark`` (every window starting at
        or before it is deleted); None while none is (or retention is unbounded)."""
        if self.retention_ms is None:
            return None
        return window_start(
            watermark - self.size_ms - self.grace_ms - self.retention_ms, self.size_ms
        )

    def is_closed(self, start_ms: int, watermark: int) -> bool:
        """True once the watermark passed the window's end plus grace (the window is final)."""
        return start_ms + self.size_ms + self.grace_ms <= watermark


DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("1m", 60_000, 60_000),
    WindowSpec("1h", 3_600_000, 300_000),
)
"""The window sizes; the workers apply their retention settings to them."""


class WindowAggregate(NamedTuple):
    """One window of one device's metric (also its store row); immutable.

    A named tuple rather than a dataclass: one is built per changed window per batch, and it
    is a row. ``mean`` is derived (``sum / count``), not stored.
    """

    device_id: str
    metric: str
    size_ms: int
    start_ms: int
    count: int  # type: ignore[assignment]  # the domain word wins over tuple.count()
    min: float
    max: float
    sum: float

    @property
    def mean(self) -> float:
        return self.sum / self.count


def window_start(ts: int, size_ms: int) -> int:
    """Start of the epoch-aligned window of ``size_ms`` containing ``ts`` (also for ts < 0)."""
    return ts - ts % size_ms
