"""Which gateway process holds each MQTT session, and the session's durable state (no I/O).

Every process of the edge reads one compacted topic (``iot.edge-sessions.v1``, key = client
id) from its start and folds it here. Two kinds of records:

* a **claim**, written by the process a client connects to before it answers CONNECT. Its
  offset is the session's new **epoch**: offsets only grow, so the latest claim of a client
  id wins, wherever and whenever it was written. The session's state carries over from the
  record before it unless the claim asks for a clean start, names another principal, or the
  session had expired by then.
* an **update** of the state by its holder (subscriptions, connected or not), stamped with
  the holder's epoch. An update with an older epoch than the current one comes from a holder
  that was taken over (a paused or cut-off process) and is ignored: it is fenced.

The holder of an older epoch learns from the same fold that it lost the session
(:class:`Takeover`) and closes its connection; until its view is fresh again it produces
nothing (``session_log.SessionLog.fresh``).

Session expiry is measured on the log's clock (:class:`LogClock`), never on a gateway's wall
clock: a holder whose clock jumps ahead would end sessions that left a moment ago, and a
claim stamped by such a clock would find them expired.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from iot_gateway.edge.sessions import Outgoing
from policy.topics import matches


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The durable state of one MQTT session."""

    client_id: str
    principal: str
    owner: str
    """The gateway process (``edge.instance``) that holds it, or last held it."""
    epoch: int
    """The offset of the claim that made ``owner`` its holder."""
    connected: bool
    expiry_s: int
    disconnected_at_ms: int | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    """Topic filter -> granted QoS."""
    outgoing: dict[int, Outgoing] = field(default_factory=dict)
    """Packet id -> command sent (or to send) at QoS 1 and not acknowledged yet."""

    def expired(self, at_ms: int) -> bool:
        """True if the session no longer existed at ``at_ms``."""
        if self.connected or self.disconnected_at_ms is None:
            return False
        return at_ms - self.disconnected_at_ms >= self.expiry_s * 1000

    def update(self) -> bytes:
        """This state as an update record's value."""
        return json.dumps(
            {
                "kind": "update",
                "principal": self.principal,
                "owner": self.owner,
                "epoch": self.epoch,
                "connected": self.connected,
                "expiry_s": self.expiry_s,
                "disconnected_at_ms": self.disconnected_at_ms,
                "subscriptions": self.subscriptions,
                "outgoing": [_command(pid, command) for pid, command in self.outgoing.items()],
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()


def _command(packet_id: int, command: Outgoing) -> dict[str, Any]:
    return {
        "packet_id": packet_id,
        "topic": command.topic,
        "payload": base64.b64encode(command.payload).decode(),
        "command_id": command.command_id,
        "expires_at": command.expires_at,
    }


def _outgoing(items: list[dict[str, Any]]) -> dict[int, Outgoing]:
    return {
        int(item["packet_id"]): Outgoing(
            str(item["topic"]),
            base64.b64decode(item["payload"], validate=True),
            str(item["command_id"]),
            None if item.get("expires_at") is None else int(item["expires_at"]),
        )
        for item in items
    }


def claim(*, principal: str, owner: str, clean_start: bool, expiry_s: int, at_ms: int) -> bytes:
    """A claim record's value: ``owner`` holds the session from this record's offset on."""
    return json.dumps(
        {
            "kind": "claim",
            "principal": principal,
            "owner": owner,
            "clean_start": clean_start,
            "expiry_s": expiry_s,
            "at_ms": at_ms,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


@dataclass(frozen=True, slots=True)
class Takeover:
    """``client_id`` is now held by ``owner`` at ``epoch``: older holders must let go."""

    client_id: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim made of the session: its state from then on, and whether an earlier
    session was resumed (CONNACK's session present)."""

    record: SessionRecord
    present: bool


LOG_APPEND_TIME = 1
"""A record's ``timestamp_type`` when the broker stamped it (the topic's
``message.timestamp.type=LogAppendTime``)."""


class LogClock:
    """The sessions log's time in ms: the newest time a broker stamped on a record this
    process read or wrote (``LogAppendTime``), carried forward by this process's monotonic
    clock. Until it has seen one (a topic that keeps the writers' own times), it is the wall
    clock, as every gateway's view of expiry then is."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall, self._mono = wall, mono
        self._base: float | None = None  # log time minus monotonic time, in ms

    @property
    def from_log(self) -> bool:
        """Whether a broker's time was seen (else this is the wall clock)."""
        return self._base is not None

    def seen(self, timestamp_ms: int | None, timestamp_type: int) -> None:
        """A record's time: taken if a broker stamped it and it is ahead of this clock."""
        if timestamp_ms is None or timestamp_type != LOG_APPEND_TIME or timestamp_ms < 0:
            return
        base = timestamp_ms - self._mono() * 1000
        if self._base is None or base > self._base:
            self._base = base

    def now_ms(self) -> int:
        if self._base is None:
            return int(self._wall() * 1000)
        return int(self._base + self._mono() * 1000)


class Directory:
    """The fold of the sessions topic (see the module docstring)."""

    def __init__(self, clock: LogClock | None = None) -> None:
        self.clock = clock or LogClock()
        self._latest: dict[str, SessionRecord] = {}
        self._claimed: dict[tuple[str, int], Claimed] = {}  # (client id, offset) of claims
        self.fenced = 0
        """Updates ignored because a newer claim had taken their session."""
        self.malformed = 0

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, client_id: str) -> SessionRecord | None:
        return self._latest.get(client_id)

    def claimed(self, client_id: str, offset: int) -> Claimed | None:
        """The outcome of the claim written at ``offset``, once it was folded (then forgotten)."""
        return self._claimed.pop((client_id, offset), None)

    def apply(
        self,
        client_id: str,
        value: bytes | None,
        offset: int,
        timestamp_ms: int | None = None,
        timestamp_type: int = 0,
    ) -> Takeover | None:
        """Folds one record; returns a :class:`Takeover` for a claim. A claim the broker
        stamped (``LOG_APPEND_TIME``) is dated by that stamp, else by its writer's clock."""
        self.clock.seen(timestamp_ms, timestamp_type)
        if value is None:
            self._latest.pop(client_id, None)
            return None
        try:
            document = json.loads(value)
            kind = document["kind"]
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return None
        if kind == "claim":
            logged = timestamp_ms if timestamp_type == LOG_APPEND_TIME else None
            return self._claim(client_id, document, offset, logged)
        if kind == "update":
            self._update(client_id, document)
        else:
            self.malformed += 1
        return None

    def _claim(
        self, client_id: str, document: dict[str, Any], offset: int, logged_ms: int | None
    ) -> Takeover | None:
        try:
            principal, owner = str(document["principal"]), str(document["owner"])
            clean, expiry_s, at_ms = (
                bool(document["clean_start"]),
                int(document["expiry_s"]),
                int(document["at_ms"]),
            )
        except (KeyError, TypeError, ValueError):
            self.malformed += 1
            return None
        at_ms = at_ms if logged_ms is None else logged_ms
        before = self._latest.get(client_id)
        present = not (
            clean or before is None or before.principal != principal or before.expired(at_ms)
        )
        carried = before if present and before is not None else None
        record = SessionRecord(
            client_id,
            principal,
            owner,
            offset,
            True,
            expiry_s,
            None,
            dict(carried.subscriptions) if carried else {},
            dict(carried.outgoing) if carried else {},
        )
        self._latest[client_id] = record
        self._claimed[client_id, offset] = Claimed(record, present)
        if len(self._claimed) > 10_000:  # claims nobody waits for (other processes')
            self._claimed.pop(next(iter(self._claimed)))
        return Takeover(client_id, owner, offset)

    def _update(self, client_id: str, document: dict[str, Any]) -> None:
        current = self._latest.get(client_id)
        try:
            epoch = int(document["epoch"])
            if current is not None and epoch < current.epoch:
                self.fenced += 1  # written by a holder that was taken over
                return
            disconnected = document.get("disconnected_at_ms")
            record = SessionRecord(
                client_id,
                str(document["principal"]),
                str(document["owner"]),
                epoch,
                bool(document["connected"]),
                int(document["expiry_s"]),
                None if disconnected is None else int(disconnected),
                {str(k): int(v) for k, v in dict(document["subscriptions"]).items()},
                _outgoing(list(document.get("outgoing", []))),
            )
        except (KeyError, TypeError, ValueError):
            self.malformed += 1
            return
        self._latest[client_id] = record

    def written(self, record: SessionRecord) -> None:
        """Takes an update this process just wrote, before it comes back through the topic."""
        current = self._latest.get(record.client_id)
        if current is None or record.epoch >= current.epoch:
            self._latest[record.client_id] = record

    def forget(self, client_id: str) -> None:
        """Drops a session this process just deleted, before its tombstone comes back."""
        self._latest.pop(client_id, None)

    def waiting_for(self, owner: str, topic: str) -> list[SessionRecord]:
        """Disconnected sessions ``owner`` last held with a filter matching ``topic``: their
        commands are queued in the topic's records until the device comes back."""
        return [
            r
            for r in self._latest.values()
            if r.owner == owner
            and not r.connected
            and any(matches(f, topic) for f in r.subscriptions)
        ]

    def expired(self, at_ms: int) -> list[SessionRecord]:
        """Disconnected sessions past their expiry at ``at_ms`` (their holder deletes them)."""
        return [r for r in self._latest.values() if r.expired(at_ms)]

    def released(self, record: SessionRecord, at_ms: int) -> SessionRecord:
        """``record`` as its holder leaves it: disconnected since ``at_ms``."""
        return replace(record, connected=False, disconnected_at_ms=at_ms)
