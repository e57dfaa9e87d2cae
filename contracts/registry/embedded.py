"""The embedded registry (the default): a replicated state machine over one Kafka partition.

No extra server: every process of a deployment (gateways, workers, ``iotctl schemas serve``)
runs one :class:`EmbeddedSchemaRegistry` on the same topic (``_iot_schemas`` by default).

Design
    Every change - register, set or remove a compatibility level, delete a version or a
    subject - is a command (:mod:`~contracts.registry.state`) appended to the topic's single
    partition by an idempotent producer with ``acks=all``. Every process reads that partition
    from offset 0 and folds each record, in offset order, with the same pure function
    (:meth:`RegistryState.apply`): ids and versions are assigned in fold order and
    compatibility is decided inside the fold, so all processes compute the same state and the
    same outcome for every command. A writer appends its command, then folds up to its own
    record to learn the outcome: accepted (with id and version) or rejected (e.g.
    ``IncompatibleSchemaError``) - exactly what every other process decided for that record.

Guarantees
    * **Agreement**: processes that have folded the log to the same offset have identical
      state; two processes registering concurrently get one order, so the same ids and
      versions, and at most one of two mutually incompatible schemas is accepted.
    * **Durability**: a call that returned has its command acknowledged by all in-sync
      replicas; a restarted process refolds the log and sees the same state.
    * **Linearizable reads**: every read first folds up to the log's end offset as of the
      call, so it sees every write that completed anywhere before the call started.
    * **Idempotency**: registering a schema already live under the subject appends nothing;
      a retried command (a timeout is ambiguous: it may still land) is absorbed by the fold.
    * **Failures**: when Kafka cannot be reached or does not answer within
      ``request_timeout_s``, calls raise ``RegistryUnavailableError``/``RegistryTimeoutError``
      (``retriable``); the state already folded stays readable through :attr:`state`.

Caveats
    The topic must keep every record (it is created with infinite retention and no
    compaction; compaction would drop commands and change the fold) and have exactly one
    partition (a total order). All processes must run the same fold rules: a release that
    changes what the compatibility checker accepts must not share a log with older ones.
    A malformed record is rejected identically by every process and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from contracts.kafka import KafkaClientSettings
from contracts.registry._base import StateBackedRegistry
from contracts.registry.errors import (
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
)
from contracts.registry.state import (
    Command,
    RegistryState,
    Result,
    decode_command,
    encode_command,
)

__all__ = ["DEFAULT_TOPIC", "EmbeddedSchemaRegistry"]

DEFAULT_TOPIC = "_iot_schemas"
_ORIGIN_HEADER = "origin"
_log = logging.getLogger(__name__)


class EmbeddedSchemaRegistry(StateBackedRegistry):
    """The registry state folded from a Kafka topic; see the module docstring."""

    def __init__(
        self,
        kafka: KafkaClientSettings | str,
        *,
        topic: str = DEFAULT_TOPIC,
        replication_factor: int | None = None,
        request_timeout_s: float = 30.0,
        client_id: str = "iot-schema-registry",
    ) -> None:
        self._kafka = KafkaClientSettings(bootstrap=kafka) if isinstance(kafka, str) else kafka
        self._bootstrap = self._kafka.bootstrap
        self._topic = topic
        self._tp = TopicPartition(topic, 0)
        self._replication_factor = replication_factor
        self._timeout = request_timeout_s
        self._client_id = client_id
        self._origin = uuid.uuid4().hex.encode()
        self._state = RegistryState()
        self._position = 0
        self._outcomes: dict[int, Result | RegistryError] = {}
        self._changed = asyncio.Condition()
        self._failure: BaseException | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._fold_task: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def state(self) -> RegistryState:
        """The state folded so far (no I/O; may lag the log: see :meth:`sync`)."""
        return self._state

    @property
    def position(self) -> int:
        """The next log offset to fold: every record before it is in :attr:`state`."""
        return self._position

    async def start(self) -> None:
        """Creates the topic if missing, connects, and folds the whole log."""
        try:
            await self._ensure_topic()
            self._producer = AIOKafkaProducer(
                **self._kafka.aiokafka_kwargs(),
                client_id=self._client_id,
                enable_idempotence=True,
                acks="all",
                request_timeout_ms=int(self._timeout * 1000),
            )
            await self._producer.start()
            self._consumer = AIOKafkaConsumer(
                **self._kafka.aiokafka_kwargs(),
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=int(self._timeout * 1000),
            )
            await self._consumer.start()
            self._consumer.assign([self._tp])
            await self._consumer.seek_to_beginning(self._tp)
            # Its own connection: a broker answers one request per connection at a time, so
            # asking the fold consumer would wait behind its long-polling fetch.
            self._offsets = AIOKafkaConsumer(
                **self._kafka.aiokafka_kwargs(),
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=int(self._timeout * 1000),
            )
            await self._offsets.start()
            self._fold_task = asyncio.create_task(self._fold_loop(self._consumer))
            await self.sync()
        except (KafkaError, TimeoutError) as exc:
            await self.close()
            raise RegistryUnavailableError(
                f"cannot open the schema log {self._topic!r} at {self._bootstrap}: {exc!r}"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._fold_task is not None:
            self._fold_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fold_task
            self._fold_task = None
        for client in (self._offsets, self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    await client.stop()
        self._offsets = self._consumer = self._producer = None

    async def sync(self) -> int:
        """Folds up to the log's current end offset (as of this call) and returns it."""
        offsets = self._running(self._offsets)
        try:
            async with asyncio.timeout(self._timeout):
                end = int((await offsets.end_offsets([self._tp]))[self._tp])
        except (KafkaError, TimeoutError) as exc:
            raise RegistryUnavailableError(f"cannot read the end of {self._topic!r}") from exc
        await self._wait_folded(end)
        return end

    # --- the two hooks of StateBackedRegistry ---------------------------------------------

    async def _read(self) -> RegistryState:
        await self.sync()
        return self._state

    async def _execute(self, command: Command) -> Result:
        producer = self._running(self._producer)
        try:
            async with asyncio.timeout(self._timeout):
                metadata = await producer.send_and_wait(
                    self._topic,
                    encode_command(command),
                    partition=0,
                    headers=[(_ORIGIN_HEADER, self._origin)],
                )
        except TimeoutError as exc:
            raise RegistryTimeoutError(
                f"appending to {self._topic!r} timed out; the command may still take effect"
            ) from exc
        except KafkaError as exc:
            raise RegistryUnavailableError(f"cannot append to {self._topic!r}: {exc!r}") from exc
        offset: int = metadata.offset
        try:
            await self._wait_folded(offset + 1)
            outcome = self._outcomes[offset]
        finally:
            self._outcomes.pop(offset, None)
        if isinstance(outcome, RegistryError):
            raise outcome
        return outcome

    # --- folding ---------------------------------------------------------------------------

    def _running(self, client: Any) -> Any:
        if self._failure is not None:
            raise RegistryUnavailableError(f"the schema log fold stopped: {self._failure!r}")
        if client is None:
            raise RegistryError("the registry is not started (call start() first)")
        return client

    async def _wait_folded(self, offset: int) -> None:
        """Waits until every record before ``offset`` is folded."""
        try:
            async with asyncio.timeout(self._timeout), self._changed:
                await self._changed.wait_for(
                    lambda: self._position >= offset or self._failure is not None
                )
        except TimeoutError as exc:
            raise RegistryTimeoutError(
                f"folding {self._topic!r} up to offset {offset} timed out at {self._position}"
            ) from exc
        self._running(self._consumer)

    async def _fold_loop(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(self._tp, timeout_ms=500)
                for record in batch.get(self._tp, ()):
                    self._fold(record)
                position = await consumer.position(self._tp)
                async with self._changed:
                    self._position = max(self._position, position)
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unexpected fault: stop, and make every call say so
            _log.exception("schema log fold of %s stopped", self._topic)
            self._failure = exc
            async with self._changed:
                self._changed.notify_all()

    def _fold(self, record: Any) -> None:
        outcome: Result | RegistryError
        try:
            outcome = self._state.apply(decode_command(record.value))
        except RegistryError as exc:
            outcome = exc
            _log.debug("record %d of %s rejected: %s", record.offset, self._topic, exc)
        origin = dict(record.headers or ()).get(_ORIGIN_HEADER)
        if origin == self._origin:
            self._outcomes[record.offset] = outcome

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(
            **self._kafka.aiokafka_kwargs(),
            client_id=self._client_id,
            request_timeout_ms=int(self._timeout * 1000),
        )
        await admin.start()
        try:
            # Ask first: a principal allowed to read the log but not to create topics gets
            # TOPIC_AUTHORIZATION_FAILED from CreateTopics even when the topic exists. (Listing
            # all topics, because a metadata request naming a missing topic may auto-create it
            # with the cluster's default partition count.)
            if self._topic in await admin.list_topics():
                await self._check_single_partition(admin)
                return
            factor = self._replication_factor
            if factor is None:
                factor = min(3, len((await admin.describe_cluster())["brokers"]))
            spec = NewTopic(
                self._topic,
                num_partitions=1,
                replication_factor=factor,
                topic_configs={
                    "cleanup.policy": "delete",
                    "retention.ms": "-1",
                    "retention.bytes": "-1",
                    "min.insync.replicas": str(min(2, factor)),
                },
            )
            response = await admin.create_topics([spec])
            for _name, code, *_rest in response.topic_errors:
                if code and for_code(code) is not TopicAlreadyExistsError:
                    raise for_code(code)(f"cannot create {self._topic!r}")
            await self._check_single_partition(admin)
        finally:
            await admin.close()

    async def _check_single_partition(self, admin: AIOKafkaAdminClient) -> None:
        partitions = await self._partition_count(admin)
        if partitions != 1:
            raise RegistryError(
                f"topic {self._topic!r} has {partitions} partitions; the schema log needs "
                "exactly 1 (one total order)"
            )

    async def _partition_count(self, admin: AIOKafkaAdminClient) -> int:
        """The topic's partition count, once its metadata has reached the broker we ask."""
        async with asyncio.timeout(self._timeout):
            while True:
                (described,) = await admin.describe_topics([self._topic])
                if described["error_code"] == 0 and described["partitions"]:
                    return len(described["partitions"])
                await asyncio.sleep(0.05)
