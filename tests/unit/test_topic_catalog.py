"""Topic names come from one catalog, and a topic moved in the settings moves for every
component that writes or reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from contracts.topics import ALERTS, COMMANDS, PLATFORM_TOPICS, TELEMETRY, TELEMETRY_DLQ
from iot_gateway.config import DownlinkSettings, KafkaSettings
from streams import BatchProcessor
from streams.notifier import AlertCommandNotifier
from streams.relay import OutboxRelay
from streams.settings import NotifierSettings, QuerySettings, WorkerSettings
from streams.store import OutboxRecord, SqliteStore
from tests.oracle import RULES, event, make_log


class _Recorder:
    def __init__(self) -> None:
        self.published: list[OutboxRecord] = []

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        self.published.extend(records)


def test_every_default_topic_is_the_catalogs() -> None:
    worker = WorkerSettings()
    assert (worker.telemetry_topic, worker.alerts_topic) == (TELEMETRY.name, ALERTS.name)
    assert QuerySettings().dlq_topic == TELEMETRY_DLQ.name
    assert NotifierSettings().commands_topic == COMMANDS.name
    assert KafkaSettings().dlq_topic == TELEMETRY_DLQ.name
    assert DownlinkSettings().kafka_topic == COMMANDS.name
    assert len({topic.name for topic in PLATFORM_TOPICS}) == len(PLATFORM_TOPICS)


def test_alerts_and_the_commands_they_cause_go_to_the_configured_topics(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    processor = BatchProcessor(store, "g", rules=RULES, alerts_topic="site-a.alerts")
    processor.apply(make_log([event("a", i * 1000, seq=i, temp=t) for i, t in enumerate([26.0])]))
    recorder = _Recorder()
    asyncio.run(OutboxRelay(store, recorder).pump())
    assert [r.event.topic for r in recorder.published] == ["site-a.alerts"]

    notifier = AlertCommandNotifier(
        store, {RULES[0].name: "cool_down"}, commands_topic="site-a.commands"
    )
    command = notifier.handle(recorder.published[0].event.payload).value
    assert command is not None
    assert command.topic == "site-a.commands"
    store.close()
