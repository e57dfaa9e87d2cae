"""JSON shapes of the projections (what the API answers and ``/openapi.json`` documents).

Every time is two fields (:mod:`contracts.times`): ``<name>`` in RFC 3339 UTC and
``<name>_ms`` in epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.times import time_fields
from streams.domain import TelemetryEvent
from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState
from streams.projections.windows import WindowAggregate, WindowSpec

__all__ = [
    "alert_json",
    "alert_record_json",
    "device_json",
    "loss_json",
    "reading_json",
    "window_json",
]

MAX_GAPS_SHOWN = 100


def device_json(state: DeviceState) -> dict[str, object]:
    return {
        "device_id": state.device_id,
        **time_fields("first_seen", state.first_seen),
        **time_fields("last_seen", state.last_seen),
        "count": state.count,
        "last_seq": state.last_seq,
        "metrics": {
            name: {"value": latest.value, **time_fields("ts", latest.ts)}
            for name, latest in sorted(state.metrics.items())
        },
    }


def loss_json(state: DeviceState) -> dict[str, object]:
    """Sequence gaps, duplicates absorbed, late events and values ignored, per device."""
    return {
        "sequence": {
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "missing": state.missing,
            "gaps": [list(gap) for gap in state.gaps[-MAX_GAPS_SHOWN:]],
            "gaps_total": len(state.gaps),
            "written_off": state.lost,
            "out_of_window": state.out_of_window,
            "boot": state.boot,
            "resets": state.seq_resets,
        },
        "duplicates": state.duplicates,
        "late": dict(sorted(state.late.items())),
        "invalid_values": state.invalid_values,
    }


def window_json(window: WindowAggregate, spec: WindowSpec, watermark: int) -> dict[str, object]:
    return {
        **time_fields("start", window.start_ms),
        **time_fields("end", window.start_ms + window.size_ms),
        "count": window.count,
        "min": window.min,
        "max": window.max,
        "sum": window.sum,
        "mean": window.mean,
        "closed": spec.is_closed(window.start_ms, watermark),
    }


def alert_json(state: AlertState) -> dict[str, object]:
    return {
        "device_id": state.device_id,
        "rule": state.rule,
        "active": state.active,
        **time_fields("since", state.since),
        "value": state.value,
        "cause_event_id": state.cause_event_id,
    }


def alert_record_json(alert: Mapping[str, Any]) -> dict[str, object]:
    """A record of the alert topic (one transition, as decoded) as the history and the alert
    stream answer it: its fields, with ``ts`` (an ``int``) as a time."""
    return {**alert, **time_fields("ts", int(alert["ts"]))}


def reading_json(event: TelemetryEvent) -> dict[str, object]:
    """A reading as the device's stream answers it."""
    return {
        "event_id": event.event_id,
        "device_id": event.device_id,
        **time_fields("ts", event.ts),
        "seq": event.seq,
        "metrics": dict(event.metrics),
    }
