"""Unit tests of the pieces: sequence window, windows and lateness, alert rules, the recent-id
ring, the relay seam and the processor's bookkeeping (SQLite, no services)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from streams import BatchProcessor, ConfigError, SkipReason
from streams.projections import (
    Admission,
    AlertRule,
    Projector,
    SeqWindow,
    WindowSpec,
    hash_rows,
    load_alert_rules,
    parse_alert_rules,
    window_start,
)
from streams.projections.device import DeviceTracker
from streams.relay import OutboxRelay
from streams.store import OutboxRecord, SqliteStore
from tests.oracle import BASE_TS, RULES, WINDOWS, event, make_log

CONFIG = Path(__file__).resolve().parents[2] / "config" / "alerts.example.yaml"


def admit_all(tracker: DeviceTracker, seqs: Sequence[int], window: SeqWindow) -> list[Admission]:
    return [tracker.admit(seq, window) for seq in seqs]


# -- sequence window -----------------------------------------------------------------------


def test_late_arrivals_fill_gaps_and_repeats_are_duplicates() -> None:
    tracker, window = DeviceTracker("a", 0), SeqWindow()
    verdicts = admit_all(tracker, [5, 9, 7, 7, 6, 5, 3, 3], window)
    assert verdicts == [
        Admission.NEW,
        Admission.NEW,
        Admission.NEW,
        Admission.DUPLICATE,
        Admission.NEW,
        Admission.DUPLICATE,
        Admission.NEW,
        Admission.DUPLICATE,
    ]
    assert tracker.gaps == [(4, 4), (8, 8)]
    assert (tracker.first_seq, tracker.last_seq, tracker.missing) == (3, 9, 2)


def test_gaps_beyond_the_window_are_written_off_and_counted_lost() -> None:
    tracker, window = DeviceTracker("a", 0), SeqWindow(size=100, max_gaps=2)
    admit_all(tracker, [0, 10, 20, 30], window)  # three gaps, only two kept
    assert tracker.gaps == [(11, 19), (21, 29)]
    assert (tracker.lost, tracker.missing, tracker.seq_floor) == (9, 18, 10)
    assert tracker.admit(5, window) is Admission.OUT_OF_WINDOW
    assert tracker.admit(15, window) is Admission.NEW
    tracker.admit(200, window)
    assert tracker.gaps == [(101, 199)]
    assert tracker.lost == 9 + 8 + 9 + 70
    assert tracker.missing == 99


def test_out_of_window_events_are_counted_not_dropped_silently() -> None:
    projector = Projector(WINDOWS, RULES, SeqWindow(size=10))
    projector.apply(event("a", 5, seq=100, temp=1.0))
    assert projector.apply(event("a", 1, seq=50, temp=2.0)) is Admission.OUT_OF_WINDOW
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.out_of_window, state.metrics["temp"].value) == (1, 1, 1.0)


# -- device restarts (finding 1: a device restarting seq at 0 was dropped for good) ----------


def test_a_device_restarting_seq_without_a_boot_epoch_is_recognised_by_its_clock() -> None:
    projector = Projector(WINDOWS, RULES)
    for n in range(500):
        projector.apply(event("a", n * 10, seq=n, temp=1.0))
    projector.apply(event("a", 4000, seq=510, temp=1.0))  # 500..509 missing when it reboots
    admissions = [projector.apply(event("a", 6000 + n, seq=n, temp=2.0)) for n in range(100)]
    assert admissions == [Admission.NEW] * 100
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.seq_resets, state.duplicates) == (601, 1, 0)
    assert (state.first_seq, state.last_seq, state.missing, state.lost) == (0, 99, 0, 10)
    assert state.metrics["temp"].value == 2.0


def test_a_reading_of_the_sequence_before_a_restart_redelivered_after_it_is_not_applied() -> None:
    """Bridge-mode fault run (seed 77048): a broker redelivered a reading of the old sequence
    after the device restarted without a boot epoch; its seq was above the new sequence's,
    so the new window called it new and it was applied twice."""
    projector = Projector(WINDOWS, RULES)
    old = [event("a", n * 10, seq=n, temp=1.0) for n in range(100)]
    for item in old:
        projector.apply(item)
    for n in range(5):  # restarted at seq 0, clock running on
        assert projector.apply(event("a", 5000 + n, seq=n, temp=2.0)) is Admission.NEW
    assert projector.apply(old[97]) is Admission.OUT_OF_WINDOW  # above the new last_seq
    assert projector.apply(old[2]) is Admission.OUT_OF_WINDOW  # inside the new window
    assert projector.apply(event("a", 5005, seq=5, temp=2.0)) is Admission.NEW
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.seq_resets, state.out_of_window) == (106, 1, 2)
    assert (state.first_seq, state.last_seq, state.missing) == (0, 5, 0)


def test_an_alert_raised_again_after_a_restart_is_a_new_alert_event() -> None:
    """Finding 2: alert ids hashed the cause's event id, which a restart reuses; the outbox
    dropped the second RAISED (ON CONFLICT DO NOTHING) and left the state wrong."""
    rule = AlertRule("hot", "t", "above", 30.0, 28.0)
    projector = Projector(WINDOWS, (rule,))
    for n, value in enumerate((31.0, 20.0)):
        projector.apply(event("a", n * 1000, seq=n, t=value))
    for n, value in enumerate((31.0, 20.0)):  # rebooted without boot: same seqs, later times
        projector.apply(event("a", 10_000 + n * 1000, seq=n, t=value))
    derived = projector.take_changes().derived
    assert [e.kind for e in derived] == ["alert.raised", "alert.cleared"] * 2
    assert len({e.event_id for e in derived}) == 4


def test_a_true_duplicate_carries_its_original_time_and_stays_a_duplicate() -> None:
    projector = Projector(WINDOWS, RULES)
    originals = [event("a", n * 10, seq=n, temp=1.0) for n in range(50)]
    for item in originals:
        projector.apply(item)
    assert projector.apply(originals[3]) is Admission.DUPLICATE
    stamped = originals[4]._replace(ts=originals[-1].ts + 99, ts_stamped=True)
    assert projector.apply(stamped) is Admission.DUPLICATE  # the gateway's time proves nothing
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.duplicates, state.seq_resets) == (50, 2, 0)


def test_a_boot_epoch_restarts_the_window_exactly_and_older_boots_are_out_of_it() -> None:
    projector = Projector(WINDOWS, RULES)
    for n in range(20):
        projector.apply(event("a", n * 10, seq=n, boot=7, temp=1.0))
    assert projector.apply(event("a", 0, seq=0, boot=8, temp=2.0)) is Admission.NEW  # clock reset
    assert projector.apply(event("a", 5, seq=1, boot=8, temp=2.0)) is Admission.NEW
    assert projector.apply(event("a", 5, seq=1, boot=8, temp=2.0)) is Admission.DUPLICATE
    assert projector.apply(event("a", 500, seq=25, boot=7, temp=3.0)) is Admission.OUT_OF_WINDOW
    state = projector.device("a")
    assert state is not None
    assert (state.boot, state.seq_resets, state.first_seq, state.last_seq) == (8, 1, 0, 1)
    assert (state.count, state.duplicates, state.out_of_window) == (22, 1, 1)


# -- device state and windows ---------------------------------------------------------------


def test_latest_value_is_latest_by_event_time_and_ties_go_to_the_later_event() -> None:
    projector = Projector(WINDOWS, ())
    for item in [
        event("a", 5000, seq=1, temp=1.0),
        event("a", 1000, seq=2, temp=2.0),  # older reading, flushed late
        event("a", 5000, seq=3, temp=3.0),  # same event time, later in the log
    ]:
        projector.apply(item)
    state = projector.device("a")
    assert state is not None
    assert state.metrics["temp"] == (3.0, BASE_TS + 5000)
    assert (state.first_seen, state.last_seen) == (BASE_TS + 1000, BASE_TS + 5000)


def test_late_events_within_grace_update_their_window_later_ones_are_counted() -> None:
    projector = Projector((WindowSpec("10s", 10_000, 2_000),), ())
    projector.apply(event("a", 25_000, seq=1, temp=1.0))
    projector.apply(event("a", 11_000, seq=2, temp=5.0))  # window [10s,20s) closes at 22s
    projector.apply(event("a", 27_000, seq=3, temp=2.0))
    projector.apply(event("a", 9_000, seq=4, temp=9.0))  # window [0,10s): closed at 12s
    changes = projector.take_changes()
    rows = {(w.start_ms - BASE_TS, w.count, w.sum) for w in changes.windows}
    assert rows == {(20_000, 2, 3.0)}
    (device,) = changes.devices
    assert device.late == {"10s": 2}


def test_window_rows_carry_count_min_max_sum_and_mean() -> None:
    projector = Projector((WindowSpec("1m", 60_000, 0),), ())
    for i, value in enumerate([4.0, 1.0, 7.0]):
        projector.apply(event("a", i * 1000, seq=i, temp=value))
    (row,) = projector.take_changes().windows
    assert (row.count, row.min, row.max, row.sum, row.mean) == (3, 1.0, 7.0, 12.0, 4.0)
    assert row.start_ms == window_start(BASE_TS, 60_000)


def test_non_finite_values_are_counted_per_device_and_ignored() -> None:
    projector = Projector(WINDOWS, ())
    projector.apply(event("a", 0, seq=1, temp=math.nan, hum=math.inf))
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.invalid_values, dict(state.metrics)) == (1, 2, {})


def test_window_specs_and_sequence_windows_are_validated() -> None:
    with pytest.raises(ValueError, match="size"):
        WindowSpec("bad", 0, 0)
    with pytest.raises(ValueError, match="distinct"):
        Projector((WindowSpec("a", 1000, 0), WindowSpec("b", 1000, 0)), ())
    with pytest.raises(ValueError, match="positive"):
        SeqWindow(size=0)


# -- alert rules ------------------------------------------------------------------------------


def test_the_example_alert_rules_load() -> None:
    rules = load_alert_rules(CONFIG)
    assert [r.name for r in rules] == ["temperature-high", "humidity-high", "battery-low"]
    battery = rules[2]
    assert (battery.metric, battery.direction, battery.raise_at, battery.clear_at) == (
        "battery_pct",
        "below",
        15.0,
        20.0,
    )


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": [{"name": "x", "metric": "t"}]}, "exactly one of"),
        ({"rules": [{"name": "x", "metric": "t", "above": 5, "below": 1}]}, "exactly one of"),
        ({"rules": [{"name": "x", "metric": "t", "above": 5, "clear_below": 6}]}, "<= above"),
        ({"rules": [{"name": "x", "metric": "t", "below": 5, "clear_below": 6}]}, "clear_above"),
        ({"rules": [{"name": "x", "metric": "t", "above": "hot"}]}, "must be a number"),
        ({"rules": [{"name": "x", "metric": "t", "above": 1, "colour": 2}]}, "unknown keys"),
        ({"rules": [{"metric": "t", "above": 1}]}, "non-empty strings"),
        ({"rules": [{"name": "x", "metric": "t", "above": 1}] * 2}, "duplicate rule names"),
        ({"version": 2, "rules": []}, "unsupported version"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_invalid_alert_rules_are_rejected_naming_the_mistake(rules: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_alert_rules(rules)


def test_hysteresis_in_both_directions() -> None:
    above = AlertRule("hot", "t", "above", 30.0, 28.0)
    below = AlertRule("low", "b", "below", 3.3, 3.5)
    assert [above.transition(False, v) for v in (30.0, 30.1)] == [None, True]
    assert [above.transition(True, v) for v in (29.0, 28.0, 27.9)] == [None, None, False]
    assert [below.transition(False, v) for v in (3.3, 3.2)] == [None, True]
    assert [below.transition(True, v) for v in (3.4, 3.5, 3.6)] == [None, None, False]


def test_a_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_alert_rules(tmp_path / "missing.yaml")


# -- readings without seq (finding 2), hashing ---------------------------------------------


def test_readings_without_seq_are_deduplicated_within_a_horizon_of_event_time() -> None:
    """Finding 2: a ring of 65,536 ids per partition (about 6.5 s at 10k ev/s) let a later
    redelivery be applied twice. The bound is now stated in the device's event time."""
    projector = Projector(WINDOWS, (), SeqWindow(horizon_ms=60_000))
    first = event("a", 0, event_id="sha:0", temp=1.0)
    assert projector.apply(first) is Admission.NEW
    for n in range(1, 200_000, 1000):  # 200k ids of other devices, 200 s of time
        projector.apply(event(f"other-{n % 7}", n, event_id=f"sha:o{n}", temp=1.0))
    assert projector.apply(event("a", 59_000, event_id="sha:59", temp=1.0)) is Admission.NEW
    assert projector.apply(first) is Admission.DUPLICATE  # 59 s behind: within the horizon
    projector.take_changes()
    late = event("a", 130_000, event_id="sha:130", temp=1.0)
    assert projector.apply(late) is Admission.NEW
    assert projector.apply(first) is Admission.OUT_OF_WINDOW  # 130 s behind: beyond it
    state = projector.device("a")
    assert state is not None
    assert (state.count, state.duplicates, state.out_of_window) == (3, 1, 1)


def test_a_reading_the_gateway_dated_is_a_duplicate_only_as_the_same_record() -> None:
    """Its id has the receipt time in it, so a device's resend is a new event; the same
    record logged twice (a producer retry) is absorbed. Found by the bridge-mode fault run."""
    projector = Projector(WINDOWS, ())
    stamped = event("a", 0, event_id="sha:x", temp=1.0)._replace(ts_stamped=True)
    assert projector.apply(stamped) is Admission.NEW
    assert projector.apply(stamped) is Admission.DUPLICATE
    resent = stamped._replace(event_id="sha:y", ts=stamped.ts + 40)
    assert projector.apply(resent) is Admission.NEW


def test_remembered_ids_are_forgotten_past_the_horizon_and_the_store_told() -> None:
    projector = Projector(WINDOWS, (), SeqWindow(horizon_ms=10_000))
    for n in range(30):
        projector.apply(event("a", n * 1000, event_id=f"sha:{n}", temp=1.0))
    changes = projector.take_changes()
    assert len(changes.recent) == 30
    assert changes.forgotten == [("a", BASE_TS + 19_000)]
    projector.apply(event("a", 29_500, event_id="sha:x", temp=1.0))
    assert projector.take_changes().forgotten == []  # the cutoff moved less than a tenth
    assert projector.apply(event("a", 20_000, event_id="sha:20", temp=1.0)) is Admission.DUPLICATE


def test_hash_rows_ignores_row_order_but_not_content() -> None:
    projector = Projector(WINDOWS, ())
    for i in range(5):
        projector.apply(event(f"d{i % 2}", i * 1000, seq=i, temp=float(i)))
    rows = list(projector.take_changes().windows)
    assert hash_rows(rows) == hash_rows(reversed(rows))
    assert hash_rows(rows) != hash_rows(rows[1:])


# -- processor and relay --------------------------------------------------------------------


def test_an_empty_batch_is_a_no_op(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    result = BatchProcessor(store, "g").apply([])
    assert (result.applied, dict(result.skipped), store.positions("g")) == (0, {}, {})
    store.close()


def test_skips_are_counted_by_reason(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    worker = BatchProcessor(store, "g", seq_window=SeqWindow(size=5))
    log = make_log([event("a", 9, seq=10), event("a", 9, seq=10), event("a", 2, seq=1)])
    result = worker.apply(log + log[:1])
    assert result.applied == 1
    assert result.skipped == {
        SkipReason.DUPLICATE_EVENT_ID: 1,
        SkipReason.SEQ_OUT_OF_WINDOW: 1,
        SkipReason.OLD_OFFSET: 1,
    }
    store.close()


class RecordingPublisher:
    def __init__(self, fail_first: bool = False) -> None:
        self.published: list[OutboxRecord] = []
        self.fail_first = fail_first

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("broker down")
        self.published.extend(records)


def test_the_relay_publishes_in_order_marks_and_republishes_after_a_failure(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    temps = [10.0, 26.0, 18.0, 27.0, 19.0]
    BatchProcessor(store, "g", rules=RULES).apply(
        make_log([event("a", i * 1000, seq=i, temp=t) for i, t in enumerate(temps)])
    )
    publisher = RecordingPublisher(fail_first=True)
    relay = OutboxRelay(store, publisher, batch_size=2)

    async def drain() -> int:
        with pytest.raises(ConnectionError):
            await relay.pump()
        total = 0
        while published := await relay.pump():
            total += published
        return total

    assert asyncio.run(drain()) == 4
    kinds = [r.event.kind for r in publisher.published]
    assert kinds == ["alert.raised", "alert.cleared", "alert.raised", "alert.cleared"]
    assert store.outbox_backlog() == 0
    store.close()


def test_the_relay_runs_until_stopped_and_wakes_on_appends(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, idle_timeout=0.2)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        await asyncio.sleep(0.05)
        log = make_log([event("a", 0, seq=1, temp=10.0), event("a", 1000, seq=2, temp=26.0)])
        await asyncio.to_thread(BatchProcessor(store, "g", rules=RULES).apply, log)
        for _ in range(100):
            if publisher.published:
                break
            await asyncio.sleep(0.02)
        stop.set()  # run() returns after its current wait (at most idle_timeout)
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert [r.event.kind for r in publisher.published] == ["alert.raised"]
    store.close()
