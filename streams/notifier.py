"""An idempotent consumer of the alerts: raised alerts become downlink commands.

For each RAISED alert of a configured rule it appends one command to the commands topic
through the outbox, in the same store transaction that records the alert's ``event_id``
(``TrackingStore.apply_once``): a redelivered alert is skipped, so each alert yields exactly
one command, whose ``command_id`` is derived from the alert's id.

The records are kept for a horizon (``horizon_ms``, by the alert's time): older ones are
pruned, and an alert older than the horizon is refused (:meth:`stale`) instead of being taken
for a new one, so the bound costs no duplicate command, only commands that late.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.topics import COMMANDS
from streams.domain import DerivedEvent, derived_event_id
from streams.store.port import OnceResult, StoreTransaction, TrackingStore

__all__ = ["AlertCommandNotifier"]


class AlertCommandNotifier:
    """Sends ``commands[rule]`` to the device whenever that rule raises an alert."""

    def __init__(
        self,
        store: TrackingStore,
        commands: Mapping[str, str],
        *,
        consumer: str = "alert-command-notifier",
        commands_topic: str = COMMANDS.name,
        horizon_ms: int = 7 * 86_400_000,
    ) -> None:
        self._store = store
        self.horizon_ms = horizon_ms
        self._commands = dict(commands)
        self._consumer = consumer
        self._commands_topic = commands_topic

    def stale(self, alert: Mapping[str, object], now_ms: int) -> bool:
        """True for an alert older than the horizon: its record may be pruned already."""
        ts = alert["ts"]
        return isinstance(ts, int) and ts < now_ms - self.horizon_ms

    def prune(self, now_ms: int) -> int:
        """Forgets the records of alerts older than the horizon; returns how many."""
        return self._store.prune_tracking(now_ms - self.horizon_ms)

    def handle(self, alert: Mapping[str, object]) -> OnceResult[DerivedEvent | None]:
        """Processes one decoded alert record; ``applied`` False means it was a duplicate.

        ``value`` is the command appended, or None when the alert needs none (cleared, or a
        rule without a command). Store errors propagate; the alert can then be redelivered.
        """
        event_id = str(alert["event_id"])
        command = self._command_for(alert, event_id)

        def effect(tx: StoreTransaction) -> DerivedEvent | None:
            if command is not None:
                tx.append_outbox([command])
            return command

        ts = alert["ts"]
        return self._store.apply_once(
            self._consumer, event_id, ts if isinstance(ts, int) else 0, effect
        )

    def _command_for(self, alert: Mapping[str, object], event_id: str) -> DerivedEvent | None:
        name = self._commands.get(str(alert["rule"]))
        if name is None or alert["state"] != "RAISED":
            return None
        command_id = derived_event_id("command", self._consumer, event_id)
        device_id = str(alert["device_id"])
        ts = alert["ts"]
        issued_at = ts if isinstance(ts, int) else 0
        payload: dict[str, object] = {
            "command_id": command_id,
            "device_id": device_id,
            "name": name,
            "params": {"rule": str(alert["rule"]), "alert_event_id": event_id},
            "issued_at": issued_at,
            "expires_at": None,
        }
        return DerivedEvent(
            command_id, self._commands_topic, device_id, "command", issued_at, payload
        )
