"""What a fault cost, from hand-made timelines: each number could come out otherwise."""

from __future__ import annotations

from tests.faults.availability import (
    CLUSTER_STALL_S,
    Cost,
    FaultSpan,
    ack_times,
    applied_times,
    check_cluster_availability,
    costs,
)
from tests.faults.checker import Ack, Status


def _every(start: float, end: float, step: float = 0.2) -> list[float]:
    return [round(start + n * step, 3) for n in range(int((end - start) / step) + 1)]


def test_the_worst_partition_gives_the_stall_and_the_recovery() -> None:
    acked = {
        0: _every(0, 100),
        1: [*_every(0, 20), *_every(27.5, 100)],  # stalled from 20 to 27.5: 7.5 s
    }
    applied = {0: _every(0, 100, 0.5), 1: [*_every(0, 20, 0.5), *_every(29, 100, 0.5)]}
    fault = FaultSpan("kill -9 kafka-leader", 19.0, 21.0, kafka_node=True)
    (cost,) = costs([fault], acked, applied, load_started=0.0, load_ended=100.0)
    assert (cost.ingest_stall_s, cost.applied_stall_s) == (7.5, 9.0)
    assert cost.recovered_after_s == 27.5 - 19.0
    assert cost.started_s == 19.0


def test_a_window_ends_at_the_next_fault_and_a_silent_partition_stalls_to_its_end() -> None:
    acked = {0: [*_every(0, 10), *_every(40, 60)]}  # nothing from 10 to 40
    first = FaultSpan("pause gateway-1", 10.0, 12.0, kafka_node=False)
    second = FaultSpan("kill -9 kafka-controller", 15.0, 30.0, kafka_node=True)
    early, late = costs([first, second], acked, {}, load_started=0.0, load_ended=60.0)
    assert early.ingest_stall_s == 15.0 - 10.0  # cut at the second fault's start
    assert late.ingest_stall_s == 40.0 - 15.0  # counted from its own start
    assert late.applied_stall_s == 0.0  # nothing sampled


def test_faults_that_overlap_are_both_charged_their_joint_stall() -> None:
    acked = {0: [*_every(0, 10), *_every(18, 60)]}  # nothing from 10 to 18
    kafka = FaultSpan("kill -9 kafka-leader", 10.0, 14.0, kafka_node=True)
    gateway = FaultSpan("kill -9 gateway-1", 11.0, 12.0, kafka_node=False, overlaps=True)
    later = FaultSpan("pause worker-1", 40.0, 42.0, kafka_node=False)
    first, second, third = costs([kafka, gateway, later], acked, {}, 0.0, 60.0)
    assert first.ingest_stall_s == 8.0  # not cut short where its partner started
    assert second.ingest_stall_s == 18.0 - 11.0
    assert round(third.ingest_stall_s, 3) == 0.2  # readings every 0.2 s


def test_readings_are_counted_on_their_device_partition_and_bad_payloads_not_at_all() -> None:
    acks = [
        Ack("dev-1", 1, "ok", 0.0, 0.1),
        Ack("dev-1", 2, "duplicate", 0.1, 0.2),
        Ack("dev-1", None, "invalid_json", 0.2, 0.3),
    ]
    times = ack_times(acks, 6)
    assert sorted(len(series) for series in times.values()) == [0, 0, 0, 0, 0, 2]
    assert applied_times([(1.0, {0: 5}), (1.5, {0: 5}), (2.0, {0: 9, 1: 1})]) == {
        0: [1.0, 2.0],
        1: [2.0],
    }


def test_one_kafka_node_over_the_target_fails_the_cluster_verdict() -> None:
    def cost(label: str, stall: float, kafka: bool) -> Cost:
        return Cost(label, 10.0, stall, stall, stall, kafka)

    within = [cost("kill -9 kafka-leader", 6.0, True), cost("kill -9 worker", 30.0, False)]
    assert check_cluster_availability(within).status is Status.PASS
    over = [*within, cost("kill -9 kafka-controller", CLUSTER_STALL_S + 0.1, True)]
    verdict = check_cluster_availability(over)
    assert verdict.status is Status.FAIL
    assert verdict.counts["over"] == 1
    assert check_cluster_availability([]).status is Status.FAIL  # no Kafka fault: not shown
