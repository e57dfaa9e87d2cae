"""Replay rebuilds the projections deterministically from the log and finds corrupted state."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from contracts.avro import SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.partitioning import partition_for
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from streams.errors import ConfigError
from streams.replay.jobs import rebuild_parallel
from streams.replay.rebuild import (
    catch_up,
    copy_slice,
    plan,
    rebuild,
    state_hashes,
    swap,
    verify,
)
from streams.settings import WorkerSettings
from streams.store.sqlite import SqliteStore
from tests.clients import iotctl, process_env

SUBJECT = "iot.telemetry.v1-value"
BASE = 1_767_225_600_000
RULES = Path(__file__).resolve().parents[2] / "config" / "alerts.example.yaml"


@pytest.fixture
async def log(kafka_admin: KafkaClientSettings, unique: Callable[[str], str]) -> WorkerSettings:
    """A telemetry topic of 3 partitions holding 1,500 readings of 10 devices (with repeats)."""
    topic = unique("telemetry")
    admin = AIOKafkaAdminClient(**kafka_admin.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    async with open_registry("embedded", kafka_admin) as registry:
        writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    producer = AIOKafkaProducer(acks="all", **kafka_admin.aiokafka_kwargs())
    await producer.start()
    try:
        for i in range(1500):
            j = i - 10 if i % 97 == 0 and i >= 10 else i  # some repeats of the device's last
            device, seq = f"dev-{i % 10}", j // 10 + 1
            record = {
                "event_id": f"{device}:{seq}",
                "device_id": device,
                "ts": BASE + j * 1000,
                "received_at": BASE + i * 1000 + 5,
                "seq": seq,
                "metrics": {"temp_c": 20 + (j % 23), "humidity_pct": 40 + (j % 11)},
                "attributes": {},
            }
            await producer.send(topic, key=device.encode(), value=encode(record, writer))
        await producer.flush()
    finally:
        await producer.stop()
    return WorkerSettings(
        telemetry_topic=topic, group=unique("workers"), kafka=kafka_admin, alert_rules=RULES
    )


async def test_two_rebuilds_of_the_same_log_have_the_same_state_hash(
    log: WorkerSettings, tmp_path: Path
) -> None:
    first, second = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    first.migrate()
    second.migrate()
    one = await rebuild(log, first)
    two = await rebuild(log, second)
    assert one.events == two.events == 1500
    assert one.hashes == two.hashes
    assert sum(d.duplicates for d in first.devices()) > 0
    assert verify(first, second).ok


async def test_a_rebuild_in_several_processes_equals_one_in_one_process(
    log: WorkerSettings, tmp_path: Path
) -> None:
    one, many = SqliteStore(tmp_path / "one.db"), SqliteStore(tmp_path / "many.db")
    one.migrate()
    many.migrate()
    single = await rebuild(log, one)
    split = await rebuild_parallel(log, many, jobs=2)  # partitions {0, 2} and {1}, say
    assert split.events == single.events == 1500
    assert split.hashes == single.hashes
    positions = one.positions(log.group)
    assert many.positions(log.group) == positions
    for tp in positions:
        assert many.load_inbox(log.group, tp) == one.load_inbox(log.group, tp)
    assert many.outbox_backlog() == one.outbox_backlog() > 0
    assert verify(one, many).ok
    left = await asyncio.to_thread(os.listdir, tmp_path)
    assert [name for name in left if "parts" in name] == []  # no parts left behind


async def test_a_rebuild_passes_over_a_trailing_undecodable_record_like_the_worker(
    log: WorkerSettings, tmp_path: Path
) -> None:
    """The worker commits an undecodable record's offset; a rebuild must end at the same
    position, or a shadow rebuilt from a log ending in a bad record is never aligned."""
    producer = AIOKafkaProducer(acks="all", **log.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        sent = await producer.send_and_wait(log.telemetry_topic, key=b"dev-0", value=b"\x00junk")
    finally:
        await producer.stop()
    shadow = SqliteStore(tmp_path / "shadow.db")
    shadow.migrate()
    report = await rebuild(log, shadow)
    assert (report.events, report.undecodable) == (1500, 1)
    positions = {tp.partition: offset for tp, offset in shadow.positions(log.group).items()}
    assert positions[sent.partition] == sent.offset


async def test_verify_names_the_corrupted_device(log: WorkerSettings, tmp_path: Path) -> None:
    live, shadow = SqliteStore(tmp_path / "live.db"), SqliteStore(tmp_path / "shadow.db")
    live.migrate()
    shadow.migrate()
    await rebuild(log, live)
    await rebuild(log, shadow)
    with sqlite3.connect(tmp_path / "live.db") as corrupt:  # a bug, or a hand edit
        corrupt.execute("update devices set count = count + 1 where device_id = 'dev-3'")
    check = verify(live, shadow)
    assert not check.ok
    assert check.equal["devices"] is False
    assert check.differing_devices == ["dev-3"]


async def test_bad_ranges_and_unknown_topics_change_nothing(
    log: WorkerSettings, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    now = int(time.time() * 1000)
    with pytest.raises(ConfigError, match="future"):
        await rebuild(log, store, from_ms=now + 3_600_000)
    with pytest.raises(ConfigError, match="after --from"):
        await rebuild(log, store, from_ms=BASE + 10_000, to_ms=BASE)
    with pytest.raises(ConfigError, match="unknown topic"):
        await rebuild(log.model_copy(update={"telemetry_topic": unique("missing")}), store)
    assert store.devices() == []


async def test_copy_keeps_keys_headers_and_event_ids_for_one_device(
    log: WorkerSettings, kafka_admin: KafkaClientSettings, unique: Callable[[str], str]
) -> None:
    target = unique("copy")
    admin = AIOKafkaAdminClient(**kafka_admin.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, 1, 1)])
    finally:
        await admin.close()
    report = await copy_slice(log.kafka, log.telemetry_topic, target, device_id="dev-4", rate=5000)
    assert (report.read, report.copied) == (1500, 150)
    consumer = AIOKafkaConsumer(
        target, auto_offset_reset="earliest", **kafka_admin.aiokafka_kwargs()
    )
    await consumer.start()
    copied: list[Any] = []
    try:
        while len(copied) < 150:
            batch = await consumer.getmany(timeout_ms=1000)
            copied += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert {r.key for r in copied} == {b"dev-4"}
    async with open_registry("embedded", kafka_admin) as registry:
        first = await registry.decode(copied[0].value)
    assert first["device_id"] == "dev-4"
    assert [r.timestamp for r in copied] == sorted(r.timestamp for r in copied)
    with pytest.raises(ConfigError, match="differ"):
        await copy_slice(log.kafka, target, target)


def _iotctl(log: WorkerSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **process_env(DevStackSettings.from_env()),
        "IOT_STREAMS_TELEMETRY_TOPIC": log.telemetry_topic,
        "IOT_STREAMS_GROUP": log.group,
    }
    return iotctl(env, *args)


async def test_a_swap_after_retention_deleted_records_is_refused_unless_accepted(
    log: WorkerSettings, tmp_path: Path
) -> None:
    """Finding 6: a full rebuild started at the log's current start and the swap replaced the
    live state, silently dropping the devices whose events had aged out."""
    live = SqliteStore(tmp_path / "live.db")
    live.migrate()
    end = (await plan(log)).end
    await catch_up(log, live, end)
    gone = sorted(d.device_id for d in live.devices() if partition_for(d.device_id, 3) == 0)
    assert gone
    admin = AIOKafkaAdminClient(**log.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        topic = TopicPartition(log.telemetry_topic, 0)
        await admin.delete_records({topic: RecordsToDelete(end[0])})
    finally:
        await admin.close()
    refused = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--shadow", f"sqlite:///{tmp_path / 's.db'}", "--swap"
    )
    assert refused.returncode == 1
    assert f"retention deleted {end[0]:,} records" in refused.stderr
    assert "--accept-loss" in refused.stderr
    assert not (tmp_path / "s.db").exists()  # refused before rebuilding anything
    shadow = SqliteStore(tmp_path / "shadow.db")
    shadow.migrate()
    await rebuild(log, shadow)
    before = state_hashes(live)
    with pytest.raises(ConfigError, match="--accept-loss"):
        await swap(log, live, shadow)
    assert state_hashes(live) == before
    swapped = await swap(log, live, shadow, accept_loss=True)
    assert swapped.loss is not None
    assert (swapped.loss.deleted, list(swapped.loss.devices_dropped)) == ({0: end[0]}, gone)
    assert not {d.device_id for d in live.devices()} & set(gone)
    live.close()
    shadow.close()


async def test_the_cli_plans_rebuilds_verifies_and_refuses_bad_ranges(
    log: WorkerSettings, tmp_path: Path
) -> None:
    planned = await asyncio.to_thread(_iotctl, log, "replay", "rebuild", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["records"] == 1500
    live = f"sqlite:///{tmp_path / 'live.db'}"
    built = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--shadow", live, "--jobs", "2", "--json"
    )
    assert built.returncode == 0, built.stderr
    checked = await asyncio.to_thread(
        _iotctl,
        log,
        "replay",
        "rebuild",
        "--store",
        live,
        "--shadow",
        f"sqlite:///{tmp_path / 'shadow.db'}",
        "--jobs",
        "1",
        "--verify",
        "--json",
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["verify"]["equal"] == {
        "devices": True,
        "windows": True,
        "alerts": True,
    }
    hashed = await asyncio.to_thread(_iotctl, log, "state", "hash", "--store", live, "--json")
    assert json.loads(hashed.stdout) == json.loads(built.stdout)["hashes"]
    future = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--dry-run", "--from", "2099-01-01T00:00Z"
    )
    assert future.returncode == 1
    assert "future" in future.stderr
    garbled = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--dry-run", "--from", "yesterday"
    )
    assert garbled.returncode == 2


# -- reset-group ----------------------------------------------------------------------------


async def _commit(
    kafka: KafkaClientSettings, group: str, offsets: dict[TopicPartition, int]
) -> None:
    """Commits ``offsets`` for ``group`` as an idle (assign-only) member would."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _committed(log: WorkerSettings, partitions: list[int]) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        group_id=log.group, enable_auto_commit=False, **log.kafka.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(log.telemetry_topic, p)) for p in partitions
        }
    finally:
        await consumer.stop()


class Halfway:
    """A live store and the workers' group that applied half of each partition."""

    def __init__(self, log: WorkerSettings, path: Path) -> None:
        self.log, self.path = log, path
        self.url = f"sqlite:///{path}"
        self.store = SqliteStore(path)
        self.store.migrate()
        self.half: dict[int, int] = {}
        self.end: dict[int, int] = {}

    async def start(self) -> Halfway:
        self.end = (await plan(self.log)).end
        self.half = {p: end // 2 for p, end in self.end.items()}
        await catch_up(self.log, self.store, self.half)
        topic = self.log.telemetry_topic
        await _commit(
            self.log.kafka,
            self.log.group,
            {TopicPartition(topic, p): offset for p, offset in self.half.items()},
        )
        return self

    def stored(self) -> dict[int, int]:
        """The store's next offsets of the group."""
        return {tp.partition: o + 1 for tp, o in self.store.positions(self.log.group).items()}

    async def reset(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            _iotctl,
            self.log,
            "replay",
            "reset-group",
            "--store",
            self.url,
            "--group",
            self.log.group,
            *args,
        )


@pytest.fixture
async def halfway(log: WorkerSettings, tmp_path: Path) -> AsyncIterator[Halfway]:
    state = await Halfway(log, tmp_path / "live.db").start()
    yield state
    state.store.close()


async def test_reset_group_dry_run_prints_the_plan_and_changes_nothing(
    halfway: Halfway,
) -> None:
    hashes = state_hashes(halfway.store)
    shown = await halfway.reset("--to", "latest")
    assert shown.returncode == 0, shown.stderr
    assert "dry run: nothing changed" in shown.stdout
    assert "skips" in shown.stdout
    planned = await halfway.reset("--to", "latest", "--json")
    assert planned.returncode == 0, planned.stderr
    report = json.loads(planned.stdout)
    assert report["executed"] is False
    rows = {row["partition"]: row for row in report["partitions"]}
    assert {p: row["new"] for p, row in rows.items()} == halfway.end
    assert {p: row["stored"] for p, row in rows.items()} == halfway.half
    assert {p: row["committed"] for p, row in rows.items()} == halfway.half
    assert report["skipped"] == sum(halfway.end.values()) - sum(halfway.half.values())
    assert halfway.stored() == halfway.half
    assert await _committed(halfway.log, sorted(halfway.end)) == halfway.half
    assert state_hashes(halfway.store) == hashes


async def test_reset_group_is_refused_while_the_group_has_an_active_member(
    halfway: Halfway,
) -> None:
    log = halfway.log
    member = AIOKafkaConsumer(
        log.telemetry_topic,
        group_id=log.group,
        enable_auto_commit=False,
        **log.kafka.aiokafka_kwargs(),
    )
    await member.start()
    try:
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "the member never joined"
            await member.getmany(timeout_ms=200, max_records=1)
        refused = await halfway.reset("--to", "latest", "--execute")
    finally:
        await member.stop()
    assert refused.returncode == 1
    assert "is active" in refused.stderr
    assert "stop its workers" in refused.stderr
    assert halfway.stored() == halfway.half
    assert await _committed(log, sorted(halfway.end)) == halfway.half


async def test_reset_group_execute_moves_the_group_and_the_store_forward(
    halfway: Halfway,
) -> None:
    log = halfway.log
    hashes = state_hashes(halfway.store)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **log.kafka.aiokafka_kwargs())
    await consumer.start()
    try:  # a time 90% into partition 0: every partition moves forward, to its own offset
        tps = [TopicPartition(log.telemetry_topic, p) for p in sorted(halfway.end)]
        consumer.assign(tps)
        consumer.seek(tps[0], halfway.end[0] * 9 // 10)
        fetched = await consumer.getmany(tps[0], timeout_ms=5000, max_records=1)
        at = fetched[tps[0]][0].timestamp
        found = await consumer.offsets_for_times(dict.fromkeys(tps, at))
    finally:
        await consumer.stop()
    expected = {tp.partition: found[tp].offset for tp in tps if found[tp] is not None}
    assert all(expected[p] > halfway.half[p] for p in expected)

    moved = await halfway.reset("--to", str(at), "--execute", "--json")

    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["executed"] is True
    assert report["generation"] == 1
    assert {row["partition"]: row["new"] for row in report["partitions"]} == expected
    assert halfway.stored() == expected
    assert await _committed(log, sorted(halfway.end)) == expected
    assert state_hashes(halfway.store) == hashes  # skipped events are not applied

    latest = await halfway.reset("--to", "latest", "--execute")
    assert latest.returncode == 0, latest.stderr
    assert "never include" in latest.stdout
    assert halfway.stored() == halfway.end
    assert await _committed(log, sorted(halfway.end)) == halfway.end
    assert halfway.store.stored_generation() == 2


async def test_reset_group_refuses_going_back_and_bad_input_changing_nothing(
    halfway: Halfway, unique: Callable[[str], str]
) -> None:
    back = await halfway.reset("--to", "earliest", "--execute")
    assert back.returncode == 1
    assert "back" in back.stderr
    assert "iotctl replay rebuild" in back.stderr
    assert "--swap" in back.stderr
    assert "BACKWARD" in back.stdout
    future = await halfway.reset("--to", "2099-01-01T00:00Z", "--execute")
    assert future.returncode == 1
    assert "future" in future.stderr
    missing = await halfway.reset("--to", "latest", "--topic", unique("missing"), "--execute")
    assert missing.returncode == 1
    assert "unknown topic" in missing.stderr
    stranger = await asyncio.to_thread(
        _iotctl,
        halfway.log,
        "replay",
        "reset-group",
        "--store",
        halfway.url,
        "--group",
        unique("nobody"),
        "--to",
        "latest",
        "--execute",
    )
    assert stranger.returncode == 1
    assert "unknown group" in stranger.stderr
    log = halfway.log
    admin = AIOKafkaAdminClient(**log.kafka.aiokafka_kwargs())
    await admin.start()
    try:  # retention deleted the first 10 records of every partition
        await admin.delete_records(
            {
                TopicPartition(log.telemetry_topic, p): RecordsToDelete(before_offset=10)
                for p in halfway.end
            }
        )
    finally:
        await admin.close()
    retired = await halfway.reset("--to", str(BASE), "--execute")
    assert retired.returncode == 1
    assert "before retention" in retired.stderr
    assert halfway.stored() == halfway.half
    assert await _committed(log, sorted(halfway.end)) == halfway.half
    assert halfway.store.stored_generation() == 0
