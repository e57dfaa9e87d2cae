"""The fault suite's checker: the platform's guarantees as invariants over a recorded history.

A history is what the run collected: every publish a broker acknowledged to a device (the
simulator's ledger, with when it was acknowledged), the Kafka log of telemetry, the DLQ's
reasons, the alerts published, the projections the workers built and the oracle's
projections of the same log, and when Mosquitto was killed. Every function here is pure, so
the unit tests feed it hand-built histories that break one invariant each.

A *reading* is what a device measured and sent once (however often it was published). Its
event id alone does not name it: a device that restarts its ``seq`` without a boot epoch
sends ``<device>:<seq>`` again for a new reading, and a reading with neither ``seq`` nor
``ts`` gets an event id holding the gateway's time, so each copy of it that reaches Kafka
is an event of its own (at least once, by contract). So a reading is named by its event id
and the device's ``ts``, and one with neither ``seq`` nor ``ts`` by its device and values.

Verdicts are ``PASS``, ``FAIL`` or ``LIMIT``: a loss the platform documents as outside its
guarantee (Mosquitto killed with SIGKILL before it saved its in-memory sessions) is counted
precisely under its own verdict and does not fail the run; any other loss does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from streams.projections import AlertState, DeviceState, WindowAggregate

GOOD_KINDS = frozenset({"ok", "duplicate"})
"""Ledger kinds of well-formed readings; every other kind is the DLQ reason of a bad payload."""

EXAMPLES = 5
"""How many offending items a verdict names."""

_Row = TypeVar("_Row")


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    LIMIT = "LIMIT"
    """A documented limit was hit (and measured); not a failure of the platform's contract."""


Values = tuple[tuple[str, float], ...]
"""A reading's metrics, sorted by name."""


def reading_name(
    device_id: str, event_id: str | None, seq: int | None, ts: int | None, values: Values
) -> str:
    """What names one reading in the ledger and in the log alike (see the module's doc):
    ``<event id>@<ts>``, ``<event id>`` without a device ``ts``, and ``<device>~<values>``
    without ``seq`` and ``ts``."""
    if seq is None and ts is None:
        return f"{device_id}~" + ",".join(f"{name}={value!r}" for name, value in values)
    return f"{event_id}@{ts}" if ts is not None else str(event_id)


@dataclass(frozen=True, slots=True)
class Ack:
    """One publish the broker acknowledged (PUBACK) to a device, some time in ``(after, by]``.

    ``kind`` is ``ok`` or ``duplicate`` (the same reading published again) for readings, else
    the DLQ reason the gateway must give the bad payload. A reading carries what the device
    sent: ``seq``, ``boot`` and ``ts`` where it sent them, the gateway's event id where the
    device can know it (``sent_id``), and its ``values``.
    """

    device_id: str
    seq: int | None
    kind: str
    after: float
    by: float
    boot: int | None = None
    ts: int | None = None
    sent_id: str | None = None
    values: Values = ()
    device_kind: str = ""
    """How the device numbers and dates its readings (the simulator's ``DeviceKind``)."""
    publishes: int = 1
    """How often the device published this message (again after a lost connection)."""

    @property
    def event_id(self) -> str | None:
        """The gateway's event id of a reading (``<device>[:<boot>]:<seq>``, or the hash the
        device computed); None for bad payloads and readings with neither seq nor ts."""
        if self.kind not in GOOD_KINDS:
            return None
        if self.sent_id is not None or self.seq is None:
            return self.sent_id
        epoch = "" if self.boot is None else f"{self.boot}:"
        return f"{self.device_id}:{epoch}{self.seq}"

    @property
    def reading(self) -> str | None:
        """The reading's name (:func:`reading_name`); None for bad payloads."""
        if self.kind not in GOOD_KINDS:
            return None
        return reading_name(self.device_id, self.event_id, self.seq, self.ts, self.values)


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the telemetry topic, where it is in the log. ``ts`` is the device's
    (None where the gateway stamped it); ``values`` are kept for a record without seq and ts."""

    partition: int
    offset: int
    event_id: str
    device_id: str
    seq: int | None
    boot: int | None = None
    ts: int | None = None
    values: Values = ()

    @property
    def reading(self) -> str:
        return reading_name(self.device_id, self.event_id, self.seq, self.ts, self.values)

    @property
    def event(self) -> tuple[str, int | None]:
        """One event of the platform: a reading, or one copy of a reading without seq and
        ts (its event id holds the gateway's time)."""
        return self.event_id, self.ts

    def label(self) -> str:
        """The reading as a person reads it: boot, seq and ts where it has them, else values."""
        fields = (("boot", self.boot), ("seq", self.seq), ("ts", self.ts))
        parts = [f"{name} {value}" for name, value in fields if value is not None]
        return " ".join(parts) if parts else self.reading


IN_TRANSIT_S = 0.5
"""How long after Mosquitto's SIGKILL a PUBACK it sent may still reach a device's callback
(the in-process simulator dates acks to 0.1 s and its loop serves 200 devices)."""


@dataclass(frozen=True, slots=True)
class BrokerCrash:
    """Mosquitto killed with SIGKILL at ``killed_at``; it last saved its persistence file at
    ``saved_at`` (same clock as the acks). A publish it acknowledged in between and had not
    yet handed to a gateway exists only in the memory that died."""

    saved_at: float
    killed_at: float
    restarted_at: float | None = None
    resubscribed_at: float | None = None
    """When the first gateway had its session (and subscription) back after the restart.

    Mosquitto 2.0 restores a persistent session's plain subscriptions from its file but not
    its *shared* ones: until a gateway subscribes again, a device's publish is PUBACKed with
    reason code 16 (no matching subscribers) and dropped."""

    def covers(self, ack: Ack) -> bool:
        """True if ``ack`` may have been sent between the last save and the kill. A PUBACK
        the device took in up to ``IN_TRANSIT_S`` after the kill (and before the restart) was
        still sent by the broker that died: it was on its way, in socket buffers or waiting
        for the device's event loop."""
        sent_by = self.killed_at + IN_TRANSIT_S
        if self.restarted_at is not None:
            sent_by = min(sent_by, self.restarted_at)
        return ack.after <= sent_by and ack.by >= self.saved_at

    def unsubscribed(self, ack: Ack) -> bool:
        """True if ``ack`` may have happened after the restart, before any gateway was back."""
        if self.restarted_at is None or self.resubscribed_at is None:
            return False
        return ack.after <= self.resubscribed_at and ack.by >= self.restarted_at

    def explains(self, ack: Ack) -> bool:
        return self.covers(ack) or self.unsubscribed(ack)


@dataclass(frozen=True, slots=True)
class Projections:
    """The three projections, as the store (or the oracle) holds them."""

    devices: Sequence[DeviceState]
    windows: Sequence[WindowAggregate]
    alerts: Sequence[AlertState]


@dataclass(frozen=True, slots=True)
class History:
    """Everything the checker looks at, collected after the faults stopped and all drained."""

    acks: Sequence[Ack]
    log: Sequence[Record]
    dlq_reasons: Sequence[str]
    """The ``reason`` header of every DLQ record."""
    projections: Projections
    oracle: Projections
    """The oracle's projections of the same log (each event id once, log order)."""
    expected_alerts: Collection[str]
    """Event ids of the derived alerts the oracle computed from the log."""
    published_alerts: Sequence[str]
    """The ``event_id`` header of every record on the alerts topic."""
    crashes: Sequence[BrokerCrash] = ()
    faults: Sequence[tuple[float, str]] = ()
    """When each injected fault started (the acks' clock) and what it was, to name the fault
    nearest to each order violation."""
    redelivering_broker: bool = False
    """A broker stands between the devices and the gateways (bridge mode) and may hand a
    publish to a gateway more than once; without one, every record comes from a publish."""
    exits: Sequence[tuple[float, str, int | None]] = ()
    """Platform processes that exited by themselves: (when, which, exit code)."""
    stop_codes: Mapping[str, int | None] = field(default_factory=dict)
    """Each platform process's exit code when stopped with SIGTERM at the end."""
    unready: Sequence[str] = ()
    """Processes not ready once the run drained (alive, but a part of them stopped)."""
    unfelt: Sequence[str] = ()
    """Faults whose effect was not seen where they were aimed, and why: a run whose faults
    did not happen proves nothing about them."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One invariant's outcome, with counts and a few offending examples."""

    name: str
    status: Status
    summary: str
    counts: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAIL


def _status(failed: bool) -> Status:
    return Status.FAIL if failed else Status.PASS


def _examples(items: Iterable[object]) -> tuple[str, ...]:
    return tuple(str(item) for item in sorted(items, key=str)[:EXAMPLES])


def _acks_by_reading(acks: Iterable[Ack]) -> dict[str, list[Ack]]:
    """The acknowledged publishes of each reading, in ledger order."""
    by_reading: dict[str, list[Ack]] = {}
    for ack in acks:
        if ack.reading is not None:
            by_reading.setdefault(ack.reading, []).append(ack)
    return by_reading


def _sent(copies: Sequence[Ack]) -> int:
    """How many readings share one name: the acknowledged ``ok`` copies (at least one).
    Two only where a device without seq and ts measured the same values twice."""
    return max(1, sum(1 for ack in copies if ack.kind == "ok"))


def _logged(log: Iterable[Record]) -> dict[str, set[str]]:
    """The distinct event ids in the log of each reading."""
    logged: dict[str, set[str]] = {}
    for record in log:
        logged.setdefault(record.reading, set()).add(record.event_id)
    return logged


def _crash_loss(history: History) -> tuple[dict[str, int], dict[str, int]]:
    """Acknowledged readings missing from the log, by name: (explained by a broker crash,
    unexplained). A reading sent ``n`` times over (equal values, no seq, no ts) must have
    ``n`` events in the log. A loss is explained when every acknowledged copy of the reading
    falls in a crash window."""
    logged = _logged(history.log)
    explained: dict[str, int] = {}
    unexplained: dict[str, int] = {}
    for reading, copies in _acks_by_reading(history.acks).items():
        short = _sent(copies) - len(logged.get(reading, ()))
        if short <= 0:
            continue
        if all(any(crash.explains(ack) for crash in history.crashes) for ack in copies):
            explained[reading] = short
        else:
            unexplained[reading] = short
    return explained, unexplained


def check_no_acked_loss(history: History) -> Verdict:
    """Every reading a broker acknowledged to a device is in the Kafka log, matched by its
    name (event id and device ``ts``; device and values without seq and ts)."""
    acked = _acks_by_reading(history.acks)
    logged = _logged(history.log)
    explained, unexplained = _crash_loss(history)
    readings = sum(_sent(copies) for copies in acked.values())
    lost, lost_in_crash = sum(unexplained.values()), sum(explained.values())
    by_kind = Counter(copies[0].device_kind for copies in acked.values() if copies[0].device_kind)
    counts = {
        "acked_readings": readings,
        "in_log": readings - lost - lost_in_crash,
        "lost": lost,
        "lost_in_broker_crash": lost_in_crash,
        "in_log_not_acked": len(logged.keys() - acked.keys()),
        **{f"acked_readings.{kind}": n for kind, n in sorted(by_kind.items())},
    }
    windows = (
        f" (+{lost_in_crash:,} in Mosquitto crash windows, see acked_lost_in_mosquitto_crash)"
        if history.crashes
        else ""
    )
    return Verdict(
        "no_acked_loss",
        _status(bool(unexplained)),
        f"{counts['in_log']:,} of {readings:,} acknowledged readings in the log, "
        f"{lost:,} lost{windows}",
        counts,
        _examples(unexplained),
    )


def check_mosquitto_crash_loss(history: History) -> Verdict:
    """Acknowledged readings lost to a Mosquitto SIGKILL and restart: a documented limit.

    Two ways, counted apart: (1) Mosquitto 2.0 acknowledges a QoS 1 publish once it is
    queued in memory and saves its persistence file only every ``autosave_interval``; what
    it had not yet handed to a gateway dies with it. (2) It does not restore the gateways'
    shared subscriptions from that file: until a gateway is back, publishes are PUBACKed
    (reason code 16, no matching subscribers) and dropped. Never a failure; counted
    precisely by the window each loss falls in.
    """
    explained, _ = _crash_loss(history)
    acked = _acks_by_reading(history.acks)
    unsaved = sum(
        n
        for reading, n in explained.items()
        if all(any(c.covers(a) for c in history.crashes) for a in acked[reading])
    )
    lost = sum(explained.values())
    windows = [crash.killed_at - crash.saved_at for crash in history.crashes]
    gaps = [
        crash.resubscribed_at - crash.restarted_at
        for crash in history.crashes
        if crash.resubscribed_at is not None and crash.restarted_at is not None
    ]
    counts = {
        "crashes": len(history.crashes),
        "lost": lost,
        "lost_unsaved": unsaved,
        "lost_no_subscriber": lost - unsaved,
        "acked_in_windows": sum(
            1 for ack in history.acks if any(c.explains(ack) for c in history.crashes)
        ),
        "bad_acked_in_windows": sum(
            1
            for ack in history.acks
            if ack.kind not in GOOD_KINDS and any(c.explains(ack) for c in history.crashes)
        ),
        "longest_unsaved_window_ms": round(max(windows, default=0.0) * 1000),
        "longest_unsubscribed_window_ms": round(max(gaps, default=0.0) * 1000),
    }
    return Verdict(
        "acked_lost_in_mosquitto_crash",
        Status.LIMIT if explained else Status.PASS,
        f"{lost:,} acknowledged readings lost in {len(history.crashes)} Mosquitto "
        f"SIGKILL(s): {unsaved:,} unsaved (up to "
        f"{counts['longest_unsaved_window_ms']} ms since its last save), "
        f"{lost - unsaved:,} dropped before a gateway subscribed again (up to "
        f"{counts['longest_unsubscribed_window_ms']} ms)",
        counts,
        _examples(explained),
    )


def check_applied_once(history: History) -> Verdict:
    """No event applied twice: each device's applied count is its distinct events in the log.

    An event is an event id with the device's ``ts``: a device that restarted its ``seq``
    without a boot epoch sends an event id again with a later ``ts``, a new reading. A
    reading without seq and ts is at least once by contract: each copy of it that reached
    the log has its own event id (the gateway's time is in it) and is an event; those
    copies are counted, not failed, unless there are more of them than the device published
    (where no broker redelivers: direct mode). Any other record with an event already in
    the log must have been absorbed.
    """
    distinct: dict[str, set[tuple[str, int | None]]] = {}
    times: dict[str, set[int | None]] = {}
    for record in history.log:
        distinct.setdefault(record.device_id, set()).add(record.event)
        times.setdefault(record.event_id, set()).add(record.ts)
    logged = _logged(history.log)
    bare = {
        reading: copies
        for reading, copies in _acks_by_reading(history.acks).items()
        if copies[0].seq is None and copies[0].ts is None
    }
    copies = sum(max(0, len(logged.get(r, ())) - _sent(acks)) for r, acks in bare.items())
    beyond = {
        reading: extra
        for reading, acks in bare.items()
        if (extra := len(logged.get(reading, ())) - sum(ack.publishes for ack in acks)) > 0
    }
    unpublished = {} if history.redelivering_broker else beyond
    applied = {device.device_id: device.count for device in history.projections.devices}
    twice = {
        d: n - len(distinct.get(d, ())) for d, n in applied.items() if n > len(distinct.get(d, ()))
    }
    missing = {d for d, events in distinct.items() if applied.get(d, 0) < len(events)}
    events = sum(len(e) for e in distinct.values())
    counts = {
        "devices": len(distinct),
        "distinct_events": events,
        "applied": sum(applied.values()),
        "redelivered_records": len(history.log) - events,
        "absorbed_duplicates": sum(device.duplicates for device in history.projections.devices),
        "event_ids_of_several_readings": sum(1 for ts in times.values() if len(ts) > 1),
        "copies_at_least_once": copies,
        "copies_beyond_publishes": sum(beyond.values()),
        "applied_twice": sum(twice.values()),
        "devices_under_applied": len(missing),
    }
    return Verdict(
        "no_event_applied_twice",
        _status(bool(twice or unpublished)),
        f"{counts['applied']:,} events applied for {events:,} distinct in the log "
        f"({counts['redelivered_records']:,} redelivered records absorbed; {copies:,} copies of "
        f"readings without seq or ts applied as events of their own, at least once by "
        f"contract; {sum(unpublished.values()):,} more than published), "
        f"{counts['applied_twice']:,} applied twice",
        counts,
        _examples(
            [
                *(f"{d}: +{n}" for d, n in twice.items()),
                *(f"{r}: {n} more than published" for r, n in unpublished.items()),
            ]
        ),
    )


def _nearest_fault(faults: Sequence[tuple[float, str]], at: float | None) -> str:
    if at is None or not faults:
        return "no fault"
    start, label = min(faults, key=lambda fault: abs(fault[0] - at))
    return label if abs(start - at) <= 30 else "no fault"


def _sending_order(acks: Iterable[Ack]) -> tuple[dict[str, int], dict[str, float]]:
    """Each reading's place in its device's sending order (the ledger's: a device sends one
    reading at a time, the next only after the PUBACK of the one before), and when it was
    first acknowledged. A name shared by several readings (equal values, no seq, no ts)
    has no place."""
    places: dict[str, int] = {}
    acked_at: dict[str, float] = {}
    following: Counter[str] = Counter()
    for reading, copies in _acks_by_reading(acks).items():  # by first acknowledgement
        device_id = copies[0].device_id
        acked_at[reading] = min(ack.by for ack in copies)
        if _sent(copies) == 1:
            places[reading] = following[device_id]
        following[device_id] += 1
    return places, acked_at


def check_per_device_order(history: History) -> Verdict:
    """Per device, one partition, and its readings first appear in the log in the order the
    device sent them.

    The order sent is the ledger's, so a restart (a new boot epoch, or ``seq`` from 0 again
    without one) is no violation and is counted apart, while a new reading logged behind a
    later one is, whatever its ``seq``. A redelivered record (a reading already in the log)
    may come later. Each violation is counted against the injected fault nearest to when its
    reading was acknowledged.
    """
    places, acked_at = _sending_order(history.acks)
    partitions: dict[str, set[int]] = {}
    highest: dict[str, tuple[int, Record]] = {}
    seen: set[str] = set()
    violations: list[str] = []
    devices: set[str] = set()
    near: Counter[str] = Counter()
    checked = restarts = unplaced = 0
    for record in sorted(history.log, key=lambda r: (r.partition, r.offset)):
        partitions.setdefault(record.device_id, set()).add(record.partition)
        reading = record.reading
        if reading in seen:
            continue
        seen.add(reading)
        place = places.get(reading)
        if place is None:
            unplaced += 1
            continue
        checked += 1
        top = highest.get(record.device_id)
        if top is not None and place < top[0]:
            violations.append(
                f"{record.device_id} {record.label()} after {top[1].label()} "
                f"(partition {record.partition} offset {record.offset})"
            )
            devices.add(record.device_id)
            near[_nearest_fault(history.faults, acked_at.get(reading))] += 1
            continue
        if top is not None and _restarted(top[1], record):
            restarts += 1
        highest[record.device_id] = (place, record)
    split = {d for d, parts in partitions.items() if len(parts) > 1}
    counts = {
        "devices": len(partitions),
        "readings": checked,
        "readings_not_acked_or_ambiguous": unplaced,
        "restarts_in_order": restarts,
        "out_of_order": len(violations),
        "devices_out_of_order": len(devices),
        "devices_in_several_partitions": len(split),
        **{f"out_of_order_near.{label}": n for label, n in sorted(near.items())},
    }
    where = ", ".join(f"{n:,} near {label}" for label, n in near.most_common())
    return Verdict(
        "per_device_order",
        _status(bool(violations or split)),
        f"{checked:,} readings of {len(partitions):,} devices in the order sent "
        f"({restarts:,} sequence restarts among them): {len(violations):,} out of "
        f"order ({len(devices)} devices{'; ' + where if where else ''}), "
        f"{len(split)} devices in several partitions",
        counts,
        tuple(violations[:EXAMPLES]) + _examples(f"{d} in several partitions" for d in split),
    )


def _restarted(before: Record, after: Record) -> bool:
    """Whether ``after``, sent after ``before``, starts a new sequence."""
    if before.seq is None or after.seq is None:
        return False
    return after.boot != before.boot or after.seq <= before.seq


def _diff(
    actual: Sequence[_Row], expected: Sequence[_Row], key: Callable[[_Row], Hashable]
) -> tuple[int, list[str]]:
    """How many keys differ (missing, extra or unequal) and a few of them."""
    mine = {key(item): item for item in actual}
    theirs = {key(item): item for item in expected}
    differ = [k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)]
    return len(differ), [str(k) for k in differ]


def check_projections(history: History) -> Verdict:
    """The store's projections equal the oracle's over the same log, row for row."""
    actual, expected = history.projections, history.oracle
    devices, bad_devices = _diff(actual.devices, expected.devices, lambda d: d.device_id)
    windows, bad_windows = _diff(
        actual.windows, expected.windows, lambda w: (w.device_id, w.metric, w.size_ms, w.start_ms)
    )
    alerts, bad_alerts = _diff(actual.alerts, expected.alerts, lambda a: (a.device_id, a.rule))
    counts = {
        "devices": len(expected.devices),
        "windows": len(expected.windows),
        "alert_states": len(expected.alerts),
        "devices_differ": devices,
        "windows_differ": windows,
        "alert_states_differ": alerts,
    }
    differ = devices + windows + alerts
    return Verdict(
        "projections_equal_oracle",
        _status(differ > 0 or not expected.devices),
        f"{len(expected.devices):,} devices, {len(expected.windows):,} windows, "
        f"{len(expected.alerts):,} alert states compared: {differ:,} differ",
        counts,
        _examples([*bad_devices, *bad_windows, *bad_alerts]),
    )


def check_alerts(history: History) -> Verdict:
    """Every derived alert is published, and after dedupe by event id exactly once; nothing
    is published that the log does not derive."""
    expected = set(history.expected_alerts)
    published = Counter(history.published_alerts)
    missing = expected - published.keys()
    unexpected = published.keys() - expected
    counts = {
        "derived": len(expected),
        "published_records": sum(published.values()),
        "published_distinct": len(published),
        "redelivered": sum(n - 1 for n in published.values()),
        "missing": len(missing),
        "unexpected": len(unexpected),
    }
    return Verdict(
        "alerts_exactly_once_after_dedupe",
        _status(bool(missing or unexpected) or not expected),
        f"{len(expected):,} derived alerts, {len(published):,} distinct published "
        f"({counts['redelivered']:,} redelivered): {len(missing)} missing, "
        f"{len(unexpected)} unexpected",
        counts,
        _examples([*(f"missing {m}" for m in missing), *(f"unexpected {u}" for u in unexpected)]),
    )


def check_dlq(history: History) -> Verdict:
    """Every acknowledged bad payload is in the DLQ with its reason, counted by reason, and
    the DLQ holds no other reasons. A shortfall is explained only by bad payloads
    acknowledged within a Mosquitto crash window (they may have died with it)."""
    acked = Counter(ack.kind for ack in history.acks if ack.kind not in GOOD_KINDS)
    covered = Counter(
        ack.kind
        for ack in history.acks
        if ack.kind not in GOOD_KINDS and any(c.explains(ack) for c in history.crashes)
    )
    dlq = Counter(history.dlq_reasons)
    short = {r: n - dlq[r] for r, n in acked.items() if dlq[r] < n}
    unexplained = {r: n for r, n in short.items() if n > covered[r]}
    unexpected = {r: n for r, n in dlq.items() if r not in acked}
    counts: dict[str, int] = {
        "rejected_acked": sum(acked.values()),
        "dlq_records": sum(dlq.values()),
        "missing": sum(unexplained.values()),
        "missing_in_broker_crash": sum(short.values()) - sum(unexplained.values()),
        "unexpected_reason_records": sum(unexpected.values()),
    }
    for reason in sorted(acked.keys() | dlq.keys()):
        counts[f"acked.{reason}"] = acked[reason]
        counts[f"dlq.{reason}"] = dlq[reason]
    by_reason = ", ".join(f"{r} {dlq[r]}/{acked[r]}" for r in sorted(acked.keys() | dlq.keys()))
    return Verdict(
        "dlq_accounts_for_rejected",
        _status(bool(unexplained or unexpected) or not acked),
        f"DLQ/acked by reason: {by_reason or 'none'}",
        counts,
        _examples(
            [
                *(f"{r}: {n} missing" for r, n in unexplained.items()),
                *(f"{r}: {n} unexpected" for r, n in unexpected.items()),
            ]
        ),
    )


def check_ride_through(history: History) -> Verdict:
    """No gateway or worker exits by itself, whatever the faults (the harness restarts one
    that does, so the run can go on, but that is a failure), each is ready again once the
    faults are over (a process alive with a part of it stopped is no better), and each stops
    cleanly on SIGTERM at the end."""
    unclean = {name: code for name, code in history.stop_codes.items() if code != 0}
    processes = len(history.stop_codes)
    return Verdict(
        "processes_ride_through",
        _status(bool(history.exits or unclean or history.unready)),
        f"{processes} processes: {len(history.exits)} exits by themselves, "
        f"{len(history.unready)} not ready at the end, {len(unclean)} unclean stops",
        {
            "exits": len(history.exits),
            "unready": len(history.unready),
            "unclean_stops": len(unclean),
        },
        _examples(
            [
                *(f"{name} exited ({code}) at {at:.1f}s" for at, name, code in history.exits),
                *(f"{name} not ready after the faults" for name in history.unready),
                *(f"{name} stopped with exit code {code}" for name, code in unclean.items()),
            ]
        ),
    )


def check_faults_took_effect(history: History) -> Verdict:
    """Each fault whose effect the suite can see took effect: a stepped clock was seen going
    back by its gateway, a full disk stopped its server or had its writes refused, a slow link
    made its gateway's records take at least its round trip to Kafka."""
    return Verdict(
        "faults_took_effect",
        _status(bool(history.unfelt)),
        f"{len(history.faults)} faults injected, {len(history.unfelt)} not seen taking effect",
        {"unfelt": len(history.unfelt)},
        _examples(list(history.unfelt)),
    )


CHECKS: tuple[Callable[[History], Verdict], ...] = (
    check_no_acked_loss,
    check_mosquitto_crash_loss,
    check_applied_once,
    check_per_device_order,
    check_projections,
    check_alerts,
    check_dlq,
    check_ride_through,
    check_faults_took_effect,
)


def check(history: History) -> list[Verdict]:
    """Every invariant's verdict, in a fixed order. The Mosquitto crash verdict only where
    Mosquitto was killed (bridge mode): in direct mode no loss is explained by anything."""
    return [
        run(history) for run in CHECKS if run is not check_mosquitto_crash_loss or history.crashes
    ]


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """One line per verdict (and its examples), then the overall outcome."""
    width = max(len(v.name) for v in verdicts)
    lines = []
    for verdict in verdicts:
        lines.append(f"{verdict.status:<5} {verdict.name:<{width}}  {verdict.summary}")
        lines.extend(f"{'':<5} {'':<{width}}    e.g. {example}" for example in verdict.examples)
    failed = [v.name for v in verdicts if not v.ok]
    limited = [v.name for v in verdicts if v.status is Status.LIMIT]
    if failed:
        lines.append("FAILED: " + ", ".join(failed))
    elif limited:
        lines.append(
            "DATA LOST within the documented limit of bridge mode: "
            + ", ".join(limited)
            + " (acknowledged readings a device will not send again are gone)"
        )
    else:
        lines.append("all invariants hold")
    return "\n".join(lines)


def verdicts_json(verdicts: Sequence[Verdict], **run: Any) -> str:
    """The verdicts and the run's facts (seed, schedule, times) as a JSON document."""
    return json.dumps(
        {
            "ok": all(v.ok for v in verdicts),
            **run,
            "verdicts": [
                {
                    "name": v.name,
                    "status": str(v.status),
                    "summary": v.summary,
                    "counts": dict(v.counts),
                    "examples": list(v.examples),
                }
                for v in verdicts
            ],
        },
        indent=2,
    )
