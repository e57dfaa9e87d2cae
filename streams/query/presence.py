"""Which devices are connected, folded from the device events the gateways write.

The gateway (direct mode) writes a ``DeviceEvent`` to ``iot.device-events.v1`` for every
connect and disconnect, keyed by the device, with headers ``kind`` (``CONNECTED`` or
``DISCONNECTED``), ``ts`` (epoch milliseconds) and ``reason``. Every worker folds the topic
(:class:`~streams.query.folds.TopicFold`): a device's latest event says whether it is online,
since when and, if not, why. A device's events share one partition, so they are folded in
the order they were written. At most ``max_devices`` devices are tracked.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.kafka import KafkaClientSettings
from contracts.times import time_fields
from streams.query.folds import TopicFold

__all__ = ["Presence", "PresenceState"]

_KINDS = frozenset({"CONNECTED", "DISCONNECTED"})


@dataclass(frozen=True, slots=True)
class PresenceState:
    """A device's latest connect or disconnect."""

    online: bool
    since: int
    """Epoch milliseconds of that event."""
    reason: str | None


class Presence(TopicFold):
    """The background fold (see the module docstring); ``of`` never blocks."""

    def __init__(
        self, kafka: KafkaClientSettings, topic: str, partitions: int, *, max_devices: int = 100_000
    ) -> None:
        super().__init__(kafka, topic, partitions)
        self._max_devices = max_devices
        self._states: dict[str, PresenceState] = {}
        self._online = 0

    def take(self, key: bytes | None, headers: dict[str, bytes], timestamp_ms: int = 0) -> None:
        kind = headers.get("kind", b"").decode("ascii", "replace")
        if key is None or kind not in _KINDS:
            return  # another kind of device event (registered, revoked, ...)
        device_id = key.decode("utf-8", "replace")
        if device_id not in self._states and len(self._states) >= self._max_devices:
            return
        try:
            since = int(headers.get("ts", b"0"))
        except ValueError:
            since = 0
        reason = headers.get("reason")
        state = PresenceState(
            kind == "CONNECTED", since, reason.decode("utf-8", "replace") if reason else None
        )
        before = self._states.get(device_id)
        if before is not None and before.online:
            self._online -= 1
        if state.online:
            self._online += 1
        self._states[device_id] = state

    def online(self) -> int:
        """How many devices' latest connection event is a connect (as far as read)."""
        return self._online

    def of(self, device_id: str) -> dict[str, object]:
        """The device's presence as the API answers it (``online`` null: no event seen)."""
        state = self._states.get(device_id)
        return {
            "online": None if state is None else state.online,
            **time_fields("since", None if state is None else state.since),
            "reason": None if state is None else state.reason,
            "caught_up": self.caught_up,
        }
