"""Threshold alert rules with hysteresis, loaded from YAML, and the alert events they derive.

A rule watches one metric of every device. An ``above`` rule raises when the device's current
value rises strictly above ``above`` and clears when it falls strictly below ``clear_below``
(``clear_below <= above``; the band between them is the hysteresis); a ``below`` rule is the
mirror image. Rules see a metric's *current* value: the reading that becomes the device's
latest value by event time (see :mod:`streams.projections.device`), so a stale buffered
reading neither raises nor clears. Each transition derives exactly one :class:`DerivedEvent`
whose ``event_id`` hashes (rule, device, state, triggering event id and time): the inbox
applies the triggering event once, so there is exactly one raised event per crossing, and a
re-publication carries the same id; the time keeps ids apart where a device reuses a sequence
number after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from contracts.topics import ALERTS
from streams.domain import DerivedEvent, derived_event_id
from streams.errors import ConfigError

__all__ = [
    "AlertRule",
    "AlertState",
    "alert_event",
    "load_alert_rules",
    "parse_alert_rules",
]

_RULE_KEYS = frozenset(
    {"name", "metric", "above", "below", "clear_below", "clear_above", "severity"}
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One threshold rule; ``raise_at``/``clear_at`` are the thresholds in ``direction``."""

    name: str
    metric: str
    direction: Literal["above", "below"]
    raise_at: float
    clear_at: float
    severity: str = "warning"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.raise_at) and math.isfinite(self.clear_at)):
            raise ConfigError(f"alert rule {self.name!r}: thresholds must be finite numbers")
        if self.direction == "above" and self.clear_at > self.raise_at:
            raise ConfigError(f"alert rule {self.name!r}: clear_below must be <= above")
        if self.direction == "below" and self.clear_at < self.raise_at:
            raise ConfigError(f"alert rule {self.name!r}: clear_above must be >= below")

    def transition(self, active: bool, value: float) -> bool | None:
        """The new state when ``value`` crosses a threshold from state ``active``, else None."""
        if self.direction == "above":
            if not active and value > self.raise_at:
                return True
            if active and value < self.clear_at:
                return False
            return None
        if not active and value < self.raise_at:
            return True
        if active and value > self.clear_at:
            return False
        return None


@dataclass(frozen=True, slots=True)
class AlertState:
    """State of one rule for one device (also its store row): the last transition's facts."""

    device_id: str
    rule: str
    active: bool
    since: int
    value: float
    cause_event_id: str


def alert_event(rule: AlertRule, state: AlertState, topic: str = ALERTS.name) -> DerivedEvent:
    """The ``iot.alerts.v1`` event of a transition into ``state`` (payload as the Avro schema)."""
    word = "RAISED" if state.active else "CLEARED"
    event_id = derived_event_id(
        "alert", rule.name, state.device_id, word, state.cause_event_id, str(state.since)
    )
    payload: dict[str, object] = {
        "event_id": event_id,
        "device_id": state.device_id,
        "state": word,
        "rule": rule.name,
        "metric": rule.metric,
        "value": state.value,
        "threshold": rule.raise_at if state.active else rule.clear_at,
        "window_ms": 0,
        "ts": state.since,
    }
    return DerivedEvent(
        event_id=event_id,
        topic=topic,
        key=state.device_id,
        kind=f"alert.{word.lower()}",
        ts=state.since,
        payload=payload,
    )


def load_alert_rules(path: Path | str) -> tuple[AlertRule, ...]:
    """Reads and validates a rules file (see ``config/alerts.example.yaml``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read alert rules from {path}: {exc}") from exc
    return parse_alert_rules(data)


def parse_alert_rules(data: object) -> tuple[AlertRule, ...]:
    """Validates parsed YAML; raises ConfigError naming the rule and field on any mistake."""
    if data is None:
        return ()
    if not isinstance(data, Mapping) or set(data) - {"version", "rules"}:
        raise ConfigError("alert rules: expected a mapping with 'version' and 'rules'")
    if data.get("version", 1) != 1:
        raise ConfigError(f"alert rules: unsupported version {data.get('version')!r}")
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, Sequence) or isinstance(raw_rules, str):
        raise ConfigError("alert rules: 'rules' must be a list")
    rules = tuple(_parse_rule(index, raw) for index, raw in enumerate(raw_rules))
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"alert rules: duplicate rule names {duplicates}")
    return rules


def _parse_rule(index: int, raw: object) -> AlertRule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"alert rule #{index}: expected a mapping")
    label = f"alert rule #{index} ({raw.get('name', '?')!r})"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"{label}: unknown keys {sorted(map(str, unknown))}")
    name, metric = raw.get("name"), raw.get("metric")
    if not isinstance(name, str) or not name or not isinstance(metric, str) or not metric:
        raise ConfigError(f"{label}: 'name' and 'metric' must be non-empty strings")
    if ("above" in raw) == ("below" in raw):
        raise ConfigError(f"{label}: give exactly one of 'above' or 'below'")
    direction: Literal["above", "below"] = "above" if "above" in raw else "below"
    clear_key = "clear_below" if direction == "above" else "clear_above"
    wrong_clear = "clear_above" if direction == "above" else "clear_below"
    if wrong_clear in raw:
        raise ConfigError(f"{label}: a '{direction}' rule clears with '{clear_key}'")
    raise_at = _number(label, direction, raw.get(direction))
    clear_at = _number(label, clear_key, raw.get(clear_key, raise_at))
    severity = raw.get("severity", "warning")
    if not isinstance(severity, str):
        raise ConfigError(f"{label}: 'severity' must be a string")
    return AlertRule(name, metric, direction, raise_at, clear_at, severity)


def _number(label: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{label}: {key!r} must be a number, got {value!r}")
    return float(value)
