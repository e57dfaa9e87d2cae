"""JSON shapes of the projections (what the API answers and ``/openapi.json`` documents)."""

from __future__ import annotations

from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState
from streams.projections.windows import WindowAggregate, WindowSpec

__all__ = ["alert_json", "device_json", "loss_json", "window_json"]

MAX_GAPS_SHOWN = 100


def device_json(state: DeviceState) -> dict[str, object]:
    return {
        "device_id": state.device_id,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "count": state.count,
        "last_seq": state.last_seq,
        "metrics": {
            name: {"value": latest.value, "ts": latest.ts}
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
        "start": window.start_ms,
        "end": window.start_ms + window.size_ms,
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
        "since": state.since,
        "value": state.value,
        "cause_event_id": state.cause_event_id,
    }
