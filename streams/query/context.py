"""What the query API needs of the process that serves it: a small port, not the worker.

The stream worker's runtime satisfies it; so does any process with settings, a metrics
registry, a readiness flag, a started schema registry and, to accept commands, a store whose
outbox a relay publishes.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry

from contracts.registry.cache import SchemaCache
from streams.settings import WorkerSettings
from streams.store.port import TrackingStore

__all__ = ["QueryContext"]


class _Metrics(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class QueryContext(Protocol):
    """The host of a :class:`streams.query.QueryApi`."""

    @property
    def settings(self) -> WorkerSettings:
        """Where the log, the store and the query limits are."""

    @property
    def metrics(self) -> _Metrics:
        """Holds the registry the query metrics join (served at ``/metrics``)."""

    @property
    def ready(self) -> bool:
        """Whether the host applies the log (``/api/health``)."""

    @property
    def registry(self) -> SchemaCache | None:
        """The started schema registry (None before start): decodes log records."""

    @property
    def store(self) -> TrackingStore | None:
        """The host's own store (None before start): commands sent over HTTP are appended
        to its outbox, which the host's relay publishes."""
