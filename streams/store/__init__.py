"""The Store port and its adapters (SQLite: embedded, one worker; PostgreSQL: scale-out)."""

from streams.store.factory import open_store
from streams.store.port import (
    BatchWrite,
    FleetCounts,
    InboxState,
    InboxStore,
    LoadedDevices,
    OffsetAdvance,
    OnceResult,
    OutboxClaim,
    OutboxRecord,
    OutboxStore,
    Projection,
    ProjectionStore,
    Store,
    StoreTransaction,
    TrackingStore,
)
from streams.store.postgres import PostgresStore
from streams.store.sqlite import SqliteStore

__all__ = [
    "BatchWrite",
    "FleetCounts",
    "InboxState",
    "InboxStore",
    "LoadedDevices",
    "OffsetAdvance",
    "OnceResult",
    "OutboxClaim",
    "OutboxRecord",
    "OutboxStore",
    "PostgresStore",
    "Projection",
    "ProjectionStore",
    "SqliteStore",
    "Store",
    "StoreTransaction",
    "TrackingStore",
    "open_store",
]
