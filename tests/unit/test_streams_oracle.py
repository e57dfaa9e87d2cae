"""The oracle checks itself on hand-made logs: duplicates, gaps, hysteresis, late events."""

from __future__ import annotations

from tests.oracle import (
    BASE_TS,
    event,
    oracle,
)


def test_oracle_counts_duplicates_and_gaps() -> None:
    log = [
        event("a", 0, seq=1, temp=10.0),
        event("a", 1000, seq=4, temp=12.0),
        event("a", 500, seq=1, temp=10.0),
        event("a", 900, seq=3, temp=11.0),
    ]
    expected = oracle(log)
    (device,) = expected.devices
    assert (device.count, device.duplicates) == (3, 1)
    assert device.gaps == ((2, 2),)
    assert device.missing == 1
    assert device.metrics["temp"] == (12.0, BASE_TS + 1000)


def test_oracle_raises_once_per_crossing_with_hysteresis() -> None:
    values = [10.0, 26.0, 27.0, 22.0, 26.0, 19.0, 21.0, 30.0]
    log = [event("a", i * 1000, seq=i, temp=v) for i, v in enumerate(values)]
    kinds = [e.kind for e in oracle(log).derived]
    assert kinds == ["alert.raised", "alert.cleared", "alert.raised"]


def test_oracle_counts_late_events_per_window_size() -> None:
    log = [event("a", 100_000, seq=1, temp=1.0), event("a", 80_000, seq=2, temp=2.0)]
    (device,) = oracle(log).devices
    assert device.late == {"10s": 1}
