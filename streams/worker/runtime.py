"""What one stream worker does, independent of faust: decode, apply, relay, notify.

The faust app (``streams.worker.app``) feeds batches of raw records to :meth:`handle` and
partition assignments to :meth:`assigned`/:meth:`revoked`. Guarantees:

- **The store is the source of truth.** Each batch commits in one store transaction
  (``BatchProcessor``): effects, inbox offsets and outbox rows together. Records at or below
  the stored offset, or with an event id already applied, are skipped, so whatever Kafka
  redelivers (after a crash, a rebalance, a gateway duplicate) is applied at most once.
- **Nothing is skipped by a failure.** A retriable store error retries the same batch with
  backoff; any other error stops the worker before the batch is acknowledged to Kafka, so
  the records are redelivered to whoever takes the partition.
- **Bad records are data.** A record that does not decode as telemetry is counted
  (``undecodable``), logged with its position, and passed over with its offset committed:
  it blocks neither the partition nor a reader waiting for that offset.
- **A replay swap is followed, never mixed.** ``iotctl replay rebuild --swap`` replaces the
  store's state (and its offsets) and bumps its generation; the next batch commit finds the
  new generation in its own transaction and writes nothing (``StoreSwappedError``). The
  runtime then drops every cache, adopts the generation and seeks each partition to the
  swapped-in offsets (``reseek``), so the events after them are applied to the new state
  once. An idle worker checks the generation every second (``check_swap``).
- **Derived events leave through the outbox** (``OutboxRelay``), at least once, in per-key
  order, with stable event ids; the notifier consumes alerts as an idempotent consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import NamedTuple, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts.avro import SchemaCatalog
from contracts.errors import ContractsError
from contracts.registry.cache import SchemaCache
from contracts.registry.factory import open_registry
from streams.decoding import UNDECODABLE, learn_schemas, read_telemetry
from streams.domain import Position, TelemetryEvent, TopicPartition
from streams.errors import PartitionLayoutError, StoreError, StoreSwappedError
from streams.notifier import AlertCommandNotifier
from streams.processor import COLLECTOR_THRESHOLDS, BatchProcessor, BatchResult, processor_for
from streams.relay import OutboxRelay
from streams.settings import WorkerSettings
from streams.store import Store, open_store
from streams.worker.metrics import WorkerMetrics
from streams.worker.publisher import KafkaOutboxPublisher

Seek = Callable[[dict[TopicPartition, int | None]], Awaitable[None]]
"""Seeks partitions of the consumer (None: to the log's start)."""
log = logging.getLogger("streams.worker")

T = TypeVar("T")

OUTBOX_PRUNE_EVERY_S = 60.0
"""How often the relay deletes outbox rows published longer than ``outbox_keep_s`` ago."""

_new_tuple = tuple.__new__  # builds a named tuple without its Python-level __new__

_ALERT_FIELDS = frozenset({"event_id", "device_id", "rule", "state", "ts"})
"""What the notifier reads of an alert record."""


class RawRecord(NamedTuple):
    """A consumed Kafka record as the runtime needs it (a named tuple: one per record)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


class WorkerRuntime:
    """One worker's state: store, processor, registry, producer, relay and notifier."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self._started = False
        self._store_since: float | None = None  # when the store call in progress began
        self._store_failure: str | None = None  # the last store error, until a call succeeds
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.store: Store | None = None
        self.processor: BatchProcessor | None = None
        # One batch, assignment or revocation at a time: the processor is not thread-safe,
        # and a batch must only apply partitions this worker still owns.
        self._lock = asyncio.Lock()
        self._assignment: set[TopicPartition] = set()
        self.refusal: str | None = None
        """Why the worker refuses to apply anything (an unplanned partition count)."""
        self.registry: SchemaCache | None = None
        self.reseek: Seek | None = None
        """Seeks the consumer (None: position unknown, start from the log's beginning): after
        a swap, and back to the store's position when a fetch started past it; without it a
        swap stops the worker, and its restart seeks on assignment. Set by ``seek_with``."""
        self.reseeks = 0
        """Batches after which the consumer was seeked (what it fetched next is not where
        the batch ended)."""

    def seek_with(
        self, reseek: Callable[[dict[TopicPartition, int | None]], Awaitable[None]]
    ) -> None:
        """The consumer's seek: from now on a fetch that starts past a partition's stored
        position is fetched again from it (``BatchProcessor.refetch_gaps``), never applied
        over the records in between (start() ran)."""
        assert self.processor is not None  # noqa: S101 - start() ran
        self.reseek = reseek
        self.processor.refetch_gaps = True

    async def start(self) -> None:
        """Opens the store (migrating it), the registry and the producer; starts the relay."""
        settings = self.settings
        self.store = store = await asyncio.to_thread(open_store, settings.store)
        self._stack.callback(store.close)
        self.registry = await self._stack.enter_async_context(
            open_registry(settings.registry, settings.kafka, patient=True)
        )
        self.processor = processor_for(settings, store)
        if settings.relay:
            producer = AIOKafkaProducer(
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                client_id=f"{settings.group}-relay",
                **settings.kafka.aiokafka_kwargs(),
            )
            await producer.start()
            self._stack.push_async_callback(producer.stop)
            publisher = KafkaOutboxPublisher(producer, self.registry, SchemaCatalog.load())
            relay = OutboxRelay(store, publisher)
            self._tasks.append(asyncio.create_task(self._run_relay(relay), name="the outbox relay"))
        if settings.notifier.enabled:
            self._tasks.append(asyncio.create_task(self._run_notifier(), name="the notifier"))
        # Everything built so far lives as long as the worker: keep the collector from
        # scanning it on every collection of the per-batch garbage, and run it less often.
        gc.freeze()
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
        self._started = True

    @property
    def ready(self) -> bool:
        """Started, its background tasks (relay, notifier) running, and the store answering:
        no store call has failed since the last one that succeeded, and none has been waiting
        longer than ``store_stall_s`` (a paused or cut-off database hangs calls rather than
        failing them)."""
        return self._started and self.problem() is None

    def problem(self) -> str | None:
        """Why the worker cannot do its work right now (the store does not answer, a
        background task such as the relay or the notifier has stopped), or None."""
        if self.refusal is not None:
            return self.refusal
        for task in self._tasks:
            if task.done() and not task.cancelled():
                error = task.exception()
                return (
                    f"{task.get_name()} stopped: {error!r}" if error else f"{task.get_name()} ended"
                )
        if self._store_failure is not None:
            return self._store_failure
        since = self._store_since
        if since is not None and time.monotonic() - since > self.settings.store_stall_s:
            return f"a store call has not returned for {time.monotonic() - since:.0f}s"
        return None

    async def _on_store(self, call: Callable[[], T]) -> T:
        """Runs one store call in a thread, watched for ``ready``."""
        self._store_since = time.monotonic()
        try:
            result = await asyncio.to_thread(call)
        except StoreError as exc:
            if exc.retriable:
                self._store_failure = str(exc)
            raise
        finally:
            self._store_since = None
        self._store_failure = None
        return result

    async def stop(self) -> None:
        self._started = False
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()

    # -- partitions -------------------------------------------------------------------------

    async def assigned(
        self, partitions: Iterable[TopicPartition], partition_count: int | None = None
    ) -> dict[TopicPartition, int | None]:
        """Where to seek each newly assigned partition: one past the store's last offset, or
        None for a partition the store has nothing of: the log's start, never the group's
        committed offset (a new or wiped store would silently miss what came before it).

        With the topic's ``partition_count``, a count the store did not plan is refused: the
        worker applies nothing from then on (:meth:`handle` raises PartitionLayoutError) and
        ``/readyz`` names the problem and what to do."""
        assert self.processor is not None  # noqa: S101 - start() ran
        parts = list(partitions)
        async with self._lock:
            self._assignment.update(parts)
            try:
                return await asyncio.to_thread(self.processor.assign, parts, partition_count)
            except PartitionLayoutError as exc:
                self.refusal = str(exc)
                raise

    async def retention_gap(self, tp: TopicPartition, records: int) -> None:
        """Retention deleted ``records`` of ``tp`` this group never applied: counted
        (``iot_streams_retention_gap``), recorded in the store (the loss answer reports it)
        and logged; the worker goes on from the log's start."""
        assert self.store is not None  # noqa: S101 - start() ran
        self.metrics.retention_gap.labels(str(tp.partition)).inc(records)
        total = await self._on_store(
            partial(self.store.record_retention_gap, self.settings.group, tp, records)
        )
        log.warning(
            "partition %d: retention deleted %d records before they were applied (%d so far); "
            "going on from the log's start",
            tp.partition,
            records,
            total,
        )

    async def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        assert self.processor is not None  # noqa: S101 - start() ran
        parts = list(partitions)
        async with self._lock:
            self._assignment.difference_update(parts)
            await asyncio.to_thread(self.processor.revoke, parts)

    # -- telemetry --------------------------------------------------------------------------

    async def handle(self, records: Sequence[RawRecord]) -> BatchResult:
        """Decodes and applies one batch; returns once its store transaction committed."""
        assert self.processor is not None  # noqa: S101 - start() ran
        assert self.registry is not None  # noqa: S101
        if self.refusal is not None:
            raise PartitionLayoutError(self.refusal)
        registry = self.registry
        await learn_schemas(registry, (record.value for record in records), self._registry_retry)
        batch: list[tuple[Position, TelemetryEvent | None]] = []
        append = batch.append
        for topic, partition, offset, value in records:
            position = _new_tuple(Position, (topic, partition, offset))
            try:
                append((position, read_telemetry(registry, value or b"")))
            except UNDECODABLE as exc:
                log.warning("passing over undecodable record at %s: %s", position, exc)
                append((position, None))  # counted as skipped, its offset committed
        result = await self._apply(batch)
        self.metrics.applied.inc(result.applied)
        for reason, count in result.skipped.items():
            self.metrics.skipped.labels(str(reason)).inc(count)
        self.metrics.batch_size.observe(len(records))
        self.metrics.commit_latency.observe(result.commit_seconds)
        return result

    def _registry_retry(self, _exc: BaseException) -> None:
        self.metrics.registry_retries.inc()

    async def _apply(self, batch: list[tuple[Position, TelemetryEvent | None]]) -> BatchResult:
        """Applies the batch's events of partitions this worker owns; retries store errors
        that are retriable (a partition fenced by its new owner is dropped on the retry)."""
        assert self.processor is not None  # noqa: S101
        delay = 0.1
        while True:
            async with self._lock:
                revoked = {(p.topic, p.partition) for p, _ in batch} - self._assignment
                mine = (
                    [item for item in batch if (item[0].topic, item[0].partition) not in revoked]
                    if revoked
                    else batch
                )
                try:
                    result = await self._on_store(partial(self.processor.apply, mine))
                except StoreSwappedError:
                    await self._follow_swap()
                    return BatchResult(applied=0)
                except StoreError as exc:
                    if not exc.retriable:
                        raise
                    failure = exc
                else:
                    if result.refetch:
                        await self._refetch(result.refetch)
                    return result
            log.warning("store: %s; retrying the batch in %.1fs", failure, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def check_swap(self) -> bool:
        """Follows a swap committed since the last batch (for idle workers); True if it did."""
        store = self.store
        if store is None:
            return False
        async with self._lock:
            try:
                stored = await self._on_store(store.stored_generation)
            except StoreError as exc:
                if not exc.retriable:
                    raise
                return False  # the store is away: asked again next time; /readyz says so
            if stored == store.generation():
                return False
            await self._follow_swap()
        return True

    async def _refetch(self, offsets: Mapping[TopicPartition, int]) -> None:
        """(Holding the lock.) Seeks partitions whose fetch started past the store's position
        back to it: their records in between were never applied here or elsewhere."""
        assert self.reseek is not None  # noqa: S101 - only seek_with enables refetching
        owned: dict[TopicPartition, int | None] = {
            tp: offset for tp, offset in offsets.items() if tp in self._assignment
        }
        await self.reseek(owned)
        self.reseeks += 1
        log.warning(
            "fetched from past the store's position; fetching again from %s",
            {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(owned.items())},
        )

    async def _follow_swap(self) -> None:
        """(Holding the lock.) Drops every cache, adopts the swapped-in generation and seeks
        the owned partitions to the swapped-in store's offsets."""
        assert self.processor is not None  # noqa: S101 - start() ran
        processor = self.processor

        def follow() -> tuple[int, dict[TopicPartition, int | None]]:
            processor.reset()
            generation = processor.store.follow_swap()
            return generation, processor.assign(sorted(self._assignment))

        generation, offsets = await asyncio.to_thread(follow)
        if self.reseek is None:
            raise StoreError(
                f"the store was swapped (generation {generation}); this consumer cannot seek: "
                "restart the worker to continue from the swapped-in offsets",
                retriable=False,
            )
        await self.reseek(offsets)
        self.reseeks += 1
        log.warning(
            "store swapped to generation %d: caches dropped, seeking to %s",
            generation,
            {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(offsets.items())},
        )

    # -- derived events ---------------------------------------------------------------------

    async def _run_relay(self, relay: OutboxRelay) -> None:
        assert self.store is not None  # noqa: S101
        store = self.store
        delay = 0.1
        next_prune = time.monotonic()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                if time.monotonic() >= next_prune:  # published rows are not kept for good
                    keep_ms = int(self.settings.outbox_keep_s * 1000)
                    pruned = await asyncio.to_thread(store.prune_outbox, keep_ms)
                    self.metrics.outbox_pruned.inc(pruned)
                    next_prune = time.monotonic() + OUTBOX_PRUNE_EVERY_S
                published = await relay.pump()
                self.metrics.published.inc(published)
                if published:
                    self.metrics.publish_latency.observe(time.perf_counter() - started)
                else:  # idle: the backlog, then a wait for appends (both on the store)
                    self.metrics.outbox_backlog.set(await asyncio.to_thread(store.outbox_backlog))
                    await asyncio.to_thread(store.wait_for_outbox, 0.5)
            except Exception as exc:  # the store or Kafka lost: never the relay itself
                log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1

    async def _run_notifier(self) -> None:
        """Alerts -> downlink commands, each alert at most once (``apply_once``)."""
        assert self.store is not None  # noqa: S101 - start() ran
        settings = self.settings
        notifier = AlertCommandNotifier(
            self.store,
            settings.notifier.commands,
            commands_topic=settings.notifier.commands_topic,
            horizon_ms=round(settings.notifier.dedupe_horizon_s * 1000),
        )
        next_prune = time.monotonic()
        while not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                settings.alerts_topic,
                group_id=settings.notifier.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **settings.kafka.aiokafka_kwargs(),
            )
            try:
                await consumer.start()
                while not self._stop.is_set():
                    if time.monotonic() >= next_prune:  # records beyond the horizon go
                        pruned = await asyncio.to_thread(notifier.prune, _now_ms())
                        self.metrics.tracking_pruned.inc(pruned)
                        next_prune = time.monotonic() + OUTBOX_PRUNE_EVERY_S
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for partition, records in batches.items():
                        for record in records:
                            await self._notify(notifier, record.value)
                        await consumer.commit({partition: records[-1].offset + 1})
            except (StoreError, OSError, KafkaError, ContractsError) as exc:  # else: a bug
                log.warning("notifier: %s; restarting", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    def _skip_alert(self, why: str) -> None:
        self.metrics.notifier_skipped.inc()
        log.warning("notifier: passing over a record that is not an alert: %s", why)

    async def _notify(self, notifier: AlertCommandNotifier, value: bytes | None) -> None:
        """Handles one record of the alerts topic in isolation: one that is not an alert is
        counted and passed over; a registry that cannot be reached is raised (retried)."""
        assert self.registry is not None  # noqa: S101
        try:
            alert = await self.registry.decode(value or b"")
        except ContractsError as exc:
            if exc.retriable:
                raise
            self._skip_alert(str(exc))
            return
        missing = _ALERT_FIELDS - set(alert) if isinstance(alert, dict) else _ALERT_FIELDS
        if missing:
            self._skip_alert(f"no {', '.join(sorted(missing))}")
            return
        if notifier.stale(alert, _now_ms()):
            self.metrics.notifier_stale.inc()
            return
        result = await asyncio.to_thread(notifier.handle, alert)
        if result.applied and result.value is not None:
            self.metrics.commands.inc()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
