"""The worker's Kafka offset commit is only a hint (positions live in the store): a commit
the group refuses after a rebalance, or a broker that is gone, must not end the worker."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError, UnknownMemberIdError

from streams.worker.batches import commit_hint
from streams.worker.metrics import WorkerMetrics


class _Consumer:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.committed: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.error is not None:
            raise self.error
        self.committed.append(offsets)


@pytest.mark.parametrize(
    "error",
    [
        CommitFailedError("the group has already rebalanced"),
        UnknownMemberIdError(),
        KafkaConnectionError("broker gone"),
    ],
    ids=["rebalanced", "unknown-member", "broker-gone"],
)
async def test_a_refused_commit_is_counted_and_the_worker_goes_on(error: Exception) -> None:
    metrics = WorkerMetrics()
    await commit_hint(_Consumer(error), {TopicPartition("t", 0): 5}, metrics)  # type: ignore[arg-type]
    assert metrics.commit_hints_refused._value.get() == 1


async def test_an_accepted_commit_is_made() -> None:
    metrics = WorkerMetrics()
    consumer = _Consumer(None)
    await commit_hint(consumer, {TopicPartition("t", 0): 5}, metrics)  # type: ignore[arg-type]
    assert consumer.committed == [{TopicPartition("t", 0): 5}]
    assert metrics.commit_hints_refused._value.get() == 0
