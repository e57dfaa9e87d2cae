"""The faust app of a stream worker: consumer group, batches, rebalances, HTTP.

faust runs the consumer group (one member per worker process) and hands each agent batch to
:class:`~streams.worker.runtime.WorkerRuntime`. faust's own committed offsets are only a
hint: on every assignment the worker seeks each partition to the store's position, and the
store skips whatever it already applied.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Set
from typing import Any

import faust
from aiohttp import web
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.domain import TopicPartition
from streams.query import mount_queries
from streams.settings import WorkerSettings
from streams.worker.batches import consume_batches
from streams.worker.runtime import RawRecord, WorkerRuntime

log = logging.getLogger("streams.worker")


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


def _credentials(settings: WorkerSettings) -> faust.SASLCredentials | None:
    login = settings.kafka.sasl()
    if login is None:
        return None
    return faust.SASLCredentials(
        username=login.username, password=login.password, mechanism=login.mechanism
    )


class WorkerApp(faust.App):
    """A faust app whose start-up opens the runtime before any agent consumes."""

    runtime: WorkerRuntime
    _http: web.AppRunner | None = None

    async def on_start(self) -> None:
        await super().on_start()
        await self.runtime.start()
        self._http = await serve_http(self.runtime)

    async def on_stop(self) -> None:
        if self._http is not None:
            await self._http.cleanup()
        await self.runtime.stop()
        await super().on_stop()


async def serve_http(runtime: WorkerRuntime) -> web.AppRunner:
    """``/metrics``, ``/healthz``, ``/readyz`` on the configured address."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(runtime.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    query = runtime.settings.query
    warnings = (
        ["query authentication is disabled (query.auth.enabled=false)"]
        if query.enabled and not query.auth.enabled
        else []
    )

    async def readyz(_: web.Request) -> web.Response:
        answer: dict[str, object] = {"ready": runtime.ready}
        problem = runtime.problem()
        if problem is not None:
            answer["problem"] = problem
        if warnings:
            answer["warnings"] = warnings
        return web.json_response(answer, status=200 if runtime.ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if runtime.settings.query.enabled:
        await mount_queries(app, runtime)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    http = runtime.settings.http
    await web.TCPSite(runner, http.host, http.port).start()
    return runner


def build_app(settings: WorkerSettings) -> WorkerApp:
    """The worker's faust app: one agent over the telemetry topic, in batches."""
    batches = settings.consumer == "batches"
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    app = WorkerApp(
        # With the batch consumer the group belongs to it; faust's own consumer (which has
        # no topics then) must not join it with faust's assignor.
        f"{settings.group}.app" if batches else settings.group,
        broker=_broker_url(settings.kafka.bootstrap),
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "{conf.id}"),  # faust fills in the app id
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A killed worker's partitions move after this long, not faust's default minute.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.runtime = runtime = WorkerRuntime(settings)
    if batches:
        # No faust consumer at all: the batch consumer below is the worker's only one.
        app.producer_only = True

        @app.task  # type: ignore[untyped-decorator]
        async def telemetry_batches() -> None:
            await consume_batches(runtime, settings)

        return app
    topic = app.topic(settings.telemetry_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="telemetry")
    async def telemetry(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        batches = stream.take_events(settings.batch_max, settings.batch_within_s)  # type: ignore[attr-defined]
        async for events in batches:
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.value)
                for e in events
            ]
            await runtime.handle(records)
            last = {(r.topic, r.partition): r.offset for r in records}
            for (name, partition), offset in last.items():
                try:
                    highwater = app.consumer.highwater(TP(name, partition))
                except (AssertionError, KeyError):  # revoked while its batch was applied
                    continue
                if highwater is not None:
                    lag = max(0, highwater - offset - 1)
                    runtime.metrics.lag.labels(str(partition)).set(lag)
            yield None

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Set[TP], **_: Any) -> None:
        mine = [
            TopicPartition(tp.topic, tp.partition)
            for tp in assigned
            if tp.topic == settings.telemetry_topic
        ]
        for tp, offset in (await runtime.assigned(mine)).items():
            # 0 for nothing stored: below the log's start, the reset policy (earliest) applies
            await app.consumer.seek(TP(tp.topic, tp.partition), 0 if offset is None else offset)
        log.info("assigned %s", sorted(tp.partition for tp in mine))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Set[TP], **_: Any) -> None:
        await runtime.revoked(
            TopicPartition(tp.topic, tp.partition)
            for tp in revoked
            if tp.topic == settings.telemetry_topic
        )

    return app
