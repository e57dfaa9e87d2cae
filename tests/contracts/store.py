"""The Store port contract: one abstract test class, run against every adapter.

Here against SQLite (a file in tmp_path); ``tests/integration/test_store_postgres.py`` runs the
same class against PostgreSQL (a unique schema per test). Every test compares what the
processor committed with the oracle computed directly from the de-duplicated log.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from streams import BatchProcessor, PositionConflictError, SkipReason, TopicPartition
from streams.domain import DerivedEvent, Position
from streams.notifier import AlertCommandNotifier
from streams.projections import SeqWindow
from streams.store import OutboxStore, Projection, SqliteStore, Store, StoreTransaction
from tests.oracle import (
    BASE_TS,
    RULES,
    TOPIC,
    WINDOWS,
    Log,
    apply_in_batches,
    event,
    make_log,
    oracle,
    random_events,
)


class SimulatedCrashError(Exception):
    """Raised by a failpoint inside a batch transaction."""


class Failpoints:
    """Raises SimulatedCrashError once at the armed step."""

    def __init__(self) -> None:
        self.armed: str | None = None

    def __call__(self, step: str) -> None:
        if step == self.armed:
            self.armed = None
            raise SimulatedCrashError(step)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class OpenStore(Protocol):
    def __call__(
        self,
        *,
        failpoint: Callable[[str], None] | None = None,
        clock: Callable[[], int] | None = None,
        shadow: bool = False,
    ) -> Store: ...


def processor(store: Store, group: str = "workers") -> BatchProcessor:
    return BatchProcessor(store, group, windows=WINDOWS, rules=RULES)


def snapshot(store: Store) -> tuple[Any, ...]:
    return (store.devices(), store.windows(), store.alert_states())


def assert_matches_oracle(store: Store, log: Log) -> None:
    expected = oracle(item for _, item in log)
    assert store.devices() == expected.devices
    assert store.windows() == expected.windows
    assert store.alert_states() == expected.alerts
    assert outbox(store) == expected.derived


def outbox(store: OutboxStore) -> list[DerivedEvent]:
    """Every unpublished outbox event, in order (the claim is released)."""
    with store.claim(100_000) as claim:
        return [record.event for record in claim.records]


def metric_pages(
    store: Store, metric: str, limit: int, seen_since: int | None = None
) -> list[list[str]]:
    """The device ids of every ``has_metric`` page, paged by ``after`` until a short page."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = store.device_page(after, limit, seen_since=seen_since, has_metric=metric)
        pages.append([d.device_id for d in page])
        if len(page) < limit:
            return pages
        after = page[-1].device_id


def with_metric(store: Store, metric: str, seen_since: int | None = None) -> list[str]:
    """What ``has_metric`` answers by definition: every stored device with a latest value of
    ``metric`` (seen at or after ``seen_since``), in code point order."""
    return [
        d.device_id
        for d in store.devices()
        if metric in d.metrics and (seen_since is None or d.last_seen >= seen_since)
    ]


def assert_metric_pages_match(store: Store, metrics: tuple[str, ...] = ("temp", "hum")) -> None:
    for metric in (*metrics, "nope"):
        for limit in (1, 2, 5, 1000):
            pages = metric_pages(store, metric, limit)
            assert [d for page in pages for d in page] == with_metric(store, metric)
            assert all(len(page) == limit for page in pages[:-1])


def alert_log() -> Log:
    temps = [10.0, 26.0, 27.0, 22.0, 19.0, 30.0, 18.0]
    events = [event("a", i * 1000, seq=i, temp=v, hum=40.0) for i, v in enumerate(temps)]
    events += [event("b", i * 1000, seq=i, temp=v, hum=20.0) for i, v in enumerate(temps)]
    return make_log(events, partitions=2)


class StoreContract:
    """Every adapter must pass these; subclasses provide ``open_store`` and ``relay_pair``."""

    @pytest.fixture
    def open_store(self) -> OpenStore:
        raise NotImplementedError("subclasses open the adapter under test")

    @pytest.fixture
    def relay_pair(self, store: Store) -> tuple[OutboxStore, OutboxStore]:
        raise NotImplementedError("subclasses give two relays' views of one outbox")

    @pytest.fixture
    def failpoints(self) -> Failpoints:
        return Failpoints()

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def store(self, open_store: OpenStore, failpoints: Failpoints, clock: Clock) -> Store:
        return open_store(failpoint=failpoints, clock=clock)

    # -- batches, inbox, exactly once --------------------------------------------------------

    def test_migrate_is_idempotent_and_a_new_store_is_empty(self, store: Store) -> None:
        store.migrate()
        assert store.positions("workers") == {}
        assert snapshot(store) == ([], [], [])
        assert store.outbox_backlog() == 0

    def test_a_batch_commits_projections_offsets_and_outbox(self, store: Store) -> None:
        log = alert_log()
        result = processor(store).apply(log)
        assert result.applied == len(log)
        assert result.skipped == {}
        last = {TopicPartition(p.topic, p.partition): p.offset for p, _ in log}
        assert store.positions("workers") == last == result.positions
        assert list(result.derived) == oracle(e for _, e in log).derived
        assert_matches_oracle(store, log)

    def test_duplicate_event_ids_at_different_offsets_change_nothing(self, store: Store) -> None:
        originals = [
            event("a", 0, seq=1, temp=21.0),
            event("a", 1000, seq=2, temp=26.0),
            event("h", 500, event_id="content-hash-1", hum=25.0),
        ]
        log = make_log([*originals, originals[1], originals[2], originals[1]])
        result = processor(store).apply(log)
        assert (result.applied, result.skipped) == (3, {SkipReason.DUPLICATE_EVENT_ID: 3})
        assert_matches_oracle(store, log)
        device_a = store.device("a")
        assert device_a is not None
        assert (device_a.count, device_a.duplicates) == (2, 2)

    def test_retention_gaps_add_up_per_group_and_partition(self, store: Store) -> None:
        tp, other = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)
        assert store.retention_gaps("workers") == {}
        assert store.record_retention_gap("workers", tp, 40) == 40
        assert store.record_retention_gap("workers", tp, 2) == 42
        store.record_retention_gap("workers", other, 7)
        store.record_retention_gap("workers_2", tp, 1)  # another group, a LIKE wildcard
        assert store.retention_gaps("workers") == {tp: 42, other: 7}
        assert store.retention_gaps("workers_2") == {tp: 1}

    def test_boot_epochs_and_restarts_survive_the_store(
        self, store: Store, open_store: OpenStore
    ) -> None:
        events = [event("a", n, seq=n, boot=3, temp=1.0) for n in (0, 1, 5)]
        events += [event("a", 9, seq=0, boot=4, temp=2.0)]
        events += [event("b", n, seq=n, temp=1.0) for n in (0, 1, 2)]
        events += [event("b", 10, seq=0, temp=2.0)]
        log = make_log(events)
        processor(store).apply(log[:5])
        processor(open_store()).apply(log[5:])  # a new worker loads the state from the store
        assert_matches_oracle(store, log)
        a, b = store.device("a"), store.device("b")
        assert a is not None
        assert b is not None
        assert (a.boot, a.seq_resets, a.lost, b.boot, b.seq_resets) == (4, 1, 3, None, 1)
        assert (a.restart_ts, b.restart_ts) == (None, events[-1].ts)  # b restarted at seq 0

    def test_windows_past_their_retention_are_deleted_and_open_ones_reload(
        self, store: Store, open_store: OpenStore
    ) -> None:
        kept = tuple(dataclasses.replace(spec, retention_ms=30_000) for spec in WINDOWS)
        log = make_log(random_events(seed=4, count=400))
        BatchProcessor(store, "workers", windows=kept, rules=RULES).apply(log[:200])
        again = BatchProcessor(open_store(), "workers", windows=kept, rules=RULES)
        apply_in_batches(again, log[200:], 37)  # loads each device's open windows
        expected = oracle((e for _, e in log), windows=kept)
        assert store.windows() == expected.windows
        assert len(expected.windows) < len(oracle(e for _, e in log).windows)
        assert store.devices() == expected.devices

    @pytest.mark.parametrize("step", ["after_offsets", "after_projections", "before_commit"])
    def test_a_batch_redelivered_after_a_crash_mid_batch_applies_once(
        self, store: Store, open_store: OpenStore, failpoints: Failpoints, step: str
    ) -> None:
        log = make_log(random_events(seed=1, count=120))
        worker = processor(store)
        apply_in_batches(worker, log[:40], 20)
        before = (store.positions("workers"), snapshot(store), outbox(store))
        failpoints.armed = step
        with pytest.raises(SimulatedCrashError):
            worker.apply(log[40:80])
        assert (store.positions("workers"), snapshot(store), outbox(store)) == before
        worker.apply(log[40:80])  # the same worker, its cache dropped
        restarted = processor(open_store())  # a new process after the crash
        results = apply_in_batches(restarted, log[40:], 25)  # redelivers 40..80 again
        assert sum(r.skipped.get(SkipReason.OLD_OFFSET, 0) for r in results) == 40
        assert_matches_oracle(store, log)

    @pytest.mark.parametrize("step", ["after_offsets", "after_projections", "before_commit"])
    def test_a_crash_in_the_first_batch_of_a_store_instance_leaves_it_usable(
        self, open_store: OpenStore, failpoints: Failpoints, step: str
    ) -> None:
        log = make_log(random_events(seed=9, count=60))
        store = open_store(failpoint=failpoints)
        failpoints.armed = step
        with pytest.raises(SimulatedCrashError):
            processor(store).apply(log)
        assert store.positions("workers") == {}
        apply_in_batches(processor(store), log, 25)
        assert_matches_oracle(store, log)

    def test_reapplying_from_an_older_offset_skips_every_event(self, store: Store) -> None:
        log = make_log(random_events(seed=2, count=80))
        worker = processor(store)
        apply_in_batches(worker, log, 30)
        hashes = [store.state_hash(p) for p in Projection]
        result = worker.apply(log[10:])
        assert result.applied == 0
        assert result.skipped == {SkipReason.OLD_OFFSET: len(log) - 10}
        assert [store.state_hash(p) for p in Projection] == hashes
        assert_matches_oracle(store, log)

    def test_alert_pages_follow_the_alert_states_order_without_a_gap_or_a_repeat(
        self, store: Store
    ) -> None:
        apply_in_batches(processor(store), alert_log(), 7)
        every = store.alert_states()
        assert every, "the alert log should leave alert states"
        for active_only in (False, True):
            wanted = [(a.device_id, a.rule) for a in every if a.active or not active_only]
            seen: list[tuple[str, str]] = []
            after: tuple[str, str] | None = None
            while page := store.alert_page(after, 2, active_only=active_only):
                seen += [(a.device_id, a.rule) for a in page]
                after = seen[-1]
            assert seen == wanted
        device = every[0].device_id
        assert store.alert_page(None, 100, device_id=device) == store.alert_states(device)

    def test_fleet_counts_agree_with_the_devices_and_alert_states_stored(
        self, store: Store
    ) -> None:
        apply_in_batches(processor(store), alert_log(), 7)
        devices = store.devices()
        latest = max(d.last_seen for d in devices)
        counts = store.fleet_counts(latest)
        assert counts.devices == len(devices) == 2
        assert counts.seen == sum(d.last_seen >= latest for d in devices)
        assert counts.active_alerts == sum(a.active for a in store.alert_states())
        assert store.fleet_counts(latest + 1).seen == 0

    def test_an_undecodable_record_is_passed_over_but_its_offset_is_committed(
        self, store: Store
    ) -> None:
        log = make_log(random_events(seed=4, count=40))
        worker = processor(store)
        last = log[-1][0]
        garbage = Position(last.topic, last.partition, last.offset + 1)
        result = worker.apply([*log, (garbage, None)])
        assert result.skipped[SkipReason.UNDECODABLE] == 1
        assert store.positions("workers")[TopicPartition(last.topic, last.partition)] == (
            garbage.offset
        )
        assert_matches_oracle(store, log)  # the state is the decodable events' alone

    def test_interleaved_partitions_commit_each_partitions_position(self, store: Store) -> None:
        log = make_log(random_events(seed=3, count=150, devices=9), partitions=4)
        results = apply_in_batches(processor(store), log, 37)
        positions = store.positions("workers")
        for part in range(4):
            offsets = [p.offset for p, _ in log if p.partition == part]
            assert positions.get(TopicPartition(TOPIC, part)) == max(offsets)
        assert sum(r.applied for r in results) == sum(d.count for d in store.devices())
        assert_matches_oracle(store, log)

    def test_a_second_worker_takes_over_a_partition_and_fences_the_first(
        self, store: Store, open_store: OpenStore
    ) -> None:
        log = make_log(random_events(seed=4, count=120), partitions=1)
        first = processor(store)
        apply_in_batches(first, log[:60], 20)
        second = processor(open_store())
        seek = second.assign([TopicPartition(TOPIC, 0)])
        assert seek == {TopicPartition(TOPIC, 0): 60}
        second.apply(log[40:90])  # redelivers 40..59, applies 60..89
        before = snapshot(store)
        with pytest.raises(PositionConflictError) as conflict:
            first.apply(log[60:80])  # a zombie that missed its revocation
        assert conflict.value.retriable
        assert snapshot(store) == before
        assert first.assign([TopicPartition(TOPIC, 0)]) == {TopicPartition(TOPIC, 0): 90}
        apply_in_batches(second, log[90:], 20)
        assert_matches_oracle(store, log)

    def test_revoked_and_reassigned_partitions_reload_their_state(self, store: Store) -> None:
        log = make_log(random_events(seed=5, count=100), partitions=2)
        worker = processor(store)
        apply_in_batches(worker, log[:50], 25)
        partitions = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
        worker.revoke(partitions)
        seek = worker.assign(partitions)
        assert all(offset is not None for offset in seek.values())
        apply_in_batches(worker, log[50:], 25)
        assert_matches_oracle(store, log)

    def test_recent_ids_of_events_without_seq_survive_a_restart(
        self, store: Store, open_store: OpenStore
    ) -> None:
        hashed = event("h", 0, event_id="sha-1", temp=1.0)
        processor(store).apply(make_log([hashed]))
        restarted = processor(open_store())
        log = make_log([hashed, hashed])  # offset 0 again, then the id again at offset 1
        result = restarted.apply(log)
        assert result.skipped == {
            SkipReason.OLD_OFFSET: 1,
            SkipReason.DUPLICATE_EVENT_ID: 1,
        }
        device = store.device("h")
        assert device is not None
        assert (device.count, device.duplicates) == (1, 1)

    def test_remembered_ids_reload_within_the_horizon_and_old_ones_are_deleted(
        self, store: Store, open_store: OpenStore
    ) -> None:
        window = SeqWindow(horizon_ms=10_000)
        readings = [event("h", n * 1000, event_id=f"sha-{n}", temp=1.0) for n in range(40)]
        BatchProcessor(store, "workers", windows=WINDOWS, seq_window=window).apply(
            make_log(readings)
        )
        again = BatchProcessor(open_store(), "workers", windows=WINDOWS, seq_window=window)
        copies = [(Position(TOPIC, p.partition, p.offset + 100), e) for p, e in make_log(readings)]
        result = again.apply(copies)  # redelivered at later offsets, after a restart
        assert result.skipped == {
            SkipReason.DUPLICATE_EVENT_ID: 11,  # dated within 10 s of the newest
            SkipReason.SEQ_OUT_OF_WINDOW: 29,
        }
        loaded = store.load_devices(["h"], 0, 0, 10_000)
        assert len(loaded.recent) <= 11 + 4  # older ids deleted (in steps of a tenth)

    # -- state hash and namespaces ---------------------------------------------------------

    def test_state_hash_is_independent_of_batching_adapter_and_namespace(
        self, store: Store, open_store: OpenStore, tmp_path: Path
    ) -> None:
        log = make_log(random_events(seed=6, count=200), partitions=3)
        apply_in_batches(processor(store), log, 7)
        shadow = open_store(shadow=True)
        assert shadow.devices() == []
        apply_in_batches(processor(shadow), log, 64)
        reference = SqliteStore(tmp_path / "reference.db")
        reference.migrate()
        apply_in_batches(processor(reference), log, 200)
        for projection in Projection:
            digest = store.state_hash(projection)
            assert digest == shadow.state_hash(projection) == reference.state_hash(projection)
        reference.close()

    # -- outbox ----------------------------------------------------------------------------

    def test_outbox_rows_come_in_per_key_order_and_are_marked_published(self, store: Store) -> None:
        log = alert_log()
        processor(store).apply(log[:7])
        processor(store).apply(log[7:])
        expected = oracle(e for _, e in log).derived
        with store.claim(100) as claim:
            records = list(claim.records)
            claim.mark_published()
        assert [r.event for r in records] == expected
        assert [r.seq for r in records] == sorted(r.seq for r in records)
        for key in ("a", "b"):
            assert [r.event for r in records if r.event.key == key] == [
                e for e in expected if e.key == key
            ]
        assert store.outbox_backlog() == 0
        assert outbox(store) == []

    def test_a_released_claim_leaves_rows_to_claim_again(self, store: Store) -> None:
        processor(store).apply(alert_log())
        backlog = store.outbox_backlog()
        with store.claim(2) as claim:
            first = [r.seq for r in claim.records]
        assert store.outbox_backlog() == backlog > 0
        with store.claim(2) as claim:
            assert [r.seq for r in claim.records] == first

    def test_claims_are_exclusive_per_key_across_relays(
        self, store: Store, relay_pair: tuple[OutboxStore, OutboxStore]
    ) -> None:
        processor(store).apply(alert_log())
        rows = outbox(store)
        one, two = relay_pair
        with one.claim(1) as first:
            (held,) = {r.event.key for r in first.records}
            with two.claim(100) as second:
                assert [r.event for r in second.records] == [e for e in rows if e.key != held]
                second.mark_published()
            first.mark_published()
        assert outbox(store) == [e for e in rows if e.key == held][1:]

    def test_concurrent_relays_publish_each_row_once_in_key_order(
        self, store: Store, relay_pair: tuple[OutboxStore, OutboxStore]
    ) -> None:
        log = make_log(random_events(seed=8, count=300, devices=8))
        apply_in_batches(processor(store), log, 50)
        expected = outbox(store)
        assert len(expected) > 10
        published: list[DerivedEvent] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def relay(outbox_store: OutboxStore) -> None:
            try:
                idle = 0
                while idle < 3:
                    with outbox_store.claim(3) as claim:
                        if not claim.records:
                            idle += 1
                            continue
                        idle = 0
                        with lock:
                            published.extend(r.event for r in claim.records)
                        claim.mark_published()
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=relay, args=(s,)) for s in relay_pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(e.event_id for e in published) == sorted(e.event_id for e in expected)
        for key in {e.key for e in expected}:
            assert [e for e in published if e.key == key] == [e for e in expected if e.key == key]
        assert store.outbox_backlog() == 0

    def test_prune_deletes_only_rows_published_longer_ago_than_asked(
        self, store: Store, clock: Clock
    ) -> None:
        processor(store).apply(alert_log())
        total = store.outbox_backlog()
        with store.claim(2) as claim:
            claim.mark_published()
        clock.now += 10_000
        assert store.prune_outbox(older_than_ms=60_000) == 0
        clock.now += 60_000
        assert store.prune_outbox(older_than_ms=60_000) == 2
        assert store.outbox_backlog() == total - 2
        assert store.prune_outbox(older_than_ms=0) == 0

    def test_wait_for_outbox_wakes_on_a_committed_append(
        self, store: Store, relay_pair: tuple[OutboxStore, OutboxStore]
    ) -> None:
        listener = relay_pair[1]
        listener.wait_for_outbox(0.0)
        assert listener.wait_for_outbox(0.05) is False
        timer = threading.Timer(0.2, lambda: processor(store).apply(alert_log()))
        timer.start()
        try:
            assert listener.wait_for_outbox(10.0) is True
        finally:
            timer.join()

    # -- idempotent consumer ---------------------------------------------------------------

    def test_apply_once_runs_an_effect_once_per_event_id(self, store: Store) -> None:
        calls: list[str] = []

        def effect(tx: StoreTransaction) -> int:
            calls.append("run")
            return 7

        first = store.apply_once("notifier", "e-1", 1, effect)
        again = store.apply_once("notifier", "e-1", 1, effect)
        other = store.apply_once("another-consumer", "e-1", 1, effect)
        assert (first.applied, first.value) == (True, 7)
        assert (again.applied, again.value) == (False, None)
        assert other.applied
        assert calls == ["run", "run"]

    def test_records_are_pruned_by_the_events_time_and_later_ones_kept(self, store: Store) -> None:
        """Finding 8: the tracking table grew for good."""
        for n in range(10):
            store.apply_once("notifier", f"e-{n}", 1000 * n, lambda tx: None)
        assert store.prune_tracking(5000) == 5
        assert store.prune_tracking(5000) == 0
        assert not store.apply_once("notifier", "e-7", 7000, lambda tx: None).applied
        assert store.apply_once("notifier", "e-2", 2000, lambda tx: None).applied  # forgotten

    def test_apply_once_commits_the_effects_writes_with_its_dedupe_record(
        self, store: Store
    ) -> None:
        def effect(tx: StoreTransaction) -> None:
            mark = "?" if tx.paramstyle == "qmark" else "%s"
            table = tx.table("notes")
            tx.execute(f"CREATE TABLE IF NOT EXISTS {table} (note TEXT)")
            tx.execute(f"INSERT INTO {table} VALUES ({mark})", ["sent"])  # noqa: S608
            tx.append_outbox([DerivedEvent("cmd-1", "iot.commands.v1", "a", "command", 1, {})])

        def failing(tx: StoreTransaction) -> None:
            effect(tx)
            raise SimulatedCrashError("effect")

        with pytest.raises(SimulatedCrashError):
            store.apply_once("notifier", "e-1", 1, failing)
        assert store.outbox_backlog() == 0
        assert store.apply_once("notifier", "e-1", 1, effect).applied
        assert not store.apply_once("notifier", "e-1", 1, effect).applied

        def count(tx: StoreTransaction) -> Any:
            return tx.execute(f"SELECT count(*) FROM {tx.table('notes')}")  # noqa: S608

        assert store.apply_once("reader", "r-1", 1, count).value == [(1,)]
        assert [e.event_id for e in outbox(store)] == ["cmd-1"]

    def test_the_alert_notifier_sends_one_command_per_raised_alert(self, store: Store) -> None:
        processor(store).apply(alert_log())
        alerts = outbox(store)
        notifier = AlertCommandNotifier(store, {"temp-high": "fan_on"})
        results = [notifier.handle(a.payload) for a in alerts + alerts]
        assert [r.applied for r in results] == [True] * len(alerts) + [False] * len(alerts)
        commands = [e for e in outbox(store) if e.topic == "iot.commands.v1"]
        raised = [
            a for a in alerts if a.payload["state"] == "RAISED" and a.payload["rule"] == "temp-high"
        ]
        assert len(commands) == len(raised) > 0
        assert all(c.payload["name"] == "fan_on" for c in commands)

    def test_the_notifier_forgets_past_its_horizon_and_refuses_what_is_that_old(
        self, store: Store
    ) -> None:
        processor(store).apply(alert_log())
        raised = [a.payload for a in outbox(store) if a.payload["state"] == "RAISED"]
        notifier = AlertCommandNotifier(store, {"temp-high": "fan_on"}, horizon_ms=60_000)
        assert all(notifier.handle(alert).applied for alert in raised)
        last = max(raised, key=lambda alert: int(str(alert["ts"])))
        newest = int(str(last["ts"]))
        assert not notifier.stale(last, newest + 60_000)
        assert notifier.stale(last, newest + 60_001)
        oldest = min(int(str(alert["ts"])) for alert in raised)
        assert notifier.prune(oldest + 60_000) == 0
        assert notifier.prune(newest + 60_001) == len(raised)
        assert notifier.handle(last).applied  # forgotten: what the stale check is for

    # -- query reads ---------------------------------------------------------------------------

    def test_device_pages_follow_code_point_order_and_filter(self, store: Store) -> None:
        ids = ["b", "a", "Z", "é", "a-1", "a_2"]
        events = [event(d, 1000 * i, seq=1, temp=20.0) for i, d in enumerate(ids)]
        events.append(event("hum-only", 500, seq=1, hum=40.0))
        processor(store).apply(make_log(events))
        expected = sorted([*ids, "hum-only"])
        pages: list[str] = []
        after: str | None = None
        while True:
            page = store.device_page(after, 3)
            if not page:
                break
            pages += [d.device_id for d in page]
            after = page[-1].device_id
        assert pages == expected
        assert [d.device_id for d in store.device_page(None, 10, has_metric="hum")] == ["hum-only"]
        recent = store.device_page(None, 10, seen_since=BASE_TS + 3000)
        assert sorted(d.device_id for d in recent) == sorted(ids[3:])
        assert store.device_page(None, 10, seen_since=BASE_TS + 3000, has_metric="hum") == []
        assert store.device_page(None, 10, has_metric="nope") == []
        assert store.device_page(None, 10)[0] == store.device(expected[0])

    def test_metric_pages_answer_the_devices_with_a_latest_value_of_it_in_pages(
        self, store: Store
    ) -> None:
        ids = ["b", "a", "Z", "é", "a-1", "a_2", "c", "d"]
        events = [event(d, 1000 * i, seq=1, temp=20.0) for i, d in enumerate(ids)]
        events += [event(d, 1000 * i + 500, seq=2, hum=40.0) for i, d in enumerate(ids) if i % 3]
        events += [event("hum-only", 500, seq=1, hum=40.0), event("none", 0, seq=1, temp=math.nan)]
        later = [event(d, 9000 + i, seq=3, co2=400.0) for i, d in enumerate(["é", "a", "none"])]
        log = make_log([*events, *later])
        worker = processor(store)
        worker.apply(log[: len(events)])
        assert store.device("none") is not None
        assert_metric_pages_match(store)
        assert with_metric(store, "hum") == sorted([*ids[1:3], *ids[4:6], ids[7], "hum-only"])
        worker.apply(log[len(events) :])  # a device's metrics only grow
        assert_metric_pages_match(store, ("temp", "hum", "co2"))
        assert metric_pages(store, "co2", 2) == [["a", "none"], ["é"]]
        since = BASE_TS + 3000
        for limit in (1, 2, 100):
            got = metric_pages(store, "hum", limit, seen_since=since)
            assert [d for page in got for d in page] == with_metric(store, "hum", since)
        assert metric_pages(store, "hum", 10, seen_since=BASE_TS + 10**9) == [[]]

    def test_window_range_is_one_device_metric_and_size_by_start(self, store: Store) -> None:
        log = make_log(
            [event("a", i * 7_000, seq=i, temp=float(i), hum=1.0) for i in range(40)]
            + [event("b", i * 7_000, seq=i, temp=100.0) for i in range(5)]
        )
        processor(store).apply(log)
        every = [w for w in store.windows("a") if w.metric == "temp" and w.size_ms == 10_000]
        lo, hi = BASE_TS + 30_000, BASE_TS + 120_000
        got = store.window_range("a", "temp", 10_000, lo, hi)
        assert got == [w for w in every if lo <= w.start_ms < hi]
        assert [w.start_ms for w in got] == sorted(w.start_ms for w in got)
        assert len(got) > 3
        assert store.window_range("a", "temp", 10_000, hi, lo) == []
        assert store.window_range("nobody", "temp", 10_000, 0, 10**12) == []
