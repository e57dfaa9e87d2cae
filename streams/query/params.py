"""Parsing and validating query parameters into typed, immutable requests.

Every function takes the raw query mapping (``request.query``) and either returns a value or
raises :class:`~streams.query.errors.BadParameterError` naming the parameter, so a handler
never sees an unchecked value. Times are epoch milliseconds or ISO 8601 (``Z`` or an offset;
a naive time is refused rather than guessed).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from contracts.identifiers import device_id_problem
from contracts.times import epoch_ms
from streams.query.errors import BadParameterError

__all__ = [
    "MAX_LIMIT",
    "MAX_SEEN_MINUTES",
    "MAX_TIMEOUT_MS",
    "RESOLUTIONS",
    "AggregatesQuery",
    "AlertsQuery",
    "Consistency",
    "DevicesQuery",
    "HistoryQuery",
    "check_device_id",
    "parse_active",
    "parse_aggregates",
    "parse_alerts",
    "parse_consistency",
    "parse_devices",
    "parse_history",
    "parse_limit",
    "parse_seen_minutes",
    "parse_time",
]

MAX_LIMIT = 1000
MAX_TIMEOUT_MS = 30_000
MAX_SEEN_MINUTES = 10_080  # a week
DEFAULT_TIMEOUT_MS = 5_000
RESOLUTIONS: Mapping[str, tuple[int, int]] = {
    # name -> (window size, longest range one request may ask for)
    "1m": (60_000, 7 * 86_400_000),
    "1h": (3_600_000, 366 * 86_400_000),
}
_MAX_ID = 128
_MIN_MS, _MAX_MS = 0, 253_402_300_799_999  # 1970 .. 9999-12-31


@dataclass(frozen=True, slots=True)
class Consistency:
    """``strong`` waits (up to ``timeout_ms``) until the store applied the log's end offset."""

    mode: Literal["eventual", "strong"]
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class DevicesQuery:
    after: str | None
    limit: int
    seen_since: int | None
    has_metric: str | None


@dataclass(frozen=True, slots=True)
class AggregatesQuery:
    metric: str
    resolution: str
    size_ms: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    device_id: str | None
    start_ms: int
    end_ms: int
    limit: int
    after: str | None = None
    """A position vector ``p:o,...`` to resume after (checked against the partitions read)."""


@dataclass(frozen=True, slots=True)
class AlertsQuery:
    device_id: str | None
    active_only: bool
    after: tuple[str, str] | None
    """Page after this (device_id, rule), given as ``device_id/rule``."""
    limit: int


def check_device_id(value: str, parameter: str = "device_id") -> str:
    """``value`` if it is a device id (:mod:`contracts.identifiers`), else BadParameterError."""
    problem = device_id_problem(value)
    if problem is not None:
        raise BadParameterError(parameter, f"is not a device id: it {problem}")
    return value


def _name(query: Mapping[str, str], parameter: str) -> str | None:
    value = query.get(parameter)
    if value is None:
        return None
    if not value or len(value) > _MAX_ID or "\x00" in value:
        raise BadParameterError(parameter, f"must be 1..{_MAX_ID} characters")
    return value


def parse_limit(query: Mapping[str, str], default: int = 100) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isdecimal() or len(raw) > 9:
        raise BadParameterError("limit", f"must be an integer 1..{MAX_LIMIT}, got {raw!r}")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise BadParameterError("limit", f"must be 1..{MAX_LIMIT}, got {value}")
    return value


def parse_time(query: Mapping[str, str], parameter: str, *, required: bool) -> int | None:
    """Epoch ms (digits, optionally negative) or ISO 8601 with a zone; None if absent."""
    raw = query.get(parameter)
    if raw is None:
        if required:
            raise BadParameterError(parameter, "is required (epoch ms or ISO 8601)")
        return None
    if re.fullmatch(r"-?\d{1,15}", raw):
        value = int(raw)
    else:
        try:
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadParameterError(
                parameter, f"expected epoch ms or ISO 8601, got {raw[:40]!r}"
            ) from None
        if moment.tzinfo is None:
            raise BadParameterError(parameter, "an ISO 8601 time needs a zone (Z or +hh:mm)")
        value = epoch_ms(moment)
    if not _MIN_MS <= value <= _MAX_MS:
        raise BadParameterError(parameter, "out of range (1970 .. 9999)")
    return value


def parse_consistency(query: Mapping[str, str]) -> Consistency:
    mode = query.get("consistency", "eventual")
    if mode not in ("eventual", "strong"):
        raise BadParameterError("consistency", f"must be eventual or strong, got {mode[:40]!r}")
    raw = query.get("timeout_ms")
    timeout = DEFAULT_TIMEOUT_MS
    if raw is not None:
        if not raw.isdecimal() or len(raw) > 9 or not 1 <= int(raw) <= MAX_TIMEOUT_MS:
            raise BadParameterError("timeout_ms", f"must be an integer 1..{MAX_TIMEOUT_MS}")
        timeout = int(raw)
    return Consistency("strong" if mode == "strong" else "eventual", timeout)


def parse_devices(query: Mapping[str, str]) -> DevicesQuery:
    after = query.get("after")
    if after is not None:
        check_device_id(after, "after")
    return DevicesQuery(
        after=after,
        limit=parse_limit(query),
        seen_since=parse_time(query, "seen_since", required=False),
        has_metric=_name(query, "has_metric"),
    )


def parse_aggregates(query: Mapping[str, str]) -> AggregatesQuery:
    metric = _name(query, "metric")
    if metric is None:
        raise BadParameterError("metric", "is required")
    resolution = query.get("resolution", "1m")
    if resolution not in RESOLUTIONS:
        raise BadParameterError(
            "resolution", f"must be one of {', '.join(RESOLUTIONS)}, got {resolution[:20]!r}"
        )
    size_ms, longest = RESOLUTIONS[resolution]
    start = parse_time(query, "from", required=True)
    end = parse_time(query, "to", required=True)
    assert start is not None  # noqa: S101 - required=True
    assert end is not None  # noqa: S101
    if end <= start:
        raise BadParameterError("to", "must be after 'from' (the range is [from, to))")
    if end - start > longest:
        raise BadParameterError(
            "to", f"range longer than {longest // 86_400_000} days at resolution {resolution}"
        )
    return AggregatesQuery(metric, resolution, size_ms, start, end)


def parse_history(query: Mapping[str, str], now_ms: int) -> HistoryQuery:
    device = query.get("device_id")
    if device is not None:
        check_device_id(device)
    start = parse_time(query, "from", required=True)
    end = parse_time(query, "to", required=False)
    assert start is not None  # noqa: S101 - required=True
    end = now_ms + 1 if end is None else end
    if end <= start:
        raise BadParameterError("to", "must be after 'from' (the range is [from, to))")
    after = query.get("after")
    if after is not None and (not after or len(after) > 4096):
        raise BadParameterError("after", "expected partition:offset[,...]")
    return HistoryQuery(device, start, end, parse_limit(query), after)


def parse_alerts(query: Mapping[str, str]) -> AlertsQuery:
    device = query.get("device_id")
    if device is not None:
        check_device_id(device)
    raw = query.get("after")
    after = None
    if raw is not None:
        device_part, sep, rule = raw.partition("/")
        if not sep or not rule or len(rule) > _MAX_ID or "\x00" in rule:
            raise BadParameterError("after", "expected device_id/rule (a next_after value)")
        after = (check_device_id(device_part, "after"), rule)
    return AlertsQuery(device, parse_active(query), after, parse_limit(query))


def parse_active(query: Mapping[str, str]) -> bool:
    raw = query.get("active", "true")
    if raw not in ("true", "false"):
        raise BadParameterError("active", f"must be true or false, got {raw[:20]!r}")
    return raw == "true"


def parse_seen_minutes(query: Mapping[str, str], default: int = 5) -> int:
    """The overview's "seen in the last N minutes" (1 .. a week)."""
    raw = query.get("seen_minutes")
    if raw is None:
        return default
    if not raw.isdecimal() or len(raw) > 9 or not 1 <= int(raw) <= MAX_SEEN_MINUTES:
        raise BadParameterError("seen_minutes", f"must be an integer 1..{MAX_SEEN_MINUTES}")
    return int(raw)
