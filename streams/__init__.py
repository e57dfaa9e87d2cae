"""Stream processors with exactly-once effects: projections, inbox, outbox, queries, replay."""

from streams.domain import DerivedEvent, Position, TelemetryEvent, TopicPartition
from streams.errors import (
    ConfigError,
    PositionConflictError,
    StoreError,
    StoreUnavailableError,
    StreamsError,
)
from streams.processor import BatchProcessor, BatchResult, SkipReason

__all__ = [
    "BatchProcessor",
    "BatchResult",
    "ConfigError",
    "DerivedEvent",
    "Position",
    "PositionConflictError",
    "SkipReason",
    "StoreError",
    "StoreUnavailableError",
    "StreamsError",
    "TelemetryEvent",
    "TopicPartition",
]
