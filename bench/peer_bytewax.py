"""A bytewax dataflow doing ``bench.peers_work``'s work on the preloaded topic.

Run by ``bench.peers``, one process per run, one worker (``cli_main``, what ``python -m
bytewax.run`` calls). Written as bytewax's documentation shows a dataflow: the Kafka input
connector from the earliest offset, stopping at the end of the partitions; records keyed by
device; a ``stateful_flat_map`` that drops a repeated ``seq``, a ``stateful_map`` keeping the
device's count and latest values, and a ``fold_window`` per window size over an event-time
clock that waits the worker's grace period. Recovery is on: the state of every step and the
input offsets are snapshotted into bytewax's SQLite recovery partition each epoch (5 s, as
quixstreams commits). The windows are emitted when they close (all of them at the end of the
input); the emitted values are collected in memory as the :class:`~bench.peers_work.Outcome`.

Its time runs from the first record read until the dataflow finished (the last snapshot
written).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir

from bench import peers_work as work

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_INTERVAL = timedelta(seconds=5)

Record = dict[str, Any]


class Collect(DynamicSink[tuple[str, Any]]):
    """A sink handing each keyed item to a function of this process."""

    def __init__(self, write: Callable[[str, Any], None]) -> None:
        self.write = write

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self.write)


class _Partition(StatelessSinkPartition[tuple[str, Any]]):
    def __init__(self, write: Callable[[str, Any], None]) -> None:
        self.write = write

    def write_batch(self, items: list[tuple[str, Any]]) -> None:
        for key, value in items:
            self.write(key, value)


def first_time(seen: list[Any] | None, record: Record) -> tuple[list[Any] | None, list[Record]]:
    admitted = work.admit(seen, record["seq"])
    return (seen, []) if admitted is None else (admitted, [record])


def device_summary(summary: list[Any] | None, record: Record) -> tuple[list[Any], list[Any]]:
    updated = work.summarize(summary, record["ts"], record["metrics"])
    return updated, updated


def event_time(record: Record) -> datetime:
    return EPOCH + timedelta(milliseconds=record["ts"])


def merge(
    left: Mapping[str, Sequence[float]], right: Mapping[str, Sequence[float]]
) -> dict[str, list[float]]:
    """Two partial windows as one (bytewax asks for it; tumbling windows never merge)."""
    out = {name: list(agg) for name, agg in left.items()}
    for name, (count, total, low, high) in right.items():
        if name in out:
            mine = out[name]
            out[name] = [mine[0] + count, mine[1] + total, min(mine[2], low), max(mine[3], high)]
        else:
            out[name] = [count, total, low, high]
    return out


def build(
    topic: str, schemas: work.OneSchema, outcome: work.Outcome, stopwatch: work.Stopwatch
) -> Dataflow:
    kafka = work.stack_kafka()
    flow = Dataflow("peers")
    source = kop.input(
        "kafka",
        flow,
        brokers=[kafka.bootstrap],
        topics=[topic],
        tail=False,
        add_config=kafka.confluent_config(),
    )

    def decode(message: KafkaSourceMessage[bytes, bytes]) -> Record:
        stopwatch.tick()
        return schemas.record(message.value)

    records = op.key_on("device", op.map("decode", source.oks, decode), lambda r: r["device_id"])
    fresh = op.stateful_flat_map("dedupe", records, first_time)
    devices = op.stateful_map("device-state", fresh, device_summary)
    op.output("devices-out", devices, Collect(outcome.device))
    for name, spec in work.WINDOWS.items():
        clock = win.EventClock(
            ts_getter=event_time,
            wait_for_system_duration=timedelta(milliseconds=spec.grace_ms),
            to_system_utc=lambda _: None,  # event time only: windows close on data or EOF
        )
        windower = win.TumblingWindower(length=timedelta(milliseconds=spec.size_ms), align_to=EPOCH)
        windows = win.fold_window(
            f"window-{name}",
            fresh,
            clock,
            windower,
            builder=dict,
            folder=lambda agg, record: work.fold(agg, record["metrics"]),
            merger=merge,
        )

        def emitted(key: str, item: tuple[int, Any], size: int = spec.size_ms) -> None:
            window_id, agg = item
            outcome.window(key, size, window_id * size, agg)

        op.output(f"window-{name}-out", windows.down, Collect(emitted))
    return flow


def main() -> int:
    args = work.peer_arguments((__doc__ or "").splitlines()[0]).parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    init_db_dir(args.state_dir, 1)
    outcome, stopwatch = work.Outcome(), work.Stopwatch()
    flow = build(args.topic, work.OneSchema(args.schema_id), outcome, stopwatch)
    cli_main(
        flow,
        workers_per_process=1,
        epoch_interval=EPOCH_INTERVAL,
        recovery_config=RecoveryConfig(args.state_dir),
    )
    stopwatch.stop()
    assert stopwatch.records == args.records, f"read {stopwatch.records} of {args.records}"
    work.write_report(args.out, stopwatch.report(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
