"""MQTT sessions of the edge: what outlives one connection of a client id (no I/O here).

A session holds the client's subscriptions, the QoS 2 packet ids whose PUBREC was sent and
whose PUBREL has not arrived (so a resent PUBLISH is not ingested twice), and the commands
sent at QoS 1 and not yet acknowledged (resent when the client comes back). One session per
client id per process; a session belongs to the principal that created it, and another
principal may not take it over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import mqtt5

from policy.topics import matches


class Holder(Protocol):
    """The connection a session is attached to (see ``connection.EdgeConnection``)."""

    def take_over(self) -> None:
        """Closes the connection because a newer one took its session (MQTT 5: 0x8E)."""
        ...

    def send(self, packet: mqtt5.Packet) -> None:
        """Writes ``packet`` to the client."""
        ...


@dataclass(slots=True)
class Outgoing:
    """A QoS 1 PUBLISH to the client, kept until its PUBACK."""

    topic: str
    payload: bytes
    command_id: str
    expires_at: int | None = None
    """Epoch milliseconds after which it is not sent again."""

    def publish(self, packet_id: int, *, again: bool) -> mqtt5.PublishPacket:
        return mqtt5.PublishPacket(
            self.topic,
            self.payload,
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            packet_id=packet_id,
            duplicate=again,
        )


@dataclass(slots=True)
class Session:
    client_id: str
    principal: str
    expiry_s: int
    """Seconds the session outlives its connection (0: it ends with it)."""
    subscriptions: dict[str, int] = field(default_factory=dict)
    """Topic filter -> granted QoS."""
    awaiting_release: set[int] = field(default_factory=set)
    """QoS 2 packet ids acknowledged with PUBREC, waiting for PUBREL."""
    outgoing: dict[int, Outgoing] = field(default_factory=dict)
    """Packet id -> command sent at QoS 1 and not acknowledged."""
    holder: Holder | None = None
    disconnected_at: float | None = None
    disconnected_at_ms: int | None = None
    """Wall clock of ``disconnected_at``, for the sessions topic."""
    epoch: int = -1
    """The offset of this process's claim of the session (-1: no sessions topic)."""
    _next_packet_id: int = 0

    def subscribed(self, topic: str) -> bool:
        """True if one of the session's filters matches ``topic``."""
        return any(matches(f, topic) for f in self.subscriptions)

    def next_packet_id(self) -> int | None:
        """A packet id free for a PUBLISH to the client; None when all 65,535 are in use."""
        if len(self.outgoing) >= 65_535:
            return None
        while True:
            self._next_packet_id = self._next_packet_id % 65_535 + 1
            if self._next_packet_id not in self.outgoing:
                return self._next_packet_id


class SessionTable:
    """The sessions of one edge process, by client id."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, client_id: str) -> Session | None:
        return self._sessions.get(client_id)

    def open(
        self, client_id: str, principal: str, *, clean_start: bool, expiry_s: int, holder: Holder
    ) -> tuple[Session, bool] | None:
        """The session ``holder`` continues or starts, and whether one was present.

        A connection still holding the session is taken over (closed). None if the session
        belongs to another principal (the caller refuses the CONNECT).
        """
        existing = self._sessions.get(client_id)
        if existing is not None and existing.principal != principal:
            return None
        if existing is not None and existing.holder is not None and existing.holder is not holder:
            previous, existing.holder = existing.holder, None
            previous.take_over()
        if existing is None or clean_start:
            session = Session(client_id, principal, expiry_s)
            present = False
        else:
            session, present = existing, True
            session.expiry_s = expiry_s
        session.holder = holder
        session.disconnected_at = session.disconnected_at_ms = None
        self._sessions[client_id] = session
        return session, present

    def release(self, session: Session, holder: Holder, now: float, now_ms: int = 0) -> None:
        """``holder`` is gone: the session ends now, or at ``now + expiry_s``."""
        if session.holder is not holder:
            return  # taken over: the newer connection holds it
        session.holder = None
        session.disconnected_at_ms = now_ms
        if session.expiry_s == 0:
            self.drop(session)
        else:
            session.disconnected_at = now

    def drop(self, session: Session) -> None:
        """Forgets ``session`` here (it ended, or another process holds it now)."""
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]

    def expire(self, now: float) -> int:
        """Forgets disconnected sessions past their expiry; returns how many."""
        gone = [
            s.client_id
            for s in self._sessions.values()
            if s.holder is None
            and s.disconnected_at is not None
            and now - s.disconnected_at >= s.expiry_s
        ]
        for client_id in gone:
            del self._sessions[client_id]
        return len(gone)

    def subscribers(self, topic: str) -> list[Session]:
        """Sessions (connected or not) with a filter matching ``topic``."""
        return [s for s in self._sessions.values() if s.subscriptions and s.subscribed(topic)]
