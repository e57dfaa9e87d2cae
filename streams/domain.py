"""Immutable messages the stream processors consume and produce.

A consumed event always travels with its :class:`Position` in the log; the processors use
event time (``TelemetryEvent.ts``) only and never the wall clock, so the projections are pure
functions of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "DerivedEvent",
    "Position",
    "TelemetryEvent",
    "TopicPartition",
    "derived_event_id",
]


class TopicPartition(NamedTuple):
    """One partition of a topic; the unit of ordering, assignment and inbox offsets."""

    topic: str
    partition: int


class Position(NamedTuple):
    """Where a consumed event sits in the log (Kafka topic, partition, offset); immutable.

    A named tuple rather than a dataclass, like :class:`TelemetryEvent`: one is built per
    consumed record.
    """

    topic: str
    partition: int
    offset: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


class TelemetryEvent(NamedTuple):
    """One telemetry message as accepted by the gateway (``iot.telemetry.v1``); immutable.

    ``event_id`` is stable across redeliveries: ``device_id`` + ``boot`` + ``seq`` when the
    device numbers its messages, else a content hash. ``ts_stamped`` says the gateway supplied
    ``ts`` (the device sent none). ``ts`` is event time (epoch ms) and is the only time
    the projections read; ``received_at`` is diagnostic. Non-finite metric values are counted
    per device and otherwise ignored.

    A named tuple rather than a frozen dataclass: one is built per consumed record, and a
    dataclass's ``__init__`` cost more than the Avro decoding of the record itself.
    """

    event_id: str
    device_id: str
    ts: int
    received_at: int
    seq: int | None
    metrics: Mapping[str, float]
    attributes: Mapping[str, str] = _NO_ATTRIBUTES
    boot: int | None = None
    ts_stamped: bool = False


@dataclass(frozen=True, slots=True)
class DerivedEvent:
    """An event derived from the log, written to the outbox in the transaction that caused it.

    ``event_id`` is a pure function of the cause (see :func:`derived_event_id`), so a
    re-publication after a relay crash carries the same id and consumers dedupe on it.
    ``payload`` is the record as the topic's Avro schema spells it (JSON-compatible values).
    """

    event_id: str
    topic: str
    key: str
    kind: str
    ts: int
    payload: Mapping[str, object]


def derived_event_id(*parts: str) -> str:
    """A stable id from the parts that identify a cause (e.g. rule, device, kind, event_id).

    The parts are joined with the ASCII unit separator and hashed with SHA-256 (128 bits
    kept, as 32 hex digits): equal parts always give the same id, in every process.
    """
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
