"""The local Kafka is the real thing: idempotent and transactional producers, groups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import kafka_client


async def _create_topic(kafka: KafkaClientSettings, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _drain(
    kafka: KafkaClientSettings,
    topic: str,
    partitions: int,
    isolation_level: str = "read_uncommitted",
) -> list[tuple[int, bytes]]:
    """Reads a whole topic from the beginning up to its current end (or stable end)."""
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka_kwargs(),
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[tuple[int, bytes]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in assigned]):
            batch = await consumer.getmany(timeout_ms=1000)
            records.extend(
                (message.partition, message.value)
                for messages in batch.values()
                for message in messages
            )
        return records
    finally:
        await consumer.stop()


async def test_idempotent_producer_with_acks_all_delivers_each_record_once_in_order(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    await _create_topic(kafka_client(settings), topic, 1)
    producer = AIOKafkaProducer(
        **kafka_client(settings).aiokafka_kwargs(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=b"dev-1", value=str(i).encode()) for i in range(500)
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert [m.offset for m in metadata] == list(range(500))
    records = await _drain(kafka_client(settings), topic, 1)
    assert [value for _, value in records] == [str(i).encode() for i in range(500)]


async def test_transactions_commit_and_abort_and_read_committed_sees_only_commits(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    await _create_topic(kafka_client(settings), topic, 3)
    producer = AIOKafkaProducer(
        **kafka_client(settings).aiokafka_kwargs(), transactional_id=unique("txn")
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(10):
                await producer.send(topic, key=f"k{i}".encode(), value=b"committed-1")
        await producer.begin_transaction()
        for i in range(10):
            await producer.send(topic, key=f"k{i}".encode(), value=b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, key=b"k0", value=b"committed-2")
    finally:
        await producer.stop()

    committed = await _drain(kafka_client(settings), topic, 3, "read_committed")
    everything = await _drain(kafka_client(settings), topic, 3)
    assert sorted(value for _, value in committed) == [b"committed-1"] * 10 + [b"committed-2"]
    # The aborted records are in the log; only the isolation level hides them.
    assert sum(1 for _, value in everything if value == b"aborted") == 10


async def _wait_for_assignment(consumer: AIOKafkaConsumer, size: int) -> set[TopicPartition]:
    for _ in range(200):
        await consumer.getmany(timeout_ms=100)
        if len(consumer.assignment()) == size:
            return set(consumer.assignment())
    raise AssertionError(f"assignment stayed {consumer.assignment()}, wanted {size} partitions")


async def test_consumer_group_rebalances_partitions_between_two_members(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic, group = unique("topic"), unique("group")
    await _create_topic(kafka_client(settings), topic, 4)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            **kafka_client(settings).aiokafka_kwargs(),
            group_id=group,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
        )

    first = member()
    await first.start()
    try:
        alone = await _wait_for_assignment(first, 4)
        assert {tp.partition for tp in alone} == {0, 1, 2, 3}
        second = member()
        await second.start()
        try:
            shares = await asyncio.gather(
                _wait_for_assignment(first, 2), _wait_for_assignment(second, 2)
            )
            assert shares[0].isdisjoint(shares[1])
            assert shares[0] | shares[1] == alone
        finally:
            await second.stop()
        # When the second member leaves, the first takes every partition back.
        assert await _wait_for_assignment(first, 4) == alone
    finally:
        await first.stop()
