"""Projections of the telemetry log: device state, windowed aggregates, alerts.

Pure functions of the log: event time only, never the wall clock; the same events in the
same order give byte-identical state (see :func:`hash_rows`).
"""

from streams.projections.alerts import (
    AlertRule,
    AlertState,
    alert_event,
    load_alert_rules,
    parse_alert_rules,
)
from streams.projections.canonical import canonical_row, hash_rows
from streams.projections.device import Admission, DeviceState, LatestValue, SeqWindow
from streams.projections.projector import ExpiredWindows, ProjectionChanges, Projector
from streams.projections.windows import (
    DEFAULT_WINDOWS,
    WindowAggregate,
    WindowSpec,
    window_start,
)

__all__ = [
    "DEFAULT_WINDOWS",
    "Admission",
    "AlertRule",
    "AlertState",
    "DeviceState",
    "ExpiredWindows",
    "LatestValue",
    "ProjectionChanges",
    "Projector",
    "SeqWindow",
    "WindowAggregate",
    "WindowSpec",
    "alert_event",
    "canonical_row",
    "hash_rows",
    "load_alert_rules",
    "parse_alert_rules",
    "window_start",
]
