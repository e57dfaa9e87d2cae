"""The overview's readiness of other processes: asked on their /readyz, all at once, briefly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from streams.query.readiness import readiness
from tests.stacks import free_port


@pytest.fixture
async def processes() -> AsyncIterator[dict[str, str]]:
    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def degraded(_: web.Request) -> web.Response:
        return web.json_response({"ready": False, "problem": "Kafka producer down"}, status=503)

    app = web.Application()
    app.router.add_get("/ready/readyz", ready)
    app.router.add_get("/degraded/readyz", degraded)
    runner = web.AppRunner(app)
    await runner.setup()
    port, gone = free_port(), free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield {
            "gateway-1": f"http://127.0.0.1:{port}/ready/readyz",
            "gateway-2": f"http://127.0.0.1:{port}/degraded/readyz",
            "gateway-3": f"http://127.0.0.1:{gone}/readyz",  # nothing listens there
        }
    finally:
        await runner.cleanup()


async def test_each_process_is_ready_or_says_why_not(processes: dict[str, str]) -> None:
    assert await readiness(processes) == [
        {"name": "gateway-1", "ready": True, "problem": None},
        {"name": "gateway-2", "ready": False, "problem": "Kafka producer down"},
        {"name": "gateway-3", "ready": False, "problem": "no answer: ClientConnectorError"},
    ]
    assert await readiness({}) == []
