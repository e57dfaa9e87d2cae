"""The sink's lanes: a partition whose leader is gone holds back only its own records.

Found by the fault suite on a Kafka cluster: with one node killed, ingest stopped for every
device, because one flush round handed its batches to aiokafka one after the other and
waited on the first partition whose earlier batch could not be sent. A fake producer stands
in for aiokafka here (the sink's ordering is pure logic); the fault suite runs the real one.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder

from contracts.partitioning import partition_for
from iot_gateway.errors import ProduceFailedError
from iot_gateway.ingest import KafkaRecord
from iot_gateway.metrics import GatewayMetrics
from iot_gateway.sink import KafkaSink

TOPIC = "t"


class LeaderlessProducer:
    """aiokafka's producer as the sink uses it, with partition 0's leader gone: its first
    batch is taken and never acknowledged, a second one waits for room (as aiokafka's
    accumulator does, one queued batch per partition); partition 1 acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []  # (partition, records)
        self._stuck: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16_384, 0)

    async def send_batch(
        self, builder: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[object]:
        if partition == 0 and any(p == 0 for p, _ in self.sent):
            await asyncio.Event().wait()  # no room until the leader is back
        self.sent.append((partition, builder.record_count()))
        if partition == 0:
            return self._stuck
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def fail_partition_0(self) -> None:
        self._stuck.set_exception(ProduceFailedError("NotLeaderForPartition"))


def key_for(partition: int) -> bytes:
    return next(
        key for n in range(1000) if partition_for(key := f"dev-{n}".encode(), 2) == partition
    )


def record(partition: int, n: int) -> KafkaRecord:
    return KafkaRecord(TOPIC, key_for(partition), f"v{n}".encode(), ())


async def test_a_partition_without_a_leader_holds_back_only_its_own_records() -> None:
    producer = LeaderlessProducer()
    sink = KafkaSink(producer, GatewayMetrics())  # type: ignore[arg-type]
    outcomes: dict[str, BaseException | None] = {}

    def put(partition: int, n: int) -> None:
        name = f"p{partition}-{n}"
        sink.put(record(partition, n), lambda error: outcomes.__setitem__(name, error))

    for n in range(3):  # three rounds, each with a record of either partition
        put(0, n)
        put(1, n)
        await sink.flush()
        await asyncio.sleep(0.01)
    assert [outcomes.get(f"p1-{n}", "pending") for n in range(3)] == [None, None, None]
    assert not any(name.startswith("p0") for name in outcomes)  # held, not answered
    assert sink.in_flight == 3
    producer.fail_partition_0()
    await asyncio.sleep(0.01)
    assert sink.failed.done()
    assert isinstance(outcomes["p0-0"], ProduceFailedError)
    await sink.close()  # the owner replaces a failed sink: what its lanes held is answered
    assert all(isinstance(outcomes[f"p0-{n}"], ProduceFailedError) for n in range(3))
    assert sink.in_flight == 0


async def test_closing_the_sink_answers_what_its_lanes_still_hold() -> None:
    producer = LeaderlessProducer()
    sink = KafkaSink(producer, GatewayMetrics())  # type: ignore[arg-type]
    errors: list[BaseException | None] = []
    for n in range(2):
        sink.put(record(0, n), errors.append)
        await sink.flush()
        await asyncio.sleep(0.01)
    await sink.close()
    assert len(errors) == 1  # the batch still waiting for room; the sent one is aiokafka's
    assert isinstance(errors[0], ProduceFailedError)
    assert sink.in_flight == 1


class SlowAccumulatorProducer(LeaderlessProducer):
    """aiokafka's ``send_batch`` giving up with KafkaTimeoutError while the partition's
    earlier batch waits (``request_timeout_ms``), twice, then taking the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 2

    async def send_batch(
        self, builder: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[object]:
        if self.refusals:
            self.refusals -= 1
            raise KafkaTimeoutError()
        self.sent.append((partition, builder.record_count()))
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_batch_not_taken_in_time_is_offered_again_not_failed() -> None:
    producer = SlowAccumulatorProducer()
    sink = KafkaSink(producer, GatewayMetrics())  # type: ignore[arg-type]
    outcomes: list[BaseException | None] = []
    for n in range(3):
        sink.put(record(1, n), outcomes.append)
    await sink.flush()
    await asyncio.sleep(0.05)
    assert outcomes == [None, None, None]
    assert producer.sent == [(1, 3)]  # once, whole, in order
    assert not sink.failed.done()
    await sink.close()
