"""Property tests: for random logs with duplicates, redeliveries and crashes, the committed
projections equal the oracle computed from the de-duplicated log; replays hash equal;
alerts are raised exactly once per crossing."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import BatchProcessor, SkipReason, TelemetryEvent
from streams.domain import derived_event_id
from streams.projections import DeviceState, Projector, WindowSpec
from streams.store import Projection, SqliteStore
from tests.contracts.store import (
    Failpoints,
    SimulatedCrashError,
    metric_pages,
    outbox,
    with_metric,
)
from tests.oracle import BASE_TS, RULES, WINDOWS, Log, event, make_log, oracle

METRIC_VALUES = st.one_of(
    st.floats(min_value=0, max_value=50, allow_nan=False),
    st.sampled_from([19.5, 20.0, 25.0, 25.5, 30.0, 35.0, 35.5]),
    st.just(math.nan),
)


@st.composite
def telemetry(draw: st.DrawFn) -> list[TelemetryEvent]:
    """Originals (out of order, with seq gaps, some devices without seq) plus duplicates."""
    devices = draw(st.lists(st.booleans(), min_size=1, max_size=4))  # has seq?
    next_seq = [0] * len(devices)
    originals: list[TelemetryEvent] = []
    for n in range(draw(st.integers(1, 40))):
        index = draw(st.integers(0, len(devices) - 1))
        seq = None
        if devices[index]:
            seq = next_seq[index] + draw(st.integers(0, 2))
            next_seq[index] = seq + 1
        metrics = draw(st.dictionaries(st.sampled_from(["temp", "hum"]), METRIC_VALUES))
        ts = draw(st.integers(0, 150_000))
        originals.append(
            event(
                f"d{index}", ts, seq=seq, event_id=None if seq is not None else f"x{n}", **metrics
            )
        )
    events = draw(st.permutations(originals)) if draw(st.booleans()) else originals
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, len(events) - 1))
        j = draw(st.integers(i + 1, len(events)))
        events = [*events[:j], events[i], *events[j:]]
    return events


@st.composite
def consumption(draw: st.DrawFn) -> list[tuple[int, str]]:
    """Batch sizes with what happens to each batch: ok, crash at a step, or old redelivery."""
    actions = st.sampled_from(
        ["ok", "ok", "ok", "old", "after_offsets", "after_projections", "before_commit"]
    )
    return draw(st.lists(st.tuples(st.integers(1, 12), actions), min_size=1, max_size=30))


def consume(
    store_path: Path,
    log: Log,
    plan: list[tuple[int, str]],
    windows: Sequence[WindowSpec] = WINDOWS,
) -> dict[SkipReason, int]:
    """Applies the log as a crashing, redelivering consumer would; returns skip counts."""
    failpoints = Failpoints()
    store = SqliteStore(store_path, failpoint=failpoints)
    store.migrate()
    worker = BatchProcessor(store, "g", windows=windows, rules=RULES)
    skipped: dict[SkipReason, int] = {}
    position, step, crashed = 0, 0, 0

    def apply(batch: Log) -> None:
        for reason, count in worker.apply(batch).skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count

    while position < len(log):
        size, action = plan[step % len(plan)]
        step += 1
        if crashed:  # the crashed batch is redelivered whole
            size, action, crashed = crashed, "ok", 0
        if action == "old" and position > 0:  # a rewind: offsets already applied, again
            apply(log[max(0, position - size) : position])
        batch = log[position : position + size]
        if action not in ("ok", "old"):
            failpoints.armed = action
            try:
                worker.apply(batch)
            except SimulatedCrashError:
                crashed = size
                if step % 2:  # half the crashes restart the whole process
                    store.close()
                    store = SqliteStore(store_path, failpoint=failpoints)
                    worker = BatchProcessor(store, "g", windows=windows, rules=RULES)
                continue
            raise AssertionError("the failpoint did not fire")
        apply(batch)
        position += size
    store.close()
    return skipped


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=telemetry(), plan=consumption())
def test_committed_projections_equal_the_oracle_of_the_deduplicated_log(
    events: list[TelemetryEvent], plan: list[tuple[int, str]]
) -> None:
    log = make_log(events)
    expected = oracle(events)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        skipped = consume(path, log, plan)
        store = SqliteStore(path)
        assert store.devices() == expected.devices
        assert store.windows() == expected.windows
        assert store.alert_states() == expected.alerts
        assert outbox(store) == expected.derived
        store.close()
    duplicates = len(events) - len({e.event_id for e in events})
    assert skipped.get(SkipReason.DUPLICATE_EVENT_ID, 0) == duplicates
    assert SkipReason.SEQ_OUT_OF_WINDOW not in skipped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=telemetry(),
    plan=consumption(),
    limit=st.integers(1, 5),
    seen_since=st.none() | st.integers(0, 150_000),
)
def test_metric_pages_answer_the_devices_with_that_metric_whatever_the_crashes(
    events: list[TelemetryEvent], plan: list[tuple[int, str]], limit: int, seen_since: int | None
) -> None:
    since = None if seen_since is None else BASE_TS + seen_since
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        consume(path, make_log(events), plan)
        store = SqliteStore(path)
        for metric in ("temp", "hum"):
            pages = metric_pages(store, metric, limit, seen_since=since)
            assert [d for page in pages for d in page] == with_metric(store, metric, since)
        store.close()


@settings(max_examples=150, deadline=None)
@given(
    events=telemetry(),
    takes=st.lists(st.integers(1, 8), min_size=1, max_size=10),
    reload_after=st.integers(0, 10),
)
def test_the_metrics_added_index_every_metric_of_the_rows_written_once(
    events: list[TelemetryEvent], takes: list[int], reload_after: int
) -> None:
    """The metric index a store keeps from ``metrics_added`` holds exactly the metrics of the
    device rows written, whatever the batching, also after the cache is reloaded from them."""
    projector = Projector(windows=WINDOWS, rules=RULES)
    rows: dict[str, DeviceState] = {}
    indexed: set[tuple[str, str]] = set()
    position = take = 0
    while position < len(events):
        if take == reload_after:  # a restart: the cache comes back from the stored rows
            projector = Projector(windows=WINDOWS, rules=RULES)
            projector.load(rows, rows.values(), (), ())
        for item in events[position : position + takes[take % len(takes)]]:
            projector.apply(item)
        position += takes[take % len(takes)]
        take += 1
        changes = projector.take_changes()
        added = set(changes.metrics_added)
        assert len(added) == len(changes.metrics_added)
        assert not added & indexed
        indexed |= added
        rows.update((state.device_id, state) for state in changes.devices)
        assert indexed == {(name, d.device_id) for d in rows.values() for name in d.metrics}


RETAINED = tuple(
    dataclasses.replace(spec, retention_ms=retention)
    for spec, retention in zip(WINDOWS, (0, 20_000), strict=True)
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=telemetry(), plan=consumption())
def test_windows_past_their_retention_are_deleted_as_the_oracle_says_whatever_the_batching(
    events: list[TelemetryEvent], plan: list[tuple[int, str]]
) -> None:
    expected = oracle(events, windows=RETAINED)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        consume(path, make_log(events), plan, RETAINED)
        store = SqliteStore(path)
        assert store.windows() == expected.windows
        assert store.devices() == expected.devices
        store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=telemetry(), first=consumption(), second=consumption())
def test_two_replays_of_a_log_hash_equal_whatever_the_batching_and_crashes(
    events: list[TelemetryEvent], first: list[tuple[int, str]], second: list[tuple[int, str]]
) -> None:
    log = make_log(events)
    with tempfile.TemporaryDirectory() as tmp:
        consume(Path(tmp) / "one.db", log, first)
        consume(Path(tmp) / "two.db", log, second)
        one, two = SqliteStore(Path(tmp) / "one.db"), SqliteStore(Path(tmp) / "two.db")
        for projection in Projection:
            assert one.state_hash(projection) == two.state_hash(projection)
        one.close()
        two.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.floats(min_value=0, max_value=50, allow_nan=False), min_size=1, max_size=40),
    plan=consumption(),
    redeliver=st.lists(st.integers(0, 39), max_size=10),
)
def test_exactly_one_raised_alert_per_crossing_under_redelivery(
    values: list[float], plan: list[tuple[int, str]], redeliver: list[int]
) -> None:
    originals = [event("dev", i * 1000, seq=i, temp=v) for i, v in enumerate(values)]
    # gateway duplicates of earlier readings at later offsets
    events = originals + [originals[index % len(originals)] for index in redeliver]
    crossings, active = [], False
    for i, value in enumerate(values):  # the rule, by hand: above 25 raises, below 20 clears
        if (not active and value > 25.0) or (active and value < 20.0):
            active = not active
            crossings.append(("alert.raised" if active else "alert.cleared", f"dev#{i}", i))
    with tempfile.TemporaryDirectory() as tmp:
        consume(Path(tmp) / "store.db", make_log(events), plan)
        store = SqliteStore(Path(tmp) / "store.db")
        published = [e for e in outbox(store) if e.payload["rule"] == "temp-high"]
        store.close()
    expected_ids = [
        derived_event_id(
            "alert", "temp-high", "dev", kind.split(".")[1].upper(), cause, str(BASE_TS + i * 1000)
        )
        for kind, cause, i in crossings
    ]
    assert [(e.kind, e.event_id) for e in published] == [
        (kind, event_id) for (kind, _, _), event_id in zip(crossings, expected_ids, strict=True)
    ]
