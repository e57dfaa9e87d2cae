"""A quixstreams application doing ``bench.peers_work``'s work on the preloaded topic.

Run by ``bench.peers``, one process per run. The application is written as its documentation
shows one: a ``StreamingDataFrame`` over the topic (key = device id, event time = ``ts``),
a stateful filter that drops a repeated ``seq``, a stateful step keeping the device's count
and latest values, and two tumbling windows (``reduce`` with the same grace as our worker),
each emitting its current value. State lives in quixstreams' defaults, RocksDB with a
changelog topic per store; ``--guarantee exactly-once`` makes the changelogs and the consumer
offsets of each checkpoint one Kafka transaction, ``at-least-once`` commits them apart. The
emitted values are collected in memory as the :class:`~bench.peers_work.Outcome`.

The run stops itself after ``--records`` records; its time runs from the first record read
until ``run`` returned: the final checkpoint committed, the consumer and the stores closed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import Deserializer, SerializationContext
from quixstreams.state import State

from bench import peers_work as work


class TelemetryDeserializer(Deserializer):
    """Confluent-framed Avro values as telemetry records."""

    def __init__(self, schemas: work.OneSchema) -> None:
        super().__init__()
        self.schemas = schemas

    def __call__(self, value: bytes, ctx: SerializationContext) -> dict[str, Any]:
        return self.schemas.record(value)


def event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Windows follow the reading's ``ts``, not the Kafka record's timestamp."""
    return int(value["ts"])


def build(
    app: Application, topic_name: str, schemas: work.OneSchema, outcome: work.Outcome, records: int
) -> work.Stopwatch:
    """The dataflow; every step's state is keyed by device (the record key). Its first step
    counts the records and stops the application at the last one, which is still processed
    to the end and committed in the final checkpoint before ``run`` returns."""
    stopwatch = work.Stopwatch()
    topic = app.topic(
        topic_name,
        key_deserializer="str",
        value_deserializer=TelemetryDeserializer(schemas),
        timestamp_extractor=event_time,
    )
    sdf = app.dataframe(topic)

    def count(record: dict[str, Any]) -> None:
        if stopwatch.tick() == records:
            app.stop()

    def first_time(record: dict[str, Any], state: State) -> bool:
        seen = work.admit(state.get("seq"), record["seq"])
        if seen is None:
            return False
        state.set("seq", seen)
        return True

    def device_summary(record: dict[str, Any], state: State) -> None:
        summary = work.summarize(state.get("device"), record["ts"], record["metrics"])
        state.set("device", summary)
        outcome.device(record["device_id"], summary)

    sdf = sdf.update(count)
    sdf = sdf.filter(first_time, stateful=True)
    sdf = sdf.update(device_summary, stateful=True)
    for name, spec in work.WINDOWS.items():

        def emitted(
            window: Any, key: Any, timestamp: int, headers: Any, size: int = spec.size_ms
        ) -> None:
            outcome.window(key, size, window["start"], window["value"])

        windowed = sdf.tumbling_window(spec.size_ms, grace_ms=spec.grace_ms, name=name).reduce(
            reducer=lambda agg, record: work.fold(agg, record["metrics"]),
            initializer=lambda record: work.fold(None, record["metrics"]),
        )
        windowed.current().update(emitted, metadata=True)
    return stopwatch


def main() -> int:
    parser = work.peer_arguments((__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--guarantee", choices=("exactly-once", "at-least-once"), default="exactly-once"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(work.stack_kafka().confluent_config()),
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    outcome = work.Outcome()
    stopwatch = build(app, args.topic, work.OneSchema(args.schema_id), outcome, args.records)
    app.run()
    stopwatch.stop()
    work.write_report(args.out, stopwatch.report(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
