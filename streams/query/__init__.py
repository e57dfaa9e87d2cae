"""HTTP queries served by the stream workers: pull, push (SSE), read-your-writes.

``mount_queries(app, runtime)`` adds ``/api/...`` (JSON and Server-Sent Events),
``/openapi.json`` and the operator's pages (``/ui``) to the worker's aiohttp application.
"""

from __future__ import annotations

from aiohttp import web

from streams.query.api import PUBLIC_PATHS, QueryApi
from streams.query.context import QueryContext
from streams.query.errors import (
    BadParameterError,
    NotCaughtUpError,
    QueryError,
    UnavailableError,
    UnknownDeviceError,
)
from streams.query.openapi import openapi_document
from streams.query.pages import mount_pages

__all__ = [
    "PUBLIC_PATHS",
    "BadParameterError",
    "NotCaughtUpError",
    "QueryApi",
    "QueryContext",
    "QueryError",
    "UnavailableError",
    "UnknownDeviceError",
    "mount_queries",
    "openapi_document",
]


async def mount_queries(app: web.Application, runtime: QueryContext) -> QueryApi:
    """Starts the query API and mounts it; it stops when ``app`` shuts down."""
    api = QueryApi(runtime)
    await api.start()
    document = openapi_document()

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    async def on_shutdown(_: web.Application) -> None:
        api.subscriptions.stopping.set()

    async def on_cleanup(_: web.Application) -> None:
        await api.stop()

    app.add_subapp("/api", api.app())
    app.router.add_get("/openapi.json", openapi)
    mount_pages(app)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return api
