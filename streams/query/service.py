"""The pull queries: store reads, each stating the log position it reflects and the lag.

Reads go to the query API's own store instances (``read_connections`` of them, used round
robin), never to the worker's batch store: on SQLite a reader's connection reads a WAL snapshot
without waiting for a batch commit, on PostgreSQL it is a separate connection. With PostgreSQL
every worker reads the shared store, so any worker answers any query; with SQLite the single
worker owning the file does.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import TypeVar

from contracts.times import time_fields
from streams.projections.device import DeviceState
from streams.projections.windows import DEFAULT_WINDOWS, WindowSpec
from streams.query.dlq import DlqRejections
from streams.query.errors import BadParameterError, UnknownDeviceError
from streams.query.overview import IngestSamples
from streams.query.params import AggregatesQuery, AlertsQuery, Consistency, DevicesQuery
from streams.query.positions import LogPositions, Reflects
from streams.query.presence import Presence
from streams.query.shapes import alert_json, device_json, loss_json, window_json
from streams.store.port import Store
from streams.store.sqlite import SqliteStore

__all__ = ["QueryService"]

T = TypeVar("T")

_SPECS: dict[int, WindowSpec] = {spec.size_ms: spec for spec in DEFAULT_WINDOWS}


class QueryService:
    """Answers pull queries as JSON-ready dicts; raises QueryError subclasses."""

    def __init__(
        self,
        readers: list[Store],
        positions: LogPositions,
        dlq: DlqRejections,
        presence: Presence,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._readers = itertools.cycle(readers)
        # A SQLite read is an indexed lookup in a local file (tens of microseconds): done on
        # the event loop it costs less than the hand-off to a thread, whose GIL round trips
        # with the worker's busy apply thread cost milliseconds each at the tail.
        self._inline = all(isinstance(reader, SqliteStore) for reader in readers)
        self.positions = positions
        self.dlq = dlq
        self.presence = presence
        self._clock = clock

    async def _read(self, read: Callable[[Store], T], *, scan: bool = False) -> T:
        """``read`` on the next reader store: inline on SQLite, in a thread otherwise or when
        it may ``scan`` many rows (a filtered page), which would stall the event loop."""
        store = next(self._readers)
        if self._inline and not scan:
            return read(store)
        return await asyncio.to_thread(read, store)

    async def _reflects(self, consistency: Consistency, partitions: list[int]) -> Reflects:
        if consistency.mode == "strong":
            return await self.positions.strong(partitions, consistency.timeout_ms)
        return await self.positions.eventual(partitions)

    def _all(self) -> list[int]:
        return list(range(self.positions.partitions))

    async def devices(self, query: DevicesQuery, consistency: Consistency) -> dict[str, object]:
        reflects = await self._reflects(consistency, self._all())
        page = await self._read(
            lambda store: store.device_page(
                query.after, query.limit, seen_since=query.seen_since, has_metric=query.has_metric
            ),
            scan=query.has_metric is not None or query.seen_since is not None,
        )
        return {
            "devices": [device_json(d) for d in page],
            "next_after": page[-1].device_id if len(page) == query.limit else None,
            "consistency": reflects.as_json(),
        }

    async def _device(
        self, device_id: str, consistency: Consistency
    ) -> tuple[DeviceState, Reflects]:
        reflects = await self._reflects(consistency, [self.positions.partition_of(device_id)])
        state = await self._read(lambda store: store.device(device_id))
        if state is None:
            raise UnknownDeviceError(f"no device {device_id!r} (as of the position reported)")
        return state, reflects

    async def device(self, device_id: str, consistency: Consistency) -> dict[str, object]:
        state, reflects = await self._device(device_id, consistency)
        return {
            **device_json(state),
            "presence": self.presence.of(device_id),
            "consistency": reflects.as_json(),
        }

    async def aggregates(
        self, device_id: str, query: AggregatesQuery, consistency: Consistency
    ) -> dict[str, object]:
        state, reflects = await self._device(device_id, consistency)
        if query.metric not in state.metrics:
            known = ", ".join(sorted(state.metrics)) or "none"
            raise BadParameterError(
                "metric", f"device {device_id!r} has no metric {query.metric!r} (known: {known})"
            )
        windows = await self._read(
            lambda store: store.window_range(
                device_id, query.metric, query.size_ms, query.start_ms, query.end_ms
            )
        )
        spec = _SPECS.get(query.size_ms, WindowSpec(query.resolution, query.size_ms, 0))
        return {
            "device_id": device_id,
            "metric": query.metric,
            "resolution": query.resolution,
            **time_fields("from", query.start_ms),
            **time_fields("to", query.end_ms),
            "points": [window_json(w, spec, state.last_seen) for w in windows],
            "consistency": reflects.as_json(),
        }

    async def loss(self, device_id: str, consistency: Consistency) -> dict[str, object]:
        state, reflects = await self._device(device_id, consistency)
        partition = self.positions.partition_of(device_id)
        gaps = await self._read(lambda store: store.retention_gaps(self.positions.group))
        deleted = sum(n for tp, n in gaps.items() if tp.partition == partition)
        return {
            "device_id": device_id,
            **loss_json(state),
            "retention_gap": {"partition": partition, "records": deleted},
            "dlq": self.dlq.counts(device_id).as_json(),
            "consistency": reflects.as_json(),
        }

    async def active_alerts(
        self, query: AlertsQuery, consistency: Consistency
    ) -> dict[str, object]:
        """One page of alert states ordered by (device_id, rule), after ``query.after``:
        keyset paging in the store, so a page costs ``limit`` rows whatever the table holds."""
        device_id = query.device_id
        partitions = self._all() if device_id is None else [self.positions.partition_of(device_id)]
        reflects = await self._reflects(consistency, partitions)
        states = await self._read(
            lambda store: store.alert_page(
                query.after,
                query.limit + 1,  # one more says whether there is a next page
                device_id=device_id,
                active_only=query.active_only,
            )
        )
        page = states[: query.limit]
        next_after = f"{page[-1].device_id}/{page[-1].rule}" if len(states) > query.limit else None
        return {
            "alerts": [alert_json(state) for state in page],
            "next_after": next_after,
            "consistency": reflects.as_json(),
        }

    async def overview(self, seen_minutes: int, ingest: IngestSamples) -> dict[str, object]:
        """What the fleet overview shows: device, presence and alert counts, the telemetry
        log per partition, the hour of ingest, DLQ rejections by reason per minute."""
        reflects = await self.positions.eventual(self._all())
        now = int(self._clock() * 1000)
        counts = await self._read(lambda store: store.fleet_counts(now - seen_minutes * 60_000))
        return {
            **time_fields("time", now),
            "devices": {
                "total": counts.devices,
                "seen": counts.seen,
                "seen_minutes": seen_minutes,
                "online": self.presence.online(),
                "presence_caught_up": self.presence.caught_up,
            },
            "alerts": {"active": counts.active_alerts},
            "partitions": [
                {
                    "partition": p,
                    "applied": reflects.applied[p],
                    "end": reflects.end[p],
                    "lag": max(0, reflects.end[p] - reflects.applied[p] - 1),
                }
                for p in sorted(reflects.applied)
            ],
            "ingest": ingest.series(),
            "dlq": {
                "minutes": self.dlq.timeline(),
                "caught_up": self.dlq.caught_up,
            },
            "consistency": reflects.as_json(),
        }

    async def health(self, ready: bool) -> dict[str, object]:
        reflects = await self.positions.eventual(self._all())
        return {
            "status": "ok" if ready else "starting",
            "ready": ready,
            **time_fields("time", int(self._clock() * 1000)),
            "dlq_caught_up": self.dlq.caught_up,
            "consistency": reflects.as_json(),
        }
