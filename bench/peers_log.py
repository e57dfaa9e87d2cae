"""The log ``bench.peers`` runs every system on, and the outcome the oracle expects of it.

The log is ``bench.stream_worker``'s (devices at 1 Hz, per-device ``seq`` and event time,
keyed and partitioned by device) with some records written again a little later in their
partition, as a producer retry does: a system that does not drop a repeated ``seq`` counts
those twice, and its counts and windows differ from the oracle's. The expected outcome is
``tests.oracle``'s projection of the log's events (each event once, exact), with our worker's
window sizes; a system is only timed as doing the work if its outcome equals it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from bench.peers_work import Outcome
from bench.stream_worker import make_records
from streams.decoding import telemetry_event
from streams.projections import DeviceState, WindowAggregate
from streams.projections.windows import DEFAULT_WINDOWS
from streams.store.port import Store
from tests.oracle import oracle

Record = tuple[int, str, dict[str, Any]]

REDELIVERY_LAG = 50
"""How many records later, at most, a redelivered record is written again."""


def peers_log(events: int, devices: int, redeliveries: int, seed: int = 11) -> list[Record]:
    """``events`` records: ``bench.stream_worker``'s, of which ``redeliveries`` are written
    twice (the second time up to ``REDELIVERY_LAG`` records later, same key and partition)."""
    original = make_records(events - redeliveries, devices)
    rng = random.Random(seed)
    again: dict[int, list[Record]] = {}
    last = len(original) - 1
    for index in rng.sample(range(last), redeliveries):
        at = min(last, index + rng.randint(1, REDELIVERY_LAG))
        again.setdefault(at, []).append(original[index])
    log: list[Record] = []
    for index, record in enumerate(original):
        log.append(record)
        log.extend(again.get(index, ()))
    return log


def expected(log: list[Record]) -> Outcome:
    """What every system must compute from ``log``: the oracle's device states and windows."""
    want = oracle((telemetry_event(record) for _, _, record in log), DEFAULT_WINDOWS, rules=())
    return projected(want.devices, want.windows)


def stored(store: Store) -> Outcome:
    """Our worker's outcome, read from its store."""
    return projected(store.devices(), store.windows())


def projected(devices: Iterable[DeviceState], windows: Iterable[WindowAggregate]) -> Outcome:
    """The outcome of our projections' rows (the store's, or the oracle's)."""
    outcome = Outcome()
    for device in devices:
        latest = {name: [v.value, v.ts] for name, v in device.metrics.items()}
        outcome.device(device.device_id, [device.count, latest])
    for w in windows:
        outcome.windows[(w.device_id, w.metric, w.size_ms, w.start_ms)] = (
            w.count,
            w.sum,
            w.min,
            w.max,
        )
    return outcome


def differences(got: Outcome, want: Outcome, most: int = 5) -> list[str]:
    """How ``got`` differs from ``want`` (empty when equal): counts, then a few examples."""
    found: list[str] = []
    for what, mine, theirs in (
        ("device", got.devices, want.devices),
        ("window", got.windows, want.windows),
    ):
        missing = sorted(set(theirs) - set(mine), key=str)
        extra = sorted(set(mine) - set(theirs), key=str)
        wrong = sorted((k for k in set(mine) & set(theirs) if mine[k] != theirs[k]), key=str)
        if missing:
            found.append(f"{len(missing)} {what}s missing, e.g. {missing[:most]}")
        if extra:
            found.append(f"{len(extra)} {what}s not expected, e.g. {extra[:most]}")
        if wrong:
            found.append(
                f"{len(wrong)} {what}s differ, e.g. "
                + "; ".join(f"{k}: {mine[k]} != {theirs[k]}" for k in wrong[:most])
            )
    return found
