"""The one error root of the ``streams`` package.

Every error a caller of ``streams`` can see derives from :class:`StreamsError`. Store adapters
translate driver errors at their edge (``raise StoreError(...) from exc``), so callers never
catch ``sqlite3`` or ``psycopg`` types. ``retriable`` tells whether repeating the same call
(after reloading state where the error says so) can succeed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "PartitionLayoutError",
    "PositionConflictError",
    "StoreError",
    "StoreSwappedError",
    "StoreUnavailableError",
    "StreamsError",
]


class StreamsError(Exception):
    """Root of every error raised by ``streams``."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(StreamsError):
    """A configuration file or value is invalid; the message names the field. Never retriable."""


class StoreError(StreamsError):
    """The store failed; nothing of the failed transaction was committed.

    ``retriable`` is True for transient failures (connection lost, lock timeout, serialization
    failure, deadlock): repeat the whole unit of work. False means a bug or a corrupt store.
    """


class StoreUnavailableError(StoreError):
    """The store cannot be reached, is locked by another process, or has no room to write
    (a full disk). Always retriable."""

    retriable = True


class PositionConflictError(StoreError):
    """Another worker applied events of a partition since this worker last read its position.

    Raised by a batch commit whose expected inbox offsets no longer match the store (the fence
    that protects a partition that moved to another worker during a rebalance). Nothing was
    written. Retriable after the caller drops its cached state and seeks to
    ``Store.positions(group)``; :class:`~streams.processor.BatchProcessor` drops its cache itself.
    """

    retriable = True


class StoreSwappedError(StoreError):
    """A replay swap replaced the store's state since this store instance last followed it.

    Raised by a batch commit (nothing was written) when the store's generation is not the one
    this instance works under: every cached state (inbox windows, devices) and the consumer's
    positions belong to the state that was swapped out. Not retriable as is: drop the caches,
    call ``Store.follow_swap()`` and seek every partition to ``Store.positions(group)`` + 1
    (the swapped-in state's own offsets), then carry on from there.
    """

    retriable = False


class PartitionLayoutError(StreamsError):
    """The telemetry topic has a partition count its store did not plan (see
    :mod:`streams.layout`): nothing is applied until ``iotctl replay repartition`` records
    it. Not retriable: an operator decides."""
