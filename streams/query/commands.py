"""Commands sent over HTTP: ``POST /api/devices/{device_id}/commands``.

A command takes the path the alert notifier's commands take: one outbox row appended in the
store transaction that records its ``command_id`` (``TrackingStore.apply_once``), published
by the worker's outbox relay to the commands topic (key = device id) and handed by the
gateway holding the device's session to ``devices/{id}/commands``. So a request retried with
the same ``command_id`` appends nothing the second time (``duplicate``), and a command
accepted here is published at least once, even if the worker stops before the relay ran.

Who may send is the policy's HTTP rule for the topic ``devices/{id}/commands`` (see
:mod:`streams.query.auth`): a token allowed to read a device's telemetry is not thereby
allowed to command it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.times import time_fields
from streams.domain import DerivedEvent
from streams.query.errors import BadParameterError
from streams.store.port import OnceResult, StoreTransaction, TrackingStore

__all__ = [
    "MAX_NAME",
    "MAX_PARAMS",
    "MAX_TTL_S",
    "MAX_VALUE",
    "CommandOutbox",
    "CommandRequest",
    "command_json",
    "parse_command",
]

MAX_TTL_S = 7 * 86_400
MAX_NAME = 128
MAX_PARAMS = 32
MAX_VALUE = 1024


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A checked request: what the device will receive, and when it stops being worth it."""

    command_id: str
    device_id: str
    name: str
    params: Mapping[str, str]
    issued_at: int
    expires_at: int | None


def _text(value: object, parameter: str, longest: int) -> str:
    if not isinstance(value, str) or not value or len(value) > longest or "\x00" in value:
        raise BadParameterError(parameter, f"must be a string of 1..{longest} characters")
    return value


def parse_command(device_id: str, body: object, now_ms: int) -> CommandRequest:
    """The request body ``{"name", "params"?, "ttl_s"?, "command_id"?}`` checked; every
    problem is a BadParameterError naming the field. Without ``command_id`` a new one is
    made (then a retried request is a new command)."""
    if not isinstance(body, dict):
        raise BadParameterError("body", "expected a JSON object")
    unknown = set(body) - {"name", "params", "ttl_s", "command_id"}
    if unknown:
        raise BadParameterError(sorted(unknown)[0], "unknown field")
    name = _text(body.get("name"), "name", MAX_NAME)
    raw_params = body.get("params", {})
    if not isinstance(raw_params, dict) or len(raw_params) > MAX_PARAMS:
        raise BadParameterError("params", f"must be an object of at most {MAX_PARAMS} strings")
    params = {
        _text(key, "params", MAX_NAME): _text(value, f"params.{key}", MAX_VALUE)
        for key, value in raw_params.items()
    }
    ttl = body.get("ttl_s")
    if "ttl_s" in body and ttl is None:
        raise BadParameterError("ttl_s", "leave it out to send a command that never expires")
    if isinstance(ttl, float) and ttl.is_integer():
        ttl = int(ttl)  # JSON Schema's integer: 60.0 is 60
    if ttl is not None and (
        not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL_S
    ):
        raise BadParameterError("ttl_s", f"must be an integer 1..{MAX_TTL_S} (seconds)")
    command_id = body.get("command_id", uuid.uuid4().hex)
    command_id = _text(command_id, "command_id", MAX_NAME)
    expires_at = None if ttl is None else now_ms + ttl * 1000
    return CommandRequest(command_id, device_id, name, params, now_ms, expires_at)


class CommandOutbox:
    """Appends commands to the outbox, each ``command_id`` at most once."""

    def __init__(
        self, store: TrackingStore, topic: str, *, consumer: str = "http-commands"
    ) -> None:
        self._store = store
        self._topic = topic
        self._consumer = consumer

    def send(self, command: CommandRequest) -> OnceResult[DerivedEvent]:
        """Appends ``command`` in one store transaction with its id's record; ``applied``
        False means that id was sent already (nothing appended). Store errors propagate."""
        payload: dict[str, object] = {
            "command_id": command.command_id,
            "device_id": command.device_id,
            "name": command.name,
            "params": dict(command.params),
            "issued_at": command.issued_at,
            "expires_at": command.expires_at,
        }
        event = DerivedEvent(
            command.command_id,
            self._topic,
            command.device_id,
            "command",
            command.issued_at,
            payload,
        )

        def effect(tx: StoreTransaction) -> DerivedEvent:
            tx.append_outbox([event])
            return event

        return self._store.apply_once(self._consumer, command.command_id, command.issued_at, effect)


def command_json(command: CommandRequest, *, duplicate: bool) -> dict[str, object]:
    """The answer to a command request."""
    return {
        "command_id": command.command_id,
        "device_id": command.device_id,
        "name": command.name,
        "params": dict(command.params),
        **time_fields("issued_at", command.issued_at),
        **time_fields("expires_at", command.expires_at),
        "duplicate": duplicate,
    }
