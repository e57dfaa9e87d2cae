"""The query API of one worker: lifecycle of its readers and the ``/api`` routes.

``QueryApi.start`` opens the read-only store instances, learns the topics' partition counts,
starts the end-offset cache and the DLQ fold; ``app()`` is the aiohttp sub-application the
worker mounts at ``/api`` (with the bearer-token middleware when auth is on). Errors answer
as JSON ``{"error", "reason", ...}``: 400 names the parameter (and is counted in
``iot_query_bad_parameters``), 404 an unknown device, 504 a strong read that timed out.
Besides the reads, one write: ``POST /devices/{device_id}/commands`` sends a command
(:mod:`streams.query.commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from contracts.partitioning import partition_for
from security.http import PRINCIPAL, Middleware
from streams.decoding import UNDECODABLE, decode_telemetry
from streams.query import params
from streams.query.auth import query_auth
from streams.query.commands import CommandOutbox, command_json, parse_command
from streams.query.context import QueryContext
from streams.query.dlq import DlqRejections
from streams.query.errors import BadParameterError, QueryError, UnavailableError
from streams.query.history import alert_history
from streams.query.logtail import LogReader, parse_vector
from streams.query.metrics import QueryMetrics
from streams.query.overview import IngestSamples, sample_ingest
from streams.query.positions import LogPositions, topic_partitions
from streams.query.presence import Presence
from streams.query.readiness import readiness
from streams.query.service import QueryService
from streams.query.shapes import alert_record_json, reading_json
from streams.query.slots import ClientSlots, Refusal
from streams.query.sse import SseLimits, Subscriptions, stream_log
from streams.store import Store, open_store

__all__ = ["PUBLIC_PATHS", "QueryApi"]

PUBLIC_PATHS = frozenset({"/api/health"})
"""Paths the bearer-token check lets through (they reveal no device data)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class QueryApi:
    """One worker's query API (see the module docstring)."""

    def __init__(self, runtime: QueryContext) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.metrics = QueryMetrics(runtime.metrics.registry)
        query = self.settings.query
        self.subscriptions = Subscriptions(
            query.max_subscribers, self.metrics, per_client=query.max_subscribers_per_client
        )
        self.history_scans = ClientSlots(query.max_history_scans, per_client=2)
        self.limits = SseLimits(
            query.sse_max_behind, query.sse_write_timeout_s, query.sse_heartbeat_s
        )
        self._readers: list[Store] = []
        self.service: QueryService | None = None
        self._positions: LogPositions | None = None
        self._dlq: DlqRejections | None = None
        self._presence: Presence | None = None
        self.alert_partitions = 0
        self.ingest = IngestSamples()
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Opens the readers; if any step fails, whatever was opened is closed again."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        for _ in range(settings.query.read_connections):
            self._readers.append(await asyncio.to_thread(open_store, settings.store))
        counts = await topic_partitions(
            settings.kafka,
            [
                settings.telemetry_topic,
                settings.alerts_topic,
                settings.query.dlq_topic,
                settings.query.presence_topic,
            ],
        )
        self.alert_partitions = counts[settings.alerts_topic]
        positions = LogPositions(
            settings.kafka,
            settings.telemetry_topic,
            max(1, counts[settings.telemetry_topic]),
            self._readers[0],
            settings.group,
            refresh_s=settings.query.end_offsets_refresh_s,
        )
        self._positions = positions  # before start(): stop() closes a half-started consumer
        await positions.start()
        self._dlq = DlqRejections(
            settings.kafka, settings.query.dlq_topic, counts[settings.query.dlq_topic]
        )
        self._dlq.start()
        self._presence = Presence(
            settings.kafka, settings.query.presence_topic, counts[settings.query.presence_topic]
        )
        self._presence.start()
        self.service = QueryService(self._readers, positions, self._dlq, self._presence)
        self._sampler = asyncio.create_task(sample_ingest(self.ingest, positions))

    async def stop(self) -> None:
        self.subscriptions.stopping.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        for fold in (self._dlq, self._presence):
            if fold is not None:
                await fold.stop()
        if self._positions is not None:
            await self._positions.stop()
        for store in self._readers:
            with contextlib.suppress(Exception):
                store.close()
        self._readers.clear()

    # -- the sub-application ----------------------------------------------------------------

    def app(self) -> web.Application:
        middlewares: list[Middleware] = [self._observe]
        auth = query_auth(self.settings.query.auth, PUBLIC_PATHS)
        if auth is not None:
            middlewares.append(auth)
        middlewares.append(self._errors)
        app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
        add = app.router.add_get
        # Each route's name is its key in auth.ROUTE_SCOPES (how its scope is found).
        add("/health", self._health, name="health")
        add("/overview", self._overview, name="overview")
        add("/devices", self._devices, name="devices")
        add("/devices/{device_id}", self._device, name="device")
        add("/devices/{device_id}/aggregates", self._aggregates, name="aggregates")
        add("/devices/{device_id}/loss", self._loss, name="loss")
        add("/devices/{device_id}/stream", self._readings_stream, name="readings_stream")
        app.router.add_post("/devices/{device_id}/commands", self._command, name="command")
        add("/alerts", self._alerts, name="alerts")
        add("/alerts/history", self._alert_history, name="alert_history")
        add("/alerts/stream", self._alerts_stream, name="alerts_stream")
        return app

    @web.middleware
    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            self.metrics.requests.labels(name, str(status)).inc()
            if not name.endswith("/stream"):
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadParameterError as exc:
            self.metrics.bad_parameters.labels(exc.parameter).inc()
            return web.json_response(exc.body(), status=exc.status)
        except QueryError as exc:
            return web.json_response(exc.body(), status=exc.status)

    @property
    def _service(self) -> QueryService:
        assert self.service is not None  # noqa: S101 - start() ran
        return self.service

    # -- pull -------------------------------------------------------------------------------

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response(await self._service.health(self.runtime.ready))

    async def _overview(self, request: web.Request) -> web.Response:
        seen_minutes = params.parse_seen_minutes(request.query)
        body = await self._service.overview(seen_minutes, self.ingest)
        worker = {
            "group": self.settings.group,
            "ready": self.runtime.ready,
            "dlq_caught_up": self._service.dlq.caught_up,
        }
        processes = await readiness(self.settings.query.processes)
        return web.json_response({**body, "workers": [worker], "processes": processes})

    async def _devices(self, request: web.Request) -> web.Response:
        query = params.parse_devices(request.query)
        consistency = params.parse_consistency(request.query)
        return web.json_response(await self._service.devices(query, consistency))

    async def _device(self, request: web.Request) -> web.Response:
        device_id = params.check_device_id(request.match_info["device_id"])
        consistency = params.parse_consistency(request.query)
        return web.json_response(await self._service.device(device_id, consistency))

    async def _aggregates(self, request: web.Request) -> web.Response:
        device_id = params.check_device_id(request.match_info["device_id"])
        query = params.parse_aggregates(request.query)
        consistency = params.parse_consistency(request.query)
        body = await self._service.aggregates(device_id, query, consistency)
        return web.json_response(body)

    async def _loss(self, request: web.Request) -> web.Response:
        device_id = params.check_device_id(request.match_info["device_id"])
        consistency = params.parse_consistency(request.query)
        return web.json_response(await self._service.loss(device_id, consistency))

    async def _command(self, request: web.Request) -> web.Response:
        device_id = params.check_device_id(request.match_info["device_id"])
        try:
            body = await request.json()
        except ValueError:
            raise BadParameterError("body", "expected a JSON object") from None
        command = parse_command(device_id, body, int(time.time() * 1000))
        store = self.runtime.store
        if store is None:
            raise UnavailableError("this worker has no store to send commands through yet")
        outbox = CommandOutbox(store, self.settings.notifier.commands_topic)
        result = await asyncio.to_thread(outbox.send, command)
        answer = command_json(command, duplicate=not result.applied)
        return web.json_response(answer, status=202 if result.applied else 200)

    async def _alerts(self, request: web.Request) -> web.Response:
        query = params.parse_alerts(request.query)
        consistency = params.parse_consistency(request.query)
        return web.json_response(await self._service.active_alerts(query, consistency))

    def _alert_partitions(self, device_id: str | None) -> list[int]:
        if device_id is None:
            return list(range(self.alert_partitions))
        return [partition_for(device_id, self.alert_partitions)]

    async def _decode_alert(self, value: bytes | None) -> dict[str, Any]:
        assert self.runtime.registry is not None  # noqa: S101 - the runtime started
        return dict(await self.runtime.registry.decode(value or b""))

    async def _decode_alert_or_none(self, value: bytes | None) -> dict[str, Any] | None:
        try:
            return await self._decode_alert(value)
        except UNDECODABLE:
            return None

    async def _alert_history(self, request: web.Request) -> web.Response:
        query = params.parse_history(request.query, int(time.time() * 1000))
        client = _client(request)
        refused = self.history_scans.take(client)
        if refused is not None:
            return _refused(refused, self.history_scans.per_client, "history scans")
        try:
            return await self._history(request, query)
        finally:
            self.history_scans.give_back(client)

    async def _history(self, request: web.Request, query: params.HistoryQuery) -> web.Response:
        if self.alert_partitions == 0:
            return web.json_response(
                {
                    "alerts": [],
                    "truncated": False,
                    "next_after": None,
                    "read_to": "",
                    "end": {},
                    "scanned": 0,
                    "undecodable": 0,
                    "gap": [],
                }
            )
        partitions = self._alert_partitions(query.device_id)
        after = None if query.after is None else parse_vector(query.after, "after", partitions)
        async with LogReader(self.settings.kafka, self.settings.alerts_topic) as reader:
            body = await alert_history(
                reader,
                partitions,
                query,
                self._decode_alert_or_none,
                after=after,
                max_seconds=self.settings.query.history_max_scan_s,
            )
        return web.json_response(body)

    # -- push -------------------------------------------------------------------------------

    def _resume(self, request: web.Request, partitions: list[int]) -> dict[int, int] | None:
        raw = request.headers.get("Last-Event-ID") or request.query.get("after")
        if not raw:
            return None
        name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
        return parse_vector(raw, name, partitions)

    async def _subscribe(
        self,
        request: web.Request,
        topic: str,
        partitions: list[int],
        decode: Callable[[Any], Awaitable[dict[str, object] | None]],
        event: str,
    ) -> web.StreamResponse:
        resume = self._resume(request, partitions)
        client = _client(request)
        refused = self.subscriptions.admit(client)
        if refused is not None:
            return _refused(refused, self.subscriptions.per_client, "open streams")
        admitted = True  # until stream_log takes over the slot (it leaves it on every path)
        try:
            async with LogReader(self.settings.kafka, topic) as reader:
                if resume is None:
                    requested = await reader.end_offsets(partitions)
                else:
                    requested = {p: o + 1 for p, o in resume.items()}
                starts = await reader.seek(requested)
                admitted = False
                return await stream_log(
                    request,
                    reader,
                    starts,
                    decode,
                    event=event,
                    limits=self.limits,
                    subscriptions=self.subscriptions,
                    requested=requested,
                    client=client,
                )
        finally:
            if admitted:
                self.subscriptions.leave("failed", client)

    async def _readings_stream(self, request: web.Request) -> web.StreamResponse:
        device_id = params.check_device_id(request.match_info["device_id"])
        assert self._positions is not None  # noqa: S101
        key = device_id.encode()
        registry = self.runtime.registry
        assert registry is not None  # noqa: S101

        async def decode(record: Any) -> dict[str, object] | None:
            if record.key != key:
                return None
            try:
                return reading_json(await decode_telemetry(registry, record.value))
            except UNDECODABLE:
                return None

        partition = self._positions.partition_of(device_id)
        return await self._subscribe(
            request, self.settings.telemetry_topic, [partition], decode, "reading"
        )

    async def _alerts_stream(self, request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("device_id")
        if device_id is not None:
            params.check_device_id(device_id)
        if self.alert_partitions == 0:
            raise UnavailableError(f"the topic {self.settings.alerts_topic!r} does not exist yet")
        key = None if device_id is None else device_id.encode()

        async def decode(record: Any) -> dict[str, object] | None:
            if key is not None and record.key != key:
                return None
            try:
                return alert_record_json(await self._decode_alert(record.value))
            except UNDECODABLE:
                return None

        partitions = self._alert_partitions(device_id)
        return await self._subscribe(
            request, self.settings.alerts_topic, partitions, decode, "alert"
        )


def _client(request: web.Request) -> str:
    """Who a request counts against: its token's principal, else its address."""
    return str(request.get(PRINCIPAL) or request.remote or "")


def _refused(refusal: Refusal, per_client: int, what: str) -> web.Response:
    if refusal == "client_limit":
        body = {"error": "too_many_requests", "reason": f"{per_client} {what} per client"}
        return web.json_response(body, status=429, headers={"Retry-After": "1"})
    body = {"error": "unavailable", "reason": f"too many {what} on this worker"}
    return web.json_response(body, status=503, headers={"Retry-After": "1"})
