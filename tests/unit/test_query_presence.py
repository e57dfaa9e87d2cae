"""The presence fold: a device's latest connect or disconnect says whether it is online."""

from __future__ import annotations

from contracts.kafka import KafkaClientSettings
from streams.query.presence import Presence


def _event(kind: str, ts: int, reason: str | None = None) -> dict[str, bytes]:
    headers = {"kind": kind.encode(), "ts": str(ts).encode()}
    if reason is not None:
        headers["reason"] = reason.encode()
    return headers


def test_the_latest_event_decides_and_other_kinds_are_passed_over() -> None:
    presence = Presence(KafkaClientSettings(), "events", 0, max_devices=2)
    assert presence.of("d1")["online"] is None  # nothing seen yet
    assert (presence.of("d1")["since"], presence.of("d1")["since_ms"]) == (None, None)
    presence.take(b"d1", _event("CONNECTED", 1_000))
    assert presence.of("d1") == {
        "online": True,
        "since": "1970-01-01T00:00:01.000Z",
        "since_ms": 1_000,
        "reason": None,
        "caught_up": True,
    }
    presence.take(b"d1", _event("REGISTERED", 1_500))  # not a connection event
    presence.take(b"d1", _event("DISCONNECTED", 2_000, "keep-alive timeout"))
    assert presence.of("d1")["online"] is False
    assert presence.of("d1")["reason"] == "keep-alive timeout"
    presence.take(None, _event("CONNECTED", 3_000))  # no key: no device
    presence.take(b"d2", _event("CONNECTED", 3_000))
    presence.take(b"d3", _event("CONNECTED", 3_000))  # beyond max_devices: not tracked
    assert presence.of("d3")["online"] is None
    presence.take(b"d2", {"kind": b"CONNECTED", "ts": b"not a number"})
    assert presence.of("d2")["since_ms"] == 0


def test_the_online_count_follows_each_devices_latest_event() -> None:
    presence = Presence(KafkaClientSettings(), "events", 0)
    assert presence.online() == 0
    presence.take(b"d1", _event("CONNECTED", 1_000))
    presence.take(b"d2", _event("CONNECTED", 1_000))
    presence.take(b"d1", _event("CONNECTED", 1_500))  # a reconnect: still one device
    assert presence.online() == 2
    presence.take(b"d1", _event("DISCONNECTED", 2_000))
    presence.take(b"d3", _event("DISCONNECTED", 2_000))
    assert presence.online() == 1
