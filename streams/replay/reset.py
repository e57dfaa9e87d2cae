"""``iotctl replay reset-group``: move a consumer group's position, and the store's with it.

A worker seeks every assigned partition to the **store's** inbox offset + 1, so the store, not
the group's committed Kafka offset, is where a group really is. A reset therefore moves both:

- **Forward** (skipping events) sets the store's inbox offsets to the new position - 1 and the
  group's committed offsets to the new position. The projections are not touched: the skipped
  events are never applied (the plan counts them; ``rebuild --swap`` gets them back).
- **Backward** (the store already applied events at or after the new position) is refused:
  re-consuming them over a state that contains them would be skipped by the inbox only for
  some of them (offsets, ids of seq-less events, seq windows), so the result would be neither
  the old state nor a correct one. Going back means rebuilding: ``rebuild --verify --swap``.
- A partition the store never applied anything of can be moved anywhere.

Refused, with nothing changed: a group with active members (stop its workers first), an
unknown group or topic, a time in the future or before retention. ``execute`` moves the
group's committed offsets first (the broker refuses that for a non-empty group), then the
store's offsets in one compare-and-set transaction that also bumps the store's generation; if
the store moved meanwhile, the group's previous committed offsets are restored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient

from contracts.kafka import KafkaClientSettings
from streams.errors import ConfigError, PositionConflictError, StreamsError
from streams.replay.rebuild import plan
from streams.settings import WorkerSettings
from streams.store.port import OffsetAdvance, Store

__all__ = [
    "PartitionReset",
    "ResetPlan",
    "ResetTarget",
    "execute_reset",
    "plan_reset",
]

ResetTarget = Literal["earliest", "latest"] | int
"""Where to move: the log's start, its end, or the first record at or after epoch ms."""

_IDLE = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN}
_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class PartitionReset:
    """One partition of a reset; offsets are *next* offsets (the next record to read)."""

    partition: int
    committed: int | None
    """The group's committed Kafka offset (None: none committed)."""
    stored: int | None
    """The store's position: last applied offset + 1 (None: nothing applied)."""
    new: int
    log_start: int
    log_end: int

    @property
    def backward(self) -> bool:
        """The store already applied events at or after ``new``."""
        return self.stored is not None and self.new < self.stored

    @property
    def moves_store(self) -> bool:
        return self.new > (self.stored or 0)

    @property
    def skipped(self) -> int:
        """Records between the store's position and ``new`` that the state will never get."""
        return max(0, self.new - max(self.stored or 0, self.log_start))


@dataclass(frozen=True, slots=True)
class ResetPlan:
    """What a reset of ``group`` on ``topic`` would do, and the group as Kafka sees it."""

    group: str
    topic: str
    to: str
    state: str
    members: list[str]
    """Client ids (and hosts) of the group's active members."""
    partitions: list[PartitionReset]

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in {s.name for s in _IDLE}

    @property
    def backward(self) -> list[int]:
        return [p.partition for p in self.partitions if p.backward]

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.partitions)

    def refusal(self) -> str | None:
        """Why ``execute_reset`` would refuse this plan (None: it would not)."""
        if self.active:
            who = ", ".join(self.members) or "members joining"
            return (
                f"group {self.group!r} is active ({self.state}: {who}); stop its workers "
                "first, a reset only moves an idle group"
            )
        if self.backward:
            listed = ", ".join(map(str, self.backward))
            return (
                f"moving group {self.group!r} back on partition(s) {listed} would re-apply "
                "events the store already holds, and the inbox cannot skip all of them "
                "correctly. To recompute state from the log, rebuild it and swap it in "
                "(iotctl replay rebuild --shadow NEW_STORE --verify --swap); the workers "
                "then continue from the rebuilt store's offsets"
            )
        return None


def _wait(future: Future[Any], what: str) -> Any:
    try:
        return future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise StreamsError(f"kafka {what} failed: {exc.args[0]}") from exc


def _admin(kafka: KafkaClientSettings) -> AdminClient:
    return AdminClient({**kafka.confluent_config(), "client.id": "iotctl-reset-group"})


def _describe(
    kafka: KafkaClientSettings, group: str, topic: str, partitions: Sequence[int]
) -> tuple[str, list[str], dict[int, int | None]]:
    """The group's state, its members and its committed offsets on ``topic``."""
    admin = _admin(kafka)
    [described] = admin.describe_consumer_groups([group], request_timeout=_TIMEOUT_S).values()
    try:
        description = described.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].name() != "GROUP_ID_NOT_FOUND":
            raise StreamsError(f"kafka describe group failed: {exc.args[0]}") from exc
        state, members = ConsumerGroupState.DEAD, []
    else:
        state = description.state
        members = [f"{m.client_id}@{m.host}" for m in description.members]
    request = ConsumerGroupTopicPartitions(group, [KafkaPartition(topic, p) for p in partitions])
    [listed] = admin.list_consumer_group_offsets([request]).values()
    found: ConsumerGroupTopicPartitions = _wait(listed, "list group offsets")
    committed = {
        tp.partition: (tp.offset if tp.offset >= 0 else None)
        for tp in found.topic_partitions or ()
        if tp.topic == topic
    }
    return state.name, members, committed


async def plan_reset(
    settings: WorkerSettings,
    store: Store,
    group: str,
    to: ResetTarget,
    topic: str | None = None,
) -> ResetPlan:
    """Where a reset of ``group`` to ``to`` would move each partition; changes nothing.

    ConfigError for an unknown topic, a time in the future or before retention, and a group
    that neither Kafka nor the store knows.
    """
    topic = topic or settings.telemetry_topic
    on_topic = settings.model_copy(update={"telemetry_topic": topic})
    if isinstance(to, int) and to > time.time_ns() // 1_000_000:
        raise ConfigError("--to lies in the future")
    log = await plan(on_topic)
    if to == "earliest":
        new = log.start
    elif to == "latest":
        new = log.end
    else:
        new = (await plan(on_topic, to, option="--to")).start
    state, members, committed = await asyncio.to_thread(
        _describe, settings.kafka, group, topic, sorted(log.start)
    )
    stored = await asyncio.to_thread(store.positions, group)
    mine = {tp.partition: offset + 1 for tp, offset in stored.items() if tp.topic == topic}
    known = mine or any(v is not None for v in committed.values())
    if state in {ConsumerGroupState.DEAD.name, ConsumerGroupState.UNKNOWN.name} and not known:
        raise ConfigError(
            f"unknown group {group!r}: Kafka has no such group and the store holds no offsets "
            f"of it on {topic}"
        )
    partitions = [
        PartitionReset(
            partition=p,
            committed=committed.get(p),
            stored=mine.get(p),
            new=new[p],
            log_start=log.start[p],
            log_end=log.end[p],
        )
        for p in sorted(log.start)
    ]
    described = to if isinstance(to, str) else f"{to} ms"
    return ResetPlan(group, topic, described, state, members, partitions)


def _alter(kafka: KafkaClientSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    request = ConsumerGroupTopicPartitions(
        group, [KafkaPartition(topic, p, offset) for p, offset in sorted(offsets.items())]
    )
    admin = _admin(kafka)  # referenced until the result: a collected client drops its futures
    [altered] = admin.alter_consumer_group_offsets([request]).values()
    result: ConsumerGroupTopicPartitions = _wait(altered, "alter group offsets")
    failed = [tp for tp in result.topic_partitions or () if tp.error is not None]
    if failed:
        raise StreamsError(
            f"kafka refused the offsets of group {group!r}: "
            + "; ".join(f"partition {tp.partition}: {tp.error}" for tp in failed)
        )


async def execute_reset(settings: WorkerSettings, store: Store, chosen: ResetPlan) -> int:
    """Applies a fresh plan: the group's committed offsets, then the store's; returns the
    store's new generation. ConfigError (nothing changed) if the plan is refused."""
    reason = chosen.refusal()
    if reason is not None:
        raise ConfigError(reason)
    group, topic = chosen.group, chosen.topic
    await asyncio.to_thread(
        _alter, settings.kafka, group, topic, {p.partition: p.new for p in chosen.partitions}
    )
    moves = [
        OffsetAdvance(
            topic,
            p.partition,
            None if p.stored is None else p.stored - 1,
            p.new - 1,
        )
        for p in chosen.partitions
        if p.moves_store
    ]
    if not moves:
        return await asyncio.to_thread(store.stored_generation)
    try:
        return await asyncio.to_thread(store.move_positions, group, moves)
    except PositionConflictError as exc:
        previous = {p.partition: p.committed for p in chosen.partitions if p.committed is not None}
        if previous:
            await asyncio.to_thread(_alter, settings.kafka, group, topic, previous)
        raise StreamsError(
            f"the store's offsets of group {group!r} moved while resetting (a worker ran?): "
            f"{exc}; the group's committed offsets were put back, nothing changed"
        ) from exc
