"""The outbox relay: publishes committed derived events, in per-key order, at least once.

The Kafka side is a seam: :class:`OutboxPublisher` is implemented later by the idempotent
aiokafka producer with the Avro serde. A relay claims rows (exclusive per key, see
``OutboxStore.claim``), publishes them in order, then marks them published. A crash between
publishing and marking re-publishes the rows later with the same ``event_id``: consumers
dedupe (``TrackingStore.apply_once``). The relay waits for append notifications instead of
polling (PostgreSQL LISTEN/NOTIFY; in-process events on SQLite) with a timeout as a backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from streams.store.port import OutboxRecord, OutboxStore

__all__ = ["OutboxPublisher", "OutboxRelay"]


class OutboxPublisher(Protocol):
    """Publishes outbox records to their topics (e.g. an idempotent Kafka producer)."""

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        """Publishes ``records`` keeping their order per key; returns once all are acked.

        Each message carries the record's ``event.event_id`` (as the ``event_id`` header) and
        ``event.key`` as its key. Raises on any failure; the relay then republishes later.
        """
        ...


class OutboxRelay:
    """Moves outbox rows to their topics; run one per process (several on PostgreSQL)."""

    def __init__(
        self,
        store: OutboxStore,
        publisher: OutboxPublisher,
        *,
        batch_size: int = 500,
        idle_timeout: float = 1.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._batch_size = batch_size
        self._idle_timeout = idle_timeout

    async def pump(self) -> int:
        """Claims, publishes and marks one batch; returns how many rows were published.

        If publishing fails the claim is released (rows stay unpublished) and the error
        propagates; the caller backs off and pumps again.
        """
        claim = await asyncio.to_thread(self._store.claim, self._batch_size)
        records = list(claim.records)
        try:
            if records:
                await self._publisher.publish(records)
        except BaseException:
            await asyncio.to_thread(claim.release)
            raise
        await asyncio.to_thread(claim.mark_published)
        return len(records)

    async def run(self, stop: asyncio.Event) -> None:
        """Pumps until ``stop`` is set, sleeping on append notifications while idle."""
        await asyncio.to_thread(self._store.wait_for_outbox, 0.0)  # subscribe first
        while not stop.is_set():
            if await self.pump() == 0:
                await asyncio.to_thread(self._store.wait_for_outbox, self._idle_timeout)
